//! The store's writer thread: node results and fire endings, committed in groups.
//!
//! When a thousand fires end in the same second, a transaction per result would
//! serialize a thousand commits on the daemon's worker threads. Instead they are
//! queued to one thread that drains whatever is waiting (up to `GROUP` writes) and
//! commits it in one transaction, keeping their order. Each write is answered only
//! once its transaction is committed — with the error if it failed — so nothing is
//! reported (CLI, API, events, log) before it is on disk.

use std::sync::mpsc;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::model::{FireStatus, NodeRecord};
use super::sqlite::{StoreError, insert_node};

/// One change to the store, and who waits for it to be committed.
pub(crate) struct Write {
    pub(crate) change: Change,
    pub(crate) done: oneshot::Sender<Result<(), StoreError>>,
}

pub(crate) enum Change {
    Nodes(Vec<NodeRecord>),
    Finish { id: i64, status: FireStatus, started: i64, finished: i64 },
}

pub(crate) struct Writer {
    queue: mpsc::Sender<Write>,
}

/// At most this many writes go into one transaction.
const GROUP: usize = 2000;

impl Writer {
    pub(crate) fn start(connection: Connection) -> std::io::Result<Writer> {
        let (queue, writes) = mpsc::channel();
        std::thread::Builder::new().name("loom-store".into()).spawn(move || write_forever(connection, writes))?;
        Ok(Writer { queue })
    }

    pub(crate) fn send(&self, write: Write) {
        // The thread only ends when this sender is gone.
        let _ = self.queue.send(write);
    }
}

fn write_forever(mut connection: Connection, writes: mpsc::Receiver<Write>) {
    while let Ok(first) = writes.recv() {
        let mut group = vec![first];
        while group.len() < GROUP {
            match writes.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        let outcome = commit(&mut connection, group.iter().map(|w| &w.change));
        if let Err(err) = &outcome {
            tracing::error!(target: "loom::store", "failed to write results to the state store: {err}");
        }
        for write in group {
            let _ = write.done.send(outcome.as_ref().map(drop).map_err(|e| StoreError::Write(e.to_string())));
        }
    }
}

fn commit<'a>(connection: &mut Connection, changes: impl Iterator<Item = &'a Change>) -> rusqlite::Result<()> {
    let transaction = connection.transaction()?;
    for change in changes {
        match change {
            Change::Nodes(records) => records.iter().try_for_each(|record| insert_node(&transaction, record))?,
            Change::Finish { id, status, started, finished } => {
                transaction
                    .prepare_cached("UPDATE fires SET status = ?2, started = ?3, finished = ?4 WHERE id = ?1")?
                    .execute(params![id, status.as_str(), started, finished])?;
            }
        }
    }
    transaction.commit()
}
