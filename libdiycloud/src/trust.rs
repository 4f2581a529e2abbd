//! Which files may decide who logs in: the config and the database are used
//! only if nobody but root (or the process's own user) could have written
//! them, as sudo does with sudoers and sshd with `StrictModes`.
//!
//! Accepted, exactly:
//! - the file itself: a regular file (not a symbolic link), one hard link,
//!   owned by root or by the running process's effective user, not writable
//!   by group or others;
//! - the directory that holds it: owned the same way, not writable by group
//!   or others (no exception: SQLite creates `-wal`/`-shm` files beside the
//!   database, and a writable directory would let anyone plant them);
//! - every directory above that, up to `/`: owned the same way and not
//!   writable by group or others, OR root-owned with the sticky bit (like
//!   `/tmp`): there nobody can rename or remove what they do not own;
//! - symbolic links among the directories are followed, and every directory
//!   they lead through is checked by the same rules (a link lives in a
//!   directory that was already checked, so only a trusted user placed it).
//!
//! A missing file is reported as [`Presence::Absent`] only when nobody
//! untrusted could create it: the deepest existing directory passes the rule
//! for the file's own directory.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// Symbolic links followed in one path before giving up (Linux's own limit).
const MAX_LINKS: u32 = 40;

/// Whether a checked path exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Present,
    /// Not there, and nobody but a trusted user could create it.
    Absent,
}

/// Why a file is not trusted. Each message names the path and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{path} is owned by uid {uid}, not root: whoever owns it can change who logs in; fix: chown root {path}")]
    NotOwned { path: Display, uid: u32 },
    #[error("{path} is writable by {who} (mode {mode:04o}); fix: chmod go-w {path}")]
    Writable {
        path: Display,
        who: &'static str,
        mode: u32,
    },
    #[error("{path} is a symbolic link; name the file itself, not a link to it")]
    Symlink { path: Display },
    #[error("{path} has {links} hard links: another name for it may sit in a directory nobody checks; fix: copy it to a new file and remove the old one")]
    HardLinks { path: Display, links: u64 },
    #[error("{path} is not a regular file")]
    NotRegular { path: Display },
    #[error("{path} is not a directory")]
    NotDirectory { path: Display },
    #[error("{path}: more than {MAX_LINKS} symbolic links")]
    TooManyLinks { path: Display },
    #[error("{path} is not an absolute path")]
    Relative { path: Display },
    #[error("cannot check {path}: {source}")]
    Io {
        path: Display,
        source: std::io::Error,
    },
}

/// A path as shown in messages.
#[derive(Debug, Clone)]
pub struct Display(PathBuf);

impl fmt::Display for Display {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display().fmt(f)
    }
}

fn shown(path: &Path) -> Display {
    Display(path.to_path_buf())
}

/// Who may own a trusted file: root, and the process's own effective user
/// (a test or a non-root tool reading its own files; for the PAM module in
/// sshd or su the effective user is root).
#[derive(Debug, Clone, Copy)]
struct Owners {
    euid: u32,
}

impl Owners {
    fn current() -> Self {
        Self {
            euid: nix::unistd::geteuid().as_raw(),
        }
    }

    fn trusts(self, uid: u32) -> bool {
        uid == 0 || uid == self.euid
    }
}

/// How strict a directory check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirRole {
    /// Somewhere above the file: a root-owned sticky directory is fine.
    Above,
    /// The file's own directory: nobody untrusted may create entries.
    Holder,
}

fn check_owner_and_mode(
    path: &Path,
    meta: &std::fs::Metadata,
    owners: Owners,
) -> Result<(), TrustError> {
    if !owners.trusts(meta.uid()) {
        return Err(TrustError::NotOwned {
            path: shown(path),
            uid: meta.uid(),
        });
    }
    let mode = meta.mode() & 0o7777;
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (false, false) => return Ok(()),
        (true, false) => "its group",
        (false, true) => "others",
        (true, true) => "its group and others",
    };
    Err(TrustError::Writable {
        path: shown(path),
        who,
        mode,
    })
}

fn check_dir(
    path: &Path,
    meta: &std::fs::Metadata,
    role: DirRole,
    owners: Owners,
) -> Result<(), TrustError> {
    if !meta.is_dir() {
        return Err(TrustError::NotDirectory { path: shown(path) });
    }
    let sticky_root = meta.mode() & 0o1000 != 0 && meta.uid() == 0;
    if role == DirRole::Above && sticky_root {
        return Ok(());
    }
    check_owner_and_mode(path, meta, owners)
}

fn check_regular_file(
    path: &Path,
    meta: &std::fs::Metadata,
    owners: Owners,
) -> Result<(), TrustError> {
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Err(TrustError::Symlink { path: shown(path) });
    }
    if !kind.is_file() || kind.is_fifo() || kind.is_socket() {
        return Err(TrustError::NotRegular { path: shown(path) });
    }
    check_owner_and_mode(path, meta, owners)?;
    if meta.nlink() > 1 {
        return Err(TrustError::HardLinks {
            path: shown(path),
            links: meta.nlink(),
        });
    }
    Ok(())
}

fn lstat(path: &Path) -> Result<Option<std::fs::Metadata>, TrustError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TrustError::Io {
            path: shown(path),
            source,
        }),
    }
}

/// A directory the walk has reached (or gone back up to): it must exist.
fn existing(dir: &Path) -> Result<std::fs::Metadata, TrustError> {
    lstat(dir)?.ok_or_else(|| TrustError::NotDirectory { path: shown(dir) })
}

/// Checks `path` and every directory on the way to it (see the module docs).
pub fn check_file(path: &Path) -> Result<Presence, TrustError> {
    check_file_as(path, Owners::current())
}

fn check_file_as(path: &Path, owners: Owners) -> Result<Presence, TrustError> {
    if !path.is_absolute() {
        return Err(TrustError::Relative { path: shown(path) });
    }
    let mut dir = PathBuf::from("/");
    let root = existing(&dir)?;
    check_dir(&dir, &root, DirRole::Above, owners)?;
    let mut dir_meta = root;
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_components(&mut pending, path);
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            dir.pop();
            dir_meta = existing(&dir)?;
            check_dir(&dir, &dir_meta, DirRole::Above, owners)?;
            continue;
        }
        let next = dir.join(&name);
        let last = pending.is_empty();
        let Some(meta) = lstat(&next)? else {
            // Everything above is trusted; only the deepest existing
            // directory could let someone else create the rest.
            check_dir(&dir, &dir_meta, DirRole::Holder, owners)?;
            return Ok(Presence::Absent);
        };
        if meta.file_type().is_symlink() && !last {
            links += 1;
            if links > MAX_LINKS {
                return Err(TrustError::TooManyLinks { path: shown(path) });
            }
            let target = std::fs::read_link(&next).map_err(|source| TrustError::Io {
                path: shown(&next),
                source,
            })?;
            if target.is_absolute() {
                dir = PathBuf::from("/");
                dir_meta = existing(&dir)?;
            }
            push_components(&mut pending, &target);
            continue;
        }
        if last {
            check_regular_file(&next, &meta, owners)?;
            check_dir(&dir, &dir_meta, DirRole::Holder, owners)?;
            return Ok(Presence::Present);
        }
        check_dir(&next, &meta, DirRole::Above, owners)?;
        dir = next;
        dir_meta = meta;
    }
    // The path named a directory ("/" or "/etc/.."): not a file.
    Err(TrustError::NotRegular { path: shown(path) })
}

/// Puts the components of `path` in front of `pending`, in order (`.` dropped).
fn push_components(pending: &mut VecDeque<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    for part in parts.into_iter().rev() {
        pending.push_front(part);
    }
}

/// Checks an SQLite database: the file as [`check_file`] does, and its
/// `-wal`, `-shm` and `-journal` files where they exist (they hold or index
/// its contents).
pub fn check_database(path: &Path) -> Result<Presence, TrustError> {
    let presence = check_file(path)?;
    if presence == Presence::Present {
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut side = path.as_os_str().to_os_string();
            side.push(suffix);
            let side = PathBuf::from(side);
            if let Some(meta) = lstat(&side)? {
                check_regular_file(&side, &meta, Owners::current())?;
            }
        }
    }
    Ok(presence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A private directory with a file in it, as `init` makes them.
    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("diycloud.db");
        std::fs::write(&file, "x").unwrap();
        chmod(&file, 0o600);
        (dir, file)
    }

    #[test]
    fn a_private_file_in_a_private_directory_under_tmp_is_trusted() {
        let (_dir, file) = setup();
        assert_eq!(check_file(&file).unwrap(), Presence::Present);
        // Readable by others is a privacy matter (doctor warns), not trust.
        chmod(&file, 0o644);
        assert_eq!(check_file(&file).unwrap(), Presence::Present);
    }

    #[test]
    fn writable_files_and_directories_are_refused_with_the_fix() {
        let (dir, file) = setup();
        chmod(&file, 0o666);
        let e = check_file(&file).unwrap_err().to_string();
        assert!(
            e.contains("writable by its group and others") && e.contains("chmod go-w"),
            "{e}"
        );
        chmod(&file, 0o620);
        assert!(matches!(
            check_file(&file),
            Err(TrustError::Writable {
                who: "its group",
                ..
            })
        ));
        chmod(&file, 0o600);
        chmod(dir.path(), 0o777);
        let e = check_file(&file).unwrap_err().to_string();
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
        // Sticky does not save the file's own directory (SQLite's side files).
        chmod(dir.path(), 0o1777);
        assert!(check_file(&file).is_err());
        chmod(dir.path(), 0o700);
    }

    #[test]
    fn a_writable_directory_higher_up_is_refused() {
        let (dir, _) = setup();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let file = sub.join("x.toml");
        std::fs::write(&file, "").unwrap();
        assert!(check_file(&file).is_ok());
        chmod(dir.path(), 0o757);
        assert!(matches!(
            check_file(&file),
            Err(TrustError::Writable { .. })
        ));
        chmod(dir.path(), 0o700);
    }

    #[test]
    fn symlinks_to_the_file_are_refused_but_directory_links_are_followed() {
        let (dir, file) = setup();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(check_file(&link), Err(TrustError::Symlink { .. })));

        let sub = dir.path().join("real");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("c.toml"), "").unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("alias")).unwrap();
        let via_link = dir.path().join("alias/c.toml");
        assert_eq!(check_file(&via_link).unwrap(), Presence::Present);
        // The directory the link leads to is checked too.
        chmod(&sub, 0o777);
        assert!(matches!(
            check_file(&via_link),
            Err(TrustError::Writable { .. })
        ));
        chmod(&sub, 0o700);
        // A loop ends.
        std::os::unix::fs::symlink("loop", dir.path().join("loop")).unwrap();
        assert!(matches!(
            check_file(&dir.path().join("loop/x")),
            Err(TrustError::TooManyLinks { .. })
        ));
    }

    #[test]
    fn hard_links_and_odd_files_are_refused() {
        let (dir, file) = setup();
        std::fs::hard_link(&file, dir.path().join("second-name")).unwrap();
        assert!(matches!(
            check_file(&file),
            Err(TrustError::HardLinks { links: 2, .. })
        ));
        assert!(matches!(
            check_file(dir.path()),
            Err(TrustError::NotRegular { .. })
        ));
        assert!(matches!(
            check_file(Path::new("relative.db")),
            Err(TrustError::Relative { .. })
        ));
    }

    #[test]
    fn files_of_other_users_are_refused() {
        let (_dir, file) = setup();
        let owner = std::fs::metadata(&file).unwrap().uid();
        // As a process whose user owns neither root's nor this file.
        let stranger = Owners {
            euid: owner.wrapping_add(4242),
        };
        if owner != 0 {
            assert!(matches!(
                check_file_as(&file, stranger),
                Err(TrustError::NotOwned { .. })
            ));
        }
        assert!(check_file_as(Path::new("/etc/passwd"), stranger).is_ok());
    }

    #[test]
    fn absent_files_only_where_nobody_else_could_create_them() {
        let (dir, _) = setup();
        let missing = dir.path().join("none/deeper/x.toml");
        assert_eq!(check_file(&missing).unwrap(), Presence::Absent);
        chmod(dir.path(), 0o733);
        assert!(check_file(&missing).is_err());
        chmod(dir.path(), 0o700);
        // Directly in /tmp (sticky, writable by all): anyone could plant it.
        assert!(check_file(Path::new("/tmp/diycloud-no-such-file.toml")).is_err());
    }

    #[test]
    fn database_side_files_are_checked() {
        let (dir, file) = setup();
        let wal = dir.path().join("diycloud.db-wal");
        std::fs::write(&wal, "").unwrap();
        chmod(&wal, 0o666);
        assert!(matches!(
            check_database(&file),
            Err(TrustError::Writable { .. })
        ));
        chmod(&wal, 0o600);
        assert_eq!(check_database(&file).unwrap(), Presence::Present);
    }
}
