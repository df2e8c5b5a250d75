//! `loom cancel FIRE`: stop a running fire on the daemon and wait until it is
//! recorded (`interrupted`). Only a daemon runs fires that can be cancelled, so
//! one is required; a fire that is not running is an error, not a no-op.

use super::args::{Cli, Outcome};
use super::client::{Need, connect};
use crate::api::model::{Cancelled, FireDetail};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The fire's number (as `loom history` and `loom status` show it)
    #[arg(value_name = "FIRE")]
    pub fire: i64,
    /// Print the fire as recorded after cancelling, as JSON (the API's FireDetail)
    #[arg(long)]
    pub json: bool,
}

pub(crate) async fn execute(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let client = connect(cli, Need::Required).await?.expect("required");
    let id = args.fire;
    let _: Cancelled = client.post(&format!("/fires/{id}/cancel"), &serde_json::json!({})).await?;
    let detail: FireDetail = client.get(&format!("/fires/{id}"), &[("wait", "true".to_string())]).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&detail)?);
    } else {
        outln!("{}: fire {id} cancelled, recorded {}", detail.fire.job, detail.fire.status);
    }
    Ok(Outcome::Success)
}
