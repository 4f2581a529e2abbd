//! Section 7: the web portal and the usage history, driven from the host;
//! section 8: systemd's bus unreachable.

use std::time::Duration;

use super::login::ALICE_PW;
use super::{kill_pids, pids_of, uid_of, wait_for, write, Cmd, Guest};

/// Only in the boot run.sh marks (stage file portal-browser; the setup
/// brought the forwarded NIC up): the guest serves on 8480, says
/// PORTAL-READY, and the host runs its browser, history and /metrics
/// checks (tests/system/portal/host-checks.sh) against it, ending them by
/// creating the user portal-done.
pub fn portal(g: &Guest) {
    // One sample a second, kept 40 s: the host sees history grow and go.
    write(
        "/root/portal.toml",
        "[history]\ninterval = \"1s\"\nkeep = \"40s\"\n",
    );
    g.slicectl_input(
        &[
            "user",
            "add",
            "boss",
            "--role",
            "admin",
            "--password-stdin",
            "--no-system-account",
        ],
        "boss portal pw 1",
    );
    // Started before the server answers; the host waits for PORTAL-READY.
    let answering = g.serve("diycloud-portal", "/root/portal.toml", "0.0.0.0:8480");
    // alice keeps her slice busy meanwhile: CPU time to chart.
    let burner = Guest::ssh_cmd(
        "alice",
        ALICE_PW,
        &format!("{} 1 240", g.staged("cpu_burn")),
    )
    .timeout(300)
    .start();
    if !answering {
        g.info("portal: the server does not answer on 8480 after 60 s");
    }
    g.say("PORTAL-READY");
    let done = || g.slicectl(&["user", "show", "portal-done"]).ok();
    wait_for(Duration::from_secs(300), Duration::from_secs(1), done);
    g.check(
        "the host's portal checks came to an end",
        "yes",
        if done() { "yes" } else { "no" },
    );
    g.check(
        "the server ran all along",
        "active",
        &Cmd::new(&["systemctl", "is-active", "diycloud-portal"])
            .run()
            .trimmed(),
    );
    let journal = Cmd::new(&["journalctl", "-q", "--no-pager", "-u", "diycloud-portal"])
        .run()
        .stdout;
    let lines: Vec<&str> = journal.lines().collect();
    for line in &lines[lines.len().saturating_sub(5)..] {
        g.info(&format!("portal server: {line}"));
    }
    // Her burner by pid: once its SSH login is gone, logind no longer counts
    // it in a session, and terminate-user would leave it running.
    if let Some(uid) = uid_of("alice") {
        kill_pids(&pids_of(uid, Some("cpu_burn")));
    }
    drop(burner);
    Cmd::new(&["systemctl", "stop", "diycloud-portal"]).run();
    for name in ["portal-done", "boss", "pia"] {
        g.slicectl(&["user", "del", name]);
    }
    g.no_processes_of("alice");
}

/// Section 8: with systemd's bus unreachable, `deny` refuses the login and
/// logs why, `allow` lets it in and logs it, and root logs in either way.
pub fn no_bus(g: &Guest) {
    write("/tmp/no-bus", "");
    Cmd::new(&[
        "mount",
        "--bind",
        "/tmp/no-bus",
        "/run/dbus/system_bus_socket",
    ])
    .run();
    let out = g.ssh("alice", ALICE_PW, "echo logged-in").stdout;
    if out.contains("logged-in") {
        g.fail(
            "deny: login refused with the bus unreachable",
            "refused",
            &out,
        );
    } else {
        g.pass("deny: login refused with the bus unreachable");
    }
    let logged = |pattern: &str| {
        Cmd::new(&["journalctl", "-q", "--no-pager", "-g", pattern])
            .run()
            .stdout
            .lines()
            .next()
            .is_some()
    };
    let recent = || {
        let journal = Cmd::new(&["journalctl", "-q", "--no-pager"]).run().stdout;
        let lines: Vec<&str> = journal
            .lines()
            .filter(|l| l.to_lowercase().contains("diycloud"))
            .collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    };
    if logged("login refused .on_session_error = deny.") {
        g.pass("deny: the refusal is logged with its reason");
    } else {
        g.fail("deny log", "a syslog line", &recent());
    }
    g.check(
        "root's login is not affected",
        "root-ok",
        g.ssh("root", "root test password", "echo root-ok")
            .stdout
            .trim_end(),
    );
    write(
        "/etc/diycloud/diycloud.toml",
        "[session]\non_session_error = \"allow\"\n",
    );
    g.check(
        "allow: login goes on with the bus unreachable",
        "logged-in",
        g.ssh("alice", ALICE_PW, "echo logged-in").stdout.trim_end(),
    );
    if logged("on_session_error = allow") {
        g.pass("allow: the failure is logged");
    } else {
        g.fail("allow log", "a syslog line", &recent());
    }
    Cmd::new(&["umount", "/run/dbus/system_bus_socket"]).run();
    let _ = std::fs::remove_file("/etc/diycloud/diycloud.toml");
}
