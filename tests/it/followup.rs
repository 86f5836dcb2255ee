//! Reconciliation end to end: a job whose callbacks were partly lost ends up complete in the
//! database and downstream, even across a restart in the middle.

use crate::common;
use crate::common::receiver;
use tanyi_relay::domain::{DeliveryStatus, Source};

use std::time::{Duration, Instant};

use common::{assert_acked, databases, TestApp, TestDb, ACCOUNT};
use receiver::{Behaviour, Receiver, SECRET};
use serde_json::json;
use tanyi_relay::sim::mock_platform::{call_record_id, MockConfig, MockPlatform};
use tanyi_relay::store::{DeliveryFilter, Store};

const JOB: i64 = 43;

fn config(platform: &MockPlatform, base: &str, crm: &Receiver) -> String {
    let c = platform.config();
    format!(
        "[[accounts]]\nname = \"acme\"\ncallback_key = \"acme-callback-key-0001\"\n\
         [accounts.api]\nbase_url = \"{base}\"\napp_key = \"{}\"\napp_secret = \"{}\"\ntenant_sign = \"{}\"\n\n\
         [[targets]]\nname = \"crm\"\nurl = \"{}\"\nsecrets = [\"{SECRET}\"]\nevents = [\"call.finished\", \"call.updated\"]\n",
        c.app_key, c.app_secret, c.tenant_sign, crm.url
    )
}

async fn spawn(db: &TestDb, config: &str) -> TestApp {
    let settings =
        common::settings_with_accounts(&db.url, config, &[("TANYI_RELAY__DELIVERY__POLL_INTERVAL_MS", "50")]);
    TestApp::spawn_settings(db.backend, settings).await
}

fn job_completed() -> String {
    json!({"dataType": "ROBOT_CALL_JOB", "data": {"robotCallJobId": JOB, "tenantId": 1, "status": "COMPLETED"}})
        .to_string()
}

/// Waits until every delivery of `filter` has stopped being pending.
async fn wait_finished(store: &Store, filter: &DeliveryFilter) {
    let start = Instant::now();
    while store.deliveries(filter).await.unwrap().iter().any(|d| d.status == DeliveryStatus::Pending) {
        assert!(start.elapsed() < Duration::from_secs(10), "a delivery stayed pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stored_calls(store: &Store, calls: u32) -> usize {
    let ids: Vec<i64> = (0..calls).map(|i| call_record_id(JOB, i)).collect();
    store.existing_call_ids(ACCOUNT, &ids).await.unwrap().len()
}

async fn wait_for_calls(store: &Store, calls: u32, limit: Duration) {
    let start = Instant::now();
    while stored_calls(store, calls).await < calls as usize {
        assert!(start.elapsed() < limit, "only {} of {calls} calls stored", stored_calls(store, calls).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_job_whose_callbacks_were_partly_lost_ends_up_complete_here_and_downstream() {
    for db in databases().await {
        let platform = MockPlatform::new(MockConfig::new(11, vec![(JOB, 250)]));
        let base = platform.clone().start("127.0.0.1:0").await.unwrap();
        let crm = Receiver::start(Behaviour::Accept).await;
        let app = spawn(&db, &config(&platform, &base, &crm)).await;
        // The platform pushes 200 of the job's 250 calls: every fifth one is lost.
        for index in (0..250).filter(|i| i % 5 != 4) {
            let body = json!({"dataType": "ROBOT_CALL_RECORD", "data": platform.call_record(JOB, index)});
            assert_acked(app.post(body.to_string()).await).await;
        }
        assert_eq!(stored_calls(&app.store, 250).await, 200);
        assert_acked(app.post(job_completed()).await).await;

        wait_for_calls(&app.store, 250, Duration::from_secs(10)).await;
        let mut backfilled = 0;
        for index in 0..250 {
            let call = app.store.call_record(ACCOUNT, call_record_id(JOB, index)).await.unwrap().unwrap();
            let expected = if index % 5 == 4 { "backfill" } else { "push" };
            assert_eq!(call.source.as_str(), expected, "{:?} call {index}", db.backend);
            backfilled += usize::from(call.source == Source::Backfill);
        }
        assert_eq!(backfilled, 50);
        // 200 pushed and 50 backfilled calls, each announced once, none as an update.
        let got = crm.wait_delivered(250, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(crm.requests().len(), 250, "{:?}", db.backend);
        assert!(got.iter().all(|r| r.body["type"] == "call.finished"));
        let reconcile = DeliveryFilter { target: Some("reconcile.acme".into()), ..Default::default() };
        let rows = app.store.deliveries(&reconcile).await.unwrap();
        assert_eq!(rows[0].status, DeliveryStatus::Delivered);
        let attempts = app.store.delivery_attempts(rows[0].id).await.unwrap();
        assert_eq!(attempts[0].response_snippet.as_deref(), Some("listed 250, backfilled 50, rejected 0"));
        app.stop().await;
    }
}

#[tokio::test]
async fn a_restart_in_the_middle_of_reconciliation_finishes_it_afterwards_without_duplicates() {
    for db in databases().await {
        let mut mock = MockConfig::new(12, vec![(JOB, 1000)]);
        mock.page_delay = Duration::from_millis(150);
        let platform = MockPlatform::new(mock);
        let base = platform.clone().start("127.0.0.1:0").await.unwrap();
        let crm = Receiver::start(Behaviour::Accept).await;
        let config = config(&platform, &base, &crm);
        let first = spawn(&db, &config).await;
        assert_acked(first.post(job_completed()).await).await;
        let start = Instant::now();
        while stored_calls(&first.store, 1000).await < 150 {
            assert!(start.elapsed() < Duration::from_secs(10), "reconciliation never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        first.stop().await;
        let reopened = Store::connect(&common::settings(&db, &[]).database).await.unwrap();
        let halfway = stored_calls(&reopened, 1000).await;
        reopened.close().await;
        assert!(halfway < 1000, "{:?}: the restart came too late to test anything ({halfway})", db.backend);

        let second = spawn(&db, &config).await;
        wait_for_calls(&second.store, 1000, Duration::from_secs(20)).await;
        let got = crm.wait_delivered(1000, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut ids: Vec<String> = crm.requests().into_iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), 1000, "{:?}: {} events, some twice?", db.backend, got.len());
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 1000);
        // The interrupted run handed its claim back: one attempt in all, and it succeeded.
        let reconcile = DeliveryFilter { target: Some("reconcile.acme".into()), ..Default::default() };
        let start = Instant::now();
        let rows = loop {
            let rows = second.store.deliveries(&reconcile).await.unwrap();
            if rows[0].status != DeliveryStatus::Pending || start.elapsed() > Duration::from_secs(5) {
                break rows;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        };
        assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("delivered", 1), "{:?}", db.backend);
        second.stop().await;
    }
}

// Multi-threaded: the commands block this thread while the mock answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_reconcile_commands_work_against_the_mock() {
    let platform = MockPlatform::new(MockConfig::new(13, vec![(JOB, 30)]));
    let base = platform.clone().start("127.0.0.1:0").await.unwrap();
    let crm = Receiver::start(Behaviour::Accept).await;
    let db = common::sqlite().await;
    let file = std::env::temp_dir().join(format!("{}.toml", common::unique_name("reconcile-cli")));
    std::fs::write(&file, config(&platform, &base, &crm)).unwrap();
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tanyi-relay"))
            .arg("--config")
            .arg(&file)
            .args(args)
            .env("TANYI_RELAY__DATABASE__URL", &db.url)
            .output()
            .expect("the binary runs");
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<serde_json::Value>(&output.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&output.stdout)))
    };
    let jobs = cli(&["api", "acme", "jobs"]);
    assert_eq!(jobs["content"][0]["robotCallJobId"], JOB);
    let table = std::process::Command::new(env!("CARGO_BIN_EXE_tanyi-relay"))
        .arg("--config")
        .arg(&file)
        .args(["api", "--table", "acme", "jobs"])
        .output()
        .expect("the binary runs");
    let table = String::from_utf8(table.stdout).unwrap();
    let header = table.lines().next().unwrap_or_default();
    assert!(header.contains("robotCallJobId") && header.contains("status"), "{table}");
    assert!(table.lines().nth(2).is_some_and(|row| row.contains(&JOB.to_string())), "{table}");
    assert_eq!(cli(&["api", "acme", "calls", &JOB.to_string()]).as_array().unwrap().len(), 30);
    assert_eq!(cli(&["reconcile", "acme", &JOB.to_string()])["backfilled"], 30);
    let again = cli(&["reconcile", "acme", &JOB.to_string()]);
    assert_eq!((again["listed"].as_u64(), again["backfilled"].as_u64()), (Some(30), Some(0)), "idempotent");
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn enrichment_stores_what_the_push_lacks_and_announces_a_corrected_intent_level() {
    for db in databases().await {
        let platform = MockPlatform::new(MockConfig::new(14, vec![(JOB, 3)]));
        let base = platform.clone().start("127.0.0.1:0").await.unwrap();
        let crm = Receiver::start(Behaviour::Accept).await;
        let config = config(&platform, &base, &crm).replace("[accounts.api]", "enrich_calls = true\n[accounts.api]");
        let app = spawn(&db, &config).await;
        let id = call_record_id(JOB, 1);
        let body = json!({"dataType": "ROBOT_CALL_RECORD", "data": platform.call_record(JOB, 1)});
        assert_acked(app.post(body.to_string()).await).await;

        let call = wait_enriched(&app.store, id, None).await;
        assert_eq!(call.intent_level_name.as_deref(), Some("一般"), "{:?}", db.backend);
        assert_eq!(call.real_intent_level, None);
        assert_eq!(call.intent_level_tag_id, Some(0));
        assert_eq!(call.customer.as_ref().map(|c| c.0["customerPersonId"].clone()), Some(json!(id)));
        crm.wait_delivered(1, Duration::from_secs(5)).await;

        // A person corrects the level on the platform; enriching again announces it, once.
        platform.correct_intent(id, "A");
        let enrich = DeliveryFilter { target: Some("enrich.acme".into()), ..Default::default() };
        // The attempt is recorded just after the enrichment is stored: replay once it is.
        wait_finished(&app.store, &enrich).await;
        assert_eq!(app.store.replay(&enrich, chrono::Utc::now()).await.unwrap(), 1);
        let call = wait_enriched(&app.store, id, Some("A")).await;
        assert_eq!(call.real_intent_level_name.as_deref(), Some("较强"));
        let got = crm.wait_delivered(2, Duration::from_secs(5)).await;
        let update = got.iter().find(|r| r.body["type"] == "call.updated").expect("a call.updated");
        assert_eq!(update.body["data"]["extra"]["realIntentLevel"], "A", "{:?}", db.backend);
        wait_finished(&app.store, &enrich).await;
        assert_eq!(app.store.replay(&enrich, chrono::Utc::now()).await.unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(crm.requests().len(), 2, "an unchanged correction is not announced again");
        app.stop().await;
    }
}

async fn wait_enriched(store: &Store, id: i64, real_level: Option<&str>) -> tanyi_relay::store::StoredCall {
    let start = Instant::now();
    loop {
        if let Some(call) = store.call_record(ACCOUNT, id).await.unwrap() {
            if call.enriched_at.is_some() && call.real_intent_level.as_deref() == real_level {
                return call;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(5), "call {id} was not enriched");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test]
async fn running_jobs_are_reconciled_on_a_timer_when_configured() {
    let db = common::sqlite().await;
    let mut mock = MockConfig::new(15, vec![(JOB, 20), (44, 5)]);
    mock.running_jobs = vec![JOB];
    let platform = MockPlatform::new(mock);
    let base = platform.clone().start("127.0.0.1:0").await.unwrap();
    let crm = Receiver::start(Behaviour::Accept).await;
    let config =
        config(&platform, &base, &crm).replace("[accounts.api]", "reconcile_interval_secs = 0.2\n[accounts.api]");
    let app = spawn(&db, &config).await;
    // No job completion arrives: the timer alone finds the running job's calls.
    wait_for_calls(&app.store, 20, Duration::from_secs(5)).await;
    let completed_job_calls: Vec<i64> = (0..5).map(|i| call_record_id(44, i)).collect();
    assert!(app.store.existing_call_ids(ACCOUNT, &completed_job_calls).await.unwrap().is_empty(), "only running jobs");
    app.stop().await;
}

#[tokio::test]
async fn the_mock_pushes_what_it_serves_and_reconciliation_recovers_what_it_lost() {
    let db = common::sqlite().await;
    let platform = MockPlatform::new(MockConfig::new(16, vec![(JOB, 100)]));
    let base = platform.clone().start("127.0.0.1:0").await.unwrap();
    let crm = Receiver::start(Behaviour::Accept).await;
    let app = spawn(&db, &config(&platform, &base, &crm)).await;
    let report = platform.push_callbacks(&app.callback_url(ACCOUNT, common::KEY), 20).await.unwrap();
    assert!(report.lost > 0 && report.lost < 100, "{report:?}");
    assert_eq!((report.acked, report.refused), (100 - report.lost + 1, 0), "every call sent and the completion acked");
    wait_for_calls(&app.store, 100, Duration::from_secs(10)).await;
    crm.wait_delivered(100, Duration::from_secs(10)).await;
    app.stop().await;
}

#[tokio::test]
async fn a_reconciliation_that_outlasts_its_deadline_is_a_failed_attempt_and_keeps_what_it_stored() {
    let db = common::sqlite().await;
    let mut mock = MockConfig::new(13, vec![(JOB, 300)]);
    mock.page_delay = Duration::from_millis(600);
    let platform = MockPlatform::new(mock);
    let base = platform.clone().start("127.0.0.1:0").await.unwrap();
    let crm = Receiver::start(Behaviour::Accept).await;
    let overrides =
        [("TANYI_RELAY__DELIVERY__POLL_INTERVAL_MS", "50"), ("TANYI_RELAY__DELIVERY__INTERNAL_TIMEOUT_SECS", "1")];
    let settings = common::settings_with_accounts(&db.url, &config(&platform, &base, &crm), &overrides);
    let app = TestApp::spawn_settings(db.backend, settings).await;
    assert_acked(app.post(job_completed()).await).await;
    let reconcile = DeliveryFilter { target: Some("reconcile.acme".into()), ..Default::default() };
    let start = Instant::now();
    let attempts = loop {
        let rows = app.store.deliveries(&reconcile).await.unwrap();
        let attempts = match rows.first() {
            Some(row) => app.store.delivery_attempts(row.id).await.unwrap(),
            None => Vec::new(),
        };
        if !attempts.is_empty() {
            break attempts;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no attempt was recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(attempts[0].error.as_deref(), Some("not done within 1 s"));
    assert!(start.elapsed() < Duration::from_secs(5), "the deadline did not hold");
    let kept = stored_calls(&app.store, 300).await;
    assert!(kept > 0 && kept < 300, "what was stored before the deadline stays ({kept})");
    app.stop().await;
}
