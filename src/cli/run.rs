//! `loom run JOB [--node N]…`: apply a job now, here, show each node's result, and
//! record the fire in the history (trigger `manual`).

use std::sync::Arc;

use anyhow::bail;
use chrono::Utc;

use super::args::{Cli, Outcome, load_reporting};
use super::client::{Client, Need, connect};
use crate::api::model::{FireDetail, RunRequest};
use crate::resource::Summary;
use crate::runner::{Fire, FireReport, NodeResult, Recorder, Runner};
use crate::ssh::Pool;
use crate::store::{FireRecord, FireStatus, ResourceStatus, Store, StoreLock, Trigger};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job to run
    #[arg(value_name = "JOB")]
    pub job: String,
    /// Run only on this node (repeatable); any node of the manifest may be named
    #[arg(short, long = "node", value_name = "NODE")]
    pub nodes: Vec<String>,
    /// Print each node's output, not only failures', and the diffs of changed resources
    #[arg(short, long)]
    pub verbose: bool,
    /// Check mode: report what the job's resources would change, with diffs; change
    /// nothing on any node and run no task
    #[arg(long)]
    pub check: bool,
    /// Print the fire as recorded, with every node's result and output, as JSON
    /// (the API's FireDetail) instead of text
    #[arg(long)]
    pub json: bool,
}

pub(crate) async fn execute(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    // A running daemon has warm connections and records the fire itself.
    if let Some(client) = connect(cli, Need::Optional).await? {
        return through_daemon(&client, args).await;
    }
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
        errln!("note: other parts of the configuration have {errors} error(s); see `loom check`");
    }
    let names = if args.nodes.is_empty() { job.targets.clone() } else { args.nodes.clone() };
    let mut nodes = Vec::new();
    for name in &names {
        match config.nodes.get(name) {
            Some(node) => nodes.push(Arc::clone(node)),
            None => bail!("no node named `{name}` in the node manifest"),
        }
    }
    let store = match Store::open_configured(&config.settings.state, config.settings.postgres.as_ref(), "loom run") {
        Ok(store) => Some(Arc::new(store)),
        Err(err) => {
            errln!("warning: this run is not recorded in the history: {err}");
            None
        }
    };

    // With the store's lock, masters go where a killed run's leftovers are found
    // and stopped; without it (a daemon holds the store), into a folder of our own.
    let ssh = &config.settings.ssh;
    let (_lock, _private, control) = match StoreLock::acquire(&config.settings.state, "loom run") {
        Ok(lock) => {
            let control = crate::ssh::control::folder(ssh, &config.settings.state);
            crate::ssh::control::stop_leftovers(ssh, &control).await;
            (Some(lock), None, control)
        }
        Err(_) => {
            use std::os::unix::fs::PermissionsExt;
            let private = tempfile::Builder::new()
                .prefix("loom-run-")
                .permissions(std::fs::Permissions::from_mode(0o700))
                .tempdir_in(&ssh.control_dir)?;
            let control = private.path().to_path_buf();
            (None, Some(private), control)
        }
    };
    let pool = Arc::new(Pool::new(ssh.clone(), config.settings.output_limit, control));
    let runner = Runner::new(config.settings.max_workers, Arc::clone(&pool));
    let mut fire = Fire::new(&job.name, Utc::now(), Trigger::Manual).checking(args.check);
    let recorder = Recorder::begin(store.as_ref(), &job, &mut fire, &names).expect("manual fires are never duplicates");
    let width = names.iter().map(String::len).max().unwrap_or(4);
    let (verbose, json) = (args.verbose, args.json);
    let snapshot = Arc::new(snapshot);
    let stop = super::interrupt::on_signal("stopping the nodes' commands and recording the fire")?;
    let report = runner
        .run(Arc::clone(&snapshot), fire, nodes, stop.clone(), &recorder, |result| {
            if !json {
                print_result(result, width, verbose)
            }
        })
        .await;
    let failed = report.failed();
    if json {
        let detail = recorded(store.as_deref(), recorder.fire_id(), &report, names)?;
        outln!("{}", serde_json::to_string_pretty(&detail)?);
    } else {
        let id = recorder.fire_id().map(|id| format!(" (fire {id})")).unwrap_or_default();
        outln!(
            "{}: {} ok, {failed} failed in {:.2}s{id}{}",
            job.name,
            report.results.len() - failed,
            report.duration.as_secs_f64(),
            drift_note(report.status())
        );
    }
    pool.close();
    Ok(match () {
        () if stop.is_cancelled() => Outcome::Interrupted,
        () if failed > 0 => Outcome::Failure,
        () => Outcome::Success,
    })
}

/// The fire of a local run as the store recorded it; when it could not be recorded,
/// as the run reported it, with id 0 and a note saying so.
fn recorded(
    store: Option<&Store>,
    fire_id: Option<i64>,
    report: &FireReport,
    nodes: Vec<String>,
) -> anyhow::Result<FireDetail> {
    if let (Some(store), Some(id)) = (store, fire_id)
        && let Some(fire) = store.fire(id)?
    {
        return Ok(FireDetail { fire, results: store.node_results(id)? });
    }
    let failed = report.failed() as u32;
    let fire = FireRecord {
        id: 0,
        job: report.fire.job.clone(),
        scheduled: report.fire.scheduled,
        trigger: report.fire.trigger,
        status: report.status(),
        started: Some(report.started),
        finished: Some(report.started + chrono::Duration::from_std(report.duration).unwrap_or_default()),
        nodes,
        ok: report.results.len() as u32 - failed,
        failed,
        note: Some("not recorded in the history".to_string()),
        daemon: None,
    };
    Ok(FireDetail { fire, results: report.results.iter().map(|r| r.record(0)).collect() })
}

async fn through_daemon(client: &Client, args: &Args) -> anyhow::Result<Outcome> {
    let request = RunRequest { nodes: args.nodes.clone(), check: args.check };
    let started: serde_json::Value = client.post(&format!("/jobs/{}/run", args.job), &request).await?;
    let Some(id) = started["fire"].as_i64() else {
        bail!("the daemon at {} did not say which fire it started", client.server())
    };
    let (path, wait) = (format!("/fires/{id}"), [("wait", "true".to_string())]);
    let finished = || client.get::<FireDetail>(&path, &wait);
    let stop = super::interrupt::on_signal("cancelling the fire on the daemon")?;
    let (detail, interrupted) = tokio::select! {
        detail = finished() => (detail?, false),
        _ = stop.cancelled() => {
            errln!("cancelling fire {id} on the daemon at {}", client.server());
            // It may have finished meanwhile: its record says how it ended.
            let cancel = format!("/fires/{id}/cancel");
            if let Err(err) = client.post::<serde_json::Value>(&cancel, &serde_json::json!({})).await {
                errln!("{err:#}");
            }
            (finished().await?, true)
        }
    };
    let fire = &detail.fire;
    let outcome = match () {
        () if interrupted => Outcome::Interrupted,
        () if fire.failed > 0 || !matches!(fire.status, FireStatus::Ok | FireStatus::Drift) => Outcome::Failure,
        () => Outcome::Success,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&detail)?);
        return Ok(outcome);
    }
    let width = detail.results.iter().map(|r| r.node.len()).max().unwrap_or(4);
    for record in &detail.results {
        let result = NodeResult {
            node: record.node.clone(),
            attempt: record.attempt,
            status: record.status,
            exit_code: record.exit_code,
            error: record.error.clone(),
            output: record.output.clone(),
            started: record.started,
            duration: std::time::Duration::from_millis(record.duration_ms),
            resources: record.resources.clone(),
        };
        print_result(&result, width, args.verbose);
    }
    let seconds = match (fire.started, fire.finished) {
        (Some(start), Some(end)) => (end - start).num_milliseconds() as f64 / 1000.0,
        _ => 0.0,
    };
    outln!(
        "{}: {} ok, {} failed in {seconds:.2}s (fire {}, by the daemon at {}){}",
        fire.job,
        fire.ok,
        fire.failed,
        fire.id,
        client.server(),
        drift_note(fire.status)
    );
    Ok(outcome)
}

/// What the last line adds for a check that found drift.
fn drift_note(status: FireStatus) -> &'static str {
    if status == FireStatus::Drift { "; drift: some resources would change" } else { "" }
}

fn print_result(result: &NodeResult, width: usize, verbose: bool) {
    let seconds = result.duration.as_secs_f64();
    let attempt = if result.attempt > 1 { format!(" (attempt {})", result.attempt) } else { String::new() };
    let summary =
        if result.resources.is_empty() { String::new() } else { format!("  {}", Summary::of(&result.resources)) };
    match &result.error {
        None => outln!("ok      {:width$}  {seconds:.2}s{attempt}{summary}", result.node),
        Some(error) => {
            let label = result.status.as_str().to_uppercase();
            outln!("{label:<7} {:width$}  {seconds:.2}s{attempt}{summary}  {error}", result.node)
        }
    }
    // Every resource that changed or failed, one line each; their diffs with -v.
    for outcome in &result.resources {
        if matches!(outcome.status, ResourceStatus::Unchanged | ResourceStatus::Skipped) && !verbose {
            continue;
        }
        let mut line = format!("        {:<9} {}", outcome.status.to_string(), outcome.resource);
        let changes: Vec<String> = outcome
            .changes
            .iter()
            .map(|c| match (&c.before, &c.after) {
                (Some(before), Some(after)) if c.field != "content" => format!("{} {before} -> {after}", c.field),
                _ => c.field.clone(),
            })
            .collect();
        if !changes.is_empty() {
            line.push_str(&format!(": {}", changes.join(", ")));
        }
        if let Some(reason) = &outcome.reason {
            line.push_str(&format!(" ({reason})"));
        }
        outln!("{line}");
        if verbose && let Some(diff) = &outcome.diff {
            for diff_line in diff.lines() {
                outln!("          {diff_line}");
            }
        }
    }
    if verbose || result.error.is_some() {
        for line in result.output.lines() {
            outln!("        | {line}");
        }
    }
}
