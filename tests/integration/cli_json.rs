//! `--json` on `run`, `check`, `tail`, `reload`, `enable` and `disable` (stable
//! shapes, exit codes as without it), and `loom cancel FIRE`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Run, Workspace, follow, loom_bin, wait_for};

fn parsed(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr))
}

fn workspace() -> Workspace {
    let ws = Workspace::local("");
    ws.write("tasks/site/t.rhai", "fn slow(ssh) { ssh.run(\"sleep 30\"); }\n");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  hello:\n    task: loom.system.run\n    args: [\"echo hello\"]\n    targets: [local]\n  \
         broken:\n    task: loom.system.run\n    args: [\"exit 3\"]\n    targets: [local]\n  \
         slow:\n    task: site.t.slow\n    targets: [local]\n  \
         daily:\n    task: loom.system.run\n    args: [\"true\"]\n    schedule: \"0 3 * * *\"\n    targets: [local]\n",
    );
    ws
}

#[test]
fn check_run_enable_and_disable_print_json_without_a_daemon() {
    let ws = workspace();
    let check = ws.loom(&["check", "--json"]);
    check.assert_code(0);
    let report = parsed(&check);
    assert_eq!(
        (report["ok"].as_bool(), report["errors"].as_u64(), report["jobs"].as_u64()),
        (Some(true), Some(0), Some(4))
    );
    assert_eq!(report["diagnostics"], Value::Array(vec![]));

    let run = ws.loom(&["run", "hello", "--json"]);
    run.assert_code(0);
    let detail = parsed(&run);
    assert_eq!(detail["fire"]["status"], "ok", "{detail}");
    assert!(detail["fire"]["id"].as_i64().unwrap() > 0, "{detail}");
    assert!(detail["results"][0]["output"].as_str().unwrap().contains("hello"), "{detail}");
    let failed = ws.loom(&["run", "broken", "--json"]);
    failed.assert_code(1);
    let detail = parsed(&failed);
    assert_eq!(
        (detail["fire"]["status"].as_str(), detail["results"][0]["exit_code"].as_i64()),
        (Some("failed"), Some(3))
    );

    let disabled = ws.loom(&["disable", "daily", "--json"]);
    disabled.assert_code(0);
    let job = parsed(&disabled);
    assert_eq!(
        (job["name"].as_str(), job["enabled"].as_bool(), job["next"].is_null()),
        (Some("daily"), Some(false), true)
    );
    let enabled = parsed(ws.loom(&["enable", "daily", "--json"]).assert_code(0));
    assert_eq!((enabled["enabled"].as_bool(), enabled["next"].is_string()), (Some(true), true), "{enabled}");
    assert_eq!(parsed(ws.loom(&["enable", "hello", "--json"]).assert_code(0))["last"]["status"], "ok");

    // Errors: every diagnostic with its place, and the exit code of `check`.
    ws.write("jobs/b.yaml", "jobs:\n  b:\n    task: loom.system.run\n    schedule: \"nope\"\n    targets: [ghost]\n");
    let check = ws.loom(&["check", "--json"]);
    check.assert_code(1);
    let report = parsed(&check);
    assert_eq!(report["ok"], false);
    let diagnostics = report["diagnostics"].as_array().unwrap();
    assert_eq!(report["errors"].as_u64().unwrap() as usize, diagnostics.len(), "{report}");
    assert!(diagnostics.len() >= 2, "{report}");
    let cron = diagnostics.iter().find(|d| d["message"].as_str().unwrap().contains("cron")).expect("a cron error");
    assert!(cron["file"].as_str().unwrap().ends_with("jobs/b.yaml"), "{cron}");
    assert_eq!(
        (cron["line"].as_u64(), cron["column"].as_u64(), cron["severity"].as_str()),
        (Some(4), Some(15), Some("error"))
    );
    assert!(cron.as_object().unwrap().contains_key("help"), "{cron}");
}

#[test]
fn through_a_daemon_run_tail_reload_toggle_print_json_and_cancel_stops_a_fire() {
    let ws = workspace();
    let daemon = ws.serve();
    daemon.wait_started();

    // Tail as NDJSON: one event per line, from the fire's start to its end.
    let mut tail = follow(&["-c", ws.config().to_str().unwrap(), "tail", "hello", "--fires", "1", "--json"]);
    let run = ws.loom(&["run", "hello", "--json"]);
    run.assert_code(0);
    let detail = parsed(&run);
    assert_eq!(detail["fire"]["status"], "ok", "{detail}");
    assert_eq!(detail["fire"]["trigger"], "manual");
    let lines: Vec<String> = BufReader::new(tail.stdout.take().unwrap()).lines().map(Result::unwrap).collect();
    assert!(tail.wait().unwrap().success());
    let events: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"fire-started"), "{lines:#?}");
    assert_eq!(kinds.last(), Some(&"fire-finished"), "{lines:#?}");
    assert!(kinds.contains(&"output") && kinds.contains(&"node-finished"), "{lines:#?}");
    assert!(events.iter().all(|e| e["fire"] == detail["fire"]["id"]), "{lines:#?}");

    let failed = ws.loom(&["run", "broken", "--json"]);
    failed.assert_code(1);
    assert_eq!(parsed(&failed)["fire"]["status"], "failed");

    let job = parsed(ws.loom(&["disable", "daily", "--json"]).assert_code(0));
    assert_eq!((job["enabled"].as_bool(), job["schedule"].as_str()), (Some(false), Some("0 3 * * *")));
    assert_eq!(parsed(ws.loom(&["enable", "daily", "--json"]).assert_code(0))["enabled"], true);

    let reload = parsed(ws.loom(&["reload", "--json"]).assert_code(0));
    assert_eq!((reload["ok"].as_bool(), reload["errors"].as_array().map(Vec::len)), (Some(true), Some(0)), "{reload}");
    ws.write("jobs/b.yaml", "jobs:\n  b:\n    task: loom.system.run\n    schedule: \"nope\"\n    targets: [local]\n");
    let reload = ws.loom(&["reload", "--json"]);
    reload.assert_code(1);
    let reload = parsed(&reload);
    assert_eq!(reload["ok"], false);
    assert!(reload["errors"][0].as_str().unwrap().contains("jobs/b.yaml:4:15"), "{reload}");
    std::fs::remove_file(ws.path("jobs/b.yaml")).unwrap();

    // Cancel: a running fire stops and is recorded interrupted; a finished one is an error.
    let run = Command::new(loom_bin())
        .args(["-c", ws.config().to_str().unwrap(), "run", "slow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut fire = None;
    assert!(wait_for(Duration::from_secs(20), || {
        let status = parsed(&ws.loom(&["status", "--json"]));
        fire = status["running"].as_array().unwrap().iter().find(|f| f["job"] == "slow").map(|f| f["id"].clone());
        fire.is_some()
    }));
    let fire = fire.unwrap().to_string();
    let cancel = ws.loom(&["cancel", &fire, "--json"]);
    cancel.assert_code(0);
    let cancelled = parsed(&cancel);
    assert_eq!(cancelled["fire"]["status"], "interrupted", "{cancelled}");
    assert_eq!(cancelled["results"][0]["status"], "interrupted", "{cancelled}");
    // The `loom run` that waited for it tells the same, and fails.
    let run = run.wait_with_output().unwrap();
    assert_eq!(run.status.code(), Some(1));
    let ran: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(ran["fire"]["status"], "interrupted");
    let again = ws.loom(&["cancel", &fire]);
    again.assert_code(1);
    assert!(again.stderr.contains(&format!("fire {fire} is not running")), "{}", again.stderr);
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");

    // Only a daemon runs fires that can be cancelled.
    let alone = ws.loom(&["cancel", &fire]);
    alone.assert_code(1);
    assert!(alone.stderr.contains("no daemon is reachable"), "{}", alone.stderr);
}
