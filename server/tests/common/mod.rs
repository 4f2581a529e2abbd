//! What the server's HTTP tests share: a server on an ephemeral port with
//! its own database and clock, and a plain HTTP/1.1 client on a TCP socket.
// Each test file uses its own part of this.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use diycloud_server::AppState;
use libdiycloud::config::Config;
use libdiycloud::hashing::Hasher;
use libdiycloud::model::time::Timestamp;
use libdiycloud::model::user::Role;
use libdiycloud::model::{Allocation, Username};
use libdiycloud::store::{NewUser, Store};
use serde_json::{json, Value};

pub const ADMIN_PASSWORD: &str = "admin password 1";

/// A server on 127.0.0.1:0 with its own database and clock.
pub struct Server {
    pub addr: SocketAddr,
    pub clock: Arc<AtomicI64>,
    pub dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` where it is not).
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or("")
    }
}

pub fn start(login_rate: u32) -> Server {
    start_with(login_rate, "")
}

/// [`start`] with more `[api]` lines (`api` is added to that section).
pub fn start_with(login_rate: u32, api: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut config = Config::parse(&format!(
        "db = \"{}\"\n[password]\nmemory_kib = 1024\niterations = 1\n[lockout]\ndeny = 3\n[api]\nsession_ttl = \"1h\"\nlogin_rate = {login_rate}\n{api}\n",
        db.display()
    ))
    .unwrap();
    config.db = db.clone().into();
    let (mut store, _) = Store::init(&db).unwrap();
    let hash = Hasher::new(config.hash)
        .unwrap()
        .hash(ADMIN_PASSWORD)
        .unwrap();
    let mut admin = NewUser::new(
        Username::parse("boss").unwrap(),
        hash,
        Allocation::default(),
    );
    admin.role = Role::Admin;
    store
        .write(|tx| tx.insert_user(&admin, Timestamp(1_000_000)))
        .unwrap();
    drop(store);

    let clock = Arc::new(AtomicI64::new(2_000_000));
    let read = Arc::clone(&clock);
    let state = Arc::new(AppState::with_clock(
        config,
        db,
        Box::new(move || Timestamp(read.load(Ordering::SeqCst))),
    ));
    Server {
        addr: diycloud_server::spawn_on_loopback(state).unwrap(),
        clock,
        dir,
    }
}

impl Server {
    /// One request on its own connection; `body` is sent as it is.
    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        Reply {
            status,
            headers,
            body: serde_json::from_str(body).unwrap_or(Value::Null),
            text: body.to_owned(),
        }
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth.as_str()));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.raw(method, path, &headers, body.as_bytes())
    }

    pub fn login(&self, name: &str, password: &str) -> Reply {
        self.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": name, "password": password})),
        )
    }

    pub fn token(&self, name: &str, password: &str) -> String {
        let reply = self.login(name, password);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["token"].as_str().unwrap().to_owned()
    }

    pub fn add(&self, token: &str, body: Value) -> Reply {
        self.call("POST", "/api/v1/users", Some(token), Some(body))
    }
}
