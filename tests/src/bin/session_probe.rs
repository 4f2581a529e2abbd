//! Run inside the test VM, against real systemd:
//!
//! 1. Loads pam_diycloud through libpam in this process and checks that after
//!    `pam_open_session` returns, the process has the same threads and
//!    children as before (the module runs inside sshd: nothing may linger),
//!    and has not mapped NVML or CUDA.
//! 2. Benchmarks session open (`pam_open_session` through libpam) against
//!    `systemctl set-property --runtime` with the same properties.
//!
//! Usage: session_probe USER PAM_CONFDIR SERVICE ROUNDS UNIT PROPERTY...
//! Prints `probe:` lines; exits 1 when the thread/child check fails.
#![deny(unsafe_code)]
// A benchmark or load driver: reading the clock is its job.
#![allow(clippy::disallowed_methods)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use diycloud_tests::pam_client::{median_time, percentile, Pam, PAM_SUCCESS};

/// (threads, children) of this process.
fn threads_and_children() -> (usize, usize) {
    let tasks: Vec<_> = std::fs::read_dir("/proc/self/task")
        .expect("/proc")
        .flatten()
        .collect();
    let children: usize = tasks
        .iter()
        .map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .count()
        })
        .sum();
    (tasks.len(), children)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [user, confdir, service, rounds, unit, properties @ ..] = args.as_slice() else {
        eprintln!("usage: session_probe USER PAM_CONFDIR SERVICE ROUNDS UNIT PROPERTY...");
        std::process::exit(2);
    };
    let rounds: usize = rounds.parse().expect("ROUNDS");
    let pam = Pam::new(service, user, Path::new(confdir), "");

    let before = threads_and_children();
    let mut after = before;
    let rc = pam.session(|_, _| after = threads_and_children());
    println!(
        "probe: open_session rc={rc} threads before={} after={} children before={} after={}",
        before.0, after.0, before.1, after.1
    );
    // The same for a user the database does not have: the module drops its
    // half-made bus connection, and must leave nothing behind either.
    let stranger = Pam::new(service, "not-in-the-database", Path::new(confdir), "");
    let mut after_stranger = before;
    stranger.session(|_, _| after_stranger = threads_and_children());
    println!(
        "probe: open_session for a user not in the database: threads after={} children after={}",
        after_stranger.0, after_stranger.1
    );
    // NVML would map libnvidia-ml and libcuda and leave a CUDA thread: the
    // module must not load it (the thread count above would catch the
    // thread on a node with the driver; this catches the load anywhere the
    // library exists).
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    let nvml_mapped = maps.contains("libnvidia-ml") || maps.contains("libcuda");
    println!("probe: NVML or CUDA mapped after open_session: {nvml_mapped}");
    let clean = rc == PAM_SUCCESS && before == after && before == after_stranger && !nvml_mapped;

    // `open`: the pam_open_session call, as the benchmark asks; `with_start`:
    // pam_start (which loads the module) plus that call.
    let (mut open, mut with_start) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for _ in 0..rounds {
        let start = Instant::now();
        let rc = pam.session(|_, took| {
            open.push(took);
            with_start.push(start.elapsed());
        });
        assert_eq!(rc, PAM_SUCCESS, "session open failed during the benchmark");
    }
    let mut set_property = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        let status = Command::new("systemctl")
            .args(["set-property", "--runtime", unit])
            .args(properties)
            .status()
            .expect("systemctl");
        set_property.push(start.elapsed());
        assert!(status.success(), "systemctl set-property failed");
    }
    // Where the time goes: the same session open for a user the database
    // does not have (module, config, SQLite; no D-Bus call).
    let mut no_bus: Vec<Duration> = (0..rounds)
        .map(|_| {
            let mut took = Duration::ZERO;
            stranger.session(|_, t| took = t);
            took
        })
        .collect();
    println!(
        "probe: session open without a D-Bus call (user not in the database) median_ms={:.2}",
        ms(percentile(&mut no_bus, 0.5))
    );
    // And the D-Bus calls alone, through the library.
    let systemd = libdiycloud::adapters::systemd::Systemd::system();
    let time = |f: &dyn Fn()| ms(median_time(rounds, f));
    let version = libdiycloud::adapters::cgroup::Hierarchy::detect()
        .expect("the cgroup hierarchy")
        .version();
    let props = libdiycloud::model::slice::slice_properties(
        &libdiycloud::model::Allocation::default(),
        version,
    );
    println!(
        "probe: dbus medians_ms version={:.2} set_unit_properties={:.2} slice_usage={:.2}",
        time(&|| drop(systemd.version().unwrap())),
        time(&|| systemd.set_unit_properties(unit, &props).unwrap()),
        time(&|| drop(systemd.slice_usage(unit).unwrap())),
    );
    // The floor: systemd's own SetUnitProperties round trip on a fresh
    // connection (connect, call, close), interleaved with session opens so
    // both see the same load.
    let (mut floor_open, mut floor_bare) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let rc = pam.session(|_, took| floor_open.push(took));
        assert_eq!(rc, PAM_SUCCESS, "session open failed during the benchmark");
        let start = Instant::now();
        systemd.set_unit_properties(unit, &props).unwrap();
        floor_bare.push(start.elapsed());
    }
    let (f_open, f_bare) = (
        percentile(&mut floor_open, 0.5),
        percentile(&mut floor_bare, 0.5),
    );
    println!(
        "probe: floor rounds={rounds} session_open_median_ms={:.2} bare_set_unit_properties_median_ms={:.2} ratio={:.2} (target <= 1.30)",
        ms(f_open),
        ms(f_bare),
        f_open.as_secs_f64() / f_bare.as_secs_f64()
    );
    let (o50, o99) = (percentile(&mut open, 0.5), percentile(&mut open, 0.99));
    let (s50, s99) = (
        percentile(&mut set_property, 0.5),
        percentile(&mut set_property, 0.99),
    );
    let (w50, w99) = (
        percentile(&mut with_start, 0.5),
        percentile(&mut with_start, 0.99),
    );
    println!(
        "probe: bench rounds={rounds} session_open_median_ms={:.2} session_open_p99_ms={:.2} set_property_median_ms={:.2} set_property_p99_ms={:.2} speedup={:.1}",
        ms(o50),
        ms(o99),
        ms(s50),
        ms(s99),
        s50.as_secs_f64() / o50.as_secs_f64()
    );
    println!(
        "probe: with pam_start (module load) median_ms={:.2} p99_ms={:.2} speedup={:.1}",
        ms(w50),
        ms(w99),
        s50.as_secs_f64() / w50.as_secs_f64()
    );
    std::process::exit(if clean { 0 } else { 1 });
}
