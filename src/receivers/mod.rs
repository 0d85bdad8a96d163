//! Receivers: turning notifications into deliveries and delivering them.
//!
//! - [`group_outbox`] renders a flushed group's notification for each integration of its
//!   receiver (webhook, log, e-mail, Alerta); [`handler_outbox`] renders one alert event for
//!   each TICK handler of its rule (`.post()`, `.log()`, `.email()`, `.alerta()`).
//! - The rows are written to the SQLite outbox by the storage writer, in the same transaction as
//!   what caused them; [`run_delivery`] sends what is due, per receiver: each receiver has its
//!   own bounded queue and concurrency, so a slow or dead receiver delays nobody else, and the
//!   notifications of one group go out in order.
//! - A notification is marked sent after a 2xx (or SMTP 250), retried with exponential backoff
//!   and jitter on connection errors, timeouts, 429 and 5xx (SMTP 4xx), and given up on other
//!   4xx (SMTP 5xx) with the reason stored. After a crash everything pending is sent again (at
//!   least once).

pub mod alerta;
pub mod config;
pub mod email;
pub mod notification;
pub mod tick;
pub mod webhook;

use crate::clock::now_ns;
use std::borrow::Cow;
use std::io::Write;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::FutureExt;
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::Semaphore;

use crate::manager::dispatch::RuleEvent;
use crate::service::metrics::{KindLabel, Metrics, ReceiverLabel};
use crate::storage::{Delivery, OutboxInsert, OutboxRow, Storage};
use config::{Receiver, Receivers};
use notification::{AlertStatus, Notification};
use tick::HandlerTarget;

/// Longest wait between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

fn keep_resolved(n: &Notification, send_resolved: bool) -> Option<Cow<'_, Notification>> {
    if send_resolved || n.alerts.iter().all(|a| a.status == AlertStatus::Firing) {
        return (!n.alerts.is_empty()).then_some(Cow::Borrowed(n));
    }
    let mut n = n.clone();
    n.alerts.retain(|a| a.status == AlertStatus::Firing);
    (!n.alerts.is_empty()).then_some(Cow::Owned(n))
}

/// The outbox rows of a group notification: one per integration of the receiver (one per alert
/// for Kapacitor-format webhooks). Integrations that do not want resolved alerts get the firing
/// ones only, and nothing when none fires.
pub fn group_outbox(r: &Receiver, n: &Notification) -> Vec<OutboxInsert> {
    let mut out = Vec::new();
    if let Some(w) = &r.webhook
        && let Some(n) = keep_resolved(n, w.send_resolved)
    {
        for body in w.render(&n) {
            out.push(OutboxInsert {
                receiver: r.name.clone(),
                kind: "post".into(),
                target: w.url.clone(),
                headers: w.headers.clone(),
                timeout_ms: w.timeout.as_millis() as i64,
                body,
                group_key: n.group_key.clone(),
            });
        }
    }
    if let Some(l) = &r.log
        && let Some(n) = keep_resolved(n, l.send_resolved)
    {
        let body = webhook::alertmanager_v4_text(&n, &n.alerts, n.truncated);
        let path = l.path.display().to_string();
        out.push(row(r.name.clone(), "log", &path, body, &n.group_key));
    }
    if let Some(a) = &r.alerta {
        for body in a.render(n, &alerta::AlertaOverrides::default()) {
            out.push(via_receiver(r, "alerta", body.to_string(), &n.group_key));
        }
    }
    if let Some(e) = &r.email
        && let Some(n) = keep_resolved(n, e.send_resolved())
    {
        out.extend(email_row(r, e.render(&n), &n.group_key));
    }
    out
}

/// An outbox row for the delivery queue `receiver`, without extra headers or timeout.
fn row(receiver: String, kind: &str, target: &str, body: String, group_key: &str) -> OutboxInsert {
    OutboxInsert {
        receiver,
        kind: kind.into(),
        target: target.into(),
        headers: Vec::new(),
        timeout_ms: 0,
        body,
        group_key: group_key.into(),
    }
}

/// A row sent through a configured receiver (`email`, `alerta`): delivery looks the receiver up
/// by name, so it is sent with the configuration in force then.
fn via_receiver(r: &Receiver, kind: &str, body: String, group_key: &str) -> OutboxInsert {
    row(r.name.clone(), kind, &r.name, body, group_key)
}

/// The row of a rendered e-mail, or none (logged) when rendering failed.
fn email_row(
    r: &Receiver,
    rendered: Result<email::RenderedEmail, email::EmailError>,
    group_key: &str,
) -> Option<OutboxInsert> {
    match rendered {
        Ok(m) => Some(via_receiver(
            r,
            "email",
            serde_json::to_string(&m).unwrap_or_default(),
            group_key,
        )),
        Err(error) => {
            tracing::error!(receiver = %r.name, %error, "E-mail not rendered; notification dropped.");
            None
        }
    }
}

/// A rule event as a one-alert notification (for handlers that render notifications).
fn event_notification(
    ev: &RuleEvent,
    receiver: &str,
    group_key: &str,
    external_url: &str,
) -> Notification {
    let a = &ev.alert;
    let resolved = ev.level == crate::rules::plan::Level::Ok;
    let t = ev.record.state.last_event_ns;
    let mut labels = a.labels.clone();
    if resolved {
        // The recovery is about the alert that fired: drop the `ok` severity.
        labels.remove("severity");
    }
    Notification {
        receiver: receiver.to_string(),
        group_key: group_key.to_string(),
        group_labels: Default::default(),
        alerts: vec![notification::NotifiedAlert {
            status: if resolved {
                AlertStatus::Resolved
            } else {
                AlertStatus::Firing
            },
            fingerprint: crate::manager::labels::fingerprint(&labels),
            labels,
            annotations: a.annotations.clone(),
            starts_at: chrono::DateTime::from_timestamp_nanos(a.starts_at),
            ends_at: resolved.then(|| chrono::DateTime::from_timestamp_nanos(t)),
            generator_url: a.generator_url.clone(),
        }],
        truncated: 0,
        external_url: external_url.to_string(),
        reason: "alert event".into(),
    }
}

/// `.alerta()` properties as overrides of the Alerta receiver. As in Kapacitor, the event
/// defaults to the alert's id.
fn alerta_overrides(
    props: &std::collections::BTreeMap<String, Vec<String>>,
    alert_id: Option<&str>,
) -> alerta::AlertaOverrides {
    let one = |k: &str| props.get(k).and_then(|v| v.first()).cloned();
    alerta::AlertaOverrides {
        resource: one("resource"),
        event: one("event").or_else(|| alert_id.map(str::to_string)),
        environment: one("environment"),
        group: one("group"),
        value: one("value"),
        origin: one("origin"),
        text: None,
        services: props.get("services").cloned().unwrap_or_default(),
        correlate: props.get("correlated").cloned().unwrap_or_default(),
        timeout: one("timeout")
            .and_then(|t| crate::rules::parser::parse_duration(&t))
            .map(|ns| (ns.max(0) / 1_000_000_000) as u64),
    }
}

/// The outbox rows of one rule alert event's TICK handlers.
pub fn handler_outbox(cfg: &Receivers, ev: &RuleEvent, external_url: &str) -> Vec<OutboxInsert> {
    let group_key = match &ev.alert.source {
        crate::manager::alert::Source::Rule(r) => format!("{}/{}", r.rule, r.key),
        _ => String::new(),
    };
    let mut out = Vec::new();
    for h in &ev.handlers {
        match h {
            HandlerTarget::Post {
                url,
                headers,
                timeout,
            } => {
                // A handler names its own target; its queue is `post <url>`.
                let mut r = row(
                    format!("post {url}"),
                    "post",
                    url,
                    ev.record.body.clone(),
                    &group_key,
                );
                r.headers = headers.clone();
                r.timeout_ms = timeout.as_millis() as i64;
                out.push(r);
            }
            HandlerTarget::Log { path } => {
                let body = ev.record.body.clone();
                out.push(row(format!("log {path}"), "log", path, body, &group_key));
            }
            HandlerTarget::Alerta { props } => {
                let Some(r) = cfg.alerta_receiver() else {
                    tracing::warn!(rule = %ev.record.state.task, "The rule has an .alerta() handler but no receiver has an Alerta integration; event not delivered.");
                    continue;
                };
                let Some(a) = &r.alerta else { continue };
                let n = event_notification(ev, &r.name, &group_key, external_url);
                let ov = alerta_overrides(props, ev.alert.annotations.get("id"));
                for body in a.render(&n, &ov) {
                    out.push(via_receiver(r, "alerta", body.to_string(), &group_key));
                }
            }
            HandlerTarget::Email { to } => {
                let Some(r) = cfg.email_receiver() else {
                    tracing::warn!(rule = %ev.record.state.task, "The rule has an .email() handler but no receiver has an e-mail integration; event not delivered.");
                    continue;
                };
                let Some(e) = &r.email else { continue };
                // As Kapacitor: the message is the subject, the details the (HTML) body.
                let message = &ev.record.state.message;
                let details = ev.alert.annotations.get("details");
                let rendered = e.render_event(to, message, details.unwrap_or(message), details);
                out.extend(email_row(r, rendered, &group_key));
            }
            HandlerTarget::Unsupported(name) => {
                tracing::debug!(rule = %ev.record.state.task, handler = %name, "Handler not delivered by alertd.");
            }
        }
    }
    out
}

/// What one attempt came to.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Delivered.
    Sent,
    /// Try again later (connection error, timeout, 429, 5xx, SMTP 4xx, I/O error).
    Retry(String),
    /// Will never succeed (other 4xx, SMTP 5xx).
    Failed(String),
}

/// The integration of the receiver a row names, or the failure to record when the receiver no
/// longer has it (removed by a reload).
fn configured<'a, T: ?Sized>(
    receivers: &'a Receivers,
    row: &OutboxRow,
    what: &str,
    get: impl Fn(&'a Receiver) -> Option<&'a T>,
) -> Result<&'a T, Outcome> {
    receivers
        .receivers
        .get(&row.target)
        .and_then(get)
        .ok_or_else(|| {
            Outcome::Failed(format!(
                "receiver \"{}\" has no {what} integration any more",
                row.target
            ))
        })
}

async fn attempt(client: &reqwest::Client, receivers: &Receivers, row: &OutboxRow) -> Outcome {
    match row.kind.as_str() {
        "email" => match configured(receivers, row, "an e-mail", |r| r.email.as_deref()) {
            Ok(e) => match serde_json::from_str::<email::RenderedEmail>(&row.body) {
                Ok(m) => e.send(&m).await,
                Err(err) => Outcome::Failed(format!("stored e-mail is not readable: {err}")),
            },
            Err(outcome) => outcome,
        },
        "alerta" => match configured(receivers, row, "an Alerta", |r| r.alerta.as_ref()) {
            Ok(a) => match serde_json::from_str::<serde_json::Value>(&row.body) {
                Ok(body) => a.send(client, &body).await,
                Err(e) => Outcome::Failed(format!("stored Alerta body is not JSON: {e}")),
            },
            Err(outcome) => outcome,
        },
        "post" => {
            let mut req = client
                .post(&row.target)
                .timeout(Duration::from_millis(row.timeout_ms.max(1) as u64))
                .header("Content-Type", "application/json")
                .header("User-Agent", concat!("alertd/", env!("CARGO_PKG_VERSION")))
                .body(row.body.clone());
            for (k, v) in &row.headers {
                req = req.header(k, v);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => Outcome::Sent,
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                    Outcome::Retry(format!("HTTP {}", r.status()))
                }
                Ok(r) => Outcome::Failed(format!("HTTP {}", r.status())),
                Err(e) => Outcome::Retry(e.to_string()),
            }
        }
        "log" => {
            let path = row.target.clone();
            let line = row.body.clone();
            let r = tokio::task::spawn_blocking(move || {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?;
                let mut buf = line.into_bytes();
                buf.push(b'\n');
                f.write_all(&buf)
            })
            .await;
            match r {
                Ok(Ok(())) => Outcome::Sent,
                Ok(Err(e)) => Outcome::Retry(format!("{}: {e}", row.target)),
                Err(e) => Outcome::Retry(e.to_string()),
            }
        }
        other => Outcome::Failed(format!("unknown delivery kind '{other}'")),
    }
}

/// The wait before retry number `attempts` (1-based): 1 s doubling up to five minutes, with up
/// to 25% jitter so retries to one receiver do not arrive in lockstep.
pub fn backoff(attempts: u32, jitter_seed: u64) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
    let base = base.min(MAX_BACKOFF);
    let jitter = (jitter_seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) % 1000;
    base + base.mul_f64(0.25 * jitter as f64 / 1000.0)
}

/// What the delivery task needs.
#[derive(Clone)]
pub struct DeliveryContext {
    /// The database.
    pub storage: Storage,
    /// The storage writer, which records delivery results with whatever else it commits.
    pub writer: tokio::sync::mpsc::Sender<crate::storage::Changes>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The receivers in force (replaced on reload).
    pub receivers: Arc<RwLock<Arc<Receivers>>>,
    /// Notifications held in memory per receiver.
    pub queue: usize,
    /// Deliveries in flight per receiver.
    pub concurrency: usize,
}

/// Delivers due notifications until the process ends. `wake` is notified when new ones are
/// stored, so they go out at once.
pub async fn run_delivery(ctx: DeliveryContext, wake: Arc<tokio::sync::Notify>) {
    let client = reqwest::Client::new();
    let mut inflight: FxHashMap<String, FxHashSet<i64>> = FxHashMap::default();
    let mut limits: FxHashMap<String, Arc<Semaphore>> = FxHashMap::default();
    let mut set: tokio::task::JoinSet<(OutboxRow, Outcome, Duration)> = tokio::task::JoinSet::new();
    let mut last_depth = std::time::Instant::now() - Duration::from_secs(10);
    // After deliveries finish, only their receivers can have more due: room freed, or the next
    // notification of a group no longer waiting behind the one just delivered.
    let mut only: Option<Vec<String>> = None;
    loop {
        let now = now_ns();
        let due = match only.take() {
            Some(receivers) => Ok(receivers),
            None => ctx.storage.outbox_receivers_due(now).await,
        };
        match due {
            Ok(due) => {
                for receiver in due {
                    let busy = inflight.entry(receiver.clone()).or_default();
                    let room = ctx.queue.saturating_sub(busy.len());
                    if room == 0 {
                        continue;
                    }
                    let fresh = match ctx.storage.outbox_due(&receiver, now, busy, room).await {
                        Ok(r) => r,
                        Err(error) => {
                            tracing::error!(%error, "Reading the notification outbox failed.");
                            continue;
                        }
                    };
                    let limit = limits
                        .entry(receiver.clone())
                        .or_insert_with(|| Arc::new(Semaphore::new(ctx.concurrency.max(1))))
                        .clone();
                    for row in fresh {
                        busy.insert(row.id);
                        let client = client.clone();
                        let limit = limit.clone();
                        let receivers = ctx.receivers.read().map(|r| r.clone()).unwrap_or_default();
                        set.spawn(async move {
                            let _permit = limit.acquire_owned().await;
                            let start = std::time::Instant::now();
                            // A panic in a receiver's code gives the notification up with
                            // the reason instead of leaving it in flight until a restart.
                            let outcome =
                                std::panic::AssertUnwindSafe(attempt(&client, &receivers, &row))
                                    .catch_unwind()
                                    .await
                                    .unwrap_or_else(|panic| Outcome::Failed(panic_reason(&*panic)));
                            (row, outcome, start.elapsed())
                        });
                    }
                }
            }
            Err(error) => tracing::error!(%error, "Reading the notification outbox failed."),
        }
        if last_depth.elapsed() >= Duration::from_secs(1) {
            last_depth = std::time::Instant::now();
            if let Ok(depths) = ctx.storage.outbox_pending().await {
                ctx.metrics.receiver_queue_depth.clear();
                for (receiver, n) in depths {
                    ctx.metrics
                        .receiver_queue_depth
                        .get_or_create(&ReceiverLabel { receiver })
                        .set(n);
                }
            }
        }
        // Wait for new notifications, a finished delivery, or the next retry to fall due.
        tokio::select! {
            () = wake.notified() => {}
            Some(r) = set.join_next(), if !set.is_empty() => {
                // Whatever else finished meanwhile is recorded with it, in one transaction,
                // before the outbox is polled again. Until then the deliveries count as in
                // flight, so no poll takes them again while they still read as pending.
                let mut done = Vec::new();
                let mut ids = Vec::new();
                let mut next = Some(r);
                while let Some(r) = next {
                    if let Ok((row, outcome, took)) = r {
                        done.push(result_of(&ctx, &row, outcome, took));
                        ids.push((row.receiver, row.id));
                    }
                    next = set.join_next().now_or_never().flatten();
                }
                let mut receivers: Vec<String> = Vec::new();
                if record(&ctx, done).await {
                    for (receiver, id) in ids {
                        if let Some(b) = inflight.get_mut(&receiver) {
                            b.remove(&id);
                        }
                        if !receivers.contains(&receiver) {
                            receivers.push(receiver);
                        }
                    }
                }
                only = Some(receivers);
            }
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Records finished deliveries through the storage writer, in the transaction it commits
/// next, and waits for that commit; false if the writer has stopped. While the database
/// refuses writes (the writer retries them), delivery waits too: nothing is sent that could
/// not be recorded as sent.
async fn record(ctx: &DeliveryContext, done: Vec<(i64, Delivery)>) -> bool {
    if done.is_empty() {
        return true;
    }
    ctx.storage.forget_fresh(done.iter().map(|(id, _)| *id));
    let n = done.len();
    let committed = Arc::new(tokio::sync::Notify::new());
    let changes = crate::storage::Changes {
        deliveries: done,
        committed: Some(committed.clone()),
        ..Default::default()
    };
    let stopped = || {
        tracing::error!(
            notifications = n,
            "Storage writer stopped; delivery results not recorded. They are not sent again before a restart."
        );
        false
    };
    if ctx.writer.send(changes).await.is_err() {
        return stopped();
    }
    tokio::select! {
        biased;
        () = committed.notified() => true,
        () = ctx.writer.closed() => stopped(),
    }
}

/// What a delivery that panicked is given up with.
fn panic_reason(panic: &(dyn std::any::Any + Send)) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    format!("internal error while delivering: {what}")
}

/// Counts a finished delivery and says what to record for it.
fn result_of(
    ctx: &DeliveryContext,
    row: &OutboxRow,
    outcome: Outcome,
    took: Duration,
) -> (i64, Delivery) {
    let label = KindLabel {
        receiver: row.receiver.clone(),
        kind: row.kind.clone(),
    };
    ctx.metrics
        .delivery_seconds
        .get_or_create(&ReceiverLabel {
            receiver: row.receiver.clone(),
        })
        .observe(took.as_secs_f64());
    let d = match outcome {
        Outcome::Sent => {
            ctx.metrics.notifications_sent.get_or_create(&label).inc();
            Delivery::Sent
        }
        Outcome::Retry(reason) => {
            ctx.metrics
                .notifications_retried
                .get_or_create(&label)
                .inc();
            let attempts = row.attempts + 1;
            let next_ns =
                now_ns().saturating_add(backoff(attempts as u32, row.id as u64).as_nanos() as i64);
            tracing::warn!(receiver = %row.receiver, attempts, reason = %reason, "Notification not delivered; will retry.");
            Delivery::Retry {
                attempts,
                next_ns,
                error: reason,
            }
        }
        Outcome::Failed(reason) => {
            ctx.metrics.notifications_failed.get_or_create(&label).inc();
            tracing::error!(receiver = %row.receiver, reason = %reason, "Notification refused by its receiver; giving up.");
            Delivery::Failed { error: reason }
        }
    };
    (row.id, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_given_up_with_its_message() {
        let from_str = std::panic::catch_unwind(|| panic!("bad template")).unwrap_err();
        assert_eq!(
            panic_reason(&*from_str),
            "internal error while delivering: bad template"
        );
        let n = 3;
        let from_string =
            std::panic::catch_unwind(|| panic!("index {n} out of range")).unwrap_err();
        assert_eq!(
            panic_reason(&*from_string),
            "internal error while delivering: index 3 out of range"
        );
        let other = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(
            panic_reason(&*other),
            "internal error while delivering: no message"
        );
    }

    #[test]
    fn backoff_doubles_to_a_cap_with_bounded_jitter() {
        for seed in 0..50u64 {
            let b1 = backoff(1, seed);
            assert!(
                b1 >= Duration::from_secs(1) && b1 <= Duration::from_millis(1250),
                "{b1:?}"
            );
            let b3 = backoff(3, seed);
            assert!(
                b3 >= Duration::from_secs(4) && b3 <= Duration::from_secs(5),
                "{b3:?}"
            );
            let b20 = backoff(20, seed);
            assert!(
                b20 >= MAX_BACKOFF && b20 <= MAX_BACKOFF.mul_f64(1.25),
                "{b20:?}"
            );
        }
    }
}
