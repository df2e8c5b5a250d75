//! The command line: arguments, dispatch, and the one place exit codes are decided.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use super::{
    cancel, check, completions, history, jobs, logs, man, next, nodes, notifications, run, serve, status, tail, toggle,
};
use crate::snapshot::Snapshot;

#[derive(Debug, Parser)]
#[command(name = "loom", version, about = "Scheduled tasks for fleets of servers, over SSH", long_about = None)]
pub struct Cli {
    /// Main configuration file [default: first of ./loom.yaml, ~/.loom.yaml,
    /// ~/.loom/loom.yaml, /etc/loom/loom.yaml]
    #[arg(short, long, global = true, env = "LOOM_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Talk to the daemon at this URL (e.g. https://loom.example:8765) instead of the
    /// local configuration
    #[arg(long, global = true, env = "LOOM_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// API token for the daemon
    #[arg(long, global = true, env = "LOOM_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// File holding the API token
    #[arg(long, global = true, env = "LOOM_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground: fire jobs on their schedules until SIGINT/SIGTERM
    Serve,
    /// Validate the configuration, manifests, schedules and tasks; report every problem
    Check(check::Args),
    /// Apply a job now and show each node's result (exit 1 if any node failed)
    Run(run::Args),
    /// List jobs with their schedule and next fire
    Jobs(jobs::Args),
    /// When a job, or a cron expression given with --schedule, fires next
    Next(next::Args),
    /// List nodes and how Loom reaches them (secrets are never shown)
    Nodes(nodes::Args),
    /// Past fires, newest first, from the state store
    History(history::Args),
    /// One fire's node results with their output
    Logs(logs::Args),
    /// Notifications (webhooks, notifier tasks), newest first, with every delivery attempt
    Notifications(notifications::Args),
    /// Let a job fire on its schedule again (kept across restarts and reloads)
    Enable(toggle::Args),
    /// Stop a job from firing on its schedule (kept across restarts and reloads)
    Disable(toggle::Args),
    /// The running daemon: uptime, running fires, next fires, configuration errors
    Status(status::Args),
    /// Follow live output of fires as they run
    Tail(tail::Args),
    /// Cancel a running fire on the daemon (recorded `interrupted`)
    Cancel(cancel::Args),
    /// Make the running daemon reload its configuration now
    Reload(status::ReloadArgs),
    /// Print a shell completion script (completes job and node names too)
    Completions(completions::Args),
    /// Write the manual pages (loom(1), loom-COMMAND(1), loom.yaml(5)) to a folder
    #[command(hide = true)]
    Man(man::Args),
}

/// How a command ended; `exit_code` is the only mapping to process exit codes.
#[derive(Debug)]
pub enum Outcome {
    Success,
    /// The command ran and found failures (invalid config, failed nodes).
    Failure,
    /// The command could not do its work.
    Error(anyhow::Error),
    /// Stopped by SIGINT or SIGTERM before its work was done (exit 130).
    Interrupted,
}

impl Outcome {
    pub fn exit_code(self) -> ExitCode {
        match self {
            Outcome::Success => ExitCode::SUCCESS,
            Outcome::Failure => ExitCode::from(1),
            Outcome::Interrupted => ExitCode::from(130),
            Outcome::Error(err) => {
                errln!("error: {err:#}");
                ExitCode::from(1)
            }
        }
    }
}

impl From<anyhow::Result<Outcome>> for Outcome {
    fn from(result: anyhow::Result<Outcome>) -> Outcome {
        result.unwrap_or_else(Outcome::Error)
    }
}

impl Cli {
    pub async fn execute(self) -> Outcome {
        crate::ssh::raise_open_file_limit();
        let result = match &self.command {
            Command::Serve => serve::execute(&self).await,
            Command::Check(args) => check::execute(&self, args),
            Command::Run(args) => run::execute(&self, args).await,
            Command::Jobs(args) => jobs::execute(&self, args).await,
            Command::Next(args) => next::execute(&self, args).await,
            Command::Nodes(args) => nodes::execute(&self, args).await,
            Command::History(args) => history::execute(&self, args).await,
            Command::Logs(args) => logs::execute(&self, args).await,
            Command::Notifications(args) => notifications::execute(&self, args).await,
            Command::Enable(args) => toggle::execute(&self, args, true).await,
            Command::Disable(args) => toggle::execute(&self, args, false).await,
            Command::Status(args) => status::execute(&self, args).await,
            Command::Tail(args) => tail::execute(&self, args).await,
            Command::Cancel(args) => cancel::execute(&self, args).await,
            Command::Reload(args) => status::reload(&self, args).await,
            Command::Completions(args) => completions::execute(args),
            Command::Man(args) => man::execute(args),
        };
        result.into()
    }

    pub(crate) fn config_path(&self) -> anyhow::Result<PathBuf> {
        Ok(crate::config::find(self.config.as_deref())?)
    }
}

/// Logs go to stderr; `LOOM_LOG` takes a tracing filter such as `debug` or
/// `loom=debug,loom::output=trace`. The daemon logs at `info` by default, the other
/// commands only warnings.
pub fn init_tracing(cli: &Cli) {
    let default = match cli.command {
        Command::Serve => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOOM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal who did not ask for none; a log line
    // that cannot be written (a closed stderr) is dropped, never a panic.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match std::env::var("LOOM_LOG_FORMAT").as_deref() {
        // One JSON object per line: the event's fields at the top level, the
        // enclosing span's (a node's `job`, `node`, `attempt`, `fire`) under `span`.
        Ok("json") => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .log_internal_errors(false)
            .init(),
        other => {
            builder.with_ansi(colour).log_internal_errors(false).init();
            if let Ok(other) = other.map(str::to_string)
                && other != "text"
            {
                tracing::warn!("LOOM_LOG_FORMAT={other:?} is not json or text; logging text");
            }
        }
    }
}

/// Loads a snapshot for a command that reads the configuration, printing problems.
/// Returns the snapshot and the number of errors.
pub(crate) fn load_reporting(path: &Path, show_errors: bool) -> (Snapshot, usize) {
    let (snapshot, diagnostics) = Snapshot::load(path);
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    for diagnostic in &diagnostics {
        if show_errors || !diagnostic.is_error() {
            errln!("{diagnostic}");
        }
    }
    (snapshot, errors)
}
