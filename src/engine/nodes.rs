//! The pipeline nodes between a source and an alert: `where`, `window`, `groupBy`, aggregates,
//! `eval`, `default`, `delete`, `shift`, `sample`, `stateDuration`/`stateCount` and `log`.
//!
//! Each node keeps its per-group state in a [`GroupVec`] and writes what it emits into an
//! [`Out`] buffer; the task forwards those messages to the node's children.

use smallvec::SmallVec;
use std::collections::VecDeque;
use std::sync::Arc;

use super::alert::{AlertRt, DeadmanRt};
use super::point::*;
use super::task::Ctx;
use crate::rules::lambda::{Lambda, LambdaState, Value};
use crate::rules::plan::*;

/// Messages a node emits while handling one input.
pub(crate) type Out = SmallVec<[Msg; 2]>;

/// A node with its runtime state.
pub(crate) enum RNode {
    Passthrough,
    Where(WhereRt),
    Window(WindowRt),
    /// A tumbling window and the reducer that was its only child, as one node
    /// ([`fuse`]).
    WindowReduce(WindowReduceRt),
    /// A window and the reducer that was its only child, buffering values ([`fuse`]).
    WindowValues(WindowValuesRt),
    GroupBy(GroupSpec),
    Agg(AggRt),
    Eval(EvalRt),
    Default(DefaultSpec, Vec<(Name, Value)>),
    Delete(DeleteSpec),
    Shift(i64),
    Sample(SampleSpec, GroupVec<(i64, i64)>),
    State(StateRt),
    Log(LogSpec, Arc<str>),
    Alert(Box<AlertRt>),
    Deadman(Box<DeadmanRt>),
}

impl RNode {
    /// Starts loading the state a point of group `g` will read here ([`prefetch`]).
    #[inline]
    pub(crate) fn prefetch(&self, g: GroupId) {
        match self {
            RNode::WindowReduce(w) => w.groups.prefetch(g),
            RNode::WindowValues(w) => w.groups.prefetch(g),
            RNode::Window(w) => w.groups.prefetch(g),
            RNode::Agg(a) => a.groups.prefetch(g),
            RNode::Alert(a) => a.prefetch(g),
            RNode::Deadman(d) => d.prefetch(g),
            _ => {}
        }
    }
}

pub(crate) fn build(plan: &TaskPlan, i: usize, names: &mut NameCache) -> RNode {
    let node = &plan.nodes[i];
    match &node.kind {
        NodeKind::Stream | NodeKind::From(_) => RNode::Passthrough,
        NodeKind::Where(l) => RNode::Where(WhereRt {
            lambda: l.clone(),
            states: GroupVec::default(),
        }),
        NodeKind::Window(w) => RNode::Window(WindowRt {
            spec: w.clone(),
            groups: GroupVec::default(),
        }),
        NodeKind::GroupBy(g) => RNode::GroupBy(g.clone()),
        NodeKind::Aggregate(a) => RNode::Agg(AggRt {
            spec: a.clone(),
            as_name: names.get(&a.as_name),
            field: names.get(&a.field),
            more: a
                .more
                .iter()
                .map(|(f, n)| (names.get(f), names.get(n)))
                .collect(),
            groups: GroupVec::default(),
        }),
        NodeKind::Eval(e) => RNode::Eval(EvalRt {
            names: e.as_names.iter().map(|n| names.get(n)).collect(),
            spec: e.clone(),
            states: GroupVec::default(),
        }),
        NodeKind::Default(d) => {
            let fields = d
                .fields
                .iter()
                .map(|(k, v)| (names.get(k), v.clone()))
                .collect();
            RNode::Default(d.clone(), fields)
        }
        NodeKind::Delete(d) => RNode::Delete(d.clone()),
        NodeKind::Shift(s) => RNode::Shift(*s),
        NodeKind::Sample(s) => RNode::Sample(*s, GroupVec::default()),
        NodeKind::State(s) => RNode::State(StateRt {
            as_name: names.get(&s.as_name),
            spec: s.clone(),
            groups: GroupVec::default(),
        }),
        NodeKind::Log(l) => RNode::Log(l.clone(), node.name.as_str().into()),
        NodeKind::Alert(a) => RNode::Alert(Box::new(AlertRt::new(
            Arc::new((**a).clone()),
            node.name.as_str().into(),
            names,
        ))),
        NodeKind::Deadman(d) => RNode::Deadman(Box::new(DeadmanRt::new(
            d,
            node.name.as_str().into(),
            names,
        ))),
    }
}

impl RNode {
    pub(crate) fn process(&mut self, msg: Msg, ctx: &mut Ctx, out: &mut Out) {
        match self {
            RNode::Passthrough => out.push(msg),
            RNode::Where(w) => w.process(msg, ctx, out),
            RNode::Window(w) => match msg {
                Msg::Point(p) => w.point(p, ctx, out),
                Msg::Batch(_) => {}
            },
            RNode::WindowReduce(w) => match msg {
                Msg::Point(p) => w.point(p, ctx, out),
                Msg::Batch(_) => {}
            },
            RNode::WindowValues(w) => match msg {
                Msg::Point(p) => w.point(p, ctx, out),
                Msg::Batch(_) => {}
            },
            RNode::GroupBy(spec) => regroup(spec, msg, ctx, out),
            RNode::Agg(a) => a.process(msg, ctx, out),
            RNode::Eval(e) => e.process(msg, ctx, out),
            RNode::Default(spec, fields) => {
                out.extend(map_points(msg, |p| apply_default(spec, fields, p)))
            }
            RNode::Delete(spec) => out.extend(map_points(msg, |p| apply_delete(spec, p))),
            RNode::Shift(d) => {
                let d = *d;
                let mut msg = map_points(msg, |mut p| {
                    p.time = p.time.saturating_add(d);
                    Some(p)
                });
                if let Some(Msg::Batch(b)) = &mut msg {
                    b.time = b.time.saturating_add(d);
                }
                out.extend(msg);
            }
            RNode::Sample(spec, groups) => {
                let keep = match &msg {
                    Msg::Point(p) => sample_keep(spec, groups, p.group, p.time),
                    Msg::Batch(b) => sample_keep(spec, groups, b.group, b.time),
                };
                if keep {
                    out.push(msg);
                }
            }
            RNode::State(s) => s.process(msg, ctx, out),
            RNode::Log(spec, name) => {
                log_msg(spec, name, &ctx.task, &msg);
                out.push(msg);
            }
            RNode::Alert(a) => a.process(msg, ctx, out),
            RNode::Deadman(d) => d.observe(msg, ctx),
        }
    }

    pub(crate) fn drop_group(&mut self, g: GroupId) {
        match self {
            RNode::Where(w) => {
                w.states.remove(g);
            }
            RNode::Window(w) => {
                w.groups.remove(g);
            }
            RNode::WindowReduce(w) => {
                w.groups.remove(g);
            }
            RNode::WindowValues(w) => {
                w.groups.remove(g);
            }
            RNode::Agg(a) => {
                a.groups.remove(g);
            }
            RNode::Eval(e) => {
                e.states.remove(g);
            }
            RNode::Sample(_, s) => {
                s.remove(g);
            }
            RNode::State(s) => {
                s.groups.remove(g);
            }
            RNode::Alert(a) => a.drop_group(g),
            RNode::Deadman(d) => d.drop_group(g),
            RNode::Passthrough
            | RNode::GroupBy(_)
            | RNode::Default(..)
            | RNode::Delete(_)
            | RNode::Shift(_)
            | RNode::Log(..) => {}
        }
    }

    pub(crate) fn flush(&mut self, ctx: &mut Ctx, out: &mut Out) {
        match self {
            RNode::Window(w) => w.flush(ctx, out),
            RNode::WindowReduce(w) => w.flush(ctx, out),
            RNode::WindowValues(w) => w.flush(ctx, out),
            _ => {}
        }
    }

    pub(crate) fn close_idle(&mut self, cutoff: i64, ctx: &mut Ctx, out: &mut Out) {
        match self {
            RNode::Window(w) => w.close_idle(cutoff, ctx, out),
            RNode::WindowReduce(w) => w.close_idle(cutoff, ctx, out),
            RNode::WindowValues(w) => w.close_idle(cutoff, ctx, out),
            _ => {}
        }
    }

    pub(crate) fn state_bytes(&self) -> usize {
        match self {
            RNode::Window(w) => {
                w.groups.slot_bytes()
                    + w.groups
                        .iter()
                        .map(|(_, s)| {
                            s.buf.capacity() * std::mem::size_of::<Point>()
                                + s.buf.iter().map(point_heap).sum::<usize>()
                        })
                        .sum::<usize>()
            }
            RNode::WindowReduce(w) => w.groups.slot_bytes(),
            RNode::WindowValues(w) => {
                w.groups.slot_bytes()
                    + w.groups
                        .iter()
                        .map(|(_, s)| s.buf.capacity() * std::mem::size_of::<ValueEntry>())
                        .sum::<usize>()
            }
            RNode::Agg(a) => {
                a.groups.slot_bytes()
                    + a.groups
                        .iter()
                        .map(|(_, s)| s.iter().map(|s| s.ring.capacity() * 8).sum::<usize>())
                        .sum::<usize>()
            }
            RNode::Where(w) => w.states.slot_bytes(),
            RNode::Eval(e) => e.states.slot_bytes(),
            RNode::Sample(_, s) => s.slot_bytes(),
            RNode::State(s) => s.groups.slot_bytes(),
            RNode::Alert(a) => a.state_bytes(),
            RNode::Deadman(d) => d.state_bytes(),
            _ => 0,
        }
    }
}

fn point_heap(p: &Point) -> usize {
    if p.fields.spilled() {
        p.fields.capacity() * std::mem::size_of::<(Name, Value)>()
    } else {
        0
    }
}

/// Applies `f` to a point, or to every point of a batch (dropping those it rejects).
fn map_points(msg: Msg, mut f: impl FnMut(Point) -> Option<Point>) -> Option<Msg> {
    match msg {
        Msg::Point(p) => f(p).map(Msg::Point),
        Msg::Batch(mut b) => {
            b.points = b.points.into_iter().filter_map(f).collect();
            Some(Msg::Batch(b))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// where

pub(crate) struct WhereRt {
    lambda: Lambda,
    states: GroupVec<LambdaState>,
}

impl WhereRt {
    fn keep(&mut self, p: &Point, ctx: &mut Ctx) -> bool {
        let result = if self.lambda.is_stateful() {
            let st = self
                .states
                .get_or_insert_with(p.group, || self.lambda.new_state());
            self.lambda.eval_bool(p, st)
        } else {
            self.lambda.eval_bool(p, &mut LambdaState::default())
        };
        match result {
            Ok(b) => b,
            Err(e) => {
                ctx.stats.error(&ctx.task, &e);
                false
            }
        }
    }

    fn process(&mut self, msg: Msg, ctx: &mut Ctx, out: &mut Out) {
        match msg {
            Msg::Point(p) => {
                if self.keep(&p, ctx) {
                    out.push(Msg::Point(p));
                }
            }
            Msg::Batch(mut b) => {
                b.points.retain(|p| self.keep(p, ctx));
                out.push(Msg::Batch(b));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// window

pub(crate) struct WindowRt {
    spec: WindowSpec,
    groups: GroupVec<WinState>,
}

struct WinState {
    buf: VecDeque<Point>,
    next_emit: i64,
    since_emit: i64,
    /// Points the group's previous tumbling window held: the room the next one reserves.
    expect: u32,
}

/// Most points one group's window holds; beyond it the oldest are dropped and counted.
pub const MAX_WINDOW_POINTS: usize = 100_000;

/// Nanoseconds from 0001-01-01T00:00:00Z to the Unix epoch: Go's `Time.Truncate` (which
/// Kapacitor's `.align()` uses) counts from there, so periods that do not divide a day evenly
/// (a week, 7m, 25h) align as they do in Kapacitor.
const YEAR_ONE_TO_UNIX_NS: i128 = 62_135_596_800 * 1_000_000_000;

fn truncate(t: i64, d: i64) -> i64 {
    if d <= 0 {
        return t;
    }
    let abs = i128::from(t) + YEAR_ONE_TO_UNIX_NS;
    let truncated = abs - abs.rem_euclid(i128::from(d)) - YEAR_ONE_TO_UNIX_NS;
    i64::try_from(truncated).unwrap_or(if truncated < 0 { i64::MIN } else { i64::MAX })
}

/// When a group's first window, opened by a point at `t`, ends.
fn first_emit(spec: &WindowSpec, t: i64) -> i64 {
    if spec.fill_period {
        let first = t.saturating_add(spec.every.max(spec.period));
        if spec.align {
            truncate(first, spec.every).saturating_add(spec.every)
        } else {
            first
        }
    } else {
        let first = t.saturating_add(spec.every);
        if spec.align {
            truncate(first, spec.every)
        } else {
            first
        }
    }
}

/// When the window that a point at `t` opens by closing the previous one ends.
fn next_emit_after(spec: &WindowSpec, t: i64) -> i64 {
    let next = t.saturating_add(spec.every);
    if spec.align {
        truncate(next, spec.every)
    } else {
        next
    }
}

impl WindowRt {
    fn point(&mut self, p: Point, ctx: &mut Ctx, out: &mut Out) {
        let spec = &self.spec;
        if spec.period_count > 0 {
            return self.count_point(p, ctx, out);
        }
        let t = p.time;
        let group = p.group;
        let st = self.groups.get_or_insert_with(group, || WinState {
            buf: VecDeque::new(),
            next_emit: first_emit(spec, t),
            since_emit: 0,
            expect: 0,
        });
        if spec.every == 0 {
            // Emit on every point: the window (t - period, t].
            st.buf.push_back(p);
            if t >= st.next_emit {
                let oldest = t.saturating_sub(spec.period);
                while st.buf.front().is_some_and(|q| q.time <= oldest) {
                    st.buf.pop_front();
                }
                st.next_emit = t;
                let b = batch_of(st, group, t, ctx);
                out.push(Msg::Batch(b));
            }
            return;
        }
        if t >= st.next_emit {
            let end = st.next_emit;
            let oldest = end.saturating_sub(spec.period);
            while st.buf.front().is_some_and(|q| q.time < oldest) {
                st.buf.pop_front();
            }
            st.next_emit = next_emit_after(spec, t);
            let b = if spec.period <= spec.every {
                // A tumbling window holds nothing of the emitted window afterwards: its points
                // move into the batch (no copy), and an idle group keeps only what it buffers.
                // The next window starts with room for as many points as this one had (up to
                // 1,024; more grow as needed).
                st.expect = st.buf.len().min(1024) as u32;
                let points = std::mem::take(&mut st.buf);
                take_batch(points, group, end, ctx)
            } else {
                let b = batch_of(st, group, end, ctx);
                st.buf.shrink_to(st.buf.len() * 2);
                b
            };
            out.push(Msg::Batch(b));
        }
        if st.buf.capacity() == 0 {
            st.buf.reserve_exact((st.expect as usize).max(1));
        }
        // A point far in the future keeps a window open until then; never buffer without bound.
        if st.buf.len() >= MAX_WINDOW_POINTS {
            st.buf.pop_front();
            ctx.stats.window_overflow += 1;
        }
        st.buf.push_back(p);
    }

    fn count_point(&mut self, p: Point, ctx: &Ctx, out: &mut Out) {
        let spec = &self.spec;
        let group = p.group;
        let st = self.groups.get_or_insert_with(group, || WinState {
            buf: VecDeque::new(),
            next_emit: 0,
            since_emit: 0,
            expect: 0,
        });
        st.buf.push_back(p);
        while st.buf.len() as i64 > spec.period_count {
            st.buf.pop_front();
        }
        st.since_emit += 1;
        let full = !spec.fill_period || st.buf.len() as i64 >= spec.period_count;
        if st.since_emit >= spec.every_count && full {
            st.since_emit = 0;
            let time = st.buf.back().map_or(0, |q| q.time);
            out.push(Msg::Batch(batch_of(st, group, time, ctx)));
        }
    }

    /// Emits, and forgets, the windows that ended before `cutoff` without a newer point to close
    /// them. The group's next point starts a fresh window.
    fn close_idle(&mut self, cutoff: i64, ctx: &mut Ctx, out: &mut Out) {
        if self.spec.period_count > 0 || self.spec.every == 0 {
            return;
        }
        let due: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, st)| st.next_emit <= cutoff && !st.buf.is_empty())
            .map(|(g, _)| g)
            .collect();
        for g in due {
            if let Some(mut st) = self.groups.remove(g) {
                let end = st.next_emit;
                let oldest = end.saturating_sub(self.spec.period);
                while st.buf.front().is_some_and(|q| q.time < oldest) {
                    st.buf.pop_front();
                }
                if !st.buf.is_empty() {
                    out.push(Msg::Batch(batch_of(&st, g, end, ctx)));
                }
            }
        }
    }

    fn flush(&mut self, ctx: &mut Ctx, out: &mut Out) {
        if self.spec.period_count > 0 || self.spec.every == 0 {
            return;
        }
        for (g, st) in self.groups.iter_mut() {
            if st.buf.is_empty() {
                continue;
            }
            let end = st.next_emit;
            let oldest = end.saturating_sub(self.spec.period);
            while st.buf.front().is_some_and(|q| q.time < oldest) {
                st.buf.pop_front();
            }
            let b = batch_of(st, g, end, ctx);
            st.buf.clear();
            out.push(Msg::Batch(b));
        }
    }
}

/// The window of `group` as a batch stamped `time`, with the group's tags and measurement
/// (known even when the window is empty).
fn batch_of(st: &WinState, group: GroupId, time: i64, ctx: &Ctx) -> Batch {
    Batch {
        name: batch_name(st.buf.front(), group, ctx),
        time,
        tags: ctx.group_tags(group),
        group,
        points: st.buf.iter().cloned().collect(),
    }
}

/// Like [`batch_of`], taking the points instead of copying them.
fn take_batch(points: VecDeque<Point>, group: GroupId, time: i64, ctx: &Ctx) -> Batch {
    Batch {
        name: batch_name(points.front(), group, ctx),
        time,
        tags: ctx.group_tags(group),
        group,
        points: points.into(),
    }
}

fn batch_name(first: Option<&Point>, group: GroupId, ctx: &Ctx) -> Name {
    match (first, ctx.groups.get(group)) {
        (Some(p), _) => p.name.clone(),
        (None, Some(e)) => e.name.clone(),
        (None, None) => Name::from(""),
    }
}

// ---------------------------------------------------------------------------------------------
// window followed by a reducer

/// The window and reducer of a plan as one node, when the plan allows: a time-based window
/// (`every` above 0) whose only child is a reducer of one field. The node emits exactly the
/// point the reducer would have made of the window's batch (same time, value, name, tags,
/// errors and counters), to the reducer's children, without building the batch:
///
/// - A window that holds nothing of an emitted window afterwards (`period` at most `every`)
///   with `mean`, `sum`, `count`, `min`, `max`, `first` or `last` keeps, per group, running
///   figures of the open window instead of its points ([`WindowReduceRt`]). With nothing
///   buffered, such a window never reaches [`MAX_WINDOW_POINTS`] and drops nothing.
/// - Any other such window and reducer buffers, per point, only its time, measurement and the
///   field's value ([`WindowValuesRt`]), and reduces them with the reducer's own function.
pub(crate) fn fuse(window: &NodeKind, reducer: &NodeKind, names: &mut NameCache) -> Option<RNode> {
    let (NodeKind::Window(w), NodeKind::Aggregate(a)) = (window, reducer) else {
        return None;
    };
    if w.period_count > 0 || w.every <= 0 || !a.more.is_empty() || !a.func.is_reducer() {
        return None;
    }
    let reducer = Reducer {
        func: a.func,
        field: names.get(&a.field),
        as_name: names.get(&a.as_name),
        use_point_times: a.use_point_times,
    };
    let running = w.period <= w.every
        && matches!(
            a.func,
            AggFunc::Mean
                | AggFunc::Sum
                | AggFunc::Count
                | AggFunc::Min
                | AggFunc::Max
                | AggFunc::First
                | AggFunc::Last
        );
    Some(if running {
        RNode::WindowReduce(WindowReduceRt {
            spec: w.clone(),
            reducer,
            groups: GroupVec::default(),
        })
    } else {
        RNode::WindowValues(WindowValuesRt {
            spec: w.clone(),
            reducer,
            groups: GroupVec::default(),
        })
    })
}

/// A window fused with a reducer that needs the window's values: per point, its time,
/// measurement and the field's value (None when the point lacks it), in arrival order.
pub(crate) struct WindowValuesRt {
    spec: WindowSpec,
    reducer: Reducer,
    groups: GroupVec<ValuesState>,
}

/// A buffered point of a [`WindowValuesRt`]: time, measurement, the field's value.
type ValueEntry = (i64, Name, Option<Value>);

struct ValuesState {
    next_emit: i64,
    buf: VecDeque<ValueEntry>,
}

impl WindowValuesRt {
    /// Like [`WindowRt::point`] followed by the reducer of the batch it may emit.
    fn point(&mut self, p: Point, ctx: &mut Ctx, out: &mut Out) {
        let WindowValuesRt {
            spec,
            reducer,
            groups,
        } = self;
        let (t, group) = (p.time, p.group);
        let st = groups.get_or_insert_with(group, || ValuesState {
            next_emit: first_emit(spec, t),
            buf: VecDeque::new(),
        });
        if t >= st.next_emit {
            let end = st.next_emit;
            drop_older(&mut st.buf, end.saturating_sub(spec.period));
            st.next_emit = next_emit_after(spec, t);
            out.extend(
                reducer
                    .point_of_values(&st.buf, group, end, ctx)
                    .map(Msg::Point),
            );
            if spec.period <= spec.every {
                st.buf.clear();
            } else {
                st.buf.shrink_to(st.buf.len() * 2);
            }
        }
        if st.buf.len() >= MAX_WINDOW_POINTS {
            st.buf.pop_front();
            ctx.stats.window_overflow += 1;
        }
        let value = p.field(&reducer.field).cloned();
        st.buf.push_back((t, p.name, value));
    }

    /// Like [`WindowRt::close_idle`].
    fn close_idle(&mut self, cutoff: i64, ctx: &mut Ctx, out: &mut Out) {
        let due: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, st)| st.next_emit <= cutoff && !st.buf.is_empty())
            .map(|(g, _)| g)
            .collect();
        for g in due {
            if let Some(mut st) = self.groups.remove(g) {
                drop_older(&mut st.buf, st.next_emit.saturating_sub(self.spec.period));
                if !st.buf.is_empty() {
                    let p = self.reducer.point_of_values(&st.buf, g, st.next_emit, ctx);
                    out.extend(p.map(Msg::Point));
                }
            }
        }
    }

    /// Like [`WindowRt::flush`].
    fn flush(&mut self, ctx: &mut Ctx, out: &mut Out) {
        for (g, st) in self.groups.iter_mut() {
            if st.buf.is_empty() {
                continue;
            }
            drop_older(&mut st.buf, st.next_emit.saturating_sub(self.spec.period));
            out.extend(
                self.reducer
                    .point_of_values(&st.buf, g, st.next_emit, ctx)
                    .map(Msg::Point),
            );
            st.buf.clear();
        }
    }
}

/// Drops the leading run of entries older than `oldest`, as a window's buffer does.
fn drop_older(buf: &mut VecDeque<ValueEntry>, oldest: i64) {
    while buf.front().is_some_and(|e| e.0 < oldest) {
        buf.pop_front();
    }
}

pub(crate) struct WindowReduceRt {
    spec: WindowSpec,
    reducer: Reducer,
    groups: GroupVec<ReduceState>,
}

/// The reducer of a fused window.
struct Reducer {
    func: AggFunc,
    field: Name,
    as_name: Name,
    use_point_times: bool,
}

/// A group's open window: 128 bytes, aligned so they are one pair of cache lines, with what
/// every reducer reads in the first line.
#[repr(C, align(64))]
struct ReduceState {
    next_emit: i64,
    window: Running,
}

/// What a window's batch would have told its reducer, gathered point by point.
#[repr(C)]
struct Running {
    /// The sum of the values as floats, in arrival order (as a batch's values are summed).
    sum: f64,
    /// Their wrapping sum as integers, meaningful while `all_int`.
    int_sum: i64,
    /// The float of `pick` for min/max.
    pick_f: f64,
    /// Points the window keeps: all but the leading run of points older than its start,
    /// which a window's buffer drops from its front when it closes.
    kept: u32,
    /// Values of the field among the kept points.
    n: u32,
    /// Kept points without the field, counted when the window is reduced (as the reducer
    /// counts them), not before.
    missing: u32,
    /// Some point arrived in the window, counting those a window drops as too old.
    seen: bool,
    all_int: bool,
    /// Measurement of the first kept point.
    name: Option<Name>,
    /// The min/max by integer comparison (time, value), used when every value is an
    /// integer (and so set by the first).
    pick_int: (i64, i64),
    /// `first`, `last`, or the min/max so far by float comparison.
    pick: Option<(i64, Value)>,
    /// The first value that is not a number, which a numeric reducer reports.
    not_number: Option<Box<Value>>,
}

impl Default for Running {
    fn default() -> Self {
        Running {
            // Summing floats starts from -0.0, as `Iterator::sum` does.
            sum: -0.0,
            int_sum: 0,
            pick_f: 0.0,
            kept: 0,
            n: 0,
            missing: 0,
            seen: false,
            all_int: true,
            name: None,
            pick_int: (0, 0),
            pick: None,
            not_number: None,
        }
    }
}

impl Running {
    fn add(&mut self, func: AggFunc, t: i64, v: &Value) {
        self.n = self.n.saturating_add(1);
        let x = v.as_f64();
        match x {
            Some(x) => self.sum += x,
            None => {
                if self.not_number.is_none() {
                    self.not_number = Some(Box::new(v.clone()));
                }
            }
        }
        match v {
            Value::Int(i) => self.int_sum = self.int_sum.wrapping_add(*i),
            _ => self.all_int = false,
        }
        match func {
            AggFunc::First if self.pick.is_none() => self.pick = Some((t, v.clone())),
            AggFunc::Last => self.pick = Some((t, v.clone())),
            AggFunc::Min | AggFunc::Max => {
                let min = func == AggFunc::Min;
                // Only a strictly better value replaces the best, so ties keep the earliest
                // and a leading NaN stays, as a scan of the batch does.
                if let Some(x) = x {
                    let better = self.pick.is_none()
                        || if min {
                            x < self.pick_f
                        } else {
                            self.pick_f < x
                        };
                    if better {
                        self.pick = Some((t, v.clone()));
                        self.pick_f = x;
                    }
                }
                if let Value::Int(i) = *v {
                    let b = self.pick_int.1;
                    if self.n == 1 || if min { i < b } else { b < i } {
                        self.pick_int = (t, i);
                    }
                }
            }
            _ => {}
        }
    }

    /// What [`reduce`] gives for the window's values; None when a batch without values
    /// makes no point (every function but `count`).
    fn result(&self, func: AggFunc) -> Option<Result<(Option<i64>, Value), String>> {
        if self.n == 0 && func != AggFunc::Count {
            return None;
        }
        let numbers = |r: (Option<i64>, Value)| match &self.not_number {
            Some(v) => Err(needs_numbers(func, v)),
            None => Ok(r),
        };
        Some(match func {
            AggFunc::Count => Ok((None, Value::Int(self.n as i64))),
            AggFunc::Mean => numbers((None, Value::Float(self.sum / self.n as f64))),
            AggFunc::Sum if self.all_int => Ok((None, Value::Int(self.int_sum))),
            AggFunc::Sum => numbers((None, Value::Float(self.sum))),
            AggFunc::Min | AggFunc::Max if self.all_int => {
                let (t, i) = self.pick_int;
                Ok((Some(t), Value::Int(i)))
            }
            AggFunc::Min | AggFunc::Max => match &self.not_number {
                Some(v) => Err(needs_numbers(func, v)),
                None => {
                    let (t, v) = self.pick.clone()?;
                    Ok((Some(t), v))
                }
            },
            _ => {
                let (t, v) = self.pick.clone()?;
                Ok((Some(t), v))
            }
        })
    }
}

impl Reducer {
    /// The point [`AggRt`] makes of the batch of a window ending at `end` whose points are
    /// `buf`, if any.
    fn point_of_values(
        &self,
        buf: &VecDeque<ValueEntry>,
        group: GroupId,
        end: i64,
        ctx: &mut Ctx,
    ) -> Option<Point> {
        let values = window_values(buf.iter().map(|e| (e.0, e.2.as_ref())), &self.field, ctx);
        let r = reduce_window(self.func, &values)?;
        let (time, v) = emitted(r, self.use_point_times, end, ctx)?;
        Some(self.point(buf.front().map(|e| e.1.clone()), time, v, group, ctx))
    }

    /// The reducer's output point at `time`; `name` is the measurement of the window's first
    /// point.
    fn point(&self, name: Option<Name>, time: i64, v: Value, group: GroupId, ctx: &Ctx) -> Point {
        let mut fields = Fields::new();
        fields.push((self.as_name.clone(), v));
        Point {
            name: match name {
                Some(n) => n,
                None => batch_name(None, group, ctx),
            },
            time,
            tags: ctx.group_tags(group),
            fields,
            group,
        }
    }

    /// The point the reducer makes of a closed window ending at `end`, if any.
    fn point_of(&self, w: Running, group: GroupId, end: i64, ctx: &mut Ctx) -> Option<Point> {
        for _ in 0..w.missing {
            ctx.stats.missing(&ctx.task, &self.field);
        }
        let (time, v) = emitted(w.result(self.func)?, self.use_point_times, end, ctx)?;
        Some(self.point(w.name, time, v, group, ctx))
    }
}

/// The values of `field` among a window's points (time, value if the point has the field), in
/// order; a point without it is counted as missing.
fn window_values<'a>(
    points: impl ExactSizeIterator<Item = (i64, Option<&'a Value>)>,
    field: &str,
    ctx: &mut Ctx,
) -> Vec<(i64, Value)> {
    let mut values = Vec::with_capacity(points.len());
    for (t, v) in points {
        match v {
            Some(v) => values.push((t, v.clone())),
            None => ctx.stats.missing(&ctx.task, field),
        }
    }
    values
}

/// [`reduce`] over a window's values; None when a window without values makes no point (every
/// function but `count`).
fn reduce_window(
    func: AggFunc,
    values: &[(i64, Value)],
) -> Option<Result<(Option<i64>, Value), String>> {
    (!values.is_empty() || func == AggFunc::Count).then(|| reduce(func, values))
}

/// The time and value a reducer emits for a window ending at `end`, from what its function
/// gave: the window's end, or with `.usePointTimes()` the selected value's own time. An error
/// is counted and emits nothing.
fn emitted(
    r: Result<(Option<i64>, Value), String>,
    use_point_times: bool,
    end: i64,
    ctx: &mut Ctx,
) -> Option<(i64, Value)> {
    match r {
        Ok((t, v)) => Some((
            if use_point_times {
                t.unwrap_or(end)
            } else {
                end
            },
            v,
        )),
        Err(e) => {
            ctx.stats.type_error(&ctx.task, e);
            None
        }
    }
}

impl WindowReduceRt {
    /// Like [`WindowRt::point`] followed by the reducer of the batch it may emit.
    fn point(&mut self, p: Point, ctx: &mut Ctx, out: &mut Out) {
        let WindowReduceRt {
            spec,
            reducer,
            groups,
        } = self;
        let (t, group) = (p.time, p.group);
        let st = groups.get_or_insert_with(group, || ReduceState {
            next_emit: first_emit(spec, t),
            window: Running::default(),
        });
        if t >= st.next_emit {
            let end = st.next_emit;
            st.next_emit = next_emit_after(spec, t);
            let closed = std::mem::take(&mut st.window);
            out.extend(reducer.point_of(closed, group, end, ctx).map(Msg::Point));
        }
        add_point(st, spec, reducer, p);
    }

    /// Like [`WindowRt::close_idle`].
    fn close_idle(&mut self, cutoff: i64, ctx: &mut Ctx, out: &mut Out) {
        let due: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, st)| st.next_emit <= cutoff && st.window.seen)
            .map(|(g, _)| g)
            .collect();
        for g in due {
            if let Some(st) = self.groups.remove(g)
                && st.window.kept > 0
            {
                let p = self.reducer.point_of(st.window, g, st.next_emit, ctx);
                out.extend(p.map(Msg::Point));
            }
        }
    }

    /// Like [`WindowRt::flush`].
    fn flush(&mut self, ctx: &mut Ctx, out: &mut Out) {
        for (g, st) in self.groups.iter_mut() {
            if !st.window.seen {
                continue;
            }
            let w = std::mem::take(&mut st.window);
            out.extend(
                self.reducer
                    .point_of(w, g, st.next_emit, ctx)
                    .map(Msg::Point),
            );
        }
    }
}

/// Adds a point to its group's open window.
fn add_point(st: &mut ReduceState, spec: &WindowSpec, reducer: &Reducer, p: Point) {
    let w = &mut st.window;
    w.seen = true;
    if w.kept == 0 && p.time < st.next_emit.saturating_sub(spec.period) {
        return;
    }
    w.kept = w.kept.saturating_add(1);
    match p.field(&reducer.field) {
        Some(v) => w.add(reducer.func, p.time, v),
        None => w.missing = w.missing.saturating_add(1),
    }
    if w.name.is_none() {
        w.name = Some(p.name);
    }
}

// ---------------------------------------------------------------------------------------------
// groupBy

fn regroup(spec: &GroupSpec, msg: Msg, ctx: &mut Ctx, out: &mut Out) {
    match msg {
        Msg::Point(mut p) => {
            p.group = ctx.regroup(spec, &p.name, &p.tags, p.time);
            out.push(Msg::Point(p));
        }
        Msg::Batch(b) => {
            let mut parts: Vec<Batch> = Vec::new();
            for mut p in b.points {
                p.group = ctx.regroup(spec, &p.name, &p.tags, p.time);
                match parts.iter_mut().find(|x| x.group == p.group) {
                    Some(x) => x.points.push(p),
                    None => parts.push(Batch {
                        name: p.name.clone(),
                        time: b.time,
                        tags: ctx.group_tags(p.group),
                        group: p.group,
                        points: vec![p],
                    }),
                }
            }
            out.extend(parts.into_iter().map(Msg::Batch));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// aggregates

pub(crate) struct AggRt {
    spec: AggSpec,
    field: Name,
    as_name: Name,
    /// Further (field, output) pairs of the multi-field extension.
    more: Vec<(Name, Name)>,
    /// Per group, one state per computed field.
    groups: GroupVec<SmallVec<[AggState; 1]>>,
}

#[derive(Default)]
struct AggState {
    prev: Option<(i64, f64)>,
    prev_value: Option<Value>,
    ring: VecDeque<f64>,
    sum: f64,
    int_sum: i64,
}

/// A value as a hash key (floats by their bits, so `distinct` and `mode` need no pairwise scan).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ValueKey {
    Float(u64),
    Int(i64),
    Str(Arc<str>),
    Bool(bool),
    Duration(i64),
    Time(i64),
}

impl ValueKey {
    fn of(v: &Value) -> ValueKey {
        match v {
            // -0.0 and 0.0 are the same value.
            Value::Float(f) => ValueKey::Float(if *f == 0.0 { 0 } else { f.to_bits() }),
            Value::Int(i) => ValueKey::Int(*i),
            Value::Str(s) => ValueKey::Str(s.clone()),
            Value::Bool(b) => ValueKey::Bool(*b),
            Value::Duration(d) => ValueKey::Duration(*d),
            Value::Time(t) => ValueKey::Time(*t),
        }
    }
}

/// Orders values of the same kind (numbers numerically, strings lexically).
fn compare_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => a.to_string().cmp(&b.to_string()),
        },
    }
}

impl AggRt {
    fn process(&mut self, msg: Msg, ctx: &mut Ctx, out: &mut Out) {
        match msg {
            Msg::Batch(b) => self.batch(b, ctx, out),
            Msg::Point(mut p) => {
                let n = 1 + self.more.len();
                let AggRt {
                    spec,
                    field,
                    as_name,
                    more,
                    groups,
                } = self;
                let states = groups
                    .get_or_insert_with(p.group, || (0..n).map(|_| AggState::default()).collect());
                if let Some(results) = step(spec, (field, as_name), more, states, &p, ctx) {
                    let base = std::mem::take(&mut p.fields);
                    p.fields = merge(spec, base, results);
                    out.push(Msg::Point(p));
                }
            }
        }
    }

    fn batch(&mut self, b: Batch, ctx: &mut Ctx, out: &mut Out) {
        let values = window_values(
            b.points.iter().map(|p| (p.time, p.field(&self.field))),
            &self.field,
            ctx,
        );
        let make = |time: i64, v: Value| Point {
            name: b.name.clone(),
            time,
            tags: b.tags.clone(),
            fields: {
                let mut f = Fields::new();
                f.push((self.as_name.clone(), v));
                f
            },
            group: b.group,
        };
        if self.spec.func.is_reducer() {
            let point = reduce_window(self.spec.func, &values)
                .and_then(|r| emitted(r, self.spec.use_point_times, b.time, ctx))
                .map(|(time, v)| Msg::Point(make(time, v)));
            out.extend(point);
            return;
        }
        // Transformations of a batch produce a batch.
        let mut points = Vec::new();
        match self.spec.func {
            AggFunc::Distinct => {
                let mut seen: rustc_hash::FxHashSet<ValueKey> = rustc_hash::FxHashSet::default();
                for (t, v) in values {
                    if seen.insert(ValueKey::of(&v)) {
                        points.push(make(if self.spec.use_point_times { t } else { b.time }, v));
                    }
                }
            }
            _ => {
                let n = 1 + self.more.len();
                let mut states: SmallVec<[AggState; 1]> =
                    (0..n).map(|_| AggState::default()).collect();
                for p in &b.points {
                    let outputs = (&self.field, &self.as_name);
                    if let Some(results) =
                        step(&self.spec, outputs, &self.more, &mut states, p, ctx)
                    {
                        let mut q = make(p.time, Value::Int(0));
                        let base = if matches!(self.spec.func, AggFunc::Derivative { .. }) {
                            p.fields.clone()
                        } else {
                            Fields::new()
                        };
                        q.fields = merge(&self.spec, base, results);
                        points.push(q);
                    }
                }
            }
        }
        out.push(Msg::Batch(Batch {
            name: b.name,
            time: b.time,
            tags: b.tags,
            group: b.group,
            points,
        }));
    }
}

/// One point through the stream form of an aggregate's function, for every field it computes
/// (`outputs` is the first field and its output name, `more` the others): the results, or None
/// until every field has a value (a derivative's first point).
fn step(
    spec: &AggSpec,
    outputs: (&Name, &Name),
    more: &[(Name, Name)],
    states: &mut [AggState],
    p: &Point,
    ctx: &mut Ctx,
) -> Option<Fields> {
    let mut results = Fields::new();
    for (i, st) in states.iter_mut().enumerate() {
        let (field, as_name) = if i == 0 {
            outputs
        } else {
            (&more[i - 1].0, &more[i - 1].1)
        };
        if let Some(v) = stream_step(spec, field, st, p, ctx) {
            results.push((as_name.clone(), v));
        }
    }
    (results.len() == states.len()).then_some(results)
}

/// The output fields: derivative keeps the point's fields (`base`) and sets the rates in them, as
/// Kapacitor's does; the other functions emit only their results.
fn merge(spec: &AggSpec, mut base: Fields, results: Fields) -> Fields {
    if !matches!(spec.func, AggFunc::Derivative { .. }) {
        return results;
    }
    for (k, v) in results {
        match base.iter_mut().find(|(n, _)| *n == k) {
            Some(slot) => slot.1 = v,
            None => base.push((k, v)),
        }
    }
    base
}

/// One step of the stream forms of difference, derivative, movingAverage and cumulativeSum.
fn stream_step(
    spec: &AggSpec,
    field: &str,
    st: &mut AggState,
    p: &Point,
    ctx: &mut Ctx,
) -> Option<Value> {
    let Some(v) = p.field(field) else {
        ctx.stats.missing(&ctx.task, field);
        return None;
    };
    let Some(x) = v.as_f64() else {
        ctx.stats.type_error(
            &ctx.task,
            format!(
                "{} needs a numeric field, '{field}' is {}",
                func_name(spec.func),
                v.type_name()
            ),
        );
        return None;
    };
    match spec.func {
        AggFunc::Difference => {
            let prev = st.prev_value.replace(v.clone());
            match (prev, v) {
                (Some(Value::Int(a)), Value::Int(b)) => Some(Value::Int(b.wrapping_sub(a))),
                (Some(a), _) => a.as_f64().map(|a| Value::Float(x - a)),
                (None, _) => None,
            }
        }
        AggFunc::Derivative { unit, non_negative } => {
            let prev = st.prev.replace((p.time, x));
            let (t0, x0) = prev?;
            let dt = p.time.saturating_sub(t0);
            if dt <= 0 {
                return None;
            }
            let rate = (x - x0) * unit as f64 / dt as f64;
            if non_negative && rate < 0.0 {
                return None;
            }
            Some(Value::Float(rate))
        }
        AggFunc::MovingAverage(n) => {
            st.ring.push_back(x);
            st.sum += x;
            if st.ring.len() > n {
                st.sum -= st.ring.pop_front().unwrap_or(0.0);
            }
            (st.ring.len() == n).then(|| Value::Float(st.sum / n as f64))
        }
        AggFunc::CumulativeSum => {
            st.sum += x;
            Some(match v {
                Value::Int(i) => {
                    st.int_sum = st.int_sum.wrapping_add(*i);
                    Value::Int(st.int_sum)
                }
                _ => Value::Float(st.sum),
            })
        }
        _ => None,
    }
}

fn func_name(f: AggFunc) -> &'static str {
    match f {
        AggFunc::Mean => "mean",
        AggFunc::Median => "median",
        AggFunc::Sum => "sum",
        AggFunc::Count => "count",
        AggFunc::Min => "min",
        AggFunc::Max => "max",
        AggFunc::First => "first",
        AggFunc::Last => "last",
        AggFunc::Spread => "spread",
        AggFunc::Stddev => "stddev",
        AggFunc::Percentile(_) => "percentile",
        AggFunc::Distinct => "distinct",
        AggFunc::Mode => "mode",
        AggFunc::Difference => "difference",
        AggFunc::Derivative { .. } => "derivative",
        AggFunc::MovingAverage(_) => "movingAverage",
        AggFunc::CumulativeSum => "cumulativeSum",
    }
}

/// Reduces a batch's values; returns the selected point's time for selectors.
/// The error of a reducer that needs numbers and met `v`.
fn needs_numbers(func: AggFunc, v: &Value) -> String {
    format!(
        "{} needs numbers, got {} '{}'",
        func_name(func),
        v.type_name(),
        v
    )
}

fn reduce(func: AggFunc, values: &[(i64, Value)]) -> Result<(Option<i64>, Value), String> {
    let nums = || -> Result<Vec<f64>, String> {
        values
            .iter()
            .map(|(_, v)| v.as_f64().ok_or_else(|| needs_numbers(func, v)))
            .collect()
    };
    let all_int = values.iter().all(|(_, v)| matches!(v, Value::Int(_)));
    Ok(match func {
        AggFunc::Count => (None, Value::Int(values.len() as i64)),
        AggFunc::Mean => {
            let n = nums()?;
            (None, Value::Float(n.iter().sum::<f64>() / n.len() as f64))
        }
        AggFunc::Sum => {
            if all_int {
                (
                    None,
                    Value::Int(
                        values
                            .iter()
                            .map(|(_, v)| if let Value::Int(i) = v { *i } else { 0 })
                            .fold(0i64, i64::wrapping_add),
                    ),
                )
            } else {
                (None, Value::Float(nums()?.iter().sum()))
            }
        }
        AggFunc::Median => {
            let mut n = nums()?;
            n.sort_by(f64::total_cmp);
            let m = n.len() / 2;
            (
                None,
                Value::Float(if n.len() % 2 == 0 {
                    (n[m - 1] + n[m]) / 2.0
                } else {
                    n[m]
                }),
            )
        }
        AggFunc::Min | AggFunc::Max => {
            // Integers compare exactly (f64 cannot tell 2^53 from 2^53 + 1).
            let floats = if all_int { Vec::new() } else { nums()? };
            let less = |a: usize, b: usize| match (&values[a].1, &values[b].1) {
                (Value::Int(x), Value::Int(y)) if all_int => x < y,
                _ => floats[a] < floats[b],
            };
            let mut best = 0;
            for i in 1..values.len() {
                let better = if func == AggFunc::Min {
                    less(i, best)
                } else {
                    less(best, i)
                };
                if better {
                    best = i;
                }
            }
            (Some(values[best].0), values[best].1.clone())
        }
        AggFunc::First => (Some(values[0].0), values[0].1.clone()),
        AggFunc::Last => {
            let (t, v) = &values[values.len() - 1];
            (Some(*t), v.clone())
        }
        AggFunc::Spread if all_int => {
            let ints = values
                .iter()
                .map(|(_, v)| if let Value::Int(i) = v { *i } else { 0 });
            let (lo, hi) = ints.fold((i64::MAX, i64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
            (None, Value::Int(hi.saturating_sub(lo)))
        }
        AggFunc::Spread => {
            let n = nums()?;
            let (lo, hi) = n
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
                    (lo.min(*x), hi.max(*x))
                });
            if all_int {
                (None, Value::Int((hi - lo) as i64))
            } else {
                (None, Value::Float(hi - lo))
            }
        }
        AggFunc::Stddev => {
            let n = nums()?;
            if n.len() < 2 {
                (None, Value::Float(0.0))
            } else {
                let mean = n.iter().sum::<f64>() / n.len() as f64;
                let var = n.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n.len() - 1) as f64;
                (None, Value::Float(var.sqrt()))
            }
        }
        AggFunc::Percentile(pct) => {
            let mut idx: Vec<usize> = (0..values.len()).collect();
            let n = nums()?;
            idx.sort_by(|a, b| n[*a].total_cmp(&n[*b]));
            // Nearest rank, as InfluxQL computes it.
            let rank = ((values.len() as f64 * pct / 100.0 + 0.5).floor() as usize)
                .clamp(1, values.len())
                - 1;
            let (t, v) = &values[idx[rank]];
            (Some(*t), v.clone())
        }
        AggFunc::Mode => {
            // The most frequent value; ties go to the smallest value, as in Kapacitor.
            let mut counts: rustc_hash::FxHashMap<ValueKey, (usize, &Value)> =
                rustc_hash::FxHashMap::default();
            for (_, v) in values {
                counts.entry(ValueKey::of(v)).or_insert((0, v)).0 += 1;
            }
            let best = counts
                .into_values()
                .max_by(|(ca, a), (cb, b)| ca.cmp(cb).then_with(|| compare_values(b, a)));
            (None, best.map_or(Value::Int(0), |(_, v)| v.clone()))
        }
        _ => return Err(format!("{} is not a reducer", func_name(func))),
    })
}

// ---------------------------------------------------------------------------------------------
// eval

pub(crate) struct EvalRt {
    spec: EvalSpec,
    names: Vec<Name>,
    states: GroupVec<Vec<LambdaState>>,
}

impl EvalRt {
    fn eval_point(&mut self, mut p: Point, ctx: &mut Ctx) -> Option<Point> {
        let stateful = self.spec.lambdas.iter().any(Lambda::is_stateful);
        let mut results: SmallVec<[(Name, Value); 4]> = SmallVec::new();
        let mut tags_changed: Option<TagSet> = None;
        for (i, l) in self.spec.lambdas.iter().enumerate() {
            let r = if stateful {
                let states = self.states.get_or_insert_with(p.group, || {
                    self.spec.lambdas.iter().map(Lambda::new_state).collect()
                });
                l.eval(&p, &mut states[i])
            } else {
                l.eval_stateless(&p)
            };
            match r {
                Ok(v) => {
                    let name = self.names[i].clone();
                    if self.spec.tags.iter().any(|t| **t == *name) {
                        let base = tags_changed.take().unwrap_or_else(|| (*p.tags).clone());
                        tags_changed = Some(base.with(name, v.to_string().into()));
                    } else {
                        // Later expressions can read earlier results.
                        p.set_field(name.clone(), v.clone());
                        results.push((name, v));
                    }
                }
                Err(e) => {
                    ctx.stats.error(&ctx.task, &e);
                    return None;
                }
            }
        }
        if let Some(t) = tags_changed {
            p.tags = Arc::new(t);
        }
        match &self.spec.keep {
            None => p.fields = results.into_iter().collect(),
            Some(list) if list.is_empty() => {}
            Some(list) => p.fields.retain(|(k, _)| list.iter().any(|n| **n == **k)),
        }
        Some(p)
    }

    fn process(&mut self, msg: Msg, ctx: &mut Ctx, out: &mut Out) {
        match msg {
            Msg::Point(p) => {
                if let Some(p) = self.eval_point(p, ctx) {
                    out.push(Msg::Point(p));
                }
            }
            Msg::Batch(mut b) => {
                let points = std::mem::take(&mut b.points);
                b.points = points
                    .into_iter()
                    .filter_map(|p| self.eval_point(p, ctx))
                    .collect();
                out.push(Msg::Batch(b));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// default, delete, sample, state, log

fn apply_default(spec: &DefaultSpec, fields: &[(Name, Value)], mut p: Point) -> Option<Point> {
    for (k, v) in fields {
        if p.field(k).is_none() {
            p.fields.push((k.clone(), v.clone()));
        }
    }
    for (k, v) in &spec.tags {
        if p.tags.get(k).is_none() {
            p.tags = Arc::new(p.tags.with(k.as_str().into(), v.as_str().into()));
        }
    }
    Some(p)
}

fn apply_delete(spec: &DeleteSpec, mut p: Point) -> Option<Point> {
    p.fields
        .retain(|(k, _)| !spec.fields.iter().any(|f| **f == **k));
    for t in &spec.tags {
        if p.tags.get(t).is_some() {
            p.tags = Arc::new(p.tags.without(t));
        }
    }
    Some(p)
}

fn sample_keep(spec: &SampleSpec, groups: &mut GroupVec<(i64, i64)>, g: GroupId, t: i64) -> bool {
    let st = groups.get_or_insert_with(g, || (0, i64::MIN));
    match spec {
        SampleSpec::Count(n) => {
            let keep = st.0 % n == 0;
            st.0 += 1;
            keep
        }
        SampleSpec::Every(d) => {
            if st.1 == i64::MIN || t >= st.1 {
                st.1 = truncate(t, *d).saturating_add(*d);
                true
            } else {
                false
            }
        }
    }
}

pub(crate) struct StateRt {
    spec: StateSpec,
    as_name: Name,
    groups: GroupVec<(Option<i64>, i64, LambdaState)>,
}

impl StateRt {
    fn process(&mut self, msg: Msg, ctx: &mut Ctx, out: &mut Out) {
        let Msg::Point(mut p) = msg else { return };
        let spec = &self.spec;
        let st = self
            .groups
            .get_or_insert_with(p.group, || (None, 0, spec.lambda.new_state()));
        match spec.lambda.eval_bool(&p, &mut st.2) {
            Ok(true) => {
                let v = if spec.duration {
                    let start = *st.0.get_or_insert(p.time);
                    Value::Float((p.time - start) as f64 / spec.unit as f64)
                } else {
                    st.1 += 1;
                    Value::Int(st.1)
                };
                p.set_field(self.as_name.clone(), v);
            }
            Ok(false) => {
                st.0 = None;
                st.1 = 0;
                let v = if spec.duration {
                    Value::Float(-1.0)
                } else {
                    Value::Int(-1)
                };
                p.set_field(self.as_name.clone(), v);
            }
            Err(e) => {
                ctx.stats.error(&ctx.task, &e);
                return;
            }
        }
        out.push(Msg::Point(p));
    }
}

fn log_msg(spec: &LogSpec, node: &str, task: &str, msg: &Msg) {
    let describe = |p: &Point| {
        let fields: Vec<String> = p.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let tags: Vec<String> = p.tags.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "{} {} {} {}",
            p.name,
            tags.join(","),
            fields.join(","),
            crate::rules::format_rfc3339(p.time)
        )
    };
    let text = match msg {
        Msg::Point(p) => describe(p),
        Msg::Batch(b) => {
            let pts: Vec<String> = b.points.iter().map(describe).collect();
            format!(
                "batch at {} of {} points: {}",
                crate::rules::format_rfc3339(b.time),
                b.points.len(),
                pts.join("; ")
            )
        }
    };
    match spec.level.as_str() {
        "DEBUG" => tracing::debug!(task, node, prefix = %spec.prefix, "{text}"),
        "WARN" => tracing::warn!(task, node, prefix = %spec.prefix, "{text}"),
        "ERROR" => tracing::error!(task, node, prefix = %spec.prefix, "{text}"),
        _ => tracing::info!(task, node, prefix = %spec.prefix, "{text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fused_window_slot_is_one_pair_of_cache_lines() {
        assert_eq!(std::mem::size_of::<Option<ReduceState>>(), 128);
        assert_eq!(std::mem::align_of::<Option<ReduceState>>(), 64);
    }
}
