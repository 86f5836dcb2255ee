//! Follow-up work against the platform's REST API. Reconciliation: when a job completes, page
//! through its finished calls and feed every call the relay does not have through the same store
//! path as a pushed callback (`source = backfill`), so a job whose callbacks were lost ends up
//! complete here and downstream.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use crate::account::Accounts;
use crate::config::AccountSettings;
use crate::fanout::target::{Target, TargetKind};
use crate::fanout::worker::InternalConsumer;
use crate::ingest::{IngestError, Intake};
use crate::platform::callback::CALL_RECORD;
use crate::platform::client::{ApiError, PlatformClient};
use crate::store::{Source, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum FollowUpError {
    #[error("account `{0}` has no [accounts.api] settings")]
    NoApi(String),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("storing a backfilled call failed: {0}")]
    Ingest(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    pub robot_call_job_id: i64,
    /// Calls the platform lists for the job.
    pub listed: u64,
    /// Calls that were missing here and are now stored.
    pub backfilled: u64,
    /// Listed calls whose record could not be parsed (kept raw as rejected in the inbox).
    pub rejected: u64,
}

pub struct FollowUps {
    accounts: Accounts,
    clients: HashMap<String, Arc<PlatformClient>>,
    intake: Intake,
}

impl FollowUps {
    pub fn new(settings: &[AccountSettings], intake: Intake) -> FollowUps {
        let clients = settings
            .iter()
            .filter_map(|a| a.api.as_ref().map(|api| (a.name.clone(), Arc::new(PlatformClient::new(api)))))
            .collect();
        FollowUps { accounts: Accounts::new(settings), clients, intake }
    }

    pub fn client(&self, account: &str) -> Result<&PlatformClient, FollowUpError> {
        self.clients.get(account).map(Arc::as_ref).ok_or_else(|| FollowUpError::NoApi(account.to_owned()))
    }

    /// Backfills the calls of one job that are missing here. Idempotent: running it again, or
    /// after an interruption, stores only what is still missing.
    pub async fn reconcile_job(
        &self,
        account_name: &str,
        robot_call_job_id: i64,
    ) -> Result<ReconcileReport, FollowUpError> {
        let client = self.client(account_name)?;
        let account = self.accounts.get(account_name).ok_or_else(|| FollowUpError::NoApi(account_name.to_owned()))?;
        let mut report = ReconcileReport { robot_call_job_id, ..Default::default() };
        let mut pages = client.call_record_pages(robot_call_job_id);
        while let Some(records) = pages.next().await? {
            report.listed += records.len() as u64;
            let ids: Vec<i64> = records.iter().filter_map(|r| r["callRecordId"].as_i64()).collect();
            let have = self.intake.store.existing_call_ids(account_name, &ids).await?;
            for record in records {
                if record["callRecordId"].as_i64().is_some_and(|id| have.contains(&id)) {
                    continue;
                }
                let body = json!({ "dataType": CALL_RECORD, "data": record }).to_string();
                match self.intake.accept(account, body.as_bytes(), Source::Backfill).await {
                    Ok(_) => report.backfilled += 1,
                    Err(IngestError::Parse(_)) => report.rejected += 1,
                    Err(e) => return Err(FollowUpError::Ingest(e.to_string())),
                }
            }
        }
        tracing::info!(
            account = account_name,
            robot_call_job_id,
            listed = report.listed,
            backfilled = report.backfilled,
            rejected = report.rejected,
            "job reconciled"
        );
        Ok(report)
    }
}

impl InternalConsumer for FollowUps {
    fn consume<'a>(
        &'a self,
        target: &'a Target,
        payload: &'a Value,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(async move {
            let TargetKind::Reconcile { account } = &target.kind else {
                return Err(format!("{} is not an internal target", target.name));
            };
            let job = payload["data"]["robot_call_job_id"].as_i64().ok_or("the event has no robot_call_job_id")?;
            let report = self.reconcile_job(account, job).await.map_err(|e| e.to_string())?;
            Ok(format!("listed {}, backfilled {}, rejected {}", report.listed, report.backfilled, report.rejected))
        })
    }
}
