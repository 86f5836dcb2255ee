//! The hostile soak: while thousands of idle sockets, half and whole HTTP/2 prefaces, slow
//! unauthenticated bodies and a stream of bad callbacks hit the real binary, a campaign of real
//! callbacks (plain and encrypted) is acknowledged, stored and delivered once each, `/healthz`
//! answers within 100 ms at every sample, memory stays under the documented bound and no file
//! descriptor runs out. A binary of its own: it measures time, so it runs alone.
//!
//! The sizes come from SOAK_* variables (`scripts/reliability` runs it larger; docs/RELIABILITY.md).
//!
//! Its own `main` (no libtest harness): the idle sockets are held by child processes of this same
//! binary, so that the attacker's sockets do not count against the file limit of the process that
//! also runs the campaign (20,000 sockets are more than one process may open on some machines).

#[path = "it/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::ledger::*;
use common::process::RelayProcess;
use common::receiver::{Behaviour, Receiver};
use common::{databases, ACCOUNT, KEY};
use tanyi_relay::config::Settings;
use tanyi_relay::sim::simulate::{self, Auth, Options, RetrySchedule};

/// Keeps `count` connections open that never send anything, opening new ones as the relay closes
/// them, until `stop`.
async fn idle_sockets(addr: String, count: usize, payload: &'static [u8], stop: tokio::sync::watch::Receiver<bool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut held = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (addr, mut stop) = (addr.clone(), stop.clone());
        held.spawn(async move {
            while !*stop.borrow() {
                let Ok(mut socket) = tokio::net::TcpStream::connect(&addr).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let _ = socket.write_all(payload).await;
                let mut buffer = [0u8; 256];
                tokio::select! {
                    _ = async { while socket.read(&mut buffer).await.is_ok_and(|n| n > 0) {} } => {}
                    _ = stop.changed() => {}
                }
                // A pause before reconnecting: a real attacker spends its own machine's CPU, not the
                // one the relay runs on, as every task here would in a tight loop.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    while held.join_next().await.is_some() {}
}

/// Sends encrypted-mode POSTs (not yet authenticated: the body is needed for that) a byte a
/// second, reconnecting when the relay gives up on one.
async fn slow_unauthenticated_posts(addr: String, count: usize, stop: tokio::sync::watch::Receiver<bool>) {
    use tokio::io::AsyncWriteExt;
    let mut posts = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (addr, stop) = (addr.clone(), stop.clone());
        posts.spawn(async move {
            while !*stop.borrow() {
                let Ok(mut socket) = tokio::net::TcpStream::connect(&addr).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let head = "POST /callbacks/secure?msg_signature=x&timestamp=1&nonce=1 HTTP/1.1\r\nHost: r\r\n\
                            Content-Length: 100000\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    continue;
                }
                while !*stop.borrow() && socket.write_all(b"<").await.is_ok() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    while posts.join_next().await.is_some() {}
}

/// Posts oversized and malformed callbacks (with the right key) one after the other.
async fn bad_callbacks(url: String, mut stop: tokio::sync::watch::Receiver<bool>) -> u64 {
    let client = common::client();
    let oversized = format!("{{\"dataType\":\"ROBOT_CALL_RECORD\",\"data\":{{\"x\":\"{}\"}}}}", "y".repeat(300_000));
    let too_many = format!(
        r#"{{"dataType":"ROBOT_CALL_RECORD","data":{{"callRecordId":1,"callDetailList":[{}]}}}}"#,
        vec!["{}"; 30_000].join(",")
    );
    let bodies =
        [oversized, too_many, "{not json".to_owned(), r#"{"dataType":"ROBOT_CALL_RECORD","data":{}}"#.to_owned()];
    let mut sent = 0;
    while !*stop.borrow() {
        let body = bodies[sent as usize % bodies.len()].clone();
        tokio::select! {
            _ = client.post(&url).body(body).send() => sent += 1,
            _ = stop.changed() => {}
        }
    }
    sent
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// Lowers the calling thread's CPU priority to the least (nice 19). On Linux the nice value is per
/// thread and inherited by the threads and processes it creates.
fn run_at_lowest_priority() {
    // SAFETY: setpriority has no memory effects; `0` names the calling thread (Linux semantics).
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
}

fn nice_of(pid: u32) -> i32 {
    // SAFETY: as above; getpriority only reads.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, pid) }
}

/// The attack and the campaign run at the lowest CPU priority on worker threads of their own: in
/// production they come from other machines, here they share two cores with the relay, and a
/// busy attacker would otherwise delay the probe (and the relay) with CPU it does not have there.
/// The relay and the probe keep normal priority; the relay still serves every attacking socket.
/// Set in a child that holds idle sockets: `ADDRESS COUNT`.
const HOLDER: &str = "TANYI_SOAK_HOLD_IDLE_SOCKETS";
/// Idle sockets per holder process.
const PER_HOLDER: usize = 8000;

fn main() {
    if let Ok(spec) = std::env::var(HOLDER) {
        hold_idle_sockets(&spec);
        return;
    }
    println!("\nrunning 1 test");
    under_a_hostile_load_every_real_callback_is_stored_and_delivered_and_the_probes_answer();
    println!("test under_a_hostile_load_every_real_callback_is_stored_and_delivered_and_the_probes_answer ... ok");
}

/// A holder: keeps its share of idle sockets open, at the lowest priority, until its parent closes
/// its standard input (the soak ended, or the parent died).
fn hold_idle_sockets(spec: &str) {
    run_at_lowest_priority();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (addr, count) = spec.split_once(' ').expect("ADDRESS COUNT");
    let (addr, count) = (addr.to_owned(), count.parse().expect("a count"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let held = tokio::spawn(idle_sockets(addr, count, b"", stopped));
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await;
        let _ = stop.send(true);
        let _ = held.await;
    });
}

/// The holder processes of `count` idle sockets; dropping them ends them.
struct IdleHolders(Vec<Child>);

impl IdleHolders {
    fn start(addr: &str, count: usize) -> IdleHolders {
        let mut holders = Vec::new();
        let mut left = count;
        while left > 0 {
            let share = left.min(PER_HOLDER);
            let child = Command::new(std::env::current_exe().unwrap())
                .env(HOLDER, format!("{addr} {share}"))
                .stdin(Stdio::piped())
                .spawn()
                .expect("a holder of idle sockets");
            holders.push(child);
            left -= share;
        }
        IdleHolders(holders)
    }
}

impl Drop for IdleHolders {
    fn drop(&mut self) {
        for child in &mut self.0 {
            drop(child.stdin.take());
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

fn under_a_hostile_load_every_real_callback_is_stored_and_delivered_and_the_probes_answer() {
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .on_thread_start(run_at_lowest_priority)
        .enable_all()
        .build()
        .unwrap();
    // The test's own thread (normal priority) starts the relay and the probe; the rest is spawned.
    load.block_on(soak(load.handle().clone()));
}

async fn soak(load: tokio::runtime::Handle) {
    let idle = size("SOAK_IDLE_SOCKETS", 2000) as usize;
    let prefaces = size("SOAK_PREFACES", 200) as usize;
    let slow = size("SOAK_SLOW_POSTS", 600) as usize;
    let calls = size("SOAK_CALLS", 300);
    // The relay's connection cap, when the run sets one (the default closes the oldest idle
    // connection beyond 4096; docs/HTTP.md).
    let relay_env: Vec<(String, String)> = std::env::var("SOAK_MAX_CONNECTIONS")
        .map(|cap| vec![("TANYI_RELAY__SERVER__MAX_CONNECTIONS".to_owned(), cap)])
        .unwrap_or_default();
    // Room for the sockets of this process (the idle ones are the holders').
    let wanted = (2 * prefaces + slow) as u64 * 2 + 4096;
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if soft < wanted {
        let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, wanted.max(soft), wanted.max(hard));
    }
    for db in databases().await {
        let dir = tempfile::tempdir().unwrap();
        let receiver = Receiver::start(Behaviour::Accept).await;
        let crypto = tanyi_relay::platform::crypto::CallbackCrypto::new(SOAK_TOKEN, SOAK_AES_KEY, "").unwrap();
        let config = format!(
            "{}\n[[accounts]]\nname = \"secure\"\ntoken = \"{SOAK_TOKEN}\"\nencoding_aes_key = \"{SOAK_AES_KEY}\"\n",
            config(&db.url, &receiver, "")
        );
        let relay_env: Vec<(&str, &str)> = relay_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut relay = RelayProcess::start_with_env(dir.path(), "relay", &config, &relay_env).await;
        assert_eq!(nice_of(relay.pid()), nice_of(0), "the relay runs at the test's own priority");
        let addr = relay.base.trim_start_matches("http://").to_owned();
        // The bound of the relay's own settings.
        let relay_settings: HashMap<String, String> =
            relay_env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let holders = IdleHolders::start(&addr, idle);
        let settings = Settings::from_sources(None, relay_settings).unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut attacks = tokio::task::JoinSet::new();
        attacks.spawn_on(idle_sockets(addr.clone(), prefaces, b"PRI * HTT", stopped.clone()), &load);
        let whole_preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        attacks.spawn_on(idle_sockets(addr.clone(), prefaces, whole_preface, stopped.clone()), &load);
        attacks.spawn_on(slow_unauthenticated_posts(addr.clone(), slow, stopped.clone()), &load);
        let bad_url = format!("{}?key={KEY}", relay.callback_url(ACCOUNT));
        let bad = load.spawn(bad_callbacks(bad_url, stopped.clone()));
        // Let the attack build up (3000 connects at once) before the probe and the real traffic start;
        // it keeps reconnecting all through the run.
        tokio::time::sleep(Duration::from_secs(2)).await;
        // The probe, sampled every 100 ms on a fresh connection each time, as a kubelet does. On a
        // thread and runtime of its own, so that the attack's tasks in this process do not delay it.
        let probe = {
            let (url, pid, mut stopped) = (format!("{}/healthz", relay.base), relay.pid(), stopped.clone());
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            std::thread::spawn(move || {
                runtime.block_on(async move {
                    let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap();
                    let (mut samples, mut slow_or_failed, mut peak_rss, mut slowest) =
                        (0u64, Vec::new(), 0u64, Duration::ZERO);
                    while !*stopped.borrow() {
                        let started = Instant::now();
                        let answer = tokio::time::timeout(Duration::from_secs(2), client.get(&url).send()).await;
                        let took = started.elapsed();
                        samples += 1;
                        slowest = slowest.max(took);
                        if !matches!(&answer, Ok(Ok(r)) if r.status().is_success()) || took > Duration::from_millis(100)
                        {
                            slow_or_failed.push(took);
                        }
                        peak_rss = peak_rss.max(rss_bytes(pid).unwrap_or(0));
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(100).saturating_sub(took)) => {}
                            _ = stopped.changed() => {}
                        }
                    }
                    (samples, slow_or_failed, peak_rss, slowest)
                })
            })
        };
        // The campaign is paced to last about ten seconds (at most 200 callbacks a second per
        // account), so that the probe samples the relay under attack long enough to mean something.
        let rate = (calls as f64 / 2.0 / 10.0).clamp(5.0, 200.0);
        let plain = Options {
            concurrency: 16,
            ..campaign(relay.callback_url(ACCOUNT), calls / 2, rate, RetrySchedule::Compressed)
        };
        let encrypted = Options {
            auth: Auth::Encrypted { crypto },
            seed: 9,
            ..campaign(relay.callback_url("secure"), calls - calls / 2, rate, RetrySchedule::Compressed)
        };
        let (plain_run, encrypted_run) =
            (load.spawn(simulate::run(plain.clone())), load.spawn(simulate::run(encrypted.clone())));
        let (plain_summary, encrypted_summary) = (plain_run.await.unwrap(), encrypted_run.await.unwrap());
        let store = connect(&db.url).await;
        wait_all_delivered(&store, &receiver, Duration::from_secs(60)).await;
        let _ = stop.send(true);
        let (samples, slow_or_failed, peak_rss, slowest) = probe.join().unwrap();
        let refused = bad.await.unwrap();
        while attacks.join_next().await.is_some() {}
        drop(holders);
        let plain_tally = reckon_account(&store, ACCOUNT, &plain, &plain_summary, &receiver).await;
        let encrypted_tally = reckon_account(&store, "secure", &encrypted, &encrypted_summary, &receiver).await;
        plain_tally.print("hostile soak, plain callbacks", db.backend);
        encrypted_tally.print("hostile soak, encrypted callbacks", db.backend);
        let bound = settings.memory_bound_bytes();
        println!(
            "hostile soak ({:?}): {idle} idle sockets, {prefaces} partial and {prefaces} whole HTTP/2 prefaces, {slow} slow \
             unauthenticated posts, {refused} bad callbacks; /healthz {samples} samples, slowest {slowest:.1?}, {} over 100 ms or failed; \
             peak RSS {} MiB (bound {} MiB)",
            db.backend,
            slow_or_failed.len(),
            peak_rss >> 20,
            bound >> 20
        );
        for (tally, summary) in [(&plain_tally, &plain_summary), (&encrypted_tally, &encrypted_summary)] {
            assert_nothing_lost(tally, summary);
            assert_eq!(tally.acked, tally.sent, "every callback acknowledged: {summary:?}");
            assert_eq!(tally.duplicates_delivered, 0, "an event delivered twice: {tally:?}");
        }
        assert!(slow_or_failed.is_empty(), "/healthz over 100 ms or failing: {slow_or_failed:?} of {samples}");
        assert!(peak_rss > 0 && peak_rss < bound, "peak RSS {peak_rss} over the documented bound {bound}");
        let log = relay.log();
        assert!(!log.contains("Too many open files"), "the relay ran out of file descriptors");
        relay.terminate().await;
        store.close().await;
    }
}

const SOAK_TOKEN: &str = "soakToken01";
const SOAK_AES_KEY: &str = "TxJdJ48RbWK4Ad0Apejh4pjb0toqUoz/Ngu1m7CoL6A";
