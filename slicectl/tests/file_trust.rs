//! The file-trust suite: a database or config that someone other than root
//! (or the running user) could have written is refused, through real libpam
//! (pamtester under pam_wrapper) and by slicectl, with the file named.
//! Each case starts from a working login, breaks one thing, and checks the
//! login is denied (PAM_AUTHINFO_UNAVAIL, never a success) and logged.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use diycloud_tests::Env;

const AUTHINFO_UNAVAIL: &str = "Authentication service cannot retrieve authentication info";
const PASSWORD: &str = "correct horse";

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn env() -> Env {
    let env = diycloud_tests::test_env!("");
    env.standard_service();
    env.add_user("alice", PASSWORD, &[]);
    assert!(
        env.login("alice", PASSWORD).success,
        "the control login works"
    );
    env
}

/// The login is refused and the log line names `what`.
fn assert_refused(env: &Env, what: &str) {
    let out = env.login("alice", PASSWORD);
    assert!(out.failed_with(AUTHINFO_UNAVAIL), "{what}: {out:?}");
    assert!(
        out.said("refused") && out.said(what),
        "logged with the file named ({what}): {out:?}"
    );
}

/// A service whose module line names other `db=`/`config=` paths.
fn service_with(env: &Env, db: &Path, config: &Path) {
    let line = format!(
        "{} db={} config={}",
        diycloud_tests::module().display(),
        db.display(),
        config.display()
    );
    std::fs::write(
        env.dir.path().join("diycloud"),
        format!("auth required {line}\naccount required {line}\n"),
    )
    .unwrap();
}

#[test]
fn a_database_others_can_write_is_refused() {
    let env = env();
    let db = env.db.to_str().unwrap().to_owned();
    for mode in [0o666, 0o620, 0o602] {
        chmod(&env.db, mode);
        assert_refused(&env, &db);
        let out = env.slicectl(&["user", "list"], None);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&db) && err.contains("chmod go-w"), "{err}");
        chmod(&env.db, 0o600);
        assert!(env.login("alice", PASSWORD).success);
    }
}

#[test]
fn a_writable_directory_above_the_database_is_refused() {
    let env = env();
    let dir = env.dir.path();
    chmod(dir, 0o777);
    assert_refused(&env, dir.to_str().unwrap());
    // Sticky does not help the database's own directory (SQLite creates
    // its -wal and -shm files there).
    chmod(dir, 0o1777);
    assert_refused(&env, dir.to_str().unwrap());
    chmod(dir, 0o700);
    assert!(env.login("alice", PASSWORD).success);
}

#[test]
fn a_database_reached_through_a_symlink_or_with_a_second_name_is_refused() {
    let env = env();
    let link = env.dir.path().join("link.db");
    std::os::unix::fs::symlink(&env.db, &link).unwrap();
    service_with(&env, &link, &env.config);
    assert_refused(&env, "symbolic link");

    service_with(&env, &env.db, &env.config);
    assert!(env.login("alice", PASSWORD).success);
    let second = env.dir.path().join("second-name.db");
    std::fs::hard_link(&env.db, &second).unwrap();
    assert_refused(&env, "hard links");
    std::fs::remove_file(&second).unwrap();
    assert!(env.login("alice", PASSWORD).success);
}

#[test]
fn a_config_others_can_write_or_a_config_symlink_is_refused() {
    let env = env();
    let config = env.config.to_str().unwrap().to_owned();
    chmod(&env.config, 0o666);
    assert_refused(&env, &config);
    chmod(&env.config, 0o644);
    assert!(env.login("alice", PASSWORD).success);

    let link: PathBuf = env.dir.path().join("link.toml");
    std::os::unix::fs::symlink(&env.config, &link).unwrap();
    service_with(&env, &env.db, &link);
    assert_refused(&env, "symbolic link");
}

#[test]
fn files_owned_by_another_user_are_refused() {
    if diycloud_tests::skip_unless_root("chown") {
        return;
    }
    let env = env();
    let nobody = Some(nix::unistd::Uid::from_raw(65534));
    for path in [&env.db, &env.config] {
        nix::unistd::chown(path.as_path(), nobody, None).unwrap();
        assert_refused(&env, "owned by uid 65534");
        nix::unistd::chown(path.as_path(), Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
        assert!(env.login("alice", PASSWORD).success);
    }
}

#[test]
fn init_refuses_an_unsafe_directory_and_doctor_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let env = diycloud_tests::test_env!("");
    let db = open.join("new.db");
    let out = env.slicectl_on(&db, &["init"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("writable"),
        "{out:?}"
    );
    assert!(!db.exists(), "nothing created");

    chmod(&env.db, 0o666);
    let database = doctor_check(&env, "database");
    assert_eq!(database["status"], "fail", "{database}");
    assert!(database["detail"].as_str().unwrap().contains("chmod go-w"));
    chmod(&env.db, 0o600);
    chmod(&env.config, 0o666);
    let config = doctor_check(&env, "config");
    assert_eq!(config["status"], "fail", "{config}");
}

/// The line of `slicectl doctor --json` about `check`.
fn doctor_check(env: &Env, check: &str) -> serde_json::Value {
    let out = env.slicectl(&["doctor", "--json"], None);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc.as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check)
        .unwrap_or_else(|| panic!("no {check} check: {doc}"))
        .clone()
}
