//! `pam_diycloud.so`: the PAM front door of diycloud. A thin shell: parse the
//! arguments, call `libdiycloud::auth` or `libdiycloud::apply`, map the outcome to a PAM code, log
//! through `pam_syslog`. pam-bindings' hook macro catches panics (-> PAM_ABORT),
//! so none crosses into the host process (sshd, login, JupyterHub).

mod ffi;
mod hooks;
mod options;

use std::ffi::CStr;

use pam::constants::{PamFlag, PamResultCode};
use pam::module::{PamHandle, PamHooks};

struct Diycloud;
pam::pam_hooks!(Diycloud);

impl PamHooks for Diycloud {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        hooks::authenticate(pamh, &args, flags)
    }

    fn sm_setcred(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        hooks::setcred(pamh, &args, flags)
    }

    fn acct_mgmt(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        hooks::account(pamh, &args, flags)
    }

    fn sm_chauthtok(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        hooks::chauthtok(pamh, &args, flags)
    }

    fn sm_open_session(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        hooks::open_session(pamh, &args, flags)
    }

    fn sm_close_session(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        hooks::close_session(pamh, &args, flags)
    }
}
