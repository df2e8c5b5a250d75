//! The ordered set of upcoming fires: `(instant, job)`, earliest first.
//!
//! Pure bookkeeping with the current time passed in, so it is tested without a
//! runtime or sleeps; the daemon sleeps until `next_instant()` and then asks for
//! `take_due(now)`. Each fire's successor is computed from the fire's own instant,
//! not from "now", so a late wake-up never skips or repeats a fire.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use super::cron::Schedule;

#[derive(Default)]
pub struct Timeline {
    queue: BTreeSet<(DateTime<Utc>, String)>,
    /// Each job's pending instant, to remove or replace it.
    pending: HashMap<String, DateTime<Utc>>,
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline::default()
    }

    /// Schedules `job`'s next fire after `after`, replacing any pending one.
    pub fn plan(&mut self, job: &str, schedule: &Schedule, after: DateTime<Utc>) {
        self.remove(job);
        if let Some(next) = schedule.next_after(after) {
            self.queue.insert((next, job.to_string()));
            self.pending.insert(job.to_string(), next);
        }
    }

    pub fn remove(&mut self, job: &str) {
        if let Some(at) = self.pending.remove(job) {
            self.queue.remove(&(at, job.to_string()));
        }
    }

    pub fn next_instant(&self) -> Option<DateTime<Utc>> {
        self.queue.first().map(|(at, _)| *at)
    }

    pub fn next_for(&self, job: &str) -> Option<DateTime<Utc>> {
        self.pending.get(job).copied()
    }

    /// Removes and returns every fire due at `now`, earliest first.
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<(DateTime<Utc>, String)> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.queue.first() {
            if *at > now {
                break;
            }
            let (at, job) = self.queue.pop_first().expect("checked above");
            self.pending.remove(&job);
            due.push((at, job));
        }
        due
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Tz;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
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
            for (at, job) in timeline.take_due(now) {
                let schedule = &schedules.iter().find(|(n, _)| *n == job).unwrap().1;
                timeline.plan(&job, schedule, at);
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
        timeline.plan("fast", &fast, start);
        timeline.plan("slow", &slow, start);
        let fired = drive(&mut timeline, &schedules, utc("2026-01-01T00:01:40Z"), 0);
        let shown: Vec<String> = fired
            .iter()
            .map(|(at, job)| format!("{} {job}", at.format("%M:%S")))
            .collect();
        assert_eq!(
            shown,
            [
                "00:40 fast",
                "01:00 fast",
                "01:00 slow",
                "01:20 fast",
                "01:40 fast"
            ]
        );
    }

    #[test]
    fn a_late_wake_up_neither_skips_nor_repeats_a_fire() {
        let every_second = Schedule::parse("* * * * * *", Tz::UTC).unwrap();
        let schedules = [("tick", every_second.clone())];
        let mut timeline = Timeline::new();
        timeline.plan("tick", &every_second, utc("2026-01-01T00:00:00Z"));
        // Waking 2.5 s late each time: every instant still comes out exactly once.
        let fired = drive(&mut timeline, &schedules, utc("2026-01-01T00:00:10Z"), 2500);
        let seconds: Vec<u32> = fired
            .iter()
            .map(|(at, _)| at.format("%S").to_string().parse().unwrap())
            .collect();
        assert_eq!(seconds, (1..=10).collect::<Vec<_>>());
    }

    #[test]
    fn replanning_or_removing_a_job_drops_its_pending_fire() {
        let hourly = Schedule::parse("@hourly", Tz::UTC).unwrap();
        let mut timeline = Timeline::new();
        timeline.plan("a", &hourly, utc("2026-01-01T00:30:00Z"));
        timeline.plan("a", &hourly, utc("2026-01-01T05:30:00Z"));
        assert_eq!(timeline.len(), 1);
        assert_eq!(timeline.next_for("a"), Some(utc("2026-01-01T06:00:00Z")));
        timeline.remove("a");
        assert!(timeline.is_empty());
        assert!(timeline.take_due(utc("2030-01-01T00:00:00Z")).is_empty());
    }
}
