//! The silence pages: active, pending and expired tabs; the form that creates a silence (from
//! scratch or from an alert, its matchers taken from the alert's labels) or edits one, with a
//! preview of the alerts it would silence and each mistake shown next to its field; expire.

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDateTime};
use serde::Deserialize;
use std::sync::Arc;

use super::session::Viewer;
use super::view::{self, AlertRow};
use super::{Chrome, Ui, bad_form, busy, error_page, form, refuse_change, render, render_status};
use crate::clock::now_ns;
use crate::manager::dispatch::{Msg, Query as MQuery, SilenceView};
use crate::manager::matcher::{Matcher, equality_text, is_plain_name, matches_all, parse_matchers};
use crate::manager::silence::{SilenceError, SilenceSpec, SilenceState};
use crate::service::am_api::{ask, request};

/// A silence as a row of its tab.
pub struct SilenceRow {
    /// Id.
    pub id: String,
    /// Matchers as text.
    pub matchers: Vec<String>,
    /// Start.
    pub starts: String,
    /// End.
    pub ends: String,
    /// Author.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// Alerts it mutes now.
    pub muting: usize,
    /// An acknowledgement (until the alert resolves).
    pub ack: bool,
    /// Recurring (a cron schedule).
    pub recurrence: String,
}

#[derive(Template)]
#[template(path = "silences.html")]
struct SilencesPage {
    p: Chrome,
    tab: &'static str,
    counts: [usize; 3],
    rows: Vec<SilenceRow>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TabQuery {
    state: String,
}

/// `GET /silences?state=active|pending|expired`.
pub async fn list(
    State(ui): State<Arc<Ui>>,
    Extension(v): Extension<Viewer>,
    Query(q): Query<TabQuery>,
) -> Response {
    let (tab, want) = match q.state.as_str() {
        "pending" => ("pending", SilenceState::Pending),
        "expired" => ("expired", SilenceState::Expired),
        _ => ("active", SilenceState::Active),
    };
    let Some((alerts, mut silences)) = super::alerts::current(&ui.shared).await else {
        return busy(&v);
    };
    let mut counts = [0usize; 3];
    for s in &silences {
        counts[match s.state {
            SilenceState::Active => 0,
            SilenceState::Pending => 1,
            SilenceState::Expired => 2,
        }] += 1;
    }
    silences.retain(|s| s.state == want);
    // Active by end, pending by start, expired latest end first.
    match want {
        SilenceState::Active => silences.sort_by_key(|s| s.spec.ends_at),
        SilenceState::Pending => silences.sort_by_key(|s| s.spec.starts_at),
        SilenceState::Expired => silences.sort_by_key(|s| std::cmp::Reverse(s.spec.ends_at)),
    }
    let rows = silences
        .iter()
        .map(|s| SilenceRow {
            id: s.id.clone(),
            matchers: s.spec.matchers.clone(),
            starts: view::time(s.spec.starts_at),
            ends: view::time(s.spec.ends_at),
            created_by: s.spec.created_by.clone(),
            comment: s.spec.comment.clone(),
            muting: alerts
                .iter()
                .filter(|a| a.silenced_by.contains(&s.id))
                .count(),
            ack: s.spec.until_resolved.is_some(),
            recurrence: s.spec.recurrence.clone().unwrap_or_default(),
        })
        .collect();
    render(&SilencesPage {
        p: Chrome::new("Silences", "silences", &v),
        tab,
        counts,
        rows,
    })
}

/// What the silence form holds (also its POST body).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct SilenceForm {
    /// Matchers in Alertmanager's list syntax.
    pub matchers: String,
    /// Start (`now`, RFC 3339 or `YYYY-MM-DD HH:MM` in UTC).
    pub starts: String,
    /// Duration from the start (`2h`); the end is computed from it when `ends` is empty.
    pub duration: String,
    /// End (as `starts`), instead of a duration. Both given must agree.
    pub ends: String,
    /// Author.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// `preview` shows the alerts it would silence without saving.
    pub action: String,
    #[serde(rename = "_csrf")]
    csrf: String,
}

/// Mistakes by field.
#[derive(Debug, Default)]
pub struct FieldErrors {
    /// In `matchers`.
    pub matchers: String,
    /// In `starts`.
    pub starts: String,
    /// In `duration` or `ends`.
    pub ends: String,
    /// In `created_by`.
    pub created_by: String,
    /// In `comment`.
    pub comment: String,
    /// Not tied to a field.
    pub general: String,
}

impl FieldErrors {
    fn any(&self) -> bool {
        !(self.matchers.is_empty()
            && self.starts.is_empty()
            && self.ends.is_empty()
            && self.created_by.is_empty()
            && self.comment.is_empty()
            && self.general.is_empty())
    }
}

#[derive(Template)]
#[template(path = "silence_form.html")]
struct FormPage {
    p: Chrome,
    /// The silence edited (empty: a new one).
    id: String,
    f: SilenceForm,
    errors: FieldErrors,
    preview: Preview,
}

/// The alerts a silence's matchers would mute now.
pub struct Preview {
    /// Whether the matchers were given and parse.
    pub valid: bool,
    /// The alerts.
    pub alerts: Vec<AlertRow>,
}

#[derive(Template)]
#[template(path = "silence_preview.html")]
struct PreviewFragment {
    preview: Preview,
}

/// Reads a time as typed in the form: empty or `now`, RFC 3339, or `YYYY-MM-DD HH:MM[:SS]`
/// (also with `T`) in UTC.
pub fn parse_time_input(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return t
            .timestamp_nanos_opt()
            .ok_or_else(|| "out of range".to_string());
    }
    let plain = s.trim_end_matches(" UTC").trim_end_matches('Z');
    for f in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(plain, f) {
            return t
                .and_utc()
                .timestamp_nanos_opt()
                .ok_or_else(|| "out of range".to_string());
        }
    }
    Err(format!(
        "'{s}' is not a time: write now, 2026-11-22 14:00 (UTC) or an RFC 3339 time"
    ))
}

/// A length in nanoseconds as a duration the form reads back (`1d2h30m15s`), to the second
/// (rounded up, so a silence never gets shorter by being edited).
pub fn duration_text(ns: i64) -> String {
    let mut secs = (ns.max(0) as u64).div_ceil(1_000_000_000);
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    out
}

/// Parses the matchers field; the message names the problem.
fn matchers_of(text: &str) -> Result<Vec<Matcher>, String> {
    let ms = parse_matchers(text).map_err(|e| e.to_string())?;
    if ms.is_empty() {
        return Err("at least one matcher is needed, such as alertname=\"DiskFull\"".into());
    }
    if let Some(m) = ms.iter().find(|m| !is_plain_name(&m.name)) {
        return Err(format!(
            "'{}' is not a label name (letters, digits and _, not starting with a digit)",
            m.name
        ));
    }
    if ms.iter().all(Matcher::matches_empty) {
        return Err("these matchers would silence every alert; add one that needs a value".into());
    }
    Ok(ms)
}

/// Checks the form; `Ok` with the silence to save, or the mistakes by field.
pub fn validate(f: &SilenceForm, now: i64) -> Result<SilenceSpec, Box<FieldErrors>> {
    let mut e = FieldErrors::default();
    let matchers = matchers_of(&f.matchers).unwrap_or_else(|m| {
        e.matchers = m;
        Vec::new()
    });
    let starts = parse_time_input(&f.starts, now).unwrap_or_else(|m| {
        e.starts = m;
        now
    });
    // The end: from the duration, or typed. Both may be given only when they agree, so that a
    // typed value is never silently ignored in favour of the other.
    let by_duration = if f.duration.trim().is_empty() {
        None
    } else {
        match crate::manager::route::parse_duration(f.duration.trim()) {
            Ok(d) if d.is_zero() => {
                e.ends = "the duration must be longer than zero".into();
                None
            }
            Ok(d) => match i64::try_from(d.as_nanos()) {
                Ok(n) if starts.checked_add(n).is_some() => Some(starts + n),
                _ => {
                    e.ends = format!("the duration {} is too long", f.duration.trim());
                    None
                }
            },
            Err(err) => {
                e.ends = format!("{err} (write e.g. 2h, 1h30m or 3d)");
                None
            }
        }
    };
    let typed_end = if f.ends.trim().is_empty() {
        None
    } else {
        parse_time_input(&f.ends, now).map_err(|m| e.ends = m).ok()
    };
    let ends = match (by_duration, typed_end) {
        (Some(d), Some(t)) if d != t => {
            e.ends = format!(
                "the duration {} ends at {}, not at the end given ({}): clear one of them",
                f.duration.trim(),
                view::time(d),
                view::time(t)
            );
            starts
        }
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) if e.ends.is_empty() => {
            e.ends = "give a duration (such as 2h) or an end".into();
            starts
        }
        (None, None) => starts,
    };
    if e.starts.is_empty() && e.ends.is_empty() {
        if ends <= starts {
            e.ends = "the end must be after the start".into();
        } else if ends <= now {
            e.ends = "the end is in the past".into();
        }
    }
    if f.created_by.trim().is_empty() {
        e.created_by = "say who creates the silence".into();
    }
    if f.comment.trim().is_empty() {
        e.comment = "say why the alerts are silenced".into();
    }
    if e.any() {
        return Err(Box::new(e));
    }
    Ok(SilenceSpec {
        matchers: matchers.iter().map(ToString::to_string).collect(),
        starts_at: starts,
        ends_at: ends,
        created_by: f.created_by.trim().to_string(),
        comment: f.comment.trim().to_string(),
        recurrence: None,
        duration_ns: None,
        location: None,
        until_resolved: None,
    })
}

/// The alerts `text`'s matchers mute now.
async fn preview_of(ui: &Ui, text: &str) -> Option<Preview> {
    let Ok(ms) = matchers_of(text) else {
        return Some(Preview {
            valid: false,
            alerts: Vec::new(),
        });
    };
    let (alerts, silences) = super::alerts::current(&ui.shared).await?;
    let now = now_ns();
    let hit = alerts
        .iter()
        .filter(|a| !a.alert.resolved_at(now) && matches_all(&ms, &a.alert.labels));
    Some(Preview {
        valid: true,
        alerts: view::rows(hit, &alerts, &silences, now),
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewQuery {
    /// An alert's fingerprint: its labels become the matchers.
    from: String,
    /// Matchers to start from.
    matchers: String,
}

/// `GET /silences/new[?from=fingerprint]`.
pub async fn new_form(
    State(ui): State<Arc<Ui>>,
    Extension(v): Extension<Viewer>,
    Query(q): Query<NewQuery>,
) -> Response {
    let mut matchers = q.matchers;
    if !q.from.is_empty() {
        let Some(alerts) = ask(&ui.shared, MQuery::Alerts).await else {
            return busy(&v);
        };
        let fp = u64::from_str_radix(&q.from, 16).ok();
        match alerts.iter().find(|a| Some(a.alert.fingerprint) == fp) {
            Some(a) => {
                matchers = a
                    .alert
                    .labels
                    .iter()
                    .map(|(k, val)| equality_text(k, val))
                    .collect::<Vec<_>>()
                    .join(", ");
            }
            None => {
                return error_page(
                    Some(&v),
                    StatusCode::NOT_FOUND,
                    "No such alert to silence: it may have resolved.",
                );
            }
        }
    }
    let f = SilenceForm {
        matchers,
        starts: "now".into(),
        duration: "2h".into(),
        created_by: v.name.clone(),
        ..SilenceForm::default()
    };
    let Some(preview) = preview_of(&ui, &f.matchers).await else {
        return busy(&v);
    };
    let preview = if f.matchers.is_empty() {
        Preview {
            valid: false,
            alerts: Vec::new(),
        }
    } else {
        preview
    };
    render(&FormPage {
        p: Chrome::new("New silence", "silences", &v),
        id: String::new(),
        f,
        errors: FieldErrors::default(),
        preview,
    })
}

/// Saves (or previews) the form; `id` is the silence edited.
async fn save(ui: &Ui, v: &Viewer, id: Option<String>, body: &Bytes) -> Response {
    let f: SilenceForm = match form(body) {
        Some(f) => f,
        None => return bad_form(v),
    };
    if let Some(r) = refuse_change(v, &f.csrf) {
        return r;
    }
    let now = now_ns();
    let title = if id.is_some() {
        "Edit silence"
    } else {
        "New silence"
    };
    let page = |f: SilenceForm, errors: FieldErrors, preview: Preview| FormPage {
        p: Chrome::new(title, "silences", v),
        id: id.clone().unwrap_or_default(),
        f,
        errors,
        preview,
    };
    let Some(preview) = preview_of(ui, &f.matchers).await else {
        return busy(v);
    };
    let mut spec = match validate(&f, now) {
        Err(errors) => {
            return render_status(&page(f, *errors, preview), StatusCode::BAD_REQUEST);
        }
        Ok(s) => s,
    };
    if f.action == "preview" {
        return render(&page(f, FieldErrors::default(), preview));
    }
    // An edit keeps what the form does not show (a schedule, an acknowledgement).
    if let Some(id) = &id {
        let Some(all) = ask(&ui.shared, MQuery::Silences).await else {
            return busy(v);
        };
        if let Some(old) = all.iter().find(|s| &s.id == id) {
            spec.recurrence = old.spec.recurrence.clone();
            spec.duration_ns = old.spec.duration_ns;
            spec.location = old.spec.location.clone();
            spec.until_resolved = old.spec.until_resolved.clone();
        }
    }
    match request(&ui.shared, |tx| Msg::SetSilence(id.clone(), spec, tx)).await {
        Some(Ok(new_id)) => {
            tracing::info!(silence = %new_id, by = %v.name, "Silence saved from the web UI.");
            Redirect::to("/silences").into_response()
        }
        Some(Err(e)) => {
            let mut errors = FieldErrors::default();
            match &e {
                SilenceError::Matcher { .. } | SilenceError::MatchesEverything => {
                    errors.matchers = e.to_string()
                }
                SilenceError::EndBeforeStart => errors.ends = e.to_string(),
                _ => errors.general = e.to_string(),
            }
            render_status(&page(f, errors, preview), StatusCode::BAD_REQUEST)
        }
        None => busy(v),
    }
}

/// `POST /silences/new`.
pub async fn save_new(
    State(ui): State<Arc<Ui>>,
    Extension(v): Extension<Viewer>,
    body: Bytes,
) -> Response {
    save(&ui, &v, None, &body).await
}

/// `POST /silences/{id}/edit`.
pub async fn save_edit(
    State(ui): State<Arc<Ui>>,
    Extension(v): Extension<Viewer>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    save(&ui, &v, Some(id), &body).await
}

fn find(all: &[SilenceView], id: &str) -> Option<SilenceView> {
    all.iter().find(|s| s.id == id).cloned()
}

/// `GET /silences/{id}/edit`.
pub async fn edit_form(
    State(ui): State<Arc<Ui>>,
    Extension(v): Extension<Viewer>,
    Path(id): Path<String>,
) -> Response {
    let Some(all) = ask(&ui.shared, MQuery::Silences).await else {
        return busy(&v);
    };
    let Some(s) = find(&all, &id) else {
        return error_page(Some(&v), StatusCode::NOT_FOUND, "No such silence.");
    };
    // The length is shown as a duration, so typing another one changes the end; an end may be
    // typed instead (after clearing the duration).
    let starts = s.spec.starts_at.div_euclid(1_000_000_000) * 1_000_000_000;
    let f = SilenceForm {
        matchers: s.spec.matchers.join(", "),
        starts: view::time(starts),
        duration: duration_text(s.spec.ends_at.saturating_sub(starts)),
        created_by: s.spec.created_by.clone(),
        comment: s.spec.comment.clone(),
        ..SilenceForm::default()
    };
    let Some(preview) = preview_of(&ui, &f.matchers).await else {
        return busy(&v);
    };
    render(&FormPage {
        p: Chrome::new("Edit silence", "silences", &v),
        id,
        f,
        errors: FieldErrors::default(),
        preview,
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PreviewQuery {
    matchers: String,
}

/// `GET /silences/preview?matchers=...`: the preview alone, for the form's script.
pub async fn preview(
    State(ui): State<Arc<Ui>>,
    Extension(v): Extension<Viewer>,
    Query(q): Query<PreviewQuery>,
) -> Response {
    match preview_of(&ui, &q.matchers).await {
        Some(preview) => render(&PreviewFragment { preview }),
        None => busy(&v),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ExpireForm {
    #[serde(rename = "_csrf")]
    csrf: String,
}

/// `POST /silences/{id}/expire`.
pub async fn expire(
    State(ui): State<Arc<Ui>>,
    Extension(v): Extension<Viewer>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let f: ExpireForm = match form(&body) {
        Some(f) => f,
        None => return bad_form(&v),
    };
    if let Some(r) = refuse_change(&v, &f.csrf) {
        return r;
    }
    match request(&ui.shared, |tx| Msg::ExpireSilence(id.clone(), tx)).await {
        Some(Ok(())) => {
            tracing::info!(silence = %id, by = %v.name, "Silence expired from the web UI.");
            Redirect::to("/silences?state=expired").into_response()
        }
        Some(Err(e)) => error_page(Some(&v), StatusCode::NOT_FOUND, &e.to_string()),
        None => busy(&v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000_000_000_000;

    fn form(matchers: &str, duration: &str) -> SilenceForm {
        SilenceForm {
            matchers: matchers.into(),
            starts: "now".into(),
            duration: duration.into(),
            created_by: "ops".into(),
            comment: "disk swap".into(),
            ..SilenceForm::default()
        }
    }

    #[test]
    fn a_good_form_becomes_a_silence() {
        let s = validate(&form("alertname=\"Disk\", host=~\"node0.*\"", "2h"), NOW).unwrap();
        assert_eq!(s.matchers, ["alertname=\"Disk\"", "host=~\"node0.*\""]);
        assert_eq!(s.starts_at, NOW);
        assert_eq!(s.ends_at, NOW + 7_200_000_000_000);
        let mut f = form("{host=\"a\"}", "");
        f.starts = "2027-01-01 10:00".into();
        f.ends = "2027-01-01T12:30:00Z".into();
        let s = validate(&f, NOW).unwrap();
        assert_eq!(s.ends_at - s.starts_at, 9_000_000_000_000);
    }

    #[test]
    fn mistakes_are_named_by_field() {
        let mut f = form("host=~", "soon");
        f.created_by = " ".into();
        f.comment.clear();
        let e = validate(&f, NOW).unwrap_err();
        assert!(e.matchers.contains("every alert"), "{}", e.matchers);
        assert!(e.ends.contains("soon"), "{}", e.ends);
        assert!(!e.created_by.is_empty() && !e.comment.is_empty());
        assert!(e.starts.is_empty());

        let e = validate(&form("host=\"a", "1h"), NOW).unwrap_err();
        assert!(!e.matchers.is_empty());
        let e = validate(&form("", "1h"), NOW).unwrap_err();
        assert!(e.matchers.contains("at least one"));
        let mut f = form("host=\"a\"", "");
        f.ends = "2001-01-01 00:00".into();
        let e = validate(&f, NOW).unwrap_err();
        assert!(e.ends.contains("after the start"), "{}", e.ends);
        let mut f = form("host=\"a\"", "");
        f.starts = "yesterday".into();
        assert!(validate(&f, NOW).unwrap_err().starts.contains("yesterday"));
    }

    #[test]
    fn a_duration_and_an_end_must_agree() {
        // Both typed and different: named, never one silently preferred.
        let mut f = form("host=\"a\"", "3h");
        f.ends = "2099-01-01 00:00".into();
        let e = validate(&f, NOW).unwrap_err();
        assert!(e.ends.contains("clear one of them"), "{}", e.ends);
        // Both typed and the same end: fine.
        let mut f = form("host=\"a\"", "1h");
        f.starts = "2099-01-01 00:00".into();
        f.ends = "2099-01-01 01:00".into();
        assert!(validate(&f, NOW).is_ok());
        // Neither: asked for.
        let e = validate(&form("host=\"a\"", ""), NOW).unwrap_err();
        assert!(e.ends.contains("give a duration"), "{}", e.ends);
        // Too long for the clock: an error, not an overflow.
        let e = validate(&form("host=\"a\"", "300000y"), NOW).unwrap_err();
        assert!(e.ends.contains("too long"), "{}", e.ends);
    }

    #[test]
    fn durations_are_written_back_readably() {
        assert_eq!(duration_text(7_200_000_000_000), "2h");
        assert_eq!(duration_text(93_615_000_000_000), "1d2h15s");
        assert_eq!(duration_text(1), "1s", "rounded up, never shorter");
        assert_eq!(duration_text(0), "0s");
        for ns in [7_200_000_000_000i64, 93_615_000_000_000, 59_000_000_000] {
            let back = crate::manager::route::parse_duration(&duration_text(ns)).unwrap();
            assert_eq!(back.as_nanos() as i64, ns);
        }
    }
}
