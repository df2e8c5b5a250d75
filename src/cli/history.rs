//! `loom history [JOB]`: past fires from the state store (no daemon needed).

use anyhow::Context;

use super::args::{Cli, Outcome};
use super::client::{Client, Need, connect};
use crate::store::{FireFilter, FireRecord, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this job's fires
    #[arg(value_name = "JOB")]
    pub job: Option<String>,
    /// Only fires that ran on this node
    #[arg(short, long, value_name = "NODE")]
    pub node: Option<String>,
    /// Only failed, timed-out and interrupted fires
    #[arg(long)]
    pub failed: bool,
    /// Only check-mode fires that found drift (a node differs from its resources)
    #[arg(long)]
    pub drift: bool,
    /// How many fires, newest first
    #[arg(short, long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

pub(crate) async fn execute(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let fires: Vec<FireRecord> = match remote(cli).await? {
        Some(client) => {
            let mut query = vec![
                ("limit", args.limit.to_string()),
                ("failed", args.failed.to_string()),
                ("drift", args.drift.to_string()),
            ];
            query.extend(args.job.clone().map(|j| ("job", j)));
            query.extend(args.node.clone().map(|n| ("node", n)));
            client.get("/fires", &query).await?
        }
        None => {
            let store = open_store(cli)?;
            let filter = FireFilter {
                job: args.job.clone(),
                node: args.node.clone(),
                failed_only: args.failed,
                drift_only: args.drift,
                before: None,
                limit: args.limit,
            };
            store.fires(&filter)?
        }
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&fires)?);
        return Ok(Outcome::Success);
    }
    let rows: Vec<[String; 7]> = fires.iter().map(row).collect();
    super::table::print(&["FIRE", "JOB", "SCHEDULED", "TRIGGER", "STATUS", "NODES", "TOOK"], &rows);
    Ok(Outcome::Success)
}

fn row(fire: &FireRecord) -> [String; 7] {
    let took = match (fire.started, fire.finished) {
        (Some(start), Some(end)) => format!("{:.2}s", (end - start).num_milliseconds() as f64 / 1000.0),
        (Some(_), None) => "running".to_string(),
        _ => "-".to_string(),
    };
    let nodes = if fire.nodes.is_empty() { "-".to_string() } else { format!("{} ok, {} failed", fire.ok, fire.failed) };
    [
        fire.id.to_string(),
        fire.job.clone(),
        fire.scheduled.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string(),
        fire.trigger.to_string(),
        fire.status.to_string(),
        nodes,
        took,
    ]
}

/// The daemon named with `--server`, if any: history is otherwise read from the
/// store directly, which gives the same answers without a daemon.
pub(crate) async fn remote(cli: &Cli) -> anyhow::Result<Option<Client>> {
    if cli.server.is_some() { connect(cli, Need::Required).await } else { Ok(None) }
}

/// The store named by the configuration, opened for reading.
pub(crate) fn open_store(cli: &Cli) -> anyhow::Result<Store> {
    let path = cli.config_path()?;
    let (config, _) = crate::config::load(&path);
    let settings = &config.settings;
    let state = &settings.state;
    match Store::open_configured_read_only(state, settings.postgres.as_ref()) {
        Ok(Some(store)) => Ok(store),
        Ok(None) => anyhow::bail!(
            "no history yet: {} does not exist (it is made by `loom serve` or `loom run`)",
            state.display()
        ),
        Err(err) => Err(err).with_context(|| match &settings.postgres {
            Some(target) => format!("failed to read the history in {}", target.describe()),
            None => format!("failed to read the history in {}", state.display()),
        }),
    }
}
