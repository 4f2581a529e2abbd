//! A user's GPU grant in the node's terms (DESIGN §10), pure: which of the
//! node's GPUs a grant names, the device allow-list of the user's slice,
//! and the session's environment. The node's facts (its GPUs, the majors in
//! /proc/devices, which control nodes exist) come from the gpu adapter.

use std::collections::BTreeMap;

use super::limits::{GpuId, GpuList};
use super::time::Timestamp;

/// One GPU of the node, as far as a grant needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGpu {
    /// NVML's index (PCI bus order).
    pub index: u32,
    /// `GPU-...` where known.
    pub uuid: Option<String>,
    /// The minor of `/dev/nvidiaN`, which need not equal the index.
    pub minor: u32,
    /// Its MIG instances (none where MIG is off). In a grant: the
    /// instances granted.
    pub migs: Vec<MigInstance>,
}

/// A MIG instance: a compute instance `ci` in the GPU instance `gi`. Using
/// it takes the parent's `/dev/nvidiaN` and read access to two
/// `nvidia-caps` minors, the GPU instance's and the compute instance's,
/// which the driver gives in `/proc/driver/nvidia/capabilities`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigInstance {
    pub gi: u8,
    pub ci: u8,
    pub gi_minor: u32,
    pub ci_minor: u32,
}

impl NodeGpu {
    /// The location name of one of its instances: see [`mig_name`].
    pub fn mig_name(&self, mig: &MigInstance) -> Option<String> {
        mig_name(self.uuid.as_deref(), mig)
    }
}

/// NVIDIA's location name of a MIG instance of the GPU `gpu_uuid`,
/// `MIG-GPU-.../GI/CI` (what `--gpus` takes, and what CUDA_VISIBLE_DEVICES
/// accepts); none without the GPU's UUID.
pub fn mig_name(gpu_uuid: Option<&str>, mig: &MigInstance) -> Option<String> {
    Some(format!("MIG-{}/{}/{}", gpu_uuid?, mig.gi, mig.ci))
}

/// How one user uses one GPU granted to them by name, as the usage sampler
/// records it: for the flag on GPUs granted but idle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuUse {
    pub username: String,
    pub node: String,
    /// The GPU's UUID, or `index N` where the node does not know it.
    pub gpu: String,
    /// When the sampler first saw it granted.
    pub granted_since: Timestamp,
    /// When it last saw a process of theirs on it; `None`: never.
    pub last_used: Option<Timestamp>,
}

impl GpuUse {
    /// How long it has gone unused at `now` (since the grant, where never
    /// used).
    pub fn idle_for(&self, now: Timestamp) -> u64 {
        let since = self.last_used.unwrap_or(self.granted_since);
        u64::try_from(now.0.saturating_sub(since.0)).unwrap_or(0)
    }
}

/// The key of a granted GPU in [`GpuUse`].
pub fn use_key(gpu: &NodeGpu) -> String {
    gpu.uuid
        .clone()
        .unwrap_or_else(|| format!("index {}", gpu.index))
}

/// The GPUs a user's grant names explicitly (indices, UUIDs, a MIG
/// instance's GPU), which the idle flag watches: `all` shares every GPU
/// and withholds none, so it is never flagged. A grant the node cannot
/// resolve names none here.
pub fn named_grants(list: &GpuList, node: &[NodeGpu]) -> Vec<NodeGpu> {
    match list {
        GpuList::Some(_) => granted(list, node).unwrap_or_default(),
        GpuList::None | GpuList::All => Vec::new(),
    }
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
        granted,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("this node has no GPU {id}; it has {available}")]
    Unknown { id: String, available: String },
    #[error(
        "{id}: grant a MIG instance by its location name, MIG-GPU-UUID/GI/CI, which \
         `slicectl gpu list` shows (a login resolves it from the driver's procfs; a MIG \
         UUID would need NVML inside sshd)"
    )]
    MigUuid { id: String },
}

/// The node's GPUs that `list` names, in index order, each once: a GPU by
/// index or UUID with all its MIG instances, a MIG instance with its GPU
/// (and, of that GPU's instances, the ones granted).
pub fn granted(list: &GpuList, node: &[NodeGpu]) -> Result<Vec<NodeGpu>, GrantError> {
    let ids = match list {
        GpuList::None => return Ok(Vec::new()),
        GpuList::All => return Ok(node.to_vec()),
        GpuList::Some(ids) => ids,
    };
    let unknown = |id: &GpuId| GrantError::Unknown {
        id: id.to_string(),
        available: describe(node),
    };
    let mut found: Vec<NodeGpu> = Vec::new();
    for id in ids {
        let (gpu, migs) = match id {
            GpuId::Index(i) => {
                let gpu = node.iter().find(|g| g.index == u32::from(*i));
                (gpu.ok_or_else(|| unknown(id))?, None)
            }
            GpuId::Uuid(u) if u.starts_with("MIG-") => {
                return Err(GrantError::MigUuid { id: u.clone() })
            }
            GpuId::Uuid(u) => {
                let gpu = node.iter().find(|g| g.uuid.as_deref() == Some(u.as_str()));
                (gpu.ok_or_else(|| unknown(id))?, None)
            }
            GpuId::Mig { gpu, gi, ci } => {
                let parent = node
                    .iter()
                    .find(|g| g.uuid.as_deref() == Some(gpu.as_str()))
                    .ok_or_else(|| unknown(id))?;
                let mig = parent
                    .migs
                    .iter()
                    .find(|m| m.gi == *gi && m.ci == *ci)
                    .ok_or_else(|| unknown(id))?;
                (parent, Some(mig))
            }
        };
        match (found.iter_mut().find(|g| g.index == gpu.index), migs) {
            // The whole GPU: all its instances, whatever else was named.
            (Some(entry), None) => entry.migs.clone_from(&gpu.migs),
            (Some(entry), Some(mig)) => {
                if !entry.migs.contains(mig) {
                    entry.migs.push(mig.clone());
                }
            }
            (None, None) => found.push(gpu.clone()),
            (None, Some(mig)) => found.push(NodeGpu {
                migs: vec![mig.clone()],
                ..gpu.clone()
            }),
        }
    }
    found.sort_by_key(|g| g.index);
    for gpu in &mut found {
        gpu.migs.sort_by_key(|m| (m.gi, m.ci));
    }
    Ok(found)
}

/// The node's GPUs for an error message: `0 (GPU-...), 1 (GPU-...)`, and
/// their MIG instances by name.
fn describe(node: &[NodeGpu]) -> String {
    if node.is_empty() {
        return "no GPUs (only `none` and `all` can be granted)".into();
    }
    node.iter()
        .map(|g| {
            let mut text = match &g.uuid {
                Some(uuid) => format!("{} ({uuid})", g.index),
                None => g.index.to_string(),
            };
            let migs: Vec<String> = g.migs.iter().filter_map(|m| g.mig_name(m)).collect();
            if !migs.is_empty() {
                text.push_str(&format!(" with MIG instances {}", migs.join(", ")));
            }
            text
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

/// One `DeviceAllow=` entry: a device node, `/dev/char/MAJOR:MINOR` or
/// `char-NAME`, and the access.
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
/// control nodes in `present` (those the node has), and for each granted
/// MIG instance its two `nvidia-caps` minors. A major is NVIDIA's if
/// any of its names starts with `nvidia`: they are given out at module load
/// (only 195 is fixed), so they are read, never assumed.
pub fn device_allow(
    majors: &[CharMajor],
    granted: &[NodeGpu],
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
    if granted.is_empty() {
        return rules;
    }
    for node in CONTROL_NODES.iter().filter(|n| present.contains(n)) {
        rules.push(DeviceRule {
            device: (*node).to_owned(),
            access: "rw",
        });
    }
    // The cap nodes by number: /dev/nvidia-caps/nvidia-capN exists only
    // once something made it (nvidia-modprobe), and systemd takes
    // /dev/char/MAJOR:MINOR without the node. Without an `nvidia-caps`
    // major the driver checks caps through procfs files (its
    // `nv_cap_enable_devfs=0`): there is no device to allow.
    let caps = majors.iter().find(|m| m.name == "nvidia-caps");
    for gpu in granted {
        rules.push(DeviceRule {
            device: format!("/dev/nvidia{}", gpu.minor),
            access: "rw",
        });
        for mig in gpu.migs.iter().filter(|_| caps.is_some()) {
            let major = caps.map_or(0, |c| c.major);
            for minor in [mig.gi_minor, mig.ci_minor] {
                let device = format!("/dev/char/{major}:{minor}");
                if !rules.iter().any(|r| r.device == device) {
                    rules.push(DeviceRule {
                        device,
                        access: "r",
                    });
                }
            }
        }
    }
    rules
}

/// The session's environment for a grant: the granted UUIDs (CUDA numbers
/// the visible GPUs from 0 whatever their index), a MIG instance by its
/// location name in place of its GPU, or, where a UUID is not known, the
/// indices in PCI bus order. Nothing granted: CUDA sees none.
pub fn environment(granted: &[NodeGpu]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if granted.is_empty() {
        env.insert("CUDA_VISIBLE_DEVICES".into(), String::new());
        env.insert("NVIDIA_VISIBLE_DEVICES".into(), "void".into());
        return env;
    }
    let names: Option<Vec<String>> = granted
        .iter()
        .map(|g| match g.migs.as_slice() {
            [] => g.uuid.clone(),
            migs => Some(
                migs.iter()
                    .map(|m| g.mig_name(m))
                    .collect::<Option<Vec<_>>>()?
                    .join(","),
            ),
        })
        .collect();
    let visible = match names {
        Some(names) => names.join(","),
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

/// One GPU's load, and who holds its memory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GpuUsage {
    pub index: u32,
    pub uuid: String,
    /// Percent of the last sample period a kernel ran.
    pub utilization_percent: Option<u32>,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    pub processes: Vec<GpuProcess>,
}

/// A process with memory on a GPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GpuProcess {
    pub pid: u32,
    /// Its owner (real uid, from /proc); `None` where it has gone.
    pub uid: Option<u32>,
    /// The user slice it runs in (from /proc/PID/cgroup), whatever its uid:
    /// what the user started, setuid programs and containers run from a
    /// session included.
    pub slice_uid: Option<u32>,
    /// Its name (`comm`), where it is still there.
    pub name: Option<String>,
    /// `None` where the driver does not say.
    pub memory_bytes: Option<u64>,
    /// Percent of the last seconds a kernel of its ran, where the driver
    /// keeps per-process samples (Maxwell and later).
    pub utilization_percent: Option<u32>,
}

/// One user's share of one GPU.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserGpu {
    pub index: u32,
    pub uuid: String,
    pub processes: usize,
    pub memory_bytes: u64,
    /// Their processes' share of the GPU now, added up (at most 100);
    /// `None` where the driver keeps no per-process figures.
    pub utilization_percent: Option<u32>,
    /// Their processes on it: pid and name (`null` for one gone meanwhile).
    pub pids: Vec<UserGpuProcess>,
}

/// One of a user's processes on a GPU.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserGpuProcess {
    pub pid: u32,
    pub name: Option<String>,
    pub memory_bytes: Option<u64>,
    pub utilization_percent: Option<u32>,
}

/// `uid`'s processes on each GPU in `node` (GPUs they have none on left
/// out): those in their slice, and those outside any user slice that they
/// own ([`GpuProcess::owner`]).
pub fn user_gpus(node: &[GpuUsage], uid: u32) -> Vec<UserGpu> {
    node.iter()
        .filter_map(|gpu| {
            let theirs: Vec<_> = gpu
                .processes
                .iter()
                .filter(|p| p.owner() == Some(uid))
                .collect();
            let shares: Vec<u32> = theirs
                .iter()
                .filter_map(|p| p.utilization_percent)
                .collect();
            (!theirs.is_empty()).then(|| UserGpu {
                index: gpu.index,
                uuid: gpu.uuid.clone(),
                processes: theirs.len(),
                memory_bytes: theirs.iter().filter_map(|p| p.memory_bytes).sum(),
                utilization_percent: (!shares.is_empty())
                    .then(|| shares.iter().sum::<u32>().min(100)),
                pids: theirs
                    .iter()
                    .map(|p| UserGpuProcess {
                        pid: p.pid,
                        name: p.name.clone(),
                        memory_bytes: p.memory_bytes,
                        utilization_percent: p.utilization_percent,
                    })
                    .collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_time_of_a_granted_gpu() {
        let mut used = GpuUse {
            username: "alice".into(),
            node: "n1".into(),
            gpu: "GPU-1".into(),
            granted_since: Timestamp(100),
            last_used: None,
        };
        assert_eq!(
            used.idle_for(Timestamp(400)),
            300,
            "never used: since the grant"
        );
        used.last_used = Some(Timestamp(350));
        assert_eq!(used.idle_for(Timestamp(400)), 50);
        assert_eq!(used.idle_for(Timestamp(10)), 0, "a clock set back");
    }

    #[test]
    fn only_grants_by_name_are_watched_for_idleness() {
        let gpus = node();
        assert!(named_grants(&GpuList::All, &gpus).is_empty());
        assert!(named_grants(&GpuList::None, &gpus).is_empty());
        let one: GpuList = "1".parse().unwrap();
        let named = named_grants(&one, &gpus);
        assert_eq!(named.iter().map(|g| g.index).collect::<Vec<_>>(), vec![1]);
        assert_eq!(use_key(&named[0]), named[0].uuid.clone().unwrap());
        let unknown: GpuList = "7".parse().unwrap();
        assert!(named_grants(&unknown, &gpus).is_empty());
        let no_uuid = NodeGpu {
            uuid: None,
            ..gpus[0].clone()
        };
        assert_eq!(use_key(&no_uuid), "index 0");
    }

    /// /proc/devices as the H200 node had it (character part abridged).
    const PROC_DEVICES: &str = "Character devices:\n  1 mem\n  4 /dev/vc/0\n  4 tty\n  5 /dev/tty\n  5 /dev/console\n  5 /dev/ptmx\n 10 misc\n136 pts\n195 nvidia\n195 nvidiactl\n238 nvidia-uvm\n239 nvidia-nvswitch\n240 nvidia-nvlink\n241 nvidia-caps\n242 nvidia-caps-imex-channels\n\nBlock devices:\n  7 loop\n254 virtblk\n";

    fn node() -> Vec<NodeGpu> {
        vec![
            NodeGpu {
                index: 0,
                uuid: Some("GPU-82efa4d8-2419-4b59-e2b6-52028b659ad4".into()),
                minor: 2,
                migs: vec![],
            },
            NodeGpu {
                index: 1,
                uuid: Some("GPU-00000000-1111-2222-3333-444444444444".into()),
                minor: 0,
                migs: vec![],
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
            migs: vec![],
        }];
        let env = environment(&no_uuid);
        assert_eq!(env["CUDA_VISIBLE_DEVICES"], "3");
        assert_eq!(env["CUDA_DEVICE_ORDER"], "PCI_BUS_ID");

        let env = environment(&[]);
        assert_eq!(env["CUDA_VISIBLE_DEVICES"], "");
        assert_eq!(env["NVIDIA_VISIBLE_DEVICES"], "void");
    }

    /// GPU 0 of [`node`] in MIG mode with three instances.
    fn mig_node() -> Vec<NodeGpu> {
        let mut node = node();
        node[0].migs = [(1, 0), (2, 0), (2, 1)]
            .into_iter()
            .map(|(gi, ci)| MigInstance {
                gi,
                ci,
                gi_minor: 3 + 9 * u32::from(gi),
                ci_minor: 4 + 9 * u32::from(gi) + u32::from(ci),
            })
            .collect();
        node
    }

    #[test]
    fn mig_grants_name_instances_and_the_whole_gpu_takes_them_all() {
        let node = mig_node();
        let gpu0 = "GPU-82efa4d8-2419-4b59-e2b6-52028b659ad4";
        let mig = |gi, ci| format!("MIG-{gpu0}/{gi}/{ci}");
        let instances =
            |g: &NodeGpu| -> Vec<(u8, u8)> { g.migs.iter().map(|m| (m.gi, m.ci)).collect() };

        let two = granted(&list(&format!("{},{}", mig(2, 1), mig(1, 0))), &node).unwrap();
        assert_eq!(two.len(), 1, "one GPU");
        assert_eq!(instances(&two[0]), [(1, 0), (2, 1)], "those two, in order");
        let env = environment(&two);
        assert_eq!(
            env["CUDA_VISIBLE_DEVICES"],
            format!("{},{}", mig(1, 0), mig(2, 1))
        );

        let whole = granted(&list(&format!("{},0", mig(2, 0))), &node).unwrap();
        assert_eq!(instances(&whole[0]), [(1, 0), (2, 0), (2, 1)]);
        let whole_first = granted(&list(&format!("0,{}", mig(2, 0))), &node).unwrap();
        assert_eq!(whole_first, whole, "the order of the list does not matter");

        // MIG on GPU 0, GPU 1 whole: the instance and the GPU, by name.
        let mixed = granted(&list(&format!("1,{}", mig(1, 0))), &node).unwrap();
        assert_eq!(
            environment(&mixed)["CUDA_VISIBLE_DEVICES"],
            format!("{},GPU-00000000-1111-2222-3333-444444444444", mig(1, 0))
        );
        let rules = device_allow(&char_majors(PROC_DEVICES), &mixed, &["/dev/nvidiactl"]);
        let nvidia: Vec<&str> = rules
            .iter()
            .filter(|r| r.device.contains("nvidia") || r.device.starts_with("/dev/char/"))
            .map(|r| r.device.as_str())
            .collect();
        assert_eq!(
            nvidia,
            [
                "/dev/nvidiactl",
                "/dev/nvidia2",
                "/dev/char/241:12",
                "/dev/char/241:13",
                "/dev/nvidia0"
            ]
        );
        assert!(rules
            .iter()
            .filter(|r| r.device.starts_with("/dev/char/"))
            .all(|r| r.access == "r"));

        // Instances a node does not have, or on a GPU it does not have.
        for missing in [
            mig(3, 0),
            mig(2, 2),
            "MIG-GPU-00000000-0000-0000-0000-000000000000/1/0".into(),
        ] {
            let err = granted(&list(&missing), &node).unwrap_err().to_string();
            assert!(
                err.contains(&format!("with MIG instances {}", mig(1, 0))),
                "{err}"
            );
        }
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
