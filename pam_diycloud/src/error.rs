//! Why a hook did not succeed, and the one mapping to PAM codes.

use pam::constants::PamResultCode;

/// A hook that went through: it decided (`Success`) or it has nothing to
/// say about this user (`Ignore`: the rest of the stack decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    Success,
    Ignore,
}

/// Why a hook refused or failed. The reason has been logged where it
/// arose; the client learns only the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookError {
    /// The module's arguments in the PAM stack are wrong.
    Arguments,
    /// libpam or the application stopped it (no user name, a cancelled
    /// prompt, a retyped password that did not match): its own code, a
    /// known one other than success (see [`from_libpam`]).
    Pam(libc::c_int),
    /// Our config or database cannot be used for a user we manage.
    Unavailable,
    /// `auth`: not in the database.
    UnknownUser,
    /// `auth`, `chauthtok`: wrong password, or locked or disabled.
    AuthFailed,
    /// `account`: disabled, or locked after failed logins.
    Denied,
    /// `account`: past the expiry date.
    Expired,
    /// `chauthtok`: the new password was refused or could not be stored.
    NewPassword,
    /// `session`: the limits could not be applied (`on_session_error = deny`).
    Session,
    /// A call libpam should never make (a `chauthtok` phase we do not know).
    Service,
}

impl HookError {
    pub fn code(&self) -> PamResultCode {
        use PamResultCode::*;
        match self {
            HookError::Arguments | HookError::Service => PAM_SERVICE_ERR,
            HookError::Pam(rc) => PamResultCode::try_from(*rc).unwrap_or(PAM_SYSTEM_ERR),
            HookError::Unavailable => PAM_AUTHINFO_UNAVAIL,
            HookError::UnknownUser => PAM_USER_UNKNOWN,
            HookError::AuthFailed => PAM_AUTH_ERR,
            HookError::Denied => PAM_PERM_DENIED,
            HookError::Expired => PAM_ACCT_EXPIRED,
            HookError::NewPassword => PAM_AUTHTOK_ERR,
            HookError::Session => PAM_SESSION_ERR,
        }
    }
}

/// What libpam gets back from a hook.
pub fn to_code(result: Result<Done, HookError>) -> PamResultCode {
    match result {
        Ok(Done::Success) => PamResultCode::PAM_SUCCESS,
        Ok(Done::Ignore) => PamResultCode::PAM_IGNORE,
        Err(e) => e.code(),
    }
}

/// A code libpam returned, kept as it is; one it should never return
/// (success, or a number outside the enum) becomes a system error, so a
/// failure is never mistaken for a success.
pub fn from_libpam(rc: libc::c_int) -> HookError {
    match PamResultCode::try_from(rc) {
        Ok(PamResultCode::PAM_SUCCESS) | Err(_) => {
            HookError::Pam(PamResultCode::PAM_SYSTEM_ERR as libc::c_int)
        }
        Ok(_) => HookError::Pam(rc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PamResultCode::*;

    #[test]
    fn every_error_has_its_code() {
        for (error, code) in [
            (HookError::Arguments, PAM_SERVICE_ERR),
            (HookError::Service, PAM_SERVICE_ERR),
            (HookError::Pam(PAM_CONV_ERR as libc::c_int), PAM_CONV_ERR),
            (HookError::Unavailable, PAM_AUTHINFO_UNAVAIL),
            (HookError::UnknownUser, PAM_USER_UNKNOWN),
            (HookError::AuthFailed, PAM_AUTH_ERR),
            (HookError::Denied, PAM_PERM_DENIED),
            (HookError::Expired, PAM_ACCT_EXPIRED),
            (HookError::NewPassword, PAM_AUTHTOK_ERR),
            (HookError::Session, PAM_SESSION_ERR),
        ] {
            assert_eq!(error.code(), code, "{error:?}");
            assert_ne!(to_code(Err(error)), PAM_SUCCESS);
        }
        assert_eq!(to_code(Ok(Done::Success)), PAM_SUCCESS);
        assert_eq!(to_code(Ok(Done::Ignore)), PAM_IGNORE);
    }

    #[test]
    fn libpam_codes_round_trip_and_never_become_success() {
        for rc in 1..=31 {
            assert_eq!(from_libpam(rc).code() as libc::c_int, rc, "{rc}");
        }
        for rc in [0, -1, 32, 9999] {
            assert_eq!(from_libpam(rc).code(), PAM_SYSTEM_ERR, "{rc}");
        }
    }
}
