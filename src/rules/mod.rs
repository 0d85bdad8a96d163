//! The rule language: parsing TICKscript-like source into an AST, checking it against the node
//! and property catalogue, and planning the pipeline the engine runs.
//!
//! Everything here runs at load time (`alertd check`, `alertd test`, a reload); nothing here is on
//! the per-point path.

pub mod ast;
pub mod check;
pub mod format;
pub mod lambda;
pub mod parser;
pub mod plan;
pub mod template;

use ast::Pos;
use std::fmt;
use std::path::{Path, PathBuf};

/// A problem found in a rule's source, with the position it refers to.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// Where the problem is.
    pub pos: Pos,
    /// What is wrong, in words.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at `pos`.
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            pos,
            message: message.into(),
        }
    }

    /// Formats as `file:line:col: message`, then the offending line and a caret under the column.
    pub fn render(&self, file: &str, source: &str) -> String {
        let mut out = format!("{}:{}: {}", file, self.pos, self.message);
        if let Some(line) = source.lines().nth(self.pos.line.saturating_sub(1) as usize) {
            let gutter = self.pos.line.to_string();
            out.push('\n');
            out.push_str(&format!("{} | {}\n", gutter, line));
            let pad: String = line
                .chars()
                .take(self.pos.col.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("{} | {}^", " ".repeat(gutter.len()), pad));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// Why a rule file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The rule has a syntax or semantic error; the text has `file:line:col`, the line and a caret.
    #[error("{rendered}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The problem.
        diagnostic: Diagnostic,
        /// `file:line:col: message` with the source line and a caret.
        rendered: String,
    },
}

/// The task name of a rule file: its file name without `.tick`.
pub fn task_name(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "rule".to_string(), |s| s.to_string_lossy().into_owned())
}

/// Reads, parses and checks one rule file.
pub fn load_file(path: &Path) -> Result<plan::TaskPlan, LoadError> {
    let source = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_source(path, &source)
}

/// Parses and checks rule source that came from `path`.
pub fn load_source(path: &Path, source: &str) -> Result<plan::TaskPlan, LoadError> {
    check::compile_source(&task_name(path), source).map_err(|diagnostic| LoadError::Invalid {
        path: path.to_path_buf(),
        rendered: diagnostic.render(&path.display().to_string(), source),
        diagnostic,
    })
}

/// The closest known name to `wrong`, if one is close enough to be a likely typo.
pub fn suggest<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (wrong.chars().count() / 3).max(1);
    let w = wrong.to_lowercase();
    known
        .into_iter()
        .filter_map(|k| {
            let kl = k.to_lowercase();
            let d = edit_distance(&w, &kl);
            // A name that starts the other (`crit` / `critical`) is a likely mix-up too.
            let prefix =
                kl.len() >= 3 && w.len() >= 3 && (w.starts_with(&kl) || kl.starts_with(&w));
            (d <= limit || prefix).then_some((d, k))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Formats Unix nanoseconds as RFC 3339 in UTC with trailing zero fractions trimmed
/// (`2026-01-01T00:00:10Z`, `2026-01-01T00:00:10.5Z`), as Kapacitor writes times.
pub fn format_rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    let Some(dt) = chrono::DateTime::from_timestamp(secs, nanos) else {
        return ns.to_string();
    };
    let mut s = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("perod", ["period", "every", "align"]),
            Some("period")
        );
        assert_eq!(suggest("xyz", ["period", "every"]), None);
    }

    #[test]
    fn rfc3339() {
        assert_eq!(format_rfc3339(10_000_000_000), "1970-01-01T00:00:10Z");
        assert_eq!(format_rfc3339(10_500_000_000), "1970-01-01T00:00:10.5Z");
    }
}
