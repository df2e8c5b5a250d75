//! The state store: SQLite in WAL mode, one file, schema migrations in the code.
//!
//! Every write goes through the writer thread (`writer.rs`), which commits whatever
//! is waiting in one transaction and answers each write only once it is committed;
//! this file opens the store, runs the migrations, reads, and holds the SQL the
//! writer runs. A fire is written before its tasks start. Nothing is
//! reported — to the CLI, the API, the event stream or a log — before that, so a
//! crash loses no result anyone was told about; fires found `running` at start-up
//! belonged to a process that died and become `interrupted`.
//! (WAL with `synchronous=NORMAL` survives a killed process; only a power loss can
//! undo the last commits.) Uniqueness of (job, scheduled instant) for scheduled and
//! catch-up fires is enforced by the database, so the same fire never runs twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::model::{FireRecord, FireStatus, NodeCell, NodeRecord, NodeStatus, NotificationRecord, Trigger};
use super::outbox::{self, Attempt, Notices, Pending, RuleRow};
use super::writer::{Answer, Change, FireRow, OutboxSignal, Writer};
use crate::config::notify::NotifyRule;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to open the state store {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("failed to create the folder for the state store {path}: {source}")]
    Folder { path: PathBuf, source: std::io::Error },
    #[error("the state store {path} has schema version {found}, newer than this loom ({supported}); upgrade loom")]
    TooNew { path: PathBuf, found: i64, supported: i64 },
    #[error(
        "the state store {path} is in use by {holder}; one process writes a store at a time (stop it, or give this configuration its own `state`)"
    )]
    Locked { path: PathBuf, holder: String },
    #[error("failed to lock the state store with {path}: {source}")]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("the state store's writer has stopped")]
    WriterGone,
    #[error("failed to write to the state store: {0}")]
    Write(String),
    #[error("state store: {0}")]
    Query(#[from] rusqlite::Error),
    #[error("failed to connect to the state store {target}: {message}")]
    Connect { target: String, message: String },
    #[error("state store (PostgreSQL): {0}")]
    Postgres(String),
    #[error("the state store {target} cannot be reached: {message}")]
    Unavailable { target: String, message: String },
}

/// Schema migrations; `PRAGMA user_version` is how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: fires, node results, per-job state.
    "CREATE TABLE fires (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        scheduled INTEGER NOT NULL,
        trigger TEXT NOT NULL,
        status TEXT NOT NULL,
        started INTEGER,
        finished INTEGER,
        nodes TEXT NOT NULL DEFAULT '[]',
        note TEXT
    );
    CREATE UNIQUE INDEX fires_identity ON fires(job, scheduled) WHERE trigger IN ('schedule', 'catch-up');
    CREATE INDEX fires_by_job ON fires(job, id);
    CREATE INDEX fires_by_status ON fires(status);
    CREATE TABLE node_results (
        id INTEGER PRIMARY KEY,
        fire_id INTEGER NOT NULL REFERENCES fires(id) ON DELETE CASCADE,
        node TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        status TEXT NOT NULL,
        exit_code INTEGER,
        started INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        error TEXT,
        output TEXT NOT NULL
    );
    CREATE INDEX node_results_by_fire ON node_results(fire_id);
    CREATE TABLE jobs (
        job TEXT PRIMARY KEY,
        enabled INTEGER NOT NULL DEFAULT 1,
        last_scheduled INTEGER
    );",
    // 2: the notification outbox and every delivery attempt.
    "CREATE TABLE notifications (
        id INTEGER PRIMARY KEY,
        fire_id INTEGER,
        job TEXT NOT NULL,
        event TEXT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        secret_file TEXT,
        template TEXT,
        payload TEXT NOT NULL,
        created INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER
    );
    CREATE INDEX notifications_due ON notifications(next_attempt) WHERE state = 'pending';
    CREATE INDEX notifications_by_job ON notifications(job, id);
    CREATE TABLE notification_attempts (
        id INTEGER PRIMARY KEY,
        notification_id INTEGER NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        status_code INTEGER,
        error TEXT
    );
    CREATE INDEX notification_attempts_by_notification ON notification_attempts(notification_id);",
    // 3: each node result's resources (JSON list of `ResourceOutcome`).
    "ALTER TABLE node_results ADD COLUMN resources TEXT;",
    // 4: a node's latest result without scanning every result (the nodes page).
    "CREATE INDEX node_results_by_node ON node_results(node, id);",
    // 5: which member ran each node attempt (always this daemon here; a cluster's
    // members differ), and a fire's check mode. PostgreSQL's 5 also makes the
    // node work that members share.
    "ALTER TABLE node_results ADD COLUMN daemon TEXT;
    ALTER TABLE fires ADD COLUMN check_mode INTEGER NOT NULL DEFAULT 0;",
    // 6: nothing —
    // PostgreSQL's 6 records each cluster member's configuration, and SQLite has
    // no members.
    "-- no change",
    // 7: nothing — PostgreSQL's 7 indexes the node work members claim.
    "-- no change",
];

/// The SQLite backend of `Store`: a connection for reads and the writer thread
/// for every write.
pub struct Sqlite {
    path: PathBuf,
    connection: Mutex<Connection>,
    /// Group-commits node results and fire endings; `None` when read-only.
    writer: Option<Writer>,
    /// Told when a commit enqueued notifications.
    outbox: OutboxSignal,
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn instant(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A fire to record as started.
pub struct FireStart<'a> {
    pub job: &'a str,
    pub scheduled: DateTime<Utc>,
    pub trigger: Trigger,
    pub nodes: &'a [String],
    /// When it starts (or is due to, when it is recorded ahead); the fire's end
    /// writes the instant it really did.
    pub started: DateTime<Utc>,
    /// Check mode (`loom run --check`, a `mode: check` job).
    pub check: bool,
}

pub(super) fn insert_fire(
    transaction: &rusqlite::Transaction<'_>,
    fire: &FireRow,
    status: FireStatus,
    note: Option<&str>,
) -> rusqlite::Result<Option<i64>> {
    let nodes = serde_json::to_string(&fire.nodes).expect("names serialize");
    let mut insert = transaction.prepare_cached(
        "INSERT OR IGNORE INTO fires (job, scheduled, trigger, status, started, finished, nodes, note, check_mode)
         VALUES (?1, ?2, ?3, ?4, ?5, CASE WHEN ?4 = 'running' THEN NULL ELSE ?5 END, ?6, ?7, ?8)",
    )?;
    let inserted = insert.execute(params![
        fire.job,
        fire.scheduled,
        fire.trigger.as_str(),
        status.as_str(),
        fire.started,
        nodes,
        note,
        fire.check
    ])?;
    if inserted == 0 {
        return Ok(None);
    }
    let id = transaction.last_insert_rowid();
    if matches!(fire.trigger, Trigger::Schedule | Trigger::CatchUp) {
        let mut last = transaction.prepare_cached(
            "INSERT INTO jobs (job, last_scheduled) VALUES (?1, ?2)
             ON CONFLICT(job) DO UPDATE SET last_scheduled = max(coalesce(last_scheduled, 0), ?2)",
        )?;
        last.execute(params![fire.job, fire.scheduled])?;
    }
    Ok(Some(id))
}

impl FireStart<'_> {
    fn row(&self) -> FireRow {
        FireRow {
            job: self.job.to_string(),
            scheduled: millis(self.scheduled),
            trigger: self.trigger,
            nodes: self.nodes.to_vec(),
            started: millis(self.started),
            check: self.check,
            share: false,
        }
    }
}

/// Marks fires left `running` as `interrupted`, with an `interrupted` result for
/// each node that had none; returns their numbers.
pub(super) fn recover_interrupted(transaction: &rusqlite::Transaction<'_>, now: i64) -> rusqlite::Result<Vec<i64>> {
    let running: Vec<(i64, String)> = {
        let mut statement = transaction.prepare("SELECT id, nodes FROM fires WHERE status = 'running'")?;
        statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
    };
    for (id, nodes) in &running {
        let nodes: Vec<String> = serde_json::from_str(nodes).unwrap_or_default();
        for node in nodes {
            transaction.execute(
                "INSERT INTO node_results (fire_id, node, attempt, status, started, duration_ms, error, output)
                 SELECT ?1, ?2, 1, 'interrupted', ?3, 0, 'the daemon stopped while this node ran', ''
                 WHERE NOT EXISTS (SELECT 1 FROM node_results WHERE fire_id = ?1 AND node = ?2)",
                params![id, node, now],
            )?;
        }
        transaction
            .execute("UPDATE fires SET status = 'interrupted', finished = ?2 WHERE id = ?1", params![id, now])?;
    }
    Ok(running.into_iter().map(|(id, _)| id).collect())
}

/// Deletes fires beyond the newest `keep` per job and fires older than `before`
/// (running fires are kept); returns how many went.
pub(super) fn prune(
    transaction: &rusqlite::Transaction<'_>,
    keep: Option<usize>,
    before: Option<i64>,
) -> rusqlite::Result<usize> {
    let mut removed = 0;
    if let Some(keep) = keep {
        removed += transaction.execute(
            "DELETE FROM fires WHERE status <> 'running' AND id IN (
                SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY job ORDER BY id DESC) AS rank FROM fires)
                WHERE rank > ?1)",
            [keep as i64],
        )?;
    }
    if let Some(before) = before {
        removed += transaction.execute(
            "DELETE FROM fires WHERE status <> 'running' AND coalesce(finished, started, scheduled) < ?1",
            [before],
        )?;
    }
    Ok(removed)
}

/// Writes one node result (the writer thread uses it too).
pub(super) fn insert_node(connection: &Connection, record: &NodeRecord) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO node_results (fire_id, node, attempt, status, exit_code, started, duration_ms, error, output, resources)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            record.fire_id,
            record.node,
            record.attempt,
            record.status.as_str(),
            record.exit_code,
            millis(record.started),
            record.duration_ms as i64,
            record.error,
            record.output,
            (!record.resources.is_empty())
                .then(|| serde_json::to_string(&record.resources).expect("resource outcomes serialize"))
        ])
        .map(drop)
}

fn ids(answer: Answer) -> Result<Vec<Option<i64>>, StoreError> {
    match answer {
        Answer::Ids(ids) => Ok(ids),
        other => Err(StoreError::Write(format!("unexpected answer from the writer: {other:?}"))),
    }
}

fn count(answer: Answer) -> Result<usize, StoreError> {
    match answer {
        Answer::Count(count) => Ok(count),
        other => Err(StoreError::Write(format!("unexpected answer from the writer: {other:?}"))),
    }
}

/// Filters for `fires`.
#[derive(Debug, Clone, Default)]
pub struct FireFilter {
    pub job: Option<String>,
    pub node: Option<String>,
    pub failed_only: bool,
    /// Only check-mode fires that found drift.
    pub drift_only: bool,
    /// Only fires numbered below this one: the next page of a listing.
    pub before: Option<i64>,
    pub limit: usize,
}

impl Sqlite {
    /// Opens (creating it and its folder if needed) and migrates the store.
    pub fn open(path: &Path) -> Result<Sqlite, StoreError> {
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder)
                .map_err(|source| StoreError::Folder { path: folder.to_path_buf(), source })?;
        }
        let open_error = |source| StoreError::Open { path: path.to_path_buf(), source };
        let connection = Connection::open(path).map_err(open_error)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
            )
            .map_err(open_error)?;
        let mut store = Sqlite {
            path: path.to_path_buf(),
            connection: Mutex::new(connection),
            writer: None,
            outbox: OutboxSignal::default(),
        };
        store.migrate()?;
        let writing = Connection::open(path).map_err(open_error)?;
        writing.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")?;
        store.writer = Some(
            Writer::start(writing, store.outbox.clone())
                .map_err(|source| StoreError::Folder { path: path.to_path_buf(), source })?,
        );
        Ok(store)
    }

    /// Opens an existing store for reading only (the CLI, while a daemon may write).
    pub fn open_read_only(path: &Path) -> Result<Sqlite, StoreError> {
        let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
        connection.execute_batch("PRAGMA busy_timeout = 5000;")?;
        Ok(Sqlite {
            path: path.to_path_buf(),
            connection: Mutex::new(connection),
            writer: None,
            outbox: OutboxSignal::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.lock().expect("store lock");
        let version: i64 = connection.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::TooNew { path: self.path.clone(), found: version, supported });
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let transaction = connection.transaction()?;
            transaction.execute_batch(migration)?;
            transaction.pragma_update(None, "user_version", index as i64 + 1)?;
            transaction.commit()?;
        }
        Ok(())
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let mut connection = self.connection.lock().expect("store lock");
        Ok(f(&mut connection)?)
    }

    pub(crate) fn observe(&self, metrics: std::sync::Arc<crate::metrics::Metrics>) {
        if let Some(writer) = &self.writer {
            writer.observe(metrics);
        }
    }

    fn writer(&self) -> Result<&Writer, StoreError> {
        self.writer.as_ref().ok_or_else(|| StoreError::Write("the store is open for reading only".to_string()))
    }

    /// Marks fires left `running` by a daemon that stopped as `interrupted`, with an
    /// `interrupted` result for each node that had none. Returns how many.
    pub fn recover_interrupted(&self, rules: &HashMap<String, Vec<Arc<NotifyRule>>>) -> Result<usize, StoreError> {
        let rules = rules
            .iter()
            .filter(|(_, rules)| !rules.is_empty())
            .map(|(job, rules)| (job.clone(), rules.iter().map(|r| RuleRow::from(r.as_ref())).collect()))
            .collect();
        count(self.writer()?.commit_now(Change::Recover { now: millis(Utc::now()), rules })?)
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
        let fire = FireStart { job, scheduled, trigger, nodes, started: Utc::now(), check: false };
        Ok(self.begin_fires(std::slice::from_ref(&fire))?.pop().flatten())
    }

    /// Records many fires as running in one transaction and waits for the commit;
    /// each answer is as for `begin_fire`.
    fn begin_fires(&self, fires: &[FireStart<'_>]) -> Result<Vec<Option<i64>>, StoreError> {
        ids(self.writer()?.commit_now(Change::Begin(fires.iter().map(FireStart::row).collect()))?)
    }

    /// Queues recording many fires as running in one transaction, without waiting;
    /// `done` gets each one's answer (as for `begin_fire`) once they are committed,
    /// on the writer's thread.
    pub fn queue_begin_fires(
        &self,
        fires: &[FireStart<'_>],
        done: impl FnOnce(Result<Vec<Option<i64>>, StoreError>) + Send + 'static,
    ) {
        let change = Change::Begin(fires.iter().map(FireStart::row).collect());
        match self.writer() {
            Ok(writer) => writer.send(change, Box::new(move |answer| done(answer.and_then(ids)))),
            Err(err) => done(Err(err)),
        }
    }

    /// Queues the record of a fire that did not run, and why, without waiting for
    /// it (a failure is logged); `settled` waits for it.
    pub fn queue_skipped(
        &self,
        job: &str,
        scheduled: DateTime<Utc>,
        trigger: Trigger,
        note: &str,
        notices: Option<Notices>,
    ) {
        let fire = FireStart { job, scheduled, trigger, nodes: &[], started: Utc::now(), check: false }.row();
        if let Ok(writer) = self.writer() {
            let change = Change::Skip { fire, note: note.to_string(), notices };
            writer.queue(change, format!("a skipped fire of job `{job}`"));
        }
    }

    /// Writes node results through the writer thread, in order with
    /// `finish_queued`; resolves once they are committed (with whatever other
    /// writes were waiting: one transaction for a burst of results).
    pub async fn record_nodes(&self, records: Vec<NodeRecord>) -> Result<(), StoreError> {
        self.writer()?.commit(Change::Nodes(records)).await.map(drop)
    }

    /// Marks a fire finished, having started at `started`, through the writer
    /// thread; resolves once it, and every result queued before it, is committed.
    pub async fn finish_queued(
        &self,
        id: i64,
        status: FireStatus,
        started: DateTime<Utc>,
        mut notices: Option<Notices>,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        if let Some(notices) = &mut notices {
            crate::notify::body::set_finished(&mut notices.payload, now);
        }
        let (started, finished) = (millis(started), millis(now));
        self.writer()?.commit(Change::Finish { id, status, started, finished, notices }).await.map(drop)
    }

    /// Queues the notifications of missed fires (no fire records them).
    pub fn queue_missed(&self, notices: Notices) {
        if let Ok(writer) = self.writer() {
            let what = format!("the missed fires of job `{}`", notices.job);
            writer.queue(Change::Missed { notices, at: millis(Utc::now()) }, what);
        }
    }

    /// Records an attempt to deliver a notification; resolves once committed.
    pub async fn record_attempt(&self, attempt: Attempt) -> Result<(), StoreError> {
        self.writer()?.commit(Change::Attempt(attempt)).await.map(drop)
    }

    /// Pending notifications due at `now`, at most `limit`, oldest due first.
    pub fn due_notifications(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Pending>, StoreError> {
        self.with(|c| outbox::due(c, now, limit))
    }

    /// When the next pending notification is due.
    pub fn next_notification_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.with(|c| outbox::next_due(c))
    }

    /// Notifications, newest first, with their attempts.
    pub fn notifications(&self, job: Option<&str>, limit: usize) -> Result<Vec<NotificationRecord>, StoreError> {
        self.with(|c| outbox::list(c, job, limit))
    }

    /// Told whenever a commit enqueued notifications.
    pub fn outbox_signal(&self) -> OutboxSignal {
        self.outbox.clone()
    }

    /// Queues giving `at` to each job as its starting point unless it has one, so a
    /// job seen for the first time has nothing to catch up (a failure is logged).
    pub fn queue_ensure_jobs<'a>(&self, jobs: impl IntoIterator<Item = &'a str>, at: DateTime<Utc>) {
        let jobs = jobs.into_iter().map(str::to_string).collect();
        if let Ok(writer) = self.writer() {
            writer.queue(Change::EnsureJobs { jobs, at: millis(at) }, "the jobs' starting points".to_string());
        }
    }

    /// Enables or disables a job; resolves once it is committed.
    pub async fn set_enabled(&self, job: &str, enabled: bool) -> Result<(), StoreError> {
        self.writer()?.commit(Change::SetEnabled { job: job.to_string(), enabled }).await.map(drop)
    }

    /// Deletes fires beyond the newest `keep` per job and fires older than `before`
    /// (running fires are kept). Resolves, once committed, to how many fires went.
    pub async fn prune(&self, keep: Option<usize>, before: Option<DateTime<Utc>>) -> Result<usize, StoreError> {
        count(self.writer()?.commit(Change::Prune { keep, before: before.map(millis) }).await?)
    }

    /// Resolves once every write queued before it is committed.
    pub async fn settled(&self) {
        if let Ok(writer) = self.writer() {
            let _ = writer.commit(Change::Nodes(Vec::new())).await;
        }
    }

    /// Every job's latest scheduled instant on record.
    pub fn last_scheduled_all(&self) -> Result<std::collections::HashMap<String, DateTime<Utc>>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT job, last_scheduled FROM jobs WHERE last_scheduled IS NOT NULL")?;
            let rows = statement.query_map([], |r| Ok((r.get::<_, String>(0)?, instant(r.get(1)?))))?;
            rows.collect()
        })
    }

    /// The jobs that are disabled.
    pub fn disabled_jobs(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare_cached("SELECT job FROM jobs WHERE enabled = 0")?;
            let rows = statement.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
    }

    const FIRE_COLUMNS: &'static str = "f.id, f.job, f.scheduled, f.trigger, f.status, f.started, f.finished, f.nodes, f.note,
        (SELECT count(DISTINCT node) FROM node_results n WHERE n.fire_id = f.id AND n.status = 'ok'),
        (SELECT count(DISTINCT node) FROM node_results n WHERE n.fire_id = f.id AND n.status <> 'ok'
            AND NOT EXISTS (SELECT 1 FROM node_results m WHERE m.fire_id = f.id AND m.node = n.node AND m.status = 'ok'))";

    fn fire_row(row: &rusqlite::Row) -> rusqlite::Result<FireRecord> {
        let nodes: String = row.get(7)?;
        Ok(FireRecord {
            id: row.get(0)?,
            job: row.get(1)?,
            scheduled: instant(row.get(2)?),
            trigger: Trigger::parse(&row.get::<_, String>(3)?).unwrap_or(Trigger::Manual),
            status: FireStatus::parse(&row.get::<_, String>(4)?).unwrap_or(FireStatus::Failed),
            started: row.get::<_, Option<i64>>(5)?.map(instant),
            finished: row.get::<_, Option<i64>>(6)?.map(instant),
            nodes: serde_json::from_str(&nodes).unwrap_or_default(),
            note: row.get(8)?,
            ok: row.get(9)?,
            failed: row.get(10)?,
            daemon: None,
        })
    }

    /// Fires, newest first.
    pub fn fires(&self, filter: &FireFilter) -> Result<Vec<FireRecord>, StoreError> {
        let mut sql = format!("SELECT {} FROM fires f WHERE 1 = 1", Self::FIRE_COLUMNS);
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(job) = &filter.job {
            sql.push_str(" AND f.job = ?");
            values.push(job.clone().into());
        }
        if let Some(node) = &filter.node {
            sql.push_str(" AND EXISTS (SELECT 1 FROM node_results n WHERE n.fire_id = f.id AND n.node = ?)");
            values.push(node.clone().into());
        }
        if filter.failed_only {
            sql.push_str(" AND f.status IN ('failed', 'timed-out', 'interrupted')");
        }
        if filter.drift_only {
            sql.push_str(" AND f.status = 'drift'");
        }
        if let Some(before) = filter.before {
            sql.push_str(" AND f.id < ?");
            values.push(before.into());
        }
        sql.push_str(" ORDER BY f.id DESC LIMIT ?");
        values.push((filter.limit.max(1) as i64).into());
        self.with(|c| {
            let mut statement = c.prepare(&sql)?;
            let rows = statement.query_map(rusqlite::params_from_iter(values), Self::fire_row)?;
            rows.collect()
        })
    }

    pub fn fire(&self, id: i64) -> Result<Option<FireRecord>, StoreError> {
        let sql = format!("SELECT {} FROM fires f WHERE f.id = ?1", Self::FIRE_COLUMNS);
        self.with(|c| c.query_row(&sql, [id], Self::fire_row).optional())
    }

    /// The last fire of a job that ran (not skipped).
    pub fn last_fire(&self, job: &str) -> Result<Option<FireRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM fires f WHERE f.job = ?1 AND f.status <> 'skipped' ORDER BY f.id DESC LIMIT 1",
            Self::FIRE_COLUMNS
        );
        self.with(|c| c.query_row(&sql, [job], Self::fire_row).optional())
    }

    /// Each job's last fire that ran (not skipped), by job, in one query.
    pub fn last_fires(&self) -> Result<std::collections::HashMap<String, FireRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM fires f WHERE f.id IN (SELECT max(id) FROM fires WHERE status <> 'skipped' GROUP BY job)",
            Self::FIRE_COLUMNS
        );
        self.with(|c| {
            let mut statement = c.prepare_cached(&sql)?;
            let rows = statement.query_map([], Self::fire_row)?;
            rows.map(|row| row.map(|fire| (fire.job.clone(), fire))).collect()
        })
    }

    /// A fire's node results, in the order they were recorded.
    pub fn node_results(&self, fire_id: i64) -> Result<Vec<NodeRecord>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT fire_id, node, attempt, status, exit_code, started, duration_ms, error, output, resources
                 FROM node_results WHERE fire_id = ?1 ORDER BY id",
            )?;
            let rows = statement.query_map([fire_id], |r| {
                Ok(NodeRecord {
                    fire_id: r.get(0)?,
                    node: r.get(1)?,
                    attempt: r.get(2)?,
                    status: NodeStatus::parse(&r.get::<_, String>(3)?).unwrap_or(NodeStatus::Failed),
                    exit_code: r.get(4)?,
                    started: instant(r.get(5)?),
                    duration_ms: r.get::<_, i64>(6)? as u64,
                    error: r.get(7)?,
                    output: r.get(8)?,
                    resources: r
                        .get::<_, Option<String>>(9)?
                        .and_then(|text| serde_json::from_str(&text).ok())
                        .unwrap_or_default(),
                    daemon: None,
                })
            })?;
            rows.collect()
        })
    }

    /// Every node's attempts in the fires `ids`, without their output: the cells of
    /// a history grid. By fire, then in the order they were recorded.
    pub fn node_cells(&self, ids: &[i64]) -> Result<Vec<NodeCell>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; ids.len()].join(", ");
        let sql = format!(
            "SELECT fire_id, node, attempt, status, exit_code, started, duration_ms
             FROM node_results WHERE fire_id IN ({marks}) ORDER BY fire_id, id"
        );
        self.with(|c| {
            let mut statement = c.prepare(&sql)?;
            let rows = statement.query_map(rusqlite::params_from_iter(ids), Self::cell_row)?;
            rows.collect()
        })
    }

    /// Each node's latest recorded attempt, by node.
    pub fn last_cells(&self) -> Result<std::collections::HashMap<String, NodeCell>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare_cached(
                "SELECT fire_id, node, attempt, status, exit_code, started, duration_ms
                 FROM node_results WHERE id IN (SELECT max(id) FROM node_results GROUP BY node)",
            )?;
            let rows = statement.query_map([], Self::cell_row)?;
            rows.map(|row| row.map(|cell| (cell.node.clone(), cell))).collect()
        })
    }

    fn cell_row(r: &rusqlite::Row) -> rusqlite::Result<NodeCell> {
        Ok(NodeCell {
            fire_id: r.get(0)?,
            node: r.get(1)?,
            attempt: r.get(2)?,
            status: NodeStatus::parse(&r.get::<_, String>(3)?).unwrap_or(NodeStatus::Failed),
            exit_code: r.get(4)?,
            started: instant(r.get(5)?),
            duration_ms: r.get::<_, i64>(6)? as u64,
        })
    }

    /// `PRAGMA integrity_check` (the unit tests' proof that a store survived).
    #[cfg(test)]
    pub(crate) fn integrity_check(&self) -> Result<String, StoreError> {
        self.with(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Sqlite) {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(&dir.path().join("state/loom.db")).unwrap();
        (dir, store)
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_scheduled_fire_is_recorded_once() {
        let (_dir, store) = store();
        let nodes = vec!["a".to_string()];
        let first = store.begin_fire("job", at("2026-01-01T00:00:00Z"), Trigger::Schedule, &nodes).unwrap();
        assert!(first.is_some());
        assert_eq!(store.begin_fire("job", at("2026-01-01T00:00:00Z"), Trigger::CatchUp, &nodes).unwrap(), None);
        // Manual runs are never duplicates of anything.
        assert!(store.begin_fire("job", at("2026-01-01T00:00:00Z"), Trigger::Manual, &nodes).unwrap().is_some());
        assert_eq!(store.last_scheduled_all().unwrap().get("job"), Some(&at("2026-01-01T00:00:00Z")));
    }

    #[tokio::test]
    async fn running_fires_become_interrupted_with_a_result_per_missing_node() {
        let (_dir, store) = store();
        let nodes = vec!["a".to_string(), "b".to_string()];
        let id = store.begin_fire("job", at("2026-01-01T00:00:00Z"), Trigger::Schedule, &nodes).unwrap().unwrap();
        store
            .record_nodes(vec![NodeRecord {
                fire_id: id,
                node: "a".into(),
                attempt: 1,
                status: NodeStatus::Ok,
                exit_code: Some(0),
                started: Utc::now(),
                duration_ms: 5,
                error: None,
                output: "hi\n".into(),
                daemon: None,
                resources: Vec::new(),
            }])
            .await
            .unwrap();
        assert_eq!(store.recover_interrupted(&HashMap::new()).unwrap(), 1);
        let fire = store.fire(id).unwrap().unwrap();
        assert_eq!(fire.status, FireStatus::Interrupted);
        let results = store.node_results(id).unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[1].node, "b");
        assert_eq!(results[1].status, NodeStatus::Interrupted);
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    #[tokio::test]
    async fn prune_keeps_the_newest_fires_per_job() {
        let (_dir, store) = store();
        for minute in 0..5 {
            let id = store
                .begin_fire("job", at(&format!("2026-01-01T00:0{minute}:00Z")), Trigger::Schedule, &[])
                .unwrap()
                .unwrap();
            store.finish_queued(id, FireStatus::Ok, Utc::now(), None).await.unwrap();
        }
        assert_eq!(store.prune(Some(2), None).await.unwrap(), 3);
        let left = store.fires(&FireFilter { limit: 10, ..FireFilter::default() }).unwrap();
        assert_eq!(left.len(), 2);
        assert_eq!(left[0].scheduled, at("2026-01-01T00:04:00Z"));
    }

    #[tokio::test]
    async fn history_pages_by_fire_number_and_cells_come_without_output() {
        let (_dir, store) = store();
        let nodes = vec!["a".to_string(), "b".to_string()];
        let mut ids = Vec::new();
        for minute in 0..5 {
            let scheduled = at(&format!("2026-01-01T00:0{minute}:00Z"));
            let id = store.begin_fire("job", scheduled, Trigger::Schedule, &nodes).unwrap().unwrap();
            let record = |node: &str, attempt, status| NodeRecord {
                fire_id: id,
                node: node.into(),
                attempt,
                status,
                exit_code: Some(0),
                started: scheduled,
                duration_ms: 7,
                error: None,
                output: "a long output\n".into(),
                resources: Vec::new(),
                daemon: None,
            };
            let records = vec![
                record("a", 1, NodeStatus::Failed),
                record("a", 2, NodeStatus::Ok),
                record("b", 1, NodeStatus::Ok),
            ];
            store.record_nodes(records).await.unwrap();
            ids.push(id);
        }
        let page = |before| {
            let filter = FireFilter { job: Some("job".into()), before, limit: 2, ..FireFilter::default() };
            store.fires(&filter).unwrap().iter().map(|f| f.id).collect::<Vec<_>>()
        };
        assert_eq!(page(None), vec![ids[4], ids[3]]);
        assert_eq!(page(Some(ids[3])), vec![ids[2], ids[1]]);
        assert_eq!(page(Some(ids[1])), vec![ids[0]]);

        let cells = store.node_cells(&[ids[0], ids[2]]).unwrap();
        let shown: Vec<_> = cells.iter().map(|c| (c.fire_id, c.node.as_str(), c.attempt, c.status)).collect();
        assert_eq!(
            shown,
            vec![
                (ids[0], "a", 1, NodeStatus::Failed),
                (ids[0], "a", 2, NodeStatus::Ok),
                (ids[0], "b", 1, NodeStatus::Ok),
                (ids[2], "a", 1, NodeStatus::Failed),
                (ids[2], "a", 2, NodeStatus::Ok),
                (ids[2], "b", 1, NodeStatus::Ok),
            ]
        );
        assert!(store.node_cells(&[]).unwrap().is_empty());
        let last = store.last_cells().unwrap();
        assert_eq!((last["a"].fire_id, last["a"].attempt, last["a"].status), (ids[4], 2, NodeStatus::Ok));
        assert_eq!(last["b"].fire_id, ids[4]);
        // Each node's latest result is found through the index, not a scan of all results.
        let plan: Vec<String> = store
            .with(|c| {
                let mut plan = c.prepare("EXPLAIN QUERY PLAN SELECT max(id) FROM node_results GROUP BY node")?;
                plan.query_map([], |r| r.get::<_, String>(3))?.collect()
            })
            .unwrap();
        assert!(plan.iter().any(|step| step.contains("node_results_by_node")), "{plan:?}");
    }

    #[test]
    fn last_fires_has_each_jobs_last_fire_that_ran() {
        let (_dir, store) = store();
        let first = store.begin_fire("a", at("2026-01-01T00:00:00Z"), Trigger::Schedule, &[]).unwrap();
        let second = store.begin_fire("a", at("2026-01-01T00:01:00Z"), Trigger::Schedule, &[]).unwrap();
        let other = store.begin_fire("b", at("2026-01-01T00:00:00Z"), Trigger::Manual, &[]).unwrap();
        store.queue_skipped("a", at("2026-01-01T00:02:00Z"), Trigger::Schedule, "skipped", None);
        // Committed after the skip: the writer keeps the order of its writes.
        store.begin_fire("c", at("2026-01-01T00:00:00Z"), Trigger::Manual, &[]).unwrap();
        assert!(first < second);
        let last = store.last_fires().unwrap();
        assert_eq!(last.len(), 3);
        assert_eq!(last["a"].id, second.unwrap());
        assert_eq!(last["b"].id, other.unwrap());
        assert_eq!(last["a"].id, store.last_fire("a").unwrap().unwrap().id);
    }
}
