//! The record of what happened: fires, node results, per-job state.

pub mod model;
mod sqlite;
mod writer;

pub use model::{FireRecord, FireStatus, NodeRecord, NodeStatus, Trigger};
pub use sqlite::{FireFilter, NewFire, Store, StoreError};
