//! The delivery queue's two hot statements, in the form Postgres does best: a claim that reads
//! each claimed delivery's event once (a join on the claimed rows, where the shared SQL of
//! `sql/outbox.rs` reads it in four subqueries, since SQLite has no data-modifying `WITH`), and
//! the attempts of a round recorded with two statements whatever their number, the values bound
//! as arrays (the shared SQL runs two statements per attempt).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::DIALECT;
use crate::domain::DeliveryStatus;
use crate::store::{AfterAttempt, Attempt, ClaimedDelivery, StoreError};

/// Pushes the claimed rows' `due_at` to the lease's end and hands them out with their event.
fn claim_sql(candidates: &str) -> String {
    format!(
        "WITH claimed AS ( \
            UPDATE deliveries SET due_at = $3, claimed_by = $4, attempts = attempts + 1, updated_at = $2 \
            WHERE id IN ({candidates}) AND due_at <= $2 \
            RETURNING id, event_id, attempts, retry_from) \
         SELECT c.id, c.event_id, c.attempts, c.retry_from, e.payload, e.account, e.call_record_id, \
            e.robot_call_job_id \
         FROM claimed c JOIN events e ON e.id = c.event_id"
    )
}

static CLAIM_DUE: LazyLock<String> = LazyLock::new(|| {
    claim_sql(&format!(
        "SELECT id FROM deliveries WHERE target = $1 AND status = 'pending' AND due_at <= $2 \
         ORDER BY due_at, id LIMIT $5 {}",
        DIALECT.skip_locked
    ))
});

/// An ordered target only ever hands out its oldest pending delivery, and only when no one holds it.
static CLAIM_HEAD: LazyLock<String> = LazyLock::new(|| {
    claim_sql(&format!(
        "SELECT id FROM deliveries WHERE target = $1 AND status = 'pending' ORDER BY id LIMIT $5 {}",
        DIALECT.lock_head
    ))
});

/// As `sql/outbox.rs`'s `claim`, with the same answer.
pub async fn claim(
    pool: &PgPool,
    target: &str,
    ordered: bool,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
    worker: &str,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let sql = if ordered { CLAIM_HEAD.as_str() } else { CLAIM_DUE.as_str() };
    super::outbox::claim_with(pool, sql, target, ordered, now, lease_until, limit, worker).await
}

/// As `sql/outbox.rs`'s `finish`: every attempt recorded, and each delivery moved on unless
/// another worker claimed it since; one transaction, two statements.
pub async fn finish(pool: &PgPool, worker: &str, attempts: &[Attempt], now: DateTime<Utc>) -> Result<(), StoreError> {
    if attempts.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin_with(DIALECT.begin_write).await?;
    sqlx::query(
        "INSERT INTO delivery_attempts (delivery_id, attempt, worker, started_at, latency_ms, status_code, error, \
            response_snippet) \
         SELECT delivery_id, attempt, $1, started_at, latency_ms, status_code, error, response_snippet \
         FROM UNNEST($2::int8[], $3::int8[], $4::timestamptz[], $5::int8[], $6::int8[], $7::text[], $8::text[]) \
              AS u(delivery_id, attempt, started_at, latency_ms, status_code, error, response_snippet)",
    )
    .bind(worker)
    .bind(attempts.iter().map(|a| a.delivery_id).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.attempt).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.started_at).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.latency_ms).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.status_code).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.error.as_deref()).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.response_snippet.as_deref()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    let after = |a: &Attempt| match a.after {
        AfterAttempt::Delivered => (DeliveryStatus::Delivered, now, Some(now)),
        AfterAttempt::RetryAt(at) => (DeliveryStatus::Pending, at, None),
        AfterAttempt::Dead => (DeliveryStatus::Dead, now, None),
    };
    sqlx::query(
        "UPDATE deliveries d SET status = u.status, due_at = u.due_at, delivered_at = u.delivered_at, \
            last_status_code = u.status_code, last_error = u.error, claimed_by = NULL, updated_at = $1 \
         FROM UNNEST($2::int8[], $3::int8[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::int8[], \
                     $8::text[]) AS u(id, attempt, status, due_at, delivered_at, status_code, error) \
         WHERE d.id = u.id AND d.claimed_by = $9 AND d.attempts = u.attempt AND d.status = 'pending'",
    )
    .bind(now)
    .bind(attempts.iter().map(|a| a.delivery_id).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.attempt).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| after(a).0.as_str()).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| after(a).1).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| after(a).2).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.status_code).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.error.as_deref()).collect::<Vec<_>>())
    .bind(worker)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
