//! What the store keeps: fires and node results, as the daemon, the CLI and the API
//! all see them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A fire's state in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FireStatus {
    Running,
    Ok,
    Failed,
    /// Not run: the previous fire of the job was still running (`overlap: skip`).
    Skipped,
    /// The daemon stopped (or died) while it ran.
    Interrupted,
    TimedOut,
}

/// A node's state in one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NodeStatus {
    Ok,
    Failed,
    TimedOut,
    Skipped,
    Interrupted,
}

macro_rules! text_enum {
    ($name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(FireStatus {
    Running = "running",
    Ok = "ok",
    Failed = "failed",
    Skipped = "skipped",
    Interrupted = "interrupted",
    TimedOut = "timed-out",
});

text_enum!(NodeStatus {
    Ok = "ok",
    Failed = "failed",
    TimedOut = "timed-out",
    Skipped = "skipped",
    Interrupted = "interrupted",
});

/// Why a fire happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    Schedule,
    CatchUp,
    Reboot,
    Manual,
}

text_enum!(Trigger {
    Schedule = "schedule",
    CatchUp = "catch-up",
    Reboot = "reboot",
    Manual = "manual",
});

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FireRecord {
    pub id: i64,
    pub job: String,
    pub scheduled: DateTime<Utc>,
    pub trigger: Trigger,
    pub status: FireStatus,
    pub started: Option<DateTime<Utc>>,
    pub finished: Option<DateTime<Utc>>,
    pub nodes: Vec<String>,
    /// Node results by status, for listings (`ok`, `failed`, ...).
    pub ok: u32,
    pub failed: u32,
    pub note: Option<String>,
    /// The cluster member that claimed and ran the fire (`host/pid/start`), with
    /// a PostgreSQL store; `None` with SQLite (one daemon).
    #[serde(default)]
    pub daemon: Option<String>,
}

/// A process registered in a PostgreSQL store (a cluster member), as `status`
/// lists it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Member {
    /// `host/pid/start`: the name on the fires it claims.
    pub id: String,
    /// `loom serve`, `loom run`, ...
    pub command: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub started: DateTime<Utc>,
    pub heartbeat: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeRecord {
    pub fire_id: i64,
    pub node: String,
    pub attempt: u32,
    pub status: NodeStatus,
    pub exit_code: Option<i32>,
    pub started: DateTime<Utc>,
    pub duration_ms: u64,
    pub error: Option<String>,
    pub output: String,
}
