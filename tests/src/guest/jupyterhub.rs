//! Section 13: JupyterHub, each user's server inside their allocation, on
//! the boot run.sh marks (its image has JupyterHub). Its checks stay in
//! shell (jupyterhub-checks.sh, with the helpers of guest-lib.sh): they
//! drive the hub's Python client. Their lines are relayed and counted.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::Guest;

pub fn run(g: &Guest) {
    let script = format!(
        "stage={stage}; . {stage}/guest-lib.sh; . {stage}/jupyterhub-checks.sh",
        stage = g.stage.display()
    );
    let child = Command::new("bash")
        .args(["-c", &script])
        // Its SSH login uses the options of every other login here.
        .env("DIYCLOUD_SSH_OPTIONS", super::SSH_OPTIONS.join(" "))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            g.fail("the JupyterHub checks", "they run", &e.to_string());
            return;
        }
    };
    // A watchdog: the checks get half an hour (about 170 s on a quiet host;
    // 600 s was not enough beside a second guest and two busy processes),
    // then their group is killed.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(LIMIT).is_err() {
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            return true;
        }
        false
    });
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // Its own PASS and FAIL lines, counted here as ours.
            match line.strip_prefix("DIYCLOUD ") {
                Some(rest) => {
                    if let Some(fail) = rest.strip_prefix("FAIL ") {
                        let (name, saw) = fail.split_once(": expected ").unwrap_or((fail, ""));
                        let (expected, saw) = saw.split_once("; saw ").unwrap_or((saw, ""));
                        g.fail(name, expected, saw);
                    } else {
                        g.say(rest);
                    }
                }
                None => println!("{line}"),
            }
        }
    }
    let _ = child.wait();
    let _ = done.send(());
    if watchdog.join().unwrap_or(false) {
        g.fail(
            "the JupyterHub checks",
            &format!("an end within {} s", LIMIT.as_secs()),
            "they were killed",
        );
        // What they left would fail the next sections for another reason.
        super::Cmd::shell(&format!(
            ". {}/guest-lib.sh; jupyterhub_cleanup",
            g.stage.display()
        ))
        .timeout(120)
        .run();
    }
}

/// How long the JupyterHub checks may run.
const LIMIT: Duration = Duration::from_secs(1800);
