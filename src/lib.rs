//! tanyi-relay: receives the Tanyi (Yiwise) platform's callbacks, stores them durably, and
//! answers `success` only after the commit.

pub mod account;
pub mod admin;
pub mod app;
pub mod cli;
pub mod completeness;
pub mod config;
pub mod console;
pub mod domain;
pub mod erasure;
pub mod fanout;
pub mod followup;
pub mod ingest;
pub mod intake;
pub mod metrics;
pub mod platform;
pub mod probes;
pub mod secret;
pub mod sim;
pub mod store;
pub mod telemetry;
