//! A node's persistent remote shells: commands fed, framed, to a shell kept open on
//! the node's master, so that a command costs no new SSH channel and no new login
//! shell — only a subshell (a `fork`) on the node.
//!
//! A shell is the node's login shell itself (when it reads POSIX `sh` and has
//! `printf` built in: sh, bash, dash, ash, ksh, zsh, yash), started over one channel
//! and reading its commands from that channel's stdin. Each command is sent as one frame:
//! ```text
//! printf 'NONCE:ID:go\n'; ( eval 'COMMAND' ) </dev/null; set -- $?;
//! printf 'NONCE:ID\n' >&2; printf 'NONCE:ID:%s\n' "$1"; set --
//! ```
//! The command runs in a subshell of its own (`cd`, variables, `exit`, `set -e`,
//! traps and `exec` stay there), as literal text that `eval` parses (a syntax error
//! fails that command, not the shell), with stdin `/dev/null` or the given input
//! (`printf %s 'INPUT' |`, a builtin, so the input is never on a command line).
//! Its stdout and stderr are the channel's own, up to end markers carrying a random
//! per-shell nonce; the marker follows the last byte of output directly, so output
//! without a trailing newline, and any byte but the marker, comes back exact. The
//! `go` marker says that the command started: a shell found dead before it is
//! replaced and the command sent elsewhere, never run twice.
//!
//! What it does not do: a node's first command, streams (`ssh.get`, uploads of local
//! files), input with NUL bytes or over `MAX_INPUT`, and commands with NUL bytes take
//! a channel of their own (`session.rs` decides; opening a shell costs a round trip
//! that only a node's later commands pay back). A command's background process that keeps the
//! command's stdout open writes into the shell's stream after the command ended:
//! its later output shows in the next command's output (a channel would instead
//! wait for it to close). A command killed by a signal reports the shell's
//! `128 + N`, as `sh -c` reports a killed child.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use openssh::{Child, ChildStderr, ChildStdin, ChildStdout, Session, Stdio};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{CommandOutput, Pipe, Watch, watched};

/// Input larger than this takes a channel: the frame carries it as literal text
/// (bash reads a script from a pipe one byte at a time).
pub(crate) const MAX_INPUT: usize = 64 << 10;
/// Shells kept per node: one per command running at once on the node; a command
/// beyond them takes a channel of its own rather than wait for a shell.
pub(crate) const MAX_SHELLS: usize = 4;
/// The longest an unused shell is kept (shorter if `control_persist` is): an open
/// shell keeps its master from counting as idle.
pub(crate) const MAX_IDLE: Duration = Duration::from_secs(60);

/// Started by the login shell (any shell can run this line): becomes the login
/// shell again, reading commands from stdin, if it reads POSIX sh; else says so.
const BOOTSTRAP: &str = "exec /bin/sh -c 'case ${SHELL##*/} in sh|bash|dash|ash|ksh|ksh93|zsh|yash) exec \"$SHELL\";; esac; echo \"loom-shell: not posix: ${SHELL##*/}\"'";

/// Whether a command and its input can travel through a shell.
pub(crate) fn fits(command: &str, input: Option<&[u8]>) -> bool {
    !command.contains('\0') && input.is_none_or(|bytes| bytes.len() <= MAX_INPUT && !bytes.contains(&0))
}

/// Why a shell could not be opened.
pub(crate) enum OpenError {
    /// The channel could not be started (the master may be gone).
    Spawn(openssh::Error),
    /// The login shell does not read POSIX sh: this node takes channels.
    NotPosix(String),
    /// The shell did not answer as expected (or not in time).
    Broken(String),
}

/// How a command sent to a shell ended.
pub(crate) enum Ran {
    /// The end markers came: the shell is ready for the next command.
    Done(CommandOutput),
    /// The shell was gone before the command started: it never ran.
    NotStarted,
    /// The shell ended while the command ran (it killed or replaced its own shell,
    /// or the connection dropped); what it printed so far. The shell is done for.
    Died { stdout: Vec<u8>, stderr: Vec<u8> },
    /// Stdout passed the caller's hard cap (`ssh.read` of a file too large): what was
    /// kept (the cap's worth). The shell is abandoned with the command.
    TooLarge { stdout: Vec<u8> },
}

pub(crate) struct Shell {
    /// `None` once waited for.
    child: Option<Child<Arc<Session>>>,
    stdin: ChildStdin,
    stdout: Stream<ChildStdout>,
    stderr: Stream<ChildStderr>,
    nonce: String,
    next: u64,
    /// The shell's pid on the node, which leads the process group of everything
    /// its commands start (sshd makes each session a new process group).
    pid: u32,
    /// The master this shell's channel runs on.
    session: Arc<Session>,
    idle_since: Instant,
    /// A command was sent and its end markers not yet read: dropping the shell now
    /// kills the command's process group.
    in_command: bool,
}

impl Shell {
    /// Opens a channel on `session` running the login shell, and waits (at most
    /// `patience`) for it to answer.
    pub(crate) async fn open(session: Arc<Session>, patience: Duration) -> Result<Shell, OpenError> {
        let mut command = Session::to_raw_command(Arc::clone(&session), BOOTSTRAP);
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().await.map_err(OpenError::Spawn)?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin().take(), child.stdout().take(), child.stderr().take())
        else {
            return Err(OpenError::Broken("the shell's pipes are missing".into()));
        };
        let nonce = nonce();
        let mut shell = Shell {
            child: Some(child),
            stdin,
            stdout: Stream::new(stdout),
            stderr: Stream::new(stderr),
            nonce,
            next: 0,
            pid: 0,
            session,
            idle_since: Instant::now(),
            in_command: false,
        };
        let hello = format!("echo \"{}:ready:$$\"\n", shell.nonce);
        let ready = format!("{}:ready:", shell.nonce);
        let answer = async {
            // A shell that is not POSIX has exited already: writing may fail, and
            // what it printed says why.
            let _ = shell.stdin.write_all(hello.as_bytes()).await;
            let _ = shell.stdin.flush().await;
            let mut skipped = Vec::new();
            match shell.stdout.until(ready.as_bytes(), &mut skipped, 4096, false, |_| {}).await {
                Until::Found => {}
                _ => {
                    let text = String::from_utf8_lossy(&skipped);
                    return Err(match text.split_once("loom-shell: not posix: ") {
                        Some((_, name)) => OpenError::NotPosix(name.trim().to_string()),
                        None => OpenError::Broken(format!("the shell ended before it answered: {}", text.trim())),
                    });
                }
            }
            let mut line = Vec::new();
            match shell.stdout.until(b"\n", &mut line, 64, false, |_| {}).await {
                Until::Found => String::from_utf8_lossy(&line)
                    .parse::<u32>()
                    .map_err(|_| OpenError::Broken("the shell gave no pid".into())),
                _ => Err(OpenError::Broken("the shell ended before it answered".into())),
            }
        };
        let pid = match tokio::time::timeout(patience, answer).await {
            Ok(answer) => answer?,
            Err(_) => {
                return Err(OpenError::Broken(format!("no answer within {}", humantime::format_duration(patience))));
            }
        };
        shell.pid = pid;
        Ok(shell)
    }

    /// Runs one command; `hard_cap` (for `ssh.read`) abandons a command whose stdout
    /// goes past it, where `limit` only stops keeping output.
    pub(crate) async fn run(
        &mut self,
        command: &str,
        input: Option<&[u8]>,
        limit: usize,
        hard_cap: Option<usize>,
        watch: Watch<'_>,
    ) -> Ran {
        self.next += 1;
        let id = self.next;
        let nonce = &self.nonce;
        let mut frame = format!("printf '{nonce}:{id}:go\\n'; ").into_bytes();
        if let Some(bytes) = input {
            frame.extend_from_slice(b"printf %s ");
            frame.extend(quote_bytes(bytes));
            frame.extend_from_slice(b" | ");
        }
        frame.extend_from_slice(b"( eval ");
        frame.extend(quote_bytes(command.as_bytes()));
        frame.extend_from_slice(b" )");
        if input.is_none() {
            frame.extend_from_slice(b" </dev/null");
        }
        frame.extend(
            format!("; set -- $?; printf '{nonce}:{id}\\n' >&2; printf '{nonce}:{id}:%s\\n' \"$1\"; set --\n")
                .into_bytes(),
        );
        self.in_command = true;
        if self.stdin.write_all(&frame).await.is_err() || self.stdin.flush().await.is_err() {
            self.in_command = false;
            return Ran::NotStarted;
        }
        let go = format!("{nonce}:{id}:go\n");
        let mut stray = Vec::new();
        if self.stdout.until(go.as_bytes(), &mut stray, 0, false, |_| {}).await != Until::Found {
            self.in_command = false;
            return Ran::NotStarted;
        }
        let (out_marker, err_marker) = (format!("{nonce}:{id}:"), format!("{nonce}:{id}\n"));
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let (out_end, err_end, over) = {
            let out = self.stdout.until(
                out_marker.as_bytes(),
                &mut stdout,
                hard_cap.unwrap_or(limit),
                hard_cap.is_some(),
                watched(watch, Pipe::Stdout),
            );
            let err = self.stderr.until(err_marker.as_bytes(), &mut stderr, limit, false, watched(watch, Pipe::Stderr));
            tokio::pin!(out, err);
            let (mut out_end, mut err_end) = (None, None);
            // Both streams at once (a full pipe of one would stall the channel), and
            // stdout past a hard cap ends the wait there.
            while out_end.is_none() || err_end.is_none() {
                tokio::select! {
                    end = &mut out, if out_end.is_none() => {
                        out_end = Some(end);
                        if end == Until::Over {
                            break;
                        }
                    }
                    end = &mut err, if err_end.is_none() => err_end = Some(end),
                }
            }
            (out_end, err_end, out_end == Some(Until::Over))
        };
        if over {
            return Ran::TooLarge { stdout };
        }
        let code = match (out_end, err_end) {
            (Some(Until::Found), Some(Until::Found)) => {
                let mut line = Vec::new();
                match self.stdout.until(b"\n", &mut line, 16, false, |_| {}).await {
                    Until::Found => String::from_utf8_lossy(&line).parse().ok(),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some(code) = code else {
            return Ran::Died { stdout, stderr };
        };
        self.in_command = false;
        self.idle_since = Instant::now();
        Ran::Done(CommandOutput { stdout, stderr, code: Some(code) })
    }

    /// The exit code of a shell that died: `None` when a signal killed it (`kill
    /// $$`), as a command killed in a channel of its own reports.
    pub(crate) async fn exit_code(mut self) -> Result<Option<i32>, openssh::Error> {
        self.in_command = false;
        let child = self.child.take().expect("a shell is waited for once");
        match child.wait().await {
            Ok(status) => Ok(status.code()),
            Err(openssh::Error::RemoteProcessTerminated) => Ok(None),
            // native-mux reports exit code 127 as an error of its own.
            Err(openssh::Error::Remote(err)) if err.kind() == std::io::ErrorKind::NotFound => Ok(Some(127)),
            Err(err) => Err(err),
        }
    }
}

impl Drop for Shell {
    /// Closing the channel ends an idle shell (its stdin ends). A shell dropped
    /// mid-command (cancelled, timed out, over a cap) also has the command's process
    /// group killed, over a channel of its own, in the background.
    fn drop(&mut self) {
        if !self.in_command || self.pid <= 1 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let session = Arc::clone(&self.session);
        let command = format!("kill -9 -{} 2>/dev/null; true", self.pid);
        runtime.spawn(async move {
            let mut kill = Session::to_raw_command(session, command);
            kill.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            let _ = tokio::time::timeout(Duration::from_secs(10), kill.status()).await;
        });
    }
}

/// A node's shells: the idle ones, and how many are lent out.
pub(crate) struct Shells {
    state: Mutex<State>,
    /// An idle shell is closed after this long.
    idle_limit: Duration,
}

#[derive(Default)]
struct State {
    idle: Vec<Shell>,
    lent: usize,
    /// Set once the node's login shell proved unusable: every command takes a channel.
    unusable: bool,
    reaper: bool,
    /// The node's first command took a channel: a shell is opened from the second
    /// on, so that a one-command run (`loom run` of `true`) costs no shell.
    first_taken: bool,
}

/// A place among a node's shells: a kept shell, or the right to open one. Giving it
/// back (`keep`) or dropping it frees the place.
pub(crate) struct Lease {
    shells: Arc<Shells>,
    pub(crate) shell: Option<Shell>,
}

impl Lease {
    /// Puts the shell back for the next command.
    pub(crate) fn keep(mut self, shell: Shell) {
        let mut state = self.shells.state.lock().expect("shells lock");
        state.idle.push(shell);
        self.shell = None;
        drop(state);
        self.shells.reap_later();
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.shells.state.lock().expect("shells lock");
        state.lent -= 1;
    }
}

impl Shells {
    pub(crate) fn new(control_persist: &str) -> Arc<Shells> {
        // `yes` (never) or `Ns`, as `config/settings.rs` writes it.
        let persist = control_persist.strip_suffix('s').and_then(|s| s.parse().ok()).map(Duration::from_secs);
        let idle_limit = persist.map_or(MAX_IDLE, |p| p.min(MAX_IDLE));
        Arc::new(Shells { state: Mutex::new(State::default()), idle_limit })
    }

    /// A kept shell on `session`, or the right to open one; `None` when the command
    /// takes a channel (the node's first, a login shell that is not POSIX, or all
    /// its shells busy).
    pub(crate) fn lease(self: &Arc<Self>, session: &Arc<Session>) -> Option<Lease> {
        let mut state = self.state.lock().expect("shells lock");
        if state.unusable || !std::mem::replace(&mut state.first_taken, true) {
            return None;
        }
        // Shells of a master that was replaced went with it.
        state.idle.retain(|shell| Arc::ptr_eq(&shell.session, session));
        let shell = state.idle.pop();
        if shell.is_none() && state.lent + state.idle.len() >= MAX_SHELLS {
            return None;
        }
        state.lent += 1;
        Some(Lease { shells: Arc::clone(self), shell })
    }

    pub(crate) fn give_up(&self) {
        let mut state = self.state.lock().expect("shells lock");
        state.unusable = true;
        state.idle.clear();
    }

    /// Closes every kept shell (the connection is closing).
    pub(crate) fn clear(&self) {
        self.state.lock().expect("shells lock").idle.clear();
    }

    /// Makes sure a task closes shells left idle for `idle_limit`.
    fn reap_later(self: &Arc<Self>) {
        let mut state = self.state.lock().expect("shells lock");
        if state.reaper {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        state.reaper = true;
        let weak: Weak<Shells> = Arc::downgrade(self);
        let idle_limit = self.idle_limit;
        runtime.spawn(async move {
            let mut wait = idle_limit;
            loop {
                tokio::time::sleep(wait).await;
                let Some(shells) = weak.upgrade() else { return };
                let mut state = shells.state.lock().expect("shells lock");
                state.idle.retain(|shell| shell.idle_since.elapsed() < idle_limit);
                // Sleep until the oldest kept shell's time is up; stop when none is kept.
                match state.idle.iter().map(|shell| shell.idle_since).min() {
                    Some(oldest) => wait = (oldest + idle_limit).saturating_duration_since(Instant::now()),
                    None => {
                        state.reaper = false;
                        return;
                    }
                }
            }
        });
    }
}

/// One of a shell's output streams, read up to markers.
struct Stream<R> {
    reader: R,
    /// Read but not yet handed out.
    pending: Vec<u8>,
}

/// How reading up to a marker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    Found,
    /// The stream ended first.
    Ended,
    /// More than the limit came and the caller asked to stop there.
    Over,
}

impl<R: AsyncRead + Unpin> Stream<R> {
    fn new(reader: R) -> Stream<R> {
        Stream { reader, pending: Vec::new() }
    }

    /// Hands out what comes before `marker` (keeping at most `limit` bytes of it in
    /// `kept` and dropping the rest, or stopping there with `stop_over`) and consumes
    /// the marker. When the stream ends first, `kept` has what came. `seen` sees each
    /// piece kept as soon as it is sure not to be the start of the marker.
    async fn until(
        &mut self,
        marker: &[u8],
        kept: &mut Vec<u8>,
        limit: usize,
        stop_over: bool,
        seen: impl Fn(&[u8]),
    ) -> Until {
        let finder = memchr::memmem::Finder::new(marker);
        // Whether bytes were dropped for want of room.
        let keep = |bytes: &[u8], kept: &mut Vec<u8>| {
            let room = limit.saturating_sub(kept.len());
            let piece = &bytes[..bytes.len().min(room)];
            if !piece.is_empty() {
                seen(piece);
            }
            kept.extend_from_slice(piece);
            bytes.len() > room
        };
        let mut buffer = vec![0u8; 16 << 10];
        loop {
            if let Some(at) = finder.find(&self.pending) {
                let over = keep(&self.pending[..at], kept);
                self.pending.drain(..at + marker.len());
                return if over && stop_over { Until::Over } else { Until::Found };
            }
            // All but a possible start of the marker can go.
            let safe = self.pending.len() - marker_start(&self.pending, marker);
            let over = keep(&self.pending[..safe], kept);
            self.pending.drain(..safe);
            if over && stop_over {
                return Until::Over;
            }
            match self.reader.read(&mut buffer).await {
                Ok(0) | Err(_) => {
                    let rest = std::mem::take(&mut self.pending);
                    keep(&rest, kept);
                    return Until::Ended;
                }
                Ok(n) => self.pending.extend_from_slice(&buffer[..n]),
            }
        }
    }
}

/// The length of the longest end of `pending` that the marker could start with: the
/// rest cannot be part of it and is output (what a live watcher may see at once).
fn marker_start(pending: &[u8], marker: &[u8]) -> usize {
    let longest = marker.len().saturating_sub(1).min(pending.len());
    (1..=longest).rev().find(|&n| pending.ends_with(&marker[..n])).unwrap_or(0)
}

/// `bytes` as one single-quoted shell word.
fn quote_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut quoted = Vec::with_capacity(bytes.len() + 2);
    quoted.push(b'\'');
    for &byte in bytes {
        if byte == b'\'' {
            quoted.extend_from_slice(b"'\\''");
        } else {
            quoted.push(byte);
        }
    }
    quoted.push(b'\'');
    quoted
}

/// 128 random bits in hex, from the kernel.
fn nonce() -> String {
    let mut bytes = [0u8; 16];
    // SAFETY: getrandom(2) writes at most `bytes.len()` bytes into the buffer.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if got != bytes.len() as isize {
        // Not random, but still unlikely in output: the time and the address.
        let seed = format!("{:?}{:p}", Instant::now(), &bytes);
        for (i, b) in seed.bytes().enumerate() {
            bytes[i % 16] ^= b;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_bytes_keeps_them_literal() {
        assert_eq!(quote_bytes(b"a'b\n$x"), b"'a'\\''b\n$x'".to_vec());
    }

    #[test]
    fn commands_with_nul_or_big_input_take_a_channel() {
        assert!(fits("echo hi", None));
        assert!(fits("cat", Some(b"text\n")));
        assert!(!fits("echo \0", None));
        assert!(!fits("cat", Some(b"a\0b")));
        assert!(!fits("cat", Some(&vec![b'x'; MAX_INPUT + 1])));
    }

    #[tokio::test]
    async fn a_stream_hands_out_output_up_to_markers_across_reads() {
        let (mut writer, reader) = tokio::io::duplex(8);
        let feed = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            writer.write_all(b"stray N:1:goout\0put N:1:0\nN:2:gomore").await.unwrap();
        });
        let mut stream = Stream::new(reader);
        let mut skipped = Vec::new();
        assert_eq!(stream.until(b"N:1:go", &mut skipped, 100, false, |_| {}).await, Until::Found);
        assert_eq!(skipped, b"stray ");
        let mut out = Vec::new();
        assert_eq!(stream.until(b"N:1:", &mut out, 100, false, |_| {}).await, Until::Found);
        assert_eq!(out, b"out\0put ");
        let mut status = Vec::new();
        assert_eq!(stream.until(b"\n", &mut status, 10, false, |_| {}).await, Until::Found);
        assert_eq!(status, b"0");
        assert_eq!(stream.until(b"N:2:go", &mut Vec::new(), 0, false, |_| {}).await, Until::Found);
        feed.await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(stream.until(b"N:3:", &mut rest, 2, false, |_| {}).await, Until::Ended);
        assert_eq!(rest, b"mo");
    }

    #[tokio::test]
    async fn a_stream_shows_output_while_it_waits_for_the_marker() {
        use tokio::io::AsyncWriteExt;
        let (mut writer, reader) = tokio::io::duplex(64);
        let (seen, mut pieces) = tokio::sync::mpsc::unbounded_channel();
        let mut stream = Stream::new(reader);
        let mut kept = Vec::new();
        let reading = stream.until(b"N:1:", &mut kept, 100, false, |piece: &[u8]| {
            let _ = seen.send(piece.to_vec());
        });
        let feeding = async {
            // Seen whole before anything else comes (no marker can start in it)...
            writer.write_all(b"first\n").await.unwrap();
            assert_eq!(pieces.recv().await.unwrap(), b"first\n");
            // ...while an end that may start the marker waits for the next bytes.
            writer.write_all(b"a N:").await.unwrap();
            assert_eq!(pieces.recv().await.unwrap(), b"a ");
            writer.write_all(b"2 N:1:").await.unwrap();
        };
        let (end, ()) = tokio::join!(reading, feeding);
        assert_eq!(end, Until::Found);
        assert_eq!(kept, b"first\na N:2 ");
        assert_eq!(pieces.recv().await.unwrap(), b"N:2 ");
    }

    #[test]
    fn only_an_end_that_could_start_the_marker_is_held_back() {
        assert_eq!(marker_start(b"output", b"N:1:"), 0);
        assert_eq!(marker_start(b"output N", b"N:1:"), 1);
        assert_eq!(marker_start(b"output N:1", b"N:1:"), 3);
        assert_eq!(marker_start(b"N:", b"N:1:"), 2);
        assert_eq!(marker_start(b"", b"N:1:"), 0);
    }

    #[tokio::test]
    async fn a_stream_stops_past_a_hard_cap() {
        let (mut writer, reader) = tokio::io::duplex(64);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            // Never ends and never says the marker.
            while writer.write_all(b"xxxxxxxx").await.is_ok() {}
        });
        let mut kept = Vec::new();
        assert_eq!(Stream::new(reader).until(b"N:1:", &mut kept, 1000, true, |_| {}).await, Until::Over);
        assert_eq!(kept.len(), 1000);
    }
}
