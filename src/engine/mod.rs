//! The rules engine: runs every loaded rule over incoming points and collects alert events.
//!
//! [`Engine::process`] routes a parsed line only to the rules whose `from()` reads its
//! measurement (a hash map lookup; rules without a measurement see everything), then each rule
//! checks database and retention policy and pushes the point through its pipeline. Time is event
//! time: each rule's clock is the newest point time it has seen.

pub mod alert;
pub mod event;
pub mod line;
pub mod nodes;
pub mod point;
pub mod stats;
pub mod task;

use rustc_hash::{FxHashMap, FxHasher};
use smallvec::SmallVec;
use std::hash::Hasher;
use std::sync::Arc;

pub use event::AlertEvent;
pub use line::{FieldRef, LineView};
pub use stats::TaskStats;
pub use task::{Task, TaskConfig};

use crate::rules::plan::TaskPlan;

/// Identifies a series by its raw key without keeping or comparing the key: a fast hash to find
/// it, and a second, independent hash keyed with a random key drawn once per process to confirm
/// it. Clients cannot construct keys that collide in both, and the chance that two real keys
/// do is about 2^-128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesId {
    /// FxHash of the key (the hash-map key).
    pub hash: u64,
    /// Keyed SipHash of the key.
    pub check: u64,
}

/// The [`SeriesId`] of a raw series key.
pub fn series_id(key: &str) -> SeriesId {
    static KEYS: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    let mut h = FxHasher::default();
    h.write(key.as_bytes());
    SeriesId {
        hash: h.finish(),
        check: std::hash::BuildHasher::hash_one(KEYS.get_or_init(Default::default), key),
    }
}

/// The set of measurements some rule reads.
#[derive(Debug, Clone)]
pub struct MeasurementFilter {
    all: bool,
    names: rustc_hash::FxHashSet<Box<str>>,
}

impl MeasurementFilter {
    /// A filter that lets every measurement through.
    pub fn everything() -> MeasurementFilter {
        MeasurementFilter {
            all: true,
            names: Default::default(),
        }
    }

    /// The measurements any of `filters` lets through.
    pub fn union(filters: &[MeasurementFilter]) -> MeasurementFilter {
        MeasurementFilter {
            all: filters.iter().any(|f| f.all),
            names: filters
                .iter()
                .flat_map(|f| f.names.iter().cloned())
                .collect(),
        }
    }

    /// Does some rule read this measurement?
    pub fn wants(&self, measurement: &str) -> bool {
        self.all || self.names.contains(measurement)
    }
}

/// All rules, and the routing table from measurement to the rule sources that read it.
pub struct Engine {
    tasks: Vec<Task>,
    by_measurement: FxHashMap<Box<str>, SmallVec<[(u32, u32); 4]>>,
    any_measurement: Vec<(u32, u32)>,
}

impl Engine {
    /// Instantiates the rules.
    pub fn new(plans: Vec<Arc<TaskPlan>>, cfg: &TaskConfig) -> Engine {
        Engine::from_tasks(plans.into_iter().map(|p| Task::new(p, cfg)).collect())
    }

    /// Takes the running tasks out (to carry unchanged ones across a reload).
    pub fn into_tasks(self) -> Vec<Task> {
        self.tasks
    }

    /// Builds the routing table over already running tasks.
    pub fn from_tasks(tasks: Vec<Task>) -> Engine {
        let mut by_measurement: FxHashMap<Box<str>, SmallVec<[(u32, u32); 4]>> =
            FxHashMap::default();
        let mut any_measurement = Vec::new();
        for (ti, t) in tasks.iter().enumerate() {
            for s in 0..t.source_count() {
                let route = (ti as u32, s as u32);
                match t.source_measurement(s) {
                    Some(m) => by_measurement.entry(m.into()).or_default().push(route),
                    None => any_measurement.push(route),
                }
            }
        }
        Engine {
            tasks,
            by_measurement,
            any_measurement,
        }
    }

    /// The running rules.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Does any rule read this measurement? (Lets callers skip work for unread points.)
    pub fn wants(&self, measurement: &str) -> bool {
        !self.any_measurement.is_empty() || self.by_measurement.contains_key(measurement)
    }

    /// A copy of the routing table's keys that other threads can consult to drop points no rule
    /// reads before handing them to the engine.
    pub fn measurement_filter(&self) -> MeasurementFilter {
        MeasurementFilter {
            all: !self.any_measurement.is_empty(),
            names: self.by_measurement.keys().cloned().collect(),
        }
    }

    /// Feeds one point. `db`/`rp` of None match every rule (a recording that names no database).
    /// Returns how many rule sources took the point.
    pub fn process<L: LineView + ?Sized>(
        &mut self,
        db: Option<&str>,
        rp: Option<&str>,
        line: &L,
        time: i64,
    ) -> usize {
        let measurement = line.measurement();
        let routed = self
            .by_measurement
            .get(measurement)
            .map(|v| v.as_slice())
            .unwrap_or(&[]);
        if routed.is_empty() && self.any_measurement.is_empty() {
            return 0;
        }
        let id = line.series_id();
        let mut n = 0;
        for &(t, s) in routed.iter().chain(self.any_measurement.iter()) {
            let task = &mut self.tasks[t as usize];
            if task.source_matches(s as usize, db, rp, measurement) {
                task.ingest(s as usize, line, time, id);
                n += 1;
            }
        }
        n
    }

    /// Moves every rule's clock to at least `now` (deadman checks, group expiry).
    pub fn advance(&mut self, now: i64) {
        for t in &mut self.tasks {
            t.advance(now);
        }
    }

    /// Wall-clock housekeeping of a running service: every rule's clock moves to at least
    /// `now - grace` (deadman checks, group expiry) and windows of groups silent past their end
    /// plus `grace` are emitted.
    pub fn wall_tick(&mut self, now: i64, grace: i64) {
        for t in &mut self.tasks {
            t.advance(now.saturating_sub(grace));
            t.close_idle_windows(now.saturating_sub(grace));
        }
    }

    /// Emits every open window (end of a recording).
    pub fn flush(&mut self) {
        for t in &mut self.tasks {
            t.flush();
        }
    }

    /// Takes the events produced so far, rule by rule.
    pub fn drain_events(&mut self) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        for t in &mut self.tasks {
            t.drain_events_into(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::line_protocol::parse_line;
    use crate::rules::check::compile_source;

    #[test]
    fn a_window_holds_a_bounded_number_of_points() {
        let rule = "stream|from().measurement('m')|window().period(1h).every(1h)|count('v')|alert().crit(lambda: \"count\" > 0)";
        let plan = Arc::new(compile_source("w", rule).unwrap());
        let mut engine = Engine::new(vec![plan], &TaskConfig::default());
        let extra = 6;
        for t in 0..(nodes::MAX_WINDOW_POINTS + extra) as i64 {
            let line = format!("m v=1 {t}");
            engine.process(None, None, &parse_line(&line, 1).unwrap(), t);
        }
        assert_eq!(engine.tasks()[0].stats().window_overflow, extra as u64);
        engine.flush();
        let events = engine.drain_events();
        assert_eq!(
            events[0].data.points[0].1[0].1,
            crate::rules::lambda::Value::Int(nodes::MAX_WINDOW_POINTS as i64)
        );
    }

    #[test]
    fn integer_selectors_and_spread_are_exact() {
        let rule = "stream|from().measurement('m')|window().period(10s).every(10s)|max('v')|alert().crit(lambda: TRUE)";
        let plan = Arc::new(compile_source("w", rule).unwrap());
        let mut engine = Engine::new(vec![plan], &TaskConfig::default());
        for (t, v) in [
            (0, 9007199254740993i64),
            (1, 9007199254740992),
            (10_000_000_000, 1),
        ] {
            let line = format!("m v={v}i {t}");
            engine.process(None, None, &parse_line(&line, 1).unwrap(), t);
        }
        let events = engine.drain_events();
        assert_eq!(
            events[0].data.points[0].1[0].1,
            crate::rules::lambda::Value::Int(9007199254740993)
        );
    }
}
