//! slicectl writing into a pipe whose reader has gone (`slicectl user list |
//! head -3`, `slicectl completions bash | true`): it stops writing and exits
//! like other Unix tools, without a panic message or a backtrace.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::process::{Command, Output, Stdio};

use diycloud_tests::Env;

/// Runs `cmd` with its stdout on a real pipe whose read end is closed
/// before the child starts: every write it makes gets EPIPE.
fn into_closed_pipe(mut cmd: Command) -> Output {
    let (reader, writer) = nix::unistd::pipe().expect("pipe");
    drop(reader);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        // A panic would print its backtrace too: make sure it would show.
        .env("RUST_BACKTRACE", "1");
    let child = cmd.spawn().expect("spawn slicectl");
    // `cmd` still holds the write end: let it go, so only the child has it.
    drop(cmd);
    child.wait_with_output().expect("wait")
}

fn assert_quiet(what: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    for sign in [
        "panicked",
        "Broken pipe",
        "stack backtrace",
        "RUST_BACKTRACE",
    ] {
        assert!(
            !stderr.contains(sign),
            "{what}: {sign:?} on stderr:\n{stderr}"
        );
    }
}

#[test]
fn completions_into_a_closed_pipe_exit_quietly() {
    let env = diycloud_tests::test_env!("");
    for shell in ["bash", "zsh", "fish"] {
        let out = into_closed_pipe(env.slicectl_cmd(&["completions", shell]));
        assert_quiet(shell, &out);
        assert_eq!(out.status.code(), Some(0), "completions {shell}: {out:?}");
    }
}

#[test]
fn listings_into_a_closed_pipe_exit_quietly() {
    let env: Env = diycloud_tests::test_env!("");
    for name in ["alice", "bob", "carol"] {
        env.add_user(name, "long enough 1", &[]);
    }
    for args in [
        &["user", "list"][..],
        &["--json", "user", "list"],
        &["user", "show", "alice"],
        &["--json", "usage"],
        &["--help"],
    ] {
        let out = into_closed_pipe(env.slicectl_cmd(args));
        assert_quiet(&format!("{args:?}"), &out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    }
}

#[test]
fn a_failure_into_a_closed_pipe_keeps_its_exit_code() {
    let env = diycloud_tests::test_env!("");
    // With --json the error document goes to stdout, which nobody reads.
    let out = into_closed_pipe(env.slicectl_cmd(&["--json", "user", "show", "nobody"]));
    assert_quiet("user show nobody", &out);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nobody"),
        "the reason still goes to stderr: {stderr}"
    );
    let out = into_closed_pipe(env.slicectl_cmd(&["--json", "user", "add", "Bad Name"]));
    assert_quiet("user add 'Bad Name'", &out);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
