//! A job's `resources:` and `handlers:`: typed declarations of how a node should look.
//!
//! Parsed here is what needs only the manifest: each item is a one-key map
//! `TYPE: {fields}`; the common fields (`when`, `notify`, `sensitive`, `sudo`) are
//! taken out and typed; `source:` must name a readable file and `template:` a file
//! that minijinja parses (a syntax error points into the template); `notify` must name
//! a handler of the job. Whether the type exists and its fields fit its schema is
//! checked with the type's module, by `resource::prepare` (the schema lives there).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::diagnostics::{Diagnostic, Location};
use super::fields::resolve_path;
use super::yaml::{Node as YamlNode, SourceFile, Value};

/// A value and where it is written; two are equal when their values are (a reload
/// that only moves a line changes nothing).
#[derive(Debug, Clone)]
pub struct At<T> {
    pub value: T,
    pub at: Location,
}

impl<T: PartialEq> PartialEq for At<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

/// One declaration: `- file: {path: /etc/motd, content: "hi\n", notify: x}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// The type as written: `file`, or a module path with a dot (`site.thing`).
    pub kind: At<String>,
    /// The type's own fields as written, in order (common fields taken out).
    pub fields: Vec<(At<String>, At<serde_json::Value>)>,
    /// `source:` or `template:`, turned into the `content` field when it runs.
    pub content: Option<At<Content>>,
    /// A Rhai expression over `facts`, `args`, `kwargs`, `node`.
    pub when: Option<At<String>>,
    /// Handlers queued when this resource changed.
    pub notify: Vec<At<String>>,
    /// Shows no content, before/after values or diff.
    pub sensitive: bool,
    /// Runs the type's commands as root; `None`: the job's `sudo`.
    pub sudo: Option<bool>,
}

/// Where a file's content comes from besides `content:`.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// A file of the Loom host, read when the resource runs.
    Source(PathBuf),
    /// A minijinja template, read (and parsed) with the configuration.
    Template { path: PathBuf, text: String },
}

/// The keys every resource accepts, handled by the engine and never passed to its type.
pub(crate) const COMMON_FIELDS: &[&str] = &["when", "notify", "sensitive", "sudo"];

impl Resource {
    /// A short name for output: `file[/etc/motd]`.
    pub fn label(&self) -> String {
        let key = ["path", "name", "command", "target"]
            .iter()
            .find_map(|k| self.fields.iter().find(|(name, _)| name.value == *k))
            .map(|(_, value)| match &value.value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        match key {
            Some(key) => format!("{}[{}]", self.kind.value, key),
            None => self.kind.value.clone(),
        }
    }
}

/// Parses a job's `resources:` list; problems go to `errors`, and a resource with
/// problems is left out.
pub(crate) fn parse_list(node: &YamlNode, base: &Path, errors: &mut Vec<Diagnostic>) -> Vec<Resource> {
    let Value::Seq(items) = &node.value else {
        errors.push(node.expected("a list of resources for `resources`, each `- TYPE: {fields}`"));
        return Vec::new();
    };
    items.iter().filter_map(|item| parse_one(item, base, errors)).collect()
}

/// Parses a job's `handlers:` map: name → one declaration.
pub(crate) fn parse_handlers(
    node: &YamlNode,
    base: &Path,
    errors: &mut Vec<Diagnostic>,
) -> Vec<(At<String>, Resource)> {
    let Some(entries) = node.entries() else {
        errors.push(node.expected("a map of handlers for `handlers`, each `NAME: {TYPE: {fields}}`"));
        return Vec::new();
    };
    let mut handlers = Vec::new();
    for (key, value) in entries {
        let Some(name) = key.scalar_text() else {
            errors.push(key.expected("a handler name"));
            continue;
        };
        if let Some(resource) = parse_one(value, base, errors) {
            if !resource.notify.is_empty() {
                errors.push(
                    Diagnostic::error(format!("handler `{name}` has `notify`; handlers do not notify others"))
                        .at(resource.notify[0].at.clone()),
                );
            }
            handlers.push((At { value: name, at: key.at.clone() }, resource));
        }
    }
    handlers
}

/// Every `notify` names a handler of the job.
pub(crate) fn check_notify(resources: &[Resource], handlers: &[(At<String>, Resource)], errors: &mut Vec<Diagnostic>) {
    let names: Vec<&str> = handlers.iter().map(|(name, _)| name.value.as_str()).collect();
    for notify in resources.iter().flat_map(|r| &r.notify) {
        if !names.contains(&notify.value.as_str()) {
            let help = if names.is_empty() {
                "the job has no `handlers:`".to_string()
            } else {
                format!("handlers of the job: {}", names.join(", "))
            };
            errors.push(
                Diagnostic::error(format!("`notify` names handler `{}`, which the job does not have", notify.value))
                    .at(notify.at.clone())
                    .help(help),
            );
        }
    }
}

fn parse_one(item: &YamlNode, base: &Path, errors: &mut Vec<Diagnostic>) -> Option<Resource> {
    let entries = match item.entries() {
        Some(entries) if entries.len() == 1 => entries,
        _ => {
            errors.push(
                item.expected("a resource: a map with one key, the type, e.g. `- file: {path: /etc/motd}`")
                    .help("common fields (when, notify, sensitive, sudo) go inside the type's map"),
            );
            return None;
        }
    };
    let (key, body) = &entries[0];
    let Some(kind) = key.as_str().map(str::to_string) else {
        errors.push(key.expected("a resource type such as file, line, directory, link or command"));
        return None;
    };
    let valid_kind = kind.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if !valid_kind {
        errors.push(
            Diagnostic::error(format!("`{kind}` is not a resource type"))
                .at(key.at.clone())
                .help("a type is a name (file, line, …) or a module path with dots (site.thing)"),
        );
        return None;
    }
    let body_entries: &[(YamlNode, YamlNode)] = match &body.value {
        Value::Map(entries) => entries,
        Value::Null => &[],
        _ => {
            errors.push(body.expected(&format!("a map of fields for resource `{kind}`")));
            return None;
        }
    };
    let before = errors.len();
    let mut resource = Resource {
        kind: At { value: kind.clone(), at: key.at.clone() },
        fields: Vec::new(),
        content: None,
        when: None,
        notify: Vec::new(),
        sensitive: false,
        sudo: None,
    };
    for (name_node, value) in body_entries {
        let Some(name) = name_node.as_str() else {
            errors.push(name_node.expected("a field name"));
            continue;
        };
        match name {
            "when" => match &value.value {
                Value::Str(text) => resource.when = Some(At { value: text.clone(), at: value.at.clone() }),
                Value::Bool(b) => resource.when = Some(At { value: b.to_string(), at: value.at.clone() }),
                _ => errors.push(value.expected("a Rhai expression for `when`, e.g. 'facts.os_family == \"debian\"'")),
            },
            "notify" => {
                let items: Vec<&YamlNode> = match &value.value {
                    Value::Seq(items) => items.iter().collect(),
                    _ => vec![value],
                };
                for item in items {
                    match item.scalar_text() {
                        Some(text) if !matches!(item.value, Value::Bool(_)) => {
                            resource.notify.push(At { value: text, at: item.at.clone() })
                        }
                        _ => errors.push(item.expected("a handler name (or a list of them) for `notify`")),
                    }
                }
            }
            "sensitive" | "sudo" => match value.value {
                Value::Bool(b) if name == "sensitive" => resource.sensitive = b,
                Value::Bool(b) => resource.sudo = Some(b),
                _ => errors.push(value.expected(&format!("true or false for `{name}`"))),
            },
            "source" | "template" => {
                if let Some(content) = parse_content(name, value, base, errors) {
                    if resource.content.is_some() {
                        errors.push(
                            Diagnostic::error("a resource takes one of `content`, `source` and `template`")
                                .at(name_node.at.clone()),
                        );
                    }
                    resource.content = Some(content);
                }
            }
            _ => {
                let json = value.to_json(errors);
                let name = At { value: name.to_string(), at: name_node.at.clone() };
                resource.fields.push((name, At { value: json, at: value.at.clone() }));
            }
        }
    }
    if resource.content.is_some() && resource.fields.iter().any(|(name, _)| name.value == "content") {
        errors.push(
            Diagnostic::error("a resource takes one of `content`, `source` and `template`")
                .at(resource.kind.at.clone()),
        );
    }
    (errors.len() == before).then_some(resource)
}

fn parse_content(name: &str, value: &YamlNode, base: &Path, errors: &mut Vec<Diagnostic>) -> Option<At<Content>> {
    let Some(text) = value.as_str().filter(|t| !t.is_empty()) else {
        errors.push(value.expected(&format!("a path for `{name}`")));
        return None;
    };
    let path = resolve_path(text, base);
    let content = if name == "source" {
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Content::Source(path),
            Ok(_) => {
                errors.push(
                    Diagnostic::error(format!("`source` {} is not a regular file", path.display()))
                        .at(value.at.clone()),
                );
                return None;
            }
            Err(err) => {
                errors.push(
                    Diagnostic::error(format!("`source` {} cannot be read: {err}", path.display()))
                        .at(value.at.clone())
                        .help("relative paths are relative to the main configuration file's folder"),
                );
                return None;
            }
        }
    } else {
        let file = match SourceFile::read(&path) {
            Ok(file) => file,
            Err(err) => {
                errors.push(
                    Diagnostic::error(format!("`template` {} cannot be read: {err}", path.display()))
                        .at(value.at.clone())
                        .help("relative paths are relative to the main configuration file's folder"),
                );
                return None;
            }
        };
        if let Err(d) = parse_template(&file) {
            errors.push(d.help(format!("the template of the resource at {}", value.at)));
            return None;
        }
        Content::Template { path, text: file.text.clone() }
    };
    Some(At { value: content, at: value.at.clone() })
}

/// Parses a template without rendering it; a syntax error points into the template.
fn parse_template(file: &Arc<SourceFile>) -> Result<(), Diagnostic> {
    let env = minijinja::Environment::new();
    let name = file.path.display().to_string();
    match env.template_from_named_str(&name, &file.text) {
        Ok(_) => Ok(()),
        Err(err) => {
            let line = err.line().unwrap_or(1);
            let column = err
                .range()
                .map(|range| {
                    let end = range.start.min(file.text.len());
                    let start = file.text[..end].rfind('\n').map_or(0, |n| n + 1);
                    file.text[start..end].chars().count() + 1
                })
                .unwrap_or(1);
            let why = err.detail().map(str::to_string).unwrap_or_else(|| err.kind().to_string());
            Err(Diagnostic::error(format!("template {name} does not parse: {why}"))
                .at(Location::new(file, line, column)))
        }
    }
}

/// The resources of a file's `resources:` list (unit tests of other parts).
#[cfg(test)]
pub(crate) fn parse_list_for_tests(file: &Arc<SourceFile>) -> Vec<Resource> {
    let root = super::yaml::Joined::new(std::slice::from_ref(file)).parse().expect("test YAML parses");
    let mut errors = Vec::new();
    let resources = parse_list(root.get("resources").expect("a resources list"), Path::new("/"), &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    resources
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::Joined;

    type Parsed = (Vec<Resource>, Vec<(At<String>, Resource)>, Vec<String>);

    fn parse(text: &str, base: &Path) -> Parsed {
        let file = Arc::new(SourceFile::new("jobs/a.yaml", text.to_string()));
        let root = Joined::new(&[file]).parse().unwrap();
        let mut errors = Vec::new();
        let resources = parse_list(root.get("resources").unwrap(), base, &mut errors);
        let handlers = root.get("handlers").map(|h| parse_handlers(h, base, &mut errors)).unwrap_or_default();
        check_notify(&resources, &handlers, &mut errors);
        (resources, handlers, errors.iter().map(Diagnostic::one_line).collect())
    }

    #[test]
    fn common_fields_are_taken_out_and_typed() {
        let text = "resources:\n  - file: {path: /x, content: hi, when: 'facts.uid == 0', notify: [h], sensitive: true, sudo: true}\nhandlers:\n  h: {command: {command: 'true'}}\n";
        let (resources, handlers, errors) = parse(text, Path::new("/"));
        assert!(errors.is_empty(), "{errors:?}");
        let r = &resources[0];
        assert_eq!(r.kind.value, "file");
        assert_eq!(r.label(), "file[/x]");
        assert_eq!(r.fields.iter().map(|(n, _)| n.value.as_str()).collect::<Vec<_>>(), ["path", "content"]);
        assert_eq!(r.when.as_ref().unwrap().value, "facts.uid == 0");
        assert_eq!(r.notify[0].value, "h");
        assert!(r.sensitive);
        assert_eq!(r.sudo, Some(true));
        assert_eq!(handlers[0].0.value, "h");
    }

    #[test]
    fn bad_declarations_are_errors_at_their_place_all_at_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.j2"), "line one\n{% if x %}\nno end\n").unwrap();
        let text = "resources:\n  - file: {path: /x}\n    directory: {path: /y}\n  - file: {path: /x, notify: nope}\n  - file: {path: /x, template: bad.j2}\n  - file: {path: /x, source: missing}\n  - file: {path: /x, sensitive: yes}\n  - file: {path: /x, content: a, source: bad.j2}\n";
        let (resources, _, errors) = parse(text, dir.path());
        assert_eq!(resources.len(), 1, "{errors:?}");
        let expect = [
            "jobs/a.yaml:2:5: expected a resource: a map with one key",
            "jobs/a.yaml:4:30: `notify` names handler `nope`, which the job does not have",
            "bad.j2:2:",
            "`source` ",
            "jobs/a.yaml:7:33: expected true or false for `sensitive`",
            "a resource takes one of `content`, `source` and `template`",
        ];
        for want in expect {
            assert!(errors.iter().any(|e| e.contains(want)), "{want} not in {errors:#?}");
        }
        assert!(errors.iter().any(|e| e.contains("does not parse")), "{errors:#?}");
    }
}
