//! Follow-up work against the platform's REST API. Reconciliation: when a job completes, page
//! through its finished calls and feed every call the relay does not have through the same store
//! path as a pushed callback (`source = backfill`), so a job whose callbacks were lost ends up
//! complete here and downstream. Enrichment: fetch each new call's detail and keep what the push
//! lacks (intent level names, the human-corrected level, the customer).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::account::Accounts;
use crate::domain::Source;
use crate::fanout::envelope::announcements;
use crate::fanout::worker::{Consumed, InternalConsumer, Task};
use crate::intake::{Intake, IntakeError};
use crate::platform::callback::{parse_callback, CALL_RECORD};
use crate::platform::client::{ApiError, PlatformClient};
use crate::store::{Enrichment, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum FollowUpError {
    #[error("account `{0}` has no [accounts.api] settings")]
    NoApi(String),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("storing a backfilled call failed: {0}")]
    Intake(IntakeError),
    #[error("stopped for shutdown")]
    Interrupted,
}

/// What a run found (listed, backfilled, rejected); it is recorded for the job's completeness.
pub use crate::store::Reconciled as ReconcileReport;

pub struct FollowUps {
    accounts: Accounts,
    clients: HashMap<String, Arc<PlatformClient>>,
    intake: Intake,
}

impl FollowUps {
    pub fn new(accounts: Accounts, intake: Intake) -> FollowUps {
        let clients = accounts
            .all()
            .filter_map(|a| a.api.as_ref().map(|api| (a.name.clone(), Arc::new(PlatformClient::new(api)))))
            .collect();
        FollowUps { accounts, clients, intake }
    }

    pub fn client(&self, account: &str) -> Result<&PlatformClient, FollowUpError> {
        self.clients.get(account).map(Arc::as_ref).ok_or_else(|| FollowUpError::NoApi(account.to_owned()))
    }

    /// Backfills the calls of one job that are missing here. Idempotent: running it again, or
    /// after an interruption, stores only what is still missing.
    ///
    /// `stop`, when given, is checked between calls: shutdown ends the run with `Interrupted`
    /// between two transactions, never inside one.
    pub async fn reconcile_job(
        &self,
        account_name: &str,
        robot_call_job_id: i64,
        stop: Option<&watch::Receiver<bool>>,
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
                if stop.is_some_and(|stop| *stop.borrow()) {
                    return Err(FollowUpError::Interrupted);
                }
                if record["callRecordId"].as_i64().is_some_and(|id| have.contains(&id)) {
                    continue;
                }
                let body = json!({ "dataType": CALL_RECORD, "data": record }).to_string();
                match self.intake.accept(account, body.as_bytes(), Source::Backfill).await {
                    Ok(_) => report.backfilled += 1,
                    Err(IntakeError::Parse(_)) => report.rejected += 1,
                    Err(e) => return Err(FollowUpError::Intake(e)),
                }
            }
        }
        self.intake.store.record_reconciliation(account_name, &report, crate::store::storable_now()).await?;
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

impl FollowUps {
    /// Fetches a call's detail and stores what the push lacks. A changed corrected intent level
    /// announces `call.updated` (with the detail's fields under `extra`).
    pub async fn enrich_call(&self, account_name: &str, call_record_id: i64) -> Result<bool, FollowUpError> {
        let client = self.client(account_name)?;
        let account = self.accounts.get(account_name).ok_or_else(|| FollowUpError::NoApi(account_name.to_owned()))?;
        let detail = client.call_detail(call_record_id).await?;
        let text = |field: &str| match &detail[field] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let enrichment = Enrichment {
            intent_level_name: text("intentLevelName"),
            real_intent_level: text("realIntentLevel"),
            real_intent_level_name: text("realIntentLevelName"),
            intent_level_tag_id: detail["intentLevelTagId"].as_i64(),
            customer: detail.get("customerPerson").filter(|c| c.is_object()).cloned(),
        };
        let now = crate::store::storable_now();
        let envelope = json!({ "dataType": CALL_RECORD, "data": detail }).to_string();
        // Made before the store knows whether the corrected level changed: it keeps it only then.
        let announce = parse_callback(envelope.as_bytes(), account.utc_offset)
            .ok()
            .and_then(|callback| announcements(&self.intake.targets, account_name, &callback, now).changed);
        let outbound = self.intake.store.enrich_call(account_name, call_record_id, &enrichment, now, announce).await?;
        if let Some(outbound) = &outbound {
            self.intake.wake.targets(&outbound.targets);
        }
        Ok(outbound.is_some())
    }
}

impl FollowUps {
    /// Reconciles every running job of the account (status `IN_PROCESS`), and the jobs that calls
    /// arrived for in the last week but whose completion did not (it may be the callback that was
    /// lost), one after the other.
    pub async fn reconcile_running_jobs(
        &self,
        account_name: &str,
        stop: Option<&watch::Receiver<bool>>,
    ) -> Result<Vec<ReconcileReport>, FollowUpError> {
        let client = self.client(account_name)?;
        let mut jobs = Vec::new();
        let mut page = 1;
        loop {
            let current = client.get_jobs(Some("IN_PROCESS"), page, 100).await?;
            jobs.extend(current.content.iter().filter_map(|job| job["robotCallJobId"].as_i64()));
            if current.content.is_empty() || page >= current.pages {
                break;
            }
            page += 1;
        }
        let week_ago = crate::store::storable_now() - chrono::Duration::days(7);
        for job in self.intake.store.jobs_without_completion(account_name, week_ago, 100).await? {
            if !jobs.contains(&job) {
                jobs.push(job);
            }
        }
        let mut reports = Vec::with_capacity(jobs.len());
        for job in jobs {
            reports.push(self.reconcile_job(account_name, job, stop).await?);
        }
        Ok(reports)
    }

    /// Until `stop`, reconciles the account's running jobs every `interval`. A failed round is
    /// logged and tried again at the next tick (the next job completion reconciles durably).
    pub async fn reconcile_periodically(
        self: std::sync::Arc<Self>,
        account: String,
        interval: std::time::Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        while !*stop.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => break,
            }
            match self.reconcile_running_jobs(&account, Some(&stop)).await {
                Err(FollowUpError::Interrupted) => break,
                Ok(reports) => tracing::debug!(%account, jobs = reports.len(), "running jobs reconciled"),
                Err(e) => tracing::warn!(%account, error = %e, "periodic reconciliation failed; trying again later"),
            }
        }
    }
}

impl InternalConsumer for FollowUps {
    fn consume<'a>(
        &'a self,
        task: &'a Task,
        stop: &'a watch::Receiver<bool>,
    ) -> Pin<Box<dyn Future<Output = Consumed> + Send + 'a>> {
        Box::pin(async move {
            let result = match task {
                Task::Reconcile { account, robot_call_job_id } => {
                    self.reconcile_job(account, *robot_call_job_id, Some(stop)).await.map(|report| {
                        format!(
                            "listed {}, backfilled {}, rejected {}",
                            report.listed, report.backfilled, report.rejected
                        )
                    })
                }
                Task::Enrich { account, call_record_id } => {
                    self.enrich_call(account, *call_record_id).await.map(|updated| {
                        if updated { "enriched; corrected intent level announced" } else { "enriched" }.to_owned()
                    })
                }
            };
            match result {
                Ok(report) => Consumed::Done(report),
                Err(FollowUpError::Interrupted) => Consumed::Interrupted,
                Err(e) => Consumed::Failed(e.to_string()),
            }
        })
    }
}
