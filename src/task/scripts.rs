//! The threads task scripts run on.
//!
//! A script is synchronous Rhai code that mostly waits: on commands, on file
//! transfers. Giving every node task a thread of its own from the start costs a
//! thread wake-up per start — 10–20 µs on a small machine — so a thousand fires due
//! on the same second would start over tens of milliseconds. Instead, as Go's
//! scheduler does, scripts are started by about as many runner threads as there are
//! cores, and a runner about to wait (a command, a transfer) or that has computed
//! for longer than a slice first hands its place to another thread. At any time
//! about `cores` scripts compute, any number wait, and work due at an instant starts
//! back to back at that instant.
//!
//! Results are handed back to the async side after the work that is due has
//! started: a burst of starts is not slowed down by the bookkeeping of the scripts
//! it has already finished.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How long a script may compute without waiting before its runner hands its place on.
const SLICE: Duration = Duration::from_millis(5);
/// Runner threads beyond `cores` exit after this long without work.
const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// Results held back during a burst of starts are handed back at least this often.
const HOLD_BACK: Duration = Duration::from_millis(5);

type Work = Box<dyn FnOnce() + Send>;

/// A script that panicked, with the panic's message.
#[derive(Debug)]
pub struct Crashed(pub String);

impl std::fmt::Display for Crashed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs `work` on a script thread, not before `not_before`; the answer arrives on
/// the returned channel (dropped only if the process is going down).
pub fn submit<R: Send + 'static>(
    not_before: Option<Instant>,
    work: impl FnOnce() -> R + Send + 'static,
) -> oneshot::Receiver<Result<R, Crashed>> {
    let (answer, receiver) = oneshot::channel();
    let work: Work = Box::new(move || {
        let result = catch_unwind(AssertUnwindSafe(work)).map_err(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string());
            Crashed(message)
        });
        OUTBOX.with(|outbox| outbox.borrow_mut().push(Box::new(move || drop(answer.send(result)))));
    });
    pool().submit(not_before.unwrap_or_else(Instant::now), work);
    receiver
}

/// Runs `wait` (a command, a transfer) having first handed this runner's place to
/// another thread, so that other scripts keep starting meanwhile.
pub fn blocking<R>(wait: impl FnOnce() -> R) -> R {
    let Some(shared) = RUNNER.with(|r| r.borrow().clone()) else { return wait() };
    if DETACHED.get() {
        return wait();
    }
    // Answers held back on this thread would wait for as long as this script does.
    hand_back();
    shared.release_place();
    // Taken back however `wait` ends, a panic included.
    struct TakeBack(Arc<Shared>);
    impl Drop for TakeBack {
        fn drop(&mut self) {
            self.0.state().active += 1;
            SLICE_START.set(Instant::now());
        }
    }
    let _take_back = TakeBack(shared);
    wait()
}

/// Called as a script computes: past its slice, the script keeps its thread but
/// gives up its runner's place, so a runaway script never holds back the others.
pub fn computing() {
    if DETACHED.get() || SLICE_START.get().elapsed() < SLICE {
        return;
    }
    let Some(shared) = RUNNER.with(|r| r.borrow().clone()) else { return };
    DETACHED.set(true);
    hand_back();
    shared.release_place();
}

thread_local! {
    /// The pool this thread is a runner of.
    static RUNNER: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
    /// The script on this thread has given up its place for good.
    static DETACHED: Cell<bool> = const { Cell::new(false) };
    /// When the script on this thread last started computing.
    static SLICE_START: Cell<Instant> = Cell::new(Instant::now());
    /// Answers not yet handed back, oldest first.
    static OUTBOX: RefCell<Vec<Box<dyn FnOnce()>>> = const { RefCell::new(Vec::new()) };
    static OUTBOX_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

fn pool() -> &'static Arc<Shared> {
    static POOL: OnceLock<Arc<Shared>> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        Arc::new(Shared { state: Mutex::new(State::default()), wake: Condvar::new(), cores })
    })
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// How many scripts compute at once.
    cores: usize,
}

#[derive(Default)]
struct State {
    /// Work by (not before, order of submission).
    queue: BTreeMap<(Instant, u64), Work>,
    submitted: u64,
    /// Runners running script code (not waiting, not detached).
    active: usize,
    /// Runners waiting for work.
    idle: usize,
    threads: usize,
}

impl State {
    fn ready(&self, now: Instant) -> bool {
        self.queue.first_key_value().is_some_and(|((at, _), _)| *at <= now)
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Work runs outside the lock and panics are caught: a poisoned lock still
        // holds consistent counts.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn submit(self: &Arc<Self>, at: Instant, work: Work) {
        let mut state = self.state();
        let order = state.submitted;
        state.submitted += 1;
        state.queue.insert((at, order), work);
        // Idle runners already wait for anything earlier.
        let earliest = state.queue.first_key_value().is_some_and(|(key, _)| *key == (at, order));
        if earliest || at <= Instant::now() {
            self.find_runner(&mut state);
        }
    }

    /// Makes sure a runner will take queued work as soon as there is a place.
    fn find_runner(self: &Arc<Self>, state: &mut State) {
        if state.queue.is_empty() || state.active >= self.cores {
            return;
        }
        if state.idle > 0 {
            self.wake.notify_one();
        } else {
            // Counted as idle until it looks at the queue.
            state.threads += 1;
            state.idle += 1;
            let shared = Arc::clone(self);
            let spawned = std::thread::Builder::new().name("loom-script".into()).spawn(move || shared.run());
            if let Err(err) = spawned {
                state.threads -= 1;
                state.idle -= 1;
                tracing::error!("failed to start a script thread: {err}");
            }
        }
    }

    /// The script on this thread stops computing for a while: another may start.
    fn release_place(self: &Arc<Self>) {
        let mut state = self.state();
        state.active -= 1;
        self.find_runner(&mut state);
    }

    fn run(self: Arc<Self>) {
        RUNNER.with(|r| *r.borrow_mut() = Some(Arc::clone(&self)));
        let mut state = self.state();
        state.idle -= 1;
        loop {
            let now = Instant::now();
            if state.active < self.cores && state.ready(now) {
                let (_, work) = state.queue.pop_first().expect("ready");
                state.active += 1;
                if state.ready(now) {
                    self.find_runner(&mut state);
                }
                drop(state);
                DETACHED.set(false);
                SLICE_START.set(Instant::now());
                work();
                OUTBOX_SINCE.with(|since| {
                    since.get().is_none().then(|| since.set(Some(Instant::now())));
                });
                state = self.state();
                if !DETACHED.get() {
                    state.active -= 1;
                }
                // While more work is due, answers wait (a little) for it to start.
                if OUTBOX_SINCE.get().is_some_and(|since| since.elapsed() >= HOLD_BACK) {
                    drop(state);
                    hand_back();
                    state = self.state();
                }
                continue;
            }
            if OUTBOX.with(|outbox| !outbox.borrow().is_empty()) {
                drop(state);
                hand_back();
                state = self.state();
                continue;
            }
            let timeout = match state.queue.first_key_value() {
                Some(((at, _), _)) if *at > now => (*at - now).min(KEEP_ALIVE),
                _ => KEEP_ALIVE,
            };
            state.idle += 1;
            let (woken, waited) = self.wake.wait_timeout(state, timeout).unwrap_or_else(|p| p.into_inner());
            state = woken;
            state.idle -= 1;
            if waited.timed_out() && state.queue.is_empty() && state.threads > self.cores {
                state.threads -= 1;
                drop(state);
                // Answers are handed back before any wait; none may die with the thread.
                hand_back();
                return;
            }
        }
    }
}

/// Hands the answers held on this thread back to whoever waits for them.
fn hand_back() {
    OUTBOX_SINCE.set(None);
    let answers = OUTBOX.with(|outbox| std::mem::take(&mut *outbox.borrow_mut()));
    for answer in answers {
        answer();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_not_before_its_instant_and_answers() {
        let at = Instant::now() + Duration::from_millis(30);
        let answer = submit(Some(at), Instant::now).await.unwrap().unwrap();
        assert!(answer >= at);
    }

    #[tokio::test]
    async fn a_panic_is_an_answer_and_the_pool_goes_on() {
        let crashed = submit(None, || panic!("boom")).await.unwrap().unwrap_err();
        assert_eq!(crashed.0, "boom");
        assert_eq!(submit(None, || 7).await.unwrap().unwrap(), 7);
    }

    /// A script's answer held back on its runner (a burst of starts) is handed back
    /// when the next script on that runner waits, not when that script ends: a quick
    /// fire behind a long one on the same thread stayed `running` until it ended.
    #[tokio::test]
    async fn an_answer_is_not_held_back_by_a_script_that_waits_after_it_on_its_thread() {
        for _ in 0..50 {
            let (release, gate) = std::sync::mpsc::channel::<()>();
            let quick = submit(None, || 1);
            let waiting = submit(None, move || blocking(|| gate.recv_timeout(Duration::from_secs(5)).is_ok()));
            let answered = tokio::time::timeout(Duration::from_secs(3), quick).await;
            assert_eq!(answered.expect("the quick answer came while the other waited").unwrap().unwrap(), 1);
            release.send(()).unwrap();
            assert!(waiting.await.unwrap().unwrap());
        }
    }

    #[tokio::test]
    async fn waiting_scripts_do_not_hold_back_the_others() {
        // More scripts wait at once than there are runner places.
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let waiting: Vec<_> = (0..8)
            .map(|_| {
                let gate = Arc::clone(&gate);
                submit(None, move || blocking(|| gate.lock().unwrap().recv_timeout(Duration::from_secs(5)).is_ok()))
            })
            .collect();
        let quick = tokio::time::timeout(Duration::from_secs(2), submit(None, || 1)).await;
        assert_eq!(quick.expect("a quick script started while others wait").unwrap().unwrap(), 1);
        for _ in 0..8 {
            release.send(()).unwrap();
        }
        for answer in waiting {
            assert!(answer.await.unwrap().unwrap());
        }
    }

    #[tokio::test]
    async fn a_script_computing_past_its_slice_gives_up_its_place() {
        let busy: Vec<_> = (0..4)
            .map(|_| {
                submit(None, || {
                    let clock = Instant::now();
                    while clock.elapsed() < Duration::from_secs(2) {
                        computing();
                    }
                })
            })
            .collect();
        let clock = Instant::now();
        submit(None, || ()).await.unwrap().unwrap();
        assert!(clock.elapsed() < Duration::from_secs(1), "waited {:?} for the busy scripts", clock.elapsed());
        for answer in busy {
            answer.await.unwrap().unwrap();
        }
    }
}
