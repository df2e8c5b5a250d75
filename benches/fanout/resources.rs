//! The resource benchmark: the same 20 declarations (directories, files with inline
//! content, lines, links, a command with `creates`) converged, then checked with
//! nothing to change, on the same real sshd nodes by Loom (`resources:`), pyinfra and
//! Ansible (pipelining, ControlPersist, `-f N`).
//!
//! Each node's sshd runs in a mount namespace of its own (`Fleet::start_private`), so
//! one absolute path is a separate folder on every node, as on real machines; each
//! tool converges its own tree under it (`<private>/loom`, `…/pyinfra`, `…/ansible`),
//! so none finds another's work done.

use std::path::Path;
use std::process::{Command, Stdio};

use super::harness::sshd::{self, Fleet};
use super::harness::{self, Workspace};
use super::{Bench, Figure, median, timed};

/// One declaration, with paths relative to a tool's base folder.
enum Declaration {
    Directory {
        path: &'static str,
        mode: &'static str,
    },
    File {
        path: &'static str,
        content: &'static str,
        mode: &'static str,
    },
    /// Present, empty if it is not there (a target for lines).
    Empty {
        path: &'static str,
    },
    Line {
        path: &'static str,
        line: &'static str,
        regexp: &'static str,
    },
    Link {
        path: &'static str,
        target: &'static str,
    },
    /// `touch` the path, unless it exists.
    Creates {
        path: &'static str,
    },
}

use Declaration::*;

const DECLARATIONS: [Declaration; 20] = [
    Directory { path: "app", mode: "0755" },
    Directory { path: "app/conf", mode: "0755" },
    Directory { path: "app/data", mode: "0750" },
    Directory { path: "app/log", mode: "0755" },
    Directory { path: "app/run", mode: "0755" },
    File { path: "app/conf/main.conf", content: "listen 8080\nworkers 4\n", mode: "0644" },
    File { path: "app/conf/db.conf", content: "host db.internal\nport 5432\n", mode: "0640" },
    File { path: "app/conf/cache.conf", content: "size 256m\nttl 60\n", mode: "0644" },
    File { path: "app/conf/secret.conf", content: "token not-a-real-one\n", mode: "0600" },
    File { path: "app/data/seed.txt", content: "alpha\nbeta\ngamma\n", mode: "0644" },
    File { path: "app/README", content: "Managed by the benchmark.\n", mode: "0644" },
    Empty { path: "app/conf/hosts" },
    Empty { path: "app/conf/env" },
    Line { path: "app/conf/hosts", line: "10.0.0.5 db", regexp: "[[:space:]]db$" },
    Line { path: "app/conf/env", line: "MODE=production", regexp: "^MODE=" },
    Line { path: "app/conf/env", line: "LEVEL=3", regexp: "^LEVEL=" },
    Link { path: "app/current", target: "app/conf" },
    Link { path: "app/logs", target: "app/log" },
    Link { path: "app/main.conf", target: "app/conf/main.conf" },
    Creates { path: "app/.installed" },
];

/// A string as a YAML/JSON/Python double-quoted literal.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

fn loom_manifest(base: &Path, targets: &str) -> String {
    let at = |p: &str| quoted(&base.join(p).display().to_string());
    let mut text = format!("jobs:\n  converge:\n    targets: [{targets}]\n    resources:\n");
    for declaration in &DECLARATIONS {
        let line = match declaration {
            Directory { path, mode } => format!("directory: {{path: {}, mode: \"{mode}\"}}", at(path)),
            File { path, content, mode } => {
                format!("file: {{path: {}, content: {}, mode: \"{mode}\"}}", at(path), quoted(content))
            }
            Empty { path } => format!("file: {{path: {}}}", at(path)),
            Line { path, line, regexp } => {
                format!("line: {{path: {}, line: {}, regexp: {}}}", at(path), quoted(line), quoted(regexp))
            }
            Link { path, target } => format!("link: {{path: {}, target: {}}}", at(path), at(target)),
            Creates { path } => format!(
                "command: {{command: {}, creates: {}}}",
                quoted(&format!("touch {}", base.join(path).display())),
                at(path)
            ),
        };
        text.push_str(&format!("      - {line}\n"));
    }
    text
}

fn ansible_playbook(base: &Path) -> String {
    let at = |p: &str| quoted(&base.join(p).display().to_string());
    let mut text = String::from("- hosts: nodes\n  gather_facts: false\n  tasks:\n");
    for declaration in &DECLARATIONS {
        let task = match declaration {
            Directory { path, mode } => {
                format!("ansible.builtin.file: {{path: {}, state: directory, mode: \"{mode}\"}}", at(path))
            }
            File { path, content, mode } => {
                format!("ansible.builtin.copy: {{dest: {}, content: {}, mode: \"{mode}\"}}", at(path), quoted(content))
            }
            Empty { path } => format!("ansible.builtin.copy: {{dest: {}, content: \"\", force: false}}", at(path)),
            Line { path, line, regexp } => format!(
                "ansible.builtin.lineinfile: {{path: {}, line: {}, regexp: {}}}",
                at(path),
                quoted(line),
                quoted(regexp)
            ),
            Link { path, target } => {
                format!("ansible.builtin.file: {{path: {}, src: {}, state: link}}", at(path), at(target))
            }
            Creates { path } => format!(
                "ansible.builtin.command: {{cmd: {}, creates: {}}}",
                quoted(&format!("touch {}", base.join(path).display())),
                at(path)
            ),
        };
        text.push_str(&format!("    - {task}\n"));
    }
    text
}

fn pyinfra_deploy(base: &Path) -> String {
    let at = |p: &str| quoted(&base.join(p).display().to_string());
    let mut text = String::from(
        "from io import StringIO\nfrom pyinfra import host\nfrom pyinfra.facts.files import File\nfrom pyinfra.operations import files, server\n",
    );
    for declaration in &DECLARATIONS {
        let mode = |m: &str| m.trim_start_matches('0').to_string();
        let operation = match declaration {
            Directory { path, mode: m } => format!("files.directory(path={}, mode=\"{}\")", at(path), mode(m)),
            File { path, content, mode: m } => {
                format!("files.put(src=StringIO({}), dest={}, mode=\"{}\")", quoted(content), at(path), mode(m))
            }
            Empty { path } => format!("files.file(path={}, present=True, touch=False)", at(path)),
            Line { path, line, regexp } => format!(
                "files.line(path={}, line={}, replace={}, extended_regex=True)",
                at(path),
                quoted(regexp),
                quoted(line)
            ),
            Link { path, target } => format!("files.link(path={}, target={})", at(path), at(target)),
            Creates { path } => format!(
                "if host.get_fact(File, path={p}) is None:\n    server.shell(commands=[{c}])",
                p = at(path),
                c = quoted(&format!("touch {}", base.join(path).display()))
            ),
        };
        text.push_str(&operation);
        text.push('\n');
    }
    text
}

/// A process's user and system CPU seconds, from its `/proc/<pid>/stat`.
fn cpu_seconds(stat: &str) -> f64 {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime are 14 and 15.
    let fields: Vec<&str> = text.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|t| t.parse::<f64>().ok()).sum());
    ticks / 100.0
}

/// The whole machine's busy CPU seconds (user, nice, system, irq, softirq), from `/proc/stat`.
fn machine_cpu() -> f64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let first = text.lines().next().unwrap_or("");
    let ticks: Vec<f64> = first.split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    [0, 1, 2, 5, 6].iter().filter_map(|&i| ticks.get(i)).sum::<f64>() / 100.0
}

/// Whether `base` on the first node looks converged (the last declaration done).
fn converged(fleet: &Fleet, base: &Path) -> Result<(), String> {
    let node = &fleet.nodes[0];
    let marker = fleet.on_node(node, &base.join("app/.installed"));
    let link = fleet.on_node(node, &base.join("app/current"));
    if marker.exists() && link.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
        Ok(())
    } else {
        Err(format!("not converged on {} ({} missing)", node.name, marker.display()))
    }
}

impl Bench {
    pub(crate) fn resources(&mut self, n: usize) {
        eprintln!("resources: 20 declarations on {n} nodes: starting sshd…");
        let Some(fleet) = Fleet::start_private(n) else {
            let why = "skipped: needs root and `unshare -m` (each node's own folder)".to_string();
            self.row("converge", "loom resources (daemon, masters open)", n, Err(why));
            return;
        };
        let private = fleet.private.clone().expect("a private fleet");
        let rounds = std::env::var("LOOM_BENCH_RESOURCE_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
        let (converge, unchanged) = self.loom_resources(&fleet, &private.join("loom"), n, rounds);
        self.row("converge", "loom resources (daemon, masters open)", n, converge);
        self.row("no-change", "loom resources (daemon, masters open)", n, unchanged);
        // LOOM_BENCH_SKIP=pyinfra,ansible leaves a peer out (profiling Loom alone).
        let skip = std::env::var("LOOM_BENCH_SKIP").unwrap_or_default();
        if !skip.contains("pyinfra") {
            let (converge, unchanged) = self.pyinfra_resources(&fleet, &private.join("pyinfra"), n, rounds);
            self.row("converge", "pyinfra", n, converge);
            self.row("no-change", "pyinfra", n, unchanged);
        }
        if !skip.contains("ansible") {
            let (converge, unchanged) = self.ansible_resources(&fleet, &private.join("ansible"), n, rounds);
            self.row("converge", "ansible-playbook, pipelining, ControlPersist", n, converge);
            self.row("no-change", "ansible-playbook, pipelining, ControlPersist", n, unchanged);
        }
    }

    /// A first converge and then no-change runs through a daemon whose masters are
    /// open (a fire of `true` opened them), as a running Loom works.
    fn loom_resources(&self, fleet: &Fleet, base: &Path, n: usize, rounds: usize) -> (Figure, Figure) {
        let settings = fleet.ssh_settings("strict").replace("connect_timeout: 3s", "connect_timeout: 60s");
        let ws = Workspace::new(&format!("max_workers: {n}\n{settings}"), &fleet.nodes_yaml());
        let targets: Vec<&str> = fleet.nodes.iter().map(|node| node.name.as_str()).collect();
        let targets = targets.join(", ");
        ws.write("jobs/converge.yaml", &loom_manifest(base, &targets));
        ws.write(
            "jobs/warm.yaml",
            &format!("jobs:\n  warm:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [{targets}]\n"),
        );
        let check = ws.loom(&["check"]);
        let unknown = check.all().lines().any(|l| l.contains("resources") && l.contains("unknown"));
        if check.code != Some(0) || unknown {
            let why = "skipped: this loom has no `resources:` jobs yet (they come with branch res15)".to_string();
            eprintln!("  {why}\n{}", check.all());
            return (Err(why.clone()), Err(why));
        }
        let daemon = ws.serve_env(&[("LOOM_LOG", "warn")]);
        daemon.wait_started_quietly();
        let run = |job: &str| {
            timed(Command::new(harness::loom_bin()).args(["-c", ws.config().to_str().unwrap(), "run", job]))
        };
        if let Err(why) = run("warm") {
            eprintln!("  note: opening the masters had failures: {why}");
        }
        let converge = run("converge").and_then(|s| converged(fleet, base).map(|()| s));
        let (daemon_before, machine_before) = (cpu_seconds(&format!("/proc/{}/stat", daemon.pid())), machine_cpu());
        let unchanged = (0..rounds).map(|_| run("converge")).collect::<Result<Vec<f64>, String>>().map(median);
        let (daemon_cpu, machine) =
            (cpu_seconds(&format!("/proc/{}/stat", daemon.pid())) - daemon_before, machine_cpu() - machine_before);
        // Where a no-change run's time goes: Loom's daemon, or the nodes' sshd and sh.
        eprintln!(
            "  loom no-change, per run: daemon {:.2} s CPU, the whole machine {:.2} s CPU",
            daemon_cpu / rounds as f64,
            machine / rounds as f64
        );
        daemon.stop();
        (converge, unchanged)
    }

    fn pyinfra_resources(&self, fleet: &Fleet, base: &Path, n: usize, rounds: usize) -> (Figure, Figure) {
        let pyinfra = self.venv.join("bin/pyinfra");
        if !pyinfra.exists() {
            let skip = || Err("skipped: pyinfra not installed in the bench virtualenv".to_string());
            return (skip(), skip());
        }
        let inventory = fleet.path("pyinfra_inventory.py");
        let hosts: Vec<String> = fleet
            .nodes
            .iter()
            .map(|node| {
                format!(
                    "({}, {{\"ssh_port\": {}, \"ssh_user\": {}, \"ssh_key\": {}, \"ssh_known_hosts_file\": {}, \"ssh_strict_host_key_checking\": \"yes\"}})",
                    quoted(&node.address),
                    node.port,
                    quoted(&sshd::key_user()),
                    quoted(&fleet.client_key.display().to_string()),
                    quoted(&fleet.known_hosts.display().to_string())
                )
            })
            .collect();
        std::fs::write(&inventory, format!("nodes = [\n    {},\n]\n", hosts.join(",\n    "))).unwrap();
        let deploy = fleet.path("pyinfra_deploy.py");
        std::fs::write(&deploy, pyinfra_deploy(base)).unwrap();
        let run = || {
            let mut command = Command::new(&pyinfra);
            command
                .args([inventory.to_str().unwrap(), deploy.to_str().unwrap(), "-y", "--parallel", &n.to_string()])
                .current_dir(fleet.path(""))
                .stdout(Stdio::null());
            timed(&mut command)
        };
        let converge = run().and_then(|s| converged(fleet, base).map(|()| s));
        let unchanged = (0..rounds).map(|_| run()).collect::<Result<Vec<f64>, String>>().map(median);
        (converge, unchanged)
    }

    /// `ansible-playbook -f N` with pipelining and ControlPersist; an ad-hoc `true`
    /// first opens its masters, as Loom's are open.
    fn ansible_resources(&self, fleet: &Fleet, base: &Path, n: usize, rounds: usize) -> (Figure, Figure) {
        let playbook_program = self.venv.join("bin/ansible-playbook");
        if !playbook_program.exists() {
            let skip = || Err("skipped: ansible-core not installed in the bench virtualenv".to_string());
            return (skip(), skip());
        }
        let inventory = self.ansible_inventory(fleet);
        let control = fleet.path("ansible-res-cp");
        std::fs::create_dir_all(&control).unwrap();
        let playbook = fleet.path("playbook.yml");
        std::fs::write(&playbook, ansible_playbook(base)).unwrap();
        let env = |command: &mut Command| {
            command
                .env("ANSIBLE_PIPELINING", "True")
                .env("ANSIBLE_SSH_ARGS", "-o ControlMaster=auto -o ControlPersist=300s")
                .env("ANSIBLE_SSH_CONTROL_PATH_DIR", &control)
                .env("ANSIBLE_HOST_KEY_CHECKING", "True")
                .env("ANSIBLE_LOCAL_TEMP", fleet.path("ansible-tmp"))
                .env("ANSIBLE_PYTHON_INTERPRETER", "/usr/bin/python3")
                .stdout(Stdio::null());
        };
        let mut warm = Command::new(self.venv.join("bin/ansible"));
        warm.args(["nodes", "-i", inventory.to_str().unwrap(), "-m", "raw", "-a", "true", "-f", &n.to_string()]);
        env(&mut warm);
        if let Err(why) = timed(&mut warm) {
            eprintln!("  note: opening ansible's masters had failures: {why}");
        }
        let run = || {
            let mut command = Command::new(&playbook_program);
            command.args(["-i", inventory.to_str().unwrap(), playbook.to_str().unwrap(), "-f", &n.to_string()]);
            env(&mut command);
            timed(&mut command)
        };
        let converge = run().and_then(|s| converged(fleet, base).map(|()| s));
        let unchanged = (0..rounds).map(|_| run()).collect::<Result<Vec<f64>, String>>().map(median);
        let _ = Command::new("pkill").args(["-f", &control.display().to_string()]).status();
        (converge, unchanged)
    }
}
