//! 50 parallel logins through real libpam while an admin loops over
//! `slicectl user mod`: no SQLITE_BUSY, no lost failure count, no lost update.
#![deny(unsafe_code)]
// Waits for other processes (a child to reach a point, a prompt to show):
// real time is what it waits on.
#![allow(clippy::disallowed_methods)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[test]
fn parallel_logins_during_admin_changes() {
    // deny = 0: every wrong password is counted, none locks.
    let env = diycloud_tests::test_env!("[lockout]\ndeny = 0\n");
    env.standard_service();
    env.add_user("alice", "alice password", &[]);
    env.add_user("bob", "bob password", &[]);

    let stop = Arc::new(AtomicBool::new(false));
    let admin = {
        let stop = Arc::clone(&stop);
        let commands: Vec<std::process::Command> = (0..200)
            .map(|i| {
                let email = format!("--email=m{i}@example.org");
                let tasks = format!("--tasks={}", 100 + i);
                env.slicectl_cmd(&[
                    "user",
                    "mod",
                    if i % 2 == 0 { "alice" } else { "bob" },
                    &email,
                    &tasks,
                ])
            })
            .collect();
        std::thread::spawn(move || {
            let mut runs = Vec::new();
            for mut cmd in commands {
                let out = cmd.output().expect("slicectl");
                runs.push(out);
                if stop.load(Ordering::SeqCst) && runs.len() >= 20 {
                    break;
                }
            }
            runs
        })
    };

    // 25 right logins for alice and 25 wrong ones for bob, all at once.
    let logins: Vec<(bool, Child)> = (0..50)
        .map(|i| {
            let right = i % 2 == 0;
            let (user, password) = if right {
                ("alice", "alice password\n")
            } else {
                ("bob", "wrong password\n")
            };
            let mut cmd = env.pamtester_cmd("diycloud", user, &["authenticate"]);
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            // One past pam_wrapper's choice of its directory at a time.
            let mut child = diycloud_tests::spawn_pamtester(&mut cmd);
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(password.as_bytes())
                .expect("write");
            (right, child)
        })
        .collect();
    for (right, child) in logins {
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("locked") && !stderr.contains("cannot retrieve"),
            "{stderr}"
        );
        if right {
            assert!(out.status.success(), "a right password failed: {stderr}");
        } else {
            assert!(
                stderr.contains("pamtester: Authentication failure"),
                "{stderr}"
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    let runs = admin.join().expect("admin thread");
    for out in &runs {
        assert!(
            out.status.success(),
            "slicectl user mod failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let bob = env.slicectl_json(&["user", "show", "bob"]);
    assert_eq!(bob["failed_logins"], 25, "every wrong password counted");
    let alice = env.slicectl_json(&["user", "show", "alice"]);
    assert_eq!(alice["failed_logins"], 0);

    // The last change of each user is the one stored.
    let last_for = |parity: usize| {
        (0..runs.len())
            .filter(|i| i % 2 == parity)
            .max()
            .expect("a run")
    };
    let (a, b) = (last_for(0), last_for(1));
    assert_eq!(alice["email"], format!("m{a}@example.org"));
    assert_eq!(alice["tasks"], (100 + a).to_string());
    assert_eq!(bob["email"], format!("m{b}@example.org"));

    // Every change is in the audit log.
    assert_eq!(
        audit_mod_count(&env.db),
        runs.len(),
        "one audit entry per user mod"
    );
}

/// Counts `user.mod` rows in the audit log with the sqlite3 shell.
fn audit_mod_count(db: &std::path::Path) -> usize {
    let out = std::process::Command::new("sqlite3")
        .arg(db)
        .arg("SELECT COUNT(*) FROM audit_log WHERE action = 'user.mod'")
        .output()
        .expect("sqlite3 (Debian package sqlite3) is needed by this test");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a count")
}
