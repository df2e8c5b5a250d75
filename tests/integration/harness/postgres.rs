//! A private PostgreSQL server for the tests, started once per test binary run.
//!
//! `initdb` and `postgres` come from `PATH` or from Debian's
//! `/usr/lib/postgresql/<version>/bin` (`.ci/run` installs `postgresql` when both
//! lack them). The cluster lives in a temporary folder of its own, listens on
//! 127.0.0.1 on a free port, and runs as the sshd fleet's test user when the tests
//! run as root (PostgreSQL refuses root). Its superuser `loom` logs in with a
//! password from a file, so the tests exercise `password_file`. A small shell
//! watchdog owns the server: when this process ends, however it ends, the pipe to
//! the watchdog closes and it stops the server and removes the folder. Each test
//! gets a database of its own (`database`). A test that stops and restarts the
//! server (`stop`, `start_again`, through `pg_ctl`) takes one of its own
//! (`private`), removed when it drops.
//!
//! `LOOM_TEST_STORE=postgres` makes every `Workspace` that names no `state` use a
//! fresh database here instead of a SQLite file.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const USER: &str = "loom";
const PASSWORD: &str = "pg-S3cret-9x";

pub struct Server {
    pub port: u16,
    pub password_file: PathBuf,
    /// `pg_ctl` and how to run it as the server's owner, to stop and start it again.
    pg_ctl: PathBuf,
    data: PathBuf,
    options: String,
    log: PathBuf,
    owner: Option<(u32, u32)>,
    /// Stopped and removed on drop (the shared server never drops: its watchdog
    /// does that when the test binary ends).
    private: bool,
}

/// Whether the tests were asked to run on PostgreSQL (`LOOM_TEST_STORE=postgres`).
pub fn selected() -> bool {
    std::env::var("LOOM_TEST_STORE").is_ok_and(|store| store == "postgres")
}

/// The folder holding `initdb` and `postgres`.
fn binaries() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file());
    if let Some(dir) = on_path {
        return dir;
    }
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).filter(|b| b.join("initdb").is_file()).collect())
        .unwrap_or_default();
    debian.sort_by_key(|bin| {
        bin.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    debian.pop().expect("PostgreSQL is missing: run .ci/run, which installs postgresql")
}

/// The shared server, started on first use.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| start(false))
}

/// A server of the caller's own, for a test that stops and starts it
/// (`stop`, `start_again`) while others use the shared one; removed on drop.
pub fn private() -> Server {
    start(true)
}

fn start(private: bool) -> Server {
    let bin = binaries();
    let root = super::sshd::is_root();
    let owner = if root {
        super::sshd::machine();
        let id = |flag: &str| {
            let out = Command::new("id").args([flag, super::sshd::KEY_USER]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().unwrap()
        };
        Some((id("-u"), id("-g")))
    } else {
        None
    };
    let dir = tempfile::Builder::new().prefix("loom-pg-").tempdir().unwrap().keep();
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        std::os::unix::fs::chown(&password_file, Some(uid), Some(gid)).unwrap();
    }
    let as_owner = |command: &mut Command| {
        if let Some((uid, gid)) = owner {
            command.uid(uid).gid(gid).env("HOME", &dir);
        }
    };
    let data = dir.join("data");
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .args(["-U", USER, "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync", "-D"])
        .arg(&data)
        .arg(format!("--pwfile={}", password_file.display()))
        .current_dir(&dir)
        .stdout(Stdio::null());
    as_owner(&mut initdb);
    let out = initdb.output().unwrap();
    assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
    let port = super::free_port();
    let log = dir.join("log");
    let options = format!(
        "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c max_connections=500 -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off",
        dir = dir.display()
    );
    let pg_ctl = bin.join("pg_ctl");
    // The watchdog: waits until its stdin closes (this process ended), then stops
    // the server (fast shutdown) and removes the folder.
    let script = format!(
        "read _ || true\n'{pg_ctl}' -D '{data}' -m fast -w stop >/dev/null 2>&1\nrm -rf '{dir}'\n",
        pg_ctl = pg_ctl.display(),
        data = data.display(),
        dir = dir.display(),
    );
    let mut watchdog = Command::new("sh");
    watchdog.args(["-c", &script]).current_dir(&dir).stdin(Stdio::piped()).stdout(Stdio::null());
    as_owner(&mut watchdog);
    let mut child = watchdog.spawn().unwrap();
    // Never written to: closed by the kernel when this process ends.
    std::mem::forget(child.stdin.take());
    std::mem::forget(child);
    let server = Server { port, password_file, pg_ctl, data, options, log, owner, private };
    server.start_again();
    server
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.private {
            self.stop();
            if let Some(dir) = self.data.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

impl Server {
    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new(&self.pg_ctl);
        command.arg("-D").arg(&self.data).args(args).stdin(Stdio::null());
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command.output().unwrap()
    }

    /// Stops the server (fast shutdown: open connections are closed) and waits
    /// until it is down.
    pub fn stop(&self) {
        let out = self.pg_ctl(&["-m", "fast", "-w", "stop"]);
        assert!(out.status.success() || self.private, "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts the (stopped) server and waits until it answers.
    pub fn start_again(&self) {
        let log = self.log.display().to_string();
        let out = self.pg_ctl(&["-l", &log, "-o", &self.options, "-w", "-t", "60", "start"]);
        assert!(
            out.status.success(),
            "the test PostgreSQL did not start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        let ready = super::wait_for(Duration::from_secs(60), || self.execute("postgres", "SELECT 1").is_ok());
        assert!(
            ready,
            "the test PostgreSQL does not answer:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Runs `sql` in database `db` as the superuser.
    pub fn execute(&self, db: &str, sql: &str) -> Result<(), String> {
        self.query(db, sql).map(drop)
    }

    /// Runs `sql` in database `db` and returns its rows as text columns.
    pub fn query(&self, db: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::Config::new()
                .host("127.0.0.1")
                .port(self.port)
                .user(USER)
                .password(PASSWORD)
                .dbname(db)
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            let messages = client.simple_query(sql).await.map_err(|e| format!("{e:?}"))?;
            Ok(messages
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => {
                        Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect())
                    }
                    _ => None,
                })
                .collect())
        })
    }

    pub fn password(&self) -> &'static str {
        PASSWORD
    }
}

/// A fresh, empty database on the shared server; returns its name.
pub fn database() -> String {
    server().database()
}

/// The `state:` setting of a main file that uses database `db` of the shared server.
pub fn state_setting(db: &str) -> String {
    server().state_setting(db)
}

impl Server {
    /// A fresh, empty database on this server; returns its name.
    pub fn database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("loom_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        self.execute("postgres", &format!("CREATE DATABASE {name}")).unwrap();
        name
    }

    /// The `state:` setting of a main file that uses database `db` here.
    pub fn state_setting(&self, db: &str) -> String {
        let server = self;
        format!(
            "state: {{postgres: {{host: 127.0.0.1, port: {}, user: {USER}, dbname: {db}, password_file: {}}}}}\n",
            server.port,
            server.password_file.display()
        )
    }
}
