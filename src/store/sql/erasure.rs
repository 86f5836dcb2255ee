//! Erasing a person: their calls' personal fields cleared (the rows stay, so counts in reports stay
//! right, with `erased_at` set), transcripts and SMS texts removed, raw bodies dropped, events
//! redacted and their pending deliveries cancelled, and every other mention of the number cleared.
//! Each step runs in the caller's transaction.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::types::Json;
use sqlx::{Pool, QueryBuilder};

use super::{outbox, Db, Tx, DIALECT};
use crate::domain::{DeliveryStatus, Outbound};
use crate::store::rows::Mentions;
use crate::store::{ErasureCounts, ErasureEntry, ErasureSubject, StoreError};

/// Why a pending delivery of an erased person's event did not go out.
const CANCELLED: &str = "cancelled: the person's data was erased";

/// The key of the erasure log's hashes (made by the migration, random per database).
pub async fn hash_key(pool: &Pool<Db>) -> Result<String, StoreError> {
    let (key,): (String,) = sqlx::query_as("SELECT key FROM erasure_key WHERE id = 1").fetch_one(pool).await?;
    Ok(key)
}

/// The calls of the person with this number: those made to it, and those whose SMS went to it.
pub async fn call_ids(pool: &Pool<Db>, account: &str, phone: &str) -> Result<Vec<i64>, StoreError> {
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT call_record_id FROM call_records WHERE account = $1 AND called_phone_number = $2 \
         UNION SELECT call_record_id FROM sms_requests WHERE account = $1 AND phone_number = $2 \
         ORDER BY 1",
    )
    .bind(account)
    .bind(phone)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// The names these calls give the person: the SMS requests' customer name and the enrichment's
/// customer object (`name` and every other field whose key ends in `name`).
pub async fn names(pool: &Pool<Db>, account: &str, ids: &[i64]) -> Result<Vec<String>, StoreError> {
    let mut names = Vec::new();
    for chunk in ids.chunks(super::ROWS_PER_INSERT) {
        let mut query = QueryBuilder::<Db>::new(
            "SELECT customer_person_name FROM sms_requests WHERE customer_person_name IS NOT NULL AND account = ",
        );
        query.push_bind(account);
        in_list(&mut query, " AND call_record_id", chunk);
        let rows: Vec<(String,)> = query.build_query_as().fetch_all(pool).await?;
        names.extend(rows.into_iter().map(|(name,)| name));
        let mut query =
            QueryBuilder::<Db>::new("SELECT customer FROM call_records WHERE customer IS NOT NULL AND account = ");
        query.push_bind(account);
        in_list(&mut query, " AND call_record_id", chunk);
        let rows: Vec<(Json<Value>,)> = query.build_query_as().fetch_all(pool).await?;
        for (Json(customer),) in rows {
            if let Value::Object(fields) = customer {
                let named = fields.into_iter().filter(|(key, _)| key.to_ascii_lowercase().ends_with("name"));
                names.extend(named.filter_map(|(_, value)| value.as_str().map(str::to_owned)));
            }
        }
    }
    names.retain(|name| !name.trim().is_empty());
    names.sort();
    names.dedup();
    Ok(names)
}

/// Calls erased per transaction: a long erasure does not hold its locks for long.
const CALLS_PER_BATCH: usize = 200;

/// Erases the person's calls, one transaction per batch. A dry run does every batch in one
/// transaction and rolls it back, so that its counts are those a real run would give.
/// Idempotent: run again, it changes nothing more.
pub async fn erase_calls_batched(
    pool: &Pool<Db>,
    person: &ErasureSubject,
    now: DateTime<Utc>,
    dry_run: bool,
    counts: &mut ErasureCounts,
) -> Result<(), StoreError> {
    let mut tx = pool.begin_with(DIALECT.begin_write).await?;
    for batch in person.call_record_ids.chunks(CALLS_PER_BATCH) {
        erase_calls(&mut tx, &person.account, batch, now, counts).await?;
        if !dry_run {
            tx.commit().await?;
            tx = pool.begin_with(DIALECT.begin_write).await?;
        }
    }
    if dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(())
}

/// Clears everything the relay holds about these calls.
async fn erase_calls(
    tx: &mut Tx,
    account: &str,
    ids: &[i64],
    now: DateTime<Utc>,
    counts: &mut ErasureCounts,
) -> Result<(), StoreError> {
    let mut query = QueryBuilder::<Db>::new(
        "UPDATE call_records SET called_phone_number = NULL, properties = '{}', attributes = '[]', \
            customer_concern = '[]', analysis_basis = NULL, full_audio_url = NULL, customer_audio_url = NULL, \
            extra = '{}', customer = NULL, erased_at = ",
    );
    query.push_bind(now).push(" WHERE account = ").push_bind(account);
    in_list(&mut query, " AND call_record_id", ids);
    counts.call_records += query.build().execute(&mut **tx).await?.rows_affected();

    let mut query = QueryBuilder::<Db>::new("DELETE FROM call_turns WHERE account = ");
    query.push_bind(account);
    in_list(&mut query, " AND call_record_id", ids);
    counts.call_turns += query.build().execute(&mut **tx).await?.rows_affected();

    let mut query = QueryBuilder::<Db>::new(
        "UPDATE sms_messages SET message = NULL, var_map = '{}', extra = '{}' \
         WHERE sms_request_id IN (SELECT id FROM sms_requests WHERE account = ",
    );
    query.push_bind(account);
    in_list(&mut query, " AND call_record_id", ids);
    query.push(")");
    counts.sms_messages += query.build().execute(&mut **tx).await?.rows_affected();

    let mut query = QueryBuilder::<Db>::new(
        "UPDATE sms_requests SET phone_number = NULL, customer_person_name = NULL, customer_person_id = NULL, \
            extra = '{}', erased_at = ",
    );
    query.push_bind(now).push(" WHERE account = ").push_bind(account);
    in_list(&mut query, " AND call_record_id", ids);
    counts.sms_requests += query.build().execute(&mut **tx).await?.rows_affected();

    // The raw bodies: a call's is keyed call:<id>, an SMS request's sms:<call id>:<hash>. The rows
    // stay with their content hash, so a re-sent callback is still known as a duplicate.
    let mut query = QueryBuilder::<Db>::new("UPDATE inbox SET body = NULL WHERE body IS NOT NULL AND account = ");
    query.push_bind(account).push(" AND (dedup_key IN (");
    let mut keys = query.separated(", ");
    for id in ids {
        keys.push_bind(format!("call:{id}"));
    }
    query.push(")");
    for id in ids {
        query.push(" OR dedup_key LIKE ").push_bind(format!("sms:{id}:%"));
    }
    query.push(")");
    counts.inbox_bodies += query.build().execute(&mut **tx).await?.rows_affected();

    let mut query = QueryBuilder::<Db>::new("SELECT id, type, call_record_id FROM events WHERE account = ");
    query.push_bind(account);
    in_list(&mut query, " AND call_record_id", ids);
    let events: Vec<(String, String, Option<i64>)> = query.build_query_as().fetch_all(&mut **tx).await?;
    redact_events(tx, account, &events, now, counts).await
}

/// Replaces each event's payload by a stub saying it was erased, cancels its pending deliveries
/// and drops what its receivers answered.
async fn redact_events(
    tx: &mut Tx,
    account: &str,
    events: &[(String, String, Option<i64>)],
    now: DateTime<Utc>,
    counts: &mut ErasureCounts,
) -> Result<(), StoreError> {
    for (id, event_type, call_record_id) in events {
        let stub = json!({"type": event_type, "id": id, "account": account, "erased": true,
            "data": {"call_record_id": call_record_id}});
        counts.events += sqlx::query("UPDATE events SET payload = $1 WHERE id = $2")
            .bind(Json(stub))
            .bind(id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    }
    for chunk in events.chunks(super::ROWS_PER_INSERT) {
        let ids = || chunk.iter().map(|(id, _, _)| id.as_str());
        let mut query = QueryBuilder::<Db>::new("UPDATE deliveries SET status = ");
        query
            .push_bind(DeliveryStatus::Dead.as_str())
            .push(", last_error = ")
            .push_bind(CANCELLED)
            .push(", claimed_by = NULL, updated_at = ")
            .push_bind(now)
            .push(" WHERE status = ")
            .push_bind(DeliveryStatus::Pending.as_str());
        in_text_list(&mut query, " AND event_id", ids());
        counts.deliveries_cancelled += query.build().execute(&mut **tx).await?.rows_affected();

        let mut query = QueryBuilder::<Db>::new(
            "UPDATE delivery_attempts SET response_snippet = NULL, error = NULL \
             WHERE delivery_id IN (SELECT id FROM deliveries WHERE 1 = 1",
        );
        in_text_list(&mut query, " AND event_id", ids());
        query.push(")");
        counts.attempt_snippets += query.build().execute(&mut **tx).await?.rows_affected();
    }
    Ok(())
}

/// Finds, by reading only (the scan of every body and payload holds no write lock, which on
/// SQLite would stop every callback), the rows outside the person's own calls (`theirs`, erased
/// by `erase_calls_batched`) that mention `needle`: raw bodies (rejected ones too), event payloads,
/// transcripts, other calls' free-text fields, SMS texts, what receivers answered. `unlinked_only`
/// keeps to rows that belong to no call (for the person's name, which other people may share):
/// unrecognized or rejected bodies and events with no call.
pub async fn find_mentions(
    pool: &Pool<Db>,
    account: &str,
    needle: &str,
    unlinked_only: bool,
    theirs: &[i64],
) -> Result<Mentions, StoreError> {
    let theirs: HashSet<i64> = theirs.iter().copied().collect();
    let other = |call: Option<i64>| call.is_none_or(|id| !theirs.contains(&id));
    let contains = |column: &str| format!("{}(CAST({column} AS TEXT), $2) > 0", DIALECT.text_position);
    // A macro, not a closure: each query gives rows of its own type.
    macro_rules! fetch {
        ($sql:expr) => {
            sqlx::query_as(&$sql).bind(account).bind(needle).fetch_all(pool)
        };
    }
    let mut found = Mentions::default();

    let unlinked = if unlinked_only { " AND status <> 'stored'" } else { "" };
    let rows: Vec<(i64, String)> = fetch!(format!(
        "SELECT id, dedup_key FROM inbox WHERE account = $1 AND body IS NOT NULL AND {}{unlinked}",
        DIALECT.bytes_contain
    ))
    .await?;
    found.inbox = rows.into_iter().filter(|(_, key)| other(call_of_dedup_key(key))).map(|(id, _)| id).collect();
    let unlinked = if unlinked_only { " AND call_record_id IS NULL" } else { "" };
    let rows: Vec<(String, String, Option<i64>)> = fetch!(format!(
        "SELECT id, type, call_record_id FROM events WHERE account = $1 AND {}{unlinked}",
        contains("payload")
    ))
    .await?;
    found.events = rows.into_iter().filter(|(_, _, call)| other(*call)).collect();
    if unlinked_only {
        return Ok(found);
    }
    let rows: Vec<(i64, i64)> =
        fetch!(format!("SELECT call_record_id, seq FROM call_turns WHERE account = $1 AND {}", contains("text")))
            .await?;
    found.turns = rows.into_iter().filter(|(call, _)| other(Some(*call))).collect();
    let rows: Vec<(i64,)> = fetch!(format!(
        "SELECT call_record_id FROM call_records WHERE account = $1 AND ({} OR {} OR {})",
        contains("properties"),
        contains("extra"),
        contains("analysis_basis")
    ))
    .await?;
    found.calls = rows.into_iter().map(|(call,)| call).filter(|call| other(Some(*call))).collect();
    let rows: Vec<(i64, i64, i64)> = fetch!(format!(
        "SELECT m.sms_request_id, m.seq, r.call_record_id FROM sms_messages m \
         JOIN sms_requests r ON r.id = m.sms_request_id WHERE r.account = $1 AND ({} OR {})",
        contains("m.message"),
        contains("m.var_map")
    ))
    .await?;
    found.sms_messages =
        rows.into_iter().filter(|(_, _, call)| other(Some(*call))).map(|(id, seq, _)| (id, seq)).collect();
    let rows: Vec<(i64, Option<i64>)> = fetch!(format!(
        "SELECT a.id, e.call_record_id FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id \
         JOIN events e ON e.id = d.event_id WHERE e.account = $1 AND ({} OR {})",
        contains("a.response_snippet"),
        contains("a.error")
    ))
    .await?;
    found.attempts = rows.into_iter().filter(|(_, call)| other(*call)).map(|(id, _)| id).collect();
    let rows: Vec<(i64, Option<i64>)> = fetch!(format!(
        "SELECT d.id, e.call_record_id FROM deliveries d JOIN events e ON e.id = d.event_id \
         WHERE e.account = $1 AND {}",
        contains("d.last_error")
    ))
    .await?;
    found.deliveries = rows.into_iter().filter(|(_, call)| other(*call)).map(|(id, _)| id).collect();
    Ok(found)
}

/// The call a raw body is about, from its key (`call:<id>`, `sms:<call id>:<hash>`).
fn call_of_dedup_key(key: &str) -> Option<i64> {
    let rest = key.strip_prefix("call:").or_else(|| key.strip_prefix("sms:"))?;
    rest.split(':').next()?.parse().ok()
}

/// Clears what `find_mentions` found, in one short transaction (rolled back for a dry run).
pub async fn clear_mentions(
    pool: &Pool<Db>,
    account: &str,
    found: &Mentions,
    now: DateTime<Utc>,
    dry_run: bool,
    counts: &mut ErasureCounts,
) -> Result<(), StoreError> {
    let mut tx = pool.begin_with(DIALECT.begin_write).await?;
    for chunk in found.inbox.chunks(super::ROWS_PER_INSERT) {
        let mut query = QueryBuilder::<Db>::new("UPDATE inbox SET body = NULL WHERE 1 = 1");
        in_list(&mut query, " AND id", chunk);
        counts.inbox_bodies += query.build().execute(&mut *tx).await?.rows_affected();
    }
    redact_events(&mut tx, account, &found.events, now, counts).await?;
    for (call, seq) in &found.turns {
        let query =
            sqlx::query("UPDATE call_turns SET text = NULL WHERE account = $1 AND call_record_id = $2 AND seq = $3");
        counts.other_rows += query.bind(account).bind(call).bind(seq).execute(&mut *tx).await?.rows_affected();
    }
    for (request, seq) in &found.sms_messages {
        let query = sqlx::query(
            "UPDATE sms_messages SET message = NULL, var_map = '{}' WHERE sms_request_id = $1 AND seq = $2",
        );
        counts.other_rows += query.bind(request).bind(seq).execute(&mut *tx).await?.rows_affected();
    }
    // A call record's id is unique within its account only.
    let by_id: [(&str, &[i64], bool); 3] = [
        (
            "UPDATE call_records SET properties = '{}', extra = '{}', analysis_basis = NULL WHERE call_record_id",
            &found.calls,
            true,
        ),
        ("UPDATE delivery_attempts SET response_snippet = NULL, error = NULL WHERE id", &found.attempts, false),
        ("UPDATE deliveries SET last_error = NULL WHERE id", &found.deliveries, false),
    ];
    for (update, ids, per_account) in by_id {
        for chunk in ids.chunks(super::ROWS_PER_INSERT) {
            let mut query = QueryBuilder::<Db>::new("");
            in_list(&mut query, update, chunk);
            if per_account {
                query.push(" AND account = ").push_bind(account);
            }
            counts.other_rows += query.build().execute(&mut *tx).await?.rows_affected();
        }
    }
    if dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(())
}

/// The erasure log's entry and the `person.erased` event, in one transaction.
pub async fn log(pool: &Pool<Db>, entry: &ErasureEntry, outbound: Option<&Outbound>) -> Result<i64, StoreError> {
    let mut tx = pool.begin_with(DIALECT.begin_write).await?;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO erasures (account, phone_hash, requested_by, erased_at, call_record_ids, counts) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(&entry.account)
    .bind(&entry.phone_hash)
    .bind(&entry.requested_by)
    .bind(entry.erased_at)
    .bind(Json(&entry.call_record_ids))
    .bind(Json(&entry.counts))
    .fetch_one(&mut *tx)
    .await?;
    if let Some(outbound) = outbound {
        outbox::insert(&mut tx, None, outbound).await?;
    }
    tx.commit().await?;
    Ok(id)
}

/// The account's erasures, newest first.
pub async fn entries(pool: &Pool<Db>, account: Option<&str>, limit: i64) -> Result<Vec<ErasureEntry>, StoreError> {
    let mut query = QueryBuilder::<Db>::new(
        "SELECT id, account, phone_hash, requested_by, erased_at, call_record_ids, counts FROM erasures WHERE 1 = 1",
    );
    if let Some(account) = account {
        query.push(" AND account = ").push_bind(account);
    }
    query.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
    Ok(query.build_query_as().fetch_all(pool).await?)
}

fn in_list(query: &mut QueryBuilder<'_, Db>, column: &str, ids: &[i64]) {
    query.push(column).push(" IN (");
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    query.push(")");
}

fn in_text_list<'v>(query: &mut QueryBuilder<'_, Db>, column: &str, values: impl Iterator<Item = &'v str>) {
    query.push(column).push(" IN (");
    let mut list = query.separated(", ");
    for value in values {
        list.push_bind(value.to_owned());
    }
    query.push(")");
}
