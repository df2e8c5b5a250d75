//! The daemon: scheduling loop, hot reload, file watching.

mod control;
mod reload;
mod run;
mod watch;

pub use control::{ControlError, DaemonHandle};
pub use run::{DaemonError, run};
