//! Settings: the checked-in defaults, then an optional file, then `TANYI_RELAY__SECTION__KEY`
//! environment variables. They are parsed once, here, into typed values (addresses, offsets, URLs,
//! keys, durations, secrets read from where they are kept), so that a bad value stops start-up
//! with a message naming its key and no later code has to check or fall back.
//!
//! This module is a leaf of the application: it parses, and builds the platform types an account
//! needs (its callback crypto, its API client settings); it calls into nothing else.

mod accounts;
mod examples;
mod raw;
mod secrets;
mod targets;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use examples::is_public_example;
pub use targets::{TargetSettings, DEFAULT_RETRY_SCHEDULE_SECS};

use crate::account::Account;
use crate::secret::Secret;
use raw::Raw;

const DEFAULTS: &str = include_str!("../../config/default.toml");

pub use crate::account::DEVELOPMENT_CALLBACK_KEY;

const ENV_PREFIX: &str = "TANYI_RELAY";
pub const ENVIRONMENT_VAR: &str = "TANYI_RELAY_ENV";
pub const CONFIG_FILE_VAR: &str = "TANYI_RELAY_CONFIG";

/// The process at rest: the runtime, the database pools, the HTTP clients.
pub const MEMORY_BASELINE_BYTES: u64 = 40 << 20;
/// An authenticated callback in flight takes at most this many times its body: the body, its
/// parsed form (at most about 2.5 times, given the caps of `platform::limits`), the inbox copy,
/// the announced event twice over (created and changed), and the database's encoding.
pub const CALLBACK_MEMORY_FACTOR: u64 = 10;
/// A body read before it can be authenticated: the body, its XML text, its ciphertext.
pub const UNAUTHENTICATED_MEMORY_FACTOR: u64 = 3;
/// An open connection: its read and write buffers and its task.
pub const CONNECTION_BYTES: u64 = 16 << 10;
/// Deliveries a target holds per slot of `max_in_flight` (claimed, sent or being recorded).
pub const HELD_DELIVERIES_PER_SLOT: usize = 4;
/// A held delivery: its event's payload, at most about 2.5 times the body it came from.
pub const DELIVERY_MEMORY_FACTOR: u64 = 3;

#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub accounts: Vec<Account>,
    pub delivery: DeliverySettings,
    pub targets: Vec<TargetSettings>,
    pub admin: AdminSettings,
    pub telemetry: TelemetrySettings,
    pub metrics: MetricsSettings,
    pub retention: RetentionSettings,
    pub completeness: CompletenessSettings,
    /// `TANYI_RELAY_ENV=production`: public example secrets are refused.
    pub production: bool,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Base URL the platform reaches this service at (no trailing `/`); `None`: from `listen`.
    pub public_url: Option<String>,
    pub body_limit_bytes: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// Authenticated callbacks handled at once.
    pub max_concurrent_requests: usize,
    /// Bytes of bodies read before they can be authenticated (encrypted-mode bodies), at once.
    pub unauthenticated_body_budget_bytes: usize,
    pub unauthenticated_body_timeout: Duration,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub drain: Duration,
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseBackend {
    Sqlite,
    Postgres,
}

impl DatabaseBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseBackend::Sqlite => "sqlite",
            DatabaseBackend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: Secret,
    pub backend: DatabaseBackend,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub enabled: bool,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub retry_after_cap: Duration,
    /// The longest one piece of internal work (a reconciliation, an enrichment) may take.
    pub internal_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// `None`: the operator API is off.
    pub token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct MetricsSettings {
    pub enabled: bool,
    /// Where `/metrics` is served: never on the public callback port.
    pub listen: SocketAddr,
    pub require_admin_token: bool,
}

#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// 0 keeps everything.
    pub raw_body_days: u32,
    pub transcript_days: u32,
    pub delivery_days: u32,
    pub interval: Duration,
}

#[derive(Debug, Clone)]
pub struct CompletenessSettings {
    /// How often jobs' completeness is judged (operator events, metrics).
    pub check_interval: Duration,
    /// How long after its completion a job may stay incomplete before `job.incomplete` goes out.
    pub incomplete_after: Duration,
}

impl RetentionSettings {
    pub fn enabled(&self) -> bool {
        self.raw_body_days > 0 || self.transcript_days > 0 || self.delivery_days > 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

/// Everything wrong with the settings, each line naming its key; filled while parsing.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<String>);

impl Problems {
    pub(crate) fn add(&mut self, key: impl std::fmt::Display, problem: impl std::fmt::Display) {
        self.0.push(format!("{key}: {problem}"));
    }
}

/// What parsing a secret needs: the environment it may name, and whether public examples count.
pub(crate) struct Context<'a> {
    env: &'a HashMap<String, String>,
    production: bool,
}

impl Context<'_> {
    /// Reads a secret; a problem (a missing variable, an unreadable file, a public example in
    /// production, a value shorter than `min_chars`) is recorded under `key` and gives `None`.
    pub(crate) fn secret(
        &self,
        problems: &mut Problems,
        key: &str,
        raw: &secrets::RawSecret,
        min_chars: usize,
    ) -> Option<Secret> {
        let secret = match raw.read(self.env) {
            Ok(secret) => secret,
            Err(problem) => {
                problems.add(key, problem);
                return None;
            }
        };
        if secret.expose().chars().count() < min_chars {
            problems.add(key, format!("must be at least {min_chars} characters"));
            return None;
        }
        if self.production && is_public_example(secret.expose()) {
            problems.add(
                key,
                format!("is a public example value from the documentation; it cannot be used when {ENVIRONMENT_VAR}=production"),
            );
            return None;
        }
        Some(secret)
    }
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
        let list_overrides: Vec<String> = env
            .keys()
            .filter(|k| ["ACCOUNTS__", "TARGETS__"].iter().any(|list| k.starts_with(&format!("{ENV_PREFIX}__{list}"))))
            .cloned()
            .collect();
        if !list_overrides.is_empty() {
            return Err(ConfigError::Invalid(vec![format!(
                "{}: accounts and targets are lists and come from the configuration file; give their secrets \
                 there as {{ env = \"NAME\" }} or {{ file = \"PATH\" }}",
                list_overrides.join(", ")
            )]));
        }
        let mut builder =
            config::Config::builder().add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = &file {
            builder = builder.add_source(config::File::from(path.as_path()).required(true));
        }
        // No `try_parsing`: every value from the environment stays text, so that a secret made of
        // digits is not turned into a number; numeric settings are parsed from that text.
        let overrides = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .source(Some(env.clone()));
        let raw: Raw = builder.add_source(overrides).build()?.try_deserialize()?;
        let production = env.get(ENVIRONMENT_VAR).is_some_and(|v| v == "production");
        Self::parse(raw, &Context { env: &env, production })
    }

    fn parse(raw: Raw, context: &Context<'_>) -> Result<Self, ConfigError> {
        let mut problems = Problems::default();
        let server = parse_server(raw.server, &mut problems);
        let database = parse_database(raw.database, context, &mut problems);
        let accounts = accounts::parse(raw.accounts, context, &mut problems);
        let targets = targets::parse(raw.targets, context, &mut problems);
        let admin = AdminSettings {
            token: match &raw.admin.token {
                secrets::RawSecret::Inline(empty) if empty.is_empty() => None,
                token => context.secret(&mut problems, "admin.token", token, 16),
            },
        };
        let metrics_listen = raw.metrics.listen.parse::<SocketAddr>().unwrap_or_else(|_| {
            problems.add("metrics.listen", format!("`{}` is not an address like 127.0.0.1:9464", raw.metrics.listen));
            SocketAddr::from(([127, 0, 0, 1], 9464))
        });
        let metrics = MetricsSettings {
            enabled: raw.metrics.enabled,
            listen: metrics_listen,
            require_admin_token: raw.metrics.require_admin_token,
        };
        if metrics.require_admin_token && admin.token.is_none() {
            problems.add("metrics.require_admin_token", "needs admin.token");
        }
        if raw.retention.interval_secs == 0 {
            problems.add("retention.interval_secs", "must be greater than 0");
        }
        let retention = RetentionSettings {
            raw_body_days: raw.retention.raw_body_days,
            transcript_days: raw.retention.transcript_days,
            delivery_days: raw.retention.delivery_days,
            interval: Duration::from_secs(raw.retention.interval_secs),
        };
        if raw.completeness.check_interval_secs == 0 {
            problems.add("completeness.check_interval_secs", "must be greater than 0");
        }
        let completeness = CompletenessSettings {
            check_interval: Duration::from_secs(raw.completeness.check_interval_secs),
            incomplete_after: Duration::from_secs(raw.completeness.incomplete_after_secs),
        };
        if raw.delivery.poll_interval_ms == 0 || raw.delivery.lease_secs == 0 || raw.delivery.internal_timeout_secs == 0
        {
            problems.add("delivery", "lease_secs, poll_interval_ms and internal_timeout_secs must be greater than 0");
        }
        let delivery = DeliverySettings {
            enabled: raw.delivery.enabled,
            lease: Duration::from_secs(raw.delivery.lease_secs),
            poll_interval: Duration::from_millis(raw.delivery.poll_interval_ms),
            retry_after_cap: Duration::from_secs(raw.delivery.retry_after_cap_secs),
            internal_timeout: Duration::from_secs(raw.delivery.internal_timeout_secs),
        };
        if !problems.0.is_empty() {
            return Err(ConfigError::Invalid(problems.0));
        }
        Ok(Settings {
            server: server.expect("no problems, so the server settings parsed"),
            database: database.expect("no problems, so the database settings parsed"),
            accounts,
            delivery,
            targets,
            admin,
            telemetry: TelemetrySettings { format: raw.telemetry.format },
            metrics,
            retention,
            completeness,
            production: context.production,
        })
    }

    /// An upper bound of the process's memory, from the limits that bound it (docs/OPERATIONS.md,
    /// "Sizing"): what the runtime and the pools take, plus what each authenticated callback in
    /// flight (its body, parsed form, event and inbox copy), each unauthenticated body, each open
    /// connection and each delivery held by a target can take at most. Size the container's memory
    /// limit from it.
    pub fn memory_bound_bytes(&self) -> u64 {
        let body = self.server.body_limit_bytes as u64;
        let held: u64 = self.targets.iter().map(|t| (HELD_DELIVERIES_PER_SLOT * t.max_in_flight) as u64).sum();
        MEMORY_BASELINE_BYTES
            + self.server.max_concurrent_requests as u64 * body * CALLBACK_MEMORY_FACTOR
            + self.server.unauthenticated_body_budget_bytes as u64 * UNAUTHENTICATED_MEMORY_FACTOR
            + self.server.max_connections as u64 * CONNECTION_BYTES
            + held * body * DELIVERY_MEMORY_FACTOR
    }

    /// The base URL callbacks are registered at.
    pub fn public_base_url(&self, bound: SocketAddr) -> String {
        self.server.public_url.clone().unwrap_or_else(|| format!("http://{bound}"))
    }
}

fn parse_server(raw: raw::RawServer, problems: &mut Problems) -> Option<ServerSettings> {
    let listen = raw.listen.parse::<SocketAddr>().map_err(|_| {
        problems.add("server.listen", format!("`{}` is not an address like 0.0.0.0:8080", raw.listen));
    });
    for (key, value) in [
        ("server.header_timeout_ms", raw.header_timeout_ms),
        ("server.body_timeout_ms", raw.body_timeout_ms),
        ("server.max_concurrent_requests", raw.max_concurrent_requests as u64),
        ("server.unauthenticated_body_budget_bytes", raw.unauthenticated_body_budget_bytes as u64),
        ("server.unauthenticated_body_timeout_ms", raw.unauthenticated_body_timeout_ms),
        ("server.max_connections", raw.max_connections as u64),
        ("server.idle_timeout_ms", raw.idle_timeout_ms),
        ("server.body_limit_bytes", raw.body_limit_bytes as u64),
    ] {
        if value == 0 {
            problems.add(key, "must be greater than 0");
        }
    }
    let public_url = raw.public_url.trim_end_matches('/');
    let public_url = if public_url.is_empty() {
        None
    } else if reqwest::Url::parse(public_url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
        Some(public_url.to_owned())
    } else {
        problems.add("server.public_url", format!("`{public_url}` is not an http(s) URL"));
        None
    };
    Some(ServerSettings {
        listen: listen.ok()?,
        public_url,
        body_limit_bytes: raw.body_limit_bytes,
        header_timeout: Duration::from_millis(raw.header_timeout_ms),
        body_timeout: Duration::from_millis(raw.body_timeout_ms),
        max_concurrent_requests: raw.max_concurrent_requests,
        unauthenticated_body_budget_bytes: raw.unauthenticated_body_budget_bytes,
        unauthenticated_body_timeout: Duration::from_millis(raw.unauthenticated_body_timeout_ms),
        max_connections: raw.max_connections,
        idle_timeout: Duration::from_millis(raw.idle_timeout_ms),
        drain: Duration::from_secs(raw.drain_secs),
        shutdown_timeout: Duration::from_secs(raw.shutdown_timeout_secs),
    })
}

fn parse_database(raw: raw::RawDatabase, context: &Context<'_>, problems: &mut Problems) -> Option<DatabaseSettings> {
    if raw.max_connections == 0 {
        problems.add("database.max_connections", "must be greater than 0");
    }
    if raw.acquire_timeout_ms == 0 {
        problems.add("database.acquire_timeout_ms", "must be greater than 0");
    }
    let url = context.secret(problems, "database.url", &raw.url, 1)?;
    let text = url.expose();
    let backend = if text.starts_with("sqlite:") {
        DatabaseBackend::Sqlite
    } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        DatabaseBackend::Postgres
    } else {
        problems.add("database.url", "must start with sqlite:, postgres:// or postgresql://");
        return None;
    };
    Some(DatabaseSettings {
        url,
        backend,
        max_connections: raw.max_connections,
        acquire_timeout: Duration::from_millis(raw.acquire_timeout_ms),
        migrate_on_start: raw.migrate_on_start,
    })
}

/// 1 to 64 of `A-Z a-z 0-9 - _`: account and target names appear in URLs and metric labels.
pub(crate) fn is_url_safe_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A positive, finite number of seconds as a duration; `None` for anything else.
pub(crate) fn positive_seconds(seconds: f64) -> Option<Duration> {
    (seconds.is_finite() && seconds > 0.0).then(|| Duration::try_from_secs_f64(seconds).ok()).flatten()
}

#[cfg(test)]
mod tests;
