//! The router's middleware and the metrics route.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::Semaphore;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::admin;
use crate::ingest::plain_error;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::store::Store;

/// Around every route: request ids, a span per request (the path only: the query string carries
/// the callback key), and JSON answers for unknown paths and methods. No concurrency limit here:
/// the probes and metrics must answer whatever else is going on; callbacks and the admin API have
/// their own limits.
pub(super) fn with_middleware(routes: Router) -> Router {
    routes
        .fallback(|| async { plain_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            plain_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed here")
        })
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
                    tracing::info_span!("request", id, method = %request.method(), path = %request.uri().path())
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(middleware::from_fn(request_id))
}

/// Admin requests handled at once (each may read many rows).
pub(super) const ADMIN_CONCURRENCY: usize = 8;

/// Bounds the requests of `routes` handled at once: beyond the limit the answer is 503 at once
/// instead of queueing.
pub(super) fn limited(routes: Router, limit: usize) -> Router {
    routes.layer(middleware::from_fn_with_state(Arc::new(Semaphore::new(limit)), limit_concurrency))
}

async fn limit_concurrency(State(slots): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    let Ok(_slot) = slots.try_acquire() else {
        tracing::warn!("overloaded: refusing a request");
        let mut refused =
            plain_error(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many requests at once; retry");
        refused.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return refused;
    };
    next.run(request).await
}

/// `GET /metrics`: the figures as last set, and the connection counts as they are now (read from
/// the pool, not the database: a scrape never queries it).
pub(super) fn metrics_route(metrics: Metrics, store: Store, token: Option<Secret>) -> Router {
    Router::new().route("/metrics", get(render_metrics)).with_state((metrics, store, token))
}

type MetricsState = (Metrics, Store, Option<Secret>);

async fn render_metrics(State((metrics, store, token)): State<MetricsState>, headers: HeaderMap) -> Response {
    if token.as_ref().is_some_and(|token| !admin::bearer_matches(token, &headers)) {
        return plain_error(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong bearer token");
    }
    metrics.set_pool_usage(store.pool_usage());
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(axum::http::header::CONTENT_TYPE, content_type)], metrics.render()).into_response()
}

const REQUEST_ID: &str = "x-request-id";

/// Takes the caller's `x-request-id` (when it is short, printable text) or makes one, so that the
/// request's log lines and its answer carry the same id.
async fn request_id(mut request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned);
    let id = given.unwrap_or_else(|| {
        let mut bytes = [0u8; 8];
        let _ = getrandom::getrandom(&mut bytes);
        hex::encode(bytes)
    });
    let value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    request.headers_mut().insert(REQUEST_ID, value.clone());
    let mut response = next.run(request).await;
    response.headers_mut().insert(REQUEST_ID, value);
    response
}
