//! Campaign completeness against the mock platform: lost callbacks, a target that is down, a job
//! whose completion never arrives, an account without API credentials; the admin API, the
//! operator events, the metrics and the reporting view, on both databases.

use std::time::{Duration, Instant};

use crate::common;
use common::receiver::{Behaviour, Receiver, SECRET};
use common::{assert_acked, databases, TestApp, TestDb, ACCOUNT};
use serde_json::{json, Value};
use tanyi_relay::sim::mock_platform::{MockConfig, MockPlatform};

const JOB: i64 = 61;
const ADMIN_TOKEN: &str = "completeness-admin-token-000001";

/// The `acme` account with the mock's API, `crm` for the calls and `ops` for operator events.
fn config(platform: &MockPlatform, base: &str, crm: &Receiver, ops: &Receiver, account_extra: &str) -> String {
    let c = platform.config();
    format!(
        "[[accounts]]\nname = \"acme\"\ncallback_key = \"acme-callback-key-0001\"\n{account_extra}\n\
         [accounts.api]\nbase_url = \"{base}\"\napp_key = \"{}\"\napp_secret = \"{}\"\ntenant_sign = \"{}\"\n\n\
         [[targets]]\nname = \"crm\"\nurl = \"{}\"\nsecrets = [\"{SECRET}\"]\nevents = [\"call.finished\"]\n\
         retry_schedule_secs = [0.2]\nmax_attempts = 1000\nretry_window_secs = 3600\n\n\
         [[targets]]\nname = \"ops\"\nurl = \"{}\"\nsecrets = [\"{SECRET}\"]\n\
         events = [\"job.incomplete\", \"job.reconciled\", \"person.erased\"]\n",
        c.app_key, c.app_secret, c.tenant_sign, crm.url, ops.url
    )
}

async fn spawn(db: &TestDb, config: &str, incomplete_after_secs: &str) -> TestApp {
    let settings = common::settings_with_accounts(
        &db.url,
        config,
        &[
            ("TANYI_RELAY__DELIVERY__POLL_INTERVAL_MS", "50"),
            ("TANYI_RELAY__ADMIN__TOKEN", ADMIN_TOKEN),
            ("TANYI_RELAY__COMPLETENESS__CHECK_INTERVAL_SECS", "1"),
            ("TANYI_RELAY__COMPLETENESS__INCOMPLETE_AFTER_SECS", incomplete_after_secs),
        ],
    );
    TestApp::spawn_settings(db.backend, settings).await
}

fn job_completed(job: i64) -> String {
    json!({"dataType": "ROBOT_CALL_JOB", "data": {"robotCallJobId": job, "tenantId": 1, "status": "COMPLETED"}})
        .to_string()
}

async fn completeness(app: &TestApp, job: i64) -> Value {
    let url = format!("{}/admin/jobs/{ACCOUNT}/{job}/completeness", app.base);
    let response = app.client.get(url).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

/// Polls the job's completeness until `done` holds.
async fn wait_completeness(app: &TestApp, job: i64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let now = completeness(app, job).await;
        if done(&now) {
            return now;
        }
        assert!(start.elapsed() < Duration::from_secs(40), "{:?}: never {what}: {now:#}", app.backend);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn operator_events(ops: &Receiver, event_type: &str) -> Vec<Value> {
    ops.requests().into_iter().map(|r| r.body).filter(|b| b["type"] == event_type).collect()
}

#[tokio::test]
async fn lost_callbacks_make_a_job_incomplete_until_reconciliation_and_delivery_make_it_complete() {
    for db in databases().await {
        let platform = MockPlatform::new(MockConfig::new(21, vec![(JOB, 40)]));
        let base = platform.clone().start("127.0.0.1:0").await.unwrap();
        let (crm, ops) = (Receiver::start(Behaviour::Accept).await, Receiver::start(Behaviour::Accept).await);
        let app = spawn(&db, &config(&platform, &base, &crm, &ops, ""), "3600").await;
        // The platform pushes 30 of the job's 40 calls.
        for index in 0..30 {
            let body = json!({"dataType": "ROBOT_CALL_RECORD", "data": platform.call_record(JOB, index)});
            assert_acked(app.post(body.to_string()).await).await;
        }
        let before = completeness(&app, JOB).await;
        assert_eq!(before["state"], "incomplete", "{before:#}");
        assert_eq!(before["calls"]["pushed"], 30);
        assert_eq!(before["calls"]["reported"], Value::Null, "not reconciled yet");
        let gaps: Vec<&str> = before["gaps"].as_array().unwrap().iter().map(|g| g["gap"].as_str().unwrap()).collect();
        assert!(gaps.contains(&"completion_not_received") && gaps.contains(&"not_reconciled"), "{gaps:?}");

        // The completion arrives: reconciliation lists 40 and backfills 10, all get delivered.
        assert_acked(app.post(job_completed(JOB)).await).await;
        let after = wait_completeness(&app, JOB, "complete", |c| c["state"] == "complete").await;
        assert_eq!(
            after["calls"],
            json!({"reported": 40, "pushed": 30, "backfilled": 10, "missing": 0, "rejected": 0})
        );
        assert_eq!(after["targets"], json!([{"target": "crm", "delivered": 40, "pending": 0, "dead": 0}]));
        assert_eq!(after["gaps"], json!([]));

        // job.reconciled goes to the target that asked for it, once; the crm gets no operator event.
        let start = Instant::now();
        while operator_events(&ops, "job.reconciled").is_empty() {
            assert!(start.elapsed() < Duration::from_secs(10), "{:?}: no job.reconciled", db.backend);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(2500)).await; // two more checks
        let reconciled = operator_events(&ops, "job.reconciled");
        assert_eq!(reconciled.len(), 1, "{:?}: announced once", db.backend);
        assert_eq!(reconciled[0]["data"]["robot_call_job_id"], JOB);
        assert_eq!(reconciled[0]["data"]["calls"]["missing"], 0);
        assert!(operator_events(&ops, "job.incomplete").is_empty(), "it was never incomplete past the hour");
        assert!(crm.requests().iter().all(|r| r.body["type"] == "call.finished"));

        // The metrics and the reporting view agree.
        let metrics = app.client.get(format!("{}/metrics", app.metrics_base.as_ref().unwrap())).send().await.unwrap();
        let text = metrics.text().await.unwrap();
        assert!(text.contains("tanyi_relay_jobs_incomplete{account=\"acme\"} 0"), "{text}");
        assert!(text.contains("tanyi_relay_job_calls_missing{account=\"acme\"} 0"), "{text}");
        let view = common::ledger::strings(
            &app.store,
            &format!(
                "SELECT CAST(calls_listed AS TEXT) || '/' || CAST(calls_missing AS TEXT) || '/' || \
                 CAST(deliveries_pending AS TEXT) FROM report_job_completeness WHERE robot_call_job_id = {JOB}"
            ),
        )
        .await;
        assert_eq!(view, vec!["40/0/0".to_owned()], "{:?}", db.backend);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_target_that_is_down_keeps_the_job_incomplete_and_job_incomplete_goes_out_once() {
    for db in databases().await {
        let platform = MockPlatform::new(MockConfig::new(22, vec![(JOB, 6)]));
        let base = platform.clone().start("127.0.0.1:0").await.unwrap();
        let crm = Receiver::start(Behaviour::AlwaysFail(503)).await;
        let ops = Receiver::start(Behaviour::Accept).await;
        let app = spawn(&db, &config(&platform, &base, &crm, &ops, ""), "0").await;
        for index in 0..6 {
            let body = json!({"dataType": "ROBOT_CALL_RECORD", "data": platform.call_record(JOB, index)});
            assert_acked(app.post(body.to_string()).await).await;
        }
        assert_acked(app.post(job_completed(JOB)).await).await;
        let stuck = wait_completeness(&app, JOB, "reconciled", |c| c["reconciliation_runs"] == 1).await;
        assert_eq!(stuck["state"], "incomplete");
        assert_eq!(stuck["calls"]["missing"], 0, "every call is here");
        assert_eq!(stuck["gaps"], json!([{"gap": "deliveries_pending", "count": 6}]), "{stuck:#}");

        let start = Instant::now();
        while operator_events(&ops, "job.incomplete").is_empty() {
            assert!(start.elapsed() < Duration::from_secs(10), "{:?}: no job.incomplete", db.backend);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let incomplete = operator_events(&ops, "job.incomplete");
        assert_eq!(incomplete[0]["data"]["gaps"], json!([{"gap": "deliveries_pending", "count": 6}]));
        assert_eq!(incomplete[0]["account"], ACCOUNT);

        // The crm comes back: the job becomes complete and that is announced too, each once.
        crm.set(Behaviour::Accept);
        wait_completeness(&app, JOB, "complete", |c| c["state"] == "complete").await;
        let start = Instant::now();
        while operator_events(&ops, "job.reconciled").is_empty() {
            assert!(start.elapsed() < Duration::from_secs(10), "{:?}: no job.reconciled", db.backend);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(operator_events(&ops, "job.incomplete").len(), 1, "{:?}", db.backend);
        assert_eq!(operator_events(&ops, "job.reconciled").len(), 1, "{:?}", db.backend);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_job_whose_completion_never_arrives_is_reconciled_on_the_timer_and_shows_up() {
    for db in databases().await {
        // The platform has finished the job (it is not IN_PROCESS); its completion was lost.
        let platform = MockPlatform::new(MockConfig::new(23, vec![(JOB, 10)]));
        let base = platform.clone().start("127.0.0.1:0").await.unwrap();
        let (crm, ops) = (Receiver::start(Behaviour::Accept).await, Receiver::start(Behaviour::Accept).await);
        let app = spawn(&db, &config(&platform, &base, &crm, &ops, "reconcile_interval_secs = 0.3"), "0").await;
        for index in 0..4 {
            let body = json!({"dataType": "ROBOT_CALL_RECORD", "data": platform.call_record(JOB, index)});
            assert_acked(app.post(body.to_string()).await).await;
        }
        // The backfilled calls are stored before the run records what it listed: wait for both.
        let found = wait_completeness(&app, JOB, "reconciled", |c| {
            c["calls"]["backfilled"] == 6 && c["calls"]["reported"] == 10
        })
        .await;
        assert_eq!(found["calls"]["missing"], 0);
        assert_eq!(found["state"], "incomplete", "{found:#}");
        assert_eq!(found["gaps"][0]["gap"], "completion_not_received");
        // Listed with the account's other jobs.
        let list = app
            .client
            .get(format!("{}/admin/jobs/{ACCOUNT}/completeness?limit=10", app.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let list: Value = serde_json::from_str(&list.text().await.unwrap()).unwrap();
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert_eq!(list[0]["robot_call_job_id"], JOB);
        app.stop().await;
    }
}

#[tokio::test]
async fn without_api_credentials_a_job_is_unknown_with_what_was_received() {
    for db in databases().await {
        let app = TestApp::spawn_with(&db, &[("TANYI_RELAY__ADMIN__TOKEN", ADMIN_TOKEN)]).await;
        let mut call = common::sample_json("call_record.json");
        call["data"]["robotCallJobId"] = json!(JOB);
        assert_acked(app.post(call.to_string()).await).await;
        assert_acked(app.post(job_completed(JOB)).await).await;
        let job = completeness(&app, JOB).await;
        assert_eq!(job["state"], "unknown", "{job:#}");
        assert_eq!(job["calls"]["pushed"], 1);
        assert_eq!(job["calls"]["reported"], Value::Null);
        assert_eq!(job["gaps"], json!([]), "nothing known to be missing");
        let unknown_job = app
            .client
            .get(format!("{}/admin/jobs/{ACCOUNT}/999999/completeness", app.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(unknown_job.status(), 404);
        let other_account = app
            .client
            .get(format!("{}/admin/jobs/nobody/{JOB}/completeness", app.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(other_account.status(), 404);
        let unauthorized =
            app.client.get(format!("{}/admin/jobs/{ACCOUNT}/{JOB}/completeness", app.base)).send().await.unwrap();
        assert_eq!(unauthorized.status(), 401);
        app.stop().await;
    }
}
