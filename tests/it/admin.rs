//! The operator API and the `deliveries` command: what failed can be seen and replayed.

use crate::common;
use crate::common::receiver;

use std::time::{Duration, Instant};

use common::{assert_acked, assert_error, databases, sample, TestApp, TestDb, ACCOUNTS_TOML};
use receiver::{Behaviour, Receiver, SECRET};
use serde_json::Value;

const TOKEN: &str = "admin-token-0123456789";

async fn spawn(db: &TestDb, receiver: &Receiver, admin_token: &str) -> TestApp {
    let config = format!(
        "{ACCOUNTS_TOML}\n[[targets]]\nname = \"crm\"\nurl = \"{}\"\nsecrets = [\"{SECRET}\"]\nretry_schedule_secs = [0.05]\nmax_attempts = 2\n",
        receiver.url
    );
    let overrides = [("TANYI_RELAY__DELIVERY__POLL_INTERVAL_MS", "50"), ("TANYI_RELAY__ADMIN__TOKEN", admin_token)];
    TestApp::spawn_settings(db.backend, common::settings_with_accounts(&db.url, &config, &overrides)).await
}

async fn admin_get(app: &TestApp, path: &str) -> Value {
    let response = app.client.get(format!("{}{path}", app.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "{path}");
    serde_json::from_str(&response.text().await.unwrap()).expect("JSON answer")
}

async fn admin_post(app: &TestApp, path: &str) -> Value {
    let response = app.client.post(format!("{}{path}", app.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "{path}");
    serde_json::from_str(&response.text().await.unwrap()).expect("JSON answer")
}

async fn wait_until_status(app: &TestApp, status: &str) -> Value {
    let start = Instant::now();
    loop {
        let list = admin_get(app, "/admin/deliveries").await;
        if list.as_array().is_some_and(|l| !l.is_empty() && l.iter().all(|d| d["status"] == status)) {
            return list;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "never {status}: {list}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test]
async fn failed_deliveries_are_listed_shown_and_replayed_over_the_admin_api() {
    for db in databases().await {
        let crm = Receiver::start(Behaviour::AlwaysFail(502)).await;
        let app = spawn(&db, &crm, TOKEN).await;
        assert_acked(app.post(sample("call_record.json")).await).await;
        assert_acked(app.post(sample("job_completed.json")).await).await;
        let dead = wait_until_status(&app, "dead").await;
        assert_eq!(dead.as_array().unwrap().len(), 2, "{:?}", db.backend);

        let calls = admin_get(&app, "/admin/deliveries?type=call.finished&status=dead&target=crm").await;
        assert_eq!(calls.as_array().unwrap().len(), 1);
        let id = calls[0]["id"].as_i64().unwrap();
        let shown = admin_get(&app, &format!("/admin/deliveries/{id}")).await;
        assert_eq!(shown["attempts"].as_array().unwrap().len(), 2);
        assert_eq!(shown["attempts"][0]["status_code"], 502);
        assert_eq!(shown["payload"]["type"], "call.finished");
        let events = admin_get(&app, "/admin/events?type=job.completed").await;
        assert_eq!(events.as_array().unwrap().len(), 1);
        assert!(admin_get(&app, "/admin/events?since=2999-01-01T00:00:00Z").await.as_array().unwrap().is_empty());

        crm.set(Behaviour::Accept);
        assert_eq!(admin_post(&app, &format!("/admin/deliveries/{id}/replay")).await["replayed"], 1);
        crm.wait_delivered(1, Duration::from_secs(5)).await;
        assert_eq!(admin_post(&app, "/admin/targets/crm/replay?since=2000-01-01T00:00:00Z").await["replayed"], 1);
        crm.wait_delivered(2, Duration::from_secs(5)).await;
        wait_until_status(&app, "delivered").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn the_admin_api_needs_its_token_and_is_off_without_one() {
    let db = common::sqlite().await;
    let crm = Receiver::start(Behaviour::Accept).await;
    let app = spawn(&db, &crm, TOKEN).await;
    let url = format!("{}/admin/deliveries", app.base);
    assert_error(app.client.get(&url).send().await.unwrap(), 401, "unauthorized").await;
    assert_error(app.client.get(&url).bearer_auth("admin-token-0123456780").send().await.unwrap(), 401, "unauthorized")
        .await;
    let bad_since = app.client.get(format!("{url}?since=yesterday")).bearer_auth(TOKEN).send().await.unwrap();
    assert_error(bad_since, 400, "bad_request").await;
    let missing = app.client.get(format!("{url}/999")).bearer_auth(TOKEN).send().await.unwrap();
    assert_error(missing, 404, "not_found").await;
    app.stop().await;

    let db = common::sqlite().await;
    let app = spawn(&db, &crm, "").await;
    let off = app.client.get(format!("{}/admin/deliveries", app.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert_error(off, 404, "not_found").await;
    app.stop().await;
}

#[tokio::test]
async fn the_deliveries_command_lists_and_replays_on_the_database() {
    let db = common::sqlite().await;
    let crm = Receiver::start(Behaviour::AlwaysFail(500)).await;
    let app = spawn(&db, &crm, TOKEN).await;
    assert_acked(app.post(sample("sms.json")).await).await;
    wait_until_status(&app, "dead").await;
    app.stop().await;

    let cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tanyi-relay"))
            .args(args)
            .env_remove("TANYI_RELAY_CONFIG")
            .env("TANYI_RELAY__DATABASE__URL", &db.url)
            .output()
            .expect("the binary runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<Value>(&output.stdout).expect("JSON output")
    };
    let listed = cli(&["deliveries", "list", "--status", "dead"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let id = listed[0]["id"].as_i64().unwrap().to_string();
    let shown = cli(&["deliveries", "show", &id]);
    assert_eq!(shown["payload"]["type"], "sms.requested");
    assert_eq!(cli(&["deliveries", "replay", "--target", "crm"])["replayed"], 1);
    assert_eq!(cli(&["deliveries", "list", "--status", "pending"]).as_array().unwrap().len(), 1);
}
