//! Jobs: a task, its arguments, a schedule and the nodes it targets.
//!
//! Parsed from the `jobs:` map of each manifest. Checks that need only the manifest
//! and the node list happen here (schedule syntax, known targets); whether the task
//! exists and takes these arguments is checked by `task::catalog`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use super::diagnostics::{Diagnostic, Location};
use super::fields::{Fields, resolve_path};
use super::node::Node;
use super::notify::{NotifyRule, parse_rules};
use super::resource::{self, At, Resource};
use super::settings::Settings;
use super::yaml::{Node as YamlNode, Value};
use crate::schedule::cron::{Schedule, Schedules};

/// The longest `jitter`: a fire starts at most a day after its instant.
pub(crate) const MAX_JITTER: Duration = Duration::from_secs(86_400);
/// The longest `timeout` and `node_timeout`.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 86_400);
/// The longest first `retry_delay` (it doubles after each retry).
pub(crate) const MAX_RETRY_DELAY: Duration = Duration::from_secs(86_400);

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    /// `None`: the job has only `resources:`.
    pub task: Option<TaskPath>,
    pub args: Vec<serde_json::Value>,
    pub kwargs: Option<serde_json::Map<String, serde_json::Value>>,
    /// `None`: the job runs only when asked (`loom run`).
    pub schedule: Option<Schedule>,
    pub targets: Vec<String>,
    pub description: Option<String>,
    /// Where its `task:` value is written (or, without one, its `resources:`).
    pub task_at: Location,
    /// Desired state, applied in order before the task (see `resource`).
    pub resources: Vec<Resource>,
    /// Run once per node at the end when a changed resource notified them.
    pub handlers: Vec<(At<String>, Resource)>,
    /// `check`: every fire only checks the resources (drift detection).
    pub mode: Mode,
    /// Resources run their commands as root unless they say `sudo: false`.
    pub sudo: bool,
    /// Missed fires after downtime: run none, the latest, or all of them.
    pub catchup: Catchup,
    /// A fire due while the previous one still runs.
    pub overlap: Overlap,
    /// The whole fire's time limit.
    pub timeout: Option<Duration>,
    /// Each node's time limit (per attempt).
    pub node_timeout: Option<Duration>,
    /// Extra attempts for failed nodes, `retry_delay` apart, doubling each time.
    pub retries: u32,
    pub retry_delay: Duration,
    /// Fires start this much after their scheduled instant: a fixed offset per job
    /// in `[0, jitter)`, derived from its name, to spread shared schedules.
    pub jitter: Duration,
    /// A file each node's output is appended to.
    pub log: Option<PathBuf>,
    /// The job's own notification rules, then the main file's.
    pub notifications: Vec<Arc<NotifyRule>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Catchup {
    None,
    Latest,
    All,
}

/// Whether a job's fires change nodes or only report what would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Apply,
    Check,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overlap {
    Skip,
    Queue,
    Allow,
}

impl Catchup {
    pub(crate) fn parse(text: &str) -> Option<Catchup> {
        match text {
            "none" => Some(Catchup::None),
            "latest" => Some(Catchup::Latest),
            "all" => Some(Catchup::All),
            _ => None,
        }
    }
}

impl Job {
    /// This job's fixed start offset within `[0, jitter)`.
    pub fn jitter_offset(&self) -> Duration {
        if self.jitter.is_zero() {
            return Duration::ZERO;
        }
        // FNV-1a: stable across runs and builds, unlike the std hasher.
        let mut hash: u64 = 0xcbf29ce484222325;
        for byte in self.name.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x100000001b3);
        }
        let span = self.jitter.as_millis().max(1) as u64;
        Duration::from_millis(hash % span)
    }
}

/// `a.b.c`: function `c` in module `a/b.rhai`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskPath {
    /// `a/b`, the module file without `.rhai`.
    pub module: String,
    pub function: String,
}

impl FromStr for TaskPath {
    type Err = String;

    fn from_str(text: &str) -> Result<TaskPath, String> {
        let parts: Vec<&str> = text.split('.').collect();
        let valid = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if parts.len() < 2 || !parts.iter().all(valid) {
            return Err(format!(
                "`{text}` is not a task path; expected module.function, e.g. loom.system.run (function `run` in loom/system.rhai)"
            ));
        }
        let (function, module) = parts.split_last().expect("at least two parts");
        Ok(TaskPath { module: module.join("/"), function: function.to_string() })
    }
}

impl fmt::Display for TaskPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module.replace('/', "."), self.function)
    }
}

/// A job name as written, and the job if it is valid.
pub(crate) struct Parsed {
    pub(crate) name: String,
    pub(crate) at: Location,
    /// The job, also when it has errors as long as its task path is readable
    /// (`valid` tells), so that its task is checked too.
    pub(crate) job: Option<Job>,
    pub(crate) valid: bool,
}

/// Context for parsing the jobs of a manifest.
pub(crate) struct JobContext<'a> {
    pub(crate) nodes: &'a BTreeMap<String, Arc<Node>>,
    /// False when the node manifest could not be read: targets are not checked.
    pub(crate) nodes_known: bool,
    /// Nodes left out for errors of their own (reported there).
    pub(crate) rejected_nodes: &'a BTreeSet<String>,
    pub(crate) settings: &'a Settings,
    pub(crate) schedules: &'a mut Schedules,
}

/// Parses one entry of a manifest's `jobs:` map. An invalid job still comes back
/// (so that name clashes are found), with its `Job` when its task path is readable
/// (so that its task is checked too) and `valid` false.
pub(crate) fn parse_entry(
    key: &YamlNode,
    value: &YamlNode,
    context: &mut JobContext<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Parsed> {
    let Some(name) = key.scalar_text() else {
        diagnostics.push(key.expected("a job name"));
        return None;
    };
    let (job, valid) = parse_job(&name, value, context, diagnostics);
    Some(Parsed { name, at: key.at.clone(), job, valid })
}

fn parse_job(
    name: &str,
    value: &YamlNode,
    context: &mut JobContext<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> (Option<Job>, bool) {
    let (nodes, settings) = (context.nodes, context.settings);
    let schedules = &mut *context.schedules;
    let default_zone = settings.timezone;
    let mut fields = Fields::new(value, format!("job `{name}`"));
    let mut errors = Vec::new();

    let task_node = fields.node("task");
    let task = task_node.and_then(|n| match n.as_str().map(TaskPath::from_str) {
        Some(Ok(path)) => Some(path),
        Some(Err(why)) => {
            errors.push(Diagnostic::error(why).at(n.at.clone()));
            None
        }
        None => {
            errors.push(n.expected("a task path such as loom.system.run"));
            None
        }
    });
    let resources_node = fields.node("resources");
    let resources = resources_node.map(|n| resource::parse_list(n, &settings.base, &mut errors)).unwrap_or_default();
    let handlers =
        fields.node("handlers").map(|n| resource::parse_handlers(n, &settings.base, &mut errors)).unwrap_or_default();
    resource::check_notify(&resources, &handlers, &mut errors);
    if task_node.is_none() && resources_node.is_none() {
        errors.push(
            Diagnostic::error(format!("job `{name}` has no `task` and no `resources` (what it does)"))
                .at(value.at.clone())
                .help("give it `task: module.function` (e.g. loom.system.run), `resources: [...]`, or both"),
        );
    } else if let (None, Some(n), true) = (task_node, resources_node, resources.is_empty()) {
        errors.push(
            Diagnostic::error(format!("job `{name}` has no `task` and its `resources` are empty: it would do nothing"))
                .at(n.at.clone())
                .help("declare at least one resource, or give the job a `task`"),
        );
    }
    let mode = match fields.node("mode") {
        None => Mode::Apply,
        Some(n) => match n.as_str() {
            Some("apply") => Mode::Apply,
            Some("check") => Mode::Check,
            _ => {
                errors.push(n.expected("apply or check for `mode`"));
                Mode::Apply
            }
        },
    };
    let sudo = fields.boolean("sudo").unwrap_or(false);
    if let (Mode::Check, Some(n), true) = (mode, fields.node("mode"), resources.is_empty()) {
        errors.push(
            Diagnostic::error(format!("job `{name}` has `mode: check` but no resources: it would never do anything"))
                .at(n.at.clone())
                .help("check mode only checks resources (its task does not run)"),
        );
    }

    let args = match fields.node("args") {
        None => Vec::new(),
        Some(YamlNode { value: Value::Seq(items), .. }) => items.iter().map(|item| item.to_json(&mut errors)).collect(),
        // A single value is one argument; the original passed it the same way.
        Some(single) => vec![single.to_json(&mut errors)],
    };

    let kwargs = match fields.node("kwargs") {
        None => None,
        Some(n @ YamlNode { value: Value::Map(_), .. }) => match n.to_json(&mut errors) {
            serde_json::Value::Object(map) => Some(map),
            _ => None,
        },
        Some(other) => {
            errors.push(other.expected("a map for `kwargs`"));
            None
        }
    };

    let zone = fields.time_zone("timezone").unwrap_or(default_zone);

    let schedule_node = fields.node("schedule");
    let schedule = schedule_node.and_then(|n| {
        let Some(text) = n.as_str() else {
            errors.push(n.expected("a cron expression in quotes, e.g. \"*/5 * * * *\""));
            return None;
        };
        match schedules.parse(text, zone) {
            Ok(schedule) => Some(schedule),
            Err(why) => {
                errors.push(
                    Diagnostic::error(format!("bad cron expression `{text}`: {why}"))
                        .at(n.at.clone())
                        .help("fields are [second] minute(0-59) hour(0-23) day-of-month(1-31) month(1-12) day-of-week(0-7), or @hourly, @daily, @weekly, @monthly, @yearly, @reboot"),
                );
                None
            }
        }
    });

    // A pattern that matches no date is almost always a mistake (`0 0 30 2 *`);
    // `never_fires: true` says it is meant, and is itself checked.
    let never_fires_ok = fields.boolean("never_fires").unwrap_or(false);
    if let (Some(schedule), Some(n)) = (&schedule, schedule_node) {
        let text = schedule.text();
        if schedule.never_fires() && !never_fires_ok {
            errors.push(
                Diagnostic::error(format!(
                    "cron expression `{text}` never fires: no date matches its day and month fields"
                ))
                .at(n.at.clone())
                .help("set `never_fires: true` on the job if it is meant to run only by hand"),
            );
        } else if never_fires_ok && !schedule.never_fires() && !schedule.is_reboot() {
            errors.push(
                Diagnostic::error(format!("job `{name}` says `never_fires: true` but `{text}` fires"))
                    .at(n.at.clone())
                    .help("remove `never_fires`, or give the job a schedule that matches no date"),
            );
        }
    }

    let mut targets = Vec::new();
    match fields.required("targets", "a list of node names") {
        None => {}
        Some(n) => {
            let items: Vec<&YamlNode> = match &n.value {
                Value::Seq(items) => items.iter().collect(),
                Value::Str(_) => vec![n],
                _ => {
                    errors.push(n.expected("a list of node names for `targets`"));
                    Vec::new()
                }
            };
            for item in items {
                match item.scalar_text() {
                    Some(target) if context.rejected_nodes.contains(&target) => {}
                    Some(target) if nodes.contains_key(&target) || !context.nodes_known => {
                        if !targets.contains(&target) {
                            targets.push(target);
                        }
                    }
                    Some(target) => errors.push(
                        Diagnostic::error(format!("unknown node `{target}` in targets of job `{name}`"))
                            .at(item.at.clone())
                            .help(known_nodes(nodes)),
                    ),
                    None => errors.push(item.expected("a node name")),
                }
            }
        }
    }

    let description = fields.string("description");
    let catchup = match fields.node("catchup") {
        None => settings.catchup,
        Some(n) => match n.as_str().and_then(Catchup::parse) {
            Some(catchup) => catchup,
            None => {
                errors.push(n.expected("none, latest or all for `catchup`"));
                settings.catchup
            }
        },
    };
    let overlap = match fields.node("overlap") {
        None => Overlap::Skip,
        Some(n) => match n.as_str() {
            Some("skip") => Overlap::Skip,
            Some("queue") => Overlap::Queue,
            Some("allow") => Overlap::Allow,
            _ => {
                errors.push(n.expected("skip, queue or allow for `overlap`"));
                Overlap::Skip
            }
        },
    };
    let timeout = fields.duration("timeout", MAX_TIMEOUT);
    let node_timeout = fields.duration("node_timeout", MAX_TIMEOUT);
    let retries = fields.integer("retries", 0, 100).unwrap_or(0) as u32;
    let retry_delay = fields.duration("retry_delay", MAX_RETRY_DELAY).unwrap_or(Duration::from_secs(1));
    let jitter = fields.duration("jitter", MAX_JITTER).unwrap_or(Duration::ZERO);
    let log = fields.string("log").map(|p| resolve_path(&p, &settings.base));
    let mut notifications: Vec<Arc<NotifyRule>> = match fields.node("notifications") {
        None => Vec::new(),
        Some(n) => {
            parse_rules(n, &format!("job `{name}`"), &settings.base, &mut errors).into_iter().map(Arc::new).collect()
        }
    };
    notifications.extend(settings.notifications.iter().cloned());
    let mut problems = fields.finish();
    problems.extend(errors);
    let failed = problems.iter().any(Diagnostic::is_error);
    diagnostics.extend(problems);
    // A job whose task path is unreadable is left out; one with resources only is kept.
    let task_at = match (&task, task_node, resources_node) {
        (Some(_), Some(n), _) => n.at.clone(),
        (None, None, Some(n)) => n.at.clone(),
        _ => return (None, false),
    };
    let job = Job {
        name: name.to_string(),
        task,
        task_at,
        resources,
        handlers,
        mode,
        sudo,
        args,
        kwargs,
        schedule,
        targets,
        description,
        catchup,
        overlap,
        timeout,
        node_timeout,
        retries,
        retry_delay,
        jitter,
        log,
        notifications,
    };
    (Some(job), !failed)
}

fn known_nodes(nodes: &BTreeMap<String, Arc<Node>>) -> String {
    if nodes.is_empty() {
        return "the node manifest defines no nodes".to_string();
    }
    let names: Vec<&str> = nodes.keys().map(String::as_str).take(20).collect();
    let more = if nodes.len() > names.len() { ", …" } else { "" };
    format!("nodes in the node manifest: {}{more}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_paths_split_into_module_and_function() {
        let path: TaskPath = "loom.system.add_sshfs_mount".parse().unwrap();
        assert_eq!(path.module, "loom/system");
        assert_eq!(path.function, "add_sshfs_mount");
        assert_eq!(path.to_string(), "loom.system.add_sshfs_mount");
        assert!("run".parse::<TaskPath>().is_err());
        assert!("a..b".parse::<TaskPath>().is_err());
        assert!("a/b.c".parse::<TaskPath>().is_err());
    }

    #[test]
    fn jitter_is_a_stable_offset_below_the_bound_that_differs_between_jobs() {
        let config =
            crate::config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/loom.yaml"))).0;
        let mut job = (**config.jobs.values().next().unwrap()).clone();
        assert_eq!(job.jitter_offset(), Duration::ZERO);
        job.jitter = Duration::from_secs(30);
        let offsets: Vec<Duration> = ["a", "b", "c", "backup"]
            .iter()
            .map(|name| {
                job.name = name.to_string();
                job.jitter_offset()
            })
            .collect();
        assert!(offsets.iter().all(|o| *o < Duration::from_secs(30)));
        assert!(offsets.windows(2).any(|w| w[0] != w[1]));
        job.name = "backup".into();
        assert_eq!(job.jitter_offset(), offsets[3]);
    }
}
