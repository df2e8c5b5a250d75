//! What a daemon leaves behind and what it shares: one daemon per state store, and
//! the SSH masters of a killed daemon stopped by the next one.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::harness::sshd::Fleet;
use crate::harness::{Workspace, wait_for};

#[test]
fn a_second_daemon_on_the_same_store_refuses_to_start_naming_the_first() {
    let first = Workspace::local("");
    // Another configuration (its own API port) that names the same store.
    let second = Workspace::local(&format!("state: {}\n", first.path("state.db").display()));
    let daemon = first.serve();
    daemon.wait_started();
    let refused = second.serve().wait();
    assert_eq!(refused.0, Some(1), "{}", refused.1);
    assert!(refused.1.contains(&format!("loom serve (pid {})", daemon.pid())), "{}", refused.1);
    assert!(refused.1.contains("state.db"), "{}", refused.1);
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("interrupted"), "{log}");
    // Once the first has stopped, the store is free.
    let again = second.serve();
    again.wait_started();
    assert_eq!(again.stop().0, Some(0));
}

#[test]
fn a_restarted_daemon_stops_the_masters_a_killed_one_left() {
    let fleet = Fleet::start(2);
    let ws = Workspace::new(&fleet.ssh_settings("strict"), &fleet.nodes_yaml());
    ws.write("jobs/a.yaml", "jobs:\n  up:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [n01, n02]\n");
    let daemon = ws.serve();
    daemon.wait_started();
    ws.loom(&["run", "up"]).assert_code(0);
    assert_eq!(fleet.ssh_processes(), 2, "one master per node");
    assert_eq!(masters(&ws), 2);
    // The masters' folders are private, in a folder of this store's own.
    let control: Vec<_> = std::fs::read_dir(fleet.path("control")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(control.len(), 1, "{control:?}");
    for folder in
        std::iter::once(control[0].clone()).chain(std::fs::read_dir(&control[0]).unwrap().flatten().map(|e| e.path()))
    {
        let mode = std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", folder.display());
    }
    daemon.signal("KILL");
    let _ = daemon.wait();
    assert_eq!(fleet.ssh_processes(), 2, "the masters outlive a killed daemon");

    let daemon = ws.serve();
    daemon.wait_started();
    assert_eq!(fleet.ssh_processes(), 0, "the restarted daemon left the old masters running");
    assert!(daemon.log().contains("stopped the ssh masters a previous loom on this store left running"));
    assert_eq!(std::fs::read_dir(&control[0]).unwrap().count(), 0, "old control folders are left");
    ws.loom(&["run", "up"]).assert_code(0);
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(wait_for(Duration::from_secs(10), || fleet.ssh_processes() == 0), "masters left after a clean stop");
}

fn masters(ws: &Workspace) -> u64 {
    let status = ws.loom(&["status", "--json"]);
    let status: serde_json::Value =
        serde_json::from_str(&status.stdout).unwrap_or_else(|err| panic!("{err}: {}", status.all()));
    status["ssh_masters"].as_u64().unwrap()
}

#[test]
fn an_idle_master_closes_itself_and_status_counts_the_open_ones() {
    let fleet = Fleet::start(2);
    let ws = Workspace::new(&format!("{}  control_persist: 1s\n", fleet.ssh_settings("strict")), &fleet.nodes_yaml());
    ws.write("jobs/a.yaml", "jobs:\n  up:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [n01, n02]\n");
    let daemon = ws.serve();
    daemon.wait_started();
    assert_eq!(masters(&ws), 0);
    ws.loom(&["run", "up"]).assert_code(0);
    // Both masters are counted until they have been idle for control_persist.
    let closed = wait_for(Duration::from_secs(20), || masters(&ws) == 0);
    assert!(closed, "status still counts {} masters", masters(&ws));
    assert!(wait_for(Duration::from_secs(5), || fleet.ssh_processes() == 0), "idle masters kept running");
    // The next command on a node starts a new one.
    ws.loom(&["run", "up"]).assert_code(0);
    assert_eq!(daemon.stop().0, Some(0));
}

#[test]
fn a_node_result_is_committed_before_it_is_reported() {
    let ws = Workspace::local("");
    let (go, ran) = (ws.path("go"), ws.path("ran"));
    let command =
        format!("while [ ! -e {go} ]; do sleep 0.05; done; touch {ran}", go = go.display(), ran = ran.display());
    ws.write(
        "jobs/a.yaml",
        &format!("jobs:\n  wait:\n    task: loom.system.run\n    args: [{command:?}]\n    targets: [local]\n"),
    );
    let daemon = ws.serve();
    daemon.wait_started();
    let events_file = ws.path("events.txt");
    let mut events = std::process::Command::new("curl")
        .args(["-sN", &format!("{}/api/v1/events", ws.server())])
        .stdout(std::fs::File::create(&events_file).unwrap())
        .spawn()
        .unwrap();
    let count = |kind: &str| ws.read("events.txt").matches(&format!("event: {kind}\n")).count();
    // A first fire shows that the stream is connected.
    std::fs::write(&go, "").unwrap();
    let connected = (0..10).any(|_| {
        ws.loom(&["run", "wait"]).assert_code(0);
        wait_for(Duration::from_secs(2), || count("fire-finished") > 0)
    });
    assert!(connected, "the event stream never showed a fire");
    std::fs::remove_file(&go).unwrap();
    let _ = std::fs::remove_file(&ran);
    let mut run = std::process::Command::new(crate::harness::loom_bin())
        .args(["-c", ws.config().to_str().unwrap(), "run", "wait"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(20), || count("fire-started") >= 2), "the second fire never started");
    // Hold the store's write lock: from now on nothing can be committed.
    let db = rusqlite::Connection::open(ws.path("state.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    std::fs::write(&go, "").unwrap();
    assert!(wait_for(Duration::from_secs(20), || ran.exists()), "the task never finished");
    // Whatever is reported now was reported uncommitted (today's loom reports at once).
    wait_for(Duration::from_secs(2), || count("node-finished") >= 2);
    daemon.signal("KILL");
    let _ = daemon.wait();
    db.execute_batch("ROLLBACK").unwrap();
    let _ = (events.kill(), run.kill(), run.wait());
    let _ = events.wait();
    let reported = count("node-finished");
    let recorded: i64 = db.query_row("SELECT count(*) FROM node_results", [], |r| r.get(0)).unwrap();
    assert!(recorded as usize >= reported, "{reported} node results were reported but only {recorded} recorded");
}

/// Whether the process runs: a killed one may linger as a zombie until whoever
/// inherited it reaps it (PID 1 of a container may never do so), which is not
/// running. A kill takes a moment to land, so this waits a little for the end.
fn alive(pid: &str) -> bool {
    let running = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        // `pid (comm) S …`: the state follows the last parenthesis.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !matches!(rest.trim_start().chars().next(), Some('Z' | 'X') | None))
    };
    !wait_for(Duration::from_secs(5), || !running())
}

/// A job whose local command records its pid and then sleeps for minutes.
fn sleeper(ws: &Workspace, targets: &str, remote: Option<&std::path::Path>) {
    let pid = ws.path("pid");
    let local = format!("echo $$ > {}; exec sleep 300", pid.display());
    ws.write("jobs/a.yaml", &format!("jobs:\n  sleep:\n    task: site.s.sleep\n    targets: [{targets}]\n"));
    let remote =
        remote.map_or(String::new(), |p| format!("echo $$ > {}; while sleep 0.2; do echo .; done", p.display()));
    ws.write(
        "tasks/site/s.rhai",
        &format!("fn sleep(ssh) {{ if ssh.local {{ ssh.run({local:?}); }} else {{ ssh.run({remote:?}); }} }}\n"),
    );
}

fn fire_status(ws: &Workspace, id: &str) -> (String, Vec<String>) {
    let logs = ws.loom(&["logs", id, "--json"]);
    let detail: serde_json::Value =
        serde_json::from_str(&logs.stdout).unwrap_or_else(|err| panic!("{err}: {}", logs.all()));
    let statuses = detail["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap().to_string());
    (detail["fire"]["status"].as_str().unwrap().to_string(), statuses.collect())
}

/// Starts `loom run sleep`, and once its command runs, sends it SIGINT; returns how
/// it exited (its stderr is in `run.log`) and the command's pid.
fn interrupt_run_of_sleeper(ws: &Workspace) -> (std::process::ExitStatus, String) {
    let mut run = std::process::Command::new(crate::harness::loom_bin())
        .args(["-c", ws.config().to_str().unwrap(), "run", "sleep"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(ws.path("run.log")).unwrap())
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(20), || !ws.read("pid").trim().is_empty()), "the command never started");
    std::process::Command::new("kill").args(["-INT", &run.id().to_string()]).status().unwrap();
    (run.wait().unwrap(), ws.read("pid"))
}

#[test]
fn ctrl_c_on_a_local_run_kills_its_commands_and_records_the_fire_interrupted() {
    let ws = Workspace::local("listen: off\n");
    sleeper(&ws, "local", None);
    let (status, pid) = interrupt_run_of_sleeper(&ws);
    assert_eq!(status.code(), Some(130), "{}", ws.read("run.log"));
    assert!(ws.read("run.log").contains("interrupted: stopping the nodes' commands"), "{}", ws.read("run.log"));
    assert!(!alive(&pid), "the command {pid} still runs");
    assert_eq!(fire_status(&ws, "1"), ("interrupted".to_string(), vec!["interrupted".to_string()]));
}

#[test]
fn a_second_sigterm_cancels_running_fires_and_leaves_nothing_running() {
    let fleet = Fleet::start(1);
    let out = fleet.shared_dir("out");
    let nodes = format!("{}local:\n  local: true\n", fleet.nodes_yaml());
    let ws = Workspace::new(&fleet.ssh_settings("strict"), &nodes);
    sleeper(&ws, "local, n01", Some(&out.join("remote-pid")));
    let daemon = ws.serve();
    daemon.wait_started();
    let started = std::process::Command::new("curl")
        .args(["-sf", "-X", "POST", &format!("{}/api/v1/jobs/sleep/run", ws.server())])
        .output()
        .unwrap();
    assert!(started.status.success());
    let remote_pid = out.join("remote-pid");
    let running = wait_for(Duration::from_secs(20), || {
        !ws.read("pid").trim().is_empty() && std::fs::read_to_string(&remote_pid).is_ok_and(|p| !p.trim().is_empty())
    });
    assert!(running, "the commands never started");
    let (pid, remote) = (ws.read("pid"), std::fs::read_to_string(&remote_pid).unwrap());
    daemon.signal("TERM");
    assert!(
        wait_for(Duration::from_secs(10), || daemon.log().contains("waiting for running fires")),
        "{}",
        daemon.log()
    );
    daemon.signal("TERM");
    let (code, log) = daemon.wait();
    assert_eq!(code, Some(130), "{log}");
    assert!(log.contains("cancelling running fires"), "{log}");
    assert!(!alive(&pid), "the local command {pid} still runs");
    assert_eq!(fleet.ssh_processes(), 0, "masters left running");
    // The remote command loses its channel and ends at its next write.
    assert!(wait_for(Duration::from_secs(10), || !alive(&remote)), "the remote command {remote} still runs");
    let (fire, nodes) = fire_status(&ws, "1");
    assert_eq!((fire.as_str(), nodes), ("interrupted", vec!["interrupted".to_string(), "interrupted".to_string()]));
}

#[test]
fn ctrl_c_on_a_run_through_the_daemon_cancels_that_fire() {
    let ws = Workspace::local("");
    sleeper(&ws, "local", None);
    let daemon = ws.serve();
    daemon.wait_started();
    let (status, pid) = interrupt_run_of_sleeper(&ws);
    let said = ws.read("run.log");
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(said.contains("cancelling fire 1 on the daemon"), "{said}");
    assert!(!alive(&pid), "the command {pid} still runs");
    assert_eq!(fire_status(&ws, "1"), ("interrupted".to_string(), vec!["interrupted".to_string()]));
    assert_eq!(daemon.stop().0, Some(0));
}
