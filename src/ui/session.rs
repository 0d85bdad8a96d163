//! Sessions of the web UI: who is looking, what they may do, and the CSRF token their forms
//! carry.
//!
//! With tokens configured, an operator signs in once with a token that has the `read` or
//! `admin` scope and gets a random 256-bit session id in an `HttpOnly`, `SameSite=Strict`
//! cookie (`Secure`, under the name `__Host-alertd_session`, when the UI is reached over HTTPS).
//! Signed-in sessions live in memory, bounded by `ui.max_sessions`: a restart asks operators to
//! sign in again. Only a valid token opens one, so nobody without a token can fill the store.
//!
//! Without tokens every visitor has full rights and nothing is stored: the browser keeps a
//! random id in the cookie and its forms carry a CSRF token derived from that id with an HMAC
//! under a key made at start ([`Signer`]), so any number of anonymous visitors costs no memory.

use cookie::{Cookie, SameSite};
use rand::RngCore;
use ring::hmac;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The name of the session cookie over plain HTTP.
pub const COOKIE: &str = "alertd_session";

/// The name of the session cookie over HTTPS: the `__Host-` prefix makes browsers refuse it
/// unless it is `Secure`, for the whole host, and set by this host (not a sibling domain).
pub const SECURE_COOKIE: &str = "__Host-alertd_session";

/// The cookie's name: `__Host-alertd_session` when it is `Secure`, else `alertd_session`.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure { SECURE_COOKIE } else { COOKIE }
}

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
        !self.csrf.is_empty()
            && crate::service::auth::same(self.csrf.as_bytes(), presented.as_bytes())
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

/// A random 256-bit value as 64 hex digits.
pub fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex(&b)
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// Whether a cookie value has the shape of a session id this module makes (64 hex digits).
pub fn well_formed(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Signs values the UI hands to browsers and reads back: the CSRF tokens of anonymous visitors
/// and the notices after a change. HMAC-SHA256 under a random key made at start, so a restart
/// invalidates what was signed before it (an open form is refused and must be reloaded).
pub struct Signer {
    key: hmac::Key,
}

impl Default for Signer {
    fn default() -> Self {
        Signer::new()
    }
}

impl Signer {
    /// A signer with a fresh random key.
    pub fn new() -> Signer {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Signer {
            key: hmac::Key::new(hmac::HMAC_SHA256, &k),
        }
    }

    fn tag(&self, purpose: &str, text: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(purpose.as_bytes());
        ctx.update(&[0]);
        ctx.update(text.as_bytes());
        ctx.sign()
    }

    /// The signature of `text` for `purpose` (64 hex digits).
    pub fn sign(&self, purpose: &str, text: &str) -> String {
        hex(self.tag(purpose, text).as_ref())
    }

    /// Whether `signature` is [`Signer::sign`]'s for `text` and `purpose` (constant time).
    pub fn verify(&self, purpose: &str, text: &str, signature: &str) -> bool {
        let expected = self.sign(purpose, text);
        crate::service::auth::same(expected.as_bytes(), signature.as_bytes())
    }

    /// The viewer of an anonymous visitor (no tokens configured) whose cookie holds `id`.
    pub fn anonymous(&self, id: String) -> Viewer {
        Viewer {
            csrf: self.sign("csrf", &id),
            id,
            name: String::new(),
            admin: true,
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

impl Sessions {
    /// A store whose sessions end after `ttl` unused, holding at most `max`.
    pub fn new(ttl: Duration, max: usize) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            ttl,
            max: max.max(1),
        }
    }

    /// Opens a signed-in session for the token `name`; answers its viewer. When the store is
    /// full, expired sessions go first, then the least recently used (a scan of the store,
    /// which only a sign-in with a valid token can cause).
    pub fn open(&self, name: &str, admin: bool) -> Viewer {
        let viewer = Viewer {
            id: random_hex(),
            name: name.to_string(),
            admin,
            csrf: random_hex(),
            signed_in: true,
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

/// The session id a request's `Cookie` headers carry under `name`.
pub fn cookie_id(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// The `Set-Cookie` value that hands a browser its session.
pub fn set_cookie(id: &str, secure: bool) -> String {
    Cookie::build((cookie_name(secure), id.to_string()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .build()
        .to_string()
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    Cookie::build((cookie_name(secure), ""))
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
        let a = s.open("ops", true);
        assert!(well_formed(&a.id));
        assert_ne!(a.id, a.csrf);
        assert!(
            s.get(&a.id)
                .is_some_and(|v| v.admin && v.signed_in && v.name == "ops")
        );
        let b = s.open("viewer", false);
        // `b` is used after `a`, so `a` is the least recently used when a third signs in.
        let _ = s.get(&b.id);
        let c = s.open("third", false);
        assert_eq!(s.len(), 2);
        assert!(s.get(&a.id).is_none(), "the least recently used went first");
        assert!(s.get(&b.id).is_some() && s.get(&c.id).is_some());
        s.close(&b.id);
        assert!(s.get(&b.id).is_none());

        let short = Sessions::new(Duration::ZERO, 10);
        let d = short.open("x", false);
        assert!(short.get(&d.id).is_none(), "an expired session is refused");
        assert!(short.is_empty());
    }

    #[test]
    fn csrf_tokens_compare_exactly() {
        let s = Sessions::new(Duration::from_secs(60), 10);
        let v = s.open("ops", true);
        assert!(v.csrf_ok(&v.csrf.clone()));
        assert!(!v.csrf_ok(""));
        assert!(!v.csrf_ok(&v.csrf[..63]));
        assert!(!v.csrf_ok(&v.id));
        assert!(!Viewer::nobody().csrf_ok(""), "nobody has a token to match");
    }

    #[test]
    fn anonymous_tokens_are_signed_and_stateless() {
        let signer = Signer::new();
        let id = random_hex();
        let a = signer.anonymous(id.clone());
        assert!(a.admin && !a.signed_in);
        assert!(well_formed(&a.csrf));
        // The same id gives the same token on every request; another id or key does not.
        assert!(signer.anonymous(id.clone()).csrf_ok(&a.csrf));
        assert!(!signer.anonymous(random_hex()).csrf_ok(&a.csrf));
        assert!(!Signer::new().anonymous(id).csrf_ok(&a.csrf));
        // Signatures are bound to their purpose.
        let sig = signer.sign("retired", "db01");
        assert!(signer.verify("retired", "db01", &sig));
        assert!(!signer.verify("retired", "db02", &sig));
        assert!(!signer.verify("csrf", "db01", &sig));
        assert!(!signer.verify("retired", "db01", ""));
        assert!(!well_formed("abc") && !well_formed(&"g".repeat(64)));
    }

    #[test]
    fn cookies_are_found_and_built_safely() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static(
                "theme=dark; alertd_session=abc123; __Host-alertd_session=def; other=1",
            ),
        );
        assert_eq!(cookie_id(&h, COOKIE).as_deref(), Some("abc123"));
        assert_eq!(cookie_id(&h, SECURE_COOKIE).as_deref(), Some("def"));
        assert_eq!(cookie_id(&HeaderMap::new(), COOKIE), None);
        let c = set_cookie("abc", true);
        assert!(c.starts_with("__Host-alertd_session=abc"), "{c}");
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(c.contains(part), "{c} lacks {part}");
        }
        assert!(!c.contains("Domain"), "a __Host- cookie has no Domain: {c}");
        let plain = set_cookie("abc", false);
        assert!(plain.starts_with("alertd_session=abc") && !plain.contains("Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
        assert!(clear_cookie(true).starts_with("__Host-alertd_session="));
    }
}
