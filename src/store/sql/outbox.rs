//! The outbox: events written in the transaction of the data they announce, one delivery per
//! target, the attempts made, and the leases by which workers claim deliveries.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Pool, QueryBuilder};

use super::{Db, Tx, DIALECT};
use crate::domain::{DeliveryStatus, Outbound};
use crate::store::rows::ClaimedRow;
use crate::store::{
    AfterAttempt, Attempt, AttemptRow, ClaimedDelivery, DeliveryFilter, DeliveryRow, EventFilter, EventRow, StoreError,
};

/// The event and one delivery per target, in the caller's transaction.
pub async fn insert(tx: &mut Tx, inbox_id: Option<i64>, outbound: &Outbound) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (id, account, type, payload, inbox_id, created_at, call_record_id, robot_call_job_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&outbound.id)
    .bind(&outbound.account)
    .bind(outbound.event_type.as_str())
    .bind(Json(&outbound.payload))
    .bind(inbox_id)
    .bind(outbound.created_at)
    .bind(outbound.subject.call_record_id)
    .bind(outbound.subject.robot_call_job_id)
    .execute(&mut **tx)
    .await?;
    let mut insert = QueryBuilder::<Db>::new(
        "INSERT INTO deliveries (event_id, target, status, due_at, retry_from, created_at, updated_at) ",
    );
    insert.push_values(&outbound.targets, |mut row, target| {
        row.push_bind(&outbound.id)
            .push_bind(target)
            .push_bind(DeliveryStatus::Pending.as_str())
            .push_bind(outbound.created_at)
            .push_bind(outbound.created_at)
            .push_bind(outbound.created_at)
            .push_bind(outbound.created_at);
    });
    insert.build().execute(&mut **tx).await?;
    notify(tx).await
}

/// Wakes the other replicas' workers when the transaction commits.
async fn notify(tx: &mut Tx) -> Result<(), StoreError> {
    if let Some(notify) = DIALECT.notify {
        sqlx::query(notify).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Pushes the claimed rows' `due_at` to the lease's end and hands them out with their event.
const CLAIM: &str = "UPDATE deliveries SET due_at = $3, claimed_by = $4, attempts = attempts + 1, updated_at = $2 \
     WHERE id IN ({candidates}) AND due_at <= $2 \
     RETURNING id, event_id, attempts, retry_from, \
        (SELECT payload FROM events WHERE events.id = deliveries.event_id) AS payload, \
        (SELECT account FROM events WHERE events.id = deliveries.event_id) AS account, \
        (SELECT call_record_id FROM events WHERE events.id = deliveries.event_id) AS call_record_id, \
        (SELECT robot_call_job_id FROM events WHERE events.id = deliveries.event_id) AS robot_call_job_id";

static CLAIM_DUE: LazyLock<String> = LazyLock::new(|| {
    let candidates = format!(
        "SELECT id FROM deliveries WHERE target = $1 AND status = 'pending' AND due_at <= $2 \
         ORDER BY due_at, id LIMIT $5 {}",
        DIALECT.skip_locked
    );
    CLAIM.replace("{candidates}", &candidates)
});

/// An ordered target only ever hands out its oldest pending delivery, and only when no one holds it.
static CLAIM_HEAD: LazyLock<String> = LazyLock::new(|| {
    let candidates = format!(
        "SELECT id FROM deliveries WHERE target = $1 AND status = 'pending' ORDER BY id LIMIT $5 {}",
        DIALECT.lock_head
    );
    CLAIM.replace("{candidates}", &candidates)
});

/// Claims due deliveries of `target` by pushing their `due_at` to `lease_until`: a worker that
/// dies leaves them to become due again.
pub async fn claim(
    pool: &Pool<Db>,
    target: &str,
    ordered: bool,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
    worker: &str,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let sql = if ordered { CLAIM_HEAD.as_str() } else { CLAIM_DUE.as_str() };
    claim_with(pool, sql, target, ordered, now, lease_until, limit, worker).await
}

/// Runs a claim statement (`$1` target, `$2` now, `$3` lease end, `$4` worker, `$5` limit) and
/// hands the claimed deliveries out in id order; an ordered target's claim takes one at most.
/// Postgres's own claim statements (`postgres/queue.rs`) run through this too.
#[allow(clippy::too_many_arguments)]
pub async fn claim_with(
    pool: &Pool<Db>,
    sql: &str,
    target: &str,
    ordered: bool,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
    worker: &str,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let limit = if ordered { 1 } else { limit };
    let claimed: Vec<ClaimedRow> =
        sqlx::query_as(sql).bind(target).bind(now).bind(lease_until).bind(worker).bind(limit).fetch_all(pool).await?;
    let mut claimed: Vec<ClaimedDelivery> = claimed.into_iter().map(ClaimedDelivery::from).collect();
    claimed.sort_by_key(|d| d.id);
    Ok(claimed)
}

/// Records attempts and moves their deliveries on, unless another worker has claimed one since (a
/// lease that ran out): then only its attempt is recorded. One transaction for all: attempts that
/// finish together share a commit.
pub async fn finish(pool: &Pool<Db>, worker: &str, attempts: &[Attempt], now: DateTime<Utc>) -> Result<(), StoreError> {
    let mut tx = pool.begin_with(DIALECT.begin_write).await?;
    for attempt in attempts {
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, attempt, worker, started_at, latency_ms, status_code, \
                error, response_snippet) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(attempt.delivery_id)
        .bind(attempt.attempt)
        .bind(worker)
        .bind(attempt.started_at)
        .bind(attempt.latency_ms)
        .bind(attempt.status_code)
        .bind(attempt.error.as_deref())
        .bind(attempt.response_snippet.as_deref())
        .execute(&mut *tx)
        .await?;
        let (status, due_at, delivered_at) = match attempt.after {
            AfterAttempt::Delivered => (DeliveryStatus::Delivered, now, Some(now)),
            AfterAttempt::RetryAt(at) => (DeliveryStatus::Pending, at, None),
            AfterAttempt::Dead => (DeliveryStatus::Dead, now, None),
        };
        sqlx::query(
            "UPDATE deliveries SET status = $1, due_at = $2, delivered_at = $3, last_status_code = $4, \
                last_error = $5, claimed_by = NULL, updated_at = $6 \
             WHERE id = $7 AND claimed_by = $8 AND attempts = $9 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(due_at)
        .bind(delivered_at)
        .bind(attempt.status_code)
        .bind(attempt.error.as_deref())
        .bind(now)
        .bind(attempt.delivery_id)
        .bind(worker)
        .bind(attempt.attempt)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Hands claimed deliveries back (shutdown): due now, the attempt not counted.
pub async fn release(pool: &Pool<Db>, ids: &[i64], worker: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    for id in ids {
        sqlx::query(
            "UPDATE deliveries SET due_at = $1, claimed_by = NULL, attempts = attempts - 1, updated_at = $1 \
             WHERE id = $2 AND claimed_by = $3 AND status = 'pending'",
        )
        .bind(now)
        .bind(id)
        .bind(worker)
        .execute(pool)
        .await?;
    }
    Ok(())
}

pub async fn deliveries(pool: &Pool<Db>, filter: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
    let mut query = QueryBuilder::<Db>::new(
        "SELECT d.id, d.event_id, e.type AS event_type, e.account, d.target, d.status, d.attempts, d.due_at, \
            d.last_status_code, d.last_error, d.created_at, d.updated_at, d.delivered_at \
         FROM deliveries d JOIN events e ON e.id = d.event_id WHERE 1 = 1",
    );
    if let Some(id) = filter.id {
        query.push(" AND d.id = ").push_bind(id);
    }
    if let Some(target) = &filter.target {
        query.push(" AND d.target = ").push_bind(target);
    }
    if let Some(status) = filter.status {
        query.push(" AND d.status = ").push_bind(status.as_str());
    }
    if let Some(event_type) = filter.event_type {
        query.push(" AND e.type = ").push_bind(event_type.as_str());
    }
    if let Some(event_id) = &filter.event_id {
        query.push(" AND d.event_id = ").push_bind(event_id);
    }
    if let Some(since) = filter.since {
        query.push(" AND d.created_at >= ").push_bind(since);
    }
    query.push(" ORDER BY d.id LIMIT ").push_bind(filter.limit.unwrap_or(100));
    Ok(query.build_query_as().fetch_all(pool).await?)
}

pub async fn attempts(pool: &Pool<Db>, delivery_id: i64) -> Result<Vec<AttemptRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT attempt, worker, started_at, latency_ms, status_code, error, response_snippet \
         FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id",
    )
    .bind(delivery_id)
    .fetch_all(pool)
    .await?)
}

pub async fn events(pool: &Pool<Db>, filter: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
    let mut query =
        QueryBuilder::<Db>::new("SELECT id, account, type AS event_type, created_at, payload FROM events WHERE 1 = 1");
    if let Some(id) = &filter.id {
        query.push(" AND id = ").push_bind(id);
    }
    if let Some(account) = &filter.account {
        query.push(" AND account = ").push_bind(account);
    }
    if let Some(event_type) = filter.event_type {
        query.push(" AND type = ").push_bind(event_type.as_str());
    }
    if let Some(since) = filter.since {
        query.push(" AND created_at >= ").push_bind(since);
    }
    query.push(" ORDER BY created_at, id LIMIT ").push_bind(filter.limit.unwrap_or(100));
    Ok(query.build_query_as().fetch_all(pool).await?)
}

/// Makes deliveries due again with a fresh attempt budget and retry window. Only finished ones
/// (delivered or dead) are touched: a replay never disturbs one in flight.
pub async fn replay(pool: &Pool<Db>, filter: &DeliveryFilter, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let mut query = QueryBuilder::<Db>::new("UPDATE deliveries SET status = 'pending', attempts = 0, due_at = ");
    query.push_bind(now).push(", retry_from = ").push_bind(now).push(", updated_at = ").push_bind(now);
    query.push(", claimed_by = NULL WHERE status <> 'pending'");
    if let Some(target) = &filter.target {
        query.push(" AND target = ").push_bind(target);
    }
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(event_id) = &filter.event_id {
        query.push(" AND event_id = ").push_bind(event_id);
    }
    if let Some(since) = filter.since {
        query.push(" AND created_at >= ").push_bind(since);
    }
    if let Some(id) = filter.id {
        query.push(" AND id = ").push_bind(id);
    }
    let mut tx = pool.begin_with(DIALECT.begin_write).await?;
    let done = query.build().execute(&mut *tx).await?;
    if done.rows_affected() > 0 {
        notify(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(done.rows_affected())
}
