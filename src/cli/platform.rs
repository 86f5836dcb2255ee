//! `tanyi-relay api …`, `tanyi-relay reconcile …` and `tanyi-relay mock-platform …`: the platform's
//! REST API by hand, reconciliation on demand, and a mock platform to try them against.

use std::path::Path;

use anyhow::{anyhow, Context};

use super::table::print_json;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::app::Services;
use crate::config::Settings;
use crate::platform::client::PlatformClient;
use crate::sim::mock_platform::{MockConfig, MockPlatform};

#[derive(Subcommand)]
pub enum ApiCommand {
    /// The account itself.
    Tenant,
    /// Caller lines.
    Lines,
    /// Robot scripts (dialog flows).
    Scripts,
    /// Jobs, first page of 100.
    Jobs {
        #[arg(long)]
        status: Option<String>,
    },
    /// One job.
    Job { id: i64 },
    /// A job's statistics.
    JobStats { id: i64 },
    /// A job's finished calls (every page).
    Calls {
        job_id: i64,
        /// Only these intent levels, e.g. A,B.
        #[arg(long, value_delimiter = ',')]
        intent: Vec<String>,
    },
    /// One call with its detail.
    Call { id: i64 },
    /// Register this relay's callback URL with the platform.
    RegisterCallback {
        url: String,
        #[arg(long)]
        sms_url: Option<String>,
    },
}

pub async fn api(account: &str, command: ApiCommand, table: bool, config: Option<&Path>) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let account_settings =
        settings.accounts.iter().find(|a| a.name == account).ok_or_else(|| anyhow!("no account named `{account}`"))?;
    let api =
        account_settings.api.as_ref().ok_or_else(|| anyhow!("account `{account}` has no [accounts.api] settings"))?;
    let client = PlatformClient::new(api);
    let out: Value = match command {
        ApiCommand::Tenant => serde_json::to_value(client.get_tenant().await?)?,
        ApiCommand::Lines => client.get_phone_list().await?,
        ApiCommand::Scripts => client.get_dialog_flow_list().await?,
        ApiCommand::Jobs { status } => serde_json::to_value(client.get_jobs(status.as_deref(), 1, 100).await?)?,
        ApiCommand::Job { id } => client.get_job_detail(id).await?,
        ApiCommand::JobStats { id } => client.get_job_stats(id).await?,
        ApiCommand::Calls { job_id, intent } => {
            let mut all = Vec::new();
            let mut pages = client.call_record_pages(job_id);
            while let Some(records) = pages.next().await? {
                all.extend(records.into_iter().filter(|r| {
                    intent.is_empty() || r["intentLevel"].as_str().is_some_and(|l| intent.iter().any(|i| i == l))
                }));
            }
            Value::Array(all)
        }
        ApiCommand::Call { id } => client.call_detail(id).await?,
        ApiCommand::RegisterCallback { url, sms_url } => {
            client.update_isv_info(&url, sms_url.as_deref()).await?;
            json!({ "registered": url, "sms": sms_url.as_deref().unwrap_or(&url) })
        }
    };
    print_json(&out, table)
}

/// Reconciles one job now. Backfilled calls get their outbox rows like any other; a running relay
/// delivers them.
pub async fn reconcile(account: &str, job_id: i64, config: Option<&Path>) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let services = Services::connect(&settings).await?;
    if settings.database.migrate_on_start {
        services.store.migrate().await?;
    }
    let result = services.follow_ups.reconcile_job(account, job_id, None).await;
    services.close().await;
    println!("{}", serde_json::to_string_pretty(&result?)?);
    Ok(())
}

pub struct MockOptions {
    pub listen: String,
    pub seed: u64,
    pub jobs: u32,
    pub calls_per_job: u32,
    pub push_to: Option<String>,
    pub lose_percent: u64,
}

pub async fn mock_platform(options: MockOptions) -> anyhow::Result<()> {
    let job_list = (0..i64::from(options.jobs)).map(|i| (1000 + i, options.calls_per_job)).collect();
    let platform = MockPlatform::new(MockConfig::new(options.seed, job_list));
    let config = platform.config().clone();
    let listen = &options.listen;
    let base = platform.clone().start(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    println!(
        "mock platform on {base}\n[accounts.api]\nbase_url = \"{base}\"\napp_key = \"{}\"\napp_secret = \"{}\"\ntenant_sign = \"{}\"",
        config.app_key, config.app_secret, config.tenant_sign
    );
    if let Some(url) = &options.push_to {
        let report = platform.push_callbacks(url, options.lose_percent).await.context("pushing callbacks")?;
        println!("pushed: {}", serde_json::to_string(&report)?);
    }
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    Ok(())
}
