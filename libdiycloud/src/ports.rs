//! The ports: what the use cases need from the outside systems (systemd,
//! the accounts, the kernel's quotas, the GPUs), as traits. The adapters
//! implement them; the use cases know only these; [`crate::system`] wires
//! the real ones for the entry points, and tests pass fakes.

use std::future::Future;
use std::path::{Path, PathBuf};

use crate::model::events::{OomKill, SliceCounters};
use crate::model::gpu::{GpuNode, GpuUsage};
use crate::model::quota::{QuotaLimits, QuotaState};
use crate::model::slice::{CgroupVersion, SliceProperty, SliceUsage};

/// A failure of an outside system, as a port reports it.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PortError(Box<dyn std::error::Error + Send + Sync>);

impl PortError {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(e))
    }

    /// An error that is only a message (fakes, simple adapters).
    pub fn msg(message: impl Into<String>) -> Self {
        Self(message.into().into())
    }
}

/// Where users' slices are sized and read: systemd.
pub trait SlicePort {
    type Link: SliceLink;
    /// Connects. The first poll must start the connection without waiting
    /// for an answer, so a caller can do other work while it completes.
    fn connect(&self) -> impl Future<Output = Result<Self::Link, PortError>>;
    /// The node's cgroup version (a quick look at a mount, no bus call):
    /// the weights are other properties on v1.
    fn cgroup_version(&self) -> Result<CgroupVersion, PortError>;
    /// Runs `future` (the use case's steps, this port's calls among them)
    /// to its end on the executor this port's connections need; nothing it
    /// started outlives the call.
    fn block_on<F: Future>(&self, future: F) -> F::Output;
}

/// One connection made by a [`SlicePort`]; closed by its user.
pub trait SliceLink {
    /// Sets `properties` on `unit` (at run time, also before it exists).
    fn set_properties(
        &self,
        unit: &str,
        properties: &[SliceProperty],
    ) -> impl Future<Output = Result<(), PortError>>;
    /// Usage and limits of `unit`.
    fn usage(&self, unit: &str) -> impl Future<Output = Result<SliceUsage, PortError>>;
    fn close(self) -> impl Future<Output = ()>;
}

/// Where users' disk quotas are read and set: the kernel, per filesystem.
pub trait QuotaPort {
    /// A filesystem found ready for quota calls.
    type Filesystem;
    /// The filesystems mounted at `mount_points`, in order (one look at the
    /// mount table for all): each one found and enforcing user quotas, or
    /// why not.
    fn filesystems(&self, mount_points: &[PathBuf]) -> Vec<Result<Self::Filesystem, PortError>>;
    /// `uid`'s limits and usage on `filesystem`.
    fn get(&self, filesystem: &Self::Filesystem, uid: u32) -> Result<QuotaState, PortError>;
    fn set(
        &self,
        filesystem: &Self::Filesystem,
        uid: u32,
        limits: &QuotaLimits,
    ) -> Result<(), PortError>;
}

/// What the node's GPUs are, for a grant (read at each apply: GPUs come
/// and go with the driver).
pub trait GpuPort {
    fn node(&self) -> Result<GpuNode, PortError>;
    /// Each GPU's load and the processes holding its memory (NVML: never
    /// called at session open). `Ok(None)`: no GPU figures on this node.
    fn usage(&self) -> Result<Option<Vec<GpuUsage>>, PortError>;
}

/// Where the kernel's enforcement shows.
pub trait KernelPort {
    /// User `uid`'s slice counters; `None` where the slice has no cgroup now.
    fn counters(&self, uid: u32) -> Result<Option<SliceCounters>, PortError>;
    /// The OOM kills in user slices the kernel logged since the last call.
    fn new_kills(&mut self) -> Vec<OomKill>;
}

/// The node's accounts: looked up through NSS, written with the
/// distribution's tools (`useradd`, `usermod`, `userdel`, `groupadd`,
/// `gpasswd`).
pub trait AccountPort {
    /// The uid of the account `name`, if there is one.
    fn uid(&self, name: &str) -> Result<Option<u32>, PortError>;
    /// The lowest uid of a person's account (`UID_MIN`): below it, system
    /// and service accounts.
    fn uid_min(&self) -> u32;
    /// Makes the account `name` (home from the skeleton, a locked password,
    /// `shell`, a member of `group`, which must exist); returns its uid.
    fn create(
        &self,
        name: &str,
        full_name: Option<&str>,
        shell: &Path,
        group: &str,
    ) -> Result<u32, AccountError>;
    /// Sets the account's full name (its comment field).
    fn set_full_name(&self, name: &str, full_name: &str) -> Result<(), AccountError>;
    /// Removes the account (with its home where `remove_home`); one that
    /// is gone already is not an error.
    fn delete(&self, name: &str, remove_home: bool) -> Result<(), AccountError>;
    /// Makes the system group `group` unless it exists; whether it did.
    fn ensure_group(&self, group: &str) -> Result<bool, AccountError>;
    /// Puts `name` in `group` (a member stays one).
    fn add_to_group(&self, name: &str, group: &str) -> Result<(), AccountError>;
    /// Takes `name` off `group`'s member list, where it is on it.
    fn remove_from_group(&self, name: &str, group: &str) -> Result<(), AccountError>;
    /// Whether `name` is in `group`, its primary group included.
    fn membership(&self, name: &str, group: &str) -> Result<Membership, AccountError>;
    /// Which groups that can become root (sudo, wheel, ...) `name` is in.
    fn privileged_groups(&self, name: &str) -> Result<Vec<String>, AccountError>;
}

#[derive(Debug, thiserror::Error)]
/// What the accounts port, or a rule about accounts, refuses.
pub enum AccountError {
    #[error("system account {name} already exists (uid {uid}); to let diycloud manage it (its password, limits and logins), pass --no-system-account to link it")]
    Exists { name: String, uid: u32 },
    #[error("{name} is a system account (uid {uid}, below UID_MIN {uid_min} of /etc/login.defs), such as a service account: linking it would let it log in with a diycloud password; pass --allow-service-account if that is really what you want")]
    ServiceAccount {
        name: String,
        uid: u32,
        uid_min: u32,
    },
    #[error("{name} has uid 0: root is never a diycloud user")]
    Root { name: String },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("{0} created the account, but it cannot be looked up")]
    Vanished(String),
    #[error("cannot look up system account {name}: {source}")]
    Lookup { name: String, source: nix::Error },
}

/// Whether an account is in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Member,
    NotMember,
    /// There is no such account.
    NoAccount,
    /// There is no such group: nobody is in it.
    NoGroup,
}

/// Every outside system the use cases talk to (the real ones are built
/// by [`crate::system`]).
#[derive(Debug, Clone, Default)]
pub struct Ports<S, A, Q, G> {
    pub slice: S,
    pub accounts: A,
    pub quota: Q,
    pub gpu: G,
}
