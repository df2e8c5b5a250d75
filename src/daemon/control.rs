//! Requests to the running daemon (from the API) and their answers.
//!
//! The daemon's state lives in its loop; the API asks through a channel and gets a
//! reply on a oneshot, so nothing is shared behind locks. Reads of the history go to
//! the store directly, and live events from the daemon's event log.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::api::model::{JobView, NodeView, ReloadView, StatusView};
use crate::runner::EventLog;
use crate::store::Store;

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
    Jobs(oneshot::Sender<Vec<JobView>>),
    Nodes(oneshot::Sender<Vec<NodeView>>),
    Status(oneshot::Sender<StatusView>),
    Run { job: String, nodes: Vec<String>, check: bool, reply: oneshot::Sender<Result<i64, ControlError>> },
    SetEnabled { job: String, enabled: bool, reply: oneshot::Sender<Result<(), ControlError>> },
    Cancel { fire: i64, reply: oneshot::Sender<Result<(), ControlError>> },
    Reload(oneshot::Sender<ReloadView>),
}

/// What the API holds to talk to the daemon.
#[derive(Clone)]
pub struct DaemonHandle {
    commands: mpsc::Sender<Command>,
    pub(crate) store: Arc<Store>,
    pub(crate) events: EventLog,
}

impl DaemonHandle {
    pub(crate) fn new(commands: mpsc::Sender<Command>, store: Arc<Store>, events: EventLog) -> Self {
        DaemonHandle { commands, store, events }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, ControlError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(make(reply)).await.map_err(|_| ControlError::Stopping)?;
        answer.await.map_err(|_| ControlError::Stopping)
    }

    pub async fn jobs(&self) -> Result<Vec<JobView>, ControlError> {
        self.ask(Command::Jobs).await
    }

    pub async fn nodes(&self) -> Result<Vec<NodeView>, ControlError> {
        self.ask(Command::Nodes).await
    }

    pub async fn status(&self) -> Result<StatusView, ControlError> {
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

    pub async fn reload(&self) -> Result<ReloadView, ControlError> {
        self.ask(Command::Reload).await
    }
}
