//! The instant a fire's tasks may start.
//!
//! The daemon prepares a fire shortly before it is due — records it, spawns its
//! node tasks, connects, and queues each node's script for the instant on the
//! script threads (`task::scripts`) — so that at the instant itself nothing is left
//! to do but start. A thousand fires due on the same second then start within a few
//! milliseconds of it, instead of one after the other behind their own bookkeeping.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// Not before this instant (or right away).
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    at: Option<(Instant, DateTime<Utc>)>,
}

impl Gate {
    /// A gate that is already open.
    pub fn open() -> Gate {
        Gate { at: None }
    }

    /// A gate opening at the wall-clock instant `at` (open already if it is past).
    pub fn at(at: DateTime<Utc>) -> Gate {
        let now = Utc::now();
        match (at - now).to_std() {
            Ok(ahead) if !ahead.is_zero() => Gate { at: Some((Instant::now() + ahead, at)) },
            _ => Gate::open(),
        }
    }

    /// The instant it opens, unless it is open already.
    pub fn not_before(&self) -> Option<Instant> {
        self.at.map(|(at, _)| at)
    }

    /// Waits until the gate opens.
    pub async fn wait(&self) {
        if let Some((at, _)) = self.at {
            tokio::time::sleep_until(at.into()).await;
        }
    }

    /// When the gate opens, or `now` if it is open already.
    pub fn instant(&self) -> Instant {
        match self.at {
            Some((at, _)) => at.max(Instant::now()),
            None => Instant::now(),
        }
    }

    /// When work that began preparing at `begun` counts as started: not before the gate.
    pub fn started(&self, begun: DateTime<Utc>) -> DateTime<Utc> {
        match self.at {
            Some((_, at)) => at.max(begun),
            None => begun,
        }
    }

    /// `limit` after the gate opens, as a runtime deadline; far away for `None`.
    pub fn deadline(&self, limit: Option<Duration>) -> tokio::time::Instant {
        const FAR: Duration = Duration::from_secs(100 * 365 * 86_400);
        let start = self.instant();
        let limit = limit.unwrap_or(FAR).min(FAR);
        start.checked_add(limit).unwrap_or(start + FAR).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_in_the_past_is_open() {
        let gate = Gate::at(Utc::now() - chrono::TimeDelta::seconds(1));
        assert!(gate.not_before().is_none());
        let now = Utc::now();
        assert_eq!(gate.started(now), now);
    }

    #[tokio::test]
    async fn a_wait_ends_at_the_instant_not_before() {
        let at = Utc::now() + chrono::TimeDelta::milliseconds(30);
        let gate = Gate::at(at);
        assert_eq!(gate.started(at - chrono::TimeDelta::seconds(1)), at);
        gate.wait().await;
        assert!(Utc::now() >= at);
        assert!(gate.deadline(Some(Duration::from_secs(1))) > tokio::time::Instant::now());
    }
}
