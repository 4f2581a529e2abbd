//! A diycloud user as the rest of the system sees it.

use std::fmt;
use std::str::FromStr;

use super::limits::{Allocation, LimitChanges};
use super::lockout::{FailureState, LockoutPolicy};
use super::time::{Date, Timestamp};
use super::username::Username;

pub const ROLE_RULE: &str = "a role is 'user' or 'admin'";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid role {0:?}: {ROLE_RULE}")]
pub struct RoleError(String);

impl FromStr for Role {
    type Err = RoleError;

    fn from_str(s: &str) -> Result<Self, RoleError> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            _ => Err(RoleError(s.chars().take(40).collect())),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::User => "user",
            Role::Admin => "admin",
        })
    }
}

/// A change that spans the database and the system's account files, begun
/// and not yet finished (the command that began it was interrupted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Pending {
    /// `user add`: the record exists, the system account may not yet.
    Add,
    /// `user del`: the system account may be gone, the record not yet.
    Del,
}

impl Pending {
    pub fn as_str(self) -> &'static str {
        match self {
            Pending::Add => "add",
            Pending::Del => "del",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "add" => Some(Pending::Add),
            "del" => Some(Pending::Del),
            _ => None,
        }
    }
}

/// One user record (everything but the password hash, which stays in the store).
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub username: Username,
    pub uid: Option<u32>,
    /// Whether `slicectl` created the system account (and so `user del` removes it).
    pub owns_system_account: bool,
    pub role: Role,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub active: bool,
    /// The account stops working at the start of this day (UTC), like `useradd -e`.
    pub expires: Option<Date>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_login: Option<Timestamp>,
    pub last_logout: Option<Timestamp>,
    pub password_changed_at: Option<Timestamp>,
    pub failures: FailureState,
    pub allocation: Allocation,
    /// An unfinished add or delete: the record is not usable for logins.
    pub pending: Option<Pending>,
}

impl User {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires.is_some_and(|d| now >= d.start())
    }

    /// Whether the account can be used at `now`, and if not, why: the one
    /// rule the PAM account stage, `slicectl` and the API all show.
    pub fn state(&self, lockout: &LockoutPolicy, now: Timestamp) -> AccountState {
        if let Some(pending) = self.pending {
            AccountState::Unfinished(pending)
        } else if !self.active {
            AccountState::Disabled
        } else if self.is_expired(now) {
            AccountState::Expired
        } else if lockout.is_locked(&self.failures, now) {
            AccountState::Locked
        } else {
            AccountState::Active
        }
    }
}

/// Whether an account can be used, and if not, the first reason why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    Active,
    /// Disabled by an admin.
    Disabled,
    /// Past its expiry date.
    Expired,
    /// Locked after repeated wrong passwords: no login through any module
    /// (a Unix password, an SSH key) until it unlocks.
    Locked,
    /// An add or delete that was begun and not finished: not usable.
    Unfinished(Pending),
}

impl AccountState {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Active => "active",
            AccountState::Disabled => "disabled",
            AccountState::Expired => "expired",
            AccountState::Locked => "locked",
            AccountState::Unfinished(Pending::Add) => "unfinished add",
            AccountState::Unfinished(Pending::Del) => "unfinished del",
        }
    }
}

impl fmt::Display for AccountState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An active user-role record of `name` with `uid` (a system account of
/// theirs when `Some`) and the default allocation, for tests.
#[cfg(test)]
pub(crate) fn test_user(name: &str, uid: Option<u32>) -> User {
    User {
        username: Username::parse(name).unwrap_or_else(|e| panic!("{e}")),
        uid,
        owns_system_account: uid.is_some(),
        role: Role::User,
        email: None,
        full_name: None,
        active: true,
        expires: None,
        created_at: Timestamp(0),
        updated_at: Timestamp(0),
        last_login: None,
        last_logout: None,
        password_changed_at: None,
        failures: FailureState::default(),
        allocation: super::limits::Allocation::default(),
        pending: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        test_user("alice", None)
    }

    #[test]
    fn state_takes_the_first_reason_in_order() {
        let policy = LockoutPolicy::default();
        let now = Timestamp(1_800_000_000);
        let mut u = user();
        assert_eq!(u.state(&policy, now), AccountState::Active);
        for _ in 0..policy.deny {
            u.failures = policy.after_failure(&u.failures, now);
        }
        assert_eq!(u.state(&policy, now), AccountState::Locked);
        assert_eq!(
            u.state(&policy, Timestamp(now.0 + policy.unlock_time as i64)),
            AccountState::Active,
            "the lock ends by itself"
        );
        u.expires = Some("2020-01-01".parse().unwrap());
        assert_eq!(u.state(&policy, now), AccountState::Expired);
        u.active = false;
        assert_eq!(u.state(&policy, now), AccountState::Disabled);
        u.pending = Some(Pending::Del);
        assert_eq!(u.state(&policy, now).as_str(), "unfinished del");
    }
}

/// A change to a user's record, as `user mod` and the API's PATCH give it
/// (the admin use case checks and makes it; the store writes it). A partial update: `None` leaves a field as it is; for the optional
/// profile fields, `Some(None)` clears them.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub role: Option<Role>,
    pub email: Option<Option<String>>,
    pub full_name: Option<Option<String>>,
    pub expires: Option<Option<Date>>,
    pub active: Option<bool>,
    pub limits: LimitChanges,
}

impl UserChanges {
    pub fn is_empty(&self) -> bool {
        self.role.is_none()
            && self.email.is_none()
            && self.full_name.is_none()
            && self.expires.is_none()
            && self.active.is_none()
            && self.limits.is_empty()
    }
}
