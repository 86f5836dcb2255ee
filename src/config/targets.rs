//! `[[targets]]`: downstream webhooks, parsed into typed settings (URL, decoded signing keys, event
//! types, headers, retry policy) that the fan-out builds its targets from without any check left.

use std::collections::HashMap;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;

use super::raw::RawTarget;
use super::{is_url_safe_name, positive_seconds, Context, Problems};
use crate::domain::EventType;
use crate::secret::Secret;

/// Close to Svix's: seconds, then minutes, then hours; about 27.6 hours in all.
pub const DEFAULT_RETRY_SCHEDULE_SECS: [f64; 7] = [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0];

/// Headers the relay sets itself; a target's `headers` cannot replace them.
const RESERVED_HEADERS: [&str; 6] =
    ["webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "content-length", "host"];

/// One downstream webhook receiver.
#[derive(Debug, Clone)]
pub struct TargetSettings {
    pub name: String,
    pub url: Url,
    /// Decoded `whsec_…` keys; every one signs each request, so a receiver can rotate.
    pub signing_keys: Vec<Vec<u8>>,
    /// Where each signing secret came from (for `check-config`).
    pub secrets: Vec<Secret>,
    /// Empty: every event type.
    pub events: Vec<EventType>,
    /// Empty: every account.
    pub accounts: Vec<String>,
    /// Calls with these intent levels only (verbatim or grade); empty: all.
    pub intent_levels: Vec<String>,
    /// Calls with these result statuses only; empty: all.
    pub result_statuses: Vec<String>,
    pub headers: Vec<(HeaderName, Secret)>,
    pub timeout: Duration,
    /// Delay before retry n (n from 0); the last repeats.
    pub retry_schedule: Vec<Duration>,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// No retry is scheduled later than this after the event.
    pub retry_window: Duration,
    pub max_in_flight: usize,
    /// Time between two requests when `max_requests_per_second` is set.
    pub min_interval: Option<Duration>,
    /// One delivery at a time, in order; a failing head blocks the rest.
    pub ordered: bool,
}

pub(super) fn parse(raw: Vec<RawTarget>, context: &Context<'_>, problems: &mut Problems) -> Vec<TargetSettings> {
    let mut names = HashMap::new();
    let mut targets = Vec::with_capacity(raw.len());
    for (index, raw) in raw.into_iter().enumerate() {
        let key = format!("targets[{index}]");
        if let Some(first) = names.insert(raw.name.clone(), index) {
            problems.add(format!("{key}.name"), format!("`{}` is already used by targets[{first}]", raw.name));
        }
        if let Some(target) = parse_one(raw, &key, context, problems) {
            targets.push(target);
        }
    }
    targets
}

fn parse_one(raw: RawTarget, key: &str, context: &Context<'_>, problems: &mut Problems) -> Option<TargetSettings> {
    let before = problems.0.len();
    if !is_url_safe_name(&raw.name) {
        problems.add(
            format!("{key}.name"),
            format!("`{}` must be 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'", raw.name),
        );
    }
    let url = match Url::parse(&raw.url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
        _ => {
            problems.add(format!("{key}.url"), format!("`{}` is not an http(s) URL", raw.url));
            None
        }
    };
    if raw.secrets.is_empty() {
        problems.add(format!("{key}.secrets"), "at least one whsec_… secret is required");
    }
    let mut secrets = Vec::new();
    let mut signing_keys = Vec::new();
    for (i, secret) in raw.secrets.iter().enumerate() {
        let name = format!("{key}.secrets[{i}]");
        let Some(secret) = context.secret(problems, &name, secret, 1) else { continue };
        match decode_whsec(secret.expose()) {
            Some(bytes) => {
                signing_keys.push(bytes);
                secrets.push(secret);
            }
            None => problems.add(name, "must be whsec_ followed by base64 of 16 to 128 bytes"),
        }
    }
    let mut events = Vec::new();
    for event in &raw.events {
        match EventType::parse(event) {
            Some(event_type) => events.push(event_type),
            None => {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                problems.add(format!("{key}.events"), format!("`{event}` is not one of {}", known.join(", ")));
            }
        }
    }
    let mut headers = Vec::new();
    for (name, value) in &raw.headers {
        let header_key = format!("{key}.headers.{name}");
        let Some(value) = context.secret(problems, &header_key, value, 0) else { continue };
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value.expose())) {
            (Ok(header), Ok(_)) if RESERVED_HEADERS.contains(&header.as_str()) => {
                problems.add(header_key, "set by the relay itself")
            }
            (Ok(header), Ok(_)) => headers.push((header, value)),
            _ => problems.add(header_key, "not a valid HTTP header"),
        }
    }
    if raw.timeout_ms == 0 {
        problems.add(format!("{key}.timeout_ms"), "must be greater than 0");
    }
    if raw.max_in_flight == 0 {
        problems.add(format!("{key}.max_in_flight"), "must be greater than 0");
    }
    if raw.max_attempts == Some(0) {
        problems.add(format!("{key}.max_attempts"), "must be at least 1");
    }
    let schedule = raw.retry_schedule_secs.unwrap_or_else(|| DEFAULT_RETRY_SCHEDULE_SECS.to_vec());
    let retry_schedule: Option<Vec<Duration>> =
        schedule.iter().map(|s| Duration::try_from_secs_f64(*s).ok().filter(|_| s.is_finite())).collect();
    let retry_schedule = match retry_schedule {
        Some(steps) if !steps.is_empty() => Some(steps),
        _ => {
            problems.add(format!("{key}.retry_schedule_secs"), "must be a non-empty list of seconds (>= 0)");
            None
        }
    };
    let retry_window = positive_seconds(raw.retry_window_secs);
    if retry_window.is_none() {
        problems.add(format!("{key}.retry_window_secs"), "must be a positive number of seconds");
    }
    let min_interval = match raw.max_requests_per_second {
        None => None,
        Some(rate) => match positive_seconds(rate) {
            Some(_) => Some(Duration::from_secs_f64(1.0 / rate)),
            None => {
                problems.add(format!("{key}.max_requests_per_second"), "must be a positive number");
                None
            }
        },
    };
    if problems.0.len() > before {
        return None;
    }
    let retry_schedule = retry_schedule?;
    Some(TargetSettings {
        name: raw.name,
        url: url?,
        signing_keys,
        secrets,
        events,
        accounts: raw.accounts,
        intent_levels: raw.intent_levels,
        result_statuses: raw.result_statuses,
        headers,
        timeout: Duration::from_millis(raw.timeout_ms),
        max_attempts: raw.max_attempts.unwrap_or(retry_schedule.len() as u32 + 1),
        retry_schedule,
        retry_window: retry_window?,
        max_in_flight: raw.max_in_flight as usize,
        min_interval,
        ordered: raw.ordered,
    })
}

/// A Standard Webhooks secret: `whsec_` and the base64 of 16 to 128 key bytes.
fn decode_whsec(text: &str) -> Option<Vec<u8>> {
    let key = STANDARD.decode(text.strip_prefix("whsec_")?).ok()?;
    (16..=128).contains(&key.len()).then_some(key)
}
