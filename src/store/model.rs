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
    /// A check-mode fire found nodes that differ from their resources (not a failure).
    Drift,
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
    Drift = "drift",
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
    /// The hash of the configuration this daemon runs (`loom serve` only).
    #[serde(default)]
    pub config_hash: Option<String>,
    /// The jobs whose definition here differs from the authoritative member's (the
    /// longest-running `loom serve`; see `daemon::consistency`), including jobs that
    /// only one of the two has. This member does not fire them.
    #[serde(default)]
    pub config_mismatch: Vec<String>,
    /// What it published: the configuration's hash and each job's.
    #[serde(skip)]
    pub fingerprint: Option<ConfigFingerprint>,
}

/// A daemon's configuration as the other members of its cluster compare it: a
/// hash of the whole snapshot and one of each job's definition as the scheduler
/// sees it (`daemon::consistency::fingerprint`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFingerprint {
    pub hash: String,
    pub jobs: std::collections::BTreeMap<String, String>,
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
    /// What each resource of the job did on the node, in order (handlers last).
    #[serde(default)]
    pub resources: Vec<ResourceOutcome>,
    /// The cluster member that ran this attempt (PostgreSQL); absent with SQLite,
    /// where the one daemon runs everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<String>,
}

/// How the error of a node that the fire's own `timeout` stopped begins.
pub const FIRE_TIMEOUT: &str = "stopped: the fire's timeout";

impl FireStatus {
    /// A fire's status from its nodes' last attempts — (status, drifted) — whether
    /// the fire's own `timeout` stopped it, and whether it is a check. The one
    /// place this is decided: a daemon's report and a cluster's store both ask it.
    pub fn of_nodes(timed_out: bool, check: bool, last: impl IntoIterator<Item = (NodeStatus, bool)>) -> FireStatus {
        let (mut interrupted, mut failed, mut drifted) = (false, false, false);
        for (status, drift) in last {
            interrupted |= status == NodeStatus::Interrupted;
            failed |= status != NodeStatus::Ok;
            drifted |= drift;
        }
        match () {
            () if timed_out => FireStatus::TimedOut,
            () if interrupted => FireStatus::Interrupted,
            () if failed => FireStatus::Failed,
            () if check && drifted => FireStatus::Drift,
            () => FireStatus::Ok,
        }
    }
}

/// One node of a fire that this cluster member claimed, under a lease of `epoch`.
#[derive(Debug, Clone)]
pub struct Claim {
    pub fire_id: i64,
    pub job: String,
    pub scheduled: DateTime<Utc>,
    pub trigger: Trigger,
    /// When the fire's tasks start (a fire is recorded ahead of its instant).
    pub started: Option<DateTime<Utc>>,
    pub check: bool,
    pub node: String,
    /// The attempt to run; when `lost`, the attempt the lost member was running.
    pub attempt: u32,
    /// The lease's fencing token: a result is written only while it is current.
    pub epoch: i64,
    /// The member whose lease on this node expired, when this claim takes over.
    pub lost: Option<String>,
    /// The fire was claimed by this member, which announces its start.
    pub ours: bool,
}

/// A node attempt's result, written only while the lease `epoch` still holds;
/// `last` when no attempt of the node follows it.
#[derive(Debug, Clone)]
pub struct FencedRecord {
    pub record: NodeRecord,
    pub epoch: i64,
    pub last: bool,
}

/// What writing fenced results did: how many were refused (their lease was
/// taken over), and the fire's status if they ended it (they were its last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fenced {
    pub refused: usize,
    pub ended: Option<FireStatus>,
}

/// What cancelling a cluster fire did: whether it was running, and its status
/// if no node was left running (its pending nodes ended `interrupted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled {
    pub running: bool,
    pub ended: Option<FireStatus>,
}

/// A node being run in the cluster, and by which member (`GET /status`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeWork {
    pub fire_id: i64,
    pub job: String,
    pub node: String,
    pub attempt: u32,
    pub daemon: String,
}

/// What one resource did (or, in check mode, would do) on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceStatus {
    /// The node already matched.
    Unchanged,
    /// The node was changed to match (in check mode: it would be).
    Changed,
    Failed,
    /// Not run: its `when` was false, an earlier resource failed, or a handler in check mode.
    Skipped,
}

impl std::fmt::Display for ResourceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResourceStatus::Unchanged => "unchanged",
            ResourceStatus::Changed => "changed",
            ResourceStatus::Failed => "failed",
            ResourceStatus::Skipped => "skipped",
        })
    }
}

/// One resource's result on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResourceOutcome {
    /// The type and its key: `file[/etc/motd]`.
    pub resource: String,
    pub status: ResourceStatus,
    /// What differed: field, before, after (values hidden for a `sensitive` resource).
    #[serde(default)]
    pub changes: Vec<FieldChange>,
    /// A unified diff of the content, when it differed (never for a `sensitive` resource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A handler, run (or not) at the end of the node's run.
    #[serde(default)]
    pub handler: bool,
    #[serde(default)]
    pub sensitive: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Where a notification is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryState {
    /// Not delivered yet; the next attempt is due at `next_attempt`.
    Pending,
    Delivered,
    /// Every attempt (`delivery.attempts`) failed; no more are made.
    Failed,
}

text_enum!(DeliveryState { Pending = "pending", Delivered = "delivered", Failed = "failed" });

/// One notification from the outbox, with every attempt to deliver it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotificationRecord {
    pub id: i64,
    /// The fire it tells of (`null` for `missed`, which has no fire of its own).
    pub fire_id: Option<i64>,
    pub job: String,
    pub event: crate::notify::event::NotifyEvent,
    /// `webhook` or `task`.
    pub kind: String,
    /// The task path, or the webhook's scheme, host and port only (its path and
    /// query may hold a secret).
    pub target: String,
    pub state: DeliveryState,
    pub created: DateTime<Utc>,
    /// When the next attempt is due (pending only).
    pub next_attempt: Option<DateTime<Utc>>,
    pub attempts: Vec<AttemptRecord>,
}

/// One attempt to deliver a notification.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptRecord {
    pub at: DateTime<Utc>,
    pub duration_ms: u64,
    /// The webhook's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// Why it failed (`null` when it was delivered).
    pub error: Option<String>,
}

/// One node's attempt in a fire without its output: a cell of a history grid.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeCell {
    pub fire_id: i64,
    pub node: String,
    pub attempt: u32,
    pub status: NodeStatus,
    pub exit_code: Option<i32>,
    pub started: DateTime<Utc>,
    pub duration_ms: u64,
}
