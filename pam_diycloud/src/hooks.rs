//! The hooks. Auth and account fail closed: any doubt (bad arguments, an
//! unreadable config or database) denies, with the reason in syslog and
//! nothing specific said to the client.

use std::ffi::CStr;
use std::path::Path;
use std::time::SystemTime;

use libdiycloud::apply::{apply_slice_of, LookupOr};
use libdiycloud::auth::{AccountStatus, Authenticator, LoginOutcome, PasswordChange};
use libdiycloud::config::{Config, SessionErrorPolicy, DEFAULT_CONFIG_PATH};
use libdiycloud::model::Timestamp;
use libdiycloud::store::Store;
use libdiycloud::systemd::Systemd;
use pam::constants::{PamFlag, PamResultCode, PAM_ERROR_MSG, PAM_SILENT};
use pam::conv::Conv;
use pam::items::Service;
use pam::module::PamHandle;

use crate::ffi::{self, LOG_DEBUG, LOG_ERR, LOG_INFO, LOG_NOTICE, LOG_WARNING};
use crate::options::Options;

use PamResultCode::*;

// libpam's chauthtok phases (security/_pam_types.h).
const PAM_PRELIM_CHECK: PamFlag = 0x4000;
const PAM_UPDATE_AUTHTOK: PamFlag = 0x2000;
const PAM_CHANGE_EXPIRED_AUTHTOK: PamFlag = 0x0020;

/// Everything a hook needs, set up once per call.
struct Call<'h> {
    pamh: &'h mut PamHandle,
    options: Options,
    flags: PamFlag,
    user: String,
}

/// The clock is read here, at the entry point, and passed down.
fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

impl<'h> Call<'h> {
    fn start(
        pamh: &'h mut PamHandle,
        args: &[&CStr],
        flags: PamFlag,
    ) -> Result<Self, PamResultCode> {
        let options = Options::try_from(args).map_err(|e| {
            ffi::syslog(pamh, LOG_ERR, &format!("bad module arguments: {e}"));
            PAM_SERVICE_ERR
        })?;
        // A name that is not UTF-8 becomes one with U+FFFD in it, which no
        // diycloud name has: it takes the unknown-user path like any other.
        let user = match ffi::get_user(pamh) {
            Ok(user) => String::from_utf8_lossy(&user).into_owned(),
            Err(code) => {
                ffi::syslog(pamh, LOG_ERR, "cannot get the user name");
                return Err(code);
            }
        };
        Ok(Self {
            pamh,
            options,
            flags,
            user,
        })
    }

    /// `start`, then the config and database; where they cannot be had,
    /// the answer for a stage that must deny (`unavailable`).
    fn start_with_store(
        pamh: &'h mut PamHandle,
        args: &[&CStr],
        flags: PamFlag,
    ) -> Result<(Self, Config, Store), PamResultCode> {
        let call = Self::start(pamh, args, flags)?;
        match call.open() {
            Ok((config, store)) => Ok((call, config, store)),
            Err(why) => Err(call.unavailable(&why)),
        }
    }

    fn log(&self, priority: std::ffi::c_int, message: &str) {
        ffi::syslog(self.pamh, priority, message);
    }

    fn debug(&self, message: &str) {
        if self.options.debug {
            self.log(LOG_DEBUG, message);
        }
    }

    /// Tells the user something, unless the application asked for silence.
    fn tell(&self, message: &str) {
        if self.flags & PAM_SILENT != 0 {
            return;
        }
        if let Ok(Some(conv)) = self.pamh.get_item::<Conv>() {
            // A client that cannot show the message changes nothing.
            let _ = conv.send(PAM_ERROR_MSG, message);
        }
    }

    /// `pam:<service>`, the actor recorded in the audit log.
    fn actor(&self) -> String {
        let service = match self.pamh.get_item::<Service>() {
            Ok(Some(Service(name))) => name.to_string_lossy().into_owned(),
            _ => "unknown".into(),
        };
        format!("pam:{service}")
    }

    /// Loads the config named by the arguments.
    fn config(&self) -> Result<Config, String> {
        let (path, explicit) = match &self.options.config {
            Some(path) => (path.as_path(), true),
            None => (Path::new(DEFAULT_CONFIG_PATH), false),
        };
        Config::load(path, explicit).map_err(|e| e.to_string())
    }

    /// Opens the database named by the arguments or the config.
    fn store(&self, config: &Config) -> Result<Store, String> {
        let db = self.options.db.as_deref().unwrap_or(&config.db);
        self.debug(&format!("using database {}", db.display()));
        Store::open(db).map_err(|e| e.to_string())
    }

    /// Loads the config and opens the database.
    fn open(&self) -> Result<(Config, Store), String> {
        let config = self.config()?;
        let store = self.store(&config)?;
        Ok((config, store))
    }

    /// Session open could not apply the limits: `on_session_error` decides.
    fn session_failure(&self, policy: SessionErrorPolicy, why: &str) -> PamResultCode {
        match policy {
            SessionErrorPolicy::Deny => {
                self.log(
                    LOG_ERR,
                    &format!("{why}; login refused (on_session_error = deny)"),
                );
                self.tell("Your resource limits could not be applied, so this login is refused. Please contact your system administrator.");
                PAM_SESSION_ERR
            }
            SessionErrorPolicy::Allow => {
                self.log(
                    LOG_WARNING,
                    &format!("{why}; login allowed without limits (on_session_error = allow)"),
                );
                PAM_SUCCESS
            }
        }
    }

    /// The password stage for a user who is not ours (root included). We
    /// stand first in the shipped stack, and pam_unix after us is given
    /// `use_authtok` by pam-auth-update: so, like pam_pwquality, we ask for
    /// the new password (libpam's prompts, typed twice) and pass it on.
    /// The old one pam_unix asks for itself, only where it needs it.
    fn pass_new_password_on(self, flags: PamFlag) -> PamResultCode {
        if flags & PAM_UPDATE_AUTHTOK == 0 {
            return PAM_IGNORE;
        }
        // libpam stores what was typed as PAM_AUTHTOK; a mismatch or a
        // cancelled prompt ends the change here.
        match ffi::get_authtok(self.pamh, ffi::PAM_AUTHTOK) {
            Ok(_) => PAM_IGNORE,
            Err(code) => code,
        }
    }

    /// Root and other system accounts must keep working when our database
    /// is broken: for them an unavailable database means "not ours".
    fn unavailable(&self, why: &str) -> PamResultCode {
        self.log(LOG_ERR, &format!("user database unavailable: {why}"));
        if self.user == "root" {
            PAM_IGNORE
        } else {
            PAM_AUTHINFO_UNAVAIL
        }
    }
}

pub fn authenticate(pamh: &mut PamHandle, args: &[&CStr], flags: PamFlag) -> PamResultCode {
    let call = match Call::start(pamh, args, flags) {
        Ok(call) => call,
        Err(code) => return code,
    };
    // Ask for the password before looking anything up, so an unknown user
    // sees exactly the same conversation as a known one.
    let password = match ffi::get_authtok(call.pamh, ffi::PAM_AUTHTOK) {
        Ok(password) => password,
        Err(code) => {
            call.debug(&format!("no password obtained ({code:?})"));
            return code;
        }
    };
    let (config, mut store) = match call.open() {
        Ok(opened) => opened,
        Err(why) => {
            call.log(LOG_ERR, &format!("user database unavailable: {why}"));
            return PAM_AUTHINFO_UNAVAIL;
        }
    };
    let outcome = Authenticator::new(&mut store, &config, call.actor())
        .and_then(|mut auth| auth.login(&call.user, &password, now()));
    let user = &call.user;
    match outcome {
        Ok(LoginOutcome::Success(_)) => {
            call.log(LOG_INFO, &format!("authentication success for {user}"));
            PAM_SUCCESS
        }
        Ok(LoginOutcome::UnknownUser) => {
            // Not logging the name: a mistyped user name is often a password.
            call.log(
                LOG_NOTICE,
                "authentication failure: user not in the database",
            );
            PAM_USER_UNKNOWN
        }
        Ok(LoginOutcome::WrongPassword {
            failures,
            locked_now,
        }) => {
            call.log(
                LOG_NOTICE,
                &format!("authentication failure for {user}: wrong password ({failures} in a row)"),
            );
            if locked_now {
                call.log(
                    LOG_WARNING,
                    &format!("{user} is now locked after {failures} failures"),
                );
            }
            PAM_AUTH_ERR
        }
        Ok(LoginOutcome::Locked) => {
            call.log(
                LOG_NOTICE,
                &format!(
                    "authentication refused for {user}: account locked after repeated failures"
                ),
            );
            PAM_AUTH_ERR
        }
        Ok(LoginOutcome::Inactive) => {
            call.log(
                LOG_NOTICE,
                &format!("authentication refused for {user}: account disabled"),
            );
            PAM_AUTH_ERR
        }
        Err(e) => {
            call.log(LOG_ERR, &format!("authentication failure for {user}: {e}"));
            PAM_AUTHINFO_UNAVAIL
        }
    }
}

pub fn setcred(pamh: &mut PamHandle, args: &[&CStr], flags: PamFlag) -> PamResultCode {
    let call = match Call::start(pamh, args, flags) {
        Ok(call) => call,
        Err(code) => return code,
    };
    // setcred grants nothing of ours yet: it only says whether the user is ours.
    match call
        .open()
        .and_then(|(_, store)| store.user(&call.user).map_err(|e| e.to_string()))
    {
        Ok(Some(_)) => PAM_SUCCESS,
        Ok(None) => PAM_IGNORE,
        Err(why) => {
            call.log(
                LOG_ERR,
                &format!("setcred: user database unavailable: {why}"),
            );
            PAM_IGNORE
        }
    }
}

pub fn account(pamh: &mut PamHandle, args: &[&CStr], flags: PamFlag) -> PamResultCode {
    let (call, config, mut store) = match Call::start_with_store(pamh, args, flags) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let status = Authenticator::new(&mut store, &config, call.actor())
        .and_then(|auth| auth.account_status(&call.user, now()));
    let user = &call.user;
    match status {
        Ok(AccountStatus::Active) => PAM_SUCCESS,
        Ok(AccountStatus::Unknown) => {
            call.debug("account: user not in the database, ignoring");
            PAM_IGNORE
        }
        Ok(AccountStatus::Disabled) => {
            call.log(LOG_NOTICE, &format!("account {user} is disabled"));
            call.tell("Your account is disabled; please contact your system administrator.");
            PAM_PERM_DENIED
        }
        Ok(AccountStatus::Expired) => {
            call.log(LOG_NOTICE, &format!("account {user} has expired"));
            call.tell("Your account has expired; please contact your system administrator.");
            PAM_ACCT_EXPIRED
        }
        Ok(AccountStatus::Locked) => {
            // Whatever module authenticated them (a Unix password, a key):
            // a locked diycloud user does not get in.
            call.log(
                LOG_NOTICE,
                &format!("account {user} is locked after repeated failed logins"),
            );
            call.tell("Your account is locked after too many failed logins; try again later or contact your system administrator.");
            PAM_PERM_DENIED
        }
        Err(e) => call.unavailable(&e.to_string()),
    }
}

pub fn chauthtok(pamh: &mut PamHandle, args: &[&CStr], flags: PamFlag) -> PamResultCode {
    let call = match Call::start(pamh, args, flags) {
        Ok(call) => call,
        Err(code) => return code,
    };
    if call.user == "root" {
        return call.pass_new_password_on(flags);
    }
    let (config, mut store) = match call.open() {
        Ok(opened) => opened,
        Err(why) => return call.unavailable(&why),
    };
    match store.user(&call.user) {
        Ok(Some(_)) => {}
        Ok(None) => return call.pass_new_password_on(flags),
        Err(e) => return call.unavailable(&e.to_string()),
    }
    let user = &call.user;
    let mut auth = match Authenticator::new(&mut store, &config, call.actor()) {
        Ok(auth) => auth,
        Err(e) => return call.unavailable(&e.to_string()),
    };
    // As pam_unix does: root (the real uid: `passwd alice`, `chpasswd`) sets
    // a password without the old one, except when it changes its own
    // expired password at login.
    let by_root = nix::unistd::getuid().is_root() && flags & PAM_CHANGE_EXPIRED_AUTHTOK == 0;

    if flags & PAM_PRELIM_CHECK != 0 {
        if by_root {
            return PAM_SUCCESS;
        }
        let old = match ffi::get_authtok(call.pamh, ffi::PAM_OLDAUTHTOK) {
            Ok(old) => old,
            Err(code) => return code,
        };
        return match auth.confirm(user, &old, now()) {
            Ok(LoginOutcome::Success(_)) => PAM_SUCCESS,
            Ok(outcome) => {
                call.log(
                    LOG_NOTICE,
                    &format!("password change for {user} refused: {}", describe(&outcome)),
                );
                PAM_AUTH_ERR
            }
            Err(e) => call.unavailable(&e.to_string()),
        };
    }
    if flags & PAM_UPDATE_AUTHTOK == 0 {
        return PAM_SERVICE_ERR;
    }
    let old = if by_root {
        None
    } else {
        match ffi::get_authtok(call.pamh, ffi::PAM_OLDAUTHTOK) {
            Ok(old) => Some(old),
            Err(code) => return code,
        }
    };
    let new = match ffi::get_authtok(call.pamh, ffi::PAM_AUTHTOK) {
        Ok(new) => new,
        Err(code) => return code,
    };
    let changed = match &old {
        Some(old) => auth.change_password(user, old, &new, now()),
        None => auth.set_password(user, &new, now()),
    };
    match changed {
        Ok(PasswordChange::Changed) => {
            let by = if by_root { " by root" } else { "" };
            call.log(LOG_INFO, &format!("password changed for {user}{by}"));
            PAM_SUCCESS
        }
        Ok(PasswordChange::Refused(violation)) => {
            call.log(
                LOG_NOTICE,
                &format!("new password for {user} refused: {violation}"),
            );
            call.tell(&format!("BAD PASSWORD: {violation}"));
            PAM_AUTHTOK_ERR
        }
        Ok(PasswordChange::Denied(outcome)) => {
            call.log(
                LOG_NOTICE,
                &format!("password change for {user} refused: {}", describe(&outcome)),
            );
            PAM_AUTH_ERR
        }
        Err(e) => {
            call.log(LOG_ERR, &format!("password change for {user} failed: {e}"));
            PAM_AUTHTOK_ERR
        }
    }
}

fn describe(outcome: &LoginOutcome) -> &'static str {
    match outcome {
        LoginOutcome::Success(_) => "success",
        LoginOutcome::UnknownUser => "user not in the database",
        LoginOutcome::WrongPassword { .. } => "wrong current password",
        LoginOutcome::Locked => "account locked",
        LoginOutcome::Inactive => "account disabled",
    }
}

pub fn open_session(pamh: &mut PamHandle, args: &[&CStr], flags: PamFlag) -> PamResultCode {
    let started = std::time::Instant::now();
    let call = match Call::start(pamh, args, flags) {
        Ok(call) => call,
        Err(code) => return code,
    };
    // Root is never one of ours: nothing here may get in its way.
    if call.user == "root" {
        return PAM_IGNORE;
    }
    let config = match call.config() {
        Ok(config) => config,
        Err(why) => {
            return call
                .session_failure(SessionErrorPolicy::Deny, &format!("config unusable: {why}"))
        }
    };
    // The database lookup runs while the bus connection is being made.
    let mut looked_up = None;
    let lookup = || {
        let found = call
            .store(&config)
            .and_then(|store| store.user(&call.user).map_err(|e| e.to_string()));
        looked_up = Some(started.elapsed());
        found
    };
    match apply_slice_of(&Systemd::system(), lookup) {
        Ok(Some(applied)) => {
            let looked_up = looked_up.unwrap_or_default();
            call.debug(&format!(
                "session open took {:.1} ms: {:.1} ms config and database, {:.1} ms more for systemd",
                started.elapsed().as_secs_f64() * 1e3,
                looked_up.as_secs_f64() * 1e3,
                (started.elapsed() - looked_up).as_secs_f64() * 1e3
            ));
            let properties: Vec<String> =
                applied.properties.iter().map(ToString::to_string).collect();
            call.log(
                LOG_INFO,
                &format!(
                    "sized {} for {}: {}",
                    applied.unit,
                    call.user,
                    properties.join(" ")
                ),
            );
            PAM_SUCCESS
        }
        Ok(None) => {
            call.debug("session: user not in the database, ignoring");
            PAM_IGNORE
        }
        Err(LookupOr::Lookup(why)) => call.session_failure(
            config.on_session_error,
            &format!("user database unavailable: {why}"),
        ),
        Err(LookupOr::Apply(e)) => call.session_failure(
            config.on_session_error,
            &format!("cannot apply the limits of {}: {e}", call.user),
        ),
    }
}

pub fn close_session(pamh: &mut PamHandle, args: &[&CStr], flags: PamFlag) -> PamResultCode {
    let call = match Call::start(pamh, args, flags) {
        Ok(call) => call,
        Err(code) => return code,
    };
    let recorded = call.open().and_then(|(_, mut store)| {
        if store.user(&call.user).map_err(|e| e.to_string())?.is_none() {
            return Ok(false);
        }
        store
            .write(|tx| tx.record_logout(&call.user, now()))
            .map_err(|e| e.to_string())?;
        Ok(true)
    });
    match recorded {
        Ok(true) => PAM_SUCCESS,
        Ok(false) => PAM_IGNORE,
        Err(why) => {
            // Closing a session must never fail because of bookkeeping.
            call.log(
                LOG_WARNING,
                &format!("cannot record the logout of {}: {why}", call.user),
            );
            PAM_IGNORE
        }
    }
}
