//! The `loom` command line: one file per subcommand.

mod args;
mod check;
mod history;
mod jobs;
mod logs;
mod nodes;
mod run;
mod serve;
mod table;

pub use args::{Cli, Command, Outcome, init_tracing};
