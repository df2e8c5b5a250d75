//! Requests to the running daemon (from the API) and their answers.
//!
//! The daemon's state lives in its loop; the API asks through a channel and gets a
//! reply on a oneshot, so nothing is shared behind locks. Reads of the history go to
//! the store directly (off the daemon's loop), and live events from the daemon's
//! event log. The answers are the daemon's own data (jobs, nodes, its status, a
//! reload's outcome); how they are shown is `api/`'s business, not this module's.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use tokio::sync::{mpsc, oneshot};

use super::reload::PendingRestart;
use crate::config::{Job, Node};
use crate::metrics::Metrics;
use crate::runner::EventLog;
use crate::store::{FireRecord, Store, Trigger};

/// A job as the daemon knows it.
pub(crate) struct JobState {
    pub(crate) job: Arc<Job>,
    /// Its next scheduled instant (none while disabled).
    pub(crate) next: Option<DateTime<Utc>>,
    pub(crate) enabled: bool,
    /// Its last fire that ran, read from the store by `DaemonHandle::jobs` (off
    /// the loop).
    pub(crate) last: Option<FireRecord>,
}

/// A fire that is running.
pub(crate) struct RunningFire {
    /// Its store number, unless the store failed to record it.
    pub(crate) id: Option<i64>,
    pub(crate) job: String,
    pub(crate) scheduled: DateTime<Utc>,
    pub(crate) trigger: Trigger,
}

/// When a job is next due.
pub(crate) struct NextFire {
    pub(crate) job: String,
    pub(crate) at: DateTime<Utc>,
}

/// The daemon's state as a whole.
pub(crate) struct DaemonStatus {
    pub(crate) version: &'static str,
    /// The configuration file, absolute and canonical, taken at start.
    pub(crate) config: std::path::PathBuf,
    pub(crate) started: DateTime<Utc>,
    pub(crate) uptime: TimeDelta,
    pub(crate) jobs: usize,
    pub(crate) nodes: usize,
    pub(crate) running: Vec<RunningFire>,
    /// The next fires, earliest first (at most 20).
    pub(crate) next: Vec<NextFire>,
    /// The errors of the last reload, if it failed, one line each.
    pub(crate) config_errors: Vec<String>,
    pub(crate) ssh_masters: usize,
    pub(crate) restart_pending: Vec<PendingRestart>,
}

/// How a reload went: in force (with a summary of the changes), or not (with the
/// configuration's errors).
#[derive(Debug, Clone)]
pub(crate) struct ReloadOutcome {
    pub(crate) ok: bool,
    pub(crate) summary: Option<String>,
    pub(crate) errors: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the daemon is stopping")]
    Stopping,
}

pub(crate) enum Command {
    Jobs(oneshot::Sender<Vec<JobState>>),
    /// Every node, with the state of its SSH master (none before its first connection).
    Nodes(oneshot::Sender<Vec<(Arc<Node>, Option<String>)>>),
    Status(oneshot::Sender<DaemonStatus>),
    Run {
        job: String,
        nodes: Vec<String>,
        check: bool,
        reply: oneshot::Sender<Result<i64, ControlError>>,
    },
    SetEnabled {
        job: String,
        enabled: bool,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    Cancel {
        fire: i64,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    Reload(oneshot::Sender<ReloadOutcome>),
}

/// What the API holds to talk to the daemon.
#[derive(Clone)]
pub struct DaemonHandle {
    commands: mpsc::Sender<Command>,
    pub(crate) store: Arc<Store>,
    pub(crate) events: EventLog,
    pub(crate) metrics: Arc<Metrics>,
}

impl DaemonHandle {
    pub(crate) fn new(
        commands: mpsc::Sender<Command>,
        store: Arc<Store>,
        events: EventLog,
        metrics: Arc<Metrics>,
    ) -> Self {
        DaemonHandle { commands, store, events, metrics }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, ControlError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(make(reply)).await.map_err(|_| ControlError::Stopping)?;
        answer.await.map_err(|_| ControlError::Stopping)
    }

    /// Every job, with its last fire read from the store on a blocking thread.
    pub(crate) async fn jobs(&self) -> Result<Vec<JobState>, ControlError> {
        let jobs = self.ask(Command::Jobs).await?;
        let store = Arc::clone(&self.store);
        let mut last = tokio::task::spawn_blocking(move || store.last_fires())
            .await
            .map_err(|_| ControlError::Stopping)?
            .unwrap_or_else(|err| {
                tracing::error!("failed to read the jobs' last fires: {err}");
                Default::default()
            });
        Ok(jobs.into_iter().map(|job| JobState { last: last.remove(&job.job.name), ..job }).collect())
    }

    pub(crate) async fn nodes(&self) -> Result<Vec<(Arc<Node>, Option<String>)>, ControlError> {
        self.ask(Command::Nodes).await
    }

    pub(crate) async fn status(&self) -> Result<DaemonStatus, ControlError> {
        self.ask(Command::Status).await
    }

    /// Starts a fire of `job` now (on `nodes`, or its targets); `check`: only check its resources.
    pub async fn run(&self, job: String, nodes: Vec<String>, check: bool) -> Result<i64, ControlError> {
        self.ask(|reply| Command::Run { job, nodes, check, reply }).await?
    }

    pub async fn set_enabled(&self, job: String, enabled: bool) -> Result<(), ControlError> {
        self.ask(|reply| Command::SetEnabled { job, enabled, reply }).await?
    }

    pub async fn cancel(&self, fire: i64) -> Result<(), ControlError> {
        self.ask(|reply| Command::Cancel { fire, reply }).await?
    }

    pub(crate) async fn reload(&self) -> Result<ReloadOutcome, ControlError> {
        self.ask(Command::Reload).await
    }
}
