//! A downstream webhook receiver on loopback: checks every signature with an independent
//! implementation (the `standardwebhooks` crate), answers as told, and records everything.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const OTHER_SECRET: &str = "whsec_aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ=";

#[derive(Debug, Clone)]
pub enum Behaviour {
    Accept,
    /// Answer `status` (with `Retry-After` seconds, if given) to the first `count` requests.
    FailFirst {
        count: usize,
        status: u16,
        retry_after: Option<u64>,
    },
    AlwaysFail(u16),
    /// Hold every request this long before answering 200.
    Slow(Duration),
    /// Answer 307 with this `Location`.
    Redirect(String),
}

#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    pub id: String,
    pub body: Value,
    pub headers: HeaderMap,
    /// Whether the signature verified with the receiver's secret.
    pub verified: bool,
    pub answered: u16,
}

struct Shared {
    secrets: Vec<String>,
    behaviour: Mutex<Behaviour>,
    requests: Mutex<Vec<Request>>,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
}

impl Receiver {
    pub async fn start(behaviour: Behaviour) -> Receiver {
        Self::start_with_secrets(behaviour, &[SECRET]).await
    }

    /// `secrets`: each is checked on its own; a request counts as verified when all verify.
    pub async fn start_with_secrets(behaviour: Behaviour, secrets: &[&str]) -> Receiver {
        let shared = Arc::new(Shared {
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            behaviour: Mutex::new(behaviour),
            requests: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = Router::new().route("/hook", post(receive)).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, shared }
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = behaviour;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn delivered(&self) -> Vec<Request> {
        self.requests().into_iter().filter(|r| (200..300).contains(&r.answered)).collect()
    }

    /// Waits until `count` requests were answered 2xx, or fails after `limit`.
    pub async fn wait_delivered(&self, count: usize, limit: Duration) -> Vec<Request> {
        let start = Instant::now();
        loop {
            let delivered = self.delivered();
            if delivered.len() >= count {
                return delivered;
            }
            assert!(start.elapsed() < limit, "only {} of {count} deliveries arrived within {limit:?}", delivered.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `count` requests arrived, answered or not.
    pub async fn wait_requests(&self, count: usize, limit: Duration) -> Vec<Request> {
        let start = Instant::now();
        loop {
            let all = self.requests();
            if all.len() >= count {
                return all;
            }
            assert!(start.elapsed() < limit, "only {} of {count} requests arrived within {limit:?}", all.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let verified = shared
        .secrets
        .iter()
        .all(|secret| standardwebhooks::Webhook::new(secret).expect("test secret").verify(&body, &headers).is_ok());
    let earlier = shared.requests.lock().unwrap().len();
    let behaviour = shared.behaviour.lock().unwrap().clone();
    let location = match &behaviour {
        Behaviour::Redirect(to) => Some(to.clone()),
        _ => None,
    };
    let (status, retry_after) = match behaviour {
        Behaviour::Accept => (200, None),
        Behaviour::FailFirst { count, status, retry_after } if earlier < count => (status, retry_after),
        Behaviour::FailFirst { .. } => (200, None),
        Behaviour::AlwaysFail(status) => (status, None),
        Behaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            (200, None)
        }
        Behaviour::Redirect(_) => (307, None),
    };
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    shared.requests.lock().unwrap().push(Request {
        at: Instant::now(),
        id,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        headers,
        verified,
        answered: status,
    });
    let mut response = (StatusCode::from_u16(status).unwrap(), "answer from the test receiver").into_response();
    if let Some(location) = location {
        response.headers_mut().insert("location", location.parse().unwrap());
    }
    if let Some(seconds) = retry_after {
        response.headers_mut().insert("retry-after", seconds.to_string().parse().unwrap());
    }
    response
}
