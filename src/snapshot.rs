//! An immutable, validated view of the whole configuration: config + compiled tasks.
//!
//! Built the same way by `loom check`, `loom run` and the daemon, so they never
//! disagree about what is valid. A fire keeps the snapshot it started with.

use std::path::Path;

use crate::config::{self, Config, Diagnostic};
use crate::task::Catalog;

pub struct Snapshot {
    pub config: Config,
    pub catalog: Catalog,
}

impl Snapshot {
    /// Loads everything; the snapshot holds what is valid, the diagnostics the rest.
    pub fn load(path: &Path) -> (Snapshot, Vec<Diagnostic>) {
        let (mut config, mut diagnostics) = config::load(path);
        let (catalog, found) = Catalog::build(&config);
        // A job whose task does not fit is as invalid as one that does not parse.
        config.jobs.retain(|name, _| catalog.contains(name));
        diagnostics.extend(found);
        config::diagnostics::sort(&mut diagnostics);
        (Snapshot { config, catalog }, diagnostics)
    }
}
