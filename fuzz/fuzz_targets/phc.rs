//! Password hashes as they come out of the database (PHC strings,
//! `$argon2id$v=19$m=..,t=..,p=..$salt$hash`): a hostile or damaged row
//! must be an error or a hash whose cost is within the bounds, never a
//! panic or an unbounded allocation; a hash that parses can be verified
//! (checked where its cost is small enough to compute here); and a hash
//! that does not parse is an error from `verify` too.
#![deny(unsafe_code)]
#![no_main]

use std::sync::OnceLock;

use libdiycloud::hashing::{
    HashParams, Hasher, StoredHash, MAX_ITERATIONS, MAX_MEMORY_KIB, MAX_PARALLELISM,
};
use libfuzzer_sys::fuzz_target;

/// The cheapest hasher: its own cost only matters for the dummy verify.
fn hasher() -> &'static Hasher {
    static HASHER: OnceLock<Hasher> = OnceLock::new();
    HASHER.get_or_init(|| {
        Hasher::new(HashParams {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        })
        .expect("m=8,t=1,p=1 are valid argon2 parameters")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    match StoredHash::parse(input) {
        Ok(stored) => {
            let p = stored.params();
            assert!(p.memory_kib <= MAX_MEMORY_KIB, "{input:?}: {p}");
            assert!(p.iterations <= MAX_ITERATIONS, "{input:?}: {p}");
            assert!(p.parallelism <= MAX_PARALLELISM, "{input:?}: {p}");
            if p.memory_kib <= 64 && p.iterations <= 2 && p.parallelism <= 2 {
                if let Err(e) = hasher().verify(b"pw", input) {
                    panic!("{input:?} parses ({p}) but verify fails: {e}");
                }
            }
        }
        Err(_) => {
            assert!(
                hasher().verify(b"pw", input).is_err(),
                "{input:?} does not parse, yet verify accepts it"
            );
        }
    }
});
