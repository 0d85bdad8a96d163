//! The engine thread: owns the rules engine, takes write batches from a bounded queue, runs the
//! wall-clock housekeeping once a second, applies reloads, and hands alert events to the storage
//! writer.
//!
//! A reload keeps every rule whose source is unchanged (with its windows and alert state),
//! starts changed rules afresh but resumes their alert levels, and keeps the old version of a
//! rule whose new version fails to load.

use rustc_hash::FxHashMap;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Shared;
use crate::engine::task::Restored;
use crate::engine::{Engine, Task, TaskConfig, TaskStats};
use crate::ingest::line_protocol::parse_line;
use crate::ingest::write::WriteBatch;
use crate::rules::plan::TaskPlan;
use crate::storage::{EventRecord, StoredAlert};

/// Alert states to resume, by rule: (alert node, group id, state).
type RestoreMap = FxHashMap<String, Vec<(String, String, Restored)>>;

/// Messages to the engine thread.
pub enum Work {
    /// Points to evaluate.
    Write(WriteBatch),
    /// New rule set; the reply carries the resulting status.
    Reload(
        Vec<LoadedRule>,
        tokio::sync::oneshot::Sender<Vec<RuleStatus>>,
    ),
    /// Finish and exit.
    Stop,
}

/// A rule file and the result of loading it.
#[derive(Debug)]
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

/// The running engine thread.
pub struct EngineThread {
    handle: std::thread::JoinHandle<()>,
    work: std::sync::mpsc::SyncSender<Work>,
}

impl EngineThread {
    /// Builds the engine from `loaded` rules, resumes `stored` alert states and starts the thread.
    pub fn start(
        shared: Arc<Shared>,
        rx: Receiver<Work>,
        events: tokio::sync::mpsc::Sender<EventRecord>,
        loaded: Vec<LoadedRule>,
        stored: Vec<StoredAlert>,
    ) -> std::io::Result<EngineThread> {
        let work = shared.work.clone();
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
        let cfg = TaskConfig {
            group_expiry: shared.config.rules.group_expiry.as_nanos() as i64,
        };
        let mut state = State {
            shared,
            events,
            cfg,
            engine: Engine::from_tasks(Vec::new()),
            status: Vec::new(),
            last_stats: FxHashMap::default(),
        };
        state.apply(loaded, Some(restore));
        let handle = std::thread::Builder::new()
            .name("alertd-engine".into())
            .spawn(move || state.run(rx))?;
        Ok(EngineThread { handle, work })
    }

    /// Asks the thread to finish the queued work and waits for it.
    pub fn stop(self) {
        let _ = self.work.send(Work::Stop);
        let _ = self.handle.join();
    }
}

struct State {
    shared: Arc<Shared>,
    events: tokio::sync::mpsc::Sender<EventRecord>,
    cfg: TaskConfig,
    engine: Engine,
    status: Vec<RuleStatus>,
    last_stats: FxHashMap<String, TaskStats>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

impl State {
    fn run(mut self, rx: Receiver<Work>) {
        let tick = Duration::from_secs(1);
        let grace = self.shared.config.rules.grace.as_nanos() as i64;
        let mut next_tick = Instant::now() + tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Work::Write(batch)) => {
                    self.write(&batch);
                    self.forward_events();
                    // A batch counts as queued until it has been evaluated.
                    let depth = self.shared.queued.fetch_sub(1, Ordering::Relaxed) - 1;
                    self.shared
                        .queued_bytes
                        .fetch_sub(batch.body.len(), Ordering::Relaxed);
                    self.shared.metrics.ingest_queue_depth.set(depth as i64);
                }
                Ok(Work::Reload(loaded, reply)) => {
                    self.apply(loaded, None);
                    let _ = reply.send(self.status.clone());
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
        let mut n = 0u64;
        for &(s, e) in &b.lines {
            let Some(raw) = b.body.get(s as usize..e as usize) else {
                continue;
            };
            let Ok(line) = std::str::from_utf8(raw) else {
                continue;
            };
            let Ok(p) = parse_line(line, 0) else { continue };
            let t = p
                .timestamp
                .and_then(|ts| b.precision.to_nanos(ts))
                .unwrap_or(b.now);
            self.engine.process(Some(&b.db), Some(&b.rp), &p, t);
            n += 1;
        }
        self.shared.metrics.engine_points.inc_by(n);
    }

    fn forward_events(&mut self) {
        for ev in self.engine.drain_events() {
            // Waits only when the storage writer is far behind: the ingest queue then fills and
            // writes get 429, instead of events being lost.
            if self
                .events
                .blocking_send(EventRecord::from_event(&ev))
                .is_err()
            {
                tracing::error!(alert = %ev.id, "Storage writer is gone; alert event not stored.");
            }
        }
        self.shared
            .metrics
            .storage_queue_depth
            .set((self.events.max_capacity() - self.events.capacity()) as i64);
    }

    /// Replaces the rule set. `restore` carries stored states at start-up.
    fn apply(&mut self, loaded: Vec<LoadedRule>, restore: Option<RestoreMap>) {
        let mut restore = restore.unwrap_or_default();
        let old = std::mem::replace(&mut self.engine, Engine::from_tasks(Vec::new())).into_tasks();
        let mut old: FxHashMap<String, Task> =
            old.into_iter().map(|t| (t.name().to_string(), t)).collect();
        let mut tasks = Vec::new();
        let mut status = Vec::new();
        let mut failed = false;
        for rule in loaded {
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
                    if let Some(prev) = prev {
                        t.restore(prev.alert_states());
                        tracing::info!(rule = %rule.name, "Rule changed; restarted with its alert levels.");
                    }
                    if let Some(states) = restore.remove(&rule.name) {
                        t.restore(states);
                    }
                    t
                }
                (Err(error), prev) => {
                    failed = true;
                    tracing::error!(rule = %rule.name, error = %error, kept_previous = prev.is_some(), "Rule failed to load.");
                    st.error = Some(error);
                    match prev {
                        Some(p) => p,
                        None => {
                            status.push(st);
                            continue;
                        }
                    }
                }
            };
            st.running = true;
            tasks.push(task);
            status.push(st);
        }
        for name in old.keys() {
            tracing::info!(rule = %name, "Rule removed.");
        }
        if failed {
            self.shared.metrics.reload_failures.inc();
        }
        self.engine = Engine::from_tasks(tasks);
        if let Ok(mut f) = self.shared.filter.write() {
            *f = Arc::new(self.engine.measurement_filter());
        }
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

    /// Publishes counters to `/metrics` and the rule list.
    fn publish(&mut self) {
        for t in self.engine.tasks() {
            let name = t.name().to_string();
            let before = self
                .last_stats
                .get(&name)
                .filter(|b| b.points_in <= t.stats().points_in)
                .cloned()
                .unwrap_or_default();
            self.shared
                .metrics
                .add_rule_delta(&name, t.stats(), &before, t.groups());
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
        for s in &mut self.status {
            if !s.running {
                s.status = "error";
            }
        }
        if let Ok(mut r) = self.shared.rules.write() {
            r.clone_from(&self.status);
        }
    }
}
