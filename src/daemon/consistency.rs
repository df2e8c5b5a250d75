//! Whether the members of a cluster run the same configuration, and which jobs a
//! daemon fires when they do not.
//!
//! Each daemon reads its own files, so two members may disagree — a rolling
//! deploy, a forgotten host. Each publishes a fingerprint of its snapshot in the
//! store (`ConfigFingerprint`: a hash of the whole, and one per job of what the
//! scheduler and the runner use: schedule, time zone, targets and their nodes,
//! task and its module's text, resources, arguments, policies), and the rule is:
//! the longest-running live `loom serve` member is authoritative; a daemon fires a
//! job only while its definition of the job is the authority's. A job the
//! authority does not have is fired by no one; one only the authority has is
//! fired by it alone. So a deploy that restarts members one by one keeps every
//! job firing (the oldest member is the last restarted), and a reload on the
//! oldest member takes effect at once.
//!
//! Pure: it reads no store and no clock; `run.rs` publishes, reads the members
//! and applies the verdict; `api/status.rs` annotates the members it lists.
//! It does not stop a manual run (`loom run`) of a job that differs.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::config::Job;
use crate::config::resource::Resource;
use crate::snapshot::Snapshot;
use crate::store::{ConfigFingerprint, Member};

/// The command under which daemons register (only they publish a configuration).
const SERVE: &str = "loom serve";

fn digest(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    hash.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// The fingerprint of `snapshot`, as this daemon publishes it.
pub(crate) fn fingerprint(snapshot: &Snapshot) -> ConfigFingerprint {
    let jobs: BTreeMap<String, String> =
        snapshot.config.jobs.iter().map(|(name, job)| (name.clone(), digest(&job_text(job, snapshot)))).collect();
    let mut whole = String::new();
    for (name, hash) in &jobs {
        whole.push_str(&format!("job {name} {hash}\n"));
    }
    for node in snapshot.config.nodes.values() {
        // `Node`'s Debug shows a password as `***`.
        whole.push_str(&format!("node {node:?}\n"));
    }
    ConfigFingerprint { hash: digest(&whole), jobs }
}

/// A job's definition as text, without where it is written (moving a line is no
/// change). Every field is named, so a new one does not compile until decided.
fn job_text(job: &Job, snapshot: &Snapshot) -> String {
    let Job {
        name,
        task,
        args,
        kwargs,
        schedule,
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
        jitter,
        log,
        notifications,
    } = job;
    let schedule = schedule.as_ref().map(|s| format!("{} {}", s.text(), s.zone()));
    let nodes: Vec<String> =
        targets.iter().map(|t| snapshot.config.nodes.get(t).map(|n| format!("{n:?}")).unwrap_or_default()).collect();
    let module = task.as_ref().and_then(|t| snapshot.catalog.source(&t.module)).map(digest);
    let rules: Vec<String> = notifications
        .iter()
        .map(|r| format!("{:?} {:?} {:?} {:?}", r.on, r.target, r.secret_file, r.template))
        .collect();
    let handlers: Vec<String> =
        handlers.iter().map(|(name, resource)| format!("{} {}", name.value, resource_text(resource))).collect();
    let resources: Vec<String> = resources.iter().map(resource_text).collect();
    serde_json::json!({
        "name": name,
        "task": task.as_ref().map(|t| format!("{}.{}", t.module, t.function)),
        "module": module,
        "args": args,
        "kwargs": kwargs,
        "schedule": schedule,
        "targets": targets,
        "nodes": nodes,
        "description": description,
        "resources": resources,
        "handlers": handlers,
        "mode": format!("{mode:?}"),
        "sudo": sudo,
        "catchup": format!("{catchup:?}"),
        "overlap": format!("{overlap:?}"),
        "timeout": format!("{timeout:?}"),
        "node_timeout": format!("{node_timeout:?}"),
        "retries": retries,
        "retry_delay": format!("{retry_delay:?}"),
        "jitter": format!("{jitter:?}"),
        "log": log,
        "notifications": rules,
    })
    .to_string()
}

fn resource_text(resource: &Resource) -> String {
    let Resource { kind, fields, content, when, notify, sensitive, sudo } = resource;
    let fields: Vec<(String, serde_json::Value)> =
        fields.iter().map(|(k, v)| (k.value.clone(), v.value.clone())).collect();
    let notify: Vec<&str> = notify.iter().map(|n| n.value.as_str()).collect();
    format!(
        "{} {:?} {:?} {:?} {:?} {} {:?}",
        kind.value,
        fields,
        content.as_ref().map(|c| &c.value),
        when.as_ref().map(|w| &w.value),
        notify,
        sensitive,
        sudo
    )
}

/// The authoritative member: the longest-running live daemon that published its
/// configuration (`members` come oldest first from the store).
fn authority(members: &[Member]) -> Option<&Member> {
    members.iter().filter(|m| m.command == SERVE && m.fingerprint.is_some()).min_by_key(|m| (m.started, m.id.clone()))
}

/// The jobs whose definitions differ between two fingerprints, including jobs
/// only one of them has.
fn differing(a: &ConfigFingerprint, b: &ConfigFingerprint) -> Vec<String> {
    let names: BTreeSet<&String> = a.jobs.keys().chain(b.jobs.keys()).collect();
    names.into_iter().filter(|n| a.jobs.get(*n) != b.jobs.get(*n)).cloned().collect()
}

/// Fills each daemon's `config_mismatch`: the jobs where it differs from the authority.
pub(crate) fn annotate(members: &mut [Member]) {
    let Some(reference) = authority(members).and_then(|m| m.fingerprint.clone()) else { return };
    for member in members.iter_mut() {
        if let Some(fingerprint) = &member.fingerprint {
            member.config_mismatch = differing(fingerprint, &reference);
        }
    }
}

/// What a daemon makes of its cluster's configurations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Jobs this daemon does not fire: its definition is not the authority's.
    pub(crate) withheld: BTreeSet<String>,
    /// The other members whose configuration differs from this one's:
    /// `host pid P (started …)` and the jobs that differ (none when only nodes
    /// that no job targets differ).
    pub(crate) differences: Vec<(String, Vec<String>)>,
    /// The authoritative member, as `host pid P`, when it is another daemon.
    pub(crate) authority: Option<String>,
}

fn describe(member: &Member) -> String {
    format!("{} pid {} (started {})", member.host, member.pid, member.started.format("%Y-%m-%d %H:%M:%S UTC"))
}

/// The verdict for the daemon registered as `me` running `mine`, among `members`
/// (its own row may carry an older fingerprint: `mine` is what it runs now).
pub(crate) fn verdict(me: &str, mine: &ConfigFingerprint, members: &[Member]) -> Verdict {
    let mut verdict = Verdict::default();
    for member in members.iter().filter(|m| m.id != me && m.command == SERVE) {
        let Some(theirs) = &member.fingerprint else { continue };
        let jobs = differing(mine, theirs);
        // Equal jobs with another hash: nodes that no job targets differ.
        if !jobs.is_empty() || theirs.hash != mine.hash {
            verdict.differences.push((describe(member), jobs));
        }
    }
    if let Some(authority) = authority(members).filter(|a| a.id != me)
        && let Some(reference) = &authority.fingerprint
    {
        // Younger than the authority (or not listed yet: then younger too).
        let started_after =
            members.iter().find(|m| m.id == me).is_none_or(|m| (m.started, &m.id) > (authority.started, &authority.id));
        if started_after && !verdict.differences.is_empty() {
            verdict.withheld = differing(mine, reference).into_iter().filter(|j| mine.jobs.contains_key(j)).collect();
            verdict.authority = Some(describe(authority));
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn member(id: &str, started: i64, jobs: &[(&str, &str)]) -> Member {
        let fingerprint = ConfigFingerprint {
            hash: format!("{jobs:?}"),
            jobs: jobs.iter().map(|(n, h)| (n.to_string(), h.to_string())).collect(),
        };
        Member {
            id: id.to_string(),
            command: SERVE.to_string(),
            host: "h".to_string(),
            pid: started as u32,
            version: "0".to_string(),
            started: Utc.timestamp_opt(started, 0).unwrap(),
            heartbeat: Utc.timestamp_opt(started, 0).unwrap(),
            config_hash: Some(fingerprint.hash.clone()),
            config_mismatch: Vec::new(),
            fingerprint: Some(fingerprint),
        }
    }

    #[test]
    fn the_oldest_member_decides_and_the_others_withhold_what_differs() {
        let old = member("a", 1, &[("same", "1"), ("changed", "old"), ("only_old", "x")]);
        let young = member("b", 2, &[("same", "1"), ("changed", "new"), ("only_young", "y")]);
        let members = vec![old.clone(), young.clone()];
        let mine = young.fingerprint.clone().unwrap();
        let verdict = verdict("b", &mine, &members);
        assert_eq!(verdict.withheld, ["changed", "only_young"].map(String::from).into());
        assert_eq!(verdict.differences.len(), 1);
        assert_eq!(verdict.differences[0].1, ["changed", "only_old", "only_young"]);
        assert!(verdict.authority.is_some());
        // The oldest withholds nothing, but still says that it differs.
        let verdict_old = super::verdict("a", old.fingerprint.as_ref().unwrap(), &members);
        assert!(verdict_old.withheld.is_empty());
        assert_eq!(verdict_old.differences[0].1, ["changed", "only_old", "only_young"]);
        let mut annotated = members;
        annotate(&mut annotated);
        assert!(annotated[0].config_mismatch.is_empty());
        assert_eq!(annotated[1].config_mismatch, ["changed", "only_old", "only_young"]);
    }

    #[test]
    fn agreeing_members_withhold_nothing() {
        let members = vec![member("a", 1, &[("j", "1")]), member("b", 2, &[("j", "1")])];
        let verdict = verdict("b", members[1].fingerprint.as_ref().unwrap(), &members);
        assert_eq!(verdict, Verdict::default());
    }

    #[test]
    fn a_member_not_listed_yet_counts_as_the_youngest() {
        let members = vec![member("a", 1, &[("j", "1")])];
        let mine = ConfigFingerprint { hash: "x".into(), jobs: [("j".to_string(), "2".to_string())].into() };
        assert_eq!(verdict("b", &mine, &members).withheld, ["j".to_string()].into());
    }
}
