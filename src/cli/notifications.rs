//! `loom notifications [--job J]`: the notification outbox, each notification with
//! its delivery attempts — from the store, or from the daemon named with `--server`.

use super::args::{Cli, Outcome};
use super::history::{open_store, remote};
use crate::store::NotificationRecord;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this job's notifications
    #[arg(long, value_name = "JOB")]
    pub job: Option<String>,
    /// How many notifications, newest first
    #[arg(short, long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON instead of a table (each notification with all its attempts)
    #[arg(long)]
    pub json: bool,
}

pub(crate) async fn execute(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let notifications: Vec<NotificationRecord> = match remote(cli).await? {
        Some(client) => {
            let mut query = vec![("limit", args.limit.to_string())];
            query.extend(args.job.clone().map(|j| ("job", j)));
            client.get("/notifications", &query).await?
        }
        None => open_store(cli)?.notifications(args.job.as_deref(), args.limit)?,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&notifications)?);
        return Ok(Outcome::Success);
    }
    let rows: Vec<[String; 8]> = notifications.iter().map(row).collect();
    super::table::print(&["ID", "JOB", "FIRE", "EVENT", "TO", "STATE", "ATTEMPTS", "LAST ATTEMPT"], &rows);
    Ok(Outcome::Success)
}

fn row(n: &NotificationRecord) -> [String; 8] {
    let last = match n.attempts.last() {
        None => "-".to_string(),
        Some(attempt) => {
            let at = attempt.at.format("%Y-%m-%d %H:%M:%S UTC");
            let what = match (&attempt.error, attempt.status_code) {
                (None, Some(code)) => format!("HTTP {code}"),
                (None, None) => "ok".to_string(),
                (Some(error), _) => error.clone(),
            };
            let next = n.next_attempt.map(|at| format!("; next {}", at.format("%H:%M:%S UTC"))).unwrap_or_default();
            format!("{at} {what} ({} ms){next}", attempt.duration_ms)
        }
    };
    [
        n.id.to_string(),
        n.job.clone(),
        n.fire_id.map_or("-".to_string(), |id| id.to_string()),
        n.event.to_string(),
        format!("{} {}", n.kind, n.target),
        n.state.to_string(),
        n.attempts.len().to_string(),
        last,
    ]
}
