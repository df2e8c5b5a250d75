//! Resources on real nodes: a manifest converges a node in one run, a second run
//! changes nothing (mtimes and inodes stay), `--check` reports a manual edit as drift
//! with a diff and changes nothing, handlers run once and only when notified, a
//! failure stops only its own node, and `loom check` finds mistakes at file:line:col.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::harness::sshd::{self, Fleet};
use crate::harness::{Workspace, http};

/// The job `name`: every bundled type under `base`, on `target`.
fn site_job(name: &str, target: &str, base: &Path) -> String {
    let b = base.display();
    format!(
        r#"  {name}:
    targets: [{target}]
    sudo: true
    kwargs: {{greeting: Hello}}
    resources:
      - directory: {{path: {b}/app, mode: "0750", owner: "0"}}
      - file: {{path: {b}/app/app.conf, template: templates/app.conf.j2, mode: "0640", owner: root, notify: reload}}
      - file: {{path: {b}/app/secret, content: "s3cret-value\n", mode: "0600", owner: 0, group: "0", sensitive: true}}
      - line: {{path: {b}/app/settings.ini, line: "debug = false", regexp: '^debug'}}
      - link: {{path: {b}/app/current, target: {b}/app/app.conf}}
      - command: {{command: "echo ran >> {b}/command.log && touch {b}/command.done", creates: {b}/command.done}}
      - file: {{path: {b}/never, content: "x", when: 'facts.os_family == "nonesuch"'}}
    handlers:
      reload: {{command: {{command: "echo reload >> {b}/handler.log"}}}}
      unused: {{command: {{command: "echo unused >> {b}/unused.log"}}}}
"#
    )
}

const TEMPLATE: &str = "# for {{ node }} as {{ facts.user }} (uid {{ facts.uid }}) on {{ facts.os_family }}\n\
                        greeting = {{ kwargs.greeting }}\n";

/// (inode, mtime in ns) of every managed file under `base`.
fn stamps(base: &Path) -> Vec<(String, u64, i64)> {
    ["app/app.conf", "app/secret", "app/settings.ini", "command.done"]
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(base.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            (f.to_string(), meta.ino(), meta.mtime() * 1_000_000_000 + meta.mtime_nsec())
        })
        .collect()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0)
}

#[test]
fn a_manifest_converges_stays_unchanged_and_check_reports_a_manual_edit() {
    if !sshd::is_root() {
        eprintln!("skipped: needs the test users (with sudo) that only root can create");
        return;
    }
    let fleet = Fleet::start(1);
    let node = &fleet.nodes[0];
    // Root-owned folders: the non-root login needs sudo to manage them.
    let (remote, local, pw) = (fleet.path("remote"), fleet.path("local"), fleet.path("pw"));
    for dir in [&remote, &local, &pw] {
        std::fs::create_dir_all(dir).unwrap();
    }
    // `n01` logs in as a user with passwordless sudo, `pw` as one whose sudo asks for the password.
    let password = sshd::PASSWORD.replace('\\', "\\\\").replace('"', "\\\"");
    let nodes = format!(
        "local:\n  local: true\n{}pw:\n  ip: {}\n  port: {}\n  user: {}\n  password: \"{password}\"\n  ssh_options: [PubkeyAuthentication=no]\n",
        fleet.node_yaml(node),
        node.address,
        node.port,
        sshd::PASSWORD_USER
    );
    let ws = Workspace::new(&fleet.ssh_settings("strict"), &nodes);
    ws.write("templates/app.conf.j2", TEMPLATE);
    let jobs = format!(
        "jobs:\n{}{}{}",
        site_job("site-local", "local", &local),
        site_job("site-n01", "n01", &remote),
        site_job("site-pw", "pw", &pw)
    );
    ws.write("jobs/site.yaml", &jobs);
    ws.loom(&["check"]).assert_code(0);

    let logins =
        [("site-local", &local, "root"), ("site-n01", &remote, sshd::KEY_USER), ("site-pw", &pw, sshd::PASSWORD_USER)];
    for (job, base, user) in logins {
        let first = ws.loom(&["run", job, "-v"]);
        first.assert_code(0);
        assert!(first.stdout.contains("0 unchanged, 7 changed, 0 failed, 1 skipped"), "{}", first.all());
        assert!(!first.all().contains("s3cret-value"), "a sensitive content was shown:\n{}", first.all());
        assert!(!first.all().contains(sshd::PASSWORD), "the password was shown:\n{}", first.all());
        let conf = std::fs::read_to_string(base.join("app/app.conf")).unwrap();
        assert_eq!(conf, format!("# for {} as {user} (uid {}) on debian\ngreeting = Hello\n", &job[5..], uid(user)));
        let meta = std::fs::metadata(base.join("app/app.conf")).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o640));
        let secret = std::fs::metadata(base.join("app/secret")).unwrap();
        // Owner and group by number: set once, then unchanged (below).
        assert_eq!((secret.mode() & 0o7777, secret.uid(), secret.gid()), (0o600, 0, 0));
        assert_eq!(std::fs::read_to_string(base.join("app/settings.ini")).unwrap(), "debug = false\n");
        assert_eq!(std::fs::read_link(base.join("app/current")).unwrap(), base.join("app/app.conf"));
        assert!(!base.join("never").exists());
        assert_eq!((lines(&base.join("handler.log")), lines(&base.join("unused.log"))), (1, 0));
        let before = stamps(base);

        let second = ws.loom(&["run", job, "-v"]);
        second.assert_code(0);
        // Nothing to change costs one command (besides the facts): every probe in one batch.
        let commands: Vec<&str> = second.stdout.lines().filter(|l| l.starts_with("        | $ ")).collect();
        assert_eq!(commands, ["        | $ (one command reads the state of 6 resources) (sudo)"], "{}", second.stdout);
        assert!(second.stdout.contains("6 unchanged, 0 changed, 0 failed, 1 skipped"), "{}", second.all());
        assert_eq!(stamps(base), before, "a second run rewrote a file");
        assert_eq!((lines(&base.join("handler.log")), lines(&base.join("command.log"))), (1, 1));
    }

    // A manual edit on one node: check mode reports exactly it, with a diff, and changes nothing.
    let conf = remote.join("app/app.conf");
    let edited = format!("{}added by hand\n", std::fs::read_to_string(&conf).unwrap());
    std::fs::write(&conf, &edited).unwrap();
    std::fs::set_permissions(remote.join("app/secret"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = stamps(&remote);
    let check = ws.loom(&["run", "site-n01", "--check", "-v"]);
    check.assert_code(0);
    let out = &check.stdout;
    assert!(out.contains("4 unchanged, 2 changed, 0 failed, 2 skipped"), "{out}");
    assert!(out.contains(&format!("changed   file[{}]: content", conf.display())), "{out}");
    assert!(out.contains("-added by hand"), "the diff is missing:\n{out}");
    assert!(out.contains(&format!("changed   file[{}/app/secret]: mode", remote.display())), "{out}");
    assert!(!out.contains("0644 -> 0600"), "a sensitive resource showed its values:\n{out}");
    assert!(out.contains("check mode: would run (notified by file["), "{out}");
    assert!(out.contains("drift: some resources would change"), "{out}");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited, "check mode changed the file");
    assert_eq!(stamps(&remote), before);
    assert_eq!(lines(&remote.join("handler.log")), 1, "check mode ran a handler");
    let drift = ws.loom(&["history", "--drift", "--json"]);
    let fires: serde_json::Value = serde_json::from_str(&drift.stdout).unwrap();
    assert_eq!(fires.as_array().map(Vec::len), Some(1), "{fires}");
    assert_eq!((fires[0]["job"].as_str(), fires[0]["status"].as_str()), (Some("site-n01"), Some("drift")));

    // Converging again runs the handler once more.
    let again = ws.loom(&["run", "site-n01"]);
    assert!(again.stdout.contains("4 unchanged, 3 changed, 0 failed, 1 skipped"), "{}", again.all());
    assert_eq!(lines(&remote.join("handler.log")), 2);
    assert!(!std::fs::read_to_string(&conf).unwrap().contains("added by hand"));
    let logs = ws.loom(&["logs", &fires[0]["id"].to_string()]);
    assert!(logs.stdout.contains("resources: 4 unchanged, 2 changed, 0 failed, 2 skipped"), "{}", logs.all());
    assert!(!logs.all().contains("s3cret"), "{}", logs.all());
}

fn uid(user: &str) -> String {
    let out = std::process::Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

use std::os::unix::fs::PermissionsExt;

#[test]
fn a_failing_resource_skips_the_rest_of_its_node_but_not_other_nodes() {
    let ws = Workspace::new("", "a:\n  local: true\nb:\n  local: true\n");
    let out = ws.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let o = out.display();
    ws.write(
        "tasks/site/facts.rhai",
        "fn show(ssh) { ssh.log(`task on ${ssh.node}: family ${ssh.facts.os_family}, user ${ssh.facts.user}`); }\n",
    );
    ws.write(
        "jobs/a.yaml",
        &format!(
            r#"jobs:
  fails-on-a:
    targets: [a, b]
    resources:
      - command: {{command: "exit 3", when: 'node == "a"'}}
      - file: {{path: {o}/written, content: "x\n"}}
      - command: {{command: "touch {o}/touched"}}
    task: site.facts.show
"#
        ),
    );
    let run = ws.loom(&["run", "fails-on-a", "-v"]);
    run.assert_code(1);
    let text = run.all();
    assert!(text.contains("0 unchanged, 0 changed, 1 failed, 2 skipped"), "{text}");
    assert!(
        text.contains("resource command[exit 3] failed: `sh -c 'exit 3'` exited with code 3 on node `a`"),
        "{text}"
    );
    assert!(text.contains("0 unchanged, 2 changed, 0 failed, 1 skipped"), "b went on:\n{text}");
    assert!(
        text.contains("skipped   file[") && text.contains("(an earlier resource failed: command[exit 3])"),
        "{text}"
    );
    assert!(text.contains("(`when` is false)"), "{text}");
    // b ran its task after its resources, with the node's facts; a never reached it.
    assert!(text.contains("task on b: family "), "{text}");
    assert!(!text.contains("task on a"), "{text}");
    assert!(out.join("touched").exists());

    // In check mode the task does not run.
    std::fs::remove_file(out.join("touched")).unwrap();
    let check = ws.loom(&["run", "fails-on-a", "--check", "--node", "b", "-v"]);
    check.assert_code(0);
    assert!(check.stdout.contains("1 unchanged, 1 changed, 0 failed, 1 skipped"), "{}", check.all());
    assert!(!check.all().contains("task on b"), "{}", check.all());
    assert!(!out.join("touched").exists(), "check mode ran the command");

    // A template that uses an undefined variable fails its resource with the template's line.
    ws.write("templates/t.j2", "fine\n{{ facts.nonesuch }}\n");
    ws.write(
        "jobs/b.yaml",
        &format!("jobs:\n  undefined:\n    targets: [b]\n    resources:\n      - file: {{path: {o}/t, template: templates/t.j2}}\n"),
    );
    let run = ws.loom(&["run", "undefined"]);
    run.assert_code(1);
    assert!(run.all().contains("t.j2:2 does not render: undefined value"), "{}", run.all());
}

#[test]
fn check_reports_every_resource_mistake_at_its_place() {
    let ws = Workspace::local("");
    ws.write("templates/bad.j2", "fine line\n{% for x in %}\n");
    ws.write(
        "jobs/a.yaml",
        r#"jobs:
  broken:
    targets: [local]
    resources:
      - fiel: {path: /tmp/x}
      - file: {path: /tmp/x, contnet: hi}
      - file: {path: /tmp/x, mode: 644}
      - directory: {mode: "0755"}
      - file: {path: /tmp/x, notify: nope}
      - file: {path: /tmp/x, template: templates/bad.j2}
      - file: {path: /tmp/x, source: missing.txt}
      - link: {path: /tmp/l, target: /tmp/x, when: 'facts.os =='}
      - file: {path: relative}
      - line: {path: /tmp/x, line: a, state: gone}
  onlytask:
    mode: check
    task: loom.system.run
    args: ["true"]
    targets: [local]
  empty:
    targets: [local]
    resources: []
"#,
    );
    let check = ws.loom(&["check"]);
    check.assert_code(1);
    let text = check.all();
    let expect = [
        "jobs/a.yaml:5:9",
        "unknown resource type `fiel`",
        "jobs/a.yaml:6:30",
        "unknown field `contnet` in resource `file`",
        "did you mean `content`?",
        "jobs/a.yaml:7:36",
        "`mode` of resource `file` must be an octal mode in quotes",
        "jobs/a.yaml:8:9",
        "resource `directory` has no `path` (required)",
        "jobs/a.yaml:9:38",
        "`notify` names handler `nope`, which the job does not have",
        "templates/bad.j2:2:",
        "does not parse",
        "jobs/a.yaml:11:38",
        "missing.txt cannot be read",
        "jobs/a.yaml:12:52",
        "`when` of resource `link` is not a Rhai expression",
        "jobs/a.yaml:13:9",
        "path must be absolute",
        "jobs/a.yaml:14:46",
        "`state` of resource `line` is `gone`; expected one of present, absent",
        "jobs/a.yaml:16:11",
        "job `onlytask` has `mode: check` but no resources",
        "jobs/a.yaml:22:16",
        "job `empty` has no `task` and its `resources` are empty",
        // Every bundled type is named where an unknown one is.
        "bundled types: authorized_key, command, cron, directory, file, group, line, link, mount, package, service, user;",
    ];
    for want in expect {
        assert!(text.contains(want), "`{want}` is missing from:\n{text}");
    }
    assert!(text.contains("12 error(s)"), "{text}");
}

#[test]
fn a_check_mode_job_records_drift_through_the_api_and_never_applies() {
    let ws = Workspace::local("");
    let path = ws.path("managed.txt");
    std::fs::write(&path, "edited\n").unwrap();
    let rendered = ws.path("rendered.txt");
    ws.write("templates/t.j2", "v1 on {{ node }}\n");
    ws.write(
        "jobs/a.yaml",
        &format!(
            "jobs:\n  drift:\n    mode: check\n    targets: [local]\n    resources:\n      - file: {{path: {}, content: \"declared\\n\"}}\n\
             \x20 templated:\n    targets: [local]\n    resources:\n      - file: {{path: {}, template: templates/t.j2}}\n",
            path.display(),
            rendered.display()
        ),
    );
    let daemon = ws.serve();
    daemon.wait_started();
    let tail =
        crate::harness::follow(&["-c", ws.config().to_str().unwrap(), "tail", "drift", "--fires", "2", "--json"]);
    let url = format!("{}/api/v1/jobs/drift/run?wait=true", ws.server());
    let (status, detail) = http("POST", &url, None, Some(serde_json::json!({})));
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["fire"]["status"], "drift", "{detail}");
    let resource = &detail["results"][0]["resources"][0];
    assert_eq!(resource["status"], "changed", "{detail}");
    assert!(resource["diff"].as_str().unwrap().contains("-edited\n+declared"), "{detail}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "edited\n", "a check-mode job changed the node");
    // `check: true` asks the same of any job; an unchanged node is `ok`, not drift.
    std::fs::write(&path, "declared\n").unwrap();
    let (_, detail) = http("POST", &url, None, Some(serde_json::json!({"check": true})));
    assert_eq!(detail["fire"]["status"], "ok", "{detail}");
    assert_eq!(detail["results"][0]["resources"][0]["status"], "unchanged", "{detail}");
    let (status, fires) = http("GET", &format!("{}/api/v1/fires?drift=true", ws.server()), None, None);
    assert_eq!(status, 200);
    assert_eq!(fires.as_array().map(Vec::len), Some(1), "{fires}");

    // A template is watched like the manifests: an edit is applied from the next fire on.
    let templated = format!("{}/api/v1/jobs/templated/run?wait=true", ws.server());
    let (_, detail) = http("POST", &templated, None, None);
    assert_eq!(std::fs::read_to_string(&rendered).unwrap(), "v1 on local\n", "{detail}");
    ws.write("templates/t.j2", "v2 on {{ node }}\n");
    let reloaded = crate::harness::wait_for(std::time::Duration::from_secs(20), || {
        daemon.log().contains("reloaded: jobs +0 -0 ~1")
    });
    assert!(reloaded, "{}", daemon.log());
    let (_, detail) = http("POST", &templated, None, None);
    assert_eq!(std::fs::read_to_string(&rendered).unwrap(), "v2 on local\n", "{detail}");
    // Each node-finished event carried the outcomes (`loom tail` ends after the two fires).
    let events = String::from_utf8(tail.wait_with_output().unwrap().stdout).unwrap();
    let finished: Vec<serde_json::Value> = events
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|e| e["type"] == "node-finished")
        .collect();
    assert_eq!(finished.len(), 2, "{events}");
    assert_eq!(finished[0]["resources"][0]["status"], "changed", "{events}");
    assert_eq!(finished[1]["resources"][0]["status"], "unchanged", "{events}");
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn a_type_of_your_own_in_taskspath_follows_the_same_protocol() {
    let ws = Workspace::local("");
    let out = ws.path("marker");
    // A type named with a dot lives in its own module; it writes a marker file once.
    ws.write(
        "tasks/site/marker.rhai",
        r#"
fn fields() { #{ path: #{ kind: "string", required: true }, text: #{ kind: "string", "default": "hi" } } }
fn validate(want) { if want.text == "" { throw "text must not be empty"; } }
fn check(ssh, want) {
    let now = ssh.run(`cat ${quote(want.path)} 2>/dev/null || true`).stdout;
    if now == want.text + "\n" { return #{ changes: [], diff: "" }; }
    #{ changes: [#{ field: "text", before: now, after: want.text }], diff: unified_diff(now, want.text + "\n", want.path) }
}
fn apply(ssh, want, plan) { ssh.run(`printf '%s\n' ${quote(want.text)} > ${quote(want.path)}`); }
"#,
    );
    ws.write(
        "jobs/a.yaml",
        &format!(
            "jobs:\n  mine:\n    targets: [local]\n    resources:\n      - site.marker: {{path: {}}}\n",
            out.display()
        ),
    );
    let first = ws.loom(&["run", "mine", "-v"]);
    first.assert_code(0);
    assert!(first.stdout.contains("0 unchanged, 1 changed, 0 failed"), "{}", first.all());
    assert!(first.stdout.contains("+hi"), "{}", first.all());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "hi\n");
    let second = ws.loom(&["run", "mine", "--json"]);
    let detail: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(detail["results"][0]["resources"][0]["status"], "unchanged", "{detail}");
    let logs = ws.loom(&["logs", &detail["fire"]["id"].to_string(), "--json"]);
    let logged: serde_json::Value = serde_json::from_str(&logs.stdout).unwrap();
    assert_eq!(logged["results"][0]["resources"], detail["results"][0]["resources"]);

    // Its schema and its validate() are checked by `loom check` like a bundled type's.
    ws.write("jobs/a.yaml", "jobs:\n  mine:\n    targets: [local]\n    resources:\n      - site.marker: {path: /x, text: \"\", colour: red}\n");
    let check = ws.loom(&["check"]);
    check.assert_code(1);
    assert!(check.all().contains("jobs/a.yaml:5:43"), "{}", check.all());
    assert!(check.all().contains("unknown field `colour` in resource `site.marker`"), "{}", check.all());
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  mine:\n    targets: [local]\n    resources:\n      - site.marker: {path: /x, text: \"\"}\n",
    );
    let check = ws.loom(&["check"]);
    check.assert_code(1);
    assert!(check.all().contains("resource `site.marker`: text must not be empty"), "{}", check.all());
}

#[test]
fn absent_states_remove_and_force_replaces_and_a_second_run_changes_nothing() {
    let ws = Workspace::local("");
    let x = ws.path("x");
    std::fs::create_dir_all(x.join("d/inner")).unwrap();
    for (name, text) in [("f", "f\n"), ("d/inner/g", "g\n"), ("lines", "a\nkeep\nb\n"), ("other", "in the way\n")] {
        std::fs::write(x.join(name), text).unwrap();
    }
    std::os::unix::fs::symlink(x.join("f"), x.join("l")).unwrap();
    let x = x.display();
    ws.write(
        "jobs/a.yaml",
        &format!(
            r#"jobs:
  tidy:
    targets: [local]
    resources:
      - link: {{path: {x}/l, state: absent}}
      - file: {{path: {x}/f, state: absent}}
      - directory: {{path: {x}/d, state: absent}}
      - line: {{path: {x}/lines, regexp: '^[ab]$', state: absent}}
      - link: {{path: {x}/other, target: {x}/lines, force: true}}
      - line: {{path: {x}/new.ini, line: "created = yes"}}
"#
        ),
    );
    let first = ws.loom(&["run", "tidy", "-v"]);
    first.assert_code(0);
    assert!(first.stdout.contains("0 unchanged, 6 changed, 0 failed"), "{}", first.all());
    let x = ws.path("x");
    for gone in ["l", "f", "d"] {
        assert!(std::fs::symlink_metadata(x.join(gone)).is_err(), "{gone} is still there");
    }
    assert_eq!(std::fs::read_to_string(x.join("lines")).unwrap(), "keep\n");
    assert_eq!(std::fs::read_link(x.join("other")).unwrap(), x.join("lines"));
    assert_eq!(std::fs::read_to_string(x.join("new.ini")).unwrap(), "created = yes\n");
    let second = ws.loom(&["run", "tidy"]);
    assert!(second.stdout.contains("6 unchanged, 0 changed, 0 failed"), "{}", second.all());
}

#[test]
fn command_guards_handler_lists_and_a_plain_type_of_your_own() {
    let ws = Workspace::local("");
    let x = ws.path("x");
    std::fs::create_dir_all(&x).unwrap();
    // A type named without a dot is loom/resource/TYPE.rhai in a taskspath folder.
    ws.write(
        "tasks/loom/resource/stamp.rhai",
        r#"
fn fields() { #{ path: #{ kind: "string", required: true } } }
fn check(ssh, want) {
    if ssh.run(`test -e ${quote(want.path)}`, #{ check: false }).ok { return #{ changes: [], diff: "" }; }
    #{ changes: [#{ field: "state", before: "absent", after: "present" }], diff: "" }
}
fn apply(ssh, want, plan) { ssh.run(`touch ${quote(want.path)}`); }
"#,
    );
    let d = x.display();
    ws.write(
        "jobs/a.yaml",
        &format!(
            r#"jobs:
  guarded:
    targets: [local]
    resources:
      - command: {{command: "echo u >> {d}/ran.log; touch {d}/u", unless: "test -e {d}/u"}}
      - command: {{command: "echo o >> {d}/ran.log", onlyif: "test -e {d}/flag"}}
      - command: {{command: "pwd > where.txt", cwd: "{d}", creates: "{d}/where.txt"}}
      - stamp: {{path: {d}/a, notify: [first, second]}}
      - stamp: {{path: {d}/b, notify: first}}
    handlers:
      first: {{command: {{command: "echo first >> {d}/handlers.log"}}}}
      second: {{command: {{command: "echo second >> {d}/handlers.log"}}}}
"#
        ),
    );
    ws.loom(&["check"]).assert_code(0);
    let read = |name: &str| std::fs::read_to_string(x.join(name)).unwrap_or_default();
    let first = ws.loom(&["run", "guarded", "-v"]);
    first.assert_code(0);
    // Handlers count among the changes.
    assert!(first.stdout.contains("1 unchanged, 6 changed, 0 failed"), "{}", first.all());
    // `unless` failed, so it ran; `onlyif` failed, so it did not; `cwd` is where it ran.
    assert_eq!(read("ran.log"), "u\n");
    assert_eq!(read("where.txt"), format!("{d}\n"));
    // Each handler runs once, however many changed resources notify it.
    assert_eq!(read("handlers.log"), "first\nsecond\n");

    std::fs::write(x.join("flag"), "").unwrap();
    let second = ws.loom(&["run", "guarded", "-v"]);
    second.assert_code(0);
    assert!(second.stdout.contains("4 unchanged, 1 changed, 0 failed"), "{}", second.all());
    assert_eq!(read("ran.log"), "u\no\n", "unless now holds; onlyif now holds");
    assert_eq!(read("handlers.log"), "first\nsecond\n", "no handler runs when nothing notifies it");
}
