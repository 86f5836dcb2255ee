//! A string that must never reach a log line, an error message or a `Debug` dump, and where it came
//! from (so that `check-config` can say so without showing it).

use std::fmt;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct Secret {
    value: String,
    origin: SecretOrigin,
}

/// Where a configured secret was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretOrigin {
    /// Written into the configuration file or the built-in defaults.
    Inline,
    /// Read from this environment variable.
    Env(String),
    /// Read from this file (its trailing newline dropped).
    File(PathBuf),
}

impl fmt::Display for SecretOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretOrigin::Inline => f.write_str("inline"),
            SecretOrigin::Env(name) => write!(f, "env {name}"),
            SecretOrigin::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self { value: value.into(), origin: SecretOrigin::Inline }
    }

    pub fn with_origin(value: impl Into<String>, origin: SecretOrigin) -> Self {
        Self { value: value.into(), origin }
    }

    /// The only way to read the value: every call site is a place where the secret is used on
    /// purpose (signing, comparing, connecting, printing the public development key).
    pub fn expose(&self) -> &str {
        &self.value
    }

    pub fn origin(&self) -> &SecretOrigin {
        &self.origin
    }

    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// Compares in constant time. Both sides are hashed first so that not even the length of the
    /// configured secret leaks through timing.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let expected = Sha256::digest(self.value.as_bytes());
        let given = Sha256::digest(candidate);
        expected.ct_eq(&given).into()
    }
}

/// Equal values are equal secrets, wherever they were read from.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.value.as_bytes())
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

    #[test]
    fn the_origin_is_shown_never_the_value() {
        let secret = Secret::with_origin("s3cr3t", SecretOrigin::Env("ACME_KEY".into()));
        assert_eq!(secret.origin().to_string(), "env ACME_KEY");
        assert_eq!(secret, Secret::new("s3cr3t"));
    }
}
