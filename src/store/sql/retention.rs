//! Retention: what is old enough goes, in batches of `PURGE_BATCH` rows, each its own short
//! transaction, so that a purge never holds SQLite's one writer (or Postgres row locks) for long.
//! On Postgres one replica purges at a time: a run takes a session lock (keyed on the schema)
//! first, and a replica that does not get it skips that round.

use sqlx::Pool;

use super::{Db, DIALECT};
use crate::store::{Cutoffs, PurgeReport, StoreError, PURGE_BATCH};

const RAW_BODIES: &str = "UPDATE inbox SET body = NULL WHERE id IN \
     (SELECT id FROM inbox WHERE body IS NOT NULL AND last_seen_at < $1 LIMIT $2)";
const TRANSCRIPTS: &str = "DELETE FROM call_turns WHERE (account, call_record_id, seq) IN \
     (SELECT t.account, t.call_record_id, t.seq FROM call_turns t \
      JOIN call_records c ON c.account = t.account AND c.call_record_id = t.call_record_id \
      WHERE c.received_at < $1 LIMIT $2)";
/// The same batch of delivered deliveries, first their attempts, then themselves, in one
/// transaction (the second statement sees the first's batch: no new delivery is ever delivered
/// and old).
const ATTEMPTS: &str = "DELETE FROM delivery_attempts WHERE delivery_id IN \
     (SELECT id FROM deliveries WHERE status = 'delivered' AND updated_at < $1 ORDER BY id LIMIT $2)";
const DELIVERIES: &str = "DELETE FROM deliveries WHERE id IN \
     (SELECT id FROM deliveries WHERE status = 'delivered' AND updated_at < $1 ORDER BY id LIMIT $2)";
const EVENTS: &str = "DELETE FROM events WHERE id IN \
     (SELECT id FROM events WHERE created_at < $1 \
      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id) LIMIT $2)";

/// `None`: another replica is purging now.
pub async fn purge(pool: &Pool<Db>, cutoffs: &Cutoffs) -> Result<Option<PurgeReport>, StoreError> {
    let mut lock = None;
    if let Some((try_lock, _)) = DIALECT.purge_lock {
        let mut connection = pool.acquire().await?;
        let locked: bool = sqlx::query_scalar(try_lock).fetch_one(&mut *connection).await?;
        if !locked {
            return Ok(None);
        }
        lock = Some(connection);
    }
    let report = purge_batches(pool, cutoffs).await;
    if let (Some((_, unlock)), Some(mut connection)) = (DIALECT.purge_lock, lock) {
        // A lock that cannot be released goes with its connection, which is then closed.
        if sqlx::query(unlock).execute(&mut *connection).await.is_err() {
            let _ = connection.detach();
        }
    }
    report.map(Some)
}

async fn purge_batches(pool: &Pool<Db>, cutoffs: &Cutoffs) -> Result<PurgeReport, StoreError> {
    let mut report = PurgeReport::default();
    if let Some(before) = cutoffs.raw_bodies_before {
        report.raw_bodies_dropped = in_batches(pool, RAW_BODIES, before).await?;
    }
    if let Some(before) = cutoffs.transcripts_before {
        report.transcript_turns_deleted = in_batches(pool, TRANSCRIPTS, before).await?;
    }
    if let Some(before) = cutoffs.deliveries_before {
        loop {
            let mut tx = pool.begin_with(DIALECT.begin_write).await?;
            sqlx::query(ATTEMPTS).bind(before).bind(PURGE_BATCH).execute(&mut *tx).await?;
            let done = sqlx::query(DELIVERIES).bind(before).bind(PURGE_BATCH).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            report.deliveries_deleted += done;
            if (done as i64) < PURGE_BATCH {
                break;
            }
        }
        report.events_deleted = in_batches(pool, EVENTS, before).await?;
    }
    Ok(report)
}

/// Runs `statement` (which affects at most `$2` rows older than `$1`) until it affects fewer.
async fn in_batches(
    pool: &Pool<Db>,
    statement: &str,
    before: chrono::DateTime<chrono::Utc>,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let done = sqlx::query(statement).bind(before).bind(PURGE_BATCH).execute(pool).await?.rows_affected();
        total += done;
        if (done as i64) < PURGE_BATCH {
            return Ok(total);
        }
    }
}
