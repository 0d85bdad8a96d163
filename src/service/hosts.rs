//! The host-registry task of the service and its API: hosts seen by the intakes are recorded
//! (stored in SQLite every few seconds through the storage writer), listed at `/api/v1/hosts`,
//! and retired by `DELETE /api/v1/hosts/{name}` or automatically past `hosts.forget_after`.
//! Retiring frees the host's groups in the rules engine (deadman, windows, alert state),
//! resolves its alerts (annotated `retired`) and forgets its checks.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::checks::CheckMsg;
use super::http::error_json as error;
use crate::clock::now_ns;
use crate::hosts::Registry;
use crate::manager::dispatch::Msg;
use crate::storage::Changes;

/// Messages of the host task.
pub enum HostMsg {
    /// Hosts seen through a source (`hosts::SOURCES` index) now.
    Seen(Vec<String>, usize),
    /// Every host, for the API.
    List(oneshot::Sender<Vec<Value>>),
    /// Retire a host; the answer is `None` for an unknown host.
    Retire(String, oneshot::Sender<Option<Value>>),
    /// Store the changed registry rows now and answer once they are committed (at shutdown).
    Flush(oneshot::Sender<()>),
}

/// What a retirement did. In order: the rules engine drops the host's groups (so no deadman or
/// window of the host fires again, and events it made before are queued ahead of what
/// follows), the alert manager resolves the host's alerts, the check task forgets its checks
/// (and deletes their stored states), and the registry row and the stored alert states of the
/// dropped groups are deleted.
async fn retire(shared: &Shared, reg: &mut Registry, name: &str, why: &str) -> Option<Value> {
    if !reg.retire(name) {
        return None;
    }
    let forgotten =
        super::engine_thread::forget_everywhere(shared, &shared.config.hosts.tag, name).await;
    let (tx, rx) = oneshot::channel();
    let resolved = if shared
        .manager
        .send(Msg::Retire(
            name.to_string(),
            shared.config.hosts.tag.clone(),
            tx,
        ))
        .await
        .is_ok()
    {
        rx.await.unwrap_or(0)
    } else {
        0
    };
    let (tx, rx) = oneshot::channel();
    let checks = if shared
        .checks
        .send(CheckMsg::Forget(name.to_string(), tx))
        .await
        .is_ok()
    {
        rx.await.unwrap_or(0)
    } else {
        0
    };
    // After the alert manager's answer: every event of the dropped groups has been stored by
    // then, so these deletes come after their upserts.
    let _ = shared
        .writer
        .send(Changes {
            host_deletes: vec![name.to_string()],
            alert_state_deletes: forgotten.group_ids,
            ..Changes::default()
        })
        .await;
    shared.metrics.hosts_retired.inc();
    tracing::info!(
        host = name,
        reason = why,
        groups_dropped = forgotten.groups,
        alerts_resolved = resolved,
        checks_forgotten = checks,
        "Host retired."
    );
    Some(json!({
        "host": name,
        "groups_dropped": forgotten.groups,
        "alerts_resolved": resolved,
        "checks_forgotten": checks,
    }))
}

/// The task: runs until every sender is gone.
pub async fn run(shared: Arc<Shared>, mut reg: Registry, mut rx: mpsc::Receiver<HostMsg>) {
    let mut flush = tokio::time::interval(Duration::from_secs(5));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut forget = tokio::time::interval(Duration::from_secs(60));
    forget.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                None => return,
                Some(HostMsg::Seen(names, source)) => {
                    let now = now_ns();
                    for n in names {
                        reg.seen(&n, source, now);
                    }
                    shared.metrics.hosts_known.set(reg.len() as i64);
                }
                Some(HostMsg::List(tx)) => {
                    let items = reg
                        .list()
                        .into_iter()
                        .map(|(n, h)| json!({
                            "name": n,
                            "first_seen": DateTime::from_timestamp_nanos(h.first_seen_ns).to_rfc3339(),
                            "last_seen": DateTime::from_timestamp_nanos(h.last_seen_ns).to_rfc3339(),
                            "sources": h.source_names(),
                        }))
                        .collect();
                    let _ = tx.send(items);
                }
                Some(HostMsg::Retire(name, tx)) => {
                    let r = retire(&shared, &mut reg, &name, "retired through the API").await;
                    shared.metrics.hosts_known.set(reg.len() as i64);
                    let _ = tx.send(r);
                }
                Some(HostMsg::Flush(tx)) => {
                    let done = Arc::new(tokio::sync::Notify::new());
                    let rows = reg.take_dirty();
                    if shared
                        .writer
                        .send(Changes { hosts: rows, committed: Some(done.clone()), ..Changes::default() })
                        .await
                        .is_ok()
                    {
                        done.notified().await;
                    }
                    let _ = tx.send(());
                }
            },
            _ = flush.tick() => {
                let rows = reg.take_dirty();
                if !rows.is_empty() {
                    let _ = shared.writer.send(Changes { hosts: rows, ..Changes::default() }).await;
                }
            }
            _ = forget.tick() => {
                for name in reg.forgettable(now_ns(), shared.config.hosts.forget_after) {
                    retire(&shared, &mut reg, &name, "silent past hosts.forget_after").await;
                }
                shared.metrics.hosts_known.set(reg.len() as i64);
            }
        }
    }
}

/// Reports hosts seen; best effort (a full queue drops the update, counted).
pub fn seen(s: &Shared, names: Vec<String>, source: usize) {
    if names.is_empty() {
        return;
    }
    if s.hosts.try_send(HostMsg::Seen(names, source)).is_err() {
        s.metrics.host_updates_dropped.inc();
    }
}

/// `GET /api/v1/hosts`: every known host with first and last seen and sources.
pub async fn list(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let lq = match super::api_v1::ListQuery::parse(q.as_deref()) {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let (tx, rx) = oneshot::channel();
    if s.hosts.send(HostMsg::List(tx)).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "hosts are not running",
            None,
        );
    }
    match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(all)) => Json(lq.answer(all)).into_response(),
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the host task is busy",
            None,
        ),
    }
}

/// `DELETE /api/v1/hosts/{name}`: retire a host (a planned removal).
pub async fn delete(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let (tx, rx) = oneshot::channel();
    if s.hosts.send(HostMsg::Retire(name, tx)).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "hosts are not running",
            None,
        );
    }
    match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(Some(v))) => Json(v).into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "no such host", Some("name")),
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the host task is busy",
            None,
        ),
    }
}
