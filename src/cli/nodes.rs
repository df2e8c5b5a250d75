//! `loom nodes`: the node manifest as Loom understood it, without secrets.

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
    let nodes = &snapshot.config.nodes;
    if args.json {
        let list: Vec<serde_json::Value> = nodes
            .values()
            .map(|n| {
                serde_json::json!({
                    "name": n.name,
                    "host": n.host,
                    "port": n.port,
                    "user": n.user,
                    "auth": n.auth(),
                    "local": n.local,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        let table: Vec<[String; 5]> = nodes
            .values()
            .map(|n| {
                [
                    n.name.clone(),
                    n.host.clone(),
                    n.port.map_or("-".to_string(), |p| p.to_string()),
                    n.user.clone().unwrap_or_else(|| "-".to_string()),
                    n.auth().to_string(),
                ]
            })
            .collect();
        super::table::print(&["NODE", "HOST", "PORT", "USER", "AUTH"], &table);
    }
    Ok(if errors > 0 { Outcome::Failure } else { Outcome::Success })
}
