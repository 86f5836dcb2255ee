//! Fan-out to downstream webhooks over real HTTP, on every backend: signed, filtered, retried,
//! dead-lettered and replayed, leased, ordered, rate-limited.

use crate::common;
use crate::common::receiver;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::{assert_acked, databases, sample, Backend, TestApp, TestDb, ACCOUNT, ACCOUNTS_TOML};
use receiver::{Behaviour, Receiver, OTHER_SECRET, SECRET};
use serde_json::json;
use tanyi_relay::store::DeliveryFilter;

const SOON: Duration = Duration::from_secs(5);

fn target(name: &str, receiver: &Receiver, extra: &str) -> String {
    format!(
        "[[targets]]\nname = \"{name}\"\nurl = \"{}\"\nsecrets = [\"{SECRET}\"]\nretry_schedule_secs = [0.05]\n{extra}\n",
        receiver.url
    )
}

async fn spawn(db: &TestDb, targets: &[String]) -> TestApp {
    let config = format!("{ACCOUNTS_TOML}\n{}", targets.join("\n"));
    let settings =
        common::settings_with_accounts(&db.url, &config, &[("TANYI_RELAY__DELIVERY__POLL_INTERVAL_MS", "50")]);
    TestApp::spawn_settings(db.backend, settings).await
}

fn call(id: i64, intent_level: &str) -> String {
    json!({"dataType": "ROBOT_CALL_RECORD", "data": {"callRecordId": id, "intentLevel": intent_level,
        "resultStatus": "ANSWERED", "startTime": "2024-03-01 09:00:00", "calledPhoneNumber": "13800138000"}})
    .to_string()
}

#[tokio::test]
async fn each_event_reaches_the_receiver_signed_with_standard_webhooks_headers() {
    for db in databases().await {
        let crm = Receiver::start(Behaviour::Accept).await;
        let app = spawn(&db, &[target("crm", &crm, "")]).await;
        let started = Instant::now();
        assert_acked(app.post(sample("call_record.json")).await).await;
        let got = crm.wait_delivered(1, SOON).await;
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}: took {:?}", db.backend, started.elapsed());
        let request = &got[0];
        assert!(request.verified, "the signature must verify independently");
        assert_eq!(request.body["type"], "call.finished");
        assert_eq!(request.body["account"], ACCOUNT);
        assert_eq!(request.body["id"], request.id, "webhook-id is the event id");
        assert_eq!(request.body["data"]["call_record_id"], 119);
        assert_eq!(request.body["data"]["start_time"], "2018-10-12T10:46:55Z");
        assert_eq!(request.body["data"]["transcript"][1]["speaker"], "PERSON");
        assert_eq!(request.headers["content-type"], "application/json");
        let timestamp: i64 = request.headers["webhook-timestamp"].to_str().unwrap().parse().unwrap();
        assert!((Utc::now().timestamp() - timestamp).abs() < 10);
        // The attempt is recorded just after the receiver answered.
        let rows = wait_for_status(&app, "delivered").await;
        assert_eq!((rows.len(), rows[0].attempts), (1, 1), "{:?}", db.backend);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_duplicate_callback_is_not_delivered_again_and_a_change_is_an_update() {
    for db in databases().await {
        let crm = Receiver::start(Behaviour::Accept).await;
        let app = spawn(&db, &[target("crm", &crm, "")]).await;
        for _ in 0..3 {
            assert_acked(app.post(call(1, "C")).await).await;
        }
        assert_acked(app.post(call(1, "A")).await).await;
        let got = crm.wait_delivered(2, SOON).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let got_after = crm.delivered();
        assert_eq!(got_after.len(), 2, "{:?}: duplicates must not be delivered", db.backend);
        let types: Vec<_> = got.iter().map(|r| r.body["type"].as_str().unwrap().to_owned()).collect();
        assert!(types.contains(&"call.finished".to_owned()) && types.contains(&"call.updated".to_owned()));
        let update = got.iter().find(|r| r.body["type"] == "call.updated").unwrap();
        assert_eq!(update.body["data"]["intent_level"], "A");
        app.stop().await;
    }
}

#[tokio::test]
async fn filters_send_each_target_only_what_it_asked_for() {
    for db in databases().await {
        let jobs = Receiver::start(Behaviour::Accept).await;
        let hot = Receiver::start(Behaviour::Accept).await;
        let other_account = Receiver::start(Behaviour::Accept).await;
        let app = spawn(
            &db,
            &[
                target("jobs", &jobs, "events = [\"job.completed\"]"),
                target(
                    "hot",
                    &hot,
                    "events = [\"call.finished\"]\nintent_levels = [\"A\", \"B\"]\nresult_statuses = [\"ANSWERED\"]",
                ),
                target("nyc-only", &other_account, "accounts = [\"nyc\"]"),
            ],
        )
        .await;
        assert_acked(app.post(call(10, "A")).await).await;
        assert_acked(app.post(call(11, "C")).await).await;
        assert_acked(app.post(call(12, "1")).await).await; // code 1 is grade B
        assert_acked(app.post(sample("job_completed.json")).await).await;
        let job_events = jobs.wait_delivered(1, SOON).await;
        let hot_events = hot.wait_delivered(2, SOON).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(jobs.delivered().len(), 1, "{:?}", db.backend);
        assert_eq!(job_events[0].body["type"], "job.completed");
        let mut hot_ids: Vec<i64> =
            hot.delivered().iter().map(|r| r.body["data"]["call_record_id"].as_i64().unwrap()).collect();
        hot_ids.sort();
        assert_eq!(hot_ids, [10, 12], "{:?}: {hot_events:?}", db.backend);
        assert!(other_account.requests().is_empty(), "no event of account nyc was sent");
        app.stop().await;
    }
}

#[tokio::test]
async fn failed_deliveries_are_retried_until_they_succeed_and_every_attempt_is_recorded() {
    for db in databases().await {
        let crm = Receiver::start(Behaviour::FailFirst { count: 2, status: 500, retry_after: None }).await;
        let app = spawn(&db, &[target("crm", &crm, "max_attempts = 5")]).await;
        assert_acked(app.post(sample("job_completed.json")).await).await;
        crm.wait_delivered(1, SOON).await;
        let all = crm.requests();
        assert_eq!(all.len(), 3, "{:?}", db.backend);
        assert!(all.iter().all(|r| r.id == all[0].id), "the same webhook-id on every attempt");
        let rows = wait_for_status(&app, "delivered").await;
        assert_eq!(rows[0].attempts, 3);
        let attempts = app.store.delivery_attempts(rows[0].id).await.unwrap();
        let codes: Vec<_> = attempts.iter().map(|a| a.status_code).collect();
        assert_eq!(codes, [Some(500), Some(500), Some(200)], "{:?}", db.backend);
        assert_eq!(attempts[0].response_snippet.as_deref(), Some("answer from the test receiver"));
        app.stop().await;
    }
}

async fn wait_for_status(app: &TestApp, status: &str) -> Vec<tanyi_relay::store::DeliveryRow> {
    let start = Instant::now();
    loop {
        let rows = app.store.deliveries(&DeliveryFilter::default()).await.unwrap();
        if !rows.is_empty() && rows.iter().all(|r| r.status.as_str() == status) {
            return rows;
        }
        assert!(start.elapsed() < SOON, "deliveries never all became {status}: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_delivery_goes_dead_after_the_policy_and_a_replay_delivers_it() {
    for db in databases().await {
        let crm = Receiver::start(Behaviour::AlwaysFail(500)).await;
        let app = spawn(&db, &[target("crm", &crm, "max_attempts = 3")]).await;
        assert_acked(app.post(sample("call_record.json")).await).await;
        let dead = wait_for_status(&app, "dead").await;
        assert_eq!(dead[0].attempts, 3, "{:?}", db.backend);
        assert_eq!(crm.requests().len(), 3);
        crm.set(Behaviour::Accept);
        let filter = DeliveryFilter {
            target: Some("crm".into()),
            status: Some(tanyi_relay::domain::DeliveryStatus::Dead),
            ..Default::default()
        };
        assert_eq!(app.store.replay(&filter, Utc::now()).await.unwrap(), 1);
        // Replay wakes on the next poll; no new callback is needed.
        let got = crm.wait_delivered(1, SOON).await;
        assert_eq!(got[0].id, dead[0].event_id);
        wait_for_status(&app, "delivered").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_timeout_is_a_failure_like_any_other() {
    let db = common::sqlite().await;
    let slow = Receiver::start(Behaviour::Slow(Duration::from_millis(500))).await;
    let app = spawn(&db, &[target("slow", &slow, "timeout_ms = 100\nmax_attempts = 1")]).await;
    assert_acked(app.post(sample("job_completed.json")).await).await;
    let dead = wait_for_status(&app, "dead").await;
    let attempts = app.store.delivery_attempts(dead[0].id).await.unwrap();
    assert!(attempts[0].error.as_deref().is_some_and(|e| e.starts_with("timeout")), "{attempts:?}");
    assert_eq!(attempts[0].status_code, None);
    app.stop().await;
}

#[tokio::test]
async fn one_slow_target_does_not_delay_another() {
    for db in databases().await {
        let slow = Receiver::start(Behaviour::Slow(Duration::from_secs(3))).await;
        let fast = Receiver::start(Behaviour::Accept).await;
        let app = spawn(&db, &[target("slow", &slow, "max_in_flight = 1"), target("fast", &fast, "")]).await;
        let started = Instant::now();
        for id in 0..5 {
            assert_acked(app.post(call(100 + id, "A")).await).await;
        }
        fast.wait_delivered(5, SOON).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}: fast target waited {:?}",
            db.backend,
            started.elapsed()
        );
        assert!(slow.delivered().is_empty(), "the slow one is still on its first");
        app.stop().await;
    }
}

#[tokio::test]
async fn every_secret_signs_so_receivers_can_rotate() {
    let db = common::sqlite().await;
    let both = Receiver::start_with_secrets(Behaviour::Accept, &[SECRET, OTHER_SECRET]).await;
    let new_only = Receiver::start_with_secrets(Behaviour::Accept, &[OTHER_SECRET]).await;
    let rotating = |name: &str, receiver: &Receiver| {
        format!(
            "[[targets]]\nname = \"{name}\"\nurl = \"{}\"\nsecrets = [\"{SECRET}\", \"{OTHER_SECRET}\"]\n",
            receiver.url
        )
    };
    let app = spawn(&db, &[rotating("both", &both), rotating("new", &new_only)]).await;
    assert_acked(app.post(sample("sms.json")).await).await;
    let got = both.wait_delivered(1, SOON).await;
    assert!(got[0].verified, "each secret's signature verifies on its own");
    assert_eq!(got[0].headers["webhook-signature"].to_str().unwrap().split(' ').count(), 2);
    assert!(new_only.wait_delivered(1, SOON).await[0].verified, "a receiver that already rotated accepts it");
    app.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let db = common::sqlite().await;
    let crm = Receiver::start(Behaviour::FailFirst { count: 1, status: 429, retry_after: Some(1) }).await;
    let app = spawn(&db, &[target("crm", &crm, "")]).await;
    assert_acked(app.post(sample("job_completed.json")).await).await;
    let requests = crm.wait_requests(2, SOON).await;
    let gap = requests[1].at - requests[0].at;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?} though the receiver asked for 1 s");
    app.stop().await;
}

#[tokio::test]
async fn the_rate_limit_holds() {
    let db = common::sqlite().await;
    let crm = Receiver::start(Behaviour::Accept).await;
    let app = spawn(&db, &[target("crm", &crm, "max_requests_per_second = 10")]).await;
    for id in 0..10 {
        assert_acked(app.post(call(200 + id, "B")).await).await;
    }
    let got = crm.wait_delivered(10, SOON).await;
    let span = got[9].at - got[0].at;
    assert!(span >= Duration::from_millis(850), "10 requests at 10/s took only {span:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_rate_limited_target_gets_each_event_once_however_short_the_lease() {
    for db in databases().await {
        let crm = Receiver::start(Behaviour::Accept).await;
        let config =
            format!("{ACCOUNTS_TOML}\n{}", target("crm", &crm, "max_requests_per_second = 8\ntimeout_ms = 50"));
        // A lease of about a second: far shorter than the 1.5 s that 12 deliveries take at 8 a second.
        let overrides = [("TANYI_RELAY__DELIVERY__POLL_INTERVAL_MS", "50"), ("TANYI_RELAY__DELIVERY__LEASE_SECS", "1")];
        let app =
            TestApp::spawn_settings(db.backend, common::settings_with_accounts(&db.url, &config, &overrides)).await;
        for id in 0..12 {
            assert_acked(app.post(call(900 + id, "A")).await).await;
        }
        crm.wait_delivered(12, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut ids: Vec<String> = crm.requests().into_iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), 12, "{:?}: some event was sent twice", db.backend);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 12);
        app.stop().await;
    }
}

#[tokio::test]
async fn an_ordered_target_receives_events_in_commit_order_through_failures() {
    for db in databases().await {
        let crm = Receiver::start(Behaviour::FailFirst { count: 3, status: 503, retry_after: None }).await;
        let app = spawn(&db, &[target("crm", &crm, "ordered = true\nmax_in_flight = 4\nmax_attempts = 10")]).await;
        let mut expected = Vec::new();
        for id in 0..6 {
            assert_acked(app.post(call(300 + id, if id % 2 == 0 { "A" } else { "C" })).await).await;
            expected.push(300 + id);
        }
        // The same call changed after the others: its update must not overtake anything.
        assert_acked(app.post(call(300, "F")).await).await;
        let got = crm.wait_delivered(7, SOON).await;
        let order: Vec<(i64, String)> = got
            .iter()
            .map(|r| (r.body["data"]["call_record_id"].as_i64().unwrap(), r.body["type"].as_str().unwrap().to_owned()))
            .collect();
        let mut wanted: Vec<(i64, String)> = expected.iter().map(|id| (*id, "call.finished".to_owned())).collect();
        wanted.push((300, "call.updated".to_owned()));
        assert_eq!(order, wanted, "{:?}", db.backend);
        // Never two at once: each request started after the previous one was answered.
        let all = crm.requests();
        assert_eq!(all.len(), 10, "3 failures of the head, then 7 in order");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_crashed_workers_claim_is_delivered_after_its_lease() {
    for db in databases().await {
        let crm = Receiver::start(Behaviour::Accept).await;
        // First, a relay with no worker stores the event; a "crashed" worker then claims it.
        let config = format!("{ACCOUNTS_TOML}\n{}", target("crm", &crm, ""));
        let quiet = common::settings_with_accounts(&db.url, &config, &[("TANYI_RELAY__DELIVERY__ENABLED", "false")]);
        let app = TestApp::spawn_settings(db.backend, quiet).await;
        assert_acked(app.post(sample("job_completed.json")).await).await;
        let now = Utc::now();
        let lease_until = now + chrono::Duration::milliseconds(800);
        let claimed = app.store.claim_deliveries("crm", false, now, lease_until, 10, "crashed-worker").await.unwrap();
        assert_eq!(claimed.len(), 1, "{:?}", db.backend);
        app.stop().await;
        // A relay with a worker comes up: it must not take the claimed delivery before the lease
        // runs out, and must deliver it after.
        let app = spawn(&db, &[target("crm", &crm, "")]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(crm.requests().is_empty(), "{:?}: a leased delivery was taken early", db.backend);
        let got = crm.wait_delivered(1, SOON).await;
        assert_eq!(got[0].id, claimed[0].event_id);
        let rows = wait_for_status(&app, "delivered").await;
        assert_eq!(rows[0].attempts, 2, "the crashed attempt counts");
        app.stop().await;
    }
}

#[tokio::test]
async fn two_replicas_on_postgres_deliver_every_event_exactly_once() {
    let Some(admin_url) = common::postgres_url() else {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI must run the two-replica test");
        return;
    };
    let db = common::postgres(&admin_url).await;
    assert_eq!(db.backend, Backend::Postgres);
    let crm = Receiver::start(Behaviour::Slow(Duration::from_millis(20))).await;
    let first = spawn(&db, &[target("crm", &crm, "max_in_flight = 4")]).await;
    let second = spawn(&db, &[target("crm", &crm, "max_in_flight = 4")]).await;
    for id in 0..40 {
        let replica = if id % 2 == 0 { &first } else { &second };
        assert_acked(replica.post(call(400 + id, "A")).await).await;
    }
    crm.wait_delivered(40, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ids: Vec<String> = crm.requests().into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 40, "no event was sent twice");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40);
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn a_target_failing_continuously_is_paused_and_probed_not_hammered() {
    let db = common::sqlite().await;
    let down = Receiver::start(Behaviour::AlwaysFail(500)).await;
    let app = spawn(&db, &[target("down", &down, "max_attempts = 1000\nmax_in_flight = 8")]).await;
    for id in 0..10 {
        assert_acked(app.post(call(500 + id, "A")).await).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Without the pause: 10 deliveries retried every ~50 ms for 3 s, hundreds of requests.
    let sent = down.requests().len();
    assert!(sent <= 15, "a dead target got {sent} requests in 3 s");
    down.set(Behaviour::Accept);
    down.wait_delivered(10, Duration::from_secs(10)).await;
    app.stop().await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_delivery_finish() {
    let db = common::sqlite().await;
    let slow = Receiver::start(Behaviour::Slow(Duration::from_millis(800))).await;
    let app = spawn(&db, &[target("slow", &slow, "")]).await;
    assert_acked(app.post(sample("job_completed.json")).await).await;
    // The receiver holds the request for 800 ms; stop while it is in flight.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.stop().await;
    assert_eq!(slow.delivered().len(), 1, "the delivery in flight at shutdown finished");
    let reopened = common::settings_with_accounts(&db.url, ACCOUNTS_TOML, &[]);
    let app = TestApp::spawn_settings(db.backend, reopened).await;
    let rows = app.store.deliveries(&DeliveryFilter::default()).await.unwrap();
    assert_eq!(rows[0].status.as_str(), "delivered");
    app.stop().await;
}

/// A relay whose worker would only poll every 10 s: prompt delivery proves the wake-up.
async fn spawn_slow_polling(db: &TestDb, targets: &[String], worker: bool) -> TestApp {
    let config = format!("{ACCOUNTS_TOML}\n{}", targets.join("\n"));
    let enabled = if worker { "true" } else { "false" };
    let overrides = [("TANYI_RELAY__DELIVERY__POLL_INTERVAL_MS", "10000"), ("TANYI_RELAY__DELIVERY__ENABLED", enabled)];
    TestApp::spawn_settings(db.backend, common::settings_with_accounts(&db.url, &config, &overrides)).await
}

#[tokio::test]
async fn a_commit_wakes_the_worker_without_waiting_for_a_poll() {
    for db in databases().await {
        let crm = Receiver::start(Behaviour::Accept).await;
        let app = spawn_slow_polling(&db, &[target("crm", &crm, "")], true).await;
        // Let the worker finish its first look and go to sleep.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        assert_acked(app.post(sample("job_completed.json")).await).await;
        crm.wait_delivered(1, SOON).await;
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}: took {:?}", db.backend, started.elapsed());
        app.stop().await;
    }
}

#[tokio::test]
async fn on_postgres_a_commit_on_one_replica_wakes_the_worker_of_another() {
    let Some(admin_url) = common::postgres_url() else {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI must run the NOTIFY test");
        return;
    };
    let db = common::postgres(&admin_url).await;
    let crm = Receiver::start(Behaviour::Accept).await;
    let ingest_only = spawn_slow_polling(&db, &[target("crm", &crm, "")], false).await;
    let delivering = spawn_slow_polling(&db, &[target("crm", &crm, "")], true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    assert_acked(ingest_only.post(sample("job_completed.json")).await).await;
    crm.wait_delivered(1, SOON).await;
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    ingest_only.stop().await;
    delivering.stop().await;
}

#[tokio::test]
async fn a_redirect_is_a_failure_and_is_not_followed() {
    let db = common::sqlite().await;
    let elsewhere = Receiver::start(Behaviour::Accept).await;
    let moved = Receiver::start(Behaviour::Redirect(elsewhere.url.clone())).await;
    let app = spawn(&db, &[target("moved", &moved, "max_attempts = 1")]).await;
    assert_acked(app.post(sample("job_completed.json")).await).await;
    let dead = wait_for_status(&app, "dead").await;
    assert_eq!(dead[0].last_status_code, Some(307));
    assert_eq!(moved.requests().len(), 1);
    assert!(elsewhere.requests().is_empty(), "signed data must not follow a redirect");
    app.stop().await;
}

#[tokio::test]
async fn on_postgres_deliveries_flow_while_callbacks_hold_every_pooled_connection() {
    let Some(url) = common::postgres_only("the delivery worker's own connections") else { return };
    let db = common::postgres(&url).await;
    let crm = Receiver::start(Behaviour::AlwaysFail(500)).await;
    // Enough attempts that none is the last while the pool is being taken (slow on a busy machine).
    let config = format!("{ACCOUNTS_TOML}\n{}", target("crm", &crm, "max_attempts = 1000"));
    let settings = common::settings_with_accounts(
        &db.url,
        &config,
        &[
            ("TANYI_RELAY__DELIVERY__POLL_INTERVAL_MS", "50"),
            ("TANYI_RELAY__DATABASE__MAX_CONNECTIONS", "2"),
            // Taking both connections below waits for a busy one; on a loaded machine, more than 5 s.
            ("TANYI_RELAY__DATABASE__ACQUIRE_TIMEOUT_MS", "30000"),
        ],
    );
    let app = TestApp::spawn_settings(db.backend, settings).await;
    assert_acked(app.post(sample("call_record.json")).await).await;
    crm.wait_requests(1, SOON).await;
    // Every connection of the main pool is taken, as a burst of callbacks would; the retry must
    // still be claimed, sent and recorded.
    let held = app.store.adhoc().hold_every_connection(2).await.unwrap();
    assert_eq!(app.store.pool_usage(), (2, 2), "the main pool is exhausted");
    crm.set(Behaviour::Accept);
    crm.wait_delivered(1, SOON).await;
    drop(held);
    let rows = wait_for_status(&app, "delivered").await;
    assert!(rows[0].attempts >= 2, "failed attempts, then the one made while the pool was held");
    let attempts = app.store.delivery_attempts(rows[0].id).await.unwrap();
    assert_eq!(attempts.last().unwrap().status_code, Some(200), "the last attempt, made with the pool held, succeeded");
    app.stop().await;
}

#[tokio::test]
async fn a_replica_holds_a_bounded_number_of_deliveries_however_slow_their_recording() {
    let Some(url) = common::postgres_only("the bound on held deliveries") else { return };
    let db = common::postgres(&url).await;
    let crm = Receiver::start(Behaviour::Accept).await;
    let config = format!("{ACCOUNTS_TOML}\n{}", target("crm", &crm, "max_in_flight = 2"));
    let quiet = common::settings_with_accounts(&db.url, &config, &[("TANYI_RELAY__DELIVERY__ENABLED", "false")]);
    let app = TestApp::spawn_settings(db.backend, quiet).await;
    for id in 0..60 {
        assert_acked(app.post(call(1000 + id, "A")).await).await;
    }
    app.stop().await;
    // Recording an attempt now waits (its table is locked); claiming and sending do not.
    let other = tanyi_relay::store::Store::connect(&common::settings(&db, &[]).database).await.unwrap();
    let mut lock = other.adhoc().hold_every_connection(1).await.unwrap();
    lock.execute("BEGIN; LOCK TABLE delivery_attempts IN EXCLUSIVE MODE").await.unwrap();
    let settings =
        common::settings_with_accounts(&db.url, &config, &[("TANYI_RELAY__DELIVERY__POLL_INTERVAL_MS", "50")]);
    let app = TestApp::spawn_settings(db.backend, settings).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics = app.client.get(format!("{}/metrics", app.metrics_base.as_ref().unwrap())).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    let held: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"tanyi_relay_deliveries_held{target="crm"} "#)?.parse().ok())
        .unwrap_or(0);
    let sent = crm.requests().len();
    assert!(held <= 8 && sent <= 8, "held {held}, sent {sent}: at most four windows of max_in_flight = 2");
    assert!(held > 0, "nothing was claimed");
    lock.execute("COMMIT").await.unwrap();
    drop(lock);
    crm.wait_delivered(60, Duration::from_secs(20)).await;
    other.close().await;
    app.stop().await;
}
