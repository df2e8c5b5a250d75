//! `loom serve`: fires on schedule, repeatedly; a runaway script does not stop
//! other jobs; SIGTERM stops it cleanly after running fires finish.

use std::time::Duration;

use crate::harness::{Workspace, wait_for};

#[test]
fn fires_every_second_keeps_going_past_a_runaway_script_and_stops_on_sigterm() {
    let ws = Workspace::local("task_max_time: 1s\n");
    let ticks = ws.path("ticks");
    ws.write("tasks/site/spin.rhai", "fn apply(ssh) { let i = 0; loop { i += 1; } }\n");
    ws.write(
        "jobs/a.yaml",
        &format!(
            "jobs:\n  tick:\n    task: loom.system.run\n    args: [\"date +%s.%N >> {}\"]\n    schedule: \"* * * * * *\"\n    targets: [local]\n  \
             spin:\n    task: site.spin.apply\n    schedule: \"* * * * * *\"\n    targets: [local]\n",
            ticks.display()
        ),
    );
    let daemon = ws.serve();
    let fired = wait_for(Duration::from_secs(20), || ws.read("ticks").lines().count() >= 4);
    let (code, log) = daemon.stop();
    assert!(fired, "tick fired {} times; log:\n{log}", ws.read("ticks").lines().count());
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("loom started"), "{log}");
    assert!(log.contains("task_max_time"), "the runaway script was not reported:\n{log}");
    assert!(log.contains("loom stopped"), "{log}");
    // One fire per second: the whole seconds recorded are all different.
    let seconds: Vec<String> = ws.read("ticks").lines().map(|l| l.split('.').next().unwrap().to_string()).collect();
    let mut unique = seconds.clone();
    unique.dedup();
    assert_eq!(unique, seconds, "two fires in the same second");
    // Fires are prepared ahead of their instant, but nothing starts before it.
    let db = rusqlite::Connection::open(ws.path("state.db")).unwrap();
    let (fires, early): (i64, i64) = db
        .query_row(
            "SELECT count(DISTINCT f.id), count(*) FILTER (WHERE n.started < f.scheduled OR f.started < f.scheduled)
             FROM fires f JOIN node_results n ON n.fire_id = f.id WHERE f.job = 'tick'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(fires >= 4, "{fires} fires recorded");
    assert_eq!(early, 0, "a fire or task started before its instant");
    for line in ws.read("ticks").lines() {
        let at: f64 = line.parse().unwrap();
        let recorded: i64 = db
            .query_row(
                "SELECT count(*) FROM fires WHERE job = 'tick' AND scheduled = ?1",
                [at.floor() as i64 * 1000],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(recorded, 1, "the tick at {line} ran in a second no fire was scheduled for");
    }
}

#[test]
fn sigterm_waits_for_a_running_fire_to_finish() {
    let ws = Workspace::local("");
    let done = ws.path("done");
    ws.write(
        "jobs/a.yaml",
        &format!(
            "jobs:\n  slow:\n    task: loom.system.run\n    args: [\"sleep 2; touch {}\"]\n    schedule: \"@reboot\"\n    targets: [local]\n",
            done.display()
        ),
    );
    let daemon = ws.serve();
    daemon.wait_started();
    assert!(wait_for(Duration::from_secs(20), || daemon.log().contains("fire started job=slow")), "{}", daemon.log());
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(done.exists(), "the running fire was cut short:\n{log}");
    assert!(log.contains("waiting for running fires"), "{log}");
}

#[test]
fn serve_refuses_to_start_on_an_invalid_configuration() {
    let ws = Workspace::local("");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  a:\n    task: loom.system.run\n    args: [x]\n    schedule: \"bad\"\n    targets: [local]\n",
    );
    let (code, log) = ws.serve().wait();
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("bad cron expression"), "{log}");
}

#[test]
fn task_output_in_the_daemon_log_can_be_filtered_by_job() {
    let ws = Workspace::local("");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  a:\n    task: loom.system.run\n    args: [\"echo from-a\"]\n    schedule: \"* * * * * *\"\n    targets: [local]\n  \
         b:\n    task: loom.system.run\n    args: [\"echo from-b\"]\n    schedule: \"* * * * * *\"\n    targets: [local]\n",
    );
    let daemon = ws.serve_env(&[("LOOM_LOG", "warn,loom::output[node{job=b}]=info")]);
    assert!(wait_for(Duration::from_secs(20), || daemon.log().matches("from-b").count() >= 4));
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("node{job=\"b\" node=local"), "{log}");
    assert!(!log.contains("from-a"), "{log}");
}

#[test]
fn scripts_waiting_on_long_commands_do_not_hold_back_other_jobs() {
    // Far more scripts wait on their commands than the machine has cores; each
    // waiting one gives its place up, so the every-second job keeps starting.
    let ws = Workspace::local("max_workers: 20\n");
    let ticks = ws.path("ticks");
    let mut jobs = String::from("jobs:\n");
    for i in 0..8 {
        jobs.push_str(&format!(
            "  wait{i}:\n    task: loom.system.run\n    args: [\"sleep 6\"]\n    schedule: \"@reboot\"\n    targets: [local]\n"
        ));
    }
    jobs.push_str(&format!(
        "  tick:\n    task: loom.system.run\n    args: [\"date +%s >> {}\"]\n    schedule: \"* * * * * *\"\n    targets: [local]\n",
        ticks.display()
    ));
    ws.write("jobs/a.yaml", &jobs);
    let daemon = ws.serve();
    daemon.wait_started();
    let ticked = wait_for(Duration::from_secs(5), || ws.read("ticks").lines().count() >= 3);
    let waiting = daemon.log().matches("fire finished job=wait").count();
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(ticked, "tick fired {} times while 8 scripts waited:\n{log}", ws.read("ticks").lines().count());
    assert_eq!(waiting, 0, "the waiting scripts ended before the ticks were counted:\n{log}");
    assert_eq!(log.matches("fire finished job=wait").count(), 8, "{log}");
}
