//! When a job fires: a cron expression evaluated in a time zone.
//!
//! Wraps croner, which already follows Vixie cron across daylight-saving changes:
//! a fixed-time fire in the skipped hour runs right after the jump, a fixed-time fire
//! in the repeated hour runs once (at the first of the two instants), and interval
//! jobs (`*/15 * * * *`) keep their pace in real time. Fires are identified by
//! instant; callers ask for the next fire strictly after the last one, so the same
//! instant can never be produced twice. This module does not keep state or sleep.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed `schedule:` value.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    kind: Kind,
    zone: Tz,
}

#[derive(Clone)]
enum Kind {
    /// Shared: a parsed pattern takes kilobytes, and jobs often share patterns.
    Cron(Arc<Cron>),
    /// `@reboot`: once when the daemon starts, never from the clock.
    Reboot,
}

impl Schedule {
    /// Five fields (`m h dom mon dow`), six with leading seconds, or one of
    /// `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`,
    /// `@hourly`, `@reboot`.
    pub fn parse(text: &str, zone: Tz) -> Result<Schedule, String> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("@reboot") {
            return Ok(Schedule { text: trimmed.to_string(), kind: Kind::Reboot, zone });
        }
        let normalized = if trimmed.eq_ignore_ascii_case("@midnight") { "@daily" } else { trimmed };
        if normalized.starts_with('@') {
            const ALIASES: [&str; 6] = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly"];
            if !ALIASES.iter().any(|a| a.eq_ignore_ascii_case(normalized)) {
                return Err(format!(
                    "unknown shorthand `{trimmed}`; expected one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, @reboot"
                ));
            }
        }
        let fields = normalized.split_whitespace().count();
        if !normalized.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with leading seconds, found {fields}"
            ));
        }
        let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
        let cron = parser.parse(normalized).map_err(|e| lowercase_first(&e.to_string()))?;
        Ok(Schedule { text: trimmed.to_string(), kind: Kind::Cron(Arc::new(cron)), zone })
    }

    pub fn is_reboot(&self) -> bool {
        matches!(self.kind, Kind::Reboot)
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first fire strictly after `after`; `None` for `@reboot` or a pattern that
    /// never matches again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Kind::Cron(cron) = &self.kind else {
            return None;
        };
        let local = after.with_timezone(&self.zone);
        cron.find_next_occurrence(&local, false).ok().map(|t| t.with_timezone(&Utc))
    }
}

/// Parses schedules once per distinct (text, zone), sharing the result.
#[derive(Default)]
pub struct Schedules {
    parsed: HashMap<(String, Tz), Result<Schedule, String>>,
}

impl Schedules {
    pub fn parse(&mut self, text: &str, zone: Tz) -> Result<Schedule, String> {
        self.parsed.entry((text.to_string(), zone)).or_insert_with(|| Schedule::parse(text, zone)).clone()
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.text, self.zone)
    }
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The zone to use when the configuration names none: `$TZ` if it names an IANA
/// zone, else the host's, else UTC.
pub fn host_zone() -> Tz {
    std::env::var("TZ")
        .ok()
        .and_then(|tz| Tz::from_str(tz.trim_start_matches(':')).ok())
        .or_else(|| iana_time_zone::get_timezone().ok().and_then(|tz| Tz::from_str(&tz).ok()))
        .unwrap_or(Tz::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn fires(schedule: &Schedule, from: &str, count: usize) -> Vec<String> {
        let mut at = utc(from);
        let mut out = Vec::new();
        for _ in 0..count {
            at = schedule.next_after(at).unwrap();
            out.push(at.with_timezone(&schedule.zone()).to_rfc3339());
        }
        out
    }

    #[test]
    fn five_fields_fire_on_the_minute_and_six_on_the_second() {
        let every_minute = Schedule::parse("* * * * *", Tz::UTC).unwrap();
        assert_eq!(
            fires(&every_minute, "2026-01-01T10:00:30Z", 2),
            ["2026-01-01T10:01:00+00:00", "2026-01-01T10:02:00+00:00"]
        );
        let every_5s = Schedule::parse("*/5 * * * * *", Tz::UTC).unwrap();
        assert_eq!(
            fires(&every_5s, "2026-01-01T10:00:03Z", 2),
            ["2026-01-01T10:00:05+00:00", "2026-01-01T10:00:10+00:00"]
        );
    }

    #[test]
    fn aliases_and_reboot() {
        let hourly = Schedule::parse("@hourly", Tz::UTC).unwrap();
        assert_eq!(fires(&hourly, "2026-01-01T10:20:00Z", 1), ["2026-01-01T11:00:00+00:00"]);
        let daily = Schedule::parse("@daily", Tz::UTC).unwrap();
        assert_eq!(fires(&daily, "2026-01-01T10:20:00Z", 1), ["2026-01-02T00:00:00+00:00"]);
        let reboot = Schedule::parse("@reboot", Tz::UTC).unwrap();
        assert!(reboot.is_reboot());
        assert_eq!(reboot.next_after(utc("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn bad_expressions_say_what_was_expected() {
        assert!(Schedule::parse("61 * * * *", Tz::UTC).is_err());
        let err = Schedule::parse("* * *", Tz::UTC).unwrap_err();
        assert!(err.contains("expected 5 fields"), "{err}");
        let err = Schedule::parse("@sometimes", Tz::UTC).unwrap_err();
        assert!(err.contains("unknown shorthand"), "{err}");
        assert!(Schedule::parse("0 0 0 1 1 * 2030", Tz::UTC).is_err());
    }

    #[test]
    fn time_zone_decides_the_wall_clock() {
        let zone: Tz = "Europe/Berlin".parse().unwrap();
        let nine = Schedule::parse("0 9 * * *", zone).unwrap();
        assert_eq!(nine.next_after(utc("2026-01-10T00:00:00Z")), Some(utc("2026-01-10T08:00:00Z")));
        assert_eq!(nine.next_after(utc("2026-07-10T00:00:00Z")), Some(utc("2026-07-10T07:00:00Z")));
    }

    #[test]
    fn skipped_hour_fires_right_after_the_jump() {
        // 2026-03-08: New York jumps from 02:00 to 03:00 local.
        let zone: Tz = "America/New_York".parse().unwrap();
        let half_past_two = Schedule::parse("30 2 * * *", zone).unwrap();
        let next = half_past_two.next_after(utc("2026-03-08T05:00:00Z")).unwrap();
        assert_eq!(next, zone.with_ymd_and_hms(2026, 3, 8, 3, 0, 0).unwrap().with_timezone(&Utc));
        // And the day after, back to 02:30.
        let after = half_past_two.next_after(next).unwrap();
        assert_eq!(after, zone.with_ymd_and_hms(2026, 3, 9, 2, 30, 0).unwrap().with_timezone(&Utc));
    }

    #[test]
    fn repeated_hour_fires_a_fixed_time_job_once() {
        // 2026-11-01: New York falls back from 02:00 EDT to 01:00 EST.
        let zone: Tz = "America/New_York".parse().unwrap();
        let half_past_one = Schedule::parse("30 1 * * *", zone).unwrap();
        let got = fires(&half_past_one, "2026-11-01T04:00:00Z", 2);
        assert_eq!(got, ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]);
    }

    #[test]
    fn interval_jobs_keep_their_pace_through_the_repeated_hour() {
        let zone: Tz = "America/New_York".parse().unwrap();
        let every_30m = Schedule::parse("*/30 * * * *", zone).unwrap();
        let got = fires(&every_30m, "2026-11-01T05:10:00Z", 4);
        assert_eq!(
            got,
            [
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T01:30:00-05:00",
                "2026-11-01T02:00:00-05:00",
            ]
        );
        // No instant twice, always moving forward.
        let mut at = utc("2026-11-01T04:00:00Z");
        for _ in 0..20 {
            let next = every_30m.next_after(at).unwrap();
            assert!(next > at);
            at = next;
        }
    }
}
