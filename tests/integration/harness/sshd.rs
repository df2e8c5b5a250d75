//! Real sshd nodes on loopback addresses, with throwaway host and client keys.
//!
//! Each `Fleet` starts its own `sshd -D` processes on 127.0.1.x with free ports, a
//! generated known_hosts, and a client key in authorized_keys. Nodes log in as a
//! dedicated test user with `/bin/sh` (root's login shell is slow here); when the
//! tests run as root the users are created (`loomtest` for keys, with passwordless
//! sudo; `loompass` for passwords, with password sudo); root may log in with the client
//! key too (`node_yaml_as`), for the tests of a root login. sshd's `SetEnv PATH` puts the
//! fleet's `bin/` first, so a test can place stand-ins (say `systemctl`) that record
//! how they were called. Everything stops when the fleet is dropped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const KEY_USER: &str = "loomtest";
pub const PASSWORD_USER: &str = "loompass";
pub const PASSWORD: &str = "Pw-9f3k'x;$(id)";

fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// The user nodes log in as: the test user when root, else whoever runs the tests.
pub fn key_user() -> String {
    if is_root() { KEY_USER.to_string() } else { std::env::var("USER").unwrap_or_default() }
}

/// One-time machine set-up: test users, sudo rules, sshd's privilege-separation folder.
pub fn machine() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        assert!(Path::new("/usr/sbin/sshd").exists(), "sshd is missing: run .ci/run, which installs openssh-server");
        if !is_root() {
            return;
        }
        std::fs::create_dir_all("/run/sshd").unwrap();
        for user in [KEY_USER, PASSWORD_USER] {
            if !run("id", &[user]) {
                assert!(run("useradd", &["-m", "-s", "/bin/sh", user]), "failed to create test user {user}");
            }
        }
        // A usable (not locked) password field: `*` for the key user, a real one for the other.
        assert!(run("usermod", &["-p", "*", KEY_USER]));
        let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        writeln!(chpasswd.stdin.take().unwrap(), "{PASSWORD_USER}:{PASSWORD}").unwrap();
        assert!(chpasswd.wait().unwrap().success());
        if Path::new("/etc/sudoers.d").is_dir() {
            let rules = format!(
                "Defaults:{KEY_USER},{PASSWORD_USER} !secure_path, !lecture, env_keep += \"PATH\"\n\
                 {KEY_USER} ALL=(ALL) NOPASSWD: ALL\n{PASSWORD_USER} ALL=(ALL) ALL\n"
            );
            std::fs::write("/etc/sudoers.d/loom-tests", rules).unwrap();
            std::fs::set_permissions("/etc/sudoers.d/loom-tests", std::os::unix::fs::PermissionsExt::from_mode(0o440))
                .unwrap();
        }
    });
}

/// A loopback address no other fleet of this process uses.
fn next_address() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("127.0.{}.{}", 1 + n / 250, 1 + n % 250)
}

fn free_port(address: &str) -> u16 {
    TcpListener::bind((address, 0)).unwrap().local_addr().unwrap().port()
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "loom-test", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "ssh-keygen failed");
}

pub struct SshNode {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub log: PathBuf,
    child: Option<Child>,
}

impl SshNode {
    /// How many logins sshd accepted (one per master Loom started).
    pub fn logins(&self) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines().filter(|l| l.contains("Accepted publickey for") || l.contains("Accepted password for")).count()
    }

    pub fn known_hosts_entry(&self, public_key: &str) -> String {
        let key: Vec<&str> = public_key.split_whitespace().take(2).collect();
        format!("[{}]:{} {}\n", self.address, self.port, key.join(" "))
    }
}

impl Drop for SshNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // A test that failed half-way may leave masters behind; they would keep the
        // nodes' session processes alive.
        let marker = self.dir.path().display().to_string();
        let _ = Command::new("pkill").args(["-f", &format!("^ssh .*{marker}")]).status();
    }
}

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<SshNode>,
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
    pub host_key: PathBuf,
    /// Empty ssh_config, so the machine's own never leaks into a test.
    pub ssh_config: PathBuf,
    /// Listeners kept open for `hanging` nodes.
    hangers: Vec<std::thread::JoinHandle<()>>,
    /// A folder that each node sees as its own empty one (`start_private`).
    pub private: Option<PathBuf>,
}

impl Fleet {
    pub fn start(count: usize) -> Fleet {
        machine();
        let dir = tempfile::Builder::new().prefix("loom-fleet-").tempdir().unwrap();
        // The test users must reach authorized_keys, the stand-ins and shared folders.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let client_key = dir.path().join("client_key");
        let host_key = dir.path().join("host_key");
        keygen(&client_key);
        keygen(&host_key);
        std::fs::copy(dir.path().join("client_key.pub"), dir.path().join("authorized_keys")).unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        let ssh_config = dir.path().join("ssh_config");
        std::fs::write(&ssh_config, "").unwrap();
        let mut fleet = Fleet {
            known_hosts: dir.path().join("known_hosts"),
            dir,
            nodes: Vec::new(),
            client_key,
            host_key,
            ssh_config,
            hangers: Vec::new(),
            private: None,
        };
        std::fs::write(&fleet.known_hosts, "").unwrap();
        for i in 0..count {
            fleet.add_node(&format!("n{:02}", i + 1), None);
        }
        fleet
    }

    /// Like `start`, but each node's sshd runs in a mount namespace of its own with
    /// a private tmpfs on `fleet.private` (the fleet's folder `private`): the same
    /// absolute path is a different, empty folder on each node, as on real machines.
    /// Needs root (`unshare -m`); `None` where that is not possible.
    pub fn start_private(count: usize) -> Option<Fleet> {
        if !is_root() || !run("unshare", &["-m", "true"]) {
            return None;
        }
        let mut fleet = Fleet::start(0);
        let private = fleet.path("private");
        std::fs::create_dir_all(&private).unwrap();
        fleet.private = Some(private);
        for i in 0..count {
            fleet.add_node(&format!("n{:03}", i + 1), None);
        }
        Some(fleet)
    }

    /// Where `path` (under `private`) is, as `node` sees it, for the Loom host.
    pub fn on_node(&self, node: &SshNode, path: &Path) -> PathBuf {
        let pid = node.child.as_ref().map_or(0, Child::id);
        Path::new(&format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap_or(path))
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn host_public_key(&self) -> String {
        std::fs::read_to_string(self.host_key.with_extension("pub")).unwrap()
    }

    /// Starts one more sshd; `host_key` overrides the fleet's host key.
    pub fn add_node(&mut self, name: &str, host_key: Option<&Path>) -> &SshNode {
        let address = next_address();
        let port = free_port(&address);
        let config = self.path(&format!("sshd_{name}.conf"));
        let log = self.path(&format!("sshd_{name}.log"));
        let key = host_key.unwrap_or(&self.host_key);
        // Root may log in with the client key (`node_yaml_as`), for tests of a root login.
        let users = if is_root() { format!("{KEY_USER} {PASSWORD_USER} root") } else { key_user() };
        std::fs::write(
            &config,
            format!(
                "ListenAddress {address}:{port}\nHostKey {key}\nPidFile none\nAuthorizedKeysFile {keys}\n\
                 StrictModes no\nUsePAM no\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nAllowUsers {users}\nMaxStartups 500:30:1000\nMaxSessions 200\n\
                 LogLevel VERBOSE\nPrintMotd no\nPrintLastLog no\nSubsystem sftp internal-sftp\nSetEnv PATH={bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
                key = key.display(),
                keys = self.path("authorized_keys").display(),
                bin = self.path("bin").display(),
            ),
        )
        .unwrap();
        let mut command = match &self.private {
            None => Command::new("/usr/sbin/sshd"),
            Some(private) => {
                let mut command = Command::new("unshare");
                command.args(["-m", "--propagation", "private", "sh", "-c"]);
                command.arg("mount -t tmpfs -o mode=1777 loom-node \"$0\" && exec /usr/sbin/sshd \"$@\"");
                command.arg(private);
                command
            }
        };
        let child = command
            .arg("-D")
            .arg("-f")
            .arg(&config)
            .arg("-E")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("failed to start sshd");
        let ready = super::wait_for(Duration::from_secs(10), || TcpStream::connect((address.as_str(), port)).is_ok());
        assert!(ready, "sshd for {name} did not start; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let node = SshNode { name: name.to_string(), address, port, log, child: Some(child) };
        if host_key.is_none() {
            let mut known = std::fs::read_to_string(&self.known_hosts).unwrap();
            known.push_str(&node.known_hosts_entry(&public));
            std::fs::write(&self.known_hosts, known).unwrap();
        }
        self.nodes.push(node);
        self.nodes.last().unwrap()
    }

    pub fn node(&self, name: &str) -> &SshNode {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    /// A node entry for the node manifest, logging in with the client key.
    pub fn node_yaml(&self, node: &SshNode) -> String {
        format!(
            "{}:\n  ip: {}\n  port: {}\n  user: {}\n  identity: {}\n",
            node.name,
            node.address,
            node.port,
            key_user(),
            self.client_key.display()
        )
    }

    /// A node entry named `name` for `node`, logging in as `user` with the client key
    /// (`root` is allowed when the tests run as root; its shell is root's own).
    pub fn node_yaml_as(&self, node: &SshNode, name: &str, user: &str) -> String {
        format!(
            "{name}:\n  ip: {}\n  port: {}\n  user: {user}\n  identity: {}\n",
            node.address,
            node.port,
            self.client_key.display()
        )
    }

    pub fn nodes_yaml(&self) -> String {
        self.nodes.iter().map(|n| self.node_yaml(n)).collect()
    }

    /// The `ssh:` section pointing at this fleet's known_hosts and empty ssh_config;
    /// control sockets go into the fleet's folder so tests can see they are cleaned up.
    pub fn ssh_settings(&self, policy: &str) -> String {
        std::fs::create_dir_all(self.path("control")).unwrap();
        format!(
            "ssh:\n  host_key_checking: {policy}\n  known_hosts: {}\n  config_file: {}\n  connect_timeout: 3s\n  control_dir: {}\n",
            self.known_hosts.display(),
            self.ssh_config.display(),
            self.path("control").display(),
        )
    }

    /// A folder every test user may write into, for remote effects.
    pub fn shared_dir(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        path
    }

    /// An address and port where nothing listens.
    pub fn down_node(&self, name: &str) -> String {
        let address = next_address();
        let port = free_port(&address);
        format!(
            "{name}:\n  ip: {address}\n  port: {port}\n  user: {}\n  identity: {}\n",
            key_user(),
            self.client_key.display()
        )
    }

    /// A node that accepts TCP connections and then never says anything.
    pub fn hanging_node(&mut self, name: &str) -> String {
        let address = next_address();
        let listener = TcpListener::bind((address.as_str(), 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        self.hangers.push(std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
            }
        }));
        format!(
            "{name}:\n  ip: {address}\n  port: {port}\n  user: {}\n  identity: {}\n",
            key_user(),
            self.client_key.display()
        )
    }

    /// Writes an executable stand-in into the nodes' PATH.
    pub fn stand_in(&self, program: &str, script: &str) {
        let path = self.path(&format!("bin/{program}"));
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }

    /// `ssh` processes whose command line mentions this fleet's folder (our masters).
    /// (sshd's own processes are named `sshd: …`, so they do not count.)
    pub fn ssh_processes(&self) -> usize {
        let out = Command::new("ps").args(["-eo", "args"]).output().unwrap();
        let marker = self.dir.path().display().to_string();
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("ssh ") && l.contains(&marker)).count()
    }
}
