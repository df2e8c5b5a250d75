//! The delivery worker: sends the outbox's due notifications, records every
//! attempt, and retries with exponential backoff.
//!
//! One async task of the daemon. It wakes when a commit enqueued notifications, or
//! when the next retry is due by the daemon's clock (so tests move backoff time by
//! hand), and stops with the daemon's shutdown; what is pending then is sent after
//! the next start, since the outbox is in the store. Due notifications are sent
//! concurrently, a batch at a time, and each attempt is recorded once it ends
//! (time, HTTP status or error, duration): delivery is at least once — an attempt
//! cut off by a shutdown is made again. A webhook gets a POST of the JSON body
//! (`body.rs`), signed when its rule has a `secret_file`; a notifier task runs on
//! the Loom host, as a `local: true` node's task does, called as `f(ssh, event)`.
//! Neither the secret nor a webhook's path appears in a log line or an error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::body;
use crate::config::notify::redact_text;
use crate::daemon::Clock;
use crate::snapshot::Snapshot;
use crate::ssh::{Connection, LocalConnection};
use crate::store::{Attempt, Pending, Store};
use crate::task::{Output, Ssh, scripts};

/// At most this many notifications are sent at once.
const BATCH: usize = 32;
/// The pause after an attempt the store could not record.
const STORE_FAILED_PAUSE: Duration = Duration::from_secs(5);
/// The longest wait between two attempts, however many failed.
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);

/// Sends due notifications until `shutdown`. `snapshot` is the configuration in
/// force (delivery settings, the link's base, notifier tasks).
pub(crate) async fn deliver_forever(
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    shutdown: CancellationToken,
) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = match reqwest::Client::builder().user_agent(concat!("loom/", env!("CARGO_PKG_VERSION"))).build() {
        Ok(http) => http,
        Err(err) => {
            tracing::error!(target: "loom::notify", "failed to set up the HTTP client; no notification is sent: {err}");
            return;
        }
    };
    let signal = store.outbox_signal();
    loop {
        let due = store.due_notifications(clock.now(), BATCH).unwrap_or_else(|err| {
            tracing::error!(target: "loom::notify", "failed to read the notification outbox: {err}");
            Vec::new()
        });
        if !due.is_empty() {
            let current = snapshot.borrow().clone();
            let sends = due.into_iter().map(|pending| attempt(&http, &store, &clock, &current, pending));
            let recorded = tokio::select! {
                _ = shutdown.cancelled() => return,
                recorded = futures_util::future::join_all(sends) => recorded,
            };
            // An attempt the store could not record stays due: wait before sending
            // it again, rather than hammer its receiver while the store fails.
            if recorded.contains(&false) {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(STORE_FAILED_PAUSE) => {}
                }
            }
            continue;
        }
        let next = store.next_notification_due().unwrap_or_else(|err| {
            tracing::error!(target: "loom::notify", "failed to read the notification outbox: {err}");
            None
        });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = signal.notified() => {}
            _ = clock.sleep_until(next.unwrap_or_default()), if next.is_some() => {}
        }
    }
}

/// The wait after `attempts` failed attempts: `backoff`, doubled for each further one.
pub(crate) fn backoff(first: Duration, attempts: u32) -> Duration {
    first.saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(30))).min(MAX_BACKOFF)
}

/// One attempt to deliver `pending`, recorded once it ends; whether it was recorded.
async fn attempt(
    http: &reqwest::Client,
    store: &Store,
    clock: &Arc<dyn Clock>,
    snapshot: &Arc<Snapshot>,
    pending: Pending,
) -> bool {
    let settings = &snapshot.config.settings;
    let base = settings.public_url.clone().unwrap_or_else(|| match &settings.listen {
        Some(address) => format!("{}://{address}", if settings.tls.is_some() { "https" } else { "http" }),
        None => String::new(),
    });
    let body = body::build(&pending.payload, &pending.event, pending.fire_id, &base, pending.template.as_deref());
    let at = clock.now();
    let began = Instant::now();
    let (status_code, error) = match pending.kind.as_str() {
        "webhook" => webhook(http, &pending, &body, settings.delivery.timeout).await,
        "task" => (None, task(snapshot, &pending.target, body).await.err()),
        other => (None, Some(format!("unknown notification kind `{other}`"))),
    };
    let duration_ms = began.elapsed().as_millis() as u64;
    let made = pending.attempts + 1;
    let retry_at = match &error {
        Some(_) if made < settings.delivery.attempts => {
            let wait = backoff(settings.delivery.backoff, made);
            Some(clock.now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(6)))
        }
        _ => None,
    };
    let shown = if pending.kind == "webhook" { redact_text(&pending.target) } else { pending.target.clone() };
    match (&error, retry_at) {
        (None, _) => tracing::info!(
            target: "loom::notify", job = %pending.job, event = %pending.event, to = %shown, attempt = made,
            "notification delivered"
        ),
        (Some(why), Some(when)) => tracing::warn!(
            target: "loom::notify", job = %pending.job, event = %pending.event, to = %shown, attempt = made,
            retry_at = %when.to_rfc3339(), "notification not delivered: {why}"
        ),
        (Some(why), None) => tracing::error!(
            target: "loom::notify", job = %pending.job, event = %pending.event, to = %shown, attempt = made,
            "notification given up after {made} attempt(s): {why}"
        ),
    }
    let attempt = Attempt { notification: pending.id, at, duration_ms, status_code, error, retry_at };
    match store.record_attempt(attempt).await {
        Ok(()) => true,
        Err(err) => {
            tracing::error!(target: "loom::notify", job = %pending.job, "failed to record a notification attempt: {err}");
            false
        }
    }
}

/// POSTs the body; the status it answered, and an error unless it was a 2xx.
async fn webhook(
    http: &reqwest::Client,
    pending: &Pending,
    body: &Map<String, Value>,
    timeout: Duration,
) -> (Option<u16>, Option<String>) {
    let bytes = Value::Object(body.clone()).to_string().into_bytes();
    let mut request = http
        .post(&pending.target)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Loom-Event", &pending.event)
        // The same at every attempt: a receiver can drop a delivery it already had.
        .header("X-Loom-Delivery", pending.id.to_string());
    if let Some(file) = &pending.secret_file {
        match crate::config::read_text(std::path::Path::new(file)) {
            Ok(key) => request = request.header("X-Loom-Signature", body::signature(key.trim_end().as_bytes(), &bytes)),
            Err(err) => return (None, Some(format!("failed to read the secret_file {file}: {err}"))),
        }
    }
    match request.body(bytes).send().await {
        Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
        Ok(response) => {
            let status = response.status();
            (Some(status.as_u16()), Some(format!("the webhook answered {status}")))
        }
        Err(err) => (None, Some(describe(err))),
    }
}

/// A request error in words, without the URL (its path may hold a secret).
fn describe(err: reqwest::Error) -> String {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut text = format!("the request {what}");
    let err = err.without_url();
    let mut source = std::error::Error::source(&err);
    let mut last = None;
    while let Some(inner) = source {
        last = Some(inner.to_string());
        source = inner.source();
    }
    if let Some(last) = last {
        text.push_str(&format!(": {last}"));
    }
    text
}

/// Runs the notifier task on the Loom host, as a `local: true` node's task runs
/// (bounded by `task_max_operations` and `task_max_time`); its output goes to the
/// daemon's log under `loom::notify`.
async fn task(snapshot: &Arc<Snapshot>, path: &str, body: Map<String, Value>) -> Result<(), String> {
    let limit = snapshot.config.settings.output_limit;
    let node = Arc::new(crate::config::Node::local("loom"));
    let connection =
        Arc::new(Connection::Local(LocalConnection::new("loom", tokio::runtime::Handle::current(), limit)));
    let output = Arc::new(Output::new(limit));
    let ssh = Ssh::new(node, connection, Arc::clone(&output), CancellationToken::new());
    let event = rhai::serde::to_dynamic(Value::Object(body))
        .map_err(|err| format!("failed to hand the event to the task: {err}"))?
        .cast::<rhai::Map>();
    let (catalog_of, task_path, task_output) = (Arc::clone(snapshot), path.to_string(), Arc::clone(&output));
    let call = scripts::submit(None, move || catalog_of.catalog.notify(&task_path, ssh, task_output, event));
    let result = match call.await {
        Ok(Ok(result)) => result.map_err(|err| err.to_string()),
        Ok(Err(crashed)) => Err(format!("the task crashed: {crashed}")),
        Err(_) => Err("the task's thread ended without an answer".to_string()),
    };
    for line in output.take().lines() {
        tracing::info!(target: "loom::notify", task = path, "{line}");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_after_each_failed_attempt_up_to_six_hours() {
        let first = Duration::from_secs(10);
        let waits: Vec<u64> = (1..=4).map(|made| backoff(first, made).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80]);
        assert_eq!(backoff(first, 99), MAX_BACKOFF);
        assert_eq!(backoff(Duration::from_secs(3600), 100), MAX_BACKOFF);
    }
}
