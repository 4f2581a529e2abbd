//! Benchmark: PAM authentication through real libpam and the real module,
//! against a bare argon2 verify of the same hash, in the same run.
//!
//! 1. Latency: median (and p90) of `pam_start_confdir` + `pam_authenticate` +
//!    `pam_end` with `pam_diycloud.so` versus `Hasher::verify`, interleaved.
//!    Target: ratio <= 1.05.
//! 2. Throughput: logins per second with one thread per core, versus the
//!    physical limit cores / verify time. Target: >= 90%.
//!
//! Usage: bench_auth [--module PATH] [--rounds N] [--check]
//! (`--check` exits 1 when a target is missed.) Build with --release.
#![deny(unsafe_code)]
// A benchmark or load driver: reading the clock is its job.
#![allow(clippy::disallowed_methods)]
// Benchmark code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::ffi::CString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use diycloud_tests::pam_client::{median_time, parallel_rate, percentile, Pam, PAM_SUCCESS};
use libdiycloud::config::Config;
use libdiycloud::hashing::Hasher;
use libdiycloud::model::{Allocation, Timestamp, Username};
use libdiycloud::store::{NewUser, Store};

const PASSWORD: &str = "benchmark password";
/// Latency samples alternate in blocks of this many, so drift hits both sides alike.
const BLOCK: usize = 10;

fn main() {
    let mut args = std::env::args().skip(1);
    // Beside this binary: target/release/ when built with --release.
    let exe = std::env::current_exe().expect("own path");
    let mut module = exe.with_file_name("libpam_diycloud.so");
    let mut rounds = 200usize;
    let mut check = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--module" => module = PathBuf::from(args.next().unwrap_or_default()),
            "--rounds" => rounds = args.next().and_then(|n| n.parse().ok()).unwrap_or(rounds),
            "--check" => check = true,
            _ => {
                eprintln!("usage: bench_auth [--module PATH] [--rounds N] [--check]");
                std::process::exit(2);
            }
        }
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("diycloud.db");
    let config = Config::default();
    let hasher = Hasher::new(config.hash).expect("hasher");
    let hash = hasher.hash(PASSWORD).expect("hash");
    let (mut store, _) = Store::init(&db).expect("init");
    store
        .write(|tx| {
            tx.insert_user(
                &NewUser::new(
                    Username::parse("bench").expect("name"),
                    hash.clone(),
                    Allocation::default(),
                ),
                Timestamp(0),
            )
        })
        .expect("user");
    let confdir = dir.path().join("pam.d");
    std::fs::create_dir(&confdir).expect("confdir");
    let missing_config = dir.path().join("diycloud.toml");
    std::fs::write(&missing_config, "").expect("config");
    std::fs::write(
        confdir.join("bench"),
        format!(
            "auth required {} db={} config={}\n",
            module.display(),
            db.display(),
            missing_config.display()
        ),
    )
    .expect("service");
    let pam = Pam::new("bench", "bench", &confdir, PASSWORD);
    assert_eq!(pam.login(), PAM_SUCCESS, "the benchmark login must succeed");

    // 1. Latency, interleaved so that drift hits both sides alike.
    let (mut through_pam, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..rounds / BLOCK {
        for _ in 0..BLOCK {
            let start = Instant::now();
            assert_eq!(pam.login(), PAM_SUCCESS);
            through_pam.push(start.elapsed());
        }
        for _ in 0..BLOCK {
            let start = Instant::now();
            assert!(hasher.verify(PASSWORD.as_bytes(), &hash).unwrap());
            bare.push(start.elapsed());
        }
    }
    let (pam_median, pam_p90) = (
        percentile(&mut through_pam, 0.5),
        percentile(&mut through_pam, 0.9),
    );
    let (bare_median, bare_p90) = (percentile(&mut bare, 0.5), percentile(&mut bare, 0.9));
    let ratio = pam_median.as_secs_f64() / bare_median.as_secs_f64();

    // The module's own cost, seen alone: the same login with a hash so cheap
    // (m=8 KiB, t=1) that argon2 is negligible.
    let cheap = Hasher::new(libdiycloud::hashing::HashParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    })
    .and_then(|h| h.hash(PASSWORD))
    .expect("cheap hash");
    store
        .write(|tx| tx.set_password_hash("bench", &cheap, Timestamp(0)))
        .expect("cheap");
    // The config at the same cheap cost: otherwise the first login rehashes
    // to the default cost and every later one pays a full verify.
    std::fs::write(
        &missing_config,
        "[password]\nmemory_kib = 8\niterations = 1\nparallelism = 1\n",
    )
    .expect("cheap config");
    let overhead_median = median_time(rounds, || assert_eq!(pam.login(), PAM_SUCCESS));
    // And libpam's own share: the same service with pam_permit instead.
    std::fs::write(confdir.join("permit"), "auth required pam_permit.so\n").expect("service");
    let permit = Pam {
        service: CString::new("permit").expect("c"),
        ..pam.clone()
    };
    let libpam_median = median_time(rounds, || assert_eq!(permit.login(), PAM_SUCCESS));
    std::fs::write(&missing_config, "").expect("config");
    store
        .write(|tx| tx.set_password_hash("bench", &hash, Timestamp(0)))
        .expect("restore");

    // 2. Throughput on all cores.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = rounds.max(cores * 20) / cores;
    let logins_per_sec = parallel_rate(cores, per_thread, || {
        assert_eq!(pam.login(), PAM_SUCCESS);
    });
    // For context: how well bare verifies themselves scale on this machine.
    let verifies_per_sec = parallel_rate(cores, per_thread, || {
        assert!(hasher.verify(PASSWORD.as_bytes(), &hash).unwrap());
    });
    let limit = cores as f64 / bare_median.as_secs_f64();
    let share = logins_per_sec / limit;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "auth latency over {rounds} rounds (argon2id m={} KiB t={} p={})",
        config.hash.memory_kib, config.hash.iterations, config.hash.parallelism
    );
    println!(
        "  bare argon2 verify     median {:7.2} ms   p90 {:7.2} ms",
        ms(bare_median),
        ms(bare_p90)
    );
    println!(
        "  pam_authenticate       median {:7.2} ms   p90 {:7.2} ms",
        ms(pam_median),
        ms(pam_p90)
    );
    println!("  ratio (median)         {ratio:.3}   target <= 1.05");
    println!(
        "  module + libpam alone  median {:7.3} ms   (same login, negligible hash)",
        ms(overhead_median)
    );
    println!(
        "  libpam + pam_permit    median {:7.3} ms",
        ms(libpam_median)
    );
    println!("parallel logins on {cores} cores: {logins_per_sec:.1}/s; physical limit {limit:.1}/s; {:.1}% of it (target >= 90%)", share * 100.0);
    println!(
        "  (bare verifies on {cores} threads: {verifies_per_sec:.1}/s, {:.1}% of the limit)",
        verifies_per_sec / limit * 100.0
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "auth", "rounds": rounds, "cores": cores,
            "verify_median_ms": ms(bare_median), "pam_median_ms": ms(pam_median),
            "ratio": ratio, "overhead_median_ms": ms(overhead_median), "libpam_permit_median_ms": ms(libpam_median), "logins_per_sec": logins_per_sec, "parallel_verifies_per_sec": verifies_per_sec, "limit_per_sec": limit, "share_of_limit": share,
        })
    );
    let module_name = module.file_name().and_then(|n| n.to_str()).unwrap_or("?");
    if check && (ratio > 1.05 || share < 0.90) {
        eprintln!("bench_auth: target missed with {module_name}");
        std::process::exit(1);
    }
}
