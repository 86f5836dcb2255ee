//! Fan-out: each stored event goes to every matching downstream webhook, signed (Standard
//! Webhooks), retried with backoff, dead-lettered after the policy, replayable. The outbox rows are
//! written in the callback's own transaction; delivery happens later, outside any transaction.

pub mod envelope;
pub mod retry;
pub mod signing;
pub mod target;
pub mod worker;

pub use target::{Target, TargetKind, Targets};
