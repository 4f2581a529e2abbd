//! Logins and password dialogs as a person has them: over SSH with a
//! password, and on a real terminal (script(1)) for su and passwd.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::termios::{tcgetattr, LocalFlags};

use super::cmd::TIMED_OUT;
use super::{oneline, Cmd, Guest};

/// Whether the terminal at `path` has its echo off (a password prompt).
fn echo_off(path: &str) -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOCTTY | nix::libc::O_NONBLOCK)
        .open(path)
        .ok()
        .and_then(|tty| tcgetattr(&tty).ok())
        .is_some_and(|t| !t.local_flags.contains(LocalFlags::ECHO))
}

/// Runs `command` on a terminal and answers its password prompts: answer n
/// goes to the n-th prompt with "assword:" in it, once that prompt is shown
/// AND the terminal's echo is off (libpam_misc turns echo off with
/// TCSAFLUSH, which throws away anything typed ahead). Returns the status
/// (124 when it was still running after 60 s, e.g. waiting for a prompt
/// not answered) and the transcript.
pub fn dialog(command: &str, answers: &[&str]) -> (i32, String) {
    let Ok(dir) = tempfile::tempdir() else {
        return (-1, "no temporary directory".into());
    };
    let tty_file = dir.path().join("tty");
    let Ok((read, write)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return (-1, "no pipe".into());
    };
    let Ok(write2) = write.try_clone() else {
        return (-1, "no pipe".into());
    };
    let mut script = Command::new("script");
    script
        .args([
            "-qfec",
            &format!("tty > {}; exec {command}", tty_file.display()),
        ])
        .arg("/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::from(write))
        .stderr(Stdio::from(write2))
        .process_group(0);
    let child = script.spawn();
    drop(script);
    let Ok(mut child) = child else {
        return (127, "cannot run script".into());
    };
    let transcript = Arc::new(Mutex::new(String::new()));
    let seen = Arc::clone(&transcript);
    let reader = std::thread::spawn(move || {
        let mut pipe = std::fs::File::from(read);
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut text) = seen.lock() {
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
    let until = Instant::now() + Duration::from_secs(60);
    let mut stdin = child.stdin.take();
    let prompts = || {
        transcript
            .lock()
            .map_or(0, |t| t.matches("assword:").count())
    };
    'answers: for (n, answer) in answers.iter().enumerate() {
        let answer_by = Instant::now() + Duration::from_secs(40);
        loop {
            if matches!(child.try_wait(), Ok(Some(_))) || Instant::now() > answer_by {
                break 'answers;
            }
            let tty = std::fs::read_to_string(&tty_file).unwrap_or_default();
            let tty = tty.trim();
            if !tty.is_empty() && prompts() > n && echo_off(tty) {
                if let Some(stdin) = stdin.as_mut() {
                    let _ = writeln!(stdin, "{answer}");
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let rc = loop {
        match child.try_wait() {
            Ok(Some(status)) => break super::cmd::exit_code(&status),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
                let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                break TIMED_OUT;
            }
        }
    };
    // Its stdin stays open until it ends: script ends its command at EOF.
    drop(stdin);
    let _ = reader.join();
    let text = transcript
        .lock()
        .map(|t| t.replace('\r', ""))
        .unwrap_or_default();
    (rc, text)
}

/// Logs in over ssh as `user` with `password`: "<last line>|rc=N", the last
/// line the login printed ("in as <who>" once in) and sshpass's status,
/// where 5 means the server asked for the password again: PAM refused it.
/// Anything else (255: ssh could not connect) is no answer from PAM at all.
pub fn ssh_as(g: &Guest, user: &str, password: &str) -> String {
    let out = Guest::ssh_cmd(user, password, "echo \"in as $(id -un)\"")
        .merged()
        .timeout(120)
        .run();
    let _ = g;
    format!("{}|rc={}", out.last_line(), out.rc)
}

pub fn ssh_works(g: &Guest, name: &str, user: &str, password: &str) {
    g.check(
        name,
        &format!("in as {user}|rc=0"),
        &ssh_as(g, user, password),
    );
}

/// The password is asked for again (sshpass: 5).
pub fn ssh_refused(g: &Guest, name: &str, user: &str, password: &str) {
    let out = ssh_as(g, user, password);
    if out.contains("in as ") {
        g.fail(name, "refused", &out);
    } else if out.ends_with("|rc=5") {
        g.pass(name);
    } else {
        g.fail(name, "the password refused (sshpass rc=5)", &out);
    }
}

/// `runner` runs `su target -c 'id -un'`, typing `password`: "rc=N who=NAME".
pub fn su_as(runner: &str, target: &str, password: &str) -> String {
    let (rc, out) = dialog(
        &format!("runuser -u {runner} -- su {target} -c 'id -un'"),
        &[password],
    );
    let last = super::last_line(&out);
    let who = last.find("assword:").map_or(last.as_str(), |at| {
        last[at + "assword:".len()..].trim_start()
    });
    format!("rc={rc} who={who}")
}

/// A password change that must succeed; its transcript.
pub fn passwd_dialog(g: &Guest, name: &str, command: &str, answers: &[&str]) -> String {
    let (rc, out) = dialog(command, answers);
    g.check_that(
        name,
        rc == 0 && out.contains("password updated successfully"),
        "rc=0 and 'password updated successfully'",
        &format!("rc={rc}: {}", oneline(&out)),
    );
    out
}

pub fn asks_no_current(g: &Guest, name: &str, transcript: &str) {
    g.check_that(
        name,
        !transcript.to_lowercase().contains("current"),
        "no Current password prompt",
        &oneline(transcript),
    );
}

pub fn chpasswd(line: &str) -> String {
    let out = Cmd::new(&["chpasswd"])
        .input(&format!("{line}\n"))
        .merged()
        .run();
    format!("{}:{}", out.rc, out.stdout.trim_end())
}
