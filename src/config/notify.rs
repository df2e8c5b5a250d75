//! Notification rules (`notifications:` in the main file and in jobs) and how
//! notifications are delivered (`delivery:`, `public_url:` in the main file).
//!
//! Parsing and the checks that need only the YAML and the files it names: known
//! events, a webhook URL that is http(s) with a host, a readable `secret_file`, a
//! `template` that compiles. Whether a notifier `task` exists and takes
//! `(ssh, event)` is checked by `task::catalog`. Sending is `notify/`'s.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::diagnostics::{Diagnostic, Location};
use super::fields::{Fields, resolve_path};
use super::job::TaskPath;
use super::yaml::{Node as YamlNode, Value};
use crate::notify::event::NotifyEvent;

/// The longest first `delivery.backoff` (it doubles after each attempt, up to `MAX_BACKOFF`).
const MAX_FIRST_BACKOFF: Duration = Duration::from_secs(3600);
/// The longest `delivery.timeout`.
const MAX_DELIVERY_TIMEOUT: Duration = Duration::from_secs(300);

/// Where a rule sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyTarget {
    /// An HTTP(S) URL that gets a JSON body by POST.
    Webhook(String),
    /// A Rhai task run on the Loom host, called as `f(ssh, event)`.
    Task(TaskPath),
}

/// One entry of a `notifications:` list.
#[derive(Debug, Clone)]
pub struct NotifyRule {
    pub on: Vec<NotifyEvent>,
    pub target: NotifyTarget,
    /// The HMAC-SHA256 key's file (read when a notification is sent, never logged).
    pub secret_file: Option<PathBuf>,
    /// A minijinja template for the body's `text`.
    pub template: Option<String>,
    /// Where the target (`webhook:` or `task:`) is written.
    pub target_at: Location,
}

/// Rules are the same when they send the same thing to the same place.
impl PartialEq for NotifyRule {
    fn eq(&self, other: &NotifyRule) -> bool {
        let NotifyRule { on, target, secret_file, template, target_at: _ } = self;
        *on == other.on && *target == other.target && *secret_file == other.secret_file && *template == other.template
    }
}

/// How notifications are delivered (`delivery:` in the main file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Attempts per notification before it is given up (`failed`).
    pub attempts: u32,
    /// The wait after the first failed attempt; doubled after each further one.
    pub backoff: Duration,
    /// One webhook request's time limit (connect to answer).
    pub timeout: Duration,
}

impl Default for Delivery {
    fn default() -> Delivery {
        Delivery { attempts: 10, backoff: Duration::from_secs(10), timeout: Duration::from_secs(10) }
    }
}

pub(crate) fn parse_delivery(section: &YamlNode, diagnostics: &mut Vec<Diagnostic>) -> Delivery {
    let mut delivery = Delivery::default();
    let mut fields = Fields::new(section, "the `delivery` settings");
    if let Some(attempts) = fields.integer("attempts", 1, 100) {
        delivery.attempts = attempts as u32;
    }
    if let Some(backoff) = fields.duration("backoff", MAX_FIRST_BACKOFF) {
        delivery.backoff = backoff;
    }
    if let Some(timeout) = fields.duration("timeout", MAX_DELIVERY_TIMEOUT) {
        delivery.timeout = timeout.max(Duration::from_millis(1));
    }
    diagnostics.extend(fields.finish());
    delivery
}

/// `public_url: https://loom.example.com`: the base of the links in notifications.
pub(crate) fn parse_public_url(node: &YamlNode, diagnostics: &mut Vec<Diagnostic>) -> Option<String> {
    let text = node.scalar_text()?;
    match web_url(&text) {
        Ok(()) => Some(text.trim_end_matches('/').to_string()),
        Err(why) => {
            diagnostics.push(Diagnostic::error(format!("`public_url` {why}")).at(node.at.clone()));
            None
        }
    }
}

/// Whether `text` is an http(s) URL with a host; else why not.
fn web_url(text: &str) -> Result<(), String> {
    match reqwest::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        Ok(url) => Err(format!("`{}` is not an http or https URL with a host", redact(&url))),
        Err(err) => Err(format!("is not a URL: {err}")),
    }
}

/// A URL as it may be shown (logs, the API, `loom notifications`): scheme, host and
/// port only, since webhook paths and queries often hold a secret (Slack's do).
pub fn redact(url: &reqwest::Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    if url.path() != "/" || url.query().is_some() {
        shown.push_str("/…");
    }
    shown
}

/// A webhook target as it may be shown; see `redact`.
pub fn redact_text(url: &str) -> String {
    reqwest::Url::parse(url).map(|u| redact(&u)).unwrap_or_else(|_| "(not a URL)".to_string())
}

/// A `notifications:` list; `what` names its owner in messages ("job `backup`").
pub(crate) fn parse_rules(
    node: &YamlNode,
    what: &str,
    base: &std::path::Path,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<NotifyRule> {
    let Value::Seq(items) = &node.value else {
        diagnostics.push(node.expected("a list of rules such as {on: [failure], webhook: URL} for `notifications`"));
        return Vec::new();
    };
    items.iter().filter_map(|item| parse_rule(item, what, base, diagnostics)).collect()
}

fn parse_rule(
    item: &YamlNode,
    what: &str,
    base: &std::path::Path,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<NotifyRule> {
    let mut fields = Fields::new(item, format!("a notification rule of {what}"));
    let mut errors = Vec::new();
    let known = NotifyEvent::ALL.map(NotifyEvent::as_str).join(", ");
    let mut on = Vec::new();
    if let Some(node) = fields.required("on", &format!("the events to notify of: {known}")) {
        let items: Vec<&YamlNode> = match &node.value {
            Value::Seq(items) => items.iter().collect(),
            Value::Str(_) => vec![node],
            _ => {
                errors.push(node.expected(&format!("a list of events for `on` ({known})")));
                Vec::new()
            }
        };
        for event in items {
            match event.as_str().and_then(NotifyEvent::parse) {
                Some(event) if !on.contains(&event) => on.push(event),
                Some(_) => {}
                None => {
                    let written = event.scalar_text().unwrap_or_else(|| event.kind().to_string());
                    errors.push(
                        Diagnostic::error(format!("unknown notification event `{written}` in {what}"))
                            .at(event.at.clone())
                            .help(format!("events are {known}")),
                    );
                }
            }
        }
        if on.is_empty() && errors.is_empty() {
            errors.push(
                Diagnostic::error(format!("a notification rule of {what} listens to no event")).at(node.at.clone()),
            );
        }
    }
    let webhook = fields.node("webhook");
    let task = fields.node("task");
    let secret_file = fields.string("secret_file").map(|p| resolve_path(&p, base));
    let template_node = fields.node("template");
    diagnostics.extend(fields.finish());

    let target = match (webhook, task) {
        (Some(url), None) => match url.as_str().map(|text| (text, web_url(text))) {
            Some((text, Ok(()))) => Some((NotifyTarget::Webhook(text.to_string()), url.at.clone())),
            Some((_, Err(why))) => {
                errors.push(Diagnostic::error(format!("the webhook of {what} {why}")).at(url.at.clone()));
                None
            }
            None => {
                errors.push(url.expected("a URL such as https://hooks.example.com/loom for `webhook`"));
                None
            }
        },
        (None, Some(path)) => match path.as_str().map(TaskPath::from_str) {
            Some(Ok(task)) => Some((NotifyTarget::Task(task), path.at.clone())),
            Some(Err(why)) => {
                errors.push(Diagnostic::error(why).at(path.at.clone()));
                None
            }
            None => {
                errors.push(path.expected("a task path such as site.alerts.mail for `task`"));
                None
            }
        },
        _ => {
            errors.push(
                Diagnostic::error(format!("a notification rule of {what} needs exactly one of `webhook` and `task`"))
                    .at(item.at.clone()),
            );
            None
        }
    };
    if let Some(path) = &secret_file {
        match super::read::read_text(path) {
            Ok(text) if !text.trim().is_empty() => {}
            Ok(_) => errors.push(
                Diagnostic::error(format!("the secret_file {} of {what} is empty", path.display()))
                    .at(item.get("secret_file").map_or(item.at.clone(), |n| n.at.clone())),
            ),
            Err(err) => errors.push(
                Diagnostic::error(format!("failed to read the secret_file {} of {what}: {err}", path.display()))
                    .at(item.get("secret_file").map_or(item.at.clone(), |n| n.at.clone())),
            ),
        }
    }
    let template = match template_node {
        None => None,
        Some(node) => {
            match node.scalar_text() {
                Some(text) => {
                    if let Err(err) = crate::notify::body::check_template(&text) {
                        errors.push(
                        Diagnostic::error(format!("the template of {what} does not compile: {err}"))
                            .at(node.at.clone())
                            .help("templates are minijinja (Jinja2) text, e.g. \"{{ job }}: {{ event }} ({{ status }})\""),
                    );
                    }
                    Some(text)
                }
                None => {
                    errors.push(node.expected("a template string for `template`"));
                    None
                }
            }
        }
    };
    let failed = !errors.is_empty();
    diagnostics.extend(errors);
    let (target, target_at) = target?;
    if failed {
        return None;
    }
    Some(NotifyRule { on, target, secret_file, template, target_at })
}
