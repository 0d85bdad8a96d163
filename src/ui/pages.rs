//! The status pages: rules (status, load errors, counters, source), passive checks (state,
//! SOFT/HARD, last result, freshness) and hosts (last seen, sources, retire with confirmation).

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::DateTime;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

use super::session::Viewer;
use super::view;
use super::{Chrome, Ui, bad_form, busy, error_page, form, refuse_change, render};
use crate::clock::now_ns;
use crate::service::checks::CheckMsg;
use crate::service::engine_thread::RuleStatus;
use crate::service::hosts::HostMsg;

/// A rule as a row.
pub struct RuleRow {
    /// The rule.
    pub r: RuleStatus,
    /// Events by level: OK, INFO, WARNING, CRITICAL.
    pub events: String,
}

#[derive(Template)]
#[template(path = "rules.html")]
struct RulesPage {
    p: Chrome,
    rules: Vec<RuleRow>,
}

fn row(r: RuleStatus) -> RuleRow {
    let e = r.stats.events;
    RuleRow {
        events: format!("{} / {} / {} / {}", e[0], e[1], e[2], e[3]),
        r,
    }
}

/// `GET /rules`.
pub async fn rules(State(ui): State<Arc<Ui>>, Extension(v): Extension<Viewer>) -> Response {
    let mut rules = ui.shared.rules();
    rules.sort_by(|a, b| a.name.cmp(&b.name));
    render(&RulesPage {
        p: Chrome::new("Rules", "rules", &v),
        rules: rules.into_iter().map(row).collect(),
    })
}

/// An alert of a rule as stored.
pub struct RuleAlert {
    /// The alert's id.
    pub id: String,
    /// Its level.
    pub level: String,
    /// Colour class.
    pub class: &'static str,
    /// Its last message.
    pub message: String,
}

#[derive(Template)]
#[template(path = "rule.html")]
struct RulePage {
    p: Chrome,
    rule: RuleRow,
    alerts: Vec<RuleAlert>,
}

/// `GET /rules/{name}`.
pub async fn rule(
    State(ui): State<Arc<Ui>>,
    Extension(v): Extension<Viewer>,
    Path(name): Path<String>,
) -> Response {
    let Some(r) = ui.shared.rules().into_iter().find(|r| r.name == name) else {
        return error_page(Some(&v), StatusCode::NOT_FOUND, "No such rule.");
    };
    let alerts = ui
        .shared
        .storage
        .alert_states()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.task == name)
        .map(|a| {
            let level = a.level.as_str().to_string();
            RuleAlert {
                id: a.alert_id,
                class: view::level_class(&level),
                level,
                message: a.message,
            }
        })
        .collect();
    render(&RulePage {
        p: Chrome::new(format!("Rule {name}"), "rules", &v),
        rule: row(r),
        alerts,
    })
}

/// A passive check as the check task lists it.
#[derive(Debug, Deserialize)]
pub struct CheckRow {
    /// Host.
    pub host: String,
    /// Service (none: the host check).
    pub service: Option<String>,
    /// State name (OK, WARNING, ..., UP, DOWN).
    pub state: String,
    /// SOFT or HARD.
    pub state_type: String,
    /// Attempt of a SOFT state.
    pub attempt: u32,
    /// Plugin output's first line.
    #[serde(default)]
    pub summary: String,
    /// Last result, RFC 3339.
    pub last_result: String,
    /// Expected interval.
    pub interval_seconds: Option<i64>,
    /// Past its interval.
    #[serde(default)]
    pub stale: bool,
    /// Flapping.
    #[serde(default)]
    pub flapping: bool,
    /// Filled in for the page: how long ago the last result came.
    #[serde(skip)]
    pub ago: String,
    /// Filled in for the page: colour class.
    #[serde(skip)]
    pub class: &'static str,
}

#[derive(Template)]
#[template(path = "checks.html")]
struct ChecksPage {
    p: Chrome,
    checks: Vec<CheckRow>,
}

fn ns_of(rfc3339: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(rfc3339)
        .ok()?
        .timestamp_nanos_opt()
}

async fn ask_task<T>(
    send: impl std::future::Future<Output = bool>,
    rx: oneshot::Receiver<T>,
) -> Option<T> {
    if !send.await {
        return None;
    }
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .ok()?
        .ok()
}

/// `GET /checks`.
pub async fn checks(State(ui): State<Arc<Ui>>, Extension(v): Extension<Viewer>) -> Response {
    let (tx, rx) = oneshot::channel();
    let send = async { ui.shared.checks.send(CheckMsg::List(tx)).await.is_ok() };
    let Some(items) = ask_task(send, rx).await else {
        return busy(&v);
    };
    let now = now_ns();
    let checks = items
        .into_iter()
        .filter_map(|i| serde_json::from_value::<CheckRow>(i).ok())
        .map(|mut c| {
            c.ago = ns_of(&c.last_result).map_or_else(String::new, |t| view::span(now - t));
            c.class = view::level_class(&c.state);
            c
        })
        .collect();
    render(&ChecksPage {
        p: Chrome::new("Checks", "checks", &v),
        checks,
    })
}

/// A host as a row.
pub struct HostRow {
    /// Name.
    pub name: String,
    /// First seen.
    pub first_seen: String,
    /// How long since it was last seen.
    pub ago: String,
    /// `metrics`, `checks`.
    pub sources: String,
}

#[derive(Template)]
#[template(path = "hosts.html")]
struct HostsPage {
    p: Chrome,
    hosts: Vec<HostRow>,
    notice: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct HostsQuery {
    /// A host just retired from this page, shown in a notice...
    retired: String,
    /// ...when this is the UI's signature of it (so a link cannot make the page say anything).
    sig: String,
}

/// `GET /hosts`.
pub async fn hosts(
    State(ui): State<Arc<Ui>>,
    Extension(v): Extension<Viewer>,
    Query(q): Query<HostsQuery>,
) -> Response {
    let (tx, rx) = oneshot::channel();
    let send = async { ui.shared.hosts.send(HostMsg::List(tx)).await.is_ok() };
    let Some(items) = ask_task(send, rx).await else {
        return busy(&v);
    };
    let now = now_ns();
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let mut hosts: Vec<HostRow> = items
        .iter()
        .map(|h| HostRow {
            name: text(h, "name"),
            first_seen: ns_of(&text(h, "first_seen")).map_or_else(String::new, view::time),
            ago: ns_of(&text(h, "last_seen")).map_or_else(String::new, |t| view::span(now - t)),
            sources: h["sources"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
        })
        .collect();
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    let notice = if q.retired.is_empty() || !ui.signer.verify("retired", &q.retired, &q.sig) {
        String::new()
    } else {
        format!(
            "{} was retired: its alerts resolved and its state was freed.",
            q.retired
        )
    };
    render(&HostsPage {
        p: Chrome::new("Hosts", "hosts", &v),
        hosts,
        notice,
    })
}

#[derive(Template)]
#[template(path = "host_retire.html")]
struct RetirePage {
    p: Chrome,
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RetireQuery {
    /// The host's name. A query parameter rather than a path segment, so that any name works
    /// (`..` or `a/b` in a path would be read as a different path).
    host: String,
}

/// `GET /hosts/retire?host=NAME`: the confirmation.
pub async fn retire_confirm(
    Extension(v): Extension<Viewer>,
    Query(RetireQuery { host: name }): Query<RetireQuery>,
) -> Response {
    if name.is_empty() {
        return error_page(
            Some(&v),
            StatusCode::BAD_REQUEST,
            "Name the host to retire.",
        );
    }
    render(&RetirePage {
        p: Chrome::new(format!("Retire {name}"), "hosts", &v),
        name,
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RetireForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    host: String,
}

/// `POST /hosts/retire` (form field `host`).
pub async fn retire(
    State(ui): State<Arc<Ui>>,
    Extension(v): Extension<Viewer>,
    body: Bytes,
) -> Response {
    let f: RetireForm = match form(&body) {
        Some(f) => f,
        None => return bad_form(&v),
    };
    if let Some(r) = refuse_change(&v, &f.csrf) {
        return r;
    }
    let name = f.host;
    let (tx, rx) = oneshot::channel();
    let send = async {
        ui.shared
            .hosts
            .send(HostMsg::Retire(name.clone(), tx))
            .await
            .is_ok()
    };
    match ask_task(send, rx).await {
        Some(Some(_)) => {
            tracing::info!(host = %name, by = %v.name, "Host retired from the web UI.");
            let sig = ui.signer.sign("retired", &name);
            let q = serde_urlencoded::to_string([("retired", &name), ("sig", &sig)])
                .unwrap_or_default();
            Redirect::to(&format!("/hosts?{q}")).into_response()
        }
        Some(None) => error_page(Some(&v), StatusCode::NOT_FOUND, "No such host."),
        None => busy(&v),
    }
}
