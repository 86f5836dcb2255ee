//! Jobs' completeness, as the application records and reads it.

use chrono::{DateTime, Utc};

use super::{run, JobProgress, Reconciled, Store, StoreError};
use crate::domain::{EventType, Outbound};

impl Store {
    /// Records what a reconciliation run of a job found.
    pub async fn record_reconciliation(
        &self,
        account: &str,
        run: &Reconciled,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        run!(self, write, completeness::record_reconciliation(account, run, now))
    }

    /// The figures of one job (`Some(id)`) or of the account's latest `limit` jobs.
    pub async fn job_progress(
        &self,
        account: &str,
        robot_call_job_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<JobProgress>, StoreError> {
        run!(self, read, completeness::progress(account, robot_call_job_id, limit))
    }

    /// Jobs with calls received since `since` and no completion received.
    pub async fn jobs_without_completion(
        &self,
        account: &str,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<i64>, StoreError> {
        run!(self, read, completeness::without_completion(account, since, limit))
    }

    /// Records the job's operator event and writes it to the outbox, in one transaction; `false`
    /// when that event was already the job's last (another replica announced it).
    pub async fn announce_job(
        &self,
        account: &str,
        robot_call_job_id: i64,
        announced: EventType,
        outbound: Option<&Outbound>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        run!(self, write, completeness::announce(account, robot_call_job_id, announced, outbound, now))
    }
}
