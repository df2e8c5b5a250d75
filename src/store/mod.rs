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
    ConfigFingerprint, FieldChange, FireRecord, FireStatus, Member, NodeCell, NodeRecord, NodeStatus,
    NotificationRecord, ResourceOutcome, ResourceStatus, Trigger,
};
pub(crate) use outbox::{Attempt, Notices, Pending};
pub use postgres::PostgresTarget;
pub use sqlite::{FireFilter, FireStart, StoreError};
pub use state::Store;
