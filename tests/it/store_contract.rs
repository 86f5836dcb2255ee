//! The store's contract, operation by operation, on every backend: the same calls must give the
//! same answers on SQLite and Postgres. (What a whole callback leaves behind over HTTP is in
//! `storage`; this suite calls the store directly, as the application does.)

use chrono::{Duration, Utc};
use serde_json::json;
use tanyi_relay::app::Services;
use tanyi_relay::domain::{DeliveryStatus, EventType, Ingested, Source};
use tanyi_relay::fanout::envelope::announcements;
use tanyi_relay::platform::callback::parse_callback;
use tanyi_relay::store::{
    storable_now, AfterAttempt, Attempt, Cutoffs, DeliveryFilter, Enrichment, PendingCallback, Recorded, Store,
};

use crate::common::{self, databases, TestDb, ACCOUNT, ACCOUNTS_TOML};

/// The store of a migrated database, with the accounts and one target (`crm`) that wants everything.
async fn services(db: &TestDb) -> Services {
    let config = format!(
        "{ACCOUNTS_TOML}\n[[targets]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/hook\"\n\
         secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n\
         [[targets]]\nname = \"queue\"\nurl = \"http://127.0.0.1:9/q\"\nordered = true\n\
         secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n"
    );
    let settings = common::settings_with_accounts(&db.url, &config, &[]);
    let services = Services::connect(&settings).await.expect("connect");
    services.store.migrate().await.expect("migrate");
    services
}

fn call(id: i64, level: &str) -> String {
    json!({"dataType": "ROBOT_CALL_RECORD", "data": {"callRecordId": id, "robotCallJobId": 9, "intentLevel": level,
        "calledPhoneNumber": "13800138000", "callDetailList": [{"type": "ROBOT", "text": "您好"}, {"type": "PERSON", "text": level}]}})
    .to_string()
}

/// Stores `body` as the intake would, announcing to the configured targets.
async fn store(services: &Services, body: &str) -> Recorded {
    let callback = parse_callback(body.as_bytes(), chrono::FixedOffset::east_opt(8 * 3600).unwrap()).unwrap();
    let received_at = storable_now();
    let announcements = announcements(&services.targets, ACCOUNT, &callback, received_at);
    let pending = PendingCallback {
        account: ACCOUNT.into(),
        body: body.as_bytes().to_vec(),
        source: Source::Push,
        received_at,
        callback,
        announcements,
    };
    services.store.store_callback(pending).await
}

async fn outcome(services: &Services, body: &str) -> (Ingested, Option<EventType>) {
    let (_, result) = store(services, body).await;
    let (outcome, outbound) = result.expect("stored");
    (outcome, outbound.map(|o| o.event_type))
}

fn crm() -> DeliveryFilter {
    DeliveryFilter { target: Some("crm".into()), ..Default::default() }
}

#[tokio::test]
async fn a_callback_is_created_then_changed_and_a_resend_of_either_is_a_duplicate() {
    for db in databases().await {
        let services = services(&db).await;
        let ctx = format!("{:?}", db.backend);
        assert_eq!(
            outcome(&services, &call(1, "A")).await,
            (Ingested::Created, Some(EventType::CallFinished)),
            "{ctx}"
        );
        assert_eq!(outcome(&services, &call(1, "A")).await, (Ingested::Duplicate, None), "{ctx}");
        assert_eq!(outcome(&services, &call(1, "B")).await, (Ingested::Changed, Some(EventType::CallUpdated)), "{ctx}");
        assert_eq!(outcome(&services, &call(1, "A")).await, (Ingested::Duplicate, None), "{ctx}: a late retry");
        let stored = services.store.call_record(ACCOUNT, 1).await.unwrap().unwrap();
        assert_eq!((stored.intent_level.as_deref(), stored.revision), (Some("B"), 2), "{ctx}");
        let turns = services.store.call_turns(ACCOUNT, 1).await.unwrap();
        assert_eq!(turns.iter().map(|t| t.text.clone().unwrap()).collect::<Vec<_>>(), ["您好", "B"], "{ctx}");
        let inbox = services.store.inbox(ACCOUNT).await.unwrap();
        assert_eq!(inbox.iter().map(|e| e.times_seen).collect::<Vec<_>>(), [3, 1], "{ctx}");
        let deliveries = services.store.deliveries(&crm()).await.unwrap();
        let types: Vec<EventType> = deliveries.iter().map(|d| d.event_type).collect();
        assert_eq!(types, [EventType::CallFinished, EventType::CallUpdated], "{ctx}: one delivery per event");
        assert!(deliveries.iter().all(|d| d.status == DeliveryStatus::Pending && d.attempts == 0), "{ctx}");
        let events = services.store.events(&Default::default()).await.unwrap();
        assert_eq!(events.len(), 2, "{ctx}");
        assert_eq!(events[0].payload.0["data"]["call_record_id"], 1, "{ctx}");
        services.close().await;
    }
}

#[tokio::test]
async fn jobs_sms_and_unknown_data_types_have_their_own_outcomes() {
    for db in databases().await {
        let services = services(&db).await;
        let ctx = format!("{:?}", db.backend);
        let job = r#"{"dataType":"ROBOT_CALL_JOB","data":{"robotCallJobId":9,"status":"COMPLETED"}}"#;
        assert_eq!(outcome(&services, job).await, (Ingested::Created, Some(EventType::JobCompleted)), "{ctx}");
        let changed = r#"{"dataType":"ROBOT_CALL_JOB","data":{"robotCallJobId":9,"status":"COMPLETED","tenantId":2}}"#;
        assert_eq!(outcome(&services, changed).await, (Ingested::Changed, None), "{ctx}: not a new fact");
        let sms = r#"{"dataType":"ROBOT_CALL_SMS","data":{"callRecordId":1,"msgList":[{"msg":"hi"},{"msg":"again"}]}}"#;
        assert_eq!(outcome(&services, sms).await, (Ingested::Created, Some(EventType::SmsRequested)), "{ctx}");
        assert_eq!(services.store.sms_messages(ACCOUNT, 1).await.unwrap().len(), 2, "{ctx}");
        let other = r#"{"dataType":"ROBOT_CALL_NEW","data":{"x":1}}"#;
        let expected = (Ingested::Unrecognized, Some(EventType::CallbackUnrecognized));
        assert_eq!(outcome(&services, other).await, expected, "{ctx}");
        assert_eq!(outcome(&services, other).await, (Ingested::Duplicate, None), "{ctx}");
        assert_eq!(services.store.jobs(ACCOUNT, 9).await.unwrap()[0].revision, 2, "{ctx}");
        services.close().await;
    }
}

#[tokio::test]
async fn a_rejected_body_is_kept_once_and_counted() {
    for db in databases().await {
        let services = services(&db).await;
        for _ in 0..3 {
            services.store.record_rejected(ACCOUNT, b"not json", Source::Push, "body is not JSON").await.unwrap();
        }
        let rejected = services.store.rejected(Some(ACCOUNT), None).await.unwrap();
        assert_eq!(rejected.len(), 1, "{:?}", db.backend);
        assert_eq!((rejected[0].times_seen, rejected[0].body.as_deref()), (3, Some(&b"not json"[..])));
        assert_eq!(rejected[0].error.as_deref(), Some("body is not JSON"));
        assert!(services.store.rejected(Some("nyc"), None).await.unwrap().is_empty());
        services.close().await;
    }
}

#[tokio::test]
async fn a_claim_is_a_lease_that_a_finish_ends_and_a_lapse_hands_on() {
    for db in databases().await {
        let services = services(&db).await;
        let store = &services.store;
        let ctx = format!("{:?}", db.backend);
        for id in 1..=3 {
            store_ok(&services, &call(id, "A")).await;
        }
        let now = storable_now();
        let lease = now + Duration::seconds(60);
        let first = store.claim_deliveries("crm", false, now, lease, 2, "w1").await.unwrap();
        assert_eq!(first.len(), 2, "{ctx}: up to the limit");
        assert!(first.iter().all(|d| d.attempts == 1 && d.account == ACCOUNT), "{ctx}");
        assert_eq!(first[0].subject.call_record_id, Some(1), "{ctx}: the subject comes with the claim");
        assert!(first[0].payload.get().contains("\"call.finished\""), "{ctx}");
        let second = store.claim_deliveries("crm", false, now, lease, 10, "w2").await.unwrap();
        assert_eq!(second.len(), 1, "{ctx}: what one holds, another does not get");
        assert!(store.claim_deliveries("crm", false, now, lease, 10, "w3").await.unwrap().is_empty());
        let attempt = |delivery_id, after| Attempt {
            delivery_id,
            attempt: 1,
            started_at: now,
            latency_ms: 3,
            status_code: Some(200),
            error: None,
            response_snippet: Some("ok".into()),
            after,
        };
        let retry_at = now + Duration::seconds(30);
        let finished =
            [attempt(first[0].id, AfterAttempt::Delivered), attempt(first[1].id, AfterAttempt::RetryAt(retry_at))];
        store.finish_attempts("w1", &finished, now).await.unwrap();
        // w3 reports on a delivery it never held: only its attempt is recorded.
        store.finish_attempts("w3", &[attempt(second[0].id, AfterAttempt::Dead)], now).await.unwrap();
        let rows = store.deliveries(&crm()).await.unwrap();
        let statuses: Vec<DeliveryStatus> = rows.iter().map(|d| d.status).collect();
        assert_eq!(statuses, [DeliveryStatus::Delivered, DeliveryStatus::Pending, DeliveryStatus::Pending], "{ctx}");
        assert_eq!(rows[1].due_at, retry_at, "{ctx}: a retry is due when it was scheduled");
        assert_eq!(store.delivery_attempts(second[0].id).await.unwrap().len(), 1, "{ctx}");
        // The retry is not due yet; the third delivery's lease lapses and another worker gets it.
        let later = lease + Duration::seconds(1);
        let lapsed = store.claim_deliveries("crm", false, later, later + Duration::seconds(60), 10, "w4").await;
        let lapsed: Vec<i64> = lapsed.unwrap().iter().map(|d| d.id).collect();
        assert_eq!(lapsed, [first[1].id, second[0].id], "{ctx}: the due retry and the lapsed lease");
        store.release_claims(&lapsed, "w4", later).await.unwrap();
        let again = store.claim_deliveries("crm", false, later, later, 10, "w5").await.unwrap();
        assert_eq!(again.iter().map(|d| d.attempts).collect::<Vec<_>>(), [2, 2], "{ctx}: a release does not count");
        services.close().await;
    }
}

#[tokio::test]
async fn an_ordered_target_hands_out_only_its_head_and_a_replay_revives_only_finished_deliveries() {
    for db in databases().await {
        let services = services(&db).await;
        let store = &services.store;
        let ctx = format!("{:?}", db.backend);
        for id in 1..=3 {
            store_ok(&services, &call(id, "A")).await;
        }
        let now = Utc::now();
        let head = store.claim_deliveries("queue", true, now, now + Duration::seconds(60), 10, "w1").await.unwrap();
        assert_eq!(head.iter().map(|d| d.subject.call_record_id).collect::<Vec<_>>(), [Some(1)], "{ctx}");
        assert!(store.claim_deliveries("queue", true, now, now, 10, "w2").await.unwrap().is_empty(), "{ctx}");
        let dead = Attempt {
            delivery_id: head[0].id,
            attempt: 1,
            started_at: now,
            latency_ms: 1,
            status_code: Some(500),
            error: Some("HTTP 500".into()),
            response_snippet: None,
            after: AfterAttempt::Dead,
        };
        store.finish_attempts("w1", &[dead], now).await.unwrap();
        let next = store.claim_deliveries("queue", true, now, now + Duration::seconds(60), 10, "w1").await.unwrap();
        assert_eq!(next[0].subject.call_record_id, Some(2), "{ctx}: a dead head lets the next one through");
        let filter = DeliveryFilter { target: Some("queue".into()), ..Default::default() };
        assert_eq!(store.replay(&filter, now).await.unwrap(), 1, "{ctx}: the pending ones are not touched");
        let rows = store.deliveries(&filter).await.unwrap();
        assert_eq!((rows[0].status, rows[0].attempts), (DeliveryStatus::Pending, 0), "{ctx}");
        let dead_only = DeliveryFilter { status: Some(DeliveryStatus::Dead), ..filter };
        assert_eq!(store.replay(&dead_only, now).await.unwrap(), 0, "{ctx}");
        services.close().await;
    }
}

#[tokio::test]
async fn an_enrichment_announces_only_a_changed_correction() {
    for db in databases().await {
        let services = services(&db).await;
        store_ok(&services, &call(5, "A")).await;
        let updated = || {
            let callback = parse_callback(call(5, "A").as_bytes(), chrono::FixedOffset::east_opt(0).unwrap()).unwrap();
            announcements(&services.targets, ACCOUNT, &callback, storable_now()).changed
        };
        let corrected = Enrichment { real_intent_level: Some("B".into()), ..Default::default() };
        let now = storable_now();
        let first = services.store.enrich_call(ACCOUNT, 5, &corrected, now, updated()).await.unwrap();
        assert_eq!(first.map(|o| o.event_type), Some(EventType::CallUpdated), "{:?}", db.backend);
        let again = services.store.enrich_call(ACCOUNT, 5, &corrected, now, updated()).await.unwrap();
        assert!(again.is_none(), "the same correction is not news");
        let stored = services.store.call_record(ACCOUNT, 5).await.unwrap().unwrap();
        assert_eq!((stored.real_intent_level.as_deref(), stored.enriched_at), (Some("B"), Some(now)));
        let missing = services.store.enrich_call(ACCOUNT, 404, &corrected, now, None).await;
        assert!(matches!(missing, Err(tanyi_relay::store::StoreError::Missing(_))));
        services.close().await;
    }
}

#[tokio::test]
async fn a_purge_removes_exactly_what_is_older_than_its_cutoffs() {
    for db in databases().await {
        let services = services(&db).await;
        let store = &services.store;
        store_ok(&services, &call(1, "A")).await;
        let keep_all = Cutoffs::default();
        assert_eq!(store.purge(&keep_all).await.unwrap(), Some(Default::default()), "{:?}", db.backend);
        let future = Utc::now() + Duration::seconds(5);
        let everything = Cutoffs {
            raw_bodies_before: Some(future),
            transcripts_before: Some(future),
            deliveries_before: Some(future),
        };
        let report = store.purge(&everything).await.unwrap().expect("no other purge runs");
        assert_eq!((report.raw_bodies_dropped, report.transcript_turns_deleted), (1, 2), "{:?}", db.backend);
        assert_eq!(report.deliveries_deleted, 0, "pending deliveries stay");
        assert!(store.inbox(ACCOUNT).await.unwrap()[0].body.is_none());
        assert!(store.call_record(ACCOUNT, 1).await.unwrap().is_some(), "normalized data stays");
        services.close().await;
    }
}

#[tokio::test]
async fn the_schema_allows_exactly_the_statuses_the_code_knows() {
    for db in databases().await {
        let services = services(&db).await;
        let store: &Store = &services.store;
        for status in DeliveryStatus::ALL {
            store.adhoc().execute(&format!("UPDATE deliveries SET status = '{}'", status.as_str())).await.unwrap();
        }
        let unknown = "INSERT INTO deliveries (event_id, target, status, due_at, retry_from, created_at, updated_at) \
            VALUES ('x', 't', 'lost', '2024-01-01', '2024-01-01', '2024-01-01', '2024-01-01')";
        assert!(store.adhoc().execute(unknown).await.is_err(), "{:?}: a status the code does not know", db.backend);
        assert!(store.migrations_current().await.unwrap());
        services.close().await;
    }
}

async fn store_ok(services: &Services, body: &str) {
    let (_, result) = store(services, body).await;
    result.expect("stored");
}

#[tokio::test]
async fn a_purge_works_in_batches_and_one_replica_purges_at_a_time() {
    for db in databases().await {
        let services = services(&db).await;
        let store = &services.store;
        let batch = tanyi_relay::store::PURGE_BATCH as usize;
        let bodies = batch * 2 + 7;
        for i in 0..bodies {
            let body = format!("not json {i}");
            store.record_rejected(ACCOUNT, body.as_bytes(), Source::Push, "body is not JSON").await.unwrap();
        }
        let cutoffs = Cutoffs { raw_bodies_before: Some(Utc::now() + Duration::seconds(5)), ..Default::default() };
        if db.backend == common::Backend::Postgres {
            // Another replica's purge holds the lock: this one skips the round.
            let other = Store::connect(&common::settings(&db, &[]).database).await.unwrap();
            let mut held = other.adhoc().hold_every_connection(1).await.unwrap();
            let mut lock = "SELECT pg_advisory_lock(hashtext('tanyi-relay purge ' || current_schema()))";
            held.execute(lock).await.unwrap();
            assert_eq!(store.purge(&cutoffs).await.unwrap(), None, "a second replica purged at the same time");
            lock = "SELECT pg_advisory_unlock(hashtext('tanyi-relay purge ' || current_schema()))";
            held.execute(lock).await.unwrap();
            drop(held);
            other.close().await;
        }
        let report = store.purge(&cutoffs).await.unwrap().expect("the lock is free");
        assert_eq!(report.raw_bodies_dropped, bodies as u64, "{:?}: every batch ran", db.backend);
        assert!(store.rejected(None, None).await.unwrap().is_empty(), "{:?}", db.backend);
        services.close().await;
    }
}
