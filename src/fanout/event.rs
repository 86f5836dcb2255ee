//! The outbound event: what receivers get, in a stable, documented shape (snake_case, UTC times).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::target::Targets;
use crate::platform::callback::{CallRecord, Callback, Event, JobCompletion, SmsRequest};
use crate::store::Ingested;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    CallFinished,
    CallUpdated,
    JobCompleted,
    SmsRequested,
    CallbackUnrecognized,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::CallFinished,
        EventType::CallUpdated,
        EventType::JobCompleted,
        EventType::SmsRequested,
        EventType::CallbackUnrecognized,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CallFinished => "call.finished",
            EventType::CallUpdated => "call.updated",
            EventType::JobCompleted => "job.completed",
            EventType::SmsRequested => "sms.requested",
            EventType::CallbackUnrecognized => "callback.unrecognized",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// One event to announce, as written to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    /// `evt_…`: the `webhook-id` receivers deduplicate on. Never changes across retries.
    pub id: String,
    pub event_type: EventType,
    pub account: String,
    pub created_at: DateTime<Utc>,
    /// The whole envelope, sent as the body.
    pub payload: Value,
    /// Names of the targets that want it.
    pub targets: Vec<String>,
}

/// The outbox entry for a stored callback: its event, for the targets that want it. `None` when
/// there is nothing to announce or no target wants it (then no payload is built at all: this runs
/// on the ingest path).
pub fn announce(
    targets: &Targets,
    account: &str,
    callback: &Callback,
    outcome: Ingested,
    now: DateTime<Utc>,
) -> Option<Outbound> {
    let event_type = event_type_for(callback, outcome)?;
    let wanted_by = targets.matching(event_type, account, callback);
    if wanted_by.is_empty() {
        return None;
    }
    let (id, payload) = envelope(account, callback, event_type, now);
    Some(Outbound { id, event_type, account: account.to_owned(), created_at: now, targets: wanted_by, payload })
}

/// The event a stored callback announces, with its envelope.
pub fn event_for(
    account: &str,
    callback: &Callback,
    outcome: Ingested,
    now: DateTime<Utc>,
) -> Option<(EventType, Value)> {
    let event_type = event_type_for(callback, outcome)?;
    Some((event_type, envelope(account, callback, event_type, now).1))
}

/// New things and changed calls are announced; duplicates are not, and a changed job or SMS (same
/// key, other content) is not a new fact for receivers.
fn event_type_for(callback: &Callback, outcome: Ingested) -> Option<EventType> {
    match (&callback.event, outcome) {
        (_, Ingested::Duplicate) => None,
        (Event::CallRecord(_), Ingested::Created) => Some(EventType::CallFinished),
        (Event::CallRecord(_), Ingested::Changed) => Some(EventType::CallUpdated),
        (Event::JobCompleted(_), Ingested::Created) => Some(EventType::JobCompleted),
        (Event::Sms(_), Ingested::Created) => Some(EventType::SmsRequested),
        (Event::Unrecognized, Ingested::Unrecognized) => Some(EventType::CallbackUnrecognized),
        _ => None,
    }
}

/// A new event id and the body receivers get: `{type, id, timestamp, account, data}`.
fn envelope(account: &str, callback: &Callback, event_type: EventType, now: DateTime<Utc>) -> (String, Value) {
    let data = match &callback.event {
        Event::CallRecord(call) => call_data(call),
        Event::JobCompleted(job) => job_data(job),
        Event::Sms(sms) => sms_data(sms),
        Event::Unrecognized => json!({ "data_type": callback.data_type, "content_sha256": callback.content_sha256 }),
    };
    let id = new_event_id(now);
    let envelope = json!({
        "type": event_type.as_str(),
        "id": id,
        "timestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "account": account,
        "data": data,
    });
    (id, envelope)
}

fn utc(time: Option<DateTime<Utc>>) -> Value {
    time.map_or(Value::Null, |t| json!(t.to_rfc3339_opts(SecondsFormat::Secs, true)))
}

fn call_data(call: &CallRecord) -> Value {
    let transcript: Vec<Value> = call
        .turns
        .iter()
        .map(|t| json!({ "call_detail_id": t.call_detail_id.map(|i| i.get()), "speaker": t.speaker, "text": t.text }))
        .collect();
    json!({
        "call_record_id": call.call_record_id,
        "tenant_id": call.tenant_id,
        "robot_call_job_id": call.robot_call_job_id,
        "dialog_flow_id": call.dialog_flow_id,
        "called_phone_number": call.called_phone_number,
        "result_status": call.result_status,
        "intent_level": call.intent_level,
        "intent_grade": call.intent_grade(),
        "customer_concern": call.customer_concern,
        "full_audio_url": call.full_audio_url,
        "customer_audio_url": call.customer_audio_url,
        "analysis_basis": call.analysis_basis,
        "start_time": utc(call.start_time),
        "end_time": utc(call.end_time),
        "chat_duration": call.chat_duration,
        "chat_round": call.chat_round,
        "attributes": call.attributes,
        "properties": call.properties,
        "transcript": transcript,
        "extra": call.extra,
    })
}

fn job_data(job: &JobCompletion) -> Value {
    json!({
        "robot_call_job_id": job.robot_call_job_id,
        "tenant_id": job.tenant_id,
        "status": job.status,
        "extra": job.extra,
    })
}

fn sms_data(sms: &SmsRequest) -> Value {
    let messages: Vec<Value> = sms
        .messages
        .iter()
        .map(|m| {
            json!({
                "sms_template_id": m.sms_template_id.map(|i| i.get()),
                "sms_template_name": m.sms_template_name,
                "sms_signature_id": m.sms_signature_id.map(|i| i.get()),
                "sms_signature_name": m.sms_signature_name,
                "kind": m.kind,
                "template_text": m.template_text,
                "message": m.message,
                "var_map": m.var_map,
            })
        })
        .collect();
    json!({
        "call_record_id": sms.call_record_id,
        "tenant_id": sms.tenant_id,
        "company_name": sms.company_name,
        "customer_person_id": sms.customer_person_id,
        "customer_person_name": sms.customer_person_name,
        "phone_number": sms.phone_number,
        "robot_call_job_id": sms.robot_call_job_id,
        "robot_call_job_name": sms.robot_call_job_name,
        "messages": messages,
    })
}

/// `evt_` + milliseconds (hex, so ids sort by time) + 64 random bits.
pub fn new_event_id(now: DateTime<Utc>) -> String {
    let mut random = [0u8; 8];
    getrandom::getrandom(&mut random).expect("the operating system's random source works");
    format!("evt_{:012x}{}", now.timestamp_millis().max(0), hex::encode(random))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::callback::parse_callback;

    fn callback(body: &str) -> Callback {
        parse_callback(body.as_bytes(), chrono::FixedOffset::east_opt(8 * 3600).unwrap()).unwrap()
    }

    #[test]
    fn duplicates_announce_nothing_and_changed_calls_are_updates() {
        let call = callback(
            r#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":1,"intentLevel":"0","startTime":"2018-10-12 18:46:55"}}"#,
        );
        let now = Utc::now();
        assert!(event_for("a", &call, Ingested::Duplicate, now).is_none());
        let (kind, envelope) = event_for("a", &call, Ingested::Created, now).unwrap();
        assert_eq!(kind, EventType::CallFinished);
        assert_eq!(envelope["type"], "call.finished");
        assert_eq!(envelope["account"], "a");
        assert_eq!(envelope["data"]["intent_grade"], "A");
        assert_eq!(envelope["data"]["start_time"], "2018-10-12T10:46:55Z");
        assert!(envelope["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(event_for("a", &call, Ingested::Changed, now).unwrap().0, EventType::CallUpdated);
        let job = callback(r#"{"dataType":"ROBOT_CALL_JOB","data":{"robotCallJobId":1}}"#);
        assert!(event_for("a", &job, Ingested::Changed, now).is_none());
    }

    #[test]
    fn event_ids_are_unique_and_sort_by_time() {
        let earlier = new_event_id(Utc::now() - chrono::Duration::seconds(1));
        let a = new_event_id(Utc::now());
        let b = new_event_id(Utc::now());
        assert_ne!(a, b);
        assert!(earlier < a);
    }
}
