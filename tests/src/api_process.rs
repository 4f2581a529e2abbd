//! `slicectl serve` as a process of its own on a unix socket, for the tests
//! that drive the API beside the PAM module and slicectl on one database.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use serde_json::Value;

use crate::Env;

pub struct ApiProcess {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl ApiProcess {
    /// Starts `slicectl serve` on `env`'s database and config; returns once
    /// it listens.
    pub fn start(env: &Env) -> Self {
        // Not in env.dir: pam_wrapper copies every file of that directory
        // (the PAM services) and fails on a socket.
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("api.sock");
        let child = env
            .slicectl_cmd(&["serve", "--listen", socket.to_str().expect("path")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slicectl serve");
        wait_for(&socket);
        Self {
            child,
            socket,
            _dir: dir,
        }
    }

    /// One request (JSON body, bearer `token` if any): the status and the
    /// JSON answer (`Null` when it is not JSON).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        let body = body.to_string();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let mut stream = UnixStream::connect(&self.socket).expect("connect");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("request");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("reply");
        let status = reply
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let json = reply
            .split("\r\n\r\n")
            .nth(1)
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        (status, json)
    }

    /// `POST /api/v1/auth/login`: the status.
    pub fn login(&self, name: &str, password: &str) -> u16 {
        let body = serde_json::json!({"username": name, "password": password});
        self.call("POST", "/api/v1/auth/login", None, &body).0
    }

    /// SIGTERM: the server stops cleanly (exit 0).
    pub fn stop(mut self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "slicectl serve after SIGTERM: {status}");
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// Waiting for another process to bind its socket is what a test must do.
#[allow(clippy::disallowed_methods)]
fn wait_for(socket: &Path) {
    for _ in 0..200 {
        if UnixStream::connect(socket).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("slicectl serve did not listen on {}", socket.display());
}
