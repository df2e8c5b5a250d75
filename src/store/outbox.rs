//! The notification outbox: rows written in the same transaction as the fire end
//! (or skip) they tell of, and each attempt to deliver them.
//!
//! A fire's end carries its job's rules and the fire's facts (`Notices`); the
//! writer enqueues one row per rule that listens to one of the outcome's events
//! (`notify::event` decides which, given the job's previous outcome read in the
//! same transaction), so a fire's outcome is told once, never once per node
//! retry, and is never lost between the record and the outbox. Sending is the
//! delivery worker's (`notify/worker.rs`); this file holds the SQL only.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::{Map, Value};

use super::model::{AttemptRecord, DeliveryState, NotificationRecord};
use crate::config::notify::{NotifyRule, NotifyTarget, redact_text};
use crate::notify::event::{self, NotifyEvent};

/// A rule as the outbox keeps it: enough to deliver without the configuration
/// (which a reload may change meanwhile). The secret's file, never the secret.
#[derive(Debug, Clone)]
pub(crate) struct RuleRow {
    pub(crate) on: Vec<NotifyEvent>,
    pub(crate) kind: &'static str,
    pub(crate) target: String,
    pub(crate) secret_file: Option<String>,
    pub(crate) template: Option<String>,
}

impl From<&NotifyRule> for RuleRow {
    fn from(rule: &NotifyRule) -> RuleRow {
        let (kind, target) = match &rule.target {
            NotifyTarget::Webhook(url) => ("webhook", url.clone()),
            NotifyTarget::Task(path) => ("task", path.to_string()),
        };
        RuleRow {
            on: rule.on.clone(),
            kind,
            target,
            secret_file: rule.secret_file.as_ref().map(|p| p.display().to_string()),
            template: rule.template.clone(),
        }
    }
}

/// What a fire's end (or skip) may have to tell, and to whom.
#[derive(Debug, Clone)]
pub struct Notices {
    pub(crate) job: String,
    pub(crate) rules: Vec<RuleRow>,
    /// The fire's facts (`notify::body`), without the event, link and text.
    pub(crate) payload: Map<String, Value>,
}

impl Notices {
    /// The notices of a job with `rules`, or `None` when it has none.
    pub(crate) fn of<'a>(
        job: &str,
        rules: impl IntoIterator<Item = &'a std::sync::Arc<NotifyRule>>,
        payload: impl FnOnce() -> Map<String, Value>,
    ) -> Option<Notices> {
        let rules: Vec<RuleRow> = rules.into_iter().map(|r| RuleRow::from(r.as_ref())).collect();
        (!rules.is_empty()).then(|| Notices { job: job.to_string(), rules, payload: payload() })
    }
}

/// A notification due for delivery, as the worker needs it.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: i64,
    pub fire_id: Option<i64>,
    pub job: String,
    pub event: String,
    pub kind: String,
    pub target: String,
    pub secret_file: Option<String>,
    pub template: Option<String>,
    pub payload: Map<String, Value>,
    /// Attempts made so far.
    pub attempts: u32,
}

/// One attempt's outcome, to record.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub notification: i64,
    pub at: DateTime<Utc>,
    pub duration_ms: u64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// When to try again; `None` after a success or the last attempt.
    pub retry_at: Option<DateTime<Utc>>,
}

/// Enqueues the notifications of a fire that ended (or was recorded) with
/// `status`; returns how many.
pub(super) fn enqueue(
    transaction: &Transaction<'_>,
    fire_id: Option<i64>,
    status: &str,
    notices: &Notices,
    now: i64,
) -> rusqlite::Result<usize> {
    let previous: Option<String> = match fire_id {
        Some(id) if status == "ok" => transaction
            .prepare_cached(
                "SELECT status FROM fires WHERE job = ?1 AND id < ?2 AND status NOT IN ('running', 'skipped')
                 ORDER BY id DESC LIMIT 1",
            )?
            .query_row(params![notices.job, id], |r| r.get(0))
            .optional()?,
        _ => None,
    };
    let events = event::for_outcome(status, previous.as_deref());
    let payload = Value::Object(notices.payload.clone()).to_string();
    let mut insert = transaction.prepare_cached(
        "INSERT INTO notifications (fire_id, job, event, kind, target, secret_file, template, payload, created, state, attempts, next_attempt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', 0, ?9)",
    )?;
    let mut count = 0;
    for rule in &notices.rules {
        if let Some(event) = event::pick(&rule.on, &events) {
            insert.execute(params![
                fire_id,
                notices.job,
                event.as_str(),
                rule.kind,
                rule.target,
                rule.secret_file,
                rule.template,
                payload,
                now
            ])?;
            count += 1;
        }
    }
    Ok(count)
}

/// Enqueues the notifications of fires a daemon that died left running, now
/// recorded `interrupted` (`ids`), for their jobs' `rules`.
pub(super) fn enqueue_interrupted(
    transaction: &Transaction<'_>,
    ids: &[i64],
    rules: &std::collections::HashMap<String, Vec<RuleRow>>,
    now: i64,
) -> rusqlite::Result<usize> {
    let mut count = 0;
    for &id in ids {
        let (job, scheduled, trigger, started): (String, i64, String, Option<i64>) = transaction
            .prepare_cached("SELECT job, scheduled, trigger, started FROM fires WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        let Some(rules) = rules.get(&job) else { continue };
        let mut results = transaction.prepare_cached(
            "SELECT node, attempt, status, exit_code, error FROM node_results WHERE fire_id = ?1 ORDER BY id",
        )?;
        let rows = results.query_map([id], |r| {
            Ok(crate::notify::body::NodeOutcome {
                node: r.get(0)?,
                attempt: r.get(1)?,
                status: crate::store::NodeStatus::parse(&r.get::<_, String>(2)?)
                    .unwrap_or(crate::store::NodeStatus::Interrupted),
                exit_code: r.get(3)?,
                error: r.get(4)?,
            })
        })?;
        let results = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        let notices = interrupted_notices(job, &trigger, (scheduled, started, now), results, rules);
        count += enqueue(transaction, Some(id), "interrupted", &notices, now)?;
    }
    Ok(count)
}

/// The notices of a fire a daemon that died left running, now `interrupted`, from
/// its node attempts (`results`, oldest first: a node's last attempt counts), its
/// times in ms (`scheduled`, `started`, now) and its job's `rules`. Both backends'
/// `enqueue_interrupted` read the rows and enqueue what this builds.
pub(super) fn interrupted_notices(
    job: String,
    trigger: &str,
    times: (i64, Option<i64>, i64),
    results: Vec<crate::notify::body::NodeOutcome>,
    rules: &[RuleRow],
) -> Notices {
    ended_notices(job, trigger, "interrupted", times, results, rules, Some("the daemon stopped while this fire ran"))
}

/// What a fire that ended with `status` tells, built from its rows: as
/// `interrupted_notices`, for any status (a cluster's fire is ended by the member
/// that records its last node, from the store's rows).
pub(super) fn ended_notices(
    job: String,
    trigger: &str,
    status: &str,
    (scheduled, started, now): (i64, Option<i64>, i64),
    results: Vec<crate::notify::body::NodeOutcome>,
    rules: &[RuleRow],
    note: Option<&str>,
) -> Notices {
    let mut last: Vec<crate::notify::body::NodeOutcome> = Vec::new();
    for row in results {
        last.retain(|o| o.node != row.node);
        last.push(row);
    }
    let trigger = crate::store::Trigger::parse(trigger).unwrap_or(crate::store::Trigger::Manual);
    let payload = crate::notify::body::payload(
        &job,
        trigger,
        status,
        (Some(instant(scheduled)), started.map(instant), Some(instant(now))),
        &last,
        note,
    );
    Notices { job, rules: rules.to_vec(), payload }
}

/// Records an attempt and where the notification stands after it.
pub(super) fn record_attempt(transaction: &Transaction<'_>, attempt: &Attempt) -> rusqlite::Result<()> {
    let state = match (&attempt.error, attempt.retry_at) {
        (None, _) => DeliveryState::Delivered,
        (Some(_), Some(_)) => DeliveryState::Pending,
        (Some(_), None) => DeliveryState::Failed,
    };
    transaction
        .prepare_cached(
            "INSERT INTO notification_attempts (notification_id, at, duration_ms, status_code, error)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            attempt.notification,
            attempt.at.timestamp_millis(),
            attempt.duration_ms as i64,
            attempt.status_code,
            attempt.error
        ])?;
    transaction
        .prepare_cached(
            "UPDATE notifications SET state = ?2, attempts = attempts + 1, next_attempt = ?3 WHERE id = ?1",
        )?
        .execute(params![attempt.notification, state.as_str(), attempt.retry_at.map(|at| at.timestamp_millis())])?;
    Ok(())
}

/// Deletes delivered and failed notifications whose fire is gone (pruned).
pub(super) fn prune(transaction: &Transaction<'_>) -> rusqlite::Result<usize> {
    transaction.execute(
        "DELETE FROM notifications WHERE state <> 'pending' AND fire_id IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM fires WHERE fires.id = notifications.fire_id)",
        [],
    )
}

fn instant(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn payload(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// Pending notifications due at `now`, oldest due first. A notification never
/// tried is due at once, whatever the clock says; a retry when its backoff is over.
pub(super) fn due(connection: &Connection, now: DateTime<Utc>, limit: usize) -> rusqlite::Result<Vec<Pending>> {
    let mut statement = connection.prepare_cached(
        "SELECT id, fire_id, job, event, kind, target, secret_file, template, payload, attempts
         FROM notifications WHERE state = 'pending' AND (attempts = 0 OR next_attempt <= ?1)
         ORDER BY attempts > 0, next_attempt, id LIMIT ?2",
    )?;
    let rows = statement.query_map(params![now.timestamp_millis(), limit as i64], |r| {
        Ok(Pending {
            id: r.get(0)?,
            fire_id: r.get(1)?,
            job: r.get(2)?,
            event: r.get(3)?,
            kind: r.get(4)?,
            target: r.get(5)?,
            secret_file: r.get(6)?,
            template: r.get(7)?,
            payload: payload(&r.get::<_, String>(8)?),
            attempts: r.get(9)?,
        })
    })?;
    rows.collect()
}

/// When the next pending notification is due (the epoch for one never tried: now).
pub(super) fn next_due(connection: &Connection) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let next: Option<i64> = connection
        .prepare_cached(
            "SELECT min(CASE WHEN attempts = 0 THEN 0 ELSE next_attempt END) FROM notifications WHERE state = 'pending'",
        )?
        .query_row([], |r| r.get(0))?;
    Ok(next.map(instant))
}

/// Notifications, newest first, each with its attempts.
pub(super) fn list(
    connection: &Connection,
    job: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<NotificationRecord>> {
    let mut statement = connection.prepare_cached(
        "SELECT id, fire_id, job, event, kind, target, state, created, next_attempt FROM notifications
         WHERE ?1 IS NULL OR job = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let mut records: Vec<NotificationRecord> = statement
        .query_map(params![job, limit.max(1) as i64], |r| {
            let kind: String = r.get(4)?;
            let target: String = r.get(5)?;
            Ok(NotificationRecord {
                id: r.get(0)?,
                fire_id: r.get(1)?,
                job: r.get(2)?,
                event: NotifyEvent::parse(&r.get::<_, String>(3)?).unwrap_or(NotifyEvent::Failure),
                target: if kind == "webhook" { redact_text(&target) } else { target },
                kind,
                state: DeliveryState::parse(&r.get::<_, String>(6)?).unwrap_or(DeliveryState::Failed),
                created: instant(r.get(7)?),
                next_attempt: r.get::<_, Option<i64>>(8)?.map(instant),
                attempts: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut attempts = connection.prepare_cached(
        "SELECT at, duration_ms, status_code, error FROM notification_attempts WHERE notification_id = ?1 ORDER BY id",
    )?;
    for record in &mut records {
        record.attempts = attempts
            .query_map([record.id], |r| {
                Ok(AttemptRecord {
                    at: instant(r.get(0)?),
                    duration_ms: r.get::<_, i64>(1)? as u64,
                    status_code: r.get(2)?,
                    error: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::store::{FireStatus, Store, Trigger};

    fn rule(on: &[NotifyEvent], kind: &'static str) -> RuleRow {
        RuleRow { on: on.to_vec(), kind, target: "site.t.note".into(), secret_file: None, template: None }
    }

    fn notices(rules: Vec<RuleRow>) -> Notices {
        Notices { job: "j".into(), rules, payload: Map::new() }
    }

    fn events(store: &Store) -> Vec<(String, String)> {
        let mut listed = store.notifications(Some("j"), 100).unwrap();
        listed.reverse();
        listed.into_iter().map(|n| (n.event.to_string(), n.kind)).collect()
    }

    #[tokio::test]
    async fn a_fire_end_enqueues_one_row_per_listening_rule_in_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open(&path).unwrap();
        let rules = || {
            notices(vec![
                rule(&[NotifyEvent::Failure, NotifyEvent::Recovery], "webhook"),
                rule(&[NotifyEvent::Success], "task"),
            ])
        };
        let fire = |status: FireStatus| {
            let store = &store;
            let rules = rules();
            async move {
                let id = store.begin_fire("j", Utc::now(), Trigger::Manual, &[]).unwrap().unwrap();
                store.finish_queued(id, status, Utc::now(), Some(rules)).await.unwrap();
                id
            }
        };
        fire(FireStatus::Failed).await;
        fire(FireStatus::TimedOut).await;
        let recovered = fire(FireStatus::Ok).await;
        fire(FireStatus::Ok).await;
        let expected = [
            ("failure", "webhook"),
            ("failure", "webhook"),
            ("recovery", "webhook"),
            ("success", "task"),
            ("success", "task"),
        ];
        assert_eq!(events(&store), expected.map(|(e, k)| (e.to_string(), k.to_string())));
        let listed = store.notifications(Some("j"), 100).unwrap();
        assert!(listed.iter().any(|n| n.fire_id == Some(recovered) && n.event == NotifyEvent::Recovery));

        // An outcome named `drift` (check-mode fires) is told as `drift`, by its text alone.
        let mut connection = Connection::open(&path).unwrap();
        let transaction = connection.transaction().unwrap();
        let drift = notices(vec![rule(&[NotifyEvent::Drift], "webhook"), rule(&[NotifyEvent::Failure], "task")]);
        assert_eq!(enqueue(&transaction, Some(recovered), "drift", &drift, 0).unwrap(), 1);
        transaction.commit().unwrap();
        assert_eq!(events(&store).last().unwrap(), &("drift".to_string(), "webhook".to_string()));
    }
}
