//! The SSH transport against real sshd nodes: fan-out with failures isolated,
//! reused masters, authentication, host keys, and the handle's commands and files.

use std::time::Duration;

use crate::harness::sshd::{self, Fleet, PASSWORD, PASSWORD_USER};
use crate::harness::{Workspace, http, wait_for};

/// A workspace whose nodes are the fleet's, with one task module `site/t.rhai`.
fn workspace(fleet: &Fleet, extra_nodes: &str, policy: &str, task: &str) -> Workspace {
    let ws = Workspace::new(&fleet.ssh_settings(policy), &format!("{}{extra_nodes}", fleet.nodes_yaml()));
    ws.write("tasks/site/t.rhai", task);
    ws
}

fn job(name: &str, task: &str, targets: &[&str], extra: &str) -> String {
    format!("jobs:\n  {name}:\n    task: {task}\n    targets: [{}]\n{extra}", targets.join(", "))
}

#[test]
fn twenty_nodes_succeed_while_a_down_and_a_hanging_node_fail_on_their_own() {
    let mut fleet = Fleet::start(20);
    let out = fleet.shared_dir("out");
    let extra = format!("{}{}", fleet.down_node("down"), fleet.hanging_node("hang"));
    let task =
        format!("fn mark(ssh) {{ ssh.run(`echo \"$(id -un) ${{ssh.node}}\" > {}/${{ssh.node}}`); }}\n", out.display());
    let ws = workspace(&fleet, &extra, "strict", &task);
    let mut targets: Vec<String> = fleet.nodes.iter().map(|n| n.name.clone()).collect();
    targets.push("down".into());
    targets.push("hang".into());
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    ws.write("jobs/a.yaml", &job("mark", "site.t.mark", &targets, ""));

    let run = ws.loom(&["run", "mark"]);
    run.assert_code(1);
    for node in &fleet.nodes {
        let written = std::fs::read_to_string(out.join(&node.name)).unwrap_or_default();
        assert_eq!(
            written.trim(),
            format!("{} {}", sshd::key_user(), node.name),
            "node {}:\n{}",
            node.name,
            run.stdout
        );
        assert!(run.stdout.contains(&format!("ok      {}", node.name)), "{}", run.stdout);
    }
    assert!(run.stdout.contains("FAILED  down"), "{}", run.stdout);
    assert!(run.stdout.contains("Connection refused"), "{}", run.stdout);
    assert!(run.stdout.contains("FAILED  hang"), "{}", run.stdout);
    assert!(run.stdout.contains("failed to connect to node `hang`"), "{}", run.stdout);
    assert!(run.stdout.contains("mark: 20 ok, 2 failed"), "{}", run.stdout);
    // Masters stop with the command: no ssh process, no control socket left.
    assert_eq!(fleet.ssh_processes(), 0);
    let leftovers: Vec<_> = std::fs::read_dir(fleet.path("control")).unwrap().collect();
    assert!(leftovers.is_empty(), "control folders left behind: {leftovers:?}");
}

#[test]
fn max_workers_bounds_how_many_nodes_run_at_once() {
    let fleet = Fleet::start(6);
    let out = fleet.shared_dir("out");
    // Each task records how many are running beside it.
    let task = format!(
        "fn count(ssh) {{ ssh.run(`d={d}; touch $d/run.${{ssh.node}}; ls $d | grep -c '^run\\.' > $d/seen.${{ssh.node}}; sleep 0.3; rm $d/run.${{ssh.node}}`); }}\n",
        d = out.display()
    );
    let ws = Workspace::new(&format!("max_workers: 2\n{}", fleet.ssh_settings("strict")), &fleet.nodes_yaml());
    ws.write("tasks/site/t.rhai", &task);
    let targets: Vec<&str> = fleet.nodes.iter().map(|n| n.name.as_str()).collect();
    ws.write("jobs/a.yaml", &job("count", "site.t.count", &targets, ""));
    ws.loom(&["run", "count"]).assert_code(0);
    for node in &fleet.nodes {
        let seen: usize =
            std::fs::read_to_string(out.join(format!("seen.{}", node.name))).unwrap().trim().parse().unwrap();
        assert!(seen <= 2, "{} saw {seen} tasks running at once", node.name);
    }
}

#[test]
fn the_daemon_reuses_masters_across_fires_and_replaces_a_dead_one() {
    let fleet = Fleet::start(5);
    let out = fleet.shared_dir("out");
    let task = format!("fn tick(ssh) {{ ssh.run(`date +%s.%N >> {}/${{ssh.node}}`); }}\n", out.display());
    let ws = workspace(&fleet, "", "strict", &task);
    ws.write("loom.yaml", &format!("{}metrics: {{per_node: true}}\n", ws.read("loom.yaml")));
    let targets: Vec<&str> = fleet.nodes.iter().map(|n| n.name.as_str()).collect();
    ws.write("jobs/a.yaml", &job("tick", "site.t.tick", &targets, "    schedule: \"* * * * * *\"\n"));
    let metric = |series: &str| -> Option<f64> {
        let (_, text) = http("GET", &format!("{}/metrics", ws.server()), None, None);
        text.as_str()?.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    let fires = |node: &str| std::fs::read_to_string(out.join(node)).unwrap_or_default().lines().count();

    let daemon = ws.serve();
    assert!(wait_for(Duration::from_secs(30), || fleet.nodes.iter().all(|n| fires(&n.name) >= 3)), "too few fires");
    // Several fires, one login per node, one master per node.
    for node in &fleet.nodes {
        assert_eq!(node.logins(), 1, "{} was logged into more than once", node.name);
    }
    assert_eq!(fleet.ssh_processes(), 5);
    assert_eq!(metric("loom_ssh_masters_open"), Some(5.0));
    assert!(metric("loom_node_results_total{job=\"tick\",node=\"n01\",status=\"ok\"}") >= Some(3.0));
    assert_eq!(metric("loom_ssh_reconnects_total{node=\"n01\"}"), None);

    // Kill one node's master: the next fire notices and opens a new one.
    let n01 = fleet.node("n01");
    let pattern = format!("ssh .*{}", fleet.path("control").display());
    let masters = std::process::Command::new("pgrep").args(["-f", &pattern]).output().unwrap();
    let pid = String::from_utf8_lossy(&masters.stdout)
        .lines()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .contains(&format!("{}\0", n01.address))
        })
        .expect("a master for n01")
        .to_string();
    std::process::Command::new("kill").args(["-9", &pid]).status().unwrap();
    let before = fires("n01");
    assert!(
        wait_for(Duration::from_secs(20), || fires("n01") >= before + 2),
        "n01 stopped firing after its master died:\n{}",
        daemon.log()
    );
    assert_eq!(n01.logins(), 2);
    assert_eq!(metric("loom_ssh_reconnects_total{node=\"n01\"}"), Some(1.0));

    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("ssh master is gone; reconnecting"), "{log}");
    assert_eq!(fleet.ssh_processes(), 0, "masters left running after the daemon stopped");
    let first = log.lines().filter(|l| l.contains("fire finished")).take(2).collect::<Vec<_>>();
    eprintln!("first two fires (cold, then warm):\n{}", first.join("\n"));
}

#[test]
fn password_authentication_keeps_the_password_out_of_sight() {
    if !sshd::is_root() {
        eprintln!("skipped: password login needs the test user that only root can create");
        return;
    }
    let fleet = Fleet::start(1);
    let out = fleet.shared_dir("out");
    let node = &fleet.nodes[0];
    let nodes = format!(
        "pw:\n  ip: {}\n  port: {}\n  user: {PASSWORD_USER}\n  password: \"{}\"\n  ssh_options: [PubkeyAuthentication=no]\n",
        node.address,
        node.port,
        PASSWORD.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let ws = Workspace::new(&fleet.ssh_settings("strict"), &nodes);
    let task = format!(
        "fn who(ssh) {{ ssh.run(`id -un > {d}/who`); ssh.sudo(`id -un > {d}/sudo-who`); }}\n",
        d = out.display()
    );
    ws.write("tasks/site/t.rhai", &task);
    ws.write("jobs/a.yaml", &job("who", "site.t.who", &["pw"], "    schedule: \"*/2 * * * * *\"\n"));

    let daemon = ws.serve();
    assert!(wait_for(Duration::from_secs(20), || out.join("sudo-who").exists()), "the task never ran");
    let processes =
        String::from_utf8_lossy(&std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap().stdout)
            .into_owned();
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(std::fs::read_to_string(out.join("who")).unwrap().trim(), PASSWORD_USER);
    // sudo asked for the password and got it over stdin.
    assert_eq!(std::fs::read_to_string(out.join("sudo-who")).unwrap().trim(), "root");
    assert!(!processes.contains(PASSWORD), "the password is in the process list");
    assert!(!log.contains(PASSWORD), "the password is in the log");
    let listed = ws.loom(&["nodes", "--json"]);
    assert!(!listed.all().contains(PASSWORD));
    let leftovers = walk(&fleet.path("control"));
    assert!(leftovers.iter().all(|f| !f.ends_with("askpass")), "password file left behind: {leftovers:?}");

    // A wrong password is a clear per-node failure naming the node.
    let wrong =
        nodes.replace(&format!("\"{}\"", PASSWORD.replace('\\', "\\\\").replace('"', "\\\"")), "wrong-password");
    ws.write("nodes.yaml", &wrong);
    let run = ws.loom(&["run", "who"]);
    run.assert_code(1);
    assert!(run.stdout.contains("failed to log in to node `pw`"), "{}", run.stdout);
    assert!(run.stdout.contains("Permission denied"), "{}", run.stdout);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path.display().to_string());
        }
    }
    found
}

#[test]
fn agent_and_ssh_config_authentication() {
    let fleet = Fleet::start(2);
    let out = fleet.shared_dir("out");
    let (n1, n2) = (&fleet.nodes[0], &fleet.nodes[1]);
    // n1: no identity in the manifest; the key is in an ssh-agent.
    let agent_socket = fleet.path("agent.sock");
    let agent = std::process::Command::new("ssh-agent").arg("-D").arg("-a").arg(&agent_socket).spawn().unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _agent = Kill(agent);
    assert!(wait_for(Duration::from_secs(5), || agent_socket.exists()));
    let added = std::process::Command::new("ssh-add")
        .arg(&fleet.client_key)
        .env("SSH_AUTH_SOCK", &agent_socket)
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    // n2: only a name; address, port, user and key come from the ssh_config file.
    std::fs::write(
        &fleet.ssh_config,
        format!(
            "Host cfgnode\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n",
            n2.address,
            n2.port,
            sshd::key_user(),
            fleet.client_key.display()
        ),
    )
    .unwrap();
    let nodes =
        format!("agent:\n  ip: {}\n  port: {}\n  user: {}\ncfgnode: {{}}\n", n1.address, n1.port, sshd::key_user());
    let ws = Workspace::new(&fleet.ssh_settings("strict"), &nodes);
    ws.write("tasks/site/t.rhai", &format!("fn mark(ssh) {{ ssh.run(`touch {}/${{ssh.node}}`); }}\n", out.display()));
    ws.write("jobs/a.yaml", &job("mark", "site.t.mark", &["agent", "cfgnode"], ""));
    let run = ws.loom_env(&["run", "mark"], &[("SSH_AUTH_SOCK", agent_socket.to_str().unwrap())]);
    run.assert_code(0);
    assert!(out.join("agent").exists() && out.join("cfgnode").exists());
    // Without the agent, the node with no identity cannot log in.
    let run = ws.loom(&["run", "mark", "--node", "agent"]);
    run.assert_code(1);
    assert!(run.stdout.contains("failed to log in to node `agent`"), "{}", run.stdout);
}

#[test]
fn host_keys_are_checked_by_policy() {
    let mut fleet = Fleet::start(1);
    let out = fleet.shared_dir("out");
    let other_key = fleet.path("other_host_key");
    std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other_key)
        .status()
        .unwrap();
    // A node whose real key differs from the one recorded in known_hosts.
    fleet.add_node("changed", Some(&other_key));
    let changed = fleet.node("changed");
    let mut known = std::fs::read_to_string(&fleet.known_hosts).unwrap();
    known.push_str(&changed.known_hosts_entry(&fleet.host_public_key()));
    std::fs::write(&fleet.known_hosts, known).unwrap();
    // A node known_hosts has never seen.
    fleet.add_node("fresh", Some(&other_key));

    let task = format!("fn mark(ssh) {{ ssh.run(`touch {}/${{ssh.node}}`); }}\n", out.display());
    for policy in ["strict", "accept-new"] {
        let ws = workspace(&fleet, "", policy, &task);
        ws.write("jobs/a.yaml", &job("mark", "site.t.mark", &["n01", "changed"], ""));
        let run = ws.loom(&["run", "mark"]);
        run.assert_code(1);
        assert!(run.stdout.contains("ok      n01"), "{policy}: {}", run.stdout);
        assert!(run.stdout.contains("refused node `changed`"), "{policy}: {}", run.stdout);
        assert!(run.stdout.contains("host key has changed"), "{policy}: {}", run.stdout);
        assert!(!out.join("changed").exists());
    }
    // Unknown host: refused under strict, recorded and accepted under accept-new.
    let ws = workspace(&fleet, "", "strict", &task);
    ws.write("jobs/a.yaml", &job("mark", "site.t.mark", &["fresh"], ""));
    let run = ws.loom(&["run", "mark"]);
    run.assert_code(1);
    assert!(run.stdout.contains("not in known_hosts and host_key_checking is strict"), "{}", run.stdout);
    let ws = workspace(&fleet, "", "accept-new", &task);
    ws.write("jobs/a.yaml", &job("mark", "site.t.mark", &["fresh"], ""));
    ws.loom(&["run", "mark"]).assert_code(0);
    let fresh = fleet.node("fresh");
    let recorded = std::fs::read_to_string(&fleet.known_hosts).unwrap();
    assert!(recorded.contains(&format!("[{}]:{}", fresh.address, fresh.port)), "{recorded}");
}

#[test]
fn run_sudo_and_file_transfers_through_the_handle() {
    let fleet = Fleet::start(1);
    let out = fleet.shared_dir("out");
    // 3 MiB of every byte value, to be moved byte for byte.
    let blob: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let local = fleet.path("blob.bin");
    std::fs::write(&local, &blob).unwrap();
    let back = fleet.path("blob.back");
    let task = format!(
        r#"fn files(ssh) {{
    let d = "{d}";
    let r = ssh.run("echo out; echo err >&2; exit 4", #{{ check: false }});
    if r.code != 4 || r.stdout != "out\n" || r.stderr != "err\n" || r.ok {{ throw `unexpected ${{r}}`; }}
    let who = ssh.sudo("id -un").stdout;
    ssh.put_text(who, d + "/sudo-user");
    ssh.put("{local}", d + "/blob.bin", #{{ mode: "0640" }});
    ssh.put("two\nlines", d + "/text.txt");
    ssh.get(d + "/blob.bin", "{back}");
    if ssh.read(d + "/text.txt") != "two\nlines" {{ throw "read back differs"; }}
    if !ssh.exists(d + "/text.txt") || ssh.exists(d + "/nothing") {{ throw "exists is wrong"; }}
    print(`node=${{ssh.node}} host=${{ssh.host}} user=${{ssh.user}}`);
    ssh.run("false");
}}
"#,
        d = out.display(),
        local = local.display(),
        back = back.display()
    );
    let ws = workspace(&fleet, "", "strict", &task);
    ws.write("jobs/a.yaml", &job("files", "site.t.files", &["n01"], ""));
    let run = ws.loom(&["run", "files"]);
    // The last command fails the task: exit 1, and the message says what and where.
    run.assert_code(1);
    assert!(run.stdout.contains("`false` exited with code 1 on node `n01`"), "{}", run.stdout);
    assert!(
        run.stdout.contains(&format!("node=n01 host={} user={}", fleet.nodes[0].address, sshd::key_user())),
        "{}",
        run.stdout
    );
    if sshd::is_root() {
        assert_eq!(std::fs::read_to_string(out.join("sudo-user")).unwrap().trim(), "root");
    }
    assert!(std::fs::read(out.join("blob.bin")).unwrap() == blob, "upload changed the bytes");
    assert!(std::fs::read(&back).unwrap() == blob, "download changed the bytes");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(out.join("blob.bin")).unwrap().permissions().mode() & 0o777, 0o640);
    assert_eq!(std::fs::read_to_string(out.join("text.txt")).unwrap(), "two\nlines");
}

#[test]
fn output_is_captured_per_node_and_bounded() {
    let fleet = Fleet::start(1);
    let ws = Workspace::new(&format!("output_limit: 4096\n{}", fleet.ssh_settings("strict")), &fleet.nodes_yaml());
    ws.write(
        "tasks/site/t.rhai",
        "fn noisy(ssh) { ssh.run(\"yes loom | head -c 1000000\"); ssh.run(\"echo after\"); ssh.run(\"false\"); }\n",
    );
    ws.write("jobs/a.yaml", &job("noisy", "site.t.noisy", &["n01"], ""));
    let run = ws.loom(&["run", "noisy"]);
    run.assert_code(1);
    assert!(run.stdout.contains("output cut: output_limit reached"), "{}", run.stdout);
    assert!(run.stdout.len() < 20_000, "output not bounded: {} bytes", run.stdout.len());
}
