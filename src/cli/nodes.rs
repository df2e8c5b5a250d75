//! `loom nodes`: the node manifest as Loom understood it, without secrets.

use super::args::{Cli, Outcome, load_reporting};
use super::history::remote;
use crate::api::model::NodeView;

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
        config.nodes.keys().for_each(|name| outln!("{name}"));
        return Ok(Outcome::Success);
    }
    let (nodes, errors) = match remote(cli).await? {
        Some(client) => (client.get::<Vec<NodeView>>("/nodes", &[]).await?, 0),
        None => {
            let (snapshot, errors) = load_reporting(&cli.config_path()?, true);
            (snapshot.config.nodes.values().map(|n| NodeView::from(n.as_ref())).collect(), errors)
        }
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&nodes)?);
    } else {
        let table: Vec<[String; 5]> = nodes
            .iter()
            .map(|n| {
                [
                    n.name.clone(),
                    n.host.clone(),
                    n.port.map_or("-".to_string(), |p| p.to_string()),
                    n.user.clone().unwrap_or_else(|| "-".to_string()),
                    n.auth.clone(),
                ]
            })
            .collect();
        super::table::print(&["NODE", "HOST", "PORT", "USER", "AUTH"], &table);
    }
    Ok(if errors > 0 { Outcome::Failure } else { Outcome::Success })
}
