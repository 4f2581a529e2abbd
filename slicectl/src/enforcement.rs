//! `slicectl doctor --enforcement`: proof that the kernel enforces a
//! user's allocation, by trying to break it. Each probe is this program
//! again (`slicectl __probe ...`), run as the user in a throwaway scope of
//! their slice: memory past `MemoryMax` must be OOM-killed, CPU held to the
//! quota, forks past `TasksMax` refused, an ungranted GPU node refused
//! (EPERM), a write past the disk quota refused (EDQUOT). Nothing is left:
//! the scope goes with its process, the quota probe's directory is removed.

// Probes time and wait by nature (CPU over wall time, a process's end);
// this runs in `slicectl`, never inside sshd.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use libdiycloud::adapters::cgroup::{self, Hierarchy};
use libdiycloud::adapters::kmsg::KernelLog;
use libdiycloud::adapters::platform::SystemAccounts;
use libdiycloud::adapters::systemd::Systemd;
use libdiycloud::config::Config;
use libdiycloud::model::gpu::granted;
use libdiycloud::model::limits::{Allocation, Cpu, Size, Tasks};
use libdiycloud::model::slice::{user_slice, PropertyValue, SliceProperty};
use libdiycloud::model::user::User;
use libdiycloud::ports::{GpuPort, Ports, QuotaPort};
use libdiycloud::usecases::apply;

/// What one control came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proof {
    pub control: &'static str,
    /// `None`: nothing to prove (the allocation sets no such limit, or the
    /// node has nothing of the kind).
    pub proven: Option<bool>,
    pub detail: String,
    /// What to do where it is not proven.
    pub fix: Option<String>,
}

impl Proof {
    fn proven(control: &'static str, detail: String) -> Self {
        Self {
            control,
            proven: Some(true),
            detail,
            fix: None,
        }
    }

    fn not_proven(control: &'static str, detail: String, fix: &str) -> Self {
        Self {
            control,
            proven: Some(false),
            detail,
            fix: Some(fix.to_owned()),
        }
    }

    fn nothing(control: &'static str, detail: &str) -> Self {
        Self {
            control,
            proven: None,
            detail: detail.to_owned(),
            fix: None,
        }
    }
}

/// How much a probe may use of the node: memory allocated and bytes
/// written (default 1 GiB). A limit above it is proven at a child limit of
/// [`CHILD_MEMORY`] with the slice's own value read back from the kernel
/// (memory), or not at all (disk).
#[derive(Debug, Clone, Copy)]
pub struct ProbeBounds {
    pub bytes: u64,
}

impl Default for ProbeBounds {
    fn default() -> Self {
        Self { bytes: 1 << 30 }
    }
}

const CHILD_MEMORY: u64 = 64 << 20;
/// The most processes the tasks probe starts; a larger `TasksMax` is proven
/// at a child limit of [`CHILD_TASKS`] with the slice's value read back.
const MAX_FORKS: u64 = 512;
const CHILD_TASKS: u64 = 32;
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// How a probe ended, and what it printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRun {
    pub pid: u32,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
}

/// Runs every probe for `user` (uid `uid`, primary group `gid`) with the
/// program at `exe`, after applying their allocation as a login would.
pub fn prove<Q: QuotaPort, G: GpuPort>(
    ports: &Ports<Systemd, SystemAccounts, Q, G>,
    config: &Config,
    user: &User,
    (uid, gid): (u32, u32),
    exe: &Path,
    bounds: ProbeBounds,
) -> Vec<Proof> {
    // As a login would; where a step fails the probes go on, and show
    // what that leaves unenforced.
    let report = apply::apply(ports, config, user);
    let failed = report
        .error()
        .or_else(|| report.skipped().map(str::to_owned));
    let mut proofs: Vec<Proof> = failed
        .map(|error| {
            Proof::nothing(
                "apply",
                &format!(
                    "applying the allocation of {} failed: {error}",
                    user.username
                ),
            )
        })
        .into_iter()
        .collect();
    let hierarchy = Hierarchy::detect().unwrap_or(Hierarchy::Unified);
    let runner = Runner { exe, uid, gid };
    // A process that holds the slice up while the probes come and go: a
    // slice left empty is stopped, which would reset its counters and race
    // the next probe's start ("transaction is destructive").
    let holder = match runner.start(&[], &["hold".into()]) {
        Ok(holder) => holder,
        Err(why) => {
            proofs.push(Proof::not_proven("slice", why, PROBE_FIX));
            return proofs;
        }
    };
    let allocation = &user.allocation;
    proofs.extend([
        memory(&runner, hierarchy, uid, allocation, bounds),
        cpu(&runner, allocation.cpu),
        tasks(&runner, hierarchy, uid, allocation.tasks),
        gpus(&runner, ports, user),
    ]);
    proofs.extend(disk(&runner, ports, config, user, bounds));
    runner.finish(holder);
    proofs
}

// ------------------------------------------------------------------ probes

fn memory(
    runner: &Runner,
    hierarchy: Hierarchy,
    uid: u32,
    allocation: &Allocation,
    bounds: ProbeBounds,
) -> Proof {
    let Size::Bytes(limit) = allocation.memory else {
        return Proof::nothing("memory", "the allocation has no memory limit");
    };
    // Over a soft limit (cgroup v2) the kernel throttles the probe rather
    // than letting it reach MemoryMax: it is proven at a child limit under it.
    let soft = match allocation.memory_high {
        Size::Bytes(high) if hierarchy == Hierarchy::Unified && high < limit => Some(high),
        _ => None,
    };
    let root = Path::new("/sys/fs/cgroup");
    let kills = || {
        cgroup::slice_counters_at(root, hierarchy, uid)
            .ok()
            .flatten()
            .and_then(|c| c.oom_kill)
            .unwrap_or(0)
    };
    let child = match (limit <= bounds.bytes, soft) {
        (true, None) => None,
        (false, None) => Some(CHILD_MEMORY),
        // Half the soft limit, so that the slice stays under it.
        (_, Some(high)) => Some(CHILD_MEMORY.min(high / 2 / 4096 * 4096).max(4096)),
    };
    let wanted = child.map_or(limit + (64 << 20), |child| 2 * child);
    let before = kills();
    // cgroup v1 counts a kill only in the victim's own cgroup (the probe's
    // scope, gone with it): the kernel log names the scope on both.
    let mut log = KernelLog::open().ok();
    let props = child_limit("MemoryMax", child);
    let run = match runner.run(&props, &["memory".into(), wanted.to_string()]) {
        Ok(run) => run,
        Err(why) => return Proof::not_proven("memory", why, PROBE_FIX),
    };
    let scope = format!("diycloud-probe-{}.scope", run.pid);
    let logged = log
        .as_mut()
        .map(|log| log.read_new())
        .unwrap_or_default()
        .iter()
        .any(|record| record.contains("oom-kill:") && record.contains(&scope));
    let killed = run.signal == Some(9) && (kills() > before || logged);
    let fix = "check `systemctl show user-UID.slice -P MemoryMax` and that the kernel has the memory controller (cgroup_enable=memory)";
    match (killed, child) {
        (false, _) => Proof::not_proven(
            "memory",
            format!(
                "a probe allocating {} in the slice was not OOM-killed ({})",
                Size::Bytes(wanted),
                describe(&run)
            ),
            fix,
        ),
        (true, None) => Proof::proven(
            "memory",
            format!(
                "a probe allocating {} over the slice's {} was OOM-killed",
                Size::Bytes(wanted),
                Size::Bytes(limit)
            ),
        ),
        (true, Some(child)) => match cgroup::slice_limit_at(root, hierarchy, uid, "memory") {
            Some(kernel) if kernel == limit => Proof::proven(
                "memory",
                format!(
                    "the kernel holds the slice's {} ({}); a probe past a {} child limit in the slice was OOM-killed",
                    Size::Bytes(limit),
                    match soft {
                        Some(high) => format!(
                            "above its soft limit {}, where a probe is slowed down rather than killed",
                            Size::Bytes(high)
                        ),
                        None => "more than the probe may allocate".to_owned(),
                    },
                    Size::Bytes(child)
                ),
            ),
            other => Proof::not_proven(
                "memory",
                format!(
                    "the kernel holds {} for the slice, the allocation {}",
                    other.map_or("no limit".into(), |b| Size::Bytes(b).to_string()),
                    Size::Bytes(limit)
                ),
                "run `slicectl apply NAME`",
            ),
        },
    }
}

fn cpu(runner: &Runner, quota: Cpu) -> Proof {
    let Some(cores) = quota.cores() else {
        return Proof::nothing("cpu", "the allocation has no CPU quota");
    };
    let online = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    if cores >= online {
        return Proof::proven(
            "cpu",
            format!("the quota ({cores} cores) is at least this machine's {online} cores: nothing to hold"),
        );
    }
    let threads = (cores.ceil() as u64 + 1).min(online as u64).max(2);
    let run = match runner.run(&[], &["cpu".into(), "3".into(), threads.to_string()]) {
        Ok(run) => run,
        Err(why) => return Proof::not_proven("cpu", why, PROBE_FIX),
    };
    match parse_cpu(&run.stdout) {
        Some(used) => judge_cpu(cores, threads, used),
        None => Proof::not_proven(
            "cpu",
            format!("the CPU probe gave no figures ({})", describe(&run)),
            PROBE_FIX,
        ),
    }
}

/// A CPU probe's cores used, from its `cpu_usec N wall_usec M`.
fn parse_cpu(stdout: &str) -> Option<f64> {
    let mut words = stdout.split_whitespace();
    let mut cpu = None;
    let mut wall = None;
    while let Some(key) = words.next() {
        let value: u64 = words.next()?.parse().ok()?;
        match key {
            "cpu_usec" => cpu = Some(value),
            "wall_usec" => wall = Some(value),
            _ => {}
        }
    }
    let wall = wall.filter(|w| *w > 0)?;
    Some(cpu? as f64 / wall as f64)
}

/// Whether `used` cores by `threads` busy threads show a quota of `cores`
/// held (within 15%, as the VM tier measures it).
fn judge_cpu(cores: f64, threads: u64, used: f64) -> Proof {
    if used <= cores * 1.15 + 0.02 {
        Proof::proven(
            "cpu",
            format!("{threads} busy threads in the slice got {used:.2} cores against a quota of {cores}"),
        )
    } else {
        Proof::not_proven(
            "cpu",
            format!("{threads} busy threads in the slice got {used:.2} cores, over the quota of {cores}"),
            "check `systemctl show user-UID.slice -P CPUQuotaPerSecUSec` and that the kernel has CFS bandwidth control (CONFIG_CFS_BANDWIDTH)",
        )
    }
}

fn tasks(runner: &Runner, hierarchy: Hierarchy, uid: u32, limit: Tasks) -> Proof {
    let Tasks::Count(limit) = limit else {
        return Proof::nothing("tasks", "the allocation has no task limit");
    };
    let limit = u64::from(limit);
    let (child, tries) = match limit <= MAX_FORKS {
        true => (None, limit + 8),
        false => (Some(CHILD_TASKS), CHILD_TASKS + 8),
    };
    let props = child_limit("TasksMax", child);
    let run = match runner.run(&props, &["tasks".into(), tries.to_string()]) {
        Ok(run) => run,
        Err(why) => return Proof::not_proven("tasks", why, PROBE_FIX),
    };
    let started = run
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "started")
        .nth(1)
        .and_then(|n| n.parse::<u64>().ok());
    let bound = child.unwrap_or(limit);
    let fix = "check `systemctl show user-UID.slice -P TasksMax` and that the kernel has the pids controller";
    match started {
        Some(n) if n < bound => match child {
            None => Proof::proven(
                "tasks",
                format!("starting processes in the slice failed after {n} (TasksMax {limit}, counting what already runs)"),
            ),
            Some(child) => match cgroup::slice_limit_at(Path::new("/sys/fs/cgroup"), hierarchy, uid, "pids") {
                Some(kernel) if kernel == limit => Proof::proven(
                    "tasks",
                    format!("the kernel holds the slice's {limit} tasks; starting processes past a child limit of {child} failed after {n}"),
                ),
                other => Proof::not_proven(
                    "tasks",
                    format!("the kernel holds {} tasks for the slice, the allocation {limit}", other.map_or("no limit".into(), |n| n.to_string())),
                    "run `slicectl apply NAME`",
                ),
            },
        },
        Some(n) => Proof::not_proven(
            "tasks",
            format!("{n} processes started in the slice, past its {bound}"),
            fix,
        ),
        None => Proof::not_proven(
            "tasks",
            format!("the tasks probe gave no count ({})", describe(&run)),
            PROBE_FIX,
        ),
    }
}

fn gpus<Q, G: GpuPort>(
    runner: &Runner,
    ports: &Ports<Systemd, SystemAccounts, Q, G>,
    user: &User,
) -> Proof {
    let node = match ports.gpu.node() {
        Ok(node) => node,
        Err(e) => {
            return Proof::not_proven(
                "gpus",
                format!("cannot read the node's GPUs: {e}"),
                "see `slicectl doctor`",
            )
        }
    };
    let nodes: Vec<(PathBuf, bool)> = {
        let allowed = granted(&user.allocation.gpus, &node.gpus).unwrap_or_default();
        node.gpus
            .iter()
            .map(|g| {
                let path = PathBuf::from(format!("/dev/nvidia{}", g.minor));
                (path, allowed.iter().any(|a| a.minor == g.minor))
            })
            .filter(|(path, _)| path.exists())
            .collect()
    };
    if nodes.is_empty() {
        return Proof::nothing("gpus", "this node has no GPU device nodes");
    }
    let mut args = vec!["open".to_owned()];
    args.extend(nodes.iter().map(|(p, _)| p.display().to_string()));
    let run = match runner.run(&[], &args) {
        Ok(run) => run,
        Err(why) => return Proof::not_proven("gpus", why, PROBE_FIX),
    };
    judge_gpus(&nodes, &run.stdout)
}

/// The GPU probe's answers (`PATH ok` or `PATH errno N` per line) against
/// which nodes are granted: an ungranted one must give EPERM, a granted one
/// anything else.
fn judge_gpus(nodes: &[(PathBuf, bool)], stdout: &str) -> Proof {
    let mut wrong = Vec::new();
    let mut refused = 0;
    for (path, allowed) in nodes {
        let shown = path.display().to_string();
        let answer = stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{shown} ")))
            .unwrap_or("no answer");
        let eperm = answer == format!("errno {}", nix::libc::EPERM);
        match (allowed, eperm) {
            (false, true) => refused += 1,
            (true, false) => {}
            (false, false) => wrong.push(format!("{shown} (not granted) gave {answer}")),
            (true, true) => wrong.push(format!("{shown} (granted) was refused")),
        }
    }
    if wrong.is_empty() {
        Proof::proven(
            "gpus",
            format!("{refused} ungranted GPU node(s) refused with EPERM, {} granted one(s) opened past the device policy", nodes.len() - refused),
        )
    } else {
        Proof::not_proven(
            "gpus",
            wrong.join("; "),
            "check `systemctl show user-UID.slice -P DevicePolicy -P DeviceAllow`; systemd needs BPF device programs on cgroup v2 (CONFIG_BPF_SYSCALL, CONFIG_CGROUP_BPF)",
        )
    }
}

fn disk<Q: QuotaPort, G>(
    runner: &Runner,
    ports: &Ports<Systemd, SystemAccounts, Q, G>,
    config: &Config,
    user: &User,
    bounds: ProbeBounds,
) -> Vec<Proof> {
    if config.quota.filesystems.is_empty() {
        return vec![Proof::nothing(
            "disk",
            "no [quota] filesystems are configured",
        )];
    }
    if user.allocation.disk == Size::Infinity {
        return vec![Proof::nothing("disk", "the allocation has no disk limit")];
    }
    let fix = "see `slicectl doctor`: the filesystem must be mounted with usrquota (ext4: the quota feature; XFS: uquota) and quotas on";
    let usage = match apply::disk_usage(ports, config, user) {
        Ok(usage) => usage,
        Err(e) => {
            return vec![Proof::not_proven(
                "disk",
                format!("cannot read the disk quotas: {e}"),
                fix,
            )]
        }
    };
    usage
        .into_iter()
        .map(|d| {
            let fs = d.filesystem.display().to_string();
            let state = match d.quota {
                Ok(state) => state,
                Err(e) => return Proof::not_proven("disk", format!("{fs}: {e}"), fix),
            };
            let Some(hard) = state.limits.hard_bytes() else {
                return Proof::not_proven(
                    "disk",
                    format!("{fs}: the kernel holds no limit for the user"),
                    "run `slicectl apply NAME`",
                );
            };
            let left = hard.saturating_sub(state.used_bytes);
            if left > bounds.bytes {
                return Proof::not_proven(
                    "disk",
                    format!(
                        "{fs}: {} left under the limit, more than the probe may write ({})",
                        Size::Bytes(left),
                        Size::Bytes(bounds.bytes)
                    ),
                    "prove it with a test user whose --disk is small, or raise --probe-limit",
                );
            }
            probe_write(runner, &d.filesystem, left + (8 << 20))
        })
        .collect()
}

/// Writes `bytes` as the user in a directory of theirs on `filesystem`
/// (made for the probe, removed after) and expects EDQUOT before the end.
fn probe_write(runner: &Runner, filesystem: &Path, bytes: u64) -> Proof {
    let fs = filesystem.display().to_string();
    let dir = filesystem.join(format!(".diycloud-probe-{}", std::process::id()));
    let made = std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .and_then(|()| std::os::unix::fs::chown(&dir, Some(runner.uid), Some(runner.gid)));
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&dir);
        return Proof::not_proven(
            "disk",
            format!("{fs}: cannot make the probe's directory: {e}"),
            "check that root may write there",
        );
    }
    let file = dir.join("probe");
    let run = runner.run(
        &[],
        &[
            "write".into(),
            file.display().to_string(),
            bytes.to_string(),
        ],
    );
    let removed = std::fs::remove_dir_all(&dir);
    let run = match (run, removed) {
        (Ok(run), Ok(())) => run,
        (Err(why), _) => return Proof::not_proven("disk", format!("{fs}: {why}"), PROBE_FIX),
        (_, Err(e)) => {
            return Proof::not_proven(
                "disk",
                format!("{fs}: cannot remove {}: {e}", dir.display()),
                "remove it by hand",
            )
        }
    };
    let edquot = format!("errno {}", nix::libc::EDQUOT);
    if run.stdout.contains(&edquot) {
        Proof::proven(
            "disk",
            format!(
                "{fs}: a write past the quota failed with EDQUOT ({})",
                run.stdout.trim()
            ),
        )
    } else {
        Proof::not_proven(
            "disk",
            format!("{fs}: writing {} past the quota did not fail with EDQUOT ({})", Size::Bytes(bytes), run.stdout.trim()),
            "the filesystem counts usage but does not enforce it: turn enforcement on (quotaon; XFS: uquota, not uqnoenforce)",
        )
    }
}

/// The scope property `name` = `limit`, where the probe runs at a child
/// limit of its own.
fn child_limit(name: &'static str, limit: Option<u64>) -> Vec<SliceProperty> {
    limit
        .map(|value| SliceProperty {
            name,
            value: PropertyValue::U64(value),
        })
        .into_iter()
        .collect()
}

const PROBE_FIX: &str = "run it again; `journalctl -u 'diycloud-probe-*'` may say more";

fn describe(run: &ProbeRun) -> String {
    match (run.code, run.signal) {
        (_, Some(signal)) => format!("ended by signal {signal}"),
        (Some(code), None) => format!("exit status {code}: {}", run.stdout.trim()),
        (None, None) => "no status".into(),
    }
}

// ----------------------------------------------------------- the runner

/// Starts probes as one user in scopes of their slice.
struct Runner<'a> {
    exe: &'a Path,
    uid: u32,
    gid: u32,
}

impl Runner<'_> {
    /// Starts `slicectl __probe ARGS` as the user in a new scope of their
    /// slice with `properties`: started, moved into the scope, only then
    /// told to go (a line on its stdin, which stays open).
    fn start(&self, properties: &[SliceProperty], args: &[String]) -> Result<Child, String> {
        let mut child = Command::new(self.exe)
            .arg("__probe")
            .args(args)
            .uid(self.uid)
            .gid(self.gid)
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the probe: {e}"))?;
        let pid = child.id();
        let scope = format!("diycloud-probe-{pid}.scope");
        let placed = Systemd::system()
            .start_scope(&scope, &user_slice(self.uid), pid, properties)
            .map_err(|e| e.to_string())
            .and_then(|()| wait_in_scope(pid, &scope));
        let went = match placed {
            Ok(()) => child
                .stdin
                .as_mut()
                .map_or(Ok(()), |stdin| stdin.write_all(b"go\n"))
                .map_err(|e| format!("cannot tell the probe to go: {e}")),
            Err(why) => Err(format!("cannot run the probe in {scope}: {why}")),
        };
        if let Err(why) = went {
            let _ = child.kill();
            let _ = child.wait();
            return Err(why);
        }
        Ok(child)
    }

    /// Runs a probe ([`Runner::start`]) to its end, or kills it past
    /// [`PROBE_TIMEOUT`].
    fn run(&self, properties: &[SliceProperty], args: &[String]) -> Result<ProbeRun, String> {
        let mut child = self.start(properties, args)?;
        drop(child.stdin.take());
        self.finish_run(&mut child)
    }

    /// Ends the holder: its stdin closed, it exits.
    fn finish(&self, mut holder: Child) {
        drop(holder.stdin.take());
        let _ = self.finish_run(&mut holder);
    }

    fn finish_run(&self, child: &mut Child) -> Result<ProbeRun, String> {
        let pid = child.id();
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() < PROBE_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) | Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "the probe took more than {} s",
                        PROBE_TIMEOUT.as_secs()
                    ));
                }
            }
        };
        let mut stdout = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        Ok(ProbeRun {
            pid,
            code: status.code(),
            signal: status.signal(),
            stdout,
        })
    }
}

/// Waits until `pid` runs in `scope` (systemd moves it when the job runs).
fn wait_in_scope(pid: u32, scope: &str) -> Result<(), String> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        if cgroup.contains(scope) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err("systemd did not move the probe into its scope within 10 s".into())
}

// ------------------------------------------------------------- the probe

/// `slicectl __probe KIND ARGS`, as the user: waits for "go" on stdin,
/// then tries to break one limit and prints what happened. Returns the
/// exit status.
pub fn probe_main(args: &[String]) -> i32 {
    let mut go = String::new();
    let _ = std::io::stdin().read_line(&mut go);
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let number = |i: usize| arg(i).parse::<u64>().unwrap_or(0);
    let out = match arg(0) {
        // Holds the slice up until its stdin closes.
        "hold" => {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            return 0;
        }
        "memory" => probe_memory(number(1)),
        "cpu" => probe_cpu(number(1), number(2)),
        "tasks" => probe_tasks(number(1)),
        "open" => probe_open(&args[1..]),
        "write" => probe_write_file(Path::new(arg(1)), number(2)),
        other => {
            eprintln!("unknown probe {other:?}");
            return 2;
        }
    };
    println!("{out}");
    0
}

fn probe_memory(bytes: u64) -> String {
    let chunk = 8usize << 20;
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut total = 0u64;
    while total < bytes {
        // Ones, not zeros: every page is written, so it counts.
        held.push(vec![1u8; chunk]);
        total += chunk as u64;
    }
    format!("survived {total}")
}

fn probe_cpu(seconds: u64, threads: u64) -> String {
    let wall = Instant::now();
    let deadline = wall + Duration::from_secs(seconds.clamp(1, 30));
    let workers: Vec<_> = (0..threads.clamp(1, 256))
        .map(|_| {
            std::thread::spawn(move || {
                let mut x = 0u64;
                while Instant::now() < deadline {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let elapsed = wall.elapsed().as_micros();
    format!(
        "cpu_usec {} wall_usec {elapsed}",
        own_cpu_usec().unwrap_or(0)
    )
}

/// This process's CPU time, all threads, from /proc/self/stat (ticks of
/// 1/100 s, Linux's fixed USER_HZ).
fn own_cpu_usec() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the name, which ends at the last ')': state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000)
}

fn probe_tasks(tries: u64) -> String {
    let mut children = Vec::new();
    let mut error = String::from("none");
    for _ in 0..tries.min(4096) {
        match Command::new("/bin/sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
        {
            Ok(child) => children.push(child),
            Err(e) => {
                error = format!("errno {}", e.raw_os_error().unwrap_or(0));
                break;
            }
        }
    }
    let started = children.len();
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    format!("started {started} error {error}")
}

fn probe_open(paths: &[String]) -> String {
    paths
        .iter()
        .map(|path| {
            let opened = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(path);
            match opened {
                Ok(_) => format!("{path} ok"),
                Err(e) => format!("{path} errno {}", e.raw_os_error().unwrap_or(0)),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn probe_write_file(path: &Path, bytes: u64) -> String {
    let mut file = match std::fs::File::create(path) {
        Ok(file) => file,
        Err(e) => return format!("wrote 0 errno {}", e.raw_os_error().unwrap_or(0)),
    };
    let block = vec![7u8; 1 << 20];
    let mut written = 0u64;
    while written < bytes {
        if let Err(e) = file.write_all(&block) {
            return format!("wrote {written} errno {}", e.raw_os_error().unwrap_or(0));
        }
        written += block.len() as u64;
    }
    match file.sync_all() {
        Ok(()) => format!("wrote {written} errno 0"),
        Err(e) => format!("wrote {written} errno {}", e.raw_os_error().unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_figures_and_the_verdict() {
        assert_eq!(parse_cpu("cpu_usec 1500000 wall_usec 3000000\n"), Some(0.5));
        assert_eq!(parse_cpu("cpu_usec 5 wall_usec 0"), None);
        assert_eq!(parse_cpu("garbage"), None);
        assert_eq!(judge_cpu(0.5, 2, 0.52).proven, Some(true));
        assert_eq!(judge_cpu(0.5, 2, 1.9).proven, Some(false));
    }

    #[test]
    fn gpu_answers_against_the_grant() {
        let nodes = vec![
            (PathBuf::from("/dev/nvidia0"), true),
            (PathBuf::from("/dev/nvidia1"), false),
        ];
        let good = "/dev/nvidia0 errno 6\n/dev/nvidia1 errno 1";
        assert_eq!(judge_gpus(&nodes, good).proven, Some(true));
        // Device policy ignored (no BPF): the ungranted node opens.
        let open = "/dev/nvidia0 errno 6\n/dev/nvidia1 errno 6";
        let verdict = judge_gpus(&nodes, open);
        assert_eq!(verdict.proven, Some(false));
        assert!(
            verdict
                .detail
                .contains("/dev/nvidia1 (not granted) gave errno 6"),
            "{verdict:?}"
        );
        assert!(verdict.fix.unwrap().contains("BPF"));
        let refused = "/dev/nvidia0 errno 1\n/dev/nvidia1 errno 1";
        assert_eq!(judge_gpus(&nodes, refused).proven, Some(false));
        assert_eq!(judge_gpus(&nodes, "").proven, Some(false));
    }

    #[test]
    fn the_probes_themselves() {
        assert_eq!(probe_memory(16 << 20), format!("survived {}", 16 << 20));
        // The whole test process's CPU time counts (other tests' threads
        // too): only a floor holds here.
        let cpu = probe_cpu(1, 1);
        let used = parse_cpu(&cpu).unwrap();
        assert!(used > 0.3, "{cpu}");
        assert!(probe_tasks(2).starts_with("started 2 error none"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        assert_eq!(
            probe_write_file(&file, 2 << 20),
            format!("wrote {} errno 0", 2 << 20)
        );
        let missing = dir.path().join("no/such/file");
        assert_eq!(
            probe_write_file(&missing, 1),
            format!("wrote 0 errno {}", nix::libc::ENOENT)
        );
        let opened = probe_open(&[file.display().to_string(), missing.display().to_string()]);
        assert_eq!(
            opened,
            format!(
                "{} ok\n{} errno {}",
                file.display(),
                missing.display(),
                nix::libc::ENOENT
            )
        );
        assert!(own_cpu_usec().is_some());
    }
}
