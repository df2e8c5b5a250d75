//! Finding and reading every file of a configuration into a `Config`.
//!
//! Reads the main file, the node manifest, the datafile and every `*.yaml` under
//! `jobspath` (recursively; files without a top-level `jobs:` are not manifests).
//! The datafile's text is prepended to each manifest, as the original Loom did, so
//! its anchors can be used there. Every problem becomes a diagnostic; loading goes on
//! so that all of them are reported at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::diagnostics::{self, Diagnostic, Location};
use super::job::{Job, JobContext, Parsed, parse_entry};
use super::node::{Node, parse_nodes};
use super::read;
use super::settings::{Settings, parse_settings};
use super::yaml::{Joined, SourceFile};
use crate::schedule::cron::Schedules;

/// A loaded configuration: what parsed, and everything that did not.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub settings: Settings,
    pub nodes: BTreeMap<String, Arc<Node>>,
    pub jobs: BTreeMap<String, Arc<Job>>,
    /// Jobs with errors whose task could still be checked (so that one `loom check`
    /// shows a bad schedule and a missing task at once); never run.
    pub rejected_jobs: Vec<Arc<Job>>,
    /// Every file that was read (for watching them).
    pub files: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("no configuration file found; looked for {}", .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound(Vec<PathBuf>),
    /// The file named with `-c` or `$LOOM_CONFIG` is not there: an error, never a
    /// fall-back to defaults (such as the store `~/.loom/state.db`).
    #[error("the configuration file {} (named with -c/--config or $LOOM_CONFIG) {}", .0.display(), if .0.exists() { "is not a regular file" } else { "does not exist" })]
    Missing(PathBuf),
}

/// The main file: `explicit` (from `-c` or `$LOOM_CONFIG`), else the first that exists
/// of `./loom.yaml`, `~/.loom.yaml`, `~/.loom/loom.yaml`, `/etc/loom/loom.yaml`.
/// An explicit path must name a file.
pub fn find(explicit: Option<&Path>) -> Result<PathBuf, FindError> {
    if let Some(path) = explicit {
        return if path.is_file() { Ok(path.to_path_buf()) } else { Err(FindError::Missing(path.to_path_buf())) };
    }
    let mut candidates = vec![PathBuf::from("loom.yaml")];
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        candidates.push(home.join(".loom.yaml"));
        candidates.push(home.join(".loom/loom.yaml"));
    }
    candidates.push(PathBuf::from("/etc/loom/loom.yaml"));
    candidates.iter().find(|p| p.is_file()).cloned().ok_or(FindError::NotFound(candidates))
}

pub fn load(path: &Path) -> (Config, Vec<Diagnostic>) {
    // `loom.yaml` has the parent "", and "" joined with "nodes.yaml" is "nodes.yaml".
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut config = Config {
        path: path.to_path_buf(),
        settings: Settings::defaults(&base),
        nodes: BTreeMap::new(),
        jobs: BTreeMap::new(),
        rejected_jobs: Vec::new(),
        files: vec![path.to_path_buf()],
    };
    let mut diagnostics = Vec::new();
    // Without a node manifest every target would be "unknown": one error is enough.
    let mut nodes_known = false;
    // Nodes with errors of their own: jobs that target them are not told they are unknown.
    let mut rejected_nodes = BTreeSet::new();

    let Some(main) = read(path, "the configuration file", None, &mut diagnostics) else {
        return (config, diagnostics);
    };
    let root = match Joined::new(&[main]).parse() {
        Ok(root) => root,
        Err(d) => return (config, vec![d]),
    };
    let (settings, found) = parse_settings(&root, &base);
    diagnostics.extend(found);
    config.settings = settings;
    // A file or folder that cannot be read is shown where the main file names it.
    let named_at = |key: &str| root.get(key).map(|value| value.at.clone());

    if let Some(nodesfile) = config.settings.nodesfile.clone() {
        config.files.push(nodesfile.clone());
        if let Some(file) = read(&nodesfile, "the node manifest (nodesfile)", named_at("nodesfile"), &mut diagnostics) {
            match Joined::new(&[file]).parse() {
                Ok(root) => {
                    let base = nodesfile.parent().unwrap_or(Path::new(""));
                    config.nodes = parse_nodes(&root, base, &mut rejected_nodes, &mut diagnostics);
                    nodes_known = true;
                }
                Err(d) => diagnostics.push(d),
            }
        }
    }

    let datafile = config.settings.datafile.clone().and_then(|path| {
        config.files.push(path.clone());
        read(&path, "the datafile", named_at("datafile"), &mut diagnostics)
    });
    if let Some(data) = &datafile {
        // Checked alone too, so a datafile error is reported once, not per manifest.
        if let Err(d) = Joined::new(std::slice::from_ref(data)).parse() {
            diagnostics.push(d);
        }
    }

    if let Some(jobspath) = config.settings.jobspath.clone() {
        let data_path = config.settings.datafile.as_deref();
        let manifests = manifests_under(&jobspath, named_at("jobspath"), data_path, &mut diagnostics);
        let mut defined: BTreeMap<String, Location> = BTreeMap::new();
        let mut schedules = Schedules::default();
        for manifest in manifests {
            config.files.push(manifest.clone());
            let Some(file) = read(&manifest, "a job manifest", None, &mut diagnostics) else {
                continue;
            };
            let jobs = load_manifest(
                &file,
                datafile.as_ref(),
                &config,
                nodes_known,
                &rejected_nodes,
                &mut schedules,
                &mut diagnostics,
            );
            for parsed in jobs {
                if let Some(first) = defined.get(&parsed.name) {
                    diagnostics.push(
                        Diagnostic::error(format!("job `{}` is defined twice", parsed.name))
                            .at(parsed.at.clone())
                            .help(format!("first defined at {first}; job names must be unique across manifests")),
                    );
                    config.jobs.remove(&parsed.name);
                    continue;
                }
                defined.insert(parsed.name.clone(), parsed.at.clone());
                match parsed.job {
                    Some(job) if parsed.valid => {
                        config.jobs.insert(parsed.name, Arc::new(job));
                    }
                    Some(job) => config.rejected_jobs.push(Arc::new(job)),
                    None => {}
                }
            }
        }
    }
    diagnostics::sort(&mut diagnostics);
    (config, diagnostics)
}

fn load_manifest(
    file: &Arc<SourceFile>,
    datafile: Option<&Arc<SourceFile>>,
    config: &Config,
    nodes_known: bool,
    rejected_nodes: &BTreeSet<String>,
    schedules: &mut Schedules,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Parsed> {
    let parts: Vec<Arc<SourceFile>> = datafile.into_iter().cloned().chain([Arc::clone(file)]).collect();
    let joined = Joined::new(&parts);
    let mut context =
        JobContext { nodes: &config.nodes, nodes_known, rejected_nodes, settings: &config.settings, schedules };
    let mut parsed = Vec::new();
    let mut found = Vec::new();
    // Each job is parsed as soon as it is read: a manifest of thousands of jobs is
    // never held as one tree. Other top-level keys are data (the datafile's anchors).
    let streamed = joined.parse_jobs(&mut |key, value| {
        if let Some(job) = parse_entry(&key, &value, &mut context, &mut found) {
            parsed.push(job);
        }
    });
    match streamed {
        Ok(()) => {
            diagnostics.extend(found);
            parsed
        }
        Err(d) => {
            // A datafile error was reported on its own already.
            let in_datafile = d.location.as_ref().is_some_and(|l| !Arc::ptr_eq(&l.file, file));
            if !in_datafile {
                diagnostics.push(d);
            }
            Vec::new()
        }
    }
}

/// Every `*.yaml`/`*.yml` under `folder`, recursively, in a stable order (bounded:
/// see `read::walk`).
fn manifests_under(
    folder: &Path,
    named_at: Option<Location>,
    datafile: Option<&Path>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<PathBuf> {
    let manifest = |name: &str| name.ends_with(".yaml") || name.ends_with(".yml");
    let walk = match read::walk(folder, &manifest) {
        Ok(walk) => walk,
        Err(err) => {
            let mut d =
                Diagnostic::error(format!("failed to search the jobs folder (jobspath) {}: {err}", folder.display()))
                    .help("point jobspath at a folder that holds only job manifests");
            if let Some(at) = named_at {
                d = d.at(at);
            }
            diagnostics.push(d);
            return Vec::new();
        }
    };
    for (dir, err) in walk.unreadable {
        let mut d = Diagnostic::error(format!("failed to read the jobs folder {}: {err}", dir.display()));
        if let (Some(at), true) = (&named_at, dir == folder) {
            d = d.at(at.clone());
        }
        diagnostics.push(d);
    }
    walk.files.into_iter().filter(|path| datafile.is_none_or(|d| !same_file(d, path))).collect()
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Reads one file; `named_at` is where the main file names it, if it does.
fn read(
    path: &Path,
    what: &str,
    named_at: Option<Location>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Arc<SourceFile>> {
    match SourceFile::read(path) {
        Ok(file) => Some(file),
        Err(err) => {
            let d = Diagnostic::error(format!("failed to read {what} {}: {err}", path.display()));
            diagnostics.push(match named_at {
                Some(at) => d.at(at),
                None => d,
            });
            None
        }
    }
}
