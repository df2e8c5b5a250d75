//! Loom's benchmarks: fan-out against the usual tools on the same real sshd nodes,
//! scheduling precision, and scale of configuration. Prints a table; asserts nothing.
//!
//! Run it with `bench/run`, which installs the peers first (Debian's `pssh`;
//! `ansible-core`, `pyinfra` and `parallel-ssh` from PyPI into a throwaway virtualenv). Each peer
//! that is missing is skipped with a note. Knobs (environment):
//! `LOOM_BENCH_SIZES` (default `10,100,300`), `LOOM_BENCH_VENV` (the virtualenv),
//! `LOOM_BENCH_ROUNDS` (warm repetitions, median taken; default 5),
//! `LOOM_BENCH_RESOURCE_NODES` (default 100) and `LOOM_BENCH_RESOURCE_ROUNDS`
//! (no-change repetitions; default 3) for the resource rows (`resources.rs`).

#[path = "fanout/cluster.rs"]
mod cluster;
#[path = "../tests/integration/harness/mod.rs"]
mod harness;
#[path = "fanout/resources.rs"]
mod resources;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::sshd::{self, Fleet};
use harness::{Workspace, wait_for};

/// Seconds, or why there is no figure.
type Figure = Result<f64, String>;

struct Row {
    section: &'static str,
    what: String,
    nodes: usize,
    seconds: Option<f64>,
    note: String,
}

struct Bench {
    rows: Vec<Row>,
    venv: PathBuf,
    rounds: usize,
    cold_rounds: usize,
}

fn main() {
    let sizes: Vec<usize> = std::env::var("LOOM_BENCH_SIZES")
        .unwrap_or_else(|_| "10,100,300".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let venv = PathBuf::from(std::env::var("LOOM_BENCH_VENV").unwrap_or_else(|_| "/tmp/loom-bench-venv".into()));
    let rounds = std::env::var("LOOM_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let cold_rounds = std::env::var("LOOM_BENCH_COLD_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let mut bench = Bench { rows: Vec::new(), venv, rounds, cold_rounds };
    eprintln!("machine: {} cores, {}", cores(), first_line("/proc/cpuinfo", "model name"));
    // LOOM_BENCH_SKIP=fanout,precision,scale leaves parts out.
    let skip = std::env::var("LOOM_BENCH_SKIP").unwrap_or_default();
    if !skip.contains("fanout") {
        for n in sizes {
            bench.fanout(n);
        }
    }
    if !skip.contains("resources") {
        let nodes = std::env::var("LOOM_BENCH_RESOURCE_NODES").ok().and_then(|n| n.parse().ok()).unwrap_or(100);
        bench.resources(nodes);
    }
    if !skip.contains("precision") {
        bench.precision(1000);
    }
    if !skip.contains("scale") {
        bench.scale(10_000, 1_000);
    }
    if !skip.contains("cluster") {
        let jobs = std::env::var("LOOM_BENCH_CLUSTER_JOBS").ok().and_then(|n| n.parse().ok()).unwrap_or(1000);
        let nodes = std::env::var("LOOM_BENCH_CLUSTER_NODES").ok().and_then(|n| n.parse().ok()).unwrap_or(300);
        bench.cluster(jobs, nodes, 10);
    }
    bench.print();
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn first_line(file: &str, key: &str) -> String {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_string()
}

/// The median of the figures, or the first reason one is missing.
fn median_figure(figures: Vec<Figure>) -> Figure {
    figures.into_iter().collect::<Result<Vec<f64>, String>>().map(median)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

/// Runs a command to its end; returns wall seconds, or the reason it failed.
fn timed(command: &mut Command) -> Result<f64, String> {
    let start = Instant::now();
    let output = command.stdin(Stdio::null()).output().map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    if output.status.success() {
        Ok(seconds)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        // The first node that failed says why.
        let why = stdout.lines().find(|l| l.contains("error") || l.contains("failed:")).unwrap_or("");
        let last = stdout.lines().last().unwrap_or("");
        Err(format!("exit {:?}: {} {why} {last}", output.status.code(), stderr.trim()))
    }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    first_line(&format!("/proc/{pid}/status"), field).trim_end_matches(" kB").trim().parse().unwrap_or(0)
}

impl Bench {
    fn row(&mut self, section: &'static str, what: &str, nodes: usize, result: Result<f64, String>) {
        let (seconds, note) = match result {
            Ok(s) => (Some(s), String::new()),
            Err(why) => (None, why),
        };
        eprintln!("  {section} {what} n={nodes}: {seconds:?} {note}");
        self.rows.push(Row { section, what: what.to_string(), nodes, seconds, note });
    }

    fn fanout(&mut self, n: usize) {
        eprintln!("fan-out on {n} nodes: starting sshd…");
        let fleet = Fleet::start(n);
        let names: Vec<String> = fleet.nodes.iter().map(|node| node.name.clone()).collect();
        // Hundreds of simultaneous handshakes on a small host take a while: the
        // benchmark measures speed, so connections get time enough.
        let settings = fleet.ssh_settings("strict").replace("connect_timeout: 3s", "connect_timeout: 60s");
        let ws = Workspace::new(&format!("max_workers: {n}\n{settings}"), &fleet.nodes_yaml());
        ws.write(
            "jobs/a.yaml",
            &format!(
                "jobs:\n  fanout:\n    task: loom.system.run\n    args: [\"true\"]\n    targets: [{}]\n",
                names.join(", ")
            ),
        );

        if std::env::var_os("LOOM_BENCH_HOLD").is_some() {
            // For profiling by hand: the fleet stays up until the benchmark is killed.
            self.pssh_hosts(&fleet);
            eprintln!("holding {n} nodes: loom -c {}", ws.config().display());
            eprintln!(
                "  pssh -h {} -p {n} -x '{}' true",
                fleet.path("pssh-hosts").display(),
                Self::ssh_args(&fleet).join(" ")
            );
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        // Cold: nothing open. Loom and pssh, whose ratio is a target, take turns
        // going first over a few rounds (the median counts): the same nodes serve
        // both, and whoever goes first meets them least warmed up.
        let control = fleet.path("control").display().to_string();
        let (mut loom_cold, mut pssh_cold) = (Vec::new(), Vec::new());
        for round in 0..self.cold_rounds.max(1) {
            let mut loom = || {
                let figure = timed(Command::new(harness::loom_bin()).args([
                    "-c",
                    ws.config().to_str().unwrap(),
                    "run",
                    "fanout",
                ]));
                // `loom run` stops its masters as it ends; make sure they are gone.
                wait_for(Duration::from_secs(30), || ssh_rss_kib(&control) == 0);
                loom_cold.push(figure);
            };
            if round % 2 == 0 {
                loom();
                pssh_cold.push(self.pssh(&fleet, n));
            } else {
                pssh_cold.push(self.pssh(&fleet, n));
                loom();
            }
        }
        self.row("cold", "loom run", n, median_figure(loom_cold));
        self.row("cold", "pssh (parallel-ssh, Debian)", n, median_figure(pssh_cold));
        let (ansible_cold, ansible_warm) = self.ansible(&fleet, n);
        self.row("cold", "ansible -m raw", n, ansible_cold);
        let (lib_cold, mut lib) = self.parallel_ssh_lib(&fleet, n);
        self.row("cold", "parallel-ssh library", n, lib_cold);

        // Warm: connections already open.
        let floor = self.openssh_floor(&fleet, n);
        self.row("warm", "OpenSSH floor: ssh -S, masters open", n, floor);
        let (client, fire, lib_warm, peak) =
            self.loom_warm(&ws, &fleet.path("control").display().to_string(), lib.as_mut());
        self.row("warm", "loom fire (daemon, first task to last result)", n, fire);
        self.row("warm", "loom run via daemon (client wall time)", n, client);
        self.row("warm", "ansible -m raw, ControlPersist", n, ansible_warm);
        self.row("warm", "parallel-ssh library, reused client", n, lib_warm);
        if let Some((daemon_kib, masters_kib)) = peak {
            let note = format!(
                "daemon peak RSS {:.1} MB; its {n} OpenSSH masters {:.1} MB together",
                daemon_kib as f64 / 1024.0,
                masters_kib as f64 / 1024.0
            );
            eprintln!("  {note}");
            self.rows.push(Row {
                section: "memory",
                what: "loom daemon peak RSS (MB)".into(),
                nodes: n,
                seconds: Some(daemon_kib as f64 / 1024.0),
                note,
            });
        }
    }

    fn ssh_args(fleet: &Fleet) -> Vec<String> {
        vec![
            "-i".into(),
            fleet.client_key.display().to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", fleet.known_hosts.display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-F".into(),
            fleet.ssh_config.display().to_string(),
        ]
    }

    /// pssh's host file for the fleet.
    fn pssh_hosts(&self, fleet: &Fleet) -> PathBuf {
        let hosts = fleet.path("pssh-hosts");
        let lines: Vec<String> =
            fleet.nodes.iter().map(|node| format!("{}@{}:{}", sshd::key_user(), node.address, node.port)).collect();
        std::fs::write(&hosts, lines.join("\n") + "\n").unwrap();
        hosts
    }

    fn pssh(&self, fleet: &Fleet, n: usize) -> Result<f64, String> {
        let program = ["parallel-ssh", "pssh"]
            .into_iter()
            .find(|p| which(p))
            .ok_or("skipped: pssh not installed (apt-get install pssh)")?;
        let hosts = self.pssh_hosts(fleet);
        timed(Command::new(program).args([
            "-h",
            hosts.to_str().unwrap(),
            "-p",
            &n.to_string(),
            "-t",
            "120",
            "-x",
            &Self::ssh_args(fleet).join(" "),
            "true",
        ]))
    }

    /// Ansible's inventory for the fleet: group `nodes`, key login, strict host keys.
    fn ansible_inventory(&self, fleet: &Fleet) -> PathBuf {
        let inventory = fleet.path("ansible-inventory");
        let mut text = String::from("[nodes]\n");
        for node in &fleet.nodes {
            text.push_str(&format!(
                "{} ansible_host={} ansible_port={} ansible_user={} ansible_ssh_private_key_file={}\n",
                node.name,
                node.address,
                node.port,
                sshd::key_user(),
                fleet.client_key.display()
            ));
        }
        text.push_str(&format!(
            "[nodes:vars]\nansible_ssh_common_args='-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -F {}'\n",
            fleet.known_hosts.display(),
            fleet.ssh_config.display()
        ));
        std::fs::write(&inventory, text).unwrap();
        inventory
    }

    fn ansible(&self, fleet: &Fleet, n: usize) -> (Figure, Figure) {
        let ansible = self.venv.join("bin/ansible");
        if !ansible.exists() {
            let skip = || Err("skipped: ansible-core not installed in the bench virtualenv".to_string());
            return (skip(), skip());
        }
        let inventory = self.ansible_inventory(fleet);
        let control = fleet.path("ansible-cp");
        std::fs::create_dir_all(&control).unwrap();
        let run = || {
            timed(
                Command::new(&ansible)
                    .args(["nodes", "-i", inventory.to_str().unwrap(), "-m", "raw", "-a", "true", "-f", &n.to_string()])
                    .env("ANSIBLE_SSH_ARGS", "-o ControlMaster=auto -o ControlPersist=120s")
                    .env("ANSIBLE_SSH_CONTROL_PATH_DIR", &control)
                    .env("ANSIBLE_HOST_KEY_CHECKING", "True")
                    .env("ANSIBLE_LOCAL_TEMP", fleet.path("ansible-tmp"))
                    .env("ANSIBLE_PYTHON_INTERPRETER", "/usr/bin/python3")
                    .stdout(Stdio::null()),
            )
        };
        let cold = run();
        let warm = (0..self.rounds).map(|_| run()).collect::<Result<Vec<f64>, String>>().map(median);
        let _ = Command::new("pkill").args(["-f", &control.display().to_string()]).status();
        (cold, warm)
    }

    /// The parallel-ssh library's first (cold) fire, and the client kept connected
    /// for warm fires on request.
    fn parallel_ssh_lib(&self, fleet: &Fleet, n: usize) -> (Figure, Option<LibClient>) {
        let python = self.venv.join("bin/python");
        let usable = python.exists()
            && Command::new(&python)
                .args(["-c", "import pssh.clients"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        if !usable {
            return (Err("skipped: parallel-ssh not installed in the bench virtualenv".to_string()), None);
        }
        let hosts: Vec<String> = fleet.nodes.iter().map(|node| format!("\"{}\"", node.address)).collect();
        let configs: Vec<String> = fleet
            .nodes
            .iter()
            .map(|node| {
                format!(
                    "HostConfig(port={}, user=\"{}\", private_key=\"{}\")",
                    node.port,
                    sshd::key_user(),
                    fleet.client_key.display()
                )
            })
            .collect();
        // One fire at start (cold), then one per line read, each answered with its time.
        let script = format!(
            r#"
import json, sys, time
from pssh.clients import ParallelSSHClient
from pssh.config import HostConfig
hosts = [{hosts}]
client = ParallelSSHClient(hosts, host_config=[{configs}], pool_size={n}, num_retries=1)
def fire():
    start = time.perf_counter()
    output = client.run_command("true")
    client.join(output)
    codes = [o.exit_code for o in output]
    assert all(c == 0 for c in codes), codes
    return time.perf_counter() - start
print(json.dumps(fire()), flush=True)
for _ in sys.stdin:
    print(json.dumps(fire()), flush=True)
"#,
            hosts = hosts.join(", "),
            configs = configs.join(", "),
        );
        let spawned = Command::new(&python)
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => return (Err(e.to_string()), None),
        };
        let stdin = child.stdin.take().expect("piped");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut lib = LibClient { child, stdin, stdout };
        match lib.answer() {
            Ok(cold) => (Ok(cold), Some(lib)),
            Err(why) => (Err(why), None),
        }
    }

    /// Plain OpenSSH with a master already open per node: one `ssh -S` per node, all
    /// at once. The floor a tool built on OpenSSH processes cannot go below.
    fn openssh_floor(&self, fleet: &Fleet, n: usize) -> Result<f64, String> {
        let dir = fleet.path("floor");
        std::fs::create_dir_all(&dir).unwrap();
        let socket = |name: &str| dir.join(format!("{name}.sock"));
        let base = Self::ssh_args(fleet);
        let mut starting = Vec::new();
        for node in &fleet.nodes {
            let child = Command::new("ssh")
                .args(&base)
                .args(["-M", "-N", "-f", "-o", "ControlPersist=yes", "-S"])
                .arg(socket(&node.name))
                .args(["-p", &node.port.to_string(), "-l", &sshd::key_user(), &node.address])
                .stdin(Stdio::null())
                .spawn()
                .map_err(|e| e.to_string())?;
            starting.push(child);
        }
        for mut child in starting {
            child.wait().map_err(|e| e.to_string())?;
        }
        let lines: Vec<String> = fleet
            .nodes
            .iter()
            .map(|node| {
                format!(
                    "-S {} -o ControlMaster=no -p {} {}@{} true",
                    socket(&node.name).display(),
                    node.port,
                    sshd::key_user(),
                    node.address
                )
            })
            .collect();
        let list = dir.join("commands");
        std::fs::write(&list, lines.join("\n") + "\n").unwrap();
        let round = || timed(Command::new("sh").args(["-c", &format!("xargs -P {n} -L 1 ssh < {}", list.display())]));
        let result = (0..self.rounds).map(|_| round()).collect::<Result<Vec<f64>, String>>().map(median);
        for node in &fleet.nodes {
            let _ = Command::new("ssh")
                .arg("-S")
                .arg(socket(&node.name))
                .args(["-O", "exit", "x"])
                .stderr(Stdio::null())
                .status();
        }
        result
    }

    /// Fires through the running daemon: the first opens the masters, the others
    /// are warm. Returns (client wall time, the daemon's own fire duration, peak RSS).
    /// Warm fires through the daemon, taking turns with the parallel-ssh library's
    /// reused clients (if it runs), so that both meet the machine in the same state.
    /// Returns Loom's client wall time, Loom's fire duration, the library's time, and
    /// the daemon's peak memory with its masters'.
    fn loom_warm(
        &self,
        ws: &Workspace,
        masters: &str,
        mut lib: Option<&mut LibClient>,
    ) -> (Figure, Figure, Figure, Option<(u64, u64)>) {
        let daemon = ws.serve_env(&[("LOOM_LOG", "warn")]);
        daemon.wait_started_quietly();
        let run =
            || timed(Command::new(harness::loom_bin()).args(["-c", ws.config().to_str().unwrap(), "run", "fanout"]));
        // The first fire opens the masters.
        if let Err(why) = run() {
            eprintln!("  note: the first fire through the daemon had failures: {why}");
        }
        let (mut client, mut fires, mut lib_fires) = (Vec::new(), Vec::new(), Vec::new());
        let mut lib_fire = |lib: &mut Option<&mut LibClient>| {
            if let Some(lib) = lib.as_deref_mut() {
                lib_fires.push(lib.fire());
            }
        };
        for round in 0..self.rounds {
            if round % 2 == 1 {
                lib_fire(&mut lib);
            }
            match run() {
                Ok(seconds) => client.push(seconds),
                Err(why) => return (Err(why.clone()), Err(why), Err("no turn".into()), None),
            }
            fires.push(last_fire_seconds(ws));
            if round % 2 == 0 {
                lib_fire(&mut lib);
            }
        }
        let lib_figure = match lib {
            Some(_) => median_figure(lib_fires),
            None => Err("skipped: parallel-ssh not installed in the bench virtualenv".into()),
        };
        let peak = rss_kib(daemon.pid(), "VmHWM");
        let masters = ssh_rss_kib(masters);
        daemon.stop();
        (Ok(median(client)), Ok(median(fires)), lib_figure, Some((peak, masters)))
    }

    fn precision(&mut self, jobs: usize) {
        eprintln!("scheduling precision: {jobs} jobs due on the same second…");
        // All of them may run at once: the question is how soon each starts, not
        // how a smaller `max_workers` queues them.
        let workers = std::env::var("LOOM_BENCH_WORKERS").unwrap_or_else(|_| jobs.to_string());
        let ws = Workspace::new(&format!("max_workers: {workers}\n"), "l1:\n  local: true\nl2:\n  local: true\n");
        ws.write("tasks/bench/t.rhai", "fn noop(ssh) { }\n");
        let now = chrono::Utc::now();
        let second = (now.timestamp() + 6) % 60;
        let mut text = String::from("jobs:\n");
        for i in 0..jobs {
            text.push_str(&format!(
                "  j{i:04}:\n    task: bench.t.noop\n    schedule: \"{second} * * * * *\"\n    targets: [l{}]\n",
                1 + i % 2
            ));
        }
        ws.write("jobs/a.yaml", &text);
        let daemon = ws.serve_env(&[("LOOM_LOG", "warn")]);
        let db = ws.path("state.db");
        let done = wait_for(Duration::from_secs(90), || {
            rusqlite::Connection::open(&db)
                .and_then(|c| c.query_row("SELECT count(*) FROM node_results", [], |r| r.get::<_, i64>(0)))
                .is_ok_and(|count| count as usize >= jobs)
        });
        daemon.stop();
        if !done {
            self.row("precision", "lag p50", jobs, Err("the fires did not all happen in time".into()));
            return;
        }
        let connection = rusqlite::Connection::open(&db).unwrap();
        let lags = |sql: &str| -> Vec<f64> {
            let mut statement = connection.prepare(sql).unwrap();
            let mut lags: Vec<f64> =
                statement.query_map([], |r| r.get::<_, i64>(0)).unwrap().map(|r| r.unwrap() as f64 / 1000.0).collect();
            lags.sort_by(|a, b| a.partial_cmp(b).unwrap());
            lags
        };
        // A fire's `started` is rewritten with the instant it really started when it ends.
        let fires = lags("SELECT started - scheduled FROM fires");
        let tasks = lags("SELECT n.started - f.scheduled FROM node_results n JOIN fires f ON f.id = n.fire_id");
        let at = |lags: &[f64], q: f64| lags[((lags.len() as f64 - 1.0) * q).round() as usize];
        self.row("precision", "lag to fire start, p50", jobs, Ok(at(&fires, 0.5)));
        self.row("precision", "lag to fire start, p99", jobs, Ok(at(&fires, 0.99)));
        self.row("precision", "lag to task start, p50", jobs, Ok(at(&tasks, 0.5)));
        self.row("precision", "lag to task start, p99", jobs, Ok(at(&tasks, 0.99)));
        self.row("precision", "lag to task start, max", jobs, Ok(*tasks.last().unwrap()));
    }

    fn scale(&mut self, jobs: usize, nodes: usize) {
        eprintln!("scale: {jobs} jobs over {nodes} nodes…");
        let mut node_text = String::new();
        for i in 0..nodes {
            node_text.push_str(&format!(
                "node{i:04}:\n  ip: 10.{}.{}.{}\n  user: deploy\n",
                i / 65536,
                (i / 256) % 256,
                i % 256
            ));
        }
        node_text.push_str("here:\n  local: true\n");
        let ws = Workspace::new("datafile: data.yaml\n", &node_text);
        ws.write("data.yaml", "groups:\n  - &web [node0001, node0002, node0003]\n");
        ws.write(
            "tasks/bench/t.rhai",
            "fn noop(ssh) { }\nfn deploy(ssh, version, opts) { ssh.run(`echo ${version}`); }\n",
        );
        let mut text = String::from(
            "jobs:\n  first:\n    task: bench.t.noop\n    schedule: \"* * * * * *\"\n    targets: [here]\n",
        );
        for i in 0..jobs {
            text.push_str(&format!(
                "  job{i:05}:\n    task: bench.t.deploy\n    args: [\"v{i}\", {{restart: true}}]\n    schedule: \"{} {} * * *\"\n    targets: [node{:04}, node{:04}]\n    description: generated job {i}\n",
                i % 60,
                i % 24,
                i % nodes,
                (i * 7) % nodes
            ));
        }
        ws.write("jobs/many.yaml", &text);
        let check = (0..3)
            .map(|_| {
                timed(
                    Command::new(harness::loom_bin())
                        .args(["-c", ws.config().to_str().unwrap(), "check"])
                        .stdout(Stdio::null()),
                )
            })
            .collect::<Result<Vec<f64>, String>>()
            .map(median);
        self.row("scale", "loom check", jobs, check);
        let start = Instant::now();
        let daemon = ws.serve_env(&[("LOOM_LOG", "warn")]);
        let db = ws.path("state.db");
        let fired = wait_for(Duration::from_secs(60), || {
            rusqlite::Connection::open(&db)
                .and_then(|c| c.query_row("SELECT count(*) FROM fires WHERE job = 'first'", [], |r| r.get::<_, i64>(0)))
                .is_ok_and(|count| count > 0)
        });
        let to_first = start.elapsed().as_secs_f64();
        // Includes waiting for the next whole second, at most one second.
        self.row(
            "scale",
            "daemon start to first fire (incl. wait for the next second)",
            jobs,
            if fired { Ok(to_first) } else { Err("no fire".into()) },
        );
        std::thread::sleep(Duration::from_secs(3));
        let idle = rss_kib(daemon.pid(), "VmRSS");
        // Private memory apart from the binary's own pages (file-backed, shared).
        let (private, file) = (rss_kib(daemon.pid(), "RssAnon"), rss_kib(daemon.pid(), "RssFile"));
        self.rows.push(Row {
            section: "memory",
            what: "loom daemon idle RSS (MB), 10k jobs".into(),
            nodes: jobs,
            seconds: Some(idle as f64 / 1024.0),
            note: format!(
                "{:.1} MB private (RssAnon), {:.1} MB of the binary's pages (RssFile)",
                private as f64 / 1024.0,
                file as f64 / 1024.0
            ),
        });
        daemon.stop();
    }

    fn print(&self) {
        println!();
        println!("{:<10} {:<58} {:>6} {:>10} {:>9}  note", "section", "what", "n", "result", "loom/x");
        for row in &self.rows {
            let value = match (row.section, row.seconds) {
                ("memory", Some(mb)) => format!("{mb:.1} MB"),
                ("precision", Some(ms)) => format!("{:.1} ms", ms * 1000.0),
                ("cluster/s", Some(rate)) => format!("{rate:.0}/s"),
                (_, Some(s)) => format!("{s:.3} s"),
                (_, None) => "-".into(),
            };
            let ratio = self.ratio(row).map(|r| format!("{r:.2}")).unwrap_or_default();
            println!("{:<10} {:<58} {:>6} {:>10} {:>9}  {}", row.section, row.what, row.nodes, value, ratio, row.note);
        }
    }

    /// Loom's time divided by this row's, for the peers of a fan-out section; in
    /// the cluster sections, this row's figure divided by the SQLite daemon's.
    fn ratio(&self, row: &Row) -> Option<f64> {
        if row.section.starts_with("cluster") {
            let reference = format!("{}: {}", row.what.split_once(": ")?.0, cluster::label(0));
            if row.what == reference {
                return None;
            }
            let sqlite = self.rows.iter().find(|r| r.section == row.section && r.what == reference)?.seconds?;
            return Some(row.seconds? / sqlite);
        }
        let loom_what = match row.section {
            "cold" => "loom run",
            "warm" => "loom fire (daemon, first task to last result)",
            "converge" | "no-change" => "loom resources (daemon, masters open)",
            _ => return None,
        };
        // Loom's own rows (the fire and the client's wall time of it) are no peer.
        if row.what.starts_with("loom ") {
            return None;
        }
        let loom = self
            .rows
            .iter()
            .find(|r| r.section == row.section && r.nodes == row.nodes && r.what == loom_what)?
            .seconds?;
        Some(loom / row.seconds?)
    }
}

/// The parallel-ssh library's client, connected, in a Python process of its own.
struct LibClient {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl LibClient {
    /// One fire on the connected clients.
    fn fire(&mut self) -> Figure {
        use std::io::Write;
        writeln!(self.stdin, "fire").map_err(|e| e.to_string())?;
        self.stdin.flush().map_err(|e| e.to_string())?;
        self.answer()
    }

    fn answer(&mut self) -> Figure {
        use std::io::{BufRead, Read};
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        line.trim().parse().map_err(|_| {
            let mut stderr = String::new();
            if let Some(mut pipe) = self.child.stderr.take() {
                let _ = self.child.kill();
                let _ = pipe.read_to_string(&mut stderr);
            }
            stderr.lines().last().unwrap_or("the library's client gave no figure").to_string()
        })
    }
}

impl Drop for LibClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn last_fire_seconds(ws: &Workspace) -> f64 {
    let connection = rusqlite::Connection::open(ws.path("state.db")).unwrap();
    connection
        .query_row("SELECT finished - started FROM fires ORDER BY id DESC LIMIT 1", [], |r| r.get::<_, i64>(0))
        .map(|ms| ms as f64 / 1000.0)
        .unwrap_or(f64::NAN)
}

/// Summed RSS of the `ssh` processes whose command line mentions `marker`.
fn ssh_rss_kib(marker: &str) -> u64 {
    let out = Command::new("ps").args(["-eo", "rss=,args="]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("ssh") && l.contains(marker))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}
