//! What a reload changes: the difference between two snapshots, and which settings
//! only a restart can apply.
//!
//! Pure comparison; the daemon applies it (keeps the next fire of jobs whose
//! schedule is unchanged, replans changed ones, drops removed ones, plans new ones).

use crate::config::{Job, Settings};
use crate::snapshot::Snapshot;

/// A start-only setting whose configured value waits for a restart to take effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingRestart {
    pub(crate) setting: String,
    pub(crate) in_force: String,
    pub(crate) configured: String,
}

/// The settings that take effect only when the daemon starts (the listener, its
/// TLS, the store, the pruning task), by name, as people read them.
fn start_only(settings: &Settings) -> [(&'static str, String); 4] {
    let tls = match &settings.tls {
        Some((cert, key)) => format!("cert {}, key {}", cert.display(), key.display()),
        None => "none".to_string(),
    };
    let retention = format!(
        "fires {}, age {}",
        settings.retention_fires.map_or("unlimited".to_string(), |n| n.to_string()),
        settings.retention_age.map_or("unlimited".to_string(), |a| humantime::format_duration(a).to_string())
    );
    [
        ("listen", settings.listen.clone().unwrap_or_else(|| "off".to_string())),
        ("tls", tls),
        ("state", settings.postgres.as_ref().map_or_else(|| settings.state.display().to_string(), |pg| pg.describe())),
        ("retention", retention),
    ]
}

/// The start-only settings as the daemon started with them.
pub(crate) struct StartedWith([(&'static str, String); 4]);

impl StartedWith {
    pub(crate) fn of(settings: &Settings) -> StartedWith {
        StartedWith(start_only(settings))
    }

    /// The start-only settings that `configured` sets otherwise than in force: a
    /// restart is pending for them. Empty when a reload brought the old values back.
    pub(crate) fn pending(&self, configured: &Settings) -> Vec<PendingRestart> {
        self.0
            .iter()
            .zip(start_only(configured))
            .filter(|((_, in_force), (_, wanted))| in_force != wanted)
            .map(|((setting, in_force), (_, wanted))| PendingRestart {
                setting: setting.to_string(),
                in_force: in_force.clone(),
                configured: wanted,
            })
            .collect()
    }

    /// Logs what a reload from `before` to `after` changed in what is pending.
    pub(crate) fn log_reload(&self, before: &Settings, after: &Settings) {
        let (was, now) = (self.pending(before), self.pending(after));
        for pending in now.iter().filter(|p| !was.contains(p)) {
            tracing::warn!(
                in_force = %pending.in_force,
                configured = %pending.configured,
                "the `{}` setting changed; it takes effect when the daemon restarts (restart pending)",
                pending.setting
            );
        }
        for restored in was.iter().filter(|w| !now.iter().any(|p| p.setting == w.setting)) {
            tracing::info!(
                in_force = %restored.in_force,
                "the `{}` setting is back to the value in force; no restart is pending for it",
                restored.setting
            );
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub(crate) added: Vec<String>,
    pub(crate) removed: Vec<String>,
    /// Jobs whose definition changed in any way.
    pub(crate) changed: Vec<String>,
    /// Of the changed jobs, those whose next fire must be planned anew.
    pub(crate) rescheduled: Vec<String>,
    /// Nodes added, removed or with other settings.
    pub(crate) nodes: Vec<String>,
    /// Task modules whose text is new or different.
    pub(crate) tasks: Vec<String>,
}

impl Changes {
    pub(crate) fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.nodes.is_empty()
            && self.tasks.is_empty()
    }

    pub(crate) fn summary(&self) -> String {
        format!(
            "jobs +{} -{} ~{}, nodes changed {}, tasks recompiled {}",
            self.added.len(),
            self.removed.len(),
            self.changed.len(),
            self.nodes.len(),
            self.tasks.len()
        )
    }
}

fn same_schedule(a: &Job, b: &Job) -> bool {
    let key = |j: &Job| j.schedule.as_ref().map(|s| (s.text().to_string(), s.zone()));
    key(a) == key(b) && a.jitter == b.jitter
}

/// Whether two definitions of a job differ in anything but where they are written.
/// The pattern names every field, so a field added to `Job` does not compile here
/// until it is compared (or said not to matter).
fn same_job(a: &Job, b: &Job) -> bool {
    let Job {
        name: _,
        task,
        args,
        kwargs,
        schedule: _,
        jitter: _,
        targets,
        description,
        task_at: _,
        resources,
        handlers,
        mode,
        sudo,
        catchup,
        overlap,
        timeout,
        node_timeout,
        retries,
        retry_delay,
        log,
        notifications,
    } = a;
    same_schedule(a, b)
        && *task == b.task
        && *args == b.args
        && *kwargs == b.kwargs
        && *targets == b.targets
        && *description == b.description
        && *catchup == b.catchup
        && *overlap == b.overlap
        && *timeout == b.timeout
        && *node_timeout == b.node_timeout
        && *retries == b.retries
        && *retry_delay == b.retry_delay
        && *log == b.log
        && *notifications == b.notifications
        && *resources == b.resources
        && *handlers == b.handlers
        && *mode == b.mode
        && *sudo == b.sudo
}

pub(crate) fn diff(old: &Snapshot, new: &Snapshot) -> Changes {
    let (old_jobs, new_jobs) = (&old.config.jobs, &new.config.jobs);
    let mut changes = Changes::default();
    for (name, job) in new_jobs {
        match old_jobs.get(name) {
            None => changes.added.push(name.clone()),
            Some(before) => {
                if !same_job(before, job) {
                    changes.changed.push(name.clone());
                }
                if !same_schedule(before, job) {
                    changes.rescheduled.push(name.clone());
                }
            }
        }
    }
    changes.removed = old_jobs.keys().filter(|name| !new_jobs.contains_key(*name)).cloned().collect();
    let (old_nodes, new_nodes) = (&old.config.nodes, &new.config.nodes);
    for name in old_nodes.keys().chain(new_nodes.keys()) {
        if old_nodes.get(name) != new_nodes.get(name) && !changes.nodes.contains(name) {
            changes.nodes.push(name.clone());
        }
    }
    changes.tasks = new.catalog.changed_modules(&old.catalog);
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_listen_is_pending_until_it_is_changed_back() {
        let settings = Settings::defaults(std::path::Path::new("/etc/loom"));
        let started = StartedWith::of(&settings);
        assert!(started.pending(&settings).is_empty());
        let mut moved = settings.clone();
        moved.listen = Some("127.0.0.1:9999".to_string());
        moved.tokens.push(crate::config::ApiToken {
            secret: "x".repeat(16),
            role: crate::config::Role::Read,
            file: None,
        });
        let pending = started.pending(&moved);
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending[0].setting, "listen");
        assert_eq!(pending[0].in_force, "127.0.0.1:8765");
        assert_eq!(pending[0].configured, "127.0.0.1:9999");
        moved.listen = settings.listen.clone();
        assert!(started.pending(&moved).is_empty(), "tokens apply at reload, no restart");
    }
}
