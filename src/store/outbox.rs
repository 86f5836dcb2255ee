//! Outbox and deliveries: claims, attempts, listings and replays.

use chrono::{DateTime, Utc};

use super::{postgres, run, Attempt, AttemptRow, ClaimedDelivery, DeliveryFilter, DeliveryRow, EventFilter, EventRow};
use super::{Backend, Store, StoreError};

impl Store {
    /// Claims up to `limit` due deliveries of `target` for `worker` until `lease_until` (an
    /// ordered target: only its oldest pending one, and only when no one holds it).
    pub async fn claim_deliveries(
        &self,
        target: &str,
        ordered: bool,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        worker: &str,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => {
                postgres::queue::claim(&pg.pool, target, ordered, now, lease_until, limit, worker).await
            }
            Backend::Sqlite(_) => run!(self, write, outbox::claim(target, ordered, now, lease_until, limit, worker)),
        }
    }

    /// Records the attempts `worker` finished, all in one transaction. (Postgres: the claim and the
    /// record in the forms of `postgres/queue.rs`, with the same answers.)
    pub async fn finish_attempts(
        &self,
        worker: &str,
        attempts: &[Attempt],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::queue::finish(&pg.pool, worker, attempts, now).await,
            Backend::Sqlite(_) => run!(self, write, outbox::finish(worker, attempts, now)),
        }
    }

    /// Hands claims back (shutdown): due now, the attempt not counted.
    pub async fn release_claims(&self, ids: &[i64], worker: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        run!(self, write, outbox::release(ids, worker, now))
    }

    pub async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
        run!(self, read, outbox::deliveries(filter))
    }

    pub async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRow>, StoreError> {
        run!(self, read, outbox::attempts(delivery_id))
    }

    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
        run!(self, read, outbox::events(filter))
    }

    /// Makes the matching delivered or dead deliveries due again; returns how many.
    pub async fn replay(&self, filter: &DeliveryFilter, now: DateTime<Utc>) -> Result<u64, StoreError> {
        run!(self, write, outbox::replay(filter, now))
    }
}
