//! A user's usage as every front door shows it (`slicectl usage --json`,
//! `GET /api/v1/usage`): typed, so that the API's schema is derived from
//! what is written (feature `openapi`).

use serde::Serialize;

use super::{IdleGpu, UserUsage};
use crate::model::events::{EventKind, LimitEvent};
use crate::model::gpu::UserGpu;
use crate::model::slice::SliceUsage;
use crate::usecases::apply::DiskUsage;

/// One user's usage now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Usage))]
pub struct UsageEntry {
    pub username: String,
    #[serde(flatten)]
    pub slice: SliceFigures,
    /// Disk use and quota on each `[quota]` filesystem.
    pub disk: Vec<DiskEntry>,
    /// GPU memory their processes hold, per GPU that has any.
    pub gpus: Vec<UserGpu>,
    /// Their latest limit events, newest first.
    pub events: Vec<EventEntry>,
    /// GPUs granted to them by name and unused for at least `[gpus] idle_after`.
    pub idle_gpus: Vec<IdleGpu>,
    /// Why the node's GPU figures could not be read; the rest is read as usual.
    pub gpu_unavailable: Option<String>,
}

/// The slice's figures from systemd, or `unit: null` without a system
/// account.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum SliceFigures {
    Slice(SliceUsage),
    NoAccount {
        /// Always null: no system account, so no slice.
        unit: Option<String>,
    },
}

/// Use and quota on one filesystem: the kernel's figures in bytes and files
/// (limits `null` where there is none), or why they could not be read.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum DiskEntry {
    Read {
        filesystem: String,
        used_bytes: u64,
        soft_limit_bytes: Option<u64>,
        limit_bytes: Option<u64>,
        used_inodes: u64,
        soft_inode_limit: Option<u64>,
        inode_limit: Option<u64>,
    },
    Unreadable {
        filesystem: String,
        error: String,
    },
}

/// A limit event: times in RFC 3339.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventEntry {
    pub kind: EventKind,
    /// The node it happened on.
    pub node: String,
    pub first_at: String,
    pub at: String,
    /// Processes killed, times reclaimed above `MemoryHigh`, or CPU periods
    /// throttled.
    pub count: u64,
    /// How long the slice waited for CPU (throttling).
    pub throttled_seconds: f64,
    /// The limit in force then (`8G`, `2 cores`).
    pub limit: Option<String>,
    /// The killed processes' names, where the kernel log has them.
    pub processes: Vec<String>,
    /// Whether the user has read it at a login.
    pub shown: bool,
}

impl EventEntry {
    pub fn of(event: &LimitEvent) -> Self {
        Self {
            kind: event.kind,
            node: event.node.clone(),
            first_at: event.first_at.to_string(),
            at: event.at.to_string(),
            count: event.count,
            throttled_seconds: event.throttled_usec as f64 / 1e6,
            limit: event.limit.clone(),
            processes: event.processes.clone(),
            shown: event.shown,
        }
    }
}

impl DiskEntry {
    pub fn of(disk: &DiskUsage) -> Self {
        let filesystem = disk.filesystem.display().to_string();
        match &disk.quota {
            Ok(q) => DiskEntry::Read {
                filesystem,
                used_bytes: q.used_bytes,
                soft_limit_bytes: q.limits.soft_bytes(),
                limit_bytes: q.limits.hard_bytes(),
                used_inodes: q.used_inodes,
                soft_inode_limit: q.limits.soft_inodes(),
                inode_limit: q.limits.hard_inodes(),
            },
            Err(error) => DiskEntry::Unreadable {
                filesystem,
                error: error.clone(),
            },
        }
    }
}

impl UserUsage {
    /// As every front door shows it.
    pub fn entry(&self) -> UsageEntry {
        UsageEntry {
            username: self.username.clone(),
            slice: match &self.usage {
                Some(usage) => SliceFigures::Slice(usage.clone()),
                None => SliceFigures::NoAccount { unit: None },
            },
            disk: self.disk.iter().map(DiskEntry::of).collect(),
            gpus: self.gpus.clone(),
            events: self.events.iter().map(EventEntry::of).collect(),
            idle_gpus: self.idle_gpus.clone(),
            gpu_unavailable: self.gpu_unavailable.clone(),
        }
    }

    /// [`Self::entry`] as JSON.
    pub fn document(&self) -> serde_json::Value {
        serde_json::to_value(self.entry()).unwrap_or_default()
    }
}
