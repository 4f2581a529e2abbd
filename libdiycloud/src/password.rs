//! Password hashing (argon2id, PHC strings) and the password policy.

use argon2::password_hash::phc::Output;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, Version};

use crate::argon2_memory::BlockMemory;

/// Longest password accepted, in bytes; anything longer is refused without
/// being hashed, so a megabyte "password" costs nothing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// argon2 cost parameters; the defaults are OWASP's (m=19 MiB, t=2, p=1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("invalid argon2 parameters: {0}")]
    Params(argon2::Error),
    #[error("password hashing failed: {0}")]
    Hash(argon2::password_hash::Error),
}

/// What a new password must satisfy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub min_length: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self { min_length: 8 }
    }
}

/// Why a new password was refused; shown to the user who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    #[error("the password is empty")]
    Empty,
    #[error("the password is shorter than {0} characters")]
    TooShort(usize),
    #[error("the password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("the password is not valid UTF-8 text")]
    NotUtf8,
    #[error("the password contains a control character")]
    ControlCharacter,
    #[error("the new password is the same as the old one")]
    Unchanged,
}

impl PasswordPolicy {
    /// Checks a new password; returns it as text when it is acceptable.
    pub fn check<'a>(&self, new: &'a [u8]) -> Result<&'a str, PolicyViolation> {
        if new.is_empty() {
            return Err(PolicyViolation::Empty);
        }
        if new.len() > MAX_PASSWORD_BYTES {
            return Err(PolicyViolation::TooLong);
        }
        let text = std::str::from_utf8(new).map_err(|_| PolicyViolation::NotUtf8)?;
        if text.chars().any(char::is_control) {
            return Err(PolicyViolation::ControlCharacter);
        }
        if text.chars().count() < self.min_length {
            return Err(PolicyViolation::TooShort(self.min_length));
        }
        Ok(text)
    }
}

/// Hashes and verifies passwords with one set of argon2id parameters.
#[derive(Debug, Clone)]
pub struct Hasher {
    argon2: Argon2<'static>,
}

/// The fixed input of the dummy verify: the salt only has to be valid.
const DUMMY_SALT: &[u8] = b"diycloud-dummy-salt";

impl Hasher {
    pub fn new(params: HashParams) -> Result<Self, PasswordError> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(PasswordError::Params)?;
        Ok(Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
        })
    }

    /// A PHC string (`$argon2id$v=19$m=...`) for a new password, with a random salt.
    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        self.argon2
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(PasswordError::Hash)
    }

    /// Whether `password` matches `phc`. A malformed hash, an over-long or
    /// empty password never match. Costs one argon2 run whatever the outcome
    /// (with the cost parameters stored in `phc`).
    pub fn verify(&self, password: &[u8], phc: &str) -> bool {
        if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
            self.dummy_verify();
            return false;
        }
        match PasswordHash::new(phc) {
            Ok(parsed) => verify_parsed(password, &parsed).unwrap_or(false),
            Err(_) => {
                self.dummy_verify();
                false
            }
        }
    }

    /// Spends the same time as a verify with these parameters, so an unknown
    /// user or a refused password cannot be told apart by timing.
    pub fn dummy_verify(&self) {
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let mut memory = BlockMemory::new(self.argon2.params().block_count());
        // The result is deliberately thrown away: only the time spent matters.
        let _ = self.argon2.hash_password_into_with_memory(
            b"not a password",
            DUMMY_SALT,
            &mut out,
            &mut memory,
        );
    }
}

/// argon2's own verify, but computing in [`BlockMemory`] (huge pages): the
/// same result, without thousands of page faults in a fresh process.
fn verify_parsed(password: &[u8], hash: &PasswordHash) -> Option<bool> {
    let algorithm = Algorithm::try_from(hash.algorithm.as_str()).ok()?;
    let version = match hash.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(hash).ok()?;
    let (salt, expected) = (hash.salt.as_ref()?, hash.hash.as_ref()?);
    let mut out = zeroize::Zeroizing::new(vec![0u8; expected.len()]);
    let mut memory = BlockMemory::new(params.block_count());
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt.as_ref(), &mut out, &mut memory)
        .ok()?;
    // Output's equality is constant-time.
    Some(Output::new(&out).ok()? == *expected)
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
        assert!(h.verify(b"correct horse", &phc));
        assert!(!h.verify(b"correct horsE", &phc));
        assert_ne!(phc, h.hash("correct horse").unwrap(), "salts differ");
    }

    #[test]
    fn verify_uses_the_parameters_stored_in_the_hash() {
        let phc = fast().hash("pw-123456").unwrap();
        assert!(Hasher::new(HashParams::default())
            .unwrap()
            .verify(b"pw-123456", &phc));
    }

    #[test]
    fn garbage_never_verifies() {
        let h = fast();
        let phc = h.hash("x").unwrap();
        assert!(!h.verify(b"", &phc));
        assert!(!h.verify(&vec![b'a'; 1 << 20], &phc));
        assert!(!h.verify(&[0xff, 0xfe, 0x00], &phc));
        assert!(!h.verify(b"x", "not a phc string"));
        assert!(!h.verify(b"x", "!"));
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
        use argon2::PasswordVerifier;
        for algorithm in [Algorithm::Argon2id, Algorithm::Argon2i, Algorithm::Argon2d] {
            let params = Params::new(256, 2, 2, Some(24)).unwrap();
            let reference = Argon2::new(algorithm, Version::V0x13, params);
            let phc = reference.hash_password(b"secret").unwrap().to_string();
            for candidate in [&b"secret"[..], b"Secret", b"secret "] {
                let ours = fast().verify(candidate, &phc);
                assert_eq!(
                    ours,
                    reference.verify_password(candidate, phc.as_str()).is_ok(),
                    "{phc} {candidate:?}"
                );
            }
        }
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
