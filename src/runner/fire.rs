//! One fire: a job's task applied to each target node, separately and concurrently.
//!
//! Every node gets its own script call (on `task::scripts`' threads) and its own
//! connection; a node that fails, throws or hangs affects only its own result. A semaphore
//! shared by all fires bounds how many node tasks run at once (`max_workers`).
//! Failed nodes are retried with exponential backoff; `node_timeout` and the fire's
//! `timeout` cancel what runs too long (the script stops at its next step, the
//! command in flight is abandoned: a local one is killed with its process group, a
//! remote one loses its channel). Each attempt ends in one place (`Ending`, from one
//! `select!`). Recording goes through the caller's `Recorder`: results that arrive
//! together are committed together, before they are logged, published or handed to
//! `on_result`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::events::{Event, EventLog};
use super::gate::Gate;
use super::node_result::NodeResult;
use super::record::Recorder;
use crate::config::{Job, Node};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::ssh::Pool;
use crate::store::{FireStatus, NodeStatus, Trigger};
use crate::task::{Called, Output, Ssh, TaskError, scripts};

/// A job at a time: identified by (job, scheduled instant).
#[derive(Debug, Clone, Serialize)]
pub struct Fire {
    pub job: String,
    pub scheduled: DateTime<Utc>,
    pub trigger: Trigger,
    /// The fire's number in the store, once recorded.
    pub id: Option<i64>,
    /// Check mode: resources are only checked (what would change), the task does not run.
    pub check: bool,
    /// When its tasks may start: the daemon prepares a fire ahead of its instant.
    #[serde(skip)]
    pub gate: Gate,
    /// Only this daemon's share of a cluster fire's nodes: the fire's start and end
    /// are not this run's to announce (the store ends it with its last node).
    #[serde(skip)]
    pub part: bool,
    /// The attempt each node starts at, when not the first (work taken over).
    #[serde(skip)]
    pub resume: std::collections::HashMap<String, u32>,
}

impl Fire {
    pub fn new(job: &str, scheduled: DateTime<Utc>, trigger: Trigger) -> Fire {
        Fire {
            job: job.to_string(),
            scheduled,
            trigger,
            id: None,
            check: false,
            gate: Gate::open(),
            part: false,
            resume: Default::default(),
        }
    }

    /// This fire in check mode (`loom run --check`, a `mode: check` job).
    pub fn checking(mut self, check: bool) -> Fire {
        self.check |= check;
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FireReport {
    pub fire: Fire,
    pub started: DateTime<Utc>,
    #[serde(skip)]
    pub duration: Duration,
    /// The last attempt of each node, by node name.
    pub results: Vec<NodeResult>,
    pub timed_out: bool,
}

impl FireReport {
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.is_ok()).count()
    }

    pub fn status(&self) -> FireStatus {
        let last = self.results.iter().map(|r| (r.status, crate::resource::Summary::of(&r.resources).drifted()));
        FireStatus::of_nodes(self.timed_out, self.fire.check, last)
    }
}

/// Runs fires; shared by the scheduler and `loom run`.
pub struct Runner {
    workers: Arc<Semaphore>,
    pool: Arc<Pool>,
    events: Option<EventLog>,
    metrics: Option<Arc<Metrics>>,
}

/// Time a cancelled script gets to notice before its result is given up on.
pub(crate) const GRACE: Duration = Duration::from_secs(5);

impl Runner {
    pub fn new(max_workers: usize, pool: Arc<Pool>) -> Runner {
        Runner { workers: Arc::new(Semaphore::new(max_workers)), pool, events: None, metrics: None }
    }

    /// Counts fires, results, durations and lag on `metrics` (the daemon's).
    pub(crate) fn with_metrics(mut self, metrics: Arc<Metrics>) -> Runner {
        self.metrics = Some(metrics);
        self
    }

    /// Publishes fire, output and result events on `events` (for the API).
    pub fn with_events(mut self, events: EventLog) -> Runner {
        self.events = Some(events);
        self
    }

    fn publish(&self, event: Event) {
        if let Some(events) = &self.events {
            events.publish(event);
        }
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Applies the fire's job to `nodes`; `recorder` writes each attempt's result
    /// down as it arrives, and `on_result` sees it too. The snapshot is the one the
    /// fire started with, to its end. Node tasks are prepared (connected, their
    /// scripts queued) right away and start when the fire's gate opens.
    /// Cancelling `cancel` stops the fire; its unfinished nodes are `interrupted`.
    pub async fn run(
        &self,
        snapshot: Arc<Snapshot>,
        fire: Fire,
        nodes: Vec<Arc<Node>>,
        cancel: CancellationToken,
        recorder: &Recorder,
        mut on_result: impl FnMut(&NodeResult),
    ) -> FireReport {
        let job = Arc::clone(recorder.job());
        // Every fire of a `mode: check` job is a check.
        let fire = fire.checking(job.mode == crate::config::Mode::Check);
        if !fire.part {
            self.publish(Event::FireStarted {
                fire: fire.id,
                job: fire.job.clone(),
                scheduled: fire.scheduled,
                trigger: fire.trigger,
                nodes: nodes.iter().map(|n| n.name.clone()).collect(),
            });
        }
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let fire_cancel = cancel.child_token();
        let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for node in nodes.iter().cloned() {
            let first = fire.resume.get(&node.name).copied().unwrap_or(1);
            let task = NodeTask {
                snapshot: Arc::clone(&snapshot),
                pool: Arc::clone(&self.pool),
                workers: Arc::clone(&self.workers),
                job: Arc::clone(&job),
                node,
                cancel: fire_cancel.child_token(),
                fire_timed_out: Arc::clone(&timed_out),
                results: sender.clone(),
                events: self.events.clone().map(|e| (e, fire.id)),
                gate: fire.gate,
                check: fire.check,
                first,
            };
            tokio::spawn(task.run());
        }
        drop(sender);
        fire.gate.wait().await;
        let started = Utc::now();
        let clock = Instant::now();
        tracing::info!(job = %fire.job, trigger = %fire.trigger, nodes = nodes.len(), part = fire.part, "fire started");
        if let Some(metrics) = self.metrics.as_ref().filter(|_| fire.trigger == Trigger::CatchUp && !fire.part) {
            metrics.catch_up_started(&fire.job);
        }
        // A scheduled fire's tasks are planned for its instant plus the job's jitter.
        let planned = (fire.trigger == Trigger::Schedule).then(|| fire.scheduled + job.jitter_offset());
        let deadline = job.timeout.map(|t| fire.gate.deadline(Some(t)));
        let mut last: Vec<NodeResult> = Vec::new();
        loop {
            let next = match deadline {
                Some(deadline) if !fire_cancel.is_cancelled() => {
                    tokio::select! {
                        result = receiver.recv() => result,
                        _ = tokio::time::sleep_until(deadline) => {
                            tracing::warn!(job = %fire.job, "fire timeout reached; stopping its nodes");
                            timed_out.store(true, std::sync::atomic::Ordering::SeqCst);
                            fire_cancel.cancel();
                            continue;
                        }
                    }
                }
                _ => receiver.recv().await,
            };
            let Some(result) = next else { break };
            // Results that arrived together are committed together; none is told
            // anywhere (log, events, caller) before it is committed.
            let mut batch = vec![result];
            while let Ok(more) = receiver.try_recv() {
                batch.push(more);
            }
            recorder.nodes(&batch).await;
            for result in batch {
                log_result(&fire.job, fire.id, &result);
                if let Some(metrics) = &self.metrics {
                    metrics.node_result(&fire.job, &result.node, result.status.as_str());
                    if let Some(planned) =
                        planned.filter(|_| result.attempt == 1 && result.status != NodeStatus::Interrupted)
                    {
                        metrics.task_lag((result.started - planned).to_std().unwrap_or_default());
                    }
                }
                self.publish(Event::NodeFinished {
                    fire: fire.id,
                    job: fire.job.clone(),
                    node: result.node.clone(),
                    attempt: result.attempt,
                    status: result.status,
                    error: result.error.clone(),
                    seconds: result.duration.as_secs_f64(),
                    resources: result.resources.clone(),
                    retrying: !result.is_last(job.retries) && !fire_cancel.is_cancelled(),
                });
                on_result(&result);
                last.retain(|r| r.node != result.node);
                last.push(result);
            }
            recorder.announced();
        }
        last.sort_by(|a, b| a.node.cmp(&b.node));
        let report = FireReport {
            fire,
            started,
            duration: clock.elapsed(),
            results: last,
            timed_out: timed_out.load(std::sync::atomic::Ordering::SeqCst),
        };
        if report.fire.part {
            // The member that records the fire's last node ends it, and the
            // daemon that claimed the fire announces it.
            return report;
        }
        // Recorded before it is announced, so a listener reading the store sees the end.
        recorder.finish(&report).await;
        if let Some(metrics) = &self.metrics {
            let now = Utc::now().timestamp_micros() as f64 / 1e6;
            metrics.fire_finished(&report.fire.job, report.status().as_str(), report.duration, now);
        }
        self.publish(Event::FireFinished {
            fire: report.fire.id,
            job: report.fire.job.clone(),
            status: report.status(),
            seconds: report.duration.as_secs_f64(),
        });
        report
    }
}

/// How one node attempt ended, as the one `select!` in `NodeTask::attempt` saw it.
enum Ending {
    /// The task returned without an error.
    Ran,
    /// The connection failed, the task threw, or its thread crashed.
    Failed(String),
    /// The node's own `node_timeout` came first.
    NodeTimeout,
    /// The fire was cancelled or reached its `timeout` (which one: `fire_timed_out`).
    Stopped,
}

/// One node's attempts within a fire.
struct NodeTask {
    snapshot: Arc<Snapshot>,
    pool: Arc<Pool>,
    workers: Arc<Semaphore>,
    job: Arc<Job>,
    node: Arc<Node>,
    cancel: CancellationToken,
    fire_timed_out: Arc<std::sync::atomic::AtomicBool>,
    results: mpsc::UnboundedSender<NodeResult>,
    /// Where live output goes, with the fire's number.
    events: Option<(EventLog, Option<i64>)>,
    /// When the first attempt may start; retries start when they are due.
    gate: Gate,
    /// Only check the resources.
    check: bool,
    /// The first attempt to make (later than 1 when taken over in a cluster).
    first: u32,
}

impl NodeTask {
    async fn run(self) {
        let attempts = 1 + self.job.retries;
        let mut delay = self.job.retry_delay;
        for attempt in self.first..=attempts.max(self.first) {
            let result = {
                let _permit = tokio::select! {
                    permit = Arc::clone(&self.workers).acquire_owned() => permit.expect("the worker semaphore is never closed"),
                    _ = self.cancel.cancelled() => {
                        let _ = self.results.send(self.not_run(attempt));
                        return;
                    }
                };
                let gate = if attempt == self.first { self.gate } else { Gate::open() };
                self.attempt(attempt, gate).await
            };
            let retry = !result.is_last(self.job.retries);
            let _ = self.results.send(result);
            if !retry {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.cancel.cancelled() => return,
            }
            delay = delay.saturating_mul(2);
        }
    }

    fn not_run(&self, attempt: u32) -> NodeResult {
        let (status, error) = self.settle(Ending::Stopped);
        NodeResult {
            node: self.node.name.clone(),
            attempt,
            status,
            exit_code: None,
            error,
            output: String::new(),
            started: Utc::now(),
            duration: Duration::ZERO,
            resources: Vec::new(),
        }
    }

    /// The one place an attempt's ending becomes its status and error.
    fn settle(&self, ending: Ending) -> (NodeStatus, Option<String>) {
        match ending {
            Ending::Ran => (NodeStatus::Ok, None),
            Ending::Failed(error) => (NodeStatus::Failed, Some(error)),
            // The fire's cancellation or timeout can come while the node's own
            // timeout is being handled: the fire's reason wins.
            Ending::NodeTimeout if !self.cancel.is_cancelled() => {
                let limit = humantime::format_duration(self.job.node_timeout.unwrap_or_default());
                (NodeStatus::TimedOut, Some(format!("stopped after node_timeout ({limit})")))
            }
            Ending::NodeTimeout | Ending::Stopped => {
                if self.fire_timed_out.load(std::sync::atomic::Ordering::SeqCst) {
                    let limit = self.job.timeout.map(|t| humantime::format_duration(t).to_string()).unwrap_or_default();
                    let prefix = crate::store::model::FIRE_TIMEOUT;
                    (NodeStatus::TimedOut, Some(format!("{prefix} ({limit}) was reached")))
                } else {
                    (NodeStatus::Interrupted, Some("stopped: the fire was cancelled".to_string()))
                }
            }
        }
    }

    /// Prepares one attempt (output, connection) and queues its script for when
    /// `gate` opens; the attempt counts as started when the script does.
    async fn attempt(&self, attempt: u32, gate: Gate) -> NodeResult {
        let begun = Utc::now();
        let limit = self.snapshot.config.settings.output_limit;
        let output = Arc::new(match &self.events {
            None => Output::new(limit),
            Some((events, fire)) => {
                let (events, fire, job, node) = (events.clone(), *fire, self.job.name.clone(), self.node.name.clone());
                Output::with_sink(
                    limit,
                    Box::new(move |text| {
                        let event =
                            Event::Output { fire, job: job.clone(), node: node.clone(), text: text.to_string() };
                        events.publish(event);
                    }),
                )
            }
        });
        let call_cancel = self.cancel.child_token();
        let connection = self.pool.connect(&self.node).await;
        let mut started = (gate.started(begun), Instant::now().max(gate.instant()));
        let mut resources = Vec::new();
        let ending = match connection {
            Err(err) => {
                gate.wait().await;
                Ending::Failed(err.to_string())
            }
            Ok(connection) => {
                let ssh = Ssh::new(Arc::clone(&self.node), connection, Arc::clone(&output), call_cancel.clone());
                let snapshot = Arc::clone(&self.snapshot);
                let job = self.job.name.clone();
                let task_output = Arc::clone(&output);
                let script_cancel = call_cancel.clone();
                let check = self.check;
                let mut call = scripts::submit(gate.not_before(), move || {
                    let started = (Utc::now(), Instant::now());
                    if script_cancel.is_cancelled() {
                        return (started, Called { resources: Vec::new(), result: Err(TaskError::Cancelled) });
                    }
                    (started, snapshot.catalog.call(&job, ssh, task_output, check))
                });
                let (ending, answered) = tokio::select! {
                    joined = &mut call => {
                        let ending = match joined {
                            Ok(Ok((at, called))) => {
                                started = at;
                                resources = called.resources;
                                match called.result {
                                    Ok(()) => Ending::Ran,
                                    // The fire's cancellation can reach the script before this select does.
                                    Err(TaskError::Cancelled) => Ending::Stopped,
                                    Err(err) => Ending::Failed(err.to_string()),
                                }
                            }
                            Ok(Err(crashed)) => Ending::Failed(format!("the task crashed: {crashed}")),
                            Err(_) => Ending::Failed("the task's thread ended without an answer".to_string()),
                        };
                        (ending, true)
                    }
                    _ = tokio::time::sleep_until(gate.deadline(self.job.node_timeout)) => (Ending::NodeTimeout, false),
                    _ = self.cancel.cancelled() => (Ending::Stopped, false),
                };
                if !answered {
                    call_cancel.cancel();
                    // Let the script see the cancellation and record what it did.
                    let _ = tokio::time::timeout(GRACE, &mut call).await;
                }
                ending
            }
        };
        let (status, error) = self.settle(ending);
        let mut result = self.result(attempt, started, &output, status, error);
        result.resources = resources;
        result
    }

    /// `started`: when the attempt began, by the wall clock and the monotonic one.
    fn result(
        &self,
        attempt: u32,
        started: (DateTime<Utc>, Instant),
        output: &Output,
        status: NodeStatus,
        error: Option<String>,
    ) -> NodeResult {
        NodeResult {
            node: self.node.name.clone(),
            attempt,
            exit_code: if status == NodeStatus::Ok { None } else { output.last_failed_code() },
            status,
            // A script can throw any amount of text; the record keeps what output does.
            error: error.map(|e| bounded(e, self.snapshot.config.settings.output_limit)),
            output: output.take(),
            started: started.0,
            duration: started.1.elapsed(),
            resources: Vec::new(),
        }
    }
}

/// Logs a node's result and output inside a `node{job, node, attempt, fire}` span, so filters such
/// as `loom::output[node{job=backup}]=info` select one job's or node's lines.
fn log_result(job: &str, fire: Option<i64>, result: &NodeResult) {
    let span =
        tracing::info_span!(target: "loom::output", "node", job, node = %result.node, attempt = result.attempt, fire);
    let _entered = span.enter();
    let seconds = log_seconds(result.duration.as_secs_f64());
    for line in result.output.lines() {
        tracing::info!(target: "loom::output", "{line}");
    }
    match &result.error {
        None => tracing::info!(seconds, "node ok"),
        Some(error) => tracing::warn!(status = %result.status, seconds, "node failed: {error}"),
    }
}

/// Seconds as a log line's `seconds` field: a number (in JSON logs too), to the
/// millisecond.
pub(crate) fn log_seconds(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// `text` cut to at most `limit` bytes (on a character boundary), saying so.
fn bounded(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        text.truncate(text.floor_char_boundary(limit));
        text.push_str(" [cut: output_limit reached]");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ResourceOutcome, ResourceStatus};

    fn result(node: &str, status: NodeStatus, resources: &[ResourceStatus]) -> NodeResult {
        NodeResult {
            node: node.to_string(),
            attempt: 1,
            status,
            exit_code: None,
            error: None,
            output: String::new(),
            started: Utc::now(),
            duration: Duration::ZERO,
            resources: resources
                .iter()
                .map(|status| ResourceOutcome {
                    resource: "file[/x]".into(),
                    status: *status,
                    changes: Vec::new(),
                    diff: None,
                    reason: None,
                    handler: false,
                    sensitive: false,
                })
                .collect(),
        }
    }

    fn status(check: bool, results: Vec<NodeResult>) -> FireStatus {
        let fire = Fire::new("site", Utc::now(), Trigger::Manual).checking(check);
        FireReport { fire, started: Utc::now(), duration: Duration::ZERO, results, timed_out: false }.status()
    }

    #[test]
    fn a_check_that_would_change_something_is_drift_and_a_failure_still_wins() {
        use ResourceStatus::*;
        let calm = || result("a", NodeStatus::Ok, &[Unchanged, Skipped]);
        let drifted = || result("b", NodeStatus::Ok, &[Unchanged, Changed]);
        assert_eq!(status(true, vec![calm()]), FireStatus::Ok);
        assert_eq!(status(true, vec![calm(), drifted()]), FireStatus::Drift);
        // Applied, a change is what the fire was for.
        assert_eq!(status(false, vec![calm(), drifted()]), FireStatus::Ok);
        let failed = result("c", NodeStatus::Failed, &[Failed]);
        assert_eq!(status(true, vec![drifted(), failed]), FireStatus::Failed);
    }
}
