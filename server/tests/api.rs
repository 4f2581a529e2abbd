//! The API over real HTTP on loopback: a server on an ephemeral port, a
//! plain HTTP/1.1 client on a TCP socket, a real SQLite database. Users are
//! made through the API without system accounts (their apply steps are
//! skipped: systemd is the VM tier's business).
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};

#[test]
fn sessions_me_and_password_change() {
    let server = start(100);
    let login = server.login("boss", ADMIN_PASSWORD);
    assert_eq!(login.status, 200);
    let token = login.body["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);
    let cookie = login.header("set-cookie").unwrap();
    for part in ["diycloud_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: {cookie}"
    );
    assert_eq!(login.body["user"]["username"], "boss");

    let me = server.call("GET", "/api/v1/me", Some(&token), None);
    assert_eq!((me.status, me.body["role"].as_str()), (200, Some("admin")));
    // The cookie works like the header.
    let session = cookie.split(';').next().unwrap();
    let by_cookie = server.raw("GET", "/api/v1/me", &[("Cookie", session)], b"");
    assert_eq!(by_cookie.status, 200);

    // Wrong password: 401 that says nothing about why.
    let wrong = server.login("boss", "nope");
    let unknown = server.login("ghost", "nope");
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert_eq!(wrong.body, unknown.body);

    // Password change: the old one is checked; every session ends.
    let other = server.token("boss", ADMIN_PASSWORD);
    let change = |current: &str, new: &str| {
        server.call(
            "PUT",
            "/api/v1/me/password",
            Some(&token),
            Some(json!({"current_password": current, "new_password": new})),
        )
    };
    assert_eq!(change("not it", "a new password 2").status, 403);
    let short = change(ADMIN_PASSWORD, "x");
    assert_eq!(short.status, 422);
    assert!(short.detail().contains("new_password"), "{}", short.body);
    assert_eq!(change(ADMIN_PASSWORD, "a new password 2").status, 204);
    for t in [&token, &other] {
        assert_eq!(server.call("GET", "/api/v1/me", Some(t), None).status, 401);
    }
    assert_eq!(server.login("boss", ADMIN_PASSWORD).status, 401);
    let token = server.token("boss", "a new password 2");

    // Logout revokes the token and clears the cookie.
    let out = server.call("POST", "/api/v1/auth/logout", Some(&token), None);
    assert_eq!(out.status, 204);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        server.call("GET", "/api/v1/me", Some(&token), None).status,
        401
    );
    assert_eq!(
        server
            .call("POST", "/api/v1/auth/logout", Some(&token), None)
            .status,
        401
    );
}

#[test]
fn tokens_missing_forged_expired_or_of_a_disabled_user_get_401() {
    let server = start(100);
    let admin = server.token("boss", ADMIN_PASSWORD);
    let added = server.add(
        &admin,
        json!({"username": "alice", "password": "alice password 1", "system_account": false}),
    );
    assert_eq!(added.status, 201, "{}", added.body);
    let alice = server.token("alice", "alice password 1");

    assert_eq!(server.call("GET", "/api/v1/me", None, None).status, 401);
    let mut forged = alice.clone();
    forged.replace_range(..1, if alice.starts_with('a') { "b" } else { "a" });
    for bad in [forged.as_str(), "abc", "", &"z".repeat(64)] {
        let reply = server.call("GET", "/api/v1/me", Some(bad), None);
        assert_eq!(reply.status, 401, "{bad}");
        assert_eq!(reply.body["error"], "unauthorized");
    }
    let basic = server.raw(
        "GET",
        "/api/v1/me",
        &[("Authorization", "Basic Ym9zcw==")],
        b"",
    );
    assert_eq!(basic.status, 401);

    // Disabled: her token stops working at once, and stays dead.
    let disable = |active: bool| {
        server.call(
            "PATCH",
            "/api/v1/users/alice",
            Some(&admin),
            Some(json!({"active": active})),
        )
    };
    assert_eq!(
        server.call("GET", "/api/v1/me", Some(&alice), None).status,
        200
    );
    assert_eq!(disable(false).status, 200);
    assert_eq!(
        server.call("GET", "/api/v1/me", Some(&alice), None).status,
        401
    );
    assert_eq!(server.login("alice", "alice password 1").status, 401);
    assert_eq!(disable(true).status, 200);
    assert_eq!(
        server.call("GET", "/api/v1/me", Some(&alice), None).status,
        401
    );

    // Expired after the configured hour.
    let alice = server.token("alice", "alice password 1");
    server.clock.fetch_add(3599, Ordering::SeqCst);
    assert_eq!(
        server.call("GET", "/api/v1/me", Some(&alice), None).status,
        200
    );
    server.clock.fetch_add(1, Ordering::SeqCst);
    assert_eq!(
        server.call("GET", "/api/v1/me", Some(&alice), None).status,
        401
    );

    // Deleted: gone with her sessions (the admin's expired too).
    let admin = server.token("boss", ADMIN_PASSWORD);
    let alice = server.token("alice", "alice password 1");
    let deleted = server.call("DELETE", "/api/v1/users/alice", Some(&admin), None);
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(
        server.call("GET", "/api/v1/me", Some(&alice), None).status,
        401
    );
}

#[test]
fn admin_crud_apply_usage_and_the_user_role() {
    let server = start(100);
    let admin = server.token("boss", ADMIN_PASSWORD);
    let added = server.add(
        &admin,
        json!({
            "username": "bob", "password": "bob password 12", "system_account": false,
            "cpu": 1.5, "memory": "1G", "disk": "10G", "tasks": 256, "gpus": "none",
            "cpu_weight": 300, "io_weight": "200", "memory_high": "768M",
            "email": "bob@example.org", "full_name": "Bob B", "expires": "2099-01-31",
        }),
    );
    assert_eq!(added.status, 201, "{}", added.body);
    let user = &added.body["user"];
    assert_eq!(
        (
            user["cpu"].as_str(),
            user["memory"].as_str(),
            user["tasks"].as_str()
        ),
        (Some("1.5"), Some("1G"), Some("256"))
    );
    assert_eq!(
        (
            user["cpu_weight"].as_u64(),
            user["io_weight"].as_u64(),
            user["memory_high"].as_str()
        ),
        (Some(300), Some(200), Some("768M"))
    );
    assert_eq!(user["expires"], "2099-01-31");
    assert_eq!(added.body["applied"]["steps"][0]["result"], "skipped");

    let list = server.call("GET", "/api/v1/users", Some(&admin), None);
    let names: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names, ["bob", "boss"]);

    let changed = server.call(
        "PATCH",
        "/api/v1/users/bob",
        Some(&admin),
        Some(json!({"memory": "2G", "email": "", "role": "user"})),
    );
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.body["user"]["memory"], "2G");
    assert_eq!(changed.body["user"]["email"], Value::Null, "cleared");
    let shown = server.call("GET", "/api/v1/users/bob", Some(&admin), None);
    assert_eq!(shown.body["memory"], "2G");
    assert!(
        shown.body["audit"].as_array().unwrap().len() >= 2,
        "{}",
        shown.body
    );

    let applied = server.call("POST", "/api/v1/users/bob/apply", Some(&admin), None);
    assert_eq!(applied.status, 200);
    assert_eq!(applied.body["username"], "bob");
    let usage = server.call("GET", "/api/v1/usage", Some(&admin), None);
    assert_eq!(usage.body.as_array().unwrap().len(), 2);

    // A `user` sees themself only.
    let bob = server.token("bob", "bob password 12");
    for (method, path, body) in [
        ("GET", "/api/v1/users", None),
        (
            "POST",
            "/api/v1/users",
            Some(json!({"username": "eve", "password": "eve password 12"})),
        ),
        ("GET", "/api/v1/users/boss", None),
        ("PATCH", "/api/v1/users/bob", Some(json!({"memory": "64G"}))),
        ("DELETE", "/api/v1/users/boss", None),
        ("POST", "/api/v1/users/bob/apply", None),
        ("POST", "/api/v1/users/boss/unlock", None),
        ("GET", "/api/v1/usage?user=boss", None),
    ] {
        let reply = server.call(method, path, Some(&bob), body);
        assert_eq!(reply.status, 403, "{method} {path}: {}", reply.body);
        assert_eq!(reply.body["error"], "forbidden");
    }
    let own = server.call("GET", "/api/v1/users/bob", Some(&bob), None);
    assert_eq!(own.status, 200);
    assert!(
        own.body.get("audit").is_none(),
        "the audit log is for admins"
    );
    let own_usage = server.call("GET", "/api/v1/usage", Some(&bob), None);
    assert_eq!(own_usage.body[0]["username"], "bob");
    assert_eq!(own_usage.body.as_array().unwrap().len(), 1);

    // Wrong passwords through the API lock the account (deny = 3); the
    // admin's unlock clears it.
    for _ in 0..3 {
        assert_eq!(server.login("bob", "wrong").status, 401);
    }
    assert_eq!(server.login("bob", "bob password 12").status, 401, "locked");
    assert_eq!(
        server.call("GET", "/api/v1/me", Some(&bob), None).status,
        401
    );
    let unlocked = server.call("POST", "/api/v1/users/bob/unlock", Some(&admin), None);
    assert_eq!(unlocked.body["was_locked"], true);
    assert_eq!(server.login("bob", "bob password 12").status, 200);
}

#[test]
fn bad_input_gets_the_right_status_and_names_the_rule() {
    let server = start(5);
    let admin = server.token("boss", ADMIN_PASSWORD);
    let auth = format!("Bearer {admin}");
    let post = |body: &[u8]| {
        server.raw(
            "POST",
            "/api/v1/users",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &auth),
            ],
            body,
        )
    };
    let malformed = post(b"{\"username\": ");
    assert_eq!(
        (malformed.status, malformed.body["error"].as_str()),
        (400, Some("bad_request"))
    );
    assert_eq!(post(b"not json").status, 400);
    let wrong_type = post(br#"{"username": 5, "password": "x"}"#);
    assert_eq!(wrong_type.status, 422);
    let unknown_field = post(br#"{"username": "x", "password": "x", "colour": "red"}"#);
    assert_eq!(unknown_field.status, 422);
    assert!(
        unknown_field.detail().contains("colour"),
        "{}",
        unknown_field.body
    );
    for (body, field, rule) in [
        (
            json!({"username": "Bad Name", "password": "pw password 1"}),
            "username",
            "a user name starts with",
        ),
        (
            json!({"username": "root", "password": "pw password 1"}),
            "username",
            "reserved",
        ),
        (
            json!({"username": "carl", "password": "pw password 1", "memory": "lots"}),
            "memory",
            "a size is",
        ),
        (
            json!({"username": "carl", "password": "pw password 1", "cpu": -1}),
            "cpu",
            "",
        ),
        (
            json!({"username": "carl", "password": "pw password 1", "tasks": "0"}),
            "tasks",
            "",
        ),
        (
            json!({"username": "carl", "password": "pw password 1", "cpu_weight": 0}),
            "cpu_weight",
            "from 1 to 10000",
        ),
        (
            json!({"username": "carl", "password": "pw password 1", "io_weight": "20000"}),
            "io_weight",
            "from 1 to 10000",
        ),
        (
            json!({"username": "carl", "password": "pw password 1", "memory_high": "2Q"}),
            "memory_high",
            "a size is",
        ),
        (
            json!({"username": "carl", "password": "pw password 1", "system_account": false,
                   "memory": "512M", "memory_high": "1G"}),
            "memory-high",
            "must not exceed memory",
        ),
        (
            json!({"username": "carl", "password": "pw password 1", "gpus": "0,0"}),
            "gpus",
            "GPU list",
        ),
        (
            json!({"username": "carl", "password": "pw password 1", "role": "god"}),
            "role",
            "role",
        ),
        (
            json!({"username": "carl", "password": "pw password 1", "expires": "tomorrow"}),
            "expires",
            "never",
        ),
        (
            json!({"username": "carl", "password": "pw password 1", "email": "nobody"}),
            "email",
            "name@example.org",
        ),
        (
            json!({"username": "carl", "password": "x", "system_account": false}),
            "",
            "shorter than",
        ),
    ] {
        let reply = post(body.to_string().as_bytes());
        assert_eq!(reply.status, 422, "{body}: {}", reply.body);
        assert!(reply.detail().starts_with(field), "{body}: {}", reply.body);
        assert!(reply.detail().contains(rule), "{body}: {}", reply.body);
    }
    let big = format!("{{\"username\": \"{}\"}}", "a".repeat(70 * 1024));
    assert_eq!(post(big.as_bytes()).status, 413);
    let no_type = server.raw("POST", "/api/v1/users", &[("Authorization", &auth)], b"{}");
    assert_eq!(no_type.status, 415);

    let missing = server.call("GET", "/api/v1/users/nobody", Some(&admin), None);
    assert_eq!(
        (missing.status, missing.body["error"].as_str()),
        (404, Some("not_found"))
    );
    let patch_missing = server.call(
        "PATCH",
        "/api/v1/users/nobody",
        Some(&admin),
        Some(json!({"memory": "1G"})),
    );
    assert_eq!(patch_missing.status, 404);
    for (method, body) in [
        ("PATCH", Some(json!({"active": false}))),
        ("PATCH", Some(json!({"role": "user"}))),
        ("DELETE", None),
    ] {
        let reply = server.call(method, "/api/v1/users/boss", Some(&admin), body);
        assert_eq!(
            reply.status, 409,
            "an admin locking themself out: {}",
            reply.body
        );
    }
    let bad_query = server.call(
        "DELETE",
        "/api/v1/users/carl?remove_home=maybe",
        Some(&admin),
        None,
    );
    assert_eq!(
        (bad_query.status, bad_query.body["error"].as_str()),
        (400, Some("bad_request"))
    );
    let nothing = server.call("PATCH", "/api/v1/users/boss", Some(&admin), Some(json!({})));
    assert_eq!(nothing.status, 422, "{}", nothing.body);
    let carl = json!({"username": "carl", "password": "carl password 1", "system_account": false});
    assert_eq!(server.add(&admin, carl.clone()).status, 201);
    let again = server.add(&admin, carl);
    assert_eq!(
        (again.status, again.body["error"].as_str()),
        (409, Some("conflict"))
    );
    assert_eq!(
        server
            .call("GET", "/api/v1/nothing", Some(&admin), None)
            .status,
        404
    );

    // A login flood from one client: login_rate = 5 failures per minute
    // here (the login above succeeded: it does not count); then 429 with
    // Retry-After, even with the right password.
    for _ in 0..5 {
        assert_eq!(server.login("carl", "wrong").status, 401);
    }
    let flooded = server.login("boss", ADMIN_PASSWORD);
    assert_eq!(flooded.status, 429, "{}", flooded.body);
    let retry: u64 = flooded.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "a token per 12 s: {retry}");
    server.clock.fetch_add(12, Ordering::SeqCst);
    assert_eq!(
        server.login("boss", ADMIN_PASSWORD).status,
        200,
        "a token later"
    );
}

#[test]
fn health_and_the_openapi_document() {
    let server = start(100);
    let health = server.call("GET", "/healthz", None, None);
    assert_eq!(
        (health.status, health.body["status"].as_str()),
        (200, Some("ok"))
    );
    let doc = server.call("GET", "/api/v1/openapi.json", None, None);
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"], "3.1.0");
    let paths = doc.body["paths"].as_object().unwrap();
    for path in [
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/me",
        "/api/v1/me/password",
        "/api/v1/users",
        "/api/v1/users/{name}",
        "/api/v1/users/{name}/apply",
        "/api/v1/users/{name}/unlock",
        "/api/v1/usage",
        "/api/v1/users/{name}/history",
        "/api/v1/history",
        "/metrics",
        "/healthz",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
}

/// Every limit of the library's table is in the schema of the bodies that
/// take limits and of the user's view, and the API takes each by its key:
/// a limit added to the table needs nothing more here.
#[test]
fn every_limit_is_in_the_schema_and_the_api() {
    use libdiycloud::model::limits::{Allocation, Number, LIMITS};
    let server = start(100);
    let doc = server.call("GET", "/api/v1/openapi.json", None, None);
    let schemas = &doc.body["components"]["schemas"];
    let required = schemas["User"]["required"].as_array().unwrap();
    for limit in LIMITS {
        for body in ["NewUser", "UserChanges"] {
            let property = &schemas[body]["properties"][limit.key];
            let types: Vec<&str> = match property["oneOf"].as_array() {
                Some(choices) => choices.iter().filter_map(|c| c["type"].as_str()).collect(),
                None => vec![property["type"].as_str().unwrap_or("none")],
            };
            let expected = match limit.number {
                Number::No => vec!["string"],
                Number::Integer => vec!["string", "integer"],
                Number::Any => vec!["string", "number"],
            };
            assert_eq!(types, expected, "{body}.{}", limit.key);
            assert!(property["description"]
                .as_str()
                .unwrap()
                .contains(limit.help));
        }
        assert!(
            schemas["User"]["properties"][limit.key].is_object(),
            "User.{}",
            limit.key
        );
        assert!(
            required.contains(&json!(limit.key)),
            "User.{} is required",
            limit.key
        );
    }
    // Each limit's built-in default, given back by key, is what the view shows.
    let admin = server.token("boss", ADMIN_PASSWORD);
    let mut body =
        json!({"username": "lena", "password": "lena password 1", "system_account": false});
    for (key, text) in Allocation::default().texts() {
        body[key] = json!(text);
    }
    let made = server.add(&admin, body);
    assert_eq!(made.status, 201, "{}", made.body);
    for (key, value) in Allocation::default().json() {
        assert_eq!(made.body["user"][key], value, "{key}");
    }
    // A limit that takes only text refuses a number, naming it.
    let gpus = server.call(
        "PATCH",
        "/api/v1/users/lena",
        Some(&admin),
        Some(json!({"gpus": 0})),
    );
    assert_eq!(gpus.status, 422, "{}", gpus.body);
    assert!(
        gpus.body["detail"].as_str().unwrap().starts_with("gpus:"),
        "{}",
        gpus.body
    );
    // An unknown field is still refused.
    let unknown = server.call(
        "PATCH",
        "/api/v1/users/lena",
        Some(&admin),
        Some(json!({"memory": "1G", "memory_typo": "1G"})),
    );
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    assert!(
        unknown.body["detail"]
            .as_str()
            .unwrap()
            .contains("memory_typo"),
        "{}",
        unknown.body
    );
}

#[test]
fn concurrent_reads_writes_and_logins_no_5xx_no_lost_update() {
    // Room in the queue of password checks for every login of the burst,
    // and time (past either a login gets 503: tests/system/api-abuse.sh):
    // on a busy machine 100 hashes on 2 cores take more than the default 1 s.
    let server = Arc::new(start_with(
        10_000,
        "login_queue = 100\nlogin_wait = \"60s\"",
    ));
    let admin = server.token("boss", ADMIN_PASSWORD);
    // 50 users to change, made first.
    for i in 0..50 {
        let made = server.add(
            &admin,
            json!({"username": format!("old{i}"), "password": "old password 12", "system_account": false}),
        );
        assert_eq!(made.status, 201, "{}", made.body);
    }
    // Then at once: 50 creations, 50 changes (each user's memory and, in
    // the same moment, another request changing their tasks), 50 reads
    // and 50 logins: 250 requests.
    let mut threads = Vec::new();
    for i in 0..250 {
        let server = Arc::clone(&server);
        let admin = admin.clone();
        threads.push(std::thread::spawn(move || {
            let n = i % 50;
            let reply = match i / 50 {
                0 => server.add(
                    &admin,
                    json!({"username": format!("new{n}"), "password": "new password 12", "system_account": false}),
                ),
                1 => server.call(
                    "PATCH",
                    &format!("/api/v1/users/old{n}"),
                    Some(&admin),
                    Some(json!({"memory": format!("{}M", 100 + n)})),
                ),
                2 => server.call(
                    "PATCH",
                    &format!("/api/v1/users/old{n}"),
                    Some(&admin),
                    Some(json!({"tasks": 1000 + n})),
                ),
                3 => server.call("GET", &format!("/api/v1/users/old{n}"), Some(&admin), None),
                _ => server.login(&format!("old{n}"), "old password 12"),
            };
            (i, reply.status, reply.body)
        }));
    }
    for thread in threads {
        let (i, status, body) = thread.join().unwrap();
        let expected = if i < 50 { 201 } else { 200 };
        assert_eq!(status, expected, "request {i}: {body}");
    }
    let users = server.call("GET", "/api/v1/users", Some(&admin), None);
    let users = users.body.as_array().unwrap();
    assert_eq!(users.len(), 101, "boss, 50 old, 50 new");
    for n in 0..50 {
        let user = users
            .iter()
            .find(|u| u["username"] == format!("old{n}"))
            .unwrap();
        assert_eq!(user["memory"], format!("{}M", 100 + n), "{user}");
        assert_eq!(user["tasks"], (1000 + n).to_string(), "{user}");
        assert!(user["last_login"].is_string(), "{user}");
    }
}
