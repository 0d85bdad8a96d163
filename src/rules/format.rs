//! Writes expressions back as script text, for error messages and for showing a rule's lambdas.

use super::ast::{ChainKind, Expr, ExprKind, format_duration};

/// The expression as a script would write it.
pub fn expr(e: &Expr) -> String {
    let mut out = String::new();
    write(e, &mut out);
    out
}

fn write(e: &Expr, out: &mut String) {
    match &e.node {
        ExprKind::Ident(s) => out.push_str(s),
        ExprKind::Int(i) => out.push_str(&i.to_string()),
        ExprKind::Float(f) => {
            let s = f.to_string();
            out.push_str(&s);
            if !s.contains(['.', 'e', 'i', 'N']) {
                out.push_str(".0");
            }
        }
        ExprKind::Duration(d) => out.push_str(&format_duration(*d)),
        ExprKind::Str(s) => {
            out.push('\'');
            out.push_str(&s.replace('\'', "\\'"));
            out.push('\'');
        }
        ExprKind::Reference(r) => {
            out.push('"');
            out.push_str(&r.replace('"', "\\\""));
            out.push('"');
        }
        ExprKind::Regex(r) => {
            out.push('/');
            out.push_str(&r.replace('/', "\\/"));
            out.push('/');
        }
        ExprKind::Bool(b) => out.push_str(if *b { "TRUE" } else { "FALSE" }),
        ExprKind::Star => out.push('*'),
        ExprKind::List(items) => {
            out.push('[');
            list(items, out);
            out.push(']');
        }
        ExprKind::Lambda(body) => {
            out.push_str("lambda: ");
            write(body, out);
        }
        ExprKind::Binary { op, lhs, rhs } => {
            paren(lhs, out);
            out.push(' ');
            out.push_str(op.as_str());
            out.push(' ');
            paren(rhs, out);
        }
        ExprKind::Unary { op, expr } => {
            out.push(if *op == super::ast::UnaryOp::Neg {
                '-'
            } else {
                '!'
            });
            paren(expr, out);
        }
        ExprKind::Call { name, args } => {
            out.push_str(&name.node);
            out.push('(');
            list(args, out);
            out.push(')');
        }
        ExprKind::Chain {
            target,
            kind,
            name,
            args,
        } => {
            write(target, out);
            out.push(match kind {
                ChainKind::Pipe => '|',
                ChainKind::Dot => '.',
                ChainKind::At => '@',
            });
            out.push_str(&name.node);
            out.push('(');
            list(args, out);
            out.push(')');
        }
    }
}

fn paren(e: &Expr, out: &mut String) {
    if matches!(e.node, ExprKind::Binary { .. }) {
        out.push('(');
        write(e, out);
        out.push(')');
    } else {
        write(e, out);
    }
}

fn list(items: &[Expr], out: &mut String) {
    for (i, a) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write(a, out);
    }
}
