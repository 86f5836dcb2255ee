//! Figures about the queues, for metrics and the console.

use chrono::{DateTime, Utc};
use sqlx::Pool;

use super::Db;
use crate::store::{JobSummary, QueueStats, StoreError};

pub async fn queue_stats(pool: &Pool<Db>, now: DateTime<Utc>) -> Result<Vec<QueueStats>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT target, \
            CAST(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END) AS BIGINT) AS pending, \
            CAST(SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END) AS BIGINT) AS dead, \
            MIN(CASE WHEN status = 'pending' AND due_at <= $1 THEN due_at END) AS oldest_due_at \
         FROM deliveries WHERE status <> 'delivered' GROUP BY target ORDER BY target",
    )
    .bind(now)
    .fetch_all(pool)
    .await?)
}

/// The account's jobs as `report_job_summary` sums them up, newest job id first.
pub async fn job_summaries(pool: &Pool<Db>, account: &str, limit: i64) -> Result<Vec<JobSummary>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT robot_call_job_id, CAST(calls AS BIGINT) AS calls, CAST(answered AS BIGINT) AS answered, \
            answer_rate, CAST(grade_a AS BIGINT) AS grade_a, CAST(grade_b AS BIGINT) AS grade_b, \
            CAST(grade_c AS BIGINT) AS grade_c, CAST(grade_d AS BIGINT) AS grade_d, \
            CAST(grade_e AS BIGINT) AS grade_e, CAST(grade_f AS BIGINT) AS grade_f, \
            CAST(grade_other AS BIGINT) AS grade_other, first_call_at, last_call_at, job_completed_at \
         FROM report_job_summary WHERE account = $1 AND robot_call_job_id IS NOT NULL \
         ORDER BY robot_call_job_id DESC LIMIT $2",
    )
    .bind(account)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
