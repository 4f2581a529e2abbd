//! The admin use cases: add, modify, set a password, unlock, delete, list,
//! show, apply and usage. `slicectl` and (later) the REST API call these and
//! only parse arguments and print; every rule, write and audit entry is here.
//!
//! `add` and `delete` with a system account span the database and the
//! account files: they record their intent first and are finished by running
//! them again (see [`Admin::add`] and [`Admin::delete`]).

use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::config::{Config, SessionErrorPolicy, WebLink};
use crate::hashing::{Hasher, PasswordError};
use crate::model::events::LimitEvent;
use crate::model::gpu::{user_gpus, GpuUse, UserGpu};
use crate::model::limits::{Allocation, AllocationError, LimitChanges};
use crate::model::slice::SliceUsage;
/// What `modify` takes: defined in the model, which the store writes too.
pub use crate::model::user::UserChanges;
use crate::model::{AccountState, Date, Pending, Role, Timestamp, User, Username};
use crate::ports::{
    AccountError, AccountPort, GpuPort, Membership, PortError, Ports, QuotaPort, SlicePort,
};
use crate::store::{AuditEntry, Database, NewUser, Store, StoreError};
use crate::usecases::apply::{self, ApplyReport, DiskUsage};
use crate::usecases::auth::{self, AuthError, Authenticator, PasswordChange, SetBy};

mod usage;

pub use usage::{DiskEntry, EventEntry, SliceFigures, UsageEntry};

/// Who is to blame for a failure, which decides the exit status and the
/// HTTP status: the caller (a bad request) or the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is invalid whatever the state: exit 2, HTTP 422.
    Usage,
    /// It names a user that does not exist: exit 1, HTTP 404.
    NotFound,
    /// It clashes with the current state (exists, unfinished): exit 1, HTTP 409.
    Conflict,
    /// Only root may decide it (linking an existing account from the web):
    /// exit 1, HTTP 403.
    Forbidden,
    /// Something failed while doing it: exit 1, HTTP 500.
    Runtime,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request itself is wrong; the message says how.
    #[error("{0}")]
    Invalid(String),
    #[error("no such user: {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A decision this front door may not take (the message says who may).
    #[error("{0}")]
    Forbidden(String),
    /// The new password could not be read (a terminal or stdin failure).
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Port(#[from] PortError),
}

impl From<AuthError> for AdminError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Store(e) => e.into(),
            AuthError::Password(e) => e.into(),
        }
    }
}

/// Limits that contradict one another are a bad request.
impl From<AllocationError> for AdminError {
    fn from(e: AllocationError) -> Self {
        AdminError::Invalid(e.to_string())
    }
}

impl AdminError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            AdminError::Invalid(_) => ErrorKind::Usage,
            AdminError::NotFound(_) | AdminError::Store(StoreError::UserNotFound(_)) => {
                ErrorKind::NotFound
            }
            AdminError::Conflict(_)
            | AdminError::Store(StoreError::UserExists(_))
            | AdminError::Account(AccountError::Exists { .. } | AccountError::Root { .. }) => {
                ErrorKind::Conflict
            }
            AdminError::Account(AccountError::ServiceAccount { .. }) => ErrorKind::Usage,
            AdminError::Forbidden(_) => ErrorKind::Forbidden,
            AdminError::Input(_)
            | AdminError::Store(_)
            | AdminError::Account(_)
            | AdminError::Password(_)
            | AdminError::Port(_) => ErrorKind::Runtime,
        }
    }
}

/// A new password, asked for only once the request has been checked (a
/// prompt must not come before "user already exists").
pub type PasswordSource<'p> = &'p mut dyn FnMut() -> Result<Zeroizing<Vec<u8>>, AdminError>;

// The API's schema of it is derived from here (feature `openapi`), with
// one property per limit of `LIMITS` added by the server.
/// A user as every front door shows them; field names follow the CLI flags.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = User))]
pub struct UserView {
    pub username: String,
    pub uid: Option<u32>,
    /// Whether `slicectl` created the system account.
    pub system_account: bool,
    pub role: Role,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub active: bool,
    pub expires: Option<String>,
    pub expired: bool,
    pub locked: bool,
    pub failed_logins: u32,
    pub created_at: String,
    pub updated_at: String,
    pub last_login: Option<String>,
    pub last_logout: Option<String>,
    pub password_changed_at: Option<String>,
    /// One key per limit ([`crate::model::limits::LIMITS`]).
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub allocation: Allocation,
    /// `active`, `disabled`, `expired`, `locked`, `unfinished add|del`.
    pub state: String,
    pub pending: Option<Pending>,
}

impl UserView {
    pub fn of(user: &User, config: &Config, now: Timestamp) -> Self {
        let text = |t: Option<Timestamp>| t.map(|t| t.to_string());
        Self {
            username: user.username.to_string(),
            uid: user.uid,
            system_account: user.owns_system_account,
            role: user.role,
            email: user.email.clone(),
            full_name: user.full_name.clone(),
            active: user.active,
            expires: user.expires.map(|d| d.to_string()),
            expired: user.is_expired(now),
            locked: config.lockout.is_locked(&user.failures, now),
            failed_logins: user.failures.count,
            created_at: user.created_at.to_string(),
            updated_at: user.updated_at.to_string(),
            last_login: text(user.last_login),
            last_logout: text(user.last_logout),
            password_changed_at: text(user.password_changed_at),
            allocation: user.allocation.clone(),
            state: user.state(&config.lockout, now).to_string(),
            pending: user.pending,
        }
    }

    /// The record as the audit log keeps it: without what changes by itself.
    fn audit_detail(&self) -> Value {
        let mut detail = json!(self);
        if let Some(fields) = detail.as_object_mut() {
            for volatile in [
                "created_at",
                "updated_at",
                "last_login",
                "last_logout",
                "password_changed_at",
                "locked",
                "expired",
                "failed_logins",
                "state",
                "pending",
            ] {
                fields.remove(volatile);
            }
        }
        detail
    }
}

/// Whether `user add` makes the system account or links one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemAccount {
    /// `useradd` it (the default).
    Create,
    /// Only the record; link an existing account of the same name, if any.
    /// `allow_service_account`: also one below UID_MIN.
    Link { allow_service_account: bool },
}

/// `user add`'s request.
#[derive(Debug, Clone)]
pub struct AddUser {
    pub name: Username,
    pub role: Role,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub expires: Option<Date>,
    /// Over the config's defaults.
    pub limits: LimitChanges,
    pub system_account: SystemAccount,
}

/// What `add` did.
#[derive(Debug, Clone)]
pub struct Added {
    pub user: UserView,
    /// It finished an add that an earlier run began.
    pub resumed: bool,
    pub warnings: Vec<String>,
    /// The allocation applied at once.
    pub applied: ApplyReport,
}

/// What `relink` did.
#[derive(Debug, Clone)]
pub struct Relinked {
    /// The uid the record held.
    pub before: Option<u32>,
    /// The uid it holds now (the account's).
    pub uid: u32,
    /// The allocation applied to that uid's slice.
    pub applied: ApplyReport,
}

/// What `modify` did.
#[derive(Debug, Clone)]
pub struct Modified {
    pub user: UserView,
    pub warnings: Vec<String>,
    /// Where the limits changed: applying them at once.
    pub applied: Option<ApplyReport>,
}

/// What `delete` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deleted {
    pub system_account_removed: bool,
    pub home_removed: bool,
    /// `remove_home` was asked for an account slicectl did not create.
    pub home_left: bool,
    /// Taking the user's disk quota limits off (one step per filesystem).
    pub quota: ApplyReport,
}

/// A user's usage: their slice (`None` without a system account) and
/// their disk on each configured filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserUsage {
    pub username: String,
    pub usage: Option<SliceUsage>,
    pub disk: Vec<DiskUsage>,
    /// GPU memory their processes hold, per GPU that has any.
    pub gpus: Vec<UserGpu>,
    /// Their latest limit events (OOM kills, throttling), newest first.
    pub events: Vec<LimitEvent>,
    /// GPUs of this node granted to them by name and unused for at least
    /// `[gpus] idle_after`.
    pub idle_gpus: Vec<IdleGpu>,
    /// Why the node's GPU figures could not be read (a broken driver:
    /// device nodes but no working NVML); the rest is read as usual.
    pub gpu_unavailable: Option<String>,
}

/// A GPU granted by name that its user has not used for a while.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdleGpu {
    /// Its UUID (`index N` where the node does not know it).
    pub gpu: String,
    /// When a process of theirs was last seen on it (RFC 3339); `null`:
    /// never since it was granted.
    pub last_used: Option<String>,
    /// Seconds without a process of theirs on it.
    pub idle_seconds: u64,
}

/// `uses` (one user's) that are this node's and idle at `now` past
/// `idle_after` seconds (0: none are).
pub fn idle_gpus(uses: &[GpuUse], node: &str, now: Timestamp, idle_after: u64) -> Vec<IdleGpu> {
    if idle_after == 0 {
        return Vec::new();
    }
    uses.iter()
        .filter(|u| u.node == node && u.idle_for(now) >= idle_after)
        .map(|u| IdleGpu {
            gpu: u.gpu.clone(),
            last_used: u.last_used.map(|t| t.to_string()),
            idle_seconds: u.idle_for(now),
        })
        .collect()
}

/// How many limit events `usage` shows per user.
pub const USAGE_EVENTS: u32 = 20;

/// The admin use cases over one store, acting as `actor` at `now`.
pub struct Admin<'a, S, A, Q, G> {
    store: &'a mut Store,
    config: &'a Config,
    ports: &'a Ports<S, A, Q, G>,
    actor: &'a str,
    now: Timestamp,
    door: Door<'a>,
}

/// Through which door a request came, for the decisions that only root may
/// take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door<'a> {
    /// slicectl, run by root.
    Root,
    /// The REST API or the portal: an admin of diycloud, not of the node,
    /// logged in as `caller`.
    Web { caller: &'a str },
}

impl<'a, S: SlicePort, A: AccountPort, Q: QuotaPort, G: GpuPort> Admin<'a, S, A, Q, G> {
    pub fn new(
        store: &'a mut Store,
        config: &'a Config,
        ports: &'a Ports<S, A, Q, G>,
        actor: &'a str,
        now: Timestamp,
    ) -> Self {
        Self {
            store,
            config,
            ports,
            actor,
            now,
            door: Door::Root,
        }
    }

    /// The same use cases for an admin of the REST API or the portal: an
    /// admin of diycloud's users, not root. Linking an existing system
    /// account (taking over its password and logins) is then allowed only
    /// as far as `[accounts] link_from_web` says.
    /// `caller` is the admin's own user name: they may not disable,
    /// demote or delete themself (another admin must), so that the last
    /// admin cannot lock everyone out by a slip.
    #[must_use]
    pub fn from_the_web(mut self, caller: &'a str) -> Self {
        self.door = Door::Web { caller };
        self
    }

    /// Refuses a change of the web caller's own account that would take
    /// their admin rights away (`what` says which).
    fn not_themself(&self, name: &str, what: &str) -> Result<(), AdminError> {
        match self.door {
            Door::Web { caller } if caller == name => Err(AdminError::Conflict(format!(
                "an admin cannot {what} themself: another admin must"
            ))),
            _ => Ok(()),
        }
    }

    fn view(&self, user: &User) -> UserView {
        UserView::of(user, self.config, self.now)
    }

    fn existing(&self, name: &str) -> Result<User, AdminError> {
        self.store
            .user(name)?
            .ok_or_else(|| AdminError::NotFound(name.into()))
    }

    /// A `--gpus` list names only GPUs this node has (`none` and `all`
    /// always pass): checked when it is granted, so a typo is a usage error
    /// now rather than a failed login later.
    fn check_gpus(&self, limits: &LimitChanges) -> Result<(), AdminError> {
        let Some(list) = &limits.gpus else {
            return Ok(());
        };
        let node = self.ports.gpu.node()?;
        crate::model::gpu::granted(list, &node.gpus)
            .map(|_| ())
            .map_err(|e| AdminError::Invalid(format!("--gpus: {e}")))
    }

    /// Warnings for valid values that are probably a mistake.
    fn warnings(&self, limits: &LimitChanges, expires: Option<Date>) -> Vec<String> {
        let mut warnings = limits.warnings();
        if let Some(date) = expires.filter(|d| self.now >= d.start()) {
            warnings.push(format!(
                "the expiry date {date} has passed: the account cannot be used"
            ));
        }
        warnings
    }

    /// `user add`. With a system account this spans two resources, the
    /// database and the account files, so it goes: (1) the record, marked
    /// `pending = add`; (2) `useradd` (into the managed group); (3) the uid,
    /// mark cleared. Killed at any point, running the same request again
    /// finishes it (and `delete` removes what there is): a pending record
    /// never logs in. Then the allocation is applied.
    pub fn add(
        &mut self,
        request: &AddUser,
        password: PasswordSource<'_>,
    ) -> Result<Added, AdminError> {
        let name = request.name.as_str();
        let creates_account = request.system_account == SystemAccount::Create;
        let resuming = match self.store.user(name)? {
            None => false,
            Some(user) if user.pending == Some(Pending::Add) && creates_account => true,
            Some(user) if user.pending == Some(Pending::Del) => {
                return Err(AdminError::Conflict(format!(
                    "user {name} is being deleted (an earlier `slicectl user del {name}` was interrupted): run it again to finish"
                )))
            }
            Some(_) => return Err(AdminError::Conflict(format!("user {name} already exists"))),
        };
        let accounts = &self.ports.accounts;
        let existing_uid = accounts.uid(name)?;
        if let Some(uid) = existing_uid {
            check_existing_account(accounts, name, uid, resuming, request.system_account)?;
            if matches!(self.door, Door::Web { .. }) && !resuming {
                check_web_link(accounts, name, uid, self.config.link_from_web)?;
            }
        }
        self.check_gpus(&request.limits)?;
        let allocation = request.limits.applied_to(&self.config.defaults);
        allocation.check()?;
        let warnings = self.warnings(&request.limits, request.expires);
        let password = password()?;
        let hasher = Hasher::new(self.config.hash)?;
        let password_hash = auth::hash_new_password(&hasher, &self.config.password, &password)?
            .map_err(|v| AdminError::Invalid(format!("password refused: {v}")))?;
        let new = NewUser {
            username: request.name.clone(),
            password_hash,
            role: request.role,
            email: request.email.clone(),
            full_name: request.full_name.clone(),
            expires: request.expires,
            allocation,
            uid: existing_uid.filter(|_| !creates_account),
            owns_system_account: creates_account,
            pending: creates_account.then_some(Pending::Add),
        };

        // (1) The record (a resumed add replaces the interrupted one's). A
        // linked account joins the managed group in the same step: if that
        // fails, the record goes too.
        let (now, actor, group) = (self.now, self.actor, self.config.group.as_str());
        let (config, accounts) = (self.config, &self.ports.accounts);
        let mut user = self.store.write(|tx| {
            if resuming {
                tx.delete_user(name)?;
            }
            let user = tx.insert_user(&new, now)?;
            if !creates_account {
                if user.uid.is_some() {
                    accounts.ensure_group(group)?;
                    accounts.add_to_group(name, group)?;
                }
                let detail = UserView::of(&user, config, now).audit_detail();
                tx.audit(now, actor, "user.add", name, &detail)?;
            }
            Ok::<_, AdminError>(user)
        })?;
        if creates_account {
            user = self.create_account(&new, existing_uid)?;
        }
        let applied = apply::apply(self.ports, self.config, &user);
        Ok(Added {
            user: self.view(&user),
            resumed: resuming,
            warnings,
            applied,
        })
    }

    /// Steps (2) and (3) of `add`.
    fn create_account(
        &mut self,
        new: &NewUser,
        existing_uid: Option<u32>,
    ) -> Result<User, AdminError> {
        let name = new.username.as_str();
        let group = self.config.group.as_str();
        // (2) The account. One that exists now was made by the interrupted
        // run this one resumes; it joins the group if it had not yet.
        let accounts = &self.ports.accounts;
        let made = match existing_uid {
            Some(uid) => accounts
                .ensure_group(group)
                .and_then(|_| accounts.add_to_group(name, group))
                .map(|()| uid),
            None => accounts.ensure_group(group).and_then(|_| {
                accounts.create(name, new.full_name.as_deref(), &self.config.shell, group)
            }),
        };
        let uid = match made {
            Ok(uid) => uid,
            Err(e) => {
                // Where no account came of it, take the record back out;
                // where one did (an earlier run's useradd, still going),
                // the next run adopts it.
                if matches!(accounts.uid(name), Ok(None)) {
                    let _ = self.store.write(|tx| tx.delete_user(name));
                }
                return Err(e.into());
            }
        };
        // (3) Done.
        let (now, actor, config) = (self.now, self.actor, self.config);
        self.store.write(|tx| {
            tx.set_system_account(name, uid, true)?;
            tx.set_pending(name, None)?;
            let user = tx.user(name)?;
            let detail = UserView::of(&user, config, now).audit_detail();
            tx.audit(now, actor, "user.add", name, &detail)?;
            Ok::<_, AdminError>(user)
        })
    }

    /// `user mod`: the changes in one transaction (with the passwd comment of
    /// an account slicectl made); changed limits are applied at once.
    pub fn modify(&mut self, name: &str, changes: &UserChanges) -> Result<Modified, AdminError> {
        match (changes.active, changes.role) {
            (Some(false), _) => self.not_themself(name, "disable")?,
            (_, Some(Role::User)) => self.not_themself(name, "demote")?,
            _ => {}
        }
        if changes.is_empty() {
            return Err(AdminError::Invalid(
                "nothing to change: give at least one option (see `slicectl user mod --help`)"
                    .into(),
            ));
        }
        self.check_gpus(&changes.limits)?;
        let warnings = self.warnings(&changes.limits, changes.expires.flatten());
        let (now, actor, accounts) = (self.now, self.actor, &self.ports.accounts);
        let user = self.store.write(|tx| {
            let Some((user, _)) = tx.credentials(name)? else {
                return Err(AdminError::NotFound(name.into()));
            };
            if let Some(pending) = user.pending {
                return Err(AdminError::Conflict(format!(
                    "user {name} has an unfinished `user {}`: run `slicectl user {} {name}` again first",
                    pending.as_str(),
                    pending.as_str()
                )));
            }
            let detail = tx.update_user(name, changes, now)?;
            tx.audit(now, actor, "user.mod", name, &detail)?;
            let user = tx.user(name)?;
            // Checked on the record as it now stands: `--memory` alone may
            // fall under a soft limit set before. An error rolls it back.
            user.allocation.check()?;
            // A failing usermod rolls the whole change back.
            if let (Some(full_name), true) = (&changes.full_name, user.owns_system_account) {
                accounts.set_full_name(name, full_name.as_deref().unwrap_or(""))?;
            }
            Ok::<_, AdminError>(user)
        })?;
        let applied =
            (!changes.limits.is_empty()).then(|| apply::apply(self.ports, self.config, &user));
        Ok(Modified {
            user: self.view(&user),
            warnings,
            applied,
        })
    }

    /// `user passwd`: the same set-password path as root's `passwd NAME`
    /// through PAM (policy, hash, audit), recorded as set by an admin.
    pub fn set_password(
        &mut self,
        name: &str,
        password: PasswordSource<'_>,
    ) -> Result<(), AdminError> {
        self.existing(name)?;
        let password = password()?;
        let mut auth = Authenticator::new(&mut *self.store, self.config, self.actor)?;
        match auth.set_password(name, &password, self.now, SetBy::Admin)? {
            PasswordChange::Changed => Ok(()),
            PasswordChange::Refused(v) => {
                Err(AdminError::Invalid(format!("password refused: {v}")))
            }
            // Only a change that checks the old password is denied.
            PasswordChange::Denied(_) => Err(AdminError::Conflict(format!(
                "the password of {name} cannot be set now"
            ))),
        }
    }

    /// `user relink`: records the uid this node's accounts give `name` now
    /// (after the account was made again, or to adopt a cluster's uid).
    /// Root's decision: the user's limits then bind to that account.
    pub fn relink(&mut self, name: &str) -> Result<Relinked, AdminError> {
        if matches!(self.door, Door::Web { .. }) {
            return Err(AdminError::Forbidden(format!(
                "relinking {name} to a system account is root's decision: run `slicectl user relink {name}` as root"
            )));
        }
        let user = self.existing(name)?;
        let Some(uid) = self.ports.accounts.uid(name)? else {
            return Err(AdminError::Conflict(format!(
                "there is no system account {name} on this node to link"
            )));
        };
        if uid == 0 {
            return Err(AccountError::Root { name: name.into() }.into());
        }
        let (now, actor) = (self.now, self.actor);
        let owns = user.owns_system_account;
        self.store.write(|tx| {
            tx.set_system_account(name, uid, owns)?;
            tx.audit(
                now,
                actor,
                "user.relink",
                name,
                &json!({"uid_before": user.uid, "uid": uid}),
            )
        })?;
        let before = user.uid;
        let user = self.existing(name)?;
        let applied = apply::apply(self.ports, self.config, &user);
        Ok(Relinked {
            before,
            uid,
            applied,
        })
    }

    /// `user unlock`: clears the failure count; returns whether it was locked.
    pub fn unlock(&mut self, name: &str) -> Result<bool, AdminError> {
        let (now, actor, lockout) = (self.now, self.actor, self.config.lockout);
        self.store.write(|tx| {
            let Some((user, _)) = tx.credentials(name)? else {
                return Err(AdminError::NotFound(name.into()));
            };
            let was_locked = lockout.is_locked(&user.failures, now);
            tx.set_failures(name, &Default::default(), now)?;
            tx.audit(
                now,
                actor,
                "user.unlock",
                name,
                &json!({"failures": user.failures.count, "was_locked": was_locked}),
            )?;
            Ok(was_locked)
        })
    }

    /// `user del`. For an account slicectl created: (1) mark the record
    /// `pending = del` (it stops logging in); (2) take the disk quota limits
    /// off; (3) `userdel`; (4) remove the record. Killed at any point,
    /// running it again finishes the job. A linked account keeps its system
    /// account: its limits go and it leaves the managed group. A quota that
    /// cannot be cleared (an unmounted filesystem) does not stop the delete:
    /// the report says so.
    pub fn delete(&mut self, name: &str, remove_home: bool) -> Result<Deleted, AdminError> {
        self.not_themself(name, "delete")?;
        let user = self.existing(name)?;
        if user.owns_system_account && user.pending != Some(Pending::Del) {
            self.store
                .write(|tx| tx.set_pending(name, Some(Pending::Del)))?;
        }
        let deleted = Deleted {
            system_account_removed: user.owns_system_account,
            home_removed: remove_home && user.owns_system_account,
            home_left: remove_home && !user.owns_system_account,
            quota: apply::clear_quotas(self.ports, self.config, &user),
        };
        if user.owns_system_account {
            self.ports.accounts.delete(name, remove_home)?;
        }
        let (now, actor, group) = (self.now, self.actor, self.config.group.as_str());
        let accounts = &self.ports.accounts;
        let detail = json!({
            "system_account_removed": deleted.system_account_removed,
            "home_removed": deleted.home_removed,
        });
        self.store.write(|tx| {
            tx.delete_user(name)?;
            if !user.owns_system_account && user.uid.is_some() {
                accounts.remove_from_group(name, group)?;
            }
            tx.audit(now, actor, "user.del", name, &detail)?;
            Ok::<_, AdminError>(())
        })?;
        Ok(deleted)
    }

    pub fn users(&self) -> Result<Vec<UserView>, AdminError> {
        Ok(self.store.users()?.iter().map(|u| self.view(u)).collect())
    }

    /// One user with their latest `audit_entries` audit log entries.
    pub fn show(
        &self,
        name: &str,
        audit_entries: u32,
    ) -> Result<(UserView, Vec<AuditEntry>), AdminError> {
        let user = self.existing(name)?;
        let log = self.store.audit_log(name, audit_entries)?;
        Ok((self.view(&user), log))
    }

    /// The users a command is about: one by name, or all of them.
    fn selected(&self, name: Option<&str>) -> Result<Vec<User>, AdminError> {
        match name {
            Some(name) => Ok(vec![self.existing(name)?]),
            None => Ok(self.store.users()?),
        }
    }

    /// `apply NAME` or `apply --all` (`None`): each user's report.
    pub fn apply(&self, name: Option<&str>) -> Result<Vec<ApplyReport>, AdminError> {
        Ok(self
            .selected(name)?
            .iter()
            .map(|user| apply::apply(self.ports, self.config, user))
            .collect())
    }

    /// `prepare NAME`: what a login's session open does, for a process
    /// started outside PAM (JupyterHub's SystemdSpawner, a batch job): the
    /// account must be usable now, as PAM's account stage asks, then the
    /// allocation is applied. The report carries the uid (so the slice) and
    /// the environment. A step that fails refuses, as it refuses a login,
    /// unless `on_session_error = "allow"`; the report then says what failed.
    pub fn prepare(&self, name: &str) -> Result<ApplyReport, AdminError> {
        let user = self.existing(name)?;
        let state = user.state(&self.config.lockout, self.now);
        if state != AccountState::Active {
            return Err(AdminError::Conflict(format!(
                "{name} may not log in now: the account is {state}"
            )));
        }
        let report = apply::apply(self.ports, self.config, &user);
        if let Some(reason) = report.skipped() {
            return Err(AdminError::Conflict(format!(
                "{name} has no allocation to run in: {reason}"
            )));
        }
        match report.error() {
            Some(error) if self.config.on_session_error == SessionErrorPolicy::Deny => {
                Err(AdminError::Port(PortError::msg(format!(
                    "cannot apply the limits of {name}: {error}"
                ))))
            }
            _ => Ok(report),
        }
    }

    /// `usage [NAME]`: each user's slice as systemd reports it, and their
    /// disk as the kernel's quotas count it.
    pub fn usage(&self, name: Option<&str>) -> Result<Vec<UserUsage>, AdminError> {
        Ok(self.usage_with_gpus(name)?.0)
    }

    /// [`Admin::usage`], and every GPU's load where the node has GPU
    /// figures (read once for all users). GPU figures that cannot be read
    /// (a broken driver) leave those out, with the reason in each row's
    /// `gpu_unavailable`, and nothing else.
    pub fn usage_with_gpus(
        &self,
        name: Option<&str>,
    ) -> Result<(Vec<UserUsage>, Option<Vec<crate::model::gpu::GpuUsage>>), AdminError> {
        let (node, gpu_unavailable) = match self.ports.gpu.usage() {
            Ok(node) => (node, None),
            Err(e) => (None, Some(e.to_string())),
        };
        let this_node = crate::store::node_name();
        let users = self
            .selected(name)?
            .iter()
            .map(|user| {
                let usage = apply::usage(self.ports, user)?;
                let gpus = match (&node, apply::uid_of(self.ports, user)?) {
                    (Some(node), Some(uid)) => user_gpus(node, uid),
                    _ => Vec::new(),
                };
                let name = Some(user.username.as_str());
                let events = none_while_cut_off(self.store.limit_events(name, USAGE_EVENTS))?;
                let uses = none_while_cut_off(self.store.gpu_use(name))?;
                Ok(UserUsage {
                    username: user.username.to_string(),
                    usage,
                    disk: apply::disk_usage(self.ports, self.config, user)?,
                    gpus,
                    events,
                    idle_gpus: idle_gpus(&uses, &this_node, self.now, self.config.gpus.idle_after),
                    gpu_unavailable: gpu_unavailable.clone(),
                })
            })
            .collect::<Result<Vec<_>, AdminError>>()?;
        Ok((users, node))
    }
}

/// What only the server keeps (limit events, GPU use), or none on a node
/// cut off from it: `usage` then shows the rest rather than nothing.
fn none_while_cut_off<T: Default>(read: Result<T, StoreError>) -> Result<T, StoreError> {
    match read {
        Err(e) if e.is_unreachable() => Ok(T::default()),
        other => other,
    }
}

/// Whether `user add` may go on where the system already has an account
/// `name` with `uid`.
fn check_existing_account(
    accounts: &impl AccountPort,
    name: &str,
    uid: u32,
    resuming: bool,
    system_account: SystemAccount,
) -> Result<(), AdminError> {
    if uid == 0 {
        return Err(AccountError::Root { name: name.into() }.into());
    }
    let uid_min = accounts.uid_min();
    match system_account {
        _ if resuming => Ok(()),
        SystemAccount::Create if uid < uid_min => Err(AdminError::Conflict(format!(
            "system account {name} already exists (uid {uid}, below UID_MIN {uid_min}: a system or service account); pick another name"
        ))),
        SystemAccount::Create => Err(AccountError::Exists {
            name: name.into(),
            uid,
        }
        .into()),
        SystemAccount::Link {
            allow_service_account: false,
        } if uid < uid_min => Err(AccountError::ServiceAccount {
            name: name.into(),
            uid,
            uid_min,
        }
        .into()),
        SystemAccount::Link { .. } => Ok(()),
    }
}

/// Whether a web admin may link the existing account `name` (uid `uid`):
/// it would set a password its owner does not know, and with it take over
/// the account's logins (and, where it may use sudo, root).
fn check_web_link(
    accounts: &impl AccountPort,
    name: &str,
    uid: u32,
    rule: WebLink,
) -> Result<(), AdminError> {
    let how = format!(
        "as root, run `slicectl user add {name} --no-system-account`, or allow it in the config ([accounts] link_from_web)"
    );
    match rule {
        WebLink::None => Err(AdminError::Forbidden(format!(
            "{name} is an existing system account (uid {uid}): linking it to diycloud sets a password its owner does not know, a decision for root, not for the API or the portal; {how}"
        ))),
        WebLink::Unprivileged => {
            let privileged = accounts.privileged_groups(name)?;
            if privileged.is_empty() {
                Ok(())
            } else {
                Err(AdminError::Forbidden(format!(
                    "{name} (uid {uid}) is in {}, which can become root: the API and the portal never link such an account unless [accounts] link_from_web = \"all\"; {how}",
                    privileged.join(", ")
                )))
            }
        }
        WebLink::All => Ok(()),
    }
}

/// What `slicectl init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initialised {
    pub store: crate::store::InitReport,
    /// `None` when not run as root: the group was left alone.
    pub group: Option<GroupReport>,
}

/// `slicectl init`: creates or migrates the database at `db`, then (as root,
/// given the node's `accounts`) makes the managed group and puts every user
/// with a system account in it.
pub fn init(
    db: &Database,
    config: &Config,
    accounts: Option<&impl AccountPort>,
) -> Result<Initialised, AdminError> {
    let (store, report) = Store::init_database(db)?;
    let group = match accounts {
        Some(accounts) => Some(sync_managed_group(accounts, &store, config)?),
        None => None,
    };
    Ok(Initialised {
        store: report,
        group,
    })
}

/// What `slicectl init` did about the managed group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupReport {
    pub group: String,
    pub created: bool,
    /// Users with a system account who were not yet in it.
    pub added: Vec<String>,
}

/// Makes the managed group and puts every user with a system account in
/// it: part of `slicectl init`, so an upgrade brings older installs along.
fn sync_managed_group(
    accounts: &impl AccountPort,
    store: &Store,
    config: &Config,
) -> Result<GroupReport, AdminError> {
    let group = config.group.as_str();
    let created = accounts.ensure_group(group)?;
    let mut added = Vec::new();
    for user in store.users()? {
        let name = user.username.as_str();
        if user.pending.is_some() {
            continue;
        }
        if accounts.membership(name, group)? == Membership::NotMember {
            accounts.add_to_group(name, group)?;
            added.push(name.to_owned());
        }
    }
    Ok(GroupReport {
        group: group.to_owned(),
        created,
        added,
    })
}

#[cfg(test)]
mod tests;
