//! Settings: the checked-in defaults, then an optional file, then `TANYI_RELAY__SECTION__KEY`
//! environment variables. Everything is validated at load so that a bad value stops start-up with
//! a message naming its key, instead of surfacing later as a failed callback.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::FixedOffset;
use serde::Deserialize;

use crate::platform::crypto::{CallbackCrypto, KeyError};
use crate::secret::Secret;

const DEFAULTS: &str = include_str!("../config/default.toml");

/// The key of the development account in `config/default.toml`. It is public, so a production
/// deployment must not accept it.
pub const DEVELOPMENT_CALLBACK_KEY: &str = "dev-only-insecure-callback-key";

const ENV_PREFIX: &str = "TANYI_RELAY";
pub const ENVIRONMENT_VAR: &str = "TANYI_RELAY_ENV";
pub const CONFIG_FILE_VAR: &str = "TANYI_RELAY_CONFIG";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    #[serde(default)]
    pub accounts: Vec<AccountSettings>,
    pub delivery: DeliverySettings,
    #[serde(default)]
    pub targets: Vec<TargetSettings>,
    pub admin: AdminSettings,
    pub telemetry: TelemetrySettings,
    pub metrics: MetricsSettings,
    pub retention: RetentionSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    pub raw_body_days: u32,
    pub transcript_days: u32,
    pub delivery_days: u32,
    pub interval_secs: u64,
}

impl RetentionSettings {
    /// The cutoffs these settings give at `now` (a day count of 0 keeps everything).
    pub fn cutoffs(&self, now: chrono::DateTime<chrono::Utc>) -> crate::store::Cutoffs {
        let before = |days: u32| (days > 0).then(|| now - chrono::Duration::days(i64::from(days)));
        crate::store::Cutoffs {
            raw_bodies_before: before(self.raw_body_days),
            transcripts_before: before(self.transcript_days),
            deliveries_before: before(self.delivery_days),
        }
    }

    pub fn enabled(&self) -> bool {
        self.raw_body_days > 0 || self.transcript_days > 0 || self.delivery_days > 0
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    pub enabled: bool,
    pub require_admin_token: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Empty: the operator API is disabled.
    pub token: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    pub enabled: bool,
    pub lease_secs: u64,
    pub poll_interval_ms: u64,
    pub retry_after_cap_secs: u64,
}

/// One downstream webhook receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSettings {
    pub name: String,
    pub url: String,
    /// `whsec_<base64>`; every one signs each request, so a receiver can rotate.
    pub secrets: Vec<Secret>,
    /// Event types to send; empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Only these accounts; empty: all.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Only calls with these intent levels (verbatim or grade); empty: all. Non-call events pass.
    #[serde(default)]
    pub intent_levels: Vec<String>,
    /// Only calls with these result statuses; empty: all. Non-call events pass.
    #[serde(default)]
    pub result_statuses: Vec<String>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default = "default_target_timeout_ms")]
    pub timeout_ms: u64,
    /// Seconds to wait before each retry; the last one repeats. Default: close to Svix's.
    #[serde(default)]
    pub retry_schedule_secs: Option<Vec<f64>>,
    /// Attempts in all, the first included. Default: one more than the schedule's length (so a
    /// schedule of one step means two attempts; set this to repeat the last step).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// No retry is scheduled later than this after the event.
    #[serde(default = "default_retry_window_secs")]
    pub retry_window_secs: f64,
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    #[serde(default)]
    pub max_requests_per_second: Option<f64>,
    /// One delivery at a time, in order; a failing head blocks the rest.
    #[serde(default)]
    pub ordered: bool,
}

fn default_target_timeout_ms() -> u64 {
    15_000
}

fn default_retry_window_secs() -> f64 {
    // About a day, long enough for the whole default schedule (27.6 hours).
    28.0 * 3600.0
}

fn default_max_in_flight() -> u32 {
    8
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: String,
    #[serde(default)]
    pub public_url: String,
    pub body_limit_bytes: usize,
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub max_concurrent_requests: usize,
    pub drain_secs: u64,
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: Secret,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
    pub migrate_on_start: bool,
}

impl DatabaseSettings {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    pub name: String,
    /// Plain mode: the `key` query parameter.
    #[serde(default)]
    pub callback_key: Option<Secret>,
    #[serde(default = "default_utc_offset")]
    pub utc_offset: String,
    /// Encrypted mode: the platform's token and 43-character EncodingAESKey.
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub encoding_aes_key: Option<Secret>,
    #[serde(default)]
    pub receive_id: String,
    /// In encrypted mode, also accept plain `?key=` posts (while migrating between modes).
    #[serde(default)]
    pub allow_plain: bool,
    /// Credentials for the platform's REST API, for reconciliation and the `api` command.
    #[serde(default)]
    pub api: Option<ApiSettings>,
    /// Backfill a job's lost calls when its completion arrives. Default: on when `api` is set.
    #[serde(default)]
    pub reconcile_on_job_completed: Option<bool>,
    /// Fetch `callDetail` for each new call and store what the push lacks.
    #[serde(default)]
    pub enrich_calls: bool,
    /// Also reconcile the account's running jobs this often (seconds); off when absent.
    #[serde(default)]
    pub reconcile_interval_secs: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    pub base_url: String,
    pub app_key: String,
    pub app_secret: Secret,
    pub tenant_sign: String,
    #[serde(default = "default_api_version")]
    pub version: String,
    #[serde(default = "default_api_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub max_requests_per_second: Option<f64>,
}

fn default_api_version() -> String {
    "v1".to_owned()
}

fn default_api_timeout_ms() -> u64 {
    10_000
}

fn default_utc_offset() -> String {
    "+08:00".to_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

impl Settings {
    /// Loads from the process environment (`TANYI_RELAY_CONFIG` names the optional file when
    /// `file` is `None`).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_sources(file, std::env::vars().collect())
    }

    /// Loads with an explicit environment, so tests never have to mutate the process's.
    pub fn from_sources(file: Option<&Path>, env: HashMap<String, String>) -> Result<Self, ConfigError> {
        let file: Option<PathBuf> = file
            .map(Path::to_path_buf)
            .or_else(|| env.get(CONFIG_FILE_VAR).filter(|v| !v.is_empty()).map(PathBuf::from));
        let mut builder =
            config::Config::builder().add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = &file {
            builder = builder.add_source(config::File::from(path.as_path()).required(true));
        }
        let production = env.get(ENVIRONMENT_VAR).is_some_and(|v| v == "production");
        let overrides = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(env));
        let settings: Settings = builder.add_source(overrides).build()?.try_deserialize()?;
        settings.validate(production)?;
        Ok(settings)
    }

    fn validate(&self, production: bool) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.server.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!("server.listen: `{}` is not an address like 0.0.0.0:8080", self.server.listen));
        }
        if self.server.header_timeout_ms == 0
            || self.server.body_timeout_ms == 0
            || self.server.max_concurrent_requests == 0
        {
            problems.push(
                "server: header_timeout_ms, body_timeout_ms and max_concurrent_requests must be greater than 0"
                    .to_owned(),
            );
        }
        if self.server.body_limit_bytes == 0 {
            problems.push("server.body_limit_bytes: must be greater than 0".to_owned());
        }
        let url = self.database.url.expose();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            problems.push("database.url: must start with sqlite:, postgres:// or postgresql://".to_owned());
        }
        if self.database.max_connections == 0 {
            problems.push("database.max_connections: must be greater than 0".to_owned());
        }
        if self.database.acquire_timeout_ms == 0 {
            problems.push("database.acquire_timeout_ms: must be greater than 0".to_owned());
        }
        let mut seen = HashMap::new();
        for (index, account) in self.accounts.iter().enumerate() {
            let key = format!("accounts[{index}]");
            if !is_url_safe_name(&account.name) {
                problems.push(format!(
                    "{key}.name: `{}` must be 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'",
                    account.name
                ));
            }
            if let Some(first) = seen.insert(account.name.as_str(), index) {
                problems.push(format!("{key}.name: `{}` is already used by accounts[{first}]", account.name));
            }
            problems.extend(account.mode_problems().into_iter().map(|p| format!("{key}.{p}")));
            if let Some(callback_key) = &account.callback_key {
                if callback_key.expose().chars().count() < 16 {
                    problems.push(format!("{key}.callback_key: must be at least 16 characters"));
                }
            }
            if production && account.uses_development_key() {
                problems.push(format!(
                    "{key}.callback_key: the public development key cannot be used when {ENVIRONMENT_VAR}=production"
                ));
            }
            if let Some(api) = &account.api {
                if !(api.base_url.starts_with("http://") || api.base_url.starts_with("https://")) {
                    problems.push(format!("{key}.api.base_url: `{}` is not an http(s) URL", api.base_url));
                }
                if api.app_key.is_empty() || api.app_secret.is_empty() {
                    problems.push(format!("{key}.api: app_key and app_secret are required"));
                }
                if api.timeout_ms == 0 || api.max_requests_per_second.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                    problems.push(format!("{key}.api: timeout_ms and max_requests_per_second must be positive"));
                }
            } else if account.reconcile_on_job_completed == Some(true)
                || account.enrich_calls
                || account.reconcile_interval_secs.is_some()
            {
                problems.push(format!(
                    "{key}: reconcile_on_job_completed, enrich_calls and reconcile_interval_secs need [accounts.api]"
                ));
            }
            if account.reconcile_interval_secs.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
                problems.push(format!("{key}.reconcile_interval_secs: must be a positive number of seconds"));
            }
            if parse_utc_offset(&account.utc_offset).is_none() {
                problems.push(format!("{key}.utc_offset: `{}` is not an offset like +08:00", account.utc_offset));
            }
        }
        let mut target_names = HashMap::new();
        for (index, target) in self.targets.iter().enumerate() {
            let key = format!("targets[{index}]");
            if let Some(first) = target_names.insert(target.name.as_str(), index) {
                problems.push(format!("{key}.name: `{}` is already used by targets[{first}]", target.name));
            }
            problems.extend(crate::fanout::target::problems(target).into_iter().map(|p| format!("{key}.{p}")));
        }
        if !self.admin.token.is_empty() && self.admin.token.expose().chars().count() < 16 {
            problems.push("admin.token: must be at least 16 characters (or empty to disable the admin API)".to_owned());
        }
        if self.retention.interval_secs == 0 {
            problems.push("retention.interval_secs: must be greater than 0".to_owned());
        }
        if self.metrics.require_admin_token && self.admin.token.is_empty() {
            problems.push("metrics.require_admin_token: needs admin.token".to_owned());
        }
        if self.delivery.poll_interval_ms == 0 || self.delivery.lease_secs == 0 {
            problems.push("delivery: lease_secs and poll_interval_ms must be greater than 0".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        // Checked by `validate`; the fallback only guards against a Settings built by hand.
        self.server.listen.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }
}

impl AccountSettings {
    pub fn offset(&self) -> FixedOffset {
        parse_utc_offset(&self.utc_offset).unwrap_or_else(china_standard_time)
    }

    pub fn uses_development_key(&self) -> bool {
        self.callback_key.as_ref().is_some_and(|k| k.expose() == DEVELOPMENT_CALLBACK_KEY)
    }

    /// The encrypted-mode settings, when the account has them.
    pub fn crypto(&self) -> Option<Result<CallbackCrypto, KeyError>> {
        match (&self.token, &self.encoding_aes_key) {
            (Some(token), Some(key)) => Some(CallbackCrypto::new(token.expose(), key.expose(), &self.receive_id)),
            _ => None,
        }
    }

    pub fn reconciles(&self) -> bool {
        self.api.is_some() && self.reconcile_on_job_completed.unwrap_or(true)
    }

    /// Whether plain `?key=` callbacks are accepted.
    pub fn accepts_plain(&self) -> bool {
        self.callback_key.is_some() && (self.token.is_none() || self.allow_plain)
    }

    /// Which mode the account is in must be unambiguous: plain needs a key, encrypted needs a
    /// token and a valid key, and a plain key on an encrypted account needs `allow_plain`.
    fn mode_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match (&self.token, &self.encoding_aes_key) {
            (None, None) => {
                if self.callback_key.is_none() {
                    problems
                        .push("callback_key: required (or set token and encoding_aes_key for encrypted mode)".into());
                }
                if self.allow_plain {
                    problems.push("allow_plain: only means something in encrypted mode".into());
                }
            }
            (Some(_), None) => problems.push("encoding_aes_key: required when token is set".into()),
            (None, Some(_)) => problems.push("token: required when encoding_aes_key is set".into()),
            (Some(_), Some(_)) => {
                if let Some(Err(e)) = self.crypto() {
                    let field = if e == KeyError::EmptyToken { "token" } else { "encoding_aes_key" };
                    problems.push(format!("{field}: {e}"));
                }
                if self.allow_plain && self.callback_key.is_none() {
                    problems.push("callback_key: required when allow_plain is true".into());
                }
                if !self.allow_plain && self.callback_key.is_some() {
                    problems.push(
                        "callback_key: set, but an encrypted account refuses plain callbacks unless allow_plain = true"
                            .into(),
                    );
                }
            }
        }
        problems
    }
}

pub(crate) fn is_url_safe_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn parse_utc_offset(text: &str) -> Option<FixedOffset> {
    if text == "Z" {
        return FixedOffset::east_opt(0);
    }
    text.parse().ok()
}

fn china_standard_time() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn file(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().expect("temp file");
        std::io::Write::write_all(&mut f, content.as_bytes()).expect("write temp file");
        f
    }

    #[test]
    fn defaults_run_on_sqlite_with_the_development_account() {
        let settings = Settings::from_sources(None, env(&[])).expect("defaults are valid");
        assert_eq!(settings.database.url.expose(), "sqlite://data/tanyi-relay.db");
        assert_eq!(settings.server.body_limit_bytes, 1024 * 1024);
        assert_eq!(settings.accounts.len(), 1);
        assert!(settings.accounts[0].uses_development_key());
        assert_eq!(settings.accounts[0].offset(), FixedOffset::east_opt(8 * 3600).unwrap());
    }

    #[test]
    fn environment_overrides_the_file_which_overrides_the_defaults() {
        let f = file("[server]\nlisten = \"0.0.0.0:9000\"\nbody_limit_bytes = 2048\n");
        let settings =
            Settings::from_sources(Some(f.path()), env(&[("TANYI_RELAY__SERVER__BODY_LIMIT_BYTES", "4096")]))
                .expect("valid");
        assert_eq!(settings.server.listen, "0.0.0.0:9000");
        assert_eq!(settings.server.body_limit_bytes, 4096);
    }

    #[test]
    fn the_config_file_can_come_from_the_environment() {
        let f = file("[database]\nurl = \"postgres://u@db/relay\"\n");
        let path = f.path().to_string_lossy().to_string();
        let settings = Settings::from_sources(None, env(&[(CONFIG_FILE_VAR, &path)])).expect("valid");
        assert_eq!(settings.database.url.expose(), "postgres://u@db/relay");
    }

    #[test]
    fn invalid_values_are_reported_with_their_keys() {
        let f = file(
            "[[accounts]]\nname = \"bad name\"\ncallback_key = \"short\"\nutc_offset = \"8h\"\n\
             [[accounts]]\nname = \"bad name\"\ncallback_key = \"long-enough-key-0001\"\n",
        );
        let err = Settings::from_sources(Some(f.path()), env(&[("TANYI_RELAY__SERVER__LISTEN", "nowhere")]))
            .expect_err("invalid");
        let text = err.to_string();
        for expected in [
            "server.listen",
            "accounts[0].name",
            "accounts[0].callback_key",
            "accounts[0].utc_offset",
            "accounts[1].name: `bad name` is already used by accounts[0]",
        ] {
            assert!(text.contains(expected), "{expected} missing from: {text}");
        }
        assert!(!text.contains("short"), "a secret leaked into: {text}");
    }

    #[test]
    fn a_wrongly_typed_value_names_its_key() {
        let err = Settings::from_sources(None, env(&[("TANYI_RELAY__SERVER__BODY_LIMIT_BYTES", "lots")]))
            .expect_err("invalid");
        assert!(err.to_string().contains("body_limit_bytes"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let f = file("[server]\nlisten_adress = \"0.0.0.0:1\"\n");
        let err = Settings::from_sources(Some(f.path()), env(&[])).expect_err("invalid");
        assert!(err.to_string().contains("listen_adress"), "{err}");
    }

    #[test]
    fn encrypted_accounts_are_validated_without_printing_their_secrets() {
        let f = file(
            "[[accounts]]\nname = \"a\"\ntoken = \"tok-secret-1\"\nencoding_aes_key = \"INnZzJ/DPbUqqtU2ycEhzL8ewpsCRb9XqHBWHdDCkn\"\n\
             [[accounts]]\nname = \"b\"\ntoken = \"tok-secret-2\"\n\
             [[accounts]]\nname = \"c\"\ntoken = \"tok-secret-3\"\nencoding_aes_key = \"INnZzJ/DPbUqqtU2ycEhzL8ewpsCRb9XqHBWHdDC!nw\"\n\
             [[accounts]]\nname = \"d\"\ntoken = \"tok-secret-4\"\nencoding_aes_key = \"INnZzJ/DPbUqqtU2ycEhzL8ewpsCRb9XqHBWHdDCknw\"\ncallback_key = \"plain-key-0000000001\"\n\
             [[accounts]]\nname = \"e\"\n",
        );
        let err = Settings::from_sources(Some(f.path()), env(&[])).expect_err("invalid");
        let text = err.to_string();
        for expected in [
            "accounts[0].encoding_aes_key: must be exactly 43 characters (it has 42)",
            "accounts[1].encoding_aes_key: required when token is set",
            "accounts[2].encoding_aes_key: is not base64",
            "accounts[3].callback_key: set, but an encrypted account refuses plain callbacks",
            "accounts[4].callback_key: required",
        ] {
            assert!(text.contains(expected), "{expected} missing from: {text}");
        }
        assert!(!text.contains("tok-secret") && !text.contains("INnZzJ"), "a secret leaked into: {text}");
    }

    #[test]
    fn an_encrypted_account_may_also_accept_plain_callbacks() {
        let f = file(
            "[[accounts]]\nname = \"a\"\ntoken = \"tok\"\nencoding_aes_key = \"INnZzJ/DPbUqqtU2ycEhzL8ewpsCRb9XqHBWHdDCknw\"\n\
             callback_key = \"plain-key-0000000001\"\nallow_plain = true\n",
        );
        let settings = Settings::from_sources(Some(f.path()), env(&[])).expect("valid");
        assert!(settings.accounts[0].accepts_plain());
        assert!(matches!(settings.accounts[0].crypto(), Some(Ok(_))));
    }

    #[test]
    fn production_refuses_the_development_key() {
        let err = Settings::from_sources(None, env(&[(ENVIRONMENT_VAR, "production")])).expect_err("refused");
        assert!(err.to_string().contains("accounts[0].callback_key"), "{err}");
        assert!(!err.to_string().contains(DEVELOPMENT_CALLBACK_KEY));
    }

    #[test]
    fn debug_output_never_contains_secrets() {
        let settings = Settings::from_sources(None, env(&[])).expect("valid");
        let dump = format!("{settings:?}");
        assert!(!dump.contains(DEVELOPMENT_CALLBACK_KEY));
        assert!(!dump.contains("sqlite://data"));
    }
}
