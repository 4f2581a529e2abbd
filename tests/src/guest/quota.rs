//! Section 9: disk quotas on ext4 and XFS. The setup made filesystems on
//! the third and fourth disks; here they become /home (ext4 with the quota
//! feature, mounted with usrquota) and /srv/scratch (XFS with uquota), and
//! alice is made again with a 20M disk.
//! The distributions' own tools (repquota, xfs_quota, quota) read back what
//! we set; her writes over SSH meet EDQUOT.

use super::login::{module_timing, ALICE_PW};
use super::{doctor_lines, find_all, oneline, uid_of, write, Cmd, Guest};

const CONFIG: &str = "/etc/diycloud/diycloud.toml";
const BOTH: &str = "[quota]\nfilesystems = [\"/home\", \"/srv/scratch\"]\n";
const WITH_ROOT: &str = "[quota]\nfilesystems = [\"/home\", \"/srv/scratch\", \"/\"]\n";

/// The hard block limit (1K blocks) `repquota -v FILESYSTEM` shows for `name`.
fn repquota_hard(filesystem: &str, name: &str) -> String {
    field_of(
        &Cmd::new(&["repquota", "-v", filesystem]).run().stdout,
        name,
        4,
    )
}

/// The same from `xfs_quota -x -c 'report -u -N'`.
fn xfs_hard(filesystem: &str, name: &str) -> String {
    field_of(
        &Cmd::new(&["xfs_quota", "-x", "-c", "report -u -N", filesystem])
            .run()
            .stdout,
        name,
        3,
    )
}

/// Field `n` (from 0) of the line whose first field is `first`.
fn field_of(text: &str, first: &str, n: usize) -> String {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&first))
        .and_then(|f| f.get(n).map(|s| s.to_string()))
        .unwrap_or_default()
}

fn doctor_quota(doctor: &str) -> String {
    oneline(
        &doctor
            .lines()
            .filter(|l| l.contains("quota"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// `rc:output`, for checks on both.
fn rc_out(out: &super::Out) -> (i32, String) {
    (out.rc, out.stdout.clone())
}

pub fn run(g: &Guest) {
    g.no_processes_of("alice");
    let del = g.slicectl(&["user", "del", "alice", "--remove-home"]);
    if !del.ok() {
        g.info(&format!("user del alice: {}", oneline(&del.stdout)));
        g.info(&format!(
            "alice's processes: {}",
            super::processes_of("alice")
        ));
    }
    g.check(
        "alice (from the checks above) is deleted",
        "1",
        if uid_of("alice").is_some() { "0" } else { "1" },
    );
    // The disks the setup made: /home (over the root filesystem's, now
    // empty) and /srv/scratch.
    for (options, device, point) in [
        ("usrquota", "/dev/vdc", "/home"),
        ("uquota", "/dev/vdd", "/srv/scratch"),
    ] {
        let _ = std::fs::create_dir_all(point);
        let out = Cmd::new(&["mount", "-o", options, device, point])
            .merged()
            .run();
        if !out.ok() {
            g.fail(&format!("mount {point}"), "it mounts", &out.stdout);
        }
    }
    let _ = std::fs::set_permissions(
        "/srv/scratch",
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    g.info(&format!(
        "quota filesystems: {}",
        oneline(
            &mounts
                .lines()
                .filter(|l| l.contains(" /home ") || l.contains(" /srv/scratch "))
                .collect::<Vec<_>>()
                .join("\n")
        )
    ));
    write(CONFIG, BOTH);
    let doctor = g.slicectl(&["doctor"]).stdout;
    let ok = doctor_lines(&doctor, "ok", "quota");
    let enforced = |fs: &str| {
        ok.iter()
            .any(|r| r.starts_with(&format!("{fs}: user quotas counted and enforced")))
    };
    g.check_that(
        "doctor: both quota filesystems count and enforce user quotas",
        enforced("/home (ext4 on /dev/vdc)") && enforced("/srv/scratch (xfs on /dev/vdd)"),
        "ok for /home and /srv/scratch",
        &doctor_quota(&doctor),
    );

    // Added with --disk 20M: the limit is in the kernel on both, and enforced.
    let out = g.slicectl_input(
        &["user", "add", "alice", "--password-stdin", "--disk", "20M"],
        ALICE_PW,
    );
    g.check(
        "slicectl user add alice --disk 20M",
        "0",
        &out.rc.to_string(),
    );
    let uid = uid_of("alice").unwrap_or(u32::MAX);
    g.check(
        "repquota -v /home shows alice's 20M hard limit",
        "20480",
        &repquota_hard("/home", "alice"),
    );
    g.check(
        "xfs_quota report shows alice's 20M hard limit",
        "20480",
        &xfs_hard("/srv/scratch", "alice"),
    );
    for target in ["$HOME/fill", "/srv/scratch/alice-fill"] {
        let out = g
            .ssh(
                "alice",
                ALICE_PW,
                &format!("dd if=/dev/zero of={target} bs=1M count=30 2>&1; echo rc=$?"),
            )
            .stdout;
        let stopped = out
            .find("Disk quota exceeded")
            .is_some_and(|at| out[at..].contains("rc=1"));
        g.check_that(
            &format!("alice over SSH: writing 30M to {target} stops with 'Disk quota exceeded'"),
            stopped,
            "Disk quota exceeded, rc=1",
            &oneline(&out),
        );
    }
    let largest = ["/home/alice/fill", "/srv/scratch/alice-fill"]
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok().map(|m| m.len()))
        .max();
    match largest {
        Some(size) if size <= 20 << 20 => g.pass(&format!(
            "the kernel held both files to 20M (largest {size} bytes)"
        )),
        _ => g.fail(
            "files under the limit",
            &format!("at most {} bytes", 20 << 20),
            &format!("{largest:?}"),
        ),
    }

    // Raised at once, without a new login: her uid writes 15M more on each.
    let out = g.slicectl(&["user", "mod", "alice", "--disk", "40M"]);
    g.check(
        "slicectl user mod alice --disk 40M",
        "0",
        &out.rc.to_string(),
    );
    g.check(
        "repquota shows 40M after user mod",
        "40960",
        &repquota_hard("/home", "alice"),
    );
    g.check(
        "xfs_quota shows 40M after user mod",
        "40960",
        &xfs_hard("/srv/scratch", "alice"),
    );
    let out = Cmd::new(&["setpriv", "--reuid=alice", "--regid=alice", "--init-groups", "sh", "-c"])
        .arg("dd if=/dev/zero of=/home/alice/fill bs=1M count=15 oflag=append conv=notrunc 2>&1 && dd if=/dev/zero of=/srv/scratch/alice-fill bs=1M count=15 oflag=append conv=notrunc 2>&1; echo rc=$?")
        .merged()
        .run();
    g.check(
        "with no new login, alice writes 15M more on both under the raised limit",
        "rc=0",
        super::last_line(&out.stdout).trim(),
    );

    // Usage: used bytes as `quota -u` counts them (1K blocks, rounded up).
    nix::unistd::sync();
    let usage = g.slicectl_json(&["--json", "usage", "alice"]);
    let ours: String = find_all(&usage, "used_bytes")
        .iter()
        .filter_map(|v| v.as_u64())
        .map(|b| format!("{} ", b.div_ceil(1024)))
        .collect();
    let quota = Cmd::new(&["quota", "-v", "-w", "-u", "alice"]).run().stdout;
    let theirs: String = quota
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| matches!(f.first(), Some(&"/dev/vdc") | Some(&"/dev/vdd")))
        .filter_map(|f| f.get(1).map(|b| format!("{} ", b.trim_end_matches('*'))))
        .collect();
    g.check(
        "slicectl --json usage alice: used bytes match quota -u alice on both",
        &theirs,
        &ours,
    );
    let text = g.slicectl(&["usage", "alice"]).stdout;
    let lines: Vec<&str> = text.lines().collect();
    g.info(&format!(
        "usage: {}",
        oneline(&lines[lines.len().saturating_sub(3)..].join("\n"))
    ));

    // Lowered under what she uses: accepted with a warning; she can still delete.
    let (rc, out) = rc_out(&g.slicectl(&["user", "mod", "alice", "--disk", "10M"]));
    let warned = out
        .find("warning")
        .is_some_and(|at| out[at..].contains("over the new 10M limit"));
    g.check_that(
        "lowering under current use is accepted with a warning",
        rc == 0 && warned,
        "rc 0 and a warning",
        &format!("{rc}: {}", oneline(&out)),
    );
    g.check(
        "repquota shows 10M after lowering",
        "10240",
        &repquota_hard("/home", "alice"),
    );
    g.check(
        "over her quota, alice can still delete her files",
        "removed",
        &g.ssh(
            "alice",
            ALICE_PW,
            "rm -f ~/fill /srv/scratch/alice-fill && echo removed",
        )
        .last_line(),
    );

    accounting_only(g);
    no_quotas(g);
    bench(g);

    // user del takes her limits off: nothing left for her uid.
    write(CONFIG, BOTH);
    g.no_processes_of("alice");
    let out = g.slicectl(&["user", "del", "alice"]);
    g.check("slicectl user del alice", "0", &out.rc.to_string());
    let report = Cmd::new(&["repquota", "-v", "/home"]).run().stdout;
    let left = limits_left(&report, &[format!("#{uid}")], 3, 4);
    g.check(
        &format!("repquota -v /home: no limit left for uid {uid}"),
        "",
        &left,
    );
    let report = Cmd::new(&["xfs_quota", "-x", "-c", "report -u -N -n", "/srv/scratch"])
        .run()
        .stdout;
    let left = limits_left(&report, &[uid.to_string(), format!("#{uid}")], 2, 3);
    g.check(
        &format!("xfs_quota report: no limit left for uid {uid}"),
        "",
        &left,
    );
    let _ = std::fs::remove_file(CONFIG);
}

/// The lines of `report` for one of `names` with a non-zero field `soft` or
/// `hard` (from 0).
fn limits_left(report: &str, names: &[String], soft: usize, hard: usize) -> String {
    report
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first()
                .is_some_and(|n| names.iter().any(|name| name == n))
                && [soft, hard]
                    .iter()
                    .any(|i| f.get(*i).is_some_and(|v| *v != "0"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A filesystem that counts usage but enforces nothing is named as such.
fn accounting_only(g: &Guest) {
    if !Cmd::new(&["quotaoff", "-u", "/home"]).run().ok() {
        g.fail("quotaoff -u /home", "it turns enforcement off", "it failed");
        return;
    }
    let doctor = g.slicectl(&["doctor"]).stdout;
    g.check_that(
        "doctor: /home after quotaoff counts but does not enforce",
        doctor_lines(&doctor, "FAIL", "quota").iter().any(|r| {
            r.starts_with("/home (ext4) counts user quota usage but does not enforce limits")
        }),
        "FAIL quota /home ... does not enforce",
        &doctor_quota(&doctor),
    );
    let (rc, out) = rc_out(&g.slicectl(&["apply", "alice"]));
    g.check_that(
        "slicectl apply fails on the accounting-only filesystem, naming it",
        rc == 1 && out.contains("/home (ext4) counts user quota usage but does not enforce limits"),
        "rc 1 naming /home",
        &format!("{rc}: {}", oneline(&out)),
    );
    Cmd::new(&["quotaon", "-u", "/home"]).run();
}

/// A configured filesystem without quotas (the root ext4): named with the fix.
fn no_quotas(g: &Guest) {
    write(CONFIG, WITH_ROOT);
    let quinn_pw = "quinn pw 12345";
    let (rc, out) = rc_out(&g.slicectl_input(
        &["user", "add", "quinn", "--password-stdin", "--disk", "20M"],
        quinn_pw,
    ));
    let named = out
        .find("/ (ext4) is mounted without user quotas")
        .is_some_and(|at| out[at..].contains("tune2fs -O quota"));
    g.check_that(
        "user add names the filesystem without quotas and the fix",
        rc == 1 && named,
        "rc 1, naming / and tune2fs",
        &format!("{rc}: {}", oneline(&out)),
    );
    g.check(
        "quinn is created all the same",
        "0",
        &g.slicectl(&["user", "show", "quinn"]).rc.to_string(),
    );
    g.check(
        "and her quota on the other filesystems is set",
        "20480 20480",
        &format!(
            "{} {}",
            repquota_hard("/home", "quinn"),
            xfs_hard("/srv/scratch", "quinn")
        ),
    );
    let (rc, out) = rc_out(&g.slicectl(&["apply", "quinn"]));
    g.check_that(
        "slicectl apply names the filesystem without quotas",
        rc == 1 && out.contains("/ (ext4) is mounted without user quotas"),
        "rc 1 naming /",
        &format!("{rc}: {}", oneline(&out)),
    );
    let doctor = g.slicectl(&["doctor"]).stdout;
    g.check_that(
        "doctor: / has no user quotas, with the fix",
        doctor_lines(&doctor, "FAIL", "quota")
            .iter()
            .any(|r| r.starts_with("/ (ext4) is mounted without user quotas")),
        "FAIL quota / ...",
        &doctor_quota(&doctor),
    );
    let out = g.ssh("quinn", quinn_pw, "echo logged-in").stdout;
    g.check_that(
        "on_session_error = deny: quinn's login is refused",
        !out.contains("logged-in"),
        "refused",
        &out,
    );
    write(
        CONFIG,
        &format!("[session]\non_session_error = \"allow\"\n{WITH_ROOT}"),
    );
    g.check(
        "on_session_error = allow: quinn logs in",
        "logged-in",
        &g.ssh("quinn", quinn_pw, "echo logged-in").last_line(),
    );
    g.no_processes_of("quinn");
    g.slicectl(&["user", "del", "quinn", "--remove-home"]);
}

/// Benchmark: session open with quotas on two filesystems against without,
/// interleaved in one process (limits already set: a read per filesystem),
/// while alice is logged in (a slice that is not running is loaded by
/// systemd for each call, which costs ten times more and would hide the
/// quota step). Both read a config file of their own: they differ only in
/// [quota].
fn bench(g: &Guest) {
    let _ = std::fs::remove_file(CONFIG);
    let deny = "[session]\non_session_error = \"deny\"\n";
    write("/etc/diycloud/bench-plain.toml", deny);
    write("/etc/diycloud/bench-quota.toml", &format!("{deny}{BOTH}"));
    for (service, options) in [
        ("plain", "config=/etc/diycloud/bench-plain.toml"),
        ("quota", "config=/etc/diycloud/bench-quota.toml"),
        ("plain-debug", "debug config=/etc/diycloud/bench-plain.toml"),
        ("quota-debug", "debug config=/etc/diycloud/bench-quota.toml"),
    ] {
        write(
            &format!("/tmp/probe-pam.d/{service}"),
            &format!("session required pam_diycloud.so {options}\n"),
        );
    }
    // Her limits off first: the bench's first session open with quotas sets them.
    for fs in ["/home", "/srv/scratch"] {
        Cmd::new(&["setquota", "-u", "alice", "0", "0", "0", "0", fs]).run();
    }
    let holder = g.hold_session("alice", ALICE_PW);
    let compare = Cmd::new(&[&g.staged("session_compare"), "alice", "/tmp/probe-pam.d"])
        .args(&["plain", "quota", "100", "/home", "/srv/scratch"])
        .timeout(400)
        .run();
    g.check(
        "session opens with and without quotas all succeed",
        "0",
        &compare.rc.to_string(),
    );
    // Where the time goes, from the module's own debug timing.
    Cmd::new(&[&g.staged("session_compare"), "alice", "/tmp/probe-pam.d"])
        .args(&["plain-debug", "quota-debug", "4"])
        .timeout(120)
        .run();
    module_timing(g, 8);
    holder.release();
    for line in compare.stdout.lines() {
        if let Some(rest) = line.strip_prefix("compare:") {
            g.say(&format!("BENCH quota{rest}"));
        }
    }
    let ratio = compare.stdout.find("ratio=").and_then(|at| {
        let rest = &compare.stdout[at + "ratio=".len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        rest[..end].parse::<f64>().ok()
    });
    g.check_range(
        "session open with quotas on two filesystems costs at most 10% more",
        0.0,
        1.10,
        ratio,
    );
    g.check(
        "session open with quotas set alice's 10M on both again",
        "10240 10240",
        &format!(
            "{} {}",
            repquota_hard("/home", "alice"),
            xfs_hard("/srv/scratch", "alice")
        ),
    );
    let _ = std::fs::remove_file("/etc/diycloud/bench-plain.toml");
    let _ = std::fs::remove_file("/etc/diycloud/bench-quota.toml");
}
