//! Harness for tests that drive the built artifacts: `slicectl` and
//! `libpam_diycloud.so` through real libpam, with pam_wrapper giving each
//! test its own PAM service directory (nothing in /etc/pam.d is touched).
//!
//! The tests live in `slicectl/tests/`, where cargo builds `slicectl` for
//! them (`CARGO_BIN_EXE_slicectl`) and, through a dev-dependency, the module.

// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
// Measuring how long libpam takes is what the harness's timing code is for.
#![allow(clippy::disallowed_methods)]
#![deny(unsafe_code)]

pub mod api_process;
pub mod guest;
// The libpam client calls (pam_start and friends): the harness's one FFI.
#[allow(unsafe_code)]
pub mod pam_client;
pub mod timing;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `target/<profile>`, found from the running test binary (`.../deps/name-hash`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    dir.to_path_buf()
}

fn artifact(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace`, which builds it",
        path.display()
    );
    path
}

/// The freshest build of the module: cargo leaves it in `deps/` when it is
/// built for the tests, and in the profile directory for `cargo build`.
pub fn module() -> PathBuf {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let candidates = ["deps/libpam_diycloud.so", "libpam_diycloud.so"];
    let newest = candidates
        .iter()
        .max_by_key(|c| mtime(&target_dir().join(c)))
        .expect("candidates");
    artifact(newest)
}

/// Where the tests' slicectl is; set by [`test_env!`] from `CARGO_BIN_EXE_slicectl`.
static SLICECTL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Tells the harness where the freshly built slicectl is.
pub fn use_slicectl(path: &str) {
    let _ = SLICECTL.set(PathBuf::from(path));
}

pub fn slicectl_bin() -> PathBuf {
    SLICECTL
        .get()
        .cloned()
        .expect("create the Env with diycloud_tests::test_env!")
}

/// `Env::new(config)` for a test crate of the slicectl package: records the
/// path cargo built slicectl at (only visible to that crate) first.
#[macro_export]
macro_rules! test_env {
    ($config:expr) => {{
        $crate::use_slicectl(env!("CARGO_BIN_EXE_slicectl"));
        $crate::Env::new($config)
    }};
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Marks the running test as skipped: says so on stderr past cargo's
/// output capture (so a skip never looks like a pass), and appends it to the
/// file `DIYCLOUD_SKIP_LOG` names, from which `tests/run-all.sh` prints the
/// total. The test returns right after.
pub fn skip(reason: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let line = format!("SKIPPED {test}: {reason}\n");
    // Straight to the file descriptor: eprintln! would be captured.
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(log) = std::env::var_os("DIYCLOUD_SKIP_LOG") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

/// Skips the running test unless it runs as root; true when skipped.
pub fn skip_unless_root(why: &str) -> bool {
    if is_root() {
        return false;
    }
    skip(&format!("{why} needs root (CI runs as root)"));
    true
}

/// Serialises the pamtester runs of one test binary; see [`Env::pamtester`].
static PAMTESTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What pamtester printed and how it exited.
#[derive(Debug)]
pub struct Outcome {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn from(out: Output) -> Self {
        Self {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// pamtester reports a failure with `pam_strerror` of the PAM code, so the
    /// message identifies the code (e.g. "Authentication failure" = PAM_AUTH_ERR).
    /// Whether pamtester or the module printed `text` (on either stream).
    pub fn said(&self, text: &str) -> bool {
        self.stdout.contains(text) || self.stderr.contains(text)
    }

    pub fn failed_with(&self, message: &str) -> bool {
        !self.success && self.stderr.contains(&format!("pamtester: {message}"))
    }
}

/// One test's world: a temp dir with a database, a config and PAM services.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub config: PathBuf,
    /// Host accounts linked by a test, which joined the managed group.
    linked: std::cell::RefCell<Vec<String>>,
}

impl Drop for Env {
    /// Takes linked host accounts (e.g. `man`) back out of the managed group.
    fn drop(&mut self) {
        for name in self.linked.borrow().iter() {
            let _ = Command::new("gpasswd")
                .args(["--delete", name, "diycloud"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Whether `user add` went through. A user with a system account gets their
/// limits applied at once; on a machine without systemd (a container) that
/// fails after everything else is saved, which `user add` reports with exit
/// 1 and this message. The VM tier applies for real.
pub fn added(out: &Output) -> bool {
    out.status.success()
        || (!has_system_bus()
            && String::from_utf8_lossy(&out.stderr)
                .contains("the change is saved, but applying it failed"))
}

/// Whether this machine has a system bus (systemd reachable), as the module
/// would reach it.
pub fn has_system_bus() -> bool {
    Path::new("/run/dbus/system_bus_socket").exists()
}

impl Env {
    /// A fresh, initialised database and a config with `config_text`.
    pub fn new(config_text: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("diycloud.db");
        let config = dir.path().join("diycloud.toml");
        std::fs::write(&config, config_text).expect("write config");
        let env = Self {
            dir,
            db,
            config,
            linked: Default::default(),
        };
        let out = env.slicectl(&["init"], None);
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        env
    }

    pub fn slicectl_cmd(&self, args: &[&str]) -> Command {
        self.slicectl_cmd_on(&self.db, args)
    }

    /// slicectl with this env's config and another database, `db`.
    pub fn slicectl_cmd_on(&self, db: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(slicectl_bin());
        cmd.arg("--db")
            .arg(db)
            .arg("--config")
            .arg(&self.config)
            .args(args);
        cmd.env_remove("DIYCLOUD_CONFIG");
        cmd
    }

    /// Runs slicectl against this env, feeding `stdin` if given.
    pub fn slicectl(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run(self.slicectl_cmd(args), stdin)
    }

    /// Runs slicectl against the database `db` with this env's config.
    pub fn slicectl_on(&self, db: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run(self.slicectl_cmd_on(db, args), stdin)
    }

    /// `slicectl ... --json`, parsed; panics with stderr on failure.
    pub fn slicectl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.slicectl(&all, None);
        assert!(
            out.status.success(),
            "slicectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// Adds a database-only user with `password` (and extra flags).
    pub fn add_user(&self, name: &str, password: &str, extra: &[&str]) {
        let mut args = vec![
            "user",
            "add",
            name,
            "--password-stdin",
            "--no-system-account",
        ];
        args.extend_from_slice(extra);
        let out = self.slicectl(&args, Some(format!("{password}\n").as_bytes()));
        assert!(
            added(&out),
            "user add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if extra.contains(&"--allow-service-account") {
            self.linked.borrow_mut().push(name.to_owned());
        }
    }

    /// Writes a PAM service file; `{module}` expands to the module's path and
    /// arguments pointing at this env's database and config.
    pub fn service(&self, name: &str, lines: &[&str]) {
        let module = format!(
            "{} db={} config={}",
            module().display(),
            self.db.display(),
            self.config.display()
        );
        let text: String = lines
            .iter()
            .map(|l| format!("{}\n", l.replace("{module}", &module)))
            .collect();
        std::fs::write(self.dir.path().join(name), text).expect("write service");
    }

    /// The standard test service: our module for auth, account and password.
    pub fn standard_service(&self) {
        self.service(
            "diycloud",
            &[
                "auth required {module}",
                "account required {module}",
                "password required {module}",
            ],
        );
    }

    /// A pamtester command under pam_wrapper with this env's service directory.
    pub fn pamtester_cmd(&self, service: &str, user: &str, operations: &[&str]) -> Command {
        let mut cmd = Command::new("pamtester");
        cmd.arg("-v").arg(service).arg(user).args(operations);
        cmd.env("LD_PRELOAD", "libpam_wrapper.so")
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", self.dir.path());
        cmd
    }

    /// Runs pamtester; `input` is what the user types (one answer per line).
    pub fn pamtester(
        &self,
        service: &str,
        user: &str,
        operations: &[&str],
        input: &[u8],
    ) -> Outcome {
        // pam_wrapper picks its /tmp/pam.X directory with lstat then mkdir:
        // two processes starting at once can share one, and the owner
        // deletes it on exit under the other. One pamtester at a time per
        // test binary (cargo runs the binaries one after another).
        self.pamtester_run(self.pamtester_cmd(service, user, operations), input)
    }

    /// Runs a pamtester command made by [`Env::pamtester_cmd`] and changed
    /// by the caller (more preloads, another user), one at a time.
    pub fn pamtester_run(&self, cmd: Command, input: &[u8]) -> Outcome {
        let _one_at_a_time = PAMTESTER.lock().unwrap_or_else(|e| e.into_inner());
        Outcome::from(run(cmd, Some(input)))
    }

    /// Logs `user` in through the standard service with `password`.
    pub fn login(&self, user: &str, password: &str) -> Outcome {
        self.pamtester(
            "diycloud",
            user,
            &["authenticate"],
            format!("{password}\n").as_bytes(),
        )
    }
}

/// Starts a pamtester command made by [`Env::pamtester_cmd`] and returns
/// once pam_wrapper has made its `/tmp/pam.X` directory (one that was not
/// there before the start appears), or the child has ended, or 2 s have
/// passed. pam_wrapper picks that directory with lstat then mkdir, so two
/// children in that step at once can share one (the owner deletes it on
/// exit under the other): a fixed delay between starts is not enough on a
/// busy machine, where a child may wait long for the CPU in that step.
/// The logins themselves (tens of ms each) still overlap.
pub fn spawn_pamtester(cmd: &mut Command) -> std::process::Child {
    use std::os::unix::fs::MetadataExt;
    // (name, inode, ctime): a name freed and taken again is a new one.
    let pam_dirs = || -> std::collections::HashSet<(std::ffi::OsString, u64, i64, i64)> {
        std::fs::read_dir("/tmp")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("pam."))
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((e.file_name(), m.ino(), m.ctime(), m.ctime_nsec()))
            })
            .collect()
    };
    let before = pam_dirs();
    let mut child = cmd.spawn().expect("pamtester");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        if pam_dirs().difference(&before).next().is_some()
            || matches!(child.try_wait(), Ok(Some(_)))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child
}

pub fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        // The program may exit before reading everything; that is its answer.
        let _ = pipe.write_all(input);
    }
    child.wait_with_output().expect("wait")
}

/// An API server on loopback (its own thread, for the process's life) on a
/// new database at `db` holding `users` (name and role), each with the
/// password hash `hash`; `config`'s `db` is set to `db`.
pub fn api_server(
    mut config: libdiycloud::config::Config,
    db: &Path,
    hash: &str,
    users: &[(&str, libdiycloud::model::Role)],
) -> std::net::SocketAddr {
    use libdiycloud::model::{Allocation, Timestamp, Username};
    use libdiycloud::store::{NewUser, Store};
    config.db = libdiycloud::store::Database::Sqlite(db.to_path_buf());
    let (mut store, _) = Store::init(db).expect("init");
    for (name, role) in users {
        let mut user = NewUser::new(
            Username::parse(name).expect("name"),
            hash.to_owned(),
            Allocation::default(),
        );
        user.role = *role;
        store
            .write(|tx| tx.insert_user(&user, Timestamp(0)))
            .expect("user");
    }
    drop(store);
    let state = std::sync::Arc::new(diycloud_server::AppState::new(config, db.to_path_buf()));
    diycloud_server::spawn_on_loopback(state).expect("server")
}
