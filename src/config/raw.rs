//! The settings as written (TOML file, built-in defaults, environment), before they are parsed into
//! the typed values of `super`. Nothing outside `config` sees these.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::secrets::RawSecret;
use super::LogFormat;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    pub server: RawServer,
    pub database: RawDatabase,
    #[serde(default)]
    pub accounts: Vec<RawAccount>,
    pub delivery: RawDelivery,
    #[serde(default)]
    pub targets: Vec<RawTarget>,
    pub admin: RawAdmin,
    pub telemetry: RawTelemetry,
    pub metrics: RawMetrics,
    pub retention: RawRetention,
    pub completeness: RawCompleteness,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: String,
    #[serde(default)]
    pub public_url: String,
    pub body_limit_bytes: usize,
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub max_concurrent_requests: usize,
    pub unauthenticated_body_budget_bytes: usize,
    pub unauthenticated_body_timeout_ms: u64,
    pub max_connections: usize,
    pub idle_timeout_ms: u64,
    pub drain_secs: u64,
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    pub url: RawSecret,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
    pub migrate_on_start: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub name: String,
    #[serde(default)]
    pub callback_key: Option<RawSecret>,
    /// Several keys accepted at once, while the platform's key is being changed.
    #[serde(default)]
    pub callback_keys: Vec<RawSecret>,
    #[serde(default = "default_utc_offset")]
    pub utc_offset: String,
    #[serde(default)]
    pub token: Option<RawSecret>,
    #[serde(default)]
    pub encoding_aes_key: Option<RawSecret>,
    #[serde(default)]
    pub receive_id: String,
    #[serde(default)]
    pub allow_plain: bool,
    #[serde(default)]
    pub api: Option<RawApi>,
    #[serde(default)]
    pub reconcile_on_job_completed: Option<bool>,
    #[serde(default)]
    pub enrich_calls: bool,
    #[serde(default)]
    pub reconcile_interval_secs: Option<f64>,
}

fn default_utc_offset() -> String {
    "+08:00".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub base_url: String,
    pub app_key: RawSecret,
    pub app_secret: RawSecret,
    pub tenant_sign: RawSecret,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    pub enabled: bool,
    pub lease_secs: u64,
    pub poll_interval_ms: u64,
    pub retry_after_cap_secs: u64,
    pub internal_timeout_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub name: String,
    pub url: String,
    pub secrets: Vec<RawSecret>,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub intent_levels: Vec<String>,
    #[serde(default)]
    pub result_statuses: Vec<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, RawSecret>,
    #[serde(default = "default_target_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub retry_schedule_secs: Option<Vec<f64>>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default = "default_retry_window_secs")]
    pub retry_window_secs: f64,
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    #[serde(default)]
    pub max_requests_per_second: Option<f64>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Empty: the operator API is off.
    pub token: RawSecret,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub format: LogFormat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub enabled: bool,
    pub listen: String,
    pub require_admin_token: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub raw_body_days: u32,
    pub transcript_days: u32,
    pub delivery_days: u32,
    pub interval_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompleteness {
    pub check_interval_secs: u64,
    pub incomplete_after_secs: u64,
}
