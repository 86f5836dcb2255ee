//! What a callback leaves in the database, on every backend.

use crate::common;

use chrono::{DateTime, Utc};
use common::{assert_acked, databases, sample, sample_json, TestApp, ACCOUNT};
use serde_json::{json, Value};

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("test time").with_timezone(&Utc)
}

fn call_with(id: i64, intent_level: &str) -> String {
    json!({"dataType": "ROBOT_CALL_RECORD", "data": {
        "callRecordId": id, "robotCallJobId": 7, "calledPhoneNumber": "13800138000", "resultStatus": "ANSWERED",
        "intentLevel": intent_level, "startTime": "2024-03-01 09:00:00", "endTime": "2024-03-01 09:01:00",
        "callDetailList": [{"callDetailId": 1, "type": "ROBOT", "text": "您好"}, {"callDetailId": 2, "type": "PERSON", "text": intent_level}]
    }})
    .to_string()
}

#[tokio::test]
async fn call_record_sample_is_stored_and_read_back_field_by_field() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        for name in ["call_record.json", "call_record_unanswered.json"] {
            assert_acked(app.post(sample(name)).await).await;
            let sent = &sample_json(name)["data"];
            let id = sent["callRecordId"].as_i64().expect("id");
            let call = app.store.call_record(ACCOUNT, id).await.unwrap().expect("stored");
            let ctx = format!("{:?} {name}", db.backend);
            assert_eq!(call.account, ACCOUNT, "{ctx}");
            assert_eq!(Some(call.call_record_id), sent["callRecordId"].as_i64(), "{ctx}");
            assert_eq!(call.tenant_id, sent["tenantId"].as_i64(), "{ctx}");
            assert_eq!(call.robot_call_job_id, sent["robotCallJobId"].as_i64(), "{ctx}");
            assert_eq!(call.dialog_flow_id, sent["dialogFlowId"].as_i64(), "{ctx}");
            assert_eq!(call.called_phone_number.as_deref(), sent["calledPhoneNumber"].as_str(), "{ctx}");
            assert_eq!(call.result_status.as_deref(), sent["resultStatus"].as_str(), "{ctx}");
            assert_eq!(call.intent_level.as_deref(), sent["intentLevel"].as_str(), "{ctx}");
            assert_eq!(call.intent_grade.as_deref(), sent["intentLevel"].as_str(), "{ctx}: A-F map to themselves");
            assert_eq!(call.customer_concern.0, sent["customerConcern"], "{ctx}");
            assert_eq!(call.full_audio_url.as_deref(), sent["fullAudioUrl"].as_str(), "{ctx}");
            assert_eq!(call.customer_audio_url.as_deref(), sent["customerAudioUrl"].as_str(), "{ctx}");
            assert_eq!(call.analysis_basis.as_deref(), sent["analysisBasis"].as_str(), "{ctx}");
            assert_eq!(call.chat_duration, sent["chatDuration"].as_i64(), "{ctx}");
            assert_eq!(call.chat_round, sent["chatRound"].as_i64(), "{ctx}");
            assert_eq!(call.attributes.0, sent["attributes"], "{ctx}");
            assert_eq!(call.properties.0, sent["properties"], "{ctx}");
            assert_eq!(call.extra.0, json!({}), "{ctx}: the samples have no unknown fields");
            assert_eq!((call.source.as_str(), call.revision), ("push", 1), "{ctx}");
            let turns = app.store.call_turns(ACCOUNT, id).await.unwrap();
            let sent_turns = sent["callDetailList"].as_array().expect("transcript");
            assert_eq!(turns.len(), sent_turns.len(), "{ctx}");
            for (seq, (turn, sent_turn)) in turns.iter().zip(sent_turns).enumerate() {
                assert_eq!(turn.seq, seq as i64, "{ctx}");
                assert_eq!(turn.call_detail_id, sent_turn["callDetailId"].as_i64(), "{ctx}");
                assert_eq!(turn.speaker.as_deref(), sent_turn["type"].as_str(), "{ctx}");
                assert_eq!(turn.text.as_deref(), sent_turn["text"].as_str(), "{ctx}");
            }
        }
        // Platform local time (+08:00 for this account) stored as the UTC instant.
        let answered = app.store.call_record(ACCOUNT, 119).await.unwrap().expect("stored");
        assert_eq!(answered.start_time, Some(utc("2018-10-12T10:46:55Z")), "{:?}", db.backend);
        assert_eq!(answered.end_time, Some(utc("2018-10-12T10:47:42Z")), "{:?}", db.backend);
        app.stop().await;
    }
}

#[tokio::test]
async fn job_completion_sample_is_stored() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        assert_acked(app.post(sample("job_completed.json")).await).await;
        let sent = &sample_json("job_completed.json")["data"];
        let jobs = app.store.jobs(ACCOUNT, sent["robotCallJobId"].as_i64().unwrap()).await.unwrap();
        assert_eq!(jobs.len(), 1, "{:?}", db.backend);
        assert_eq!(Some(jobs[0].status.as_str()), sent["status"].as_str());
        assert_eq!(jobs[0].tenant_id, sent["tenantId"].as_i64());
        assert_eq!(jobs[0].revision, 1);
        app.stop().await;
    }
}

#[tokio::test]
async fn sms_sample_is_stored_one_row_per_message() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        assert_acked(app.post(sample("sms.json")).await).await;
        let sent = &sample_json("sms.json")["data"];
        let rows = app.store.sms_messages(ACCOUNT, sent["callRecordId"].as_i64().unwrap()).await.unwrap();
        let sent_messages = sent["msgList"].as_array().unwrap();
        assert_eq!(rows.len(), sent_messages.len(), "{:?}", db.backend);
        for (row, msg) in rows.iter().zip(sent_messages) {
            assert_eq!(row.tenant_id, sent["tenantId"].as_i64());
            assert_eq!(row.company_name.as_deref(), sent["companyName"].as_str());
            assert_eq!(row.customer_person_id, sent["customerPersonId"].as_i64());
            assert_eq!(row.customer_person_name.as_deref(), sent["customerPersonName"].as_str());
            assert_eq!(row.phone_number.as_deref(), sent["phoneNumber"].as_str());
            assert_eq!(row.robot_call_job_id, sent["robotCallRobotId"].as_i64());
            assert_eq!(row.robot_call_job_name.as_deref(), sent["robotCallRobotName"].as_str());
            assert_eq!(row.sms_template_id, msg["smsTemplateId"].as_i64());
            assert_eq!(row.sms_template_name.as_deref(), msg["smsTemplateName"].as_str());
            assert_eq!(row.sms_signature_id, msg["smsSignatureId"].as_i64());
            assert_eq!(row.sms_signature_name.as_deref(), msg["smsSignatureName"].as_str());
            assert_eq!(row.kind.as_deref(), msg["type"].as_str());
            assert_eq!(row.template_text.as_deref(), msg["text"].as_str());
            assert_eq!(row.message.as_deref(), msg["msg"].as_str());
            assert_eq!(row.var_map.0, msg["varMap"]);
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn ten_identical_posts_make_one_record_and_one_inbox_row_seen_ten_times() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        for _ in 0..10 {
            assert_acked(app.post(sample("call_record.json")).await).await;
        }
        let inbox = app.store.inbox(ACCOUNT).await.unwrap();
        assert_eq!(inbox.len(), 1, "{:?}", db.backend);
        assert_eq!(inbox[0].times_seen, 10);
        assert_eq!(inbox[0].dedup_key, "call:119");
        assert!(inbox[0].last_seen_at >= inbox[0].first_seen_at);
        let call = app.store.call_record(ACCOUNT, 119).await.unwrap().expect("stored");
        assert_eq!(call.revision, 1, "duplicates must not rewrite the record");
        assert_eq!(app.store.call_turns(ACCOUNT, 119).await.unwrap().len(), 2);
        app.stop().await;
    }
}

#[tokio::test]
async fn concurrent_identical_posts_are_all_acked_and_stored_once() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        let body = sample("call_record.json");
        let posts: Vec<_> = (0..16)
            .map(|_| {
                let request = app.client.post(app.callback_url(ACCOUNT, common::KEY)).body(body.clone());
                tokio::spawn(request.send())
            })
            .collect();
        for post in posts {
            assert_acked(post.await.expect("task").expect("answered")).await;
        }
        let inbox = app.store.inbox(ACCOUNT).await.unwrap();
        assert_eq!((inbox.len(), inbox[0].times_seen), (1, 16), "{:?}", db.backend);
        assert_eq!(app.store.call_turns(ACCOUNT, 119).await.unwrap().len(), 2);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_changed_intent_level_updates_the_record_and_replaces_the_transcript() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        assert_acked(app.post(call_with(500, "C")).await).await;
        assert_acked(app.post(call_with(500, "A")).await).await;
        let call = app.store.call_record(ACCOUNT, 500).await.unwrap().expect("stored");
        assert_eq!(
            (call.intent_level.as_deref(), call.intent_grade.as_deref()),
            (Some("A"), Some("A")),
            "{:?}",
            db.backend
        );
        assert_eq!(call.revision, 2);
        let turns = app.store.call_turns(ACCOUNT, 500).await.unwrap();
        assert_eq!(turns.iter().map(|t| t.text.clone().unwrap()).collect::<Vec<_>>(), ["您好", "A"]);
        // Both versions stay in the inbox, so either can be reprocessed.
        assert_eq!(app.store.inbox(ACCOUNT).await.unwrap().len(), 2);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_late_retry_of_older_content_does_not_undo_a_newer_update() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        assert_acked(app.post(call_with(501, "C")).await).await;
        assert_acked(app.post(call_with(501, "B")).await).await;
        assert_acked(app.post(call_with(501, "C")).await).await;
        let call = app.store.call_record(ACCOUNT, 501).await.unwrap().expect("stored");
        assert_eq!((call.intent_level.as_deref(), call.revision), (Some("B"), 2), "{:?}", db.backend);
        let seen: Vec<i64> = app.store.inbox(ACCOUNT).await.unwrap().iter().map(|e| e.times_seen).collect();
        assert_eq!(seen, [2, 1]);
        app.stop().await;
    }
}

#[tokio::test]
async fn intent_codes_and_custom_levels_are_kept_verbatim_with_a_grade_when_one_maps() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        for (id, level, grade) in [(601, "0", Some("A")), (602, "5", Some("F")), (603, "VIP", None), (604, "", None)] {
            assert_acked(app.post(call_with(id, level)).await).await;
            let call = app.store.call_record(ACCOUNT, id).await.unwrap().expect("stored");
            assert_eq!(call.intent_level.as_deref(), Some(level), "{:?}", db.backend);
            assert_eq!(call.intent_grade.as_deref(), grade, "{:?} {level}", db.backend);
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn local_times_use_the_accounts_own_offset() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        assert_acked(app.post_as(common::NEW_YORK_ACCOUNT, common::NEW_YORK_KEY, call_with(700, "A")).await).await;
        let call = app.store.call_record(common::NEW_YORK_ACCOUNT, 700).await.unwrap().expect("stored");
        assert_eq!(call.start_time, Some(utc("2024-03-01T14:00:00Z")), "{:?}", db.backend);
        assert_eq!(call.start_local.as_deref(), Some("2024-03-01 09:00:00"), "local day and hour as sent");
        assert!(app.store.call_record(ACCOUNT, 700).await.unwrap().is_none(), "accounts are separate");
        app.stop().await;
    }
}

#[tokio::test]
async fn unknown_fields_and_a_long_chinese_transcript_survive_in_order() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        let turns: Vec<Value> = (0..1200)
            .map(|i| json!({"callDetailId": i * 10, "type": if i % 2 == 0 { "ROBOT" } else { "PERSON" }, "text": format!("第{i}句：价格怎么样？")}))
            .collect();
        let body = json!({"dataType": "ROBOT_CALL_RECORD", "data": {
            "callRecordId": 800, "newPlatformField": {"nested": [1, 2]}, "callDetailList": turns}});
        assert_acked(app.post(body.to_string()).await).await;
        let call = app.store.call_record(ACCOUNT, 800).await.unwrap().expect("stored");
        assert_eq!(call.extra.0, json!({"newPlatformField": {"nested": [1, 2]}}), "{:?}", db.backend);
        let stored = app.store.call_turns(ACCOUNT, 800).await.unwrap();
        assert_eq!(stored.len(), 1200);
        for (i, turn) in stored.iter().enumerate() {
            assert_eq!(turn.call_detail_id, Some(i as i64 * 10));
            assert_eq!(turn.text.as_deref(), Some(format!("第{i}句：价格怎么样？").as_str()));
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn the_raw_body_is_kept_byte_for_byte() {
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        let body = sample("job_completed.json");
        assert_acked(app.post(body.clone()).await).await;
        let inbox = app.store.inbox(ACCOUNT).await.unwrap();
        assert_eq!(inbox[0].body.as_deref(), Some(body.as_bytes()), "{:?}", db.backend);
        assert_eq!((inbox[0].status.as_str(), inbox[0].data_type.as_deref()), ("stored", Some("ROBOT_CALL_JOB")));
        app.stop().await;
    }
}

#[tokio::test]
async fn a_group_commit_stores_each_callback_and_undoes_a_failing_one_alone() {
    use tanyi_relay::domain::{Announcements, EventSubject, EventType, Ingested, Outbound, Source};
    use tanyi_relay::platform::callback::parse_callback;
    use tanyi_relay::store::PendingCallback;

    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        let offset = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
        // The second callback announces an event whose id is already taken inside the same group:
        // its insert fails, and only its own work is undone.
        let pending: Vec<PendingCallback> = [(1, Some("evt_taken")), (2, Some("evt_taken")), (3, None)]
            .into_iter()
            .map(|(id, event_id): (i64, Option<&'static str>)| {
                let body = call_with(id, "A");
                let now = tanyi_relay::store::storable_now();
                let created = event_id.map(|event| Outbound {
                    id: event.to_owned(),
                    event_type: EventType::CallFinished,
                    account: ACCOUNT.to_owned(),
                    created_at: now,
                    subject: EventSubject { call_record_id: Some(id), robot_call_job_id: None },
                    payload: serde_json::value::to_raw_value(&json!({"id": event})).unwrap(),
                    targets: vec!["crm".to_owned()],
                });
                PendingCallback {
                    account: ACCOUNT.to_owned(),
                    callback: parse_callback(body.as_bytes(), offset).unwrap(),
                    body: body.into_bytes(),
                    source: Source::Push,
                    received_at: now,
                    announcements: Announcements { created, changed: None },
                }
            })
            .collect();
        let recorded = app.store.record_callbacks(pending).await;
        let outcomes: Vec<Option<Ingested>> =
            recorded.iter().map(|(_, result)| result.as_ref().ok().map(|(outcome, _)| *outcome)).collect();
        assert_eq!(outcomes, [Some(Ingested::Created), None, Some(Ingested::Created)], "{:?}", db.backend);
        assert!(app.store.call_record(ACCOUNT, 1).await.unwrap().is_some());
        assert!(app.store.call_record(ACCOUNT, 2).await.unwrap().is_none(), "the failing callback left nothing");
        assert!(app.store.call_record(ACCOUNT, 3).await.unwrap().is_some());
        assert_eq!(app.store.inbox(ACCOUNT).await.unwrap().len(), 2);
        app.stop().await;
    }
}

/// A callback ready for the store, announcing `event_id` (when given) to the `crm` target.
fn pending_call(body: &str, event_id: Option<String>) -> tanyi_relay::store::PendingCallback {
    use tanyi_relay::domain::{Announcements, EventSubject, EventType, Outbound, Source};
    let offset = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let callback = tanyi_relay::platform::callback::parse_callback(body.as_bytes(), offset).unwrap();
    let now = tanyi_relay::store::storable_now();
    let announce = |id: String| Outbound {
        payload: serde_json::value::to_raw_value(&json!({"id": id})).unwrap(),
        id,
        event_type: EventType::CallFinished,
        account: ACCOUNT.to_owned(),
        created_at: now,
        subject: EventSubject { call_record_id: None, robot_call_job_id: None },
        targets: vec!["crm".to_owned()],
    };
    let changed = event_id.as_ref().map(|id| announce(format!("{id}_changed")));
    tanyi_relay::store::PendingCallback {
        account: ACCOUNT.to_owned(),
        callback,
        body: body.as_bytes().to_vec(),
        source: Source::Push,
        received_at: now,
        announcements: Announcements { created: event_id.map(announce), changed },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callbacks_share_transactions_and_one_that_fails_fails_alone() {
    use tanyi_relay::domain::Ingested;
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        // 60 calls at once; calls 7 and 8 announce the same event id, so whichever is written
        // second fails (in a group, the group's statement fails and its members are written again
        // alone); call 20 arrives twice, call 21 twice with different content.
        let mut bodies: Vec<(i64, String, Option<String>)> =
            (1..=60).map(|id| (id, call_with(id, "A"), Some(format!("evt_{id}")))).collect();
        bodies[7].2 = Some("evt_7".to_owned());
        bodies.push((20, call_with(20, "A"), Some("evt_20_again".to_owned())));
        bodies.push((21, call_with(21, "B"), Some("evt_21_again".to_owned())));
        let mut writes = tokio::task::JoinSet::new();
        for (id, body, event) in bodies {
            let store = app.store.clone();
            writes.spawn(async move { (id, store.store_callback(pending_call(&body, event)).await.1) });
        }
        let mut outcomes: std::collections::BTreeMap<i64, Vec<Option<Ingested>>> = Default::default();
        while let Some(done) = writes.join_next().await {
            let (id, result) = done.unwrap();
            outcomes.entry(id).or_default().push(result.ok().map(|(outcome, _)| outcome));
        }
        // In whichever order they were written.
        let sorted = |answers: Vec<Option<Ingested>>| {
            let mut names: Vec<String> = answers.iter().map(|a| format!("{a:?}")).collect();
            names.sort();
            names
        };
        let sevens = sorted([outcomes[&7].clone(), outcomes[&8].clone()].concat());
        assert_eq!(sevens, ["None", "Some(Created)"], "{:?}: one of the two that share an event id", db.backend);
        assert_eq!(sorted(outcomes[&20].clone()), ["Some(Created)", "Some(Duplicate)"], "{:?}", db.backend);
        assert_eq!(sorted(outcomes[&21].clone()), ["Some(Changed)", "Some(Created)"], "{:?}", db.backend);
        for id in (1..=60).filter(|id| ![7, 8, 20, 21].contains(id)) {
            assert_eq!(outcomes[&id], [Some(Ingested::Created)], "{:?}: call {id}", db.backend);
        }
        // What was stored is exactly what was answered: 59 calls (one of 7 and 8), their inbox
        // rows and call 21's second content, two turns each, one event per Created or Changed.
        let failed = if outcomes[&7] == [None] { 7 } else { 8 };
        assert!(app.store.call_record(ACCOUNT, failed).await.unwrap().is_none(), "the failing callback left nothing");
        assert_eq!(app.store.call_turns(ACCOUNT, 21).await.unwrap().len(), 2, "a changed call's transcript replaced");
        let count = |sql: &'static str| {
            let store = app.store.clone();
            async move { store.adhoc().column(sql).await.unwrap()[0].parse::<i64>().unwrap() }
        };
        assert_eq!(count("SELECT COUNT(*) FROM call_records").await, 59);
        assert_eq!(count("SELECT COUNT(*) FROM inbox").await, 60, "59 calls, call 21 twice");
        assert_eq!(count("SELECT COUNT(*) FROM call_turns").await, 59 * 2);
        assert_eq!(count("SELECT COUNT(*) FROM events").await, 60, "59 created, one changed");
        assert_eq!(count("SELECT COUNT(*) FROM deliveries").await, 60);
        if app.store.backend() == tanyi_relay::config::DatabaseBackend::Postgres {
            // Rows written by one transaction share its id: some callbacks did share one.
            let transactions = count("SELECT COUNT(DISTINCT xmin::text) FROM inbox").await;
            assert!(transactions < 60, "60 inbox rows in {transactions} transactions");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn postgres_plans_each_claim_for_its_own_parameters_and_the_write_path_once() {
    // The worker's claims read a queue whose shape keeps changing: a generic plan made while it was
    // empty would stay. The write path's plans do not depend on statistics (docs/BENCHMARKS.md).
    for db in databases().await {
        let app = TestApp::spawn(&db).await;
        if app.store.backend() == tanyi_relay::config::DatabaseBackend::Postgres {
            let worker = app.store.with_own_connections(1);
            let mode = worker.adhoc().column("SHOW plan_cache_mode").await.unwrap();
            assert_eq!(mode, ["force_custom_plan"]);
            worker.close().await;
            let mode = app.store.adhoc().column("SHOW plan_cache_mode").await.unwrap();
            assert_eq!(mode, ["auto"]);
        }
        app.stop().await;
    }
}
