//! A YAML tree whose every node knows where it was written.
//!
//! Loom reports configuration problems at `file:line:col`, also for values that are
//! syntactically fine but wrong (an unknown node, a bad cron expression), and also
//! when the value came through an alias from the datafile. `serde-saphyr` gives every
//! node its position (the alias use and the anchor's definition); this module turns
//! that into a plain tree with positions already mapped back from the concatenated
//! datafile + manifest text to the file a person edits. It does not interpret keys:
//! that is the job of `settings.rs`, `node.rs` and `job.rs` beside it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::diagnostics::{Diagnostic, Location};

/// How deep a configuration's YAML may nest (lists and maps in lists and maps).
/// serde-saphyr's default (64) needs more stack than the 2 MiB of a thread such as
/// a reload's, in a debug build; no configuration needs more than a few levels.
pub(crate) const MAX_DEPTH: usize = 32;

/// How values are read: YAML 1.2's core schema, so that nothing a person wrote
/// turns into something else. Only `true`/`false` are booleans (`y`, `no`, `on`
/// stay strings, as in the original Loom); a number written with a leading zero
/// (`0755`) stays the string it was written as (file modes keep their octal
/// meaning, and nothing is silently read as decimal); `${VAR}` is not expanded.
fn options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    options.legacy_octal_numbers = false;
    options.with_snippet = false;
    let mut budget = options.budget.unwrap_or_default();
    budget.max_depth = MAX_DEPTH;
    options.budget = Some(budget);
    options
}

/// One file's text, kept so diagnostics can show the offending line.
#[derive(Debug)]
pub(crate) struct SourceFile {
    pub(crate) path: PathBuf,
    pub(crate) text: String,
}

impl SourceFile {
    pub(crate) fn read(path: &Path) -> Result<Arc<SourceFile>, super::read::ReadError> {
        let text = super::read::read_text(path)?;
        Ok(Arc::new(SourceFile { path: path.to_path_buf(), text }))
    }

    pub(crate) fn new(path: impl Into<PathBuf>, text: String) -> SourceFile {
        SourceFile { path: path.into(), text }
    }

    pub(crate) fn line(&self, line: usize) -> Option<&str> {
        self.text.lines().nth(line.checked_sub(1)?)
    }

    fn line_count(&self) -> usize {
        self.text.lines().count()
    }
}

/// The files whose texts were joined into one YAML document, in order.
///
/// The original Loom prepends the datafile's text to every job manifest so the
/// manifest can use the datafile's anchors; a position in the joined text is mapped
/// back to the file (and line) it came from.
#[derive(Debug, Clone)]
pub(crate) struct Joined {
    parts: Vec<(usize, Arc<SourceFile>)>,
    text: String,
}

impl Joined {
    pub(crate) fn new(files: &[Arc<SourceFile>]) -> Joined {
        let mut text = String::new();
        let mut parts = Vec::new();
        for file in files {
            parts.push((text.lines().count(), Arc::clone(file)));
            text.push_str(&file.text);
            if !file.text.is_empty() && !file.text.ends_with('\n') {
                text.push('\n');
            }
            debug_assert_eq!(text.lines().count(), parts.last().unwrap().0 + file.line_count());
        }
        Joined { parts, text }
    }

    pub(crate) fn locate(&self, line: u64, column: u64) -> Location {
        let line = line.max(1) as usize;
        let (offset, file) = self
            .parts
            .iter()
            .rev()
            .find(|(start, _)| *start < line)
            .or(self.parts.first())
            .expect("a joined document has at least one file");
        Location { file: Arc::clone(file), line: line - offset, column: column.max(1) as usize }
    }

    /// Parses the joined text; a syntax error becomes a diagnostic in the right file.
    pub(crate) fn parse(&self) -> Result<Node, Diagnostic> {
        match serde_saphyr::from_str_with_options::<Spanned<Raw>>(&self.text, options()) {
            Ok(raw) => Ok(Node::from_raw(raw, self)),
            Err(err) => {
                let location = err.location().map(|l| self.locate(l.line(), l.column()));
                let message = syntax_message(&err);
                let diagnostic = Diagnostic::error(format!("invalid YAML: {message}"));
                Err(match location {
                    Some(location) => diagnostic.at(location),
                    None => diagnostic.at(self.locate(1, 1)),
                })
            }
        }
    }
}

impl Joined {
    /// Parses the joined text, handing each entry of the top-level `jobs:` map to
    /// `entry` as soon as it is read and dropping it after; other top-level keys are
    /// skipped (anchors in them still resolve). A `jobs:` that is not a map is an error.
    pub(crate) fn parse_jobs(&self, entry: &mut dyn FnMut(Node, Node)) -> Result<(), Diagnostic> {
        let seed = TopLevel { joined: self, entry, wrong: None };
        let result =
            serde_saphyr::with_deserializer_from_str_with_options(&self.text, options(), |de| seed.deserialize(de));
        match result {
            Ok(None) => Ok(()),
            Ok(Some(key)) => {
                Err(Diagnostic::error("expected a map of job names to job definitions under `jobs:`").at(key))
            }
            Err(err) => {
                let location =
                    err.location().map(|l| self.locate(l.line(), l.column())).unwrap_or_else(|| self.locate(1, 1));
                Err(Diagnostic::error(format!("invalid YAML: {}", syntax_message(&err))).at(location))
            }
        }
    }
}

/// The document's root, read for its `jobs:` entry only. Answers the place of a
/// `jobs:` key whose value is not a map.
struct TopLevel<'a> {
    joined: &'a Joined,
    entry: &'a mut dyn FnMut(Node, Node),
    wrong: Option<Location>,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Option<Location>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Option<Location>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML document")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        while let Some(key) = map.next_key::<Spanned<Raw>>()? {
            if !matches!(&key.value, Raw::Str(k) if k == "jobs") {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let at = self.joined.locate(key.defined.line(), key.defined.column());
            let jobs = Jobs { joined: self.joined, entry: &mut *self.entry };
            if !map.next_value_seed(jobs)? {
                self.wrong = Some(at);
            }
        }
        Ok(self.wrong)
    }
}

/// The value of `jobs:`, streamed entry by entry. Answers whether it was a map (or
/// empty).
struct Jobs<'a> {
    joined: &'a Joined,
    entry: &'a mut dyn FnMut(Node, Node),
}

impl<'de> DeserializeSeed<'de> for Jobs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Jobs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of job names to job definitions")
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_none<E>(self) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while let Some(key) = map.next_key::<Spanned<Raw>>()? {
            let value = map.next_value::<Spanned<Raw>>()?;
            (self.entry)(Node::from_raw(key, self.joined), Node::from_raw(value, self.joined));
        }
        Ok(true)
    }
}

/// serde-saphyr renders a snippet of the joined text into its message; keep only the
/// first line, without its own `line N column M` prefix, since ours points at the
/// right file instead.
fn syntax_message(err: &serde_saphyr::Error) -> String {
    // The user-facing wording, without the library's advice about its own options.
    let full = err.render_with_formatter(&serde_saphyr::UserMessageFormatter);
    let first = full.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error:").unwrap_or(first).trim();
    // The parser says this in two ways (its own limit, and the budget's).
    if first.contains("Depth {")
        || first.contains("budget breached: Depth")
        || first.contains("recursion limit exceeded")
    {
        return format!("nested deeper than {MAX_DEPTH} levels of lists and maps");
    }
    let first = match first.split_once(": ") {
        Some((prefix, rest)) if prefix.starts_with("line ") => rest,
        _ => first,
    };
    // Our diagnostic points at the place itself.
    let first = match first.rfind(" at line ") {
        Some(cut) if first[cut..].contains(", column ") => &first[..cut],
        _ => first,
    };
    first.to_string()
}

/// A YAML value with the place it was written.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) value: Value,
    /// Where the value's text is (for an alias: inside the anchor's definition).
    pub(crate) at: Location,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    fn from_raw(raw: Spanned<Raw>, joined: &Joined) -> Node {
        let at = joined.locate(raw.defined.line(), raw.defined.column());
        let value = match raw.value {
            Raw::Null => Value::Null,
            Raw::Bool(b) => Value::Bool(b),
            Raw::Int(i) => Value::Int(i),
            Raw::Float(f) => Value::Float(f),
            Raw::Str(s) => Value::Str(s),
            Raw::Seq(items) => Value::Seq(items.into_iter().map(|item| Node::from_raw(item, joined)).collect()),
            Raw::Map(entries) => Value::Map(
                entries.into_iter().map(|(k, v)| (Node::from_raw(k, joined), Node::from_raw(v, joined))).collect(),
            ),
        };
        Node { value, at }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) if self.written_as_integer() => {
                "a whole number out of range (whole numbers go from -9223372036854775808 to 9223372036854775807)"
            }
            Value::Float(_) => "a number with a fraction",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A scalar as text, the way YAML wrote it (`22` and `"22"` both give "22").
    pub(crate) fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub(crate) fn entries(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    pub(crate) fn expected(&self, what: &str) -> Diagnostic {
        Diagnostic::error(format!("expected {what}, found {}", self.kind())).at(self.at.clone())
    }

    /// A number the parser read as a float although it is written as a whole
    /// number (one below the smallest integer): it cannot be kept exactly.
    fn written_as_integer(&self) -> bool {
        let Some(line) = self.at.file.line(self.at.line) else { return false };
        let token: String = line
            .chars()
            .skip(self.at.column.saturating_sub(1))
            .take_while(|c| !matches!(c, ',' | ']' | '}' | ' ' | '\t' | '#'))
            .collect();
        let digits = token.strip_prefix(['-', '+']).unwrap_or(&token);
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
    }

    /// The value as JSON, which is what task arguments travel as. Nothing is
    /// changed on the way: a map key that is not a single value (a list, a map,
    /// nothing), two keys that would become the same text (`1` and `"1"`), and a
    /// number JSON cannot hold (`.nan`, `.inf`) are errors at their place.
    pub(crate) fn to_json(&self, errors: &mut Vec<Diagnostic>) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(_) if self.written_as_integer() => {
                errors.push(Diagnostic::error(TOO_LARGE).at(self.at.clone()));
                J::Null
            }
            Value::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(number) => J::Number(number),
                None => {
                    errors.push(
                        Diagnostic::error(format!("`{f}` cannot be passed to a task"))
                            .at(self.at.clone())
                            .help("a task receives finite numbers only; quote it to pass it as text"),
                    );
                    J::Null
                }
            },
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(|item| item.to_json(errors)).collect()),
            Value::Map(entries) => {
                let mut object = serde_json::Map::new();
                let mut seen: Vec<(String, &Location)> = Vec::new();
                for (key, value) in entries {
                    let text = match &key.value {
                        Value::Str(_) | Value::Int(_) | Value::Bool(_) | Value::Float(_) => key.scalar_text(),
                        Value::Null | Value::Seq(_) | Value::Map(_) => None,
                    };
                    let Some(text) = text else {
                        errors.push(
                            Diagnostic::error(format!("a map key must be text or a number, not {}", key.kind()))
                                .at(key.at.clone())
                                .help("task arguments travel as JSON, whose keys are text; quote the key"),
                        );
                        continue;
                    };
                    if let Some((_, first)) = seen.iter().find(|(t, _)| *t == text) {
                        errors.push(
                            Diagnostic::error(format!("map key `{text}` appears twice once keys are read as text"))
                                .at(key.at.clone())
                                .help(format!(
                                    "the other one is at {first}; task arguments travel as JSON, whose keys are text"
                                )),
                        );
                        continue;
                    }
                    seen.push((text.clone(), &key.at));
                    object.insert(text, value.to_json(errors));
                }
                J::Object(object)
            }
        }
    }
}

/// An integer that a task could not receive unchanged.
const TOO_LARGE: &str = "integer out of range: whole numbers go from -9223372036854775808 to 9223372036854775807; quote it to pass it as text";

/// What serde-saphyr hands us before positions are mapped to files.
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }
    // A whole number out of i64's range is kept as a float, as the parser keeps one
    // below it: where it is used, it is an error at its place (`to_json`, `kind`),
    // and the rest of the file is still checked.
    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
        Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
        Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Raw::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> Arc<SourceFile> {
        Arc::new(SourceFile { path: PathBuf::from(name), text: text.to_string() })
    }

    #[test]
    fn positions_map_back_to_the_file_they_came_from() {
        let data = file("data.yaml", "hosts:\n  - &db [db1, db2]\n");
        let manifest = file("jobs.yaml", "jobs:\n  a:\n    targets: *db\n");
        let joined = Joined::new(&[data, manifest]);
        let root = joined.parse().unwrap();
        let targets = root.get("jobs").unwrap().get("a").unwrap().get("targets").unwrap();
        let Value::Seq(items) = &targets.value else { panic!("not a list") };
        let db2 = &items[1];
        assert_eq!(db2.at.file.path, PathBuf::from("data.yaml"));
        assert_eq!((db2.at.line, db2.at.column), (2, 15));
        let jobs = root.get("jobs").unwrap();
        assert_eq!(jobs.get("a").unwrap().at.file.path, PathBuf::from("jobs.yaml"));
        assert_eq!(jobs.get("a").unwrap().at.line, 3);
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_an_error_not_a_stack_overflow() {
        for depth in [MAX_DEPTH - 1, MAX_DEPTH + 1, 1000] {
            let text = format!("jobs: {}{}\n", "[".repeat(depth), "]".repeat(depth));
            let joined = Joined::new(&[file("jobs.yaml", &text)]);
            // On a thread with the default 2 MiB stack, as a reload's.
            let (parsed, streamed) =
                std::thread::spawn(move || (joined.parse(), joined.parse_jobs(&mut |_, _| {}))).join().unwrap();
            assert_eq!(parsed.is_ok(), depth < MAX_DEPTH, "depth {depth}");
            if let Err(d) = parsed {
                assert!(d.message.contains("nested deeper than 32 levels"), "{}", d.message);
            }
            assert!(streamed.is_err(), "depth {depth}: `jobs:` is a list, not a map");
        }
    }

    #[test]
    fn syntax_errors_point_into_the_manifest_not_the_concatenation() {
        let data = file("data.yaml", "a: 1\nb: 2\n");
        let manifest = file("jobs.yaml", "jobs:\n  x: [1, 2\n  y: : :\n");
        let err = Joined::new(&[data, manifest]).parse().unwrap_err();
        let at = err.location.unwrap();
        assert_eq!(at.file.path, PathBuf::from("jobs.yaml"));
        assert!(at.line >= 2, "{at:?}");
    }

    fn json_of(text: &str) -> Result<serde_json::Value, Vec<String>> {
        let root = Joined::new(&[file("a.yaml", &format!("v: {text}\n"))]).parse().map_err(|d| vec![d.one_line()])?;
        let mut errors = Vec::new();
        let json = root.get("v").unwrap().to_json(&mut errors);
        if errors.is_empty() { Ok(json) } else { Err(errors.iter().map(Diagnostic::one_line).collect()) }
    }

    #[test]
    fn values_reach_tasks_exactly_as_written() {
        use serde_json::json;
        assert_eq!(
            json_of("{y: 1, n: 2, on: 3, off: 4, yes: 5, no: 6, Y: 7, true: 8}").unwrap(),
            json!({"y": 1, "n": 2, "on": 3, "off": 4, "yes": 5, "no": 6, "Y": 7, "true": 8})
        );
        assert_eq!(json_of("[yes, no, on, y, true, False]").unwrap(), json!(["yes", "no", "on", "y", true, false]));
        assert_eq!(json_of("{mode: 0755}").unwrap(), json!({"mode": "0755"}));
        assert_eq!(json_of("[755, 0o755, 0x1f, -007, 0.5, 1e3]").unwrap(), json!([755, 493, 31, "-007", 0.5, 1000.0]));
        assert_eq!(json_of("9223372036854775807").unwrap(), json!(i64::MAX));
        assert_eq!(json_of("-9223372036854775808").unwrap(), json!(i64::MIN));
        for big in ["9223372036854775808", "-9223372036854775809", "99999999999999999999999"] {
            let err = json_of(big).unwrap_err();
            assert!(err[0].starts_with("a.yaml:1:4: ") && err[0].contains("integer out of range"), "{big}: {err:?}");
        }
    }

    #[test]
    fn keys_that_cannot_be_kept_are_errors_at_their_place() {
        let err = json_of("{1: a, \"1\": b}").unwrap_err();
        assert!(err[0].starts_with("a.yaml:1:11: map key `1` appears twice"), "{err:?}");
        let err = json_of("{true: a, \"true\": b}").unwrap_err();
        assert!(err[0].contains("key `true`"), "{err:?}");
        let err = json_of("{[a, b]: 1, ~: 2, {c: d}: 3}").unwrap_err();
        assert_eq!(err.len(), 3, "{err:?}");
        assert!(err[0].starts_with("a.yaml:1:5: a map key must be text or a number, not a list"), "{err:?}");
        assert!(err[1].contains("not nothing"), "{err:?}");
        let err = json_of("{a: 1, a: 2}").unwrap_err();
        assert!(err[0].contains("duplicate"), "{err:?}");
        assert!(!err[0].contains("DuplicateKeyPolicy") && !err[0].contains("Options"), "{err:?}");
        let err = json_of("[.nan]").unwrap_err();
        assert!(err[0].contains("a.yaml:1:"), "{err:?}");
    }
}
