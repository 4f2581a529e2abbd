//! A user's GPU grant in the node's terms (DESIGN §10), pure: which of the
//! node's GPUs a grant names, the device allow-list of the user's slice,
//! and the session's environment. The node's facts (its GPUs, the majors in
//! /proc/devices, which control nodes exist) come from the gpu adapter.

use std::collections::BTreeMap;

use super::limits::{GpuId, GpuList};

/// One GPU of the node, as far as a grant needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGpu {
    /// NVML's index (PCI bus order).
    pub index: u32,
    /// `GPU-...` where known.
    pub uuid: Option<String>,
    /// The minor of `/dev/nvidiaN`, which need not equal the index.
    pub minor: u32,
}

/// What a grant needs to know about the node: its GPUs, the character
/// majors of /proc/devices, and which control nodes exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuNode {
    pub gpus: Vec<NodeGpu>,
    pub majors: Vec<CharMajor>,
    /// The [`CONTROL_NODES`] this node has.
    pub present: Vec<&'static str>,
}

/// What applying a grant on a node comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuPlan {
    /// A node without NVIDIA GPUs: no device policy at all.
    NoGpus,
    /// The slice's device rules and the session's environment.
    Grant {
        granted: Vec<NodeGpu>,
        rules: Vec<DeviceRule>,
        env: BTreeMap<String, String>,
    },
}

/// The plan for `list` on `node`.
pub fn plan(list: &GpuList, node: &GpuNode) -> Result<GpuPlan, GrantError> {
    if node.gpus.is_empty() {
        // `none` and `all` mean nothing here; a named GPU is an error.
        granted(list, &[])?;
        return Ok(GpuPlan::NoGpus);
    }
    let granted = granted(list, &node.gpus)?;
    Ok(GpuPlan::Grant {
        rules: device_allow(&node.majors, &granted, &node.present),
        env: environment(&granted),
        granted: granted.into_iter().cloned().collect(),
    })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("this node has no GPU {id}; it has {available}")]
    Unknown { id: String, available: String },
}

/// The node's GPUs that `list` names, in index order, each once.
pub fn granted<'a>(list: &GpuList, node: &'a [NodeGpu]) -> Result<Vec<&'a NodeGpu>, GrantError> {
    let ids = match list {
        GpuList::None => return Ok(Vec::new()),
        GpuList::All => return Ok(node.iter().collect()),
        GpuList::Some(ids) => ids,
    };
    let mut found = Vec::new();
    for id in ids {
        let gpu = node.iter().find(|g| match id {
            GpuId::Index(i) => g.index == u32::from(*i),
            GpuId::Uuid(u) => g.uuid.as_deref() == Some(u.as_str()),
        });
        match gpu {
            Some(gpu) => found.push(gpu),
            None => {
                return Err(GrantError::Unknown {
                    id: id.to_string(),
                    available: describe(node),
                })
            }
        }
    }
    found.sort_by_key(|g| g.index);
    found.dedup_by_key(|g| g.index);
    Ok(found)
}

/// The node's GPUs for an error message: `0 (GPU-...), 1 (GPU-...)`.
fn describe(node: &[NodeGpu]) -> String {
    if node.is_empty() {
        return "no GPUs (only `none` and `all` can be granted)".into();
    }
    node.iter()
        .map(|g| match &g.uuid {
            Some(uuid) => format!("{} ({uuid})", g.index),
            None => g.index.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A character-device major and its name, from /proc/devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharMajor {
    pub major: u32,
    pub name: String,
}

/// The character devices of /proc/devices (the block devices after the
/// blank line and `Block devices:` are not ours to allow).
pub fn char_majors(proc_devices: &str) -> Vec<CharMajor> {
    proc_devices
        .lines()
        .skip_while(|l| l.trim() != "Character devices:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("Block devices:"))
        .filter_map(|l| {
            let (major, name) = l.trim().split_once(' ')?;
            Some(CharMajor {
                major: major.parse().ok()?,
                name: name.trim().to_owned(),
            })
        })
        .collect()
}

/// One `DeviceAllow=` entry: a device node or `char-NAME`, and the access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub device: String,
    pub access: &'static str,
}

/// The control nodes every GPU user needs, where the node has them.
pub const CONTROL_NODES: [&str; 4] = [
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
    "/dev/nvidia-modeset",
];

/// The device allow-list of a slice (`DevicePolicy=closed`): every
/// character major except NVIDIA's (terminals, fuse, /dev/null keep
/// working), then the granted `/dev/nvidiaN` and, for anyone with a GPU, the
/// control nodes in `present` (those the node has). A major is NVIDIA's if
/// any of its names starts with `nvidia`: they are given out at module load
/// (only 195 is fixed), so they are read, never assumed.
pub fn device_allow(
    majors: &[CharMajor],
    granted: &[&NodeGpu],
    present: &[&str],
) -> Vec<DeviceRule> {
    let nvidia: Vec<u32> = majors
        .iter()
        .filter(|m| m.name.starts_with("nvidia"))
        .map(|m| m.major)
        .collect();
    let mut rules: Vec<DeviceRule> = Vec::new();
    for m in majors.iter().filter(|m| !nvidia.contains(&m.major)) {
        let device = format!("char-{}", m.name);
        if !rules.iter().any(|r| r.device == device) {
            rules.push(DeviceRule {
                device,
                access: "rwm",
            });
        }
    }
    if !granted.is_empty() {
        for node in CONTROL_NODES.iter().filter(|n| present.contains(n)) {
            rules.push(DeviceRule {
                device: (*node).to_owned(),
                access: "rw",
            });
        }
        for gpu in granted {
            rules.push(DeviceRule {
                device: format!("/dev/nvidia{}", gpu.minor),
                access: "rw",
            });
        }
    }
    rules
}

/// The session's environment for a grant: the granted UUIDs (CUDA numbers
/// the visible GPUs from 0 whatever their index), or, where a UUID is not
/// known, the indices in PCI bus order. Nothing granted: CUDA sees none.
pub fn environment(granted: &[&NodeGpu]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if granted.is_empty() {
        env.insert("CUDA_VISIBLE_DEVICES".into(), String::new());
        env.insert("NVIDIA_VISIBLE_DEVICES".into(), "void".into());
        return env;
    }
    let uuids: Option<Vec<&str>> = granted.iter().map(|g| g.uuid.as_deref()).collect();
    let visible = match uuids {
        Some(uuids) => uuids.join(","),
        None => {
            env.insert("CUDA_DEVICE_ORDER".into(), "PCI_BUS_ID".into());
            granted
                .iter()
                .map(|g| g.index.to_string())
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    env.insert("CUDA_VISIBLE_DEVICES".into(), visible.clone());
    env.insert("NVIDIA_VISIBLE_DEVICES".into(), visible);
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/devices as the H200 node had it (character part abridged).
    const PROC_DEVICES: &str = "Character devices:\n  1 mem\n  4 /dev/vc/0\n  4 tty\n  5 /dev/tty\n  5 /dev/console\n  5 /dev/ptmx\n 10 misc\n136 pts\n195 nvidia\n195 nvidiactl\n238 nvidia-uvm\n239 nvidia-nvswitch\n240 nvidia-nvlink\n241 nvidia-caps\n242 nvidia-caps-imex-channels\n\nBlock devices:\n  7 loop\n254 virtblk\n";

    fn node() -> Vec<NodeGpu> {
        vec![
            NodeGpu {
                index: 0,
                uuid: Some("GPU-82efa4d8-2419-4b59-e2b6-52028b659ad4".into()),
                minor: 2,
            },
            NodeGpu {
                index: 1,
                uuid: Some("GPU-00000000-1111-2222-3333-444444444444".into()),
                minor: 0,
            },
        ]
    }

    fn list(s: &str) -> GpuList {
        s.parse().unwrap()
    }

    #[test]
    fn grants_resolve_against_the_node() {
        let node = node();
        assert!(granted(&list("none"), &node).unwrap().is_empty());
        assert_eq!(granted(&list("all"), &node).unwrap().len(), 2);
        let by_uuid = granted(&list("GPU-00000000-1111-2222-3333-444444444444,0"), &node).unwrap();
        let indices: Vec<u32> = by_uuid.iter().map(|g| g.index).collect();
        assert_eq!(indices, [0, 1], "index order");
        let err = granted(&list("5"), &node).unwrap_err().to_string();
        assert!(
            err.contains("no GPU 5") && err.contains("0 (GPU-82efa4d8"),
            "{err}"
        );
        let none_here = granted(&list("0"), &[]).unwrap_err().to_string();
        assert!(none_here.contains("only `none` and `all`"), "{none_here}");
        assert!(granted(&list("all"), &[]).unwrap().is_empty());
    }

    #[test]
    fn character_majors_only() {
        let majors = char_majors(PROC_DEVICES);
        assert_eq!(majors.first().unwrap().name, "mem");
        assert!(majors.iter().any(|m| m.major == 242));
        assert!(!majors.iter().any(|m| m.name == "virtblk"));
        assert!(char_majors("garbage").is_empty());
    }

    #[test]
    fn the_allow_list_leaves_out_every_nvidia_major_but_the_granted_nodes() {
        let majors = char_majors(PROC_DEVICES);
        let node = node();
        let present = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"];
        let none = device_allow(&majors, &[], &present);
        assert!(
            none.iter().all(|r| !r.device.contains("nvidia")),
            "{none:?}"
        );
        assert!(none.contains(&DeviceRule {
            device: "char-pts".into(),
            access: "rwm"
        }));
        assert!(none.iter().any(|r| r.device == "char-/dev/ptmx"));

        let one = granted(&list("0"), &node).unwrap();
        let rules = device_allow(&majors, &one, &present);
        let nvidia: Vec<&str> = rules
            .iter()
            .filter(|r| r.device.contains("nvidia"))
            .map(|r| r.device.as_str())
            .collect();
        assert_eq!(
            nvidia,
            [
                "/dev/nvidiactl",
                "/dev/nvidia-uvm",
                "/dev/nvidia-uvm-tools",
                "/dev/nvidia2"
            ],
            "the minor, not the index; no modeset where the node has none"
        );
    }

    #[test]
    fn the_environment_names_uuids_or_indices_in_bus_order() {
        let node = node();
        let env = environment(&granted(&list("all"), &node).unwrap());
        assert_eq!(
            env["CUDA_VISIBLE_DEVICES"],
            "GPU-82efa4d8-2419-4b59-e2b6-52028b659ad4,GPU-00000000-1111-2222-3333-444444444444"
        );
        assert_eq!(env["NVIDIA_VISIBLE_DEVICES"], env["CUDA_VISIBLE_DEVICES"]);
        assert!(!env.contains_key("CUDA_DEVICE_ORDER"));

        let no_uuid = [NodeGpu {
            index: 3,
            uuid: None,
            minor: 3,
        }];
        let env = environment(&no_uuid.iter().collect::<Vec<_>>());
        assert_eq!(env["CUDA_VISIBLE_DEVICES"], "3");
        assert_eq!(env["CUDA_DEVICE_ORDER"], "PCI_BUS_ID");

        let env = environment(&[]);
        assert_eq!(env["CUDA_VISIBLE_DEVICES"], "");
        assert_eq!(env["NVIDIA_VISIBLE_DEVICES"], "void");
    }

    #[test]
    fn a_plan_on_a_node_without_gpus_sets_nothing() {
        let empty = GpuNode::default();
        assert_eq!(plan(&list("none"), &empty), Ok(GpuPlan::NoGpus));
        assert_eq!(plan(&list("all"), &empty), Ok(GpuPlan::NoGpus));
        assert!(plan(&list("0"), &empty).is_err());
        let node = GpuNode {
            gpus: node(),
            majors: char_majors(PROC_DEVICES),
            present: vec!["/dev/nvidiactl"],
        };
        match plan(&list("1"), &node).unwrap() {
            GpuPlan::Grant {
                granted,
                rules,
                env,
            } => {
                assert_eq!(granted.len(), 1);
                assert!(rules.iter().any(|r| r.device == "/dev/nvidia0"));
                assert_eq!(
                    env["CUDA_VISIBLE_DEVICES"],
                    "GPU-00000000-1111-2222-3333-444444444444"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
