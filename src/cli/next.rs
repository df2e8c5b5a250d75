//! `loom next`: when a job, or any cron expression, fires next.
//!
//! Computed from the configuration (or the expression alone), with no daemon; the
//! store is only read, to say whether a job is disabled. With `--server`, the job's
//! schedule, zone, jitter and state are the daemon's (`GET /jobs/NAME`). A job's
//! fires are computed as the daemon plans them — its schedule in its zone, each
//! fire starting its jitter offset after its scheduled instant; a disabled job is
//! shown all the same, with a note. Exit 1 for an expression that never fires.

use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::args::{Cli, Outcome};
use crate::api::model::JobView;
use crate::schedule::cron::{Schedule, host_zone};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job whose schedule, zone and jitter to use
    #[arg(value_name = "JOB", required_unless_present = "schedule", conflicts_with = "schedule")]
    pub job: Option<String>,
    /// A cron expression to preview instead of a job's
    #[arg(long, value_name = "EXPR")]
    pub schedule: Option<String>,
    /// The expression's time zone (IANA name) [default: $TZ, else the host's]
    #[arg(long, value_name = "ZONE", requires = "schedule")]
    pub timezone: Option<String>,
    /// Fires strictly after this instant: RFC 3339 (2026-03-08T00:00:00-05:00), or a
    /// wall-clock time in the zone (2026-03-08T00:00:00) [default: now]
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// How many fires to show
    #[arg(short = 'n', long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=10000))]
    pub count: u16,
    /// Print JSON instead of one instant per line
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Preview {
    job: Option<String>,
    schedule: String,
    timezone: String,
    fires: Vec<PreviewedFire>,
}

#[derive(Serialize)]
struct PreviewedFire {
    /// The fire's identity: its scheduled instant.
    scheduled: String,
    /// When it starts: later by the job's jitter offset.
    starts: String,
}

pub(crate) async fn execute(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let (job, schedule, offset) = match (&args.job, &args.schedule) {
        (_, Some(text)) => {
            let zone = match &args.timezone {
                Some(name) => name.parse::<Tz>().map_err(|_| anyhow!("unknown time zone `{name}`"))?,
                None => host_zone(),
            };
            let schedule = Schedule::parse(text, zone).map_err(|why| anyhow!("bad cron expression `{text}`: {why}"))?;
            (None, schedule, chrono::TimeDelta::zero())
        }
        (Some(name), None) if cli.server.is_some() => {
            let client = super::client::connect(cli, super::client::Need::Required).await?.expect("required");
            let job: JobView = client.get(&format!("/jobs/{name}"), &[]).await?;
            let Some(text) = &job.schedule else {
                bail!("job `{name}` has no schedule: it runs only with `loom run`");
            };
            let zone = job.timezone.as_deref().and_then(|z| z.parse::<Tz>().ok()).unwrap_or(Tz::UTC);
            let schedule = Schedule::parse(text, zone).map_err(|why| anyhow!("bad cron expression `{text}`: {why}"))?;
            if !job.enabled {
                errln!(
                    "job `{name}` is disabled: the daemon fires it on these instants only after `loom enable {name}`"
                );
            }
            let offset = chrono::TimeDelta::milliseconds(i64::try_from(job.jitter_ms).context("jitter out of range")?);
            (Some(name.clone()), schedule, offset)
        }
        (Some(name), None) => {
            let (config, _) = crate::config::load(&cli.config_path()?);
            let Some(job) = config.jobs.get(name) else {
                bail!("no job named `{name}` in the configuration (`loom check` shows why one is missing)");
            };
            let Some(schedule) = job.schedule.clone() else {
                bail!("job `{name}` has no schedule: it runs only with `loom run`");
            };
            let offset = chrono::TimeDelta::from_std(job.jitter_offset()).context("jitter out of range")?;
            let settings = &config.settings;
            let store = Store::open_configured_read_only(&settings.state, settings.postgres.as_ref()).ok().flatten();
            if store.and_then(|s| s.disabled_jobs().ok()).is_some_and(|disabled| disabled.contains(name)) {
                errln!(
                    "job `{name}` is disabled: the daemon fires it on these instants only after `loom enable {name}`"
                );
            }
            (Some(name.clone()), schedule, offset)
        }
        (None, None) => bail!("name a job or give --schedule"),
    };
    let zone = schedule.zone();
    let from = match &args.from {
        Some(text) => parse_instant(text, zone)?,
        None => Utc::now(),
    };
    if schedule.is_reboot() {
        errln!("note: `{}` fires once when the daemon starts, never from the clock", schedule.text());
    } else if schedule.never_fires() {
        errln!("error: `{}` never fires: no date matches its day and month fields", schedule.text());
    }
    let mut fires = Vec::new();
    let mut at = from;
    while fires.len() < usize::from(args.count) {
        let Some(next) = schedule.next_after(at) else { break };
        let starts = next.checked_add_signed(offset).unwrap_or(next);
        fires.push(PreviewedFire { scheduled: show(next, zone), starts: show(starts, zone) });
        at = next;
    }
    if args.json {
        let preview = Preview { job, schedule: schedule.text().to_string(), timezone: zone.name().to_string(), fires };
        outln!("{}", serde_json::to_string_pretty(&preview)?);
    } else {
        for fire in &fires {
            if fire.starts == fire.scheduled {
                outln!("{}", fire.scheduled);
            } else {
                outln!("{}  (starts {} with jitter)", fire.scheduled, fire.starts);
            }
        }
    }
    Ok(if schedule.never_fires() { Outcome::Failure } else { Outcome::Success })
}

fn show(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone).to_rfc3339()
}

/// An RFC 3339 instant, or a wall-clock time read in `zone` (the first of two
/// instants in a repeated interval; a skipped time is an error).
fn parse_instant(text: &str, zone: Tz) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let wall = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .or_else(|| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
        .ok_or_else(|| anyhow!("--from `{text}` is not a time; expected e.g. 2026-03-08T00:00:00-05:00"))?;
    zone.from_local_datetime(&wall)
        .earliest()
        .map(|at| at.with_timezone(&Utc))
        .ok_or_else(|| anyhow!("--from `{text}` does not exist in {zone}: the clock skips it"))
}
