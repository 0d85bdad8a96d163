//! The alert node's state machine and the deadman switch.
//!
//! Per group: the level is determined from `crit` down with reset expressions holding the current
//! level; an event is emitted on a change, on every non-OK evaluation unless `stateChangesOnly`
//! (which repeats after its interval), and on recovery unless `noRecoveries`; flapping detection
//! suppresses events while the weighted change rate is high. `docs/semantics.md` states the rules.
//!
//! The deadman counts the points each group sends per interval on the task's clock and alerts
//! when a group that was seen falls to the threshold.

use std::sync::Arc;

use super::event::{AlertEvent, EventData, FieldMap, TagMap, TemplateData};
use super::nodes::Out;
use super::point::*;
use super::task::Ctx;
use crate::rules::lambda::{Lambda, LambdaState, Value};
use crate::rules::plan::{AlertSpec, DeadmanSpec, Level, Tmpl};

/// Flapping weights: the oldest change counts 0.8, the newest 1.2 (as Nagios and Kapacitor).
const MAX_WEIGHT: f64 = 1.2;
const WEIGHT_DIFF: f64 = 1.5;

/// Levels an alert's history holds inline (Kapacitor's default history is 21); a longer
/// `.history()` spills to the heap.
type History = smallvec::SmallVec<[Level; 24]>;

struct AlertState {
    history: History,
    idx: usize,
    changed: bool,
    flapping: bool,
    expired: bool,
    first_triggered: i64,
    last_triggered: i64,
    last_event_level: Level,
    lambda_states: Vec<LambdaState>,
    /// The rendered id and the tag set it was rendered for (held, so its address cannot be
    /// reused by another tag set while cached).
    id_cache: Option<(Tags, Arc<str>)>,
}

impl AlertState {
    fn new(history: usize) -> Self {
        AlertState {
            history: History::from_elem(Level::Ok, history.max(2)),
            idx: 0,
            changed: false,
            flapping: false,
            expired: false,
            first_triggered: 0,
            last_triggered: 0,
            last_event_level: Level::Ok,
            lambda_states: Vec::new(),
            id_cache: None,
        }
    }

    fn current(&self) -> Level {
        self.history[self.idx]
    }

    fn add_event(&mut self, t: i64, level: Level, spec: &AlertSpec) {
        self.changed = self.history[self.idx] != level;
        self.idx = (self.idx + 1) % self.history.len();
        self.history[self.idx] = level;
        if let Some((low, high)) = spec.flapping {
            let p = self.percent_change();
            if self.flapping && p < low {
                self.flapping = false;
            } else if !self.flapping && p > high {
                self.flapping = true;
            }
        }
        self.expired = match spec.state_changes_only {
            Some(d) if d > 0 => !self.changed && t - self.last_triggered >= d,
            _ => false,
        };
    }

    /// Weighted share of level changes across the history, oldest to newest.
    fn percent_change(&self) -> f64 {
        let l = self.history.len();
        let mut weight = MAX_WEIGHT / WEIGHT_DIFF;
        let step = (MAX_WEIGHT - weight) / (l - 1) as f64;
        let mut changes = 0.0;
        // Oldest entry sits just after the newest in the ring.
        for i in 0..l - 1 {
            let prev = (self.idx + 1 + i) % l;
            let cur = (prev + 1) % l;
            if self.history[cur] != self.history[prev] {
                changes += weight;
            }
            weight += step;
        }
        changes / (l - 1) as f64
    }

    fn triggered(&mut self, t: i64) {
        self.last_triggered = t;
        let l = self.history.len();
        let prev = (self.idx + l - 1) % l;
        if self.history[prev] == Level::Ok {
            self.first_triggered = t;
        }
    }

    fn duration(&self) -> i64 {
        self.last_triggered - self.first_triggered
    }
}

/// How a group's level is decided.
enum Levels {
    /// `.info() .warn() .crit()` with resets.
    Lambdas,
    /// The deadman: CRITICAL when `emitted <= threshold` (and the extra condition holds).
    Deadman {
        threshold: f64,
        extra: Option<Lambda>,
    },
}

pub(crate) struct AlertRt {
    spec: Arc<AlertSpec>,
    node: Arc<str>,
    levels: Levels,
    states: GroupVec<AlertState>,
    stateful: bool,
    level_tag: Option<Name>,
    level_field: Option<Name>,
    id_tag: Option<Name>,
    id_field: Option<Name>,
    message_field: Option<Name>,
    duration_field: Option<Name>,
    /// The id template reads only group-constant data, so it is rendered once per group.
    id_per_group: bool,
}

impl AlertRt {
    /// Starts loading a group's alert state ([`super::point::prefetch`]).
    #[inline]
    pub(crate) fn prefetch(&self, g: GroupId) {
        self.states.prefetch(g);
    }
}

/// Which lambda slot a level or reset uses in `lambda_states`.
fn slot(level: usize, reset: bool) -> usize {
    level + if reset { 3 } else { 0 }
}

impl AlertRt {
    pub(crate) fn new(spec: Arc<AlertSpec>, node: Arc<str>, names: &mut NameCache) -> AlertRt {
        let stateful = spec
            .levels
            .iter()
            .chain(spec.resets.iter())
            .flatten()
            .any(Lambda::is_stateful);
        let used = spec.id.template.fields_used();
        let id_per_group = !used.whole_dot
            && used.names.iter().all(|n| {
                matches!(
                    n.as_str(),
                    "Name" | "TaskName" | "Group" | "Tags" | "ServerInfo"
                )
            });
        let name = |o: &Option<String>, names: &mut NameCache| o.as_deref().map(|s| names.get(s));
        AlertRt {
            level_tag: name(&spec.level_tag, names),
            level_field: name(&spec.level_field, names),
            id_tag: name(&spec.id_tag, names),
            id_field: name(&spec.id_field, names),
            message_field: name(&spec.message_field, names),
            duration_field: name(&spec.duration_field, names),
            spec,
            node,
            levels: Levels::Lambdas,
            states: GroupVec::default(),
            stateful,
            id_per_group,
        }
    }

    pub(crate) fn drop_group(&mut self, g: GroupId) {
        self.states.remove(g);
    }

    pub(crate) fn state_bytes(&self) -> usize {
        self.states.slot_bytes()
            + self
                .states
                .iter()
                .map(|(_, s)| {
                    std::mem::size_of::<AlertState>()
                        + if s.history.spilled() {
                            s.history.len()
                        } else {
                            0
                        }
                        + s.lambda_states
                            .iter()
                            .map(LambdaState::heap_bytes)
                            .sum::<usize>()
                        + s.id_cache.as_ref().map_or(0, |(_, id)| id.len() + 16)
                })
                .sum::<usize>()
    }

    pub(crate) fn process(&mut self, msg: Msg, ctx: &mut Ctx, out: &mut Out) {
        match msg {
            Msg::Point(p) => self.point(p, ctx, out),
            Msg::Batch(b) => self.batch(b, ctx, out),
        }
    }

    fn state(&mut self, g: GroupId) -> &mut AlertState {
        let spec = &self.spec;
        let stateful = self.stateful;
        self.states.get_or_insert_with(g, || {
            let mut st = AlertState::new(spec.history);
            if stateful {
                st.lambda_states = (0..7)
                    .map(|i| {
                        let l = if i >= 4 {
                            &spec.resets[i - 3]
                        } else {
                            &spec.levels[i.min(3)]
                        };
                        l.as_ref().map(Lambda::new_state).unwrap_or_default()
                    })
                    .collect();
            }
            st
        })
    }

    /// Evaluates a condition; an evaluation error is counted and gives `on_error`.
    fn test(
        &self,
        l: &Lambda,
        p: &Point,
        states: &mut [LambdaState],
        slot: usize,
        ctx: &mut Ctx,
    ) -> bool {
        self.test_or(l, p, states, slot, ctx, false)
    }

    fn test_or(
        &self,
        l: &Lambda,
        p: &Point,
        states: &mut [LambdaState],
        slot: usize,
        ctx: &mut Ctx,
        on_error: bool,
    ) -> bool {
        let r = match states.get_mut(slot) {
            Some(st) => l.eval_bool(p, st),
            None => l.eval_bool(p, &mut LambdaState::default()),
        };
        match r {
            Ok(b) => b,
            Err(e) => {
                ctx.stats.error(&ctx.task, &e);
                on_error
            }
        }
    }

    fn determine_level(
        &self,
        p: &Point,
        current: Level,
        states: &mut [LambdaState],
        ctx: &mut Ctx,
    ) -> Level {
        if let Levels::Deadman { threshold, extra } = &self.levels {
            let dead = p
                .field("emitted")
                .and_then(Value::as_f64)
                .is_some_and(|e| e <= *threshold)
                && extra
                    .as_ref()
                    .is_none_or(|x| self.test(x, p, states, 0, ctx));
            return if dead { Level::Critical } else { Level::Ok };
        }
        let cur = current as usize;
        for l in (cur.max(1)..=3).rev() {
            if let Some(lambda) = &self.spec.levels[l]
                && self.test(lambda, p, states, slot(l, false), ctx)
            {
                return Level::from_index(l);
            }
        }
        // A reset that fails to evaluate does not hold the level (Kapacitor moves on too).
        if let Some(reset) = &self.spec.resets[cur]
            && !self.test_or(reset, p, states, slot(cur, true), ctx, true)
        {
            return current;
        }
        for l in (1..=cur).rev() {
            if let Some(lambda) = &self.spec.levels[l]
                && self.test(lambda, p, states, slot(l, false), ctx)
            {
                return Level::from_index(l);
            }
        }
        Level::Ok
    }

    /// Creates a group's state on first sight, resuming from a restored state if there is one.
    fn ensure(&mut self, g: GroupId, ctx: &mut Ctx) {
        if self.states.get(g).is_some() || ctx.restored.is_empty() {
            return;
        }
        let key = (self.node.clone(), ctx.group_id(g));
        if let Some(r) = ctx.restored.remove(&key) {
            let st = self.state(g);
            st.history.fill(r.level);
            st.last_event_level = r.level;
            st.first_triggered = r.first_triggered;
            st.last_triggered = r.last_event;
        }
    }

    /// Appends (node, group id, state) of every group with state.
    pub(crate) fn export(&self, ctx: &Ctx, out: &mut Vec<(String, String, super::task::Restored)>) {
        for (g, st) in self.states.iter() {
            out.push((
                self.node.to_string(),
                ctx.group_id(g).to_string(),
                super::task::Restored {
                    level: st.last_event_level,
                    first_triggered: st.first_triggered,
                    last_event: st.last_triggered,
                },
            ));
        }
    }

    fn point(&mut self, mut p: Point, ctx: &mut Ctx, out: &mut Out) {
        let g = p.group;
        self.ensure(g, ctx);
        let current = self.state(g).current();
        let mut lstates = std::mem::take(&mut self.state(g).lambda_states);
        let level = self.determine_level(&p, current, &mut lstates, ctx);
        let spec = self.spec.clone();
        let st = self.state(g);
        st.lambda_states = lstates;
        st.add_event(p.time, level, &spec);
        if (spec.flapping.is_some() && st.flapping)
            || (spec.state_changes_only.is_some() && !st.changed && !st.expired)
        {
            return;
        }
        if level == Level::Ok && !st.changed {
            return;
        }
        st.triggered(p.time);
        if spec.no_recoveries && level == Level::Ok {
            return;
        }
        let data = EventData {
            name: p.name.clone(),
            tags: p.tags.clone(),
            points: vec![(p.time, p.fields.clone())],
        };
        let ev = self.event(
            g,
            &p.name,
            &p.tags,
            Some(&p.fields),
            level,
            p.time,
            data,
            ctx,
        );
        self.augment(&mut p, &ev);
        ctx.stats.events[level as usize] += 1;
        ctx.events.push(ev);
        out.push(Msg::Point(p));
    }

    fn batch(&mut self, mut b: Batch, ctx: &mut Ctx, out: &mut Out) {
        if b.points.is_empty() {
            return;
        }
        let g = b.group;
        self.ensure(g, ctx);
        let current = self.state(g).current();
        let mut lstates = std::mem::take(&mut self.state(g).lambda_states);
        let mut lowest = Level::Critical;
        let mut highest = Level::Ok;
        let mut highest_idx: Option<usize> = None;
        for (i, p) in b.points.iter().enumerate() {
            let l = self.determine_level(p, current, &mut lstates, ctx);
            lowest = lowest.min(l);
            if l > highest || highest_idx.is_none() {
                highest = l;
                highest_idx = Some(i);
            }
        }
        let hi = highest_idx.unwrap_or(0);
        let spec = self.spec.clone();
        let level = if spec.all { lowest } else { highest };
        let t = if spec.all || level == Level::Ok {
            b.time
        } else {
            b.points[hi].time
        };
        let st = self.state(g);
        st.lambda_states = lstates;
        st.add_event(t, level, &spec);
        let fire = (st.changed && level == Level::Ok)
            || (level != Level::Ok
                && !((spec.flapping.is_some() && st.flapping)
                    || (spec.state_changes_only.is_some() && !st.changed && !st.expired)));
        if !fire {
            return;
        }
        st.triggered(t);
        if spec.no_recoveries && level == Level::Ok {
            return;
        }
        let data = EventData {
            name: b.name.clone(),
            tags: b.tags.clone(),
            points: b
                .points
                .iter()
                .map(|p| (p.time, p.fields.clone()))
                .collect(),
        };
        let fields = b.points[hi].fields.clone();
        let ev = self.event(g, &b.name, &b.tags, Some(&fields), level, t, data, ctx);
        for p in &mut b.points {
            self.augment(p, &ev);
        }
        if let Some(tag) = &self.level_tag {
            b.tags = Arc::new(b.tags.with(tag.clone(), ev.level.as_str().into()));
        }
        if let Some(tag) = &self.id_tag {
            b.tags = Arc::new(b.tags.with(tag.clone(), ev.id.as_str().into()));
        }
        ctx.stats.events[level as usize] += 1;
        ctx.events.push(ev);
        out.push(Msg::Batch(b));
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        g: GroupId,
        name: &str,
        tags: &Tags,
        fields: Option<&Fields>,
        level: Level,
        t: i64,
        data: EventData,
        ctx: &mut Ctx,
    ) -> AlertEvent {
        let group = ctx.group_id(g);
        let task = ctx.task.clone();
        let spec = self.spec.clone();
        let st = self.state(g);
        let duration = st.duration();
        let previous = st.last_event_level;
        st.last_event_level = level;
        let cached = st
            .id_cache
            .as_ref()
            .filter(|(k, _)| Arc::ptr_eq(k, tags))
            .map(|(_, id)| id.clone());
        let id: Arc<str> = match cached {
            Some(id) => id,
            None => {
                let td = TemplateData {
                    id: "",
                    name,
                    task: &task,
                    group: &group,
                    tags: TagMap(tags),
                    level: None,
                    fields: FieldMap(None),
                    time: t,
                    duration,
                    message: None,
                    details: None,
                };
                let id: Arc<str> = render(&spec.id, &td, ctx).into();
                if self.id_per_group {
                    self.state(g).id_cache = Some((tags.clone(), id.clone()));
                }
                id
            }
        };
        let mut td = TemplateData {
            id: &id,
            name,
            task: &task,
            group: &group,
            tags: TagMap(tags),
            level: Some(level),
            fields: FieldMap(fields),
            time: t,
            duration,
            message: None,
            details: None,
        };
        let message = render(&spec.message, &td, ctx);
        td.message = Some(&message);
        let details = render(&spec.details, &td, ctx);
        AlertEvent {
            task,
            node: self.node.clone(),
            id: id.to_string(),
            message,
            details,
            time: t,
            duration,
            level,
            previous_level: previous,
            recoverable: !spec.no_recoveries,
            group,
            data,
            spec,
        }
    }

    fn augment(&self, p: &mut Point, ev: &AlertEvent) {
        if let Some(tag) = &self.level_tag {
            p.tags = Arc::new(p.tags.with(tag.clone(), ev.level.as_str().into()));
        }
        if let Some(tag) = &self.id_tag {
            p.tags = Arc::new(p.tags.with(tag.clone(), ev.id.as_str().into()));
        }
        if let Some(f) = &self.level_field {
            p.set_field(f.clone(), Value::Str(ev.level.as_str().into()));
        }
        if let Some(f) = &self.id_field {
            p.set_field(f.clone(), Value::Str(ev.id.as_str().into()));
        }
        if let Some(f) = &self.message_field {
            p.set_field(f.clone(), Value::Str(ev.message.as_str().into()));
        }
        if let Some(f) = &self.duration_field {
            p.set_field(f.clone(), Value::Int(ev.duration));
        }
    }
}

fn render(t: &Tmpl, data: &TemplateData<'_>, ctx: &mut Ctx) -> String {
    let (s, report) = t.template.render_to_string(data);
    if report.missing_keys > 0 || report.errors > 0 {
        ctx.stats.template_error(
            &ctx.task,
            report.missing_keys + report.errors,
            report.first_error.as_deref(),
        );
    }
    s
}

struct DeadmanGroup {
    bucket: i64,
    count: u64,
    first_eval: i64,
}

pub(crate) struct DeadmanRt {
    interval: i64,
    pub(crate) alert: AlertRt,
    groups: GroupVec<DeadmanGroup>,
    next_tick: i64,
    emitted: Name,
}

impl DeadmanRt {
    /// Starts loading a group's deadman state ([`super::point::prefetch`]).
    #[inline]
    pub(crate) fn prefetch(&self, g: GroupId) {
        self.groups.prefetch(g);
    }

    pub(crate) fn new(spec: &DeadmanSpec, node: Arc<str>, names: &mut NameCache) -> DeadmanRt {
        let mut alert = AlertRt::new(Arc::new(spec.alert.clone()), node, names);
        alert.levels = Levels::Deadman {
            threshold: spec.threshold,
            extra: spec.extra.clone(),
        };
        DeadmanRt {
            interval: spec.interval,
            alert,
            groups: GroupVec::default(),
            next_tick: i64::MIN,
            emitted: names.get("emitted"),
        }
    }

    pub(crate) fn drop_group(&mut self, g: GroupId) {
        self.groups.remove(g);
        self.alert.drop_group(g);
    }

    pub(crate) fn state_bytes(&self) -> usize {
        self.groups.slot_bytes() + self.alert.state_bytes()
    }

    /// Counts a point (or a batch, as one) reaching the deadman.
    pub(crate) fn observe(&mut self, msg: Msg, _ctx: &mut Ctx) {
        let (g, t) = match &msg {
            Msg::Point(p) => (p.group, p.time),
            Msg::Batch(b) => (b.group, b.time),
        };
        let i = self.interval;
        let bucket = t.div_euclid(i);
        if self.next_tick == i64::MIN {
            self.next_tick = boundary(bucket.saturating_add(1), i);
        }
        let dg = self.groups.get_or_insert_with(g, || {
            // The first interval the group was watched for whole.
            let start = if t.rem_euclid(i) == 0 {
                t
            } else {
                boundary(bucket.saturating_add(1), i)
            };
            DeadmanGroup {
                bucket,
                count: 0,
                first_eval: start.saturating_add(i),
            }
        });
        if bucket != dg.bucket {
            dg.bucket = bucket;
            dg.count = 0;
        }
        dg.count += 1;
    }

    /// Evaluates the interval boundaries up to `now`. A group is not evaluated at boundaries past
    /// its own expiry (`last_seen + expiry`): by then it is dropped. After a gap of many
    /// intervals each group is evaluated only where its level can change: the boundary closing
    /// its last active interval, the first boundary after a whole silent one, and the latest.
    pub(crate) fn tick(&mut self, now: i64, expiry: i64, ctx: &mut Ctx, out: &mut Out) {
        if self.next_tick == i64::MIN || self.next_tick == i64::MAX || self.next_tick > now {
            return;
        }
        let i = self.interval;
        let last = boundary(now.div_euclid(i), i);
        let first = self.next_tick;
        let steps = (i128::from(last) - i128::from(first)) / i128::from(i) + 1;
        let mut due: Vec<(i64, GroupId, u64)> = Vec::new();
        for (g, dg) in self.groups.iter() {
            if ctx.groups.get(g).is_none() {
                continue;
            }
            let until = ctx.groups.last_seen(g).saturating_add(expiry);
            let count_at = |b: i64| {
                if dg.bucket == b.div_euclid(i) - 1 {
                    dg.count
                } else {
                    0
                }
            };
            let mut consider = |b: i64| {
                if b >= first && b <= last && b >= dg.first_eval && b <= until {
                    due.push((b, g, count_at(b)));
                }
            };
            if steps <= 3 {
                let mut b = first;
                while b <= last {
                    consider(b);
                    match b.checked_add(i) {
                        Some(n) => b = n,
                        None => break,
                    }
                }
            } else {
                let active_end = boundary(dg.bucket.saturating_add(1), i);
                consider(active_end);
                consider(active_end.saturating_add(i));
                if last != active_end && last != active_end.saturating_add(i) {
                    consider(last);
                }
            }
        }
        due.sort_by_key(|(b, g, _)| (*b, *g));
        due.dedup_by_key(|(b, g, _)| (*b, *g));
        for (b, g, count) in due {
            let Some(entry) = ctx.groups.get(g) else {
                continue;
            };
            let mut fields = Fields::new();
            fields.push((self.emitted.clone(), Value::Float(count as f64)));
            let p = Point {
                name: entry.name.clone(),
                time: b,
                tags: entry.tags.clone(),
                fields,
                group: g,
            };
            self.alert.point(p, ctx, out);
        }
        // i64::MAX marks that no later boundary is representable.
        self.next_tick = last.checked_add(i).unwrap_or(i64::MAX);
    }
}

/// The start of interval `index` of length `i`, clamped to the i64 range.
fn boundary(index: i64, i: i64) -> i64 {
    index
        .checked_mul(i)
        .unwrap_or(if index < 0 { i64::MIN + 1 } else { i64::MAX })
}
