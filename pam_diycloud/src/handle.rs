//! What the hooks need from libpam and from the machine, as two small
//! traits: the real ones are in `ffi` and `lib.rs`, the tests' are scripted.

use std::time::Duration;

use libdiycloud::model::Timestamp;
use libdiycloud::ports::{AccountPort, GpuPort, Membership, Ports, QuotaPort, SlicePort};

use crate::error::HookError;
use zeroize::Zeroizing;

/// Which password libpam is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authtok {
    /// `PAM_AUTHTOK`: the password at login, the new one in `chauthtok`.
    Current,
    /// `PAM_OLDAUTHTOK`: the current one in `chauthtok`.
    Old,
}

/// Syslog priorities, as `pam_syslog` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Notice,
    Info,
    Debug,
}

impl Level {
    pub fn priority(self) -> libc::c_int {
        match self {
            Level::Error => libc::LOG_ERR,
            Level::Warning => libc::LOG_WARNING,
            Level::Notice => libc::LOG_NOTICE,
            Level::Info => libc::LOG_INFO,
            Level::Debug => libc::LOG_DEBUG,
        }
    }
}

/// The PAM handle of one hook call.
pub trait PamHandler {
    /// The user name, as bytes (a name that is not UTF-8 takes the unknown
    /// user's path, it does not fail early).
    fn user(&mut self) -> Result<Vec<u8>, HookError>;
    /// A password: the stacked one or through the conversation (with a
    /// retype check for a new one). Wiped on drop.
    fn authtok(&mut self, which: Authtok) -> Result<Zeroizing<Vec<u8>>, HookError>;
    /// `PAM_SERVICE`: sshd, login, ...
    fn service(&self) -> Option<String>;
    /// `PAM_TTY`: the terminal (`/dev/pts/3`, `tty1`), `ssh` for every
    /// sshd session, `cron`, or none (JupyterHub's pamela).
    fn tty(&self) -> Option<String>;
    /// Shows the user an error message through the conversation.
    fn tell(&self, message: &str);
    /// Shows the user a notice (`PAM_TEXT_INFO`): sshd prints it after the
    /// login, as it does the message of the day.
    fn inform(&self, message: &str);
    /// Logs through `pam_syslog` (authpriv). Never a secret.
    fn log(&self, level: Level, message: &str);
    /// Sets a variable in the session's environment.
    fn putenv(&mut self, name: &str, value: &str) -> Result<(), HookError>;
}

/// The machine around a hook call: the clock, the caller, the account
/// database and the outside systems of apply.
pub trait Host {
    type Slice: SlicePort;
    type Accounts: AccountPort;
    type Quotas: QuotaPort;
    type Gpus: GpuPort;
    fn now(&self) -> Timestamp;
    /// Time since the hook began (for the `debug` timing).
    fn elapsed(&self) -> Duration;
    /// Whether the calling process's real uid is root (`passwd NAME`).
    fn caller_is_root(&self) -> bool;
    /// Whether the account `user` is in `group`.
    fn membership(&self, user: &str, group: &str) -> Result<Membership, String>;
    fn ports(&self) -> &Ports<Self::Slice, Self::Accounts, Self::Quotas, Self::Gpus>;
}
