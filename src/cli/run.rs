//! `loom run JOB [--node N]…`: apply a job now, here, show each node's result, and
//! record the fire in the history (trigger `manual`).

use std::sync::Arc;

use anyhow::bail;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::args::{Cli, Outcome, load_reporting};
use crate::runner::{Fire, NodeResult, Recorder, Runner};
use crate::ssh::Pool;
use crate::store::{Store, Trigger};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job to run
    pub job: String,
    /// Run only on this node (repeatable); any node of the manifest may be named
    #[arg(short, long = "node", value_name = "NODE")]
    pub nodes: Vec<String>,
    /// Print each node's output, not only failures'
    #[arg(short, long)]
    pub verbose: bool,
}

pub(crate) async fn execute(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let path = cli.config_path()?;
    let (snapshot, errors) = load_reporting(&path, false);
    let config = &snapshot.config;
    let Some(job) = config.jobs.get(&args.job).cloned() else {
        if errors > 0 {
            load_reporting(&path, true);
            bail!("job `{}` is not usable: the configuration has {errors} error(s), shown above", args.job);
        }
        let known: Vec<&str> = config.jobs.keys().map(String::as_str).collect();
        bail!("no job named `{}`; jobs: {}", args.job, known.join(", "));
    };
    if errors > 0 {
        eprintln!("note: other parts of the configuration have {errors} error(s); see `loom check`");
    }
    let names = if args.nodes.is_empty() { job.targets.clone() } else { args.nodes.clone() };
    let mut nodes = Vec::new();
    for name in &names {
        match config.nodes.get(name) {
            Some(node) => nodes.push(Arc::clone(node)),
            None => bail!("no node named `{name}` in the node manifest"),
        }
    }
    let store = match Store::open(&config.settings.state) {
        Ok(store) => Some(Arc::new(store)),
        Err(err) => {
            eprintln!("warning: this run is not recorded in the history: {err}");
            None
        }
    };

    let pool = Pool::new(config.settings.ssh.clone(), config.settings.output_limit);
    let runner = Runner::new(config.settings.max_workers, Arc::new(pool));
    let fire = Fire { job: job.name.clone(), scheduled: Utc::now(), trigger: Trigger::Manual };
    let recorder = Recorder::begin(store.as_ref(), &job, &fire, &names).expect("manual fires are never duplicates");
    let width = names.iter().map(String::len).max().unwrap_or(4);
    let verbose = args.verbose;
    let snapshot = Arc::new(snapshot);
    let report = runner
        .run(Arc::clone(&snapshot), Arc::clone(&job), fire, nodes, CancellationToken::new(), |result| {
            recorder.node(result);
            print_result(result, width, verbose);
        })
        .await;
    recorder.finish(&report);
    let failed = report.failed();
    let id = recorder.fire_id().map(|id| format!(" (fire {id})")).unwrap_or_default();
    println!(
        "{}: {} ok, {failed} failed in {:.2}s{id}",
        job.name,
        report.results.len() - failed,
        report.duration.as_secs_f64()
    );
    Ok(if failed > 0 { Outcome::Failure } else { Outcome::Success })
}

fn print_result(result: &NodeResult, width: usize, verbose: bool) {
    let seconds = result.duration.as_secs_f64();
    let attempt = if result.attempt > 1 { format!(" (attempt {})", result.attempt) } else { String::new() };
    match &result.error {
        None => println!("ok      {:width$}  {seconds:.2}s{attempt}", result.node),
        Some(error) => {
            let label = result.status.as_str().to_uppercase();
            println!("{label:<7} {:width$}  {seconds:.2}s{attempt}  {error}", result.node)
        }
    }
    if verbose || result.error.is_some() {
        for line in result.output.lines() {
            println!("        | {line}");
        }
    }
}
