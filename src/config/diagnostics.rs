//! Problems found in a configuration, with where they are and how to show them.
//!
//! Loading never stops at the first problem: every part of the configuration is
//! checked and all diagnostics are collected, so one `loom check` shows everything.
//! Rendering follows compilers (and `just`): a headline, `--> file:line:col`, the
//! offending line with a caret, and an optional hint.

use std::fmt;
use std::sync::Arc;

use super::yaml::SourceFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// A place in a file a person edits; lines and columns count from 1.
#[derive(Clone)]
pub struct Location {
    pub(crate) file: Arc<SourceFile>,
    pub line: usize,
    pub column: usize,
}

impl Location {
    pub(crate) fn new(file: &Arc<SourceFile>, line: usize, column: usize) -> Location {
        Location { file: Arc::clone(file), line, column }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.path.display(), self.line, self.column)
    }
}

#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub location: Option<Location>,
    pub help: Option<String>,
    /// The offending line holds a secret: show where it is, not the line.
    pub secret_line: bool,
}

impl Diagnostic {
    pub(crate) fn error(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            location: None,
            help: None,
            secret_line: false,
        }
    }

    pub(crate) fn warning(message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(message) }
    }

    pub(crate) fn at(mut self, location: Location) -> Diagnostic {
        self.location = Some(location);
        self
    }

    /// Shows the location without the line, which holds a secret.
    pub(crate) fn hiding_the_line(mut self) -> Diagnostic {
        self.secret_line = true;
        self
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:col: message`, for log lines and API output.
    pub fn one_line(&self) -> String {
        match &self.location {
            Some(at) => format!("{at}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(f, "{label}: {}", self.message)?;
        if let Some(at) = &self.location {
            let number = at.line.to_string();
            let pad = " ".repeat(number.len());
            writeln!(f, "{pad}--> {at}")?;
            if let Some(line) = at.file.line(at.line).filter(|_| !self.secret_line) {
                // Columns count characters; tabs keep their width in the caret line.
                let lead: String = line
                    .chars()
                    .take(at.column.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                writeln!(f, "{pad} |")?;
                writeln!(f, "{number} | {line}")?;
                writeln!(f, "{pad} | {lead}^")?;
            }
        }
        if let Some(help) = &self.help {
            writeln!(f, "  = help: {help}")?;
        }
        Ok(())
    }
}

/// Diagnostics collected while loading, errors first, then in file order.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        let key = |d: &Diagnostic| d.location.as_ref().map(|l| (l.file.path.clone(), l.line, l.column));
        a.severity.cmp(&b.severity).then_with(|| key(a).cmp(&key(b)))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn renders_file_line_column_and_a_caret_under_the_value() {
        let file = Arc::new(SourceFile {
            path: PathBuf::from("jobs/a.yaml"),
            text: "jobs:\n  a:\n    schedule: \"61 * * * *\"\n".to_string(),
        });
        let d = Diagnostic::error("bad cron expression").at(Location::new(&file, 3, 15));
        let text = d.to_string();
        assert!(text.contains("--> jobs/a.yaml:3:15"), "{text}");
        assert!(text.contains("3 |     schedule: \"61 * * * *\""), "{text}");
        assert!(text.contains("  |               ^"), "{text}");
    }
}
