//! The write path of a callback, as the application calls it.

use chrono::{DateTime, SubsecRound, Utc};
use sha2::{Digest, Sha256};

use super::rows::InboxRow;
use super::{postgres, run, Backend, Store, StoreError};
use crate::domain::{Announcements, InboxStatus, Ingested, Outbound, Source};
use crate::platform::callback::Callback;

/// An authenticated, parsed callback to store, with the events its outcome may announce.
pub struct PendingCallback {
    pub account: String,
    pub body: Vec<u8>,
    pub source: Source,
    pub received_at: DateTime<Utc>,
    pub callback: Callback,
    pub announcements: Announcements,
}

/// A stored (or not) callback, handed back with its outcome and the event written, if any.
pub type Recorded = (Callback, Result<(Ingested, Option<Outbound>), StoreError>);

/// Now, as both backends store it: Postgres keeps microseconds, so truncate, and both read back
/// the same instant.
pub fn storable_now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

impl Store {
    /// Stores one callback and returns after its commit: the raw inbox row, the normalized rows,
    /// and the event its outcome announces with one delivery per target, in one transaction. It
    /// shares the transaction with callbacks that arrive meanwhile: on SQLite (one writer) in a
    /// savepoint each, on Postgres with one statement per table for the group and several groups
    /// in flight (`postgres/batch.rs`); a callback that fails there is written again alone.
    pub async fn store_callback(&self, pending: PendingCallback) -> Recorded {
        match &self.backend {
            Backend::Postgres(pg) => {
                let pool = pg.pool.clone();
                let callback = pending.callback.clone();
                let group =
                    pg.groups.submit(pending, |group| async move { postgres::batch::record(&pool, group).await });
                group.await.unwrap_or((callback, Err(StoreError::TaskFailed)))
            }
            Backend::Sqlite(lite) => {
                let writer = lite.writer.clone();
                let callback = pending.callback.clone();
                let group = lite
                    .groups
                    .submit(pending, |group| async move { super::sqlite::intake::record(&writer, group).await });
                group.await.unwrap_or((callback, Err(StoreError::TaskFailed)))
            }
        }
    }

    /// Stores several callbacks in one transaction (one commit for all), each in a savepoint, so
    /// that one that fails is undone and reported alone. Outcomes come back in order.
    pub async fn record_callbacks(&self, pending: Vec<PendingCallback>) -> Vec<Recorded> {
        run!(self, write, intake::record(pending))
    }

    /// Keeps the raw body of an authenticated callback that could not be parsed, so that an
    /// operator can see it and reprocess it after a fix.
    pub async fn record_rejected(
        &self,
        account: &str,
        body: &[u8],
        source: Source,
        reason: &str,
    ) -> Result<(), StoreError> {
        let hash = hex::encode(Sha256::digest(body));
        let dedup_key = format!("rejected:{hash}");
        let row = InboxRow {
            account,
            body,
            source,
            received_at: storable_now(),
            data_type: None,
            dedup_key: &dedup_key,
            content_sha256: &hash,
            status: InboxStatus::Rejected,
            error: Some(reason),
        };
        run!(self, write, inbox::record_rejected(&row))
    }
}
