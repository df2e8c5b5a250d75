//! `loom enable JOB` / `loom disable JOB`: whether a job fires on its schedule.
//!
//! Kept in the state store, so it survives restarts and reloads; through the daemon
//! when one answers, else written to the store directly (the daemon reads it before
//! every fire).

use anyhow::bail;
use chrono::Utc;

use super::args::{Cli, Outcome};
use super::client::{Need, connect};
use crate::api::model::JobView;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job
    #[arg(value_name = "JOB")]
    pub job: String,
    /// Print the job afterwards as JSON (as `loom jobs --json` shows each job)
    #[arg(long)]
    pub json: bool,
}

pub(crate) async fn execute(cli: &Cli, args: &Args, enabled: bool) -> anyhow::Result<Outcome> {
    if let Some(client) = connect(cli, Need::Optional).await? {
        let action = if enabled { "enable" } else { "disable" };
        let job: JobView = client.post(&format!("/jobs/{}/{action}", args.job), &serde_json::json!({})).await?;
        return show(&job, args);
    }
    let path = cli.config_path()?;
    let (config, _) = crate::config::load(&path);
    let Some(job) = config.jobs.get(&args.job) else {
        let known: Vec<&str> = config.jobs.keys().map(String::as_str).collect();
        bail!("no job named `{}`; jobs: {}", args.job, known.join(", "));
    };
    let command = if enabled { "loom enable" } else { "loom disable" };
    let store = Store::open_configured(&config.settings.state, config.settings.postgres.as_ref(), command)?;
    store.set_enabled(&args.job, enabled).await?;
    let next = job.schedule.as_ref().and_then(|s| s.next_after(Utc::now())).filter(|_| enabled);
    let view = JobView::new(job, next, enabled, store.last_fire(&job.name)?);
    show(&view, args)
}

fn show(job: &JobView, args: &Args) -> anyhow::Result<Outcome> {
    if args.json {
        outln!("{}", serde_json::to_string_pretty(job)?);
    } else {
        outln!("{}: {}", job.name, if job.enabled { "enabled" } else { "disabled" });
    }
    Ok(Outcome::Success)
}
