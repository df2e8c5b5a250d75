//! `loom check`: every problem in the configuration at once; exit 1 on any error.

use super::args::{Cli, Outcome};
use crate::snapshot::Snapshot;

pub(crate) fn execute(cli: &Cli) -> anyhow::Result<Outcome> {
    let path = cli.config_path()?;
    let (snapshot, diagnostics) = Snapshot::load(&path);
    for diagnostic in &diagnostics {
        errln!("{diagnostic}");
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    let config = &snapshot.config;
    if errors > 0 {
        errln!("{}: {errors} error(s), {warnings} warning(s)", path.display());
        return Ok(Outcome::Failure);
    }
    outln!(
        "{}: ok — {} job(s), {} node(s), {} warning(s)",
        path.display(),
        config.jobs.len(),
        config.nodes.len(),
        warnings
    );
    Ok(Outcome::Success)
}
