//! What happened on one node in one attempt of a fire.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::{NodeRecord, NodeStatus, ResourceOutcome};

#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    pub node: String,
    /// 1 for the first try, 2 for the first retry, …
    pub attempt: u32,
    pub status: NodeStatus,
    /// The exit code of the command that failed the task, if one did.
    pub exit_code: Option<i32>,
    /// Why it failed, in a sentence that names the node or the script position.
    pub error: Option<String>,
    /// Commands, their output and the script's prints, bounded by `output_limit`.
    pub output: String,
    pub started: DateTime<Utc>,
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// What each resource did, in order (handlers last).
    pub resources: Vec<ResourceOutcome>,
}

impl NodeResult {
    /// This result as the store keeps it, for fire `fire_id`.
    pub fn record(&self, fire_id: i64) -> NodeRecord {
        NodeRecord {
            fire_id,
            node: self.node.clone(),
            attempt: self.attempt,
            status: self.status,
            exit_code: self.exit_code,
            started: self.started,
            duration_ms: self.duration.as_millis() as u64,
            error: self.error.clone(),
            output: self.output.clone(),
            resources: self.resources.clone(),
            daemon: None,
        }
    }

    /// Whether no attempt of the node follows this one, for a job with `retries`
    /// (a failure or a timeout is retried while attempts are left).
    pub fn is_last(&self, retries: u32) -> bool {
        !matches!(self.status, NodeStatus::Failed | NodeStatus::TimedOut) || self.attempt > retries
    }

    pub fn is_ok(&self) -> bool {
        self.status == NodeStatus::Ok
    }
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}
