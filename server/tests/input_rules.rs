//! The API keeps the same input rules as the CLI, from the same model: a
//! full name stays one subfield of the passwd comment (GECOS), a disk quota
//! within what the kernel's quota formats hold (422, naming the rule).
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;

#[test]
fn a_full_name_with_a_gecos_separator_is_refused_naming_the_rule() {
    let server = start(100);
    let admin = server.token("boss", ADMIN_PASSWORD);
    for full_name in ["Doe, Jane", "Jane Doe,Room 12", "a:b"] {
        let reply = server.add(
            &admin,
            json!({"username": "carl", "password": "pw password 1",
                   "system_account": false, "full_name": full_name}),
        );
        assert_eq!(reply.status, 422, "{full_name:?}: {}", reply.body);
        assert!(
            reply.detail().contains("full_name") && reply.detail().contains("GECOS"),
            "{}",
            reply.body
        );
    }
    let gone = server.call("GET", "/api/v1/users/carl", Some(&admin), None);
    assert_eq!(gone.status, 404, "nothing was written");

    let reply = server.add(
        &admin,
        json!({"username": "carl", "password": "pw password 1",
               "system_account": false, "full_name": "Carl Example"}),
    );
    assert!(reply.status < 300, "{}", reply.body);
    let patch = server.call(
        "PATCH",
        "/api/v1/users/carl",
        Some(&admin),
        Some(json!({"full_name": "Example, Carl"})),
    );
    assert_eq!(patch.status, 422, "{}", patch.body);
    assert!(patch.detail().contains("GECOS"), "{}", patch.body);
    let carl = server.call("GET", "/api/v1/users/carl", Some(&admin), None);
    assert_eq!(carl.body["full_name"], "Carl Example", "unchanged");
}

#[test]
fn a_disk_quota_beyond_the_kernels_bound_is_refused_naming_it() {
    let server = start(100);
    let admin = server.token("boss", ADMIN_PASSWORD);
    let reply = server.add(
        &admin,
        json!({"username": "carl", "password": "pw password 1",
               "system_account": false, "disk": "15E"}),
    );
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.detail().contains("less than 8E"), "{}", reply.body);
    let gone = server.call("GET", "/api/v1/users/carl", Some(&admin), None);
    assert_eq!(gone.status, 404, "nothing was written");

    let reply = server.add(
        &admin,
        json!({"username": "carl", "password": "pw password 1",
               "system_account": false, "disk": "8191P"}),
    );
    assert!(reply.status < 300, "{}", reply.body);
    let patch = server.call(
        "PATCH",
        "/api/v1/users/carl",
        Some(&admin),
        Some(json!({"disk": "8E"})),
    );
    assert_eq!(patch.status, 422, "{}", patch.body);
    assert!(patch.detail().contains("less than 8E"), "{}", patch.body);
    let carl = server.call("GET", "/api/v1/users/carl", Some(&admin), None);
    assert_eq!(carl.body["disk"], "8191P", "unchanged");
}
