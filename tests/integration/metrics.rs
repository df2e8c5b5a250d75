//! `GET /metrics` after fires with known outcomes: the daemon in-process on a manual
//! clock, jobs that succeed, fail, get skipped and caught up; exact counter values,
//! tokens unless `metrics: {public: true}`, a reload that removes a job, and the
//! text checked by `promtool check metrics`.

use std::sync::Arc;
use std::time::Duration;

use loom::daemon::ManualClock;

use crate::harness::{InProcess, Workspace, http, move_clock, pass_seconds, wait_for};

const READER: &str = "reader-token-0123456789";

fn main_file(metrics: &str) -> String {
    format!("tokens: [{{token: {READER}, role: read}}]\n{metrics}")
}

fn jobs(with_bad: bool) -> String {
    let bad = "  bad:\n    task: loom.system.run\n    args: [\"false\"]\n    schedule: \"* * * * * *\"\n    targets: [local]\n";
    format!(
        "jobs:\n  good:\n    task: loom.system.run\n    args: [\"true\"]\n    schedule: \"* * * * * *\"\n    targets: [local, other]\n\
         {}  slow:\n    task: site.t.wait\n    args: [release]\n    schedule: \"* * * * * *\"\n    overlap: skip\n    targets: [local]\n",
        if with_bad { bad } else { "" }
    )
}

/// `(status, text)` of a scrape, with or without the read token.
fn scrape(ws: &Workspace, token: Option<&str>) -> (u16, String) {
    let (status, body) = http("GET", &format!("{}/metrics", ws.server()), token, None);
    (status, body.as_str().map(str::to_string).unwrap_or_else(|| body.to_string()))
}

/// The value of the sample written exactly `series` (name and labels), if any.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn value(ws: &Workspace, series: &str) -> Option<f64> {
    sample(&scrape(ws, Some(READER)).1, series)
}

fn wait_value(ws: &Workspace, series: &str, want: f64) {
    // Generous: the whole suite runs beside this test on two cores.
    let reached = wait_for(Duration::from_secs(60), || value(ws, series) == Some(want));
    assert!(reached, "{series} never reached {want}:\n{}", scrape(ws, Some(READER)).1);
}

#[test]
fn metrics_count_fires_by_outcome_and_pass_promtool() {
    let ws = Workspace::new(&main_file(""), "local:\n  local: true\nother:\n  local: true\n");
    let release = ws.path("release");
    ws.write(
        "tasks/site/t.rhai",
        "fn wait(ssh, path) { ssh.run(`while [ ! -e ${quote(path)} ]; do sleep 0.02; done`); }\n",
    );
    let slow_args = format!("args: [{:?}]", release.display().to_string());
    ws.write("jobs/a.yaml", &jobs(true).replace("args: [release]", &slow_args));
    let clock = Arc::new(ManualClock::new("2026-01-01T10:00:00.500Z".parse().unwrap()));
    let daemon = InProcess::start(&ws, &clock, Some(READER));

    // Behind the tokens: no token, no metrics.
    assert_eq!(scrape(&ws, None).0, 401);

    // Three seconds: `good` and `bad` fire each second; `slow` is still running
    // from the first, so its next two fires are skipped.
    for second in 1..=3 {
        pass_seconds(&ws, &clock, Some(READER), "good", 1);
        wait_value(&ws, "loom_fires_total{job=\"good\",outcome=\"ok\"}", second as f64);
        wait_value(&ws, "loom_fires_total{job=\"bad\",outcome=\"failed\"}", second as f64);
    }
    wait_value(&ws, "loom_fires_skipped_total{job=\"slow\",reason=\"overlap\"}", 2.0);
    assert_eq!(value(&ws, "loom_fires_running"), Some(1.0));
    ws.write("release.done", "");
    std::fs::write(&release, "go\n").unwrap();
    wait_value(&ws, "loom_fires_total{job=\"slow\",outcome=\"ok\"}", 1.0);

    // The host stalls for five minutes: each job runs the latest missed fire only,
    // leaving 299 of the 300 it missed.
    move_clock(&ws, &clock, Some(READER), "good", chrono::TimeDelta::minutes(5));
    wait_value(&ws, "loom_fires_total{job=\"good\",outcome=\"ok\"}", 4.0);
    wait_value(&ws, "loom_fires_total{job=\"bad\",outcome=\"failed\"}", 4.0);
    wait_value(&ws, "loom_fires_total{job=\"slow\",outcome=\"ok\"}", 2.0);
    wait_value(&ws, "loom_fires_running", 0.0);

    let (status, text) = scrape(&ws, Some(READER));
    assert_eq!(status, 200, "{text}");
    let exact = [
        ("loom_fires_total{job=\"good\",outcome=\"ok\"}", 4.0),
        ("loom_fires_total{job=\"bad\",outcome=\"failed\"}", 4.0),
        ("loom_fires_total{job=\"slow\",outcome=\"ok\"}", 2.0),
        ("loom_node_results_total{job=\"good\",status=\"ok\"}", 8.0),
        ("loom_node_results_total{job=\"bad\",status=\"failed\"}", 4.0),
        ("loom_node_results_total{job=\"slow\",status=\"ok\"}", 2.0),
        ("loom_fires_skipped_total{job=\"slow\",reason=\"overlap\"}", 2.0),
        ("loom_fires_catch_up_total{job=\"good\"}", 1.0),
        ("loom_fires_catch_up_total{job=\"bad\"}", 1.0),
        ("loom_fires_catch_up_total{job=\"slow\"}", 1.0),
        ("loom_fires_missed_total{job=\"good\"}", 299.0),
        ("loom_fires_missed_total{job=\"slow\"}", 299.0),
        ("loom_fire_duration_seconds_count{job=\"good\"}", 4.0),
        // First attempts of scheduled fires: good 3 × 2 nodes, bad 3, slow 1.
        ("loom_schedule_lag_seconds_count", 10.0),
        ("loom_fires_running", 0.0),
        ("loom_ssh_masters_open", 0.0),
    ];
    for (series, want) in exact {
        assert_eq!(sample(&text, series), Some(want), "{series}:\n{text}");
    }
    assert_eq!(sample(&text, "loom_fires_total{job=\"good\",outcome=\"failed\"}"), None, "{text}");
    assert!(!text.contains("node=\""), "no node label without per_node:\n{text}");
    let last_success = sample(&text, "loom_job_last_success_timestamp_seconds{job=\"good\"}").unwrap();
    assert!((last_success - chrono::Utc::now().timestamp() as f64).abs() < 600.0, "{last_success}");
    assert_eq!(sample(&text, "loom_job_last_success_timestamp_seconds{job=\"bad\"}"), None);
    assert!(sample(&text, "loom_store_write_seconds_count").unwrap() >= 1.0, "{text}");
    promtool(&ws, &text);
    // Prometheus itself asks for OpenMetrics, and gets it.
    let curl = std::process::Command::new("curl")
        .args(["-s", "-i", "-H", "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5"])
        .args(["-H", &format!("Authorization: Bearer {READER}"), &format!("{}/metrics", ws.server())])
        .output()
        .unwrap();
    let openmetrics = String::from_utf8_lossy(&curl.stdout);
    assert!(openmetrics.contains("content-type: application/openmetrics-text; version=1.0.0"), "{openmetrics}");
    assert!(openmetrics.contains("# TYPE loom_fires counter\nloom_fires_total{"), "{openmetrics}");
    assert!(openmetrics.trim_end().ends_with("# EOF"), "{openmetrics}");

    // A reload that fails (counted), one that makes the metrics public, and one that
    // removes `bad`, whose series go with it.
    ws.write("loom.yaml", &ws.read("loom.yaml").replace(&main_file(""), &main_file("metrics: {public: yes}\n")));
    wait_value(&ws, "loom_reloads_total{result=\"failed\"}", 1.0);
    ws.write("loom.yaml", &ws.read("loom.yaml").replace("public: yes", "public: true"));
    wait_value(&ws, "loom_reloads_total{result=\"ok\"}", 1.0);
    let (status, public) = scrape(&ws, None);
    assert_eq!(status, 200, "{public}");
    assert!(public.contains("loom_fires_total{job=\"bad\""), "{public}");
    ws.write("jobs/a.yaml", &jobs(false).replace("args: [release]", &slow_args));
    wait_value(&ws, "loom_reloads_total{result=\"ok\"}", 2.0);
    let text = scrape(&ws, None).1;
    assert!(!text.contains("job=\"bad\""), "a removed job's series go:\n{text}");
    assert_eq!(sample(&text, "loom_fires_total{job=\"good\",outcome=\"ok\"}"), Some(4.0), "{text}");
    daemon.stop();
}

/// `promtool check metrics` accepts the text (Debian's `prometheus` package).
fn promtool(ws: &Workspace, text: &str) {
    use std::io::Write;
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; .ci/run installs it)");
    check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = check.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    ws.write("metrics.txt", text);
    assert!(output.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\n{text}");
}
