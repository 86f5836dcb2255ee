//! Figures about the queues, for metrics and the console.

use chrono::{DateTime, Utc};
use sqlx::Pool;

use super::Db;
use crate::store::{QueueStats, StoreError};

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
