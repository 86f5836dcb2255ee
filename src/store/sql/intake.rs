//! The write path of a callback: the raw inbox row, the normalized rows, and the event its outcome
//! announces with one delivery per target, all in one transaction.

use sqlx::Pool;

use super::{calls, inbox, jobs_sms, outbox, Tx, DIALECT};
use crate::domain::{InboxStatus, Ingested, Outbound};
use crate::platform::callback::Event;
use crate::store::rows::InboxRow;
use crate::store::{PendingCallback, Recorded, StoreError};

/// Several callbacks in one transaction, each inside a savepoint: one that fails is undone alone
/// and reported alone; a failed commit fails them all. Each gets its own outcome, in order.
pub async fn record(pool: &Pool<super::Db>, mut pending: Vec<PendingCallback>) -> Vec<Recorded> {
    let mut tx = match pool.begin_with(DIALECT.begin_write).await {
        Ok(tx) => tx,
        Err(e) => return all_failed(pending, e.into()),
    };
    let mut stored = Vec::with_capacity(pending.len());
    // Alone, a callback's failure is the transaction's: no savepoint needed.
    let isolate = pending.len() > 1;
    for item in &mut pending {
        if isolate {
            if let Err(e) = sqlx::query("SAVEPOINT one_callback").execute(&mut *tx).await {
                return all_failed(pending, e.into());
            }
        }
        let result = store_one(&mut tx, item).await;
        if !isolate && result.is_err() {
            // Ended now rather than when the connection is next used: an open transaction holds
            // locks. Whether the rollback itself fails does not change the outcome.
            let _ = tx.rollback().await;
            return pending.into_iter().map(|item| item.callback).zip([result]).collect();
        }
        if isolate {
            let end =
                if result.is_ok() { "RELEASE SAVEPOINT one_callback" } else { "ROLLBACK TO SAVEPOINT one_callback" };
            if let Err(e) = sqlx::query(end).execute(&mut *tx).await {
                return all_failed(pending, e.into());
            }
        }
        stored.push(result);
    }
    if let Err(e) = tx.commit().await {
        return all_failed(pending, e.into());
    }
    pending.into_iter().map(|item| item.callback).zip(stored).collect()
}

fn all_failed(pending: Vec<PendingCallback>, error: StoreError) -> Vec<Recorded> {
    pending.into_iter().map(|item| (item.callback, Err(error.clone()))).collect()
}

async fn store_one(tx: &mut Tx, item: &mut PendingCallback) -> Result<(Ingested, Option<Outbound>), StoreError> {
    let callback = &item.callback;
    let status = match callback.event {
        Event::Unrecognized => InboxStatus::Unrecognized,
        _ => InboxStatus::Stored,
    };
    let dedup_key = callback.dedup_key();
    let row = InboxRow {
        account: &item.account,
        body: &item.body,
        source: item.source,
        received_at: item.received_at,
        data_type: Some(&callback.data_type),
        dedup_key: &dedup_key,
        content_sha256: &callback.content_sha256,
        status,
        error: None,
    };
    let (inbox_id, times_seen) = inbox::upsert(tx, &row).await?;
    let (account, at) = (item.account.as_str(), item.received_at);
    let outcome = if times_seen > 1 {
        Ingested::Duplicate
    } else {
        match &callback.event {
            Event::CallRecord(call) => calls::upsert(tx, account, item.source, at, inbox_id, call).await?,
            Event::JobCompleted(job) => jobs_sms::upsert_job(tx, account, at, inbox_id, job).await?,
            Event::Sms(sms) => jobs_sms::insert_sms(tx, account, at, inbox_id, &callback.content_sha256, sms).await?,
            Event::Unrecognized => Ingested::Unrecognized,
        }
    };
    let outbound = item.announcements.take(outcome).filter(|o| !o.targets.is_empty());
    if let Some(outbound) = &outbound {
        outbox::insert(tx, Some(inbox_id), outbound).await?;
    }
    Ok((outcome, outbound))
}
