//! Run on a machine with an NVIDIA GPU: what discovery finds through NVML,
//! procfs and the device nodes, and whether loading NVML leaves a thread or
//! the library behind (it must not inside sshd).
//!
//! Usage: gpu_probe [ROUNDS]   Prints one JSON document; exits 1 when NVML
//! left a thread or its library mapped.
#![deny(unsafe_code)]
// A probe: reading the clock is its job.
#![allow(clippy::disallowed_methods)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::time::Instant;

use libdiycloud::adapters::nvidia;
use serde_json::json;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

fn nvml_mapped() -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .contains("libnvidia-ml")
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(10, |r| r.parse().expect("ROUNDS"));
    let before = (threads(), nvml_mapped());
    let start = Instant::now();
    let nvml = nvidia::discover_nvml();
    let first_ms = start.elapsed().as_secs_f64() * 1e3;
    let after = (threads(), nvml_mapped());
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            let _ = nvidia::discover_nvml();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let after_rounds = (threads(), nvml_mapped());
    // Threads left (their names) and NVIDIA libraries still mapped.
    let comms: Vec<String> = std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .map(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    let mapped: std::collections::BTreeSet<String> = std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5).map(str::to_owned))
        .filter(|p| p.contains("nvidia") || p.contains("cuda"))
        .collect();
    let root = Path::new("/");
    let document = json!({
        "discover": nvidia::discover(),
        "usage": nvidia::usage().map_err(|e| e.to_string()),
        "nvml": nvml.as_ref().map(|(driver, gpus)| json!({"driver": driver, "gpus": gpus})).map_err(|e| e.to_string()),
        "procfs": nvidia::discover_procfs(root).map_err(|e| e.to_string()),
        "device_nodes": nvidia::discover_device_nodes(root).map_err(|e| e.to_string()),
        "threads": {"before": before.0, "after_first": after.0, "after_rounds": after_rounds.0},
        "nvml_mapped": {"before": before.1, "after_first": after.1, "after_rounds": after_rounds.1},
        "nvml_ms": {"first": first_ms, "median": times.get(times.len() / 2)},
        "thread_names_after": comms,
        "nvidia_mapped_after": mapped,
    });
    println!("{document:#}");
    let clean = before == after && before == after_rounds;
    std::process::exit(if clean { 0 } else { 1 });
}
