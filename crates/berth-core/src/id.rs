//! Typed identifiers.

use std::fmt;
use std::str::FromStr;

/// Bytes as lowercase hex, the form of every digest and generated id.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Why an identifier was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("invalid container id {0:?}: must be 1 to 1024 characters of [A-Za-z0-9_+.-] and not \".\" or \"..\"")]
    InvalidContainerId(String),
}

/// A container id as runc accepts it: `^[\w+.-]+$`, not `.` or `..`.
/// The id becomes a directory name, so anything else could escape the state root.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

impl ContainerId {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ContainerId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.');
        if s.is_empty() || s.len() > 1024 || s == "." || s == ".." || !s.chars().all(ok_char) {
            return Err(IdError::InvalidContainerId(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ContainerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_runc_ids() {
        for id in ["a", "abc-DEF_1.2+3", "x".repeat(1024).as_str()] {
            assert!(id.parse::<ContainerId>().is_ok(), "{id}");
        }
    }

    #[test]
    fn refuses_path_like_ids() {
        for id in ["", ".", "..", "a/b", "../x", "a b", "é", &"x".repeat(1025)] {
            assert!(id.parse::<ContainerId>().is_err(), "{id}");
        }
    }
}
