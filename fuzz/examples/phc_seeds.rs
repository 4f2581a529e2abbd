//! Writes real PHC strings, made by `Hasher::hash` with small costs, into the
//! directory named on the command line: the seed corpus of the `phc` target
//! (fuzz/seeds/phc), so the fuzzer starts from valid hashes.
//!
//!     cargo build --manifest-path fuzz/Cargo.toml --example phc_seeds
//!     fuzz/target/debug/examples/phc_seeds fuzz/seeds/phc
#![deny(unsafe_code)]

use std::path::PathBuf;

use libdiycloud::hashing::{HashParams, Hasher};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: phc_seeds DIR")?);
    std::fs::create_dir_all(&dir)?;
    for (memory_kib, iterations, parallelism, password) in [
        (8, 1, 1, "pw"),
        (8, 1, 1, "not the password"),
        (16, 2, 1, "pw"),
        (16, 1, 2, "pw"),
        (64, 2, 2, "pw"),
        (64, 1, 1, ""),
        (256, 3, 4, "pw"),
    ] {
        let params = HashParams {
            memory_kib,
            iterations,
            parallelism,
        };
        let phc = Hasher::new(params)?.hash(password)?;
        let name = format!(
            "m{memory_kib}-t{iterations}-p{parallelism}-{}",
            password.len()
        );
        std::fs::write(dir.join(name), &phc)?;
        println!("{phc}");
    }
    Ok(())
}
