//! GPU discovery (DESIGN §10): NVML, the driver's own library, loaded at
//! run time (a node without the driver runs the same binary), and, where
//! NVML is absent or fails, the driver's procfs (`/proc/driver/nvidia/gpus/
//! */information`) and the `/dev/nvidiaN` nodes.
//!
//! Seen on a real node (H200, driver 580.159.04; docs/gpu-notes.md):
//! NVML loads libcuda, which stays mapped after `nvmlShutdown` and leaves a
//! thread (`cuda0000...`) running, and one init/shutdown takes about 20 ms.
//! So [`discover_nvml`] is for long-lived processes (slicectl, the server);
//! inside sshd (the PAM module) only the procfs and device-node paths may
//! run.

use std::collections::HashMap;
use std::path::Path;

use nvml_wrapper::Nvml;

use crate::model::gpu::{
    char_majors, GpuNode, GpuProcess, GpuUsage, MigInstance, NodeGpu, CONTROL_NODES,
};
use crate::model::slice::uid_of_cgroup_file;
use crate::ports::{GpuPort, PortError};

/// One GPU of this node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Gpu {
    /// NVML's index (PCI bus order); with procfs, the same order.
    pub index: u32,
    /// `GPU-...`; `None` where only the device node is known.
    pub uuid: Option<String>,
    /// The minor number of `/dev/nvidiaN` (need not equal the index).
    pub minor: u32,
    pub name: Option<String>,
    pub memory_bytes: Option<u64>,
    /// PCI bus id, `0000:3b:00.0`.
    pub pci_bus: Option<String>,
    /// Whether MIG mode is on (NVML only).
    pub mig: Option<bool>,
    /// Its MIG instances, from the driver's procfs.
    pub mig_instances: Vec<MigInstance>,
}

/// Where the list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Nvml,
    Procfs,
    DeviceNodes,
    /// No driver, no GPU.
    None,
}

/// What this node has, and how that was learnt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Discovery {
    pub source: Source,
    pub driver_version: Option<String>,
    pub gpus: Vec<Gpu>,
    /// Why NVML was not used, where it was not.
    pub nvml_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("NVML: {0}")]
    Nvml(#[from] nvml_wrapper::error::NvmlError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// The GPUs of this node: NVML first, then procfs, then device nodes.
pub fn discover() -> Discovery {
    let root = Path::new("/");
    let nvml_error = match discover_nvml() {
        Ok((driver_version, mut gpus)) => {
            for gpu in &mut gpus {
                gpu.mig_instances = discover_migs(root, gpu.minor);
            }
            return Discovery {
                source: Source::Nvml,
                driver_version: Some(driver_version),
                gpus,
                nvml_error: None,
            };
        }
        Err(e) => e.to_string(),
    };
    let (source, gpus) = match discover_procfs(root) {
        Ok(gpus) if !gpus.is_empty() => (Source::Procfs, gpus),
        _ => match discover_device_nodes(root) {
            Ok(gpus) if !gpus.is_empty() => (Source::DeviceNodes, gpus),
            _ => (Source::None, Vec::new()),
        },
    };
    Discovery {
        source,
        driver_version: driver_version_procfs(root),
        gpus,
        nvml_error: Some(nvml_error),
    }
}

/// Through NVML: the driver version and every GPU. NVML is shut down and
/// its library unloaded before this returns.
pub fn discover_nvml() -> Result<(String, Vec<Gpu>), GpuError> {
    let nvml = Nvml::init()?;
    let driver = nvml.sys_driver_version()?;
    let mut gpus = Vec::new();
    for index in 0..nvml.device_count()? {
        let device = nvml.device_by_index(index)?;
        gpus.push(Gpu {
            index,
            uuid: Some(device.uuid()?),
            minor: device.minor_number()?,
            name: device.name().ok(),
            memory_bytes: device.memory_info().ok().map(|m| m.total),
            pci_bus: device.pci_info().ok().map(|p| bus_id(&p.bus_id)),
            mig: device.mig_mode().ok().map(|m| m.current == 1),
            mig_instances: Vec::new(),
        });
    }
    nvml.shutdown()?;
    Ok((driver, gpus))
}

/// A PCI bus id as procfs writes it: NVML's 8-digit domain
/// (`00000000:00:06.0`) cut to 4, lower case.
fn bus_id(nvml: &str) -> String {
    let id = nvml.to_lowercase();
    match id.split_once(':') {
        Some((domain, rest)) if domain.len() == 8 && domain.starts_with("0000") => {
            format!("{}:{rest}", &domain[4..])
        }
        _ => id,
    }
}

impl GpuProcess {
    /// The user it counts for: the one whose slice it is in, else its owner.
    pub fn owner(&self) -> Option<u32> {
        self.slice_uid.or(self.uid)
    }
}

/// How old a process's newest utilisation sample may be, next to the
/// newest of all, to count as now (microseconds).
const UTILIZATION_WINDOW_USEC: u64 = 10_000_000;

/// Each process's share of a GPU now, from the driver's buffered samples
/// `(pid, timestamp in us, SM percent)`: its newest sample, where that is
/// recent next to the newest of all (a process idle for a while has none).
pub fn latest_utilization(samples: &[(u32, u64, u32)]) -> HashMap<u32, u32> {
    let newest = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let mut latest: HashMap<u32, (u64, u32)> = HashMap::new();
    for &(pid, at, percent) in samples {
        if at + UTILIZATION_WINDOW_USEC < newest {
            continue;
        }
        let entry = latest.entry(pid).or_insert((at, percent));
        if at >= entry.0 {
            *entry = (at, percent.min(100));
        }
    }
    latest.into_iter().map(|(pid, (_, p))| (pid, p)).collect()
}

/// Every GPU's load and processes, through NVML (for `slicectl usage`;
/// never inside sshd, see the module's note).
pub fn usage() -> Result<Vec<GpuUsage>, GpuError> {
    use nvml_wrapper::enums::device::UsedGpuMemory;
    let nvml = Nvml::init()?;
    let mut all = Vec::new();
    for index in 0..nvml.device_count()? {
        let device = nvml.device_by_index(index)?;
        let memory = device.memory_info().ok();
        let samples: Vec<(u32, u64, u32)> = device
            .process_utilization_stats(None)
            .unwrap_or_default()
            .iter()
            .map(|s| (s.pid, s.timestamp, s.sm_util))
            .collect();
        let listed: Vec<(u32, Option<u64>)> = device
            .running_compute_processes()
            .unwrap_or_default()
            .into_iter()
            .chain(device.running_graphics_processes().unwrap_or_default())
            .map(|p| {
                let bytes = match p.used_gpu_memory {
                    UsedGpuMemory::Used(bytes) => Some(bytes),
                    UsedGpuMemory::Unavailable => None,
                };
                (p.pid, bytes)
            })
            .collect();
        let processes = gpu_processes(Path::new("/"), &listed, &samples);
        all.push(GpuUsage {
            index,
            uuid: device.uuid()?,
            utilization_percent: device.utilization_rates().ok().map(|u| u.gpu),
            memory_used_bytes: memory.as_ref().map(|m| m.used),
            memory_total_bytes: memory.as_ref().map(|m| m.total),
            processes,
        });
    }
    nvml.shutdown()?;
    Ok(all)
}

/// One GPU's processes as the driver lists them (`(pid, memory)`, compute
/// and graphics, a process in both listed twice) with their utilisation
/// samples, each with what `ROOT/proc` says of it.
pub fn gpu_processes(
    root: &Path,
    listed: &[(u32, Option<u64>)],
    samples: &[(u32, u64, u32)],
) -> Vec<GpuProcess> {
    let utilization = latest_utilization(samples);
    let mut processes: Vec<GpuProcess> = Vec::new();
    for &(pid, memory_bytes) in listed {
        if processes.iter().any(|known| known.pid == pid) {
            continue;
        }
        let facts = process_facts(root, pid);
        processes.push(GpuProcess {
            pid,
            uid: facts.uid,
            slice_uid: facts.slice_uid,
            name: facts.name,
            memory_bytes,
            utilization_percent: utilization.get(&pid).copied(),
        });
    }
    processes
}

/// What /proc says of one process (all `None` once it has gone).
#[derive(Debug, Default, PartialEq, Eq)]
struct ProcessFacts {
    uid: Option<u32>,
    slice_uid: Option<u32>,
    name: Option<String>,
}

/// `ROOT/proc/PID/status` (real uid, name) and `ROOT/proc/PID/cgroup`.
fn process_facts(root: &Path, pid: u32) -> ProcessFacts {
    let dir = root.join(format!("proc/{pid}"));
    let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
    };
    ProcessFacts {
        uid: field("Uid:")
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok()),
        slice_uid: std::fs::read_to_string(dir.join("cgroup"))
            .ok()
            .and_then(|text| uid_of_cgroup_file(&text)),
        name: field("Name:").map(str::to_owned),
    }
}

/// From `ROOT/proc/driver/nvidia/gpus/*/information`, in bus order.
pub fn discover_procfs(root: &Path) -> Result<Vec<Gpu>, GpuError> {
    let dir = root.join("proc/driver/nvidia/gpus");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(GpuError::Read {
                path: dir.display().to_string(),
                source,
            })
        }
    };
    let mut found: Vec<Gpu> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path().join("information");
        let text = std::fs::read_to_string(&path).map_err(|source| GpuError::Read {
            path: path.display().to_string(),
            source,
        })?;
        if let Some(mut gpu) = parse_information(&text) {
            gpu.mig_instances = discover_migs(root, gpu.minor);
            found.push(gpu);
        }
    }
    found.sort_by(|a, b| a.pci_bus.cmp(&b.pci_bus));
    for (index, gpu) in found.iter_mut().enumerate() {
        gpu.index = u32::try_from(index).unwrap_or(u32::MAX);
    }
    Ok(found)
}

/// One `information` file: `Model:`, `GPU UUID:`, `Device Minor:`, `Bus
/// Location:` lines (`Key:\t value`). `None` without a device minor.
pub fn parse_information(text: &str) -> Option<Gpu> {
    let field = |key: &str| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_owned())
        })
    };
    let minor = field("Device Minor")?.parse().ok()?;
    Some(Gpu {
        index: 0,
        uuid: field("GPU UUID").filter(|u| u.starts_with("GPU-")),
        minor,
        name: field("Model"),
        memory_bytes: None,
        pci_bus: field("Bus Location").map(|b| b.to_lowercase()),
        mig: None,
        mig_instances: Vec::new(),
    })
}

/// The MIG instances of the GPU with device minor `minor`, from
/// `ROOT/proc/driver/nvidia/capabilities/gpuMINOR/mig/giG/ciC/access` (the
/// driver writes a directory per instance that exists, and in each `access`
/// file the `nvidia-caps` minor that grants it). Unreadable or malformed
/// entries are left out: an instance not found cannot be granted, which is
/// the safe side.
pub fn discover_migs(root: &Path, minor: u32) -> Vec<MigInstance> {
    let mig_dir = root.join(format!("proc/driver/nvidia/capabilities/gpu{minor}/mig"));
    let mut found = Vec::new();
    for (gi, gi_dir) in numbered_dirs(&mig_dir, "gi") {
        let Some(gi_minor) = cap_minor(&gi_dir) else {
            continue;
        };
        for (ci, ci_dir) in numbered_dirs(&gi_dir, "ci") {
            if let Some(ci_minor) = cap_minor(&ci_dir) {
                found.push(MigInstance {
                    gi,
                    ci,
                    gi_minor,
                    ci_minor,
                });
            }
        }
    }
    found.sort_by_key(|m| (m.gi, m.ci));
    found
}

/// The subdirectories `PREFIX<n>` of `dir` (n a small number), with n.
fn numbered_dirs(dir: &Path, prefix: &str) -> Vec<(u8, std::path::PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix(prefix)?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((n.parse().ok()?, e.path()))
        })
        .collect()
}

/// The `DeviceFileMinor` of `DIR/access`.
fn cap_minor(dir: &Path) -> Option<u32> {
    parse_cap_access(&std::fs::read_to_string(dir.join("access")).ok()?)
}

/// A capability's `access` file: `DeviceFileMinor: 12`, `DeviceFileMode:
/// 292`, `DeviceFileModify: 1`.
pub fn parse_cap_access(text: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "DeviceFileMinor")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// From the `/dev/nvidiaN` nodes alone, in minor order.
pub fn discover_device_nodes(root: &Path) -> Result<Vec<Gpu>, GpuError> {
    let dev = root.join("dev");
    let entries = std::fs::read_dir(&dev).map_err(|source| GpuError::Read {
        path: dev.display().to_string(),
        source,
    })?;
    let mut minors: Vec<u32> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("nvidia")?.parse().ok()
        })
        .collect();
    minors.sort_unstable();
    Ok(minors
        .into_iter()
        .enumerate()
        .map(|(index, minor)| Gpu {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            uuid: None,
            minor,
            name: None,
            memory_bytes: None,
            pci_bus: None,
            mig: None,
            mig_instances: Vec::new(),
        })
        .collect())
}

/// This node's facts for a grant, from procfs and `/dev` only (no NVML:
/// this runs inside sshd). GPUs from the driver's procfs, else from the
/// device nodes.
pub fn node_facts(root: &Path) -> Result<GpuNode, GpuError> {
    // Every session open asks: a node without the driver answers with two
    // stats, not a scan of /dev.
    if !root.join("proc/driver/nvidia").exists() && !root.join("dev/nvidiactl").exists() {
        return Ok(GpuNode::default());
    }
    let gpus = match discover_procfs(root) {
        Ok(gpus) if !gpus.is_empty() => gpus,
        // A driver whose procfs cannot be read (a broken install) must not
        // stop the logins of users without GPUs: the device nodes still
        // say which GPUs exist (a grant by UUID then fails, closed).
        _ => discover_device_nodes(root)?,
    };
    let devices = root.join("proc/devices");
    let majors =
        char_majors(
            &std::fs::read_to_string(&devices).map_err(|source| GpuError::Read {
                path: devices.display().to_string(),
                source,
            })?,
        );
    let present = CONTROL_NODES
        .into_iter()
        .filter(|node| root.join(node.trim_start_matches('/')).exists())
        .collect();
    Ok(GpuNode {
        gpus: gpus
            .into_iter()
            .map(|g| NodeGpu {
                index: g.index,
                uuid: g.uuid,
                minor: g.minor,
                migs: g.mig_instances,
            })
            .collect(),
        majors,
        present,
    })
}

/// The machine's GPUs, for the apply use case.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemGpus;

impl GpuPort for SystemGpus {
    fn node(&self) -> Result<GpuNode, PortError> {
        node_facts(Path::new("/")).map_err(PortError::new)
    }

    fn usage(&self) -> Result<Option<Vec<GpuUsage>>, PortError> {
        if node_facts(Path::new("/"))
            .map_err(PortError::new)?
            .gpus
            .is_empty()
        {
            return Ok(None);
        }
        usage()
            .map(Some)
            .map_err(|e| PortError::msg(with_cause(&e)))
    }
}

/// An error and its innermost cause, for a person: NVML's own text ("a
/// libloading error occurred") does not say that `libnvidia-ml.so.1` is
/// missing; its cause does.
pub fn with_cause(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut innermost = None;
    let mut cause = e.source();
    while let Some(c) = cause {
        innermost = Some(c);
        cause = c.source();
    }
    if let Some(c) = innermost.map(ToString::to_string) {
        if !text.contains(&c) {
            text = format!("{text}: {c}");
        }
    }
    text
}

/// The driver version from `ROOT/proc/driver/nvidia/version`.
fn driver_version_procfs(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join("proc/driver/nvidia/version")).ok()?;
    // "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.03  Thu ..."
    text.lines()
        .next()?
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()) && w.contains('.'))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The layout of the file as driver 580 writes it (values changed).
    const INFORMATION: &str = "Model: \t\t NVIDIA H200\n\
        IRQ:   \t\t 41\n\
        GPU UUID: \t GPU-5b6f0c52-2c1d-4e2a-9d3f-0123456789ab\n\
        Video BIOS: \t 96.00.a5.00.1a\n\
        Bus Type: \t PCIe\n\
        DMA Size: \t 52 bits\n\
        DMA Mask: \t 0xfffffffffffff\n\
        Bus Location: \t 0000:1B:00.0\n\
        Device Minor: \t 3\n\
        GPU Firmware: \t 580.159.04\n\
        GPU Excluded:\t No\n";

    #[test]
    fn parses_the_drivers_information_file() {
        let gpu = parse_information(INFORMATION).unwrap();
        assert_eq!(gpu.name.as_deref(), Some("NVIDIA H200"));
        assert_eq!(
            gpu.uuid.as_deref(),
            Some("GPU-5b6f0c52-2c1d-4e2a-9d3f-0123456789ab")
        );
        assert_eq!(gpu.minor, 3);
        assert_eq!(gpu.pci_bus.as_deref(), Some("0000:1b:00.0"));
        assert_eq!(parse_information("Model: x\n"), None, "no minor");
        assert_eq!(parse_information("Device Minor: -1\n"), None);
    }

    #[test]
    fn nvml_bus_ids_read_like_procfs_ones() {
        assert_eq!(bus_id("00000000:00:06.0"), "0000:00:06.0");
        assert_eq!(bus_id("00000000:3B:00.0"), "0000:3b:00.0");
        assert_eq!(bus_id("0000:1b:00.0"), "0000:1b:00.0");
    }

    #[test]
    fn procfs_and_device_nodes_from_a_fake_root() {
        let root = tempfile::tempdir().unwrap();
        for (bus, minor) in [("0000:3b:00.0", 0), ("0000:1b:00.0", 3)] {
            let dir = root.path().join(format!("proc/driver/nvidia/gpus/{bus}"));
            std::fs::create_dir_all(&dir).unwrap();
            let text = INFORMATION
                .replace("0000:1B:00.0", bus)
                .replace("Device Minor: \t 3", &format!("Device Minor: \t {minor}"));
            std::fs::write(dir.join("information"), text).unwrap();
        }
        let gpus = discover_procfs(root.path()).unwrap();
        let order: Vec<(u32, u32)> = gpus.iter().map(|g| (g.index, g.minor)).collect();
        assert_eq!(order, [(0, 3), (1, 0)], "bus order, minors as they are");

        std::fs::create_dir_all(root.path().join("dev")).unwrap();
        for name in ["nvidia1", "nvidia0", "nvidiactl", "nvidia-uvm", "nvidia10"] {
            std::fs::write(root.path().join("dev").join(name), "").unwrap();
        }
        let nodes = discover_device_nodes(root.path()).unwrap();
        let minors: Vec<u32> = nodes.iter().map(|g| g.minor).collect();
        assert_eq!(minors, [0, 1, 10]);

        let empty = tempfile::tempdir().unwrap();
        assert!(discover_procfs(empty.path()).unwrap().is_empty());
    }

    #[test]
    fn the_driver_version_from_procfs() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("proc/driver/nvidia")).unwrap();
        std::fs::write(
            root.path().join("proc/driver/nvidia/version"),
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.03  Thu Oct  9 2025\nGCC version: gcc 12\n",
        )
        .unwrap();
        assert_eq!(
            driver_version_procfs(root.path()).as_deref(),
            Some("580.159.03")
        );
    }

    #[test]
    fn this_machine_without_a_driver_has_no_gpus() {
        // No NVIDIA driver here: NVML fails to load and nothing is found.
        if Path::new("/dev/nvidiactl").exists() {
            return;
        }
        let found = discover();
        assert_eq!(found.source, Source::None);
        assert!(found.gpus.is_empty());
        assert!(found.nvml_error.is_some());
    }

    #[test]
    fn node_facts_from_a_fake_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("proc")).unwrap();
        std::fs::write(
            root.path().join("proc/devices"),
            "Character devices:\n  1 mem\n136 pts\n195 nvidia\n\nBlock devices:\n  7 loop\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.path().join("dev")).unwrap();
        for name in ["nvidia1", "nvidia0", "nvidiactl"] {
            std::fs::write(root.path().join("dev").join(name), "").unwrap();
        }
        let node = node_facts(root.path()).unwrap();
        let minors: Vec<u32> = node.gpus.iter().map(|g| g.minor).collect();
        let bare = tempfile::tempdir().unwrap();
        assert_eq!(
            node_facts(bare.path()).unwrap(),
            GpuNode::default(),
            "no driver, no nvidiactl: nothing read"
        );
        assert_eq!(minors, [0, 1], "from the device nodes, no procfs here");
        assert_eq!(node.majors.len(), 3);
        assert_eq!(node.present, ["/dev/nvidiactl"]);
    }

    /// A node as the driver shows it: `/proc/devices` (the H200's NVIDIA
    /// majors, or only 195 where uvm and caps are not loaded), one GPU's
    /// `information`, and MIG instances as capability directories, each
    /// `access` file with the `nvidia-caps` minor as mig-minors numbers
    /// them (gpu0/giG: 3 + 9G, its ciC: 4 + 9G + C).
    fn fake_node(proc_devices: &str, instances: &[(u8, u8)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = root.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("proc/devices", proc_devices);
        write(
            "proc/driver/nvidia/gpus/0000:1b:00.0/information",
            &INFORMATION.replace("Device Minor: \t 3", "Device Minor: \t 0"),
        );
        let access = |minor: u32| {
            format!("DeviceFileMinor: {minor}\nDeviceFileMode: 292\nDeviceFileModify: 1\n")
        };
        for &(gi, ci) in instances {
            let gi_dir = format!("proc/driver/nvidia/capabilities/gpu0/mig/gi{gi}");
            write(&format!("{gi_dir}/access"), &access(3 + 9 * u32::from(gi)));
            write(
                &format!("{gi_dir}/ci{ci}/access"),
                &access(4 + 9 * u32::from(gi) + u32::from(ci)),
            );
        }
        write("dev/nvidia0", "");
        write("dev/nvidiactl", "");
        root
    }

    const ALL_MAJORS: &str = "Character devices:\n  1 mem\n  5 /dev/tty\n136 pts\n195 nvidia\n195 nvidiactl\n238 nvidia-uvm\n241 nvidia-caps\n\nBlock devices:\n  7 loop\n";
    const BARE_MAJORS: &str = "Character devices:\n  1 mem\n  5 /dev/tty\n136 pts\n195 nvidia\n195 nvidiactl\n\nBlock devices:\n  7 loop\n";
    const GPU0: &str = "GPU-5b6f0c52-2c1d-4e2a-9d3f-0123456789ab";

    fn rules_for(root: &Path, grant: &str) -> Result<Vec<String>, crate::model::gpu::GrantError> {
        let node = node_facts(root).unwrap();
        let granted = crate::model::gpu::granted(&grant.parse().unwrap(), &node.gpus)?;
        Ok(
            crate::model::gpu::device_allow(&node.majors, &granted, &node.present)
                .into_iter()
                .map(|r| format!("{} {}", r.device, r.access))
                .collect(),
        )
    }

    #[test]
    fn mig_instances_from_the_drivers_capabilities() {
        let root = fake_node(ALL_MAJORS, &[(2, 0), (1, 0), (2, 1)]);
        // What is not an instance: a stray file, a bad number, a GI
        // without an access file, a CI whose access file has no minor.
        let mig = root.path().join("proc/driver/nvidia/capabilities/gpu0/mig");
        std::fs::write(mig.join("config"), "").unwrap();
        std::fs::create_dir_all(mig.join("gix/ci0")).unwrap();
        std::fs::create_dir_all(mig.join("gi9/ci0")).unwrap();
        std::fs::create_dir_all(mig.join("gi1/ci5")).unwrap();
        std::fs::write(mig.join("gi1/ci5/access"), "DeviceFileMode: 292\n").unwrap();

        let migs = discover_migs(root.path(), 0);
        let found: Vec<(u8, u8, u32, u32)> = migs
            .iter()
            .map(|m| (m.gi, m.ci, m.gi_minor, m.ci_minor))
            .collect();
        assert_eq!(found, [(1, 0, 12, 13), (2, 0, 21, 22), (2, 1, 21, 23)]);
        assert!(discover_migs(root.path(), 1).is_empty(), "another GPU");
        assert_eq!(parse_cap_access("DeviceFileMinor: x\n"), None);

        let gpus = discover_procfs(root.path()).unwrap();
        assert_eq!(gpus[0].mig_instances, migs, "gpu list shows them");
    }

    #[test]
    fn allow_lists_from_sample_driver_texts() {
        // MIG on, caps as devices: an instance is its GPU's node and its two
        // cap minors, by number; the other instances stay closed.
        let root = fake_node(ALL_MAJORS, &[(1, 0), (2, 0)]);
        let nvidia = |rules: Vec<String>| -> Vec<String> {
            rules
                .into_iter()
                .filter(|r| r.contains("nvidia") || r.contains("/dev/char/"))
                .collect()
        };
        let one = rules_for(root.path(), &format!("MIG-{GPU0}/2/0")).unwrap();
        assert_eq!(
            nvidia(one),
            [
                "/dev/nvidiactl rw",
                "/dev/nvidia0 rw",
                "/dev/char/241:21 r",
                "/dev/char/241:22 r"
            ]
        );
        // The whole GPU by index: every instance.
        let whole = rules_for(root.path(), "0").unwrap();
        assert_eq!(
            nvidia(whole)[2..],
            [
                "/dev/char/241:12 r",
                "/dev/char/241:13 r",
                "/dev/char/241:21 r",
                "/dev/char/241:22 r"
            ]
        );
        // No nvidia-caps major and no nvidia-uvm: the driver checks caps
        // through procfs, so there is no cap device to allow; only the
        // majors /proc/devices names are allowed.
        let bare = fake_node(BARE_MAJORS, &[(1, 0)]);
        let rules = rules_for(bare.path(), &format!("MIG-{GPU0}/1/0")).unwrap();
        assert_eq!(
            nvidia(rules.clone()),
            ["/dev/nvidiactl rw", "/dev/nvidia0 rw"]
        );
        assert!(!rules.iter().any(|r| r.contains("238")), "{rules:?}");
        assert_eq!(
            rules_for(bare.path(), "none").unwrap(),
            ["char-mem rwm", "char-/dev/tty rwm", "char-pts rwm"]
        );
        // An instance the node does not have, or a MIG UUID: refused, and
        // the error names what exists.
        let err = rules_for(root.path(), &format!("MIG-{GPU0}/3/0")).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("MIG-{GPU0}/1/0, MIG-{GPU0}/2/0")),
            "{err}"
        );
        let err = rules_for(root.path(), "MIG-8f6a2c1e-1111-2222-3333-44445555aaaa").unwrap_err();
        assert!(err.to_string().contains("location name"), "{err}");
    }

    #[test]
    fn a_broken_driver_leaves_the_device_nodes() {
        let root = fake_node(ALL_MAJORS, &[]);
        // The information file unreadable as text: a broken install.
        std::fs::write(
            root.path()
                .join("proc/driver/nvidia/gpus/0000:1b:00.0/information"),
            [0xff, 0xfe, 0x00],
        )
        .unwrap();
        assert!(discover_procfs(root.path()).is_err());
        let node = node_facts(root.path()).unwrap();
        assert_eq!(node.gpus.len(), 1);
        assert_eq!(node.gpus[0].uuid, None, "from /dev/nvidia0 alone");
        let rules = rules_for(root.path(), "none").unwrap();
        assert!(rules.iter().all(|r| !r.contains("nvidia")), "{rules:?}");
        assert!(rules_for(root.path(), "0").is_ok());
        let err = rules_for(root.path(), GPU0).unwrap_err().to_string();
        assert!(err.contains("no GPU GPU-5b6f0c52"), "{err}");
    }

    #[test]
    fn a_processs_owner_from_proc() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("proc/42")).unwrap();
        std::fs::write(
            root.path().join("proc/42/status"),
            "Name:\tpython3\nUmask:\t0022\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\n",
        )
        .unwrap();
        std::fs::write(
            root.path().join("proc/42/cgroup"),
            "0::/user.slice/user-1001.slice/session-7.scope\n",
        )
        .unwrap();
        let facts = process_facts(root.path(), 42);
        assert_eq!(
            facts,
            ProcessFacts {
                uid: Some(1000),
                slice_uid: Some(1001),
                name: Some("python3".into())
            }
        );
        assert_eq!(
            process_facts(root.path(), 43),
            ProcessFacts::default(),
            "gone"
        );
        let me = process_facts(Path::new("/"), std::process::id());
        assert_eq!(me.uid, Some(nix::unistd::getuid().as_raw()));
        assert!(me.name.is_some());
    }

    #[test]
    fn the_user_a_process_counts_for() {
        let p = |uid, slice_uid| GpuProcess {
            pid: 1,
            uid,
            slice_uid,
            ..GpuProcess::default()
        };
        assert_eq!(
            p(Some(0), Some(1001)).owner(),
            Some(1001),
            "setuid, in her slice"
        );
        assert_eq!(
            p(Some(1002), None).owner(),
            Some(1002),
            "outside any user slice"
        );
        assert_eq!(p(None, None).owner(), None, "gone");
    }

    /// A /proc with processes as a GPU server has them: a notebook kernel
    /// in alice's session, a setuid helper (root's) in bob's, a container's
    /// process (uid 1001, outside any user slice), a system service.
    fn recorded_proc() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (pid, name, uid, cgroup) in [
            (4101, "python3", 1001, "0::/user.slice/user-1001.slice/session-3.scope"),
            (4202, "helper", 0, "0::/user.slice/user-1002.slice/session-5.scope"),
            (4303, "train", 1001, "0::/system.slice/docker-0a1b.scope"),
            (4404, "Xorg", 0, "0::/system.slice/display-manager.service"),
            // cgroup v1: the named systemd hierarchy places it.
            (4505, "julia", 1002, "10:memory:/user.slice/user-1002.slice/session-5.scope\n1:name=systemd:/user.slice/user-1002.slice/session-5.scope"),
        ] {
            let dir = root.path().join(format!("proc/{pid}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("status"),
                format!("Name:\t{name}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"),
            )
            .unwrap();
            std::fs::write(dir.join("cgroup"), format!("{cgroup}\n")).unwrap();
        }
        root
    }

    #[test]
    fn recorded_nvml_processes_go_to_their_users() {
        let root = recorded_proc();
        // As nvmlDeviceGetComputeRunningProcesses and ...GraphicsRunning...
        // list them (4101 in both), and 4999 gone since.
        let listed = [
            (4101, Some(6 << 30)),
            (4202, Some(1 << 30)),
            (4303, Some(2 << 30)),
            (4404, None),
            (4505, Some(512 << 20)),
            (4101, Some(6 << 30)),
            (4999, Some(1 << 20)),
        ];
        let samples = [
            (4101, 5_000_000, 70),
            (4505, 4_000_000, 20),
            (4303, 4_500_000, 5),
        ];
        let processes = gpu_processes(root.path(), &listed, &samples);
        assert_eq!(processes.len(), 6, "4101 once");
        let owners: Vec<_> = processes.iter().map(|p| (p.pid, p.owner())).collect();
        assert_eq!(
            owners,
            vec![
                (4101, Some(1001)),
                (4202, Some(1002)),
                (4303, Some(1001)),
                (4404, Some(0)),
                (4505, Some(1002)),
                (4999, None),
            ]
        );
        let gpu = GpuUsage {
            index: 0,
            uuid: "GPU-0".into(),
            utilization_percent: Some(95),
            memory_used_bytes: None,
            memory_total_bytes: None,
            processes,
        };
        let alice = crate::model::gpu::user_gpus(std::slice::from_ref(&gpu), 1001);
        assert_eq!(alice.len(), 1);
        assert_eq!(alice[0].processes, 2, "her notebook and her container");
        assert_eq!(alice[0].memory_bytes, 8 << 30);
        assert_eq!(alice[0].utilization_percent, Some(75));
        let bob = crate::model::gpu::user_gpus(std::slice::from_ref(&gpu), 1002);
        assert_eq!(
            bob[0].processes, 2,
            "the setuid helper in his session counts for him"
        );
        assert_eq!(bob[0].utilization_percent, Some(20));
        let names: Vec<_> = bob[0]
            .pids
            .iter()
            .map(|p| p.name.clone().unwrap())
            .collect();
        assert_eq!(names, vec!["helper", "julia"]);
        assert!(crate::model::gpu::user_gpus(std::slice::from_ref(&gpu), 1003).is_empty());
    }

    #[test]
    fn per_process_utilization_from_driver_samples() {
        // Samples as nvmlDeviceGetProcessUtilization buffers them: several
        // per process, microsecond timestamps.
        let samples = [
            (100, 1_000_000_000, 90),
            (100, 1_005_000_000, 40),
            (200, 1_004_000_000, 120),
            (300, 990_000_000, 70),
            (100, 1_004_000_000, 55),
        ];
        let latest = latest_utilization(&samples);
        assert_eq!(latest.get(&100), Some(&40), "the newest");
        assert_eq!(latest.get(&200), Some(&100), "at most 100");
        assert_eq!(latest.get(&300), None, "15 s before the newest: idle now");
        assert!(latest_utilization(&[]).is_empty());
    }
}
