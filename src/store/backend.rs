//! The statements, written once and compiled for each backend. The SQL is portable between
//! Postgres and SQLite (`$n` parameters, `ON CONFLICT … RETURNING`); the macro exists only because
//! sqlx's types differ per backend.

/// Rows per multi-row INSERT: well under both backends' bound-parameter limits.
const ROWS_PER_INSERT: usize = 500;

macro_rules! backend {
    (
        $module:ident,
        $db:ty,
        begin_write: $begin_write:expr,
        skip_locked: $skip_locked:expr,
        lock_head: $lock_head:expr,
        notify: $notify:expr
    ) => {
        pub(super) mod $module {
            use sha2::{Digest, Sha256};
            use sqlx::types::Json;
            use sqlx::{Pool, QueryBuilder, Transaction};

            use super::ROWS_PER_INSERT;
            use chrono::{DateTime, Utc};

            use crate::fanout::Outbound;
            use crate::platform::callback::{CallRecord, Callback, Event, JobCompletion, SmsRequest};
            use crate::store::model::*;
            use crate::store::{Ingested, PendingCallback, Received, Recorded, StoreError};

            type Db = $db;
            type Tx = Transaction<'static, Db>;

            pub async fn ping(pool: &Pool<Db>) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(pool).await?;
                Ok(())
            }

            /// Several callbacks in one transaction, each inside a savepoint: one that fails is
            /// undone alone and reported alone; a failed commit fails them all.
            pub async fn record_callbacks(pool: &Pool<Db>, pending: Vec<PendingCallback>) -> Vec<Recorded> {
                let mut tx = match pool.begin_with($begin_write).await {
                    Ok(tx) => tx,
                    Err(e) => return all_failed(pending, &e),
                };
                let mut stored = Vec::with_capacity(pending.len());
                // Alone, a callback's failure is the transaction's: no savepoint needed.
                let isolate = pending.len() > 1;
                for item in &pending {
                    let received = Received {
                        account: &item.account,
                        body: &item.body,
                        source: item.source,
                        received_at: item.received_at,
                    };
                    if isolate {
                        if let Err(e) = sqlx::query("SAVEPOINT one_callback").execute(&mut *tx).await {
                            return all_failed(pending, &e);
                        }
                    }
                    let announce = |outcome| (item.announce)(&item.callback, outcome, item.received_at);
                    let result = store_callback(&mut tx, &received, &item.callback, announce).await;
                    if !isolate && result.is_err() {
                        // Dropping the transaction rolls it back.
                        return pending.into_iter().map(|item| item.callback).zip([result]).collect();
                    }
                    if isolate {
                        let end = if result.is_ok() { "RELEASE SAVEPOINT one_callback" } else { "ROLLBACK TO SAVEPOINT one_callback" };
                        if let Err(e) = sqlx::query(end).execute(&mut *tx).await {
                            return all_failed(pending, &e);
                        }
                    }
                    stored.push(result);
                }
                if let Err(e) = tx.commit().await {
                    return all_failed(pending, &e);
                }
                pending.into_iter().map(|item| item.callback).zip(stored).collect()
            }

            fn all_failed(pending: Vec<PendingCallback>, error: &sqlx::Error) -> Vec<Recorded> {
                pending.into_iter().map(|item| (item.callback, Err(StoreError::Shared(error.to_string())))).collect()
            }

            async fn store_callback<F: FnOnce(Ingested) -> Option<Outbound>>(
                tx: &mut Tx,
                received: &Received<'_>,
                callback: &Callback,
                announce: F,
            ) -> Result<(Ingested, Option<Outbound>), StoreError> {
                let status = match callback.event {
                    Event::Unrecognized => "unrecognized",
                    _ => "stored",
                };
                let (inbox_id, times_seen) = upsert_inbox(
                    tx,
                    received,
                    Some(&callback.data_type),
                    &callback.dedup_key(),
                    &callback.content_sha256,
                    status,
                    None,
                )
                .await?;
                let outcome = if times_seen > 1 {
                    Ingested::Duplicate
                } else {
                    match &callback.event {
                        Event::CallRecord(call) => upsert_call(tx, received, inbox_id, call).await?,
                        Event::JobCompleted(job) => upsert_job(tx, received, inbox_id, job).await?,
                        Event::Sms(sms) => insert_sms(tx, received, inbox_id, &callback.content_sha256, sms).await?,
                        Event::Unrecognized => Ingested::Unrecognized,
                    }
                };
                let outbound = announce(outcome).filter(|o| !o.targets.is_empty());
                if let Some(outbound) = &outbound {
                    insert_outbound(tx, inbox_id, outbound).await?;
                }
                Ok((outcome, outbound))
            }

            /// The event and one delivery per target, in the callback's transaction.
            async fn insert_outbound(tx: &mut Tx, inbox_id: i64, outbound: &Outbound) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO events (id, account, type, payload, inbox_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&outbound.id)
                .bind(&outbound.account)
                .bind(outbound.event_type.as_str())
                .bind(Json(&outbound.payload))
                .bind(inbox_id)
                .bind(outbound.created_at)
                .execute(&mut **tx)
                .await?;
                let mut insert = QueryBuilder::<Db>::new(
                    "INSERT INTO deliveries (event_id, target, status, due_at, retry_from, created_at, updated_at) ",
                );
                insert.push_values(&outbound.targets, |mut row, target| {
                    row.push_bind(&outbound.id)
                        .push_bind(target)
                        .push_bind("pending")
                        .push_bind(outbound.created_at)
                        .push_bind(outbound.created_at)
                        .push_bind(outbound.created_at)
                        .push_bind(outbound.created_at);
                });
                insert.build().execute(&mut **tx).await?;
                let notify: Option<&str> = $notify;
                if let Some(notify) = notify {
                    // Delivered to listeners only when the transaction commits.
                    sqlx::query(notify).execute(&mut **tx).await?;
                }
                Ok(())
            }

            /// Claims due deliveries of `target` by pushing their `due_at` to `lease_until`: a
            /// worker that dies leaves them to become due again. An ordered target only ever
            /// hands out its oldest pending delivery, and only when no one holds it.
            pub async fn claim_deliveries(
                pool: &Pool<Db>,
                target: &str,
                ordered: bool,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
                limit: i64,
                worker: &str,
            ) -> Result<Vec<ClaimedDelivery>, StoreError> {
                let limit = if ordered { 1 } else { limit };
                let candidates = if ordered {
                    format!(
                        "SELECT id FROM deliveries WHERE target = $1 AND status = 'pending' ORDER BY id LIMIT $5 {}",
                        $lock_head
                    )
                } else {
                    format!(
                        "SELECT id FROM deliveries WHERE target = $1 AND status = 'pending' AND due_at <= $2 \
                         ORDER BY due_at, id LIMIT $5 {}",
                        $skip_locked
                    )
                };
                let sql = format!(
                    "UPDATE deliveries SET due_at = $3, claimed_by = $4, attempts = attempts + 1, updated_at = $2 \
                     WHERE id IN ({candidates}) AND due_at <= $2 \
                     RETURNING id, event_id, attempts, retry_from, \
                        (SELECT payload FROM events WHERE events.id = deliveries.event_id) AS payload"
                );
                let mut claimed: Vec<ClaimedDelivery> = sqlx::query_as(&sql)
                    .bind(target)
                    .bind(now)
                    .bind(lease_until)
                    .bind(worker)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                claimed.sort_by_key(|d| d.id);
                Ok(claimed)
            }

            /// Records attempts and moves their deliveries on, unless another worker has claimed
            /// one since (a lease that ran out): then only its attempt is recorded. One
            /// transaction for all: attempts that finish together share a commit.
            pub async fn finish_attempts(
                pool: &Pool<Db>,
                worker: &str,
                attempts: &[Attempt],
                now: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                let mut tx = pool.begin_with($begin_write).await?;
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
                        AfterAttempt::Delivered => ("delivered", now, Some(now)),
                        AfterAttempt::RetryAt(at) => ("pending", at, None),
                        AfterAttempt::Dead => ("dead", now, None),
                    };
                    sqlx::query(
                        "UPDATE deliveries SET status = $1, due_at = $2, delivered_at = $3, last_status_code = $4, \
                            last_error = $5, claimed_by = NULL, updated_at = $6 \
                         WHERE id = $7 AND claimed_by = $8 AND attempts = $9 AND status = 'pending'",
                    )
                    .bind(status)
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
            pub async fn release_claims(
                pool: &Pool<Db>,
                ids: &[i64],
                worker: &str,
                now: DateTime<Utc>,
            ) -> Result<(), StoreError> {
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
                if let Some(status) = &filter.status {
                    query.push(" AND d.status = ").push_bind(status);
                }
                if let Some(event_type) = &filter.event_type {
                    query.push(" AND e.type = ").push_bind(event_type);
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

            pub async fn delivery_attempts(pool: &Pool<Db>, delivery_id: i64) -> Result<Vec<AttemptRow>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT attempt, worker, started_at, latency_ms, status_code, error, response_snippet \
                     FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id",
                )
                .bind(delivery_id)
                .fetch_all(pool)
                .await?)
            }

            /// Makes deliveries due again with a fresh attempt budget and retry window.
            /// `only_dead` keeps a replay of "everything dead since" from touching live ones.
            pub async fn replay(
                pool: &Pool<Db>,
                filter: &DeliveryFilter,
                now: DateTime<Utc>,
            ) -> Result<u64, StoreError> {
                let mut query = QueryBuilder::<Db>::new("UPDATE deliveries SET status = 'pending', attempts = 0, due_at = ");
                query.push_bind(now).push(", retry_from = ").push_bind(now).push(", updated_at = ").push_bind(now);
                query.push(", claimed_by = NULL WHERE status <> 'pending'");
                if let Some(target) = &filter.target {
                    query.push(" AND target = ").push_bind(target);
                }
                if let Some(status) = &filter.status {
                    query.push(" AND status = ").push_bind(status);
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
                let mut tx = pool.begin_with($begin_write).await?;
                let done = query.build().execute(&mut *tx).await?;
                let notify: Option<&str> = $notify;
                if let (Some(notify), true) = (notify, done.rows_affected() > 0) {
                    sqlx::query(notify).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(done.rows_affected())
            }

            /// Stores what `callDetail` adds. When the corrected intent level changes, `announce`
            /// makes the `call.updated` event, written in the same transaction.
            pub async fn enrich_call<F: FnOnce() -> Option<Outbound>>(
                pool: &Pool<Db>,
                account: &str,
                call_record_id: i64,
                enrichment: &Enrichment,
                now: DateTime<Utc>,
                announce: F,
            ) -> Result<Option<Outbound>, StoreError> {
                let mut tx = pool.begin_with($begin_write).await?;
                let previous: Option<(Option<String>, i64)> = sqlx::query_as(
                    "SELECT real_intent_level, inbox_id FROM call_records WHERE account = $1 AND call_record_id = $2",
                )
                .bind(account)
                .bind(call_record_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((previous_level, inbox_id)) = previous else {
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
                let outbound = if changed { announce().filter(|o| !o.targets.is_empty()) } else { None };
                if let Some(outbound) = &outbound {
                    insert_outbound(&mut tx, inbox_id, outbound).await?;
                }
                tx.commit().await?;
                Ok(outbound)
            }

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
                    let mut tx = pool.begin_with($begin_write).await?;
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

            pub async fn existing_call_ids(
                pool: &Pool<Db>,
                account: &str,
                ids: &[i64],
            ) -> Result<std::collections::HashSet<i64>, StoreError> {
                let mut found = std::collections::HashSet::new();
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

            pub async fn events(pool: &Pool<Db>, filter: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
                let mut query = QueryBuilder::<Db>::new(
                    "SELECT id, account, type AS event_type, created_at, payload FROM events WHERE 1 = 1",
                );
                if let Some(id) = &filter.id {
                    query.push(" AND id = ").push_bind(id);
                }
                if let Some(account) = &filter.account {
                    query.push(" AND account = ").push_bind(account);
                }
                if let Some(event_type) = &filter.event_type {
                    query.push(" AND type = ").push_bind(event_type);
                }
                if let Some(since) = filter.since {
                    query.push(" AND created_at >= ").push_bind(since);
                }
                query.push(" ORDER BY created_at, id LIMIT ").push_bind(filter.limit.unwrap_or(100));
                Ok(query.build_query_as().fetch_all(pool).await?)
            }

            pub async fn record_rejected(
                pool: &Pool<Db>,
                received: &Received<'_>,
                reason: &str,
            ) -> Result<(), StoreError> {
                let hash = hex::encode(Sha256::digest(received.body));
                let mut tx = pool.begin_with($begin_write).await?;
                upsert_inbox(&mut tx, received, None, &format!("rejected:{hash}"), &hash, "rejected", Some(reason))
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            /// Returns the row id and how often this exact content has now been seen.
            async fn upsert_inbox(
                tx: &mut Tx,
                received: &Received<'_>,
                data_type: Option<&str>,
                dedup_key: &str,
                content_sha256: &str,
                status: &str,
                error: Option<&str>,
            ) -> Result<(i64, i64), StoreError> {
                let row: (i64, i64) = sqlx::query_as(
                    "INSERT INTO inbox (account, data_type, dedup_key, content_sha256, status, error, source, body, \
                                        first_seen_at, last_seen_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
                     ON CONFLICT (account, dedup_key, content_sha256) DO UPDATE \
                     SET last_seen_at = excluded.last_seen_at, times_seen = inbox.times_seen + 1 \
                     RETURNING id, times_seen",
                )
                .bind(received.account)
                .bind(data_type)
                .bind(dedup_key)
                .bind(content_sha256)
                .bind(status)
                .bind(error)
                .bind(received.source.as_str())
                .bind(received.body)
                .bind(received.received_at)
                .fetch_one(&mut **tx)
                .await?;
                Ok(row)
            }

            async fn upsert_call(
                tx: &mut Tx,
                received: &Received<'_>,
                inbox_id: i64,
                call: &CallRecord,
            ) -> Result<Ingested, StoreError> {
                let (revision,): (i64,) = sqlx::query_as(
                    "INSERT INTO call_records (account, call_record_id, tenant_id, robot_call_job_id, dialog_flow_id, \
                        called_phone_number, result_status, intent_level, intent_grade, customer_concern, \
                        full_audio_url, customer_audio_url, analysis_basis, start_time, end_time, chat_duration, \
                        chat_round, attributes, properties, extra, source, inbox_id, received_at, updated_at, start_local) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
                        $20, $21, $22, $23, $23, $24) \
                     ON CONFLICT (account, call_record_id) DO UPDATE SET \
                        tenant_id = excluded.tenant_id, robot_call_job_id = excluded.robot_call_job_id, \
                        dialog_flow_id = excluded.dialog_flow_id, called_phone_number = excluded.called_phone_number, \
                        result_status = excluded.result_status, intent_level = excluded.intent_level, \
                        intent_grade = excluded.intent_grade, customer_concern = excluded.customer_concern, \
                        full_audio_url = excluded.full_audio_url, customer_audio_url = excluded.customer_audio_url, \
                        analysis_basis = excluded.analysis_basis, start_time = excluded.start_time, \
                        end_time = excluded.end_time, chat_duration = excluded.chat_duration, \
                        chat_round = excluded.chat_round, attributes = excluded.attributes, \
                        properties = excluded.properties, extra = excluded.extra, inbox_id = excluded.inbox_id, \
                        updated_at = excluded.updated_at, start_local = excluded.start_local, \
                        revision = call_records.revision + 1 \
                     RETURNING revision",
                )
                .bind(received.account)
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
                .bind(received.source.as_str())
                .bind(inbox_id)
                .bind(received.received_at)
                .bind(call.start_local.as_deref())
                .fetch_one(&mut **tx)
                .await?;
                if revision > 1 {
                    sqlx::query("DELETE FROM call_turns WHERE account = $1 AND call_record_id = $2")
                        .bind(received.account)
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
                        row.push_bind(received.account)
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

            async fn upsert_job(
                tx: &mut Tx,
                received: &Received<'_>,
                inbox_id: i64,
                job: &JobCompletion,
            ) -> Result<Ingested, StoreError> {
                let (revision,): (i64,) = sqlx::query_as(
                    "INSERT INTO jobs (account, robot_call_job_id, status, tenant_id, extra, inbox_id, received_at, \
                        updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
                     ON CONFLICT (account, robot_call_job_id, status) DO UPDATE SET \
                        tenant_id = excluded.tenant_id, extra = excluded.extra, inbox_id = excluded.inbox_id, \
                        updated_at = excluded.updated_at, revision = jobs.revision + 1 \
                     RETURNING revision",
                )
                .bind(received.account)
                .bind(job.robot_call_job_id)
                .bind(job.status.as_str())
                .bind(job.tenant_id)
                .bind(Json(&job.extra))
                .bind(inbox_id)
                .bind(received.received_at)
                .fetch_one(&mut **tx)
                .await?;
                Ok(if revision > 1 { Ingested::Changed } else { Ingested::Created })
            }

            async fn insert_sms(
                tx: &mut Tx,
                received: &Received<'_>,
                inbox_id: i64,
                content_sha256: &str,
                sms: &SmsRequest,
            ) -> Result<Ingested, StoreError> {
                // The content hash is part of an SMS request's identity, so a new inbox row always
                // means a new request; the upsert only guards a request whose inbox row was purged.
                let (request_id,): (i64,) = sqlx::query_as(
                    "INSERT INTO sms_requests (account, call_record_id, content_sha256, tenant_id, company_name, \
                        customer_person_id, customer_person_name, phone_number, robot_call_job_id, \
                        robot_call_job_name, extra, inbox_id, received_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                     ON CONFLICT (account, call_record_id, content_sha256) DO UPDATE SET inbox_id = excluded.inbox_id \
                     RETURNING id",
                )
                .bind(received.account)
                .bind(sms.call_record_id)
                .bind(content_sha256)
                .bind(sms.tenant_id)
                .bind(sms.company_name.as_deref())
                .bind(sms.customer_person_id)
                .bind(sms.customer_person_name.as_deref())
                .bind(sms.phone_number.as_deref())
                .bind(sms.robot_call_job_id)
                .bind(sms.robot_call_job_name.as_deref())
                .bind(Json(&sms.extra))
                .bind(inbox_id)
                .bind(received.received_at)
                .fetch_one(&mut **tx)
                .await?;
                sqlx::query("DELETE FROM sms_messages WHERE sms_request_id = $1")
                    .bind(request_id)
                    .execute(&mut **tx)
                    .await?;
                let numbered: Vec<_> = sms.messages.iter().enumerate().collect();
                for chunk in numbered.chunks(ROWS_PER_INSERT) {
                    let mut insert = QueryBuilder::<Db>::new(
                        "INSERT INTO sms_messages (sms_request_id, seq, sms_template_id, sms_template_name, \
                            sms_signature_id, sms_signature_name, kind, template_text, message, var_map, extra) ",
                    );
                    insert.push_values(chunk, |mut row, (seq, message)| {
                        row.push_bind(request_id)
                            .push_bind(*seq as i64)
                            .push_bind(message.sms_template_id.map(|id| id.get()))
                            .push_bind(message.sms_template_name.as_deref())
                            .push_bind(message.sms_signature_id.map(|id| id.get()))
                            .push_bind(message.sms_signature_name.as_deref())
                            .push_bind(message.kind.as_deref())
                            .push_bind(message.template_text.as_deref())
                            .push_bind(message.message.as_deref())
                            .push_bind(Json(&message.var_map))
                            .push_bind(Json(&message.extra));
                    });
                    insert.build().execute(&mut **tx).await?;
                }
                Ok(Ingested::Created)
            }

            pub async fn inbox(pool: &Pool<Db>, account: &str) -> Result<Vec<InboxEntry>, StoreError> {
                Ok(sqlx::query_as("SELECT * FROM inbox WHERE account = $1 ORDER BY id")
                    .bind(account)
                    .fetch_all(pool)
                    .await?)
            }

            pub async fn rejected(
                pool: &Pool<Db>,
                account: Option<&str>,
                since: Option<DateTime<Utc>>,
            ) -> Result<Vec<InboxEntry>, StoreError> {
                let mut query = QueryBuilder::<Db>::new("SELECT * FROM inbox WHERE status = 'rejected' AND body IS NOT NULL");
                if let Some(account) = account {
                    query.push(" AND account = ").push_bind(account);
                }
                if let Some(since) = since {
                    query.push(" AND last_seen_at >= ").push_bind(since);
                }
                query.push(" ORDER BY id");
                Ok(query.build_query_as().fetch_all(pool).await?)
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

            pub async fn call_turns(
                pool: &Pool<Db>,
                account: &str,
                call_record_id: i64,
            ) -> Result<Vec<StoredTurn>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT seq, call_detail_id, speaker, text, extra FROM call_turns \
                     WHERE account = $1 AND call_record_id = $2 ORDER BY seq",
                )
                .bind(account)
                .bind(call_record_id)
                .fetch_all(pool)
                .await?)
            }

            pub async fn jobs(pool: &Pool<Db>, account: &str, robot_call_job_id: i64) -> Result<Vec<StoredJob>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT account, robot_call_job_id, status, tenant_id, extra, revision, received_at FROM jobs \
                     WHERE account = $1 AND robot_call_job_id = $2 ORDER BY status",
                )
                .bind(account)
                .bind(robot_call_job_id)
                .fetch_all(pool)
                .await?)
            }

            pub async fn sms_messages(
                pool: &Pool<Db>,
                account: &str,
                call_record_id: i64,
            ) -> Result<Vec<StoredSmsMessage>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT r.call_record_id, r.content_sha256, r.tenant_id, r.company_name, r.customer_person_id, \
                        r.customer_person_name, r.phone_number, r.robot_call_job_id, r.robot_call_job_name, m.seq, \
                        m.sms_template_id, m.sms_template_name, m.sms_signature_id, m.sms_signature_name, m.kind, \
                        m.template_text, m.message, m.var_map \
                     FROM sms_requests r JOIN sms_messages m ON m.sms_request_id = r.id \
                     WHERE r.account = $1 AND r.call_record_id = $2 ORDER BY r.id, m.seq",
                )
                .bind(account)
                .bind(call_record_id)
                .fetch_all(pool)
                .await?)
            }
        }
    };
}

backend!(postgres, sqlx::Postgres,
    begin_write: "BEGIN",
    skip_locked: "FOR UPDATE SKIP LOCKED",
    // Not SKIP LOCKED: a second replica must wait for the head, never skip past it.
    lock_head: "FOR UPDATE",
    notify: Some("SELECT pg_notify('tanyi_relay_deliveries', '')"));
// SQLite has one writer at a time, so an UPDATE … WHERE id IN (SELECT …) is already atomic. Write
// transactions take the write lock up front (IMMEDIATE): one that read first and then tried to
// write while another connection writes would fail at once with SQLITE_BUSY instead of waiting.
backend!(sqlite, sqlx::Sqlite, begin_write: "BEGIN IMMEDIATE", skip_locked: "", lock_head: "", notify: None);
