//! The outbound event's body: what receivers get, in a stable, documented shape
//! (`{type, id, timestamp, account, data}`, `data` snake_case with UTC times).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::target::Targets;
use crate::domain::{new_event_id, Announcements, EventSubject, EventType, Outbound};
use crate::platform::callback::{CallRecord, Callback, Event, JobCompletion, SmsRequest};

/// The events a callback would announce, for the targets that want each. Nothing is built when no
/// target wants any (this runs on the ingest path); otherwise `data` is serialized once and shared
/// by both candidates.
pub fn announcements(targets: &Targets, account: &str, callback: &Callback, now: DateTime<Utc>) -> Announcements {
    let (if_created, if_changed) = event_types(callback);
    let wanted = |event_type: Option<EventType>| {
        event_type.map(|t| (t, targets.matching(t, account, callback))).filter(|(_, names)| !names.is_empty())
    };
    let (created, changed) = (wanted(if_created), wanted(if_changed));
    if created.is_none() && changed.is_none() {
        return Announcements::NONE;
    }
    let data = serde_json::to_string(&data(callback)).expect("JSON values always serialize");
    let id = new_event_id(now);
    let subject = subject(callback);
    let make = |(event_type, targets): (EventType, Vec<String>)| Outbound {
        payload: envelope(event_type, &id, account, now, &data),
        id: id.clone(),
        event_type,
        account: account.to_owned(),
        created_at: now,
        subject,
        targets,
    };
    Announcements { created: created.map(make), changed: changed.map(make) }
}

/// New things and changed calls are announced; duplicates are not, and a changed job or SMS (same
/// key, other content) is not a new fact for receivers.
fn event_types(callback: &Callback) -> (Option<EventType>, Option<EventType>) {
    match &callback.event {
        Event::CallRecord(_) => (Some(EventType::CallFinished), Some(EventType::CallUpdated)),
        Event::JobCompleted(_) => (Some(EventType::JobCompleted), None),
        Event::Sms(_) => (Some(EventType::SmsRequested), None),
        Event::Unrecognized => (Some(EventType::CallbackUnrecognized), None),
    }
}

fn subject(callback: &Callback) -> EventSubject {
    match &callback.event {
        Event::CallRecord(call) => {
            EventSubject { call_record_id: Some(call.call_record_id), robot_call_job_id: call.robot_call_job_id }
        }
        Event::JobCompleted(job) => {
            EventSubject { call_record_id: None, robot_call_job_id: Some(job.robot_call_job_id) }
        }
        Event::Sms(sms) => {
            EventSubject { call_record_id: Some(sms.call_record_id), robot_call_job_id: sms.robot_call_job_id }
        }
        Event::Unrecognized => EventSubject::default(),
    }
}

/// An operator event (the relay's own finding, not a callback's) for the targets that want it;
/// `None` when none does.
pub fn operator_event(
    targets: &Targets,
    event_type: EventType,
    account: &str,
    subject: EventSubject,
    data: &Value,
    now: DateTime<Utc>,
) -> Option<Outbound> {
    let targets = targets.wanting_operator_event(event_type, account);
    if targets.is_empty() {
        return None;
    }
    let id = new_event_id(now);
    let payload = envelope(event_type, &id, account, now, &data.to_string());
    Some(Outbound { id, event_type, account: account.to_owned(), created_at: now, subject, payload, targets })
}

fn envelope(event_type: EventType, id: &str, account: &str, now: DateTime<Utc>, data: &str) -> Box<RawValue> {
    let text = format!(
        r#"{{"type":"{}","id":"{id}","timestamp":"{}","account":{},"data":{data}}}"#,
        event_type.as_str(),
        now.to_rfc3339_opts(SecondsFormat::Millis, true),
        Value::String(account.to_owned()),
    );
    RawValue::from_string(text).expect("the envelope is JSON built from JSON parts")
}

fn data(callback: &Callback) -> Value {
    match &callback.event {
        Event::CallRecord(call) => call_data(call),
        Event::JobCompleted(job) => job_data(job),
        Event::Sms(sms) => sms_data(sms),
        Event::Unrecognized => json!({ "data_type": callback.data_type, "content_sha256": callback.content_sha256 }),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::callback::parse_callback;

    fn callback(body: &str) -> Callback {
        parse_callback(body.as_bytes(), chrono::FixedOffset::east_opt(8 * 3600).unwrap()).unwrap()
    }

    fn every_event() -> Targets {
        Targets::for_tests(&["all"])
    }

    #[test]
    fn a_call_announces_a_finish_when_new_and_an_update_when_changed() {
        let call = callback(
            r#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":1,"robotCallJobId":7,"intentLevel":"0","startTime":"2018-10-12 18:46:55"}}"#,
        );
        let now = Utc::now();
        let announced = announcements(&every_event(), "a", &call, now);
        let created = announced.created.as_ref().unwrap();
        assert_eq!(created.event_type, EventType::CallFinished);
        assert_eq!(created.subject, EventSubject { call_record_id: Some(1), robot_call_job_id: Some(7) });
        let envelope: Value = serde_json::from_str(created.payload.get()).unwrap();
        assert_eq!(envelope["type"], "call.finished");
        assert_eq!(envelope["id"], created.id.as_str());
        assert_eq!(envelope["account"], "a");
        assert_eq!(envelope["data"]["intent_grade"], "A");
        assert_eq!(envelope["data"]["start_time"], "2018-10-12T10:46:55Z");
        assert!(created.id.starts_with("evt_"));
        let changed = announced.changed.as_ref().unwrap();
        assert_eq!(changed.event_type, EventType::CallUpdated);
        let envelope: Value = serde_json::from_str(changed.payload.get()).unwrap();
        assert_eq!(envelope["type"], "call.updated");
        let job = callback(r#"{"dataType":"ROBOT_CALL_JOB","data":{"robotCallJobId":1}}"#);
        let announced = announcements(&every_event(), "a", &job, now);
        assert!(announced.changed.is_none(), "a changed job is not announced");
        assert_eq!(announced.created.unwrap().subject.robot_call_job_id, Some(1));
    }

    #[test]
    fn nothing_is_built_when_no_target_wants_it() {
        let call = callback(r#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":1}}"#);
        let announced = announcements(&Targets::default(), "a", &call, Utc::now());
        assert!(announced.created.is_none() && announced.changed.is_none());
    }

    #[test]
    fn account_names_are_escaped_in_the_envelope() {
        let call = callback(r#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":1}}"#);
        let announced = announcements(&every_event(), "a\"b", &call, Utc::now());
        let envelope: Value = serde_json::from_str(announced.created.unwrap().payload.get()).unwrap();
        assert_eq!(envelope["account"], "a\"b");
    }
}
