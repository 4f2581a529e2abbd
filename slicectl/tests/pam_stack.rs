//! The real module through real libpam (pamtester under pam_wrapper).
//! pamtester prints `pam_strerror` of the code it got, so each assertion on
//! its message is an assertion on the PAM return code.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use diycloud_tests::Env;

const AUTH_ERR: &str = "Authentication failure";
const USER_UNKNOWN: &str = "User not known to the underlying authentication module";
const AUTHINFO_UNAVAIL: &str = "Authentication service cannot retrieve authentication info";
const ACCT_EXPIRED: &str = "User account has expired";
const PERM_DENIED: &str = "Permission denied";

fn env() -> Env {
    let env = diycloud_tests::test_env!("[lockout]\ndeny = 3\nunlock_time = \"1h\"\n");
    env.standard_service();
    env.add_user("alice", "correct horse", &[]);
    env
}

#[test]
fn right_password_succeeds_wrong_fails_unknown_user_fails() {
    let env = env();
    let ok = env.login("alice", "correct horse");
    assert!(ok.success, "{ok:?}");
    assert!(ok.said("successfully authenticated"));

    assert!(env.login("alice", "correct horsE").failed_with(AUTH_ERR));
    assert!(env.login("alice", "").failed_with(AUTH_ERR));
    assert!(env.login("bob", "correct horse").failed_with(USER_UNKNOWN));
    assert!(env.login("Root", "x").failed_with(USER_UNKNOWN));
}

#[test]
fn account_stage_refuses_disabled_and_expired_users() {
    let env = env();
    let acct = |user: &str, pw: &str| {
        env.pamtester(
            "diycloud",
            user,
            &["authenticate", "acct_mgmt"],
            format!("{pw}\n").as_bytes(),
        )
    };
    assert!(acct("alice", "correct horse").success);

    assert!(env
        .slicectl(&["user", "mod", "alice", "--disable"], None)
        .status
        .success());
    assert!(
        env.login("alice", "correct horse").failed_with(AUTH_ERR),
        "disabled: auth refuses too"
    );
    let out = env.pamtester("diycloud", "alice", &["acct_mgmt"], b"");
    assert!(out.failed_with(PERM_DENIED), "{out:?}");
    assert!(env
        .slicectl(&["user", "mod", "alice", "--enable"], None)
        .status
        .success());
    assert!(acct("alice", "correct horse").success);

    assert!(env
        .slicectl(&["user", "mod", "alice", "--expires", "2020-01-01"], None)
        .status
        .success());
    let out = acct("alice", "correct horse");
    assert!(out.failed_with(ACCT_EXPIRED), "{out:?}");
    assert!(
        out.said("Your account has expired"),
        "the user is told: {out:?}"
    );
    assert!(env
        .slicectl(&["user", "mod", "alice", "--expires", "2999-12-31"], None)
        .status
        .success());
    assert!(acct("alice", "correct horse").success);
}

#[test]
fn account_stage_ignores_users_not_in_the_database() {
    let env = env();
    // success=bad turns a PAM_SUCCESS from our module into a failure, so only
    // PAM_IGNORE lets the stack reach pam_permit.
    env.service(
        "ignoring",
        &[
            "account [success=bad ignore=ignore default=die] {module}",
            "account required pam_permit.so",
        ],
    );
    for user in ["root", "bob"] {
        let out = env.pamtester("ignoring", user, &["acct_mgmt"], b"");
        assert!(out.success, "{user}: {out:?}");
    }
    let out = env.pamtester("ignoring", "alice", &["acct_mgmt"], b"");
    assert!(
        !out.success,
        "alice is ours: our SUCCESS must not be an IGNORE"
    );
}

#[test]
fn lockout_after_deny_failures_until_an_admin_unlocks() {
    let env = env();
    for _ in 0..3 {
        assert!(env.login("alice", "wrong").failed_with(AUTH_ERR));
    }
    assert!(
        env.login("alice", "correct horse").failed_with(AUTH_ERR),
        "locked"
    );
    let shown = env.slicectl_json(&["user", "show", "alice"]);
    assert_eq!(shown["locked"], true);
    assert_eq!(shown["failed_logins"], 3);

    let out = env.slicectl(&["user", "unlock", "alice"], None);
    assert!(out.status.success());
    assert!(
        env.login("alice", "correct horse").success,
        "unlocked by the admin"
    );

    // The lock ending by itself after unlock_time is tested with a set
    // clock in pam_diycloud's hook tests (no waiting here).
}

#[test]
fn a_success_resets_the_failure_count() {
    let env = env();
    env.login("alice", "wrong");
    env.login("alice", "wrong");
    assert!(env.login("alice", "correct horse").success);
    env.login("alice", "wrong");
    env.login("alice", "wrong");
    assert!(
        env.login("alice", "correct horse").success,
        "4 failures, but never 3 in a row"
    );
    assert_eq!(
        env.slicectl_json(&["user", "show", "alice"])["failed_logins"],
        0
    );
}

#[test]
fn password_change_through_slicectl() {
    let env = env();
    let out = env.slicectl(
        &["user", "passwd", "alice", "--password-stdin"],
        Some(b"set by admin 42\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env.login("alice", "set by admin 42").success);
    assert!(env.login("alice", "correct horse").failed_with(AUTH_ERR));
}

#[test]
fn a_non_utf8_user_name_is_an_unknown_user_not_a_system_error() {
    use std::os::unix::ffi::OsStrExt;
    let env = env();
    let mut cmd = std::process::Command::new("pamtester");
    cmd.arg("-v")
        .arg("diycloud")
        .arg(std::ffi::OsStr::from_bytes(b"al\xffice"))
        .arg("authenticate")
        .env("LD_PRELOAD", "libpam_wrapper.so")
        .env("PAM_WRAPPER", "1")
        .env("PAM_WRAPPER_SERVICE_DIR", env.dir.path());
    // Through the harness's one-pamtester-at-a-time lock, like every
    // other pam_wrapper run (its temporary service directory can be shared
    // by two processes that start at once).
    let out = env.pamtester_run(cmd, b"x\n");
    assert!(
        out.stderr.contains(&format!("pamtester: {USER_UNKNOWN}")),
        "PAM_USER_UNKNOWN, not PAM_SYSTEM_ERR: {}",
        out.stderr
    );
}

#[test]
fn a_locked_user_is_refused_at_the_account_stage_too() {
    // Whatever module authenticated them (a Unix password, an SSH key).
    let env = env();
    for _ in 0..3 {
        env.login("alice", "wrong");
    }
    let out = env.pamtester("diycloud", "alice", &["acct_mgmt"], b"");
    assert!(out.failed_with(PERM_DENIED), "{out:?}");
    assert!(out.said("locked"), "{out:?}");
    assert!(env
        .slicectl(&["user", "unlock", "alice"], None)
        .status
        .success());
    assert!(
        env.pamtester("diycloud", "alice", &["acct_mgmt"], b"")
            .success
    );
}

#[test]
fn oversized_and_non_utf8_passwords_fail_cleanly() {
    let env = env();
    let mut huge = vec![b'a'; 1 << 20];
    huge.push(b'\n');
    let out = env.pamtester("diycloud", "alice", &["authenticate"], &huge);
    assert!(
        out.failed_with(AUTH_ERR),
        "{:?}",
        &out.stderr[..out.stderr.len().min(400)]
    );
    let out = env.pamtester(
        "diycloud",
        "alice",
        &["authenticate"],
        b"\xff\xfe\xfd correct\n",
    );
    assert!(out.failed_with(AUTH_ERR), "{out:?}");
    assert!(
        env.login("alice", "correct horse").success,
        "the module still works"
    );
}

#[test]
fn missing_unreadable_or_corrupt_database_is_authinfo_unavail() {
    let env = env();
    let broken = |db: &std::path::Path| {
        let line = format!(
            "auth required {} db={}",
            diycloud_tests::module().display(),
            db.display()
        );
        env.service("broken", &[&line]);
        env.pamtester("broken", "alice", &["authenticate"], b"correct horse\n")
    };
    let missing = env.dir.path().join("missing.db");
    assert!(broken(&missing).failed_with(AUTHINFO_UNAVAIL));
    assert!(!missing.exists(), "the module must not create a database");

    let corrupt = env.dir.path().join("corrupt.db");
    std::fs::write(&corrupt, vec![0x42; 4096]).unwrap();
    assert!(broken(&corrupt).failed_with(AUTHINFO_UNAVAIL));

    let directory = env.dir.path().join("a-directory");
    std::fs::create_dir(&directory).unwrap();
    assert!(broken(&directory).failed_with(AUTHINFO_UNAVAIL));

    use std::os::unix::fs::PermissionsExt;
    let unreadable = env.dir.path().join("unreadable.db");
    std::fs::copy(&env.db, &unreadable).unwrap();
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).unwrap();
    if diycloud_tests::is_root() {
        // Root reads any file: the module runs as nobody instead, as inside
        // a service that dropped its privileges.
        let out = as_nobody(&env, &unreadable);
        assert!(out.failed_with(AUTHINFO_UNAVAIL), "{out:?}");
        assert!(
            out.said("Permission denied") || out.said("unable to open"),
            "{out:?}"
        );
    } else {
        assert!(broken(&unreadable).failed_with(AUTHINFO_UNAVAIL));
    }
}

/// `auth` against `db` with pamtester running as nobody: the service file
/// and a copy of the module in a directory nobody can read (the test's own
/// is root's), the database left where it is.
fn as_nobody(env: &Env, db: &std::path::Path) -> diycloud_tests::Outcome {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let module = open.path().join("pam_diycloud.so");
    std::fs::copy(diycloud_tests::module(), &module).unwrap();
    std::fs::set_permissions(&module, std::fs::Permissions::from_mode(0o644)).unwrap();
    let holder = db.parent().unwrap();
    std::fs::set_permissions(holder, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        open.path().join("broken"),
        format!(
            "auth required {} db={} debug\n",
            module.display(),
            db.display()
        ),
    )
    .unwrap();
    let mut cmd = env.pamtester_cmd("broken", "alice", &["authenticate"]);
    cmd.env("PAM_WRAPPER_SERVICE_DIR", open.path())
        .uid(65534)
        .gid(65534);
    let out = env.pamtester_run(cmd, b"correct horse\n");
    std::fs::set_permissions(holder, std::fs::Permissions::from_mode(0o700)).unwrap();
    out
}

#[test]
fn bad_module_arguments_fail_closed() {
    let env = env();
    let line = format!(
        "auth required {} nullok",
        diycloud_tests::module().display()
    );
    env.service("badargs", &[&line]);
    let out = env.pamtester("badargs", "alice", &["authenticate"], b"correct horse\n");
    assert!(out.failed_with("Error in service module"), "{out:?}");
}

#[test]
fn use_first_pass_takes_the_stacked_password() {
    let env = env();
    // pam_unix asks first (and fails: alice has no system account); our
    // module must reuse that answer without asking again.
    env.service(
        "stacked",
        &[
            "auth optional pam_unix.so",
            "auth required {module} use_first_pass",
        ],
    );
    let out = env.pamtester("stacked", "alice", &["authenticate"], b"correct horse\n");
    assert!(out.success, "{out:?}");
    assert_eq!(
        out.stderr.matches("Password:").count(),
        1,
        "asked once: {out:?}"
    );
}

#[test]
fn the_shipped_example_stack_works() {
    let env = env();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/pam.d/diycloud-example"
    ))
    .unwrap();
    let lines: Vec<String> = example
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.replace("pam_diycloud.so", "{module}"))
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    env.service("example", &lines);
    let login = |user: &str, pw: &str| {
        env.pamtester(
            "example",
            user,
            &["authenticate", "acct_mgmt"],
            format!("{pw}\n").as_bytes(),
        )
    };
    assert!(
        login("alice", "correct horse").success,
        "DB user through the example stack"
    );
    assert!(!login("alice", "wrong").success);
    // Not ours: pam_unix decides (and this made-up user does not exist).
    assert!(!login("nobody-here", "correct horse").success);
    // setcred runs the auth lines too: our PAM_IGNORE for root must not end the stack.
    let out = env.pamtester("example", "root", &["setcred"], b"");
    assert!(
        out.success,
        "root's setcred through the example stack: {out:?}"
    );

    // With the database gone, DB users are refused (pam_unix: no such user).
    std::fs::remove_file(&env.db).unwrap();
    assert!(!login("alice", "correct horse").success);
}

#[test]
fn huge_argon2_costs_deny_the_login_and_never_abort_the_host() {
    // In the config: a config error, logged; the login is denied.
    let env = diycloud_tests::test_env!("");
    env.standard_service();
    env.add_user("alice", "correct horse", &[]);
    std::fs::write(&env.config, "[password]\nmemory_kib = 4294967295\n").unwrap();
    let out = env.login("alice", "correct horse");
    assert!(out.failed_with(AUTHINFO_UNAVAIL), "{out:?}");
    assert!(out.said("over the limit"), "logged: {out:?}");
    std::fs::write(&env.config, "").unwrap();
    assert!(env.login("alice", "correct horse").success);

    // In a stored hash (a hostile or mangled row): denied, logged, alive.
    let status = std::process::Command::new("sqlite3")
        .arg(&env.db)
        .arg("UPDATE users SET password_hash = replace(password_hash, 'm=19456,', 'm=4294967295,') WHERE username = 'alice'")
        .status()
        .unwrap();
    assert!(status.success());
    let out = env.login("alice", "correct horse");
    assert!(out.failed_with(AUTHINFO_UNAVAIL), "{out:?}");
    assert!(out.said("over the limit"), "logged: {out:?}");
}
