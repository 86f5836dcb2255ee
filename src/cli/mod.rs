//! The command line: a thin layer over the library. `serve` is the default.

mod completeness;
mod crypto;
mod deliveries;
mod erase;
mod platform;
mod reprocess;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::Application;
use crate::config::{LogFormat, Settings};
use crate::store::Store;
use crate::telemetry;

#[derive(Parser)]
#[command(name = "tanyi-relay", version, about = "Receives, stores and relays the Tanyi platform's callbacks")]
struct Cli {
    /// Configuration file layered over the built-in defaults (environment variables still win).
    #[arg(long, global = true, env = "TANYI_RELAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Apply the retention settings once (drop old raw bodies, transcripts, delivery history).
    Purge,
    /// Feed rejected callbacks through the store path again, after a key or parser fix.
    Reprocess {
        /// Only this account's.
        #[arg(long)]
        account: Option<String>,
        /// Only those last seen at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Load and validate the configuration, print a summary without secrets, and exit.
    CheckConfig,
    /// Encrypt, decrypt or sign as the platform's encrypted callback mode does, to check an
    /// account's setup by hand.
    Crypto {
        #[command(subcommand)]
        action: crypto::CryptoCommand,
    },
    /// List, show and replay downstream deliveries.
    Deliveries {
        #[command(subcommand)]
        action: deliveries::DeliveriesCommand,
    },
    /// Call the platform's REST API as ACCOUNT (needs its [accounts.api] settings); prints JSON.
    Api {
        account: String,
        /// Print a readable table instead of JSON.
        #[arg(long)]
        table: bool,
        #[command(subcommand)]
        action: platform::ApiCommand,
    },
    /// Backfill the calls of a job that the relay never received.
    Reconcile { account: String, job_id: i64 },
    /// Whether the account's jobs (or one job) got every call, here and at every target.
    Completeness {
        account: String,
        job_id: Option<i64>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Erase a person's data by phone number, here, and (by a person.erased event) downstream.
    Erase {
        #[arg(long)]
        account: String,
        #[arg(long)]
        phone: String,
        /// Count what would be erased; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Play the platform: push a generated campaign's callbacks to a relay and report what happened.
    Simulate(SimulateArgs),
    /// Serve a mock of the platform's REST API (for trying the relay without the platform).
    MockPlatform {
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 3)]
        jobs: u32,
        #[arg(long, default_value_t = 250)]
        calls_per_job: u32,
        /// Also push every job's callbacks (then its completion) to this relay callback URL.
        #[arg(long)]
        push_to: Option<String>,
        /// With --push-to: lose this percentage of the calls, for reconciliation to recover.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100))]
        lose_percent: u64,
    },
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// The account's callback URL without its query, e.g. http://127.0.0.1:8080/callbacks/dev
    #[arg(long)]
    url: String,
    /// Plain mode: the account's callback key.
    #[arg(long, env = "TANYI_RELAY_SIM_KEY", hide_env_values = true, required_unless_present = "token")]
    key: Option<String>,
    /// Encrypted mode: the account's token (with --aes-key).
    #[arg(long, env = "TANYI_RELAY_SIM_TOKEN", hide_env_values = true, requires = "aes_key", conflicts_with = "key")]
    token: Option<String>,
    #[arg(long, env = "TANYI_RELAY_SIM_AES_KEY", hide_env_values = true)]
    aes_key: Option<String>,
    #[arg(long, default_value = "")]
    receive_id: String,
    #[arg(long, default_value_t = 1000)]
    calls: u32,
    #[arg(long, default_value_t = 4)]
    jobs: u32,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Requests per second at most.
    #[arg(long)]
    rate: Option<f64>,
    /// Chance (0 to 1) that an acknowledged callback is sent again.
    #[arg(long, default_value_t = 0.0)]
    duplicates: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// compressed (tens of milliseconds), platform (1, 2, 4 … minutes) or none.
    #[arg(long, default_value = "compressed", value_parser = ["compressed", "platform", "none"])]
    retry_schedule: String,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    use crate::sim::simulate::{run, Auth, Options, RetrySchedule};
    let auth = match (args.key, args.token, args.aes_key) {
        (_, Some(token), Some(aes_key)) => Auth::Encrypted {
            crypto: crate::platform::crypto::CallbackCrypto::new(&token, &aes_key, &args.receive_id)
                .map_err(|e| anyhow::anyhow!("--aes-key {e}"))?,
        },
        (Some(key), _, _) => Auth::Plain { key },
        _ => anyhow::bail!("give --key, or --token and --aes-key"),
    };
    let retry = match args.retry_schedule.as_str() {
        "platform" => RetrySchedule::Platform,
        "none" => RetrySchedule::None,
        _ => RetrySchedule::Compressed,
    };
    let options = Options {
        url: args.url.trim_end_matches('/').to_owned(),
        auth,
        calls: args.calls,
        jobs: args.jobs,
        concurrency: args.concurrency,
        rate: args.rate,
        duplicates: args.duplicates.clamp(0.0, 1.0),
        seed: args.seed,
        retry,
    };
    let summary = run(options).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "callbacks {}  requests {}  acked {}  retried {}  given up {}  duplicates {}\n\
             {:.2} s, {:.1} acked/s, ack latency ms p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
            summary.callbacks,
            summary.requests,
            summary.acked,
            summary.retried,
            summary.given_up,
            summary.duplicates_sent,
            summary.seconds,
            summary.throughput,
            summary.latency_ms.p50,
            summary.latency_ms.p90,
            summary.latency_ms.p99,
            summary.latency_ms.max
        );
    }
    if summary.given_up > 0 {
        anyhow::bail!("{} callbacks were never acknowledged", summary.given_up);
    }
    Ok(())
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    // `serve` logs in the configured format (its settings are loaded first); the other commands
    // print their results on stdout and log readable text on stderr.
    if !matches!(command, Command::Serve) {
        telemetry::init(LogFormat::Text);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tanyi-relay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Serve => serve(cli.config).await,
            Command::Migrate => migrate(cli.config).await,
            Command::Purge => purge(cli.config).await,
            Command::Reprocess { account, since } => {
                reprocess::run(account.as_deref(), since, cli.config.as_deref()).await
            }
            Command::CheckConfig => check_config(cli.config),
            Command::Crypto { action } => crypto::run(action, cli.config.as_deref()),
            Command::Deliveries { action } => deliveries::run(action, cli.config.as_deref()).await,
            Command::Api { account, table, action } => {
                platform::api(&account, action, table, cli.config.as_deref()).await
            }
            Command::Reconcile { account, job_id } => {
                platform::reconcile(&account, job_id, cli.config.as_deref()).await
            }
            Command::Completeness { account, job_id, json } => {
                completeness::run(&account, job_id, json, cli.config.as_deref()).await
            }
            Command::Erase { account, phone, dry_run } => {
                erase::run(&account, &phone, dry_run, cli.config.as_deref()).await
            }
            Command::Simulate(args) => simulate(args).await,
            Command::MockPlatform { listen, seed, jobs, calls_per_job, push_to, lose_percent } => {
                platform::mock_platform(platform::MockOptions {
                    listen,
                    seed,
                    jobs,
                    calls_per_job,
                    push_to,
                    lose_percent,
                })
                .await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tanyi-relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    telemetry::init(settings.telemetry.format);
    let shutdown = shutdown_signal()?;
    let app = Application::build(&settings).await?;
    let addr = app.local_addr();
    tracing::info!(%addr, database = app.store().backend().as_str(), "tanyi-relay listening");
    let base = settings.public_base_url(addr);
    for account in &settings.accounts {
        if account.uses_development_key() {
            // This key is public (it ships in config/default.toml), so printing it leaks nothing.
            tracing::warn!(
                "development account `{}`: register {base}/callbacks/{}?key={} (not for production)",
                account.name,
                account.name,
                crate::config::DEVELOPMENT_CALLBACK_KEY
            );
        } else if account.crypto.is_some() {
            tracing::info!("account `{}` (encrypted mode): register {base}/callbacks/{}", account.name, account.name);
        } else {
            tracing::info!(
                "account `{}`: register {base}/callbacks/{}?key=<its callback_key>",
                account.name,
                account.name
            );
        }
    }
    app.run_until(shutdown).await?;
    tracing::info!("tanyi-relay stopped");
    Ok(())
}

async fn migrate(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    let store = Store::connect(&settings.database).await?;
    store.migrate().await?;
    println!("migrations applied ({})", store.backend().as_str());
    store.close().await;
    Ok(())
}

async fn purge(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    let store = Store::connect(&settings.database).await?;
    let report = store.purge(&crate::store::Cutoffs::at(&settings.retention, chrono::Utc::now())).await;
    store.close().await;
    match report? {
        Some(report) => println!("{}", serde_json::to_string(&report)?),
        None => println!("{}", serde_json::json!({ "skipped": "another replica is applying retention now" })),
    }
    Ok(())
}

fn check_config(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    println!("configuration is valid");
    println!("listen: {}", settings.server.listen);
    println!(
        "memory: at most about {} MiB with these limits (size the container from it)",
        settings.memory_bound_bytes() >> 20
    );
    println!("database: {} (url: {})", settings.database.backend.as_str(), settings.database.url.origin());
    if let Some(token) = &settings.admin.token {
        println!("admin token: {}", token.origin());
    }
    for account in &settings.accounts {
        let mode = if account.crypto.is_some() { "encrypted" } else { "plain" };
        println!("account: {} ({mode}, utc_offset {})", account.name, account.utc_offset);
        for (i, key) in account.callback_keys.iter().enumerate() {
            println!("  callback key {}: {}", i + 1, key.origin());
        }
        if let Some(api) = &account.api {
            println!(
                "  api: {} (app_key {}, app_secret {}, tenant_sign {})",
                api.base_url,
                api.app_key.origin(),
                api.app_secret.origin(),
                api.tenant_sign.origin()
            );
        }
    }
    for target in &settings.targets {
        println!("target: {} ({})", target.name, target.url.host_str().unwrap_or_default());
        for (i, secret) in target.secrets.iter().enumerate() {
            println!("  signing secret {}: {}", i + 1, secret.origin());
        }
        for (name, value) in &target.headers {
            println!("  header {name}: {}", value.origin());
        }
    }
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers now (before the service says it is listening, so that
/// an early signal still stops it gracefully) and returns the future that completes on either.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::info!("shutting down: finishing in-flight requests");
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: finishing in-flight requests");
    })
}
