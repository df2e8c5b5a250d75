//! The record of what happened: fires, node results, per-job state.

mod lock;
pub mod model;
mod sqlite;
mod state;
mod writer;

pub use lock::StoreLock;
pub use model::{
    FieldChange, FireRecord, FireStatus, NodeRecord, NodeStatus, ResourceOutcome, ResourceStatus, Trigger,
};
pub use sqlite::{FireFilter, FireStart, StoreError};
pub use state::Store;
