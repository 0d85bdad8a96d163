//! `alertd run`: the long-running service. Wires ingest (HTTP write endpoints) to the rules
//! engine (one thread, fed by a bounded queue) and the engine's alert events to SQLite (one
//! writer thread), and serves health, readiness, metrics, reload and rule status.
//!
//! Data flow: HTTP handler validates a body and queues a [`WriteBatch`] (429 when the queue is
//! full) → engine thread evaluates rules and passes events to the storage writer → SQLite.

pub mod am_api;
pub mod api_v1;
pub mod auth;
pub mod checks;
pub mod engine_thread;
pub mod hosts;
pub mod http;
pub mod listener;
pub mod metrics;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::engine::MeasurementFilter;
use crate::ingest::write::WriteBatch;
use crate::receivers::config::{Receivers, ReceiversError};
use crate::storage::Storage;
use engine_thread::{RuleStatus, Work};
use metrics::Metrics;

/// Errors that stop the service from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The database could not be opened.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The NSCA port could not be opened.
    #[error("cannot listen for NSCA on {addr}: {source}")]
    Nsca {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The `[checks.nsca]` settings are invalid.
    #[error("checks.nsca: {0}")]
    NscaConfig(#[from] crate::checks::nsca::NscaError),
    /// The `[checks]` settings are invalid.
    #[error("{0}")]
    Checks(#[from] crate::checks::state::ChecksConfigError),
    /// The TLS certificate or key is unusable.
    #[error("{0}")]
    Tls(#[from] listener::TlsError),
    /// The HTTP server failed.
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    /// The engine thread could not be started.
    #[error("cannot start the engine thread: {0}")]
    Thread(std::io::Error),
    /// The storage writer's thread could not be started.
    #[error("cannot start the storage writer thread: {0}")]
    WriterThread(std::io::Error),
    /// The receivers directory is invalid.
    #[error("receivers: {0}")]
    Receivers(#[from] ReceiversError),
}

/// State shared by the HTTP handlers.
pub struct Shared {
    /// The configuration in force.
    pub config: Config,
    /// Work queues of the engine shards.
    pub work: Vec<std::sync::mpsc::SyncSender<Work>>,
    /// Batches queued and not yet evaluated by every shard.
    pub queued: AtomicUsize,
    /// Body bytes of the queued batches.
    pub queued_bytes: AtomicUsize,
    /// Woken when a batch leaves the queue: writes waiting for room try again.
    pub room: tokio::sync::Notify,
    /// Measurements some rule reads (the union of the shards', replaced on reload).
    pub filter: RwLock<Arc<MeasurementFilter>>,
    /// Each shard's measurement filter.
    shard_filters: std::sync::Mutex<Vec<MeasurementFilter>>,
    /// Rule status per shard, as of the last load/reload and engine tick; the last slot holds
    /// rules that failed to load and run nowhere.
    rules: RwLock<Vec<Vec<RuleStatus>>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The database.
    pub storage: Storage,
    /// True once rules are loaded and the database is open.
    pub ready: AtomicBool,
    /// Accepted points for `alertd record` subscribers (only filled while someone listens).
    pub recordings: tokio::sync::broadcast::Sender<Arc<Captured>>,
    /// The URL links in notifications point at.
    pub external_url: String,
    /// The alert dispatcher's inbox.
    pub manager: tokio::sync::mpsc::Sender<crate::manager::dispatch::Msg>,
    /// Receivers and routing in force.
    pub receivers: Arc<RwLock<Arc<Receivers>>>,
    /// When the service started, Unix ns.
    pub started_ns: i64,
    /// Token authentication (off when no token is configured).
    pub auth: auth::Auth,
    /// The passive-check task's inbox.
    pub checks: tokio::sync::mpsc::Sender<checks::CheckMsg>,
    /// The host-registry task's inbox.
    pub hosts: tokio::sync::mpsc::Sender<hosts::HostMsg>,
    /// The storage writer's inbox.
    pub writer: tokio::sync::mpsc::Sender<crate::storage::Changes>,
}

/// Points a write accepted, normalized to nanosecond timestamps, for recorders.
#[derive(Debug)]
pub struct Captured {
    /// Database.
    pub db: Arc<str>,
    /// Retention policy.
    pub rp: Arc<str>,
    /// Line protocol, one point per line.
    pub lines: String,
}

impl Shared {
    /// Every rule's status, by name.
    pub fn rules(&self) -> Vec<RuleStatus> {
        let mut all: Vec<RuleStatus> = self
            .rules
            .read()
            .map(|r| r.iter().flatten().cloned().collect())
            .unwrap_or_default();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        // A rule split by host runs on every shard: one entry with the counters summed.
        all.dedup_by(|later, first| {
            if later.name != first.name {
                return false;
            }
            first.stats.add(&later.stats);
            first.groups += later.groups;
            true
        });
        all
    }

    /// Records a shard's rule statuses.
    pub fn set_shard_rules(&self, shard: usize, status: Vec<RuleStatus>) {
        if let Ok(mut r) = self.rules.write()
            && let Some(slot) = r.get_mut(shard)
        {
            *slot = status;
        }
    }

    /// Records the rules of `loaded` that failed to load and run on no shard.
    pub fn set_unplaced(&self, loaded: &[engine_thread::LoadedRule]) {
        let running: Vec<String> = match self.rules.read() {
            Ok(r) => r
                .iter()
                .take(r.len().saturating_sub(1))
                .flatten()
                .map(|s| s.name.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        let unplaced: Vec<RuleStatus> = loaded
            .iter()
            .filter(|l| l.result.is_err() && !running.contains(&l.name))
            .map(RuleStatus::failed)
            .collect();
        for u in &unplaced {
            self.metrics
                .rule_load_error
                .get_or_create(&metrics::RuleLabel {
                    rule: u.name.clone(),
                })
                .set(1);
        }
        if let Ok(mut r) = self.rules.write()
            && let Some(last) = r.last_mut()
        {
            *last = unplaced;
        }
    }

    /// Records a shard's measurement filter and recomputes the union the handlers use.
    pub fn set_shard_filter(&self, shard: usize, filter: MeasurementFilter) {
        let Ok(mut filters) = self.shard_filters.lock() else {
            return;
        };
        if let Some(slot) = filters.get_mut(shard) {
            *slot = filter;
        }
        let union = MeasurementFilter::union(&filters);
        if let Ok(mut f) = self.filter.write() {
            *f = Arc::new(union);
        }
    }

    /// Whether the queue has room for another batch now. Write handlers ask before parsing a
    /// body, so a body that would be refused with 429 anyway costs no parsing.
    pub fn has_room(&self) -> bool {
        let depth = self.queued.load(Ordering::Relaxed);
        depth == 0
            || (depth < self.config.ingest.queue_batches
                && self.queued_bytes.load(Ordering::Relaxed) <= self.config.ingest.queue_bytes)
    }

    /// Waits until `ready` holds, trying it again each time a batch leaves the queue, and until
    /// `deadline` at the latest; whether it held. Each batch leaving wakes one waiter (in
    /// arrival order), so a freed place lets one write through rather than every waiting one,
    /// and a waiter that cannot use the place waits for the next batch instead of spinning.
    pub async fn wait_until(
        &self,
        deadline: tokio::time::Instant,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        loop {
            // Registered before trying, so a batch leaving in between is not missed.
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if ready() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                // One last try: room may have come without a wake-up meant for this waiter.
                return ready();
            }
        }
    }

    /// Queues a batch for every engine shard without waiting; gives it back when the queue is
    /// full.
    pub fn submit(&self, batch: WriteBatch) -> Result<(), Box<WriteBatch>> {
        // Count before sending: a shard may finish the batch (and decrement) at once.
        let size = batch.bytes();
        let depth = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
        let bytes = self.queued_bytes.fetch_add(size, Ordering::Relaxed) + size;
        // One batch always fits, so a body under the size limit is never refused forever.
        let over = depth > self.config.ingest.queue_batches
            || (bytes > self.config.ingest.queue_bytes && depth > 1);
        if over {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            return Err(Box::new(batch));
        }
        // The gauge moves by steps, not by setting what this thread saw: a shard may finish
        // the batch and step it down before this line runs, and a value set here would then
        // overwrite the later one (a depth left above 0 on an empty queue).
        self.metrics.ingest_queue_depth.inc();
        let q = Arc::new(engine_thread::Queued::new(batch, size, self.work.len()));
        for w in &self.work {
            // Each shard queue holds more than the batch limit, so this fails only when the shard
            // has stopped; the batch then counts as done for it.
            if w.try_send(Work::Write(q.clone())).is_err() {
                q.done(self);
            }
        }
        Ok(())
    }

    /// Reloads the receivers directory; on an error the receivers in force stay.
    pub async fn reload_receivers(&self) -> Result<(), ReceiversError> {
        let dir = self.config.receivers_dir.clone();
        let loaded = tokio::task::spawn_blocking(move || crate::receivers::config::load_dir(&dir))
            .await
            .map_err(|e| ReceiversError {
                path: self.config.receivers_dir.clone(),
                pos: None,
                msg: e.to_string(),
            })??;
        let loaded = Arc::new(loaded);
        if let Ok(mut r) = self.receivers.write() {
            *r = loaded.clone();
        }
        let _ = self
            .manager
            .send(crate::manager::dispatch::Msg::Reload(loaded))
            .await;
        Ok(())
    }

    /// Reloads rules from the rules directory; returns the rules' status afterwards.
    pub async fn reload(&self) -> Vec<RuleStatus> {
        if let Err(error) = self.reload_receivers().await {
            tracing::error!(%error, "Receivers not reloaded; the previous ones stay in force.");
            self.metrics.reload_failures.inc();
        }
        let dir = self.config.rules_dir.clone();
        let loaded = tokio::task::spawn_blocking(move || engine_thread::load_rules(&dir))
            .await
            .unwrap_or_default();
        let stored = match self.storage.alert_states().await {
            Ok(s) => engine_thread::restore_map(s),
            Err(error) => {
                tracing::warn!(%error, "Reading stored alert states for the reload failed; restarted rules begin at OK.");
                Default::default()
            }
        };
        let mut replies = Vec::new();
        for w in &self.work {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if w.send(Work::Reload(loaded.clone(), stored.clone(), tx))
                .is_ok()
            {
                replies.push(rx);
            }
        }
        for rx in replies {
            let _ = rx.await;
        }
        self.set_unplaced(&loaded);
        self.rules()
    }
}

/// Runs the service until SIGINT or SIGTERM.
pub async fn run(config: Config, config_file: Option<PathBuf>) -> Result<(), ServiceError> {
    let metrics = Arc::new(Metrics::new());
    // TLS first: a bad certificate stops the start before anything else happens.
    let tls = match (&config.http.tls_cert, &config.http.tls_key) {
        (Some(cert), Some(key)) => Some(listener::tls_acceptor(cert, key)?),
        _ => None,
    };
    let tls_on = tls.is_some();
    let mut check_state =
        crate::checks::state::Checks::new(&config.checks, crate::clock::now_ns())?;
    let (checks_tx, checks_rx) = tokio::sync::mpsc::channel(1024);
    let (hosts_tx, hosts_rx) = tokio::sync::mpsc::channel(1024);
    let storage = Storage::open(&config.database_path()).await?;
    let stored = storage.alert_states().await?;
    let registry = crate::hosts::Registry::from_rows(storage.load_hosts().await?);
    // Check states resume where they were, with the alerts they have firing.
    let check_rows = storage.load_checks().await?;
    check_state.restore(&check_rows);
    let check_firing = checks::firing_of(&check_rows);
    drop(check_rows);

    let receivers = Arc::new(crate::receivers::config::load_dir(&config.receivers_dir)?);
    let receivers_lock = Arc::new(RwLock::new(receivers.clone()));
    let external_url = config.external_url();

    // One writer thread commits alert events, alerts, notifications and the rest of the state;
    // the dispatcher turns alert events into notifications in the outbox, and the delivery task
    // sends them and records how that went.
    let (write_tx, write_rx) = tokio::sync::mpsc::channel(65_536);
    let writer_tx = write_tx.clone();
    let wake_delivery = Arc::new(tokio::sync::Notify::new());
    crate::storage::spawn_writer(
        storage.clone(),
        write_rx,
        metrics.clone(),
        wake_delivery.clone(),
    )
    .map_err(ServiceError::WriterThread)?;
    let dispatcher = crate::manager::dispatch::Dispatcher::restore(
        &storage,
        receivers,
        crate::manager::dispatch::Settings {
            external_url: external_url.clone(),
            silence_retention: config.alerts.silence_retention.as_nanos() as i64,
        },
        write_tx,
        metrics.clone(),
    )
    .await?;
    let (event_tx, manager_rx) = tokio::sync::mpsc::channel(65_536);
    tokio::spawn(dispatcher.run(manager_rx));
    tokio::spawn(crate::receivers::run_delivery(
        crate::receivers::DeliveryContext {
            storage: storage.clone(),
            writer: writer_tx.clone(),
            metrics: metrics.clone(),
            receivers: receivers_lock.clone(),
            queue: config.alerts.receiver_queue,
            concurrency: config.alerts.receiver_concurrency,
        },
        wake_delivery,
    ));
    tokio::spawn(purge_outbox(
        storage.clone(),
        config.alerts.notification_retention,
    ));

    // One work queue per shard, holding write batches plus a few control messages.
    let shards = match config.rules.engine_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let (work_tx, work_rx): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| std::sync::mpsc::sync_channel(config.ingest.queue_batches + 16))
        .unzip();
    let loaded = engine_thread::load_rules(&config.rules_dir);
    let shared = Arc::new(Shared {
        config: config.clone(),
        work: work_tx,
        queued: AtomicUsize::new(0),
        queued_bytes: AtomicUsize::new(0),
        room: tokio::sync::Notify::new(),
        filter: RwLock::new(Arc::new(MeasurementFilter::everything())),
        shard_filters: std::sync::Mutex::new(vec![MeasurementFilter::union(&[]); shards]),
        rules: RwLock::new(vec![Vec::new(); shards + 1]),
        metrics: metrics.clone(),
        storage,
        ready: AtomicBool::new(false),
        recordings: tokio::sync::broadcast::channel(1024).0,
        external_url,
        manager: event_tx.clone(),
        receivers: receivers_lock,
        started_ns: crate::clock::now_ns(),
        auth: auth::Auth::new(&config.auth),
        checks: checks_tx,
        hosts: hosts_tx,
        writer: writer_tx,
    });
    tokio::spawn(hosts::run(shared.clone(), registry, hosts_rx));
    let nsca_addr =
        checks::start_nsca(shared.clone())
            .await
            .map_err(|source| ServiceError::Nsca {
                addr: config.checks.nsca.listen_addr().unwrap_or_default(),
                source,
            })?;
    tokio::spawn(checks::run(
        shared.clone(),
        check_state,
        check_firing,
        checks_rx,
    ));
    let engine =
        engine_thread::EngineThreads::start(shared.clone(), work_rx, event_tx, loaded, stored)
            .map_err(ServiceError::Thread)?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServiceError::Bind {
            addr: config.listen,
            source,
        })?;
    let listener = listener::Listener::start(listener, &config.http, tls, metrics.clone())
        .map_err(ServiceError::Serve)?;
    let addr = axum::serve::Listener::local_addr(&listener).map_err(ServiceError::Serve)?;
    if !shared.auth.enabled() && !addr.ip().is_loopback() {
        tracing::warn!(
            listen = %addr,
            "Listening beyond loopback with no [auth] tokens: anyone who can reach this port can write data, read alerts and change silences. Configure [[auth.tokens]]."
        );
    }
    shared.ready.store(true, Ordering::Relaxed);
    let rules = shared.rules().iter().filter(|r| r.running).count();
    tracing::info!(
        listen = %addr,
        config = %config_file.as_ref().map_or_else(|| "embedded default".to_string(), |p| p.display().to_string()),
        database = %config.database_path().display(),
        rules_dir = %config.rules_dir.display(),
        rules,
        tls = tls_on,
        nsca = %nsca_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
        tokens = config.auth.tokens.len(),
        "alertd listening."
    );

    tokio::spawn(reload_on_sighup(shared.clone()));
    let app = http::router(shared.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(ServiceError::Serve)?;
    tracing::info!("Shutting down.");
    store_on_shutdown(&shared).await;
    drop(shared);
    engine.stop();
    Ok(())
}

/// Stores the check states and registry rows changed since their last periodic flush, and
/// waits (at most a few seconds) until they are committed.
async fn store_on_shutdown(shared: &Shared) {
    let wait = std::time::Duration::from_secs(5);
    let (tx, rx) = tokio::sync::oneshot::channel();
    if shared
        .checks
        .send(checks::CheckMsg::Flush(tx))
        .await
        .is_ok()
        && tokio::time::timeout(wait, rx).await.is_err()
    {
        tracing::warn!("Check states not stored at shutdown within 5 s.");
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    if shared.hosts.send(hosts::HostMsg::Flush(tx)).await.is_ok()
        && tokio::time::timeout(wait, rx).await.is_err()
    {
        tracing::warn!("Host registry not stored at shutdown within 5 s.");
    }
}

async fn purge_outbox(storage: Storage, retention: std::time::Duration) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        tick.tick().await;
        let before = std::time::SystemTime::now()
            .checked_sub(retention)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i64);
        match storage.outbox_purge(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "Purged old notifications from the outbox."),
            Err(error) => tracing::warn!(%error, "Purging the outbox failed."),
        }
    }
}

async fn reload_on_sighup(shared: Arc<Shared>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading rules.");
            shared.reload().await;
        }
    }
    #[cfg(not(unix))]
    let _ = shared;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
