//! The outbound event: what is written to the outbox with the data it announces, and which targets
//! get it.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    CallFinished,
    CallUpdated,
    JobCompleted,
    SmsRequested,
    CallbackUnrecognized,
    /// Operator event: a completed job still misses calls or deliveries past the configured time.
    JobIncomplete,
    /// Operator event: a job's calls are all here and delivered.
    JobReconciled,
    /// Operator event: a person's data was erased here; receivers erase their copy.
    PersonErased,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::CallFinished,
        EventType::CallUpdated,
        EventType::JobCompleted,
        EventType::SmsRequested,
        EventType::CallbackUnrecognized,
        EventType::JobIncomplete,
        EventType::JobReconciled,
        EventType::PersonErased,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CallFinished => "call.finished",
            EventType::CallUpdated => "call.updated",
            EventType::JobCompleted => "job.completed",
            EventType::SmsRequested => "sms.requested",
            EventType::CallbackUnrecognized => "callback.unrecognized",
            EventType::JobIncomplete => "job.incomplete",
            EventType::JobReconciled => "job.reconciled",
            EventType::PersonErased => "person.erased",
        }
    }

    /// Events about the relay's own view of the data rather than a callback: only targets that
    /// list them in `events` get them (a target with no `events` gets every callback's event).
    pub fn is_operator(self) -> bool {
        matches!(self, EventType::JobIncomplete | EventType::JobReconciled | EventType::PersonErased)
    }

    pub fn parse(text: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

impl TryFrom<String> for EventType {
    type Error = super::ParseStatusError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        EventType::parse(&text).ok_or_else(|| super::ParseStatusError::new("event type", &text))
    }
}

impl serde::Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an event is about, kept in columns of its own so that follow-up work, completeness and
/// erasure find events without reading payloads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventSubject {
    pub call_record_id: Option<i64>,
    pub robot_call_job_id: Option<i64>,
}

/// One event to announce, as written to the outbox.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// `evt_…`: the `webhook-id` receivers deduplicate on. Never changes across retries.
    pub id: String,
    pub event_type: EventType,
    pub account: String,
    pub created_at: DateTime<Utc>,
    pub subject: EventSubject,
    /// The whole envelope, serialized once: stored as it is and sent as the body.
    pub payload: Box<RawValue>,
    /// Names of the targets that want it.
    pub targets: Vec<String>,
}

/// The events a callback would announce, made before it is stored, because which one applies is
/// only known inside the storing transaction: `created` for a new thing (or a kept unknown
/// dataType), `changed` for a known thing with new content; a duplicate announces nothing.
#[derive(Debug, Clone, Default)]
pub struct Announcements {
    pub created: Option<Outbound>,
    pub changed: Option<Outbound>,
}

impl Announcements {
    pub const NONE: Announcements = Announcements { created: None, changed: None };

    /// The event for this outcome, if any.
    pub fn take(&mut self, outcome: super::Ingested) -> Option<Outbound> {
        match outcome {
            super::Ingested::Created | super::Ingested::Unrecognized => self.created.take(),
            super::Ingested::Changed => self.changed.take(),
            super::Ingested::Duplicate => None,
        }
    }
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

    #[test]
    fn event_ids_are_unique_and_sort_by_time() {
        let earlier = new_event_id(Utc::now() - chrono::Duration::seconds(1));
        let a = new_event_id(Utc::now());
        let b = new_event_id(Utc::now());
        assert_ne!(a, b);
        assert!(earlier < a);
    }

    #[test]
    fn event_types_read_back_what_they_write() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("call.done"), None);
    }
}
