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
//! `recorded(.., Recorded::Duplicate)` when the store already had it, or
//! `Recorded::Unclaimed` when a shared store could not be reached to claim it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::Job;
use crate::config::job::Overlap;
use crate::schedule::Timeline;
use crate::schedule::catchup::{count, missed};
use crate::schedule::timeline::Due;
use crate::store::Trigger;

use super::reload::Changes;

/// The jobs of the current snapshot, by name.
pub(crate) type Jobs = BTreeMap<String, Arc<Job>>;

/// A fire this late is handled by the job's catch-up policy (the host slept or the
/// process stalled) rather than run in a burst with everything missed meanwhile.
/// Lateness counts from the instant it was due to start (its scheduled instant plus
/// its job's jitter offset), so a jitter longer than this is not lateness.
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
    /// A check-mode run asked for by hand (`loom run --check`).
    pub(crate) check: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Record this fire as skipped, with this note.
    Skip { job: String, scheduled: DateTime<Utc>, trigger: Trigger, note: &'static str },
    /// Tell that the job's catch-up policy did not run `count` missed fires (at
    /// least `count` when it is `MISSED_CAP`), the latest at `latest`.
    Missed { job: String, count: usize, latest: DateTime<Utc> },
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
    /// The store failed; the fire runs anyway (a store of one daemon).
    Failed,
    /// A shared store (a cluster's) could not be reached to claim the fire: it
    /// does not run; the catch-up policy decides once the store is back (`resume`).
    Unclaimed,
}

/// Missed fires are counted up to this many.
pub(crate) const MISSED_CAP: usize = 10_000;

pub(crate) const SKIPPED_OVERLAP: &str = "skipped: the previous fire was still running (overlap: skip)";
pub(crate) const SKIPPED_STOPPING: &str = "skipped: the daemon stopped before this queued fire could run";

pub(crate) struct Scheduler {
    timeline: Timeline,
    /// Every fire from decision to release, in the order they were decided.
    fires: BTreeMap<FireKey, TrackedFire>,
    /// Indexes of `fires` (kept by `track`, `untrack` and `set_stage` only), so an
    /// event costs what its job's fires cost, not what all fires cost: each job's
    /// fires, and the deferred ones by instant.
    by_job: HashMap<String, BTreeSet<FireKey>>,
    deferred: BTreeSet<(DateTime<Utc>, FireKey)>,
    next_key: FireKey,
    /// Jobs disabled in the store: as last read, and kept by `set_enabled` between reads.
    disabled: HashSet<String>,
    /// Jobs this daemon does not fire because its definition differs from the
    /// cluster's authoritative one (`consistency`); another member fires them.
    withheld: BTreeSet<String>,
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
            by_job: HashMap::new(),
            deferred: BTreeSet::new(),
            next_key: 0,
            disabled: HashSet::new(),
            withheld: BTreeSet::new(),
            catchup_limit,
            skips: Vec::new(),
            starts: Vec::new(),
        }
    }

    /// The jobs disabled in the store, read afresh.
    pub(crate) fn set_disabled(&mut self, disabled: HashSet<String>) {
        self.disabled = disabled;
    }

    /// A job was enabled or disabled (and the store has committed it).
    pub(crate) fn set_enabled(&mut self, job: &str, enabled: bool) {
        if enabled {
            self.disabled.remove(job);
        } else {
            self.disabled.insert(job.to_string());
        }
    }

    /// The jobs this daemon leaves to the cluster's authoritative member.
    pub(crate) fn set_withheld(&mut self, withheld: BTreeSet<String>) {
        self.withheld = withheld;
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
                self.dispatch(None, job, now, Trigger::Reboot, job.overlap, None);
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
        let deferred = self.deferred.first().map(|(at, _)| *at);
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
        let ready: Vec<FireKey> = self.deferred.iter().take_while(|(at, _)| *at <= now).map(|(_, key)| *key).collect();
        for key in ready {
            let Some(fire) = self.untrack(key) else { continue };
            let Some(job) = jobs.get(&fire.job) else { continue };
            self.dispatch(Some(key), job, fire.scheduled, fire.trigger, job.overlap, None);
        }
        for Due { at, scheduled, job: name } in due {
            let Some(job) = jobs.get(&name) else { continue };
            let Some(schedule) = &job.schedule else { continue };
            if now - at > LATE {
                tracing::warn!(job = %name, %scheduled, "woke up late (the host slept or stalled); applying the catch-up policy");
                self.catch_up(job, scheduled - TimeDelta::milliseconds(1), now);
                self.timeline.plan(&name, schedule, now, job.jitter_offset());
                continue;
            }
            self.timeline.plan(&name, schedule, scheduled, job.jitter_offset());
            if self.busy(&name) && job.overlap != Overlap::Allow && at > now {
                // The running fire may well end before this one's instant.
                let stage = Stage::Deferred { at };
                self.track(None, TrackedFire { job: name, scheduled, trigger: Trigger::Schedule, stage });
                continue;
            }
            self.dispatch(None, job, scheduled, Trigger::Schedule, job.overlap, Some(at));
        }
        self.actions()
    }

    /// A shared store is back after it could not be reached: every job's plan
    /// starts again from `now`, and the instants due meanwhile follow the job's
    /// catch-up policy from its `last` fire on record, as after downtime (other
    /// members may have recorded some meanwhile: `last` is the store's).
    pub(crate) fn resume(
        &mut self,
        jobs: &Jobs,
        last: &HashMap<String, DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Vec<Action> {
        for job in jobs.values() {
            let Some(schedule) = job.schedule.as_ref().filter(|s| !s.is_reboot()) else { continue };
            self.timeline.remove(&job.name);
            if let Some(last) = last.get(&job.name) {
                self.catch_up(job, *last, now);
            }
            self.timeline.plan(&job.name, schedule, now, job.jitter_offset());
        }
        self.actions()
    }

    /// A fire handed out in `Start` has been recorded (or not).
    pub(crate) fn recorded(&mut self, jobs: &Jobs, key: FireKey, outcome: Recorded) -> Vec<Action> {
        match outcome {
            Recorded::Duplicate | Recorded::Unclaimed => return self.finished(jobs, key),
            Recorded::As(id) => self.set_stage(key, Stage::Running { id: Some(id) }),
            Recorded::Failed => self.set_stage(key, Stage::Running { id: None }),
        }
        self.actions()
    }

    /// A fire is over: the next queued fire of its job may start.
    pub(crate) fn finished(&mut self, jobs: &Jobs, key: FireKey) -> Vec<Action> {
        if let Some(fire) = self.untrack(key)
            && !self.busy(&fire.job)
        {
            let next = self.of_job(&fire.job).find(|(_, f)| f.stage == Stage::Queued).map(|(key, _)| key);
            if let Some(next) = next
                && jobs.contains_key(&fire.job)
            {
                let queued = self.untrack(next).expect("found above");
                self.start_fire(Some(next), queued.job, queued.scheduled, queued.trigger, None, None);
            }
        }
        self.actions()
    }

    /// Runs a job now, whatever its overlap policy, on its targets or `only` these.
    pub(crate) fn run_now(
        &mut self,
        job: &str,
        only: Option<Vec<String>>,
        check: bool,
        now: DateTime<Utc>,
    ) -> (FireKey, Vec<Action>) {
        let key = self.start_fire(None, job.to_string(), now, Trigger::Manual, only, None);
        if let Some(start) = self.starts.last_mut() {
            start.check = check;
        }
        (key, self.actions())
    }

    /// A new snapshot is in force: its removed jobs lose their plans and waiting
    /// fires; added and rescheduled jobs are planned from `now`. Running fires
    /// run on.
    pub(crate) fn reload(&mut self, jobs: &Jobs, changes: &Changes, catchup_limit: usize, now: DateTime<Utc>) {
        self.catchup_limit = catchup_limit;
        let rescheduled = |name: &String| changes.removed.contains(name) || changes.rescheduled.contains(name);
        let dropped: Vec<FireKey> = self
            .fires
            .iter()
            .filter(|(_, f)| match f.stage {
                Stage::Deferred { .. } => rescheduled(&f.job),
                Stage::Queued => changes.removed.contains(&f.job),
                Stage::Starting | Stage::Running { .. } => false,
            })
            .map(|(key, _)| *key)
            .collect();
        for key in dropped {
            self.untrack(key);
        }
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
            let fire = self.untrack(key).expect("listed above");
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
        // What the policy leaves out is told (`missed`), unless the job is off anyway.
        let dropped = count(schedule, last, now, MISSED_CAP).saturating_sub(instants.len());
        if dropped > 0 && !self.disabled.contains(&job.name) && !self.withheld.contains(&job.name) {
            // The latest missed instant: the policy runs the newest ones, so the
            // latest of all is dropped only when none runs.
            let latest = missed(schedule, last, now, crate::config::job::Catchup::Latest, 1);
            if let Some(latest) = latest.first() {
                tracing::warn!(job = %job.name, fires = dropped, policy = ?job.catchup, "missed fires not run");
                self.skips.push(Action::Missed { job: job.name.clone(), count: dropped, latest: *latest });
            }
        }
        for scheduled in instants {
            // Missed fires run one after the other, oldest first, whatever `overlap` says.
            self.dispatch(None, job, scheduled, Trigger::CatchUp, Overlap::Queue, None);
        }
    }

    /// The one place overlap is decided: starts, queues or skips a fire (under
    /// its `key`, if it was tracked before).
    fn dispatch(
        &mut self,
        key: Option<FireKey>,
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
        if self.withheld.contains(&job.name) {
            tracing::debug!(job = %job.name, "defined differently from the cluster's authoritative member; not firing");
            return;
        }
        if self.busy(&job.name) {
            match overlap {
                Overlap::Allow => {}
                Overlap::Queue => {
                    tracing::info!(job = %job.name, %scheduled, "previous fire still running; queued");
                    self.track(key, TrackedFire { job: job.name.clone(), scheduled, trigger, stage: Stage::Queued });
                    return;
                }
                Overlap::Skip => {
                    tracing::warn!(job = %job.name, %scheduled, "previous fire still running; skipped");
                    self.skips.push(Action::Skip { job: job.name.clone(), scheduled, trigger, note: SKIPPED_OVERLAP });
                    return;
                }
            }
        }
        self.start_fire(key, job.name.clone(), scheduled, trigger, None, gate);
    }

    /// A fire to be recorded and started at the end of this event; it counts as
    /// running from now on.
    fn start_fire(
        &mut self,
        key: Option<FireKey>,
        job: String,
        scheduled: DateTime<Utc>,
        trigger: Trigger,
        only: Option<Vec<String>>,
        gate: Option<DateTime<Utc>>,
    ) -> FireKey {
        let key = self.track(key, TrackedFire { job: job.clone(), scheduled, trigger, stage: Stage::Starting });
        self.starts.push(Start { key, job, scheduled, trigger, only, gate, check: false });
        key
    }

    /// Tracks a fire under `key` (one it had before) or a new one.
    fn track(&mut self, key: Option<FireKey>, fire: TrackedFire) -> FireKey {
        let key = key.unwrap_or_else(|| {
            self.next_key += 1;
            self.next_key - 1
        });
        self.by_job.entry(fire.job.clone()).or_default().insert(key);
        if let Stage::Deferred { at } = fire.stage {
            self.deferred.insert((at, key));
        }
        self.fires.insert(key, fire);
        key
    }

    /// Forgets a fire: released, dropped, or about to be tracked anew.
    fn untrack(&mut self, key: FireKey) -> Option<TrackedFire> {
        let fire = self.fires.remove(&key)?;
        if let Some(keys) = self.by_job.get_mut(&fire.job) {
            keys.remove(&key);
            if keys.is_empty() {
                self.by_job.remove(&fire.job);
            }
        }
        if let Stage::Deferred { at } = fire.stage {
            self.deferred.remove(&(at, key));
        }
        Some(fire)
    }

    /// Moves a starting fire on (never into or out of `Deferred`, which the index
    /// of deferred fires would miss).
    fn set_stage(&mut self, key: FireKey, stage: Stage) {
        if let Some(fire) = self.fires.get_mut(&key) {
            debug_assert!(!matches!(fire.stage, Stage::Deferred { .. }) && !matches!(stage, Stage::Deferred { .. }));
            fire.stage = stage;
        }
    }

    /// The fires of `job`, in the order they were decided.
    fn of_job(&self, job: &str) -> impl Iterator<Item = (FireKey, &TrackedFire)> {
        self.by_job.get(job).into_iter().flatten().filter_map(|key| Some((*key, self.fires.get(key)?)))
    }

    /// Whether a fire of `job` is starting or running.
    fn busy(&self, job: &str) -> bool {
        self.of_job(job).any(|(_, f)| matches!(f.stage, Stage::Starting | Stage::Running { .. }))
    }

    /// The indexes say what `fires` says.
    #[cfg(test)]
    fn assert_indexed(&self) {
        let mut by_job: HashMap<String, BTreeSet<FireKey>> = HashMap::new();
        let mut deferred = BTreeSet::new();
        for (key, fire) in &self.fires {
            by_job.entry(fire.job.clone()).or_default().insert(*key);
            if let Stage::Deferred { at } = fire.stage {
                deferred.insert((at, *key));
            }
        }
        assert_eq!((&by_job, &deferred), (&self.by_job, &self.deferred));
    }

    fn actions(&mut self) -> Vec<Action> {
        let mut actions = std::mem::take(&mut self.skips);
        if !self.starts.is_empty() {
            actions.push(Action::Start(std::mem::take(&mut self.starts)));
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    //! Time is moved by hand on a `ManualClock`; the tests carry out the actions as
    //! the daemon would (every fire recorded under the next store number).

    use std::time::Duration;

    use chrono_tz::Tz;

    use super::*;
    use crate::config::job::Catchup;
    use crate::daemon::clock::{Clock, ManualClock};
    use crate::schedule::cron::Schedule;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn job(name: &str, cron: &str, zone: Tz, overlap: Overlap, catchup: Catchup) -> Arc<Job> {
        let config =
            crate::config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/loom.yaml"))).0;
        let mut job = (**config.jobs.values().next().unwrap()).clone();
        job.name = name.to_string();
        job.schedule = Some(Schedule::parse(cron, zone).unwrap());
        job.overlap = overlap;
        job.catchup = catchup;
        job.jitter = Duration::ZERO;
        Arc::new(job)
    }

    fn jobs(list: &[Arc<Job>]) -> Jobs {
        list.iter().map(|job| (job.name.clone(), Arc::clone(job))).collect()
    }

    /// A scheduler, its jobs and its clock, carrying out actions as the daemon does.
    struct World {
        scheduler: Scheduler,
        jobs: Jobs,
        clock: ManualClock,
        next_id: i64,
        /// Every fire started, in order.
        started: Vec<Start>,
        skipped: Vec<(String, DateTime<Utc>, &'static str)>,
        missed: Vec<(String, usize)>,
        /// Instants the store already has a fire of.
        on_record: HashSet<DateTime<Utc>>,
    }

    impl World {
        fn new(list: &[Arc<Job>], now: &str) -> World {
            World {
                scheduler: Scheduler::new(100),
                jobs: jobs(list),
                clock: ManualClock::new(at(now)),
                next_id: 1,
                started: Vec::new(),
                skipped: Vec::new(),
                missed: Vec::new(),
                on_record: HashSet::new(),
            }
        }

        fn start(&mut self, last: &[(&str, &str)]) {
            let last = last.iter().map(|(job, when)| (job.to_string(), at(when))).collect();
            let actions = self.scheduler.start(&self.jobs, &last, self.clock.now());
            self.carry_out(actions);
        }

        /// Carries out actions; every fire is recorded as new unless `on_record`.
        fn carry_out(&mut self, actions: Vec<Action>) {
            let mut todo = std::collections::VecDeque::from(actions);
            while let Some(action) = todo.pop_front() {
                match action {
                    Action::Skip { job, scheduled, note, .. } => self.skipped.push((job, scheduled, note)),
                    Action::Missed { job, count, .. } => self.missed.push((job, count)),
                    Action::Start(starts) => {
                        for start in starts {
                            if self.on_record.contains(&start.scheduled) {
                                todo.extend(self.scheduler.recorded(&self.jobs, start.key, Recorded::Duplicate));
                                continue;
                            }
                            let id = self.next_id;
                            self.next_id += 1;
                            todo.extend(self.scheduler.recorded(&self.jobs, start.key, Recorded::As(id)));
                            self.started.push(start);
                        }
                    }
                }
            }
            self.scheduler.assert_indexed();
        }

        /// Moves the clock to each wake-up the scheduler asks for, up to `until`,
        /// handling what is due there, as the daemon's loop does.
        fn run_until(&mut self, until: &str) {
            while let Some(wake) = self.scheduler.next_wake().filter(|w| *w <= at(until)) {
                self.clock.set(wake.max(self.clock.now()));
                let actions = self.scheduler.due(&self.jobs, self.clock.now());
                self.carry_out(actions);
            }
            self.clock.set(at(until));
        }

        /// The wall clock stands still while the host is stalled, then jumps.
        fn stall_until(&mut self, until: &str) {
            self.clock.set(at(until));
            assert!(self.scheduler.has_due(self.clock.now()));
            let actions = self.scheduler.due(&self.jobs, self.clock.now());
            self.carry_out(actions);
        }

        fn finish(&mut self, key: FireKey) {
            let actions = self.scheduler.finished(&self.jobs, key);
            self.carry_out(actions);
        }

        fn key_of(&self, scheduled: &str) -> FireKey {
            self.started.iter().find(|s| s.scheduled == at(scheduled)).expect("started").key
        }

        fn scheduled(&self) -> Vec<(DateTime<Utc>, Trigger)> {
            self.started.iter().map(|s| (s.scheduled, s.trigger)).collect()
        }

        fn stages(&self) -> Vec<Stage> {
            self.scheduler.assert_indexed();
            self.scheduler.fires().map(|(_, f)| f.stage).collect()
        }
    }

    const UTC: Tz = Tz::UTC;

    #[test]
    fn after_the_shared_store_was_away_each_policy_decides_what_was_due_meanwhile() {
        let latest = job("latest", "* * * * * *", UTC, Overlap::Allow, Catchup::Latest);
        let all = job("all", "* * * * * *", UTC, Overlap::Allow, Catchup::All);
        let none = job("none", "* * * * * *", UTC, Overlap::Allow, Catchup::None);
        let mut world = World::new(&[latest, all, none], "2026-01-01T10:00:00.500Z");
        world.start(&[]);
        world.run_until("2026-01-01T10:00:01.500Z");
        assert_eq!(world.started.len(), 3);
        // The store went: the loop prepares nothing until it answers again, at
        // 10:00:05.5, with the last fire on record at 10:00:01 (another member's
        // or this one's).
        for key in world.started.iter().map(|s| s.key).collect::<Vec<_>>() {
            world.finish(key);
        }
        world.started.clear();
        world.clock.set(at("2026-01-01T10:00:05.500Z"));
        let last: HashMap<String, DateTime<Utc>> =
            ["latest", "all", "none"].iter().map(|j| (j.to_string(), at("2026-01-01T10:00:01Z"))).collect();
        let actions = world.scheduler.resume(&world.jobs.clone(), &last, world.clock.now());
        world.carry_out(actions);
        // Caught-up fires run one after the other: each ends before the next starts.
        let mut done = 0;
        while done < world.started.len() {
            let key = world.started[done].key;
            world.finish(key);
            done += 1;
        }
        let of = |world: &World, job: &str| -> Vec<(DateTime<Utc>, Trigger)> {
            world.started.iter().filter(|s| s.job == job).map(|s| (s.scheduled, s.trigger)).collect()
        };
        assert_eq!(of(&world, "latest"), [(at("2026-01-01T10:00:05Z"), Trigger::CatchUp)]);
        let seconds: Vec<_> = (2..=5).map(|s| (at(&format!("2026-01-01T10:00:0{s}Z")), Trigger::CatchUp)).collect();
        assert_eq!(of(&world, "all"), seconds);
        assert!(of(&world, "none").is_empty());
        assert!(world.missed.contains(&("none".to_string(), 4)), "{:?}", world.missed);
        assert!(world.missed.contains(&("latest".to_string(), 3)), "{:?}", world.missed);
        // And the plan goes on from now.
        world.started.clear();
        world.missed.clear();
        world.run_until("2026-01-01T10:00:06.500Z");
        assert_eq!(world.started.len(), 3);
        assert!(world.started.iter().all(|s| s.scheduled == at("2026-01-01T10:00:06Z")));
    }

    #[test]
    fn a_withheld_job_is_not_fired_until_it_agrees_again() {
        let second = job("second", "* * * * * *", UTC, Overlap::Allow, Catchup::Latest);
        let mut world = World::new(&[second], "2026-01-01T10:00:00.500Z");
        world.start(&[]);
        world.scheduler.set_withheld(["second".to_string()].into());
        world.run_until("2026-01-01T10:00:03.500Z");
        assert!(world.started.is_empty());
        world.scheduler.set_withheld(BTreeSet::new());
        world.run_until("2026-01-01T10:00:04.500Z");
        assert_eq!(world.scheduled(), [(at("2026-01-01T10:00:04Z"), Trigger::Schedule)]);
    }

    #[test]
    fn a_fire_is_prepared_its_lead_ahead_and_starts_at_its_instant() {
        let minute = job("minute", "* * * * *", UTC, Overlap::Allow, Catchup::None);
        let mut world = World::new(&[minute], "2026-01-01T10:00:30Z");
        world.start(&[]);
        assert_eq!(world.scheduler.next_wake(), Some(at("2026-01-01T10:01:00Z") - lead(1)));
        world.clock.set(at("2026-01-01T10:00:59Z"));
        assert!(!world.scheduler.has_due(world.clock.now()), "nothing is due before the lead");
        world.run_until("2026-01-01T10:01:00Z");
        let start = &world.started[0];
        assert_eq!((start.scheduled, start.trigger), (at("2026-01-01T10:01:00Z"), Trigger::Schedule));
        assert_eq!(start.gate, Some(at("2026-01-01T10:01:00Z")), "prepared ahead, gated at its instant");
        assert_eq!(world.scheduler.next_instant(), Some(at("2026-01-01T10:02:00Z")));
    }

    #[test]
    fn jitter_moves_the_start_not_the_scheduled_instant() {
        let mut spread = (*job("spread", "0 * * * *", UTC, Overlap::Allow, Catchup::None)).clone();
        spread.jitter = Duration::from_secs(30);
        let offset = chrono::TimeDelta::from_std(spread.jitter_offset()).unwrap();
        assert!(offset > chrono::TimeDelta::zero());
        let mut world = World::new(&[Arc::new(spread)], "2026-01-01T10:30:00Z");
        world.start(&[]);
        world.run_until("2026-01-01T11:01:00Z");
        let start = &world.started[0];
        assert_eq!(start.scheduled, at("2026-01-01T11:00:00Z"));
        assert_eq!(start.gate, Some(at("2026-01-01T11:00:00Z") + offset));
    }

    #[test]
    fn a_jitter_past_late_is_not_lateness() {
        let mut spread = (*job("spread", "0 * * * *", UTC, Overlap::Allow, Catchup::None)).clone();
        spread.jitter = Duration::from_secs(1800);
        let offset = chrono::TimeDelta::from_std(spread.jitter_offset()).unwrap();
        assert!(offset > LATE, "the test needs a jitter offset past LATE, got {offset}");
        let mut world = World::new(&[Arc::new(spread)], "2026-01-01T10:30:00Z");
        world.start(&[]);
        world.run_until("2026-01-01T12:00:00Z");
        let start = &world.started[0];
        assert_eq!((start.scheduled, start.trigger), (at("2026-01-01T11:00:00Z"), Trigger::Schedule));
        assert_eq!(start.gate, Some(at("2026-01-01T11:00:00Z") + offset), "it starts at its jittered instant");
    }

    #[test]
    fn spring_forward_fires_right_after_the_jump_and_fall_back_fires_once() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let night = job("night", "30 2 * * *", berlin, Overlap::Allow, Catchup::None);
        let mut world = World::new(&[night], "2026-03-28T12:00:00Z");
        world.start(&[]);
        world.run_until("2026-03-30T12:00:00Z");
        // 02:30 does not exist on 29 March: it runs at 03:00 CEST, right after the jump.
        assert_eq!(
            world.scheduled(),
            [(at("2026-03-29T01:00:00Z"), Trigger::Schedule), (at("2026-03-30T00:30:00Z"), Trigger::Schedule)]
        );

        let night = job("night", "30 2 * * *", berlin, Overlap::Allow, Catchup::None);
        let mut world = World::new(&[night], "2026-10-24T12:00:00Z");
        world.start(&[]);
        world.run_until("2026-10-26T12:00:00Z");
        // 02:30 happens twice on 25 October: it runs once, at the first.
        assert_eq!(
            world.scheduled(),
            [(at("2026-10-25T00:30:00Z"), Trigger::Schedule), (at("2026-10-26T01:30:00Z"), Trigger::Schedule)]
        );
    }

    #[test]
    fn after_downtime_catch_up_runs_none_the_latest_or_all_missed_fires_in_order() {
        let none = job("none", "0 * * * *", UTC, Overlap::Skip, Catchup::None);
        let latest = job("latest", "0 * * * *", UTC, Overlap::Skip, Catchup::Latest);
        let all = job("all", "0 * * * *", UTC, Overlap::Skip, Catchup::All);
        let mut world = World::new(&[none, latest, all], "2026-01-01T12:30:00Z");
        let down = "2026-01-01T09:00:00Z";
        world.start(&[("none", down), ("latest", down), ("all", down)]);
        let started: Vec<(&str, DateTime<Utc>, Trigger)> =
            world.started.iter().map(|s| (s.job.as_str(), s.scheduled, s.trigger)).collect();
        assert_eq!(
            started,
            [
                ("all", at("2026-01-01T10:00:00Z"), Trigger::CatchUp),
                ("latest", at("2026-01-01T12:00:00Z"), Trigger::CatchUp)
            ]
        );
        // `all` runs its missed fires one after the other, whatever `overlap` says.
        assert_eq!(world.stages().iter().filter(|s| **s == Stage::Queued).count(), 2);
        world.finish(world.key_of("2026-01-01T10:00:00Z"));
        assert_eq!(world.started.last().unwrap().scheduled, at("2026-01-01T11:00:00Z"));
        let key = world.started.last().unwrap().key;
        world.finish(key);
        assert_eq!(world.started.last().unwrap().scheduled, at("2026-01-01T12:00:00Z"));
        assert!(world.skipped.is_empty());
        // What a policy does not run is told: `none` dropped 3, `latest` 2, `all` none.
        world.missed.sort();
        assert_eq!(world.missed, [("latest".to_string(), 2), ("none".to_string(), 3)]);
        // Every job is planned from now on.
        for name in ["none", "latest", "all"] {
            assert_eq!(world.scheduler.next_for(name), Some(at("2026-01-01T13:00:00Z")));
        }
    }

    #[test]
    fn a_stalled_host_applies_the_catch_up_policy_instead_of_a_burst() {
        let latest = job("latest", "* * * * *", UTC, Overlap::Allow, Catchup::Latest);
        let none = job("none", "* * * * *", UTC, Overlap::Allow, Catchup::None);
        let mut world = World::new(&[latest, none], "2026-01-01T10:00:30Z");
        world.start(&[]);
        // The host stops just before the 10:01 fires are prepared, for five minutes.
        world.stall_until("2026-01-01T10:05:30Z");
        let started: Vec<(&str, DateTime<Utc>, Trigger)> =
            world.started.iter().map(|s| (s.job.as_str(), s.scheduled, s.trigger)).collect();
        assert_eq!(started, [("latest", at("2026-01-01T10:05:00Z"), Trigger::CatchUp)]);
        world.missed.sort();
        assert_eq!(world.missed, [("latest".to_string(), 4), ("none".to_string(), 5)]);
        assert_eq!(world.scheduler.next_for("none"), Some(at("2026-01-01T10:06:00Z")));
        assert_eq!(world.scheduler.next_for("latest"), Some(at("2026-01-01T10:06:00Z")));

        // A wake-up less than `LATE` after the instant is not a stall: the fire runs.
        let mut world =
            World::new(&[job("m", "* * * * *", UTC, Overlap::Allow, Catchup::None)], "2026-01-01T10:00:30Z");
        world.start(&[]);
        world.stall_until("2026-01-01T10:01:59Z");
        assert_eq!(world.scheduled(), [(at("2026-01-01T10:01:00Z"), Trigger::Schedule)]);
    }

    /// Starts `policy`'s every-minute job at 10:01, still running when 10:02 is due.
    fn overlapping(policy: Overlap) -> World {
        let mut world = World::new(&[job("slow", "* * * * *", UTC, policy, Catchup::None)], "2026-01-01T10:00:30Z");
        world.start(&[]);
        world.run_until("2026-01-01T10:01:30Z");
        assert_eq!(world.started.len(), 1);
        world
    }

    #[test]
    fn overlap_skip_records_the_fire_skipped_at_its_instant() {
        let mut world = overlapping(Overlap::Skip);
        // Prepared ahead, but whether it overlaps is decided at its instant.
        world.clock.set(at("2026-01-01T10:01:59.999Z"));
        let actions = world.scheduler.due(&world.jobs, world.clock.now());
        world.carry_out(actions);
        assert!(world.skipped.is_empty());
        assert!(matches!(world.stages()[1], Stage::Deferred { .. }));
        world.run_until("2026-01-01T10:02:30Z");
        assert_eq!(world.skipped, [("slow".to_string(), at("2026-01-01T10:02:00Z"), SKIPPED_OVERLAP)]);
        assert_eq!(world.started.len(), 1);
    }

    #[test]
    fn overlap_skip_runs_the_fire_when_the_previous_one_ends_before_its_instant() {
        let mut world = overlapping(Overlap::Skip);
        world.run_until("2026-01-01T10:01:59.999Z");
        world.finish(world.key_of("2026-01-01T10:01:00Z"));
        world.run_until("2026-01-01T10:02:00Z");
        assert!(world.skipped.is_empty());
        assert_eq!(world.started[1].scheduled, at("2026-01-01T10:02:00Z"));
        assert_eq!(world.started[1].gate, None, "decided at its instant: it starts right away");
    }

    #[test]
    fn overlap_queue_starts_the_fire_when_the_previous_one_ends() {
        let mut world = overlapping(Overlap::Queue);
        world.run_until("2026-01-01T10:02:30Z");
        assert_eq!(world.stages(), [Stage::Running { id: Some(1) }, Stage::Queued]);
        world.finish(world.key_of("2026-01-01T10:01:00Z"));
        assert_eq!(world.scheduled()[1], (at("2026-01-01T10:02:00Z"), Trigger::Schedule));
        assert_eq!(world.stages(), [Stage::Running { id: Some(2) }]);
    }

    #[test]
    fn overlap_allow_starts_the_fire_alongside_the_running_one() {
        let mut world = overlapping(Overlap::Allow);
        world.run_until("2026-01-01T10:02:00Z");
        assert_eq!(world.started[1].gate, Some(at("2026-01-01T10:02:00Z")));
        assert_eq!(world.stages(), [Stage::Running { id: Some(1) }, Stage::Running { id: Some(2) }]);
    }

    #[test]
    fn a_fire_already_on_record_is_not_run_and_lets_the_next_queued_one_go() {
        let all = job("all", "0 * * * *", UTC, Overlap::Skip, Catchup::All);
        let mut world = World::new(&[all], "2026-01-01T12:30:00Z");
        // A daemon that died right after recording the 10:00 fire.
        world.on_record.insert(at("2026-01-01T10:00:00Z"));
        world.start(&[("all", "2026-01-01T09:00:00Z")]);
        assert_eq!(world.scheduled(), [(at("2026-01-01T11:00:00Z"), Trigger::CatchUp)]);
        assert_eq!(world.stages(), [Stage::Running { id: Some(1) }, Stage::Queued]);
        world.finish(world.key_of("2026-01-01T11:00:00Z"));
        world.finish(world.key_of("2026-01-01T12:00:00Z"));
        assert!(world.stages().is_empty(), "each fire released exactly once");
    }

    #[test]
    fn a_disabled_job_stays_quiet_but_keeps_its_plan() {
        let mut world =
            World::new(&[job("off", "* * * * *", UTC, Overlap::Allow, Catchup::None)], "2026-01-01T10:00:30Z");
        world.start(&[]);
        world.scheduler.set_disabled(["off".to_string()].into());
        world.run_until("2026-01-01T10:10:00Z");
        assert!(world.started.is_empty());
        assert_eq!(world.scheduler.next_for("off"), Some(at("2026-01-01T10:11:00Z")));
        world.scheduler.set_enabled("off", true);
        world.run_until("2026-01-01T10:11:00Z");
        assert_eq!(world.scheduled(), [(at("2026-01-01T10:11:00Z"), Trigger::Schedule)]);
    }

    #[test]
    fn run_now_starts_whatever_the_overlap_policy() {
        let mut world = overlapping(Overlap::Skip);
        let (key, actions) = world.scheduler.run_now("slow", Some(vec!["n1".to_string()]), false, world.clock.now());
        world.carry_out(actions);
        let start = world.started.last().unwrap();
        assert_eq!(
            (start.key, start.trigger, start.only.clone()),
            (key, Trigger::Manual, Some(vec!["n1".to_string()]))
        );
    }

    #[test]
    fn a_reload_mid_fire_lets_it_run_and_drops_what_waits_for_a_removed_job() {
        let mut world = overlapping(Overlap::Queue);
        world.run_until("2026-01-01T10:02:30Z");
        assert_eq!(world.stages(), [Stage::Running { id: Some(1) }, Stage::Queued]);
        let changes = Changes { removed: vec!["slow".to_string()], ..Changes::default() };
        world.jobs.clear();
        world.scheduler.reload(&world.jobs, &changes, 100, world.clock.now());
        assert_eq!(world.stages(), [Stage::Running { id: Some(1) }], "the running fire runs on");
        assert_eq!(world.scheduler.next_wake(), None);
        world.finish(world.key_of("2026-01-01T10:01:00Z"));
        assert!(world.stages().is_empty());
        assert_eq!(world.started.len(), 1);
    }

    #[test]
    fn a_reload_that_reschedules_a_running_job_plans_it_anew() {
        let mut world = overlapping(Overlap::Skip);
        world.run_until("2026-01-01T10:01:59.999Z");
        assert!(matches!(world.stages()[1], Stage::Deferred { .. }));
        let hourly = job("slow", "0 * * * *", UTC, Overlap::Skip, Catchup::None);
        world.jobs = jobs(&[hourly]);
        let changes = Changes { changed: vec!["slow".into()], rescheduled: vec!["slow".into()], ..Changes::default() };
        world.scheduler.reload(&world.jobs, &changes, 100, world.clock.now());
        assert_eq!(world.stages(), [Stage::Running { id: Some(1) }]);
        assert_eq!(world.scheduler.next_for("slow"), Some(at("2026-01-01T11:00:00Z")));
    }

    #[test]
    fn shutdown_records_queued_fires_skipped_and_leaves_running_ones() {
        let mut world = overlapping(Overlap::Queue);
        world.run_until("2026-01-01T10:03:30Z");
        assert_eq!(world.stages(), [Stage::Running { id: Some(1) }, Stage::Queued, Stage::Queued]);
        let actions = world.scheduler.shutdown();
        world.carry_out(actions);
        assert_eq!(
            world.skipped,
            [
                ("slow".to_string(), at("2026-01-01T10:02:00Z"), SKIPPED_STOPPING),
                ("slow".to_string(), at("2026-01-01T10:03:00Z"), SKIPPED_STOPPING)
            ]
        );
        assert_eq!(world.stages(), [Stage::Running { id: Some(1) }]);
    }
}
