//! The portal's checks before a handler runs, and their order, on every
//! admin route: a session (else the login page), the admin role (else 403,
//! whatever the address or the form), an address that can be read (else
//! 400), then the form and its token (else 400 or 403). A refused request
//! changes nothing.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;

/// A form body (the values here need no escaping but spaces).
fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace(' ', "+")))
        .collect::<Vec<_>>()
        .join("&")
}

fn post(server: &Server, path: &str, session: Option<&str>, pairs: &[(&str, &str)]) -> Reply {
    let jar = session.map(|s| format!("diycloud_session={s}"));
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if let Some(jar) = &jar {
        headers.push(("Cookie", jar));
    }
    server.raw("POST", path, &headers, form(pairs).as_bytes())
}

fn get(server: &Server, path: &str, session: &str) -> Reply {
    let jar = format!("diycloud_session={session}");
    server.raw("GET", path, &[("Cookie", &jar)], b"")
}

/// `fields` after a form token.
fn with_token<'a>(token: &'a str, fields: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![("csrf", token)];
    all.extend(fields.iter().copied());
    all
}

/// Each admin form, posted to `user`'s address, with a token and what
/// would change `dave` (or create `mallory`) if it got through.
fn admin_posts(user: &str) -> Vec<(String, Vec<(&'static str, &'static str)>)> {
    let page = format!("/portal/admin/users/{user}");
    vec![
        (
            "/portal/admin/new".into(),
            vec![("username", "mallory"), ("password", "mallory pw 12")],
        ),
        (page.clone(), vec![("role", "admin"), ("memory", "1M")]),
        (format!("{page}/state"), vec![("action", "disable")]),
        (format!("{page}/delete"), vec![]),
    ]
}

#[test]
fn admin_routes_check_session_role_address_then_token() {
    let server = start(100);
    let admin = server.token("boss", ADMIN_PASSWORD);
    for name in ["dave", "erin"] {
        let reply = server.add(
            &admin,
            json!({"username": name, "password": format!("{name} password 1"), "system_account": false}),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let erin = server.token("erin", "erin password 1");
    let erin_csrf = libdiycloud::usecases::auth::form_token(&erin);
    let boss_csrf = libdiycloud::usecases::auth::form_token(&admin);
    let wrong = "a".repeat(64);

    for user in ["dave", "%FF"] {
        for (path, fields) in admin_posts(user) {
            // No session: the login page.
            let anonymous = post(&server, &path, None, &with_token(&boss_csrf, &fields));
            assert_eq!(
                (anonymous.status, anonymous.header("location")),
                (303, Some("/portal/login")),
                "{path}"
            );
            // Not an admin: refused first, with her own valid token too.
            let user_post = post(
                &server,
                &path,
                Some(&erin),
                &with_token(&erin_csrf, &fields),
            );
            assert_eq!(user_post.status, 403, "{path}");
            assert!(user_post.text.contains("Admins only"), "{path}");
        }
    }
    for (path, fields) in admin_posts("%FF") {
        if path == "/portal/admin/new" {
            continue;
        }
        // An address that cannot be read: refused before the token is.
        let bad = post(&server, &path, Some(&admin), &with_token(&wrong, &fields));
        assert_eq!(bad.status, 400, "{path}");
        assert!(bad.text.contains("the form could not be read"), "{path}");
    }
    for (path, fields) in admin_posts("dave") {
        // Another session's token, or none at all.
        for token in [wrong.as_str(), erin_csrf.as_str(), ""] {
            let refused = post(&server, &path, Some(&admin), &with_token(token, &fields));
            assert_eq!(refused.status, 403, "{path} {token:?}");
            assert!(refused.text.contains("This form has expired"), "{path}");
        }
        // No token field: a form that cannot be read (400), or for the
        // user form, whose fields are all optional, an empty token (403).
        let missing = post(&server, &path, Some(&admin), &fields);
        let expected = if path.ends_with("/state") || path.ends_with("/delete") {
            400
        } else {
            403
        };
        assert_eq!(missing.status, expected, "{path}");
    }
    for path in [
        "/portal/admin",
        "/portal/admin/new",
        "/portal/admin/users/dave",
        "/portal/admin/users/dave/delete",
    ] {
        assert_eq!(get(&server, path, &erin).status, 403, "{path}");
    }
    for path in ["/portal/admin/users/%FF", "/portal/admin/users/%FF/delete"] {
        let bad = get(&server, path, &admin);
        assert_eq!(bad.status, 400, "{path}");
        assert!(bad.text.contains("bad user name in the address"), "{path}");
        assert_eq!(get(&server, path, &erin).status, 403, "{path}");
    }

    // Nothing was done.
    let dave = server.call("GET", "/api/v1/users/dave", Some(&admin), None);
    assert_eq!(dave.status, 200);
    assert_eq!(
        (&dave.body["role"], &dave.body["state"]),
        (&json!("user"), &json!("active"))
    );
    assert_ne!(dave.body["memory"], "1M");
    let mallory = server.call("GET", "/api/v1/users/mallory", Some(&admin), None);
    assert_eq!(mallory.status, 404);
}
