//! Alertmanager API v2 over the dispatcher: posting and listing alerts (`/api/v2/alerts`),
//! creating, listing, reading and expiring silences (`/api/v2/silences`, `/api/v2/silence/{id}`),
//! in Alertmanager's JSON shapes so Prometheus and amtool talk to alertd unchanged. alertd adds
//! recurring silences: `recurrence` (cron), `duration` and `location` on a silence.
//!
//! Every malformed request gets 400 with a message naming the field (`[3].labels: ...`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

use super::Shared;
use crate::clock::now_ns;
use crate::manager::alert::{Alert, Source};
use crate::manager::dispatch::{AlertView, Msg, Query, SilenceView};
use crate::manager::labels::{LabelSet, fingerprint};
use crate::manager::silence::{SilenceError, SilenceSpec};

/// How long an API call waits for the dispatcher before answering 503.
const MANAGER_TIMEOUT: Duration = Duration::from_secs(10);

fn bad(msg: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": msg.into() })),
    )
        .into_response()
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": "the alert manager is busy; retry shortly" })),
    )
        .into_response()
}

fn time_str(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_time(v: &Value, field: &str) -> Result<Option<i64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() || s.starts_with("0001-01-01") => Ok(None),
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .map(Some)
            .ok_or_else(|| format!("{field}: '{s}' is not an RFC 3339 time")),
        _ => Err(format!("{field}: must be a string")),
    }
}

fn label_map(v: &Value, field: &str, require: bool) -> Result<LabelSet, String> {
    let obj = match v {
        Value::Object(o) => o,
        Value::Null if !require => return Ok(LabelSet::new()),
        _ => return Err(format!("{field}: must be an object of strings")),
    };
    let mut out = LabelSet::new();
    for (k, v) in obj {
        let Value::String(s) = v else {
            return Err(format!("{field}.{k}: must be a string"));
        };
        if k.is_empty() {
            return Err(format!("{field}: empty label name"));
        }
        if s.is_empty() {
            // An empty label value is the same as no label.
            continue;
        }
        out.insert(k.clone(), s.clone());
    }
    if require && out.is_empty() {
        return Err(format!("{field}: at least one label is required"));
    }
    Ok(out)
}

/// `POST /api/v2/alerts`.
pub async fn post_alerts(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad(format!("body: {e}")),
    };
    let Value::Array(items) = v else {
        return bad("body: must be a JSON array of alerts");
    };
    let now = now_ns();
    let timeout = s.config.alerts.resolve_timeout.as_nanos() as i64;
    let mut alerts = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let r = (|| {
            let labels = label_map(&item["labels"], "labels", true)?;
            let annotations = label_map(&item["annotations"], "annotations", false)?;
            let starts = parse_time(&item["startsAt"], "startsAt")?;
            let ends = parse_time(&item["endsAt"], "endsAt")?;
            let starts_at = starts.unwrap_or(now);
            if let Some(e) = ends
                && e < starts_at
            {
                return Err("endsAt: must not be before startsAt".to_string());
            }
            let generator_url = match &item["generatorURL"] {
                Value::String(u) => u.clone(),
                Value::Null => String::new(),
                _ => return Err("generatorURL: must be a string".to_string()),
            };
            Ok(Alert {
                fingerprint: fingerprint(&labels),
                labels,
                annotations,
                starts_at,
                ends_at: Some(ends.unwrap_or(now.saturating_add(timeout))),
                updated_at: now,
                generator_url,
                source: Source::Api,
                timeout: ends.is_none(),
            })
        })();
        match r {
            Ok(a) => alerts.push(a),
            Err(e) => return bad(format!("[{i}].{e}")),
        }
    }
    match request(&s, |tx| Msg::Post(alerts, tx)).await {
        Some(()) => StatusCode::OK.into_response(),
        None => unavailable(),
    }
}

/// Sends the dispatcher a message carrying a reply channel and waits for the reply; `None` when
/// the dispatcher does not take or answer it within [`MANAGER_TIMEOUT`] (the caller answers 503).
async fn request<T>(s: &Shared, msg: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    tokio::time::timeout(MANAGER_TIMEOUT, s.manager.send(msg(tx)))
        .await
        .ok()?
        .ok()?;
    tokio::time::timeout(MANAGER_TIMEOUT, rx).await.ok()?.ok()
}

async fn ask<T>(s: &Shared, q: impl FnOnce(oneshot::Sender<T>) -> Query) -> Option<T> {
    request(s, |tx| Msg::Query(q(tx))).await
}

fn alert_json(v: &AlertView) -> Value {
    let a = &v.alert;
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": time_str(a.starts_at),
        "endsAt": a.ends_at.map_or_else(|| "0001-01-01T00:00:00.000Z".to_string(), time_str),
        "updatedAt": time_str(a.updated_at),
        "generatorURL": a.generator_url,
        "fingerprint": format!("{:016x}", a.fingerprint),
        "receivers": v.receivers.iter().map(|r| json!({"name": r})).collect::<Vec<_>>(),
        "status": {
            "state": v.state,
            "silencedBy": v.silenced_by,
            "inhibitedBy": v.inhibited_by,
        },
    })
}

/// `GET /api/v2/alerts`: alerts not yet resolved.
pub async fn get_alerts(State(s): State<Arc<Shared>>) -> Response {
    let Some(all) = ask(&s, Query::Alerts).await else {
        return unavailable();
    };
    let now = now_ns();
    let out: Vec<Value> = all
        .iter()
        .filter(|v| !v.alert.resolved_at(now))
        .map(alert_json)
        .collect();
    Json(out).into_response()
}

/// A matcher in the v2 API.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiMatcher {
    name: String,
    value: String,
    #[serde(default)]
    is_regex: bool,
    #[serde(default = "yes")]
    is_equal: bool,
}

fn yes() -> bool {
    true
}

/// A silence posted to the v2 API.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PostableSilence {
    #[serde(default)]
    id: Option<String>,
    matchers: Vec<ApiMatcher>,
    starts_at: String,
    ends_at: String,
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    comment: String,
    /// alertd: cron expression of a recurring silence.
    #[serde(default)]
    recurrence: Option<String>,
    /// alertd: length of each occurrence (`2h`).
    #[serde(default)]
    duration: Option<String>,
    /// alertd: time zone of the cron expression.
    #[serde(default)]
    location: Option<String>,
}

fn matcher_text(m: &ApiMatcher) -> String {
    let op = match (m.is_regex, m.is_equal) {
        (false, true) => "=",
        (false, false) => "!=",
        (true, true) => "=~",
        (true, false) => "!~",
    };
    format!(
        "{}{op}{}",
        m.name,
        serde_json::to_string(&m.value).unwrap_or_default()
    )
}

fn silence_json(v: &SilenceView) -> Value {
    let matchers: Vec<Value> = v
        .spec
        .matchers
        .iter()
        .filter_map(|m| crate::manager::matcher::parse_matcher(m).ok())
        .map(|m| {
            use crate::manager::matcher::MatchOp;
            json!({
                "name": m.name,
                "value": m.value,
                "isRegex": matches!(m.op, MatchOp::Re | MatchOp::NotRe),
                "isEqual": matches!(m.op, MatchOp::Eq | MatchOp::Re),
            })
        })
        .collect();
    let mut out = json!({
        "id": v.id,
        "status": { "state": v.state.as_str() },
        "updatedAt": time_str(v.updated_at),
        "matchers": matchers,
        "startsAt": time_str(v.spec.starts_at),
        "endsAt": time_str(v.spec.ends_at),
        "createdBy": v.spec.created_by,
        "comment": v.spec.comment,
    });
    if let Some(r) = &v.spec.recurrence {
        out["recurrence"] = json!(r);
        out["duration"] = json!(format!(
            "{}s",
            v.spec.duration_ns.unwrap_or(0) / 1_000_000_000
        ));
        if let Some(l) = &v.spec.location {
            out["location"] = json!(l);
        }
        if let Some((s, e)) = v.next {
            out["occurrence"] = json!({ "startsAt": time_str(s), "endsAt": time_str(e) });
        }
    }
    out
}

/// `POST /api/v2/silences`: create, or update when `id` is given.
pub async fn post_silence(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let p: PostableSilence = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return bad(format!("silence: {e}")),
    };
    let starts = match parse_time(&json!(p.starts_at), "startsAt") {
        Ok(Some(t)) => t,
        Ok(None) => return bad("startsAt: required"),
        Err(e) => return bad(e),
    };
    let ends = match parse_time(&json!(p.ends_at), "endsAt") {
        Ok(Some(t)) => t,
        Ok(None) => return bad("endsAt: required"),
        Err(e) => return bad(e),
    };
    let duration_ns = match &p.duration {
        None => None,
        Some(d) => match crate::manager::route::parse_duration(d) {
            Ok(d) => Some(d.as_nanos() as i64),
            Err(e) => return bad(format!("duration: {e}")),
        },
    };
    let spec = SilenceSpec {
        matchers: p.matchers.iter().map(matcher_text).collect(),
        // A silence never starts in the past: it starts now.
        starts_at: starts.max(now_ns().min(ends)),
        ends_at: ends,
        created_by: p.created_by,
        comment: p.comment,
        recurrence: p.recurrence,
        duration_ns,
        location: p.location,
    };
    let id = p.id.filter(|i| !i.is_empty());
    match request(&s, |tx| Msg::SetSilence(id, spec, tx)).await {
        Some(Ok(id)) => Json(json!({ "silenceID": id })).into_response(),
        Some(Err(SilenceError::NotFound(id))) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("silence {id} not found") })),
        )
            .into_response(),
        Some(Err(e)) => bad(e.to_string()),
        None => unavailable(),
    }
}

/// `GET /api/v2/silences`.
pub async fn get_silences(State(s): State<Arc<Shared>>) -> Response {
    match ask(&s, Query::Silences).await {
        Some(all) => Json(all.iter().map(silence_json).collect::<Vec<_>>()).into_response(),
        None => unavailable(),
    }
}

/// `GET /api/v2/silence/{id}`.
pub async fn get_silence(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match ask(&s, Query::Silences).await {
        Some(all) => match all.iter().find(|v| v.id == id) {
            Some(v) => Json(silence_json(v)).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
        None => unavailable(),
    }
}

/// `DELETE /api/v2/silence/{id}`: expires the silence.
pub async fn delete_silence(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match request(&s, |tx| Msg::ExpireSilence(id, tx)).await {
        Some(Ok(())) => StatusCode::OK.into_response(),
        Some(Err(SilenceError::NotFound(_))) => StatusCode::NOT_FOUND.into_response(),
        Some(Err(e)) => bad(e.to_string()),
        None => unavailable(),
    }
}
