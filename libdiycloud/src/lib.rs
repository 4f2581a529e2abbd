//! diycloud's library: the user database, limits, lockout policy and password
//! hashing shared by the PAM module and `slicectl`.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod model;
pub mod password;
pub mod platform;
pub mod store;
