//! Log lines never carry a callback key, a database password or a full phone number, whatever
//! the request. This binary installs its own global subscriber, so it is a test file of its own.

#[path = "it/common/mod.rs"]
mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{sample, TestApp, ACCOUNT, KEY};
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_or_full_phone_number_reaches_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt().with_env_filter("trace").with_ansi(false).with_writer(move || writer.clone()).init();

    let db = common::sqlite().await;
    let app = TestApp::spawn(&db).await;
    let phone = "17751279857";
    app.post(sample("call_record.json")).await;
    app.post(sample("sms.json")).await;
    app.post_as(ACCOUNT, "wrong-key-but-also-secret", sample("call_record.json")).await;
    app.post_as("no-such-account", KEY, "{}").await;
    app.post(
        json!({"dataType": "ROBOT_CALL_RECORD", "data": {"callRecordId": "bad", "calledPhoneNumber": phone}})
            .to_string(),
    )
    .await;
    app.post(
        json!({"dataType": "ROBOT_CALL_RECORD", "data": {"callRecordId": 1, "calledPhoneNumber": 17751279857_i64}})
            .to_string(),
    )
    .await;
    app.post(format!("not json {phone}")).await;
    app.stop().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("call record stored"), "the capture works: {logs}");
    assert!(logs.contains("177****9857"), "phone numbers are logged masked");
    for forbidden in [KEY, "wrong-key-but-also-secret", phone, "18326042077", db.url.as_str()] {
        assert!(!logs.contains(forbidden), "`{forbidden}` leaked into the logs:\n{logs}");
    }
}
