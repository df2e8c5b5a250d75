//! Cluster mode: several daemons on one PostgreSQL database (the harness's private
//! server). Every scheduled fire is claimed by exactly one of them, with no gap;
//! catch-up after every daemon was down happens once; enable/disable and manual
//! runs through one daemon act on the cluster; each notification is tried by one
//! member; the password never shows. A fire's nodes spread over the members; a
//! member killed mid-fire has its nodes taken over once their leases expire, and
//! a member whose lease was taken cannot write the node's result; a fire cancelled
//! (or a reload asked for) through any member acts on all of them; a node runs on its own member fire
//! after fire. Three daemons
//! keep 200 per-second jobs exactly once (`LOOM_SOAK_SECS`); a PostgreSQL restarted
//! under two daemons loses no fire; a job defined differently is fired only by the
//! oldest member.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use loom::daemon::ManualClock;

use crate::harness::postgres;
use crate::harness::sshd::{Fleet, key_user};
use crate::harness::webhook::Receiver;
use crate::harness::{Daemon, InProcess, Workspace, http, wait_for};

/// A workspace on database `db` with `jobs` (the same in every member).
fn member(db: &str, jobs: &str) -> Workspace {
    let main = format!("{}delivery: {{attempts: 2, backoff: 1s}}\n", postgres::state_setting(db));
    let ws = Workspace::local(&main);
    ws.write("jobs/a.yaml", jobs);
    ws
}

/// Rows of `sql` on `db`, as text.
fn rows(db: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    postgres::server().query(db, sql).unwrap()
}

fn number(db: &str, sql: &str) -> i64 {
    rows(db, sql)[0][0].as_deref().unwrap().parse().unwrap()
}

/// `count` jobs firing every second (each fire runs, even when a busy machine
/// makes the previous one late), and `hello`, run by hand. `tick0` tells `hook`
/// of each success.
fn ticks(count: usize, hook: &str) -> String {
    let mut jobs = String::from("jobs:\n");
    for n in 0..count {
        jobs.push_str(&format!(
            "  tick{n}:\n    task: loom.system.run\n    args: [\"true\"]\n    schedule: \"* * * * * *\"\n    overlap: allow\n    targets: [local]\n"
        ));
        if n == 0 {
            jobs.push_str(&format!("    notifications:\n      - {{on: [success], webhook: \"{hook}\"}}\n"));
        }
    }
    jobs.push_str("  hello:\n    task: loom.system.run\n    args: [\"echo hello\"]\n    targets: [local]\n");
    jobs
}

#[test]
fn three_daemons_on_one_database_run_every_fire_exactly_once() {
    let db = postgres::database();
    // The receiver fails every attempt: each notification is retried after 1 s,
    // when every member's worker wakes for it at once.
    let receiver = Receiver::start();
    receiver.answer(500);
    let members: Vec<Workspace> = (0..3).map(|_| member(&db, &ticks(3, &receiver.url("/hook")))).collect();
    let daemons: Vec<Daemon> = members.iter().map(Workspace::serve).collect();
    for daemon in &daemons {
        daemon.wait_started();
    }
    let scheduled = |job: &str| number(&db, &format!("SELECT count(*) FROM fires WHERE job = '{job}'"));
    assert!(wait_for(Duration::from_secs(30), || scheduled("tick0") >= 4), "no fires:\n{}", daemons[0].log());

    // A manual run through one member runs once; disabling through another stops
    // the job on every member.
    let api = |n: usize| format!("{}/api/v1", members[n].server());
    let (status, body) = http("POST", &format!("{}/jobs/hello/run", api(1)), None, None);
    assert!(status < 300, "{status} {body}");
    let (status, body) = http("POST", &format!("{}/jobs/tick2/disable", api(2)), None, None);
    assert_eq!(status, 200, "{body}");
    let disabled_at = Utc::now().timestamp_millis();
    // The members see the flag in the store: each says so in its job list.
    for n in 0..3 {
        let disabled = wait_for(Duration::from_secs(10), || {
            let (_, jobs) = http("GET", &format!("{}/jobs", api(n)), None, None);
            jobs.as_array().unwrap().iter().any(|j| j["name"] == "tick2" && j["enabled"] == false)
        });
        assert!(disabled, "member {n} still has tick2 enabled");
    }

    // Every member lists the cluster: host, pid, version, heartbeat.
    let mut pids: Vec<u64> = daemons.iter().map(|d| u64::from(d.pid())).collect();
    pids.sort();
    let (_, status) = http("GET", &format!("{}/status", api(1)), None, None);
    let mut listed: Vec<u64> =
        status["cluster"].as_array().unwrap().iter().map(|m| m["pid"].as_u64().unwrap()).collect();
    listed.sort();
    assert_eq!(listed, pids, "{status:#}");
    assert!(
        status["cluster"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["command"] == "loom serve" && m["heartbeat"].is_string())
    );
    let text = members[0].loom(&["status"]);
    text.assert_code(0);
    assert!(text.stdout.contains("cluster: 3 member(s)"), "{}", text.stdout);
    // The history says which member ran each fire.
    let history = members[2].loom(&["history", "--json", "tick0"]);
    let fires: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let ran_by = fires[0]["daemon"].as_str().unwrap_or_default().to_string();
    assert!(pids.iter().any(|pid| ran_by.contains(&format!("/{pid}/"))), "{ran_by}");

    // One member leaves (and says so: it is listed no more); the others carry
    // on without a gap.
    let mut daemons = daemons.into_iter();
    let (code, log) = daemons.next().unwrap().stop();
    assert_eq!(code, Some(0), "{log}");
    let (_, status) = http("GET", &format!("{}/status", api(1)), None, None);
    assert_eq!(status["cluster"].as_array().unwrap().len(), 2, "{status:#}");
    let left = scheduled("tick0");
    assert!(wait_for(Duration::from_secs(30), || scheduled("tick0") >= left + 3), "the others stopped firing");
    for daemon in daemons {
        let (code, log) = daemon.stop();
        assert_eq!(code, Some(0), "{log}");
        assert!(!log.contains(postgres::server().password()), "{log}");
    }

    // Exactly once: no (job, instant) twice, and each fire ran its node once.
    let twice = rows(
        &db,
        "SELECT job, scheduled FROM fires WHERE trigger IN ('schedule', 'catch-up')
         GROUP BY job, scheduled HAVING count(*) > 1",
    );
    assert!(twice.is_empty(), "fires recorded twice: {twice:?}");
    let not_once = rows(
        &db,
        "SELECT f.id, f.job, f.status, (SELECT count(*) FROM node_results n WHERE n.fire_id = f.id)
         FROM fires f WHERE f.status <> 'ok' OR (SELECT count(*) FROM node_results n WHERE n.fire_id = f.id) <> 1",
    );
    assert!(not_once.is_empty(), "fires not run exactly once: {not_once:?}");
    // No gap: every second from the first fire to the last has its fire.
    for job in ["tick0", "tick1"] {
        let (first, last, count) = {
            let row =
                &rows(&db, &format!("SELECT min(scheduled), max(scheduled), count(*) FROM fires WHERE job = '{job}'"))
                    [0];
            let value = |i: usize| row[i].as_deref().unwrap().parse::<i64>().unwrap();
            (value(0), value(1), value(2))
        };
        assert_eq!(count, (last - first) / 1000 + 1, "{job}: a gap between {first} and {last}");
    }
    // Disabled through one member: no member fired it afterwards (fires are
    // prepared up to a second ahead).
    let after =
        number(&db, &format!("SELECT count(*) FROM fires WHERE job = 'tick2' AND scheduled > {}", disabled_at + 2000));
    assert_eq!(after, 0, "tick2 fired after it was disabled");
    assert_eq!(number(&db, "SELECT count(*) FROM fires WHERE job = 'hello' AND trigger = 'manual'"), 1);
    // Each attempt of a notification was made by one member, once: the delivery
    // workers of all three claim from the same outbox. Unclaimed, the members
    // that woke for the same retry would each send it, and record attempts less
    // than the backoff apart.
    let doubled = rows(
        &db,
        "SELECT a.notification_id, a.at, b.at FROM notification_attempts a JOIN notification_attempts b
           ON a.notification_id = b.notification_id AND a.id < b.id AND b.at - a.at < 900",
    );
    assert!(doubled.is_empty(), "attempts made twice: {doubled:?}");
    let retried = number(&db, "SELECT count(*) FROM notifications WHERE attempts = 2");
    assert!(retried >= 2, "{retried} notification(s) retried");
    let attempts = number(&db, "SELECT count(*) FROM notification_attempts");
    let sent = receiver.requests();
    assert!(sent.len() as i64 >= attempts, "{attempts} attempts recorded, {} requests received", sent.len());
    assert!(sent.iter().all(|r| r.json()["event"] == "success" && r.json()["job"] == "tick0"));
    let claimed_by = number(&db, "SELECT count(DISTINCT daemon) FROM fires");
    eprintln!("fires were claimed by {claimed_by} of the 3 members");
}

#[test]
fn catch_up_after_every_daemon_was_down_runs_once_whoever_starts_first() {
    let db = postgres::database();
    let job = |name: &str, policy: &str| {
        format!(
            "  {name}:\n    task: loom.system.run\n    args: [\"true\"]\n    schedule: \"0 * * * *\"\n    catchup: {policy}\n    targets: [local]\n"
        )
    };
    let jobs = format!("jobs:\n{}{}", job("latest", "latest"), job("all", "all"));
    let members: Vec<Workspace> = (0..2).map(|_| member(&db, &jobs)).collect();
    let top_of_hour: DateTime<Utc> = "2026-01-01T12:00:00Z".parse().unwrap();
    let before = top_of_hour - chrono::Duration::hours(2) + chrono::Duration::minutes(30);
    let clocks: Vec<Arc<ManualClock>> = (0..2).map(|_| Arc::new(ManualClock::new(before))).collect();
    // Both members start (recording the jobs), then the whole cluster is down.
    let running: Vec<InProcess> = members.iter().zip(&clocks).map(|(ws, c)| InProcess::start(ws, c, None)).collect();
    running.into_iter().for_each(InProcess::stop);
    for clock in &clocks {
        clock.set(top_of_hour + chrono::Duration::minutes(30));
    }
    let running: Vec<InProcess> = members.iter().zip(&clocks).map(|(ws, c)| InProcess::start(ws, c, None)).collect();
    let done = wait_for(Duration::from_secs(30), || {
        number(&db, "SELECT count(*) FROM fires WHERE status = 'ok'") >= 3
            && number(&db, "SELECT count(*) FROM fires WHERE status = 'running'") == 0
    });
    running.into_iter().for_each(InProcess::stop);
    let fires = rows(&db, "SELECT job, scheduled, trigger, status FROM fires ORDER BY job, scheduled");
    assert!(done, "{fires:?}");
    let of = |job: &str| -> Vec<i64> {
        fires
            .iter()
            .filter(|f| f[0].as_deref() == Some(job))
            .map(|f| f[1].as_deref().unwrap().parse().unwrap())
            .collect()
    };
    let hour = |h: i64| (top_of_hour + chrono::Duration::hours(h)).timestamp_millis();
    assert!(fires.iter().all(|f| f[2].as_deref() == Some("catch-up") && f[3].as_deref() == Some("ok")), "{fires:?}");
    assert_eq!(of("latest"), vec![hour(0)], "{fires:?}");
    assert_eq!(of("all"), vec![hour(-1), hour(0)], "{fires:?}");
}

#[test]
fn the_password_is_read_from_its_file_and_never_shown() {
    let db = postgres::database();
    let ws = member(&db, &ticks(0, ""));
    let check = ws.loom(&["check"]);
    check.assert_code(0);
    let daemon = ws.serve();
    daemon.wait_started();
    let (_, status) = http("GET", &format!("{}/api/v1/status", ws.server()), None, None);
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    let password = postgres::server().password();
    for shown in [status.to_string(), log.clone(), check.all()] {
        assert!(!shown.contains(password), "{shown}");
    }
    assert!(log.contains(&format!("postgres://{}@127.0.0.1:", postgres::USER)), "{log}");

    // A password in the URL is refused at its line and column; a wrong password
    // file is an error that names the store, not the password.
    let bad = Workspace::local("state: postgres://loom:hunter2@127.0.0.1:5432/loom\n");
    let run = bad.loom(&["check"]);
    run.assert_code(1);
    assert!(run.stderr.contains("loom.yaml:4:8"), "{}", run.stderr);
    assert!(run.stderr.contains("password_file"), "{}", run.stderr);
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    ws.write("wrong-password", "not-it\n");
    let main = ws.read("loom.yaml").replace(
        &postgres::server().password_file.display().to_string(),
        &ws.path("wrong-password").display().to_string(),
    );
    ws.write("loom.yaml", &main);
    let refused = ws.serve();
    let (code, log) = refused.wait();
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("failed to connect to the state store postgres://loom@127.0.0.1"), "{log}");
    assert!(!log.contains("not-it"), "{log}");
}

/// A 100-node fire over three members (sshd nodes, at most 40 running nodes per
/// member, so all three must take a share), whose task blocks on a lock the test
/// holds. In each of three rounds the member that claimed the fire is killed with
/// `kill -9` while all nodes run, and the lock is released: the others take its
/// nodes over once the lease expires and workers are free (within 10 s),
/// retry them as new attempts (or, without retries left, record them failed naming
/// the lost member) and end the fire; each node attempt is recorded once, and
/// nothing stays `running`.
#[test]
fn a_fire_spreads_over_the_members_and_a_killed_member_s_nodes_are_taken_over() {
    const NODES: usize = 100;
    let db = postgres::database();
    let fleet = Fleet::start(4);
    let gate = fleet.path("gate.lock");
    std::fs::write(&gate, "").unwrap();
    let names: Vec<String> = (0..NODES).map(|i| format!("w{i:03}")).collect();
    let nodes: String =
        names.iter().enumerate().map(|(i, name)| fleet.node_yaml_as(&fleet.nodes[i % 4], name, &key_user())).collect();
    let job = |name: &str, retries: u32| {
        format!(
            "  {name}:\n    task: loom.system.run\n    args: [\"flock -s {} true\"]\n    retries: {retries}\n    retry_delay: 10ms\n    targets: [{}]\n",
            gate.display(),
            names.join(", ")
        )
    };
    let main = format!(
        "{}cluster: {{heartbeat: 250ms, lease: 2s}}\nmax_workers: 40\n{}  options: [KexAlgorithms=curve25519-sha256]\n",
        postgres::state_setting(&db),
        fleet.ssh_settings("strict")
    );
    let members: Vec<Workspace> = (0..3)
        .map(|_| {
            let ws = Workspace::new(&main, &nodes);
            ws.write("jobs/a.yaml", &format!("jobs:\n{}{}", job("block", 1), job("once", 0)));
            ws
        })
        .collect();
    members[0].loom(&["check"]).assert_code(0);
    let mut daemons: Vec<Daemon> = members.iter().map(Workspace::serve).collect();
    for daemon in &daemons {
        daemon.wait_started();
    }
    let count = |sql: &str| number(&db, sql);
    for round in 0..3 {
        let victim = round % 3;
        let job = if round == 2 { "once" } else { "block" };
        let lock = std::fs::File::options().read(true).write(true).open(&gate).unwrap();
        lock.lock().unwrap();
        let (status, body) = http("POST", &format!("{}/api/v1/jobs/{job}/run", members[victim].server()), None, None);
        assert!(status < 300, "{status} {body}");
        let fire = body["fire"].as_i64().unwrap();
        let member =
            rows(&db, &format!("SELECT id FROM members WHERE pid = {}", daemons[victim].pid()))[0][0].clone().unwrap();

        // All nodes are claimed, by all three members.
        let spread = wait_for(Duration::from_secs(60), || {
            count(&format!("SELECT count(*) FROM node_work WHERE fire_id = {fire} AND state = 'running'"))
                == NODES as i64
                && count(&format!("SELECT count(DISTINCT owner) FROM node_work WHERE fire_id = {fire}")) == 3
        });
        let owners = rows(&db, &format!("SELECT owner, count(*) FROM node_work WHERE fire_id = {fire} GROUP BY owner"));
        assert!(spread, "round {round}: not spread over the three members: {owners:?}\n{}", daemons[victim].log());
        let lost: Vec<String> =
            rows(&db, &format!("SELECT node FROM node_work WHERE fire_id = {fire} AND owner = '{member}'"))
                .into_iter()
                .map(|r| r[0].clone().unwrap())
                .collect();
        assert!(!lost.is_empty(), "round {round}: {owners:?}");
        // The fire is in the status of every member: which member runs which node.
        let other = (victim + 1) % 3;
        let (_, status) = http("GET", &format!("{}/api/v1/status", members[other].server()), None, None);
        let work = status["work"].as_array().unwrap();
        assert_eq!(work.iter().filter(|w| w["fire_id"] == fire).count(), NODES, "{status:#}");
        assert!(work.iter().any(|w| w["daemon"] == member.as_str()), "{status:#}");
        let text = members[other].loom(&["status"]);
        assert!(
            text.stdout.contains(&format!("fire {fire} {job} node {} attempt 1: run by {member}", lost[0])),
            "{}",
            text.stdout
        );

        daemons[victim].signal("KILL");
        let killed = std::time::Instant::now();
        // The survivors have fewer free workers than the killed member held nodes:
        // they take the rest over as their own nodes end.
        lock.unlock().unwrap();
        let taken = wait_for(Duration::from_secs(10), || {
            count(&format!(
                "SELECT count(*) FROM node_work WHERE fire_id = {fire} AND owner = '{member}' AND state <> 'done'"
            )) == 0
        });
        let log = daemons[other].log();
        assert!(taken, "round {round}: the killed member's nodes were not taken over within 10 s\n{log}");
        eprintln!("round {round}: {} node(s) taken over {:?} after kill -9", lost.len(), killed.elapsed());
        let ended = wait_for(Duration::from_secs(60), || {
            count(&format!("SELECT count(*) FROM fires WHERE id = {fire} AND status <> 'running'")) == 1
        });
        assert!(
            ended,
            "round {round}: the fire did not end: {:?}",
            rows(&db, &format!("SELECT node, owner, state FROM node_work WHERE fire_id = {fire} AND state <> 'done'"))
        );

        // Nothing left running; each node attempt recorded once.
        assert_eq!(count(&format!("SELECT count(*) FROM node_work WHERE fire_id = {fire} AND state <> 'done'")), 0);
        let twice = rows(
            &db,
            &format!(
                "SELECT node, attempt FROM node_results WHERE fire_id = {fire} GROUP BY node, attempt HAVING count(*) > 1"
            ),
        );
        assert!(twice.is_empty(), "round {round}: attempts recorded twice: {twice:?}");
        let results = rows(
            &db,
            &format!(
                "SELECT node, attempt, status, error, daemon FROM node_results WHERE fire_id = {fire} ORDER BY node, attempt"
            ),
        );
        let of = |node: &str| results.iter().filter(|r| r[0].as_deref() == Some(node)).collect::<Vec<_>>();
        for name in &names {
            let attempts = of(name);
            let text = |r: &Vec<Option<String>>, i: usize| r[i].clone().unwrap_or_default();
            if !lost.contains(name) {
                assert_eq!(attempts.len(), 1, "round {round}: {name}: {attempts:?}");
                assert_eq!(text(attempts[0], 2), "ok", "round {round}: {name}: {attempts:?}");
                continue;
            }
            // The lost attempt names the lost member; it is retried elsewhere while retries are left.
            assert!(text(attempts[0], 3).contains(&member) && text(attempts[0], 3).contains("lease"), "{attempts:?}");
            assert_eq!(text(attempts[0], 2), "failed", "{attempts:?}");
            assert_eq!(text(attempts[0], 4), member, "the lost attempt is the lost member's: {attempts:?}");
            if job == "once" {
                assert_eq!(attempts.len(), 1, "round {round}: {name}: {attempts:?}");
                assert!(text(attempts[0], 3).contains("no retries left"), "{attempts:?}");
            } else {
                assert_eq!(attempts.len(), 2, "round {round}: {name}: {attempts:?}");
                assert_eq!(text(attempts[1], 2), "ok", "{attempts:?}");
                assert!(!text(attempts[1], 4).is_empty() && text(attempts[1], 4) != member, "{attempts:?}");
            }
        }
        let expected = if job == "once" { "failed" } else { "ok" };
        assert_eq!(count(&format!("SELECT count(*) FROM fires WHERE id = {fire} AND status = '{expected}'")), 1);
        // The history says which member ran each node.
        let logs = members[other].loom(&["logs", "--json", &fire.to_string()]);
        let detail: serde_json::Value = serde_json::from_str(&logs.stdout).unwrap();
        let ran: Vec<&str> =
            detail["results"].as_array().unwrap().iter().filter_map(|r| r["daemon"].as_str()).collect();
        assert_eq!(ran.len(), results.len(), "{}", logs.stdout);
        let by: std::collections::HashSet<&str> = ran.iter().copied().collect();
        assert!(by.len() >= 2 && by.contains(member.as_str()), "{by:?}");

        // The killed member comes back for the next round.
        daemons[victim] = members[victim].serve();
        daemons[victim].wait_started();
    }
    for daemon in daemons {
        let (code, log) = daemon.stop();
        assert_eq!(code, Some(0), "{log}");
    }
    assert_eq!(count("SELECT count(*) FROM fires WHERE status = 'running'"), 0);
}

/// Two members on `db`, started, with `max_workers` each, the local nodes
/// `names` and one job `job` running `command` on all of them.
fn local_members(
    db: &str,
    names: &[String],
    max_workers: usize,
    job: &str,
    command: &str,
) -> (Vec<Workspace>, Vec<Daemon>) {
    let nodes: String = names.iter().map(|name| format!("{name}:\n  local: true\n")).collect();
    let main = format!("{}max_workers: {max_workers}\n", postgres::state_setting(db));
    let targets = names.join(", ");
    let jobs =
        format!("jobs:\n  {job}:\n    task: loom.system.run\n    args: [\"{command}\"]\n    targets: [{targets}]\n");
    let members: Vec<Workspace> = (0..2)
        .map(|_| {
            let ws = Workspace::new(&main, &nodes);
            ws.write("jobs/a.yaml", &jobs);
            ws
        })
        .collect();
    let daemons: Vec<Daemon> = members.iter().map(Workspace::serve).collect();
    for daemon in &daemons {
        daemon.wait_started();
    }
    (members, daemons)
}

/// `loom cancel` through any member cancels a cluster fire on every member: the
/// nodes the members run stop, the nodes nobody claimed end `interrupted`
/// without running, and the fire ends at once; the member that received the
/// request answers once the fire has ended, though another member claimed it.
/// `loom reload` through one member reloads the others too.
#[test]
fn a_cancel_or_a_reload_through_any_member_acts_on_every_member() {
    let db = postgres::database();
    let names: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
    let (members, daemons) = local_members(&db, &names, 2, "long", "sleep 60");
    let (status, body) = http("POST", &format!("{}/api/v1/jobs/long/run", members[0].server()), None, None);
    assert!(status < 300, "{status} {body}");
    let fire = body["fire"].as_i64().unwrap();
    // Each member runs two nodes (its `max_workers`); six wait for a worker.
    let running = wait_for(Duration::from_secs(30), || {
        number(
            &db,
            &format!("SELECT count(DISTINCT owner) FROM node_work WHERE fire_id = {fire} AND state = 'running'"),
        ) == 2
    });
    assert!(running, "{:?}", rows(&db, &format!("SELECT node, owner, state FROM node_work WHERE fire_id = {fire}")));

    // Cancelled through the member that did not claim the fire, as `loom cancel` does.
    let asked = std::time::Instant::now();
    let cancel = members[1].loom(&["cancel", &fire.to_string(), "--json"]);
    cancel.assert_code(0);
    let answer: serde_json::Value = serde_json::from_str(&cancel.stdout).unwrap();
    assert_eq!(answer["fire"]["status"], "interrupted", "{answer}");
    assert!(asked.elapsed() < Duration::from_secs(30), "the nodes ran on: {:?}", asked.elapsed());
    let results = rows(
        &db,
        &format!("SELECT node, attempt, status, error FROM node_results WHERE fire_id = {fire} ORDER BY node, attempt"),
    );
    assert_eq!(results.len(), names.len(), "each node recorded once: {results:?}");
    assert!(results.iter().all(|r| r[2].as_deref() == Some("interrupted")), "{results:?}");
    let unstarted = results.iter().filter(|r| r[3].as_deref() == Some("cancelled before it started")).count();
    assert_eq!(unstarted, names.len() - 4, "{results:?}");
    assert_eq!(number(&db, &format!("SELECT count(*) FROM node_work WHERE fire_id = {fire} AND state <> 'done'")), 0);
    // Nothing is left to cancel.
    let (status, body) = http("POST", &format!("{}/api/v1/fires/{fire}/cancel", members[0].server()), None, None);
    assert_eq!(status, 404, "{body}");

    // A reload through the first member reloads the second, from its own files.
    let (status, body) = http("POST", &format!("{}/api/v1/reload", members[0].server()), None, None);
    assert!(status < 300, "{status} {body}");
    let reloaded =
        wait_for(Duration::from_secs(30), || daemons[1].log().contains("asked through another cluster member"));
    assert!(reloaded, "{}", daemons[1].log());
    assert!(!daemons[0].log().contains("asked through another cluster member"), "{}", daemons[0].log());
    for daemon in daemons {
        let (code, log) = daemon.stop();
        assert_eq!(code, Some(0), "{log}");
    }
}

/// A node runs on its own member fire after fire (so its SSH master stays warm
/// there), and the nodes spread over the members.
#[test]
fn each_node_runs_on_its_own_member_fire_after_fire() {
    let db = postgres::database();
    let names: Vec<String> = (0..24).map(|i| format!("n{i:02}")).collect();
    let (members, daemons) = local_members(&db, &names, 30, "quick", "true");
    // Both members' heartbeats are in the store before the first fire.
    let live = wait_for(Duration::from_secs(30), || {
        number(&db, "SELECT count(*) FROM members WHERE command = 'loom serve'") == 2
    });
    assert!(live, "{}", daemons[0].log());
    let mut ran = Vec::new();
    for round in 0..3 {
        let through = &members[round % 2];
        let (status, body) = http("POST", &format!("{}/api/v1/jobs/quick/run?wait=true", through.server()), None, None);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["fire"]["status"], "ok", "{body}");
        let fire = body["fire"]["id"].as_i64().unwrap();
        ran.push(rows(&db, &format!("SELECT node, daemon FROM node_results WHERE fire_id = {fire} ORDER BY node")));
    }
    assert_eq!(ran[0].len(), names.len(), "{ran:?}");
    // A member that has not claimed its node 0.5 s into the fire (a loaded
    // machine) lets another take it: a move or two is allowed, no more.
    let moved: usize = ran[1..].iter().map(|fire| fire.iter().zip(&ran[0]).filter(|(a, b)| a != b).count()).sum();
    assert!(moved <= 2, "nodes changed members: {ran:#?}");
    let by: std::collections::HashSet<_> = ran[0].iter().map(|r| r[1].clone()).collect();
    assert_eq!(by.len(), 2, "the nodes did not spread over both members: {ran:?}");
    for daemon in daemons {
        let (code, log) = daemon.stop();
        assert_eq!(code, Some(0), "{log}");
    }
}

/// The fencing token: a member whose lease on a node was taken over cannot write
/// that node's result; the member that took it over can, and whoever records a
/// fire's last node ends the fire.
#[test]
fn a_member_whose_lease_was_taken_cannot_write_the_node_s_result() {
    use loom::cluster_store::{
        FencedRecord, FireStart, FireStatus, NodeRecord, NodeStatus, PostgresTarget, Store, Trigger,
    };
    let db = postgres::database();
    let server = postgres::server();
    let target = PostgresTarget::from_parts(
        Some("127.0.0.1".to_string()),
        Some(server.port),
        Some(postgres::USER.to_string()),
        Some(db.clone()),
        Some(server.password_file.clone()),
    );
    let a = Store::open_postgres(&target, "test a").unwrap();
    let b = Store::open_postgres(&target, "test b").unwrap();
    let (id_a, id_b) = (a.member_id().unwrap(), b.member_id().unwrap());
    assert_ne!(id_a, id_b);
    let nodes = vec!["n1".to_string(), "n2".to_string()];
    let now = Utc::now();
    let (sent, answer) = std::sync::mpsc::channel();
    // Started a second ago: its nodes wait for no member of their own (a and b
    // are no `loom serve`), any member claims them.
    let started = now - chrono::Duration::seconds(1);
    let start =
        FireStart { job: "job", scheduled: now, trigger: Trigger::Manual, nodes: &nodes, started, check: false };
    a.queue_begin_fires(&[start], move |ids| sent.send(ids).unwrap());
    let fire = answer.recv().unwrap().unwrap()[0].unwrap();

    let claimed = a.claim_work(10).unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|c| c.lost.is_none() && c.attempt == 1));
    assert!(b.claim_work(10).unwrap().is_empty(), "b claimed nodes a holds");
    let epoch_a = claimed.iter().find(|c| c.node == "n1").unwrap().epoch;
    // a's lease on n1 expires (as if a had stopped renewing it) and b takes n1 over.
    let mut taken = Vec::new();
    assert!(wait_for(Duration::from_secs(10), || {
        server.execute(&db, "UPDATE node_work SET lease_until = 0 WHERE node = 'n1'").unwrap();
        taken = b.claim_work(10).unwrap();
        !taken.is_empty()
    }));
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].node, "n1");
    assert_eq!(taken[0].lost.as_deref(), Some(id_a.as_str()));
    assert!(taken[0].epoch > epoch_a);

    let result = |node: &str, status: NodeStatus, epoch: i64| FencedRecord {
        record: NodeRecord {
            fire_id: fire,
            node: node.to_string(),
            attempt: 1,
            status,
            exit_code: None,
            started: Utc::now(),
            duration_ms: 1,
            error: None,
            output: String::new(),
            resources: Vec::new(),
            daemon: None,
        },
        epoch,
        last: true,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // a, whose lease was taken, is refused; b, holding it now, is not.
    let refused =
        runtime.block_on(a.record_fenced(fire, vec![result("n1", NodeStatus::Failed, epoch_a)], &[])).unwrap().refused;
    assert_eq!(refused, 1);
    let refused = runtime
        .block_on(b.record_fenced(fire, vec![result("n1", NodeStatus::Ok, taken[0].epoch)], &[]))
        .unwrap()
        .refused;
    assert_eq!(refused, 0);
    assert_eq!(number(&db, &format!("SELECT count(*) FROM fires WHERE id = {fire} AND status = 'running'")), 1);
    // a still holds n2: its result is written, and as the fire's last it ends the fire.
    let epoch_n2 = claimed.iter().find(|c| c.node == "n2").unwrap().epoch;
    let fenced = runtime.block_on(a.record_fenced(fire, vec![result("n2", NodeStatus::Ok, epoch_n2)], &[])).unwrap();
    assert_eq!((fenced.refused, fenced.ended), (0, Some(FireStatus::Ok)));
    let recorded =
        rows(&db, &format!("SELECT node, status, daemon FROM node_results WHERE fire_id = {fire} ORDER BY node"));
    assert_eq!(
        recorded,
        vec![
            vec![Some("n1".to_string()), Some("ok".to_string()), Some(id_b.clone())],
            vec![Some("n2".to_string()), Some("ok".to_string()), Some(id_a.clone())],
        ]
    );
    assert_eq!(rows(&db, &format!("SELECT status FROM fires WHERE id = {fire}"))[0][0].as_deref(), Some("ok"));
    // A late write for a node that is done is refused too.
    let refused = runtime
        .block_on(b.record_fenced(fire, vec![result("n1", NodeStatus::Failed, taken[0].epoch)], &[]))
        .unwrap()
        .refused;
    assert_eq!(refused, 1);
}

/// `cluster: {heartbeat, lease}` is checked like every duration: a lease shorter
/// than two heartbeats and a bad duration are errors at their
/// file:line:col, an unknown key a warning there.
#[test]
fn cluster_timings_are_checked_at_their_place() {
    let ws = Workspace::local("cluster:\n  heartbeat: 2s\n  lease: 3s\n  leese: 1s\n");
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    assert!(run.stderr.contains("loom.yaml:7:10"), "{}", run.stderr);
    assert!(run.stderr.contains("`lease` (3s) must be at least two heartbeats (4s)"), "{}", run.stderr);
    assert!(run.stderr.contains("unknown key `leese`") && run.stderr.contains("loom.yaml:8:3"), "{}", run.stderr);
    let ws = Workspace::local("cluster: {heartbeat: soon, lease: 10s}\n");
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    assert!(run.stderr.contains("loom.yaml:5:22"), "{}", run.stderr);
    assert!(run.stderr.contains("expected a duration for `heartbeat`"), "{}", run.stderr);
    Workspace::local("cluster: {heartbeat: 500ms, lease: 2s}\n").loom(&["check"]).assert_code(0);
}

/// The members tell each other through LISTEN/NOTIFY: with a heartbeat of twenty
/// minutes (so no member looks for work, or for a fire's end, on its own), a fire
/// recorded by one member is still shared by the other (at once, or, if both
/// nodes are the first member's and it has one worker, when the second node has
/// waited its turn: the other looks again after being told), and `loom run`
/// through the first returns once the fire ends, whichever member ran its last node.
#[test]
fn members_hear_of_new_work_and_of_a_fire_s_end_without_waiting_for_a_heartbeat() {
    let db = postgres::database();
    let nodes = "a:\n  local: true\nb:\n  local: true\n";
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate.lock");
    std::fs::write(&gate, "").unwrap();
    let main = format!("{}cluster: {{heartbeat: 20m, lease: 1h}}\nmax_workers: 1\n", postgres::state_setting(&db));
    let jobs = format!(
        "jobs:\n  block:\n    task: loom.system.run\n    args: [\"flock -s {} true\"]\n    targets: [a, b]\n",
        gate.display()
    );
    let members: Vec<Workspace> = (0..2)
        .map(|_| {
            let ws = Workspace::new(&main, nodes);
            ws.write("jobs/a.yaml", &jobs);
            ws
        })
        .collect();
    let daemons: Vec<Daemon> = members.iter().map(Workspace::serve).collect();
    for daemon in &daemons {
        daemon.wait_started();
    }
    let lock = std::fs::File::options().read(true).write(true).open(&gate).unwrap();
    lock.lock().unwrap();
    let config = members[0].config();
    let run = std::thread::spawn(move || crate::harness::loom(&["-c", config.to_str().unwrap(), "run", "block"]));
    let shared = wait_for(Duration::from_secs(30), || {
        number(&db, "SELECT count(DISTINCT owner) FROM node_work WHERE state = 'running'") == 2
    });
    lock.unlock().unwrap();
    let run = run.join().unwrap();
    assert!(shared, "{:?}", rows(&db, "SELECT node, owner, state FROM node_work"));
    run.assert_code(0);
    assert!(run.stdout.contains("2 ok, 0 failed"), "{}", run.stdout);
    for daemon in daemons {
        let (code, log) = daemon.stop();
        assert_eq!(code, Some(0), "{log}");
        assert!(!log.contains("failed to listen"), "{log}");
    }
}

/// `count` jobs of a task that does nothing on the Loom host, firing every second
/// with catch-up `policy` (named `{prefix}{n}`).
fn noop_jobs(prefix: &str, count: usize, policy: &str) -> String {
    let mut jobs = String::new();
    for n in 0..count {
        jobs.push_str(&format!(
            "  {prefix}{n}:\n    task: soak.noop\n    schedule: \"* * * * * *\"\n    overlap: allow\n    catchup: {policy}\n    targets: [local]\n"
        ));
    }
    jobs
}

/// A member on `db` of `server` with `jobs` (a `jobs:` map's entries) and the
/// `soak.noop` task.
fn noop_member(server: &postgres::Server, db: &str, jobs: &str) -> Workspace {
    // The default `max_workers` (10): a member's node work is claimed and
    // recorded 10 at a time, which is enough for 200 jobs every second.
    let ws = Workspace::local(&server.state_setting(db));
    ws.write("tasks/soak.rhai", "fn noop(ssh) { 1 }\n");
    ws.write("jobs/a.yaml", &format!("jobs:\n{jobs}"));
    ws
}

/// Per job: (first instant, last instant, fires, distinct instants) of the
/// scheduled and catch-up fires.
fn spans(server: &postgres::Server, db: &str) -> Vec<(String, i64, i64, i64, i64)> {
    let rows = server
        .query(
            db,
            "SELECT job, min(scheduled), max(scheduled), count(*), count(DISTINCT scheduled) FROM fires
             WHERE trigger IN ('schedule', 'catch-up') GROUP BY job ORDER BY job",
        )
        .unwrap();
    let int = |v: &Option<String>| v.as_deref().unwrap().parse::<i64>().unwrap();
    rows.iter().map(|r| (r[0].clone().unwrap(), int(&r[1]), int(&r[2]), int(&r[3]), int(&r[4]))).collect()
}

/// Fires that did not end `ok` with exactly one node result.
fn not_run_once(server: &postgres::Server, db: &str) -> Vec<Vec<Option<String>>> {
    server
        .query(
            db,
            "SELECT f.id, f.job, f.scheduled, f.status, (SELECT count(*) FROM node_results n WHERE n.fire_id = f.id)
             FROM fires f WHERE f.status <> 'ok' OR (SELECT count(*) FROM node_results n WHERE n.fire_id = f.id) <> 1",
        )
        .unwrap()
}

/// The soak: three daemons, 200 jobs every second, for `LOOM_SOAK_SECS`
/// (15 by default; 300 for the five minutes). Every instant of every job
/// from its first fire to its last is in the history exactly once: per second,
/// the cron instants between the two are every second between them.
#[test]
fn soak_three_daemons_two_hundred_jobs_every_second_exactly_once() {
    let seconds: i64 = std::env::var("LOOM_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let server = postgres::server();
    let db = server.database();
    let jobs = noop_jobs("soak", 200, "latest");
    let members: Vec<Workspace> = (0..3).map(|_| noop_member(server, &db, &jobs)).collect();
    let daemons: Vec<Daemon> = members.iter().map(Workspace::serve).collect();
    for daemon in &daemons {
        daemon.wait_started();
    }
    let fires_of = |job: &str| -> i64 {
        let rows = server.query(&db, &format!("SELECT count(*) FROM fires WHERE job = '{job}'")).unwrap();
        rows[0][0].as_deref().unwrap().parse().unwrap()
    };
    let started = fires_of("soak0");
    let soaked = wait_for(Duration::from_secs(seconds as u64 * 3 + 60), || fires_of("soak199") >= started + seconds);
    assert!(soaked, "the cluster fell behind:\n{}", daemons[0].log());
    for daemon in daemons {
        let (code, log) = daemon.stop();
        assert_eq!(code, Some(0), "{log}");
    }
    let spans = spans(server, &db);
    assert_eq!(spans.len(), 200, "{spans:?}");
    let (mut expected, mut recorded, mut duplicates, mut gaps) = (0, 0, 0, 0);
    for (_, first, last, count, distinct) in &spans {
        let instants = (last - first) / 1000 + 1;
        expected += instants;
        recorded += count;
        duplicates += count - distinct;
        gaps += instants - distinct;
    }
    let unfinished = not_run_once(server, &db);
    eprintln!(
        "soak ({seconds} s, 3 daemons, 200 jobs every second): {expected} fires expected, {recorded} recorded, \
         {duplicates} duplicates, {gaps} gaps, {} not run exactly once",
        unfinished.len()
    );
    assert_eq!((duplicates, gaps), (0, 0), "{spans:?}");
    assert_eq!(recorded, expected);
    assert!(unfinished.is_empty(), "{unfinished:?}");
    assert!(spans.iter().all(|s| (s.2 - s.1) / 1000 + 1 >= seconds), "{spans:?}");
}

/// PostgreSQL stops under two daemons running per-second jobs and starts again
/// some seconds later: the daemons stay up, say which store they lost and found
/// again (never its password), lose no result of a fire they had claimed, and
/// the instants due meanwhile follow each job's `catchup` policy once.
#[test]
fn postgres_restarted_under_the_daemons_loses_no_fire() {
    let server = postgres::private();
    let db = server.database();
    // `slow0` takes 2 s a fire, so fires are running when the database goes.
    let slow = "  slow0:\n    task: loom.system.run\n    args: [\"sleep 2\"]\n    schedule: \"* * * * * *\"\n    overlap: allow\n    catchup: none\n    targets: [local]\n";
    let jobs = format!(
        "{}{}{}{slow}",
        noop_jobs("latest", 1, "latest"),
        noop_jobs("all", 1, "all"),
        noop_jobs("none", 1, "none")
    );
    let members: Vec<Workspace> = (0..2).map(|_| noop_member(&server, &db, &jobs)).collect();
    let daemons: Vec<Daemon> = members.iter().map(Workspace::serve).collect();
    for daemon in &daemons {
        daemon.wait_started();
    }
    let fires = || -> i64 {
        let rows = server.query(&db, "SELECT count(*) FROM fires WHERE job = 'all0'");
        rows.ok().map_or(0, |r| r[0][0].as_deref().unwrap().parse().unwrap())
    };
    assert!(wait_for(Duration::from_secs(30), || fires() >= 3), "{}", daemons[0].log());

    let stopped = Utc::now().timestamp_millis();
    server.stop();
    let down = std::time::Instant::now();
    // Both notice (their next claims fail), and the database stays away a few seconds.
    let noticed = wait_for(Duration::from_secs(30), || {
        daemons.iter().all(|d| d.log().contains("failed to claim fires")) && down.elapsed() >= Duration::from_secs(5)
    });
    assert!(noticed, "{}", daemons[0].log());
    server.start_again();
    // When the server started, as it says: the daemons may find it before
    // `start_again` has seen it answer (seconds, on a loaded machine).
    let started = server.query("postgres", "SELECT (extract(epoch FROM pg_postmaster_start_time()) * 1000)::bigint");
    let back: i64 = started.unwrap()[0][0].as_deref().unwrap().parse().unwrap();
    // Every job fires on schedule again (after the catch-up).
    let resumed = wait_for(Duration::from_secs(60), || {
        let sql = format!(
            "SELECT count(*) FROM fires WHERE trigger = 'schedule' AND scheduled > {back} GROUP BY job HAVING count(*) >= 2"
        );
        server.query(&db, &sql).is_ok_and(|rows| rows.len() == 4)
    });
    assert!(resumed, "not firing again after the restart:\n{}", daemons[0].log());
    let logs: Vec<String> = daemons
        .into_iter()
        .map(|d| {
            let (code, log) = d.stop();
            assert_eq!(code, Some(0), "{log}");
            log
        })
        .collect();
    let store = format!("postgres://{}@127.0.0.1:{}/{db}", postgres::USER, server.port);
    for line in logs[0].lines().filter(|l| l.contains("state store") || l.contains("heartbeat")) {
        eprintln!("{line}");
    }
    for log in &logs {
        assert!(log.contains(&format!("the state store {store} answers again")), "{log}");
        assert!(log.contains(&store), "{log}");
        assert!(!log.contains(server.password()), "{log}");
    }

    let unfinished = not_run_once(&server, &db);
    assert!(unfinished.is_empty(), "results lost: {unfinished:?}");
    // Fires that ran across the stop: their results waited for the database.
    let sql =
        format!("SELECT count(*) FROM fires WHERE job = 'slow0' AND started < {stopped} AND finished > {stopped}");
    let across: i64 = server.query(&db, &sql).unwrap()[0][0].as_deref().unwrap().parse().unwrap();
    assert!(across >= 1, "no fire ran across the stop");
    let spans = spans(&server, &db);
    assert!(spans.iter().all(|(_, _, _, count, distinct)| count == distinct), "{spans:?}");
    let catch_ups = |job: &str| -> Vec<i64> {
        let rows = server
            .query(&db, &format!("SELECT scheduled FROM fires WHERE job = '{job}' AND trigger = 'catch-up'"))
            .unwrap();
        rows.iter().map(|r| r[0].as_deref().unwrap().parse().unwrap()).collect()
    };
    let span = |job: &str| spans.iter().find(|s| s.0 == job).cloned().unwrap();
    // all: every second of the outage was run, late: no gap.
    let (_, first, last, count, _) = span("all0");
    let all_rows = server
        .query(&db, "SELECT scheduled, trigger, daemon, started FROM fires WHERE job = 'all0' ORDER BY scheduled");
    assert_eq!(
        count,
        (last - first) / 1000 + 1,
        "a gap in `all0`: {spans:?}\nstopped {stopped}, back {back}\n{all_rows:?}\n{}",
        logs.iter()
            .flat_map(|l| l.lines().filter(|l| l.contains("all0") || l.contains("store")))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(catch_ups("all0").len() >= 3, "{:?}", catch_ups("all0"));
    // latest: of the instants due while the database was away, only the latest
    // ones run: each daemon catches up on the latest instant when it finds the
    // store again (one of the daemons may get there a second later, when the next
    // instant is due: that one runs as its catch-up, still once). The older
    // instants of the outage never run.
    let (_, first, last, count, _) = span("latest0");
    // A daemon that started just after an instant caught up on that one at its
    // start: not the outage's.
    let caught_up: Vec<i64> = catch_ups("latest0").into_iter().filter(|at| *at >= stopped - 1000).collect();
    let logs_said = || {
        logs.iter()
            .flat_map(|l| l.lines().filter(|l| l.contains("latest0") || l.contains("store") || l.contains("claim")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        !caught_up.is_empty() && caught_up.iter().all(|at| *at >= back - 1500),
        "{caught_up:?}\nstopped {stopped}, back {back}\n{}",
        logs_said()
    );
    assert!((last - first) / 1000 + 1 - count >= 3, "{spans:?}");
    // none: nothing run for the outage.
    let (_, first, last, count, _) = span("none0");
    assert!(catch_ups("none0").is_empty(), "{:?}", catch_ups("none0"));
    assert!((last - first) / 1000 + 1 - count >= 4, "{spans:?}");
}

/// Two daemons define one job differently: the longest-running one's definition
/// is the cluster's, so only it fires the job; the younger one says so in its log
/// (naming the job and the member) and both list the difference in `status`.
/// Once the younger one reloads to the same definition, both fire it again.
#[test]
fn a_job_defined_differently_is_fired_only_by_the_oldest_member() {
    let server = postgres::server();
    let db = server.database();
    let shared = noop_jobs("same", 1, "latest");
    let older = noop_member(server, &db, &format!("{shared}{}", noop_jobs("differs", 1, "latest")));
    let younger = noop_member(server, &db, &format!("{shared}{}", noop_jobs("differs", 1, "none")));
    younger.write("jobs/b.yaml", &format!("jobs:\n{}", noop_jobs("only_young", 1, "latest")));
    let first = older.serve();
    first.wait_started();
    let second = younger.serve();
    second.wait_started();
    let (first_pid, second_pid) = (first.pid(), second.pid());
    let ran_by = |job: &str, pid: u32| -> i64 {
        let sql = format!("SELECT count(*) FROM fires WHERE job = '{job}' AND daemon LIKE '%/{pid}/%'");
        server.query(&db, &sql).unwrap()[0][0].as_deref().unwrap().parse().unwrap()
    };
    let mark = |job: &str| -> i64 {
        let sql = format!("SELECT coalesce(max(scheduled), 0) FROM fires WHERE job = '{job}'");
        server.query(&db, &sql).unwrap()[0][0].as_deref().unwrap().parse().unwrap()
    };
    // Both share `same0`; `differs0` and `only_young0` are left to the older member.
    assert!(wait_for(Duration::from_secs(30), || ran_by("same0", second_pid) >= 2 && ran_by("same0", first_pid) >= 2));
    let said = format!("{}", first_pid);
    assert!(
        wait_for(Duration::from_secs(20), || {
            let log = second.log();
            log.contains("CONFIGURATION DIFFERS") && log.contains(&said) && log.contains("differs0")
        }),
        "{}",
        second.log()
    );
    let log = second.log();
    let line = log.lines().find(|l| l.contains("CONFIGURATION DIFFERS")).unwrap();
    assert!(line.contains("does not fire differs0, only_young0"), "{line}");
    assert_eq!(log.matches("CONFIGURATION DIFFERS").count(), 1, "said more than once per change:\n{log}");
    assert!(wait_for(Duration::from_secs(20), || first.log().contains("CONFIGURATION DIFFERS")), "{}", first.log());
    let (_, status) = http("GET", &format!("{}/api/v1/status", older.server()), None, None);
    let cluster = status["cluster"].as_array().unwrap().clone();
    let of = |pid: u32| cluster.iter().find(|m| m["pid"] == pid).unwrap().clone();
    assert_eq!(of(first_pid)["config_mismatch"], serde_json::json!([]), "{status:#}");
    assert_eq!(of(second_pid)["config_mismatch"], serde_json::json!(["differs0", "only_young0"]), "{status:#}");
    assert_ne!(of(first_pid)["config_hash"], of(second_pid)["config_hash"], "{status:#}");
    let text = younger.loom(&["status"]);
    assert!(text.stdout.contains("not fired here: differs0, only_young0"), "{}", text.stdout);
    assert_eq!(ran_by("differs0", second_pid), 0, "{}", second.log());
    assert_eq!(ran_by("only_young0", second_pid), 0);
    assert_eq!(mark("only_young0"), 0, "a job only the younger member has was fired");
    assert!(ran_by("differs0", first_pid) >= 2);

    // The younger member takes the older one's definition: back to normal.
    younger.write("jobs/a.yaml", &older.read("jobs/a.yaml"));
    std::fs::remove_file(younger.path("jobs/b.yaml")).unwrap();
    let (_, body) = http("POST", &format!("{}/api/v1/reload", younger.server()), None, None);
    assert_eq!(body["ok"], true, "{body}");
    assert!(
        wait_for(Duration::from_secs(20), || second.log().contains("agrees with every cluster member again")),
        "{}",
        second.log()
    );
    assert!(wait_for(Duration::from_secs(30), || ran_by("differs0", second_pid) >= 1), "{}", second.log());
    let (_, status) = http("GET", &format!("{}/api/v1/status", older.server()), None, None);
    let cluster = status["cluster"].as_array().unwrap();
    assert!(cluster.iter().all(|m| m["config_mismatch"] == serde_json::json!([])), "{status:#}");
    assert!(cluster.windows(2).all(|w| w[0]["config_hash"] == w[1]["config_hash"]), "{status:#}");
    for daemon in [first, second] {
        let (code, log) = daemon.stop();
        assert_eq!(code, Some(0), "{log}");
    }
}
