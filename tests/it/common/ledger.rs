//! The ledger of a run with the real binary: what the simulator sent and was told, what the
//! database holds, and what the receiver got; shared by the failure scenarios and the soak.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use tanyi_relay::config::Settings;
use tanyi_relay::sim::simulate::{self, Auth, Options, RetrySchedule, Summary};
use tanyi_relay::store::Store;

use super::receiver::{Receiver, SECRET};
use super::{Backend, ACCOUNT, KEY};

pub fn size(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn campaign(url: String, calls: u64, rate: f64, retry: RetrySchedule) -> Options {
    Options {
        url,
        auth: Auth::Plain { key: KEY.to_owned() },
        calls: calls as u32,
        jobs: 4,
        concurrency: 16,
        rate: Some(rate),
        // The platform sometimes sends an acknowledged callback again.
        duplicates: 0.02,
        seed: 8,
        retry,
    }
}

/// The relay's configuration for these runs: the test account, one target at `receiver`, short
/// leases so that a killed worker's claims come back quickly.
pub fn config(database_url: &str, receiver: &Receiver, target_extra: &str) -> String {
    format!(
        "[database]\nurl = \"{database_url}\"\nmax_connections = 8\nacquire_timeout_ms = 1000\n\
         [delivery]\nlease_secs = 3\npoll_interval_ms = 200\n\
         [[accounts]]\nname = \"{ACCOUNT}\"\ncallback_key = \"{KEY}\"\n\
         [[targets]]\nname = \"crm\"\nurl = \"{}\"\nsecrets = [\"{SECRET}\"]\ntimeout_ms = 2000\n{target_extra}",
        receiver.url
    )
}

/// What a run left behind, counted from the simulator, the database and the receiver.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: usize,
    pub acked: usize,
    pub stored: usize,
    /// Acknowledged callbacks with no row, or with more than one.
    pub lost: usize,
    pub events: usize,
    pub delivered: usize,
    pub duplicates_delivered: usize,
    pub undelivered: usize,
}

impl Tally {
    pub fn print(&self, scenario: &str, backend: Backend) {
        println!(
            "\n{scenario} ({backend:?})\n| sent | acked | stored | events | delivered | duplicates delivered | undelivered | lost |\n\
             |---|---|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} | {} | {} |",
            self.sent,
            self.acked,
            self.stored,
            self.events,
            self.delivered,
            self.duplicates_delivered,
            self.undelivered,
            self.lost
        );
    }
}

pub async fn strings(store: &Store, sql: &str) -> Vec<String> {
    store.adhoc().column(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub async fn connect(database_url: &str) -> Store {
    let env = HashMap::from([("TANYI_RELAY__DATABASE__URL".to_owned(), database_url.to_owned())]);
    let settings = Settings::from_sources(None, env).expect("settings");
    Store::connect(&settings.database).await.expect("connect")
}

/// The row key an acknowledged callback must have left, as the queries below spell it.
pub fn stored_key(body: &str) -> String {
    let callback: Value = serde_json::from_str(body).expect("simulated callbacks are JSON");
    let data = &callback["data"];
    match callback["dataType"].as_str() {
        Some("ROBOT_CALL_RECORD") => format!("call:{}", data["callRecordId"]),
        Some("ROBOT_CALL_JOB") => format!("job:{}:{}", data["robotCallJobId"], data["status"].as_str().unwrap_or("")),
        Some("ROBOT_CALL_SMS") => format!("sms:{}", data["callRecordId"]),
        other => panic!("unexpected dataType {other:?}"),
    }
}

/// Compares what the simulator was told with what the database holds and what the receiver got.
pub async fn reckon(store: &Store, options: &Options, summary: &Summary, receiver: &Receiver) -> Tally {
    reckon_account(store, ACCOUNT, options, summary, receiver).await
}

/// As `reckon`, for the callbacks of one account.
pub async fn reckon_account(
    store: &Store,
    account: &str,
    options: &Options,
    summary: &Summary,
    receiver: &Receiver,
) -> Tally {
    let sent: Vec<String> = simulate::campaign(options)
        .into_iter()
        .flat_map(|job| job.callbacks.into_iter().chain([job.completion]))
        .collect();
    let given_up: HashSet<&String> = summary.unacknowledged.iter().collect();
    let acked: Vec<&String> = sent.iter().filter(|b| !given_up.contains(b)).collect();
    let rows = strings(
        store,
        &format!(
            "SELECT 'call:' || CAST(call_record_id AS TEXT) FROM call_records WHERE account = '{account}' \
             UNION ALL SELECT 'job:' || CAST(robot_call_job_id AS TEXT) || ':' || status FROM jobs \
                WHERE account = '{account}' \
             UNION ALL SELECT 'sms:' || CAST(call_record_id AS TEXT) FROM sms_requests WHERE account = '{account}'"
        ),
    )
    .await;
    let mut copies: HashMap<String, usize> = HashMap::new();
    for key in rows {
        *copies.entry(key).or_default() += 1;
    }
    let stored = acked.iter().filter(|b| copies.get(&stored_key(b)) == Some(&1)).count();
    let events: HashSet<String> =
        strings(store, &format!("SELECT id FROM events WHERE account = '{account}'")).await.into_iter().collect();
    let delivered: Vec<_> = receiver.delivered().into_iter().filter(|r| events.contains(&r.id)).collect();
    let delivered_ids: HashSet<&String> = delivered.iter().map(|r| &r.id).collect();
    Tally {
        sent: sent.len(),
        acked: acked.len(),
        stored,
        lost: acked.len() - stored,
        events: events.len(),
        delivered: delivered_ids.len(),
        duplicates_delivered: delivered.len() - delivered_ids.len(),
        undelivered: events.iter().filter(|id| !delivered_ids.contains(id)).count(),
    }
}

/// Waits until every event in the database was delivered to `receiver` (or `limit` passes).
pub async fn wait_all_delivered(store: &Store, receiver: &Receiver, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let events = strings(store, "SELECT id FROM events").await;
        let delivered: HashSet<String> = receiver.delivered().into_iter().map(|r| r.id).collect();
        if events.iter().all(|id| delivered.contains(id)) || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn assert_nothing_lost(tally: &Tally, summary: &Summary) {
    assert_eq!(tally.lost, 0, "acknowledged callbacks missing or stored twice: {tally:?}");
    assert_eq!(tally.undelivered, 0, "stored events never delivered: {tally:?}");
    assert_eq!(summary.given_up, 0, "the relay was away longer than the platform retries: {summary:?}");
    assert_eq!(tally.events, tally.stored, "one event per stored thing: {tally:?}");
}
