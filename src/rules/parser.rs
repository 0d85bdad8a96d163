//! Turns rule source text into the [`ast`](super::ast) with the pest grammar in
//! `grammar/tick.pest`; operator precedence is resolved with pest's Pratt parser.
//!
//! Syntax errors become a [`Diagnostic`] carrying the line and column and a message that names
//! what was expected in words, not grammar rule names.

use pest::Parser as _;
use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};
use std::sync::OnceLock;

use super::Diagnostic;
use super::ast::*;

// Rebuild when the grammar changes.
const _GRAMMAR: &str = include_str!("../../grammar/tick.pest");

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/tick.pest"]
struct TickParser;

fn pratt() -> &'static PrattParser<Rule> {
    static PRATT: OnceLock<PrattParser<Rule>> = OnceLock::new();
    PRATT.get_or_init(|| {
        PrattParser::new()
            .op(Op::infix(Rule::op_or, Assoc::Left))
            .op(Op::infix(Rule::op_and, Assoc::Left))
            .op(Op::infix(Rule::op_eq, Assoc::Left)
                | Op::infix(Rule::op_ne, Assoc::Left)
                | Op::infix(Rule::op_re, Assoc::Left)
                | Op::infix(Rule::op_nre, Assoc::Left))
            .op(Op::infix(Rule::op_lt, Assoc::Left)
                | Op::infix(Rule::op_le, Assoc::Left)
                | Op::infix(Rule::op_gt, Assoc::Left)
                | Op::infix(Rule::op_ge, Assoc::Left))
            .op(Op::infix(Rule::op_add, Assoc::Left) | Op::infix(Rule::op_sub, Assoc::Left))
            .op(Op::infix(Rule::op_mul, Assoc::Left)
                | Op::infix(Rule::op_div, Assoc::Left)
                | Op::infix(Rule::op_mod, Assoc::Left))
            .op(Op::prefix(Rule::op_neg) | Op::prefix(Rule::op_not))
    })
}

/// Maps byte offsets to 1-based line and column (in characters).
struct LineIndex<'a> {
    src: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(src: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(memchr::memchr_iter(b'\n', src.as_bytes()).map(|i| i + 1));
        LineIndex { src, starts }
    }

    fn pos(&self, offset: usize) -> Pos {
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let col = self
            .src
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        Pos {
            line: line as u32,
            col: col as u32,
        }
    }
}

/// Parses a whole script.
pub fn parse(src: &str) -> Result<Program, Diagnostic> {
    let pairs = TickParser::parse(Rule::program, src).map_err(|e| syntax_error(src, e))?;
    let idx = LineIndex::new(src);
    let b = Builder { idx: &idx };
    let mut statements = Vec::new();
    for pair in pairs.flatten().take(1) {
        for stmt in pair.into_inner() {
            if stmt.as_rule() == Rule::EOI {
                continue;
            }
            statements.push(b.statement(stmt)?);
        }
    }
    Ok(Program { statements })
}

/// Parses a single expression (used by tests and by `alertd` tools that take a lambda).
pub fn parse_expression(src: &str) -> Result<Expr, Diagnostic> {
    let program = parse(src)?;
    match program.statements.into_iter().next() {
        Some(Positioned {
            node: Statement::Expr(e),
            ..
        }) => Ok(e),
        _ => Err(Diagnostic::new(
            Pos { line: 1, col: 1 },
            "expected an expression",
        )),
    }
}

struct Builder<'i, 'a> {
    idx: &'i LineIndex<'a>,
}

impl Builder<'_, '_> {
    fn pos(&self, pair: &Pair<'_, Rule>) -> Pos {
        self.idx.pos(pair.as_span().start())
    }

    fn statement(&self, pair: Pair<'_, Rule>) -> Result<Positioned<Statement>, Diagnostic> {
        let pos = self.pos(&pair);
        let rule = pair.as_rule();
        let mut inner = pair.into_inner();
        let stmt = match rule {
            Rule::dbrp_stmt => {
                let _kw = inner.next();
                let db = unquote_reference(next(&mut inner)?.as_str());
                let rp = unquote_reference(next(&mut inner)?.as_str());
                Statement::Dbrp { db, rp }
            }
            Rule::var_decl => {
                let _kw = inner.next();
                let name = next(&mut inner)?;
                let name = Positioned::new(self.pos(&name), name.as_str().to_string());
                let value = self.expression(next(&mut inner)?)?;
                Statement::Var { name, value }
            }
            Rule::var_type_decl => {
                let _kw = inner.next();
                let name = next(&mut inner)?;
                let name = Positioned::new(self.pos(&name), name.as_str().to_string());
                let ty = next(&mut inner)?.as_str().to_string();
                Statement::VarType { name, ty }
            }
            Rule::expr_stmt => Statement::Expr(self.expression(next(&mut inner)?)?),
            other => return Err(internal(pos, other)),
        };
        Ok(Positioned::new(pos, stmt))
    }

    fn expression(&self, pair: Pair<'_, Rule>) -> Result<Expr, Diagnostic> {
        debug_assert_eq!(pair.as_rule(), Rule::expression);
        self.pratt_expr(pair.into_inner())
    }

    fn pratt_expr(&self, pairs: Pairs<'_, Rule>) -> Result<Expr, Diagnostic> {
        pratt()
            .map_primary(|p| self.operand(p))
            .map_prefix(|op, rhs| {
                let rhs = rhs?;
                let pos = self.pos(&op);
                let op = match op.as_rule() {
                    Rule::op_neg => UnaryOp::Neg,
                    _ => UnaryOp::Not,
                };
                Ok(fold_unary(pos, op, rhs))
            })
            .map_infix(|lhs, op, rhs| {
                let lhs = lhs?;
                let rhs = rhs?;
                let op = match op.as_rule() {
                    Rule::op_or => BinaryOp::Or,
                    Rule::op_and => BinaryOp::And,
                    Rule::op_eq => BinaryOp::Eq,
                    Rule::op_ne => BinaryOp::Ne,
                    Rule::op_re => BinaryOp::RegexMatch,
                    Rule::op_nre => BinaryOp::RegexNotMatch,
                    Rule::op_lt => BinaryOp::Lt,
                    Rule::op_le => BinaryOp::Le,
                    Rule::op_gt => BinaryOp::Gt,
                    Rule::op_ge => BinaryOp::Ge,
                    Rule::op_add => BinaryOp::Add,
                    Rule::op_sub => BinaryOp::Sub,
                    Rule::op_mul => BinaryOp::Mul,
                    Rule::op_div => BinaryOp::Div,
                    _ => BinaryOp::Mod,
                };
                Ok(Positioned::new(
                    lhs.pos,
                    ExprKind::Binary {
                        op,
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                    },
                ))
            })
            .parse(pairs)
    }

    fn operand(&self, pair: Pair<'_, Rule>) -> Result<Expr, Diagnostic> {
        debug_assert_eq!(pair.as_rule(), Rule::operand);
        let mut inner = pair.into_inner();
        let mut expr = self.primary(next(&mut inner)?)?;
        for link in inner {
            let kind = match link.as_rule() {
                Rule::pipe_chain => ChainKind::Pipe,
                Rule::dot_chain => ChainKind::Dot,
                _ => ChainKind::At,
            };
            let pos = self.pos(&link);
            let mut parts = link.into_inner();
            let name = next(&mut parts)?;
            let name = Positioned::new(self.pos(&name), name.as_str().to_string());
            let args = match parts.next() {
                Some(p) if p.as_rule() == Rule::call_args => {
                    self.args(next(&mut p.into_inner())?)?
                }
                Some(p) => self.args(p)?,
                None => Vec::new(),
            };
            expr = Positioned::new(
                pos,
                ExprKind::Chain {
                    target: Box::new(expr),
                    kind,
                    name,
                    args,
                },
            );
        }
        Ok(expr)
    }

    fn args(&self, pair: Pair<'_, Rule>) -> Result<Vec<Expr>, Diagnostic> {
        pair.into_inner().map(|a| self.arg(a)).collect()
    }

    fn arg(&self, pair: Pair<'_, Rule>) -> Result<Expr, Diagnostic> {
        match pair.as_rule() {
            Rule::lambda => {
                let pos = self.pos(&pair);
                let mut inner = pair.into_inner();
                let _kw = inner.next();
                let body = self.expression(next(&mut inner)?)?;
                Ok(Positioned::new(pos, ExprKind::Lambda(Box::new(body))))
            }
            Rule::expression => self.expression(pair),
            other => Err(internal(self.pos(&pair), other)),
        }
    }

    fn primary(&self, pair: Pair<'_, Rule>) -> Result<Expr, Diagnostic> {
        let pos = self.pos(&pair);
        let text = pair.as_str();
        let kind =
            match pair.as_rule() {
                Rule::paren => return self.expression(next(&mut pair.into_inner())?),
                Rule::list => ExprKind::List(
                    pair.into_inner()
                        .map(|a| self.arg(a))
                        .collect::<Result<_, _>>()?,
                ),
                Rule::duration => ExprKind::Duration(parse_duration(text).ok_or_else(|| {
                    Diagnostic::new(pos, format!("duration '{text}' is out of range"))
                })?),
                Rule::number => {
                    if text.contains('.') {
                        ExprKind::Float(text.parse().map_err(|_| {
                            Diagnostic::new(pos, format!("invalid number '{text}'"))
                        })?)
                    } else {
                        ExprKind::Int(text.parse().map_err(|_| {
                            Diagnostic::new(pos, format!("integer '{text}' is out of range"))
                        })?)
                    }
                }
                Rule::string => ExprKind::Str(unquote_string(text)),
                Rule::reference => ExprKind::Reference(unquote_reference(text)),
                Rule::regex => ExprKind::Regex(text[1..text.len() - 1].replace("\\/", "/")),
                Rule::boolean => ExprKind::Bool(text == "TRUE"),
                Rule::star => ExprKind::Star,
                Rule::call => {
                    let mut inner = pair.into_inner();
                    let name = next(&mut inner)?;
                    let name = Positioned::new(self.pos(&name), name.as_str().to_string());
                    let args = self.args(next(&mut inner)?)?;
                    ExprKind::Call { name, args }
                }
                Rule::ident => ExprKind::Ident(text.to_string()),
                other => return Err(internal(pos, other)),
            };
        Ok(Positioned::new(pos, kind))
    }
}

/// `-5` folds into a negative literal so that `.flapping(-1, 2)` style arguments stay literals.
fn fold_unary(pos: Pos, op: UnaryOp, rhs: Expr) -> Expr {
    match (op, &rhs.node) {
        (UnaryOp::Neg, ExprKind::Int(v)) => Positioned::new(pos, ExprKind::Int(v.wrapping_neg())),
        (UnaryOp::Neg, ExprKind::Float(v)) => Positioned::new(pos, ExprKind::Float(-v)),
        (UnaryOp::Neg, ExprKind::Duration(v)) => {
            Positioned::new(pos, ExprKind::Duration(v.wrapping_neg()))
        }
        _ => Positioned::new(
            pos,
            ExprKind::Unary {
                op,
                expr: Box::new(rhs),
            },
        ),
    }
}

fn next<'a>(pairs: &mut Pairs<'a, Rule>) -> Result<Pair<'a, Rule>, Diagnostic> {
    pairs
        .next()
        .ok_or_else(|| Diagnostic::new(Pos::default(), "internal parser error: missing element"))
}

fn internal(pos: Pos, rule: Rule) -> Diagnostic {
    Diagnostic::new(pos, format!("internal parser error: unexpected {rule:?}"))
}

/// Parses `10s`, `1m`, `250ms`, `1w` into nanoseconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = text.split_at(split);
    let n: i64 = num.parse().ok()?;
    let mult: i64 = match unit {
        "ns" => 1,
        "u" | "us" | "µ" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "w" => 604_800_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn unquote_string(text: &str) -> String {
    if let Some(inner) = text.strip_prefix("'''").and_then(|t| t.strip_suffix("'''")) {
        return inner.to_string();
    }
    let inner = &text[1..text.len() - 1];
    inner.replace("\\'", "'")
}

fn unquote_reference(text: &str) -> String {
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    inner.replace("\\\"", "\"")
}

fn describe_rule(rule: &Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "end of input",
        Rule::program | Rule::statement => "a statement",
        Rule::expression | Rule::operand | Rule::primary => "an expression",
        Rule::expr_stmt => "an expression",
        Rule::var_decl | Rule::var_type_decl | Rule::kw_var => "'var'",
        Rule::dbrp_stmt | Rule::kw_dbrp => "'dbrp'",
        Rule::type_name => "a type (int, float, bool, string, regex, duration, lambda, list, star)",
        Rule::ident => "a name",
        Rule::call => "a function call",
        Rule::paren => "'('",
        Rule::list => "'['",
        Rule::duration | Rule::duration_unit => "a duration",
        Rule::number => "a number",
        Rule::string | Rule::single_string | Rule::triple_string => "a string",
        Rule::reference => "a \"field\" reference",
        Rule::regex => "a /regex/",
        Rule::boolean => "TRUE or FALSE",
        Rule::star => "'*'",
        Rule::lambda | Rule::kw_lambda => "'lambda:'",
        Rule::pipe_chain => "'|node()'",
        Rule::dot_chain => "'.property()'",
        Rule::at_chain => "'@udf()'",
        Rule::call_args | Rule::args => "arguments",
        Rule::chain => "a chain",
        Rule::infix
        | Rule::op_or
        | Rule::op_and
        | Rule::op_eq
        | Rule::op_ne
        | Rule::op_re
        | Rule::op_nre
        | Rule::op_le
        | Rule::op_ge
        | Rule::op_lt
        | Rule::op_gt
        | Rule::op_add
        | Rule::op_sub
        | Rule::op_mul
        | Rule::op_div
        | Rule::op_mod => "an operator",
        Rule::prefix | Rule::op_neg | Rule::op_not => "'-' or '!'",
        _ => return None,
    })
}

fn syntax_error(src: &str, err: pest::error::Error<Rule>) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let offset = match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let pos = LineIndex::new(src).pos(offset);
    let found = describe_found(&src[offset.min(src.len())..]);
    let message = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut expected: Vec<&str> = positives.iter().filter_map(describe_rule).collect();
            expected.sort_unstable();
            expected.dedup();
            if let Some(hint) = hint_for(&src[offset.min(src.len())..]) {
                format!("unexpected {found}: {hint}")
            } else if expected.is_empty() {
                format!("unexpected {found}")
            } else {
                format!("unexpected {found}, expected {}", join_or(&expected))
            }
        }
        ErrorVariant::CustomError { message } => message.clone(),
    };
    Diagnostic::new(pos, message)
}

fn hint_for(rest: &str) -> Option<&'static str> {
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    if digits > 0 {
        let after = &rest[digits..];
        if after.starts_with('.')
            && after[1..].starts_with(|c: char| c.is_ascii_digit())
            && after[1..]
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .starts_with(|c: char| c.is_ascii_alphabetic())
        {
            return Some(
                "a duration must be a whole number followed by a unit (write 90m, not 1.5h)",
            );
        }
        if after.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Some("unknown duration unit (use u, ms, s, m, h, d or w)");
        }
    }
    if rest.starts_with("and ") || rest.starts_with("or ") {
        return Some("logical operators are written AND and OR in upper case");
    }
    if rest.starts_with("true") || rest.starts_with("false") {
        return Some("booleans are written TRUE and FALSE in upper case");
    }
    if rest.starts_with('"') && !rest[1..].contains('"') {
        return Some("unterminated \"reference\"");
    }
    if rest.starts_with('\'') && !rest[1..].contains('\'') {
        return Some("unterminated 'string'");
    }
    None
}

fn describe_found(rest: &str) -> String {
    match rest.chars().next() {
        None => "end of input".to_string(),
        Some(c) if c.is_alphanumeric() || c == '_' => {
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                .take(40)
                .collect();
            format!("'{word}'")
        }
        Some(c) => format!("'{c}'"),
    }
}

fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} or {}", rest.join(", "), last),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(src: &str) -> ExprKind {
        parse_expression(src).expect("parses").node
    }

    fn err(src: &str) -> String {
        let d = parse(src).expect_err("must not parse");
        format!("{}: {}", d.pos, d.message)
    }

    #[test]
    fn literals() {
        assert_eq!(expr("10"), ExprKind::Int(10));
        assert_eq!(expr("10.5"), ExprKind::Float(10.5));
        assert_eq!(expr("10s"), ExprKind::Duration(10_000_000_000));
        assert_eq!(expr("250ms"), ExprKind::Duration(250_000_000));
        assert_eq!(expr("1w"), ExprKind::Duration(604_800_000_000_000));
        assert_eq!(expr("5u"), ExprKind::Duration(5_000));
        assert_eq!(expr("'it\\'s'"), ExprKind::Str("it's".into()));
        assert_eq!(
            expr("'''multi\nline'''"),
            ExprKind::Str("multi\nline".into())
        );
        assert_eq!(
            expr("\"used_percent\""),
            ExprKind::Reference("used_percent".into())
        );
        assert_eq!(expr("/^node\\/0+/"), ExprKind::Regex("^node/0+".into()));
        assert_eq!(expr("TRUE"), ExprKind::Bool(true));
        assert_eq!(expr("-5"), ExprKind::Int(-5));
        assert_eq!(expr("-2.5"), ExprKind::Float(-2.5));
    }

    #[test]
    fn precedence_follows_kapacitor() {
        // OR < AND < == < > < + < *
        let e = parse_expression(r#""a" > 1 + 2 * 3 AND "b" == 'x' OR "c" < 4"#).unwrap();
        let ExprKind::Binary { op, lhs, .. } = e.node else {
            panic!("binary")
        };
        assert_eq!(op, BinaryOp::Or);
        let ExprKind::Binary { op, lhs, .. } = lhs.node else {
            panic!("binary")
        };
        assert_eq!(op, BinaryOp::And);
        let ExprKind::Binary { op, rhs, .. } = lhs.node else {
            panic!("binary")
        };
        assert_eq!(op, BinaryOp::Gt);
        let ExprKind::Binary { op, rhs, .. } = rhs.node else {
            panic!("binary")
        };
        assert_eq!(op, BinaryOp::Add);
        assert!(matches!(
            rhs.node,
            ExprKind::Binary {
                op: BinaryOp::Mul,
                ..
            }
        ));
    }

    #[test]
    fn division_is_not_a_regex() {
        let e = expr(r#""a" / 2 / "b""#);
        assert!(matches!(
            e,
            ExprKind::Binary {
                op: BinaryOp::Div,
                ..
            }
        ));
        let e = expr(r#""host" =~ /^web/ AND "x" != 1"#);
        assert!(matches!(
            e,
            ExprKind::Binary {
                op: BinaryOp::And,
                ..
            }
        ));
    }

    #[test]
    fn chains_and_lambdas() {
        let p = parse(
            "var data = stream\n  |from()\n    .measurement('cpu')\n    .groupBy('host', 'cluster')\n  |alert()\n    .crit(lambda: \"usage_idle\" < 10)\n",
        )
        .unwrap();
        assert_eq!(p.statements.len(), 1);
        let Statement::Var { name, value } = &p.statements[0].node else {
            panic!("var")
        };
        assert_eq!(name.node, "data");
        let ExprKind::Chain {
            kind, name, args, ..
        } = &value.node
        else {
            panic!("chain")
        };
        assert_eq!(*kind, ChainKind::Dot);
        assert_eq!(name.node, "crit");
        assert_eq!(name.pos, Pos { line: 6, col: 6 });
        assert!(matches!(args[0].node, ExprKind::Lambda(_)));
    }

    #[test]
    fn property_without_parentheses() {
        let e = expr("stream|from().groupByMeasurement");
        assert!(matches!(
            e,
            ExprKind::Chain {
                kind: ChainKind::Dot,
                ..
            }
        ));
    }

    #[test]
    fn statements() {
        let p =
            parse("dbrp \"telegraf\".\"autogen\"\nvar x duration\n// c\nvar y = 5 // trailing\n")
                .unwrap();
        assert_eq!(
            p.statements[0].node,
            Statement::Dbrp {
                db: "telegraf".into(),
                rp: "autogen".into()
            }
        );
        assert!(matches!(p.statements[1].node, Statement::VarType { .. }));
        assert!(matches!(p.statements[2].node, Statement::Var { .. }));
        assert_eq!(p.statements[2].pos, Pos { line: 4, col: 1 });
    }

    #[test]
    fn function_calls_in_lambdas() {
        let e = expr("x.where(lambda: if(bool(\"healthy\") != TRUE, 1, 0))");
        let ExprKind::Chain { args, .. } = e else {
            panic!("chain")
        };
        let ExprKind::Lambda(body) = &args[0].node else {
            panic!("lambda")
        };
        let ExprKind::Call { name, args } = &body.node else {
            panic!("call")
        };
        assert_eq!(name.node, "if");
        assert_eq!(args.len(), 3);
        assert!(matches!(
            args[0].node,
            ExprKind::Binary {
                op: BinaryOp::Ne,
                ..
            }
        ));
    }

    #[test]
    fn errors_name_line_and_column() {
        assert_eq!(
            err("var x = 1.5h"),
            "1:9: unexpected '1.5h': a duration must be a whole number followed by a unit (write 90m, not 1.5h)"
        );
        assert_eq!(
            err("stream\n  |from()\n  |alert()\n    .crit(lambda: \"x\" > 1 and \"y\" < 2)"),
            "4:27: unexpected 'and': logical operators are written AND and OR in upper case"
        );
        let e = err("stream|from(");
        assert!(e.starts_with("1:13: unexpected end of input"), "{e}");
        let e = err("var = 5");
        assert!(e.starts_with("1:"), "{e}");
    }

    #[test]
    fn columns_count_characters() {
        let idx = LineIndex::new("µµ x\nab");
        assert_eq!(idx.pos(5), Pos { line: 1, col: 4 });
        assert_eq!(idx.pos(7), Pos { line: 2, col: 1 });
    }

    #[test]
    fn durations_format_back() {
        assert_eq!(format_duration(10_000_000_000), "10s");
        assert_eq!(format_duration(90_000_000_000), "1m30s");
        assert_eq!(format_duration(250_000_000), "250ms");
        assert_eq!(format_duration(0), "0s");
    }
}
