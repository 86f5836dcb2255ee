//! Every row of the answers table of docs/HTTP.md, over real HTTP, with what each leaves in storage.

use crate::common;
use tanyi_relay::domain::InboxStatus;

use common::{assert_acked, assert_error, databases, sample, TestApp, ACCOUNT, KEY};
use serde_json::json;

#[tokio::test]
async fn an_unknown_account_is_answered_as_a_wrong_key_is_and_nothing_is_stored() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        let unknown =
            assert_error(app.post_as("nobody", KEY, sample("call_record.json")).await, 401, "unauthorized").await;
        let wrong_key = assert_error(
            app.post_as(ACCOUNT, "wrong-key-000000000", sample("call_record.json")).await,
            401,
            "unauthorized",
        )
        .await;
        assert_eq!(unknown, wrong_key, "from outside, a wrong account and a wrong key look the same");
        assert!(app.store.inbox("nobody").await.unwrap().is_empty(), "{:?}", db.backend);
        app.stop().await;
    }
}

#[tokio::test]
async fn missing_or_wrong_key_is_401_and_nothing_is_stored() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        let body = sample("call_record.json");
        let no_key = format!("{}/callbacks/{ACCOUNT}", app.base);
        assert_error(app.client.post(no_key).body(body.clone()).send().await.unwrap(), 401, "unauthorized").await;
        assert_error(app.post_as(ACCOUNT, "acme-callback-key-0002", body.clone()).await, 401, "unauthorized").await;
        assert_error(app.post_as(ACCOUNT, "", body.clone()).await, 401, "unauthorized").await;
        // Another account's valid key does not open this one.
        assert_error(app.post_as(ACCOUNT, common::NEW_YORK_KEY, body).await, 401, "unauthorized").await;
        assert!(app.store.inbox(ACCOUNT).await.unwrap().is_empty(), "{:?}", db.backend);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_whether_declared_or_streamed() {
    for db in databases().await {
        let app = TestApp::spawn_with(&db, &[("TANYI_RELAY__SERVER__BODY_LIMIT_BYTES", "1000")]).await;
        let padding = "x".repeat(2000);
        let big = json!({"dataType": "ROBOT_CALL_JOB", "data": {"robotCallJobId": 1, "pad": padding}}).to_string();
        assert_error(app.post(big.clone()).await, 413, "payload_too_large").await;
        // Without a Content-Length the limit is enforced while reading.
        let (status, answer) =
            common::post_chunked(&app, &format!("/callbacks/{ACCOUNT}?key={KEY}"), big.as_bytes()).await;
        assert_eq!(status, 413, "{answer}");
        assert!(answer.contains("payload_too_large"), "{answer}");
        assert!(app.store.inbox(ACCOUNT).await.unwrap().is_empty(), "{:?}", db.backend);
        // Exactly at the limit is fine.
        let fits = json!({"dataType": "ROBOT_CALL_JOB", "data": {"robotCallJobId": 1}}).to_string();
        let fits = format!("{fits}{}", " ".repeat(1000 - fits.len()));
        assert_acked(app.post(fits).await).await;
        app.stop().await;
    }
}

#[tokio::test]
async fn malformed_bodies_are_400_and_kept_as_rejected() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        let cases: [(&[u8], &str); 5] = [
            (b"{not json", "invalid_json"),
            (b"\xff\xfe\x00garbage", "invalid_json"),
            (br#"{"data": {"callRecordId": 1}}"#, "invalid_envelope"),
            (br#"{"dataType": "ROBOT_CALL_RECORD"}"#, "invalid_envelope"),
            (br#"{"dataType": "ROBOT_CALL_RECORD", "data": "119"}"#, "invalid_envelope"),
        ];
        for (body, code) in cases {
            assert_error(app.post(body.to_vec()).await, 400, code).await;
        }
        let inbox = app.store.inbox(ACCOUNT).await.unwrap();
        assert_eq!(inbox.len(), cases.len(), "{:?}", db.backend);
        for (entry, (body, _)) in inbox.iter().zip(cases) {
            assert_eq!(entry.status, InboxStatus::Rejected);
            assert_eq!(entry.body.as_deref(), Some(body), "raw bytes kept exactly, NUL included");
            assert!(entry.error.as_deref().is_some_and(|e| !e.is_empty()));
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn a_known_type_with_a_missing_id_or_wrong_type_is_422_naming_the_field() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        let cases = [
            (json!({"dataType": "ROBOT_CALL_RECORD", "data": {"tenantId": 1}}), "data.callRecordId"),
            (json!({"dataType": "ROBOT_CALL_RECORD", "data": {"callRecordId": {"id": 1}}}), "data.callRecordId"),
            (
                json!({"dataType": "ROBOT_CALL_RECORD", "data": {"callRecordId": 1, "customerConcern": "价格"}}),
                "data.customerConcern",
            ),
            (json!({"dataType": "ROBOT_CALL_JOB", "data": {"robotCallJobId": "job-1"}}), "data.robotCallJobId"),
            (
                json!({"dataType": "ROBOT_CALL_SMS", "data": {"callRecordId": 1, "msgList": [{"varMap": []}]}}),
                "data.msgList[0].varMap",
            ),
        ];
        for (body, field) in &cases {
            let answer = assert_error(app.post(body.to_string()).await, 422, "invalid_field").await;
            assert_eq!(answer["field"], json!(field), "{:?}", db.backend);
        }
        let inbox = app.store.inbox(ACCOUNT).await.unwrap();
        assert_eq!(inbox.len(), cases.len());
        assert!(inbox.iter().all(|e| e.status == InboxStatus::Rejected));
        assert!(app.store.call_record(ACCOUNT, 1).await.unwrap().is_none(), "nothing normalized");
        app.stop().await;
    }
}

#[tokio::test]
async fn an_unknown_data_type_is_acked_and_kept_as_unrecognized() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        let body = json!({"dataType": "ROBOT_CALL_VOICEMAIL", "data": {"anything": [1, 2, 3]}}).to_string();
        assert_acked(app.post(body.clone()).await).await;
        assert_acked(app.post(body.clone()).await).await;
        let inbox = app.store.inbox(ACCOUNT).await.unwrap();
        assert_eq!(inbox.len(), 1, "{:?}", db.backend);
        assert_eq!(inbox[0].status, InboxStatus::Unrecognized);
        assert_eq!(inbox[0].data_type.as_deref(), Some("ROBOT_CALL_VOICEMAIL"));
        assert_eq!(inbox[0].times_seen, 2);
        assert_eq!(inbox[0].body.as_deref(), Some(body.as_bytes()));
        app.stop().await;
    }
}

#[tokio::test]
async fn content_type_is_ignored() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        for content_type in ["text/plain", "application/x-www-form-urlencoded", "application/xml"] {
            let response = app
                .client
                .post(app.callback_url(ACCOUNT, KEY))
                .header("content-type", content_type)
                .body(sample("job_completed.json"))
                .send()
                .await
                .unwrap();
            assert_acked(response).await;
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn wrong_paths_and_methods_get_json_errors() {
    let db = common::sqlite().await;
    let app = TestApp::spawn(&db).await;
    let put = app.client.put(app.callback_url(ACCOUNT, KEY)).send().await.unwrap();
    assert_error(put, 405, "method_not_allowed").await;
    let nowhere = app.client.post(format!("{}/callback/{ACCOUNT}", app.base)).send().await.unwrap();
    assert_error(nowhere, 404, "not_found").await;
    app.stop().await;
}

#[tokio::test]
async fn a_transaction_that_fails_midway_answers_503_and_leaves_nothing_behind() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        // Break the last step of the call transaction (the transcript insert) on the real database.
        break_transcripts(&app).await;
        assert_error(app.post(sample("call_record.json")).await, 503, "storage_unavailable").await;
        assert!(app.store.inbox(ACCOUNT).await.unwrap().is_empty(), "{:?}: inbox row rolled back", db.backend);
        assert!(app.store.call_record(ACCOUNT, 119).await.unwrap().is_none(), "{:?}: call rolled back", db.backend);
        app.stop().await;
    }
}

async fn break_transcripts(app: &TestApp) {
    app.store.adhoc().execute("ALTER TABLE call_turns RENAME TO call_turns_gone").await.expect("rename table");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408_and_nothing_is_stored() {
    let db = common::sqlite().await;
    let app = TestApp::spawn_with(&db, &[("TANYI_RELAY__SERVER__BODY_TIMEOUT_MS", "300")]).await;
    let path = format!("/callbacks/{ACCOUNT}?key={KEY}");
    let started = std::time::Instant::now();
    let slow = common::start_slow_post(&app, &path, 100, b"{\"dataType\":").await;
    let (status, body) = common::read_answer(slow).await;
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("body_timeout"), "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert!(app.store.inbox(ACCOUNT).await.unwrap().is_empty());
    assert_acked(app.post(sample("job_completed.json")).await).await;
    app.stop().await;
}

#[tokio::test]
async fn beyond_the_concurrency_limit_requests_get_503_with_retry_after() {
    let db = common::sqlite().await;
    let app = TestApp::spawn_with(
        &db,
        &[("TANYI_RELAY__SERVER__MAX_CONCURRENT_REQUESTS", "1"), ("TANYI_RELAY__SERVER__BODY_TIMEOUT_MS", "1500")],
    )
    .await;
    let path = format!("/callbacks/{ACCOUNT}?key={KEY}");
    // A slow client holds the only slot.
    let slow = common::start_slow_post(&app, &path, 100, b"{").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let refused = app.post(sample("job_completed.json")).await;
    assert_eq!(refused.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned()), Some("1".into()));
    assert_error(refused, 503, "overloaded").await;
    assert_eq!(common::read_answer(slow).await.0, 408);
    assert_acked(app.post(sample("job_completed.json")).await).await;
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = common::sqlite().await;
    let app = TestApp::spawn_with(&db, &[("TANYI_RELAY__SERVER__HEADER_TIMEOUT_MS", "300")]).await;
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
    stream.write_all(b"POST /callbacks/acme?key=acme-callback-key-0001 HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection was still open after 5 s");
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "closed only after {:?}", started.elapsed());
    // Still serving everyone else.
    assert_acked(app.post(sample("job_completed.json")).await).await;
    app.stop().await;
}

#[tokio::test]
async fn a_callback_over_a_cap_is_422_and_kept_raw_as_rejected() {
    use tanyi_relay::platform::limits::{MAX_ARRAY_ITEMS, MAX_SMS_MESSAGES};
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        let turns: Vec<serde_json::Value> =
            (0..=MAX_ARRAY_ITEMS).map(|i| json!({"type": "ROBOT", "text": i})).collect();
        let too_many_turns =
            json!({"dataType": "ROBOT_CALL_RECORD", "data": {"callRecordId": 5, "callDetailList": turns}});
        let empty_turns = format!(
            r#"{{"dataType":"ROBOT_CALL_RECORD","data":{{"callRecordId":6,"callDetailList":[{}]}}}}"#,
            vec!["{}"; 60_000].join(",")
        );
        let messages = vec![json!({"msg": "hi"}); MAX_SMS_MESSAGES + 1];
        let sms = json!({"dataType": "ROBOT_CALL_SMS", "data": {"callRecordId": 7, "msgList": messages}});
        for (body, field) in [
            (too_many_turns.to_string(), "data.callDetailList"),
            (empty_turns, "data"),
            (sms.to_string(), "data.msgList"),
        ] {
            let answer = assert_error(app.post(body.clone()).await, 422, "too_large_field").await;
            assert_eq!(answer["field"], field, "{:?}", db.backend);
            let inbox = app.store.inbox(ACCOUNT).await.unwrap();
            let kept = inbox.iter().find(|e| e.body.as_deref() == Some(body.as_bytes()));
            assert!(kept.is_some_and(|e| e.status == InboxStatus::Rejected), "{:?}: {field} not kept", db.backend);
        }
        for id in [5, 6] {
            assert!(app.store.call_record(ACCOUNT, id).await.unwrap().is_none(), "nothing stored in part");
        }
        let far =
            json!({"dataType": "ROBOT_CALL_RECORD", "data": {"callRecordId": 8, "startTime": "-5000-01-01 00:00:00"}});
        let answer = assert_error(app.post(far.to_string()).await, 422, "invalid_field").await;
        assert_eq!(answer["field"], "data.startTime");
        app.stop().await;
    }
}
