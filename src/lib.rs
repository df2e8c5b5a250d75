//! Loom: scheduled tasks for fleets of servers.
//!
//! Data flows one way: `config` loads files into a `Snapshot` (with tasks compiled
//! by `task`); the daemon's `schedule` turns it into fires; the `runner` turns a fire
//! into one task call per node, reaching nodes through `ssh`. `cli` is the command
//! line; `daemon::run` is a library function so tests start it in-process.

pub(crate) mod api;
pub mod cli;
pub(crate) mod config;
pub mod daemon;
pub(crate) mod metrics;
pub(crate) mod notify;
pub(crate) mod resource;
pub(crate) mod runner;
pub(crate) mod schedule;
pub(crate) mod snapshot;
pub mod ssh;
pub(crate) mod store;
pub(crate) mod task;
pub(crate) mod web;

/// What `benches/scripts.rs` measures: Loom's script engine with its limits.
/// What the integration tests reach below the daemon: a cluster store's claims
/// and fenced writes, to prove the lease epoch check without killing processes.
#[doc(hidden)]
pub mod cluster_store {
    pub use crate::store::{
        FencedRecord, FireStart, FireStatus, NodeRecord, NodeStatus, PostgresTarget, Store, Trigger,
    };
}

#[doc(hidden)]
pub mod bench {
    pub use crate::task::engine::{bench_engine, bench_eval};
}
