//! A platform account as the running service knows it: typed once from the settings, then only read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::FixedOffset;

use crate::platform::client::ApiSettings;
use crate::platform::crypto::CallbackCrypto;
use crate::secret::Secret;

/// The callback key of the development account in `config/default.toml`. It is public, so a
/// production deployment must not accept it.
pub const DEVELOPMENT_CALLBACK_KEY: &str = "dev-only-insecure-callback-key";

#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    /// Plain `?key=` callbacks are accepted with any of these (several while a key is rotated);
    /// empty: plain callbacks are refused.
    pub callback_keys: Vec<Secret>,
    /// Set in encrypted mode.
    pub crypto: Option<CallbackCrypto>,
    /// The platform's local times for this account are read in this offset.
    pub utc_offset: FixedOffset,
    /// The platform's REST API, for reconciliation, enrichment and the `api` command.
    pub api: Option<ApiSettings>,
    /// Backfill a job's lost calls when its completion arrives (needs `api`).
    pub reconcile_on_job_completed: bool,
    /// Fetch each new call's detail (needs `api`).
    pub enrich_calls: bool,
    /// Also reconcile the running jobs this often (needs `api`).
    pub reconcile_interval: Option<Duration>,
}

impl Account {
    /// Whether `given` is one of the account's callback keys. Every key is compared (in constant
    /// time), so timing does not tell which one matched.
    pub fn accepts_key(&self, given: &[u8]) -> bool {
        self.callback_keys.iter().fold(false, |found, key| key.matches(given) | found)
    }

    pub fn uses_development_key(&self) -> bool {
        self.callback_keys.iter().any(|k| k.expose() == DEVELOPMENT_CALLBACK_KEY)
    }
}

/// The configured accounts by name. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Accounts(Arc<HashMap<String, Account>>);

impl Accounts {
    pub fn new(accounts: &[Account]) -> Self {
        Self(Arc::new(accounts.iter().map(|a| (a.name.clone(), a.clone())).collect()))
    }

    pub fn get(&self, name: &str) -> Option<&Account> {
        self.0.get(name)
    }

    pub fn all(&self) -> impl Iterator<Item = &Account> {
        self.0.values()
    }
}
