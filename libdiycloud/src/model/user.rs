//! A diycloud user as the rest of the system sees it.

use std::fmt;
use std::str::FromStr;

use super::limits::Allocation;
use super::lockout::FailureState;
use super::time::{Date, Timestamp};
use super::username::Username;

pub const ROLE_RULE: &str = "a role is 'user' or 'admin'";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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
}
