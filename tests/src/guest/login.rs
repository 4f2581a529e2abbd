//! Sections 2, 3, 5 and 6: what the install wired, a real SSH login into a
//! sized slice, the kernel enforcing the CPU quota and TasksMax in it, live
//! changes, usage, and a session open that leaves nothing behind.

use std::time::{Duration, Instant};

use super::{cores, doctor_lines, find_all, kill_pids, pids_of, uid_of, wait_for, Cmd, Guest};

/// alice, the user of sections 3 to 8.
pub const ALICE_PW: &str = "alice pw 12345";

const MODULE_DIR: &str = "/lib/x86_64-linux-gnu/security";

/// `stat -fc %T /sys/fs/cgroup`, as the check names say it.
fn cgroup_fs(g: &Guest) -> &'static str {
    if g.v2() {
        "cgroup2fs"
    } else {
        "tmpfs"
    }
}

/// Section 2: this build installed and PAM wired for sshd (setup:
/// guest-install.sh, after the packages section, which needs the guest
/// clean), then doctor on it: pam_diycloud before pam_systemd.
pub fn installed(g: &Guest) {
    let out = Cmd::new(&[&g.staged("guest-install.sh")]).merged().run();
    if !out.ok() {
        g.fail(
            "the install of this build",
            "guest-install.sh exits 0",
            &format!("{}: {}", out.rc, out.stdout),
        );
    }
    let session = std::fs::read_to_string("/etc/pam.d/common-session").unwrap_or_default();
    if !session.contains("pam_diycloud") {
        g.fail("pam stack", "pam_diycloud in common-session", &session);
    }
    let doctor = g.slicectl(&["doctor"]).stdout;
    g.check_that(
        "doctor sees pam_diycloud before pam_systemd",
        doctor
            .lines()
            .any(|l| l.starts_with("ok    pam") && l.contains("before pam_systemd")),
        "pam ok",
        &doctor,
    );
    g.check_that(
        "doctor reaches systemd",
        doctor.lines().any(|l| l.starts_with("ok    systemd")),
        "ok",
        &doctor,
    );
    // Debian 12 and 13 boot on cgroup v2, so the v1 boot is a warning.
    let want = if g.v2() { "ok" } else { "warn" };
    let platform = doctor_lines(&doctor, want, "platform");
    let tail = format!("pam-auth-update --enable diycloud, modules in {MODULE_DIR}");
    g.check_that(
        &format!(
            "doctor names the distribution, its PAM tool and module directory ({want} on {})",
            cgroup_fs(g)
        ),
        platform.iter().any(|rest| {
            (rest.starts_with("Debian GNU/Linux 12 ") || rest.starts_with("Debian GNU/Linux 13 "))
                && rest.contains(&tail)
        }),
        &format!("{want} platform Debian ..."),
        &doctor
            .lines()
            .filter(|l| l.contains("platform"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    // The home mode doctor reports is the one useradd really gives.
    Cmd::new(&["useradd", "--create-home", "modeprobe"]).run();
    let mode = Cmd::new(&["stat", "-c", "%a", "/home/modeprobe"])
        .run()
        .trimmed();
    Cmd::new(&["userdel", "--remove", "modeprobe"]).run();
    let reported = doctor_lines(&doctor, "ok", "accounts")
        .into_iter()
        .chain(doctor_lines(&doctor, "warn", "accounts"))
        .find_map(|rest| rest.strip_prefix("useradd gives new homes mode "))
        .map(|m| {
            m.trim_start_matches('0')
                .chars()
                .take_while(|c| ('0'..='7').contains(c))
                .collect::<String>()
        })
        .unwrap_or_default();
    g.check(
        &format!("doctor's home mode is what useradd gives ({mode})"),
        &mode,
        &reported,
    );
}

/// Section 3: alice (0.5 core, 256M, 64 tasks) logs in over SSH into her
/// slice, which has her limits.
pub fn login(g: &Guest) {
    g.slicectl_input(
        &[
            "user",
            "add",
            "alice",
            "--password-stdin",
            "--cpu",
            "0.5",
            "--memory",
            "256M",
            "--tasks",
            "64",
        ],
        ALICE_PW,
    );
    let slice = alice_slice();
    let cg = g.ssh("alice", ALICE_PW, "cat /proc/self/cgroup").stdout;
    if cg.contains(&slice) {
        g.pass(&format!("login shell is inside {slice}"));
    } else {
        g.fail("login cgroup", &slice, &cg);
    }
    g.check(
        "CPUQuotaPerSecUSec",
        "500ms",
        &g.show(&slice, "CPUQuotaPerSecUSec"),
    );
    g.check("MemoryMax", "268435456", &g.show(&slice, "MemoryMax"));
    g.check("TasksMax", "64", &g.show(&slice, "TasksMax"));
}

pub fn alice_slice() -> String {
    format!("user-{}.slice", uid_of("alice").unwrap_or(u32::MAX))
}

/// Waits (at most 120 s: an SSH login takes seconds under TCG, more on a
/// busy host) until each of `uids` runs cpu_burn with all its threads busy,
/// then returns the burners' pids.
pub fn burning(uids: &[u32], threads: usize) -> Vec<i32> {
    let mut pids = Vec::new();
    for uid in uids {
        let mut found = Vec::new();
        wait_for(Duration::from_secs(120), Duration::from_millis(200), || {
            found = pids_of(*uid, Some("cpu_burn"));
            found.iter().any(|pid| {
                std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |t| t.count()) > threads
            })
        });
        pids.extend(found);
    }
    pids
}

/// CPU cores `uid`'s slice uses over `window`, measured while its burner
/// runs.
pub fn cores_over(g: &Guest, uid: u32, window: Duration) -> Option<f64> {
    let (u0, t0) = (g.slice_cpu_ns(uid), Instant::now());
    std::thread::sleep(window);
    let (u1, t1) = (g.slice_cpu_ns(uid), Instant::now());
    cores(u0, u1, t1 - t0)
}

/// Section 5: the kernel enforces the CPU quota and TasksMax inside her
/// session.
pub fn enforced(g: &Guest) {
    let uid = uid_of("alice").unwrap_or(u32::MAX);
    // A burner that runs until stopped: the window starts once its two
    // threads run, whatever the login took.
    let burner = Guest::ssh_cmd(
        "alice",
        ALICE_PW,
        &format!("{} 2 600", g.staged("cpu_burn")),
    )
    .timeout(600)
    .start();
    let pids = burning(&[uid], 2);
    // A second for the quota's periods to settle, then 8 s measured.
    std::thread::sleep(Duration::from_secs(1));
    let used = cores_over(g, uid, Duration::from_secs(8));
    kill_pids(&pids);
    let _ = burner.stop();
    g.check_range(
        "a 2-thread CPU burner under a 0.5-core quota gets 0.5 core",
        0.425,
        0.575,
        used,
    );

    let forks = g
        .ssh(
            "alice",
            ALICE_PW,
            "perl -e 'my @kids; for (1..100) { my $p = fork(); last unless defined $p; if (!$p) { sleep 30; exit 0 } push @kids, $p } print scalar(@kids), \"\\n\"; kill 9, @kids'",
        )
        .trimmed();
    match forks.parse::<u32>() {
        Ok(n) if n > 0 && n < 64 => g.pass(&format!(
            "forking past TasksMax=64 fails (got {n} children)"
        )),
        _ => g.fail("TasksMax enforcement", "fewer than 64 children", &forks),
    }
}

/// Section 6: live changes while she is logged in, usage, and a session
/// open (the module in-process through libpam) that leaves the same
/// threads and children; its benchmark.
pub fn live(g: &Guest) {
    let slice = alice_slice();
    let holder = g.hold_session("alice", ALICE_PW);
    g.slicectl(&["user", "mod", "alice", "--memory", "512M"]);
    g.slicectl(&["apply", "alice"]);
    g.check(
        "slicectl apply changes the live slice",
        "536870912",
        &g.show(&slice, "MemoryMax"),
    );
    g.check(
        "the slice is active while logged in",
        "active",
        &g.show(&slice, "ActiveState"),
    );
    let usage = g.slicectl_json(&["usage", "alice", "--json"]);
    let nonzero = ["cpu_usage_nsec", "memory_current", "tasks_current"]
        .iter()
        .filter(|key| {
            find_all(&usage, key)
                .iter()
                .any(|v| v.as_u64().is_some_and(|n| n > 0))
        })
        .count();
    g.check(
        "slicectl usage shows non-zero CPU time, memory and tasks",
        "3",
        &nonzero.to_string(),
    );

    super::write(
        "/tmp/probe-pam.d/probe",
        "session required pam_diycloud.so\n",
    );
    super::write(
        "/tmp/probe-pam.d/probe-debug",
        "session required pam_diycloud.so debug\n",
    );
    // The same properties the module sends for alice (now 0.5 core, 512M,
    // 64 tasks, the default weights, no soft memory limit).
    let weights: &[&str] = if g.v2() {
        &["CPUWeight=100", "IOWeight=100"]
    } else {
        &["CPUShares=1024", "BlockIOWeight=100"]
    };
    let probe = Cmd::new(&[
        &g.staged("session_probe"),
        "alice",
        "/tmp/probe-pam.d",
        "probe",
    ])
    .args(&["40", &slice])
    .args(&[
        "CPUAccounting=yes",
        "MemoryAccounting=yes",
        "TasksAccounting=yes",
        "CPUQuota=50%",
        "MemoryMax=512M",
        "MemoryHigh=infinity",
        "TasksMax=64",
    ])
    .args(weights)
    .merged()
    .timeout(300)
    .run();
    g.info(&probe.stdout);
    g.check(
        "pam_open_session leaves the same threads and children, and maps no NVML",
        "0",
        &probe.rc.to_string(),
    );
    for line in probe.stdout.lines() {
        for kind in ["bench", "floor"] {
            if let Some(rest) = line.strip_prefix(&format!("probe: {kind}")) {
                g.say(&format!("BENCH {kind}{rest}"));
            }
        }
    }
    // Where a session open's time goes, from the module's own debug timing.
    Cmd::new(&[
        &g.staged("session_probe"),
        "alice",
        "/tmp/probe-pam.d",
        "probe-debug",
    ])
    .args(&["3", &slice, "CPUQuota=50%"])
    .timeout(120)
    .run();
    module_timing(g, 3);
    holder.release();
}

/// The module's last `n` "session open took" lines (its debug timing).
pub fn module_timing(g: &Guest, n: usize) {
    let journal = Cmd::new(&["journalctl", "-q", "--no-pager", "-g", "session open took"])
        .run()
        .stdout;
    let lines: Vec<&str> = journal.lines().collect();
    for line in &lines[lines.len().saturating_sub(n)..] {
        if let Some(at) = line.find("pam_diycloud") {
            g.info(&line[at..]);
        }
    }
}
