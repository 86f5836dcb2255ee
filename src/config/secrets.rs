//! One scheme for every secret setting: written inline (`key = "…"`), or named (`key = { env =
//! "NAME" }` reads an environment variable, `key = { file = "/run/secrets/x" }` reads a file, its
//! trailing newline dropped). The same works from the environment: `TANYI_RELAY__ADMIN__TOKEN__FILE
//! =/run/secrets/admin` is `admin.token = { file = … }`. Values are always text: a number is refused
//! rather than read (digits, leading zeros and all, are someone's secret).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::secret::{Secret, SecretOrigin};

/// A secret setting as written, before it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawSecret {
    Inline(String),
    Env(String),
    File(PathBuf),
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawSecretVisitor;
        impl<'de> Visitor<'de> for RawSecretVisitor {
            type Value = RawSecret;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a quoted string, { env = \"NAME\" } or { file = \"PATH\" }")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<RawSecret, E> {
                Ok(RawSecret::Inline(value.to_owned()))
            }

            fn visit_string<E: de::Error>(self, value: String) -> Result<RawSecret, E> {
                Ok(RawSecret::Inline(value))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawSecret, E> {
                Err(E::custom("a secret must be a quoted string, not a number"))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawSecret, E> {
                Err(E::custom("a secret must be a quoted string, not a number"))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawSecret, E> {
                Err(E::custom("a secret must be a quoted string, not a number"))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSecret, A::Error> {
                let mut found = None;
                while let Some(key) = map.next_key::<String>()? {
                    let value: String = map.next_value()?;
                    let source = match key.as_str() {
                        "env" => RawSecret::Env(value),
                        "file" => RawSecret::File(PathBuf::from(value)),
                        other => return Err(de::Error::custom(format!("`{other}`: expected `env` or `file`"))),
                    };
                    if found.replace(source).is_some() {
                        return Err(de::Error::custom("give one of `env` or `file`, not both"));
                    }
                }
                found.ok_or_else(|| de::Error::custom("expected { env = \"NAME\" } or { file = \"PATH\" }"))
            }
        }
        deserializer.deserialize_any(RawSecretVisitor)
    }
}

impl RawSecret {
    /// Reads the secret. The error names the source (a variable name or a path), never a value.
    pub fn read(&self, env: &HashMap<String, String>) -> Result<Secret, String> {
        match self {
            RawSecret::Inline(value) => Ok(Secret::with_origin(value.clone(), SecretOrigin::Inline)),
            RawSecret::Env(name) => match env.get(name) {
                Some(value) => Ok(Secret::with_origin(value.clone(), SecretOrigin::Env(name.clone()))),
                None => Err(format!("environment variable {name} is not set")),
            },
            RawSecret::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => {
                    let value = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
                    Ok(Secret::with_origin(value.to_owned(), SecretOrigin::File(path.clone())))
                }
                Err(e) => Err(format!("cannot read {}: {}", path.display(), e.kind())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_value: &str) -> Result<RawSecret, String> {
        #[derive(Deserialize)]
        struct Holder {
            #[allow(dead_code)]
            key: RawSecret,
        }
        let holder: Result<Holder, _> = toml_like(&format!("key = {toml_value}"));
        holder.map(|h| h.key)
    }

    fn toml_like<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
        config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn inline_env_and_file_forms_are_read() {
        assert_eq!(parse("\"abc\"").unwrap(), RawSecret::Inline("abc".into()));
        assert_eq!(parse("{ env = \"K\" }").unwrap(), RawSecret::Env("K".into()));
        assert_eq!(parse("{ file = \"/x\" }").unwrap(), RawSecret::File("/x".into()));
        assert!(parse("12345").unwrap_err().contains("quoted string"));
        assert!(parse("{ vault = \"x\" }").unwrap_err().contains("expected `env` or `file`"));
    }

    #[test]
    fn a_file_loses_its_trailing_newline_and_a_missing_source_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "line-one-secret\r\n").unwrap();
        let secret = RawSecret::File(path.clone()).read(&HashMap::new()).unwrap();
        assert_eq!(secret.expose(), "line-one-secret");
        assert_eq!(secret.origin(), &SecretOrigin::File(path));
        let env = HashMap::from([("K".to_owned(), "from-env".to_owned())]);
        assert_eq!(RawSecret::Env("K".into()).read(&env).unwrap().expose(), "from-env");
        assert_eq!(RawSecret::Env("NOPE".into()).read(&env).unwrap_err(), "environment variable NOPE is not set");
        let missing = RawSecret::File(dir.path().join("absent")).read(&env).unwrap_err();
        assert!(missing.contains("absent") && missing.contains("not found"), "{missing}");
    }
}
