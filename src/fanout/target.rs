//! Downstream targets as the running service knows them: validated, with their filters.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;

use super::event::EventType;
use super::retry::RetryPolicy;
use super::signing::decode_secret;
use crate::config::{is_url_safe_name, AccountSettings, TargetSettings};
use crate::platform::callback::{intent_grade, Callback, Event};

/// Headers the relay sets itself; a target's `headers` cannot replace them.
const RESERVED_HEADERS: [&str; 6] =
    ["webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "content-length", "host"];

/// Where a target's deliveries go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// A downstream webhook.
    Webhook,
    /// Inside the relay: backfill the completed job's lost calls from the platform's API. Riding on
    /// the delivery queue gives it the same lease, retries, dead letters and replay.
    Reconcile { account: String },
    /// Inside the relay: fetch the new call's detail and store what the push lacks.
    Enrich { account: String },
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub kind: TargetKind,
    pub url: Url,
    pub keys: Vec<Vec<u8>>,
    events: HashSet<EventType>,
    accounts: HashSet<String>,
    intent_levels: Vec<String>,
    result_statuses: Vec<String>,
    pub headers: HeaderMap,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub max_in_flight: usize,
    /// Time between two requests when `max_requests_per_second` is set.
    pub min_interval: Option<Duration>,
    pub ordered: bool,
}

/// Everything wrong with a target's settings, each naming its key.
pub fn problems(settings: &TargetSettings) -> Vec<String> {
    let mut problems = Vec::new();
    if !is_url_safe_name(&settings.name) {
        problems.push(format!("name: `{}` must be 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'", settings.name));
    }
    match Url::parse(&settings.url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
        _ => problems.push(format!("url: `{}` is not an http(s) URL", settings.url)),
    }
    if settings.secrets.is_empty() {
        problems.push("secrets: at least one whsec_… secret is required".into());
    }
    for (i, secret) in settings.secrets.iter().enumerate() {
        if decode_secret(secret.expose()).is_none() {
            problems.push(format!("secrets[{i}]: must be whsec_ followed by base64 of 16 to 128 bytes"));
        }
    }
    for event in &settings.events {
        if EventType::parse(event).is_none() {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            problems.push(format!("events: `{event}` is not one of {}", known.join(", ")));
        }
    }
    for (name, value) in &settings.headers {
        let valid = HeaderName::from_bytes(name.as_bytes()).is_ok() && HeaderValue::from_str(value).is_ok();
        if !valid {
            problems.push(format!("headers.{name}: not a valid HTTP header"));
        } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            problems.push(format!("headers.{name}: set by the relay itself"));
        }
    }
    if settings.timeout_ms == 0 {
        problems.push("timeout_ms: must be greater than 0".into());
    }
    if settings.max_in_flight == 0 {
        problems.push("max_in_flight: must be greater than 0".into());
    }
    if settings.max_attempts == Some(0) {
        problems.push("max_attempts: must be at least 1".into());
    }
    if let Some(schedule) = &settings.retry_schedule_secs {
        if schedule.is_empty() || schedule.iter().any(|s| !(s.is_finite() && *s >= 0.0)) {
            problems.push("retry_schedule_secs: must be a non-empty list of seconds (>= 0)".into());
        }
    }
    if !(settings.retry_window_secs.is_finite() && settings.retry_window_secs > 0.0) {
        problems.push("retry_window_secs: must be a positive number of seconds".into());
    }
    if settings.max_requests_per_second.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        problems.push("max_requests_per_second: must be a positive number".into());
    }
    problems
}

impl Target {
    /// Builds from settings that passed `problems`.
    fn from_settings(settings: &TargetSettings) -> Option<Target> {
        let mut headers = HeaderMap::new();
        for (name, value) in &settings.headers {
            headers.insert(HeaderName::from_bytes(name.as_bytes()).ok()?, HeaderValue::from_str(value).ok()?);
        }
        Some(Target {
            name: settings.name.clone(),
            kind: TargetKind::Webhook,
            url: Url::parse(&settings.url).ok()?,
            keys: settings.secrets.iter().filter_map(|s| decode_secret(s.expose())).collect(),
            events: settings.events.iter().filter_map(|e| EventType::parse(e)).collect(),
            accounts: settings.accounts.iter().cloned().collect(),
            intent_levels: settings.intent_levels.clone(),
            result_statuses: settings.result_statuses.clone(),
            headers,
            timeout: Duration::from_millis(settings.timeout_ms),
            retry: RetryPolicy::new(
                settings.retry_schedule_secs.as_deref(),
                settings.max_attempts,
                settings.retry_window_secs,
            ),
            max_in_flight: settings.max_in_flight as usize,
            min_interval: settings.max_requests_per_second.map(|rps| Duration::from_secs_f64(1.0 / rps)),
            ordered: settings.ordered,
        })
    }

    /// The reconciler of one account: wants that account's job completions.
    pub fn reconciler(account: &str) -> Target {
        Target::internal(
            format!("reconcile.{account}"),
            TargetKind::Reconcile { account: account.to_owned() },
            account,
            EventType::JobCompleted,
        )
    }

    /// The enricher of one account: wants that account's new calls.
    pub fn enricher(account: &str) -> Target {
        let mut target = Target::internal(
            format!("enrich.{account}"),
            TargetKind::Enrich { account: account.to_owned() },
            account,
            EventType::CallFinished,
        );
        target.timeout = Duration::from_secs(60);
        target.max_in_flight = 4;
        target
    }

    fn internal(name: String, kind: TargetKind, account: &str, wants: EventType) -> Target {
        Target {
            name,
            kind,
            url: Url::parse("relay://internal").expect("a static URL"),
            keys: Vec::new(),
            events: HashSet::from([wants]),
            accounts: HashSet::from([account.to_owned()]),
            intent_levels: Vec::new(),
            result_statuses: Vec::new(),
            headers: HeaderMap::new(),
            // Paging a large job takes a while; the lease follows from this.
            timeout: Duration::from_secs(600),
            retry: RetryPolicy::new(Some(&[30.0, 120.0, 600.0, 1800.0, 3600.0]), Some(12), 28.0 * 3600.0),
            max_in_flight: 2,
            min_interval: None,
            ordered: false,
        }
    }

    /// Whether this target wants an event. Intent and result filters concern calls only.
    pub fn wants(&self, event_type: EventType, account: &str, callback: &Callback) -> bool {
        if !self.events.is_empty() && !self.events.contains(&event_type) {
            return false;
        }
        if !self.accounts.is_empty() && !self.accounts.contains(account) {
            return false;
        }
        let Event::CallRecord(call) = &callback.event else { return true };
        let level = call.intent_level.as_deref().unwrap_or("");
        let intent_ok = self.intent_levels.is_empty()
            || self.intent_levels.iter().any(|wanted| {
                wanted == level || (intent_grade(wanted).is_some() && intent_grade(wanted) == intent_grade(level))
            });
        let result_ok = self.result_statuses.is_empty()
            || call.result_status.as_deref().is_some_and(|s| self.result_statuses.iter().any(|w| w == s));
        intent_ok && result_ok
    }
}

#[derive(Debug, Clone, Default)]
pub struct Targets(Arc<Vec<Target>>);

impl Targets {
    /// The configured webhooks, plus the internal follow-up targets the accounts ask for.
    pub fn new(settings: &[TargetSettings], accounts: &[AccountSettings]) -> Targets {
        let webhooks = settings.iter().filter_map(Target::from_settings);
        let reconcilers = accounts.iter().filter(|a| a.reconciles()).map(|a| Target::reconciler(&a.name));
        let enrichers =
            accounts.iter().filter(|a| a.api.is_some() && a.enrich_calls).map(|a| Target::enricher(&a.name));
        Targets(Arc::new(webhooks.chain(reconcilers).chain(enrichers).collect()))
    }

    pub fn all(&self) -> &[Target] {
        &self.0
    }

    pub fn get(&self, name: &str) -> Option<&Target> {
        self.0.iter().find(|t| t.name == name)
    }

    pub fn matching(&self, event_type: EventType, account: &str, callback: &Callback) -> Vec<String> {
        self.0.iter().filter(|t| t.wants(event_type, account, callback)).map(|t| t.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::callback::parse_callback;

    fn settings(extra: serde_json::Value) -> TargetSettings {
        let mut value = serde_json::json!({
            "name": "crm", "url": "https://crm.example.com/hook", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
        });
        value.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(value).expect("target settings")
    }

    fn call(level: &str, status: &str) -> Callback {
        let body = format!(
            r#"{{"dataType":"ROBOT_CALL_RECORD","data":{{"callRecordId":1,"intentLevel":"{level}","resultStatus":"{status}"}}}}"#
        );
        parse_callback(body.as_bytes(), chrono::FixedOffset::east_opt(0).unwrap()).unwrap()
    }

    #[test]
    fn filters_select_by_type_account_intent_and_result() {
        let target = Target::from_settings(&settings(serde_json::json!({
            "events": ["call.finished"], "accounts": ["acme"], "intent_levels": ["A", "B"], "result_statuses": ["ANSWERED"]
        })))
        .unwrap();
        assert!(target.wants(EventType::CallFinished, "acme", &call("A", "ANSWERED")));
        assert!(target.wants(EventType::CallFinished, "acme", &call("1", "ANSWERED")), "code 1 is grade B");
        assert!(!target.wants(EventType::CallFinished, "acme", &call("C", "ANSWERED")));
        assert!(!target.wants(EventType::CallFinished, "acme", &call("A", "BUSY")));
        assert!(!target.wants(EventType::CallFinished, "other", &call("A", "ANSWERED")));
        assert!(!target.wants(EventType::CallUpdated, "acme", &call("A", "ANSWERED")));
    }

    #[test]
    fn bad_settings_are_named() {
        let mut bad = settings(serde_json::json!({
            "events": ["call.done"], "headers": {"webhook-id": "x", "bad header": "y"}, "max_in_flight": 0
        }));
        bad.url = "ftp://x".into();
        bad.secrets.push(crate::secret::Secret::new("nope"));
        let text = problems(&bad).join("\n");
        for expected in [
            "url:",
            "secrets[1]:",
            "events: `call.done`",
            "headers.webhook-id: set by the relay",
            "headers.bad header:",
            "max_in_flight:",
        ] {
            assert!(text.contains(expected), "{expected} missing from {text}");
        }
        assert!(!text.contains("whsec_MfKQ"), "a secret leaked: {text}");
    }
}
