//! The cgroup hierarchy the machine mounts (for `doctor`, and for the
//! weights, which are other slice properties on v1: see `model::slice`), and the
//! kernel's enforcement counters of a user slice.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::model::events::{
    parse_cpu_stat, parse_cpu_usage, parse_memory_events, parse_oom_control, SliceCounters,
};
use crate::model::slice::{user_slice, CgroupVersion};

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

    /// The version the controllers are (hybrid mounts v1 ones).
    pub fn version(self) -> CgroupVersion {
        match self {
            Hierarchy::Unified => CgroupVersion::V2,
            Hierarchy::Hybrid | Hierarchy::Legacy => CgroupVersion::V1,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Hierarchy::Unified => "cgroup v2 (unified)",
            Hierarchy::Hybrid => "cgroup v1 (hybrid, v2 tree at /sys/fs/cgroup/unified)",
            Hierarchy::Legacy => "cgroup v1 (legacy)",
        }
    }
}

/// Where user `uid`'s slice lies in `controller`'s tree under `root`
/// (`None`: the v2 tree, the only one on cgroup v2).
fn slice_dir(root: &Path, controller: Option<&str>, uid: u32) -> PathBuf {
    let mut dir = root.to_path_buf();
    if let Some(controller) = controller {
        dir.push(controller);
    }
    dir.push("user.slice");
    dir.push(user_slice(uid));
    dir
}

/// A counter file's text; `None` where it is not there (no such
/// controller for the slice, an older kernel).
fn read_optional(path: &Path) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The kernel's enforcement counters of user `uid`'s slice under `root`
/// (normally `/sys/fs/cgroup`): OOM kills, reclaim above `memory.high`,
/// CPU throttling. `None` where the slice has no cgroup (no session now).
pub fn slice_counters_at(
    root: &Path,
    hierarchy: Hierarchy,
    uid: u32,
) -> io::Result<Option<SliceCounters>> {
    let (memory, cpu) = match hierarchy {
        Hierarchy::Unified => (slice_dir(root, None, uid), slice_dir(root, None, uid)),
        Hierarchy::Hybrid | Hierarchy::Legacy => (
            slice_dir(root, Some("memory"), uid),
            slice_dir(root, Some("cpu"), uid),
        ),
    };
    let cgroup_id = match std::fs::metadata(&memory) {
        Ok(meta) => meta.ino(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (oom_kill, high) = match hierarchy {
        Hierarchy::Unified => read_optional(&memory.join("memory.events"))?
            .map_or((None, None), |t| parse_memory_events(&t)),
        // v1 has no memory.high.
        _ => (
            read_optional(&memory.join("memory.oom_control"))?.and_then(|t| parse_oom_control(&t)),
            None,
        ),
    };
    let (nr_throttled, throttled_usec) =
        read_optional(&cpu.join("cpu.stat"))?.map_or((None, None), |t| parse_cpu_stat(&t));
    Ok(Some(SliceCounters {
        cgroup_id,
        oom_kill,
        high,
        nr_throttled,
        throttled_usec,
    }))
}

/// The directory of user `uid`'s slice under `root` (normally
/// `/sys/fs/cgroup`) that holds `controller`'s files: on cgroup v2 the one
/// tree, on v1 the controller's own (`memory`, `cpu`, `cpuacct`, `pids`...).
pub fn slice_path_at(root: &Path, hierarchy: Hierarchy, uid: u32, controller: &str) -> PathBuf {
    match hierarchy {
        Hierarchy::Unified => slice_dir(root, None, uid),
        Hierarchy::Hybrid | Hierarchy::Legacy => slice_dir(root, Some(controller), uid),
    }
}

/// The CPU time user `uid`'s slice under `root` has used, in nanoseconds
/// (v2 `cpu.stat`'s `usage_usec`; v1 `cpuacct.usage`, as v1's `cpu.stat`
/// has no usage). `None` where the slice has no cgroup.
pub fn slice_cpu_usage_at(root: &Path, hierarchy: Hierarchy, uid: u32) -> io::Result<Option<u64>> {
    let file = match hierarchy {
        Hierarchy::Unified => slice_path_at(root, hierarchy, uid, "cpu").join("cpu.stat"),
        _ => slice_path_at(root, hierarchy, uid, "cpuacct").join("cpuacct.usage"),
    };
    Ok(read_optional(&file)?.and_then(|text| parse_cpu_usage(&text)))
}

/// The limit the kernel holds for user `uid`'s slice under `root`:
/// `controller` "memory" (bytes: `memory.max`, v1 `memory.limit_in_bytes`)
/// or "pids" (`pids.max`). `None` where there is none (`max`, v1's huge
/// number) or it cannot be read.
pub fn slice_limit_at(
    root: &Path,
    hierarchy: Hierarchy,
    uid: u32,
    controller: &str,
) -> Option<u64> {
    let (dir, file) = match (hierarchy, controller) {
        (Hierarchy::Unified, "memory") => (slice_dir(root, None, uid), "memory.max"),
        (Hierarchy::Unified, _) => (slice_dir(root, None, uid), "pids.max"),
        (_, "memory") => (
            slice_dir(root, Some("memory"), uid),
            "memory.limit_in_bytes",
        ),
        (_, _) => (slice_dir(root, Some("pids"), uid), "pids.max"),
    };
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    // v1 says "no limit" with the largest page-aligned i64.
    text.trim().parse::<u64>().ok().filter(|v| *v < (1 << 62))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn counters_of_a_v2_slice() {
        let root = tempfile::tempdir().unwrap();
        let slice = root.path().join("user.slice/user-1001.slice");
        assert_eq!(
            slice_counters_at(root.path(), Hierarchy::Unified, 1001).unwrap(),
            None,
            "no session"
        );
        write(
            &slice.join("memory.events"),
            "low 0\nhigh 4\nmax 9\noom 2\noom_kill 2\n",
        );
        let found = slice_counters_at(root.path(), Hierarchy::Unified, 1001)
            .unwrap()
            .unwrap();
        assert_eq!((found.oom_kill, found.high), (Some(2), Some(4)));
        assert_eq!(found.nr_throttled, None, "no cpu.stat: no figures");
        write(
            &slice.join("cpu.stat"),
            "usage_usec 5\nnr_periods 9\nnr_throttled 3\nthrottled_usec 777\n",
        );
        let found = slice_counters_at(root.path(), Hierarchy::Unified, 1001)
            .unwrap()
            .unwrap();
        assert_eq!(
            (found.nr_throttled, found.throttled_usec),
            (Some(3), Some(777))
        );
        assert_ne!(found.cgroup_id, 0);
    }

    #[test]
    fn counters_of_a_v1_slice() {
        let root = tempfile::tempdir().unwrap();
        write(
            &root
                .path()
                .join("memory/user.slice/user-7.slice/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        );
        write(
            &root.path().join("cpu/user.slice/user-7.slice/cpu.stat"),
            "nr_periods 5\nnr_throttled 2\nthrottled_time 3000000\n",
        );
        let found = slice_counters_at(root.path(), Hierarchy::Hybrid, 7)
            .unwrap()
            .unwrap();
        assert_eq!(found.oom_kill, Some(1));
        assert_eq!(found.high, None, "v1 has no memory.high");
        assert_eq!(
            (found.nr_throttled, found.throttled_usec),
            (Some(2), Some(3000))
        );
    }

    #[test]
    fn cpu_time_of_a_slice() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            slice_cpu_usage_at(root.path(), Hierarchy::Unified, 9).unwrap(),
            None,
            "no session"
        );
        write(
            &root.path().join("user.slice/user-9.slice/cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        );
        assert_eq!(
            slice_cpu_usage_at(root.path(), Hierarchy::Unified, 9).unwrap(),
            Some(1_500_000)
        );
        write(
            &root
                .path()
                .join("cpuacct/user.slice/user-9.slice/cpuacct.usage"),
            "987654321\n",
        );
        assert_eq!(
            slice_cpu_usage_at(root.path(), Hierarchy::Hybrid, 9).unwrap(),
            Some(987_654_321)
        );
        assert_eq!(
            slice_path_at(root.path(), Hierarchy::Legacy, 9, "memory"),
            root.path().join("memory/user.slice/user-9.slice")
        );
    }

    #[test]
    fn limits_the_kernel_holds() {
        let root = tempfile::tempdir().unwrap();
        let slice = root.path().join("user.slice/user-5.slice");
        write(&slice.join("memory.max"), "268435456\n");
        write(&slice.join("pids.max"), "max\n");
        assert_eq!(
            slice_limit_at(root.path(), Hierarchy::Unified, 5, "memory"),
            Some(256 << 20)
        );
        assert_eq!(
            slice_limit_at(root.path(), Hierarchy::Unified, 5, "pids"),
            None
        );
        write(
            &root
                .path()
                .join("memory/user.slice/user-5.slice/memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        write(
            &root.path().join("pids/user.slice/user-5.slice/pids.max"),
            "64\n",
        );
        assert_eq!(
            slice_limit_at(root.path(), Hierarchy::Hybrid, 5, "memory"),
            None
        );
        assert_eq!(
            slice_limit_at(root.path(), Hierarchy::Legacy, 5, "pids"),
            Some(64)
        );
        assert_eq!(
            slice_limit_at(root.path(), Hierarchy::Unified, 6, "memory"),
            None
        );
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
