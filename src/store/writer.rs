//! The store's writer thread: every write of a daemon, committed in groups.
//!
//! Fire starts and skips, node results, fire ends, enabling and disabling jobs,
//! pruning and the recovery at start-up all go through this one thread, so there is
//! one path to the database and its order is the order of the requests. When a
//! thousand fires end in the same second, a transaction per result would serialize
//! a thousand commits; instead the thread drains whatever is waiting (up to `GROUP`
//! writes) and commits it in one transaction, keeping their order. Each write is
//! answered only once its transaction is committed — with the error if it failed —
//! so nothing is reported (CLI, API, events, log) before it is on disk. A failed
//! group fails every write in it. The thread and its queue serve both backends:
//! SQLite's commit is below, PostgreSQL's in `postgres.rs` (`start_with`).
//!
//! A backend may say that its database is unreachable (PostgreSQL restarting, the
//! network gone) rather than that the writes failed: then the group is kept and
//! tried again, with whatever is queued meanwhile, until the database is back, so
//! no result or fire end is lost. Fire claims (`Begin`) are the exception: a
//! claim that failed, or of a scheduled fire that waited so long that it would
//! start more than a second late, fails (`StoreError::Unavailable`) rather than start its fire
//! late whatever the job's catch-up policy says; the daemon decides what runs
//! once the store is back.

use std::sync::{Arc, OnceLock, mpsc};
use std::time::Instant;

use rusqlite::{Connection, Transaction, params};

use super::model::{FencedRecord, FireStatus, NodeRecord, Trigger};
use super::outbox::{self, Attempt, Notices};
use super::sqlite::{self, StoreError};
use crate::metrics::Metrics;

/// A fire to record, owning its text (it crosses to the writer thread).
pub(crate) struct FireRow {
    pub(crate) job: String,
    pub(crate) scheduled: i64,
    pub(crate) trigger: Trigger,
    pub(crate) nodes: Vec<String>,
    pub(crate) started: i64,
    pub(crate) check: bool,
    /// Its node work is shared by a cluster's members (`node_work` rows are made
    /// with it): a daemon's fires on PostgreSQL, never a `loom run` of the CLI.
    pub(crate) share: bool,
}

/// One change to the store.
pub(crate) enum Change {
    /// Fires recorded as running; answers each one's number, `None` for a
    /// (job, scheduled instant) already on record.
    Begin(Vec<FireRow>),
    /// A fire that did not run, and why; answers its number as `Begin` does.
    /// Its notifications (`skipped`) are enqueued in the same transaction.
    Skip {
        fire: FireRow,
        note: String,
        notices: Option<Notices>,
    },
    Nodes(Vec<NodeRecord>),
    /// A cluster fire's node results, each written only while this member still
    /// holds the node's lease with the record's epoch; answers how many were
    /// refused and whether they ended the fire. Whoever records a fire's last node ends the fire in the same
    /// transaction, enqueueing its notifications for `rules` (PostgreSQL only).
    Fenced {
        fire_id: i64,
        records: Vec<FencedRecord>,
        rules: Vec<outbox::RuleRow>,
    },
    /// A fire's end, and the notifications of its outcome, in one transaction.
    Finish {
        id: i64,
        status: FireStatus,
        started: i64,
        finished: i64,
        notices: Option<Notices>,
    },
    /// The notifications of missed fires that no fire records.
    Missed {
        notices: Notices,
        at: i64,
    },
    /// An attempt to deliver a notification, and where it stands after it.
    Attempt(Attempt),
    /// Gives jobs seen for the first time `at` as their starting point.
    EnsureJobs {
        jobs: Vec<String>,
        at: i64,
    },
    SetEnabled {
        job: String,
        enabled: bool,
    },
    /// Answers how many fires went.
    Prune {
        keep: Option<usize>,
        before: Option<i64>,
    },
    /// Answers how many running fires became interrupted; enqueues their
    /// notifications for the jobs' rules.
    Recover {
        now: i64,
        rules: std::collections::HashMap<String, Vec<outbox::RuleRow>>,
    },
    /// Cancels a running cluster fire: its nodes no member has claimed end
    /// `interrupted`, every member is told to stop its parts of the fire, and the
    /// fire ends (with its notifications for its job's `rules`) if no node is
    /// left running (PostgreSQL only).
    Cancel {
        fire_id: i64,
        rules: std::collections::HashMap<String, Vec<outbox::RuleRow>>,
    },
}

/// What a committed change answers.
#[derive(Debug)]
pub(crate) enum Answer {
    Done,
    Ids(Vec<Option<i64>>),
    Count(usize),
    Fenced(super::model::Fenced),
    Cancelled(super::model::Cancelled),
}

pub(crate) type Reply = Box<dyn FnOnce(Result<Answer, StoreError>) + Send>;

/// One change, and who waits for it to be committed.
struct Write {
    change: Change,
    done: Reply,
}

pub(crate) struct Writer {
    queue: mpsc::Sender<Write>,
    /// Where the time of each commit is counted, once a daemon asks (`observe`).
    metrics: Arc<OnceLock<Arc<Metrics>>>,
}

/// Told whenever a commit enqueued notifications (the delivery worker waits on it).
pub(crate) type OutboxSignal = std::sync::Arc<tokio::sync::Notify>;

/// Why a group was not committed.
pub(crate) enum CommitFailure {
    /// The writes failed (the transaction was rolled back): each is answered with it.
    Failed(String),
    /// The database could not be reached: the group is tried again once it can.
    Unavailable(String),
}

/// Commits one group of changes in one transaction, answering each in order, and
/// says how many notifications it enqueued (the backend's half of the writer:
/// SQLite's `commit` below, PostgreSQL's in `postgres.rs`).
pub(crate) type CommitGroup = Box<dyn FnMut(&[&Change]) -> Result<(Vec<Answer>, usize), CommitFailure> + Send>;

/// The first pause before writing again to a database that could not be reached;
/// it doubles up to `RETRY_MAX`.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(250);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(1);
/// A fire claim queued while the database could not be reached is tried when it
/// is retried, unless it is a scheduled fire that would by then start more than
/// this late.
const LATE_CLAIM_MS: i64 = 1000;

/// At most this many writes go into one transaction.
const GROUP: usize = 2000;

impl Writer {
    pub(crate) fn start(mut connection: Connection, outbox: OutboxSignal) -> std::io::Result<Writer> {
        Writer::start_with(
            Box::new(move |changes| {
                commit(&mut connection, changes.iter().copied()).map_err(|err| CommitFailure::Failed(err.to_string()))
            }),
            outbox,
            String::new(),
        )
    }

    /// Starts the writer thread over a backend's `commit`; `outbox` is told
    /// whenever a commit enqueued notifications; `target` names the store in the
    /// log when it cannot be reached.
    pub(crate) fn start_with(commit: CommitGroup, outbox: OutboxSignal, target: String) -> std::io::Result<Writer> {
        let (queue, writes) = mpsc::channel();
        let metrics = Arc::new(OnceLock::new());
        let counted = Arc::clone(&metrics);
        std::thread::Builder::new()
            .name("loom-store".into())
            .spawn(move || write_forever(commit, writes, outbox, &counted, &target))?;
        Ok(Writer { queue, metrics })
    }

    /// Counts the time of each commit from now on on `metrics` (set once).
    pub(crate) fn observe(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Queues `change`; `done` gets its answer once it is committed (on the
    /// writer's thread: it must not block).
    pub(crate) fn send(&self, change: Change, done: Reply) {
        // The thread only ends when this sender is gone.
        if let Err(mpsc::SendError(write)) = self.queue.send(Write { change, done }) {
            (write.done)(Err(StoreError::WriterGone));
        }
    }

    /// Queues `change` and resolves once it is committed.
    pub(crate) async fn commit(&self, change: Change) -> Result<Answer, StoreError> {
        let (done, committed) = tokio::sync::oneshot::channel();
        self.send(change, Box::new(move |answer| drop(done.send(answer))));
        committed.await.unwrap_or(Err(StoreError::WriterGone))
    }

    /// Queues `change` and blocks this thread until it is committed (start-up and
    /// the CLI).
    pub(crate) fn commit_now(&self, change: Change) -> Result<Answer, StoreError> {
        let (done, committed) = mpsc::sync_channel(1);
        self.send(change, Box::new(move |answer| drop(done.send(answer))));
        committed.recv().unwrap_or(Err(StoreError::WriterGone))
    }

    /// Queues `change` without waiting for it; a failure is logged, naming `what`.
    pub(crate) fn queue(&self, change: Change, what: String) {
        self.send(
            change,
            Box::new(move |answer| {
                if let Err(err) = answer {
                    tracing::error!(target: "loom::store", "failed to record {what}: {err}");
                }
            }),
        );
    }
}

fn write_forever(
    mut commit: CommitGroup,
    writes: mpsc::Receiver<Write>,
    outbox: OutboxSignal,
    metrics: &OnceLock<Arc<Metrics>>,
    target: &str,
) {
    let mut lost = false;
    while let Ok(first) = writes.recv() {
        let mut group = vec![first];
        while group.len() < GROUP {
            match writes.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        let mut pause = RETRY_FIRST;
        loop {
            let clock = Instant::now();
            let committed = commit(&group.iter().map(|w| &w.change).collect::<Vec<_>>());
            if let Some(metrics) = metrics.get() {
                metrics.store_write(clock.elapsed());
            }
            match committed {
                Ok((answers, enqueued)) => {
                    if lost {
                        lost = false;
                        tracing::warn!(target: "loom::store", store = %target, "reconnected to the state store {target}; its writes go on");
                    }
                    if enqueued > 0 {
                        outbox.notify_one();
                    }
                    for (write, answer) in group.into_iter().zip(answers) {
                        (write.done)(Ok(answer));
                    }
                }
                Err(CommitFailure::Failed(err)) => {
                    tracing::error!(target: "loom::store", "failed to write to the state store: {err}");
                    for write in group {
                        (write.done)(Err(StoreError::Write(err.clone())));
                    }
                }
                Err(CommitFailure::Unavailable(err)) => {
                    if !lost {
                        lost = true;
                        tracing::error!(
                            target: "loom::store", store = %target,
                            "lost the state store {target} ({err}); its writes wait until it is back, fires due meanwhile are not started"
                        );
                    }
                    // The claims tried have failed; the rest waits.
                    fail_claims(&mut group, target, &err, |_| true);
                    if group.is_empty() {
                        break;
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(RETRY_MAX);
                    // Whatever was queued meanwhile joins the group, in order; a
                    // claim of a scheduled fire that would now start late fails
                    // untried (catch-up and manual fires are late by nature).
                    group.extend(writes.try_iter());
                    let late = chrono::Utc::now().timestamp_millis() - LATE_CLAIM_MS;
                    fail_claims(&mut group, target, &err, |rows| {
                        rows.iter().any(|row| row.trigger == Trigger::Schedule && row.started < late)
                    });
                    if group.is_empty() {
                        break;
                    }
                    continue;
                }
            }
            break;
        }
    }
}

/// Answers the fire claims in `group` that `fail` picks at once: the store is
/// unreachable.
fn fail_claims(group: &mut Vec<Write>, target: &str, err: &str, fail: impl Fn(&[FireRow]) -> bool) {
    let (claims, kept): (Vec<Write>, Vec<Write>) =
        std::mem::take(group).into_iter().partition(|w| matches!(&w.change, Change::Begin(rows) if fail(rows)));
    for claim in claims {
        (claim.done)(Err(StoreError::Unavailable { target: target.to_string(), message: err.to_string() }));
    }
    *group = kept;
}

/// Commits `changes` in one transaction; answers each, and how many notifications
/// they enqueued.
fn commit<'a>(
    connection: &mut Connection,
    changes: impl Iterator<Item = &'a Change>,
) -> rusqlite::Result<(Vec<Answer>, usize)> {
    let transaction = connection.transaction()?;
    let mut enqueued = 0;
    let answers =
        changes.map(|change| apply(&transaction, change, &mut enqueued)).collect::<rusqlite::Result<Vec<_>>>()?;
    transaction.commit()?;
    Ok((answers, enqueued))
}

fn apply(transaction: &Transaction<'_>, change: &Change, enqueued: &mut usize) -> rusqlite::Result<Answer> {
    Ok(match change {
        Change::Begin(fires) => Answer::Ids(
            fires
                .iter()
                .map(|fire| sqlite::insert_fire(transaction, fire, FireStatus::Running, None))
                .collect::<rusqlite::Result<_>>()?,
        ),
        Change::Skip { fire, note, notices } => {
            let id = sqlite::insert_fire(transaction, fire, FireStatus::Skipped, Some(note))?;
            if let (Some(id), Some(notices)) = (id, notices) {
                *enqueued +=
                    outbox::enqueue(transaction, Some(id), FireStatus::Skipped.as_str(), notices, fire.started)?;
            }
            Answer::Ids(vec![id])
        }
        Change::Nodes(records) => {
            records.iter().try_for_each(|record| sqlite::insert_node(transaction, record))?;
            Answer::Done
        }
        // A single daemon shares no node work: nothing is fenced.
        Change::Fenced { .. } => Answer::Fenced(super::model::Fenced { refused: 0, ended: None }),
        Change::Cancel { .. } => Answer::Cancelled(super::model::Cancelled { running: false, ended: None }),
        Change::Finish { id, status, started, finished, notices } => {
            transaction
                .prepare_cached("UPDATE fires SET status = ?2, started = ?3, finished = ?4 WHERE id = ?1")?
                .execute(params![id, status.as_str(), started, finished])?;
            if let Some(notices) = notices {
                *enqueued += outbox::enqueue(transaction, Some(*id), status.as_str(), notices, *finished)?;
            }
            Answer::Done
        }
        Change::Missed { notices, at } => {
            *enqueued += outbox::enqueue(transaction, None, "missed", notices, *at)?;
            Answer::Done
        }
        Change::Attempt(attempt) => {
            outbox::record_attempt(transaction, attempt)?;
            Answer::Done
        }
        Change::EnsureJobs { jobs, at } => {
            let mut statement = transaction.prepare_cached(
                "INSERT INTO jobs (job, last_scheduled) VALUES (?1, ?2)
                 ON CONFLICT(job) DO UPDATE SET last_scheduled = coalesce(last_scheduled, ?2)",
            )?;
            for job in jobs {
                statement.execute(params![job, at])?;
            }
            Answer::Done
        }
        Change::SetEnabled { job, enabled } => {
            transaction.execute(
                "INSERT INTO jobs (job, enabled) VALUES (?1, ?2) ON CONFLICT(job) DO UPDATE SET enabled = ?2",
                params![job, enabled],
            )?;
            Answer::Done
        }
        Change::Prune { keep, before } => {
            let fires = sqlite::prune(transaction, *keep, *before)?;
            outbox::prune(transaction)?;
            Answer::Count(fires)
        }
        Change::Recover { now, rules } => {
            let ids = sqlite::recover_interrupted(transaction, *now)?;
            *enqueued += outbox::enqueue_interrupted(transaction, &ids, rules, *now)?;
            Answer::Count(ids.len())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> FireRow {
        FireRow {
            job: "j".into(),
            scheduled: 0,
            trigger: Trigger::Schedule,
            nodes: Vec::new(),
            started: 0,
            check: false,
            share: false,
        }
    }

    /// A database that cannot be reached for the first `away` commits: the fire
    /// claim fails at once, the other writes wait and are committed once it is back.
    #[test]
    fn writes_wait_for_a_database_that_went_away_and_claims_fail_at_once() {
        let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&attempts);
        let commit: CommitGroup = Box::new(move |changes| {
            if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                return Err(CommitFailure::Unavailable("connection refused".into()));
            }
            Ok((changes.iter().map(|_| Answer::Done).collect(), 0))
        });
        let writer =
            Writer::start_with(commit, OutboxSignal::default(), "postgres://loom@db:5432/loom".into()).unwrap();
        let (claimed, claim) = mpsc::channel();
        let (written, write) = mpsc::channel();
        writer.send(Change::Begin(vec![row()]), Box::new(move |answer| drop(claimed.send(answer))));
        writer.send(Change::Nodes(Vec::new()), Box::new(move |answer| drop(written.send(answer))));
        match claim.recv().unwrap() {
            Err(StoreError::Unavailable { target, .. }) => assert_eq!(target, "postgres://loom@db:5432/loom"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(write.recv().unwrap(), Ok(Answer::Done)));
        assert!(attempts.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    }
}
