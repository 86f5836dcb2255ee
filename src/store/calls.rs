//! Inbox and calls, as the application reads and enriches them.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::{run, CallFilter, CallListRow, Enrichment, InboxEntry, Store, StoreError, StoredCall, StoredTurn};
use crate::domain::Outbound;

impl Store {
    /// Every inbox row of an account, oldest first.
    pub async fn inbox(&self, account: &str) -> Result<Vec<InboxEntry>, StoreError> {
        run!(self, read, inbox::entries(account))
    }

    /// Rejected inbox rows that still have their body, oldest first.
    pub async fn rejected(
        &self,
        account: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        run!(self, read, inbox::rejected(account, since))
    }

    pub async fn call_record(&self, account: &str, call_record_id: i64) -> Result<Option<StoredCall>, StoreError> {
        run!(self, read, calls::call_record(account, call_record_id))
    }

    /// The account's calls matching `filter`, newest first.
    pub async fn calls(&self, account: &str, filter: &CallFilter) -> Result<Vec<CallListRow>, StoreError> {
        run!(self, read, calls::list(account, filter))
    }

    pub async fn call_turns(&self, account: &str, call_record_id: i64) -> Result<Vec<StoredTurn>, StoreError> {
        run!(self, read, calls::turns(account, call_record_id))
    }

    /// Which of `ids` the account already has as call records.
    pub async fn existing_call_ids(&self, account: &str, ids: &[i64]) -> Result<HashSet<i64>, StoreError> {
        run!(self, read, calls::existing_ids(account, ids))
    }

    /// Stores a call's enrichment. `announce` (a `call.updated` event) is written with it, in the
    /// same transaction, only when the corrected intent level changed; it is returned then.
    pub async fn enrich_call(
        &self,
        account: &str,
        call_record_id: i64,
        enrichment: &Enrichment,
        now: DateTime<Utc>,
        announce: Option<Outbound>,
    ) -> Result<Option<Outbound>, StoreError> {
        run!(self, write, calls::enrich(account, call_record_id, enrichment, now, announce))
    }
}
