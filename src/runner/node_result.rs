//! What happened on one node in one fire.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    pub node: String,
    pub status: Status,
    /// Why it failed, in a sentence that names the node or the script position.
    pub error: Option<String>,
    /// Commands, their output and the script's prints, bounded by `output_limit`.
    pub output: String,
    pub started: DateTime<Utc>,
    #[serde(with = "duration_seconds")]
    pub duration: Duration,
}

impl NodeResult {
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }
}

mod duration_seconds {
    pub(super) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}
