//! The live event stream does not lose events silently: every event has an id, a
//! client coming back with `Last-Event-ID` gets what it missed (or an explicit
//! `lagged`), and `loom tail` follows the daemon across a restart.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::Value;

use crate::api::http;
use crate::harness::{Workspace, loom_bin};

/// One event as a client sees it.
#[derive(Debug)]
struct Seen {
    id: String,
    kind: String,
    data: Value,
}

/// Reads `/events` (from `after`, for `job`) until `done` holds for what was read,
/// calling `opened` once the stream is open; fails after a minute.
fn read_events(
    server: &str,
    job: Option<&str>,
    after: Option<&str>,
    opened: impl FnOnce(),
    mut done: impl FnMut(&[Seen]) -> bool,
) -> Vec<Seen> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new().get(format!("{server}/api/v1/events"));
        if let Some(job) = job {
            request = request.query(&[("job", job)]);
        }
        if let Some(after) = after {
            request = request.header("Last-Event-ID", after);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        opened();
        let mut stream = response.bytes_stream().eventsource();
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !done(&seen) {
            let next = tokio::time::timeout_at(deadline, stream.next()).await;
            let message = next.unwrap_or_else(|_| panic!("timed out; events so far: {seen:#?}")).unwrap().unwrap();
            let data = serde_json::from_str(&message.data).unwrap();
            seen.push(Seen { id: message.id, kind: message.event, data });
        }
        seen
    })
}

fn finished(job: &str) -> impl FnMut(&[Seen]) -> bool {
    move |seen| seen.last().is_some_and(|s| s.kind == "fire-finished" && s.data["job"] == job)
}

fn run(server: &str, job: &str) -> i64 {
    let (status, fire) = http("POST", &format!("{server}/api/v1/jobs/{job}/run?wait=true"), None, None);
    assert_eq!(status, 200, "{fire}");
    fire["fire"]["id"].as_i64().unwrap()
}

fn workspace() -> Workspace {
    let ws = Workspace::local("");
    ws.write("tasks/site/t.rhai", "fn flood(ssh) { for i in 0..11000 { print(i); } }\n");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  hello:\n    task: loom.system.run\n    args: [\"echo hello from loom\"]\n    targets: [local]\n  \
         other:\n    task: loom.system.run\n    args: [\"echo other\"]\n    targets: [local]\n  \
         flood:\n    task: site.t.flood\n    targets: [local]\n",
    );
    ws
}

#[test]
fn a_client_coming_back_with_last_event_id_gets_the_events_it_missed() {
    let ws = workspace();
    let server = ws.server();
    let daemon = ws.serve();
    daemon.wait_started();

    // A client follows one fire of `hello`, then goes away.
    let first = read_events(
        &server,
        Some("hello"),
        None,
        || {
            let server = ws.server();
            std::thread::spawn(move || run(&server, "hello"));
        },
        finished("hello"),
    );
    let ids: Vec<u64> = first.iter().map(|s| s.id.parse().expect("every event has a numeric id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let kinds: Vec<&str> = first.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"fire-started"), "{first:#?}");
    assert!(kinds.contains(&"node-finished"), "{first:#?}");
    let last = first.last().unwrap().id.clone();

    // While it is away, another job and `hello` run.
    run(&server, "other");
    let missed_fire = run(&server, "hello");

    // Back with Last-Event-ID: exactly what it missed of `hello`, in order, then live.
    let back = read_events(&server, Some("hello"), Some(&last), || {}, finished("hello"));
    let kinds: Vec<&str> = back.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"fire-started"), "{back:#?}");
    assert!(kinds.contains(&"output") && kinds.contains(&"node-finished"), "{back:#?}");
    assert!(back.iter().all(|s| s.data["job"] == "hello" && s.data["fire"] == missed_fire), "{back:#?}");
    assert!(back.iter().any(|s| s.data["text"].as_str().is_some_and(|t| t.contains("hello from loom"))), "{back:#?}");
    assert!(back.iter().all(|s| s.id.parse::<u64>().unwrap() > last.parse::<u64>().unwrap()));

    // Without Last-Event-ID, only live events: the next ones are of a new fire.
    let live = read_events(
        &server,
        Some("hello"),
        None,
        || {
            let server = ws.server();
            std::thread::spawn(move || run(&server, "hello"));
        },
        finished("hello"),
    );
    assert!(live.iter().all(|s| s.data["fire"] != missed_fire), "{live:#?}");
    daemon.stop();
}

#[test]
fn a_client_asking_for_events_no_longer_kept_gets_lagged_and_the_stream_goes_on() {
    let ws = workspace();
    let server = ws.server();
    let daemon = ws.serve();
    daemon.wait_started();
    let first = read_events(
        &server,
        None,
        None,
        || {
            let server = ws.server();
            std::thread::spawn(move || run(&server, "hello"));
        },
        finished("hello"),
    );
    let oldest = first[0].id.clone();

    // More events than the daemon keeps (10,000).
    run(&server, "flood");

    let back = read_events(&server, None, Some(&oldest), || {}, finished("flood"));
    assert_eq!(back[0].kind, "lagged", "{:#?}", &back[..3]);
    assert_eq!(back[0].id, "", "a lagged event has no id of its own");
    let missed = back[0].data["missed"].as_u64().unwrap();
    assert!(missed >= 1, "{:?}", back[0]);
    assert_eq!(back[0].data["type"], "lagged");
    // The stream goes on right after what was lost, up to the end of the flood.
    let next: u64 = back[1].id.parse().unwrap();
    assert_eq!(next, oldest.parse::<u64>().unwrap() + missed + 1);
    assert!(back[1..].iter().all(|s| s.kind != "lagged"));
    let (_, doc) = http("GET", &format!("{server}/api/v1/openapi.json"), None, None);
    let described = doc["paths"]["/events"]["get"]["parameters"].to_string();
    assert!(described.contains("Last-Event-ID"), "{described}");
    assert!(doc["components"]["schemas"]["Lagged"]["properties"]["missed"].is_object(), "{doc}");
    daemon.stop();
}

/// A node's failed attempt that a retry follows says so (`retrying`), so a reader
/// (the web pages, `loom tail`) does not take the node for done; its last attempt
/// does not.
#[test]
fn a_failed_attempt_with_a_retry_to_come_says_so() {
    let ws = Workspace::local("");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  flaky:\n    task: loom.system.run\n    args: [\"exit 3\"]\n    targets: [local]\n    retries: 1\n    retry_delay: 0s\n",
    );
    let server = ws.server();
    let daemon = ws.serve();
    daemon.wait_started();
    let seen = read_events(
        &server,
        Some("flaky"),
        None,
        || {
            let server = ws.server();
            std::thread::spawn(move || run(&server, "flaky"));
        },
        finished("flaky"),
    );
    let ends: Vec<(u64, bool)> = seen
        .iter()
        .filter(|s| s.kind == "node-finished")
        .map(|s| (s.data["attempt"].as_u64().unwrap(), s.data["retrying"].as_bool().unwrap()))
        .collect();
    assert_eq!(ends, [(1, true), (2, false)], "{seen:#?}");
    daemon.stop();
}

/// Lines of a child's pipe, as they come.
fn lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// Waits for a line starting with `start` and containing `needle`, keeping the
/// lines read meanwhile in `seen`.
fn wait_line(lines: &mpsc::Receiver<String>, start: &str, needle: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.starts_with(start) && line.contains(needle);
                seen.push(line);
                if found {
                    return;
                }
            }
            Err(_) => panic!("no line {start:?}…{needle:?}; got {seen:#?}"),
        }
    }
}

#[test]
fn loom_tail_keeps_following_across_a_daemon_restart() {
    let ws = workspace();
    let server = ws.server();
    let daemon = ws.serve();
    daemon.wait_started();
    let mut tail = Command::new(loom_bin())
        .args(["--server", &server, "tail", "hello", "--fires", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines(tail.stdout.take().unwrap());
    let err = lines(tail.stderr.take().unwrap());
    let (mut printed, mut said) = (Vec::new(), Vec::new());
    // Said once the stream is open: from then on no event is missed.
    wait_line(&err, "following", "Ctrl-C", &mut said);
    let first = run(&server, "hello");
    wait_line(&out, &format!("== hello fire {first} ok"), "", &mut printed);
    let before = printed.len();

    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    wait_line(&err, "lost the daemon", "reconnecting", &mut said);
    let daemon = ws.serve();
    daemon.wait_started();
    let fire = run(&server, "hello");
    wait_line(&out, &format!("== hello fire {fire} ok"), "", &mut printed);
    let after = &printed[before..];
    assert!(after.iter().any(|l| l == "[hello local] hello from loom"), "{printed:#?}");
    let status = tail.wait().unwrap();
    assert!(status.success(), "{status:?}; {said:#?}");
    let said: Vec<String> = said.into_iter().chain(err.try_iter()).collect();
    assert_eq!(said.iter().filter(|l| l.contains("reconnecting")).count(), 1, "{said:#?}");
    assert!(said.iter().any(|l| l.contains("again")), "{said:#?}");
    daemon.stop();
}

/// Output is followed while a command runs, not only when it ends: each node's
/// command prints a line to stdout and one to stderr and then waits on a FIFO that
/// the test opens only once `loom tail` has shown both lines — through the kept shell
/// of an SSH node, and on a local node. The record keeps the whole output.
#[test]
fn a_command_s_output_arrives_while_the_command_still_runs() {
    let fleet = crate::harness::sshd::Fleet::start(1);
    let gates = fleet.shared_dir("gates");
    let ws = Workspace::new(&fleet.ssh_settings("strict"), &format!("local:\n  local: true\n{}", fleet.nodes_yaml()));
    ws.write(
        "tasks/site/t.rhai",
        "fn waits(ssh, gates) { ssh.run(`echo first; echo to-stderr >&2; read go < ${gates}/${ssh.node}; echo second`); }\n",
    );
    ws.write(
        "jobs/a.yaml",
        &format!(
            "jobs:\n  live:\n    task: site.t.waits\n    args: [\"{}\"]\n    targets: [local, n01]\n",
            gates.display()
        ),
    );
    for node in ["local", "n01"] {
        let gate = gates.join(node);
        assert!(Command::new("mkfifo").args(["-m", "666"]).arg(&gate).status().unwrap().success());
    }
    let server = ws.server();
    let daemon = ws.serve();
    daemon.wait_started();
    let mut tail = crate::harness::follow(&["--server", &server, "tail", "live", "--fires", "1"]);
    let out = lines(tail.stdout.take().unwrap());
    let (status, accepted) = http("POST", &format!("{server}/api/v1/jobs/live/run"), None, None);
    assert_eq!(status, 202, "{accepted}");
    let mut printed = Vec::new();
    // Stdout and stderr are two pipes: their lines may come in either order.
    let wanted: Vec<String> = ["local", "n01"]
        .iter()
        .flat_map(|node| [format!("[live {node}] first"), format!("[live {node}] to-stderr")])
        .collect();
    while !wanted.iter().all(|line| printed.contains(line)) {
        let line = out.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("{printed:#?}"));
        printed.push(line);
    }
    // Both commands are still waiting on their gates: nothing has ended.
    assert!(!printed.iter().any(|l| l.ends_with("] second") || l.contains(" ok in ")), "{printed:#?}");
    for node in ["local", "n01"] {
        std::fs::write(gates.join(node), "go\n").unwrap();
    }
    wait_line(&out, "== live fire", "ok", &mut printed);
    assert!(tail.wait().unwrap().success());
    for node in ["local", "n01"] {
        let at = |needle: &str| printed.iter().position(|l| l == &format!("[live {node}] {needle}"));
        assert!(at("first") < at("second") && at("second").is_some(), "{printed:#?}");
        // The rest of a line is told once, not again when the command ends.
        assert_eq!(printed.iter().filter(|l| l.ends_with("] first") && l.contains(node)).count(), 1, "{printed:#?}");
    }
    let fire = accepted["fire"].as_i64().unwrap();
    let (_, detail) = http("GET", &format!("{server}/api/v1/fires/{fire}"), None, None);
    for result in detail["results"].as_array().unwrap() {
        let output = result["output"].as_str().unwrap();
        assert!(output.contains("first\nsecond\nto-stderr\n"), "{detail}");
    }
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
}
