//! The main configuration file (`loom.yaml`): where the manifests are and how Loom
//! behaves. Relative paths in it resolve against the file's own folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;

use super::diagnostics::Diagnostic;
use super::fields::{Fields, bounded_duration, resolve_path};
use super::job::Catchup;
use super::notify::{Delivery, NotifyRule, parse_delivery, parse_public_url, parse_rules};
use super::yaml::{Node as YamlNode, Value};
use crate::metrics::MetricsSettings;
use crate::schedule::cron::host_zone;
use crate::ssh::{HostKeyPolicy, SshSettings};
use crate::store::{ClusterTiming, PostgresTarget};

/// The longest `task_max_time`.
const MAX_TASK_TIME: Duration = Duration::from_secs(30 * 86_400);
/// The longest `ssh.connect_timeout`.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(3600);
/// The longest `ssh.keepalive` interval.
const MAX_KEEPALIVE: Duration = Duration::from_secs(86_400);
/// The longest `ssh.control_persist` (besides `yes`).
const MAX_CONTROL_PERSIST: Duration = Duration::from_secs(30 * 86_400);
/// The longest `cluster.heartbeat` and `cluster.lease`.
const MAX_CLUSTER_TIME: Duration = Duration::from_secs(3600);
/// The longest `retention.days`: about a hundred years.
const MAX_RETENTION_DAYS: i64 = 36_525;

#[derive(Debug, Clone)]
pub struct Settings {
    pub nodesfile: Option<PathBuf>,
    pub jobspath: Option<PathBuf>,
    pub datafile: Option<PathBuf>,
    /// Kept for compatibility with the original Loom; workers are threads made on
    /// demand, so there is nothing to keep warm.
    pub min_workers: usize,
    /// How many node tasks run at once, over all fires.
    pub max_workers: usize,
    /// Folders searched for task modules, before the bundled stdlib.
    pub taskspath: Vec<PathBuf>,
    pub timezone: Tz,
    /// Rhai operations one task call may perform before it is stopped.
    pub task_max_operations: u64,
    /// Wall-clock time one task call may take while its script is running.
    pub task_max_time: Duration,
    /// Bytes of output kept per node and fire; the rest is cut with a marker.
    pub output_limit: usize,
    pub ssh: SshSettings,
    /// The main file's folder; relative paths resolve against it.
    pub base: PathBuf,
    /// The SQLite file holding history and job state. With PostgreSQL, a local
    /// name in `ssh.control_dir` (never created as a store) whose lock keeps one
    /// daemon per configuration on this host and places its ssh control folder.
    pub state: PathBuf,
    /// The PostgreSQL store, when `state` names one (cluster mode).
    pub postgres: Option<PostgresTarget>,
    /// How often a cluster member renews its heartbeat and leases, and how long
    /// a lease on node work lasts (`cluster: {heartbeat, lease}`).
    pub cluster: ClusterTiming,
    /// The default for jobs that set no `catchup`.
    pub catchup: Catchup,
    /// At most this many missed fires per job are run by `catchup: all`.
    pub catchup_limit: usize,
    /// Keep the newest this many fires per job (`retention.fires`).
    pub retention_fires: Option<usize>,
    /// Keep fires no older than this (`retention.days`).
    pub retention_age: Option<Duration>,
    /// Where the REST API listens; `None` when `listen: off`.
    pub listen: Option<String>,
    /// API bearer tokens; none means loopback only, without authentication.
    pub tokens: Vec<ApiToken>,
    /// Certificate and key (PEM) for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How `GET /metrics` is served (`metrics: {public, per_node}`).
    pub metrics: MetricsSettings,
    /// Notification rules of every job (`notifications:` in the main file).
    pub notifications: Vec<Arc<NotifyRule>>,
    /// How notifications are delivered.
    pub delivery: Delivery,
    /// The base of links in notifications; `http://<listen>` when unset.
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reads only.
    Read,
    /// Reads, runs, enables, disables, cancels, reloads.
    Admin,
}

/// An API token; its secret never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub secret: String,
    pub role: Role,
    /// The `token_file` it was read from (watched: a changed file reloads).
    pub file: Option<PathBuf>,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiToken(***, {:?})", self.role)
    }
}

impl Settings {
    pub(crate) fn defaults(base: &Path) -> Settings {
        Settings {
            nodesfile: None,
            jobspath: None,
            datafile: None,
            min_workers: 0,
            max_workers: 10,
            taskspath: vec![base.join("tasks")],
            timezone: host_zone(),
            task_max_operations: 100_000_000,
            task_max_time: Duration::from_secs(3600),
            output_limit: 1 << 20,
            ssh: SshSettings::default(),
            base: base.to_path_buf(),
            state: default_state(),
            postgres: None,
            cluster: ClusterTiming::default(),
            catchup: Catchup::Latest,
            catchup_limit: 100,
            retention_fires: Some(1000),
            retention_age: Some(Duration::from_secs(90 * 86_400)),
            listen: Some("127.0.0.1:8765".to_string()),
            tokens: Vec::new(),
            tls: None,
            metrics: MetricsSettings::default(),
            notifications: Vec::new(),
            delivery: Delivery::default(),
            public_url: None,
        }
    }
}

/// `cluster: {heartbeat: 2s, lease: 8s}`: a lease must outlast two heartbeats, so
/// that one late renewal does not hand a live member's work to another.
fn parse_cluster(section: &YamlNode, diagnostics: &mut Vec<Diagnostic>) -> ClusterTiming {
    let mut timing = ClusterTiming::default();
    let mut fields = Fields::new(section, "the `cluster` settings");
    if let Some(heartbeat) = fields.duration("heartbeat", MAX_CLUSTER_TIME) {
        timing.heartbeat = heartbeat.max(Duration::from_millis(10));
    }
    let lease = fields.node("lease");
    if let Some(node) = lease {
        match bounded_duration(node, "lease", MAX_CLUSTER_TIME) {
            Ok(lease) if lease >= 2 * timing.heartbeat => timing.lease = lease,
            Ok(lease) => diagnostics.push(
                Diagnostic::error(format!(
                    "`lease` ({}) must be at least two heartbeats ({})",
                    humantime::format_duration(lease),
                    humantime::format_duration(2 * timing.heartbeat)
                ))
                .at(node.at.clone())
                .help("a member renews its leases at each heartbeat; a shorter lease would expire while it lives"),
            ),
            Err(d) => diagnostics.push(d),
        }
    } else if timing.lease < 2 * timing.heartbeat {
        timing.lease = 4 * timing.heartbeat;
    }
    diagnostics.extend(fields.finish());
    timing
}

/// `~/.loom/state.db`, or `loom-state.db` in the working folder without a home.
fn default_state() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".loom/state.db"),
        None => PathBuf::from("loom-state.db"),
    }
}

/// `state:` — a SQLite path, a `postgres://user@host:port/db` URL, or a map
/// `postgres: {host, port, user, dbname, password_file}`.
fn parse_state(node: &YamlNode, base: &Path, settings: &mut Settings, errors: &mut Vec<Diagnostic>) {
    if let Value::Map(_) = node.value {
        let mut state = Fields::new(node, "the `state` settings");
        if let Some(section) = state.required("postgres", "where the PostgreSQL store is") {
            let mut postgres = Fields::new(section, "the `state.postgres` settings");
            let host = postgres.string("host");
            let port = postgres.integer("port", 1, 65_535).map(|port| port as u16);
            let user = postgres.string("user");
            let dbname = postgres.string("dbname");
            let password_file = postgres.path("password_file", base);
            errors.extend(postgres.finish());
            settings.postgres = Some(PostgresTarget::from_parts(host, port, user, dbname, password_file));
        }
        errors.extend(state.finish());
    } else {
        match (&node.value, node.scalar_text()) {
            (Value::Str(_), Some(url)) if PostgresTarget::is_url(&url) => match PostgresTarget::from_url(&url) {
                Ok(target) => settings.postgres = Some(target),
                // The line may hold a password: say where, not what.
                Err(message) => errors
                    .push(Diagnostic::error(format!("{message} for `state`")).at(node.at.clone()).hiding_the_line()),
            },
            (Value::Str(_) | Value::Int(_), Some(text)) if !text.is_empty() => {
                settings.state = resolve_path(&text, base)
            }
            _ => errors.push(node.expected("a path, a postgres:// URL or a `postgres:` map for `state`")),
        }
    }
}

pub(crate) fn parse_settings(root: &YamlNode, base: &Path) -> (Settings, Vec<Diagnostic>) {
    let mut settings = Settings::defaults(base);
    let mut fields = Fields::new(root, "the main configuration");
    let mut errors = Vec::new();

    let path = |node: &YamlNode| node.scalar_text().map(|t| resolve_path(&t, base));
    settings.nodesfile = fields.required_path("nodesfile", "the path of the node manifest", base);
    settings.jobspath = fields.required_path("jobspath", "the folder holding job manifests", base);
    settings.datafile = fields.path("datafile", base);
    if let Some(min) = fields.integer("min_workers", 0, 100_000) {
        settings.min_workers = min as usize;
    }
    if let Some(max) = fields.integer("max_workers", 1, 100_000) {
        settings.max_workers = max as usize;
    }
    if settings.min_workers > settings.max_workers
        && let Some(node) = root.get("min_workers")
    {
        errors.push(
            Diagnostic::error(format!(
                "min_workers ({}) is larger than max_workers ({})",
                settings.min_workers, settings.max_workers
            ))
            .at(node.at.clone()),
        );
    }
    if let Some(folders) = fields.strings("taskspath") {
        settings.taskspath = folders.iter().filter_map(|n| path(n)).collect();
    }
    if let Some(zone) = fields.time_zone("timezone") {
        settings.timezone = zone;
    }
    if let Some(ops) = fields.integer("task_max_operations", 1000, i64::MAX) {
        settings.task_max_operations = ops as u64;
    }
    if let Some(time) = fields.duration("task_max_time", MAX_TASK_TIME) {
        settings.task_max_time = time;
    }
    if let Some(limit) = fields.integer("output_limit", 1024, 1 << 30) {
        settings.output_limit = limit as usize;
    }
    if let Some(node) = fields.node("state") {
        parse_state(node, base, &mut settings, &mut errors);
    }
    if let Some(node) = fields.node("catchup") {
        match node.as_str().and_then(Catchup::parse) {
            Some(catchup) => settings.catchup = catchup,
            None => errors.push(node.expected("none, latest or all for `catchup`")),
        }
    }
    if let Some(limit) = fields.integer("catchup_limit", 1, 100_000) {
        settings.catchup_limit = limit as usize;
    }
    let mut diagnostics = Vec::new();
    if let Some(section) = fields.node("retention") {
        let mut retention = Fields::new(section, "the `retention` settings");
        if let Some(fires) = retention.integer("fires", 0, i64::MAX) {
            settings.retention_fires = (fires > 0).then_some(fires as usize);
        }
        if let Some(days) = retention.integer("days", 0, MAX_RETENTION_DAYS) {
            settings.retention_age = (days > 0).then(|| Duration::from_secs(days as u64 * 86_400));
        }
        diagnostics.extend(retention.finish());
    }
    if let Some(node) = fields.node("listen") {
        match node.scalar_text().as_deref() {
            Some("off") | Some("false") => settings.listen = None,
            Some(address) if address.parse::<std::net::SocketAddr>().is_ok() => {
                settings.listen = Some(address.to_string())
            }
            _ => errors.push(node.expected("an address such as 127.0.0.1:8765, or off, for `listen`")),
        }
    }
    if let Some(node) = fields.node("tokens") {
        settings.tokens = parse_tokens(node, base, &mut diagnostics);
    }
    if let Some(section) = fields.node("tls") {
        let mut tls = Fields::new(section, "the `tls` settings");
        let cert = tls.required_path("cert", "the certificate chain, PEM", base);
        let key = tls.required_path("key", "the private key, PEM", base);
        diagnostics.extend(tls.finish());
        if let (Some(cert), Some(key)) = (cert, key) {
            // Loaded as `serve` loads them, so that check finds what serve would:
            // each file at its own value, then whether the two go together.
            let at = |name: &str| section.get(name).map_or(section.at.clone(), |n| n.at.clone());
            let chain = super::tls::read_chain(&cert).map_err(|why| Diagnostic::error(why).at(at("cert")));
            let private = super::tls::read_key(&key).map_err(|why| Diagnostic::error(why).at(at("key")));
            match (chain, private) {
                (Ok(_), Ok(_)) => {
                    if let Err(why) = super::tls::server_config(&cert, &key) {
                        diagnostics.push(Diagnostic::error(why).at(section.at.clone()));
                    }
                }
                (chain, private) => diagnostics.extend(chain.err().into_iter().chain(private.err())),
            }
            settings.tls = Some((cert, key));
        }
    }
    if let (Some(address), Some(node)) = (&settings.listen, root.get("listen"))
        && settings.tokens.is_empty()
        && address.parse::<std::net::SocketAddr>().is_ok_and(|a| !a.ip().is_loopback())
    {
        // `serve` refuses this; say so before it is started.
        errors.push(
            Diagnostic::error(format!(
                "refusing to serve the API on {address}: it is not a loopback address and no API tokens are configured"
            ))
            .at(node.at.clone())
            .help("add `tokens:` or listen on 127.0.0.1"),
        );
    }
    if let Some(section) = fields.node("metrics") {
        let mut metrics = Fields::new(section, "the `metrics` settings");
        if let Some(public) = metrics.boolean("public") {
            settings.metrics.public = public;
        }
        if let Some(per_node) = metrics.boolean("per_node") {
            settings.metrics.per_node = per_node;
        }
        diagnostics.extend(metrics.finish());
    }
    if let Some(section) = fields.node("ssh") {
        settings.ssh = parse_ssh(section, base, &mut diagnostics);
    }
    if let Some(rules) = fields.node("notifications") {
        let rules = parse_rules(rules, "the main configuration", base, &mut diagnostics);
        settings.notifications = rules.into_iter().map(Arc::new).collect();
    }
    if let Some(section) = fields.node("delivery") {
        settings.delivery = parse_delivery(section, &mut diagnostics);
    }
    if let Some(node) = fields.node("public_url") {
        settings.public_url = parse_public_url(node, &mut diagnostics);
    }
    if let Some(section) = fields.node("cluster") {
        settings.cluster = parse_cluster(section, &mut diagnostics);
    }
    if let Some(postgres) = &mut settings.postgres {
        postgres.timing = settings.cluster;
    }
    if settings.postgres.is_some() {
        // One daemon of this configuration per host: its lock (and the ssh
        // control folder derived from it) sit beside the control folders, under
        // a name made from the configuration's folder.
        let folder = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        let hash = crate::ssh::control::fnv1a(folder.as_os_str().as_encoded_bytes());
        settings.state = settings.ssh.control_dir.join(format!("loom-cluster-{hash:016x}"));
    }
    diagnostics.extend(fields.finish());
    diagnostics.extend(errors);
    (settings, diagnostics)
}

/// `tokens: [{token: SECRET, role: admin}, {token_file: PATH, role: read}]`.
fn parse_tokens(node: &YamlNode, base: &Path, diagnostics: &mut Vec<Diagnostic>) -> Vec<ApiToken> {
    let Value::Seq(items) = &node.value else {
        diagnostics.push(node.expected("a list of {token or token_file, role} for `tokens`"));
        return Vec::new();
    };
    let mut tokens = Vec::new();
    for item in items {
        let mut fields = Fields::new(item, "an API token");
        let inline = fields.string("token");
        let file = fields.string("token_file").map(|p| resolve_path(&p, base));
        let role = match fields.string("role").as_deref() {
            None | Some("admin") => Some(Role::Admin),
            Some("read") => Some(Role::Read),
            Some(other) => {
                diagnostics.push(
                    Diagnostic::error(format!("unknown role `{other}`; expected admin or read")).at(item.at.clone()),
                );
                None
            }
        };
        diagnostics.extend(fields.finish());
        // Errors about the secret point at the value that gives it.
        let given_at = item.get("token_file").or(item.get("token")).map_or(item.at.clone(), |n| n.at.clone());
        let secret = match (inline, &file) {
            (Some(secret), None) => Some(secret),
            (None, Some(file)) => match super::read::read_text(file) {
                Ok(text) => Some(text.trim().to_string()),
                Err(err) => {
                    diagnostics.push(
                        Diagnostic::error(format!("failed to read token_file {}: {err}", file.display()))
                            .at(given_at.clone()),
                    );
                    None
                }
            },
            _ => {
                diagnostics.push(
                    Diagnostic::error("a token needs exactly one of `token` and `token_file`").at(item.at.clone()),
                );
                None
            }
        };
        match (secret, role) {
            (Some(secret), Some(role)) if secret.len() >= 16 => tokens.push(ApiToken { secret, role, file }),
            (Some(_), Some(_)) => {
                diagnostics.push(Diagnostic::error("an API token must be at least 16 characters long").at(given_at))
            }
            _ => {}
        }
    }
    tokens
}

fn parse_ssh(section: &YamlNode, base: &Path, diagnostics: &mut Vec<Diagnostic>) -> SshSettings {
    let mut ssh = SshSettings::default();
    let mut fields = Fields::new(section, "the `ssh` settings");
    if let Some(program) = fields.path("program", base) {
        ssh.program = program;
    }
    if let Some(timeout) = fields.duration("connect_timeout", MAX_CONNECT_TIMEOUT) {
        ssh.connect_timeout = timeout;
    }
    if let Some(keepalive) = fields.duration("keepalive", MAX_KEEPALIVE) {
        ssh.keepalive = keepalive;
    }
    if let Some(node) = fields.node("host_key_checking") {
        match node.scalar_text().as_deref().map(HostKeyPolicy::parse) {
            Some(Ok(policy)) => ssh.host_key_checking = policy,
            Some(Err(d)) => diagnostics.push(d.at(node.at.clone())),
            None => diagnostics.push(node.expected("strict, accept-new or off")),
        }
    }
    ssh.known_hosts = fields.path("known_hosts", base);
    ssh.config_file = fields.path("config_file", base);
    if let Some(dir) = fields.path("control_dir", base) {
        ssh.control_dir = dir;
    }
    if let Some(node) = fields.node("control_persist") {
        match (&node.value, bounded_duration(node, "control_persist", MAX_CONTROL_PERSIST)) {
            (Value::Bool(true), _) => ssh.control_persist = "yes".to_string(),
            (Value::Str(text), _) if text == "yes" => ssh.control_persist = "yes".to_string(),
            (Value::Str(text), _) if text == "no" => {
                diagnostics.push(node.expected("yes or a duration such as 1h for `control_persist`"))
            }
            (_, Ok(d)) if !d.is_zero() => ssh.control_persist = format!("{}s", d.as_secs().max(1)),
            (Value::Bool(_), _) | (_, Ok(_)) => {
                diagnostics.push(node.expected("yes or a duration such as 1h for `control_persist`"))
            }
            (_, Err(d)) => {
                let range = humantime::format_duration(MAX_CONTROL_PERSIST);
                diagnostics.push(d.help(format!("`control_persist` takes yes, or a duration from 1s to {range}")))
            }
        }
    }
    ssh.options = fields.ssh_options("options");
    diagnostics.extend(fields.finish());
    ssh
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::yaml::{Joined, SourceFile};

    fn settings(text: &str) -> (Settings, Vec<String>) {
        let file = Arc::new(SourceFile::new("loom.yaml", format!("nodesfile: n.yaml\njobspath: jobs\n{text}")));
        let root = Joined::new(&[file]).parse().unwrap();
        let (settings, diagnostics) = parse_settings(&root, Path::new(""));
        (
            settings,
            diagnostics.iter().map(|d| format!("{} {}", d.one_line(), d.help.clone().unwrap_or_default())).collect(),
        )
    }

    #[test]
    fn ssh_durations_and_policies_are_bounded_and_read_as_written() {
        let (ok, errors) = settings("ssh:\n  host_key_checking: off\n  control_persist: 30days\n  keepalive: 1d\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(ok.ssh.host_key_checking, HostKeyPolicy::Off);
        assert_eq!(ok.ssh.control_persist, format!("{}s", 30 * 86_400));
        assert_eq!(settings("ssh:\n  control_persist: yes\n").0.ssh.control_persist, "yes");

        let (_, errors) = settings("ssh:\n  control_persist: 99999999999999h\n  connect_timeout: 2h\n");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("loom.yaml:4:20: `control_persist` is too long"), "{errors:?}");
        assert!(errors[0].contains("takes yes, or a duration from 1s to 30days"), "{errors:?}");
        assert!(errors[1].contains("loom.yaml:5:20: `connect_timeout` is too long: 2h is more than 1h"), "{errors:?}");
        for zero in ["0", "false", "no"] {
            let (_, errors) = settings(&format!("ssh:\n  control_persist: {zero}\n"));
            assert!(errors[0].contains("expected yes or a duration such as 1h"), "{zero}: {errors:?}");
        }
        let (ok, errors) = settings("metrics: {public: true, per_node: true}\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(ok.metrics, MetricsSettings { public: true, per_node: true });
        let (_, errors) = settings("metrics: {public: yes, pernode: true}\n");
        assert!(errors.iter().any(|e| e.contains("loom.yaml:3:19")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("unknown key `pernode`") && e.contains("per_node")), "{errors:?}");
        let (_, errors) = settings("retention: {days: 36526}\n");
        assert!(errors[0].contains("`days` must be between 0 and 36525"), "{errors:?}");
    }

    #[test]
    fn state_is_a_path_a_postgres_url_or_a_postgres_map() {
        let (sqlite, errors) = settings("state: /var/lib/loom/state.db\n");
        assert!(errors.is_empty() && sqlite.postgres.is_none(), "{errors:?}");
        assert_eq!(sqlite.state, PathBuf::from("/var/lib/loom/state.db"));

        let (url, errors) = settings("state: postgres://loom@db.example:6543/history\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(url.postgres.unwrap().describe(), "postgres://loom@db.example:6543/history");
        assert!(url.state.starts_with(&url.ssh.control_dir), "{}", url.state.display());

        let (map, errors) =
            settings("state:\n  postgres: {host: db, user: loom, dbname: loom, password_file: /etc/loom/pw}\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(format!("{:?}", map.postgres.unwrap()), "postgres://loom@db:5432/loom");

        let (_, errors) = settings("state: postgres://loom:hunter2@db/loom\n");
        assert!(errors[0].contains("loom.yaml:3:8: a password in the PostgreSQL URL"), "{errors:?}");
        assert!(!errors[0].contains("hunter2"), "{errors:?}");
        let (_, errors) = settings("state:\n  postgres: {host: db, port: 99999, pasword_file: x}\n");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("loom.yaml:4:") && e.contains("port")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("pasword_file")), "{errors:?}");
    }
}
