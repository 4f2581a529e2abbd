//! slicectl as an admin (or a script) uses it: exit codes, messages, JSON.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::process::Output;

use diycloud_tests::Env;

fn env() -> Env {
    diycloud_tests::test_env!("")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn add(env: &Env, args: &[&str], password: &[u8]) -> Output {
    let mut all = vec!["user", "add"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--password-stdin", "--no-system-account"]);
    env.slicectl(&all, Some(password))
}

fn user_count(env: &Env) -> usize {
    env.slicectl_json(&["user", "list"])
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn invalid_names_are_usage_errors_naming_the_rule() {
    let env = env();
    let forty = "a".repeat(40);
    for name in ["../x", "Root", forty.as_str(), "a;b", "root"] {
        let out = add(&env, &[name], b"long enough 1\n");
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("at most 32 characters") || err.contains("reserved"),
            "{name}: {err}"
        );
    }
    assert_eq!(user_count(&env), 0);
}

#[test]
fn invalid_limits_roles_and_dates_are_usage_errors_naming_the_rule() {
    let env = env();
    let cases: &[(&[&str], &str)] = &[
        (&["--memory", "2Q"], "K, M, G, T, P or E"),
        (&["--memory", "-1G"], "K, M, G, T, P or E"),
        (&["--disk", "0"], "K, M, G, T, P or E"),
        (&["--cpu", "0"], "number of cores"),
        (&["--cpu", "abc%"], "number of cores"),
        (&["--tasks", "-3"], "whole number"),
        (&["--cpu-weight", "0"], "from 1 to 10000"),
        (&["--cpu-weight", "10001"], "from 1 to 10000"),
        (&["--io-weight", "-5"], "from 1 to 10000"),
        (&["--io-weight", "1.5"], "from 1 to 10000"),
        (&["--memory-high", "lots"], "K, M, G, T, P or E"),
        (
            &["--memory", "512M", "--memory-high", "600M"],
            "memory-high (the soft limit, MemoryHigh) must not exceed memory",
        ),
        (
            &["--memory-high", "3G"],
            "memory-high 3G is above memory 2G",
        ),
        (&["--gpus", "0,0"], "'none', 'all'"),
        (&["--gpus", "gpu1"], "'none', 'all'"),
        (&["--role", "superuser"], "'user' or 'admin'"),
        (&["--expires", "31/12/2027"], "YYYY-MM-DD"),
        (&["--email", "not-an-address"], "name@example.org"),
        (&["--full-name", "a:b"], "':'"),
    ];
    for (flags, rule) in cases {
        let mut args = vec!["alice"];
        args.extend_from_slice(flags);
        let out = add(&env, &args, b"long enough 1\n");
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(rule), "{flags:?}: {}", stderr(&out));
    }
    assert_eq!(user_count(&env), 0, "nothing was written");
}

/// Every limit of the library's table is a flag of `user add` and `user
/// mod`, with its help, and lands in the record under its key.
#[test]
fn every_limit_is_a_flag() {
    use libdiycloud::model::limits::{Allocation, LIMITS};
    let env = env();
    for command in ["add", "mod"] {
        let help = env.slicectl(&["user", command, "--help"], None);
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        for limit in LIMITS {
            let flag = format!("--{} <{}>", limit.flag, limit.value_name);
            assert!(help.contains(&flag), "user {command}: {flag} in {help}");
        }
    }
    let mut args = vec!["lena".to_owned()];
    for ((key, text), limit) in Allocation::default().texts().into_iter().zip(LIMITS) {
        assert_eq!(key, limit.key);
        args.extend([format!("--{}", limit.flag), text]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = add(&env, &args, b"long enough 1\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shown = env.slicectl_json(&["user", "show", "lena"]);
    for (key, value) in Allocation::default().json() {
        assert_eq!(shown[key], value, "{key}: {shown}");
    }
}

#[test]
fn bad_passwords_are_refused_cleanly() {
    let env = env();
    let mut huge = vec![b'x'; 1 << 20];
    huge.push(b'\n');
    for (password, reason) in [
        (huge.as_slice(), "longer than 1024 bytes"),
        (
            b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\n".as_slice(),
            "not valid UTF-8",
        ),
        (b"\n".as_slice(), "empty"),
        (b"short\n".as_slice(), "shorter than 8"),
    ] {
        let out = add(&env, &["alice"], password);
        assert_eq!(out.status.code(), Some(2), "{reason}: {}", stderr(&out));
        assert!(stderr(&out).contains(reason), "{}", stderr(&out));
    }
    let out = env.slicectl(&["user", "add", "alice", "--no-system-account"], None);
    assert_eq!(out.status.code(), Some(2), "no password and no terminal");
    assert!(stderr(&out).contains("--password-stdin"));
    assert_eq!(user_count(&env), 0);
}

#[test]
fn add_show_list_mod_del_with_json() {
    let env = env();
    let out = add(
        &env,
        &[
            "alice",
            "--role",
            "admin",
            "--email",
            "alice@example.org",
            "--full-name",
            "Alice Liddell",
            "--cpu",
            "150%",
            "--memory",
            "4G",
            "--disk",
            "20G",
            "--tasks",
            "512",
            "--gpus",
            "all",
            "--cpu-weight",
            "300",
            "--io-weight",
            "50",
            "--memory-high",
            "3G",
            "--expires",
            "2030-06-30",
        ],
        b"long enough 1\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let alice = env.slicectl_json(&["user", "show", "alice"]);
    for (key, value) in [
        ("role", "admin"),
        ("email", "alice@example.org"),
        ("full_name", "Alice Liddell"),
        ("cpu", "1.5"),
        ("memory", "4G"),
        ("disk", "20G"),
        ("tasks", "512"),
        ("gpus", "all"),
        ("memory_high", "3G"),
        ("expires", "2030-06-30"),
    ] {
        assert_eq!(alice[key], value, "{key}");
    }
    assert_eq!(
        (alice["cpu_weight"].as_u64(), alice["io_weight"].as_u64()),
        (Some(300), Some(50))
    );
    let text = String::from_utf8(env.slicectl(&["user", "show", "alice"], None).stdout).unwrap();
    for line in [
        "cpu weight:    300",
        "io weight:     50",
        "memory high:   3G",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert_eq!(alice["active"], true);
    assert!(alice.get("password_hash").is_none(), "never shown");
    assert!(!alice.to_string().contains("argon2"), "never shown");
    assert_eq!(alice["audit"][0]["action"], "user.add");

    // GPUs by index or UUID are checked against this node, which has none
    // (no NVIDIA driver on the machines the tests run on).
    if !std::path::Path::new("/dev/nvidiactl").exists() {
        let out = env.slicectl(&["user", "mod", "alice", "--gpus", "0,1"], None);
        assert_eq!(out.status.code(), Some(2), "a usage error");
        assert!(
            stderr(&out).contains("this node has no GPU 0"),
            "{}",
            stderr(&out)
        );
    }

    // Defaults come from the config for what is not given.
    add(&env, &["bob"], b"long enough 2\n");
    let bob = env.slicectl_json(&["user", "show", "bob"]);
    assert_eq!(
        (
            bob["cpu"].as_str(),
            bob["memory"].as_str(),
            bob["gpus"].as_str()
        ),
        (Some("1"), Some("2G"), Some("none"))
    );

    let changed = env.slicectl_json(&[
        "user",
        "mod",
        "alice",
        "--memory",
        "8G",
        "--email",
        "",
        "--expires",
        "never",
        "--disable",
    ]);
    assert_eq!(changed["memory"], "8G");
    assert_eq!(changed["email"], serde_json::Value::Null);
    assert_eq!(changed["expires"], serde_json::Value::Null);
    assert_eq!(changed["active"], false);
    assert_eq!(changed["cpu"], "1.5", "untouched");

    // A hard limit under the soft one is refused, and nothing changes.
    let out = env.slicectl(&["user", "mod", "alice", "--memory", "1G"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("memory-high 3G is above memory 1G"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        env.slicectl_json(&["user", "show", "alice"])["memory"],
        "8G"
    );
    let changed = env.slicectl_json(&[
        "user",
        "mod",
        "alice",
        "--cpu-weight",
        "10000",
        "--memory-high",
        "infinity",
    ]);
    assert_eq!(changed["cpu_weight"], 10000);
    assert_eq!(changed["memory_high"], "infinity");
    assert_eq!(changed["io_weight"], 50, "untouched");

    let list = env.slicectl_json(&["user", "list"]);
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    let text = String::from_utf8(env.slicectl(&["user", "list"], None).stdout).unwrap();
    assert!(text.starts_with("NAME"), "{text}");
    assert!(text.contains("disabled"), "{text}");

    let out = env.slicectl(&["user", "del", "alice"], None);
    assert!(out.status.success());
    assert_eq!(user_count(&env), 1);
    let out = env.slicectl(&["user", "show", "alice"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no such user: alice"));
}

#[test]
fn runtime_errors_exit_1_with_a_clear_message() {
    let env = env();
    add(&env, &["alice"], b"long enough 1\n");
    let again = add(&env, &["alice"], b"long enough 1\n");
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already exists"));

    let out = env.slicectl(&["user", "mod", "nobody-here", "--cpu", "2"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no such user"));

    let out = env.slicectl(&["user", "mod", "alice"], None);
    assert_eq!(out.status.code(), Some(2), "nothing to change");

    let out = env.slicectl(&["user", "list", "--json"], None);
    assert!(out.status.success());
}

#[test]
fn missing_corrupt_or_unusable_database_is_a_clear_error() {
    let env = env();
    let run = |db: &std::path::Path| {
        let out = std::process::Command::new(diycloud_tests::slicectl_bin())
            .args([
                "--config",
                env.config.to_str().unwrap(),
                "--db",
                db.to_str().unwrap(),
                "user",
                "list",
                "--json",
            ])
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            json,
        )
    };
    let missing = env.dir.path().join("missing.db");
    let (code, err, json) = run(&missing);
    assert_eq!(code, Some(1));
    assert!(err.contains("does not exist: run `slicectl init`"), "{err}");
    assert_eq!(json["error"], "runtime");
    assert!(!missing.exists());

    let corrupt = env.dir.path().join("corrupt.db");
    std::fs::write(&corrupt, vec![7u8; 4096]).unwrap();
    let (code, err, _) = run(&corrupt);
    assert_eq!(code, Some(1));
    assert!(err.contains("not a database"), "{err}");

    let (code, err, _) = run(env.dir.path());
    assert_eq!(code, Some(1));
    assert!(err.contains("database"), "{err}");
}

#[test]
fn bad_config_names_the_key() {
    let env = env();
    std::fs::write(&env.config, "[lockout]\ndenny = 3\n").unwrap();
    let out = env.slicectl(&["user", "list"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("denny"), "{}", stderr(&out));
}

#[test]
fn init_is_idempotent() {
    let env = env();
    add(&env, &["alice"], b"long enough 1\n");
    let report = env.slicectl_json(&["init"]);
    assert_eq!(report["created"], false);
    assert_eq!(user_count(&env), 1);
}

#[test]
fn help_explains_every_command() {
    let env = env();
    for args in [
        &["--help"][..],
        &["user", "--help"],
        &["user", "add", "--help"],
        &["user", "mod", "--help"],
    ] {
        let out = env.slicectl(args, None);
        assert!(out.status.success());
        assert!(!out.stdout.is_empty());
    }
    let add_help =
        String::from_utf8(env.slicectl(&["user", "add", "--help"], None).stdout).unwrap();
    for flag in [
        "--password-stdin",
        "--role",
        "--email",
        "--full-name",
        "--cpu",
        "--memory",
        "--disk",
        "--tasks",
        "--gpus",
        "--cpu-weight",
        "--io-weight",
        "--memory-high",
        "--expires",
        "--no-system-account",
    ] {
        assert!(add_help.contains(flag), "{flag}");
    }
}

#[test]
fn completions_and_manual_pages_come_from_the_command_line() {
    // No config and no database needed: a broken config path does not matter.
    let bin = env!("CARGO_BIN_EXE_slicectl");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .env("DIYCLOUD_CONFIG", "/nonexistent/diycloud.toml")
            .output()
            .unwrap()
    };
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef slicectl"),
        ("fish", "complete -c slicectl"),
    ] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("unlock") && script.contains("--no-system-account"),
            "{shell}"
        );
    }
    assert_eq!(run(&["completions", "tcsh"]).status.code(), Some(2));

    let dir = tempfile::tempdir().unwrap();
    let out = run(&["manpages", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = std::fs::read_to_string(dir.path().join("slicectl-user-add.8")).unwrap();
    assert!(page.contains(".TH slicectl-user-add 8"), "{page}");
    assert!(page.contains("no\\-system\\-account"));
    assert!(dir.path().join("slicectl.8").exists());
    assert!(!dir.path().join("slicectl-manpages.8").exists(), "hidden");
    assert_eq!(
        run(&["manpages", "/nonexistent/dir"]).status.code(),
        Some(1)
    );
}
