//! `loom jobs`: what is configured, when each job fires next, how it last went.

use chrono::Utc;

use super::args::{Cli, Outcome, load_reporting};
use super::history::remote;
use crate::api::model::JobView;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// Print only the names, one per line (for shell completion)
    #[arg(long, hide = true)]
    pub names: bool,
}

pub(crate) async fn execute(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    if args.names {
        let (config, _) = crate::config::load(&cli.config_path()?);
        config.jobs.keys().for_each(|name| outln!("{name}"));
        return Ok(Outcome::Success);
    }
    let (jobs, errors) = match remote(cli).await? {
        Some(client) => (client.get::<Vec<JobView>>("/jobs", &[]).await?, 0),
        None => local(cli)?,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&jobs)?);
    } else {
        let table: Vec<[String; 6]> = jobs.iter().map(row).collect();
        super::table::print(&["JOB", "SCHEDULE", "NEXT", "LAST", "TARGETS", "TASK"], &table);
    }
    Ok(if errors > 0 { Outcome::Failure } else { Outcome::Success })
}

/// The jobs as the configuration and the store have them.
fn local(cli: &Cli) -> anyhow::Result<(Vec<JobView>, usize)> {
    let path = cli.config_path()?;
    let (snapshot, errors) = load_reporting(&path, true);
    let settings = &snapshot.config.settings;
    let store = Store::open_configured_read_only(&settings.state, settings.postgres.as_ref()).ok().flatten();
    let disabled = store.as_ref().and_then(|s| s.disabled_jobs().ok()).unwrap_or_default();
    let mut last = store.as_ref().and_then(|s| s.last_fires().ok()).unwrap_or_default();
    let now = Utc::now();
    let jobs = snapshot
        .config
        .jobs
        .values()
        .map(|job| {
            let enabled = !disabled.contains(&job.name);
            let last = last.remove(&job.name);
            let next = job.schedule.as_ref().and_then(|s| s.next_after(now)).filter(|_| enabled);
            JobView::new(job, next, enabled, last)
        })
        .collect();
    Ok((jobs, errors))
}

fn row(job: &JobView) -> [String; 6] {
    let schedule = job.schedule.clone().unwrap_or_else(|| "(manual)".to_string());
    let zone: Option<chrono_tz::Tz> = job.timezone.as_deref().and_then(|z| z.parse().ok());
    let next = match (&job.next, zone) {
        _ if !job.enabled => "(disabled)".to_string(),
        (Some(at), Some(zone)) => at.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S %Z").to_string(),
        (Some(at), None) => at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        (None, _) if schedule.eq_ignore_ascii_case("@reboot") => "at daemon start".to_string(),
        (None, _) => "-".to_string(),
    };
    let last = job.last.as_ref().map_or("-".to_string(), |f| {
        format!("{} {} (fire {})", f.status, f.scheduled.format("%Y-%m-%d %H:%M:%S UTC"), f.id)
    });
    [job.name.clone(), schedule, next, last, job.targets.join(","), what(job)]
}

/// The task, the resources, or both.
fn what(job: &JobView) -> String {
    let resources = match job.resources {
        0 => None,
        1 => Some("1 resource".to_string()),
        n => Some(format!("{n} resources")),
    };
    let check = if job.check { " (check)" } else { "" };
    match (&job.task, resources) {
        (Some(task), Some(r)) => format!("{r}{check}, {task}"),
        (Some(task), None) => task.clone(),
        (None, Some(r)) => format!("{r}{check}"),
        (None, None) => "-".to_string(),
    }
}
