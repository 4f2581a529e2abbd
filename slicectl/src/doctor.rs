//! `slicectl doctor`: is this machine ready for diycloud?

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use libdiycloud::adapters::cgroup::Hierarchy;
use libdiycloud::adapters::nvidia::Source;
use libdiycloud::adapters::platform::{self, Distro, Family};
use libdiycloud::adapters::quotactl;
use libdiycloud::adapters::systemd::Systemd;
use libdiycloud::config::DEFAULT_GROUP;
use libdiycloud::ports::Membership;
use libdiycloud::store::{Database, PostgresSettings, Store};
use libdiycloud::trust::{self, Presence};
use serde_json::json;

use crate::{view, Context, Failure};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
}

struct Check {
    name: &'static str,
    status: Status,
    detail: String,
}

pub fn run(ctx: &Context) -> Result<(), Failure> {
    let mut checks = vec![platform_facts(), cgroups(), systemd(), config(ctx)];
    checks.extend(database(ctx));
    checks.extend([unfinished(ctx), uids(ctx), managed_group(ctx), accounts()]);
    checks.extend(quotas(ctx));
    checks.push(gpus());
    checks.extend([pam_module(), pam_stack(Path::new("/etc/pam.d"), "sshd")]);
    let text: Vec<String> = checks
        .iter()
        .map(|c| {
            let mark = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            format!("{mark}  {:<10} {}", c.name, c.detail)
        })
        .collect();
    let document: Vec<_> = checks
        .iter()
        .map(|c| json!({"check": c.name, "status": c.status, "detail": c.detail}))
        .collect();
    view::print(ctx, &json!(document), &text.join("\n"));
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if failed > 0 {
        return Err(Failure::Reported(format!("{failed} check(s) failed")));
    }
    Ok(())
}

/// The distribution, how its PAM stacks are changed, where its modules
/// live, and whether it boots on cgroup v2 as it is meant to.
fn platform_facts() -> Check {
    let distro = Distro::detect();
    let mut detail = format!(
        "{}: PAM stacks through {}, modules in {}",
        distro.name,
        distro.pam_tool().describe(),
        distro
            .family
            .pam_module_dir(std::env::consts::ARCH)
            .display()
    );
    let unified = matches!(Hierarchy::detect(), Ok(Hierarchy::Unified));
    let status = match distro.cgroup_v2_by_default() {
        Some(true) if !unified => {
            detail += "; this release boots on cgroup v2 by default but this machine does not \
                (systemd.unified_cgroup_hierarchy=0?): v1 accounts memory and CPU less fully";
            Status::Warn
        }
        Some(true) => {
            detail += "; cgroup v2, as this release is meant to run";
            Status::Ok
        }
        Some(false) => {
            detail += "; this release defaults to cgroup v1 (diycloud sizes slices on both)";
            Status::Ok
        }
        None => Status::Ok,
    };
    Check {
        name: "platform",
        status,
        detail,
    }
}

/// What `user add` leaves to the distribution's useradd: whether new homes
/// are private.
fn accounts() -> Check {
    let mode = platform::home_mode();
    let uid_min = platform::uid_min();
    if mode & 0o005 != 0 {
        Check {
            name: "accounts",
            status: Status::Warn,
            detail: format!(
                "useradd gives new homes mode {mode:04o} (HOME_MODE/UMASK in /etc/login.defs): every user can look into the others' homes; HOME_MODE 0700 there keeps them private"
            ),
        }
    } else {
        Check {
            name: "accounts",
            status: Status::Ok,
            detail: format!("useradd gives new homes mode {mode:04o}; UID_MIN {uid_min}"),
        }
    }
}

fn cgroups() -> Check {
    let check = |status, detail| Check {
        name: "cgroups",
        status,
        detail,
    };
    let hierarchy = match Hierarchy::detect() {
        Ok(h) => h,
        Err(e) => return check(Status::Fail, format!("cannot read /sys/fs/cgroup: {e}")),
    };
    let enabled: Vec<String> = match hierarchy {
        Hierarchy::Unified => std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect(),
        // /proc/cgroups: name, hierarchy, num_cgroups, enabled.
        Hierarchy::Hybrid | Hierarchy::Legacy => std::fs::read_to_string("/proc/cgroups")
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 4 && f[3] == "1").then(|| f[0].to_owned())
            })
            .collect(),
    };
    let missing: Vec<&str> = ["cpu", "memory", "pids"]
        .into_iter()
        .filter(|c| !enabled.iter().any(|e| e == c))
        .collect();
    let detail = format!(
        "{}; controllers: {}",
        hierarchy.describe(),
        enabled.join(" ")
    );
    if missing.is_empty() {
        check(Status::Ok, detail)
    } else {
        check(
            Status::Fail,
            format!(
                "{detail}; missing: {} (limits cannot be enforced)",
                missing.join(" ")
            ),
        )
    }
}

/// One line per configured quota filesystem: does it enforce user quotas?
fn quotas(ctx: &Context) -> Vec<Check> {
    let filesystems = &ctx.config.quota.filesystems;
    if filesystems.is_empty() {
        return vec![Check {
            name: "quota",
            status: Status::Ok,
            detail: "off: no filesystems in [quota] filesystems".into(),
        }];
    }
    filesystems
        .iter()
        .map(|fs| match quotactl::ready(fs) {
            Ok(mount) => Check {
                name: "quota",
                status: Status::Ok,
                detail: format!(
                    "{} ({} on {}): user quotas counted and enforced",
                    fs.display(),
                    mount.fstype,
                    mount.device.display()
                ),
            },
            Err(e) => Check {
                name: "quota",
                status: Status::Fail,
                detail: e.to_string(),
            },
        })
        .collect()
}

/// The node's GPUs and the driver: grants need the GPUs to be seen,
/// `usage` needs NVML for their figures.
fn gpus() -> Check {
    let found = libdiycloud::adapters::nvidia::discover();
    let check = |status, detail| Check {
        name: "gpus",
        status,
        detail,
    };
    let count = found.gpus.len();
    match found.source {
        Source::None => check(Status::Ok, "no NVIDIA GPU on this node".into()),
        Source::Nvml => check(
            Status::Ok,
            format!(
                "{count} GPU(s) through NVML, driver {}",
                found.driver_version.as_deref().unwrap_or("?")
            ),
        ),
        Source::Procfs | Source::DeviceNodes => check(
            Status::Warn,
            format!(
                "{count} GPU(s) from {}, but NVML is unavailable, so `usage` has no GPU figures: {}",
                if found.source == Source::Procfs {
                    "/proc/driver/nvidia"
                } else {
                    "/dev/nvidiaN alone"
                },
                found.nvml_error.as_deref().unwrap_or("?")
            ),
        ),
    }
}

fn systemd() -> Check {
    match Systemd::system().version() {
        Ok(version) => Check {
            name: "systemd",
            status: Status::Ok,
            detail: format!("systemd {version} reachable on the system bus"),
        },
        Err(e) => Check {
            name: "systemd",
            status: Status::Fail,
            detail: format!("{e}: session open cannot size slices"),
        },
    }
}

/// The config must be one nobody else could have written (as the module checks it).
fn config(ctx: &Context) -> Check {
    let check = |status, detail| Check {
        name: "config",
        status,
        detail,
    };
    let path = &ctx.config_path;
    if let Some(e) = &ctx.config_error {
        return check(
            Status::Fail,
            format!("{e} (pam_diycloud refuses it too: managed users cannot log in)"),
        );
    }
    match trust::check_file(path) {
        Ok(Presence::Present) => check(
            Status::Ok,
            format!("{}: owned by root, not writable by others", path.display()),
        ),
        Ok(Presence::Absent) => check(
            Status::Ok,
            format!("{} absent: built-in defaults", path.display()),
        ),
        Err(e) => check(
            Status::Fail,
            format!("{e} (pam_diycloud refuses it: managed users cannot log in)"),
        ),
    }
}

/// Adds and deletes that were interrupted half-way.
fn unfinished(ctx: &Context) -> Check {
    let check = |status, detail| Check {
        name: "unfinished",
        status,
        detail,
    };
    let users = match all_users(ctx) {
        Ok(users) => users,
        Err(e) => return check(Status::Fail, e),
    };
    let pending: Vec<String> = users
        .iter()
        .filter_map(|u| {
            let verb = u.pending?.as_str();
            Some(format!(
                "{} (run `slicectl user {verb} {}` again)",
                u.username, u.username
            ))
        })
        .collect();
    if pending.is_empty() {
        check(Status::Ok, "no interrupted `user add` or `user del`".into())
    } else {
        check(
            Status::Warn,
            format!(
                "interrupted, not usable until finished: {}",
                pending.join(", ")
            ),
        )
    }
}

/// Every user of the database, or why they cannot be read.
fn all_users(ctx: &Context) -> Result<Vec<libdiycloud::model::User>, String> {
    Store::open_database(&ctx.db)
        .and_then(|s| s.users())
        .map_err(|e| format!("cannot read the users: {e}"))
}

/// Limits bind to the uid NSS gives each name on this node: a record whose
/// uid differs (the account made again, or another uid on this cluster
/// node) is refused at every session open until it is relinked.
fn uids(ctx: &Context) -> Check {
    let check = |status, detail| Check {
        name: "uids",
        status,
        detail,
    };
    let users = match all_users(ctx) {
        Ok(users) => users,
        Err(e) => return check(Status::Fail, e),
    };
    let wrong: Vec<String> = users
        .iter()
        .filter(|u| u.uid.is_some() && u.pending.is_none())
        .filter_map(|u| libdiycloud::usecases::apply::uid_of(&ctx.ports, u).err())
        .map(|e| e.to_string())
        .collect();
    if wrong.is_empty() {
        check(
            Status::Ok,
            "every recorded uid is the one this node's accounts give".into(),
        )
    } else {
        check(
            Status::Fail,
            format!(
                "refused at session open, apply and prepare until fixed: {}",
                wrong.join("; ")
            ),
        )
    }
}

/// The managed group tells the PAM module whom to deny while the database
/// cannot be read: it must exist and hold every user with a system account.
fn managed_group(ctx: &Context) -> Check {
    let check = |status, detail| Check {
        name: "group",
        status,
        detail,
    };
    let group = ctx.config.group.as_str();
    match platform::group_exists(group) {
        Ok(true) => {}
        Ok(false) => {
            return check(
                Status::Warn,
                format!("managed group {group} does not exist (run `slicectl init`): while the database cannot be read, the module refuses every user but root"),
            )
        }
        Err(e) => return check(Status::Fail, e.to_string()),
    }
    let users = match Store::open_database(&ctx.db).and_then(|s| s.users()) {
        Ok(users) => users,
        Err(e) => return check(Status::Fail, format!("cannot read the users: {e}")),
    };
    let outside: Vec<&str> = users
        .iter()
        .filter(|u| u.pending.is_none())
        .map(|u| u.username.as_str())
        .filter(|name| {
            matches!(
                platform::is_group_member(name, group),
                Ok(Membership::NotMember)
            )
        })
        .collect();
    let mut notes = Vec::new();
    if group != DEFAULT_GROUP {
        notes.push(format!(
            "if the config cannot be read, the module looks at {DEFAULT_GROUP} instead"
        ));
    }
    if !outside.is_empty() {
        return check(
            Status::Warn,
            format!(
                "not in {group}, so not denied while the database is broken: {} (run `slicectl init`)",
                outside.join(", ")
            ),
        );
    }
    let status = if notes.is_empty() {
        Status::Ok
    } else {
        Status::Warn
    };
    notes.insert(
        0,
        format!("{group}: holds every user with a system account"),
    );
    check(status, notes.join("; "))
}

/// The backend: the SQLite file, or the PostgreSQL server and this node's cache.
fn database(ctx: &Context) -> Vec<Check> {
    match &ctx.db {
        Database::Sqlite(path) => vec![sqlite_database(path)],
        Database::Postgres(settings) => postgres_database(&ctx.db, settings, ctx.now),
    }
}

/// How old a time is, in words: "4 min ago".
fn age(then: libdiycloud::model::Timestamp, now: libdiycloud::model::Timestamp) -> String {
    let secs = now.0.saturating_sub(then.0).max(0);
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        7200..=172_799 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

// Timing the connect is part of the check's report.
#[allow(clippy::disallowed_methods)]
fn postgres_database(
    db: &Database,
    settings: &PostgresSettings,
    now: libdiycloud::model::Timestamp,
) -> Vec<Check> {
    let started = std::time::Instant::now();
    let opened = Store::open_database(db);
    let took = started.elapsed();
    let server = match &opened {
        Ok(store) => match store.as_cluster().and_then(|c| c.offline_reason()) {
            None => Check {
                name: "database",
                status: Status::Ok,
                detail: format!(
                    "postgresql {db}: reachable, connected in {} ms, schema current",
                    took.as_millis()
                ),
            },
            Some(why) => Check {
                name: "database",
                status: Status::Fail,
                detail: format!(
                    "postgresql {db}: unreachable after {} ms ({why}): logins use this node's cache, admin changes fail",
                    took.as_millis()
                ),
            },
        },
        Err(e) => Check {
            name: "database",
            status: Status::Fail,
            detail: format!("postgresql: {e}"),
        },
    };
    let cache_path = settings.cache.display();
    let cache = match opened.as_ref().ok().and_then(|s| s.as_cluster()) {
        None => Check {
            name: "cache",
            status: Status::Warn,
            detail: format!("{cache_path}: not checked (the database could not be opened)"),
        },
        Some(cluster) => match cluster.cache_state() {
            Err(e) => Check {
                name: "cache",
                status: Status::Fail,
                detail: format!("{cache_path}: cannot be used: {e} (logins fail while the server is unreachable)"),
            },
            Ok(state) => {
                let mut detail = format!("{cache_path}: {} users", state.users);
                let mut status = Status::Ok;
                match state.refreshed_at {
                    Some(at) => detail.push_str(&format!(", refreshed {}", age(at, now))),
                    None => {
                        status = Status::Warn;
                        detail.push_str(", never refreshed whole (enable diycloud-cache-refresh.timer: until then only users who logged in here can log in while the server is unreachable)");
                    }
                }
                if let Some(at) = state.copied_at {
                    detail.push_str(&format!(", a login last brought a changed record {}", age(at, now)));
                }
                if state.pending_events > 0 {
                    detail.push_str(&format!(
                        ", {} offline events to merge (the next login or `slicectl cache refresh` merges them)",
                        state.pending_events
                    ));
                }
                Check {
                    name: "cache",
                    status,
                    detail,
                }
            }
        },
    };
    vec![server, cache]
}

fn sqlite_database(db: &Path) -> Check {
    let check = |status, detail| Check {
        name: "database",
        status,
        detail,
    };
    let meta = match std::fs::metadata(db) {
        Ok(m) => m,
        Err(e) => {
            return check(
                Status::Fail,
                format!("{}: {e} (run `slicectl init`)", db.display()),
            )
        }
    };
    if let Err(e) = Store::open(db) {
        return check(Status::Fail, e.to_string());
    }
    let mode = meta.permissions().mode() & 0o777;
    let dir_mode = db
        .parent()
        .and_then(|d| std::fs::metadata(d).ok())
        .map(|m| m.permissions().mode() & 0o777);
    let mut problems = Vec::new();
    if mode & 0o077 != 0 {
        problems.push(format!(
            "file mode {mode:o} lets others read password hashes (want 600)"
        ));
    }
    if meta.uid() != 0 {
        problems.push(format!("owned by uid {} (want root)", meta.uid()));
    }
    if let Some(dir_mode) = dir_mode.filter(|m| m & 0o077 != 0) {
        problems.push(format!("directory mode {dir_mode:o} (want 700)"));
    }
    if problems.is_empty() {
        check(
            Status::Ok,
            format!(
                "{}: schema current, mode {mode:o}, owner root",
                db.display()
            ),
        )
    } else {
        check(
            Status::Warn,
            format!("{}: {}", db.display(), problems.join("; ")),
        )
    }
}

fn pam_module() -> Check {
    let dir = Family::detect().pam_module_dir(std::env::consts::ARCH);
    let path = dir.join("pam_diycloud.so");
    if path.exists() {
        Check {
            name: "module",
            status: Status::Ok,
            detail: format!("{} installed", path.display()),
        }
    } else {
        Check {
            name: "module",
            status: Status::Warn,
            detail: format!(
                "{} not found (packaging/install.sh installs it)",
                path.display()
            ),
        }
    }
}

/// The `session` modules of a PAM service, in order, following `@include`
/// and `include`/`substack` lines.
pub fn session_modules(pam_dir: &Path, service: &str, depth: u8) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(pam_dir.join(service)) else {
        return Vec::new();
    };
    let mut modules = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["@include", other, ..] if depth < 8 => {
                modules.extend(session_modules(pam_dir, other, depth + 1))
            }
            ["session" | "-session", control, rest @ ..] => {
                if matches!(*control, "include" | "substack") {
                    if let Some(other) = rest.first().filter(|_| depth < 8) {
                        modules.extend(session_modules(pam_dir, other, depth + 1));
                    }
                    continue;
                }
                // A bracketed control may contain spaces: the module follows the closing bracket.
                let module = if control.starts_with('[') {
                    line.split_once(']')
                        .and_then(|(_, after)| after.split_whitespace().next())
                } else {
                    rest.first().copied()
                };
                if let Some(module) = module {
                    let name = module.rsplit('/').next().unwrap_or(module);
                    modules.push(name.trim_end_matches(".so").to_owned());
                }
            }
            _ => {}
        }
    }
    modules
}

fn pam_stack(pam_dir: &Path, service: &'static str) -> Check {
    let check = |status, detail| Check {
        name: "pam",
        status,
        detail,
    };
    let modules = session_modules(pam_dir, service, 0);
    let ours = modules.iter().position(|m| m == "pam_diycloud");
    let systemd = modules.iter().position(|m| m == "pam_systemd");
    match (ours, systemd) {
        (None, _) => check(Status::Warn, format!("pam_diycloud is not in the session stack of {service}: limits are not applied at login (see docs/pam.md)")),
        (Some(o), Some(s)) if o > s => check(Status::Warn, format!("pam_diycloud comes after pam_systemd in {service}: the slice starts unsized and is resized live; put it before")),
        (Some(_), _) => check(Status::Ok, format!("pam_diycloud is in the session stack of {service}, before pam_systemd")),
    }
}

/// `doctor --enforcement --user NAME`: the kernel's enforcement of NAME's
/// allocation, proven by probes (see `crate::enforcement`).
pub fn enforcement(
    ctx: &Context,
    name: Option<&str>,
    probe_limit: Option<&str>,
) -> Result<(), Failure> {
    use crate::enforcement::{prove, ProbeBounds};
    use libdiycloud::model::limits::Size;
    let name = name.ok_or_else(|| Failure::Usage("--enforcement needs --user NAME".into()))?;
    let bounds = match probe_limit {
        None => ProbeBounds::default(),
        Some(text) => match text.parse::<Size>() {
            Ok(Size::Bytes(bytes)) if bytes >= 16 << 20 => ProbeBounds { bytes },
            _ => {
                return Err(Failure::Usage(format!(
                    "--probe-limit {text:?}: a size of at least 16M, like 512M or 2G"
                )))
            }
        },
    };
    let store = ctx.open_store()?;
    let user = store
        .user(name)
        .map_err(|e| Failure::Runtime(e.to_string()))?
        .ok_or_else(|| Failure::Runtime(format!("no such user: {name}")))?;
    drop(store);
    if !user.active {
        return Err(Failure::Runtime(format!(
            "{name} is disabled: the probes run as the user, in their slice"
        )));
    }
    let uid = libdiycloud::usecases::apply::uid_of(&ctx.ports, &user)
        .map_err(|e| Failure::Runtime(e.to_string()))?
        .ok_or_else(|| {
            Failure::Runtime(format!(
                "{name} has no system account: the probes run as the user, in their slice"
            ))
        })?;
    let gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.gid.as_raw())
        .ok_or_else(|| Failure::Runtime(format!("cannot read the account of uid {uid}")))?;
    let exe = std::env::current_exe()
        .map_err(|e| Failure::Runtime(format!("cannot find this program for the probes: {e}")))?;
    let proofs = prove(&ctx.ports, &ctx.config, &user, (uid, gid), &exe, bounds);
    let mut text = Vec::new();
    for p in &proofs {
        let mark = match p.proven {
            Some(true) => "proven    ",
            Some(false) => "NOT PROVEN",
            None => "-         ",
        };
        text.push(format!("{mark}  {:<7} {}", p.control, p.detail));
        if let Some(fix) = &p.fix {
            text.push(format!("{:<20}fix: {fix}", ""));
        }
    }
    view::print(ctx, &json!(proofs), &text.join("\n"));
    let unproven = proofs.iter().filter(|p| p.proven == Some(false)).count();
    if unproven > 0 {
        return Err(Failure::Reported(format!(
            "{unproven} control(s) of {name}'s allocation not proven"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_session_order_through_includes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("sshd"),
            "auth required pam_unix.so\n@include common-session\nsession optional pam_motd.so\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("common-session"),
            "# comment\nsession [default=1] pam_permit.so\nsession required /lib/x86_64-linux-gnu/security/pam_diycloud.so db=/x\nsession optional pam_systemd.so\n",
        )
        .unwrap();
        assert_eq!(
            session_modules(dir.path(), "sshd", 0),
            ["pam_permit", "pam_diycloud", "pam_systemd", "pam_motd"]
        );
        assert_eq!(pam_stack(dir.path(), "sshd").status, Status::Ok);

        std::fs::write(
            dir.path().join("common-session"),
            "session optional pam_systemd.so\nsession required pam_diycloud.so\n",
        )
        .unwrap();
        assert_eq!(pam_stack(dir.path(), "sshd").status, Status::Warn);
        std::fs::write(
            dir.path().join("common-session"),
            "session optional pam_systemd.so\n",
        )
        .unwrap();
        assert!(pam_stack(dir.path(), "sshd")
            .detail
            .contains("not in the session stack"));
    }
}
