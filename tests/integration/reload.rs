//! Hot reload against a running daemon: new, changed, broken and deleted manifests,
//! edited task scripts, SIGHUP, unchanged fires across reloads, and SSH masters
//! reopened only for nodes whose settings changed.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use loom::daemon::ManualClock;

use crate::harness::sshd::Fleet;
use crate::harness::{Daemon, InProcess, Workspace, pass_seconds, wait_for};

fn lines(ws: &Workspace, file: &str) -> usize {
    ws.read(file).lines().count()
}

fn every_second(name: &str, task: &str, args: &str) -> String {
    format!(
        "jobs:\n  {name}:\n    task: {task}\n    args: [{args}]\n    schedule: \"* * * * * *\"\n    targets: [local]\n"
    )
}

fn started(ws: &Workspace) -> Daemon {
    let daemon = ws.serve();
    daemon.wait_started();
    daemon
}

#[test]
fn manifests_come_change_break_heal_and_go_without_a_restart() {
    let ws = Workspace::local("");
    let out = |name: &str| ws.path(name).display().to_string();
    ws.write("jobs/a.yaml", &every_second("a", "loom.system.run", &format!("\"echo a >> {}\"", out("a.out"))));
    let daemon = started(&ws);
    assert!(wait_for(Duration::from_secs(20), || lines(&ws, "a.out") >= 1));

    // A new manifest: its job fires.
    ws.write("jobs/sub/b.yaml", &every_second("b", "loom.system.run", &format!("\"echo b >> {}\"", out("b.out"))));
    assert!(
        wait_for(Duration::from_secs(20), || lines(&ws, "b.out") >= 2),
        "new manifest never fired:\n{}",
        daemon.log()
    );
    assert!(daemon.log().contains("reloaded: jobs +1 -0 ~0"), "{}", daemon.log());

    // A syntax error: the error is reported with its place, and both jobs keep firing.
    ws.write("jobs/sub/b.yaml", "jobs:\n  b:\n    task: [oops\n");
    assert!(wait_for(Duration::from_secs(20), || daemon.log().contains("reload failed")), "{}", daemon.log());
    assert!(daemon.log().contains("jobs/sub/b.yaml:3:"), "{}", daemon.log());
    let (a, b) = (lines(&ws, "a.out"), lines(&ws, "b.out"));
    assert!(wait_for(Duration::from_secs(20), || lines(&ws, "a.out") >= a + 2 && lines(&ws, "b.out") >= b + 2));

    // Fixed, with a new command: the new version takes over.
    ws.write("jobs/sub/b.yaml", &every_second("b", "loom.system.run", &format!("\"echo b2 >> {}\"", out("b.out"))));
    assert!(wait_for(Duration::from_secs(20), || ws.read("b.out").contains("b2")), "{}", daemon.log());

    // Deleted: it is reloaded away (that its job then stays quiet is
    // `a_deleted_manifest_s_job_stops_and_the_others_go_on`).
    std::fs::remove_file(ws.path("jobs/sub/b.yaml")).unwrap();
    assert!(wait_for(Duration::from_secs(20), || daemon.log().contains("-1 ~0")), "{}", daemon.log());
    let a = lines(&ws, "a.out");
    assert!(wait_for(Duration::from_secs(20), || lines(&ws, "a.out") > a), "the other job stopped too");
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// How many fires of `job` are on record.
fn fires_of(ws: &Workspace, job: &str) -> usize {
    let run = ws.loom(&["history", job, "--json", "--limit", "1000"]);
    run.assert_code(0);
    serde_json::from_str::<serde_json::Value>(&run.stdout).unwrap().as_array().unwrap().len()
}

#[test]
fn a_deleted_manifest_s_job_stops_and_the_others_go_on() {
    let ws = Workspace::local("");
    ws.write("jobs/a.yaml", &every_second("a", "loom.system.run", "\"true\""));
    ws.write("jobs/sub/b.yaml", &every_second("b", "loom.system.run", "\"true\""));
    let clock = Arc::new(ManualClock::new("2026-01-01T10:00:00.500Z".parse().unwrap()));
    let daemon = InProcess::start(&ws, &clock, None);
    pass_seconds(&ws, &clock, None, "b", 2);
    assert_eq!((fires_of(&ws, "a"), fires_of(&ws, "b")), (2, 2));
    std::fs::remove_file(ws.path("jobs/sub/b.yaml")).unwrap();
    let reloaded = wait_for(Duration::from_secs(20), || {
        let (_, status) = crate::harness::http("GET", &format!("{}/api/v1/status", ws.server()), None, None);
        status["jobs"] == 1
    });
    assert!(reloaded, "the deletion was never reloaded");
    pass_seconds(&ws, &clock, None, "a", 5);
    assert_eq!((fires_of(&ws, "a"), fires_of(&ws, "b")), (7, 2), "a deleted job kept firing, or the other stopped");
    daemon.stop();
}

#[test]
fn an_edited_task_script_runs_from_the_next_fire_on() {
    let ws = Workspace::local("");
    let out = ws.path("out").display().to_string();
    ws.write("tasks/site/t.rhai", &format!("fn note(ssh) {{ ssh.run(\"echo v1 >> {out}\"); }}\n"));
    ws.write("jobs/a.yaml", &every_second("note", "site.t.note", ""));
    let daemon = started(&ws);
    assert!(wait_for(Duration::from_secs(20), || ws.read("out").contains("v1")));
    ws.write("tasks/site/t.rhai", &format!("fn note(ssh) {{ ssh.run(\"echo v2 >> {out}\"); }}\n"));
    assert!(wait_for(Duration::from_secs(20), || ws.read("out").contains("v2")), "{}", daemon.log());
    assert!(daemon.log().contains("tasks recompiled 1"), "{}", daemon.log());
    // Once v2 runs, v1 never comes back.
    let text = ws.read("out");
    let first_v2 = text.find("v2").unwrap();
    assert!(!text[first_v2..].contains("v1"), "{text}");
    daemon.stop();
}

#[test]
fn no_fire_is_lost_or_doubled_across_reloads_of_unrelated_files() {
    let ws = Workspace::local("");
    ws.write("jobs/a.yaml", &every_second("tick", "loom.system.run", "\"true\""));
    ws.write("jobs/other.yaml", &every_second("other", "loom.system.run", "\"true\""));
    let daemon = started(&ws);
    // Each reload races the next fire of `tick`: wait for that fire, not for time.
    let ticks = || daemon.log().matches("fire finished job=tick").count();
    for i in 0..4 {
        let before = ticks();
        ws.write("jobs/other.yaml", &format!("# edit {i}\n{}", every_second("other", "loom.system.run", "\"true\"")));
        let reloads = i + 1;
        assert!(wait_for(Duration::from_secs(20), || daemon.log().matches("reloaded").count() >= reloads));
        assert!(wait_for(Duration::from_secs(20), || ticks() > before), "tick stopped firing");
    }
    // And one by signal.
    let before = ticks();
    daemon.signal("HUP");
    assert!(wait_for(Duration::from_secs(20), || daemon.log().contains("reason=\"SIGHUP\"") && ticks() > before + 1));
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("SIGHUP"), "{log}");
    let run = ws.loom(&["history", "tick", "--json", "--limit", "1000"]);
    let fires: Vec<serde_json::Value> = serde_json::from_str(&run.stdout).unwrap();
    let mut seconds: Vec<i64> =
        fires.iter().map(|f| f["scheduled"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap().timestamp()).collect();
    seconds.sort();
    assert!(seconds.len() >= 4, "{seconds:?}");
    for pair in seconds.windows(2) {
        assert_eq!(pair[1] - pair[0], 1, "a fire was lost or doubled: {seconds:?}");
    }
}

#[test]
fn only_nodes_whose_settings_changed_get_a_new_ssh_master() {
    let fleet = Fleet::start(2);
    let out = fleet.shared_dir("out");
    let ws = Workspace::new(&fleet.ssh_settings("strict"), &fleet.nodes_yaml());
    ws.write(
        "tasks/site/t.rhai",
        &format!("fn tick(ssh) {{ ssh.run(`echo x >> {}/${{ssh.node}}`); }}\n", out.display()),
    );
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  tick:\n    task: site.t.tick\n    schedule: \"* * * * * *\"\n    targets: [n01, n02]\n",
    );
    let count = |node: &str| std::fs::read_to_string(out.join(node)).unwrap_or_default().lines().count();
    let daemon = started(&ws);
    assert!(wait_for(Duration::from_secs(20), || count("n01") >= 2 && count("n02") >= 2));
    let nodes = fleet.nodes_yaml().replace(
        &format!("n02:\n  ip: {}\n", fleet.nodes[1].address),
        &format!("n02:\n  ssh_options: [ServerAliveCountMax=5]\n  ip: {}\n", fleet.nodes[1].address),
    );
    ws.write("nodes.yaml", &nodes);
    assert!(wait_for(Duration::from_secs(20), || daemon.log().contains("nodes changed 1")), "{}", daemon.log());
    let n02 = count("n02");
    assert!(wait_for(Duration::from_secs(20), || count("n02") >= n02 + 2));
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(fleet.node("n01").logins(), 1, "n01's master was reopened");
    assert_eq!(fleet.node("n02").logins(), 2, "n02's master was not reopened");
}

#[test]
fn firing_and_the_api_go_on_while_a_slow_reload_reads_its_files() {
    let ws = Workspace::local("datafile: data.yaml\n");
    ws.write("data.yaml", "small: 1\n");
    ws.write("jobs/a.yaml", &every_second("tick", "loom.system.run", "\"true\""));
    ws.write("jobs/b.yaml", "jobs:\n  other:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [local]\n");
    let daemon = started(&ws);
    assert!(wait_for(Duration::from_secs(10), || daemon.log().contains("fire finished")));
    // A datafile this large takes this debug build seconds to parse, once per manifest.
    let mut big = String::from("big: &big\n");
    for i in 0..100_000 {
        big.push_str(&format!("  - item{i}\n"));
    }
    ws.write("data.yaml", &big);
    daemon.signal("HUP");
    assert!(wait_for(Duration::from_secs(10), || daemon.log().contains("reloading")), "{}", daemon.log());
    // (Not `loom status`: the CLI would read the big datafile itself first.)
    let status = std::process::Command::new("curl")
        .args(["-sf", "--max-time", "10", &format!("{}/api/v1/status", ws.server())])
        .output()
        .unwrap();
    assert!(status.status.success(), "the API did not answer during the reload");
    let log = daemon.log();
    assert!(!log.contains("reloaded"), "the reload was too quick to show anything:\n{log}");
    assert!(wait_for(Duration::from_secs(120), || daemon.log().contains("reloaded")), "{}", daemon.log());
    let log = daemon.log();
    let during = &log[log.find("reloading").unwrap()..log.find("reloaded").unwrap()];
    let fires = during.matches("fire finished job=tick").count();
    assert!(fires >= 1, "no fire while the reload read its files:\n{during}");
    assert!(!log.contains("woke up late"), "a slow reload was taken for a stalled host:\n{log}");
    assert_eq!(daemon.stop().0, Some(0));
}
