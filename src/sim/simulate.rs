//! The platform pushing a campaign's callbacks to a relay, as it really does: calls (see
//! `traffic`), SMS callbacks for some calls, each job's completion after its calls; plain or encrypted; every
//! callback re-sent on anything but `200 success` following the platform's retry contract (10
//! attempts, 1, 2, 4, 8 … minutes apart, or a compressed version of it). Deterministic traffic for
//! a given seed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::rng::Rng;
use super::traffic;
use crate::platform::crypto::CallbackCrypto;

/// The platform's contract: at most 10 attempts.
const ATTEMPTS: u32 = 10;
#[derive(Debug, Clone)]
pub enum Auth {
    Plain { key: String },
    Encrypted { crypto: CallbackCrypto },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetrySchedule {
    /// 1, 2, 4, 8 … minutes, as the platform does.
    Platform,
    /// The same shape in tens of milliseconds, for tests and benchmarks.
    Compressed,
    /// One attempt only.
    None,
    /// The platform's doubling from another first wait (a 30-second outage needs more patience
    /// than `Compressed` has).
    DoublingFrom(Duration),
}

impl RetrySchedule {
    /// The wait before retry `n` (from 1).
    fn delay(self, n: u32) -> Option<Duration> {
        let doubling = 1u32 << (n - 1).min(16);
        match self {
            RetrySchedule::Platform => Some(Duration::from_secs(60) * doubling),
            RetrySchedule::Compressed => Some(Duration::from_millis(20) * doubling),
            RetrySchedule::None => None,
            RetrySchedule::DoublingFrom(first) => Some(first * doubling),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The callback URL without its query: `http://host/callbacks/<account>`.
    pub url: String,
    pub auth: Auth,
    pub calls: u32,
    pub jobs: u32,
    pub concurrency: usize,
    /// Requests per second at most.
    pub rate: Option<f64>,
    /// Chance (0 to 1) that an acknowledged callback is sent once more, as the platform sometimes does.
    pub duplicates: f64,
    pub seed: u64,
    pub retry: RetrySchedule,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Distinct callbacks in the campaign (calls, SMS, job completions).
    pub callbacks: u64,
    /// HTTP requests sent, re-sends and duplicates included.
    pub requests: u64,
    /// Callbacks answered `200 success`.
    pub acked: u64,
    /// Re-sends after an answer other than `200 success`.
    pub retried: u64,
    /// Callbacks still not acknowledged after the last attempt.
    pub given_up: u64,
    /// Acknowledged callbacks sent once more on purpose.
    pub duplicates_sent: u64,
    pub seconds: f64,
    /// Acknowledged callbacks per second.
    pub throughput: f64,
    pub latency_ms: Latency,
    /// The bodies of the callbacks given up, so that a test can tell which ones were acknowledged.
    #[serde(skip)]
    pub unacknowledged: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// One job of the campaign: its callbacks, then its completion.
pub struct Job {
    pub robot_call_job_id: i64,
    pub callbacks: Vec<String>,
    pub completion: String,
}

/// The campaign for `options` (the same seed gives the same campaign).
pub fn campaign(options: &Options) -> Vec<Job> {
    let jobs = options.jobs.max(1);
    (0..jobs)
        .map(|j| {
            let robot_call_job_id = 9_000 + i64::from(j);
            let calls = options.calls / jobs + u32::from(j < options.calls % jobs);
            let mut callbacks = Vec::new();
            for index in 0..calls {
                let call = traffic::call_record(options.seed, robot_call_job_id, index);
                let sms = traffic::sms_request(options.seed, &call);
                callbacks.push(json!({"dataType": "ROBOT_CALL_RECORD", "data": call}).to_string());
                callbacks.extend(sms.map(|sms| sms.to_string()));
            }
            let completion = json!({"dataType": "ROBOT_CALL_JOB",
                "data": {"robotCallJobId": robot_call_job_id, "tenantId": 1, "status": "COMPLETED"}});
            Job { robot_call_job_id, callbacks, completion: completion.to_string() }
        })
        .collect()
}

struct Sender {
    client: reqwest::Client,
    options: Options,
    slots: Semaphore,
    next_request: tokio::sync::Mutex<Instant>,
    stats: Mutex<Stats>,
}

#[derive(Default)]
struct Stats {
    requests: u64,
    acked: u64,
    retried: u64,
    given_up: u64,
    duplicates_sent: u64,
    latencies: Vec<Duration>,
    unacknowledged: Vec<String>,
}

/// Sends the campaign and reports what happened. Jobs run side by side; a job's completion is sent
/// once all its callbacks were acknowledged or given up, as the platform does.
pub async fn run(options: Options) -> Summary {
    let jobs = campaign(&options);
    let callbacks: u64 = jobs.iter().map(|j| j.callbacks.len() as u64 + 1).sum();
    let client = reqwest::Client::builder().no_proxy().build().expect("an HTTP client with static settings");
    let sender = Arc::new(Sender {
        client,
        slots: Semaphore::new(options.concurrency.max(1)),
        next_request: tokio::sync::Mutex::new(Instant::now()),
        stats: Mutex::new(Stats::default()),
        options,
    });
    let started = Instant::now();
    let mut running = JoinSet::new();
    for job in jobs {
        let sender = sender.clone();
        running.spawn(async move {
            let mut calls = JoinSet::new();
            for (n, body) in job.callbacks.into_iter().enumerate() {
                let sender = sender.clone();
                let duplicate_seed = sender.options.seed ^ (job.robot_call_job_id as u64) << 24 ^ n as u64;
                calls.spawn(async move { sender.deliver(&body, duplicate_seed).await });
            }
            while calls.join_next().await.is_some() {}
            sender.deliver(&job.completion, 0).await;
        });
    }
    while running.join_next().await.is_some() {}
    let seconds = started.elapsed().as_secs_f64();
    let stats = std::mem::take(&mut *sender.stats.lock().unwrap_or_else(|p| p.into_inner()));
    Summary {
        callbacks,
        requests: stats.requests,
        acked: stats.acked,
        retried: stats.retried,
        given_up: stats.given_up,
        duplicates_sent: stats.duplicates_sent,
        seconds,
        throughput: if seconds > 0.0 { stats.acked as f64 / seconds } else { 0.0 },
        latency_ms: latency(stats.latencies),
        unacknowledged: stats.unacknowledged,
    }
}

impl Sender {
    /// One callback until acknowledged or given up; then, by chance, once more as a duplicate.
    async fn deliver(&self, body: &str, duplicate_seed: u64) {
        let mut acked = false;
        for attempt in 1..=ATTEMPTS {
            if self.send(body).await {
                acked = true;
                break;
            }
            let Some(wait) = (attempt < ATTEMPTS).then(|| self.options.retry.delay(attempt)).flatten() else { break };
            self.stats().retried += 1;
            tokio::time::sleep(wait).await;
        }
        if !acked {
            let mut stats = self.stats();
            stats.given_up += 1;
            stats.unacknowledged.push(body.to_owned());
            return;
        }
        self.stats().acked += 1;
        let duplicate = duplicate_seed != 0
            && (Rng::new(duplicate_seed).below(1_000_000) as f64) < self.options.duplicates * 1_000_000.0;
        if duplicate {
            self.stats().duplicates_sent += 1;
            self.send(body).await;
        }
    }

    /// One request; `true` for `200 success`.
    async fn send(&self, body: &str) -> bool {
        self.wait_for_rate().await;
        let Ok(_slot) = self.slots.acquire().await else { return false };
        let request = match &self.options.auth {
            Auth::Plain { key } => {
                let url = format!("{}?key={}", self.options.url, utf8_percent_encode(key, NON_ALPHANUMERIC));
                self.client.post(url).header("content-type", "application/json").body(body.to_owned())
            }
            Auth::Encrypted { crypto } => {
                let timestamp = chrono::Utc::now().timestamp_millis().to_string();
                let mut random = [0u8; 16];
                let _ = getrandom::getrandom(&mut random);
                let nonce = u32::from_le_bytes([random[0], random[1], random[2], random[3]]).to_string();
                let sealed = crypto.seal(body, &timestamp, &nonce, &random);
                let url = format!(
                    "{}?msg_signature={}&timestamp={timestamp}&nonce={nonce}",
                    self.options.url, sealed.msg_signature
                );
                self.client.post(url).header("content-type", "application/xml").body(sealed.xml)
            }
        };
        let clock = Instant::now();
        self.stats().requests += 1;
        let acked = match request.send().await {
            Ok(response) => response.status().is_success() && response.text().await.is_ok_and(|t| t == "success"),
            Err(_) => false,
        };
        if acked {
            self.stats().latencies.push(clock.elapsed());
        }
        acked
    }

    async fn wait_for_rate(&self) {
        let Some(rate) = self.options.rate.filter(|r| *r > 0.0) else { return };
        let wait = {
            let mut next = self.next_request.lock().await;
            let start = (*next).max(Instant::now());
            *next = start + Duration::from_secs_f64(1.0 / rate);
            start.saturating_duration_since(Instant::now())
        };
        tokio::time::sleep(wait).await;
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn latency(mut samples: Vec<Duration>) -> Latency {
    if samples.is_empty() {
        return Latency::default();
    }
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index].as_secs_f64() * 1000.0
    };
    Latency { p50: at(0.50), p90: at(0.90), p99: at(0.99), max: at(1.0) }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn options(seed: u64) -> Options {
        Options {
            url: String::new(),
            auth: Auth::Plain { key: String::new() },
            calls: 300,
            jobs: 3,
            concurrency: 1,
            rate: None,
            duplicates: 0.0,
            seed,
            retry: RetrySchedule::None,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_campaign_and_another_seed_another() {
        let bodies = |seed| campaign(&options(seed)).into_iter().flat_map(|j| j.callbacks).collect::<Vec<_>>();
        assert_eq!(bodies(1), bodies(1));
        assert_ne!(bodies(1), bodies(2));
    }

    #[test]
    fn the_campaign_looks_like_a_real_one() {
        let jobs = campaign(&options(7));
        assert_eq!(jobs.len(), 3);
        let calls: Vec<Value> = jobs
            .iter()
            .flat_map(|j| j.callbacks.iter())
            .map(|b| serde_json::from_str::<Value>(b).unwrap())
            .filter(|b| b["dataType"] == "ROBOT_CALL_RECORD")
            .collect();
        assert_eq!(calls.len(), 300);
        let answered = calls.iter().filter(|c| c["data"]["resultStatus"] == "ANSWERED").count();
        assert!((70..=140).contains(&answered), "about a third answered: {answered}");
        let longest = calls.iter().map(|c| c["data"]["callDetailList"].as_array().unwrap().len()).max().unwrap();
        assert!(longest > 20 && longest <= 40, "{longest}");
        let sms = jobs.iter().flat_map(|j| j.callbacks.iter()).filter(|b| b.contains("ROBOT_CALL_SMS")).count();
        assert!(sms > 0 && sms < answered);
    }

    #[test]
    fn the_platform_schedule_doubles_from_a_minute() {
        assert_eq!(RetrySchedule::Platform.delay(1), Some(Duration::from_secs(60)));
        assert_eq!(RetrySchedule::Platform.delay(4), Some(Duration::from_secs(480)));
        assert_eq!(RetrySchedule::None.delay(1), None);
    }

    #[test]
    fn percentiles_come_from_the_sorted_samples() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let l = latency(samples);
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
    }
}
