//! The store as the rest of Loom talks to it: one type whatever holds the data.
//!
//! Two backends behind the same methods: SQLite (`sqlite.rs`, one daemon per
//! store, locked by `lock.rs`) and PostgreSQL (`postgres.rs`, several daemons on
//! one database: a cluster). Writes go through the backend's one writer thread
//! (`writer.rs`, shared by both: the backend gives it only its `commit`) and are
//! answered once committed; reads return what is committed.
//!
//! An enum rather than a trait object: the set of backends is closed, the callers
//! keep one concrete `Store` (and `Arc<Store>`), the async methods need no boxing,
//! and each method says in one `match` where it goes. The single-writer design is
//! the same on both sides, so the variants differ only in their SQL.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::model::{
    Cancelled, Claim, Fenced, FencedRecord, FireRecord, FireStatus, Member, NodeCell, NodeRecord, NodeWork,
    NotificationRecord, Trigger,
};
use super::outbox::{Attempt, Notices, Pending};
use super::postgres::{ClusterSignals, ClusterTiming, Postgres, PostgresTarget};
use super::sqlite::{FireFilter, FireStart, Sqlite, StoreError};
use super::writer::OutboxSignal;

/// The state store: fires, node results, enabled jobs, last scheduled instants.
pub struct Store {
    backend: Backend,
}

enum Backend {
    Sqlite(Sqlite),
    Postgres(Postgres),
}

/// Calls the same method on whichever backend holds the store.
macro_rules! each {
    ($store:expr, $backend:ident => $call:expr) => {
        match &$store.backend {
            Backend::Sqlite($backend) => $call,
            Backend::Postgres($backend) => $call,
        }
    };
}

impl Store {
    /// Opens (creating it and its folder if needed) and migrates the store.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Ok(Store { backend: Backend::Sqlite(Sqlite::open(path)?) })
    }

    /// Opens an existing store for reading only (the CLI, while a daemon may write).
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        Ok(Store { backend: Backend::Sqlite(Sqlite::open_read_only(path)?) })
    }

    /// Counts the writer's commit times on `metrics` (the daemon's).
    pub(crate) fn observe(&self, metrics: Arc<crate::metrics::Metrics>) {
        each!(self, backend => backend.observe(metrics))
    }

    /// The store a configuration names, opened for writing by `command`:
    /// PostgreSQL when `postgres` is given, else SQLite at `state`.
    pub fn open_configured(
        state: &Path,
        postgres: Option<&PostgresTarget>,
        command: &str,
    ) -> Result<Store, StoreError> {
        match postgres {
            Some(target) => Store::open_postgres(target, command),
            None => Store::open(state),
        }
    }

    /// The store a configuration names, opened for reading; `None` while a
    /// SQLite store has not been made yet.
    pub fn open_configured_read_only(
        state: &Path,
        postgres: Option<&PostgresTarget>,
    ) -> Result<Option<Store>, StoreError> {
        match postgres {
            Some(target) => Store::open_postgres_read_only(target).map(Some),
            None if !state.exists() => Ok(None),
            None => Store::open_read_only(state).map(Some),
        }
    }

    /// Connects to (and migrates) a PostgreSQL store as a member of its cluster,
    /// running `command` (say `loom serve`).
    pub fn open_postgres(target: &PostgresTarget, command: &str) -> Result<Store, StoreError> {
        Ok(Store { backend: Backend::Postgres(Postgres::open(target, command)?) })
    }

    /// Connects to a PostgreSQL store for reading only (the CLI).
    pub fn open_postgres_read_only(target: &PostgresTarget) -> Result<Store, StoreError> {
        Ok(Store { backend: Backend::Postgres(Postgres::open_read_only(target)?) })
    }

    /// The store as logs and `status` name it (a PostgreSQL store without its
    /// password).
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Sqlite(sqlite) => sqlite.path().display().to_string(),
            Backend::Postgres(postgres) => postgres.describe().to_string(),
        }
    }

    /// Marks fires left `running` by a daemon that stopped as `interrupted`, with an
    /// `interrupted` result for each node that had none. Returns how many.
    /// Their notifications (`failure`) are enqueued for the jobs' `rules`.
    pub fn recover_interrupted(
        &self,
        rules: &std::collections::HashMap<String, Vec<std::sync::Arc<crate::config::notify::NotifyRule>>>,
    ) -> Result<usize, StoreError> {
        each!(self, backend => backend.recover_interrupted(rules))
    }

    /// Records a fire as running, before any of its tasks start. `None` when this
    /// (job, scheduled instant) was already recorded: it must not run again.
    pub fn begin_fire(
        &self,
        job: &str,
        scheduled: DateTime<Utc>,
        trigger: Trigger,
        nodes: &[String],
    ) -> Result<Option<i64>, StoreError> {
        each!(self, backend => backend.begin_fire(job, scheduled, trigger, nodes))
    }

    /// Queues recording many fires as running in one transaction (fires due
    /// together are recorded together) without waiting for it; `done` gets each
    /// one's answer, as for `begin_fire`, once they are committed. It is called on
    /// the writer's thread, so it only hands the answer on.
    pub fn queue_begin_fires(
        &self,
        fires: &[FireStart<'_>],
        done: impl FnOnce(Result<Vec<Option<i64>>, StoreError>) + Send + 'static,
    ) {
        each!(self, backend => backend.queue_begin_fires(fires, done))
    }

    /// Queues the record of a fire that did not run, and why, with the
    /// notifications it makes (`skipped`), without waiting for it (a failure is
    /// logged); `settled` waits for it.
    pub fn queue_skipped(
        &self,
        job: &str,
        scheduled: DateTime<Utc>,
        trigger: Trigger,
        note: &str,
        notices: Option<Notices>,
    ) {
        each!(self, backend => backend.queue_skipped(job, scheduled, trigger, note, notices))
    }

    /// Writes node results through the writer thread, in order with
    /// `finish_queued`; resolves once they are committed (with whatever other
    /// writes were waiting: one transaction for a burst of results).
    pub async fn record_nodes(&self, records: Vec<NodeRecord>) -> Result<(), StoreError> {
        each!(self, backend => backend.record_nodes(records).await)
    }

    /// Marks a fire finished, having started at `started`, through the writer
    /// thread, and enqueues the notifications of its outcome in the same
    /// transaction; resolves once it, and every result queued before it, is committed.
    pub async fn finish_queued(
        &self,
        id: i64,
        status: FireStatus,
        started: DateTime<Utc>,
        notices: Option<Notices>,
    ) -> Result<(), StoreError> {
        each!(self, backend => backend.finish_queued(id, status, started, notices).await)
    }

    /// Queues the notifications of fires a catch-up policy did not run (no fire
    /// records them), without waiting (a failure is logged).
    pub fn queue_missed(&self, notices: Notices) {
        each!(self, backend => backend.queue_missed(notices))
    }

    /// Records an attempt to deliver a notification; resolves once committed.
    pub async fn record_attempt(&self, attempt: Attempt) -> Result<(), StoreError> {
        each!(self, backend => backend.record_attempt(attempt).await)
    }

    /// Pending notifications due at `now`, at most `limit`, oldest due first.
    pub fn due_notifications(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Pending>, StoreError> {
        each!(self, backend => backend.due_notifications(now, limit))
    }

    /// When the next pending notification is due.
    pub fn next_notification_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        each!(self, backend => backend.next_notification_due())
    }

    /// Notifications, newest first (of one job, or all), with their attempts.
    pub fn notifications(&self, job: Option<&str>, limit: usize) -> Result<Vec<NotificationRecord>, StoreError> {
        each!(self, backend => backend.notifications(job, limit))
    }

    /// Told whenever a commit enqueued notifications (the delivery worker waits on it).
    pub(crate) fn outbox_signal(&self) -> OutboxSignal {
        each!(self, backend => backend.outbox_signal())
    }

    /// Queues giving `at` to each job as its starting point unless it has one, so a
    /// job seen for the first time has nothing to catch up (a failure is logged).
    pub fn queue_ensure_jobs<'a>(&self, jobs: impl IntoIterator<Item = &'a str>, at: DateTime<Utc>) {
        each!(self, backend => backend.queue_ensure_jobs(jobs, at))
    }

    /// Enables or disables a job; resolves once it is committed.
    pub async fn set_enabled(&self, job: &str, enabled: bool) -> Result<(), StoreError> {
        each!(self, backend => backend.set_enabled(job, enabled).await)
    }

    /// Deletes fires beyond the newest `keep` per job and fires older than `before`
    /// (running fires are kept). Resolves, once committed, to how many fires went.
    pub async fn prune(&self, keep: Option<usize>, before: Option<DateTime<Utc>>) -> Result<usize, StoreError> {
        each!(self, backend => backend.prune(keep, before).await)
    }

    /// Resolves once every write queued before it is committed.
    pub async fn settled(&self) {
        each!(self, backend => backend.settled().await)
    }

    /// Every job's latest scheduled instant on record.
    pub fn last_scheduled_all(&self) -> Result<std::collections::HashMap<String, DateTime<Utc>>, StoreError> {
        each!(self, backend => backend.last_scheduled_all())
    }

    /// The jobs that are disabled.
    pub fn disabled_jobs(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        each!(self, backend => backend.disabled_jobs())
    }

    /// Fires, newest first.
    pub fn fires(&self, filter: &FireFilter) -> Result<Vec<FireRecord>, StoreError> {
        each!(self, backend => backend.fires(filter))
    }

    pub fn fire(&self, id: i64) -> Result<Option<FireRecord>, StoreError> {
        each!(self, backend => backend.fire(id))
    }

    /// The last fire of a job that ran (not skipped).
    pub fn last_fire(&self, job: &str) -> Result<Option<FireRecord>, StoreError> {
        each!(self, backend => backend.last_fire(job))
    }

    /// Each job's last fire that ran (not skipped), by job, in one query.
    pub fn last_fires(&self) -> Result<std::collections::HashMap<String, FireRecord>, StoreError> {
        each!(self, backend => backend.last_fires())
    }

    /// Whether this store shares the node work of its daemon's fires with the
    /// other members of a cluster (PostgreSQL, opened by a daemon): then a fire's
    /// nodes are claimed row by row (`claim_work`) and recorded under their
    /// leases (`record_fenced`), and the fire is ended by whoever records its last
    /// node. With SQLite the daemon runs its fires whole, as before.
    pub fn shares_work(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(_) => false,
            Backend::Postgres(postgres) => postgres.shares_work(),
        }
    }

    /// This process's name among the cluster's members (`host/pid/start`; PostgreSQL daemons).
    pub fn member_id(&self) -> Option<String> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(postgres) => postgres.member_id().map(str::to_string),
        }
    }

    /// The cluster's heartbeat and lease (PostgreSQL).
    pub fn timing(&self) -> Option<ClusterTiming> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(postgres) => Some(postgres.timing()),
        }
    }

    /// What the other members say (a fire to claim from, a fire that ended), for
    /// a member that shares work; `None` otherwise.
    pub(crate) fn signals(&self) -> Option<ClusterSignals> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(postgres) => postgres.signals(),
        }
    }

    /// Claims up to `limit` nodes of the cluster's fires for this member, each
    /// under a lease with a new epoch; none with SQLite.
    pub fn claim_work(&self, limit: usize) -> Result<Vec<Claim>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(postgres) => postgres.claim_work(limit),
        }
    }

    /// Writes node results of a cluster fire, each only while this member holds
    /// its lease with the record's epoch; ends the fire (with notifications for
    /// `rules`) when it records the fire's last node. Resolves to how many
    /// results were refused because their lease was taken over, and whether
    /// they ended the fire.
    pub async fn record_fenced(
        &self,
        fire_id: i64,
        records: Vec<FencedRecord>,
        rules: &[std::sync::Arc<crate::config::notify::NotifyRule>],
    ) -> Result<Fenced, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Err(StoreError::Write("a SQLite store shares no node work".to_string())),
            Backend::Postgres(postgres) => {
                let rules = rules.iter().map(|r| super::outbox::RuleRow::from(r.as_ref())).collect();
                postgres.record_fenced(fire_id, records, rules).await
            }
        }
    }

    /// Tells the other members of a cluster to reload (nothing with SQLite).
    pub fn tell_reload(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(postgres) => postgres.tell_reload(),
        }
    }

    /// Cancels running cluster fire `fire_id` for every member: its nodes not
    /// started end `interrupted`, the members stop the others. With SQLite there
    /// is no cluster fire: it answers that the fire is not running.
    pub async fn cancel_fire(
        &self,
        fire_id: i64,
        rules: &std::collections::HashMap<String, Vec<std::sync::Arc<crate::config::notify::NotifyRule>>>,
    ) -> Result<Cancelled, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Cancelled { running: false, ended: None }),
            Backend::Postgres(postgres) => postgres.cancel_fire(fire_id, rules).await,
        }
    }

    /// Which of fires `ids` have ended, with their statuses (how a member
    /// following cluster fires learns of ends it was not told); none with
    /// SQLite, whose daemon runs its fires whole and follows none.
    pub fn ended_fires(&self, ids: &[i64]) -> Result<Vec<(i64, FireStatus)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(postgres) => postgres.ended_fires(ids),
        }
    }

    /// The nodes being run in the cluster now, and by which member; none with SQLite.
    pub fn node_work(&self) -> Result<Vec<NodeWork>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(postgres) => postgres.node_work(),
        }
    }

    /// The cluster's live members (PostgreSQL); none with SQLite, where the one
    /// daemon is the whole of it.
    pub fn members(&self) -> Result<Vec<Member>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(postgres) => postgres.members(),
        }
    }

    /// Publishes the configuration this daemon runs (JSON `ConfigFingerprint`) to
    /// the other members of its cluster; nothing to do with SQLite.
    pub fn publish_config(&self, config: String) {
        if let Backend::Postgres(postgres) = &self.backend {
            postgres.publish_config(config);
        }
    }

    /// Whether several daemons may share this store (PostgreSQL): a fire that
    /// cannot be recorded there is not run, as recording it is how it is claimed.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// A fire's node results, in the order they were recorded.
    pub fn node_results(&self, fire_id: i64) -> Result<Vec<NodeRecord>, StoreError> {
        each!(self, backend => backend.node_results(fire_id))
    }

    /// Every node's attempts in the fires `ids`, without their output.
    pub fn node_cells(&self, ids: &[i64]) -> Result<Vec<NodeCell>, StoreError> {
        each!(self, backend => backend.node_cells(ids))
    }

    /// Each node's latest recorded attempt, by node.
    pub fn last_cells(&self) -> Result<std::collections::HashMap<String, NodeCell>, StoreError> {
        each!(self, backend => backend.last_cells())
    }
}
