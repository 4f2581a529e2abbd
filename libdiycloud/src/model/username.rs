//! Login names: POSIX portable user names, lower case, as `useradd` accepts them.

use std::fmt;

/// The rule every name must follow, quoted in errors so the admin knows the fix.
pub const USERNAME_RULE: &str =
    "a user name starts with a-z or _, continues with a-z, 0-9, _ or -, and is at most 32 characters";

/// A validated login name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("invalid user name {shown}: {USERNAME_RULE}")]
    Invalid { shown: String },
    #[error("user name {0:?} is reserved for the system")]
    Reserved(String),
}

/// Names that must never become diycloud users, whatever the system has.
const RESERVED: &[&str] = &["root", "nobody", "daemon", "bin", "sys", "sync", "sshd"];

impl Username {
    /// Parses a name, rejecting anything outside `[a-z_][a-z0-9_-]{0,31}`.
    pub fn parse(name: &str) -> Result<Self, UsernameError> {
        let bytes = name.as_bytes();
        let first_ok = matches!(bytes.first(), Some(b'a'..=b'z' | b'_'));
        let rest_ok = bytes
            .iter()
            .skip(1)
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
        if !first_ok || !rest_ok || bytes.len() > 32 {
            return Err(UsernameError::Invalid { shown: shown(name) });
        }
        Ok(Self(name.to_owned()))
    }

    /// Like [`Username::parse`], and also refuses the well-known system names,
    /// which a diycloud record must never shadow.
    pub fn parse_new(name: &str) -> Result<Self, UsernameError> {
        let parsed = Self::parse(name)?;
        if RESERVED.contains(&name) {
            return Err(UsernameError::Reserved(name.to_owned()));
        }
        Ok(parsed)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Quotes a rejected name for an error message, cut short so a hostile
/// 1 MiB "name" does not end up in a log line.
fn shown(name: &str) -> String {
    const MAX: usize = 40;
    if name.chars().count() <= MAX {
        format!("{name:?}")
    } else {
        let cut: String = name.chars().take(MAX).collect();
        format!("{cut:?}...")
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_portable_names() {
        for name in ["alice", "_svc", "a", "bob-2", "x_y-z9", &"a".repeat(32)] {
            assert!(Username::parse(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn rejects_everything_else_naming_the_rule() {
        for name in [
            "../x",
            "Root",
            &"a".repeat(40),
            "a;b",
            "",
            "1abc",
            "-x",
            "a b",
            "é",
            "a\0b",
        ] {
            let err = Username::parse(name).unwrap_err();
            assert!(
                err.to_string().contains("at most 32 characters"),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn new_users_cannot_take_system_names() {
        assert!(Username::parse("root").is_ok());
        assert_eq!(
            Username::parse_new("root"),
            Err(UsernameError::Reserved("root".into()))
        );
    }

    #[test]
    fn long_names_are_cut_in_messages() {
        let err = Username::parse(&"X".repeat(100_000))
            .unwrap_err()
            .to_string();
        assert!(err.len() < 300, "{}", err.len());
    }
}
