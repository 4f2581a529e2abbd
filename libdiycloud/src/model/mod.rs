//! The pure core: users, limits, dates and the lockout policy.
//!
//! Nothing in here does I/O or reads the clock; callers pass "now" in, so every
//! rule is testable without sleeping or touching the system.

pub mod events;
pub mod gpu;
pub mod history;
pub mod limits;
pub mod lockout;
pub mod password;
pub mod quota;
pub mod slice;
pub mod text;
pub mod time;
pub mod user;
pub mod username;

pub use limits::{
    Allocation, AllocationError, Cpu, GpuList, LimitChanges, LimitError, Size, Tasks, Weight,
};
pub use lockout::{FailureState, LockoutPolicy};
pub use time::{Date, Timestamp};
pub use user::{AccountState, Pending, Role, User};
pub use username::{Username, UsernameError};
