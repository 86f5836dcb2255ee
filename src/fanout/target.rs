//! Downstream targets as the running service knows them, with their filters; and the relay's own
//! internal targets (reconciliation, enrichment), which ride the same delivery queue.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Url;

use super::retry::RetryPolicy;
use crate::account::Account;
use crate::config::TargetSettings;
use crate::domain::EventType;
use crate::platform::callback::{intent_grade, Callback, Event};

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
    /// Time between two requests when a rate is set.
    pub min_interval: Option<Duration>,
    pub ordered: bool,
}

impl From<&TargetSettings> for Target {
    fn from(settings: &TargetSettings) -> Target {
        let headers = settings
            .headers
            .iter()
            .filter_map(|(name, value)| {
                // Checked while the settings were parsed; marked sensitive so that no debug
                // output of a request shows it.
                let mut value = HeaderValue::from_str(value.expose()).ok()?;
                value.set_sensitive(true);
                Some((name.clone(), value))
            })
            .collect();
        Target {
            name: settings.name.clone(),
            kind: TargetKind::Webhook,
            url: settings.url.clone(),
            keys: settings.signing_keys.clone(),
            events: settings.events.iter().copied().collect(),
            accounts: settings.accounts.iter().cloned().collect(),
            intent_levels: settings.intent_levels.clone(),
            result_statuses: settings.result_statuses.clone(),
            headers,
            timeout: settings.timeout,
            retry: RetryPolicy {
                schedule: settings.retry_schedule.clone(),
                max_attempts: settings.max_attempts,
                window: settings.retry_window,
            },
            max_in_flight: settings.max_in_flight,
            min_interval: settings.min_interval,
            ordered: settings.ordered,
        }
    }
}

impl Target {
    /// The reconciler of one account: wants that account's job completions. One reconciliation
    /// may take up to `timeout` (paging a large job takes a while; the lease follows from it).
    pub fn reconciler(account: &str, timeout: Duration) -> Target {
        let mut target = Target::internal(
            format!("reconcile.{account}"),
            TargetKind::Reconcile { account: account.to_owned() },
            account,
            EventType::JobCompleted,
        );
        target.timeout = timeout;
        target
    }

    /// The enricher of one account: wants that account's new calls (one detail each, so at most a
    /// minute).
    pub fn enricher(account: &str, timeout: Duration) -> Target {
        let mut target = Target::internal(
            format!("enrich.{account}"),
            TargetKind::Enrich { account: account.to_owned() },
            account,
            EventType::CallFinished,
        );
        target.timeout = timeout.min(Duration::from_secs(60));
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
            timeout: Duration::from_secs(600),
            retry: RetryPolicy::from_secs(&[30.0, 120.0, 600.0, 1800.0, 3600.0], 12, 28.0 * 3600.0),
            max_in_flight: 2,
            min_interval: None,
            ordered: false,
        }
    }

    /// Whether this target wants an event. Intent and result filters concern calls only.
    pub fn wants(&self, event_type: EventType, account: &str, callback: &Callback) -> bool {
        if event_type.is_operator() {
            return false;
        }
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

/// Every target, webhooks and internal. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Targets(Arc<Vec<Target>>);

impl Targets {
    /// The configured webhooks, plus the internal follow-up targets the accounts ask for, whose
    /// work may take up to `internal_timeout` each.
    pub fn new(settings: &[TargetSettings], accounts: &[Account], internal_timeout: Duration) -> Targets {
        let webhooks = settings.iter().map(Target::from);
        let reconcilers = accounts
            .iter()
            .filter(|a| a.reconcile_on_job_completed)
            .map(|a| Target::reconciler(&a.name, internal_timeout));
        let enrichers = accounts.iter().filter(|a| a.enrich_calls).map(|a| Target::enricher(&a.name, internal_timeout));
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

    /// The webhooks that list this operator event in their `events` and take this account's.
    pub fn wanting_operator_event(&self, event_type: EventType, account: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|t| matches!(t.kind, TargetKind::Webhook) && t.events.contains(&event_type))
            .filter(|t| t.accounts.is_empty() || t.accounts.contains(account))
            .map(|t| t.name.clone())
            .collect()
    }

    /// Webhooks that want every event, for unit tests of what is announced.
    #[cfg(test)]
    pub(crate) fn for_tests(names: &[&str]) -> Targets {
        let targets = names
            .iter()
            .map(|name| {
                let mut target = Target::internal((*name).to_owned(), TargetKind::Webhook, "", EventType::CallFinished);
                target.events.clear();
                target.accounts.clear();
                target
            })
            .collect();
        Targets(Arc::new(targets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::callback::parse_callback;

    fn call(level: &str, status: &str) -> Callback {
        let body = format!(
            r#"{{"dataType":"ROBOT_CALL_RECORD","data":{{"callRecordId":1,"intentLevel":"{level}","resultStatus":"{status}"}}}}"#
        );
        parse_callback(body.as_bytes(), chrono::FixedOffset::east_opt(0).unwrap()).unwrap()
    }

    #[test]
    fn filters_select_by_type_account_intent_and_result() {
        let mut target = Target::internal("crm".into(), TargetKind::Webhook, "acme", EventType::CallFinished);
        target.intent_levels = vec!["A".into(), "B".into()];
        target.result_statuses = vec!["ANSWERED".into()];
        assert!(target.wants(EventType::CallFinished, "acme", &call("A", "ANSWERED")));
        assert!(target.wants(EventType::CallFinished, "acme", &call("1", "ANSWERED")), "code 1 is grade B");
        assert!(!target.wants(EventType::CallFinished, "acme", &call("C", "ANSWERED")));
        assert!(!target.wants(EventType::CallFinished, "acme", &call("A", "BUSY")));
        assert!(!target.wants(EventType::CallFinished, "other", &call("A", "ANSWERED")));
        assert!(!target.wants(EventType::CallUpdated, "acme", &call("A", "ANSWERED")));
    }
}
