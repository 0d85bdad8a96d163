//! One running rule: its group table, its `from()` sources, and the dispatch of points and
//! batches through its nodes.
//!
//! The per-point path: a source checks the filter on the borrowed line, takes the series'
//! group from what it remembered in the engine's series cache (so the group is computed once
//! per series, not per point), copies only the fields the pipeline needs, and pushes the point
//! down.

use rustc_hash::FxHashMap;
use std::sync::Arc;

use super::alert::{AlertRt, DeadmanRt};
use super::event::AlertEvent;
use super::line::{FieldRef, LineView};
use super::nodes::{self, RNode};
use super::point::*;
use super::stats::TaskStats;
use crate::ingest::line_protocol::FieldValue;
use crate::rules::lambda::{LambdaState, Scope, Value};
use crate::rules::plan::{AggFunc, Edge, FromSpec, GroupSpec, NodeKind, TaskPlan};

/// Settings that apply to every task of an engine.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    /// A group that has seen no point for this long (event time) is dropped with all its state.
    pub group_expiry: i64,
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            group_expiry: 15 * 60 * 1_000_000_000,
        }
    }
}

/// A group of points that share the group-by tag values.
#[derive(Debug)]
pub(crate) struct GroupEntry {
    /// Kapacitor's group id (`host=a,path=/`), or `nil` when ungrouped.
    pub id: Arc<str>,
    /// The group-by tags.
    pub tags: Tags,
    /// The measurement of the group's first point.
    pub name: Name,
    key: Arc<str>,
}

/// A group slot's generation (bumped when the group is removed, so that what was remembered
/// of the old group is recognised as stale) and the event time of the group's latest point.
#[derive(Debug, Clone, Copy)]
struct GroupMeta {
    seen: i64,
    generation: u32,
}

/// All groups of a task, in a slab indexed by [`GroupId`].
#[derive(Debug, Default)]
pub(crate) struct GroupTable {
    entries: Vec<Option<GroupEntry>>,
    /// What every point reads and writes of its group, apart from the entries and together,
    /// so that it touches 16 dense bytes rather than the entry.
    meta: Vec<GroupMeta>,
    by_key: FxHashMap<Arc<str>, GroupId>,
    free: Vec<GroupId>,
}

impl GroupTable {
    pub fn get(&self, g: GroupId) -> Option<&GroupEntry> {
        self.entries.get(g as usize).and_then(Option::as_ref)
    }

    /// Starts loading a group's generation and last-seen time ([`prefetch`]).
    #[inline]
    fn prefetch(&self, g: GroupId) {
        if let Some(m) = self.meta.get(g as usize) {
            prefetch(m);
        }
    }

    fn generation(&self, g: GroupId) -> u32 {
        self.meta.get(g as usize).map_or(0, |m| m.generation)
    }

    fn touch(&mut self, g: GroupId, t: i64) {
        if let Some(m) = self.meta.get_mut(g as usize)
            && t > m.seen
        {
            m.seen = t;
        }
    }

    /// Event time of the group's latest point.
    pub fn last_seen(&self, g: GroupId) -> i64 {
        self.meta.get(g as usize).map_or(i64::MIN, |m| m.seen)
    }

    /// Finds or creates the group for a key.
    fn intern(
        &mut self,
        key: &str,
        make: impl FnOnce() -> (Arc<str>, Tags, Name),
        t: i64,
    ) -> (GroupId, bool) {
        if let Some(&g) = self.by_key.get(key) {
            return (g, false);
        }
        let (id, tags, name) = make();
        // The key is the id string for ungrouped-by-measurement groups: share it.
        let key: Arc<str> = if &*id == key { id.clone() } else { key.into() };
        let entry = GroupEntry {
            id,
            tags,
            name,
            key: key.clone(),
        };
        let g = match self.free.pop() {
            Some(g) => {
                self.entries[g as usize] = Some(entry);
                self.meta[g as usize].seen = t;
                g
            }
            None => {
                self.entries.push(Some(entry));
                self.meta.push(GroupMeta {
                    seen: t,
                    generation: 0,
                });
                (self.entries.len() - 1) as GroupId
            }
        };
        self.by_key.insert(key, g);
        (g, true)
    }

    fn remove(&mut self, g: GroupId) {
        if let Some(e) = self.entries.get_mut(g as usize).and_then(Option::take) {
            self.by_key.remove(&e.key);
            let m = &mut self.meta[g as usize];
            m.generation = m.generation.wrapping_add(1);
            self.free.push(g);
        }
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Groups whose group-by tags include `tag=value`.
    fn tagged(&self, tag: &str, value: &str) -> Vec<GroupId> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                e.as_ref()
                    .filter(|e| e.tags.get(tag).is_some_and(|v| &**v == value))
                    .map(|_| i as GroupId)
            })
            .collect()
    }

    fn idle_before(&self, cutoff: i64) -> Vec<GroupId> {
        self.entries
            .iter()
            .enumerate()
            .zip(&self.meta)
            .filter_map(|((i, e), m)| (e.is_some() && m.seen < cutoff).then_some(i as GroupId))
            .collect()
    }

    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Option<GroupEntry>>()
            + self.meta.capacity() * std::mem::size_of::<GroupMeta>()
            + self.by_key.capacity() * (std::mem::size_of::<(Arc<str>, GroupId)>() + 1)
            + self
                .entries
                .iter()
                .flatten()
                .map(|e| e.id.len() + e.key.len() + 32 + e.tags.heap_bytes() + 16)
                .sum::<usize>()
    }
}

/// Shared state the nodes of a task use while processing.
pub(crate) struct Ctx {
    pub task: Arc<str>,
    pub groups: GroupTable,
    pub names: NameCache,
    pub stats: TaskStats,
    pub events: Vec<AlertEvent>,
    pub clock: i64,
    /// Alert states to resume from, by (alert node, group id), taken when the group appears.
    pub restored: FxHashMap<(Arc<str>, Arc<str>), Restored>,
}

/// The state an alert resumes from after a restart or a rule change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Restored {
    /// Level of its last event.
    pub level: crate::rules::plan::Level,
    /// When it left OK (Unix ns).
    pub first_triggered: i64,
    /// Time of its last event (Unix ns).
    pub last_event: i64,
}

impl Ctx {
    pub fn group_id(&self, g: GroupId) -> Arc<str> {
        self.groups
            .get(g)
            .map_or_else(|| Arc::from("nil"), |e| e.id.clone())
    }

    pub fn group_tags(&self, g: GroupId) -> Tags {
        self.groups
            .get(g)
            .map_or_else(Tags::default, |e| e.tags.clone())
    }

    /// Finds or creates the group of `tags` under `spec` (used by `groupBy` nodes).
    pub fn regroup(&mut self, spec: &GroupSpec, name: &Name, tags: &TagSet, t: i64) -> GroupId {
        let dims: Vec<(Name, Arc<str>)> = group_dims(
            spec,
            tags.0.iter().map(|(k, v)| (&**k, &**v)),
            &mut self.names,
        );
        let key = group_key(spec, name, &dims);
        let name = name.clone();
        let (g, _) = self.groups.intern(
            &key,
            || {
                (
                    group_id_string(spec, &name, &dims),
                    Arc::new(TagSet(dims.clone())),
                    name.clone(),
                )
            },
            t,
        );
        self.groups.touch(g, t);
        g
    }
}

/// What a task remembers of a series for one of its sources, kept in the engine's
/// [`super::series::SeriesCache`].
pub(crate) struct SeriesMemo {
    /// The rule source, numbered across the engine's tasks (the engine's key for the memo).
    pub(crate) source: u32,
    group: Option<SeriesGroup>,
    /// The `from().where()` answer for the series' lines of one field layout, when the filter
    /// is pure and reads none of that layout's fields (then it reads only the series' tags,
    /// which are the same for every line of the series): `(layout + 1) << 1 | answer`, or 0.
    filter: u32,
}

impl SeriesMemo {
    /// An empty memo for rule source `source`.
    pub(crate) fn new(source: u32) -> SeriesMemo {
        SeriesMemo {
            source,
            group: None,
            filter: 0,
        }
    }

    /// The remembered filter answer for lines of `layout`.
    fn filter_for(&self, layout: Option<u32>) -> Option<bool> {
        let l = layout?;
        (self.filter != 0 && self.filter >> 1 == l.wrapping_add(1)).then_some(self.filter & 1 == 1)
    }

    /// Remembers the filter answer for lines of `layout` (ids too large to pack are not).
    fn set_filter(&mut self, layout: u32, pass: bool) {
        if layout < (1 << 30) {
            self.filter = ((layout + 1) << 1) | u32::from(pass);
        }
    }
}

/// The series' group, valid while the group's slot has the same generation, and the tags its
/// points carry.
struct SeriesGroup {
    group: GroupId,
    generation: u32,
    tags: Tags,
}

struct Source {
    node: usize,
    spec: FromSpec,
    /// Points carry all series tags (true) or only the group's.
    keep_tags: bool,
    /// Nothing the source feeds reads a point's tags (its children are windows fused with
    /// their reducer), so its points carry the task's empty tag set: a copy of the group's
    /// would touch the group's tag set, a cache miss per point.
    tags_unread: bool,
    /// The measurement name of the latest point, shared by the next ones of that measurement.
    last_name: Option<Name>,
    /// The filter is pure ([`crate::rules::lambda::Lambda::is_pure`]), so its answer over tags
    /// alone can be remembered per series.
    filter_by_series: bool,
    /// The fields the pipeline reads; None keeps all.
    fields: Option<Vec<Name>>,
    filter_state: LambdaState,
    /// Which fields (index in the line, and name) to take from a line, by the line's
    /// [`LineView::field_layout`]: lines with the same keys in the same order give the same
    /// answer, so a point's fields are picked without comparing any name.
    projections: FxHashMap<u32, Box<[(u32, Name)]>>,
    /// The same for lines without a layout id when every field is kept: the keys of the
    /// latest such line, compared with the next line's.
    plain: Box<[(u32, Name)]>,
}

/// Most layouts a source remembers the projection of; lines of further layouts have their
/// fields picked by name.
const MAX_PROJECTIONS: usize = 4096;

impl Source {
    /// The fields this source takes from a line.
    fn fields_of<L: LineView + ?Sized>(
        &mut self,
        names: &mut NameCache,
        line: &L,
        layout: Option<u32>,
    ) -> Fields {
        if let Some(l) = layout {
            if let Some(p) = self.projections.get(&l) {
                return project(p, line);
            }
            let p = projection(self.fields.as_deref(), names, line);
            let fields = project(&p, line);
            if self.projections.len() < MAX_PROJECTIONS {
                self.projections.insert(l, p);
            }
            return fields;
        }
        match &self.fields {
            Some(wanted) => {
                let mut fields = Fields::new();
                for (k, v) in line.fields() {
                    if let Some(n) = wanted.iter().find(|n| ***n == *k) {
                        fields.push((n.clone(), v.to_value()));
                    }
                }
                fields
            }
            None => {
                let same = self.plain.len() == line.field_count()
                    && self
                        .plain
                        .iter()
                        .zip(line.fields())
                        .all(|((_, n), (k, _))| **n == *k);
                if !same {
                    self.plain = projection(None, names, line);
                }
                project(&self.plain, line)
            }
        }
    }
}

/// Which fields of `line` to take: those in `wanted`, or every one.
fn projection<L: LineView + ?Sized>(
    wanted: Option<&[Name]>,
    names: &mut NameCache,
    line: &L,
) -> Box<[(u32, Name)]> {
    line.fields()
        .enumerate()
        .filter_map(|(i, (k, _))| match wanted {
            Some(wanted) => wanted
                .iter()
                .find(|n| ***n == *k)
                .map(|n| (i as u32, n.clone())),
            None => Some((i as u32, names.get(k))),
        })
        .collect()
}

/// A running rule.
pub struct Task {
    plan: Arc<TaskPlan>,
    nodes: Vec<RNode>,
    children: Vec<Vec<usize>>,
    sources: Vec<Source>,
    ctx: Ctx,
    expiry: i64,
    next_expiry_check: i64,
    /// The empty tag set points of a source with `tags_unread` share.
    no_tags: Tags,
}

/// What a line looks like to a `from().where()` filter: fields, then tags, of the borrowed line.
struct LineScope<'a, L: ?Sized> {
    line: &'a L,
    time: i64,
}

impl<L: LineView + ?Sized> Scope for LineScope<'_, L> {
    fn lookup(&self, name: &str) -> Option<Value> {
        if let Some(v) = self.line.field(name) {
            return Some(v.to_value());
        }
        self.line.tag(name).map(|v| Value::Str(v.into()))
    }

    fn str_eq(&self, name: &str, literal: &str) -> Option<bool> {
        if let Some(v) = self.line.field(name) {
            return match v {
                FieldRef::Str(s) => Some(s == literal),
                _ => None,
            };
        }
        self.line.tag(name).map(|v| v == literal)
    }

    fn time(&self) -> i64 {
        self.time
    }
}

/// Converts a parsed field value; unsigned values above `i64::MAX` become floats.
pub fn field_value(v: &FieldValue<'_>) -> Value {
    FieldRef::from(v).to_value()
}

fn group_dims<'a>(
    spec: &GroupSpec,
    tags: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    names: &mut NameCache,
) -> Vec<(Name, Arc<str>)> {
    if spec.all {
        let mut v: Vec<(Name, Arc<str>)> = tags
            .filter(|(k, _)| !spec.exclude.iter().any(|e| e == k))
            .map(|(k, v)| (names.get(k), Arc::from(v)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    } else {
        spec.tags
            .iter()
            .map(|t| {
                let v = tags.clone().find(|(k, _)| k == t).map_or("", |(_, v)| v);
                (names.get(t), Arc::from(v))
            })
            .collect()
    }
}

fn group_key(spec: &GroupSpec, name: &str, dims: &[(Name, Arc<str>)]) -> String {
    let mut key = String::new();
    if spec.by_measurement {
        key.push_str(name);
        key.push('\n');
    }
    for (i, (k, v)) in dims.iter().enumerate() {
        if i > 0 {
            key.push(',');
        }
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    key
}

fn group_id_string(spec: &GroupSpec, name: &str, dims: &[(Name, Arc<str>)]) -> Arc<str> {
    // By measurement alone the id is just the measurement, as in Kapacitor.
    if spec.by_measurement && dims.is_empty() {
        return name.into();
    }
    let key = group_key(spec, name, dims);
    if key.is_empty() {
        "nil".into()
    } else {
        key.into()
    }
}

/// Whether a group id (`host=a,path=/`, after `measurement\n` when grouped by measurement)
/// has the dimension `tag=value`. A tag value holding a `,` is not recognized.
pub(crate) fn group_id_has(id: &str, tag: &str, value: &str) -> bool {
    let dims = id.rsplit_once('\n').map_or(id, |(_, d)| d);
    dims.split(',').any(|kv| {
        kv.split_once('=')
            .is_some_and(|(k, v)| k == tag && v == value)
    })
}

impl Task {
    /// Instantiates a plan.
    pub fn new(plan: Arc<TaskPlan>, cfg: &TaskConfig) -> Task {
        let mut names = NameCache::default();
        let mut longest = 0i64;
        let nodes: Vec<RNode> = plan
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                match &n.kind {
                    NodeKind::Window(w) => {
                        longest = longest.max(w.period.max(w.every).saturating_mul(2))
                    }
                    NodeKind::Deadman(d) => longest = longest.max(d.interval.saturating_mul(3)),
                    _ => {}
                }
                nodes::build(&plan, i, &mut names)
            })
            .collect();
        let mut nodes = nodes;
        let mut children: Vec<Vec<usize>> = plan.nodes.iter().map(|n| n.children.clone()).collect();
        // A window whose only child is a reducer becomes one node that keeps running figures
        // instead of points (`nodes::fuse`); it sends what the reducer would have sent to the
        // reducer's children, and the reducer itself is left out of the graph.
        for i in 0..nodes.len() {
            if let [c] = children[i][..]
                && let Some(fused) =
                    nodes::fuse(&plan.nodes[i].kind, &plan.nodes[c].kind, &mut names)
            {
                nodes[i] = fused;
                children[i] = std::mem::take(&mut children[c]);
                nodes[c] = RNode::Passthrough;
            }
        }
        let sources = plan
            .sources()
            .map(|(i, spec)| Source {
                node: i,
                spec: spec.clone(),
                keep_tags: needs_point_tags(&plan, i),
                tags_unread: !children[i].is_empty()
                    && children[i].iter().all(|&c| {
                        matches!(nodes[c], RNode::WindowReduce(_) | RNode::WindowValues(_))
                    }),
                last_name: None,
                filter_by_series: spec.filter.as_ref().is_some_and(|f| f.is_pure()),
                fields: needed_fields(&plan, i)
                    .map(|set| set.iter().map(|f| names.get(f)).collect()),
                filter_state: spec
                    .filter
                    .as_ref()
                    .map(|f| f.new_state())
                    .unwrap_or_default(),
                projections: FxHashMap::default(),
                plain: Box::default(),
            })
            .collect();
        let expiry = cfg.group_expiry.max(longest);
        Task {
            ctx: Ctx {
                task: plan.name.as_str().into(),
                groups: GroupTable::default(),
                names,
                stats: TaskStats::default(),
                events: Vec::new(),
                clock: i64::MIN,
                restored: FxHashMap::default(),
            },
            plan,
            nodes,
            children,
            sources,
            expiry,
            next_expiry_check: i64::MIN,
            no_tags: Tags::default(),
        }
    }

    /// How many windows run fused with their reducer.
    #[cfg(test)]
    pub(crate) fn fused_windows(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| matches!(n, RNode::WindowReduce(_) | RNode::WindowValues(_)))
            .count()
    }

    /// The plan this task runs.
    pub fn plan(&self) -> &Arc<TaskPlan> {
        &self.plan
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        &self.plan.name
    }

    /// Counters.
    pub fn stats(&self) -> &TaskStats {
        &self.ctx.stats
    }

    /// Number of live groups.
    pub fn groups(&self) -> usize {
        self.ctx.groups.len()
    }

    /// The task's clock: the newest event time it has seen.
    pub fn clock(&self) -> i64 {
        self.ctx.clock
    }

    /// Indexes of sources (for routing tables).
    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// The measurement a source reads (None: all).
    pub fn source_measurement(&self, s: usize) -> Option<&str> {
        self.sources[s].spec.measurement.as_deref()
    }

    /// Whether a source accepts points of this database, retention policy and measurement.
    /// A `db` or `rp` of None (a recording that names none) matches whatever the rule reads.
    pub fn source_matches(
        &self,
        s: usize,
        db: Option<&str>,
        rp: Option<&str>,
        measurement: &str,
    ) -> bool {
        let spec = &self.sources[s].spec;
        if spec
            .measurement
            .as_deref()
            .is_some_and(|m| m != measurement)
        {
            return false;
        }
        let eq = |want: &str, got: Option<&str>| got.is_none_or(|g| g == want);
        match (&spec.database, &spec.retention_policy) {
            (Some(d), r) => eq(d, db) && r.as_deref().is_none_or(|r| eq(r, rp)),
            (None, Some(r)) => eq(r, rp) && self.dbrp_ok(db, None),
            (None, None) => self.dbrp_ok(db, rp),
        }
    }

    fn dbrp_ok(&self, db: Option<&str>, rp: Option<&str>) -> bool {
        self.plan.dbrps.is_empty()
            || self
                .plan
                .dbrps
                .iter()
                .any(|d| db.is_none_or(|db| d.db == db) && rp.is_none_or(|rp| d.rp == rp))
    }

    /// Starts loading what a line of the series `memo` remembers will read when it reaches
    /// source `s`: its group's entry, the group's tags and the group's state in the nodes
    /// right below the source. Called a few lines ahead of [`Task::ingest`], so that those
    /// loads overlap with the work on the lines in between.
    #[inline]
    pub(crate) fn prefetch(&self, s: usize, memo: &SeriesMemo) {
        let (Some(e), Some(src)) = (&memo.group, self.sources.get(s)) else {
            return;
        };
        self.ctx.groups.prefetch(e.group);
        if !src.tags_unread {
            prefetch_arc(&e.tags);
        }
        for &c in &self.children[src.node] {
            // Down a chain of single children (derivative, eval, window, alert), a few nodes.
            let mut n = c;
            for _ in 0..4 {
                self.nodes[n].prefetch(e.group);
                match self.children[n].as_slice() {
                    [next] => n = *next,
                    _ => break,
                }
            }
        }
    }

    /// Feeds one parsed line to source `s` (already matched by the router). `time` is in ns;
    /// `memo` is what this source remembers of the line's series, filled on its first point.
    pub(crate) fn ingest<L: LineView + ?Sized>(
        &mut self,
        s: usize,
        line: &L,
        time: i64,
        memo: &mut SeriesMemo,
    ) {
        self.ctx.stats.points_in += 1;
        if time > self.ctx.clock {
            self.advance(time);
        }
        let src = &mut self.sources[s];
        let layout = line.field_layout();
        if let Some(filter) = &src.spec.filter {
            let pass = match memo.filter_for(layout) {
                Some(pass) => pass,
                None => match filter.eval_bool(&LineScope { line, time }, &mut src.filter_state) {
                    Ok(pass) => {
                        if src.filter_by_series
                            && let Some(l) = layout
                            && filter.references().iter().all(|r| line.field(r).is_none())
                        {
                            memo.set_filter(l, pass);
                        }
                        pass
                    }
                    Err(e) => {
                        self.ctx.stats.error(&self.ctx.task, &e);
                        return;
                    }
                },
            };
            if !pass {
                return;
            }
        }
        let mut time = time;
        if src.spec.truncate > 0 {
            time -= time.rem_euclid(src.spec.truncate);
        } else if src.spec.round > 0 {
            let r = src.spec.round;
            let rounded =
                (i128::from(time) + i128::from(r / 2)).div_euclid(i128::from(r)) * i128::from(r);
            time = i64::try_from(rounded).unwrap_or(time);
        }
        let ctx = &mut self.ctx;
        ctx.stats.points_matched += 1;
        let name = match &src.last_name {
            Some(n) if **n == *line.measurement() => n.clone(),
            _ => {
                let n = ctx.names.get(line.measurement());
                src.last_name = Some(n.clone());
                n
            }
        };
        // A removed group's slot has a new generation, so the check below also catches a
        // series whose group is gone, without reading the group entry.
        let cached = memo
            .group
            .as_ref()
            .filter(|e| ctx.groups.generation(e.group) == e.generation);
        let (group, tags) = match cached {
            Some(e) if src.tags_unread => (e.group, self.no_tags.clone()),
            Some(e) => (e.group, e.tags.clone()),
            None => {
                let dims = group_dims(&src.spec.group, line.tags(), &mut ctx.names);
                let key = group_key(&src.spec.group, &name, &dims);
                let spec = &src.spec.group;
                let (group, _) = ctx.groups.intern(
                    &key,
                    || {
                        (
                            group_id_string(spec, &name, &dims),
                            Arc::new(TagSet(dims.clone())),
                            name.clone(),
                        )
                    },
                    time,
                );
                let tags = if src.keep_tags {
                    let mut all: Vec<(Name, Arc<str>)> = line
                        .tags()
                        .map(|(k, v)| (ctx.names.get(k), Arc::from(v)))
                        .collect();
                    all.sort_by(|a, b| a.0.cmp(&b.0));
                    Arc::new(TagSet(all))
                } else {
                    ctx.group_tags(group)
                };
                memo.group = Some(SeriesGroup {
                    group,
                    generation: ctx.groups.generation(group),
                    tags: tags.clone(),
                });
                (group, tags)
            }
        };
        ctx.groups.touch(group, time);
        let fields = src.fields_of(&mut ctx.names, line, layout);
        let point = Point {
            name,
            time,
            tags,
            fields,
            group,
        };
        let node = src.node;
        self.emit(node, Msg::Point(point));
    }

    /// Sends a message to every child of `from`.
    fn emit(&mut self, from: usize, msg: Msg) {
        let n = self.children[from].len();
        for i in 0..n {
            let child = self.children[from][i];
            if i + 1 == n {
                self.process(child, msg);
                return;
            }
            self.process(child, msg.clone());
        }
    }

    fn process(&mut self, node: usize, msg: Msg) {
        let mut out = nodes::Out::new();
        self.nodes[node].process(msg, &mut self.ctx, &mut out);
        for m in out {
            self.emit(node, m);
        }
    }

    /// Moves the task's clock to `now` (event time): runs deadman checks that fell due and
    /// drops idle groups.
    pub fn advance(&mut self, now: i64) {
        if now <= self.ctx.clock {
            return;
        }
        self.ctx.clock = now;
        // Deadman checks first (each group only up to its own expiry), then expiry.
        for i in 0..self.nodes.len() {
            if let RNode::Deadman(_) = &self.nodes[i] {
                let mut out = nodes::Out::new();
                if let RNode::Deadman(d) = &mut self.nodes[i] {
                    d.tick(now, self.expiry, &mut self.ctx, &mut out);
                }
                for m in out {
                    self.emit(i, m);
                }
            }
        }
        if now >= self.next_expiry_check {
            if self.next_expiry_check != i64::MIN {
                self.expire(now.saturating_sub(self.expiry));
            }
            self.next_expiry_check = now.saturating_add((self.expiry / 4).max(1));
        }
    }

    /// Drops every group whose latest point is older than `cutoff`, freeing its state in every
    /// node. Returns how many were dropped.
    pub fn expire(&mut self, cutoff: i64) -> usize {
        let idle = self.ctx.groups.idle_before(cutoff);
        for &g in &idle {
            for n in &mut self.nodes {
                n.drop_group(g);
            }
            self.ctx.groups.remove(g);
        }
        self.ctx.stats.groups_expired += idle.len() as u64;
        idle.len()
    }

    /// Drops every group whose group-by tags include `tag=value` (the groups of a retired
    /// host) with its state in every node (window buffers, aggregates, alert levels and
    /// history, deadman counts), and any stored alert state still waiting to resume for such a
    /// group, without emitting an event: nothing of the group fires again, and a later point
    /// with that tag starts a new group at OK. Returns how many live groups were dropped and
    /// the ids of every group dropped or forgotten.
    pub fn forget_tagged(&mut self, tag: &str, value: &str) -> (usize, Vec<Arc<str>>) {
        let gone = self.ctx.groups.tagged(tag, value);
        let mut ids = Vec::with_capacity(gone.len());
        for &g in &gone {
            for n in &mut self.nodes {
                n.drop_group(g);
            }
            if let Some(e) = self.ctx.groups.get(g) {
                ids.push(e.id.clone());
            }
            self.ctx.groups.remove(g);
        }
        self.ctx.restored.retain(|(_, id), _| {
            if group_id_has(id, tag, value) {
                ids.push(id.clone());
                false
            } else {
                true
            }
        });
        ids.sort_unstable();
        ids.dedup();
        (gone.len(), ids)
    }

    /// Remembers alert states to resume from: `(alert node name, group id, state)`.
    pub fn restore(&mut self, states: impl IntoIterator<Item = (String, String, Restored)>) {
        for (node, group, r) in states {
            self.ctx.restored.insert((node.into(), group.into()), r);
        }
    }

    /// The current state of every alert group, for carrying across a rule change:
    /// `(alert node name, group id, state)`.
    pub fn alert_states(&self) -> Vec<(String, String, Restored)> {
        let mut out = Vec::new();
        for n in &self.nodes {
            match n {
                RNode::Alert(a) => a.export(&self.ctx, &mut out),
                RNode::Deadman(d) => d.alert.export(&self.ctx, &mut out),
                _ => {}
            }
        }
        out
    }

    /// Emits the windows of groups whose window ended before `cutoff` (wall-clock close of a
    /// host that stopped reporting).
    pub fn close_idle_windows(&mut self, cutoff: i64) {
        for i in 0..self.nodes.len() {
            let mut out = nodes::Out::new();
            self.nodes[i].close_idle(cutoff, &mut self.ctx, &mut out);
            for m in out {
                self.emit(i, m);
            }
        }
    }

    /// Emits every window that is still open (end of a recording).
    pub fn flush(&mut self) {
        for i in 0..self.nodes.len() {
            let mut out = nodes::Out::new();
            self.nodes[i].flush(&mut self.ctx, &mut out);
            for m in out {
                self.emit(i, m);
            }
        }
    }

    /// Appends the alert events produced so far to `out`.
    pub fn drain_events_into(&mut self, out: &mut Vec<AlertEvent>) {
        out.append(&mut self.ctx.events);
    }

    /// Approximate heap bytes held by the task's state (groups and node state; the series
    /// cache is the engine's, [`super::Engine::series_bytes`]).
    pub fn state_bytes(&self) -> usize {
        self.ctx.groups.heap_bytes() + self.nodes.iter().map(RNode::state_bytes).sum::<usize>()
    }

    /// How long (event time) an idle group is kept.
    pub fn expiry(&self) -> i64 {
        self.expiry
    }
}

/// The fields at the positions of `projection`, under its names.
#[inline]
fn project<L: LineView + ?Sized>(projection: &[(u32, Name)], line: &L) -> Fields {
    let mut fields = Fields::with_capacity(projection.len());
    for (i, n) in projection {
        if let Some(v) = line.field_at(*i as usize) {
            fields.push((n.clone(), v.to_value()));
        }
    }
    fields
}

/// Does anything below `node` read tags beyond the group's? Batches after a window and points
/// made by aggregates carry only group tags, so pipelines like window→mean→alert do not need a
/// copy of every series' tags.
fn needs_point_tags(plan: &TaskPlan, node: usize) -> bool {
    plan.nodes[node].children.iter().any(|&c| {
        let n = &plan.nodes[c];
        match &n.kind {
            NodeKind::Window(_) => needs_point_tags(plan, c),
            NodeKind::Aggregate(a) if a.func.is_reducer() => false,
            NodeKind::Alert(_) => {
                plan.nodes[node].provides == Edge::Stream || needs_point_tags(plan, c)
            }
            NodeKind::Deadman(_) => needs_point_tags(plan, c),
            NodeKind::Shift(_) | NodeKind::Sample(_) => needs_point_tags(plan, c),
            _ => true,
        }
    })
}

/// The fields the subtree below `node` reads, or None when it may read any.
fn needed_fields(plan: &TaskPlan, node: usize) -> Option<Vec<String>> {
    let mut set: Vec<String> = Vec::new();
    for &c in &plan.nodes[node].children {
        let n = &plan.nodes[c];
        let add: Option<Vec<String>> = match &n.kind {
            NodeKind::Aggregate(a)
                if a.func.is_reducer() || matches!(a.func, AggFunc::Distinct) =>
            {
                Some(vec![a.field.clone()])
            }
            // derivative passes the point's other fields on; the other transformations emit
            // only their results.
            NodeKind::Aggregate(a) if matches!(a.func, AggFunc::Derivative { .. }) => {
                needed_fields(plan, c).map(|mut v| {
                    v.push(a.field.clone());
                    v.extend(a.more.iter().map(|(f, _)| f.clone()));
                    v
                })
            }
            NodeKind::Aggregate(a) => Some(
                std::iter::once(a.field.clone())
                    .chain(a.more.iter().map(|(f, _)| f.clone()))
                    .collect(),
            ),
            NodeKind::Window(_) | NodeKind::Shift(_) | NodeKind::Sample(_) => {
                needed_fields(plan, c)
            }
            NodeKind::Where(l) => needed_fields(plan, c).map(|mut v| {
                v.extend(l.references().iter().map(|r| r.to_string()));
                v
            }),
            NodeKind::Deadman(d) if d.extra.is_none() => needed_fields(plan, c),
            _ => None,
        };
        match add {
            Some(v) => set.extend(v),
            None => return None,
        }
    }
    set.sort();
    set.dedup();
    Some(set)
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Task>();
    is_send::<AlertRt>();
    is_send::<DeadmanRt>();
}
