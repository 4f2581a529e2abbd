//! The cgroup hierarchy the machine mounts (for `doctor`; the slice
//! properties themselves are the same on both, see `model::slice`).

use std::path::Path;

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

#[cfg(test)]
mod tests {
    use super::*;

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
