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
mod series;
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

use crate::ingest::points::{LayoutIds, PointRef, Points};
use crate::rules::plan::TaskPlan;

/// Identifies a series by its raw key without keeping or comparing the key: a fast hash to find
/// it, and a second, independent hash keyed with a random key drawn once per process to confirm
/// it. Clients cannot construct keys that collide in both, and the chance that two real keys
/// do is about 2^-128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesId {
    /// FxHash of the key (what the series cache finds an entry by).
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

/// The hash that places a host's points on an engine shard ([`Partition`]); a point without
/// the host tag counts as the empty name.
pub fn host_hash(host: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(host.as_bytes());
    h.finish()
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

/// What [`Engine::forget_tagged`] dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forgotten {
    /// Live groups dropped, over every rule.
    pub groups: usize,
    /// `(rule, group id)` of every group dropped, live or only stored to resume, so its stored
    /// alert state can be deleted too.
    pub group_ids: Vec<(String, String)>,
}

impl Forgotten {
    /// Adds another shard's.
    pub fn merge(&mut self, other: Forgotten) {
        self.groups += other.groups;
        self.group_ids.extend(other.group_ids);
    }
}

/// How a rule that groups by the host tag is split over several engines: each runs its own
/// instance of the rule and takes the points of its share of the hosts, so every group (and all
/// its state) lives in exactly one engine.
#[derive(Debug, Clone)]
pub struct Partition {
    /// The tag naming hosts.
    pub tag: Box<str>,
    /// This engine's share, `0..count`.
    pub index: u64,
    /// Number of engines sharing the rules.
    pub count: u64,
}

impl Partition {
    /// The share of a host, from its [`host_hash`].
    pub fn share_of(&self, host_hash: u64) -> u64 {
        // The high bits of the product: FxHash's low bits are poorly mixed.
        ((u128::from(host_hash) * u128::from(self.count)) >> 64) as u64
    }

    fn owns<L: LineView + ?Sized>(&self, line: &L) -> bool {
        self.share_of(line.host_hash(&self.tag)) == self.index
    }

    /// Whether this engine evaluates the groups of a host.
    pub fn owns_host(&self, host: &str) -> bool {
        self.share_of(host_hash(host)) == self.index
    }
}

/// Whether every group of the rule has a single value of `tag`, so that its instances on
/// several engines, each fed the points of its own hosts, together do what one instance fed
/// every point does: one `from()`, grouped by `tag` (or by every tag without excluding it), no
/// later `groupBy` that drops it, no node that sets or deletes the tag (which a later grouping
/// could then mix across hosts), and no stateful function in the `from()` filter (whose state
/// spans groups).
pub fn splits_by_tag(plan: &TaskPlan, tag: &str) -> bool {
    use crate::rules::plan::NodeKind;
    let has = |g: &crate::rules::plan::GroupSpec| {
        (g.all && !g.exclude.iter().any(|e| e == tag)) || g.tags.iter().any(|t| t == tag)
    };
    let mut sources = plan.sources();
    let Some((_, from)) = sources.next() else {
        return false;
    };
    sources.next().is_none()
        && from.filter.as_ref().is_none_or(|f| !f.is_stateful())
        && plan.nodes.iter().all(|n| match &n.kind {
            NodeKind::From(f) => has(&f.group),
            NodeKind::GroupBy(g) => has(g),
            NodeKind::Eval(e) => !e.tags.iter().any(|t| t == tag),
            NodeKind::Default(d) => !d.tags.iter().any(|(t, _)| t == tag),
            NodeKind::Delete(d) => !d.tags.iter().any(|t| t == tag),
            NodeKind::Alert(a) => {
                a.level_tag.as_deref() != Some(tag) && a.id_tag.as_deref() != Some(tag)
            }
            _ => true,
        })
}

/// The value of `tag` in a group id (`host=a,path=/`, after `measurement\n` when grouped by
/// measurement), if the id has that dimension and it can be read back unambiguously.
pub fn group_id_value<'a>(id: &'a str, tag: &str) -> Option<&'a str> {
    let dims = id.rsplit_once('\n').map_or(id, |(_, d)| d);
    let mut found = None;
    for kv in dims.split(',') {
        match kv.split_once('=') {
            Some((k, v)) if k == tag => {
                if found.is_some() {
                    return None;
                }
                found = Some(v);
            }
            Some(_) => {}
            // A value holding ',' splits into pieces without '='.
            None => return None,
        }
    }
    found
}

/// Rule sources a point goes to: (task, source) indexes.
pub type Routes = SmallVec<[(u32, u32); 4]>;

/// All rules, and the routing table from measurement to the rule sources that read it.
pub struct Engine {
    tasks: Vec<Task>,
    by_measurement: FxHashMap<Box<str>, SmallVec<[(u32, u32); 4]>>,
    any_measurement: Vec<(u32, u32)>,
    /// This engine's share of the hosts, for the rules in `split`.
    partition: Option<Partition>,
    /// Per task: whether it runs on only this engine's share of the hosts.
    split: Vec<bool>,
    /// Each series' groups in every rule that reads it.
    series: series::SeriesCache,
    /// Per task: the number of its first source among all the engine's rule sources (the
    /// series cache's slot key is this plus the source index).
    source_base: Vec<u32>,
    /// The longest group expiry of the tasks: how long an idle series stays cached.
    series_age: i64,
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
            split: vec![false; tasks.len()],
            series_age: tasks.iter().map(Task::expiry).max().unwrap_or(0),
            source_base: tasks
                .iter()
                .scan(0u32, |next, t| {
                    let base = *next;
                    *next = next.saturating_add(t.source_count() as u32);
                    Some(base)
                })
                .collect(),
            series: series::SeriesCache::default(),
            tasks,
            by_measurement,
            any_measurement,
            partition: None,
        }
    }

    /// Makes the tasks for which `split` is true take only the points of this engine's share of
    /// the hosts (see [`Partition`]).
    pub fn split_by(&mut self, partition: Partition, split: Vec<bool>) {
        debug_assert_eq!(split.len(), self.tasks.len());
        self.split = split;
        self.partition = Some(partition);
    }

    /// The running rules.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
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
        let mut routes = Routes::new();
        self.routes(db, rp, line.measurement(), &mut routes);
        self.process_routed(&routes, line, time)
    }

    /// The rule sources that take points of this database, retention policy and measurement,
    /// appended to `out`: worked out once for the points of a batch that share them.
    pub fn routes(&self, db: Option<&str>, rp: Option<&str>, measurement: &str, out: &mut Routes) {
        let routed = self
            .by_measurement
            .get(measurement)
            .map(|v| v.as_slice())
            .unwrap_or(&[]);
        for &(t, s) in routed.iter().chain(self.any_measurement.iter()) {
            if self.tasks[t as usize].source_matches(s as usize, db, rp, measurement) {
                out.push((t, s));
            }
        }
    }

    /// Feeds one point to the rule sources `routes` (from [`Engine::routes`] for the point's
    /// database, retention policy and measurement). Returns how many took it.
    pub fn process_routed<L: LineView + ?Sized>(
        &mut self,
        routes: &[(u32, u32)],
        line: &L,
        time: i64,
    ) -> usize {
        if routes.is_empty() {
            return 0;
        }
        // Whether the point's host is this engine's, worked out only if a split rule reads it.
        let mine = match &self.partition {
            Some(p) if routes.iter().any(|&(t, _)| self.split[t as usize]) => p.owns(line),
            _ => true,
        };
        if !mine && routes.iter().all(|&(t, _)| self.split[t as usize]) {
            // Another engine evaluates the point, but it still moves this instance's clocks,
            // as it would move the clock of a rule running as one instance (deadman checks and
            // group expiry follow the newest point of any host).
            for &(t, _) in routes {
                self.tasks[t as usize].advance(time);
            }
            return 0;
        }
        let mut n = 0;
        // The series' entry, looked up once for every rule that takes the point.
        let slots = self.series.slots(line.series_id(), time);
        for &(t, s) in routes {
            if !mine && self.split[t as usize] {
                self.tasks[t as usize].advance(time);
                continue;
            }
            let memo = series::slot_of(slots, self.source_base[t as usize] + s);
            self.tasks[t as usize].ingest(s as usize, line, time, memo);
            n += 1;
        }
        if n > 0 {
            self.series.sweep(self.series_age);
        }
        n
    }

    /// The rule sources that take each measurement of a batch (in [`Points::measurements`]
    /// order, which points refer to), the batch's lines sharing its database and retention
    /// policy: the `routes` of [`Engine::process_points`], put in `out` (cleared first).
    pub fn batch_routes(
        &self,
        db: Option<&str>,
        rp: Option<&str>,
        points: &Points,
        out: &mut Vec<Routes>,
    ) {
        out.clear();
        for m in points.measurements() {
            let mut r = Routes::new();
            self.routes(db, rp, m, &mut r);
            out.push(r);
        }
    }

    /// Evaluates a batch of parsed points: point `i` goes to the rule sources `routes[m]`,
    /// `m` its measurement's index in the batch, its fields numbered by `layouts` (started on
    /// this batch). `ahead` lines before a line is evaluated, the state it will read is asked
    /// of memory ([`Engine::prefetch_routed`]; 0: never), so that the loads of several lines
    /// overlap instead of each stalling its own. Returns how many points some rule took.
    pub fn process_points(
        &mut self,
        points: &Points,
        routes: &[Routes],
        layouts: &LayoutIds,
        ahead: usize,
    ) -> u64 {
        let skip = |n: usize| if ahead == 0 { usize::MAX } else { n };
        // The rule sources that take a point, if any.
        let routed = |p: &PointRef<'_>| routes.get(p.measurement_index()).filter(|r| !r.is_empty());
        // The series' entry is asked for twice as far ahead: the state's addresses are read
        // from it.
        let mut entries = points.iter().skip(skip(ahead.saturating_mul(2)));
        let mut later = points.iter().skip(skip(ahead));
        let mut n = 0;
        for p in points.iter() {
            if let Some(a) = entries.next()
                && routed(&a).is_some()
            {
                self.series.prefetch(a.series_id());
            }
            if let Some(a) = later.next()
                && let Some(r) = routed(&a)
            {
                a.prefetch_fields();
                self.prefetch_routed(r, a.series_id());
            }
            let Some(r) = routed(&p) else {
                continue;
            };
            if self.process_routed(r, &layouts.point(p), p.time()) > 0 {
                n += 1;
            }
        }
        n
    }

    /// Starts loading what [`Engine::process_routed`] of a line of series `id` will read
    /// ([`Task::prefetch`]): call it a few lines ahead.
    #[inline]
    pub fn prefetch_routed(&self, routes: &[(u32, u32)], id: SeriesId) {
        let Some(slots) = self.series.peek(id) else {
            return;
        };
        for &(t, s) in routes {
            let source = self.source_base[t as usize] + s;
            if let Some(m) = slots.iter().find(|m| m.source == source) {
                self.tasks[t as usize].prefetch(s as usize, m);
            }
        }
    }

    /// How many series the engine has cached, and their approximate heap bytes.
    pub fn series_bytes(&self) -> (usize, usize) {
        (self.series.len(), self.series.heap_bytes())
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

    /// Drops, in every rule, every group whose group-by tags include `tag=value` with all its
    /// state ([`Task::forget_tagged`]): how a retired host stops alerting.
    pub fn forget_tagged(&mut self, tag: &str, value: &str) -> Forgotten {
        let mut f = Forgotten::default();
        for t in &mut self.tasks {
            let (n, ids) = t.forget_tagged(tag, value);
            f.groups += n;
            f.group_ids.extend(
                ids.into_iter()
                    .map(|id| (t.name().to_string(), id.to_string())),
            );
        }
        f
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
    use crate::ingest::points::LayoutIds;
    use crate::ingest::write::validate;
    use crate::rules::check::compile_source;

    #[test]
    fn a_window_holds_a_bounded_number_of_points() {
        // A window feeding a node that needs its points (here `where`) buffers them, up to
        // the bound; one feeding a reducer directly keeps running figures and counts them all.
        let extra = 6;
        for (pipeline, overflow, count) in [
            (
                "|where(lambda: TRUE)|count('v')",
                extra as u64,
                nodes::MAX_WINDOW_POINTS,
            ),
            ("|count('v')", 0, nodes::MAX_WINDOW_POINTS + extra),
        ] {
            let rule = format!(
                "stream|from().measurement('m')|window().period(1h).every(1h){pipeline}\
                 |alert().crit(lambda: \"count\" > 0)"
            );
            let plan = Arc::new(compile_source("w", &rule).unwrap());
            let mut engine = Engine::new(vec![plan], &TaskConfig::default());
            for t in 0..(nodes::MAX_WINDOW_POINTS + extra) as i64 {
                let line = format!("m v=1 {t}");
                engine.process(None, None, &parse_line(&line, 1).unwrap(), t);
            }
            assert_eq!(
                engine.tasks()[0].stats().window_overflow,
                overflow,
                "{rule}"
            );
            engine.flush();
            let events = engine.drain_events();
            assert_eq!(
                events[0].data.points[0].1[0].1,
                crate::rules::lambda::Value::Int(count as i64),
                "{rule}"
            );
        }
    }

    /// Runs `rule` over `lines` (line protocol with times), closing idle windows by the wall
    /// clock at the given steps and retiring a host every 400 lines, then flushing: the
    /// events' (id, time, level, name, tags, points) and the missing-field and type-error
    /// counters.
    fn replay(
        rule: &str,
        lines: &[(String, i64)],
        ticks: &[(usize, i64)],
    ) -> (Vec<String>, u64, u64, usize) {
        let plan = Arc::new(compile_source("r", rule).unwrap());
        let mut engine = Engine::new(vec![plan], &TaskConfig::default());
        let mut events = Vec::new();
        for (i, (line, t)) in lines.iter().enumerate() {
            for &(_, now) in ticks.iter().filter(|(at, _)| *at == i) {
                engine.wall_tick(now, 0);
            }
            // Now and then a host is retired: its open windows go without being reduced.
            if i > 0 && i % 400 == 0 {
                engine.forget_tagged("host", ["a", "b", "c"][i / 400 % 3]);
            }
            engine.process(None, None, &parse_line(line, 1).unwrap(), *t);
            events.extend(engine.drain_events());
        }
        engine.flush();
        events.extend(engine.drain_events());
        let shown = events
            .iter()
            .map(|e| {
                format!(
                    "{} {} {:?} {} {:?} {:?}",
                    e.id, e.time, e.level, e.data.name, e.data.tags, e.data.points
                )
            })
            .collect();
        let stats = engine.tasks()[0].stats();
        let fused = engine.tasks()[0].fused_windows();
        (shown, stats.missing_field, stats.type_error, fused)
    }

    #[test]
    fn a_window_fused_with_its_reducer_emits_what_the_pair_would() {
        // Random points of three hosts: mostly increasing times with some late ones; floats,
        // integers, points without the field and a few strings from host a, a few distinct
        // values (ties) from host b, integers alone from host c. Every window shape and
        // reducer that fuses is run as is and with a `where` between window and reducer
        // (which keeps them apart), and both must give the same events and counters.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let s = 1_000_000_000i64;
        let mut lines = Vec::new();
        let mut ticks = Vec::new();
        let mut clock = 1_000 * s;
        for i in 0..3000 {
            let host = ["a", "b", "c"][(next() % 3) as usize];
            clock += (next() % 3000) as i64 * 1_000_000;
            let t = if next() % 10 == 0 {
                clock - (next() % 25_000) as i64 * 1_000_000
            } else {
                clock
            };
            let field = match next() % 100 {
                0..=84 if host == "c" => format!("v={}i", next() % 5),
                85..=100 if host == "c" => "w=1".to_string(),
                0..=64 if host == "b" => format!("v={}", (next() % 4) as f64 / 2.0),
                65..=84 if host == "b" => format!("v={}i", next() % 3),
                0..=64 => format!("v={}", (next() % 20_000) as f64 / 100.0 - 50.0),
                65..=84 => format!("v={}i", (next() % 200) as i64 - 100),
                85..=97 => "w=1".to_string(),
                _ => "v=\"x\"".to_string(),
            };
            lines.push((format!("m,host={host} {field} {t}"), t));
            if next() % 200 == 0 {
                // Far enough ahead that some groups' windows are idle past their end.
                ticks.push((i, clock + (next() % 20_000) as i64 * 1_000_000));
            }
        }
        // Only a string now and then: most windows make a value, some a type error.
        let windows = [
            ".period(10s).every(10s)",
            ".period(5s).every(10s)",
            ".period(10s).every(10s).align()",
            ".period(10s).every(10s).fillPeriod()",
            ".period(4s).every(10s).align()",
            ".period(30s).every(10s)",
            ".period(25s).every(10s).align()",
            ".period(30s).every(10s).fillPeriod()",
        ];
        let reducers = [
            "mean('v')",
            "sum('v')",
            "count('v')",
            "min('v')",
            "max('v')",
            "first('v')",
            "last('v')",
            "min('v').usePointTimes()",
            "max('v').usePointTimes()",
            "first('v').usePointTimes()",
            "last('v').usePointTimes()",
            "median('v')",
            "spread('v')",
            "stddev('v')",
            "percentile('v', 90.0).usePointTimes()",
            "mode('v')",
        ];
        for w in windows {
            for r in reducers {
                let rule = |between: &str| {
                    format!(
                        "stream|from().measurement('m').groupBy('host')|window(){w}{between}|{r}\
                         |alert().crit(lambda: TRUE)"
                    )
                };
                let (fused, missing, type_errors, n) = replay(&rule(""), &lines, &ticks);
                let (apart, missing_apart, type_errors_apart, n_apart) =
                    replay(&rule("|where(lambda: TRUE)"), &lines, &ticks);
                assert_eq!((n, n_apart), (1, 0), "{w} {r}");
                assert!(fused.len() > 100, "{w} {r}: {} events", fused.len());
                assert_eq!(fused.len(), apart.len(), "{w} {r}");
                for (a, b) in fused.iter().zip(&apart) {
                    assert_eq!(a, b, "{w} {r}");
                }
                assert_eq!(
                    (missing, type_errors),
                    (missing_apart, type_errors_apart),
                    "{w} {r}"
                );
                assert!(missing > 0, "{w} {r}");
                let numeric = [
                    "mean",
                    "sum",
                    "min",
                    "max",
                    "median",
                    "spread",
                    "stddev",
                    "percentile",
                ]
                .iter()
                .any(|f| r.starts_with(f));
                assert_eq!(
                    type_errors > 0,
                    numeric,
                    "{w} {r}: {type_errors} type errors"
                );
            }
        }
    }

    /// The benchmark rules over a fleet, point by point and through `process_points` with
    /// several look-aheads, whole and split over two engines by host: the same events and
    /// counters (loading ahead is a hint to the CPU and must change nothing).
    #[test]
    fn loading_state_ahead_changes_no_result() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/rules20");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "tick"))
            .collect();
        files.sort();
        let plans: Vec<_> = files
            .iter()
            .map(|f| Arc::new(crate::rules::load_file(f).unwrap()))
            .collect();
        // 40 hosts, 10 s apart for 5 minutes; values swing so that alerts fire and recover.
        let mut bodies = Vec::new();
        let mut x: u64 = 7;
        for step in 0..30i64 {
            let t = 1_700_000_000_000_000_000 + step * 10_000_000_000;
            let mut body = String::new();
            for h in 0..40 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = (x >> 33) % 100;
                body += &format!(
                    "cpu,cpu=cpu-total,host=h{h} usage_idle={},usage_iowait={v},usage_steal=1 {t}\n\
                     disk,host=h{h},path=/ used_percent={v},inodes_used={v}i,inodes_total=100i,free={}i {t}\n\
                     mem,host=h{h} available_percent={},used_percent={v} {t}\n\
                     system,host=h{h} load1={},load5=1,load15=1,n_cpus=4i {t}\n",
                    100 - v,
                    v * 1_000_000_000,
                    100 - v,
                    v / 10,
                );
            }
            bodies.push(body);
        }
        // `ahead`: None evaluates point by point, as the engine threads did before.
        let run = |ahead: Option<usize>, share: Option<u64>| {
            let mut engine = Engine::new(plans.clone(), &TaskConfig::default());
            if let Some(index) = share {
                let split = vec![true; plans.len()];
                engine.split_by(
                    Partition {
                        tag: "host".into(),
                        index,
                        count: 2,
                    },
                    split,
                );
            }
            let mut layouts = LayoutIds::default();
            let mut events = Vec::new();
            let mut taken = 0;
            for body in &bodies {
                let b = batch_of(&engine, body);
                let mut routes = Vec::new();
                engine.batch_routes(Some(&b.db), Some(&b.rp), &b.lines, &mut routes);
                layouts.start_batch(&b.lines);
                match ahead {
                    Some(ahead) => {
                        taken += engine.process_points(&b.lines, &routes, &layouts, ahead)
                    }
                    None => {
                        for p in b.lines.iter() {
                            let r = &routes[p.measurement_index()];
                            if engine.process_routed(r, &layouts.point(p), p.time()) > 0 {
                                taken += 1;
                            }
                        }
                    }
                }
                events.extend(engine.drain_events().iter().map(|e| format!("{e:?}")));
            }
            engine.flush();
            events.extend(engine.drain_events().iter().map(|e| format!("{e:?}")));
            let stats: Vec<_> = engine.tasks().iter().map(|t| t.stats().clone()).collect();
            (taken, events, stats)
        };
        let (taken, events, stats) = run(None, None);
        assert_eq!(taken, 30 * 40 * 4);
        assert!(events.len() > 100, "{} events", events.len());
        // Batches are 160 lines: 100 lines ahead asks for state but never for an entry.
        for ahead in [0, 1, 3, 16, 32, 100] {
            let r = run(Some(ahead), None);
            assert_eq!(r, (taken, events.clone(), stats.clone()), "ahead {ahead}");
        }
        for share in [0, 1] {
            let (taken, events, stats) = run(None, Some(share));
            assert!(taken > 0 && taken < 30 * 40 * 4, "{taken}");
            for ahead in [0, 16] {
                let r = run(Some(ahead), Some(share));
                assert_eq!(r, (taken, events.clone(), stats.clone()), "share {share}");
            }
        }
    }

    /// A body of line protocol validated as the write handler does, into database `db`,
    /// retention policy `rp`.
    fn batch_of(engine: &Engine, body: &str) -> crate::ingest::write::WriteBatch {
        validate(
            bytes::Bytes::from(body.to_string()),
            "db".into(),
            "rp".into(),
            crate::ingest::line_protocol::Precision::Nanoseconds,
            0,
            &engine.measurement_filter(),
            "host",
        )
        .batch
    }

    /// Feeds a body of line protocol the way the service does: validated into a batch, field
    /// layouts numbered by `layouts`, each point routed. Returns how many points some rule took.
    fn feed_batch(engine: &mut Engine, layouts: &mut LayoutIds, body: &str) -> usize {
        let b = batch_of(engine, body);
        layouts.start_batch(&b.lines);
        let mut n = 0;
        for p in b.lines.iter() {
            let mut routes = Routes::new();
            engine.routes(Some(&b.db), Some(&b.rp), p.measurement(), &mut routes);
            n += engine.process_routed(&routes, &layouts.point(p), p.time());
        }
        n
    }

    #[test]
    fn a_filter_over_tags_is_remembered_per_series_and_field_layout() {
        let rule = "stream|from().measurement('cpu').where(lambda: \"cpu\" == 'cpu-total')\
                    .groupBy('host')|alert().crit(lambda: TRUE)";
        let plan = Arc::new(compile_source("f", rule).unwrap());
        let mut engine = Engine::new(vec![plan], &TaskConfig::default());
        let mut layouts = LayoutIds::default();
        let body = "cpu,cpu=cpu-total,host=a idle=1 1000\ncpu,cpu=cpu0,host=a idle=1 1000\n";
        assert_eq!(feed_batch(&mut engine, &mut layouts, body), 2);
        assert_eq!(engine.tasks()[0].stats().points_matched, 1);
        // The same series again: the remembered answers give the same result.
        let body = "cpu,cpu=cpu-total,host=a idle=2 2000\ncpu,cpu=cpu0,host=a idle=2 2000\n";
        feed_batch(&mut engine, &mut layouts, body);
        assert_eq!(engine.tasks()[0].stats().points_matched, 2);
        // A line of the same series with a field named like the tag: the field is what the
        // filter reads (fields first), so the answer remembered for the tag does not apply.
        let body = "cpu,cpu=cpu-total,host=a idle=3,cpu=\"cpu0\" 3000\n\
                    cpu,cpu=cpu0,host=a idle=3,cpu=\"cpu-total\" 3000\n";
        feed_batch(&mut engine, &mut layouts, body);
        assert_eq!(engine.tasks()[0].stats().points_matched, 3);
        let body = "cpu,cpu=cpu-total,host=a idle=4 4000\n";
        feed_batch(&mut engine, &mut layouts, body);
        assert_eq!(engine.tasks()[0].stats().points_matched, 4);
        assert_eq!(engine.series_bytes().0, 2);
    }

    #[test]
    fn a_filter_that_reads_the_time_is_evaluated_for_every_point() {
        let rule = "stream|from().measurement('m').where(lambda: \"k\" == 'x' AND \
                    unixNano(now()) > 1500)|alert().crit(lambda: TRUE)";
        let plan = Arc::new(compile_source("f", rule).unwrap());
        let mut engine = Engine::new(vec![plan], &TaskConfig::default());
        let mut layouts = LayoutIds::default();
        feed_batch(&mut engine, &mut layouts, "m,k=x v=1 1000\n");
        assert_eq!(engine.tasks()[0].stats().points_matched, 0);
        feed_batch(&mut engine, &mut layouts, "m,k=x v=1 2000\n");
        assert_eq!(engine.tasks()[0].stats().points_matched, 1);
    }

    #[test]
    fn is_present_sees_a_field_that_no_later_node_reads() {
        // Only `v` is read after the filter, yet `x` must reach the filter so that isPresent
        // can see it.
        let rule = "stream|from().measurement('m').where(lambda: isPresent(\"x\"))\
                    |window().period(10s).every(10s)|count('v')|alert().crit(lambda: TRUE)";
        let plan = Arc::new(compile_source("p", rule).unwrap());
        let mut engine = Engine::new(vec![plan], &TaskConfig::default());
        let mut layouts = LayoutIds::default();
        feed_batch(
            &mut engine,
            &mut layouts,
            "m,host=a v=1,x=1 1000\nm,host=a v=2 2000\nm,host=a v=3,x=0 3000\n",
        );
        assert_eq!(engine.tasks()[0].stats().points_matched, 2);
        engine.flush();
        let events = engine.drain_events();
        assert_eq!(
            events[0].data.points[0].1[0].1,
            crate::rules::lambda::Value::Int(2)
        );
    }

    const S: i64 = 1_000_000_000;

    fn feed(engine: &mut Engine, line: &str, t: i64) {
        let line = format!("{line} {t}");
        engine.process(None, None, &parse_line(&line, 1).unwrap(), t);
    }

    /// (alert id, level) of the events so far.
    fn fired(engine: &mut Engine) -> Vec<(String, &'static str)> {
        engine
            .drain_events()
            .iter()
            .map(|e| (e.id.clone(), e.level.as_str()))
            .collect()
    }

    const DEADMAN: &str = "stream|from().measurement('hb').groupBy('host')|deadman(0.0, 1s).id('dead/{{ index .Tags \"host\" }}')";

    #[test]
    fn forgetting_a_host_stops_its_deadman_and_it_comes_back_new() {
        let plan = Arc::new(compile_source("dead", DEADMAN).unwrap());
        let mut engine = Engine::new(vec![plan], &TaskConfig::default());
        feed(&mut engine, "hb,host=a up=1i", S / 2);
        feed(&mut engine, "hb,host=b up=1i", S / 2);
        engine.advance(3 * S);
        let before = fired(&mut engine);
        assert!(
            before.contains(&("dead/a".into(), "CRITICAL")),
            "{before:?}"
        );
        assert!(
            before.contains(&("dead/b".into(), "CRITICAL")),
            "{before:?}"
        );

        let f = engine.forget_tagged("host", "a");
        assert_eq!(f.groups, 1);
        assert_eq!(f.group_ids, [("dead".to_string(), "host=a".to_string())]);
        assert_eq!(engine.tasks()[0].groups(), 1);
        // Only b's deadman goes on firing; a's is gone with its group.
        engine.advance(6 * S);
        let after = fired(&mut engine);
        assert!(!after.is_empty());
        assert!(after.iter().all(|(id, _)| id == "dead/b"), "{after:?}");
        // Forgetting again finds nothing.
        assert_eq!(engine.forget_tagged("host", "a"), Forgotten::default());

        // a comes back: a new group at OK, so no recovery event; silent again, it fires anew.
        feed(&mut engine, "hb,host=a up=1i", 6 * S + S / 2);
        engine.advance(7 * S);
        assert!(
            !fired(&mut engine).iter().any(|(id, _)| id == "dead/a"),
            "a new host starts at OK"
        );
        engine.advance(9 * S);
        let events = engine.drain_events();
        let a = events.iter().find(|e| e.id == "dead/a").unwrap();
        assert_eq!(
            (a.level.as_str(), a.previous_level.as_str()),
            ("CRITICAL", "OK")
        );
    }

    #[test]
    fn forgetting_a_host_drops_its_window_and_its_stored_alert_state() {
        let rule = "stream|from().measurement('m').groupBy('host', 'path')|window().period(10s).every(10s)|count('v')|alert().id('w/{{ index .Tags \"host\" }}').crit(lambda: \"count\" > 0)";
        let plan = Arc::new(compile_source("w", rule).unwrap());
        let mut engine = Engine::new(vec![plan], &TaskConfig::default());
        for host in ["a", "b"] {
            feed(&mut engine, &format!("m,host={host},path=/ v=1i"), S);
            feed(&mut engine, &format!("m,host={host},path=/var v=1i"), S);
        }
        let f = engine.forget_tagged("host", "a");
        assert_eq!(f.groups, 2, "{f:?}");
        engine.flush();
        let ids: Vec<_> = fired(&mut engine).into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["w/b", "w/b"]);

        // A stored CRITICAL state waiting for a's group to resume is forgotten too.
        let plan = Arc::new(compile_source("dead", DEADMAN).unwrap());
        let mut old = Engine::new(vec![plan.clone()], &TaskConfig::default());
        feed(&mut old, "hb,host=a up=1i", S / 2);
        old.advance(3 * S);
        let states = old.tasks()[0].alert_states();
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].2.level.as_str(), "CRITICAL");
        let restart = |forget: bool| {
            let mut t = Task::new(plan.clone(), &TaskConfig::default());
            t.restore(states.clone());
            let mut e = Engine::from_tasks(vec![t]);
            if forget {
                let f = e.forget_tagged("host", "a");
                assert_eq!(f.groups, 0);
                assert_eq!(f.group_ids, [("dead".to_string(), "host=a".to_string())]);
            }
            feed(&mut e, "hb,host=a up=1i", 10 * S);
            feed(&mut e, "hb,host=a up=1i", 11 * S);
            e.advance(12 * S);
            fired(&mut e)
        };
        // Resumed, a's next interval with points is a recovery; forgotten, a is new and OK.
        assert_eq!(restart(false), [("dead/a".to_string(), "OK")]);
        assert_eq!(restart(true), []);
    }

    #[test]
    fn rules_grouped_by_host_split_over_engines() {
        let splits = |body: &str| {
            let rule = format!("stream|from().measurement('m'){body}|alert().crit(lambda: TRUE)");
            splits_by_tag(&compile_source("r", &rule).unwrap(), "host")
        };
        assert!(splits(".groupBy('host')"));
        assert!(splits(".groupBy('host', 'path')"));
        assert!(splits(".groupBy(*)"));
        assert!(splits(".groupBy('host')|groupBy('host', 'cpu')"));
        assert!(splits(
            ".groupBy('host').where(lambda: \"cpu\" == 'cpu-total')"
        ));
        // Groups that span hosts, and a filter whose state spans groups, stay on one engine.
        assert!(!splits(""));
        assert!(!splits(".groupBy('path')"));
        assert!(!splits(".groupBy('host')|groupBy(*).exclude('host')"));
        assert!(!splits(".groupBy('host')|groupBy('dc')"));
        assert!(!splits(
            ".groupBy('host').where(lambda: sigma(\"v\") > 3.0)"
        ));
        // Nodes that rewrite the host tag could let a later grouping mix hosts.
        assert!(!splits(".groupBy('host')|delete().tag('host')"));
        assert!(!splits(".groupBy('host')|default().tag('host', 'x')"));
        assert!(!splits(
            ".groupBy('host')|eval(lambda: \"v\").as('host').tags('host')"
        ));
        assert!(splits(".groupBy('host')|delete().tag('cpu')"));
    }

    #[test]
    fn host_of_a_group_id() {
        assert_eq!(group_id_value("host=a,path=/", "host"), Some("a"));
        assert_eq!(group_id_value("cpu\nhost=a", "host"), Some("a"));
        assert_eq!(group_id_value("path=/", "host"), None);
        assert_eq!(group_id_value("nil", "host"), None);
        // A value holding ',' cannot be read back.
        assert_eq!(group_id_value("host=a,b,path=/", "host"), None);
    }

    #[test]
    fn a_split_rule_keeps_time_with_every_host() {
        // Each instance's clock follows the newest point of any host, as one instance's does,
        // so deadman checks and expiry run at the same times on both.
        let plan = Arc::new(compile_source("dead", DEADMAN).unwrap());
        let part = |index| Partition {
            tag: "host".into(),
            index,
            count: 2,
        };
        let mine = (0..100)
            .map(|i| format!("h{i}"))
            .find(|h| part(0).owns_host(h))
            .unwrap();
        let theirs = (0..100)
            .map(|i| format!("h{i}"))
            .find(|h| !part(0).owns_host(h))
            .unwrap();
        let mut e = Engine::new(vec![plan], &TaskConfig::default());
        e.split_by(part(0), vec![true]);
        feed(&mut e, &format!("hb,host={mine} up=1i"), S);
        feed(&mut e, &format!("hb,host={theirs} up=1i"), 5 * S);
        assert_eq!(e.tasks()[0].clock(), 5 * S);
        assert_eq!(e.tasks()[0].groups(), 1, "only its own host's group");
        // The silent own host is found dead by the other host's later points alone.
        feed(&mut e, &format!("hb,host={theirs} up=1i"), 9 * S);
        let fired = fired(&mut e);
        assert!(
            fired.contains(&(format!("dead/{mine}"), "CRITICAL")),
            "{fired:?}"
        );
        assert!(fired.iter().all(|(id, _)| *id != format!("dead/{theirs}")));
    }

    #[test]
    fn two_engines_with_a_share_of_the_hosts_each_fire_as_one_engine() {
        let rule = "stream|from().measurement('m').groupBy('host')|window().period(10s).every(10s)|mean('v').as('v')|alert().id('{{ index .Tags \"host\" }}').warn(lambda: \"v\" > 5.0).crit(lambda: \"v\" > 8.0)";
        let plan = Arc::new(compile_source("w", rule).unwrap());
        let lines: Vec<(String, i64)> = (0..60i64)
            .flat_map(|t| {
                (0..40).map(move |h| {
                    (
                        format!("m,host=h{h} v={} {}", (t / 10 * 3 + h) % 10, t * S),
                        t * S,
                    )
                })
            })
            .collect();
        let run = |engine: &mut Engine| {
            for (l, t) in &lines {
                engine.process(None, None, &parse_line(l, 1).unwrap(), *t);
            }
            engine.flush();
            let mut ev: Vec<_> = engine
                .drain_events()
                .iter()
                .map(|e| (e.id.clone(), e.level.as_str(), e.time))
                .collect();
            ev.sort();
            ev
        };
        let mut one = Engine::new(vec![plan.clone()], &TaskConfig::default());
        let all = run(&mut one);
        assert!(all.len() > 40, "{}", all.len());
        let mut shares = Vec::new();
        let mut groups = 0;
        for index in 0..2 {
            let mut e = Engine::new(vec![plan.clone()], &TaskConfig::default());
            e.split_by(
                Partition {
                    tag: "host".into(),
                    index,
                    count: 2,
                },
                vec![true],
            );
            shares.extend(run(&mut e));
            groups += e.tasks()[0].groups();
            assert!(e.tasks()[0].groups() > 5, "each engine has a fair share");
        }
        shares.sort();
        assert_eq!(shares, all);
        assert_eq!(groups, one.tasks()[0].groups());
    }

    #[test]
    fn group_ids_are_matched_by_whole_dimension() {
        assert!(task::group_id_has("host=a,path=/", "host", "a"));
        assert!(task::group_id_has("cpu\nhost=a", "host", "a"));
        assert!(!task::group_id_has("host=ab", "host", "a"));
        assert!(!task::group_id_has("xhost=a", "host", "a"));
        assert!(!task::group_id_has("nil", "host", "a"));
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
