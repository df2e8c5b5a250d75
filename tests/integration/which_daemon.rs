//! Which daemon the CLI acts through: only one serving the same configuration file,
//! and never a default configuration when the named one is missing.

use crate::harness::{Workspace, loom_env};

/// A workspace with a manual job `tick` that leaves a mark in the workspace.
fn with_tick(main_extra: &str) -> Workspace {
    let ws = Workspace::local(main_extra);
    let mark = ws.path("ticked");
    ws.write(
        "jobs/tick.yaml",
        &format!(
            "jobs:\n  tick:\n    task: loom.system.run\n    args: [\"touch {}\"]\n    targets: [local]\n",
            mark.display()
        ),
    );
    ws
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("{err}: {text}"))
}

#[test]
fn a_daemon_serving_another_configuration_is_an_error_and_is_left_alone() {
    let a = with_tick("");
    let daemon = a.serve();
    daemon.wait_started();
    // B's configuration names A's address.
    let address = a.server().trim_start_matches("http://").to_string();
    let b = with_tick(&format!("listen: {address}\n"));
    let a_path = std::fs::canonicalize(a.config()).unwrap();
    let b_path = std::fs::canonicalize(b.config()).unwrap();

    for args in [&["run", "tick"][..], &["disable", "tick"], &["status"], &["reload"]] {
        let run = b.loom(args);
        run.assert_code(1);
        let expected = format!("the daemon at {} serves {}, not {}", a.server(), a_path.display(), b_path.display());
        assert!(run.stderr.contains(&expected), "loom {args:?}:\n{}", run.all());
        assert!(run.stderr.contains("its own `listen` address"), "loom {args:?}:\n{}", run.stderr);
    }
    // Neither A's job nor B's ran, and A's job is still enabled.
    assert!(!a.path("ticked").exists() && !b.path("ticked").exists(), "a tick ran");
    let history = json(&a.loom(&["history", "--json"]).assert_code(0).stdout);
    assert_eq!(history.as_array().map(Vec::len), Some(0), "{history:#}");
    let jobs = json(&a.loom(&["jobs", "--json"]).assert_code(0).stdout);
    assert_eq!(jobs[0]["name"], "tick");
    assert_eq!(jobs[0]["enabled"], true, "{jobs:#}");

    // A's own CLI uses its daemon, which reports its configuration's canonical path.
    let status = json(&a.loom(&["status", "--json"]).assert_code(0).stdout);
    assert_eq!(status["config"].as_str(), a_path.to_str());
    a.loom(&["run", "tick"]).assert_code(0);
    assert!(a.path("ticked").exists());
    // The same file by another name (a symlink) is the same configuration.
    let link = b.path("a-link.yaml");
    std::os::unix::fs::symlink(a.config(), &link).unwrap();
    crate::harness::loom(&["-c", link.to_str().unwrap(), "status"]).assert_code(0);
    // With an explicit --server the user named the daemon: no comparison of paths.
    b.loom(&["--server", &a.server(), "status"]).assert_code(0);
    drop(daemon);
}

#[test]
fn a_daemon_that_refuses_the_token_cannot_be_taken_for_ours() {
    let a = with_tick("tokens:\n  - {token: admin-token-0123456789abcdef, role: admin}\n");
    let daemon = a.serve();
    daemon.wait_started();
    let address = a.server().trim_start_matches("http://").to_string();
    let b = with_tick(&format!("listen: {address}\n"));
    let run = b.loom(&["run", "tick"]);
    run.assert_code(1);
    assert!(run.stderr.contains(&format!("the daemon at {} refused the token", a.server())), "{}", run.all());
    assert!(run.stderr.contains("cannot tell whether it serves"), "{}", run.stderr);
    assert!(!b.path("ticked").exists(), "B's tick ran locally");
    drop(daemon);
}

#[test]
fn a_missing_configuration_file_is_an_error_for_every_command() {
    let home = tempfile::tempdir().unwrap();
    let home_path = home.path().to_str().unwrap();
    let missing = "/nonexistent/loom.yaml";
    let commands: [&[&str]; 10] = [
        &["history"],
        &["run", "tick"],
        &["jobs"],
        &["nodes"],
        &["check"],
        &["status"],
        &["disable", "tick"],
        &["logs", "1"],
        &["tail"],
        &["serve"],
    ];
    for args in commands {
        let mut all = vec!["-c", missing];
        all.extend_from_slice(args);
        let run = loom_env(&all, &[("HOME", home_path)]);
        run.assert_code(1);
        assert!(
            run.stderr.contains(&format!(
                "the configuration file {missing} (named with -c/--config or $LOOM_CONFIG) does not exist"
            )),
            "loom {args:?}:\n{}",
            run.all()
        );
    }
    // The same through $LOOM_CONFIG, and for a folder.
    let run = loom_env(&["history"], &[("HOME", home_path), ("LOOM_CONFIG", missing)]);
    run.assert_code(1);
    assert!(run.stderr.contains(missing), "{}", run.all());
    let run = loom_env(&["-c", home_path, "run", "tick"], &[("HOME", home_path)]);
    run.assert_code(1);
    assert!(run.stderr.contains("is not a regular file"), "{}", run.all());
    // Nothing fell back to the default store.
    assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0, "something was created in HOME");
}
