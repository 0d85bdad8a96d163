//! The alert pages: the list (grouped by a chosen label, filtered with Alertmanager matchers,
//! refreshed in place by script) and an alert's detail (labels, annotations, level history as a
//! timeline, the rule's source, the notifications sent), with acknowledge.

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::DateTime;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

use super::session::Viewer;
use super::view::{self, AlertRow, GroupRows};
use super::{Chrome, Ui, bad_form, busy, error_page, form, refuse_change, render};
use crate::clock::now_ns;
use crate::manager::alert::Source;
use crate::manager::dispatch::{AlertView, Msg, Query as MQuery, SilenceView};
use crate::manager::matcher::{matches_all, parse_matchers};
use crate::service::Shared;
use crate::service::am_api::{ask, request};

/// Alerts listed at most, so the page stays quick to load with thousands firing; the rest are
/// counted and a narrower filter shows them.
pub const MAX_ROWS: usize = 500;

/// The alert list's query: `filter` (matchers), `group` (a label name), `fragment=list` (only
/// the list, for the script's refresh).
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct ListQuery {
    filter: String,
    group: String,
    fragment: String,
}

/// The list as it is shown and refreshed.
pub struct AlertList {
    /// Groups of rows.
    pub groups: Vec<GroupRows>,
    /// Alerts shown.
    pub shown: usize,
    /// Alerts the filter matched.
    pub matched: usize,
    /// Matched alerts left out past [`MAX_ROWS`] (the least severe and oldest).
    pub hidden: usize,
    /// Alerts there are before filtering.
    pub total: usize,
    /// The label grouped by.
    pub group: String,
    /// The query string that reproduces this list.
    pub query: String,
    /// When the list was made.
    pub at: String,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    p: Chrome,
    filter: String,
    filter_error: String,
    group: String,
    labels: Vec<String>,
    refresh: u32,
    list: AlertList,
}

#[derive(Template)]
#[template(path = "alert_list.html")]
struct AlertListFragment {
    p: Chrome,
    list: AlertList,
}

/// Every alert not yet resolved and every silence, from the alert manager.
pub async fn current(s: &Shared) -> Option<(Vec<AlertView>, Vec<SilenceView>)> {
    let alerts = ask(s, MQuery::Alerts).await?;
    let silences = ask(s, MQuery::Silences).await?;
    Some((alerts, silences))
}

/// `GET /`: the alert list.
pub async fn list(
    State(ui): State<Arc<Ui>>,
    Extension(v): Extension<Viewer>,
    Query(q): Query<ListQuery>,
) -> Response {
    let group = if q.group.is_empty() || !crate::manager::matcher::is_plain_name(&q.group) {
        "alertname".to_string()
    } else {
        q.group.clone()
    };
    let (matchers, filter_error) = match parse_matchers(&q.filter) {
        Ok(m) => (m, String::new()),
        Err(e) => (Vec::new(), format!("Not a matcher list: {e}")),
    };
    let Some((alerts, silences)) = current(&ui.shared).await else {
        return busy(&v);
    };
    let now = now_ns();
    let mut labels: BTreeSet<&str> = BTreeSet::new();
    let active: Vec<&AlertView> = alerts
        .iter()
        .filter(|a| !a.alert.resolved_at(now))
        .inspect(|a| labels.extend(a.alert.labels.keys()))
        .collect();
    let total = active.len();
    let shown = active
        .into_iter()
        .filter(|a| filter_error.is_empty() && matches_all(&matchers, &a.alert.labels));
    let mut rows: Vec<AlertRow> = view::rows(shown, &alerts, &silences, now);
    let matched = rows.len();
    let hidden = view::keep_worst(&mut rows, MAX_ROWS);
    let query =
        serde_urlencoded::to_string([("filter", &q.filter), ("group", &group)]).unwrap_or_default();
    let list = AlertList {
        shown: rows.len(),
        matched,
        hidden,
        groups: view::group(rows, &group),
        total,
        group: group.clone(),
        query,
        at: view::time(now),
    };
    let p = Chrome::new("Alerts", "alerts", &v);
    if q.fragment == "list" {
        return render(&AlertListFragment { p, list });
    }
    labels.insert("alertname");
    let status = if filter_error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    super::render_status(
        &AlertsPage {
            p,
            filter: q.filter,
            filter_error,
            group,
            labels: labels.into_iter().map(str::to_string).collect(),
            refresh: ui.shared.config.ui.refresh_seconds,
            list,
        },
        status,
    )
}

/// A level change of the alert, for the timeline.
pub struct Step {
    /// When.
    pub at: String,
    /// Level name.
    pub level: String,
    /// Colour class.
    pub class: &'static str,
    /// The event's message.
    pub message: String,
    /// Share of the timeline, percent.
    pub width: f64,
}

/// A notification that carried the alert.
pub struct Sent {
    /// When it was queued.
    pub at: String,
    /// The receiver (or the rule handler).
    pub receiver: String,
    /// Delivery kind.
    pub kind: String,
    /// Where it went.
    pub target: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i64,
    /// The last error.
    pub error: String,
}

#[derive(Template)]
#[template(path = "alert.html")]
struct AlertPage {
    p: Chrome,
    row: AlertRow,
    annotations: Vec<(String, String)>,
    source: String,
    rule: String,
    rule_source: String,
    generator: String,
    receivers: Vec<String>,
    steps: Vec<Step>,
    sent: Vec<Sent>,
    ended: String,
}

fn parse_fp(fp: &str) -> Option<u64> {
    u64::from_str_radix(fp, 16).ok()
}

/// The timeline of a rule alert's stored events (newest first in `events`).
fn steps(events: &[Value], now: i64) -> Vec<Step> {
    let mut points: Vec<(i64, String, String)> = events
        .iter()
        .filter_map(|e| {
            let t = DateTime::parse_from_rfc3339(e["time"].as_str()?)
                .ok()?
                .timestamp_nanos_opt()?;
            Some((
                t,
                e["level"].as_str().unwrap_or("").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            ))
        })
        .collect();
    points.sort_by_key(|p| p.0);
    let Some(first) = points.first().map(|p| p.0) else {
        return Vec::new();
    };
    let total = (now - first).max(1) as f64;
    let ends: Vec<i64> = points
        .iter()
        .skip(1)
        .map(|p| p.0)
        .chain(std::iter::once(now))
        .collect();
    points
        .into_iter()
        .zip(ends)
        .map(|((t, level, message), end)| Step {
            at: view::time(t),
            class: view::level_class(&level),
            level,
            message,
            width: (((end - t).max(0) as f64) / total * 1000.0).round() / 10.0,
        })
        .collect()
}

/// `GET /alerts/{fingerprint}`: one alert.
pub async fn detail(
    State(ui): State<Arc<Ui>>,
    Extension(v): Extension<Viewer>,
    Path(fp): Path<String>,
) -> Response {
    let s = &ui.shared;
    let Some(fpn) = parse_fp(&fp) else {
        return error_page(
            Some(&v),
            StatusCode::BAD_REQUEST,
            "That is not an alert fingerprint (16 hex digits).",
        );
    };
    let Some((alerts, silences)) = current(s).await else {
        return busy(&v);
    };
    let Some(a) = alerts.iter().find(|a| a.alert.fingerprint == fpn) else {
        return error_page(
            Some(&v),
            StatusCode::NOT_FOUND,
            "No such alert: it may have resolved and been forgotten.",
        );
    };
    let now = now_ns();
    let Some(row) = view::rows([a], &alerts, &silences, now).pop() else {
        return busy(&v);
    };
    let (source, rule, history) = match &a.alert.source {
        Source::Rule(r) => {
            let (rule, key) = (&r.rule, &r.key);
            let id = key.split_once('/').map_or(key.as_str(), |(_, id)| id);
            let events = s
                .storage
                .events_page(Some(rule), Some(id), 200, 0)
                .await
                .map(|(e, _)| e)
                .unwrap_or_default();
            (format!("rule {rule}"), rule.clone(), events)
        }
        Source::Api => (
            "posted to /api/v2/alerts".to_string(),
            String::new(),
            vec![],
        ),
        Source::Check => ("passive check".to_string(), String::new(), vec![]),
    };
    let rule_source = if rule.is_empty() {
        String::new()
    } else {
        s.rules()
            .into_iter()
            .find(|r| r.name == rule)
            .map(|r| r.source)
            .unwrap_or_default()
    };
    let sent = s
        .storage
        .notifications_page(None, Some(&row.fp), 50, 0)
        .await
        .map(|(n, _)| n)
        .unwrap_or_default()
        .into_iter()
        .map(|n| Sent {
            at: view::time(n.created_ns),
            receiver: n.receiver,
            kind: n.kind,
            target: n.target,
            status: n.status,
            attempts: n.attempts,
            error: n.last_error.unwrap_or_default(),
        })
        .collect();
    render(&AlertPage {
        p: Chrome::new(row.name.clone(), "alerts", &v),
        annotations: a
            .alert
            .annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        source,
        rule,
        rule_source,
        generator: a.alert.generator_url.clone(),
        receivers: a.receivers.clone(),
        steps: steps(&history, now),
        sent,
        ended: a.alert.ends_at.map(view::time).unwrap_or_default(),
        row,
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AckForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    comment: String,
}

/// `POST /alerts/{fingerprint}/ack`: silence exactly this alert until it resolves.
pub async fn ack(
    State(ui): State<Arc<Ui>>,
    Extension(v): Extension<Viewer>,
    Path(fp): Path<String>,
    body: Bytes,
) -> Response {
    let f: AckForm = match form(&body) {
        Some(f) => f,
        None => return bad_form(&v),
    };
    if let Some(r) = refuse_change(&v, &f.csrf) {
        return r;
    }
    let Some(fpn) = parse_fp(&fp) else {
        return error_page(
            Some(&v),
            StatusCode::BAD_REQUEST,
            "That is not an alert fingerprint.",
        );
    };
    let s = &ui.shared;
    let Some(alerts) = ask(s, MQuery::Alerts).await else {
        return busy(&v);
    };
    let now = now_ns();
    let Some(a) = alerts.iter().find(|a| a.alert.fingerprint == fpn) else {
        return error_page(Some(&v), StatusCode::NOT_FOUND, "No such alert.");
    };
    if a.alert.resolved_at(now) {
        return error_page(
            Some(&v),
            StatusCode::CONFLICT,
            "The alert has resolved; there is nothing to acknowledge.",
        );
    }
    let author = if v.name.is_empty() {
        "web UI".to_string()
    } else {
        v.name.clone()
    };
    let spec = crate::service::api_v1::ack_spec(a, author, f.comment, now);
    match request(s, |tx| Msg::SetSilence(None, spec, tx)).await {
        Some(Ok(_)) => Redirect::to(&format!("/alerts/{fp}")).into_response(),
        Some(Err(e)) => error_page(Some(&v), StatusCode::BAD_REQUEST, &e.to_string()),
        None => busy(&v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_timeline_spans_from_the_first_event_to_now() {
        let events = vec![
            json!({"time": "1970-01-01T00:00:30Z", "level": "OK", "message": "back"}),
            json!({"time": "1970-01-01T00:00:10Z", "level": "CRITICAL", "message": "hot"}),
        ];
        let s = steps(&events, 50_000_000_000);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].level, "CRITICAL");
        assert_eq!(s[0].class, "crit");
        assert_eq!(s[0].width, 50.0);
        assert_eq!(s[1].class, "ok");
        assert_eq!(s[1].width, 50.0);
        assert!(steps(&[], 1).is_empty());
    }
}
