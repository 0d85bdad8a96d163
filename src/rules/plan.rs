//! The checked form of a rule: a tree of pipeline nodes with typed settings, ready for the engine
//! to instantiate. Produced by [`check`](super::check); nothing here refers to the syntax tree
//! except positions for messages.

use std::sync::Arc;

use super::ast::Pos;
use super::lambda::{Lambda, Value};
use super::template::Template;

/// A rule ready to run.
#[derive(Debug, Clone)]
pub struct TaskPlan {
    /// The rule's name (its file name without `.tick`).
    pub name: String,
    /// `dbrp` statements: the database/retention policy pairs the rule reads.
    pub dbrps: Vec<Dbrp>,
    /// All nodes; index 0 is the `stream` root.
    pub nodes: Vec<PlanNode>,
    /// The script it was compiled from.
    pub source: String,
}

impl TaskPlan {
    /// The `from()` nodes under the stream root.
    pub fn sources(&self) -> impl Iterator<Item = (usize, &FromSpec)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match &n.kind {
                NodeKind::From(f) => Some((i, f)),
                _ => None,
            })
    }
}

/// A database and retention policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dbrp {
    /// Database.
    pub db: String,
    /// Retention policy.
    pub rp: String,
}

/// Whether a node passes single points or windows of points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// Points one at a time.
    Stream,
    /// Batches (windows) of points with one time and group.
    Batch,
}

impl Edge {
    /// `stream` / `batch`.
    pub fn name(self) -> &'static str {
        match self {
            Edge::Stream => "stream",
            Edge::Batch => "batch",
        }
    }
}

/// One node of a pipeline.
#[derive(Debug, Clone)]
pub struct PlanNode {
    /// Kapacitor-style name: the node type and its index, e.g. `window2`.
    pub name: String,
    /// What the node does.
    pub kind: NodeKind,
    /// The node feeding this one (None for the root).
    pub parent: Option<usize>,
    /// Nodes fed by this one.
    pub children: Vec<usize>,
    /// What this node emits.
    pub provides: Edge,
    /// Where the node was created in the source.
    pub pos: Pos,
}

/// Node types and their settings.
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// The `stream` root.
    Stream,
    /// `from()`: selects points by database, retention policy, measurement and filter; groups them.
    From(FromSpec),
    /// `where(lambda)`: keeps points for which the lambda is true.
    Where(Lambda),
    /// `window()`: turns a stream into batches by time.
    Window(WindowSpec),
    /// `groupBy(...)`: regroups points.
    GroupBy(GroupSpec),
    /// Aggregates and transformations of one field (`mean`, `percentile`, `derivative`, ...).
    Aggregate(AggSpec),
    /// `eval(lambda...)`: computes new fields.
    Eval(EvalSpec),
    /// `default()`: fills missing fields and tags.
    Default(DefaultSpec),
    /// `delete()`: removes fields and tags.
    Delete(DeleteSpec),
    /// `shift(d)`: moves points in time.
    Shift(i64),
    /// `sample(n | d)`: keeps every n-th point or one point per duration.
    Sample(SampleSpec),
    /// `stateDuration(lambda)` / `stateCount(lambda)`.
    State(StateSpec),
    /// `deadman(threshold, interval)`: alerts when a group's throughput drops to the threshold.
    Deadman(Box<DeadmanSpec>),
    /// `log()`: writes the points it sees to the log.
    Log(LogSpec),
    /// `alert()`: the alert state machine.
    Alert(Box<AlertSpec>),
}

/// Settings of `from()`.
#[derive(Debug, Clone, Default)]
pub struct FromSpec {
    /// `.database()`; None reads every database (unless the task has `dbrp`).
    pub database: Option<String>,
    /// `.retentionPolicy()`.
    pub retention_policy: Option<String>,
    /// `.measurement()`; None reads every measurement.
    pub measurement: Option<String>,
    /// `.where()`.
    pub filter: Option<Lambda>,
    /// `.groupBy()` / `.groupByMeasurement()`.
    pub group: GroupSpec,
    /// `.truncate(d)`: point times are truncated to a multiple of d.
    pub truncate: i64,
    /// `.round(d)`: point times are rounded to a multiple of d.
    pub round: i64,
}

/// How points are grouped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupSpec {
    /// Tag names (sorted, deduplicated).
    pub tags: Vec<String>,
    /// `groupBy(*)`: every tag.
    pub all: bool,
    /// Include the measurement name in the group.
    pub by_measurement: bool,
    /// `.exclude(...)` with `*`.
    pub exclude: Vec<String>,
}

/// Settings of `window()`.
#[derive(Debug, Clone, Default)]
pub struct WindowSpec {
    /// `.period(d)`.
    pub period: i64,
    /// `.every(d)`.
    pub every: i64,
    /// `.align()`.
    pub align: bool,
    /// `.fillPeriod()`.
    pub fill_period: bool,
    /// `.periodCount(n)`.
    pub period_count: i64,
    /// `.everyCount(n)`.
    pub every_count: i64,
}

/// An aggregate or per-field transformation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggFunc {
    /// Arithmetic mean.
    Mean,
    /// Median.
    Median,
    /// Sum.
    Sum,
    /// Number of points.
    Count,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Earliest value.
    First,
    /// Latest value.
    Last,
    /// Max minus min.
    Spread,
    /// Sample standard deviation.
    Stddev,
    /// Nearest-rank percentile (0–100).
    Percentile(f64),
    /// One point per distinct value.
    Distinct,
    /// Most frequent value.
    Mode,
    /// Change from the previous value.
    Difference,
    /// Rate of change per `unit`.
    Derivative {
        /// Unit of the rate.
        unit: i64,
        /// Drop negative rates.
        non_negative: bool,
    },
    /// Mean of the last n values.
    MovingAverage(usize),
    /// Running sum.
    CumulativeSum,
}

impl AggFunc {
    /// True for the functions that reduce a batch to one value.
    pub fn is_reducer(&self) -> bool {
        !matches!(
            self,
            AggFunc::Distinct
                | AggFunc::Difference
                | AggFunc::Derivative { .. }
                | AggFunc::MovingAverage(_)
                | AggFunc::CumulativeSum
        )
    }
}

/// Settings of an aggregate node.
#[derive(Debug, Clone)]
pub struct AggSpec {
    /// The function.
    pub func: AggFunc,
    /// The field it reads.
    pub field: String,
    /// The field it writes (`.as()`; defaults to the function's name).
    pub as_name: String,
    /// `.usePointTimes()`: selectors keep the selected point's time.
    pub use_point_times: bool,
    /// alertd extension: further (field, output name) pairs of `derivative`, `difference`,
    /// `movingAverage` and `cumulativeSum` (Kapacitor takes one field).
    pub more: Vec<(String, String)>,
}

/// Settings of `eval()`.
#[derive(Debug, Clone)]
pub struct EvalSpec {
    /// The expressions, evaluated in order; later ones see earlier results.
    pub lambdas: Vec<Lambda>,
    /// Result names (`.as()`), one per expression.
    pub as_names: Vec<String>,
    /// `.keep()`: None drops the input fields; Some(empty) keeps all; Some(list) keeps those.
    pub keep: Option<Vec<String>>,
    /// `.tags(...)`: results stored as tags instead of fields.
    pub tags: Vec<String>,
    /// `.quiet()`: evaluation errors are counted but not logged.
    pub quiet: bool,
}

/// Settings of `default()`.
#[derive(Debug, Clone, Default)]
pub struct DefaultSpec {
    /// Fields set when missing.
    pub fields: Vec<(String, Value)>,
    /// Tags set when missing.
    pub tags: Vec<(String, String)>,
}

/// Settings of `delete()`.
#[derive(Debug, Clone, Default)]
pub struct DeleteSpec {
    /// Fields removed.
    pub fields: Vec<String>,
    /// Tags removed.
    pub tags: Vec<String>,
}

/// Settings of `sample()`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleSpec {
    /// Every n-th point of a group.
    Count(i64),
    /// The first point of each interval.
    Every(i64),
}

/// Settings of `stateDuration` and `stateCount`.
#[derive(Debug, Clone)]
pub struct StateSpec {
    /// True for `stateDuration`, false for `stateCount`.
    pub duration: bool,
    /// The condition.
    pub lambda: Lambda,
    /// Output field.
    pub as_name: String,
    /// Unit of `stateDuration`.
    pub unit: i64,
}

/// Settings of `deadman()`.
#[derive(Debug, Clone)]
pub struct DeadmanSpec {
    /// Points per interval at or below which the group is dead.
    pub threshold: f64,
    /// Measurement interval.
    pub interval: i64,
    /// Extra condition ANDed with the threshold test.
    pub extra: Option<Lambda>,
    /// The alert settings of the deadman's alert.
    pub alert: AlertSpec,
}

/// Settings of `log()`.
#[derive(Debug, Clone)]
pub struct LogSpec {
    /// `.level()`.
    pub level: String,
    /// `.prefix()`.
    pub prefix: String,
}

/// A template property with where it was written.
#[derive(Debug, Clone)]
pub struct Tmpl {
    /// The parsed template.
    pub template: Arc<Template>,
    /// Where the string literal starts.
    pub pos: Pos,
}

impl Tmpl {
    /// The template text.
    pub fn source(&self) -> &str {
        self.template.source()
    }
}

/// Alert levels, in increasing severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    /// No problem.
    #[default]
    Ok = 0,
    /// Informational.
    Info = 1,
    /// Warning.
    Warning = 2,
    /// Critical.
    Critical = 3,
}

impl Level {
    /// `OK`, `INFO`, `WARNING`, `CRITICAL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
        }
    }

    /// Parses the upper-case name.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "OK" => Level::Ok,
            "INFO" => Level::Info,
            "WARNING" => Level::Warning,
            "CRITICAL" => Level::Critical,
            _ => return None,
        })
    }

    /// From the numeric index 0–3.
    pub fn from_index(i: usize) -> Level {
        match i {
            1 => Level::Info,
            2 => Level::Warning,
            3 => Level::Critical,
            _ => Level::Ok,
        }
    }
}

/// Settings of `alert()`.
#[derive(Debug, Clone)]
pub struct AlertSpec {
    /// `.id()`.
    pub id: Tmpl,
    /// `.message()`.
    pub message: Tmpl,
    /// `.details()`.
    pub details: Tmpl,
    /// `.info()`, `.warn()`, `.crit()`, indexed by [`Level`] (index 0 unused).
    pub levels: [Option<Lambda>; 4],
    /// `.infoReset()`, `.warnReset()`, `.critReset()`, indexed by [`Level`].
    pub resets: [Option<Lambda>; 4],
    /// `.history(n)`: levels kept for flapping detection.
    pub history: usize,
    /// `.flapping(low, high)`.
    pub flapping: Option<(f64, f64)>,
    /// `.stateChangesOnly([d])`: Some(0) for changes only, Some(d) to repeat after d.
    pub state_changes_only: Option<i64>,
    /// `.noRecoveries()`.
    pub no_recoveries: bool,
    /// `.all()`: a batch alerts only if every point matches.
    pub all: bool,
    /// `.levelTag()`, `.levelField()`, `.idTag()`, `.idField()`, `.messageField()`, `.durationField()`.
    pub level_tag: Option<String>,
    /// See `level_tag`.
    pub level_field: Option<String>,
    /// See `level_tag`.
    pub id_tag: Option<String>,
    /// See `level_tag`.
    pub id_field: Option<String>,
    /// See `level_tag`.
    pub message_field: Option<String>,
    /// See `level_tag`.
    pub duration_field: Option<String>,
    /// `.topic()`.
    pub topic: Option<String>,
    /// `.category()`.
    pub category: Option<String>,
    /// `.inhibit(category, tags...)`.
    pub inhibits: Vec<(String, Vec<String>)>,
    /// `.quiet()`.
    pub quiet: bool,
    /// Handlers, in the order written.
    pub handlers: Vec<HandlerSpec>,
}

/// A handler attached to an alert (`.post()`, `.email()`, `.alerta()`, ...). alertd's receivers
/// deliver them; the engine only carries them with each event.
#[derive(Debug, Clone)]
pub struct HandlerSpec {
    /// `post`, `email`, `alerta`, `log`, `exec`, `tcp`.
    pub kind: String,
    /// Where the handler was written.
    pub pos: Pos,
    /// Constructor arguments, e.g. the URL of `.post(url)` or the addresses of `.email(...)`.
    pub args: Vec<HandlerValue>,
    /// Properties set on the handler, in order (a repeated property appears several times).
    pub props: Vec<(String, Vec<HandlerValue>)>,
}

impl HandlerSpec {
    /// The last value set for a property.
    pub fn prop(&self, name: &str) -> Option<&[HandlerValue]> {
        self.props
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// A handler argument.
#[derive(Debug, Clone)]
pub enum HandlerValue {
    /// A literal.
    Value(Value),
    /// A templated string.
    Template(Tmpl),
}
