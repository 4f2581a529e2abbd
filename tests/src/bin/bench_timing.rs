//! Benchmark: do failed logins take the same time whatever the reason?
//! Unknown user, disabled and locked user against a wrong password, medians
//! through real libpam and the release module, with the default costs and
//! after a cost change. Target: every median within 5% of the wrong-password
//! one. Usage: bench_timing [--rounds N] [--check]  (build with --release)
#![deny(unsafe_code)]
// A benchmark or load driver: reading the clock is its job.
#![allow(clippy::disallowed_methods)]
// Benchmark code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

fn main() {
    let mut args = std::env::args().skip(1);
    let mut rounds = 100usize;
    let mut check = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => rounds = args.next().and_then(|n| n.parse().ok()).unwrap_or(rounds),
            "--check" => check = true,
            _ => {
                eprintln!("usage: bench_timing [--rounds N] [--check]");
                std::process::exit(2);
            }
        }
    }
    let module = std::env::current_exe()
        .expect("own path")
        .with_file_name("libpam_diycloud.so");
    let mut worst: f64 = 0.0;
    for timing in diycloud_tests::timing::measure(&module, rounds) {
        println!("bench timing {}", timing.report());
        for r in timing.ratios() {
            worst = worst.max((r - 1.0).abs());
        }
    }
    println!(
        "bench timing: largest difference from the wrong-password median {:.1}% (target <= 5%)",
        worst * 100.0
    );
    if check && worst > 0.05 {
        std::process::exit(1);
    }
}
