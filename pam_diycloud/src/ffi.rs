//! The real PAM handle: the [`PamHandler`] of a hook called by libpam, over
//! pam-bindings and the few libpam calls it lacks. The only unsafe code of
//! the module; each wrapper is safe to call with the handle libpam passed
//! to the hook.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, CStr, CString};

use pam::constants::{PamResultCode, PAM_ERROR_MSG, PAM_TEXT_INFO};
use pam::conv::Conv;
use pam::items::{Service, Tty};
use pam::module::PamHandle;
use zeroize::Zeroizing;

use crate::error::{from_libpam, HookError};
use crate::handle::{Authtok, Level, PamHandler};

const PAM_AUTHTOK: c_int = 6;
const PAM_OLDAUTHTOK: c_int = 7;

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
    fn pam_putenv(pamh: *mut PamHandle, name_value: *const c_char) -> c_int;
}

/// The handle libpam passed to the running hook.
pub struct Libpam<'h>(pub &'h mut PamHandle);

impl PamHandler for Libpam<'_> {
    fn user(&mut self) -> Result<Vec<u8>, HookError> {
        let mut user: *const c_char = std::ptr::null();
        // SAFETY: `self.0` is the live handle of the current hook; `user` is
        // a valid out-pointer; a null prompt asks for libpam's default.
        let rc = unsafe { pam_get_user(self.0, &mut user, std::ptr::null()) };
        if rc != 0 {
            return Err(from_libpam(rc));
        }
        if user.is_null() {
            return Err(HookError::Pam(PamResultCode::PAM_USER_UNKNOWN as c_int));
        }
        // SAFETY: on success libpam returns its own NUL-terminated PAM_USER
        // item, valid until the item changes; we copy it at once.
        Ok(unsafe { CStr::from_ptr(user) }.to_bytes().to_vec())
    }

    fn authtok(&mut self, which: Authtok) -> Result<Zeroizing<Vec<u8>>, HookError> {
        let item = match which {
            Authtok::Current => PAM_AUTHTOK,
            Authtok::Old => PAM_OLDAUTHTOK,
        };
        let mut token: *const c_char = std::ptr::null();
        // SAFETY: `self.0` is the live handle of the current hook; `token`
        // is a valid out-pointer; a null prompt asks for libpam's default.
        let rc = unsafe { pam_get_authtok(self.0, item, &mut token, std::ptr::null()) };
        if rc != 0 {
            return Err(from_libpam(rc));
        }
        if token.is_null() {
            return Err(HookError::Pam(PamResultCode::PAM_AUTH_ERR as c_int));
        }
        // SAFETY: on success libpam hands back a NUL-terminated string it
        // owns (the item), valid until the item changes; we copy it now.
        let bytes = unsafe { CStr::from_ptr(token) }.to_bytes().to_vec();
        Ok(Zeroizing::new(bytes))
    }

    fn service(&self) -> Option<String> {
        match self.0.get_item::<Service>() {
            Ok(Some(Service(name))) => Some(name.to_string_lossy().into_owned()),
            _ => None,
        }
    }

    fn tty(&self) -> Option<String> {
        match self.0.get_item::<Tty>() {
            Ok(Some(Tty(name))) => Some(name.to_string_lossy().into_owned()),
            _ => None,
        }
    }

    fn tell(&self, message: &str) {
        if let Ok(Some(conv)) = self.0.get_item::<Conv>() {
            // A client that cannot show the message changes nothing.
            let _ = conv.send(PAM_ERROR_MSG, message);
        }
    }

    fn inform(&self, message: &str) {
        if let Ok(Some(conv)) = self.0.get_item::<Conv>() {
            // A client that cannot show it (pamela, a cron job) changes nothing.
            let _ = conv.send(PAM_TEXT_INFO, message);
        }
    }

    fn log(&self, level: Level, message: &str) {
        let Ok(message) = CString::new(message.replace('\0', "\\0")) else {
            return;
        };
        // SAFETY: `self.0` is the hook's live handle; the format is a literal
        // "%s" with exactly one matching C-string argument, so no user text
        // is parsed as a format.
        unsafe { pam_syslog(self.0, level.priority(), c"%s".as_ptr(), message.as_ptr()) };
    }

    fn putenv(&mut self, name: &str, value: &str) -> Result<(), HookError> {
        // A name with '=' or NUL, or a value with NUL, would set another
        // variable than the one meant.
        if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
            return Err(HookError::Pam(PamResultCode::PAM_BAD_ITEM as c_int));
        }
        let Ok(entry) = CString::new(format!("{name}={value}")) else {
            return Err(HookError::Pam(PamResultCode::PAM_BAD_ITEM as c_int));
        };
        // SAFETY: `self.0` is the hook's live handle; `entry` is a valid
        // NUL-terminated "NAME=value" that libpam copies before returning.
        let rc = unsafe { pam_putenv(self.0, entry.as_ptr()) };
        if rc != 0 {
            return Err(from_libpam(rc));
        }
        Ok(())
    }
}
