//! Benchmark: PAM authentication with the PostgreSQL store against the
//! SQLite store and a bare argon2 verify of the same hash, in the same run,
//! through real libpam and the real module, on a real server (loopback).
//!
//! Cases, interleaved in blocks so drift hits all alike (median, p90):
//! - `sqlite`: the file store (the single-node default);
//! - `pg kept, cache warm`: the connection the module keeps in the process
//!   (JupyterHub, the API, and a login's account and session hooks after
//!   its auth), the user already in the node's cache;
//! - `pg kept, cache cold`: the same, the user's copy deleted from the cache
//!   before each login (a user's first login on this node);
//! - `pg new connection`: a connection per login (TLS + SCRAM + a server
//!   backend), as an sshd login's first hook pays it.
//!
//! Each case runs twice: with the default argon2 cost (the latency a user
//! sees, against a bare verify of the hash), then with a negligible hash
//! (m=8 KiB, t=1), which leaves the module's own cost beyond the verify
//! without the verify's noise. Gate (`--check`): that overhead, for the
//! PostgreSQL cases on a kept connection, at most a fifth of the bare verify
//! at the default cost timed in the same run, so a busy machine slows both
//! sides alike. The 2 ms aim (the overhead on a quiet machine) is reported,
//! not gated: an absolute figure reads whatever the neighbours leave.
//!
//! Usage: bench_cluster --url URL --password-file FILE --ca FILE [--rounds N] [--check]
//! (the URL's database must hold an empty schema `bench` the role owns;
//! tests/system/cluster.sh makes one). Build with --release.
#![deny(unsafe_code)]
// A benchmark or load driver: reading the clock is its job.
#![allow(clippy::disallowed_methods)]
// Benchmark code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use diycloud_tests::pam_client::{percentile, Pam, PAM_SUCCESS};
use libdiycloud::config::Config;
use libdiycloud::hashing::{HashParams, Hasher};
use libdiycloud::model::{Allocation, Timestamp, Username};
use libdiycloud::store::{Database, NewUser, Store};

const PASSWORD: &str = "benchmark password";
const BLOCK: usize = 10;
/// The overhead aimed at on a quiet machine (reported).
const AIM_MS: f64 = 2.0;
/// The gate: the overhead as a share of a bare verify in the same run.
const GATE_SHARE: f64 = 0.2;

fn usage() -> ! {
    eprintln!(
        "usage: bench_cluster --url URL --password-file FILE --ca FILE [--rounds N] [--check]"
    );
    std::process::exit(2);
}

fn add_bench_user(db: &Database, hash: &str) {
    let (mut store, _) = Store::init_database(db).expect("init");
    store
        .write(|tx| {
            tx.insert_user(
                &NewUser::new(
                    Username::parse("bench").expect("name"),
                    hash.to_owned(),
                    Allocation::default(),
                ),
                Timestamp(0),
            )
        })
        .expect("user");
}

/// Forgets the bench user's copy in a node cache (a first login there).
fn forget_cached(cache: &Path) {
    let conn = open_cache(cache);
    conn.execute_batch("PRAGMA foreign_keys = ON; DELETE FROM users WHERE username = 'bench';")
        .expect("forget");
}

fn open_cache(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("cache");
    conn.busy_timeout(Duration::from_secs(5)).expect("timeout");
    conn
}

struct Case {
    name: &'static str,
    samples: Vec<Duration>,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let exe = std::env::current_exe().expect("own path");
    let module = exe.with_file_name("libpam_diycloud.so");
    let (mut url, mut password_file, mut ca) = (None, None, None);
    let mut rounds = 200usize;
    let mut check = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next(),
            "--password-file" => password_file = args.next(),
            "--ca" => ca = args.next(),
            "--rounds" => rounds = args.next().and_then(|n| n.parse().ok()).unwrap_or(rounds),
            "--check" => check = true,
            _ => usage(),
        }
    }
    let (Some(url), Some(password_file), Some(ca)) = (url, password_file, ca) else {
        usage()
    };
    let url = format!("{url}?sslmode=require&options=-csearch_path%3Dbench");

    let dir = tempfile::tempdir().expect("tempdir");
    let hasher = Hasher::new(Config::default().hash).expect("hasher");
    let hash = hasher.hash(PASSWORD).expect("hash");
    let cheap_params = HashParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
    let cheap_hash = Hasher::new(cheap_params)
        .and_then(|h| h.hash(PASSWORD))
        .expect("cheap hash");

    // The SQLite node, and two PostgreSQL nodes (their own caches): using
    // them in turn makes the module open a new connection at every login.
    let sqlite_db = dir.path().join("diycloud.db");
    let sqlite_config = dir.path().join("sqlite.toml");
    let confdir = dir.path().join("pam.d");
    std::fs::create_dir(&confdir).expect("confdir");
    let service = |name: &str, args: String| {
        std::fs::write(
            confdir.join(name),
            format!("auth required {} {args}\n", module.display()),
        )
        .expect("service");
    };
    service(
        "sqlite",
        format!(
            "db={} config={}",
            sqlite_db.display(),
            sqlite_config.display()
        ),
    );
    let mut nodes = Vec::new();
    for node in ["a", "b"] {
        let cache = dir.path().join(format!("cache-{node}.db"));
        let config = dir.path().join(format!("{node}.toml"));
        service(
            &format!("pg-{node}"),
            format!("config={}", config.display()),
        );
        nodes.push((config, cache));
    }
    // Every config at one cost: `password` is "" or a cheap [password].
    let write_configs = |password: &str| {
        std::fs::write(&sqlite_config, password).expect("config");
        for (config, cache) in &nodes {
            std::fs::write(
                config,
                format!(
                    "db = \"{url}\"\n{password}[postgres]\npassword_file = \"{password_file}\"\ncache = \"{}\"\nca_file = \"{ca}\"\n",
                    cache.display()
                ),
            )
            .expect("config");
        }
    };
    write_configs("");
    let sqlite_database = Database::Sqlite(sqlite_db.clone());
    let pg_database = Config::load(&nodes[0].0, true).expect("config a").db;
    for db in [&sqlite_database, &pg_database] {
        add_bench_user(db, &hash);
    }
    let set_hash = |hash: &str| {
        for db in [&sqlite_database, &pg_database] {
            Store::open_database(db)
                .expect("open")
                .write(|tx| tx.replace_hash("bench", hash))
                .expect("hash");
        }
    };

    let pam = |service: &str| Pam::new(service, "bench", &confdir, PASSWORD);
    let (sqlite, pg_a, pg_b) = (pam("sqlite"), pam("pg-a"), pam("pg-b"));
    for p in [&sqlite, &pg_a, &pg_b] {
        assert_eq!(
            p.login(),
            PAM_SUCCESS,
            "the benchmark login must succeed ({:?})",
            p.service
        );
    }
    let cache_a = nodes[0].1.clone();
    let run = |verify_hash: &str, verifier: &Hasher| -> Vec<Case> {
        let mut cases: Vec<Case> = [
            "bare argon2 verify",
            "sqlite",
            "pg new connection",
            "pg kept, cache warm",
            "pg kept, cache cold",
        ]
        .into_iter()
        .map(|name| Case {
            name,
            samples: Vec::new(),
        })
        .collect();
        let timed = |f: &mut dyn FnMut()| {
            let start = Instant::now();
            f();
            start.elapsed()
        };
        for _ in 0..rounds.div_ceil(BLOCK) {
            for _ in 0..BLOCK {
                let d = timed(&mut || {
                    assert!(verifier.verify(PASSWORD.as_bytes(), verify_hash).unwrap())
                });
                cases[0].samples.push(d);
            }
            for _ in 0..BLOCK {
                let d = timed(&mut || assert_eq!(sqlite.login(), PAM_SUCCESS));
                cases[1].samples.push(d);
            }
            // b then a, and so on, ending on a: the kept cases below start
            // on a's connection.
            for i in 0..BLOCK {
                let p = if i % 2 == 0 { &pg_b } else { &pg_a };
                let d = timed(&mut || assert_eq!(p.login(), PAM_SUCCESS));
                cases[2].samples.push(d);
            }
            for _ in 0..BLOCK {
                let d = timed(&mut || assert_eq!(pg_a.login(), PAM_SUCCESS));
                cases[3].samples.push(d);
            }
            for _ in 0..BLOCK {
                forget_cached(&cache_a);
                let d = timed(&mut || assert_eq!(pg_a.login(), PAM_SUCCESS));
                cases[4].samples.push(d);
            }
        }
        cases
    };
    let mut full = run(&hash, &hasher);
    write_configs("[password]\nmemory_kib = 8\niterations = 1\nparallelism = 1\n");
    set_hash(&cheap_hash);
    let cheap_hasher = Hasher::new(cheap_params).expect("cheap hasher");
    let mut cheap = run(&cheap_hash, &cheap_hasher);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut report = serde_json::Map::new();
    let mut missed = Vec::new();
    let verify = percentile(&mut full[0].samples, 0.5);
    let cheap_verify = percentile(&mut cheap[0].samples, 0.5);
    println!(
        "PAM authenticate, {rounds} logins per case, interleaved (PostgreSQL on loopback, TLS, SCRAM)"
    );
    println!(
        "  {:<22} {:>12} {:>10}   {:>26}",
        "", "median", "p90", "module's own cost (median)"
    );
    for (case, cheap_case) in full.iter_mut().zip(cheap.iter_mut()) {
        let median = percentile(&mut case.samples, 0.5);
        let p90 = percentile(&mut case.samples, 0.9);
        let own = ms(percentile(&mut cheap_case.samples, 0.5)) - ms(cheap_verify);
        println!(
            "  {:<22} {:9.2} ms {:7.2} ms   {:>23.2} ms",
            case.name,
            ms(median),
            ms(p90),
            own
        );
        report.insert(
            case.name.replace([' ', ','], "_"),
            serde_json::json!({"median_ms": ms(median), "p90_ms": ms(p90), "overhead_ms": own}),
        );
        if case.name.starts_with("pg kept") {
            let share = own / ms(verify);
            if share > GATE_SHARE {
                missed.push(format!(
                    "{}: {own:.2} ms, {:.1}% of a verify",
                    case.name,
                    share * 100.0
                ));
            }
            if own > AIM_MS {
                println!(
                    "  note: {}: {own:.2} ms, over the {AIM_MS} ms aim (reported, not gated)",
                    case.name
                );
            }
        }
    }
    println!(
        "  (the bare verify: {:.2} ms at the default cost; the module's own cost is each case with a negligible hash, less its verify)",
        ms(verify)
    );
    println!(
        "  gate: the module's own cost on a kept connection <= {:.0}% of the bare verify at the median ({:.2} ms in this run); aim: <= {AIM_MS} ms",
        GATE_SHARE * 100.0,
        GATE_SHARE * ms(verify)
    );
    println!("{}", serde_json::Value::Object(report));
    if check && !missed.is_empty() {
        eprintln!("bench_cluster: target missed: {missed:?}");
        std::process::exit(1);
    }
}
