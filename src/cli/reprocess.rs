//! `tanyi-relay reprocess`: feeds rejected callbacks through the store path again, after the
//! cause was fixed (a wrong key, a parser bug). What now parses is stored, announced and
//! delivered like any callback; the rejected rows stay in the inbox as history.

use std::path::Path;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::app::Services;
use crate::config::Settings;
use crate::domain::{Ingested, Source};
use crate::intake::IntakeError;
use crate::platform::xml::encrypt_text;

#[derive(Debug, Default, Serialize)]
struct Report {
    examined: u64,
    stored: u64,
    already_stored: u64,
    still_rejected: u64,
}

pub async fn run(account: Option<&str>, since: Option<DateTime<Utc>>, config: Option<&Path>) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let services = Services::connect(&settings).await?;
    let result = reprocess(&services, account, since).await;
    services.close().await;
    println!("{}", serde_json::to_string(&result?)?);
    Ok(())
}

async fn reprocess(services: &Services, account: Option<&str>, since: Option<DateTime<Utc>>) -> anyhow::Result<Report> {
    let (accounts, intake) = (&services.accounts, &services.intake);
    let mut report = Report::default();
    for row in services.store.rejected(account, since).await? {
        report.examined += 1;
        let account =
            accounts.get(&row.account).ok_or_else(|| anyhow!("account `{}` is no longer configured", row.account))?;
        let body = row.body.unwrap_or_default();
        // An encrypted body was kept because it did not decrypt; its signature was checked when it
        // arrived. Decrypt it with the account's key as configured now.
        let plaintext = match (&account.crypto, body.trim_ascii_start().starts_with(b"<")) {
            (Some(crypto), true) => match encrypt_text(&body).ok().map(|text| crypto.decrypt(&text)) {
                Some(Ok(plaintext)) => plaintext.into_bytes(),
                _ => {
                    report.still_rejected += 1;
                    continue;
                }
            },
            _ => body,
        };
        match intake.accept(account, &plaintext, Source::Push).await {
            Ok(Ingested::Duplicate) => report.already_stored += 1,
            Ok(_) => report.stored += 1,
            Err(IntakeError::Parse(_)) => report.still_rejected += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(report)
}
