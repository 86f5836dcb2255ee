//! Job completions and SMS requests with their messages.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Pool, QueryBuilder};

use super::{Db, Tx, ROWS_PER_INSERT};
use crate::domain::Ingested;
use crate::platform::callback::{JobCompletion, SmsRequest};
use crate::store::{StoreError, StoredJob, StoredSmsMessage};

pub async fn upsert_job(
    tx: &mut Tx,
    account: &str,
    received_at: DateTime<Utc>,
    inbox_id: i64,
    job: &JobCompletion,
) -> Result<Ingested, StoreError> {
    let (revision,): (i64,) = sqlx::query_as(
        "INSERT INTO jobs (account, robot_call_job_id, status, tenant_id, extra, inbox_id, received_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
         ON CONFLICT (account, robot_call_job_id, status) DO UPDATE SET \
            tenant_id = excluded.tenant_id, extra = excluded.extra, inbox_id = excluded.inbox_id, \
            updated_at = excluded.updated_at, revision = jobs.revision + 1 \
         RETURNING revision",
    )
    .bind(account)
    .bind(job.robot_call_job_id)
    .bind(job.status.as_str())
    .bind(job.tenant_id)
    .bind(Json(&job.extra))
    .bind(inbox_id)
    .bind(received_at)
    .fetch_one(&mut **tx)
    .await?;
    Ok(if revision > 1 { Ingested::Changed } else { Ingested::Created })
}

pub async fn insert_sms(
    tx: &mut Tx,
    account: &str,
    received_at: DateTime<Utc>,
    inbox_id: i64,
    content_sha256: &str,
    sms: &SmsRequest,
) -> Result<Ingested, StoreError> {
    // The content hash is part of an SMS request's identity, so a new inbox row always means a new
    // request; the upsert only guards a request whose inbox row was purged.
    let (request_id,): (i64,) = sqlx::query_as(
        "INSERT INTO sms_requests (account, call_record_id, content_sha256, tenant_id, company_name, \
            customer_person_id, customer_person_name, phone_number, robot_call_job_id, \
            robot_call_job_name, extra, inbox_id, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (account, call_record_id, content_sha256) DO UPDATE SET inbox_id = excluded.inbox_id \
         RETURNING id",
    )
    .bind(account)
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
    .bind(received_at)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM sms_messages WHERE sms_request_id = $1").bind(request_id).execute(&mut **tx).await?;
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
