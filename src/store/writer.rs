//! The store's writer thread: node results and fire endings, committed in groups.
//!
//! When a thousand fires end in the same second, a transaction per result would
//! serialize a thousand commits on the daemon's worker threads. Instead they are
//! queued to one thread that drains whatever is waiting and commits it at once,
//! keeping their order; `finish` answers only once its fire (and every result queued
//! before it) is committed.

use std::sync::mpsc;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::model::{FireStatus, NodeRecord};
use super::sqlite::insert_node;

pub(crate) enum Write {
    Node(NodeRecord),
    Finish { id: i64, status: FireStatus, started: i64, finished: i64, done: oneshot::Sender<()> },
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
        let mut answers = Vec::new();
        if let Err(err) = commit(&mut connection, group, &mut answers) {
            tracing::error!(target: "loom::store", "failed to write results to the state store: {err}");
        }
        for done in answers {
            let _ = done.send(());
        }
    }
}

fn commit(
    connection: &mut Connection,
    group: Vec<Write>,
    answers: &mut Vec<oneshot::Sender<()>>,
) -> rusqlite::Result<()> {
    let transaction = connection.transaction()?;
    for write in group {
        match write {
            Write::Node(record) => insert_node(&transaction, &record)?,
            Write::Finish { id, status, started, finished, done } => {
                transaction
                    .prepare_cached("UPDATE fires SET status = ?2, started = ?3, finished = ?4 WHERE id = ?1")?
                    .execute(params![id, status.as_str(), started, finished])?;
                answers.push(done);
            }
        }
    }
    transaction.commit()
}
