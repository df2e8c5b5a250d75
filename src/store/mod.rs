//! The record of what happened: fires, node results, per-job state.

mod lock;
pub mod model;
pub(crate) mod outbox;
mod postgres;
mod sqlite;
mod state;
mod writer;

pub use lock::StoreLock;
pub use model::{
    Claim, ConfigFingerprint, FencedRecord, FieldChange, FireRecord, FireStatus, Member, NodeCell, NodeRecord,
    NodeStatus, NodeWork, NotificationRecord, ResourceOutcome, ResourceStatus, Trigger,
};
pub(crate) use outbox::{Attempt, Notices, Pending};
pub(crate) use postgres::AFFINITY;
pub use postgres::{ClusterTiming, PostgresTarget};
pub use sqlite::{FireFilter, FireStart, StoreError};
pub use state::Store;
