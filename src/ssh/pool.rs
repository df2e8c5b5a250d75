//! One connection per node, opened on first use and kept for later tasks and fires.
//!
//! A kept SSH connection repairs a dead master itself (see `session.rs`); the pool
//! replaces a connection whose node settings changed. Concurrent tasks for the same node wait for one
//! connect instead of starting masters of their own. Dropping the pool (or
//! `close_all`) stops every master and removes its control folder.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::session::SshConnection;
use super::settings::SshSettings;
use super::{Connection, LocalConnection, SshError};
use crate::config::Node;
use crate::metrics::Metrics;

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>;

pub struct Pool {
    settings: SshSettings,
    output_limit: usize,
    /// Where masters' control folders are made (see `control.rs`).
    control: PathBuf,
    slots: Mutex<HashMap<String, Slot>>,
    metrics: Option<Arc<Metrics>>,
}

impl Pool {
    pub fn new(settings: SshSettings, output_limit: usize, control: PathBuf) -> Pool {
        Pool { settings, output_limit, control, slots: Mutex::new(HashMap::new()), metrics: None }
    }

    /// Counts reconnects on `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: Arc<Metrics>) -> Pool {
        self.metrics = Some(metrics);
        self
    }

    fn slot(&self, node: &str) -> Slot {
        let mut slots = self.slots.lock().expect("pool lock");
        Arc::clone(slots.entry(node.to_string()).or_default())
    }

    /// The node's connection, opened now if there is none or the kept one is dead.
    pub async fn connect(&self, node: &Arc<Node>) -> Result<Arc<Connection>, SshError> {
        let slot = self.slot(&node.name);
        let mut kept = slot.lock().await;
        if let Some(connection) = kept.as_ref() {
            match connection.as_ref() {
                Connection::Local(_) if node.local => return Ok(Arc::clone(connection)),
                // A master that died is reopened by the connection itself on next use.
                Connection::Ssh(ssh) if ssh.node() == node => return Ok(Arc::clone(connection)),
                _ => tracing::info!(node = %node.name, "node settings changed; reconnecting"),
            }
        }
        *kept = None;
        let connection = if node.local {
            Connection::Local(LocalConnection::new(&node.name, tokio::runtime::Handle::current(), self.output_limit))
        } else {
            let metrics = self.metrics.clone();
            let opened =
                SshConnection::open(Arc::clone(node), &self.settings, self.output_limit, &self.control, metrics)
                    .await?;
            tracing::debug!(node = %node.name, "ssh master started");
            Connection::Ssh(Box::new(opened))
        };
        let connection = Arc::new(connection);
        *kept = Some(Arc::clone(&connection));
        Ok(connection)
    }

    /// Stops every master and removes the folder of their control folders if that
    /// leaves it empty. Connections still held by running tasks close when those
    /// tasks drop them.
    pub fn close(&self) {
        self.close_all();
        let _ = std::fs::remove_dir(&self.control);
    }

    /// Stops every master. Connections still held by running tasks close when
    /// those tasks drop them.
    pub fn close_all(&self) {
        let slots: Vec<Slot> = self.slots.lock().expect("pool lock").drain().map(|(_, s)| s).collect();
        for slot in slots {
            if let Ok(mut kept) = slot.try_lock() {
                kept.take();
            }
        }
    }

    /// How many SSH masters are open: kept, and not closed by themselves after
    /// `control_persist` of idleness (a closed master removes its socket). A slot
    /// busy connecting counts as open.
    pub fn open_masters(&self) -> usize {
        let slots = self.slots.lock().expect("pool lock");
        slots
            .values()
            .filter(|slot| match slot.try_lock() {
                Ok(kept) => matches!(kept.as_deref(), Some(Connection::Ssh(ssh)) if ssh.is_open()),
                Err(_) => true,
            })
            .count()
    }

    /// Each node's SSH master as the nodes page shows it: `open`, `closed` (it
    /// closed itself after `control_persist`, or died; the next task reopens it),
    /// `connecting`, or `local`. Nodes never reached since start have none.
    pub fn master_states(&self) -> HashMap<String, &'static str> {
        let slots = self.slots.lock().expect("pool lock");
        slots
            .iter()
            .filter_map(|(node, slot)| {
                let state = match slot.try_lock() {
                    Ok(kept) => match kept.as_deref() {
                        Some(Connection::Ssh(ssh)) if ssh.is_open() => "open",
                        Some(Connection::Ssh(_)) => "closed",
                        Some(Connection::Local(_)) => "local",
                        None => return None,
                    },
                    Err(_) => "connecting",
                };
                Some((node.clone(), state))
            })
            .collect()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.close_all();
    }
}
