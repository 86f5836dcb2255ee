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
use bytes::BytesMut;
use http_body_util::{BodyExt, LengthLimitError, Limited};

pub use encrypted::{MAX_ECHOSTR_CHARS, MAX_ECHO_BYTES, URL_CHECK_WINDOW_SECS};
pub use error::{plain_error, IngestError};

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::account::{Account, Accounts};
use crate::config::ServerSettings;
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
    pub body_timeout: Duration,
    pub unauthenticated_body_timeout: Duration,
    /// Authenticated callbacks being handled: the budget of real traffic.
    authenticated: Arc<Semaphore>,
    /// The bytes of bodies read before they can be authenticated: a budget of their own,
    /// charged as the bytes arrive, so that a flood of such requests takes neither the slots of
    /// authenticated traffic nor more memory than this (a body trickled a byte a second costs
    /// nothing, and real ones of a few kilobytes still get through).
    unauthenticated_bytes: Arc<Semaphore>,
}

impl IngestState {
    pub fn new(server: &ServerSettings, accounts: Accounts, intake: Intake) -> IngestState {
        IngestState {
            accounts,
            intake,
            body_limit: server.body_limit_bytes,
            body_timeout: server.body_timeout,
            unauthenticated_body_timeout: server.unauthenticated_body_timeout,
            authenticated: Arc::new(Semaphore::new(server.max_concurrent_requests)),
            unauthenticated_bytes: Arc::new(Semaphore::new(server.unauthenticated_body_budget_bytes)),
        }
    }

    /// A slot of authenticated work, or `Overloaded` at once (the platform retries).
    fn authenticated_slot(&self) -> Result<OwnedSemaphorePermit, IngestError> {
        self.authenticated.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!("overloaded: refusing an authenticated callback");
            IngestError::Overloaded
        })
    }

    /// Reads a body that authenticates itself (encrypted mode), within the unauthenticated budget
    /// and deadline. The budget's share is held until the returned permit is dropped.
    async fn read_unauthenticated_body(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(Bytes, Option<OwnedSemaphorePermit>), IngestError> {
        check_declared_length(headers, self.body_limit)?;
        let (limit, budget) = (self.body_limit, self.unauthenticated_bytes.clone());
        let read = async move {
            let mut body = body;
            let mut received = BytesMut::new();
            let mut held: Option<OwnedSemaphorePermit> = None;
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame.map_err(|_| IngestError::BodyUnreadable)?.into_data() else { continue };
                if received.len() + data.len() > limit {
                    return Err(IngestError::PayloadTooLarge { limit });
                }
                received.extend_from_slice(&data);
                if !data.is_empty() {
                    // The body is at most `limit` long, so a chunk's length fits a permit count.
                    let more = budget.clone().try_acquire_many_owned(data.len() as u32).map_err(|_| {
                        tracing::warn!("overloaded: the budget of bodies not yet authenticated is spent");
                        IngestError::Overloaded
                    })?;
                    match held.as_mut() {
                        Some(permit) => permit.merge(more),
                        None => held = Some(more),
                    }
                }
            }
            Ok((received.freeze(), held))
        };
        tokio::time::timeout(self.unauthenticated_body_timeout, read).await.map_err(|_| {
            tracing::warn!("a body not yet authenticated did not arrive in time");
            IngestError::BodyTimeout
        })?
    }
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
    let _slot = state.authenticated_slot()?;
    let body = read_body(headers, body, state.body_limit, state.body_timeout).await?;
    state.intake.accept(account, &body, Source::Push).await?;
    Ok(ack())
}

/// An unknown account is answered as a wrong key is: from outside the two look the same (the log
/// says which).
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

/// A declared length over the limit is refused before anything is read.
fn check_declared_length(headers: &HeaderMap, limit: usize) -> Result<(), IngestError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => Err(IngestError::PayloadTooLarge { limit }),
        _ => Ok(()),
    }
}

/// Reads at most `limit` bytes within `timeout`. A declared length over the limit is refused before
/// reading. Only the reading is timed: once the body is here, storing it is never cut short.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize, timeout: Duration) -> Result<Bytes, IngestError> {
    check_declared_length(headers, limit)?;
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
