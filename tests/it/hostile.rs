//! Hostile and broken input over HTTP: every case gets its defined answer, nothing unauthenticated
//! is stored, and the process keeps serving.

use crate::common;
use crate::common::vectors;
use tanyi_relay::domain::InboxStatus;

use common::{assert_acked, sample, TestApp, ACCOUNT, ACCOUNTS_TOML, KEY};
use serde_json::json;

/// (name, body, status, error code)
fn json_cases() -> Vec<(String, Vec<u8>, u16, &'static str)> {
    let mut cases: Vec<(String, Vec<u8>, u16, &'static str)> = vec![
        (
            "truncated".into(),
            br#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":1"#.to_vec(),
            400,
            "invalid_json",
        ),
        ("empty".into(), Vec::new(), 400, "invalid_json"),
        (
            "deeply nested".into(),
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            422,
            "too_large_field",
        ),
        (
            "deeply nested data".into(),
            format!(r#"{{"dataType":"ROBOT_CALL_RECORD","data":{{"x":{}1{}}}}}"#, "[".repeat(5_000), "]".repeat(5_000))
                .into_bytes(),
            400,
            "invalid_json",
        ),
        (
            "number beyond f64".into(),
            br#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":1e400}}"#.to_vec(),
            400,
            "invalid_json",
        ),
        (
            "id beyond i64".into(),
            br#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":18446744073709551616}}"#.to_vec(),
            422,
            "invalid_field",
        ),
        (
            "invalid UTF-8".into(),
            b"{\"dataType\":\"ROBOT_CALL_RECORD\",\"data\":{\"callRecordId\":1,\"x\":\"\xff\xfe\"}}".to_vec(),
            400,
            "invalid_json",
        ),
        ("raw NUL byte".into(), b"{\"dataType\":\"ROBOT_CALL_JOB\",\0\"data\":{}}".to_vec(), 400, "invalid_json"),
        ("null".into(), b"null".to_vec(), 400, "invalid_envelope"),
        ("data null".into(), br#"{"dataType":"ROBOT_CALL_RECORD","data":null}"#.to_vec(), 400, "invalid_envelope"),
        ("empty dataType".into(), br#"{"dataType":"","data":{}}"#.to_vec(), 400, "invalid_envelope"),
        (
            "byte order mark".into(),
            b"\xef\xbb\xbf{\"dataType\":\"ROBOT_CALL_JOB\",\"data\":{\"robotCallJobId\":1}}".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "escaped NUL in text".into(),
            br#"{"dataType":"ROBOT_CALL_RECORD","data":{"callRecordId":77,"analysisBasis":"a\u0000b"}}"#.to_vec(),
            200,
            "",
        ),
        (
            "duplicate keys, last wins".into(),
            br#"{"dataType":"ROBOT_CALL_JOB","dataType":"SOMETHING_NEW","data":{}}"#.to_vec(),
            200,
            "",
        ),
    ];
    // A wrong type in every field of a call record.
    let wrong_types = [
        ("tenantId", json!("x")),
        ("robotCallJobId", json!([])),
        ("dialogFlowId", json!({})),
        ("calledPhoneNumber", json!(17751279857_i64)),
        ("resultStatus", json!(5)),
        ("intentLevel", json!(true)),
        ("customerConcern", json!("价格")),
        ("fullAudioUrl", json!(1)),
        ("customerAudioUrl", json!([])),
        ("analysisBasis", json!({})),
        ("startTime", json!(12)),
        ("endTime", json!("not a time")),
        ("chatDuration", json!("long")),
        ("chatRound", json!(true)),
        ("attributes", json!({})),
        ("properties", json!([])),
        ("callDetailList", json!({})),
    ];
    for (field, value) in wrong_types {
        let mut data = json!({"callRecordId": 1});
        data[field] = value;
        let body = json!({"dataType": "ROBOT_CALL_RECORD", "data": data}).to_string().into_bytes();
        cases.push((format!("wrong type: {field}"), body, 422, "invalid_field"));
    }
    cases.push((
        "wrong type inside the transcript".into(),
        json!({"dataType": "ROBOT_CALL_RECORD", "data": {"callRecordId": 1, "callDetailList": [{"type": 1}]}})
            .to_string()
            .into_bytes(),
        422,
        "invalid_field",
    ));
    cases.push((
        "wrong type in an SMS message".into(),
        json!({"dataType": "ROBOT_CALL_SMS", "data": {"callRecordId": 1, "msgList": [{"smsTemplateId": "x"}]}})
            .to_string()
            .into_bytes(),
        422,
        "invalid_field",
    ));
    cases
}

async fn spawn() -> (TestApp, common::TestDb, vectors::Positive) {
    let v = vectors::positive().into_iter().find(|v| v.name == "robot_call_job_completed").unwrap();
    let db = common::sqlite().await;
    let accounts = format!(
        "{ACCOUNTS_TOML}\n[[accounts]]\nname = \"enc\"\ntoken = \"{}\"\nencoding_aes_key = \"{}\"\n",
        v.token, v.encoding_aes_key
    );
    let app = TestApp::spawn_settings(db.backend, common::settings_with_accounts(&db.url, &accounts, &[])).await;
    (app, db, v)
}

#[tokio::test]
async fn broken_json_gets_its_defined_answer_and_the_process_keeps_serving() {
    let (app, _db, _) = spawn().await;
    let cases = json_cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    for (name, body, status, code) in &cases {
        let response = app.post(body.clone()).await;
        let got = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(got, *status, "{name}: {text}");
        if *status == 200 {
            assert_eq!(text, "success", "{name}");
        } else {
            let answer: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("{name}: not JSON: {text}"));
            assert_eq!(answer["error"], *code, "{name}");
        }
    }
    // Authenticated but unusable bodies are all kept for a look; nothing is lost or doubled.
    let rejected = cases.iter().filter(|c| c.2 != 200).count();
    let inbox = app.store.inbox(ACCOUNT).await.unwrap();
    assert_eq!(inbox.iter().filter(|e| e.status == InboxStatus::Rejected).count(), rejected);
    assert_eq!(app.store.call_record(ACCOUNT, 77).await.unwrap().unwrap().analysis_basis.as_deref(), Some("ab"));
    assert_acked(app.post(sample("call_record.json")).await).await;
    app.stop().await;
}

#[tokio::test]
async fn hostile_xml_and_forged_signatures_are_refused_without_storing() {
    let (app, _db, v) = spawn().await;
    let url = |signature: &str| {
        format!("{}/callbacks/enc?msg_signature={signature}&timestamp={}&nonce={}", app.base, v.timestamp, v.nonce)
    };
    let bomb = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">{}]><xml><Encrypt>&lol9;</Encrypt></xml>",
        (1..10).map(|i| format!("<!ENTITY lol{i} \"{}\">", format!("&lol{};", i - 1).repeat(10))).collect::<String>()
    );
    let xxe = "<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><Encrypt>&x;</Encrypt></xml>".to_owned();
    let deep = format!("{}{}", "<a>".repeat(30_000), "</a>".repeat(30_000));
    let cases: Vec<(&str, String, String, u16, &str)> = vec![
        ("billion laughs", url(&v.msg_signature), bomb, 400, "malformed_xml"),
        ("external entity", url(&v.msg_signature), xxe, 400, "malformed_xml"),
        ("deeply nested XML", url(&v.msg_signature), deep, 400, "malformed_xml"),
        ("not XML at all", url(&v.msg_signature), "\u{0}\u{1}garbage".into(), 400, "malformed_xml"),
        (
            "tampered body, replayed signature",
            url(&v.msg_signature),
            v.xml.replacen("OmAp", "OmAq", 1),
            401,
            "invalid_signature",
        ),
        ("signature for other content", url(&"0".repeat(40)), v.xml.clone(), 401, "invalid_signature"),
        ("signature of the wrong length", url("abc"), v.xml.clone(), 401, "invalid_signature"),
    ];
    for (name, target, body, status, code) in cases {
        let response = app.client.post(target).body(body).send().await.unwrap();
        common::assert_error(response, status, code).await;
        assert!(app.store.inbox("enc").await.unwrap().is_empty(), "{name}: stored something");
    }
    // The real message still goes through.
    assert_acked(app.client.post(url(&v.msg_signature)).body(v.xml.clone()).send().await.unwrap()).await;
    app.stop().await;
}

#[tokio::test]
async fn odd_requests_get_json_errors_or_a_protocol_refusal() {
    let (app, _db, _) = spawn().await;
    let body = sample("job_completed.json");
    let huge_header = "x".repeat(100_000);
    let oversized = app
        .client
        .post(app.callback_url(ACCOUNT, KEY))
        .header("x-padding", huge_header)
        .body(body.clone())
        .send()
        .await;
    // hyper refuses headers that large before any handler runs (431), or drops the connection.
    assert!(oversized.map_or(true, |r| r.status().as_u16() == 431), "oversized headers were accepted");
    let cases = [
        (reqwest::Method::DELETE, app.callback_url(ACCOUNT, KEY), 405, "method_not_allowed"),
        (reqwest::Method::POST, format!("{}/callbacks/{}?key={KEY}", app.base, "a".repeat(1000)), 401, "unauthorized"),
        (reqwest::Method::POST, format!("{}/callbacks/%2e%2e%2fadmin?key={KEY}", app.base), 401, "unauthorized"),
        (
            reqwest::Method::POST,
            format!("{}/callbacks/{ACCOUNT}?key=wrong-key-000000000&key={KEY}", app.base),
            401,
            "unauthorized",
        ),
        (reqwest::Method::POST, format!("{}/callbacks/{ACCOUNT}/extra", app.base), 404, "not_found"),
        (reqwest::Method::POST, format!("{}/callbacks/{ACCOUNT}?key=%ZZ", app.base), 401, "unauthorized"),
    ];
    for (method, target, status, code) in cases {
        let response = app.client.request(method.clone(), &target).body(body.clone()).send().await.unwrap();
        common::assert_error(response, status, code).await;
    }
    assert!(app.store.inbox(ACCOUNT).await.unwrap().is_empty(), "nothing unauthenticated is stored");
    // A large body (nine tenths of the limit, every field under its cap) is not a large header: it
    // streams through.
    let limit = common::settings_for_url("sqlite::memory:", &[]).server.body_limit_bytes;
    let field = tanyi_relay::platform::limits::MAX_STRING_BYTES / 2;
    let properties: serde_json::Map<String, serde_json::Value> =
        (0..limit * 9 / 10 / field).map(|i| (format!("p{i}"), json!("x".repeat(field)))).collect();
    let large = json!({"dataType": "ROBOT_CALL_RECORD", "data": {"callRecordId": 88, "properties": properties}});
    assert_acked(app.post(large.to_string()).await).await;
    let health = app.client.get(format!("{}/healthz", app.base)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200, "still serving");
    assert_acked(app.post(body).await).await;
    app.stop().await;
}
