//! A string that must never reach a log line, an error message or a `Debug` dump.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The only way to read the value: every call site is a place where the secret is used on
    /// purpose (signing, comparing, printing the public development key).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares in constant time. Both sides are hashed first so that not even the length of the
    /// configured secret leaks through timing.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let expected = Sha256::digest(self.0.as_bytes());
        let given = Sha256::digest(candidate);
        expected.ct_eq(&given).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_value() {
        let secret = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert!(!format!("{:?}", Some(&secret)).contains("hunter2"));
    }

    #[test]
    fn matches_only_the_exact_value() {
        let secret = Secret::new("abc123");
        assert!(secret.matches(b"abc123"));
        assert!(!secret.matches(b"abc1234"));
        assert!(!secret.matches(b"abc12"));
        assert!(!secret.matches(b""));
        assert!(!secret.matches(b"ABC123"));
    }
}
