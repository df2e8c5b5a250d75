//! `loom man --out DIR` (hidden): writes the manual pages the package installs.
//!
//! `loom(1)` and one `loom-<command>(1)` per subcommand are generated from the
//! clap definitions by clap_mangen, so they cannot drift from `--help`;
//! `loom.yaml(5)` is written by hand (`dist/man/loom.yaml.5`, from the README's
//! configuration reference) and carried in the binary. Generating on demand keeps
//! this work out of every build (no build script).

use std::path::PathBuf;

use anyhow::Context;
use clap::CommandFactory;

use super::args::{Cli, Outcome};

/// The configuration's page, as written by hand.
const LOOM_YAML_5: &str = include_str!("../../dist/man/loom.yaml.5");

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder to write the pages to (made if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub(crate) fn execute(args: &Args) -> anyhow::Result<Outcome> {
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("failed to create {}", out.display()))?;
    clap_mangen::generate_to(Cli::command(), out)
        .with_context(|| format!("failed to write the manual pages to {}", out.display()))?;
    let config = out.join("loom.yaml.5");
    std::fs::write(&config, LOOM_YAML_5).with_context(|| format!("failed to write {}", config.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(out)?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("loom") && (name.ends_with(".1") || name.ends_with(".5")))
        .collect();
    pages.sort();
    for page in pages {
        outln!("{}", out.join(page).display());
    }
    Ok(Outcome::Success)
}
