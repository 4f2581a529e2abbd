//! The API and PAM share one lockout (issue 10, acceptance 2): `slicectl
//! serve` runs as its own process on a unix socket, the PAM module runs in
//! pamtester under pam_wrapper, both on one database. Wrong passwords
//! through either lock the account for the other, and `slicectl user
//! unlock` clears it for both.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use serde_json::json;

struct Api {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Api {
    fn start(env: &diycloud_tests::Env) -> Self {
        // Not in env.dir: pam_wrapper copies every file of that directory
        // (the PAM services) and fails on a socket.
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        let child = env
            .slicectl_cmd(&["serve", "--listen", socket.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(&socket);
        Self {
            child,
            socket,
            _dir: dir,
        }
    }

    /// `POST /api/v1/auth/login`: the status.
    fn login(&self, name: &str, password: &str) -> u16 {
        let body = json!({"username": name, "password": password}).to_string();
        let mut stream = UnixStream::connect(&self.socket).unwrap();
        write!(
            stream,
            "POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply.split(' ').nth(1).unwrap().parse().unwrap()
    }

    /// SIGTERM: the server stops cleanly.
    fn stop(mut self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "slicectl serve after SIGTERM: {status}");
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

#[test]
fn wrong_passwords_through_either_lock_both_and_unlock_clears_both() {
    let env = diycloud_tests::test_env!(
        "[password]\nmemory_kib = 1024\niterations = 1\n[lockout]\ndeny = 3\n[api]\nlogin_rate = 100\n"
    );
    env.standard_service();
    env.add_user("alice", "alice password 1", &[]);
    let api = Api::start(&env);
    assert_eq!(api.login("alice", "alice password 1"), 200);

    // Through the API, then PAM: her right password is refused by both.
    for _ in 0..3 {
        assert_eq!(api.login("alice", "wrong"), 401);
    }
    let pam = env.login("alice", "alice password 1");
    assert!(
        !pam.success,
        "locked through the API, PAM let her in: {pam:?}"
    );
    assert_eq!(api.login("alice", "alice password 1"), 401);
    let out = env.slicectl(&["user", "unlock", "alice"], None);
    assert!(out.status.success());
    let pam = env.login("alice", "alice password 1");
    assert!(pam.success, "{pam:?}");
    assert_eq!(api.login("alice", "alice password 1"), 200);

    // Through PAM, then the API.
    for _ in 0..3 {
        assert!(!env.login("alice", "wrong").success);
    }
    assert_eq!(api.login("alice", "alice password 1"), 401);
    assert!(!env.login("alice", "alice password 1").success);
    assert!(env
        .slicectl(&["user", "unlock", "alice"], None)
        .status
        .success());
    assert_eq!(api.login("alice", "alice password 1"), 200);
    assert!(env.login("alice", "alice password 1").success);
    api.stop();
}
