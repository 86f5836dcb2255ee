//! Retention: what is old enough goes.

use sqlx::Pool;

use super::{Db, DIALECT};
use crate::store::{Cutoffs, PurgeReport, StoreError};

pub async fn purge(pool: &Pool<Db>, cutoffs: &Cutoffs) -> Result<PurgeReport, StoreError> {
    let mut report = PurgeReport::default();
    if let Some(before) = cutoffs.raw_bodies_before {
        let done = sqlx::query("UPDATE inbox SET body = NULL WHERE body IS NOT NULL AND last_seen_at < $1")
            .bind(before)
            .execute(pool)
            .await?;
        report.raw_bodies_dropped = done.rows_affected();
    }
    if let Some(before) = cutoffs.transcripts_before {
        let done = sqlx::query(
            "DELETE FROM call_turns WHERE (account, call_record_id) IN \
               (SELECT account, call_record_id FROM call_records WHERE received_at < $1)",
        )
        .bind(before)
        .execute(pool)
        .await?;
        report.transcript_turns_deleted = done.rows_affected();
    }
    if let Some(before) = cutoffs.deliveries_before {
        let mut tx = pool.begin_with(DIALECT.begin_write).await?;
        sqlx::query(
            "DELETE FROM delivery_attempts WHERE delivery_id IN \
               (SELECT id FROM deliveries WHERE status = 'delivered' AND updated_at < $1)",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM deliveries WHERE status = 'delivered' AND updated_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?;
        report.deliveries_deleted = done.rows_affected();
        let done = sqlx::query(
            "DELETE FROM events WHERE created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?;
        report.events_deleted = done.rows_affected();
        tx.commit().await?;
    }
    Ok(report)
}
