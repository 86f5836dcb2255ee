//! Erasing a person's data, as the application asks for it.

use chrono::{DateTime, Utc};

use super::{run, ErasureCounts, ErasureEntry, ErasureSubject, Store, StoreError};
use crate::domain::Outbound;

impl Store {
    /// The person with this number: their calls and the names those give them.
    pub async fn erasure_subject(&self, account: &str, phone_number: &str) -> Result<ErasureSubject, StoreError> {
        let call_record_ids = run!(self, read, erasure::call_ids(account, phone_number))?;
        let names = run!(self, read, erasure::names(account, &call_record_ids))?;
        Ok(ErasureSubject {
            account: account.to_owned(),
            phone_number: phone_number.to_owned(),
            call_record_ids,
            names,
        })
    }

    /// Erases the person's data (see `sql/erasure.rs`); a dry run counts and changes nothing.
    pub async fn erase(
        &self,
        person: &ErasureSubject,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<ErasureCounts, StoreError> {
        run!(self, write, erasure::erase(person, now, dry_run))
    }

    /// The key of the erasure log's hashes, random per database.
    pub async fn erasure_hash_key(&self) -> Result<String, StoreError> {
        run!(self, read, erasure::hash_key())
    }

    /// Logs an erasure and writes its `person.erased` event, in one transaction; gives its id.
    pub async fn log_erasure(&self, entry: &ErasureEntry, outbound: Option<&Outbound>) -> Result<i64, StoreError> {
        run!(self, write, erasure::log(entry, outbound))
    }

    /// The erasure log, newest first.
    pub async fn erasures(&self, account: Option<&str>, limit: i64) -> Result<Vec<ErasureEntry>, StoreError> {
        run!(self, read, erasure::entries(account, limit))
    }
}
