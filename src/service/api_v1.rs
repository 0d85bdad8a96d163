//! alertd's own API under `/api/v1` (documented in `docs/api.md`): alerts from every source with
//! their level history and notifications, acknowledging an alert (a silence until it resolves),
//! rule alert events, notifications, silences and rules.
//!
//! Lists take `limit` (1–1000, default 100) and `offset` and answer
//! `{"items": [...], "total": N, "limit": L, "offset": O}`. Errors are
//! `{"error": "...", "field": "..."}` with 400, 404, 409 or 503.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

use super::Shared;
use super::am_api::{alert_json, ask, params, request, silence_json};
use super::http::error_json as error;
use crate::clock::now_ns;
use crate::manager::alert::Source;
use crate::manager::dispatch::{Msg, Query};
use crate::manager::matcher::{matches_all, parse_matcher};
use crate::manager::silence::{SilenceSpec, SilenceState};
use crate::storage::StorageError;

fn bad(msg: impl Into<String>, field: &str) -> Response {
    error(StatusCode::BAD_REQUEST, msg, Some(field))
}

/// A request parameter or body field that is wrong: 400 naming it.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {msg}")]
pub(crate) struct BadInput {
    msg: String,
    field: String,
}

impl BadInput {
    fn new(msg: impl Into<String>, field: &str) -> BadInput {
        BadInput {
            msg: msg.into(),
            field: field.to_string(),
        }
    }
}

impl IntoResponse for BadInput {
    fn into_response(self) -> Response {
        bad(self.msg, &self.field)
    }
}

fn busy() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the alert manager is busy; retry shortly",
        None,
    )
}

fn db_error(e: StorageError) -> Response {
    tracing::error!(error = %e, "Reading the database failed.");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database is unavailable",
        None,
    )
}

/// `limit` and `offset` of a list.
struct Page {
    limit: usize,
    offset: usize,
}

/// The query parameters of a list: its page and the other parameters by name.
pub(crate) struct ListQuery {
    page: Page,
    params: Vec<(String, String)>,
}

impl ListQuery {
    pub(crate) fn parse(q: Option<&str>) -> Result<ListQuery, BadInput> {
        let params = params(q).map_err(|e| BadInput::new(e, "query"))?;
        let num = |name: &str, default: usize, min: usize, max: usize| match params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
        {
            None => Ok(default),
            Some((_, v)) => match v.parse::<usize>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(BadInput::new(
                    format!("'{v}' is not a whole number from {min} to {max}"),
                    name,
                )),
            },
        };
        Ok(ListQuery {
            page: Page {
                limit: num("limit", 100, 1, 1000)?,
                offset: num("offset", 0, 0, usize::MAX)?,
            },
            params,
        })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// One page of `items` as the list answer.
    pub(crate) fn answer(&self, items: Vec<Value>) -> Value {
        let total = items.len();
        let page: Vec<Value> = items
            .into_iter()
            .skip(self.page.offset)
            .take(self.page.limit)
            .collect();
        self.wrap(page, total as i64)
    }

    fn wrap(&self, items: Vec<Value>, total: i64) -> Value {
        json!({
            "items": items,
            "total": total,
            "limit": self.page.limit,
            "offset": self.page.offset,
        })
    }
}

fn source_json(src: &Source) -> Value {
    match src {
        Source::Rule(r) => {
            json!({ "kind": "rule", "rule": r.rule, "alert": r.key, "routed": r.routed })
        }
        Source::Api => json!({ "kind": "api" }),
        Source::Check => json!({ "kind": "check" }),
    }
}

/// `GET /api/v1/alerts`: alerts from every source (`state` = `firing` (default), `resolved` or
/// `all`; `filter` = label matchers, repeated), newest first.
pub async fn alerts(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let lq = match ListQuery::parse(q.as_deref()) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    let state = lq.get("state").unwrap_or("firing");
    if !matches!(state, "firing" | "resolved" | "all") {
        return bad(format!("'{state}' is not firing, resolved or all"), "state");
    }
    let mut matchers = Vec::new();
    for (_, f) in lq.params.iter().filter(|(k, _)| k == "filter") {
        match parse_matcher(f) {
            Ok(m) => matchers.push(m),
            Err(e) => return bad(format!("bad matcher '{f}': {e}"), "filter"),
        }
    }
    let Some(mut all) = ask(&s, Query::Alerts).await else {
        return busy();
    };
    let now = now_ns();
    all.retain(|v| {
        let resolved = v.alert.resolved_at(now);
        (state == "all" || (state == "resolved") == resolved)
            && matches_all(&matchers, &v.alert.labels)
    });
    all.sort_by_key(|v| std::cmp::Reverse((v.alert.starts_at, v.alert.fingerprint)));
    let items = all
        .iter()
        .map(|v| {
            let mut j = alert_json(v);
            j["source"] = source_json(&v.alert.source);
            j["state"] = json!(if v.alert.resolved_at(now) {
                "resolved"
            } else {
                "firing"
            });
            j
        })
        .collect();
    Json(lq.answer(items)).into_response()
}

fn parse_fp(fp: &str) -> Result<u64, BadInput> {
    u64::from_str_radix(fp, 16).map_err(|_| {
        BadInput::new(
            format!("'{fp}' is not a fingerprint (16 hex digits)"),
            "fingerprint",
        )
    })
}

/// `GET /api/v1/alerts/{fingerprint}`: one alert with its level history (for rule alerts, the
/// rule's events for it, newest first) and the notifications that carried it.
pub async fn alert(State(s): State<Arc<Shared>>, Path(fp): Path<String>) -> Response {
    let fp = match parse_fp(&fp) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let Some(all) = ask(&s, Query::Alerts).await else {
        return busy();
    };
    let Some(v) = all.iter().find(|v| v.alert.fingerprint == fp) else {
        return error(StatusCode::NOT_FOUND, "no such alert", Some("fingerprint"));
    };
    let mut out = alert_json(v);
    out["source"] = source_json(&v.alert.source);
    let history = match &v.alert.source {
        Source::Rule(r) => {
            let id = r.key.split_once('/').map_or(r.key.as_str(), |(_, id)| id);
            match s.storage.events_page(Some(&r.rule), Some(id), 100, 0).await {
                Ok((events, _)) => events,
                Err(e) => return db_error(e),
            }
        }
        _ => Vec::new(),
    };
    out["history"] = json!(history);
    let hex = format!("{fp:016x}");
    match s.storage.notifications_page(None, Some(&hex), 50, 0).await {
        Ok((n, _)) => out["notifications"] = json!(n),
        Err(e) => return db_error(e),
    }
    Json(out).into_response()
}

/// `POST /api/v1/alerts/{fingerprint}/ack` (`{"author": "...", "comment": "..."}`, both
/// optional): silences exactly this alert until it resolves. Answers the silence's id.
pub async fn ack(State(s): State<Arc<Shared>>, Path(fp): Path<String>, body: Bytes) -> Response {
    let fp = match parse_fp(&fp) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let b: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return bad("must be a JSON object", "body"),
            Err(e) => return bad(format!("not JSON: {e}"), "body"),
        }
    };
    let text = |name: &str| -> Result<String, BadInput> {
        match &b[name] {
            Value::Null => Ok(String::new()),
            Value::String(t) => Ok(t.clone()),
            _ => Err(BadInput::new("must be a string", name)),
        }
    };
    let (author, comment) = match (text("author"), text("comment")) {
        (Ok(a), Ok(c)) => (a, c),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    let Some(all) = ask(&s, Query::Alerts).await else {
        return busy();
    };
    let now = now_ns();
    let Some(v) = all.iter().find(|v| v.alert.fingerprint == fp) else {
        return error(StatusCode::NOT_FOUND, "no such alert", Some("fingerprint"));
    };
    if v.alert.resolved_at(now) {
        return error(
            StatusCode::CONFLICT,
            "the alert has resolved; nothing to acknowledge",
            Some("fingerprint"),
        );
    }
    let spec = ack_spec(v, author, comment, now);
    match request(&s, |tx| Msg::SetSilence(None, spec, tx)).await {
        Some(Ok(id)) => Json(json!({ "silenceID": id })).into_response(),
        Some(Err(e)) => bad(e.to_string(), "silence"),
        None => busy(),
    }
}

/// The silence that acknowledges an alert: exactly its labels, until it resolves (the far end
/// only bounds it if it never does).
pub(crate) fn ack_spec(
    v: &crate::manager::dispatch::AlertView,
    author: String,
    comment: String,
    now: i64,
) -> SilenceSpec {
    let matchers = v
        .alert
        .labels
        .iter()
        .map(|(k, val)| crate::manager::matcher::equality_text(k, val))
        .collect();
    SilenceSpec {
        matchers,
        starts_at: now,
        ends_at: now.saturating_add(365 * 24 * 3600 * 1_000_000_000),
        created_by: if author.is_empty() {
            "acknowledged".to_string()
        } else {
            author
        },
        comment: if comment.is_empty() {
            "Acknowledged until it resolves.".to_string()
        } else {
            comment
        },
        recurrence: None,
        duration_ns: None,
        location: None,
        until_resolved: Some(format!("{:016x}", v.alert.fingerprint)),
    }
}

/// `GET /api/v1/events`: rule alert events, newest first (`rule`, `alert` = alert id).
pub async fn events(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let lq = match ListQuery::parse(q.as_deref()) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    match s
        .storage
        .events_page(
            lq.get("rule"),
            lq.get("alert"),
            lq.page.limit as i64,
            lq.page.offset as i64,
        )
        .await
    {
        Ok((items, total)) => Json(lq.wrap(items, total)).into_response(),
        Err(e) => db_error(e),
    }
}

/// `GET /api/v1/notifications`: the outbox, newest first (`status` = `pending`, `sent` or
/// `failed`), with the counts by status.
pub async fn notifications(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let lq = match ListQuery::parse(q.as_deref()) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    let status = lq.get("status");
    if let Some(st) = status
        && !matches!(st, "pending" | "sent" | "failed")
    {
        return bad(format!("'{st}' is not pending, sent or failed"), "status");
    }
    let page = s
        .storage
        .notifications_page(status, None, lq.page.limit as i64, lq.page.offset as i64)
        .await;
    match (page, s.storage.outbox_counts().await) {
        (Ok((items, total)), Ok(counts)) => {
            let mut out = lq.wrap(items.into_iter().map(|n| json!(n)).collect(), total);
            let mut by = json!({ "pending": 0, "sent": 0, "failed": 0 });
            for (k, v) in counts {
                by[k] = json!(v);
            }
            out["counts"] = by;
            Json(out).into_response()
        }
        (Err(e), _) | (_, Err(e)) => db_error(e),
    }
}

/// `GET /api/v1/silences`: silences (`state` = `active`, `pending` or `expired`), latest
/// change first.
pub async fn silences(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let lq = match ListQuery::parse(q.as_deref()) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    let want = match lq.get("state") {
        None => None,
        Some("active") => Some(SilenceState::Active),
        Some("pending") => Some(SilenceState::Pending),
        Some("expired") => Some(SilenceState::Expired),
        Some(o) => {
            return bad(format!("'{o}' is not active, pending or expired"), "state");
        }
    };
    let Some(all) = ask(&s, Query::Silences).await else {
        return busy();
    };
    let items = all
        .iter()
        .filter(|v| want.is_none_or(|w| v.state == w))
        .map(|v| {
            let mut j = silence_json(v);
            if let Some(fp) = &v.spec.until_resolved {
                j["acknowledges"] = json!(fp);
            }
            j
        })
        .collect();
    Json(lq.answer(items)).into_response()
}

/// `GET /api/v1/rules`: every rule with its status, load error, counters and source.
pub async fn rules(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let lq = match ListQuery::parse(q.as_deref()) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    let items = s.rules().iter().map(|r| json!(r)).collect();
    Json(lq.answer(items)).into_response()
}

/// `GET /api/v1/rules/{name}`: one rule, with the stored level of each of its alerts.
pub async fn rule(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let Some(r) = s.rules().into_iter().find(|r| r.name == name) else {
        return error(StatusCode::NOT_FOUND, "no such rule", Some("name"));
    };
    let states = match s.storage.alert_states().await {
        Ok(st) => st,
        Err(e) => return db_error(e),
    };
    let mut out = json!(r);
    out["alerts"] = json!(
        states
            .into_iter()
            .filter(|a| a.task == name)
            .collect::<Vec<_>>()
    );
    Json(out).into_response()
}
