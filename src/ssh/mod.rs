//! Reaching a node: running commands and moving files, locally or over OpenSSH.
//!
//! Task scripts run on blocking threads and see a synchronous `Connection`; the SSH
//! side is async underneath and is driven from those threads with the runtime's
//! handle. One OpenSSH master per node is kept by the `Pool` and reused across tasks
//! and fires. This module knows nothing about jobs or scripts.

pub mod askpass;
pub mod control;
mod local;
mod master;
mod pool;
mod session;
pub mod settings;
mod shell;

pub use local::LocalConnection;
pub use pool::Pool;
pub use session::SshConnection;
pub use settings::{HostKeyPolicy, SshSettings};

use std::fmt;
use std::path::Path;

use tokio_util::sync::CancellationToken;

/// What a command left behind.
#[derive(Debug, Clone, Default)]
pub struct CommandOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// `None` when the command was killed by a signal.
    pub code: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("failed to connect to node `{node}` ({address}): {reason}")]
    Connect { node: String, address: String, reason: String },
    #[error("refused node `{node}` ({address}): {reason}")]
    HostKey { node: String, address: String, reason: String },
    #[error("failed to log in to node `{node}` ({address}): {reason}")]
    Auth { node: String, address: String, reason: String },
    #[error("failed to connect to node `{node}` ({address}): no answer within {after}")]
    Timeout { node: String, address: String, after: String },
    #[error("lost the connection to node `{node}`: {reason}")]
    Session { node: String, reason: String },
    #[error("stopped `{command}` on node `{node}`: the task was cancelled")]
    Cancelled { node: String, command: String },
    #[error("failed to start `{command}` on node `{node}`: {source}")]
    Spawn { node: String, command: String, source: std::io::Error },
    #[error("failed to {action} {path} on node `{node}`: {reason}")]
    File { node: String, action: &'static str, path: String, reason: String },
}

/// Which output stream of a command a piece of live output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipe {
    Stdout,
    Stderr,
}

/// Sees a command's output while the command runs: each piece that is kept (up to
/// the output limit), as it arrives. `None` when nobody follows the command live.
pub type Watch<'a> = Option<&'a (dyn Fn(Pipe, &[u8]) + Sync)>;

/// A node's way in. Shared by every task running on the node.
pub enum Connection {
    Local(LocalConnection),
    Ssh(Box<SshConnection>),
}

/// Each call blocks its thread until the node answers; a caller on a script thread
/// hands its place to another script first (`task::scripts::blocking`).
impl Connection {
    /// Runs `command`; when `cancel` fires, stops waiting for it (a local command is
    /// killed with its process group; a remote one loses its channel). `watch` sees
    /// the output as it comes.
    pub fn exec(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        cancel: &CancellationToken,
        watch: Watch,
    ) -> Result<CommandOutput, SshError> {
        match self {
            Connection::Local(local) => local.exec(command, stdin, cancel, watch),
            Connection::Ssh(ssh) => ssh.exec(command, stdin, cancel, watch),
        }
    }

    /// Like `exec`, but always in a channel of its own, never through the node's
    /// kept shell: for input that should not pass through a shell's script (a
    /// password for sudo).
    pub fn exec_alone(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        cancel: &CancellationToken,
        watch: Watch,
    ) -> Result<CommandOutput, SshError> {
        match self {
            Connection::Local(local) => local.exec(command, stdin, cancel, watch),
            Connection::Ssh(ssh) => ssh.exec_alone(command, stdin, cancel, watch),
        }
    }

    /// Writes `bytes` to `path` on the node, replacing it; `mode` as in chmod.
    pub fn write(&self, path: &str, bytes: &[u8], mode: Option<u32>) -> Result<(), SshError> {
        match self {
            Connection::Local(local) => local.write(path, bytes, mode),
            Connection::Ssh(ssh) => ssh.write(path, bytes, mode),
        }
    }

    /// Copies a file of the Loom host to `path` on the node, streaming it.
    pub fn upload(&self, local: &Path, path: &str, mode: Option<u32>) -> Result<(), SshError> {
        match self {
            Connection::Local(connection) => connection.upload(local, path, mode),
            Connection::Ssh(ssh) => ssh.upload(local, path, mode),
        }
    }

    pub fn read(&self, path: &str) -> Result<Vec<u8>, SshError> {
        match self {
            Connection::Local(local) => local.read(path),
            Connection::Ssh(ssh) => ssh.read(path),
        }
    }

    /// Copies `path` on the node to a file of the Loom host, streaming it.
    pub fn download(&self, path: &str, local: &Path) -> Result<u64, SshError> {
        match self {
            Connection::Local(connection) => connection.download(path, local),
            Connection::Ssh(ssh) => ssh.download(path, local),
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Connection::Local(_) => f.write_str("Connection::Local"),
            Connection::Ssh(ssh) => write!(f, "Connection::Ssh({})", ssh.node().name),
        }
    }
}

/// The most `read` returns; larger files are copied to disk with `download`.
pub const READ_LIMIT: usize = 64 << 20;

pub(crate) fn too_large(node: &str, path: &str) -> SshError {
    SshError::File {
        node: node.to_string(),
        action: "read",
        path: path.to_string(),
        reason: format!(
            "it is larger than {} MiB, the most a read returns; copy it to the Loom host with ssh.get(remote, local) instead",
            READ_LIMIT >> 20
        ),
    }
}

/// Reads a stream to its end, keeping at most `limit` bytes; `seen` sees each piece
/// kept as it comes.
pub(crate) async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(
    stream: Option<R>,
    limit: usize,
    seen: impl Fn(&[u8]),
) -> Vec<u8> {
    let Some(mut stream) = stream else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buffer = vec![0u8; 16 << 10];
    loop {
        match tokio::io::AsyncReadExt::read(&mut stream, &mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                let piece = &buffer[..n.min(room)];
                if !piece.is_empty() {
                    seen(piece);
                }
                kept.extend_from_slice(piece);
            }
        }
    }
    kept
}

/// What `read_bounded` and a shell's streams tell `watch` of one pipe's pieces.
pub(crate) fn watched(watch: Watch<'_>, pipe: Pipe) -> impl Fn(&[u8]) + '_ {
    move |piece| {
        if let Some(watch) = watch {
            watch(pipe, piece);
        }
    }
}

/// Reads a stream until its end or until `cap` bytes, whichever comes first; the
/// rest is left unread (for `read`, which refuses anything larger).
pub(crate) async fn read_up_to<R: tokio::io::AsyncRead + Unpin>(stream: Option<R>, cap: usize) -> Vec<u8> {
    let Some(stream) = stream else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let _ =
        tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::AsyncReadExt::take(stream, cap as u64), &mut kept).await;
    kept
}

/// Lifts the soft limit of open files to the hard one: each node's connection takes
/// a few descriptors, and the usual soft limit (1024) runs out at a few hundred nodes.
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Quotes `text` for a POSIX shell so it arrives as one literal word.
pub fn shell_quote(text: &str) -> String {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c)) {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_hostile_text_literal() {
        assert_eq!(shell_quote("plain/path-1.txt"), "plain/path-1.txt");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's; $(rm -rf /)"), r"'it'\''s; $(rm -rf /)'");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let local = LocalConnection::new("t", runtime.handle().clone(), 1 << 20);
        let command = format!("printf %s {}", shell_quote("x'; echo $(id) `id` \"\\"));
        let out = local.exec(&command, None, &CancellationToken::new(), None).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "x'; echo $(id) `id` \"\\");
    }
    #[test]
    fn a_local_command_keeps_at_most_the_output_limit_and_still_ends() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let local = LocalConnection::new("t", runtime.handle().clone(), 1000);
        let out = local.exec(
            "yes loom | head -c 5000000; yes err | head -c 5000000 >&2; exit 3",
            None,
            &CancellationToken::new(),
            None,
        );
        let out = out.unwrap();
        assert_eq!((out.stdout.len(), out.stderr.len(), out.code), (1000, 1000, Some(3)));
        assert!(out.stdout.starts_with(b"loom\nloom\n"));
    }
}
