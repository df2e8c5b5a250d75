//! `loom status` and `loom reload`: the running daemon.

use super::args::{Cli, Outcome};
use super::client::{Need, connect};
use crate::api::model::{ReloadView, StatusView};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

pub(crate) async fn execute(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let client = connect(cli, Need::Required).await?.expect("required");
    let status: StatusView = client.get("/status", &[]).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(Outcome::Success);
    }
    outln!("loom {} at {}: up {}", status.version, client.server(), uptime(status.uptime_seconds));
    outln!("configuration {}: {} job(s), {} node(s)", status.config, status.jobs, status.nodes);
    outln!("ssh masters open: {}", status.ssh_masters);
    if !status.config_errors.is_empty() {
        outln!("the last reload failed; the previous configuration is in force:");
        for error in &status.config_errors {
            outln!("  {error}");
        }
    }
    if !status.restart_pending.is_empty() {
        outln!("restart pending: these settings changed and take effect when the daemon restarts:");
        for pending in &status.restart_pending {
            outln!("  {}: {} in force, {} configured", pending.setting, pending.in_force, pending.configured);
        }
    }
    if !status.cluster.is_empty() {
        outln!("cluster: {} member(s)", status.cluster.len());
        for member in &status.cluster {
            outln!(
                "  {} pid {} ({}, loom {}), up since {}, last heartbeat {}",
                member.host,
                member.pid,
                member.command,
                member.version,
                member.started.format("%Y-%m-%d %H:%M:%S UTC"),
                member.heartbeat.format("%H:%M:%S UTC")
            );
            if let Some(hash) = &member.config_hash {
                outln!("    config {hash}");
            }
            if !member.config_mismatch.is_empty() {
                outln!(
                    "    CONFIGURATION DIFFERS from the longest-running member's; not fired here: {}",
                    member.config_mismatch.join(", ")
                );
            }
        }
        for work in &status.work {
            outln!(
                "  fire {} {} node {} attempt {}: run by {}",
                work.fire_id,
                work.job,
                work.node,
                work.attempt,
                work.daemon
            );
        }
    }
    outln!("running: {}", if status.running.is_empty() { "nothing".to_string() } else { String::new() });
    for fire in &status.running {
        let id = fire.id.map(|i| format!("fire {i}")).unwrap_or_default();
        outln!("  {} {} ({}, scheduled {})", fire.job, id, fire.trigger, fire.scheduled.format("%H:%M:%S"));
    }
    outln!("next:");
    for next in status.next.iter().take(10) {
        outln!("  {}  {}", next.at.format("%Y-%m-%d %H:%M:%S UTC"), next.job);
    }
    Ok(Outcome::Success)
}

#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    /// Print the outcome as JSON (the API's Reload) instead of text
    #[arg(long)]
    pub json: bool,
}

pub(crate) async fn reload(cli: &Cli, args: &ReloadArgs) -> anyhow::Result<Outcome> {
    let client = connect(cli, Need::Required).await?.expect("required");
    let outcome: ReloadView = client.post("/reload", &serde_json::json!({})).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(if outcome.ok { Outcome::Success } else { Outcome::Failure });
    }
    if outcome.ok {
        outln!("reloaded: {}", outcome.summary.unwrap_or_default());
        Ok(Outcome::Success)
    } else {
        errln!("reload failed; the previous configuration stays in force:");
        for error in &outcome.errors {
            errln!("  {error}");
        }
        Ok(Outcome::Failure)
    }
}

fn uptime(seconds: f64) -> String {
    let seconds = seconds as u64;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m {}s", seconds / 60, seconds % 60),
        _ => format!("{}h {}m", seconds / 3600, seconds % 3600 / 60),
    }
}
