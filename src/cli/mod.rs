//! The `loom` command line: one file per subcommand.

mod args;
mod check;
mod client;
mod completions;
mod history;
mod jobs;
mod logs;
mod nodes;
mod run;
mod serve;
mod status;
mod table;
mod tail;
mod toggle;

pub use args::{Cli, Command, Outcome, init_tracing};
