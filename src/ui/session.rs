//! Sessions of the web UI: who is looking, what they may do, and the CSRF token their forms
//! carry.
//!
//! With tokens configured, an operator signs in once with a token that has the `read` or
//! `admin` scope and gets a random session id in an `HttpOnly`, `SameSite=Strict` cookie
//! (`Secure` when alertd speaks HTTPS). Without tokens, every visitor gets an anonymous session
//! with full rights, so forms still carry a CSRF token. Sessions live in memory: a restart asks
//! operators to sign in again. The store is bounded (`ui.max_sessions`); when full, expired
//! sessions go first, then the least recently used.

use cookie::{Cookie, SameSite};
use rand::RngCore;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The name of the session cookie.
pub const COOKIE: &str = "alertd_session";

/// Who is looking at a page.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The session id (the cookie's value).
    pub id: String,
    /// The token's name (empty when authentication is off).
    pub name: String,
    /// May create and expire silences, acknowledge alerts and retire hosts.
    pub admin: bool,
    /// The token every state-changing form must carry.
    pub csrf: String,
    /// Whether authentication is on (the page then offers to sign out).
    pub signed_in: bool,
}

impl Viewer {
    /// Whether a form's CSRF token is this session's (compared in constant time).
    pub fn csrf_ok(&self, presented: &str) -> bool {
        crate::service::auth::same(self.csrf.as_bytes(), presented.as_bytes())
    }

    /// Nobody: the viewer of the sign-in and error pages shown without a session.
    pub fn nobody() -> Viewer {
        Viewer {
            id: String::new(),
            name: String::new(),
            admin: false,
            csrf: String::new(),
            signed_in: false,
        }
    }
}

struct Entry {
    viewer: Viewer,
    last_used: Instant,
}

/// The session store.
pub struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
    ttl: Duration,
    max: usize,
}

/// A random 256-bit value as 64 hex digits.
fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Sessions {
    /// A store whose sessions end after `ttl` unused, holding at most `max`.
    pub fn new(ttl: Duration, max: usize) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            ttl,
            max: max.max(1),
        }
    }

    /// Opens a session; answers its viewer.
    pub fn open(&self, name: &str, admin: bool, signed_in: bool) -> Viewer {
        let viewer = Viewer {
            id: random_hex(),
            name: name.to_string(),
            admin,
            csrf: random_hex(),
            signed_in,
        };
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max {
            let ttl = self.ttl;
            map.retain(|_, e| now.duration_since(e.last_used) < ttl);
        }
        if map.len() >= self.max
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            viewer.id.clone(),
            Entry {
                viewer: viewer.clone(),
                last_used: now,
            },
        );
        viewer
    }

    /// The live session with this id, marked as used now.
    pub fn get(&self, id: &str) -> Option<Viewer> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let expired = match map.get_mut(id) {
            None => return None,
            Some(e) if now.duration_since(e.last_used) >= self.ttl => true,
            Some(e) => {
                e.last_used = now;
                return Some(e.viewer.clone());
            }
        };
        if expired {
            map.remove(id);
        }
        None
    }

    /// Ends a session.
    pub fn close(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session id a request's `Cookie` headers carry.
pub fn cookie_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string())
}

/// The `Set-Cookie` value that hands a browser its session.
pub fn set_cookie(id: &str, secure: bool) -> String {
    Cookie::build((COOKIE, id.to_string()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .build()
        .to_string()
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    Cookie::build((COOKIE, ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue, header};

    #[test]
    fn sessions_open_expire_and_stay_bounded() {
        let s = Sessions::new(Duration::from_secs(3600), 2);
        let a = s.open("ops", true, true);
        assert_eq!(a.id.len(), 64);
        assert_ne!(a.id, a.csrf);
        assert!(s.get(&a.id).is_some_and(|v| v.admin && v.name == "ops"));
        let b = s.open("viewer", false, true);
        // `a` was used after `b`'s creation? No: b is newer, so `a` is the least recently used.
        let _ = s.get(&b.id);
        let c = s.open("third", false, true);
        assert_eq!(s.len(), 2);
        assert!(s.get(&a.id).is_none(), "the least recently used went first");
        assert!(s.get(&b.id).is_some() && s.get(&c.id).is_some());
        s.close(&b.id);
        assert!(s.get(&b.id).is_none());

        let short = Sessions::new(Duration::ZERO, 10);
        let d = short.open("x", false, true);
        assert!(short.get(&d.id).is_none(), "an expired session is refused");
        assert!(short.is_empty());
    }

    #[test]
    fn csrf_tokens_compare_exactly() {
        let s = Sessions::new(Duration::from_secs(60), 10);
        let v = s.open("", true, false);
        assert!(v.csrf_ok(&v.csrf.clone()));
        assert!(!v.csrf_ok(""));
        assert!(!v.csrf_ok(&v.csrf[..63]));
        assert!(!v.csrf_ok(&v.id));
    }

    #[test]
    fn cookies_are_found_and_built_safely() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; alertd_session=abc123; other=1"),
        );
        assert_eq!(cookie_id(&h).as_deref(), Some("abc123"));
        assert_eq!(cookie_id(&HeaderMap::new()), None);
        let c = set_cookie("abc", true);
        assert!(c.starts_with("alertd_session=abc"));
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(c.contains(part), "{c} lacks {part}");
        }
        assert!(!set_cookie("abc", false).contains("Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
