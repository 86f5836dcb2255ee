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

    /// Erases the person's data (see `sql/erasure.rs`): their calls, then every other mention of
    /// their number, and of their names where it belongs to no call. Mentions are searched by
    /// reading and cleared by id in short transactions. A dry run counts and changes nothing.
    pub async fn erase(
        &self,
        person: &ErasureSubject,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<ErasureCounts, StoreError> {
        let mut counts = ErasureCounts::default();
        run!(self, write, erasure::erase_calls_batched(person, now, dry_run, &mut counts))?;
        let needles = std::iter::once((person.phone_number.as_str(), false))
            .chain(person.names.iter().map(|name| (name.as_str(), true)));
        for (needle, unlinked_only) in needles {
            let account = person.account.as_str();
            let theirs = person.call_record_ids.as_slice();
            let found = run!(self, read, erasure::find_mentions(account, needle, unlinked_only, theirs))?;
            run!(self, write, erasure::clear_mentions(account, &found, now, dry_run, &mut counts))?;
        }
        Ok(counts)
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
