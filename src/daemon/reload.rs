//! What a reload changes: the difference between two snapshots.
//!
//! Pure comparison; the daemon applies it (keeps the next fire of jobs whose
//! schedule is unchanged, replans changed ones, drops removed ones, plans new ones).

use crate::config::Job;
use crate::snapshot::Snapshot;

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

fn same_job(a: &Job, b: &Job) -> bool {
    same_schedule(a, b)
        && a.task == b.task
        && a.args == b.args
        && a.kwargs == b.kwargs
        && a.targets == b.targets
        && a.description == b.description
        && a.catchup == b.catchup
        && a.overlap == b.overlap
        && a.timeout == b.timeout
        && a.node_timeout == b.node_timeout
        && a.retries == b.retries
        && a.retry_delay == b.retry_delay
        && a.log == b.log
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
