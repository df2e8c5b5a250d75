//! What the API and the CLI say to each other: defined once, used by both ends.
//!
//! The daemon answers with its own data (`daemon::JobState`, `DaemonStatus`, ...);
//! the views here are built from it by the `From` impls below.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::{Job, Node};
use crate::daemon::{DaemonStatus, JobState, PendingRestart as Pending, ReloadOutcome};
pub use crate::runner::events::Event;
use crate::store::{FireRecord, Member, NodeCell, NodeRecord, NodeWork, Trigger};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = Job)]
pub struct JobView {
    pub name: String,
    /// Null for a job with resources only.
    pub task: Option<String>,
    /// How many resources the job declares (applied before its task).
    #[serde(default)]
    pub resources: usize,
    /// True for a `mode: check` job (its fires only detect drift).
    #[serde(default)]
    pub check: bool,
    pub description: Option<String>,
    /// Null for jobs that run only on demand.
    pub schedule: Option<String>,
    /// The schedule in words, such as `Every 10 seconds`.
    #[serde(default)]
    pub schedule_words: Option<String>,
    pub timezone: Option<String>,
    /// Each scheduled fire starts this many milliseconds after its instant (the
    /// job's jitter offset; 0 without `jitter`).
    #[serde(default)]
    pub jitter_ms: u64,
    pub next: Option<DateTime<Utc>>,
    pub targets: Vec<String>,
    pub enabled: bool,
    pub last: Option<FireRecord>,
}

impl JobView {
    pub fn new(job: &Job, next: Option<DateTime<Utc>>, enabled: bool, last: Option<FireRecord>) -> JobView {
        JobView {
            name: job.name.clone(),
            task: job.task.as_ref().map(ToString::to_string),
            resources: job.resources.len(),
            check: job.mode == crate::config::Mode::Check,
            description: job.description.clone(),
            schedule: job.schedule.as_ref().map(|s| s.text().to_string()),
            schedule_words: job.schedule.as_ref().map(|s| s.describe()),
            timezone: job.schedule.as_ref().map(|s| s.zone().to_string()),
            jitter_ms: u64::try_from(job.jitter_offset().as_millis()).unwrap_or(u64::MAX),
            next,
            targets: job.targets.clone(),
            enabled,
            last,
        }
    }
}

impl From<JobState> for JobView {
    fn from(state: JobState) -> JobView {
        JobView::new(&state.job, state.next, state.enabled, state.last)
    }
}

/// A node as the API shows it: never its password.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = Node)]
pub struct NodeView {
    pub name: String,
    pub host: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub auth: String,
    pub local: bool,
    /// Its SSH master now: `open`, `closed` (closed itself when idle, or died; the
    /// next task reopens it), `connecting`, `local`; null when not used since start.
    #[serde(default)]
    pub master: Option<String>,
    /// Its latest recorded result (any job); null when it has none.
    #[serde(default)]
    pub last: Option<NodeCell>,
}

impl From<&Node> for NodeView {
    fn from(node: &Node) -> NodeView {
        NodeView {
            name: node.name.clone(),
            host: node.host.clone(),
            port: node.port,
            user: node.user.clone(),
            auth: node.auth().to_string(),
            local: node.local,
            master: None,
            last: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunningFire {
    pub id: Option<i64>,
    pub job: String,
    pub scheduled: DateTime<Utc>,
    pub trigger: Trigger,
}

impl From<crate::daemon::RunningFire> for RunningFire {
    fn from(fire: crate::daemon::RunningFire) -> RunningFire {
        RunningFire { id: fire.id, job: fire.job, scheduled: fire.scheduled, trigger: fire.trigger }
    }
}

/// When a job is next due (the status's `next`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NextFire {
    pub job: String,
    pub at: DateTime<Utc>,
}

impl From<crate::daemon::NextFire> for NextFire {
    fn from(next: crate::daemon::NextFire) -> NextFire {
        NextFire { job: next.job, at: next.at }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = Status)]
pub struct StatusView {
    pub version: String,
    /// The configuration file the daemon serves, absolute and canonical (on the
    /// daemon's host); the CLI uses a daemon it found only when this is its own file.
    pub config: String,
    pub started: DateTime<Utc>,
    pub uptime_seconds: f64,
    pub jobs: usize,
    pub nodes: usize,
    pub running: Vec<RunningFire>,
    pub next: Vec<NextFire>,
    /// Errors of the last failed reload, `file:line:col: message`; empty when the
    /// configuration in force is the one on disk.
    pub config_errors: Vec<String>,
    /// SSH masters open now (one per node reached recently; an idle one closes
    /// itself after `ssh.control_persist`).
    #[serde(default)]
    pub ssh_masters: usize,
    /// Settings changed since the daemon started that only a restart applies
    /// (`listen`, `tls`, `state`, `retention`); empty when none is pending.
    #[serde(default)]
    pub restart_pending: Vec<PendingRestart>,
    /// With a PostgreSQL store, the daemons sharing it whose heartbeat is fresh
    /// (this one among them); empty with SQLite.
    #[serde(default)]
    pub cluster: Vec<Member>,
    /// With a PostgreSQL store, the nodes being run in the cluster now: which
    /// member (`daemon`) runs which node of which fire; empty with SQLite.
    #[serde(default)]
    pub work: Vec<NodeWork>,
}

impl From<DaemonStatus> for StatusView {
    fn from(status: DaemonStatus) -> StatusView {
        StatusView {
            version: status.version.to_string(),
            config: status.config.display().to_string(),
            started: status.started,
            uptime_seconds: status.uptime.num_milliseconds() as f64 / 1000.0,
            jobs: status.jobs,
            nodes: status.nodes,
            running: status.running.into_iter().map(RunningFire::from).collect(),
            next: status.next.into_iter().map(NextFire::from).collect(),
            config_errors: status.config_errors,
            ssh_masters: status.ssh_masters,
            restart_pending: status.restart_pending.into_iter().map(PendingRestart::from).collect(),
            cluster: Vec::new(),
            work: Vec::new(),
        }
    }
}

/// A setting whose configured value waits for a restart to take effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingRestart {
    pub setting: String,
    pub in_force: String,
    pub configured: String,
}

impl From<Pending> for PendingRestart {
    fn from(pending: Pending) -> PendingRestart {
        PendingRestart { setting: pending.setting, in_force: pending.in_force, configured: pending.configured }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RunRequest {
    /// Run only on these nodes; all targets when empty.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Check mode: report what the job's resources would change, change nothing, run no task.
    #[serde(default)]
    pub check: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FireDetail {
    pub fire: FireRecord,
    pub results: Vec<NodeRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = Reload)]
pub struct ReloadView {
    pub ok: bool,
    pub summary: Option<String>,
    pub errors: Vec<String>,
}

impl From<ReloadOutcome> for ReloadView {
    fn from(outcome: ReloadOutcome) -> ReloadView {
        ReloadView { ok: outcome.ok, summary: outcome.summary, errors: outcome.errors }
    }
}

/// Sent on the event stream (`event: lagged`, no `id:`) in place of events the
/// reader should have had but the daemon no longer keeps; the stream goes on after it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Lagged {
    /// Always `lagged`, as an Event's `type` names its kind.
    #[serde(rename = "type")]
    pub kind: LaggedKind,
    /// How many events (of any job) were missed.
    pub missed: u64,
}

impl Lagged {
    pub fn new(missed: u64) -> Lagged {
        Lagged { kind: LaggedKind::Lagged, missed }
    }
}

/// The `type` of a [`Lagged`] (a field of its own, so the document shows it).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LaggedKind {
    Lagged,
}

/// Every error answer of the API, whatever its status.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: String,
}

/// The answer to starting a fire without waiting for it (`202 Accepted`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = StartedFire)]
pub struct RunAccepted {
    pub fire: i64,
}

/// The answer to cancelling a running fire.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Cancelled {
    pub fire: i64,
    pub cancelled: bool,
}

/// What one `data:` line of the event stream holds: an [`Event`], or a [`Lagged`]
/// in place of events no longer kept. Only described, never built.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum StreamData {
    Event(Event),
    Lagged(Lagged),
}

/// Who the presented token is: what the web interface offers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// `admin` (also when no tokens are configured) or `read`.
    pub role: String,
}
