//! Receivers: delivering notifications. So far the TICK handlers `.post(url)` (Kapacitor's alert
//! JSON in an HTTP POST) and `.log(path)` (one JSON line per event appended to a file).
//!
//! Delivery is durable: the notifications of an event are written to the SQLite outbox in the
//! same transaction as the event, and a delivery task sends what is due. It marks a notification
//! sent after a 2xx, retries connection errors, 429 and 5xx with exponential backoff and jitter,
//! and gives up on other 4xx with the reason stored. After a crash everything pending is sent
//! again (at least once).

pub mod email;
pub mod notification;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::AlertEvent;
use crate::rules::lambda::Value;
use crate::rules::plan::HandlerValue;
use crate::service::metrics::Metrics;
use crate::storage::{OutboxRow, Storage};

/// Default timeout of an HTTP delivery.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Deliveries in flight at once.
const CONCURRENCY: usize = 16;

/// One notification to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// `post` or `log`.
    pub kind: &'static str,
    /// URL or file path.
    pub target: String,
    /// Extra HTTP headers.
    pub headers: Vec<(String, String)>,
    /// HTTP timeout.
    pub timeout: Duration,
}

fn text(v: &HandlerValue) -> Option<String> {
    match v {
        HandlerValue::Value(Value::Str(s)) => Some(s.to_string()),
        HandlerValue::Value(other) => Some(other.to_string()),
        HandlerValue::Template(t) => Some(t.source().to_string()),
    }
}

/// The deliveries an event's TICK handlers ask for. Handlers not yet delivered by alertd
/// (`email`, `alerta`, `exec`, `tcp`, and `post` without a URL) are returned by name in the second
/// list, so the caller can count them.
pub fn handler_deliveries(ev: &AlertEvent) -> (Vec<Delivery>, Vec<&'static str>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for h in &ev.spec.handlers {
        match h.kind.as_str() {
            "post" => {
                let Some(url) = h.args.first().and_then(text) else {
                    skipped.push("post");
                    continue;
                };
                let headers = h
                    .props
                    .iter()
                    .filter(|(n, _)| n == "header")
                    .filter_map(|(_, v)| Some((text(v.first()?)?, text(v.get(1)?)?)))
                    .collect();
                let timeout = match h.prop("timeout").and_then(|v| v.first()) {
                    Some(HandlerValue::Value(Value::Duration(d))) if *d > 0 => {
                        Duration::from_nanos(*d as u64)
                    }
                    _ => DEFAULT_TIMEOUT,
                };
                out.push(Delivery {
                    kind: "post",
                    target: url,
                    headers,
                    timeout,
                });
            }
            "log" => {
                if let Some(path) = h.args.first().and_then(text) {
                    out.push(Delivery {
                        kind: "log",
                        target: path,
                        headers: Vec::new(),
                        timeout: DEFAULT_TIMEOUT,
                    });
                }
            }
            "email" => skipped.push("email"),
            "alerta" => skipped.push("alerta"),
            "exec" => skipped.push("exec"),
            "tcp" => skipped.push("tcp"),
            _ => skipped.push("other"),
        }
    }
    (out, skipped)
}

/// What one attempt came to.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Delivered.
    Sent,
    /// Try again later (connection error, timeout, 429, 5xx, I/O error).
    Retry(String),
    /// Will never succeed (other 4xx).
    Failed(String),
}

async fn attempt(client: &reqwest::Client, row: &OutboxRow) -> Outcome {
    match row.kind.as_str() {
        "post" => {
            let mut req = client
                .post(&row.target)
                .timeout(Duration::from_millis(row.timeout_ms.max(1) as u64))
                .header("Content-Type", "application/json")
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
                f.write_all(line.as_bytes())?;
                f.write_all(b"\n")
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

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Delivers due notifications until the process ends. `wake` is notified when new ones are
/// stored, so they go out at once.
pub async fn run_delivery(storage: Storage, metrics: Arc<Metrics>, wake: Arc<tokio::sync::Notify>) {
    let client = reqwest::Client::new();
    loop {
        let due = match storage.outbox_due(now_ns(), 256).await {
            Ok(d) => d,
            Err(error) => {
                tracing::error!(%error, "Reading the notification outbox failed.");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if due.is_empty() {
            // Sleep until woken by new notifications, or poll for retries that fall due.
            let _ = tokio::time::timeout(Duration::from_millis(500), wake.notified()).await;
            continue;
        }
        let mut set = tokio::task::JoinSet::new();
        for row in due {
            while set.len() >= CONCURRENCY {
                if let Some(Ok((row, outcome))) = set.join_next().await {
                    record(&storage, &metrics, row, outcome).await;
                }
            }
            let client = client.clone();
            set.spawn(async move {
                let outcome = attempt(&client, &row).await;
                (row, outcome)
            });
        }
        while let Some(r) = set.join_next().await {
            if let Ok((row, outcome)) = r {
                record(&storage, &metrics, row, outcome).await;
            }
        }
    }
}

async fn record(storage: &Storage, metrics: &Metrics, row: OutboxRow, outcome: Outcome) {
    let kind = row.kind.clone();
    let result = match &outcome {
        Outcome::Sent => {
            metrics
                .notifications_sent
                .get_or_create(&crate::service::metrics::KindLabel { kind })
                .inc();
            storage.outbox_sent(row.id).await
        }
        Outcome::Retry(reason) => {
            metrics
                .notifications_retried
                .get_or_create(&crate::service::metrics::KindLabel { kind })
                .inc();
            let attempts = row.attempts + 1;
            let next =
                now_ns().saturating_add(backoff(attempts as u32, row.id as u64).as_nanos() as i64);
            tracing::warn!(target = %row.target, attempts, reason = %reason, "Notification not delivered; will retry.");
            storage.outbox_retry(row.id, attempts, next, reason).await
        }
        Outcome::Failed(reason) => {
            metrics
                .notifications_failed
                .get_or_create(&crate::service::metrics::KindLabel { kind })
                .inc();
            tracing::error!(target = %row.target, reason = %reason, "Notification refused by its receiver; giving up.");
            storage.outbox_failed(row.id, reason).await
        }
    };
    if let Err(error) = result {
        tracing::error!(%error, "Recording a delivery result failed; it may be sent again.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
