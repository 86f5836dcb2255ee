//! Prometheus metrics: what was received, stored, delivered and queued. Counters and histograms
//! move as work happens; queue depths and pool usage are set by one background task (see
//! `app`), so that a scrape never queries the database.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::domain::{DeliveryOutcome, Ingested};
use crate::store::QueueStats;

/// What became of one callback request, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackOutcome {
    Ingested(Ingested),
    /// Refused with this stable error code (`unauthorized`, `invalid_json`, `storage_unavailable`…).
    Refused(&'static str),
}

impl CallbackOutcome {
    fn as_str(self) -> &'static str {
        match self {
            CallbackOutcome::Ingested(outcome) => outcome.as_str(),
            CallbackOutcome::Refused(code) => code,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallbackLabels {
    account: String,
    data_type: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    target: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabels {
    account: String,
}

struct Inner {
    registry: Registry,
    callbacks: Family<CallbackLabels, Counter>,
    ingest_seconds: Histogram,
    deliveries: Family<DeliveryLabels, Counter>,
    delivery_seconds: Family<TargetLabels, Histogram>,
    queue_pending: Family<TargetLabels, Gauge>,
    queue_dead: Family<TargetLabels, Gauge>,
    queue_oldest_due_seconds: Family<TargetLabels, Gauge>,
    deliveries_held: Family<TargetLabels, Gauge>,
    pool_connections: Gauge,
    pool_in_use: Gauge,
    jobs_incomplete: Family<AccountLabels, Gauge>,
    job_calls_missing: Family<AccountLabels, Gauge>,
}

#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tanyi_relay");
        let callbacks = Family::<CallbackLabels, Counter>::default();
        registry.register("callbacks", "Callbacks received, by account, dataType and outcome", callbacks.clone());
        let ingest_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "ingest_duration_seconds",
            "Time from request to answer for callbacks",
            ingest_seconds.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register("deliveries", "Delivery attempts, by target and outcome", deliveries.clone());
        let delivery_seconds = Family::<TargetLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register("delivery_duration_seconds", "Duration of delivery attempts", delivery_seconds.clone());
        let queue_pending = Family::<TargetLabels, Gauge>::default();
        registry.register("queue_pending", "Deliveries waiting to be sent (or retried)", queue_pending.clone());
        let queue_dead = Family::<TargetLabels, Gauge>::default();
        registry.register("queue_dead", "Deliveries that gave up, until replayed", queue_dead.clone());
        let queue_oldest_due_seconds = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "queue_oldest_due_seconds",
            "How long the oldest due delivery has been waiting",
            queue_oldest_due_seconds.clone(),
        );
        let deliveries_held = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "deliveries_held",
            "Deliveries this replica holds in memory: claimed, and not yet recorded",
            deliveries_held.clone(),
        );
        let pool_connections = Gauge::default();
        registry.register("db_pool_connections", "Database connections open", pool_connections.clone());
        let pool_in_use = Gauge::default();
        registry.register("db_pool_in_use", "Database connections in use", pool_in_use.clone());
        // Per account, never per job: a job id as a label would grow without bound.
        let jobs_incomplete = Family::<AccountLabels, Gauge>::default();
        registry.register(
            "jobs_incomplete",
            "Recent jobs, completed on the platform, that miss calls or deliveries",
            jobs_incomplete.clone(),
        );
        let job_calls_missing = Family::<AccountLabels, Gauge>::default();
        registry.register(
            "job_calls_missing",
            "Calls the platform listed for recent jobs that are not stored here",
            job_calls_missing.clone(),
        );
        Metrics(Arc::new(Inner {
            registry,
            callbacks,
            ingest_seconds,
            deliveries,
            delivery_seconds,
            queue_pending,
            queue_dead,
            queue_oldest_due_seconds,
            deliveries_held,
            pool_connections,
            pool_in_use,
            jobs_incomplete,
            job_calls_missing,
        }))
    }

    /// `account` must be a configured account (or "-") and `data_type` a known one (or "other",
    /// "-"): labels never carry what a caller chose.
    pub fn callback(&self, account: &str, data_type: &str, outcome: CallbackOutcome) {
        let labels = CallbackLabels {
            account: account.to_owned(),
            data_type: data_type.to_owned(),
            outcome: outcome.as_str().to_owned(),
        };
        self.0.callbacks.get_or_create(&labels).inc();
    }

    pub fn ingest_time(&self, took: Duration) {
        self.0.ingest_seconds.observe(took.as_secs_f64());
    }

    pub fn delivery(&self, target: &str, outcome: DeliveryOutcome, took: Duration) {
        let labels = DeliveryLabels { target: target.to_owned(), outcome: outcome.as_str().to_owned() };
        self.0.deliveries.get_or_create(&labels).inc();
        self.0.delivery_seconds.get_or_create(&TargetLabels { target: target.to_owned() }).observe(took.as_secs_f64());
    }

    /// Sets the queue figures. `targets`: every target name, so that a queue that emptied reads 0
    /// rather than its last value.
    pub fn set_queues(&self, targets: &[String], stats: &[QueueStats], now: DateTime<Utc>) {
        for target in targets {
            let labels = TargetLabels { target: target.clone() };
            self.0.queue_pending.get_or_create(&labels).set(0);
            self.0.queue_dead.get_or_create(&labels).set(0);
            self.0.queue_oldest_due_seconds.get_or_create(&labels).set(0);
        }
        for stats in stats {
            let labels = TargetLabels { target: stats.target.clone() };
            self.0.queue_pending.get_or_create(&labels).set(stats.pending);
            self.0.queue_dead.get_or_create(&labels).set(stats.dead);
            let waited = stats.oldest_due_at.map_or(0, |due| (now - due).num_seconds().max(0));
            self.0.queue_oldest_due_seconds.get_or_create(&labels).set(waited);
        }
    }

    /// How many deliveries of `target` this replica holds now.
    pub fn set_held(&self, target: &str, held: usize) {
        let labels = TargetLabels { target: target.to_owned() };
        self.0.deliveries_held.get_or_create(&labels).set(held as i64);
    }

    /// Sets an account's completeness figures, from its last check.
    pub fn set_completeness(&self, account: &str, incomplete_jobs: usize, calls_missing: u64) {
        let labels = AccountLabels { account: account.to_owned() };
        self.0.jobs_incomplete.get_or_create(&labels).set(incomplete_jobs as i64);
        self.0.job_calls_missing.get_or_create(&labels).set(calls_missing as i64);
    }

    /// Sets the connection figures: open, and busy.
    pub fn set_pool_usage(&self, (open, busy): (u32, u32)) {
        self.0.pool_connections.set(i64::from(open));
        self.0.pool_in_use.set(i64::from(busy));
    }

    /// The text exposition of every figure as last set.
    pub fn render(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.0.registry).expect("writing to a String cannot fail");
        text
    }
}
