//! Output that nobody reads: a closed stdout ends the CLI quietly, a closed stderr
//! never takes the daemon down, and logs are plain text for people when they do not
//! go to a terminal.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{Workspace, loom_bin, wait_for};

fn spawn(ws: &Workspace, args: &[&str]) -> Command {
    let mut command = Command::new(loom_bin());
    command.arg("-c").arg(ws.config()).args(args).env_remove("NO_COLOR").env("LOOM_LOG", "info");
    command
}

#[test]
fn a_closed_stdout_ends_the_cli_quietly() {
    let ws = Workspace::local("");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  many:\n    task: loom.system.run\n    args: [\"seq 1 100000\"]\n    targets: [local]\n",
    );
    ws.loom(&["run", "many"]).assert_code(0);
    for args in [&["logs", "1"][..], &["history"], &["run", "many", "-v"]] {
        let log = ws.path("cli.log");
        let mut child =
            spawn(&ws, args).stdout(Stdio::piped()).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        drop(stdout);
        let status = child.wait().unwrap();
        let stderr = ws.read("cli.log");
        assert!(!stderr.contains("panicked"), "loom {args:?} panicked:\n{stderr}");
        assert_eq!(status.code(), Some(0), "loom {args:?}: {stderr}");
    }
}

#[test]
fn the_daemon_outlives_its_stderr_and_logs_plain_text() {
    let ws = Workspace::local("");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  tick:\n    task: loom.system.run\n    args: [\"true\"]\n    schedule: \"* * * * * *\"\n    targets: [local]\n",
    );
    let mut daemon = spawn(&ws, &["serve"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(daemon.stderr.take().unwrap());
    let mut logged = String::new();
    while !logged.contains("fire finished") {
        assert!(stderr.read_line(&mut logged).unwrap() > 0, "the daemon ended:\n{logged}");
    }
    assert!(!logged.contains('\u{1b}'), "colour codes in a log that is not a terminal:\n{logged}");
    assert!(logged.contains(" next=20"), "{logged}");
    assert!(!logged.contains("Some("), "{logged}");
    let seconds = logged.lines().find(|l| l.contains("fire finished")).unwrap();
    let seconds = seconds.split(" seconds=").nth(1).unwrap().split(' ').next().unwrap();
    // To the millisecond, no more.
    assert!(
        seconds.parse::<f64>().is_ok() && seconds.split('.').nth(1).is_none_or(|digits| digits.len() <= 3),
        "seconds={seconds}"
    );
    // Nobody reads the log any more; fires go on and are recorded.
    drop(stderr);
    let fired = |n: usize| ws.loom(&["history", "tick", "--limit", "100"]).stdout.matches(" ok ").count() >= n;
    let before = ws.loom(&["history", "tick", "--limit", "100"]).stdout.matches(" ok ").count();
    assert!(wait_for(Duration::from_secs(20), || fired(before + 3)), "fires stopped after stderr closed");
    Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    let status = daemon.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let history = ws.loom(&["history", "tick", "--limit", "100"]).stdout;
    assert!(!history.contains("running"), "{history}");
}
