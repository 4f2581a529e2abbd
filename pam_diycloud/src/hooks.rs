//! The hooks, over a [`PamHandler`] and a [`Host`], so they run the same
//! with libpam and with the tests' scripted handle and clock.
//!
//! Auth and account fail closed: any doubt (bad arguments, an unreadable
//! config or database) denies a user diycloud manages, with the reason in
//! syslog and nothing specific said to the client. Root and the accounts
//! diycloud does not manage are left to the rest of the stack.

use std::ffi::CStr;
use std::path::Path;

use libdiycloud::config::{Config, Reader, SessionErrorPolicy, DEFAULT_CONFIG_PATH, DEFAULT_GROUP};
use libdiycloud::model::events::notice;
use libdiycloud::model::AccountState;
use libdiycloud::ports::Membership;
use libdiycloud::store::{Database, Store};
use libdiycloud::usecases::apply::{self, ApplyReport};
use libdiycloud::usecases::auth::{Authenticator, LoginOutcome, PasswordChange, SetBy};
use pam::constants::{PamFlag, PAM_SILENT};

use crate::cache;
use crate::error::{Done, HookError};
use crate::handle::{Authtok, Host, Level, PamHandler};
use crate::options::Options;

/// What a hook returns.
pub type HookResult = Result<Done, HookError>;

// libpam's chauthtok phases (security/_pam_types.h).
const PAM_PRELIM_CHECK: PamFlag = 0x4000;
const PAM_UPDATE_AUTHTOK: PamFlag = 0x2000;
const PAM_CHANGE_EXPIRED_AUTHTOK: PamFlag = 0x0020;

/// Why the config or database could not be had, and the config where it
/// could (it names the managed group).
type Unopened = (String, Option<Box<Config>>);

/// Everything a hook needs, set up once per call.
struct Call<'h, H: PamHandler, T: Host> {
    pamh: &'h mut H,
    host: &'h T,
    options: Options,
    flags: PamFlag,
    user: String,
}

impl<'h, H: PamHandler, T: Host> Call<'h, H, T> {
    fn start(
        pamh: &'h mut H,
        host: &'h T,
        args: &[&CStr],
        flags: PamFlag,
    ) -> Result<Self, HookError> {
        let options = Options::try_from(args).map_err(|e| {
            pamh.log(Level::Error, &format!("bad module arguments: {e}"));
            HookError::Arguments
        })?;
        // A name that is not UTF-8 becomes one with U+FFFD in it, which no
        // diycloud name has: it takes the unknown-user path like any other.
        let user = match pamh.user() {
            Ok(user) => String::from_utf8_lossy(&user).into_owned(),
            Err(e) => {
                pamh.log(Level::Error, "cannot get the user name");
                return Err(e);
            }
        };
        Ok(Self {
            pamh,
            host,
            options,
            flags,
            user,
        })
    }

    fn log(&self, level: Level, message: &str) {
        self.pamh.log(level, message);
    }

    fn debug(&self, message: &str) {
        if self.options.debug {
            self.log(Level::Debug, message);
        }
    }

    /// Tells the user something, unless the application asked for silence.
    fn tell(&self, message: &str) {
        if self.flags & PAM_SILENT == 0 {
            self.pamh.tell(message);
        }
    }

    fn authtok(&mut self, which: Authtok) -> Result<zeroize::Zeroizing<Vec<u8>>, HookError> {
        self.pamh.authtok(which)
    }

    /// `pam:<service>`, the actor recorded in the audit log.
    fn actor(&self) -> String {
        format!(
            "pam:{}",
            self.pamh.service().unwrap_or_else(|| "unknown".into())
        )
    }

    /// Loads the config named by the arguments.
    fn config(&self) -> Result<Config, String> {
        let (path, explicit) = match &self.options.config {
            Some(path) => (path.as_path(), true),
            None => (Path::new(DEFAULT_CONFIG_PATH), false),
        };
        // Only what a login reads must be right: a bad value in a section
        // of the server's never stops one (`slicectl config check` names it).
        let loaded = Config::load_for(path, explicit, Reader::Module).map_err(|e| e.to_string())?;
        if !loaded.ignored.is_empty() {
            self.debug(&format!(
                "config {}: ignored (not read by logins): {}",
                path.display(),
                loaded.ignored.join("; ")
            ));
        }
        Ok(loaded.config)
    }

    /// Opens the database named by the arguments or the config.
    fn store(&self, config: &Config) -> Result<Store, String> {
        let db = match &self.options.db {
            Some(path) => Database::Sqlite(path.clone()),
            None => config.db.clone(),
        };
        self.debug(&format!("using database {db}"));
        let store = cache::open(&db).map_err(|e| e.to_string())?;
        if let Some(why) = store.as_cluster().and_then(|c| c.offline_reason()) {
            self.log(
                Level::Warning,
                &format!("PostgreSQL {db} is unreachable ({why}): using this node's cache"),
            );
        }
        Ok(store)
    }

    /// Loads the config and opens the database. On failure, the config
    /// where it could be had, for [`Call::unavailable`].
    fn open(&self) -> Result<(Config, Store), Unopened> {
        let config = self.config().map_err(|why| (why, None))?;
        match self.store(&config) {
            Ok(store) => Ok((config, store)),
            Err(why) => Err((why, Some(Box::new(config)))),
        }
    }

    /// Whether the user is one diycloud manages, told without the database:
    /// membership in the managed group (the config's, or the default when
    /// the config itself cannot be read). Any doubt counts as managed.
    fn is_managed(&self, config: Option<&Config>) -> bool {
        if self.user == "root" {
            return false;
        }
        let group = config.map_or(DEFAULT_GROUP, |c| c.group.as_str());
        match self.host.membership(&self.user, group) {
            Ok(Membership::Member) => true,
            Ok(Membership::NotMember | Membership::NoAccount) => false,
            Ok(Membership::NoGroup) => {
                self.log(
                    Level::Error,
                    &format!("the managed group {group} does not exist (run `slicectl init`): every user but root counts as managed"),
                );
                true
            }
            Err(why) => {
                self.log(
                    Level::Error,
                    &format!("cannot tell whether {} is managed: {why}", self.user),
                );
                true
            }
        }
    }

    /// Our config or database cannot be used: a managed user is refused
    /// (`Unavailable`), anyone else is left to the rest of the stack
    /// (`Ok`: the caller's answer for a user who is not ours).
    fn unavailable(&self, why: &str, config: Option<&Config>) -> Result<(), HookError> {
        self.log(Level::Error, &format!("user database unavailable: {why}"));
        if self.is_managed(config) {
            Err(HookError::Unavailable)
        } else {
            self.debug("not a managed user: left to the rest of the stack");
            Ok(())
        }
    }

    /// Session open without a usable config or database: a managed user
    /// meets `policy`, anyone else is left alone.
    fn session_unavailable(
        &self,
        why: &str,
        config: Option<&Config>,
        policy: SessionErrorPolicy,
    ) -> HookResult {
        if self.is_managed(config) {
            return self.session_failure(policy, why);
        }
        self.log(
            Level::Error,
            &format!("{why}; not a managed user, ignoring"),
        );
        Ok(Done::Ignore)
    }

    /// The user's record, through the kept connection (which stays kept).
    fn lookup(&self, config: &Config) -> Result<Option<libdiycloud::model::User>, String> {
        let store = self.store(config)?;
        let found = store.user(&self.user).map_err(|e| e.to_string());
        cache::keep(store);
        found
    }

    /// Session open could not apply the limits: `policy` decides.
    fn session_failure(&self, policy: SessionErrorPolicy, why: &str) -> HookResult {
        match policy {
            SessionErrorPolicy::Deny => {
                self.log(
                    Level::Error,
                    &format!("{why}; login refused (on_session_error = deny)"),
                );
                self.tell("Your resource limits could not be applied, so this login is refused. Please contact your system administrator.");
                Err(HookError::Session)
            }
            SessionErrorPolicy::Allow => {
                self.log(
                    Level::Warning,
                    &format!("{why}; login allowed without limits (on_session_error = allow)"),
                );
                Ok(Done::Success)
            }
        }
    }

    /// The password stage for a user who is not ours (root included). We
    /// stand first in the shipped stack, and pam_unix after us is given
    /// `use_authtok` by pam-auth-update: so, like pam_pwquality, we ask for
    /// the new password (libpam's prompts, typed twice) and pass it on.
    /// The old one pam_unix asks for itself, only where it needs it.
    fn pass_new_password_on(mut self) -> HookResult {
        if self.flags & PAM_UPDATE_AUTHTOK == 0 {
            return Ok(Done::Ignore);
        }
        // libpam stores what was typed as PAM_AUTHTOK; a mismatch or a
        // cancelled prompt ends the change here.
        self.authtok(Authtok::Current)?;
        Ok(Done::Ignore)
    }
}

pub fn authenticate<H: PamHandler, T: Host>(
    pamh: &mut H,
    host: &T,
    args: &[&CStr],
    flags: PamFlag,
) -> HookResult {
    let mut call = Call::start(pamh, host, args, flags)?;
    // Ask for the password before looking anything up, so an unknown user
    // sees exactly the same conversation as a known one.
    let password = call.authtok(Authtok::Current).inspect_err(|e| {
        call.debug(&format!("no password obtained ({:?})", e.code()));
    })?;
    let (config, mut store) = call.open().map_err(|(why, _)| {
        call.log(Level::Error, &format!("user database unavailable: {why}"));
        HookError::Unavailable
    })?;
    let outcome = Authenticator::new(&mut store, &config, call.actor())
        .and_then(|mut auth| auth.login(&call.user, &password, host.now()));
    cache::keep(store);
    let user = &call.user;
    match outcome {
        Ok(LoginOutcome::Success(_)) => {
            call.log(Level::Info, &format!("authentication success for {user}"));
            Ok(Done::Success)
        }
        Ok(LoginOutcome::UnknownUser) => {
            // Not logging the name: a mistyped user name is often a password.
            call.log(
                Level::Notice,
                "authentication failure: user not in the database",
            );
            Err(HookError::UnknownUser)
        }
        Ok(LoginOutcome::WrongPassword {
            failures,
            locked_now,
        }) => {
            call.log(
                Level::Notice,
                &format!("authentication failure for {user}: wrong password ({failures} in a row)"),
            );
            if locked_now {
                call.log(
                    Level::Warning,
                    &format!("{user} is now locked after {failures} failures"),
                );
            }
            Err(HookError::AuthFailed)
        }
        Ok(LoginOutcome::Locked) => {
            call.log(
                Level::Notice,
                &format!(
                    "authentication refused for {user}: account locked after repeated failures"
                ),
            );
            Err(HookError::AuthFailed)
        }
        Ok(LoginOutcome::Inactive) => {
            call.log(
                Level::Notice,
                &format!("authentication refused for {user}: account disabled"),
            );
            Err(HookError::AuthFailed)
        }
        Err(e) => {
            call.log(
                Level::Error,
                &format!("authentication failure for {user}: {e}"),
            );
            Err(HookError::Unavailable)
        }
    }
}

pub fn setcred<H: PamHandler, T: Host>(
    pamh: &mut H,
    host: &T,
    args: &[&CStr],
    flags: PamFlag,
) -> HookResult {
    let call = Call::start(pamh, host, args, flags)?;
    // setcred grants nothing of ours yet: it only says whether the user is ours.
    let found = call.config().and_then(|config| call.lookup(&config));
    match found {
        Ok(Some(_)) => Ok(Done::Success),
        Ok(None) => Ok(Done::Ignore),
        Err(why) => {
            call.log(
                Level::Error,
                &format!("setcred: user database unavailable: {why}"),
            );
            Ok(Done::Ignore)
        }
    }
}

pub fn account<H: PamHandler, T: Host>(
    pamh: &mut H,
    host: &T,
    args: &[&CStr],
    flags: PamFlag,
) -> HookResult {
    let call = Call::start(pamh, host, args, flags)?;
    let (config, mut store) = match call.open() {
        Ok(opened) => opened,
        Err((why, config)) => {
            call.unavailable(&why, config.as_deref())?;
            return Ok(Done::Ignore);
        }
    };
    let state = Authenticator::new(&mut store, &config, call.actor())
        .and_then(|auth| auth.account_state(&call.user, host.now()));
    cache::keep(store);
    let user = &call.user;
    match state {
        Ok(Some(AccountState::Active)) => Ok(Done::Success),
        Ok(None) => {
            call.debug("account: user not in the database, ignoring");
            Ok(Done::Ignore)
        }
        Ok(Some(AccountState::Disabled | AccountState::Unfinished(_))) => {
            call.log(Level::Notice, &format!("account {user} is disabled"));
            call.tell("Your account is disabled; please contact your system administrator.");
            Err(HookError::Denied)
        }
        Ok(Some(AccountState::Expired)) => {
            call.log(Level::Notice, &format!("account {user} has expired"));
            call.tell("Your account has expired; please contact your system administrator.");
            Err(HookError::Expired)
        }
        Ok(Some(AccountState::Locked)) => {
            // Whatever module authenticated them (a Unix password, a key):
            // a locked diycloud user does not get in.
            call.log(
                Level::Notice,
                &format!("account {user} is locked after repeated failed logins"),
            );
            call.tell("Your account is locked after too many failed logins; try again later or contact your system administrator.");
            Err(HookError::Denied)
        }
        Err(e) => call
            .unavailable(&e.to_string(), Some(&config))
            .map(|()| Done::Ignore),
    }
}

pub fn chauthtok<H: PamHandler, T: Host>(
    pamh: &mut H,
    host: &T,
    args: &[&CStr],
    flags: PamFlag,
) -> HookResult {
    let mut call = Call::start(pamh, host, args, flags)?;
    if call.user == "root" {
        return call.pass_new_password_on();
    }
    let (config, mut store) = match call.open() {
        Ok(opened) => opened,
        Err((why, config)) => {
            call.unavailable(&why, config.as_deref())?;
            return call.pass_new_password_on();
        }
    };
    match store.user(&call.user) {
        Ok(Some(_)) => {}
        Ok(None) => return call.pass_new_password_on(),
        Err(e) => {
            call.unavailable(&e.to_string(), Some(&config))?;
            return call.pass_new_password_on();
        }
    }
    let actor = call.actor();
    let mut auth = Authenticator::new(&mut store, &config, actor).map_err(|e| {
        call.log(Level::Error, &format!("user database unavailable: {e}"));
        HookError::Unavailable
    })?;
    let user = call.user.clone();
    let now = host.now();
    // As pam_unix does: root (the real uid: `passwd alice`, `chpasswd`) sets
    // a password without the old one, except when it changes its own
    // expired password at login.
    let by_root = host.caller_is_root() && flags & PAM_CHANGE_EXPIRED_AUTHTOK == 0;

    if flags & PAM_PRELIM_CHECK != 0 {
        if by_root {
            return Ok(Done::Success);
        }
        let old = call.authtok(Authtok::Old)?;
        return match auth.confirm(&user, &old, now) {
            Ok(LoginOutcome::Success(_)) => Ok(Done::Success),
            Ok(outcome) => {
                call.log(
                    Level::Notice,
                    &format!("password change for {user} refused: {}", describe(&outcome)),
                );
                Err(HookError::AuthFailed)
            }
            Err(e) => {
                call.log(Level::Error, &format!("user database unavailable: {e}"));
                Err(HookError::Unavailable)
            }
        };
    }
    if flags & PAM_UPDATE_AUTHTOK == 0 {
        return Err(HookError::Service);
    }
    let old = if by_root {
        None
    } else {
        Some(call.authtok(Authtok::Old)?)
    };
    let new = call.authtok(Authtok::Current)?;
    let changed = match &old {
        Some(old) => auth.change_password(&user, old, &new, now),
        None => auth.set_password(&user, &new, now, SetBy::Root),
    };
    match changed {
        Ok(PasswordChange::Changed) => {
            let by = if by_root { " by root" } else { "" };
            call.log(Level::Info, &format!("password changed for {user}{by}"));
            Ok(Done::Success)
        }
        Ok(PasswordChange::Refused(violation)) => {
            call.log(
                Level::Notice,
                &format!("new password for {user} refused: {violation}"),
            );
            call.tell(&format!("BAD PASSWORD: {violation}"));
            Err(HookError::NewPassword)
        }
        Ok(PasswordChange::Denied(outcome)) => {
            call.log(
                Level::Notice,
                &format!("password change for {user} refused: {}", describe(&outcome)),
            );
            Err(HookError::AuthFailed)
        }
        Err(e) => {
            call.log(
                Level::Error,
                &format!("password change for {user} failed: {e}"),
            );
            Err(HookError::NewPassword)
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

pub fn open_session<H: PamHandler, T: Host>(
    pamh: &mut H,
    host: &T,
    args: &[&CStr],
    flags: PamFlag,
) -> HookResult {
    let mut call = Call::start(pamh, host, args, flags)?;
    // Root is never one of ours: nothing here may get in its way.
    if call.user == "root" {
        return Ok(Done::Ignore);
    }
    let config = match call.config() {
        Ok(config) => config,
        Err(why) => {
            let why = format!("config unusable: {why}");
            return call.session_unavailable(&why, None, SessionErrorPolicy::Deny);
        }
    };
    // The database lookup runs while the connection to systemd is made.
    let mut looked_up = None;
    let lookup = || {
        let found = call.lookup(&config);
        looked_up = Some(host.elapsed());
        found
    };
    let report = match apply::apply_looked_up(host.ports(), &config, lookup) {
        Ok(Some(report)) => report,
        Ok(None) => {
            call.debug("session: user not in the database, ignoring");
            return Ok(Done::Ignore);
        }
        Err(why) => {
            let why = format!("user database unavailable: {why}");
            return call.session_unavailable(&why, Some(&config), config.on_session_error);
        }
    };
    let looked_up = looked_up.unwrap_or_default();
    let elapsed = host.elapsed();
    call.debug(&format!(
        "session open took {:.1} ms: {:.1} ms config and database, {:.1} ms more for systemd and quotas",
        elapsed.as_secs_f64() * 1e3,
        looked_up.as_secs_f64() * 1e3,
        elapsed.saturating_sub(looked_up).as_secs_f64() * 1e3
    ));
    if let Some(error) = report.error() {
        return call.session_failure(
            config.on_session_error,
            &format!("cannot apply the limits of {}: {error}", call.user),
        );
    }
    if let Some(reason) = report.skipped() {
        return call.session_failure(
            config.on_session_error,
            &format!("cannot apply the limits of {}: {reason}", call.user),
        );
    }
    put_environment(&mut call, &report)?;
    // One line for every step: each syslog line is a round trip to journald
    // that the login waits for (about 1 ms each under the VM tier's TCG).
    call.log(
        Level::Info,
        &format!("applied for {}: {}", call.user, report.applied().join("; ")),
    );
    if config.events.notify_at_login
        && call.flags & PAM_SILENT == 0
        && may_show_notices(call.pamh.tty().as_deref())
    {
        notify_limit_events(&call, &config);
    }
    Ok(Done::Success)
}

/// Whether a session on `tty` (`PAM_TTY`) may reach a person: a terminal,
/// or sshd's "ssh" (sshd opens the session before the client asks for a
/// terminal, so a login and `ssh host command` look alike here; sshd shows
/// the notice only to the first). Not cron, an X display, or no terminal
/// at all (JupyterHub's pamela): those would use the notice up unseen.
fn may_show_notices(tty: Option<&str>) -> bool {
    match tty {
        None | Some("" | "cron") => false,
        Some(display) if display.starts_with(':') => false,
        Some(_) => true,
    }
}

/// Tells the user what the kernel enforced since their last login (OOM
/// kills, throttling), once: the events are marked shown. A silent login
/// (PAM_SILENT) leaves them for the next. Never fails the session.
fn notify_limit_events<H: PamHandler, T: Host>(call: &Call<'_, H, T>, config: &Config) {
    let taken = call.store(config).and_then(|mut store| {
        // Most logins have nothing to hear: a read tells, and spares them a
        // write. (A take marks every row shown, and new rows come in
        // unshown and newest, so the newest tells for all.)
        // The events are on the server: a node cut off from it says nothing.
        let pending = match store.limit_events(Some(&call.user), 1) {
            Ok(newest) => Ok(newest.first().is_some_and(|e| !e.shown)),
            Err(e) if e.is_unreachable() => Ok(false),
            Err(e) => Err(e.to_string()),
        };
        let taken = match pending {
            Ok(true) => store
                .write(|tx| tx.take_unshown_events(&call.user))
                .map_err(|e| e.to_string()),
            Ok(false) => Ok(Vec::new()),
            Err(why) => Err(why),
        };
        cache::keep(store);
        taken
    });
    match taken {
        Ok(events) => {
            if let Some(text) = notice(&events) {
                call.pamh.inform(&text);
            }
        }
        Err(why) => call.log(
            Level::Warning,
            &format!("cannot read the limit events of {}: {why}", call.user),
        ),
    }
}

/// The session's environment from the report (e.g. the granted GPUs).
fn put_environment<H: PamHandler, T: Host>(
    call: &mut Call<'_, H, T>,
    report: &ApplyReport,
) -> Result<(), HookError> {
    for (name, value) in &report.env {
        if let Err(e) = call.pamh.putenv(name, value) {
            call.log(
                Level::Error,
                &format!("cannot set {name} for the session: {:?}", e.code()),
            );
            return Err(HookError::Session);
        }
    }
    Ok(())
}

pub fn close_session<H: PamHandler, T: Host>(
    pamh: &mut H,
    host: &T,
    args: &[&CStr],
    flags: PamFlag,
) -> HookResult {
    let call = Call::start(pamh, host, args, flags)?;
    let recorded = call
        .open()
        .map_err(|(why, _)| why)
        .and_then(|(_, mut store)| {
            if store.user(&call.user).map_err(|e| e.to_string())?.is_none() {
                cache::keep(store);
                return Ok(false);
            }
            store
                .write(|tx| tx.record_logout(&call.user, host.now()))
                .map_err(|e| e.to_string())?;
            cache::keep(store);
            Ok(true)
        });
    match recorded {
        Ok(true) => Ok(Done::Success),
        Ok(false) => Ok(Done::Ignore),
        Err(why) => {
            // Closing a session must never fail because of bookkeeping.
            call.log(
                Level::Warning,
                &format!("cannot record the logout of {}: {why}", call.user),
            );
            Ok(Done::Ignore)
        }
    }
}

#[cfg(test)]
mod tests;
