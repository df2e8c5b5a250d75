//! The daemon: scheduling loop, hot reload, file watching.

mod clock;
pub(crate) mod consistency;
mod control;
mod reload;
mod run;
mod scheduler;
mod systemd;
mod watch;
mod work;

pub use clock::{Clock, ManualClock, SystemClock};
pub use control::{ControlError, DaemonHandle};
pub(crate) use control::{DaemonStatus, JobState, NextFire, ReloadOutcome, RunningFire};
pub(crate) use reload::PendingRestart;
pub use run::{DaemonError, run, run_with_clock};
