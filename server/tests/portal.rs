//! The portal's pages, the history routes and /metrics over real HTTP on
//! loopback (the browser test, with real usage, is in the VM tier:
//! tests/system/portal/). Users are made without system accounts.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use libdiycloud::model::history::Sample;
use libdiycloud::model::time::Timestamp;
use libdiycloud::store::Store;
use serde_json::json;

/// `pairs` as a form body.
fn encode(pairs: &[(&str, &str)]) -> String {
    let escape = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                b => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A browser's session: the cookie, and the form token of its pages.
struct Browser<'a> {
    server: &'a Server,
    cookie: String,
}

impl<'a> Browser<'a> {
    fn login(server: &'a Server, name: &str, password: &str) -> Self {
        let reply = post(
            server,
            "/portal/login",
            None,
            &[("username", name), ("password", password)],
        );
        assert_eq!(reply.status, 303, "{}", reply.text);
        assert_eq!(reply.header("location"), Some("/portal/"));
        let cookie = reply.header("set-cookie").unwrap();
        Self {
            server,
            cookie: cookie.split(';').next().unwrap().to_owned(),
        }
    }

    fn get(&self, path: &str) -> Reply {
        self.server
            .raw("GET", path, &[("Cookie", &self.cookie)], b"")
    }

    fn post(&self, path: &str, pairs: &[(&str, &str)]) -> Reply {
        post(self.server, path, Some(&self.cookie), pairs)
    }

    /// The form token in this session's pages.
    fn csrf(&self) -> String {
        let page = self.get("/portal/");
        let after = page.text.split("name=\"csrf\" value=\"").nth(1).unwrap();
        after.split('"').next().unwrap().to_owned()
    }

    /// The API token behind the cookie.
    fn token(&self) -> &str {
        self.cookie.split_once('=').unwrap().1
    }
}

fn post(server: &Server, path: &str, cookie: Option<&str>, pairs: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if let Some(cookie) = cookie {
        headers.push(("Cookie", cookie));
    }
    server.raw("POST", path, &headers, encode(pairs).as_bytes())
}

/// A user made through the API, without a system account.
fn add_user(server: &Server, admin: &str, name: &str, extra: serde_json::Value) {
    let mut body = json!({"username": name, "password": format!("{name} password 1"), "system_account": false});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let reply = server.add(admin, body);
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[test]
fn login_page_says_why_only_to_the_right_password() {
    let server = start(100);
    let anonymous = server.raw("GET", "/portal/", &[], b"");
    assert_eq!(anonymous.status, 303);
    assert_eq!(anonymous.header("location"), Some("/portal/login"));
    let form = server.raw("GET", "/portal/login", &[], b"");
    assert_eq!(form.status, 200);
    assert!(form.text.contains("name=\"password\""));
    let csp = form.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");

    let wrong = post(
        &server,
        "/portal/login",
        None,
        &[("username", "boss"), ("password", "nope")],
    );
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.text.contains("Wrong username or password."),
        "{}",
        wrong.text
    );
    assert!(wrong.header("set-cookie").is_none());
    let unknown = post(
        &server,
        "/portal/login",
        None,
        &[("username", "ghost"), ("password", "nope")],
    );
    assert!(unknown.text.contains("Wrong username or password."));

    let boss = Browser::login(&server, "boss", ADMIN_PASSWORD);
    let home = boss.get("/portal/");
    assert_eq!(home.status, 200);
    assert!(home.text.contains("Change your password"), "{}", home.text);
    let admin = boss.token().to_owned();

    // deny = 3: carl is locked. Only his right password learns it.
    add_user(&server, &admin, "carl", json!({}));
    for _ in 0..3 {
        post(
            &server,
            "/portal/login",
            None,
            &[("username", "carl"), ("password", "nope")],
        );
    }
    let right = post(
        &server,
        "/portal/login",
        None,
        &[("username", "carl"), ("password", "carl password 1")],
    );
    assert_eq!(right.status, 401);
    assert!(right.text.contains("locked"), "{}", right.text);
    let guess = post(
        &server,
        "/portal/login",
        None,
        &[("username", "carl"), ("password", "guess")],
    );
    assert!(
        guess.text.contains("Wrong username or password."),
        "{}",
        guess.text
    );
    assert!(!guess.text.contains("locked"));

    add_user(&server, &admin, "dina", json!({}));
    server.call(
        "PATCH",
        "/api/v1/users/dina",
        Some(&admin),
        Some(json!({"active": false})),
    );
    let disabled = post(
        &server,
        "/portal/login",
        None,
        &[("username", "dina"), ("password", "dina password 1")],
    );
    assert!(disabled.text.contains("disabled"), "{}", disabled.text);
}

#[test]
fn forms_need_the_sessions_token() {
    let server = start(100);
    let boss = Browser::login(&server, "boss", ADMIN_PASSWORD);
    let csrf = boss.csrf();
    assert_eq!(csrf.len(), 64);
    assert_ne!(
        csrf,
        boss.token(),
        "the form token is not the session token"
    );
    // Without it, or with another: refused, and nothing happens.
    for sent in ["", "0000", &"a".repeat(64)] {
        let out = boss.post("/portal/logout", &[("csrf", sent)]);
        assert_eq!(out.status, 403, "{sent}");
        let change = boss.post(
            "/portal/password",
            &[
                ("csrf", sent),
                ("current_password", ADMIN_PASSWORD),
                ("new_password", "another password 1"),
                ("confirm_password", "another password 1"),
            ],
        );
        assert_eq!(change.status, 403);
    }
    assert_eq!(boss.get("/portal/").status, 200, "still logged in");
    // Another session's token does not do either.
    let other = Browser::login(&server, "boss", ADMIN_PASSWORD);
    assert_eq!(
        boss.post("/portal/logout", &[("csrf", &other.csrf())])
            .status,
        403
    );

    // With it: the session ends.
    let out = boss.post("/portal/logout", &[("csrf", &csrf)]);
    assert_eq!(
        (out.status, out.header("location")),
        (303, Some("/portal/login"))
    );
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(boss.get("/portal/").status, 303);
    assert_eq!(other.get("/portal/").status, 200, "only this session ended");
}

#[test]
fn password_change_through_the_page() {
    let server = start(100);
    let boss = Browser::login(&server, "boss", ADMIN_PASSWORD);
    let csrf = boss.csrf();
    let change = |current: &str, new: &str, again: &str| {
        boss.post(
            "/portal/password",
            &[
                ("csrf", &csrf),
                ("current_password", current),
                ("new_password", new),
                ("confirm_password", again),
            ],
        )
    };
    let differ = change(ADMIN_PASSWORD, "new password 12", "new password 13");
    assert_eq!(differ.status, 422);
    assert!(differ.text.contains("differ"));
    assert_eq!(
        change("wrong", "new password 12", "new password 12").status,
        403
    );
    let short = change(ADMIN_PASSWORD, "x", "x");
    assert_eq!(short.status, 422);
    assert!(short.text.contains("refused"), "{}", short.text);
    let done = change(ADMIN_PASSWORD, "new password 12", "new password 12");
    assert_eq!(
        (done.status, done.header("location")),
        (303, Some("/portal/login"))
    );
    assert_eq!(boss.get("/portal/").status, 303, "every session ended");
    Browser::login(&server, "boss", "new password 12");
}

#[test]
fn an_admin_creates_edits_disables_and_deletes_through_the_pages() {
    let server = start(100);
    let boss = Browser::login(&server, "boss", ADMIN_PASSWORD);
    let token = boss.token().to_owned();
    let csrf = boss.csrf();
    let new = |name: &str, memory: &str| {
        boss.post(
            "/portal/admin/new",
            &[
                ("csrf", &csrf),
                ("username", name),
                ("password", "dave password 1"),
                ("role", "user"),
                ("full_name", "Dave Example"),
                ("memory", memory),
                ("cpu", "1.5"),
            ],
        )
    };
    // Without a Linux account there is nothing to apply, and the page
    // says so (what `apply` reported), not "applied".
    let created = new("dave", "300M");
    assert_eq!(created.status, 200, "{}", created.text);
    assert!(
        created.text.contains("The user was created."),
        "{}",
        created.text
    );
    assert!(
        created
            .text
            .contains("Nothing was applied: no system account."),
        "{}",
        created.text
    );
    assert!(created.text.contains("href=\"/portal/admin/users/dave\""));
    let dave = server.call("GET", "/api/v1/users/dave", Some(&token), None);
    assert_eq!(dave.body["memory"], "300M");
    assert_eq!(dave.body["cpu"], "1.5");
    assert_eq!(dave.body["system_account"], false);

    // Bad input: the form again, with the rule and what was typed.
    let bad = new("dave2", "lots");
    assert_eq!(bad.status, 422);
    assert!(bad.text.contains("memory:"), "{}", bad.text);
    assert!(bad.text.contains("value=\"dave2\""));
    assert_eq!(new("dave", "300M").status, 409);

    let list = boss.get("/portal/admin");
    assert_eq!(list.status, 200);
    assert!(list.text.contains("href=\"/portal/admin/users/dave\""));

    let page = boss.get("/portal/admin/users/dave?done=created");
    assert!(page.text.contains("was created"));
    assert!(page.text.contains("value=\"300M\""));
    let save = boss.post(
        "/portal/admin/users/dave",
        &[
            ("csrf", &csrf),
            ("role", "user"),
            ("full_name", "Dave Example"),
            ("memory", "400M"),
            ("cpu", "1.5"),
        ],
    );
    assert_eq!(save.status, 200, "{}", save.text);
    assert!(save.text.contains("Saved."), "{}", save.text);
    assert!(save.text.contains("Nothing was applied"), "{}", save.text);
    let dave = server.call("GET", "/api/v1/users/dave", Some(&token), None);
    assert_eq!(dave.body["memory"], "400M");
    let bad_save = boss.post(
        "/portal/admin/users/dave",
        &[("csrf", &csrf), ("role", "user"), ("tasks", "-3")],
    );
    assert_eq!(bad_save.status, 422);
    assert!(bad_save.text.contains("tasks:"), "{}", bad_save.text);

    // Fair share through the form; a soft limit over the hard one is refused.
    let share = |weight: &str, high: &str| {
        boss.post(
            "/portal/admin/users/dave",
            &[
                ("csrf", &csrf),
                ("role", "user"),
                ("cpu_weight", weight),
                ("io_weight", "200"),
                ("memory_high", high),
            ],
        )
    };
    assert_eq!(share("300", "256M").status, 200);
    let dave = server.call("GET", "/api/v1/users/dave", Some(&token), None);
    assert_eq!(
        (
            dave.body["cpu_weight"].as_u64(),
            dave.body["io_weight"].as_u64(),
            dave.body["memory_high"].as_str()
        ),
        (Some(300), Some(200), Some("256M"))
    );
    assert!(boss
        .get("/portal/admin/users/dave")
        .text
        .contains("value=\"300\""));
    let too_high = share("300", "1G");
    assert_eq!(too_high.status, 422);
    assert!(
        too_high.text.contains("must not exceed memory"),
        "{}",
        too_high.text
    );
    let bad_weight = share("0", "256M");
    assert_eq!(bad_weight.status, 422);
    assert!(
        bad_weight.text.contains("cpu_weight:"),
        "{}",
        bad_weight.text
    );

    let state = |action: &str| {
        boss.post(
            "/portal/admin/users/dave/state",
            &[("csrf", &csrf), ("action", action)],
        )
    };
    assert_eq!(state("disable").status, 303);
    let dave = server.call("GET", "/api/v1/users/dave", Some(&token), None);
    assert_eq!(dave.body["state"], "disabled");
    assert_eq!(state("enable").status, 303);
    let dave = server.call("GET", "/api/v1/users/dave", Some(&token), None);
    assert_eq!(dave.body["state"], "active");
    assert_eq!(state("explode").status, 422);
    // An admin cannot disable or delete themself.
    let own = boss.post(
        "/portal/admin/users/boss/state",
        &[("csrf", &csrf), ("action", "disable")],
    );
    assert_eq!(own.status, 409);
    assert_eq!(
        boss.post("/portal/admin/users/boss/delete", &[("csrf", &csrf)])
            .status,
        409
    );

    let confirm = boss.get("/portal/admin/users/dave/delete");
    assert!(confirm.text.contains("Delete dave?"));
    let deleted = boss.post("/portal/admin/users/dave/delete", &[("csrf", &csrf)]);
    assert_eq!(
        (deleted.status, deleted.header("location")),
        (303, Some("/portal/admin?done=deleted"))
    );
    let gone = server.call("GET", "/api/v1/users/dave", Some(&token), None);
    assert_eq!(gone.status, 404);
    assert_eq!(boss.get("/portal/admin/users/dave").status, 404);
}

#[test]
fn a_user_sees_only_their_own_page() {
    let server = start(100);
    let admin = server.token("boss", ADMIN_PASSWORD);
    add_user(
        &server,
        &admin,
        "erin",
        json!({"memory": "1G", "memory_high": "768M", "cpu_weight": 250}),
    );
    let erin = Browser::login(&server, "erin", "erin password 1");
    let home = erin.get("/portal/");
    assert_eq!(home.status, 200);
    assert!(home.text.contains("erin") && home.text.contains("1G"));
    assert!(
        home.text.contains("768M (above it you are slowed down"),
        "{}",
        home.text
    );
    assert!(
        home.text.contains("CPU weight 250, IO weight 100"),
        "{}",
        home.text
    );
    assert!(!home.text.contains("/portal/admin"), "no admin links");
    assert_eq!(erin.get("/portal/admin").status, 403);
    assert_eq!(erin.get("/portal/admin/users/boss").status, 403);
    assert_eq!(erin.get("/portal/admin/new").status, 403);
    let csrf = erin.csrf();
    let sneaky = erin.post(
        "/portal/admin/new",
        &[
            ("csrf", &csrf),
            ("username", "mallory"),
            ("password", "mallory pw 12"),
        ],
    );
    assert_eq!(sneaky.status, 403);
    assert_eq!(
        server
            .call("GET", "/api/v1/users/mallory", Some(&admin), None)
            .status,
        404
    );
}

#[test]
fn what_users_typed_is_escaped_in_the_pages() {
    let server = start(100);
    let admin = server.token("boss", ADMIN_PASSWORD);
    add_user(
        &server,
        &admin,
        "frank",
        json!({"full_name": "<script>alert(1)</script>\"'&"}),
    );
    let boss = Browser::login(&server, "boss", ADMIN_PASSWORD);
    let page = boss.get("/portal/admin/users/frank");
    assert!(!page.text.contains("<script>"), "{}", page.text);
    assert!(page
        .text
        .contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
    let frank = Browser::login(&server, "frank", "frank password 1");
    assert!(!frank.get("/portal/").text.contains("<script>"));
}

#[test]
fn history_and_charts_from_samples() {
    let server = start(100);
    let admin = server.token("boss", ADMIN_PASSWORD);
    add_user(&server, &admin, "gina", json!({}));
    // The server's clock reads 2_000_000: samples over the 10 minutes before.
    let (mut store, _) = Store::init(&server.dir.path().join("db")).unwrap();
    let samples: Vec<Sample> = (0..10)
        .map(|i| Sample {
            username: "gina".into(),
            at: Timestamp(2_000_000 - 600 + i * 60),
            cpu_nsec: Some(i as u64 * 30_000_000_000),
            memory_bytes: Some(100 << 20),
            tasks: Some(3),
            disk_bytes: None,
            gpu_memory_bytes: None,
        })
        .collect();
    store.write(|tx| tx.insert_samples(&samples)).unwrap();

    let history = server.call("GET", "/api/v1/users/gina/history", Some(&admin), None);
    assert_eq!(history.status, 200, "{}", history.body);
    let points = history.body["points"].as_array().unwrap();
    assert_eq!(points.len(), 10);
    assert_eq!(points[1]["cpu_cores"], 0.5);
    assert_eq!(points[9]["cpu_seconds"], 270.0);
    let node = server.call("GET", "/api/v1/history?from=1999500", Some(&admin), None);
    assert_eq!(node.body["points"].as_array().unwrap().len(), 8);
    let backwards = server.call(
        "GET",
        "/api/v1/users/gina/history?from=10&to=5",
        Some(&admin),
        None,
    );
    assert_eq!(backwards.status, 422);
    assert_eq!(
        server
            .call("GET", "/api/v1/users/ghost/history", Some(&admin), None)
            .status,
        404
    );

    let gina = Browser::login(&server, "gina", "gina password 1");
    let own = server.call(
        "GET",
        "/api/v1/users/gina/history",
        Some(gina.token()),
        None,
    );
    assert_eq!(own.status, 200);
    for path in ["/api/v1/users/boss/history", "/api/v1/history"] {
        assert_eq!(
            server.call("GET", path, Some(gina.token()), None).status,
            403,
            "{path}"
        );
    }
    let page = gina.get("/portal/");
    assert!(page.text.contains("data-samples=\"10\""), "{}", page.text);
    assert!(page.text.contains("data-samples=\"9\""), "CPU: 9 rates");
}

#[test]
fn metrics_for_local_scrapers_and_admins() {
    // The explicit opt-out: per-user series for local processes (see
    // tests/metrics.rs for what they get without it).
    let server = start_with(100, "metrics_public = true");
    let admin = server.token("boss", ADMIN_PASSWORD);
    add_user(&server, &admin, "hana", json!({}));
    server.login("hana", "wrong");
    let user = server.token("hana", "hana password 1");

    let local = server.raw("GET", "/metrics", &[], b"");
    assert_eq!(local.status, 200);
    assert!(local
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    for line in [
        "diycloud_user_info{user=\"boss\",role=\"admin\",state=\"active\"} 1",
        "diycloud_user_info{user=\"hana\",role=\"user\",state=\"active\"} 1",
        "diycloud_logins_total{result=\"success\"} 2",
        "diycloud_logins_total{result=\"failure\"} 1",
        "diycloud_lockouts_total 0",
    ] {
        assert!(local.text.contains(line), "{line}: {}", local.text);
    }
    // Through a proxy: an admin's token only.
    let proxied = [("X-Forwarded-For", "192.0.2.1")];
    assert_eq!(server.raw("GET", "/metrics", &proxied, b"").status, 401);
    let as_user = format!("Bearer {user}");
    let as_admin = format!("Bearer {admin}");
    let with = |auth: &str| {
        server
            .raw(
                "GET",
                "/metrics",
                &[proxied[0], ("Authorization", auth)],
                b"",
            )
            .status
    };
    assert_eq!(with(&as_user), 403);
    assert_eq!(with(&as_admin), 200);
}
