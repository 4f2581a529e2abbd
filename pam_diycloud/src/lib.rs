//! `pam_diycloud.so`: the PAM front door of diycloud. A thin shell: the hook
//! table, the real PAM handle (`ffi`) and the real host (clock, caller,
//! accounts, systemd), and one mapping from a hook's result to a PAM code.
//! The hooks themselves (`hooks`) are generic and tested with a scripted
//! handle. pam-bindings' hook macro catches panics (-> PAM_ABORT), so none
//! crosses into the host process (sshd, login, JupyterHub).
#![deny(unsafe_code)]

mod cache;
mod error;
mod ffi;
mod handle;
mod hooks;
mod options;

use std::ffi::CStr;
use std::time::{Duration, Instant, SystemTime};

use libdiycloud::adapters::platform;
use libdiycloud::model::Timestamp;
use libdiycloud::ports::Membership;
use libdiycloud::system::{self, SystemPorts};
use pam::constants::{PamFlag, PamResultCode};
use pam::module::{PamHandle, PamHooks};

use crate::ffi::Libpam;
use crate::handle::Host;
use crate::hooks::HookResult;

struct Diycloud;
pam::pam_hooks!(Diycloud);

/// The machine a hook runs on; the clock is read here, at the entry point.
struct System {
    started: Instant,
    ports: SystemPorts,
}

impl System {
    // The entry point: the one place the module reads the clock.
    #[allow(clippy::disallowed_methods)]
    fn new() -> Self {
        Self {
            started: Instant::now(),
            ports: system::ports(),
        }
    }
}

impl Host for System {
    type Slice = libdiycloud::adapters::systemd::Systemd;
    type Accounts = libdiycloud::adapters::platform::SystemAccounts;
    type Quotas = libdiycloud::adapters::quotactl::SystemQuotas;
    type Gpus = libdiycloud::adapters::nvidia::SystemGpus;

    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn caller_is_root(&self) -> bool {
        nix::unistd::getuid().is_root()
    }

    fn membership(&self, user: &str, group: &str) -> Result<Membership, String> {
        platform::is_group_member(user, group).map_err(|e| e.to_string())
    }

    fn ports(&self) -> &SystemPorts {
        &self.ports
    }
}

/// Runs one hook with the real handle and host; its one PAM code.
fn run(
    pamh: &mut PamHandle,
    hook: impl FnOnce(&mut Libpam<'_>, &System) -> HookResult,
) -> PamResultCode {
    let system = System::new();
    error::to_code(hook(&mut Libpam(pamh), &system))
}

impl PamHooks for Diycloud {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        run(pamh, |h, s| hooks::authenticate(h, s, &args, flags))
    }

    fn sm_setcred(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        run(pamh, |h, s| hooks::setcred(h, s, &args, flags))
    }

    fn acct_mgmt(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        run(pamh, |h, s| hooks::account(h, s, &args, flags))
    }

    fn sm_chauthtok(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        run(pamh, |h, s| hooks::chauthtok(h, s, &args, flags))
    }

    fn sm_open_session(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        run(pamh, |h, s| hooks::open_session(h, s, &args, flags))
    }

    fn sm_close_session(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        run(pamh, |h, s| hooks::close_session(h, s, &args, flags))
    }
}
