//! Connections and requests are bounded: a silent or half-speaking socket is closed, HTTP/2 is not
//! spoken, idle keep-alive ends, the number of connections is capped, and requests that are not
//! yet authenticated never take the slots of those that are, nor the probes'.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{self, assert_acked, sample, TestApp, ACCOUNT, KEY};

fn host(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// How long until the server closes `stream` (reads until EOF or reset), at most `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

async fn spawn(overrides: &[(&str, &str)]) -> (TestApp, common::TestDb) {
    let db = common::sqlite().await;
    let app = TestApp::spawn_with(&db, overrides).await;
    (app, db)
}

#[tokio::test]
async fn a_silent_socket_and_a_half_sent_head_are_closed_after_the_header_timeout() {
    let (app, _db) = spawn(&[("TANYI_RELAY__SERVER__HEADER_TIMEOUT_MS", "300")]).await;
    for (name, sent) in [
        ("silent", &b""[..]),
        ("partial HTTP/2 preface", b"PRI * HTT"),
        ("half a request head", b"POST /callbacks/acme HTTP/1.1\r\nHost: x\r\n"),
    ] {
        let mut stream = TcpStream::connect(host(&app)).await.unwrap();
        stream.write_all(sent).await.unwrap();
        let closed = closed_within(&mut stream, Duration::from_secs(5)).await;
        assert!(closed.is_some_and(|after| after >= Duration::from_millis(250)), "{name}: {closed:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn http2_is_not_spoken_not_even_after_a_whole_preface() {
    let (app, _db) = spawn(&[]).await;
    let mut stream = TcpStream::connect(host(&app)).await.unwrap();
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    let closed = closed_within(&mut stream, Duration::from_secs(2)).await;
    assert!(closed.is_some(), "an HTTP/2 preface was kept open");
    // And the next connection is served as usual.
    let health = app.client.get(format!("{}/healthz", app.base)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    app.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_but_a_slow_request_in_flight_is_not() {
    let (app, _db) =
        spawn(&[("TANYI_RELAY__SERVER__IDLE_TIMEOUT_MS", "300"), ("TANYI_RELAY__SERVER__HEADER_TIMEOUT_MS", "5000")])
            .await;
    let mut stream = TcpStream::connect(host(&app)).await.unwrap();
    stream.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", host(&app)).as_bytes()).await.unwrap();
    let mut answer = [0u8; 512];
    let n = stream.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    let closed = closed_within(&mut stream, Duration::from_secs(3)).await;
    assert!(closed.is_some_and(|after| after < Duration::from_secs(2)), "idle keep-alive stayed open: {closed:?}");
    // A body that takes longer than the idle timeout to arrive (but within its own deadline).
    let body = sample("job_completed.json");
    let mut stream = TcpStream::connect(host(&app)).await.unwrap();
    let head = format!(
        "POST /callbacks/{ACCOUNT}?key={KEY} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
        host(&app),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.as_bytes().chunks(body.len().div_ceil(4)) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stream.write_all(chunk).await.unwrap();
    }
    let n = stream.read(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("success"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn beyond_max_connections_the_oldest_idle_one_makes_room() {
    let (app, _db) =
        spawn(&[("TANYI_RELAY__SERVER__MAX_CONNECTIONS", "4"), ("TANYI_RELAY__SERVER__HEADER_TIMEOUT_MS", "30000")])
            .await;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(host(&app)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A fresh client (no keep-alive pool) gets its answer although four sockets hold every place.
    assert_acked(
        common::client().post(app.callback_url(ACCOUNT, KEY)).body(sample("job_completed.json")).send().await.unwrap(),
    )
    .await;
    let oldest = closed_within(&mut silent[0], Duration::from_secs(2)).await;
    assert!(oldest.is_some(), "the oldest idle connection was not closed to make room");
    let health = common::client().get(format!("{}/healthz", app.base)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    app.stop().await;
}

#[tokio::test]
async fn slow_unauthenticated_bodies_take_neither_the_probes_nor_authenticated_callbacks() {
    let accounts = format!(
        "{}\n[[accounts]]\nname = \"enc\"\ntoken = \"AIGbuK3sOV\"\nencoding_aes_key = \"INnZzJ/DPbUqqtU2ycEhzL8ewpsCRb9XqHBWHdDCknw\"\n",
        common::ACCOUNTS_TOML
    );
    let db = common::sqlite().await;
    let settings = common::settings_with_accounts(
        &db.url,
        &accounts,
        &[
            ("TANYI_RELAY__SERVER__UNAUTHENTICATED_BODY_BUDGET_BYTES", "4096"),
            ("TANYI_RELAY__SERVER__MAX_CONCURRENT_REQUESTS", "4"),
            ("TANYI_RELAY__SERVER__UNAUTHENTICATED_BODY_TIMEOUT_MS", "1500"),
            ("TANYI_RELAY__SERVER__BODY_TIMEOUT_MS", "20000"),
        ],
    );
    let app = TestApp::spawn_settings(db.backend, settings).await;
    let encrypted = "/callbacks/enc?msg_signature=x&timestamp=1&nonce=2";
    // Hundreds trickling a byte each cost next to nothing; two that sent 1.5 KB each hold the
    // whole 4 KiB budget.
    let mut slow = Vec::new();
    for _ in 0..200 {
        slow.push(common::start_slow_post(&app, encrypted, 10_000, b"<").await);
    }
    for _ in 0..2 {
        slow.push(common::start_slow_post(&app, encrypted, 10_000, &[b'x'; 1500]).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for probe in ["/healthz", "/readyz"] {
        let started = Instant::now();
        let response = app.client.get(format!("{}{probe}", app.base)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{probe}");
        assert!(started.elapsed() < Duration::from_millis(500), "{probe} waited");
    }
    assert_acked(app.post(sample("call_record.json")).await).await;
    // The unauthenticated budget is full: the next one is told to come back, at once.
    let (status, body) =
        common::read_answer(common::start_slow_post(&app, encrypted, 10_000, &[b'x'; 1500]).await).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("overloaded"), "{body}");
    // And the slow ones get their shorter deadline.
    let started = Instant::now();
    let (status, _) = common::read_answer(slow.pop().unwrap()).await;
    assert!(status == 408 || status == 503, "{status}");
    assert!(started.elapsed() < Duration::from_secs(3));
    app.stop().await;
}

#[tokio::test]
async fn the_relay_raises_its_open_file_limit_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::process::free_port();
    let mut child = std::process::Command::new("sh")
        .args(["-c", "ulimit -S -n 512 && exec \"$0\" serve", env!("CARGO_BIN_EXE_tanyi-relay")])
        .env("TANYI_RELAY__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("TANYI_RELAY__METRICS__LISTEN", "127.0.0.1:0")
        .env("TANYI_RELAY__DATABASE__URL", format!("sqlite://{}", dir.path().join("relay.db").display()))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = format!("http://127.0.0.1:{port}/healthz");
    while !common::client().get(&health).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "the relay did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft limit not raised to the hard one: {line}");
    assert_ne!(numbers[0], "512", "{line}");
}
