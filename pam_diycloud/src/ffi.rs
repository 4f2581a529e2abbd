//! The few libpam calls pam-bindings lacks. Each wrapper is safe to call with
//! the handle libpam passed to the hook.

use std::ffi::{c_char, c_int, CStr, CString};

use pam::constants::PamResultCode;
use pam::module::PamHandle;
use zeroize::Zeroizing;

pub const PAM_AUTHTOK: c_int = 6;
pub const PAM_OLDAUTHTOK: c_int = 7;

pub const LOG_ERR: c_int = 3;
pub const LOG_WARNING: c_int = 4;
pub const LOG_NOTICE: c_int = 5;
pub const LOG_INFO: c_int = 6;
pub const LOG_DEBUG: c_int = 7;

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_get_authtok(
        pamh: *mut PamHandle,
        item: c_int,
        authtok: *mut *const c_char,
        prompt: *const c_char,
    ) -> c_int;
    fn pam_syslog(pamh: *const PamHandle, priority: c_int, fmt: *const c_char, ...);
    fn pam_get_user(pamh: *mut PamHandle, user: *mut *const c_char, prompt: *const c_char)
        -> c_int;
}

/// The user name as libpam has it, as bytes: a name that is not UTF-8 must
/// take the same path as any unknown name, not fail early.
pub fn get_user(pamh: &mut PamHandle) -> Result<Vec<u8>, PamResultCode> {
    let mut user: *const c_char = std::ptr::null();
    // SAFETY: `pamh` is the live handle of the current hook; `user` is a
    // valid out-pointer; a null prompt asks libpam for its default prompt.
    let rc = unsafe { pam_get_user(pamh, &mut user, std::ptr::null()) };
    if rc != 0 {
        return Err(PamResultCode::try_from(rc).unwrap_or(PamResultCode::PAM_SYSTEM_ERR));
    }
    if user.is_null() {
        return Err(PamResultCode::PAM_USER_UNKNOWN);
    }
    // SAFETY: on success libpam returns its own NUL-terminated PAM_USER item,
    // valid until the item changes; we copy it at once.
    Ok(unsafe { CStr::from_ptr(user) }.to_bytes().to_vec())
}

/// Asks libpam for a password: the stacked one (`use_first_pass`,
/// `try_first_pass`) or through the conversation, with a retype check when a
/// new password is asked for in `chauthtok`. The copy is wiped on drop.
pub fn get_authtok(pamh: &mut PamHandle, item: c_int) -> Result<Zeroizing<Vec<u8>>, PamResultCode> {
    let mut token: *const c_char = std::ptr::null();
    // SAFETY: `pamh` is the live handle of the current hook; `token` is a valid
    // out-pointer; a null prompt asks libpam for its default prompt.
    let rc = unsafe { pam_get_authtok(pamh, item, &mut token, std::ptr::null()) };
    if rc != 0 {
        return Err(PamResultCode::try_from(rc).unwrap_or(PamResultCode::PAM_SYSTEM_ERR));
    }
    if token.is_null() {
        return Err(PamResultCode::PAM_AUTH_ERR);
    }
    // SAFETY: on success libpam hands back a NUL-terminated string it owns (the
    // item), valid until the item changes; we copy it before returning.
    let bytes = unsafe { CStr::from_ptr(token) }.to_bytes().to_vec();
    Ok(Zeroizing::new(bytes))
}

/// Logs through `pam_syslog`: facility authpriv, prefixed with the module and
/// service names by libpam. `message` must never contain a secret.
pub fn syslog(pamh: &PamHandle, priority: c_int, message: &str) {
    let Ok(message) = CString::new(message.replace('\0', "\\0")) else {
        return;
    };
    // SAFETY: `pamh` is the hook's live handle; the format is a literal "%s"
    // with exactly one matching C-string argument, so no user text is parsed
    // as a format.
    unsafe { pam_syslog(pamh, priority, c"%s".as_ptr(), message.as_ptr()) };
}
