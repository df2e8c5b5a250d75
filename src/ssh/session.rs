//! A node reached over SSH: commands and file transfers through its OpenSSH master.
//!
//! Commands go over the master's control socket with the multiplexing protocol
//! (`openssh`'s native-mux), so a command on a warm connection costs no new process
//! on the Loom host. Commands, small inputs (`ssh.put` of text) and reads travel
//! through a persistent shell on the node (`shell.rs`), so they cost no new channel
//! or login shell either; where a shell cannot carry one (NUL bytes, large input, a
//! login shell that is not POSIX, all of the node's shells busy, a shell that died
//! before the command started) the command takes a channel of its own, as streams
//! (uploads and downloads of files) always do. Output is read concurrently with
//! stdin being written (no pipe deadlocks) and is bounded: past the limit it is
//! drained and dropped. The methods are synchronous for task scripts; they drive the
//! async side with the runtime handle captured when the connection was opened.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use openssh::{Session, Stdio};
use tokio::io::AsyncWriteExt;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::master::{self, Master};
use super::settings::SshSettings;
use super::shell::{self, Lease, OpenError, Ran, Shell, Shells};
use super::{
    CommandOutput, Pipe, READ_LIMIT, SshError, Watch, read_bounded, read_up_to, shell_quote, too_large, watched,
};
use crate::config::Node;
use crate::metrics::Metrics;

pub struct SshConnection {
    node: Arc<Node>,
    settings: SshSettings,
    /// Where this connection's control folders are made.
    control: PathBuf,
    /// Replaced whole when a dead master is reopened; dropping a session stops its
    /// master and removes its control folder.
    session: RwLock<Arc<Session>>,
    reopening: tokio::sync::Mutex<()>,
    /// The node's persistent shells, on the current master.
    shells: Arc<Shells>,
    runtime: Handle,
    output_limit: usize,
    /// Where reconnects are counted (the daemon's; none for `loom run`).
    metrics: Option<Arc<Metrics>>,
}

impl Drop for SshConnection {
    /// Shells hold their master's session: they go first, so that it stops.
    fn drop(&mut self) {
        self.shells.clear();
    }
}

impl SshConnection {
    pub(crate) async fn open(
        node: Arc<Node>,
        settings: &SshSettings,
        output_limit: usize,
        control: &Path,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<SshConnection, SshError> {
        let Master { dir } = master::start(&node, settings, control).await?;
        Ok(SshConnection {
            node,
            settings: settings.clone(),
            control: control.to_path_buf(),
            session: RwLock::new(Arc::new(Session::new_native_mux(dir))),
            reopening: tokio::sync::Mutex::new(()),
            shells: Shells::new(&settings.control_persist),
            runtime: Handle::current(),
            output_limit,
            metrics,
        })
    }

    pub(crate) fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Whether the master is there to take commands (its control socket exists).
    pub(crate) fn is_open(&self) -> bool {
        self.current().control_socket().exists()
    }

    fn current(&self) -> Arc<Session> {
        Arc::clone(&self.session.read().expect("session lock"))
    }

    /// Starts a new master in place of `failed`, unless another task already did.
    async fn reopen(&self, failed: &Arc<Session>) -> Result<(), SshError> {
        let _one_at_a_time = self.reopening.lock().await;
        if !Arc::ptr_eq(&self.current(), failed) {
            return Ok(());
        }
        tracing::info!(node = %self.node.name, "ssh master is gone; reconnecting");
        let Master { dir } = master::start(&self.node, &self.settings, &self.control).await?;
        *self.session.write().expect("session lock") = Arc::new(Session::new_native_mux(dir));
        self.shells.clear();
        if let Some(metrics) = &self.metrics {
            metrics.ssh_reconnected(&self.node.name);
        }
        Ok(())
    }

    /// Runs `command` through one of the node's shells; `None` when no shell can
    /// carry it and it must take a channel of its own (it has not run). `hard_cap`
    /// is `read`'s: stdout is cut there and the command abandoned.
    async fn exec_shell(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        limit: usize,
        hard_cap: Option<usize>,
        watch: Watch<'_>,
    ) -> Result<Option<CommandOutput>, SshError> {
        if !shell::fits(command, stdin) {
            return Ok(None);
        }
        let Some((lease, mut shell)) = self.shell().await else {
            return Ok(None);
        };
        match shell.run(command, stdin, limit, hard_cap, watch).await {
            Ran::Done(output) => {
                lease.keep(shell);
                Ok(Some(output))
            }
            Ran::NotStarted => {
                tracing::debug!(node = %self.node.name, "shell gone before the command started; using a channel");
                Ok(None)
            }
            Ran::Died { stdout, stderr } => {
                let code = shell.exit_code().await.map_err(|e| self.session_error(e))?;
                Ok(Some(CommandOutput { stdout, stderr, code }))
            }
            // The caller sees the cap reached (`read` refuses the file).
            Ran::TooLarge { stdout } => Ok(Some(CommandOutput { stdout, stderr: Vec::new(), code: None })),
        }
    }

    /// `command` through a shell, else in a channel of its own.
    async fn exec_any(&self, command: &str, stdin: Option<&[u8]>, watch: Watch<'_>) -> Result<CommandOutput, SshError> {
        match self.exec_shell(command, stdin, self.output_limit, None, watch).await? {
            Some(output) => Ok(output),
            None => self.exec_async(command, stdin, None, watch).await,
        }
    }

    /// A kept shell, or a new one; `None` when this command should take a channel.
    async fn shell(&self) -> Option<(Lease, Shell)> {
        let session = self.current();
        let mut lease = self.shells.lease(&session)?;
        if let Some(shell) = lease.shell.take() {
            return Some((lease, shell));
        }
        let patience = self.settings.connect_timeout;
        let opened = match Shell::open(Arc::clone(&session), patience).await {
            Err(OpenError::Spawn(err)) if master_gone(&err) => {
                self.reopen(&session).await.ok()?;
                let session = self.current();
                drop(lease);
                lease = self.shells.lease(&session)?;
                Shell::open(session, patience).await
            }
            other => other,
        };
        match opened {
            Ok(shell) => Some((lease, shell)),
            Err(OpenError::NotPosix(name)) => {
                tracing::info!(node = %self.node.name, shell = %name, "the login shell is not POSIX sh; every command takes a channel of its own");
                self.shells.give_up();
                None
            }
            Err(OpenError::Broken(reason)) => {
                tracing::warn!(node = %self.node.name, %reason, "no persistent shell; every command takes a channel of its own");
                self.shells.give_up();
                None
            }
            Err(OpenError::Spawn(err)) => {
                tracing::debug!(node = %self.node.name, error = %err, "could not open a shell; using a channel");
                None
            }
        }
    }

    fn session_error(&self, err: openssh::Error) -> SshError {
        SshError::Session { node: self.node.name.clone(), reason: err.to_string() }
    }

    /// Runs `command` on the node. A master found dead before the command could
    /// start (its socket refuses) is reopened once and the command started again;
    /// that is how a master that died between fires is replaced, without asking the
    /// master whether it lives before every task.
    pub(crate) async fn exec_async(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        upload: Option<&Path>,
        watch: Watch<'_>,
    ) -> Result<CommandOutput, SshError> {
        let session = self.current();
        match self.exec_on(&session, command, stdin, upload, watch).await {
            Err(Attempt::MasterGone(_)) => {
                self.reopen(&session).await?;
                let session = self.current();
                self.exec_on(&session, command, stdin, upload, watch).await.map_err(|a| self.attempt_error(a))
            }
            other => other.map_err(|a| self.attempt_error(a)),
        }
    }

    fn attempt_error(&self, attempt: Attempt) -> SshError {
        match attempt {
            Attempt::MasterGone(err) => self.session_error(err),
            Attempt::Failed(err) => err,
        }
    }

    async fn exec_on(
        &self,
        session: &Session,
        command: &str,
        stdin: Option<&[u8]>,
        upload: Option<&Path>,
        watch: Watch<'_>,
    ) -> Result<CommandOutput, Attempt> {
        let mut builder = session.raw_command(command);
        let has_input = stdin.is_some() || upload.is_some();
        builder
            .stdin(if has_input { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match builder.spawn().await {
            Ok(child) => child,
            Err(err) if master_gone(&err) => return Err(Attempt::MasterGone(err)),
            Err(err) => return Err(Attempt::Failed(self.session_error(err))),
        };
        let mut input = child.stdin().take();
        let stdout = child.stdout().take();
        let stderr = child.stderr().take();
        let node = self.node.name.clone();
        let write = async move {
            let Some(pipe) = input.as_mut() else {
                return Ok(());
            };
            if let Some(bytes) = stdin {
                pipe.write_all(bytes).await?;
            }
            if let Some(path) = upload {
                let mut file = tokio::fs::File::open(path).await?;
                tokio::io::copy(&mut file, pipe).await?;
            }
            pipe.shutdown().await?;
            drop(input);
            Ok::<(), std::io::Error>(())
        };
        let limit = self.output_limit;
        let (written, out, err) = tokio::join!(
            write,
            read_bounded(stdout, limit, watched(watch, Pipe::Stdout)),
            read_bounded(stderr, limit, watched(watch, Pipe::Stderr))
        );
        let status = child.wait().await.map_err(|e| Attempt::Failed(self.session_error(e)))?;
        if let Err(e) = written {
            // A command that exits without reading its input breaks the pipe: not an
            // error unless the command itself failed.
            if !status.success() {
                return Err(Attempt::Failed(SshError::File {
                    node,
                    action: "send input to",
                    path: command.to_string(),
                    reason: e.to_string(),
                }));
            }
        }
        Ok(CommandOutput { stdout: out, stderr: err, code: status.code() })
    }

    pub fn exec(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        cancel: &CancellationToken,
        watch: Watch,
    ) -> Result<CommandOutput, SshError> {
        self.cancellable(command, cancel, self.exec_any(command, stdin, watch))
    }

    /// `exec` in a channel of its own, never through a shell.
    pub fn exec_alone(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        cancel: &CancellationToken,
        watch: Watch,
    ) -> Result<CommandOutput, SshError> {
        self.cancellable(command, cancel, self.exec_async(command, stdin, None, watch))
    }

    /// Drives `work` until it ends or `cancel` fires. Dropping the command closes
    /// its channel on the master, or (`shell.rs`) kills it with its shell.
    fn cancellable(
        &self,
        command: &str,
        cancel: &CancellationToken,
        work: impl Future<Output = Result<CommandOutput, SshError>>,
    ) -> Result<CommandOutput, SshError> {
        self.runtime.block_on(async {
            tokio::select! {
                result = work => result,
                _ = cancel.cancelled() => Err(SshError::Cancelled { node: self.node.name.clone(), command: command.to_string() }),
            }
        })
    }

    fn check(&self, action: &'static str, path: &str, output: CommandOutput) -> Result<CommandOutput, SshError> {
        if output.code == Some(0) {
            return Ok(output);
        }
        Err(SshError::File {
            node: self.node.name.clone(),
            action,
            path: path.to_string(),
            reason: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }

    fn write_command(path: &str, mode: Option<u32>) -> String {
        let quoted = shell_quote(path);
        match mode {
            Some(mode) => format!("cat > {quoted} && chmod {mode:o} {quoted}"),
            None => format!("cat > {quoted}"),
        }
    }

    pub fn write(&self, path: &str, bytes: &[u8], mode: Option<u32>) -> Result<(), SshError> {
        let command = Self::write_command(path, mode);
        let output = self.runtime.block_on(self.exec_any(&command, Some(bytes), None))?;
        self.check("write", path, output).map(drop)
    }

    /// Streams a local file to the node.
    pub fn upload(&self, local: &Path, path: &str, mode: Option<u32>) -> Result<(), SshError> {
        let command = Self::write_command(path, mode);
        let output = self.runtime.block_on(self.exec_async(&command, None, Some(local), None))?;
        self.check("write", path, output).map(drop)
    }

    pub fn read(&self, path: &str) -> Result<Vec<u8>, SshError> {
        let command = format!("cat {}", shell_quote(path));
        self.runtime.block_on(async {
            let cap = READ_LIMIT + 1;
            let output = match self.exec_shell(&command, None, cap, Some(cap), None).await? {
                Some(output) => output,
                None => {
                    let session = self.current();
                    let mut builder = session.raw_command(&command);
                    builder.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
                    let mut child = builder.spawn().await.map_err(|e| self.session_error(e))?;
                    let (stdout, stderr) = (child.stdout().take(), child.stderr().take());
                    let (stdout, stderr) =
                        tokio::join!(read_up_to(stdout, cap), read_bounded(stderr, 64 << 10, |_| {}));
                    if stdout.len() > READ_LIMIT {
                        return Err(too_large(&self.node.name, path));
                    }
                    let status = child.wait().await.map_err(|e| self.session_error(e))?;
                    CommandOutput { stdout, stderr, code: status.code() }
                }
            };
            // Past the cap the command was dropped (its channel closed, or its
            // shell's process group killed): the rest is never sent.
            if output.stdout.len() > READ_LIMIT {
                return Err(too_large(&self.node.name, path));
            }
            self.check("read", path, output).map(|o| o.stdout)
        })
    }

    /// Streams a file from the node into a local file.
    pub fn download(&self, path: &str, local: &Path) -> Result<u64, SshError> {
        self.runtime.block_on(async {
            let fail = |reason: String| SshError::File {
                node: self.node.name.clone(),
                action: "download",
                path: path.to_string(),
                reason,
            };
            let session = self.current();
            let mut builder = session.raw_command(format!("cat {}", shell_quote(path)));
            builder.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = builder.spawn().await.map_err(|e| self.session_error(e))?;
            let mut stdout = child.stdout().take().expect("stdout is piped");
            let stderr = child.stderr().take();
            let mut file = tokio::fs::File::create(local)
                .await
                .map_err(|e| fail(format!("failed to create local file {}: {e}", local.display())))?;
            let (copied, err) =
                tokio::join!(tokio::io::copy(&mut stdout, &mut file), read_bounded(stderr, 64 << 10, |_| {}));
            let status = child.wait().await.map_err(|e| self.session_error(e))?;
            if !status.success() {
                let _ = tokio::fs::remove_file(local).await;
                return Err(fail(String::from_utf8_lossy(&err).trim().to_string()));
            }
            file.flush().await.map_err(|e| fail(e.to_string()))?;
            copied.map_err(|e| fail(e.to_string()))
        })
    }
}

/// How one try to run a command ended, when it did not.
enum Attempt {
    /// The master's socket refused: the command never started.
    MasterGone(openssh::Error),
    Failed(SshError),
}

/// Whether `err`, met while starting a command, says the master's control socket
/// is not there or refuses (openssh reports both as `Disconnected`).
fn master_gone(err: &openssh::Error) -> bool {
    if matches!(err, openssh::Error::Disconnected) {
        return true;
    }
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(error) = current {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && matches!(io.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound)
        {
            return true;
        }
        current = error.source();
    }
    false
}
