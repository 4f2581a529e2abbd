//! slicectl's answers to careless or hostile input: JSON for every error,
//! hidden characters, values that are valid but surely a mistake, service
//! accounts, foreign database files, and a database file that holds
//! everything by itself (checkpointed) plus `slicectl backup`.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use diycloud_tests::Env;

fn env() -> Env {
    diycloud_tests::test_env!("")
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn json_usage_errors_are_one_json_document() {
    let env = env();
    for args in [
        &["user", "add", "alice", "--memory", "2Q", "--json"][..],
        &["user", "add", "Alice", "--json"],
        &["--json", "user", "mod", "alice", "--cpu", "-1"],
        &["user", "frobnicate", "--json"],
    ] {
        let out = env.slicectl(args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let doc = json_of(&out);
        assert_eq!(doc["error"], "usage", "{args:?}: {doc}");
        assert!(!doc["detail"].as_str().unwrap().is_empty());
    }
    let out = env.slicectl(&["--help", "--json"], None);
    assert_eq!(out.status.code(), Some(0), "help is not an error");
}

#[test]
fn hidden_characters_in_profile_text_are_refused() {
    let env = env();
    for name in ["Mallory \u{202E}nimda", "zero\u{200B}width", "tab\there"] {
        let out = env.slicectl(
            &[
                "user",
                "add",
                "mallory",
                "--no-system-account",
                "--password-stdin",
                "--full-name",
                name,
            ],
            Some(b"long enough 1\n"),
        );
        assert_eq!(out.status.code(), Some(2), "{name:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("U+"),
            "{out:?}"
        );
    }
}

#[test]
fn tiny_limits_and_past_expiry_are_accepted_with_a_warning() {
    let env = env();
    let out = env.slicectl(
        &[
            "user",
            "add",
            "tiny",
            "--no-system-account",
            "--password-stdin",
            "--memory",
            "1",
            "--tasks",
            "1",
            "--expires",
            "2001-01-01",
            "--json",
        ],
        Some(b"long enough 1\n"),
    );
    assert!(out.status.success(), "{out:?}");
    let doc = json_of(&out);
    let warnings: Vec<String> = doc["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: memory 1 is below 64M"),
        "{stderr}"
    );
    assert!(stderr.contains("has passed"), "{stderr}");
    let out = env.slicectl(&["user", "mod", "tiny", "--memory", "2G"], None);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}

#[test]
fn a_gpu_uuid_in_two_cases_is_one_gpu() {
    let env = env();
    let out = env.slicectl(
        &[
            "user",
            "add",
            "g",
            "--no-system-account",
            "--password-stdin",
            "--gpus",
            "GPU-8f6a2c1e-1111-2222-3333-44445555aaaa,gpu-8F6A2C1E-1111-2222-3333-44445555AAAA",
        ],
        Some(b"long enough 1\n"),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn service_accounts_are_linked_only_when_forced() {
    // `man` (uid 6 on Debian) is below UID_MIN.
    let env = env();
    let out = env.slicectl(
        &[
            "user",
            "add",
            "man",
            "--no-system-account",
            "--password-stdin",
        ],
        Some(b"long enough 1\n"),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("UID_MIN") && stderr.contains("--allow-service-account"),
        "{stderr}"
    );
    let out = env.slicectl(
        &["user", "add", "man", "--password-stdin"],
        Some(b"long enough 1\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("--no-system-account"),
        "a service account is not recommended for linking: {out:?}"
    );
    env.add_user("man", "long enough 1", &["--allow-service-account"]);
}

#[test]
fn init_refuses_sqlite_files_that_are_not_ours() {
    let env = env();
    let other = env.dir.path().join("other.db");
    let status = std::process::Command::new("sqlite3")
        .arg(&other)
        .arg("CREATE TABLE photos (id INTEGER);")
        .status()
        .unwrap();
    assert!(status.success());
    let junk = env.dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database at all, just text\n").unwrap();
    for path in [&other, &junk] {
        let out = env.slicectl_on(path, &["init"], None);
        assert_eq!(out.status.code(), Some(1), "{path:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not a diycloud database"),
            "{out:?}"
        );
    }
    // Ours: init again is fine.
    assert!(env.slicectl(&["init"], None).status.success());
}

#[test]
fn the_database_file_alone_holds_every_change_and_backup_copies_it() {
    let env = env();
    env.add_user("alice", "long enough 1", &["--cpu", "2"]);
    env.add_user("bob", "long enough 2", &[]);
    assert!(env
        .slicectl(&["user", "mod", "bob", "--memory", "3G"], None)
        .status
        .success());

    // A plain copy of the main file, without its -wal: everything is there.
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join("copy.db");
    std::fs::copy(&env.db, &copy).unwrap();
    let out = env.slicectl_on(&copy, &["user", "list", "--json"], None);
    let users = json_of(&out);
    assert_eq!(users.as_array().unwrap().len(), 2, "{users}");
    assert_eq!(users[1]["memory"], "3G");

    let backup = copy_dir.path().join("backup.db");
    let out = env.slicectl(&["backup", backup.to_str().unwrap(), "--json"], None);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json_of(&out)["users"], 2);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = env.slicectl(&["backup", backup.to_str().unwrap()], None);
    assert_eq!(
        again.status.code(),
        Some(1),
        "an existing file is not overwritten"
    );
    let out = env.slicectl_on(&backup, &["user", "show", "alice", "--json"], None);
    assert_eq!(json_of(&out)["cpu"], "2");
}
