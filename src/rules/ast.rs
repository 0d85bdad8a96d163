//! The syntax tree of a rule script, independent of the parser that builds it.
//!
//! Every node carries the 1-based line and column where it starts ([`Pos`]), so that checks run
//! long after parsing still point at the right place in the source.

use std::fmt;

/// A 1-based line and column in a rule's source (the column counts characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// Line number, starting at 1.
    pub line: u32,
    /// Column number, starting at 1.
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A value with the position where it starts in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Positioned<T> {
    /// Where the value starts.
    pub pos: Pos,
    /// The value.
    pub node: T,
}

impl<T> Positioned<T> {
    /// Wraps `node` with its position.
    pub fn new(pos: Pos, node: T) -> Self {
        Positioned { pos, node }
    }
}

/// A whole script.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// Statements in source order.
    pub statements: Vec<Positioned<Statement>>,
}

/// A top-level statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `dbrp "db"."rp"`
    Dbrp {
        /// Database name.
        db: String,
        /// Retention policy name.
        rp: String,
    },
    /// `var name = expr`
    Var {
        /// Variable name.
        name: Positioned<String>,
        /// Its value.
        value: Expr,
    },
    /// `var name type` (a declaration filled in by a template; alertd reports it as unset).
    VarType {
        /// Variable name.
        name: Positioned<String>,
        /// Declared type, e.g. `duration`.
        ty: String,
    },
    /// A bare expression, usually a pipeline.
    Expr(Expr),
}

/// An expression with its position.
pub type Expr = Positioned<ExprKind>;

/// Binary operators, in Kapacitor's precedence order (lowest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `OR`
    Or,
    /// `AND`
    And,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `=~`
    RegexMatch,
    /// `!~`
    RegexNotMatch,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
}

impl BinaryOp {
    /// The operator as written in a script.
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Or => "OR",
            BinaryOp::And => "AND",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::RegexMatch => "=~",
            BinaryOp::RegexNotMatch => "!~",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
        }
    }

    /// True for `< <= > >=`.
    pub fn is_ordering(self) -> bool {
        matches!(
            self,
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
        )
    }

    /// True for `+ - * / %`.
    pub fn is_arithmetic(self) -> bool {
        matches!(
            self,
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod
        )
    }
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `!x`
    Not,
}

/// How a chain link attaches to what precedes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainKind {
    /// `|node(...)`: creates a child node.
    Pipe,
    /// `.property(...)` or `.property`: sets a property.
    Dot,
    /// `@udf(...)`: a user-defined function (parsed, rejected by the checker).
    At,
}

/// The kinds of expression.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A variable or a bare name such as `stream`.
    Ident(String),
    /// `10`
    Int(i64),
    /// `10.5`
    Float(f64),
    /// `10s`, in nanoseconds.
    Duration(i64),
    /// `'text'` or `'''text'''`
    Str(String),
    /// `"field_or_tag"`
    Reference(String),
    /// `/regex/`, as written between the slashes (with `\/` unescaped).
    Regex(String),
    /// `TRUE` / `FALSE`
    Bool(bool),
    /// `*`
    Star,
    /// `[a, 'b', *]`
    List(Vec<Expr>),
    /// `lambda: expr`
    Lambda(Box<Expr>),
    /// `a OP b`
    Binary {
        /// Operator.
        op: BinaryOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `-a`, `!a`
    Unary {
        /// Operator.
        op: UnaryOp,
        /// Operand.
        expr: Box<Expr>,
    },
    /// A function call inside a lambda, e.g. `bool("healthy")`.
    Call {
        /// Function name.
        name: Positioned<String>,
        /// Arguments.
        args: Vec<Expr>,
    },
    /// `target|name(args)`, `target.name(args)`, `target@name(args)`.
    Chain {
        /// What the link attaches to.
        target: Box<Expr>,
        /// Kind of link.
        kind: ChainKind,
        /// Node or property name.
        name: Positioned<String>,
        /// Arguments (empty for `.name` without parentheses).
        args: Vec<Expr>,
    },
}

impl ExprKind {
    /// A short description for error messages ("a duration", "a lambda", ...).
    pub fn describe(&self) -> &'static str {
        match self {
            ExprKind::Ident(_) => "a name",
            ExprKind::Int(_) => "an integer",
            ExprKind::Float(_) => "a float",
            ExprKind::Duration(_) => "a duration",
            ExprKind::Str(_) => "a string",
            ExprKind::Reference(_) => "a field reference",
            ExprKind::Regex(_) => "a regex",
            ExprKind::Bool(_) => "a boolean",
            ExprKind::Star => "*",
            ExprKind::List(_) => "a list",
            ExprKind::Lambda(_) => "a lambda",
            ExprKind::Binary { .. } | ExprKind::Unary { .. } => "an expression",
            ExprKind::Call { .. } => "a function call",
            ExprKind::Chain {
                kind: ChainKind::Pipe,
                ..
            } => "a node",
            ExprKind::Chain { .. } => "a chain",
        }
    }
}

/// Formats a duration in nanoseconds the way a script would write it (`10s`, `1m30s`, `250ms`).
pub fn format_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    let mut n = ns;
    if n < 0 {
        out.push('-');
        n = n.checked_neg().unwrap_or(i64::MAX);
    }
    const UNITS: [(i64, &str); 7] = [
        (7 * 24 * 3_600_000_000_000, "w"),
        (24 * 3_600_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "u"),
    ];
    for (unit, name) in UNITS {
        if n >= unit {
            out.push_str(&(n / unit).to_string());
            out.push_str(name);
            n %= unit;
        }
    }
    if n > 0 {
        out.push_str(&n.to_string());
        out.push_str("ns");
    }
    out
}

/// Formats a duration as Go's `time.Duration.String()` does (`10s`, `1m0s`, `1.5s`, `250ms`),
/// which Kapacitor's default messages use.
pub fn format_go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        let (unit, div) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        out.push_str(&frac(u, div));
        out.push_str(unit);
    } else {
        let h = u / 3_600_000_000_000;
        let m = (u / 60_000_000_000) % 60;
        let s = u % 60_000_000_000;
        if h > 0 {
            out.push_str(&format!("{h}h{m}m"));
        } else if m > 0 {
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&frac(s, 1_000_000_000));
        out.push('s');
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

fn frac(v: u64, div: u64) -> String {
    let whole = v / div;
    let rest = v % div;
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(format_go_duration(10_000_000_000), "10s");
        assert_eq!(format_go_duration(60_000_000_000), "1m0s");
        assert_eq!(format_go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(format_go_duration(1_500_000_000), "1.5s");
        assert_eq!(format_go_duration(250_000_000), "250ms");
        assert_eq!(format_go_duration(90_000_000_000), "1m30s");
        assert_eq!(format_go_duration(0), "0s");
    }
}
