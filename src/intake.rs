//! The application service every authenticated callback body goes through, pushed by the platform
//! or fetched back from its API: parse it, store it (raw, normalized and its outbox rows, in one
//! transaction), wake the deliveries it added, count and log it. A body that does not parse is
//! still kept raw, as rejected. The HTTP routes, reconciliation and `reprocess` all use this one
//! path.

use crate::account::Account;
use crate::domain::{Ingested, Source};
use crate::fanout::envelope::announcements;
use crate::fanout::worker::Wake;
use crate::fanout::Targets;
use crate::metrics::{CallbackOutcome, Metrics};
use crate::platform::callback::{parse_callback, Callback, Event, ParseError};
use crate::store::{storable_now, PendingCallback, Store, StoreError};
use crate::telemetry::{loggable, mask_phone};

/// Why a body did not become stored data.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// Not a callback we can store as data; the raw body is kept as rejected.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// Not stored (the platform retries).
    #[error("storage unavailable: {0}")]
    Storage(#[from] StoreError),
}

impl IntakeError {
    /// The stable code of this refusal, in answers and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            IntakeError::Parse(ParseError::NotJson(_)) => "invalid_json",
            IntakeError::Parse(ParseError::BadEnvelope(_)) => "invalid_envelope",
            IntakeError::Parse(ParseError::BadField { .. }) => "invalid_field",
            IntakeError::Parse(ParseError::TooLarge { .. }) => "too_large_field",
            IntakeError::Storage(_) => "storage_unavailable",
        }
    }
}

/// Where authenticated callback bodies go: the store, with the targets whose outbox rows are
/// written in the same transaction, and the worker to wake after the commit. Cheap to clone.
#[derive(Clone)]
pub struct Intake {
    pub store: Store,
    pub targets: Targets,
    pub wake: Wake,
    pub metrics: Metrics,
}

impl Intake {
    pub fn new(store: Store, targets: Targets, wake: Wake, metrics: Metrics) -> Intake {
        Intake { store, targets, wake, metrics }
    }

    /// Parses and stores one body, and returns after its commit.
    pub async fn accept(&self, account: &Account, body: &[u8], source: Source) -> Result<Ingested, IntakeError> {
        let count = |data_type: &str, outcome: CallbackOutcome| {
            // Metrics count callbacks; backfilled calls are not callbacks.
            if source == Source::Push {
                self.metrics.callback(&account.name, data_type, outcome);
            }
        };
        let callback = match parse_callback(body, account.utc_offset) {
            Ok(callback) => callback,
            Err(problem) => {
                let refusal = self.reject(account, body, source, problem).await;
                count("-", CallbackOutcome::Refused(refusal.code()));
                return Err(refusal);
            }
        };
        let data_type = match callback.event {
            Event::Unrecognized => "other".to_owned(),
            _ => callback.data_type.clone(),
        };
        let received_at = storable_now();
        let announcements = announcements(&self.targets, &account.name, &callback, received_at);
        let pending = PendingCallback {
            account: account.name.clone(),
            body: body.to_vec(),
            source,
            received_at,
            callback,
            announcements,
        };
        let (callback, result) = self.store.store_callback(pending).await;
        let (outcome, outbound) = result.map_err(|error| {
            tracing::error!(account = %account.name, data_type = %loggable(&data_type), error = %error,
                "could not store callback; answering 503 so that the platform retries");
            count(&data_type, CallbackOutcome::Refused("storage_unavailable"));
            IntakeError::Storage(error)
        })?;
        count(&data_type, CallbackOutcome::Ingested(outcome));
        if let Some(outbound) = &outbound {
            self.wake.targets(&outbound.targets);
        }
        log_stored(account, &callback, outcome, source);
        Ok(outcome)
    }

    /// Keeps the raw body of an authenticated request that cannot become data (so that an operator
    /// can look at it and reprocess it after a fix), then returns the refusal.
    async fn reject(&self, account: &Account, body: &[u8], source: Source, problem: ParseError) -> IntakeError {
        match self.keep_rejected(account, body, source, &problem.to_string()).await {
            Ok(()) => IntakeError::Parse(problem),
            Err(e) => IntakeError::Storage(e),
        }
    }

    /// Keeps an authenticated body that cannot be used as it is (it does not parse, or does not
    /// decrypt with the configured key) as rejected, for an operator and `reprocess`.
    pub async fn keep_rejected(
        &self,
        account: &Account,
        body: &[u8],
        source: Source,
        reason: &str,
    ) -> Result<(), StoreError> {
        match self.store.record_rejected(&account.name, body, source, reason).await {
            Ok(()) => {
                tracing::warn!(account = %account.name, problem = %loggable(reason), "callback rejected, raw body kept");
                Ok(())
            }
            Err(e) => {
                tracing::error!(account = %account.name, error = %e, "could not keep a rejected callback");
                Err(e)
            }
        }
    }
}

fn log_stored(account: &Account, callback: &Callback, outcome: Ingested, source: Source) {
    match &callback.event {
        Event::CallRecord(call) => tracing::info!(
            account = %account.name, call_record_id = call.call_record_id,
            phone = %call.called_phone_number.as_deref().map(mask_phone).unwrap_or_default(),
            outcome = outcome.as_str(), source = source.as_str(), "call record stored"
        ),
        Event::JobCompleted(job) => tracing::info!(
            account = %account.name, robot_call_job_id = job.robot_call_job_id, outcome = outcome.as_str(),
            "job completion stored"
        ),
        Event::Sms(sms) => tracing::info!(
            account = %account.name, call_record_id = sms.call_record_id, messages = sms.messages.len(),
            outcome = outcome.as_str(), "sms request stored"
        ),
        Event::Unrecognized => tracing::warn!(
            account = %account.name, data_type = %loggable(&callback.data_type),
            "unrecognized dataType kept raw and acknowledged"
        ),
    }
}
