//! Fake ports for the use cases' tests: they record what they are asked,
//! in order, and fail where told to.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::{AccountPort, GpuPort, PortError, QuotaPort, SliceLink, SlicePort};
use crate::model::gpu::GpuNode;
use crate::model::quota::{QuotaLimits, QuotaState};
use crate::model::slice::{CgroupVersion, SliceProperty, SliceUsage};

/// Everything the fakes saw, in order.
pub type Journal = Rc<RefCell<Vec<String>>>;

#[derive(Default)]
pub struct FakeSlice {
    pub journal: Journal,
    pub refuse_connect: bool,
    pub refuse_set: bool,
    /// The node runs cgroup v1.
    pub v1: bool,
    /// The cgroup mount cannot be read.
    pub no_cgroups: bool,
}

pub struct FakeLink {
    journal: Journal,
    refuse_set: bool,
}

/// A connection that is not there at the first poll (a handshake in
/// flight) and is at the second.
pub struct Connecting {
    journal: Journal,
    polls: u32,
    result: Option<Result<FakeLink, PortError>>,
}

impl Future for Connecting {
    type Output = Result<FakeLink, PortError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.polls += 1;
        if self.polls == 1 {
            self.journal.borrow_mut().push("connect started".into());
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.journal.borrow_mut().push("connected".into());
        Poll::Ready(
            self.result
                .take()
                .unwrap_or_else(|| Err(PortError::msg("polled after it was done"))),
        )
    }
}

impl SlicePort for FakeSlice {
    type Link = FakeLink;

    fn connect(&self) -> impl Future<Output = Result<FakeLink, PortError>> {
        let result = if self.refuse_connect {
            Err(PortError::msg("cannot reach systemd: no bus"))
        } else {
            Ok(FakeLink {
                journal: self.journal.clone(),
                refuse_set: self.refuse_set,
            })
        };
        Connecting {
            journal: self.journal.clone(),
            polls: 0,
            result: Some(result),
        }
    }

    fn cgroup_version(&self) -> Result<CgroupVersion, PortError> {
        if self.no_cgroups {
            return Err(PortError::msg("statfs /sys/fs/cgroup: no such file"));
        }
        Ok(if self.v1 {
            CgroupVersion::V1
        } else {
            CgroupVersion::V2
        })
    }
}

impl SliceLink for FakeLink {
    async fn set_properties(
        &self,
        unit: &str,
        properties: &[SliceProperty],
    ) -> Result<(), PortError> {
        let settings: Vec<String> = properties.iter().map(ToString::to_string).collect();
        self.journal
            .borrow_mut()
            .push(format!("set {unit} {}", settings.join(" ")));
        if self.refuse_set {
            return Err(PortError::msg(
                "systemd SetUnitProperties failed: access denied",
            ));
        }
        Ok(())
    }

    async fn usage(&self, unit: &str) -> Result<SliceUsage, PortError> {
        self.journal.borrow_mut().push(format!("usage {unit}"));
        Ok(SliceUsage {
            unit: unit.to_owned(),
            active_state: "active".into(),
            memory_current: Some(1 << 20),
            ..SliceUsage::default()
        })
    }

    async fn close(self) {
        self.journal.borrow_mut().push("closed".into());
    }
}

/// Accounts by name; `broken` fails every lookup.
#[derive(Default)]
pub struct FakeAccounts {
    pub uids: Vec<(&'static str, u32)>,
    pub broken: bool,
}

impl AccountPort for FakeAccounts {
    fn uid(&self, name: &str) -> Result<Option<u32>, PortError> {
        if self.broken {
            return Err(PortError::msg("NSS is down"));
        }
        Ok(self.uids.iter().find(|(n, _)| *n == name).map(|(_, u)| *u))
    }
}

/// Quotas on filesystems by mount point: every filesystem has them on
/// except those in `off`; `refuse_set` fails every write.
#[derive(Default)]
pub struct FakeQuotas {
    pub journal: Journal,
    pub held: RefCell<BTreeMap<(PathBuf, u32), QuotaState>>,
    pub off: Vec<PathBuf>,
    pub refuse_set: bool,
}

impl FakeQuotas {
    /// What the fake kernel holds for `uid` on `filesystem`.
    pub fn state(&self, filesystem: &str, uid: u32) -> QuotaState {
        self.held
            .borrow()
            .get(&(PathBuf::from(filesystem), uid))
            .copied()
            .unwrap_or_default()
    }

    pub fn hold(&self, filesystem: &str, uid: u32, state: QuotaState) {
        self.held
            .borrow_mut()
            .insert((PathBuf::from(filesystem), uid), state);
    }
}

impl QuotaPort for FakeQuotas {
    type Filesystem = PathBuf;

    fn filesystems(&self, mount_points: &[PathBuf]) -> Vec<Result<PathBuf, PortError>> {
        self.journal.borrow_mut().push(format!(
            "quota filesystems {}",
            mount_points
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        ));
        mount_points
            .iter()
            .map(|p| {
                if self.off.contains(p) {
                    Err(PortError::msg(format!(
                        "{} (ext4) is mounted without user quotas: mount with usrquota",
                        p.display()
                    )))
                } else {
                    Ok(p.clone())
                }
            })
            .collect()
    }

    fn get(&self, filesystem: &PathBuf, uid: u32) -> Result<QuotaState, PortError> {
        let fs = filesystem.display().to_string();
        self.journal
            .borrow_mut()
            .push(format!("quota get {fs} {uid}"));
        Ok(self.state(&fs, uid))
    }

    fn set(&self, filesystem: &PathBuf, uid: u32, limits: &QuotaLimits) -> Result<(), PortError> {
        let fs = filesystem.display().to_string();
        self.journal.borrow_mut().push(format!(
            "quota set {fs} {uid} {}",
            limits.settings().join(" ")
        ));
        if self.refuse_set {
            return Err(PortError::msg("quotactl: Operation not permitted"));
        }
        let state = QuotaState {
            limits: *limits,
            ..self.state(&fs, uid)
        };
        self.hold(&fs, uid, state);
        Ok(())
    }
}

/// The node's GPU facts; `broken` fails the lookup. Default: no GPUs.
#[derive(Default)]
pub struct FakeGpus {
    pub node: GpuNode,
    pub usage: Option<Vec<crate::gpu::GpuUsage>>,
    pub broken: bool,
    /// `usage` fails with this (a broken driver: NVML does not load).
    pub usage_error: Option<String>,
}

impl GpuPort for FakeGpus {
    fn node(&self) -> Result<GpuNode, PortError> {
        if self.broken {
            return Err(PortError::msg("cannot read /proc/devices"));
        }
        Ok(self.node.clone())
    }

    fn usage(&self) -> Result<Option<Vec<crate::gpu::GpuUsage>>, PortError> {
        if let Some(why) = &self.usage_error {
            return Err(PortError::msg(why.clone()));
        }
        Ok(self.usage.clone())
    }
}
