//! What operations rely on: probes, request ids, draining on shutdown.

use crate::common;

use std::time::Duration;

use common::{assert_acked, databases, sample, TestApp};
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};

async fn probe(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app.client.get(format!("{}{path}", app.base)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.text().await.unwrap()).unwrap())
}

#[tokio::test]
async fn probes_report_alive_and_ready() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        assert_eq!(probe(&app, "/healthz").await, (200, serde_json::json!({"status": "ok"})), "{:?}", db.backend);
        assert_eq!(probe(&app, "/readyz").await, (200, serde_json::json!({"status": "ready"})), "{:?}", db.backend);
        app.stop().await;
    }
}

#[tokio::test]
async fn readiness_waits_for_the_migrations() {
    for db in databases().await {
        let app = TestApp::spawn_with(&db, &[("TANYI_RELAY__DATABASE__MIGRATE_ON_START", "false")]).await;
        assert_eq!(probe(&app, "/readyz").await.1["status"], "migrations_pending", "{:?}", db.backend);
        assert_eq!(probe(&app, "/healthz").await.0, 200, "alive all the same");
        app.store.migrate().await.unwrap();
        assert_eq!(probe(&app, "/readyz").await.0, 200);
        app.stop().await;
    }
}

#[tokio::test]
async fn readiness_follows_the_database_on_postgres() {
    let Some(admin_url) = common::postgres_url() else {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI must run the Postgres readiness test");
        return;
    };
    let name = common::unique_name("ready");
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let settings = common::settings_for_url(&url, &[("TANYI_RELAY__DATABASE__ACQUIRE_TIMEOUT_MS", "300")]);
    let app = TestApp::spawn_settings(common::Backend::Postgres, settings).await;
    assert_eq!(probe(&app, "/readyz").await.0, 200);
    admin.execute(format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false").as_str()).await.unwrap();
    admin
        .execute(format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'").as_str())
        .await
        .unwrap();
    assert_eq!(probe(&app, "/readyz").await, (503, serde_json::json!({"status": "database_unreachable"})));
    assert_eq!(probe(&app, "/healthz").await.0, 200, "liveness does no I/O");
    admin.execute(format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true").as_str()).await.unwrap();
    assert_eq!(probe(&app, "/readyz").await.0, 200, "ready again without a restart");
    app.stop().await;
    admin.execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str()).await.unwrap();
}

#[tokio::test]
async fn on_shutdown_readiness_turns_503_while_callbacks_are_still_served() {
    let db = common::sqlite().await;
    let settings = common::settings(&db, &[("TANYI_RELAY__SERVER__DRAIN_SECS", "1")]);
    let app = tanyi_relay::app::Application::build(&settings).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let client = common::client();
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    assert!(ready.text().await.unwrap().contains("draining"));
    let url = format!("{base}/callbacks/{}?key={}", common::ACCOUNT, common::KEY);
    assert_acked(client.post(url).body(sample("job_completed.json")).send().await.unwrap()).await;
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("stopped after the drain").unwrap().unwrap();
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let db = common::sqlite().await;
    let app = TestApp::spawn(&db).await;
    let given = app.client.get(format!("{}/healthz", app.base)).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(given.headers()["x-request-id"], "abc-123");
    let made = app.post(sample("job_completed.json")).await;
    let id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 16, "a generated id: {id}");
    let junk = app.client.get(format!("{}/healthz", app.base)).header("x-request-id", "a b").send().await.unwrap();
    assert_ne!(junk.headers()["x-request-id"], "a b", "unprintable ids are replaced");
    app.stop().await;
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().split(' ').next()?.parse().ok()))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[tokio::test]
async fn metrics_move_as_callbacks_and_deliveries_happen() {
    for db in databases().await {
        let receiver_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = format!("http://{}/hook", receiver_listener.local_addr().unwrap());
        let app_router = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(receiver_listener, app_router).await });
        let config = format!(
            "{}\n[[targets]]\nname = \"crm\"\nurl = \"{receiver}\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n",
            common::ACCOUNTS_TOML
        );
        let settings =
            common::settings_with_accounts(&db.url, &config, &[("TANYI_RELAY__DELIVERY__POLL_INTERVAL_MS", "50")]);
        let app = TestApp::spawn_settings(db.backend, settings).await;
        assert_acked(app.post(sample("call_record.json")).await).await;
        assert_acked(app.post(sample("call_record.json")).await).await;
        app.post_as(common::ACCOUNT, "wrong-key-0000000000", sample("call_record.json")).await;
        app.post_as("attacker-chosen-name", common::KEY, "{}").await;
        app.post("not json").await;
        let scrape = || async {
            let response =
                app.client.get(format!("{}/metrics", app.metrics_base.as_ref().unwrap())).send().await.unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.text().await.unwrap()
        };
        // Queue figures are read by a background task every few seconds, never by a scrape.
        let mut text = scrape().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !(text.contains(r#"tanyi_relay_deliveries_total{target="crm",outcome="delivered"} 1"#)
            && text.contains(r#"tanyi_relay_queue_pending{target="crm"} 0"#))
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
            text = scrape().await;
        }
        let callbacks = |data_type: &str, outcome: &str, account: &str| {
            metric(
                &text,
                &format!(
                    r#"tanyi_relay_callbacks_total{{account="{account}",data_type="{data_type}",outcome="{outcome}"}}"#
                ),
            )
        };
        assert_eq!(callbacks("ROBOT_CALL_RECORD", "stored", "acme"), 1.0, "{:?}", db.backend);
        assert_eq!(callbacks("ROBOT_CALL_RECORD", "duplicate", "acme"), 1.0);
        assert_eq!(callbacks("-", "unauthorized", "acme"), 1.0);
        assert_eq!(callbacks("-", "unauthorized", "-"), 1.0, "a caller's account name never becomes a label");
        assert_eq!(callbacks("-", "invalid_json", "acme"), 1.0);
        assert!(!text.contains("attacker-chosen-name"));
        assert_eq!(metric(&text, r#"tanyi_relay_deliveries_total{target="crm",outcome="delivered"}"#), 1.0);
        assert_eq!(metric(&text, r#"tanyi_relay_queue_pending{target="crm"}"#), 0.0);
        assert!(metric(&text, "tanyi_relay_ingest_duration_seconds_count") >= 5.0);
        assert!(metric(&text, "tanyi_relay_db_pool_connections") >= 1.0);
        let public = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap();
        assert_eq!(public.status().as_u16(), 404, "metrics on the public callback port");
        app.stop().await;
    }
}
