//! A resource type's field schema, and checking a declaration against it.
//!
//! The schema comes from the type's own module (`fn fields()`), so a type in
//! `taskspath` is checked exactly like a bundled one. Checking is pure: it turns the
//! declared fields into the `want` map the type receives (defaults filled in), or
//! into diagnostics at each field's `file:line:col`. It does not run the type.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::config::{Diagnostic, Resource};

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    String,
    /// A string whose changes are shown as a diff (file content).
    Text,
    Bool,
    Int,
    /// Octal text such as "0644".
    Mode,
    /// A list of strings (one string is a list of one).
    List,
    Any,
}

impl Kind {
    fn parse(text: &str) -> Option<Kind> {
        Some(match text {
            "string" => Kind::String,
            "text" => Kind::Text,
            "bool" => Kind::Bool,
            "int" => Kind::Int,
            "mode" => Kind::Mode,
            "list" => Kind::List,
            "any" => Kind::Any,
            _ => return None,
        })
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::String | Kind::Text => "a string",
            Kind::Bool => "true or false",
            Kind::Int => "a whole number",
            Kind::Mode => "an octal mode in quotes, such as \"0644\"",
            Kind::List => "a string or a list of strings",
            Kind::Any => "any value",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct FieldSpec {
    pub(crate) kind: Kind,
    pub(crate) required: bool,
    /// Allowed values (as text), if restricted.
    pub(crate) values: Vec<String>,
    pub(crate) default: Option<Json>,
}

/// A type's fields, by name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Schema {
    pub(crate) fields: BTreeMap<String, FieldSpec>,
}

impl Schema {
    /// Reads what `fn fields()` returned (as JSON); an error says what is wrong with it.
    pub(crate) fn from_json(value: &Json) -> Result<Schema, String> {
        let Json::Object(map) = value else {
            return Err("fn fields() must return a map of field name to #{kind, required, values, default}".into());
        };
        let mut fields = BTreeMap::new();
        for (name, spec) in map {
            if name == super::run::PROBED || crate::config::resource::COMMON_FIELDS.contains(&name.as_str()) {
                return Err(format!("fn fields() declares `{name}`, which the engine reserves"));
            }
            let Json::Object(spec) = spec else {
                return Err(format!("field `{name}` of fn fields() must be a map such as #{{kind: \"string\"}}"));
            };
            let kind_text = spec.get("kind").and_then(Json::as_str).unwrap_or("any");
            let kind = Kind::parse(kind_text).ok_or_else(|| {
                format!("field `{name}` has kind `{kind_text}`; kinds are string, text, bool, int, mode, list, any")
            })?;
            let required = spec.get("required").and_then(Json::as_bool).unwrap_or(false);
            let values = match spec.get("values") {
                Some(Json::Array(items)) => items.iter().map(text_of).collect(),
                _ => Vec::new(),
            };
            let default = spec.get("default").filter(|d| !d.is_null()).cloned();
            fields.insert(name.clone(), FieldSpec { kind, required, values, default });
        }
        Ok(Schema { fields })
    }

    /// Whether the type takes file content (and so `source:` and `template:`).
    pub(crate) fn takes_content(&self) -> bool {
        self.fields.contains_key("content")
    }

    /// The declared fields as the type's `want` (defaults filled in), or every
    /// problem at its place.
    pub(crate) fn check(&self, resource: &Resource) -> Result<serde_json::Map<String, Json>, Vec<Diagnostic>> {
        let mut want = serde_json::Map::new();
        let mut problems = Vec::new();
        let kind = &resource.kind.value;
        // A type that takes content also takes it from `source:` or `template:`.
        let content_from: &[&str] = if self.takes_content() { &["source", "template"] } else { &[] };
        let known = || {
            let mut names: Vec<&str> =
                self.fields.keys().map(String::as_str).chain(content_from.iter().copied()).collect();
            names.sort_unstable();
            names.join(", ")
        };
        // Given, even if wrongly: not reported again as missing.
        let given: std::collections::HashSet<&str> =
            resource.fields.iter().map(|(name, _)| name.value.as_str()).collect();
        for (name, value) in &resource.fields {
            let Some(spec) = self.fields.get(&name.value) else {
                let names: Vec<&str> = self.fields.keys().map(String::as_str).collect();
                let near = crate::config::nearest_key(&name.value, &names);
                let help = match near {
                    Some(near) => format!("did you mean `{near}`? fields of `{kind}`: {}", known()),
                    None => format!(
                        "fields of `{kind}`: {}; common fields: {}",
                        known(),
                        crate::config::resource::COMMON_FIELDS.join(", ")
                    ),
                };
                problems.push(
                    Diagnostic::error(format!("unknown field `{}` in resource `{kind}`", name.value))
                        .at(name.at.clone())
                        .help(help),
                );
                continue;
            };
            match conform(spec, &value.value) {
                Ok(json) => {
                    if !spec.values.is_empty() && !spec.values.contains(&text_of(&json)) {
                        problems.push(
                            Diagnostic::error(format!(
                                "`{}` of resource `{kind}` is `{}`; expected one of {}",
                                name.value,
                                text_of(&json),
                                spec.values.join(", ")
                            ))
                            .at(value.at.clone()),
                        );
                        continue;
                    }
                    want.insert(name.value.clone(), json);
                }
                Err(why) => problems.push(
                    Diagnostic::error(format!(
                        "`{}` of resource `{kind}` must be {}{why}",
                        name.value,
                        spec.kind.describe()
                    ))
                    .at(value.at.clone()),
                ),
            }
        }
        if resource.content.is_some() && !self.takes_content() {
            let at = resource.content.as_ref().map(|c| c.at.clone()).expect("checked");
            problems.push(
                Diagnostic::error(format!("resource `{kind}` takes no content, so no `source` or `template`"))
                    .at(at)
                    .help(format!("fields of `{kind}`: {}", known())),
            );
        }
        for (name, spec) in &self.fields {
            if want.contains_key(name)
                || given.contains(name.as_str())
                || (name == "content" && resource.content.is_some())
            {
                continue;
            }
            if spec.required {
                problems.push(
                    Diagnostic::error(format!("resource `{kind}` has no `{name}` (required)"))
                        .at(resource.kind.at.clone()),
                );
            } else if let Some(default) = &spec.default {
                want.insert(name.clone(), default.clone());
            }
        }
        if problems.is_empty() { Ok(want) } else { Err(problems) }
    }
}

/// The value as the field's kind wants it; `Err` carries extra words for the message.
fn conform(spec: &FieldSpec, value: &Json) -> Result<Json, String> {
    match (spec.kind, value) {
        (Kind::Any, v) => Ok(v.clone()),
        (Kind::String | Kind::Text, Json::String(_)) => Ok(value.clone()),
        // `port: 22` for a string field: YAML wrote a number the user meant as text.
        (Kind::String, Json::Number(n)) => Ok(Json::String(n.to_string())),
        (Kind::Bool, Json::Bool(_)) => Ok(value.clone()),
        (Kind::Int, Json::Number(n)) if n.is_i64() => Ok(value.clone()),
        (Kind::Mode, Json::String(text)) => {
            let digits = text.strip_prefix("0o").unwrap_or(text);
            match u32::from_str_radix(digits, 8) {
                Ok(mode) if !digits.is_empty() && mode <= 0o7777 => Ok(Json::String(format!("{mode:04o}"))),
                _ => Err(format!(", not `{text}`")),
            }
        }
        (Kind::Mode, Json::Number(n)) => {
            let digits = n.to_string();
            let digits = digits.trim_start_matches('0');
            // 644 was meant as octal digits, 493 can only be 0o755 read as a number;
            // 2541 may be either.
            let as_digits = digits.chars().all(|c| ('0'..='7').contains(&c)).then(|| format!("\"0{digits}\""));
            let as_number = n.as_u64().filter(|mode| *mode <= 0o7777).map(|mode| format!("\"{mode:04o}\""));
            let meant = match (as_digits, as_number) {
                (Some(digits), Some(number)) => {
                    format!(
                        "{digits} (or {number} if you wrote 0o{})",
                        number.trim_matches('"').trim_start_matches('0')
                    )
                }
                (Some(digits), _) => digits,
                (None, Some(number)) => number,
                (None, None) => "\"0644\"".to_string(),
            };
            Err(format!(", not the number {n}: YAML reads 644 and 0o644 as different numbers, so write {meant}"))
        }
        (Kind::List, Json::String(_)) => Ok(Json::Array(vec![value.clone()])),
        (Kind::List, Json::Array(items)) if items.iter().all(Json::is_string) => Ok(value.clone()),
        (_, other) => Err(format!(", not {}", json_kind(other))),
    }
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "nothing",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a map",
    }
}

/// A scalar as text (`present`, `22`, `true`), for allowed values and labels.
pub(crate) fn text_of(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::config::SourceFile;
    use crate::config::resource::parse_list_for_tests;

    fn schema() -> Schema {
        Schema::from_json(&json!({
            "path": {"kind": "string", "required": true},
            "content": {"kind": "text"},
            "mode": {"kind": "mode"},
            "state": {"kind": "string", "values": ["present", "absent"], "default": "present"},
            "force": {"kind": "bool"},
        }))
        .unwrap()
    }

    fn check(yaml: &str) -> Result<serde_json::Map<String, Json>, Vec<String>> {
        let file = Arc::new(SourceFile::new("jobs/a.yaml", format!("resources:\n  - {yaml}\n")));
        let resources = parse_list_for_tests(&file);
        let line = |d: &Diagnostic| format!("{} [{}]", d.one_line(), d.help.clone().unwrap_or_default());
        schema().check(&resources[0]).map_err(|ds| ds.iter().map(line).collect())
    }

    #[test]
    fn fields_become_want_with_defaults_and_normal_modes() {
        let want = check("file: {path: /x, mode: \"644\"}").unwrap();
        assert_eq!(Json::Object(want), json!({"path": "/x", "mode": "0644", "state": "present"}));
    }

    #[test]
    fn a_field_given_wrongly_is_not_also_missing_and_content_fields_are_named() {
        let errors = check("file: {path: [1, 2]}").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].contains("`path` of resource `file` must be"), "{errors:#?}");
        let errors = check("file: {path: /x, colour: red}").unwrap_err();
        assert!(
            errors[0].contains("fields of `file`: content, force, mode, path, source, state, template"),
            "{errors:#?}"
        );
    }

    #[test]
    fn a_mode_written_as_a_number_is_refused_with_the_text_meant() {
        for (written, meant) in [
            ("644", "\"0644\" (or \"1204\" if you wrote 0o1204)"),
            ("0o755", "\"0755\""),
            ("0o4755", "\"02541\" (or \"4755\" if you wrote 0o4755)"),
            ("7777777", "\"07777777\""),
        ] {
            let errors = check(&format!("file: {{path: /x, mode: {written}}}")).unwrap_err();
            assert!(errors[0].contains(&format!("so write {meant}")), "{written}: {errors:#?}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_its_field() {
        let errors = check("file: {mode: 644, state: gone, force: yes, contnet: x}").unwrap_err();
        let expect = [
            "jobs/a.yaml:2:18: `mode` of resource `file` must be an octal mode in quotes, such as \"0644\", not the number 644",
            "jobs/a.yaml:2:30: `state` of resource `file` is `gone`; expected one of present, absent",
            "jobs/a.yaml:2:43: `force` of resource `file` must be true or false, not a string",
            "jobs/a.yaml:2:48: unknown field `contnet` in resource `file`",
            "jobs/a.yaml:2:5: resource `file` has no `path` (required)",
        ];
        for want in expect {
            assert!(errors.iter().any(|e| e.starts_with(want)), "{want}\n not in {errors:#?}");
        }
        assert_eq!(errors.len(), expect.len(), "{errors:#?}");
        assert!(errors.iter().any(|e| e.contains("did you mean `content`?")), "{errors:#?}");
    }

    #[test]
    fn a_bad_schema_is_refused() {
        assert!(Schema::from_json(&json!({"x": {"kind": "float"}})).unwrap_err().contains("kinds are"));
        assert!(Schema::from_json(&json!([1])).is_err());
    }
}
