//! Token authentication of the HTTP API: which scope each endpoint needs, where a client's
//! token is found (`Authorization: Bearer`, InfluxDB's `Token` and Basic auth, the `p` query
//! parameter), and the middleware that answers 401 or 403 and counts refusals.
//!
//! With no token configured everything is open, as on a loopback-only install.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;
use std::sync::Arc;

use super::Shared;
use super::metrics::AuthLabel;
use crate::config::{AuthConfig, Scope};

/// What an endpoint requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: liveness only.
    Open,
    /// Any valid token.
    AnyToken,
    /// A token with this scope (`admin` includes `read`).
    Scope(Scope),
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token was sent.
    #[error("authentication required: send a token (Authorization: Bearer <token>)")]
    Missing,
    /// The token is not one of the configured ones.
    #[error("invalid token")]
    Invalid,
    /// The token lacks the scope.
    #[error("token '{name}' lacks the '{scope}' scope")]
    Scope {
        /// The token's name.
        name: &'static str,
        /// The scope needed.
        scope: &'static str,
    },
}

impl AuthError {
    /// The `reason` label of `alertd_auth_failures_total`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Invalid => "invalid",
            AuthError::Scope { .. } => "scope",
        }
    }
}

fn scope_name(s: Scope) -> &'static str {
    match s {
        Scope::Read => "read",
        Scope::Write => "write",
        Scope::Admin => "admin",
    }
}

/// The configured tokens.
#[derive(Debug, Default)]
pub struct Auth {
    tokens: Vec<Token>,
}

#[derive(Debug)]
struct Token {
    /// Leaked once at start so errors can name it without allocating.
    name: &'static str,
    secret: Vec<u8>,
    scopes: Vec<Scope>,
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// From the `[auth]` section.
    pub fn new(cfg: &AuthConfig) -> Auth {
        Auth {
            tokens: cfg
                .tokens
                .iter()
                .map(|t| Token {
                    name: Box::leak(t.name.clone().into_boxed_str()),
                    secret: t.token.as_bytes().to_vec(),
                    scopes: t.scopes.clone(),
                })
                .collect(),
        }
    }

    /// Whether any token is configured.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks a presented token against what is needed; `Ok` with the token's name (or `""`
    /// when authentication is off or not needed).
    pub fn check(&self, presented: Option<&str>, need: Need) -> Result<&'static str, AuthError> {
        if !self.enabled() || need == Need::Open {
            return Ok("");
        }
        let Some(p) = presented.filter(|p| !p.is_empty()) else {
            return Err(AuthError::Missing);
        };
        // Every token is compared, so the time taken does not tell which one nearly matched.
        let mut found = None;
        for t in &self.tokens {
            if same(&t.secret, p.as_bytes()) {
                found = Some(t);
            }
        }
        let t = found.ok_or(AuthError::Invalid)?;
        let ok = match need {
            Need::Open | Need::AnyToken => true,
            Need::Scope(Scope::Read) => t
                .scopes
                .iter()
                .any(|s| matches!(s, Scope::Read | Scope::Admin)),
            Need::Scope(s) => t.scopes.contains(&s),
        };
        if ok {
            Ok(t.name)
        } else {
            Err(AuthError::Scope {
                name: t.name,
                scope: match need {
                    Need::Scope(s) => scope_name(s),
                    _ => "read",
                },
            })
        }
    }
}

/// The scope a request needs, from its method and path.
pub fn need(method: &Method, path: &str) -> Need {
    let read_only = matches!(*method, Method::GET | Method::HEAD);
    match path {
        "/-/healthy" => Need::Open,
        // InfluxDB clients probe `/ping` with whatever token they hold.
        "/ping" => Need::AnyToken,
        "/write" | "/api/v2/write" | "/api/v1/prom/write" | "/api/v1/write" | "/query" => {
            Need::Scope(Scope::Write)
        }
        "/api/v2/alerts" if !read_only => Need::Scope(Scope::Write),
        // NRDP clients send their token in the form; the handler checks it.
        "/nrdp" | "/nrdp/" => Need::Open,
        "/api/v1/checks" if !read_only => Need::Scope(Scope::Write),
        _ if read_only => Need::Scope(Scope::Read),
        _ => Need::Scope(Scope::Admin),
    }
}

/// The token a request carries: `Authorization: Bearer <t>` or `Token <t>`, Basic auth (the
/// password, or the user name when the password is empty), or the `p` query parameter
/// (InfluxDB 1.x clients).
pub fn presented(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (kind, rest) = v.trim().split_once(' ').unwrap_or((v, ""));
        let rest = rest.trim();
        if kind.eq_ignore_ascii_case("bearer") || kind.eq_ignore_ascii_case("token") {
            return Some(rest.to_string());
        }
        if kind.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())?;
            let (user, pass) = decoded.split_once(':').unwrap_or((&decoded, ""));
            return Some(if pass.is_empty() { user } else { pass }.to_string());
        }
        return None;
    }
    let q = query?;
    let params: Vec<(String, String)> = serde_urlencoded::from_str(q).ok()?;
    params.into_iter().find(|(k, _)| k == "p").map(|(_, v)| v)
}

/// The middleware: refuses requests without the needed token.
pub async fn require(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    // The web UI signs browsers in with the same tokens and keeps a session (crate::ui).
    if !s.auth.enabled() || crate::ui::owns(req.uri().path()) {
        return next.run(req).await;
    }
    let need = need(req.method(), req.uri().path());
    let token = presented(req.headers(), req.uri().query());
    match s.auth.check(token.as_deref(), need) {
        Ok(_) => next.run(req).await,
        Err(e) => {
            s.metrics
                .auth_failures
                .get_or_create(&AuthLabel { reason: e.reason() })
                .inc();
            tracing::warn!(
                path = req.uri().path(),
                reason = e.reason(),
                "Request refused by token authentication."
            );
            let status = match e {
                AuthError::Scope { .. } => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            let mut r = (status, axum::Json(json!({ "error": e.to_string() }))).into_response();
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"alertd\""),
                );
            }
            r
        }
    }
}

/// The request timeout: a request that is not answered in time gets 408.
pub async fn timeout(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(s.config.http.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            axum::Json(json!({ "error": "request not completed within http.request_timeout" })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;

    fn auth() -> Auth {
        Auth::new(&AuthConfig {
            tokens: vec![
                TokenConfig {
                    name: "agent".into(),
                    token: "write-token-1".into(),
                    scopes: vec![Scope::Write],
                },
                TokenConfig {
                    name: "ops".into(),
                    token: "admin-token-1".into(),
                    scopes: vec![Scope::Admin],
                },
            ],
        })
    }

    #[test]
    fn scopes_decide() {
        let a = auth();
        let read = Need::Scope(Scope::Read);
        assert_eq!(a.check(None, read), Err(AuthError::Missing));
        assert_eq!(a.check(Some("nope"), read), Err(AuthError::Invalid));
        assert_eq!(
            a.check(Some("write-token-1"), read),
            Err(AuthError::Scope {
                name: "agent",
                scope: "read"
            })
        );
        assert_eq!(a.check(Some("admin-token-1"), read), Ok("ops"));
        assert!(
            a.check(Some("admin-token-1"), Need::Scope(Scope::Write))
                .is_err()
        );
        assert_eq!(a.check(Some("write-token-1"), Need::AnyToken), Ok("agent"));
        assert_eq!(a.check(None, Need::Open), Ok(""));
        assert_eq!(Auth::default().check(None, read), Ok(""));
    }

    #[test]
    fn endpoints_need_their_scope() {
        assert_eq!(need(&Method::GET, "/-/healthy"), Need::Open);
        assert_eq!(need(&Method::POST, "/write"), Need::Scope(Scope::Write));
        assert_eq!(
            need(&Method::POST, "/api/v2/alerts"),
            Need::Scope(Scope::Write)
        );
        assert_eq!(
            need(&Method::GET, "/api/v2/alerts"),
            Need::Scope(Scope::Read)
        );
        assert_eq!(
            need(&Method::POST, "/api/v2/silences"),
            Need::Scope(Scope::Admin)
        );
        assert_eq!(
            need(&Method::DELETE, "/api/v2/silence/x"),
            Need::Scope(Scope::Admin)
        );
        assert_eq!(need(&Method::POST, "/-/reload"), Need::Scope(Scope::Admin));
        assert_eq!(need(&Method::GET, "/metrics"), Need::Scope(Scope::Read));
    }

    #[test]
    fn tokens_are_found_where_clients_send_them() {
        let mut h = HeaderMap::new();
        assert_eq!(
            presented(&h, Some("db=x&u=me&p=secret")),
            Some("secret".into())
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(presented(&h, None), Some("abc".into()));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Token def"));
        assert_eq!(presented(&h, None), Some("def".into()));
        // "telegraf:pw" and ":pw" and "tok:"
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dGVsZWdyYWY6cHc="),
        );
        assert_eq!(presented(&h, None), Some("pw".into()));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dG9rOg=="),
        );
        assert_eq!(presented(&h, None), Some("tok".into()));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!"));
        assert_eq!(presented(&h, None), None);
    }
}
