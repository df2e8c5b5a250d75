//! Run tracking against the real daemon and binary: catch-up after downtime,
//! interrupted fires after `kill -9`, overlap policies, timeouts, retries, per-job
//! logs, retention, and the history/logs commands.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use loom::daemon::ManualClock;
use serde_json::Value;

use crate::harness::{InProcess, Workspace, move_clock, pass_seconds, wait_for};

fn history(ws: &Workspace, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["history", "--json", "--limit", "1000"];
    all.extend_from_slice(args);
    let run = ws.loom(&all);
    run.assert_code(0);
    serde_json::from_str::<Value>(&run.stdout).unwrap().as_array().unwrap().clone()
}

fn logs(ws: &Workspace, fire: i64) -> Value {
    let run = ws.loom(&["logs", &fire.to_string(), "--json"]);
    run.assert_code(0);
    serde_json::from_str(&run.stdout).unwrap()
}

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

fn start_and_wait(ws: &Workspace) -> crate::harness::Daemon {
    let daemon = ws.serve();
    daemon.wait_started();
    daemon
}

/// Runs the daemon in-process on `clock` until `done` holds, then stops it.
fn serve_in_process(ws: &Workspace, clock: &Arc<ManualClock>, done: impl FnMut() -> bool) {
    let daemon = InProcess::start(ws, clock, None);
    let ready = wait_for(Duration::from_secs(20), done);
    daemon.stop();
    assert!(ready, "{:#?}", history(ws, &[]));
}

#[test]
fn catch_up_runs_none_the_latest_or_all_missed_fires_once() {
    let ws = Workspace::local("listen: off\n");
    let job = |name: &str, policy: &str| {
        format!(
            "  {name}:\n    task: loom.system.run\n    args: [\"true\"]\n    schedule: \"0 * * * *\"\n    catchup: {policy}\n    targets: [local]\n"
        )
    };
    ws.write("jobs/a.yaml", &format!("jobs:\n{}{}{}", job("none", "none"), job("latest", "latest"), job("all", "all")));
    // First start records the jobs; then the daemon is down for two hours.
    let top_of_hour: DateTime<Utc> = "2026-01-01T12:00:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(top_of_hour - chrono::Duration::hours(2) + chrono::Duration::minutes(30)));
    serve_in_process(&ws, &clock, || true);
    clock.set(top_of_hour + chrono::Duration::minutes(30));
    // The first missed fire of `all` is already on record (say, from a daemon that died
    // right after recording it): it must not run again, and must not hold up the next.
    let earlier = (top_of_hour - chrono::Duration::hours(1)).timestamp_millis();
    ws.store_sql(&format!(
        "INSERT INTO fires (job, scheduled, trigger, status, started, finished, nodes) VALUES ('all', {earlier}, 'catch-up', 'ok', {earlier}, {earlier}, '[]')"
    ));

    for _ in 0..2 {
        // Started twice: the second start must not run the same fires again.
        serve_in_process(&ws, &clock, || {
            let fires = history(&ws, &[]);
            fires.len() >= 3 && fires.iter().all(|f| f["status"] != "running")
        });
    }
    let fires = history(&ws, &[]);
    let of = |job: &str| -> Vec<DateTime<Utc>> {
        let mut at: Vec<_> = fires.iter().filter(|f| f["job"] == job).map(|f| time(&f["scheduled"])).collect();
        at.sort();
        at
    };
    assert!(fires.iter().all(|f| f["trigger"] == "catch-up" && f["status"] == "ok"), "{fires:#?}");
    assert_eq!(of("none"), Vec::<DateTime<Utc>>::new());
    assert_eq!(of("latest"), vec![top_of_hour]);
    assert_eq!(of("all"), vec![top_of_hour - chrono::Duration::hours(1), top_of_hour]);
}

#[test]
fn a_stalled_host_applies_the_catch_up_policy_instead_of_a_burst() {
    let ws = Workspace::local("");
    let job = |name: &str, policy: &str| {
        format!(
            "  {name}:\n    task: loom.system.run\n    args: [\"true\"]\n    schedule: \"* * * * * *\"\n    catchup: {policy}\n    targets: [local]\n"
        )
    };
    ws.write("jobs/a.yaml", &format!("jobs:\n{}{}", job("none", "none"), job("latest", "latest")));
    let clock = Arc::new(ManualClock::new("2026-01-01T10:00:00.500Z".parse().unwrap()));
    let daemon = InProcess::start(&ws, &clock, None);
    pass_seconds(&ws, &clock, None, "latest", 1);
    // The host stops for five minutes; its clock then jumps.
    move_clock(&ws, &clock, None, "latest", chrono::TimeDelta::minutes(5));
    assert!(wait_for(Duration::from_secs(20), || history(&ws, &[]).iter().all(|f| f["status"] != "running")));
    daemon.stop();
    let fires = history(&ws, &[]);
    let mut seen: Vec<(String, DateTime<Utc>, String)> = fires
        .iter()
        .map(|f| {
            (f["job"].as_str().unwrap().to_string(), time(&f["scheduled"]), f["trigger"].as_str().unwrap().to_string())
        })
        .collect();
    seen.sort();
    let at = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
    assert_eq!(
        seen,
        [
            ("latest".to_string(), at("2026-01-01T10:00:01Z"), "schedule".to_string()),
            ("latest".to_string(), at("2026-01-01T10:05:01Z"), "catch-up".to_string()),
            ("none".to_string(), at("2026-01-01T10:00:01Z"), "schedule".to_string()),
        ]
    );
}

#[test]
fn kill_9_mid_fire_leaves_an_interrupted_fire_and_loses_nothing() {
    let ws = Workspace::new("", "a:\n  local: true\nb:\n  local: true\n");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  quick:\n    task: loom.system.run\n    args: [\"echo earlier\"]\n    targets: [a]\n  \
         slow:\n    task: site.t.slow\n    schedule: \"@reboot\"\n    targets: [a, b]\n",
    );
    ws.write(
        "tasks/site/t.rhai",
        &format!(
            "fn slow(ssh) {{ if ssh.node == \"a\" {{ ssh.run(\"echo fast\"); }} else {{ ssh.run(\"echo $$ > {}; exec sleep 27.5\"); }} }}\n",
            ws.path("slow.pid").display()
        ),
    );
    ws.loom(&["run", "quick"]).assert_code(0);
    let daemon = start_and_wait(&ws);
    assert!(wait_for(Duration::from_secs(20), || {
        history(&ws, &["slow"]).first().is_some_and(|f| f["status"] == "running" && f["ok"] == 1)
    }));
    daemon.signal("KILL");
    let (_, _) = daemon.wait();
    // Only this test's command: the killed daemon left it running.
    let _ = std::process::Command::new("kill").arg(ws.read("slow.pid").trim()).status();

    let (code, log) = start_and_wait(&ws).stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("marked interrupted"), "{log}");
    let slow = history(&ws, &["slow"]);
    let interrupted = slow.iter().find(|f| f["status"] == "interrupted").expect("an interrupted fire");
    let detail = logs(&ws, interrupted["id"].as_i64().unwrap());
    let results = detail["results"].as_array().unwrap();
    let status = |node: &str| results.iter().find(|r| r["node"] == node).unwrap()["status"].clone();
    assert_eq!(status("a"), "ok");
    assert_eq!(status("b"), "interrupted");
    let quick = history(&ws, &["quick"]);
    assert_eq!(quick.len(), 1);
    assert_eq!(quick[0]["status"], "ok");
    if ws.postgres_db().is_none() {
        let db = rusqlite::Connection::open(ws.path("state.db")).unwrap();
        let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
    }
}

/// A job every second whose task holds until the test lets it go (a shared flock on
/// `gate`, which the test holds exclusively), on the daemon in-process, its clock
/// moved by hand: 10:00:01 starts and holds, 02 and 03 come while it runs, then the
/// test lets go (and keeps the lock to hold later fires again).
fn held_job(overlap: &str) -> (Workspace, std::fs::File, Arc<ManualClock>, InProcess) {
    let ws = Workspace::local("");
    let gate = ws.path("gate");
    std::fs::write(&gate, "").unwrap();
    ws.write(
        "jobs/a.yaml",
        &format!(
            "jobs:\n  held:\n    task: loom.system.run\n    args: [\"flock -s {} true\"]\n    schedule: \"* * * * * *\"\n    overlap: {overlap}\n    targets: [local]\n",
            gate.display()
        ),
    );
    let lock = std::fs::File::options().read(true).write(true).open(&gate).unwrap();
    lock.lock().unwrap();
    let clock = Arc::new(ManualClock::new("2026-01-01T10:00:00.500Z".parse().unwrap()));
    let daemon = InProcess::start(&ws, &clock, None);
    pass_seconds(&ws, &clock, None, "held", 3);
    lock.unlock().unwrap();
    (ws, lock, clock, daemon)
}

/// How many fires ended ok.
fn oks(ws: &Workspace) -> usize {
    history(ws, &[]).iter().filter(|f| f["status"] == "ok").count()
}

/// `(scheduled second, status, fire id)` of every fire, by instant.
fn fires_by_instant(ws: &Workspace) -> Vec<(u32, String, i64)> {
    use chrono::Timelike;
    let mut fires: Vec<(u32, String, i64)> = history(ws, &[])
        .iter()
        .map(|f| (time(&f["scheduled"]).second(), f["status"].as_str().unwrap().to_string(), f["id"].as_i64().unwrap()))
        .collect();
    fires.sort_by_key(|f| f.0);
    fires
}

/// When the fires that ran had their node's task running, by the wall clock (the
/// daemon's clock is the test's), in the order the fires are given.
fn task_spans(ws: &Workspace, fires: &[(u32, String, i64)]) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    fires
        .iter()
        .filter(|f| f.1 == "ok")
        .map(|f| {
            let result = logs(ws, f.2)["results"][0].clone();
            let started = time(&result["started"]);
            (started, started + chrono::TimeDelta::milliseconds(result["duration_ms"].as_i64().unwrap()))
        })
        .collect()
}

/// The tasks of the fires that ran, in the order of their instants, never overlapped.
fn assert_no_overlap(ws: &Workspace, fires: &[(u32, String, i64)]) {
    for pair in task_spans(ws, fires).windows(2) {
        assert!(pair[1].0 >= pair[0].1, "fires overlapped or ran out of order: {pair:?}");
    }
}

#[test]
fn overlap_skip_records_skipped_fires() {
    let (ws, _lock, clock, daemon) = held_job("skip");
    // 02 and 03 came while 01 ran.
    assert!(wait_for(Duration::from_secs(30), || oks(&ws) == 1));
    // Once it is done, the next instant runs.
    pass_seconds(&ws, &clock, None, "held", 1);
    assert!(wait_for(Duration::from_secs(30), || oks(&ws) == 2));
    daemon.stop();
    let fires = fires_by_instant(&ws);
    let seen: Vec<(u32, &str)> = fires.iter().map(|f| (f.0, f.1.as_str())).collect();
    assert_eq!(seen, [(1, "ok"), (2, "skipped"), (3, "skipped"), (4, "ok")]);
    let skipped = history(&ws, &[]).into_iter().find(|f| f["status"] == "skipped").unwrap();
    assert!(skipped["note"].as_str().unwrap().contains("previous fire was still running"), "{skipped}");
    assert_no_overlap(&ws, &fires);
}

#[test]
fn overlap_queue_runs_the_waiting_fires_in_order() {
    let (ws, lock, clock, daemon) = held_job("queue");
    // 02 and 03 waited their turn behind 01, then run one after another.
    assert!(wait_for(Duration::from_secs(30), || oks(&ws) == 3));
    // One after another, in the order of their instants.
    let fires = fires_by_instant(&ws);
    assert_eq!(fires.iter().map(|f| f.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert_no_overlap(&ws, &fires);

    // Fires still waiting when the daemon stops are on record, not lost: 04 holds,
    // 05 waits; the stop records 05 and then lets 04 end.
    lock.lock().unwrap();
    pass_seconds(&ws, &clock, None, "held", 2);
    daemon.stop_while(|| {
        let recorded = wait_for(Duration::from_secs(30), || {
            history(&ws, &[])
                .iter()
                .any(|f| f["status"] == "skipped" && f["note"].as_str().unwrap().contains("daemon stopped"))
        });
        lock.unlock().unwrap();
        assert!(recorded, "{:#?}", history(&ws, &[]));
    });
    let seen: Vec<(u32, String)> = fires_by_instant(&ws).into_iter().map(|f| (f.0, f.1)).collect();
    let want = [(1, "ok"), (2, "ok"), (3, "ok"), (4, "ok"), (5, "skipped")].map(|(s, st)| (s, st.to_string()));
    assert_eq!(seen, want);
}

#[test]
fn timeouts_and_retries_are_recorded_with_attempt_numbers() {
    let ws = Workspace::new("", "a:\n  local: true\nb:\n  local: true\n");
    let counter = ws.path("counter");
    ws.write(
        "tasks/site/t.rhai",
        &format!(
            "fn flaky(ssh) {{ ssh.run(\"echo x >> {c}; test $(wc -l < {c}) -ge 2\"); }}\nfn fail(ssh) {{ ssh.run(\"echo nope >&2; exit 3\"); }}\n",
            c = counter.display()
        ),
    );
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  \
         hang:\n    task: loom.system.run\n    args: [\"sleep 30\"]\n    node_timeout: 1s\n    targets: [a]\n  \
         whole:\n    task: loom.system.run\n    args: [\"sleep 30\"]\n    timeout: 1s\n    targets: [a, b]\n  \
         fail:\n    task: site.t.fail\n    retries: 2\n    retry_delay: 100ms\n    targets: [a]\n  \
         flaky:\n    task: site.t.flaky\n    retries: 3\n    retry_delay: 100ms\n    targets: [a]\n",
    );
    let run = ws.loom(&["run", "hang"]);
    run.assert_code(1);
    assert!(run.stdout.contains("TIMED-OUT a"), "{}", run.stdout);
    assert!(run.stdout.contains("stopped after node_timeout (1s)"), "{}", run.stdout);
    let run = ws.loom(&["run", "whole"]);
    run.assert_code(1);
    assert!(run.stdout.contains("the fire's timeout (1s) was reached"), "{}", run.stdout);
    ws.loom(&["run", "fail"]).assert_code(1);
    let run = ws.loom(&["run", "flaky"]);
    run.assert_code(0);
    assert!(run.stdout.contains("ok      a  ") && run.stdout.contains("(attempt 2)"), "{}", run.stdout);

    let status_of = |job: &str| history(&ws, &[job])[0].clone();
    assert_eq!(status_of("hang")["status"], "failed");
    assert_eq!(status_of("whole")["status"], "timed-out");
    let hang = logs(&ws, status_of("hang")["id"].as_i64().unwrap());
    assert_eq!(hang["results"][0]["status"], "timed-out");
    let fail = logs(&ws, status_of("fail")["id"].as_i64().unwrap());
    let attempts: Vec<(i64, String, i64)> = fail["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["attempt"].as_i64().unwrap(),
                r["status"].as_str().unwrap().to_string(),
                r["exit_code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(attempts, vec![(1, "failed".into(), 3), (2, "failed".into(), 3), (3, "failed".into(), 3)]);
    let flaky = logs(&ws, status_of("flaky")["id"].as_i64().unwrap());
    assert_eq!(flaky["results"].as_array().unwrap().len(), 2);
    assert_eq!(status_of("flaky")["status"], "ok");
    // The text forms.
    let text = ws.loom(&["logs", &status_of("fail")["id"].to_string(), "--node", "a"]);
    text.assert_code(0);
    assert!(text.stdout.contains("== a attempt 3: failed"), "{}", text.stdout);
    assert!(text.stdout.contains("exit 3"), "{}", text.stdout);
    let failed = ws.loom(&["history", "--failed"]);
    assert!(failed.stdout.contains("fail") && !failed.stdout.contains("flaky"), "{}", failed.stdout);
    let jobs = ws.loom(&["jobs"]);
    assert!(jobs.stdout.contains("ok ") && jobs.stdout.contains("(fire"), "{}", jobs.stdout);
}

#[test]
fn a_job_log_gets_each_nodes_output_with_time_job_and_node() {
    let ws = Workspace::local("");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  hello:\n    task: loom.system.run\n    args: [\"echo hello from $(hostname)\"]\n    log: logs/hello.log\n    targets: [local]\n",
    );
    ws.loom(&["run", "hello"]).assert_code(0);
    ws.loom(&["run", "hello"]).assert_code(0);
    let log = ws.read("logs/hello.log");
    let status_lines = log.lines().filter(|l| l.contains("job=hello node=local attempt=1 status=ok")).count();
    assert_eq!(status_lines, 2, "{log}");
    let output = log.lines().find(|l| l.contains("| hello from")).unwrap_or_else(|| panic!("{log}"));
    assert!(output.starts_with(&Utc::now().format("%Y-").to_string()), "{output}");
    assert!(output.contains("job=hello node=local | hello from"), "{output}");
}

#[test]
fn retention_prunes_old_fires_when_the_daemon_starts() {
    let ws = Workspace::local("retention:\n  fires: 2\n");
    ws.write("jobs/a.yaml", "jobs:\n  hello:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [local]\n");
    for _ in 0..4 {
        ws.loom(&["run", "hello"]).assert_code(0);
    }
    assert_eq!(history(&ws, &[]).len(), 4);
    let daemon = start_and_wait(&ws);
    assert!(wait_for(Duration::from_secs(20), || history(&ws, &[]).len() == 2));
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("pruned old history"), "{log}");
}

#[test]
fn history_filters_by_node_and_jobs_are_disabled_without_a_daemon() {
    let ws = Workspace::new("", "a:\n  local: true\nb:\n  local: true\n");
    ws.write("jobs/a.yaml", "jobs:\n  hello:\n    task: loom.system.run\n    args: [\"true\"]\n    schedule: \"@daily\"\n    targets: [a, b]\n");
    ws.loom(&["run", "hello", "--node", "a"]).assert_code(0);
    ws.loom(&["run", "hello", "--node", "b"]).assert_code(0);
    ws.loom(&["run", "hello", "--node", "b"]).assert_code(0);
    assert_eq!(history(&ws, &["--node", "a"]).len(), 1);
    assert_eq!(history(&ws, &["--node", "b"]).len(), 2);
    assert_eq!(history(&ws, &["hello"]).len(), 3);

    // No daemon runs: the flag goes straight to the store, and the listing shows it.
    let disabled = ws.loom(&["disable", "hello"]);
    disabled.assert_code(0);
    assert!(disabled.stdout.contains("hello: disabled"), "{}", disabled.stdout);
    let jobs: Value = serde_json::from_str(&ws.loom(&["jobs", "--json"]).stdout).unwrap();
    assert_eq!(jobs[0]["enabled"], false);
    assert!(jobs[0]["next"].is_null(), "{jobs}");
    ws.loom(&["enable", "hello"]).assert_code(0);
    let jobs: Value = serde_json::from_str(&ws.loom(&["jobs", "--json"]).stdout).unwrap();
    assert_eq!(jobs[0]["enabled"], true);
    let unknown = ws.loom(&["disable", "nope"]);
    unknown.assert_code(1);
    assert!(unknown.stderr.contains("no job named `nope`; jobs: hello"), "{}", unknown.stderr);
}
