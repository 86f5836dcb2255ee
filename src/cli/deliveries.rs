//! `tanyi-relay deliveries list|show|replay`: the admin API's delivery operations, straight on the
//! database (a running worker picks replays up on its next poll, or at once on Postgres).

use std::path::Path;

use anyhow::{anyhow, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde_json::json;

use crate::admin::delivery_detail;
use crate::config::Settings;
use crate::domain::{DeliveryStatus, EventType};
use crate::store::{DeliveryFilter, Store};

#[derive(Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries, oldest first.
    List {
        #[arg(long)]
        target: Option<String>,
        /// pending, delivered or dead.
        #[arg(long, value_parser = parse_status)]
        status: Option<DeliveryStatus>,
        /// Event type, e.g. call.finished.
        #[arg(long = "type", value_parser = parse_event_type)]
        event_type: Option<EventType>,
        /// Only those created at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<DateTime<Utc>>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Show one delivery with its attempts and payload.
    Show { id: i64 },
    /// Replay one delivery (ID), or every dead delivery of a target (--target, optionally --since).
    Replay {
        id: Option<i64>,
        #[arg(long, conflicts_with = "id")]
        target: Option<String>,
        #[arg(long, requires = "target")]
        since: Option<DateTime<Utc>>,
    },
}

fn parse_status(text: &str) -> Result<DeliveryStatus, String> {
    text.parse().map_err(|e| format!("{e}: use pending, delivered or dead"))
}

fn parse_event_type(text: &str) -> Result<EventType, String> {
    EventType::parse(text).ok_or_else(|| format!("`{text}` is not an event type"))
}

pub async fn run(command: DeliveriesCommand, config: Option<&Path>) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let store = Store::connect(&settings.database).await?;
    let result = execute(command, &store).await;
    store.close().await;
    result
}

async fn execute(command: DeliveriesCommand, store: &Store) -> anyhow::Result<()> {
    match command {
        DeliveriesCommand::List { target, status, event_type, since, limit } => {
            let filter = DeliveryFilter { target, status, event_type, since, limit: Some(limit), ..Default::default() };
            println!("{}", serde_json::to_string_pretty(&store.deliveries(&filter).await?)?);
        }
        DeliveriesCommand::Show { id } => {
            let detail = delivery_detail(store, id).await?.ok_or_else(|| anyhow!("no delivery {id}"))?;
            println!("{}", serde_json::to_string_pretty(&detail)?);
        }
        DeliveriesCommand::Replay { id, target, since } => {
            let filter = match (id, target) {
                (Some(id), _) => DeliveryFilter { id: Some(id), ..Default::default() },
                (None, Some(target)) => DeliveryFilter {
                    target: Some(target),
                    status: Some(DeliveryStatus::Dead),
                    since,
                    ..Default::default()
                },
                (None, None) => bail!("give a delivery ID or --target"),
            };
            let replayed = store.replay(&filter, Utc::now()).await?;
            println!("{}", json!({ "replayed": replayed }));
        }
    }
    Ok(())
}
