//! Distribution facts (the "distribution abstraction layer") and the system
//! account adapter: where PAM modules live, and `useradd`/`userdel`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use std::path::Path as FsPath;

use crate::ports::{AccountError, AccountPort, Membership, PortError};

/// Which family of distribution we run on, from `/etc/os-release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Debian,
    RedHat,
    Suse,
    Arch,
    Other,
}

impl Family {
    /// Reads `ID` and `ID_LIKE` from the text of `/etc/os-release`.
    pub fn from_os_release(text: &str) -> Self {
        let ids: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("ID=").or_else(|| l.strip_prefix("ID_LIKE=")))
            .flat_map(|v| v.trim_matches('"').split_whitespace())
            .collect();
        let has = |names: &[&str]| ids.iter().any(|id| names.contains(id));
        if has(&["debian", "ubuntu"]) {
            Family::Debian
        } else if has(&["rhel", "fedora", "centos"]) {
            Family::RedHat
        } else if has(&["suse", "opensuse"]) {
            Family::Suse
        } else if has(&["arch"]) {
            Family::Arch
        } else {
            Family::Other
        }
    }

    /// This machine's family.
    pub fn detect() -> Self {
        Distro::detect().family
    }

    /// Where libpam looks for modules.
    pub fn pam_module_dir(self, arch: &str) -> PathBuf {
        match self {
            Family::Debian => PathBuf::from(format!("/lib/{arch}-linux-gnu/security")),
            Family::RedHat | Family::Suse if arch == "x86_64" || arch == "aarch64" => {
                PathBuf::from("/usr/lib64/security")
            }
            _ => PathBuf::from("/usr/lib/security"),
        }
    }
}

/// A distribution release, from `/etc/os-release`, with the facts
/// diycloud's packages and docs rely on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distro {
    /// `ID` (`debian`, `ubuntu`, `fedora`, `rhel`, `rocky`, `almalinux`,
    /// `arch`, `opensuse-leap`, `opensuse-tumbleweed`, ...).
    pub id: String,
    /// `VERSION_ID` (empty on rolling releases).
    pub version_id: String,
    /// `PRETTY_NAME`, else `ID VERSION_ID`: for people.
    pub name: String,
    pub family: Family,
}

/// How the distribution wants PAM stacks changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PamTool {
    /// Debian and Ubuntu: profiles in /usr/share/pam-configs, merged into
    /// /etc/pam.d/common-*.
    PamAuthUpdate,
    /// Fedora and RHEL 8 and later: profiles in /etc/authselect, written
    /// to /etc/pam.d/system-auth and password-auth.
    Authselect,
    /// openSUSE: pam-config, writing /etc/pam.d/common-*-pc.
    PamConfig,
    /// Arch and others: /etc/pam.d/system-auth edited by hand.
    ByHand,
}

impl PamTool {
    /// How an admin adds pam_diycloud to the stacks here (docs/pam.md has
    /// each recipe).
    pub fn describe(self) -> &'static str {
        match self {
            PamTool::PamAuthUpdate => "pam-auth-update --enable diycloud",
            PamTool::Authselect => "an authselect profile",
            PamTool::PamConfig => "pam-config",
            PamTool::ByHand => "/etc/pam.d/system-auth, by hand",
        }
    }
}

impl Distro {
    /// From the text of `/etc/os-release`.
    pub fn from_os_release(text: &str) -> Self {
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_owned())
                .unwrap_or_default()
        };
        let (id, version_id) = (value("ID"), value("VERSION_ID"));
        let name = match value("PRETTY_NAME") {
            pretty if !pretty.is_empty() => pretty,
            _ if id.is_empty() => "unknown distribution".to_owned(),
            _ => format!("{id} {version_id}").trim_end().to_owned(),
        };
        Self {
            id,
            version_id,
            name,
            family: Family::from_os_release(text),
        }
    }

    /// This machine's.
    pub fn detect() -> Self {
        std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .map(|t| Self::from_os_release(&t))
            .unwrap_or_else(|_| Self::from_os_release(""))
    }

    /// The major version (`12` of `12`, `22` of `22.04`); `None` on rolling
    /// releases.
    fn major(&self) -> Option<u32> {
        self.major_minor().map(|(major, _)| major)
    }

    fn major_minor(&self) -> Option<(u32, u32)> {
        let mut parts = self.version_id.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        Some((major, minor))
    }

    pub fn pam_tool(&self) -> PamTool {
        match self.family {
            Family::Debian => PamTool::PamAuthUpdate,
            Family::RedHat if self.id == "fedora" || self.major().is_some_and(|v| v >= 8) => {
                PamTool::Authselect
            }
            Family::Suse => PamTool::PamConfig,
            _ => PamTool::ByHand,
        }
    }

    /// Whether systemd mounts the unified cgroup v2 hierarchy by default
    /// (diycloud sizes slices on v1 too, but v2 is where memory and CPU
    /// accounting are complete); `None` where this release is not known.
    pub fn cgroup_v2_by_default(&self) -> Option<bool> {
        let at_least = |v: (u32, u32)| self.major_minor().map(|m| m >= v);
        match self.id.as_str() {
            "debian" => at_least((11, 0)),
            "ubuntu" => at_least((21, 10)),
            "fedora" => at_least((31, 0)),
            "rhel" | "rocky" | "almalinux" | "centos" => at_least((9, 0)),
            "arch" | "opensuse-tumbleweed" => Some(true),
            "opensuse-leap" => Some(false),
            _ => None,
        }
    }
}

/// The lowest uid of a regular (human) account when login.defs says nothing:
/// shadow's own default.
pub const DEFAULT_UID_MIN: u32 = 1000;

/// The value of `key` in the text of `/etc/login.defs` (`KEY value` lines,
/// `#` comments).
fn login_defs_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let mut fields = l.split_whitespace();
            (fields.next() == Some(key))
                .then(|| fields.next())
                .flatten()
        })
}

/// `UID_MIN` from the text of `/etc/login.defs`: accounts below it are the
/// system's (service accounts such as postgres, or root).
pub fn uid_min_from_login_defs(text: &str) -> Option<u32> {
    login_defs_value(text, "UID_MIN")?.parse().ok()
}

/// The mode `useradd --create-home` gives a new home, from the text of
/// `/etc/login.defs`: `HOME_MODE` where set, else what `UMASK` leaves of
/// 0777 (shadow's rule; UMASK defaults to 022). Debian and Ubuntu before
/// 21.04 set only `UMASK 022`: homes every user can read.
pub fn home_mode_from_login_defs(text: &str) -> u32 {
    let octal = |key| {
        login_defs_value(text, key)
            .and_then(|v| u32::from_str_radix(v, 8).ok().filter(|m| *m <= 0o7777))
    };
    octal("HOME_MODE").unwrap_or_else(|| 0o777 & !octal("UMASK").unwrap_or(0o022))
}

/// This machine's [`home_mode_from_login_defs`].
pub fn home_mode() -> u32 {
    home_mode_from_login_defs(&std::fs::read_to_string("/etc/login.defs").unwrap_or_default())
}

/// This machine's `UID_MIN` (login.defs, else [`DEFAULT_UID_MIN`]).
pub fn uid_min() -> u32 {
    std::fs::read_to_string("/etc/login.defs")
        .ok()
        .and_then(|t| uid_min_from_login_defs(&t))
        .unwrap_or(DEFAULT_UID_MIN)
}

/// The uid of the system account `name`, if there is one.
pub fn system_uid(name: &str) -> Result<Option<u32>, AccountError> {
    nix::unistd::User::from_name(name)
        .map(|u| u.map(|u| u.uid.as_raw()))
        .map_err(|source| AccountError::Lookup {
            name: name.into(),
            source,
        })
}

/// Creates a system account with the distribution's `useradd`: home from
/// /etc/skel, a locked shadow password (diycloud checks the password), the
/// configured shell, a member of `group` (which must exist). Returns its uid.
pub fn create_system_account(
    name: &str,
    full_name: Option<&str>,
    shell: &Path,
    group: &str,
) -> Result<u32, AccountError> {
    if let Some(uid) = system_uid(name)? {
        return Err(AccountError::Exists {
            name: name.into(),
            uid,
        });
    }
    let mut cmd = Command::new("useradd");
    cmd.args([
        "--create-home",
        "--user-group",
        "--groups",
        group,
        "--shell",
    ])
    .arg(shell);
    if let Some(full_name) = full_name {
        cmd.arg("--comment").arg(full_name);
    }
    run(cmd.arg("--").arg(name), "useradd")?;
    system_uid(name)?.ok_or_else(|| AccountError::Vanished("useradd".into()))
}

/// Sets the comment (full name) field of a system account with `usermod`.
pub fn set_system_account_comment(name: &str, comment: &str) -> Result<(), AccountError> {
    run(
        Command::new("usermod").args(["--comment", comment, "--", name]),
        "usermod",
    )
}

/// Removes a system account (and its home and mail spool with `remove_home`).
/// An account that is already gone is not an error.
pub fn delete_system_account(name: &str, remove_home: bool) -> Result<(), AccountError> {
    if system_uid(name)?.is_none() {
        return Ok(());
    }
    let mut cmd = Command::new("userdel");
    if remove_home {
        cmd.arg("--remove");
    }
    run(cmd.arg("--").arg(name), "userdel")
}

/// Creates the system group `group` (`groupadd --system`) unless it exists.
/// Returns whether it was created.
pub fn ensure_group(group: &str) -> Result<bool, AccountError> {
    if group_exists(group)? {
        return Ok(false);
    }
    run(
        Command::new("groupadd").args(["--system", "--", group]),
        "groupadd",
    )?;
    Ok(true)
}

pub fn group_exists(group: &str) -> Result<bool, AccountError> {
    nix::unistd::Group::from_name(group)
        .map(|g| g.is_some())
        .map_err(|source| AccountError::Lookup {
            name: group.into(),
            source,
        })
}

/// Adds the account `name` to `group` (`gpasswd --add`; a member stays one).
pub fn add_to_group(name: &str, group: &str) -> Result<(), AccountError> {
    if is_group_member(name, group)? == Membership::Member {
        return Ok(());
    }
    run(
        Command::new("gpasswd").args(["--add", name, group]),
        "gpasswd",
    )
}

/// Takes the account `name` out of `group`'s member list, where it is on it.
pub fn remove_from_group(name: &str, group: &str) -> Result<(), AccountError> {
    let listed = nix::unistd::Group::from_name(group)
        .map_err(|source| AccountError::Lookup {
            name: group.into(),
            source,
        })?
        .is_some_and(|g| g.mem.iter().any(|m| m == name));
    if !listed {
        return Ok(());
    }
    run(
        Command::new("gpasswd").args(["--delete", name, group]),
        "gpasswd",
    )
}

/// Whether the account `name` is in `group`, as its primary group or as a
/// supplementary one (through NSS, as `id` sees it).
pub fn is_group_member(name: &str, group: &str) -> Result<Membership, AccountError> {
    let lookup = |what: &str| {
        let what = what.to_owned();
        move |source| AccountError::Lookup { name: what, source }
    };
    let Some(group) = nix::unistd::Group::from_name(group).map_err(lookup(group))? else {
        return Ok(Membership::NoGroup);
    };
    let Some(user) = nix::unistd::User::from_name(name).map_err(lookup(name))? else {
        return Ok(Membership::NoAccount);
    };
    if user.gid == group.gid || group.mem.iter().any(|m| m == name) {
        return Ok(Membership::Member);
    }
    // Groups that NSS composes (LDAP, sssd) may not list members: ask for
    // the user's whole list.
    let Ok(cname) = std::ffi::CString::new(name) else {
        return Ok(Membership::NoAccount);
    };
    let groups = nix::unistd::getgrouplist(&cname, user.gid).map_err(lookup(name))?;
    Ok(if groups.contains(&group.gid) {
        Membership::Member
    } else {
        Membership::NotMember
    })
}

/// Groups whose members are root, or can become root, on a usual node:
/// sudo's and polkit's admin groups, and those that hand out raw disks,
/// the shadow file or a root-run container engine.
pub const PRIVILEGED_GROUPS: &[&str] = &[
    "root",
    "sudo",
    "wheel",
    "admin",
    "adm",
    "disk",
    "shadow",
    "docker",
    "lxd",
    "incus-admin",
    "libvirt",
];

/// Which of [`PRIVILEGED_GROUPS`] the account `name` is in (through NSS).
pub fn privileged_groups_of(name: &str) -> Result<Vec<String>, AccountError> {
    let mut found = Vec::new();
    for group in PRIVILEGED_GROUPS {
        if is_group_member(name, group)? == Membership::Member {
            found.push((*group).to_owned());
        }
    }
    Ok(found)
}

/// How long account commands wait out another one's lock on the files.
const LOCK_PATIENCE: Duration = Duration::from_secs(15);

/// Whether a shadow tool refused because another one held a lock file
/// ("cannot lock /etc/group; try again later."): it changed nothing.
fn refused_for_lock(stderr: &[u8]) -> bool {
    String::from_utf8_lossy(stderr).contains("try again later")
}

// The clock and the pause: these commands run only for the admin use cases
// (slicectl, the server), never inside a PAM hook, and only on a lock.
#[allow(clippy::disallowed_methods)]
fn run(cmd: &mut Command, program: &str) -> Result<(), AccountError> {
    // useradd/userdel live in /usr/sbin, which a non-login root shell may lack.
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("/usr/sbin:/sbin:{path}"));
    // Shadow's tools take /etc/passwd's and /etc/group's lock files without
    // waiting: a second admin's command (or a plain useradd) at the same
    // moment makes them refuse with "try again later", before they change
    // anything. So try again, for a while.
    let mut pause = Duration::from_millis(20);
    let give_up = Instant::now() + LOCK_PATIENCE;
    let out = loop {
        let out = cmd.output().map_err(|source| AccountError::Spawn {
            program: program.into(),
            source,
        })?;
        if out.status.success() {
            return Ok(());
        }
        if !refused_for_lock(&out.stderr) || Instant::now() + pause > give_up {
            break out;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(500));
    };
    Err(AccountError::Failed {
        program: program.into(),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_refusals_are_told_from_other_failures() {
        let busy = b"useradd: lock /etc/group.lock already used by PID 21191\nuseradd: cannot lock /etc/group; try again later.\n";
        assert!(refused_for_lock(busy));
        assert!(refused_for_lock(
            b"gpasswd: cannot lock /etc/group; try again later.\n"
        ));
        assert!(!refused_for_lock(b"useradd: user 'alice' already exists\n"));
        assert!(!refused_for_lock(b""));
    }

    #[test]
    fn families_from_os_release() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        let ubuntu = "ID=ubuntu\nID_LIKE=debian\n";
        let rocky = "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n";
        let leap = "ID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\n";
        assert_eq!(Family::from_os_release(debian), Family::Debian);
        assert_eq!(Family::from_os_release(ubuntu), Family::Debian);
        assert_eq!(Family::from_os_release(rocky), Family::RedHat);
        assert_eq!(Family::from_os_release(leap), Family::Suse);
        assert_eq!(Family::from_os_release("ID=arch\n"), Family::Arch);
        assert_eq!(Family::from_os_release(""), Family::Other);
    }

    /// Samples of each distribution's /etc/os-release, as shipped.
    const DEBIAN_12: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";
    const UBUNTU_2004: &str = "NAME=\"Ubuntu\"\nVERSION=\"20.04.6 LTS (Focal Fossa)\"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"20.04\"\n";
    const UBUNTU_2404: &str = "PRETTY_NAME=\"Ubuntu 24.04 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nID_LIKE=debian\n";
    const FEDORA_40: &str =
        "NAME=\"Fedora Linux\"\nVERSION=\"40 (Server Edition)\"\nID=fedora\nVERSION_ID=40\n";
    const RHEL_8: &str = "NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"8.9 (Ootpa)\"\nID=\"rhel\"\nID_LIKE=\"fedora\"\nVERSION_ID=\"8.9\"\n";
    const ROCKY_9: &str = "NAME=\"Rocky Linux\"\nVERSION=\"9.4 (Blue Onyx)\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n";
    const ALMA_9: &str = "NAME=\"AlmaLinux\"\nVERSION=\"9.4 (Seafoam Ocelot)\"\nID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n";
    const ARCH: &str =
        "NAME=\"Arch Linux\"\nPRETTY_NAME=\"Arch Linux\"\nID=arch\nBUILD_ID=rolling\n";
    const LEAP_15: &str = "NAME=\"openSUSE Leap\"\nVERSION=\"15.6\"\nID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\nVERSION_ID=\"15.6\"\n";
    const TUMBLEWEED: &str = "NAME=\"openSUSE Tumbleweed\"\nID=\"opensuse-tumbleweed\"\nID_LIKE=\"opensuse suse\"\nVERSION_ID=\"20241120\"\n";

    #[test]
    fn distro_facts_from_os_release() {
        use PamTool::*;
        let cases: &[(&str, &str, Family, PamTool, Option<bool>)] = &[
            (
                DEBIAN_12,
                "debian",
                Family::Debian,
                PamAuthUpdate,
                Some(true),
            ),
            (
                UBUNTU_2004,
                "ubuntu",
                Family::Debian,
                PamAuthUpdate,
                Some(false),
            ),
            (
                UBUNTU_2404,
                "ubuntu",
                Family::Debian,
                PamAuthUpdate,
                Some(true),
            ),
            (FEDORA_40, "fedora", Family::RedHat, Authselect, Some(true)),
            (RHEL_8, "rhel", Family::RedHat, Authselect, Some(false)),
            (ROCKY_9, "rocky", Family::RedHat, Authselect, Some(true)),
            (ALMA_9, "almalinux", Family::RedHat, Authselect, Some(true)),
            (ARCH, "arch", Family::Arch, ByHand, Some(true)),
            (
                LEAP_15,
                "opensuse-leap",
                Family::Suse,
                PamConfig,
                Some(false),
            ),
            (
                TUMBLEWEED,
                "opensuse-tumbleweed",
                Family::Suse,
                PamConfig,
                Some(true),
            ),
        ];
        for (text, id, family, tool, v2) in cases {
            let d = Distro::from_os_release(text);
            assert_eq!(&d.id, id);
            assert_eq!(d.family, *family, "{id}");
            assert_eq!(d.pam_tool(), *tool, "{id}");
            assert_eq!(d.cgroup_v2_by_default(), *v2, "{id} {}", d.version_id);
        }
        let unknown = Distro::from_os_release("ID=plan9\n");
        assert_eq!(
            (unknown.pam_tool(), unknown.cgroup_v2_by_default()),
            (ByHand, None)
        );
        assert_eq!(Distro::from_os_release(ARCH).name, "Arch Linux");
        assert_eq!(
            Distro::from_os_release("ID=plan9\nVERSION_ID=4\n").name,
            "plan9 4"
        );
        assert_eq!(Distro::from_os_release("").name, "unknown distribution");
        assert_eq!(Distro::from_os_release("").id, "");
        assert_eq!(Distro::from_os_release(RHEL_8).version_id, "8.9");
        assert_eq!(
            Family::RedHat.pam_module_dir("x86_64"),
            PathBuf::from("/usr/lib64/security")
        );
    }

    #[test]
    fn pam_module_dirs() {
        assert_eq!(
            Family::Debian.pam_module_dir("x86_64"),
            PathBuf::from("/lib/x86_64-linux-gnu/security")
        );
        assert_eq!(
            Family::Debian.pam_module_dir("aarch64"),
            PathBuf::from("/lib/aarch64-linux-gnu/security")
        );
        assert_eq!(
            Family::RedHat.pam_module_dir("x86_64"),
            PathBuf::from("/usr/lib64/security")
        );
        assert_eq!(
            Family::Arch.pam_module_dir("x86_64"),
            PathBuf::from("/usr/lib/security")
        );
    }

    #[test]
    fn uid_min_from_login_defs_text() {
        let debian =
            "# comment\nMAIL_DIR /var/mail\n#UID_MIN 5\nUID_MIN\t\t\t 1000\nUID_MAX 60000\n";
        assert_eq!(uid_min_from_login_defs(debian), Some(1000));
        assert_eq!(uid_min_from_login_defs("UID_MIN 500\n"), Some(500));
        assert_eq!(
            uid_min_from_login_defs("UID_MIN_X 5\nUID_MIN nonsense\n"),
            None
        );
        assert_eq!(uid_min_from_login_defs(""), None);
    }

    #[test]
    fn looks_up_real_accounts() {
        assert_eq!(system_uid("root").unwrap(), Some(0));
        assert_eq!(system_uid("no-such-user-here").unwrap(), None);
    }

    #[test]
    fn group_membership_of_real_accounts() {
        assert_eq!(is_group_member("root", "root").unwrap(), Membership::Member);
        assert_eq!(
            is_group_member("no-such-user-here", "root").unwrap(),
            Membership::NoAccount
        );
        assert_eq!(
            is_group_member("root", "no-such-group-here").unwrap(),
            Membership::NoGroup
        );
        assert!(group_exists("root").unwrap());
        assert!(!group_exists("no-such-group-here").unwrap());
    }

    #[test]
    fn home_mode_from_login_defs_as_useradd_reads_it() {
        // Debian 12 ships UMASK 022 and no HOME_MODE; Ubuntu 21.04 and later
        // add HOME_MODE 0750; Fedora and RHEL 9 HOME_MODE 0700.
        let debian = "# comment\nUMASK\t\t022\nUID_MIN\t\t\t 1000\nUSERGROUPS_ENAB yes\n";
        let ubuntu = "UMASK\t\t022\nHOME_MODE\t0750\n";
        let fedora = "UMASK 022\nHOME_MODE 0700\n";
        assert_eq!(home_mode_from_login_defs(debian), 0o755);
        assert_eq!(home_mode_from_login_defs(ubuntu), 0o750);
        assert_eq!(home_mode_from_login_defs(fedora), 0o700);
        assert_eq!(home_mode_from_login_defs("UMASK 077\n"), 0o700);
        assert_eq!(
            home_mode_from_login_defs(""),
            0o755,
            "shadow's default UMASK"
        );
        assert_eq!(
            home_mode_from_login_defs("#HOME_MODE 0700\nHOME_MODE nonsense\nUMASK 027\n"),
            0o750,
            "a comment or a bad value is not a setting"
        );
        assert_eq!(uid_min_from_login_defs(debian), Some(1000));
        assert_eq!(uid_min_from_login_defs("UID_MIN\n"), None);
    }
}

/// The machine's own accounts.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemAccounts;

impl AccountPort for SystemAccounts {
    fn uid(&self, name: &str) -> Result<Option<u32>, PortError> {
        system_uid(name).map_err(PortError::new)
    }

    fn uid_min(&self) -> u32 {
        uid_min()
    }

    fn create(
        &self,
        name: &str,
        full_name: Option<&str>,
        shell: &FsPath,
        group: &str,
    ) -> Result<u32, AccountError> {
        create_system_account(name, full_name, shell, group)
    }

    fn set_full_name(&self, name: &str, full_name: &str) -> Result<(), AccountError> {
        set_system_account_comment(name, full_name)
    }

    fn delete(&self, name: &str, remove_home: bool) -> Result<(), AccountError> {
        delete_system_account(name, remove_home)
    }

    fn ensure_group(&self, group: &str) -> Result<bool, AccountError> {
        ensure_group(group)
    }

    fn add_to_group(&self, name: &str, group: &str) -> Result<(), AccountError> {
        add_to_group(name, group)
    }

    fn remove_from_group(&self, name: &str, group: &str) -> Result<(), AccountError> {
        remove_from_group(name, group)
    }

    fn membership(&self, name: &str, group: &str) -> Result<Membership, AccountError> {
        is_group_member(name, group)
    }

    fn privileged_groups(&self, name: &str) -> Result<Vec<String>, AccountError> {
        privileged_groups_of(name)
    }
}
