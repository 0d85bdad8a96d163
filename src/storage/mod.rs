//! SQLite storage (WAL): alert events and the current state of every alert, so alerts
//! resume at their level after a restart, even after `kill -9`.
//!
//! One writer thread owns the writes of alerts, events, notifications and the rest of the
//! alert manager's state, and commits them in batched transactions on its own connection
//! (`rusqlite`), delivery results included. Reads, migrations and the purge of old
//! notifications go through a `sqlx` pool; every write transaction takes the database's write
//! lock first, so the connections wait for one another instead of failing. Nothing on the ingest path waits for the database.
//! A failed write (busy database, full disk) is logged, counted and retried with backoff, never
//! dropped: while it retries the writer's bounded queue fills and the engine, then the write
//! endpoints, push back.

use rustc_hash::FxHashSet;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use crate::engine::AlertEvent;
use crate::rules::plan::Level;
use crate::service::metrics::Metrics;

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database could not be opened or created.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The database file.
        path: String,
        /// The cause.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("cannot migrate database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    /// The writer's connection could not be opened.
    #[error("cannot open database {path} for writing: {source}")]
    OpenWriter {
        /// The database file.
        path: String,
        /// The cause.
        source: rusqlite::Error,
    },
    /// A write on the writer's connection failed.
    #[error("database write failed: {0}")]
    Write(#[from] rusqlite::Error),
    /// A write run on a blocking thread did not finish.
    #[error("database write did not finish: {0}")]
    WriteAborted(String),
}

/// The stored state of one alert.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredAlert {
    /// Rule name.
    pub task: String,
    /// Alert node name (`alert4`).
    pub node: String,
    /// Group id (`host=a`).
    pub group_id: String,
    /// Alert id.
    pub alert_id: String,
    /// Level of the last event.
    #[serde(serialize_with = "level_str")]
    pub level: Level,
    /// When the alert left OK (Unix ns).
    pub first_triggered: i64,
    /// Time of the last event (Unix ns).
    pub last_event_ns: i64,
    /// Message of the last event.
    pub message: String,
}

fn level_str<S: serde::Serializer>(l: &Level, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(l.as_str())
}

/// One event to store.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// The stored state after the event.
    pub state: StoredAlert,
    /// Level before the event.
    pub previous_level: Level,
    /// Event duration (ns).
    pub duration: i64,
    /// The event in Kapacitor's alert JSON.
    pub body: String,
    /// When the write that caused the event arrived (Unix ns), for the alert-latency metric;
    /// None for events of the wall clock (deadman, window close).
    pub received_ns: Option<i64>,
}

/// A notification to put in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxInsert {
    /// The delivery queue: a receiver's name, or `post <url>` / `log <path>` for TICK handlers.
    pub receiver: String,
    /// `post` (HTTP POST of the body), `log` (append a line), `email`, `alerta`.
    pub kind: String,
    /// URL or file path (or the receiver for `email` and `alerta`).
    pub target: String,
    /// Extra HTTP headers.
    pub headers: Vec<(String, String)>,
    /// HTTP timeout in milliseconds.
    pub timeout_ms: i64,
    /// What to send.
    pub body: String,
    /// Notifications of one group go out in order.
    pub group_key: String,
}

/// An alert of the alert manager as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    /// Row id, assigned by the dispatcher: a new alert gets the next one, so new rows go to the
    /// end of the table instead of a random place.
    pub row: i64,
    /// Fingerprint (bit pattern of the u64).
    pub fingerprint: i64,
    /// Labels, JSON object.
    pub labels: String,
    /// Annotations, JSON object.
    pub annotations: String,
    /// Start, Unix ns.
    pub starts_ns: i64,
    /// End, Unix ns.
    pub ends_ns: Option<i64>,
    /// Last update, Unix ns.
    pub updated_ns: i64,
    /// Link to the producer.
    pub generator_url: String,
    /// Source, JSON.
    pub source: String,
    /// End set by the resolve timeout.
    pub timeout: bool,
}

/// A notification-log entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NflogRow {
    /// Receiver.
    pub receiver: String,
    /// Group key.
    pub group_key: String,
    /// Firing fingerprints notified, hex, comma-separated.
    pub firing: String,
    /// Resolved fingerprints notified.
    pub resolved: String,
    /// When, Unix ns.
    pub sent_ns: i64,
    /// Expiry, Unix ns.
    pub expires_ns: i64,
}

/// A silence as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SilenceRow {
    /// Id.
    pub id: String,
    /// The silence, JSON.
    pub spec: String,
    /// Last update, Unix ns.
    pub updated_ns: i64,
}

/// Changes committed together in one transaction: an alert event with the notifications it
/// causes and the alert-manager state it changes, or a flush's notifications with the
/// notification-log entry that deduplicates them.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// A rule's alert event.
    pub event: Option<EventRecord>,
    /// Alerts created or changed.
    pub alerts: Vec<AlertRow>,
    /// Alerts forgotten (row ids).
    pub alert_deletes: Vec<i64>,
    /// Notifications to deliver.
    pub outbox: Vec<OutboxInsert>,
    /// Notification-log entries written.
    pub nflog: Vec<NflogRow>,
    /// Notification-log entries forgotten.
    pub nflog_deletes: Vec<(String, String)>,
    /// Silences created or changed.
    pub silences: Vec<SilenceRow>,
    /// Silences purged.
    pub silence_deletes: Vec<String>,
    /// Hosts seen (registry rows to upsert).
    pub hosts: Vec<HostRow>,
    /// Hosts retired.
    pub host_deletes: Vec<String>,
    /// Stored rule alert states to forget: `(rule, group id)`, every alert node (the groups of
    /// a retired host).
    pub alert_state_deletes: Vec<(String, String)>,
    /// Check states changed (rows to upsert).
    pub checks: Vec<CheckRow>,
    /// Hosts whose check states are all forgotten (retired).
    pub check_deletes: Vec<String>,
    /// Results of finished deliveries, by outbox id.
    pub deliveries: Vec<(i64, Delivery)>,
    /// Told once this change is committed (a flush at shutdown waits for it).
    pub committed: Option<Arc<tokio::sync::Notify>>,
}

/// The stored state of one passive check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRow {
    /// Host.
    pub host: String,
    /// Service; empty for the host check.
    pub service: String,
    /// Current state: 0 OK/UP, 1 WARNING/DOWN, 2 CRITICAL/UNREACHABLE, 3 UNKNOWN.
    pub state: i64,
    /// HARD (else SOFT).
    pub hard: bool,
    /// Attempt.
    pub attempt: i64,
    /// The last HARD state, coded as `state`.
    pub hard_state: i64,
    /// Summary of the last output.
    pub summary: String,
    /// Perfdata of the last output.
    pub perfdata: String,
    /// Long output of the last output.
    pub long_output: String,
    /// Last result, Unix ns.
    pub last_result_ns: i64,
    /// Last state change, Unix ns.
    pub last_change_ns: i64,
    /// Expected interval, ns.
    pub interval_ns: Option<i64>,
    /// Stale.
    pub stale: bool,
    /// The last states, oldest first, one digit (`state` code) each.
    pub history: String,
    /// Flapping.
    pub flapping: bool,
    /// Percent state change.
    pub percent_change: f64,
    /// `severity` label of the state alert firing for the check, if one is.
    pub firing_severity: Option<String>,
    /// Whether the check's flapping alert is firing.
    pub flap_firing: bool,
}

/// A row of the host registry.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRow {
    /// Host name.
    pub name: String,
    /// First seen, Unix ns.
    pub first_seen_ns: i64,
    /// Last seen, Unix ns.
    pub last_seen_ns: i64,
    /// Comma-separated sources (`metrics`, `checks`).
    pub sources: String,
}

impl Changes {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.event.is_none()
            && self.alerts.is_empty()
            && self.alert_deletes.is_empty()
            && self.outbox.is_empty()
            && self.nflog.is_empty()
            && self.nflog_deletes.is_empty()
            && self.silences.is_empty()
            && self.silence_deletes.is_empty()
            && self.hosts.is_empty()
            && self.host_deletes.is_empty()
            && self.alert_state_deletes.is_empty()
            && self.checks.is_empty()
            && self.check_deletes.is_empty()
            && self.deliveries.is_empty()
            && self.committed.is_none()
    }
}

/// What became of one delivery attempt, to record in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Delivered.
    Sent,
    /// Not delivered; try again at `next_ns`, this being attempt number `attempts`.
    Retry {
        /// Attempts made so far.
        attempts: i64,
        /// When to try next (Unix nanoseconds).
        next_ns: i64,
        /// Why this attempt failed.
        error: String,
    },
    /// Refused for good; kept with the reason.
    Failed {
        /// Why it was given up.
        error: String,
    },
}

/// A notification in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    /// The delivery queue.
    pub receiver: String,
    /// `post`, `log`, `email`, `alerta`.
    pub kind: String,
    /// URL or path.
    pub target: String,
    /// Extra HTTP headers.
    pub headers: Vec<(String, String)>,
    /// HTTP timeout in milliseconds.
    pub timeout_ms: i64,
    /// What to send.
    pub body: String,
    /// Attempts so far.
    pub attempts: i64,
}

impl EventRecord {
    /// From an engine event.
    pub fn from_event(ev: &AlertEvent) -> EventRecord {
        EventRecord {
            state: StoredAlert {
                task: ev.task.to_string(),
                node: ev.node.to_string(),
                group_id: ev.group.to_string(),
                alert_id: ev.id.clone(),
                level: ev.level,
                first_triggered: ev.time - ev.duration,
                last_event_ns: ev.time,
                message: ev.message.clone(),
            },
            previous_level: ev.previous_level,
            duration: ev.duration,
            body: ev.to_json().to_string(),
            received_ns: None,
        }
    }
}

/// The database.
#[derive(Debug, Clone)]
pub struct Storage {
    /// Connections for reads, migrations and the purge of old notifications.
    pool: SqlitePool,
    /// The writer's own connection, used by one thread at a time (the writer thread, or a
    /// one-off write at startup): a batch is written with no hand-off per statement (see
    /// [`Storage::write`]).
    writer: Arc<std::sync::Mutex<rusqlite::Connection>>,
    /// Notifications just committed, kept so their first delivery need not read them back.
    fresh: Arc<std::sync::Mutex<FreshOutbox>>,
}

/// Most bytes of notification bodies kept in [`FreshOutbox`]; beyond it, new notifications
/// are read back from the database like any other.
const FRESH_OUTBOX_BYTES: usize = 32 << 20;

/// Notifications committed to the outbox and not yet taken for delivery, by id. The outbox
/// rows are the durable copy and decide what is due, in which order; this only spares the
/// delivery loop reading a body it has just written (tens of KB for a large group). An entry
/// leaves when its notification is taken, so a retry reads the row like any other.
#[derive(Debug, Default)]
struct FreshOutbox {
    rows: rustc_hash::FxHashMap<i64, OutboxRow>,
    bytes: usize,
    /// The highest id the delivery loop has taken. The writer keeps a batch only after its
    /// commit, when the loop may already have taken some of its rows from the database: those
    /// (ids are never reused, so at most this one) are not kept, or they would stay forever.
    taken_up_to: i64,
}

impl FreshOutbox {
    /// The bytes a kept row counts for against the bound.
    fn weight(row: &OutboxRow) -> usize {
        row.body.len() + row.target.len() + row.receiver.len()
    }

    fn insert(&mut self, row: OutboxRow) {
        let size = FreshOutbox::weight(&row);
        if row.id <= self.taken_up_to || self.bytes + size > FRESH_OUTBOX_BYTES {
            return;
        }
        self.bytes += size;
        if let Some(old) = self.rows.insert(row.id, row) {
            self.bytes -= FreshOutbox::weight(&old);
        }
    }

    /// The row of `id` if kept, which the delivery loop is taking.
    fn take(&mut self, id: i64) -> Option<OutboxRow> {
        self.taken_up_to = self.taken_up_to.max(id);
        self.forget(id)
    }

    fn forget(&mut self, id: i64) -> Option<OutboxRow> {
        let row = self.rows.remove(&id)?;
        self.bytes -= FreshOutbox::weight(&row);
        Some(row)
    }
}

impl Storage {
    /// Opens (creating if needed) the database in WAL mode and applies migrations.
    pub async fn open(path: &Path) -> Result<Storage, StorageError> {
        Storage::open_with(path, Duration::from_secs(5)).await
    }

    /// [`Storage::open`] with how long a statement waits for a lock held by another connection
    /// before it fails as busy.
    pub async fn open_with(path: &Path, busy_timeout: Duration) -> Result<Storage, StorageError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StorageError::Open {
                path: path.display().to_string(),
                source: sqlx::Error::Io(e),
            })?;
        }
        // The path as a file name, not a URL: the writer's connection opens it as written.
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|source| StorageError::Open {
                path: path.display().to_string(),
                source,
            })?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let writer =
            open_writer(path, busy_timeout).map_err(|source| StorageError::OpenWriter {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Storage {
            pool,
            writer: Arc::new(std::sync::Mutex::new(writer)),
            fresh: Arc::default(),
        })
    }

    /// Every alert's stored state.
    pub async fn alert_states(&self) -> Result<Vec<StoredAlert>, StorageError> {
        let rows = sqlx::query(
            "SELECT task, node, group_id, alert_id, level, first_triggered, last_event_ns, message
             FROM alert_state ORDER BY task, alert_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredAlert {
                task: r.get(0),
                node: r.get(1),
                group_id: r.get(2),
                alert_id: r.get(3),
                level: Level::parse(r.get::<&str, _>(4)).unwrap_or_default(),
                first_triggered: r.get(5),
                last_event_ns: r.get(6),
                message: r.get(7),
            })
            .collect())
    }

    /// The latest events, newest first, as stored JSON bodies.
    pub async fn recent_events(&self, limit: i64) -> Result<Vec<serde_json::Value>, StorageError> {
        let rows = sqlx::query("SELECT task, body FROM alert_events ORDER BY seq DESC LIMIT ?")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let mut v: serde_json::Value =
                    serde_json::from_str(r.get::<&str, _>(1)).unwrap_or(serde_json::Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.insert(
                        "rule".into(),
                        serde_json::Value::from(r.get::<String, _>(0)),
                    );
                }
                v
            })
            .collect())
    }

    /// Commits a batch of changes in one transaction on the writer's connection. Returns the
    /// id given to the batch's first notification (the others follow in order).
    ///
    /// This blocks until the batch is committed (or fails): call it from the writer thread
    /// ([`spawn_writer`]) or through `spawn_blocking`, never on an async task.
    pub fn write(&self, batch: &[Changes]) -> Result<i64, StorageError> {
        let now = crate::clock::now_ns();
        // A panic while the lock was held left no transaction open (dropping one rolls it
        // back), so the connection is as good as before.
        let mut conn = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Takes the write lock at once (waiting on the busy timeout if another connection
        // holds it): the batch may read before it writes (the next notification id), and a
        // deferred transaction that reads first cannot wait for the lock when it then writes.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for c in batch {
            write_changes(&tx, c)?;
        }
        let first_id = write_outbox(&tx, batch, now)?;
        write_nflog(&tx, batch)?;
        write_alerts(&tx, batch)?;
        write_deliveries(&tx, batch)?;
        tx.commit()?;
        Ok(first_id)
    }

    /// [`Storage::write`] from an async task, on a blocking thread: for the few writes made
    /// outside the writer thread (at startup, or when a poll gives up a body).
    pub async fn write_off_thread(&self, batch: Vec<Changes>) -> Result<i64, StorageError> {
        let st = self.clone();
        tokio::task::spawn_blocking(move || st.write(&batch))
            .await
            .map_err(|e| StorageError::WriteAborted(e.to_string()))?
    }

    /// Drops the notifications `ids` from those kept for their first delivery: they have
    /// been delivered (or given up) and are about to be recorded.
    pub fn forget_fresh(&self, ids: impl IntoIterator<Item = i64>) {
        if let Ok(mut fresh) = self.fresh.lock() {
            for id in ids {
                fresh.forget(id);
            }
        }
    }

    /// Keeps the notifications of a committed batch for their first delivery, moving them
    /// out of `batch`; `first_id` is what [`Storage::write`] returned for it.
    pub fn keep_fresh(&self, first_id: i64, batch: &mut [Changes]) {
        let Ok(mut fresh) = self.fresh.lock() else {
            return;
        };
        let rows = batch.iter_mut().flat_map(|c| c.outbox.drain(..));
        for (i, o) in rows.enumerate() {
            fresh.insert(OutboxRow {
                id: first_id + i as i64,
                receiver: o.receiver,
                kind: o.kind,
                target: o.target,
                // As a retry would read them back: one value per name.
                headers: loaded_headers(stored_headers(&o.headers)),
                timeout_ms: o.timeout_ms,
                body: o.body,
                attempts: 0,
            });
        }
    }

    /// Every stored alert of the alert manager, in row order.
    pub async fn load_alerts(&self) -> Result<Vec<AlertRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT fingerprint, labels, annotations, starts_ns, ends_ns, updated_ns, generator_url, source, timeout, id FROM alerts ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AlertRow {
                fingerprint: r.get(0),
                labels: r.get(1),
                annotations: r.get(2),
                starts_ns: r.get(3),
                ends_ns: r.get(4),
                updated_ns: r.get(5),
                generator_url: r.get(6),
                source: r.get(7),
                timeout: r.get(8),
                row: r.get(9),
            })
            .collect())
    }

    /// Every notification-log entry.
    pub async fn load_nflog(&self) -> Result<Vec<NflogRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT receiver, group_key, firing, resolved, sent_ns, expires_ns FROM nflog",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| NflogRow {
                receiver: r.get(0),
                group_key: r.get(1),
                firing: r.get(2),
                resolved: r.get(3),
                sent_ns: r.get(4),
                expires_ns: r.get(5),
            })
            .collect())
    }

    /// Every silence.
    pub async fn load_silences(&self) -> Result<Vec<SilenceRow>, StorageError> {
        let rows = sqlx::query("SELECT id, spec, updated_ns FROM silences")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| SilenceRow {
                id: r.get(0),
                spec: r.get(1),
                updated_ns: r.get(2),
            })
            .collect())
    }
}

/// A notification's extra headers as stored: a JSON object, so one value per name (the last).
fn stored_headers(headers: &[(String, String)]) -> serde_json::Map<String, serde_json::Value> {
    headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
        .collect()
}

/// Stored headers as sent.
fn loaded_headers(map: serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    map.into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// Opens the writer's connection to a database the pool has created and migrated: WAL (set
/// by the pool, kept in the file), `synchronous = NORMAL` like the pool's connections, room
/// for every statement the writer prepares in its cache.
fn open_writer(
    path: &Path,
    busy_timeout: Duration,
) -> Result<rusqlite::Connection, rusqlite::Error> {
    // Not created: the pool has made the file, and a path that named another file must fail
    // here rather than leave the writer an empty database.
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Writes the rows of one change that are not coalesced across a batch: its alert event and
/// rule alert state, silences, hosts and check states.
fn write_changes(tx: &rusqlite::Transaction<'_>, c: &Changes) -> Result<(), rusqlite::Error> {
    if let Some(e) = &c.event {
        let s = &e.state;
        tx.prepare_cached(
            "INSERT INTO alert_events (task, node, group_id, alert_id, level, previous_level, time_ns, duration_ns, message, body)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?
        .execute(rusqlite::params![
            s.task,
            s.node,
            s.group_id,
            s.alert_id,
            s.level.as_str(),
            e.previous_level.as_str(),
            s.last_event_ns,
            e.duration,
            s.message,
            e.body,
        ])?;
        tx.prepare_cached(
            "INSERT INTO alert_state (task, node, group_id, alert_id, level, first_triggered, last_event_ns, message)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (task, node, group_id) DO UPDATE SET
               alert_id = excluded.alert_id, level = excluded.level,
               first_triggered = excluded.first_triggered,
               last_event_ns = excluded.last_event_ns, message = excluded.message",
        )?
        .execute(rusqlite::params![
            s.task,
            s.node,
            s.group_id,
            s.alert_id,
            s.level.as_str(),
            s.first_triggered,
            s.last_event_ns,
            s.message,
        ])?;
    }
    if !c.silences.is_empty() {
        let mut st = tx.prepare_cached(
            "INSERT INTO silences (id, spec, updated_ns) VALUES (?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, updated_ns = excluded.updated_ns",
        )?;
        for si in &c.silences {
            st.execute(rusqlite::params![si.id, si.spec, si.updated_ns])?;
        }
    }
    for id in &c.silence_deletes {
        tx.prepare_cached("DELETE FROM silences WHERE id = ?")?
            .execute([id])?;
    }
    if !c.hosts.is_empty() {
        let mut st = tx.prepare_cached(
            "INSERT INTO hosts (name, first_seen_ns, last_seen_ns, sources) VALUES (?, ?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET last_seen_ns = excluded.last_seen_ns, sources = excluded.sources",
        )?;
        for h in &c.hosts {
            st.execute(rusqlite::params![
                h.name,
                h.first_seen_ns,
                h.last_seen_ns,
                h.sources
            ])?;
        }
    }
    for name in &c.host_deletes {
        tx.prepare_cached("DELETE FROM hosts WHERE name = ?")?
            .execute([name])?;
    }
    for (task, group) in &c.alert_state_deletes {
        tx.prepare_cached("DELETE FROM alert_state WHERE task = ? AND group_id = ?")?
            .execute([task, group])?;
    }
    if !c.checks.is_empty() {
        let mut st = tx.prepare_cached(
            "INSERT INTO check_states (host, service, state, hard, attempt, hard_state, summary, perfdata,
               long_output, last_result_ns, last_change_ns, interval_ns, stale, history, flapping,
               percent_change, firing_severity, flap_firing)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (host, service) DO UPDATE SET
               state = excluded.state, hard = excluded.hard, attempt = excluded.attempt,
               hard_state = excluded.hard_state, summary = excluded.summary,
               perfdata = excluded.perfdata, long_output = excluded.long_output,
               last_result_ns = excluded.last_result_ns,
               last_change_ns = excluded.last_change_ns, interval_ns = excluded.interval_ns,
               stale = excluded.stale, history = excluded.history,
               flapping = excluded.flapping, percent_change = excluded.percent_change,
               firing_severity = excluded.firing_severity, flap_firing = excluded.flap_firing",
        )?;
        for r in &c.checks {
            st.execute(rusqlite::params![
                r.host,
                r.service,
                r.state,
                r.hard,
                r.attempt,
                r.hard_state,
                r.summary,
                r.perfdata,
                r.long_output,
                r.last_result_ns,
                r.last_change_ns,
                r.interval_ns,
                r.stale,
                r.history,
                r.flapping,
                r.percent_change,
                r.firing_severity,
                r.flap_firing,
            ])?;
        }
    }
    for host in &c.check_deletes {
        tx.prepare_cached("DELETE FROM check_states WHERE host = ?")?
            .execute([host])?;
    }
    Ok(())
}

/// Writes the notifications of a batch with their bodies. Their ids are given here, after the
/// highest ever used (the table never reuses one), so the bodies can be written with them
/// without reading each id back; the writer is the only one adding notifications, inside this
/// transaction.
fn write_outbox(
    tx: &rusqlite::Transaction<'_>,
    batch: &[Changes],
    now: i64,
) -> Result<i64, rusqlite::Error> {
    let mut rows = batch.iter().flat_map(|c| &c.outbox).peekable();
    if rows.peek().is_none() {
        return Ok(0);
    }
    let last: i64 = tx
        .prepare_cached(
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0),
                        COALESCE((SELECT MAX(id) FROM outbox), 0))",
        )?
        .query_row([], |r| r.get(0))?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO outbox (id, created_ns, receiver, group_key, kind, target, headers, timeout_ms, status, next_attempt_ns)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
    )?;
    let mut body =
        tx.prepare_cached("INSERT INTO outbox_bodies (id, body, encoding) VALUES (?, ?, ?)")?;
    let mut snappy = snap::raw::Encoder::new();
    let mut packed = Vec::new();
    let mut id = last;
    for d in rows {
        id += 1;
        let headers = serde_json::Value::Object(stored_headers(&d.headers)).to_string();
        insert.execute(rusqlite::params![
            id,
            now,
            d.receiver,
            d.group_key,
            d.kind,
            d.target,
            headers,
            d.timeout_ms,
            now,
        ])?;
        match pack_body(&mut snappy, &d.body, &mut packed) {
            Some(bytes) => body.execute(rusqlite::params![id, bytes, "snappy"])?,
            None => body.execute(rusqlite::params![id, d.body, "identity"])?,
        };
    }
    Ok(last + 1)
}

/// `body` compressed with Snappy into `buf`, or None when that does not make it smaller (or
/// fails, which only a body larger than Snappy's 4 GiB bound can).
fn pack_body<'b>(
    snappy: &mut snap::raw::Encoder,
    body: &str,
    buf: &'b mut Vec<u8>,
) -> Option<&'b [u8]> {
    buf.resize(snap::raw::max_compress_len(body.len()), 0);
    let n = snappy.compress(body.as_bytes(), buf).ok()?;
    (n < body.len()).then(|| &buf[..n])
}

/// Largest body [`unpack_body`] inflates: far above any body written (a notification of
/// thousands of alerts is a few MB), it bounds what a damaged length header can allocate.
const MAX_BODY: usize = 256 << 20;

/// A stored body read back: its text, from the column's bytes and its `encoding`.
fn unpack_body(bytes: &[u8], encoding: &str) -> Result<String, String> {
    let text = match encoding {
        "identity" => bytes.to_vec(),
        "snappy" => {
            let len = snap::raw::decompress_len(bytes)
                .map_err(|e| format!("stored body does not decompress: {e}"))?;
            if len > MAX_BODY {
                return Err(format!(
                    "stored body does not decompress: it claims {len} bytes"
                ));
            }
            snap::raw::Decoder::new()
                .decompress_vec(bytes)
                .map_err(|e| format!("stored body does not decompress: {e}"))?
        }
        other => return Err(format!("stored body has an unknown encoding {other:?}")),
    };
    String::from_utf8(text).map_err(|e| format!("stored body is not UTF-8: {e}"))
}

/// Writes the notification-log changes of a batch, coalesced: the last change of each
/// (receiver, group) counts.
fn write_nflog(tx: &rusqlite::Transaction<'_>, batch: &[Changes]) -> Result<(), rusqlite::Error> {
    let mut last: rustc_hash::FxHashMap<(&str, &str), Option<&NflogRow>> = Default::default();
    for c in batch {
        for n in &c.nflog {
            last.insert((&n.receiver, &n.group_key), Some(n));
        }
        for (r, g) in &c.nflog_deletes {
            last.insert((r, g), None);
        }
    }
    if last.is_empty() {
        return Ok(());
    }
    let mut delete = tx.prepare_cached("DELETE FROM nflog WHERE receiver = ? AND group_key = ?")?;
    let mut upsert = tx.prepare_cached(
        "INSERT INTO nflog (receiver, group_key, firing, resolved, sent_ns, expires_ns)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (receiver, group_key) DO UPDATE SET
           firing = excluded.firing, resolved = excluded.resolved,
           sent_ns = excluded.sent_ns, expires_ns = excluded.expires_ns",
    )?;
    for ((r, g), n) in &last {
        match n {
            None => delete.execute([r, g])?,
            Some(n) => upsert.execute(rusqlite::params![
                n.receiver,
                n.group_key,
                n.firing,
                n.resolved,
                n.sent_ns,
                n.expires_ns,
            ])?,
        };
    }
    Ok(())
}

/// Writes the alert rows and deletes of a batch, coalesced: only the last change of each row
/// counts (every change replaces the whole row, or deletes it), in row order so new rows
/// append to the table.
fn write_alerts(tx: &rusqlite::Transaction<'_>, batch: &[Changes]) -> Result<(), rusqlite::Error> {
    let mut last: rustc_hash::FxHashMap<i64, Option<&AlertRow>> = Default::default();
    for c in batch {
        for a in &c.alerts {
            last.insert(a.row, Some(a));
        }
        for row in &c.alert_deletes {
            last.insert(*row, None);
        }
    }
    if last.is_empty() {
        return Ok(());
    }
    let mut changes: Vec<(i64, Option<&AlertRow>)> = last.into_iter().collect();
    changes.sort_unstable_by_key(|(row, _)| *row);
    let mut delete = tx.prepare_cached("DELETE FROM alerts WHERE id = ?")?;
    let mut upsert = tx.prepare_cached(
        "INSERT INTO alerts (id, fingerprint, labels, annotations, starts_ns, ends_ns, updated_ns, generator_url, source, timeout)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET
           fingerprint = excluded.fingerprint, labels = excluded.labels, annotations = excluded.annotations,
           starts_ns = excluded.starts_ns, ends_ns = excluded.ends_ns,
           updated_ns = excluded.updated_ns, generator_url = excluded.generator_url,
           source = excluded.source, timeout = excluded.timeout",
    )?;
    for (row, a) in changes {
        match a {
            None => delete.execute([row])?,
            Some(a) => upsert.execute(rusqlite::params![
                a.row,
                a.fingerprint,
                a.labels,
                a.annotations,
                a.starts_ns,
                a.ends_ns,
                a.updated_ns,
                a.generator_url,
                a.source,
                a.timeout,
            ])?,
        };
    }
    Ok(())
}

/// Records the delivery results of a batch.
fn write_deliveries(
    tx: &rusqlite::Transaction<'_>,
    batch: &[Changes],
) -> Result<(), rusqlite::Error> {
    let mut results = batch.iter().flat_map(|c| &c.deliveries).peekable();
    if results.peek().is_none() {
        return Ok(());
    }
    let mut sent = tx.prepare_cached(
        "UPDATE outbox SET status = 'sent', attempts = attempts + 1, last_error = NULL WHERE id = ?",
    )?;
    let mut retry = tx.prepare_cached(
        "UPDATE outbox SET attempts = ?, next_attempt_ns = ?, last_error = ? WHERE id = ?",
    )?;
    let mut failed = tx.prepare_cached(
        "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ? WHERE id = ?",
    )?;
    for (id, d) in results {
        match d {
            Delivery::Sent => sent.execute([id])?,
            Delivery::Retry {
                attempts,
                next_ns,
                error,
            } => retry.execute(rusqlite::params![attempts, next_ns, error, id])?,
            Delivery::Failed { error } => failed.execute(rusqlite::params![error, id])?,
        };
    }
    Ok(())
}

impl Storage {
    /// Delivery queues with notifications due at `now`.
    pub async fn outbox_receivers_due(&self, now: i64) -> Result<Vec<String>, StorageError> {
        let rows = sqlx::query(
            "SELECT DISTINCT receiver FROM outbox WHERE status = 'pending' AND next_attempt_ns <= ?",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    /// Pending notifications of one queue due at `now`, oldest first, leaving out any whose
    /// group has an older notification still pending (notifications of a group go out in
    /// order) and those in `busy` (already being delivered): at most `room`. Only the rows
    /// taken are read with their bodies, so polling while many are in flight does not read
    /// theirs again.
    pub async fn outbox_due(
        &self,
        receiver: &str,
        now: i64,
        busy: &FxHashSet<i64>,
        room: usize,
    ) -> Result<Vec<OutboxRow>, StorageError> {
        if room == 0 {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT o.id FROM outbox o
             WHERE o.receiver = ? AND o.status = 'pending' AND o.next_attempt_ns <= ?
               AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.receiver = o.receiver
                     AND p.group_key = o.group_key AND p.status = 'pending' AND p.id < o.id)
             ORDER BY o.id LIMIT ?",
        )
        .bind(receiver)
        .bind(now)
        .bind((room + busy.len()) as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut take: Vec<i64> = ids
            .into_iter()
            .filter(|id| !busy.contains(id))
            .take(room)
            .collect();
        let mut found = Vec::new();
        if let Ok(mut fresh) = self.fresh.lock() {
            take.retain(|id| match fresh.take(*id) {
                Some(row) => {
                    found.push(row);
                    false
                }
                None => true,
            });
        }
        if take.is_empty() {
            return Ok(found);
        }
        let sql = format!(
            "SELECT o.id, o.receiver, o.kind, o.target, o.headers, o.timeout_ms,
                    CAST(b.body AS BLOB), b.encoding, o.attempts
             FROM outbox o JOIN outbox_bodies b ON b.id = o.id
             WHERE o.status = 'pending' AND o.id IN ({})",
            vec!["?"; take.len()].join(", ")
        );
        let mut q = sqlx::query(&sql);
        for id in &take {
            q = q.bind(id);
        }
        let mut rows = Vec::with_capacity(take.len() + found.len());
        let mut unreadable = Vec::new();
        for r in q.fetch_all(&self.pool).await? {
            let id: i64 = r.try_get(0)?;
            let body = match unpack_body(r.try_get(6)?, r.try_get(7)?) {
                Ok(body) => body,
                Err(error) => {
                    tracing::error!(id, %error, "Notification cannot be read back; given up.");
                    unreadable.push((id, Delivery::Failed { error }));
                    continue;
                }
            };
            let headers: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(r.try_get(4)?).unwrap_or_default();
            rows.push(OutboxRow {
                id,
                receiver: r.try_get(1)?,
                kind: r.try_get(2)?,
                target: r.try_get(3)?,
                headers: loaded_headers(headers),
                timeout_ms: r.try_get(5)?,
                body,
                attempts: r.try_get(8)?,
            });
        }
        // A body that cannot be read back (a damaged file) would otherwise come up as due
        // forever: it is given up with the reason, as a refused delivery is. Should that fail
        // (a busy database), the next poll tries again; the rows read are sent meanwhile.
        if let Err(error) = self.outbox_record(&unreadable).await {
            tracing::warn!(%error, "Giving up unreadable notifications failed; will retry.");
        }
        rows.append(&mut found);
        // Ordered here, not by SQLite: its sorter would copy every body (~27 KB each for a
        // large group) into a sort buffer and spill it to a temporary file.
        rows.sort_unstable_by_key(|r| r.id);
        Ok(rows)
    }

    /// Pending notifications per queue, for the queue-depth metric.
    pub async fn outbox_pending(&self) -> Result<Vec<(String, i64)>, StorageError> {
        let rows = sqlx::query(
            "SELECT receiver, COUNT(*) FROM outbox WHERE status = 'pending' GROUP BY receiver",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Deletes delivered and given-up notifications created before `before`.
    pub async fn outbox_purge(&self, before: i64) -> Result<u64, StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM outbox_bodies WHERE id IN
               (SELECT id FROM outbox WHERE status != 'pending' AND created_ns < ?)",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?;
        let r = sqlx::query("DELETE FROM outbox WHERE status != 'pending' AND created_ns < ?")
            .bind(before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    /// Records the results of finished deliveries in one transaction on the writer's
    /// connection, as the writer thread records those the delivery loop hands it
    /// ([`Changes::deliveries`]).
    pub async fn outbox_record(&self, results: &[(i64, Delivery)]) -> Result<(), StorageError> {
        if results.is_empty() {
            return Ok(());
        }
        self.forget_fresh(results.iter().map(|(id, _)| *id));
        self.write_off_thread(vec![Changes {
            deliveries: results.to_vec(),
            ..Changes::default()
        }])
        .await?;
        Ok(())
    }

    /// Notifications by status, for `/api/v1/alerts`.
    pub async fn outbox_counts(&self) -> Result<Vec<(String, i64)>, StorageError> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) FROM outbox GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

/// A notification as the API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NotificationView {
    /// Outbox id.
    pub id: i64,
    /// When it was created, Unix ns.
    pub created_ns: i64,
    /// Delivery kind (`webhook`, `email`, `alerta`, `post`, `log`).
    pub kind: String,
    /// The receiver's name (empty for TICK handlers).
    pub receiver: String,
    /// URL, address or path it goes to.
    pub target: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// A [`NotificationView`] from the first eight columns of an outbox query.
fn notification_view(r: &sqlx::sqlite::SqliteRow) -> Result<NotificationView, sqlx::Error> {
    Ok(NotificationView {
        id: r.try_get(0)?,
        created_ns: r.try_get(1)?,
        kind: r.try_get(2)?,
        receiver: r.try_get(3)?,
        target: r.try_get(4)?,
        status: r.try_get(5)?,
        attempts: r.try_get(6)?,
        last_error: r.try_get(7)?,
    })
}

/// Read-only queries of the API's history views.
impl Storage {
    /// The host registry.
    pub async fn load_hosts(&self) -> Result<Vec<HostRow>, StorageError> {
        let rows = sqlx::query("SELECT name, first_seen_ns, last_seen_ns, sources FROM hosts")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| HostRow {
                name: r.get(0),
                first_seen_ns: r.get(1),
                last_seen_ns: r.get(2),
                sources: r.get(3),
            })
            .collect())
    }

    /// Every stored check state.
    pub async fn load_checks(&self) -> Result<Vec<CheckRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT host, service, state, hard, attempt, hard_state, summary, perfdata, long_output,
               last_result_ns, last_change_ns, interval_ns, stale, history, flapping, percent_change,
               firing_severity, flap_firing
             FROM check_states",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| CheckRow {
                host: r.get(0),
                service: r.get(1),
                state: r.get(2),
                hard: r.get(3),
                attempt: r.get(4),
                hard_state: r.get(5),
                summary: r.get(6),
                perfdata: r.get(7),
                long_output: r.get(8),
                last_result_ns: r.get(9),
                last_change_ns: r.get(10),
                interval_ns: r.get(11),
                stale: r.get(12),
                history: r.get(13),
                flapping: r.get(14),
                percent_change: r.get(15),
                firing_severity: r.get(16),
                flap_firing: r.get(17),
            })
            .collect())
    }

    /// Rule alert events, newest first, optionally of one rule and one alert id; with the total.
    pub async fn events_page(
        &self,
        rule: Option<&str>,
        alert_id: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<serde_json::Value>, i64), StorageError> {
        let filter = "(?1 IS NULL OR task = ?1) AND (?2 IS NULL OR alert_id = ?2)";
        let total: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM alert_events WHERE {filter}"))
            .bind(rule)
            .bind(alert_id)
            .fetch_one(&self.pool)
            .await?
            .get(0);
        let rows = sqlx::query(&format!(
            "SELECT task, body FROM alert_events WHERE {filter} ORDER BY seq DESC LIMIT ?3 OFFSET ?4"
        ))
        .bind(rule)
        .bind(alert_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .into_iter()
            .map(|r| {
                let mut v: serde_json::Value =
                    serde_json::from_str(r.get::<&str, _>(1)).unwrap_or(serde_json::Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.insert("rule".into(), r.get::<String, _>(0).into());
                }
                v
            })
            .collect();
        Ok((items, total))
    }

    /// Notifications, newest first, optionally by status and by a text their body contains
    /// (an alert's fingerprint); with the total.
    pub async fn notifications_page(
        &self,
        status: Option<&str>,
        contains: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<NotificationView>, i64), StorageError> {
        if let Some(text) = contains {
            return self
                .notifications_containing(status, text, limit, offset)
                .await;
        }
        let total: i64 = sqlx::query("SELECT COUNT(*) FROM outbox WHERE ?1 IS NULL OR status = ?1")
            .bind(status)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        let rows = sqlx::query(
            "SELECT id, created_ns, kind, receiver, target, status, attempts, last_error
             FROM outbox WHERE ?1 IS NULL OR status = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3",
        )
        .bind(status)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(notification_view)
            .collect::<Result<_, _>>()?;
        Ok((items, total))
    }

    /// [`Storage::notifications_page`] with a text to find in the bodies. Bodies may be stored
    /// compressed, so they are read back and searched here, newest first, a few hundred rows
    /// per query.
    async fn notifications_containing(
        &self,
        status: Option<&str>,
        text: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<NotificationView>, i64), StorageError> {
        let mut items = Vec::new();
        let mut total = 0i64;
        let mut before = i64::MAX;
        loop {
            let rows = sqlx::query(
                "SELECT o.id, o.created_ns, o.kind, o.receiver, o.target, o.status, o.attempts,
                        o.last_error, CAST(b.body AS BLOB), b.encoding
                 FROM outbox o JOIN outbox_bodies b ON b.id = o.id
                 WHERE (?1 IS NULL OR o.status = ?1) AND o.id < ?2
                   AND (b.encoding <> 'identity' OR instr(b.body, ?3) > 0)
                 ORDER BY o.id DESC LIMIT 256",
            )
            .bind(status)
            .bind(before)
            .bind(text)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = rows.last() else {
                break;
            };
            before = last.try_get(0)?;
            for r in &rows {
                // A body that cannot be read back contains nothing to find.
                let found =
                    unpack_body(r.try_get(8)?, r.try_get(9)?).is_ok_and(|body| body.contains(text));
                if !found {
                    continue;
                }
                if total >= offset && (items.len() as i64) < limit {
                    items.push(notification_view(r)?);
                }
                total += 1;
            }
        }
        Ok((items, total))
    }
}

/// Largest number of events committed in one transaction.
const MAX_BATCH: usize = 512;

/// Starts the single writer on a thread of its own (`alertd-writer`): it takes changes from
/// `rx`, commits them in batches, and retries failures with exponential backoff until they
/// succeed. It ends when every sender of `rx` is dropped.
///
/// A thread rather than a task: SQLite calls block, and a batch is many statements; on this
/// thread they run one after another with no hand-off to another thread and back per
/// statement, which is what an async driver costs.
pub fn spawn_writer(
    storage: Storage,
    rx: mpsc::Receiver<Changes>,
    metrics: Arc<Metrics>,
    deliveries: Arc<tokio::sync::Notify>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("alertd-writer".into())
        .spawn(move || run_writer(storage, rx, metrics, deliveries))
}

fn run_writer(
    storage: Storage,
    mut rx: mpsc::Receiver<Changes>,
    metrics: Arc<Metrics>,
    deliveries: Arc<tokio::sync::Notify>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        metrics.storage_queue_depth.set(rx.len() as i64);
        let mut backoff = Duration::from_millis(50);
        loop {
            let start = Instant::now();
            match storage.write(&batch) {
                Ok(first_id) => {
                    metrics
                        .sqlite_write_seconds
                        .observe(start.elapsed().as_secs_f64());
                    let now = crate::clock::now_ns();
                    for e in batch
                        .iter()
                        .filter_map(|c| c.event.as_ref().and_then(|e| e.received_ns))
                    {
                        metrics
                            .alert_latency_seconds
                            .observe((now - e).max(0) as f64 / 1e9);
                    }
                    metrics
                        .events_stored
                        .inc_by(batch.iter().filter(|c| c.event.is_some()).count() as u64);
                    if batch.iter().any(|c| !c.outbox.is_empty()) {
                        storage.keep_fresh(first_id, &mut batch);
                        deliveries.notify_one();
                    }
                    for n in batch.iter().filter_map(|c| c.committed.as_ref()) {
                        n.notify_one();
                    }
                    break;
                }
                Err(error) => {
                    metrics.sqlite_errors.inc();
                    tracing::error!(%error, events = batch.len(), retry_in_ms = backoff.as_millis() as u64, "Committing changes to the database failed; retrying.");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fp: i64, ends: i64) -> AlertRow {
        AlertRow {
            row: fp + 1,
            fingerprint: fp,
            labels: format!("{{\"i\":\"{fp}\"}}"),
            annotations: "{}".into(),
            starts_ns: 1,
            ends_ns: Some(ends),
            updated_ns: 1,
            generator_url: String::new(),
            source: "{\"kind\":\"api\"}".into(),
            timeout: false,
        }
    }

    #[tokio::test]
    async fn coalesced_alert_writes_keep_the_last_change() {
        let dir = tempfile::tempdir().unwrap();
        let st = Storage::open(&dir.path().join("a.db")).await.unwrap();
        let upsert = |rows: Vec<AlertRow>| Changes {
            alerts: rows,
            ..Changes::default()
        };
        let delete = |fps: Vec<i64>| Changes {
            alert_deletes: fps,
            ..Changes::default()
        };
        // 200 rows, then in one batch: 7 deleted after an update, 8
        // re-inserted after a delete, 9 updated twice.
        st.write(&[upsert((0..200).map(|i| row(i, 10)).collect())])
            .unwrap();
        st.write(&[
            upsert(vec![row(7, 20)]),
            delete(vec![8, 9]),
            upsert(vec![row(8, 30), row(9, 40)]),
            upsert(vec![row(9, 50)]),
        ])
        .unwrap();
        let got = st.load_alerts().await.unwrap();
        assert!(got.windows(2).all(|w| w[0].row < w[1].row));
        assert_eq!(got.len(), 199);
        assert!(got.iter().all(|r| r.fingerprint != 7));
        let find = |fp: i64| got.iter().find(|r| r.fingerprint == fp).unwrap().clone();
        assert_eq!(find(8), row(8, 30));
        assert_eq!(find(9), row(9, 50));
        assert_eq!(find(199), row(199, 10));
    }

    fn check_row(host: &str, service: &str, state: i64) -> CheckRow {
        CheckRow {
            host: host.into(),
            service: service.into(),
            state,
            hard: true,
            attempt: 1,
            hard_state: state,
            summary: format!("{host} {service}"),
            perfdata: "v=1".into(),
            long_output: String::new(),
            last_result_ns: 5,
            last_change_ns: 4,
            interval_ns: Some(60),
            stale: false,
            history: "02".into(),
            flapping: false,
            percent_change: 5.0,
            firing_severity: (state != 0).then(|| "critical".to_string()),
            flap_firing: false,
        }
    }

    #[tokio::test]
    async fn check_states_and_a_retired_hosts_alert_states_are_stored_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let st = Storage::open(&dir.path().join("a.db")).await.unwrap();
        st.write(&[
            Changes {
                checks: vec![check_row("a", "", 0), check_row("a", "disk", 2)],
                ..Changes::default()
            },
            Changes {
                checks: vec![check_row("b", "disk", 0), check_row("a", "disk", 0)],
                ..Changes::default()
            },
            event(1),
            event(2),
        ])
        .unwrap();
        let mut rows = st.load_checks().await.unwrap();
        rows.sort_by(|x, y| (&x.host, &x.service).cmp(&(&y.host, &y.service)));
        assert_eq!(
            rows,
            [
                check_row("a", "", 0),
                check_row("a", "disk", 0),
                check_row("b", "disk", 0)
            ]
        );
        // Retiring a: its check rows and the alert state of its group go.
        st.write(&[Changes {
            check_deletes: vec!["a".into()],
            alert_state_deletes: vec![("disk".into(), "host=h1".into())],
            ..Changes::default()
        }])
        .unwrap();
        let rows = st.load_checks().await.unwrap();
        assert_eq!(rows, [check_row("b", "disk", 0)]);
        let states = st.alert_states().await.unwrap();
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].group_id, "host=h2");
    }

    #[tokio::test]
    async fn pending_notifications_keep_their_bodies_when_bodies_move_to_their_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        // A database of the version before the move, with a pending notification.
        {
            let opts = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let pool = SqlitePoolOptions::new().connect_with(opts).await.unwrap();
            let mut older = sqlx::migrate!("./migrations");
            let upto = older
                .migrations
                .iter()
                .position(|m| m.description.contains("outbox bodies"))
                .expect("the migration that moves the bodies");
            older.migrations = std::borrow::Cow::Owned(older.migrations[..upto].to_vec());
            older.run(&pool).await.unwrap();
            sqlx::query(
                "INSERT INTO outbox (created_ns, receiver, group_key, kind, target, headers,
                   timeout_ms, body, status, next_attempt_ns)
                 VALUES (1, 'hook', 'g', 'post', 'http://h/', '{}', 1000, '{\"alerts\":[1]}',
                   'pending', 1)",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let st = Storage::open(&path).await.unwrap();
        let due = st
            .outbox_due("hook", 2, &FxHashSet::default(), 10)
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].body, "{\"alerts\":[1]}");
        let (found, total) = st
            .notifications_page(None, Some("alerts"), 10, 0)
            .await
            .unwrap();
        assert_eq!((found.len(), total), (1, 1), "found by a text of its body");
        // Once sent and old enough, the purge removes the row and its body.
        st.outbox_record(&[(due[0].id, Delivery::Sent)])
            .await
            .unwrap();
        assert_eq!(st.outbox_purge(5).await.unwrap(), 1);
        let bodies: i64 = sqlx::query("SELECT COUNT(*) FROM outbox_bodies")
            .fetch_one(&st.pool)
            .await
            .unwrap()
            .get(0);
        assert_eq!(bodies, 0);
    }

    #[tokio::test]
    async fn the_writer_tells_when_a_change_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let st = Storage::open(&dir.path().join("a.db")).await.unwrap();
        let (tx, rx) = mpsc::channel(4);
        spawn_writer(
            st.clone(),
            rx,
            Arc::new(Metrics::new()),
            Arc::new(tokio::sync::Notify::new()),
        )
        .unwrap();
        let done = Arc::new(tokio::sync::Notify::new());
        tx.send(Changes {
            checks: vec![check_row("a", "x", 2)],
            committed: Some(done.clone()),
            ..Changes::default()
        })
        .await
        .unwrap();
        tokio::time::timeout(Duration::from_secs(20), done.notified())
            .await
            .unwrap();
        assert_eq!(st.load_checks().await.unwrap().len(), 1);
    }

    use sqlx::{Connection, Executor, SqliteConnection};

    /// A second connection to the database file, holding its write lock (an open write
    /// transaction) until it commits.
    async fn hold_write_lock(path: &Path) -> SqliteConnection {
        let mut other = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
            .await
            .unwrap();
        other.execute("BEGIN IMMEDIATE").await.unwrap();
        other
            .execute("DELETE FROM alert_events WHERE seq < 0")
            .await
            .unwrap();
        other
    }

    fn note(receiver: &str, group: &str, body: &str) -> OutboxInsert {
        OutboxInsert {
            receiver: receiver.into(),
            kind: "post".into(),
            target: "http://h/".into(),
            headers: vec![("X-A".into(), "1".into())],
            timeout_ms: 1000,
            body: body.into(),
            group_key: group.into(),
        }
    }

    fn nflog_row(group: &str, sent_ns: i64) -> NflogRow {
        NflogRow {
            receiver: "hook".into(),
            group_key: group.into(),
            firing: "a1".into(),
            resolved: String::new(),
            sent_ns,
            expires_ns: sent_ns + 10,
        }
    }

    #[tokio::test]
    async fn notifications_of_a_batch_are_written_together_and_ids_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let st = Storage::open(&dir.path().join("a.db")).await.unwrap();
        let batch = [
            Changes {
                outbox: vec![note("hook", "g1", "one"), note("hook", "g2", "two")],
                ..Default::default()
            },
            Changes {
                outbox: vec![note("mail", "g1", "three")],
                ..Default::default()
            },
        ];
        st.write(&batch).unwrap();
        let now = crate::clock::now_ns() + 1;
        let due = st
            .outbox_due("hook", now, &FxHashSet::default(), 10)
            .await
            .unwrap();
        let got: Vec<_> = due
            .iter()
            .map(|r| (r.body.as_str(), r.kind.as_str()))
            .collect();
        assert_eq!(got, [("one", "post"), ("two", "post")]);
        assert_eq!(due[0].headers, [("X-A".to_string(), "1".to_string())]);
        // Rows already being delivered are left out, and only `room` are taken.
        let busy: FxHashSet<i64> = [due[0].id].into_iter().collect();
        let rest = st.outbox_due("hook", now, &busy, 10).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].id, due[1].id);
        assert_eq!(
            st.outbox_due("hook", now, &FxHashSet::default(), 1)
                .await
                .unwrap()
                .len(),
            1
        );
        let mail = st
            .outbox_due("mail", now, &FxHashSet::default(), 10)
            .await
            .unwrap();
        assert_eq!(mail[0].body, "three");
        let highest = mail[0].id.max(due[1].id);
        // Once every row is delivered and purged, a new notification still gets a new id.
        let sent: Vec<_> = due
            .iter()
            .chain(&mail)
            .map(|r| (r.id, Delivery::Sent))
            .collect();
        st.outbox_record(&sent).await.unwrap();
        assert_eq!(st.outbox_purge(i64::MAX).await.unwrap(), 3);
        st.write(&[Changes {
            outbox: vec![note("hook", "g1", "four")],
            ..Default::default()
        }])
        .unwrap();
        let due = st
            .outbox_due("hook", i64::MAX, &FxHashSet::default(), 10)
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].body, "four");
        assert!(due[0].id > highest, "{} after {highest}", due[0].id);
    }

    #[tokio::test]
    async fn a_notification_taken_before_the_writer_keeps_it_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let st = Storage::open(&dir.path().join("a.db")).await.unwrap();
        let mut dup = note("hook", "g1", "one");
        dup.headers = vec![
            ("X-A".into(), "1".into()),
            ("X-B".into(), "2".into()),
            ("X-A".into(), "3".into()),
        ];
        let mut batch = vec![Changes {
            outbox: vec![dup, note("hook", "g2", "two")],
            ..Default::default()
        }];
        let first = st.write(&batch).unwrap();
        // The delivery loop polls between the commit and the writer keeping the batch: it
        // reads the first row from the database.
        let now = crate::clock::now_ns() + 1;
        let early = st
            .outbox_due("hook", now, &FxHashSet::default(), 1)
            .await
            .unwrap();
        assert_eq!(early[0].id, first);
        st.keep_fresh(first, &mut batch);
        assert_eq!(
            st.fresh
                .lock()
                .unwrap()
                .rows
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            [first + 1],
            "only the row not yet taken is kept"
        );
        // Its retry reads the stored row, with its attempts.
        st.outbox_record(&[(
            first,
            Delivery::Retry {
                attempts: 1,
                next_ns: 0,
                error: "HTTP 503".into(),
            },
        )])
        .await
        .unwrap();
        let busy: FxHashSet<i64> = [first + 1].into_iter().collect();
        let again = st.outbox_due("hook", now, &busy, 10).await.unwrap();
        assert_eq!((again[0].id, again[0].attempts), (first, 1));
        // The same headers whether read back or kept: one value per name, the last.
        assert_eq!(again[0].headers, early[0].headers);
        let kept = st
            .outbox_due("hook", now, &FxHashSet::default(), 10)
            .await
            .unwrap();
        let kept = kept.iter().find(|r| r.id == first + 1).unwrap();
        assert_eq!(kept.headers, [("X-A".to_string(), "1".to_string())]);
        assert_eq!(
            early[0].headers,
            [
                ("X-A".to_string(), "3".to_string()),
                ("X-B".to_string(), "2".to_string())
            ]
        );
        let mut fresh_dup = vec![Changes {
            outbox: vec![{
                let mut n = note("hook", "g3", "three");
                n.headers = vec![("X-A".into(), "1".into()), ("X-A".into(), "3".into())];
                n
            }],
            ..Default::default()
        }];
        let id = st.write(&fresh_dup).unwrap();
        st.keep_fresh(id, &mut fresh_dup);
        let taken = st.fresh.lock().unwrap().take(id).unwrap();
        assert_eq!(taken.headers, [("X-A".to_string(), "3".to_string())]);
    }

    #[test]
    fn the_fresh_notifications_kept_are_bounded_in_bytes() {
        let row = |id: i64, len: usize| OutboxRow {
            id,
            receiver: String::new(),
            kind: "post".into(),
            target: String::new(),
            headers: Vec::new(),
            timeout_ms: 1,
            body: "x".repeat(len),
            attempts: 0,
        };
        let mut f = FreshOutbox::default();
        f.insert(row(1, FRESH_OUTBOX_BYTES - 10));
        f.insert(row(2, 11));
        f.insert(row(3, 10));
        assert!(f.take(2).is_none(), "over the bound: left to the database");
        assert_eq!(f.take(3).map(|r| r.body.len()), Some(10));
        assert_eq!(f.take(1).map(|r| r.id), Some(1));
        assert_eq!((f.rows.len(), f.bytes), (0, 0));
        assert!(f.take(1).is_none(), "taken once");
    }

    #[tokio::test]
    async fn large_bodies_are_stored_compressed_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let st = Storage::open(&dir.path().join("a.db")).await.unwrap();
        // A webhook body for a large group: the same shape of alert many times over.
        let large: String = (0..90)
            .map(|i| format!("{{\"labels\":{{\"alertname\":\"DiskFull\",\"instance\":\"node{i:04}\"}},\"fingerprint\":\"{:016x}\"}}", i * 7919))
            .collect::<Vec<_>>()
            .join(",");
        let first = st
            .write(&[Changes {
                outbox: vec![note("hook", "g1", &large), note("hook", "g2", "tiny")],
                ..Default::default()
            }])
            .unwrap();
        let stored: Vec<(String, i64)> =
            sqlx::query_as("SELECT encoding, length(body) FROM outbox_bodies ORDER BY id")
                .fetch_all(&st.pool)
                .await
                .unwrap();
        assert_eq!(stored[0].0, "snappy");
        assert!(
            (stored[0].1 as usize) < large.len() / 3,
            "{} bytes stored for {}",
            stored[0].1,
            large.len()
        );
        assert_eq!(
            stored[1],
            ("identity".to_string(), 4),
            "not worth compressing"
        );
        // Not kept in memory: both are read back from the database, unchanged.
        let due = st
            .outbox_due(
                "hook",
                crate::clock::now_ns() + 1,
                &FxHashSet::default(),
                10,
            )
            .await
            .unwrap();
        let got: Vec<_> = due.iter().map(|r| (r.id, r.body.as_str())).collect();
        assert_eq!(got, [(first, large.as_str()), (first + 1, "tiny")]);
        // The history finds a notification by a text of its body, compressed or not.
        let fp = format!("{:016x}", 45 * 7919);
        let (found, total) = st.notifications_page(None, Some(&fp), 10, 0).await.unwrap();
        assert_eq!((found.len(), total), (1, 1));
        assert_eq!(found[0].id, first);
        let (found, total) = st
            .notifications_page(None, Some("tiny"), 10, 0)
            .await
            .unwrap();
        assert_eq!(
            (found.iter().map(|v| v.id).collect::<Vec<_>>(), total),
            (vec![first + 1], 1)
        );
        let (found, total) = st
            .notifications_page(None, Some("node0099"), 10, 0)
            .await
            .unwrap();
        assert_eq!((found.len(), total), (0, 0));
        let (found, total) = st.notifications_page(None, None, 10, 0).await.unwrap();
        assert_eq!((found.len(), total), (2, 2));
    }

    #[test]
    fn a_body_claiming_more_than_the_bound_is_not_inflated() {
        // A Snappy length header (varint) of 1 GiB, then a few bytes.
        let mut bytes = vec![0x80, 0x80, 0x80, 0x80, 0x04];
        bytes.extend_from_slice(b"\x00abc");
        let err = unpack_body(&bytes, "snappy").unwrap_err();
        assert!(err.contains("claims 1073741824 bytes"), "{err}");
        let err = unpack_body(b"x", "zstd").unwrap_err();
        assert!(err.contains("unknown encoding"), "{err}");
        assert!(
            unpack_body(&[0xff, 0xfe], "identity")
                .unwrap_err()
                .contains("UTF-8")
        );
        let mut enc = snap::raw::Encoder::new();
        let mut buf = Vec::new();
        let body = "{\"a\":1}".repeat(50);
        let packed = pack_body(&mut enc, &body, &mut buf).unwrap().to_vec();
        assert_eq!(unpack_body(&packed, "snappy").unwrap(), body);
        assert!(
            pack_body(&mut enc, "", &mut buf).is_none(),
            "nothing to gain"
        );
    }

    #[tokio::test]
    async fn a_path_that_looks_like_a_url_names_one_file_for_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd%20name?mode=ro#x.db");
        let st = Storage::open(&path).await.unwrap();
        // Written by the writer's connection, read through the pool: the same file.
        st.write(&[Changes {
            checks: vec![check_row("a", "x", 2)],
            ..Changes::default()
        }])
        .unwrap();
        assert_eq!(st.load_checks().await.unwrap().len(), 1);
        assert!(path.exists(), "the file is named as written");
    }

    #[tokio::test]
    async fn a_stored_body_that_cannot_be_read_back_is_given_up_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let st = Storage::open(&dir.path().join("a.db")).await.unwrap();
        let large = "{\"alertname\":\"DiskFull\"}".repeat(100);
        let first = st
            .write(&[Changes {
                outbox: vec![note("hook", "g1", &large), note("hook", "g2", &large)],
                ..Default::default()
            }])
            .unwrap();
        // The first body is damaged on disk.
        sqlx::query("UPDATE outbox_bodies SET body = x'00ff00ff' WHERE id = ?")
            .bind(first)
            .execute(&st.pool)
            .await
            .unwrap();
        let now = crate::clock::now_ns() + 1;
        let due = st
            .outbox_due("hook", now, &FxHashSet::default(), 10)
            .await
            .unwrap();
        assert_eq!(due.iter().map(|r| r.id).collect::<Vec<_>>(), [first + 1]);
        assert_eq!(due[0].body, large);
        let (status, error): (String, String) =
            sqlx::query_as("SELECT status, last_error FROM outbox WHERE id = ?")
                .bind(first)
                .fetch_one(&st.pool)
                .await
                .unwrap();
        assert_eq!(status, "failed");
        assert!(error.contains("does not decompress"), "{error}");
        // Given up for good: it never comes up as due again.
        let again = st
            .outbox_due("hook", now, &FxHashSet::from_iter([first + 1]), 10)
            .await
            .unwrap();
        assert!(again.is_empty());
    }

    #[tokio::test]
    async fn a_fresh_notification_is_delivered_from_memory_once_and_retried_from_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let st = Storage::open(&dir.path().join("a.db")).await.unwrap();
        let mut batch = vec![Changes {
            outbox: vec![note("hook", "g1", "one"), note("hook", "g2", "two")],
            ..Default::default()
        }];
        let first = st.write(&batch).unwrap();
        st.keep_fresh(first, &mut batch);
        assert!(batch[0].outbox.is_empty(), "the bodies moved to the cache");
        // Written without being kept: read back from the database.
        st.write(&[Changes {
            outbox: vec![note("hook", "g3", "three")],
            ..Default::default()
        }])
        .unwrap();
        // The stored copies change behind the cache's back: the first delivery does not read
        // them, a retry does.
        sqlx::query("UPDATE outbox_bodies SET body = 'stored ' || body")
            .execute(&st.pool)
            .await
            .unwrap();
        let now = crate::clock::now_ns() + 1;
        let due = st
            .outbox_due("hook", now, &FxHashSet::default(), 10)
            .await
            .unwrap();
        let got: Vec<_> = due.iter().map(|r| (r.id, r.body.as_str())).collect();
        assert_eq!(
            got,
            [
                (first, "one"),
                (first + 1, "two"),
                (first + 2, "stored three")
            ]
        );
        assert_eq!(due[0].headers, [("X-A".to_string(), "1".to_string())]);
        assert_eq!(
            (due[0].kind.as_str(), due[0].target.as_str()),
            ("post", "http://h/")
        );
        st.outbox_record(&[
            (
                first,
                Delivery::Retry {
                    attempts: 1,
                    next_ns: 0,
                    error: "HTTP 503".into(),
                },
            ),
            (first + 1, Delivery::Sent),
            (first + 2, Delivery::Sent),
        ])
        .await
        .unwrap();
        let again = st
            .outbox_due("hook", now, &FxHashSet::default(), 10)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].id, again[0].body.as_str()), (first, "stored one"));
        assert_eq!(again[0].attempts, 1);
    }

    #[tokio::test]
    async fn delivery_results_are_recorded_in_the_writers_batch() {
        let dir = tempfile::tempdir().unwrap();
        let st = Storage::open(&dir.path().join("a.db")).await.unwrap();
        let mut batch = vec![Changes {
            outbox: vec![
                note("hook", "g1", "one"),
                note("hook", "g2", "two"),
                note("hook", "g3", "three"),
            ],
            ..Default::default()
        }];
        let first = st.write(&batch).unwrap();
        st.keep_fresh(first, &mut batch);
        let now = crate::clock::now_ns() + 1;
        let due = st
            .outbox_due("hook", now, &FxHashSet::default(), 1)
            .await
            .unwrap();
        assert_eq!(due[0].id, first);
        st.forget_fresh([first, first + 1, first + 2]);
        // Recorded with an alert change, in one transaction.
        st.write(&[
            Changes {
                alerts: vec![row(7, 70)],
                ..Default::default()
            },
            Changes {
                deliveries: vec![
                    (
                        first,
                        Delivery::Retry {
                            attempts: 1,
                            next_ns: 0,
                            error: "HTTP 503".into(),
                        },
                    ),
                    (first + 1, Delivery::Sent),
                    (
                        first + 2,
                        Delivery::Failed {
                            error: "HTTP 400".into(),
                        },
                    ),
                ],
                ..Default::default()
            },
        ])
        .unwrap();
        let rows: Vec<(i64, String, i64, Option<String>)> =
            sqlx::query_as("SELECT id, status, attempts, last_error FROM outbox ORDER BY id")
                .fetch_all(&st.pool)
                .await
                .unwrap();
        assert_eq!(
            rows,
            [
                (first, "pending".into(), 1, Some("HTTP 503".into())),
                (first + 1, "sent".into(), 1, None),
                (first + 2, "failed".into(), 1, Some("HTTP 400".into())),
            ]
        );
        assert_eq!(st.load_alerts().await.unwrap().len(), 1);
        // Only the retry comes up again, read back from the database with its attempts.
        let again = st
            .outbox_due("hook", now, &FxHashSet::default(), 10)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].id, again[0].attempts), (first, 1));
        assert!(st.fresh.lock().unwrap().rows.is_empty());
    }

    #[tokio::test]
    async fn notifications_wait_for_a_write_lock_held_by_another_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alertd.db");
        let storage = Storage::open_with(&path, Duration::from_secs(5))
            .await
            .unwrap();
        // Another connection holds the write lock for a moment and commits a change, as the
        // pool's connections do when they purge old notifications.
        let mut other = hold_write_lock(&path).await;
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            other.execute("COMMIT").await.unwrap();
            other
        });
        // A batch of notifications alone reads the next id before it writes: it must wait for
        // the lock, not fail when the other connection's commit makes its read stale.
        storage
            .write_off_thread(vec![Changes {
                outbox: vec![note("hook", "g1", "one")],
                ..Default::default()
            }])
            .await
            .unwrap();
        release.await.unwrap();
        let due = storage
            .outbox_due("hook", i64::MAX, &FxHashSet::default(), 10)
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
    }

    #[tokio::test]
    async fn the_last_notification_log_change_of_a_batch_wins() {
        let dir = tempfile::tempdir().unwrap();
        let st = Storage::open(&dir.path().join("a.db")).await.unwrap();
        let batch = [
            Changes {
                nflog: vec![nflog_row("gone", 1), nflog_row("kept", 1)],
                ..Default::default()
            },
            Changes {
                nflog_deletes: vec![("hook".into(), "gone".into())],
                nflog: vec![nflog_row("kept", 2)],
                ..Default::default()
            },
            Changes {
                nflog_deletes: vec![("hook".into(), "back".into())],
                ..Default::default()
            },
            Changes {
                nflog: vec![nflog_row("back", 3)],
                ..Default::default()
            },
        ];
        st.write(&batch).unwrap();
        let mut log: Vec<_> = st
            .load_nflog()
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.group_key, r.sent_ns))
            .collect();
        log.sort();
        assert_eq!(log, [("back".to_string(), 3), ("kept".to_string(), 2)]);
    }

    fn event(n: i64) -> Changes {
        Changes {
            event: Some(EventRecord {
                state: StoredAlert {
                    task: "disk".into(),
                    node: "alert4".into(),
                    group_id: format!("host=h{n}"),
                    alert_id: format!("disk/h{n}"),
                    level: Level::Critical,
                    first_triggered: n,
                    last_event_ns: n,
                    message: "full".into(),
                },
                previous_level: Level::Ok,
                duration: 0,
                body: "{}".into(),
                received_ns: None,
            }),
            ..Default::default()
        }
    }

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn the_writer_retries_a_locked_database_and_commits_the_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alertd.db");
        let storage = Storage::open_with(&path, Duration::from_millis(20))
            .await
            .unwrap();
        // Another process's connection to the same file takes the write lock and keeps it.
        let mut other = hold_write_lock(&path).await;

        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = mpsc::channel(16);
        for n in 0..3 {
            tx.send(event(n)).await.unwrap();
        }
        let writer = spawn_writer(
            storage.clone(),
            rx,
            metrics.clone(),
            Arc::new(tokio::sync::Notify::new()),
        )
        .unwrap();
        // Every attempt fails as busy, and each failure is counted.
        wait_for("two failed attempts", || metrics.sqlite_errors.get() >= 2).await;
        assert_eq!(metrics.events_stored.get(), 0);
        let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM alert_events")
            .fetch_one(&mut other)
            .await
            .unwrap();
        assert_eq!(seen, 0);

        // Once the lock is released, the next attempt commits all of the batch.
        other.execute("COMMIT").await.unwrap();
        wait_for("the batch to commit", || metrics.events_stored.get() == 3).await;
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM alert_events")
            .fetch_one(&mut other)
            .await
            .unwrap();
        assert_eq!(stored, 3);
        let states = storage.alert_states().await.unwrap();
        assert_eq!(states.len(), 3);
        assert!(states.iter().all(|s| s.level == Level::Critical));
        let errors = metrics.sqlite_errors.get();
        assert!(errors >= 2, "{errors} failed attempts counted");

        // Events sent later go through without further errors.
        tx.send(event(3)).await.unwrap();
        wait_for("a later event", || metrics.events_stored.get() == 4).await;
        assert_eq!(metrics.sqlite_errors.get(), errors);
        drop(tx);
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .unwrap()
            .unwrap();
    }
}
