//! The record of what happened: fires, node results, per-job state.

mod lock;
pub mod model;
mod postgres;
mod sqlite;
mod state;
mod writer;

pub use lock::StoreLock;
pub use model::{FireRecord, FireStatus, Member, NodeRecord, NodeStatus, Trigger};
pub use postgres::PostgresTarget;
pub use sqlite::{FireFilter, FireStart, StoreError};
pub use state::Store;
