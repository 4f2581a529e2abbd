//! diycloud's library: the user database, limits, lockout policy and password
//! hashing shared by the PAM module, `slicectl` and the server.
//!
//! Its floors, each using only those below it:
//! - [`usecases`]: login, admin, apply, the usage history and the limit
//!   events, written against the [`ports`] only;
//! - [`system`]: the one place that builds the real adapters for the entry
//!   points;
//! - [`adapters`]: one module per outside system (systemd, cgroupfs, the
//!   kernel log, quotactl, the NVIDIA driver, the distribution's account
//!   tools);
//! - [`ports`]: the traits the use cases need from outside;
//! - [`config`], [`store`], [`hashing`] and [`trust`]: the configuration,
//!   the database, password hashing and which files may be trusted;
//! - [`model`]: the pure core.
// Unsafe code is denied everywhere but in `hashing::memory`, the one syscall adapter.
#![deny(unsafe_code)]

pub mod adapters;
pub mod config;
pub mod hashing;
pub mod model;
pub mod ports;
pub mod store;
pub mod system;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod trust;
pub mod usecases;
