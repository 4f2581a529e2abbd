//! Section 12: fair share: CPU weights, the IO weight, the soft memory
//! limit.

use std::time::Duration;

use super::events::{start_watcher, usage_event};
use super::login::{burning, cores_over};
use super::{find_all, kill_pids, oneline, pids_of, uid_of, wait_for, Cmd, Guest};

const PW: &str = "share pw 12345";

/// Starts cpu_burn with 2 threads as `user` over SSH, until stopped.
fn burn(g: &Guest, user: &str) -> super::cmd::Background {
    Guest::ssh_cmd(user, PW, &format!("{} 2 600", g.staged("cpu_burn")))
        .timeout(600)
        .start()
}

/// Two users without a CPU quota, weights 100 and 300, each with two busy
/// threads on this 2-vCPU guest: their slices' CPU time splits 1:3. Alone,
/// the weight-100 user gets the whole guest.
pub fn weights(g: &Guest) {
    g.slicectl_input(
        &[
            "user",
            "add",
            "share100",
            "--password-stdin",
            "--cpu",
            "infinity",
            "--memory",
            "1G",
        ],
        PW,
    );
    let heavy_add = g.slicectl_input(
        &[
            "user",
            "add",
            "share300",
            "--password-stdin",
            "--cpu",
            "infinity",
            "--memory",
            "1G",
            "--cpu-weight",
            "300",
            "--io-weight",
            "5000",
        ],
        PW,
    );
    g.check(
        "slicectl user add share300 --cpu-weight 300 --io-weight 5000",
        "0",
        &heavy_add.rc.to_string(),
    );
    let light = uid_of("share100").unwrap_or(u32::MAX);
    let heavy = uid_of("share300").unwrap_or(u32::MAX);
    let heavy_slice = format!("user-{heavy}.slice");

    let alone = burn(g, "share100");
    let pids = burning(&[light], 2);
    std::thread::sleep(Duration::from_secs(1));
    let used = cores_over(g, light, Duration::from_secs(4));
    kill_pids(&pids);
    let _ = alone.stop();
    g.check_range(
        "alone, weight 100 with no quota gets the whole guest (cores)",
        1.7,
        2.1,
        used,
    );

    // Both busy: measured once both burners run with all their threads, so
    // a slow login of one does not count against it.
    let logins = [burn(g, "share100"), burn(g, "share300")];
    let pids = burning(&[light, heavy], 2);
    std::thread::sleep(Duration::from_secs(1));
    let (l0, h0) = (g.slice_cpu_ns(light), g.slice_cpu_ns(heavy));
    std::thread::sleep(Duration::from_secs(8));
    let (l1, h1) = (g.slice_cpu_ns(light), g.slice_cpu_ns(heavy));
    kill_pids(&pids);
    for login in logins {
        let _ = login.stop();
    }
    let used = |a: Option<u64>, b: Option<u64>| b.zip(a).map(|(b, a)| b.saturating_sub(a));
    let (l, h) = (used(l0, l1), used(h0, h1));
    g.info(&format!(
        "fair share: weight 100 used {} ms, weight 300 {} ms of CPU in 8 s",
        l.unwrap_or(0) / 1_000_000,
        h.unwrap_or(0) / 1_000_000
    ));
    g.check_range(
        "both busy, weights 300 and 100 split the CPU 3:1 (within 15%)",
        2.55,
        3.45,
        l.zip(h)
            .filter(|(l, _)| *l > 0)
            .map(|(l, h)| h as f64 / l as f64),
    );
    if g.v2() {
        g.check(
            "CPUWeight of the weight-300 slice",
            "300",
            &g.show(&heavy_slice, "CPUWeight"),
        );
        g.check(
            "... in the kernel's cpu.weight",
            "300",
            &g.slice_value(heavy, "cpu", "cpu.weight"),
        );
        g.check(
            "IOWeight reaches the slice",
            "5000",
            &g.show(&heavy_slice, "IOWeight"),
        );
        // io.weight is there where the kernel has the io.cost controller;
        // its default only counts on a disk with io.cost (or BFQ) enabled.
        if g.slice_file(heavy, "io", "io.weight").exists() {
            g.check(
                "... and the kernel's io.weight",
                "default 5000",
                &g.slice_value(heavy, "io", "io.weight"),
            );
        }
        let mut schedulers: Vec<String> = std::fs::read_dir("/sys/block")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|d| std::fs::read_to_string(d.path().join("queue/scheduler")).ok())
            .map(|s| s.trim().to_string())
            .collect();
        schedulers.sort();
        schedulers.dedup();
        g.info(&format!(
            "the guest's disk schedulers: {}",
            oneline(&schedulers.join("\n"))
        ));
    } else {
        g.check(
            "CPUShares of the weight-300 slice (300 x 1024 / 100)",
            "3072",
            &g.show(&heavy_slice, "CPUShares"),
        );
        g.check(
            "... in the kernel's cpu.shares",
            "3072",
            &g.slice_value(heavy, "cpu", "cpu.shares"),
        );
        g.check(
            "BlockIOWeight reaches the slice, clamped to v1's 1000",
            "1000",
            &g.show(&heavy_slice, "BlockIOWeight"),
        );
        let note = "io-weight 5000 is BlockIOWeight=1000 on cgroup v1";
        g.check_that(
            "user add says the IO weight was clamped",
            heavy_add.stdout.contains(note),
            note,
            &oneline(&heavy_add.stdout),
        );
    }
    let out = g.slicectl(&["user", "mod", "share100", "--cpu-weight", "0"]);
    g.check("--cpu-weight 0 is a usage error", "2", &out.rc.to_string());
    g.check_that(
        "... naming the rule",
        out.stdout.contains("from 1 to 10000"),
        "from 1 to 10000",
        &out.stdout,
    );
    let out = g.slicectl(&["user", "mod", "share100", "--memory-high", "2G"]);
    g.check(
        "--memory-high above --memory is a usage error",
        "2",
        &out.rc.to_string(),
    );
    g.check_that(
        "... naming the rule",
        out.stdout.contains("must not exceed memory"),
        "must not exceed memory",
        &out.stdout,
    );
    for user in ["share100", "share300"] {
        g.no_processes_of(user);
        g.slicectl(&["user", "del", user, "--remove-home"]);
    }
}

/// The soft memory limit: 200M held under MemoryHigh=128M (MemoryMax
/// 512M). cgroup v2 reclaims and throttles above memory.high (this guest
/// has no swap, so it stalls the allocation) and never kills; the watcher
/// records the reclaim as a limit event. cgroup v1 has no memory.high:
/// systemd keeps the property and applies nothing, so the holder gets its
/// 200M at once.
pub fn soft_memory(g: &Guest) {
    let pw = "soft pw 12345";
    let add = g.slicectl_input(
        &[
            "user",
            "add",
            "softmem",
            "--password-stdin",
            "--memory",
            "512M",
            "--memory-high",
            "128M",
        ],
        pw,
    );
    g.check(
        "slicectl user add softmem --memory 512M --memory-high 128M",
        "0",
        &add.rc.to_string(),
    );
    let uid = uid_of("softmem").unwrap_or(u32::MAX);
    let slice = format!("user-{uid}.slice");
    start_watcher(g, "diycloud-events-soft");
    let _ = std::fs::remove_file("/tmp/softmem.out");
    let holder = Guest::ssh_cmd(
        "softmem",
        pw,
        "perl -e '$| = 1; my @held; for (1 .. 200) { push @held, \"a\" x (1 << 20) } print \"held 200M\\n\"; sleep 60' > /tmp/softmem.out 2>&1; echo \"rc=$?\" >> /tmp/softmem.out",
    )
    .timeout(300)
    .start();
    let held = || {
        std::fs::read_to_string("/tmp/softmem.out")
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    };
    // memory.events' high and oom_kill, through the library's reader.
    let counters = |g: &Guest| g.slice_counters(uid).unwrap_or_default();
    // The holder's allocation under way: on v2 past memory.high and
    // throttled there, on v1 done.
    wait_for(Duration::from_secs(90), Duration::from_millis(500), || {
        let running = !pids_of(uid, Some("perl")).is_empty();
        if g.v2() {
            let current: u64 = g
                .slice_value(uid, "memory", "memory.current")
                .parse()
                .unwrap_or(0);
            running && current > 128 << 20 && counters(g).high.unwrap_or(0) > 0
        } else {
            held() == "held 200M"
        }
    });
    // A few seconds more under the limit: a kill would come now.
    std::thread::sleep(Duration::from_secs(3));
    g.check(
        "MemoryHigh is on the slice",
        "134217728",
        &g.show(&slice, "MemoryHigh"),
    );
    g.check(
        "the holder is still running, not killed",
        "1",
        &pids_of(uid, Some("perl")).len().to_string(),
    );
    if g.v2() {
        g.check(
            "the kernel's memory.high",
            "134217728",
            &g.slice_value(uid, "memory", "memory.high"),
        );
        let current = g.slice_value(uid, "memory", "memory.current");
        let found = counters(g);
        g.info(&format!(
            "softmem: memory.current={current}, {}",
            g.slice_value_all(uid, "memory", "memory.events")
                .replace('\n', " ")
        ));
        let over = current.parse::<u64>().unwrap_or(0);
        g.check_that(
            "the slice holds more than memory.high (a soft limit)",
            over > 134_217_728,
            "memory.current > 134217728",
            &current,
        );
        match found.high {
            Some(n) if n > 0 => g.pass(&format!("memory.events counts high throttling ({n})")),
            n => g.fail("memory.events high", "> 0", &format!("{n:?}")),
        }
        g.check(
            "memory.events counts no oom_kill",
            "0",
            &found.oom_kill.map_or(String::new(), |n| n.to_string()),
        );
        let event = usage_event(g, "softmem", "memory_high").unwrap_or_default();
        g.info(&format!("soft limit event: {event}"));
        g.check_that(
            "the watcher records the reclaim above 128M as a limit event",
            event["limit"].as_str() == Some("128M"),
            "\"kind\":\"memory_high\" ... \"limit\":\"128M\"",
            &event.to_string(),
        );
    } else {
        g.check(
            "v1: memory.limit_in_bytes is MemoryMax only",
            "536870912",
            &g.slice_value(uid, "memory", "memory.limit_in_bytes"),
        );
        g.check(
            "v1: the holder got its 200M without throttling",
            "held 200M",
            &held(),
        );
        let note = "memory-high 128M has no effect on cgroup v1";
        g.check_that(
            "user add says memory-high does nothing on v1",
            add.stdout.contains(note),
            note,
            &oneline(&add.stdout),
        );
    }
    let usage = g.slicectl_json(&["--json", "usage", "softmem"]);
    let high = find_all(&usage, "memory_high")
        .first()
        .map_or(String::new(), |v| format!("\"memory_high\":{v}"));
    g.check(
        "slicectl usage shows the slice's memory_high",
        "\"memory_high\":134217728",
        &high,
    );
    Cmd::new(&["systemctl", "stop", "diycloud-events-soft"]).run();
    g.no_processes_of("softmem");
    let _ = holder.wait();
    let out = std::fs::read_to_string("/tmp/softmem.out").unwrap_or_default();
    g.check_that(
        "the soft limit never killed the holder",
        !out.contains("rc=137"),
        "ended by the logout",
        &oneline(&out),
    );
    g.slicectl(&["user", "del", "softmem", "--remove-home"]);
}
