//! What the integration tests start for real: the `loom` binary on a configuration
//! written to a temporary folder, and (see `sshd.rs`) real sshd nodes on loopback.

#![allow(dead_code)]

pub mod browser;
pub mod postgres;
pub mod sshd;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn loom_bin() -> &'static str {
    env!("CARGO_BIN_EXE_loom")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A configuration in a temporary folder: `loom.yaml`, `nodes.yaml`, `jobs/`, `tasks/`.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    /// A workspace with the given main-file extras and node manifest.
    pub fn new(main_extra: &str, nodes: &str) -> Workspace {
        let dir = tempfile::Builder::new().prefix("loom-test-").tempdir().unwrap();
        let ws = Workspace { dir };
        // History goes into the workspace, never into the user's ~/.loom; with
        // LOOM_TEST_STORE=postgres, into a database of its own on the test server.
        let state = if main_extra.contains("state:") {
            String::new()
        } else if postgres::selected() {
            postgres::state_setting(&postgres::database())
        } else {
            "state: state.db\n".to_string()
        };
        // Each workspace's API gets a port of its own.
        let listen =
            if main_extra.contains("listen:") { String::new() } else { format!("listen: 127.0.0.1:{}\n", free_port()) };
        ws.write("loom.yaml", &format!("nodesfile: nodes.yaml\njobspath: jobs\n{state}{listen}{main_extra}"));
        ws.write("nodes.yaml", nodes);
        std::fs::create_dir_all(ws.path("jobs")).unwrap();
        std::fs::create_dir_all(ws.path("tasks")).unwrap();
        ws
    }

    /// One `local: true` node named `local`.
    pub fn local(main_extra: &str) -> Workspace {
        Workspace::new(main_extra, "local:\n  local: true\n")
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn write(&self, relative: &str, text: &str) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path(relative)).unwrap_or_default()
    }

    /// The URL of this workspace's API (`listen:` of its main file).
    pub fn server(&self) -> String {
        let main = self.read("loom.yaml");
        let address = main.lines().find_map(|l| l.strip_prefix("listen: ")).expect("a listen address");
        format!("http://{}", address.trim())
    }

    /// The database of this workspace when it uses the test PostgreSQL server.
    pub fn postgres_db(&self) -> Option<String> {
        let main = self.read("loom.yaml");
        let (_, rest) = main.split_once("dbname: ")?;
        rest.split([',', '}', '\n']).next().map(|name| name.trim().to_string())
    }

    /// Runs `sql` (no parameters, in the dialect both backends share) on this
    /// workspace's store, SQLite `state.db` or its PostgreSQL database.
    pub fn store_sql(&self, sql: &str) {
        match self.postgres_db() {
            Some(db) => postgres::server().execute(&db, sql).unwrap(),
            None => rusqlite::Connection::open(self.path("state.db")).unwrap().execute_batch(sql).unwrap(),
        }
    }

    pub fn config(&self) -> PathBuf {
        self.path("loom.yaml")
    }

    pub fn loom(&self, args: &[&str]) -> Run {
        self.loom_env(args, &[])
    }

    pub fn loom_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let config = self.config();
        let mut all = vec!["-c", config.to_str().unwrap()];
        all.extend_from_slice(args);
        loom_env(&all, env)
    }

    /// Starts `loom serve`; its log goes to a file read by `Daemon::log`.
    pub fn serve(&self) -> Daemon {
        self.serve_env(&[])
    }

    pub fn serve_env(&self, env: &[(&str, &str)]) -> Daemon {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self.path(&format!("daemon-{n}.log"));
        let child = Command::new(loom_bin())
            .args(["serve", "-c", self.config().to_str().unwrap()])
            .env("LOOM_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("SSH_AUTH_SOCK")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child: Some(child), log }
    }
}

/// A finished `loom` command.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, Some(code), "exit code; stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

pub fn loom(args: &[&str]) -> Run {
    loom_env(args, &[])
}

/// Runs `loom` with a clean environment for what matters to it (no config, no agent)
/// plus `env`.
pub fn loom_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let Output { status, stdout, stderr } = Command::new(loom_bin())
        .args(args)
        .current_dir(repo_root())
        .env_remove("LOOM_CONFIG")
        .env_remove("SSH_AUTH_SOCK")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A running `loom serve`; killed if the test drops it without stopping it.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the daemon has started, whatever its log level.
    pub fn wait_started_quietly(&self) {
        let port = std::fs::read_to_string(self.log.parent().unwrap().join("loom.yaml"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("listen: ").map(str::to_string));
        let ready = wait_for(Duration::from_secs(60), || {
            port.as_deref().is_some_and(|address| std::net::TcpStream::connect(address.trim()).is_ok())
        });
        assert!(ready, "the daemon did not start:\n{}", self.log());
    }

    /// Waits until the daemon has loaded everything and planned its fires.
    pub fn wait_started(&self) {
        assert!(
            wait_for(Duration::from_secs(20), || self.log().contains("loom started")),
            "not started:\n{}",
            self.log()
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, name: &str) {
        Command::new("kill").args([&format!("-{name}"), &self.pid().to_string()]).status().unwrap();
    }

    /// Sends SIGTERM and waits for the exit; returns (exit code, log).
    pub fn stop(self) -> (Option<i32>, String) {
        self.signal("TERM");
        self.wait()
    }

    /// Waits for the daemon to exit by itself; returns (exit code, log).
    pub fn wait(mut self) -> (Option<i32>, String) {
        let mut child = self.child.take().unwrap();
        let status = child.wait().unwrap();
        (status.code(), self.log())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `loom tail …` (the arguments after `loom`) and returns once it says it
/// follows, i.e. its event stream is open; its stdout is piped.
pub fn follow(args: &[&str]) -> Child {
    use std::io::BufRead;
    let mut tail = Command::new(loom_bin()).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut said = String::new();
    std::io::BufReader::new(tail.stderr.take().unwrap()).read_line(&mut said).unwrap();
    assert!(said.contains("following"), "{said}");
    tail
}

/// Waits until `ready` holds, checking every 50 ms, for at most `limit`.
pub fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ready()
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// The daemon run in-process on a clock the test moves by hand.
pub struct InProcess {
    runtime: tokio::runtime::Runtime,
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), loom::daemon::DaemonError>>,
}

impl InProcess {
    /// Starts the daemon on `ws`'s configuration; if it listens, returns once its
    /// loop answers (with `token`), so it has planned its fires from the clock's time.
    pub fn start(ws: &Workspace, clock: &std::sync::Arc<loom::daemon::ManualClock>, token: Option<&str>) -> InProcess {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let clock: std::sync::Arc<dyn loom::daemon::Clock> = clock.clone();
        let run = loom::daemon::run_with_clock(ws.config(), shutdown.clone(), Default::default(), clock);
        let task = runtime.spawn(run);
        let main = std::fs::read_to_string(ws.config()).unwrap();
        if let Some(address) = main.lines().find_map(|l| l.strip_prefix("listen: ")).filter(|a| *a != "off") {
            let up = wait_for(Duration::from_secs(20), || std::net::TcpStream::connect(address.trim()).is_ok());
            assert!(up, "the in-process daemon did not start listening");
            // The API listens before the loop plans; the loop answers `status`.
            let (status, body) = http("GET", &format!("{}/api/v1/status", ws.server()), token, None);
            assert_eq!(status, 200, "{body}");
        }
        InProcess { runtime, shutdown, task }
    }

    /// Stops the daemon as SIGTERM does, and waits for it.
    pub fn stop(self) {
        self.stop_while(|| {});
    }

    /// Stops the daemon as SIGTERM does; `meanwhile` runs once it was told (a test
    /// that lets a running fire end only after seeing what the stop did), then
    /// waits for it.
    pub fn stop_while(self, meanwhile: impl FnOnce()) {
        self.shutdown.cancel();
        meanwhile();
        self.runtime.block_on(self.task).unwrap().unwrap();
    }
}

/// Moves `clock` on by `seconds`, one at a time, each time waiting until the daemon
/// has planned `job` past the new time (so whatever was due has been decided).
pub fn pass_seconds(ws: &Workspace, clock: &loom::daemon::ManualClock, token: Option<&str>, job: &str, seconds: i64) {
    for _ in 0..seconds {
        move_clock(ws, clock, token, job, chrono::TimeDelta::seconds(1));
    }
}

/// Moves `clock` on by `by` at once (as a host that slept or stalled sees it), and
/// waits until the daemon has planned `job` past the new time.
pub fn move_clock(
    ws: &Workspace,
    clock: &loom::daemon::ManualClock,
    token: Option<&str>,
    job: &str,
    by: chrono::TimeDelta,
) {
    use loom::daemon::Clock;
    clock.advance(by);
    let now = clock.now();
    let planned = wait_for(Duration::from_secs(20), || {
        let (_, status) = http("GET", &format!("{}/api/v1/status", ws.server()), token, None);
        status["next"].as_array().is_some_and(|next| {
            next.iter().any(|n| {
                n["job"] == job
                    && n["at"].as_str().and_then(|at| at.parse::<chrono::DateTime<chrono::Utc>>().ok()) > Some(now)
            })
        })
    });
    assert!(planned, "the daemon never planned {job} past {now}");
}

/// One HTTP request; returns the status and the JSON body.
pub fn http(method: &str, url: &str, token: Option<&str>, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut request = client.request(method.parse().unwrap(), url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    })
}
