//! Running the guest's real tools with a deadline: a check must never hang
//! the guest (the host stops it after 900 s, with nothing reported).
//!
//! Each command runs in a process group of its own; past its deadline the
//! group is killed and the result says so (status 124, as timeout(1)).

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// The status given to a command that ran past its deadline.
pub const TIMED_OUT: i32 = 124;

/// What a command left: its exit status (128 + N for signal N, as a shell
/// says) and its output.
#[derive(Debug, Clone, Default)]
pub struct Out {
    pub rc: i32,
    /// stdout, or stdout and stderr interleaved for [`Cmd::merged`].
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// stdout and stderr, as `2>&1` would show them for an unmerged command
    /// (stdout first).
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The last non-empty line of [`Out::all`], without `\r`.
    pub fn last_line(&self) -> String {
        last_line(&self.all())
    }

    /// stdout without its trailing newline.
    pub fn trimmed(&self) -> String {
        self.stdout.trim_end_matches(['\n', '\r']).to_string()
    }

    pub fn ok(&self) -> bool {
        self.rc == 0
    }
}

/// The last non-empty line of `text`, without `\r`.
pub fn last_line(text: &str) -> String {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

/// Lines joined with `|`, for a fail message (the shell's `tr '\n' '|'`).
pub fn oneline(text: &str) -> String {
    text.lines().map(|l| format!("{l}|")).collect()
}

/// A command to run: the program and arguments, optional stdin, a deadline.
pub struct Cmd {
    command: Command,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    merged: bool,
}

impl Cmd {
    /// `argv[0]` with the rest as arguments; 60 s by default.
    pub fn new(argv: &[&str]) -> Self {
        let mut command = Command::new(argv[0]);
        command.args(&argv[1..]);
        Cmd {
            command,
            stdin: None,
            timeout: Duration::from_secs(60),
            merged: false,
        }
    }

    /// `bash -c SCRIPT`: only where a shell is the thing checked (a login
    /// shell's environment, a pipeline a user would type).
    pub fn shell(script: &str) -> Self {
        Self::new(&["bash", "-c", script])
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.command.arg(arg);
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.command.args(args);
        self
    }

    pub fn input(mut self, text: &str) -> Self {
        self.stdin = Some(text.as_bytes().to_vec());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn timeout(mut self, seconds: u64) -> Self {
        self.timeout = Duration::from_secs(seconds);
        self
    }

    /// stdout and stderr into one pipe, in the order written (`2>&1`).
    pub fn merged(mut self) -> Self {
        self.merged = true;
        self
    }

    /// The child, its stdin text, its deadline, and for a merged command the
    /// read end of its one output pipe.
    fn spawn(mut self) -> std::io::Result<Spawned> {
        self.command.process_group(0);
        self.command.stdin(match self.stdin {
            Some(_) => Stdio::piped(),
            None => Stdio::null(),
        });
        if self.merged {
            // Close-on-exec: no later child inherits this pipe and holds it open.
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            let write2 = write.try_clone()?;
            self.command.stdout(Stdio::from(write));
            self.command.stderr(Stdio::from(write2));
            let child = self.command.spawn()?;
            // The parent's copies of the write end are in the Command: closed
            // here, so that the reader sees the end.
            drop(self.command);
            return Ok(Spawned {
                child,
                input: self.stdin,
                timeout: self.timeout,
                merged: Some(std::fs::File::from(read)),
            });
        }
        self.command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = self.command.spawn()?;
        Ok(Spawned {
            child,
            input: self.stdin,
            timeout: self.timeout,
            merged: None,
        })
    }

    /// Runs to the end or to the deadline.
    pub fn run(self) -> Out {
        let what = format!("{:?}", self.command);
        let spawned = match self.spawn() {
            Ok(spawned) => spawned,
            Err(e) => return cannot_run(&what, &e),
        };
        let pid = spawned.child.id();
        let timeout = spawned.timeout;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(finish(spawned));
        });
        if let Ok(out) = rx.recv_timeout(timeout) {
            return out;
        }
        kill_group(pid);
        // What it wrote before the kill, if the pipes close; a child that
        // left the group may hold them: then nothing.
        let mut out = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
        out.stderr
            .push_str(&format!("\n(killed after {} s: {what})", timeout.as_secs()));
        out.rc = TIMED_OUT;
        out
    }

    /// Starts it and returns at once; see [`Background`].
    pub fn start(self) -> Background {
        let what = format!("{:?}", self.command);
        let (tx, rx) = mpsc::channel();
        let timeout = self.timeout;
        let pid = match self.spawn() {
            Ok(spawned) => {
                let pid = spawned.child.id();
                std::thread::spawn(move || {
                    let _ = tx.send(finish(spawned));
                });
                pid
            }
            Err(e) => {
                let _ = tx.send(cannot_run(&what, &e));
                0
            }
        };
        Background {
            rx,
            pid,
            timeout,
            result: None,
        }
    }
}

fn cannot_run(what: &str, e: &std::io::Error) -> Out {
    Out {
        rc: 127,
        stdout: String::new(),
        stderr: format!("cannot run {what}: {e}"),
    }
}

pub(crate) fn exit_code(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

struct Spawned {
    child: Child,
    input: Option<Vec<u8>>,
    timeout: Duration,
    merged: Option<std::fs::File>,
}

/// Feeds its stdin, reads its output to the end, waits for it.
fn finish(spawned: Spawned) -> Out {
    let Spawned {
        mut child,
        input,
        merged,
        ..
    } = spawned;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        let _ = stdin.write_all(&input);
    }
    let err_pipe = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = err_pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    });
    let mut stdout = Vec::new();
    if let Some(mut pipe) = merged {
        let _ = pipe.read_to_end(&mut stdout);
    } else if let Some(mut pipe) = child.stdout.take() {
        let _ = pipe.read_to_end(&mut stdout);
    }
    let stderr = err_reader.join().unwrap_or_default();
    let rc = child.wait().map_or(-1, |status| exit_code(&status));
    Out {
        rc,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        if pid > 0 {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// A command running beside the checks (a login that holds a session, a
/// burner). Waited for with its deadline from the start; killed (its
/// process group) when dropped unfinished.
pub struct Background {
    rx: mpsc::Receiver<Out>,
    pid: u32,
    timeout: Duration,
    result: Option<Out>,
}

impl Background {
    /// Waits for the end, at most its deadline (counted from now); then
    /// kills it.
    pub fn wait(mut self) -> Out {
        if let Some(out) = self.result.take() {
            return out;
        }
        match self.rx.recv_timeout(self.timeout) {
            Ok(out) => out,
            Err(_) => {
                self.kill();
                let mut out = self
                    .rx
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap_or_default();
                out.rc = TIMED_OUT;
                out
            }
        }
    }

    /// Whether it has ended (its result is kept for [`Background::wait`]).
    pub fn finished(&mut self) -> bool {
        if self.result.is_none() {
            self.result = self.rx.try_recv().ok();
        }
        self.result.is_some()
    }

    /// Kills its process group and waits for it (a few seconds at most).
    pub fn stop(mut self) -> Out {
        self.kill();
        self.result
            .take()
            .or_else(|| self.rx.recv_timeout(Duration::from_secs(10)).ok())
            .unwrap_or_default()
    }

    fn kill(&mut self) {
        kill_group(self.pid);
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if !self.finished() {
            self.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn merged_output_keeps_the_order_written() {
        let out = Cmd::shell("echo one; echo two >&2; echo three")
            .merged()
            .run();
        assert_eq!((out.rc, out.stdout.as_str()), (0, "one\ntwo\nthree\n"));
        assert_eq!(out.last_line(), "three");
    }

    #[test]
    fn stdin_status_and_signals() {
        let out = Cmd::new(&["sh", "-c", "read line; echo \"got $line\"; exit 3"])
            .input("pw 1\n")
            .run();
        assert_eq!((out.rc, out.trimmed().as_str()), (3, "got pw 1"));
        assert_eq!(Cmd::shell("kill -9 $$").run().rc, 137, "as a shell says it");
        assert_eq!(Cmd::new(&["/nonexistent/tool"]).run().rc, 127);
    }

    #[test]
    fn a_command_past_its_deadline_is_killed_with_its_children() {
        let at = Instant::now();
        // The child holds the pipe too: the group is killed, not only sh.
        let out = Cmd::shell("echo started; sleep 30 & sleep 30")
            .timeout(1)
            .run();
        assert_eq!(out.rc, TIMED_OUT);
        assert_eq!(out.stdout, "started\n");
        assert!(at.elapsed() < Duration::from_secs(10), "{:?}", at.elapsed());
    }

    #[test]
    fn a_background_command_is_stopped_or_waited_for() {
        let mut running = Cmd::shell("sleep 30").start();
        assert!(!running.finished());
        let at = Instant::now();
        assert_eq!(running.stop().rc, 137);
        assert!(at.elapsed() < Duration::from_secs(10));
        let done = Cmd::shell("echo done").start();
        assert_eq!(done.wait().trimmed(), "done");
    }
}
