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
    /// Notifications the event's handlers ask for, stored in the outbox with the event.
    pub deliveries: Vec<crate::receivers::Delivery>,
}

/// A notification in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    /// `post` or `log`.
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
            deliveries: crate::receivers::handler_deliveries(ev).0,
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
            .busy_timeout(Duration::from_secs(5));
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

    /// Writes events and their alert states in one transaction.
    pub async fn write(&self, batch: &[EventRecord]) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        for e in batch {
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
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        for e in batch {
            for d in &e.deliveries {
                let headers = serde_json::Value::Object(
                    d.headers
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                        .collect(),
                );
                sqlx::query(
                    "INSERT INTO outbox (created_ns, kind, target, headers, timeout_ms, body, status, next_attempt_ns)
                     VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
                )
                .bind(now)
                .bind(d.kind)
                .bind(&d.target)
                .bind(headers.to_string())
                .bind(d.timeout.as_millis() as i64)
                .bind(&e.body)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Storage {
    /// Pending notifications due at `now`, oldest first.
    pub async fn outbox_due(&self, now: i64, limit: i64) -> Result<Vec<OutboxRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, kind, target, headers, timeout_ms, body, attempts FROM outbox
             WHERE status = 'pending' AND next_attempt_ns <= ? ORDER BY id LIMIT ?",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let headers: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(r.get::<&str, _>(3)).unwrap_or_default();
                OutboxRow {
                    id: r.get(0),
                    kind: r.get(1),
                    target: r.get(2),
                    headers: headers
                        .into_iter()
                        .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
                        .collect(),
                    timeout_ms: r.get(4),
                    body: r.get(5),
                    attempts: r.get(6),
                }
            })
            .collect())
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
    mut rx: mpsc::Receiver<EventRecord>,
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
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as i64);
                    for e in batch.iter().filter_map(|e| e.received_ns) {
                        metrics
                            .alert_latency_seconds
                            .observe((now - e).max(0) as f64 / 1e9);
                    }
                    metrics.events_stored.inc_by(batch.len() as u64);
                    if batch.iter().any(|e| !e.deliveries.is_empty()) {
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
