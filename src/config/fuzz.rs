//! A property test over the configuration loader: hostile values for every key never
//! panic `loom check` or the daemon's start.
//!
//! Each case writes a main file, a node manifest, a datafile and a job manifest with
//! a random value (or none) for every key they know, loads them the way `loom check`
//! and `loom serve` do (`Snapshot::load`), and plans every loaded job on a timeline
//! with its jitter, and its catch-up, as the daemon does when it starts. It checks
//! that nothing panics (a stack overflow aborts the test binary, so it is found too)
//! and that what loads is within its bounds; what the messages say is tested beside
//! each key.

use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestRunner;

use crate::schedule::{Timeline, catchup};
use crate::snapshot::Snapshot;

/// Values no key should choke on: huge, negative, non-finite, of the wrong type,
/// very long, deeply nested.
fn hostile() -> BoxedStrategy<String> {
    let fixed = select(vec![
        "99999999999999h",
        "99999999999999999999999999999h",
        "18446744073709551615s",
        "584942417355y",
        "1e308",
        "-1e308",
        "4.9e-324",
        "1.7976931348623157e308",
        ".inf",
        "-.inf",
        ".nan",
        "-1",
        "-0.0",
        "0",
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551616",
        "99999999999999999999999999999999999999",
        "-5s",
        "1ns",
        "0s",
        "''",
        "~",
        "true",
        "[]",
        "{}",
        "[1, [2, {a: b}]]",
        "{a: [1, 2], b: {c: d}}",
        "!!binary aGVsbG8=",
        "*undefined",
        "\"\\0\\x01\\u00e9\"",
        "/dev/urandom",
        "/dev/null",
        "/dev",
        ".",
        "missing",
        "~/x",
        "Europe/Berlin",
        "\"* * * * * *\"",
    ])
    .prop_map(str::to_string);
    prop_oneof![
        4 => fixed,
        1 => any::<i64>().prop_map(|i| i.to_string()),
        1 => any::<f64>().prop_map(|f| format!("{f:e}")),
        1 => (1usize..20_000).prop_map(|n| "x".repeat(n)),
        1 => (1usize..80).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        1 => "[a-z0-9 .:/*@~-]{0,40}",
    ]
    .boxed()
}

/// A key and the sane values it takes; `section.key` is a key inside `section:`.
type Key = (&'static str, &'static [&'static str]);

/// Keys that take a duration get hostile durations too, not only hostile values.
const DURATION_KEYS: &[&str] = &[
    "task_max_time",
    "ssh.connect_timeout",
    "ssh.keepalive",
    "ssh.control_persist",
    "timeout",
    "node_timeout",
    "retry_delay",
    "jitter",
];

/// Durations of every size, most of them far beyond any sane bound.
fn hostile_duration() -> BoxedStrategy<String> {
    let units = select(vec!["ns", "us", "ms", "s", "m", "h", "d", "w", "M", "y"]);
    prop_oneof![
        (any::<u64>(), units).prop_map(|(n, unit)| format!("{n}{unit}")),
        (0u64..100_000, select(vec!["s", "m", "h", "d"])).prop_map(|(n, unit)| format!("{n}{unit}")),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{:e}", f.abs())),
    ]
    .boxed()
}

const MAIN_KEYS: &[Key] = &[
    ("nodesfile", &["nodes.yaml"]),
    ("jobspath", &["jobs"]),
    ("datafile", &["data.yaml"]),
    ("min_workers", &["0", "1"]),
    ("max_workers", &["1", "10", "100000"]),
    ("taskspath", &["tasks", "[tasks, other]"]),
    ("timezone", &["UTC", "Europe/Berlin", "America/New_York"]),
    ("task_max_operations", &["1000", "100000000"]),
    ("task_max_time", &["1h", "30days", "1.5"]),
    ("output_limit", &["1024", "1048576", "1073741824"]),
    ("state", &["state.db"]),
    ("catchup", &["none", "latest", "all"]),
    ("catchup_limit", &["1", "100", "100000"]),
    ("listen", &["off", "127.0.0.1:0"]),
    ("tokens", &["[{token: abcdefghijklmnopqrst, role: read}]"]),
    // TLS files are loaded by check as serve loads them (tests/integration/check_all.rs);
    // the files here are never certificates, so only their absence is sane.
    ("tls", &["~"]),
    ("retention.fires", &["10", "0"]),
    ("retention.days", &["90", "36525", "0"]),
    ("ssh.program", &["ssh"]),
    ("ssh.connect_timeout", &["10s", "1h"]),
    ("ssh.keepalive", &["15s", "0", "1d"]),
    ("ssh.host_key_checking", &["accept-new", "strict", "off"]),
    ("ssh.known_hosts", &["known_hosts"]),
    ("ssh.config_file", &["ssh_config"]),
    ("ssh.control_dir", &["/tmp"]),
    ("ssh.control_persist", &["yes", "1h", "30days"]),
    ("ssh.options", &["[KexAlgorithms=curve25519-sha256]"]),
];

const NODE_KEYS: &[Key] = &[
    ("ip", &["127.0.0.1", "db1.example.com"]),
    ("user", &["root"]),
    ("password", &["secret"]),
    ("identity", &["~/.ssh/id_ed25519"]),
    ("port", &["22", "65535"]),
    ("local", &["true"]),
    ("ssh_options", &["[KexAlgorithms=curve25519-sha256]"]),
];

const JOB_KEYS: &[Key] = &[
    ("task", &["loom.system.run"]),
    ("args", &["[true]", "[*cmd]"]),
    ("kwargs", &["~"]),
    (
        "schedule",
        &["\"* * * * * *\"", "\"*/5 * * * *\"", "\"0 0 29 2 *\"", "\"30 2 * * *\"", "\"@yearly\"", "\"@reboot\""],
    ),
    ("timezone", &["UTC", "America/New_York", "Pacific/Kiritimati"]),
    ("targets", &["[local]", "[local, other]", "*hosts"]),
    ("description", &["a job"]),
    ("catchup", &["none", "latest", "all"]),
    ("overlap", &["skip", "queue", "allow"]),
    ("timeout", &["10m", "30days"]),
    ("node_timeout", &["2m", "30days"]),
    ("retries", &["0", "100"]),
    ("retry_delay", &["1s", "1d"]),
    ("jitter", &["30s", "1d", "86400", "23h 59m 59s 999ms"]),
    ("log", &["logs/a.log"]),
];

/// Values for `keys`: all sane, or one hostile value among sane ones (so that what
/// a hostile value is accepted as reaches the daemon's start), or hostile values
/// anywhere; any key may be missing.
fn entries(keys: &'static [Key]) -> BoxedStrategy<Vec<(&'static str, Option<String>)>> {
    let hostile_for = |key: &str| {
        if DURATION_KEYS.contains(&key) { prop_oneof![hostile_duration(), hostile()].boxed() } else { hostile() }
    };
    let sane = |&(key, pool): &Key, hostile_weight: u32| {
        prop_oneof![
            16 => select(pool).prop_map(|v| Some(v.to_string())),
            hostile_weight => hostile_for(key).prop_map(Some),
            1 => Just(None),
        ]
    };
    let one_hostile = (keys.iter().map(|key| sane(key, 0)).collect::<Vec<_>>(), 0..keys.len())
        .prop_flat_map(move |(values, at)| (Just(values), Just(at), hostile_for(keys[at].0)))
        .prop_map(|(mut values, at, value)| {
            values[at] = Some(value);
            values
        });
    let all_sane = keys.iter().map(|key| sane(key, 0)).collect::<Vec<_>>();
    let anywhere = keys.iter().map(|key| sane(key, 4)).collect::<Vec<_>>();
    prop_oneof![3 => all_sane, 3 => one_hostile, 1 => anywhere]
        .prop_map(move |values| keys.iter().map(|(key, _)| *key).zip(values).collect())
        .boxed()
}

/// YAML text of `entries` at `indent`; `section.key` entries go under `section:`.
fn render(indent: &str, entries: &[(&str, Option<String>)]) -> String {
    let mut text = String::new();
    let mut sections: Vec<(&str, String)> = Vec::new();
    for (key, value) in entries {
        let Some(value) = value else { continue };
        match key.split_once('.') {
            None => text.push_str(&format!("{indent}{key}: {value}\n")),
            Some((section, key)) => {
                if !sections.iter().any(|(s, _)| *s == section) {
                    sections.push((section, String::new()));
                }
                let body = &mut sections.iter_mut().find(|(s, _)| *s == section).unwrap().1;
                body.push_str(&format!("{indent}  {key}: {value}\n"));
            }
        }
    }
    for (section, body) in sections {
        text.push_str(&format!("{indent}{section}:\n{body}"));
    }
    text
}

fn main_file() -> impl Strategy<Value = String> {
    entries(MAIN_KEYS).prop_map(|entries| render("", &entries))
}

fn nodes_file() -> impl Strategy<Value = String> {
    entries(NODE_KEYS).prop_map(|entries| format!("local:\n  local: true\nother:\n{}", render("  ", &entries)))
}

fn job_manifest() -> impl Strategy<Value = String> {
    entries(JOB_KEYS).prop_map(|entries| format!("jobs:\n  fuzzed:\n{}", render("    ", &entries)))
}

fn data_file() -> impl Strategy<Value = String> {
    prop_oneof![3 => Just("[local]".to_string()), 1 => hostile()]
        .prop_map(|hosts| format!("cmd: &cmd true\nhosts: &hosts {hosts}\n"))
}

/// What the daemon does with a loaded snapshot when it starts: plan each job's next
/// fire with its jitter, and work out its missed fires.
fn start_daemon_schedule(snapshot: &Snapshot, now: DateTime<Utc>) {
    let mut timeline = Timeline::new();
    for job in snapshot.config.jobs.values() {
        let Some(schedule) = &job.schedule else { continue };
        timeline.plan(&job.name, schedule, now, job.jitter_offset());
        let last = now - chrono::TimeDelta::hours(1);
        let limit = snapshot.config.settings.catchup_limit;
        catchup::missed(schedule, last, now, job.catchup, limit);
        if let Some(due) = timeline.next_instant() {
            timeline.take_due(due);
        }
    }
}

#[test]
fn hostile_configurations_give_diagnostics_never_a_panic() {
    let config = ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = TestRunner::new(config);
    let started = std::cell::Cell::new(0);
    let files = (main_file(), nodes_file(), data_file(), job_manifest());
    let result = runner.run(&files, |(main, nodes, data, jobs)| {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [("loom.yaml", &main), ("nodes.yaml", &nodes), ("data.yaml", &data), ("jobs/a.yaml", &jobs)]
        {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let (snapshot, diagnostics) = Snapshot::load(&dir.path().join("loom.yaml"));
        let settings = &snapshot.config.settings;
        prop_assert!(settings.task_max_time <= Duration::from_secs(30 * 86_400));
        for job in snapshot.config.jobs.values() {
            prop_assert!(job.jitter <= Duration::from_secs(86_400));
        }
        if diagnostics.iter().any(|d| d.is_error()) {
            return Ok(()); // `loom serve` stops here
        }
        started.set(started.get() + 1);
        start_daemon_schedule(&snapshot, Utc::now());
        let far = DateTime::parse_from_rfc3339("2199-12-31T23:59:59Z").unwrap().with_timezone(&Utc);
        start_daemon_schedule(&snapshot, far);
        Ok(())
    });
    if let Err(err) = result {
        panic!("{err}");
    }
    // The generator must reach the daemon's start often, or it proves little there.
    let started = started.get();
    assert!(started >= 256 / 20, "only {started} of 256 configurations were valid");
}
