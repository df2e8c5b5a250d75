//! The `loom` command line: one file per subcommand.

mod args;
mod check;
mod jobs;
mod nodes;
mod run;
mod serve;
mod table;

pub use args::{Cli, Command, Outcome, init_tracing};
