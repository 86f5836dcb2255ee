//! Retention, as the periodic purge and the `purge` command apply it.

use chrono::{DateTime, Utc};

use super::{run, Cutoffs, PurgeReport, Store, StoreError};
use crate::config::RetentionSettings;

/// Rows a purge removes per transaction.
pub const PURGE_BATCH: i64 = 1000;

impl Cutoffs {
    /// The cutoffs the settings give at `now` (a day count of 0 keeps everything).
    pub fn at(settings: &RetentionSettings, now: DateTime<Utc>) -> Cutoffs {
        let before = |days: u32| (days > 0).then(|| now - chrono::Duration::days(i64::from(days)));
        Cutoffs {
            raw_bodies_before: before(settings.raw_body_days),
            transcripts_before: before(settings.transcript_days),
            deliveries_before: before(settings.delivery_days),
        }
    }
}

impl Store {
    /// Removes what retention says is old enough (see `Cutoffs`), in batches. `None`: another
    /// replica is purging right now (Postgres), so this one did nothing.
    pub async fn purge(&self, cutoffs: &Cutoffs) -> Result<Option<PurgeReport>, StoreError> {
        run!(self, write, retention::purge(cutoffs))
    }
}
