//! The use cases: every rule, write and audit entry of a login, an admin
//! change, an apply, the usage history and the limit events, against the
//! ports (never an adapter).

pub mod admin;
pub mod apply;
pub mod auth;
pub mod history;
pub mod watch;
