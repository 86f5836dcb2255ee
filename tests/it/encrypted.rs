//! The encrypted mode over real HTTP: the URL check, every vendor vector posted in both XML forms,
//! every refused input, on every backend.

use crate::common;
use crate::common::vectors;
use tanyi_relay::domain::InboxStatus;

use std::collections::HashMap;

use common::{assert_acked, assert_error, databases, Backend, TestApp};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use tanyi_relay::ingest::{MAX_ECHOSTR_CHARS, MAX_ECHO_BYTES};
use tanyi_relay::platform::callback::{parse_callback, Event, ParseError};
use tanyi_relay::platform::crypto::CallbackCrypto;
use vectors::{answer, Answer};

/// One account per distinct (token, key, receive id) in the vectors, plus the mode-test accounts.
struct Accounts {
    toml: String,
    names: HashMap<(String, String, String), String>,
}

fn accounts() -> Accounts {
    let mut names = HashMap::new();
    let mut toml = String::new();
    let combos = vectors::positive().into_iter().map(|v| (v.token, v.encoding_aes_key, v.receive_id)).chain(
        vectors::negative().into_iter().chain(vectors::lenient()).map(|v| (v.token, v.encoding_aes_key, v.receive_id)),
    );
    for combo in combos {
        if CallbackCrypto::new(&combo.0, &combo.1, &combo.2).is_err() || names.contains_key(&combo) {
            continue;
        }
        let name = format!("enc{}", names.len());
        toml.push_str(&format!(
            "[[accounts]]\nname = \"{name}\"\ntoken = {}\nencoding_aes_key = {}\nreceive_id = {}\n\n",
            quoted(&combo.0),
            quoted(&combo.1),
            quoted(&combo.2)
        ));
        names.insert(combo, name);
    }
    toml.push_str(
        "[[accounts]]\nname = \"both\"\ntoken = \"AIGbuK3sOV\"\nencoding_aes_key = \"INnZzJ/DPbUqqtU2ycEhzL8ewpsCRb9XqHBWHdDCknw\"\n\
         callback_key = \"both-plain-key-000001\"\nallow_plain = true\n\n\
         [[accounts]]\nname = \"plain\"\ncallback_key = \"plain-only-key-000001\"\n",
    );
    Accounts { toml, names }
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a JSON string is a TOML basic string")
}

async fn spawn(db: &common::TestDb, accounts: &Accounts) -> TestApp {
    TestApp::spawn_settings(db.backend, common::settings_with_accounts(&db.url, &accounts.toml, &[])).await
}

fn enc(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

fn signed_url(app: &TestApp, account: &str, signature: &str, timestamp: &str, nonce: &str) -> String {
    format!(
        "{}/callbacks/{account}?msg_signature={}&timestamp={}&nonce={}",
        app.base,
        enc(signature),
        enc(timestamp),
        enc(nonce)
    )
}

/// Whether a decrypted text is what a URL check may echo (short, and not a callback).
fn is_url_check_text(plaintext: &str) -> bool {
    plaintext.len() <= MAX_ECHO_BYTES && !matches!(plaintext.trim_start().chars().next(), Some('{' | '['))
}

/// The answer the plain path gives to a decrypted plaintext, and the inbox status it leaves.
fn outcome_for_plaintext(plaintext: &str) -> (u16, &'static str) {
    match parse_callback(plaintext.as_bytes(), chrono::FixedOffset::east_opt(8 * 3600).unwrap()) {
        Ok(callback) if callback.event == Event::Unrecognized => (200, "unrecognized"),
        Ok(_) => (200, "stored"),
        Err(ParseError::BadField { .. }) => (422, "rejected"),
        Err(_) => (400, "rejected"),
    }
}

fn status_for_plaintext(plaintext: &str) -> u16 {
    outcome_for_plaintext(plaintext).0
}

#[tokio::test]
async fn the_url_check_answers_a_live_echostr_and_never_decrypts_a_callback() {
    let accounts = accounts();
    let db = common::sqlite().await;
    let app = spawn(&db, &accounts).await;
    let now = chrono::Utc::now().timestamp_millis().to_string();
    for v in vectors::positive() {
        let account = &accounts.names[&(v.token.clone(), v.encoding_aes_key.clone(), v.receive_id.clone())];
        let crypto = CallbackCrypto::new(&v.token, &v.encoding_aes_key, &v.receive_id).unwrap();
        // The vector's own signature and timestamp: a captured check, long past.
        let stale = format!(
            "{}&echostr={}",
            signed_url(&app, account, &v.msg_signature, &v.timestamp, &v.nonce),
            enc(&v.encrypt)
        );
        let stale = app.client.get(stale).send().await.unwrap();
        let too_long = v.encrypt.chars().count() > MAX_ECHOSTR_CHARS;
        assert_error(stale, 400, if too_long { "invalid_echostr" } else { "stale_timestamp" }).await;
        // Signed now, percent-encoded once as a URL must be, and once more as the vendor's demo
        // sends it: a URL check's text is echoed; a callback's never is.
        let signature = crypto.signature(&now, &v.nonce, &v.encrypt);
        for sent in [&v.encrypt, &v.encrypt_urlencoded] {
            let url = format!("{}&echostr={}", signed_url(&app, account, &signature, &now, &v.nonce), enc(sent));
            let response = app.client.get(url).send().await.unwrap();
            if is_url_check_text(&v.plaintext) && sent.chars().count() <= MAX_ECHOSTR_CHARS {
                assert_eq!(response.status().as_u16(), 200, "{}", v.name);
                assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
                assert_eq!(response.text().await.unwrap(), v.plaintext, "{}", v.name);
            } else {
                let body = assert_error(response, 400, "invalid_echostr").await;
                let start: String = v.plaintext.chars().take(12).collect();
                assert!(!body.to_string().contains(&start), "{}: leaked", v.name);
            }
        }
    }
    assert!(app.store.inbox("enc0").await.unwrap().is_empty(), "a URL check stores nothing");
    app.stop().await;
}

#[tokio::test]
async fn a_captured_encrypted_post_replayed_as_a_url_check_is_not_decrypted() {
    let accounts = accounts();
    let db = common::sqlite().await;
    let app = spawn(&db, &accounts).await;
    // A short callback (decrypted, it would fit an echo) and a long one (its text is too long).
    for name in ["robot_call_job_completed", "robot_call_record_chinese"] {
        let v = vectors::positive().into_iter().find(|v| v.name == name).unwrap();
        let account = &accounts.names[&(v.token.clone(), v.encoding_aes_key.clone(), v.receive_id.clone())];
        let crypto = CallbackCrypto::new(&v.token, &v.encoding_aes_key, &v.receive_id).unwrap();
        // A POST the platform sent a minute ago, as a proxy log would have kept it.
        let timestamp = (chrono::Utc::now().timestamp_millis() - 60_000).to_string();
        let sealed = crypto.seal(&v.plaintext, &timestamp, "1234567", b"0123456789abcdef");
        let post = signed_url(&app, account, &sealed.msg_signature, &sealed.timestamp, &sealed.nonce);
        assert_acked(app.client.post(&post).body(sealed.xml.clone()).send().await.unwrap()).await;
        let replayed = format!("{post}&echostr={}", enc(&sealed.encrypt));
        let body = assert_error(app.client.get(replayed).send().await.unwrap(), 400, "invalid_echostr").await;
        assert!(!body.to_string().contains("dataType"), "{name}: the callback was decrypted: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn every_vector_posted_in_both_xml_forms_is_stored_once() {
    let accounts = accounts();
    for db in databases().await {
        let app = spawn(&db, &accounts).await;
        for v in vectors::positive() {
            let account = &accounts.names[&(v.token.clone(), v.encoding_aes_key.clone(), v.receive_id.clone())];
            let (expected, inbox_status) = outcome_for_plaintext(&v.plaintext);
            for body in [&v.xml, &v.xml_testdemo_style] {
                let url = signed_url(&app, account, &v.msg_signature, &v.timestamp, &v.nonce);
                let response = app.client.post(url).body(body.clone()).send().await.unwrap();
                assert_eq!(response.status().as_u16(), expected, "{} on {:?}", v.name, db.backend);
            }
            // The decrypted plaintext is what is kept: as data when it is a callback, as a
            // rejected body otherwise. Both forms are the same content, seen twice.
            let inbox = app.store.inbox(account).await.unwrap();
            let entry = inbox
                .iter()
                .find(|e| e.body.as_deref() == Some(v.plaintext.as_bytes()))
                .unwrap_or_else(|| panic!("{}: plaintext not in the inbox", v.name));
            assert_eq!(entry.times_seen, 2, "{}", v.name);
            assert_eq!(entry.status.as_str(), inbox_status, "{}", v.name);
        }
        // The call record vectors became call records.
        let vendor_key_call =
            vectors::positive().into_iter().find(|v| v.name == "robot_call_record_vendor_key").unwrap();
        let data: serde_json::Value = serde_json::from_str(&vendor_key_call.plaintext).unwrap();
        let account =
            &accounts.names[&(vendor_key_call.token, vendor_key_call.encoding_aes_key, vendor_key_call.receive_id)];
        let id = data["data"]["callRecordId"].as_i64().unwrap();
        let call = app.store.call_record(account, id).await.unwrap().expect("stored");
        assert_eq!(call.result_status.as_deref(), data["data"]["resultStatus"].as_str(), "{:?}", db.backend);
        app.stop().await;
    }
}

#[tokio::test]
async fn every_refused_or_tolerated_input_gets_its_answer_over_http() {
    let accounts = accounts();
    for db in databases().await {
        let app = spawn(&db, &accounts).await;
        for input in vectors::negative().into_iter().chain(vectors::lenient()) {
            let expected = answer(&input);
            let combo = (input.token.clone(), input.encoding_aes_key.clone(), input.receive_id.clone());
            let Some(account) = accounts.names.get(&combo) else {
                assert_eq!(expected, Answer::Misconfigured, "{}", input.name);
                continue;
            };
            let url = signed_url(&app, account, &input.msg_signature, &input.timestamp, &input.nonce);
            let before = app.store.inbox(account).await.unwrap();
            let response = match (&input.xml, &input.echostr) {
                (Some(xml), _) => app.client.post(url).body(xml.clone()).send().await.unwrap(),
                (None, Some(echostr)) if expected == Answer::BadSignature || echostr.len() > MAX_ECHOSTR_CHARS => {
                    app.client.get(format!("{url}&echostr={}", enc(echostr))).send().await.unwrap()
                }
                (None, Some(echostr)) => {
                    // A URL check is live: as captured, its timestamp is refused; signed now, it
                    // gets the answer its text deserves.
                    let stale = app.client.get(format!("{url}&echostr={}", enc(echostr))).send().await.unwrap();
                    assert_error(stale, 400, "stale_timestamp").await;
                    let crypto = CallbackCrypto::new(&input.token, &input.encoding_aes_key, &input.receive_id).unwrap();
                    let now = chrono::Utc::now().timestamp().to_string();
                    let signature = crypto.signature(&now, &input.nonce, echostr);
                    let url = signed_url(&app, account, &signature, &now, &input.nonce);
                    app.client.get(format!("{url}&echostr={}", enc(echostr))).send().await.unwrap()
                }
                _ => unreachable!("every input has a body or an echostr"),
            };
            let ctx = format!("{} on {:?}", input.name, db.backend);
            let after_len = |inbox: &Vec<_>| inbox.len();
            match &expected {
                Answer::Accepted(plaintext) if input.xml.is_none() && is_url_check_text(plaintext) => {
                    assert_eq!(response.status().as_u16(), 200, "{ctx}");
                    assert_eq!(&response.text().await.unwrap(), plaintext, "{ctx}");
                }
                Answer::Accepted(_) if input.xml.is_none() => {
                    assert_error(response, 400, "invalid_echostr").await;
                }
                Answer::Accepted(plaintext) => {
                    assert_eq!(response.status().as_u16(), status_for_plaintext(plaintext), "{ctx}")
                }
                Answer::BadSignature if input.echostr.as_ref().is_some_and(|e| e.len() > MAX_ECHOSTR_CHARS) => {
                    assert_error(response, 400, "invalid_echostr").await;
                }
                Answer::BadSignature => {
                    assert_error(response, 401, "invalid_signature").await;
                    assert_eq!(after_len(&app.store.inbox(account).await.unwrap()), before.len(), "{ctx}: stored");
                }
                Answer::BadXml => {
                    assert_error(response, 400, "malformed_xml").await;
                    assert_eq!(after_len(&app.store.inbox(account).await.unwrap()), before.len(), "{ctx}: stored");
                }
                Answer::Kept(problem) => {
                    let code = if *problem == tanyi_relay::platform::crypto::CryptoError::ReceiveIdMismatch {
                        "receive_id_mismatch"
                    } else {
                        "undecryptable"
                    };
                    assert_error(response, 400, code).await;
                    if let Some(xml) = &input.xml {
                        let inbox = app.store.inbox(account).await.unwrap();
                        let kept = inbox.iter().find(|e| e.body.as_deref() == Some(xml.as_bytes()));
                        assert!(kept.is_some_and(|e| e.status == InboxStatus::Rejected), "{ctx}: raw XML not kept");
                    }
                }
                Answer::Misconfigured => panic!("{ctx}: an account exists for a refused key"),
            }
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn an_encrypted_account_refuses_plain_posts_unless_allowed() {
    let accounts = accounts();
    let db = common::sqlite().await;
    let app = spawn(&db, &accounts).await;
    let body = common::sample("job_completed.json");
    assert_error(app.post_as("enc0", "any-key-at-all-000001", body.clone()).await, 401, "unauthorized").await;
    assert_acked(app.post_as("both", "both-plain-key-000001", body.clone()).await).await;
    // The same account also takes encrypted posts.
    let v = vectors::positive().into_iter().find(|v| v.name == "robot_call_job_completed").unwrap();
    let url = signed_url(&app, "both", &v.msg_signature, &v.timestamp, &v.nonce);
    assert_acked(app.client.post(url).body(v.xml.clone()).send().await.unwrap()).await;
    // A plain-only account has no token to check a signature with.
    let url = signed_url(&app, "plain", &v.msg_signature, &v.timestamp, &v.nonce);
    assert_error(app.client.post(url.clone()).body(v.xml.clone()).send().await.unwrap(), 401, "invalid_signature")
        .await;
    assert_error(app.client.get(format!("{url}&echostr=x")).send().await.unwrap(), 401, "invalid_signature").await;
    assert_eq!(app.backend, Backend::Sqlite);
    app.stop().await;
}

#[tokio::test]
async fn missing_parameters_are_400_and_a_missing_signature_is_401() {
    let accounts = accounts();
    let db = common::sqlite().await;
    let app = spawn(&db, &accounts).await;
    let v = vectors::positive().into_iter().find(|v| v.name == "vendor_testdemo_get").unwrap();
    let account = &accounts.names[&(v.token.clone(), v.encoding_aes_key.clone(), v.receive_id.clone())];
    let base = format!("{}/callbacks/{account}", app.base);
    let sig = &v.msg_signature;
    let cases = [
        (format!("{base}?msg_signature={sig}&nonce={}&echostr={}", v.nonce, enc(&v.encrypt)), 400, "missing_parameter"),
        (
            format!("{base}?msg_signature={sig}&timestamp={}&echostr={}", v.timestamp, enc(&v.encrypt)),
            400,
            "missing_parameter",
        ),
        (format!("{base}?msg_signature={sig}&timestamp={}&nonce={}", v.timestamp, v.nonce), 400, "missing_parameter"),
        (
            format!("{base}?timestamp={}&nonce={}&echostr={}", v.timestamp, v.nonce, enc(&v.encrypt)),
            401,
            "invalid_signature",
        ),
    ];
    for (url, status, code) in cases {
        assert_error(app.client.get(url).send().await.unwrap(), status, code).await;
    }
    let post = format!("{base}?msg_signature={sig}&timestamp={}", v.timestamp);
    assert_error(app.client.post(post).body(v.xml.clone()).send().await.unwrap(), 400, "missing_parameter").await;
    app.stop().await;
}

#[tokio::test]
async fn a_wholly_percent_encoded_xml_body_is_accepted() {
    let accounts = accounts();
    let db = common::sqlite().await;
    let app = spawn(&db, &accounts).await;
    let v = vectors::positive().into_iter().find(|v| v.name == "robot_call_job_completed").unwrap();
    let account = &accounts.names[&(v.token.clone(), v.encoding_aes_key.clone(), v.receive_id.clone())];
    let url = signed_url(&app, account, &v.msg_signature, &v.timestamp, &v.nonce);
    assert_acked(app.client.post(url).body(enc(&v.xml)).send().await.unwrap()).await;
    app.stop().await;
}
