//! Notifications: telling someone what a fire's outcome was, through webhooks and
//! tasks on the Loom host.
//!
//! A fire's end enqueues one row per matching rule in the store's outbox, in the
//! same write that records the end (`store/`); the delivery worker (`worker.rs`)
//! sends what is due, records each attempt, and retries with backoff. Which events
//! an outcome produces is `event.rs`'s decision; what the body says is `body.rs`'s.

pub mod body;
pub mod event;
pub(crate) mod worker;
