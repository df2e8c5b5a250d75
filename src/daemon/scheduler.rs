//! The scheduler's decisions, as a synchronous state machine.
//!
//! Given `now` and an event (start, due instants reached, a fire recorded or
//! finished, a reload's job changes, run-now, shutdown), it updates one map of
//! fire states and returns what to do: record and start these fires, record that
//! one skipped. It decides overlap (skip, queue, allow) and catch-up (after
//! downtime, and after a stall of the host past `LATE`) in one place each, and
//! plans jitter through the `Timeline`. It does no I/O and reads no clock: the
//! async loop in `run.rs` waits for the next event, calls it, and carries out the
//! actions (store writes, spawning fires) — like nextest's dispatcher.
//!
//! Every fire it starts is released exactly once: by `finished`, or by
//! `recorded(.., Recorded::Duplicate)` when the store already had it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::Job;
use crate::config::job::Overlap;
use crate::schedule::Timeline;
use crate::schedule::catchup::missed;
use crate::schedule::timeline::Due;
use crate::store::Trigger;

use super::reload::Changes;

/// The jobs of the current snapshot, by name.
pub(crate) type Jobs = BTreeMap<String, Arc<Job>>;

/// A fire this late is handled by the job's catch-up policy (the host slept or the
/// process stalled) rather than run in a burst with everything missed meanwhile.
pub(crate) const LATE: TimeDelta = TimeDelta::seconds(60);

/// How long before their instant the fires due at it are prepared: enough to record
/// and spawn them and queue their scripts (tens of microseconds each), so that at
/// the instant nothing is left but to start.
pub(crate) fn lead(fires: usize) -> TimeDelta {
    TimeDelta::microseconds((5_000 + 100 * fires as i64).min(500_000))
}

/// The scheduler's own number for a fire, from decision to release (a fire may
/// lack a store number).
pub(crate) type FireKey = u64;

/// Where a fire is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Its job was running when it was prepared: overlap is decided at `at`.
    Deferred { at: DateTime<Utc> },
    /// Behind a running fire of its job (overlap: queue, and catch-up).
    Queued,
    /// Handed out in a `Start` action, not yet reported recorded.
    Starting,
    /// Recorded (with its store number, if the store took it) and running.
    Running { id: Option<i64> },
}

#[derive(Debug, Clone)]
pub(crate) struct TrackedFire {
    pub(crate) job: String,
    pub(crate) scheduled: DateTime<Utc>,
    pub(crate) trigger: Trigger,
    pub(crate) stage: Stage,
}

/// A fire to record and start.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Start {
    pub(crate) key: FireKey,
    pub(crate) job: String,
    pub(crate) scheduled: DateTime<Utc>,
    pub(crate) trigger: Trigger,
    /// Only these nodes instead of the job's targets.
    pub(crate) only: Option<Vec<String>>,
    /// Its tasks start at this instant (it is prepared ahead), or right away.
    pub(crate) gate: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Record this fire as skipped, with this note.
    Skip { job: String, scheduled: DateTime<Utc>, trigger: Trigger, note: &'static str },
    /// Record these fires in one transaction, start them, and report each back
    /// with `recorded`.
    Start(Vec<Start>),
}

/// What the store said when a fire was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    As(i64),
    /// Already on record: it is not run twice.
    Duplicate,
    /// The store failed; the fire runs anyway.
    Failed,
}

pub(crate) const SKIPPED_OVERLAP: &str = "skipped: the previous fire was still running (overlap: skip)";
pub(crate) const SKIPPED_STOPPING: &str = "skipped: the daemon stopped before this queued fire could run";

pub(crate) struct Scheduler {
    timeline: Timeline,
    /// Every fire from decision to release, in the order they were decided.
    fires: BTreeMap<FireKey, TrackedFire>,
    next_key: FireKey,
    /// Jobs disabled in the store, as last read.
    disabled: HashSet<String>,
    catchup_limit: usize,
    /// Actions decided by the current event, handed out at its end.
    skips: Vec<Action>,
    starts: Vec<Start>,
}

impl Scheduler {
    pub(crate) fn new(catchup_limit: usize) -> Scheduler {
        Scheduler {
            timeline: Timeline::new(),
            fires: BTreeMap::new(),
            next_key: 0,
            disabled: HashSet::new(),
            catchup_limit,
            skips: Vec::new(),
            starts: Vec::new(),
        }
    }

    /// The jobs disabled in the store, read afresh.
    pub(crate) fn set_disabled(&mut self, disabled: HashSet<String>) {
        self.disabled = disabled;
    }

    pub(crate) fn is_enabled(&self, job: &str) -> bool {
        !self.disabled.contains(job)
    }

    pub(crate) fn next_for(&self, job: &str) -> Option<DateTime<Utc>> {
        self.timeline.next_for(job)
    }

    pub(crate) fn next_instant(&self) -> Option<DateTime<Utc>> {
        self.timeline.next_instant()
    }

    /// Every fire it tracks, in the order they were decided.
    pub(crate) fn fires(&self) -> impl Iterator<Item = (FireKey, &TrackedFire)> {
        self.fires.iter().map(|(key, fire)| (*key, fire))
    }

    /// The daemon starts: `@reboot` fires, catch-up after downtime from each job's
    /// `last` fire on record, and the first plan of every job.
    pub(crate) fn start(
        &mut self,
        jobs: &Jobs,
        last: &HashMap<String, DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Vec<Action> {
        for job in jobs.values() {
            let Some(schedule) = &job.schedule else { continue };
            if schedule.is_reboot() {
                self.dispatch(job, now, Trigger::Reboot, job.overlap, None);
                continue;
            }
            if let Some(last) = last.get(&job.name) {
                self.catch_up(job, *last, now);
            }
            self.timeline.plan(&job.name, schedule, now, job.jitter_offset());
        }
        self.actions()
    }

    /// When the loop must next act: the earliest preparation or deferred fire.
    pub(crate) fn next_wake(&self) -> Option<DateTime<Utc>> {
        let prepare = self.timeline.next_instant().map(|at| at - lead(self.timeline.count_at(at)));
        let deferred = self.fires.values().filter_map(|f| match f.stage {
            Stage::Deferred { at } => Some(at),
            _ => None,
        });
        prepare.into_iter().chain(deferred).min()
    }

    /// Whether `due(now)` has anything to decide (the caller reads which jobs are
    /// disabled only then).
    pub(crate) fn has_due(&self, now: DateTime<Utc>) -> bool {
        self.next_wake().is_some_and(|at| at <= now)
    }

    /// Prepares the fires whose instant is within its lead of `now`, to start at that
    /// instant, and decides the deferred fires now due.
    pub(crate) fn due(&mut self, jobs: &Jobs, now: DateTime<Utc>) -> Vec<Action> {
        let mut due = Vec::new();
        while let Some(at) = self.timeline.next_instant() {
            if at - lead(self.timeline.count_at(at)) > now {
                break;
            }
            due.extend(self.timeline.take_due(at));
        }
        let ready: Vec<FireKey> = self
            .fires
            .iter()
            .filter(|(_, f)| matches!(f.stage, Stage::Deferred { at } if at <= now))
            .map(|(key, _)| *key)
            .collect();
        for key in ready {
            let Some(fire) = self.fires.remove(&key) else { continue };
            let Some(job) = jobs.get(&fire.job) else { continue };
            self.dispatch(job, fire.scheduled, fire.trigger, job.overlap, None);
        }
        for Due { at, scheduled, job: name } in due {
            let Some(job) = jobs.get(&name) else { continue };
            let Some(schedule) = &job.schedule else { continue };
            if now - scheduled > LATE {
                tracing::warn!(job = %name, %scheduled, "woke up late (the host slept or stalled); applying the catch-up policy");
                self.catch_up(job, scheduled - TimeDelta::milliseconds(1), now);
                self.timeline.plan(&name, schedule, now, job.jitter_offset());
                continue;
            }
            self.timeline.plan(&name, schedule, scheduled, job.jitter_offset());
            if self.busy(&name) && job.overlap != Overlap::Allow && at > now {
                // The running fire may well end before this one's instant.
                let stage = Stage::Deferred { at };
                self.track(TrackedFire { job: name, scheduled, trigger: Trigger::Schedule, stage });
                continue;
            }
            self.dispatch(job, scheduled, Trigger::Schedule, job.overlap, Some(at));
        }
        self.actions()
    }

    /// A fire handed out in `Start` has been recorded (or not).
    pub(crate) fn recorded(&mut self, jobs: &Jobs, key: FireKey, outcome: Recorded) -> Vec<Action> {
        match outcome {
            Recorded::Duplicate => return self.finished(jobs, key),
            Recorded::As(id) => self.set_stage(key, Stage::Running { id: Some(id) }),
            Recorded::Failed => self.set_stage(key, Stage::Running { id: None }),
        }
        self.actions()
    }

    /// A fire is over: the next queued fire of its job may start.
    pub(crate) fn finished(&mut self, jobs: &Jobs, key: FireKey) -> Vec<Action> {
        if let Some(fire) = self.fires.remove(&key)
            && !self.busy(&fire.job)
        {
            let next =
                self.fires.iter().find(|(_, f)| f.job == fire.job && f.stage == Stage::Queued).map(|(key, _)| *key);
            if let Some(next) = next
                && jobs.contains_key(&fire.job)
            {
                let queued = self.fires.remove(&next).expect("found above");
                self.start_fire(queued.job, queued.scheduled, queued.trigger, None, None);
            }
        }
        self.actions()
    }

    /// Runs a job now, whatever its overlap policy, on its targets or `only` these.
    pub(crate) fn run_now(
        &mut self,
        job: &str,
        only: Option<Vec<String>>,
        now: DateTime<Utc>,
    ) -> (FireKey, Vec<Action>) {
        let key = self.start_fire(job.to_string(), now, Trigger::Manual, only, None);
        (key, self.actions())
    }

    /// A new snapshot is in force: its removed jobs lose their plans and waiting
    /// fires; added and rescheduled jobs are planned from `now`. Running fires
    /// run on.
    pub(crate) fn reload(&mut self, jobs: &Jobs, changes: &Changes, catchup_limit: usize, now: DateTime<Utc>) {
        self.catchup_limit = catchup_limit;
        let rescheduled = |name: &String| changes.removed.contains(name) || changes.rescheduled.contains(name);
        self.fires.retain(|_, f| match f.stage {
            Stage::Deferred { .. } => !rescheduled(&f.job),
            Stage::Queued => !changes.removed.contains(&f.job),
            Stage::Starting | Stage::Running { .. } => true,
        });
        for name in &changes.removed {
            self.timeline.remove(name);
        }
        for name in changes.added.iter().chain(&changes.rescheduled) {
            let Some(job) = jobs.get(name) else { continue };
            self.timeline.remove(name);
            if let Some(schedule) = job.schedule.as_ref().filter(|s| !s.is_reboot()) {
                self.timeline.plan(name, schedule, now, job.jitter_offset());
            }
        }
    }

    /// The daemon stops: queued fires are recorded as skipped and forgotten;
    /// running ones are left to finish.
    pub(crate) fn shutdown(&mut self) -> Vec<Action> {
        let queued: Vec<FireKey> =
            self.fires.iter().filter(|(_, f)| f.stage == Stage::Queued).map(|(key, _)| *key).collect();
        for key in queued {
            let fire = self.fires.remove(&key).expect("listed above");
            self.skips.push(Action::Skip {
                job: fire.job,
                scheduled: fire.scheduled,
                trigger: fire.trigger,
                note: SKIPPED_STOPPING,
            });
        }
        self.actions()
    }

    /// Missed fires in `(last, now]` that the job's catch-up policy asks for.
    fn catch_up(&mut self, job: &Arc<Job>, last: DateTime<Utc>, now: DateTime<Utc>) {
        let Some(schedule) = &job.schedule else { return };
        let instants = missed(schedule, last, now, job.catchup, self.catchup_limit);
        if !instants.is_empty() {
            tracing::info!(job = %job.name, fires = instants.len(), policy = ?job.catchup, "catching up on missed fires");
        }
        for scheduled in instants {
            // Missed fires run one after the other, oldest first, whatever `overlap` says.
            self.dispatch(job, scheduled, Trigger::CatchUp, Overlap::Queue, None);
        }
    }

    /// The one place overlap is decided: starts, queues or skips a fire.
    fn dispatch(
        &mut self,
        job: &Job,
        scheduled: DateTime<Utc>,
        trigger: Trigger,
        overlap: Overlap,
        gate: Option<DateTime<Utc>>,
    ) {
        if self.disabled.contains(&job.name) {
            tracing::debug!(job = %job.name, "disabled; not firing");
            return;
        }
        if self.busy(&job.name) {
            match overlap {
                Overlap::Allow => {}
                Overlap::Queue => {
                    tracing::info!(job = %job.name, %scheduled, "previous fire still running; queued");
                    self.track(TrackedFire { job: job.name.clone(), scheduled, trigger, stage: Stage::Queued });
                    return;
                }
                Overlap::Skip => {
                    tracing::warn!(job = %job.name, %scheduled, "previous fire still running; skipped");
                    self.skips.push(Action::Skip { job: job.name.clone(), scheduled, trigger, note: SKIPPED_OVERLAP });
                    return;
                }
            }
        }
        self.start_fire(job.name.clone(), scheduled, trigger, None, gate);
    }

    /// A fire to be recorded and started at the end of this event; it counts as
    /// running from now on.
    fn start_fire(
        &mut self,
        job: String,
        scheduled: DateTime<Utc>,
        trigger: Trigger,
        only: Option<Vec<String>>,
        gate: Option<DateTime<Utc>>,
    ) -> FireKey {
        let key = self.track(TrackedFire { job: job.clone(), scheduled, trigger, stage: Stage::Starting });
        self.starts.push(Start { key, job, scheduled, trigger, only, gate });
        key
    }

    fn track(&mut self, fire: TrackedFire) -> FireKey {
        let key = self.next_key;
        self.next_key += 1;
        self.fires.insert(key, fire);
        key
    }

    fn set_stage(&mut self, key: FireKey, stage: Stage) {
        if let Some(fire) = self.fires.get_mut(&key) {
            fire.stage = stage;
        }
    }

    /// Whether a fire of `job` is starting or running.
    fn busy(&self, job: &str) -> bool {
        self.fires.values().any(|f| f.job == job && matches!(f.stage, Stage::Starting | Stage::Running { .. }))
    }

    fn actions(&mut self) -> Vec<Action> {
        let mut actions = std::mem::take(&mut self.skips);
        if !self.starts.is_empty() {
            actions.push(Action::Start(std::mem::take(&mut self.starts)));
        }
        actions
    }
}
