//! `slicectl apply`, `prepare`, `usage` and `doctor` on a host without systemd: their
//! errors and output. (Against real systemd they run in tests/system.)
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

/// These check what happens without systemd; on a machine with it they
/// are skipped (the VM tier checks the real thing).
fn no_system_bus() -> bool {
    if diycloud_tests::has_system_bus() {
        diycloud_tests::skip("this machine has a system bus");
        return false;
    }
    true
}

#[test]
fn apply_needs_a_name_or_all() {
    let env = diycloud_tests::test_env!("");
    let out = env.slicectl(&["apply"], None);
    assert_eq!(out.status.code(), Some(2));
    let out = env.slicectl(&["apply", "alice", "--all"], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn apply_reports_users_it_cannot_size() {
    if !no_system_bus() {
        return;
    }
    let env = diycloud_tests::test_env!("");
    env.add_user("nosys", "long enough 1", &[]);
    let out = env.slicectl(&["apply", "nosys"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no system account"));

    // --all skips users without an account...
    let all = env.slicectl_json(&["apply", "--all"]);
    assert_eq!(all[0]["skipped"], "no system account");
    // ...but a user with one, and systemd unreachable, fails the command.
    env.add_user("man", "long enough 1", &["--allow-service-account"]);
    let out = env.slicectl(&["apply", "--all", "--json"], None);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let man = doc
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "man")
        .unwrap();
    assert_eq!(man["applied"], false);
    assert!(
        man["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach systemd"),
        "{man}"
    );
}

#[test]
fn prepare_refuses_what_a_login_would_not_get() {
    if !no_system_bus() {
        return;
    }
    let env = diycloud_tests::test_env!("");
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();
    let out = env.slicectl(&["prepare", "nobody"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no such user: nobody"),
        "{}",
        stderr(&out)
    );
    let out = env.slicectl(&["prepare", "Not A Name"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    env.add_user("nosys", "long enough 1", &[]);
    let out = env.slicectl(&["prepare", "nosys"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no system account"),
        "{}",
        stderr(&out)
    );

    // `man` has a uid: with systemd unreachable the slice step fails, and
    // that refuses as a login's session open does.
    env.add_user("man", "long enough 1", &["--allow-service-account"]);
    let out = env.slicectl(&["prepare", "man", "--json"], None);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["error"], "runtime",
        "no slice to start a process in: {doc}"
    );
    assert!(
        doc["detail"]
            .as_str()
            .unwrap()
            .contains("cannot reach systemd"),
        "{doc}"
    );

    env.slicectl(&["user", "mod", "man", "--disable"], None);
    let out = env.slicectl(&["prepare", "man"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("man may not log in now: the account is disabled"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn usage_lists_users_without_a_slice() {
    let env = diycloud_tests::test_env!("");
    env.add_user("nosys", "long enough 1", &[]);
    let out = env.slicectl(&["usage"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("NAME"), "{text}");
    assert!(text.contains("no system account"), "{text}");
}

#[test]
fn doctor_reports_each_check() {
    let env = diycloud_tests::test_env!("");
    let out = env.slicectl(&["doctor", "--json"], None);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks: Vec<&str> = doc
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        [
            "platform",
            "cgroups",
            "systemd",
            "config",
            "database",
            "unfinished",
            "uids",
            "group",
            "accounts",
            "quota",
            "gpus",
            "module",
            "pam"
        ]
    );
    assert_eq!(
        doc[9]["detail"], "off: no filesystems in [quota] filesystems",
        "quotas are off until filesystems are named"
    );
    if !diycloud_tests::has_system_bus() {
        let systemd = &doc[2];
        assert_eq!(systemd["status"], "fail");
        assert_eq!(
            out.status.code(),
            Some(1),
            "a failed check fails the command"
        );
    }
}

#[test]
fn doctor_names_each_quota_filesystem_that_cannot_take_quotas() {
    let env =
        diycloud_tests::test_env!("[quota]\nfilesystems = [\"/no/such/dir\", \"/usr/share\"]\n");
    let out = env.slicectl(&["doctor", "--json"], None);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let quota: Vec<(&str, &str)> = doc
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"] == "quota")
        .map(|c| (c["status"].as_str().unwrap(), c["detail"].as_str().unwrap()))
        .collect();
    assert_eq!(
        quota,
        [
            ("fail", "quota filesystem /no/such/dir: no such directory"),
            (
                "fail",
                "quota filesystem /usr/share is not a mount point: name the mount point itself (see `findmnt -T /usr/share`)"
            ),
        ]
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed check fails the command"
    );
}
