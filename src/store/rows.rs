//! Rows as the store gives them back (to tests, the admin API, the console and the CLI), and the
//! filters and reports the store's operations take and give. Statuses are enums, read from their
//! text once here.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::types::Json;

use crate::domain::{DeliveryStatus, EventSubject, EventType, InboxStatus, Source};

/// A body as it arrived, with what its inbox row says about it.
pub(super) struct InboxRow<'a> {
    pub account: &'a str,
    pub body: &'a [u8],
    pub source: Source,
    pub received_at: DateTime<Utc>,
    pub data_type: Option<&'a str>,
    pub dedup_key: &'a str,
    pub content_sha256: &'a str,
    pub status: InboxStatus,
    pub error: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct InboxEntry {
    pub id: i64,
    pub account: String,
    pub data_type: Option<String>,
    pub dedup_key: String,
    pub content_sha256: String,
    #[sqlx(try_from = "String")]
    pub status: InboxStatus,
    pub error: Option<String>,
    #[sqlx(try_from = "String")]
    pub source: Source,
    pub body: Option<Vec<u8>>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub times_seen: i64,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredCall {
    pub account: String,
    pub call_record_id: i64,
    pub tenant_id: Option<i64>,
    pub robot_call_job_id: Option<i64>,
    pub dialog_flow_id: Option<i64>,
    pub called_phone_number: Option<String>,
    pub result_status: Option<String>,
    pub intent_level: Option<String>,
    pub intent_grade: Option<String>,
    pub customer_concern: Json<Value>,
    pub full_audio_url: Option<String>,
    pub customer_audio_url: Option<String>,
    pub analysis_basis: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub chat_duration: Option<i64>,
    pub chat_round: Option<i64>,
    pub attributes: Json<Value>,
    pub properties: Json<Value>,
    pub extra: Json<Value>,
    #[sqlx(try_from = "String")]
    pub source: Source,
    pub inbox_id: i64,
    pub revision: i64,
    pub received_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub intent_level_name: Option<String>,
    pub real_intent_level: Option<String>,
    pub real_intent_level_name: Option<String>,
    pub intent_level_tag_id: Option<i64>,
    pub customer: Option<Json<Value>>,
    pub enriched_at: Option<DateTime<Utc>>,
    pub start_local: Option<String>,
}

/// What `callDetail` adds to a pushed call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Enrichment {
    pub intent_level_name: Option<String>,
    /// The intent level a person corrected, when one did.
    pub real_intent_level: Option<String>,
    pub real_intent_level_name: Option<String>,
    pub intent_level_tag_id: Option<i64>,
    pub customer: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredTurn {
    pub seq: i64,
    pub call_detail_id: Option<i64>,
    pub speaker: Option<String>,
    pub text: Option<String>,
    pub extra: Json<Value>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredJob {
    pub account: String,
    pub robot_call_job_id: i64,
    pub status: String,
    pub tenant_id: Option<i64>,
    pub extra: Json<Value>,
    pub revision: i64,
    pub received_at: DateTime<Utc>,
}

/// One message of an SMS request, with the request's fields alongside.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredSmsMessage {
    pub call_record_id: i64,
    pub content_sha256: String,
    pub tenant_id: Option<i64>,
    pub company_name: Option<String>,
    pub customer_person_id: Option<i64>,
    pub customer_person_name: Option<String>,
    pub phone_number: Option<String>,
    pub robot_call_job_id: Option<i64>,
    pub robot_call_job_name: Option<String>,
    pub seq: i64,
    pub sms_template_id: Option<i64>,
    pub sms_template_name: Option<String>,
    pub sms_signature_id: Option<i64>,
    pub sms_signature_name: Option<String>,
    pub kind: Option<String>,
    pub template_text: Option<String>,
    pub message: Option<String>,
    pub var_map: Json<Value>,
}

/// A delivery this worker has just claimed (its lease runs until `due_at` was pushed to).
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub event_id: String,
    pub account: String,
    pub subject: EventSubject,
    /// This attempt's number, from 1.
    pub attempts: i64,
    pub retry_from: DateTime<Utc>,
    /// The body to send, as stored.
    pub payload: Box<RawValue>,
}

#[derive(sqlx::FromRow)]
pub(super) struct ClaimedRow {
    pub id: i64,
    pub event_id: String,
    pub account: String,
    pub call_record_id: Option<i64>,
    pub robot_call_job_id: Option<i64>,
    pub attempts: i64,
    pub retry_from: DateTime<Utc>,
    pub payload: Json<Box<RawValue>>,
}

impl From<ClaimedRow> for ClaimedDelivery {
    fn from(row: ClaimedRow) -> Self {
        ClaimedDelivery {
            id: row.id,
            event_id: row.event_id,
            account: row.account,
            subject: EventSubject { call_record_id: row.call_record_id, robot_call_job_id: row.robot_call_job_id },
            attempts: row.attempts,
            retry_from: row.retry_from,
            payload: row.payload.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    pub event_id: String,
    #[sqlx(try_from = "String")]
    pub event_type: EventType,
    pub account: String,
    pub target: String,
    #[sqlx(try_from = "String")]
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub due_at: DateTime<Utc>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct AttemptRow {
    pub attempt: i64,
    pub worker: String,
    pub started_at: DateTime<Utc>,
    pub latency_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub response_snippet: Option<String>,
}

/// Which deliveries to list; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub id: Option<i64>,
    pub target: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<EventType>,
    pub event_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: Option<i64>,
}

/// One attempt's result, as the worker reports it, and what it means for the delivery.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub delivery_id: i64,
    pub attempt: i64,
    pub started_at: DateTime<Utc>,
    pub latency_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub response_snippet: Option<String>,
    pub after: AfterAttempt,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    Delivered,
    RetryAt(DateTime<Utc>),
    Dead,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct EventRow {
    pub id: String,
    pub account: String,
    #[serde(rename = "type")]
    #[sqlx(try_from = "String")]
    pub event_type: EventType,
    pub created_at: DateTime<Utc>,
    pub payload: Json<Value>,
}

/// Which events to list; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub id: Option<String>,
    pub account: Option<String>,
    pub event_type: Option<EventType>,
    pub since: Option<DateTime<Utc>>,
    pub limit: Option<i64>,
}

/// One target's queue, for metrics.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct QueueStats {
    pub target: String,
    pub pending: i64,
    pub dead: i64,
    /// When the longest-waiting pending delivery became due.
    pub oldest_due_at: Option<DateTime<Utc>>,
}

/// What a purge removes: everything older than each cutoff (`None`: keep).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cutoffs {
    /// Inbox bodies last seen before this are dropped (the rows stay).
    pub raw_bodies_before: Option<DateTime<Utc>>,
    /// Transcripts of calls received before this are deleted.
    pub transcripts_before: Option<DateTime<Utc>>,
    /// Delivered deliveries finished before this are deleted, with their attempts, and events
    /// left with no delivery.
    pub deliveries_before: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PurgeReport {
    pub raw_bodies_dropped: u64,
    pub transcript_turns_deleted: u64,
    pub deliveries_deleted: u64,
    pub events_deleted: u64,
}

/// What one reconciliation run of a job found: the calls the platform listed, those stored now
/// because they were missing, and those that could not be parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reconciled {
    pub robot_call_job_id: i64,
    pub listed: u64,
    pub backfilled: u64,
    pub rejected: u64,
}

/// The operator event last announced about a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobAnnouncement {
    #[default]
    Nothing,
    Incomplete,
    Reconciled,
}

impl JobAnnouncement {
    pub fn event_type(self) -> Option<EventType> {
        match self {
            JobAnnouncement::Nothing => None,
            JobAnnouncement::Incomplete => Some(EventType::JobIncomplete),
            JobAnnouncement::Reconciled => Some(EventType::JobReconciled),
        }
    }
}

impl TryFrom<Option<String>> for JobAnnouncement {
    type Error = crate::domain::ParseStatusError;

    fn try_from(text: Option<String>) -> Result<Self, Self::Error> {
        match text.as_deref().map(EventType::parse) {
            None => Ok(JobAnnouncement::Nothing),
            Some(Some(EventType::JobIncomplete)) => Ok(JobAnnouncement::Incomplete),
            Some(Some(EventType::JobReconciled)) => Ok(JobAnnouncement::Reconciled),
            Some(_) => Err(crate::domain::ParseStatusError::new("job announcement", text.as_deref().unwrap_or(""))),
        }
    }
}

/// A job's completeness figures as the database has them (`report_job_completeness`), before
/// they are judged complete or not.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct JobProgress {
    pub account: String,
    pub robot_call_job_id: i64,
    pub completion_received_at: Option<DateTime<Utc>>,
    pub calls_pushed: i64,
    pub calls_backfilled: i64,
    /// Finished calls the platform listed at the last reconciliation; `None`: never reconciled.
    pub calls_listed: Option<i64>,
    pub calls_missing: Option<i64>,
    pub calls_rejected: Option<i64>,
    pub reconciliation_runs: Option<i64>,
    pub reconciled_at: Option<DateTime<Utc>>,
    #[sqlx(try_from = "Option<String>")]
    pub announced: JobAnnouncement,
    pub announced_at: Option<DateTime<Utc>>,
    /// Per target, its deliveries of the job's events (operator events left out).
    #[sqlx(skip)]
    pub deliveries: Vec<TargetDeliveries>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TargetDeliveries {
    pub target: String,
    pub delivered: i64,
    pub pending: i64,
    pub dead: i64,
}

/// Rows an erasure changed, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErasureCounts {
    pub call_records: u64,
    pub call_turns: u64,
    pub sms_requests: u64,
    pub sms_messages: u64,
    pub inbox_bodies: u64,
    pub events: u64,
    pub deliveries_cancelled: u64,
    pub attempt_snippets: u64,
    /// Other rows that mentioned the number (another call's transcript or properties, an
    /// answer of a receiver, a rejected body).
    pub other_rows: u64,
}

/// One erasure, as its log keeps it: the number only as a keyed hash.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct ErasureEntry {
    pub id: i64,
    pub account: String,
    pub phone_hash: String,
    pub requested_by: String,
    pub erased_at: DateTime<Utc>,
    pub call_record_ids: Json<Vec<i64>>,
    pub counts: Json<ErasureCounts>,
}

/// Whom an erasure is about: the number, and what the store found for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureSubject {
    pub account: String,
    pub phone_number: String,
    pub call_record_ids: Vec<i64>,
    /// The names the person's records give them.
    pub names: Vec<String>,
}

/// Rows outside a person's own calls that mention their number or name, found by reading and
/// cleared by id afterwards.
#[derive(Debug, Default)]
pub struct Mentions {
    pub(in crate::store) inbox: Vec<i64>,
    pub(in crate::store) events: Vec<(String, String, Option<i64>)>,
    /// (call_record_id, seq)
    pub(in crate::store) turns: Vec<(i64, i64)>,
    pub(in crate::store) calls: Vec<i64>,
    /// (sms_request_id, seq)
    pub(in crate::store) sms_messages: Vec<(i64, i64)>,
    pub(in crate::store) attempts: Vec<i64>,
    pub(in crate::store) deliveries: Vec<i64>,
}

/// One job of `report_job_summary`: its calls, answers and intent grades.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct JobSummary {
    pub robot_call_job_id: i64,
    pub calls: i64,
    pub answered: i64,
    pub answer_rate: Option<f64>,
    pub grade_a: i64,
    pub grade_b: i64,
    pub grade_c: i64,
    pub grade_d: i64,
    pub grade_e: i64,
    pub grade_f: i64,
    pub grade_other: i64,
    pub first_call_at: Option<DateTime<Utc>>,
    pub last_call_at: Option<DateTime<Utc>>,
    pub job_completed_at: Option<DateTime<Utc>>,
}

impl JobSummary {
    /// The A–F counts, in order.
    pub fn grades(&self) -> [i64; 6] {
        [self.grade_a, self.grade_b, self.grade_c, self.grade_d, self.grade_e, self.grade_f]
    }
}

/// Which calls to list; every field narrows. Pages go by `before_call_record_id` (the last id of
/// the previous page), which stays fast however deep the page.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub robot_call_job_id: Option<i64>,
    pub result_status: Option<String>,
    pub intent_grade: Option<String>,
    pub started_from: Option<DateTime<Utc>>,
    pub started_before: Option<DateTime<Utc>>,
    pub before_call_record_id: Option<i64>,
    pub limit: i64,
}

/// A call as a list shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct CallListRow {
    pub call_record_id: i64,
    pub robot_call_job_id: Option<i64>,
    pub called_phone_number: Option<String>,
    pub result_status: Option<String>,
    pub intent_level: Option<String>,
    pub intent_grade: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    pub chat_duration: Option<i64>,
}
