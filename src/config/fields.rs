//! Reading a YAML map as a record with known fields.
//!
//! Every typed read reports a wrong type at the value's own position and keeps going;
//! `finish` warns about keys nobody asked for, so a typo (`schedul:`) never silently
//! disables part of a job.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono_tz::Tz;

use super::diagnostics::Diagnostic;
use super::yaml::{Node, Value};

pub(crate) struct Fields<'a> {
    node: &'a Node,
    what: String,
    known: Vec<&'static str>,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl<'a> Fields<'a> {
    /// `what` names the record in messages, e.g. "job `backup`".
    pub(crate) fn new(node: &'a Node, what: impl Into<String>) -> Fields<'a> {
        let mut fields = Fields { node, what: what.into(), known: Vec::new(), diagnostics: Vec::new() };
        if !matches!(node.value, Value::Map(_) | Value::Null) {
            let diagnostic = node.expected(&format!("a map of settings for {}", fields.what));
            fields.diagnostics.push(diagnostic);
        }
        fields
    }

    pub(crate) fn node(&mut self, key: &'static str) -> Option<&'a Node> {
        self.known.push(key);
        self.node.get(key).filter(|n| !matches!(n.value, Value::Null))
    }

    pub(crate) fn required(&mut self, key: &'static str, what: &str) -> Option<&'a Node> {
        let found = self.node(key);
        if found.is_none() {
            let diagnostic =
                Diagnostic::error(format!("{} has no `{key}` ({what})", self.what)).at(self.node.at.clone());
            self.diagnostics.push(diagnostic);
        }
        found
    }

    pub(crate) fn string(&mut self, key: &'static str) -> Option<String> {
        let node = self.node(key)?;
        match node.scalar_text() {
            Some(text) => Some(text),
            None => {
                self.diagnostics.push(node.expected(&format!("a string for `{key}`")));
                None
            }
        }
    }

    /// A path, resolved against `base` (see `resolve_path`); a list or a map is an
    /// error at its place.
    pub(crate) fn path(&mut self, key: &'static str, base: &Path) -> Option<PathBuf> {
        let node = self.node(key)?;
        match (&node.value, node.scalar_text()) {
            (Value::Str(_) | Value::Int(_), Some(text)) if !text.is_empty() => Some(resolve_path(&text, base)),
            _ => {
                self.diagnostics.push(node.expected(&format!("a path for `{key}`")));
                None
            }
        }
    }

    /// A path that must be given.
    pub(crate) fn required_path(&mut self, key: &'static str, what: &str, base: &Path) -> Option<PathBuf> {
        self.required(key, what)?;
        self.path(key, base)
    }

    pub(crate) fn boolean(&mut self, key: &'static str) -> Option<bool> {
        let node = self.node(key)?;
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                let mut d = node.expected(&format!("true or false for `{key}`"));
                if matches!(node.as_str(), Some("yes" | "no" | "on" | "off" | "y" | "n" | "Yes" | "No" | "Y" | "N")) {
                    d = d.help("only true and false are booleans in YAML 1.2; other words stay text");
                }
                self.diagnostics.push(d);
                None
            }
        }
    }

    pub(crate) fn integer(&mut self, key: &'static str, min: i64, max: i64) -> Option<i64> {
        let node = self.node(key)?;
        match node.value {
            Value::Int(i) if (min..=max).contains(&i) => Some(i),
            Value::Int(i) => {
                let d =
                    Diagnostic::error(format!("`{key}` must be between {min} and {max}, not {i}")).at(node.at.clone());
                self.diagnostics.push(d);
                None
            }
            _ => {
                self.diagnostics.push(node.expected(&format!("a whole number for `{key}`")));
                None
            }
        }
    }

    /// `30s`, `5m`, `1h 30m`, `250ms`, or a bare number of seconds, at most `max`.
    ///
    /// Every duration key has an upper bound: a value that passes `loom check` must
    /// never overflow the arithmetic it later takes part in (instants, deadlines).
    pub(crate) fn duration(&mut self, key: &'static str, max: Duration) -> Option<Duration> {
        let node = self.node(key)?;
        match bounded_duration(node, key, max) {
            Ok(duration) => Some(duration),
            Err(d) => {
                self.diagnostics.push(d);
                None
            }
        }
    }

    /// A string, or a list of strings (`taskspath: a` and `taskspath: [a, b]`).
    pub(crate) fn strings(&mut self, key: &'static str) -> Option<Vec<&'a Node>> {
        let node = self.node(key)?;
        match &node.value {
            Value::Str(_) => Some(vec![node]),
            Value::Seq(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item.value {
                        Value::Str(_) => out.push(item),
                        _ => self.diagnostics.push(item.expected(&format!("a string in `{key}`"))),
                    }
                }
                Some(out)
            }
            _ => {
                self.diagnostics.push(node.expected(&format!("a string or a list of strings for `{key}`")));
                None
            }
        }
    }

    /// An IANA time zone name such as `Europe/Berlin`.
    pub(crate) fn time_zone(&mut self, key: &'static str) -> Option<Tz> {
        let node = self.node(key)?;
        match node.as_str().map(Tz::from_str) {
            Some(Ok(zone)) => Some(zone),
            _ => {
                let d = Diagnostic::error("unknown time zone")
                    .at(node.at.clone())
                    .help("use an IANA name such as Europe/Berlin or UTC");
                self.diagnostics.push(d);
                None
            }
        }
    }

    /// OpenSSH options, each `Key=Value` (passed as `-o Key=Value`).
    pub(crate) fn ssh_options(&mut self, key: &'static str) -> Vec<String> {
        let mut options = Vec::new();
        for node in self.strings(key).unwrap_or_default() {
            let text = node.as_str().unwrap_or_default();
            if text.contains('=') && !text.starts_with('-') {
                options.push(text.to_string());
            } else {
                let d = Diagnostic::error(format!("ssh option `{text}` in {} is not of the form Key=Value", self.what))
                    .at(node.at.clone())
                    .help("e.g. KexAlgorithms=curve25519-sha256");
                self.diagnostics.push(d);
            }
        }
        options
    }

    /// Warns about every key that no read asked for, and hands back what was found.
    pub(crate) fn finish(mut self) -> Vec<Diagnostic> {
        for (key, _) in self.node.entries().unwrap_or_default() {
            let name = key.scalar_text().unwrap_or_default();
            if !self.known.contains(&name.as_str()) {
                let mut known = self.known.clone();
                known.sort_unstable();
                known.dedup();
                let d =
                    Diagnostic::warning(format!("unknown key `{name}` in {} is ignored", self.what)).at(key.at.clone());
                let d = match nearest(&name, &known) {
                    Some(near) => d.help(format!("did you mean `{near}`? known keys: {}", known.join(", "))),
                    None => d.help(format!("known keys: {}", known.join(", "))),
                };
                self.diagnostics.push(d);
            }
        }
        self.diagnostics
    }
}

/// The known key a misspelt one most likely meant: a few edits away, relative to
/// its length (`schedul`, `shedule` and `Schedule` all mean `schedule`).
pub(crate) fn nearest<'k>(written: &str, known: &[&'k str]) -> Option<&'k str> {
    let written = written.to_lowercase();
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&written, k), *k))
        .filter(|(distance, k)| *distance <= (k.len() / 3).max(1))
        .min()
        .map(|(_, k)| k)
}

/// `30s`, `5m`, `1h 30m`, `250ms`, or a bare number of seconds.
pub(crate) fn parse_duration(node: &Node) -> Result<Duration, String> {
    match &node.value {
        Value::Int(secs) if *secs >= 0 => Ok(Duration::from_secs(*secs as u64)),
        Value::Float(secs) if *secs >= 0.0 => {
            Duration::try_from_secs_f64(*secs).map_err(|_| format!("{secs:e} seconds is out of range"))
        }
        Value::Int(_) | Value::Float(_) => Err("a duration cannot be negative".to_string()),
        Value::Str(text) => humantime::parse_duration(text).map_err(|e| duration_error(text, &e)),
        _ => Err(format!("found {}", node.kind())),
    }
}

/// humantime's reasons in words about the text itself ("expected number at 0" is a
/// byte offset from zero).
fn duration_error(text: &str, err: &humantime::DurationError) -> String {
    use humantime::DurationError as E;
    let char_at = |offset: usize| text.get(offset..).and_then(|rest| rest.chars().next());
    match err {
        E::InvalidCharacter(offset) => match char_at(*offset) {
            Some(c) => format!("`{c}` in `{text}` is not part of a duration"),
            None => format!("`{text}` is not a duration"),
        },
        E::NumberExpected(offset) => match char_at(*offset) {
            Some(c) => format!("a number is expected where `{text}` has `{c}`"),
            None => format!("a number is expected at the end of `{text}`"),
        },
        E::UnknownUnit { unit, value, .. } if unit.is_empty() => format!("`{value}` needs a unit, such as {value}s"),
        E::UnknownUnit { unit, .. } => {
            format!("unknown unit `{unit}`; units are ms, s, m, h, d, w (and spellings such as sec, min, hours, days)")
        }
        E::NumberOverflow => format!("`{text}` is too large"),
        E::Empty => "the duration is empty".to_string(),
    }
}

/// A duration between zero and `max`; anything else is an error at the value that
/// says the allowed range.
pub(crate) fn bounded_duration(node: &Node, key: &str, max: Duration) -> Result<Duration, Diagnostic> {
    let range = format!("`{key}` takes a duration from 0s to {}", humantime::format_duration(max));
    let too_long = || {
        let written = match node.value {
            Value::Float(secs) => format!("{secs:e} seconds"),
            Value::Int(secs) => format!("{secs} seconds"),
            _ => node.scalar_text().unwrap_or_default(),
        };
        Diagnostic::error(format!("`{key}` is too long: {written} is more than {}", humantime::format_duration(max)))
            .at(node.at.clone())
            .help(range.clone())
    };
    match parse_duration(node) {
        Ok(duration) if duration <= max => Ok(duration),
        Ok(_) => Err(too_long()),
        // A number of seconds too large for any duration.
        Err(_) if matches!(node.value, Value::Float(secs) if secs > 0.0) => Err(too_long()),
        Err(why) => Err(Diagnostic::error(format!("expected a duration for `{key}` such as 30s, 5m or 2h: {why}"))
            .at(node.at.clone())
            .help(range)),
    }
}

/// A path from a configuration file: `~/` is the home folder, relative paths are
/// relative to the folder of the file that names them.
pub(crate) fn resolve_path(text: &str, base: &Path) -> PathBuf {
    if let (Some(rest), Some(home)) = (text.strip_prefix("~/"), std::env::var_os("HOME")) {
        return PathBuf::from(home).join(rest);
    }
    base.join(text)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::yaml::{Joined, SourceFile};

    fn duration_of(text: &str, max: Duration) -> Result<Duration, String> {
        let file = Arc::new(SourceFile::new("a.yaml", format!("key: {text}\n")));
        let root = Joined::new(&[file]).parse().map_err(|d| d.message)?;
        let mut fields = Fields::new(&root, "test");
        let found = fields.duration("key", max);
        let messages: Vec<String> = fields.finish().into_iter().map(|d| d.one_line()).collect();
        found.ok_or_else(|| messages.join("; "))
    }

    #[test]
    fn durations_are_checked_against_their_bound_without_panicking() {
        let day = Duration::from_secs(86_400);
        assert_eq!(duration_of("90s", day), Ok(Duration::from_secs(90)));
        assert_eq!(duration_of("1.5", day), Ok(Duration::from_millis(1500)));
        assert_eq!(duration_of("1d", day), Ok(day));
        for (hostile, expect) in [
            ("99999999999999h", "a.yaml:1:6: `key` is too long: 99999999999999h is more than 1day"),
            ("1e308", "`key` is too long: 1e308 seconds is more than 1day"),
            ("86401", "`key` is too long: 86401 seconds is more than 1day"),
            ("-5", "a duration cannot be negative"),
            ("-1e308", "a duration cannot be negative"),
            ("99999999999999999999999999h", "expected a duration for `key`"),
            ("[1, 2]", "found a list"),
            ("soon", "a number is expected where `soon` has `s`"),
            ("5 parsecs", "unknown unit `parsecs`"),
        ] {
            let err = duration_of(hostile, day).unwrap_err();
            assert!(err.contains(expect), "{hostile}: {err}");
        }
    }
}
