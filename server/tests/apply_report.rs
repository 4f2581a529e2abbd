//! Every front door reports what `apply` reported: with systemd out of
//! reach, the portal's "Apply the allocation again", "Save" and "Create
//! user" must not say the limits were applied while the API says
//! `"applied": false` and `slicectl` exits 1.
//!
//! The failure is the real one: this test needs a node where nothing
//! answers on the system bus (a container without systemd as PID 1, as the
//! fast tier runs in); elsewhere it says so and checks nothing.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use libdiycloud::model::time::Timestamp;
use libdiycloud::model::{Allocation, Username};
use libdiycloud::store::{NewUser, Store};
use serde_json::json;

/// A user with a uid (so a slice to apply) that exists on every Debian
/// node: its record only, made straight in the database (no account is
/// created or changed).
const LINKED: &str = "nobody";
const LINKED_UID: u32 = 65534;

fn systemd_reachable() -> bool {
    std::path::Path::new(
        libdiycloud::adapters::systemd::SYSTEM_BUS_ADDRESS.trim_start_matches("unix:path="),
    )
    .exists()
}

/// `text` as the pages escape it.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let v: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    b => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn post_form(server: &Server, token: &str, path: &str, pairs: &[(&str, &str)]) -> Reply {
    let csrf = libdiycloud::usecases::auth::form_token(token);
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(pairs);
    let jar = format!("diycloud_session={token}");
    server.raw(
        "POST",
        path,
        &[
            ("Cookie", &jar),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        form(&all).as_bytes(),
    )
}

#[test]
fn the_portal_shows_the_apply_reports_failure() {
    if systemd_reachable() {
        eprintln!("skipped: the system bus answers here, so applying cannot fail for real");
        return;
    }
    let server = start(100_000);
    let (mut store, _) = Store::init(&server.dir.path().join("db")).unwrap();
    let mut linked = NewUser::new(
        Username::parse(LINKED).unwrap(),
        "$argon2id$unused".into(),
        Allocation::default(),
    );
    linked.uid = Some(LINKED_UID);
    store
        .write(|tx| tx.insert_user(&linked, Timestamp(1_000_000)))
        .unwrap();
    drop(store);
    let admin = server.token("boss", ADMIN_PASSWORD);

    // What the API says: not applied, and why.
    let api = server.call(
        "POST",
        &format!("/api/v1/users/{LINKED}/apply"),
        Some(&admin),
        None,
    );
    assert_eq!(api.status, 200, "{}", api.body);
    assert_eq!(api.body["applied"], false, "{}", api.body);
    let failed = api.body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["result"] == "failed")
        .unwrap_or_else(|| panic!("no failed step: {}", api.body))
        .clone();
    let error = failed["error"].as_str().unwrap().to_owned();
    assert!(error.contains("systemd"), "{error}");

    // "Apply the allocation again": the failure, what failed, what to run.
    let session = server.token("boss", ADMIN_PASSWORD);
    let page = format!("/portal/admin/users/{LINKED}");
    let apply = post_form(
        &server,
        &session,
        &format!("{page}/state"),
        &[("action", "apply")],
    );
    assert_ne!(apply.status, 303, "a redirect to a success message");
    assert_eq!(apply.status, 500, "{}", apply.text);
    assert!(!apply.text.contains("was applied again"), "{}", apply.text);
    assert!(apply.text.contains("failed"), "{}", apply.text);
    assert!(
        apply.text.contains(&esc(&error)),
        "{error}:\n{}",
        apply.text
    );
    assert!(
        apply.text.contains(&format!("slicectl apply {LINKED}")),
        "{}",
        apply.text
    );

    // "Save": the change is kept (as the CLI keeps it), the failure shown.
    let save = post_form(
        &server,
        &session,
        &page,
        &[("role", "user"), ("memory", "300M"), ("cpu", "1")],
    );
    assert_eq!(save.status, 500, "{}", save.text);
    assert!(!save.text.contains("limits apply at once"), "{}", save.text);
    assert!(save.text.contains("saved"), "{}", save.text);
    assert!(save.text.contains(&esc(&error)), "{}", save.text);
    assert!(save.text.contains(&format!("slicectl apply {LINKED}")));
    let record = server.call(
        "GET",
        &format!("/api/v1/users/{LINKED}"),
        Some(&admin),
        None,
    );
    assert_eq!(record.body["memory"], "300M");
    // The API's PATCH reports the same failed step.
    let patch = server.call(
        "PATCH",
        &format!("/api/v1/users/{LINKED}"),
        Some(&admin),
        Some(json!({"memory": "400M"})),
    );
    assert_eq!(patch.status, 200);
    assert!(
        patch.body["applied"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["result"] == "failed"),
        "{}",
        patch.body
    );
}

#[test]
fn creating_a_user_without_an_account_does_not_claim_limits_were_applied() {
    let server = start(100_000);
    let session = server.token("boss", ADMIN_PASSWORD);
    let created = post_form(
        &server,
        &session,
        "/portal/admin/new",
        &[
            ("username", "rec"),
            ("password", "rec password 1"),
            ("role", "user"),
            ("memory", "300M"),
        ],
    );
    // What `slicectl user add --no-system-account` and the API report:
    // created, nothing applied (no slice without an account).
    assert_eq!(created.status, 200, "{}", created.text);
    assert!(created.text.contains("was created"), "{}", created.text);
    assert!(
        !created.text.contains("allocation applied"),
        "{}",
        created.text
    );
    assert!(
        created
            .text
            .contains("Nothing was applied: no system account"),
        "{}",
        created.text
    );
    // "Apply the allocation again" for them: nothing to apply, as
    // `slicectl apply rec` says (exit 1).
    let apply = post_form(
        &server,
        &session,
        "/portal/admin/users/rec/state",
        &[("action", "apply")],
    );
    assert_eq!(apply.status, 409, "{}", apply.text);
    assert!(!apply.text.contains("was applied again"));
    assert!(
        apply
            .text
            .contains("Nothing was applied: no system account"),
        "{}",
        apply.text
    );
}
