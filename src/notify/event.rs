//! Which notification events a fire's outcome produces: the one place that decides it.
//!
//! Pure and synchronous. A fire that ended `ok` is a `success`, and a `recovery` too
//! when the job's previous fire that ran had failed; `failed`, `timed-out` and
//! `interrupted` are a `failure`; `drift` (a check-mode fire that found differences)
//! is a `drift`; a fire recorded `skipped` is `skipped`; fires that a catch-up policy
//! dropped are `missed`. A rule listening to several of these gets one delivery per
//! fire: the first of the fire's events, in the order given here, that it listens to.
//! It does not deliver anything, nor know about rules' targets.

use serde::{Deserialize, Serialize};

/// What a notification rule listens to (`on: [failure, recovery]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyEvent {
    Failure,
    Success,
    /// The first success after one or more failures.
    Recovery,
    /// A check-mode fire found the nodes differ from their declared state.
    Drift,
    /// A fire not run: the previous one still ran (`overlap: skip`), or the daemon stopped.
    Skipped,
    /// Fires a catch-up policy did not run after downtime.
    Missed,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 6] = [
        NotifyEvent::Failure,
        NotifyEvent::Success,
        NotifyEvent::Recovery,
        NotifyEvent::Drift,
        NotifyEvent::Skipped,
        NotifyEvent::Missed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Failure => "failure",
            NotifyEvent::Success => "success",
            NotifyEvent::Recovery => "recovery",
            NotifyEvent::Drift => "drift",
            NotifyEvent::Skipped => "skipped",
            NotifyEvent::Missed => "missed",
        }
    }

    pub fn parse(text: &str) -> Option<NotifyEvent> {
        NotifyEvent::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

impl std::fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a recorded fire status counts as failing (for `recovery`).
fn failing(status: &str) -> bool {
    matches!(status, "failed" | "timed-out" | "interrupted")
}

/// The events a fire that ended with `status` produces, most specific first;
/// `previous` is the status of the job's previous fire that ran, if any.
///
/// Statuses are compared as the store writes them, so an outcome added to
/// `FireStatus` later (such as `drift`) needs no change here to be told apart.
pub fn for_outcome(status: &str, previous: Option<&str>) -> Vec<NotifyEvent> {
    match status {
        "ok" if previous.is_some_and(failing) => vec![NotifyEvent::Recovery, NotifyEvent::Success],
        "ok" => vec![NotifyEvent::Success],
        "drift" => vec![NotifyEvent::Drift],
        "skipped" => vec![NotifyEvent::Skipped],
        "missed" => vec![NotifyEvent::Missed],
        "running" => Vec::new(),
        _ => vec![NotifyEvent::Failure],
    }
}

/// The one event a rule listening to `on` is told of, among a fire's `events`.
pub fn pick(on: &[NotifyEvent], events: &[NotifyEvent]) -> Option<NotifyEvent> {
    events.iter().copied().find(|event| on.contains(event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use NotifyEvent::*;

    #[test]
    fn an_outcome_gives_its_events_and_a_rule_hears_one_of_them() {
        assert_eq!(for_outcome("failed", Some("ok")), [Failure]);
        assert_eq!(for_outcome("timed-out", None), [Failure]);
        assert_eq!(for_outcome("interrupted", None), [Failure]);
        assert_eq!(for_outcome("ok", None), [Success]);
        assert_eq!(for_outcome("ok", Some("ok")), [Success]);
        assert_eq!(for_outcome("ok", Some("failed")), [Recovery, Success]);
        assert_eq!(for_outcome("ok", Some("timed-out")), [Recovery, Success]);
        assert_eq!(for_outcome("drift", Some("failed")), [Drift]);
        assert_eq!(for_outcome("skipped", None), [Skipped]);
        assert!(for_outcome("running", None).is_empty());

        let recovered = for_outcome("ok", Some("failed"));
        assert_eq!(pick(&[Failure, Recovery], &recovered), Some(Recovery));
        assert_eq!(pick(&[Success, Recovery], &recovered), Some(Recovery));
        assert_eq!(pick(&[Success], &recovered), Some(Success));
        assert_eq!(pick(&[Failure], &recovered), None);
        for event in NotifyEvent::ALL {
            assert_eq!(NotifyEvent::parse(event.as_str()), Some(event));
        }
    }
}
