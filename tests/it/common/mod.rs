//! The harness every integration test uses: real databases (SQLite always, Postgres when
//! `TEST_DATABASE_URL` is set), the real application on port 0, real HTTP.
#![allow(dead_code)] // `tests/logs.rs` uses only a part of the harness

pub mod browser;
pub mod ledger;
pub mod process;
pub mod proxy;
pub mod receiver;
pub mod report_queries;
pub mod vectors;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{Connection, PgConnection};
use tanyi_relay::app::Application;
use tanyi_relay::config::Settings;
use tanyi_relay::store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ACCOUNT: &str = "acme";
pub const KEY: &str = "acme-callback-key-0001";
pub const NEW_YORK_ACCOUNT: &str = "nyc";
pub const NEW_YORK_KEY: &str = "nyc-callback-key-00002";

pub const ACCOUNTS_TOML: &str = r#"
[[accounts]]
name = "acme"
callback_key = "acme-callback-key-0001"

[[accounts]]
name = "nyc"
callback_key = "nyc-callback-key-00002"
utc_offset = "-05:00"
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One empty database for one test: a SQLite file in a temporary directory, or a fresh schema in
/// the Postgres test database (dropped again when the test ends).
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_schema: Option<(String, String)>,
}

/// The databases every storage test must pass on. Under `CI=true` a missing Postgres URL is an
/// error: CI must never pass by silently skipping one backend.
pub async fn databases() -> Vec<TestDb> {
    let mut all = vec![sqlite().await];
    match postgres_url() {
        Some(url) => all.push(postgres(&url).await),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but TEST_DATABASE_URL is not set: the Postgres tests would be skipped")
        }
        None => eprintln!("TEST_DATABASE_URL not set: running on SQLite only"),
    }
    all
}

/// The Postgres URL for a test that only makes sense on Postgres; `None` (the test skips) outside
/// CI only, as `databases()` does.
pub fn postgres_only(test: &str) -> Option<String> {
    let url = postgres_url();
    if url.is_none() {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI must run {test} on Postgres");
        eprintln!("TEST_DATABASE_URL not set: {test} runs on Postgres only");
    }
    url
}

pub fn postgres_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("relay.db").display());
    TestDb { backend: Backend::Sqlite, url, _dir: Some(dir), pg_schema: None }
}

pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}_{}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos)
}

pub async fn postgres(admin_url: &str) -> TestDb {
    let schema = unique_name("t");
    let mut conn = PgConnection::connect(admin_url).await.expect("connect to TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await.expect("create schema");
    conn.close().await.ok();
    let separator = if admin_url.contains('?') { '&' } else { '?' };
    let url = format!("{admin_url}{separator}options=-c%20search_path%3D{schema}");
    TestDb { backend: Backend::Postgres, url, _dir: None, pg_schema: Some((admin_url.to_owned(), schema)) }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, schema)) = self.pg_schema.take() {
            // Drop runs inside the test's runtime: clean up from a thread with its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                runtime.block_on(async {
                    let mut conn = PgConnection::connect(&admin_url).await.ok()?;
                    // A test that failed may have left its application running, holding locks:
                    // give up on the schema rather than hang the whole run (and hide the failure).
                    sqlx::query("SET lock_timeout = '5s'").execute(&mut conn).await.ok()?;
                    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut conn).await.ok()
                })
            })
            .join();
        }
    }
}

/// Settings for a test app on `db`, listening on port 0, with the `acme` and `nyc` accounts plus
/// any extra environment overrides.
pub fn settings(db: &TestDb, overrides: &[(&str, &str)]) -> Settings {
    settings_for_url(&db.url, overrides)
}

pub fn settings_for_url(database_url: &str, overrides: &[(&str, &str)]) -> Settings {
    settings_with_accounts(database_url, ACCOUNTS_TOML, overrides)
}

/// Settings with the given `[[accounts]]` TOML instead of the standard test accounts.
pub fn settings_with_accounts(database_url: &str, accounts_toml: &str, overrides: &[(&str, &str)]) -> Settings {
    let file = std::env::temp_dir().join(format!("{}.toml", unique_name("tanyi-relay-test-accounts")));
    std::fs::write(&file, accounts_toml).expect("write test accounts");
    let mut env: HashMap<String, String> = HashMap::from([
        ("TANYI_RELAY__SERVER__LISTEN".into(), "127.0.0.1:0".into()),
        ("TANYI_RELAY__METRICS__LISTEN".into(), "127.0.0.1:0".into()),
        ("TANYI_RELAY__DATABASE__URL".into(), database_url.to_owned()),
        ("TANYI_RELAY__DATABASE__MAX_CONNECTIONS".into(), "4".into()),
    ]);
    env.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings = Settings::from_sources(Some(&file), env);
    let _ = std::fs::remove_file(&file);
    settings.expect("test settings are valid")
}

pub struct TestApp {
    pub base: String,
    /// Where `/metrics` is served (a port of its own).
    pub metrics_base: Option<String>,
    pub store: Store,
    pub client: reqwest::Client,
    pub backend: Backend,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub async fn spawn(db: &TestDb) -> TestApp {
        Self::spawn_with(db, &[]).await
    }

    pub async fn spawn_with(db: &TestDb, overrides: &[(&str, &str)]) -> TestApp {
        Self::spawn_settings(db.backend, settings(db, overrides)).await
    }

    pub async fn spawn_settings(backend: Backend, settings: Settings) -> TestApp {
        let app = Application::build(&settings).await.expect("application starts");
        let base = format!("http://{}", app.local_addr());
        let metrics_base = app.metrics_addr().map(|addr| format!("http://{addr}"));
        let store = app.store().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        TestApp { base, metrics_base, store, client: client(), backend, stop: Some(stop), server: Some(server) }
    }

    pub fn callback_url(&self, account: &str, key: &str) -> String {
        format!("{}/callbacks/{account}?key={key}", self.base)
    }

    /// POSTs `body` as the platform does (JSON, the account's key in the query).
    pub async fn post(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.post_as(ACCOUNT, KEY, body).await
    }

    pub async fn post_as(&self, account: &str, key: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.callback_url(account, key))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request is answered")
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran cleanly");
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("http client")
}

/// A platform payload from `tests/fixtures/samples`.
pub fn sample(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/samples").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn sample_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&sample(name)).expect("sample is JSON")
}

/// Asserts a `200 success` answer.
pub async fn assert_acked(response: reqwest::Response) {
    let status = response.status();
    let content_type = response.headers().get("content-type").cloned();
    let body = response.text().await.expect("body");
    assert_eq!((status.as_u16(), body.as_str()), (200, "success"), "expected an ack");
    assert!(content_type.is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/plain")));
}

/// Asserts a JSON error answer with `status` and `code`, returning the body.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    let actual = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("error body is not JSON: {text}"));
    assert_eq!((actual, body["error"].as_str()), (status, Some(code)), "unexpected answer: {text}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "no message: {text}");
    body
}

/// POSTs `body` with `Transfer-Encoding: chunked` (no Content-Length) over a raw connection and
/// returns the status and body of the answer.
pub async fn post_chunked(app: &TestApp, path_and_query: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let mut request = format!(
        "POST {path_and_query} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(100) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading everything; a write error is not a failure.
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// Opens a POST that declares `declared` body bytes but sends only `sent`, and keeps the
/// connection open (a slow client). Read the answer with `read_answer`.
pub async fn start_slow_post(
    app: &TestApp,
    path_and_query: &str,
    declared: usize,
    sent: &[u8],
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let host = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let head = format!("POST {path_and_query} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {declared}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("send headers");
    stream.write_all(sent).await.expect("send part of the body");
    stream
}

/// The status and body of the answer on a raw connection.
pub async fn read_answer(mut stream: tokio::net::TcpStream) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).await.unwrap_or(0);
    let text = String::from_utf8_lossy(&answer[..n]).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}
