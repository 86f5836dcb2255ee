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
use crate::fanout::event::announce;
use crate::fanout::worker::Wake;
use crate::fanout::Targets;
use crate::metrics::Metrics;
use crate::platform::callback::{parse_callback, Callback, Event};
use crate::store::{Ingested, PendingCallback, Received, Source, Store, StoreError};
use crate::telemetry::{loggable, mask_phone};

/// What the platform needs to stop retrying: HTTP 200 with exactly this body.
pub const ACK: &str = "success";

#[derive(Clone)]
pub struct IngestState {
    pub accounts: Accounts,
    pub intake: Intake,
    pub body_limit: usize,
    pub body_timeout: std::time::Duration,
}

/// Where authenticated callback bodies go, pushed or fetched back: the store, with the targets
/// whose outbox rows are written in the same transaction, and the worker to wake after commit.
#[derive(Clone)]
pub struct Intake {
    pub store: Store,
    pub targets: Targets,
    pub wake: Wake,
    pub metrics: Metrics,
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
        if !matches!(refusal, IngestError::Parse(_) | IngestError::Storage(_)) {
            let account = state.accounts.get(&account_name).map_or("-", |a| a.name.as_str());
            state.intake.metrics.callback(account, "-", refusal.code());
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
    let authorized = match (&account.plain_key, key.as_deref()) {
        (Some(expected), Some(given)) => expected.matches(given.as_bytes()),
        _ => false,
    };
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

/// Keeps the raw body of an authenticated request that cannot become data (so that an operator
/// can look at it and reprocess it after a fix), then returns the refusal.
async fn reject(store: &Store, account: &Account, body: &[u8], problem: IngestError) -> IngestError {
    let received = Received::now(&account.name, body, Source::Push);
    if let Err(e) = store.record_rejected(&received, &problem.to_string()).await {
        tracing::error!(account = %account.name, error = %e, "could not keep a rejected callback");
        return IngestError::Storage(e);
    }
    tracing::warn!(account = %account.name, problem = %problem, "callback rejected, raw body kept");
    problem
}

impl Intake {
    pub fn new(store: Store, targets: Targets, wake: Wake, metrics: Metrics) -> Intake {
        Intake { store, targets, wake, metrics }
    }

    /// The one store path for an authenticated callback body, pushed or fetched back: parse,
    /// store (raw, normalized and outbox, one transaction), wake the deliveries, report. A body
    /// that does not parse is still kept raw.
    pub async fn accept(&self, account: &Account, body: &[u8], source: Source) -> Result<Ingested, IngestError> {
        let count = |data_type: &str, outcome: &str| {
            // Metrics count callbacks; backfilled calls are not callbacks.
            if source == Source::Push {
                self.metrics.callback(&account.name, data_type, outcome);
            }
        };
        let callback = match parse_callback(body, account.utc_offset) {
            Ok(callback) => callback,
            Err(problem) => {
                let refusal = reject(&self.store, account, body, problem.into()).await;
                count("-", refusal.code());
                return Err(refusal);
            }
        };
        let data_type = match callback.event {
            Event::Unrecognized => "other".to_owned(),
            _ => callback.data_type.clone(),
        };
        let unavailable = |error: StoreError| {
            tracing::error!(account = %account.name, data_type = %loggable(&data_type), error = %error,
                "could not store callback; answering 503 so that the platform retries");
            count(&data_type, "storage_unavailable");
            IngestError::Storage(error)
        };
        let (targets, account_name) = (self.targets.clone(), account.name.clone());
        let announce_event =
            Box::new(move |callback: &Callback, outcome, at| announce(&targets, &account_name, callback, outcome, at));
        let pending = PendingCallback::now(&account.name, body, source, callback, announce_event);
        let stored = self.store.store_callback(pending).await;
        let Some((callback, result)) = stored else {
            return Err(unavailable(StoreError::Shared("the storing task failed".into())));
        };
        let (outcome, outbound) = result.map_err(unavailable)?;
        count(
            &data_type,
            match outcome {
                Ingested::Created => "stored",
                Ingested::Changed => "updated",
                Ingested::Duplicate => "duplicate",
                Ingested::Unrecognized => "unrecognized",
            },
        );
        if let Some(outbound) = &outbound {
            self.wake.targets(&outbound.targets);
        }
        log_stored(account, &callback, outcome, source);
        Ok(outcome)
    }
}

fn log_stored(account: &Account, callback: &Callback, outcome: Ingested, source: Source) {
    match &callback.event {
        Event::CallRecord(call) => tracing::info!(
            account = %account.name, call_record_id = call.call_record_id,
            phone = %call.called_phone_number.as_deref().map(mask_phone).unwrap_or_default(),
            outcome = ?outcome, source = source.as_str(), "call record stored"
        ),
        Event::JobCompleted(job) => tracing::info!(
            account = %account.name, robot_call_job_id = job.robot_call_job_id, outcome = ?outcome,
            "job completion stored"
        ),
        Event::Sms(sms) => tracing::info!(
            account = %account.name, call_record_id = sms.call_record_id, messages = sms.messages.len(),
            outcome = ?outcome, "sms request stored"
        ),
        Event::Unrecognized => tracing::warn!(
            account = %account.name, data_type = %loggable(&callback.data_type),
            "unrecognized dataType kept raw and acknowledged"
        ),
    }
}
