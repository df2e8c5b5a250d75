//! The daemon: scheduling loop, hot reload, file watching.

mod reload;
mod run;
mod watch;

pub use run::{DaemonError, run};
