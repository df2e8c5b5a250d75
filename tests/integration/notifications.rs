//! Notifications end to end: a real webhook receiver on loopback gets exactly one
//! signed delivery per fire outcome, a receiver that was down gets it once it is
//! back (also across a daemon restart, the backoff moved by the daemon's manual
//! clock), a recovery follows the first success, and a notifier task runs on the
//! Loom host with the event.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use loom::daemon::{Clock, ManualClock};
use serde_json::Value;
use sha2::Sha256;

use crate::harness::webhook::Receiver;
use crate::harness::{InProcess, Workspace, free_port, http, move_clock, wait_for};

fn run(ws: &Workspace, job: &str) -> Value {
    let (status, body) = http("POST", &format!("{}/api/v1/jobs/{job}/run?wait=true", ws.server()), None, None);
    assert_eq!(status, 200, "{body}");
    body
}

fn notifications(ws: &Workspace, job: &str) -> Vec<Value> {
    let (status, body) = http("GET", &format!("{}/api/v1/notifications?job={job}&limit=100", ws.server()), None, None);
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_failing_job_notifies_once_per_fire_signed_and_a_recovery_follows_the_first_success() {
    let receiver = Receiver::start();
    let ws = Workspace::local(
        "public_url: https://loom.example.com/\nnotifications:\n  - {on: [failure], task: notes.record}\n",
    );
    ws.write("hook.key", "s3cret-signing-key\n");
    ws.write("fail", "");
    let (fail, notes) = (ws.path("fail"), ws.path("notes.txt"));
    ws.write(
        "jobs/a.yaml",
        &format!(
            "jobs:\n  flaky:\n    task: loom.system.run\n    args: [\"test ! -e {}\"]\n    targets: [local]\n    \
             retries: 2\n    retry_delay: 10ms\n    notifications:\n      - on: [failure, recovery]\n        \
             webhook: {}\n        secret_file: hook.key\n",
            fail.display(),
            receiver.url("/hook?token=abc")
        ),
    );
    ws.write(
        "tasks/notes.rhai",
        &format!(
            "fn record(ssh, event) {{\n    let line = `${{event.event}} ${{event.job}} ${{event.fire_id}} ${{event.status}} ${{event.counts.failed}}`;\n    \
             ssh.run(`printf '%s\\n' ${{quote(line)}} >> ${{quote(\"{}\")}}`);\n}}\n",
            notes.display()
        ),
    );
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let daemon = InProcess::start(&ws, &clock, None);

    // Two failing fires, each after three node attempts: one delivery each.
    let first = run(&ws, "flaky");
    assert_eq!(first["fire"]["status"], "failed", "{first}");
    assert_eq!(first["results"].as_array().unwrap().len(), 3, "three attempts: {first}");
    let id = first["fire"]["id"].as_i64().unwrap();
    let got = receiver.wait_for(1, Duration::from_secs(20));
    let request = &got[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/hook?token=abc"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-loom-event"), Some("failure"));
    assert!(request.header("x-loom-delivery").is_some_and(|id| id.parse::<i64>().is_ok()));
    assert_eq!(request.header("user-agent"), Some(concat!("loom/", env!("CARGO_PKG_VERSION"))));
    let signature = format!("sha256={}", hmac_hex(b"s3cret-signing-key", &request.body));
    assert_eq!(request.header("x-loom-signature"), Some(signature.as_str()), "the HMAC of the body");
    let body = request.json();
    assert_eq!(body["schema"], 1);
    assert_eq!(body["event"], "failure");
    assert_eq!(body["job"], "flaky");
    assert_eq!(body["fire_id"], id);
    assert_eq!(body["status"], "failed");
    assert_eq!(body["trigger"], "manual");
    assert_eq!(body["nodes"], 1);
    assert_eq!(body["counts"]["failed"], 1);
    assert_eq!(body["counts"]["ok"], 0);
    assert_eq!(body["failed_nodes"][0]["node"], "local");
    assert_eq!(body["failed_nodes"][0]["attempt"], 3);
    assert_eq!(body["failed_nodes"][0]["exit_code"], 1);
    assert!(body["failed_nodes"][0]["error"].as_str().unwrap().contains("exit"), "{body}");
    assert_eq!(body["link"], format!("https://loom.example.com/#/fires/{id}"));
    assert_eq!(body["api_link"], format!("https://loom.example.com/api/v1/fires/{id}"));
    assert!(body["text"].as_str().unwrap().starts_with(&format!("flaky: failure — fire {id} failed")), "{body}");
    for time in ["scheduled", "started", "finished"] {
        assert!(body[time].as_str().unwrap().parse::<chrono::DateTime<Utc>>().is_ok(), "{time}: {body}");
    }
    // The notifier task ran on the Loom host with the event.
    assert!(wait_for(Duration::from_secs(20), || ws.read("notes.txt").lines().count() == 1));
    assert_eq!(ws.read("notes.txt"), format!("failure flaky {id} failed 1\n"));

    let second = run(&ws, "flaky");
    assert_eq!(second["fire"]["status"], "failed");
    let got = receiver.wait_for(2, Duration::from_secs(20));
    assert_eq!(got[1].json()["fire_id"], second["fire"]["id"]);

    // The first success after failures is a recovery; the next one tells nothing.
    std::fs::remove_file(&fail).unwrap();
    let third = run(&ws, "flaky");
    assert_eq!(third["fire"]["status"], "ok");
    let got = receiver.wait_for(3, Duration::from_secs(20));
    let recovery = got[2].json();
    assert_eq!((recovery["event"].as_str(), recovery["status"].as_str()), (Some("recovery"), Some("ok")));
    assert_eq!(recovery["counts"]["ok"], 1);
    assert_eq!(recovery["failed_nodes"], serde_json::json!([]));
    assert_eq!(run(&ws, "flaky")["fire"]["status"], "ok");

    // Every notification was delivered once, with one attempt each: 3 webhook, 2 task.
    let delivered =
        wait_for(Duration::from_secs(20), || notifications(&ws, "flaky").iter().all(|n| n["state"] == "delivered"));
    let listed = notifications(&ws, "flaky");
    assert!(delivered, "{listed:#?}");
    let count = |kind: &str| listed.iter().filter(|n| n["kind"] == kind).count();
    assert_eq!((count("webhook"), count("task")), (3, 2), "{listed:#?}");
    for n in &listed {
        assert_eq!(n["attempts"].as_array().unwrap().len(), 1, "{n}");
        if n["kind"] == "webhook" {
            assert_eq!(n["attempts"][0]["status_code"], 200);
            assert_eq!(n["target"], format!("http://127.0.0.1:{}/…", receiver.url("").rsplit(':').next().unwrap()));
        } else {
            assert_eq!(n["target"], "notes.record");
        }
    }
    assert_eq!(receiver.requests().len(), 3);
    assert_eq!(ws.read("notes.txt").lines().count(), 2);
    let everything = format!("{listed:?}");
    assert!(!everything.contains("s3cret") && !everything.contains("token=abc"), "{everything}");

    // `loom notifications` shows the same, from the store or through the daemon.
    let table = ws.loom(&["notifications", "--job", "flaky"]);
    table.assert_code(0);
    assert!(table.stdout.contains("recovery") && table.stdout.contains("HTTP 200"), "{}", table.stdout);
    let remote = ws.loom(&["notifications", "--json", "--server", &ws.server()]);
    remote.assert_code(0);
    let remote: Value = serde_json::from_str(&remote.stdout).unwrap();
    assert_eq!(remote.as_array().unwrap().len(), 5);
    daemon.stop();
}

#[test]
fn a_receiver_that_is_down_gets_the_notification_once_back_also_across_a_restart() {
    let port = free_port();
    let ws = Workspace::local("delivery: {attempts: 4, backoff: 1m, timeout: 5s}\n");
    ws.write(
        "jobs/a.yaml",
        &format!(
            "jobs:\n  broken:\n    task: loom.system.run\n    args: [\"false\"]\n    targets: [local]\n    \
             notifications:\n      - {{on: [failure], webhook: \"http://127.0.0.1:{port}/late\", \
             template: \"{{{{ job }}}} {{{{ event }}}}: {{{{ counts.failed }}}} failed\"}}\n"
        ),
    );
    let start = chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let daemon = InProcess::start(&ws, &clock, None);
    let fire = run(&ws, "broken")["fire"]["id"].as_i64().unwrap();
    // The first attempt finds nothing listening; the next is due a backoff later by the daemon's clock.
    assert!(wait_for(Duration::from_secs(20), || {
        notifications(&ws, "broken").first().is_some_and(|n| n["attempts"].as_array().unwrap().len() == 1)
    }));
    let pending = notifications(&ws, "broken").remove(0);
    assert_eq!(pending["state"], "pending", "{pending}");
    assert!(pending["attempts"][0]["error"].as_str().unwrap().contains("could not connect"), "{pending}");
    assert_eq!(pending["attempts"][0]["status_code"], Value::Null);
    assert!(!pending.to_string().contains("/late"), "a webhook's path is never shown: {pending}");
    let next: chrono::DateTime<Utc> = pending["next_attempt"].as_str().unwrap().parse().unwrap();
    assert_eq!(next, start + chrono::Duration::seconds(60), "{pending}");
    daemon.stop();

    // The receiver comes back while the daemon is down; a new daemon resumes the outbox.
    let receiver = Receiver::on(port);
    let daemon = InProcess::start(&ws, &clock, None);
    assert!(receiver.requests().is_empty(), "sent before its backoff was over");
    clock.advance(chrono::Duration::seconds(61));
    let got = receiver.wait_for(1, Duration::from_secs(20));
    assert_eq!(got[0].json()["fire_id"], fire);
    assert_eq!(got[0].json()["event"], "failure");
    assert_eq!(got[0].json()["text"], "broken failure: 1 failed");
    assert!(wait_for(Duration::from_secs(20), || notifications(&ws, "broken")[0]["state"] == "delivered"));
    let delivered = notifications(&ws, "broken").remove(0);
    let attempts = delivered["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{delivered}");
    assert_eq!(attempts[1]["status_code"], 200);
    assert_eq!(attempts[1]["at"].as_str().unwrap().parse::<chrono::DateTime<Utc>>().unwrap(), clock.now());
    assert_eq!(receiver.requests().len(), 1);
    daemon.stop();
}

#[test]
fn check_reports_every_bad_rule_at_its_place() {
    let ws = Workspace::local(
        "notifications:\n\
         \x20 - {on: [failure, exploded], webhook: \"ftp://example.com/x\"}\n\
         \x20 - {on: [failure], task: notes.nothing}\n\
         \x20 - {on: [failure], task: notes.wrong}\n\
         \x20 - {on: [failure], webhook: \"http://h.example/x\", secret_file: missing.key, template: \"{% if %}\"}\n\
         \x20 - {on: [success], task: notes.fine, webhook: \"http://h.example/x\"}\n\
         delivery: {attempts: 0}\n\
         public_url: loom.example.com\n",
    );
    ws.write("tasks/notes.rhai", "fn wrong(ssh) { }\nfn fine(ssh, event) { }\n");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  a:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [local]\n    \
         notifications:\n      - {on: [failur], webhook: \"not a url\"}\n      - {on: [drift], task: notes.fine}\n",
    );
    let run = ws.loom(&["check", "--json"]);
    run.assert_code(1);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let out: String = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let file = d["file"].as_str().unwrap_or_default().rsplit('/').next().unwrap().to_string();
            format!("{file}:{}:{}: {}\n", d["line"], d["column"], d["message"].as_str().unwrap())
        })
        .collect();
    for expected in [
        "loom.yaml:6:20: unknown notification event `exploded` in the main configuration",
        "loom.yaml:6:40: the webhook of the main configuration `ftp://example.com/…` is not an http or https URL",
        "loom.yaml:7:27: notifier task `notes.nothing`: module notes.rhai has no public function `nothing`",
        "loom.yaml:8:27: notifier task `notes.wrong` takes 1 parameter(s); a notifier is called as f(ssh, event)",
        "failed to read the secret_file",
        "the template of the main configuration does not compile",
        "needs exactly one of `webhook` and `task`",
        "`attempts` must be between 1 and 100, not 0",
        "`public_url` is not a URL",
        "a.yaml:7:15: unknown notification event `failur` in job `a`",
        "a.yaml:7:33: the webhook of job `a` is not a URL",
    ] {
        assert!(out.contains(expected), "no {expected:?} in:\n{out}");
    }
    // A secret named in a rule is never printed, only its file.
    ws.write("hook.key", "very-secret-key\n");
    let ok = Workspace::local(
        "notifications:\n  - {on: [failure], webhook: \"https://h.example/x\", secret_file: hook.key}\n",
    );
    ok.write("hook.key", "very-secret-key\n");
    let run = ok.loom(&["check"]);
    run.assert_code(0);
    assert!(!run.all().contains("very-secret-key"));
}

#[test]
fn a_skipped_fire_and_the_fires_a_catch_up_policy_drops_are_told() {
    let receiver = Receiver::start();
    let ws = Workspace::local("");
    ws.write(
        "jobs/a.yaml",
        &format!(
            "jobs:\n  minutely:\n    task: loom.system.run\n    args: [\"true\"]\n    schedule: \"* * * * *\"\n    \
             catchup: none\n    targets: [local]\n    notifications: [{{on: [missed], webhook: \"{0}\"}}]\n  \
             slow:\n    task: loom.system.run\n    args: [\"sleep 20\"]\n    schedule: \"* * * * *\"\n    \
             overlap: skip\n    catchup: none\n    targets: [local]\n    notifications: [{{on: [skipped], webhook: \"{0}\"}}]\n",
            receiver.url("/hook")
        ),
    );
    let clock = Arc::new(ManualClock::new("2026-01-01T10:00:30Z".parse().unwrap()));
    let daemon = InProcess::start(&ws, &clock, None);
    let status = || http("GET", &format!("{}/api/v1/status", ws.server()), None, None).1;

    // 10:01: slow starts and is still running at 10:02, which is skipped.
    move_clock(&ws, &clock, None, "slow", chrono::TimeDelta::seconds(31));
    assert!(wait_for(Duration::from_secs(20), || status()["running"].to_string().contains("\"slow\"")));
    let running = status()["running"].as_array().unwrap().iter().find(|f| f["job"] == "slow").unwrap().clone();
    move_clock(&ws, &clock, None, "slow", chrono::TimeDelta::seconds(60));
    let got = receiver.wait_for(1, Duration::from_secs(20));
    let skipped = got[0].json();
    assert_eq!((skipped["event"].as_str(), skipped["job"].as_str()), (Some("skipped"), Some("slow")), "{skipped}");
    assert_eq!(skipped["status"], "skipped");
    assert_eq!(skipped["scheduled"], "2026-01-01T10:02:00.000Z");
    assert!(skipped["note"].as_str().unwrap().contains("overlap: skip"), "{skipped}");
    assert!(skipped["fire_id"].is_i64(), "a skipped fire is recorded: {skipped}");
    let id = running["id"].as_i64().unwrap();
    let (code, body) = http("POST", &format!("{}/api/v1/fires/{id}/cancel", ws.server()), None, None);
    assert_eq!(code, 200, "{body}");

    // Five minutes stalled: `catchup: none` runs none of 10:03..10:07, and says so once.
    move_clock(&ws, &clock, None, "minutely", chrono::TimeDelta::minutes(5));
    let got = receiver.wait_for(2, Duration::from_secs(20));
    let missed = got.iter().map(|r| r.json()).find(|b| b["event"] == "missed").expect("a missed notification");
    assert_eq!(missed["job"], "minutely");
    assert_eq!(missed["status"], "missed");
    assert_eq!(missed["fire_id"], Value::Null);
    assert_eq!(missed["link"], Value::Null);
    assert_eq!(missed["api_link"], Value::Null);
    assert_eq!(missed["scheduled"], "2026-01-01T10:07:00.000Z");
    assert!(missed["note"].as_str().unwrap().starts_with("5 missed fire(s) not run"), "{missed}");
    assert!(missed["text"].as_str().unwrap().starts_with("minutely: missed (5 missed fire(s)"), "{missed}");
    daemon.stop();
    assert_eq!(receiver.requests().iter().filter(|r| r.json()["event"] == "missed").count(), 1);
}

#[test]
fn a_loom_run_without_a_daemon_is_told_by_the_next_daemon_and_a_non_2xx_answer_is_retried() {
    let receiver = Receiver::start();
    receiver.answer(503);
    let ws = Workspace::local("delivery: {attempts: 3, backoff: 30s}\n");
    ws.write(
        "jobs/a.yaml",
        &format!(
            "jobs:\n  broken:\n    task: loom.system.run\n    args: [\"false\"]\n    targets: [local]\n    \
             notifications: [{{on: [failure], webhook: \"{}\"}}]\n",
            receiver.url("/hook")
        ),
    );
    ws.loom(&["run", "broken"]).assert_code(1);
    let queued = ws.loom(&["notifications", "--json"]);
    queued.assert_code(0);
    let queued: Value = serde_json::from_str(&queued.stdout).unwrap();
    assert_eq!(
        (queued[0]["state"].as_str(), queued[0]["attempts"].as_array().map(Vec::len)),
        (Some("pending"), Some(0))
    );

    let clock = Arc::new(ManualClock::new(chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()));
    let daemon = InProcess::start(&ws, &clock, None);
    receiver.wait_for(1, Duration::from_secs(20));
    assert!(wait_for(Duration::from_secs(20), || notifications(&ws, "broken")[0]["attempts"]
        .as_array()
        .unwrap()
        .len()
        == 1));
    let first = notifications(&ws, "broken").remove(0);
    assert_eq!(first["state"], "pending", "{first}");
    assert_eq!(first["attempts"][0]["status_code"], 503);
    assert!(first["attempts"][0]["error"].as_str().unwrap().contains("503"), "{first}");
    receiver.answer(200);
    clock.advance(chrono::Duration::seconds(30));
    receiver.wait_for(2, Duration::from_secs(20));
    assert!(wait_for(Duration::from_secs(20), || notifications(&ws, "broken")[0]["state"] == "delivered"));
    daemon.stop();
}

#[test]
fn a_fire_a_killed_daemon_left_running_is_told_as_a_failure_by_the_next_start() {
    let receiver = Receiver::start();
    let ws = Workspace::local("");
    let (go, started) = (ws.path("go"), ws.path("started"));
    ws.write(
        "jobs/a.yaml",
        &format!(
            "jobs:\n  hang:\n    task: loom.system.run\n    \
             args: [\"touch {}; while [ ! -e {} ]; do sleep 0.1; done\"]\n    targets: [local]\n    \
             notifications: [{{on: [failure], webhook: \"{}\"}}]\n",
            started.display(),
            go.display(),
            receiver.url("/hook")
        ),
    );
    let daemon = ws.serve();
    daemon.wait_started();
    let (code, body) = http("POST", &format!("{}/api/v1/jobs/hang/run", ws.server()), None, None);
    assert_eq!(code, 202, "{body}");
    let fire = body["fire"].as_i64().unwrap();
    assert!(wait_for(Duration::from_secs(20), || started.exists()));
    daemon.signal("KILL");
    let _ = daemon.wait();
    // The orphaned command ends by itself.
    ws.write("go", "");

    let daemon = ws.serve();
    daemon.wait_started();
    let got = receiver.wait_for(1, Duration::from_secs(20));
    let body = got[0].json();
    assert_eq!((body["event"].as_str(), body["status"].as_str()), (Some("failure"), Some("interrupted")), "{body}");
    assert_eq!(body["fire_id"], fire);
    assert_eq!(body["note"], "the daemon stopped while this fire ran");
    assert_eq!(body["failed_nodes"][0]["status"], "interrupted", "{body}");
    assert_eq!(body["counts"]["interrupted"], 1, "{body}");
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(receiver.requests().len(), 1);
}

#[test]
fn a_check_mode_job_that_finds_drift_notifies_drift_once() {
    let receiver = Receiver::start();
    let ws = Workspace::local("");
    let path = ws.path("managed.txt");
    std::fs::write(&path, "edited\n").unwrap();
    ws.write(
        "jobs/a.yaml",
        &format!(
            "jobs:\n  drifting:\n    mode: check\n    targets: [local]\n    resources:\n      \
             - file: {{path: {}, content: \"declared\\n\"}}\n    notifications:\n      \
             - {{on: [drift, failure], webhook: {}}}\n",
            path.display(),
            receiver.url("/hook")
        ),
    );
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let daemon = InProcess::start(&ws, &clock, None);
    let fire = run(&ws, "drifting");
    assert_eq!(fire["fire"]["status"], "drift", "{fire}");
    let got = receiver.wait_for(1, Duration::from_secs(20));
    let body = got[0].json();
    assert_eq!((body["event"].as_str(), body["status"].as_str()), (Some("drift"), Some("drift")), "{body}");
    assert_eq!(body["fire_id"], fire["fire"]["id"]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "edited\n", "a check-mode job changed the node");
    // No drift, nothing to tell.
    std::fs::write(&path, "declared\n").unwrap();
    assert_eq!(run(&ws, "drifting")["fire"]["status"], "ok");
    assert_eq!(notifications(&ws, "drifting").len(), 1);
    daemon.stop();
}
