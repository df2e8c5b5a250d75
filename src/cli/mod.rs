//! The `loom` command line: one file per subcommand.

/// `println!` that never panics (see `output.rs`).
macro_rules! outln {
    () => { $crate::cli::output::stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::output::stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprintln!` that never panics (see `output.rs`).
macro_rules! errln {
    () => { $crate::cli::output::stderr(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::output::stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

mod args;
mod cancel;
mod check;
mod client;
mod completions;
mod history;
mod interrupt;
mod jobs;
mod logs;
mod man;
mod next;
mod nodes;
mod notifications;
pub(crate) mod output;
mod run;
mod serve;
mod status;
mod table;
mod tail;
mod toggle;

pub use args::{Cli, Command, Outcome, init_tracing};
