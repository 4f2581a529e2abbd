//! The cgroup hierarchy, and the mapping from an allocation to the
//! properties systemd sets on a user's slice (DESIGN §8).

use std::path::Path;

use crate::model::Allocation;

/// How the machine mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v2 only (`/sys/fs/cgroup` is cgroup2).
    Unified,
    /// v1 controllers with a v2 tree at `/sys/fs/cgroup/unified` (systemd's default on v1).
    Hybrid,
    /// v1 only.
    Legacy,
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

impl Hierarchy {
    /// Reads the hierarchy from the filesystem types under `root` (normally `/sys/fs/cgroup`).
    pub fn detect_at(root: &Path) -> std::io::Result<Self> {
        let is_cgroup2 = |p: &Path| -> std::io::Result<bool> {
            let stat = nix::sys::statfs::statfs(p).map_err(std::io::Error::from)?;
            Ok(stat.filesystem_type().0 as i64 == CGROUP2_SUPER_MAGIC)
        };
        if is_cgroup2(root)? {
            return Ok(Hierarchy::Unified);
        }
        let unified = root.join("unified");
        if unified.is_dir() && is_cgroup2(&unified).unwrap_or(false) {
            return Ok(Hierarchy::Hybrid);
        }
        Ok(Hierarchy::Legacy)
    }

    pub fn detect() -> std::io::Result<Self> {
        Self::detect_at(Path::new("/sys/fs/cgroup"))
    }

    pub fn describe(self) -> &'static str {
        match self {
            Hierarchy::Unified => "cgroup v2 (unified)",
            Hierarchy::Hybrid => "cgroup v1 (hybrid, v2 tree at /sys/fs/cgroup/unified)",
            Hierarchy::Legacy => "cgroup v1 (legacy)",
        }
    }
}

/// One value of a unit property, in the D-Bus type systemd expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyValue {
    /// `b`
    Bool(bool),
    /// `t`; `u64::MAX` is "infinity".
    U64(u64),
}

/// A property for `SetUnitProperties`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceProperty {
    pub name: &'static str,
    pub value: PropertyValue,
}

impl std::fmt::Display for SliceProperty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.value {
            PropertyValue::Bool(b) => write!(f, "{}={}", self.name, if b { "yes" } else { "no" }),
            PropertyValue::U64(u64::MAX) => write!(f, "{}=infinity", self.name),
            PropertyValue::U64(v) => write!(f, "{}={v}", self.name),
        }
    }
}

/// The slice of user `uid`.
pub fn user_slice(uid: u32) -> String {
    format!("user-{uid}.slice")
}

/// The properties that give a user's slice its allocation. Accounting is
/// always on, so usage can be read back.
///
/// The names are the same on both hierarchies: systemd translates them, on
/// v2 to `cpu.max`, `memory.max`, `pids.max`, on v1 to `cpu.cfs_quota_us`,
/// `memory.limit_in_bytes` (systemd 252 maps `MemoryMax` there) and
/// `pids.max`. The hierarchy stays a parameter for the properties that do
/// differ (IO weight, device rules) as they come.
pub fn slice_properties(allocation: &Allocation, hierarchy: Hierarchy) -> Vec<SliceProperty> {
    let prop = |name, value| SliceProperty { name, value };
    let _ = hierarchy;
    vec![
        prop("CPUAccounting", PropertyValue::Bool(true)),
        prop("MemoryAccounting", PropertyValue::Bool(true)),
        prop("TasksAccounting", PropertyValue::Bool(true)),
        prop(
            "CPUQuotaPerSecUSec",
            PropertyValue::U64(allocation.cpu.quota_per_sec_usec()),
        ),
        prop(
            "MemoryMax",
            PropertyValue::U64(allocation.memory.as_systemd_u64()),
        ),
        prop(
            "TasksMax",
            PropertyValue::U64(allocation.tasks.as_systemd_u64()),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cpu, Size, Tasks};

    fn values(props: &[SliceProperty]) -> Vec<String> {
        props.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn limits_map_to_slice_properties_on_both_hierarchies() {
        let allocation = Allocation {
            cpu: Cpu::Percent(50),
            memory: Size::Bytes(256 << 20),
            tasks: Tasks::Count(64),
            ..Allocation::default()
        };
        for hierarchy in [Hierarchy::Unified, Hierarchy::Hybrid, Hierarchy::Legacy] {
            assert_eq!(
                values(&slice_properties(&allocation, hierarchy)),
                [
                    "CPUAccounting=yes",
                    "MemoryAccounting=yes",
                    "TasksAccounting=yes",
                    "CPUQuotaPerSecUSec=500000",
                    "MemoryMax=268435456",
                    "TasksMax=64",
                ],
                "{hierarchy:?}"
            );
        }
    }

    #[test]
    fn infinity_is_u64_max() {
        let allocation = Allocation {
            cpu: Cpu::Infinity,
            memory: Size::Infinity,
            tasks: Tasks::Infinity,
            ..Allocation::default()
        };
        for hierarchy in [Hierarchy::Unified, Hierarchy::Legacy] {
            let props = slice_properties(&allocation, hierarchy);
            for name in ["CPUQuotaPerSecUSec", "MemoryMax", "TasksMax"] {
                let p = props.iter().find(|p| p.name == name).unwrap();
                assert_eq!(p.value, PropertyValue::U64(u64::MAX), "{name}");
            }
        }
    }

    #[test]
    fn unit_names() {
        assert_eq!(user_slice(1000), "user-1000.slice");
    }

    #[test]
    fn detects_this_machine() {
        // Whatever the host has, detection must answer, and /tmp is no cgroup2.
        Hierarchy::detect().unwrap();
        assert_ne!(
            Hierarchy::detect_at(Path::new("/tmp")).unwrap(),
            Hierarchy::Unified
        );
    }
}
