//! The rule language: parsing TICKscript-like source into an AST, checking it against the node
//! and property catalogue, and planning the pipeline the engine runs.
//!
//! Everything here runs at load time (`alertd check`, `alertd test`, a reload); nothing here is on
//! the per-point path.

pub mod ast;
pub mod parser;

use ast::Pos;
use std::fmt;

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
