//! `loom logs FIRE`: what each node of a fire did, with its output.

use anyhow::bail;

use super::args::{Cli, Outcome};
use super::history::{open_store, remote};
use crate::api::model::FireDetail;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The fire's number (see `loom history`)
    pub fire: i64,
    /// Only this node
    #[arg(short, long)]
    pub node: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

pub(crate) async fn execute(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let FireDetail { fire, mut results } = match remote(cli).await? {
        Some(client) => client.get(&format!("/fires/{}", args.fire), &[]).await?,
        None => {
            let store = open_store(cli)?;
            let Some(fire) = store.fire(args.fire)? else { bail!("no fire {} in the history", args.fire) };
            let results = store.node_results(fire.id)?;
            FireDetail { fire, results }
        }
    };
    if let Some(node) = &args.node {
        results.retain(|r| &r.node == node);
        if results.is_empty() {
            bail!("fire {} has no result for node `{node}`", fire.id);
        }
    }
    if args.json {
        let value = serde_json::json!({ "fire": fire, "results": results });
        outln!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(Outcome::Success);
    }
    outln!(
        "fire {} of {}: scheduled {}, trigger {}, {}{}",
        fire.id,
        fire.job,
        fire.scheduled.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
        fire.trigger,
        fire.status,
        fire.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
    );
    for result in &results {
        let code = result.exit_code.map(|c| format!(", exit {c}")).unwrap_or_default();
        outln!(
            "\n== {} attempt {}: {} in {:.2}s{code}",
            result.node,
            result.attempt,
            result.status,
            result.duration_ms as f64 / 1000.0
        );
        if let Some(error) = &result.error {
            outln!("error: {error}");
        }
        if !result.resources.is_empty() {
            outln!("resources: {}", crate::resource::Summary::of(&result.resources));
            for outcome in &result.resources {
                let fields: Vec<&str> = outcome.changes.iter().map(|c| c.field.as_str()).collect();
                let fields = if fields.is_empty() { String::new() } else { format!(": {}", fields.join(", ")) };
                let reason = outcome.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
                outln!("  {:<9} {}{fields}{reason}", outcome.status.to_string(), outcome.resource);
                for line in outcome.diff.iter().flat_map(|d| d.lines()) {
                    outln!("    {line}");
                }
            }
        }
        for line in result.output.lines() {
            outln!("| {line}");
        }
    }
    Ok(Outcome::Success)
}
