//! A user's slice: its name, and the mapping from an allocation to the
//! properties systemd sets on it (DESIGN §8). Pure: the systemd adapter
//! sends these, the apply use case decides when.

use super::gpu::DeviceRule;
use super::limits::Allocation;

/// One value of a unit property, in the D-Bus type systemd expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyValue {
    /// `b`
    Bool(bool),
    /// `t`; `u64::MAX` is "infinity".
    U64(u64),
    /// `s`
    Str(&'static str),
    /// `a(ss)`: `DeviceAllow`'s (device, access) pairs. Each one sent adds
    /// to the unit's list; an empty one clears it.
    Devices(Vec<(String, String)>),
}

/// A property for `SetUnitProperties`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceProperty {
    pub name: &'static str,
    pub value: PropertyValue,
}

impl std::fmt::Display for SliceProperty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            PropertyValue::Bool(b) => write!(f, "{}={}", self.name, if *b { "yes" } else { "no" }),
            PropertyValue::U64(u64::MAX) => write!(f, "{}=infinity", self.name),
            PropertyValue::U64(v) => write!(f, "{}={v}", self.name),
            PropertyValue::Str(v) => write!(f, "{}={v}", self.name),
            PropertyValue::Devices(list) => {
                let entries: Vec<String> = list.iter().map(|(d, a)| format!("{d}:{a}")).collect();
                write!(f, "{}={}", self.name, entries.join(","))
            }
        }
    }
}

/// The slice of user `uid`.
pub fn user_slice(uid: u32) -> String {
    format!("user-{uid}.slice")
}

/// The uid of the user slice a cgroup path lies in
/// (`/user.slice/user-1001.slice/session-3.scope` -> 1001).
pub fn uid_of_slice_path(path: &str) -> Option<u32> {
    path.split('/').find_map(|part| {
        let digits = part.strip_prefix("user-")?.strip_suffix(".slice")?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    })
}

/// The uid of the user slice a process is in, from its
/// `/proc/PID/cgroup` (`0::/user.slice/user-1001.slice/...` on v2; on v1 the
/// first hierarchy that places it in one, systemd's own named one included).
pub fn uid_of_cgroup_file(text: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        // hierarchy-ID:controllers:path; the path may hold colons.
        let path = line.splitn(3, ':').nth(2)?;
        uid_of_slice_path(path)
    })
}

/// Declared with the limits, whose systemd properties depend on it.
pub use super::limits::CgroupVersion;

/// The properties that give a user's slice its allocation. Accounting is
/// always on, so usage can be read back.
///
/// Most names are the same on both cgroup versions: systemd translates
/// them, on v2 to `cpu.max`, `memory.max`, `memory.high`, `pids.max`, on v1
/// to `cpu.cfs_quota_us`, `memory.limit_in_bytes` (systemd 252 maps
/// `MemoryMax` there) and `pids.max`. The weights are v1's own properties
/// there (`CPUShares`, `BlockIOWeight`), so `systemctl show` reads them
/// back as the kernel has them. v1 has no `memory.high`: systemd keeps
/// `MemoryHigh` there but applies nothing (see [`slice_notes`]).
pub fn slice_properties(allocation: &Allocation, version: CgroupVersion) -> Vec<SliceProperty> {
    let accounting = ["CPUAccounting", "MemoryAccounting", "TasksAccounting"]
        .into_iter()
        .map(|name| SliceProperty {
            name,
            value: PropertyValue::Bool(true),
        });
    let limits = allocation
        .slice_limits(version)
        .into_iter()
        .map(|(name, value)| SliceProperty {
            name,
            value: PropertyValue::U64(value),
        });
    accounting.chain(limits).collect()
}

/// What of `allocation` the node's cgroup version cannot apply as given,
/// for the admin who set it; `None` where everything applies.
pub fn slice_notes(allocation: &Allocation, version: CgroupVersion) -> Option<String> {
    if version == CgroupVersion::V2 {
        return None;
    }
    let mut notes = Vec::new();
    if let (weight, true) = allocation.io_weight.block_io_weight() {
        notes.push(format!(
            "io-weight {} is BlockIOWeight={weight} on cgroup v1 (its range is 10..1000)",
            allocation.io_weight
        ));
    }
    if allocation.memory_high != crate::model::Size::Infinity {
        notes.push(format!(
            "memory-high {} has no effect on cgroup v1 (the kernel has no memory.high there: \
             systemd keeps MemoryHigh but applies nothing; memory {} is the only memory limit)",
            allocation.memory_high, allocation.memory
        ));
    }
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// The device properties of a slice for `rules`: the list cleared, then
/// set (so a grant taken away is gone), and `DevicePolicy=closed` (systemd
/// adds the standard pseudo devices, /dev/null and the like, itself).
pub fn device_properties(rules: &[DeviceRule]) -> Vec<SliceProperty> {
    vec![
        SliceProperty {
            name: "DeviceAllow",
            value: PropertyValue::Devices(Vec::new()),
        },
        SliceProperty {
            name: "DeviceAllow",
            value: PropertyValue::Devices(
                rules
                    .iter()
                    .map(|r| (r.device.clone(), r.access.to_owned()))
                    .collect(),
            ),
        },
        SliceProperty {
            name: "DevicePolicy",
            value: PropertyValue::Str("closed"),
        },
    ]
}

/// What systemd reports about a slice. `None` where systemd does not know
/// (it says `u64::MAX`, e.g. before the slice has started).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SliceUsage {
    pub unit: String,
    pub active_state: String,
    pub cpu_usage_nsec: Option<u64>,
    pub memory_current: Option<u64>,
    pub tasks_current: Option<u64>,
    pub cpu_quota_per_sec_usec: Option<u64>,
    pub memory_max: Option<u64>,
    pub tasks_max: Option<u64>,
    /// `MemoryHigh` (kept by systemd on cgroup v1 too, where it does nothing).
    pub memory_high: Option<u64>,
    /// `CPUWeight`, or on cgroup v1 `CPUShares` as a weight (x 100 / 1024).
    pub cpu_weight: Option<u64>,
    /// `IOWeight`, or on cgroup v1 `BlockIOWeight`.
    pub io_weight: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cpu, Size, Tasks};

    fn values(props: &[SliceProperty]) -> Vec<String> {
        props.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn slices_in_cgroup_paths() {
        assert_eq!(
            uid_of_slice_path("/user.slice/user-1001.slice/session-3.scope"),
            Some(1001)
        );
        assert_eq!(
            uid_of_slice_path("/user.slice/user-1001.slice/user@1001.service/app.slice"),
            Some(1001)
        );
        assert_eq!(uid_of_slice_path("/user.slice/user-1001.slice"), Some(1001));
        for none in [
            "/system.slice/docker-abc.scope",
            "/user.slice",
            "/user.slice/user-.slice",
            "/user.slice/user-10x1.slice",
            "/user.slice/user-99999999999.slice",
            "",
        ] {
            assert_eq!(uid_of_slice_path(none), None, "{none}");
        }
    }

    #[test]
    fn a_processs_slice_from_proc_cgroup() {
        assert_eq!(
            uid_of_cgroup_file("0::/user.slice/user-1001.slice/session-4.scope\n"),
            Some(1001)
        );
        let v1 = "12:pids:/user.slice/user-1002.slice/session-2.scope\n\
                  4:memory:/user.slice/user-1002.slice/session-2.scope\n\
                  1:name=systemd:/user.slice/user-1002.slice/session-2.scope\n\
                  0::/user.slice/user-1002.slice/session-2.scope\n";
        assert_eq!(uid_of_cgroup_file(v1), Some(1002));
        assert_eq!(
            uid_of_cgroup_file("0::/system.slice/docker-1.scope\n"),
            None
        );
        assert_eq!(uid_of_cgroup_file("garbage"), None);
        assert_eq!(uid_of_cgroup_file(""), None);
    }

    #[test]
    fn limits_map_to_slice_properties() {
        let allocation = Allocation {
            cpu: Cpu::Percent(50),
            memory: Size::Bytes(256 << 20),
            tasks: Tasks::Count(64),
            cpu_weight: "300".parse().unwrap(),
            io_weight: "50".parse().unwrap(),
            memory_high: Size::Bytes(128 << 20),
            ..Allocation::default()
        };
        assert_eq!(
            values(&slice_properties(&allocation, CgroupVersion::V2)),
            [
                "CPUAccounting=yes",
                "MemoryAccounting=yes",
                "TasksAccounting=yes",
                "CPUQuotaPerSecUSec=500000",
                "MemoryMax=268435456",
                "MemoryHigh=134217728",
                "TasksMax=64",
                "CPUWeight=300",
                "IOWeight=50",
            ]
        );
        let v1 = values(&slice_properties(&allocation, CgroupVersion::V1));
        assert_eq!(
            v1[..7],
            values(&slice_properties(&allocation, CgroupVersion::V2))[..7]
        );
        assert_eq!(v1[7..], ["CPUShares=3072", "BlockIOWeight=50"]);
    }

    #[test]
    fn defaults_set_the_default_weights_and_no_soft_limit() {
        let v2 = values(&slice_properties(&Allocation::default(), CgroupVersion::V2));
        for expected in ["MemoryHigh=infinity", "CPUWeight=100", "IOWeight=100"] {
            assert!(v2.iter().any(|v| v == expected), "{expected}: {v2:?}");
        }
        let v1 = values(&slice_properties(&Allocation::default(), CgroupVersion::V1));
        for expected in ["CPUShares=1024", "BlockIOWeight=100"] {
            assert!(v1.iter().any(|v| v == expected), "{expected}: {v1:?}");
        }
        assert_eq!(slice_notes(&Allocation::default(), CgroupVersion::V1), None);
    }

    #[test]
    fn cgroup_v1_says_what_it_cannot_apply() {
        let allocation = Allocation {
            io_weight: "5000".parse().unwrap(),
            memory_high: Size::Bytes(128 << 20),
            memory: Size::Bytes(512 << 20),
            ..Allocation::default()
        };
        assert_eq!(slice_notes(&allocation, CgroupVersion::V2), None);
        let notes = slice_notes(&allocation, CgroupVersion::V1).unwrap();
        assert!(
            notes.starts_with("io-weight 5000 is BlockIOWeight=1000 on cgroup v1"),
            "{notes}"
        );
        assert!(
            notes.contains("memory-high 128M has no effect on cgroup v1"),
            "{notes}"
        );
        assert!(values(&slice_properties(&allocation, CgroupVersion::V1))
            .contains(&"BlockIOWeight=1000".to_string()));
    }

    #[test]
    fn infinity_is_u64_max() {
        let allocation = Allocation {
            cpu: Cpu::Infinity,
            memory: Size::Infinity,
            tasks: Tasks::Infinity,
            ..Allocation::default()
        };
        let props = slice_properties(&allocation, CgroupVersion::V2);
        for name in ["CPUQuotaPerSecUSec", "MemoryMax", "MemoryHigh", "TasksMax"] {
            let p = props.iter().find(|p| p.name == name).unwrap();
            assert_eq!(p.value, PropertyValue::U64(u64::MAX), "{name}");
        }
    }

    #[test]
    fn unit_names() {
        assert_eq!(user_slice(1000), "user-1000.slice");
    }

    #[test]
    fn device_properties_clear_then_set_the_list_and_close_the_policy() {
        let rules = [
            DeviceRule {
                device: "char-pts".into(),
                access: "rwm",
            },
            DeviceRule {
                device: "/dev/nvidia2".into(),
                access: "rw",
            },
        ];
        let shown: Vec<String> = device_properties(&rules)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "DeviceAllow=",
                "DeviceAllow=char-pts:rwm,/dev/nvidia2:rw",
                "DevicePolicy=closed"
            ]
        );
    }
}
