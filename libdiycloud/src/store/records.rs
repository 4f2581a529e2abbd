//! The records the store takes and gives, the same for every backend.

use serde_json::{json, Map, Value};

use crate::model::limits::Allocation;
use crate::model::lockout::FailureState;
use crate::model::time::{Date, Timestamp};
use crate::model::user::{Pending, Role, User, UserChanges};
use crate::model::username::Username;
use crate::store::StoreError;

/// Everything needed to create a user.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: Username,
    pub password_hash: String,
    pub role: Role,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub expires: Option<Date>,
    pub allocation: Allocation,
    pub uid: Option<u32>,
    pub owns_system_account: bool,
    /// `Some(Pending::Add)` while the system account is still to be made.
    pub pending: Option<Pending>,
}

impl NewUser {
    /// A `user`-role account with `allocation`, no profile fields and no
    /// system account: the base the callers change what they need on.
    pub fn new(username: Username, password_hash: String, allocation: Allocation) -> Self {
        Self {
            username,
            password_hash,
            role: Role::User,
            email: None,
            full_name: None,
            expires: None,
            allocation,
            uid: None,
            owns_system_account: false,
            pending: None,
        }
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub username: String,
    /// What changed, as the action records it.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: Value,
}

/// A user row as a backend hands it over, before validation.
pub(crate) struct RawUser {
    pub(crate) username: String,
    pub(crate) uid: Option<u32>,
    pub(crate) owns_system_account: bool,
    pub(crate) role: String,
    pub(crate) email: Option<String>,
    pub(crate) full_name: Option<String>,
    pub(crate) active: bool,
    pub(crate) expires: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) last_login: Option<i64>,
    pub(crate) password_changed_at: Option<i64>,
    pub(crate) failed_logins: u32,
    pub(crate) failure_window_start: Option<i64>,
    pub(crate) locked_at: Option<i64>,
    /// The `limits` column: a JSON object of each limit's canonical text.
    pub(crate) limits: String,
    pub(crate) password_hash: String,
    pub(crate) last_logout: Option<i64>,
    pub(crate) pending: Option<String>,
}

impl RawUser {
    /// Validates the stored text; a record someone edited by hand into
    /// nonsense is reported, never guessed at.
    pub(crate) fn into_user(self, db: &str) -> Result<(User, String), StoreError> {
        let username = self.username.clone();
        let corrupt = |field: &'static str, message: String| StoreError::Corrupt {
            db: db.into(),
            username: username.clone(),
            field,
            message,
        };
        let allocation = allocation_of(&self.limits, &corrupt)?;
        let user =
            User {
                username: Username::parse(&self.username)
                    .map_err(|e| corrupt("username", e.to_string()))?,
                uid: self.uid,
                owns_system_account: self.owns_system_account,
                role: self
                    .role
                    .parse()
                    .map_err(|e: crate::model::user::RoleError| corrupt("role", e.to_string()))?,
                email: self.email,
                full_name: self.full_name,
                active: self.active,
                expires: self.expires.map(|d| d.parse()).transpose().map_err(
                    |e: crate::model::time::TimeError| corrupt("expires_on", e.to_string()),
                )?,
                created_at: Timestamp(self.created_at),
                updated_at: Timestamp(self.updated_at),
                last_login: self.last_login.map(Timestamp),
                last_logout: self.last_logout.map(Timestamp),
                password_changed_at: self.password_changed_at.map(Timestamp),
                failures: FailureState {
                    count: self.failed_logins,
                    window_start: self.failure_window_start.map(Timestamp),
                    locked_at: self.locked_at.map(Timestamp),
                },
                allocation,
                pending: self
                    .pending
                    .map(|p| Pending::parse(&p).ok_or_else(|| corrupt("pending", format!("{p:?}"))))
                    .transpose()?,
            };
        Ok((user, self.password_hash))
    }
}

/// The allocation the `limits` column holds: each limit's canonical text
/// by its key ([`crate::model::limits::LIMITS`]). A limit it does not name
/// (one added since the row was written) has its built-in default; a key no
/// limit has (written by a newer release) is left alone; text that breaks a
/// limit's rule is reported through `corrupt`, never guessed at.
fn allocation_of(
    limits: &str,
    corrupt: &impl Fn(&'static str, String) -> StoreError,
) -> Result<Allocation, StoreError> {
    let texts: Map<String, Value> =
        serde_json::from_str(limits).map_err(|e| corrupt("limits", e.to_string()))?;
    let mut allocation = Allocation::default();
    for (key, value) in &texts {
        let Some(text) = value.as_str() else {
            return Err(corrupt("limits", format!("{key}: {value} is not text")));
        };
        allocation
            .set_text(key, text)
            .map_err(|e| corrupt(e.key, e.error.to_string()))?;
    }
    Ok(allocation)
}

/// An allocation as every backend writes its `limits` column.
pub(crate) fn limits_text(allocation: &Allocation) -> String {
    texts_object(allocation.texts())
}

/// `texts` (a limit's key and canonical text each) as a JSON object.
fn texts_object(texts: Vec<(&'static str, String)>) -> String {
    let object: Map<String, Value> = texts
        .into_iter()
        .map(|(key, text)| (key.to_owned(), Value::String(text)))
        .collect();
    Value::Object(object).to_string()
}

/// A column's new value, for any backend.
pub(crate) enum Field {
    Text(Option<String>),
    Bool(bool),
}

/// What [`UserChanges`] writes: the columns of `users`, the limits to
/// merge into `resource_allocations.limits` (a JSON object of the changed
/// ones; the others stay as they are, whoever changes them meanwhile), and
/// the audit log's record of it.
pub(crate) struct ChangePlan {
    pub user: Vec<(&'static str, Field)>,
    pub limits: Option<String>,
    pub detail: Map<String, Value>,
    /// A disabled account's API sessions end with the change.
    pub ends_sessions: bool,
}

impl UserChanges {
    pub(crate) fn plan(&self) -> ChangePlan {
        let mut plan = ChangePlan {
            user: Vec::new(),
            limits: None,
            detail: Map::new(),
            ends_sessions: false,
        };
        if let Some(role) = self.role {
            plan.user
                .push(("role", Field::Text(Some(role.to_string()))));
            plan.detail.insert("role".into(), json!(role.to_string()));
        }
        for (column, key, value) in [
            ("email", "email", &self.email),
            ("full_name", "full_name", &self.full_name),
        ] {
            if let Some(value) = value {
                plan.user.push((column, Field::Text(value.clone())));
                plan.detail.insert(key.into(), json!(value));
            }
        }
        if let Some(expires) = self.expires {
            let shown = expires.map(|d| d.to_string());
            plan.detail.insert("expires".into(), json!(shown));
            plan.user.push(("expires_on", Field::Text(shown)));
        }
        if let Some(active) = self.active {
            plan.user.push(("is_active", Field::Bool(active)));
            plan.detail.insert("active".into(), json!(active));
            plan.ends_sessions = !active;
        }
        let changed = self.limits.texts();
        if !changed.is_empty() {
            plan.limits = Some(texts_object(changed));
        }
        for (key, value) in self.limits.json() {
            plan.detail.insert(key.into(), value);
        }
        plan
    }
}

/// The first user id at or after which `name`'s sample hash is taken, for a
/// table whose ids run up to `max_id` (see [`super::Backend::sample_hash`]).
pub(crate) fn sample_start(name: &str, max_id: u64) -> i64 {
    // FNV-1a: stable across processes and builds.
    let key = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    i64::try_from(key % max_id.max(1) + 1).unwrap_or(1)
}

/// A limit event's process names as the `processes` column holds them (a
/// JSON array: a name may hold any character).
pub(crate) fn processes_text(names: &[String]) -> String {
    serde_json::to_string(names).unwrap_or_else(|_| "[]".into())
}

/// The `processes` column read back; a hand-edited value that is no array
/// of names reads as none.
pub(crate) fn event_processes(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// One GPU granted by name, and whether its user had a process on it at a
/// sample ([`super::Transaction::record_gpu_use`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuUseUpdate {
    pub username: String,
    /// [`crate::model::gpu::use_key`] of the GPU.
    pub gpu: String,
    pub used: bool,
}
