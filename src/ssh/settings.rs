//! The `ssh:` section of the main configuration.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Diagnostic;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Only hosts already in known_hosts.
    Strict,
    /// Record a new host's key on first contact; refuse a changed one.
    AcceptNew,
    /// No checking at all (test rigs only).
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSettings {
    /// The OpenSSH client to run.
    pub program: PathBuf,
    pub connect_timeout: Duration,
    /// ServerAliveInterval; zero turns keep-alives off.
    pub keepalive: Duration,
    pub host_key_checking: HostKeyPolicy,
    /// UserKnownHostsFile; OpenSSH's default when unset.
    pub known_hosts: Option<PathBuf>,
    /// An ssh_config file used instead of ~/.ssh/config (`-F`).
    pub config_file: Option<PathBuf>,
    /// Where control sockets live (a private folder per master is made inside).
    pub control_dir: PathBuf,
    /// How long an idle master outlives its last use: `yes` (forever) or a duration
    /// like `1h`; bounds masters left behind by a killed daemon.
    pub control_persist: String,
    /// `Key=Value` options for every node; a node's own `ssh_options` come first on
    /// the command line and so win (ssh keeps the first value of an option).
    pub options: Vec<String>,
}

impl Default for SshSettings {
    fn default() -> SshSettings {
        SshSettings {
            program: PathBuf::from("ssh"),
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            host_key_checking: HostKeyPolicy::AcceptNew,
            known_hosts: None,
            config_file: None,
            control_dir: std::env::temp_dir(),
            control_persist: "1h".to_string(),
            options: Vec::new(),
        }
    }
}

impl HostKeyPolicy {
    pub(crate) fn parse(text: &str) -> Result<HostKeyPolicy, Diagnostic> {
        match text {
            "strict" | "yes" | "true" => Ok(HostKeyPolicy::Strict),
            "accept-new" => Ok(HostKeyPolicy::AcceptNew),
            "off" | "no" | "false" => Ok(HostKeyPolicy::Off),
            other => Err(Diagnostic::error(format!(
                "unknown host_key_checking `{other}`; expected strict, accept-new or off"
            ))),
        }
    }
}
