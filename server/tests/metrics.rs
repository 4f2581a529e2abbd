//! `/metrics` over real HTTP on loopback: who may read the per-user series
//! (who is admin, locked, disabled; each user's usage), and what everyone
//! else gets.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use serde_json::json;

const SCRAPE_TOKEN: &str = "5c7d0a61e1b04f0f9a3c2d8e7b6a5f40";

/// A server with `carol` (locked) and `dan` (disabled) besides the admin.
fn server_with_users(api: &str) -> (Server, String) {
    let server = start_with(100_000, api);
    let admin = server.token("boss", ADMIN_PASSWORD);
    for name in ["carol", "dan"] {
        let reply = server.add(
            &admin,
            json!({"username": name, "password": format!("{name} password 1"), "system_account": false}),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    for _ in 0..3 {
        server.login("carol", "wrong");
    }
    let disabled = server.call(
        "PATCH",
        "/api/v1/users/dan",
        Some(&admin),
        Some(json!({"active": false})),
    );
    assert_eq!(disabled.status, 200);
    (server, admin)
}

/// A scrape token file of `mode` in `dir`.
fn token_file(dir: &std::path::Path, mode: u32) -> std::path::PathBuf {
    let path = dir.join("metrics-token");
    // As an editor or `echo` leaves it: with a newline.
    std::fs::write(&path, format!("{SCRAPE_TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn scrape(server: &Server, headers: &[(&str, &str)]) -> Reply {
    server.raw("GET", "/metrics", headers, b"")
}

/// No line names a user.
fn assert_aggregate_only(reply: &Reply) {
    assert_eq!(reply.status, 200, "{}", reply.text);
    for line in reply.text.lines().filter(|l| !l.starts_with('#')) {
        assert!(!line.contains("user=\""), "a per-user series: {line}");
    }
    for name in ["boss", "carol", "dan"] {
        assert!(!reply.text.contains(name), "{name} named:\n{}", reply.text);
    }
}

fn assert_per_user(reply: &Reply) {
    assert_eq!(reply.status, 200, "{}", reply.text);
    for line in [
        "diycloud_user_info{user=\"boss\",role=\"admin\",state=\"active\"} 1",
        "diycloud_user_info{user=\"carol\",role=\"user\",state=\"locked\"} 1",
        "diycloud_user_info{user=\"dan\",role=\"user\",state=\"disabled\"} 1",
        "diycloud_metrics_per_user 1",
    ] {
        assert!(reply.text.contains(line), "{line}:\n{}", reply.text);
    }
}

#[test]
fn without_a_scrape_credential_a_local_process_gets_only_aggregates() {
    let (server, _) = server_with_users("");
    let local = scrape(&server, &[]);
    assert_aggregate_only(&local);
    // The aggregates are still there, and say what was left out.
    for line in [
        "diycloud_logins_total{result=\"success\"} 1",
        "diycloud_logins_total{result=\"failure\"} 3",
        "diycloud_lockouts_total 1",
        "diycloud_users{state=\"active\"} 1",
        "diycloud_users{state=\"locked\"} 1",
        "diycloud_users{state=\"disabled\"} 1",
        "diycloud_metrics_per_user 0",
        "diycloud_usage_up ",
    ] {
        assert!(local.text.contains(line), "{line}:\n{}", local.text);
    }
}

#[test]
fn the_scrape_token_from_its_file_unlocks_the_per_user_series() {
    let dir = tempfile::tempdir().unwrap();
    let file = token_file(dir.path(), 0o640);
    let (server, admin) =
        server_with_users(&format!("metrics_token_file = \"{}\"", file.display()));
    let bearer = format!("Bearer {SCRAPE_TOKEN}");
    assert_per_user(&scrape(&server, &[("Authorization", &bearer)]));
    // Wherever it comes from (a Prometheus elsewhere, through a proxy).
    assert_per_user(&scrape(
        &server,
        &[("Authorization", &bearer), ("X-Forwarded-For", "192.0.2.9")],
    ));
    // No token: aggregates; a wrong one, or one a byte short: 401.
    assert_aggregate_only(&scrape(&server, &[]));
    for wrong in [
        "Bearer 5c7d0a61e1b04f0f9a3c2d8e7b6a5f41".to_owned(),
        format!("Bearer {}", &SCRAPE_TOKEN[..SCRAPE_TOKEN.len() - 1]),
        format!("Bearer {SCRAPE_TOKEN}0"),
        "Bearer ".to_owned(),
        format!("Basic {SCRAPE_TOKEN}"),
    ] {
        let reply = scrape(&server, &[("Authorization", &wrong)]);
        assert_eq!(reply.status, 401, "{wrong}: {}", reply.text);
    }
    // An admin's session still reads everything; a user's does not.
    assert_per_user(&scrape(
        &server,
        &[("Authorization", &format!("Bearer {admin}"))],
    ));
    let erin = server.add(
        &admin,
        json!({"username": "erin", "password": "erin password 1", "system_account": false}),
    );
    assert_eq!(erin.status, 201);
    let user = server.token("erin", "erin password 1");
    let reply = scrape(&server, &[("Authorization", &format!("Bearer {user}"))]);
    assert_eq!(reply.status, 403, "{}", reply.text);
}

#[test]
fn a_token_file_others_can_read_is_no_credential() {
    let dir = tempfile::tempdir().unwrap();
    let file = token_file(dir.path(), 0o644);
    let (server, _) = server_with_users(&format!("metrics_token_file = \"{}\"", file.display()));
    let bearer = format!("Bearer {SCRAPE_TOKEN}");
    assert_eq!(scrape(&server, &[("Authorization", &bearer)]).status, 401);
    assert_aggregate_only(&scrape(&server, &[]));
    // Once only its owner's group may read it, it counts (read at each
    // scrape, as Prometheus reads its credentials_file).
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_per_user(&scrape(&server, &[("Authorization", &bearer)]));
    std::fs::write(&file, "").unwrap();
    assert_eq!(scrape(&server, &[("Authorization", &bearer)]).status, 401);
}

#[test]
fn metrics_public_is_the_explicit_opt_out() {
    let (server, _) = server_with_users("metrics_public = true");
    assert_per_user(&scrape(&server, &[]));
    // Still only for a process on the node asking directly.
    assert_eq!(
        scrape(&server, &[("X-Forwarded-For", "192.0.2.9")]).status,
        401
    );
}
