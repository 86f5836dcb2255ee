//! The callback routes: find the account, authenticate (a plain key or the encrypted mode's
//! signature), read the body, parse, store, and only then answer `success`.

mod encrypted;
mod error;
pub mod query;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};

pub use error::{plain_error, IngestError};

use crate::account::{Account, Accounts};
use crate::domain::Source;
use crate::intake::Intake;
use crate::metrics::CallbackOutcome;
use crate::telemetry::loggable;

/// What the platform needs to stop retrying: HTTP 200 with exactly this body.
pub const ACK: &str = "success";

#[derive(Clone)]
pub struct IngestState {
    pub accounts: Accounts,
    pub intake: Intake,
    pub body_limit: usize,
    pub body_timeout: std::time::Duration,
}

pub fn routes(state: IngestState) -> Router {
    Router::new().route("/callbacks/{account}", post(receive).get(encrypted::verify_url)).with_state(state)
}

/// One URL serves both modes: a `msg_signature` in the query means the encrypted mode.
async fn receive(
    State(state): State<IngestState>,
    Path(account_name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, IngestError> {
    let started = std::time::Instant::now();
    let result = authenticate_and_accept(&state, &account_name, query.as_deref(), &headers, body).await;
    if let Err(refusal) = &result {
        // Parse and storage outcomes are counted where they are decided, with their dataType.
        if !matches!(refusal, IngestError::Intake(_)) {
            let account = state.accounts.get(&account_name).map_or("-", |a| a.name.as_str());
            state.intake.metrics.callback(account, "-", CallbackOutcome::Refused(refusal.code()));
        }
    }
    state.intake.metrics.ingest_time(started.elapsed());
    result
}

async fn authenticate_and_accept(
    state: &IngestState,
    account_name: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, IngestError> {
    let account = find_account(state, account_name)?;
    if query::param(query, "msg_signature").is_some() {
        return encrypted::receive(state, account, query, headers, body).await;
    }
    let key = query::param(query, "key");
    let authorized = key.as_deref().is_some_and(|given| account.accepts_key(given.as_bytes()));
    if !authorized {
        tracing::warn!(account = %account.name, key_given = key.is_some(), encrypted_mode = account.crypto.is_some(),
            "callback refused: no valid key");
        return Err(IngestError::Unauthorized);
    }
    let body = read_body(headers, body, state.body_limit, state.body_timeout).await?;
    state.intake.accept(account, &body, Source::Push).await?;
    Ok(ack())
}

fn find_account<'a>(state: &'a IngestState, name: &str) -> Result<&'a Account, IngestError> {
    state.accounts.get(name).ok_or_else(|| {
        tracing::warn!(account = %loggable(name), "callback refused: unknown account");
        IngestError::UnknownAccount
    })
}

pub fn ack() -> Response {
    text(ACK.to_owned())
}

fn text(body: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// Reads at most `limit` bytes within `timeout`. A declared length over the limit is refused before
/// reading. Only the reading is timed: once the body is here, storing it is never cut short.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, IngestError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(IngestError::PayloadTooLarge { limit });
    }
    let read = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await.map_err(|_| {
        tracing::warn!("callback body did not arrive in time");
        IngestError::BodyTimeout
    })?;
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(IngestError::PayloadTooLarge { limit }),
        Err(e) => {
            tracing::warn!(error = %e, "callback body could not be read");
            Err(IngestError::BodyUnreadable)
        }
    }
}
