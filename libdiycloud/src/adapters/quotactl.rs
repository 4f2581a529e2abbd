//! The quotactl adapter: a user's disk quota limits and usage on one
//! mounted filesystem (ext4 with the quota feature or `usrquota`, XFS with
//! `uquota`), through the generic Q_GETQUOTA/Q_SETQUOTA interface, which
//! both implement. quotactl names the filesystem by its block device, found
//! from the mount point in /proc/self/mountinfo.
//!
//! Before a user's quota is read, the filesystem's quota state is: ext4
//! with the quota feature but mounted without `usrquota` counts usage and
//! enforces nothing, and a limit set there would be a silent no-op.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::quota::{quotactl_get, quotactl_set, Dqblk, QuotaType, QuotaValidFlags};

use crate::model::quota::{QuotaLimits, QuotaState};
use crate::ports::{PortError, QuotaPort};

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("quota filesystem {0}: no such directory")]
    Missing(PathBuf),
    #[error("quota filesystem {0} is not a mount point: name the mount point itself (see `findmnt -T {0}`)")]
    NotAMountPoint(PathBuf),
    #[error("{mount} ({fstype}) is mounted without user quotas: {fix}")]
    QuotasOff {
        mount: PathBuf,
        fstype: String,
        fix: &'static str,
    },
    #[error("{mount} ({fstype}) counts user quota usage but does not enforce limits: {fix}")]
    NotEnforced {
        mount: PathBuf,
        fstype: String,
        fix: &'static str,
    },
    #[error("cannot read /proc/self/mountinfo: {0}")]
    Mountinfo(std::io::Error),
    #[error(
        "quotactl on {mount} ({device}), uid {uid}: the limit is more than this filesystem's \
         quota format holds (ERANGE): old vfsv0 quota files hold at most 4T less 1K per user; \
         set a smaller disk limit, or move the filesystem to the vfsv1 format (`quotaoff`, \
         `quotacheck -c -F vfsv1`, `quotaon -F vfsv1`, jqfmt=vfsv1 in its mount options) or to \
         ext4's quota feature (`tune2fs -O quota`)"
    )]
    FormatTooSmall {
        mount: PathBuf,
        device: PathBuf,
        uid: u32,
    },
    #[error("quotactl on {mount} ({device}), {what}: {errno}")]
    Quotactl {
        mount: PathBuf,
        device: PathBuf,
        /// What was asked: `uid N`'s quota, or the quota state.
        what: String,
        errno: Errno,
    },
}

/// A mounted filesystem, as mountinfo lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub device: PathBuf,
}

/// The mount at exactly `mount_point` in mountinfo `text` (the last one:
/// a later mount over the same point hides the earlier).
pub fn find_mount(text: &str, mount_point: &Path) -> Option<Mount> {
    text.lines()
        .rev()
        .filter_map(parse_mountinfo_line)
        .find(|m| m.mount_point == mount_point)
}

/// One mountinfo line, `id parent major:minor root MOUNT opts [optional...]`,
/// then ` - FSTYPE SOURCE superopts`. Paths escape space, tab, newline and
/// the backslash as octal.
fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let mount_point = before.split(' ').nth(4)?;
    let mut after = after.split(' ');
    let fstype = after.next()?;
    let source = after.next()?;
    Some(Mount {
        mount_point: PathBuf::from(unescape(mount_point)),
        fstype: fstype.to_owned(),
        device: PathBuf::from(unescape(source)),
    })
}

/// Undoes mountinfo's `\ooo` octal escapes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The fix to name for a filesystem mounted without user quotas.
fn fix_for(fstype: &str) -> &'static str {
    match fstype {
        "xfs" => "XFS turns quotas on at mount time only: add `uquota` to its options in /etc/fstab and mount it again",
        "ext4" | "ext3" => "enable the quota feature (`tune2fs -O quota -Q usrquota DEVICE` while unmounted) and mount with `usrquota`, or mount with `usrquota` and run `quotacheck -cum` and `quotaon`",
        _ => "this filesystem type has no user quotas diycloud can set: use ext4 or XFS",
    }
}

/// `mount` has no user quotas on: the error, with the fix for its type.
fn quotas_off(mount: &Mount) -> QuotaError {
    QuotaError::QuotasOff {
        mount: mount.mount_point.clone(),
        fstype: mount.fstype.clone(),
        fix: fix_for(&mount.fstype),
    }
}

/// The fix for a filesystem that counts usage but enforces no limits.
fn enforce_fix_for(fstype: &str) -> &'static str {
    match fstype {
        "xfs" => "it is mounted with `uqnoenforce`: mount it with `uquota` instead",
        _ => "add `usrquota` to its mount options in /etc/fstab and mount it again, or run `quotaon -u` on it",
    }
}

/// The mounted filesystem at `mount_point` (which must be one).
pub fn mount_of(mount_point: &Path) -> Result<Mount, QuotaError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(QuotaError::Mountinfo)?;
    mount_in(&text, mount_point)
}

/// The mount at `mount_point` in mountinfo `text`, or why there is none.
fn mount_in(text: &str, mount_point: &Path) -> Result<Mount, QuotaError> {
    match find_mount(text, mount_point) {
        Some(mount) => Ok(mount),
        None if mount_point.is_dir() => Err(QuotaError::NotAMountPoint(mount_point.into())),
        None => Err(QuotaError::Missing(mount_point.into())),
    }
}

/// `uid`: whose quota was asked for; `None`: the filesystem's quota state.
fn quotactl_error(mount: &Mount, uid: Option<u32>, errno: Errno) -> QuotaError {
    match errno {
        // ESRCH: quotas are not on; ENOSYS/EOPNOTSUPP: not supported at all.
        Errno::ESRCH | Errno::ENOSYS | Errno::EOPNOTSUPP | Errno::ENOTBLK => quotas_off(mount),
        // A limit over the format's dqi_max_spc_limit (vfsv0: 32-bit counts
        // of 1K blocks); the model keeps limits within what vfsv1 holds.
        Errno::ERANGE if uid.is_some() => QuotaError::FormatTooSmall {
            mount: mount.mount_point.clone(),
            device: mount.device.clone(),
            uid: uid.unwrap_or_default(),
        },
        errno => QuotaError::Quotactl {
            mount: mount.mount_point.clone(),
            device: mount.device.clone(),
            what: uid.map_or("reading its quota state".into(), |uid| format!("uid {uid}")),
            errno,
        },
    }
}

fn uid_arg(uid: u32) -> i32 {
    // quotactl takes the id as an int; uids above i32::MAX pass through as
    // the same bits, as the C library does.
    i32::from_ne_bytes(uid.to_ne_bytes())
}

/// The filesystem at `mount_point`, where it enforces user quotas (for
/// `doctor`); otherwise why not, and the fix.
pub fn ready(mount_point: &Path) -> Result<Mount, QuotaError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(QuotaError::Mountinfo)?;
    ready_in(&text, mount_point)
}

/// [`ready`] with the mount table read.
fn ready_in(mountinfo: &str, mount_point: &Path) -> Result<Mount, QuotaError> {
    let mount = mount_in(mountinfo, mount_point)?;
    check_enforced(&mount)?;
    Ok(mount)
}

/// Whether `mount` counts and enforces user quotas: `Ok` when both.
pub fn check_enforced(mount: &Mount) -> Result<(), QuotaError> {
    // quotactl names a filesystem by its block device: tmpfs, NFS, overlay
    // and the like have none (their source is not a device path).
    if !mount.device.is_absolute() {
        return Err(quotas_off(mount));
    }
    match user_quota_flags(&mount.device) {
        Ok(flags) if flags & FS_QUOTA_UDQ_ACCT == 0 => Err(quotas_off(mount)),
        Ok(flags) if flags & FS_QUOTA_UDQ_ENFD == 0 => Err(QuotaError::NotEnforced {
            mount: mount.mount_point.clone(),
            fstype: mount.fstype.clone(),
            fix: enforce_fix_for(&mount.fstype),
        }),
        Ok(_) => Ok(()),
        // Kernels before 3.12 lack Q_XGETQSTATV; the quota calls below
        // still say whether quotas are on.
        Err(Errno::EINVAL) => Ok(()),
        Err(errno) => Err(quotactl_error(mount, None, errno)),
    }
}

// From <linux/dqblk_xfs.h>: Q_XGETQSTATV reports, for every filesystem with
// quotas (the generic VFS quota of ext4 included), whether user quotas are
// counted and enforced. Anyone may ask. nix does not wrap it.
const Q_XGETQSTATV: i32 = ((b'X' as i32) << 8) + 8;
const FS_QSTATV_VERSION1: i8 = 1;
const FS_QUOTA_UDQ_ACCT: u16 = 1 << 0;
const FS_QUOTA_UDQ_ENFD: u16 = 1 << 1;

/// `struct fs_qfilestatv`.
#[repr(C)]
#[derive(Default)]
struct FsQfilestatv {
    ino: u64,
    nblks: u64,
    nextents: u32,
    pad: u32,
}

/// `struct fs_quota_statv`: explicitly padded, 160 bytes.
#[repr(C)]
#[derive(Default)]
struct FsQuotaStatv {
    version: i8,
    pad1: u8,
    flags: u16,
    incoredqs: u32,
    uquota: FsQfilestatv,
    gquota: FsQfilestatv,
    pquota: FsQfilestatv,
    btimelimit: i32,
    itimelimit: i32,
    rtbtimelimit: i32,
    bwarnlimit: u16,
    iwarnlimit: u16,
    rtbwarnlimit: u16,
    pad3: u16,
    pad4: u32,
    pad2: [u64; 7],
}

const _: () = assert!(std::mem::size_of::<FsQuotaStatv>() == 160);

/// The user-quota flags (`FS_QUOTA_UDQ_*`) of the filesystem on `device`.
#[allow(unsafe_code)]
fn user_quota_flags(device: &Path) -> Result<u16, Errno> {
    use std::os::unix::ffi::OsStrExt;
    let device =
        std::ffi::CString::new(device.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let mut stat = FsQuotaStatv {
        version: FS_QSTATV_VERSION1,
        ..FsQuotaStatv::default()
    };
    // QCMD(Q_XGETQSTATV, USRQUOTA): the command in the high bits, the type (0) low.
    let cmd = Q_XGETQSTATV << 8;
    // SAFETY: `device` is a NUL-terminated string that outlives the call;
    // `stat` is a properly sized, aligned and initialised fs_quota_statv with
    // its version set, which the kernel reads (1 byte) and writes (at most
    // sizeof(struct fs_quota_statv)) only during the call.
    let rc = unsafe {
        nix::libc::quotactl(
            cmd,
            device.as_ptr(),
            0,
            std::ptr::from_mut(&mut stat).cast::<nix::libc::c_char>(),
        )
    };
    Errno::result(rc).map(|_| stat.flags)
}

/// `uid`'s limits and usage on `mount` (whose device [`check_enforced`]
/// has found).
pub fn get(mount: &Mount, uid: u32) -> Result<QuotaState, QuotaError> {
    let dq = match quotactl_get(QuotaType::USRQUOTA, mount.device.as_path(), uid_arg(uid)) {
        Ok(dq) => dq,
        // XFS keeps no record for an id that has neither usage nor limits
        // and answers ENOENT: nothing used, no limit. (The device itself
        // was found by the quota state query before.)
        Err(Errno::ENOENT) => return Ok(QuotaState::default()),
        Err(e) => return Err(quotactl_error(mount, Some(uid), e)),
    };
    Ok(QuotaState {
        limits: QuotaLimits {
            block_hard: dq.blocks_hard_limit().unwrap_or(0),
            block_soft: dq.blocks_soft_limit().unwrap_or(0),
            inode_hard: dq.inodes_hard_limit().unwrap_or(0),
            inode_soft: dq.inodes_soft_limit().unwrap_or(0),
        },
        used_bytes: dq.occupied_space().unwrap_or(0),
        used_inodes: dq.allocated_inodes().unwrap_or(0),
    })
}

/// Sets `uid`'s block and inode limits on `mount` (usage and grace times
/// untouched).
pub fn set(mount: &Mount, uid: u32, limits: &QuotaLimits) -> Result<(), QuotaError> {
    let mut dq = Dqblk::default();
    dq.set_blocks_hard_limit(limits.block_hard);
    dq.set_blocks_soft_limit(limits.block_soft);
    dq.set_inodes_hard_limit(limits.inode_hard);
    dq.set_inodes_soft_limit(limits.inode_soft);
    quotactl_set(
        QuotaType::USRQUOTA,
        mount.device.as_path(),
        uid_arg(uid),
        &dq,
        QuotaValidFlags::QIF_LIMITS,
    )
    .map_err(|e| quotactl_error(mount, Some(uid), e))
}

/// The machine's quotas, through quotactl.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemQuotas;

impl QuotaPort for SystemQuotas {
    type Filesystem = Mount;

    fn filesystems(&self, mount_points: &[PathBuf]) -> Vec<Result<Mount, PortError>> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo");
        mount_points
            .iter()
            .map(|mount_point| {
                let found: Result<Mount, QuotaError> = match &mountinfo {
                    Ok(text) => ready_in(text, mount_point),
                    Err(e) => Err(QuotaError::Mountinfo(e.kind().into())),
                };
                found.map_err(PortError::new)
            })
            .collect()
    }

    fn get(&self, filesystem: &Mount, uid: u32) -> Result<QuotaState, PortError> {
        get(filesystem, uid).map_err(PortError::new)
    }

    fn set(&self, filesystem: &Mount, uid: u32, limits: &QuotaLimits) -> Result<(), PortError> {
        set(filesystem, uid, limits).map_err(PortError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw,quota,usrquota
30 22 254:2 / /home rw,relatime shared:2 - ext4 /dev/vdb rw,quota
31 22 254:3 / /srv/data\\040set rw,relatime shared:3 - xfs /dev/mapper/vg-data\\040x rw,usrquota
32 22 0:5 / /home rw,relatime shared:4 - xfs /dev/vdc rw,uquota
";

    #[test]
    fn finds_the_mount_at_exactly_the_point_and_the_last_over_it() {
        let home = find_mount(MOUNTINFO, Path::new("/home")).unwrap();
        assert_eq!(home.fstype, "xfs", "the later mount hides the earlier");
        assert_eq!(home.device, PathBuf::from("/dev/vdc"));
        let data = find_mount(MOUNTINFO, Path::new("/srv/data set")).unwrap();
        assert_eq!(data.device, PathBuf::from("/dev/mapper/vg-data x"));
        assert!(find_mount(MOUNTINFO, Path::new("/home/alice")).is_none());
        assert!(find_mount(MOUNTINFO, Path::new("/srv")).is_none());
        assert!(find_mount("garbage\n\n - \n", Path::new("/")).is_none());
    }

    #[test]
    fn unescapes_octal_and_leaves_the_rest() {
        assert_eq!(unescape("a\\040b\\134c"), "a b\\c");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
        assert_eq!(unescape("\\999"), "\\999");
    }

    #[test]
    fn errors_name_the_mount_and_the_fix() {
        let home = find_mount(MOUNTINFO, Path::new("/home")).unwrap();
        let off = quotactl_error(&home, Some(1000), Errno::ESRCH).to_string();
        assert!(off.contains("/home") && off.contains("uquota"), "{off}");
        let root = find_mount(MOUNTINFO, Path::new("/")).unwrap();
        let off = quotactl_error(&root, Some(1000), Errno::ESRCH).to_string();
        assert!(off.contains("tune2fs -O quota"), "{off}");
        let other = quotactl_error(&root, Some(1000), Errno::EPERM).to_string();
        assert!(
            other.contains("/dev/vda") && other.contains("1000"),
            "{other}"
        );
        assert_eq!(uid_arg(4_294_967_294), -2);
        let range = quotactl_error(&home, Some(1000), Errno::ERANGE).to_string();
        assert!(
            range.contains("/home") && range.contains("4T less 1K") && range.contains("vfsv1"),
            "{range}"
        );
    }

    #[test]
    fn a_filesystem_without_a_block_device_has_no_quotas_to_set() {
        let tmpfs = Mount {
            mount_point: "/run/user".into(),
            fstype: "tmpfs".into(),
            device: "tmpfs".into(),
        };
        let off = check_enforced(&tmpfs).unwrap_err().to_string();
        assert!(
            off.contains("/run/user (tmpfs) is mounted without user quotas")
                && off.contains("use ext4 or XFS"),
            "{off}"
        );
    }

    #[test]
    fn this_machine_names_missing_and_non_mount_points() {
        assert!(matches!(
            mount_of(Path::new("/no/such/dir")),
            Err(QuotaError::Missing(_))
        ));
        assert!(mount_of(Path::new("/")).is_ok());
        assert!(matches!(
            mount_of(Path::new("/usr/share")),
            Err(QuotaError::NotAMountPoint(_))
        ));
    }
}
