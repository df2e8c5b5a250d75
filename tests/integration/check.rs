//! `loom check`: the examples pass; a broken configuration reports every problem
//! with the right file:line:col and exits 1.

use crate::harness::{Workspace, loom, repo_root};

#[test]
fn bundled_examples_pass() {
    for config in ["examples/loom.yaml", "examples/original/loom.yaml"] {
        let run = loom(&["check", "-c", config]);
        run.assert_code(0);
        assert!(run.stdout.contains("ok"), "{}", run.stdout);
    }
}

#[test]
fn the_original_example_loads_as_written() {
    let run = loom(&["jobs", "--json", "-c", "examples/original/loom.yaml"]);
    run.assert_code(0);
    let jobs: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let by_name = |name: &str| jobs.as_array().unwrap().iter().find(|j| j["name"] == name).unwrap().clone();
    assert_eq!(by_name("testtask")["targets"], serde_json::json!(["db1", "db2", "db3", "db4"]));
    assert_eq!(by_name("testtask")["task"], "fabric.api.run");
    assert_eq!(by_name("mountstorage")["task"], "loom.system.add_sshfs_mount");
    assert_eq!(by_name("mountstorage")["targets"], serde_json::json!(["staging", "production"]));
}

/// A copy of the original example with one of each kind of mistake.
fn broken_original() -> Workspace {
    let ws = Workspace::new("datafile: data.yaml\n", "");
    let original = repo_root().join("examples/original");
    for file in ["loom.yaml", "nodes.yaml", "data.yaml", "jobs/jobs.yaml"] {
        ws.write(file, &std::fs::read_to_string(original.join(file)).unwrap());
    }
    // Unknown node, reached through the datafile's anchor: line 3 of data.yaml.
    let data = ws.read("data.yaml").replace("db4]", "db9]");
    ws.write("data.yaml", &data);
    // Bad cron on mountstorage (line 5), missing task on testtask (line 8).
    let jobs = ws
        .read("jobs/jobs.yaml")
        .replacen("schedule: \"* * * * *\"", "schedule: \"61 * * * *\"", 1)
        .replace("fabric.api.run", "fabric.api.runn");
    ws.write("jobs/jobs.yaml", &jobs);
    // YAML syntax error in another manifest.
    ws.write("jobs/syntax.yaml", "jobs:\n  x:\n    task: [1, 2\n    y: : :\n");
    // Duplicate job name, argument-count mismatch, unknown key, missing module.
    ws.write(
        "jobs/more/extra.yaml",
        "jobs:\n  mountstorage:\n    task: loom.system.run\n    args: [true]\n    targets: [db1]\n  \
         toomany:\n    task: loom.system.run\n    args: [a, b]\n    targets: [db1]\n    shedule: \"* * * * *\"\n  \
         nomodule:\n    task: site.nothing.here\n    targets: *cloudhosts\n",
    );
    ws
}

#[test]
fn broken_configuration_reports_every_error_with_its_position() {
    let ws = broken_original();
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    let out = run.stderr.replace(&format!("{}/", ws.dir.path().display()), "");
    let expect = |needle: &str| assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    expect("error: unknown node `db9` in targets of job `testtask`");
    expect("--> data.yaml:3:34");
    expect("error: bad cron expression `61 * * * *`");
    expect("--> jobs/jobs.yaml:5:19");
    expect("5 |         schedule: \"61 * * * *\"");
    expect("error: invalid YAML");
    expect("--> jobs/syntax.yaml:4:");
    expect("error: job `mountstorage` is defined twice");
    expect("--> jobs/more/extra.yaml:2:3");
    expect("first defined at");
    expect("error: task `loom.system.run` takes 1 argument(s) after the handle, but job `toomany` passes 2");
    expect("warning: unknown key `shedule` in job `toomany` is ignored");
    expect("--> jobs/more/extra.yaml:10:5");
    expect("error: task `site.nothing.here` of job `nomodule` resolves to no module");
    expect("--> jobs/more/extra.yaml:12:11");
    expect(" error(s), 1 warning(s)");
}

#[test]
fn a_missing_function_names_the_task_and_what_the_module_has() {
    let ws = Workspace::local("");
    ws.write("jobs/a.yaml", "jobs:\n  a:\n    task: fabric.api.runn\n    args: [x]\n    targets: [local]\n");
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("task `fabric.api.runn` of job `a`: module fabric/api.rhai has no public function `runn`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("functions there: get, put, run, sudo"), "{}", run.stderr);
    assert!(run.stderr.contains("jobs/a.yaml:3:11"), "{}", run.stderr);
}

#[test]
fn script_errors_and_sandbox_escapes_are_reported_at_check_time() {
    let ws = Workspace::local("");
    ws.write("tasks/bad/syntax.rhai", "fn apply(ssh) {\n  let x = ;\n}\n");
    ws.write("tasks/bad/escape.rhai", "fn apply(ssh) {\n  eval(\"1\")\n}\n");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  a:\n    task: bad.syntax.apply\n    targets: [local]\n  b:\n    task: bad.escape.apply\n    targets: [local]\n",
    );
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    assert!(run.stderr.contains("tasks/bad/syntax.rhai does not compile"), "{}", run.stderr);
    assert!(run.stderr.contains("tasks/bad/syntax.rhai:2:"), "{}", run.stderr);
    assert!(run.stderr.contains("tasks/bad/escape.rhai does not compile"), "{}", run.stderr);
}

#[test]
fn bad_main_settings_and_node_attributes_are_reported() {
    let ws = Workspace::new("max_workers: zero\ntimezone: Mars/Olympus\n", "web1:\n  port: 99999\n  passwrd: x\n");
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    let out = &run.stderr;
    assert!(out.contains("expected a whole number for `max_workers`"), "{out}");
    assert!(out.contains("loom.yaml:5:14"), "{out}");
    assert!(out.contains("unknown time zone"), "{out}");
    assert!(out.contains("`port` must be between 1 and 65535"), "{out}");
    assert!(out.contains("unknown key `passwrd` in node `web1`"), "{out}");
}

#[test]
fn a_missing_config_file_is_named() {
    let run = loom(&["check", "-c", "/nonexistent/loom.yaml"]);
    run.assert_code(1);
    assert!(run.stderr.contains("the configuration file /nonexistent/loom.yaml"), "{}", run.stderr);
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
}

#[test]
fn a_module_function_that_captures_handle_method_calls_is_flagged() {
    let ws = Workspace::local("");
    ws.write("tasks/site/t.rhai", "fn helper(ssh) { 1 }\nfn run(ssh, command) { ssh.run(command) }\n");
    ws.write("jobs/a.yaml", "jobs:\n  a:\n    task: site.t.run\n    args: [\"true\"]\n    targets: [local]\n");
    let run = ws.loom(&["check"]);
    run.assert_code(0);
    assert!(run.stderr.contains("warning: fn run with 2 parameter(s) captures `ssh.run(…)` calls"), "{}", run.stderr);
    assert!(run.stderr.contains("tasks/site/t.rhai:2:4"), "{}", run.stderr);
}

#[test]
fn jobs_that_are_not_a_map_are_reported_at_the_key() {
    let ws = Workspace::local("");
    ws.write("jobs/a.yaml", "other: 1\njobs: [1, 2]\n");
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    assert!(run.stderr.contains("expected a map of job names to job definitions under `jobs:`"), "{}", run.stderr);
    assert!(run.stderr.contains("jobs/a.yaml:2:1"), "{}", run.stderr);
}
