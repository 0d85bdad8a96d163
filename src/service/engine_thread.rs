//! The engine threads ("shards"): each owns the rules engine for a subset of the rules, takes
//! write batches from a bounded queue, runs the wall-clock housekeeping once a second, applies
//! reloads, and hands alert events to the storage writer.
//!
//! Rules are independent, so they are spread over the shards to use every core. A rule whose
//! groups each belong to one host (grouped by the `[hosts] tag`, see
//! [`crate::engine::splits_by_tag`]) runs on every shard, each instance taking the points of its
//! share of the hosts (by a hash the write handler computes per point), so the load is even
//! whatever the mix of rules and every group still lives in one place. Any other rule runs on
//! one shard, chosen by the measurement it reads, so rules on the same measurement share a shard.
//! Either way a rule keeps its place across reloads while its source is unchanged. Every shard
//! sees every batch, already parsed by the write handler, and skips the points of measurements
//! it does not read. Counters of a split rule are summed over its instances for the API and
//! `/metrics`.
//!
//! Retiring a host sends every shard a [`Work::Forget`], which drops the host's groups in every
//! rule before its alerts are resolved.
//!
//! A reload keeps every rule whose source is unchanged (with its windows and alert state),
//! starts changed rules afresh but resumes their alert levels, and keeps the old version of a
//! rule whose new version fails to load.

use crate::clock::now_ns;
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::Shared;
use crate::engine::task::Restored;
use crate::engine::{Engine, Forgotten, Partition, Routes, Task, TaskConfig, TaskStats};
use crate::ingest::points::LayoutIds;
use crate::ingest::write::{SPARE_POINTS, WriteBatch};
use crate::manager::dispatch::{Msg, RuleEvent};
use crate::rules::plan::TaskPlan;
use crate::storage::{EventRecord, StoredAlert};

/// How many lines ahead of the one it evaluates an engine thread starts loading the state a
/// line will read ([`Engine::process_points`]; `docs/benchmarks.md`, "Current figures: a
/// line's state loaded ahead").
const PREFETCH_AHEAD: usize = 16;

/// Alert states to resume, by rule: (alert node, group id, state).
pub type RestoreMap = FxHashMap<String, Vec<(String, String, Restored)>>;

/// Groups stored alert states by rule.
pub fn restore_map(stored: Vec<StoredAlert>) -> RestoreMap {
    let mut restore: RestoreMap = FxHashMap::default();
    for s in stored {
        restore.entry(s.task).or_default().push((
            s.node,
            s.group_id,
            Restored {
                level: s.level,
                first_triggered: s.first_triggered,
                last_event: s.last_event_ns,
            },
        ));
    }
    restore
}

/// A write batch on its way through every shard.
pub struct Queued {
    /// The batch.
    pub batch: WriteBatch,
    /// Bytes counted in the queue for it.
    bytes: usize,
    /// Shards that have not evaluated it yet.
    remaining: AtomicUsize,
}

impl Queued {
    /// A batch of `bytes` every one of `shards` must evaluate.
    pub fn new(batch: WriteBatch, bytes: usize, shards: usize) -> Queued {
        Queued {
            batch,
            bytes,
            remaining: AtomicUsize::new(shards),
        }
    }

    /// Marks one shard done; the last one takes the batch off the queue counters.
    pub fn done(&self, shared: &Shared) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            shared.queued.fetch_sub(1, Ordering::Relaxed);
            shared.queued_bytes.fetch_sub(self.bytes, Ordering::Relaxed);
            shared.metrics.ingest_queue_depth.dec();
            shared.room.notify_one();
        }
    }
}

impl Drop for Queued {
    /// The last holder gives the batch's vectors back for the next request.
    fn drop(&mut self) {
        SPARE_POINTS.put(std::mem::take(&mut self.batch.lines));
    }
}

/// Messages to an engine shard.
pub enum Work {
    /// Points to evaluate.
    Write(Arc<Queued>),
    /// The whole new rule set (each shard takes its part) with the stored alert states, so a rule
    /// created afresh (changed, moved to this shard, or re-added) resumes its levels; the reply
    /// carries the status of the rules the shard runs.
    Reload(
        Vec<LoadedRule>,
        RestoreMap,
        tokio::sync::oneshot::Sender<Vec<RuleStatus>>,
    ),
    /// Drop every group whose group-by tags include `tag=value` in every rule of the shard
    /// (a retired host), with its window, alert and deadman state and any stored alert state
    /// waiting to resume; the reply says what was dropped. Events produced before are sent to
    /// the alert manager before the reply, and none of those groups produces one after.
    Forget {
        /// The tag naming hosts (`[hosts] tag`).
        tag: String,
        /// The host.
        value: String,
        /// What was dropped.
        reply: tokio::sync::oneshot::Sender<Forgotten>,
    },
    /// Finish and exit.
    Stop,
}

/// Sends [`Work::Forget`] to every shard and waits for all of them: once this returns, no
/// shard holds a group of `tag=value` and every event they made before is in the alert
/// manager's queue.
pub async fn forget_everywhere(shared: &Shared, tag: &str, value: &str) -> Forgotten {
    let mut replies = Vec::with_capacity(shared.work.len());
    for w in &shared.work {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let msg = Work::Forget {
            tag: tag.to_string(),
            value: value.to_string(),
            reply: tx,
        };
        // The queues keep room for control messages beyond the batch limit; if one is full
        // anyway, wait for room off the async threads.
        let sent = match w.try_send(msg) {
            Ok(()) => true,
            Err(std::sync::mpsc::TrySendError::Full(msg)) => {
                let w = w.clone();
                tokio::task::spawn_blocking(move || w.send(msg).is_ok())
                    .await
                    .unwrap_or(false)
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => false,
        };
        if sent {
            replies.push(rx);
        }
    }
    let mut all = Forgotten::default();
    for rx in replies {
        if let Ok(f) = rx.await {
            all.merge(f);
        }
    }
    // A rule split over the shards may report a stored state from each.
    all.group_ids.sort_unstable();
    all.group_ids.dedup();
    all
}

/// A rule file and the result of loading it.
#[derive(Debug, Clone)]
pub struct LoadedRule {
    /// Task name (file stem).
    pub name: String,
    /// The file.
    pub file: PathBuf,
    /// The plan, or the rendered error (`file:line:col: ...` with caret).
    pub result: Result<TaskPlan, String>,
}

/// A rule as the API and metrics show it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleStatus {
    /// Name.
    pub name: String,
    /// File it was loaded from.
    pub file: String,
    /// `running` or `error` (with `error` set; an older version may still be running).
    pub status: &'static str,
    /// Whether a version of the rule is running.
    pub running: bool,
    /// The load error of the latest file, if any.
    pub error: Option<String>,
    /// Source of the running version.
    pub source: String,
    /// Counters.
    pub stats: TaskStats,
    /// Live groups.
    pub groups: usize,
}

impl RuleStatus {
    /// The status of a rule that failed to load and has no version running.
    pub fn failed(rule: &LoadedRule) -> RuleStatus {
        RuleStatus {
            name: rule.name.clone(),
            file: rule.file.display().to_string(),
            status: "error",
            running: false,
            error: rule.result.as_ref().err().cloned(),
            ..Default::default()
        }
    }
}

/// Reads every `*.tick` file of `dir` (a missing directory is no rules).
pub fn load_rules(dir: &Path) -> Vec<LoadedRule> {
    let files = match crate::cli::check::rule_files(&[dir.to_path_buf()]) {
        Ok(f) => f,
        Err(error) => {
            tracing::warn!(%error, dir = %dir.display(), "No rules loaded.");
            return Vec::new();
        }
    };
    files
        .into_iter()
        .map(|file| LoadedRule {
            name: crate::rules::task_name(&file),
            result: crate::rules::load_file(&file).map_err(|e| e.to_string()),
            file,
        })
        .collect()
}

/// The shard a rule runs on: from the first measurement it reads (rules reading every
/// measurement go by name).
pub fn shard_of(plan: &TaskPlan, shards: usize) -> usize {
    let key = plan
        .sources()
        .find_map(|(_, f)| f.measurement.clone())
        .unwrap_or_else(|| plan.name.clone());
    let mut h = rustc_hash::FxHasher::default();
    key.hash(&mut h);
    (h.finish() % shards.max(1) as u64) as usize
}

/// The running engine shards.
pub struct EngineThreads {
    handles: Vec<std::thread::JoinHandle<()>>,
    work: Vec<std::sync::mpsc::SyncSender<Work>>,
}

impl EngineThreads {
    /// Builds one engine per shard from `loaded` rules, resumes `stored` alert states and starts
    /// the threads. `receivers` are the shards' work queues.
    pub fn start(
        shared: Arc<Shared>,
        receivers: Vec<Receiver<Work>>,
        events: tokio::sync::mpsc::Sender<Msg>,
        loaded: Vec<LoadedRule>,
        stored: Vec<StoredAlert>,
    ) -> std::io::Result<EngineThreads> {
        let restore = restore_map(stored);
        let shards = receivers.len();
        let cfg = TaskConfig {
            group_expiry: shared.config.rules.group_expiry.as_nanos() as i64,
        };
        let mut handles = Vec::new();
        for (index, rx) in receivers.into_iter().enumerate() {
            let mut state = State {
                index,
                shards,
                shared: shared.clone(),
                events: events.clone(),
                cfg: cfg.clone(),
                engine: Engine::from_tasks(Vec::new()),
                status: Vec::new(),
                last_stats: FxHashMap::default(),
                wanted: Vec::new(),
                layouts: LayoutIds::default(),
                last_groups: FxHashMap::default(),
            };
            state.apply(loaded.clone(), Some(restore.clone()));
            handles.push(
                std::thread::Builder::new()
                    .name(format!("alertd-engine-{index}"))
                    .spawn(move || state.run(rx))?,
            );
        }
        shared.set_unplaced(&loaded);
        Ok(EngineThreads {
            handles,
            work: shared.work.clone(),
        })
    }

    /// Asks every shard to finish its queued work and waits for them.
    pub fn stop(self) {
        for w in &self.work {
            let _ = w.send(Work::Stop);
        }
        for h in self.handles {
            let _ = h.join();
        }
    }
}

struct State {
    index: usize,
    shards: usize,
    shared: Arc<Shared>,
    events: tokio::sync::mpsc::Sender<Msg>,
    cfg: TaskConfig,
    engine: Engine,
    status: Vec<RuleStatus>,
    last_stats: FxHashMap<String, TaskStats>,
    /// Scratch: the rule sources of this shard that take each measurement of the current batch.
    wanted: Vec<Routes>,
    /// Ids of the field-key layouts seen, for the engine's per-series field cache.
    layouts: LayoutIds,
    /// Live groups of each rule as last published (this shard's share).
    last_groups: FxHashMap<String, i64>,
}

impl State {
    fn run(mut self, rx: Receiver<Work>) {
        let tick = Duration::from_secs(1);
        let grace = self.shared.config.rules.grace.as_nanos() as i64;
        let mut next_tick = Instant::now() + tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Work::Write(q)) => {
                    self.write(&q.batch);
                    self.forward_events_of(Some(q.batch.now));
                    q.done(&self.shared);
                }
                Ok(Work::Reload(loaded, restore, reply)) => {
                    self.apply(loaded, Some(restore));
                    let _ = reply.send(self.status.clone());
                }
                Ok(Work::Forget { tag, value, reply }) => {
                    // Whatever is pending goes out first; nothing of the groups comes after.
                    self.forward_events();
                    let f = self.engine.forget_tagged(&tag, &value);
                    self.publish();
                    let _ = reply.send(f);
                }
                Ok(Work::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_tick {
                self.engine.wall_tick(now_ns(), grace);
                self.forward_events();
                self.publish();
                next_tick = Instant::now() + tick;
            }
        }
        self.forward_events();
        self.publish();
    }

    fn write(&mut self, b: &WriteBatch) {
        // Which rule sources of this shard take each of the batch's measurements (they share
        // the batch's database and retention policy), and the shard's ids of the batch's
        // field-key layouts, decided once per batch.
        self.engine
            .batch_routes(Some(&b.db), Some(&b.rp), &b.lines, &mut self.wanted);
        self.layouts.start_batch(&b.lines);
        let n = self
            .engine
            .process_points(&b.lines, &self.wanted, &self.layouts, PREFETCH_AHEAD);
        self.shared.metrics.engine_points.inc_by(n);
    }

    fn forward_events(&mut self) {
        self.forward_events_of(None);
    }

    /// Sends the pending events to storage; `received` is the arrival time of the write that
    /// caused them.
    fn forward_events_of(&mut self, received: Option<i64>) {
        for ev in self.engine.drain_events() {
            let mut record = EventRecord::from_event(&ev);
            record.received_ns = received;
            let msg = Msg::Rule(Box::new(RuleEvent {
                record,
                alert: crate::manager::alert::rule_alert(&ev, &self.shared.external_url),
                level: ev.level,
                handlers: crate::receivers::tick::handler_targets(&ev),
            }));
            // Waits only when the alert manager is far behind: the ingest queue then fills and
            // writes get 429, instead of events being lost.
            if self.events.blocking_send(msg).is_err() {
                tracing::error!(alert = %ev.id, "Alert manager is gone; alert event not stored.");
            }
        }
    }

    /// Replaces this shard's part of the rule set. `restore` carries stored states at start-up.
    fn apply(&mut self, loaded: Vec<LoadedRule>, restore: Option<RestoreMap>) {
        let mut restore = restore.unwrap_or_default();
        let old = std::mem::replace(&mut self.engine, Engine::from_tasks(Vec::new())).into_tasks();
        let mut old: FxHashMap<String, Task> =
            old.into_iter().map(|t| (t.name().to_string(), t)).collect();
        let mut tasks = Vec::new();
        let mut status = Vec::new();
        let mut failed = false;
        let host_tag = self.shared.config.hosts.tag.as_str();
        let partition = Partition {
            tag: host_tag.into(),
            index: self.index as u64,
            count: self.shards as u64,
        };
        let splits_here =
            |plan: &TaskPlan| self.shards > 1 && crate::engine::splits_by_tag(plan, host_tag);
        let mut split = Vec::new();
        for rule in loaded {
            // A rule grouped by host runs on every shard, each taking its share of the hosts;
            // another rule that loads runs on its shard; one that fails stays where its old
            // version runs.
            let (mine, splits) = match &rule.result {
                Ok(plan) if splits_here(plan) => (true, true),
                Ok(plan) => (shard_of(plan, self.shards) == self.index, false),
                Err(_) => match old.get(&rule.name) {
                    Some(prev) => (true, splits_here(prev.plan())),
                    None => (false, false),
                },
            };
            if !mine {
                continue;
            }
            let prev = old.remove(&rule.name);
            let mut st = RuleStatus {
                name: rule.name.clone(),
                file: rule.file.display().to_string(),
                ..Default::default()
            };
            let task = match (rule.result, prev) {
                (Ok(plan), Some(prev)) if prev.plan().source == plan.source => prev,
                (Ok(plan), prev) => {
                    let mut t = Task::new(Arc::new(plan), &self.cfg);
                    // Stored levels first; the in-memory state of a previous version is newer.
                    // An instance on a share of the hosts keeps only its hosts' levels.
                    if let Some(mut states) = restore.remove(&rule.name) {
                        if splits {
                            states.retain(|(_, group, _)| {
                                crate::engine::group_id_value(group, host_tag)
                                    .is_none_or(|h| partition.owns_host(h))
                            });
                        }
                        t.restore(states);
                    }
                    if let Some(prev) = prev {
                        t.restore(prev.alert_states());
                        tracing::info!(rule = %rule.name, "Rule changed; restarted with its alert levels.");
                    }
                    t
                }
                (Err(error), prev) => {
                    failed = true;
                    tracing::error!(rule = %rule.name, error = %error, kept_previous = prev.is_some(), "Rule failed to load.");
                    st.error = Some(error);
                    match prev {
                        Some(p) => p,
                        None => continue,
                    }
                }
            };
            st.running = true;
            tasks.push(task);
            split.push(splits);
            status.push(st);
        }
        for name in old.keys() {
            tracing::info!(rule = %name, "Rule removed from this engine shard.");
            if let Some(last) = self.last_groups.remove(name) {
                self.shared
                    .metrics
                    .rule_groups
                    .get_or_create(&super::metrics::RuleLabel { rule: name.clone() })
                    .dec_by(last);
            }
        }
        if failed {
            self.shared.metrics.reload_failures.inc();
        }
        self.engine = Engine::from_tasks(tasks);
        self.engine.split_by(partition, split);
        self.shared
            .set_shard_filter(self.index, self.engine.measurement_filter());
        for s in &status {
            self.shared
                .metrics
                .rule_load_error
                .get_or_create(&super::metrics::RuleLabel {
                    rule: s.name.clone(),
                })
                .set(i64::from(s.error.is_some()));
        }
        self.status = status;
        self.publish();
    }

    /// Publishes counters to `/metrics` and this shard's rule list.
    fn publish(&mut self) {
        for t in self.engine.tasks() {
            let name = t.name().to_string();
            let before = self
                .last_stats
                .get(&name)
                .filter(|b| b.points_in <= t.stats().points_in)
                .cloned()
                .unwrap_or_default();
            let groups = t.groups() as i64;
            let last = self.last_groups.insert(name.clone(), groups).unwrap_or(0);
            self.shared
                .metrics
                .add_rule_delta(&name, t.stats(), &before, groups - last);
            self.last_stats.insert(name.clone(), t.stats().clone());
            if let Some(s) = self.status.iter_mut().find(|s| s.name == name) {
                s.stats = t.stats().clone();
                s.groups = t.groups();
                s.source.clone_from(&t.plan().source);
                s.status = if s.error.is_some() {
                    "error"
                } else {
                    "running"
                };
            }
        }
        self.shared.set_shard_rules(self.index, self.status.clone());
    }
}
