//! The handle every task receives first (`ssh`), and what it exposes to scripts.
//!
//! `run`/`sudo` return `#{stdout, stderr, code}` and fail the task on a non-zero exit
//! unless called with `#{check: false}`; `put`/`get` move files; `node`, `host` and
//! `user` say where the task is; `facts` are gathered on first use (one command) and
//! kept for the attempt. A handle made `as_root` (a resource with `sudo`) runs every
//! `run` as `sudo`. All output is captured per node (bounded) for the
//! run's record. The handle is the only door a script has to files and processes.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use rhai::{Dynamic, Engine, EvalAltResult, Map};
use tokio_util::sync::CancellationToken;

use super::scripts::blocking;
use crate::config::Node;
use crate::ssh::{CommandOutput, Connection, Pipe, shell_quote};

type ScriptResult<T> = Result<T, Box<EvalAltResult>>;

/// The variable that carries a node's sudo password from stdin to sudo's askpass.
const SUDO_VAR: &str = "LOOM_SUDO_PASSWORD";

/// A node's output during one task call, cut at a size limit.
/// Receives each piece of output as it is appended.
pub type Sink = Box<dyn Fn(&str) + Send + Sync>;

pub struct Output {
    text: Mutex<String>,
    /// Sees every piece as it is appended (live output for the API).
    sink: Option<Sink>,
    limit: usize,
    /// The exit code of the last command that exited non-zero.
    failed_code: Mutex<Option<i32>>,
}

impl Output {
    pub fn new(limit: usize) -> Output {
        Output { text: Mutex::new(String::new()), sink: None, limit, failed_code: Mutex::new(None) }
    }

    pub fn with_sink(limit: usize, sink: Sink) -> Output {
        Output { sink: Some(sink), ..Output::new(limit) }
    }

    /// Keeps `piece` for the record and tells the sink of it.
    pub fn append(&self, piece: &str) {
        self.publish(piece);
        self.keep(piece);
    }

    /// Whether pieces are followed live (a sink is there).
    fn followed(&self) -> bool {
        self.sink.is_some()
    }

    /// Tells the sink of `piece` only: it is, or was, kept apart.
    fn publish(&self, piece: &str) {
        if let Some(sink) = &self.sink {
            sink(piece);
        }
    }

    /// Keeps `piece` for the record only: the sink saw it live.
    fn keep(&self, piece: &str) {
        let mut text = self.text.lock().expect("output lock");
        if text.len() >= self.limit {
            return;
        }
        let room = self.limit - text.len();
        if piece.len() <= room {
            text.push_str(piece);
        } else {
            text.push_str(&piece[..piece.floor_char_boundary(room)]);
            text.push_str("\n[output cut: output_limit reached]\n");
        }
    }

    pub fn last_failed_code(&self) -> Option<i32> {
        *self.failed_code.lock().expect("output lock")
    }

    pub fn take(&self) -> String {
        std::mem::take(&mut *self.text.lock().expect("output lock"))
    }
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output").field("limit", &self.limit).finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct Ssh {
    node: Arc<Node>,
    connection: Arc<Connection>,
    output: Arc<Output>,
    cancel: CancellationToken,
    /// The node's facts, gathered on first use and shared by the attempt's clones.
    facts: Arc<OnceLock<Map>>,
    /// `run` goes through `sudo` (a resource with `sudo: true`).
    as_root: bool,
    /// Commands and their output stay out of the node's output (a `sensitive` resource).
    hidden: bool,
}

impl Ssh {
    pub fn new(node: Arc<Node>, connection: Arc<Connection>, output: Arc<Output>, cancel: CancellationToken) -> Ssh {
        Ssh { node, connection, output, cancel, facts: Arc::new(OnceLock::new()), as_root: false, hidden: false }
    }

    /// This handle for a resource: every `run` goes through `sudo` when `as_root`;
    /// with `hidden`, no command or output of it reaches the node's output (a
    /// `sensitive` resource, whose content a command or its output may carry).
    pub(crate) fn for_resource(&self, as_root: bool, hidden: bool) -> Ssh {
        Ssh { as_root, hidden, ..self.clone() }
    }

    /// Runs `command` (through sudo on a handle `for_resource(true, _)`) whatever its
    /// exit status, and returns its stdout.
    pub(crate) fn run_quietly(&self, command: &str) -> ScriptResult<String> {
        let mut options = Map::new();
        options.insert("check".into(), false.into());
        let result = self.clone().run(command, options)?;
        Ok(result.get("stdout").map(|s| s.to_string()).unwrap_or_default())
    }

    pub(crate) fn node_name(&self) -> &str {
        &self.node.name
    }

    /// The node's facts (`task::facts`), gathered by one command the first time.
    pub(crate) fn facts(&self) -> ScriptResult<Map> {
        if let Some(facts) = self.facts.get() {
            return Ok(facts.clone());
        }
        let options = Options { check: true, shown: Some("(gather facts)".to_string()), ..Options::default() };
        let quiet = Options { quiet: true, ..options };
        let result = self.exec(super::facts::GATHER, &quiet)?;
        let stdout = result.get("stdout").map(|s| s.to_string()).unwrap_or_default();
        Ok(self.facts.get_or_init(|| super::facts::parse(&stdout)).clone())
    }

    pub(crate) fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    fn exec(&self, command: &str, options: &Options) -> ScriptResult<Map> {
        if self.cancel.is_cancelled() {
            return Err(super::engine::cancelled());
        }
        let quiet = options.quiet || self.hidden;
        if !quiet {
            self.output.append(&format!("$ {}\n", options.shown.as_deref().unwrap_or(command)));
        }
        let stdin = options.stdin.as_deref();
        // Output that will be shown is followed live, line by line, as it comes.
        let live = (!quiet && self.output.followed()).then(|| Live::new(&self.output));
        let see = |pipe: Pipe, piece: &[u8]| live.as_ref().map_or((), |live| live.see(pipe, piece));
        let watch = live.is_some().then_some(&see as &(dyn Fn(Pipe, &[u8]) + Sync));
        let result = blocking(|| match options.alone {
            true => self.connection.exec_alone(command, stdin, &self.cancel, watch),
            false => self.connection.exec(command, stdin, &self.cancel, watch),
        });
        if let Some(live) = &live {
            live.flush();
        }
        let result = result.map_err(|e| match e {
            crate::ssh::SshError::Cancelled { .. } => super::engine::cancelled(),
            other => other.to_string().into(),
        })?;
        if !quiet || (result.code != Some(0) && !self.hidden) {
            self.record(&result, live.is_some());
        }
        let code = result.code.map_or(-1, i64::from);
        if options.check && result.code != Some(0) {
            let stderr = String::from_utf8_lossy(&result.stderr);
            let tail = stderr.trim_end().lines().last().unwrap_or("").to_string();
            let how = match result.code {
                Some(code) => format!("exited with code {code}"),
                None => "was killed by a signal".to_string(),
            };
            let shown = options.shown.as_deref().unwrap_or(command);
            let mut message = format!("`{shown}` {how} on node `{}`", self.node.name);
            if !tail.is_empty() {
                message.push_str(&format!(": {tail}"));
            }
            return Err(message.into());
        }
        let mut map = Map::new();
        map.insert("stdout".into(), String::from_utf8_lossy(&result.stdout).into_owned().into());
        map.insert("stderr".into(), String::from_utf8_lossy(&result.stderr).into_owned().into());
        map.insert("code".into(), code.into());
        map.insert("ok".into(), (result.code == Some(0)).into());
        Ok(map)
    }

    /// Keeps a command's output for the record, and tells the sink of it unless it
    /// was followed `live`.
    fn record(&self, result: &CommandOutput, live: bool) {
        for stream in [&result.stdout, &result.stderr] {
            if !stream.is_empty() {
                let mut text = String::from_utf8_lossy(stream).into_owned();
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                match live {
                    true => self.output.keep(&text),
                    false => self.output.append(&text),
                }
            }
        }
        if result.code != Some(0) {
            *self.output.failed_code.lock().expect("output lock") = result.code;
            let code = result.code.map_or("signal".to_string(), |c| c.to_string());
            self.output.append(&format!("[exit {code}]\n"));
        }
    }

    fn run(&mut self, command: &str, options: Map) -> ScriptResult<Map> {
        if self.as_root {
            return self.sudo(command, options);
        }
        self.exec(command, &Options::from_map(options)?)
    }

    fn sudo(&mut self, command: &str, options: Map) -> ScriptResult<Map> {
        let mut options = Options::from_map(options)?;
        if self.is_root() {
            return self.exec(command, &options);
        }
        options.shown = Some(format!("sudo {command}"));
        let wrapped = match &self.node.password {
            // The password reaches sudo only if sudo asks for it: the first line of
            // stdin is read by the shell into the environment, and sudo's askpass is
            // `printenv`, which prints it when sudo prompts (the prompt names the
            // variable). A sudo that asks nothing (NOPASSWD, a cached timestamp)
            // never sees it, and neither does the command: `env -u` drops it before
            // the command starts, whatever sudo's env_reset says.
            Some(password) if !self.node.local => {
                let mut stdin = format!("{}\n", password.expose()).into_bytes();
                stdin.extend(options.stdin.take().unwrap_or_default());
                options.stdin = Some(stdin);
                // The password stays out of the node's kept shell.
                options.alone = true;
                format!(
                    "IFS= read -r {SUDO_VAR}; export {SUDO_VAR}; export SUDO_ASKPASS=\"$(command -v printenv)\"; \
                     exec sudo -A -p {SUDO_VAR} -- env -u {SUDO_VAR} sh -c {}",
                    shell_quote(command)
                )
            }
            _ => format!("sudo -n -- sh -c {}", shell_quote(command)),
        };
        self.exec(&wrapped, &options)
    }

    fn is_root(&self) -> bool {
        if self.node.local {
            use std::os::unix::fs::MetadataExt;
            return std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        }
        self.node.user.as_deref() == Some("root")
    }

    fn put_bytes(&mut self, bytes: &[u8], remote: &str, options: Map) -> ScriptResult<()> {
        let mode = parse_mode_option(&options)?;
        self.output.append(&format!("put {} ({} bytes)\n", remote, bytes.len()));
        blocking(|| self.connection.write(remote, bytes, mode)).map_err(|e| e.to_string().into())
    }

    fn put_text(&mut self, text: &str, remote: &str, options: Map) -> ScriptResult<()> {
        self.put_bytes(text.as_bytes(), remote, options)
    }

    fn put_file(&mut self, local: &str, remote: &str, options: Map) -> ScriptResult<()> {
        let bytes = std::fs::read(local).map_err(|e| format!("failed to read local file {local}: {e}"))?;
        self.put_bytes(&bytes, remote, options)
    }

    /// A single line naming an existing local file is uploaded as that file;
    /// anything else is uploaded as text. `put_file`/`put_text` say it explicitly.
    fn put(&mut self, source: &str, remote: &str, options: Map) -> ScriptResult<()> {
        if !source.contains('\n') && Path::new(source).is_file() {
            self.put_file(source, remote, options)
        } else {
            self.put_text(source, remote, options)
        }
    }

    fn read(&mut self, remote: &str) -> ScriptResult<String> {
        let bytes = blocking(|| self.connection.read(remote)).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Streams the file to disk: any size, in bounded memory.
    fn get(&mut self, remote: &str, local: &str) -> ScriptResult<()> {
        let bytes = blocking(|| self.connection.download(remote, Path::new(local))).map_err(|e| e.to_string())?;
        self.output.append(&format!("get {remote} -> {local} ({bytes} bytes)\n"));
        Ok(())
    }

    fn exists(&mut self, remote: &str) -> ScriptResult<bool> {
        let options = Options { check: false, ..Options::default() };
        let result = self.exec(&format!("test -e {}", shell_quote(remote)), &options)?;
        Ok(result.get("code").and_then(|c| c.as_int().ok()) == Some(0))
    }

    fn user(&mut self) -> String {
        match &self.node.user {
            Some(user) => user.clone(),
            None => std::env::var("USER").unwrap_or_default(),
        }
    }
}

/// A command's output on its way to the sink while the command runs: whole lines
/// of each stream as they come (so that a line is never split between two pieces,
/// nor a character), the rest when the command ends. A long line without an end
/// goes in pieces of `Live::MOST` bytes.
struct Live<'a> {
    output: &'a Output,
    /// What came of stdout and of stderr after their last full line.
    partial: Mutex<[Vec<u8>; 2]>,
}

impl<'a> Live<'a> {
    const MOST: usize = 8 << 10;

    fn new(output: &'a Output) -> Live<'a> {
        Live { output, partial: Mutex::new([Vec::new(), Vec::new()]) }
    }

    fn see(&self, pipe: Pipe, piece: &[u8]) {
        let mut partial = self.partial.lock().expect("live output lock");
        let pending = &mut partial[pipe as usize];
        pending.extend_from_slice(piece);
        let whole = match memchr::memrchr(b'\n', pending) {
            Some(end) => end + 1,
            None if pending.len() >= Self::MOST => match std::str::from_utf8(pending) {
                Ok(_) => pending.len(),
                // A character cut at the end waits for its other bytes.
                Err(cut) if cut.error_len().is_none() => cut.valid_up_to(),
                Err(_) => pending.len(),
            },
            None => return,
        };
        let text = String::from_utf8_lossy(&pending[..whole]).into_owned();
        pending.drain(..whole);
        drop(partial);
        self.output.publish(&text);
    }

    /// Tells the rest: each stream's last line, ended as the record ends it.
    fn flush(&self) {
        let rests = std::mem::take(&mut *self.partial.lock().expect("live output lock"));
        for rest in rests.into_iter().filter(|rest| !rest.is_empty()) {
            self.output.publish(&format!("{}\n", String::from_utf8_lossy(&rest)));
        }
    }
}

#[derive(Default)]
struct Options {
    check: bool,
    /// Neither the command nor its output goes to the node's output (facts).
    quiet: bool,
    stdin: Option<Vec<u8>>,
    /// What the output shows as the command (sudo's wrapper is noise there).
    shown: Option<String>,
    /// In a channel of its own, not through the node's kept shell.
    alone: bool,
}

impl Options {
    fn from_map(map: Map) -> ScriptResult<Options> {
        let mut options = Options { check: true, ..Options::default() };
        for (key, value) in map {
            match key.as_str() {
                "check" => options.check = value.as_bool().map_err(|_| "`check` must be true or false")?,
                "stdin" => {
                    options.stdin = Some(value.into_string().map_err(|_| "`stdin` must be a string")?.into_bytes())
                }
                other => {
                    return Err(format!("unknown option `{other}`; known: check, stdin").into());
                }
            }
        }
        Ok(options)
    }
}

fn parse_mode_option(options: &Map) -> ScriptResult<Option<u32>> {
    for key in options.keys() {
        if key.as_str() != "mode" {
            return Err(format!("unknown option `{key}`; known: mode").into());
        }
    }
    options.get("mode").map(parse_mode).transpose()
}

/// A file mode is octal text (`"0644"`, `"644"`, `"0o644"`), as chmod reads it. A
/// number is refused: `644` from YAML and `0o644` from a script are different
/// numbers that people mean as the same mode, so neither is guessed.
fn parse_mode(mode: &Dynamic) -> ScriptResult<u32> {
    if let Ok(int) = mode.as_int() {
        return Err(format!("mode {int} is a number; write the mode as octal text in quotes, e.g. \"0644\"").into());
    }
    let text = mode.clone().into_string().map_err(|_| "mode must be octal text such as \"0644\"")?;
    let digits = text.strip_prefix("0o").unwrap_or(&text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if !digits.is_empty() && mode <= 0o7777 => Ok(mode),
        _ => Err(format!("mode `{text}` is not an octal mode such as \"0644\"").into()),
    }
}

/// The handle's methods and how many arguments (after the handle) each takes.
pub(crate) const METHODS: &[(&str, &[usize])] = &[
    ("run", &[1, 2]),
    ("sudo", &[1, 2]),
    ("put", &[2, 3]),
    ("put_text", &[2, 3]),
    ("put_file", &[2, 3]),
    ("get", &[2]),
    ("read", &[1]),
    ("exists", &[1]),
    ("log", &[1]),
    ("with_sudo", &[0]),
];

/// Makes the handle's type and methods known to an engine.
pub(crate) fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<Ssh>("Ssh")
        .register_get("node", |s: &mut Ssh| s.node.name.clone())
        .register_get("host", |s: &mut Ssh| s.node.host.clone())
        .register_get("user", Ssh::user)
        .register_get("local", |s: &mut Ssh| s.node.local)
        .register_get("facts", |s: &mut Ssh| s.facts())
        .register_get("as_root", |s: &mut Ssh| s.as_root)
        .register_fn("with_sudo", |s: &mut Ssh| s.for_resource(true, s.hidden))
        .register_fn("run", |s: &mut Ssh, cmd: &str| s.run(cmd, Map::new()))
        .register_fn("run", Ssh::run)
        .register_fn("sudo", |s: &mut Ssh, cmd: &str| s.sudo(cmd, Map::new()))
        .register_fn("sudo", Ssh::sudo)
        .register_fn("put", |s: &mut Ssh, src: &str, dst: &str| s.put(src, dst, Map::new()))
        .register_fn("put", Ssh::put)
        .register_fn("put_text", |s: &mut Ssh, text: &str, dst: &str| s.put_text(text, dst, Map::new()))
        .register_fn("put_text", Ssh::put_text)
        .register_fn("put_file", |s: &mut Ssh, src: &str, dst: &str| s.put_file(src, dst, Map::new()))
        .register_fn("put_file", Ssh::put_file)
        .register_fn("get", Ssh::get)
        .register_fn("read", Ssh::read)
        .register_fn("exists", Ssh::exists)
        .register_fn("log", |s: &mut Ssh, text: &str| s.output.append(&format!("{text}\n")))
        .register_fn("to_string", |s: &mut Ssh| format!("ssh://{}", s.node.name))
        .register_fn("quote", |text: &str| shell_quote(text))
        .register_fn("sha256", |text: &str| sha256_hex(text.as_bytes()))
        .register_fn("unified_diff", |before: &str, after: &str, path: &str| unified_diff(before, after, path));
}

/// The SHA-256 of `bytes` in lowercase hex, as `sha256sum` prints it.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A unified diff from `before` to `after`, headed `--- path` / `+++ path`; empty when equal.
pub(crate) fn unified_diff(before: &str, after: &str, path: &str) -> String {
    if before == after {
        return String::new();
    }
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{path} (on the node)"), &format!("{path} (declared)"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_output_goes_out_in_whole_lines_and_characters() {
        let told = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = Arc::clone(&told);
        let output = Output::with_sink(1 << 20, Box::new(move |piece| sink.lock().unwrap().push(piece.to_string())));
        let live = Live::new(&output);
        live.see(Pipe::Stdout, b"one\ntw");
        live.see(Pipe::Stderr, b"err");
        live.see(Pipe::Stdout, b"o\nthr");
        assert_eq!(*told.lock().unwrap(), ["one\n", "two\n"]);
        // A line that grows past `MOST` goes in pieces, never cutting a character.
        let long = "é".repeat(Live::MOST / 2 + 1);
        live.see(Pipe::Stderr, &long.as_bytes()[..Live::MOST + 1]);
        let piece = told.lock().unwrap().last().unwrap().clone();
        assert!(piece.starts_with("errééé") && !piece.contains('\u{fffd}'), "{}", &piece[..20]);
        live.see(Pipe::Stderr, &long.as_bytes()[Live::MOST + 1..]);
        live.flush();
        let told = told.lock().unwrap();
        assert_eq!(told[told.len() - 2..], ["thr\n".to_string(), "é\n".to_string()]);
        // Nothing was kept for the record: what is kept comes from the command's result.
        assert_eq!(output.take(), "");
    }

    #[test]
    fn modes_are_octal_text_and_numbers_are_refused() {
        let mode = |d: Dynamic| parse_mode(&d).map_err(|e| e.to_string());
        assert_eq!(mode("0644".into()), Ok(0o644));
        assert_eq!(mode("755".into()), Ok(0o755));
        assert_eq!(mode("0o700".into()), Ok(0o700));
        for bad in ["", "0o", "0989", "77777"] {
            assert!(mode(bad.into()).unwrap_err().contains("is not an octal mode"), "{bad}");
        }
        assert!(mode(Dynamic::from_int(644)).unwrap_err().contains("mode 644 is a number"));
    }

    #[test]
    fn digests_and_diffs_read_as_the_usual_tools_print_them() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(unified_diff("a\n", "a\n", "/x"), "");
        let diff = unified_diff("a\nb\n", "a\nc\n", "/etc/x");
        assert!(
            diff.starts_with("--- /etc/x (on the node)\n+++ /etc/x (declared)\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"),
            "{diff}"
        );
    }
}
