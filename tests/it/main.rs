//! The integration tests, as one binary (it links once): each module is one theme. They use real
//! databases (SQLite always, Postgres when `TEST_DATABASE_URL` is set), the real application on
//! port 0 or the real binary, and real HTTP on loopback; only the platform and downstream
//! receivers are mocked.

mod common;

mod admin;
mod answers;
mod api_signature;
mod cli;
mod completeness;
mod connections;
mod console;
mod crypto_vectors;
mod deploy;
mod docs;
mod encrypted;
mod erasure;
mod fanout;
mod followup;
mod hostile;
mod operations;
mod outage;
mod platform_client;
mod reliability;
mod reporting;
mod reprocess;
mod retention;
mod secrets;
mod simulate;
mod storage;
mod store_contract;
