//! The web UI served at `/`: the on-call operator's pages for alerts, silences, rules, passive
//! checks and hosts.
//!
//! Pages are rendered on the server from askama templates (`src/ui/templates/`, every value
//! HTML-escaped), so every essential action is a plain form that works without JavaScript; the
//! one script (`static/app.js`) only refreshes the alert list in place and previews a silence
//! while it is typed. Nothing is loaded from elsewhere: the stylesheet and script are compiled
//! into the binary. Sessions, sign-in and CSRF tokens are in [`session`]; the pages are in
//! [`alerts`], [`silences`] and [`pages`].

pub mod alerts;
pub mod pages;
pub mod session;
pub mod silences;
pub mod view;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Scope;
use crate::service::Shared;
use crate::service::auth::Need;
use crate::service::metrics::AuthLabel;
use session::{Sessions, Signer, Viewer};

/// Settings of the web UI (`[ui]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// A signed-in session not used for this long ends; the operator signs in again.
    #[serde(with = "crate::config::duration_str")]
    pub session_ttl: Duration,
    /// Sessions held at most; past it the least recently used ends first.
    pub max_sessions: usize,
    /// Seconds between refreshes of the alert list (in place by script, or by reloading the
    /// page every three times as long without script); `0` turns refreshing off.
    pub refresh_seconds: u32,
    /// Whether the session cookie is `Secure` (and named `__Host-alertd_session`). Unset, it
    /// follows `http.tls_cert`; set it to `true` when a TLS-terminating proxy serves the UI
    /// over HTTPS while alertd itself speaks plain HTTP.
    pub secure_cookies: Option<bool>,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            session_ttl: Duration::from_secs(12 * 3600),
            max_sessions: 10_000,
            refresh_seconds: 10,
            secure_cookies: None,
        }
    }
}

/// The UI's state: the service and the sessions.
pub struct Ui {
    /// The service.
    pub shared: Arc<Shared>,
    /// Signed-in browsers.
    pub sessions: Sessions,
    /// Anonymous visitors' CSRF tokens and the notices shown after a change.
    pub signer: Signer,
    /// Cookies get `Secure` and the `__Host-` name (the UI is reached over HTTPS).
    secure: bool,
}

/// The largest form the UI reads; its forms are a few hundred bytes.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// The page frame every template shares: title, the active tab and the viewer.
pub struct Chrome {
    /// Page title.
    pub title: String,
    /// Active tab: `alerts`, `silences`, `rules`, `checks` or `hosts`.
    pub nav: &'static str,
    /// Who is looking.
    pub viewer: Viewer,
}

impl Chrome {
    /// A frame for `viewer`.
    pub fn new(title: impl Into<String>, nav: &'static str, viewer: &Viewer) -> Chrome {
        Chrome {
            title: title.into(),
            nav,
            viewer: viewer.clone(),
        }
    }
}

/// Whether the UI serves `path` (the auth middleware then leaves it to the UI's sessions).
pub fn owns(path: &str) -> bool {
    if path == "/" || path.starts_with("/static/") {
        return true;
    }
    [
        "/alerts",
        "/silences",
        "/rules",
        "/checks",
        "/hosts",
        "/login",
        "/logout",
    ]
    .iter()
    .any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The UI's routes, to merge into the service's router.
pub fn router<S: Clone + Send + Sync + 'static>(shared: Arc<Shared>) -> Router<S> {
    let cfg = &shared.config.ui;
    let ui = Arc::new(Ui {
        sessions: Sessions::new(cfg.session_ttl, cfg.max_sessions),
        signer: Signer::new(),
        secure: cfg
            .secure_cookies
            .unwrap_or(shared.config.http.tls_cert.is_some()),
        shared,
    });
    Router::new()
        .route("/", get(alerts::list))
        .route("/alerts/{fingerprint}", get(alerts::detail))
        .route("/alerts/{fingerprint}/ack", post(alerts::ack))
        .route("/silences", get(silences::list))
        .route(
            "/silences/new",
            get(silences::new_form).post(silences::save_new),
        )
        .route("/silences/preview", get(silences::preview))
        .route(
            "/silences/{id}/edit",
            get(silences::edit_form).post(silences::save_edit),
        )
        .route("/silences/{id}/expire", post(silences::expire))
        .route("/rules", get(pages::rules))
        .route("/rules/{name}", get(pages::rule))
        .route("/checks", get(pages::checks))
        .route("/hosts", get(pages::hosts))
        .route(
            "/hosts/retire",
            get(pages::retire_confirm).post(pages::retire),
        )
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/static/style.css", get(style))
        .route("/static/app.js", get(script))
        .layer(axum::middleware::from_fn_with_state(ui.clone(), sessions))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(ui)
}

/// Headers every UI answer carries: no inline script may run, no framing, no sniffing.
fn harden(r: &mut Response, cache: bool) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !cache {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Whether a state-changing request comes from another site's page: the browser says so in
/// `Sec-Fetch-Site`, or (older browsers) its `Origin` is not this host. A request with neither
/// header is not from a browser's cross-site form and is left to the CSRF token. This also
/// stops a foreign page from signing a browser in with the foreign page's token.
fn cross_site(h: &axum::http::HeaderMap) -> bool {
    if let Some(site) = h.get("sec-fetch-site") {
        return site.as_bytes() != b"same-origin";
    }
    let Some(origin) = h.get(header::ORIGIN) else {
        return false;
    };
    let o = origin.as_bytes();
    let rest = o
        .strip_prefix(b"https://")
        .or_else(|| o.strip_prefix(b"http://"));
    match (rest, h.get(header::HOST)) {
        (Some(rest), Some(host)) => !rest.eq_ignore_ascii_case(host.as_bytes()),
        _ => true,
    }
}

/// The session middleware: refuses state changes sent from other sites, finds the browser's
/// session (signed in, or anonymous when no token is configured), sends a browser without one
/// to the sign-in page, and hardens every answer.
async fn sessions(State(ui): State<Arc<Ui>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path.starts_with("/static/") {
        let mut r = next.run(req).await;
        harden(&mut r, true);
        return r;
    }
    let reading = matches!(*req.method(), Method::GET | Method::HEAD);
    if !reading && cross_site(req.headers()) {
        tracing::warn!(path, "Web UI form sent from another site refused.");
        let mut r = error_page(
            None,
            StatusCode::FORBIDDEN,
            "This form was sent from another site's page, so it was refused. Use alertd's own pages.",
        );
        harden(&mut r, false);
        return r;
    }
    let cookie = session::cookie_id(req.headers(), session::cookie_name(ui.secure));
    let mut set_cookie = None;
    let viewer = if ui.shared.auth.enabled() {
        cookie.and_then(|id| ui.sessions.get(&id))
    } else {
        let id = match cookie {
            Some(id) if session::well_formed(&id) => id,
            _ => {
                let id = session::random_hex();
                set_cookie = Some(session::set_cookie(&id, ui.secure));
                id
            }
        };
        Some(ui.signer.anonymous(id))
    };
    let mut r = match viewer {
        Some(v) => {
            req.extensions_mut().insert(v);
            next.run(req).await
        }
        None if path == "/login" => next.run(req).await,
        None if reading => {
            let target = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            let q = serde_urlencoded::to_string([("next", target)]).unwrap_or_default();
            Redirect::to(&format!("/login?{q}")).into_response()
        }
        None => error_page(
            None,
            StatusCode::UNAUTHORIZED,
            "Your session has ended. Sign in again and repeat the action.",
        ),
    };
    if let Some(c) = set_cookie
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    harden(&mut r, false);
    r
}

/// Renders a template, or a plain 500 when it cannot be (a bug, logged).
pub fn render(t: &impl Template) -> Response {
    render_status(t, StatusCode::OK)
}

/// As [`render`], with a status.
pub fn render_status(t: &impl Template, status: StatusCode) -> Response {
    match t.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "Rendering a page failed.");
            (StatusCode::INTERNAL_SERVER_ERROR, "page rendering failed").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    p: Chrome,
    status: u16,
    message: String,
}

/// An error page naming the problem.
pub fn error_page(viewer: Option<&Viewer>, status: StatusCode, message: &str) -> Response {
    let nobody = Viewer::nobody();
    let v = viewer.unwrap_or(&nobody);
    render_status(
        &ErrorPage {
            p: Chrome::new(status.canonical_reason().unwrap_or("Error"), "", v),
            status: status.as_u16(),
            message: message.to_string(),
        },
        status,
    )
}

/// Why a state-changing form is refused before it is looked at.
pub fn refuse_change(v: &Viewer, csrf: &str) -> Option<Response> {
    if !v.csrf_ok(csrf) {
        return Some(error_page(
            Some(v),
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or wrong, so the change was refused. Reload the page and try again.",
        ));
    }
    if !v.admin {
        return Some(error_page(
            Some(v),
            StatusCode::FORBIDDEN,
            "Your token has the read scope only; this change needs an admin token.",
        ));
    }
    None
}

/// Reads a URL-encoded form body into `T`; `None` when it does not parse (see [`bad_form`]).
pub fn form<T: serde::de::DeserializeOwned>(body: &Bytes) -> Option<T> {
    serde_urlencoded::from_bytes(body).ok()
}

/// The 400 page for a form body that does not parse.
pub fn bad_form(v: &Viewer) -> Response {
    error_page(
        Some(v),
        StatusCode::BAD_REQUEST,
        "The form could not be read: send it from the page's own form.",
    )
}

/// The answer when the alert manager or another task does not answer in time.
pub fn busy(v: &Viewer) -> Response {
    error_page(
        Some(v),
        StatusCode::SERVICE_UNAVAILABLE,
        "alertd is busy and did not answer in time; reload the page in a moment.",
    )
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    p: Chrome,
    next: String,
    error: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginQuery {
    next: String,
}

/// Only a path on this server may be the target after signing in: it starts with one `/`,
/// and has no `\\` or control character anywhere (browsers drop tabs and newlines from URLs and
/// read `\\` as `/`, so `/\t/evil.example` would leave the site).
fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.chars().any(|c| c == '\\' || c.is_control());
    if local { next } else { "/" }
}

async fn login_form(
    State(ui): State<Arc<Ui>>,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    if !ui.shared.auth.enabled() {
        return Redirect::to("/").into_response();
    }
    let nobody = Viewer::nobody();
    render(&LoginPage {
        p: Chrome::new("Sign in", "", &nobody),
        next: safe_next(&q.next).to_string(),
        error: String::new(),
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginForm {
    token: String,
    next: String,
}

async fn login(State(ui): State<Arc<Ui>>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    if !ui.shared.auth.enabled() {
        return Redirect::to("/").into_response();
    }
    let nobody = Viewer::nobody();
    let f: LoginForm = match form(&body) {
        Some(f) => f,
        None => return bad_form(&nobody),
    };
    let auth = &ui.shared.auth;
    let token = f.token.trim();
    match auth.check(Some(token), Need::Scope(Scope::Read)) {
        Ok(name) => {
            let admin = auth.check(Some(token), Need::Scope(Scope::Admin)).is_ok();
            // A sign-in replaces the browser's previous session rather than leaving it open.
            if let Some(old) = session::cookie_id(&headers, session::cookie_name(ui.secure)) {
                ui.sessions.close(&old);
            }
            let v = ui.sessions.open(name, admin);
            tracing::info!(token = name, admin, "Signed in to the web UI.");
            let mut r = Redirect::to(safe_next(&f.next)).into_response();
            if let Ok(c) = HeaderValue::from_str(&session::set_cookie(&v.id, ui.secure)) {
                r.headers_mut().append(header::SET_COOKIE, c);
            }
            r
        }
        Err(e) => {
            ui.shared
                .metrics
                .auth_failures
                .get_or_create(&AuthLabel { reason: e.reason() })
                .inc();
            tracing::warn!(reason = %e, "Web UI sign-in refused.");
            render_status(
                &LoginPage {
                    p: Chrome::new("Sign in", "", &nobody),
                    next: safe_next(&f.next).to_string(),
                    error: match e {
                        crate::service::auth::AuthError::Scope { .. } => {
                            "This token has neither the read nor the admin scope.".to_string()
                        }
                        _ => "Unknown token.".to_string(),
                    },
                },
                StatusCode::UNAUTHORIZED,
            )
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CsrfForm {
    #[serde(rename = "_csrf")]
    csrf: String,
}

async fn logout(
    State(ui): State<Arc<Ui>>,
    axum::Extension(v): axum::Extension<Viewer>,
    body: Bytes,
) -> Response {
    let f: CsrfForm = match form(&body) {
        Some(f) => f,
        None => return bad_form(&v),
    };
    if !v.csrf_ok(&f.csrf) {
        return error_page(
            Some(&v),
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or wrong.",
        );
    }
    ui.sessions.close(&v.id);
    let mut r = Redirect::to(if ui.shared.auth.enabled() {
        "/login"
    } else {
        "/"
    })
    .into_response();
    if let Ok(c) = HeaderValue::from_str(&session::clear_cookie(ui.secure)) {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

async fn style() -> Response {
    static_file(include_str!("static/style.css"), "text/css; charset=utf-8")
}

async fn script() -> Response {
    static_file(
        include_str!("static/app.js"),
        "text/javascript; charset=utf-8",
    )
}

fn static_file(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ui_paths_are_recognised() {
        for p in [
            "/",
            "/alerts/00ff",
            "/silences",
            "/silences/new",
            "/hosts/web-1/retire",
            "/login",
            "/static/app.js",
        ] {
            assert!(owns(p), "{p}");
        }
        for p in [
            "/api/v1/alerts",
            "/api/v2/silences",
            "/metrics",
            "/write",
            "/alertsx",
            "/-/healthy",
        ] {
            assert!(!owns(p), "{p}");
        }
    }

    #[test]
    fn forms_from_other_sites_are_recognised() {
        use axum::http::HeaderMap;
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(!cross_site(&h(&[("sec-fetch-site", "same-origin")])));
        for site in ["same-site", "cross-site", "none"] {
            let m = h(&[
                ("sec-fetch-site", site),
                ("origin", "http://a:1"),
                ("host", "a:1"),
            ]);
            assert!(cross_site(&m), "{site}");
        }
        assert!(!cross_site(&h(&[
            ("origin", "http://A:1"),
            ("host", "a:1")
        ])));
        assert!(!cross_site(&h(&[
            ("origin", "https://a:1"),
            ("host", "a:1")
        ])));
        assert!(cross_site(&h(&[("origin", "http://a:2"), ("host", "a:1")])));
        assert!(cross_site(&h(&[("origin", "null"), ("host", "a:1")])));
        assert!(cross_site(&h(&[("origin", "http://a:1")])));
        // Not a browser form (curl, scripts): the CSRF token decides.
        assert!(!cross_site(&h(&[("host", "a:1")])));
    }

    #[test]
    fn only_local_paths_follow_sign_in() {
        assert_eq!(
            safe_next("/silences?state=expired"),
            "/silences?state=expired"
        );
        assert_eq!(safe_next("//evil.example/"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
        assert_eq!(safe_next("/\t/evil.example"), "/");
        assert_eq!(safe_next("/\n/evil.example"), "/");
        assert_eq!(safe_next("/a\\b"), "/");
        assert_eq!(safe_next("/hosts?retired=x"), "/hosts?retired=x");
        assert_eq!(safe_next("https://evil.example/"), "/");
        assert_eq!(safe_next(""), "/");
    }
}
