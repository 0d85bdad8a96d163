//! HTTP routes of the service and the mapping of errors to status codes.
//!
//! InfluxDB-compatible ingest (`/write`, `/api/v2/write`, `/query` for `CREATE DATABASE`,
//! `/ping`), self-monitoring (`/metrics`, `/-/healthy`, `/-/ready`), control (`/-/reload`) and
//! read-only views of rules and alerts under `/api/v1`; the web UI's routes (`crate::ui`) are
//! merged in.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Shared;
use super::metrics::{EndpointCodeLabel, EndpointLabel};
use crate::ingest::line_protocol::Precision;
use crate::ingest::write::{WriteError, decode_body, validate};

/// The router over the shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    let limit = shared.config.ingest.max_body_bytes;
    Router::new()
        .route("/write", post(write_v1))
        .route("/api/v2/write", post(write_v2))
        .route("/api/v1/prom/write", post(prom_write))
        .route("/api/v1/write", post(prom_write))
        .route("/query", post(query).get(query))
        .route("/ping", get(ping).head(ping))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .route("/-/reload", post(reload))
        .route("/api/v1/rules", get(super::api_v1::rules))
        .route("/api/v1/rules/{name}", get(super::api_v1::rule))
        .route("/api/v1/alerts", get(super::api_v1::alerts))
        .route("/api/v1/alerts/{fingerprint}", get(super::api_v1::alert))
        .route("/api/v1/alerts/{fingerprint}/ack", post(super::api_v1::ack))
        .route("/api/v1/events", get(super::api_v1::events))
        .route("/api/v1/notifications", get(super::api_v1::notifications))
        .route("/api/v1/silences", get(super::api_v1::silences))
        .route("/nrdp", post(super::checks::nrdp).get(super::checks::nrdp))
        .route("/nrdp/", post(super::checks::nrdp).get(super::checks::nrdp))
        .route("/api/v1/hosts", get(super::hosts::list))
        .route(
            "/api/v1/hosts/{name}",
            axum::routing::delete(super::hosts::delete),
        )
        .route(
            "/api/v1/checks",
            get(super::checks::get).post(super::checks::post),
        )
        .route("/api/v1/record", get(record))
        .route(
            "/api/v2/alerts",
            post(super::am_api::post_alerts).get(super::am_api::get_alerts),
        )
        .route(
            "/api/v2/alerts/groups",
            get(super::am_api::get_alert_groups),
        )
        .route("/api/v2/status", get(super::am_api::get_status))
        .route("/api/v2/receivers", get(super::am_api::get_receivers))
        .route(
            "/api/v2/silences",
            post(super::am_api::post_silence).get(super::am_api::get_silences),
        )
        .route(
            "/api/v2/silence/{id}",
            get(super::am_api::get_silence).delete(super::am_api::delete_silence),
        )
        .merge(crate::ui::router(shared.clone()))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            super::auth::require,
        ))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            super::auth::timeout,
        ))
        .with_state(shared)
}

/// The one error shape of alertd's own endpoints: `{"error": "...", "field": "..."}` (the field
/// left out when the problem is not in one).
pub(crate) fn error_json(
    status: StatusCode,
    message: impl Into<String>,
    field: Option<&str>,
) -> Response {
    let mut body = json!({ "error": message.into() });
    if let Some(f) = field {
        body["field"] = json!(f);
    }
    (status, axum::Json(body)).into_response()
}

/// Query parameters of `/write` (InfluxDB 1.x).
#[derive(Debug, Deserialize)]
struct V1Params {
    db: Option<String>,
    rp: Option<String>,
    precision: Option<String>,
}

/// Query parameters of `/api/v2/write`.
#[derive(Debug, Deserialize)]
struct V2Params {
    bucket: Option<String>,
    precision: Option<String>,
}

async fn write_v1(
    State(s): State<Arc<Shared>>,
    Query(q): Query<V1Params>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let Some(db) = q.db.filter(|d| !d.is_empty()) else {
        return finish(&s, "write", Err(WriteError::MissingParameter("db")));
    };
    let rp =
        q.rp.filter(|r| !r.is_empty())
            .unwrap_or_else(|| "autogen".to_string());
    let deadline = tokio::time::Instant::now() + s.config.ingest.queue_wait;
    let body = match admit(&s, "write", req, deadline).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let r = ingest(
        &s,
        "write",
        &db,
        &rp,
        q.precision.as_deref(),
        &headers,
        body,
    );
    let r = queue(&s, r, deadline).await;
    finish(&s, "write", r)
}

async fn write_v2(
    State(s): State<Arc<Shared>>,
    Query(q): Query<V2Params>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let Some(bucket) = q.bucket.filter(|b| !b.is_empty()) else {
        return finish(
            &s,
            "api_v2_write",
            Err(WriteError::MissingParameter("bucket")),
        );
    };
    // InfluxDB 1.x compatibility: a bucket is "db/rp" or "db" (retention policy autogen).
    let (db, rp) = match bucket.split_once('/') {
        Some((d, r)) if !r.is_empty() => (d.to_string(), r.to_string()),
        Some((d, _)) => (d.to_string(), "autogen".to_string()),
        None => (bucket, "autogen".to_string()),
    };
    let deadline = tokio::time::Instant::now() + s.config.ingest.queue_wait;
    let body = match admit(&s, "api_v2_write", req, deadline).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let r = ingest(
        &s,
        "api_v2_write",
        &db,
        &rp,
        q.precision.as_deref(),
        &headers,
        body,
    );
    let r = queue(&s, r, deadline).await;
    finish(&s, "api_v2_write", r)
}

/// Waits (up to `[ingest] queue_wait`) for room in the engine queue, then reads the body: a
/// write that arrives while the rules engine is behind is held instead of refused at once, and
/// its body stays unread until it can be queued. Err is the response to send: 429 when the
/// wait ran out, or the body's rejection (413 over the size limit).
async fn admit(
    s: &Arc<Shared>,
    endpoint: &str,
    req: Request,
    deadline: tokio::time::Instant,
) -> Result<Bytes, Response> {
    let room = s.wait_until(deadline, || s.has_room()).await;
    // The body is read even when refused: an HTTP/1.1 client still sending it would otherwise
    // see the connection closed instead of the answer.
    let body = read_body(req, s.config.ingest.max_body_bytes)
        .await
        .map_err(|e| finish(s, endpoint, Err(e)))?;
    if !room {
        s.metrics.ingest_queue_full.inc();
        return Err(finish(s, endpoint, Ok(Outcome::Busy)));
    }
    Ok(body)
}

/// Reads a request body into one buffer (sized from `Content-Length`, a spare one when one
/// fits): the only copy of it, which the line protocol parser then reads in place. A body
/// over `limit` bytes is refused as soon as that is known (from the header, or while
/// reading).
async fn read_body(req: Request, limit: usize) -> Result<Bytes, WriteError> {
    use futures_util::StreamExt;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(WriteError::TooLarge { limit });
    }
    // Without a declared length (chunked), the buffer grows as the body arrives.
    let mut buf = match declared {
        Some(n) => crate::ingest::write::SPARE_POINTS.take_body(n),
        None => Vec::new(),
    };
    let mut chunks = req.into_body().into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| WriteError::BadBody(format!("reading the body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(WriteError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// What a write turned into.
enum Outcome {
    /// Everything accepted.
    Accepted,
    /// Some lines rejected.
    Partial {
        accepted: u64,
        rejected: u64,
        problems: Vec<crate::ingest::write::LineProblem>,
    },
    /// The engine queue is full.
    Busy,
    /// Validated, and waiting for room in the engine queue.
    Waiting(Box<Waiting>),
}

/// A validated write the engine queue had no room for yet.
struct Waiting {
    batch: crate::ingest::write::WriteBatch,
    effects: Effects,
}

/// What a validated write does once its points are queued (or when it has none to queue):
/// until then nothing of it is recorded, counted or noted, so a write refused with 429 and
/// sent again counts once.
struct Effects {
    endpoint: EndpointLabel,
    received: u64,
    accepted: u64,
    rejected: u64,
    problems: Vec<crate::ingest::write::LineProblem>,
    /// Hosts to mark as seen (none for perfdata of passive checks, whose hosts are known).
    hosts: Vec<String>,
    /// What `alertd record` clients are sent.
    capture: Option<super::Captured>,
}

impl Effects {
    /// Applies them; the write's outcome.
    fn apply(self, s: &Shared) -> Outcome {
        if let Some(c) = self.capture {
            let _ = s.recordings.send(Arc::new(c));
        }
        if !self.hosts.is_empty() {
            super::hosts::seen(s, self.hosts, 0);
        }
        let m = &s.metrics;
        let ep = &self.endpoint;
        m.points_received.get_or_create(ep).inc_by(self.received);
        m.points_rejected.get_or_create(ep).inc_by(self.rejected);
        m.points_accepted.get_or_create(ep).inc_by(self.accepted);
        if self.rejected == 0 {
            Outcome::Accepted
        } else {
            Outcome::Partial {
                accepted: self.accepted,
                rejected: self.rejected,
                problems: self.problems,
            }
        }
    }
}

/// Queues a write that found the queue full, waiting for room until `deadline`; Busy (and the
/// batch dropped, nothing of it counted) if there is none by then.
async fn queue(
    s: &Shared,
    r: Result<Outcome, WriteError>,
    deadline: tokio::time::Instant,
) -> Result<Outcome, WriteError> {
    let Ok(Outcome::Waiting(w)) = r else {
        return r;
    };
    let Waiting { batch, effects } = *w;
    // The batch while it is not queued yet.
    let mut waiting = Some(batch);
    s.wait_until(deadline, || {
        let Some(batch) = waiting.take() else {
            return true;
        };
        match s.submit(batch) {
            Ok(()) => true,
            Err(b) => {
                waiting = Some(*b);
                false
            }
        }
    })
    .await;
    match waiting {
        None => Ok(effects.apply(s)),
        Some(batch) => {
            refuse(s, batch);
            Ok(Outcome::Busy)
        }
    }
}

/// Drops a batch the queue had no room for, counting the refusal.
fn refuse(s: &Shared, batch: crate::ingest::write::WriteBatch) {
    s.metrics.ingest_queue_full.inc();
    crate::ingest::write::SPARE_POINTS.put(batch.lines);
}

fn ingest(
    s: &Shared,
    endpoint: &str,
    db: &str,
    rp: &str,
    precision: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Outcome, WriteError> {
    let precision: Precision = match precision.filter(|p| !p.is_empty()) {
        None => Precision::Nanoseconds,
        Some(p) => p
            .parse()
            .map_err(|e: crate::ingest::line_protocol::PrecisionError| {
                WriteError::BadPrecision(e.to_string())
            })?,
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let body = decode_body(encoding, body, s.config.ingest.max_body_bytes)?;
    Ok(ingest_decoded(s, endpoint, db, rp, precision, body))
}

/// Queues line protocol produced inside the service (perfdata of passive checks) as if written
/// to `/write?db={db}`; false when the engine queue is full (the points are dropped, counted as
/// a rejected write of `endpoint`).
pub(crate) fn ingest_internal(s: &Shared, endpoint: &str, db: &str, lines: String) -> bool {
    if !s.has_room() {
        s.metrics.ingest_queue_full.inc();
        return false;
    }
    match ingest_decoded(
        s,
        endpoint,
        db,
        "autogen",
        Precision::Nanoseconds,
        Bytes::from(lines),
    ) {
        Outcome::Busy => false,
        Outcome::Waiting(w) => {
            refuse(s, w.batch);
            false
        }
        _ => true,
    }
}

/// Validates a decoded line-protocol body and queues it for the engine.
fn ingest_decoded(
    s: &Shared,
    endpoint: &str,
    db: &str,
    rp: &str,
    precision: Precision,
    body: Bytes,
) -> Outcome {
    let ep = EndpointLabel {
        endpoint: endpoint.to_string(),
    };
    s.metrics
        .bytes_received
        .get_or_create(&ep)
        .inc_by(body.len() as u64);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Outcome::Accepted;
    }
    let filter = s
        .filter
        .read()
        .map(|f| f.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    let now = crate::clock::now_ns();
    let capture = (s.recordings.receiver_count() > 0).then(|| super::Captured {
        db: db.into(),
        rp: rp.into(),
        lines: crate::ingest::write::normalize(&body, precision, now, |_| true),
    });
    let v = validate(
        body,
        db.into(),
        rp.into(),
        precision,
        now,
        &filter,
        &s.config.hosts.tag,
    );
    let effects = Effects {
        endpoint: ep,
        received: v.received,
        accepted: v.accepted,
        rejected: v.rejected,
        problems: v.problems,
        // Perfdata of passive checks comes back through here; its hosts are already known as
        // check hosts.
        hosts: if endpoint == "checks" {
            Vec::new()
        } else {
            v.hosts
        },
        capture,
    };
    if v.batch.lines.is_empty() {
        return effects.apply(s);
    }
    match s.submit(v.batch) {
        Ok(()) => effects.apply(s),
        Err(batch) => Outcome::Waiting(Box::new(Waiting {
            batch: *batch,
            effects,
        })),
    }
}

/// Optional database and retention policy of remote-write points.
#[derive(Debug, Deserialize)]
struct PromParams {
    db: Option<String>,
    rp: Option<String>,
}

/// Prometheus remote write: snappy protobuf; points are in database `prometheus`, retention
/// policy `autogen`, unless `?db=` / `?rp=` say otherwise.
async fn prom_write(
    State(s): State<Arc<Shared>>,
    Query(q): Query<PromParams>,
    req: Request,
) -> Response {
    use crate::ingest::prom_remote::{RemoteWriteError, decode, to_line_protocol};
    let endpoint = "prom_write";
    let deadline = tokio::time::Instant::now() + s.config.ingest.queue_wait;
    let body = match admit(&s, endpoint, req, deadline).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let db =
        q.db.filter(|d| !d.is_empty())
            .unwrap_or_else(|| "prometheus".to_string());
    let rp =
        q.rp.filter(|r| !r.is_empty())
            .unwrap_or_else(|| "autogen".to_string());
    let outcome = match decode(&body, s.config.ingest.max_body_bytes) {
        Ok(req) => {
            let (lp, _stale) = to_line_protocol(&req);
            Ok(ingest_decoded(
                &s,
                endpoint,
                &db,
                &rp,
                Precision::Milliseconds,
                Bytes::from(lp),
            ))
        }
        Err(RemoteWriteError::TooLarge { limit }) => Err(WriteError::TooLarge { limit }),
        Err(e) => Err(WriteError::BadBody(e.to_string())),
    };
    let outcome = queue(&s, outcome, deadline).await;
    finish(&s, endpoint, outcome)
}

fn finish(s: &Shared, endpoint: &str, r: Result<Outcome, WriteError>) -> Response {
    let resp = match r {
        Ok(Outcome::Accepted) => StatusCode::NO_CONTENT.into_response(),
        Ok(Outcome::Partial {
            accepted,
            rejected,
            problems,
        }) => {
            let first = problems
                .first()
                .map(|p| format!(": line {}: {}", p.line, p.message))
                .unwrap_or_default();
            let body = json!({
                "error": format!("partial write: {rejected} of {} points rejected{first}", accepted + rejected),
                "accepted": accepted,
                "rejected": rejected,
                "lines": problems,
            });
            (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
        }
        Ok(Outcome::Busy | Outcome::Waiting(_)) => {
            let mut r = error_json(
                StatusCode::TOO_MANY_REQUESTS,
                "the rules engine is behind: retry later",
                None,
            );
            if let Ok(v) = HeaderValue::from_str(&s.config.ingest.retry_after_secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Err(e) => {
            let (status, field) = match &e {
                WriteError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, None),
                WriteError::BadBody(_) => (StatusCode::BAD_REQUEST, Some("body")),
                WriteError::UnsupportedEncoding(_) | WriteError::BadGzip(_) => {
                    (StatusCode::BAD_REQUEST, Some("Content-Encoding"))
                }
                WriteError::BadPrecision(_) => (StatusCode::BAD_REQUEST, Some("precision")),
                WriteError::MissingParameter(p) => (StatusCode::BAD_REQUEST, Some(*p)),
            };
            error_json(status, e.to_string(), field)
        }
    };
    s.metrics
        .requests
        .get_or_create(&EndpointCodeLabel {
            endpoint: endpoint.to_string(),
            code: resp.status().as_u16(),
        })
        .inc();
    resp
}

/// `q` from the URL or from a form body.
#[derive(Debug, Deserialize)]
struct QueryParams {
    q: Option<String>,
}

/// Accepts `CREATE DATABASE` (what Telegraf sends at start-up); alertd keeps no databases.
async fn query(State(s): State<Arc<Shared>>, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    let from_url = raw
        .as_deref()
        .and_then(|r| serde_urlencoded::from_str::<QueryParams>(r).ok())
        .and_then(|p| p.q);
    let q = from_url.or_else(|| {
        serde_urlencoded::from_bytes::<QueryParams>(&body)
            .ok()
            .and_then(|p| p.q)
    });
    let resp = match q {
        Some(q)
            if q.trim_start()
                .to_ascii_uppercase()
                .starts_with("CREATE DATABASE") =>
        {
            (
                StatusCode::OK,
                axum::Json(json!({"results": [{"statement_id": 0}]})),
            )
                .into_response()
        }
        Some(q) => error_json(
            StatusCode::BAD_REQUEST,
            format!(
                "alertd stores no data and answers only CREATE DATABASE, not: {}",
                q.chars().take(80).collect::<String>()
            ),
            Some("q"),
        ),
        None => error_json(
            StatusCode::BAD_REQUEST,
            "missing required parameter 'q'",
            Some("q"),
        ),
    };
    s.metrics
        .requests
        .get_or_create(&EndpointCodeLabel {
            endpoint: "query".into(),
            code: resp.status().as_u16(),
        })
        .inc();
    resp
}

async fn ping() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert("X-Influxdb-Version", HeaderValue::from_static("1.8-alertd"));
    r
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    s.metrics
        .recorders
        .set(s.recordings.receiver_count() as i64);
    // Read from the channel when scraped: set by its senders and its receiver as they went,
    // the last value written could be an older one than the queue's.
    s.metrics
        .manager_queue_depth
        .set((s.manager.max_capacity() - s.manager.capacity()) as i64);
    let mut r = s.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

async fn healthy() -> &'static str {
    "alertd is healthy.\n"
}

async fn ready(State(s): State<Arc<Shared>>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        "alertd is ready.\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "alertd is starting.\n").into_response()
    }
}

async fn reload(State(s): State<Arc<Shared>>) -> Response {
    let status = s.reload().await;
    let failed: Vec<_> = status
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| r.name.clone())
        .collect();
    let code = if failed.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let body = json!({
        "status": if failed.is_empty() { "reloaded" } else { "some rules failed to load; their previous versions keep running" },
        "failed": failed,
        "rules": status,
    });
    (code, axum::Json(body)).into_response()
}

/// Parameters of a recording.
#[derive(Debug, Deserialize)]
struct RecordParams {
    measurement: Option<String>,
    db: Option<String>,
    duration: Option<String>,
}

/// Streams the points the service accepts, as Kapacitor stream recording triples (database,
/// retention policy, point with a nanosecond timestamp), until `duration` has passed.
async fn record(State(s): State<Arc<Shared>>, Query(q): Query<RecordParams>) -> Response {
    let duration = match q.duration.as_deref().filter(|d| !d.is_empty()) {
        None => std::time::Duration::from_secs(60),
        Some(d) => match crate::rules::parser::parse_duration(d).filter(|n| *n > 0) {
            Some(ns) => std::time::Duration::from_nanos(ns as u64),
            None => {
                return error_json(
                    StatusCode::BAD_REQUEST,
                    format!("'{d}' is not a duration such as 10m"),
                    Some("duration"),
                );
            }
        },
    };
    let rx = s.recordings.subscribe();
    let deadline = tokio::time::Instant::now() + duration;
    let measurement = q.measurement.filter(|m| !m.is_empty());
    let db = q.db.filter(|d| !d.is_empty());
    let stream = futures_util::stream::unfold(rx, move |mut rx| {
        let measurement = measurement.clone();
        let db = db.clone();
        async move {
            loop {
                let next = tokio::time::timeout_at(deadline, rx.recv()).await;
                let chunk = match next {
                    Err(_) | Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                        return None;
                    }
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                        tracing::warn!(
                            dropped = n,
                            "A recorder fell behind; batches were skipped."
                        );
                        continue;
                    }
                    Ok(Ok(c)) => c,
                };
                if db.as_deref().is_some_and(|d| d != &*chunk.db) {
                    continue;
                }
                let mut out = String::new();
                for line in chunk.lines.lines() {
                    if let Some(m) = &measurement {
                        let name = crate::ingest::line_protocol::parse_line(line, 1)
                            .ok()
                            .map(|p| p.measurement.as_str().to_string());
                        if name.as_deref() != Some(m.as_str()) {
                            continue;
                        }
                    }
                    out.push_str(&chunk.db);
                    out.push('\n');
                    out.push_str(&chunk.rp);
                    out.push('\n');
                    out.push_str(line);
                    out.push('\n');
                }
                if !out.is_empty() {
                    return Some((Ok::<_, std::convert::Infallible>(out), rx));
                }
            }
        }
    });
    let mut r = axum::body::Body::from_stream(stream).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
