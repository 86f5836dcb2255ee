//! Retention, as the periodic purge and the `purge` command apply it.

use chrono::{DateTime, Utc};

use super::{run, Cutoffs, PurgeReport, Store, StoreError};
use crate::config::RetentionSettings;

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
    /// Removes what retention says is old enough; see `Cutoffs`.
    pub async fn purge(&self, cutoffs: &Cutoffs) -> Result<PurgeReport, StoreError> {
        run!(self, write, retention::purge(cutoffs))
    }
}
