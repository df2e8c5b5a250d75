//! The record of what happened: fires, node results, per-job state.

pub mod model;
mod sqlite;

pub use model::{FireRecord, FireStatus, NodeRecord, NodeStatus, Trigger};
pub use sqlite::{FireFilter, Store, StoreError};
