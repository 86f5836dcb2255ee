//! The callback envelope (`{"dataType": …, "data": {…}}`) turned into typed events.
//!
//! Only the natural ids are required. Every other field may be missing or null, unknown fields are
//! kept in `extra`, and enum-like strings (result status, intent level, speaker) are kept verbatim,
//! because the platform adds values over time and an unknown value is data, not an error.

use chrono::{DateTime, Datelike, FixedOffset, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::localtime::parse_platform_time;

/// Platform times outside these years are refused: no call happened before 1970, none is planned
/// after 2200, and both databases store every time in between.
pub const EARLIEST_YEAR: i32 = 1970;
pub const LATEST_YEAR: i32 = 2200;

pub const CALL_RECORD: &str = "ROBOT_CALL_RECORD";
pub const JOB_COMPLETED: &str = "ROBOT_CALL_JOB";
pub const SMS: &str = "ROBOT_CALL_SMS";

/// One authenticated callback, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    pub data_type: String,
    /// Hash of the envelope's canonical JSON: equal content hashes equal whatever the key order
    /// or white space, so a re-sent callback is recognised as the same one.
    pub content_sha256: String,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    CallRecord(CallRecord),
    JobCompleted(JobCompletion),
    Sms(SmsRequest),
    /// A `dataType` this version does not know: kept raw, acknowledged.
    Unrecognized,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub call_record_id: i64,
    pub tenant_id: Option<i64>,
    pub robot_call_job_id: Option<i64>,
    pub dialog_flow_id: Option<i64>,
    pub called_phone_number: Option<String>,
    pub result_status: Option<String>,
    pub intent_level: Option<String>,
    pub customer_concern: Vec<String>,
    pub full_audio_url: Option<String>,
    pub customer_audio_url: Option<String>,
    pub analysis_basis: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    /// The start in the account's zone, `YYYY-MM-DD HH:MM:SS`: the campaign's local day and hour.
    pub start_local: Option<String>,
    pub end_time: Option<DateTime<Utc>>,
    pub chat_duration: Option<i64>,
    pub chat_round: Option<i64>,
    pub attributes: Vec<String>,
    pub properties: Map<String, Value>,
    pub turns: Vec<Turn>,
    pub extra: Map<String, Value>,
}

impl CallRecord {
    /// The intent level as one of the built-in grades A–F, when it is one of them or of their
    /// codes 0–5 (built-in tag group 0). Custom tag groups give `None`; the verbatim value stays.
    pub fn intent_grade(&self) -> Option<&'static str> {
        self.intent_level.as_deref().and_then(intent_grade)
    }
}

pub fn intent_grade(level: &str) -> Option<&'static str> {
    const GRADES: [&str; 6] = ["A", "B", "C", "D", "E", "F"];
    let level = level.trim();
    if let Ok(code) = level.parse::<usize>() {
        return GRADES.get(code).copied();
    }
    GRADES.iter().copied().find(|grade| grade.eq_ignore_ascii_case(level))
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Turn {
    #[serde(default)]
    pub call_detail_id: Option<Int>,
    /// `ROBOT` or `PERSON`, kept verbatim.
    #[serde(default, rename = "type")]
    pub speaker: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobCompletion {
    pub robot_call_job_id: i64,
    pub tenant_id: Option<i64>,
    pub status: String,
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SmsRequest {
    pub call_record_id: i64,
    pub tenant_id: Option<i64>,
    pub company_name: Option<String>,
    pub customer_person_id: Option<i64>,
    pub customer_person_name: Option<String>,
    pub phone_number: Option<String>,
    /// `robotCallRobotId` on the wire: the job (task) the call belonged to.
    pub robot_call_job_id: Option<i64>,
    pub robot_call_job_name: Option<String>,
    pub messages: Vec<SmsMessage>,
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SmsMessage {
    #[serde(default)]
    pub sms_template_id: Option<Int>,
    #[serde(default)]
    pub sms_template_name: Option<String>,
    #[serde(default)]
    pub sms_signature_id: Option<Int>,
    #[serde(default)]
    pub sms_signature_name: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The template, with `${variable}` placeholders.
    #[serde(default, rename = "text")]
    pub template_text: Option<String>,
    /// The final text sent to the customer.
    #[serde(default, rename = "msg")]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub var_map: Map<String, Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a body is not a callback we can store as data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("{0}")]
    BadEnvelope(String),
    #[error("{field}: {reason}")]
    BadField { field: String, reason: String },
    /// Over one of the caps of `limits`.
    #[error("{field}: {reason}")]
    TooLarge { field: String, reason: String },
}

impl From<super::limits::TooLarge> for ParseError {
    fn from(over: super::limits::TooLarge) -> Self {
        ParseError::TooLarge { field: over.field, reason: over.reason }
    }
}

/// Parses a callback body. `offset` is the account's UTC offset, used for the platform's zoneless
/// local times.
pub fn parse_callback(body: &[u8], offset: FixedOffset) -> Result<Callback, ParseError> {
    super::limits::check_value_count(body)?;
    let mut envelope: Value = serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    super::limits::check_sizes(&envelope)?;
    let content_sha256 = canonical_sha256(&envelope);
    // Postgres text and jsonb cannot hold NUL; the raw body (kept as bytes) still has it.
    strip_nul(&mut envelope);
    let Value::Object(mut envelope) = envelope else {
        return Err(ParseError::BadEnvelope("body must be a JSON object".into()));
    };
    let data_type = match envelope.remove("dataType") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(_) => return Err(ParseError::BadEnvelope("dataType must be a non-empty string".into())),
        None => return Err(ParseError::BadEnvelope("dataType is missing".into())),
    };
    let data = match envelope.remove("data") {
        Some(Value::Object(data)) => data,
        Some(_) => return Err(ParseError::BadEnvelope("data must be a JSON object".into())),
        None => return Err(ParseError::BadEnvelope("data is missing".into())),
    };
    let event = match data_type.as_str() {
        CALL_RECORD => Event::CallRecord(parse_call_record(data, offset)?),
        JOB_COMPLETED => Event::JobCompleted(parse_job(data)?),
        SMS => Event::Sms(parse_sms(data)?),
        _ => Event::Unrecognized,
    };
    Ok(Callback { data_type, content_sha256, event })
}

impl Callback {
    /// The identity of the thing this callback is about (DESIGN invariant 2). Together with the
    /// content hash it tells a re-sent callback from a changed one.
    pub fn dedup_key(&self) -> String {
        match &self.event {
            Event::CallRecord(call) => format!("call:{}", call.call_record_id),
            Event::JobCompleted(job) => format!("job:{}:{}", job.robot_call_job_id, job.status),
            Event::Sms(sms) => format!("sms:{}:{}", sms.call_record_id, self.content_sha256),
            Event::Unrecognized => format!("unrecognized:{}", self.content_sha256),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCallRecord {
    #[serde(default)]
    call_record_id: Option<Int>,
    #[serde(default)]
    tenant_id: Option<Int>,
    #[serde(default)]
    robot_call_job_id: Option<Int>,
    #[serde(default)]
    dialog_flow_id: Option<Int>,
    #[serde(default)]
    called_phone_number: Option<String>,
    #[serde(default)]
    result_status: Option<String>,
    #[serde(default)]
    intent_level: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    customer_concern: Vec<String>,
    #[serde(default)]
    full_audio_url: Option<String>,
    #[serde(default)]
    customer_audio_url: Option<String>,
    #[serde(default)]
    analysis_basis: Option<String>,
    #[serde(default)]
    start_time: Option<String>,
    #[serde(default)]
    end_time: Option<String>,
    #[serde(default)]
    chat_duration: Option<Int>,
    #[serde(default)]
    chat_round: Option<Int>,
    #[serde(default, deserialize_with = "null_as_default")]
    attributes: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    properties: Map<String, Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    call_detail_list: Vec<Turn>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

fn parse_call_record(data: Map<String, Value>, offset: FixedOffset) -> Result<CallRecord, ParseError> {
    let wire: WireCallRecord = typed(data)?;
    let time = |field: &str, text: Option<String>| -> Result<Option<DateTime<Utc>>, ParseError> {
        match text.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(text) => match parse_platform_time(text, offset) {
                Some(time) if (EARLIEST_YEAR..=LATEST_YEAR).contains(&time.year()) => Ok(Some(time)),
                Some(_) => Err(ParseError::BadField {
                    field: format!("data.{field}"),
                    reason: format!("outside the years {EARLIEST_YEAR} to {LATEST_YEAR}"),
                }),
                None => Err(ParseError::BadField {
                    field: format!("data.{field}"),
                    reason: "expected a time like 2018-10-12 18:46:55".into(),
                }),
            },
        }
    };
    let start_time = time("startTime", wire.start_time)?;
    Ok(CallRecord {
        call_record_id: required(wire.call_record_id, "callRecordId")?,
        tenant_id: wire.tenant_id.map(Int::get),
        robot_call_job_id: wire.robot_call_job_id.map(Int::get),
        dialog_flow_id: wire.dialog_flow_id.map(Int::get),
        called_phone_number: wire.called_phone_number,
        result_status: wire.result_status,
        intent_level: wire.intent_level,
        customer_concern: wire.customer_concern,
        full_audio_url: wire.full_audio_url,
        customer_audio_url: wire.customer_audio_url,
        analysis_basis: wire.analysis_basis,
        start_time,
        start_local: start_time.map(|t| t.with_timezone(&offset).format("%Y-%m-%d %H:%M:%S").to_string()),
        end_time: time("endTime", wire.end_time)?,
        chat_duration: wire.chat_duration.map(Int::get),
        chat_round: wire.chat_round.map(Int::get),
        attributes: wire.attributes,
        properties: wire.properties,
        turns: wire.call_detail_list,
        extra: wire.extra,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireJob {
    #[serde(default)]
    robot_call_job_id: Option<Int>,
    #[serde(default)]
    tenant_id: Option<Int>,
    #[serde(default)]
    status: Option<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

fn parse_job(data: Map<String, Value>) -> Result<JobCompletion, ParseError> {
    let wire: WireJob = typed(data)?;
    Ok(JobCompletion {
        robot_call_job_id: required(wire.robot_call_job_id, "robotCallJobId")?,
        tenant_id: wire.tenant_id.map(Int::get),
        // The platform documents this event as always COMPLETED; an absent status means that.
        status: wire.status.filter(|s| !s.is_empty()).unwrap_or_else(|| "COMPLETED".into()),
        extra: wire.extra,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSms {
    #[serde(default)]
    call_record_id: Option<Int>,
    #[serde(default)]
    tenant_id: Option<Int>,
    #[serde(default)]
    company_name: Option<String>,
    #[serde(default)]
    customer_person_id: Option<Int>,
    #[serde(default)]
    customer_person_name: Option<String>,
    #[serde(default)]
    phone_number: Option<String>,
    #[serde(default)]
    robot_call_robot_id: Option<Int>,
    #[serde(default)]
    robot_call_robot_name: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    msg_list: Vec<SmsMessage>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

fn parse_sms(data: Map<String, Value>) -> Result<SmsRequest, ParseError> {
    let wire: WireSms = typed(data)?;
    Ok(SmsRequest {
        call_record_id: required(wire.call_record_id, "callRecordId")?,
        tenant_id: wire.tenant_id.map(Int::get),
        company_name: wire.company_name,
        customer_person_id: wire.customer_person_id.map(Int::get),
        customer_person_name: wire.customer_person_name,
        phone_number: wire.phone_number,
        robot_call_job_id: wire.robot_call_robot_id.map(Int::get),
        robot_call_job_name: wire.robot_call_robot_name,
        messages: wire.msg_list,
        extra: wire.extra,
    })
}

fn typed<T: for<'de> Deserialize<'de>>(data: Map<String, Value>) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(Value::Object(data)).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "data".to_owned() } else { format!("data.{path}") };
        ParseError::BadField { field, reason: without_value(&e.into_inner().to_string()) }
    })
}

/// serde quotes the offending value (`invalid type: integer `17751279857`, expected a string`);
/// that value may be a phone number, and this reason goes to logs, answers and the inbox. Keep only
/// what was expected.
fn without_value(message: &str) -> String {
    match message.split_once(", expected ") {
        Some((_, expected)) => format!("wrong type or value, expected {expected}"),
        None if message.contains('`') => "wrong type or value".to_owned(),
        None => message.to_owned(),
    }
}

fn required(value: Option<Int>, field: &str) -> Result<i64, ParseError> {
    value
        .map(Int::get)
        .ok_or_else(|| ParseError::BadField { field: format!("data.{field}"), reason: "is required".into() })
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A 64-bit integer as the platform may write it: a JSON integer, an integral float (`37.0`) or a
/// decimal string (`"37"`). Anything else, or a value outside i64, is a wrong type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int(i64);

impl Int {
    pub fn get(self) -> i64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntVisitor;
        impl Visitor<'_> for IntVisitor {
            type Value = Int;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a 64-bit integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v).map(Int).map_err(|_| E::custom("integer out of range for int64"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Int, E> {
                // 2^63 is exactly representable as f64; anything at or beyond it does not fit.
                const LIMIT: f64 = 9_223_372_036_854_775_808.0;
                if v.fract() == 0.0 && (-LIMIT..LIMIT).contains(&v) {
                    Ok(Int(v as i64))
                } else {
                    Err(E::custom("expected an integer"))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
                v.trim().parse().map(Int).map_err(|_| E::custom("expected an integer"))
            }
        }
        deserializer.deserialize_any(IntVisitor)
    }
}

/// SHA-256 over a canonical rendering: object keys sorted, no white space. Independent of the
/// map type serde_json was built with.
pub fn canonical_sha256(value: &Value) -> String {
    fn write(value: &Value, out: &mut Sha256) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.update(b"{");
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.update(b",");
                    }
                    write(&Value::String(key.clone()), out);
                    out.update(b":");
                    write(&map[key], out);
                }
                out.update(b"}");
            }
            Value::Array(items) => {
                out.update(b"[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.update(b",");
                    }
                    write(item, out);
                }
                out.update(b"]");
            }
            scalar => out.update(scalar.to_string().as_bytes()),
        }
    }
    let mut hasher = Sha256::new();
    write(value, &mut hasher);
    hex::encode(hasher.finalize())
}

fn strip_nul(value: &mut Value) {
    match value {
        Value::String(s) if s.contains('\0') => s.retain(|c| c != '\0'),
        Value::Array(items) => items.iter_mut().for_each(strip_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                *map = std::mem::take(map).into_iter().map(|(k, v)| (k.replace('\0', ""), v)).collect();
            }
            map.values_mut().for_each(strip_nul);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beijing() -> FixedOffset {
        FixedOffset::east_opt(8 * 3600).unwrap()
    }

    fn parse(body: &str) -> Result<Callback, ParseError> {
        parse_callback(body.as_bytes(), beijing())
    }

    fn field_error(body: &str) -> String {
        match parse(body) {
            Err(ParseError::BadField { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn a_call_record_keeps_unknown_fields_and_values() {
        let cb = parse(
            r#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":5,"resultStatus":"NEW_STATUS",
               "intentLevel":"Z9","newField":{"x":1},"callDetailList":[{"type":"BOT","text":"hi","mood":"ok"}]}}"#,
        )
        .unwrap();
        let Event::CallRecord(call) = cb.event else { panic!("not a call") };
        assert_eq!(call.result_status.as_deref(), Some("NEW_STATUS"));
        assert_eq!(call.intent_level.as_deref(), Some("Z9"));
        assert_eq!(call.intent_grade(), None);
        assert_eq!(call.extra.get("newField"), Some(&serde_json::json!({"x": 1})));
        assert_eq!(call.turns[0].speaker.as_deref(), Some("BOT"));
        assert_eq!(call.turns[0].extra.get("mood"), Some(&serde_json::json!("ok")));
    }

    #[test]
    fn intent_levels_map_letters_and_codes_to_grades() {
        for (level, grade) in [
            ("A", Some("A")),
            ("f", Some("F")),
            ("0", Some("A")),
            ("5", Some("F")),
            ("6", None),
            ("VIP", None),
            ("", None),
        ] {
            assert_eq!(intent_grade(level), grade, "{level}");
        }
    }

    #[test]
    fn ids_are_required_and_named_when_missing() {
        assert_eq!(field_error(r#"{"dataType":"ROBOT_CALL_RECORD","data":{}}"#), "data.callRecordId");
        assert_eq!(
            field_error(r#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":null}}"#),
            "data.callRecordId"
        );
        assert_eq!(
            field_error(r#"{"dataType":"ROBOT_CALL_JOB","data":{"status":"COMPLETED"}}"#),
            "data.robotCallJobId"
        );
        assert_eq!(field_error(r#"{"dataType":"ROBOT_CALL_SMS","data":{"msgList":[]}}"#), "data.callRecordId");
    }

    #[test]
    fn wrong_types_name_the_field_path() {
        assert_eq!(
            field_error(r#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":"x1"}}"#),
            "data.callRecordId"
        );
        assert_eq!(
            field_error(r#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":1,"chatDuration":[1]}}"#),
            "data.chatDuration"
        );
        assert_eq!(
            field_error(
                r#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":1,"callDetailList":[{"text":"a"},{"text":7}]}}"#
            ),
            "data.callDetailList[1].text"
        );
        assert_eq!(
            field_error(r#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":1,"startTime":"soon"}}"#),
            "data.startTime"
        );
        assert_eq!(
            field_error(r#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":99999999999999999999}}"#),
            "data.callRecordId"
        );
    }

    #[test]
    fn field_errors_never_repeat_the_value() {
        let body = r#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":1,"calledPhoneNumber":17751279857}}"#;
        let Err(ParseError::BadField { field, reason }) = parse(body) else { panic!("expected a field error") };
        assert_eq!(field, "data.calledPhoneNumber");
        assert_eq!(reason, "wrong type or value, expected a string");
    }

    #[test]
    fn integers_may_arrive_as_strings_or_integral_floats() {
        let cb = parse(r#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":"42","chatDuration":37.0,"robotCallJobId":9223372036854775807}}"#).unwrap();
        let Event::CallRecord(call) = cb.event else { panic!("not a call") };
        assert_eq!(call.call_record_id, 42);
        assert_eq!(call.chat_duration, Some(37));
        assert_eq!(call.robot_call_job_id, Some(i64::MAX));
        assert_eq!(field_error(r#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":1.5}}"#), "data.callRecordId");
    }

    #[test]
    fn times_outside_the_sane_years_are_a_field_problem() {
        for time in ["-5000-01-01 00:00:00", "1969-12-31 23:00:00", "2201-06-01 00:00:00"] {
            let body =
                format!(r#"{{"dataType":"ROBOT_CALL_RECORD","data":{{"callRecordId":1,"startTime":"{time}"}}}}"#);
            assert_eq!(field_error(&body), "data.startTime", "{time}");
        }
        let ok = r#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":1,"startTime":"2200-12-31 23:59:59"}}"#;
        assert!(parse(ok).is_ok());
    }

    #[test]
    fn envelope_problems_are_not_field_problems() {
        for body in [
            r#"[]"#,
            r#"{"data":{}}"#,
            r#"{"dataType":"X"}"#,
            r#"{"dataType":7,"data":{}}"#,
            r#"{"dataType":"X","data":[1]}"#,
        ] {
            assert!(matches!(parse(body), Err(ParseError::BadEnvelope(_))), "{body}");
        }
        assert!(matches!(parse("{nope"), Err(ParseError::NotJson(_))));
    }

    #[test]
    fn unknown_data_types_are_unrecognized_not_errors() {
        let cb = parse(r#"{"dataType":"ROBOT_CALL_SOMETHING_NEW","data":{"anything":true}}"#).unwrap();
        assert_eq!(cb.event, Event::Unrecognized);
        assert!(cb.dedup_key().starts_with("unrecognized:"));
    }

    #[test]
    fn content_hash_ignores_key_order_and_white_space_but_not_values() {
        let a = parse(r#"{"dataType":"ROBOT_CALL_JOB","data":{"robotCallJobId":1,"status":"COMPLETED"}}"#).unwrap();
        let b =
            parse("{ \"data\" : {\"status\":\"COMPLETED\", \"robotCallJobId\":1},\n\"dataType\":\"ROBOT_CALL_JOB\"}")
                .unwrap();
        let c = parse(r#"{"dataType":"ROBOT_CALL_JOB","data":{"robotCallJobId":1,"status":"COMPLETED","tenantId":2}}"#)
            .unwrap();
        assert_eq!(a.content_sha256, b.content_sha256);
        assert_ne!(a.content_sha256, c.content_sha256);
        assert_eq!(a.dedup_key(), "job:1:COMPLETED");
    }

    #[test]
    fn nul_characters_are_removed_from_stored_text() {
        let cb = parse(r#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":1,"analysisBasis":"a\u0000b","x\u0000":"\u0000"}}"#).unwrap();
        let Event::CallRecord(call) = cb.event else { panic!("not a call") };
        assert_eq!(call.analysis_basis.as_deref(), Some("ab"));
        assert_eq!(call.extra.get("x"), Some(&serde_json::json!("")));
    }
}
