//! `loom run` on local nodes: effects, exit codes, argument passing, limits.

use crate::harness::{Workspace, loom};

#[test]
fn testtask_from_the_example_creates_its_file_on_the_local_node() {
    let _ = std::fs::remove_file("/tmp/loom_was_here");
    let run = loom(&["run", "testtask", "-c", "examples/loom.yaml"]);
    run.assert_code(0);
    assert!(run.stdout.contains("ok      local"), "{}", run.stdout);
    assert!(std::path::Path::new("/tmp/loom_was_here").exists());
}

#[test]
fn testtask_works_through_loom_system_and_fabric_api() {
    let ws = Workspace::local("");
    let mark = ws.path("mark");
    for (job, task) in [("via-loom", "loom.system.run"), ("via-fabric", "fabric.api.run")] {
        let file = format!("{}-{job}", mark.display());
        ws.write(
            &format!("jobs/{job}.yaml"),
            &format!("jobs:\n  {job}:\n    task: {task}\n    args: [\"touch {file}\"]\n    targets: [local]\n"),
        );
        ws.loom(&["run", job]).assert_code(0);
        assert!(std::path::Path::new(&file).exists(), "{job} did not create {file}");
    }
}

#[test]
fn a_failing_node_makes_run_exit_1_and_says_why() {
    let ws = Workspace::new("", "a:\n  local: true\nb:\n  local: true\n");
    ws.write(
        "tasks/site/flaky.rhai",
        "fn apply(ssh) {\n  if ssh.node == \"b\" { ssh.run(\"echo broken >&2; exit 3\"); }\n  ssh.run(\"echo fine\");\n}\n",
    );
    ws.write("jobs/a.yaml", "jobs:\n  flaky:\n    task: site.flaky.apply\n    targets: [a, b]\n");
    let run = ws.loom(&["run", "flaky"]);
    run.assert_code(1);
    assert!(run.stdout.contains("ok      a"), "{}", run.stdout);
    assert!(run.stdout.contains("FAILED  b"), "{}", run.stdout);
    assert!(run.stdout.contains("exited with code 3 on node `b`: broken"), "{}", run.stdout);
    assert!(run.stdout.contains("tasks/site/flaky.rhai:2:"), "{}", run.stdout);
    assert!(run.stdout.contains("flaky: 1 ok, 1 failed"), "{}", run.stdout);
    // --node narrows the run to the healthy node.
    ws.loom(&["run", "flaky", "--node", "a"]).assert_code(0);
    let unknown = ws.loom(&["run", "flaky", "--node", "zz"]);
    unknown.assert_code(1);
    assert!(unknown.stderr.contains("no node named `zz`"), "{}", unknown.stderr);
    let nojob = ws.loom(&["run", "nope"]);
    nojob.assert_code(1);
    assert!(nojob.stderr.contains("no job named `nope`; jobs: flaky"), "{}", nojob.stderr);
}

#[test]
fn args_and_kwargs_arrive_as_rhai_values() {
    let ws = Workspace::local("datafile: data.yaml\n");
    ws.write("data.yaml", "shared:\n  - &conf {name: web, ports: [80, 443], tls: true, ratio: 0.5}\n");
    let out = ws.path("out.txt");
    ws.write(
        "tasks/site/args.rhai",
        &format!(
            "fn apply(ssh, conf, count, opts) {{\n  let line = `${{conf.name}} ${{conf.ports[1]}} ${{conf.tls}} ${{conf.ratio}} ${{count + 1}} ${{opts.mode}} ${{type_of(opts.list)}}`;\n  ssh.put_text(line, \"{}\");\n}}\n",
            out.display()
        ),
    );
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  args:\n    task: site.args.apply\n    args: [*conf, 41]\n    kwargs: {mode: fast, list: [1]}\n    targets: [local]\n",
    );
    ws.loom(&["run", "args"]).assert_code(0);
    assert_eq!(ws.read("out.txt"), "web 443 true 0.5 42 fast array");
}

#[test]
fn kwargs_parameter_gets_an_empty_map_when_the_job_has_none() {
    let ws = Workspace::local("");
    let out = ws.path("out.txt");
    ws.write(
        "tasks/site/kw.rhai",
        &format!("fn apply(ssh, opts) {{ ssh.put_text(`${{opts.len()}}`, \"{}\"); }}\n", out.display()),
    );
    ws.write("jobs/a.yaml", "jobs:\n  kw:\n    task: site.kw.apply\n    targets: [local]\n");
    ws.loom(&["run", "kw"]).assert_code(0);
    assert_eq!(ws.read("out.txt"), "0");
}

#[test]
fn an_endless_loop_is_stopped_by_the_operation_limit_at_its_line() {
    let ws = Workspace::local("task_max_operations: 100000\n");
    // An empty body: the condition is all the loop evaluates, and where it stops.
    ws.write("tasks/site/spin.rhai", "fn apply(ssh) {\n    let i = 0;\n    while i < 1 { }\n}\n");
    ws.write("jobs/a.yaml", "jobs:\n  spin:\n    task: site.spin.apply\n    targets: [local]\n");
    let run = ws.loom(&["run", "spin"]);
    run.assert_code(1);
    assert!(run.stdout.contains("task stopped after task_max_operations (100000)"), "{}", run.stdout);
    assert!(run.stdout.contains("tasks/site/spin.rhai:3:"), "{}", run.stdout);
}

#[test]
fn a_loop_that_can_never_end_is_a_check_error() {
    let ws = Workspace::local("");
    ws.write("tasks/site/spin.rhai", "fn apply(ssh) {\n    loop { }\n}\nfn other(ssh) { while true {} }\n");
    ws.write("jobs/a.yaml", "jobs:\n  spin:\n    task: site.spin.apply\n    targets: [local]\n");
    let check = ws.loom(&["check"]);
    check.assert_code(1);
    let text = check.all();
    assert!(text.contains("this loop never ends"), "{text}");
    assert!(text.contains("tasks/site/spin.rhai:2:5"), "{text}");
    assert!(text.contains("tasks/site/spin.rhai:4:17"), "{text}");
}

#[test]
fn an_endless_loop_is_stopped_by_the_time_limit() {
    let ws = Workspace::local("task_max_time: 1s\n");
    ws.write("tasks/site/spin.rhai", "fn apply(ssh) { let i = 0; loop { i += 1; } }\n");
    ws.write("jobs/a.yaml", "jobs:\n  spin:\n    task: site.spin.apply\n    targets: [local]\n");
    let run = ws.loom(&["run", "spin"]);
    run.assert_code(1);
    assert!(run.stdout.contains("task stopped after running longer than task_max_time (1s)"), "{}", run.stdout);
}

#[test]
fn a_script_stopped_by_a_limit_names_the_line_and_function_it_was_in() {
    for limit in ["task_max_operations: 100000\n", "task_max_time: 1s\n"] {
        let ws = Workspace::local(limit);
        ws.write("tasks/site/spin.rhai", "import \"site/busy\" as busy;\n\nfn apply(ssh) {\n    busy::spin();\n}\n");
        ws.write("tasks/site/busy.rhai", "fn spin() {\n    let i = 0;\n    loop {\n        i += 1;\n    }\n}\n");
        ws.write("jobs/a.yaml", "jobs:\n  spin:\n    task: site.spin.apply\n    targets: [local]\n");
        let run = ws.loom(&["run", "spin"]);
        run.assert_code(1);
        assert!(run.stdout.contains("task stopped after"), "{limit}{}", run.stdout);
        assert!(run.stdout.contains("tasks/site/busy.rhai:4:"), "{limit}{}", run.stdout);
        assert!(run.stdout.contains(" in fn spin"), "{limit}{}", run.stdout);
    }
    // A module imported by an imported module: its loops are stop points too.
    let ws = Workspace::local("task_max_operations: 100000\n");
    ws.write("tasks/site/spin.rhai", "import \"site/outer\" as outer;\nfn apply(ssh) { outer::enter(); }\n");
    ws.write("tasks/site/outer.rhai", "import \"site/inner\" as inner;\nfn enter() { inner::spin(); }\n");
    ws.write("tasks/site/inner.rhai", "fn spin() {\n    let i = 0;\n    loop {\n        i += 1;\n    }\n}\n");
    ws.write("jobs/a.yaml", "jobs:\n  spin:\n    task: site.spin.apply\n    targets: [local]\n");
    let run = ws.loom(&["run", "spin"]);
    run.assert_code(1);
    assert!(run.stdout.contains("tasks/site/inner.rhai:4:"), "{}", run.stdout);
    assert!(run.stdout.contains(" in fn spin"), "{}", run.stdout);
    // A stop is a runtime error to Rhai, so `try` catches it; the task is stopped all the same.
    let ws = Workspace::local("task_max_operations: 100000\n");
    ws.write("tasks/site/spin.rhai", "fn apply(ssh) { try { let i = 0; loop { i += 1; } } catch (e) { } }\n");
    ws.write("jobs/a.yaml", "jobs:\n  spin:\n    task: site.spin.apply\n    targets: [local]\n");
    let run = ws.loom(&["run", "spin"]);
    run.assert_code(1);
    assert!(run.stdout.contains("task stopped after task_max_operations (100000)"), "{}", run.stdout);
}

#[test]
fn scripts_cannot_reach_files_or_processes_except_through_the_handle() {
    let ws = Workspace::local("");
    ws.write("tasks/site/escape.rhai", "fn apply(ssh) { let f = open_file(\"/etc/passwd\"); }\n");
    ws.write("jobs/a.yaml", "jobs:\n  escape:\n    task: site.escape.apply\n    targets: [local]\n");
    let run = ws.loom(&["run", "escape"]);
    run.assert_code(1);
    assert!(run.stdout.contains("Function not found: open_file"), "{}", run.stdout);
}

#[test]
fn nodes_listing_never_shows_passwords() {
    let ws = Workspace::new("", "web1:\n  ip: 127.0.0.9\n  user: deploy\n  password: hunter2-secret\n");
    for args in [vec!["nodes"], vec!["nodes", "--json"]] {
        let run = ws.loom(&args);
        run.assert_code(0);
        assert!(run.stdout.contains("127.0.0.9"), "{}", run.stdout);
        assert!(run.stdout.contains("password"), "{}", run.stdout);
        assert!(!run.all().contains("hunter2"), "{}", run.all());
    }
}

#[test]
fn jobs_listing_shows_the_next_fire_in_the_jobs_zone() {
    let ws = Workspace::local("timezone: Asia/Tokyo\n");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  nightly:\n    task: loom.system.run\n    args: [\"true\"]\n    schedule: \"@daily\"\n    targets: [local]\n  \
         berlin:\n    task: loom.system.run\n    args: [\"true\"]\n    schedule: \"30 9 * * *\"\n    timezone: Europe/Berlin\n    targets: [local]\n  \
         manual:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [local]\n",
    );
    let run = ws.loom(&["jobs"]);
    run.assert_code(0);
    assert!(run.stdout.contains("00:00:00 JST"), "{}", run.stdout);
    assert!(run.stdout.contains("09:30:00 CE"), "{}", run.stdout);
    assert!(run.stdout.contains("(manual)"), "{}", run.stdout);
}
