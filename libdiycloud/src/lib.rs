//! diycloud's library: the user database, limits, lockout policy and password
//! hashing shared by the PAM module and `slicectl`.
// Unsafe code is denied everywhere but in `argon2_memory`, the one syscall adapter.
#![deny(unsafe_code)]

pub mod admin;
pub mod apply;
mod argon2_memory;
pub mod auth;
pub mod cgroup;
pub mod config;
pub mod enforcement;
pub mod gpu;
pub mod history;
pub mod kmsg;
pub mod model;
pub mod password;
pub mod platform;
pub mod quota;
pub mod store;
pub mod systemd;
pub mod trust;
pub mod watch;
