//! `tanyi-relay completeness ACCOUNT [JOB]`: whether jobs got every call, here and downstream.

use std::path::Path;

use crate::app::Services;
use crate::completeness::JobCompleteness;
use crate::config::Settings;

/// Jobs listed when no job is given: the latest by job id.
const JOBS_LISTED: i64 = 50;

pub async fn run(account: &str, job: Option<i64>, json: bool, config: Option<&Path>) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    if !settings.accounts.iter().any(|a| a.name == account) {
        anyhow::bail!("no account `{account}` in the configuration");
    }
    let services = Services::connect(&settings).await?;
    let jobs = match job {
        Some(job) => services.completeness.job(account, job).await.map(|j| j.into_iter().collect()),
        None => services.completeness.jobs(account, JOBS_LISTED).await,
    };
    services.close().await;
    let jobs = jobs?;
    if job.is_some() && jobs.is_empty() {
        anyhow::bail!("nothing is known about job {} of `{account}`", job.unwrap_or_default());
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
    } else {
        print!("{}", render(&jobs));
    }
    Ok(())
}

/// One row per job: its state, the calls by how they came, the deliveries, what is missing.
pub fn render(jobs: &[JobCompleteness]) -> String {
    let columns =
        ["job", "state", "reported", "pushed", "backfilled", "missing", "delivered", "pending", "dead", "gaps"];
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|job| {
            let sum =
                |f: fn(&crate::store::TargetDeliveries) -> i64| job.targets.iter().map(f).sum::<i64>().to_string();
            let gaps: Vec<String> = job.gaps.iter().map(|g| g.to_string()).collect();
            vec![
                job.robot_call_job_id.to_string(),
                job.state.as_str().to_owned(),
                job.calls.reported.map_or("-".into(), |n| n.to_string()),
                job.calls.pushed.to_string(),
                job.calls.backfilled.to_string(),
                job.calls.missing.map_or("-".into(), |n| n.to_string()),
                sum(|d| d.delivered),
                sum(|d| d.pending),
                sum(|d| d.dead),
                if gaps.is_empty() { "-".into() } else { gaps.join(", ") },
            ]
        })
        .collect();
    let columns: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
    super::table::grid(&columns, &rows)
}
