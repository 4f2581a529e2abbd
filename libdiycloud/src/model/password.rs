//! What a password must be and what hashing it may cost: the policy and the
//! argon2 cost parameters, as plain values (the hashing itself is in
//! `crate::hashing`).

/// Longest password accepted, in bytes; anything longer is refused without
/// being hashed, so a megabyte "password" costs nothing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The most memory a hash may cost: 1 GiB. A config or a stored hash asking
/// for more is an error, never an allocation (inside sshd, a failed one aborts).
pub const MAX_MEMORY_KIB: u32 = 1 << 20;
/// The most passes a hash may cost.
pub const MAX_ITERATIONS: u32 = 64;
/// The most lanes a hash may use (computed one after another, no threads).
pub const MAX_PARALLELISM: u32 = 16;

/// argon2 cost parameters; the defaults are OWASP's (m=19 MiB, t=2, p=1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl std::fmt::Display for HashParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "m={},t={},p={}",
            self.memory_kib, self.iterations, self.parallelism
        )
    }
}

/// Parameters argon2 cannot use, or that cost more than we allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("argon2 {what} = {value} is over the limit of {max}")]
    OverLimit {
        what: &'static str,
        value: u32,
        max: u32,
    },
    #[error("argon2 {what} = {value} is under the minimum of {min}")]
    UnderMinimum {
        what: &'static str,
        value: u32,
        min: u32,
    },
}

impl HashParams {
    /// Within our bounds and argon2's own rules (at least one pass and one
    /// lane, at least 8 KiB per lane).
    pub fn check(&self) -> Result<(), ParamsError> {
        for (what, value, max) in [
            ("memory_kib", self.memory_kib, MAX_MEMORY_KIB),
            ("iterations", self.iterations, MAX_ITERATIONS),
            ("parallelism", self.parallelism, MAX_PARALLELISM),
        ] {
            if value > max {
                return Err(ParamsError::OverLimit { what, value, max });
            }
        }
        for (what, value, min) in [
            ("iterations", self.iterations, 1),
            ("parallelism", self.parallelism, 1),
            ("memory_kib", self.memory_kib, 8 * self.parallelism.max(1)),
        ] {
            if value < min {
                return Err(ParamsError::UnderMinimum { what, value, min });
            }
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_bounds() {
        assert_eq!(HashParams::default().check(), Ok(()));
        let p = |memory_kib, iterations, parallelism| HashParams {
            memory_kib,
            iterations,
            parallelism,
        };
        assert!(matches!(
            p(u32::MAX, 2, 1).check(),
            Err(ParamsError::OverLimit {
                what: "memory_kib",
                ..
            })
        ));
        assert!(p(19456, 0, 1).check().is_err());
        assert!(p(19456, 2, 0).check().is_err());
        assert!(p(15, 2, 2).check().is_err(), "under 8 KiB per lane");
        assert_eq!(p(16, 1, 2).check(), Ok(()));
        assert_eq!(
            p(MAX_MEMORY_KIB, MAX_ITERATIONS, MAX_PARALLELISM).check(),
            Ok(())
        );
    }
}
