//! `tanyi-relay erase --account ACCOUNT --phone NUMBER [--dry-run]`: a person's data erased.

use std::path::Path;

use crate::app::Services;
use crate::config::Settings;
use crate::erasure::{erase, ErasureRequest, PhoneNumber};

pub async fn run(account: &str, phone: &str, dry_run: bool, config: Option<&Path>) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let phone_number = PhoneNumber::parse(phone)?;
    let services = Services::connect(&settings).await?;
    if settings.database.migrate_on_start {
        services.store.migrate().await?;
    }
    let requested_by = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
    let request = ErasureRequest { account: account.to_owned(), phone_number, requested_by, dry_run };
    let report = erase(&services.intake, &services.accounts, &request).await;
    services.close().await;
    println!("{}", serde_json::to_string_pretty(&report?)?);
    Ok(())
}
