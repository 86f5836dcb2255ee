//! All SQL lives here. The application sees one `Store`; behind it a Postgres or a SQLite pool,
//! chosen by the URL scheme. Both run the same statements (see `backend.rs`), so one contract test
//! suite covers both.

mod backend;
pub mod group_commit;
mod model;

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::config::DatabaseSettings;
use crate::fanout::Outbound;
use crate::platform::callback::Callback;
use group_commit::GroupCommit;

pub use model::{
    AfterAttempt, Attempt, AttemptRow, ClaimedDelivery, Cutoffs, DeliveryFilter, DeliveryRow, Enrichment, EventFilter,
    EventRow, InboxEntry, PurgeReport, QueueStats, StoredCall, StoredJob, StoredSmsMessage, StoredTurn,
};

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");

/// The Postgres channel on which a commit that adds deliveries wakes every replica's worker.
pub const DELIVERY_CHANNEL: &str = "tanyi_relay_deliveries";

#[derive(Clone, Debug)]
pub enum Store {
    Postgres(PgPool),
    Sqlite(SqliteStore),
}

/// SQLite takes one writer at a time. Writers that find the lock taken poll for it in SQLite's
/// busy handler, sleeping in growing steps: under concurrency some wait far longer than the lock
/// is held (a p99 of 185 ms at 16 concurrent callbacks, see BENCHMARKS.md). So every write goes
/// through one connection, and writers queue for it in arrival order; reads use the others
/// (WAL lets them run beside the writer).
///
/// Since the writes are one at a time anyway, callbacks that arrive while one is being committed
/// are stored together in the next commit (`store_callback`): one fsync for the group.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pub readers: SqlitePool,
    writer: SqlitePool,
    groups: Arc<GroupCommit<PendingCallback, Recorded>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot prepare the database: {0}")]
    Setup(String),
    #[error("{0} is not stored")]
    Missing(String),
    /// A failure shared by every callback of a group commit.
    #[error("database error: {0}")]
    Shared(String),
}

/// Where a callback came from: pushed by the platform, or fetched back from its REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Push,
    Backfill,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Push => "push",
            Source::Backfill => "backfill",
        }
    }
}

/// A callback body as it arrived, before or without parsing.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub account: &'a str,
    pub body: &'a [u8],
    pub source: Source,
    pub received_at: DateTime<Utc>,
}

impl<'a> Received<'a> {
    pub fn now(account: &'a str, body: &'a [u8], source: Source) -> Self {
        Self { account, body, source, received_at: storable_now() }
    }
}

/// Now, as both backends store it: Postgres keeps microseconds, so truncate, and both read back
/// the same instant.
fn storable_now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

impl PendingCallback {
    /// A callback received now.
    pub fn now(account: &str, body: &[u8], source: Source, callback: Callback, announce: Announce) -> Self {
        Self {
            account: account.to_owned(),
            body: body.to_vec(),
            source,
            received_at: storable_now(),
            callback,
            announce,
        }
    }
}

/// A parsed callback waiting to be stored together with others (`Store::record_callbacks`).
pub struct PendingCallback {
    pub account: String,
    pub body: Vec<u8>,
    pub source: Source,
    pub received_at: DateTime<Utc>,
    pub callback: Callback,
    /// Makes the event the outcome announces (`None`: nothing to announce).
    pub announce: Announce,
}

/// Given the callback, the outcome and the time it was received: the event to write, if any.
pub type Announce = Box<dyn Fn(&Callback, Ingested, DateTime<Utc>) -> Option<Outbound> + Send + Sync>;

/// A stored (or not) callback, handed back with its outcome.
pub type Recorded = (Callback, Result<(Ingested, Option<Outbound>), StoreError>);

/// What storing a callback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// First time this thing was seen.
    Created,
    /// Seen before with other content: the normalized rows were updated.
    Changed,
    /// This exact content was stored before: only the inbox counters moved.
    Duplicate,
    /// An unknown dataType, kept raw.
    Unrecognized,
}

impl Store {
    pub async fn connect(settings: &DatabaseSettings) -> Result<Store, StoreError> {
        let url = settings.url.expose();
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit that answered `success` survives a power cut, not only a crash.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(settings.acquire_timeout())
                .foreign_keys(true);
            if let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Setup(format!("cannot create {}: {e}", dir.display())))?;
            }
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(settings.acquire_timeout())
                .connect_with(options.clone())
                .await?;
            let readers = SqlitePoolOptions::new()
                .max_connections(settings.max_connections.saturating_sub(1).max(1))
                .acquire_timeout(settings.acquire_timeout())
                .connect_with(options)
                .await?;
            Ok(Store::Sqlite(SqliteStore { readers, writer, groups: Arc::default() }))
        } else {
            // Prepared statements switch to a generic plan after five runs, made with the statistics
            // of that moment: on a new database, plans for empty tables, kept while the tables
            // grow. Custom plans cost a little planning per statement and made ingest on a fresh
            // database 1.5× faster, with a third of the tail latency (BENCHMARKS.md).
            let options = PgConnectOptions::from_str(url)?.options([("plan_cache_mode", "force_custom_plan")]);
            // Lazy: a replica may start while the database is briefly away and become ready later.
            let pool = PgPoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(settings.acquire_timeout())
                .connect_lazy_with(options);
            Ok(Store::Postgres(pool))
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
            Store::Sqlite(sqlite) => SQLITE_MIGRATIONS.run(&sqlite.writer).await?,
        }
        Ok(())
    }

    /// Whether the database has every migration this binary knows (an error: it does not answer).
    pub async fn migrations_current(&self) -> Result<bool, StoreError> {
        const LATEST_APPLIED: &str = "SELECT MAX(version) FROM _sqlx_migrations WHERE success";
        self.ping().await?;
        // The database answers; a failing query here means no migration table yet.
        let (applied, known): (Result<Option<i64>, sqlx::Error>, &Migrator) = match self {
            Store::Postgres(pool) => (sqlx::query_scalar(LATEST_APPLIED).fetch_one(pool).await, &POSTGRES_MIGRATIONS),
            Store::Sqlite(sqlite) => {
                (sqlx::query_scalar(LATEST_APPLIED).fetch_one(&sqlite.readers).await, &SQLITE_MIGRATIONS)
            }
        };
        let latest = known.iter().map(|m| m.version).max();
        Ok(applied.is_ok_and(|applied| applied >= latest))
    }

    pub async fn close(&self) {
        match self {
            Store::Postgres(pool) => pool.close().await,
            Store::Sqlite(sqlite) => {
                sqlite.writer.close().await;
                sqlite.readers.close().await;
            }
        }
    }
}

/// Runs the same function of `backend.rs` on whichever database this store has: on SQLite, on
/// the writer connection, unless the call starts with `read`.
macro_rules! on_backend {
    (read $store:expr, $function:ident ( $($arg:expr),* )) => {
        match $store {
            Store::Postgres(pool) => backend::postgres::$function(pool, $($arg),*).await,
            Store::Sqlite(sqlite) => backend::sqlite::$function(&sqlite.readers, $($arg),*).await,
        }
    };
    ($store:expr, $function:ident ( $($arg:expr),* )) => {
        match $store {
            Store::Postgres(pool) => backend::postgres::$function(pool, $($arg),*).await,
            Store::Sqlite(sqlite) => backend::sqlite::$function(&sqlite.writer, $($arg),*).await,
        }
    };
}

impl Store {
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(read self, ping())
    }

    /// Stores authenticated, parsed callbacks in one transaction (one commit for all): for each,
    /// the raw inbox row, the normalized rows, and the event its `announce` makes of the outcome
    /// with one delivery per target. Each gets its own outcome, in order, after the commit.
    pub async fn record_callbacks(&self, pending: Vec<PendingCallback>) -> Vec<Recorded> {
        on_backend!(self, record_callbacks(pending))
    }

    /// Stores one callback and returns after its commit. On SQLite it shares the commit with
    /// callbacks that arrive meanwhile; Postgres runs concurrent transactions itself (and merges
    /// their WAL flushes), so there each callback has its own. `None`: the storing task failed,
    /// the outcome is unknown.
    pub async fn store_callback(&self, pending: PendingCallback) -> Option<Recorded> {
        match self {
            Store::Postgres(pool) => backend::postgres::record_callbacks(pool, vec![pending]).await.pop(),
            Store::Sqlite(sqlite) => {
                let writer = sqlite.writer.clone();
                sqlite
                    .groups
                    .submit(pending, |group| async move { backend::sqlite::record_callbacks(&writer, group).await })
                    .await
            }
        }
    }

    pub async fn claim_deliveries(
        &self,
        target: &str,
        ordered: bool,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        worker: &str,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        on_backend!(self, claim_deliveries(target, ordered, now, lease_until, limit, worker))
    }

    /// Records the attempts `worker` finished, all in one transaction.
    pub async fn finish_attempts(
        &self,
        worker: &str,
        attempts: &[Attempt],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_backend!(self, finish_attempts(worker, attempts, now))
    }

    pub async fn release_claims(&self, ids: &[i64], worker: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        on_backend!(self, release_claims(ids, worker, now))
    }

    pub async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
        on_backend!(read self, deliveries(filter))
    }

    pub async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRow>, StoreError> {
        on_backend!(read self, delivery_attempts(delivery_id))
    }

    /// Stores a call's enrichment; `announce` is asked for a `call.updated` event only when the
    /// corrected intent level changed.
    pub async fn enrich_call<F: FnOnce() -> Option<Outbound>>(
        &self,
        account: &str,
        call_record_id: i64,
        enrichment: &Enrichment,
        now: DateTime<Utc>,
        announce: F,
    ) -> Result<Option<Outbound>, StoreError> {
        on_backend!(self, enrich_call(account, call_record_id, enrichment, now, announce))
    }

    /// Removes what retention says is old enough; see `Cutoffs`.
    pub async fn purge(&self, cutoffs: &Cutoffs) -> Result<PurgeReport, StoreError> {
        on_backend!(self, purge(cutoffs))
    }

    /// Pending and dead deliveries per target, and the oldest due one.
    pub async fn queue_stats(&self, now: DateTime<Utc>) -> Result<Vec<QueueStats>, StoreError> {
        on_backend!(read self, queue_stats(now))
    }

    /// Connections open and connections busy.
    pub fn pool_usage(&self) -> (u32, u32) {
        let (size, idle) = match self {
            Store::Postgres(pool) => (pool.size(), pool.num_idle() as u32),
            Store::Sqlite(sqlite) => (
                sqlite.readers.size() + sqlite.writer.size(),
                (sqlite.readers.num_idle() + sqlite.writer.num_idle()) as u32,
            ),
        };
        (size, size.saturating_sub(idle))
    }

    /// Which of `ids` the account already has as call records.
    pub async fn existing_call_ids(
        &self,
        account: &str,
        ids: &[i64],
    ) -> Result<std::collections::HashSet<i64>, StoreError> {
        on_backend!(read self, existing_call_ids(account, ids))
    }

    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
        on_backend!(read self, events(filter))
    }

    /// One delivery with every attempt and the event's payload, as operators look at it.
    pub async fn delivery_detail(&self, id: i64) -> Result<Option<serde_json::Value>, StoreError> {
        let filter = DeliveryFilter { id: Some(id), ..Default::default() };
        let Some(delivery) = self.deliveries(&filter).await?.pop() else { return Ok(None) };
        let attempts = self.delivery_attempts(id).await?;
        let event = self.events(&EventFilter { id: Some(delivery.event_id.clone()), ..Default::default() }).await?;
        let payload = event.into_iter().next().map(|e| e.payload.0);
        Ok(Some(serde_json::json!({ "delivery": delivery, "attempts": attempts, "payload": payload })))
    }

    /// Makes the matching delivered or dead deliveries due again; returns how many.
    pub async fn replay(&self, filter: &DeliveryFilter, now: DateTime<Utc>) -> Result<u64, StoreError> {
        on_backend!(self, replay(filter, now))
    }

    /// Keeps the raw body of an authenticated callback that could not be parsed, so that an
    /// operator can see it and reprocess it after a fix.
    pub async fn record_rejected(&self, received: &Received<'_>, reason: &str) -> Result<(), StoreError> {
        on_backend!(self, record_rejected(received, reason))
    }

    pub async fn inbox(&self, account: &str) -> Result<Vec<InboxEntry>, StoreError> {
        on_backend!(read self, inbox(account))
    }

    /// Rejected inbox rows that still have their body, oldest first.
    pub async fn rejected(
        &self,
        account: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        on_backend!(read self, rejected(account, since))
    }

    pub async fn call_record(&self, account: &str, call_record_id: i64) -> Result<Option<StoredCall>, StoreError> {
        on_backend!(read self, call_record(account, call_record_id))
    }

    pub async fn call_turns(&self, account: &str, call_record_id: i64) -> Result<Vec<StoredTurn>, StoreError> {
        on_backend!(read self, call_turns(account, call_record_id))
    }

    pub async fn jobs(&self, account: &str, robot_call_job_id: i64) -> Result<Vec<StoredJob>, StoreError> {
        on_backend!(read self, jobs(account, robot_call_job_id))
    }

    pub async fn sms_messages(&self, account: &str, call_record_id: i64) -> Result<Vec<StoredSmsMessage>, StoreError> {
        on_backend!(read self, sms_messages(account, call_record_id))
    }
}
