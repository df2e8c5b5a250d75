//! The control plane against a running daemon: the REST API with tokens, `loom` as
//! a remote client, run-now, enable/disable across restarts, live tail, cancel,
//! status with reload errors, and shell completion.

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use loom::daemon::ManualClock;
use serde_json::{Value, json};

use crate::harness::{InProcess, Workspace, follow, free_port, loom_bin, pass_seconds, wait_for};

const ADMIN: &str = "admin-token-0123456789abcdef";
const READER: &str = "read-token-0123456789abcdef";

pub(crate) use crate::harness::http;

fn workspace() -> Workspace {
    let ws = Workspace::new(
        &format!("tokens:\n  - {{token: {ADMIN}, role: admin}}\n  - {{token_file: read.token, role: read}}\n"),
        "local:\n  local: true\n  password: hunter2-never-shown\n",
    );
    ws.write("read.token", &format!("{READER}\n"));
    let ticks = ws.path("ticks").display().to_string();
    ws.write(
        "tasks/site/t.rhai",
        "fn slow(ssh) { ssh.run(\"echo step1\"); ssh.run(\"sleep 2\"); ssh.run(\"echo step2\"); }\n",
    );
    ws.write(
        "jobs/a.yaml",
        &format!(
            "jobs:\n  hello:\n    task: loom.system.run\n    args: [\"echo hello from loom\"]\n    targets: [local]\n  \
             tick:\n    task: loom.system.run\n    args: [\"echo x >> {ticks}\"]\n    schedule: \"* * * * * *\"\n    targets: [local]\n  \
             slow:\n    task: site.t.slow\n    targets: [local]\n"
        ),
    );
    ws
}

fn remote(ws: &Workspace, token: &str, args: &[&str]) -> crate::harness::Run {
    let server = ws.server();
    let mut all = vec!["--server", server.as_str(), "--token", token];
    all.extend_from_slice(args);
    // No -c: a remote client needs no configuration of its own.
    crate::harness::loom(&all)
}

#[test]
fn the_api_and_the_remote_client_list_run_and_tail() {
    let ws = workspace();
    let api = format!("{}/api/v1", ws.server());
    let daemon = ws.serve();
    daemon.wait_started();

    // Lists, through HTTP (read token) and through the client.
    let (status, jobs) = http("GET", &format!("{api}/jobs"), Some(READER), None);
    assert_eq!(status, 200, "{jobs}");
    let names: Vec<&str> = jobs.as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["hello", "slow", "tick"]);
    assert!(jobs[2]["next"].is_string() && jobs[2]["enabled"] == true, "{jobs}");
    let listed = remote(&ws, READER, &["jobs"]);
    listed.assert_code(0);
    assert!(listed.stdout.contains("hello") && listed.stdout.contains("* * * * * *"), "{}", listed.stdout);
    let (_, nodes) = http("GET", &format!("{api}/nodes"), Some(READER), None);
    assert_eq!(nodes[0]["name"], "local");
    assert!(!nodes.to_string().contains("hunter2"), "{nodes}");

    // Run now, with per-node results, through HTTP and through the client.
    let (status, fire) = http("POST", &format!("{api}/jobs/hello/run?wait=true"), Some(ADMIN), Some(json!({})));
    assert_eq!(status, 200, "{fire}");
    assert_eq!(fire["fire"]["status"], "ok");
    assert_eq!(fire["results"][0]["node"], "local");
    assert!(fire["results"][0]["output"].as_str().unwrap().contains("hello from loom"), "{fire}");
    let run = remote(&ws, ADMIN, &["run", "hello", "-v"]);
    run.assert_code(0);
    assert!(run.stdout.contains("ok      local") && run.stdout.contains("hello from loom"), "{}", run.stdout);
    assert!(run.stdout.contains("by the daemon at"), "{}", run.stdout);
    let detail = remote(&ws, READER, &["logs", &fire["fire"]["id"].to_string()]);
    detail.assert_code(0);
    assert!(detail.stdout.contains("| hello from loom"), "{}", detail.stdout);

    // Tail a running fire: its first step shows before the fire ends.
    let mut tail = follow(&["--server", &ws.server(), "--token", READER, "tail", "slow", "--fires", "1"]);
    let (status, started) = http("POST", &format!("{api}/jobs/slow/run"), Some(ADMIN), None);
    assert_eq!(status, 202, "{started}");
    let lines: Vec<String> = BufReader::new(tail.stdout.take().unwrap()).lines().map(Result::unwrap).collect();
    assert!(tail.wait().unwrap().success());
    let at = |needle: &str| {
        lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no {needle:?} in {lines:#?}"))
    };
    assert!(at("started (manual)") < at("[slow local] step1"));
    assert!(at("[slow local] step1") < at("[slow local] $ sleep 2"));
    assert!(at("[slow local] $ sleep 2") < at("[slow local] step2"));
    assert!(at("[slow local] step2") < at("[slow local] ok in"));
    assert!(at("[slow local] ok in") < lines.iter().rposition(|l| l.starts_with("== slow fire")).unwrap());

    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn tokens_are_required_and_read_tokens_cannot_act() {
    let ws = workspace();
    let api = format!("{}/api/v1", ws.server());
    let daemon = ws.serve();
    daemon.wait_started();
    let (status, body) = http("GET", &format!("{api}/jobs"), None, None);
    assert_eq!(status, 401);
    assert!(body["error"].as_str().unwrap().contains("missing bearer token"), "{body}");
    let (status, body) = http("GET", &format!("{api}/jobs"), Some("wrong-token-0123456789"), None);
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid token");
    for action in ["jobs/hello/run", "jobs/tick/disable", "reload", "fires/1/cancel"] {
        let (status, body) = http("POST", &format!("{api}/{action}"), Some(READER), None);
        assert_eq!(status, 403, "{action}: {body}");
        assert!(body["error"].as_str().unwrap().contains("may only read"), "{body}");
    }
    let denied = remote(&ws, READER, &["disable", "tick"]);
    denied.assert_code(1);
    assert!(denied.stderr.contains("answered 403"), "{}", denied.stderr);
    let (status, body) = http("GET", &format!("{api}/jobs/nope"), Some(READER), None);
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("no job named `nope`"), "{body}");
    let (status, doc) = http("GET", &format!("{api}/openapi.json"), None, None);
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/jobs/{name}/run"]["post"].is_object());
    daemon.stop();
}

#[test]
fn binding_beyond_loopback_without_tokens_is_refused() {
    let ws = Workspace::local(&format!("listen: 0.0.0.0:{}\n", free_port()));
    let (code, log) = ws.serve().wait();
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("refusing to serve the API on 0.0.0.0:"), "{log}");
    assert!(log.contains("no API tokens are configured"), "{log}");
}

#[test]
fn status_cancel_and_reload_through_the_local_daemon() {
    let ws = workspace();
    let api = format!("{}/api/v1", ws.server());
    let daemon = ws.serve();
    daemon.wait_started();
    // Without --server the CLI finds the daemon from the configuration (and its token).
    let status = ws.loom(&["status"]);
    status.assert_code(0);
    assert!(status.stdout.contains("3 job(s), 1 node(s)") && status.stdout.contains("tick"), "{}", status.stdout);

    let (_, started) = http("POST", &format!("{api}/jobs/slow/run"), Some(ADMIN), None);
    let fire = started["fire"].as_i64().unwrap();
    let running = || {
        let status: Value = serde_json::from_str(&ws.loom(&["status", "--json"]).stdout).unwrap();
        status["running"].as_array().unwrap().iter().any(|f| f["id"] == fire)
    };
    assert!(wait_for(Duration::from_secs(10), running), "fire {fire} never showed as running");
    let (status, body) = http("POST", &format!("{api}/fires/{fire}/cancel"), Some(ADMIN), None);
    assert_eq!(status, 200, "{body}");
    assert!(wait_for(Duration::from_secs(10), || {
        http("GET", &format!("{api}/fires/{fire}"), Some(READER), None).1["fire"]["status"] == "interrupted"
    }));

    // A broken manifest: status shows the errors until a reload succeeds.
    ws.write(
        "jobs/broken.yaml",
        "jobs:\n  b:\n    task: loom.system.run\n    schedule: \"nope\"\n    targets: [local]\n",
    );
    let reload = ws.loom(&["reload"]);
    reload.assert_code(1);
    assert!(reload.stderr.contains("jobs/broken.yaml:4:15"), "{}", reload.stderr);
    let status = ws.loom(&["status"]);
    assert!(status.stdout.contains("the last reload failed"), "{}", status.stdout);
    assert!(status.stdout.contains("bad cron expression"), "{}", status.stdout);
    std::fs::remove_file(ws.path("jobs/broken.yaml")).unwrap();
    let reload = ws.loom(&["reload"]);
    reload.assert_code(0);
    assert!(!ws.loom(&["status"]).stdout.contains("reload failed"));
    daemon.stop();
}

#[test]
fn bash_completion_offers_the_configured_job_and_node_names() {
    let ws = Workspace::new("", "web1:\n  local: true\nweb2:\n  local: true\n");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  backup:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [web1]\n  \
         deploy:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [web2]\n",
    );
    let script = ws.path("loom.bash");
    let generated = ws.loom(&["completions", "bash"]);
    generated.assert_code(0);
    std::fs::write(&script, &generated.stdout).unwrap();
    let bin = std::path::Path::new(loom_bin()).parent().unwrap().display().to_string();
    let complete = |line: &str| -> String {
        let words: Vec<&str> = line.split(' ').collect();
        let program = format!(
            "source {script}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; _loom_dynamic loom; echo \"${{COMPREPLY[*]}}\"",
            script = script.display(),
            words = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
            cword = words.len() - 1,
        );
        let out = Command::new("bash")
            .args(["-c", &program])
            .env("PATH", format!("{bin}:/usr/bin:/bin"))
            .env("LOOM_CONFIG", ws.config())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(complete("loom run "), "backup deploy");
    assert_eq!(complete("loom run de"), "deploy");
    assert_eq!(complete("loom disable b"), "backup");
    assert_eq!(complete("loom run backup --node "), "web1 web2");
    assert!(complete("loom ").contains("serve"), "subcommands still complete");
    for shell in ["zsh", "fish"] {
        let script = ws.loom(&["completions", shell]);
        script.assert_code(0);
        assert!(script.stdout.contains("loom jobs --names"), "{shell}:\n{}", script.stdout);
    }
}

#[test]
fn the_api_can_serve_https() {
    let ws = workspace();
    let cert = ws.path("cert.pem");
    let key = ws.path("key.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let main = ws.read("loom.yaml");
    ws.write("loom.yaml", &format!("{main}tls:\n  cert: cert.pem\n  key: key.pem\n"));
    let daemon = ws.serve();
    daemon.wait_started();
    assert!(daemon.log().contains("API listening (https)"), "{}", daemon.log());
    let url = ws.server().replace("http://", "https://");
    let out = Command::new("curl")
        .args(["-sk", "-H", &format!("Authorization: Bearer {READER}"), &format!("{url}/api/v1/jobs")])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("\"name\":\"hello\""), "{body}");
    daemon.stop();
}

/// How many fires of `job` are on record.
fn fires_of(ws: &Workspace, job: &str) -> usize {
    let run = ws.loom(&["history", job, "--json", "--limit", "1000"]);
    run.assert_code(0);
    serde_json::from_str::<Value>(&run.stdout).unwrap().as_array().unwrap().len()
}

#[test]
fn a_disabled_job_stays_quiet_also_after_a_restart_until_enabled() {
    let ws = workspace();
    // Time passes by `tock`, which stays enabled: a disabled job has no next fire.
    ws.write(
        "jobs/b.yaml",
        "jobs:\n  tock:\n    task: loom.system.run\n    args: [\"true\"]\n    schedule: \"* * * * * *\"\n    targets: [local]\n",
    );
    let clock = Arc::new(ManualClock::new("2026-01-01T10:00:00.500Z".parse().unwrap()));
    let daemon = InProcess::start(&ws, &clock, Some(READER));
    pass_seconds(&ws, &clock, Some(READER), "tick", 2);
    assert_eq!(fires_of(&ws, "tick"), 2);

    remote(&ws, ADMIN, &["disable", "tick"]).assert_code(0);
    pass_seconds(&ws, &clock, Some(READER), "tock", 5);
    assert_eq!(fires_of(&ws, "tick"), 2, "a disabled job fired");
    daemon.stop();

    let daemon = InProcess::start(&ws, &clock, Some(READER));
    pass_seconds(&ws, &clock, Some(READER), "tock", 5);
    assert_eq!(fires_of(&ws, "tick"), 2, "a disabled job fired after a restart");
    assert!(ws.loom(&["jobs"]).stdout.contains("(disabled)"));
    // Nor is it among the next fires (the dashboard's, `loom status`).
    let (_, status) = http("GET", &format!("{}/api/v1/status", ws.server()), Some(READER), None);
    let next: Vec<&str> = status["next"].as_array().unwrap().iter().map(|n| n["job"].as_str().unwrap()).collect();
    assert!(!next.contains(&"tick"), "{status}");

    let (status, job) = http("POST", &format!("{}/api/v1/jobs/tick/enable", ws.server()), Some(ADMIN), None);
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["enabled"], true);
    let (_, status) = http("GET", &format!("{}/api/v1/status", ws.server()), Some(READER), None);
    assert!(status["next"].as_array().unwrap().iter().any(|n| n["job"] == "tick"), "{status}");
    pass_seconds(&ws, &clock, Some(READER), "tick", 2);
    assert_eq!(fires_of(&ws, "tick"), 4, "an enabled job did not fire");
    daemon.stop();
}
