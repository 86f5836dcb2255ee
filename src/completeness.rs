//! Campaign completeness: did every call of a job arrive, and did every target get its events?
//!
//! The platform's count is what the last reconciliation listed (`callRecord/getCallRecordInfoList`
//! pages through every finished call of the job; docs/COMPLETENESS.md), recorded per job, so that
//! the answer needs no API call. A job is `complete` when its completion arrived, it was reconciled
//! after that, no listed call is missing, and no delivery of its events is pending or dead;
//! `incomplete` otherwise, with what is missing; `unknown` for an account without API credentials
//! (then only what was received is known).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;

use crate::account::Accounts;
use crate::config::CompletenessSettings;
use crate::domain::{EventSubject, EventType};
use crate::fanout::envelope::operator_event;
use crate::fanout::TargetKind;
use crate::intake::Intake;
use crate::store::{JobAnnouncement, JobProgress, StoreError, TargetDeliveries};

/// Jobs judged per account and check: the most recent ones (by job id).
const JOBS_PER_CHECK: i64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Complete,
    Incomplete,
    Unknown,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Complete => "complete",
            JobState::Incomplete => "incomplete",
            JobState::Unknown => "unknown",
        }
    }
}

/// One reason a job is not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "gap", content = "count")]
pub enum Gap {
    /// The platform's `ROBOT_CALL_JOB` completion has not arrived.
    CompletionNotReceived,
    /// Never reconciled, or not since the completion arrived (the listing may be partial).
    NotReconciled,
    /// Listed calls not stored here (lost and not backfilled, or unparseable).
    CallsMissing(u64),
    DeliveriesPending(u64),
    DeliveriesDead(u64),
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gap::CompletionNotReceived => f.write_str("completion not received"),
            Gap::NotReconciled => f.write_str("not reconciled since completion"),
            Gap::CallsMissing(n) => write!(f, "{n} calls missing"),
            Gap::DeliveriesPending(n) => write!(f, "{n} deliveries pending"),
            Gap::DeliveriesDead(n) => write!(f, "{n} deliveries dead"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallCounts {
    /// Finished calls the platform listed at the last reconciliation.
    pub reported: Option<i64>,
    pub pushed: i64,
    pub backfilled: i64,
    pub missing: Option<i64>,
    /// Listed calls whose record could not be parsed (kept as rejected in the inbox).
    pub rejected: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobCompleteness {
    pub account: String,
    pub robot_call_job_id: i64,
    pub state: JobState,
    pub gaps: Vec<Gap>,
    pub completion_received_at: Option<DateTime<Utc>>,
    pub reconciled_at: Option<DateTime<Utc>>,
    pub reconciliation_runs: i64,
    pub calls: CallCounts,
    /// Per target, its deliveries of the job's events.
    pub targets: Vec<TargetDeliveries>,
    pub announced: JobAnnouncement,
}

/// Judges a job from its figures; `has_api`: whether the account can list the job's calls.
pub fn judge(progress: JobProgress, has_api: bool) -> JobCompleteness {
    let mut gaps = Vec::new();
    if progress.completion_received_at.is_none() {
        gaps.push(Gap::CompletionNotReceived);
    }
    let reconciled_after_completion = match (progress.reconciled_at, progress.completion_received_at) {
        (Some(reconciled), Some(completed)) => reconciled >= completed,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if has_api && !reconciled_after_completion {
        gaps.push(Gap::NotReconciled);
    }
    if let Some(missing) = progress.calls_missing.filter(|&m| m > 0) {
        gaps.push(Gap::CallsMissing(missing as u64));
    }
    let pending: i64 = progress.deliveries.iter().map(|d| d.pending).sum();
    let dead: i64 = progress.deliveries.iter().map(|d| d.dead).sum();
    if pending > 0 {
        gaps.push(Gap::DeliveriesPending(pending as u64));
    }
    if dead > 0 {
        gaps.push(Gap::DeliveriesDead(dead as u64));
    }
    let state = if !has_api {
        JobState::Unknown
    } else if gaps.is_empty() {
        JobState::Complete
    } else {
        JobState::Incomplete
    };
    JobCompleteness {
        account: progress.account,
        robot_call_job_id: progress.robot_call_job_id,
        state,
        gaps,
        completion_received_at: progress.completion_received_at,
        reconciled_at: progress.reconciled_at,
        reconciliation_runs: progress.reconciliation_runs.unwrap_or(0),
        calls: CallCounts {
            reported: progress.calls_listed,
            pushed: progress.calls_pushed,
            backfilled: progress.calls_backfilled,
            missing: progress.calls_missing,
            rejected: progress.calls_rejected,
        },
        targets: progress.deliveries,
        announced: progress.announced,
    }
}

/// What one check announced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub incomplete_announced: usize,
    pub reconciled_announced: usize,
}

pub struct Completeness {
    accounts: Accounts,
    intake: Intake,
    settings: CompletenessSettings,
}

impl Completeness {
    pub fn new(accounts: Accounts, intake: Intake, settings: CompletenessSettings) -> Completeness {
        Completeness { accounts, intake, settings }
    }

    fn has_api(&self, account: &str) -> bool {
        self.accounts.get(account).is_some_and(|a| a.api.is_some())
    }

    /// One job; `None` when nothing at all is known about it.
    pub async fn job(&self, account: &str, robot_call_job_id: i64) -> Result<Option<JobCompleteness>, StoreError> {
        let progress = self.intake.store.job_progress(account, Some(robot_call_job_id), 1).await?;
        Ok(progress.into_iter().next().map(|p| self.judge(p)))
    }

    /// The account's latest `limit` jobs, newest job id first.
    pub async fn jobs(&self, account: &str, limit: i64) -> Result<Vec<JobCompleteness>, StoreError> {
        let progress = self.intake.store.job_progress(account, None, limit).await?;
        Ok(progress.into_iter().map(|p| self.judge(p)).collect())
    }

    /// Judges with the downstream targets only: the relay's own follow-up work (reconciliation,
    /// enrichment) is not a receiver, and reconciliation has its own gap.
    fn judge(&self, mut progress: JobProgress) -> JobCompleteness {
        let internal = |name: &str| self.intake.targets.get(name).is_some_and(|t| t.kind != TargetKind::Webhook);
        progress.deliveries.retain(|d| !internal(&d.target));
        let has_api = self.has_api(&progress.account);
        judge(progress, has_api)
    }

    /// Judges every account's recent jobs: sets the metrics, announces `job.incomplete` for a job
    /// still incomplete `incomplete_after` after its completion (once), and `job.reconciled` when
    /// a job becomes complete (once).
    pub async fn check(&self, now: DateTime<Utc>) -> Result<CheckReport, StoreError> {
        let mut report = CheckReport::default();
        let accounts: Vec<String> = self.accounts.all().filter(|a| a.api.is_some()).map(|a| a.name.clone()).collect();
        for account in accounts {
            let jobs = self.jobs(&account, JOBS_PER_CHECK).await?;
            let completed: Vec<&JobCompleteness> = jobs.iter().filter(|j| j.completion_received_at.is_some()).collect();
            let incomplete = completed.iter().filter(|j| j.state == JobState::Incomplete).count();
            let missing: i64 = completed.iter().filter_map(|j| j.calls.missing).sum();
            self.intake.metrics.set_completeness(&account, incomplete, missing as u64);
            for job in completed {
                let Some(announce) = self.due_announcement(job, now) else { continue };
                let data = json!({
                    "robot_call_job_id": job.robot_call_job_id,
                    "state": job.state,
                    "gaps": job.gaps,
                    "calls": job.calls,
                    "targets": job.targets,
                });
                let subject = EventSubject { call_record_id: None, robot_call_job_id: Some(job.robot_call_job_id) };
                let outbound = operator_event(&self.intake.targets, announce, &account, subject, &data, now);
                // Recorded even when no target wants it, so that it is not reconsidered every check.
                let store = &self.intake.store;
                if !store.announce_job(&account, job.robot_call_job_id, announce, outbound.as_ref(), now).await? {
                    continue;
                }
                if let Some(outbound) = &outbound {
                    self.intake.wake.targets(&outbound.targets);
                }
                match announce {
                    EventType::JobIncomplete => report.incomplete_announced += 1,
                    _ => report.reconciled_announced += 1,
                }
                tracing::info!(%account, robot_call_job_id = job.robot_call_job_id, event = %announce, "job announced");
            }
        }
        Ok(report)
    }

    fn due_announcement(&self, job: &JobCompleteness, now: DateTime<Utc>) -> Option<EventType> {
        match (job.state, job.announced) {
            (JobState::Complete, JobAnnouncement::Nothing | JobAnnouncement::Incomplete) => {
                Some(EventType::JobReconciled)
            }
            (JobState::Incomplete, JobAnnouncement::Nothing) => {
                let completed = job.completion_received_at?;
                let waited = (now - completed).to_std().unwrap_or(Duration::ZERO);
                (waited >= self.settings.incomplete_after).then_some(EventType::JobIncomplete)
            }
            _ => None,
        }
    }

    /// Until `stop`, checks every `check_interval`. A failed check is logged and tried again.
    pub async fn check_periodically(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(self.settings.check_interval) => {}
                _ = stop.changed() => break,
            }
            if let Err(e) = self.check(crate::store::storable_now()).await {
                tracing::warn!(error = %e, "completeness check failed; trying again later");
            }
        }
    }
}
