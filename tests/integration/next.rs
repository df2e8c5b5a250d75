//! `loom next`: fire instants from the real binary, over a table of vectors from
//! crontab(5)/cronie and the test suites of peers (robfig/cron, croniter, the `cron`
//! crate, Quartz's documented extensions), each naming its source. Where a peer
//! differs from Vixie cron's daylight-saving rules the vector says so and expects
//! what cronie does. Also `loom next JOB`, and `loom check` on schedules that never fire.

use crate::harness::{Workspace, loom};

struct Vector {
    source: &'static str,
    expr: &'static str,
    zone: &'static str,
    from: &'static str,
    fires: &'static [&'static str],
}

const fn v(
    source: &'static str,
    expr: &'static str,
    zone: &'static str,
    from: &'static str,
    fires: &'static [&'static str],
) -> Vector {
    Vector { source, expr, zone, from, fires }
}

const UTC: &str = "UTC";
const NY: &str = "America/New_York";

#[rustfmt::skip]
const VECTORS: &[Vector] = &[
    // crontab(5) and cronie: "if either field begins with an asterisk" the day
    // fields are ANDed, otherwise ORed.
    v("cronie: `*/2` in day-of-month ANDs day-of-week (issue 13)", "0 0 */2 * 1", UTC, "2026-01-01T00:00:00Z",
      &["2026-01-05T00:00:00+00:00", "2026-01-19T00:00:00+00:00"]),
    v("cronie: `*/2` in day-of-week ANDs day-of-month (issue 13)", "0 0 29 2 */2", UTC, "2026-01-01T00:00:00Z",
      &["2028-02-29T00:00:00+00:00"]),
    v("crontab(5) example: 04:30 on the 1st and 15th, plus every Friday", "30 4 1,15 * 5", UTC, "2026-01-01T00:00:00Z",
      &["2026-01-01T04:30:00+00:00", "2026-01-02T04:30:00+00:00", "2026-01-09T04:30:00+00:00",
        "2026-01-15T04:30:00+00:00", "2026-01-16T04:30:00+00:00"]),
    v("crontab(5) example: 22:00 on weekdays", "0 22 * * 1-5", UTC, "2026-01-02T23:00:00Z",
      &["2026-01-05T22:00:00+00:00", "2026-01-06T22:00:00+00:00"]),
    v("crontab(5) example: 23 minutes past every even hour", "23 0-23/2 * * *", UTC, "2026-01-01T01:00:00Z",
      &["2026-01-01T02:23:00+00:00", "2026-01-01T04:23:00+00:00"]),
    v("crontab(5) example: names for days", "5 4 * * sun", UTC, "2026-01-01T00:00:00Z",
      &["2026-01-04T04:05:00+00:00", "2026-01-11T04:05:00+00:00"]),
    v("crontab(5): 0 and 7 are both Sunday", "0 0 * * 7", UTC, "2026-01-01T00:00:00Z",
      &["2026-01-04T00:00:00+00:00"]),
    v("crontab(5): @weekly is 0 0 * * 0", "@weekly", UTC, "2026-01-01T00:00:00Z", &["2026-01-04T00:00:00+00:00"]),
    v("crontab(5): @monthly is 0 0 1 * *", "@monthly", UTC, "2026-01-01T00:00:00Z", &["2026-02-01T00:00:00+00:00"]),
    v("crontab(5): @yearly is 0 0 1 1 *", "@yearly", UTC, "2026-01-01T00:00:00Z", &["2027-01-01T00:00:00+00:00"]),
    v("crontab(5): @hourly is 0 * * * *", "@hourly", UTC, "2026-01-01T10:20:00Z", &["2026-01-01T11:00:00+00:00"]),
    v("crontab(5): @midnight is @daily", "@midnight", UTC, "2026-01-01T10:20:00Z", &["2026-01-02T00:00:00+00:00"]),
    // robfig/cron spec_test.go TestNext. Its five-field form has leading seconds, so
    // it is written here with six; its `N/step` (not in crontab(5)) as `N-max/step`.
    v("robfig/cron TestNext: simple", "0 0-59/15 * * * *", UTC, "2012-07-09T14:45:00Z", &["2012-07-09T15:00:00+00:00"]),
    v("robfig/cron TestNext: simple", "0 0-59/15 * * * *", UTC, "2012-07-09T14:59:59Z", &["2012-07-09T15:00:00+00:00"]),
    v("robfig/cron TestNext: wrap around hours", "0 20-35/15 * * * *", UTC, "2012-07-09T15:45:00Z",
      &["2012-07-09T16:20:00+00:00"]),
    v("robfig/cron TestNext: wrap around days", "0 */15 * * * *", UTC, "2012-07-09T23:46:00Z",
      &["2012-07-10T00:00:00+00:00"]),
    v("robfig/cron TestNext: wrap around days", "15-59/35 20-35/15 * * * *", UTC, "2012-07-09T23:35:51Z",
      &["2012-07-10T00:20:15+00:00"]),
    v("robfig/cron TestNext: wrap around days", "15-59/35 20-35/15 10-12 * * *", UTC, "2012-07-09T23:35:51Z",
      &["2012-07-10T10:20:15+00:00"]),
    v("robfig/cron TestNext: wrap around days", "15-59/35 20-35/15 1-23/2 */2 * *", UTC, "2012-07-09T23:35:51Z",
      &["2012-07-11T01:20:15+00:00"]),
    v("robfig/cron TestNext: wrap around days", "15-59/35 20-35/15 * 9-20 Jul *", UTC, "2012-07-09T23:35:51Z",
      &["2012-07-10T00:20:15+00:00"]),
    v("robfig/cron TestNext: wrap around months", "0 0 0 9 Apr-Oct ?", UTC, "2012-07-09T23:35:00Z",
      &["2012-08-09T00:00:00+00:00"]),
    v("robfig/cron TestNext: `*/5` ANDs Mon", "0 0 0 */5 Apr,Aug,Oct Mon", UTC, "2012-07-09T23:35:00Z",
      &["2012-08-06T00:00:00+00:00"]),
    v("robfig/cron TestNext: wrap around months", "0 0 0 */5 Oct Mon", UTC, "2012-07-09T23:35:00Z",
      &["2012-10-01T00:00:00+00:00"]),
    v("robfig/cron TestNext: wrap around years", "0 0 0 * Feb Mon", UTC, "2012-07-09T23:35:00Z",
      &["2013-02-04T00:00:00+00:00"]),
    v("robfig/cron TestNext: wrap around years (Mon/2 as Mon-Sat/2)", "0 0 0 * Feb Mon-Sat/2", UTC,
      "2012-07-09T23:35:00Z", &["2013-02-01T00:00:00+00:00"]),
    v("robfig/cron TestNext: wrap around everything", "0 * * * * *", UTC, "2012-12-31T23:59:45Z",
      &["2013-01-01T00:00:00+00:00"]),
    v("robfig/cron TestNext: leap year", "0 0 0 29 Feb ?", UTC, "2012-07-09T23:35:00Z",
      &["2016-02-29T00:00:00+00:00"]),
    v("robfig/cron TestNext: EST->EDT; robfig skips the fire, cronie runs it right after the jump",
      "0 30 2 11 Mar ?", NY, "2012-03-11T00:00:00-05:00", &["2012-03-11T03:00:00-04:00"]),
    v("robfig/cron TestNext: EDT->EST", "0 30 2 04 Nov ?", NY, "2012-11-04T00:00:00-04:00",
      &["2012-11-04T02:30:00-05:00"]),
    v("robfig/cron TestNext: EDT->EST; robfig fires again in the repeated hour, cronie once",
      "0 30 1 04 Nov ?", NY, "2012-11-04T01:45:00-04:00", &["2013-11-04T01:30:00-05:00"]),
    v("robfig/cron TestActivation: `*/2` ANDs Sun", "0 0 0 */2 * Sun", UTC, "2012-07-14T00:00:00Z",
      &["2012-07-15T00:00:00+00:00", "2012-07-29T00:00:00+00:00"]),
    v("robfig/cron TestActivation: both restricted, either matches", "0 0 0 1,15 * Sun", UTC, "2012-06-14T00:00:00Z",
      &["2012-06-15T00:00:00+00:00", "2012-06-17T00:00:00+00:00", "2012-06-24T00:00:00+00:00",
        "2012-07-01T00:00:00+00:00"]),
    // croniter's README examples.
    v("croniter README: every 5 minutes", "*/5 * * * *", UTC, "2010-01-25T04:46:00Z",
      &["2010-01-25T04:50:00+00:00", "2010-01-25T04:55:00+00:00", "2010-01-25T05:00:00+00:00"]),
    v("croniter README: 04:02 on Mondays and Fridays", "2 4 * * mon,fri", UTC, "2010-01-25T04:46:00Z",
      &["2010-01-29T04:02:00+00:00", "2010-02-01T04:02:00+00:00"]),
    v("croniter README: 04:02 on the 1st or on Wednesdays", "2 4 1 * wed", UTC, "2010-01-25T04:46:00Z",
      &["2010-01-27T04:02:00+00:00", "2010-02-01T04:02:00+00:00", "2010-02-03T04:02:00+00:00"]),
    v("croniter README: first Saturday and second Sunday (`#`)", "0 0 * * sat#1,sun#2", UTC, "2010-01-25T04:46:00Z",
      &["2010-02-06T00:00:00+00:00", "2010-02-14T00:00:00+00:00", "2010-03-06T00:00:00+00:00"]),
    v("croniter: `L` in day-of-month is the month's last day", "0 0 L * *", UTC, "2026-01-15T00:00:00Z",
      &["2026-01-31T00:00:00+00:00", "2026-02-28T00:00:00+00:00", "2026-03-31T00:00:00+00:00"]),
    // The `cron` crate's README expression, its year field dropped; crontab(5)'s OR rule.
    v("cron crate README expression", "0 30 9,12,15 1,15 May-Aug Mon,Wed,Fri", UTC, "2026-01-01T00:00:00Z",
      &["2026-05-01T09:30:00+00:00", "2026-05-01T12:30:00+00:00", "2026-05-01T15:30:00+00:00",
        "2026-05-04T09:30:00+00:00"]),
    // Quartz's documented extensions.
    v("Quartz: `5L` is the last Friday", "0 0 * * 5L", UTC, "2026-01-01T00:00:00Z",
      &["2026-01-30T00:00:00+00:00", "2026-02-27T00:00:00+00:00"]),
    v("Quartz: `LW` is the last weekday", "0 0 LW * *", UTC, "2026-01-01T00:00:00Z",
      &["2026-01-30T00:00:00+00:00", "2026-02-27T00:00:00+00:00", "2026-03-31T00:00:00+00:00"]),
    v("Quartz: `1W` never leaves the month (Saturday Aug 1 -> Monday Aug 3)", "0 0 1W * *", UTC,
      "2026-07-15T00:00:00Z", &["2026-08-03T00:00:00+00:00", "2026-09-01T00:00:00+00:00"]),
    // Daylight saving as Vixie cron and cronie handle it (DESIGN.md): a fixed time
    // (no `*` in minute and hour; lists and ranges included) fires once in a repeated
    // interval and right after a jump; `*` fields keep their pace in real time.
    v("cronie DST: list in the skipped hour runs right after the jump, once", "15,45 1-2 * * *", NY,
      "2026-03-08T00:00:00-05:00",
      &["2026-03-08T01:15:00-05:00", "2026-03-08T01:45:00-05:00", "2026-03-08T03:00:00-04:00",
        "2026-03-09T01:15:00-04:00"]),
    v("cronie DST: range in the repeated hour fires once", "0 1-3 * * *", NY, "2026-11-01T00:00:00-04:00",
      &["2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T03:00:00-05:00"]),
    v("cronie DST: `*/30` keeps its pace through the repeated hour", "*/30 * * * *", NY, "2026-11-01T01:10:00-04:00",
      &["2026-11-01T01:30:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T01:30:00-05:00",
        "2026-11-01T02:00:00-05:00"]),
    v("cronie DST: `*/30` has nothing in the skipped hour", "*/30 * * * *", NY, "2026-03-08T01:10:00-05:00",
      &["2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"]),
    v("cronie DST: hourly fires on both passes of the repeated hour", "0 * * * *", NY, "2026-11-01T00:30:00-04:00",
      &["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"]),
    v("cronie DST: Berlin list in the skipped hour", "0,30 2 * * *", "Europe/Berlin", "2026-03-29T00:00:00+01:00",
      &["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"]),
    v("cronie DST: Berlin list in the repeated hour", "0,30 2 * * *", "Europe/Berlin", "2026-10-25T00:00:00+02:00",
      &["2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:00:00+01:00"]),
    v("cronie DST: London fixed time in the skipped hour", "30 1 * * *", "Europe/London", "2026-03-29T00:00:00Z",
      &["2026-03-29T02:00:00+01:00", "2026-03-30T01:30:00+01:00"]),
    v("cronie DST: Lord Howe's 30-minute jump", "15,45 1-2 * * *", "Australia/Lord_Howe",
      "2026-10-04T00:00:00+10:30",
      &["2026-10-04T01:15:00+10:30", "2026-10-04T01:45:00+10:30", "2026-10-04T02:30:00+11:00",
        "2026-10-04T02:45:00+11:00"]),
    v("cronie DST: Lord Howe's 30-minute repeat, fixed times once", "15,45 1-2 * * *", "Australia/Lord_Howe",
      "2026-04-05T00:00:00+11:00",
      &["2026-04-05T01:15:00+11:00", "2026-04-05T01:45:00+11:00", "2026-04-05T02:15:00+10:30",
        "2026-04-05T02:45:00+10:30"]),
    v("cronie DST: Lord Howe's 30-minute repeat, `*/15` on both passes", "*/15 1 * * *", "Australia/Lord_Howe",
      "2026-04-05T01:20:00+11:00",
      &["2026-04-05T01:30:00+11:00", "2026-04-05T01:45:00+11:00", "2026-04-05T01:30:00+10:30",
        "2026-04-05T01:45:00+10:30"]),
    v("cronie DST: Chatham (+12:45/+13:45) repeats 02:45-03:45, fixed times once", "0,30 3 * * *",
      "Pacific/Chatham", "2026-04-05T00:00:00+13:45",
      &["2026-04-05T03:00:00+13:45", "2026-04-05T03:30:00+13:45", "2026-04-06T03:00:00+12:45"]),
    v("cronie DST: Chatham skips 02:45-03:45, both fixed times run once at the jump", "0,30 3 * * *",
      "Pacific/Chatham", "2026-09-27T00:00:00+12:45", &["2026-09-27T03:45:00+13:45", "2026-09-28T03:00:00+13:45"]),
    v("cronie DST: Chatham `*/30` keeps real-time pace over the jump", "*/30 * * * *", "Pacific/Chatham",
      "2026-09-27T02:10:00+12:45",
      &["2026-09-27T02:30:00+12:45", "2026-09-27T04:00:00+13:45", "2026-09-27T04:30:00+13:45"]),
    v("cronie DST: Sydney repeated 02:00-03:00, fixed time once", "30 2 * * *", "Australia/Sydney",
      "2026-04-05T00:00:00+11:00", &["2026-04-05T02:30:00+11:00", "2026-04-06T02:30:00+10:00"]),
];

#[test]
fn vectors_from_cronie_and_peers_pass_through_loom_next() {
    let mut failures = Vec::new();
    for vector in VECTORS {
        let count = vector.fires.len().to_string();
        let args = ["next", "--schedule", vector.expr, "--timezone", vector.zone, "--from", vector.from, "-n", &count];
        let run = loom(&args);
        let got: Vec<&str> = run.stdout.lines().collect();
        if run.code != Some(0) || got != vector.fires {
            failures.push(format!(
                "{}\n  `{}` in {} from {}\n  expected {:?}\n  got      {:?} {}",
                vector.source, vector.expr, vector.zone, vector.from, vector.fires, got, run.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{} vector(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn unsatisfiable_schedules_show_no_fires_and_exit_1() {
    // robfig/cron TestNext's "Unsatisfiable" cases, and crontab(5) dates that do not exist.
    for expr in ["0 0 0 30 Feb ?", "0 0 0 31 Apr ?", "0 0 30 2 *", "* * 31 2 *", "0 0 30W 2 *"] {
        let run = loom(&["next", "--schedule", expr, "--timezone", "UTC", "--from", "2026-01-01T00:00:00Z"]);
        run.assert_code(1);
        assert_eq!(run.stdout, "", "{expr}");
        assert!(run.stderr.starts_with("error: `") && run.stderr.contains("never fires"), "{expr}: {}", run.stderr);
    }
}

#[test]
fn from_takes_a_wall_clock_time_in_the_zone_and_json_shows_both_instants() {
    let run = loom(&[
        "next",
        "--schedule",
        "0 9 * * *",
        "--timezone",
        "Europe/Berlin",
        "--from",
        "2026-07-01T09:00",
        "-n",
        "1",
        "--json",
    ]);
    run.assert_code(0);
    let preview: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(preview["timezone"], "Europe/Berlin");
    assert_eq!(preview["fires"][0]["scheduled"], "2026-07-02T09:00:00+02:00");
    assert_eq!(preview["fires"][0]["starts"], "2026-07-02T09:00:00+02:00");
    let run =
        loom(&["next", "--schedule", "0 9 * * *", "--timezone", "America/New_York", "--from", "2026-03-08T02:30"]);
    run.assert_code(1);
    assert!(run.stderr.contains("the clock skips it"), "{}", run.stderr);
    let run = loom(&["next", "--schedule", "1,,2 * * * *", "--timezone", "UTC"]);
    run.assert_code(1);
    assert!(run.stderr.contains("empty item in the list `1,,2` of the minute field"), "{}", run.stderr);
}

#[test]
fn a_job_previews_with_its_zone_and_jitter() {
    let ws = Workspace::local("timezone: Europe/Berlin\n");
    ws.write(
        "jobs/jobs.yaml",
        "jobs:\n  nightly:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [local]\n    \
         schedule: \"30 2 * * *\"\n    jitter: 10m\n  \
         manual:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [local]\n",
    );
    let run = ws.loom(&["next", "nightly", "--from", "2026-03-28T12:00:00+01:00", "-n", "2", "--json"]);
    run.assert_code(0);
    let preview: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(preview["job"], "nightly");
    assert_eq!(preview["timezone"], "Europe/Berlin");
    let fires = preview["fires"].as_array().unwrap();
    // 2026-03-29 02:30 does not exist in Berlin: right after the jump.
    assert_eq!(fires[0]["scheduled"], "2026-03-29T03:00:00+02:00");
    assert_eq!(fires[1]["scheduled"], "2026-03-30T02:30:00+02:00");
    let delay = |fire: &serde_json::Value| {
        let at = |key: &str| chrono::DateTime::parse_from_rfc3339(fire[key].as_str().unwrap()).unwrap();
        at("starts") - at("scheduled")
    };
    assert_eq!(delay(&fires[0]), delay(&fires[1]), "one fixed offset per job");
    assert!(delay(&fires[0]) >= chrono::TimeDelta::zero() && delay(&fires[0]) < chrono::TimeDelta::minutes(10));

    // Disabled: the same fires, with a note.
    ws.loom(&["disable", "nightly"]).assert_code(0);
    let run = ws.loom(&["next", "nightly", "--from", "2026-03-28T12:00:00+01:00", "-n", "1"]);
    run.assert_code(0);
    assert!(run.stdout.starts_with("2026-03-29T03:00:00+02:00  (starts "), "{}", run.stdout);
    assert!(run.stderr.contains("job `nightly` is disabled"), "{}", run.stderr);

    let run = ws.loom(&["next", "manual"]);
    run.assert_code(1);
    assert!(run.stderr.contains("job `manual` has no schedule"), "{}", run.stderr);
    // Through a daemon: its schedule, zone, jitter and state, the same fires.
    let local = ws.loom(&["next", "nightly", "--from", "2026-03-28T12:00:00+01:00", "-n", "2", "--json"]);
    let daemon = ws.serve();
    daemon.wait_started();
    let server = ws.server();
    let args = ["--server", &server, "next", "nightly", "--from", "2026-03-28T12:00:00+01:00", "-n", "2", "--json"];
    let remote = crate::harness::loom(&args);
    remote.assert_code(0);
    assert_eq!(remote.stdout, local.stdout);
    assert!(remote.stderr.contains("job `nightly` is disabled"), "{}", remote.stderr);
    let missing = crate::harness::loom(&["--server", &server, "next", "nosuch"]);
    missing.assert_code(1);
    assert!(missing.stderr.contains("no job named `nosuch`"), "{}", missing.stderr);
    daemon.stop();
    let run = ws.loom(&["next", "nosuch"]);
    run.assert_code(1);
    assert!(run.stderr.contains("no job named `nosuch`"), "{}", run.stderr);
}

#[test]
fn check_reports_schedules_that_never_fire_unless_marked() {
    let ws = Workspace::local("");
    ws.write(
        "jobs/jobs.yaml",
        "jobs:\n  leap:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [local]\n    \
         schedule: \"0 0 30 2 *\"\n  \
         marked:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [local]\n    \
         schedule: \"0 0 31 4 *\"\n    never_fires: true\n  \
         wrongly_marked:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [local]\n    \
         schedule: \"0 0 * * *\"\n    never_fires: true\n  \
         empty_item:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [local]\n    \
         schedule: \"1, * * * *\"\n",
    );
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    let out = run.stderr.replace(&format!("{}/", ws.dir.path().display()), "");
    let expect = |needle: &str| assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    expect("error: cron expression `0 0 30 2 *` never fires");
    expect("--> jobs/jobs.yaml:6:15");
    expect("set `never_fires: true`");
    expect("error: job `wrongly_marked` says `never_fires: true` but `0 0 * * *` fires");
    expect("--> jobs/jobs.yaml:17:15");
    expect("error: bad cron expression `1, * * * *`: empty item in the list `1,` of the minute field");
    expect("--> jobs/jobs.yaml:23:15");
    expect("3 error(s)");
    assert!(!out.contains("`0 0 31 4 *` never fires"), "{out}");
}
