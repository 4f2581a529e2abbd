//! The kernel's enforcement, as the limit-event watcher reads it: each user
//! slice's counters in the cgroup tree, and the OOM killer's lines in the
//! kernel log.

use std::path::PathBuf;

use crate::adapters::cgroup::{self, Hierarchy};
use crate::adapters::kmsg::KernelLog;
use crate::model::events::{self, OomKill, SliceCounters};
use crate::ports::{KernelPort, PortError};

/// This machine's cgroup tree and kernel log.
#[derive(Debug)]
pub struct SystemKernel {
    root: PathBuf,
    hierarchy: Hierarchy,
    log: Option<KernelLog>,
}

impl SystemKernel {
    /// The cgroup tree at `/sys/fs/cgroup`, and `/dev/kmsg` from now on.
    /// Without the kernel log (not root, a container), the counters alone
    /// count kills, without the processes' names: the reason comes back.
    pub fn open() -> Result<(Self, Option<String>), PortError> {
        let hierarchy = Hierarchy::detect().map_err(PortError::new)?;
        let (log, why) = match KernelLog::open() {
            Ok(log) => (Some(log), None),
            Err(e) => (None, Some(format!("cannot read /dev/kmsg: {e}"))),
        };
        let kernel = Self {
            root: PathBuf::from("/sys/fs/cgroup"),
            hierarchy,
            log,
        };
        Ok((kernel, why))
    }
}

impl KernelPort for SystemKernel {
    fn counters(&self, uid: u32) -> Result<Option<SliceCounters>, PortError> {
        cgroup::slice_counters_at(&self.root, self.hierarchy, uid).map_err(PortError::new)
    }

    fn new_kills(&mut self) -> Vec<OomKill> {
        let Some(log) = self.log.as_mut() else {
            return Vec::new();
        };
        log.read_new()
            .iter()
            .filter_map(|record| events::parse_oom_record(record))
            .collect()
    }
}
