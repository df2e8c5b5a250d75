//! Hostile configurations: values that would overflow, and paths that name what is
//! not a configuration file (`/dev/urandom`, a FIFO, `/proc/self`, a huge file).
//! `loom check` reports each at its place and exits 1, promptly; `loom serve`
//! refuses the same configuration, and a running daemon keeps its own on reload.

use std::time::Duration;

use crate::harness::{Workspace, wait_for};

fn job(extra: &str) -> String {
    format!(
        "jobs:\n  tick:\n    task: loom.system.run\n    args: [\"true\"]\n    schedule: \"* * * * *\"\n    targets: [local]\n{extra}"
    )
}

/// Checks the workspace: exit 1, with `needles` in the report (paths relative to it).
fn check_fails(ws: &Workspace, needles: &[&str]) {
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    let out = run.stderr.replace(&format!("{}/", ws.dir.path().display()), "");
    for needle in needles {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

/// `loom serve` on the workspace exits by itself with an error and never starts.
fn serve_refuses(ws: &Workspace, needle: &str) {
    let (code, log) = ws.serve().wait();
    assert_ne!(code, Some(0), "{log}");
    assert!(log.contains("nothing was started"), "{log}");
    assert!(log.contains(needle), "missing {needle:?} in:\n{log}");
    assert!(!log.contains("loom started") && !log.contains("panicked"), "{log}");
}

#[test]
fn a_jitter_that_would_overflow_is_a_check_error_and_serve_refuses_it() {
    let ws = Workspace::local("");
    ws.write("jobs/a.yaml", &job("    jitter: 99999999999999h\n"));
    check_fails(
        &ws,
        &[
            "error: `jitter` is too long: 99999999999999h is more than 1day",
            "--> jobs/a.yaml:7:13",
            "= help: `jitter` takes a duration from 0s to 1day",
        ],
    );
    serve_refuses(&ws, "`jitter` is too long");
}

#[test]
fn durations_of_1e308_seconds_are_check_errors_not_panics() {
    let ws = Workspace::local("task_max_time: 1e308\nssh:\n  connect_timeout: 1e308\n");
    ws.write("jobs/a.yaml", &job("    timeout: 1e308\n    retry_delay: 1e308\n"));
    check_fails(
        &ws,
        &[
            "error: `task_max_time` is too long: 1e308 seconds is more than 30days",
            "--> loom.yaml:5:16",
            "error: `connect_timeout` is too long: 1e308 seconds is more than 1h",
            "--> loom.yaml:7:20",
            "error: `timeout` is too long",
            "--> jobs/a.yaml:7:14",
            "error: `retry_delay` is too long",
            "--> jobs/a.yaml:8:18",
        ],
    );
    serve_refuses(&ws, "`task_max_time` is too long");
}

#[test]
fn the_largest_allowed_durations_pass_check_and_the_daemon_starts_and_reloads() {
    let main = "task_max_time: 30days\nretention: {days: 36525}\nssh:\n  connect_timeout: 1h\n  keepalive: 1d\n  control_persist: 30days\n";
    let ws = Workspace::local(main);
    let longest = "    jitter: 1d\n    timeout: 30days\n    node_timeout: 30days\n    retry_delay: 1d\n";
    ws.write("jobs/a.yaml", &job(longest));
    ws.loom(&["check"]).assert_code(0);
    let daemon = ws.serve();
    daemon.wait_started();

    // A reload with a value that used to panic the daemon is refused; it goes on.
    ws.write("jobs/a.yaml", &job("    jitter: 99999999999999h\n"));
    daemon.signal("HUP");
    assert!(wait_for(Duration::from_secs(20), || daemon.log().contains("reload failed")), "{}", daemon.log());
    assert!(daemon.log().contains("`jitter` is too long"), "{}", daemon.log());
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_character_device_as_nodesfile_is_refused_without_reading_it() {
    let ws = Workspace::local("");
    let main = ws.read("loom.yaml").replace("nodesfile: nodes.yaml", "nodesfile: /dev/urandom");
    ws.write("loom.yaml", &main);
    check_fails(
        &ws,
        &[
            "error: failed to read the node manifest (nodesfile) /dev/urandom: it is a character device, not a regular file",
            "--> loom.yaml:1:12",
        ],
    );
}

#[test]
fn a_fifo_as_job_manifest_is_refused_without_waiting_for_a_writer() {
    let ws = Workspace::local("");
    ws.write("jobs/a.yaml", &job(""));
    let fifo = ws.path("jobs/fifo.yaml");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    check_fails(&ws, &["error: failed to read a job manifest jobs/fifo.yaml: it is a FIFO, not a regular file"]);
}

#[test]
fn proc_self_as_jobspath_ends_with_an_error_naming_it() {
    let ws = Workspace::local("");
    let main = ws.read("loom.yaml").replace("jobspath: jobs", "jobspath: /proc/self");
    ws.write("loom.yaml", &main);
    check_fails(&ws, &["error: failed to search the jobs folder (jobspath) /proc/self: it ", "--> loom.yaml:2:11"]);
}

#[test]
fn a_file_over_the_size_limit_is_refused() {
    let ws = Workspace::local("datafile: data.yaml\n");
    ws.write("jobs/a.yaml", &job(""));
    let data = std::fs::File::create(ws.path("data.yaml")).unwrap();
    data.set_len((16 << 20) + 1).unwrap();
    check_fails(
        &ws,
        &["error: failed to read the datafile data.yaml: it is larger than the limit of 16 MiB", "--> loom.yaml:5:11"],
    );
}
