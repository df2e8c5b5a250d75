//! Watching the configuration's files and folders for changes.
//!
//! Watches folders rather than files, so editors that save by writing a new file and
//! renaming it over the old one are seen, and so are new and deleted manifests and
//! task modules. Events are reduced to "something relevant changed"; the daemon
//! debounces them and reloads. It does not parse anything.

use std::path::{Path, PathBuf};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::Config;

/// What to watch for one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Watched {
    /// Single files (main file, node manifest, datafile, resource templates, API
    /// token files), watched through their folder.
    files: Vec<PathBuf>,
    /// Folders watched recursively (jobspath, taskspath).
    trees: Vec<PathBuf>,
}

impl Watched {
    pub(crate) fn of(config: &Config) -> Watched {
        let settings = &config.settings;
        // Templates are read with the configuration; an edited one takes effect by a reload.
        let templates = config
            .jobs
            .values()
            .map(|job| &**job)
            .chain(config.rejected_jobs.iter().map(|job| &**job))
            .flat_map(|job| job.resources.iter().chain(job.handlers.iter().map(|(_, r)| r)))
            .filter_map(|resource| match resource.content.as_ref().map(|c| &c.value) {
                Some(crate::config::Content::Template { path, .. }) => Some(path.clone()),
                _ => None,
            });
        let mut files: Vec<PathBuf> =
            [Some(config.path.clone()), settings.nodesfile.clone(), settings.datafile.clone()]
                .into_iter()
                .flatten()
                .chain(templates)
                .chain(settings.tokens.iter().filter_map(|token| token.file.clone()))
                .map(|p| absolute(&p))
                .collect();
        files.sort();
        files.dedup();
        let trees = settings.jobspath.iter().chain(&settings.taskspath).map(|p| absolute(p)).collect();
        Watched { files, trees }
    }

    fn relevant(&self, path: &Path) -> bool {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') || name.ends_with('~') || name.ends_with(".swp") {
            return false;
        }
        self.files.iter().any(|f| f == path) || self.trees.iter().any(|t| path.starts_with(t))
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A live watcher; dropping it stops watching.
pub(crate) struct Watch {
    _watcher: RecommendedWatcher,
    pub(crate) watched: Watched,
}

/// Starts watching; each relevant change sends `()` on `changes`.
pub(crate) fn start(watched: Watched, changes: mpsc::UnboundedSender<()>) -> notify::Result<Watch> {
    let filter = watched.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        if event.paths.iter().any(|p| filter.relevant(p)) {
            let _ = changes.send(());
        }
    })?;
    let mut folders: Vec<(PathBuf, RecursiveMode)> = Vec::new();
    for file in &watched.files {
        if let Some(parent) = file.parent() {
            folders.push((parent.to_path_buf(), RecursiveMode::NonRecursive));
        }
    }
    for tree in &watched.trees {
        folders.push((tree.clone(), RecursiveMode::Recursive));
    }
    folders.sort();
    folders.dedup();
    for (folder, mode) in folders {
        if folder.is_dir()
            && let Err(err) = watcher.watch(&folder, mode)
        {
            tracing::warn!("failed to watch {} for changes: {err}", folder.display());
        }
    }
    Ok(Watch { _watcher: watcher, watched })
}
