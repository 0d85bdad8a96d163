//! Label matchers in Alertmanager syntax.
//!
//! This module owns the [`Matcher`] type (`=`, `!=`, `=~`, `!~`), the
//! matcher-list parser [`parse_matchers`] and the rendering of matchers back
//! to text. Regular expressions are always fully anchored (`^(?:re)$`).
//!
//! Accepted syntax (following Alertmanager's UTF-8 matcher parser):
//!
//! * an optional pair of braces around the whole list: `{a="1", b="2"}`;
//! * matchers separated by commas; one trailing comma is allowed
//!   (`{a="1",}`), a leading or doubled comma is an error; `{}` and the
//!   empty string are the empty list;
//! * whitespace is allowed between all tokens;
//! * label names and values are either double-quoted, with the escapes
//!   `\"`, `\\`, `\n`, `\t` and `\r` (any other escape is an error), or
//!   unquoted: a run of UTF-8 characters other than whitespace and
//!   `{ } ! = ~ , \ " '` and the backtick. An unquoted value may be empty
//!   (`a=` means `a=""`), an unquoted name may not;
//! * therefore `job=~api|web` is valid (`|` is not reserved) and means the
//!   anchored regex `^(?:api|web)$`, while `job=~a{2}` must be quoted.
//!
//! Errors carry the 0-based byte offset in the input where the problem was
//! found.

use std::fmt;

use regex_automata::meta::Regex;

use super::labels::LabelSet;

/// The comparison a matcher performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchOp {
    /// `=`: the value equals.
    Eq,
    /// `!=`: the value differs.
    Ne,
    /// `=~`: the value matches the anchored regex.
    Re,
    /// `!~`: the value does not match the anchored regex.
    NotRe,
}

impl MatchOp {
    /// The operator as written in matcher syntax.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }

    fn is_regex(self) -> bool {
        matches!(self, MatchOp::Re | MatchOp::NotRe)
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors building or parsing matchers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    /// The text could not be parsed; `pos` is a 0-based byte offset.
    #[error("invalid matcher syntax at byte {pos}: {msg}")]
    Syntax {
        /// 0-based byte offset in the input.
        pos: usize,
        /// What was wrong.
        msg: String,
    },
    /// The label name is empty.
    #[error("matcher has an empty label name")]
    EmptyName,
    /// A regex matcher's value does not compile.
    #[error("invalid regex {value:?} for label {name:?}: {msg}")]
    Regex {
        /// Label name.
        name: String,
        /// The regex as written.
        value: String,
        /// The regex compiler's message.
        msg: String,
    },
}

/// One label matcher.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// The comparison.
    pub op: MatchOp,
    /// The value or (unanchored) regex as written.
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl Matcher {
    /// Build a matcher; regex values are compiled anchored as `^(?:value)$`.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Matcher, MatcherError> {
        let name = name.into();
        let value = value.into();
        if name.is_empty() {
            return Err(MatcherError::EmptyName);
        }
        let re = if op.is_regex() {
            Some(
                compile(&format!("^(?:{value})$")).map_err(|msg| MatcherError::Regex {
                    name: name.clone(),
                    value: value.clone(),
                    msg,
                })?,
            )
        } else {
            None
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
        })
    }

    /// Match against a single value (a missing label is passed as `""`).
    pub fn matches_value(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Ne => v != self.value,
            MatchOp::Re => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRe => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    /// Whether the label set matches; a missing label counts as `""`.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        self.matches_value(labels.get(&self.name).unwrap_or(""))
    }

    /// Whether the matcher matches the empty string (i.e. a missing label).
    pub fn matches_empty(&self) -> bool {
        self.matches_value("")
    }
}

/// Compiles an anchored matcher regex, with the message of the regex crate on an error.
///
/// Without a full DFA: the label values a matcher sees are short, and the lazy DFA matches
/// them as fast, while building a full DFA was most of the cost of creating a silence (a
/// quarter of a millisecond for `alertname=~"Disk.*"`; see docs/benchmarks.md).
fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::builder()
        .configure(Regex::config().dfa(false))
        .build(pattern)
        .map_err(|e| match (e.syntax_error(), e.size_limit()) {
            (Some(syntax), _) => syntax.to_string(),
            (None, Some(limit)) => format!("compiled regex exceeds size limit of {limit} bytes"),
            (None, None) => e.to_string(),
        })
}

/// Whether every matcher matches (true for an empty list).
pub fn matches_all(matchers: &[Matcher], labels: &LabelSet) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// Whether `s` is a classic Prometheus label name, `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_plain_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Write `s` double-quoted with the escapes the parser understands.
pub(crate) fn write_quoted(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

impl fmt::Display for Matcher {
    /// `name="value"`; the name is quoted too when it is not a classic
    /// `[a-zA-Z_][a-zA-Z0-9_]*` label name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_matcher(f, &self.name, self.op, &self.value)
    }
}

fn write_matcher(f: &mut impl fmt::Write, name: &str, op: MatchOp, value: &str) -> fmt::Result {
    if is_plain_name(name) {
        f.write_str(name)?;
    } else {
        write_quoted(f, name)?;
    }
    f.write_str(op.as_str())?;
    write_quoted(f, value)
}

/// The matcher `name="value"` that selects exactly this label, quoted as the parser reads it.
pub fn equality_text(name: &str, value: &str) -> String {
    let mut s = String::with_capacity(name.len() + value.len() + 4);
    // Writing to a String cannot fail.
    let _ = write_matcher(&mut s, name, MatchOp::Eq, value);
    s
}

/// Render a list as `{a="1",b=~"x"}` (comma without space, as Alertmanager
/// renders route matchers in route keys).
pub fn format_matchers(ms: &[Matcher]) -> String {
    let mut s = String::from("{");
    for (i, m) in ms.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&m.to_string());
    }
    s.push('}');
    s
}

fn is_reserved(c: char) -> bool {
    c.is_whitespace() || "{}!=~,\\\"'`".contains(c)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, pos: usize, msg: impl Into<String>) -> Result<T, MatcherError> {
        Err(MatcherError::Syntax {
            pos,
            msg: msg.into(),
        })
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn describe(c: Option<char>) -> String {
        match c {
            Some(c) => format!("{c:?}"),
            None => "end of input".to_string(),
        }
    }

    fn quoted(&mut self) -> Result<String, MatcherError> {
        let start = self.pos;
        self.bump(); // opening quote
        let mut out = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None => return self.err(start, "unterminated quoted string"),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some(c) => return self.err(at, format!("unknown escape sequence \\{c}")),
                    None => return self.err(start, "unterminated quoted string"),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn unquoted(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(|c| !is_reserved(c)) {
            self.bump();
        }
        self.src[start..self.pos].to_string()
    }

    fn name(&mut self) -> Result<String, MatcherError> {
        let at = self.pos;
        if self.peek() == Some('"') {
            let n = self.quoted()?;
            if n.is_empty() {
                return self.err(at, "empty label name");
            }
            return Ok(n);
        }
        let n = self.unquoted();
        if n.is_empty() {
            return self.err(
                at,
                format!(
                    "expected a label name, found {}",
                    Self::describe(self.peek())
                ),
            );
        }
        Ok(n)
    }

    fn op(&mut self) -> Result<MatchOp, MatcherError> {
        let at = self.pos;
        let rest = &self.src[self.pos..];
        let (op, len) = if rest.starts_with("=~") {
            (MatchOp::Re, 2)
        } else if rest.starts_with("!=") {
            (MatchOp::Ne, 2)
        } else if rest.starts_with("!~") {
            (MatchOp::NotRe, 2)
        } else if rest.starts_with('=') {
            (MatchOp::Eq, 1)
        } else {
            return self.err(
                at,
                format!(
                    "expected one of = != =~ !~, found {}",
                    Self::describe(self.peek())
                ),
            );
        };
        self.pos += len;
        Ok(op)
    }

    fn matcher(&mut self) -> Result<Matcher, MatcherError> {
        let start = self.pos;
        let name = self.name()?;
        self.skip_ws();
        let op = self.op()?;
        self.skip_ws();
        let value = if self.peek() == Some('"') {
            self.quoted()?
        } else {
            self.unquoted()
        };
        Matcher::new(name, op, value).map_err(|e| match e {
            MatcherError::Regex { msg, value, .. } => MatcherError::Syntax {
                pos: start,
                msg: format!("invalid regex {value:?}: {msg}"),
            },
            other => other,
        })
    }

    fn list(&mut self) -> Result<Vec<Matcher>, MatcherError> {
        let mut out = Vec::new();
        self.skip_ws();
        let open = self.pos;
        let braced = self.peek() == Some('{');
        if braced {
            self.bump();
        }
        loop {
            self.skip_ws();
            match self.peek() {
                None if braced => return self.err(open, "missing closing '}'"),
                None => break,
                Some('}') if braced => {
                    self.bump();
                    break;
                }
                Some('}') => return self.err(self.pos, "unexpected '}' without opening '{'"),
                _ => {}
            }
            out.push(self.matcher()?);
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('}') if braced => {
                    self.bump();
                    break;
                }
                None if braced => return self.err(open, "missing closing '}'"),
                None => break,
                c => {
                    return self.err(
                        self.pos,
                        format!(
                            "expected ',' or {}, found {}",
                            if braced { "'}'" } else { "end of input" },
                            Self::describe(c)
                        ),
                    );
                }
            }
        }
        self.skip_ws();
        if self.pos < self.src.len() {
            return self.err(self.pos, "unexpected input after the matcher list");
        }
        Ok(out)
    }
}

/// Parse a matcher list such as `{alertname!="Watchdog", host=~"node0.*"}`.
/// See the module documentation for the exact syntax.
pub fn parse_matchers(s: &str) -> Result<Vec<Matcher>, MatcherError> {
    Parser { src: s, pos: 0 }.list()
}

/// Parse exactly one matcher (as used in configuration `matchers` lists,
/// where each string holds one matcher). Braces are allowed.
pub fn parse_matcher(s: &str) -> Result<Matcher, MatcherError> {
    let mut v = parse_matchers(s)?;
    match v.len() {
        1 => Ok(v.remove(0)),
        n => Err(MatcherError::Syntax {
            pos: 0,
            msg: format!("expected exactly one matcher, found {n}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_text_parses_back_to_the_same_label() {
        for (k, v) in [
            ("host", "node01"),
            ("msg", "a \"quoted\" \\ line\nnext\ttab"),
            ("cpu-total", "x"),
        ] {
            let m = parse_matcher(&equality_text(k, v)).unwrap();
            assert_eq!(
                (m.name.as_str(), m.op, m.value.as_str()),
                (k, MatchOp::Eq, v)
            );
        }
        assert_eq!(equality_text("host", "a\"b"), "host=\"a\\\"b\"");
    }
    use crate::manager::labels::label_set;

    fn m(name: &str, op: MatchOp, v: &str) -> Matcher {
        Matcher::new(name, op, v).unwrap()
    }

    #[test]
    fn eq_and_ne() {
        let ls = label_set([("a", "1")]);
        assert!(m("a", MatchOp::Eq, "1").matches(&ls));
        assert!(!m("a", MatchOp::Eq, "2").matches(&ls));
        assert!(m("a", MatchOp::Ne, "2").matches(&ls));
        assert!(!m("a", MatchOp::Ne, "1").matches(&ls));
    }

    #[test]
    fn regex_is_fully_anchored() {
        let re = m("host", MatchOp::Re, "node0.*");
        assert!(re.matches(&label_set([("host", "node01")])));
        assert!(!re.matches(&label_set([("host", "xnode01")])));
        let alt = m("job", MatchOp::Re, "api|web");
        assert!(alt.matches(&label_set([("job", "api")])));
        assert!(alt.matches(&label_set([("job", "web")])));
        // Without the group, `^api|web$` would match "apix".
        assert!(!alt.matches(&label_set([("job", "apix")])));
        assert!(!alt.matches(&label_set([("job", "xweb")])));
        let nre = m("job", MatchOp::NotRe, "api|web");
        assert!(nre.matches(&label_set([("job", "apix")])));
        assert!(!nre.matches(&label_set([("job", "web")])));
    }

    #[test]
    fn missing_label_is_empty_string() {
        let ls = LabelSet::new();
        assert!(m("a", MatchOp::Eq, "").matches(&ls));
        assert!(!m("a", MatchOp::Eq, "x").matches(&ls));
        assert!(m("a", MatchOp::Ne, "x").matches(&ls));
        assert!(!m("a", MatchOp::Ne, "").matches(&ls));
        assert!(m("a", MatchOp::Re, ".*").matches(&ls));
        assert!(!m("a", MatchOp::Re, ".+").matches(&ls));
        assert!(m("a", MatchOp::NotRe, ".+").matches(&ls));
        assert!(m("a", MatchOp::Re, ".*").matches_empty());
        assert!(!m("a", MatchOp::Eq, "x").matches_empty());
    }

    #[test]
    fn bad_regex_and_empty_name() {
        assert!(matches!(
            Matcher::new("a", MatchOp::Re, "("),
            Err(MatcherError::Regex { .. })
        ));
        assert_eq!(
            Matcher::new("", MatchOp::Eq, "x"),
            Err(MatcherError::EmptyName)
        );
        // A non-regex op never compiles the value.
        assert!(Matcher::new("a", MatchOp::Eq, "(").is_ok());
        // The compiler's own words: where the syntax breaks, or the size bound.
        let e = Matcher::new("job", MatchOp::Re, "node(")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(r#"invalid regex "node(" for label "job": "#),
            "{e}"
        );
        assert!(e.contains("unclosed group"), "{e}");
        let e = Matcher::new("job", MatchOp::Re, r"\w{1000}{1000}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("exceeds size limit"), "{e}");
    }

    #[test]
    fn regexes_are_anchored_and_unicode_aware() {
        let m = |re: &str, v: &str| Matcher::new("a", MatchOp::Re, re).unwrap().matches_value(v);
        assert!(m("Disk.*", "DiskFull"));
        assert!(!m("Disk.*", "xDiskFull"));
        assert!(!m("web-[0-9]+", "web-12a"));
        assert!(m("warning|info", "info"));
        assert!(!m("warning|info", "informational"));
        assert!(m("é.", "éa"));
        assert!(m(".", "é"), "a dot matches one character, not one byte");
        assert!(m("(?i)disk.*", "DISKFULL"));
    }

    #[test]
    fn parse_examples() {
        let v = parse_matchers(r#"severity="critical", host=~"node0.*""#).unwrap();
        assert_eq!(
            v,
            vec![
                m("severity", MatchOp::Eq, "critical"),
                m("host", MatchOp::Re, "node0.*")
            ]
        );
        let v = parse_matchers(r#"{alertname!="Watchdog"}"#).unwrap();
        assert_eq!(v, vec![m("alertname", MatchOp::Ne, "Watchdog")]);
        let v = parse_matchers("job=~api|web").unwrap();
        assert_eq!(v, vec![m("job", MatchOp::Re, "api|web")]);
        let v = parse_matchers("  {  a = 1 ,b!~ x.y ,  }  ").unwrap();
        assert_eq!(
            v,
            vec![m("a", MatchOp::Eq, "1"), m("b", MatchOp::NotRe, "x.y")]
        );
    }

    #[test]
    fn parse_empty_lists() {
        assert!(parse_matchers("").unwrap().is_empty());
        assert!(parse_matchers("{}").unwrap().is_empty());
        assert!(parse_matchers(" { } ").unwrap().is_empty());
    }

    #[test]
    fn parse_unicode_and_empty_value() {
        let v = parse_matchers("région=Île-de-France,b=").unwrap();
        assert_eq!(
            v,
            vec![
                m("région", MatchOp::Eq, "Île-de-France"),
                m("b", MatchOp::Eq, "")
            ]
        );
        let v = parse_matchers(r#"{"a b"="c"}"#).unwrap();
        assert_eq!(v, vec![m("a b", MatchOp::Eq, "c")]);
    }

    #[test]
    fn parse_escapes() {
        let v = parse_matchers(r#"a="x\"y\\z\nw", b="{},=~!""#).unwrap();
        assert_eq!(v[0].value, "x\"y\\z\nw");
        assert_eq!(v[1].value, "{},=~!");
        let err = parse_matchers(r#"a="\q""#).unwrap_err();
        assert_eq!(
            err,
            MatcherError::Syntax {
                pos: 3,
                msg: "unknown escape sequence \\q".into()
            }
        );
    }

    fn pos_of(s: &str) -> usize {
        match parse_matchers(s).unwrap_err() {
            MatcherError::Syntax { pos, .. } => pos,
            e => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn parse_errors_name_positions() {
        assert_eq!(pos_of(r#"a="unterminated"#), 2);
        assert_eq!(pos_of("{a=b"), 0); // missing close brace points at '{'
        assert_eq!(pos_of("a=b}"), 3);
        assert_eq!(pos_of("a b"), 2); // expected an operator
        assert_eq!(pos_of("a=b c=d"), 4); // missing comma
        assert_eq!(pos_of("{,}"), 1);
        assert_eq!(pos_of("a=b,,c=d"), 4);
        assert_eq!(pos_of("=x"), 0);
        assert_eq!(pos_of("{a=b} x"), 6);
        assert_eq!(pos_of("a=~a{2}"), 4); // '{' reserved when unquoted
        assert_eq!(pos_of(r#"a=~"(""#), 0); // bad regex
        assert_eq!(pos_of(r#"""=x"#), 0);
        let msg = parse_matchers("a b").unwrap_err().to_string();
        assert!(msg.contains("byte 2"), "{msg}");
        assert!(msg.contains("expected one of"), "{msg}");
    }

    #[test]
    fn quoted_regex_with_braces() {
        let v = parse_matchers(r#"a=~"x{2}""#).unwrap();
        assert!(v[0].matches(&label_set([("a", "xx")])));
        assert!(!v[0].matches(&label_set([("a", "xxx")])));
    }

    #[test]
    fn display_round_trips() {
        let cases = [
            m("a", MatchOp::Eq, "1"),
            m("b", MatchOp::Ne, "q\"uote"),
            m("c", MatchOp::Re, "x\\d+\n"),
            m("d", MatchOp::NotRe, ""),
            m("with space", MatchOp::Eq, "v"),
        ];
        assert_eq!(cases[0].to_string(), r#"a="1""#);
        assert_eq!(cases[1].to_string(), r#"b!="q\"uote""#);
        assert_eq!(cases[2].to_string(), r#"c=~"x\\d+\n""#);
        assert_eq!(cases[4].to_string(), r#""with space"="v""#);
        for c in &cases {
            assert_eq!(&parse_matcher(&c.to_string()).unwrap(), c);
        }
        assert_eq!(
            format_matchers(&cases[..2]),
            r#"{a="1",b!="q\"uote"}"#.to_string()
        );
        assert_eq!(format_matchers(&[]), "{}");
    }

    #[test]
    fn matches_all_semantics() {
        let ms = parse_matchers(r#"a="1", b=~"2|3""#).unwrap();
        assert!(matches_all(&ms, &label_set([("a", "1"), ("b", "3")])));
        assert!(!matches_all(&ms, &label_set([("a", "1"), ("b", "4")])));
        assert!(!matches_all(&ms, &label_set([("a", "1")])));
        assert!(matches_all(&[], &LabelSet::new()));
    }

    #[test]
    fn parse_matcher_requires_exactly_one() {
        assert!(parse_matcher("a=1").is_ok());
        assert!(parse_matcher("{a=1}").is_ok());
        assert!(parse_matcher("a=1,b=2").is_err());
        assert!(parse_matcher("").is_err());
    }

    #[test]
    fn whitespace_inside_quotes_is_kept_and_tabs_newlines_tolerated() {
        let v = parse_matchers("{\n\ta = \" x \" ,\n b=~\"\\t\"\n}").unwrap();
        assert_eq!(v[0].value, " x ");
        assert!(v[1].matches(&label_set([("b", "\t")])));
    }

    #[test]
    fn regex_special_chars_in_eq_are_literal() {
        let v = parse_matchers(r#"a="x.*""#).unwrap();
        assert!(v[0].matches(&label_set([("a", "x.*")])));
        assert!(!v[0].matches(&label_set([("a", "xyz")])));
    }
}
