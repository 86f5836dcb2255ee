//! Probes for the load balancer and the orchestrator: `/healthz` (the process answers; no I/O) and
//! `/readyz` (the database answers, its migrations are current, and no shutdown has begun).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::store::Store;

#[derive(Clone)]
pub struct Probes {
    pub store: Store,
    /// Set when shutdown begins, so that the load balancer stops sending traffic here.
    pub draining: Arc<AtomicBool>,
}

pub fn routes(probes: Probes) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(probes)
}

async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

async fn readyz(State(probes): State<Probes>) -> Response {
    let unready = |status: &str| (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": status }))).into_response();
    if probes.draining.load(Ordering::SeqCst) {
        return unready("draining");
    }
    match probes.store.migrations_current().await {
        Ok(true) => Json(json!({ "status": "ready" })).into_response(),
        Ok(false) => unready("migrations_pending"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the database does not answer");
            unready("database_unreachable")
        }
    }
}
