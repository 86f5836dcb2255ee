//! The inbox: every authenticated callback body, raw, one row per distinct content of one thing.

use chrono::{DateTime, Utc};
use sqlx::{Pool, QueryBuilder};

use super::{Db, Tx};
use crate::domain::InboxStatus;
use crate::store::rows::InboxRow;
use crate::store::{InboxEntry, StoreError};

/// Returns the row id and how often this exact content has now been seen.
pub async fn upsert(tx: &mut Tx, row: &InboxRow<'_>) -> Result<(i64, i64), StoreError> {
    let upserted: (i64, i64) = sqlx::query_as(
        "INSERT INTO inbox (account, data_type, dedup_key, content_sha256, status, error, source, body, \
                            first_seen_at, last_seen_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
         ON CONFLICT (account, dedup_key, content_sha256) DO UPDATE \
         SET last_seen_at = excluded.last_seen_at, times_seen = inbox.times_seen + 1 \
         RETURNING id, times_seen",
    )
    .bind(row.account)
    .bind(row.data_type)
    .bind(row.dedup_key)
    .bind(row.content_sha256)
    .bind(row.status.as_str())
    .bind(row.error)
    .bind(row.source.as_str())
    .bind(row.body)
    .bind(row.received_at)
    .fetch_one(&mut **tx)
    .await?;
    Ok(upserted)
}

pub async fn record_rejected(pool: &Pool<Db>, row: &InboxRow<'_>) -> Result<(), StoreError> {
    let mut tx = pool.begin_with(super::DIALECT.begin_write).await?;
    upsert(&mut tx, row).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn entries(pool: &Pool<Db>, account: &str) -> Result<Vec<InboxEntry>, StoreError> {
    Ok(sqlx::query_as("SELECT * FROM inbox WHERE account = $1 ORDER BY id").bind(account).fetch_all(pool).await?)
}

pub async fn rejected(
    pool: &Pool<Db>,
    account: Option<&str>,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<InboxEntry>, StoreError> {
    let mut query = QueryBuilder::<Db>::new("SELECT * FROM inbox WHERE status = ");
    query.push_bind(InboxStatus::Rejected.as_str()).push(" AND body IS NOT NULL");
    if let Some(account) = account {
        query.push(" AND account = ").push_bind(account);
    }
    if let Some(since) = since {
        query.push(" AND last_seen_at >= ").push_bind(since);
    }
    query.push(" ORDER BY id");
    Ok(query.build_query_as().fetch_all(pool).await?)
}
