//! All SQL lives here, behind one `Store`. Which database it holds (Postgres or SQLite, chosen by
//! the URL scheme) is private: nothing outside `store/` names a pool, a backend or a dialect.
//!
//! The statements are written once, in ordinary files under `sql/`, grouped by aggregate (inbox,
//! calls, jobs and SMS, outbox, retention, statistics, and the write path of a callback that ties
//! them together). `postgres.rs` and `sqlite.rs` each compile those same files against their
//! database's types; the few words that differ between the two come from a `Dialect`. So both
//! databases run the same SQL text, and one contract test suite covers both. Types are never
//! declared in `sql/` (they would exist twice): rows and filters live in `rows.rs`. The `impl
//! Store` blocks in this folder's other files are the operations the application uses, by
//! aggregate.

mod adhoc;
mod calls;
mod completeness;
mod dialect;
mod erasure;
mod error;
pub mod group_commit;
mod intake;
mod jobs;
mod outbox;
mod postgres;
mod retention;
mod rows;
mod sqlite;
mod stats;

use sqlx::migrate::Migrator;
use tokio::sync::watch;

pub use adhoc::{AdHoc, HeldConnections};
pub use error::StoreError;
pub use intake::{storable_now, PendingCallback, Recorded};
pub use retention::PURGE_BATCH;
pub use rows::{
    AfterAttempt, Attempt, AttemptRow, CallFilter, CallListRow, ClaimedDelivery, Cutoffs, DeliveryFilter, DeliveryRow,
    Enrichment, ErasureCounts, ErasureEntry, ErasureSubject, EventFilter, EventRow, InboxEntry, JobAnnouncement,
    JobProgress, JobSummary, PurgeReport, QueueStats, Reconciled, StoredCall, StoredJob, StoredSmsMessage, StoredTurn,
    TargetDeliveries,
};

use crate::config::{DatabaseBackend, DatabaseSettings};

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");

/// Rows per multi-row INSERT: well under both backends' bound-parameter limits.
const ROWS_PER_INSERT: usize = 500;

/// The database. Cheap to clone: clones share the connections.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Postgres(postgres::Postgres),
    Sqlite(sqlite::Sqlite),
}

/// Runs the same statement function of `sql/` on whichever database this store has. `write`
/// goes through SQLite's one writer connection, `read` through its readers; Postgres has one pool.
macro_rules! run {
    ($store:expr, write, $module:ident::$function:ident($($arg:expr),* $(,)?)) => {
        match &$store.backend {
            $crate::store::Backend::Postgres(pg) => $crate::store::postgres::$module::$function(&pg.pool, $($arg),*).await,
            $crate::store::Backend::Sqlite(lite) => $crate::store::sqlite::$module::$function(&lite.writer, $($arg),*).await,
        }
    };
    ($store:expr, read, $module:ident::$function:ident($($arg:expr),* $(,)?)) => {
        match &$store.backend {
            $crate::store::Backend::Postgres(pg) => $crate::store::postgres::$module::$function(&pg.pool, $($arg),*).await,
            $crate::store::Backend::Sqlite(lite) => $crate::store::sqlite::$module::$function(&lite.readers, $($arg),*).await,
        }
    };
}
use run;

/// What a call's upsert changes when the call is already stored: the same list for the shared
/// statement (`sql/calls.rs`) and Postgres's group write (`postgres/batch.rs`), so that a column
/// added to one cannot be forgotten in the other.
macro_rules! call_upsert_set {
    () => {
        "ON CONFLICT (account, call_record_id) DO UPDATE SET \
            tenant_id = excluded.tenant_id, robot_call_job_id = excluded.robot_call_job_id, \
            dialog_flow_id = excluded.dialog_flow_id, called_phone_number = excluded.called_phone_number, \
            result_status = excluded.result_status, intent_level = excluded.intent_level, \
            intent_grade = excluded.intent_grade, customer_concern = excluded.customer_concern, \
            full_audio_url = excluded.full_audio_url, customer_audio_url = excluded.customer_audio_url, \
            analysis_basis = excluded.analysis_basis, start_time = excluded.start_time, \
            end_time = excluded.end_time, chat_duration = excluded.chat_duration, \
            chat_round = excluded.chat_round, attributes = excluded.attributes, \
            properties = excluded.properties, extra = excluded.extra, inbox_id = excluded.inbox_id, \
            updated_at = excluded.updated_at, start_local = excluded.start_local, \
            revision = call_records.revision + 1 "
    };
}
use call_upsert_set;

impl Store {
    pub async fn connect(settings: &DatabaseSettings) -> Result<Store, StoreError> {
        let backend = match settings.backend {
            DatabaseBackend::Sqlite => Backend::Sqlite(sqlite::Sqlite::connect(settings).await?),
            DatabaseBackend::Postgres => Backend::Postgres(postgres::Postgres::connect(settings)?),
        };
        Ok(Store { backend })
    }

    /// The same database through `connections` of its own (Postgres), so that a burst of callbacks
    /// holding every pooled connection cannot starve whoever uses this handle (the delivery
    /// worker). SQLite has one writer connection anyway: the handle shares it.
    pub fn with_own_connections(&self, connections: u32) -> Store {
        match &self.backend {
            Backend::Postgres(pg) => Store { backend: Backend::Postgres(pg.for_queue(connections)) },
            Backend::Sqlite(_) => self.clone(),
        }
    }

    pub fn backend(&self) -> DatabaseBackend {
        match self.backend {
            Backend::Postgres(_) => DatabaseBackend::Postgres,
            Backend::Sqlite(_) => DatabaseBackend::Sqlite,
        }
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => POSTGRES_MIGRATIONS.run(&pg.pool).await?,
            Backend::Sqlite(lite) => SQLITE_MIGRATIONS.run(&lite.writer).await?,
        }
        Ok(())
    }

    /// Whether the database has every migration this binary knows (an error: it does not answer).
    pub async fn migrations_current(&self) -> Result<bool, StoreError> {
        const LATEST_APPLIED: &str = "SELECT MAX(version) FROM _sqlx_migrations WHERE success";
        self.ping().await?;
        // The database answers; a failing query here means no migration table yet.
        let (applied, known): (Result<Option<i64>, sqlx::Error>, &Migrator) = match &self.backend {
            Backend::Postgres(pg) => {
                (sqlx::query_scalar(LATEST_APPLIED).fetch_one(&pg.pool).await, &POSTGRES_MIGRATIONS)
            }
            Backend::Sqlite(lite) => {
                (sqlx::query_scalar(LATEST_APPLIED).fetch_one(&lite.readers).await, &SQLITE_MIGRATIONS)
            }
        };
        let latest = known.iter().map(|m| m.version).max();
        Ok(applied.is_ok_and(|applied| applied >= latest))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => {
                sqlx::query("SELECT 1").execute(&pg.pool).await?;
            }
            Backend::Sqlite(lite) => {
                sqlx::query("SELECT 1").execute(&lite.readers).await?;
            }
        }
        Ok(())
    }

    /// Calls `wake` whenever a commit (of any replica) adds or revives deliveries, until `stop`.
    /// Returns at once on SQLite, where only this process writes deliveries it does not already
    /// know of (polling covers the command line's replays).
    pub async fn watch_deliveries(&self, wake: impl Fn() + Send, stop: watch::Receiver<bool>) {
        if let Backend::Postgres(pg) = &self.backend {
            pg.listen_for_deliveries(wake, stop).await;
        }
    }

    /// Raw SQL for tests, benchmarks and the documented report queries (see `AdHoc`).
    pub fn adhoc(&self) -> AdHoc<'_> {
        AdHoc::new(self)
    }

    pub async fn close(&self) {
        match &self.backend {
            Backend::Postgres(pg) => pg.pool.close().await,
            Backend::Sqlite(lite) => {
                lite.writer.close().await;
                lite.readers.close().await;
            }
        }
    }
}
