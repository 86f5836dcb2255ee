//! Erasure by phone number, on both databases: a seeded campaign, one person erased through the
//! admin API, then every column of every table scanned for their number and name (raw bodies
//! included, as text and as the hex the databases print bytes in); the other people's data is
//! untouched, pending deliveries are cancelled, receivers are told, a re-sent callback does not
//! bring the data back, and the log keeps only a keyed hash.

use std::time::{Duration, Instant};

use crate::common;
use common::ledger::campaign;
use common::receiver::{Behaviour, Receiver, SECRET};
use common::{assert_acked, databases, TestApp, TestDb, ACCOUNT};
use serde_json::{json, Value};
use tanyi_relay::sim::simulate::{run, RetrySchedule};

const PHONE: &str = "13912345678";
const NAME: &str = "欧阳明远";
const ADMIN_TOKEN: &str = "erasure-admin-token-0000000001";

fn accounts(crm: &Receiver, down: &Receiver, ops: &Receiver) -> String {
    format!(
        "{}\n[[targets]]\nname = \"crm\"\nurl = \"{}\"\nsecrets = [\"{SECRET}\"]\n\n\
         [[targets]]\nname = \"warehouse\"\nurl = \"{}\"\nsecrets = [\"{SECRET}\"]\nevents = [\"call.finished\"]\n\
         retry_schedule_secs = [600]\n\n\
         [[targets]]\nname = \"ops\"\nurl = \"{}\"\nsecrets = [\"{SECRET}\"]\nevents = [\"person.erased\"]\n",
        common::ACCOUNTS_TOML,
        crm.url,
        down.url,
        ops.url
    )
}

async fn spawn(db: &TestDb, crm: &Receiver, down: &Receiver, ops: &Receiver) -> TestApp {
    let settings = common::settings_with_accounts(
        &db.url,
        &accounts(crm, down, ops),
        &[("TANYI_RELAY__DELIVERY__POLL_INTERVAL_MS", "50"), ("TANYI_RELAY__ADMIN__TOKEN", ADMIN_TOKEN)],
    );
    TestApp::spawn_settings(db.backend, settings).await
}

fn call(id: i64, phone: &str, turns: &[(&str, &str)]) -> String {
    let turns: Vec<Value> = turns
        .iter()
        .enumerate()
        .map(|(i, (speaker, text))| json!({"callDetailId": id * 10 + i as i64, "type": speaker, "text": text}))
        .collect();
    json!({"dataType": "ROBOT_CALL_RECORD", "data": {
        "callRecordId": id, "tenantId": 1, "robotCallJobId": 9000, "calledPhoneNumber": phone,
        "resultStatus": "ANSWERED", "intentLevel": "A", "customerConcern": ["价格"],
        "properties": {"姓名": if phone == PHONE { NAME } else { "李四" }, "来源": "官网"},
        "analysisBasis": "客户主动询问价格", "fullAudioUrl": "https://oss.example.com/a.wav",
        "startTime": "2026-11-30 10:00:00", "endTime": "2026-11-30 10:01:00", "chatDuration": 60,
        "chatRound": turns.len(), "callDetailList": turns}})
    .to_string()
}

fn sms(call_record_id: i64) -> String {
    json!({"dataType": "ROBOT_CALL_SMS", "data": {
        "tenantId": 1, "companyName": "模拟公司", "customerPersonId": 4242, "customerPersonName": NAME,
        "phoneNumber": PHONE, "callRecordId": call_record_id, "robotCallRobotId": 9000,
        "robotCallRobotName": "楼盘推介", "msgList": [{"smsTemplateId": 1, "smsTemplateName": "welcome",
        "smsSignatureId": 2, "smsSignatureName": "模拟", "type": "NOTICE", "text": "${姓名} 你好",
        "msg": format!("【模拟】{NAME} 你好"), "varMap": {"姓名": NAME, "联系电话": PHONE}}]}})
    .to_string()
}

/// The tables (and a line of each) that mention the number or the name, as text or as hex.
async fn mentions(app: &TestApp) -> Vec<(String, String)> {
    let needles = [PHONE.to_owned(), NAME.to_owned(), hex::encode(PHONE), hex::encode(NAME)];
    let rows = app.store.adhoc().every_row().await.unwrap();
    rows.into_iter().filter(|(_, line)| needles.iter().any(|n| line.to_lowercase().contains(n))).collect()
}

async fn admin_post(app: &TestApp, body: Value) -> reqwest::Response {
    app.client
        .post(format!("{}/admin/erasures", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_erased_person_is_nowhere_in_the_database_and_everyone_else_is_untouched() {
    for db in databases().await {
        let (crm, ops) = (Receiver::start(Behaviour::Accept).await, Receiver::start(Behaviour::Accept).await);
        let down = Receiver::start(Behaviour::AlwaysFail(503)).await;
        let app = spawn(&db, &crm, &down, &ops).await;
        // A campaign of other people, then the person: two calls (one mentions the number in the
        // transcript), an SMS, a body the parser rejects, and someone else's call that names them.
        let summary =
            run(campaign(format!("{}/callbacks/{ACCOUNT}", app.base), 40, 2000.0, RetrySchedule::Compressed)).await;
        assert_eq!(summary.given_up, 0);
        let person_turns = [("ROBOT", "您好，请问是欧阳明远先生吗？"), ("PERSON", "是我，我的电话是13912345678")];
        assert_acked(app.post(call(777_001, PHONE, &person_turns)).await).await;
        assert_acked(app.post(call(777_002, PHONE, &[])).await).await;
        assert_acked(app.post(sms(777_001)).await).await;
        let rejected =
            json!({"dataType": "ROBOT_CALL_RECORD", "data": {"callRecordId": "x", "calledPhoneNumber": PHONE}});
        let _ = app.post(rejected.to_string()).await;
        let friend_turns = [("ROBOT", "您好"), ("PERSON", "我朋友的电话13912345678你也打一下")];
        assert_acked(app.post(call(777_003, "13700000000", &friend_turns)).await).await;
        crm.wait_delivered(3, Duration::from_secs(10)).await;

        let someone_else = app.store.call_record(ACCOUNT, summary_call_id(&app).await).await.unwrap().unwrap();
        let their_turns = app.store.call_turns(ACCOUNT, someone_else.call_record_id).await.unwrap();
        let calls_in_report = job_calls(&app).await;
        let seeded: Vec<String> = mentions(&app).await.into_iter().map(|(table, _)| table).collect();
        for table in ["call_records", "call_turns", "sms_requests", "sms_messages", "inbox", "events"] {
            assert!(seeded.iter().any(|t| t == table), "{:?}: the seed put the person in {table}", db.backend);
        }

        // A dry run counts and changes nothing.
        let dry = admin_post(&app, json!({"account": ACCOUNT, "phone_number": "139-1234-5678", "dry_run": true})).await;
        assert_eq!(dry.status(), 200);
        let dry: Value = serde_json::from_str(&dry.text().await.unwrap()).unwrap();
        assert_eq!(dry["call_record_ids"], json!([777_001, 777_002]));
        assert_eq!(dry["counts"]["call_records"], 2);
        assert_eq!(dry["erasure_id"], Value::Null);
        assert_eq!(mentions(&app).await.len(), seeded.len(), "{:?}: a dry run changed something", db.backend);

        let response = admin_post(&app, json!({"account": ACCOUNT, "phone_number": PHONE})).await;
        assert_eq!(response.status(), 201);
        let report: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(report["call_record_ids"], json!([777_001, 777_002]));
        assert_eq!(report["counts"]["call_records"], 2);
        assert_eq!(report["counts"]["call_turns"], 2);
        assert_eq!(report["counts"]["sms_requests"], 1);
        assert!(report["counts"]["deliveries_cancelled"].as_u64().unwrap() >= 2, "{report:#}");
        assert!(report["counts"]["other_rows"].as_u64().unwrap() >= 1, "the friend's transcript");
        assert_eq!(report["dry_run"], false);
        let remaining = mentions(&app).await;
        assert!(remaining.is_empty(), "{:?}: still there: {remaining:#?}", db.backend);

        // The rows stay, so the reports count the same calls; their personal fields are gone.
        let erased = app.store.call_record(ACCOUNT, 777_001).await.unwrap().unwrap();
        assert_eq!(erased.called_phone_number, None);
        assert_eq!(erased.result_status.as_deref(), Some("ANSWERED"));
        assert_eq!(erased.intent_grade.as_deref(), Some("A"));
        assert!(app.store.call_turns(ACCOUNT, 777_001).await.unwrap().is_empty());
        assert_eq!(job_calls(&app).await, calls_in_report);
        // The others' data is as it was; the friend keeps their call and number.
        assert_eq!(app.store.call_record(ACCOUNT, someone_else.call_record_id).await.unwrap().unwrap(), someone_else);
        assert_eq!(app.store.call_turns(ACCOUNT, someone_else.call_record_id).await.unwrap(), their_turns);
        let friend = app.store.call_record(ACCOUNT, 777_003).await.unwrap().unwrap();
        assert_eq!(friend.called_phone_number.as_deref(), Some("13700000000"));
        let friend_turns = app.store.call_turns(ACCOUNT, 777_003).await.unwrap();
        assert_eq!(friend_turns.len(), 2);
        assert_eq!(friend_turns[0].text.as_deref(), Some("您好"));

        // The warehouse, down all along, never gets the person's calls: they were cancelled.
        let cancelled = common::ledger::strings(
            &app.store,
            "SELECT d.status || ':' || d.last_error FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.target = 'warehouse' AND e.call_record_id IN (777001, 777002)",
        )
        .await;
        assert_eq!(cancelled.len(), 2);
        assert!(cancelled.iter().all(|c| c.starts_with("dead:cancelled")), "{cancelled:?}");

        // Receivers that ask are told, by the hash and the call ids, never the number.
        let start = Instant::now();
        let told = loop {
            let told: Vec<Value> =
                ops.requests().into_iter().map(|r| r.body).filter(|b| b["type"] == "person.erased").collect();
            if !told.is_empty() || start.elapsed() > Duration::from_secs(10) {
                break told;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(told.len(), 1, "{:?}", db.backend);
        assert_eq!(told[0]["data"]["phone_hash"], report["phone_hash"]);
        assert_eq!(told[0]["data"]["call_record_ids"], json!([777_001, 777_002]));
        assert!(!told[0].to_string().contains(PHONE));

        // The platform re-sends the call (it retries for a day): a duplicate, nothing stored again.
        assert_acked(app.post(call(777_001, PHONE, &person_turns)).await).await;
        assert!(mentions(&app).await.is_empty(), "{:?}: a re-sent callback brought it back", db.backend);

        // The log proves it without the number.
        let log = app
            .client
            .get(format!("{}/admin/erasures?account={ACCOUNT}", app.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let log: Value = serde_json::from_str(&log.text().await.unwrap()).unwrap();
        assert_eq!(log.as_array().unwrap().len(), 1);
        assert_eq!(log[0]["phone_hash"], report["phone_hash"]);
        assert_eq!(log[0]["requested_by"], "admin-api");
        assert_eq!(log[0]["counts"]["call_records"], 2);
        assert!(!log.to_string().contains(PHONE));
        app.stop().await;
    }
}

#[tokio::test]
async fn erasure_requests_that_make_no_sense_get_a_clear_answer() {
    let db = common::sqlite().await;
    let (crm, ops, down) = (
        Receiver::start(Behaviour::Accept).await,
        Receiver::start(Behaviour::Accept).await,
        Receiver::start(Behaviour::Accept).await,
    );
    let app = spawn(&db, &crm, &down, &ops).await;
    let bad_phone = admin_post(&app, json!({"account": ACCOUNT, "phone_number": "13x"})).await;
    assert_eq!(bad_phone.status(), 400);
    let body: Value = serde_json::from_str(&bad_phone.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "bad_request");
    let unknown = admin_post(&app, json!({"account": "nobody", "phone_number": PHONE})).await;
    assert_eq!(unknown.status(), 404);
    let no_body = admin_post(&app, json!({"phone": PHONE})).await;
    assert_eq!(no_body.status(), 400);
    let no_token = app
        .client
        .post(format!("{}/admin/erasures", app.base))
        .body(json!({"account": ACCOUNT, "phone_number": PHONE}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    // Nobody with that number: an erasure of nothing is still logged (it was asked for).
    let nothing = admin_post(&app, json!({"account": ACCOUNT, "phone_number": PHONE})).await;
    assert_eq!(nothing.status(), 201);
    let nothing: Value = serde_json::from_str(&nothing.text().await.unwrap()).unwrap();
    assert_eq!(nothing["call_record_ids"], json!([]));
    assert_eq!(app.store.erasures(Some(ACCOUNT), 10).await.unwrap().len(), 1);
    app.stop().await;
}

/// One call of the simulated campaign (not the person's).
async fn summary_call_id(app: &TestApp) -> i64 {
    let ids = common::ledger::strings(
        &app.store,
        "SELECT call_record_id FROM call_turns WHERE call_record_id NOT IN (777001, 777002, 777003) \
         ORDER BY call_record_id LIMIT 1",
    )
    .await;
    ids[0].parse().unwrap()
}

async fn job_calls(app: &TestApp) -> Vec<String> {
    common::ledger::strings(&app.store, "SELECT calls FROM report_job_summary WHERE robot_call_job_id = 9000").await
}

#[tokio::test]
async fn a_person_of_an_encrypted_account_is_erased_the_same_way() {
    use tanyi_relay::platform::crypto::CallbackCrypto;
    use tanyi_relay::sim::simulate::{Auth, Options};
    for db in databases().await {
        let accounts = format!(
            "{}\n[[accounts]]\nname = \"secure\"\ntoken = \"AIGbuK3sOV\"\n\
             encoding_aes_key = \"INnZzJ/DPbUqqtU2ycEhzL8ewpsCRb9XqHBWHdDCknw\"\n",
            common::ACCOUNTS_TOML
        );
        let settings =
            common::settings_with_accounts(&db.url, &accounts, &[("TANYI_RELAY__ADMIN__TOKEN", ADMIN_TOKEN)]);
        let app = TestApp::spawn_settings(db.backend, settings).await;
        let crypto = CallbackCrypto::new("AIGbuK3sOV", "INnZzJ/DPbUqqtU2ycEhzL8ewpsCRb9XqHBWHdDCknw", "").unwrap();
        let options = Options {
            url: format!("{}/callbacks/secure", app.base),
            auth: Auth::Encrypted { crypto },
            calls: 30,
            jobs: 2,
            concurrency: 8,
            rate: None,
            duplicates: 0.0,
            seed: 5,
            retry: RetrySchedule::Compressed,
        };
        assert_eq!(run(options).await.given_up, 0);
        let phones = common::ledger::strings(
            &app.store,
            "SELECT called_phone_number FROM call_records WHERE account = 'secure' ORDER BY call_record_id",
        )
        .await;
        let phone = phones[0].clone();
        let in_clear = |rows: Vec<(String, String)>| {
            rows.into_iter().filter(|(_, line)| line.contains(&phone) || line.contains(&hex::encode(&phone))).count()
        };
        assert!(in_clear(app.store.adhoc().every_row().await.unwrap()) > 0, "the decrypted bodies hold it");
        let response = admin_post(&app, json!({"account": "secure", "phone_number": phone})).await;
        assert_eq!(response.status(), 201);
        assert_eq!(in_clear(app.store.adhoc().every_row().await.unwrap()), 0, "{:?}", db.backend);
        let others = common::ledger::strings(
            &app.store,
            "SELECT COUNT(*) FROM call_records WHERE account = 'secure' AND called_phone_number IS NOT NULL",
        )
        .await;
        let erased = phones.iter().filter(|p| **p == phone).count();
        assert_eq!(others, vec![(phones.len() - erased).to_string()], "the others keep their numbers");
        app.stop().await;
    }
}
