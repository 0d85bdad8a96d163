//! Go `text/template` engine for alert properties.
//!
//! This module owns the template language that Kapacitor users write in alert
//! `id`, `message`, `details` and handler properties: parsing a template once
//! into a tree ([`Template::parse`]), checking it statically (unknown functions,
//! undefined variables and wrong argument counts are parse errors with byte
//! offsets), and rendering it against alert data ([`Template::render`]) with Go's
//! value formatting (`fmt` `%v` and `printf` verbs, `time.Time` and
//! `time.Duration` strings, `encoding/json` output for the `json` function).
//!
//! Supported language: text and `{{ }}` actions, trim markers `{{-`/`-}}`,
//! comments, field chains (`.Tags.host`), `$` and variables (`:=`, `=`),
//! pipelines, parenthesised pipelines, `if`/`else if`/`else`, `with`/`else with`,
//! `range` over maps (sorted keys), lists and ints with `else`, `break`,
//! `continue`, and the functions `and or not len index slice print printf
//! println json eq ne lt le gt ge html js urlquery`. `define`, `template` and
//! `block` are rejected at parse time.
//!
//! Rendering never fails as a whole: a runtime error renders the failing action
//! as empty (or as Go's `%!verb(...)` text for `printf`), is counted in the
//! [`RenderReport`], and the rest of the template still renders. A missing map
//! key renders as an empty string and is counted in `missing_keys`.
//!
//! Known deviations from Go (all deliberate):
//! - `eq`/`ne`/`lt`/... compare ints and floats numerically (Go reports
//!   "incompatible types for comparison"); `nil` compares equal only to `nil`
//!   (Go reports an error); times can be ordered with `lt`/`gt`.
//! - A missing map key renders as the empty string instead of `<no value>`.
//! - Unknown functions, undefined variables, wrong argument counts for builtins
//!   and arguments given to non-functions are parse errors even in branches
//!   that would never execute (Go reports some of these only when executed).
//! - Declarations inside parenthesised pipelines are rejected.
//! - A runtime error does not stop execution (Go stops at the first error); an
//!   `if`/`with` whose condition fails is treated as false, a `range` whose
//!   pipeline fails as empty.
//! - The whole data object (`{{ . }}`, `%v` of `$`) prints as its JSON, since Go
//!   would print an unexported struct layout.
//! - Values carry no Go static type: integers report their type as `int64`,
//!   lists as `[]interface {}`, maps as `map[string]string` when their zero
//!   value is a string and `map[string]interface {}` otherwise.
//! - Floats do not support `%b`, `%x`, `%X` or the `#` flag; `%q`'s notion of
//!   a printable rune approximates Go's `unicode.IsPrint`.
//! - Times are always UTC; `time.Time` methods offered are `Unix UnixMilli
//!   UnixMicro UnixNano Year Month Day Hour Minute Second Nanosecond YearDay
//!   Weekday String UTC Local Format`; durations offer `Hours Minutes Seconds
//!   Milliseconds Microseconds Nanoseconds String Abs`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

// ---------------------------------------------------------------------------
// Public data model
// ---------------------------------------------------------------------------

/// A value handed to / produced by the template engine. Borrowed where possible.
#[derive(Clone)]
pub enum Value<'a> {
    /// Go's `nil`; prints as `<no value>` when an action outputs it directly.
    Nil,
    /// A boolean.
    Bool(bool),
    /// A signed integer (Go `int64`).
    Int(i64),
    /// A float (Go `float64`).
    Float(f64),
    /// A string, borrowed from the data or the template where possible.
    Str(Cow<'a, str>),
    /// A point in time as Unix nanoseconds, rendered in UTC like Go's `time.Time`.
    Time(i64),
    /// A duration in nanoseconds, rendered like Go's `time.Duration`.
    Duration(i64),
    /// A string-keyed map (tags, fields, ...).
    Map(&'a dyn MapData),
    /// A list of values.
    List(Vec<Value<'a>>),
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("Nil"),
            Value::Bool(b) => write!(f, "Bool({b})"),
            Value::Int(i) => write!(f, "Int({i})"),
            Value::Float(x) => write!(f, "Float({x:?})"),
            Value::Str(s) => write!(f, "Str({:?})", s.as_ref()),
            Value::Time(t) => write!(f, "Time({t})"),
            Value::Duration(d) => write!(f, "Duration({d})"),
            Value::Map(m) => write!(f, "Map({:?})", m.keys()),
            Value::List(l) => f.debug_tuple("List").field(l).finish(),
        }
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::Str(Cow::Borrowed(s))
    }
}

impl From<String> for Value<'_> {
    fn from(s: String) -> Self {
        Value::Str(Cow::Owned(s))
    }
}

impl From<i64> for Value<'_> {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<f64> for Value<'_> {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}

impl From<bool> for Value<'_> {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// Data a template renders against: the engine implements this on its own
/// structs without building maps per render.
pub trait Data {
    /// The top-level field `name` (`ID`, `Tags`, `Fields`, ...), or `None` when
    /// the data has no such field (a runtime error in the template).
    fn field(&self, name: &str) -> Option<Value<'_>>;
    /// The whole data object as JSON; this is what `{{ json . }}` renders.
    fn to_json(&self) -> serde_json::Value;
}

/// A string-keyed map the template can index, range over and print.
pub trait MapData {
    /// The value stored under `key`, if any.
    fn get(&self, key: &str) -> Option<Value<'_>>;
    /// All keys, sorted ascending (Go iterates and prints maps in key order).
    fn keys(&self) -> Vec<&str>;
    /// What `index` returns for a missing key, before the missing-key
    /// accounting: `Str("")` for string maps such as tags, `Nil` for maps of
    /// mixed values such as fields.
    fn zero(&self) -> Value<'_>;
    /// The map as JSON, for the `json` function.
    fn to_json(&self) -> serde_json::Value;
}

/// Tag-style map: missing keys index to the empty string.
impl MapData for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<Value<'_>> {
        BTreeMap::get(self, key).map(|s| Value::Str(Cow::Borrowed(s.as_str())))
    }
    fn keys(&self) -> Vec<&str> {
        BTreeMap::keys(self).map(String::as_str).collect()
    }
    fn zero(&self) -> Value<'_> {
        Value::Str(Cow::Borrowed(""))
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        )
    }
}

/// JSON objects as maps: nested objects become maps, arrays become lists,
/// and missing keys index to `nil`.
impl MapData for serde_json::Map<String, serde_json::Value> {
    fn get(&self, key: &str) -> Option<Value<'_>> {
        serde_json::Map::get(self, key).map(json_to_value)
    }
    fn keys(&self) -> Vec<&str> {
        let mut k: Vec<&str> = serde_json::Map::keys(self).map(String::as_str).collect();
        k.sort_unstable();
        k
    }
    fn zero(&self) -> Value<'_> {
        Value::Nil
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(self.clone())
    }
}

/// Borrows a JSON value as a template [`Value`]: integers that fit `i64` become
/// `Int`, other numbers `Float`, objects `Map`, arrays `List`, `null` `Nil`.
pub fn json_to_value(v: &serde_json::Value) -> Value<'_> {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::Str(Cow::Borrowed(s.as_str())),
        serde_json::Value::Array(a) => Value::List(a.iter().map(json_to_value).collect()),
        serde_json::Value::Object(o) => Value::Map(o),
    }
}

/// A template that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template: {message}")]
pub struct TemplateError {
    /// Byte offset in the template source where the problem was found.
    pub offset: usize,
    /// What is wrong, e.g. `function "indx" not defined`.
    pub message: String,
}

/// Which parts of the data a template reads (see [`Template::fields_used`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldsUsed {
    /// Top-level field names read (`"ID"`, `"Tags"`, ...), sorted, deduplicated.
    pub names: Vec<String>,
    /// True when the template uses the whole data object (`json .`, `{{ . }}`,
    /// `$` passed to a function, ...); then every field may be read.
    pub whole_dot: bool,
}

impl FieldsUsed {
    /// True when the output may depend on top-level field `name`.
    pub fn uses(&self, name: &str) -> bool {
        self.whole_dot || self.names.iter().any(|n| n == name)
    }
}

/// What happened during one render. A render always produces output; this
/// says how trustworthy it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderReport {
    /// Map lookups (`index`, `.Tags.key`) whose key was absent; each rendered
    /// as an empty string.
    pub missing_keys: u32,
    /// Other runtime errors (bad types, wrong `printf` verbs, ...).
    pub errors: u32,
    /// Description of the first problem of either kind, with its byte offset.
    pub first_error: Option<String>,
}

impl RenderReport {
    /// True when there were neither missing keys nor errors.
    pub fn is_clean(&self) -> bool {
        self.missing_keys == 0 && self.errors == 0
    }
}

/// A parsed template: parse once, render many times.
#[derive(Debug, Clone)]
pub struct Template {
    src: String,
    nodes: Vec<Node>,
    fields: FieldsUsed,
    is_static: bool,
}

impl Template {
    /// Parses `src`; unknown functions, undefined variables and syntax errors
    /// are reported with the byte offset of the problem.
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let mut p = Parser {
            src,
            pos: 0,
            trim_next: false,
            scope: vec!["$".into()],
            range_depth: 0,
            depth: 0,
        };
        let (nodes, stop) = p.parse_list()?;
        match stop {
            Stop::Eof => {}
            Stop::End { pos } => return Err(perr(pos, "unexpected {{end}}")),
            Stop::Else { pos, .. } => return Err(perr(pos, "unexpected {{else}}")),
        }
        let is_static = match nodes.as_slice() {
            [] => src.is_empty(),
            [Node::Text { start, end }] => *start == 0 && *end == src.len(),
            _ => false,
        };
        let mut acc = FieldsUsed::default();
        collect_nodes(&nodes, true, &mut acc);
        acc.names.sort();
        acc.names.dedup();
        Ok(Template {
            src: src.to_owned(),
            nodes,
            fields: acc,
            is_static,
        })
    }

    /// Renders against `data`, appending to `out`. Never fails: problems are
    /// counted in the returned report and the rest of the output is kept.
    pub fn render(&self, data: &dyn Data, out: &mut String) -> RenderReport {
        if self.is_static {
            out.push_str(&self.src);
            return RenderReport::default();
        }
        let root = RootMap { data };
        let root_dyn: &dyn MapData = &root;
        let mut ex = Exec {
            src: &self.src,
            cx: Cx {
                root: root_dyn as *const dyn MapData as *const u8,
            },
            vars: Vec::with_capacity(4),
            report: RenderReport::default(),
        };
        let dot = Value::Map(root_dyn);
        ex.vars.push(Ev::new(dot.clone()));
        ex.walk(&self.nodes, &dot, out);
        ex.report
    }

    /// Renders into a new string.
    pub fn render_to_string(&self, data: &dyn Data) -> (String, RenderReport) {
        let mut s = String::with_capacity(self.src.len() + 16);
        let r = self.render(data, &mut s);
        (s, r)
    }

    /// True when the template has no actions (plain text): its output is
    /// always exactly [`Template::source`], so callers can skip rendering.
    pub fn is_static(&self) -> bool {
        self.is_static
    }

    /// Which top-level fields the template reads and whether it uses `.`
    /// whole, so callers can cache renders that depend only on
    /// group-constant data.
    pub fn fields_used(&self) -> FieldsUsed {
        self.fields.clone()
    }

    /// The template source as given to [`Template::parse`].
    pub fn source(&self) -> &str {
        &self.src
    }
}

impl std::str::FromStr for Template {
    type Err = TemplateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Template::parse(s)
    }
}

fn perr(offset: usize, message: impl Into<String>) -> TemplateError {
    TemplateError {
        offset,
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------
// Parse tree
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Node {
    /// Literal text: a byte range of the source.
    Text {
        start: usize,
        end: usize,
    },
    Action(Pipe),
    If {
        pipe: Pipe,
        then: Vec<Node>,
        els: Vec<Node>,
    },
    With {
        pipe: Pipe,
        then: Vec<Node>,
        els: Vec<Node>,
    },
    Range {
        pipe: Pipe,
        body: Vec<Node>,
        els: Vec<Node>,
    },
    Break,
    Continue,
}

#[derive(Debug, Clone)]
struct Pipe {
    /// Variable slots declared (`:=`) or assigned (`=`).
    decl: Vec<usize>,
    assign: bool,
    cmds: Vec<Cmd>,
}

#[derive(Debug, Clone)]
struct Cmd {
    args: Vec<Arg>,
}

#[derive(Debug, Clone)]
enum Arg {
    Dot {
        pos: usize,
    },
    Nil {
        pos: usize,
    },
    Bool {
        pos: usize,
        v: bool,
    },
    Int {
        pos: usize,
        v: i64,
    },
    Float {
        pos: usize,
        v: f64,
    },
    Str {
        pos: usize,
        v: Box<str>,
    },
    /// `.A.B` relative to dot.
    Field {
        pos: usize,
        names: Vec<Box<str>>,
    },
    /// `$x.A.B`; slot 0 is `$`.
    Var {
        pos: usize,
        slot: usize,
        name: Box<str>,
        chain: Vec<Box<str>>,
    },
    /// `(pipeline).A.B`
    Pipe {
        pos: usize,
        pipe: Box<Pipe>,
        chain: Vec<Box<str>>,
    },
    Func {
        pos: usize,
        func: Func,
    },
}

impl Arg {
    fn pos(&self) -> usize {
        match self {
            Arg::Dot { pos }
            | Arg::Nil { pos }
            | Arg::Bool { pos, .. }
            | Arg::Int { pos, .. }
            | Arg::Float { pos, .. }
            | Arg::Str { pos, .. }
            | Arg::Field { pos, .. }
            | Arg::Var { pos, .. }
            | Arg::Pipe { pos, .. }
            | Arg::Func { pos, .. } => *pos,
        }
    }

    /// Literals, `.` and `nil`: things that can never take arguments.
    fn is_constant(&self) -> bool {
        matches!(
            self,
            Arg::Dot { .. }
                | Arg::Nil { .. }
                | Arg::Bool { .. }
                | Arg::Int { .. }
                | Arg::Float { .. }
                | Arg::Str { .. }
        )
    }

    fn describe(&self) -> String {
        match self {
            Arg::Dot { .. } => ".".into(),
            Arg::Nil { .. } => "nil".into(),
            Arg::Bool { v, .. } => v.to_string(),
            Arg::Int { v, .. } => v.to_string(),
            Arg::Float { v, .. } => go_float(*v),
            Arg::Str { v, .. } => go_quote(v, false),
            Arg::Field { names, .. } => names.iter().map(|n| format!(".{n}")).collect(),
            Arg::Var { name, chain, .. } => {
                let mut s = name.to_string();
                for c in chain {
                    s.push('.');
                    s.push_str(c);
                }
                s
            }
            Arg::Pipe { .. } => "(pipeline)".into(),
            Arg::Func { func, .. } => func.name().into(),
        }
    }
}

/// The builtin functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    And,
    Or,
    Not,
    Len,
    Index,
    Slice,
    Print,
    Printf,
    Println,
    Json,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Html,
    Js,
    Urlquery,
}

impl Func {
    fn lookup(name: &str) -> Option<Func> {
        Some(match name {
            "and" => Func::And,
            "or" => Func::Or,
            "not" => Func::Not,
            "len" => Func::Len,
            "index" => Func::Index,
            "slice" => Func::Slice,
            "print" => Func::Print,
            "printf" => Func::Printf,
            "println" => Func::Println,
            "json" => Func::Json,
            "eq" => Func::Eq,
            "ne" => Func::Ne,
            "lt" => Func::Lt,
            "le" => Func::Le,
            "gt" => Func::Gt,
            "ge" => Func::Ge,
            "html" => Func::Html,
            "js" => Func::Js,
            "urlquery" => Func::Urlquery,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Func::And => "and",
            Func::Or => "or",
            Func::Not => "not",
            Func::Len => "len",
            Func::Index => "index",
            Func::Slice => "slice",
            Func::Print => "print",
            Func::Printf => "printf",
            Func::Println => "println",
            Func::Json => "json",
            Func::Eq => "eq",
            Func::Ne => "ne",
            Func::Lt => "lt",
            Func::Le => "le",
            Func::Gt => "gt",
            Func::Ge => "ge",
            Func::Html => "html",
            Func::Js => "js",
            Func::Urlquery => "urlquery",
        }
    }

    /// (minimum, maximum) argument count.
    fn arity(self) -> (usize, Option<usize>) {
        match self {
            Func::And | Func::Or | Func::Index | Func::Slice | Func::Printf => (1, None),
            Func::Not | Func::Len | Func::Json => (1, Some(1)),
            Func::Print | Func::Println | Func::Html | Func::Js | Func::Urlquery => (0, None),
            Func::Eq => (2, None),
            Func::Ne | Func::Lt | Func::Le | Func::Gt | Func::Ge => (2, Some(2)),
        }
    }
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TK {
    Dot,
    Field,
    Var,
    Ident,
    Str,
    RawStr,
    Char,
    Number,
    LParen,
    RParen,
    Pipe,
    Declare,
    Assign,
    Comma,
    RDelim,
}

#[derive(Debug, Clone, Copy)]
struct Tok {
    k: TK,
    pos: usize,
    end: usize,
    /// Whitespace precedes this token inside the action.
    spaced: bool,
}

enum Item {
    Text(usize, usize),
    Comment,
    Action { start: usize, cur: Cur },
    Eof,
}

/// Tokens of one action; always ends with an `RDelim` token.
struct Cur {
    toks: Vec<Tok>,
    i: usize,
}

impl Cur {
    fn peek(&self) -> Tok {
        self.toks[self.i.min(self.toks.len() - 1)]
    }
    fn peek_at(&self, n: usize) -> Option<Tok> {
        self.toks.get(self.i + n).copied()
    }
    fn next(&mut self) -> Tok {
        let t = self.peek();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn has_left_trim(rest: &[u8]) -> bool {
    rest.len() >= 2 && rest[0] == b'-' && is_space(rest[1])
}

fn has_right_trim(rest: &[u8]) -> bool {
    rest.len() >= 2 && is_space(rest[0]) && rest[1] == b'-'
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

fn char_desc(c: char) -> String {
    format!("U+{:04X} {:?}", c as u32, c)
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

const MAX_NESTING: usize = 100;

enum Stop {
    Eof,
    End { pos: usize },
    Else { pos: usize, cur: Cur },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctl {
    If,
    With,
    Range,
}

impl Ctl {
    fn name(self) -> &'static str {
        match self {
            Ctl::If => "if",
            Ctl::With => "with",
            Ctl::Range => "range",
        }
    }
}

struct Parser<'s> {
    src: &'s str,
    pos: usize,
    /// The previous action ended with `-}}`: trim the next text's leading space.
    trim_next: bool,
    /// Variable names by runtime slot; slot 0 is `$`.
    scope: Vec<Box<str>>,
    range_depth: usize,
    depth: usize,
}

impl<'s> Parser<'s> {
    fn text(&self, t: Tok) -> &'s str {
        &self.src[t.pos..t.end]
    }

    fn unexpected(&self, t: Tok, context: &str) -> TemplateError {
        let what = if t.k == TK::RDelim {
            "}}".to_string()
        } else {
            self.text(t).to_string()
        };
        perr(t.pos, format!("unexpected {what:?} in {context}"))
    }

    fn next_item(&mut self) -> Result<Item, TemplateError> {
        let src = self.src;
        let bytes = src.as_bytes();
        loop {
            if self.pos >= src.len() {
                return Ok(Item::Eof);
            }
            if bytes[self.pos..].starts_with(b"{{") {
                self.trim_next = false;
                return self.lex_action();
            }
            let ld = src[self.pos..]
                .find("{{")
                .map_or(src.len(), |i| i + self.pos);
            let mut s = self.pos;
            let mut e = ld;
            if self.trim_next {
                while s < e && is_space(bytes[s]) {
                    s += 1;
                }
                self.trim_next = false;
            }
            if ld < src.len() && has_left_trim(&bytes[ld + 2..]) {
                while e > s && is_space(bytes[e - 1]) {
                    e -= 1;
                }
            }
            self.pos = ld;
            if s < e {
                return Ok(Item::Text(s, e));
            }
        }
    }

    fn lex_action(&mut self) -> Result<Item, TemplateError> {
        let src = self.src;
        let b = src.as_bytes();
        let start = self.pos;
        let mut i = start + 2;
        if has_left_trim(&b[i..]) {
            i += 2;
        }
        if b[i..].starts_with(b"/*") {
            let close = src[i + 2..]
                .find("*/")
                .map(|k| k + i + 2)
                .ok_or_else(|| perr(start, "unclosed comment"))?;
            let j = close + 2;
            if b[j..].starts_with(b"}}") {
                self.pos = j + 2;
            } else if has_right_trim(&b[j..]) && b[j + 2..].starts_with(b"}}") {
                self.pos = j + 4;
                self.trim_next = true;
            } else {
                return Err(perr(start, "comment ends before closing delimiter"));
            }
            return Ok(Item::Comment);
        }
        let mut toks = Vec::new();
        let mut spaced = false;
        let mut parens: Vec<usize> = Vec::new();
        loop {
            if i >= b.len() {
                return Err(perr(start, "unclosed action"));
            }
            let rdelim = if has_right_trim(&b[i..]) && b[i + 2..].starts_with(b"}}") {
                Some((i + 1, i + 4, true))
            } else if b[i..].starts_with(b"}}") {
                Some((i, i + 2, false))
            } else {
                None
            };
            if let Some((pos, end, trim)) = rdelim {
                if let Some(&p) = parens.last() {
                    return Err(perr(p, "unclosed left paren"));
                }
                toks.push(Tok {
                    k: TK::RDelim,
                    pos,
                    end,
                    spaced,
                });
                self.pos = end;
                self.trim_next = trim;
                return Ok(Item::Action {
                    start,
                    cur: Cur { toks, i: 0 },
                });
            }
            let c = b[i];
            let tok_start = i;
            let kind = match c {
                b' ' | b'\t' | b'\r' | b'\n' => {
                    i += 1;
                    spaced = true;
                    continue;
                }
                b'=' => {
                    i += 1;
                    TK::Assign
                }
                b':' => {
                    if b.get(i + 1) != Some(&b'=') {
                        return Err(perr(i, "expected :="));
                    }
                    i += 2;
                    TK::Declare
                }
                b'|' => {
                    i += 1;
                    TK::Pipe
                }
                b',' => {
                    i += 1;
                    TK::Comma
                }
                b'(' => {
                    parens.push(i);
                    i += 1;
                    TK::LParen
                }
                b')' => {
                    if parens.pop().is_none() {
                        return Err(perr(i, "unexpected right paren"));
                    }
                    i += 1;
                    TK::RParen
                }
                b'"' | b'\'' => {
                    let q = c;
                    i += 1;
                    loop {
                        match b.get(i) {
                            None | Some(b'\n') => {
                                return Err(perr(
                                    tok_start,
                                    if q == b'"' {
                                        "unterminated quoted string"
                                    } else {
                                        "unterminated character constant"
                                    },
                                ));
                            }
                            Some(b'\\') => {
                                i += 1;
                                match b.get(i) {
                                    None | Some(b'\n') => {}
                                    Some(_) => i += 1,
                                }
                            }
                            Some(&x) if x == q => {
                                i += 1;
                                break;
                            }
                            Some(_) => i += 1,
                        }
                    }
                    if q == b'"' { TK::Str } else { TK::Char }
                }
                b'`' => {
                    let close = src[i + 1..]
                        .find('`')
                        .ok_or_else(|| perr(tok_start, "unterminated raw quoted string"))?;
                    i = i + 1 + close + 1;
                    TK::RawStr
                }
                b'$' => {
                    i = self.word_end(i + 1)?;
                    TK::Var
                }
                b'.' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                    i = self.word_end(i + 1)?;
                    if i == tok_start + 1 {
                        TK::Dot
                    } else {
                        TK::Field
                    }
                }
                b'.' | b'+' | b'-' | b'0'..=b'9' => {
                    i = self.number_end(i)?;
                    TK::Number
                }
                _ => {
                    let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
                    if is_alnum(ch) {
                        i = self.word_end(i)?;
                        TK::Ident
                    } else {
                        return Err(perr(
                            i,
                            format!("unrecognized character in action: {}", char_desc(ch)),
                        ));
                    }
                }
            };
            toks.push(Tok {
                k: kind,
                pos: tok_start,
                end: i,
                spaced,
            });
            spaced = false;
        }
    }

    /// End of an alphanumeric run starting at `i`, which must be followed by
    /// a terminator.
    fn word_end(&self, mut i: usize) -> Result<usize, TemplateError> {
        let src = self.src;
        for (k, ch) in src[i..].char_indices() {
            if !is_alnum(ch) {
                i += k;
                return self.check_terminator(i);
            }
        }
        Ok(src.len())
    }

    fn check_terminator(&self, i: usize) -> Result<usize, TemplateError> {
        let rest = &self.src[i..];
        let ch = match rest.chars().next() {
            None => return Ok(i),
            Some(c) => c,
        };
        if matches!(
            ch,
            ' ' | '\t' | '\r' | '\n' | '.' | ',' | '|' | ':' | ')' | '(' | '='
        ) || rest.starts_with("}}")
        {
            Ok(i)
        } else {
            Err(perr(i, format!("bad character {}", char_desc(ch))))
        }
    }

    fn number_end(&self, start: usize) -> Result<usize, TemplateError> {
        let b = self.src.as_bytes();
        let mut i = start;
        let accept = |i: &mut usize, set: &[u8]| -> bool {
            if *i < b.len() && set.contains(&b[*i]) {
                *i += 1;
                true
            } else {
                false
            }
        };
        let run = |i: &mut usize, set: &[u8]| {
            while *i < b.len() && set.contains(&b[*i]) {
                *i += 1;
            }
        };
        accept(&mut i, b"+-");
        let mut digits: &[u8] = b"0123456789_";
        let mut decimal = true;
        if accept(&mut i, b"0") {
            if accept(&mut i, b"xX") {
                digits = b"0123456789abcdefABCDEF_";
                decimal = false;
            } else if accept(&mut i, b"oO") {
                digits = b"01234567_";
                decimal = false;
            } else if accept(&mut i, b"bB") {
                digits = b"01_";
                decimal = false;
            }
        }
        run(&mut i, digits);
        if accept(&mut i, b".") {
            run(&mut i, digits);
        }
        if decimal && accept(&mut i, b"eE") {
            accept(&mut i, b"+-");
            run(&mut i, b"0123456789_");
        }
        if !decimal && digits.len() > 20 && accept(&mut i, b"pP") {
            accept(&mut i, b"+-");
            run(&mut i, b"0123456789_");
        }
        accept(&mut i, b"i");
        let next = self.src[i..].chars().next();
        if next.is_some_and(is_alnum) || i == start {
            let end = i + next.map_or(0, char::len_utf8);
            return Err(perr(
                start,
                format!("bad number syntax: {:?}", &self.src[start..end]),
            ));
        }
        Ok(i)
    }

    // -- items and lists ----------------------------------------------------

    fn parse_list(&mut self) -> Result<(Vec<Node>, Stop), TemplateError> {
        let mut nodes = Vec::new();
        loop {
            match self.next_item()? {
                Item::Eof => return Ok((nodes, Stop::Eof)),
                Item::Text(s, e) => nodes.push(Node::Text { start: s, end: e }),
                Item::Comment => {}
                Item::Action { start, mut cur } => {
                    let first = cur.peek();
                    if first.k == TK::Ident {
                        match self.text(first) {
                            "end" => {
                                cur.next();
                                let t = cur.peek();
                                if t.k != TK::RDelim {
                                    return Err(self.unexpected(t, "end"));
                                }
                                return Ok((nodes, Stop::End { pos: start }));
                            }
                            "else" => return Ok((nodes, Stop::Else { pos: start, cur })),
                            "if" | "with" | "range" => {
                                let ctl = match self.text(first) {
                                    "if" => Ctl::If,
                                    "with" => Ctl::With,
                                    _ => Ctl::Range,
                                };
                                cur.next();
                                nodes.push(self.parse_control(ctl, start, cur)?);
                                continue;
                            }
                            kw @ ("break" | "continue") => {
                                cur.next();
                                let t = cur.peek();
                                if t.k != TK::RDelim {
                                    return Err(self.unexpected(t, kw));
                                }
                                if self.range_depth == 0 {
                                    return Err(perr(
                                        start,
                                        format!("{{{{{kw}}}}} outside {{{{range}}}}"),
                                    ));
                                }
                                nodes.push(if kw == "break" {
                                    Node::Break
                                } else {
                                    Node::Continue
                                });
                                continue;
                            }
                            kw @ ("define" | "template" | "block") => {
                                return Err(perr(
                                    first.pos,
                                    format!("{{{{{kw}}}}} is not supported"),
                                ));
                            }
                            _ => {}
                        }
                    }
                    let pipe = self.parse_pipeline(&mut cur, "command", TK::RDelim)?;
                    nodes.push(Node::Action(pipe));
                }
            }
        }
    }

    fn parse_control(
        &mut self,
        ctl: Ctl,
        start: usize,
        mut cur: Cur,
    ) -> Result<Node, TemplateError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(perr(start, "template nesting too deep"));
        }
        let mark = self.scope.len();
        let name = ctl.name();
        let pipe = self.parse_pipeline(&mut cur, name, TK::RDelim)?;
        // Variables declared in the body are not visible in the else branch.
        let after_pipe = self.scope.len();
        if ctl == Ctl::Range {
            self.range_depth += 1;
        }
        let body = self.parse_list();
        if ctl == Ctl::Range {
            self.range_depth -= 1;
        }
        let (body, stop) = body?;
        let missing_end = || perr(start, format!("missing {{{{end}}}} for {{{{{name}}}}}"));
        let els = match stop {
            Stop::Eof => return Err(missing_end()),
            Stop::End { .. } => Vec::new(),
            Stop::Else { pos, mut cur } => {
                self.scope.truncate(after_pipe);
                cur.next(); // "else"
                let t = cur.peek();
                let kw = if t.k == TK::Ident { self.text(t) } else { "" };
                if kw == "if" || kw == "with" {
                    if (kw == "if" && ctl == Ctl::If) || (kw == "with" && ctl == Ctl::With) {
                        cur.next();
                        vec![self.parse_control(ctl, pos, cur)?]
                    } else {
                        return Err(perr(
                            t.pos,
                            format!("{{{{else {kw}}}}} is not allowed in {{{{{name}}}}}"),
                        ));
                    }
                } else {
                    if t.k != TK::RDelim {
                        return Err(self.unexpected(t, "else"));
                    }
                    let (els, stop2) = self.parse_list()?;
                    match stop2 {
                        Stop::End { .. } => els,
                        Stop::Eof => return Err(missing_end()),
                        Stop::Else { pos, .. } => {
                            return Err(perr(pos, "expected {{end}}; found {{else}}"));
                        }
                    }
                }
            }
        };
        self.scope.truncate(mark);
        self.depth -= 1;
        Ok(match ctl {
            Ctl::If => Node::If {
                pipe,
                then: body,
                els,
            },
            Ctl::With => Node::With {
                pipe,
                then: body,
                els,
            },
            Ctl::Range => Node::Range { pipe, body, els },
        })
    }

    // -- pipelines ----------------------------------------------------------

    fn resolve(&self, t: Tok) -> Result<usize, TemplateError> {
        let name = self.text(t);
        self.scope
            .iter()
            .rposition(|n| &**n == name)
            .ok_or_else(|| perr(t.pos, format!("undefined variable {name:?}")))
    }

    fn parse_pipeline(
        &mut self,
        cur: &mut Cur,
        context: &str,
        end: TK,
    ) -> Result<Pipe, TemplateError> {
        let mut decl_toks: Vec<Tok> = Vec::new();
        let mut assign = false;
        if cur.peek().k == TK::Var {
            let v = cur.peek();
            match cur.peek_at(1).map(|t| t.k) {
                Some(k @ (TK::Declare | TK::Assign)) => {
                    decl_toks.push(v);
                    assign = k == TK::Assign;
                    cur.i += 2;
                }
                Some(TK::Comma) => {
                    let comma = cur.peek_at(1).map_or(v.pos, |t| t.pos);
                    if context != "range" {
                        return Err(perr(comma, format!("too many declarations in {context}")));
                    }
                    let v2 = cur.peek_at(2);
                    let op = cur.peek_at(3);
                    match (v2, op) {
                        (Some(v2), Some(op))
                            if v2.k == TK::Var && matches!(op.k, TK::Declare | TK::Assign) =>
                        {
                            decl_toks.push(v);
                            decl_toks.push(v2);
                            assign = op.k == TK::Assign;
                            cur.i += 4;
                        }
                        _ => return Err(perr(comma, "expected := or = after range variables")),
                    }
                }
                _ => {}
            }
        }
        if end == TK::RParen
            && let Some(v) = decl_toks.first()
        {
            return Err(perr(
                v.pos,
                "variable declaration not allowed in parenthesized pipeline",
            ));
        }
        let mut cmds = Vec::new();
        loop {
            let t = cur.peek();
            if t.k == end {
                if cmds.is_empty() {
                    return Err(perr(t.pos, format!("missing value for {context}")));
                }
                cur.next();
                break;
            }
            let cmd = self.parse_command(cur, end, cmds.len())?;
            cmds.push(cmd);
            let t = cur.peek();
            if t.k == TK::Pipe {
                cur.next();
                let n = cur.peek();
                if n.k == end || n.k == TK::Pipe {
                    return Err(perr(n.pos, "missing command after |"));
                }
            } else if t.k != end {
                return Err(self.unexpected(t, context));
            }
        }
        let mut decl = Vec::with_capacity(decl_toks.len());
        for v in decl_toks {
            if assign {
                decl.push(self.resolve(v)?);
            } else {
                decl.push(self.scope.len());
                self.scope.push(self.text(v).into());
            }
        }
        Ok(Pipe { decl, assign, cmds })
    }

    fn parse_command(
        &mut self,
        cur: &mut Cur,
        end: TK,
        stage: usize,
    ) -> Result<Cmd, TemplateError> {
        let mut args: Vec<Arg> = Vec::new();
        loop {
            let t = cur.peek();
            if t.k == TK::Pipe || t.k == end {
                break;
            }
            if !args.is_empty() && !t.spaced {
                return Err(self.unexpected(t, "operand"));
            }
            args.push(self.parse_operand(cur)?);
        }
        let first = match args.first() {
            Some(a) => a,
            None => return Err(perr(cur.peek().pos, "missing command")),
        };
        let piped = usize::from(stage > 0);
        match first {
            Arg::Func { pos, func } => check_arity(*func, *pos, args.len() - 1 + piped)?,
            Arg::Nil { pos } if stage == 0 => return Err(perr(*pos, "nil is not a command")),
            a if a.is_constant() && stage > 0 => {
                return Err(perr(
                    a.pos(),
                    format!("non executable command in pipeline stage {}", stage + 1),
                ));
            }
            Arg::Var { chain, .. } | Arg::Pipe { chain, .. }
                if chain.is_empty() && (args.len() > 1 || stage > 0) =>
            {
                return Err(perr(
                    first.pos(),
                    format!("can't give argument to non-function {}", first.describe()),
                ));
            }
            a if a.is_constant() && args.len() > 1 => {
                return Err(perr(
                    args[1].pos(),
                    format!("can't give argument to non-function {}", a.describe()),
                ));
            }
            _ => {}
        }
        for a in &args[1..] {
            if let Arg::Func { pos, func } = a {
                check_arity(*func, *pos, 0)?;
            }
        }
        Ok(Cmd { args })
    }

    fn parse_operand(&mut self, cur: &mut Cur) -> Result<Arg, TemplateError> {
        let t = cur.next();
        let pos = t.pos;
        let text = self.text(t);
        let mut term = match t.k {
            TK::Dot => Arg::Dot { pos },
            TK::Field => Arg::Field {
                pos,
                names: vec![text[1..].into()],
            },
            TK::Var => Arg::Var {
                pos,
                slot: self.resolve(t)?,
                name: text.into(),
                chain: Vec::new(),
            },
            TK::LParen => {
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return Err(perr(pos, "template nesting too deep"));
                }
                let pipe = self.parse_pipeline(cur, "parenthesized pipeline", TK::RParen)?;
                self.depth -= 1;
                Arg::Pipe {
                    pos,
                    pipe: Box::new(pipe),
                    chain: Vec::new(),
                }
            }
            TK::Str => Arg::Str {
                pos,
                v: unquote(&text[1..text.len() - 1], b'"')
                    .map_err(|m| perr(pos, m))?
                    .into(),
            },
            TK::RawStr => Arg::Str {
                pos,
                v: text[1..text.len() - 1].replace('\r', "").into(),
            },
            TK::Char => {
                let s = unquote(&text[1..text.len() - 1], b'\'').map_err(|m| perr(pos, m))?;
                let mut it = s.chars();
                match (it.next(), it.next()) {
                    (Some(c), None) => Arg::Int {
                        pos,
                        v: i64::from(u32::from(c)),
                    },
                    _ => return Err(perr(pos, format!("malformed character constant: {text}"))),
                }
            }
            TK::Number => parse_number(text, pos)?,
            TK::Ident => match text {
                "nil" => Arg::Nil { pos },
                "true" => Arg::Bool { pos, v: true },
                "false" => Arg::Bool { pos, v: false },
                "if" | "else" | "end" | "range" | "with" | "break" | "continue" | "define"
                | "template" | "block" => return Err(self.unexpected(t, "operand")),
                name => match Func::lookup(name) {
                    Some(func) => Arg::Func { pos, func },
                    None => return Err(perr(pos, format!("function {name:?} not defined"))),
                },
            },
            _ => return Err(self.unexpected(t, "operand")),
        };
        while cur.peek().k == TK::Field && !cur.peek().spaced {
            let f = cur.next();
            let name: Box<str> = self.text(f)[1..].into();
            match &mut term {
                Arg::Field { names, .. } => names.push(name),
                Arg::Var { chain, .. } | Arg::Pipe { chain, .. } => chain.push(name),
                other => {
                    return Err(perr(
                        f.pos,
                        format!("unexpected . after term {:?}", other.describe()),
                    ));
                }
            }
        }
        Ok(term)
    }
}

fn check_arity(func: Func, pos: usize, got: usize) -> Result<(), TemplateError> {
    let (min, max) = func.arity();
    let ok = got >= min && max.is_none_or(|m| got <= m);
    if ok {
        return Ok(());
    }
    let want = match max {
        Some(m) if m == min => format!("{min}"),
        _ => format!("at least {min}"),
    };
    Err(perr(
        pos,
        format!(
            "wrong number of args for {}: want {want} got {got}",
            func.name()
        ),
    ))
}

fn parse_number(text: &str, pos: usize) -> Result<Arg, TemplateError> {
    let bad = || perr(pos, format!("bad number syntax: {text:?}"));
    if text.ends_with('i') {
        return Err(perr(
            pos,
            format!("complex numbers are not supported: {text:?}"),
        ));
    }
    let clean: String = text.chars().filter(|&c| c != '_').collect();
    let (neg, body) = match clean.as_bytes().first() {
        Some(b'-') => (true, &clean[1..]),
        Some(b'+') => (false, &clean[1..]),
        _ => (false, clean.as_str()),
    };
    let lower = body.to_ascii_lowercase();
    let radix = if lower.starts_with("0x") {
        Some((16, &body[2..]))
    } else if lower.starts_with("0o") {
        Some((8, &body[2..]))
    } else if lower.starts_with("0b") {
        Some((2, &body[2..]))
    } else {
        None
    };
    if let Some((radix, digits)) = radix {
        if digits.contains(['.', 'p', 'P']) {
            return Err(perr(
                pos,
                format!("hexadecimal floats are not supported: {text:?}"),
            ));
        }
        let u = u64::from_str_radix(digits, radix).map_err(|_| bad())?;
        return int_arg(u, neg, pos, text);
    }
    if body.contains(['.', 'e', 'E']) {
        let v: f64 = body.parse().map_err(|_| bad())?;
        return Ok(Arg::Float {
            pos,
            v: if neg { -v } else { v },
        });
    }
    if body.len() > 1 && body.starts_with('0') {
        let u = u64::from_str_radix(&body[1..], 8).map_err(|_| bad())?;
        return int_arg(u, neg, pos, text);
    }
    match body.parse::<u64>() {
        Ok(u) => int_arg(u, neg, pos, text),
        Err(_) if !body.is_empty() && body.bytes().all(|c| c.is_ascii_digit()) => {
            Err(perr(pos, format!("number overflows int64: {text}")))
        }
        Err(_) => Err(bad()),
    }
}

fn int_arg(u: u64, neg: bool, pos: usize, text: &str) -> Result<Arg, TemplateError> {
    let v = if neg {
        0i64.checked_sub_unsigned(u)
    } else {
        i64::try_from(u).ok()
    };
    match v {
        Some(v) => Ok(Arg::Int { pos, v }),
        None => Err(perr(pos, format!("number overflows int64: {text}"))),
    }
}

/// Interprets Go escapes in the body of a `"..."` string or `'...'` rune.
fn unquote(body: &str, quote: u8) -> Result<String, String> {
    if !body.contains('\\') {
        return Ok(body.to_owned());
    }
    let b = body.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let esc = *b.get(i + 1).ok_or("invalid escape at end of string")?;
        i += 2;
        let simple = match esc {
            b'a' => Some(7u8),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(11),
            b'\\' => Some(b'\\'),
            b'"' | b'\'' if esc == quote => Some(esc),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            continue;
        }
        let hex = |n: usize, i: usize| -> Result<u32, String> {
            let s = body
                .get(i..i + n)
                .ok_or_else(|| "invalid escape in string".to_string())?;
            u32::from_str_radix(s, 16).map_err(|_| format!("invalid escape \\{}{s}", esc as char))
        };
        match esc {
            b'x' => {
                let v = hex(2, i)?;
                out.push(v as u8);
                i += 2;
            }
            b'0'..=b'7' => {
                let s = body.get(i - 1..i + 2).ok_or("invalid octal escape")?;
                let v = u32::from_str_radix(s, 8).map_err(|_| format!("invalid escape \\{s}"))?;
                if v > 255 {
                    return Err(format!("invalid escape \\{s}"));
                }
                out.push(v as u8);
                i += 2;
            }
            b'u' | b'U' => {
                let n = if esc == b'u' { 4 } else { 8 };
                let v = hex(n, i)?;
                let c =
                    char::from_u32(v).ok_or_else(|| format!("invalid Unicode escape {v:#x}"))?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += n;
            }
            _ => return Err(format!("unknown escape sequence \\{}", esc as char)),
        }
    }
    Ok(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

// ---------------------------------------------------------------------------
// Static analysis: which fields are read
// ---------------------------------------------------------------------------

fn collect_nodes(nodes: &[Node], dot_root: bool, acc: &mut FieldsUsed) {
    for n in nodes {
        match n {
            Node::Text { .. } | Node::Break | Node::Continue => {}
            Node::Action(p) => collect_pipe(p, dot_root, acc),
            Node::If { pipe, then, els } => {
                collect_pipe(pipe, dot_root, acc);
                collect_nodes(then, dot_root, acc);
                collect_nodes(els, dot_root, acc);
            }
            Node::With { pipe, then, els } => {
                collect_pipe(pipe, dot_root, acc);
                collect_nodes(then, false, acc);
                collect_nodes(els, dot_root, acc);
            }
            Node::Range { pipe, body, els } => {
                collect_pipe(pipe, dot_root, acc);
                collect_nodes(body, false, acc);
                collect_nodes(els, dot_root, acc);
            }
        }
    }
}

fn collect_pipe(p: &Pipe, dot_root: bool, acc: &mut FieldsUsed) {
    for c in &p.cmds {
        for a in &c.args {
            collect_arg(a, dot_root, acc);
        }
    }
}

fn collect_arg(a: &Arg, dot_root: bool, acc: &mut FieldsUsed) {
    match a {
        Arg::Dot { .. } if dot_root => acc.whole_dot = true,
        Arg::Field { names, .. } if dot_root => acc.names.push(names[0].to_string()),
        Arg::Var { slot: 0, chain, .. } => match chain.first() {
            Some(n) => acc.names.push(n.to_string()),
            None => acc.whole_dot = true,
        },
        Arg::Pipe { pipe, .. } => collect_pipe(pipe, dot_root, acc),
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Execution
// ---------------------------------------------------------------------------

/// The root data seen as a map so that field chains work uniformly.
struct RootMap<'a> {
    data: &'a dyn Data,
}

impl MapData for RootMap<'_> {
    fn get(&self, key: &str) -> Option<Value<'_>> {
        self.data.field(key)
    }
    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
    fn zero(&self) -> Value<'_> {
        Value::Nil
    }
    fn to_json(&self) -> serde_json::Value {
        self.data.to_json()
    }
}

/// Context shared by evaluation and formatting: identifies the root map.
struct Cx {
    root: *const u8,
}

impl Cx {
    fn is_root(&self, m: &dyn MapData) -> bool {
        std::ptr::eq(m as *const dyn MapData as *const u8, self.root)
    }

    fn truth(&self, v: &Value<'_>) -> bool {
        match v {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Time(_) => true,
            Value::Duration(d) => *d != 0,
            Value::Map(m) => self.is_root(*m) || !m.keys().is_empty(),
            Value::List(l) => !l.is_empty(),
        }
    }

    fn type_name(&self, v: &Value<'_>) -> &'static str {
        match v {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int64",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Time(_) => "time.Time",
            Value::Duration(_) => "time.Duration",
            Value::Map(m) if self.is_root(*m) => "alert.Data",
            Value::Map(m) => match m.zero() {
                Value::Str(_) => "map[string]string",
                _ => "map[string]interface {}",
            },
            Value::List(_) => "[]interface {}",
        }
    }
}

/// An evaluated value plus whether it stands for a missing map key.
#[derive(Clone)]
struct Ev<'a> {
    v: Value<'a>,
    missing: bool,
}

impl<'a> Ev<'a> {
    fn new(v: Value<'a>) -> Self {
        Ev { v, missing: false }
    }
    fn nil() -> Self {
        Ev::new(Value::Nil)
    }
}

struct RtErr {
    pos: usize,
    msg: String,
}

fn rt<T>(pos: usize, msg: impl Into<String>) -> Result<T, RtErr> {
    Err(RtErr {
        pos,
        msg: msg.into(),
    })
}

type R<T> = Result<T, RtErr>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    Normal,
    Break,
    Continue,
}

struct Exec<'a> {
    src: &'a str,
    cx: Cx,
    /// Variable values by slot; slot 0 is `$`.
    vars: Vec<Ev<'a>>,
    report: RenderReport,
}

impl<'a> Exec<'a> {
    fn note(&mut self, pos: usize, msg: &str) {
        if self.report.first_error.is_none() {
            self.report.first_error = Some(format!("{msg} (at byte {pos})"));
        }
    }

    fn error(&mut self, e: RtErr) {
        self.report.errors += 1;
        self.note(e.pos, &e.msg);
    }

    fn missing(&mut self, pos: usize, key: &str) {
        self.report.missing_keys += 1;
        self.note(pos, &format!("map has no entry for key {key:?}"));
    }

    fn walk(&mut self, nodes: &'a [Node], dot: &Value<'a>, out: &mut String) -> Flow {
        for n in nodes {
            match n {
                Node::Text { start, end } => out.push_str(&self.src[*start..*end]),
                Node::Action(p) => {
                    if let Some(ev) = self.run_pipe(p, dot)
                        && p.decl.is_empty()
                    {
                        self.print_top(&ev, out);
                    }
                }
                Node::If { pipe, then, els } => {
                    let mark = self.vars.len();
                    let cond = self
                        .run_pipe(pipe, dot)
                        .is_some_and(|e| self.cx.truth(&e.v));
                    let f = self.walk(if cond { then } else { els }, dot, out);
                    self.vars.truncate(mark);
                    if f != Flow::Normal {
                        return f;
                    }
                }
                Node::With { pipe, then, els } => {
                    let mark = self.vars.len();
                    let f = match self.run_pipe(pipe, dot) {
                        Some(e) if self.cx.truth(&e.v) => self.walk(then, &e.v, out),
                        _ => self.walk(els, dot, out),
                    };
                    self.vars.truncate(mark);
                    if f != Flow::Normal {
                        return f;
                    }
                }
                Node::Range { pipe, body, els } => {
                    let f = self.range(pipe, body, els, dot, out);
                    if f != Flow::Normal {
                        return f;
                    }
                }
                Node::Break => return Flow::Break,
                Node::Continue => return Flow::Continue,
            }
        }
        Flow::Normal
    }

    fn range(
        &mut self,
        pipe: &'a Pipe,
        body: &'a [Node],
        els: &'a [Node],
        dot: &Value<'a>,
        out: &mut String,
    ) -> Flow {
        let mark = self.vars.len();
        let val = self.run_pipe(pipe, dot);
        let after = self.vars.len();
        let mut iterations = 0usize;
        if let Some(ev) = val {
            let pos = pipe_pos(pipe);
            match ev.v {
                Value::Map(m) if self.cx.is_root(m) => {
                    self.error(RtErr {
                        pos,
                        msg: "range can't iterate over the alert data".into(),
                    });
                }
                Value::Map(m) => {
                    for k in m.keys() {
                        iterations += 1;
                        let elem = m.get(k).unwrap_or_else(|| m.zero());
                        if self.iteration(
                            pipe,
                            after,
                            Value::Str(Cow::Borrowed(k)),
                            elem,
                            body,
                            out,
                        ) {
                            break;
                        }
                    }
                }
                Value::List(items) => {
                    for (i, elem) in items.into_iter().enumerate() {
                        iterations += 1;
                        let key = Value::Int(i64::try_from(i).unwrap_or(i64::MAX));
                        if self.iteration(pipe, after, key, elem, body, out) {
                            break;
                        }
                    }
                }
                Value::Int(n) => {
                    for i in 0..n.max(0) {
                        iterations += 1;
                        if self.iteration(pipe, after, Value::Int(i), Value::Int(i), body, out) {
                            break;
                        }
                    }
                }
                Value::Nil => {}
                other => {
                    let t = self.cx.type_name(&other);
                    self.error(RtErr {
                        pos,
                        msg: format!("range can't iterate over value of type {t}"),
                    });
                }
            }
        }
        let mut flow = Flow::Normal;
        if iterations == 0 {
            self.vars.truncate(after);
            flow = self.walk(els, dot, out);
        }
        self.vars.truncate(mark);
        flow
    }

    /// Runs one range iteration; returns true on `{{break}}`.
    fn iteration(
        &mut self,
        pipe: &Pipe,
        after: usize,
        key: Value<'a>,
        elem: Value<'a>,
        body: &'a [Node],
        out: &mut String,
    ) -> bool {
        match pipe.decl.as_slice() {
            [] => {}
            [e] => self.set_var(*e, Ev::new(elem.clone())),
            [k, e, ..] => {
                self.set_var(*k, Ev::new(key));
                self.set_var(*e, Ev::new(elem.clone()));
            }
        }
        let f = self.walk(body, &elem, out);
        self.vars.truncate(after);
        f == Flow::Break
    }

    fn set_var(&mut self, slot: usize, ev: Ev<'a>) {
        if slot < self.vars.len() {
            self.vars[slot] = ev;
        } else {
            while self.vars.len() < slot {
                self.vars.push(Ev::nil());
            }
            self.vars.push(ev);
        }
    }

    fn var(&self, slot: usize) -> Ev<'a> {
        self.vars.get(slot).cloned().unwrap_or_else(Ev::nil)
    }

    /// Evaluates a pipeline and binds its declarations (binding nil when the
    /// pipeline failed, so that variable slots stay consistent).
    fn run_pipe(&mut self, p: &'a Pipe, dot: &Value<'a>) -> Option<Ev<'a>> {
        let (ev, ok) = match self.eval_pipe(p, dot) {
            Ok(ev) => (ev, true),
            Err(e) => {
                self.error(e);
                (Ev::nil(), false)
            }
        };
        if !p.decl.is_empty() {
            if p.assign {
                for &s in &p.decl {
                    self.set_var(s, ev.clone());
                }
            } else {
                for &s in &p.decl {
                    self.vars.truncate(s);
                    self.set_var(s, ev.clone());
                }
            }
        }
        ok.then_some(ev)
    }

    fn eval_pipe(&mut self, p: &'a Pipe, dot: &Value<'a>) -> R<Ev<'a>> {
        let mut fin: Option<Ev<'a>> = None;
        for c in &p.cmds {
            fin = Some(self.eval_cmd(c, dot, fin)?);
        }
        Ok(fin.unwrap_or_else(Ev::nil))
    }

    fn eval_cmd(&mut self, c: &'a Cmd, dot: &Value<'a>, fin: Option<Ev<'a>>) -> R<Ev<'a>> {
        let first = &c.args[0];
        let rest = &c.args[1..];
        match first {
            Arg::Func { pos, func } => self.call(*func, *pos, rest, dot, fin),
            Arg::Field { pos, names } => {
                let args = self.method_args(rest, dot, fin)?;
                self.chain(dot, false, names, *pos, args)
            }
            Arg::Var {
                pos, slot, chain, ..
            } if !chain.is_empty() => {
                let args = self.method_args(rest, dot, fin)?;
                let recv = self.var(*slot);
                self.chain(&recv.v, recv.missing, chain, *pos, args)
            }
            Arg::Pipe { pos, pipe, chain } if !chain.is_empty() => {
                let recv = self.eval_pipe(pipe, dot)?;
                let args = self.method_args(rest, dot, fin)?;
                self.chain(&recv.v, recv.missing, chain, *pos, args)
            }
            _ => {
                if !rest.is_empty() || fin.is_some() {
                    return rt(
                        first.pos(),
                        format!("can't give argument to non-function {}", first.describe()),
                    );
                }
                self.eval_arg(first, dot)
            }
        }
    }

    fn method_args(
        &mut self,
        rest: &'a [Arg],
        dot: &Value<'a>,
        fin: Option<Ev<'a>>,
    ) -> R<Vec<Value<'a>>> {
        let mut args = Vec::with_capacity(rest.len() + usize::from(fin.is_some()));
        for a in rest {
            args.push(self.eval_arg(a, dot)?.v);
        }
        if let Some(f) = fin {
            args.push(f.v);
        }
        Ok(args)
    }

    fn eval_arg(&mut self, a: &'a Arg, dot: &Value<'a>) -> R<Ev<'a>> {
        Ok(match a {
            Arg::Dot { .. } => Ev::new(dot.clone()),
            Arg::Nil { .. } => Ev::nil(),
            Arg::Bool { v, .. } => Ev::new(Value::Bool(*v)),
            Arg::Int { v, .. } => Ev::new(Value::Int(*v)),
            Arg::Float { v, .. } => Ev::new(Value::Float(*v)),
            Arg::Str { v, .. } => Ev::new(Value::Str(Cow::Borrowed(&**v))),
            Arg::Field { pos, names } => self.chain(dot, false, names, *pos, Vec::new())?,
            Arg::Var {
                slot, chain, pos, ..
            } => {
                let v = self.var(*slot);
                if chain.is_empty() {
                    v
                } else {
                    self.chain(&v.v, v.missing, chain, *pos, Vec::new())?
                }
            }
            Arg::Pipe { pipe, chain, pos } => {
                let v = self.eval_pipe(pipe, dot)?;
                if chain.is_empty() {
                    v
                } else {
                    self.chain(&v.v, v.missing, chain, *pos, Vec::new())?
                }
            }
            Arg::Func { pos, func } => self.call(*func, *pos, &[], dot, None)?,
        })
    }

    /// Follows `.a.b.c` from `recv`; `args` go to the last element (a method).
    fn chain(
        &mut self,
        recv: &Value<'a>,
        missing: bool,
        names: &[Box<str>],
        pos: usize,
        mut args: Vec<Value<'a>>,
    ) -> R<Ev<'a>> {
        let last = names.len() - 1;
        let mut cur: Option<Ev<'a>> = None;
        for (i, name) in names.iter().enumerate() {
            let a = if i == last {
                std::mem::take(&mut args)
            } else {
                Vec::new()
            };
            let next = match &cur {
                None => self.field(recv, missing, name, pos, a)?,
                Some(c) => self.field(&c.v, c.missing, name, pos, a)?,
            };
            cur = Some(next);
        }
        Ok(cur.unwrap_or_else(Ev::nil))
    }

    fn field(
        &mut self,
        recv: &Value<'a>,
        missing: bool,
        name: &str,
        pos: usize,
        args: Vec<Value<'a>>,
    ) -> R<Ev<'a>> {
        match recv {
            Value::Map(m) => {
                let m: &'a dyn MapData = *m;
                if !args.is_empty() {
                    return rt(pos, format!("{name} is not a method but has arguments"));
                }
                match m.get(name) {
                    Some(v) => Ok(Ev::new(v)),
                    None if self.cx.is_root(m) => rt(
                        pos,
                        format!("can't evaluate field {name} in the alert data"),
                    ),
                    None => {
                        self.missing(pos, name);
                        Ok(Ev {
                            v: m.zero(),
                            missing: true,
                        })
                    }
                }
            }
            Value::Nil => Ok(Ev {
                v: Value::Nil,
                missing,
            }),
            Value::Time(ns) => time_method(*ns, name, &args)
                .map(Ev::new)
                .map_err(|msg| RtErr { pos, msg }),
            Value::Duration(ns) => duration_method(*ns, name, &args)
                .map(Ev::new)
                .map_err(|msg| RtErr { pos, msg }),
            other => rt(
                pos,
                format!(
                    "can't evaluate field {name} in type {}",
                    self.cx.type_name(other)
                ),
            ),
        }
    }

    fn print_top(&mut self, ev: &Ev<'a>, out: &mut String) {
        match &ev.v {
            Value::Nil => {
                if !ev.missing {
                    out.push_str("<no value>");
                }
            }
            Value::Str(s) => out.push_str(s),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => write_go_float(out, *f),
            v => {
                let mut p = Printer::new(&self.cx);
                p.print_arg(out, v, 'v', &Spec::default());
            }
        }
    }

    // -- functions ----------------------------------------------------------

    fn call(
        &mut self,
        func: Func,
        pos: usize,
        args: &'a [Arg],
        dot: &Value<'a>,
        fin: Option<Ev<'a>>,
    ) -> R<Ev<'a>> {
        if matches!(func, Func::And | Func::Or) {
            let want = func == Func::Or;
            let mut last = Ev::nil();
            for a in args {
                let v = self.eval_arg(a, dot)?;
                if self.cx.truth(&v.v) == want {
                    return Ok(v);
                }
                last = v;
            }
            return Ok(fin.unwrap_or(last));
        }
        let mut vals: Vec<Ev<'a>> = Vec::with_capacity(args.len() + 1);
        for a in args {
            vals.push(self.eval_arg(a, dot)?);
        }
        if let Some(f) = fin {
            vals.push(f);
        }
        self.builtin(func, pos, vals).map_err(|mut e| {
            e.msg = format!("error calling {}: {}", func.name(), e.msg);
            e
        })
    }

    fn builtin(&mut self, func: Func, pos: usize, mut vals: Vec<Ev<'a>>) -> R<Ev<'a>> {
        let str_val = |s: String| Ok(Ev::new(Value::Str(Cow::Owned(s))));
        match func {
            Func::And | Func::Or => unreachable!("handled in call"),
            Func::Not => Ok(Ev::new(Value::Bool(!self.cx.truth(&vals[0].v)))),
            Func::Len => {
                let n = match &vals[0].v {
                    Value::Str(s) => s.len(),
                    Value::Map(m) if !self.cx.is_root(*m) => m.keys().len(),
                    Value::List(l) => l.len(),
                    Value::Nil => return rt(pos, "len of nil pointer"),
                    other => return rt(pos, format!("len of type {}", self.cx.type_name(other))),
                };
                Ok(Ev::new(Value::Int(i64::try_from(n).unwrap_or(i64::MAX))))
            }
            Func::Index => self.index(pos, vals),
            Func::Slice => self.slice(pos, vals),
            Func::Print | Func::Println => {
                let vs: Vec<Value<'a>> = vals.into_iter().map(|e| e.v).collect();
                let mut s = String::new();
                let mut p = Printer::new(&self.cx);
                p.sprint(&mut s, &vs, func == Func::Println);
                str_val(s)
            }
            Func::Printf => {
                let format = match &vals[0].v {
                    Value::Str(s) => s.clone(),
                    other => {
                        return rt(
                            pos,
                            format!(
                                "wrong type for value; expected string; got {}",
                                self.cx.type_name(other)
                            ),
                        );
                    }
                };
                let vs: Vec<Value<'a>> = vals.drain(1..).map(|e| e.v).collect();
                let mut s = String::new();
                let mut p = Printer::new(&self.cx);
                p.sprintf(&mut s, &format, &vs);
                if p.err {
                    self.error(RtErr {
                        pos,
                        msg: format!("error calling printf: bad formatting produced {s:?}"),
                    });
                }
                str_val(s)
            }
            Func::Json => {
                let mut s = String::new();
                match json_value(&mut s, &vals[0].v) {
                    Ok(()) => str_val(s),
                    Err(m) => rt(pos, m),
                }
            }
            Func::Html | Func::Js | Func::Urlquery => {
                let s = self.eval_args_string(vals);
                str_val(match func {
                    Func::Html => html_escape(&s),
                    Func::Js => js_escape(&s),
                    _ => query_escape(&s),
                })
            }
            Func::Eq => {
                let a = &vals[0].v;
                for b in &vals[1..] {
                    if values_equal(&self.cx, a, &b.v).map_err(|m| RtErr { pos, msg: m })? {
                        return Ok(Ev::new(Value::Bool(true)));
                    }
                }
                Ok(Ev::new(Value::Bool(false)))
            }
            Func::Ne => {
                let e = values_equal(&self.cx, &vals[0].v, &vals[1].v)
                    .map_err(|m| RtErr { pos, msg: m })?;
                Ok(Ev::new(Value::Bool(!e)))
            }
            Func::Lt | Func::Le | Func::Gt | Func::Ge => {
                let ord = values_order(&self.cx, &vals[0].v, &vals[1].v)
                    .map_err(|m| RtErr { pos, msg: m })?;
                use std::cmp::Ordering::*;
                let r = match (func, ord) {
                    (_, None) => false,
                    (Func::Lt, Some(o)) => o == Less,
                    (Func::Le, Some(o)) => o != Greater,
                    (Func::Gt, Some(o)) => o == Greater,
                    (_, Some(o)) => o != Less,
                };
                Ok(Ev::new(Value::Bool(r)))
            }
        }
    }

    /// Go's `evalArgs` for html/js/urlquery: a lone string as is, else `print`.
    fn eval_args_string(&self, vals: Vec<Ev<'a>>) -> String {
        if let [
            Ev {
                v: Value::Str(s), ..
            },
        ] = vals.as_slice()
        {
            return s.to_string();
        }
        let vs: Vec<Value<'a>> = vals.into_iter().map(|e| e.v).collect();
        let mut s = String::new();
        Printer::new(&self.cx).sprint(&mut s, &vs, false);
        s
    }

    fn index(&mut self, pos: usize, vals: Vec<Ev<'a>>) -> R<Ev<'a>> {
        let mut it = vals.into_iter();
        let mut cur = it.next().unwrap_or_else(Ev::nil);
        for key in it {
            let next = match &cur.v {
                Value::Map(m) => {
                    let m: &'a dyn MapData = *m;
                    let k = match &key.v {
                        Value::Str(k) => k,
                        other => {
                            return rt(
                                pos,
                                format!(
                                    "value has type {}; should be string",
                                    self.cx.type_name(other)
                                ),
                            );
                        }
                    };
                    match m.get(k) {
                        Some(v) => Ev::new(v),
                        None if self.cx.is_root(m) => {
                            return rt(pos, format!("can't evaluate field {k} in the alert data"));
                        }
                        None => {
                            self.missing(pos, k);
                            Ev {
                                v: m.zero(),
                                missing: true,
                            }
                        }
                    }
                }
                Value::List(items) => {
                    let i = self.int_index(pos, &key.v, items.len())?;
                    Ev::new(items[i].clone())
                }
                Value::Str(s) => {
                    let i = self.int_index(pos, &key.v, s.len())?;
                    Ev::new(Value::Int(i64::from(s.as_bytes()[i])))
                }
                Value::Nil => return rt(pos, "index of untyped nil"),
                other => {
                    return rt(
                        pos,
                        format!("can't index item of type {}", self.cx.type_name(other)),
                    );
                }
            };
            cur = next;
        }
        Ok(cur)
    }

    fn to_int(&self, pos: usize, v: &Value<'_>) -> R<i64> {
        match v {
            Value::Int(i) | Value::Duration(i) => Ok(*i),
            Value::Nil => rt(pos, "cannot index slice/array with nil"),
            other => rt(
                pos,
                format!(
                    "cannot index slice/array with type {}",
                    self.cx.type_name(other)
                ),
            ),
        }
    }

    fn int_index(&self, pos: usize, v: &Value<'_>, len: usize) -> R<usize> {
        let i = self.to_int(pos, v)?;
        match usize::try_from(i) {
            Ok(u) if u < len => Ok(u),
            _ => rt(pos, format!("index out of range: {i}")),
        }
    }

    fn slice(&mut self, pos: usize, vals: Vec<Ev<'a>>) -> R<Ev<'a>> {
        let mut it = vals.into_iter();
        let item = it.next().unwrap_or_else(Ev::nil).v;
        let idx: Vec<i64> = it
            .map(|e| self.to_int(pos, &e.v))
            .collect::<R<Vec<i64>>>()?;
        if idx.len() > 3 {
            return rt(pos, format!("too many slice indexes: {}", idx.len()));
        }
        let len = match &item {
            Value::Str(s) => s.len(),
            Value::List(l) => l.len(),
            Value::Nil => return rt(pos, "slice of untyped nil"),
            other => {
                return rt(
                    pos,
                    format!("can't slice item of type {}", self.cx.type_name(other)),
                );
            }
        };
        let mut bounds = [0usize, len, len];
        for (k, &i) in idx.iter().enumerate() {
            match usize::try_from(i) {
                Ok(u) if u <= len => bounds[k] = u,
                _ => return rt(pos, format!("index out of range: {i}")),
            }
        }
        if idx.len() < 3 {
            bounds[2] = len;
        }
        if bounds[0] > bounds[1] || bounds[1] > bounds[2] {
            return rt(
                pos,
                format!("invalid slice index: {} > {}", bounds[0], bounds[1]),
            );
        }
        match item {
            Value::Str(s) => {
                if idx.len() == 3 {
                    return rt(pos, "cannot 3-index slice a string");
                }
                let sub = match &s {
                    Cow::Borrowed(b) => b
                        .get(bounds[0]..bounds[1])
                        .map(|x| Value::Str(Cow::Borrowed(x))),
                    Cow::Owned(o) => o
                        .get(bounds[0]..bounds[1])
                        .map(|x| Value::Str(Cow::Owned(x.to_owned()))),
                };
                match sub {
                    Some(v) => Ok(Ev::new(v)),
                    None => rt(pos, "slice splits a UTF-8 character"),
                }
            }
            Value::List(l) => Ok(Ev::new(Value::List(l[bounds[0]..bounds[1]].to_vec()))),
            _ => unreachable!("checked above"),
        }
    }
}

fn pipe_pos(p: &Pipe) -> usize {
    p.cmds
        .first()
        .and_then(|c| c.args.first())
        .map_or(0, Arg::pos)
}

// -- comparison -------------------------------------------------------------

enum Num {
    I(i64),
    F(f64),
}

fn as_num(v: &Value<'_>) -> Option<Num> {
    match v {
        Value::Int(i) | Value::Duration(i) => Some(Num::I(*i)),
        Value::Float(f) => Some(Num::F(*f)),
        _ => None,
    }
}

fn num_cmp(a: Num, b: Num) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Num::I(x), Num::I(y)) => Some(x.cmp(&y)),
        (Num::I(x), Num::F(y)) => (x as f64).partial_cmp(&y),
        (Num::F(x), Num::I(y)) => x.partial_cmp(&(y as f64)),
        (Num::F(x), Num::F(y)) => x.partial_cmp(&y),
    }
}

fn values_equal(cx: &Cx, a: &Value<'_>, b: &Value<'_>) -> Result<bool, String> {
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return Ok(num_cmp(x, y) == Some(std::cmp::Ordering::Equal));
    }
    match (a, b) {
        (Value::Nil, Value::Nil) => Ok(true),
        (Value::Nil, _) | (_, Value::Nil) => Ok(false),
        (Value::Bool(x), Value::Bool(y)) => Ok(x == y),
        (Value::Str(x), Value::Str(y)) => Ok(x == y),
        (Value::Time(x), Value::Time(y)) => Ok(x == y),
        (Value::Map(_) | Value::List(_), _) | (_, Value::Map(_) | Value::List(_)) => {
            let t = if matches!(a, Value::Map(_) | Value::List(_)) {
                a
            } else {
                b
            };
            Err(format!("non-comparable type {}", cx.type_name(t)))
        }
        _ => Err(format!(
            "incompatible types for comparison: {} and {}",
            cx.type_name(a),
            cx.type_name(b)
        )),
    }
}

fn values_order(
    cx: &Cx,
    a: &Value<'_>,
    b: &Value<'_>,
) -> Result<Option<std::cmp::Ordering>, String> {
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return Ok(num_cmp(x, y));
    }
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Ok(Some(x.as_bytes().cmp(y.as_bytes()))),
        (Value::Time(x), Value::Time(y)) => Ok(Some(x.cmp(y))),
        (Value::Nil | Value::Bool(_) | Value::Map(_) | Value::List(_), _) => {
            Err(format!("invalid type for comparison: {}", cx.type_name(a)))
        }
        (_, Value::Nil | Value::Bool(_) | Value::Map(_) | Value::List(_)) => {
            Err(format!("invalid type for comparison: {}", cx.type_name(b)))
        }
        _ => Err(format!(
            "incompatible types for comparison: {} and {}",
            cx.type_name(a),
            cx.type_name(b)
        )),
    }
}

// -- time.Time and time.Duration methods ------------------------------------

fn want_args(name: &str, args: &[Value<'_>], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ))
    }
}

fn time_method(ns: i64, name: &str, args: &[Value<'_>]) -> Result<Value<'static>, String> {
    if name == "Format" {
        want_args(name, args, 1)?;
        return match &args[0] {
            Value::Str(layout) => Ok(Value::Str(Cow::Owned(go_time_format(ns, layout)))),
            _ => Err("Format layout must be a string".into()),
        };
    }
    want_args(name, args, 0)?;
    let c = Civil::from_unix_nanos(ns);
    Ok(match name {
        "Unix" => Value::Int(ns.div_euclid(1_000_000_000)),
        "UnixMilli" => Value::Int(ns.div_euclid(1_000_000)),
        "UnixMicro" => Value::Int(ns.div_euclid(1_000)),
        "UnixNano" => Value::Int(ns),
        "Year" => Value::Int(c.year),
        "Month" => Value::Str(Cow::Borrowed(MONTHS[c.month as usize - 1])),
        "Day" => Value::Int(c.day),
        "Hour" => Value::Int(c.hour),
        "Minute" => Value::Int(c.minute),
        "Second" => Value::Int(c.second),
        "Nanosecond" => Value::Int(c.nanos),
        "YearDay" => Value::Int(c.yday),
        "Weekday" => Value::Str(Cow::Borrowed(DAYS[c.weekday as usize])),
        "String" => Value::Str(Cow::Owned(go_time_string(ns))),
        "UTC" | "Local" => Value::Time(ns),
        _ => return Err(format!("can't evaluate field {name} in type time.Time")),
    })
}

fn duration_method(ns: i64, name: &str, args: &[Value<'_>]) -> Result<Value<'static>, String> {
    want_args(name, args, 0)?;
    let secs = |unit: i64| (ns / unit) as f64 + (ns % unit) as f64 / unit as f64;
    Ok(match name {
        "Hours" => Value::Float(secs(3_600_000_000_000)),
        "Minutes" => Value::Float(secs(60_000_000_000)),
        "Seconds" => Value::Float(secs(1_000_000_000)),
        "Milliseconds" => Value::Int(ns / 1_000_000),
        "Microseconds" => Value::Int(ns / 1_000),
        "Nanoseconds" => Value::Int(ns),
        "String" => Value::Str(Cow::Owned(go_duration(ns))),
        "Abs" => Value::Duration(if ns == i64::MIN { i64::MAX } else { ns.abs() }),
        _ => return Err(format!("can't evaluate field {name} in type time.Duration")),
    })
}

// ---------------------------------------------------------------------------
// Go value formatting (fmt)
// ---------------------------------------------------------------------------

/// Flags, width and precision of one `printf` directive.
#[derive(Clone, Copy, Default)]
struct Spec {
    wid: Option<usize>,
    prec: Option<usize>,
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    sharp_v: bool,
}

const TOO_LARGE: i64 = 1_000_000;

fn write_padding(out: &mut String, n: usize, zero: bool) {
    let c = if zero { '0' } else { ' ' };
    for _ in 0..n {
        out.push(c);
    }
}

/// Pads `s` to the width in `sp` (counted in runes); `zero_ok` allows the
/// `0` flag to pad with zeros on the left.
fn pad(out: &mut String, s: &str, sp: &Spec, zero_ok: bool) {
    let w = sp.wid.unwrap_or(0);
    let n = if w == 0 { 0 } else { s.chars().count() };
    if n >= w {
        out.push_str(s);
    } else if sp.minus {
        out.push_str(s);
        write_padding(out, w - n, false);
    } else {
        write_padding(out, w - n, zero_ok && sp.zero);
        out.push_str(s);
    }
}

fn truncate_runes(s: &str, prec: Option<usize>) -> &str {
    match prec {
        Some(p) => match s.char_indices().nth(p) {
            Some((i, _)) => &s[..i],
            None => s,
        },
        None => s,
    }
}

struct Printer<'c> {
    cx: &'c Cx,
    /// A `%!...` error marker was written.
    err: bool,
}

impl<'c> Printer<'c> {
    fn new(cx: &'c Cx) -> Self {
        Printer { cx, err: false }
    }

    /// Go's `fmt.Sprint` (`ln == false`) or `fmt.Sprintln`.
    fn sprint(&mut self, out: &mut String, args: &[Value<'_>], ln: bool) {
        let mut prev_str = false;
        for (i, a) in args.iter().enumerate() {
            let is_str = matches!(a, Value::Str(_));
            if i > 0 && (ln || (!is_str && !prev_str)) {
                out.push(' ');
            }
            self.print_arg(out, a, 'v', &Spec::default());
            prev_str = is_str;
        }
        if ln {
            out.push('\n');
        }
    }

    /// Go's `fmt.Sprintf`.
    fn sprintf(&mut self, out: &mut String, format: &str, args: &[Value<'_>]) {
        let b = format.as_bytes();
        let end = b.len();
        let mut argn = 0usize;
        let mut reordered = false;
        let mut i = 0usize;
        while i < end {
            let lasti = i;
            while i < end && b[i] != b'%' {
                i += 1;
            }
            if i > lasti {
                out.push_str(&format[lasti..i]);
            }
            if i >= end {
                break;
            }
            i += 1;
            let mut sp = Spec::default();
            let mut good = true;
            while i < end {
                match b[i] {
                    b'#' => sp.sharp = true,
                    b'0' => sp.zero = !sp.minus,
                    b'+' => sp.plus = true,
                    b'-' => {
                        sp.minus = true;
                        sp.zero = false;
                    }
                    b' ' => sp.space = true,
                    _ => break,
                }
                i += 1;
            }
            let mut st = ArgState {
                argn,
                good,
                reordered,
            };
            let (ni, mut after_index) = st.arg_number(b, i, args.len());
            i = ni;
            if i < end && b[i] == b'*' {
                i += 1;
                let (w, ok) = int_from_arg(args, &mut st.argn);
                if !ok {
                    out.push_str("%!(BADWIDTH)");
                    self.err = true;
                } else if w < 0 {
                    sp.wid = Some(w.unsigned_abs() as usize);
                    sp.minus = true;
                    sp.zero = false;
                } else {
                    sp.wid = Some(w as usize);
                }
                after_index = false;
            } else {
                let (w, ok, ni) = parsenum(b, i, end);
                i = ni;
                if ok {
                    sp.wid = Some(w);
                    if after_index {
                        st.good = false;
                    }
                }
            }
            if i < end && b[i] == b'.' {
                i += 1;
                if after_index {
                    st.good = false;
                }
                let (ni, ai) = st.arg_number(b, i, args.len());
                i = ni;
                after_index = ai;
                if i < end && b[i] == b'*' {
                    i += 1;
                    let (p, ok) = int_from_arg(args, &mut st.argn);
                    if ok && p >= 0 {
                        sp.prec = Some(p as usize);
                    } else {
                        out.push_str("%!(BADPREC)");
                        self.err = true;
                    }
                    after_index = false;
                } else {
                    let (p, ok, ni) = parsenum(b, i, end);
                    i = ni;
                    sp.prec = Some(if ok { p } else { 0 });
                }
            }
            if !after_index {
                let (ni, _) = st.arg_number(b, i, args.len());
                i = ni;
            }
            argn = st.argn;
            good = st.good;
            reordered = st.reordered;
            if i >= end {
                out.push_str("%!(NOVERB)");
                self.err = true;
                break;
            }
            let verb = format[i..].chars().next().unwrap_or('\u{fffd}');
            i += verb.len_utf8();
            if verb == '%' {
                out.push('%');
                continue;
            }
            if !good {
                out.push_str("%!");
                out.push(verb);
                out.push_str("(BADINDEX)");
                self.err = true;
                continue;
            }
            if argn >= args.len() {
                out.push_str("%!");
                out.push(verb);
                out.push_str("(MISSING)");
                self.err = true;
                continue;
            }
            if verb == 'v' {
                sp.sharp_v = sp.sharp;
                sp.sharp = false;
                sp.plus = false;
            }
            self.print_arg(out, &args[argn], verb, &sp);
            argn += 1;
        }
        if !reordered && argn < args.len() {
            self.err = true;
            out.push_str("%!(EXTRA ");
            for (k, a) in args[argn..].iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                if let Value::Nil = a {
                    out.push_str("<nil>");
                } else {
                    out.push_str(self.cx.type_name(a));
                    out.push('=');
                    self.print_arg(out, a, 'v', &Spec::default());
                }
            }
            out.push(')');
        }
    }

    /// Formats one operand with one verb (Go's `printArg`).
    fn print_arg(&mut self, out: &mut String, v: &Value<'_>, verb: char, sp: &Spec) {
        if verb == 'T' {
            pad(out, self.cx.type_name(v), sp, false);
            return;
        }
        match v {
            Value::Nil => {
                if verb == 'v' {
                    pad(out, "<nil>", sp, false);
                } else {
                    self.bad_verb(out, v, verb, sp);
                }
            }
            Value::Bool(b) => match verb {
                't' | 'v' => pad(out, if *b { "true" } else { "false" }, sp, true),
                _ => self.bad_verb(out, v, verb, sp),
            },
            Value::Int(i) => self.int_verb(out, *i, verb, sp, v),
            Value::Float(f) => match verb {
                'v' if sp.wid.is_none() && sp.prec.is_none() && !sp.plus && !sp.space => {
                    write_go_float(out, *f)
                }
                'v' | 'g' | 'G' | 'e' | 'E' | 'f' | 'F' => fmt_float(out, *f, verb, sp),
                _ => self.bad_verb(out, v, verb, sp),
            },
            Value::Str(s) => self.str_verb(out, s, verb, sp, v),
            Value::Time(ns) => match verb {
                'v' | 's' | 'q' | 'x' | 'X' => {
                    self.str_verb(out, &go_time_string(*ns), verb, sp, v)
                }
                _ => self.bad_verb(out, v, verb, sp),
            },
            Value::Duration(d) => match verb {
                'v' | 's' | 'q' | 'x' | 'X' => self.str_verb(out, &go_duration(*d), verb, sp, v),
                _ => self.int_verb(out, *d, verb, sp, v),
            },
            Value::Map(m) if self.cx.is_root(*m) => {
                let mut s = String::new();
                let _ = json_value(&mut s, v);
                pad(out, &s, sp, false);
            }
            Value::Map(m) => {
                if sp.sharp_v {
                    out.push_str(self.cx.type_name(v));
                    out.push('{');
                } else {
                    out.push_str("map[");
                }
                for (i, k) in m.keys().into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(if sp.sharp_v { ", " } else { " " });
                    }
                    self.print_arg(out, &Value::Str(Cow::Borrowed(k)), verb, sp);
                    out.push(':');
                    let e = m.get(k).unwrap_or_else(|| m.zero());
                    self.print_arg(out, &e, verb, sp);
                }
                out.push(if sp.sharp_v { '}' } else { ']' });
            }
            Value::List(items) => {
                if sp.sharp_v {
                    out.push_str("[]interface {}{");
                } else {
                    out.push('[');
                }
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(if sp.sharp_v { ", " } else { " " });
                    }
                    self.print_arg(out, e, verb, sp);
                }
                out.push(if sp.sharp_v { '}' } else { ']' });
            }
        }
    }

    fn bad_verb(&mut self, out: &mut String, v: &Value<'_>, verb: char, sp: &Spec) {
        self.err = true;
        out.push_str("%!");
        out.push(verb);
        out.push('(');
        match v {
            Value::Nil => out.push_str("<nil>"),
            Value::Duration(d) => {
                out.push_str("time.Duration=");
                fmt_integer(out, *d, 10, 'd', false, sp);
            }
            _ => {
                out.push_str(self.cx.type_name(v));
                out.push('=');
                self.print_arg(out, v, 'v', sp);
            }
        }
        out.push(')');
    }

    fn int_verb(&mut self, out: &mut String, i: i64, verb: char, sp: &Spec, orig: &Value<'_>) {
        match verb {
            'v' | 'd' => fmt_integer(out, i, 10, verb, false, sp),
            'b' => fmt_integer(out, i, 2, verb, false, sp),
            'o' | 'O' => fmt_integer(out, i, 8, verb, false, sp),
            'x' => fmt_integer(out, i, 16, verb, false, sp),
            'X' => fmt_integer(out, i, 16, verb, true, sp),
            'c' => {
                let c = rune_of(i);
                pad(out, c.encode_utf8(&mut [0u8; 4]), sp, false);
            }
            'q' => {
                let c = rune_of(i);
                let mut s = String::from('\'');
                quote_char(&mut s, c, '\'', sp.plus);
                s.push('\'');
                pad(out, &s, sp, false);
            }
            'U' => {
                let digits = sp.prec.unwrap_or(0).max(4);
                let mut s = format!("U+{:0digits$X}", i as u64);
                if sp.sharp
                    && let Some(c) = u32::try_from(i).ok().and_then(char::from_u32)
                    && is_print(c)
                {
                    s.push_str(" '");
                    s.push(c);
                    s.push('\'');
                }
                pad(out, &s, sp, false);
            }
            _ => self.bad_verb(out, orig, verb, sp),
        }
    }

    fn str_verb(&mut self, out: &mut String, s: &str, verb: char, sp: &Spec, orig: &Value<'_>) {
        match verb {
            'v' if sp.sharp_v => fmt_q(out, s, sp),
            'v' | 's' => pad(out, truncate_runes(s, sp.prec), sp, false),
            'q' => fmt_q(out, s, sp),
            'x' => fmt_sx(out, s, sp, false),
            'X' => fmt_sx(out, s, sp, true),
            _ => self.bad_verb(out, orig, verb, sp),
        }
    }
}

/// State of argument numbering while parsing one `printf` directive.
struct ArgState {
    argn: usize,
    good: bool,
    reordered: bool,
}

impl ArgState {
    /// Handles an explicit `[n]` argument index at `i`; returns the new
    /// position and whether an index was found.
    fn arg_number(&mut self, b: &[u8], i: usize, nargs: usize) -> (usize, bool) {
        if i >= b.len() || b[i] != b'[' {
            return (i, false);
        }
        self.reordered = true;
        let (index, wid, ok) = parse_arg_number(&b[i..]);
        if ok && index >= 0 && (index as usize) < nargs {
            self.argn = index as usize;
            return (i + wid, true);
        }
        self.good = false;
        (i + wid, ok)
    }
}

fn parse_arg_number(f: &[u8]) -> (i64, usize, bool) {
    if f.len() < 3 {
        return (0, 1, false);
    }
    for i in 1..f.len() {
        if f[i] == b']' {
            let (w, ok, newi) = parsenum(f, 1, i);
            if !ok || newi != i {
                return (0, i + 1, false);
            }
            return (w as i64 - 1, i + 1, true);
        }
    }
    (0, 1, false)
}

fn parsenum(b: &[u8], start: usize, end: usize) -> (usize, bool, usize) {
    if start >= end {
        return (0, false, end);
    }
    let mut num = 0usize;
    let mut isnum = false;
    let mut i = start;
    while i < end && b[i].is_ascii_digit() {
        if num as i64 > TOO_LARGE {
            return (0, false, end);
        }
        num = num * 10 + usize::from(b[i] - b'0');
        isnum = true;
        i += 1;
    }
    (num, isnum, i)
}

fn int_from_arg(args: &[Value<'_>], argn: &mut usize) -> (i64, bool) {
    let mut num = 0;
    let mut ok = false;
    if let Some(a) = args.get(*argn) {
        if let Value::Int(i) | Value::Duration(i) = a {
            num = *i;
            ok = true;
        }
        *argn += 1;
        if !(-TOO_LARGE..=TOO_LARGE).contains(&num) {
            num = 0;
            ok = false;
        }
    }
    (num, ok)
}

fn rune_of(i: i64) -> char {
    u32::try_from(i)
        .ok()
        .and_then(char::from_u32)
        .unwrap_or('\u{fffd}')
}

fn fmt_integer(out: &mut String, v: i64, base: u32, verb: char, upper: bool, sp: &Spec) {
    let neg = v < 0;
    let u = v.unsigned_abs();
    let mut prec = 0usize;
    if let Some(p) = sp.prec {
        prec = p;
        if p == 0 && u == 0 {
            write_padding(out, sp.wid.unwrap_or(0), false);
            return;
        }
    } else if let (true, false, Some(w)) = (sp.zero, sp.minus, sp.wid) {
        prec = w;
        if neg || sp.plus || sp.space {
            prec = prec.saturating_sub(1);
        }
    }
    let digits = match (base, upper) {
        (2, _) => format!("{u:b}"),
        (8, _) => format!("{u:o}"),
        (16, true) => format!("{u:X}"),
        (16, false) => format!("{u:x}"),
        _ => u.to_string(),
    };
    let mut s = String::with_capacity(prec.max(digits.len()) + 3);
    if neg {
        s.push('-');
    } else if sp.plus {
        s.push('+');
    } else if sp.space {
        s.push(' ');
    }
    if verb == 'O' {
        s.push_str("0o");
    }
    if sp.sharp {
        match base {
            2 => s.push_str("0b"),
            8 if prec <= digits.len() && !digits.starts_with('0') => s.push('0'),
            16 => s.push_str(if upper { "0X" } else { "0x" }),
            _ => {}
        }
    }
    for _ in digits.len()..prec {
        s.push('0');
    }
    s.push_str(&digits);
    pad(out, &s, sp, false);
}

// -- floats -----------------------------------------------------------------

/// Decimal digits of a float: `d` has no trailing zeros (empty for zero) and
/// the decimal point sits after `dp` digits.
struct Dec {
    d: Vec<u8>,
    dp: i32,
}

fn parse_exp_repr(s: &str) -> Dec {
    let (m, e) = s.split_once('e').unwrap_or((s, "0"));
    let exp: i32 = e.parse().unwrap_or(0);
    let mut d: Vec<u8> = m.bytes().filter(u8::is_ascii_digit).collect();
    while d.last() == Some(&b'0') {
        d.pop();
    }
    if d.is_empty() {
        return Dec { d, dp: 0 };
    }
    Dec { d, dp: exp + 1 }
}

/// Shortest digits that round-trip.
fn dec_shortest(abs: f64) -> Dec {
    if abs == 0.0 {
        return Dec {
            d: Vec::new(),
            dp: 0,
        };
    }
    parse_exp_repr(&format!("{abs:e}"))
}

/// Digits rounded to `n >= 1` significant digits.
fn dec_sig(abs: f64, n: usize) -> Dec {
    if abs == 0.0 {
        return Dec {
            d: Vec::new(),
            dp: 0,
        };
    }
    parse_exp_repr(&format!("{:.*e}", n.max(1) - 1, abs))
}

fn fmt_e(d: &Dec, prec: usize, upper: bool) -> String {
    let mut s = String::with_capacity(prec + 8);
    s.push(d.d.first().map_or('0', |&c| c as char));
    if prec > 0 {
        s.push('.');
        for i in 1..=prec {
            s.push(d.d.get(i).map_or('0', |&c| c as char));
        }
    }
    s.push(if upper { 'E' } else { 'e' });
    let exp = if d.d.is_empty() { 0 } else { d.dp - 1 };
    s.push(if exp < 0 { '-' } else { '+' });
    let e = exp.unsigned_abs();
    if e < 10 {
        s.push('0');
    }
    let _ = write!(s, "{e}");
    s
}

fn fmt_f(d: &Dec, prec: usize) -> String {
    let mut s = String::new();
    let nd = d.d.len() as i32;
    if d.dp > 0 {
        for i in 0..d.dp {
            s.push(if i < nd { d.d[i as usize] as char } else { '0' });
        }
    } else {
        s.push('0');
    }
    if prec > 0 {
        s.push('.');
        for i in 0..prec as i32 {
            let j = d.dp + i;
            s.push(if (0..nd).contains(&j) {
                d.d[j as usize] as char
            } else {
                '0'
            });
        }
    }
    s
}

/// `%g` / `%v` body of a non-negative finite float (Go's strconv 'g').
fn format_g(abs: f64, prec: Option<usize>, upper: bool) -> String {
    let (d, shortest, p) = match prec {
        None => {
            let d = dec_shortest(abs);
            let n = d.d.len() as i32;
            (d, true, n)
        }
        Some(p) => {
            let p = p.max(1);
            (dec_sig(abs, p), false, p as i32)
        }
    };
    let nd = d.d.len() as i32;
    let mut eprec = p;
    if eprec > nd && nd >= d.dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = d.dp - 1;
    if exp < -4 || exp >= eprec {
        let pp = p.min(nd);
        fmt_e(&d, (pp - 1).max(0) as usize, upper)
    } else {
        let pp = if p > d.dp { nd } else { p };
        fmt_f(&d, (pp - d.dp).max(0) as usize)
    }
}

fn fmt_float(out: &mut String, f: f64, verb: char, sp: &Spec) {
    if !f.is_finite() {
        let body = if f.is_nan() { "NaN" } else { "Inf" };
        let sign = if f.is_nan() {
            if sp.plus {
                "+"
            } else if sp.space {
                " "
            } else {
                ""
            }
        } else if f < 0.0 {
            "-"
        } else if sp.space && !sp.plus {
            " "
        } else {
            "+"
        };
        pad(out, &format!("{sign}{body}"), sp, false);
        return;
    }
    let abs = f.abs();
    let body = match verb {
        'v' | 'g' | 'G' => format_g(abs, sp.prec, verb == 'G'),
        'e' | 'E' => fmt_e(
            &dec_sig(abs, sp.prec.unwrap_or(6) + 1),
            sp.prec.unwrap_or(6),
            verb == 'E',
        ),
        _ => format!("{:.*}", sp.prec.unwrap_or(6), abs),
    };
    let sign = if f.is_sign_negative() {
        Some('-')
    } else if sp.plus {
        Some('+')
    } else if sp.space {
        Some(' ')
    } else {
        None
    };
    match sign {
        Some(c) => {
            let total = body.len() + 1;
            match sp.wid {
                Some(w) if sp.zero && !sp.minus && w > total => {
                    out.push(c);
                    write_padding(out, w - total, true);
                    out.push_str(&body);
                }
                _ => {
                    let mut s = String::with_capacity(total);
                    s.push(c);
                    s.push_str(&body);
                    pad(out, &s, sp, false);
                }
            }
        }
        None => pad(out, &body, sp, true),
    }
}

/// Go's `%v` of a float64 (`fmt`'s shortest `%g`): the shortest digits that
/// round-trip, in exponent form when the decimal exponent is < -4 or >= 6,
/// e.g. `91.5`, `90`, `123456`, `1e+06`, `1e-05`, `1e+21`. (The < -6 / >= 21
/// cut-offs belong to `encoding/json`, see [`json_float`].)
fn go_float(f: f64) -> String {
    let mut s = String::new();
    write_go_float(&mut s, f);
    s
}

/// Appends Go's `%v` of `f` (see [`go_float`]).
fn write_go_float(out: &mut String, f: f64) {
    // Fast path: where Go's shortest `%g` uses plain decimal notation (decimal
    // exponent in [-4, 6)), Rust's shortest `Display` produces the same text.
    if f == 0.0 || (1e-4..1e6).contains(&f.abs()) {
        let _ = write!(out, "{f}");
    } else {
        fmt_float(out, f, 'v', &Spec::default());
    }
}

// -- strings ----------------------------------------------------------------

/// Approximation of Go's `strconv.IsPrint`.
fn is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    let u = c as u32;
    !(c.is_control()
        || c.is_whitespace()
        || matches!(
            u,
            0x00AD
                | 0x200B..=0x200F
                | 0x2028..=0x202E
                | 0x2060..=0x206F
                | 0xFEFF
                | 0xFFF9..=0xFFFB
                | 0xE000..=0xF8FF
                | 0xFFFE
                | 0xFFFF
        )
        || u >= 0xF0000)
}

fn quote_char(out: &mut String, c: char, q: char, ascii_only: bool) {
    if c == q || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if is_print(c) && (!ascii_only || c.is_ascii()) {
        out.push(c);
        return;
    }
    let _ = match c {
        '\x07' => write!(out, "\\a"),
        '\x08' => write!(out, "\\b"),
        '\x0c' => write!(out, "\\f"),
        '\n' => write!(out, "\\n"),
        '\r' => write!(out, "\\r"),
        '\t' => write!(out, "\\t"),
        '\x0b' => write!(out, "\\v"),
        c if (c as u32) < 0x20 || c == '\x7f' => write!(out, "\\x{:02x}", c as u32),
        c if (c as u32) < 0x10000 => write!(out, "\\u{:04x}", c as u32),
        c => write!(out, "\\U{:08x}", c as u32),
    };
}

/// Go's `strconv.Quote` (or `QuoteToASCII` when `ascii_only`).
fn go_quote(s: &str, ascii_only: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        quote_char(&mut out, c, '"', ascii_only);
    }
    out.push('"');
    out
}

fn can_backquote(s: &str) -> bool {
    !s.chars()
        .any(|c| (c < ' ' && c != '\t') || c == '`' || c == '\u{7f}' || c == '\u{feff}')
}

fn fmt_q(out: &mut String, s: &str, sp: &Spec) {
    let s = truncate_runes(s, sp.prec);
    if sp.sharp && can_backquote(s) {
        pad(out, &format!("`{s}`"), sp, false);
    } else {
        pad(out, &go_quote(s, sp.plus), sp, false);
    }
}

fn fmt_sx(out: &mut String, s: &str, sp: &Spec, upper: bool) {
    let b = s.as_bytes();
    let len = sp.prec.map_or(b.len(), |p| p.min(b.len()));
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let x = if upper { 'X' } else { 'x' };
    let mut width = 2 * len;
    if width == 0 {
        write_padding(out, sp.wid.unwrap_or(0), false);
        return;
    }
    if sp.space {
        if sp.sharp {
            width *= 2;
        }
        width += len - 1;
    } else if sp.sharp {
        width += 2;
    }
    let w = sp.wid.unwrap_or(0);
    if w > width && !sp.minus {
        write_padding(out, w - width, false);
    }
    if sp.sharp {
        out.push('0');
        out.push(x);
    }
    for (i, &c) in b[..len].iter().enumerate() {
        if sp.space && i > 0 {
            out.push(' ');
            if sp.sharp {
                out.push('0');
                out.push(x);
            }
        }
        out.push(digits[usize::from(c >> 4)] as char);
        out.push(digits[usize::from(c & 0xF)] as char);
    }
    if w > width && sp.minus {
        write_padding(out, w - width, false);
    }
}

/// Go's `template.HTMLEscapeString`.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\0' => out.push('\u{fffd}'),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c if c.is_ascii() || is_print(c) => out.push(c),
            c => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
        }
    }
    out
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

// -- JSON (Go encoding/json) ------------------------------------------------

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_float(out: &mut String, f: f64) -> Result<(), String> {
    if !f.is_finite() {
        return Err(format!("json: unsupported value: {}", go_float(f)));
    }
    let abs = f.abs();
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        // Go uses plain decimal notation here, which is Rust's shortest `Display`.
        let _ = write!(out, "{f}");
        return Ok(());
    }
    // Exponent form, with Go's cleanup of `e-07` to `e-7`.
    let d = dec_shortest(abs);
    let nd = d.d.len() as i32;
    let mut body = fmt_e(&d, (nd - 1).max(0) as usize, false);
    let n = body.len();
    if n >= 4 && body.as_bytes()[n - 4] == b'e' && &body[n - 3..n - 1] == "-0" {
        body.remove(n - 2);
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    out.push_str(&body);
    Ok(())
}

fn json_serde(out: &mut String, v: &serde_json::Value) -> Result<(), String> {
    match v {
        serde_json::Value::Null => out.push_str("null"),
        serde_json::Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else {
                json_float(out, n.as_f64().unwrap_or(f64::NAN))?;
            }
        }
        serde_json::Value::String(s) => json_str(out, s),
        serde_json::Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_serde(out, e)?;
            }
            out.push(']');
        }
        serde_json::Value::Object(o) => {
            out.push('{');
            for (i, (k, e)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_str(out, k);
                out.push(':');
                json_serde(out, e)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// Kapacitor's `json` function: Go's `json.Marshal` of the value.
fn json_value(out: &mut String, v: &Value<'_>) -> Result<(), String> {
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) | Value::Duration(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => json_float(out, *f)?,
        Value::Str(s) => json_str(out, s),
        Value::Time(ns) => {
            out.push('"');
            out.push_str(&rfc3339_nano(*ns));
            out.push('"');
        }
        Value::Map(m) => json_serde(out, &m.to_json())?,
        Value::List(items) => {
            out.push('[');
            for (i, e) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_value(out, e)?;
            }
            out.push(']');
        }
    }
    Ok(())
}

// -- time -------------------------------------------------------------------

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Broken-down UTC time.
struct Civil {
    year: i64,
    /// 1..=12
    month: u32,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    nanos: i64,
    /// 1..=366
    yday: i64,
    /// 0 = Sunday
    weekday: u32,
}

impl Civil {
    fn from_unix_nanos(ns: i64) -> Civil {
        use chrono::{Datelike, Timelike};
        let secs = ns.div_euclid(1_000_000_000);
        let nanos = ns.rem_euclid(1_000_000_000) as u32;
        let dt = chrono::DateTime::from_timestamp(secs, nanos).unwrap_or_default();
        Civil {
            year: i64::from(dt.year()),
            month: dt.month(),
            day: i64::from(dt.day()),
            hour: i64::from(dt.hour()),
            minute: i64::from(dt.minute()),
            second: i64::from(dt.second()),
            nanos: i64::from(dt.nanosecond()),
            yday: i64::from(dt.ordinal()),
            weekday: dt.weekday().num_days_from_sunday(),
        }
    }
}

fn push_year(s: &mut String, y: i64) {
    if y < 0 {
        s.push('-');
    }
    let _ = write!(s, "{:04}", y.unsigned_abs());
}

/// Appends `.` and the nanoseconds with trailing zeros removed (nothing when zero).
fn push_frac9(s: &mut String, nanos: i64, sep: char) {
    if nanos == 0 {
        return;
    }
    let digits = format!("{nanos:09}");
    s.push(sep);
    s.push_str(digits.trim_end_matches('0'));
}

/// Go's `time.Time.String()` in UTC: `2006-01-02 15:04:05.999999999 +0000 UTC`.
fn go_time_string(ns: i64) -> String {
    let c = Civil::from_unix_nanos(ns);
    let mut s = String::with_capacity(40);
    push_year(&mut s, c.year);
    let _ = write!(
        s,
        "-{:02}-{:02} {:02}:{:02}:{:02}",
        c.month, c.day, c.hour, c.minute, c.second
    );
    push_frac9(&mut s, c.nanos, '.');
    s.push_str(" +0000 UTC");
    s
}

/// RFC 3339 with trimmed nanoseconds, as Go's `time.Time.MarshalJSON` in UTC.
fn rfc3339_nano(ns: i64) -> String {
    let c = Civil::from_unix_nanos(ns);
    let mut s = String::with_capacity(32);
    push_year(&mut s, c.year);
    let _ = write!(
        s,
        "-{:02}-{:02}T{:02}:{:02}:{:02}",
        c.month, c.day, c.hour, c.minute, c.second
    );
    push_frac9(&mut s, c.nanos, '.');
    s.push('Z');
    s
}

/// Go's `time.Duration.String()`.
fn go_duration(d: i64) -> String {
    if d == 0 {
        return "0s".into();
    }
    let mut s = String::with_capacity(16);
    if d < 0 {
        s.push('-');
    }
    let u = d.unsigned_abs();
    let frac = |s: &mut String, v: u64, digits: u32| {
        let p = 10u64.pow(digits);
        let _ = write!(s, "{}", v / p);
        let f = v % p;
        if f != 0 {
            let txt = format!("{:0width$}", f, width = digits as usize);
            s.push('.');
            s.push_str(txt.trim_end_matches('0'));
        }
    };
    if u < 1_000_000_000 {
        let (digits, unit) = if u < 1_000 {
            (0, "ns")
        } else if u < 1_000_000 {
            (3, "µs")
        } else {
            (6, "ms")
        };
        frac(&mut s, u, digits);
        s.push_str(unit);
    } else {
        let secs = u / 1_000_000_000;
        let mins = secs / 60;
        if mins > 0 {
            let hours = mins / 60;
            if hours > 0 {
                let _ = write!(s, "{hours}h");
            }
            let _ = write!(s, "{}m", mins % 60);
        }
        frac(&mut s, (secs % 60) * 1_000_000_000 + u % 1_000_000_000, 9);
        s.push('s');
    }
    s
}

/// Go's `time.Time.Format` for a UTC time.
fn go_time_format(ns: i64, layout: &str) -> String {
    let c = Civil::from_unix_nanos(ns);
    let b = layout.as_bytes();
    let mut out = String::with_capacity(layout.len() + 8);
    let mut i = 0;
    let hour12 = if c.hour % 12 == 0 { 12 } else { c.hour % 12 };
    while i < b.len() {
        let rest = &layout[i..];
        let at = |k: usize| b.get(i + k).copied().unwrap_or(0);
        let consumed = match b[i] {
            b'J' if rest.starts_with("January") => {
                out.push_str(MONTHS[c.month as usize - 1]);
                7
            }
            b'J' if rest.starts_with("Jan") => {
                out.push_str(&MONTHS[c.month as usize - 1][..3]);
                3
            }
            b'M' if rest.starts_with("Monday") => {
                out.push_str(DAYS[c.weekday as usize]);
                6
            }
            b'M' if rest.starts_with("Mon") => {
                out.push_str(&DAYS[c.weekday as usize][..3]);
                3
            }
            b'M' if rest.starts_with("MST") => {
                out.push_str("UTC");
                3
            }
            b'0' if (b'1'..=b'6').contains(&at(1)) => {
                let v = match at(1) {
                    b'1' => i64::from(c.month),
                    b'2' => c.day,
                    b'3' => hour12,
                    b'4' => c.minute,
                    b'5' => c.second,
                    _ => c.year.rem_euclid(100),
                };
                let _ = write!(out, "{v:02}");
                2
            }
            b'0' if at(1) == b'0' && at(2) == b'2' => {
                let _ = write!(out, "{:03}", c.yday);
                3
            }
            b'1' if at(1) == b'5' => {
                let _ = write!(out, "{:02}", c.hour);
                2
            }
            b'1' => {
                let _ = write!(out, "{}", c.month);
                1
            }
            b'2' if rest.starts_with("2006") => {
                push_year(&mut out, c.year);
                4
            }
            b'2' => {
                let _ = write!(out, "{}", c.day);
                1
            }
            b'_' if at(1) == b'2' && !rest.starts_with("_2006") => {
                let _ = write!(out, "{:>2}", c.day);
                2
            }
            b'_' if at(1) == b'_' && at(2) == b'2' => {
                let _ = write!(out, "{:>3}", c.yday);
                3
            }
            b'3' => {
                let _ = write!(out, "{hour12}");
                1
            }
            b'4' => {
                let _ = write!(out, "{}", c.minute);
                1
            }
            b'5' => {
                let _ = write!(out, "{}", c.second);
                1
            }
            b'P' if at(1) == b'M' => {
                out.push_str(if c.hour >= 12 { "PM" } else { "AM" });
                2
            }
            b'p' if at(1) == b'm' => {
                out.push_str(if c.hour >= 12 { "pm" } else { "am" });
                2
            }
            b'-' | b'Z' => {
                let zones: [(&str, &str); 5] = [
                    ("070000", "+000000"),
                    ("07:00:00", "+00:00:00"),
                    ("0700", "+0000"),
                    ("07:00", "+00:00"),
                    ("07", "+00"),
                ];
                match zones.iter().find(|(z, _)| rest[1..].starts_with(z)) {
                    Some((z, utc)) => {
                        out.push_str(if b[i] == b'Z' { "Z" } else { utc });
                        1 + z.len()
                    }
                    None => {
                        out.push(b[i] as char);
                        1
                    }
                }
            }
            sep @ (b'.' | b',') if matches!(at(1), b'0' | b'9') => {
                let ch = at(1);
                let mut j = i + 1;
                while j < b.len() && b[j] == ch {
                    j += 1;
                }
                if j < b.len() && b[j].is_ascii_digit() {
                    out.push(sep as char);
                    1
                } else {
                    let n = j - i - 1;
                    let digits = format!("{:09}", c.nanos);
                    let digits = &digits[..n.min(9)];
                    if ch == b'0' {
                        out.push(sep as char);
                        out.push_str(digits);
                        for _ in 9..n {
                            out.push('0');
                        }
                    } else {
                        let t = digits.trim_end_matches('0');
                        if !t.is_empty() {
                            out.push(sep as char);
                            out.push_str(t);
                        }
                    }
                    j - i
                }
            }
            _ => {
                let ch = rest.chars().next().unwrap_or('\u{fffd}');
                out.push(ch);
                ch.len_utf8()
            }
        };
        i += consumed;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // -- test data ----------------------------------------------------------

    enum Fv {
        F(f64),
        I(i64),
        S(&'static str),
        B(bool),
        N,
    }

    struct Fields(BTreeMap<String, Fv>);

    impl MapData for Fields {
        fn get(&self, key: &str) -> Option<Value<'_>> {
            self.0.get(key).map(|v| match v {
                Fv::F(f) => Value::Float(*f),
                Fv::I(i) => Value::Int(*i),
                Fv::S(s) => Value::from(*s),
                Fv::B(b) => Value::Bool(*b),
                Fv::N => Value::Nil,
            })
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(String::as_str).collect()
        }
        fn zero(&self) -> Value<'_> {
            Value::Nil
        }
        fn to_json(&self) -> serde_json::Value {
            serde_json::Value::Object(
                self.0
                    .iter()
                    .map(|(k, v)| {
                        let j = match v {
                            Fv::F(f) => serde_json::json!(f),
                            Fv::I(i) => serde_json::json!(i),
                            Fv::S(s) => serde_json::json!(s),
                            Fv::B(b) => serde_json::json!(b),
                            Fv::N => serde_json::Value::Null,
                        };
                        (k.clone(), j)
                    })
                    .collect(),
            )
        }
    }

    struct Alert {
        id: String,
        name: String,
        task_name: String,
        group: String,
        level: String,
        message: String,
        details: String,
        tags: BTreeMap<String, String>,
        fields: Fields,
        time: i64,
        duration: i64,
        hosts: Vec<&'static str>,
        obj: serde_json::Map<String, serde_json::Value>,
    }

    const T0: i64 = 1_705_314_600_500_000_000; // 2024-01-15T10:30:00.5Z, a Monday

    fn alert() -> Alert {
        let tags: BTreeMap<String, String> = [
            ("host", "server01"),
            ("cpu", "cpu-total"),
            ("region", "us-west"),
            ("name", "web-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let fields = Fields(
            [
                ("value", Fv::F(91.5)),
                ("used_percent", Fv::F(87.654)),
                ("stat", Fv::F(90.0)),
                ("count", Fv::I(42)),
                ("big", Fv::F(1_223_241.0)),
                ("tiny", Fv::F(0.00001)),
                ("label", Fv::S("a b")),
                ("flag", Fv::B(true)),
                ("nothing", Fv::N),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        );
        let obj = match serde_json::json!({"a": "x", "n": 2, "f": 2.5, "nested": {"k": [1, "two"]}})
        {
            serde_json::Value::Object(o) => o,
            _ => unreachable!(),
        };
        Alert {
            id: "cpu:host=server01".into(),
            name: "cpu".into(),
            task_name: "cpu_alert".into(),
            group: "host=server01".into(),
            level: "CRITICAL".into(),
            message: "cpu is high".into(),
            details: String::new(),
            tags,
            fields,
            time: T0,
            duration: 150_000_000_000,
            hosts: vec!["a", "b"],
            obj,
        }
    }

    impl Data for Alert {
        fn field(&self, name: &str) -> Option<Value<'_>> {
            Some(match name {
                "ID" => Value::from(self.id.as_str()),
                "Name" => Value::from(self.name.as_str()),
                "TaskName" => Value::from(self.task_name.as_str()),
                "Group" => Value::from(self.group.as_str()),
                "Level" => Value::from(self.level.as_str()),
                "Message" => Value::from(self.message.as_str()),
                "Details" => Value::from(self.details.as_str()),
                "Tags" => Value::Map(&self.tags),
                "Fields" => Value::Map(&self.fields),
                "Time" => Value::Time(self.time),
                "Duration" => Value::Duration(self.duration),
                "Hosts" => Value::List(self.hosts.iter().map(|h| Value::from(*h)).collect()),
                "Empty" => Value::List(Vec::new()),
                "Nothing" => Value::Nil,
                "Count" => Value::Int(3),
                "Recoverable" => Value::Bool(true),
                "Obj" => Value::Map(&self.obj),
                _ => return None,
            })
        }
        fn to_json(&self) -> serde_json::Value {
            serde_json::json!({
                "id": self.id,
                "level": self.level,
                "note": "<b>&",
                "tags": self.tags,
                "value": 90.0,
            })
        }
    }

    /// Data with a single field `V`, for formatting tests.
    struct One<'a>(Value<'a>);

    impl Data for One<'_> {
        fn field(&self, name: &str) -> Option<Value<'_>> {
            (name == "V").then(|| self.0.clone())
        }
        fn to_json(&self) -> serde_json::Value {
            serde_json::Value::Null
        }
    }

    fn parse(src: &str) -> Template {
        Template::parse(src).unwrap_or_else(|e| panic!("{src:?}: {e} at {}", e.offset))
    }

    fn rr(src: &str) -> (String, RenderReport) {
        parse(src).render_to_string(&alert())
    }

    /// Renders and asserts a clean report.
    fn r(src: &str) -> String {
        let (s, rep) = rr(src);
        assert!(rep.is_clean(), "{src:?} -> {s:?}: {rep:?}");
        s
    }

    fn check(cases: &[(&str, &str)]) {
        for (src, want) in cases {
            assert_eq!(r(src), *want, "template {src:?}");
        }
    }

    /// `{{ .V }}` with V = v.
    fn v(val: Value<'_>) -> String {
        let (s, rep) = parse("{{ .V }}").render_to_string(&One(val));
        assert!(rep.is_clean(), "{rep:?}");
        s
    }

    /// `printf` with a single operand V; returns output and error count.
    fn pf(format: &str, val: Value<'_>) -> (String, u32) {
        let t = parse(&format!("{{{{ printf `{format}` .V }}}}"));
        let (s, rep) = t.render_to_string(&One(val));
        (s, rep.errors)
    }

    fn pf_ok(format: &str, val: Value<'_>) -> String {
        let (s, errs) = pf(format, val);
        assert_eq!(errs, 0, "{format:?} -> {s:?}");
        s
    }

    fn perr_of(src: &str) -> TemplateError {
        match Template::parse(src) {
            Ok(_) => panic!("{src:?} parsed"),
            Err(e) => e,
        }
    }

    fn assert_perr(src: &str, offset: usize, msg: &str) {
        let e = perr_of(src);
        assert!(
            e.message.contains(msg),
            "{src:?}: message {:?} lacks {msg:?}",
            e.message
        );
        assert_eq!(e.offset, offset, "{src:?}: {}", e.message);
    }

    // -- Kapacitor-style templates -------------------------------------------

    #[test]
    fn kapacitor_id_templates() {
        check(&[
            (r#"{{ index .Tags "host"}}/disk_used"#, "server01/disk_used"),
            (r#"kubernetes/{{ index .Tags "name"}}"#, "kubernetes/web-1"),
            ("{{ .Name }}:{{ .Group }}", "cpu:host=server01"),
            ("{{ .TaskName }}", "cpu_alert"),
        ]);
    }

    #[test]
    fn kapacitor_message_templates() {
        check(&[
            (
                r#"{{ .ID }}:{{ index .Fields "stat" }}"#,
                "cpu:host=server01:90",
            ),
            ("Disk usage is {{ .Level }}", "Disk usage is CRITICAL"),
            (
                r#"{{ if eq .Level "CRITICAL" }}page{{ else }}mail{{ end }}"#,
                "page",
            ),
            (
                "{{ range $k, $v := .Tags }}{{$k}}={{$v}} {{ end }}",
                "cpu=cpu-total host=server01 name=web-1 region=us-west ",
            ),
            (
                r#"{{ printf "%.1f%%" (index .Fields "used_percent") }}"#,
                "87.7%",
            ),
            (r#"{{ index .Fields "value" | printf "%0.2f" }}"#, "91.50"),
            (
                r#"{{ .ID }} is {{ .Level }} value: {{ index .Fields "value" }}"#,
                "cpu:host=server01 is CRITICAL value: 91.5",
            ),
        ]);
    }

    #[test]
    fn kapacitor_json_whole_data() {
        assert_eq!(
            r("{{ json . }}"),
            r#"{"id":"cpu:host=server01","level":"CRITICAL","note":"\u003cb\u003e\u0026","tags":{"cpu":"cpu-total","host":"server01","name":"web-1","region":"us-west"},"value":90}"#
        );
    }

    #[test]
    fn kapacitor_large_value_is_scientific_like_go() {
        // What Kapacitor users see for big floats, and the usual printf fix.
        check(&[
            (r#"{{ index .Fields "big" }}"#, "1.223241e+06"),
            (r#"{{ index .Fields "big" | printf "%.0f" }}"#, "1223241"),
        ]);
    }

    #[test]
    fn missing_tag_and_field_render_empty_and_are_counted() {
        for src in [
            r#"[{{ index .Tags "nope" }}]"#,
            r#"[{{ index .Fields "nope" }}]"#,
            "[{{ .Tags.nope }}]",
            "[{{ .Fields.nope }}]",
            "[{{ .Fields.nope.deeper }}]",
            r#"{{ $v := index .Fields "nope" }}[{{ $v }}]"#,
        ] {
            let (s, rep) = rr(src);
            assert_eq!(s, "[]", "{src}");
            assert_eq!(rep.missing_keys, 1, "{src}");
            assert_eq!(rep.errors, 0, "{src}");
            let msg = rep.first_error.unwrap();
            assert!(msg.contains(r#"map has no entry for key "nope""#), "{msg}");
        }
    }

    #[test]
    fn missing_key_keeps_rest_of_output() {
        let (s, rep) = rr(r#"{{ index .Tags "a" }}x{{ index .Fields "b" }}y{{ .Level }}"#);
        assert_eq!(s, "xyCRITICAL");
        assert_eq!(rep.missing_keys, 2);
        assert!(rep.first_error.unwrap().contains("at byte 3"));
    }

    #[test]
    fn missing_key_in_condition_is_falsy() {
        let (s, rep) = rr(r#"{{ if index .Tags "env" }}yes{{ else }}no{{ end }}"#);
        assert_eq!(s, "no");
        assert_eq!(rep.missing_keys, 1);
        let (s, rep) = rr(r#"{{ with .Tags.env }}has{{ else }}none{{ end }}"#);
        assert_eq!(s, "none");
        assert_eq!(rep.missing_keys, 1);
    }

    // -- text, trim markers, comments --------------------------------------

    #[test]
    fn static_templates() {
        let t = parse("hello world");
        assert!(t.is_static());
        assert_eq!(t.source(), "hello world");
        assert_eq!(t.render_to_string(&alert()).0, "hello world");
        assert!(parse("").is_static());
        assert!(!parse("a {{/* c */}} b").is_static());
        assert!(!parse("{{ .ID }}").is_static());
        assert!(!parse("x {{- /* c */ -}} y").is_static());
        assert_eq!(parse("").fields_used(), FieldsUsed::default());
    }

    #[test]
    fn trim_markers() {
        check(&[
            ("a  {{- .Level -}}  b", "aCRITICALb"),
            ("a \n\t{{- .Level }} b", "aCRITICAL b"),
            ("{{ .Level -}}\n   !", "CRITICAL!"),
            ("{{-3}}", "-3"),
            ("{{ 3 -}} x", "3x"),
            ("x {{- 3 -}} y {{- 4 }}", "x3y4"),
            ("a{{- \"b\" -}}c", "abc"),
        ]);
    }

    #[test]
    fn comments() {
        check(&[
            ("a{{/* a comment */}}b", "ab"),
            ("a {{- /* c */ -}} b", "ab"),
            ("a {{/* multi\nline */}} b", "a  b"),
            ("{{/* {{ .ID }} */}}x", "x"),
        ]);
        assert_perr("ab{{/* x", 2, "unclosed comment");
        assert_perr("{{/* x */ }}", 0, "comment ends before closing delimiter");
    }

    #[test]
    fn render_appends_to_out() {
        let t = parse("{{ .Level }}");
        let mut out = String::from("pre:");
        let rep = t.render(&alert(), &mut out);
        assert!(rep.is_clean());
        assert_eq!(out, "pre:CRITICAL");
        let st = parse("plain");
        st.render(&alert(), &mut out);
        assert_eq!(out, "pre:CRITICALplain");
    }

    #[test]
    fn template_from_str_and_error_display() {
        let t: Template = "{{ .ID }}".parse().unwrap();
        assert_eq!(t.render_to_string(&alert()).0, "cpu:host=server01");
        let e = perr_of(r#"{{ indx .Tags "host" }}"#);
        assert_eq!(e.to_string(), r#"template: function "indx" not defined"#);
    }

    // -- fields ---------------------------------------------------------------

    #[test]
    fn top_level_fields() {
        check(&[
            ("{{ .ID }}", "cpu:host=server01"),
            ("{{.Name}}", "cpu"),
            ("{{ .Message }}", "cpu is high"),
            ("[{{ .Details }}]", "[]"),
            ("{{ .Level }}", "CRITICAL"),
            ("{{ .Time }}", "2024-01-15 10:30:00.5 +0000 UTC"),
            ("{{ .Duration }}", "2m30s"),
            ("{{ .Count }}", "3"),
            ("{{ .Recoverable }}", "true"),
            ("{{ .Nothing }}", "<no value>"),
            ("{{ .Hosts }}", "[a b]"),
        ]);
    }

    #[test]
    fn map_fields_by_dot() {
        check(&[
            ("{{ .Tags.host }}", "server01"),
            ("{{ .Fields.value }}", "91.5"),
            ("{{ .Fields.count }}", "42"),
            ("{{ .Obj.a }} {{ .Obj.n }} {{ .Obj.f }}", "x 2 2.5"),
            ("{{ .Obj.nested.k }}", "[1 two]"),
        ]);
    }

    #[test]
    fn maps_print_like_go() {
        check(&[
            (
                "{{ .Tags }}",
                "map[cpu:cpu-total host:server01 name:web-1 region:us-west]",
            ),
            (
                "{{ .Fields }}",
                "map[big:1.223241e+06 count:42 flag:true label:a b nothing:<nil> stat:90 tiny:1e-05 used_percent:87.654 value:91.5]",
            ),
        ]);
    }

    #[test]
    fn unknown_root_field_is_an_error_not_a_panic() {
        let (s, rep) = rr("x{{ .Nope }}y");
        assert_eq!(s, "xy");
        assert_eq!(rep.errors, 1);
        assert_eq!(rep.missing_keys, 0);
        assert!(
            rep.first_error
                .unwrap()
                .contains("can't evaluate field Nope")
        );
    }

    #[test]
    fn field_on_non_map_is_an_error() {
        let (s, rep) = rr("{{ .Level.Foo }}!");
        assert_eq!(s, "!");
        assert_eq!(rep.errors, 1);
        assert!(
            rep.first_error
                .unwrap()
                .contains("can't evaluate field Foo in type string")
        );
        let (_, rep) = rr("{{ .Level 1 }}");
        assert_eq!(rep.errors, 1);
    }

    #[test]
    fn dot_itself() {
        check(&[
            ("{{ with .Level }}{{ . }}{{ end }}", "CRITICAL"),
            ("{{ range .Hosts }}<{{ . }}>{{ end }}", "<a><b>"),
        ]);
        // The whole data object prints as its JSON (documented deviation).
        assert!(r("{{ . }}").starts_with(r#"{"id":"cpu:host=server01""#));
    }

    // -- Go value formatting ------------------------------------------------------

    #[test]
    fn go_float_formatting() {
        let cases: &[(f64, &str)] = &[
            (91.5, "91.5"),
            (90.0, "90"),
            (100.0, "100"),
            (2.5, "2.5"),
            (1e21, "1e+21"),
            (1e20, "1e+20"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (0.00001, "1e-05"),
            (0.0001, "0.0001"),
            (1.5e-7, "1.5e-07"),
            (0.0, "0"),
            (-0.0, "-0"),
            (-91.25, "-91.25"),
            (1.0 / 3.0, "0.3333333333333333"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ];
        for (f, want) in cases {
            assert_eq!(v(Value::Float(*f)), *want, "{f:e}");
        }
    }

    /// Deterministic pseudo-random floats over many magnitudes.
    fn sample_floats() -> Vec<f64> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut out = vec![
            1e-4,
            1e6,
            999_999.999_999_9,
            9.999_999_999_999_999e-5,
            1e-6,
            1e21,
        ];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = f64::from_bits(x);
            if f.is_finite() {
                out.push(f);
            }
            // Also values with few digits near the cut-offs.
            let e = (x % 60) as i32 - 30;
            out.push(((x >> 20) % 100_000) as f64 * 10f64.powi(e));
        }
        out
    }

    #[test]
    fn float_fast_paths_agree_with_general_formatting() {
        for f in sample_floats() {
            let mut fast = String::new();
            write_go_float(&mut fast, f);
            let mut slow = String::new();
            fmt_float(&mut slow, f, 'v', &Spec::default());
            assert_eq!(fast, slow, "{f:e}");
            // Round trip.
            if !fast.contains("Inf") {
                assert_eq!(fast.parse::<f64>().unwrap(), f, "{fast}");
            }
            let mut j = String::new();
            json_float(&mut j, f).unwrap();
            let d = dec_shortest(f.abs());
            if f != 0.0 && (1e-6..1e21).contains(&f.abs()) {
                let mut want = String::from(if f < 0.0 { "-" } else { "" });
                want.push_str(&fmt_f(&d, (d.d.len() as i32 - d.dp).max(0) as usize));
                assert_eq!(j, want, "{f:e}");
            }
            assert_eq!(j.parse::<f64>().unwrap(), f, "{j}");
        }
    }

    #[test]
    fn go_scalar_formatting() {
        assert_eq!(v(Value::Int(42)), "42");
        assert_eq!(v(Value::Int(-7)), "-7");
        assert_eq!(v(Value::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(v(Value::Bool(false)), "false");
        assert_eq!(v(Value::from("as-is <&>")), "as-is <&>");
        assert_eq!(v(Value::from(String::from("owned"))), "owned");
        assert_eq!(v(Value::Nil), "<no value>");
        assert_eq!(
            v(Value::List(vec![
                Value::Int(1),
                Value::from("x"),
                Value::Nil
            ])),
            "[1 x <nil>]"
        );
        let m: BTreeMap<String, String> = [("b", "2"), ("a", "1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(v(Value::Map(&m)), "map[a:1 b:2]");
    }

    #[test]
    fn go_time_formatting() {
        assert_eq!(v(Value::Time(0)), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(v(Value::Time(T0)), "2024-01-15 10:30:00.5 +0000 UTC");
        assert_eq!(
            v(Value::Time(1_123_456_789)),
            "1970-01-01 00:00:01.123456789 +0000 UTC"
        );
        assert_eq!(
            v(Value::Time(1_000_100_000)),
            "1970-01-01 00:00:01.0001 +0000 UTC"
        );
        assert_eq!(
            v(Value::Time(-1)),
            "1969-12-31 23:59:59.999999999 +0000 UTC"
        );
    }

    #[test]
    fn go_duration_formatting() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (100, "100ns"),
            (1_000, "1µs"),
            (1_500, "1.5µs"),
            (500_000_000, "500ms"),
            (1_234_567, "1.234567ms"),
            (1_500_000_000, "1.5s"),
            (-1_500_000_000, "-1.5s"),
            (61_000_000_000, "1m1s"),
            (150_000_000_000, "2m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (90_061_500_000_000, "25h1m1.5s"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (d, want) in cases {
            assert_eq!(v(Value::Duration(*d)), *want, "{d}");
        }
    }

    // -- printf --------------------------------------------------------------------

    #[test]
    fn printf_brief_verbs() {
        check(&[
            (
                r#"{{ printf "%s %d %.2f %v %q %5.1f %x %%" "a" 5 3.14159 true "q" 3.14159 255 }}"#,
                r#"a 5 3.14 true "q"   3.1 ff %"#,
            ),
            (r#"{{ printf "%6.2f%%" 91.5 }}"#, " 91.50%"),
        ]);
    }

    #[test]
    fn printf_integers() {
        let cases: &[(&str, i64, &str)] = &[
            ("%d", 42, "42"),
            ("%+d", 5, "+5"),
            ("% d", 5, " 5"),
            ("%05d", -42, "-0042"),
            ("%5d|", 42, "   42|"),
            ("%-5d|", 42, "42   |"),
            ("%.3d", 7, "007"),
            ("%.0d|", 0, "|"),
            ("%x", 255, "ff"),
            ("%X", 255, "FF"),
            ("%#x", 255, "0xff"),
            ("%x", -255, "-ff"),
            ("%08x", 255, "000000ff"),
            ("%o", 8, "10"),
            ("%#o", 8, "010"),
            ("%O", 8, "0o10"),
            ("%b", 5, "101"),
            ("%#b", 5, "0b101"),
            ("%c", 65, "A"),
            ("%c", 0x1F600, "😀"),
            ("%q", 65, "'A'"),
            ("%q", 39, r"'\''"),
            ("%U", 65, "U+0041"),
            ("%U", 0x1F600, "U+1F600"),
            ("%#U", 65, "U+0041 'A'"),
            ("%v", 7, "7"),
            ("%+v", 7, "7"),
            ("%T", 7, "int64"),
        ];
        for (f, i, want) in cases {
            assert_eq!(pf_ok(f, Value::Int(*i)), *want, "{f}");
        }
    }

    #[test]
    fn printf_floats() {
        let cases: &[(&str, f64, &str)] = &[
            ("%f", 3.14259, "3.142590"),
            ("%.2f", 3.14259, "3.14"),
            ("%0.2f", 91.5, "91.50"),
            ("%5.1f|", 3.14259, "  3.1|"),
            ("%-8.2f|", -1.5, "-1.50   |"),
            ("%8.2f|", -1.5, "   -1.50|"),
            ("%08.3f", -3.14259, "-003.143"),
            ("%+.1f", 2.0, "+2.0"),
            ("%.0f", 2.5, "2"),
            ("%.0f", 3.5, "4"),
            ("%.1f", 0.05, "0.1"),
            ("%.2f", 1.005, "1.00"),
            ("%e", 123456.789, "1.234568e+05"),
            ("%E", 123456.789, "1.234568E+05"),
            ("%.2e", 0.000123, "1.23e-04"),
            ("%+.1e", 0.0, "+0.0e+00"),
            ("%g", 123456.789, "123456.789"),
            ("%g", 1e6, "1e+06"),
            ("%G", 1e-7, "1E-07"),
            ("%.3g", 1234.5678, "1.23e+03"),
            ("%.3g", 1.0, "1"),
            ("%.3g", 0.0001234, "0.000123"),
            ("%v", 1e21, "1e+21"),
            ("%.2v", 3.14259, "3.1"),
            ("%6.2f|", f64::INFINITY, "  +Inf|"),
            ("%f", f64::NAN, "NaN"),
            ("%T", 1.5, "float64"),
            ("% v", 1.5, " 1.5"),
            ("%8v|", 1.5, "     1.5|"),
            ("%08v", -1.5, "-00001.5"),
        ];
        for (f, x, want) in cases {
            assert_eq!(pf_ok(f, Value::Float(*x)), *want, "{f} {x}");
        }
    }

    #[test]
    fn printf_strings_and_bools() {
        let cases: &[(&str, &str, &str)] = &[
            ("%s", "abc", "abc"),
            ("%-5s|", "ab", "ab   |"),
            ("%5s|", "ab", "   ab|"),
            ("%5s|", "é", "    é|"),
            ("%.2s", "abcdef", "ab"),
            ("%q", "a\"b\n", r#""a\"b\n""#),
            ("%q", "é\u{1}", r#""é\x01""#),
            ("%+q", "é", r#""\u00e9""#),
            ("%#q", "ab", "`ab`"),
            ("%x", "hi", "6869"),
            ("%X", "hi", "6869"),
            ("% x", "hi", "68 69"),
            ("%#x", "hi", "0x6869"),
            ("%# x", "hi", "0x68 0x69"),
            ("%v", "plain", "plain"),
            ("%#v", "a", r#""a""#),
        ];
        for (f, s, want) in cases {
            assert_eq!(pf_ok(f, Value::from(*s)), *want, "{f}");
        }
        assert_eq!(pf_ok("%t", Value::Bool(true)), "true");
        assert_eq!(pf_ok("%5t|", Value::Bool(false)), "false|");
        assert_eq!(pf_ok("%6t|", Value::Bool(true)), "  true|");
        assert_eq!(pf_ok("%v", Value::Nil), "<nil>");
    }

    #[test]
    fn printf_time_duration_map() {
        assert_eq!(
            pf_ok("%s", Value::Time(T0)),
            "2024-01-15 10:30:00.5 +0000 UTC"
        );
        assert_eq!(pf_ok("%v", Value::Duration(150_000_000_000)), "2m30s");
        assert_eq!(pf_ok("%d", Value::Duration(1_500)), "1500");
        assert_eq!(pf_ok("%q", Value::Duration(1_500)), r#""1.5µs""#);
        assert_eq!(pf_ok("%T", Value::Duration(1)), "time.Duration");
        check(&[
            (
                r#"{{ printf "%v" .Tags }}"#,
                "map[cpu:cpu-total host:server01 name:web-1 region:us-west]",
            ),
            (r#"{{ printf "%q" .Hosts }}"#, r#"["a" "b"]"#),
            (
                r#"{{ printf "%T %T" .Tags .Fields }}"#,
                "map[string]string map[string]interface {}",
            ),
        ]);
    }

    #[test]
    fn printf_bad_verbs_render_like_go_and_count() {
        let cases: &[(&str, Value<'static>, &str)] = &[
            ("%d", Value::from("abc"), "%!d(string=abc)"),
            ("%s", Value::Int(5), "%!s(int64=5)"),
            ("%f", Value::Int(5), "%!f(int64=5)"),
            ("%d", Value::Float(1.5), "%!d(float64=1.5)"),
            ("%d", Value::Bool(true), "%!d(bool=true)"),
            ("%d", Value::Nil, "%!d(<nil>)"),
            ("%z", Value::Int(1), "%!z(int64=1)"),
            ("%x", Value::Float(1.5), "%!x(float64=1.5)"),
            ("%f", Value::Duration(1_500), "%!f(time.Duration=1500)"),
            ("%d %d", Value::Int(1), "1 %!d(MISSING)"),
            ("%[3]d", Value::Int(1), "%!d(BADINDEX)"),
            ("%", Value::Int(1), "%!(NOVERB)%!(EXTRA int64=1)"),
            ("x", Value::Int(3), "x%!(EXTRA int64=3)"),
        ];
        for (f, val, want) in cases {
            let (s, errs) = pf(f, val.clone());
            assert_eq!(s, *want, "{f}");
            assert_eq!(errs, 1, "{f}");
        }
        let (s, rep) = rr(r#"{{ printf "x" 3 "a" nil }}|{{ .Level }}"#);
        assert_eq!(s, "x%!(EXTRA int64=3, string=a, <nil>)|CRITICAL");
        assert_eq!(rep.errors, 1);
    }

    #[test]
    fn printf_arg_indexes_and_star() {
        check(&[
            (r#"{{ printf "%[2]s %[1]s" "a" "b" }}"#, "b a"),
            (r#"{{ printf "%[1]s %[1]s" "a" }}"#, "a a"),
            (r#"{{ printf "%*d|" 5 42 }}"#, "   42|"),
            (r#"{{ printf "%-*d|" 5 42 }}"#, "42   |"),
            (r#"{{ printf "%*d|" -5 42 }}"#, "42   |"),
            (r#"{{ printf "%.*f" 2 3.14159 }}"#, "3.14"),
            (r#"{{ printf "%[2]*[1]d|" 42 4 }}"#, "  42|"),
        ]);
        let (s, rep) = rr(r#"{{ printf "%*d" "x" 1 }}"#);
        assert_eq!(s, "%!(BADWIDTH)1");
        assert_eq!(rep.errors, 1);
    }

    #[test]
    fn printf_needs_string_format() {
        let (s, rep) = rr("[{{ printf 3 }}]");
        assert_eq!(s, "[]");
        assert_eq!(rep.errors, 1);
        assert!(rep.first_error.unwrap().contains("expected string"));
    }

    // -- functions -----------------------------------------------------------------

    #[test]
    fn print_and_println() {
        check(&[
            ("{{ print 1 2 }}", "1 2"),
            (r#"{{ print "a" "b" }}"#, "ab"),
            (r#"{{ print "a" 1 2 "b" }}"#, "a1 2b"),
            ("{{ print nil }}", "<nil>"),
            ("[{{ print }}]", "[]"),
            ("{{ print 1.5 true }}", "1.5 true"),
            (r#"{{ println "a" 1 }}"#, "a 1\n"),
            (r#"{{ println "a" "b" }}"#, "a b\n"),
            ("{{ print .Duration .Tags.host }}", "2m30sserver01"),
            ("{{ print .Duration .Count }}", "2m30s 3"),
        ]);
    }

    #[test]
    fn len_function() {
        check(&[
            (r#"{{ len "héllo" }}"#, "6"),
            ("{{ len .Tags }}", "4"),
            ("{{ len .Hosts }}", "2"),
            ("{{ len .Empty }}", "0"),
            ("{{ .Hosts | len }}", "2"),
        ]);
        let (s, rep) = rr("[{{ len 3 }}]");
        assert_eq!(s, "[]");
        assert_eq!(rep.errors, 1);
        assert!(
            rep.first_error
                .unwrap()
                .contains("error calling len: len of type int64")
        );
    }

    #[test]
    fn index_function() {
        check(&[
            (r#"{{ index .Tags "host" }}"#, "server01"),
            (r#"{{ index .Fields "value" }}"#, "91.5"),
            ("{{ index .Hosts 1 }}", "b"),
            (r#"{{ index "abc" 1 }}"#, "98"),
            (r#"{{ index . "Tags" "host" }}"#, "server01"),
            (r#"{{ index .Obj "nested" "k" 1 }}"#, "two"),
            (
                "{{ index .Tags }}",
                "map[cpu:cpu-total host:server01 name:web-1 region:us-west]",
            ),
        ]);
        let (s, rep) = rr("[{{ index .Hosts 5 }}]");
        assert_eq!(s, "[]");
        assert_eq!(rep.errors, 1);
        assert!(rep.first_error.unwrap().contains("index out of range: 5"));
        let (_, rep) = rr("{{ index .Tags 1 }}");
        assert_eq!(rep.errors, 1);
        let (_, rep) = rr(r#"{{ index .Nothing "a" }}"#);
        assert_eq!(rep.errors, 1);
    }

    #[test]
    fn slice_function() {
        check(&[
            (r#"{{ slice "abcdef" 1 3 }}"#, "bc"),
            (r#"{{ slice "abcdef" 4 }}"#, "ef"),
            (r#"{{ slice "abc" }}"#, "abc"),
            ("{{ slice .Hosts 1 }}", "[b]"),
            ("{{ slice .Hosts 0 1 }}", "[a]"),
        ]);
        let (_, rep) = rr(r#"{{ slice "abc" 2 1 }}"#);
        assert_eq!(rep.errors, 1);
        let (_, rep) = rr(r#"{{ slice "é" 1 }}"#);
        assert_eq!(rep.errors, 1);
    }

    #[test]
    fn json_function() {
        check(&[
            (
                r#"{{ json "a<b>&\"c\"" }}"#,
                r#""a\u003cb\u003e\u0026\"c\"""#,
            ),
            ("{{ json \"tab\\tnl\\n\\x01\" }}", r#""tab\tnl\n\u0001""#),
            ("{{ json 90.0 }}", "90"),
            ("{{ json 91.5 }}", "91.5"),
            ("{{ json 1e21 }}", "1e+21"),
            ("{{ json 1e20 }}", "100000000000000000000"),
            ("{{ json 0.0000001 }}", "1e-7"),
            ("{{ json 0.000001 }}", "0.000001"),
            ("{{ json 42 }}", "42"),
            ("{{ json true }}", "true"),
            ("{{ json nil }}", "null"),
            (
                "{{ json .Tags }}",
                r#"{"cpu":"cpu-total","host":"server01","name":"web-1","region":"us-west"}"#,
            ),
            ("{{ json .Hosts }}", r#"["a","b"]"#),
            ("{{ json .Time }}", r#""2024-01-15T10:30:00.5Z""#),
            ("{{ json .Duration }}", "150000000000"),
            (r#"{{ json (index .Fields "value") }}"#, "91.5"),
            (r#"{{ index .Fields "stat" | json }}"#, "90"),
            (
                "{{ json .Obj }}",
                r#"{"a":"x","f":2.5,"n":2,"nested":{"k":[1,"two"]}}"#,
            ),
        ]);
        let (s, rep) = parse("[{{ json .V }}]").render_to_string(&One(Value::Float(f64::NAN)));
        assert_eq!(s, "[]");
        assert_eq!(rep.errors, 1);
        assert!(
            rep.first_error
                .unwrap()
                .contains("json: unsupported value: NaN")
        );
    }

    #[test]
    fn comparisons() {
        check(&[
            ("{{ eq 1 1 }}", "true"),
            (r#"{{ eq "a" "b" "a" }}"#, "true"),
            (r#"{{ eq .Level "OK" "WARNING" }}"#, "false"),
            (r#"{{ eq 90 (index .Fields "stat") }}"#, "true"),
            ("{{ eq 1.0 1 }}", "true"),
            ("{{ eq nil nil }}", "true"),
            ("{{ eq .Nothing 1 }}", "false"),
            ("{{ eq true true }}", "true"),
            ("{{ eq .Time .Time }}", "true"),
            ("{{ eq .Duration 150000000000 }}", "true"),
            (r#"{{ ne .Level "OK" }}"#, "true"),
            ("{{ ne 2 2 }}", "false"),
            ("{{ lt 1 2 }}", "true"),
            ("{{ lt 2.5 2 }}", "false"),
            ("{{ le 3 3 }}", "true"),
            ("{{ gt 3 2.5 }}", "true"),
            (r#"{{ ge "b" "a" }}"#, "true"),
            (r#"{{ lt "B" "a" }}"#, "true"),
            (r#"{{ gt (index .Fields "value") 90 }}"#, "true"),
            (
                r#"{{ if ge (index .Fields "used_percent") 85.0 }}high{{ end }}"#,
                "high",
            ),
        ]);
        for bad in [
            r#"{{ eq "a" 1 }}"#,
            "{{ lt true false }}",
            "{{ eq .Tags .Tags }}",
            "{{ lt nil 1 }}",
            r#"{{ gt "a" 1 }}"#,
        ] {
            let (s, rep) = rr(bad);
            assert_eq!(s, "", "{bad}");
            assert_eq!(rep.errors, 1, "{bad}");
        }
    }

    #[test]
    fn logic_functions() {
        check(&[
            ("{{ and 1 0 }}", "0"),
            (r#"{{ and 1 "x" }}"#, "x"),
            (r#"{{ or 0 "" "z" }}"#, "z"),
            (r#"[{{ or 0 "" }}]"#, "[]"),
            ("{{ not 0 }}", "true"),
            ("{{ not .Tags }}", "false"),
            ("{{ not .Empty }}", "true"),
            (
                r#"{{ if and .Tags (eq .Level "CRITICAL") }}y{{ end }}"#,
                "y",
            ),
            (
                r#"{{ if or (eq .Level "OK") (eq .Level "CRITICAL") }}y{{ end }}"#,
                "y",
            ),
            // Short-circuit: the failing index is never evaluated.
            ("{{ or 1 (index .Hosts 9) }}", "1"),
            ("{{ and 0 (index .Hosts 9) }}", "0"),
            ("{{ 0 | or 5 }}", "5"),
            ("{{ 7 | or 0 }}", "7"),
        ]);
    }

    #[test]
    fn escaping_functions() {
        check(&[
            (
                r#"{{ html "<a href='x'>&\"" }}"#,
                "&lt;a href=&#39;x&#39;&gt;&amp;&#34;",
            ),
            (r#"{{ html 1 "<" }}"#, "1&lt;"),
            (r#"{{ urlquery "a b&c=d/é" }}"#, "a+b%26c%3Dd%2F%C3%A9"),
            (r#"{{ .Tags.host | urlquery }}"#, "server01"),
            (
                r#"{{ js "a'b\"<c>=&\\" }}"#,
                r#"a\'b\"\u003Cc\u003E\u003D\u0026\\"#,
            ),
            ("{{ js \"x\\ny\" }}", r"x\u000Ay"),
        ]);
    }

    // -- pipelines, parentheses, methods --------------------------------------

    #[test]
    fn pipelines() {
        check(&[
            (r#"{{ .Level | printf "%s!" }}"#, "CRITICAL!"),
            (r#"{{ "abc" | printf "%s-%s" "x" }}"#, "x-abc"),
            (r#"{{ .Level | eq "CRITICAL" }}"#, "true"),
            (r#"{{ index .Tags "host" | len | printf "%03d" }}"#, "008"),
            (r#"{{ (index .Tags "host") | len }}"#, "8"),
            ("{{ (.Tags).host }}", "server01"),
            (r#"{{ (index .Obj "nested").k }}"#, "[1 two]"),
            (
                r#"{{ printf "%s/%s" (index .Tags "host") (printf "%d" (len .Hosts)) }}"#,
                "server01/2",
            ),
        ]);
    }

    #[test]
    fn time_and_duration_methods() {
        check(&[
            ("{{ .Time.Unix }}", "1705314600"),
            ("{{ .Time.UnixNano }}", "1705314600500000000"),
            ("{{ .Time.UnixMilli }}", "1705314600500"),
            (
                "{{ .Time.Year }}-{{ .Time.Month }}-{{ .Time.Day }}",
                "2024-January-15",
            ),
            (
                "{{ .Time.Weekday }} {{ .Time.YearDay }} {{ .Time.Hour }}",
                "Monday 15 10",
            ),
            ("{{ .Time.UTC }}", "2024-01-15 10:30:00.5 +0000 UTC"),
            (
                r#"{{ .Time.Format "2006-01-02T15:04:05.000Z07:00" }}"#,
                "2024-01-15T10:30:00.500Z",
            ),
            (
                r#"{{ .Time.Format "Mon Jan _2 3:04PM MST 2006" }}"#,
                "Mon Jan 15 10:30AM UTC 2024",
            ),
            (
                r#"{{ .Time.Format "02/01/06 15h04 .999 -0700 Monday January 002 pm" }}"#,
                "15/01/24 10h30 .5 +0000 Monday January 015 am",
            ),
            (r#"{{ .Time.Format "15:04:05.999999999" }}"#, "10:30:00.5"),
            (r#"{{ "2006-01-02" | .Time.Format }}"#, "2024-01-15"),
            ("{{ .Duration.Seconds }}", "150"),
            ("{{ .Duration.Minutes }}", "2.5"),
            ("{{ .Duration.Milliseconds }}", "150000"),
            ("{{ .Duration.String }}", "2m30s"),
        ]);
        let (_, rep) = rr("{{ .Time.Nope }}");
        assert_eq!(rep.errors, 1);
        let (_, rep) = rr("{{ .Time.Format }}");
        assert_eq!(rep.errors, 1);
    }

    // -- variables --------------------------------------------------------------------

    #[test]
    fn variables() {
        check(&[
            ("{{ $x := .Level }}{{ $x }}", "CRITICAL"),
            ("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", "2"),
            ("{{ $x := 1 }}{{ $x := 2 }}{{ $x }}", "2"),
            ("{{ $t := .Tags }}{{ $t.host }}", "server01"),
            ("{{ $ := 1 }}{{ $ }}", "1"),
            (
                "{{ range .Hosts }}{{ $.Level }}:{{ . }} {{ end }}",
                "CRITICAL:a CRITICAL:b ",
            ),
            ("{{ with $x := .Level }}{{ $x }}{{ end }}", "CRITICAL"),
            (
                "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}",
                "2",
            ),
            (
                "{{ $x := 0 }}{{ range .Hosts }}{{ $x = . }}{{ end }}{{ $x }}",
                "b",
            ),
            (
                "{{ range $i, $h := .Hosts }}{{ $i }}={{ $h }},{{ end }}",
                "0=a,1=b,",
            ),
            ("{{ range $h := .Hosts }}{{ $h }}{{ end }}", "ab"),
            (
                "{{ $i := 9 }}{{ $h := 9 }}{{ range $i, $h = .Hosts }}{{ end }}{{ $i }}{{ $h }}",
                "1b",
            ),
            (
                "{{ range .Hosts }}{{ $y := . }}{{ $y }}{{ end }}{{ $z := 5 }}{{ $z }}",
                "ab5",
            ),
        ]);
        let (s, rep) = rr(r#"{{ if $v := index .Tags "nope" }}y{{ else }}[{{ $v }}]{{ end }}"#);
        assert_eq!(s, "[]");
        assert_eq!(rep.missing_keys, 1);
    }

    #[test]
    fn variable_scope_ends_at_end() {
        assert_perr(
            "{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}",
            38,
            r#"undefined variable "$y""#,
        );
        assert_perr("{{ $x = 1 }}", 3, r#"undefined variable "$x""#);
        assert_perr("{{ $x := $x }}", 9, r#"undefined variable "$x""#);
        assert_perr(
            "{{ if 1 }}{{ $a := 1 }}{{ else }}{{ $a }}{{ end }}",
            36,
            r#"undefined variable "$a""#,
        );
        assert_perr(
            "{{ range .Hosts }}{{ $a := 1 }}{{ else }}{{ $a }}{{ end }}",
            44,
            r#"undefined variable "$a""#,
        );
        // Pipeline declarations stay visible in else branches.
        assert_eq!(
            r("{{ with $a := .Details }}x{{ else }}[{{ $a }}]{{ end }}"),
            "[]"
        );
        assert_eq!(
            r("{{ if $a := 0 }}x{{ else if $b := 2 }}{{ $a }}{{ $b }}{{ end }}"),
            "02"
        );
    }

    #[test]
    fn template_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Template>();
        assert_send_sync::<TemplateError>();
        assert_send_sync::<RenderReport>();
    }

    #[test]
    fn multibyte_text_offsets_and_passthrough() {
        check(&[
            ("héllo {{ .Level }} wörld ✓", "héllo CRITICAL wörld ✓"),
            ("{{ 1. }}", "1"),
            (r#"a{{"."}}b"#, "a.b"),
        ]);
        assert_perr("é{{ nope }}", 5, r#"function "nope" not defined"#);
        assert_perr("{{ .ID-}}", 6, "bad character U+002D '-'");
    }

    // -- control structures ------------------------------------------------------------

    #[test]
    fn if_else_chains() {
        check(&[
            (
                r#"{{ if eq .Level "OK" }}ok{{ else if eq .Level "WARNING" }}warn{{ else if eq .Level "CRITICAL" }}crit{{ else }}?{{ end }}"#,
                "crit",
            ),
            (
                r#"{{ if eq .Level "OK" }}ok{{ else if false }}no{{ end }}."#,
                ".",
            ),
            (
                "{{ if .Details }}d{{ else }}no details{{ end }}",
                "no details",
            ),
            ("{{ if .Hosts }}h{{ end }}", "h"),
            ("{{ if .Empty }}h{{ else }}e{{ end }}", "e"),
            ("{{ if 0.0 }}a{{ else }}b{{ end }}", "b"),
            ("{{ if .Time }}t{{ end }}", "t"),
            ("{{ if . }}root{{ end }}", "root"),
            ("{{if .Count}}{{if gt .Count 2}}many{{end}}{{end}}", "many"),
        ]);
    }

    #[test]
    fn with_blocks() {
        check(&[
            (
                r#"{{ with index .Fields "value" }}v={{ . }}{{ end }}"#,
                "v=91.5",
            ),
            (
                "{{ with .Details }}d{{ else }}none:{{ .Level }}{{ end }}",
                "none:CRITICAL",
            ),
            (
                "{{ with .Details }}d{{ else with .Message }}m={{ . }}{{ end }}",
                "m=cpu is high",
            ),
            (
                "{{ with .Tags }}{{ .host }}/{{ .cpu }}{{ end }}",
                "server01/cpu-total",
            ),
        ]);
    }

    #[test]
    fn range_forms() {
        check(&[
            (
                "{{ range .Tags }}{{ . }},{{ end }}",
                "cpu-total,server01,web-1,us-west,",
            ),
            (
                "{{ range $k, $v := .Fields }}{{ if eq $k \"value\" }}{{ $v }}{{ end }}{{ end }}",
                "91.5",
            ),
            ("{{ range .Empty }}x{{ else }}empty{{ end }}", "empty"),
            ("{{ range .Nothing }}x{{ else }}none{{ end }}", "none"),
            ("{{ range 3 }}{{ . }}{{ end }}", "012"),
            ("{{ range .Obj.nested.k }}<{{ . }}>{{ end }}", "<1><two>"),
            (
                "{{ range $k, $v := .Tags }}{{ if eq $k \"host\" }}{{ range $.Hosts }}{{ $v }}{{ . }} {{ end }}{{ end }}{{ end }}",
                "server01a server01b ",
            ),
        ]);
    }

    #[test]
    fn range_break_continue() {
        check(&[
            (
                "{{ range $i, $h := .Hosts }}{{ if eq $i 1 }}{{ break }}{{ end }}{{ $h }}{{ end }}",
                "a",
            ),
            (
                r#"{{ range .Hosts }}{{ if eq . "a" }}{{ continue }}{{ end }}{{ . }}{{ end }}"#,
                "b",
            ),
            (
                "{{ range .Tags }}{{ with . }}{{ break }}{{ end }}x{{ end }}done",
                "done",
            ),
            (
                "{{ range 3 }}{{ range 2 }}{{ break }}{{ end }}{{ . }}{{ end }}",
                "012",
            ),
        ]);
    }

    #[test]
    fn range_errors() {
        let (s, rep) = rr("{{ range .Level }}x{{ else }}e{{ end }}");
        assert_eq!(s, "e");
        assert_eq!(rep.errors, 1);
        assert!(rep.first_error.unwrap().contains("range can't iterate"));
        let (_, rep) = rr("{{ range . }}x{{ end }}");
        assert_eq!(rep.errors, 1);
    }

    // -- literals ------------------------------------------------------------------------

    #[test]
    fn string_literals() {
        check(&[
            (
                r#"{{ "a\tb\n\"q\"\\ \u00e9 \x41 \101 \U0001F600" }}"#,
                "a\tb\n\"q\"\\ é A A 😀",
            ),
            ("{{ `a\\nb \"raw\"` }}", "a\\nb \"raw\""),
            ("{{ `multi\r\nline` }}", "multi\nline"),
            (r#"{{ "}}" }}"#, "}}"),
            (r#"{{ "{{" }}"#, "{{"),
            (r#"{{ "" }}"#, ""),
        ]);
    }

    #[test]
    fn number_bool_nil_literals() {
        check(&[
            ("{{ 0x1F }}", "31"),
            ("{{ 010 }}", "8"),
            ("{{ 0o17 }}", "15"),
            ("{{ 0b101 }}", "5"),
            ("{{ 1_000 }}", "1000"),
            ("{{ -5 }}", "-5"),
            ("{{ +5 }}", "5"),
            ("{{ 1.5e3 }}", "1500"),
            ("{{ .5 }}", "0.5"),
            ("{{ 1e6 }}", "1e+06"),
            ("{{ -0x10 }}", "-16"),
            ("{{ 9223372036854775807 }}", "9223372036854775807"),
            ("{{ -9223372036854775808 }}", "-9223372036854775808"),
            ("{{ 'a' }}", "97"),
            (r"{{ '\n' }}", "10"),
            (r"{{ '\'' }}", "39"),
            ("{{ printf \"%c\" 'é' }}", "é"),
            ("{{ true }} {{ false }}", "true false"),
            ("{{ printf \"%v\" nil }}", "<nil>"),
        ]);
    }

    // -- parse errors ----------------------------------------------------------------------

    #[test]
    fn parse_errors_with_offsets() {
        assert_perr("abc {{ .ID ", 4, "unclosed action");
        assert_perr("x{{ end }}", 1, "unexpected {{end}}");
        assert_perr(
            r#"{{ indx .Tags "host" }}"#,
            3,
            r#"function "indx" not defined"#,
        );
        assert_perr(
            r#"ok {{ .ID | prinf "%s" }}"#,
            12,
            r#"function "prinf" not defined"#,
        );
        assert_perr("x{{ if .ID }}y", 1, "missing {{end}} for {{if}}");
        assert_perr(
            "{{ range .Tags }}{{ if 1 }}{{ end }}",
            0,
            "missing {{end}} for {{range}}",
        );
        assert_perr("{{ with 1 }}{{ else }}", 0, "missing {{end}} for {{with}}");
        assert_perr("{{ $x }}", 3, r#"undefined variable "$x""#);
        assert_perr(r#"{{ "abc }}"#, 3, "unterminated quoted string");
        assert_perr("{{ `abc }}", 3, "unterminated raw quoted string");
        assert_perr("{{ 'a }}", 3, "unterminated character constant");
        assert_perr("{{ 12ab }}", 3, "bad number syntax");
        assert_perr("{{ break }}", 0, "{{break}} outside {{range}}");
        assert_perr(
            "{{ range 1 }}{{ else }}{{ continue }}{{ end }}",
            23,
            "{{continue}} outside {{range}}",
        );
        assert_perr("a{{ else }}", 1, "unexpected {{else}}");
        assert_perr(
            "{{ if 1 }}{{ else }}{{ else }}{{ end }}",
            20,
            "expected {{end}}; found {{else}}",
        );
        assert_perr(
            "{{ $a, $b := .Tags }}",
            5,
            "too many declarations in command",
        );
        assert_perr(
            r#"{{ .ID | "x" }}"#,
            9,
            "non executable command in pipeline stage 2",
        );
        assert_perr(
            "{{ len 1 2 }}",
            3,
            "wrong number of args for len: want 1 got 2",
        );
        assert_perr(
            "{{ .ID | len 1 }}",
            9,
            "wrong number of args for len: want 1 got 2",
        );
        assert_perr(
            "{{ eq 1 }}",
            3,
            "wrong number of args for eq: want at least 2 got 1",
        );
        assert_perr(
            "{{ print len }}",
            9,
            "wrong number of args for len: want 1 got 0",
        );
        assert_perr("{{ (.ID }}", 3, "unclosed left paren");
        assert_perr("{{ .ID) }}", 6, "unexpected right paren");
        assert_perr(r#"{{ template "x" }}"#, 3, "{{template}} is not supported");
        assert_perr(
            r#"{{ define "x" }}{{ end }}"#,
            3,
            "{{define}} is not supported",
        );
        assert_perr("{{ }}", 3, "missing value for command");
        assert_perr("{{ if }}{{ end }}", 6, "missing value for if");
        assert_perr("{{ .ID | }}", 9, "missing command after |");
        assert_perr(r#"{{ "x" 1 }}"#, 7, "can't give argument to non-function");
        assert_perr("{{ $ 1 }}", 3, "can't give argument to non-function $");
        assert_perr("{{ nil }}", 3, "nil is not a command");
        assert_perr("{{ # }}", 3, "unrecognized character in action: U+0023 '#'");
        assert_perr(r#"{{ .ID"x" }}"#, 6, "bad character U+0022");
        assert_perr(r#"{{ index .Tags"host" }}"#, 14, "bad character");
        assert_perr(r#"{{ "x".y }}"#, 6, "unexpected . after term");
        assert_perr(
            "{{ range .Hosts }}{{ else if 1 }}{{ end }}",
            26,
            "{{else if}} is not allowed in {{range}}",
        );
        assert_perr("{{ 1i }}", 3, "complex numbers are not supported");
        assert_perr(r#"{{ "\q" }}"#, 3, "unknown escape sequence");
        assert_perr(
            "{{ ($x := 1) }}",
            4,
            "not allowed in parenthesized pipeline",
        );
        assert_perr("{{ end 1 }}", 7, "unexpected \"1\" in end");
        assert_perr("{{ 99999999999999999999 }}", 3, "overflows");
        assert_perr("{{ .ID : }}", 7, "expected :=");
        assert_perr("{{ print if }}", 9, "unexpected \"if\" in operand");
    }

    #[test]
    fn parse_error_nesting_limit() {
        let src = "{{ if 1 }}".repeat(MAX_NESTING + 1) + &"{{ end }}".repeat(MAX_NESTING + 1);
        assert!(perr_of(&src).message.contains("nesting too deep"));
        let ok = "{{ if 1 }}".repeat(20) + "x" + &"{{ end }}".repeat(20);
        assert_eq!(r(&ok), "x");
        let parens = "{{ ".to_string()
            + &"(".repeat(MAX_NESTING + 1)
            + "1"
            + &")".repeat(MAX_NESTING + 1)
            + " }}";
        assert!(perr_of(&parens).message.contains("nesting too deep"));
    }

    // -- runtime errors ----------------------------------------------------------------------

    #[test]
    fn runtime_errors_are_counted_and_output_continues() {
        let (s, rep) = rr("a{{ len 3 }}b{{ index .Hosts 9 }}c{{ .Level }}");
        assert_eq!(s, "abcCRITICAL");
        assert_eq!(rep.errors, 2);
        assert_eq!(rep.missing_keys, 0);
        let first = rep.first_error.unwrap();
        assert!(first.contains("len of type int64"), "{first}");
        assert!(first.contains("at byte 4"), "{first}");
        let (s, rep) = rr(r#"{{ printf "%d" .Level }} ok"#);
        assert_eq!(s, "%!d(string=CRITICAL) ok");
        assert_eq!(rep.errors, 1);
        assert!(!rep.is_clean());
    }

    #[test]
    fn failing_condition_is_false_and_declarations_still_bind() {
        let (s, rep) = rr(r#"{{ if lt .Level 1 }}a{{ else }}b{{ end }}"#);
        assert_eq!(s, "b");
        assert_eq!(rep.errors, 1);
        let (s, rep) = rr("{{ $x := len 3 }}[{{ $x }}]{{ $y := 2 }}{{ $y }}");
        assert_eq!(s, "[<no value>]2");
        assert_eq!(rep.errors, 1);
    }

    // -- fields_used ----------------------------------------------------------------------------

    fn fu(src: &str) -> FieldsUsed {
        parse(src).fields_used()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fields_used_analysis() {
        let f = fu(r#"{{ .ID }} {{ index .Tags "host" }} {{ .Time.Unix }} {{ .ID }}"#);
        assert_eq!(f.names, names(&["ID", "Tags", "Time"]));
        assert!(!f.whole_dot);
        assert!(f.uses("Tags"));
        assert!(!f.uses("Fields"));

        assert!(fu("{{ json . }}").whole_dot);
        assert!(fu("{{ . }}").whole_dot);
        assert!(fu(r#"{{ printf "%v" $ }}"#).whole_dot);
        assert!(fu("{{ json . }}").uses("Anything"));

        assert_eq!(
            fu("{{ range .Tags }}{{ .Foo }}{{ end }}").names,
            names(&["Tags"])
        );
        assert!(!fu("{{ range .Tags }}{{ . }}{{ end }}").whole_dot);
        assert_eq!(
            fu("{{ with .Fields }}{{ .value }}{{ else }}{{ .Level }}{{ end }}").names,
            names(&["Fields", "Level"])
        );
        assert_eq!(
            fu("{{ range .Hosts }}{{ $.ID }}{{ end }}").names,
            names(&["Hosts", "ID"])
        );
        assert_eq!(fu("{{ (.Tags).host }}").names, names(&["Tags"]));
        assert_eq!(
            fu(r#"{{ if eq .Level "OK" }}{{ .Message }}{{ end }}"#).names,
            names(&["Level", "Message"])
        );
        assert_eq!(
            fu(r#"{{ printf "%s" (index .Fields "x") | len }}"#).names,
            names(&["Fields"])
        );
        assert_eq!(fu("static").names, Vec::<String>::new());
    }

    // -- other MapData impls -----------------------------------------------------------------------

    #[test]
    fn serde_json_map_impl() {
        check(&[
            (r#"{{ index .Obj "n" }}"#, "2"),
            (
                "{{ range $k, $v := .Obj }}{{ $k }};{{ end }}",
                "a;f;n;nested;",
            ),
            ("{{ .Obj }}", "map[a:x f:2.5 n:2 nested:map[k:[1 two]]]"),
        ]);
        let (s, rep) = rr(r#"[{{ index .Obj "zzz" }}]"#);
        assert_eq!(s, "[]");
        assert_eq!(rep.missing_keys, 1);
        let j = serde_json::json!({"x": [1.5, null, true]});
        assert_eq!(
            format!("{:?}", json_to_value(&j["x"])),
            "List([Float(1.5), Nil, Bool(true)])"
        );
    }

    #[test]
    fn render_is_repeatable() {
        let t = parse(r#"{{ range $k, $v := .Tags }}{{ $k }}{{ end }}{{ $x := 1 }}{{ $x }}"#);
        let a = alert();
        let first = t.render_to_string(&a);
        for _ in 0..3 {
            assert_eq!(t.render_to_string(&a), first);
        }
    }
}
