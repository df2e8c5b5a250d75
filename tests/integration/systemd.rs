//! Fitting systemd: the unit file passes `systemd-analyze verify`; `loom serve`
//! tells `$NOTIFY_SOCKET` READY=1 once its API answers, RELOADING=1 and READY=1
//! around a SIGHUP reload, feeds the watchdog and says STOPPING=1; with
//! `LOOM_LOG_FORMAT=json` every log line is a JSON object with job/node/fire fields.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Workspace, http, repo_root};

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(repo_root().join("dist/loom.service")).unwrap();
    // The unit names the installed binary; here it is the one just built (the
    // package check in .ci/run verifies the installed unit as it is).
    let unit = unit.replace("/usr/bin/loom", crate::harness::loom_bin());
    let path = dir.path().join("loom.service");
    std::fs::write(&path, unit).unwrap();
    let verify = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd; .ci/run installs it)");
    let said = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    assert!(verify.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");
}

/// Reads datagrams until one contains `want`; returns it.
fn until(socket: &UnixDatagram, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buffer = [0u8; 4096];
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buffer) {
            let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
            if message.lines().any(|line| line == want) {
                return message;
            }
            seen.push(message);
        }
    }
    panic!("no {want} on NOTIFY_SOCKET; got {seen:?}");
}

#[test]
fn serve_notifies_systemd_and_logs_json_lines() {
    let ws = Workspace::local("");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  hello:\n    task: loom.system.run\n    args: [\"echo hi\"]\n    targets: [local]\n",
    );
    let path = ws.path("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let daemon = ws.serve_env(&[
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", "400000"),
        ("LOOM_LOG_FORMAT", "json"),
    ]);

    let ready = until(&socket, "READY=1");
    assert!(ready.contains("STATUS=1 jobs, 1 nodes"), "{ready}");
    // Ready means the API answers already.
    let (status, _) = http("GET", &format!("{}/api/v1/status", ws.server()), None, None);
    assert_eq!(status, 200);
    // The loop feeds the watchdog at half of WATCHDOG_USEC.
    until(&socket, "WATCHDOG=1");
    until(&socket, "WATCHDOG=1");

    daemon.signal("HUP");
    let reloading = until(&socket, "RELOADING=1");
    let monotonic = reloading.lines().find_map(|l| l.strip_prefix("MONOTONIC_USEC=")).expect(&reloading);
    assert!(monotonic.parse::<u64>().unwrap() > 0, "{reloading}");
    until(&socket, "READY=1");

    ws.loom(&["run", "hello"]).assert_code(0);
    daemon.signal("TERM");
    until(&socket, "STOPPING=1");
    let (code, log) = daemon.wait();
    assert_eq!(code, Some(0), "{log}");

    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}")))
        .collect();
    let finished = lines.iter().find(|l| l["message"] == "fire finished").expect(&log);
    assert_eq!(finished["job"], "hello", "{finished}");
    assert!(finished["fire"].as_i64().is_some() && finished["seconds"].as_f64().is_some(), "{finished}");
    assert_eq!(finished["level"], "INFO", "{finished}");
    let node = lines.iter().find(|l| l["message"] == "node ok").expect(&log);
    assert_eq!(node["span"]["job"], "hello", "{node}");
    assert_eq!(node["span"]["node"], "local", "{node}");
    assert!(node["span"]["fire"].as_i64().is_some() && node["seconds"].as_f64().is_some(), "{node}");
    let output = lines.iter().find(|l| l["message"] == "hi").expect(&log);
    assert_eq!(output["target"], "loom::output", "{output}");
    assert!(!log.contains('\u{1b}'), "{log}");
}
