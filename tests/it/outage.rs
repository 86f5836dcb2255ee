//! A database that goes away mid-run: callbacks are answered 503 (so the platform retries), none
//! is half-stored, and the service recovers by itself once the database is back.

use crate::common;

use std::time::Duration;

use common::{assert_acked, assert_error, sample, Backend, TestApp, ACCOUNT};
use sqlx::{Connection, Executor, PgConnection, SqliteConnection};

const SHORT_TIMEOUT: (&str, &str) = ("TANYI_RELAY__DATABASE__ACQUIRE_TIMEOUT_MS", "300");

#[tokio::test]
async fn sqlite_locked_by_another_writer_answers_503_then_recovers() {
    let db = common::sqlite().await;
    let app = TestApp::spawn_with(&db, &[SHORT_TIMEOUT]).await;
    assert_acked(app.post(sample("job_completed.json")).await).await;

    // Another process holding the write lock is what "unavailable" looks like for a file database.
    let mut intruder = SqliteConnection::connect(&db.url).await.expect("second connection");
    intruder.execute("BEGIN EXCLUSIVE").await.expect("take the write lock");
    assert_error(app.post(sample("call_record.json")).await, 503, "storage_unavailable").await;
    intruder.execute("ROLLBACK").await.expect("release the lock");

    assert!(app.store.call_record(ACCOUNT, 119).await.unwrap().is_none(), "the refused callback was not stored");
    assert_acked(app.post(sample("call_record.json")).await).await;
    assert!(app.store.call_record(ACCOUNT, 119).await.unwrap().is_some(), "the platform's retry is stored");
    assert_eq!(app.backend, Backend::Sqlite);
    app.stop().await;
}

#[tokio::test]
async fn postgres_that_refuses_connections_answers_503_then_recovers() {
    let Some(admin_url) = common::postgres_url() else {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI must run the Postgres outage test");
        eprintln!("TEST_DATABASE_URL not set: skipping the Postgres outage test");
        return;
    };
    // A database of its own, so that cutting it off touches no other test.
    let name = common::unique_name("outage");
    let mut admin = PgConnection::connect(&admin_url).await.expect("admin connection");
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create database");
    let url = replace_database(&admin_url, &name);
    let app = TestApp::spawn_settings(Backend::Postgres, common::settings_for_url(&url, &[SHORT_TIMEOUT])).await;
    assert_acked(app.post(sample("job_completed.json")).await).await;

    admin
        .execute(format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false").as_str())
        .await
        .expect("refuse connections");
    admin
        .execute(format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'").as_str())
        .await
        .expect("cut existing connections");
    for _ in 0..3 {
        assert_error(app.post(sample("call_record.json")).await, 503, "storage_unavailable").await;
    }

    admin
        .execute(format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true").as_str())
        .await
        .expect("allow connections again");
    // Recovery needs no restart; the pool reconnects on the next request.
    let mut recovered = false;
    for _ in 0..50 {
        if app.post(sample("call_record.json")).await.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the service did not recover once Postgres was back");
    let inbox = app.store.inbox(ACCOUNT).await.unwrap();
    assert_eq!(inbox.len(), 2, "the job and the call, each once");
    assert!(app.store.call_record(ACCOUNT, 119).await.unwrap().is_some());
    app.stop().await;
    admin.execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str()).await.expect("drop database");
}

fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let prefix = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
    match query {
        Some(q) => format!("{prefix}/{database}?{q}"),
        None => format!("{prefix}/{database}"),
    }
}
