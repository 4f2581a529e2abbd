//! Run inside the test VM, against real systemd and a real kernel: the cost
//! of one more apply step, measured. Opens sessions for USER through two PAM
//! services (the same module with two configs, e.g. without and with disk
//! quotas), interleaved so both see the same load, and prints the medians
//! and the median of each round's ratio.
//!
//! With FILESYSTEMs, also times the quota step's own work for USER on them
//! through the library (the read per filesystem a session open makes when
//! the limits already match).
//!
//! Usage: session_compare USER PAM_CONFDIR SERVICE_A SERVICE_B ROUNDS [FILESYSTEM...]
//! Prints `compare:` lines; exits 1 when a session open or a quota read fails.
#![deny(unsafe_code)]
// A benchmark: reading the clock is its job.
#![allow(clippy::disallowed_methods)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use diycloud_tests::pam_client::{median_time, percentile, Pam, PAM_SUCCESS};
use libdiycloud::adapters::quotactl::SystemQuotas;
use libdiycloud::ports::QuotaPort;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [user, confdir, a, b, rounds, filesystems @ ..] = args.as_slice() else {
        eprintln!(
            "usage: session_compare USER PAM_CONFDIR SERVICE_A SERVICE_B ROUNDS [FILESYSTEM...]"
        );
        std::process::exit(2);
    };
    let rounds: usize = rounds.parse().expect("ROUNDS");
    let confdir = Path::new(confdir);
    let (pam_a, pam_b) = (
        Pam::new(a, user, confdir, ""),
        Pam::new(b, user, confdir, ""),
    );
    let (mut times_a, mut times_b) = (Vec::new(), Vec::new());
    let mut failed = false;
    // One warm-up each (caches, the first write of limits), then the rounds;
    // A goes first in even rounds and B in odd ones, so neither always
    // follows the other's leftover work in systemd.
    for round in 0..=rounds {
        let mut pair = [(&pam_a, &mut times_a), (&pam_b, &mut times_b)];
        if round % 2 == 1 {
            pair.reverse();
        }
        for (pam, times) in pair {
            let rc = pam.session(|_, took| {
                if round > 0 {
                    times.push(took);
                }
            });
            failed |= rc != PAM_SUCCESS;
        }
    }
    // The ratio is the median of each round's own B/A: the two calls of a
    // round run in the same moment, so a stall of the host (under TCG,
    // beside another guest) that spans a few rounds cancels out instead of
    // moving one median.
    let mut paired: Vec<f64> = times_a
        .iter()
        .zip(&times_b)
        .map(|(ta, tb)| tb.as_secs_f64() / ta.as_secs_f64())
        .collect();
    paired.sort_by(f64::total_cmp);
    let ratio = paired.get(paired.len() / 2).copied().unwrap_or(f64::NAN);
    let (median_a, median_b) = (percentile(&mut times_a, 0.5), percentile(&mut times_b, 0.5));
    println!(
        "compare: rounds={rounds} {a}_median_ms={:.3} {b}_median_ms={:.3} ratio={ratio:.3} ratio_of_medians={:.3}",
        ms(median_a),
        ms(median_b),
        median_b.as_secs_f64() / median_a.as_secs_f64()
    );
    if !filesystems.is_empty() {
        let uid = nix::unistd::User::from_name(user)
            .expect("passwd")
            .expect("USER has a system account")
            .uid
            .as_raw();
        let mount_points: Vec<PathBuf> = filesystems.iter().map(PathBuf::from).collect();
        // What a session open's quota step does when the limits match: find
        // the filesystems, read the user's quota on each.
        let read_all = || {
            for fs in SystemQuotas.filesystems(&mount_points) {
                SystemQuotas
                    .get(&fs.expect("quota filesystem"), uid)
                    .expect("quota read");
            }
        };
        println!(
            "compare: quota step alone (read on {} filesystems) median_ms={:.3}",
            filesystems.len(),
            ms(median_time(rounds, read_all))
        );
    }
    if failed {
        eprintln!("session_compare: a session open failed");
        std::process::exit(1);
    }
}
