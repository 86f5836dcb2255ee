//! Call records and their transcripts.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Pool, QueryBuilder};

use super::{outbox, Db, Tx, DIALECT, ROWS_PER_INSERT};
use crate::domain::{Ingested, Outbound, Source};
use crate::platform::callback::CallRecord;
use crate::store::{CallFilter, CallListRow, Enrichment, StoreError, StoredCall, StoredTurn};

/// Inserts or updates a call and replaces its transcript; `Changed` when it was stored before.
pub async fn upsert(
    tx: &mut Tx,
    account: &str,
    source: Source,
    received_at: DateTime<Utc>,
    inbox_id: i64,
    call: &CallRecord,
) -> Result<Ingested, StoreError> {
    let (revision,): (i64,) = sqlx::query_as(concat!(
        "INSERT INTO call_records (account, call_record_id, tenant_id, robot_call_job_id, dialog_flow_id, \
            called_phone_number, result_status, intent_level, intent_grade, customer_concern, \
            full_audio_url, customer_audio_url, analysis_basis, start_time, end_time, chat_duration, \
            chat_round, attributes, properties, extra, source, inbox_id, received_at, updated_at, start_local) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
            $20, $21, $22, $23, $23, $24) ",
        crate::store::call_upsert_set!(),
        "RETURNING revision"
    ))
    .bind(account)
    .bind(call.call_record_id)
    .bind(call.tenant_id)
    .bind(call.robot_call_job_id)
    .bind(call.dialog_flow_id)
    .bind(call.called_phone_number.as_deref())
    .bind(call.result_status.as_deref())
    .bind(call.intent_level.as_deref())
    .bind(call.intent_grade())
    .bind(Json(&call.customer_concern))
    .bind(call.full_audio_url.as_deref())
    .bind(call.customer_audio_url.as_deref())
    .bind(call.analysis_basis.as_deref())
    .bind(call.start_time)
    .bind(call.end_time)
    .bind(call.chat_duration)
    .bind(call.chat_round)
    .bind(Json(&call.attributes))
    .bind(Json(&call.properties))
    .bind(Json(&call.extra))
    .bind(source.as_str())
    .bind(inbox_id)
    .bind(received_at)
    .bind(call.start_local.as_deref())
    .fetch_one(&mut **tx)
    .await?;
    if revision > 1 {
        sqlx::query("DELETE FROM call_turns WHERE account = $1 AND call_record_id = $2")
            .bind(account)
            .bind(call.call_record_id)
            .execute(&mut **tx)
            .await?;
    }
    let numbered: Vec<_> = call.turns.iter().enumerate().collect();
    for chunk in numbered.chunks(ROWS_PER_INSERT) {
        let mut insert = QueryBuilder::<Db>::new(
            "INSERT INTO call_turns (account, call_record_id, seq, call_detail_id, speaker, text, extra) ",
        );
        insert.push_values(chunk, |mut row, (seq, turn)| {
            row.push_bind(account)
                .push_bind(call.call_record_id)
                .push_bind(*seq as i64)
                .push_bind(turn.call_detail_id.map(|id| id.get()))
                .push_bind(turn.speaker.as_deref())
                .push_bind(turn.text.as_deref())
                .push_bind(Json(&turn.extra));
        });
        insert.build().execute(&mut **tx).await?;
    }
    Ok(if revision > 1 { Ingested::Changed } else { Ingested::Created })
}

pub async fn call_record(
    pool: &Pool<Db>,
    account: &str,
    call_record_id: i64,
) -> Result<Option<StoredCall>, StoreError> {
    Ok(sqlx::query_as("SELECT * FROM call_records WHERE account = $1 AND call_record_id = $2")
        .bind(account)
        .bind(call_record_id)
        .fetch_optional(pool)
        .await?)
}

pub async fn turns(pool: &Pool<Db>, account: &str, call_record_id: i64) -> Result<Vec<StoredTurn>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT seq, call_detail_id, speaker, text, extra FROM call_turns \
         WHERE account = $1 AND call_record_id = $2 ORDER BY seq",
    )
    .bind(account)
    .bind(call_record_id)
    .fetch_all(pool)
    .await?)
}

pub async fn existing_ids(pool: &Pool<Db>, account: &str, ids: &[i64]) -> Result<HashSet<i64>, StoreError> {
    let mut found = HashSet::new();
    for chunk in ids.chunks(ROWS_PER_INSERT) {
        let mut query = QueryBuilder::<Db>::new("SELECT call_record_id FROM call_records WHERE account = ");
        query.push_bind(account).push(" AND call_record_id IN (");
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        query.push(")");
        let rows: Vec<(i64,)> = query.build_query_as().fetch_all(pool).await?;
        found.extend(rows.into_iter().map(|(id,)| id));
    }
    Ok(found)
}

/// Stores what `callDetail` adds. When the corrected intent level changes, `announce` (the
/// `call.updated` event) is written in the same transaction and returned.
pub async fn enrich(
    pool: &Pool<Db>,
    account: &str,
    call_record_id: i64,
    enrichment: &Enrichment,
    now: DateTime<Utc>,
    announce: Option<Outbound>,
) -> Result<Option<Outbound>, StoreError> {
    let mut tx = pool.begin_with(DIALECT.begin_write).await?;
    let previous: Option<(Option<String>, i64)> = sqlx::query_as(
        "SELECT real_intent_level, inbox_id FROM call_records WHERE account = $1 AND call_record_id = $2",
    )
    .bind(account)
    .bind(call_record_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((previous_level, inbox_id)) = previous else {
        // Ended now rather than when the connection is next used: an open transaction holds locks.
        tx.rollback().await?;
        return Err(StoreError::Missing(format!("call {call_record_id}")));
    };
    sqlx::query(
        "UPDATE call_records SET intent_level_name = $1, real_intent_level = $2, real_intent_level_name = $3, \
            intent_level_tag_id = $4, customer = $5, enriched_at = $6 \
         WHERE account = $7 AND call_record_id = $8",
    )
    .bind(enrichment.intent_level_name.as_deref())
    .bind(enrichment.real_intent_level.as_deref())
    .bind(enrichment.real_intent_level_name.as_deref())
    .bind(enrichment.intent_level_tag_id)
    .bind(enrichment.customer.as_ref().map(Json))
    .bind(now)
    .bind(account)
    .bind(call_record_id)
    .execute(&mut *tx)
    .await?;
    let changed = previous_level != enrichment.real_intent_level;
    let outbound = announce.filter(|o| changed && !o.targets.is_empty());
    if let Some(outbound) = &outbound {
        outbox::insert(&mut tx, Some(inbox_id), outbound).await?;
    }
    tx.commit().await?;
    Ok(outbound)
}

/// The account's calls that match `filter`, newest call id first, `filter.limit` at most.
pub async fn list(pool: &Pool<Db>, account: &str, filter: &CallFilter) -> Result<Vec<CallListRow>, StoreError> {
    let mut query = QueryBuilder::<Db>::new(
        "SELECT call_record_id, robot_call_job_id, called_phone_number, result_status, intent_level, intent_grade, \
            start_time, chat_duration FROM call_records WHERE account = ",
    );
    query.push_bind(account);
    if let Some(job) = filter.robot_call_job_id {
        query.push(" AND robot_call_job_id = ").push_bind(job);
    }
    if let Some(result) = &filter.result_status {
        query.push(" AND result_status = ").push_bind(result.clone());
    }
    if let Some(grade) = &filter.intent_grade {
        query.push(" AND intent_grade = ").push_bind(grade.clone());
    }
    if let Some(from) = filter.started_from {
        query.push(" AND start_time >= ").push_bind(from);
    }
    if let Some(until) = filter.started_before {
        query.push(" AND start_time < ").push_bind(until);
    }
    if let Some(before) = filter.before_call_record_id {
        query.push(" AND call_record_id < ").push_bind(before);
    }
    query.push(" ORDER BY call_record_id DESC LIMIT ").push_bind(filter.limit);
    Ok(query.build_query_as().fetch_all(pool).await?)
}
