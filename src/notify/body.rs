//! What a notification says: the documented JSON body (schema 1), its `text`, its
//! signature.
//!
//! The fire's facts (the payload) are taken when the fire ends, and kept in the
//! outbox; the body adds the event, the fire's link and the `text` when it is sent.
//! Built the same way at every attempt, so a retry sends the same bytes. The
//! template gets the body (without `text`) as its context. Nothing here sends.

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::runner::FireReport;
use crate::store::{NodeStatus, Trigger};

/// The body's `schema`: raised only when a field changes meaning or goes away.
pub const SCHEMA: u64 = 1;

fn time(at: Option<DateTime<Utc>>) -> Value {
    at.map_or(Value::Null, |at| Value::String(at.to_rfc3339_opts(SecondsFormat::Millis, true)))
}

/// A node's final attempt in a fire, as the body tells it.
pub(crate) struct NodeOutcome {
    pub(crate) node: String,
    pub(crate) attempt: u32,
    pub(crate) status: NodeStatus,
    pub(crate) exit_code: Option<i32>,
    pub(crate) error: Option<String>,
}

/// A fire's (scheduled, started, finished) instants, where it has them.
pub(crate) type Times = (Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The facts of a fire: everything of the body but `schema`, `event`, `fire_id`,
/// `link`, `api_link` and `text`.
pub(crate) fn payload(
    job: &str,
    trigger: Trigger,
    status: &str,
    times: Times,
    nodes: &[NodeOutcome],
    note: Option<&str>,
) -> Map<String, Value> {
    let mut counts = Map::new();
    for status in
        [NodeStatus::Ok, NodeStatus::Failed, NodeStatus::TimedOut, NodeStatus::Skipped, NodeStatus::Interrupted]
    {
        let count = nodes.iter().filter(|n| n.status == status).count();
        counts.insert(status.as_str().to_string(), json!(count));
    }
    let failed: Vec<Value> = nodes
        .iter()
        .filter(|n| n.status != NodeStatus::Ok)
        .map(|n| {
            json!({
                "node": n.node,
                "status": n.status,
                "attempt": n.attempt,
                "exit_code": n.exit_code,
                "error": n.error,
            })
        })
        .collect();
    let mut payload = Map::new();
    payload.insert("job".into(), json!(job));
    payload.insert("trigger".into(), json!(trigger));
    payload.insert("status".into(), json!(status));
    payload.insert("scheduled".into(), time(times.0));
    payload.insert("started".into(), time(times.1));
    payload.insert("finished".into(), time(times.2));
    payload.insert("note".into(), json!(note));
    payload.insert("nodes".into(), json!(nodes.len()));
    payload.insert("counts".into(), Value::Object(counts));
    payload.insert("failed_nodes".into(), Value::Array(failed));
    payload
}

/// The facts of a fire that ran, as its end is recorded (`finished` is added then).
pub(crate) fn fire_payload(report: &FireReport) -> Map<String, Value> {
    let nodes: Vec<NodeOutcome> = report
        .results
        .iter()
        .map(|r| NodeOutcome {
            node: r.node.clone(),
            attempt: r.attempt,
            status: r.status,
            exit_code: r.exit_code,
            error: r.error.clone(),
        })
        .collect();
    let times = (Some(report.fire.scheduled), Some(report.started), None);
    payload(&report.fire.job, report.fire.trigger, report.status().as_str(), times, &nodes, None)
}

/// The facts of a fire that did not run (`skipped`, `missed`), and why.
pub(crate) fn not_run_payload(
    job: &str,
    scheduled: DateTime<Utc>,
    trigger: Trigger,
    status: &str,
    note: &str,
) -> Map<String, Value> {
    payload(job, trigger, status, (Some(scheduled), None, None), &[], Some(note))
}

/// Records the instant a fire ended in its payload.
pub(crate) fn set_finished(payload: &mut Map<String, Value>, at: DateTime<Utc>) {
    payload.insert("finished".into(), time(Some(at)));
}

/// The body sent for one notification: the payload, plus `schema`, `event`,
/// `fire_id`, `link`, `api_link` and `text` (the template's, or the default).
pub(crate) fn build(
    payload: &Map<String, Value>,
    event: &str,
    fire_id: Option<i64>,
    base_url: &str,
    template: Option<&str>,
) -> Map<String, Value> {
    let mut body = payload.clone();
    body.insert("schema".into(), json!(SCHEMA));
    body.insert("event".into(), json!(event));
    body.insert("fire_id".into(), json!(fire_id));
    // For people, the fire's page of the web interface; for programs, the API's.
    let base = base_url.trim_end_matches('/');
    body.insert("link".into(), json!(fire_id.map(|id| format!("{base}/#/fires/{id}"))));
    body.insert("api_link".into(), json!(fire_id.map(|id| format!("{base}/api/v1/fires/{id}"))));
    let text = match template {
        Some(template) => render(template, &body).unwrap_or_else(|err| {
            tracing::warn!(target: "loom::notify", "the notification template failed ({err}); the default text is sent");
            default_text(&body)
        }),
        None => default_text(&body),
    };
    body.insert("text".into(), json!(text));
    body
}

/// `backup: failure — fire 12 failed, 1 of 3 nodes failed (web1: exit 1)`.
pub(crate) fn default_text(body: &Map<String, Value>) -> String {
    let get = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let (job, event, status) = (get("job"), get("event"), get("status"));
    let mut text = match body.get("fire_id").and_then(Value::as_i64) {
        Some(id) => format!("{job}: {event} — fire {id} {status}"),
        None => format!("{job}: {event}"),
    };
    let nodes = body.get("nodes").and_then(Value::as_u64).unwrap_or(0);
    let failed = body.get("failed_nodes").and_then(Value::as_array).cloned().unwrap_or_default();
    if nodes > 0 {
        text.push_str(&format!(", {} of {nodes} node(s) failed", failed.len()));
    }
    if let Some(first) = failed.first() {
        let node = first["node"].as_str().unwrap_or_default();
        let error = first["error"].as_str().unwrap_or("no error recorded");
        let error: String = error.chars().take(200).collect();
        text.push_str(&format!(" ({node}: {error})"));
    }
    if let Some(note) = body.get("note").and_then(Value::as_str) {
        text.push_str(&format!(" ({note})"));
    }
    text
}

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    // A template is text for a chat message, not HTML.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

/// Whether `template` compiles (for `loom check`).
pub(crate) fn check_template(template: &str) -> Result<(), String> {
    environment().template_from_str(template).map(drop).map_err(|err| describe(&err))
}

fn render(template: &str, context: &Map<String, Value>) -> Result<String, String> {
    let env = environment();
    let compiled = env.template_from_str(template).map_err(|err| describe(&err))?;
    compiled.render(context).map_err(|err| describe(&err))
}

fn describe(err: &minijinja::Error) -> String {
    match err.line() {
        Some(line) => format!("{} (template line {line})", err.detail().unwrap_or(&err.kind().to_string())),
        None => err.to_string(),
    }
}

/// `sha256=<hex of HMAC-SHA256(key, body)>`, the `X-Loom-Signature` header.
pub(crate) fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231s_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_template_renders_the_body_and_a_broken_one_falls_back() {
        let payload = not_run_payload(
            "backup",
            "2026-01-01T00:00:00Z".parse().unwrap(),
            Trigger::Schedule,
            "skipped",
            "the previous fire was still running",
        );
        let body =
            build(&payload, "skipped", Some(7), "http://127.0.0.1:8765/", Some("{{ job }} {{ event }} <{{ link }}>"));
        assert_eq!(body["text"], "backup skipped <http://127.0.0.1:8765/#/fires/7>");
        assert_eq!(body["schema"], 1);
        let body = build(&payload, "skipped", Some(7), "http://x", Some("{{ nope() }}"));
        assert_eq!(body["text"], "backup: skipped — fire 7 skipped (the previous fire was still running)");
        assert!(check_template("{% if %}").unwrap_err().contains("line 1"));
    }
}
