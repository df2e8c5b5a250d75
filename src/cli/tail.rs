//! `loom tail [JOB]`: live output of fires as they run, from the daemon's events.
//!
//! Follows the daemon across restarts and network breaks: it reconnects and picks
//! up after the last event it printed, and says so when events were lost meanwhile.
//! With `--json` each event is one line of JSON on stdout; what is said about the
//! connection stays on stderr.

use super::args::{Cli, Outcome};
use super::client::{Need, Streamed, connect};
use crate::api::model::{Event, Lagged};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this job's fires
    #[arg(value_name = "JOB")]
    pub job: Option<String>,
    /// Stop after this many fires have finished
    #[arg(long, value_name = "N")]
    pub fires: Option<usize>,
    /// Print each event as one line of JSON (NDJSON): the API's Event, or a Lagged
    #[arg(long)]
    pub json: bool,
}

pub(crate) async fn execute(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let client = connect(cli, Need::Required).await?.expect("required");
    let mut finished = 0;
    client
        .events(args.job.as_deref(), |item| {
            let event = match item {
                Streamed::Event(event) => event,
                Streamed::Lagged(missed) if args.json => {
                    json_line(&Lagged::new(missed));
                    return true;
                }
                Streamed::Lagged(missed) => {
                    outln!(
                        "!! {missed} event(s) missed: the daemon no longer had them; `loom history` and `loom logs` have the full record"
                    );
                    return true;
                }
                Streamed::Reconnecting(reason) => {
                    errln!("lost the daemon at {} ({reason}); reconnecting…", client.server());
                    return true;
                }
                Streamed::Connected { again: false } => {
                    errln!("following {} (Ctrl-C stops)", client.server());
                    return true;
                }
                Streamed::Connected { again: true } => {
                    errln!("following {} again", client.server());
                    return true;
                }
            };
            match &event {
                Event::FireFinished { .. } if args.json => {
                    json_line(&event);
                    finished += 1;
                }
                _ if args.json => json_line(&event),
                Event::FireStarted { fire, job, trigger, nodes, .. } => {
                    outln!("== {job} fire {} started ({trigger}) on {}", number(*fire), nodes.join(", "));
                }
                Event::Output { job, node, text, .. } => {
                    for line in text.lines() {
                        outln!("[{job} {node}] {line}");
                    }
                }
                Event::NodeFinished { job, node, status, error, seconds, attempt, resources, retrying, .. } => {
                    let error = error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
                    let summary = if resources.is_empty() {
                        String::new()
                    } else {
                        format!(", {}", crate::resource::Summary::of(resources))
                    };
                    let retrying = if *retrying { ", retrying" } else { "" };
                    outln!("[{job} {node}] {status} in {seconds:.2}s (attempt {attempt}{summary}{retrying}){error}");
                }
                Event::FireFinished { fire, job, status, seconds } => {
                    outln!("== {job} fire {} {status} in {seconds:.2}s", number(*fire));
                    finished += 1;
                }
            }
            // A closed stdout (`loom tail | head`) has no one left to follow for.
            !super::output::stdout_closed() && args.fires.is_none_or(|limit| finished < limit)
        })
        .await?;
    Ok(Outcome::Success)
}

fn json_line(value: &impl serde::Serialize) {
    match serde_json::to_string(value) {
        Ok(line) => outln!("{line}"),
        Err(err) => errln!("failed to print an event as JSON: {err}"),
    }
}

fn number(fire: Option<i64>) -> String {
    fire.map_or("-".to_string(), |f| f.to_string())
}
