//! Which missed fires to run after downtime, per the job's `catchup` policy.
//!
//! Pure: given the schedule, the last instant on record and now, it lists instants.
//! Like systemd's `Persistent=true` (`latest`), or Kubernetes' missed-schedule
//! handling with a bound (`all` up to `catchup_limit`, oldest first).

use chrono::{DateTime, Utc};

use super::cron::Schedule;
use crate::config::job::Catchup;

/// The missed instants in `(last, now]` to run, oldest first.
pub fn missed(
    schedule: &Schedule,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: Catchup,
    limit: usize,
) -> Vec<DateTime<Utc>> {
    if policy == Catchup::None {
        return Vec::new();
    }
    let mut all = Vec::new();
    let mut at = last;
    while let Some(next) = schedule.next_after(at) {
        if next > now {
            break;
        }
        all.push(next);
        // Keep only what could be run, so a long outage of a per-second job costs
        // memory for `limit` instants, not for all of them.
        if all.len() > limit.max(1) {
            all.remove(0);
        }
        at = next;
    }
    match policy {
        Catchup::Latest => all.pop().into_iter().collect(),
        Catchup::All => {
            let skip = all.len().saturating_sub(limit);
            all.split_off(skip)
        }
        Catchup::None => Vec::new(),
    }
}

/// How many instants of `schedule` fall in `(last, now]`, counting up to `cap`
/// (a per-second job down for a year is "at least `cap`", not a long count).
pub fn count(schedule: &Schedule, last: DateTime<Utc>, now: DateTime<Utc>, cap: usize) -> usize {
    let mut count = 0;
    let mut at = last;
    while count < cap {
        match schedule.next_after(at) {
            Some(next) if next <= now => {
                count += 1;
                at = next;
            }
            _ => break,
        }
    }
    count
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
    fn missed_instants_are_counted_up_to_a_cap() {
        let every_second = Schedule::parse("* * * * * *", Tz::UTC).unwrap();
        let (last, now) = (at("2026-01-01T00:00:00Z"), at("2026-01-01T00:00:10Z"));
        assert_eq!(count(&every_second, last, now, 100), 10);
        assert_eq!(count(&every_second, last, now, 4), 4);
        assert_eq!(count(&every_second, now, now, 100), 0);
    }

    #[test]
    fn nothing_is_missed_when_the_last_fire_is_recent() {
        let hourly = Schedule::parse("@hourly", Tz::UTC).unwrap();
        assert!(missed(&hourly, at("2026-01-01T10:00:00Z"), at("2026-01-01T10:59:59Z"), Catchup::All, 10).is_empty());
    }
}
