//! Checks a parsed script against alertd's catalogue of nodes, properties and handlers, and
//! builds the [`TaskPlan`] the engine runs.
//!
//! Everything that can be known without data is an error here, with the position of the
//! offending name or argument: unknown nodes, properties, handlers and functions (with a
//! suggestion), argument counts and types, edge types (a `mean` needs a window before it),
//! undefined variables, type mismatches inside lambdas, bad regexes and bad templates.

use std::collections::HashMap;
use std::sync::Arc;

use super::ast::{
    ChainKind, Expr, ExprKind, Pos, Positioned, Program, Statement, format_go_duration,
};
use super::lambda::{self, Lambda, Type, Value};
use super::plan::*;
use super::template::Template;
use super::{Diagnostic, suggest};

/// Compiles a parsed script into a plan. `name` becomes the task name (`.TaskName`).
pub fn check(name: &str, program: &Program) -> Result<TaskPlan, Diagnostic> {
    let mut b = Builder {
        plan: TaskPlan {
            name: name.to_string(),
            dbrps: Vec::new(),
            source: String::new(),
            nodes: vec![PlanNode {
                name: "stream0".into(),
                kind: NodeKind::Stream,
                parent: None,
                children: Vec::new(),
                provides: Edge::Stream,
                pos: Pos { line: 1, col: 1 },
            }],
        },
        vars: HashMap::new(),
        handler_spec: HashMap::new(),
    };
    for stmt in &program.statements {
        match &stmt.node {
            Statement::Dbrp { db, rp } => {
                let d = Dbrp {
                    db: db.clone(),
                    rp: rp.clone(),
                };
                if !b.plan.dbrps.contains(&d) {
                    b.plan.dbrps.push(d);
                }
            }
            Statement::Var { name, value } => {
                let v = b.eval(value)?;
                b.vars.insert(name.node.clone(), v);
            }
            Statement::VarType { name, ty } => {
                b.vars.insert(name.node.clone(), CVal::Declared(ty.clone()));
            }
            Statement::Expr(e) => {
                b.eval(e)?;
            }
        }
    }
    b.finish()?;
    Ok(b.plan)
}

/// Parses and checks a script in one step.
pub fn compile_source(name: &str, source: &str) -> Result<TaskPlan, Diagnostic> {
    let program = super::parser::parse(source)?;
    let mut plan = check(name, &program)?;
    plan.source = source.to_string();
    Ok(plan)
}

/// The value of an expression while a script is being checked.
#[derive(Debug, Clone)]
enum CVal {
    Value(Value),
    Regex,
    Star,
    List(Vec<Positioned<CVal>>),
    Lambda(Box<Expr>),
    Reference(String),
    Node(usize),
    Handler(usize, usize),
    Declared(String),
}

impl CVal {
    fn describe(&self) -> String {
        match self {
            CVal::Value(v) => format!("a {}", v.type_name()),
            CVal::Regex => "a regex".into(),
            CVal::Star => "*".into(),
            CVal::List(_) => "a list".into(),
            CVal::Lambda(_) => "a lambda".into(),
            CVal::Reference(_) => "a \"field\" reference".into(),
            CVal::Node(_) => "a node".into(),
            CVal::Handler(..) => "a handler".into(),
            CVal::Declared(..) => "an unset variable".into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The catalogue

/// Argument kinds in the catalogue.
#[derive(Debug, Clone, Copy, PartialEq)]
enum A {
    /// A string literal.
    Str,
    /// A string that is a template.
    Tmpl,
    /// A duration.
    Dur,
    /// An integer.
    Int,
    /// An int or float.
    Num,
    /// A lambda giving a boolean.
    Cond,
    /// A lambda giving any value.
    Expr,
    /// Any literal (string, number, bool, duration).
    Lit,
    /// Zero or more strings (last position only).
    Strs,
    /// Zero or more strings or `*` (last position only).
    Tags,
    /// An optional duration (last position only).
    OptDur,
    /// An optional string (last position only).
    OptStr,
    /// Zero or more conditions (last position only).
    Conds,
    /// Zero or more lambdas (last position only).
    Exprs,
    /// An int or a duration.
    IntOrDur,
}

struct Prop {
    name: &'static str,
    args: &'static [A],
}

const fn p(name: &'static str, args: &'static [A]) -> Prop {
    Prop { name, args }
}

#[derive(Clone, Copy, PartialEq)]
enum Wants {
    Stream,
    Batch,
    Any,
}

#[derive(Clone, Copy, PartialEq)]
enum Provides {
    Stream,
    Batch,
    Same,
}

struct NodeDef {
    name: &'static str,
    ctor: &'static [A],
    wants: Wants,
    provides: Provides,
    props: &'static [Prop],
}

const AGG_PROPS: &[Prop] = &[p("as", &[A::Str]), p("usePointTimes", &[])];
const DERIV_PROPS: &[Prop] = &[
    p("as", &[A::Str, A::Strs]),
    p("unit", &[A::Dur]),
    p("nonNegative", &[]),
];
const MULTI_PROPS: &[Prop] = &[p("as", &[A::Str, A::Strs]), p("usePointTimes", &[])];

const ALERT_PROPS: &[Prop] = &[
    p("id", &[A::Tmpl]),
    p("message", &[A::Tmpl]),
    p("details", &[A::Tmpl]),
    p("info", &[A::Cond]),
    p("warn", &[A::Cond]),
    p("crit", &[A::Cond]),
    p("infoReset", &[A::Cond]),
    p("warnReset", &[A::Cond]),
    p("critReset", &[A::Cond]),
    p("history", &[A::Int]),
    p("flapping", &[A::Num, A::Num]),
    p("stateChangesOnly", &[A::OptDur]),
    p("noRecoveries", &[]),
    p("all", &[]),
    p("levelTag", &[A::Str]),
    p("levelField", &[A::Str]),
    p("idTag", &[A::Str]),
    p("idField", &[A::Str]),
    p("messageField", &[A::Str]),
    p("durationField", &[A::Str]),
    p("topic", &[A::Str]),
    p("category", &[A::Str]),
    p("inhibit", &[A::Str, A::Strs]),
    p("quiet", &[]),
];

struct HandlerDef {
    name: &'static str,
    ctor: &'static [A],
    props: &'static [Prop],
}

const HANDLERS: &[HandlerDef] = &[
    HandlerDef {
        name: "post",
        ctor: &[A::OptStr],
        props: &[
            p("endpoint", &[A::Str]),
            p("header", &[A::Str, A::Str]),
            p("captureResponse", &[]),
            p("timeout", &[A::Dur]),
            p("skipSSLVerification", &[]),
        ],
    },
    HandlerDef {
        name: "email",
        ctor: &[A::Strs],
        props: &[p("to", &[A::Strs])],
    },
    HandlerDef {
        name: "alerta",
        ctor: &[],
        props: &[
            p("resource", &[A::Tmpl]),
            p("event", &[A::Tmpl]),
            p("environment", &[A::Tmpl]),
            p("group", &[A::Tmpl]),
            p("value", &[A::Tmpl]),
            p("origin", &[A::Str]),
            p("services", &[A::Strs]),
            p("correlated", &[A::Strs]),
            p("attribute", &[A::Str, A::Lit]),
            p("timeout", &[A::Dur]),
            p("token", &[A::Str]),
            p("tokenPrefix", &[A::Str]),
        ],
    },
    HandlerDef {
        name: "log",
        ctor: &[A::Str],
        props: &[p("mode", &[A::Int])],
    },
    HandlerDef {
        name: "exec",
        ctor: &[A::Str, A::Strs],
        props: &[],
    },
    HandlerDef {
        name: "tcp",
        ctor: &[A::Str],
        props: &[],
    },
];

/// Kapacitor handlers alertd does not deliver to directly (they go through receivers instead).
const OTHER_HANDLERS: &[&str] = &[
    "victorOps",
    "pagerDuty",
    "pagerDuty2",
    "pushover",
    "sensu",
    "slack",
    "discord",
    "bigPanda",
    "telegram",
    "hipChat",
    "opsGenie",
    "opsGenie2",
    "talk",
    "mqtt",
    "snmpTrap",
    "kafka",
    "teams",
    "serviceNow",
    "zenoss",
    "snmptrap",
    "gotify",
];

/// Kapacitor nodes alertd does not implement.
const OTHER_NODES: &[&str] = &[
    "join",
    "union",
    "combine",
    "flatten",
    "httpOut",
    "httpPost",
    "influxDBOut",
    "kapacitorLoopback",
    "sideload",
    "trickle",
    "k8sAutoscale",
    "swarmAutoscale",
    "ec2Autoscale",
    "changeDetect",
    "barrier",
    "stats",
    "top",
    "bottom",
    "elapsed",
    "holtWinters",
    "holtWintersWithFit",
    "query",
    "queryFlux",
];

const NODES: &[NodeDef] = &[
    NodeDef {
        name: "from",
        ctor: &[],
        wants: Wants::Stream,
        provides: Provides::Stream,
        props: &[
            p("database", &[A::Str]),
            p("retentionPolicy", &[A::Str]),
            p("measurement", &[A::Str]),
            p("where", &[A::Cond]),
            p("groupBy", &[A::Tags]),
            p("groupByMeasurement", &[]),
            p("truncate", &[A::Dur]),
            p("round", &[A::Dur]),
        ],
    },
    NodeDef {
        name: "where",
        ctor: &[A::Cond],
        wants: Wants::Any,
        provides: Provides::Same,
        props: &[],
    },
    NodeDef {
        name: "window",
        ctor: &[],
        wants: Wants::Stream,
        provides: Provides::Batch,
        props: &[
            p("period", &[A::Dur]),
            p("every", &[A::Dur]),
            p("align", &[]),
            p("fillPeriod", &[]),
            p("periodCount", &[A::Int]),
            p("everyCount", &[A::Int]),
        ],
    },
    NodeDef {
        name: "groupBy",
        ctor: &[A::Tags],
        wants: Wants::Any,
        provides: Provides::Same,
        props: &[p("byMeasurement", &[]), p("exclude", &[A::Strs])],
    },
    NodeDef {
        name: "mean",
        ctor: &[A::Str],
        wants: Wants::Batch,
        provides: Provides::Stream,
        props: AGG_PROPS,
    },
    NodeDef {
        name: "median",
        ctor: &[A::Str],
        wants: Wants::Batch,
        provides: Provides::Stream,
        props: AGG_PROPS,
    },
    NodeDef {
        name: "sum",
        ctor: &[A::Str],
        wants: Wants::Batch,
        provides: Provides::Stream,
        props: AGG_PROPS,
    },
    NodeDef {
        name: "count",
        ctor: &[A::Str],
        wants: Wants::Batch,
        provides: Provides::Stream,
        props: AGG_PROPS,
    },
    NodeDef {
        name: "min",
        ctor: &[A::Str],
        wants: Wants::Batch,
        provides: Provides::Stream,
        props: AGG_PROPS,
    },
    NodeDef {
        name: "max",
        ctor: &[A::Str],
        wants: Wants::Batch,
        provides: Provides::Stream,
        props: AGG_PROPS,
    },
    NodeDef {
        name: "first",
        ctor: &[A::Str],
        wants: Wants::Batch,
        provides: Provides::Stream,
        props: AGG_PROPS,
    },
    NodeDef {
        name: "last",
        ctor: &[A::Str],
        wants: Wants::Batch,
        provides: Provides::Stream,
        props: AGG_PROPS,
    },
    NodeDef {
        name: "spread",
        ctor: &[A::Str],
        wants: Wants::Batch,
        provides: Provides::Stream,
        props: AGG_PROPS,
    },
    NodeDef {
        name: "stddev",
        ctor: &[A::Str],
        wants: Wants::Batch,
        provides: Provides::Stream,
        props: AGG_PROPS,
    },
    NodeDef {
        name: "mode",
        ctor: &[A::Str],
        wants: Wants::Batch,
        provides: Provides::Stream,
        props: AGG_PROPS,
    },
    NodeDef {
        name: "percentile",
        ctor: &[A::Str, A::Num],
        wants: Wants::Batch,
        provides: Provides::Stream,
        props: AGG_PROPS,
    },
    NodeDef {
        name: "distinct",
        ctor: &[A::Str],
        wants: Wants::Batch,
        provides: Provides::Batch,
        props: AGG_PROPS,
    },
    NodeDef {
        name: "difference",
        ctor: &[A::Str, A::Strs],
        wants: Wants::Any,
        provides: Provides::Same,
        props: MULTI_PROPS,
    },
    NodeDef {
        name: "cumulativeSum",
        ctor: &[A::Str, A::Strs],
        wants: Wants::Any,
        provides: Provides::Same,
        props: MULTI_PROPS,
    },
    NodeDef {
        name: "movingAverage",
        ctor: &[A::Str, A::Int],
        wants: Wants::Any,
        provides: Provides::Same,
        props: AGG_PROPS,
    },
    NodeDef {
        name: "derivative",
        ctor: &[A::Str, A::Strs],
        wants: Wants::Any,
        provides: Provides::Same,
        props: DERIV_PROPS,
    },
    NodeDef {
        name: "eval",
        ctor: &[A::Expr, A::Exprs],
        wants: Wants::Any,
        provides: Provides::Same,
        props: &[
            p("as", &[A::Str, A::Strs]),
            p("keep", &[A::Strs]),
            p("tags", &[A::Strs]),
            p("quiet", &[]),
        ],
    },
    NodeDef {
        name: "default",
        ctor: &[],
        wants: Wants::Any,
        provides: Provides::Same,
        props: &[p("field", &[A::Str, A::Lit]), p("tag", &[A::Str, A::Str])],
    },
    NodeDef {
        name: "delete",
        ctor: &[],
        wants: Wants::Any,
        provides: Provides::Same,
        props: &[p("field", &[A::Str]), p("tag", &[A::Str])],
    },
    NodeDef {
        name: "shift",
        ctor: &[A::Dur],
        wants: Wants::Any,
        provides: Provides::Same,
        props: &[],
    },
    NodeDef {
        name: "sample",
        ctor: &[A::IntOrDur],
        wants: Wants::Any,
        provides: Provides::Same,
        props: &[],
    },
    NodeDef {
        name: "stateDuration",
        ctor: &[A::Cond],
        wants: Wants::Stream,
        provides: Provides::Stream,
        props: &[p("as", &[A::Str]), p("unit", &[A::Dur])],
    },
    NodeDef {
        name: "stateCount",
        ctor: &[A::Cond],
        wants: Wants::Stream,
        provides: Provides::Stream,
        props: &[p("as", &[A::Str])],
    },
    NodeDef {
        name: "deadman",
        ctor: &[A::Num, A::Dur, A::Conds],
        wants: Wants::Any,
        provides: Provides::Stream,
        props: ALERT_PROPS,
    },
    NodeDef {
        name: "log",
        ctor: &[],
        wants: Wants::Any,
        provides: Provides::Same,
        props: &[p("level", &[A::Str]), p("prefix", &[A::Str])],
    },
    NodeDef {
        name: "alert",
        ctor: &[],
        wants: Wants::Any,
        provides: Provides::Same,
        props: ALERT_PROPS,
    },
];

fn node_def(name: &str) -> Option<&'static NodeDef> {
    NODES.iter().find(|d| d.name == name)
}

fn handler_def(name: &str) -> Option<&'static HandlerDef> {
    HANDLERS.iter().find(|d| d.name == name)
}

/// A checked argument.
#[derive(Debug, Clone)]
enum Arg {
    Str(String),
    Tmpl(Tmpl),
    Dur(i64),
    Int(i64),
    Num(f64),
    Lambda(Lambda),
    Lit(Value),
    Strs(Vec<String>),
    Tags(Vec<String>, bool),
    Lambdas(Vec<Lambda>),
    None,
}

impl Arg {
    fn str(&self) -> String {
        match self {
            Arg::Str(s) => s.clone(),
            Arg::Tmpl(t) => t.source().to_string(),
            _ => String::new(),
        }
    }
    fn dur(&self) -> i64 {
        match self {
            Arg::Dur(d) | Arg::Int(d) => *d,
            _ => 0,
        }
    }
    fn num(&self) -> f64 {
        match self {
            Arg::Num(f) => *f,
            Arg::Int(i) => *i as f64,
            _ => 0.0,
        }
    }
    fn lambda(&self) -> Option<Lambda> {
        match self {
            Arg::Lambda(l) => Some(l.clone()),
            _ => None,
        }
    }
    fn strs(&self) -> Vec<String> {
        match self {
            Arg::Strs(v) | Arg::Tags(v, _) => v.clone(),
            Arg::Str(s) => vec![s.clone()],
            _ => Vec::new(),
        }
    }
    fn handler_value(&self) -> Vec<HandlerValue> {
        match self {
            Arg::Str(s) => vec![HandlerValue::Value(Value::Str(s.as_str().into()))],
            Arg::Tmpl(t) => vec![HandlerValue::Template(t.clone())],
            Arg::Dur(d) => vec![HandlerValue::Value(Value::Duration(*d))],
            Arg::Int(i) => vec![HandlerValue::Value(Value::Int(*i))],
            Arg::Num(f) => vec![HandlerValue::Value(Value::Float(*f))],
            Arg::Lit(v) => vec![HandlerValue::Value(v.clone())],
            Arg::Strs(v) | Arg::Tags(v, _) => v
                .iter()
                .map(|s| HandlerValue::Value(Value::Str(s.as_str().into())))
                .collect(),
            Arg::Lambda(_) | Arg::Lambdas(_) | Arg::None => Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The builder

struct Builder {
    plan: TaskPlan,
    vars: HashMap<String, CVal>,
    /// (node, handler index) -> handler definition name, for property lookups.
    handler_spec: HashMap<(usize, usize), &'static str>,
}

struct VarScope<'a>(&'a HashMap<String, CVal>);

impl lambda::Vars for VarScope<'_> {
    fn constant(&self, name: &str, pos: Pos) -> Result<Value, Diagnostic> {
        match self.0.get(name) {
            Some(CVal::Value(v)) => Ok(v.clone()),
            Some(CVal::Declared(ty)) => Err(Diagnostic::new(
                pos,
                format!("variable '{name}' is declared as {ty} but never given a value"),
            )),
            Some(other) => Err(Diagnostic::new(
                pos,
                format!(
                    "variable '{name}' is {}, which cannot be used inside a lambda",
                    other.describe()
                ),
            )),
            None => {
                let hint = suggest(name, self.0.keys().map(String::as_str))
                    .map(|s| format!(" (did you mean '{s}'?)"))
                    .unwrap_or_default();
                Err(Diagnostic::new(
                    pos,
                    format!("undefined variable '{name}'{hint}"),
                ))
            }
        }
    }
}

impl Builder {
    fn eval(&mut self, e: &Expr) -> Result<CVal, Diagnostic> {
        let pos = e.pos;
        Ok(match &e.node {
            ExprKind::Ident(name) => match name.as_str() {
                "stream" => CVal::Node(0),
                "batch" => {
                    return Err(Diagnostic::new(
                        pos,
                        "batch tasks are not supported: alertd evaluates pushed data, start the pipeline with stream|from()",
                    ));
                }
                _ => match self.vars.get(name) {
                    Some(CVal::Declared(ty)) => {
                        return Err(Diagnostic::new(
                            pos,
                            format!(
                                "variable '{name}' is declared as {ty} but never given a value"
                            ),
                        ));
                    }
                    Some(v) => v.clone(),
                    None => {
                        let hint =
                            suggest(name, self.vars.keys().map(String::as_str).chain(["stream"]))
                                .map(|s| format!(" (did you mean '{s}'?)"))
                                .unwrap_or_default();
                        return Err(Diagnostic::new(
                            pos,
                            format!("undefined variable '{name}'{hint}"),
                        ));
                    }
                },
            },
            ExprKind::Int(i) => CVal::Value(Value::Int(*i)),
            ExprKind::Float(f) => CVal::Value(Value::Float(*f)),
            ExprKind::Duration(d) => CVal::Value(Value::Duration(*d)),
            ExprKind::Str(s) => CVal::Value(Value::Str(s.as_str().into())),
            ExprKind::Bool(b) => CVal::Value(Value::Bool(*b)),
            ExprKind::Reference(r) => CVal::Reference(r.clone()),
            ExprKind::Regex(r) => {
                lambda::compile_regex(r, pos)?;
                CVal::Regex
            }
            ExprKind::Star => CVal::Star,
            ExprKind::List(items) => CVal::List(
                items
                    .iter()
                    .map(|i| Ok(Positioned::new(i.pos, self.eval(i)?)))
                    .collect::<Result<_, Diagnostic>>()?,
            ),
            ExprKind::Lambda(body) => CVal::Lambda(body.clone()),
            ExprKind::Binary { .. } | ExprKind::Unary { .. } => {
                // Constant arithmetic outside lambdas (`var every = period / 2`).
                let l = lambda::compile(e, &VarScope(&self.vars), Type::Any)?;
                let v = l.eval_stateless(&NoPoint).map_err(|err| {
                    Diagnostic::new(pos, format!("cannot evaluate this expression: {err}"))
                })?;
                CVal::Value(v)
            }
            ExprKind::Call { name, .. } => {
                return Err(Diagnostic::new(
                    name.pos,
                    format!(
                        "function '{}' can only be called inside a lambda",
                        name.node
                    ),
                ));
            }
            ExprKind::Chain {
                target,
                kind,
                name,
                args,
            } => {
                let target_val = self.eval(target)?;
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(Positioned::new(a.pos, self.eval(a)?));
                }
                // Errors about a link point at its `|` or `.`.
                let name = &Positioned::new(pos, name.node.clone());
                match kind {
                    ChainKind::Pipe => self.pipe(target_val, target.pos, name, vals)?,
                    ChainKind::Dot => self.dot(target_val, target.pos, name, vals)?,
                    ChainKind::At => {
                        return Err(Diagnostic::new(
                            name.pos,
                            format!(
                                "user-defined function '@{}' is not supported by alertd",
                                name.node
                            ),
                        ));
                    }
                }
            }
        })
    }

    fn node_of(&self, v: &CVal, pos: Pos, what: &str) -> Result<usize, Diagnostic> {
        match v {
            CVal::Node(n) | CVal::Handler(n, _) => Ok(*n),
            other => Err(Diagnostic::new(
                pos,
                format!("{what} needs a node on its left, got {}", other.describe()),
            )),
        }
    }

    fn pipe(
        &mut self,
        target: CVal,
        tpos: Pos,
        name: &Positioned<String>,
        args: Vec<Positioned<CVal>>,
    ) -> Result<CVal, Diagnostic> {
        let parent = self.node_of(&target, tpos, &format!("'|{}'", name.node))?;
        let Some(def) = node_def(&name.node) else {
            let msg = if OTHER_NODES.contains(&name.node.as_str()) {
                format!("node '{}' is not supported by alertd", name.node)
            } else if name.node == "stream" || name.node == "batch" {
                format!("'{}' starts a script; it cannot follow '|'", name.node)
            } else {
                let hint = suggest(&name.node, NODES.iter().map(|d| d.name))
                    .map(|s| format!(" (did you mean '{s}'?)"))
                    .unwrap_or_default();
                format!("unknown node '{}'{hint}", name.node)
            };
            return Err(Diagnostic::new(name.pos, msg));
        };
        let parent_node = &self.plan.nodes[parent];
        let input = parent_node.provides;
        if matches!(parent_node.kind, NodeKind::Stream) != (def.name == "from") {
            return Err(Diagnostic::new(
                name.pos,
                if def.name == "from" {
                    "from() must follow stream: write stream|from()".to_string()
                } else {
                    format!(
                        "'{}' cannot follow stream directly: start with stream|from()",
                        def.name
                    )
                },
            ));
        }
        match (def.wants, input) {
            (Wants::Stream, Edge::Batch) => {
                return Err(Diagnostic::new(
                    name.pos,
                    format!(
                        "{} needs a stream of points, but {} emits batches",
                        def.name, parent_node.name
                    ),
                ));
            }
            (Wants::Batch, Edge::Stream) => {
                return Err(Diagnostic::new(
                    name.pos,
                    format!(
                        "{} needs a batch of points: put a |window() before it",
                        def.name
                    ),
                ));
            }
            _ => {}
        }
        let provides = match def.provides {
            Provides::Stream => Edge::Stream,
            Provides::Batch => Edge::Batch,
            Provides::Same => input,
        };
        let a = self.check_args(def.ctor, &args, name, &format!("{}()", def.name))?;
        let kind = self.construct(def, &a, name.pos, parent)?;
        let idx = self.plan.nodes.len();
        self.plan.nodes.push(PlanNode {
            name: format!("{}{}", def.name, idx),
            kind,
            parent: Some(parent),
            children: Vec::new(),
            provides,
            pos: name.pos,
        });
        self.plan.nodes[parent].children.push(idx);
        // The deadman's id names the node it watches.
        let watched = self.plan.nodes[parent].name.clone();
        if let NodeKind::Deadman(d) = &mut self.plan.nodes[idx].kind {
            let interval = format_go_duration(d.interval);
            d.alert.id = default_tmpl(&format!(
                "{{{{ .Group }}}}:{watched} for task '{{{{ .TaskName }}}}'"
            ));
            d.alert.message = default_tmpl(&format!(
                "{{{{ .ID }}}} is {{{{ if eq .Level \"OK\" }}}}alive{{{{ else }}}}dead{{{{ end }}}}: {{{{ index .Fields \"emitted\" | printf \"%0.3f\" }}}} points/{interval}."
            ));
        }
        Ok(CVal::Node(idx))
    }

    fn construct(
        &self,
        def: &NodeDef,
        a: &[Arg],
        pos: Pos,
        _parent: usize,
    ) -> Result<NodeKind, Diagnostic> {
        let agg = |func: AggFunc| -> NodeKind {
            // Extension: several fields at once, each written under its own name.
            let more: Vec<String> = match a.get(1) {
                Some(Arg::Strs(v)) => v.clone(),
                _ => Vec::new(),
            };
            let as_name = if more.is_empty() {
                def.name.to_string()
            } else {
                a[0].str()
            };
            NodeKind::Aggregate(AggSpec {
                func,
                field: a[0].str(),
                as_name,
                use_point_times: false,
                more: more.iter().map(|f| (f.clone(), f.clone())).collect(),
            })
        };
        Ok(match def.name {
            "from" => NodeKind::From(FromSpec::default()),
            "where" => NodeKind::Where(
                a[0].lambda()
                    .ok_or_else(|| Diagnostic::new(pos, "where needs a lambda"))?,
            ),
            "window" => NodeKind::Window(WindowSpec::default()),
            "groupBy" => {
                let (tags, all) = match &a[0] {
                    Arg::Tags(t, all) => (t.clone(), *all),
                    _ => (Vec::new(), false),
                };
                NodeKind::GroupBy(group_spec(tags, all))
            }
            "mean" => agg(AggFunc::Mean),
            "median" => agg(AggFunc::Median),
            "sum" => agg(AggFunc::Sum),
            "count" => agg(AggFunc::Count),
            "min" => agg(AggFunc::Min),
            "max" => agg(AggFunc::Max),
            "first" => agg(AggFunc::First),
            "last" => agg(AggFunc::Last),
            "spread" => agg(AggFunc::Spread),
            "stddev" => agg(AggFunc::Stddev),
            "mode" => agg(AggFunc::Mode),
            "distinct" => agg(AggFunc::Distinct),
            "difference" => agg(AggFunc::Difference),
            "cumulativeSum" => agg(AggFunc::CumulativeSum),
            "percentile" => {
                let pct = a[1].num();
                if !(0.0..=100.0).contains(&pct) {
                    return Err(Diagnostic::new(
                        pos,
                        format!("percentile must be between 0 and 100, got {pct}"),
                    ));
                }
                agg(AggFunc::Percentile(pct))
            }
            "movingAverage" => {
                let n = a[1].dur();
                if n < 1 {
                    return Err(Diagnostic::new(
                        pos,
                        "movingAverage needs a window of at least 1 point",
                    ));
                }
                agg(AggFunc::MovingAverage(n as usize))
            }
            "derivative" => agg(AggFunc::Derivative {
                unit: 1_000_000_000,
                non_negative: false,
            }),
            "eval" => {
                let mut lambdas: Vec<Lambda> = a[0].lambda().into_iter().collect();
                if let Arg::Lambdas(more) = &a[1] {
                    lambdas.extend(more.iter().cloned());
                }
                NodeKind::Eval(EvalSpec {
                    lambdas,
                    as_names: Vec::new(),
                    keep: None,
                    tags: Vec::new(),
                    quiet: false,
                })
            }
            "default" => NodeKind::Default(DefaultSpec::default()),
            "delete" => NodeKind::Delete(DeleteSpec::default()),
            "shift" => NodeKind::Shift(a[0].dur()),
            "sample" => match &a[0] {
                Arg::Dur(d) if *d > 0 => NodeKind::Sample(SampleSpec::Every(*d)),
                Arg::Int(n) if *n > 0 => NodeKind::Sample(SampleSpec::Count(*n)),
                _ => {
                    return Err(Diagnostic::new(
                        pos,
                        "sample needs a positive count or duration",
                    ));
                }
            },
            "stateDuration" | "stateCount" => {
                let duration = def.name == "stateDuration";
                NodeKind::State(StateSpec {
                    duration,
                    lambda: a[0]
                        .lambda()
                        .ok_or_else(|| Diagnostic::new(pos, "needs a lambda"))?,
                    as_name: if duration {
                        "state_duration".into()
                    } else {
                        "state_count".into()
                    },
                    unit: 1_000_000_000,
                })
            }
            "deadman" => {
                let interval = a[1].dur();
                if interval <= 0 {
                    return Err(Diagnostic::new(pos, "deadman's interval must be positive"));
                }
                let extra = match &a[2] {
                    Arg::Lambdas(l) => l.first().cloned(),
                    _ => None,
                };
                NodeKind::Deadman(Box::new(DeadmanSpec {
                    threshold: a[0].num(),
                    interval,
                    extra,
                    alert: default_alert(),
                }))
            }
            "log" => NodeKind::Log(LogSpec {
                level: "INFO".into(),
                prefix: String::new(),
            }),
            "alert" => NodeKind::Alert(Box::new(default_alert())),
            other => {
                return Err(Diagnostic::new(
                    pos,
                    format!("internal error: no constructor for {other}"),
                ));
            }
        })
    }

    fn dot(
        &mut self,
        target: CVal,
        tpos: Pos,
        name: &Positioned<String>,
        args: Vec<Positioned<CVal>>,
    ) -> Result<CVal, Diagnostic> {
        let node = self.node_of(&target, tpos, &format!("'.{}'", name.node))?;
        // A property of the current handler first, then of the alert node (Kapacitor's handlers
        // embed the alert node, so `.alerta().message(...)` sets the alert's message).
        if let CVal::Handler(n, h) = target {
            let hdef = self
                .handler_spec
                .get(&(n, h))
                .copied()
                .and_then(handler_def);
            if let Some(prop) = hdef.and_then(|d| d.props.iter().find(|p| p.name == name.node)) {
                let a = self.check_args(prop.args, &args, name, &format!(".{}()", prop.name))?;
                let spec = self.alert_spec_mut(n).ok_or_else(|| {
                    Diagnostic::new(name.pos, "internal error: handler without alert")
                })?;
                let value = a.iter().flat_map(Arg::handler_value).collect();
                spec.handlers[h].props.push((prop.name.to_string(), value));
                return Ok(CVal::Handler(n, h));
            }
        }
        let kind_name = self.plan.nodes[node]
            .name
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .to_string();
        let is_alert = matches!(
            self.plan.nodes[node].kind,
            NodeKind::Alert(_) | NodeKind::Deadman(_)
        );
        if is_alert {
            if let Some(hdef) = handler_def(&name.node) {
                let a = self.check_args(hdef.ctor, &args, name, &format!(".{}()", hdef.name))?;
                let spec = self
                    .alert_spec_mut(node)
                    .ok_or_else(|| Diagnostic::new(name.pos, "internal error: no alert"))?;
                spec.handlers.push(HandlerSpec {
                    kind: hdef.name.to_string(),
                    pos: name.pos,
                    args: a.iter().flat_map(Arg::handler_value).collect(),
                    props: Vec::new(),
                });
                let h = spec.handlers.len() - 1;
                self.handler_spec.insert((node, h), hdef.name);
                return Ok(CVal::Handler(node, h));
            }
            if OTHER_HANDLERS.contains(&name.node.as_str()) {
                return Err(Diagnostic::new(
                    name.pos,
                    format!(
                        "handler '{}' is not built into alertd; send alerts to it through a receiver in receivers/ (post, email, alerta, log, exec and tcp are built in)",
                        name.node
                    ),
                ));
            }
        }
        let def = node_def(&kind_name);
        let props: &[Prop] = def.map_or(&[], |d| d.props);
        let Some(prop) = props.iter().find(|p| p.name == name.node) else {
            let mut known: Vec<&str> = props.iter().map(|p| p.name).collect();
            if is_alert {
                known.extend(HANDLERS.iter().map(|h| h.name));
            }
            if let CVal::Handler(n, h) = target
                && let Some(d) = self
                    .handler_spec
                    .get(&(n, h))
                    .copied()
                    .and_then(handler_def)
            {
                known.extend(d.props.iter().map(|p| p.name));
            }
            let hint = suggest(&name.node, known.iter().copied())
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default();
            return Err(Diagnostic::new(
                name.pos,
                format!("unknown property '{}' on {}{hint}", name.node, kind_name),
            ));
        };
        let a = self.check_args(prop.args, &args, name, &format!(".{}()", prop.name))?;
        self.set_property(node, prop.name, a, name.pos)?;
        Ok(match target {
            CVal::Handler(n, h) => CVal::Handler(n, h),
            _ => CVal::Node(node),
        })
    }

    fn alert_spec_mut(&mut self, node: usize) -> Option<&mut AlertSpec> {
        match &mut self.plan.nodes[node].kind {
            NodeKind::Alert(a) => Some(a),
            NodeKind::Deadman(d) => Some(&mut d.alert),
            _ => None,
        }
    }

    fn set_property(
        &mut self,
        node: usize,
        prop: &str,
        a: Vec<Arg>,
        pos: Pos,
    ) -> Result<(), Diagnostic> {
        let bad = |msg: String| Err(Diagnostic::new(pos, msg));
        let mut a = a.into_iter();
        let mut next = || a.next().unwrap_or(Arg::None);
        match &mut self.plan.nodes[node].kind {
            NodeKind::From(f) => match prop {
                "database" => f.database = Some(next().str()),
                "retentionPolicy" => f.retention_policy = Some(next().str()),
                "measurement" => f.measurement = Some(next().str()),
                "where" => f.filter = next().lambda(),
                "groupBy" => {
                    let (tags, all) = match next() {
                        Arg::Tags(t, all) => (t, all),
                        _ => (Vec::new(), false),
                    };
                    let by = f.group.by_measurement;
                    f.group = group_spec(tags, all);
                    f.group.by_measurement = by;
                }
                "groupByMeasurement" => f.group.by_measurement = true,
                "truncate" => f.truncate = next().dur(),
                "round" => f.round = next().dur(),
                _ => {}
            },
            NodeKind::Window(w) => match prop {
                "period" => w.period = next().dur(),
                "every" => w.every = next().dur(),
                "align" => w.align = true,
                "fillPeriod" => w.fill_period = true,
                "periodCount" => w.period_count = next().dur(),
                "everyCount" => w.every_count = next().dur(),
                _ => {}
            },
            NodeKind::GroupBy(g) => match prop {
                "byMeasurement" => g.by_measurement = true,
                "exclude" => g.exclude = next().strs(),
                _ => {}
            },
            NodeKind::Aggregate(s) => match prop {
                "as" => {
                    let first = next().str();
                    let rest = next().strs();
                    if rest.len() != s.more.len() {
                        return bad(format!(
                            ".as() names {} output{} but the node computes {}",
                            rest.len() + 1,
                            if rest.is_empty() { "" } else { "s" },
                            s.more.len() + 1
                        ));
                    }
                    s.as_name = first;
                    for (slot, name) in s.more.iter_mut().zip(rest) {
                        slot.1 = name;
                    }
                }
                "usePointTimes" => s.use_point_times = true,
                "unit" | "nonNegative" => {
                    if let AggFunc::Derivative { unit, non_negative } = &mut s.func {
                        if prop == "unit" {
                            *unit = next().dur();
                            if *unit <= 0 {
                                return bad("derivative's unit must be positive".into());
                            }
                        } else {
                            *non_negative = true;
                        }
                    }
                }
                _ => {}
            },
            NodeKind::Eval(e) => match prop {
                "as" => {
                    let mut names = vec![next().str()];
                    names.extend(next().strs());
                    if names.len() != e.lambdas.len() {
                        return bad(format!(
                            "eval has {} expression{} but .as() names {}",
                            e.lambdas.len(),
                            if e.lambdas.len() == 1 { "" } else { "s" },
                            names.len()
                        ));
                    }
                    e.as_names = names;
                }
                "keep" => e.keep = Some(next().strs()),
                "tags" => e.tags = next().strs(),
                "quiet" => e.quiet = true,
                _ => {}
            },
            NodeKind::Default(d) => match prop {
                "field" => {
                    let name = next().str();
                    let v = match next() {
                        Arg::Lit(v) => v,
                        _ => return bad("default field needs a value".into()),
                    };
                    d.fields.push((name, v));
                }
                "tag" => {
                    let name = next().str();
                    d.tags.push((name, next().str()));
                }
                _ => {}
            },
            NodeKind::Delete(d) => match prop {
                "field" => d.fields.push(next().str()),
                "tag" => d.tags.push(next().str()),
                _ => {}
            },
            NodeKind::State(s) => match prop {
                "as" => s.as_name = next().str(),
                "unit" => s.unit = next().dur().max(1),
                _ => {}
            },
            NodeKind::Log(l) => match prop {
                "level" => {
                    let level = next().str().to_uppercase();
                    if !["DEBUG", "INFO", "WARN", "ERROR"].contains(&level.as_str()) {
                        return bad(format!(
                            "log level must be DEBUG, INFO, WARN or ERROR, got '{level}'"
                        ));
                    }
                    l.level = level;
                }
                "prefix" => l.prefix = next().str(),
                _ => {}
            },
            NodeKind::Alert(_) | NodeKind::Deadman(_) => {
                let spec = match &mut self.plan.nodes[node].kind {
                    NodeKind::Alert(a) => &mut **a,
                    NodeKind::Deadman(d) => &mut d.alert,
                    _ => return Ok(()),
                };
                set_alert_property(spec, prop, &mut next, pos)?;
            }
            NodeKind::Stream | NodeKind::Where(_) | NodeKind::Shift(_) | NodeKind::Sample(_) => {}
        }
        Ok(())
    }

    fn check_args(
        &self,
        kinds: &[A],
        args: &[Positioned<CVal>],
        name: &Positioned<String>,
        what: &str,
    ) -> Result<Vec<Arg>, Diagnostic> {
        let variadic = matches!(
            kinds.last(),
            Some(A::Strs | A::Tags | A::OptDur | A::OptStr | A::Conds | A::Exprs)
        );
        let fixed = if variadic {
            kinds.len() - 1
        } else {
            kinds.len()
        };
        let max = match kinds.last() {
            Some(A::OptDur | A::OptStr) => Some(kinds.len()),
            _ if variadic => None,
            _ => Some(kinds.len()),
        };
        if args.len() < fixed || max.is_some_and(|m| args.len() > m) {
            let count = match (fixed, max) {
                (0, Some(0)) => "no arguments".to_string(),
                (f, Some(m)) if f == m => format!("{f} argument{}", if f == 1 { "" } else { "s" }),
                (f, Some(m)) => format!("{f} to {m} arguments"),
                (f, None) => format!("at least {f} argument{}", if f == 1 { "" } else { "s" }),
            };
            return Err(Diagnostic::new(
                name.pos,
                format!("{what} takes {count}, got {}", args.len()),
            ));
        }
        let mut out = Vec::with_capacity(kinds.len());
        for (i, kind) in kinds.iter().enumerate() {
            if i == fixed && variadic {
                out.push(self.variadic(*kind, &args[i.min(args.len())..], what)?);
                break;
            }
            out.push(self.one_arg(*kind, &args[i], what, i + 1)?);
        }
        Ok(out)
    }

    fn variadic(&self, kind: A, args: &[Positioned<CVal>], what: &str) -> Result<Arg, Diagnostic> {
        match kind {
            A::OptDur => args
                .first()
                .map_or(Ok(Arg::None), |a| self.one_arg(A::Dur, a, what, 1)),
            A::OptStr => args
                .first()
                .map_or(Ok(Arg::None), |a| self.one_arg(A::Str, a, what, 1)),
            A::Conds | A::Exprs => {
                let want = if kind == A::Conds { A::Cond } else { A::Expr };
                let mut v = Vec::new();
                for (i, a) in args.iter().enumerate() {
                    if let Arg::Lambda(l) = self.one_arg(want, a, what, i + 1)? {
                        v.push(l);
                    }
                }
                Ok(Arg::Lambdas(v))
            }
            _ => {
                let mut tags = Vec::new();
                let mut star = false;
                let mut flat: Vec<&Positioned<CVal>> = Vec::new();
                for a in args {
                    match &a.node {
                        CVal::List(items) => flat.extend(items.iter()),
                        _ => flat.push(a),
                    }
                }
                for a in flat {
                    match &a.node {
                        CVal::Value(Value::Str(s)) => tags.push(s.to_string()),
                        CVal::Reference(s) => tags.push(s.clone()),
                        CVal::Star if kind == A::Tags => star = true,
                        other => {
                            return Err(Diagnostic::new(
                                a.pos,
                                format!(
                                    "{what} takes {}, got {}",
                                    if kind == A::Tags {
                                        "tag names or *"
                                    } else {
                                        "strings"
                                    },
                                    other.describe()
                                ),
                            ));
                        }
                    }
                }
                Ok(if kind == A::Tags {
                    Arg::Tags(tags, star)
                } else {
                    Arg::Strs(tags)
                })
            }
        }
    }

    fn one_arg(
        &self,
        kind: A,
        a: &Positioned<CVal>,
        what: &str,
        n: usize,
    ) -> Result<Arg, Diagnostic> {
        let wrong = |want: &str| {
            Err(Diagnostic::new(
                a.pos,
                format!(
                    "argument {n} of {what} must be {want}, got {}",
                    a.node.describe()
                ),
            ))
        };
        match (kind, &a.node) {
            (A::Str, CVal::Value(Value::Str(s))) => Ok(Arg::Str(s.to_string())),
            (A::Str, CVal::Reference(s)) => Ok(Arg::Str(s.clone())),
            (A::Str, _) => wrong("a string"),
            (A::Tmpl, CVal::Value(Value::Str(s))) => Ok(Arg::Tmpl(template_at(s, a.pos)?)),
            (A::Tmpl, _) => wrong("a string"),
            (A::Dur, CVal::Value(Value::Duration(d))) => Ok(Arg::Dur(*d)),
            (A::Dur, CVal::Value(Value::Int(0))) => Ok(Arg::Dur(0)),
            (A::Dur, _) => wrong("a duration such as 10s"),
            (A::Int, CVal::Value(Value::Int(i))) => Ok(Arg::Int(*i)),
            (A::Int, _) => wrong("an integer"),
            (A::IntOrDur, CVal::Value(Value::Int(i))) => Ok(Arg::Int(*i)),
            (A::IntOrDur, CVal::Value(Value::Duration(d))) => Ok(Arg::Dur(*d)),
            (A::IntOrDur, _) => wrong("an integer or a duration"),
            (A::Num, CVal::Value(Value::Int(i))) => Ok(Arg::Num(*i as f64)),
            (A::Num, CVal::Value(Value::Float(f))) => Ok(Arg::Num(*f)),
            (A::Num, _) => wrong("a number"),
            (A::Cond | A::Expr, CVal::Lambda(body)) => {
                let want = if kind == A::Cond {
                    Type::Bool
                } else {
                    Type::Any
                };
                Ok(Arg::Lambda(lambda::compile(
                    body,
                    &VarScope(&self.vars),
                    want,
                )?))
            }
            (A::Cond | A::Expr, _) => wrong("a lambda (lambda: ...)"),
            (A::Lit, CVal::Value(v)) => Ok(Arg::Lit(v.clone())),
            (A::Lit, _) => wrong("a literal value"),
            (_, _) => wrong("something else"),
        }
    }

    fn finish(&mut self) -> Result<(), Diagnostic> {
        if self.plan.nodes[0].children.is_empty() {
            return Err(Diagnostic::new(
                Pos { line: 1, col: 1 },
                "the script defines no pipeline: start one with stream|from()",
            ));
        }
        for n in &self.plan.nodes {
            if let NodeKind::Window(w) = &n.kind {
                if w.period_count == 0 && w.every_count == 0 {
                    if w.period <= 0 {
                        return Err(Diagnostic::new(
                            n.pos,
                            "window needs .period(d) with a positive duration",
                        ));
                    }
                    if w.every < 0 {
                        return Err(Diagnostic::new(
                            n.pos,
                            "window's .every(d) must not be negative",
                        ));
                    }
                } else if w.period_count <= 0 || w.every_count <= 0 {
                    return Err(Diagnostic::new(
                        n.pos,
                        "a count window needs both .periodCount(n) and .everyCount(n), positive",
                    ));
                }
            }
            if let NodeKind::Eval(e) = &n.kind
                && e.as_names.is_empty()
            {
                return Err(Diagnostic::new(
                    n.pos,
                    "eval needs .as(...) to name its results",
                ));
            }
        }
        Ok(())
    }
}

fn set_alert_property(
    spec: &mut AlertSpec,
    prop: &str,
    next: &mut dyn FnMut() -> Arg,
    pos: Pos,
) -> Result<(), Diagnostic> {
    let level_of = |p: &str| match p {
        "info" | "infoReset" => 1,
        "warn" | "warnReset" => 2,
        _ => 3,
    };
    match prop {
        "id" | "message" | "details" => {
            if let Arg::Tmpl(t) = next() {
                match prop {
                    "id" => spec.id = t,
                    "message" => spec.message = t,
                    _ => spec.details = t,
                }
            }
        }
        "info" | "warn" | "crit" => spec.levels[level_of(prop)] = next().lambda(),
        "infoReset" | "warnReset" | "critReset" => spec.resets[level_of(prop)] = next().lambda(),
        "history" => {
            let h = next().dur();
            if !(2..=MAX_HISTORY).contains(&h) {
                return Err(Diagnostic::new(
                    pos,
                    format!("history must be between 2 and {MAX_HISTORY}, got {h}"),
                ));
            }
            spec.history = h as usize;
        }
        "flapping" => {
            let (low, high) = (next().num(), next().num());
            if !(0.0..=1.0).contains(&low) || !(0.0..=1.0).contains(&high) || low > high {
                return Err(Diagnostic::new(
                    pos,
                    format!(
                        "flapping(low, high) takes fractions with 0 <= low <= high <= 1, got {low}, {high}"
                    ),
                ));
            }
            spec.flapping = Some((low, high));
        }
        "stateChangesOnly" => spec.state_changes_only = Some(next().dur().max(0)),
        "noRecoveries" => spec.no_recoveries = true,
        "all" => spec.all = true,
        "levelTag" => spec.level_tag = Some(next().str()),
        "levelField" => spec.level_field = Some(next().str()),
        "idTag" => spec.id_tag = Some(next().str()),
        "idField" => spec.id_field = Some(next().str()),
        "messageField" => spec.message_field = Some(next().str()),
        "durationField" => spec.duration_field = Some(next().str()),
        "topic" => spec.topic = Some(next().str()),
        "category" => spec.category = Some(next().str()),
        "inhibit" => {
            let cat = next().str();
            spec.inhibits.push((cat, next().strs()));
        }
        "quiet" => spec.quiet = true,
        _ => {}
    }
    Ok(())
}

/// Largest `.history(n)`: every group keeps n levels and scans them per point.
const MAX_HISTORY: i64 = 1000;

fn group_spec(mut tags: Vec<String>, all: bool) -> GroupSpec {
    tags.sort();
    tags.dedup();
    GroupSpec {
        tags,
        all,
        by_measurement: false,
        exclude: Vec::new(),
    }
}

fn template_at(src: &str, pos: Pos) -> Result<Tmpl, Diagnostic> {
    match Template::parse(src) {
        Ok(t) => Ok(Tmpl {
            template: Arc::new(t),
            pos,
        }),
        Err(e) => {
            // Point inside the string literal: past the opening quote, counting characters.
            let before = &src[..e.offset.min(src.len())];
            let lines = before.matches('\n').count() as u32;
            let col = match before.rfind('\n') {
                Some(nl) => before[nl + 1..].chars().count() as u32 + 1,
                None => pos.col + 1 + before.chars().count() as u32,
            };
            Err(Diagnostic::new(
                Pos {
                    line: pos.line + lines,
                    col,
                },
                e.to_string(),
            ))
        }
    }
}

/// Parses one of alertd's built-in default templates (constants, covered by tests).
fn default_tmpl(src: &str) -> Tmpl {
    let template = Template::parse(src).expect("built-in default templates parse");
    Tmpl {
        template: Arc::new(template),
        pos: Pos::default(),
    }
}

fn default_alert() -> AlertSpec {
    AlertSpec {
        id: default_tmpl("{{ .Name }}:{{ .Group }}"),
        message: default_tmpl("{{ .ID }} is {{ .Level }}"),
        details: default_tmpl("{{ json . }}"),
        levels: [None, None, None, None],
        resets: [None, None, None, None],
        history: 21,
        flapping: None,
        state_changes_only: None,
        no_recoveries: false,
        all: false,
        level_tag: None,
        level_field: None,
        id_tag: None,
        id_field: None,
        message_field: None,
        duration_field: None,
        topic: None,
        category: None,
        inhibits: Vec::new(),
        quiet: false,
        handlers: Vec::new(),
    }
}

struct NoPoint;

impl lambda::Scope for NoPoint {
    fn lookup(&self, _name: &str) -> Option<Value> {
        None
    }
    fn time(&self) -> i64 {
        0
    }
}
