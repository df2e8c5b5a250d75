//! The daemon's live events, numbered, with the most recent ones kept for readers
//! that fall behind or come back.
//!
//! Every event gets its number here, once, when it is published: one daemon's
//! numbers increase by one, and its first number is its start time in microseconds,
//! so numbers keep increasing across restarts and a reader coming back to a
//! restarted daemon is not taken for one ahead of it. The last `KEEP_EVENTS` events
//! (and at most `KEEP_BYTES` of their text) are kept in memory; a reader asks for
//! what follows the last number it saw and gets it, or, when some of it is no
//! longer kept, a `Lagged` with how many it missed — never a silent gap. Readers
//! pull at their own pace, so a slow one costs nothing to the others or to the
//! runner. Nothing is persisted: the events of a stopped daemon are gone with it
//! (the history in the store still has every result).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use utoipa::ToSchema;

use crate::store::{FireStatus, NodeStatus, ResourceOutcome, Trigger};

/// How many recent events are kept for readers.
pub const KEEP_EVENTS: usize = 10_000;
/// How much output text the kept events may hold, in bytes (the older ones go first).
pub const KEEP_BYTES: usize = 32 * 1024 * 1024;

/// At most this many items are handed to a reader at once.
const BATCH: usize = 256;

/// What the runner reports as a fire goes; the API streams them as Server-Sent
/// Events (`event:` is the `type`, `data:` this JSON).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    FireStarted {
        fire: Option<i64>,
        job: String,
        scheduled: DateTime<Utc>,
        trigger: Trigger,
        nodes: Vec<String>,
    },
    /// A piece of a node's output, as soon as Loom has it.
    Output {
        fire: Option<i64>,
        job: String,
        node: String,
        text: String,
    },
    NodeFinished {
        fire: Option<i64>,
        job: String,
        node: String,
        attempt: u32,
        status: NodeStatus,
        error: Option<String>,
        seconds: f64,
        /// What each of the job's resources did on the node (empty for a job without).
        #[serde(default)]
        resources: Vec<ResourceOutcome>,
        /// Another attempt of the node follows (this one failed and `retries` allow
        /// more): the node is not done yet.
        #[serde(default)]
        retrying: bool,
    },
    FireFinished {
        fire: Option<i64>,
        job: String,
        status: FireStatus,
        seconds: f64,
    },
}

impl Event {
    pub fn job(&self) -> &str {
        match self {
            Event::FireStarted { job, .. }
            | Event::Output { job, .. }
            | Event::NodeFinished { job, .. }
            | Event::FireFinished { job, .. } => job,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Event::FireStarted { .. } => "fire-started",
            Event::Output { .. } => "output",
            Event::NodeFinished { .. } => "node-finished",
            Event::FireFinished { .. } => "fire-finished",
        }
    }
}

/// Where events are published and read from; clones share one log.
#[derive(Clone)]
pub struct EventLog {
    shared: Arc<Shared>,
}

struct Shared {
    kept: Mutex<Kept>,
    /// The number of the newest event, for readers to wait on.
    newest: watch::Sender<u64>,
}

struct Kept {
    /// This daemon's first number.
    first: u64,
    /// The number the next event gets.
    next: u64,
    /// Consecutive numbers, oldest first.
    events: VecDeque<(u64, Arc<Event>)>,
    bytes: usize,
    limit_events: usize,
    limit_bytes: usize,
}

/// What a reader gets, in order.
#[derive(Debug, Clone)]
pub enum Item {
    Event(u64, Arc<Event>),
    /// This many events after the reader's position were no longer kept.
    Lagged(u64),
}

impl EventLog {
    /// An empty log whose first number is the current time in microseconds.
    pub fn new() -> EventLog {
        let now = chrono::Utc::now().timestamp_micros().max(1) as u64;
        EventLog::starting_at(now, KEEP_EVENTS, KEEP_BYTES)
    }

    fn starting_at(first: u64, limit_events: usize, limit_bytes: usize) -> EventLog {
        let kept = Kept { first, next: first, events: VecDeque::new(), bytes: 0, limit_events, limit_bytes };
        let (newest, _) = watch::channel(first - 1);
        EventLog { shared: Arc::new(Shared { kept: Mutex::new(kept), newest }) }
    }

    /// Numbers `event` and keeps it, dropping the oldest kept events beyond the limits.
    pub fn publish(&self, event: Event) {
        let id = {
            let mut kept = self.lock();
            let id = kept.next;
            kept.next += 1;
            kept.bytes += size(&event);
            kept.events.push_back((id, Arc::new(event)));
            while kept.events.len() > kept.limit_events || (kept.bytes > kept.limit_bytes && kept.events.len() > 1) {
                if let Some((_, old)) = kept.events.pop_front() {
                    kept.bytes -= size(&old);
                }
            }
            id
        };
        self.shared.newest.send_replace(id);
    }

    /// A reader of the events after number `after`, or of the events from now on.
    ///
    /// A number this daemon never gave (one of a previous daemon) counts as "before
    /// this daemon started": the reader gets every event this daemon still keeps.
    pub fn reader(&self, after: Option<u64>) -> Reader {
        let newest = self.shared.newest.subscribe();
        let position = {
            let kept = self.lock();
            match after {
                Some(seen) if (kept.first - 1..kept.next).contains(&seen) => seen,
                Some(_) => kept.first - 1,
                None => kept.next - 1,
            }
        };
        Reader { log: self.clone(), position, newest }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // The lock is only held for plain bookkeeping that cannot leave it half done.
        self.shared.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for EventLog {
    fn default() -> EventLog {
        EventLog::new()
    }
}

/// What an event costs to keep, roughly: its text plus a fixed overhead.
fn size(event: &Event) -> usize {
    let text = match event {
        Event::Output { text, .. } => text.len(),
        Event::NodeFinished { error, .. } => error.as_ref().map_or(0, String::len),
        _ => 0,
    };
    text + 128
}

/// One reader's position in the log.
pub struct Reader {
    log: EventLog,
    /// The number of the last event handed out (or skipped as lagged).
    position: u64,
    newest: watch::Receiver<u64>,
}

impl Reader {
    /// The items after the reader's position, at most `BATCH`; empty when there is
    /// nothing new yet.
    pub fn take(&mut self) -> Vec<Item> {
        let kept = self.log.lock();
        let oldest = kept.events.front().map_or(kept.next, |(id, _)| *id);
        let mut items = Vec::new();
        if self.position + 1 < oldest {
            items.push(Item::Lagged(oldest - self.position - 1));
            self.position = oldest - 1;
        }
        let start = (self.position + 1 - oldest) as usize;
        for (id, event) in kept.events.iter().skip(start).take(BATCH) {
            items.push(Item::Event(*id, Arc::clone(event)));
            self.position = *id;
        }
        items
    }

    /// Waits for the next items.
    pub async fn next(&mut self) -> Vec<Item> {
        loop {
            // Marked seen before looking, so an event published meanwhile wakes us.
            self.newest.borrow_and_update();
            let items = self.take();
            if !items.is_empty() {
                return items;
            }
            if self.newest.changed().await.is_err() {
                // The log itself holds the sender: this does not happen while we read.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(job: &str, text: &str) -> Event {
        Event::Output { fire: None, job: job.into(), node: "n".into(), text: text.into() }
    }

    fn ids(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|item| match item {
                Item::Event(id, _) => id.to_string(),
                Item::Lagged(missed) => format!("lagged {missed}"),
            })
            .collect()
    }

    #[test]
    fn a_reader_from_now_gets_only_later_events() {
        let log = EventLog::starting_at(100, 10, 1 << 20);
        log.publish(output("a", "x"));
        let mut reader = log.reader(None);
        assert!(reader.take().is_empty());
        log.publish(output("a", "y"));
        assert_eq!(ids(&reader.take()), ["101"]);
        assert!(reader.take().is_empty());
    }

    #[test]
    fn a_reader_after_a_number_gets_what_followed_it() {
        let log = EventLog::starting_at(100, 10, 1 << 20);
        for _ in 0..4 {
            log.publish(output("a", "x"));
        }
        assert_eq!(ids(&log.reader(Some(101)).take()), ["102", "103"]);
        assert!(log.reader(Some(103)).take().is_empty());
    }

    #[test]
    fn a_number_of_another_daemon_reads_everything_kept() {
        let log = EventLog::starting_at(100, 10, 1 << 20);
        log.publish(output("a", "x"));
        log.publish(output("a", "x"));
        // Older than this daemon, and "ahead" of it (a daemon with a clock that was ahead).
        assert_eq!(ids(&log.reader(Some(42)).take()), ["100", "101"]);
        assert_eq!(ids(&log.reader(Some(5_000)).take()), ["100", "101"]);
    }

    #[test]
    fn events_no_longer_kept_are_reported_as_lagged() {
        let log = EventLog::starting_at(100, 3, 1 << 20);
        let mut reader = log.reader(None);
        for _ in 0..5 {
            log.publish(output("a", "x"));
        }
        assert_eq!(ids(&reader.take()), ["lagged 2", "102", "103", "104"]);
        assert_eq!(ids(&log.reader(Some(100)).take()), ["lagged 1", "102", "103", "104"]);
        // A daemon that lost some of its own first events: lagged by those.
        assert_eq!(ids(&log.reader(Some(7)).take()), ["lagged 2", "102", "103", "104"]);
    }

    #[test]
    fn large_output_is_kept_within_the_byte_limit() {
        let log = EventLog::starting_at(1, 100, 1000);
        let mut reader = log.reader(None);
        for _ in 0..4 {
            log.publish(output("a", &"x".repeat(300)));
        }
        assert_eq!(ids(&reader.take()), ["lagged 2", "3", "4"]);
        // One event larger than the limit is still kept (the newest one always is).
        log.publish(output("a", &"x".repeat(5000)));
        assert_eq!(ids(&reader.take()), ["5"]);
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_for_a_new_event() {
        let log = EventLog::starting_at(1, 10, 1 << 20);
        let mut reader = log.reader(None);
        let publisher = log.clone();
        let waiting = tokio::spawn(async move { reader.next().await });
        tokio::task::yield_now().await;
        publisher.publish(output("a", "x"));
        let items = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert_eq!(ids(&items), ["1"]);
    }
}
