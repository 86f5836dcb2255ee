//! The vocabulary several layers share: what storing a callback did, where it came from, the
//! outbound event and its targets, and the statuses of inbox rows and deliveries. Nothing here does
//! I/O or knows about HTTP, SQL or settings, so every layer above may use it.

mod event;
mod outcome;
mod status;

pub use event::{new_event_id, Announcements, EventSubject, EventType, Outbound};
pub use outcome::{Ingested, Source};
pub use status::{DeliveryOutcome, DeliveryStatus, InboxStatus, ParseStatusError};
