//! The Postgres backend: the shared statements of `sql/` compiled for Postgres, its connection
//! options, and LISTEN for the commits of other replicas.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::watch;

use super::dialect::{self, Dialect, DELIVERY_CHANNEL};
use super::group_commit::GroupCommit;
use super::{PendingCallback, Recorded, StoreError, ROWS_PER_INSERT};
use crate::config::DatabaseSettings;

type Db = sqlx::Postgres;
type Tx = sqlx::Transaction<'static, Db>;
const DIALECT: Dialect = dialect::POSTGRES;

// Compiled once per backend, on purpose: the same SQL against each database.
pub(super) mod batch;
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
pub(super) mod queue;
#[allow(clippy::duplicate_mod)]
#[path = "sql/retention.rs"]
pub(super) mod retention;
#[allow(clippy::duplicate_mod)]
#[path = "sql/stats.rs"]
pub(super) mod stats;

#[derive(Debug, Clone)]
pub(super) struct Postgres {
    pub pool: PgPool,
    options: Arc<PgConnectOptions>,
    acquire_timeout: Duration,
    /// Callbacks that arrive while others are being written go together in the next group.
    pub groups: Arc<GroupCommit<PendingCallback, Recorded>>,
}

/// Groups written at once: Postgres merges the WAL flushes of concurrent commits, so several
/// groups in flight add to what one group saves.
const GROUPS_IN_FLIGHT: usize = 4;
/// Callbacks per group at most (a group's arrays stay small: 64 bodies of 256 KiB at worst).
const MAX_GROUP: usize = 64;

impl Postgres {
    pub fn connect(settings: &DatabaseSettings) -> Result<Postgres, StoreError> {
        let options = PgConnectOptions::from_str(settings.url.expose())?;
        let postgres = Postgres {
            pool: PgPool::connect_lazy_with(options.clone()),
            options: Arc::new(options),
            acquire_timeout: settings.acquire_timeout,
            groups: Arc::new(GroupCommit::new(GROUPS_IN_FLIGHT, MAX_GROUP)),
        };
        Ok(postgres.with_connections(settings.max_connections))
    }

    /// The same database through a pool of `connections` of its own. Lazy: a replica may start
    /// while the database is briefly away and become ready later.
    pub fn with_connections(&self, connections: u32) -> Postgres {
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(self.acquire_timeout)
            .connect_lazy_with((*self.options).clone());
        let groups = Arc::new(GroupCommit::new(GROUPS_IN_FLIGHT, MAX_GROUP));
        Postgres { pool, options: self.options.clone(), acquire_timeout: self.acquire_timeout, groups }
    }

    /// The same database through `connections` of its own for the delivery worker, whose claims
    /// read a queue that changes shape all the time (a few pending rows among many finished ones):
    /// a prepared statement's generic plan, made once from the statistics of its fifth run (on a
    /// new database, an empty table), would be kept while the table grows, so these connections
    /// plan each claim for its own parameters. The write path's statements have one plan whatever
    /// the statistics (inserts and upserts on a key), and planning each run cost CPU for nothing:
    /// its connections use Postgres's default (docs/BENCHMARKS.md).
    pub fn for_queue(&self, connections: u32) -> Postgres {
        let options = (*self.options).clone().options([("plan_cache_mode", "force_custom_plan")]);
        Postgres { options: Arc::new(options), ..self.clone() }.with_connections(connections)
    }

    /// Calls `wake` whenever another replica (or this one) commits new deliveries, until `stop`. On
    /// a connection of its own, so that it never takes one from the pool that serves callbacks.
    pub async fn listen_for_deliveries(&self, wake: impl Fn() + Send, mut stop: watch::Receiver<bool>) {
        let own = self.with_connections(1);
        while !*stop.borrow() {
            let listen = async {
                let mut listener = PgListener::connect_with(&own.pool).await?;
                listener.listen(DELIVERY_CHANNEL).await?;
                loop {
                    listener.recv().await?;
                    wake();
                }
            };
            tokio::select! {
                result = listen => {
                    let result: Result<(), sqlx::Error> = result;
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "delivery listener lost its connection; reconnecting");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ = stop.changed() => {}
            }
        }
        own.pool.close().await;
    }
}
