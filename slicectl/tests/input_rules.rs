//! Rules on what an admin types that protect other files and the kernel:
//! a full name stays one subfield of the passwd comment (GECOS), and a
//! disk quota stays within what the kernel's quota formats hold. Refused
//! at `user add` and `user mod` with a usage error naming the rule, never
//! at login.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::process::{Command, Output};

use diycloud_tests::Env;

fn env() -> Env {
    diycloud_tests::test_env!("")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn add(env: &Env, name: &str, flags: &[&str]) -> Output {
    let mut args = vec![
        "user",
        "add",
        name,
        "--password-stdin",
        "--no-system-account",
    ];
    args.extend_from_slice(flags);
    env.slicectl(&args, Some(b"long enough 1\n"))
}

/// A refused add wrote no record.
fn assert_nothing_written(env: &Env) {
    let users = env.slicectl_json(&["user", "list"]);
    assert_eq!(users.as_array().unwrap().len(), 0, "nothing was written");
}

fn show(env: &Env, name: &str) -> serde_json::Value {
    env.slicectl_json(&["user", "show", name])
}

#[test]
fn a_full_name_with_a_gecos_separator_is_a_usage_error() {
    let env = env();
    for name in ["Doe, Jane", "Jane Doe,Room 12,555-0100", "a:b"] {
        let out = add(&env, "alice", &["--full-name", name]);
        assert_eq!(out.status.code(), Some(2), "{name:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("',' or ':'") && err.contains("GECOS"),
            "{name:?}: {err}"
        );
    }
    assert_nothing_written(&env);

    let out = add(&env, "alice", &["--full-name", "Jane Doe"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.slicectl(&["user", "mod", "alice", "--full-name", "Doe, Jane"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("GECOS"), "{}", stderr(&out));
    let out = env.slicectl(
        &["--json", "user", "mod", "alice", "--full-name", "x,y"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let document: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(document["error"], "usage");
    assert_eq!(show(&env, "alice")["full_name"], "Jane Doe", "unchanged");
}

#[test]
fn a_disk_quota_beyond_what_the_kernel_holds_is_a_usage_error() {
    let env = env();
    for disk in ["8E", "15E", "9000P", "15.9E"] {
        let out = add(&env, "alice", &["--disk", disk]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "--disk {disk}: {}",
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(
            err.contains("less than 8E") && err.contains("vfsv1") && err.contains("vfsv0"),
            "--disk {disk} names the bound: {err}"
        );
    }
    assert_nothing_written(&env);
    // Just under the bound, and no quota at all, are fine.
    let out = add(&env, "alice", &["--disk", "8191P"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = add(&env, "bob", &["--disk", "infinity"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = env.slicectl(&["user", "mod", "alice", "--disk", "10E"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("less than 8E"), "{}", stderr(&out));
    assert_eq!(show(&env, "alice")["disk"], "8191P", "unchanged");
}

#[test]
fn a_default_disk_beyond_the_bound_is_a_config_error() {
    let env = diycloud_tests::test_env!("");
    std::fs::write(
        env.dir.path().join("big.toml"),
        "[defaults]\ndisk = \"12E\"\n",
    )
    .unwrap();
    let mut cmd = Command::new(diycloud_tests::slicectl_bin());
    cmd.arg("--db")
        .arg(&env.db)
        .arg("--config")
        .arg(env.dir.path().join("big.toml"))
        .args(["user", "list"]);
    let out = diycloud_tests::run(cmd, None);
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr(&out).contains("less than 8E"), "{}", stderr(&out));
}

#[test]
fn a_record_granted_before_the_bound_still_logs_in() {
    if diycloud_tests::skip_unless_root("pamtester under pam_wrapper") {
        return;
    }
    let env = env();
    env.standard_service();
    env.add_user("alice", "long enough 1", &[]);
    // A record from before the rule (or written by hand): the bound is
    // checked where limits are granted, not where a user logs in.
    let status = Command::new("sqlite3")
        .arg(&env.db)
        .arg(
            "UPDATE resource_allocations SET limits = json_set(limits, '$.disk', '15E') \
             WHERE user_id = (SELECT id FROM users WHERE username = 'alice')",
        )
        .status()
        .expect("sqlite3");
    assert!(status.success());
    assert_eq!(show(&env, "alice")["disk"], "15E");
    let outcome = env.pamtester(
        "diycloud",
        "alice",
        &["authenticate", "acct_mgmt"],
        b"long enough 1\n",
    );
    assert!(outcome.success, "{outcome:?}");
}
