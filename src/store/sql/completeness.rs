//! What is known about each job's completeness: the figures of the `report_job_completeness` view
//! (the same ones SQL users read), each target's deliveries of the job's events, what
//! reconciliation listed, and which operator event was last announced.

use chrono::{DateTime, Utc};
use sqlx::{Pool, QueryBuilder};

use super::{outbox, Db, DIALECT};
use crate::domain::{EventType, Outbound};
use crate::store::{JobProgress, Reconciled, StoreError, TargetDeliveries};

/// Records one reconciliation run of a job: what the platform listed replaces the last run's,
/// what was backfilled adds up.
pub async fn record_reconciliation(
    pool: &Pool<Db>,
    account: &str,
    run: &Reconciled,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO job_reconciliations (account, robot_call_job_id, listed, backfilled, rejected, runs, reconciled_at) \
         VALUES ($1, $2, $3, $4, $5, 1, $6) \
         ON CONFLICT (account, robot_call_job_id) DO UPDATE SET listed = excluded.listed, \
            backfilled = job_reconciliations.backfilled + excluded.backfilled, rejected = excluded.rejected, \
            runs = job_reconciliations.runs + 1, reconciled_at = excluded.reconciled_at",
    )
    .bind(account)
    .bind(run.robot_call_job_id)
    .bind(run.listed as i64)
    .bind(run.backfilled as i64)
    .bind(run.rejected as i64)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// The account's jobs, newest job id first, or the one job asked for.
pub async fn progress(
    pool: &Pool<Db>,
    account: &str,
    robot_call_job_id: Option<i64>,
    limit: i64,
) -> Result<Vec<JobProgress>, StoreError> {
    let mut query = QueryBuilder::<Db>::new(
        "SELECT account, robot_call_job_id, completion_received_at, calls_pushed, calls_backfilled, calls_listed, \
            calls_missing, calls_rejected, reconciliation_runs, reconciled_at, announced, announced_at \
         FROM report_job_completeness WHERE account = ",
    );
    query.push_bind(account);
    if let Some(job) = robot_call_job_id {
        query.push(" AND robot_call_job_id = ").push_bind(job);
    }
    query.push(" ORDER BY robot_call_job_id DESC LIMIT ").push_bind(limit);
    let mut jobs: Vec<JobProgress> = query.build_query_as().fetch_all(pool).await?;
    if jobs.is_empty() {
        return Ok(jobs);
    }
    let mut deliveries = QueryBuilder::<Db>::new(
        "SELECT e.robot_call_job_id, d.target, \
            SUM(CASE WHEN d.status = 'delivered' THEN 1 ELSE 0 END), \
            SUM(CASE WHEN d.status = 'pending' THEN 1 ELSE 0 END), \
            SUM(CASE WHEN d.status = 'dead' THEN 1 ELSE 0 END) \
         FROM events e JOIN deliveries d ON d.event_id = e.id WHERE e.account = ",
    );
    deliveries.push_bind(account).push(" AND e.robot_call_job_id IN (");
    let mut ids = deliveries.separated(", ");
    for job in &jobs {
        ids.push_bind(job.robot_call_job_id);
    }
    deliveries.push(") AND e.type NOT IN (");
    let mut operator = deliveries.separated(", ");
    for event_type in EventType::ALL.into_iter().filter(|t| t.is_operator()) {
        operator.push_bind(event_type.as_str());
    }
    deliveries.push(") GROUP BY e.robot_call_job_id, d.target ORDER BY d.target");
    let rows: Vec<(i64, String, i64, i64, i64)> = deliveries.build_query_as().fetch_all(pool).await?;
    for (job_id, target, delivered, pending, dead) in rows {
        if let Some(job) = jobs.iter_mut().find(|j| j.robot_call_job_id == job_id) {
            job.deliveries.push(TargetDeliveries { target, delivered, pending, dead });
        }
    }
    Ok(jobs)
}

/// Jobs of the account that calls were received for since `since` but whose completion never
/// arrived: periodic reconciliation covers them too (their completion callback may be the one
/// that was lost).
pub async fn without_completion(
    pool: &Pool<Db>,
    account: &str,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<i64>, StoreError> {
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT DISTINCT c.robot_call_job_id FROM call_records c \
         WHERE c.account = $1 AND c.robot_call_job_id IS NOT NULL AND c.received_at >= $2 \
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.account = c.account \
               AND j.robot_call_job_id = c.robot_call_job_id AND j.status = 'COMPLETED') \
         ORDER BY c.robot_call_job_id DESC LIMIT $3",
    )
    .bind(account)
    .bind(since)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Notes that `announced` was the job's last operator event, and writes `outbound` (its event,
/// when some target wants it) in the same transaction: a crash between the two cannot announce
/// twice or not at all, and of two replicas announcing the same thing at once only the first
/// does (the second finds it recorded). `false`: it already was.
pub async fn announce(
    pool: &Pool<Db>,
    account: &str,
    robot_call_job_id: i64,
    announced: EventType,
    outbound: Option<&Outbound>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin_with(DIALECT.begin_write).await?;
    let recorded = sqlx::query(
        "INSERT INTO job_announcements (account, robot_call_job_id, announced, announced_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (account, robot_call_job_id) DO UPDATE SET announced = excluded.announced, \
            announced_at = excluded.announced_at WHERE job_announcements.announced <> excluded.announced",
    )
    .bind(account)
    .bind(robot_call_job_id)
    .bind(announced.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if recorded == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    if let Some(outbound) = outbound {
        outbox::insert(&mut tx, None, outbound).await?;
    }
    tx.commit().await?;
    Ok(true)
}
