//! Nodes: the machines a job's task is applied to, from the node manifest.
//!
//! The manifest's key is the node's name and, unless `ip` is given, the host to
//! connect to. Secrets are kept in a type that never prints them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use super::diagnostics::{Diagnostic, Location};
use super::fields::{Fields, resolve_path};
use super::yaml::{Node as YamlNode, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// Where to connect: `ip` if given, else the name.
    pub host: String,
    pub user: Option<String>,
    pub password: Option<Password>,
    pub identity: Option<std::path::PathBuf>,
    pub port: Option<u16>,
    /// Run tasks on the Loom host itself, without SSH.
    pub local: bool,
    /// Extra `-o Key=Value` options for OpenSSH, given before the global ones so
    /// that they win (ssh keeps the first value of an option).
    pub ssh_options: Vec<String>,
}

/// A password that shows as `***` in every `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Node {
    /// How Loom authenticates to this node, for listings (never the secret itself).
    pub fn auth(&self) -> &'static str {
        match (self.local, &self.identity, &self.password) {
            (true, _, _) => "local",
            (false, Some(_), _) => "identity",
            (false, None, Some(_)) => "password",
            (false, None, None) => "agent/ssh_config",
        }
    }

    pub fn local(name: &str) -> Node {
        Node {
            name: name.to_string(),
            host: "localhost".to_string(),
            user: None,
            password: None,
            identity: None,
            port: None,
            local: true,
            ssh_options: Vec::new(),
        }
    }
}

/// Parses the node manifest's root; nodes with errors are left out, and their names
/// put in `rejected` (a job that targets one is not told the node is unknown).
pub(crate) fn parse_nodes(
    root: &YamlNode,
    base: &Path,
    rejected: &mut BTreeSet<String>,
    diagnostics: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Arc<Node>> {
    let mut nodes = BTreeMap::new();
    let Some(entries) = root.entries() else {
        if !matches!(root.value, Value::Null) {
            diagnostics.push(root.expected("a map of node names to their settings"));
        }
        return nodes;
    };
    let mut first_seen: BTreeMap<String, Location> = BTreeMap::new();
    for (key, value) in entries {
        let Some(name) = key.scalar_text() else {
            diagnostics.push(key.expected("a node name"));
            continue;
        };
        if let Some(first) = first_seen.get(&name) {
            diagnostics.push(
                Diagnostic::error(format!("node `{name}` is defined twice"))
                    .at(key.at.clone())
                    .help(format!("first defined at {first}")),
            );
            continue;
        }
        first_seen.insert(name.clone(), key.at.clone());
        let mut fields = Fields::new(value, format!("node `{name}`"));
        let ip = fields.string("ip");
        let user = fields.string("user");
        let password = fields.string("password").map(Password);
        let identity = fields.string("identity").map(|p| resolve_path(&p, base));
        let port = fields.integer("port", 1, 65535).map(|p| p as u16);
        let local = fields.boolean("local").unwrap_or(false);
        let ssh_options = fields.ssh_options("ssh_options");
        let problems = fields.finish();
        let failed = problems.iter().any(Diagnostic::is_error);
        diagnostics.extend(problems);
        if failed {
            rejected.insert(name);
            continue;
        }
        let host = ip.unwrap_or_else(|| name.clone());
        let node = Node { name: name.clone(), host, user, password, identity, port, local, ssh_options };
        nodes.insert(name, Arc::new(node));
    }
    nodes
}
