//! Lambda expressions: static type checks at load time, compilation into a tree that evaluates
//! without re-parsing or looking up variables, and evaluation against a point.
//!
//! Variables are substituted when a rule loads, function names are resolved to function
//! pointers, regexes are compiled once; per point only field and tag references are looked up.

use regex::Regex;
use std::fmt;
use std::sync::Arc;

use super::Diagnostic;
use super::ast::{BinaryOp, Expr, ExprKind, Pos, UnaryOp, format_duration};

/// A runtime value of a field, tag or expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A 64-bit float.
    Float(f64),
    /// A signed integer.
    Int(i64),
    /// A string.
    Str(Arc<str>),
    /// A boolean.
    Bool(bool),
    /// A duration in nanoseconds.
    Duration(i64),
    /// A time, Unix nanoseconds.
    Time(i64),
}

impl Value {
    /// The value as a float, for numbers.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The type name used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Float(_) => "float",
            Value::Int(_) => "int",
            Value::Str(_) => "string",
            Value::Bool(_) => "bool",
            Value::Duration(_) => "duration",
            Value::Time(_) => "time",
        }
    }

    /// JSON form, as Kapacitor writes values in alert data.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Str(s) => serde_json::Value::from(&**s),
            Value::Bool(b) => serde_json::Value::from(*b),
            Value::Duration(d) => serde_json::Value::from(*d),
            Value::Time(t) => serde_json::Value::from(crate::rules::format_rfc3339(*t)),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Float(v) => write!(f, "{v}"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Str(v) => f.write_str(v),
            Value::Bool(v) => f.write_str(if *v { "true" } else { "false" }),
            Value::Duration(v) => f.write_str(&format_duration(*v)),
            Value::Time(v) => f.write_str(&crate::rules::format_rfc3339(*v)),
        }
    }
}

/// What a lambda reads from a point.
pub trait Scope {
    /// A field, else a tag, by name.
    fn lookup(&self, name: &str) -> Option<Value>;
    /// Compares a string field or tag with `literal` without copying it: None when the name is
    /// not a string (missing, or a field of another type), so the caller takes the general path.
    fn str_eq(&self, name: &str, literal: &str) -> Option<bool> {
        match self.lookup(name)? {
            Value::Str(s) => Some(&*s == literal),
            _ => None,
        }
    }
    /// The point's time (Unix ns).
    fn time(&self) -> i64;
}

/// Why evaluating a lambda failed for one point.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The point has no field or tag with this name.
    #[error("no field or tag named '{0}'")]
    Missing(Arc<str>),
    /// An operator or function got a value of the wrong type.
    #[error("{0}")]
    Type(String),
}

impl EvalError {
    /// A short, stable name for the error kind, used as a counter label.
    pub fn kind(&self) -> &'static str {
        match self {
            EvalError::Missing(_) => "missing_field",
            EvalError::Type(_) => "type_error",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Static types

/// A type known when the rule loads. `Any` is a field or tag reference, known only per point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// Field or tag: checked per point.
    Any,
    /// `int` or `float`.
    Number,
    /// `int`.
    Int,
    /// `float`.
    Float,
    /// `string`.
    Str,
    /// `bool`.
    Bool,
    /// `duration`.
    Duration,
    /// `time`.
    Time,
    /// `/regex/`.
    Regex,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Any => "a field value",
            Type::Number | Type::Int | Type::Float => "a number",
            Type::Str => "a string",
            Type::Bool => "a boolean",
            Type::Duration => "a duration",
            Type::Time => "a time",
            Type::Regex => "a regex",
        }
    }

    fn is_numeric(self) -> bool {
        matches!(self, Type::Number | Type::Int | Type::Float)
    }

    /// Could a value of this type be used where `want` is needed?
    fn fits(self, want: Type) -> bool {
        self == Type::Any
            || want == Type::Any
            || self == want
            || (want == Type::Number && self.is_numeric())
            || (self == Type::Number && want.is_numeric())
            || (want == Type::Float && self == Type::Int)
    }
}

// ---------------------------------------------------------------------------------------------
// Functions

type Func = fn(&[Value]) -> Result<Value, EvalError>;

/// A stateless built-in function or a stateful one (a fresh state per group and expression).
#[derive(Clone, Copy)]
enum FnImpl {
    Pure(Func),
    Stateful(StatefulFn),
    If,
    IsPresent,
    Now,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatefulFn {
    Sigma,
    Count,
    Spread,
}

struct FnSpec {
    name: &'static str,
    args: &'static [Type],
    /// Extra arguments of the last type may follow (`min`, `max`, `strContainsAny`...).
    variadic: bool,
    ret: Type,
    imp: FnImpl,
}

macro_rules! math1 {
    ($($name:literal => $f:expr),* $(,)?) => {
        &[$(FnSpec { name: $name, args: &[Type::Number], variadic: false, ret: Type::Float,
            imp: FnImpl::Pure(|a| { let x = num(&a[0])?; let f: fn(f64) -> f64 = $f; Ok(Value::Float(f(x))) }) }),*]
    };
}

const MATH1: &[FnSpec] = math1! {
    "abs" => f64::abs, "acos" => f64::acos, "acosh" => f64::acosh, "asin" => f64::asin,
    "asinh" => f64::asinh, "atan" => f64::atan, "atanh" => f64::atanh, "cbrt" => f64::cbrt,
    "ceil" => f64::ceil, "cos" => f64::cos, "cosh" => f64::cosh, "exp" => f64::exp,
    "exp2" => f64::exp2, "expm1" => f64::exp_m1, "floor" => f64::floor, "log" => f64::ln,
    "log10" => f64::log10, "log1p" => f64::ln_1p, "log2" => f64::log2, "sin" => f64::sin,
    "sinh" => f64::sinh, "sqrt" => f64::sqrt, "tan" => f64::tan, "tanh" => f64::tanh,
    "trunc" => f64::trunc, "pow10" => |x| 10f64.powf(x),
    "logb" => |x| if x == 0.0 { f64::NEG_INFINITY } else { x.abs().log2().floor() },
};

const S: Type = Type::Str;
const N: Type = Type::Number;

const FUNCS: &[FnSpec] = &[
    FnSpec {
        name: "bool",
        args: &[Type::Any],
        variadic: false,
        ret: Type::Bool,
        imp: FnImpl::Pure(f_bool),
    },
    FnSpec {
        name: "int",
        args: &[Type::Any],
        variadic: false,
        ret: Type::Int,
        imp: FnImpl::Pure(f_int),
    },
    FnSpec {
        name: "float",
        args: &[Type::Any],
        variadic: false,
        ret: Type::Float,
        imp: FnImpl::Pure(f_float),
    },
    FnSpec {
        name: "string",
        args: &[Type::Any],
        variadic: false,
        ret: Type::Str,
        imp: FnImpl::Pure(f_string),
    },
    FnSpec {
        name: "duration",
        args: &[Type::Any, Type::Duration],
        variadic: false,
        ret: Type::Duration,
        imp: FnImpl::Pure(f_duration),
    },
    FnSpec {
        name: "pow",
        args: &[N, N],
        variadic: false,
        ret: Type::Float,
        imp: FnImpl::Pure(|a| Ok(Value::Float(num(&a[0])?.powf(num(&a[1])?)))),
    },
    FnSpec {
        name: "atan2",
        args: &[N, N],
        variadic: false,
        ret: Type::Float,
        imp: FnImpl::Pure(|a| Ok(Value::Float(num(&a[0])?.atan2(num(&a[1])?)))),
    },
    FnSpec {
        name: "hypot",
        args: &[N, N],
        variadic: false,
        ret: Type::Float,
        imp: FnImpl::Pure(|a| Ok(Value::Float(num(&a[0])?.hypot(num(&a[1])?)))),
    },
    FnSpec {
        name: "mod",
        args: &[N, N],
        variadic: false,
        ret: Type::Float,
        imp: FnImpl::Pure(|a| Ok(Value::Float(num(&a[0])? % num(&a[1])?))),
    },
    FnSpec {
        name: "min",
        args: &[N, N],
        variadic: true,
        ret: Type::Float,
        imp: FnImpl::Pure(|a| fold_num(a, f64::min)),
    },
    FnSpec {
        name: "max",
        args: &[N, N],
        variadic: true,
        ret: Type::Float,
        imp: FnImpl::Pure(|a| fold_num(a, f64::max)),
    },
    FnSpec {
        name: "strContains",
        args: &[S, S],
        variadic: false,
        ret: Type::Bool,
        imp: FnImpl::Pure(|a| Ok(Value::Bool(st(&a[0])?.contains(st(&a[1])?)))),
    },
    FnSpec {
        name: "strContainsAny",
        args: &[S, S],
        variadic: false,
        ret: Type::Bool,
        imp: FnImpl::Pure(|a| {
            let set = st(&a[1])?;
            Ok(Value::Bool(st(&a[0])?.chars().any(|c| set.contains(c))))
        }),
    },
    FnSpec {
        name: "strCount",
        args: &[S, S],
        variadic: false,
        ret: Type::Int,
        imp: FnImpl::Pure(|a| {
            let (s, sub) = (st(&a[0])?, st(&a[1])?);
            Ok(Value::Int(if sub.is_empty() {
                s.chars().count() as i64 + 1
            } else {
                s.matches(sub).count() as i64
            }))
        }),
    },
    FnSpec {
        name: "strHasPrefix",
        args: &[S, S],
        variadic: false,
        ret: Type::Bool,
        imp: FnImpl::Pure(|a| Ok(Value::Bool(st(&a[0])?.starts_with(st(&a[1])?)))),
    },
    FnSpec {
        name: "strHasSuffix",
        args: &[S, S],
        variadic: false,
        ret: Type::Bool,
        imp: FnImpl::Pure(|a| Ok(Value::Bool(st(&a[0])?.ends_with(st(&a[1])?)))),
    },
    FnSpec {
        name: "strIndex",
        args: &[S, S],
        variadic: false,
        ret: Type::Int,
        imp: FnImpl::Pure(|a| {
            Ok(Value::Int(
                st(&a[0])?.find(st(&a[1])?).map_or(-1, |i| i as i64),
            ))
        }),
    },
    FnSpec {
        name: "strIndexAny",
        args: &[S, S],
        variadic: false,
        ret: Type::Int,
        imp: FnImpl::Pure(|a| {
            let set = st(&a[1])?;
            Ok(Value::Int(
                st(&a[0])?
                    .find(|c| set.contains(c))
                    .map_or(-1, |i| i as i64),
            ))
        }),
    },
    FnSpec {
        name: "strLastIndex",
        args: &[S, S],
        variadic: false,
        ret: Type::Int,
        imp: FnImpl::Pure(|a| {
            Ok(Value::Int(
                st(&a[0])?.rfind(st(&a[1])?).map_or(-1, |i| i as i64),
            ))
        }),
    },
    FnSpec {
        name: "strLastIndexAny",
        args: &[S, S],
        variadic: false,
        ret: Type::Int,
        imp: FnImpl::Pure(|a| {
            let set = st(&a[1])?;
            Ok(Value::Int(
                st(&a[0])?
                    .rfind(|c| set.contains(c))
                    .map_or(-1, |i| i as i64),
            ))
        }),
    },
    FnSpec {
        name: "strLength",
        args: &[S],
        variadic: false,
        ret: Type::Int,
        imp: FnImpl::Pure(|a| Ok(Value::Int(st(&a[0])?.chars().count() as i64))),
    },
    FnSpec {
        name: "strReplace",
        args: &[S, S, S, Type::Int],
        variadic: false,
        ret: Type::Str,
        imp: FnImpl::Pure(f_str_replace),
    },
    FnSpec {
        name: "strSubstring",
        args: &[S, Type::Int, Type::Int],
        variadic: false,
        ret: Type::Str,
        imp: FnImpl::Pure(f_substring),
    },
    FnSpec {
        name: "strToLower",
        args: &[S],
        variadic: false,
        ret: Type::Str,
        imp: FnImpl::Pure(|a| Ok(Value::Str(st(&a[0])?.to_lowercase().into()))),
    },
    FnSpec {
        name: "strToUpper",
        args: &[S],
        variadic: false,
        ret: Type::Str,
        imp: FnImpl::Pure(|a| Ok(Value::Str(st(&a[0])?.to_uppercase().into()))),
    },
    FnSpec {
        name: "strTrim",
        args: &[S, S],
        variadic: false,
        ret: Type::Str,
        imp: FnImpl::Pure(|a| {
            let set = st(&a[1])?;
            Ok(Value::Str(
                st(&a[0])?.trim_matches(|c| set.contains(c)).into(),
            ))
        }),
    },
    FnSpec {
        name: "strTrimLeft",
        args: &[S, S],
        variadic: false,
        ret: Type::Str,
        imp: FnImpl::Pure(|a| {
            let set = st(&a[1])?;
            Ok(Value::Str(
                st(&a[0])?.trim_start_matches(|c| set.contains(c)).into(),
            ))
        }),
    },
    FnSpec {
        name: "strTrimRight",
        args: &[S, S],
        variadic: false,
        ret: Type::Str,
        imp: FnImpl::Pure(|a| {
            let set = st(&a[1])?;
            Ok(Value::Str(
                st(&a[0])?.trim_end_matches(|c| set.contains(c)).into(),
            ))
        }),
    },
    FnSpec {
        name: "strTrimPrefix",
        args: &[S, S],
        variadic: false,
        ret: Type::Str,
        imp: FnImpl::Pure(|a| {
            let s = st(&a[0])?;
            Ok(Value::Str(s.strip_prefix(st(&a[1])?).unwrap_or(s).into()))
        }),
    },
    FnSpec {
        name: "strTrimSuffix",
        args: &[S, S],
        variadic: false,
        ret: Type::Str,
        imp: FnImpl::Pure(|a| {
            let s = st(&a[0])?;
            Ok(Value::Str(s.strip_suffix(st(&a[1])?).unwrap_or(s).into()))
        }),
    },
    FnSpec {
        name: "strTrimSpace",
        args: &[S],
        variadic: false,
        ret: Type::Str,
        imp: FnImpl::Pure(|a| Ok(Value::Str(st(&a[0])?.trim().into()))),
    },
    FnSpec {
        name: "regexReplace",
        args: &[Type::Regex, S, S],
        variadic: false,
        ret: Type::Str,
        imp: FnImpl::Pure(|_| Err(EvalError::Type("regexReplace needs a regex literal".into()))),
    },
    FnSpec {
        name: "humanBytes",
        args: &[N],
        variadic: false,
        ret: Type::Str,
        imp: FnImpl::Pure(f_human_bytes),
    },
    FnSpec {
        name: "unixNano",
        args: &[Type::Time],
        variadic: false,
        ret: Type::Int,
        imp: FnImpl::Pure(|a| Ok(Value::Int(time_arg(&a[0])?))),
    },
    FnSpec {
        name: "minute",
        args: &[Type::Time],
        variadic: false,
        ret: Type::Int,
        imp: FnImpl::Pure(|a| time_part(&a[0], |t| chrono::Timelike::minute(&t) as i64)),
    },
    FnSpec {
        name: "hour",
        args: &[Type::Time],
        variadic: false,
        ret: Type::Int,
        imp: FnImpl::Pure(|a| time_part(&a[0], |t| chrono::Timelike::hour(&t) as i64)),
    },
    FnSpec {
        name: "weekday",
        args: &[Type::Time],
        variadic: false,
        ret: Type::Int,
        imp: FnImpl::Pure(|a| {
            time_part(&a[0], |t| {
                chrono::Datelike::weekday(&t).num_days_from_sunday() as i64
            })
        }),
    },
    FnSpec {
        name: "day",
        args: &[Type::Time],
        variadic: false,
        ret: Type::Int,
        imp: FnImpl::Pure(|a| time_part(&a[0], |t| chrono::Datelike::day(&t) as i64)),
    },
    FnSpec {
        name: "month",
        args: &[Type::Time],
        variadic: false,
        ret: Type::Int,
        imp: FnImpl::Pure(|a| time_part(&a[0], |t| chrono::Datelike::month(&t) as i64)),
    },
    FnSpec {
        name: "year",
        args: &[Type::Time],
        variadic: false,
        ret: Type::Int,
        imp: FnImpl::Pure(|a| time_part(&a[0], |t| chrono::Datelike::year(&t) as i64)),
    },
    FnSpec {
        name: "now",
        args: &[],
        variadic: false,
        ret: Type::Time,
        imp: FnImpl::Now,
    },
    FnSpec {
        name: "if",
        args: &[Type::Bool, Type::Any, Type::Any],
        variadic: false,
        ret: Type::Any,
        imp: FnImpl::If,
    },
    FnSpec {
        name: "isPresent",
        args: &[Type::Any],
        variadic: false,
        ret: Type::Bool,
        imp: FnImpl::IsPresent,
    },
    FnSpec {
        name: "sigma",
        args: &[N],
        variadic: false,
        ret: Type::Float,
        imp: FnImpl::Stateful(StatefulFn::Sigma),
    },
    FnSpec {
        name: "count",
        args: &[],
        variadic: false,
        ret: Type::Int,
        imp: FnImpl::Stateful(StatefulFn::Count),
    },
    FnSpec {
        name: "spread",
        args: &[N],
        variadic: false,
        ret: Type::Float,
        imp: FnImpl::Stateful(StatefulFn::Spread),
    },
];

fn find_fn(name: &str) -> Option<&'static FnSpec> {
    FUNCS.iter().chain(MATH1.iter()).find(|f| f.name == name)
}

/// Every built-in function name (for suggestions).
pub fn function_names() -> impl Iterator<Item = &'static str> {
    FUNCS.iter().chain(MATH1.iter()).map(|f| f.name)
}

fn num(v: &Value) -> Result<f64, EvalError> {
    v.as_f64()
        .ok_or_else(|| EvalError::Type(format!("expected a number, got {} '{}'", v.type_name(), v)))
}

fn st(v: &Value) -> Result<&str, EvalError> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(EvalError::Type(format!(
            "expected a string, got {} '{}'",
            other.type_name(),
            other
        ))),
    }
}

fn fold_num(args: &[Value], f: fn(f64, f64) -> f64) -> Result<Value, EvalError> {
    let mut acc = num(&args[0])?;
    for a in &args[1..] {
        acc = f(acc, num(a)?);
    }
    Ok(Value::Float(acc))
}

fn time_arg(v: &Value) -> Result<i64, EvalError> {
    match v {
        Value::Time(t) => Ok(*t),
        other => Err(EvalError::Type(format!(
            "expected a time, got {}",
            other.type_name()
        ))),
    }
}

fn time_part(v: &Value, f: fn(chrono::DateTime<chrono::Utc>) -> i64) -> Result<Value, EvalError> {
    let t = time_arg(v)?;
    Ok(Value::Int(f(chrono::DateTime::from_timestamp_nanos(t))))
}

fn f_bool(a: &[Value]) -> Result<Value, EvalError> {
    Ok(Value::Bool(match &a[0] {
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Str(s) => match &**s {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
            "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
            other => {
                return Err(EvalError::Type(format!(
                    "cannot convert string '{other}' to bool"
                )));
            }
        },
        other => {
            return Err(EvalError::Type(format!(
                "cannot convert {} to bool",
                other.type_name()
            )));
        }
    }))
}

fn f_int(a: &[Value]) -> Result<Value, EvalError> {
    Ok(Value::Int(match &a[0] {
        Value::Bool(b) => *b as i64,
        Value::Int(i) => *i,
        Value::Float(f) => *f as i64,
        Value::Duration(d) | Value::Time(d) => *d,
        Value::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| EvalError::Type(format!("cannot convert string '{s}' to int")))?,
    }))
}

fn f_float(a: &[Value]) -> Result<Value, EvalError> {
    Ok(Value::Float(match &a[0] {
        Value::Bool(b) => *b as i64 as f64,
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Duration(d) | Value::Time(d) => *d as f64,
        Value::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| EvalError::Type(format!("cannot convert string '{s}' to float")))?,
    }))
}

fn f_string(a: &[Value]) -> Result<Value, EvalError> {
    Ok(match &a[0] {
        Value::Str(s) => Value::Str(s.clone()),
        other => Value::Str(other.to_string().into()),
    })
}

fn f_duration(a: &[Value]) -> Result<Value, EvalError> {
    let unit = match &a[1] {
        Value::Duration(d) => *d,
        other => {
            return Err(EvalError::Type(format!(
                "duration unit must be a duration, got {}",
                other.type_name()
            )));
        }
    };
    Ok(Value::Duration(match &a[0] {
        Value::Int(i) => i.saturating_mul(unit),
        Value::Float(f) => (f * unit as f64) as i64,
        Value::Duration(d) => *d,
        Value::Str(s) => super::parser::parse_duration(s)
            .ok_or_else(|| EvalError::Type(format!("cannot convert string '{s}' to duration")))?,
        other => {
            return Err(EvalError::Type(format!(
                "cannot convert {} to duration",
                other.type_name()
            )));
        }
    }))
}

fn f_str_replace(a: &[Value]) -> Result<Value, EvalError> {
    let (s, old, new) = (st(&a[0])?, st(&a[1])?, st(&a[2])?);
    let n = match &a[3] {
        Value::Int(n) => *n,
        other => {
            return Err(EvalError::Type(format!(
                "strReplace count must be an int, got {}",
                other.type_name()
            )));
        }
    };
    Ok(Value::Str(if n < 0 {
        s.replace(old, new).into()
    } else {
        s.replacen(old, new, n as usize).into()
    }))
}

fn f_substring(a: &[Value]) -> Result<Value, EvalError> {
    let s = st(&a[0])?;
    let (Value::Int(start), Value::Int(stop)) = (&a[1], &a[2]) else {
        return Err(EvalError::Type("strSubstring needs int bounds".into()));
    };
    let (start, stop) = (*start, *stop);
    if start < 0 || stop < start || stop as usize > s.len() {
        return Err(EvalError::Type(format!(
            "strSubstring bounds {start}..{stop} out of range for a string of length {}",
            s.len()
        )));
    }
    s.get(start as usize..stop as usize)
        .map(|x| Value::Str(x.into()))
        .ok_or_else(|| EvalError::Type("strSubstring bounds split a character".into()))
}

fn f_human_bytes(a: &[Value]) -> Result<Value, EvalError> {
    let mut v = num(&a[0])?;
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut i = 0;
    while v.abs() >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    Ok(Value::Str(
        if i == 0 {
            format!("{v} B")
        } else {
            format!("{v:.1} {}", units[i])
        }
        .into(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Compiled form

/// A checked, compiled lambda ready to evaluate per point.
#[derive(Clone)]
pub struct Lambda {
    root: Node,
    state_slots: usize,
    source: String,
    refs: Vec<Arc<str>>,
    /// Whether the expression calls `now()` (reads the point's time).
    reads_time: bool,
}

impl fmt::Debug for Lambda {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lambda: {}", self.source)
    }
}

#[derive(Clone)]
enum Node {
    Const(Value),
    Ref(Arc<str>),
    Not(Box<Node>),
    Neg(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Bin(BinaryOp, Box<Node>, Box<Node>),
    Match(Box<Node>, Arc<Regex>, bool),
    /// `"ref" == 'literal'` (or `!=` when the flag is set), compared without copying the value.
    StrEq(Arc<str>, Arc<str>, bool),
    Call(Func, Vec<Node>),
    RegexReplace(Arc<Regex>, Box<Node>, Box<Node>),
    If(Box<Node>, Box<Node>, Box<Node>),
    IsPresent(Arc<str>),
    Now,
    Stateful(StatefulFn, usize, Vec<Node>),
}

/// Per-group state of the stateful functions (`sigma`, `count`, `spread`) in one lambda.
#[derive(Debug, Clone, Default)]
pub struct LambdaState {
    slots: Vec<FnState>,
}

#[derive(Debug, Clone, Default)]
struct FnState {
    n: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl LambdaState {
    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<FnState>()
    }
}

impl Lambda {
    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Field and tag names the expression reads.
    pub fn references(&self) -> &[Arc<str>] {
        &self.refs
    }

    /// True when the result depends only on the values of [`Lambda::references`]: no
    /// per-group state and no `now()`. Such a lambda over tags only gives the same answer for
    /// every point of a series.
    pub fn is_pure(&self) -> bool {
        self.state_slots == 0 && !self.reads_time
    }

    /// True when the lambda keeps per-group state (uses `sigma`, `count` or `spread`).
    pub fn is_stateful(&self) -> bool {
        self.state_slots > 0
    }

    /// Fresh per-group state for this lambda.
    pub fn new_state(&self) -> LambdaState {
        LambdaState {
            slots: vec![FnState::default(); self.state_slots],
        }
    }

    /// Evaluates against a point. `state` must come from [`Lambda::new_state`] for stateful
    /// lambdas; stateless ones accept any state.
    pub fn eval(&self, scope: &dyn Scope, state: &mut LambdaState) -> Result<Value, EvalError> {
        if state.slots.len() < self.state_slots {
            state.slots.resize(self.state_slots, FnState::default());
        }
        eval_node(&self.root, scope, &mut state.slots)
    }

    /// Evaluates a lambda that has no per-group state.
    pub fn eval_stateless(&self, scope: &dyn Scope) -> Result<Value, EvalError> {
        eval_node(&self.root, scope, &mut [])
    }

    /// Evaluates and requires a boolean (for `where`, `crit`, ...).
    pub fn eval_bool(&self, scope: &dyn Scope, state: &mut LambdaState) -> Result<bool, EvalError> {
        match self.eval(scope, state)? {
            Value::Bool(b) => Ok(b),
            other => Err(EvalError::Type(format!(
                "expression must be true or false, got {} '{}'",
                other.type_name(),
                other
            ))),
        }
    }
}

fn eval_node(n: &Node, s: &dyn Scope, st: &mut [FnState]) -> Result<Value, EvalError> {
    Ok(match n {
        Node::Const(v) => v.clone(),
        Node::Ref(name) => s
            .lookup(name)
            .ok_or_else(|| EvalError::Missing(name.clone()))?,
        Node::Not(e) => match eval_node(e, s, st)? {
            Value::Bool(b) => Value::Bool(!b),
            o => {
                return Err(EvalError::Type(format!(
                    "'!' needs a boolean, got {}",
                    o.type_name()
                )));
            }
        },
        Node::Neg(e) => match eval_node(e, s, st)? {
            Value::Int(i) => Value::Int(i.wrapping_neg()),
            Value::Float(f) => Value::Float(-f),
            Value::Duration(d) => Value::Duration(d.wrapping_neg()),
            o => {
                return Err(EvalError::Type(format!(
                    "'-' needs a number, got {}",
                    o.type_name()
                )));
            }
        },
        Node::And(a, b) => {
            Value::Bool(truth(eval_node(a, s, st)?, "AND")? && truth(eval_node(b, s, st)?, "AND")?)
        }
        Node::Or(a, b) => {
            Value::Bool(truth(eval_node(a, s, st)?, "OR")? || truth(eval_node(b, s, st)?, "OR")?)
        }
        Node::Bin(op, a, b) => binary(*op, eval_node(a, s, st)?, eval_node(b, s, st)?)?,
        Node::StrEq(name, lit, negate) => match s.str_eq(name, lit) {
            Some(eq) => Value::Bool(eq != *negate),
            None => {
                let v = s
                    .lookup(name)
                    .ok_or_else(|| EvalError::Missing(name.clone()))?;
                let op = if *negate { BinaryOp::Ne } else { BinaryOp::Eq };
                binary(op, v, Value::Str(lit.clone()))?
            }
        },
        Node::Match(e, re, negate) => match eval_node(e, s, st)? {
            Value::Str(v) => Value::Bool(re.is_match(&v) != *negate),
            o => {
                return Err(EvalError::Type(format!(
                    "a regex can only match a string, got {} '{}'",
                    o.type_name(),
                    o
                )));
            }
        },
        Node::Call(f, args) => {
            let mut vals: smallvec::SmallVec<[Value; 4]> = smallvec::SmallVec::new();
            for a in args {
                vals.push(eval_node(a, s, st)?);
            }
            f(&vals)?
        }
        Node::RegexReplace(re, src, rep) => {
            let src = eval_node(src, s, st)?;
            let rep = eval_node(rep, s, st)?;
            Value::Str(
                re.replace_all(self::st(&src)?, self::st(&rep)?)
                    .into_owned()
                    .into(),
            )
        }
        Node::If(c, a, b) => {
            if truth(eval_node(c, s, st)?, "if")? {
                eval_node(a, s, st)?
            } else {
                eval_node(b, s, st)?
            }
        }
        Node::IsPresent(name) => Value::Bool(s.lookup(name).is_some()),
        Node::Now => Value::Time(s.time()),
        Node::Stateful(f, slot, args) => {
            let x = match args.first() {
                Some(a) => num(&eval_node(a, s, st)?)?,
                None => 0.0,
            };
            let state = &mut st[*slot];
            state.n += 1;
            match f {
                StatefulFn::Count => Value::Int(state.n as i64),
                StatefulFn::Spread => {
                    if state.n == 1 {
                        state.min = x;
                        state.max = x;
                    } else {
                        state.min = state.min.min(x);
                        state.max = state.max.max(x);
                    }
                    Value::Float(state.max - state.min)
                }
                StatefulFn::Sigma => {
                    // Welford's running mean and variance; the value's distance in standard deviations.
                    let delta = x - state.mean;
                    state.mean += delta / state.n as f64;
                    state.m2 += delta * (x - state.mean);
                    if state.n < 2 {
                        Value::Float(0.0)
                    } else {
                        let sd = (state.m2 / state.n as f64).sqrt();
                        Value::Float(if sd == 0.0 {
                            0.0
                        } else {
                            (x - state.mean).abs() / sd
                        })
                    }
                }
            }
        }
    })
}

fn truth(v: Value, op: &str) -> Result<bool, EvalError> {
    match v {
        Value::Bool(b) => Ok(b),
        o => Err(EvalError::Type(format!(
            "{op} needs booleans, got {} '{}'",
            o.type_name(),
            o
        ))),
    }
}

/// Applies a binary operator to two runtime values. Ints and floats mix (the int is widened);
/// comparing values of unrelated types is an error, not `false`.
pub fn binary(op: BinaryOp, a: Value, b: Value) -> Result<Value, EvalError> {
    use BinaryOp::*;
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (&a, &b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Float(_) | Value::Int(_), Value::Float(_) | Value::Int(_)) => a
            .as_f64()
            .unwrap_or(f64::NAN)
            .partial_cmp(&b.as_f64().unwrap_or(f64::NAN)),
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Duration(x), Value::Duration(y)) | (Value::Time(x), Value::Time(y)) => {
            Some(x.cmp(y))
        }
        (Value::Bool(x), Value::Bool(y)) if matches!(op, Eq | Ne) => Some(x.cmp(y)),
        _ => None,
    };
    let mismatch = || {
        EvalError::Type(format!(
            "cannot apply '{}' to {} '{}' and {} '{}'",
            op.as_str(),
            a.type_name(),
            a,
            b.type_name(),
            b
        ))
    };
    match op {
        Eq | Ne | Lt | Le | Gt | Ge => {
            let Some(o) = ord else {
                // NaN compares unequal to everything.
                if a.as_f64().is_some() && b.as_f64().is_some() {
                    return Ok(Value::Bool(op == Ne));
                }
                return Err(mismatch());
            };
            Ok(Value::Bool(match op {
                Eq => o == Ordering::Equal,
                Ne => o != Ordering::Equal,
                Lt => o == Ordering::Less,
                Le => o != Ordering::Greater,
                Gt => o == Ordering::Greater,
                _ => o != Ordering::Less,
            }))
        }
        Add | Sub | Mul | Div | Mod => match (&a, &b) {
            (Value::Int(x), Value::Int(y)) => Ok(Value::Int(match op {
                Add => x.wrapping_add(*y),
                Sub => x.wrapping_sub(*y),
                Mul => x.wrapping_mul(*y),
                Div => x
                    .checked_div(*y)
                    .ok_or_else(|| EvalError::Type("integer division by zero".into()))?,
                _ => x
                    .checked_rem(*y)
                    .ok_or_else(|| EvalError::Type("integer modulo by zero".into()))?,
            })),
            (Value::Float(_) | Value::Int(_), Value::Float(_) | Value::Int(_)) => {
                let (x, y) = (
                    a.as_f64().unwrap_or(f64::NAN),
                    b.as_f64().unwrap_or(f64::NAN),
                );
                Ok(Value::Float(match op {
                    Add => x + y,
                    Sub => x - y,
                    Mul => x * y,
                    Div => x / y,
                    _ => x % y,
                }))
            }
            (Value::Str(x), Value::Str(y)) if op == Add => Ok(Value::Str(format!("{x}{y}").into())),
            (Value::Duration(x), Value::Duration(y)) if matches!(op, Add | Sub) => {
                Ok(Value::Duration(if op == Add {
                    x.wrapping_add(*y)
                } else {
                    x.wrapping_sub(*y)
                }))
            }
            (Value::Time(x), Value::Duration(y)) if matches!(op, Add | Sub) => {
                Ok(Value::Time(if op == Add {
                    x.wrapping_add(*y)
                } else {
                    x.wrapping_sub(*y)
                }))
            }
            (Value::Time(x), Value::Time(y)) if op == Sub => {
                Ok(Value::Duration(x.wrapping_sub(*y)))
            }
            (Value::Duration(x), Value::Int(y)) if matches!(op, Mul | Div) => {
                Ok(Value::Duration(if op == Mul {
                    x.wrapping_mul(*y)
                } else {
                    x.checked_div(*y)
                        .ok_or_else(|| EvalError::Type("duration division by zero".into()))?
                }))
            }
            _ => Err(mismatch()),
        },
        _ => Err(mismatch()),
    }
}

// ---------------------------------------------------------------------------------------------
// Checking and compiling

/// Resolves identifiers inside a lambda to the values of script variables.
pub trait Vars {
    /// The constant value of a variable, or why it cannot be used inside a lambda.
    fn constant(&self, name: &str, pos: Pos) -> Result<Value, Diagnostic>;
}

/// Checks a lambda body and compiles it. `want` is the type the property needs (`Bool` for
/// `where`/`crit`, `Any` for `eval`).
pub fn compile(body: &Expr, vars: &dyn Vars, want: Type) -> Result<Lambda, Diagnostic> {
    let mut c = Compiler {
        vars,
        slots: 0,
        refs: Vec::new(),
        reads_time: false,
    };
    let (root, ty) = c.node(body)?;
    if !ty.fits(want) {
        return Err(Diagnostic::new(
            body.pos,
            format!(
                "this lambda gives {}, but {} is needed here",
                ty.name(),
                want.name()
            ),
        ));
    }
    Ok(Lambda {
        root,
        state_slots: c.slots,
        source: super::format::expr(body),
        refs: c.refs,
        reads_time: c.reads_time,
    })
}

struct Compiler<'v> {
    vars: &'v dyn Vars,
    slots: usize,
    refs: Vec<Arc<str>>,
    reads_time: bool,
}

fn type_of(v: &Value) -> Type {
    match v {
        Value::Float(_) => Type::Float,
        Value::Int(_) => Type::Int,
        Value::Str(_) => Type::Str,
        Value::Bool(_) => Type::Bool,
        Value::Duration(_) => Type::Duration,
        Value::Time(_) => Type::Time,
    }
}

impl Compiler<'_> {
    /// A field or tag name the expression reads, noted in [`Lambda::references`].
    fn reference(&mut self, r: &str) -> Arc<str> {
        let name: Arc<str> = r.into();
        if !self.refs.contains(&name) {
            self.refs.push(name.clone());
        }
        name
    }

    fn node(&mut self, e: &Expr) -> Result<(Node, Type), Diagnostic> {
        let pos = e.pos;
        Ok(match &e.node {
            ExprKind::Int(i) => (Node::Const(Value::Int(*i)), Type::Int),
            ExprKind::Float(f) => (Node::Const(Value::Float(*f)), Type::Float),
            ExprKind::Duration(d) => (Node::Const(Value::Duration(*d)), Type::Duration),
            ExprKind::Str(s) => (Node::Const(Value::Str(s.as_str().into())), Type::Str),
            ExprKind::Bool(b) => (Node::Const(Value::Bool(*b)), Type::Bool),
            ExprKind::Reference(r) => {
                let name = self.reference(r);
                (Node::Ref(name), Type::Any)
            }
            ExprKind::Ident(name) => {
                let v = self.vars.constant(name, pos)?;
                let t = type_of(&v);
                (Node::Const(v), t)
            }
            ExprKind::Regex(_) => {
                return Err(Diagnostic::new(
                    pos,
                    "a regex can only be used with =~ or !~ (or in regexReplace)",
                ));
            }
            ExprKind::Unary { op, expr } => {
                let (n, t) = self.node(expr)?;
                match op {
                    UnaryOp::Not => {
                        if !t.fits(Type::Bool) {
                            return Err(Diagnostic::new(
                                pos,
                                format!("'!' needs a boolean, got {}", t.name()),
                            ));
                        }
                        (Node::Not(Box::new(n)), Type::Bool)
                    }
                    UnaryOp::Neg => {
                        if !(t.fits(Type::Number) || t == Type::Duration) {
                            return Err(Diagnostic::new(
                                pos,
                                format!("'-' needs a number, got {}", t.name()),
                            ));
                        }
                        (Node::Neg(Box::new(n)), t)
                    }
                }
            }
            ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, pos)?,
            ExprKind::Call { name, args } => self.call(name, args)?,
            ExprKind::Lambda(_) => {
                return Err(Diagnostic::new(
                    pos,
                    "a lambda cannot contain another lambda",
                ));
            }
            ExprKind::Star | ExprKind::List(_) | ExprKind::Chain { .. } => {
                return Err(Diagnostic::new(
                    pos,
                    format!("{} cannot be used inside a lambda", e.node.describe()),
                ));
            }
        })
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        lhs: &Expr,
        rhs: &Expr,
        pos: Pos,
    ) -> Result<(Node, Type), Diagnostic> {
        if matches!(op, BinaryOp::RegexMatch | BinaryOp::RegexNotMatch) {
            let (l, lt) = self.node(lhs)?;
            if !lt.fits(Type::Str) {
                return Err(Diagnostic::new(
                    lhs.pos,
                    format!("'{}' matches strings, got {}", op.as_str(), lt.name()),
                ));
            }
            let ExprKind::Regex(src) = &rhs.node else {
                return Err(Diagnostic::new(
                    rhs.pos,
                    format!("the right side of '{}' must be a /regex/", op.as_str()),
                ));
            };
            let re = compile_regex(src, rhs.pos)?;
            return Ok((
                Node::Match(Box::new(l), re, op == BinaryOp::RegexNotMatch),
                Type::Bool,
            ));
        }
        let (l, lt) = self.node(lhs)?;
        let (r, rt) = self.node(rhs)?;
        let bad = |what: &str| {
            Diagnostic::new(
                pos,
                format!(
                    "cannot {what} {} and {} with '{}'",
                    lt.name(),
                    rt.name(),
                    op.as_str()
                ),
            )
        };
        let ty = match op {
            BinaryOp::And | BinaryOp::Or => {
                for (t, e) in [(lt, lhs), (rt, rhs)] {
                    if !t.fits(Type::Bool) {
                        return Err(Diagnostic::new(
                            e.pos,
                            format!(
                                "'{}' needs a boolean on each side, got {}",
                                op.as_str(),
                                t.name()
                            ),
                        ));
                    }
                }
                let (l, r) = (Box::new(l), Box::new(r));
                return Ok((
                    if op == BinaryOp::And {
                        Node::And(l, r)
                    } else {
                        Node::Or(l, r)
                    },
                    Type::Bool,
                ));
            }
            BinaryOp::Eq | BinaryOp::Ne => {
                if !(lt.fits(rt) || rt.fits(lt)) {
                    return Err(bad("compare"));
                }
                Type::Bool
            }
            _ if op.is_ordering() => {
                if !(lt.fits(rt) || rt.fits(lt)) || lt == Type::Bool || rt == Type::Bool {
                    return Err(bad("compare"));
                }
                Type::Bool
            }
            _ => {
                let ok_num = |t: Type| t.fits(Type::Number);
                if lt == Type::Str || rt == Type::Str {
                    if op != BinaryOp::Add || !(lt.fits(Type::Str) && rt.fits(Type::Str)) {
                        return Err(bad("combine"));
                    }
                    Type::Str
                } else if lt == Type::Bool || rt == Type::Bool {
                    return Err(bad("combine"));
                } else if lt == Type::Any || rt == Type::Any {
                    Type::Any
                } else if ok_num(lt) && ok_num(rt) {
                    if lt == Type::Int && rt == Type::Int {
                        Type::Int
                    } else {
                        Type::Float
                    }
                } else {
                    // Durations and times: leave the detailed rules to evaluation.
                    Type::Any
                }
            }
        };
        // `"tag" == 'value'`, the most common filter, compares borrowed strings.
        if matches!(op, BinaryOp::Eq | BinaryOp::Ne) {
            let pair = match (&l, &r) {
                (Node::Ref(n), Node::Const(Value::Str(lit)))
                | (Node::Const(Value::Str(lit)), Node::Ref(n)) => Some((n.clone(), lit.clone())),
                _ => None,
            };
            if let Some((name, lit)) = pair {
                return Ok((Node::StrEq(name, lit, op == BinaryOp::Ne), Type::Bool));
            }
        }
        // Fold constant sub-expressions once.
        if let (Node::Const(a), Node::Const(b)) = (&l, &r)
            && let Ok(v) = binary(op, a.clone(), b.clone())
        {
            let t = type_of(&v);
            return Ok((Node::Const(v), t));
        }
        Ok((Node::Bin(op, Box::new(l), Box::new(r)), ty))
    }

    fn call(
        &mut self,
        name: &super::ast::Positioned<String>,
        args: &[Expr],
    ) -> Result<(Node, Type), Diagnostic> {
        let Some(spec) = find_fn(&name.node) else {
            let hint = super::suggest(&name.node, function_names())
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default();
            return Err(Diagnostic::new(
                name.pos,
                format!("unknown function '{}'{hint}", name.node),
            ));
        };
        let arity_ok = if spec.variadic {
            args.len() >= spec.args.len()
        } else {
            args.len() == spec.args.len()
        };
        if !arity_ok {
            return Err(Diagnostic::new(
                name.pos,
                format!(
                    "function '{}' takes {}{} argument{}, got {}",
                    spec.name,
                    if spec.variadic { "at least " } else { "" },
                    spec.args.len(),
                    if spec.args.len() == 1 { "" } else { "s" },
                    args.len()
                ),
            ));
        }
        if spec.name == "regexReplace" {
            let ExprKind::Regex(src) = &args[0].node else {
                return Err(Diagnostic::new(
                    args[0].pos,
                    "regexReplace's first argument must be a /regex/",
                ));
            };
            let re = compile_regex(src, args[0].pos)?;
            let (a, at) = self.node(&args[1])?;
            let (b, bt) = self.node(&args[2])?;
            for (t, e) in [(at, &args[1]), (bt, &args[2])] {
                if !t.fits(Type::Str) {
                    return Err(Diagnostic::new(
                        e.pos,
                        format!("regexReplace needs a string here, got {}", t.name()),
                    ));
                }
            }
            return Ok((Node::RegexReplace(re, Box::new(a), Box::new(b)), Type::Str));
        }
        if spec.name == "isPresent" {
            let ExprKind::Reference(r) = &args[0].node else {
                return Err(Diagnostic::new(
                    args[0].pos,
                    "isPresent takes a \"field\" or \"tag\" reference",
                ));
            };
            return Ok((Node::IsPresent(self.reference(r)), Type::Bool));
        }
        let mut nodes = Vec::with_capacity(args.len());
        let mut types = Vec::with_capacity(args.len());
        for (i, a) in args.iter().enumerate() {
            let (n, t) = self.node(a)?;
            let want = spec
                .args
                .get(i)
                .or(spec.args.last())
                .copied()
                .unwrap_or(Type::Any);
            if !t.fits(want) {
                return Err(Diagnostic::new(
                    a.pos,
                    format!(
                        "argument {} of '{}' must be {}, got {}",
                        i + 1,
                        spec.name,
                        want.name(),
                        t.name()
                    ),
                ));
            }
            nodes.push(n);
            types.push(t);
        }
        Ok(match spec.imp {
            FnImpl::Pure(f) => {
                if nodes.iter().all(|n| matches!(n, Node::Const(_))) {
                    let vals: Vec<Value> = nodes
                        .iter()
                        .filter_map(|n| {
                            if let Node::Const(v) = n {
                                Some(v.clone())
                            } else {
                                None
                            }
                        })
                        .collect();
                    let v = f(&vals).map_err(|e| Diagnostic::new(name.pos, e.to_string()))?;
                    let t = type_of(&v);
                    (Node::Const(v), t)
                } else {
                    (Node::Call(f, nodes), spec.ret)
                }
            }
            FnImpl::If => {
                let mut it = nodes.into_iter();
                let (c, a, b) = (it.next(), it.next(), it.next());
                let (Some(c), Some(a), Some(b)) = (c, a, b) else {
                    return Err(Diagnostic::new(name.pos, "if takes 3 arguments"));
                };
                let t = if types[1] == types[2] {
                    types[1]
                } else {
                    Type::Any
                };
                (Node::If(Box::new(c), Box::new(a), Box::new(b)), t)
            }
            FnImpl::Now => {
                self.reads_time = true;
                (Node::Now, Type::Time)
            }
            FnImpl::IsPresent => unreachable_is_present(name.pos)?,
            FnImpl::Stateful(f) => {
                let slot = self.slots;
                self.slots += 1;
                (Node::Stateful(f, slot, nodes), spec.ret)
            }
        })
    }
}

fn unreachable_is_present(pos: Pos) -> Result<(Node, Type), Diagnostic> {
    Err(Diagnostic::new(
        pos,
        "internal error: isPresent handled above",
    ))
}

/// Compiles a regex from a script, pointing at the regex literal on error.
pub fn compile_regex(src: &str, pos: Pos) -> Result<Arc<Regex>, Diagnostic> {
    Regex::new(src).map(Arc::new).map_err(|e| {
        Diagnostic::new(
            pos,
            format!("invalid regex /{src}/: {}", first_line(&e.to_string())),
        )
    })
}

fn first_line(s: &str) -> &str {
    s.lines()
        .last()
        .unwrap_or(s)
        .trim()
        .trim_start_matches("error: ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parser::parse_expression;
    use std::collections::HashMap;

    struct NoVars;
    impl Vars for NoVars {
        fn constant(&self, name: &str, pos: Pos) -> Result<Value, Diagnostic> {
            match name {
                "crit" => Ok(Value::Int(90)),
                _ => Err(Diagnostic::new(pos, format!("undefined variable '{name}'"))),
            }
        }
    }

    struct Pt(HashMap<&'static str, Value>);
    impl Scope for Pt {
        fn lookup(&self, name: &str) -> Option<Value> {
            self.0.get(name).cloned()
        }
        fn time(&self) -> i64 {
            1_767_225_600_000_000_000
        }
    }

    fn lam(src: &str) -> Result<Lambda, Diagnostic> {
        let e = parse_expression(&format!("x.f(lambda: {src})")).expect("parses");
        let ExprKind::Chain { args, .. } = e.node else {
            panic!()
        };
        let ExprKind::Lambda(body) = &args[0].node else {
            panic!()
        };
        compile(body, &NoVars, Type::Any)
    }

    fn run(src: &str, pt: &[(&'static str, Value)]) -> Result<Value, EvalError> {
        let l = lam(src).expect("compiles");
        let mut st = l.new_state();
        l.eval(&Pt(pt.iter().cloned().collect()), &mut st)
    }

    #[test]
    fn thresholds_and_variables() {
        assert_eq!(
            run("\"stat\" > crit", &[("stat", Value::Float(91.5))]),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            run("\"stat\" > crit", &[("stat", Value::Int(10))]),
            Ok(Value::Bool(false))
        );
        assert_eq!(
            run(
                "bool(\"healthy\") != TRUE",
                &[("healthy", Value::Str("False".into()))]
            ),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            run(
                "\"host\" =~ /^node0/",
                &[("host", Value::Str("node01".into()))]
            ),
            Ok(Value::Bool(true))
        );
    }

    #[test]
    fn string_equality_fast_path_keeps_the_general_semantics() {
        let p = &[("host", Value::Str("a".into())), ("n", Value::Int(5))];
        assert_eq!(run("\"host\" == 'a'", p), Ok(Value::Bool(true)));
        assert_eq!(run("'a' != \"host\"", p), Ok(Value::Bool(false)));
        // A number compared with a string is still a type error, a missing name still missing.
        assert!(matches!(run("\"n\" == 'a'", p), Err(EvalError::Type(_))));
        assert_eq!(
            run("\"nope\" == 'a'", p),
            Err(EvalError::Missing("nope".into()))
        );
    }

    #[test]
    fn missing_reference_is_an_error_not_false() {
        assert_eq!(
            run("\"nope\" > 1", &[]),
            Err(EvalError::Missing("nope".into()))
        );
    }

    #[test]
    fn static_checks() {
        let e = lam("'abc' > 5").unwrap_err();
        assert!(
            e.message.contains("cannot compare a string and a number"),
            "{}",
            e.message
        );
        let e = lam("\"x\" > warn").unwrap_err();
        assert_eq!(e.message, "undefined variable 'warn'");
        let e = lam("abss(\"x\")").unwrap_err();
        assert_eq!(e.message, "unknown function 'abss' (did you mean 'abs'?)");
        let e = lam("pow(\"x\")").unwrap_err();
        assert_eq!(e.message, "function 'pow' takes 2 arguments, got 1");
        let e = lam("strLength(5)").unwrap_err();
        assert!(e.message.contains("must be a string"), "{}", e.message);
        let e = lam("\"x\" =~ 'abc'").unwrap_err();
        assert!(e.message.contains("must be a /regex/"), "{}", e.message);
        let e = lam("\"x\" > 1 AND 5").unwrap_err();
        assert!(e.message.contains("needs a boolean"), "{}", e.message);
    }

    #[test]
    fn functions() {
        let p = &[("v", Value::Float(2.0)), ("s", Value::Str("Hello".into()))];
        assert_eq!(run("sqrt(pow(\"v\", 2.0))", p), Ok(Value::Float(2.0)));
        assert_eq!(run("strToLower(\"s\")", p), Ok(Value::Str("hello".into())));
        assert_eq!(
            run("if(\"v\" > 1, 'big', 'small')", p),
            Ok(Value::Str("big".into()))
        );
        assert_eq!(run("isPresent(\"nope\")", p), Ok(Value::Bool(false)));
        assert_eq!(
            run("regexReplace(/l+/, \"s\", 'L')", p),
            Ok(Value::Str("HeLo".into()))
        );
        assert_eq!(run("hour(now())", p), Ok(Value::Int(0)));
        assert_eq!(run("weekday(now())", p), Ok(Value::Int(4)));
        assert_eq!(run("max(1, 5.5, 3)", p), Ok(Value::Float(5.5)));
        assert_eq!(run("10 % 3", p), Ok(Value::Int(1)));
    }

    #[test]
    fn stateful_functions_keep_state() {
        let l = lam("count()").unwrap();
        let mut st = l.new_state();
        let pt = Pt(HashMap::new());
        assert_eq!(l.eval(&pt, &mut st), Ok(Value::Int(1)));
        assert_eq!(l.eval(&pt, &mut st), Ok(Value::Int(2)));
        let l = lam("spread(\"v\")").unwrap();
        let mut st = l.new_state();
        for v in [3.0, 7.0, 5.0] {
            let _ = l.eval(&Pt([("v", Value::Float(v))].into_iter().collect()), &mut st);
        }
        assert_eq!(
            l.eval(
                &Pt([("v", Value::Float(1.0))].into_iter().collect()),
                &mut st
            ),
            Ok(Value::Float(6.0))
        );
    }
}
