//! Without --password-stdin on a terminal, slicectl prompts twice with echo off.
#![deny(unsafe_code)]
// Waits for other processes (a child to reach a point, a prompt to show):
// real time is what it waits on.
#![allow(clippy::disallowed_methods)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Reads from the pty master until `needle` shows up (or the child is done).
fn read_until(master: &mut std::fs::File, seen: &mut String, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 1024];
    while !seen.contains(needle) && Instant::now() < deadline {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
}

#[test]
fn prompts_on_a_terminal_without_echo() {
    let env = diycloud_tests::test_env!("");
    env.standard_service();
    env.add_user("alice", "first password", &[]);

    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave = std::fs::File::from(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let mut cmd = env.slicectl_cmd(&["user", "passwd", "alice"]);
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().expect("slicectl");
    // Our copies of the slave are gone (moved into the child's stdio), so the
    // master sees EOF once the child exits.
    drop(cmd);

    let mut seen = String::new();
    read_until(&mut master, &mut seen, "New password: ");
    master.write_all(b"typed secret 77\n").unwrap();
    read_until(&mut master, &mut seen, "Retype new password: ");
    master.write_all(b"typed secret 77\n").unwrap();
    read_until(&mut master, &mut seen, "password of alice changed");
    let status = child.wait().unwrap();
    assert!(status.success(), "{seen}");
    assert!(
        !seen.contains("typed secret"),
        "the password was echoed: {seen:?}"
    );
    assert!(env.login("alice", "typed secret 77").success);
}
