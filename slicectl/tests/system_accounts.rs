//! System accounts through the distribution's useradd/userdel. These change
//! the machine's /etc/passwd, so they need root (CI runs as root); each uses
//! its own throwaway names and removes what it made.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::process::Command;

fn passwd_entry(name: &str) -> Option<String> {
    let out = Command::new("getent")
        .args(["passwd", name])
        .output()
        .expect("getent");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn shadow_password(name: &str) -> String {
    let out = Command::new("getent")
        .args(["shadow", name])
        .output()
        .expect("getent");
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

/// A name unique to this test run, cleaned up on drop.
struct Name(String);

impl Name {
    fn new(tag: &str) -> Self {
        Name(format!("dct{}{tag}", std::process::id() % 100_000))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = Command::new("userdel").args(["--remove", &self.0]).output();
        let _ = Command::new("groupdel").arg(&self.0).output();
    }
}

/// Whether `name` is in the managed group `diycloud`.
fn in_managed_group(name: &str) -> bool {
    let out = Command::new("id").args(["-nG", name]).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .any(|g| g == "diycloud")
}

fn skip_unless_root() -> bool {
    diycloud_tests::skip_unless_root("creating system accounts")
}

#[test]
fn add_creates_and_del_removes_the_system_account() {
    if skip_unless_root() {
        return;
    }
    let env = diycloud_tests::test_env!("");
    let name = Name::new("a");
    let n = name.0.as_str();
    let out = env.slicectl(
        &[
            "user",
            "add",
            n,
            "--password-stdin",
            "--full-name",
            "Test User",
        ],
        Some(b"long enough 1\n"),
    );
    assert!(
        diycloud_tests::added(&out),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let entry = passwd_entry(n).expect("system account created");
    assert!(in_managed_group(n), "a managed account is in the group");
    let fields: Vec<&str> = entry.split(':').collect();
    assert_eq!(fields[4], "Test User");
    assert_eq!(fields[6], "/bin/bash");
    let home = std::path::PathBuf::from(fields[5]);
    assert!(home.is_dir(), "home created");
    assert!(
        shadow_password(n).starts_with('!'),
        "shadow password locked: diycloud checks passwords"
    );
    let shown = env.slicectl_json(&["user", "show", n]);
    assert_eq!(shown["uid"].as_u64(), Some(fields[2].parse().unwrap()));
    assert_eq!(shown["system_account"], true);

    // A new full name reaches the passwd comment too.
    let out = env.slicectl(&["user", "mod", n, "--full-name", "Renamed User"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        passwd_entry(n).unwrap().split(':').nth(4),
        Some("Renamed User")
    );

    // The module accepts the user (its uid is real now).
    env.standard_service();
    assert!(env.login(n, "long enough 1").success);

    let out = env.slicectl(&["user", "del", n, "--remove-home"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(passwd_entry(n).is_none(), "system account removed");
    assert!(!home.exists(), "home removed");
    assert!(env.slicectl(&["user", "show", n], None).status.code() == Some(1));
}

#[test]
fn a_failing_useradd_leaves_no_record() {
    if skip_unless_root() {
        return;
    }
    let env = diycloud_tests::test_env!("");
    let name = Name::new("b");
    let n = name.0.as_str();
    // A group of that name makes `useradd --user-group` fail.
    assert!(Command::new("groupadd")
        .arg(n)
        .status()
        .expect("groupadd")
        .success());
    let out = env.slicectl(
        &["user", "add", n, "--password-stdin"],
        Some(b"long enough 1\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("useradd failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(passwd_entry(n).is_none());
    assert_eq!(
        env.slicectl(&["user", "show", n], None).status.code(),
        Some(1),
        "no half-written record"
    );
    assert_eq!(
        env.slicectl_json(&["user", "list"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn an_existing_account_is_linked_only_on_request_and_kept_on_del() {
    if skip_unless_root() {
        return;
    }
    let env = diycloud_tests::test_env!("");
    let name = Name::new("c");
    let n = name.0.as_str();
    assert!(Command::new("useradd")
        .arg(n)
        .status()
        .expect("useradd")
        .success());
    let uid: u64 = passwd_entry(n)
        .unwrap()
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();

    let out = env.slicectl(
        &["user", "add", n, "--password-stdin"],
        Some(b"long enough 1\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-system-account"));

    let out = env.slicectl(
        &["user", "add", n, "--password-stdin", "--no-system-account"],
        Some(b"long enough 1\n"),
    );
    assert!(
        diycloud_tests::added(&out),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = env.slicectl_json(&["user", "show", n]);
    assert_eq!(shown["uid"].as_u64(), Some(uid));
    assert_eq!(shown["system_account"], false);
    assert!(in_managed_group(n), "a linked account joins the group");

    assert!(env
        .slicectl(&["user", "del", n, "--remove-home"], None)
        .status
        .success());
    assert!(
        passwd_entry(n).is_some(),
        "an account slicectl did not create is left alone"
    );
    assert!(!in_managed_group(n), "but it leaves the managed group");
}
