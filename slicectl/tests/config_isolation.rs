//! A typo in a setting that only the server (or only slicectl) reads never
//! stops a login: the PAM module, through real libpam, reads strictly what
//! it uses and nothing else. `slicectl config check` names every error,
//! with its line and column, and exits 2; `serve` refuses to start on one.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

/// A bad value (or key) in each section the module does not read, with the
/// key `config check` must name.
const NOT_THE_MODULES: &[(&str, &str)] = &[
    ("[api]\nlisten = \"localhost:8480\"\n", "api.listen"),
    ("[api]\nlisten_on = \"127.0.0.1:1\"\n", "listen_on"),
    ("[history]\ninterval = \"soon\"\n", "history.interval"),
    ("[history]\nmax_rows = 0\n", "history.max_rows"),
    ("[events]\nkeep = \"0s\"\n", "events.keep"),
    ("[events]\ninterval = \"often\"\n", "events.interval"),
    ("[audit]\nkeep = \"forever\"\n", "audit.keep"),
    ("[gpus]\nidle_after = \"a while\"\n", "gpus.idle_after"),
    ("[defaults]\nmemory = \"lots\"\n", "defaults.memory"),
    (
        "[defaults]\ncpu = 1\nmemory_high = \"4G\"\nmemory = \"1G\"\n",
        "defaults",
    ),
];

#[test]
fn a_bad_value_in_a_section_logins_do_not_read_stops_no_login() {
    diycloud_tests::use_slicectl(env!("CARGO_BIN_EXE_slicectl"));
    if diycloud_tests::skip_unless_root("the module trusts only root's config") {
        return;
    }
    // No lockout while the wrong passwords below are tried.
    let env = diycloud_tests::Env::new("[lockout]\ndeny = 0\n");
    env.add_user("alice", "alices password 1", &[]);
    env.standard_service();
    assert!(env.login("alice", "alices password 1").success);
    for (section, key) in NOT_THE_MODULES {
        std::fs::write(&env.config, format!("[lockout]\ndeny = 0\n\n{section}")).unwrap();
        let login = env.login("alice", "alices password 1");
        assert!(
            login.success,
            "{section}: the login failed: {}",
            login.stderr
        );
        assert!(
            !env.login("alice", "not her password").success,
            "{section}: a wrong password"
        );
        let check = env.slicectl(&["config", "check"], None);
        let said = String::from_utf8_lossy(&check.stderr);
        assert_eq!(check.status.code(), Some(2), "{section}: {said}");
        assert!(said.contains(key), "{section}: check names {key}: {said}");
        assert!(
            said.contains(":5:") || said.contains(":4:"),
            "{section}: check gives the line: {said}"
        );
        // serve reads it all, and stops before it binds.
        let serve = env.slicectl(&["serve", "--listen", "127.0.0.1:1"], None);
        let said = String::from_utf8_lossy(&serve.stderr);
        assert!(!serve.status.success(), "{section}: serve started");
        assert!(!said.contains("listening on"), "{section}: {said}");
    }
    // Beside a bad [api], the lockout section is still read: one wrong
    // password locks alice with deny = 1.
    std::fs::write(&env.config, "[lockout]\ndeny = 1\n[api]\nlisten = \"x\"\n").unwrap();
    assert!(!env.login("alice", "not her password").success);
    assert!(!env.login("alice", "alices password 1").success, "locked");
    // What the module does read stays strict: a bad lockout refuses the
    // managed user (fail closed), and config check names it.
    let out = env.slicectl(&["user", "unlock", "alice"], None);
    assert!(out.status.success(), "{out:?}");
    std::fs::write(&env.config, "[lockout]\ndeny = \"three\"\n").unwrap();
    assert!(!env.login("alice", "alices password 1").success);
    let check = env.slicectl(&["config", "check"], None);
    assert_eq!(check.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&check.stderr).contains("lockout"));
    std::fs::write(&env.config, "[lockout]\ndeny = 3\n").unwrap();
    let check = env.slicectl(&["config", "check"], None);
    assert_eq!(check.status.code(), Some(0), "{check:?}");
}
