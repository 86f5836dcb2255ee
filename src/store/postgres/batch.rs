//! Postgres writes a group of callbacks in one transaction with one statement per table: each
//! column's values of the whole group are bound as one array and unpacked by `UNNEST`, so that the
//! SQL text (and its prepared statement) is the same whatever the group's size, and a group costs
//! the round trips and the commit of one callback. Job completions and SMS requests, a few per
//! campaign, keep their statements of `sql/jobs_sms.rs`, in the same transaction.
//!
//! An upsert may not touch one row twice in a statement, so a group holds one callback per thing
//! (account and dedup key); a second one about the same thing goes into the next transaction, in
//! arrival order. When a group fails, each of its callbacks is written again alone: one bad
//! callback fails alone, as it would have in a transaction of its own.

use std::collections::HashMap;

use sqlx::PgPool;

use super::{jobs_sms, Tx, DIALECT};
use crate::domain::{DeliveryStatus, InboxStatus, Ingested, Outbound};
use crate::platform::callback::{CallRecord, Event};
use crate::store::{PendingCallback, Recorded, StoreError};

/// Stores `pending` and answers for each, in order, once the transaction holding it committed.
pub async fn record(pool: &PgPool, pending: Vec<PendingCallback>) -> Vec<Recorded> {
    let count = pending.len();
    let mut answers: Vec<Option<Recorded>> = (0..count).map(|_| None).collect();
    for round in rounds(pending) {
        let (places, items): (Vec<usize>, Vec<PendingCallback>) = round.into_iter().unzip();
        let recorded = if items.len() == 1 { record_alone(pool, items).await } else { record_group(pool, items).await };
        for (place, answer) in places.into_iter().zip(recorded) {
            answers[place] = Some(answer);
        }
    }
    answers.into_iter().map(|answer| answer.expect("every callback is in one round")).collect()
}

/// Splits the callbacks into groups that each hold one callback per thing, keeping the order in
/// which the callbacks about one thing arrived.
fn rounds(pending: Vec<PendingCallback>) -> Vec<Vec<(usize, PendingCallback)>> {
    let mut rounds: Vec<Vec<(usize, PendingCallback)>> = Vec::new();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (place, item) in pending.into_iter().enumerate() {
        let times = seen.entry((item.account.clone(), item.callback.dedup_key())).or_insert(0);
        if rounds.len() <= *times {
            rounds.push(Vec::new());
        }
        rounds[*times].push((place, item));
        *times += 1;
    }
    rounds
}

async fn record_group(pool: &PgPool, mut items: Vec<PendingCallback>) -> Vec<Recorded> {
    match write(pool, &items).await {
        Ok(outcomes) => answer(&mut items, outcomes),
        Err(_) => {
            let mut answers = Vec::with_capacity(items.len());
            for item in items {
                answers.extend(record_alone(pool, vec![item]).await);
            }
            answers
        }
    }
}

async fn record_alone(pool: &PgPool, mut items: Vec<PendingCallback>) -> Vec<Recorded> {
    match write(pool, &items).await {
        Ok(outcomes) => answer(&mut items, outcomes),
        Err(e) => items.into_iter().map(|item| (item.callback, Err(e.clone()))).collect(),
    }
}

/// The committed outcomes, each with the event it wrote (taken from its announcements).
fn answer(items: &mut Vec<PendingCallback>, outcomes: Vec<Ingested>) -> Vec<Recorded> {
    std::mem::take(items)
        .into_iter()
        .zip(outcomes)
        .map(|(mut item, outcome)| {
            let outbound = item.announcements.take(outcome).filter(|o| !o.targets.is_empty());
            (item.callback, Ok((outcome, outbound)))
        })
        .collect()
}

/// The event an outcome announces, without taking it (the group may still fail).
fn announced(item: &PendingCallback, outcome: Ingested) -> Option<&Outbound> {
    let announcements = &item.announcements;
    let event = match outcome {
        Ingested::Created | Ingested::Unrecognized => announcements.created.as_ref(),
        Ingested::Changed => announcements.changed.as_ref(),
        Ingested::Duplicate => None,
    };
    event.filter(|o| !o.targets.is_empty())
}

/// One transaction for the whole group; on any error it is rolled back and nothing is kept.
async fn write(pool: &PgPool, items: &[PendingCallback]) -> Result<Vec<Ingested>, StoreError> {
    let mut tx = pool.begin_with(DIALECT.begin_write).await?;
    match write_in(&mut tx, items).await {
        Ok(outcomes) => {
            tx.commit().await?;
            Ok(outcomes)
        }
        Err(e) => {
            // Ended now rather than when the connection is next used: an open transaction holds
            // locks. Whether the rollback itself fails does not change the outcome.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

async fn write_in(tx: &mut Tx, items: &[PendingCallback]) -> Result<Vec<Ingested>, StoreError> {
    let inbox = upsert_inbox(tx, items).await?;
    let mut outcomes = Vec::with_capacity(items.len());
    let mut calls = Vec::new();
    for (item, &(inbox_id, times_seen)) in items.iter().zip(&inbox) {
        let (account, at) = (item.account.as_str(), item.received_at);
        let outcome = if times_seen > 1 {
            Ingested::Duplicate
        } else {
            match &item.callback.event {
                // Decided below, for all calls of the group at once.
                Event::CallRecord(call) => {
                    calls.push((outcomes.len(), item, inbox_id, call));
                    Ingested::Created
                }
                Event::JobCompleted(job) => jobs_sms::upsert_job(tx, account, at, inbox_id, job).await?,
                Event::Sms(sms) => {
                    jobs_sms::insert_sms(tx, account, at, inbox_id, &item.callback.content_sha256, sms).await?
                }
                Event::Unrecognized => Ingested::Unrecognized,
            }
        };
        outcomes.push(outcome);
    }
    if !calls.is_empty() {
        for (place, outcome) in upsert_calls(tx, &calls).await? {
            outcomes[place] = outcome;
        }
    }
    let events: Vec<(i64, &Outbound)> = items
        .iter()
        .zip(&inbox)
        .zip(&outcomes)
        .filter_map(|((item, &(inbox_id, _)), &outcome)| Some((inbox_id, announced(item, outcome)?)))
        .collect();
    if !events.is_empty() {
        insert_events(tx, &events).await?;
    }
    Ok(outcomes)
}

/// The inbox rows of the group: each row's id and how often its content has now been seen, in the
/// group's order.
async fn upsert_inbox(tx: &mut Tx, items: &[PendingCallback]) -> Result<Vec<(i64, i64)>, StoreError> {
    let status = |item: &PendingCallback| match item.callback.event {
        Event::Unrecognized => InboxStatus::Unrecognized.as_str(),
        _ => InboxStatus::Stored.as_str(),
    };
    let keys: Vec<String> = items.iter().map(|item| item.callback.dedup_key()).collect();
    let rows: Vec<(i64, i64, String, String)> = sqlx::query_as(
        "INSERT INTO inbox (account, data_type, dedup_key, content_sha256, status, source, body, \
                            first_seen_at, last_seen_at) \
         SELECT account, data_type, dedup_key, content_sha256, status, source, body, received_at, received_at \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[], \
                     $8::timestamptz[]) \
              AS u(account, data_type, dedup_key, content_sha256, status, source, body, received_at) \
         ON CONFLICT (account, dedup_key, content_sha256) DO UPDATE \
         SET last_seen_at = excluded.last_seen_at, times_seen = inbox.times_seen + 1 \
         RETURNING id, times_seen, account, dedup_key",
    )
    .bind(items.iter().map(|i| i.account.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.callback.data_type.as_str()).collect::<Vec<_>>())
    .bind(&keys)
    .bind(items.iter().map(|i| i.callback.content_sha256.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(status).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.source.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.body.as_slice()).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.received_at).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?;
    // RETURNING promises no order: match the rows by their thing (one per group).
    let mut by_thing: HashMap<(String, String), (i64, i64)> =
        rows.into_iter().map(|(id, seen, account, key)| ((account, key), (id, seen))).collect();
    items
        .iter()
        .zip(keys)
        .map(|(item, key)| {
            by_thing
                .remove(&(item.account.clone(), key))
                .ok_or_else(|| StoreError::Missing("an inbox row of the group".into()))
        })
        .collect()
}

type CallRow<'a> = (usize, &'a PendingCallback, i64, &'a CallRecord);

/// Inserts or updates the group's calls and replaces their transcripts; each call's outcome, by
/// its place in the group.
async fn upsert_calls(tx: &mut Tx, calls: &[CallRow<'_>]) -> Result<Vec<(usize, Ingested)>, StoreError> {
    let json = |f: &dyn Fn(&CallRecord) -> String| calls.iter().map(|c| f(c.3)).collect::<Vec<_>>();
    let number = |f: &dyn Fn(&CallRecord) -> Option<i64>| calls.iter().map(|c| f(c.3)).collect::<Vec<_>>();
    let text = |f: &dyn for<'c> Fn(&'c CallRecord) -> Option<&'c str>| calls.iter().map(|c| f(c.3)).collect::<Vec<_>>();
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(concat!(
        "INSERT INTO call_records (account, call_record_id, tenant_id, robot_call_job_id, dialog_flow_id, \
            called_phone_number, result_status, intent_level, intent_grade, customer_concern, \
            full_audio_url, customer_audio_url, analysis_basis, start_time, end_time, chat_duration, \
            chat_round, attributes, properties, extra, source, inbox_id, received_at, updated_at, start_local) \
         SELECT account, call_record_id, tenant_id, robot_call_job_id, dialog_flow_id, called_phone_number, \
            result_status, intent_level, intent_grade, customer_concern::jsonb, full_audio_url, \
            customer_audio_url, analysis_basis, start_time, end_time, chat_duration, chat_round, \
            attributes::jsonb, properties::jsonb, extra::jsonb, source, inbox_id, received_at, received_at, \
            start_local \
         FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::text[], $7::text[], \
            $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::timestamptz[], \
            $15::timestamptz[], $16::int8[], $17::int8[], $18::text[], $19::text[], $20::text[], $21::text[], \
            $22::int8[], $23::timestamptz[], $24::text[]) \
            AS u(account, call_record_id, tenant_id, robot_call_job_id, dialog_flow_id, called_phone_number, \
            result_status, intent_level, intent_grade, customer_concern, full_audio_url, customer_audio_url, \
            analysis_basis, start_time, end_time, chat_duration, chat_round, attributes, properties, extra, \
            source, inbox_id, received_at, start_local) ",
        crate::store::call_upsert_set!(),
        "RETURNING account, call_record_id, revision"
    ))
    .bind(calls.iter().map(|c| c.1.account.as_str()).collect::<Vec<_>>())
    .bind(number(&|c| Some(c.call_record_id)))
    .bind(number(&|c| c.tenant_id))
    .bind(number(&|c| c.robot_call_job_id))
    .bind(number(&|c| c.dialog_flow_id))
    .bind(text(&|c| c.called_phone_number.as_deref()))
    .bind(text(&|c| c.result_status.as_deref()))
    .bind(text(&|c| c.intent_level.as_deref()))
    .bind(text(&|c| c.intent_grade()))
    .bind(json(&|c| to_json(&c.customer_concern)))
    .bind(text(&|c| c.full_audio_url.as_deref()))
    .bind(text(&|c| c.customer_audio_url.as_deref()))
    .bind(text(&|c| c.analysis_basis.as_deref()))
    .bind(calls.iter().map(|c| c.3.start_time).collect::<Vec<_>>())
    .bind(calls.iter().map(|c| c.3.end_time).collect::<Vec<_>>())
    .bind(number(&|c| c.chat_duration))
    .bind(number(&|c| c.chat_round))
    .bind(json(&|c| to_json(&c.attributes)))
    .bind(json(&|c| to_json(&c.properties)))
    .bind(json(&|c| to_json(&c.extra)))
    .bind(calls.iter().map(|c| c.1.source.as_str()).collect::<Vec<_>>())
    .bind(calls.iter().map(|c| c.2).collect::<Vec<_>>())
    .bind(calls.iter().map(|c| c.1.received_at).collect::<Vec<_>>())
    .bind(text(&|c| c.start_local.as_deref()))
    .fetch_all(&mut **tx)
    .await?;
    let revisions: HashMap<(String, i64), i64> =
        rows.into_iter().map(|(account, id, revision)| ((account, id), revision)).collect();
    let mut outcomes = Vec::with_capacity(calls.len());
    let mut changed: (Vec<&str>, Vec<i64>) = (Vec::new(), Vec::new());
    for &(place, item, _, call) in calls {
        let revision = *revisions
            .get(&(item.account.clone(), call.call_record_id))
            .ok_or_else(|| StoreError::Missing(format!("call {} of the group", call.call_record_id)))?;
        if revision > 1 {
            changed.0.push(&item.account);
            changed.1.push(call.call_record_id);
            outcomes.push((place, Ingested::Changed));
        } else {
            outcomes.push((place, Ingested::Created));
        }
    }
    if !changed.1.is_empty() {
        sqlx::query(
            "DELETE FROM call_turns WHERE (account, call_record_id) IN \
             (SELECT * FROM UNNEST($1::text[], $2::int8[]))",
        )
        .bind(&changed.0)
        .bind(&changed.1)
        .execute(&mut **tx)
        .await?;
    }
    insert_turns(tx, calls).await?;
    Ok(outcomes)
}

/// JSON columns travel as text and are cast in the statement (one array type for all of them).
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("JSON values serialize")
}

async fn insert_turns(tx: &mut Tx, calls: &[CallRow<'_>]) -> Result<(), StoreError> {
    let turns: Vec<_> = calls
        .iter()
        .flat_map(|&(_, item, _, call)| call.turns.iter().enumerate().map(move |(seq, turn)| (item, call, seq, turn)))
        .collect();
    if turns.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO call_turns (account, call_record_id, seq, call_detail_id, speaker, text, extra) \
         SELECT account, call_record_id, seq, call_detail_id, speaker, text, extra::jsonb \
         FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::text[], $6::text[], $7::text[]) \
              AS u(account, call_record_id, seq, call_detail_id, speaker, text, extra)",
    )
    .bind(turns.iter().map(|t| t.0.account.as_str()).collect::<Vec<_>>())
    .bind(turns.iter().map(|t| t.1.call_record_id).collect::<Vec<_>>())
    .bind(turns.iter().map(|t| t.2 as i64).collect::<Vec<_>>())
    .bind(turns.iter().map(|t| t.3.call_detail_id.map(|id| id.get())).collect::<Vec<_>>())
    .bind(turns.iter().map(|t| t.3.speaker.as_deref()).collect::<Vec<_>>())
    .bind(turns.iter().map(|t| t.3.text.as_deref()).collect::<Vec<_>>())
    .bind(turns.iter().map(|t| to_json(&t.3.extra)).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The group's events and one delivery per event and target, and one wake-up for the replicas.
async fn insert_events(tx: &mut Tx, events: &[(i64, &Outbound)]) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (id, account, type, payload, inbox_id, created_at, call_record_id, robot_call_job_id) \
         SELECT id, account, type, payload::jsonb, inbox_id, created_at, call_record_id, robot_call_job_id \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::timestamptz[], $7::int8[], \
                     $8::int8[]) \
              AS u(id, account, type, payload, inbox_id, created_at, call_record_id, robot_call_job_id)",
    )
    .bind(events.iter().map(|(_, o)| o.id.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|(_, o)| o.account.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|(_, o)| o.event_type.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|(_, o)| o.payload.get()).collect::<Vec<_>>())
    .bind(events.iter().map(|(inbox_id, _)| *inbox_id).collect::<Vec<_>>())
    .bind(events.iter().map(|(_, o)| o.created_at).collect::<Vec<_>>())
    .bind(events.iter().map(|(_, o)| o.subject.call_record_id).collect::<Vec<_>>())
    .bind(events.iter().map(|(_, o)| o.subject.robot_call_job_id).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    let deliveries: Vec<(&Outbound, &str)> =
        events.iter().flat_map(|(_, o)| o.targets.iter().map(move |t| (*o, t.as_str()))).collect();
    sqlx::query(
        "INSERT INTO deliveries (event_id, target, status, due_at, retry_from, created_at, updated_at) \
         SELECT event_id, target, $3, created_at, created_at, created_at, created_at \
         FROM UNNEST($1::text[], $2::text[], $4::timestamptz[]) AS u(event_id, target, created_at)",
    )
    .bind(deliveries.iter().map(|(o, _)| o.id.as_str()).collect::<Vec<_>>())
    .bind(deliveries.iter().map(|(_, t)| *t).collect::<Vec<_>>())
    .bind(DeliveryStatus::Pending.as_str())
    .bind(deliveries.iter().map(|(o, _)| o.created_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    if let Some(notify) = DIALECT.notify {
        sqlx::query(notify).execute(&mut **tx).await?;
    }
    Ok(())
}
