//! `local: true` nodes: commands run on the Loom host through `/bin/sh -c`.
//!
//! Each command runs in its own process group, so a cancelled command is killed with
//! everything it started.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::{CommandOutput, Pipe, READ_LIMIT, SshError, Watch, read_bounded, too_large, watched};

pub struct LocalConnection {
    node: String,
    runtime: Handle,
    /// Bytes of stdout and of stderr kept per command, as over SSH.
    output_limit: usize,
}

impl LocalConnection {
    pub fn new(node: &str, runtime: Handle, output_limit: usize) -> LocalConnection {
        LocalConnection { node: node.to_string(), runtime, output_limit }
    }

    pub fn exec(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        cancel: &CancellationToken,
        watch: Watch,
    ) -> Result<CommandOutput, SshError> {
        let spawn_error = |source| SshError::Spawn { node: self.node.clone(), command: command.to_string(), source };
        self.runtime.block_on(async {
            let mut child = tokio::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(command)
                .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .map_err(spawn_error)?;
            let group = child.id();
            if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
                let bytes = bytes.to_vec();
                // A command that does not read its input closes the pipe early; fine.
                tokio::spawn(async move {
                    let _ = pipe.write_all(&bytes).await;
                });
            }
            let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
            let finished = async {
                let (stdout, stderr) = tokio::join!(
                    read_bounded(stdout, self.output_limit, watched(watch, Pipe::Stdout)),
                    read_bounded(stderr, self.output_limit, watched(watch, Pipe::Stderr))
                );
                let status = child.wait().await.map_err(spawn_error)?;
                Ok(CommandOutput { stdout, stderr, code: status.code() })
            };
            tokio::select! {
                output = finished => output,
                _ = cancel.cancelled() => {
                    if let Some(group) = group {
                        // SAFETY: kill(2) with a negative pid signals that process group;
                        // it has no memory effects.
                        unsafe { libc::kill(-(group as i32), libc::SIGKILL) };
                    }
                    Err(SshError::Cancelled { node: self.node.clone(), command: command.to_string() })
                }
            }
        })
    }

    pub fn write(&self, path: &str, bytes: &[u8], mode: Option<u32>) -> Result<(), SshError> {
        std::fs::write(path, bytes).map_err(|reason| self.file_error("write", path, reason))?;
        self.set_mode(path, mode)
    }

    pub fn upload(&self, local: &Path, path: &str, mode: Option<u32>) -> Result<(), SshError> {
        std::fs::copy(local, path).map_err(|reason| self.file_error("write", path, reason))?;
        self.set_mode(path, mode)
    }

    pub fn download(&self, path: &str, local: &Path) -> Result<u64, SshError> {
        std::fs::copy(path, local).map_err(|reason| self.file_error("download", path, reason))
    }

    pub fn read(&self, path: &str) -> Result<Vec<u8>, SshError> {
        use std::io::Read;
        let file = std::fs::File::open(path).map_err(|reason| self.file_error("read", path, reason))?;
        let mut bytes = Vec::new();
        file.take(READ_LIMIT as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|reason| self.file_error("read", path, reason))?;
        if bytes.len() > READ_LIMIT {
            return Err(too_large(&self.node, path));
        }
        Ok(bytes)
    }

    fn file_error(&self, action: &'static str, path: &str, reason: std::io::Error) -> SshError {
        SshError::File { node: self.node.clone(), action, path: path.to_string(), reason: reason.to_string() }
    }

    fn set_mode(&self, path: &str, mode: Option<u32>) -> Result<(), SshError> {
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|reason| self.file_error("write", path, reason))?;
        }
        Ok(())
    }
}
