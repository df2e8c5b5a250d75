//! `loom check`: every problem in the configuration at once; exit 1 on any error.

use serde::Serialize;

use super::args::{Cli, Outcome};
use crate::config::{Diagnostic, Severity};
use crate::snapshot::Snapshot;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the outcome as JSON (a `CheckReport`) instead of text
    #[arg(long)]
    pub json: bool,
}

/// What `loom check --json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct CheckReport {
    /// The main configuration file checked.
    config: String,
    /// No errors (warnings allowed): the daemon would start with this configuration.
    ok: bool,
    errors: usize,
    warnings: usize,
    jobs: usize,
    nodes: usize,
    /// Every problem, in the order `loom check` prints them.
    diagnostics: Vec<Problem>,
}

/// One diagnostic; `file`, `line` and `column` (from 1) are null when it has no place.
#[derive(Debug, Serialize)]
pub(crate) struct Problem {
    severity: &'static str,
    message: String,
    file: Option<String>,
    line: Option<usize>,
    column: Option<usize>,
    help: Option<String>,
}

impl From<&Diagnostic> for Problem {
    fn from(diagnostic: &Diagnostic) -> Problem {
        let at = diagnostic.location.as_ref();
        Problem {
            severity: match diagnostic.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            },
            message: diagnostic.message.clone(),
            file: at.map(|at| at.file.path.display().to_string()),
            line: at.map(|at| at.line),
            column: at.map(|at| at.column),
            help: diagnostic.help.clone(),
        }
    }
}

pub(crate) fn execute(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let path = cli.config_path()?;
    let (snapshot, diagnostics) = Snapshot::load(&path);
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    let config = &snapshot.config;
    let outcome = if errors > 0 { Outcome::Failure } else { Outcome::Success };
    if args.json {
        let report = CheckReport {
            config: path.display().to_string(),
            ok: errors == 0,
            errors,
            warnings,
            jobs: config.jobs.len(),
            nodes: config.nodes.len(),
            diagnostics: diagnostics.iter().map(Problem::from).collect(),
        };
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(outcome);
    }
    for diagnostic in &diagnostics {
        errln!("{diagnostic}");
    }
    if errors > 0 {
        errln!("{}: {errors} error(s), {warnings} warning(s)", path.display());
        return Ok(outcome);
    }
    outln!(
        "{}: ok — {} job(s), {} node(s), {} warning(s)",
        path.display(),
        config.jobs.len(),
        config.nodes.len(),
        warnings
    );
    Ok(outcome)
}
