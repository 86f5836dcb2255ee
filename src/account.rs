//! A platform account as the running service knows it, built once from validated settings.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::FixedOffset;

use crate::config::AccountSettings;
use crate::platform::crypto::CallbackCrypto;
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    /// Set when plain `?key=` callbacks are accepted.
    pub plain_key: Option<Secret>,
    /// Set in encrypted mode.
    pub crypto: Option<CallbackCrypto>,
    /// The platform's local times for this account are read in this offset.
    pub utc_offset: FixedOffset,
}

impl From<&AccountSettings> for Account {
    fn from(settings: &AccountSettings) -> Self {
        Self {
            name: settings.name.clone(),
            plain_key: settings.callback_key.clone().filter(|_| settings.accepts_plain()),
            // Settings are validated before an Account is built, so an invalid key cannot be here.
            crypto: settings.crypto().and_then(Result::ok),
            utc_offset: settings.offset(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Accounts(Arc<HashMap<String, Account>>);

impl Accounts {
    pub fn new(settings: &[AccountSettings]) -> Self {
        Self(Arc::new(settings.iter().map(|s| (s.name.clone(), Account::from(s))).collect()))
    }

    pub fn get(&self, name: &str) -> Option<&Account> {
        self.0.get(name)
    }
}
