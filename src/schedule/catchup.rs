//! Which missed fires to run after downtime, per the job's `catchup` policy.
//!
//! Pure: given the schedule, the last instant on record and now, it lists instants.
//! Like systemd's `Persistent=true` (`latest`), or Kubernetes' missed-schedule
//! handling with a bound (`all` up to `catchup_limit`, oldest first).

use chrono::{DateTime, Utc};

use super::cron::Schedule;
use crate::config::job::Catchup;

/// The missed instants in `(last, now]` to run, oldest first.
#[cfg(test)]
pub fn missed(
    schedule: &Schedule,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: Catchup,
    limit: usize,
) -> Vec<DateTime<Utc>> {
    missed_counted(schedule, last, now, policy, limit).0
}

/// `missed`, and how many missed instants the policy leaves unrun.
pub fn missed_counted(
    schedule: &Schedule,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: Catchup,
    limit: usize,
) -> (Vec<DateTime<Utc>>, usize) {
    let mut all = Vec::new();
    let mut seen = 0usize;
    let mut at = last;
    while let Some(next) = schedule.next_after(at) {
        if next > now {
            break;
        }
        seen += 1;
        // Keep only what could be run, so a long outage of a per-second job costs
        // memory for `limit` instants, not for all of them.
        if policy != Catchup::None {
            all.push(next);
            if all.len() > limit.max(1) {
                all.remove(0);
            }
        }
        at = next;
    }
    let run = match policy {
        Catchup::Latest => all.pop().into_iter().collect(),
        Catchup::All => {
            let skip = all.len().saturating_sub(limit);
            all.split_off(skip)
        }
        Catchup::None => Vec::new(),
    };
    let unrun = seen - run.len();
    (run, unrun)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Tz;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn policies_pick_none_the_latest_or_all_missed_fires() {
        let every_minute = Schedule::parse("* * * * *", Tz::UTC).unwrap();
        let last = at("2026-01-01T10:00:00Z");
        let now = at("2026-01-01T10:02:30Z");
        assert!(missed(&every_minute, last, now, Catchup::None, 100).is_empty());
        assert_eq!(missed(&every_minute, last, now, Catchup::Latest, 100), [at("2026-01-01T10:02:00Z")]);
        assert_eq!(
            missed(&every_minute, last, now, Catchup::All, 100),
            [at("2026-01-01T10:01:00Z"), at("2026-01-01T10:02:00Z")]
        );
    }

    #[test]
    fn all_is_bounded_by_the_limit_keeping_the_newest() {
        let every_second = Schedule::parse("* * * * * *", Tz::UTC).unwrap();
        let got = missed(&every_second, at("2026-01-01T00:00:00Z"), at("2026-01-02T00:00:00Z"), Catchup::All, 3);
        assert_eq!(got, [at("2026-01-01T23:59:58Z"), at("2026-01-01T23:59:59Z"), at("2026-01-02T00:00:00Z")]);
    }

    #[test]
    fn the_instants_a_policy_leaves_unrun_are_counted() {
        let every_minute = Schedule::parse("* * * * *", Tz::UTC).unwrap();
        let (last, now) = (at("2026-01-01T10:00:00Z"), at("2026-01-01T10:05:30Z"));
        assert_eq!(missed_counted(&every_minute, last, now, Catchup::None, 100).1, 5);
        assert_eq!(missed_counted(&every_minute, last, now, Catchup::Latest, 100).1, 4);
        assert_eq!(missed_counted(&every_minute, last, now, Catchup::All, 100).1, 0);
        assert_eq!(missed_counted(&every_minute, last, now, Catchup::All, 2).1, 3);
    }

    #[test]
    fn nothing_is_missed_when_the_last_fire_is_recent() {
        let hourly = Schedule::parse("@hourly", Tz::UTC).unwrap();
        assert!(missed(&hourly, at("2026-01-01T10:00:00Z"), at("2026-01-01T10:59:59Z"), Catchup::All, 10).is_empty());
    }
}
