//! Statistics: queue depths and connection use.

use chrono::{DateTime, Utc};

use super::{run, Backend, JobSummary, QueueStats, Store, StoreError};

impl Store {
    /// Pending and dead deliveries per target, and the oldest due one.
    pub async fn queue_stats(&self, now: DateTime<Utc>) -> Result<Vec<QueueStats>, StoreError> {
        run!(self, read, stats::queue_stats(now))
    }

    /// The account's latest `limit` jobs as `report_job_summary` has them.
    pub async fn job_summaries(&self, account: &str, limit: i64) -> Result<Vec<JobSummary>, StoreError> {
        run!(self, read, stats::job_summaries(account, limit))
    }

    /// Connections open and connections busy.
    pub fn pool_usage(&self) -> (u32, u32) {
        let (size, idle) = match &self.backend {
            Backend::Postgres(pg) => (pg.pool.size(), pg.pool.num_idle() as u32),
            Backend::Sqlite(lite) => {
                (lite.readers.size() + lite.writer.size(), (lite.readers.num_idle() + lite.writer.num_idle()) as u32)
            }
        };
        (size, size.saturating_sub(idle))
    }
}
