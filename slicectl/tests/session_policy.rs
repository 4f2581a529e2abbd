//! Session open on this host, which has no systemd on the system bus: the
//! module cannot size the slice, and `on_session_error` decides. The real
//! slice sizing is checked against real systemd in tests/system (VM).
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

const SESSION_ERR: &str = "Cannot make/remove an entry for the specified session";

fn session_env(policy: &str) -> diycloud_tests::Env {
    let env = diycloud_tests::test_env!(&format!("[session]\non_session_error = \"{policy}\"\n"));
    env.service(
        "sess",
        &[
            "session [success=ok ignore=ignore default=die] {module}",
            "session required pam_permit.so",
        ],
    );
    // `man` exists on every Debian system and is not reserved: link it (a
    // service account, so only with the flag that says so), so the module
    // gets as far as asking systemd.
    env.add_user("man", "long enough 1", &["--allow-service-account"]);
    env.add_user("nosys", "long enough 1", &[]);
    env
}

#[test]
fn deny_refuses_the_session_with_a_message() {
    if diycloud_tests::has_system_bus() {
        diycloud_tests::skip("this machine has a system bus (the VM tier checks the real thing)");
        return;
    }
    let env = session_env("deny");
    let out = env.pamtester("sess", "man", &["open_session"], b"");
    assert!(out.failed_with(SESSION_ERR), "{out:?}");
    assert!(
        out.said("resource limits could not be applied"),
        "the user is told: {out:?}"
    );
    let out = env.pamtester("sess", "nosys", &["open_session"], b"");
    assert!(
        out.failed_with(SESSION_ERR),
        "no system account, no slice: {out:?}"
    );
}

#[test]
fn allow_lets_the_session_open() {
    if diycloud_tests::has_system_bus() {
        diycloud_tests::skip("this machine has a system bus (the VM tier checks the real thing)");
        return;
    }
    let env = session_env("allow");
    let out = env.pamtester("sess", "man", &["open_session", "close_session"], b"");
    assert!(out.success, "{out:?}");
    let shown = env.slicectl_json(&["user", "show", "man"]);
    assert!(
        shown["last_logout"].is_string(),
        "close recorded the logout: {shown}"
    );
}

#[test]
fn root_and_users_not_in_the_database_are_never_affected() {
    let env = session_env("deny");
    // success=bad: only PAM_IGNORE lets these through to pam_permit.
    env.service(
        "ignoring",
        &[
            "session [success=bad ignore=ignore default=die] {module}",
            "session required pam_permit.so",
        ],
    );
    for user in ["root", "bob"] {
        let out = env.pamtester("ignoring", user, &["open_session", "close_session"], b"");
        assert!(out.success, "{user}: {out:?}");
    }
    // Even with the database gone.
    std::fs::remove_file(&env.db).unwrap();
    let out = env.pamtester("ignoring", "root", &["open_session"], b"");
    assert!(out.success, "root with the database gone: {out:?}");
}

#[test]
fn session_open_ignores_dbus_system_bus_address() {
    // Under su the caller sets the environment: a fake "systemd" on a
    // socket of theirs must never be asked (it would answer success and
    // size nothing). The module connects to the system bus's fixed path.
    let env = session_env("deny");
    // Not in env.dir: pam_wrapper copies that directory, and a socket in it
    // makes pam_wrapper fail before any module runs.
    let bus_dir = tempfile::tempdir().unwrap();
    let fake = bus_dir.path().join("fake-bus");
    let listener = std::os::unix::net::UnixListener::bind(&fake).unwrap();
    listener.set_nonblocking(true).unwrap();
    let pamtester = env.pamtester_cmd("sess", "man", &["open_session"]);
    // A module that did connect would wait on the fake bus: bound it.
    let mut cmd = std::process::Command::new("timeout");
    cmd.arg("20")
        .arg(pamtester.get_program())
        .args(pamtester.get_args());
    for (key, value) in pamtester.get_envs() {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    cmd.env(
        "DBUS_SYSTEM_BUS_ADDRESS",
        format!("unix:path={}", fake.display()),
    );
    let out = env.pamtester_run(cmd, b"");
    assert!(
        out.stderr.contains("on_session_error = deny"),
        "the module ran and tried the real bus: {}",
        out.stderr
    );
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok(_) => panic!("the module connected to the bus named by DBUS_SYSTEM_BUS_ADDRESS"),
        Err(e) => panic!("accept: {e}"),
    }
}

#[test]
fn no_hook_reads_an_environment_variable() {
    // An LD_PRELOAD spy records every getenv() whose caller lies inside
    // pam_diycloud.so (its own code, the Rust runtime, SQLite and zbus are
    // all linked into it). Run every hook with a hostile environment.
    let env = session_env("allow");
    let spy_dir = tempfile::tempdir().unwrap();
    let spy = spy_dir.path().join("getenv_spy.so");
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/spy/getenv_spy.c");
    let built = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&spy)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("cc");
    assert!(built.success(), "building the getenv spy");
    let log = spy_dir.path().join("getenv.log");
    env.service(
        "all",
        &[
            "auth required {module}",
            "account required {module}",
            "password required {module}",
            "session required {module}",
        ],
    );
    for (user, ops, input) in [
        (
            "man",
            &["authenticate", "acct_mgmt", "open_session", "close_session"][..],
            &b"long enough 1\n"[..],
        ),
        ("nobody-here", &["authenticate"][..], &b"x\n"[..]),
        (
            "man",
            &["chauthtok"][..],
            &b"long enough 1\nlong enough 2\nlong enough 2\n"[..],
        ),
    ] {
        let mut cmd = env.pamtester_cmd("all", user, ops);
        cmd.env("LD_PRELOAD", format!("libpam_wrapper.so {}", spy.display()))
            .env("GETENV_SPY_LOG", &log)
            .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
            .env("TMPDIR", "/nonexistent")
            .env("SQLITE_TMPDIR", "/nonexistent")
            .env("HOME", "/nonexistent")
            .env("RUST_BACKTRACE", "1");
        let _ = env.pamtester_run(cmd, input);
    }
    let read = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        read.is_empty(),
        "the module read environment variables:\n{read}"
    );
    // The spy itself works: pamtester's own libpam calls are not recorded,
    // but a call from the module would be (checked by naming the module).
    assert!(diycloud_tests::module()
        .to_string_lossy()
        .contains("pam_diycloud"));
}
