//! The persistent remote shell: commands fed to one kept shell per node are as
//! isolated and exact as in channels of their own, a shell that dies is replaced,
//! and a command stopped by a timeout leaves nothing behind and the node usable.

use std::time::Duration;

use crate::harness::sshd::{self, Fleet};
use crate::harness::{Workspace, wait_for};

/// Sessions (channels) sshd started on `node`, from its log.
fn sessions(fleet: &Fleet, node: &str) -> usize {
    std::fs::read_to_string(&fleet.node(node).log).unwrap_or_default().matches("Starting session:").count()
}

#[test]
fn commands_through_the_kept_shell_are_isolated_and_exact() {
    let fleet = Fleet::start(1);
    let out = fleet.shared_dir("out");
    let sudo = if sshd::is_root() { "if ssh.sudo(\"id -un\").stdout != \"root\\n\" { throw \"sudo\"; }" } else { "" };
    let task = format!(
        r#"fn expect(what, got, want) {{ if got != want {{ throw `${{what}}: got ${{got}}, want ${{want}}`; }} }}
fn shell(ssh) {{
    let quiet = #{{ check: false }};
    // A node's first command takes a channel; the shell serves from the second on.
    expect("first", ssh.run("echo first").stdout, "first\n");
    let fresh = ssh.run("pwd; umask; echo ${{X-unset}} ${{Y-unset}} $# $-").stdout;
    // Nothing a command does to its shell reaches the next one.
    ssh.run("cd /; X=1; export Y=2; set -e; set -- a b; umask 077; trap 'echo trapped' EXIT; alias ls=false");
    expect("state after cd/var/export/set/umask/trap", ssh.run("pwd; umask; echo ${{X-unset}} ${{Y-unset}} $# $-").stdout, fresh);
    expect("exit", ssh.run("exit 7", quiet).code, 7);
    expect("exit 255", ssh.run("exit 255", quiet).code, 255);
    expect("set -e", ssh.run("set -e; false; echo not-reached", quiet), #{{ stdout: "", stderr: "", code: 1, ok: false }});
    expect("syntax error code", ssh.run("echo 'unterminated", quiet).code, 2);
    expect("after a syntax error", ssh.run("echo fine").stdout, "fine\n");
    // Output exact: streams apart, no trailing newline, NUL bytes, marker look-alikes.
    let r = ssh.run("echo out; echo err >&2; printf x; printf y >&2");
    expect("stdout", r.stdout, "out\nx");
    expect("stderr", r.stderr, "err\ny");
    expect("no newline", ssh.run("printf abc").stdout, "abc");
    expect("nul", ssh.run("printf 'a\\000b\\000'").stdout.len(), 4);
    expect("zeros", ssh.run("head -c 300000 /dev/zero").stdout.len(), 300000);
    expect("look-alike", ssh.run("printf '%s:1:0\\n' 00000000000000000000000000000000").stdout, "00000000000000000000000000000000:1:0\n");
    // Stdin: the data given, else an immediate end of input (never the shell's own).
    expect("stdin data", ssh.run("cat", #{{ stdin: "given\nno newline" }}).stdout, "given\nno newline");
    expect("stdin quotes", ssh.run("cat", #{{ stdin: "it's $(id) `id` '\\''" }}).stdout, "it's $(id) `id` '\\''");
    expect("no stdin", ssh.run("cat; echo end").stdout, "end\n");
    expect("read line", ssh.run("read -r l; echo \"[$l]\"", quiet).stdout, "[]\n");
    {sudo}
    ssh.put("two\nlines, no newline", "{d}/put.txt");
    expect("put/read", ssh.read("{d}/put.txt"), "two\nlines, no newline");
    // A command that replaces or kills its own shell: the next command works.
    expect("exec", ssh.run("exec echo replaced").stdout, "replaced\n");
    let killed = ssh.run("echo before; kill $$; echo after", quiet);
    expect("kill $$ output", killed.stdout, "before\nafter\n");
    expect("kill $$ code", killed.code, -1);
    expect("after kill $$", ssh.run("echo again; exit 3", quiet), #{{ stdout: "again\n", stderr: "", code: 3, ok: false }});
    expect("still fresh", ssh.run("pwd; umask; echo ${{X-unset}} ${{Y-unset}} $# $-").stdout, fresh);
    print("shell checks passed");
}}
"#,
        d = out.display()
    );
    let ws = Workspace::new(&fleet.ssh_settings("strict"), &fleet.nodes_yaml());
    ws.write("tasks/site/t.rhai", &task);
    ws.write("jobs/a.yaml", "jobs:\n  shell:\n    task: site.t.shell\n    targets: [n01]\n");
    let run = ws.loom(&["run", "shell", "-v"]);
    run.assert_code(0);
    assert!(run.stdout.contains("shell checks passed"), "{}", run.all());
    // About 30 commands, a put and a read: the first in a channel, then one shell,
    // and a second one after `kill $$`.
    let used = sessions(&fleet, "n01");
    assert_eq!(used, 3, "sessions for the whole task:\n{}", run.all());
}

#[test]
fn a_timed_out_command_is_killed_and_the_node_stays_usable() {
    let fleet = Fleet::start(1);
    let out = fleet.shared_dir("out");
    // A marker only this test's command line carries.
    let marker = format!("{}", 4000 + std::process::id() % 1000);
    let task = format!(
        "fn slow(ssh) {{ ssh.run(\"sleep {marker}.5 && touch {d}/late\"); }}\nfn quick(ssh) {{ ssh.run(\"echo quick > {d}/quick\"); }}\n",
        d = out.display()
    );
    let ws = Workspace::new(&fleet.ssh_settings("strict"), &fleet.nodes_yaml());
    ws.write("tasks/site/t.rhai", &task);
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  slow:\n    task: site.t.slow\n    targets: [n01]\n    node_timeout: 1s\n  quick:\n    task: site.t.quick\n    targets: [n01]\n",
    );
    let daemon = ws.serve();
    daemon.wait_started();
    // The daemon keeps the node's master and shell between runs.
    ws.loom(&["run", "quick"]).assert_code(0);
    let slow = ws.loom(&["run", "slow"]);
    slow.assert_code(1);
    assert!(slow.stdout.contains("node_timeout"), "{}", slow.all());
    let sleeping = || {
        let ps = std::process::Command::new("pgrep").args(["-f", &format!("sleep {marker}.5")]).output().unwrap();
        !ps.stdout.is_empty()
    };
    assert!(wait_for(Duration::from_secs(10), || !sleeping()), "the timed-out command still runs on the node");
    std::fs::remove_file(out.join("quick")).unwrap();
    ws.loom(&["run", "quick"]).assert_code(0);
    assert_eq!(std::fs::read_to_string(out.join("quick")).unwrap(), "quick\n");
    assert!(!out.join("late").exists());
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn commands_running_at_once_on_a_node_do_not_wait_for_each_other() {
    let fleet = Fleet::start(1);
    let out = fleet.shared_dir("out");
    let d = out.display();
    // Five jobs hold a command open on the node until `go` exists: four shells and
    // one command beyond them (a channel of its own).
    let mut jobs = String::from("jobs:\n");
    for i in 1..=5 {
        jobs.push_str(&format!(
            "  hold{i}:\n    task: loom.system.run\n    args: [\"touch {d}/started.{i}; while [ ! -e {d}/go ]; do sleep 0.05; done; echo held\"]\n    targets: [n01]\n"
        ));
    }
    jobs.push_str(&format!(
        "  quick:\n    task: loom.system.run\n    args: [\"echo quick > {d}/quick\"]\n    targets: [n01]\n"
    ));
    let ws = Workspace::new(&fleet.ssh_settings("strict"), &fleet.nodes_yaml());
    ws.write("jobs/a.yaml", &jobs);
    let daemon = ws.serve();
    daemon.wait_started();
    let holders: Vec<std::process::Child> = (1..=5)
        .map(|i| {
            std::process::Command::new(crate::harness::loom_bin())
                .args(["-c", ws.config().to_str().unwrap(), "run", &format!("hold{i}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let all_started = wait_for(Duration::from_secs(20), || (1..=5).all(|i| out.join(format!("started.{i}")).exists()));
    assert!(all_started, "not every holding command started:\n{}", daemon.log());
    // One more command on the node goes through while the five are held.
    ws.loom(&["run", "quick"]).assert_code(0);
    assert_eq!(std::fs::read_to_string(out.join("quick")).unwrap(), "quick\n");
    std::fs::write(out.join("go"), "").unwrap();
    for mut holder in holders {
        assert_eq!(holder.wait().unwrap().code(), Some(0));
    }
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
}
