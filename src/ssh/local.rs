//! `local: true` nodes: commands run on the Loom host through `/bin/sh -c`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::{CommandOutput, SshError};

pub struct LocalConnection {
    node: String,
}

impl LocalConnection {
    pub fn new(node: &str) -> LocalConnection {
        LocalConnection {
            node: node.to_string(),
        }
    }

    pub fn exec(&self, command: &str, stdin: Option<&[u8]>) -> Result<CommandOutput, SshError> {
        let spawn_error = |source| SshError::Spawn {
            node: self.node.clone(),
            command: command.to_string(),
            source,
        };
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A command that does not read its input closes the pipe early; that is fine.
            let _ = pipe.write_all(bytes);
        }
        let output = child.wait_with_output().map_err(spawn_error)?;
        Ok(CommandOutput {
            stdout: output.stdout,
            stderr: output.stderr,
            code: output.status.code(),
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

    fn file_error(&self, action: &'static str, path: &str, reason: std::io::Error) -> SshError {
        SshError::File {
            node: self.node.clone(),
            action,
            path: path.to_string(),
            reason: reason.to_string(),
        }
    }

    fn set_mode(&self, path: &str, mode: Option<u32>) -> Result<(), SshError> {
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|reason| self.file_error("write", path, reason))?;
        }
        Ok(())
    }

    pub fn read(&self, path: &str) -> Result<Vec<u8>, SshError> {
        std::fs::read(path).map_err(|reason| self.file_error("read", path, reason))
    }
}
