//! The daemon: load a snapshot, catch up on missed fires, then sleep until the next
//! fire, run it, record it, repeat.
//!
//! The loop selects over the next due instant, finished fires and the shutdown
//! signal; there is no polling. Fires run as their own tasks, so a slow fire never
//! delays another job's. A fire is prepared shortly before its instant (recorded,
//! its node tasks spawned and connected, their scripts queued for the instant) and
//! starts at the instant itself, however many others are due with it. Per job it
//! applies the overlap policy (skip, queue, allow) and the catch-up policy, both
//! after downtime and after a stall of the host. On
//! shutdown no new fire starts, queued fires are recorded as skipped, and running
//! fires are awaited.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::control::{Command, ControlError, DaemonHandle};
use super::reload::{StartedWith, diff};
use super::watch::{self, Watch, Watched};
use crate::api;
use crate::api::model::{JobView, NextFire, NodeView, ReloadView, RunningFire, StatusView};
use crate::config::job::Overlap;
use crate::config::{Diagnostic, Job};
use crate::runner::{EventLog, Fire, Gate, Recorder, Runner};
use crate::schedule::Timeline;
use crate::schedule::catchup::missed;
use crate::schedule::timeline::Due;
use crate::snapshot::Snapshot;
use crate::ssh::{self, Pool};
use crate::store::{FireRecord, FireStart, Store, StoreError, StoreLock, Trigger};

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

/// A fire this late is handled by the job's catch-up policy (the host slept or the
/// process stalled) rather than run in a burst with everything missed meanwhile.
const LATE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// How long before their instant the fires due at it are prepared: enough to record
/// and spawn them and queue their scripts (tens of microseconds each), so that at
/// the instant nothing is left but to start.
fn lead(fires: usize) -> chrono::TimeDelta {
    chrono::TimeDelta::microseconds((5_000 + 100 * fires as i64).min(500_000))
}

/// Quiet time after a file change before reloading.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// How often old history is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

#[derive(Default)]
struct JobState {
    running: usize,
    queued: VecDeque<Fire>,
}

/// A reload whose configuration is being read.
struct Reloading {
    reason: &'static str,
    replies: Vec<oneshot::Sender<ReloadView>>,
    /// Asked for meanwhile: runs next, as files may have changed since this one began.
    next: Option<(&'static str, Vec<oneshot::Sender<ReloadView>>)>,
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
    runner: Arc<Runner>,
    timeline: Timeline,
    jobs: HashMap<String, JobState>,
    /// Running fires, by a key of the daemon's own (a fire may lack a store number).
    fires: JoinSet<(String, u64)>,
    running: HashMap<u64, (RunningFire, CancellationToken)>,
    next_key: u64,
    /// Cancels running fires only when the daemon is told to stop right away.
    abort: CancellationToken,
    events: EventLog,
    started: DateTime<Utc>,
    /// The API's tokens, which a reload replaces (`None` with the API off).
    api_tokens: Option<api::ApiTokens>,
    /// The settings only a restart applies, as this daemon started with them.
    started_with: StartedWith,
    /// Fires decided on but not yet recorded and started; `flush` does both, for
    /// all of them in one store transaction.
    pending: Vec<(Arc<Job>, Fire, Option<Vec<String>>)>,
    /// Jobs disabled in the store, read once per batch of fires.
    disabled: std::collections::HashSet<String>,
    /// Fires of jobs still running when they were due to be prepared: whether they
    /// overlap is decided at their instant, `(instant, fire)`.
    deferred: Vec<(DateTime<Utc>, Fire)>,
}

/// Runs the daemon until `shutdown`; then no fire starts and running ones are
/// awaited — unless `abort` is cancelled too, which cancels them.
pub async fn run(
    config_path: PathBuf,
    shutdown: CancellationToken,
    abort: CancellationToken,
) -> Result<(), DaemonError> {
    let (snapshot, diagnostics) = Snapshot::load(&config_path);
    for warning in diagnostics.iter().filter(|d| !d.is_error()) {
        tracing::warn!("{}", warning.one_line());
    }
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(DaemonError::InvalidConfig(diagnostics));
    }
    let settings = &snapshot.config.settings;
    // Held until the daemon ends: a second daemon on this store refuses to start.
    let _lock = StoreLock::acquire(&settings.state, "loom serve")?;
    let store = Arc::new(Store::open(&settings.state)?);
    let control = ssh::control::folder(&settings.ssh, store.path());
    let stopped = ssh::control::stop_leftovers(&settings.ssh, &control).await;
    if stopped > 0 {
        tracing::warn!(masters = stopped, "stopped the ssh masters a previous loom on this store left running");
    }
    let recovered = store.recover_interrupted()?;
    if recovered > 0 {
        tracing::warn!(fires = recovered, "fires left running by a previous daemon are now marked interrupted");
    }
    let pool = Pool::new(settings.ssh.clone(), settings.output_limit, control);
    let events = EventLog::new();
    let runner = Arc::new(Runner::new(settings.max_workers, Arc::new(pool)).with_events(events.clone()));
    let (changes, mut changed) = mpsc::unbounded_channel();
    let (load_done, mut loaded) = mpsc::unbounded_channel();
    let (commands, mut requests) = mpsc::channel(64);
    let handle = DaemonHandle::new(commands, Arc::clone(&store), events.clone());
    let api = match &settings.listen {
        Some(address) => {
            Some(api::serve(address, &settings.tokens, settings.tls.as_ref(), handle, shutdown.clone()).await?)
        }
        None => None,
    };
    let started_with = StartedWith::of(settings);
    let mut hangup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;
    let mut daemon = Daemon {
        config_identity: std::fs::canonicalize(&config_path).unwrap_or_else(|_| config_path.clone()),
        config_path: config_path.clone(),
        reloading: None,
        load_done,
        snapshot: Arc::new(snapshot),
        reload_errors: Vec::new(),
        watch: None,
        changes,
        store,
        runner,
        timeline: Timeline::new(),
        jobs: HashMap::new(),
        fires: JoinSet::new(),
        running: HashMap::new(),
        next_key: 0,
        // Cancelled by the caller's `abort`, and by `stop` itself once fires are over.
        abort: abort.child_token(),
        events,
        started: Utc::now(),
        api_tokens: api.as_ref().map(|api| api.tokens.clone()),
        started_with,
        pending: Vec::new(),
        disabled: Default::default(),
        deferred: Vec::new(),
    };
    daemon.start(Utc::now());
    daemon.watch_files();
    release_memory();
    tracing::info!(
        config = %config_path.display(),
        state = %daemon.store.path().display(),
        jobs = daemon.snapshot.config.jobs.len(),
        nodes = daemon.snapshot.config.nodes.len(),
        next = %daemon.timeline.next_instant().map_or("none".to_string(), |at| at.to_rfc3339()),
        "loom started"
    );
    let pruning = tokio::spawn(prune_forever(Arc::clone(&daemon.store), daemon.snapshot.clone()));

    // Editors write a file in several steps: reload once things are quiet.
    let mut reload_at: Option<tokio::time::Instant> = None;
    loop {
        let wait = daemon
            .next_wake()
            .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(86_400));
        let debounce = reload_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => daemon.fire_due(Utc::now()),
            Some(finished) = daemon.fires.join_next(), if !daemon.fires.is_empty() => {
                if let Ok((job, key)) = finished {
                    daemon.finished(&job, key);
                }
            }
            Some(request) = requests.recv() => daemon.handle(request),
            Some(()) = changed.recv() => reload_at = Some(tokio::time::Instant::now() + DEBOUNCE),
            _ = tokio::time::sleep_until(debounce), if reload_at.is_some() => {
                reload_at = None;
                daemon.reload("files changed", None);
            }
            Some(()) = hangup.recv() => daemon.reload("SIGHUP", None),
            Some(loaded) = loaded.recv() => daemon.loaded(loaded),
        }
    }

    pruning.abort();
    daemon.stop().await;
    if let Some(api) = api {
        api.task.abort();
    }
    Ok(())
}

impl Daemon {
    /// Catch-up and the first plan of every job.
    fn start(&mut self, now: DateTime<Utc>) {
        let snapshot = Arc::clone(&self.snapshot);
        self.refresh_disabled();
        let last = self.store.last_scheduled_all().unwrap_or_else(|err| {
            tracing::error!("failed to read the jobs' last fires; nothing is caught up: {err}");
            Default::default()
        });
        for job in snapshot.config.jobs.values() {
            let Some(schedule) = &job.schedule else { continue };
            if schedule.is_reboot() {
                self.dispatch(job, Fire::new(&job.name, now, Trigger::Reboot), job.overlap);
                continue;
            }
            if let Some(last) = last.get(&job.name) {
                self.catch_up(job, *last, now);
            }
            self.timeline.plan(&job.name, schedule, now, job.jitter_offset());
        }
        let scheduled = snapshot.config.jobs.values().filter(|j| j.schedule.as_ref().is_some_and(|s| !s.is_reboot()));
        self.store.queue_ensure_jobs(scheduled.map(|j| j.name.as_str()), now);
        self.flush();
    }

    fn refresh_disabled(&mut self) {
        match self.store.disabled_jobs() {
            Ok(disabled) => self.disabled = disabled,
            Err(err) => tracing::error!("failed to read which jobs are disabled: {err}"),
        }
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
    fn reload(&mut self, reason: &'static str, reply: Option<oneshot::Sender<ReloadView>>) {
        if let Some(reloading) = &mut self.reloading {
            reloading.next.get_or_insert_with(|| (reason, Vec::new())).1.extend(reply);
            return;
        }
        tracing::info!(reason, "reloading");
        self.reloading = Some(Reloading { reason, replies: reply.into_iter().collect(), next: None });
        let (path, done) = (self.config_path.clone(), self.load_done.clone());
        tokio::task::spawn_blocking(move || {
            let _ = done.send(Snapshot::load(&path));
        });
    }

    /// A reload's configuration has been read: swap it in and answer whoever asked.
    fn loaded(&mut self, (snapshot, diagnostics): (Snapshot, Vec<Diagnostic>)) {
        let Some(reloading) = self.reloading.take() else { return };
        let view = self.swap(reloading.reason, snapshot, diagnostics);
        for reply in reloading.replies {
            let _ = reply.send(view.clone());
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
    fn swap(&mut self, reason: &str, snapshot: Snapshot, diagnostics: Vec<Diagnostic>) -> ReloadView {
        if diagnostics.iter().any(Diagnostic::is_error) {
            let errors: Vec<Diagnostic> = diagnostics.into_iter().filter(Diagnostic::is_error).collect();
            for error in &errors {
                tracing::error!("{}", error.one_line());
            }
            tracing::error!(reason, errors = errors.len(), "reload failed; the previous configuration stays in force");
            self.reload_errors = errors;
            // A fix may come in a file that is not watched yet (a new folder).
            self.watch_files();
            return ReloadView { ok: false, summary: None, errors: self.config_errors() };
        }
        for warning in &diagnostics {
            tracing::warn!("{}", warning.one_line());
        }
        let changes = diff(&self.snapshot, &snapshot);
        let old = std::mem::replace(&mut self.snapshot, Arc::new(snapshot));
        self.reload_errors.clear();
        let now = Utc::now();
        let snapshot = Arc::clone(&self.snapshot);
        self.deferred
            .retain(|(_, fire)| !changes.removed.contains(&fire.job) && !changes.rescheduled.contains(&fire.job));
        for name in &changes.removed {
            self.timeline.remove(name);
            if let Some(state) = self.jobs.get_mut(name) {
                state.queued.clear();
            }
        }
        for name in changes.added.iter().chain(&changes.rescheduled) {
            let Some(job) = snapshot.config.jobs.get(name) else { continue };
            self.timeline.remove(name);
            if let Some(schedule) = job.schedule.as_ref().filter(|s| !s.is_reboot()) {
                self.timeline.plan(name, schedule, now, job.jitter_offset());
            }
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
                let control = ssh::control::folder(&after.ssh, self.store.path());
                Arc::new(Pool::new(after.ssh.clone(), after.output_limit, control))
            };
            self.runner = Arc::new(Runner::new(after.max_workers, pool).with_events(self.events.clone()));
        }
        match self.api_tokens.as_ref().map(|tokens| tokens.replace(&after.tokens)) {
            Some(Ok(true)) => {
                tracing::info!(tokens = after.tokens.len(), "API tokens replaced; they apply from now on")
            }
            Some(Err(err)) => tracing::error!("{err}; the previous API tokens stay in force"),
            Some(Ok(false)) | None => {}
        }
        self.started_with.log_reload(before, after);
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
        ReloadView { ok: true, summary: Some(changes.summary()), errors: Vec::new() }
    }

    fn config_errors(&self) -> Vec<String> {
        self.reload_errors.iter().map(Diagnostic::one_line).collect()
    }

    /// Runs the missed fires in `(last, now]` that the job's policy asks for.
    fn catch_up(&mut self, job: &Arc<Job>, last: DateTime<Utc>, now: DateTime<Utc>) {
        let Some(schedule) = &job.schedule else { return };
        let limit = self.snapshot.config.settings.catchup_limit;
        let instants = missed(schedule, last, now, job.catchup, limit);
        if !instants.is_empty() {
            tracing::info!(job = %job.name, fires = instants.len(), policy = ?job.catchup, "catching up on missed fires");
        }
        for scheduled in instants {
            // Missed fires run one after the other, oldest first, whatever `overlap` says.
            self.dispatch(job, Fire::new(&job.name, scheduled, Trigger::CatchUp), Overlap::Queue);
        }
    }

    /// When the loop must next act: the earliest preparation or deferred fire.
    fn next_wake(&self) -> Option<DateTime<Utc>> {
        let prepare = self.timeline.next_instant().map(|at| at - lead(self.timeline.count_at(at)));
        let deferred = self.deferred.iter().map(|(at, _)| *at).min();
        prepare.into_iter().chain(deferred).min()
    }

    /// Prepares the fires whose instant is within its lead of `now`, to start at that
    /// instant, and dispatches the deferred fires now due.
    fn fire_due(&mut self, now: DateTime<Utc>) {
        let snapshot = Arc::clone(&self.snapshot);
        let mut due = Vec::new();
        while let Some(at) = self.timeline.next_instant() {
            if at - lead(self.timeline.count_at(at)) > now {
                break;
            }
            due.extend(self.timeline.take_due(at));
        }
        let (ready, waiting) = std::mem::take(&mut self.deferred).into_iter().partition(|(at, _)| *at <= now);
        self.deferred = waiting;
        if due.is_empty() && ready.is_empty() {
            return;
        }
        self.refresh_disabled();
        for (_, fire) in ready {
            let Some(job) = snapshot.config.jobs.get(&fire.job) else { continue };
            self.dispatch(job, fire, job.overlap);
        }
        for Due { at, scheduled, job: name } in due {
            let Some(job) = snapshot.config.jobs.get(&name) else { continue };
            let Some(schedule) = &job.schedule else { continue };
            if now - scheduled > LATE {
                tracing::warn!(job = %name, %scheduled, "woke up late (the host slept or stalled); applying the catch-up policy");
                let before = scheduled - chrono::TimeDelta::milliseconds(1);
                self.catch_up(job, before, now);
                self.timeline.plan(&name, schedule, now, job.jitter_offset());
                continue;
            }
            self.timeline.plan(&name, schedule, scheduled, job.jitter_offset());
            let mut fire = Fire::new(&name, scheduled, Trigger::Schedule);
            let busy = self.jobs.get(&name).is_some_and(|state| state.running > 0);
            if busy && job.overlap != Overlap::Allow && at > now {
                // The running fire may well end before this one's instant.
                self.deferred.push((at, fire));
                continue;
            }
            fire.gate = Gate::at(at);
            self.dispatch(job, fire, job.overlap);
        }
        self.flush();
    }

    /// Starts, queues or skips a fire, by the overlap policy.
    fn dispatch(&mut self, job: &Arc<Job>, fire: Fire, overlap: Overlap) {
        if self.disabled.contains(&job.name) {
            tracing::debug!(job = %job.name, "disabled; not firing");
            return;
        }
        let state = self.jobs.entry(job.name.clone()).or_default();
        if state.running > 0 {
            match overlap {
                Overlap::Allow => {}
                Overlap::Queue => {
                    tracing::info!(job = %job.name, scheduled = %fire.scheduled, "previous fire still running; queued");
                    state.queued.push_back(fire);
                    return;
                }
                Overlap::Skip => {
                    tracing::warn!(job = %job.name, scheduled = %fire.scheduled, "previous fire still running; skipped");
                    let note = "skipped: the previous fire was still running (overlap: skip)";
                    self.store.queue_skipped(&job.name, fire.scheduled, fire.trigger, note);
                    return;
                }
            }
        }
        self.start_fire(job, fire, None);
    }

    /// Queues a fire to start on the job's targets (or on `only` these nodes) at the
    /// next `flush`. It counts as running from now on.
    fn start_fire(&mut self, job: &Arc<Job>, fire: Fire, only: Option<Vec<String>>) {
        self.jobs.entry(job.name.clone()).or_default().running += 1;
        self.pending.push((Arc::clone(job), fire, only));
    }

    /// Records every pending fire (one transaction) and starts them; returns their
    /// numbers in the store, in order.
    fn flush(&mut self) -> Vec<Option<i64>> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let pending = std::mem::take(&mut self.pending);
        let snapshot = Arc::clone(&self.snapshot);
        let targets: Vec<Vec<String>> = pending
            .iter()
            .map(|(job, _, only)| {
                let names = only.as_deref().unwrap_or(&job.targets);
                names.iter().filter(|n| snapshot.config.nodes.contains_key(*n)).cloned().collect()
            })
            .collect();
        let now = Utc::now();
        let rows: Vec<FireStart<'_>> = pending
            .iter()
            .zip(&targets)
            .map(|((_, fire, _), nodes)| FireStart {
                job: &fire.job,
                scheduled: fire.scheduled,
                trigger: fire.trigger,
                nodes,
                started: fire.gate.started(now),
            })
            .collect();
        let clock = std::time::Instant::now();
        let recorded = self.store.begin_fires(&rows);
        tracing::debug!(fires = rows.len(), micros = clock.elapsed().as_micros() as u64, "fires recorded");
        let ids: Vec<Result<Option<i64>, ()>> = match recorded {
            Ok(ids) => ids.into_iter().map(Ok).collect(),
            Err(err) => {
                tracing::error!(fires = rows.len(), "failed to record fires (they run anyway): {err}");
                vec![Err(()); rows.len()]
            }
        };
        drop(rows);
        let mut started = Vec::new();
        for (((job, mut fire, _), names), id) in pending.into_iter().zip(targets).zip(ids) {
            let id = match id {
                Ok(None) => {
                    tracing::info!(job = %fire.job, scheduled = %fire.scheduled, "fire already recorded; not running it twice");
                    self.release(&job.name);
                    started.push(None);
                    continue;
                }
                Ok(Some(id)) => Some(id),
                Err(()) => None,
            };
            fire.id = id;
            let recorder = Recorder::recorded(Some(&self.store), &job, id);
            let nodes = names.iter().filter_map(|n| snapshot.config.nodes.get(n).cloned()).collect();
            self.launch(&job, fire, nodes, recorder);
            started.push(id);
        }
        tracing::debug!(micros = clock.elapsed().as_micros() as u64, "fires started");
        // A fire that did not run may have let a queued one go.
        if !self.pending.is_empty() {
            started.extend(self.flush());
        }
        started
    }

    fn launch(&mut self, job: &Arc<Job>, fire: Fire, nodes: Vec<Arc<crate::config::Node>>, recorder: Recorder) {
        let snapshot = Arc::clone(&self.snapshot);
        let lag_ms = (Utc::now() - fire.scheduled).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0;
        tracing::debug!(job = %fire.job, lag_ms = %format_args!("{lag_ms:.3}"), "fire prepared");
        let runner = Arc::clone(&self.runner);
        let job = Arc::clone(job);
        let cancel = self.abort.child_token();
        let key = self.next_key;
        self.next_key += 1;
        let view = RunningFire { id: fire.id, job: job.name.clone(), scheduled: fire.scheduled, trigger: fire.trigger };
        self.running.insert(key, (view, cancel.clone()));
        self.fires.spawn(async move {
            let report = runner.run(snapshot, fire, nodes, cancel, &recorder, |_| {}).await;
            tracing::info!(
                job = %job.name,
                fire = %recorder.fire_id().map_or("-".to_string(), |id| id.to_string()),
                status = %report.status(),
                seconds = %format_args!("{:.3}", report.duration.as_secs_f64()),
                ok = report.results.len() - report.failed(),
                failed = report.failed(),
                "fire finished"
            );
            (job.name.clone(), key)
        });
    }

    fn finished(&mut self, name: &str, key: u64) {
        self.running.remove(&key);
        self.release(name);
        self.flush();
    }

    /// One fire of `name` is over (or never ran): the next queued one may start at
    /// the next `flush`.
    fn release(&mut self, name: &str) {
        let Some(state) = self.jobs.get_mut(name) else { return };
        state.running = state.running.saturating_sub(1);
        if state.running > 0 {
            return;
        }
        let Some(next) = state.queued.pop_front() else { return };
        if let Some(job) = self.snapshot.config.jobs.get(name).cloned() {
            self.start_fire(&job, next, None);
        }
    }

    /// Answers a request from the API.
    fn handle(&mut self, request: Command) {
        match request {
            Command::Jobs(reply) => {
                self.refresh_disabled();
                let mut last = self.store.last_fires().unwrap_or_else(|err| {
                    tracing::error!("failed to read the jobs' last fires: {err}");
                    Default::default()
                });
                let jobs =
                    self.snapshot.config.jobs.values().map(|job| self.job_view(job, last.remove(&job.name))).collect();
                let _ = reply.send(jobs);
            }
            Command::Nodes(reply) => {
                let _ = reply.send(self.snapshot.config.nodes.values().map(|n| NodeView::from(n.as_ref())).collect());
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Run { job, nodes, reply } => {
                let _ = reply.send(self.run_now(&job, &nodes));
            }
            Command::SetEnabled { job, enabled, reply } => {
                if !self.snapshot.config.jobs.contains_key(&job) {
                    let _ = reply.send(Err(ControlError::NotFound(format!("no job named `{job}`"))));
                    return;
                }
                // Answered once committed, without holding up the loop meanwhile.
                let store = Arc::clone(&self.store);
                tokio::spawn(async move {
                    let result =
                        store.set_enabled(&job, enabled).await.map_err(|e| ControlError::Invalid(e.to_string()));
                    if result.is_ok() {
                        tracing::info!(job = %job, enabled, "job {}", if enabled { "enabled" } else { "disabled" });
                    }
                    let _ = reply.send(result);
                });
            }
            Command::Cancel { fire, reply } => {
                let found = self.running.values().find(|(view, _)| view.id == Some(fire));
                let result = match found {
                    Some((view, token)) => {
                        tracing::warn!(job = %view.job, fire, "fire cancelled on request");
                        token.cancel();
                        Ok(())
                    }
                    None => Err(ControlError::NotFound(format!("fire {fire} is not running"))),
                };
                let _ = reply.send(result);
            }
            Command::Reload(reply) => {
                self.reload("API request", Some(reply));
            }
        }
    }

    fn job_view(&self, job: &Job, last: Option<FireRecord>) -> JobView {
        let enabled = !self.disabled.contains(&job.name);
        let next = self.timeline.next_for(&job.name).filter(|_| enabled);
        JobView::new(job, next, enabled, last)
    }

    fn status(&self) -> StatusView {
        let now = Utc::now();
        let mut next: Vec<NextFire> = self
            .snapshot
            .config
            .jobs
            .keys()
            .filter_map(|name| self.timeline.next_for(name).map(|at| NextFire { job: name.clone(), at }))
            .collect();
        next.sort_by_key(|n| n.at);
        next.truncate(20);
        StatusView {
            version: env!("CARGO_PKG_VERSION").to_string(),
            config: self.config_identity.display().to_string(),
            started: self.started,
            uptime_seconds: (now - self.started).num_milliseconds() as f64 / 1000.0,
            jobs: self.snapshot.config.jobs.len(),
            nodes: self.snapshot.config.nodes.len(),
            running: self.running.values().map(|(view, _)| view.clone()).collect(),
            next,
            config_errors: self.config_errors(),
            ssh_masters: self.runner.pool().open_masters(),
            restart_pending: self.started_with.pending(&self.snapshot.config.settings),
        }
    }

    fn run_now(&mut self, name: &str, nodes: &[String]) -> Result<i64, ControlError> {
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
        self.start_fire(&job, Fire::new(name, Utc::now(), Trigger::Manual), only);
        self.flush()
            .first()
            .copied()
            .flatten()
            .ok_or_else(|| ControlError::Invalid("the fire could not be recorded; see the daemon's log".to_string()))
    }

    async fn stop(mut self) {
        for (name, state) in &mut self.jobs {
            for fire in state.queued.drain(..) {
                let note = "skipped: the daemon stopped before this queued fire could run";
                self.store.queue_skipped(name, fire.scheduled, fire.trigger, note);
            }
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
        self.abort.cancel();
        self.store.settled().await;
        self.runner.pool().close();
        tracing::info!("loom stopped");
    }
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

async fn prune_forever(store: Arc<Store>, snapshot: Arc<Snapshot>) {
    let settings = &snapshot.config.settings;
    let (keep, age) = (settings.retention_fires, settings.retention_age);
    if keep.is_none() && age.is_none() {
        return;
    }
    loop {
        let before = age.and_then(|a| chrono::Duration::from_std(a).ok()).map(|a| Utc::now() - a);
        match store.prune(keep, before).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(fires = removed, "pruned old history"),
            Err(err) => tracing::error!("failed to prune history: {err}"),
        }
        tokio::time::sleep(PRUNE_EVERY).await;
    }
}
