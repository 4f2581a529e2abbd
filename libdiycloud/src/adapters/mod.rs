//! One adapter per outside system, each implementing the ports it serves.

pub mod cgroup;
pub mod kernel;
pub mod kmsg;
pub mod nvidia;
pub mod platform;
pub mod quotactl;
pub mod systemd;
