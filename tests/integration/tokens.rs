//! API settings at reload: token changes (inline and token files) apply at once, a
//! revoked token is refused from then on; `listen` needs a restart, and `loom status`
//! says so until the old value is back.

use std::time::Duration;

use serde_json::Value;

use crate::api::http;
use crate::harness::{Workspace, free_port, loom};

const ADMIN: &str = "admin-token-0123456789abcdef";
const READER: &str = "read-token-0123456789abcdef";
const NEW: &str = "new-token-0123456789abcdef";
const ROTATED: &str = "rotated-file-token-0123456789";

fn status(server: &str, args: &[&str]) -> crate::harness::Run {
    let mut all = vec!["--server", server, "--token", ADMIN, "status"];
    all.extend_from_slice(args);
    loom(&all)
}

#[test]
fn token_changes_apply_at_reload_and_listen_waits_for_a_restart() {
    let ws = Workspace::local(&format!(
        "tokens:\n  - {{token: {ADMIN}, role: admin}}\n  - {{token: {READER}, role: read}}\n  - {{token_file: file.token, role: read}}\n"
    ));
    ws.write("file.token", "file-token-0123456789abcdef\n");
    let server = ws.server();
    let jobs = format!("{server}/api/v1/jobs");
    let reload = || {
        let (code, body) = http("POST", &format!("{server}/api/v1/reload"), Some(ADMIN), None);
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["ok"], true, "{body}");
    };
    let daemon = ws.serve();
    daemon.wait_started();
    for token in [ADMIN, READER, "file-token-0123456789abcdef"] {
        assert_eq!(http("GET", &jobs, Some(token), None).0, 200, "{token}");
    }
    assert_eq!(http("GET", &jobs, Some(NEW), None).0, 401);

    // READER is revoked, NEW added, the token file rotated: all in force after the reload.
    let main = ws.read("loom.yaml");
    ws.write(
        "loom.yaml",
        &main.replace(&format!("{{token: {READER}, role: read}}"), &format!("{{token: {NEW}, role: read}}")),
    );
    ws.write("file.token", &format!("{ROTATED}\n"));
    reload();
    let (code, body) = http("GET", &jobs, Some(READER), None);
    assert_eq!((code, body["error"].as_str()), (401, Some("invalid token")), "a revoked token still works");
    assert_eq!(http("GET", &jobs, Some("file-token-0123456789abcdef"), None).0, 401, "the old file token");
    assert_eq!(http("GET", &jobs, Some(NEW), None).0, 200, "the new token");
    assert_eq!(http("GET", &jobs, Some(ROTATED), None).0, 200, "the rotated file token");
    assert!(daemon.log().contains("API tokens replaced"), "{}", daemon.log());
    let quiet = status(&server, &["--json"]);
    quiet.assert_code(0);
    let view: Value = serde_json::from_str(&quiet.stdout).unwrap();
    assert_eq!(view["restart_pending"], serde_json::json!([]), "tokens need no restart: {view}");

    // Rotating the token file alone reloads by itself: the file is watched.
    let again = "rotated-again-0123456789abcdef";
    ws.write("file.token", &format!("{again}\n"));
    let rotated = crate::harness::wait_for(Duration::from_secs(20), || http("GET", &jobs, Some(again), None).0 == 200);
    assert!(rotated, "a rotated token file was not picked up: {}", daemon.log());
    assert_eq!(http("GET", &jobs, Some(ROTATED), None).0, 401, "the token the file held before");

    // A new listen address waits for a restart; status shows it, in text and JSON.
    let old = server.trim_start_matches("http://").to_string();
    let new = format!("127.0.0.1:{}", free_port());
    let main = ws.read("loom.yaml");
    ws.write("loom.yaml", &main.replace(&format!("listen: {old}"), &format!("listen: {new}")));
    reload();
    let json = status(&server, &["--json"]);
    json.assert_code(0);
    let view: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        view["restart_pending"],
        serde_json::json!([{ "setting": "listen", "in_force": old, "configured": new }]),
        "{view}"
    );
    let text = status(&server, &[]);
    assert!(text.stdout.contains("restart pending"), "{}", text.stdout);
    assert!(text.stdout.contains(&format!("listen: {old} in force, {new} configured")), "{}", text.stdout);
    assert!(
        daemon.log().contains("the `listen` setting changed; it takes effect when the daemon restarts"),
        "{}",
        daemon.log()
    );

    // Back to the address in force: nothing pending any more.
    ws.write("loom.yaml", &main);
    reload();
    let view: Value = serde_json::from_str(&status(&server, &["--json"]).stdout).unwrap();
    assert_eq!(view["restart_pending"], serde_json::json!([]), "{view}");
    assert!(!status(&server, &[]).stdout.contains("restart pending"));
    let (_, doc) = http("GET", &format!("{server}/api/v1/openapi.json"), None, None);
    assert!(doc["components"]["schemas"]["Status"]["properties"]["restart_pending"].is_object(), "{doc}");
    daemon.stop();
}
