//! The dispatcher: one task that owns the alert manager's state — alerts, aggregation groups,
//! silences, the inhibition index and the notification log — and decides what is notified when.
//!
//! - Rule events arrive from the engine threads; each becomes (or resolves) an alert. Rules
//!   with TICK handlers notify those handlers at once, one notification per event, unless
//!   silenced or inhibited; the others go through the routing tree.
//! - Routed alerts join one aggregation group per matching route and group-by values. A group
//!   is flushed `group_wait` after it is created, then every `group_interval`; a flush notifies
//!   only when the notification log says so (new firing alerts, resolved ones, or
//!   `repeat_interval` passed).
//! - Every notification is written to SQLite (the outbox) in one transaction with the log entry
//!   that deduplicates it, before anything is sent; delivery is another task's job.
//!
//! Nothing here waits on a receiver. The task's inbox is bounded: the engine threads block on
//! it (so ingest answers 429 when the manager falls behind), the HTTP API answers 503.

use crate::clock::now_ns;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::alert::{Alert, Source};
use super::inhibit::Inhibitor;
use super::labels::{LabelSet, fingerprint};
use super::nflog::{self, Entry, Log};
use super::route::{RouteNode, group_key, group_labels};
use super::silence::{Silence, SilenceError, SilenceSpec, SilenceState, Silences};
use crate::receivers::config::Receivers;
use crate::receivers::notification::{AlertStatus, Notification, NotifiedAlert};
use crate::receivers::tick::HandlerTarget;
use crate::rules::plan::Level;
use crate::service::metrics::Metrics;
use crate::storage::{AlertRow, Changes, EventRecord, NflogRow, SilenceRow, Storage};

/// A rule's alert event on its way to the dispatcher.
#[derive(Debug)]
pub struct RuleEvent {
    /// The event as stored.
    pub record: EventRecord,
    /// The alert at the event's level (for OK: its labels carry `severity="ok"`; ignored).
    pub alert: Alert,
    /// The event's level.
    pub level: Level,
    /// The rule's handlers, resolved against the event.
    pub handlers: Vec<HandlerTarget>,
}

/// What the dispatcher is asked to do.
#[derive(Debug)]
pub enum Msg {
    /// A rule's alert event.
    Rule(Box<RuleEvent>),
    /// Alerts posted to the API (already validated).
    Post(Vec<Alert>, oneshot::Sender<()>),
    /// Create or update a silence (`id` None: create).
    SetSilence(
        Option<String>,
        SilenceSpec,
        oneshot::Sender<Result<String, SilenceError>>,
    ),
    /// Expire a silence.
    ExpireSilence(String, oneshot::Sender<Result<(), SilenceError>>),
    /// Read the state for the APIs.
    Query(Query),
    /// New receivers and routing.
    Reload(Arc<Receivers>),
    /// A host was retired: resolve its alerts (label `host`, or the second field, the
    /// `[hosts] tag` rule alerts carry as a label), answering how many.
    Retire(String, String, oneshot::Sender<usize>),
}

/// Reads for the APIs and UI.
#[derive(Debug)]
pub enum Query {
    /// Every alert with its status.
    Alerts(oneshot::Sender<Vec<AlertView>>),
    /// Every aggregation group with its alerts.
    Groups(oneshot::Sender<Vec<GroupView>>),
    /// Every silence.
    Silences(oneshot::Sender<Vec<SilenceView>>),
}

/// An alert as the APIs show it.
#[derive(Debug, Clone)]
pub struct AlertView {
    /// The alert.
    pub alert: Alert,
    /// `active`, or `suppressed` when silenced or inhibited.
    pub state: &'static str,
    /// Silences muting it.
    pub silenced_by: Vec<String>,
    /// Fingerprints of alerts inhibiting it.
    pub inhibited_by: Vec<String>,
    /// Time intervals muting its routes now.
    pub muted_by: Vec<String>,
    /// Receivers of the routes it matches.
    pub receivers: Vec<String>,
}

/// An aggregation group as the APIs show it.
#[derive(Debug, Clone)]
pub struct GroupView {
    /// The group's labels (the route's `group_by` values).
    pub labels: LabelSet,
    /// The route's receiver.
    pub receiver: String,
    /// Its alerts, by fingerprint.
    pub alerts: Vec<AlertView>,
}

/// A silence as the APIs show it.
#[derive(Debug, Clone)]
pub struct SilenceView {
    /// Id.
    pub id: String,
    /// The silence.
    pub spec: SilenceSpec,
    /// State now.
    pub state: SilenceState,
    /// Last update, Unix ns.
    pub updated_at: i64,
    /// For a recurring silence: the current or next occurrence.
    pub next: Option<(i64, i64)>,
}

struct Group {
    node: usize,
    key: String,
    labels: LabelSet,
    alerts: FxHashSet<u64>,
    next_flush: Instant,
}

/// Settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Links in notifications.
    pub external_url: String,
    /// Expired silences kept this long (ns).
    pub silence_retention: i64,
}

/// The dispatcher's state.
pub struct Dispatcher {
    cfg: Arc<Receivers>,
    nodes: Vec<RouteNode>,
    /// Route node id → position in `nodes`.
    node_index: FxHashMap<String, usize>,
    settings: Settings,
    alerts: FxHashMap<u64, Alert>,
    /// Groups an alert is in.
    refs: FxHashMap<u64, u32>,
    /// (rule, alert key) → fingerprint of the rule alert now firing.
    rule_alerts: FxHashMap<(String, String), u64>,
    /// Rule alerts whose firing was notified by handlers (their recovery is never muted).
    handler_notified: FxHashSet<u64>,
    groups: FxHashMap<String, Group>,
    timers: BTreeSet<(Instant, String)>,
    silences: Silences,
    /// Sources of the inhibition rules, kept current on every change of `alerts`.
    inhibitor: Inhibitor,
    /// Per stored alert: its row id and the `ends_at` last written (`i64::MAX`: none; see
    /// [`end_write_may_wait`]).
    stored: FxHashMap<u64, Stored>,
    /// The row id the next new alert is stored under.
    next_row: i64,
    /// When the firing-alerts gauge was last counted.
    firing_counted: Option<Instant>,
    nflog: Log,
    writer: mpsc::Sender<Changes>,
    metrics: Arc<Metrics>,
}

fn fps_text(fps: &[u64]) -> String {
    fps.iter()
        .map(|f| format!("{f:016x}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_fps(s: &str) -> Vec<u64> {
    let mut v: Vec<u64> = s
        .split(',')
        .filter_map(|x| u64::from_str_radix(x, 16).ok())
        .collect();
    v.sort_unstable();
    v
}

/// Where an alert is stored.
#[derive(Debug, Clone, Copy)]
struct Stored {
    /// Row id.
    row: i64,
    /// `ends_at` as written (`i64::MAX`: none).
    end: i64,
}

/// The stored form of an alert, in row `row`.
pub fn alert_row(a: &Alert, row: i64) -> AlertRow {
    AlertRow {
        row,
        fingerprint: a.fingerprint as i64,
        labels: serde_json::to_string(&a.labels).unwrap_or_default(),
        annotations: serde_json::to_string(&a.annotations).unwrap_or_default(),
        starts_ns: a.starts_at,
        ends_ns: a.ends_at,
        updated_ns: a.updated_at,
        generator_url: a.generator_url.clone(),
        source: serde_json::to_string(&a.source).unwrap_or_default(),
        timeout: a.timeout,
    }
}

/// Whether `new` differs from `old` at most in `ends_at` and `updated_at`.
fn same_but_end(old: &Alert, new: &Alert) -> bool {
    old.starts_at == new.starts_at
        && old.timeout == new.timeout
        && old.generator_url == new.generator_url
        && old.source == new.source
        && old.labels == new.labels
        && old.annotations == new.annotations
}

/// Whether writing a later end of a firing alert may wait, given the end `stored` (Unix ns,
/// `i64::MAX` for none) and the new end `end` at `now`: when the alert ends no sooner than
/// stored and the stored end is still at least half as far ahead as the new one.
///
/// What this gives up after a crash: an alert restored from storage ends at its stored end,
/// which is at worst halfway between the last write and the end it was last posted with. A
/// sender re-posts well within that (Prometheus posts every evaluation with an end 4 resend
/// intervals ahead), so a restored alert keeps firing until the next post extends it.
/// Everything that changes what is notified (new alerts, changed content, an earlier or past
/// end) is written at once.
pub fn end_write_may_wait(stored: i64, end: i64, now: i64) -> bool {
    end >= stored && stored > now && (stored - now) >= (end - now) / 2
}

fn alert_from_row(r: &AlertRow) -> Option<Alert> {
    let labels: LabelSet = serde_json::from_str(&r.labels).ok()?;
    Some(Alert {
        fingerprint: fingerprint(&labels),
        labels,
        annotations: serde_json::from_str(&r.annotations).unwrap_or_default(),
        starts_at: r.starts_ns,
        ends_at: r.ends_ns,
        updated_at: r.updated_ns,
        generator_url: r.generator_url.clone(),
        source: serde_json::from_str(&r.source).unwrap_or(Source::Api),
        timeout: r.timeout,
    })
}

fn to_time(ns: i64) -> DateTime<chrono::Utc> {
    DateTime::from_timestamp_nanos(ns)
}

/// Whether `old` can become `new` in place without rewriting what it silenced so far.
fn can_update(old: &Silence, new: &SilenceSpec, now: i64) -> bool {
    let o = &old.spec;
    if o.matchers != new.matchers
        || o.recurrence != new.recurrence
        || o.duration_ns != new.duration_ns
        || o.location != new.location
    {
        return false;
    }
    match old.state(now) {
        // Compared at second precision, as the API's times round-trip through RFC 3339.
        SilenceState::Active => {
            o.starts_at / 1_000_000_000 == new.starts_at / 1_000_000_000 && new.ends_at >= now
        }
        SilenceState::Pending => new.starts_at >= now,
        SilenceState::Expired => false,
    }
}

/// Alertmanager's order of alerts in a notification: by `job`, `instance`, then labels. The
/// two values are looked up once per alert, not once per comparison, and kept beside the
/// alert with their first 16 bytes as a number that orders as the string does, so most
/// comparisons decide on integers and lengths without reading the strings (which lie
/// scattered over the heap: one cache miss each).
fn sort_alerts(v: &mut [&Alert]) {
    fn k<'a>(x: &'a Alert, n: &str) -> PrefixKey<'a> {
        PrefixKey::new(x.labels.get(n).unwrap_or(""))
    }
    let mut keyed: Vec<(PrefixKey, PrefixKey, &Alert)> = v
        .iter()
        .map(|a| (k(a, "job"), k(a, "instance"), *a))
        .collect();
    keyed.sort_unstable_by(|x, y| {
        x.0.cmp(&y.0)
            .then_with(|| x.1.cmp(&y.1))
            .then_with(|| x.2.labels.cmp(&y.2.labels))
    });
    for (slot, (_, _, a)) in v.iter_mut().zip(keyed) {
        *slot = a;
    }
}

/// A string with its first 16 bytes, zero-padded, as a big-endian number: ordered as the
/// string, reading the string itself only when both are longer than 16 bytes and share those.
#[derive(PartialEq, Eq)]
struct PrefixKey<'a> {
    head: u128,
    s: &'a str,
}

impl<'a> PrefixKey<'a> {
    fn new(s: &'a str) -> PrefixKey<'a> {
        let mut b = [0u8; 16];
        let n = s.len().min(16);
        b[..n].copy_from_slice(&s.as_bytes()[..n]);
        PrefixKey {
            head: u128::from_be_bytes(b),
            s,
        }
    }
}

impl Ord for PrefixKey<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Different heads order as the strings (a string that ends early is padded with
        // zeros, below any byte that could follow). Equal heads with a string of 16 bytes or
        // fewer: it is all in the head, so the shorter (`a` against `a\0`) comes first.
        self.head.cmp(&other.head).then_with(|| {
            if self.s.len() <= 16 || other.s.len() <= 16 {
                self.s.len().cmp(&other.s.len())
            } else {
                self.s.cmp(other.s)
            }
        })
    }
}

impl PartialOrd for PrefixKey<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Dispatcher {
    /// A dispatcher restored from the database.
    pub async fn restore(
        storage: &Storage,
        cfg: Arc<Receivers>,
        settings: Settings,
        writer: mpsc::Sender<Changes>,
        metrics: Arc<Metrics>,
    ) -> Result<Dispatcher, crate::storage::StorageError> {
        let mut d = Dispatcher {
            nodes: Vec::new(),
            node_index: FxHashMap::default(),
            inhibitor: Inhibitor::default(),
            cfg: Arc::new(Receivers::default()),
            settings,
            alerts: FxHashMap::default(),
            refs: FxHashMap::default(),
            rule_alerts: FxHashMap::default(),
            handler_notified: FxHashSet::default(),
            groups: FxHashMap::default(),
            timers: BTreeSet::new(),
            silences: Silences::new(),
            stored: FxHashMap::default(),
            next_row: 1,
            firing_counted: None,
            nflog: Log::default(),
            writer,
            metrics,
        };
        for r in storage.load_silences().await? {
            match serde_json::from_str::<SilenceSpec>(&r.spec)
                .map_err(|e| e.to_string())
                .and_then(|spec| {
                    Silence::new(r.id.clone(), spec, r.updated_ns).map_err(|e| e.to_string())
                }) {
                Ok(s) => d.silences.insert(s),
                Err(error) => {
                    tracing::warn!(id = %r.id, %error, "Stored silence is invalid; ignored.")
                }
            }
        }
        for r in storage.load_nflog().await? {
            d.nflog.set(
                r.receiver,
                r.group_key,
                Entry {
                    firing: parse_fps(&r.firing),
                    resolved: parse_fps(&r.resolved),
                    sent_at: r.sent_ns,
                    expires_at: r.expires_ns,
                },
            );
        }
        // Rows come in row order; of two rows of one alert (none are written so, but a row is
        // cheap to check) the later wins and the earlier is deleted.
        let mut stale = Vec::new();
        for r in storage.load_alerts().await? {
            d.next_row = d.next_row.max(r.row.saturating_add(1));
            if let Some(a) = alert_from_row(&r) {
                if let Source::Rule(r) = &a.source
                    && a.ends_at.is_none()
                {
                    d.rule_alerts
                        .insert((r.rule.clone(), r.key.clone()), a.fingerprint);
                    // Handlers of a restored rule alert did notify its firing (the outbox row
                    // was written with the alert).
                    d.handler_notified.insert(a.fingerprint);
                }
                let at = Stored {
                    row: r.row,
                    end: a.ends_at.unwrap_or(i64::MAX),
                };
                if let Some(old) = d.stored.insert(a.fingerprint, at) {
                    stale.push(old.row);
                }
                d.alerts.insert(a.fingerprint, a);
            } else {
                tracing::warn!(row = r.row, "Stored alert is invalid; deleted.");
                stale.push(r.row);
            }
        }
        if !stale.is_empty() {
            storage
                .write_off_thread(vec![Changes {
                    alert_deletes: stale,
                    ..Changes::default()
                }])
                .await?;
        }
        d.apply_config(cfg);
        Ok(d)
    }

    fn apply_config(&mut self, cfg: Arc<Receivers>) {
        self.nodes = cfg
            .route
            .as_ref()
            .map(|r| r.nodes().into_iter().cloned().collect())
            .unwrap_or_default();
        self.node_index = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i))
            .collect();
        self.inhibitor = Inhibitor::from_rules(cfg.inhibit_rules.clone());
        if !self.inhibitor.rules().is_empty() {
            for a in self.alerts.values() {
                self.inhibitor.upsert(a.fingerprint, &a.labels, a.ends_at);
            }
        }
        self.cfg = cfg;
        // Rebuild every group under the new tree; timers restart (as Alertmanager on reload).
        self.groups.clear();
        self.timers.clear();
        self.refs.clear();
        let now = Instant::now();
        let now_ns = now_ns();
        let fps: Vec<u64> = self.alerts.keys().copied().collect();
        for fp in fps {
            self.route(fp, now, now_ns);
        }
        self.update_gauges();
    }

    /// Puts a routed alert into its groups.
    fn route(&mut self, fp: u64, now: Instant, now_ns: i64) {
        let Some(a) = self.alerts.get(&fp) else {
            return;
        };
        if !a.routed() || self.nodes.is_empty() {
            return;
        }
        let Some(route) = &self.cfg.route else {
            return;
        };
        let mut joined = 0;
        for node in route.matches(&a.labels) {
            let Some(&idx) = self.node_index.get(&node.id) else {
                continue;
            };
            // The group's id, written in one buffer; its label set is built only for a new
            // group.
            let mut id = String::with_capacity(node.id.len() + 64);
            id.push_str(&node.id);
            id.push('\u{1}');
            crate::manager::route::write_group_labels(&mut id, node, &a.labels);
            let g = match self.groups.get_mut(&id) {
                Some(g) => g,
                None => {
                    // First flush group_wait after the alert started: at once for an alert
                    // that started long ago (after a restart the log prevents duplicates).
                    let wait = node.group_wait.as_nanos() as i64;
                    let due_ns = a.starts_at.saturating_add(wait);
                    let delay = Duration::from_nanos(due_ns.saturating_sub(now_ns).max(0) as u64)
                        .min(node.group_wait);
                    let next = now + delay;
                    self.timers.insert((next, id.clone()));
                    self.groups.entry(id.clone()).or_insert(Group {
                        node: idx,
                        key: group_key(node, &a.labels),
                        labels: group_labels(node, &a.labels),
                        alerts: FxHashSet::default(),
                        next_flush: next,
                    })
                }
            };
            if g.alerts.insert(fp) {
                joined += 1;
            }
        }
        *self.refs.entry(fp).or_default() += joined;
    }

    /// Nothing to do: the inhibition index follows every change of `alerts` as it happens
    /// (see [`Dispatcher::forget`] and [`Dispatcher::upsert`]), and a lookup skips sources that
    /// have ended. Readers of the state may still call it before checking inhibition.
    fn refresh_inhibitor(&mut self, _now: i64) {}

    fn muted(&mut self, labels: &LabelSet, now: i64) -> bool {
        self.is_muted(labels, now)
    }

    /// Silenced or inhibited at `now`.
    fn is_muted(&self, labels: &LabelSet, now: i64) -> bool {
        self.silences.muted_by(labels, now).is_some()
            || self.inhibitor.check_at(labels, now).is_some()
    }

    /// Drops an alert from memory and from the inhibition index, and deletes its row.
    fn forget(&mut self, fp: u64, changes: &mut Changes) {
        if let Some(at) = self.stored.remove(&fp) {
            changes.alert_deletes.push(at.row);
        }
        if let Some(a) = self.alerts.remove(&fp)
            && !self.inhibitor.rules().is_empty()
        {
            self.inhibitor.remove(fp, &a.labels);
        }
    }

    async fn write(&self, c: Changes) {
        if c.is_empty() {
            return;
        }
        if self.writer.send(c).await.is_err() {
            tracing::error!("Storage writer is gone; alert-manager changes not stored.");
        }
    }

    /// Upserts an alert into the store and routes it if it is in no group.
    ///
    /// The row is written when anything but `ends_at` and `updated_at` changed, when the alert
    /// ends sooner than stored or has ended, and otherwise only when the stored end is no longer
    /// far enough ahead (see [`end_write_may_wait`]): a re-post that only extends the alert, as
    /// Prometheus sends every evaluation, usually writes nothing.
    fn upsert(&mut self, a: Alert, changes: &mut Changes, now: Instant, now_ns: i64) {
        let fp = a.fingerprint;
        let end = a.ends_at.unwrap_or(i64::MAX);
        let indexed = !self.inhibitor.rules().is_empty();
        // The alert's row, or a new one at the end of the table.
        let stored = self.stored.get(&fp).copied();
        let row = match stored {
            Some(at) => at.row,
            None => {
                self.next_row += 1;
                self.next_row - 1
            }
        };
        match self.alerts.get_mut(&fp) {
            Some(old) if same_but_end(old, &a) => {
                if !stored.is_some_and(|at| end_write_may_wait(at.end, end, now_ns)) {
                    changes.alerts.push(alert_row(&a, row));
                    self.stored.insert(fp, Stored { row, end });
                }
                old.ends_at = a.ends_at;
                old.updated_at = a.updated_at;
                if indexed {
                    self.inhibitor.upsert(fp, &a.labels, a.ends_at);
                }
            }
            old => {
                changes.alerts.push(alert_row(&a, row));
                self.stored.insert(fp, Stored { row, end });
                if indexed {
                    if let Some(old) = old.as_deref()
                        && old.labels != a.labels
                    {
                        self.inhibitor.remove(fp, &old.labels);
                    }
                    self.inhibitor.upsert(fp, &a.labels, a.ends_at);
                }
                self.alerts.insert(fp, a);
            }
        }
        if self.refs.get(&fp).copied().unwrap_or(0) == 0 {
            self.route(fp, now, now_ns);
        }
    }

    /// Handles a rule's alert event.
    async fn on_rule(&mut self, ev: RuleEvent) {
        let now = Instant::now();
        let now_ns = now_ns();
        let mut changes = Changes::default();
        let (rule, key) = match &ev.alert.source {
            Source::Rule(r) => (r.rule.clone(), r.key.clone()),
            _ => (String::new(), String::new()),
        };
        let t = ev.record.state.last_event_ns;
        let previous = self.rule_alerts.get(&(rule.clone(), key.clone())).copied();
        // The alert the event is about, for muting: the new one, or for a recovery the old one.
        let mut subject_labels = ev.alert.labels.clone();
        let mut was_notified = false;
        if let Some(old_fp) = previous
            && (ev.level == Level::Ok || old_fp != ev.alert.fingerprint)
        {
            // Resolve the alert of the previous level.
            if let Some(old) = self.alerts.get(&old_fp).cloned() {
                if ev.level == Level::Ok {
                    subject_labels = old.labels.clone();
                }
                let mut old = old;
                old.ends_at = Some(t);
                old.updated_at = t;
                was_notified = self.handler_notified.remove(&old_fp);
                self.store_resolved(old, &mut changes, now, now_ns);
            }
            self.rule_alerts.remove(&(rule.clone(), key.clone()));
        }
        if ev.level != Level::Ok {
            let mut a = ev.alert.clone();
            if let Some(existing) = self.alerts.get(&a.fingerprint)
                && !existing.resolved_at(now_ns)
            {
                a.starts_at = existing.starts_at;
            } else if previous.is_some() {
                // A new level of an alert already firing starts now.
                a.starts_at = t;
            }
            self.rule_alerts.insert((rule, key), a.fingerprint);
            self.upsert(a, &mut changes, now, now_ns);
        }
        // TICK handlers: one notification per event, unless muted. A recovery of a notified
        // alert is never muted, so a silence never swallows the "resolved" of a page.
        if !ev.handlers.is_empty() {
            let muted = self.muted(&subject_labels, now_ns);
            if muted && !(ev.level == Level::Ok && was_notified) {
                self.metrics.notifications_muted.inc();
            } else {
                let rows =
                    crate::receivers::handler_outbox(&self.cfg, &ev, &self.settings.external_url);
                if ev.level != Level::Ok && !rows.is_empty() {
                    self.handler_notified.insert(ev.alert.fingerprint);
                }
                changes.outbox.extend(rows);
            }
        }
        changes.event = Some(ev.record);
        self.write(changes).await;
        self.update_gauges();
    }

    /// Keeps a resolved alert: a routed one stays until its groups have flushed it, an
    /// unrouted (handler) one is forgotten at once.
    fn store_resolved(&mut self, a: Alert, changes: &mut Changes, now: Instant, now_ns: i64) {
        let fp = a.fingerprint;
        if a.routed() {
            self.upsert(a, changes, now, now_ns);
        } else {
            self.forget(fp, changes);
            self.refs.remove(&fp);
        }
    }

    /// Merges posted alerts (Alertmanager's rules: a re-post extends the alert, a post after
    /// it resolved starts a new one).
    async fn on_post(&mut self, posted: Vec<Alert>) {
        let now = Instant::now();
        let now_ns = now_ns();
        let mut changes = Changes {
            alerts: Vec::with_capacity(posted.len()),
            ..Changes::default()
        };
        for mut a in posted {
            // A post that starts before the stored alert ended is the same alert, extended.
            if let Some(old) = self.alerts.get(&a.fingerprint)
                && a.starts_at <= old.ends_at.unwrap_or(i64::MAX)
            {
                a.starts_at = a.starts_at.min(old.starts_at);
            }
            a.updated_at = now_ns;
            self.upsert(a, &mut changes, now, now_ns);
        }
        self.write(changes).await;
        self.update_gauges();
    }

    /// Creates a silence, or updates one as Alertmanager does: in place when the matchers are
    /// the same and the change does not rewrite history (an active silence keeps its start and
    /// does not end in the past; a pending one does not start in the past), otherwise the old
    /// one is expired and a new one with a new id replaces it.
    async fn on_set_silence(
        &mut self,
        id: Option<String>,
        mut spec: SilenceSpec,
    ) -> Result<String, SilenceError> {
        let now = now_ns();
        // Acknowledging an alert twice (a double-clicked button, a retried request) keeps the
        // first acknowledgement instead of stacking a second silence on it.
        if id.is_none()
            && let Some(fp) = spec.until_resolved.as_deref()
            && let Some(first) = self.silences.iter().find(|s| {
                s.spec.until_resolved.as_deref() == Some(fp)
                    && s.state(now) != SilenceState::Expired
            })
        {
            return Ok(first.id.clone());
        }
        let mut expire_old = None;
        let mut keep_id = None;
        if let Some(id) = id {
            let Some(old) = self.silences.get(&id) else {
                return Err(SilenceError::NotFound(id));
            };
            if can_update(old, &spec, now) {
                keep_id = Some(id);
            } else if old.state(now) != SilenceState::Expired {
                expire_old = Some(id);
            }
        }
        let id = match keep_id {
            Some(id) => id,
            None => {
                // A new silence never starts in the past.
                spec.starts_at = spec.starts_at.max(now.min(spec.ends_at));
                uuid::Uuid::new_v4().to_string()
            }
        };
        // Validate before touching the old one, so a bad update changes nothing.
        let s = Silence::new(id.clone(), spec, now)?;
        if let Some(old) = expire_old {
            self.on_expire_silence(old).await?;
        }
        let row = SilenceRow {
            id: id.clone(),
            spec: serde_json::to_string(&s.spec).unwrap_or_default(),
            updated_ns: now,
        };
        self.silences.insert(s);
        self.write(Changes {
            silences: vec![row],
            ..Changes::default()
        })
        .await;
        self.update_gauges();
        Ok(id)
    }

    async fn on_expire_silence(&mut self, id: String) -> Result<(), SilenceError> {
        let now = now_ns();
        let Some(s) = self.silences.get(&id) else {
            return Err(SilenceError::NotFound(id));
        };
        let mut spec = s.spec.clone();
        match s.state(now) {
            // Expiring an expired silence is a no-op, as in Alertmanager.
            SilenceState::Expired => return Ok(()),
            SilenceState::Pending if now < spec.starts_at => {
                spec.starts_at = now;
                spec.ends_at = now;
            }
            _ => spec.ends_at = now,
        }
        let s = Silence::new(id.clone(), spec, now)?;
        let row = SilenceRow {
            id: id.clone(),
            spec: serde_json::to_string(&s.spec).unwrap_or_default(),
            updated_ns: now,
        };
        self.silences.insert(s);
        self.write(Changes {
            silences: vec![row],
            ..Changes::default()
        })
        .await;
        self.update_gauges();
        Ok(())
    }

    /// Flushes one group: decides with the log whether to notify, writes the notification and
    /// the log entry, drops resolved alerts, and schedules the next flush.
    async fn flush(&mut self, id: &str, now: Instant) {
        let now_ns = now_ns();
        self.refresh_inhibitor(now_ns);
        let Some(g) = self.groups.get(id) else {
            return;
        };
        let node = &self.nodes[g.node];
        let receiver_name = node.receiver.clone();
        let repeat = node.repeat_interval.as_nanos() as i64;
        let interval = node.group_interval;
        let time_muted = self.time_muted(node, now_ns);
        let entry = self.nflog.get(&receiver_name, &g.key);
        let mut firing = Vec::new();
        let mut resolved = Vec::new();
        let mut shown: Vec<&Alert> = Vec::new();
        let mut done = Vec::new();
        for &fp in &g.alerts {
            let Some(a) = self.alerts.get(&fp) else {
                done.push(fp);
                continue;
            };
            let is_resolved = a.resolved_at(now_ns);
            if is_resolved {
                done.push(fp);
            }
            // A resolved alert whose firing was notified is always notified resolved.
            let notified_firing = entry.is_some_and(|e| e.firing.binary_search(&fp).is_ok());
            if !(is_resolved && notified_firing) && self.is_muted(&a.labels, now_ns) {
                continue;
            }
            if is_resolved {
                resolved.push(fp);
            } else {
                firing.push(fp);
            }
            shown.push(a);
        }
        firing.sort_unstable();
        resolved.sort_unstable();
        let receiver = self.cfg.receivers.get(&receiver_name);
        let send_resolved = receiver.is_some_and(|r| r.send_resolved());
        let reason = if time_muted {
            None
        } else {
            nflog::needs_update(entry, &firing, &resolved, send_resolved, repeat, now_ns)
        };
        if let Some(reason) = reason {
            sort_alerts(&mut shown);
            let alerts: Vec<NotifiedAlert> = shown
                .iter()
                .map(|a| NotifiedAlert {
                    status: if a.resolved_at(now_ns) {
                        AlertStatus::Resolved
                    } else {
                        AlertStatus::Firing
                    },
                    labels: a.labels.clone(),
                    annotations: a.annotations.clone(),
                    starts_at: to_time(a.starts_at),
                    ends_at: a.ends_at.filter(|e| *e <= now_ns).map(to_time),
                    generator_url: a.generator_url.clone(),
                    fingerprint: a.fingerprint,
                })
                .collect();
            let key = g.key.clone();
            let n = Notification {
                receiver: receiver_name.clone(),
                group_key: key.clone(),
                group_labels: g.labels.clone(),
                alerts,
                truncated: 0,
                external_url: self.settings.external_url.clone(),
                reason: reason.as_str().to_string(),
            };
            let rows = match receiver {
                Some(r) => crate::receivers::group_outbox(r, &n),
                None => Vec::new(),
            };
            self.metrics.notifications_created.inc_by(rows.len() as u64);
            let e = Entry {
                firing,
                resolved,
                sent_at: now_ns,
                expires_at: now_ns.saturating_add(repeat.saturating_mul(2)),
            };
            let row = NflogRow {
                receiver: receiver_name.clone(),
                group_key: key.clone(),
                firing: fps_text(&e.firing),
                resolved: fps_text(&e.resolved),
                sent_ns: e.sent_at,
                expires_ns: e.expires_at,
            };
            self.nflog.set(receiver_name, key, e);
            self.write(Changes {
                outbox: rows,
                nflog: vec![row],
                ..Changes::default()
            })
            .await;
        }
        // Resolved alerts leave the group; alerts in no group are forgotten.
        let mut changes = Changes::default();
        let mut gone = Vec::new();
        if let Some(g) = self.groups.get_mut(id) {
            for fp in &done {
                if g.alerts.remove(fp) {
                    let r = self.refs.entry(*fp).or_default();
                    *r = r.saturating_sub(1);
                    if *r == 0 {
                        self.refs.remove(fp);
                        if self.alerts.get(fp).is_none_or(|a| a.resolved_at(now_ns)) {
                            gone.push(*fp);
                        }
                    }
                }
            }
            if g.alerts.is_empty() {
                self.groups.remove(id);
            } else {
                g.next_flush = now + interval;
                self.timers.insert((g.next_flush, id.to_string()));
            }
        }
        for fp in gone {
            self.forget(fp, &mut changes);
        }
        self.write(changes).await;
    }

    fn time_muted(&self, node: &RouteNode, now_ns: i64) -> bool {
        !self.muting_intervals(node, to_time(now_ns)).is_empty()
    }

    /// Flushes every group that is due.
    async fn flush_due(&mut self) {
        let now = Instant::now();
        while let Some((at, id)) = self.timers.first().cloned() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            // Skip stale timers of groups that were rescheduled or removed.
            if self.groups.get(&id).is_some_and(|g| g.next_flush == at) {
                self.flush(&id, now).await;
            }
        }
        self.update_gauges();
    }

    /// Purges expired silences and log entries; resolves posted alerts past their end.
    async fn maintenance(&mut self) {
        self.expire_resolved_acks().await;
        let now = now_ns();
        let mut changes = Changes::default();
        for id in self
            .silences
            .purgeable(now, self.settings.silence_retention)
        {
            self.silences.remove(&id);
            changes.silence_deletes.push(id);
        }
        changes.nflog_deletes = self.nflog.gc(now);
        // Unrouted alerts (handler rules never resolve this way) and routed alerts no group
        // holds are forgotten once resolved.
        let stale: Vec<u64> = self
            .alerts
            .values()
            .filter(|a| {
                a.resolved_at(now) && self.refs.get(&a.fingerprint).copied().unwrap_or(0) == 0
            })
            .map(|a| a.fingerprint)
            .collect();
        for fp in stale {
            self.forget(fp, &mut changes);
        }
        self.write(changes).await;
        self.update_gauges();
    }

    /// Resolves every unresolved alert of a retired host, marked with a `retired` annotation:
    /// a planned removal, not a failure.
    async fn on_retire(&mut self, host: &str, tag: &str) -> usize {
        let now = Instant::now();
        let now_ns = now_ns();
        let mine: Vec<Alert> = self
            .alerts
            .values()
            .filter(|a| {
                !a.resolved_at(now_ns)
                    && (a.labels.get("host").is_some_and(|h| h == host)
                        || a.labels.get(tag).is_some_and(|h| h == host))
            })
            .cloned()
            .collect();
        let n = mine.len();
        let mut changes = Changes::default();
        for mut a in mine {
            a.ends_at = Some(now_ns);
            a.updated_at = now_ns;
            a.timeout = false;
            a.annotations
                .insert("retired".to_string(), "host retired".to_string());
            if let Source::Rule(r) = &a.source {
                self.rule_alerts.remove(&(r.rule.clone(), r.key.clone()));
            }
            self.store_resolved(a, &mut changes, now, now_ns);
        }
        self.write(changes).await;
        self.update_gauges();
        n
    }

    /// Expires acknowledgements (silences until an alert resolves) whose alert has resolved or
    /// is gone.
    async fn expire_resolved_acks(&mut self) {
        let now = now_ns();
        let done: Vec<String> = self
            .silences
            .iter()
            .filter(|s| {
                s.spec.until_resolved.as_deref().is_some_and(|fp| {
                    u64::from_str_radix(fp, 16)
                        .ok()
                        .and_then(|fp| self.alerts.get(&fp))
                        .is_none_or(|a| a.resolved_at(now))
                })
            })
            .filter(|s| s.state(now) != SilenceState::Expired)
            .map(|s| s.id.clone())
            .collect();
        for id in done {
            tracing::info!(silence = %id, "Acknowledged alert resolved; its silence expires.");
            let _ = self.on_expire_silence(id).await;
        }
    }

    /// Sets the gauges; the firing count (a pass over every alert) at most once a second.
    fn update_gauges(&mut self) {
        let at = Instant::now();
        if self
            .firing_counted
            .is_none_or(|t| at.duration_since(t) >= Duration::from_secs(1))
        {
            self.firing_counted = Some(at);
            let now = now_ns();
            let firing = self.alerts.values().filter(|a| !a.resolved_at(now)).count();
            self.metrics.alerts_firing.set(firing as i64);
        }
        self.metrics.alerts_stored.set(self.alerts.len() as i64);
        self.metrics.alert_groups.set(self.groups.len() as i64);
        self.metrics.silences.set(self.silences.len() as i64);
    }

    /// An alert with its status now (the inhibition index must be fresh).
    fn view(&self, a: &Alert, now: i64) -> AlertView {
        let silenced_by = self.silences.all_muting(&a.labels, now);
        let inhibited_by: Vec<String> = self
            .inhibitor
            .check(&a.labels)
            .map(|f| format!("{f:016x}"))
            .into_iter()
            .collect();
        let mut receivers = Vec::new();
        let mut muted_by = Vec::new();
        if let (Some(r), true) = (&self.cfg.route, a.routed()) {
            let t = to_time(now);
            for n in r.matches(&a.labels) {
                if !receivers.contains(&n.receiver) {
                    receivers.push(n.receiver.clone());
                }
                for name in self.muting_intervals(n, t) {
                    if !muted_by.contains(&name) {
                        muted_by.push(name);
                    }
                }
            }
        }
        AlertView {
            state: if silenced_by.is_empty() && inhibited_by.is_empty() && muted_by.is_empty() {
                "active"
            } else {
                "suppressed"
            },
            alert: a.clone(),
            silenced_by,
            inhibited_by,
            muted_by,
            receivers,
        }
    }

    /// Names of the time intervals that mute a route now: its mute intervals that contain
    /// `t`, and its active intervals when none of them contains `t`.
    fn muting_intervals(&self, node: &RouteNode, t: DateTime<chrono::Utc>) -> Vec<String> {
        let ti = &self.cfg.time_intervals;
        let mut out: Vec<String> = node
            .mute_time_intervals
            .iter()
            .filter(|n| ti.get(*n).is_some_and(|i| i.contains(t)))
            .cloned()
            .collect();
        if !node.active_time_intervals.is_empty()
            && !node
                .active_time_intervals
                .iter()
                .any(|n| ti.get(n).is_some_and(|i| i.contains(t)))
        {
            out.extend(node.active_time_intervals.iter().cloned());
        }
        out
    }

    fn answer(&mut self, q: Query) {
        let now = now_ns();
        match q {
            Query::Alerts(tx) => {
                self.refresh_inhibitor(now);
                let mut out: Vec<AlertView> =
                    self.alerts.values().map(|a| self.view(a, now)).collect();
                out.sort_by_key(|v| v.alert.fingerprint);
                let _ = tx.send(out);
            }
            Query::Groups(tx) => {
                self.refresh_inhibitor(now);
                let mut out: Vec<GroupView> = self
                    .groups
                    .values()
                    .map(|g| {
                        let mut alerts: Vec<AlertView> = g
                            .alerts
                            .iter()
                            .filter_map(|fp| self.alerts.get(fp))
                            .map(|a| self.view(a, now))
                            .collect();
                        alerts.sort_by_key(|v| v.alert.fingerprint);
                        GroupView {
                            labels: g.labels.clone(),
                            receiver: self.nodes[g.node].receiver.clone(),
                            alerts,
                        }
                    })
                    .collect();
                out.sort_by(|a, b| (&a.receiver, &a.labels).cmp(&(&b.receiver, &b.labels)));
                let _ = tx.send(out);
            }
            Query::Silences(tx) => {
                let mut out: Vec<SilenceView> = self
                    .silences
                    .iter()
                    .map(|s| SilenceView {
                        id: s.id.clone(),
                        spec: s.spec.clone(),
                        state: s.state(now),
                        updated_at: s.updated_at,
                        next: if s.is_recurring() {
                            s.occurrence(now)
                        } else {
                            None
                        },
                    })
                    .collect();
                out.sort_by_key(|s| std::cmp::Reverse(s.updated_at));
                let _ = tx.send(out);
            }
        }
    }

    /// Runs until every sender of `rx` is gone.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut maintenance = tokio::time::interval(Duration::from_secs(30));
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = self
                .timers
                .first()
                .map(|(t, _)| *t)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    match msg {
                        Msg::Rule(ev) => {
                            self.on_rule(*ev).await;
                            self.expire_resolved_acks().await;
                        }
                        Msg::Post(alerts, done) => {
                            self.on_post(alerts).await;
                            let _ = done.send(());
                            self.expire_resolved_acks().await;
                        }
                        Msg::SetSilence(id, spec, reply) => {
                            let r = self.on_set_silence(id, spec).await;
                            let _ = reply.send(r);
                        }
                        Msg::ExpireSilence(id, reply) => {
                            let r = self.on_expire_silence(id).await;
                            let _ = reply.send(r);
                        }
                        Msg::Query(q) => self.answer(q),
                        Msg::Reload(cfg) => self.apply_config(cfg),
                        Msg::Retire(host, tag, reply) => {
                            let n = self.on_retire(&host, &tag).await;
                            let _ = reply.send(n);
                        }
                    }
                }
                () = tokio::time::sleep_until(next) => self.flush_due().await,
                _ = maintenance.tick() => self.maintenance().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORDS: [&str; 17] = [
        "",
        "aaaaaaaaaaaaaaaé",
        "aaaaaaaaaaaaaaé",
        "a",
        "a\0",
        "aaaaaaaaaaaaaaaa",
        "aaaaaaaaaaaaaaaab",
        "aaaaaaaaaaaaaaaaab",
        "ab",
        "b",
        "i1",
        "i10",
        "i2",
        "instance-0000000001",
        "instance-0000000001b",
        "instance-0000000002",
        "z",
    ];

    #[test]
    fn prefix_keys_order_as_the_strings() {
        for x in WORDS {
            for y in WORDS {
                assert_eq!(
                    PrefixKey::new(x).cmp(&PrefixKey::new(y)),
                    x.cmp(y),
                    "{x:?} {y:?}"
                );
            }
        }
    }

    #[test]
    fn notifications_list_alerts_by_job_instance_then_labels() {
        let alert = |job: &str, instance: &str, extra: &str| {
            let mut labels = LabelSet::default();
            labels.insert("alertname".into(), "A".into());
            if !job.is_empty() {
                labels.insert("job".into(), job.into());
            }
            labels.insert("instance".into(), instance.into());
            labels.insert("x".into(), extra.into());
            Alert {
                fingerprint: crate::manager::labels::fingerprint(&labels),
                labels,
                annotations: LabelSet::default(),
                starts_at: 0,
                ends_at: None,
                updated_at: 0,
                generator_url: String::new(),
                source: Source::Api,
                timeout: false,
            }
        };
        let mut all = Vec::new();
        for job in [
            "",
            "node",
            "node-exporter-long-name-1",
            "node-exporter-long-name-2",
        ] {
            for instance in WORDS {
                for extra in ["2", "1"] {
                    all.push(alert(job, instance, extra));
                }
            }
        }
        let mut got: Vec<&Alert> = all.iter().rev().collect();
        sort_alerts(&mut got);
        let mut want: Vec<&Alert> = all.iter().collect();
        want.sort_by(|a, b| {
            let k = |x: &Alert, n: &str| x.labels.get(n).unwrap_or_default().to_string();
            (k(a, "job"), k(a, "instance"), &a.labels).cmp(&(
                k(b, "job"),
                k(b, "instance"),
                &b.labels,
            ))
        });
        let fps = |v: &[&Alert]| v.iter().map(|a| a.fingerprint).collect::<Vec<_>>();
        assert_eq!(fps(&got), fps(&want));
    }
}
