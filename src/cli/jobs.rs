//! `loom jobs`: what is configured and when each job fires next.

use chrono::Utc;

use super::args::{Cli, Outcome, load_reporting};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn execute(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let path = cli.config_path()?;
    let (snapshot, errors) = load_reporting(&path, true);
    let now = Utc::now();
    let mut rows = Vec::new();
    for job in snapshot.config.jobs.values() {
        let next = job
            .schedule
            .as_ref()
            .and_then(|s| s.next_after(now).map(|at| at.with_timezone(&s.zone())));
        let schedule = match &job.schedule {
            Some(s) => s.text().to_string(),
            None => "(manual)".to_string(),
        };
        let next_text = match (&job.schedule, next) {
            (_, Some(at)) => at.format("%Y-%m-%d %H:%M:%S %Z").to_string(),
            (Some(s), None) if s.is_reboot() => "at daemon start".to_string(),
            _ => "-".to_string(),
        };
        rows.push((job, schedule, next, next_text));
    }
    if args.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(job, schedule, next, _)| {
                serde_json::json!({
                    "name": job.name,
                    "task": job.task.to_string(),
                    "schedule": schedule,
                    "timezone": job.schedule.as_ref().map(|s| s.zone().to_string()),
                    "next": next.map(|at| at.to_rfc3339()),
                    "targets": job.targets,
                    "description": job.description,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        let table: Vec<[String; 5]> = rows
            .iter()
            .map(|(job, schedule, _, next)| {
                [
                    job.name.clone(),
                    schedule.clone(),
                    next.clone(),
                    job.targets.join(","),
                    job.task.to_string(),
                ]
            })
            .collect();
        super::table::print(&["JOB", "SCHEDULE", "NEXT", "TARGETS", "TASK"], &table);
    }
    Ok(if errors > 0 {
        Outcome::Failure
    } else {
        Outcome::Success
    })
}
