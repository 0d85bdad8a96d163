//! Alertmanager API v2 over the dispatcher: posting and listing alerts (`/api/v2/alerts`,
//! `/api/v2/alerts/groups`), creating, listing, reading and expiring silences
//! (`/api/v2/silences`, `/api/v2/silence/{id}`), `/api/v2/status` and `/api/v2/receivers`, with
//! Alertmanager's paths, parameters, JSON shapes and status codes, so Prometheus, amtool and
//! Grafana talk to alertd unchanged. alertd adds recurring silences: `recurrence` (cron),
//! `duration` and `location` on a silence.
//!
//! As in Alertmanager, a 400 answer's body is a JSON string naming the problem
//! (`"[3].labels: ..."`), which is what its generated clients expect.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
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
use crate::manager::matcher::{Matcher, is_plain_name, matches_all, parse_matcher, parse_matchers};
use crate::manager::silence::{SilenceError, SilenceSpec, SilenceState};

/// How long an API call waits for the dispatcher before answering 503.
const MANAGER_TIMEOUT: Duration = Duration::from_secs(10);

fn bad(msg: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, Json(Value::String(msg.into()))).into_response()
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!("the alert manager is busy; retry shortly")),
    )
        .into_response()
}

fn time_str(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_time(v: &Value, field: &str) -> Result<Option<i64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => parse_time_str(s, field),
        _ => Err(format!("{field}: must be a string")),
    }
}

/// A time as Alertmanager's clients send it: RFC 3339, or empty / Go's zero time for none.
fn parse_time_str(s: &str, field: &str) -> Result<Option<i64>, String> {
    if s.is_empty() || s.starts_with("0001-01-01") {
        return Ok(None);
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .map(Some)
        .ok_or_else(|| format!("{field}: '{s}' is not an RFC 3339 time"))
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
        if !is_plain_name(k) {
            return Err(format!(
                "{field}: invalid label name '{k}' (must match [a-zA-Z_][a-zA-Z0-9_]*)"
            ));
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

/// `POST /api/v2/alerts`: the valid alerts of a batch are kept even when others are not; the
/// answer is then 400 naming each invalid one.
pub async fn post_alerts(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let now = now_ns();
    let timeout = s.config.alerts.resolve_timeout.as_nanos() as i64;
    let (alerts, errors) = match parse_posted(&body, now, timeout) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    s.metrics
        .api_alerts_invalid
        .inc_by(u64::try_from(errors.len()).unwrap_or(0));
    s.metrics
        .api_alerts_received
        .inc_by(u64::try_from(alerts.len()).unwrap_or(0));
    if !alerts.is_empty() && request(&s, |tx| Msg::Post(alerts, tx)).await.is_none() {
        return unavailable();
    }
    if errors.is_empty() {
        StatusCode::OK.into_response()
    } else {
        bad(errors.join("; "))
    }
}

/// An alert as posted, read straight from the body (strings without escapes are borrowed).
#[derive(Deserialize)]
struct Posted<'a> {
    labels: LabelSet,
    #[serde(default)]
    annotations: LabelSet,
    #[serde(default, borrow, rename = "startsAt")]
    starts_at: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow, rename = "endsAt")]
    ends_at: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, rename = "generatorURL")]
    generator_url: Option<String>,
}

/// Checks label names and drops empty values, as [`label_map`] does for the JSON tree.
fn clean_labels(mut l: LabelSet, field: &str, require: bool) -> Result<LabelSet, String> {
    if let Some(k) = l.keys().find(|k| !is_plain_name(k)) {
        return Err(format!(
            "{field}: invalid label name '{k}' (must match [a-zA-Z_][a-zA-Z0-9_]*)"
        ));
    }
    if l.values().any(str::is_empty) {
        // An empty label value is the same as no label.
        l.retain(|_, v| !v.is_empty());
    }
    if require && l.is_empty() {
        return Err(format!("{field}: at least one label is required"));
    }
    Ok(l)
}

/// The alerts of a post and the errors of the invalid ones (`[i].field: ...`); `Err` when the
/// body is not a JSON array at all.
///
/// A well-formed batch is read in one pass straight into alerts; a batch with a malformed item
/// is read again as a JSON tree so that each bad item is named and the good ones kept.
fn parse_posted(body: &[u8], now: i64, timeout: i64) -> Result<(Vec<Alert>, Vec<String>), String> {
    if let Ok(items) = serde_json::from_slice::<Vec<Posted<'_>>>(body) {
        let mut alerts = Vec::with_capacity(items.len());
        let mut errors = Vec::new();
        for (i, p) in items.into_iter().enumerate() {
            let r = (|| {
                let starts = p
                    .starts_at
                    .as_deref()
                    .map_or(Ok(None), |t| parse_time_str(t, "startsAt"))?;
                let ends = p
                    .ends_at
                    .as_deref()
                    .map_or(Ok(None), |t| parse_time_str(t, "endsAt"))?;
                finish_alert(
                    clean_labels(p.labels, "labels", true)?,
                    clean_labels(p.annotations, "annotations", false)?,
                    starts,
                    ends,
                    p.generator_url.unwrap_or_default(),
                    now,
                    timeout,
                )
            })();
            match r {
                Ok(a) => alerts.push(a),
                Err(e) => errors.push(format!("[{i}].{e}")),
            }
        }
        return Ok((alerts, errors));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
    let Value::Array(items) = v else {
        return Err("body: must be a JSON array of alerts".to_string());
    };
    let mut alerts = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match postable_alert(item, now, timeout) {
            Ok(a) => alerts.push(a),
            Err(e) => errors.push(format!("[{i}].{e}")),
        }
    }
    Ok((alerts, errors))
}

/// One alert of a post, with Alertmanager's defaults: a missing `startsAt` is `endsAt` when
/// that is given, else now; a missing `endsAt` is now + `resolve_timeout`.
fn postable_alert(item: &Value, now: i64, timeout: i64) -> Result<Alert, String> {
    if !item.is_object() {
        return Err("alert: must be an object".to_string());
    }
    let labels = label_map(&item["labels"], "labels", true)?;
    let annotations = label_map(&item["annotations"], "annotations", false)?;
    let starts = parse_time(&item["startsAt"], "startsAt")?;
    let ends = parse_time(&item["endsAt"], "endsAt")?;
    let generator_url = match &item["generatorURL"] {
        Value::String(u) => u.clone(),
        Value::Null => String::new(),
        _ => return Err("generatorURL: must be a string".to_string()),
    };
    finish_alert(
        labels,
        annotations,
        starts,
        ends,
        generator_url,
        now,
        timeout,
    )
}

/// The alert from its checked parts, with the defaults for missing times.
fn finish_alert(
    labels: LabelSet,
    annotations: LabelSet,
    starts: Option<i64>,
    ends: Option<i64>,
    generator_url: String,
    now: i64,
    timeout: i64,
) -> Result<Alert, String> {
    let starts_at = starts.or(ends).unwrap_or(now);
    if let Some(e) = ends
        && e < starts_at
    {
        return Err("endsAt: must not be before startsAt".to_string());
    }
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
}

/// Sends the dispatcher a message carrying a reply channel and waits for the reply; `None` when
/// the dispatcher does not take or answer it within [`MANAGER_TIMEOUT`] (the caller answers 503).
pub(crate) async fn request<T>(
    s: &Shared,
    msg: impl FnOnce(oneshot::Sender<T>) -> Msg,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    tokio::time::timeout(MANAGER_TIMEOUT, s.manager.send(msg(tx)))
        .await
        .ok()?
        .ok()?;
    tokio::time::timeout(MANAGER_TIMEOUT, rx).await.ok()?.ok()
}

pub(crate) async fn ask<T>(s: &Shared, q: impl FnOnce(oneshot::Sender<T>) -> Query) -> Option<T> {
    request(s, |tx| Msg::Query(q(tx))).await
}

pub(crate) fn alert_json(v: &AlertView) -> Value {
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
            "mutedBy": v.muted_by,
        },
    })
}

/// The query parameters of `GET /api/v2/alerts` and `/api/v2/alerts/groups`.
struct AlertFilter {
    active: bool,
    silenced: bool,
    inhibited: bool,
    matchers: Vec<Matcher>,
    receiver: Option<regex::Regex>,
}

/// Reads a boolean parameter (`true`/`false`, default `default`).
fn flag(params: &[(String, String)], name: &str, default: bool) -> Result<bool, String> {
    match params.iter().rev().find(|(k, _)| k == name) {
        None => Ok(default),
        Some((_, v)) if v.is_empty() => Ok(default),
        Some((_, v)) => v
            .parse()
            .map_err(|_| format!("{name}: '{v}' is not a boolean (true or false)")),
    }
}

/// Splits a raw query string into its parameters (repeated ones kept in order).
pub(crate) fn params(q: Option<&str>) -> Result<Vec<(String, String)>, String> {
    serde_urlencoded::from_str(q.unwrap_or("")).map_err(|e| format!("query: {e}"))
}

/// The `filter` parameters: each one matcher, or a `{...}` list.
fn filter_matchers(params: &[(String, String)]) -> Result<Vec<Matcher>, String> {
    let mut out = Vec::new();
    for (_, f) in params.iter().filter(|(k, _)| k == "filter") {
        let parsed = if f.trim_start().starts_with('{') {
            parse_matchers(f)
        } else {
            parse_matcher(f).map(|m| vec![m])
        };
        out.extend(parsed.map_err(|e| format!("filter: bad matcher '{f}': {e}"))?);
    }
    Ok(out)
}

impl AlertFilter {
    fn parse(q: Option<&str>) -> Result<AlertFilter, String> {
        let p = params(q)?;
        // `unprocessed` is accepted and has no effect: alerts are processed as they arrive.
        flag(&p, "unprocessed", true)?;
        let receiver = match p.iter().rev().find(|(k, _)| k == "receiver") {
            Some((_, r)) if !r.is_empty() => Some(
                regex::Regex::new(&format!("^(?:{r})$"))
                    .map_err(|e| format!("receiver: failed to parse receiver param: {e}"))?,
            ),
            _ => None,
        };
        Ok(AlertFilter {
            active: flag(&p, "active", true)?,
            silenced: flag(&p, "silenced", true)?,
            inhibited: flag(&p, "inhibited", true)?,
            matchers: filter_matchers(&p)?,
            receiver,
        })
    }

    /// Whether a view passes the state and label filters (not the receiver one).
    fn keeps(&self, v: &AlertView, now: i64) -> bool {
        !v.alert.resolved_at(now)
            && (self.active || v.state != "active")
            && (self.silenced || v.silenced_by.is_empty())
            && (self.inhibited || v.inhibited_by.is_empty())
            && matches_all(&self.matchers, &v.alert.labels)
    }

    fn keeps_receiver(&self, name: &str) -> bool {
        self.receiver.as_ref().is_none_or(|r| r.is_match(name))
    }
}

/// `GET /api/v2/alerts`: alerts not yet resolved, filtered by state (`active`, `silenced`,
/// `inhibited`, `unprocessed`), label matchers (`filter`, repeated) and a receiver regex
/// (`receiver`), sorted by fingerprint.
pub async fn get_alerts(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let f = match AlertFilter::parse(q.as_deref()) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let Some(all) = ask(&s, Query::Alerts).await else {
        return unavailable();
    };
    let now = now_ns();
    let out: Vec<Value> = all
        .iter()
        .filter(|v| f.keeps(v, now))
        .filter(|v| f.receiver.is_none() || v.receivers.iter().any(|r| f.keeps_receiver(r)))
        .map(alert_json)
        .collect();
    Json(out).into_response()
}

/// `GET /api/v2/alerts/groups`: the aggregation groups with their alerts, same parameters as
/// `/api/v2/alerts` (`receiver` selects groups by their route's receiver).
pub async fn get_alert_groups(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let f = match AlertFilter::parse(q.as_deref()) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let Some(groups) = ask(&s, Query::Groups).await else {
        return unavailable();
    };
    let now = now_ns();
    let out: Vec<Value> = groups
        .iter()
        .filter(|g| f.keeps_receiver(&g.receiver))
        .filter_map(|g| {
            let alerts: Vec<Value> = g
                .alerts
                .iter()
                .filter(|v| f.keeps(v, now))
                .map(alert_json)
                .collect();
            (!alerts.is_empty()).then(|| {
                json!({
                    "labels": g.labels,
                    "receiver": { "name": g.receiver },
                    "alerts": alerts,
                })
            })
        })
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
    /// Read-only fields of a silence as `GET` returns it, accepted and ignored so a client can
    /// post back what it fetched (as Grafana does when editing).
    #[serde(default, rename = "status")]
    _status: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "updatedAt")]
    _updated_at: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "occurrence")]
    _occurrence: Option<serde::de::IgnoredAny>,
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

pub(crate) fn silence_json(v: &SilenceView) -> Value {
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
    if p.matchers.is_empty() {
        return bad("matchers: at least one matcher required");
    }
    for (i, m) in p.matchers.iter().enumerate() {
        if !is_plain_name(&m.name) {
            return bad(format!(
                "matchers[{i}].name: invalid label name '{}' (must match [a-zA-Z_][a-zA-Z0-9_]*)",
                m.name
            ));
        }
    }
    if starts >= ends {
        return bad("startsAt: start time must be before end time");
    }
    if ends < now_ns() {
        return bad("endsAt: end time can't be in the past");
    }
    let spec = SilenceSpec {
        matchers: p.matchers.iter().map(matcher_text).collect(),
        starts_at: starts,
        ends_at: ends,
        created_by: p.created_by,
        comment: p.comment,
        recurrence: p.recurrence,
        duration_ns,
        location: p.location,
        until_resolved: None,
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

/// `GET /api/v2/silences`: filtered by label matchers (`filter`, repeated: a silence is kept
/// when, for each filter, one of its matchers has the same name and the filter matches its
/// value) and by state (`active`, `pending`, `expired`, default true); active ones first (by
/// end), then pending (by start), then expired (latest end first), as Alertmanager sorts them.
pub async fn get_silences(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let p = match params(q.as_deref()) {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let (filters, active, pending, expired) = match (
        filter_matchers(&p),
        flag(&p, "active", true),
        flag(&p, "pending", true),
        flag(&p, "expired", true),
    ) {
        (Ok(f), Ok(a), Ok(pe), Ok(e)) => (f, a, pe, e),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => return bad(e),
    };
    let Some(mut all) = ask(&s, Query::Silences).await else {
        return unavailable();
    };
    all.retain(|v| {
        let state_ok = match v.state {
            SilenceState::Active => active,
            SilenceState::Pending => pending,
            SilenceState::Expired => expired,
        };
        state_ok && silence_matches_filters(v, &filters)
    });
    all.sort_by(|a, b| {
        let rank = |v: &SilenceView| match v.state {
            SilenceState::Active => (0, v.spec.ends_at),
            SilenceState::Pending => (1, v.spec.starts_at),
            SilenceState::Expired => (2, -v.spec.ends_at),
        };
        rank(a).cmp(&rank(b))
    });
    Json(all.iter().map(silence_json).collect::<Vec<_>>()).into_response()
}

/// Alertmanager's silence filter: every filter matcher must match the value of one of the
/// silence's matchers with the same label name.
fn silence_matches_filters(v: &SilenceView, filters: &[Matcher]) -> bool {
    if filters.is_empty() {
        return true;
    }
    let own: Vec<Matcher> = v
        .spec
        .matchers
        .iter()
        .filter_map(|m| parse_matcher(m).ok())
        .collect();
    filters.iter().all(|f| {
        own.iter()
            .any(|m| m.name == f.name && f.matches_value(&m.value))
    })
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

/// `GET /api/v2/status`: a single node (cluster `disabled`), version, uptime, and the routing
/// configuration as YAML in Alertmanager's shape, without any receiver settings (those hold
/// secrets).
pub async fn get_status(State(s): State<Arc<Shared>>) -> Response {
    let receivers = s.receivers.read().map(|r| Arc::clone(&r)).ok();
    let original = receivers.as_deref().map(config_yaml).unwrap_or_default();
    Json(json!({
        "cluster": { "status": "disabled", "peers": [] },
        "versionInfo": {
            "version": env!("CARGO_PKG_VERSION"),
            "revision": "",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        },
        "config": { "original": original },
        "uptime": time_str(s.started_ns),
    }))
    .into_response()
}

/// The routing tree and receiver names as Alertmanager configuration YAML.
fn config_yaml(r: &crate::receivers::config::Receivers) -> String {
    use crate::manager::route::RouteNode;
    /// The lines of one route, unindented.
    fn node(n: &RouteNode) -> Vec<String> {
        let mut out = vec![format!("receiver: {}", yaml_str(&n.receiver))];
        if n.group_by_all {
            out.push("group_by: ['...']".to_string());
        } else if !n.group_by.is_empty() {
            let g: Vec<String> = n.group_by.iter().map(|g| yaml_str(g)).collect();
            out.push(format!("group_by: [{}]", g.join(", ")));
        }
        if !n.matchers.is_empty() {
            out.push("matchers:".to_string());
            out.extend(
                n.matchers
                    .iter()
                    .map(|m| format!("- {}", yaml_str(&m.to_string()))),
            );
        }
        if n.continue_matching {
            out.push("continue: true".to_string());
        }
        out.push(format!("group_wait: {}ms", n.group_wait.as_millis()));
        out.push(format!(
            "group_interval: {}ms",
            n.group_interval.as_millis()
        ));
        out.push(format!(
            "repeat_interval: {}ms",
            n.repeat_interval.as_millis()
        ));
        if !n.routes.is_empty() {
            out.push("routes:".to_string());
            for c in &n.routes {
                for (i, l) in node(c).into_iter().enumerate() {
                    out.push(if i == 0 {
                        format!("- {l}")
                    } else {
                        format!("  {l}")
                    });
                }
            }
        }
        out
    }
    let mut out = String::from("route:\n");
    if let Some(route) = &r.route {
        for l in node(&route.root) {
            out.push_str("  ");
            out.push_str(&l);
            out.push('\n');
        }
    }
    out.push_str("receivers:\n");
    for name in r.receivers.keys() {
        out.push_str(&format!("- name: {}\n", yaml_str(name)));
    }
    out
}

/// A YAML double-quoted scalar.
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// `GET /api/v2/receivers`: every receiver's name.
pub async fn get_receivers(State(s): State<Arc<Shared>>) -> Response {
    let names: Vec<Value> = s
        .receivers
        .read()
        .map(|r| r.receivers.keys().map(|n| json!({ "name": n })).collect())
        .unwrap_or_default();
    Json(names).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000_000_000_000;
    const TIMEOUT: i64 = 300_000_000_000;

    /// What the JSON-tree path makes of a batch: the reference the one-pass path must match.
    fn by_tree(body: &str) -> (Vec<Alert>, Vec<String>) {
        let v: Value = serde_json::from_str(body).unwrap();
        let mut alerts = Vec::new();
        let mut errors = Vec::new();
        for (i, item) in v.as_array().unwrap().iter().enumerate() {
            match postable_alert(item, NOW, TIMEOUT) {
                Ok(a) => alerts.push(a),
                Err(e) => errors.push(format!("[{i}].{e}")),
            }
        }
        (alerts, errors)
    }

    #[test]
    fn one_pass_reading_matches_the_tree() {
        let body = r#"[
            {"labels": {"alertname": "Disk", "host": "a\"b", "empty": "", "host": "c"},
             "annotations": {"summary": "full\n"}, "generatorURL": "http://p/x",
             "startsAt": "2026-09-21T10:00:00Z", "unknown": 1},
            {"labels": {"alertname": "Up"}, "endsAt": "2026-09-21T10:05:00.5Z", "startsAt": null},
            {"labels": {"alertname": "Zero"}, "startsAt": "0001-01-01T00:00:00Z", "endsAt": ""},
            {"labels": {"bad-name": "x"}},
            {"labels": {"": "x"}},
            {"labels": {"only": ""}},
            {"labels": {"alertname": "T"}, "startsAt": "yesterday"},
            {"labels": {"alertname": "E"}, "startsAt": "2026-09-21T10:00:00Z", "endsAt": "2026-09-21T09:00:00Z"}
        ]"#;
        let (alerts, errors) = parse_posted(body.as_bytes(), NOW, TIMEOUT).unwrap();
        assert_eq!((alerts.clone(), errors.clone()), by_tree(body));
        assert_eq!(alerts.len(), 3);
        assert_eq!(alerts[0].labels.get("host"), Some("c"));
        assert!(!alerts[0].labels.contains_key("empty"));
        assert_eq!(alerts[2].starts_at, NOW);
        assert_eq!(alerts[2].ends_at, Some(NOW + TIMEOUT));
        assert_eq!(errors.len(), 5);
        assert!(errors[0].starts_with("[3].labels: invalid label name 'bad-name'"));
        assert!(errors[3].starts_with("[6].startsAt: 'yesterday'"));
    }

    #[test]
    fn malformed_items_are_named_and_the_rest_kept() {
        let body = r#"[{"labels": {"alertname": "Ok"}}, {"labels": {"n": 5}}, 7, {"labels": null},
                      {"labels": {"alertname": "Url"}, "generatorURL": 3}]"#;
        let (alerts, errors) = parse_posted(body.as_bytes(), NOW, TIMEOUT).unwrap();
        assert_eq!((alerts.clone(), errors.clone()), by_tree(body));
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            errors,
            [
                "[1].labels.n: must be a string",
                "[2].alert: must be an object",
                "[3].labels: must be an object of strings",
                "[4].generatorURL: must be a string"
            ]
        );
        assert!(
            parse_posted(b"{}", NOW, TIMEOUT)
                .unwrap_err()
                .contains("array")
        );
        assert!(
            parse_posted(b"[", NOW, TIMEOUT)
                .unwrap_err()
                .starts_with("body:")
        );
    }
}
