//! Retention removes exactly what it should: old raw bodies, old transcripts, old delivered
//! history; never the inbox rows, the normalized data, dead deliveries or recent data.

use crate::common;
use crate::common::receiver;
use tanyi_relay::domain::DeliveryStatus;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::{assert_acked, databases, TestApp, TestDb, ACCOUNT, ACCOUNTS_TOML};
use receiver::{Behaviour, Receiver, SECRET};
use serde_json::json;
use tanyi_relay::store::{Cutoffs, DeliveryFilter, EventFilter, PurgeReport};

fn call(id: i64) -> String {
    json!({"dataType": "ROBOT_CALL_RECORD", "data": {"callRecordId": id, "callDetailList": [
        {"callDetailId": 1, "type": "ROBOT", "text": "您好"}, {"callDetailId": 2, "type": "PERSON", "text": "嗯"}]}})
    .to_string()
}

async fn spawn(db: &TestDb, crm: &Receiver, down: &Receiver) -> TestApp {
    let config = format!(
        "{ACCOUNTS_TOML}\n[[targets]]\nname = \"crm\"\nurl = \"{}\"\nsecrets = [\"{SECRET}\"]\n\n\
         [[targets]]\nname = \"down\"\nurl = \"{}\"\nsecrets = [\"{SECRET}\"]\nevents = [\"job.completed\"]\nmax_attempts = 1\n",
        crm.url, down.url
    );
    let settings =
        common::settings_with_accounts(&db.url, &config, &[("TANYI_RELAY__DELIVERY__POLL_INTERVAL_MS", "50")]);
    TestApp::spawn_settings(db.backend, settings).await
}

async fn settled(app: &TestApp, count: usize) {
    let start = Instant::now();
    loop {
        let rows = app.store.deliveries(&DeliveryFilter::default()).await.unwrap();
        if rows.len() == count && rows.iter().all(|r| r.status != DeliveryStatus::Pending) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "deliveries did not settle: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn retention_removes_exactly_what_is_older_than_its_cutoffs() {
    for db in databases().await {
        let crm = Receiver::start(Behaviour::Accept).await;
        let down = Receiver::start(Behaviour::AlwaysFail(500)).await;
        let app = spawn(&db, &crm, &down).await;
        // Old: call 1 and a job completion (delivered to crm; dead at "down").
        assert_acked(app.post(call(1)).await).await;
        assert_acked(app.post(common::sample("job_completed.json")).await).await;
        settled(&app, 3).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let cutoff = Utc::now();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Recent: call 2.
        assert_acked(app.post(call(2)).await).await;
        settled(&app, 4).await;

        let all = Cutoffs {
            raw_bodies_before: Some(cutoff),
            transcripts_before: Some(cutoff),
            deliveries_before: Some(cutoff),
        };
        let report = app.store.purge(&all).await.unwrap().expect("not purging elsewhere");
        let expected = PurgeReport {
            raw_bodies_dropped: 2,
            transcript_turns_deleted: 2,
            deliveries_deleted: 2,
            events_deleted: 1,
        };
        assert_eq!(report, expected, "{:?}", db.backend);

        let inbox = app.store.inbox(ACCOUNT).await.unwrap();
        assert_eq!(inbox.len(), 3, "inbox rows stay");
        assert_eq!(inbox.iter().filter(|e| e.body.is_none()).count(), 2);
        assert!(inbox.iter().any(|e| e.dedup_key == "call:2" && e.body.is_some()), "recent body kept");
        assert!(app.store.call_record(ACCOUNT, 1).await.unwrap().is_some(), "normalized data stays");
        assert!(app.store.call_turns(ACCOUNT, 1).await.unwrap().is_empty());
        assert_eq!(app.store.call_turns(ACCOUNT, 2).await.unwrap().len(), 2, "recent transcript kept");
        let left = app.store.deliveries(&DeliveryFilter::default()).await.unwrap();
        let left: Vec<(&str, &str)> = left.iter().map(|d| (d.target.as_str(), d.status.as_str())).collect();
        assert_eq!(left, [("down", "dead"), ("crm", "delivered")], "the dead one (replayable) and the recent one");
        let events = app.store.events(&EventFilter::default()).await.unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(kinds, ["job.completed", "call.finished"], "events still needed stay");

        assert_eq!(app.store.purge(&all).await.unwrap(), Some(PurgeReport::default()), "a second run finds nothing");
        assert_eq!(app.store.purge(&Cutoffs::default()).await.unwrap(), Some(PurgeReport::default()));
        app.stop().await;
    }
}

#[test]
fn zero_days_keeps_everything() {
    let settings = common::settings_for_url("sqlite://unused.db", &[("TANYI_RELAY__RETENTION__DELIVERY_DAYS", "0")]);
    assert!(!settings.retention.enabled());
    assert_eq!(Cutoffs::at(&settings.retention, Utc::now()), Cutoffs::default());
    let settings = common::settings_for_url("sqlite://unused.db", &[("TANYI_RELAY__RETENTION__RAW_BODY_DAYS", "7")]);
    let now = Utc::now();
    assert_eq!(Cutoffs::at(&settings.retention, now).raw_bodies_before, Some(now - chrono::Duration::days(7)));
}
