//! The SQLite backend: the shared statements of `sql/` compiled for SQLite, one writer connection
//! and a pool of readers.
//!
//! SQLite takes one writer at a time. Writers that find the lock taken poll for it in SQLite's
//! busy handler, sleeping in growing steps: under concurrency some wait far longer than the lock
//! is held (a p99 of 185 ms at 16 concurrent callbacks, see docs/BENCHMARKS.md). So every write goes
//! through one connection, and writers queue for it in arrival order; reads use the others (WAL
//! lets them run beside the writer). Since the writes are one at a time anyway, callbacks that
//! arrive while one is being committed are stored together in the next commit: one fsync for the
//! group.

use std::str::FromStr;
use std::sync::Arc;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::dialect::{self, Dialect};
use super::group_commit::GroupCommit;
use super::{PendingCallback, Recorded, StoreError, ROWS_PER_INSERT};
use crate::config::DatabaseSettings;

type Db = sqlx::Sqlite;
type Tx = sqlx::Transaction<'static, Db>;
const DIALECT: Dialect = dialect::SQLITE;

// Compiled once per backend, on purpose: the same SQL against each database.
#[allow(clippy::duplicate_mod)]
#[path = "sql/calls.rs"]
pub(super) mod calls;
#[allow(clippy::duplicate_mod)]
#[path = "sql/completeness.rs"]
pub(super) mod completeness;
#[allow(clippy::duplicate_mod)]
#[path = "sql/erasure.rs"]
pub(super) mod erasure;
#[allow(clippy::duplicate_mod)]
#[path = "sql/inbox.rs"]
pub(super) mod inbox;
#[allow(clippy::duplicate_mod)]
#[path = "sql/intake.rs"]
pub(super) mod intake;
#[allow(clippy::duplicate_mod)]
#[path = "sql/jobs_sms.rs"]
pub(super) mod jobs_sms;
#[allow(clippy::duplicate_mod)]
#[path = "sql/outbox.rs"]
pub(super) mod outbox;
#[allow(clippy::duplicate_mod)]
#[path = "sql/retention.rs"]
pub(super) mod retention;
#[allow(clippy::duplicate_mod)]
#[path = "sql/stats.rs"]
pub(super) mod stats;

#[derive(Debug, Clone)]
pub(super) struct Sqlite {
    pub writer: SqlitePool,
    pub readers: SqlitePool,
    pub groups: Arc<GroupCommit<PendingCallback, Recorded>>,
}

impl Sqlite {
    pub async fn connect(settings: &DatabaseSettings) -> Result<Sqlite, StoreError> {
        let options = SqliteConnectOptions::from_str(settings.url.expose())?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit that answered `success` survives a power cut, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(settings.acquire_timeout)
            .foreign_keys(true);
        if let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| StoreError::CreateDirectory { path: dir.to_path_buf(), source: Arc::new(source) })?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options.clone())
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.saturating_sub(1).max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(Sqlite { writer, readers, groups: Arc::default() })
    }
}
