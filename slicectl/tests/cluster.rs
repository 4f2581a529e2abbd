//! Two nodes, one user base on a real PostgreSQL server (started by
//! `tests/system/cluster.sh`, which sets `DIYCLOUD_TEST_PG_*`): each node is
//! a config with its own cache file and its own PAM services, and logs
//! users in through real libpam loading the built module in this process.
//!
//! 1. What node A's admin does (add, password, limits, disable) takes
//!    effect on node B.
//! 2. With the server frozen, cut off by the network (nftables), then
//!    stopped: B refuses logins until its probe (`cache refresh`) has seen
//!    the outage, then logs in a user it saw before within the connect
//!    timeout, counts wrong passwords toward the lockout, A's `user add`
//!    fails whole; back, B's counts are merged.
//! 4. A caller's limits and signals (`ulimit -n`, SIGSTOP) cannot send a
//!    login to the cache while the server is up.
//! 3. 50 parallel logins on both nodes during admin writes on both: none
//!    fails, no failure count or limit change is lost.
#![deny(unsafe_code)]
// A test driver: reading the clock and panicking are its job.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use diycloud_tests::pam_client::{Pam, PAM_SUCCESS};

const SCHEMA: &str = "cluster_test";
const TIMEOUT_SECS: u64 = 2;

struct Server {
    url: String,
    password_file: String,
    ca: String,
    dir: String,
}

impl Server {
    fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok();
        let Some(url) = var("DIYCLOUD_TEST_PG_URL") else {
            assert!(
                var("DIYCLOUD_TEST_PG_REQUIRED").is_none(),
                "DIYCLOUD_TEST_PG_REQUIRED is set but DIYCLOUD_TEST_PG_URL is not"
            );
            return None;
        };
        Some(Self {
            url,
            password_file: var("DIYCLOUD_TEST_PG_PASSWORD_FILE").expect("password file"),
            ca: var("DIYCLOUD_TEST_PG_CA").expect("CA"),
            dir: var("DIYCLOUD_TEST_PG_DIR").expect("server dir"),
        })
    }

    /// Runs one of tests/system/postgres-server.sh's functions on the server.
    fn harness(&self, call: &str) {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/system/postgres-server.sh");
        let status = Command::new("bash")
            .arg("-c")
            .arg(format!("source {} && {call}", script.display()))
            .env("PG_TEST_DIR", &self.dir)
            .status()
            .unwrap();
        assert!(status.success(), "{call}");
    }

    fn psql(&self, sql: &str) {
        self.harness(&format!("pg_psql \"$PG_TEST_DIR\" \"{sql}\""));
    }

    /// The postmaster's pid (first line of its pid file).
    fn postmaster(&self) -> String {
        let text = std::fs::read_to_string(format!("{}/data/postmaster.pid", self.dir)).unwrap();
        text.lines().next().unwrap().to_owned()
    }

    /// Signals the postmaster and every backend it started: `-STOP`
    /// freezes the whole server (connections are still accepted by the
    /// kernel, and never answered), `-CONT` thaws it.
    fn signal(&self, signal: &str) {
        let postmaster = self.postmaster();
        // The backends first, so none is started unseen in between.
        let _ = Command::new("pkill")
            .args([signal, "-P", &postmaster])
            .status()
            .unwrap();
        let status = Command::new("kill")
            .args([signal, &postmaster])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Server {
    /// The test server with an empty `schema`, or `None` (the test skips)
    /// without one or without root.
    fn with_schema(slicectl: &str, schema: &str) -> Option<Self> {
        diycloud_tests::use_slicectl(slicectl);
        let Some(server) = Server::from_env() else {
            diycloud_tests::skip(
                "PostgreSQL: DIYCLOUD_TEST_PG_URL is not set (tests/system/cluster.sh sets it)",
            );
            return None;
        };
        if diycloud_tests::skip_unless_root(
            "the module trusts only root's config and password file",
        ) {
            return None;
        }
        server.psql(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema} AUTHORIZATION diycloud"
        ));
        Some(server)
    }

    /// The server's TCP port, from its URL.
    fn port(&self) -> u16 {
        let after_host = self.url.rsplit('@').next().unwrap();
        let port = after_host.split(':').nth(1).unwrap();
        port.split(['/', '?']).next().unwrap().parse().unwrap()
    }
}

/// A network cut to one TCP port on this machine: nftables drops every
/// packet sent to it, until dropped.
struct Cut;

impl Cut {
    fn new(port: u16) -> Self {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", "diycloud_cut"])
            .output();
        for rule in [
            "add table inet diycloud_cut".to_owned(),
            "add chain inet diycloud_cut input { type filter hook input priority 0; }".to_owned(),
            format!("add rule inet diycloud_cut input tcp dport {port} drop"),
        ] {
            let out = Command::new("nft")
                .arg(&rule)
                .output()
                .expect("nft (tests/deps.sh installs nftables)");
            assert!(out.status.success(), "nft {rule}: {out:?}");
        }
        Cut
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", "diycloud_cut"])
            .output();
    }
}

/// One node: a config with its own cache, and PAM services that use it.
struct Node {
    name: &'static str,
    config: PathBuf,
    cache: PathBuf,
    pam_dir: PathBuf,
}

impl Node {
    fn new(dir: &Path, name: &'static str, server: &Server, deny: u32) -> Self {
        Self::with_timeout(dir, name, server, deny, TIMEOUT_SECS)
    }

    /// A node of the user base in `schema`, lockout off (the wrong
    /// passwords a test tries must not lock anyone).
    fn in_schema(dir: &Path, name: &'static str, server: &Server, schema: &'static str) -> Self {
        let node = Self::with_timeout(dir, name, server, 0, TIMEOUT_SECS);
        node.configure_in(server, 0, TIMEOUT_SECS, schema);
        node
    }

    fn with_timeout(
        dir: &Path,
        name: &'static str,
        server: &Server,
        deny: u32,
        timeout: u64,
    ) -> Self {
        let node = Self {
            name,
            config: dir.join(format!("{name}.toml")),
            cache: dir.join(format!("{name}-cache.db")),
            pam_dir: dir.join(format!("pam-{name}")),
        };
        std::fs::create_dir_all(&node.pam_dir).unwrap();
        node.configure(server, deny, timeout);
        let module = diycloud_tests::module();
        std::fs::write(
            node.pam_dir.join("login"),
            format!(
                "auth required {m} config={c}\naccount required {m} config={c}\n",
                m = module.display(),
                c = node.config.display()
            ),
        )
        .unwrap();
        node
    }

    /// (Re)writes the node's config: TLS to the server, verified by its CA.
    fn configure(&self, server: &Server, deny: u32, timeout: u64) {
        self.configure_in(server, deny, timeout, SCHEMA);
    }

    fn configure_in(&self, server: &Server, deny: u32, timeout: u64, schema: &str) {
        // B names the server by name: resolved by the calling thread (the
        // client's own resolver would start a thread, which the thread
        // count around B's logins would see).
        let host = if self.name == "b" {
            server.url.replace("127.0.0.1", "localhost")
        } else {
            server.url.clone()
        };
        let url = format!("{host}?sslmode=require&options=-csearch_path%3D{schema}");
        std::fs::write(
            &self.config,
            format!(
                "db = \"{url}\"\n\n[postgres]\npassword_file = \"{}\"\ncache = \"{}\"\nca_file = \"{}\"\nconnect_timeout = \"{timeout}s\"\n\n[lockout]\ndeny = {deny}\n",
                server.password_file,
                self.cache.display(),
                server.ca
            ),
        )
        .unwrap();
    }

    fn slicectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(diycloud_tests::slicectl_bin());
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("DIYCLOUD_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.slicectl(&all, stdin);
        assert!(
            out.status.success(),
            "node {}: slicectl {args:?}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    fn show(&self, user: &str) -> serde_json::Value {
        self.ok(&["user", "show", "--", user], None)
    }

    /// pam_authenticate + pam_acct_mgmt through libpam; the code, and how
    /// long it took.
    fn login(&self, user: &str, password: &str) -> (i32, Duration) {
        let pam = Pam::new("login", user, &self.pam_dir, password);
        let start = Instant::now();
        let rc = pam.login_and_account();
        (rc, start.elapsed())
    }

    /// pamtester (a process of its own, under pam_wrapper) with `setup`
    /// run first by its shell (`ulimit -n 12`), started but not waited for.
    fn pamtester(&self, setup: &str, user: &str, password: &str) -> std::process::Child {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{setup}; exec pamtester login \"$1\" authenticate acct_mgmt"
            ))
            .arg("sh")
            .arg(user)
            .env("LD_PRELOAD", "libpam_wrapper.so")
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", &self.pam_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(format!("{password}\n").as_bytes());
        child
    }

    /// Whether pamtester, under `setup`, logged `user` in.
    fn pamtester_login(&self, setup: &str, user: &str, password: &str) -> (bool, String) {
        let out = self
            .pamtester(setup, user, password)
            .wait_with_output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        (out.status.success(), said)
    }

    /// A column of the user's record in this node's cache (an SQL
    /// expression over `users u` and `resource_allocations a`).
    fn cached(&self, user: &str, column: &str) -> String {
        let out = Command::new("sqlite3")
            .arg(&self.cache)
            .arg(format!(
                "SELECT {column} FROM users u JOIN resource_allocations a ON a.user_id = u.id WHERE username = '{user}'"
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// The threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn add_user(node: &Node, name: &str, password: &str, extra: &[&str]) {
    let mut args = vec!["user", "add", "--password-stdin", "--no-system-account"];
    args.extend_from_slice(extra);
    args.extend(["--", name]);
    node.ok(&args, Some(&format!("{password}\n")));
}

#[test]
#[ignore = "needs a PostgreSQL server: tests/system/cluster.sh runs it"]
fn two_nodes_share_one_user_base_and_survive_an_outage() {
    let Some(server) = Server::with_schema(env!("CARGO_BIN_EXE_slicectl"), SCHEMA) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = Node::new(dir.path(), "a", &server, 3);
    let b = Node::new(dir.path(), "b", &server, 3);
    a.ok(&["init"], None);

    // 1. Made on A, used on B.
    add_user(&a, "alice", "first-password-1", &["--memory", "1G"]);
    // The client runs inside the host process (sshd): a login leaves no
    // thread behind, online or (below) through a timeout.
    let threads_before = threads();
    assert_eq!(b.login("alice", "first-password-1").0, PAM_SUCCESS);
    assert_eq!(threads(), threads_before, "a thread outlived the login");
    assert_eq!(
        b.cached("alice", "json_extract(a.limits, '$.memory')"),
        "1G",
        "B's lookup filled its cache"
    );
    assert_ne!(b.login("alice", "wrong-password").0, PAM_SUCCESS);
    a.ok(
        &["user", "passwd", "--password-stdin", "--", "alice"],
        Some("second-password-2\n"),
    );
    assert_ne!(
        b.login("alice", "first-password-1").0,
        PAM_SUCCESS,
        "old password"
    );
    assert_eq!(
        b.login("alice", "second-password-2").0,
        PAM_SUCCESS,
        "new password"
    );
    a.ok(&["user", "mod", "--memory", "2G", "--", "alice"], None);
    assert_eq!(b.show("alice")["memory"], "2G");
    assert_eq!(b.login("alice", "second-password-2").0, PAM_SUCCESS);
    assert_eq!(
        b.cached("alice", "json_extract(a.limits, '$.memory')"),
        "2G",
        "the limit B applies at session open"
    );
    a.ok(&["user", "mod", "--disable", "--", "alice"], None);
    assert_ne!(
        b.login("alice", "second-password-2").0,
        PAM_SUCCESS,
        "disabled on A"
    );
    a.ok(&["user", "mod", "--enable", "--", "alice"], None);
    assert_eq!(b.login("alice", "second-password-2").0, PAM_SUCCESS);
    add_user(&a, "bob", "bobs-password-3", &[]);

    // 2a. The server hangs (accepts, never answers). A login alone cannot
    // tell an outage from its own stalled connect: refused until B's probe
    // (the timer's `cache refresh`) has found the server unreachable too;
    // then B waits the timeout, no longer, and logs alice in from its cache.
    let refreshed = b.ok(&["cache", "refresh"], None);
    assert_eq!(refreshed["users"], 2, "{refreshed}");
    server.signal("-STOP");
    let (rc, _) = b.login("alice", "second-password-2");
    assert_ne!(rc, PAM_SUCCESS, "no outage the probe saw: refused");
    let probe = b.slicectl(&["cache", "refresh"], None);
    assert_eq!(
        probe.status.code(),
        Some(1),
        "the probe finds it unreachable"
    );
    let (rc, took) = b.login("alice", "second-password-2");
    server.signal("-CONT");
    assert_eq!(rc, PAM_SUCCESS, "cached login while the server hangs");
    assert_eq!(
        threads(),
        threads_before,
        "a thread outlived the timed-out login"
    );
    let limit = Duration::from_secs(TIMEOUT_SECS) + Duration::from_millis(900);
    assert!(
        took < limit,
        "a login waited {took:?} (timeout {TIMEOUT_SECS}s)"
    );
    eprintln!("login while the server hangs: {took:?}");

    // 2a'. A real cut: the network drops every packet to the server (the
    // connect gets no SYN-ACK). The probe that reaches the server ends the
    // outage; after the cut, logins are refused until the probe sees it.
    assert_eq!(b.ok(&["cache", "refresh"], None)["users"], 2);
    let cut = Cut::new(server.port());
    let (rc, _) = b.login("alice", "second-password-2");
    assert_ne!(rc, PAM_SUCCESS, "a cut the probe has not seen: refused");
    assert_eq!(
        b.slicectl(&["cache", "refresh"], None).status.code(),
        Some(1)
    );
    let (rc, took) = b.login("alice", "second-password-2");
    assert_eq!(rc, PAM_SUCCESS, "cached login through a cut the probe saw");
    assert!(took < limit, "{took:?}");
    drop(cut);

    // 2b. The server is down.
    server.harness("pg_stop \"$PG_TEST_DIR\"");
    let (rc, took) = b.login("alice", "second-password-2");
    assert_eq!(rc, PAM_SUCCESS, "cached login while the server is down");
    assert!(took < limit, "{took:?}");
    let carl = b.login("carl", "carls-password-5").0;
    assert_ne!(carl, PAM_SUCCESS, "never seen on B");
    for _ in 0..3 {
        let (rc, took) = b.login("alice", "not-her-password");
        assert_ne!(rc, PAM_SUCCESS);
        assert!(took < limit, "{took:?}");
    }
    assert_ne!(
        b.login("alice", "second-password-2").0,
        PAM_SUCCESS,
        "locked on B by three failures counted offline"
    );
    let out = a.slicectl(
        &["user", "add", "--password-stdin", "--", "carol"],
        Some("carols-password-4\n"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is unreachable"), "{stderr}");
    assert!(
        !Command::new("getent")
            .args(["passwd", "carol"])
            .status()
            .unwrap()
            .success(),
        "no system account was made for carol"
    );

    // Back: B's three failures reach the server, and lock alice everywhere.
    server.harness("pg_restart \"$PG_TEST_DIR\"");
    let merged = b.ok(&["cache", "refresh"], None);
    assert_eq!(merged["merged_failures"], 3, "{merged}");
    let alice = a.show("alice");
    assert_eq!(alice["failed_logins"], 3, "{alice}");
    assert_eq!(alice["locked"], true, "{alice}");
    assert!(
        a.slicectl(&["user", "show", "--", "carol"], None)
            .status
            .code()
            == Some(1)
    );
    assert_ne!(
        a.login("alice", "second-password-2").0,
        PAM_SUCCESS,
        "locked on A too"
    );
    a.ok(&["user", "unlock", "--", "alice"], None);
    assert_eq!(
        b.cached("bob", "json_extract(a.limits, '$.memory')"),
        "2G",
        "the full refresh cached bob"
    );

    // 3. 50 parallel logins on both nodes while both nodes' admins write.
    // Lockout off (20 wrong passwords are counted, none refused early); a
    // longer timeout: 50 TLS and SCRAM handshakes at once on a small CI
    // machine are not an outage.
    a.configure(&server, 0, 20);
    b.configure(&server, 0, 20);
    let users: Vec<String> = (0..10).map(|i| format!("u{i:02}")).collect();
    for user in &users {
        add_user(&a, user, &format!("{user}-password"), &[]);
    }
    add_user(&a, "wrong", "wrongs-password", &[]);
    let nodes = [&a, &b];
    let (results, wrong) = std::thread::scope(|scope| {
        let admin = scope.spawn(|| {
            for round in 1..=10 {
                for (i, user) in users.iter().enumerate() {
                    let node = nodes[(round + i) % 2];
                    let memory = format!("{}M", 100 * round + i);
                    node.ok(&["user", "mod", "--memory", &memory, "--", user], None);
                }
            }
        });
        let logins: Vec<_> = (0..50)
            .map(|i| {
                let (node, user) = (nodes[i % 2], &users[i % users.len()]);
                scope.spawn(move || node.login(user, &format!("{user}-password")).0)
            })
            .collect();
        let wrongs: Vec<_> = (0..20)
            .map(|i| scope.spawn(move || nodes[i % 2].login("wrong", "not-the-password").0))
            .collect();
        let results: Vec<i32> = logins.into_iter().map(|t| t.join().unwrap()).collect();
        let wrong: Vec<i32> = wrongs.into_iter().map(|t| t.join().unwrap()).collect();
        admin.join().unwrap();
        (results, wrong)
    });
    let failed = results.iter().filter(|rc| **rc != PAM_SUCCESS).count();
    assert_eq!(failed, 0, "parallel logins failed: {results:?}");
    assert!(wrong.iter().all(|rc| *rc != PAM_SUCCESS));
    assert_eq!(
        a.show("wrong")["failed_logins"],
        20,
        "every wrong password counted once"
    );
    for (i, user) in users.iter().enumerate() {
        let shown = b.show(user);
        assert_eq!(
            shown["memory"],
            format!("{}M", 1000 + i),
            "{user}: the last write"
        );
        assert!(
            shown["last_login"].is_string(),
            "{user}: the login was recorded"
        );
    }
    server.psql(&format!("DROP SCHEMA {SCHEMA} CASCADE"));
}

/// A caller's own limits and signals cannot send a login to the cache: a
/// setuid client (su) inherits its caller's `ulimit -n`, and its caller may
/// stop it during the connect. With the server up, a password changed on A
/// and an account disabled on A stay refused on B, whatever B's cache holds.
#[test]
#[ignore = "needs a PostgreSQL server: tests/system/cluster.sh runs it"]
fn a_caller_cannot_send_a_login_to_the_cache() {
    const LIMITS: &str = "cluster_limits";
    let Some(server) = Server::with_schema(env!("CARGO_BIN_EXE_slicectl"), LIMITS) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = Node::in_schema(dir.path(), "a", &server, LIMITS);
    let b = Node::in_schema(dir.path(), "b", &server, LIMITS);
    a.ok(&["init"], None);
    add_user(&a, "alice", "old-password-1", &[]);
    add_user(&a, "dave", "daves-password-2", &[]);
    // B's cache holds both as they were: alice's old password, dave active.
    b.ok(&["cache", "refresh"], None);
    a.ok(
        &["user", "passwd", "--password-stdin", "--", "alice"],
        Some("new-password-3\n"),
    );
    a.ok(&["user", "mod", "--disable", "--", "dave"], None);
    assert!(b.pamtester_login("true", "alice", "new-password-3").0);

    // Every descriptor limit from 8 to 16: whatever fails, it is refused.
    for n in 8..=16 {
        let setup = format!("ulimit -n {n}");
        let (ok, said) = b.pamtester_login(&setup, "alice", "old-password-1");
        assert!(
            !ok,
            "ulimit -n {n}: alice's old password let her in: {said}"
        );
        let (ok, said) = b.pamtester_login(&setup, "dave", "daves-password-2");
        assert!(!ok, "ulimit -n {n}: disabled dave got in: {said}");
    }
    // Stopped during the connect, continued after the timeout.
    for (user, password) in [("alice", "old-password-1"), ("dave", "daves-password-2")] {
        let child = b.pamtester("true", user, password);
        std::thread::sleep(Duration::from_millis(30));
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success());
        std::thread::sleep(Duration::from_secs(TIMEOUT_SECS + 1));
        assert!(Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success());
        let out = child.wait_with_output().unwrap();
        assert!(
            !out.status.success(),
            "{user} got in after SIGSTOP/SIGCONT: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And B's cache never stood in: no outage was recorded.
    let state = Command::new("sqlite3")
        .arg(&b.cache)
        .arg("SELECT count(*) FROM cache_meta WHERE key = 'outage_since'")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "0");
    assert!(b.pamtester_login("true", "alice", "new-password-3").0);
    server.psql(&format!("DROP SCHEMA {LIMITS} CASCADE"));
}
