//! The work `serve` does besides answering requests: retention, the metrics' queue figures, and the
//! wake-ups other replicas send.

use std::time::Duration;

use tokio::sync::watch;

use crate::config::RetentionSettings;
use crate::fanout::Targets;
use crate::metrics::Metrics;
use crate::store::{Cutoffs, Store};

/// Applies retention now and then. Several replicas may run it at once; each statement is
/// idempotent, so that only costs a little work.
pub(super) async fn purge_periodically(store: Store, retention: RetentionSettings, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        match store.purge(&Cutoffs::at(&retention, chrono::Utc::now())).await {
            Ok(Some(report)) => tracing::debug!(?report, "retention applied"),
            Ok(None) => tracing::debug!("retention skipped: another replica is applying it"),
            Err(e) => tracing::warn!(error = %e, "retention could not run; trying again later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(retention.interval) => {}
            _ = stop.changed() => {}
        }
    }
}

/// How often the queue figures of `/metrics` are read from the database: one query per interval,
/// however often and by however many the metrics are scraped.
pub(super) const QUEUE_FIGURES_INTERVAL: Duration = Duration::from_secs(5);

/// Keeps the metrics' queue figures current.
pub(super) async fn refresh_queue_figures(
    store: Store,
    metrics: Metrics,
    targets: Targets,
    mut stop: watch::Receiver<bool>,
) {
    let names: Vec<String> = targets.all().iter().map(|t| t.name.clone()).collect();
    while !*stop.borrow() {
        let now = chrono::Utc::now();
        match store.queue_stats(now).await {
            Ok(stats) => metrics.set_queues(&names, &stats, now),
            Err(e) => tracing::debug!(error = %e, "metrics: queue figures not refreshed; the database does not answer"),
        }
        tokio::select! {
            _ = tokio::time::sleep(QUEUE_FIGURES_INTERVAL) => {}
            _ = stop.changed() => {}
        }
    }
}
