//! The system tier's checks, run inside a test VM as root by the
//! `guest_checks` binary, against real systemd, a real kernel and real
//! OpenSSH. Shell (`tests/system/vm/guest-checks.sh`) only sets the guest up
//! (the module and slicectl installed, PAM wired, the quota disks made);
//! every check is here.
//!
//! Each check prints one line on the console, which the host
//! (`tests/system/vm/run.sh`) reads and counts:
//!   DIYCLOUD PASS name | DIYCLOUD FAIL name: expected ...; saw ...
//! with `INFO` and `BENCH` lines beside them and `DONE` at the end.
//! A check asserts an effect the kernel or systemd shows (a slice property,
//! EDQUOT, EPERM, an OOM kill), not a log line.

pub mod cmd;
pub mod enforce;
pub mod events;
pub mod gpu;
pub mod jupyterhub;
pub mod login;
pub mod packages;
pub mod portal;
pub mod profile;
pub mod pty;
pub mod quota;
pub mod share;

use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libdiycloud::adapters::cgroup::{self, Hierarchy};
use libdiycloud::model::events::SliceCounters;

pub use cmd::{last_line, oneline, Cmd, Out};

/// SSH options of every login here: no host keys kept, errors only, a
/// connect timeout long enough for an emulated guest, and the classic
/// X25519 key exchange (the post-quantum hybrids that OpenSSH 9 and 10
/// prefer do more work per login, not measured apart here, and these
/// checks are about PAM and the session, not the transport).
pub const SSH_OPTIONS: &[&str] = &[
    "-o",
    "KexAlgorithms=curve25519-sha256",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ConnectTimeout=60",
];

/// Where this build's slicectl is installed in the guest (packaging/
/// install.sh's place), for systemd-run, which wants a path.
pub const SLICECTL: &str = "/usr/local/sbin/slicectl";

/// The guest as the checks see it, and the report.
pub struct Guest {
    /// The staged files (the second disk, read-only).
    pub stage: PathBuf,
    pub hierarchy: Hierarchy,
    failures: Cell<u32>,
}

impl Guest {
    pub fn new(stage: &Path) -> Self {
        Guest {
            stage: stage.to_path_buf(),
            hierarchy: Hierarchy::detect().unwrap_or(Hierarchy::Unified),
            failures: Cell::new(0),
        }
    }

    pub fn v2(&self) -> bool {
        self.hierarchy == Hierarchy::Unified
    }

    /// A staged file's path.
    pub fn staged(&self, name: &str) -> String {
        self.stage.join(name).display().to_string()
    }

    /// Whether the host marked this boot with stage file `name`.
    pub fn marked(&self, name: &str) -> bool {
        self.stage.join(name).exists()
    }

    pub fn failures(&self) -> u32 {
        self.failures.get()
    }

    // ---------------------------------------------------------- the report

    pub fn say(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "DIYCLOUD {line}");
        let _ = out.flush();
    }

    pub fn info(&self, text: &str) {
        for line in text.lines() {
            self.say(&format!("INFO {line}"));
        }
    }

    pub fn pass(&self, name: &str) {
        self.say(&format!("PASS {name}"));
    }

    pub fn fail(&self, name: &str, expected: &str, saw: &str) {
        // One line on the console: the host reads line by line.
        let saw = saw.replace(['\n', '\r'], "|");
        self.say(&format!("FAIL {name}: expected {expected}; saw {saw}"));
        self.failures.set(self.failures.get() + 1);
    }

    /// PASS when `actual` is `expected`.
    pub fn check(&self, name: &str, expected: &str, actual: &str) {
        if expected == actual {
            self.pass(name);
        } else {
            self.fail(name, expected, actual);
        }
    }

    /// PASS when `ok`, else FAIL with the expectation and what was seen.
    pub fn check_that(&self, name: &str, ok: bool, expected: &str, saw: &str) {
        if ok {
            self.pass(name);
        } else {
            self.fail(name, expected, saw);
        }
    }

    /// PASS (with the value in the name, as the shell tier printed it) when
    /// `actual` is in `low..=high`.
    pub fn check_range(&self, name: &str, low: f64, high: f64, actual: Option<f64>) {
        match actual {
            Some(a) if a >= low && a <= high => self.pass(&format!("{name} ({a:.3})")),
            Some(a) => self.fail(
                name,
                &format!("between {low} and {high}"),
                &format!("{a:.3}"),
            ),
            None => self.fail(name, &format!("between {low} and {high}"), "no figure"),
        }
    }

    // ------------------------------------------------------- the real tools

    /// `slicectl ARGS...` (from PATH: the package's /usr/sbin/slicectl in
    /// the packages section, this build's after it), stdout and stderr
    /// together, stdin empty.
    pub fn slicectl(&self, args: &[&str]) -> Out {
        Cmd::new(&["slicectl"]).args(args).merged().run()
    }

    /// `slicectl ARGS...` (with --json): its stdout as JSON, `null` where
    /// it is not.
    pub fn slicectl_json(&self, args: &[&str]) -> serde_json::Value {
        json(&Cmd::new(&["slicectl"]).args(args).run().stdout)
    }

    /// `slicectl ARGS...` with `input` (a password) on stdin.
    pub fn slicectl_input(&self, args: &[&str], input: &str) -> Out {
        Cmd::new(&["slicectl"])
            .args(args)
            .input(&format!("{input}\n"))
            .merged()
            .run()
    }

    /// `systemctl show UNIT -P PROPERTY`.
    pub fn show(&self, unit: &str, property: &str) -> String {
        Cmd::new(&["systemctl", "show", unit, "-P", property])
            .run()
            .trimmed()
    }

    /// The command that logs `user` in over SSH with `password` and runs
    /// `command` there (sshpass answers the password prompt).
    pub fn ssh_cmd(user: &str, password: &str, command: &str) -> Cmd {
        Cmd::new(&["sshpass", "-p", password, "ssh"])
            .args(SSH_OPTIONS)
            .arg(&format!("{user}@127.0.0.1"))
            .arg(command)
            .timeout(180)
    }

    /// `command` over SSH as `user`, stdout and stderr together.
    pub fn ssh(&self, user: &str, password: &str, command: &str) -> Out {
        Self::ssh_cmd(user, password, command).merged().run()
    }

    /// `systemd-run --unit=UNIT slicectl --config CONFIG serve --listen ADDR`,
    /// then waits until it accepts connections (at most 60 s). Whether it did.
    pub fn serve(&self, unit: &str, config: &str, listen: &str) -> bool {
        Cmd::new(&[
            "systemd-run",
            "--quiet",
            &format!("--unit={unit}"),
            SLICECTL,
        ])
        .args(&["--config", config, "serve", "--listen", listen])
        .run();
        let port = listen.rsplit(':').next().unwrap_or("0");
        let addr = format!("127.0.0.1:{port}");
        wait_for(Duration::from_secs(60), Duration::from_millis(200), || {
            addr.parse()
                .ok()
                .and_then(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).ok())
                .is_some()
        })
    }

    /// Ends `user`'s sessions and waits until no process of theirs runs
    /// (at most 30 s); then kills what is left (a process whose SSH login
    /// ended is in no session logind would end), and waits 30 s more.
    pub fn no_processes_of(&self, user: &str) {
        Cmd::new(&["loginctl", "terminate-user", user]).run();
        let Some(uid) = uid_of(user) else {
            return;
        };
        let gone = || pids_of(uid, None).is_empty();
        if wait_for(Duration::from_secs(30), Duration::from_millis(200), gone) {
            return;
        }
        self.info(&format!(
            "left after terminate-user, killed: {}",
            processes_of(user)
        ));
        kill_pids(&pids_of(uid, None));
        wait_for(Duration::from_secs(30), Duration::from_millis(200), gone);
    }

    // ------------------------------------------------------ cgroup figures

    /// CPU time (ns) of user `uid`'s slice, from the library's reader.
    pub fn slice_cpu_ns(&self, uid: u32) -> Option<u64> {
        cgroup::slice_cpu_usage_at(Path::new("/sys/fs/cgroup"), self.hierarchy, uid)
            .ok()
            .flatten()
    }

    /// A file of user `uid`'s slice in `controller`'s tree (v2: the one tree).
    pub fn slice_file(&self, uid: u32, controller: &str, file: &str) -> PathBuf {
        cgroup::slice_path_at(Path::new("/sys/fs/cgroup"), self.hierarchy, uid, controller)
            .join(file)
    }

    /// The kernel's enforcement counters of user `uid`'s slice (OOM kills,
    /// reclaim above memory.high), from the library's reader.
    pub fn slice_counters(&self, uid: u32) -> Option<SliceCounters> {
        cgroup::slice_counters_at(Path::new("/sys/fs/cgroup"), self.hierarchy, uid)
            .ok()
            .flatten()
    }

    /// That file's whole text, or "" where it cannot be read.
    pub fn slice_value_all(&self, uid: u32, controller: &str, file: &str) -> String {
        std::fs::read_to_string(self.slice_file(uid, controller, file)).unwrap_or_default()
    }

    /// That file's first line, or "" where it cannot be read.
    pub fn slice_value(&self, uid: u32, controller: &str, file: &str) -> String {
        std::fs::read_to_string(self.slice_file(uid, controller, file))
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    }
}

/// Calls `ready` every `every` until it says yes or `within` has passed.
/// Whether it said yes.
pub fn wait_for(within: Duration, every: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// The uid of account `name` (getpwnam).
pub fn uid_of(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

/// The pids of `uid`'s processes (with command name `comm` only, if given),
/// read from /proc: no pgrep to start for each look.
pub fn pids_of(uid: u32, comm: Option<&str>) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            // Real, effective, saved or filesystem uid: userdel counts a
            // process with any of them as the user's.
            let owned = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .is_some_and(|l| l.split_whitespace().any(|u| u.parse() == Ok(uid)));
            let name = status.lines().find_map(|l| l.strip_prefix("Name:"));
            owned && comm.is_none_or(|c| name.map(str::trim) == Some(c))
        })
        .collect()
}

/// `user`'s processes as "pid:command line", for a fail message.
pub fn processes_of(user: &str) -> String {
    let Some(uid) = uid_of(user) else {
        return format!("no user {user}");
    };
    pids_of(uid, None)
        .iter()
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            format!("{pid}:{} ", cmdline.trim())
        })
        .collect()
}

/// Kills processes by pid (SIGKILL), as root.
pub fn kill_pids(pids: &[i32]) {
    for pid in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Writes `text` to `path` (a config file of the checks).
pub fn write(path: &str, text: &str) {
    if let Some(dir) = Path::new(path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(path, text) {
        println!("DIYCLOUD INFO cannot write {path}: {e}");
    }
}

/// Cores used between two readings: CPU ns over wall time.
pub fn cores(cpu0: Option<u64>, cpu1: Option<u64>, wall: Duration) -> Option<f64> {
    let used = cpu1?.checked_sub(cpu0?)?;
    Some(used as f64 / wall.as_nanos() as f64)
}

/// `text` as JSON (`null` where it is not).
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

/// Every value of `key` anywhere in `value`, in document order (keys sorted,
/// as slicectl prints them).
pub fn find_all<'a>(value: &'a serde_json::Value, key: &str) -> Vec<&'a serde_json::Value> {
    let mut found = Vec::new();
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == key {
                    found.push(v);
                }
                found.extend(find_all(v, key));
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                found.extend(find_all(v, key));
            }
        }
        _ => {}
    }
    found
}

/// The rest of each line of `slicectl doctor`'s report that says `status`
/// (`ok`, `warn`, `FAIL`, `proven`...) about `area`.
pub fn doctor_lines<'a>(report: &'a str, status: &str, area: &str) -> Vec<&'a str> {
    report
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(status)?;
            let rest = rest.strip_prefix(' ')?.trim_start();
            let rest = rest.strip_prefix(area)?;
            Some(rest.strip_prefix(' ')?.trim_start())
        })
        .collect()
}

/// A session of `user` held open over SSH (`sleep`), so that their slice
/// stays active; ended by [`Holder::release`] or when dropped.
pub struct Holder {
    uid: u32,
    login: Option<cmd::Background>,
}

impl Guest {
    /// Logs `user` in with a long `sleep` and waits (at most 120 s) until
    /// it runs.
    pub fn hold_session(&self, user: &str, password: &str) -> Holder {
        let uid = uid_of(user).unwrap_or(u32::MAX);
        let login = Self::ssh_cmd(user, password, "exec sleep 900")
            .timeout(900)
            .start();
        wait_for(Duration::from_secs(120), Duration::from_millis(200), || {
            !pids_of(uid, Some("sleep")).is_empty()
        });
        Holder {
            uid,
            login: Some(login),
        }
    }
}

impl Holder {
    pub fn release(mut self) {
        self.end();
    }

    fn end(&mut self) {
        kill_pids(&pids_of(self.uid, Some("sleep")));
        if let Some(login) = self.login.take() {
            let _ = login.stop();
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.end();
    }
}
