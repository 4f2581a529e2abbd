//! Password hashing (argon2id, PHC strings) and the password policy.

use argon2::password_hash::phc::{Output, Salt};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};

mod memory;

pub use crate::model::password::{
    HashParams, ParamsError, PasswordPolicy, PolicyViolation, MAX_ITERATIONS, MAX_MEMORY_KIB,
    MAX_PARALLELISM, MAX_PASSWORD_BYTES,
};
use memory::BlockMemory;

/// argon2's own parameters for `params`, after our bounds.
fn to_argon2(params: HashParams, output_len: Option<usize>) -> Result<Params, PasswordError> {
    params.check()?;
    Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        output_len,
    )
    .map_err(PasswordError::Params)
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("invalid argon2 parameters: {0}")]
    Params(argon2::Error),
    #[error(transparent)]
    OutOfBounds(#[from] ParamsError),
    #[error("the stored password hash is not an argon2 PHC string: {0}")]
    Malformed(String),
    #[error("cannot allocate {0} KiB for argon2")]
    Memory(u32),
    #[error("password hashing failed: {0}")]
    Hash(argon2::password_hash::Error),
    #[error("password hashing failed: {0}")]
    Argon2(argon2::Error),
    #[error("password hash: {0}")]
    Phc(argon2::password_hash::phc::Error),
    #[error("no random bytes from the kernel: {0}")]
    Random(String),
}

/// A password hash read from the database, parsed and within our bounds.
#[derive(Debug)]
pub struct StoredHash {
    argon2: Argon2<'static>,
    params: HashParams,
    salt: Salt,
    expected: Output,
}

impl StoredHash {
    /// Parses a PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
    /// Anything else, or costs over the bounds, is an error: a hostile or
    /// mistyped hash must never decide how much memory a login allocates.
    pub fn parse(phc: &str) -> Result<Self, PasswordError> {
        let malformed = |why: &str| PasswordError::Malformed(why.to_owned());
        let hash = PasswordHash::new(phc).map_err(|e| PasswordError::Malformed(e.to_string()))?;
        let algorithm = Algorithm::try_from(hash.algorithm.as_str())
            .map_err(|_| malformed("not an argon2 algorithm"))?;
        let version = match hash.version {
            Some(v) => Version::try_from(v).map_err(|_| malformed("unknown argon2 version"))?,
            None => Version::default(),
        };
        let get = |name: &str| -> Result<u32, PasswordError> {
            hash.params
                .get_decimal(name)
                .ok_or_else(|| malformed("missing or invalid m, t or p"))
        };
        let params = HashParams {
            memory_kib: get("m")?,
            iterations: get("t")?,
            parallelism: get("p")?,
        };
        let expected = hash.hash.ok_or_else(|| malformed("no hash"))?;
        let argon2_params = to_argon2(params, Some(expected.len()))?;
        let salt = hash.salt.ok_or_else(|| malformed("no salt"))?;
        Ok(Self {
            argon2: Argon2::new(algorithm, version, argon2_params),
            params,
            salt,
            expected,
        })
    }

    /// The cost parameters this hash was made with.
    pub fn params(&self) -> HashParams {
        self.params
    }

    /// Whether `password` matches. Computes in [`BlockMemory`] (huge pages):
    /// the same result as argon2's own verify, without thousands of page
    /// faults in a fresh process.
    fn matches(&self, password: &[u8]) -> Result<bool, PasswordError> {
        let mut out = zeroize::Zeroizing::new(vec![0u8; self.expected.len()]);
        let mut memory = BlockMemory::new(self.argon2.params().block_count())
            .ok_or(PasswordError::Memory(self.params.memory_kib))?;
        self.argon2
            .hash_password_into_with_memory(password, &self.salt, &mut out, &mut memory)
            .map_err(PasswordError::Argon2)?;
        // Output's equality is constant-time.
        let out = Output::new(&out).map_err(PasswordError::Phc)?;
        Ok(out == self.expected)
    }
}

/// Hashes and verifies passwords with one set of argon2id parameters.
#[derive(Debug, Clone)]
pub struct Hasher {
    argon2: Argon2<'static>,
    params: HashParams,
}

/// The fixed input of the dummy verify: the salt only has to be valid.
const DUMMY_SALT: &[u8] = b"diycloud-dummy-salt";

impl Hasher {
    /// A hasher for new hashes with `params`, which must lie within the
    /// bounds ([`MAX_MEMORY_KIB`], [`MAX_ITERATIONS`], [`MAX_PARALLELISM`]).
    pub fn new(params: HashParams) -> Result<Self, PasswordError> {
        Ok(Self {
            argon2: Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                to_argon2(params, None)?,
            ),
            params,
        })
    }

    /// The parameters new hashes get.
    pub fn params(&self) -> HashParams {
        self.params
    }

    /// A PHC string (`$argon2id$v=19$m=...`) for a new password, with a random salt.
    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let salt = argon2::password_hash::try_generate_salt()
            .map_err(|e| PasswordError::Random(e.to_string()))?;
        let salt = Salt::new(&salt).map_err(PasswordError::Phc)?;
        let mut out = zeroize::Zeroizing::new([0u8; Params::DEFAULT_OUTPUT_LEN]);
        let mut memory = BlockMemory::new(self.argon2.params().block_count())
            .ok_or(PasswordError::Memory(self.params.memory_kib))?;
        self.argon2
            .hash_password_into_with_memory(password.as_bytes(), &salt, &mut *out, &mut memory)
            .map_err(PasswordError::Argon2)?;
        let hash = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: argon2::password_hash::phc::ParamsString::try_from(self.argon2.params())
                .map_err(PasswordError::Hash)?,
            salt: Some(salt),
            hash: Some(Output::new(&*out).map_err(PasswordError::Phc)?),
        };
        Ok(hash.to_string())
    }

    /// Whether `password` matches `phc`. An over-long or empty password
    /// never matches. Costs one argon2 run with the cost stored in `phc`
    /// whatever the outcome; a hash that cannot be used (malformed, over the
    /// bounds, no memory) is an error, after a dummy run of our own cost.
    pub fn verify(&self, password: &[u8], phc: &str) -> Result<bool, PasswordError> {
        let stored = match StoredHash::parse(phc) {
            Ok(stored) => stored,
            Err(e) => {
                self.dummy_verify();
                return Err(e);
            }
        };
        if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
            self.dummy_verify_with(stored.params());
            return Ok(false);
        }
        stored.matches(password)
    }

    /// Spends the time of a verify with our parameters.
    pub fn dummy_verify(&self) {
        self.dummy_verify_with(self.params);
    }

    /// Spends the time of a verify with `params` (ours where they are out of
    /// bounds), so an unknown user or a refused password cannot be told
    /// apart from a real check by timing.
    pub fn dummy_verify_with(&self, params: HashParams) {
        let argon2 = to_argon2(params, None)
            .map(|p| Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
            .unwrap_or_else(|_| self.argon2.clone());
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let Some(mut memory) = BlockMemory::new(argon2.params().block_count()) else {
            return;
        };
        // The result is deliberately thrown away: only the time spent matters.
        let _ = argon2.hash_password_into_with_memory(
            b"not a password",
            DUMMY_SALT,
            &mut out,
            &mut memory,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters: these tests check logic, not cost.
    fn fast() -> Hasher {
        Hasher::new(HashParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    #[test]
    fn hashes_are_argon2id_phc_and_verify() {
        let h = fast();
        let phc = h.hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(h.verify(b"correct horse", &phc).unwrap());
        assert!(!h.verify(b"correct horsE", &phc).unwrap());
        assert_ne!(phc, h.hash("correct horse").unwrap(), "salts differ");
    }

    #[test]
    fn default_params_are_argon2s() {
        let d = HashParams::default();
        assert_eq!(
            (d.memory_kib, d.iterations, d.parallelism),
            (
                Params::DEFAULT_M_COST,
                Params::DEFAULT_T_COST,
                Params::DEFAULT_P_COST
            )
        );
    }

    #[test]
    fn verify_uses_the_parameters_stored_in_the_hash() {
        let phc = fast().hash("pw-123456").unwrap();
        assert!(Hasher::new(HashParams::default())
            .unwrap()
            .verify(b"pw-123456", &phc)
            .unwrap());
    }

    #[test]
    fn garbage_never_verifies() {
        let h = fast();
        let phc = h.hash("x").unwrap();
        assert!(!h.verify(b"", &phc).unwrap());
        assert!(!h.verify(&vec![b'a'; 1 << 20], &phc).unwrap());
        assert!(!h.verify(&[0xff, 0xfe, 0x00], &phc).unwrap());
        assert!(h.verify(b"x", "not a phc string").is_err());
        assert!(h.verify(b"x", "!").is_err());
        assert!(h
            .verify(b"x", "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaA")
            .is_err());
    }

    #[test]
    fn policy() {
        let p = PasswordPolicy::default();
        assert_eq!(p.check(b"long enough"), Ok("long enough"));
        assert_eq!(p.check(b""), Err(PolicyViolation::Empty));
        assert_eq!(p.check(b"short"), Err(PolicyViolation::TooShort(8)));
        assert_eq!(p.check(&vec![b'a'; 1 << 20]), Err(PolicyViolation::TooLong));
        assert_eq!(p.check(b"\xff\xfeabcdefgh"), Err(PolicyViolation::NotUtf8));
        assert_eq!(
            p.check(b"abcdefgh\n"),
            Err(PolicyViolation::ControlCharacter)
        );
        assert_eq!(p.check("pässwörd".as_bytes()), Ok("pässwörd"));
    }

    #[test]
    fn agrees_with_the_reference_verify() {
        use argon2::{PasswordHasher, PasswordVerifier};
        for algorithm in [Algorithm::Argon2id, Algorithm::Argon2i, Algorithm::Argon2d] {
            let params = Params::new(256, 2, 2, Some(24)).unwrap();
            let reference = Argon2::new(algorithm, Version::V0x13, params);
            let phc = reference.hash_password(b"secret").unwrap().to_string();
            for candidate in [&b"secret"[..], b"Secret", b"secret "] {
                let ours = fast().verify(candidate, &phc).unwrap();
                assert_eq!(
                    ours,
                    reference.verify_password(candidate, phc.as_str()).is_ok(),
                    "{phc} {candidate:?}"
                );
            }
        }
    }

    /// The hash of `phc` with its `m=` replaced: what a hostile row holds.
    fn with_memory(phc: &str, m: &str) -> String {
        phc.replacen("m=64,", &format!("m={m},"), 1)
    }

    #[test]
    fn huge_costs_in_a_stored_hash_are_errors_not_aborts() {
        let h = fast();
        let phc = h.hash("pw").unwrap();
        for m in ["4294967295", "1048577", "99999999999"] {
            let hostile = with_memory(&phc, m);
            assert!(h.verify(b"pw", &hostile).is_err(), "{hostile}");
        }
        let hostile = phc.replacen("t=1,", "t=4294967295,", 1);
        assert!(matches!(
            StoredHash::parse(&hostile),
            Err(PasswordError::OutOfBounds(ParamsError::OverLimit {
                what: "iterations",
                ..
            }))
        ));
        let hostile = phc.replacen("p=1$", "p=255$", 1);
        assert!(h.verify(b"pw", &hostile).is_err());
        // At the bound it is a (slow) valid hash: parse only.
        let edge = with_memory(&phc, &MAX_MEMORY_KIB.to_string());
        assert_eq!(
            StoredHash::parse(&edge).unwrap().params().memory_kib,
            MAX_MEMORY_KIB
        );
    }

    #[test]
    fn huge_configured_costs_are_refused() {
        for params in [
            HashParams {
                memory_kib: u32::MAX,
                ..HashParams::default()
            },
            HashParams {
                iterations: 1000,
                ..HashParams::default()
            },
            HashParams {
                parallelism: 64,
                ..HashParams::default()
            },
        ] {
            let e = Hasher::new(params).unwrap_err().to_string();
            assert!(e.contains("over the limit"), "{e}");
        }
    }

    #[test]
    fn dummy_verify_with_bad_params_falls_back_and_returns() {
        fast().dummy_verify_with(HashParams {
            memory_kib: u32::MAX,
            iterations: u32::MAX,
            parallelism: u32::MAX,
        });
    }

    #[test]
    fn bad_params_are_an_error() {
        assert!(Hasher::new(HashParams {
            memory_kib: 1,
            iterations: 0,
            parallelism: 0
        })
        .is_err());
    }
}
