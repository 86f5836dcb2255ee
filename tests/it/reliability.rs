//! The relay's promise under failure, with its real binary driven by the simulator: killed with
//! SIGKILL under load, its database cut off mid-run, its receiver down, one of two replicas killed
//! while holding deliveries. Afterwards every callback that was answered `success` is stored
//! exactly once and every stored event reached the receiver at least once.
//!
//! CI runs these with small numbers; `scripts/reliability` runs them longer (the sizes come from
//! RELIABILITY_* variables, see docs/RELIABILITY.md).

use crate::common;
use crate::common::ledger::*;
use crate::common::process;
use crate::common::proxy;
use crate::common::receiver;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{databases, Backend, TestDb, ACCOUNT, KEY};
use process::RelayProcess;
use proxy::{host_port, through, CuttableProxy};
use receiver::{Behaviour, Receiver};
use serde_json::Value;
use tanyi_relay::sim::simulate::{self, Options, RetrySchedule};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_with_sigkill_under_load_it_loses_nothing_it_acknowledged() {
    let calls = size("RELIABILITY_CALLS", 300);
    let kills = size("RELIABILITY_KILLS", 3);
    for db in databases().await {
        let dir = tempfile::tempdir().unwrap();
        let receiver = Receiver::start(Behaviour::Accept).await;
        let mut relay = RelayProcess::start(dir.path(), "relay", &config(&db.url, &receiver, "")).await;
        // Paced so that the run lasts long enough for every kill to land in the middle of it.
        let options = campaign(relay.callback_url(ACCOUNT), calls, 100.0, RetrySchedule::Compressed);
        let sending = tokio::spawn(simulate::run(options.clone()));
        let between = Duration::from_secs_f64(calls as f64 / 100.0 / (kills + 1) as f64);
        for _ in 0..kills {
            tokio::time::sleep(between).await;
            relay.kill9();
            tokio::time::sleep(Duration::from_millis(300)).await;
            relay.restart().await;
        }
        let summary = sending.await.unwrap();
        let store = connect(&db.url).await;
        wait_all_delivered(&store, &receiver, Duration::from_secs(60)).await;
        let tally = reckon(&store, &options, &summary, &receiver).await;
        tally.print(&format!("kill -9 ×{kills} under load"), db.backend);
        assert_eq!(relay.starts() as u64, kills + 1);
        assert!(summary.retried > 0, "the kills should have cut off some callbacks: {summary:?}");
        assert_nothing_lost(&tally, &summary);
        assert!(receiver.delivered().iter().all(|r| r.verified), "every delivery signed");
        store.close().await;
    }
}

/// Stops the real Postgres cluster (scripts/reliability, RELIABILITY_RESTART_POSTGRES=1) and
/// starts it again even if the test fails in between.
struct PostgresCluster;

impl PostgresCluster {
    fn control(action: &str) {
        let version = std::fs::read_dir("/etc/postgresql")
            .ok()
            .and_then(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).max())
            .expect("a Postgres cluster under /etc/postgresql");
        let status = std::process::Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &version, "main", action])
            .status()
            .expect("pg_ctlcluster");
        assert!(status.success(), "pg_ctlcluster {action} failed");
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| Self::control("start"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_goes_away_mid_run_and_comes_back_without_a_restart() {
    let Some(pg_url) = common::postgres_only("the database outage") else { return };
    let calls = size("RELIABILITY_CALLS", 300);
    let outage = Duration::from_secs(size("RELIABILITY_OUTAGE_SECS", 3));
    let real_restart = std::env::var("RELIABILITY_RESTART_POSTGRES").is_ok_and(|v| v == "1");
    let db = common::postgres(&pg_url).await;
    let proxy = CuttableProxy::start(host_port(&pg_url)).await;
    let relay_url = if real_restart { db.url.clone() } else { through(&db.url, &proxy.address) };
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(Behaviour::Accept).await;
    let relay = RelayProcess::start(dir.path(), "relay", &config(&relay_url, &receiver, "")).await;
    // The platform's doubling from 200 ms gives up after about 100 s: longer than the outage.
    let options =
        campaign(relay.callback_url(ACCOUNT), calls, 60.0, RetrySchedule::DoublingFrom(Duration::from_millis(200)));
    let sending = tokio::spawn(simulate::run(options.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let cluster = real_restart.then(|| {
        PostgresCluster::control("stop");
        PostgresCluster
    });
    if !real_restart {
        proxy.cut();
    }
    let client = common::client();
    let (mut unready, mut refused_callbacks) = (0, 0);
    let away = Instant::now();
    while away.elapsed() < outage {
        let ready = client.get(format!("{}/readyz", relay.base)).send().await.map(|r| r.status().as_u16());
        unready += usize::from(ready.is_ok_and(|s| s == 503));
        let callback = client.post(relay.callback_url(ACCOUNT) + "?key=" + KEY).body("{}").send().await;
        refused_callbacks += usize::from(callback.is_ok_and(|r| r.status().as_u16() == 503));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(cluster); // starts Postgres again
    proxy.restore();

    let summary = sending.await.unwrap();
    let store = connect(&db.url).await;
    wait_all_delivered(&store, &receiver, Duration::from_secs(60)).await;
    let tally = reckon(&store, &options, &summary, &receiver).await;
    tally.print(&format!("database away for {outage:?}"), db.backend);
    assert!(unready > 0, "readiness should turn 503 while the database is away");
    assert!(refused_callbacks > 0, "callbacks should be answered 503 while the database is away");
    assert!(summary.retried > 0, "the outage should have cut off some callbacks: {summary:?}");
    assert_eq!(relay.starts(), 1, "recovered without a restart");
    assert_nothing_lost(&tally, &summary);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_outage_is_retried_through_and_a_longer_one_is_replayed() {
    let calls = size("RELIABILITY_CALLS", 300) / 3;
    for db in databases().await {
        let dir = tempfile::tempdir().unwrap();
        let receiver = Receiver::start(Behaviour::AlwaysFail(503)).await;
        let retries = "retry_schedule_secs = [0.2, 0.4, 0.8, 1.6, 3.2]\nmax_attempts = 12\n";
        let relay = RelayProcess::start(dir.path(), "relay", &config(&db.url, &receiver, retries)).await;
        let options = campaign(relay.callback_url(ACCOUNT), calls, 200.0, RetrySchedule::Compressed);
        let summary = simulate::run(options.clone()).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        receiver.set(Behaviour::Accept);
        let store = connect(&db.url).await;
        wait_all_delivered(&store, &receiver, Duration::from_secs(90)).await;
        let tally = reckon(&store, &options, &summary, &receiver).await;
        tally.print("receiver down for 2 s", db.backend);
        assert_nothing_lost(&tally, &summary);
        let dead = strings(&store, "SELECT CAST(id AS TEXT) FROM deliveries WHERE status = 'dead'").await;
        assert!(dead.is_empty(), "none dead after a short outage: {dead:?}");
        store.close().await;
        drop(relay);

        // A longer outage than the retry budget: every delivery goes dead, then a replay sends them
        // all. Few events: once a target keeps failing it is paused and probed one delivery at a
        // time with doubling pauses, so spending every delivery's attempts takes a while.
        let db = fresh_like(&db).await;
        let receiver = Receiver::start(Behaviour::AlwaysFail(503)).await;
        let budget = "retry_schedule_secs = [0.1]\nmax_attempts = 2\n";
        let config_toml = config(&db.url, &receiver, budget);
        let relay = RelayProcess::start(dir.path(), "relay-long", &config_toml).await;
        let options = Options { jobs: 1, ..campaign(relay.callback_url(ACCOUNT), 3, 200.0, RetrySchedule::Compressed) };
        let summary = simulate::run(options.clone()).await;
        let store = connect(&db.url).await;
        let events = strings(&store, "SELECT id FROM events").await.len();
        let deadline = Instant::now() + Duration::from_secs(60);
        while strings(&store, "SELECT CAST(id AS TEXT) FROM deliveries WHERE status = 'dead'").await.len() < events {
            assert!(Instant::now() < deadline, "deliveries should go dead after two attempts");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        receiver.set(Behaviour::Accept);
        let config_file = dir.path().join("relay-long.toml");
        let replay = std::process::Command::new(env!("CARGO_BIN_EXE_tanyi-relay"))
            .args(["deliveries", "replay", "--target", "crm"])
            .env("TANYI_RELAY_CONFIG", &config_file)
            .output()
            .unwrap();
        assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
        let replayed: Value = serde_json::from_slice(&replay.stdout).unwrap();
        assert_eq!(replayed["replayed"], events as u64);
        wait_all_delivered(&store, &receiver, Duration::from_secs(60)).await;
        let tally = reckon(&store, &options, &summary, &receiver).await;
        tally.print("receiver down past the retry budget, then replayed", db.backend);
        assert_nothing_lost(&tally, &summary);
        store.close().await;
    }
}

/// Another empty database of the same kind as `db`.
async fn fresh_like(db: &TestDb) -> TestDb {
    match db.backend {
        Backend::Sqlite => common::sqlite().await,
        Backend::Postgres => common::postgres(&common::postgres_url().expect("a Postgres URL")).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_held_by_a_killed_replica_are_delivered_by_the_other() {
    let Some(pg_url) = common::postgres_only("the replicas (they share a database)") else { return };
    let calls = size("RELIABILITY_CALLS", 300) / 5;
    let db = common::postgres(&pg_url).await;
    let dir = tempfile::tempdir().unwrap();
    // A slow receiver: the first replica is killed while it holds deliveries in flight.
    let receiver = Receiver::start(Behaviour::Slow(Duration::from_millis(1500))).await;
    let config_toml = config(&db.url, &receiver, "max_in_flight = 16\n");
    let mut first = RelayProcess::start(dir.path(), "replica-a", &config_toml).await;
    let first_pid = first.pid();
    let options = campaign(first.callback_url(ACCOUNT), calls, 500.0, RetrySchedule::Compressed);
    let summary = simulate::run(options.clone()).await;
    let store = connect(&db.url).await;
    let second = RelayProcess::start(dir.path(), "replica-b", &config_toml).await;
    let claimed_sql =
        format!("SELECT CAST(id AS TEXT) FROM deliveries WHERE status = 'pending' AND claimed_by LIKE '{first_pid}-%'");
    let deadline = Instant::now() + Duration::from_secs(10);
    let held = loop {
        let held = strings(&store, &claimed_sql).await;
        if !held.is_empty() || Instant::now() > deadline {
            break held;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill9();
    // A delivery may have been recorded by the first replica between the query and the kill.
    let recorded_by_first: HashSet<String> = strings(
        &store,
        &format!("SELECT CAST(delivery_id AS TEXT) FROM delivery_attempts WHERE worker LIKE '{first_pid}-%'"),
    )
    .await
    .into_iter()
    .collect();
    let held: Vec<String> = held.into_iter().filter(|id| !recorded_by_first.contains(id)).collect();
    assert!(!held.is_empty(), "the first replica should be holding deliveries");
    receiver.set(Behaviour::Accept);

    wait_all_delivered(&store, &receiver, Duration::from_secs(60)).await;
    let tally = reckon(&store, &options, &summary, &receiver).await;
    tally.print(&format!("two replicas, the one holding {} deliveries killed", held.len()), db.backend);
    assert_nothing_lost(&tally, &summary);
    let second_pid = second.pid();
    let finished_by_second = strings(
        &store,
        &format!(
            "SELECT CAST(delivery_id AS TEXT) FROM delivery_attempts WHERE worker LIKE '{second_pid}-%' \
             AND status_code = 200"
        ),
    )
    .await;
    let finished_by_second: HashSet<String> = finished_by_second.into_iter().collect();
    assert!(
        held.iter().all(|id| finished_by_second.contains(id)),
        "every delivery the killed replica held was delivered by the other"
    );
    store.close().await;
}
