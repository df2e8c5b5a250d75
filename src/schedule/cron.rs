//! When a job fires: a cron expression evaluated in a time zone, as crond computes it.
//!
//! croner finds the wall-clock times a pattern names; this module decides which
//! instants they are, with Vixie cron's rules for daylight saving. A *fixed-time*
//! pattern (no `*` in its minute and hour fields, so lists and ranges count as fixed)
//! fires once in a repeated interval, at the first of the two instants, and a time
//! the clock skips fires right after the jump. A pattern with `*` in its minute or
//! hour field keeps its pace in real time: it fires on both passes of a repeated
//! interval and not at all in a skipped one. The day fields combine as crontab(5)
//! says: when either starts with `*` both must match, otherwise either may.
//! Fires are identified by instant; callers ask for the next fire strictly after the
//! last one, so the same instant is never produced twice. This module does not keep
//! state or sleep.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc};
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
    Cron(Arc<Pattern>),
    /// `@reboot`: once when the daemon starts, never from the clock.
    Reboot,
}

struct Pattern {
    cron: Cron,
    /// No `*` in the minute and hour fields: Vixie cron's fixed-time job.
    fixed_time: bool,
    /// No calendar day matches the day and month fields, ever.
    never: bool,
}

/// The field names, for messages, in the order of a six-field expression.
const FIELD_NAMES: [&str; 6] = ["second", "minute", "hour", "day-of-month", "month", "day-of-week"];

impl Schedule {
    /// Five fields (`m h dom mon dow`), six with leading seconds, or one of
    /// `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`,
    /// `@hourly`, `@reboot`.
    pub fn parse(text: &str, zone: Tz) -> Result<Schedule, String> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("@reboot") {
            return Ok(Schedule { text: trimmed.to_string(), kind: Kind::Reboot, zone });
        }
        let expanded = if trimmed.starts_with('@') {
            const ALIASES: [(&str, &str); 7] = [
                ("@yearly", "0 0 1 1 *"),
                ("@annually", "0 0 1 1 *"),
                ("@monthly", "0 0 1 * *"),
                ("@weekly", "0 0 * * 0"),
                ("@daily", "0 0 * * *"),
                ("@midnight", "0 0 * * *"),
                ("@hourly", "0 * * * *"),
            ];
            match ALIASES.iter().find(|(alias, _)| alias.eq_ignore_ascii_case(trimmed)) {
                Some((_, fields)) => *fields,
                None => {
                    return Err(format!(
                        "unknown shorthand `{trimmed}`; expected one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, @reboot"
                    ));
                }
            }
        } else {
            trimmed
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if !(5..=6).contains(&fields.len()) {
            return Err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with leading seconds, found {}",
                fields.len()
            ));
        }
        let names = &FIELD_NAMES[6 - fields.len()..];
        for (field, name) in fields.iter().zip(names) {
            // crond rejects an empty list item; croner would read it as nothing.
            if field.split(',').any(str::is_empty) {
                return Err(format!("empty item in the list `{field}` of the {name} field"));
            }
            // croner's `+` (AND the day fields) is not cron; the day rule below is crond's.
            if field.contains('+') {
                return Err(format!("unexpected `+` in the {name} field `{field}`"));
            }
        }
        let [.., minute, hour, dom, _month, dow] = fields[..] else {
            unreachable!("five or six fields, checked above")
        };
        // crontab(5): the day fields are ORed only when neither starts with `*`.
        let wild = |field: &str| field.starts_with('*') || field.starts_with('?');
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .dom_and_dow(wild(dom) || wild(dow))
            .build();
        let cron = parser.parse(expanded).map_err(|e| blame_field(&parser, &fields, names, &e.to_string()))?;
        let fixed_time = !minute.contains('*') && !hour.contains('*');
        let never = !fires_on_some_day(&cron);
        let pattern = Pattern { cron, fixed_time, never };
        Ok(Schedule { text: trimmed.to_string(), kind: Kind::Cron(Arc::new(pattern)), zone })
    }

    pub fn is_reboot(&self) -> bool {
        matches!(self.kind, Kind::Reboot)
    }

    /// A clock pattern whose day and month fields match no date at all (`0 0 30 2 *`).
    pub fn never_fires(&self) -> bool {
        matches!(&self.kind, Kind::Cron(pattern) if pattern.never)
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The schedule in English words (croner's describer), for people:
    /// `*/10 * * * * *` is "Every 10 seconds.", `@reboot` "When the daemon starts.".
    pub fn describe(&self) -> String {
        match &self.kind {
            // croner says "At every 10 seconds."; people say "Every 10 seconds."
            Kind::Cron(pattern) => {
                let words = pattern.cron.describe();
                match words.strip_prefix("At every ") {
                    Some(rest) => format!("Every {rest}"),
                    None => words,
                }
            }
            Kind::Reboot => "When the daemon starts.".to_string(),
        }
    }

    /// The first fire strictly after `after`; `None` for `@reboot` or a pattern that
    /// never matches again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Kind::Cron(pattern) = &self.kind else {
            return None;
        };
        if pattern.never {
            return None;
        }
        // Walk wall-clock candidates from `after`'s own. A clock that falls back
        // repeats wall times, so the second pass of a repeated interval that has
        // begun — wall times already behind — can still hold the next fire; it is
        // walked too when it could come first.
        let offset_after = self.offset_at(after);
        let wall_after = after.naive_utc().checked_add_signed(offset_after)?;
        let ahead = self.earliest_from(pattern, wall_after, after, offset_after, None);
        let Some((fall_back, repeated_from)) = self.fall_back_near(after, offset_after) else {
            return ahead;
        };
        if ahead.is_some_and(|ahead| ahead < fall_back) {
            return ahead;
        }
        let behind = self.earliest_from(pattern, repeated_from, after, offset_after, Some(wall_after));
        match (ahead, behind) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The earliest fire after `after` among the wall-clock times from `from` (up
    /// to `until`). Walks until no later wall time can name an earlier instant.
    fn earliest_from(
        &self,
        pattern: &Pattern,
        from: NaiveDateTime,
        after: DateTime<Utc>,
        offset_after: TimeDelta,
        until: Option<NaiveDateTime>,
    ) -> Option<DateTime<Utc>> {
        let mut cursor = from;
        let mut inclusive = true;
        let mut best: Option<DateTime<Utc>> = None;
        loop {
            let Ok(wall) = pattern.cron.find_next_occurrence(&cursor, inclusive) else {
                return best;
            };
            if until.is_some_and(|until| wall > until) {
                return best;
            }
            if let Some(best) = best {
                // The earliest instant `wall` can name is at the largest offset nearby.
                let largest = offset_after.max(self.offset_at(best));
                if wall.checked_sub_signed(largest).is_none_or(|earliest| earliest.and_utc() >= best) {
                    return Some(best);
                }
            }
            for instant in self.instants(pattern, wall) {
                if instant > after && best.is_none_or(|b| instant < b) {
                    best = Some(instant);
                }
            }
            cursor = wall;
            inclusive = false;
        }
    }

    /// A fall-back whose repeated interval has begun by `after` or begins before
    /// the clock falls back: the instant it falls back, and the wall-clock time its
    /// repeated interval starts at. `None` almost always. (No zone's clock has
    /// moved by 3 hours at once.)
    fn fall_back_near(&self, after: DateTime<Utc>, offset_after: TimeDelta) -> Option<(DateTime<Utc>, NaiveDateTime)> {
        let offset_in = |delta: TimeDelta| after.checked_add_signed(delta).map(|t| self.offset_at(t));
        let shift = offset_after - offset_in(TimeDelta::hours(3))?;
        if shift <= TimeDelta::zero() || offset_in(shift)? == offset_after {
            return None;
        }
        // The clock falls back in (after, after + shift]: find the instant.
        let (mut before, mut at) = (after, after.checked_add_signed(shift)?);
        while at - before > TimeDelta::seconds(1) {
            let middle = before + (at - before) / 2;
            if self.offset_at(middle) == offset_after { before = middle } else { at = middle }
        }
        Some((at, at.naive_utc().checked_add_signed(offset_after - shift)?))
    }

    fn offset_at(&self, at: DateTime<Utc>) -> TimeDelta {
        let seconds = self.zone.offset_from_utc_datetime(&at.naive_utc()).fix().local_minus_utc();
        TimeDelta::seconds(i64::from(seconds))
    }

    /// The instants at which the wall-clock time `wall` fires, by Vixie cron's rules.
    fn instants(&self, pattern: &Pattern, wall: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match self.zone.from_local_datetime(&wall) {
            LocalResult::Single(at) => vec![at.with_timezone(&Utc)],
            LocalResult::Ambiguous(first, _) if pattern.fixed_time => vec![first.with_timezone(&Utc)],
            LocalResult::Ambiguous(first, second) => vec![first.with_timezone(&Utc), second.with_timezone(&Utc)],
            LocalResult::None if pattern.fixed_time => self.end_of_gap(wall).into_iter().collect(),
            LocalResult::None => Vec::new(),
        }
    }

    /// The first instant after the skipped wall-clock time `wall`: the jump itself.
    /// Zone transitions fall on whole minutes.
    fn end_of_gap(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        let minute = wall.with_second(0)?.with_nanosecond(0)?;
        (1..=24 * 60).find_map(|m| {
            let candidate = minute + TimeDelta::minutes(m);
            self.zone.from_local_datetime(&candidate).earliest().map(|at| at.with_timezone(&Utc))
        })
    }
}

/// Whether any date matches the day and month fields. The Gregorian calendar,
/// weekdays included, repeats every 400 years, so one cycle decides it.
fn fires_on_some_day(cron: &Cron) -> bool {
    let start = NaiveDate::from_ymd_opt(2000, 1, 1).expect("a real date");
    start.iter_days().take(146_097).any(|date| {
        let weekday = croner::Weekday::from_days_from_sunday(date.weekday().num_days_from_sunday());
        cron.pattern.month_match(date.month()).unwrap_or(false)
            && cron.pattern.day_match(date.year(), date.month(), date.day(), weekday).unwrap_or(false)
    })
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

/// croner's message for a bad expression, with the field at fault named: the one
/// field that, replaced by `*`, makes the expression parse.
fn blame_field(parser: &CronParser, fields: &[&str], names: &[&str], message: &str) -> String {
    const RANGES: [&str; 6] = ["0-59", "0-59", "0-23", "1-31", "1-12 or jan-dec", "0-7 or sun-sat"];
    let message = if message.contains("illegal character") {
        "unexpected character".to_string()
    } else {
        lowercase_first(message.trim_start_matches("Component error: ").trim_end_matches('.'))
    };
    let culprits: Vec<usize> = (0..fields.len())
        .filter(|&i| {
            let mut replaced = fields.to_vec();
            replaced[i] = "*";
            parser.parse(&replaced.join(" ")).is_ok()
        })
        .collect();
    match culprits[..] {
        [i] if message.starts_with("nth specifier") => format!(
            "the {} field `{}`: the number after `#` must be 1-5 (`1#2` is the month's second Monday)",
            names[i], fields[i]
        ),
        [i] if backwards(fields[i]).is_some() => {
            let (from, to) = backwards(fields[i]).expect("checked");
            format!("the {} field `{}`: the range {from}-{to} runs backwards (write {to}-{from})", names[i], fields[i])
        }
        [i] => {
            let range = RANGES[6 - fields.len() + i];
            format!("the {} field `{}`: {message} (expected {range})", names[i], fields[i])
        }
        _ => message,
    }
}

/// The first numeric range of `field` whose start is past its end (`5-1`).
fn backwards(field: &str) -> Option<(u32, u32)> {
    field.split(',').find_map(|item| {
        let range = item.split('/').next()?;
        let (from, to) = range.split_once('-')?;
        let (from, to) = (from.parse::<u32>().ok()?, to.parse::<u32>().ok()?);
        (from > to).then_some((from, to))
    })
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

    #[test]
    fn schedules_are_described_in_words() {
        let words = |text: &str| Schedule::parse(text, Tz::UTC).unwrap().describe();
        for (text, expected) in [
            ("*/10 * * * * *", "Every 10 seconds."),
            ("0 */5 * * * *", "Every 5 minutes."),
            ("* * * * *", "Every minute."),
            ("0 3 * * *", "At 03:00."),
            ("30 9 * * 1-5", "At 09:30, on Monday, Tuesday, Wednesday, Thursday, and Friday."),
            ("@hourly", "At minute 0 past every hour."),
            ("@reboot", "When the daemon starts."),
        ] {
            assert_eq!(words(text), expected, "{text}");
        }
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
        let err = Schedule::parse("0 24 * * *", Tz::UTC).unwrap_err();
        assert_eq!(err, "the hour field `24`: number out of bounds (expected 0-23)");
        let err = Schedule::parse("0 0 * * 1#6", Tz::UTC).unwrap_err();
        assert!(err.starts_with("the day-of-week field `1#6`: the number after `#` must be 1-5"), "{err}");
        let err = Schedule::parse("0 0 5-1 * *", Tz::UTC).unwrap_err();
        assert_eq!(err, "the day-of-month field `5-1`: the range 5-1 runs backwards (write 1-5)");
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
    #[test]
    fn a_day_field_starting_with_a_star_ands_the_other() {
        // crontab(5) and cronie: `*/2` restricts nothing as far as ORing goes.
        let every_other_day_on_monday = Schedule::parse("0 0 */2 * 1", Tz::UTC).unwrap();
        assert_eq!(
            fires(&every_other_day_on_monday, "2026-01-01T00:00:00Z", 2),
            ["2026-01-05T00:00:00+00:00", "2026-01-19T00:00:00+00:00"]
        );
        let leap_day_on_even_weekday = Schedule::parse("0 0 29 2 */2", Tz::UTC).unwrap();
        assert_eq!(fires(&leap_day_on_even_weekday, "2026-01-01T00:00:00Z", 1), ["2028-02-29T00:00:00+00:00"]);
        // Neither starts with `*`: either day field may match.
        let first_or_wednesday = Schedule::parse("0 0 1,15 * 3", Tz::UTC).unwrap();
        assert_eq!(
            fires(&first_or_wednesday, "2026-01-01T00:00:00Z", 3),
            ["2026-01-07T00:00:00+00:00", "2026-01-14T00:00:00+00:00", "2026-01-15T00:00:00+00:00"]
        );
    }

    #[test]
    fn ranges_in_the_repeated_hour_fire_once() {
        let zone: Tz = "America/New_York".parse().unwrap();
        let one_to_three = Schedule::parse("0 1-3 * * *", zone).unwrap();
        assert_eq!(
            fires(&one_to_three, "2026-11-01T04:00:00Z", 4),
            [
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T02:00:00-05:00",
                "2026-11-01T03:00:00-05:00",
                "2026-11-02T01:00:00-05:00"
            ]
        );
    }

    #[test]
    fn lists_in_the_skipped_hour_fire_right_after_the_jump_once() {
        let zone: Tz = "America/New_York".parse().unwrap();
        let quarter_past_and_to = Schedule::parse("15,45 1-2 * * *", zone).unwrap();
        assert_eq!(
            fires(&quarter_past_and_to, "2026-03-08T05:00:00Z", 4),
            [
                "2026-03-08T01:15:00-05:00",
                "2026-03-08T01:45:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-09T01:15:00-04:00"
            ]
        );
    }

    #[test]
    fn lord_howe_shifts_by_half_an_hour() {
        let zone: Tz = "Australia/Lord_Howe".parse().unwrap();
        let quarter_past_and_to = Schedule::parse("15,45 1-2 * * *", zone).unwrap();
        // 2026-10-04 02:00 jumps to 02:30.
        assert_eq!(
            fires(&quarter_past_and_to, "2026-10-03T14:00:00Z", 4),
            [
                "2026-10-04T01:15:00+10:30",
                "2026-10-04T01:45:00+10:30",
                "2026-10-04T02:30:00+11:00",
                "2026-10-04T02:45:00+11:00"
            ]
        );
        // 2026-04-05 02:00 falls back to 01:30: 01:45 once, not twice.
        assert_eq!(
            fires(&quarter_past_and_to, "2026-04-04T13:00:00Z", 4),
            [
                "2026-04-05T01:15:00+11:00",
                "2026-04-05T01:45:00+11:00",
                "2026-04-05T02:15:00+10:30",
                "2026-04-05T02:45:00+10:30"
            ]
        );
        // A wildcard minute keeps its pace: both passes of 01:30–02:00.
        let every_quarter = Schedule::parse("*/15 1 * * *", zone).unwrap();
        assert_eq!(
            fires(&every_quarter, "2026-04-04T14:20:00Z", 4),
            [
                "2026-04-05T01:30:00+11:00",
                "2026-04-05T01:45:00+11:00",
                "2026-04-05T01:30:00+10:30",
                "2026-04-05T01:45:00+10:30"
            ]
        );
    }

    #[test]
    fn berlin_lists_around_both_changes() {
        let zone: Tz = "Europe/Berlin".parse().unwrap();
        let two_and_half_past = Schedule::parse("0,30 2 * * *", zone).unwrap();
        assert_eq!(
            fires(&two_and_half_past, "2026-03-28T23:00:00Z", 2),
            ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"]
        );
        assert_eq!(
            fires(&two_and_half_past, "2026-10-24T23:00:00Z", 3),
            ["2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:00:00+01:00"]
        );
    }

    #[test]
    fn schedules_that_match_no_date_never_fire() {
        for text in ["0 0 30 2 *", "* * 31 2 *", "0 0 31 4 *", "0 0 31 2 */2", "0 0 30W 2 *", "0 0 * * L"] {
            let schedule = Schedule::parse(text, Tz::UTC).unwrap();
            assert!(schedule.never_fires(), "{text}");
            assert_eq!(schedule.next_after(utc("2026-01-01T00:00:00Z")), None, "{text}");
        }
        // ORed day fields: every Monday of February.
        for text in ["0 0 31 2 1", "0 0 29 2 *", "0 0 L 2 *", "0 0 * 2 1#5", "0 0 LW 2 *"] {
            assert!(!Schedule::parse(text, Tz::UTC).unwrap().never_fires(), "{text}");
        }
    }

    #[test]
    fn empty_list_items_are_rejected_as_crond_does() {
        for text in ["1,,2 * * * *", "1, * * * *", "0 ,1 * * *", "0 0 * * +1"] {
            assert!(Schedule::parse(text, Tz::UTC).is_err(), "{text}");
        }
    }
    /// Vixie cron's rules written the other way round: walk real time minute by
    /// minute and decide at each instant whether it fires.
    fn brute_force(schedule: &Schedule, from: DateTime<Utc>, minutes: i64) -> Vec<DateTime<Utc>> {
        let Kind::Cron(pattern) = &schedule.kind else { unreachable!() };
        let zone = schedule.zone();
        let wall = |at: DateTime<Utc>| at.with_timezone(&zone).naive_local();
        let matches = |naive: NaiveDateTime| pattern.cron.is_time_matching(&naive).unwrap();
        let mut out = Vec::new();
        for step in 1..=minutes {
            let at = from + TimeDelta::minutes(step);
            let here = wall(at);
            let second_pass =
                matches!(zone.from_local_datetime(&here), LocalResult::Ambiguous(_, later) if later == at);
            let mut fires = matches(here) && !(pattern.fixed_time && second_pass);
            // The wall-clock minutes skipped just before `at`.
            let mut skipped = wall(at - TimeDelta::minutes(1)) + TimeDelta::minutes(1);
            while pattern.fixed_time && skipped < here {
                fires |= matches(skipped);
                skipped += TimeDelta::minutes(1);
            }
            if fires {
                out.push(at);
            }
        }
        out
    }

    #[test]
    fn next_after_agrees_with_a_minute_by_minute_walk_around_transitions() {
        let patterns = [
            "* * * * *",
            "*/7 * * * *",
            "0 * * * *",
            "30 * * * *",
            "*/20 1-3 * * *",
            "0 1-3 * * *",
            "15,45 1-2 * * *",
            "30 2 * * *",
            "0,30 2 * * *",
            "59 1 * * *",
            "0 0-23/2 * * *",
            "45 0-4 * * 0",
            "10 2 */2 * *",
            "0,30 3 * * *",
            "50 3 * * *",
        ];
        // Two days around each transition, starting a minute before an hour.
        let windows = [
            ("America/New_York", "2026-03-07T04:59:00Z"),
            ("America/New_York", "2026-10-31T03:59:00Z"),
            ("Europe/Berlin", "2026-03-28T22:59:00Z"),
            ("Europe/Berlin", "2026-10-24T21:59:00Z"),
            ("Australia/Lord_Howe", "2026-10-03T12:59:00Z"),
            ("Australia/Lord_Howe", "2026-04-04T12:59:00Z"),
            ("Pacific/Chatham", "2026-04-04T12:59:00Z"),
            ("Pacific/Chatham", "2026-09-26T12:59:00Z"),
        ];
        for (zone, from) in windows {
            let zone: Tz = zone.parse().unwrap();
            for text in patterns {
                let schedule = Schedule::parse(text, zone).unwrap();
                let from = utc(from);
                let expected = brute_force(&schedule, from, 2 * 24 * 60);
                let mut got = Vec::new();
                let mut at = from;
                while let Some(next) = schedule.next_after(at).filter(|n| *n <= from + TimeDelta::days(2)) {
                    got.push(next);
                    at = next;
                }
                // On a mismatch, show where the two first part, not two days of fires.
                let parted =
                    got.iter().zip(&expected).position(|(g, e)| g != e).unwrap_or(got.len().min(expected.len()));
                assert_eq!(
                    &got[parted..got.len().min(parted + 3)],
                    &expected[parted..expected.len().min(parted + 3)],
                    "`{text}` in {zone} from {from}: fire {parted} and on ({} vs {} fires)",
                    got.len(),
                    expected.len()
                );
                // And from instants that are not fires, off the minute.
                let mut after = from;
                while after < from + TimeDelta::hours(47) {
                    let want = expected.iter().find(|at| **at > after).copied();
                    let got = schedule.next_after(after).filter(|n| *n <= from + TimeDelta::days(2));
                    assert_eq!(got, want, "`{text}` in {zone} after {after}");
                    after += TimeDelta::seconds(7 * 60 + 13);
                }
            }
        }
    }
}
