//! The passive-check task of the service: takes [`CheckResult`]s from every intake (NRDP, NSCA,
//! `POST /api/v1/checks`) through one bounded queue, applies Nagios semantics
//! ([`crate::checks::state`]), posts the resulting alerts to the alert manager, turns perfdata
//! into points (database `checks`, measurement `check`) for the rules, and runs freshness.
//! Also the `/api/v1/checks` handlers.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use rustc_hash::FxHashMap;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::http::error_json as error;
use crate::checks::CheckResult;
use crate::checks::state::{AlertChange, CheckKey, Checks, Perf, StateType};
use crate::clock::now_ns;
use crate::manager::alert::{Alert, Source};
use crate::manager::dispatch::Msg;
use crate::manager::labels::{LabelSet, fingerprint};
use crate::storage::{Changes, CheckRow};

/// Messages of the check task.
pub enum CheckMsg {
    /// Results to apply.
    Results(Vec<CheckResult>),
    /// Every check's state, for the API.
    List(oneshot::Sender<Vec<Value>>),
    /// Forget every check of a retired host (its freshness stops) and delete their stored
    /// states, answering how many.
    Forget(String, oneshot::Sender<usize>),
    /// Store every changed check state now and answer once it is committed (at shutdown).
    Flush(oneshot::Sender<()>),
}

/// The labels each check's alerts fire with, by (check, flapping alert), so a change of
/// severity or a recovery resolves what fired.
pub type Firing = FxHashMap<(CheckKey, bool), LabelSet>;

/// Labels of a check's alert.
fn labels(c: &AlertChange) -> LabelSet {
    labels_of(&c.key, c.flapping, c.severity)
}

fn labels_of(key: &CheckKey, flapping: bool, severity: &str) -> LabelSet {
    let mut l = LabelSet::new();
    let name = if flapping {
        "Flapping".to_string()
    } else {
        key.service.clone().unwrap_or_else(|| "host".to_string())
    };
    l.insert("alertname".to_string(), name);
    l.insert("host".to_string(), key.host.clone());
    if let Some(s) = &key.service {
        l.insert("service".to_string(), s.clone());
    }
    l.insert("severity".to_string(), severity.to_string());
    l
}

/// What the stored check states had firing, to resume with them.
pub fn firing_of(rows: &[CheckRow]) -> Firing {
    let mut firing = Firing::default();
    for r in rows {
        let key = CheckKey {
            host: r.host.clone(),
            service: Some(r.service.clone()).filter(|s| !s.is_empty()),
        };
        if let Some(sev) = &r.firing_severity {
            firing.insert((key.clone(), false), labels_of(&key, false, sev));
        }
        if r.flap_firing {
            firing.insert((key.clone(), true), labels_of(&key, true, "warning"));
        }
    }
    firing
}

/// Stores the check states changed since the last flush, with what each has firing; with
/// `committed`, told once they are in the database.
async fn flush(
    shared: &Shared,
    checks: &mut Checks,
    firing: &Firing,
    committed: Option<Arc<tokio::sync::Notify>>,
) {
    let mut rows = Vec::new();
    for (key, mut row) in checks.take_dirty() {
        let k = (key, false);
        row.firing_severity = firing
            .get(&k)
            .and_then(|l| l.get("severity"))
            .map(|s| s.to_string());
        let k = (k.0, true);
        row.flap_firing = firing.contains_key(&k);
        rows.push(row);
    }
    if rows.is_empty() && committed.is_none() {
        return;
    }
    let _ = shared
        .writer
        .send(Changes {
            checks: rows,
            committed,
            ..Changes::default()
        })
        .await;
}

fn alert(c: &AlertChange, labels: LabelSet, now: i64, ends: Option<i64>) -> Alert {
    let mut ann = LabelSet::new();
    let summary = if c.flapping {
        format!(
            "{} is flapping between states ({})",
            c.key.service.as_deref().unwrap_or("host"),
            c.state
        )
    } else {
        c.output.summary.clone()
    };
    ann.insert("summary".to_string(), summary);
    ann.insert("state".to_string(), c.state.to_string());
    if !c.output.long.is_empty() {
        ann.insert("long_output".to_string(), c.output.long.clone());
    }
    if !c.output.perfdata.is_empty() {
        ann.insert("perfdata".to_string(), c.output.perfdata.clone());
    }
    Alert {
        fingerprint: fingerprint(&labels),
        labels,
        annotations: ann,
        starts_at: now,
        ends_at: ends,
        updated_at: now,
        generator_url: String::new(),
        source: Source::Check,
        timeout: false,
    }
}

/// Escapes a tag key or value of line protocol.
fn tag(out: &mut String, s: &str) {
    for ch in s.chars() {
        if matches!(ch, ',' | '=' | ' ' | '\\') {
            out.push('\\');
        }
        if ch == '\n' {
            out.push(' ');
        } else {
            out.push(ch);
        }
    }
}

/// Perfdata as line protocol: `check,host=..,service=..,label=..,uom=.. value=..,warn=..`.
fn perf_lines(out: &mut String, key: &CheckKey, perf: &[Perf], time_ns: i64) {
    for p in perf {
        out.push_str("check,host=");
        tag(out, &key.host);
        if let Some(s) = &key.service {
            out.push_str(",service=");
            tag(out, s);
        }
        if !p.label.is_empty() {
            out.push_str(",label=");
            tag(out, &p.label);
        }
        if !p.uom.is_empty() {
            out.push_str(",uom=");
            tag(out, &p.uom);
        }
        let _ = write!(out, " value={:?}", p.value);
        for (n, v) in [
            ("warn", p.warn),
            ("crit", p.crit),
            ("min", p.min),
            ("max", p.max),
        ] {
            if let Some(v) = v {
                let _ = write!(out, ",{n}={v:?}");
            }
        }
        let _ = writeln!(out, " {time_ns}");
    }
}

/// The task: runs until every sender is gone. `firing` is what the restored check states have
/// firing (see [`firing_of`]). Changed check states are stored every 5 s and on
/// [`CheckMsg::Flush`].
pub async fn run(
    shared: Arc<Shared>,
    mut checks: Checks,
    mut firing: Firing,
    mut rx: mpsc::Receiver<CheckMsg>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut store = tokio::time::interval(Duration::from_secs(5));
    store.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let changes: Vec<(Vec<AlertChange>, String)> = tokio::select! {
            msg = rx.recv() => match msg {
                None => return,
                Some(CheckMsg::List(tx)) => {
                    let _ = tx.send(list(&checks));
                    continue;
                }
                Some(CheckMsg::Forget(host, tx)) => {
                    let n = checks.forget_host(&host);
                    firing.retain(|(k, _), _| k.host != host);
                    // Sent after any earlier flush of the host's rows, so it deletes them all.
                    let _ = shared
                        .writer
                        .send(Changes { check_deletes: vec![host], ..Changes::default() })
                        .await;
                    let _ = tx.send(n);
                    continue;
                }
                Some(CheckMsg::Flush(tx)) => {
                    let done = Arc::new(tokio::sync::Notify::new());
                    flush(&shared, &mut checks, &firing, Some(done.clone())).await;
                    done.notified().await;
                    let _ = tx.send(());
                    continue;
                }
                Some(CheckMsg::Results(results)) => {
                    let now = now_ns();
                    let mut lines = String::new();
                    let mut alerts = Vec::new();
                    for r in &results {
                        let key = CheckKey::of(r);
                        let o = checks.apply_to(&key, r, now);
                        perf_lines(&mut lines, &key, &o.perf, r.time_ns.unwrap_or(now));
                        alerts.extend(o.alerts);
                    }
                    shared.metrics.check_results.inc_by(results.len() as u64);
                    let mut hosts: Vec<String> = results.iter().map(|r| r.host.clone()).collect();
                    hosts.sort_unstable();
                    hosts.dedup();
                    super::hosts::seen(&shared, hosts, 1);
                    vec![(alerts, lines)]
                }
            },
            _ = store.tick() => {
                flush(&shared, &mut checks, &firing, None).await;
                continue;
            }
            _ = tick.tick() => {
                let stale = checks.expire_stale(now_ns());
                if stale.is_empty() {
                    continue;
                }
                shared.metrics.checks_stale.inc_by(stale.len() as u64);
                vec![(stale.into_iter().flat_map(|(_, o)| o.alerts).collect(), String::new())]
            }
        };
        for (alerts, lines) in changes {
            if !lines.is_empty() {
                super::http::ingest_internal(&shared, "checks", "checks", lines);
            }
            if alerts.is_empty() {
                continue;
            }
            let now = now_ns();
            let mut post = Vec::with_capacity(alerts.len());
            for c in &alerts {
                // What fires is stored with the check (held services released by their host
                // change here without a result of their own).
                checks.mark_dirty(&c.key);
                let k = (c.key.clone(), c.flapping);
                let l = labels(c);
                if let Some(old) = firing.get(&k)
                    && (*old != l || !c.firing)
                {
                    // Resolve what fired before (another severity, or the recovery itself).
                    let mut resolved = alert(c, old.clone(), now, Some(now));
                    resolved.annotations.insert("state".into(), c.state.into());
                    post.push(resolved);
                    firing.remove(&k);
                }
                if c.firing {
                    post.push(alert(c, l.clone(), now, None));
                    firing.insert(k, l);
                }
            }
            shared.metrics.check_alerts.inc_by(post.len() as u64);
            let (tx, done) = oneshot::channel();
            if shared.manager.send(Msg::Post(post, tx)).await.is_err() {
                return;
            }
            let _ = done.await;
        }
    }
}

fn list(checks: &Checks) -> Vec<Value> {
    let mut v: Vec<(&CheckKey, Value)> = checks
        .iter()
        .map(|(k, c)| {
            let host_check = k.service.is_none();
            (
                k,
                json!({
                    "host": k.host,
                    "service": k.service,
                    "state": c.state.name(host_check),
                    "state_type": if c.state_type == StateType::Hard { "HARD" } else { "SOFT" },
                    "attempt": c.attempt,
                    "hard_state": c.hard_state.name(host_check),
                    "summary": c.output.summary,
                    "long_output": c.output.long,
                    "perfdata": c.output.perfdata,
                    "last_result": DateTime::from_timestamp_nanos(c.last_result_ns).to_rfc3339(),
                    "last_change": DateTime::from_timestamp_nanos(c.last_change_ns).to_rfc3339(),
                    "interval_seconds": c.interval_ns.map(|n| n / 1_000_000_000),
                    "stale": c.stale,
                    "flapping": c.flapping,
                    "percent_state_change": (c.percent_change * 10.0).round() / 10.0,
                }),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v.into_iter().map(|(_, j)| j).collect()
}

/// The check queue is full (the caller answers 503).
#[derive(Debug, thiserror::Error)]
#[error("the passive-check queue is full")]
pub struct ChecksBusy;

/// Queues results for the check task; refused (and counted) when it is behind, as the queue is
/// bounded.
pub fn submit(s: &Shared, results: Vec<CheckResult>) -> Result<(), ChecksBusy> {
    let n = results.len() as u64;
    s.checks.try_send(CheckMsg::Results(results)).map_err(|_| {
        s.metrics.check_results_dropped.inc_by(n);
        ChecksBusy
    })
}

/// One item of `POST /api/v1/checks`.
fn parse_item(v: &Value) -> Result<CheckResult, (String, String)> {
    let err = |f: &str, m: &str| Err((f.to_string(), m.to_string()));
    let Value::Object(o) = v else {
        return err("", "must be an object");
    };
    for k in o.keys() {
        if !matches!(
            k.as_str(),
            "host" | "service" | "status" | "output" | "ttl" | "time"
        ) {
            return err(
                k,
                "unknown field (expected host, service, status, output, ttl, time)",
            );
        }
    }
    let host = match &o.get("host") {
        Some(Value::String(h)) if !h.is_empty() => h.clone(),
        _ => return err("host", "required, a non-empty string"),
    };
    let service = match o.get("service") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => {
            return err(
                "service",
                "must be a non-empty string (omit it for a host check)",
            );
        }
    };
    let code = match o.get("status").and_then(Value::as_i64) {
        Some(c) if (0..=255).contains(&c) => c as i32,
        _ => return err("status", "required, the plugin exit code (0 to 255)"),
    };
    let output = match o.get("output") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        _ => return err("output", "must be a string"),
    };
    let ttl_ns = match o.get("ttl") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => {
            match crate::rules::parser::parse_duration(t).filter(|n| *n > 0) {
                Some(n) => Some(n),
                None => return err("ttl", "must be a duration such as 5m"),
            }
        }
        Some(Value::Number(n)) => match n.as_f64().filter(|f| *f > 0.0) {
            Some(f) => Some((f * 1e9) as i64),
            None => return err("ttl", "must be positive seconds or a duration"),
        },
        _ => return err("ttl", "must be seconds or a duration such as 5m"),
    };
    let time_ns = match o.get("time") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => match DateTime::parse_from_rfc3339(t) {
            Ok(t) => t.timestamp_nanos_opt(),
            Err(_) => return err("time", "must be an RFC 3339 time"),
        },
        Some(Value::Number(n)) => n.as_f64().map(|s| (s * 1e9) as i64),
        _ => return err("time", "must be an RFC 3339 time or Unix seconds"),
    };
    Ok(CheckResult {
        host,
        service,
        code,
        output,
        time_ns,
        ttl_ns,
        via: "api",
    })
}

/// `POST /api/v1/checks`: one result object or a list. Valid items are applied even when
/// others are not; the answer then is 400 with each problem by index and field.
pub async fn post(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("not JSON: {e}"),
                Some("body"),
            );
        }
    };
    let items = match v {
        Value::Array(a) => a,
        o @ Value::Object(_) => vec![o],
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "must be a result object or a list of them",
                Some("body"),
            );
        }
    };
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match parse_item(item) {
            Ok(r) => ok.push(r),
            Err((field, msg)) => errors.push(json!({ "index": i, "field": field, "error": msg })),
        }
    }
    let accepted = ok.len();
    if !ok.is_empty() && submit(&s, ok).is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "check results are queued beyond the limit; retry shortly",
            None,
        );
    }
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let first = errors.first().cloned();
    let mut out = json!({ "accepted": accepted, "errors": errors });
    if let Some(f) = first {
        out["error"] = json!(format!(
            "{} of {} results rejected",
            items.len() - accepted,
            items.len()
        ));
        out["field"] = json!(format!(
            "[{}].{}",
            f["index"],
            f["field"].as_str().unwrap_or("")
        ));
    }
    (status, Json(out)).into_response()
}

/// `GET /api/v1/checks`: every check with its state, SOFT/HARD, last result and freshness,
/// by host and service, paginated (`limit`, `offset`).
pub async fn get(
    State(s): State<Arc<Shared>>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    let lq = match super::api_v1::ListQuery::parse(q.as_deref()) {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let (tx, rx) = oneshot::channel();
    if s.checks.send(CheckMsg::List(tx)).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "checks are not running",
            None,
        );
    }
    match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(items)) => Json(lq.answer(items)).into_response(),
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the check task is busy",
            None,
        ),
    }
}

/// Starts the NSCA intake when `[checks.nsca] listen` is set: the server, and a task that
/// batches its results into the check queue (waiting when it is full, so `send_nsca` clients
/// wait instead of results being lost) and copies its counters to the metrics.
pub async fn start_nsca(
    shared: Arc<Shared>,
) -> Result<Option<std::net::SocketAddr>, std::io::Error> {
    use crate::checks::nsca;
    let cfg = shared.config.checks.nsca.clone();
    let Some(addr) = cfg.listen_addr() else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    let counters = Arc::new(nsca::NscaCounters::default());
    let (tx, mut rx) = mpsc::channel::<CheckResult>(1024);
    tokio::spawn(nsca::serve(listener, Arc::new(cfg), tx, counters.clone()));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                r = rx.recv() => {
                    let Some(first) = r else { return };
                    let mut batch = vec![first];
                    while batch.len() < 512 {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    if shared.checks.send(CheckMsg::Results(batch)).await.is_err() {
                        return;
                    }
                }
                _ = tick.tick() => {}
            }
            let c = counters.snapshot();
            let m = &shared.metrics;
            use std::sync::atomic::Ordering::Relaxed;
            for (result, v) in [
                ("accepted", c.packets_accepted),
                ("bad_crc", c.rejected_crc),
                ("bad_version", c.rejected_version),
                ("bad_packet", c.rejected_decode),
            ] {
                m.nsca_packets
                    .get_or_create(&super::metrics::NscaLabel { result })
                    .inner()
                    .store(v, Relaxed);
            }
            m.nsca_connections.inner().store(c.connections, Relaxed);
            m.nsca_timeouts.inner().store(c.timeouts, Relaxed);
        }
    });
    Ok(Some(local))
}

/// `POST /nrdp/` (and `GET`, as NRDP takes either): NRDP's `submitcheck` and `hello`, with the
/// `token` field checked against the `[auth]` tokens that have the `write` scope (with no
/// tokens configured, any non-empty token is accepted, as on an open install). Answers as NRDP
/// does: 200 with `status 0` or `status -1` and NRDP's message.
pub async fn nrdp(
    State(s): State<Arc<Shared>>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
    body: Bytes,
) -> Response {
    use crate::checks::nrdp;
    if !s.config.checks.nrdp {
        return error(
            StatusCode::NOT_FOUND,
            "NRDP is disabled ([checks] nrdp = false)",
            None,
        );
    }
    let mut pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(q.as_deref().unwrap_or("")).unwrap_or_default();
    match serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
        Ok(p) => pairs.extend(p),
        Err(e) => {
            let form = nrdp::NrdpForm::from_pairs(pairs);
            let r = nrdp::render_error(
                form.format(),
                &nrdp::NrdpError::NoData(format!("the form is not urlencoded: {e}")),
            );
            return ([(axum::http::header::CONTENT_TYPE, r.content_type)], r.body).into_response();
        }
    }
    let form = nrdp::NrdpForm::from_pairs(pairs);
    let tokens: Vec<String> = if s.auth.enabled() {
        s.config
            .auth
            .tokens
            .iter()
            .filter(|t| t.scopes.contains(&crate::config::Scope::Write))
            .map(|t| t.token.clone())
            .collect()
    } else {
        form.token
            .iter()
            .filter(|t| !t.is_empty())
            .cloned()
            .collect()
    };
    let (resp, results) = nrdp::respond(&form, &tokens);
    if s.auth.enabled() && results.is_empty() && resp.body.contains("TOKEN") {
        let reason = if form.token.as_deref().unwrap_or("").is_empty() {
            "missing"
        } else {
            "invalid"
        };
        s.metrics
            .auth_failures
            .get_or_create(&super::metrics::AuthLabel { reason })
            .inc();
    }
    if !results.is_empty() && submit(&s, results).is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "check results are queued beyond the limit; retry shortly",
            None,
        );
    }
    (
        [(axum::http::header::CONTENT_TYPE, resp.content_type)],
        resp.body,
    )
        .into_response()
}
