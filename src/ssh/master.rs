//! Starting a node's OpenSSH master: `ssh -M -N -f` with a private control socket.
//!
//! Loom starts the master itself rather than through `openssh::SessionBuilder`, which
//! forces `BatchMode=yes` (no passwords) and takes no arbitrary `-o` options. The
//! master forks into the background once it has authenticated, so the launch ends
//! exactly when the connection is usable. Its log (`-E`) is read to turn failures into
//! messages that name the node and say what to do.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tempfile::TempDir;

use super::SshError;
use super::settings::{HostKeyPolicy, SshSettings};
use crate::config::Node;

/// A started master: its folder holds the control socket `master` and the log `log`.
pub(crate) struct Master {
    pub(crate) dir: TempDir,
}

/// `host:port` for messages.
pub(crate) fn address(node: &Node) -> String {
    match node.port {
        Some(port) => format!("{}:{port}", node.host),
        None => node.host.clone(),
    }
}

pub(crate) fn arguments(node: &Node, settings: &SshSettings, dir: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut option = |text: String| {
        args.push("-o".into());
        args.push(text.into());
    };
    // ssh keeps the first value it sees for an option: the node's own options win,
    // then the global ones, then Loom's defaults.
    for text in node.ssh_options.iter().chain(&settings.options) {
        option(text.clone());
    }
    option(format!("ControlPersist={}", settings.control_persist));
    option(format!("BatchMode={}", if node.password.is_some() { "no" } else { "yes" }));
    let strict = match settings.host_key_checking {
        HostKeyPolicy::Strict => "yes",
        HostKeyPolicy::AcceptNew => "accept-new",
        HostKeyPolicy::Off => "no",
    };
    option(format!("StrictHostKeyChecking={strict}"));
    if settings.host_key_checking == HostKeyPolicy::Off {
        option("UserKnownHostsFile=/dev/null".to_string());
        option("LogLevel=ERROR".to_string());
    } else if let Some(known_hosts) = &settings.known_hosts {
        option(format!("UserKnownHostsFile={}", known_hosts.display()));
    }
    option(format!("ConnectTimeout={}", settings.connect_timeout.as_secs().max(1)));
    if !settings.keepalive.is_zero() {
        option(format!("ServerAliveInterval={}", settings.keepalive.as_secs().max(1)));
        option("ServerAliveCountMax=3".to_string());
    }
    if node.password.is_some() {
        option("NumberOfPasswordPrompts=1".to_string());
    }
    if let Some(identity) = &node.identity {
        option("IdentitiesOnly=yes".to_string());
        args.push("-i".into());
        args.push(identity.into());
    }
    if let Some(config) = &settings.config_file {
        args.push("-F".into());
        args.push(config.into());
    }
    if let Some(port) = node.port {
        args.push("-p".into());
        args.push(port.to_string().into());
    }
    if let Some(user) = &node.user {
        args.push("-l".into());
        args.push(user.into());
    }
    for flag in ["-M", "-N", "-f"] {
        args.push(flag.into());
    }
    args.push("-S".into());
    args.push(dir.join("master").into());
    args.push("-E".into());
    args.push(dir.join("log").into());
    args.push("--".into());
    args.push(node.host.clone().into());
    args
}

/// Starts the node's master with its control folder inside `control`.
pub(crate) async fn start(node: &Node, settings: &SshSettings, control: &Path) -> Result<Master, SshError> {
    let dir = super::control::prepare(control)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            tempfile::Builder::new()
                .prefix("node-")
                .permissions(std::fs::Permissions::from_mode(0o700))
                .tempdir_in(control)
        })
        .map_err(|e| SshError::Connect {
            node: node.name.clone(),
            address: address(node),
            reason: format!("failed to make a control folder in {}: {e}", control.display()),
        })?;
    let mut command = tokio::process::Command::new(&settings.program);
    command
        .args(arguments(node, settings, dir.path()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let password_file = match &node.password {
        Some(password) => {
            let path = dir.path().join("askpass");
            write_private(&path, password.expose().as_bytes()).map_err(|e| SshError::Connect {
                node: node.name.clone(),
                address: address(node),
                reason: format!("failed to prepare the password for ssh: {e}"),
            })?;
            let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("loom"));
            command
                .env("SSH_ASKPASS", program)
                .env("SSH_ASKPASS_REQUIRE", "force")
                .env(super::askpass::FILE_VAR, &path)
                .env("DISPLAY", std::env::var_os("DISPLAY").unwrap_or_else(|| ":0".into()));
            Some(path)
        }
        None => None,
    };
    let launched = command.spawn().map_err(|e| SshError::Connect {
        node: node.name.clone(),
        address: address(node),
        reason: format!("failed to start {}: {e}", settings.program.display()),
    });
    let outcome = match launched {
        Err(err) => Err(err),
        // ConnectTimeout covers the TCP connect and the banner; the extra margin
        // bounds a server that stalls later in the handshake.
        Ok(child) => match tokio::time::timeout(settings.connect_timeout * 2, child.wait_with_output()).await {
            Err(_) => Err(SshError::Timeout {
                node: node.name.clone(),
                address: address(node),
                after: humantime::format_duration(settings.connect_timeout * 2).to_string(),
            }),
            Ok(Err(e)) => {
                Err(SshError::Connect { node: node.name.clone(), address: address(node), reason: e.to_string() })
            }
            Ok(Ok(output)) if output.status.success() => Ok(()),
            Ok(Ok(output)) => {
                let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
                let stderr = String::from_utf8_lossy(&output.stderr);
                Err(interpret(node, &format!("{log}\n{stderr}")))
            }
        },
    };
    if let Some(path) = password_file {
        let _ = std::fs::remove_file(path);
    }
    outcome.map(|()| Master { dir })
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)
}

/// Turns ssh's log into an error a person can act on.
pub(crate) fn interpret(node: &Node, log: &str) -> SshError {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added") && !l.starts_with('@'))
        .collect();
    let has = |needle: &str| log.contains(needle);
    let node_name = node.name.clone();
    let address = address(node);
    if has("REMOTE HOST IDENTIFICATION HAS CHANGED") || has("Host key for") && has("has changed") {
        return SshError::HostKey {
            node: node_name,
            address,
            reason: "its host key has changed since it was recorded in known_hosts (a reinstalled host, or someone in between); if the change is expected, remove the old key with `ssh-keygen -R`".to_string(),
        };
    }
    if has("host key is known for") || has("Host key verification failed") {
        return SshError::HostKey {
            node: node_name,
            address,
            reason: "its host key is not in known_hosts and host_key_checking is strict; add it (ssh-keyscan) or use accept-new".to_string(),
        };
    }
    if let Some(line) = lines.iter().find(|l| l.contains("Permission denied")) {
        return SshError::Auth { node: node_name, address, reason: line.to_string() };
    }
    if has("timed out") {
        return SshError::Timeout { node: node_name, address, after: "ConnectTimeout".to_string() };
    }
    let reason = lines.last().map_or("ssh exited without saying why".to_string(), |l| l.to_string());
    SshError::Connect { node: node_name, address, reason }
}
