//! Erasing a person's data on request, by phone number (PIPL, GDPR): everything the relay holds
//! about them is removed or redacted (`Store::erase`), the receivers are told to erase their copy
//! (`person.erased`), and a log proves it happened without keeping the number (a keyed hash).
//! docs/ERASURE.md says what is kept and why.

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::json;
use sha2::Sha256;

use crate::account::Accounts;
use crate::domain::{EventSubject, EventType};
use crate::fanout::envelope::operator_event;
use crate::intake::Intake;
use crate::store::{ErasureCounts, ErasureEntry, StoreError};

/// A phone number as the platform writes it (`calledPhoneNumber`, `phoneNumber`): digits, maybe a
/// leading `+`; spaces and dashes given with it are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(text: &str) -> Result<PhoneNumber, ErasureError> {
        let compact: String = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let digits = compact.strip_prefix('+').unwrap_or(&compact);
        if (5..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(PhoneNumber(compact))
        } else {
            Err(ErasureError::InvalidPhone)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For logs: the last four digits only.
    pub fn masked(&self) -> String {
        let tail = &self.0[self.0.len().saturating_sub(4)..];
        format!("***{tail}")
    }
}

#[derive(Debug, Clone)]
pub struct ErasureRequest {
    pub account: String,
    pub phone_number: PhoneNumber,
    /// Who asked (the admin API says `admin-api`, the CLI the local user).
    pub requested_by: String,
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErasureReport {
    pub account: String,
    /// HMAC-SHA-256 of the number under this database's erasure key.
    pub phone_hash: String,
    pub call_record_ids: Vec<i64>,
    pub counts: ErasureCounts,
    pub dry_run: bool,
    /// The log entry's id (none for a dry run).
    pub erasure_id: Option<i64>,
    /// The `person.erased` event's id, when a target wants it.
    pub event_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error("no such account")]
    UnknownAccount,
    #[error("phone_number: must be 5 to 20 digits, optionally after +")]
    InvalidPhone,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Erases the person (or, for a dry run, counts what would be erased).
pub async fn erase(
    intake: &Intake,
    accounts: &Accounts,
    request: &ErasureRequest,
) -> Result<ErasureReport, ErasureError> {
    if accounts.get(&request.account).is_none() {
        return Err(ErasureError::UnknownAccount);
    }
    let store = &intake.store;
    let person = store.erasure_subject(&request.account, request.phone_number.as_str()).await?;
    let now = crate::store::storable_now();
    let counts = store.erase(&person, now, request.dry_run).await?;
    let phone_hash = keyed_hash(&store.erasure_hash_key().await?, &request.phone_number);
    let mut report = ErasureReport {
        account: request.account.clone(),
        phone_hash,
        call_record_ids: person.call_record_ids,
        counts,
        dry_run: request.dry_run,
        erasure_id: None,
        event_id: None,
    };
    if request.dry_run {
        return Ok(report);
    }
    let data = json!({"phone_hash": report.phone_hash, "call_record_ids": report.call_record_ids});
    let outbound =
        operator_event(&intake.targets, EventType::PersonErased, &request.account, EventSubject::default(), &data, now);
    let entry = ErasureEntry {
        id: 0,
        account: request.account.clone(),
        phone_hash: report.phone_hash.clone(),
        requested_by: request.requested_by.clone(),
        erased_at: now,
        call_record_ids: sqlx::types::Json(report.call_record_ids.clone()),
        counts: sqlx::types::Json(report.counts.clone()),
    };
    report.erasure_id = Some(store.log_erasure(&entry, outbound.as_ref()).await?);
    if let Some(outbound) = &outbound {
        intake.wake.targets(&outbound.targets);
        report.event_id = Some(outbound.id.clone());
    }
    tracing::info!(
        account = %request.account,
        phone = %request.phone_number.masked(),
        calls = report.call_record_ids.len(),
        erasure_id = report.erasure_id,
        "person erased"
    );
    Ok(report)
}

/// The log's and the event's stand-in for the number: receivers that hash their own copy of the
/// number the same way cannot (they lack the key); they match on `call_record_ids`.
fn keyed_hash(key: &str, phone: &PhoneNumber) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(phone.as_str().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_digits_with_an_optional_plus_and_lose_their_separators() {
        assert_eq!(PhoneNumber::parse("138 0013-8000").unwrap().as_str(), "13800138000");
        assert_eq!(PhoneNumber::parse("+8613800138000").unwrap().as_str(), "+8613800138000");
        for bad in ["", "1234", "13800x38000", "'; DROP TABLE", "+", "123456789012345678901"] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(PhoneNumber::parse("13800138000").unwrap().masked(), "***8000");
    }

    #[test]
    fn the_hash_depends_on_the_key_and_the_number() {
        let a = PhoneNumber::parse("13800138000").unwrap();
        let b = PhoneNumber::parse("13800138001").unwrap();
        assert_eq!(keyed_hash("k1", &a), keyed_hash("k1", &a));
        assert_ne!(keyed_hash("k1", &a), keyed_hash("k2", &a));
        assert_ne!(keyed_hash("k1", &a), keyed_hash("k1", &b));
        assert_eq!(keyed_hash("k1", &a).len(), 64);
    }
}
