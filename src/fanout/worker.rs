//! The delivery worker: per target, claim due deliveries (a lease, not a lock), send each outside
//! any transaction, record the attempt, and schedule the retry or give up. One slow or failing
//! target never holds up another: each has its own loop and its own concurrency.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use super::retry::random_jitter;
use super::signing::signature_header;
use super::target::{Target, TargetKind, Targets};
use crate::config::DeliverySettings;
use crate::domain::DeliveryOutcome;
use crate::metrics::Metrics;
use crate::platform::client::describe_http_error;
use crate::store::group_commit::GroupCommit;
use crate::store::{AfterAttempt, Attempt, ClaimedDelivery, Store, StoreError};

/// How much of a receiver's answer is kept with an attempt.
const SNIPPET_BYTES: usize = 512;
/// A target holds at most this many times its `max_in_flight` claimed deliveries in memory: being
/// sent, waiting for a slot, or being recorded (part of the memory bound, see `config`).
const HELD_WINDOWS: usize = crate::config::HELD_DELIVERIES_PER_SLOT;
/// After this many failures in a row a target is paused as a whole, then probed one delivery at a
/// time; each failed probe doubles the pause, up to `MAX_PAUSE`.
const FAILURES_BEFORE_PAUSE: u32 = 5;
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// Wakes the loops of targets that just got new deliveries. Cheap to clone.
#[derive(Clone, Default)]
pub struct Wake(Arc<HashMap<String, Arc<Notify>>>);

impl Wake {
    pub fn new(targets: &Targets) -> Wake {
        Wake(Arc::new(targets.all().iter().map(|t| (t.name.clone(), Arc::new(Notify::new()))).collect()))
    }

    /// `notify_one` keeps a permit, so a loop busy right now still sees the wake-up.
    pub fn targets<'a>(&self, names: impl IntoIterator<Item = &'a String>) {
        for name in names {
            if let Some(notify) = self.0.get(name) {
                notify.notify_one();
            }
        }
    }

    pub fn all(&self) {
        self.0.values().for_each(|n| n.notify_one());
    }

    fn of(&self, name: &str) -> Arc<Notify> {
        self.0.get(name).cloned().unwrap_or_default()
    }
}

/// What an internal consumer made of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed {
    /// Done; a short report for the attempt log.
    Done(String),
    /// A failed attempt, retried like any other.
    Failed(String),
    /// Shutdown began: stopped at a safe point; the claim is handed back, the attempt not counted.
    Interrupted,
}

/// Work for a target inside the relay, read from the claimed delivery's event (its account and
/// subject), not from the JSON a webhook would get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Backfill a completed job's lost calls.
    Reconcile { account: String, robot_call_job_id: i64 },
    /// Fetch a new call's detail.
    Enrich { account: String, call_record_id: i64 },
}

impl Task {
    fn of(target: &Target, delivery: &ClaimedDelivery) -> Result<Task, String> {
        let subject = delivery.subject;
        match &target.kind {
            TargetKind::Reconcile { account } => match subject.robot_call_job_id {
                Some(robot_call_job_id) => Ok(Task::Reconcile { account: account.clone(), robot_call_job_id }),
                None => Err("the event names no job".into()),
            },
            TargetKind::Enrich { account } => match subject.call_record_id {
                Some(call_record_id) => Ok(Task::Enrich { account: account.clone(), call_record_id }),
                None => Err("the event names no call".into()),
            },
            TargetKind::Webhook => Err(format!("{} is not an internal target", target.name)),
        }
    }
}

/// Consumes the deliveries of targets inside the relay (reconciliation, enrichment). Long work
/// watches `stop` and ends with `Consumed::Interrupted` at a safe point: it is never cut off in the
/// middle of a transaction.
pub trait InternalConsumer: Send + Sync {
    fn consume<'a>(
        &'a self,
        task: &'a Task,
        stop: &'a watch::Receiver<bool>,
    ) -> Pin<Box<dyn Future<Output = Consumed> + Send + 'a>>;
}

#[derive(Clone)]
pub struct DeliveryWorker {
    store: Store,
    targets: Targets,
    internal: Option<Arc<dyn InternalConsumer>>,
    metrics: Metrics,
    client: reqwest::Client,
    worker_id: String,
    settings: DeliverySettings,
    wake: Wake,
    /// Attempts that finish together, across targets, are recorded in one transaction.
    finished: Arc<GroupCommit<Attempt, Result<(), StoreError>>>,
}

/// What one target's loop keeps between rounds.
struct TargetState {
    target: Target,
    permits: Arc<Semaphore>,
    /// Claimed and not yet recorded (handed back at shutdown if still here).
    in_flight: Mutex<HashSet<i64>>,
    /// Claimed and not yet answered by the receiver: what the next claim tops up.
    unsent: AtomicUsize,
    health: Mutex<Health>,
    next_send: tokio::sync::Mutex<Instant>,
}

/// A target's recent record, for pausing one that keeps failing.
#[derive(Debug, Default)]
struct Health {
    failures_in_a_row: u32,
    /// How many pauses in a row (each failed probe adds one).
    pauses: u32,
    paused_until: Option<Instant>,
}

impl Health {
    fn record(&mut self, delivered: bool, now: Instant) -> Option<Duration> {
        if delivered {
            *self = Health::default();
            return None;
        }
        self.failures_in_a_row += 1;
        // Failures of deliveries that were already in flight when the pause began do not extend it.
        let paused = self.paused_until.is_some_and(|until| now < until);
        if self.failures_in_a_row < FAILURES_BEFORE_PAUSE || paused {
            return None;
        }
        let pause = Duration::from_secs(1u64 << self.pauses.min(16)).min(MAX_PAUSE);
        self.pauses += 1;
        self.paused_until = Some(now + pause);
        Some(pause)
    }
}

impl DeliveryWorker {
    pub fn new(
        store: Store,
        targets: Targets,
        settings: DeliverySettings,
        wake: Wake,
        internal: Option<Arc<dyn InternalConsumer>>,
        metrics: Metrics,
    ) -> DeliveryWorker {
        let client = reqwest::Client::builder()
            // A redirect is a failure: following one would send signed data somewhere unconfigured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tanyi-relay/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds with static settings");
        DeliveryWorker {
            store,
            targets,
            internal,
            metrics,
            client,
            worker_id: worker_id(),
            settings,
            wake,
            finished: Arc::default(),
        }
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Runs one loop per target until `shutdown` turns true, then lets in-flight deliveries
    /// finish (up to their timeout) and hands back what is still claimed.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let mut loops = JoinSet::new();
        for target in self.targets.all().iter().cloned() {
            let worker = self.clone();
            let shutdown = shutdown.clone();
            loops.spawn(async move { worker.run_target(target, shutdown).await });
        }
        while loops.join_next().await.is_some() {}
        tracing::info!(worker = %self.worker_id, "delivery worker stopped");
    }

    async fn run_target(self, target: Target, mut shutdown: watch::Receiver<bool>) {
        let notify = self.wake.of(&target.name);
        let state = Arc::new(TargetState {
            permits: Arc::new(Semaphore::new(target.max_in_flight)),
            in_flight: Mutex::new(HashSet::new()),
            unsent: Default::default(),
            health: Mutex::new(Health::default()),
            next_send: tokio::sync::Mutex::new(Instant::now()),
            target,
        });
        let poll = self.settings.poll_interval;
        let mut sends = JoinSet::new();
        while !*shutdown.borrow() {
            // A finished send keeps its whole task (the size of its future) until it is joined:
            // join every finished one each round, not one per round.
            while sends.try_join_next().is_some() {}
            if let Err(e) = self.claim_and_send(&state, &mut sends, &shutdown).await {
                tracing::warn!(target = %state.target.name, error = %e, "could not claim deliveries; retrying");
            }
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                Some(_) = sends.join_next(), if !sends.is_empty() => {}
                _ = shutdown.changed() => {}
            }
        }
        // Webhooks in flight may finish; internal work is idempotent, so it stops at once and
        // its claims are handed back for the next run.
        let grace = match state.target.kind {
            TargetKind::Webhook => state.target.timeout + Duration::from_secs(1),
            // Internal work stops by itself at its next safe point.
            TargetKind::Reconcile { .. } | TargetKind::Enrich { .. } => Duration::from_secs(10),
        };
        if tokio::time::timeout(grace, async { while sends.join_next().await.is_some() {} }).await.is_err() {
            sends.abort_all();
        }
        let unfinished: Vec<i64> = lock(&state.in_flight).iter().copied().collect();
        if !unfinished.is_empty() {
            if let Err(e) = self.store.release_claims(&unfinished, &self.worker_id, Utc::now()).await {
                tracing::warn!(target = %state.target.name, error = %e, "could not release claims; their leases will expire");
            }
        }
    }

    /// Claims as many due deliveries as the target has free slots and starts sending them.
    /// Returns how many were claimed.
    async fn claim_and_send(
        &self,
        state: &Arc<TargetState>,
        sends: &mut JoinSet<()>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<usize, StoreError> {
        let target = &state.target;
        // Waiting for a slot or being sent; those being recorded no longer count here. But all of
        // them are held in memory, so the whole is capped too: sends that outpace their
        // recording would otherwise pile up, each with its payload.
        let held = state.unsent.load(Ordering::SeqCst);
        let recording = lock(&state.in_flight).len().saturating_sub(held);
        let room = (HELD_WINDOWS * target.max_in_flight).saturating_sub(held + recording);
        let paused_until = lock(&state.health).paused_until;
        let wanted = if let Some(until) = paused_until {
            if Instant::now() < until {
                return Ok(0);
            }
            // Paused target: probe with one delivery until one succeeds.
            target.max_in_flight.saturating_sub(held).min(1)
        } else if target.ordered {
            target.max_in_flight.saturating_sub(held)
        } else {
            // Claims are transactions of this one loop. Claiming up to twice the slots keeps the
            // next deliveries ready while the current ones are sent, and waiting until half a
            // window is wanted lets one claim serve several deliveries.
            let wanted = (2 * target.max_in_flight).saturating_sub(held);
            if held > 0 && wanted < target.max_in_flight.div_ceil(2) {
                return Ok(0);
            }
            wanted
        };
        let lease = lease_of(&self.settings, target);
        let wanted = match target.min_interval {
            Some(interval) => wanted.min(self.sendable_within(state, lease, interval, held).await),
            None => wanted,
        };
        let wanted = wanted.min(room);
        if wanted == 0 {
            return Ok(0);
        }
        let now = Utc::now();
        let lease_until = now + chrono::Duration::from_std(lease).unwrap_or_else(|_| chrono::Duration::seconds(60));
        let claimed = self
            .store
            .claim_deliveries(&target.name, target.ordered, now, lease_until, wanted as i64, &self.worker_id)
            .await?;
        let count = claimed.len();
        for delivery in claimed {
            let held = {
                let mut in_flight = lock(&state.in_flight);
                in_flight.insert(delivery.id);
                in_flight.len()
            };
            self.metrics.set_held(&target.name, held);
            state.unsent.fetch_add(1, Ordering::SeqCst);
            let worker = self.clone();
            let state = state.clone();
            let stop = shutdown.clone();
            sends.spawn(async move {
                // The semaphore queues fairly: deliveries are sent in the order they were claimed.
                match state.permits.clone().acquire_owned().await {
                    Ok(slot) => worker.deliver(&state, &delivery, &stop, slot).await,
                    Err(_) => _ = state.unsent.fetch_sub(1, Ordering::SeqCst),
                }
                let held = {
                    let mut in_flight = lock(&state.in_flight);
                    in_flight.remove(&delivery.id);
                    in_flight.len()
                };
                worker.metrics.set_held(&state.target.name, held);
            });
        }
        Ok(count)
    }

    /// How many more deliveries a rate-limited target can send before a claim made now lapses
    /// (the send's own timeout included), given the rate slots already taken and the deliveries
    /// already held: a claim is never held longer than its lease, or another worker would send it
    /// too.
    async fn sendable_within(&self, state: &TargetState, lease: Duration, interval: Duration, held: usize) -> usize {
        let now = Instant::now();
        let first = (*state.next_send.lock().await).max(now);
        let Some(budget) = lease.checked_sub(state.target.timeout) else { return 0 };
        let ready_by = now + budget;
        if first > ready_by {
            return 0;
        }
        let slots = ((ready_by - first).as_secs_f64() / interval.as_secs_f64()).floor() as usize + 1;
        slots.saturating_sub(held)
    }

    /// Sends one claimed delivery and records the outcome.
    /// `slot` is one of the target's `max_in_flight`: it bounds requests to the receiver, so it is
    /// handed back as soon as the answer is in, before the attempt is recorded.
    async fn deliver(
        &self,
        state: &TargetState,
        delivery: &ClaimedDelivery,
        stop: &watch::Receiver<bool>,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) {
        let target = &state.target;
        if let Some(interval) = target.min_interval {
            let wait = {
                let mut next = state.next_send.lock().await;
                let start = (*next).max(Instant::now());
                *next = start + interval;
                start.saturating_duration_since(Instant::now())
            };
            tokio::time::sleep(wait).await;
        }
        let sent = self.send(target, delivery, stop).await;
        drop(slot);
        state.unsent.fetch_sub(1, Ordering::SeqCst);
        self.wake.targets([&target.name]);
        let now = Utc::now();
        if sent.interrupted {
            // Left by internal work at a safe point: due again at once, for this or another replica.
            if let Err(e) = self.store.release_claims(&[delivery.id], &self.worker_id, now).await {
                tracing::warn!(target = %target.name, error = %e, "could not hand back a claim; its lease will expire");
            }
            return;
        }
        let after = if sent.delivered {
            AfterAttempt::Delivered
        } else {
            let retry_after = sent.retry_after.map(|asked| asked.min(self.settings.retry_after_cap));
            let attempts = u32::try_from(delivery.attempts).unwrap_or(u32::MAX);
            match target.retry.next_attempt(attempts, delivery.retry_from, now, retry_after, random_jitter()) {
                Some(at) => AfterAttempt::RetryAt(at),
                None => AfterAttempt::Dead,
            }
        };
        self.track_health(state, sent.delivered);
        let attempt = Attempt {
            delivery_id: delivery.id,
            attempt: delivery.attempts,
            started_at: sent.started_at,
            latency_ms: sent.latency.as_millis().try_into().unwrap_or(i64::MAX),
            status_code: sent.status.map(|s| i64::from(s.as_u16())),
            error: sent.error.clone(),
            response_snippet: sent.snippet,
            after,
        };
        match &after {
            AfterAttempt::Delivered => {
                tracing::debug!(target = %target.name, event_id = %delivery.event_id, "delivered")
            }
            AfterAttempt::RetryAt(at) => tracing::info!(target = %target.name, event_id = %delivery.event_id,
                attempt = delivery.attempts, status = ?sent.status.map(|s| s.as_u16()), error = ?sent.error, retry_at = %at,
                "delivery failed; will retry"),
            AfterAttempt::Dead => tracing::warn!(target = %target.name, event_id = %delivery.event_id,
                attempt = delivery.attempts, status = ?sent.status.map(|s| s.as_u16()), error = ?sent.error,
                "delivery failed for good; it can be replayed"),
        }
        let (store, worker) = (self.store.clone(), self.worker_id.clone());
        let recorded = self
            .finished
            .submit(attempt, |group| async move {
                let result = store.finish_attempts(&worker, &group, Utc::now()).await;
                vec![result; group.len()]
            })
            .await;
        if let Err(e) = recorded.unwrap_or(Err(StoreError::TaskFailed)) {
            // The lease will run out and the delivery will be sent again: at least once.
            tracing::error!(target = %target.name, event_id = %delivery.event_id, error = %e, "could not record an attempt");
        }
        // Counted once recorded, so that the metrics never run ahead of the database.
        let outcome = match after {
            AfterAttempt::Delivered => DeliveryOutcome::Delivered,
            AfterAttempt::RetryAt(_) => DeliveryOutcome::Failed,
            AfterAttempt::Dead => DeliveryOutcome::Dead,
        };
        self.metrics.delivery(&target.name, outcome, sent.latency);
    }

    async fn send(&self, target: &Target, delivery: &ClaimedDelivery, stop: &watch::Receiver<bool>) -> Sent {
        if target.kind != TargetKind::Webhook {
            return self.consume_internally(target, delivery, stop).await;
        }
        let body = delivery.payload.get().as_bytes().to_vec();
        let timestamp = Utc::now().timestamp();
        let signature = signature_header(&target.keys, &delivery.event_id, timestamp, &body);
        let started_at = Utc::now();
        let clock = Instant::now();
        let mut request = self
            .client
            .post(target.url.clone())
            .timeout(target.timeout)
            .headers(target.headers.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature);
        request = request.body(body);
        match request.send().await {
            Ok(mut response) => {
                let status = response.status();
                let retry_after = matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)
                    .then(|| response.headers().get(RETRY_AFTER).and_then(|v| parse_retry_after(v, Utc::now())))
                    .flatten();
                let mut snippet = Vec::new();
                while snippet.len() < SNIPPET_BYTES {
                    match response.chunk().await {
                        Ok(Some(chunk)) => {
                            snippet.extend_from_slice(&chunk[..chunk.len().min(SNIPPET_BYTES - snippet.len())])
                        }
                        _ => break,
                    }
                }
                Sent {
                    delivered: status.is_success(),
                    interrupted: false,
                    status: Some(status),
                    retry_after,
                    error: (!status.is_success()).then(|| format!("HTTP {}", status.as_u16())),
                    snippet: (!snippet.is_empty()).then(|| String::from_utf8_lossy(&snippet).into_owned()),
                    started_at,
                    latency: clock.elapsed(),
                }
            }
            Err(e) => Sent {
                delivered: false,
                interrupted: false,
                status: None,
                retry_after: None,
                // Without the URL: a target URL may carry a token of the receiver's.
                error: Some(describe_http_error(&e.without_url())),
                snippet: None,
                started_at,
                latency: clock.elapsed(),
            },
        }
    }

    async fn consume_internally(
        &self,
        target: &Target,
        delivery: &ClaimedDelivery,
        stop: &watch::Receiver<bool>,
    ) -> Sent {
        let started_at = Utc::now();
        let clock = Instant::now();
        let result = match (&self.internal, Task::of(target, delivery)) {
            // Within the target's timeout, as for a webhook: its lease is made for that long.
            (Some(consumer), Ok(task)) => {
                match tokio::time::timeout(target.timeout, consumer.consume(&task, stop)).await {
                    Ok(consumed) => consumed,
                    Err(_) => Consumed::Failed(format!("not done within {} s", target.timeout.as_secs())),
                }
            }
            (None, _) => Consumed::Failed("no internal consumer is running".to_owned()),
            (_, Err(problem)) => Consumed::Failed(problem),
        };
        let (delivered, interrupted, error, snippet) = match result {
            Consumed::Done(report) => (true, false, None, Some(report)),
            Consumed::Failed(error) => (false, false, Some(error), None),
            Consumed::Interrupted => (false, true, None, None),
        };
        Sent {
            delivered,
            interrupted,
            status: None,
            retry_after: None,
            error,
            snippet,
            started_at,
            latency: clock.elapsed(),
        }
    }

    fn track_health(&self, state: &TargetState, delivered: bool) {
        let pause = lock(&state.health).record(delivered, Instant::now());
        if let Some(pause) = pause {
            tracing::warn!(target = %state.target.name, pause_ms = pause.as_millis() as u64,
                "target keeps failing; pausing it, then probing with one delivery");
        }
    }
}

struct Sent {
    delivered: bool,
    /// Internal work stopped for shutdown: neither a success nor a failure.
    interrupted: bool,
    status: Option<StatusCode>,
    retry_after: Option<Duration>,
    error: Option<String>,
    snippet: Option<String>,
    started_at: DateTime<Utc>,
    latency: Duration,
}

/// How long a claim of `target` lasts: the configured lease, and never less than two sends (one
/// waited for, one made) plus a margin.
fn lease_of(settings: &DeliverySettings, target: &Target) -> Duration {
    let margin = settings.lease.min(Duration::from_secs(30));
    settings.lease.max(2 * target.timeout + margin)
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn parse_retry_after(value: &HeaderValue, now: DateTime<Utc>) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(text).ok()?.with_timezone(&Utc);
    (at - now).to_std().ok()
}

fn worker_id() -> String {
    let mut random = [0u8; 4];
    let _ = getrandom::getrandom(&mut random);
    format!("{}-{}", std::process::id(), hex::encode(random))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data behind these locks stays consistent even if a holder panicked.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_target_is_paused_longer_after_each_failed_probe_and_resumed_by_a_success() {
        let mut health = Health::default();
        let start = Instant::now();
        let pauses: Vec<Option<Duration>> = (0..5).map(|_| health.record(false, start)).collect();
        assert_eq!(pauses[..4], [None; 4]);
        assert_eq!(pauses[4], Some(Duration::from_secs(1)));
        assert_eq!(health.record(false, start), None, "in-flight failures do not extend a pause");
        let probe = start + Duration::from_secs(1);
        assert_eq!(health.record(false, probe), Some(Duration::from_secs(2)));
        let probe = probe + Duration::from_secs(2);
        assert_eq!(health.record(false, probe), Some(Duration::from_secs(4)));
        assert_eq!(health.record(true, probe), None);
        assert!(health.paused_until.is_none() && health.failures_in_a_row == 0);
        let mut worst = Health { failures_in_a_row: 100, pauses: 30, paused_until: None };
        assert_eq!(worst.record(false, probe), Some(MAX_PAUSE));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_retry_after(&HeaderValue::from_static("120"), now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("Wed, 21 Oct 2015 07:29:00 GMT"), now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon"), now), None);
    }
}
