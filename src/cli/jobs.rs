//! `loom jobs`: what is configured, when each job fires next, how it last went.

use chrono::Utc;

use super::args::{Cli, Outcome, load_reporting};
use crate::store::{FireRecord, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn execute(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let path = cli.config_path()?;
    let (snapshot, errors) = load_reporting(&path, true);
    let state = &snapshot.config.settings.state;
    let store = state.exists().then(|| Store::open_read_only(state).ok()).flatten();
    let now = Utc::now();
    let mut rows = Vec::new();
    for job in snapshot.config.jobs.values() {
        let next = job.schedule.as_ref().and_then(|s| s.next_after(now).map(|at| at.with_timezone(&s.zone())));
        let schedule = job.schedule.as_ref().map_or("(manual)".to_string(), |s| s.text().to_string());
        let next_text = match (&job.schedule, next) {
            (_, Some(at)) => at.format("%Y-%m-%d %H:%M:%S %Z").to_string(),
            (Some(s), None) if s.is_reboot() => "at daemon start".to_string(),
            _ => "-".to_string(),
        };
        let last: Option<FireRecord> = store.as_ref().and_then(|s| s.last_fire(&job.name).ok().flatten());
        let enabled = store.as_ref().is_none_or(|s| s.is_enabled(&job.name).unwrap_or(true));
        rows.push((job, schedule, next, next_text, last, enabled));
    }
    if args.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(job, schedule, next, _, last, enabled)| {
                serde_json::json!({
                    "name": job.name,
                    "task": job.task.to_string(),
                    "schedule": schedule,
                    "timezone": job.schedule.as_ref().map(|s| s.zone().to_string()),
                    "next": next.map(|at| at.to_rfc3339()),
                    "targets": job.targets,
                    "description": job.description,
                    "enabled": enabled,
                    "last": last,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        let table: Vec<[String; 6]> = rows
            .iter()
            .map(|(job, schedule, _, next, last, enabled)| {
                let last = last.as_ref().map_or("-".to_string(), |f| {
                    format!("{} {} (fire {})", f.status, f.scheduled.format("%Y-%m-%d %H:%M:%S UTC"), f.id)
                });
                let next = if *enabled { next.clone() } else { "(disabled)".to_string() };
                [job.name.clone(), schedule.clone(), next, last, job.targets.join(","), job.task.to_string()]
            })
            .collect();
        super::table::print(&["JOB", "SCHEDULE", "NEXT", "LAST", "TARGETS", "TASK"], &table);
    }
    Ok(if errors > 0 { Outcome::Failure } else { Outcome::Success })
}
