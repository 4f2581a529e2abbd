//! Cross-site request forgery, over real HTTP on loopback: every
//! state-changing route, authenticated by the session cookie or by a bearer
//! token, from no Origin, this site, another site and a cross-site fetch;
//! login CSRF; the `__Host-` session cookie; framing.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;

/// The marker of the guard's refusal (in the JSON detail and on the page).
const REFUSED: &str = "cross-site request refused";

/// Where a request says it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// No Origin, no Sec-Fetch-Site: a script, curl, an old browser's
    /// same-origin form.
    Nowhere,
    /// `Origin: http://localhost` (the tests' Host).
    SameOrigin,
    /// `Origin: https://evil.example`.
    ForeignOrigin,
    /// `Sec-Fetch-Site: cross-site` (a browser's fetch or form from
    /// another site), no Origin.
    CrossSite,
}

impl Source {
    const ALL: [Source; 4] = [
        Source::Nowhere,
        Source::SameOrigin,
        Source::ForeignOrigin,
        Source::CrossSite,
    ];

    fn headers(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Source::Nowhere => vec![],
            Source::SameOrigin => vec![("Origin", "http://localhost")],
            Source::ForeignOrigin => vec![("Origin", "https://evil.example")],
            Source::CrossSite => vec![("Sec-Fetch-Site", "cross-site")],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    Cookie,
    Bearer,
}

/// Whether the guard refused a reply.
fn refused(reply: &Reply) -> bool {
    reply.status == 403 && reply.text.to_lowercase().contains(REFUSED)
}

/// The cookie that carries `token` over plain HTTP.
fn cookie(token: &str) -> String {
    format!("diycloud_session={token}")
}

/// Every state-changing route the router serves: (method, path).
fn state_changing_routes() -> Vec<(String, String)> {
    diycloud_server::routes()
        .into_iter()
        .filter(|(method, _)| !matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS"))
        .map(|(method, path)| (method.to_string(), path.to_owned()))
        .collect()
}

#[test]
fn every_state_changing_route_checks_where_a_cookie_request_comes_from() {
    let server = start(100_000);
    let admin = server.token("boss", ADMIN_PASSWORD);
    let routes = state_changing_routes();
    // The list comes from the router: the routes of the issue are in it.
    for (method, path) in [
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/logout"),
        ("POST", "/api/v1/users/{name}/unlock"),
        ("POST", "/api/v1/users/{name}/apply"),
        ("DELETE", "/api/v1/users/{name}"),
        ("PATCH", "/api/v1/users/{name}"),
        ("PUT", "/api/v1/me/password"),
        ("POST", "/portal/login"),
        ("POST", "/portal/logout"),
        ("POST", "/portal/admin/users/{name}/state"),
    ] {
        assert!(
            routes.iter().any(|(m, p)| m == method && p == path),
            "{method} {path} not in {routes:?}"
        );
    }
    let mut cells = 0;
    let mut wrong = Vec::new();
    for (method, path) in &routes {
        for auth in [Auth::Cookie, Auth::Bearer] {
            for from in Source::ALL {
                // A user for the route to act on, and a session of the
                // admin's of its own (logout and deletes end them).
                let victim = format!("v{cells}");
                let added = server.add(
                    &admin,
                    json!({"username": victim, "password": "victim password 1", "system_account": false}),
                );
                assert_eq!(added.status, 201, "{}", added.body);
                let token = server.token("boss", ADMIN_PASSWORD);
                let credential = match auth {
                    Auth::Cookie => ("Cookie", cookie(&token)),
                    Auth::Bearer => ("Authorization", format!("Bearer {token}")),
                };
                let mut headers = vec![
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    (credential.0, credential.1.as_str()),
                ];
                headers.extend(from.headers());
                // What a forged form sends: the page's own form token too
                // (the guard must not lean on it alone).
                let body = format!(
                    "csrf={}&action=unlock",
                    libdiycloud::usecases::auth::form_token(&token)
                );
                let target = path.replace("{name}", &victim);
                let reply = server.raw(method, &target, &headers, body.as_bytes());
                let expect_refused = auth == Auth::Cookie
                    && matches!(from, Source::ForeignOrigin | Source::CrossSite);
                if refused(&reply) != expect_refused {
                    wrong.push(format!(
                        "{method} {path} {auth:?} {from:?}: {} {}",
                        reply.status,
                        reply.text.chars().take(120).collect::<String>()
                    ));
                }
                if expect_refused {
                    // Nothing happened: the session is still good.
                    let me = server.call("GET", "/api/v1/me", Some(&token), None);
                    if me.status != 200 {
                        wrong.push(format!("{method} {path} {auth:?} {from:?}: session ended"));
                    }
                }
                cells += 1;
            }
        }
    }
    eprintln!(
        "CSRF matrix: {} state-changing routes x 2 credentials x 4 origins = {cells} requests",
        routes.len()
    );
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn a_cross_site_unlock_apply_or_logout_changes_nothing() {
    let server = start(100_000);
    let admin = server.token("boss", ADMIN_PASSWORD);
    let added = server.add(
        &admin,
        json!({"username": "vic", "password": "vic password 1", "system_account": false}),
    );
    assert_eq!(added.status, 201);
    for _ in 0..3 {
        assert_eq!(server.login("vic", "wrong").status, 401);
    }
    let locked = || {
        server
            .call("GET", "/api/v1/users/vic", Some(&admin), None)
            .body["locked"]
            .clone()
    };
    assert_eq!(locked(), true);
    let session = server.token("boss", ADMIN_PASSWORD);
    let jar = cookie(&session);
    for path in [
        "/api/v1/users/vic/unlock",
        "/api/v1/users/vic/apply",
        "/api/v1/auth/logout",
    ] {
        // The reproduction: the admin's cookie, a foreign Origin,
        // a form's content type, no body.
        let reply = server.raw(
            "POST",
            path,
            &[
                ("Cookie", &jar),
                ("Origin", "https://evil.example"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            b"",
        );
        assert_eq!(reply.status, 403, "{path}: {}", reply.text);
        assert_eq!(reply.body["error"], "forbidden", "{path}");
        assert!(reply.detail().contains(REFUSED), "{path}: {}", reply.text);
    }
    assert_eq!(locked(), true, "still locked");
    assert_eq!(
        server
            .call("GET", "/api/v1/me", Some(&session), None)
            .status,
        200,
        "still logged in"
    );
    // Odd origins are foreign too; a same-site one (another subdomain) is
    // not this site.
    for headers in [
        vec![("Origin", "null")],
        vec![("Origin", "http://localhost.evil.example")],
        vec![("Origin", "http://localhost:8481")],
        vec![("Sec-Fetch-Site", "same-site")],
        vec![
            ("Sec-Fetch-Site", "same-site"),
            ("Origin", "http://localhost"),
        ],
    ] {
        let mut all = vec![("Cookie", jar.as_str())];
        all.extend(headers.iter().copied());
        let reply = server.raw("POST", "/api/v1/users/vic/unlock", &all, b"");
        assert!(
            refused(&reply),
            "{headers:?}: {} {}",
            reply.status,
            reply.text
        );
    }
    // A browser's own page: Sec-Fetch-Site same-origin passes.
    let own = server.raw(
        "POST",
        "/api/v1/users/vic/unlock",
        &[("Cookie", &jar), ("Sec-Fetch-Site", "same-origin")],
        b"",
    );
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(locked(), false);
    // Another Authorization scheme does not make the cookie a bearer token.
    let basic = server.raw(
        "POST",
        "/api/v1/auth/logout",
        &[
            ("Cookie", &jar),
            ("Authorization", "Basic Ym9zczpwdw=="),
            ("Origin", "https://evil.example"),
        ],
        b"",
    );
    assert!(refused(&basic), "{} {}", basic.status, basic.text);
}

#[test]
fn logins_from_another_site_are_refused() {
    let server = start(100_000);
    // The portal's login form, posted from another site: no session, no
    // cookie (login CSRF would log the victim into the attacker's account).
    let form = format!(
        "username=boss&password={}",
        ADMIN_PASSWORD.replace(' ', "+")
    );
    for from in [Source::ForeignOrigin, Source::CrossSite] {
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        headers.extend(from.headers());
        let reply = server.raw("POST", "/portal/login", &headers, form.as_bytes());
        assert_eq!(reply.status, 403, "{from:?}: {}", reply.text);
        assert!(refused(&reply), "{}", reply.text);
        assert!(reply.header("set-cookie").is_none(), "{from:?}");
        assert_eq!(
            reply.header("content-type"),
            Some("text/html; charset=utf-8"),
            "the portal answers with a page"
        );
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend(from.headers());
        let body = json!({"username": "boss", "password": ADMIN_PASSWORD}).to_string();
        let reply = server.raw("POST", "/api/v1/auth/login", &headers, body.as_bytes());
        assert_eq!(reply.status, 403, "{from:?}: {}", reply.text);
        assert!(reply.header("set-cookie").is_none());
    }
    // From this site's own page, and from a script: logged in.
    for from in [Source::SameOrigin, Source::Nowhere] {
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        headers.extend(from.headers());
        let reply = server.raw("POST", "/portal/login", &headers, form.as_bytes());
        assert_eq!(reply.status, 303, "{from:?}: {}", reply.text);
        assert!(reply.header("set-cookie").is_some());
    }
}

#[test]
fn the_session_cookie_is_a_host_cookie_over_https() {
    // A proxy on loopback that says the client used TLS (as the shipped
    // nginx site does).
    let server = start_with(100_000, "trusted_proxies = [\"127.0.0.1\"]");
    let body = json!({"username": "boss", "password": ADMIN_PASSWORD}).to_string();
    let tls = [
        ("Content-Type", "application/json"),
        ("X-Forwarded-For", "192.0.2.10"),
        ("X-Forwarded-Proto", "https"),
    ];
    let login = server.raw("POST", "/api/v1/auth/login", &tls, body.as_bytes());
    assert_eq!(login.status, 200, "{}", login.text);
    let set = login.header("set-cookie").unwrap().to_owned();
    let token = login.body["token"].as_str().unwrap().to_owned();
    assert!(
        set.starts_with(&format!("__Host-diycloud_session={token};")),
        "{set}"
    );
    let attributes: Vec<&str> = set.split(';').map(str::trim).collect();
    for needed in ["Secure", "Path=/", "HttpOnly", "SameSite=Strict"] {
        assert!(attributes.contains(&needed), "{needed}: {set}");
    }
    assert!(!set.to_ascii_lowercase().contains("domain="), "{set}");

    let with_cookie = |name: &str| {
        let jar = format!("{name}={token}");
        server.raw(
            "GET",
            "/api/v1/me",
            &[
                ("Cookie", jar.as_str()),
                ("X-Forwarded-For", "192.0.2.10"),
                ("X-Forwarded-Proto", "https"),
            ],
            b"",
        )
    };
    assert_eq!(with_cookie("__Host-diycloud_session").status, 200);
    // Over HTTPS only the __Host- cookie counts: a cookie without the
    // prefix may have been planted by a sibling domain or over plain HTTP.
    assert_eq!(with_cookie("diycloud_session").status, 401);

    // The portal's login over HTTPS sets the same cookie; its logout
    // clears it by that name.
    let form = format!(
        "username=boss&password={}",
        ADMIN_PASSWORD.replace(' ', "+")
    );
    let mut headers = tls.to_vec();
    headers[0] = ("Content-Type", "application/x-www-form-urlencoded");
    let portal = server.raw("POST", "/portal/login", &headers, form.as_bytes());
    assert_eq!(portal.status, 303, "{}", portal.text);
    let set = portal.header("set-cookie").unwrap().to_owned();
    assert!(set.starts_with("__Host-diycloud_session="), "{set}");
    assert!(set.contains("; Secure"), "{set}");
    let portal_token = set
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let jar = format!("__Host-diycloud_session={portal_token}");
    let csrf = format!(
        "csrf={}",
        libdiycloud::usecases::auth::form_token(&portal_token)
    );
    let mut headers = headers.clone();
    headers.push(("Cookie", jar.as_str()));
    let out = server.raw("POST", "/portal/logout", &headers, csrf.as_bytes());
    assert_eq!(out.status, 303, "{}", out.text);
    let cleared = out.header("set-cookie").unwrap();
    assert!(
        cleared.starts_with("__Host-diycloud_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    // Over plain HTTP (the server on loopback without a proxy) a browser
    // would drop a Secure, __Host- cookie: the plain name, not Secure.
    let plain = server.login("boss", ADMIN_PASSWORD);
    let set = plain.header("set-cookie").unwrap();
    assert!(set.starts_with("diycloud_session="), "{set}");
    assert!(!set.contains("Secure"), "{set}");
}

#[test]
fn portal_pages_may_not_be_framed() {
    let server = start(100);
    let login = server.raw("GET", "/portal/login", &[], b"");
    assert_eq!(login.header("x-frame-options"), Some("DENY"));
    assert!(login
        .header("content-security-policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
    let token = server.token("boss", ADMIN_PASSWORD);
    let jar = cookie(&token);
    for path in ["/portal/", "/portal/admin", "/portal/admin/new"] {
        let page = server.raw("GET", path, &[("Cookie", &jar)], b"");
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(page.header("x-frame-options"), Some("DENY"), "{path}");
    }
}
