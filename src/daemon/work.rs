//! The node work a daemon of a cluster takes from the shared store (PostgreSQL).
//!
//! A cluster fire is recorded with one work row per node. Every member runs this
//! loop: woken when a member records a fire (LISTEN/NOTIFY), when one of its own
//! nodes ends, once more when other members' first turn at pending nodes is over
//! (`AFFINITY`), and every heartbeat, it claims as many rows as it has free
//! workers (`Store::claim_work`: nodes whose member's lease expired, its own
//! pending nodes, others' that waited), groups them by fire and runs each group
//! with the runner as a part of the fire, from its own copy of the job. Results
//! are written under the claim's lease epoch (`Recorder::leased`), and the member
//! that records a fire's last node ends the fire. A node taken over from a lost
//! member is a new attempt: the lost one is recorded `failed`, naming the member,
//! and the node runs again if the job's `retries` allow.
//!
//! It follows the ends of the fires its daemon claimed (`follow`: told by its own
//! results, by the members' NOTIFY, or read at each poll for all of them at
//! once), and stops its parts of a fire cancelled on any member (`cancel`).
//!
//! Every claimed node ends with a last result from here, whatever happens to its
//! part (a cancelled retry, a job or node this daemon does not know), so no work
//! row stays `running` under a live member. It does not decide when fires run,
//! nor announce them: the daemon that claimed a fire does (`run.rs`). With SQLite
//! there is no loop: the daemon runs its fires whole.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::runner::{Fire, Gate, NodeResult, Recorder, Runner};
use crate::snapshot::Snapshot;
use crate::store::{AFFINITY, Claim, FencedRecord, FireStatus, NodeRecord, NodeStatus, Store};

/// The daemon's side of its work loop.
pub(crate) struct Work {
    /// Wakes the loop to claim (a fire was just recorded).
    pub(crate) wake: Arc<Notify>,
    /// The fires this daemon follows (`follow`), told their ends.
    endings: Arc<Mutex<Endings>>,
    /// Cancels the local parts of a fire, by its number.
    parts: Arc<Mutex<HashMap<i64, Vec<CancellationToken>>>>,
    /// Told when a local part has ended (and announced all its results).
    parts_ended: Arc<Notify>,
    /// Fires cancelled lately (`cancel`).
    cancelled: Arc<Mutex<RecentCancels>>,
    /// The fires this daemon claimed whose start it has announced (`started`).
    started: Arc<Started>,
    /// Stops claiming; the loop ends once its parts have.
    stopping: CancellationToken,
    /// Cancelled once the loop has ended.
    pub(crate) done: CancellationToken,
    /// How often the loop looks for work when nothing wakes it.
    pub(crate) poll: Duration,
    /// The runner parts start with (a reload may replace it).
    pub(crate) runner: tokio::sync::watch::Sender<Arc<Runner>>,
}

impl Work {
    /// Starts the loop over `store`, running parts with `runner` from the
    /// snapshot in force (whose `max_workers` bounds the nodes claimed at once);
    /// `abort` cancels running parts.
    pub(crate) fn start(
        store: Arc<Store>,
        runner: Arc<Runner>,
        snapshots: tokio::sync::watch::Receiver<Arc<Snapshot>>,
        abort: CancellationToken,
    ) -> Work {
        let poll = store.timing().map_or(Duration::from_secs(1), |t| t.heartbeat);
        let work = Work {
            wake: Arc::new(Notify::new()),
            endings: Arc::default(),
            parts: Arc::default(),
            parts_ended: Arc::new(Notify::new()),
            cancelled: Arc::default(),
            started: Arc::default(),
            stopping: CancellationToken::new(),
            done: CancellationToken::new(),
            poll,
            runner: tokio::sync::watch::Sender::new(runner),
        };
        let shared = Shared {
            store,
            runner: work.runner.subscribe(),
            busy: Arc::new(AtomicUsize::new(0)),
            endings: Arc::clone(&work.endings),
            wake: Arc::clone(&work.wake),
            parts: Arc::clone(&work.parts),
            parts_ended: Arc::clone(&work.parts_ended),
            cancelled: Arc::clone(&work.cancelled),
            started: Arc::clone(&work.started),
            abort,
        };
        let (wake, stopping, done) = (Arc::clone(&work.wake), work.stopping.clone(), work.done.clone());
        // The other members' signals: a fire to claim from wakes the loop, a fire
        // that ended is told to its follower here. Ends not heard (a lost
        // connection, a listener that lagged) are read from the store at each
        // poll, for all the fires followed at once.
        if let Some(signals) = shared.store.signals() {
            let (wake, endings, mut ended) = (Arc::clone(&wake), Arc::clone(&work.endings), signals.ended.subscribe());
            let (stopping, heard, store) = (stopping.clone(), signals.work, Arc::clone(&shared.store));
            let listening = signals.listening;
            let (mut cancels, parts, cancelled) =
                (signals.cancelled.subscribe(), Arc::clone(&work.parts), Arc::clone(&work.cancelled));
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(poll);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stopping.cancelled() => break,
                        _ = heard.notified() => wake.notify_one(),
                        id = ended.recv() => match id {
                            Ok((id, status)) => endings.lock().expect("endings lock").tell(id, status),
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                        },
                        // A fire cancelled on any member: this daemon's parts of it stop.
                        id = cancels.recv() => match id {
                            Ok(id) => stop_parts(&parts, &cancelled, id),
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                        },
                        // Listening (again) after a time of not hearing: look now,
                        // as at a poll, for work and ends said meanwhile.
                        _ = listening.notified() => {
                            wake.notify_one();
                            read_ends(&endings, &store).await;
                        }
                        _ = ticks.tick() => read_ends(&endings, &store).await,
                    }
                }
            });
        }
        tokio::spawn(async move {
            claim_forever(shared, snapshots, wake, stopping, poll).await;
            done.cancel();
        });
        work
    }

    /// Cancels this daemon's parts of fire `id`, and those it claims from now
    /// on (`loom cancel`, told to every member; or the daemon's abort).
    pub(crate) fn cancel(&self, id: i64) {
        stop_parts(&self.parts, &self.cancelled, id);
    }

    /// Fire `id`, which this daemon claimed, has been announced as started: its
    /// parts here may now tell of their nodes.
    pub(crate) fn started(&self, id: i64) {
        self.started.tell(id);
    }

    /// What tells, until `unfollow`, that fire `id` ended and how: told by the
    /// member whose results ended it (this daemon, or another through the store).
    pub(crate) fn follow(&self, id: i64) -> watch::Receiver<Option<FireStatus>> {
        self.endings.lock().expect("endings lock").follow(id)
    }

    pub(crate) fn unfollow(&self, id: i64) {
        self.endings.lock().expect("endings lock").followed.remove(&id);
    }

    /// Returns once this daemon runs no part of fire `id`, so every node result
    /// it recorded for the fire has been announced — or after `limit`, for a part
    /// still running a node another member took over.
    pub(crate) async fn parts_ended(&self, id: i64, limit: Duration) {
        until(&self.parts_ended, limit, || !self.parts.lock().expect("parts lock").contains_key(&id)).await;
    }

    /// Stops claiming; `done` is cancelled once the parts running now have ended.
    pub(crate) fn stop(&self) {
        self.stopping.cancel();
    }
}

/// The fires this daemon claimed whose start it announced lately, so that a
/// part of one here tells of its nodes only after the fire's start (the part
/// can be claimed, through NOTIFY, before the daemon has announced the fire).
#[derive(Default)]
struct Started {
    ids: Mutex<(HashSet<i64>, VecDeque<i64>)>,
    told: Notify,
}

/// How many announced starts are remembered.
const STARTED: usize = 10_000;

impl Started {
    fn tell(&self, id: i64) {
        let mut ids = self.ids.lock().expect("started lock");
        if ids.0.insert(id) {
            ids.1.push_back(id);
        }
        while ids.1.len() > STARTED {
            if let Some(old) = ids.1.pop_front() {
                ids.0.remove(&old);
            }
        }
        drop(ids);
        self.told.notify_waiters();
    }

    /// Returns once fire `id`'s start is announced, or after `limit`.
    async fn wait(&self, id: i64, limit: Duration) {
        until(&self.told, limit, || self.ids.lock().expect("started lock").0.contains(&id)).await;
    }
}

/// Returns once `done` holds, looked at again each time `told` is notified, or
/// after `limit`. (Registered before looking, so a notification between the
/// look and the wait is not lost.)
async fn until(told: &Notify, limit: Duration, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let notified = told.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if done() {
            return;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => return,
        }
    }
}

/// Fires cancelled lately, the oldest first: a part of one claimed just before
/// the cancel, that starts after this daemon heard it, stops at once.
#[derive(Default)]
struct RecentCancels(VecDeque<i64>);

/// How many cancelled fires are remembered.
const CANCELLED: usize = 1_000;

/// Cancels the parts of fire `id` running here and any started from now on.
/// (`run_part` registers its part before it looks here: one of the two sees
/// the other.)
fn stop_parts(parts: &Mutex<HashMap<i64, Vec<CancellationToken>>>, cancelled: &Mutex<RecentCancels>, id: i64) {
    {
        let mut cancelled = cancelled.lock().expect("cancelled lock");
        if !cancelled.0.contains(&id) {
            cancelled.0.push_back(id);
        }
        while cancelled.0.len() > CANCELLED {
            cancelled.0.pop_front();
        }
    }
    for token in parts.lock().expect("parts lock").get(&id).into_iter().flatten() {
        token.cancel();
    }
}

/// The ends of the fires a daemon follows.
#[derive(Default)]
struct Endings {
    followed: HashMap<i64, watch::Sender<Option<FireStatus>>>,
    /// Fires that ended while nobody here followed them, lately: a fire can end
    /// (its nodes claimed as soon as it is committed) before its claimer follows it.
    unfollowed: HashMap<i64, FireStatus>,
    /// `unfollowed` in the order told, the oldest first.
    order: VecDeque<i64>,
}

/// How many ends of fires not followed are kept for a follower to come.
const UNFOLLOWED: usize = 10_000;

impl Endings {
    fn follow(&mut self, id: i64) -> watch::Receiver<Option<FireStatus>> {
        let known = self.unfollowed.remove(&id);
        self.followed.entry(id).or_insert_with(|| watch::Sender::new(known)).subscribe()
    }

    fn tell(&mut self, id: i64, status: FireStatus) {
        if let Some(ending) = self.followed.get(&id) {
            ending.send_replace(Some(status));
            return;
        }
        if self.unfollowed.insert(id, status).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > UNFOLLOWED {
            if let Some(old) = self.order.pop_front() {
                self.unfollowed.remove(&old);
            }
        }
    }

    /// The fires followed whose end is not known yet.
    fn open(&self) -> Vec<i64> {
        self.followed.iter().filter(|(_, ending)| ending.borrow().is_none()).map(|(&id, _)| id).collect()
    }
}

/// What every part of the loop shares.
#[derive(Clone)]
struct Shared {
    store: Arc<Store>,
    runner: tokio::sync::watch::Receiver<Arc<Runner>>,
    /// Nodes claimed whose last result is not recorded yet.
    busy: Arc<AtomicUsize>,
    endings: Arc<Mutex<Endings>>,
    /// The loop's wake-up: a node that ends frees a worker.
    wake: Arc<Notify>,
    parts: Arc<Mutex<HashMap<i64, Vec<CancellationToken>>>>,
    parts_ended: Arc<Notify>,
    cancelled: Arc<Mutex<RecentCancels>>,
    started: Arc<Started>,
    abort: CancellationToken,
}

/// Reads from the store which of the fires followed here have ended, and tells them.
async fn read_ends(endings: &Arc<Mutex<Endings>>, store: &Arc<Store>) {
    let open = endings.lock().expect("endings lock").open();
    if open.is_empty() {
        return;
    }
    let store = Arc::clone(store);
    match tokio::task::spawn_blocking(move || store.ended_fires(&open)).await {
        Ok(Ok(ended)) => {
            let mut endings = endings.lock().expect("endings lock");
            ended.into_iter().for_each(|(id, status)| endings.tell(id, status));
        }
        Ok(Err(err)) => tracing::warn!("failed to read the ends of cluster fires: {err}"),
        Err(_) => {}
    }
}

async fn claim_forever(
    shared: Shared,
    snapshots: tokio::sync::watch::Receiver<Arc<Snapshot>>,
    wake: Arc<Notify>,
    stopping: CancellationToken,
    poll: Duration,
) {
    let mut running = JoinSet::new();
    // When to look again for nodes that another member had the first turn at.
    let mut recheck: Option<tokio::time::Instant> = None;
    loop {
        let woken = tokio::select! {
            _ = stopping.cancelled() => break,
            _ = wake.notified() => true,
            _ = tokio::time::sleep(poll) => false,
            _ = tokio::time::sleep_until(recheck.unwrap_or_else(tokio::time::Instant::now)), if recheck.is_some() => {
                recheck = None;
                false
            }
            Some(_) = running.join_next(), if !running.is_empty() => false,
        };
        if woken {
            // A pending node is its own member's first; any member's once its
            // fire has waited `AFFINITY` (that member busy or gone): look again
            // then, unless something wakes the loop before.
            recheck = Some(tokio::time::Instant::now() + AFFINITY + Duration::from_millis(100));
        }
        let capacity = snapshots.borrow().config.settings.max_workers.max(1);
        let free = capacity.saturating_sub(shared.busy.load(Ordering::SeqCst));
        if free == 0 {
            continue;
        }
        let store = Arc::clone(&shared.store);
        let claims = match tokio::task::spawn_blocking(move || store.claim_work(free)).await {
            Ok(Ok(claims)) => claims,
            Ok(Err(err)) => {
                tracing::warn!("failed to claim node work from the cluster's store: {err}");
                continue;
            }
            Err(_) => continue,
        };
        if claims.is_empty() {
            continue;
        }
        let full = claims.len() == free;
        shared.busy.fetch_add(claims.len(), Ordering::SeqCst);
        let mut by_fire: BTreeMap<i64, Vec<Claim>> = BTreeMap::new();
        for claim in claims {
            by_fire.entry(claim.fire_id).or_default().push(claim);
        }
        let snapshot = Arc::clone(&snapshots.borrow());
        for (_, claims) in by_fire {
            running.spawn(run_part(shared.clone(), Arc::clone(&snapshot), claims));
        }
        // More may be waiting: look again once a worker is free.
        if full {
            wake.notify_one();
        }
    }
    while running.join_next().await.is_some() {}
}

/// A node's last result of `attempt`, without running it: why this daemon could not.
fn unrun(claim: &Claim, attempt: u32, status: NodeStatus, error: String) -> FencedRecord {
    FencedRecord {
        record: NodeRecord {
            fire_id: claim.fire_id,
            node: claim.node.clone(),
            attempt,
            status,
            exit_code: None,
            started: Utc::now(),
            duration_ms: 0,
            error: Some(error),
            output: String::new(),
            resources: Vec::new(),
            daemon: None,
        },
        epoch: claim.epoch,
        last: true,
    }
}

/// Runs this daemon's claims on one fire, and makes sure each ends with its last
/// result recorded.
async fn run_part(shared: Shared, snapshot: Arc<Snapshot>, claims: Vec<Claim>) {
    let me = shared.store.member_id().unwrap_or_default();
    let (fire_id, first) = (claims[0].fire_id, claims[0].clone());
    let Some(job) = snapshot.config.jobs.get(&first.job).cloned() else {
        let error = format!("job `{}` is not in the configuration of daemon {me}", first.job);
        let records = claims.iter().map(|c| unrun(c, c.attempt, NodeStatus::Failed, error.clone())).collect();
        record(&shared, fire_id, records, &[], claims.len()).await;
        return;
    };
    let attempts = 1 + job.retries;
    let mut leases = HashMap::new();
    let mut resume = HashMap::new();
    let mut before = Vec::new();
    let mut nodes = Vec::new();
    let mut running = Vec::new();
    for claim in &claims {
        leases.insert(claim.node.clone(), claim.epoch);
        let mut next = claim.attempt;
        if let Some(lost) = &claim.lost {
            // A takeover is a new attempt: the lost one is recorded as failed.
            let last = claim.attempt >= attempts;
            let then = if last { "no retries left".to_string() } else { format!("taken over by {me}") };
            let mut lost = unrun(
                claim,
                claim.attempt,
                NodeStatus::Failed,
                format!("lost with daemon {lost}, whose lease on this node expired ({then})"),
            );
            lost.last = last;
            lost.record.daemon = claim.lost.clone();
            before.push(lost);
            if last {
                continue;
            }
            next += 1;
        }
        match snapshot.config.nodes.get(&claim.node) {
            Some(node) => {
                resume.insert(claim.node.clone(), next);
                nodes.push(Arc::clone(node));
                running.push(claim.clone());
            }
            None => {
                let error = format!("node `{}` is not in the node manifest of daemon {me}", claim.node);
                before.push(unrun(claim, next, NodeStatus::Failed, error));
            }
        }
    }
    let finished_before = before.iter().filter(|r| r.last).count();
    if !before.is_empty() {
        record(&shared, fire_id, before, &job.notifications, finished_before).await;
    }
    if nodes.is_empty() {
        return;
    }
    let mut fire = Fire::new(&first.job, first.scheduled, first.trigger).checking(first.check);
    fire.id = Some(fire_id);
    fire.part = true;
    fire.resume = resume;
    if let Some(started) = first.started {
        fire.gate = Gate::at(started);
    }
    if first.ours {
        // This daemon announces the fire's start: its nodes here are told after it.
        shared.started.wait(fire_id, Duration::from_secs(2)).await;
    }
    let cancel = shared.abort.child_token();
    shared.parts.lock().expect("parts lock").entry(fire_id).or_default().push(cancel.clone());
    if shared.cancelled.lock().expect("cancelled lock").0.contains(&fire_id) {
        cancel.cancel();
    }
    let endings = Arc::clone(&shared.endings);
    let ended = move |status| endings.lock().expect("endings lock").tell(fire_id, status);
    let recorder = Recorder::leased(&shared.store, &job, fire_id, leases, Box::new(ended));
    let mut next = fire.resume.clone();
    let mut ended: HashSet<String> = HashSet::new();
    let (busy, wake) = (Arc::clone(&shared.busy), Arc::clone(&shared.wake));
    let runner = Arc::clone(&shared.runner.borrow());
    runner
        .run(snapshot, fire, nodes, cancel.clone(), &recorder, |result: &NodeResult| {
            next.insert(result.node.clone(), result.attempt + 1);
            if result.is_last(job.retries) && ended.insert(result.node.clone()) {
                busy.fetch_sub(1, Ordering::SeqCst);
                wake.notify_one();
            }
        })
        .await;
    // This part's token goes (cancelled: the part is over); another part of the
    // same fire keeps its own.
    cancel.cancel();
    {
        let mut parts = shared.parts.lock().expect("parts lock");
        if let Some(tokens) = parts.get_mut(&fire_id) {
            tokens.retain(|token| !token.is_cancelled());
            if tokens.is_empty() {
                parts.remove(&fire_id);
            }
        }
    }
    shared.parts_ended.notify_waiters();
    // A node whose part ended before its last attempt (cancelled while waiting
    // to retry) ends here, so that its work is done.
    let unfinished: Vec<FencedRecord> = running
        .iter()
        .filter(|claim| !ended.contains(&claim.node))
        .map(|claim| {
            let attempt = next.get(&claim.node).copied().unwrap_or(claim.attempt);
            unrun(claim, attempt, NodeStatus::Interrupted, "stopped before its last attempt".to_string())
        })
        .collect();
    if !unfinished.is_empty() {
        let count = unfinished.len();
        record(&shared, fire_id, unfinished, &job.notifications, count).await;
    }
}

/// Records results that need no run, then frees `finished` workers.
async fn record(
    shared: &Shared,
    fire_id: i64,
    records: Vec<FencedRecord>,
    rules: &[Arc<crate::config::notify::NotifyRule>],
    finished: usize,
) {
    match shared.store.record_fenced(fire_id, records, rules).await {
        Ok(fenced) => {
            if let Some(status) = fenced.ended {
                shared.endings.lock().expect("endings lock").tell(fire_id, status);
            }
        }
        Err(err) => tracing::error!(fire = fire_id, "failed to record node results: {err}"),
    }
    shared.busy.fetch_sub(finished, Ordering::SeqCst);
    shared.wake.notify_one();
}
