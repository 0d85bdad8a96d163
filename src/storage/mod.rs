//! SQLite storage (sqlx, WAL): alert events and the current state of every alert, so alerts
//! resume at their level after a restart, even after `kill -9`.
//!
//! One writer task owns all writes and commits them in batched transactions; nothing on the
//! ingest path waits for the database. A failed write (busy database, full disk) is logged,
//! counted and retried with backoff, never dropped: while it retries the writer's bounded queue
//! fills and the engine, then the write endpoints, push back.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::str::FromStr;
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
    /// Alerts forgotten (fingerprints).
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
    }
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
    pool: SqlitePool,
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
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|source| StorageError::Open {
                path: path.display().to_string(),
                source,
            })?
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
        Ok(Storage { pool })
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

    /// Commits a batch of changes in one transaction.
    pub async fn write(&self, batch: &[Changes]) -> Result<(), StorageError> {
        let now = crate::clock::now_ns();
        let mut tx = self.pool.begin().await?;
        for c in batch {
            if let Some(e) = &c.event {
                let s = &e.state;
                sqlx::query(
                    "INSERT INTO alert_events (task, node, group_id, alert_id, level, previous_level, time_ns, duration_ns, message, body)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&s.task)
                .bind(&s.node)
                .bind(&s.group_id)
                .bind(&s.alert_id)
                .bind(s.level.as_str())
                .bind(e.previous_level.as_str())
                .bind(s.last_event_ns)
                .bind(e.duration)
                .bind(&s.message)
                .bind(&e.body)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO alert_state (task, node, group_id, alert_id, level, first_triggered, last_event_ns, message)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (task, node, group_id) DO UPDATE SET
                       alert_id = excluded.alert_id, level = excluded.level,
                       first_triggered = excluded.first_triggered,
                       last_event_ns = excluded.last_event_ns, message = excluded.message",
                )
                .bind(&s.task)
                .bind(&s.node)
                .bind(&s.group_id)
                .bind(&s.alert_id)
                .bind(s.level.as_str())
                .bind(s.first_triggered)
                .bind(s.last_event_ns)
                .bind(&s.message)
                .execute(&mut *tx)
                .await?;
            }
            for a in &c.alerts {
                sqlx::query(
                    "INSERT INTO alerts (fingerprint, labels, annotations, starts_ns, ends_ns, updated_ns, generator_url, source, timeout)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (fingerprint) DO UPDATE SET
                       labels = excluded.labels, annotations = excluded.annotations,
                       starts_ns = excluded.starts_ns, ends_ns = excluded.ends_ns,
                       updated_ns = excluded.updated_ns, generator_url = excluded.generator_url,
                       source = excluded.source, timeout = excluded.timeout",
                )
                .bind(a.fingerprint)
                .bind(&a.labels)
                .bind(&a.annotations)
                .bind(a.starts_ns)
                .bind(a.ends_ns)
                .bind(a.updated_ns)
                .bind(&a.generator_url)
                .bind(&a.source)
                .bind(a.timeout)
                .execute(&mut *tx)
                .await?;
            }
            for fp in &c.alert_deletes {
                sqlx::query("DELETE FROM alerts WHERE fingerprint = ?")
                    .bind(fp)
                    .execute(&mut *tx)
                    .await?;
            }
            for d in &c.outbox {
                let headers = serde_json::Value::Object(
                    d.headers
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                        .collect(),
                );
                sqlx::query(
                    "INSERT INTO outbox (created_ns, receiver, group_key, kind, target, headers, timeout_ms, body, status, next_attempt_ns)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                )
                .bind(now)
                .bind(&d.receiver)
                .bind(&d.group_key)
                .bind(&d.kind)
                .bind(&d.target)
                .bind(headers.to_string())
                .bind(d.timeout_ms)
                .bind(&d.body)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            for n in &c.nflog {
                sqlx::query(
                    "INSERT INTO nflog (receiver, group_key, firing, resolved, sent_ns, expires_ns)
                     VALUES (?, ?, ?, ?, ?, ?)
                     ON CONFLICT (receiver, group_key) DO UPDATE SET
                       firing = excluded.firing, resolved = excluded.resolved,
                       sent_ns = excluded.sent_ns, expires_ns = excluded.expires_ns",
                )
                .bind(&n.receiver)
                .bind(&n.group_key)
                .bind(&n.firing)
                .bind(&n.resolved)
                .bind(n.sent_ns)
                .bind(n.expires_ns)
                .execute(&mut *tx)
                .await?;
            }
            for (r, g) in &c.nflog_deletes {
                sqlx::query("DELETE FROM nflog WHERE receiver = ? AND group_key = ?")
                    .bind(r)
                    .bind(g)
                    .execute(&mut *tx)
                    .await?;
            }
            for si in &c.silences {
                sqlx::query(
                    "INSERT INTO silences (id, spec, updated_ns) VALUES (?, ?, ?)
                     ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, updated_ns = excluded.updated_ns",
                )
                .bind(&si.id)
                .bind(&si.spec)
                .bind(si.updated_ns)
                .execute(&mut *tx)
                .await?;
            }
            for id in &c.silence_deletes {
                sqlx::query("DELETE FROM silences WHERE id = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every stored alert of the alert manager.
    pub async fn load_alerts(&self) -> Result<Vec<AlertRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT fingerprint, labels, annotations, starts_ns, ends_ns, updated_ns, generator_url, source, timeout FROM alerts",
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
    /// order).
    pub async fn outbox_due(
        &self,
        receiver: &str,
        now: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, receiver, kind, target, headers, timeout_ms, body, attempts FROM outbox o
             WHERE receiver = ? AND status = 'pending' AND next_attempt_ns <= ?
               AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.receiver = o.receiver
                     AND p.group_key = o.group_key AND p.status = 'pending' AND p.id < o.id)
             ORDER BY id LIMIT ?",
        )
        .bind(receiver)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let headers: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(r.get::<&str, _>(4)).unwrap_or_default();
                OutboxRow {
                    id: r.get(0),
                    receiver: r.get(1),
                    kind: r.get(2),
                    target: r.get(3),
                    headers: headers
                        .into_iter()
                        .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
                        .collect(),
                    timeout_ms: r.get(5),
                    body: r.get(6),
                    attempts: r.get(7),
                }
            })
            .collect())
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
        let r = sqlx::query("DELETE FROM outbox WHERE status != 'pending' AND created_ns < ?")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// Marks a notification delivered.
    pub async fn outbox_sent(&self, id: i64) -> Result<(), StorageError> {
        sqlx::query("UPDATE outbox SET status = 'sent', attempts = attempts + 1, last_error = NULL WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Schedules another attempt.
    pub async fn outbox_retry(
        &self,
        id: i64,
        attempts: i64,
        next_ns: i64,
        error: &str,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE outbox SET attempts = ?, next_attempt_ns = ?, last_error = ? WHERE id = ?",
        )
        .bind(attempts)
        .bind(next_ns)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives up on a notification, keeping the reason.
    pub async fn outbox_failed(&self, id: i64, error: &str) -> Result<(), StorageError> {
        sqlx::query("UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ? WHERE id = ?")
            .bind(error)
            .bind(id)
            .execute(&self.pool)
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

/// Largest number of events committed in one transaction.
const MAX_BATCH: usize = 512;

/// Runs the single writer: takes events from `rx`, commits them in batches, retries failures
/// with exponential backoff until they succeed.
pub async fn run_writer(
    storage: Storage,
    mut rx: mpsc::Receiver<Changes>,
    metrics: Arc<Metrics>,
    deliveries: Arc<tokio::sync::Notify>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
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
            match storage.write(&batch).await {
                Ok(()) => {
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
                        deliveries.notify_one();
                    }
                    break;
                }
                Err(error) => {
                    metrics.sqlite_errors.inc();
                    tracing::error!(%error, events = batch.len(), retry_in_ms = backoff.as_millis() as u64, "Storing alert events failed; retrying.");
                    tokio::time::sleep(backoff).await;
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
    use sqlx::{Connection, Executor, SqliteConnection};

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
        let mut other =
            SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&path))
                .await
                .unwrap();
        other.execute("BEGIN IMMEDIATE").await.unwrap();
        other
            .execute("DELETE FROM alert_events WHERE seq < 0")
            .await
            .unwrap();

        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = mpsc::channel(16);
        for n in 0..3 {
            tx.send(event(n)).await.unwrap();
        }
        let writer = tokio::spawn(run_writer(
            storage.clone(),
            rx,
            metrics.clone(),
            Arc::new(tokio::sync::Notify::new()),
        ));
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
        writer.await.unwrap();
    }
}
