//! The daemon: load a snapshot, catch up on missed fires, then sleep until the next
//! fire, run it, record it, repeat.
//!
//! The loop selects over the next due instant, finished fires, API requests,
//! reloads and the shutdown signal; there is no polling. Every decision about
//! fires (overlap, catch-up, what is due) is the `Scheduler`'s, a synchronous
//! state machine: this loop only waits for the next event, hands it over with
//! the clock's `now`, and carries out the actions it returns — store writes and
//! spawning fires. It never waits on the store: writes are queued to the store's
//! writer, and those whose answer matters (fires recorded, a job enabled) come
//! back as events it selects on. Fires run as their own tasks, so a slow fire
//! never delays another job's. A fire is prepared shortly before its instant
//! (recorded, its node tasks spawned and connected, their scripts queued for the
//! instant) and starts at the instant itself, however many others are due with
//! it. On shutdown no new fire starts, queued fires are recorded as skipped,
//! fires being recorded are started, and running fires are awaited.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::clock::{Clock, SystemClock};
use super::consistency;
use super::control::{
    Command, ControlError, DaemonHandle, DaemonStatus, JobState, NextFire, ReloadOutcome, RunningFire,
};
use super::reload::{StartedWith, diff};
use super::scheduler::{Action, FireKey, Recorded, Scheduler, Stage, Start};
use super::systemd::Systemd;
use super::watch::{self, Watch, Watched};
use super::work::Work;
use crate::api;
use crate::config::{Diagnostic, Job};
use crate::metrics::Metrics;
use crate::runner::{EventLog, Fire, Gate, Recorder, Runner};
use crate::snapshot::Snapshot;
use crate::ssh::{self, Pool};
use crate::store::{FireStart, Notices, Store, StoreError, StoreLock, Trigger};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("the configuration has {} error(s); nothing was started", .0.iter().filter(|d| d.is_error()).count())]
    InvalidConfig(Vec<Diagnostic>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("failed to listen for SIGHUP: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Api(#[from] api::ApiError),
}

/// Quiet time after a file change before reloading.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// How often a shared store's members are read, to compare configurations.
const MEMBERS_EVERY: Duration = Duration::from_secs(5);
/// How often a shared store that could not be reached is tried again.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long a stopping daemon waits for its writes to a store that cannot be reached.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// How often old history is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// A store write the loop waits for without blocking: its answer comes back on
/// the loop's `answers` channel.
enum StoreAnswer {
    /// A batch of fires (`Daemon::recording`) is recorded, or failed to be.
    Recorded { batch: u64, ids: Result<Vec<Option<i64>>, StoreError> },
    /// Which jobs are disabled, read before preparing due fires.
    Disabled(Result<std::collections::HashSet<String>, StoreError>),
    /// The cluster's members, read every heartbeat (a shared store only).
    Members(Result<Vec<crate::store::Member>, StoreError>),
    /// The store, unreachable when fires were due, answered again: each job's
    /// last fire on record.
    Probed(Result<HashMap<String, DateTime<Utc>>, StoreError>),
    /// A job's enabling or disabling is committed, or failed to be.
    Enabled {
        job: String,
        enabled: bool,
        result: Result<(), StoreError>,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
}

/// Fires prepared and handed to the store's writer, waiting for its answer.
struct Recording {
    /// The snapshot they were prepared with, which they run with.
    snapshot: Arc<Snapshot>,
    starts: Vec<Start>,
    fires: Vec<Fire>,
    /// Each fire's nodes.
    targets: Vec<Vec<String>>,
}

/// A reload whose configuration is being read.
struct Reloading {
    reason: &'static str,
    replies: Vec<oneshot::Sender<ReloadOutcome>>,
    /// Asked for meanwhile: runs next, as files may have changed since this one began.
    next: Option<(&'static str, Vec<oneshot::Sender<ReloadOutcome>>)>,
}

struct Daemon {
    config_path: PathBuf,
    reloading: Option<Reloading>,
    load_done: mpsc::UnboundedSender<(Snapshot, Vec<Diagnostic>)>,
    /// The configuration file as `GET /status` reports it: absolute and canonical,
    /// taken once at start (an editor's save may briefly remove the file), so that a
    /// CLI can tell whether this daemon serves its configuration.
    config_identity: PathBuf,
    snapshot: Arc<Snapshot>,
    /// Errors of the last reload that failed (cleared by one that succeeds).
    reload_errors: Vec<Diagnostic>,
    watch: Option<Watch>,
    changes: mpsc::UnboundedSender<()>,
    store: Arc<Store>,
    /// The local path the daemon locked at start; its ssh control folder derives
    /// from it (see `ssh::control`).
    locked_state: PathBuf,
    runner: Arc<Runner>,
    clock: Arc<dyn Clock>,
    /// Every decision about fires; the fires' states live there.
    scheduler: Scheduler,
    /// Running fires' tasks, each ending with its scheduler key.
    fires: JoinSet<FireKey>,
    /// How to cancel each running fire, by its scheduler key.
    cancels: HashMap<FireKey, CancellationToken>,
    /// Where the store's answers that the loop waits for arrive.
    answers: mpsc::UnboundedSender<StoreAnswer>,
    /// Batches of fires being recorded, by number.
    recording: HashMap<u64, Recording>,
    next_batch: u64,
    /// Which jobs are disabled is being read, to prepare the fires due then.
    reading_disabled: bool,
    /// The daemon is stopping: no fire is prepared any more.
    stopping: bool,
    /// Run-now requests, answered with the fire's number once it is recorded.
    run_replies: HashMap<FireKey, oneshot::Sender<Result<i64, ControlError>>>,
    /// Cancels running fires only when the daemon is told to stop right away.
    abort: CancellationToken,
    events: EventLog,
    metrics: Arc<Metrics>,
    started: DateTime<Utc>,
    /// The API's tokens, which a reload replaces (`None` with the API off).
    api_tokens: Option<api::ApiTokens>,
    /// The settings only a restart applies, as this daemon started with them.
    started_with: StartedWith,
    /// The snapshot in force, for the notification worker (and the work loop).
    published: tokio::sync::watch::Sender<Arc<Snapshot>>,
    /// The loop that takes a cluster's node work (PostgreSQL only).
    work: Option<Arc<Work>>,
    /// This daemon's configuration as the cluster compares it (a shared store).
    fingerprint: crate::store::ConfigFingerprint,
    /// The members as last read, and what this daemon made of them.
    members: Vec<crate::store::Member>,
    verdict: consistency::Verdict,
    reading_members: bool,
    /// A shared store could not be reached to claim fires: none is prepared until
    /// it answers again (`resume`).
    outage: bool,
    probing: bool,
    /// The earliest instant of each job whose claim failed in this outage: the
    /// catch-up starts there even if the store has later fires on record.
    unclaimed: HashMap<String, DateTime<Utc>>,
}

/// Runs the daemon until `shutdown`; then no fire starts and running ones are
/// awaited — unless `abort` is cancelled too, which cancels them.
pub async fn run(
    config_path: PathBuf,
    shutdown: CancellationToken,
    abort: CancellationToken,
) -> Result<(), DaemonError> {
    run_with_clock(config_path, shutdown, abort, Arc::new(SystemClock)).await
}

/// `run`, with the scheduler reading time from `clock`.
pub async fn run_with_clock(
    config_path: PathBuf,
    shutdown: CancellationToken,
    abort: CancellationToken,
    clock: Arc<dyn Clock>,
) -> Result<(), DaemonError> {
    let (snapshot, diagnostics) = Snapshot::load(&config_path);
    for warning in diagnostics.iter().filter(|d| !d.is_error()) {
        tracing::warn!("{}", warning.one_line());
    }
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(DaemonError::InvalidConfig(diagnostics));
    }
    let settings = &snapshot.config.settings;
    // Held until the daemon ends: a second daemon on this store (with PostgreSQL,
    // of this configuration on this host) refuses to start.
    let _lock = StoreLock::acquire(&settings.state, "loom serve")?;
    let store = Arc::new(Store::open_configured(&settings.state, settings.postgres.as_ref(), "loom serve")?);
    let control = ssh::control::folder(&settings.ssh, &settings.state);
    let locked_state = settings.state.clone();
    let stopped = ssh::control::stop_leftovers(&settings.ssh, &control).await;
    if stopped > 0 {
        tracing::warn!(masters = stopped, "stopped the ssh masters a previous loom on this store left running");
    }
    let rules = snapshot.config.jobs.iter().map(|(name, job)| (name.clone(), job.notifications.clone())).collect();
    let recovered = store.recover_interrupted(&rules)?;
    if recovered > 0 {
        tracing::warn!(fires = recovered, "fires left running by a previous daemon are now marked interrupted");
    }
    let metrics = Arc::new(Metrics::new(settings.metrics));
    store.observe(Arc::clone(&metrics));
    let pool = Pool::new(settings.ssh.clone(), settings.output_limit, control).with_metrics(Arc::clone(&metrics));
    let events = EventLog::new();
    let runner = Arc::new(
        Runner::new(settings.max_workers, Arc::new(pool))
            .with_events(events.clone())
            .with_metrics(Arc::clone(&metrics)),
    );
    let (changes, mut changed) = mpsc::unbounded_channel();
    let (load_done, mut loaded) = mpsc::unbounded_channel();
    let (answers, mut answered) = mpsc::unbounded_channel();
    let (commands, mut requests) = mpsc::channel(64);
    let handle = DaemonHandle::new(commands, Arc::clone(&store), events.clone(), Arc::clone(&metrics));
    let api = match &settings.listen {
        Some(address) => {
            Some(api::serve(address, &settings.tokens, settings.tls.as_ref(), handle, shutdown.clone()).await?)
        }
        None => None,
    };
    let started_with = StartedWith::of(settings);
    let catchup_limit = settings.catchup_limit;
    let mut hangup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;
    let snapshot = Arc::new(snapshot);
    let published = tokio::sync::watch::Sender::new(Arc::clone(&snapshot));
    // Cancelled by the caller's `abort`, and by `stop` itself once fires are over.
    let abort = abort.child_token();
    let work = store.shares_work().then(|| {
        let (runner, snapshots) = (Arc::clone(&runner), published.subscribe());
        Arc::new(Work::start(Arc::clone(&store), runner, snapshots, abort.clone()))
    });
    let mut daemon = Daemon {
        config_identity: std::fs::canonicalize(&config_path).unwrap_or_else(|_| config_path.clone()),
        config_path: config_path.clone(),
        reloading: None,
        load_done,
        snapshot,
        reload_errors: Vec::new(),
        watch: None,
        changes,
        store,
        locked_state,
        runner,
        scheduler: Scheduler::new(catchup_limit),
        fires: JoinSet::new(),
        cancels: HashMap::new(),
        answers,
        recording: HashMap::new(),
        next_batch: 0,
        reading_disabled: false,
        stopping: false,
        run_replies: HashMap::new(),
        abort,
        events,
        metrics,
        started: clock.now(),
        api_tokens: api.as_ref().map(|api| api.tokens.clone()),
        started_with,
        clock,
        published,
        work,
        fingerprint: Default::default(),
        members: Vec::new(),
        verdict: Default::default(),
        reading_members: false,
        outage: false,
        probing: false,
        unclaimed: HashMap::new(),
    };
    if daemon.store.is_shared() {
        // Before the first plan, so a job defined differently from the cluster's
        // authoritative member is not fired even once.
        daemon.publish_config();
        let members = daemon.store.members();
        daemon.judge(members);
    }
    daemon.start();
    daemon.watch_files();
    release_memory();
    tracing::info!(
        config = %config_path.display(),
        state = %daemon.store.describe(),
        jobs = daemon.snapshot.config.jobs.len(),
        nodes = daemon.snapshot.config.nodes.len(),
        next = %daemon.scheduler.next_instant().map_or("none".to_string(), |at| at.to_rfc3339()),
        "loom started"
    );
    let systemd = Systemd::from_env();
    Systemd::ready(&daemon.summary());
    let pruning =
        tokio::spawn(prune_forever(Arc::clone(&daemon.store), daemon.snapshot.clone(), Arc::clone(&daemon.clock)));
    // Stops after the last fires have ended (and enqueued what they tell).
    let delivering = CancellationToken::new();
    let delivery = tokio::spawn(crate::notify::worker::deliver_forever(
        Arc::clone(&daemon.store),
        Arc::clone(&daemon.clock),
        daemon.published.subscribe(),
        delivering.clone(),
    ));

    // Editors write a file in several steps: reload once things are quiet.
    let mut reload_at: Option<tokio::time::Instant> = None;
    let clock = Arc::clone(&daemon.clock);
    let mut feed_at = systemd.next_feed(tokio::time::Instant::now());
    let shared = daemon.store.is_shared();
    // A reload asked for through another member reloads this one too.
    let me = daemon.store.member_id();
    let mut reloads = daemon.store.signals().map(|signals| signals.reload.subscribe());
    let mut members_every = tokio::time::interval(MEMBERS_EVERY);
    members_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wake = daemon.scheduler.next_wake().unwrap_or_else(|| clock.now() + chrono::TimeDelta::days(1));
        let debounce = reload_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = clock.sleep_until(wake), if !daemon.reading_disabled && !daemon.outage => daemon.fire_due(),
            _ = members_every.tick(), if shared && !daemon.reading_members => daemon.read_members(),
            _ = tokio::time::sleep(PROBE_EVERY), if daemon.outage && !daemon.probing => daemon.probe(),
            Some(finished) = daemon.fires.join_next(), if !daemon.fires.is_empty() => {
                if let Ok(key) = finished {
                    daemon.finished(key);
                }
            }
            Some(request) = requests.recv() => daemon.handle(request),
            Some(answer) = answered.recv() => daemon.answered(answer),
            Some(()) = changed.recv() => reload_at = Some(tokio::time::Instant::now() + DEBOUNCE),
            _ = tokio::time::sleep_until(debounce), if reload_at.is_some() => {
                reload_at = None;
                daemon.reload("files changed", None);
            }
            Some(()) = hangup.recv() => daemon.reload("SIGHUP", None),
            Some(from) = async {
                match &mut reloads {
                    Some(reloads) => reloads.recv().await.ok(),
                    None => std::future::pending().await,
                }
            } => {
                if me.as_deref() != Some(from.as_str()) {
                    daemon.reload("asked through another cluster member", None);
                }
            }
            Some(loaded) = loaded.recv() => daemon.loaded(loaded),
            // Fed from this loop, so that a loop that hangs is restarted by systemd.
            _ = tokio::time::sleep_until(feed_at.unwrap_or_else(tokio::time::Instant::now)), if feed_at.is_some() => {
                systemd.feed();
                feed_at = systemd.next_feed(tokio::time::Instant::now());
            }
        }
    }

    Systemd::stopping();
    pruning.abort();
    daemon.stop(answered).await;
    delivering.cancel();
    let _ = delivery.await;
    if let Some(api) = api {
        api.task.abort();
    }
    Ok(())
}

impl Daemon {
    /// Catch-up and the first plan of every job.
    fn start(&mut self) {
        let now = self.clock.now();
        let snapshot = Arc::clone(&self.snapshot);
        // Read before the loop runs, as the last fires are.
        match self.store.disabled_jobs() {
            Ok(disabled) => self.scheduler.set_disabled(disabled),
            Err(err) => tracing::error!("failed to read which jobs are disabled: {err}"),
        }
        let last = self.store.last_scheduled_all().unwrap_or_else(|err| {
            tracing::error!("failed to read the jobs' last fires; nothing is caught up: {err}");
            Default::default()
        });
        let actions = self.scheduler.start(&snapshot.config.jobs, &last, now);
        let scheduled = snapshot.config.jobs.values().filter(|j| j.schedule.as_ref().is_some_and(|s| !s.is_reboot()));
        self.store.queue_ensure_jobs(scheduled.map(|j| j.name.as_str()), now);
        self.carry_out(actions);
    }

    /// Watches the files of the current configuration (again, if they moved).
    fn watch_files(&mut self) {
        let wanted = Watched::of(&self.snapshot.config);
        if self.watch.as_ref().is_some_and(|w| w.watched == wanted) {
            return;
        }
        match watch::start(wanted, self.changes.clone()) {
            Ok(watch) => self.watch = Some(watch),
            Err(err) => tracing::warn!("failed to watch the configuration for changes (SIGHUP still reloads): {err}"),
        }
    }

    /// Loads the configuration anew on a blocking thread (reading files can be slow:
    /// firing and the API go on meanwhile); `loaded` swaps it in. A reload asked
    /// for while one is loading runs once that one is done, for every asker.
    fn reload(&mut self, reason: &'static str, reply: Option<oneshot::Sender<ReloadOutcome>>) {
        if let Some(reloading) = &mut self.reloading {
            reloading.next.get_or_insert_with(|| (reason, Vec::new())).1.extend(reply);
            return;
        }
        tracing::info!(reason, "reloading");
        Systemd::reloading();
        self.reloading = Some(Reloading { reason, replies: reply.into_iter().collect(), next: None });
        let (path, done) = (self.config_path.clone(), self.load_done.clone());
        tokio::task::spawn_blocking(move || {
            let _ = done.send(Snapshot::load(&path));
        });
    }

    /// A reload's configuration has been read: swap it in and answer whoever asked.
    fn loaded(&mut self, (snapshot, diagnostics): (Snapshot, Vec<Diagnostic>)) {
        let Some(reloading) = self.reloading.take() else { return };
        let outcome = self.swap(reloading.reason, snapshot, diagnostics);
        Systemd::ready(&self.summary());
        for reply in reloading.replies {
            let _ = reply.send(outcome.clone());
        }
        if let Some((reason, replies)) = reloading.next {
            self.reload(reason, None);
            if let Some(current) = &mut self.reloading {
                current.replies.extend(replies);
            }
        }
    }

    /// Swaps a newly loaded configuration in whole, or keeps the current one if the
    /// new one has errors.
    fn swap(&mut self, reason: &str, snapshot: Snapshot, diagnostics: Vec<Diagnostic>) -> ReloadOutcome {
        if diagnostics.iter().any(Diagnostic::is_error) {
            let errors: Vec<Diagnostic> = diagnostics.into_iter().filter(Diagnostic::is_error).collect();
            for error in &errors {
                tracing::error!("{}", error.one_line());
            }
            tracing::error!(reason, errors = errors.len(), "reload failed; the previous configuration stays in force");
            self.reload_errors = errors;
            self.metrics.reloaded(false);
            // A fix may come in a file that is not watched yet (a new folder).
            self.watch_files();
            return ReloadOutcome { ok: false, summary: None, errors: self.config_errors() };
        }
        for warning in &diagnostics {
            tracing::warn!("{}", warning.one_line());
        }
        let changes = diff(&self.snapshot, &snapshot);
        let old = std::mem::replace(&mut self.snapshot, Arc::new(snapshot));
        self.published.send_replace(Arc::clone(&self.snapshot));
        self.reload_errors.clear();
        let now = self.clock.now();
        let snapshot = Arc::clone(&self.snapshot);
        self.scheduler.reload(&snapshot.config.jobs, &changes, snapshot.config.settings.catchup_limit, now);
        if self.store.is_shared() {
            self.publish_config();
            let members = std::mem::take(&mut self.members);
            self.judge(Ok(members));
        }
        self.store.queue_ensure_jobs(changes.added.iter().map(String::as_str), now);
        let (before, after) = (&old.config.settings, &snapshot.config.settings);
        if before.ssh != after.ssh
            || before.max_workers != after.max_workers
            || before.output_limit != after.output_limit
        {
            // Running fires keep the runner they started with.
            let pool = if before.ssh == after.ssh && before.output_limit == after.output_limit {
                Arc::clone(self.runner.pool())
            } else {
                let control = ssh::control::folder(&after.ssh, &self.locked_state);
                let pool = Pool::new(after.ssh.clone(), after.output_limit, control);
                Arc::new(pool.with_metrics(Arc::clone(&self.metrics)))
            };
            let runner = Runner::new(after.max_workers, pool).with_events(self.events.clone());
            self.runner = Arc::new(runner.with_metrics(Arc::clone(&self.metrics)));
            if let Some(work) = &self.work {
                work.runner.send_replace(Arc::clone(&self.runner));
            }
        }
        match self.api_tokens.as_ref().map(|tokens| tokens.replace(&after.tokens)) {
            Some(Ok(true)) => {
                tracing::info!(tokens = after.tokens.len(), "API tokens replaced; they apply from now on")
            }
            Some(Err(err)) => tracing::error!("{err}; the previous API tokens stay in force"),
            Some(Ok(false)) | None => {}
        }
        self.started_with.log_reload(before, after);
        self.metrics.configure(after.metrics);
        for job in &changes.removed {
            self.metrics.forget_job(job);
        }
        self.metrics.reloaded(true);
        self.watch_files();
        if changes.is_empty() {
            tracing::info!(reason, "reloaded; nothing changed");
        } else {
            tracing::info!(
                reason,
                added = %changes.added.join(","),
                removed = %changes.removed.join(","),
                changed = %changes.changed.join(","),
                nodes = %changes.nodes.join(","),
                tasks = %changes.tasks.join(","),
                "reloaded: {}",
                changes.summary()
            );
        }
        release_memory();
        ReloadOutcome { ok: true, summary: Some(changes.summary()), errors: Vec::new() }
    }

    /// One line for systemd's status: what is configured, and whether the last reload failed.
    fn summary(&self) -> String {
        let (jobs, nodes) = (self.snapshot.config.jobs.len(), self.snapshot.config.nodes.len());
        match self.reload_errors.len() {
            0 => format!("{jobs} jobs, {nodes} nodes"),
            errors => format!("{jobs} jobs, {nodes} nodes; the last reload failed with {errors} error(s)"),
        }
    }

    fn config_errors(&self) -> Vec<String> {
        self.reload_errors.iter().map(Diagnostic::one_line).collect()
    }

    /// Publishes this daemon's configuration to the cluster (a shared store).
    fn publish_config(&mut self) {
        self.fingerprint = consistency::fingerprint(&self.snapshot);
        let json = serde_json::to_string(&self.fingerprint).expect("a fingerprint serializes");
        self.store.publish_config(json);
    }

    /// Reads the cluster's members off the loop (`judge` takes the answer).
    fn read_members(&mut self) {
        self.reading_members = true;
        let (store, answers) = (Arc::clone(&self.store), self.answers.clone());
        tokio::task::spawn_blocking(move || {
            let _ = answers.send(StoreAnswer::Members(store.members()));
        });
    }

    /// Compares this daemon's configuration with the members': withholds the jobs
    /// it defines differently from the authoritative member, and says so loudly
    /// once per change.
    fn judge(&mut self, members: Result<Vec<crate::store::Member>, StoreError>) {
        let members = match members {
            Ok(members) => members,
            Err(err) => {
                tracing::error!("failed to read the cluster's members to compare configurations: {err}");
                return;
            }
        };
        let me = self.store.member_id().unwrap_or_default();
        let verdict = consistency::verdict(&me, &self.fingerprint, &members);
        self.members = members;
        if verdict == self.verdict {
            return;
        }
        if verdict.differences.is_empty() {
            // (Said only after a difference.)
            tracing::info!(config = %self.fingerprint.hash, "this daemon's configuration agrees with every cluster member again");
        } else {
            let differences: Vec<String> = verdict
                .differences
                .iter()
                .map(|(member, jobs)| match jobs.is_empty() {
                    true => format!("{member}: nodes no job targets"),
                    false => format!("{member}: job(s) {}", jobs.join(", ")),
                })
                .collect();
            let withheld: Vec<&str> = verdict.withheld.iter().map(String::as_str).collect();
            let rule = match &verdict.authority {
                Some(authority) if !withheld.is_empty() => format!(
                    "the longest-running member, {authority}, is authoritative: this daemon does not fire {}",
                    withheld.join(", ")
                ),
                Some(authority) => format!("the longest-running member, {authority}, is authoritative"),
                None => "this daemon is the longest-running member: its definitions are authoritative".to_string(),
            };
            tracing::warn!(
                config = %self.fingerprint.hash,
                "CONFIGURATION DIFFERS from other cluster members — {}; {rule}",
                differences.join("; ")
            );
        }
        self.scheduler.set_withheld(verdict.withheld.clone());
        self.verdict = verdict;
    }

    /// Asks a shared store that could not be reached whether it answers again.
    fn probe(&mut self) {
        self.probing = true;
        let (store, answers) = (Arc::clone(&self.store), self.answers.clone());
        tokio::task::spawn_blocking(move || {
            let _ = answers.send(StoreAnswer::Probed(store.last_scheduled_all()));
        });
    }

    /// Fires are due: reads which jobs are disabled, off the loop, then prepares
    /// them (`prepare_due`). Read before every fire because `loom enable` and
    /// `disable` write the store directly when the daemon serves no API.
    fn fire_due(&mut self) {
        if !self.scheduler.has_due(self.clock.now()) || self.reading_disabled {
            return;
        }
        self.reading_disabled = true;
        let (store, answers) = (Arc::clone(&self.store), self.answers.clone());
        tokio::task::spawn_blocking(move || {
            let _ = answers.send(StoreAnswer::Disabled(store.disabled_jobs()));
        });
    }

    /// Prepares the fires now due (the scheduler decides which).
    fn prepare_due(&mut self) {
        if self.stopping || self.outage {
            return;
        }
        let now = self.clock.now();
        let snapshot = Arc::clone(&self.snapshot);
        let actions = self.scheduler.due(&snapshot.config.jobs, now);
        self.carry_out(actions);
    }

    /// Carries out the scheduler's actions: skips are queued to the store, and
    /// fires to start are handed to it to record (`answered` goes on from there).
    fn carry_out(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Skip { job, scheduled, trigger, note } => {
                    self.metrics.fire_skipped(&job, skip_reason(note));
                    let rules =
                        self.snapshot.config.jobs.get(&job).map(|j| j.notifications.clone()).unwrap_or_default();
                    let notices = Notices::of(&job, &rules, || {
                        crate::notify::body::not_run_payload(&job, scheduled, trigger, "skipped", note)
                    });
                    self.store.queue_skipped(&job, scheduled, trigger, note, notices);
                }
                Action::Missed { job, count, latest } => {
                    self.metrics.fires_missed(&job, count);
                    let Some(rules) = self.snapshot.config.jobs.get(&job).map(|j| j.notifications.clone()) else {
                        continue;
                    };
                    let at_least = if count >= super::scheduler::MISSED_CAP { "at least " } else { "" };
                    let note =
                        format!("{at_least}{count} missed fire(s) not run (catchup policy), the latest due {latest}");
                    let notices = Notices::of(&job, &rules, || {
                        crate::notify::body::not_run_payload(&job, latest, Trigger::CatchUp, "missed", &note)
                    });
                    if let Some(notices) = notices {
                        self.store.queue_missed(notices);
                    }
                }
                Action::Start(starts) => self.record_fires(starts),
            }
        }
    }

    /// Prepares fires and queues their records (one transaction) without waiting:
    /// the answer comes back as `StoreAnswer::Recorded`. Their gates are set now, so
    /// the lead they were prepared with also covers the write.
    fn record_fires(&mut self, starts: Vec<Start>) {
        let snapshot = Arc::clone(&self.snapshot);
        let targets: Vec<Vec<String>> = starts
            .iter()
            .map(|start| {
                let job = snapshot.config.jobs.get(&start.job);
                let names = start.only.as_deref().or(job.map(|j| j.targets.as_slice())).unwrap_or_default();
                names.iter().filter(|n| snapshot.config.nodes.contains_key(*n)).cloned().collect()
            })
            .collect();
        let fires: Vec<Fire> = starts
            .iter()
            .map(|start| {
                let mut fire = Fire::new(&start.job, start.scheduled, start.trigger).checking(start.check);
                if let Some(at) = start.gate {
                    fire.gate = Gate::at(at);
                }
                fire
            })
            .collect();
        let now = self.clock.now();
        let rows: Vec<FireStart<'_>> = fires
            .iter()
            .zip(&targets)
            .map(|(fire, nodes)| FireStart {
                job: &fire.job,
                scheduled: fire.scheduled,
                trigger: fire.trigger,
                nodes,
                started: fire.gate.started(now),
                // Every fire of a `mode: check` job is a check, whoever runs its nodes.
                check: fire.check
                    || snapshot.config.jobs.get(&fire.job).is_some_and(|j| j.mode == crate::config::Mode::Check),
            })
            .collect();
        let batch = self.next_batch;
        self.next_batch += 1;
        let answers = self.answers.clone();
        let queued = std::time::Instant::now();
        self.store.queue_begin_fires(&rows, move |ids| {
            tracing::debug!(micros = queued.elapsed().as_micros() as u64, "fires recorded");
            // The loop is gone only once the daemon has stopped.
            let _ = answers.send(StoreAnswer::Recorded { batch, ids });
        });
        drop(rows);
        self.recording.insert(batch, Recording { snapshot, starts, fires, targets });
    }

    /// The store answered a write the loop was waiting for.
    fn answered(&mut self, answer: StoreAnswer) {
        match answer {
            StoreAnswer::Recorded { batch, ids } => {
                let Some(recording) = self.recording.remove(&batch) else { return };
                self.start_fires(recording, ids);
            }
            StoreAnswer::Disabled(disabled) => {
                self.reading_disabled = false;
                match disabled {
                    Ok(disabled) => self.scheduler.set_disabled(disabled),
                    Err(err) => tracing::error!("failed to read which jobs are disabled: {err}"),
                }
                self.prepare_due();
            }
            StoreAnswer::Members(members) => {
                self.reading_members = false;
                match members {
                    Ok(members) => self.judge(Ok(members)),
                    Err(err) => tracing::debug!("failed to read the cluster's members: {err}"),
                }
            }
            StoreAnswer::Probed(last) => {
                self.probing = false;
                match last {
                    Ok(last) if self.outage => {
                        self.outage = false;
                        tracing::warn!(
                            store = %self.store.describe(),
                            "the state store {} answers again; the fires due while it was away follow each job's catch-up policy",
                            self.store.describe()
                        );
                        let now = self.clock.now();
                        let snapshot = Arc::clone(&self.snapshot);
                        // Instants before the store's last fire may have failed to be
                        // claimed (a catch-up queued behind later fires): start there.
                        let mut last = last;
                        for (job, first) in self.unclaimed.drain() {
                            let before = first - chrono::TimeDelta::milliseconds(1);
                            last.entry(job).and_modify(|at| *at = (*at).min(before)).or_insert(before);
                        }
                        let actions = self.scheduler.resume(&snapshot.config.jobs, &last, now);
                        self.carry_out(actions);
                    }
                    Ok(_) => {}
                    Err(err) => tracing::debug!("the state store still cannot be read: {err}"),
                }
            }
            StoreAnswer::Enabled { job, enabled, result, reply } => {
                let result = result.map_err(|e| ControlError::Invalid(e.to_string()));
                if result.is_ok() {
                    self.scheduler.set_enabled(&job, enabled);
                    tracing::info!(job = %job, enabled, "job {}", if enabled { "enabled" } else { "disabled" });
                }
                let _ = reply.send(result);
            }
        }
    }

    /// Starts the recorded fires the store did not have yet, tells the scheduler
    /// how each went, and answers run-now requests with their fire's number.
    fn start_fires(&mut self, recording: Recording, ids: Result<Vec<Option<i64>>, StoreError>) {
        let Recording { snapshot, starts, fires, targets } = recording;
        let outcomes: Vec<Recorded> = match ids {
            Ok(ids) => ids.into_iter().map(|id| id.map_or(Recorded::Duplicate, Recorded::As)).collect(),
            // Recording a fire in a shared store is how it is claimed: unclaimed, it
            // does not run here (another member may have claimed it).
            Err(err) if self.store.is_shared() => {
                if !self.outage && !self.stopping {
                    self.outage = true;
                    tracing::error!(
                        fires = starts.len(),
                        store = %self.store.describe(),
                        "failed to claim fires in the state store ({err}); no fire starts until it answers again, then each job's catch-up policy decides"
                    );
                }
                for start in starts.iter().filter(|s| matches!(s.trigger, Trigger::Schedule | Trigger::CatchUp)) {
                    let first = self.unclaimed.entry(start.job.clone()).or_insert(start.scheduled);
                    *first = (*first).min(start.scheduled);
                }
                vec![Recorded::Unclaimed; starts.len()]
            }
            Err(err) => {
                tracing::error!(fires = starts.len(), "failed to record fires (they run anyway): {err}");
                vec![Recorded::Failed; starts.len()]
            }
        };
        let clock = std::time::Instant::now();
        let mut actions = Vec::new();
        for (((start, mut fire), names), outcome) in starts.into_iter().zip(fires).zip(targets).zip(outcomes) {
            if let Some(reply) = self.run_replies.remove(&start.key) {
                let answer = match outcome {
                    Recorded::As(id) => Ok(id),
                    Recorded::Duplicate | Recorded::Failed | Recorded::Unclaimed => {
                        Err(ControlError::Invalid("the fire could not be recorded; see the daemon's log".to_string()))
                    }
                };
                let _ = reply.send(answer);
            }
            let id = match outcome {
                Recorded::Duplicate => {
                    tracing::info!(job = %fire.job, scheduled = %fire.scheduled, "fire already recorded; not running it twice");
                    None
                }
                Recorded::As(id) => Some(id),
                Recorded::Failed | Recorded::Unclaimed => None,
            };
            // The scheduler only starts fires of jobs in the snapshot they were prepared with.
            if !matches!(outcome, Recorded::Duplicate | Recorded::Unclaimed)
                && let Some(job) = snapshot.config.jobs.get(&start.job)
            {
                fire.id = id;
                match (&self.work, id) {
                    // A cluster fire: its nodes are claimed by the members' work loops.
                    (Some(work), Some(id)) if !names.is_empty() => {
                        let work = Arc::clone(work);
                        self.watch(start.key, &fire, id, names.len(), work);
                    }
                    _ => {
                        let recorder = Recorder::recorded(Some(&self.store), job, id);
                        let nodes = names.iter().filter_map(|n| snapshot.config.nodes.get(n).cloned()).collect();
                        self.launch(&snapshot, start.key, job, fire, nodes, recorder);
                    }
                }
            }
            let current = Arc::clone(&self.snapshot);
            actions.extend(self.scheduler.recorded(&current.config.jobs, start.key, outcome));
        }
        tracing::debug!(micros = clock.elapsed().as_micros() as u64, "fires started");
        self.carry_out(actions);
    }

    fn launch(
        &mut self,
        snapshot: &Arc<Snapshot>,
        key: FireKey,
        job: &Arc<Job>,
        fire: Fire,
        nodes: Vec<Arc<crate::config::Node>>,
        recorder: Recorder,
    ) {
        let snapshot = Arc::clone(snapshot);
        let lag_ms = (self.clock.now() - fire.scheduled).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0;
        tracing::debug!(job = %fire.job, lag_ms = %format_args!("{lag_ms:.3}"), "fire prepared");
        let runner = Arc::clone(&self.runner);
        let job = Arc::clone(job);
        let cancel = self.abort.child_token();
        self.cancels.insert(key, cancel.clone());
        self.fires.spawn(async move {
            let report = runner.run(snapshot, fire, nodes, cancel, &recorder, |_| {}).await;
            tracing::info!(
                job = %job.name,
                fire = recorder.fire_id(),
                status = %report.status(),
                seconds = crate::runner::fire::log_seconds(report.duration.as_secs_f64()),
                ok = report.results.len() - report.failed(),
                failed = report.failed(),
                "fire finished"
            );
            key
        });
    }

    /// Follows cluster fire `id`, which this daemon claimed, until it ends in the
    /// store (whichever member records its last node ends it); announces its start
    /// and end. Cancelling it cancels this daemon's parts of the fire. It stops
    /// following once the daemon's work loop has ended (the daemon stops): the
    /// other members finish the fire.
    fn watch(&mut self, key: FireKey, fire: &Fire, id: i64, nodes: usize, work: Arc<Work>) {
        let cancel = self.abort.child_token();
        self.cancels.insert(key, cancel.clone());
        let (events, metrics) = (self.events.clone(), Arc::clone(&self.metrics));
        let (job, scheduled, trigger, gate) = (fire.job.clone(), fire.scheduled, fire.trigger, fire.gate);
        // Followed before its nodes can be claimed, so an end written here is told.
        let mut ending = work.follow(id);
        work.wake.notify_one();
        self.fires.spawn(async move {
            // Announced before its gate opens, as a fire run whole is, and before
            // this daemon's parts of it tell of their nodes.
            events.publish(crate::runner::events::Event::FireStarted {
                fire: Some(id),
                job: job.clone(),
                scheduled,
                trigger,
                nodes: Vec::new(),
            });
            work.started(id);
            gate.wait().await;
            let begun = std::time::Instant::now();
            tracing::info!(job = %job, fire = id, nodes, "fire started (its nodes are shared by the cluster)");
            let mut cancelled = false;
            let ended = loop {
                tokio::select! {
                    status = ending.wait_for(Option::is_some) => break status.ok().and_then(|status| *status),
                    _ = work.done.cancelled() => break None,
                    _ = cancel.cancelled(), if !cancelled => {
                        cancelled = true;
                        work.cancel(id);
                    }
                }
            };
            work.unfollow(id);
            if ended.is_some() {
                // This daemon's node ends are announced before the fire's end.
                work.parts_ended(id, work.poll).await;
            }
            if let Some(status) = ended {
                let seconds = begun.elapsed().as_secs_f64();
                metrics.fire_finished(
                    &job,
                    status.as_str(),
                    begun.elapsed(),
                    Utc::now().timestamp_micros() as f64 / 1e6,
                );
                events.publish(crate::runner::events::Event::FireFinished {
                    fire: Some(id),
                    job: job.clone(),
                    status,
                    seconds,
                });
                let seconds = crate::runner::fire::log_seconds(seconds);
                tracing::info!(job = %job, fire = id, status = %status, seconds, "fire finished");
            }
            key
        });
    }

    fn finished(&mut self, key: FireKey) {
        self.cancels.remove(&key);
        let snapshot = Arc::clone(&self.snapshot);
        let actions = self.scheduler.finished(&snapshot.config.jobs, key);
        self.carry_out(actions);
    }

    /// The fires running now.
    fn running(&self) -> impl Iterator<Item = (FireKey, RunningFire)> + '_ {
        self.scheduler.fires().filter_map(|(key, fire)| match fire.stage {
            Stage::Running { id } => {
                Some((key, RunningFire { id, job: fire.job.clone(), scheduled: fire.scheduled, trigger: fire.trigger }))
            }
            _ => None,
        })
    }

    /// Answers a request from the API.
    fn handle(&mut self, request: Command) {
        match request {
            Command::Jobs(reply) => {
                let _ = reply.send(self.snapshot.config.jobs.values().map(|job| self.job_state(job)).collect());
            }
            Command::Nodes(reply) => {
                let mut masters = self.runner.pool().master_states();
                let nodes = self
                    .snapshot
                    .config
                    .nodes
                    .values()
                    .map(|n| (Arc::clone(n), masters.remove(&n.name).map(str::to_string)));
                let _ = reply.send(nodes.collect());
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Run { job, nodes, check, reply } => match self.run_now(&job, &nodes, check) {
                // Answered once the fire is recorded (`start_fires`).
                Ok(key) => {
                    self.run_replies.insert(key, reply);
                }
                Err(err) => {
                    let _ = reply.send(Err(err));
                }
            },
            Command::SetEnabled { job, enabled, reply } => {
                if !self.snapshot.config.jobs.contains_key(&job) {
                    let _ = reply.send(Err(ControlError::NotFound(format!("no job named `{job}`"))));
                    return;
                }
                // Committed without holding up the loop meanwhile; `answered` tells
                // the scheduler, then the asker.
                let (store, answers) = (Arc::clone(&self.store), self.answers.clone());
                tokio::spawn(async move {
                    let result = store.set_enabled(&job, enabled).await;
                    if let Err(mpsc::error::SendError(StoreAnswer::Enabled { reply, .. })) =
                        answers.send(StoreAnswer::Enabled { job, enabled, result, reply })
                    {
                        let _ = reply.send(Err(ControlError::Stopping));
                    }
                });
            }
            Command::Cancel { fire, reply } => {
                let found = self.running().find(|(_, running)| running.id == Some(fire));
                let here = found.and_then(|(key, running)| Some((running, self.cancels.get(&key)?)));
                if let Some((running, token)) = &here {
                    tracing::warn!(job = %running.job, fire, "fire cancelled on request");
                    token.cancel();
                }
                let here = here.is_some();
                let Some(work) = &self.work else {
                    let result =
                        if here { Ok(()) } else { Err(ControlError::NotFound(format!("fire {fire} is not running"))) };
                    let _ = reply.send(result);
                    return;
                };
                // A cluster fire is cancelled on every member, whichever daemon
                // receives the request: its nodes not started end `interrupted`
                // and the members stop the others.
                let (store, work) = (Arc::clone(&self.store), Arc::clone(work));
                let rules =
                    self.snapshot.config.jobs.iter().map(|(name, job)| (name.clone(), job.notifications.clone()));
                let rules: HashMap<_, _> = rules.collect();
                tokio::spawn(async move {
                    let result = match store.cancel_fire(fire, &rules).await {
                        Ok(cancelled) if cancelled.running => {
                            work.cancel(fire);
                            if !here {
                                tracing::warn!(fire, "fire cancelled on request, on every member");
                            }
                            Ok(())
                        }
                        Ok(_) if here => Ok(()),
                        Ok(_) => Err(ControlError::NotFound(format!("fire {fire} is not running"))),
                        Err(err) => Err(ControlError::Invalid(format!("failed to cancel fire {fire}: {err}"))),
                    };
                    let _ = reply.send(result);
                });
            }
            Command::Reload(reply) => {
                self.reload("API request", Some(reply));
                if self.store.is_shared() {
                    // Every member reloads its own files.
                    let store = Arc::clone(&self.store);
                    tokio::task::spawn_blocking(move || {
                        if let Err(err) = store.tell_reload() {
                            tracing::warn!("failed to ask the other cluster members to reload: {err}");
                        }
                    });
                }
            }
        }
    }

    fn job_state(&self, job: &Arc<Job>) -> JobState {
        let enabled = self.scheduler.is_enabled(&job.name);
        let next = self.scheduler.next_for(&job.name).filter(|_| enabled);
        JobState { job: Arc::clone(job), next, enabled, last: None }
    }

    fn status(&self) -> DaemonStatus {
        let now = self.clock.now();
        let mut next: Vec<NextFire> = self
            .snapshot
            .config
            .jobs
            .keys()
            .filter(|name| self.scheduler.is_enabled(name))
            .filter_map(|name| self.scheduler.next_for(name).map(|at| NextFire { job: name.clone(), at }))
            .collect();
        next.sort_by_key(|n| n.at);
        next.truncate(20);
        DaemonStatus {
            version: env!("CARGO_PKG_VERSION"),
            config: self.config_identity.clone(),
            started: self.started,
            uptime: now - self.started,
            jobs: self.snapshot.config.jobs.len(),
            nodes: self.snapshot.config.nodes.len(),
            running: self.running().map(|(_, fire)| fire).collect(),
            next,
            config_errors: self.config_errors(),
            ssh_masters: self.runner.pool().open_masters(),
            restart_pending: self.started_with.pending(&self.snapshot.config.settings),
        }
    }

    /// Starts a fire of `name` now; its key, to answer once it is recorded.
    fn run_now(&mut self, name: &str, nodes: &[String], check: bool) -> Result<FireKey, ControlError> {
        let job = self
            .snapshot
            .config
            .jobs
            .get(name)
            .cloned()
            .ok_or_else(|| ControlError::NotFound(format!("no job named `{name}`")))?;
        if let Some(unknown) = nodes.iter().find(|n| !self.snapshot.config.nodes.contains_key(*n)) {
            return Err(ControlError::Invalid(format!("no node named `{unknown}` in the node manifest")));
        }
        let only = (!nodes.is_empty()).then(|| nodes.to_vec());
        let (key, actions) = self.scheduler.run_now(&job.name, only, check, self.clock.now());
        self.carry_out(actions);
        Ok(key)
    }

    async fn stop(mut self, mut answered: mpsc::UnboundedReceiver<StoreAnswer>) {
        self.stopping = true;
        let actions = self.scheduler.shutdown();
        self.carry_out(actions);
        // Fires handed to the store before the stop were prepared to run: they
        // start as they would have, and are awaited with the others.
        while !self.recording.is_empty() {
            let Some(answer) = answered.recv().await else { break };
            self.answered(answer);
        }
        if !self.fires.is_empty() {
            tracing::info!(running = self.fires.len(), "stopping: waiting for running fires to finish");
        }
        // Cancelled fires end within the runner's grace for scripts; past that (a
        // script that ignores cancellation) they are left to the next start, which
        // records them interrupted.
        let mut deadline = None;
        loop {
            tokio::select! {
                next = self.fires.join_next() => if next.is_none() { break },
                _ = self.abort.cancelled(), if deadline.is_none() && !self.fires.is_empty() => {
                    tracing::warn!(running = self.fires.len(), "stopping now: cancelling running fires");
                    deadline = Some(tokio::time::Instant::now() + crate::runner::fire::GRACE + Duration::from_secs(2));
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                    tracing::error!(running = self.fires.len(), "fires did not end after cancelling; stopping without them");
                    break;
                }
            }
        }
        // Node work claimed from the cluster is finished (or, aborted, ended
        // interrupted) before the daemon leaves.
        if let Some(work) = &self.work {
            work.stop();
            work.done.cancelled().await;
        }
        self.abort.cancel();
        if tokio::time::timeout(SETTLE_LIMIT, self.store.settled()).await.is_err() {
            tracing::error!(store = %self.store.describe(), "stopping without the writes the state store did not take");
        }
        self.runner.pool().close();
        tracing::info!("loom stopped");
    }
}

/// The `reason` label of a skipped fire's metric.
fn skip_reason(note: &str) -> &'static str {
    if note == super::scheduler::SKIPPED_STOPPING { "stopping" } else { "overlap" }
}

/// Hands the memory freed after loading a configuration (parse trees, compiler
/// state) back to the system, so a daemon's resident size reflects what it keeps.
fn release_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn prune_forever(store: Arc<Store>, snapshot: Arc<Snapshot>, clock: Arc<dyn Clock>) {
    let settings = &snapshot.config.settings;
    let (keep, age) = (settings.retention_fires, settings.retention_age);
    if keep.is_none() && age.is_none() {
        return;
    }
    loop {
        let before = age.and_then(|a| chrono::Duration::from_std(a).ok()).map(|a| clock.now() - a);
        match store.prune(keep, before).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(fires = removed, "pruned old history"),
            Err(err) => tracing::error!("failed to prune history: {err}"),
        }
        tokio::time::sleep(PRUNE_EVERY).await;
    }
}
