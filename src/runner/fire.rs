//! One fire: a job's task applied to each target node, separately and concurrently.
//!
//! Every node gets its own blocking thread for the script and its own connection;
//! a node that fails, throws or hangs affects only its own result. A semaphore
//! shared by all fires bounds how many node tasks run at once (`max_workers`).

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::node_result::{NodeResult, Status};
use crate::config::Node;
use crate::snapshot::Snapshot;
use crate::ssh::Pool;
use crate::task::{Output, Ssh};

/// Why a fire happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    Schedule,
    Reboot,
    Manual,
}

/// A job at a time: identified by (job, scheduled instant).
#[derive(Debug, Clone, Serialize)]
pub struct Fire {
    pub job: String,
    pub scheduled: DateTime<Utc>,
    pub trigger: Trigger,
}

#[derive(Debug, Clone, Serialize)]
pub struct FireReport {
    pub fire: Fire,
    pub started: DateTime<Utc>,
    pub results: Vec<NodeResult>,
}

impl FireReport {
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.is_ok()).count()
    }
}

/// Runs fires; shared by the scheduler and `loom run`.
pub struct Runner {
    workers: Arc<Semaphore>,
    pool: Arc<Pool>,
}

impl Runner {
    pub fn new(max_workers: usize, pool: Arc<Pool>) -> Runner {
        Runner {
            workers: Arc::new(Semaphore::new(max_workers)),
            pool,
        }
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Applies the fire's job to `nodes`; `on_result` sees each node's result as it
    /// finishes. The snapshot is the one the fire started with, to its end.
    pub async fn run(
        &self,
        snapshot: Arc<Snapshot>,
        fire: Fire,
        nodes: Vec<Arc<Node>>,
        mut on_result: impl FnMut(&NodeResult),
    ) -> FireReport {
        let started = Utc::now();
        tracing::info!(job = %fire.job, trigger = ?fire.trigger, nodes = nodes.len(), "fire started");
        let mut running = JoinSet::new();
        for node in nodes {
            let snapshot = Arc::clone(&snapshot);
            let workers = Arc::clone(&self.workers);
            let pool = Arc::clone(&self.pool);
            let job = fire.job.clone();
            running.spawn(async move {
                let _permit = workers
                    .acquire_owned()
                    .await
                    .expect("the worker semaphore is never closed");
                run_node(snapshot, pool, job, node).await
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = running.join_next().await {
            let result = joined.expect("node tasks catch their own panics");
            log_result(&fire.job, &result);
            on_result(&result);
            results.push(result);
        }
        results.sort_by(|a, b| a.node.cmp(&b.node));
        FireReport {
            fire,
            started,
            results,
        }
    }
}

async fn run_node(
    snapshot: Arc<Snapshot>,
    pool: Arc<Pool>,
    job: String,
    node: Arc<Node>,
) -> NodeResult {
    let started = Utc::now();
    let clock = Instant::now();
    let output = Arc::new(Output::new(snapshot.config.settings.output_limit));
    let outcome = match pool.connect(&node).await {
        Err(err) => Err(err.to_string()),
        Ok(connection) => {
            let ssh = Ssh::new(Arc::clone(&node), connection, Arc::clone(&output));
            let task_output = Arc::clone(&output);
            let call =
                tokio::task::spawn_blocking(move || snapshot.catalog.call(&job, ssh, task_output));
            match call.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(err.to_string()),
                Err(panic) => Err(format!("the task crashed: {panic}")),
            }
        }
    };
    NodeResult {
        node: node.name.clone(),
        status: if outcome.is_ok() {
            Status::Ok
        } else {
            Status::Failed
        },
        error: outcome.err(),
        output: output.take(),
        started,
        duration: clock.elapsed(),
    }
}

fn log_result(job: &str, result: &NodeResult) {
    let seconds = result.duration.as_secs_f64();
    for line in result.output.lines() {
        tracing::debug!(target: "loom::output", job, node = %result.node, "{line}");
    }
    match &result.error {
        None => tracing::info!(job, node = %result.node, seconds, "node ok"),
        Some(error) => tracing::warn!(job, node = %result.node, seconds, "node failed: {error}"),
    }
}
