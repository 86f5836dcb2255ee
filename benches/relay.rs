//! The benchmark behind `scripts/bench` (see docs/BENCHMARKS.md). For each database it measures, in one
//! run: the storage transaction one callback causes, executed directly (the baseline); the relay's
//! own binary driven over loopback by the simulator at several concurrencies; fan-out to loopback
//! receivers; and ingest plus the documented report queries with many calls already stored.
//! Every relay figure is printed next to its ratio to the baseline of the same run; on Postgres also
//! next to the yardstick (`benches/yardstick/`: pgbench storing the same rows plainly, "natural", and
//! in one statement, "limit"), and a long fan-out run samples the relay's memory.
//!
//! `cargo bench --bench relay -- [--backends sqlite,postgres] [--parts ingest,fanout,memory,scale]
//! [--calls N] [--repeat N] [--scale-rows N] [--memory-secs N] [--markdown FILE]`; Postgres needs
//! `BENCH_DATABASE_URL` or `TEST_DATABASE_URL` (a server where the user may create databases).

#[path = "../tests/it/common/report_queries.rs"]
mod report_queries;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Utc};
use sqlx::Connection;
use tanyi_relay::account::Accounts;
use tanyi_relay::config::{DatabaseBackend, Settings};
use tanyi_relay::domain::Source;
use tanyi_relay::fanout::envelope::announcements;
use tanyi_relay::fanout::Targets;
use tanyi_relay::platform::callback::parse_callback;
use tanyi_relay::sim::simulate::{self, Auth, Options, RetrySchedule, Summary};
use tanyi_relay::store::{storable_now, PendingCallback, Store};

const ACCOUNT: &str = "acme";
const KEY: &str = "bench-callback-key";
const SEED: u64 = 20261130;
const CONCURRENCIES: [usize; 3] = [1, 16, 64];
/// What a receiver spends on each delivery, so that deliveries are really in flight for a while.
const RECEIVER_WORK: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

struct Args {
    backends: Vec<Backend>,
    calls: u32,
    scale_rows: u64,
    repeat: usize,
    /// Which parts to run: ingest (with its baseline), fanout, memory, scale.
    parts: Vec<String>,
    /// How long the memory part's fan-out runs.
    memory_secs: u64,
    markdown: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        backends: vec![Backend::Sqlite, Backend::Postgres],
        calls: 3000,
        scale_rows: 1_000_000,
        repeat: 3,
        parts: ["ingest", "fanout", "memory", "scale"].map(String::from).to_vec(),
        memory_secs: 300,
        markdown: None,
    };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        let mut value = || given.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--backends" => {
                args.backends = value()
                    .split(',')
                    .map(|b| match b {
                        "sqlite" => Backend::Sqlite,
                        "postgres" => Backend::Postgres,
                        other => panic!("unknown backend {other}"),
                    })
                    .collect()
            }
            "--calls" => args.calls = value().parse().expect("--calls N"),
            "--scale-rows" => args.scale_rows = value().parse().expect("--scale-rows N"),
            "--repeat" => args.repeat = value().parse::<usize>().expect("--repeat N").max(1),
            "--parts" => args.parts = value().split(',').map(String::from).collect(),
            "--markdown" => args.markdown = Some(value().into()),
            "--memory-secs" => args.memory_secs = value().parse().expect("--memory-secs N"),
            // cargo bench passes --bench to every bench target.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let postgres_admin = std::env::var("BENCH_DATABASE_URL").or_else(|_| std::env::var("TEST_DATABASE_URL")).ok();
    let bench = Bench {
        relay: PathBuf::from(env!("CARGO_BIN_EXE_tanyi-relay")),
        work: tempfile::tempdir().expect("a temporary directory"),
        postgres_admin,
        calls: args.calls,
        repeat: args.repeat,
        clock_ticks: clock_ticks(),
        databases: AtomicUsize::new(0),
    };
    let mut report = String::new();
    let _ = writeln!(report, "{}", machine_notes());
    for backend in args.backends.clone() {
        if backend == Backend::Postgres && bench.postgres_admin.is_none() {
            eprintln!("postgres skipped: set BENCH_DATABASE_URL or TEST_DATABASE_URL");
            continue;
        }
        let section = bench.backend(backend, &args).await;
        println!("{section}");
        report.push_str(&section);
    }
    if let Some(path) = args.markdown {
        std::fs::write(&path, report).expect("write the markdown report");
        eprintln!("report written to {}", path.display());
    }
}

struct Bench {
    relay: PathBuf,
    work: tempfile::TempDir,
    postgres_admin: Option<String>,
    calls: u32,
    /// Runs per baseline and ingest measurement; the median is reported.
    repeat: usize,
    clock_ticks: f64,
    databases: AtomicUsize,
}

/// A database made for one measurement, dropped after it.
struct Database {
    url: String,
    postgres_name: Option<String>,
}

/// One run of the relay or of the baseline.
#[derive(Debug, Default, Clone)]
struct Measured {
    callbacks: u64,
    acked: u64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU time of the relay process over wall time, in percent of one core.
    cpu_percent: Option<f64>,
    peak_rss_mb: Option<f64>,
}

struct Fanout {
    receivers: usize,
    events: u64,
    deliveries: u64,
    duplicates: u64,
    missing: u64,
    ingest_per_second: f64,
    deliveries_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// From the simulator's last ack to the last delivery.
    drain_ms: f64,
    max_in_flight: i64,
    max_connections_in_use: i64,
    /// The relay's own measure of a request to the receiver (`delivery_attempts.latency_ms`).
    send_ms: f64,
}

impl Bench {
    async fn backend(&self, backend: Backend, args: &Args) -> String {
        let wants = |part: &str| args.parts.iter().any(|p| p == part);
        let scale_rows = args.scale_rows;
        let mut out = String::new();
        // The scale part compares with the ingest part's figure at concurrency 16.
        let mut at_16 = None;
        if wants("ingest") || wants("scale") {
            let (section, measured) = self.ingest_part(backend).await;
            if wants("ingest") {
                out.push_str(&section);
            }
            at_16 = Some(measured);
        }
        if wants("fanout") {
            out.push_str(&self.fanout_part(backend).await);
        }
        if wants("memory") {
            eprintln!("== {}: memory ({} s of fan-out at concurrency 64)", backend.name(), args.memory_secs);
            out.push_str(&self.memory(backend, Duration::from_secs(args.memory_secs)).await);
        }
        if let Some(small) = at_16.filter(|_| wants("scale") && scale_rows > 0) {
            eprintln!("== {}: scale ({scale_rows} stored calls)", backend.name());
            out.push_str(&self.scale(backend, scale_rows, &small).await);
        }
        out
    }

    /// The baseline and the relay at each concurrency; also returns the relay at concurrency 16.
    async fn ingest_part(&self, backend: Backend) -> (String, Measured) {
        let mut out = String::new();
        let name = backend.name();
        eprintln!("== {name}: baseline");
        // SQLite has one writer at a time: its limit is a single-writer loop. Postgres takes
        // concurrent transactions: its baseline runs at the same concurrency as the relay.
        let mut baselines: HashMap<usize, Measured> = HashMap::new();
        for c in CONCURRENCIES {
            let baseline = match backend {
                Backend::Sqlite if c > 1 => baselines[&1usize].clone(),
                _ => {
                    let mut runs = Vec::new();
                    for _ in 0..self.repeat {
                        runs.push(self.baseline(backend, c).await);
                    }
                    median(runs)
                }
            };
            baselines.insert(c, baseline);
        }
        // The yardstick (Postgres only): the same rows stored plainly by pgbench, natural and limit.
        let mut yardsticks: HashMap<(Yardstick, usize), f64> = HashMap::new();
        if backend == Backend::Postgres {
            eprintln!("== {name}: yardstick");
            for c in CONCURRENCIES {
                for kind in [Yardstick::Natural, Yardstick::Limit] {
                    let mut runs: Vec<f64> = Vec::new();
                    for _ in 0..self.repeat {
                        runs.push(self.yardstick(kind, c).await);
                    }
                    runs.sort_by(f64::total_cmp);
                    yardsticks.insert((kind, c), runs[runs.len() / 2]);
                }
            }
        }
        eprintln!("== {name}: ingest");
        let mut relay: HashMap<usize, Measured> = HashMap::new();
        let mut ranges: HashMap<usize, (f64, f64)> = HashMap::new();
        for c in CONCURRENCIES {
            let mut runs = Vec::new();
            for _ in 0..self.repeat {
                runs.push(self.ingest(backend, c, None).await);
            }
            let rates = runs.iter().map(|m| m.per_second);
            ranges.insert(c, (rates.clone().fold(f64::MAX, f64::min), rates.fold(0.0, f64::max)));
            relay.insert(c, median(runs));
        }
        let peak = relay.values().map(|m| m.per_second).fold(0.0, f64::max);
        eprintln!("== {name}: ingest at half the peak rate ({:.0}/s)", peak / 2.0);
        let half = self.ingest(backend, 64, Some(peak / 2.0)).await;

        let _ =
            writeln!(out, "\n## {name}: ingest ({} calls, {} callbacks per run)\n", self.calls, relay[&1].callbacks);
        let _ = writeln!(
            out,
            "| concurrency | natural/s | limit/s | own baseline/s | own baseline p50 / p99 ms | relay/s (median; range) | relay p50 / p99 ms | relay CPU | relay peak RSS | relay / natural | relay / limit | relay / own baseline |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for c in CONCURRENCIES {
            let (b, r, (low, high)) = (&baselines[&c], &relay[&c], ranges[&c]);
            let yardstick = |kind| yardsticks.get(&(kind, c)).copied();
            let figure = |value: Option<f64>| value.map_or("—".to_owned(), |v| format!("{v:.0}"));
            let ratio =
                |value: Option<f64>| value.map_or("—".to_owned(), |v| format!("**{:.2}×**", r.per_second / v));
            let _ = writeln!(
                out,
                "| {c} | {} | {} | {:.0} | {:.1} / {:.1} | {:.0} ({low:.0}–{high:.0}) | {:.1} / {:.1} | {} | {} | {} | {} | {:.2}× |",
                figure(yardstick(Yardstick::Natural)),
                figure(yardstick(Yardstick::Limit)),
                b.per_second,
                b.p50_ms,
                b.p99_ms,
                r.per_second,
                r.p50_ms,
                r.p99_ms,
                percent(r.cpu_percent),
                megabytes(r.peak_rss_mb),
                ratio(yardstick(Yardstick::Natural)),
                ratio(yardstick(Yardstick::Limit)),
                r.per_second / b.per_second
            );
        }
        let _ = writeln!(
            out,
            "| 64, paced at {:.0}/s (half the peak) | | | | | {:.0} | {:.1} / **{:.1}** | {} | {} | | | |",
            peak / 2.0,
            half.per_second,
            half.p50_ms,
            half.p99_ms,
            percent(half.cpu_percent),
            megabytes(half.peak_rss_mb)
        );
        if relay.values().chain([&half]).any(|m| m.acked != m.callbacks) {
            let _ = writeln!(out, "\nWARNING: some callbacks were not acknowledged (see the simulator's retries).");
        }
        (out, relay[&16].clone())
    }

    async fn fanout_part(&self, backend: Backend) -> String {
        let mut out = String::new();
        let name = backend.name();
        eprintln!("== {name}: fan-out");
        let _ = writeln!(out, "\n## {name}: fan-out (ingest at concurrency 16, receivers take {RECEIVER_WORK:?})\n");
        let _ = writeln!(
            out,
            "| receivers | events | deliveries | deliveries/s | ingest/s | ack → delivery p50 / p99 ms | drain after last ack | send ms (relay's mean) | max deliveries in flight | max DB connections in use | duplicates | missing |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for receivers in [1, 4] {
            let f = self.fanout(backend, receivers).await;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {:.0} | **{:.1}** / {:.1} | {:.0} ms | {:.1} | {} | {} | {} | {} |",
                f.receivers,
                f.events,
                f.deliveries,
                f.deliveries_per_second,
                f.ingest_per_second,
                f.p50_ms,
                f.p99_ms,
                f.drain_ms,
                f.send_ms,
                f.max_in_flight,
                f.max_connections_in_use,
                f.duplicates,
                f.missing
            );
        }

        out
    }

    async fn fresh_database(&self, backend: Backend) -> Database {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        match backend {
            Backend::Sqlite => {
                Database { url: format!("sqlite://{}/bench-{n}.db", self.work.path().display()), postgres_name: None }
            }
            Backend::Postgres => {
                let admin = self.postgres_admin.as_deref().expect("a Postgres URL");
                let name = format!("tanyi_bench_{}_{n}", std::process::id());
                let mut connection = sqlx::PgConnection::connect(admin).await.expect("connect to Postgres");
                sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
                    .execute(&mut connection)
                    .await
                    .expect("create database");
                let (server, _) = admin.split('?').next().unwrap_or(admin).rsplit_once('/').expect("a database URL");
                Database { url: format!("{server}/{name}"), postgres_name: Some(name) }
            }
        }
    }

    async fn drop_database(&self, database: Database) {
        if let (Some(name), Some(admin)) = (database.postgres_name, self.postgres_admin.as_deref()) {
            if let Ok(mut connection) = sqlx::PgConnection::connect(admin).await {
                let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut connection)
                    .await;
            }
        }
    }

    fn config(&self, database: &Database, listen: &str, metrics: &str, receivers: &[String]) -> PathBuf {
        let mut toml = format!(
            "[server]\nlisten = \"{listen}\"\n[metrics]\nlisten = \"{metrics}\"\n[database]\nurl = \"{}\"\n\
             [[accounts]]\nname = \"{ACCOUNT}\"\ncallback_key = \"{KEY}\"\nutc_offset = \"+08:00\"\n",
            database.url
        );
        for (i, url) in receivers.iter().enumerate() {
            let _ = write!(
                toml,
                "[[targets]]\nname = \"receiver-{i}\"\nurl = \"{url}\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n"
            );
        }
        let path = self.work.path().join(format!("relay-{}.toml", self.databases.load(Ordering::Relaxed)));
        std::fs::write(&path, toml).expect("write the relay's configuration");
        path
    }

    fn campaign(&self, concurrency: usize, rate: Option<f64>, url: String) -> Options {
        Options {
            url,
            auth: Auth::Plain { key: KEY.to_owned() },
            calls: self.calls,
            jobs: 10,
            concurrency,
            rate,
            duplicates: 0.0,
            seed: SEED,
            retry: RetrySchedule::Compressed,
        }
    }

    /// The storage transaction of each callback of the campaign, straight into the store: parsed
    /// beforehand, no HTTP, no logging.
    async fn baseline(&self, backend: Backend, concurrency: usize) -> Measured {
        let database = self.fresh_database(backend).await;
        let config = self.config(&database, "127.0.0.1:0", "127.0.0.1:0", &[]);
        let settings = Settings::from_sources(Some(&config), HashMap::new()).expect("bench settings");
        let store = Store::connect(&settings.database).await.expect("connect");
        store.migrate().await.expect("migrate");
        let targets = Targets::new(&settings.targets, &settings.accounts, settings.delivery.internal_timeout);
        let offset = Accounts::new(&settings.accounts).get(ACCOUNT).expect("the bench account").utc_offset;
        let bodies: Vec<String> = simulate::campaign(&self.campaign(concurrency, None, String::new()))
            .into_iter()
            .flat_map(|job| job.callbacks.into_iter().chain([job.completion]))
            .collect();
        let work: Arc<Vec<_>> = Arc::new(
            bodies
                .into_iter()
                .map(|b| (parse_callback(b.as_bytes(), offset).expect("simulated callbacks parse"), b))
                .collect(),
        );
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (store, targets, work, next) = (store.clone(), targets.clone(), work.clone(), next.clone());
            tasks.spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((callback, body)) = work.get(i) else { break };
                    let received_at = storable_now();
                    let pending = PendingCallback {
                        account: ACCOUNT.to_owned(),
                        body: body.as_bytes().to_vec(),
                        source: Source::Push,
                        received_at,
                        announcements: announcements(&targets, ACCOUNT, callback, received_at),
                        callback: callback.clone(),
                    };
                    let began = Instant::now();
                    // One callback, one transaction, straight to the store (no group commit).
                    for (_, stored) in store.record_callbacks(vec![pending]).await {
                        stored.expect("the baseline stores every callback");
                    }
                    latencies.push(began.elapsed());
                }
                latencies
            });
        }
        let mut latencies = Vec::new();
        while let Some(done) = tasks.join_next().await {
            latencies.extend(done.expect("a baseline task"));
        }
        let seconds = started.elapsed().as_secs_f64();
        store.close().await;
        self.drop_database(database).await;
        let count = latencies.len() as u64;
        Measured {
            callbacks: count,
            acked: count,
            per_second: count as f64 / seconds,
            p50_ms: percentile(&mut latencies, 0.50),
            p99_ms: percentile(&mut latencies, 0.99),
            cpu_percent: None,
            peak_rss_mb: None,
        }
    }

    /// One pgbench run of the yardstick on a fresh database of its own; callbacks per second.
    async fn yardstick(&self, kind: Yardstick, concurrency: usize) -> f64 {
        let database = self.fresh_database(Backend::Postgres).await;
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/yardstick");
        let schema = Command::new("psql")
            .arg(&database.url)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", "SET client_min_messages = warning", "-f"])
            .arg(dir.join("schema.sql"))
            .output()
            .expect("psql (the yardstick needs psql and pgbench)");
        assert!(schema.status.success(), "the yardstick's schema: {}", String::from_utf8_lossy(&schema.stderr));
        let dargs: Vec<String> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("dargs.json")).expect("dargs.json"))
                .expect("dargs.json is a list of arguments");
        let (c, threads) = (concurrency.to_string(), concurrency.min(2).to_string());
        let run = Command::new("pgbench")
            .args(["-n", "-M", "prepared", "-f"])
            .arg(dir.join(kind.script()))
            .args(["-c", &c, "-j", &threads, "-T", &YARDSTICK_SECS.to_string()])
            .args(&dargs)
            .arg(&database.url)
            .output()
            .expect("pgbench");
        self.drop_database(database).await;
        let stdout = String::from_utf8_lossy(&run.stdout);
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("pgbench failed: {}", String::from_utf8_lossy(&run.stderr)))
    }

    /// Fan-out to one receiver at concurrency 64 for `length`, campaign after campaign, with the
    /// relay's resident memory sampled every 5 s.
    async fn memory(&self, backend: Backend, length: Duration) -> String {
        let receiver = BenchReceiver::start().await;
        let database = self.fresh_database(backend).await;
        let mut relay = self.start_relay(&database, std::slice::from_ref(&receiver.url)).await;
        let pid = relay.child.id();
        let sampler = tokio::spawn(async move {
            let began = Instant::now();
            let mut samples = Vec::new();
            while let Some(rss) = rss_mb(pid) {
                samples.push((began.elapsed(), rss));
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            samples
        });
        let began = Instant::now();
        let (mut acked, mut round) = (0u64, 0u64);
        while began.elapsed() < length {
            let options = Options { seed: SEED + 1 + round, ..self.campaign(64, None, relay.callback_url()) };
            acked += relay.drive(options).await.0.acked;
            round += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while receiver.unique() < acked as usize && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let elapsed = began.elapsed();
        relay.stop();
        let samples = sampler.await.unwrap_or_default();
        self.drop_database(database).await;
        let minute_peaks: Vec<f64> = (0..elapsed.as_secs().div_ceil(60))
            .map(|m| samples.iter().filter(|(at, _)| at.as_secs() / 60 == m).map(|(_, rss)| *rss).fold(0.0, f64::max))
            .collect();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n## {}: memory ({:.0} s of fan-out to one receiver at concurrency 64: {acked} callbacks, {} delivered)\n",
            backend.name(),
            elapsed.as_secs_f64(),
            receiver.unique()
        );
        let _ = writeln!(
            out,
            "| minute | {} |",
            (1..=minute_peaks.len()).map(|m| m.to_string()).collect::<Vec<_>>().join(" | ")
        );
        let _ = writeln!(out, "|---|{}", "---|".repeat(minute_peaks.len()));
        let peaks: Vec<String> = minute_peaks.iter().map(|mb| format!("{mb:.0}")).collect();
        let _ = writeln!(out, "| peak RSS MB | {} |", peaks.join(" | "));
        out
    }

    async fn start_relay(&self, database: &Database, receivers: &[String]) -> Relay {
        let free =
            || std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let (port, metrics_port) = (free(), free());
        let listen = format!("127.0.0.1:{port}");
        let config = self.config(database, &listen, &format!("127.0.0.1:{metrics_port}"), receivers);
        let log = std::fs::File::create(self.work.path().join(format!("relay-{port}.log"))).expect("log file");
        let child = Command::new(&self.relay)
            .arg("serve")
            .env("TANYI_RELAY_CONFIG", &config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the relay");
        let relay = Relay {
            child,
            base: format!("http://{listen}"),
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
            clock_ticks: self.clock_ticks,
        };
        let client = reqwest::Client::builder().no_proxy().build().expect("client");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready =
                client.get(format!("{}/readyz", relay.base)).send().await.is_ok_and(|r| r.status().is_success());
            if ready {
                return relay;
            }
            assert!(Instant::now() < deadline, "the relay did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ingest(&self, backend: Backend, concurrency: usize, rate: Option<f64>) -> Measured {
        let database = self.fresh_database(backend).await;
        let mut relay = self.start_relay(&database, &[]).await;
        let (summary, cpu_percent) = relay.drive(self.campaign(concurrency, rate, relay.callback_url())).await;
        let peak_rss_mb = relay.peak_rss_mb();
        relay.stop();
        self.drop_database(database).await;
        measured(&summary, cpu_percent, peak_rss_mb)
    }

    async fn fanout(&self, backend: Backend, count: usize) -> Fanout {
        let mut receivers = Vec::new();
        for _ in 0..count {
            receivers.push(BenchReceiver::start().await);
        }
        let urls: Vec<String> = receivers.iter().map(|r| r.url.clone()).collect();
        let database = self.fresh_database(backend).await;
        let mut relay = self.start_relay(&database, &urls).await;
        let sampling = Arc::new(AtomicI64::new(0));
        let sampler = {
            let (metrics, receivers, max_in_use) = (relay.metrics.clone(), receivers.clone(), sampling.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder().no_proxy().build().expect("client");
                let mut max_in_flight = 0;
                loop {
                    let in_flight: i64 = receivers.iter().map(|r| r.state.in_flight.load(Ordering::Relaxed)).sum();
                    max_in_flight = max_in_flight.max(in_flight);
                    if let Ok(text) = client.get(&metrics).send().await.and_then(|r| r.error_for_status()) {
                        if let Some(in_use) =
                            text.text().await.ok().and_then(|t| gauge(&t, "tanyi_relay_db_pool_in_use"))
                        {
                            max_in_use.fetch_max(in_use, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if receivers.iter().all(|r| r.state.done.load(Ordering::Relaxed) != 0) {
                        return max_in_flight;
                    }
                }
            })
        };
        let (summary, _) = relay.drive(self.campaign(16, None, relay.callback_url())).await;
        let last_ack = SystemTime::now();
        let expected = summary.acked;
        let deadline = Instant::now() + Duration::from_secs(120);
        while receivers.iter().any(|r| r.unique() < expected as usize) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        receivers.iter().for_each(|r| r.state.done.store(1, Ordering::Relaxed));
        let max_in_flight = sampler.await.unwrap_or(0);
        relay.stop();
        let send_ms = mean_send_ms(&database).await;
        self.drop_database(database).await;

        let mut latencies = Vec::new();
        let (mut deliveries, mut duplicates, mut missing) = (0u64, 0u64, 0u64);
        let mut last_arrival = last_ack;
        for receiver in &receivers {
            let got = receiver.state.got.lock().unwrap_or_else(|p| p.into_inner());
            let unique: HashSet<&String> = got.iter().map(|d| &d.id).collect();
            deliveries += got.len() as u64;
            duplicates += (got.len() - unique.len()) as u64;
            missing += expected.saturating_sub(unique.len() as u64);
            latencies.extend(got.iter().map(|d| d.latency));
            last_arrival = got.iter().map(|d| d.at).fold(last_arrival, SystemTime::max);
        }
        let delivering = last_arrival.duration_since(summary_start(&summary, last_ack)).unwrap_or_default();
        Fanout {
            receivers: count,
            events: expected,
            deliveries,
            duplicates,
            missing,
            ingest_per_second: summary.throughput,
            deliveries_per_second: deliveries as f64 / delivering.as_secs_f64().max(1e-9),
            p50_ms: percentile(&mut latencies, 0.50),
            p99_ms: percentile(&mut latencies, 0.99),
            drain_ms: last_arrival.duration_since(last_ack).unwrap_or_default().as_secs_f64() * 1000.0,
            max_in_flight,
            max_connections_in_use: sampling.load(Ordering::Relaxed),
            send_ms,
        }
    }

    /// Ingest and the documented report queries with `rows` calls already stored.
    async fn scale(&self, backend: Backend, rows: u64, small: &Measured) -> String {
        let database = self.fresh_database(backend).await;
        let config = self.config(&database, "127.0.0.1:0", "127.0.0.1:0", &[]);
        let settings = Settings::from_sources(Some(&config), HashMap::new()).expect("bench settings");
        let store = Store::connect(&settings.database).await.expect("connect");
        store.migrate().await.expect("migrate");
        let seeding = Instant::now();
        seed_calls(&store, rows).await;
        let seeded_in = seeding.elapsed();
        store.close().await;

        let mut relay = self.start_relay(&database, &[]).await;
        let (summary, cpu_percent) = relay.drive(self.campaign(16, None, relay.callback_url())).await;
        let big = measured(&summary, cpu_percent, relay.peak_rss_mb());
        relay.stop();

        let store = Store::connect(&settings.database).await.expect("connect");
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n## {}: scale ({rows} calls stored beforehand, seeded in {:.0} s)\n",
            backend.name(),
            seeded_in.as_secs_f64()
        );
        let _ = writeln!(out, "| measure | empty database | {rows} calls stored | ratio |");
        let _ = writeln!(out, "|---|---|---|---|");
        let _ = writeln!(
            out,
            "| ingest/s at concurrency 16 | {:.0} | {:.0} | {:.2}× |",
            small.per_second,
            big.per_second,
            big.per_second / small.per_second
        );
        let _ = writeln!(out, "| ack p99 ms at concurrency 16 | {:.1} | {:.1} | |", small.p99_ms, big.p99_ms);
        let _ = writeln!(out, "\n| documented report query | rows | time (best of 3) |");
        let _ = writeln!(out, "|---|---|---|");
        for (heading, sql) in report_queries::documented_queries(backend.name()) {
            let mut best = Duration::MAX;
            let mut count = 0;
            for _ in 0..3 {
                let began = Instant::now();
                count = store.adhoc().rows(&sql).await.map(|r| r.len()).unwrap_or_else(|e| panic!("{heading}: {e}"));
                best = best.min(began.elapsed());
            }
            let _ = writeln!(out, "| {heading} | {count} | {:.1} ms |", best.as_secs_f64() * 1000.0);
        }
        store.close().await;
        self.drop_database(database).await;
        out
    }
}

/// The two pgbench scripts of the yardstick (benches/yardstick/README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Yardstick {
    Natural,
    Limit,
}

impl Yardstick {
    fn script(self) -> &'static str {
        match self {
            Yardstick::Natural => "tx_multi_params.sql",
            Yardstick::Limit => "tx_single_params.sql",
        }
    }
}

/// How long each pgbench run of the yardstick lasts.
const YARDSTICK_SECS: u64 = 5;

/// The resident memory of a process now, in MB; `None` once it has ended.
fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The run with the median throughput (this machine is shared: single runs vary by ±30%).
fn median(mut runs: Vec<Measured>) -> Measured {
    runs.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    runs.swap_remove(runs.len() / 2)
}

fn measured(summary: &Summary, cpu_percent: f64, peak_rss_mb: Option<f64>) -> Measured {
    Measured {
        callbacks: summary.callbacks,
        acked: summary.acked,
        per_second: summary.throughput,
        p50_ms: summary.latency_ms.p50,
        p99_ms: summary.latency_ms.p99,
        cpu_percent: Some(cpu_percent),
        peak_rss_mb,
    }
}

async fn mean_send_ms(database: &Database) -> f64 {
    const MEAN: &str = "SELECT CAST(AVG(latency_ms) AS DOUBLE PRECISION) FROM delivery_attempts";
    let settings = HashMap::from([("TANYI_RELAY__DATABASE__URL".to_owned(), database.url.clone())]);
    let Ok(store) = Store::connect(&Settings::from_sources(None, settings).expect("settings").database).await else {
        return f64::NAN;
    };
    let mean = store.adhoc().column(MEAN).await;
    store.close().await;
    mean.ok().and_then(|values| values.first()?.parse().ok()).unwrap_or(f64::NAN)
}

/// When the simulator began, from when it ended and how long it ran.
fn summary_start(summary: &Summary, ended: SystemTime) -> SystemTime {
    ended - Duration::from_secs_f64(summary.seconds)
}

/// The relay's release binary as a child process.
struct Relay {
    child: Child,
    base: String,
    /// `/metrics`, on its own port.
    metrics: String,
    clock_ticks: f64,
}

impl Relay {
    fn callback_url(&self) -> String {
        format!("{}/callbacks/{ACCOUNT}", self.base)
    }

    /// Runs the simulator against this relay; returns its summary and the relay's CPU use meanwhile.
    async fn drive(&mut self, options: Options) -> (Summary, f64) {
        let cpu_before = self.cpu_seconds();
        let summary = simulate::run(options).await;
        let cpu = self.cpu_seconds() - cpu_before;
        (summary.clone(), 100.0 * cpu / summary.seconds.max(1e-9))
    }

    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
        let fields: Vec<&str> =
            stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
        let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
        ticks / self.clock_ticks
    }

    fn peak_rss_mb(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Delivered {
    id: String,
    at: SystemTime,
    latency: Duration,
}

#[derive(Default)]
struct ReceiverState {
    got: Mutex<Vec<Delivered>>,
    in_flight: AtomicI64,
    done: AtomicI64,
}

/// A downstream receiver on loopback that takes `RECEIVER_WORK` per delivery and records when
/// each event arrived against the event's own timestamp (the moment the callback was received,
/// just before its commit: the latency includes the commit).
#[derive(Clone)]
struct BenchReceiver {
    url: String,
    state: Arc<ReceiverState>,
}

impl BenchReceiver {
    async fn start() -> BenchReceiver {
        let state = Arc::new(ReceiverState::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("an address"));
        let app = Router::new().route("/hook", post(receive)).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        BenchReceiver { url, state }
    }

    fn unique(&self) -> usize {
        let got = self.state.got.lock().unwrap_or_else(|p| p.into_inner());
        got.iter().map(|d| &d.id).collect::<HashSet<_>>().len()
    }
}

async fn receive(State(state): State<Arc<ReceiverState>>, body: Bytes) -> StatusCode {
    let at = SystemTime::now();
    state.in_flight.fetch_add(1, Ordering::Relaxed);
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let sent_at = event["timestamp"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    let latency = sent_at
        .map_or(Duration::ZERO, |t| (DateTime::<Utc>::from(at) - t.with_timezone(&Utc)).to_std().unwrap_or_default());
    let id = event["id"].as_str().unwrap_or_default().to_owned();
    tokio::time::sleep(RECEIVER_WORK).await;
    state.got.lock().unwrap_or_else(|p| p.into_inner()).push(Delivered { id, at, latency });
    state.in_flight.fetch_sub(1, Ordering::Relaxed);
    StatusCode::OK
}

/// `rows` calls of account `acme` (with their inbox rows, bodies already purged), spread over 30
/// days, 100 jobs, every result and grade: enough for the report queries to have real work.
async fn seed_calls(store: &Store, rows: u64) {
    const BATCH: u64 = 100_000;
    for start in (0..rows).step_by(BATCH as usize) {
        let end = (start + BATCH).min(rows);
        match store.backend() {
            DatabaseBackend::Postgres => {
                let sql = format!(
                    "INSERT INTO inbox (id, account, data_type, dedup_key, content_sha256, status, first_seen_at, last_seen_at)
                     SELECT n, 'acme', 'ROBOT_CALL_RECORD', 'call:' || n, md5(n::text), 'stored', now(), now()
                     FROM generate_series({}, {end}) AS n;
                     INSERT INTO call_records (account, call_record_id, tenant_id, robot_call_job_id, called_phone_number,
                         result_status, intent_level, intent_grade, customer_concern, start_time, end_time, chat_duration,
                         chat_round, properties, inbox_id, received_at, updated_at, start_local)
                     SELECT 'acme', n, 1, 1 + n % 100, '138' || (10000000 + n % 90000000),
                         (ARRAY['ANSWERED','NO_ANSWER','BUSY'])[1 + n % 3],
                         (ARRAY['A','B','C','D','E','F'])[1 + n % 6], (ARRAY['A','B','C','D','E','F'])[1 + n % 6],
                         CASE WHEN n % 4 = 0 THEN '[\"价格\",\"位置\"]'::jsonb ELSE '[]'::jsonb END,
                         t, t + interval '1 minute', n % 120, n % 20, '{{\"来源\": \"种子\"}}'::jsonb, n, now(), now(),
                         to_char(t AT TIME ZONE '+08:00', 'YYYY-MM-DD HH24:MI:SS')
                     FROM generate_series({}, {end}) AS n,
                          LATERAL (SELECT timestamptz '2024-03-01 00:00:00+00' + (n % 43200) * interval '1 minute' AS t) AS times",
                    start + 1,
                    start + 1
                );
                store.adhoc().execute(&sql).await.expect("seed Postgres");
            }
            DatabaseBackend::Sqlite => {
                let sql = format!(
                    "WITH RECURSIVE g(n) AS (SELECT {} UNION ALL SELECT n + 1 FROM g WHERE n < {end})
                     INSERT INTO inbox (id, account, data_type, dedup_key, content_sha256, status, first_seen_at, last_seen_at)
                     SELECT n, 'acme', 'ROBOT_CALL_RECORD', 'call:' || n, 'seed' || n, 'stored', '2024-04-01T00:00:00+00:00',
                         '2024-04-01T00:00:00+00:00' FROM g;
                     WITH RECURSIVE g(n) AS (SELECT {} UNION ALL SELECT n + 1 FROM g WHERE n < {end})
                     INSERT INTO call_records (account, call_record_id, tenant_id, robot_call_job_id, called_phone_number,
                         result_status, intent_level, intent_grade, customer_concern, start_time, end_time, chat_duration,
                         chat_round, properties, inbox_id, received_at, updated_at, start_local)
                     SELECT 'acme', n, 1, 1 + n % 100, '138' || (10000000 + n % 90000000),
                         CASE n % 3 WHEN 0 THEN 'ANSWERED' WHEN 1 THEN 'NO_ANSWER' ELSE 'BUSY' END,
                         char(65 + n % 6), char(65 + n % 6),
                         CASE WHEN n % 4 = 0 THEN '[\"价格\",\"位置\"]' ELSE '[]' END,
                         strftime('%Y-%m-%dT%H:%M:%S+00:00', '2024-03-01', '+' || (n % 43200) || ' minutes'),
                         strftime('%Y-%m-%dT%H:%M:%S+00:00', '2024-03-01', '+' || (n % 43200 + 1) || ' minutes'),
                         n % 120, n % 20, '{{\"来源\": \"种子\"}}', n, '2024-04-01T00:00:00+00:00', '2024-04-01T00:00:00+00:00',
                         strftime('%Y-%m-%d %H:%M:%S', '2024-03-01', '+' || (n % 43200 + 480) || ' minutes')
                     FROM g",
                    start + 1,
                    start + 1
                );
                store.adhoc().execute(&sql).await.expect("seed SQLite");
            }
        }
    }
    let after = match store.backend() {
        // The sequence must move past the seeded ids, and the planner needs statistics.
        DatabaseBackend::Postgres => "SELECT setval('inbox_id_seq', (SELECT MAX(id) FROM inbox)); ANALYZE",
        DatabaseBackend::Sqlite => "ANALYZE",
    };
    store.adhoc().execute(after).await.expect("after seeding");
}

fn gauge(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok().map(|v| v as i64))
}

fn percentile(values: &mut [Duration], quantile: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable();
    let index = ((values.len() as f64 * quantile).ceil() as usize).clamp(1, values.len()) - 1;
    values[index].as_secs_f64() * 1000.0
}

fn percent(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.0}%"))
}

fn megabytes(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.0} MB"))
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn machine_notes() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "# Benchmark run {}\n\nMachine: {cores} cores ({cpu}); relay = release binary, simulator and receivers in the bench process on the same cores.",
        Utc::now().format("%Y-%m-%d %H:%M UTC")
    )
}
