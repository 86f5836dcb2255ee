//! Every query in docs/REPORTING.md runs on both backends and gives the expected numbers on a
//! known data set.

use crate::common;
use crate::common::report_queries;

use common::{assert_acked, databases, TestApp, TestDb, ACCOUNTS_TOML};
use serde_json::json;
use tanyi_relay::store::Store;

/// id, job, result, intent level, concerns, duration, local start
type KnownCall = (i64, i64, &'static str, &'static str, &'static [&'static str], i64, &'static str);

const CALLS: [KnownCall; 6] = [
    (1, 1, "ANSWERED", "A", &["价格", "位置"], 60, "2024-03-01 09:10:00"),
    (2, 1, "ANSWERED", "B", &["价格"], 30, "2024-03-01 10:05:00"),
    (3, 1, "NO_ANSWER", "F", &[], 0, "2024-03-01 10:30:00"),
    (4, 1, "BUSY", "VIP", &[], 0, "2024-03-02 09:00:00"),
    (5, 2, "ANSWERED", "C", &["位置"], 90, "2024-03-02 23:30:00"),
    // Local 00:30 on the 3rd is still the 2nd in UTC: reports use the local day.
    (6, 2, "ANSWERED", "0", &["价格"], 120, "2024-03-03 00:30:00"),
];

async fn load_known_data(db: &TestDb) -> TestApp {
    // A target that is never reached, so that the delivery tables have rows.
    let config = format!(
        "{ACCOUNTS_TOML}\n[[targets]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/hook\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n"
    );
    let settings = common::settings_with_accounts(&db.url, &config, &[("TANYI_RELAY__DELIVERY__ENABLED", "false")]);
    let app = TestApp::spawn_settings(db.backend, settings).await;
    for (id, job, result, level, concerns, duration, start) in CALLS {
        let turns = json!([{"callDetailId": 1, "type": "ROBOT", "text": "您好"}, {"callDetailId": 2, "type": "PERSON", "text": format!("客户{id}")}]);
        let body = json!({"dataType": "ROBOT_CALL_RECORD", "data": {"callRecordId": id, "robotCallJobId": job,
            "resultStatus": result, "intentLevel": level, "customerConcern": concerns, "chatDuration": duration,
            "startTime": start, "calledPhoneNumber": format!("1380000000{id}"), "callDetailList": turns}});
        assert_acked(app.post(body.to_string()).await).await;
    }
    assert_acked(
        app.post(
            json!({"dataType": "ROBOT_CALL_JOB", "data": {"robotCallJobId": 1, "status": "COMPLETED"}}).to_string(),
        )
        .await,
    )
    .await;
    for (call, templates) in [(1, vec![(152, "welcome")]), (2, vec![(152, "welcome"), (153, "brochure")])] {
        let messages: Vec<_> = templates
            .iter()
            .map(|(id, name)| json!({"smsTemplateId": id, "smsTemplateName": name, "msg": "…"}))
            .collect();
        let body = json!({"dataType": "ROBOT_CALL_SMS", "data": {"callRecordId": call, "msgList": messages}});
        assert_acked(app.post(body.to_string()).await).await;
    }
    app.post("not json").await; // one rejected callback
    app
}

/// Every value of every row as text, whatever its SQL type on either backend.
async fn rows(store: &Store, sql: &str) -> Vec<Vec<String>> {
    store.adhoc().rows(sql).await.unwrap_or_else(|e| panic!("{e}\n{sql}"))
}

/// The documented queries: (heading, SQL) for this backend.
fn documented_queries(backend: common::Backend) -> Vec<(String, String)> {
    report_queries::documented_queries(match backend {
        common::Backend::Postgres => "postgres",
        common::Backend::Sqlite => "sqlite",
    })
}

fn find<'a>(rows: &'a [Vec<String>], first: &str) -> &'a Vec<String> {
    rows.iter().find(|r| r[0] == first).unwrap_or_else(|| panic!("no row {first} in {rows:?}"))
}

#[tokio::test]
async fn every_documented_query_runs_and_the_reports_add_up() {
    for db in databases().await {
        let app = load_known_data(&db).await;
        let queries = documented_queries(db.backend);
        assert!(queries.len() >= 10, "{} queries found", queries.len());
        for (heading, sql) in &queries {
            let result = rows(&app.store, sql).await;
            assert!(!result.is_empty(), "{:?}: `{heading}` returned nothing", db.backend);
        }

        let summary = rows(
            &app.store,
            "SELECT robot_call_job_id, calls, answered, answer_rate, grade_a, grade_b, grade_c, \
            grade_d, grade_e, grade_f, grade_other, total_chat_duration, avg_chat_duration FROM report_job_summary \
            WHERE account = 'acme' ORDER BY robot_call_job_id",
        )
        .await;
        let expected = [
            ["1", "4", "2", "0.5", "1", "1", "0", "0", "0", "1", "1", "90", "22.5"],
            ["2", "2", "2", "1", "1", "0", "1", "0", "0", "0", "0", "210", "105"],
        ];
        assert_eq!(summary, expected.map(|r| r.map(String::from).to_vec()).to_vec(), "{:?}", db.backend);
        let completed =
            rows(&app.store, "SELECT robot_call_job_id, job_completed_at FROM report_job_summary ORDER BY 1").await;
        assert_ne!(completed[0][1], "null", "job 1 completed");
        assert_eq!(completed[1][1], "null", "job 2 still running");

        let daily = rows(
            &app.store,
            "SELECT local_date, result_status, calls FROM report_daily_outcomes \
            WHERE account = 'acme' ORDER BY local_date, result_status",
        )
        .await;
        let expected = [
            ["2024-03-01", "ANSWERED", "2"],
            ["2024-03-01", "NO_ANSWER", "1"],
            ["2024-03-02", "ANSWERED", "1"],
            ["2024-03-02", "BUSY", "1"],
            ["2024-03-03", "ANSWERED", "1"],
        ];
        assert_eq!(daily, expected.map(|r| r.map(String::from).to_vec()).to_vec(), "{:?}", db.backend);

        let query = |name: &str| queries.iter().find(|(h, _)| h == name).map(|(_, sql)| sql.clone()).unwrap();
        let concerns = rows(&app.store, &query("Customer concerns ranking")).await;
        assert_eq!(
            concerns,
            vec![vec!["价格".to_owned(), "3".into()], vec!["位置".into(), "2".into()]],
            "{:?}",
            db.backend
        );
        let templates = rows(&app.store, &query("SMS sent per template")).await;
        assert_eq!(find(&templates, "152")[2], "2");
        assert_eq!(find(&templates, "153")[2], "1");
        let hours = rows(&app.store, &query("Best hours to call")).await;
        assert_eq!(hours[0], ["00", "1", "1"], "{:?}: the local hour, not UTC", db.backend);
        assert_eq!(find(&hours, "10")[1..], ["2", "1"]);
        let leads = rows(&app.store, &query("Hot leads to call back")).await;
        let lead_ids: Vec<&str> = leads.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(lead_ids, ["6", "2", "1"], "grades A and B, newest first");
        app.stop().await;
    }
}
