//! Counting resource outcomes: the "N unchanged, M changed, K failed" of a node, and
//! whether a check found drift. Pure; shared by the runner (a fire's outcome) and the
//! command line (its summary lines).

use crate::store::{ResourceOutcome, ResourceStatus};

/// How many resources of a node (handlers included) ended how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub unchanged: usize,
    pub changed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Summary {
    pub fn of(outcomes: &[ResourceOutcome]) -> Summary {
        let mut summary = Summary::default();
        for outcome in outcomes {
            match outcome.status {
                ResourceStatus::Unchanged => summary.unchanged += 1,
                ResourceStatus::Changed => summary.changed += 1,
                ResourceStatus::Failed => summary.failed += 1,
                ResourceStatus::Skipped => summary.skipped += 1,
            }
        }
        summary
    }

    /// Whether a check found anything that would change (drift).
    pub fn drifted(&self) -> bool {
        self.changed > 0
    }
}

impl std::fmt::Display for Summary {
    /// `3 unchanged, 1 changed, 0 failed` (and `, 2 skipped` when some were).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} unchanged, {} changed, {} failed", self.unchanged, self.changed, self.failed)?;
        if self.skipped > 0 {
            write!(f, ", {} skipped", self.skipped)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: ResourceStatus) -> ResourceOutcome {
        ResourceOutcome {
            resource: "file[/x]".into(),
            status,
            changes: Vec::new(),
            diff: None,
            reason: None,
            handler: false,
            sensitive: false,
        }
    }

    #[test]
    fn outcomes_are_counted_and_drift_is_a_would_be_change() {
        use ResourceStatus::*;
        let all: Vec<ResourceOutcome> = [Unchanged, Unchanged, Changed, Failed, Skipped].map(outcome).to_vec();
        let summary = Summary::of(&all);
        assert_eq!(summary, Summary { unchanged: 2, changed: 1, failed: 1, skipped: 1 });
        assert_eq!(summary.to_string(), "2 unchanged, 1 changed, 1 failed, 1 skipped");
        assert!(summary.drifted());
        let calm = Summary::of(&[outcome(Unchanged)]);
        assert_eq!(calm.to_string(), "1 unchanged, 0 changed, 0 failed");
        assert!(!calm.drifted());
    }
}
