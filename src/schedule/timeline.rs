//! The ordered set of upcoming fires: `(due, job)`, earliest first.
//!
//! Pure bookkeeping with the current time passed in, so it is tested without a
//! runtime or sleeps; the daemon sleeps until `next_instant()` and then asks for
//! `take_due(now)`. Each fire's successor is computed from the fire's own instant,
//! not from "now", so a late wake-up never skips or repeats a fire.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use super::cron::Schedule;

/// A fire taken from the timeline.
#[derive(Debug)]
pub struct Due {
    /// When it is to start: its scheduled instant plus the job's jitter offset.
    pub at: DateTime<Utc>,
    pub scheduled: DateTime<Utc>,
    pub job: String,
}

#[derive(Default)]
pub struct Timeline {
    /// `(due, job)`: due is the scheduled instant plus the job's jitter offset.
    queue: BTreeSet<(DateTime<Utc>, String)>,
    /// Each job's pending `(due, scheduled)`, to remove or replace it.
    pending: HashMap<String, (DateTime<Utc>, DateTime<Utc>)>,
    /// How many fires are due at each instant of `queue`.
    counts: HashMap<DateTime<Utc>, usize>,
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline::default()
    }

    /// Schedules `job`'s next fire after `after`, replacing any pending one; it
    /// becomes due `offset` after its scheduled instant. A fire whose due instant
    /// cannot be represented (past the end of chrono's calendar) is never due, like
    /// a pattern that never matches again.
    pub fn plan(&mut self, job: &str, schedule: &Schedule, after: DateTime<Utc>, offset: std::time::Duration) {
        self.remove(job);
        let next = schedule.next_after(after);
        let due = next.and_then(|next| {
            let offset = chrono::TimeDelta::from_std(offset).ok()?;
            Some((next.checked_add_signed(offset)?, next))
        });
        if let Some((due, next)) = due {
            self.queue.insert((due, job.to_string()));
            self.pending.insert(job.to_string(), (due, next));
            *self.counts.entry(due).or_default() += 1;
        }
    }

    pub fn remove(&mut self, job: &str) {
        if let Some((due, _)) = self.pending.remove(job) {
            self.queue.remove(&(due, job.to_string()));
            self.uncount(due);
        }
    }

    fn uncount(&mut self, due: DateTime<Utc>) {
        if let Some(count) = self.counts.get_mut(&due) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&due);
            }
        }
    }

    pub fn next_instant(&self) -> Option<DateTime<Utc>> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// The scheduled instant of `job`'s next fire.
    pub fn next_for(&self, job: &str) -> Option<DateTime<Utc>> {
        self.pending.get(job).map(|(_, scheduled)| *scheduled)
    }

    /// How many fires are due at exactly `at`.
    pub fn count_at(&self, at: DateTime<Utc>) -> usize {
        self.counts.get(&at).copied().unwrap_or(0)
    }

    /// Removes and returns every fire due at `now` or before, earliest first.
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<Due> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.queue.first() {
            if *at > now {
                break;
            }
            let (at, job) = self.queue.pop_first().expect("checked above");
            self.uncount(at);
            let (_, scheduled) = self.pending.remove(&job).expect("queued jobs are pending");
            due.push(Due { at, scheduled, job });
        }
        due
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Tz;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    /// Drives a timeline the way the daemon does, with a clock we move by hand.
    fn drive(
        timeline: &mut Timeline,
        schedules: &[(&str, Schedule)],
        until: DateTime<Utc>,
        wake_late_by: i64,
    ) -> Vec<(DateTime<Utc>, String)> {
        let mut fired = Vec::new();
        while let Some(next) = timeline.next_instant() {
            if next > until {
                break;
            }
            let now = next + chrono::Duration::milliseconds(wake_late_by);
            for Due { scheduled: at, job, .. } in timeline.take_due(now) {
                let schedule = &schedules.iter().find(|(n, _)| *n == job).unwrap().1;
                timeline.plan(&job, schedule, at, std::time::Duration::ZERO);
                fired.push((at, job));
            }
        }
        fired
    }

    #[test]
    fn fires_each_job_on_its_instants_in_order() {
        let fast = Schedule::parse("*/20 * * * * *", Tz::UTC).unwrap();
        let slow = Schedule::parse("* * * * *", Tz::UTC).unwrap();
        let schedules = [("fast", fast.clone()), ("slow", slow.clone())];
        let start = utc("2026-01-01T00:00:30Z");
        let mut timeline = Timeline::new();
        timeline.plan("fast", &fast, start, std::time::Duration::ZERO);
        timeline.plan("slow", &slow, start, std::time::Duration::ZERO);
        let fired = drive(&mut timeline, &schedules, utc("2026-01-01T00:01:40Z"), 0);
        let shown: Vec<String> = fired.iter().map(|(at, job)| format!("{} {job}", at.format("%M:%S"))).collect();
        assert_eq!(shown, ["00:40 fast", "01:00 fast", "01:00 slow", "01:20 fast", "01:40 fast"]);
    }

    #[test]
    fn a_late_wake_up_neither_skips_nor_repeats_a_fire() {
        let every_second = Schedule::parse("* * * * * *", Tz::UTC).unwrap();
        let schedules = [("tick", every_second.clone())];
        let mut timeline = Timeline::new();
        timeline.plan("tick", &every_second, utc("2026-01-01T00:00:00Z"), std::time::Duration::ZERO);
        // Waking 2.5 s late each time: every instant still comes out exactly once.
        let fired = drive(&mut timeline, &schedules, utc("2026-01-01T00:00:10Z"), 2500);
        let seconds: Vec<u32> = fired.iter().map(|(at, _)| at.format("%S").to_string().parse().unwrap()).collect();
        assert_eq!(seconds, (1..=10).collect::<Vec<_>>());
    }

    #[test]
    fn jitter_delays_the_due_time_but_not_the_fires_identity() {
        let hourly = Schedule::parse("@hourly", Tz::UTC).unwrap();
        let mut timeline = Timeline::new();
        timeline.plan("a", &hourly, utc("2026-01-01T00:30:00Z"), std::time::Duration::from_secs(90));
        assert_eq!(timeline.next_instant(), Some(utc("2026-01-01T01:01:30Z")));
        assert_eq!(timeline.count_at(utc("2026-01-01T01:01:30Z")), 1);
        assert!(timeline.take_due(utc("2026-01-01T01:01:29Z")).is_empty());
        let due = timeline.take_due(utc("2026-01-01T01:01:30Z"));
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].at, due[0].scheduled), (utc("2026-01-01T01:01:30Z"), utc("2026-01-01T01:00:00Z")));
        assert_eq!(timeline.count_at(utc("2026-01-01T01:01:30Z")), 0);
    }

    #[test]
    fn an_offset_beyond_the_calendar_plans_nothing_and_does_not_panic() {
        let hourly = Schedule::parse("@hourly", Tz::UTC).unwrap();
        let mut timeline = Timeline::new();
        let huge = std::time::Duration::from_secs(99_999_999_999_999 * 3600);
        timeline.plan("a", &hourly, utc("2026-01-01T00:30:00Z"), huge);
        timeline.plan("b", &hourly, utc("2026-01-01T00:30:00Z"), std::time::Duration::from_secs(u64::MAX / 1000));
        assert!(timeline.is_empty());
        timeline.plan("c", &hourly, DateTime::<Utc>::MAX_UTC - chrono::TimeDelta::minutes(30), huge);
        assert!(timeline.is_empty());
    }

    #[test]
    fn replanning_or_removing_a_job_drops_its_pending_fire() {
        let hourly = Schedule::parse("@hourly", Tz::UTC).unwrap();
        let mut timeline = Timeline::new();
        timeline.plan("a", &hourly, utc("2026-01-01T00:30:00Z"), std::time::Duration::ZERO);
        timeline.plan("a", &hourly, utc("2026-01-01T05:30:00Z"), std::time::Duration::ZERO);
        assert_eq!(timeline.len(), 1);
        assert_eq!(timeline.next_for("a"), Some(utc("2026-01-01T06:00:00Z")));
        timeline.remove("a");
        assert!(timeline.is_empty());
        assert!(timeline.take_due(utc("2030-01-01T00:00:00Z")).is_empty());
    }
}
