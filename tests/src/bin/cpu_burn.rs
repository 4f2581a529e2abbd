//! A CPU burner for the system tests: THREADS busy threads for SECONDS.
//!
//! Usage: cpu_burn THREADS SECONDS
#![deny(unsafe_code)]
// A benchmark or load driver: reading the clock is its job.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let [threads, seconds] = args.as_slice() else {
        eprintln!("usage: cpu_burn THREADS SECONDS");
        std::process::exit(2);
    };
    let until = Instant::now() + Duration::from_secs(*seconds);
    let workers: Vec<_> = (0..*threads)
        .map(|_| {
            std::thread::spawn(move || {
                let mut x = 0u64;
                while Instant::now() < until {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}
