//! The operator API under `/admin`: list events and deliveries, show one with its attempts,
//! replay; jobs' completeness; erasure of a person's data and its log. Bearer-token protected;
//! absent (404) when no token is configured.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use std::sync::Arc;

use crate::account::Accounts;
use crate::completeness::Completeness;
use crate::domain::{DeliveryStatus, EventType};
use crate::erasure::{ErasureError, ErasureRequest, PhoneNumber};
use crate::fanout::worker::Wake;
use crate::intake::Intake;
use crate::secret::Secret;
use crate::store::{DeliveryFilter, EventFilter, Store, StoreError};

#[derive(Clone)]
pub struct AdminState {
    pub token: Secret,
    pub store: Store,
    pub wake: Wake,
    pub intake: Intake,
    pub accounts: Accounts,
    pub completeness: Arc<Completeness>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error("storage unavailable: {0}")]
    Storage(#[from] StoreError),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            AdminError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AdminError::Storage(e) => {
                tracing::error!(error = %e, "admin request failed on storage");
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
            }
        };
        let message = match &self {
            AdminError::Storage(_) => "storage unavailable; retry later".to_owned(),
            other => other.to_string(),
        };
        (status, Json(json!({ "error": code, "message": message }))).into_response()
    }
}

pub fn routes(state: AdminState) -> Router {
    Router::new()
        .route("/admin/events", get(list_events))
        .route("/admin/deliveries", get(list_deliveries))
        .route("/admin/deliveries/{id}", get(show_delivery))
        .route("/admin/deliveries/{id}/replay", post(replay_delivery))
        .route("/admin/targets/{target}/replay", post(replay_target))
        .route("/admin/jobs/{account}/completeness", get(list_completeness))
        .route("/admin/jobs/{account}/{job_id}/completeness", get(show_completeness))
        .route("/admin/erasures", get(list_erasures).post(create_erasure))
        .with_state(state)
}

impl From<ErasureError> for AdminError {
    fn from(error: ErasureError) -> AdminError {
        match error {
            ErasureError::UnknownAccount => AdminError::NotFound("no such account"),
            ErasureError::InvalidPhone => AdminError::BadRequest(error.to_string()),
            ErasureError::Store(e) => AdminError::Storage(e),
        }
    }
}

fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), AdminError> {
    if bearer_matches(&state.token, headers) {
        Ok(())
    } else {
        Err(AdminError::Unauthorized)
    }
}

/// Whether `Authorization: Bearer …` carries `token` (compared in constant time).
pub fn bearer_matches(token: &Secret, headers: &HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    token.matches(given.as_bytes())
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    account: Option<String>,
    target: Option<String>,
    status: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    event_id: Option<String>,
    since: Option<String>,
    limit: Option<i64>,
}

fn since(text: Option<&str>) -> Result<Option<DateTime<Utc>>, AdminError> {
    text.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| AdminError::BadRequest(format!("since: `{t}` is not an RFC 3339 time")))
    })
    .transpose()
}

fn status(text: Option<&str>) -> Result<Option<DeliveryStatus>, AdminError> {
    text.map(|t| t.parse().map_err(|_| AdminError::BadRequest("status: must be pending, delivered or dead".into())))
        .transpose()
}

fn event_type(text: Option<&str>) -> Result<Option<EventType>, AdminError> {
    text.map(|t| {
        EventType::parse(t).ok_or_else(|| {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            AdminError::BadRequest(format!("type: must be one of {}", known.join(", ")))
        })
    })
    .transpose()
}

/// One delivery with every attempt and its event's payload, as operators look at it.
pub async fn delivery_detail(store: &Store, id: i64) -> Result<Option<serde_json::Value>, StoreError> {
    let filter = DeliveryFilter { id: Some(id), ..Default::default() };
    let Some(delivery) = store.deliveries(&filter).await?.pop() else { return Ok(None) };
    let attempts = store.delivery_attempts(id).await?;
    let event = store.events(&EventFilter { id: Some(delivery.event_id.clone()), ..Default::default() }).await?;
    let payload = event.into_iter().next().map(|e| e.payload.0);
    Ok(Some(json!({ "delivery": delivery, "attempts": attempts, "payload": payload })))
}

fn limit(value: Option<i64>) -> Result<Option<i64>, AdminError> {
    match value {
        Some(n) if !(1..=1000).contains(&n) => Err(AdminError::BadRequest("limit: must be 1 to 1000".into())),
        other => Ok(other),
    }
}

async fn list_events(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, AdminError> {
    authorize(&state, &headers)?;
    let filter = EventFilter {
        id: query.event_id,
        account: query.account,
        event_type: event_type(query.event_type.as_deref())?,
        since: since(query.since.as_deref())?,
        limit: limit(query.limit)?,
    };
    Ok(Json(state.store.events(&filter).await?).into_response())
}

async fn list_deliveries(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, AdminError> {
    authorize(&state, &headers)?;
    let filter = DeliveryFilter {
        id: None,
        target: query.target,
        status: status(query.status.as_deref())?,
        event_type: event_type(query.event_type.as_deref())?,
        event_id: query.event_id,
        since: since(query.since.as_deref())?,
        limit: limit(query.limit)?,
    };
    Ok(Json(state.store.deliveries(&filter).await?).into_response())
}

async fn show_delivery(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, AdminError> {
    authorize(&state, &headers)?;
    let detail = delivery_detail(&state.store, id).await?.ok_or(AdminError::NotFound("no such delivery"))?;
    Ok(Json(detail).into_response())
}

async fn replay_delivery(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, AdminError> {
    authorize(&state, &headers)?;
    let filter = DeliveryFilter { id: Some(id), ..Default::default() };
    let delivery = state.store.deliveries(&filter).await?.pop().ok_or(AdminError::NotFound("no such delivery"))?;
    let replayed = state.store.replay(&filter, Utc::now()).await?;
    state.wake.targets([&delivery.target]);
    tracing::info!(delivery = id, target = %delivery.target, replayed, "replay requested");
    Ok(Json(json!({ "replayed": replayed })).into_response())
}

#[derive(Debug, Deserialize)]
struct ReplayQuery {
    since: Option<String>,
    /// `dead` (default) or `delivered`.
    status: Option<String>,
}

async fn replay_target(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(target): Path<String>,
    Query(query): Query<ReplayQuery>,
) -> Result<Response, AdminError> {
    authorize(&state, &headers)?;
    let status = match query.status.as_deref().unwrap_or("dead") {
        "dead" => DeliveryStatus::Dead,
        "delivered" => DeliveryStatus::Delivered,
        _ => return Err(AdminError::BadRequest("status: must be dead or delivered".into())),
    };
    let filter = DeliveryFilter {
        target: Some(target.clone()),
        status: Some(status),
        since: since(query.since.as_deref())?,
        ..Default::default()
    };
    let replayed = state.store.replay(&filter, Utc::now()).await?;
    state.wake.targets([&target]);
    tracing::info!(%target, replayed, "replay of a target requested");
    Ok(Json(json!({ "replayed": replayed })).into_response())
}

fn known_account(state: &AdminState, account: &str) -> Result<(), AdminError> {
    state.accounts.get(account).map(|_| ()).ok_or(AdminError::NotFound("no such account"))
}

async fn list_completeness(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Response, AdminError> {
    authorize(&state, &headers)?;
    known_account(&state, &account)?;
    let jobs = state.completeness.jobs(&account, limit(query.limit)?.unwrap_or(100)).await?;
    Ok(Json(jobs).into_response())
}

async fn show_completeness(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path((account, job_id)): Path<(String, i64)>,
) -> Result<Response, AdminError> {
    authorize(&state, &headers)?;
    known_account(&state, &account)?;
    match state.completeness.job(&account, job_id).await? {
        Some(job) => Ok(Json(job).into_response()),
        None => Err(AdminError::NotFound("nothing is known about this job")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErasureBody {
    account: String,
    phone_number: String,
    #[serde(default)]
    dry_run: bool,
}

async fn create_erasure(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AdminError> {
    authorize(&state, &headers)?;
    let body: ErasureBody = serde_json::from_slice(&body)
        .map_err(|_| AdminError::BadRequest("expected {\"account\", \"phone_number\", \"dry_run\"?}".into()))?;
    let request = ErasureRequest {
        phone_number: PhoneNumber::parse(&body.phone_number)?,
        account: body.account,
        requested_by: "admin-api".to_owned(),
        dry_run: body.dry_run,
    };
    let report = crate::erasure::erase(&state.intake, &state.accounts, &request).await?;
    let status = if report.dry_run { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(report)).into_response())
}

async fn list_erasures(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, AdminError> {
    authorize(&state, &headers)?;
    let entries = state.store.erasures(query.account.as_deref(), limit(query.limit)?.unwrap_or(100)).await?;
    Ok(Json(entries).into_response())
}
