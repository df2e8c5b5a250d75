//! The cluster benchmark: several daemons on one PostgreSQL (the tests' private
//! server, `harness::postgres`) beside one daemon on SQLite, in the same run.
//!
//! Two figures for 1, 2 and 3 daemons: how many fires per second the cluster
//! records and finishes when many per-second jobs (a task that does nothing, on
//! the Loom host) are due, and the wall time of a fire of `true` on 300 real sshd
//! nodes through one member (`loom run` via its API, masters warmed by a first
//! fire). The fan-out figure is the client's wall time from asking to the last
//! node's result, so it stays right whether one daemon runs the nodes (today) or
//! the members share them.

use std::process::Command;
use std::time::{Duration, Instant};

use super::harness::sshd::Fleet;
use super::harness::{self, Daemon, Workspace, postgres, wait_for};
use super::{Bench, Figure, median_figure, timed};

/// Members to measure: 0 stands for one daemon on SQLite
/// (`LOOM_BENCH_CLUSTER_DAEMONS=1,3` measures some of them).
fn setups() -> Vec<usize> {
    std::env::var("LOOM_BENCH_CLUSTER_DAEMONS")
        .ok()
        .map(|list| list.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![0, 1, 2, 3])
}

pub(crate) fn label(daemons: usize) -> String {
    match daemons {
        0 => "SQLite 1 daemon".to_string(),
        1 => "PostgreSQL 1 daemon".to_string(),
        n => format!("PostgreSQL {n} daemons"),
    }
}

/// The workspaces of a setup: one on SQLite, or `daemons` on a fresh database.
fn members(daemons: usize, nodes: &str, main: &str) -> Vec<Workspace> {
    if daemons == 0 {
        return vec![Workspace::new(&format!("state: state.db\n{main}"), nodes)];
    }
    let server = postgres::server();
    let db = server.database();
    (0..daemons).map(|_| Workspace::new(&format!("{}{main}", server.state_setting(&db)), nodes)).collect()
}

/// Fires finished `ok` between `from` and `to` (epoch ms) in the setup's store.
fn finished(ws: &Workspace, from: i64, to: i64) -> Result<i64, String> {
    let sql = format!("SELECT count(*) FROM fires WHERE status = 'ok' AND finished >= {from} AND finished < {to}");
    match ws.postgres_db() {
        Some(db) => {
            postgres::server().query(&db, &sql).map(|rows| rows[0][0].as_deref().unwrap_or("0").parse().unwrap_or(0))
        }
        None => rusqlite::Connection::open(ws.path("state.db"))
            .and_then(|c| c.query_row(&sql, [], |r| r.get(0)))
            .map_err(|e| e.to_string()),
    }
}

impl Bench {
    /// The cluster rows: fires per second with `jobs` per-second jobs, and a fire on
    /// `nodes` sshd nodes.
    pub(crate) fn cluster(&mut self, jobs: usize, nodes: usize, seconds: u64) {
        for daemons in setups() {
            eprintln!("cluster: {} with {jobs} jobs every second…", label(daemons));
            let rate = fire_rate(daemons, jobs, seconds);
            self.row("cluster/s", &format!("fires finished per second: {}", label(daemons)), jobs, rate);
        }
        if nodes == 0 {
            return;
        }
        eprintln!("cluster: fan-out on {nodes} nodes: starting sshd…");
        let fleet = Fleet::start(nodes);
        let names: Vec<String> = fleet.nodes.iter().map(|node| node.name.clone()).collect();
        let settings = fleet.ssh_settings("strict").replace("connect_timeout: 3s", "connect_timeout: 60s");
        for daemons in setups() {
            eprintln!("cluster: fan-out, {}…", label(daemons));
            let main = format!("max_workers: {nodes}\n{settings}");
            let members = members(daemons, &fleet.nodes_yaml(), &main);
            for ws in &members {
                ws.write(
                    "jobs/a.yaml",
                    &format!(
                        "jobs:\n  fanout:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [{}]\n",
                        names.join(", ")
                    ),
                );
            }
            let running: Vec<Daemon> = members.iter().map(Workspace::serve).collect();
            running.iter().for_each(Daemon::wait_started);
            let fire = || {
                timed(Command::new(harness::loom_bin()).args([
                    "-c",
                    members[0].config().to_str().unwrap(),
                    "run",
                    "fanout",
                ]))
            };
            // The first fire opens the masters.
            let figure = fire().and_then(|_| median_figure((0..self.rounds.max(1)).map(|_| fire()).collect()));
            self.row("cluster", &format!("fan-out, loom run via a member: {}", label(daemons)), nodes, figure);
            running.into_iter().for_each(|d| drop(d.stop()));
        }
    }
}

/// Fires finished per second over `seconds`, after a few seconds of warming up.
fn fire_rate(daemons: usize, jobs: usize, seconds: u64) -> Figure {
    let mut yaml = String::from("jobs:\n");
    for n in 0..jobs {
        yaml.push_str(&format!(
            "  tick{n}:\n    task: bench.noop\n    schedule: \"* * * * * *\"\n    overlap: allow\n    targets: [local]\n"
        ));
    }
    let members = members(daemons, "local:\n  local: true\n", &format!("max_workers: {jobs}\n"));
    for ws in &members {
        ws.write("tasks/bench.rhai", "fn noop(ssh) { 1 }\n");
        ws.write("jobs/a.yaml", &yaml);
    }
    let running: Vec<Daemon> = members.iter().map(Workspace::serve).collect();
    running.iter().for_each(Daemon::wait_started);
    let warm = Instant::now();
    wait_for(Duration::from_secs(10), || warm.elapsed() >= Duration::from_secs(3));
    let from = chrono::Utc::now().timestamp_millis();
    let window = Instant::now();
    wait_for(Duration::from_secs(seconds + 5), || window.elapsed() >= Duration::from_secs(seconds));
    let to = chrono::Utc::now().timestamp_millis();
    let count = finished(&members[0], from, to);
    running.into_iter().for_each(|d| drop(d.stop()));
    count.map(|n| n as f64 / ((to - from) as f64 / 1000.0))
}
