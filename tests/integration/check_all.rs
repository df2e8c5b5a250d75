//! `loom check` finds everything at once (issue 13, item 5): every problem of a job,
//! main-file types, the API's listener, TLS files and tokens as `serve` reads them,
//! and misspelt keys with the key that was probably meant.

use crate::harness::Workspace;

#[test]
fn a_job_with_a_bad_schedule_and_a_missing_task_reports_both() {
    let ws = Workspace::local("");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  a:\n    task: site.nothing.here\n    schedule: \"61 * * * *\"\n    targets: [local, nobody]\n",
    );
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    let out = &run.stderr;
    assert!(out.contains("bad cron expression `61 * * * *`"), "{out}");
    assert!(out.contains("jobs/a.yaml:4:15"), "{out}");
    assert!(out.contains("unknown node `nobody`"), "{out}");
    assert!(out.contains("task `site.nothing.here` of job `a` resolves to no module"), "{out}");
    assert!(out.contains("jobs/a.yaml:3:11"), "{out}");
}

#[test]
fn a_value_out_of_range_does_not_hide_the_file_s_other_errors() {
    let ws = Workspace::local("");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  a:\n    task: loom.system.run\n    args: [9223372036854775808]\n    targets: [local]\n    retries: 99999999999999999999\n  \
         b:\n    task: nosuch.fn\n    schedule: \"61 * * * *\"\n    targets: [local]\n",
    );
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    let out = &run.stderr;
    assert!(out.contains("integer out of range") && out.contains("jobs/a.yaml:4:12"), "{out}");
    assert!(out.contains("found a whole number out of range") && out.contains("jobs/a.yaml:6:14"), "{out}");
    assert!(out.contains("bad cron expression `61 * * * *`"), "{out}");
    assert!(out.contains("task `nosuch.fn` of job `b`"), "{out}");
    assert!(out.contains("4 error(s)"), "{out}");
}

#[test]
fn a_misspelt_key_suggests_the_one_meant() {
    let ws = Workspace::local("jobspth: x\n");
    ws.write("jobs/a.yaml", "jobs:\n  a:\n    task: loom.system.run\n    args: [\"true\"]\n    schedul: \"* * * * *\"\n    targets: [local]\n");
    let run = ws.loom(&["check"]);
    let out = &run.stderr;
    assert!(out.contains("warning: unknown key `schedul` in job `a` is ignored"), "{out}");
    assert!(out.contains("jobs/a.yaml:5:5"), "{out}");
    assert!(out.contains("did you mean `schedule`?"), "{out}");
    assert!(out.contains("unknown key `jobspth`"), "{out}");
    assert!(out.contains("did you mean `jobspath`?"), "{out}");
}

#[test]
fn main_file_paths_are_type_checked_without_a_cascade() {
    let ws = Workspace::local("");
    let main = ws.read("loom.yaml").replace("nodesfile: nodes.yaml", "nodesfile: [x]");
    ws.write("loom.yaml", &main);
    ws.write("jobs/a.yaml", "jobs:\n  a:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [local]\n");
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    let out = &run.stderr;
    assert!(out.contains("error: expected a path for `nodesfile`, found a list"), "{out}");
    assert!(out.contains("loom.yaml:1:12"), "{out}");
    assert!(!out.contains("unknown node"), "{out}");

    // A node with an error of its own is reported once, not again by every job.
    ws.write("loom.yaml", &main.replace("nodesfile: [x]", "nodesfile: nodes.yaml"));
    ws.write("nodes.yaml", "local:\n  local: true\nweb1:\n  port: 99999\n");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  a:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [local, web1]\n",
    );
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    assert!(run.stderr.contains("`port` must be between 1 and 65535"), "{}", run.stderr);
    assert!(!run.stderr.contains("unknown node"), "{}", run.stderr);
}

#[test]
fn listener_tls_files_and_token_files_are_checked_as_serve_reads_them() {
    let ws = Workspace::local("listen: 0.0.0.0:8765\n");
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    assert!(run.stderr.contains("refusing to serve the API on 0.0.0.0:8765"), "{}", run.stderr);

    let ws = Workspace::local("tls:\n  cert: cert.pem\n  key: key.pem\ntokens:\n  - token_file: missing-token\n");
    ws.write("cert.pem", "not a certificate\n");
    ws.write("key.pem", "not a key\n");
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    let out = &run.stderr;
    // Each bad file at its own value, all at once.
    assert!(out.contains("the TLS certificate") && out.contains("holds no certificate"), "{out}");
    assert!(out.contains("loom.yaml:6:9"), "{out}");
    assert!(out.contains("holds no PEM private key") && out.contains("loom.yaml:7:8"), "{out}");
    assert!(out.contains("failed to read token_file") && out.contains("loom.yaml:9:17"), "{out}");

    // A real certificate with a key that is not its own.
    let make = |name: &str| {
        let made = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(ws.path(&format!("{name}.key")))
            .arg("-out")
            .arg(ws.path(&format!("{name}.pem")))
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    };
    make("a");
    make("b");
    let main = ws.read("loom.yaml").replace("cert.pem", "a.pem").replace("key.pem", "b.key");
    ws.write("loom.yaml", &main.replace("tokens:\n  - token_file: missing-token\n", ""));
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    assert!(run.stderr.contains("do not go together"), "{}", run.stderr);
    ws.write("loom.yaml", &ws.read("loom.yaml").replace("b.key", "a.key"));
    ws.loom(&["check"]).assert_code(0);
}

#[test]
fn imports_are_compiled_by_check_kept_in_the_snapshot_and_confined_to_taskspath() {
    let ws = Workspace::local("");
    let out = ws.path("out.txt");
    ws.write("tasks/site/words.rhai", "fn greet(name) { `hello ${name}` }\n");
    ws.write(
        "tasks/site/main.rhai",
        &format!(
            "import \"site/words\" as words;\nfn apply(ssh) {{ ssh.put_text(words::greet(\"loom\"), \"{}\"); }}\n",
            out.display()
        ),
    );
    ws.write("jobs/a.yaml", "jobs:\n  a:\n    task: site.main.apply\n    targets: [local]\n");
    ws.loom(&["check"]).assert_code(0);
    // At run time no module is read from disk (the resolver is gone): the import
    // that works here came with the compiled task.
    ws.loom(&["run", "a"]).assert_code(0);
    assert_eq!(ws.read("out.txt"), "hello loom");

    // A broken imported module is a check error in that module.
    ws.write("tasks/site/words.rhai", "fn greet(name) { let = 1; }\n");
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    assert!(run.stderr.contains("tasks/site/words.rhai"), "{}", run.stderr);

    // A path out of the tasks folder is refused at the import.
    std::fs::create_dir_all(ws.path("outside")).unwrap();
    ws.write("outside/x.rhai", "fn greet(name) { name }\n");
    for path in ["../outside/x", "../../../../../../../../etc/x", "/etc/x"] {
        ws.write(
            "tasks/site/main.rhai",
            &format!("fn helper() {{ 1 }}\nimport \"{path}\" as words;\nfn apply(ssh) {{ words::greet(\"x\") }}\n"),
        );
        let run = ws.loom(&["check"]);
        run.assert_code(1);
        assert!(run.stderr.contains("is not a module path"), "{path}: {}", run.stderr);
        assert!(run.stderr.contains("tasks/site/main.rhai:2:1"), "{path}: {}", run.stderr);
    }
    ws.write("tasks/site/main.rhai", "import \"site/nothing\" as n;\nfn apply(ssh) { }\n");
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    assert!(run.stderr.contains("imports `site/nothing`, which is not in the taskspath"), "{}", run.stderr);

    // A cycle is an error, not a stack overflow.
    ws.write("tasks/site/main.rhai", "import \"site/words\" as w;\nfn apply(ssh) { }\n");
    ws.write("tasks/site/words.rhai", "import \"site/main\" as m;\n");
    let run = ws.loom(&["check"]);
    run.assert_code(1);
    assert!(run.stderr.contains("import cycle: site/words → site/main → site/words"), "{}", run.stderr);
}
