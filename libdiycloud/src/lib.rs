//! diycloud's library: the user database, limits, lockout policy and password
//! hashing shared by the PAM module and `slicectl`.
#![forbid(unsafe_code)]

pub mod config;
pub mod model;
pub mod password;
pub mod store;
