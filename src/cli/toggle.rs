//! `loom enable JOB` / `loom disable JOB`: whether a job fires on its schedule.
//!
//! Kept in the state store, so it survives restarts and reloads; through the daemon
//! when one answers, else written to the store directly (the daemon reads it before
//! every fire).

use anyhow::bail;

use super::args::{Cli, Outcome};
use super::client::{Need, connect};
use crate::api::model::JobView;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job
    #[arg(value_name = "JOB")]
    pub job: String,
}

pub(crate) async fn execute(cli: &Cli, args: &Args, enabled: bool) -> anyhow::Result<Outcome> {
    let word = if enabled { "enabled" } else { "disabled" };
    if let Some(client) = connect(cli, Need::Optional).await? {
        let action = if enabled { "enable" } else { "disable" };
        let job: JobView = client.post(&format!("/jobs/{}/{action}", args.job), &serde_json::json!({})).await?;
        outln!("{}: {word}", job.name);
        return Ok(Outcome::Success);
    }
    let path = cli.config_path()?;
    let (config, _) = crate::config::load(&path);
    if !config.jobs.contains_key(&args.job) {
        let known: Vec<&str> = config.jobs.keys().map(String::as_str).collect();
        bail!("no job named `{}`; jobs: {}", args.job, known.join(", "));
    }
    Store::open(&config.settings.state)?.set_enabled(&args.job, enabled)?;
    outln!("{}: {word}", args.job);
    Ok(Outcome::Success)
}
