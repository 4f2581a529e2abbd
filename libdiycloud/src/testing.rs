//! Fake ports for the use cases' tests (here and in the front doors' own,
//! through the `testing` feature): they record what they are asked, in
//! order, and fail where told to.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::adapters::platform::PRIVILEGED_GROUPS;
use crate::model::gpu::GpuNode;
use crate::model::quota::{QuotaLimits, QuotaState};
use crate::model::slice::{CgroupVersion, SliceProperty, SliceUsage};
use crate::ports::{
    AccountError, AccountPort, GpuPort, Membership, PortError, QuotaPort, SliceLink, SlicePort,
};

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

    /// Polls until done: the fakes' futures are ready within a few polls
    /// and wake themselves when they are not.
    fn block_on<F: Future>(&self, future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
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

/// The node's accounts and groups, by name. `broken` fails every lookup;
/// `refuse` names a tool (`useradd`, `usermod`, `userdel`, `groupadd`,
/// `gpasswd`) that fails. Every write is in `journal`, as the tool's name
/// and its arguments.
#[derive(Default)]
pub struct FakeAccounts {
    pub uids: RefCell<Vec<(String, u32)>>,
    /// Each group's members.
    pub groups: RefCell<BTreeMap<String, Vec<String>>>,
    pub journal: Journal,
    pub broken: bool,
    pub refuse: Option<&'static str>,
}

impl FakeAccounts {
    /// The node's accounts: these names with these uids.
    pub fn with(uids: &[(&str, u32)]) -> Self {
        Self {
            uids: RefCell::new(uids.iter().map(|(n, u)| ((*n).to_owned(), *u)).collect()),
            ..Self::default()
        }
    }

    /// `name`'s account now has `uid` (`None`: it is gone).
    pub fn set_uid(&self, name: &str, uid: Option<u32>) {
        let mut uids = self.uids.borrow_mut();
        uids.retain(|(n, _)| n != name);
        if let Some(uid) = uid {
            uids.push((name.to_owned(), uid));
        }
    }

    /// `group`'s members now (empty where there is no such group).
    pub fn members(&self, group: &str) -> Vec<String> {
        self.groups.borrow().get(group).cloned().unwrap_or_default()
    }

    /// What the tools were asked, in order.
    pub fn writes(&self) -> Vec<String> {
        self.journal.borrow().clone()
    }

    fn lookup(&self, name: &str) -> Result<Option<u32>, AccountError> {
        if self.broken {
            return Err(AccountError::Lookup {
                name: name.into(),
                source: nix::Error::EIO,
            });
        }
        Ok(self
            .uids
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, u)| *u))
    }

    /// Runs `program` with `args`, as far as the journal and `refuse` go.
    fn run(&self, program: &str, args: &[&str]) -> Result<(), AccountError> {
        self.journal
            .borrow_mut()
            .push(format!("{program} {}", args.join(" ")));
        if self.refuse == Some(program) {
            return Err(AccountError::Failed {
                program: program.into(),
                status: "exit status: 1".into(),
                stderr: format!("{program}: cannot lock /etc/passwd; try again later."),
            });
        }
        Ok(())
    }
}

impl AccountPort for FakeAccounts {
    fn uid(&self, name: &str) -> Result<Option<u32>, PortError> {
        if self.broken {
            return Err(PortError::msg("NSS is down"));
        }
        self.lookup(name).map_err(PortError::new)
    }

    fn uid_min(&self) -> u32 {
        1000
    }

    fn create(
        &self,
        name: &str,
        _full_name: Option<&str>,
        _shell: &std::path::Path,
        group: &str,
    ) -> Result<u32, AccountError> {
        if let Some(uid) = self.lookup(name)? {
            return Err(AccountError::Exists {
                name: name.into(),
                uid,
            });
        }
        self.run("useradd", &["--groups", group, name])?;
        let uid = self
            .uids
            .borrow()
            .iter()
            .map(|(_, u)| *u + 1)
            .max()
            .unwrap_or(1000)
            .max(1000);
        self.set_uid(name, Some(uid));
        self.groups
            .borrow_mut()
            .entry(group.to_owned())
            .or_default()
            .push(name.to_owned());
        Ok(uid)
    }

    fn set_full_name(&self, name: &str, full_name: &str) -> Result<(), AccountError> {
        self.run("usermod", &["--comment", full_name, name])
    }

    fn delete(&self, name: &str, remove_home: bool) -> Result<(), AccountError> {
        if self.lookup(name)?.is_none() {
            return Ok(());
        }
        let args: &[&str] = if remove_home {
            &["--remove", name]
        } else {
            &[name]
        };
        self.run("userdel", args)?;
        self.set_uid(name, None);
        for members in self.groups.borrow_mut().values_mut() {
            members.retain(|m| m != name);
        }
        Ok(())
    }

    fn ensure_group(&self, group: &str) -> Result<bool, AccountError> {
        if self.groups.borrow().contains_key(group) {
            return Ok(false);
        }
        self.run("groupadd", &["--system", group])?;
        self.groups
            .borrow_mut()
            .insert(group.to_owned(), Vec::new());
        Ok(true)
    }

    fn add_to_group(&self, name: &str, group: &str) -> Result<(), AccountError> {
        if self.membership(name, group)? == Membership::Member {
            return Ok(());
        }
        self.run("gpasswd", &["--add", name, group])?;
        self.groups
            .borrow_mut()
            .entry(group.to_owned())
            .or_default()
            .push(name.to_owned());
        Ok(())
    }

    fn remove_from_group(&self, name: &str, group: &str) -> Result<(), AccountError> {
        if !self.members(group).iter().any(|m| m == name) {
            return Ok(());
        }
        self.run("gpasswd", &["--delete", name, group])?;
        if let Some(members) = self.groups.borrow_mut().get_mut(group) {
            members.retain(|m| m != name);
        }
        Ok(())
    }

    fn membership(&self, name: &str, group: &str) -> Result<Membership, AccountError> {
        let Some(members) = self.groups.borrow().get(group).cloned() else {
            return Ok(Membership::NoGroup);
        };
        if self.lookup(name)?.is_none() {
            return Ok(Membership::NoAccount);
        }
        Ok(if members.iter().any(|m| m == name) {
            Membership::Member
        } else {
            Membership::NotMember
        })
    }

    fn privileged_groups(&self, name: &str) -> Result<Vec<String>, AccountError> {
        Ok(PRIVILEGED_GROUPS
            .iter()
            .filter(|g| self.members(g).iter().any(|m| m == name))
            .map(|g| (*g).to_owned())
            .collect())
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
    pub usage: Option<Vec<crate::model::gpu::GpuUsage>>,
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

    fn usage(&self) -> Result<Option<Vec<crate::model::gpu::GpuUsage>>, PortError> {
        if let Some(why) = &self.usage_error {
            return Err(PortError::msg(why.clone()));
        }
        Ok(self.usage.clone())
    }
}
