//! The daemon's one source of the current time.
//!
//! Production reads the system clock; tests use a `ManualClock` and move time by
//! hand, which wakes a daemon sleeping on it. Only the daemon reads it (what is due,
//! when a fire counts as started, uptime, pruning age): the runner's gates and
//! timestamps still use the system clock, so a manual clock drives the scheduler,
//! it does not fake how long a fire's tasks take.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;

    /// Resolves once the clock reads `at` or later.
    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told to.
pub struct ManualClock(watch::Sender<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> ManualClock {
        ManualClock(watch::Sender::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        self.0.send_replace(at);
    }

    pub fn advance(&self, by: chrono::TimeDelta) {
        self.0.send_modify(|now| *now += by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.borrow()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let mut now = self.0.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; if it is gone, time never comes.
            if now.wait_for(|now| *now >= at).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}
