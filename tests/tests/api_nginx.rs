//! The API through a real nginx with the shipped site file
//! (packaging/nginx/diycloud.conf): TLS with a throwaway certificate, the
//! site's locations and headers as shipped, only the ports, the certificate
//! and the upstream address changed to this test's. curl is the client.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use libdiycloud::config::Config;
use libdiycloud::hashing::Hasher;
use libdiycloud::model::Role;
use serde_json::Value;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn api_server(dir: &Path) -> SocketAddr {
    let db = dir.join("db");
    // As the site's comment says: nginx's address is the trusted proxy.
    let config = Config::parse(
        "[password]\nmemory_kib = 1024\niterations = 1\n[api]\nlogin_rate = 3\n\
         trusted_proxies = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let hash = Hasher::new(config.hash)
        .unwrap()
        .hash("boss password 1")
        .unwrap();
    diycloud_tests::api_server(config, &db, &hash, &[("boss", Role::Admin)])
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `curl` through nginx: (status, headers, body text); the last argument
/// is the path.
fn curl_text(port: u16, args: &[&str]) -> (u16, String, String) {
    let (path, options) = args.split_last().unwrap();
    let out = Command::new("curl")
        .args(["-sk", "-D", "-", "--max-time", "10"])
        .args(options)
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// [`curl_text`] with the body as JSON (`Null` where it is not).
fn curl(port: u16, args: &[&str]) -> (u16, String, Value) {
    let (status, head, body) = curl_text(port, args);
    (
        status,
        head,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

// Waiting for nginx to listen is what a test must do.
#[allow(clippy::disallowed_methods)]
fn wait_for(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nginx did not listen on {port}");
}

/// A server (admin `boss`) behind nginx with the shipped site: the nginx,
/// its HTTP and HTTPS ports, and the scratch directory. `None` without nginx.
fn behind_nginx() -> Option<(Nginx, u16, u16, tempfile::TempDir)> {
    let nginx_bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(nginx_bin) = nginx_bin else {
        diycloud_tests::skip("no nginx here (tests/deps.sh installs it)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let api = api_server(dir.path());
    let (http_port, https_port) = (free_port(), free_port());

    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shipped = std::fs::read_to_string(root.join("packaging/nginx/diycloud.conf")).unwrap();
    let site = shipped
        .replace("server 127.0.0.1:8480;", &format!("server {api};"))
        .replace("listen 80;", &format!("listen 127.0.0.1:{http_port};"))
        .replace("listen [::]:80;", "")
        .replace(
            "listen 443 ssl;",
            &format!("listen 127.0.0.1:{https_port} ssl;"),
        )
        .replace("listen [::]:443 ssl;", "")
        .replace("/etc/ssl/certs/diycloud.pem", cert.to_str().unwrap())
        .replace("/etc/ssl/private/diycloud.key", key.to_str().unwrap());
    assert_ne!(site, shipped);
    std::fs::write(dir.path().join("site.conf"), site).unwrap();
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("nginx.conf"),
        format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               include {d}/site.conf;\n}}\n"
        ),
    )
    .unwrap();
    let child = Command::new(nginx_bin)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let nginx = Nginx(child);
    wait_for(https_port);
    Some((nginx, http_port, https_port, dir))
}

#[test]
fn the_api_through_nginx_with_the_shipped_site() {
    let Some((_nginx, http_port, https_port, _dir)) = behind_nginx() else {
        return;
    };

    let (status, _, body) = curl(https_port, &["/healthz"]);
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let login = |password: &str| {
        curl(
            https_port,
            &[
                "-H",
                "Content-Type: application/json",
                "--data",
                &format!("{{\"username\": \"boss\", \"password\": \"{password}\"}}"),
                "/api/v1/auth/login",
            ],
        )
    };
    let (status, headers, body) = login("boss password 1");
    assert_eq!(status, 200, "{headers}{body}");
    // nginx said https (X-Forwarded-Proto): the cookie is Secure.
    let cookie = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let token = body["token"].as_str().unwrap();
    let auth = format!("Authorization: Bearer {token}");
    let (status, _, me) = curl(https_port, &["-H", &auth, "/api/v1/me"]);
    assert_eq!((status, me["username"].as_str()), (200, Some("boss")));
    let (status, _, users) = curl(https_port, &["-H", &auth, "/api/v1/users"]);
    assert_eq!(status, 200);
    assert_eq!(users.as_array().unwrap().len(), 1);
    let (status, _, _) = curl(https_port, &["/api/v1/me"]);
    assert_eq!(status, 401);

    // nginx stops a big body before the server sees it.
    let big = format!("{{\"username\": \"{}\"}}", "a".repeat(100 * 1024));
    let (status, _, _) = curl(
        https_port,
        &[
            "-H",
            "Content-Type: application/json",
            "--data",
            &big,
            "/api/v1/auth/login",
        ],
    );
    assert_eq!(status, 413);

    // The rate limit sees the client nginx forwarded (login_rate = 3
    // failures; the login above succeeded and does not count): a client
    // cannot dodge it with its own X-Forwarded-For, nginx replaces it.
    for i in 0..3 {
        let (status, _, _) = curl(
            https_port,
            &[
                "-H",
                &format!("X-Forwarded-For: 10.0.0.{i}"),
                "-H",
                "Content-Type: application/json",
                "--data",
                "{\"username\": \"boss\", \"password\": \"wrong\"}",
                "/api/v1/auth/login",
            ],
        );
        assert_eq!(status, 401);
    }
    let (status, headers, _) = login("boss password 1");
    assert_eq!(status, 429, "{headers}");
    assert!(
        headers.to_ascii_lowercase().contains("retry-after:"),
        "{headers}"
    );

    // Plain HTTP is sent to HTTPS.
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
        ])
        .arg(format!("http://127.0.0.1:{http_port}/api/v1/me"))
        .output()
        .unwrap();
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(shown.starts_with("301 https://"), "{shown}");
}

#[test]
fn the_portal_through_nginx_with_the_shipped_site() {
    let Some((_nginx, _, https_port, dir)) = behind_nginx() else {
        return;
    };
    let header = |head: &str, name: &str| {
        head.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    // The site's front page is the portal, which sends strangers to log in.
    let (status, head, _) = curl_text(https_port, &["/"]);
    assert_eq!(
        (status, header(&head, "location").ends_with("/portal/")),
        (302, true),
        "{head}"
    );
    let (status, head, _) = curl_text(https_port, &["/portal/"]);
    assert_eq!(
        (status, header(&head, "location")),
        (303, "/portal/login".into())
    );
    let (status, _, page) = curl_text(https_port, &["/portal/login"]);
    assert_eq!(status, 200);
    assert!(page.contains("action=\"/portal/login\""), "{page}");
    let (status, head, css) = curl_text(https_port, &["/portal/style.css"]);
    assert_eq!(
        (status, header(&head, "content-type")),
        (200, "text/css".into())
    );
    assert!(css.contains(".chart"));

    let jar = dir.path().join("cookies");
    let jar = jar.to_str().unwrap();
    let login = |password: &str| {
        curl_text(
            https_port,
            &[
                "-c",
                jar,
                "--data-urlencode",
                "username=boss",
                "--data-urlencode",
                &format!("password={password}"),
                "/portal/login",
            ],
        )
    };
    let (status, _, page) = login("not it");
    assert_eq!(status, 401);
    assert!(page.contains("Wrong username or password."), "{page}");
    let (status, head, _) = login("boss password 1");
    assert_eq!(
        (status, header(&head, "location")),
        (303, "/portal/".into()),
        "{head}"
    );
    // nginx said https: the cookie is Secure.
    let cookie = header(&head, "set-cookie");
    assert!(
        cookie.contains("Secure") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let (status, _, page) = curl_text(https_port, &["-b", jar, "/portal/"]);
    assert_eq!(status, 200);
    assert!(page.contains("Change your password"), "{page}");
    let (status, _, page) = curl_text(https_port, &["-b", jar, "/portal/admin"]);
    assert_eq!(status, 200);
    assert!(page.contains("Users and node") && page.contains("href=\"/portal/admin/users/boss\""));
    // A form posted through nginx: the logout, with the page's form token.
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap()
        .to_owned();
    let (status, head, _) = curl_text(
        https_port,
        &[
            "-b",
            jar,
            "--data-urlencode",
            &format!("csrf={token}"),
            "/portal/logout",
        ],
    );
    assert_eq!(
        (status, header(&head, "location")),
        (303, "/portal/login".into())
    );
    let (status, _, _) = curl_text(https_port, &["-b", jar, "/portal/"]);
    assert_eq!(status, 303, "the session ended");
    // /metrics stays on the node.
    let (status, _, _) = curl_text(https_port, &["/metrics"]);
    assert_eq!(status, 404);
}
