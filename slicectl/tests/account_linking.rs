//! Which uid a user's limits bind to, and who may link an existing system
//! account, with the distribution's real useradd/userdel (root; CI runs as
//! root). Each test uses throwaway names and removes what it made.
//!
//! - An admin of the REST API is not root: linking an existing account
//!   (setting a password its owner does not know) is refused unless
//!   `[accounts] link_from_web` allows it, and never for an account that
//!   can become root unless it says "all".
//! - After `userdel` and `useradd`, the record's uid is someone else's:
//!   `apply`, `prepare` and `doctor` refuse to act on it until
//!   `slicectl user relink`.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported; waiting for a
// server to listen reads the clock.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
#![allow(clippy::disallowed_methods)]

use std::io::Write;
use std::process::{Command, Stdio};

use diycloud_tests::api_process::ApiProcess as Api;
use serde_json::{json, Value};

/// A name unique to this test run; the account is removed on drop.
struct Account(String);

impl Account {
    fn new(tag: &str, extra: &[&str]) -> Self {
        let name = format!("dcl{}{tag}", std::process::id() % 100_000);
        let out = Command::new("useradd")
            .args(extra)
            .arg(&name)
            .output()
            .unwrap();
        assert!(out.status.success(), "useradd: {out:?}");
        // The owner's own password, which a takeover would make useless.
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        write!(chpasswd.stdin.take().unwrap(), "{name}:owners-own-password").unwrap();
        assert!(chpasswd.wait().unwrap().success());
        Account(name)
    }

    fn uid(&self) -> u32 {
        let out = Command::new("id").args(["-u", &self.0]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    fn shadow(&self) -> String {
        let out = Command::new("getent")
            .args(["shadow", &self.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let _ = Command::new("userdel").args(["--remove", &self.0]).output();
        let _ = Command::new("groupdel").arg(&self.0).output();
    }
}

/// `POST /api/v1/users` linking the existing account `name`.
fn link(api: &Api, token: &str, name: &str) -> (u16, Value) {
    api.call(
        "POST",
        "/api/v1/users",
        Some(token),
        &json!({"username": name, "password": "a takeover password", "system_account": false}),
    )
}

fn log_in(api: &Api, name: &str, password: &str) -> String {
    let body = json!({"username": name, "password": password});
    let (status, answer) = api.call("POST", "/api/v1/auth/login", None, &body);
    assert_eq!(status, 200, "{answer}");
    answer["token"].as_str().unwrap().to_owned()
}

fn env_with(link_from_web: &str) -> diycloud_tests::Env {
    let env = diycloud_tests::Env::new(&format!(
        "[accounts]\nlink_from_web = \"{link_from_web}\"\n"
    ));
    env.add_user("dcladmin", "the admins password", &["--role", "admin"]);
    env
}

#[test]
fn an_api_admin_cannot_take_over_an_existing_account() {
    diycloud_tests::use_slicectl(env!("CARGO_BIN_EXE_slicectl"));
    if diycloud_tests::skip_unless_root("creating system accounts") {
        return;
    }
    let plain = Account::new("p", &[]);
    let sudoer = Account::new("s", &["-G", "sudo"]);
    let shadow_before = plain.shadow();

    // The default: linking is root's decision.
    let env = env_with("none");
    let api = Api::start(&env);
    let token = log_in(&api, "dcladmin", "the admins password");
    for account in [&plain, &sudoer] {
        let (status, body) = link(&api, &token, &account.0);
        assert_eq!(status, 403, "{}: {body}", account.0);
        assert!(
            body.to_string().contains("slicectl user add"),
            "the refusal says what root runs: {body}"
        );
        let (status, _) = api.call(
            "GET",
            &format!("/api/v1/users/{}", account.0),
            Some(&token),
            &Value::Null,
        );
        assert_eq!(status, 404, "no record was made for {}", account.0);
    }
    assert_eq!(
        plain.shadow(),
        shadow_before,
        "the owner's password is untouched"
    );
    drop(api);

    // "unprivileged": a plain account, yes; one in sudo, never.
    let env = env_with("unprivileged");
    let api = Api::start(&env);
    let token = log_in(&api, "dcladmin", "the admins password");
    let (status, body) = link(&api, &token, &sudoer.0);
    assert_eq!(status, 403, "{body}");
    assert!(body.to_string().contains("sudo"), "{body}");
    let (status, body) = link(&api, &token, &plain.0);
    assert!(status == 201 || status == 200, "{status} {body}");
    drop(api);

    // "all": root allowed even that, in the config.
    let env = env_with("all");
    let api = Api::start(&env);
    let token = log_in(&api, "dcladmin", "the admins password");
    let (status, body) = link(&api, &token, &sudoer.0);
    assert!(status == 201 || status == 200, "{status} {body}");
    // Root's slicectl links without asking the config.
    let cli = env_with("none");
    let out = cli.slicectl(
        &[
            "user",
            "add",
            &plain.0,
            "--password-stdin",
            "--no-system-account",
        ],
        Some(b"roots own choice 1\n"),
    );
    assert!(diycloud_tests::added(&out), "{out:?}");
    for account in [&plain, &sudoer] {
        let _ = Command::new("gpasswd")
            .args(["--delete", &account.0, "diycloud"])
            .output();
    }
}

#[test]
fn limits_never_land_on_the_uid_an_account_had_before() {
    diycloud_tests::use_slicectl(env!("CARGO_BIN_EXE_slicectl"));
    if diycloud_tests::skip_unless_root("creating system accounts") {
        return;
    }
    let env = diycloud_tests::Env::new("");
    let alice = Account::new("a", &[]);
    let old_uid = alice.uid();
    let out = env.slicectl(
        &[
            "user",
            "add",
            &alice.0,
            "--password-stdin",
            "--no-system-account",
            "--memory",
            "1G",
        ],
        Some(b"alices password 1\n"),
    );
    assert!(diycloud_tests::added(&out), "{out:?}");
    assert_eq!(
        env.slicectl_json(&["user", "show", &alice.0])["uid"],
        old_uid
    );
    // The account is deleted; her old uid goes to someone else, and her
    // name comes back with another uid.
    let gone = Command::new("userdel").arg(&alice.0).output().unwrap();
    assert!(gone.status.success(), "{gone:?}");
    let _ = Command::new("groupdel").arg(&alice.0).output();
    let mallory = Account::new("m", &["-u", &old_uid.to_string()]);
    assert_eq!(mallory.uid(), old_uid);
    let again = Command::new("useradd")
        .args(["-u", &(old_uid + 7).to_string(), &alice.0])
        .output()
        .unwrap();
    assert!(again.status.success(), "{again:?}");
    for args in [vec!["apply", &alice.0], vec!["prepare", &alice.0]] {
        let out = env.slicectl(&args, None);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("the record says uid {old_uid}")),
            "{args:?} names the mismatch: {stderr}"
        );
        assert!(
            !stderr.contains(&format!("user-{old_uid}.slice")),
            "{args:?} went for mallory's slice: {stderr}"
        );
        assert!(stderr.contains("slicectl user relink"), "{stderr}");
    }
    let doctor = env.slicectl(&["--json", "doctor"], None);
    let checks: Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let uids = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "uids")
        .unwrap();
    assert_eq!(uids["status"], "fail", "{uids}");
    assert!(
        uids["detail"].as_str().unwrap().contains(&alice.0),
        "{uids}"
    );
    // Root checks and relinks: the record takes the account's uid now.
    let out = env.slicectl(&["user", "relink", &alice.0], None);
    assert!(diycloud_tests::added(&out), "{out:?}");
    assert_eq!(
        env.slicectl_json(&["user", "show", &alice.0])["uid"],
        old_uid + 7
    );
}
