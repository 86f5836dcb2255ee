//! The simulator plays the platform against a real relay: what it reports matches what the relay
//! stored.

use crate::common;
use crate::common::vectors;
use tanyi_relay::domain::InboxStatus;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{databases, TestApp, ACCOUNT, KEY};
use tanyi_relay::platform::crypto::CallbackCrypto;
use tanyi_relay::sim::simulate::{campaign, run, Auth, Options, RetrySchedule};

fn options(url: String, auth: Auth) -> Options {
    Options {
        url,
        auth,
        calls: 80,
        jobs: 2,
        concurrency: 8,
        rate: None,
        duplicates: 0.3,
        seed: 5,
        retry: RetrySchedule::Compressed,
    }
}

#[tokio::test]
async fn a_simulated_campaign_is_acked_and_stored_with_its_duplicates_counted() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        let options = options(format!("{}/callbacks/{ACCOUNT}", app.base), Auth::Plain { key: KEY.into() });
        let jobs = campaign(&options);
        let summary = run(options).await;
        assert_eq!((summary.acked, summary.given_up, summary.retried), (summary.callbacks, 0, 0), "{:?}", db.backend);
        assert!(summary.duplicates_sent > 0);
        assert_eq!(summary.requests, summary.callbacks + summary.duplicates_sent);
        assert!(summary.latency_ms.p50 > 0.0 && summary.latency_ms.p50 <= summary.latency_ms.max);
        let inbox = app.store.inbox(ACCOUNT).await.unwrap();
        assert_eq!(inbox.len() as u64, summary.callbacks, "every distinct callback once");
        let seen: i64 = inbox.iter().map(|e| e.times_seen).sum();
        assert_eq!(seen as u64, summary.callbacks + summary.duplicates_sent, "duplicates only bumped counters");
        for job in jobs {
            assert_eq!(app.store.jobs(ACCOUNT, job.robot_call_job_id).await.unwrap().len(), 1);
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn an_encrypted_campaign_is_acked() {
    let v = vectors::positive().into_iter().find(|v| v.name == "robot_call_job_completed").unwrap();
    let db = common::sqlite().await;
    let account = format!(
        "[[accounts]]\nname = \"enc\"\ntoken = \"{}\"\nencoding_aes_key = \"{}\"\n",
        v.token, v.encoding_aes_key
    );
    let app = TestApp::spawn_settings(db.backend, common::settings_with_accounts(&db.url, &account, &[])).await;
    let crypto = CallbackCrypto::new(&v.token, &v.encoding_aes_key, "").unwrap();
    let mut options = options(format!("{}/callbacks/enc", app.base), Auth::Encrypted { crypto });
    options.calls = 30;
    let summary = run(options).await;
    assert_eq!((summary.acked, summary.given_up), (summary.callbacks, 0));
    assert!(!app.store.inbox("enc").await.unwrap().iter().any(|e| e.status == InboxStatus::Rejected));
    app.stop().await;
}

/// A receiver that answers 503 to the first `failures` requests, then `success`.
async fn flaky(failures: usize) -> String {
    let seen = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/callbacks/acme",
        axum::routing::post(move || {
            let seen = seen.clone();
            async move {
                if seen.fetch_add(1, Ordering::SeqCst) < failures {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy")
                } else {
                    (axum::http::StatusCode::OK, "success")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/callbacks/acme", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn refusals_are_retried_like_the_platform_retries_and_given_up_after_the_last_attempt() {
    let mut retrying = options(flaky(5).await, Auth::Plain { key: "k".into() });
    retrying.duplicates = 0.0;
    retrying.calls = 10;
    let summary = run(retrying).await;
    assert_eq!((summary.retried, summary.acked, summary.given_up), (5, summary.callbacks, 0));

    let mut never = options(flaky(usize::MAX).await, Auth::Plain { key: "k".into() });
    never.retry = RetrySchedule::None;
    never.calls = 4;
    never.jobs = 1;
    let summary = run(never).await;
    assert_eq!((summary.acked, summary.given_up, summary.requests), (0, summary.callbacks, summary.callbacks));
}

// Multi-threaded: the command blocks this thread while the relay answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulate_command_prints_its_summary_as_json() {
    let db = common::sqlite().await;
    let app = TestApp::spawn(&db).await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tanyi-relay"))
        .args([
            "simulate",
            "--url",
            &format!("{}/callbacks/{ACCOUNT}", app.base),
            "--calls",
            "20",
            "--jobs",
            "1",
            "--json",
        ])
        .env("TANYI_RELAY_SIM_KEY", KEY)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["given_up"], 0);
    assert_eq!(summary["acked"], summary["callbacks"]);
    app.stop().await;
}
