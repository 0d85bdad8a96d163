//! The e-mail receiver: validating an `[receivers.email]` table, rendering notifications into
//! complete RFC 5322 messages (subject, plain-text and HTML bodies, extra headers), and sending a
//! rendered message over SMTP (plain, STARTTLS or implicit TLS, optional AUTH PLAIN/LOGIN).
//!
//! Rendering and sending are separate steps: a [`RenderedEmail`] is stored in the outbox as JSON
//! and [`EmailReceiver::send`] later delivers exactly those bytes, so a retry after a restart
//! sends the same message (same `Message-ID`, same `Date`).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Outcome;
use super::notification::{AlertStatus, Notification, NotifiedAlert, TemplateJson, rfc3339};
use crate::manager::route::parse_duration;
use crate::rules::template::Template;

/// SMTP timeout when `timeout` is unset.
pub const DEFAULT_SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// EHLO name when `hello` is unset.
pub const DEFAULT_HELLO: &str = "localhost";

/// Headers alertd sets itself; they cannot be given in `headers` (use `to`, `from`, `subject`).
const RESERVED_HEADERS: [&str; 11] = [
    "from",
    "to",
    "cc",
    "bcc",
    "sender",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Connect in plain text and require the server to offer STARTTLS (the default).
    #[default]
    Starttls,
    /// Use STARTTLS when the server offers it, plain text otherwise.
    Opportunistic,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
    /// Never encrypt.
    None,
}

/// An e-mail receiver as configured (one `[[receivers]]` entry's `email` table).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Recipients, each a mailbox (`ops@example.com` or `Ops <ops@example.com>`). Required,
    /// non-empty.
    pub to: Vec<String>,
    /// Sender mailbox, used for the `From` header and the envelope sender. Required.
    pub from: String,
    /// SMTP server as `host:port` (`[::1]:25` for IPv6). Required.
    pub smarthost: String,
    /// Name sent with EHLO. Default `localhost`.
    #[serde(default)]
    pub hello: Option<String>,
    /// User name for SMTP AUTH; no authentication when unset.
    #[serde(default)]
    pub auth_username: Option<String>,
    /// Password for SMTP AUTH (or use `auth_password_file`).
    #[serde(default)]
    pub auth_password: Option<String>,
    /// File holding the SMTP AUTH password (one trailing newline is dropped); read when the
    /// configuration is loaded.
    #[serde(default)]
    pub auth_password_file: Option<PathBuf>,
    /// AUTH mechanisms to use, from `PLAIN` and `LOGIN`, in order of preference. Default both.
    #[serde(default)]
    pub auth_mechanisms: Option<Vec<String>>,
    /// `starttls` (default: STARTTLS required), `opportunistic`, `implicit` (SMTPS) or `none`.
    #[serde(default)]
    pub tls: TlsMode,
    /// Extra PEM file of CA certificates to trust besides the built-in web roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate and host name. Default false; for tests only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Extra headers; values are templates rendered against the notification's data.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Subject template; a built-in `[FIRING:2] ...` subject when unset.
    #[serde(default)]
    pub subject: Option<String>,
    /// Plain-text body template; a built-in summary when unset.
    #[serde(default)]
    pub text: Option<String>,
    /// HTML body template; a built-in page when unset. An empty result sends text only.
    #[serde(default)]
    pub html: Option<String>,
    /// Also notify when all alerts of a group resolved. Default false.
    #[serde(default)]
    pub send_resolved: bool,
    /// Longest time one delivery attempt may take: connecting, TLS, every command and the data
    /// (duration such as `30s`). Default `30s`.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// An e-mail receiver error: a configuration field that is wrong, or a message that cannot be
/// built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// A configuration field is invalid.
    #[error("receiver {receiver:?}: email.{field}: {msg}")]
    Config {
        /// The receiver's name.
        receiver: String,
        /// The field, e.g. `to[1]` or `headers.X-Team`.
        field: String,
        /// What is wrong.
        msg: String,
    },
    /// A message could not be built (e.g. a bad recipient given to a TICK handler).
    #[error("receiver {receiver:?}: {field}: {msg}")]
    Render {
        /// The receiver's name.
        receiver: String,
        /// What was being built, e.g. `to[0]` or `message`.
        field: String,
        /// What is wrong.
        msg: String,
    },
}

/// A complete message ready to send, as stored in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RenderedEmail {
    /// Envelope sender (bare address, `MAIL FROM`).
    pub from: String,
    /// Envelope recipients (bare addresses, `RCPT TO`).
    pub to: Vec<String>,
    /// The complete RFC 5322 message (headers and MIME body), CRLF line endings.
    pub message: String,
}

/// A validated e-mail receiver, ready to render and send.
pub struct EmailReceiver {
    name: String,
    smarthost: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    headers: Vec<(HeaderName, Template)>,
    subject: Option<Template>,
    text: Option<Template>,
    html: Option<Template>,
    send_resolved: bool,
    timeout: Duration,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl fmt::Debug for EmailReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailReceiver")
            .field("name", &self.name)
            .field("smarthost", &self.smarthost)
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .field("send_resolved", &self.send_resolved)
            .finish_non_exhaustive()
    }
}

impl EmailReceiver {
    /// Validates `cfg` and prepares the SMTP transport (no connection is made yet).
    pub fn new(name: &str, cfg: &EmailConfig) -> Result<EmailReceiver, EmailError> {
        let err = |field: &str, msg: String| EmailError::Config {
            receiver: name.to_string(),
            field: field.to_string(),
            msg,
        };
        if cfg.to.is_empty() {
            return Err(err("to", "at least one recipient is required".into()));
        }
        let mut to = Vec::with_capacity(cfg.to.len());
        for (i, s) in cfg.to.iter().enumerate() {
            let m: Mailbox = s
                .parse()
                .map_err(|_| err(&format!("to[{i}]"), format!("invalid address {s:?}")))?;
            to.push(m);
        }
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|_| err("from", format!("invalid address {:?}", cfg.from)))?;

        let (host, port) = split_host_port(&cfg.smarthost).ok_or_else(|| {
            err(
                "smarthost",
                format!("expected host:port, got {:?}", cfg.smarthost),
            )
        })?;

        let hello = cfg.hello.as_deref().unwrap_or(DEFAULT_HELLO);
        if hello.is_empty() || hello.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err(
                "hello",
                format!("invalid EHLO name {hello:?}: must be a non-empty word"),
            ));
        }

        let password = match (&cfg.auth_password, &cfg.auth_password_file) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "auth_password_file",
                    "set either auth_password or auth_password_file, not both".into(),
                ));
            }
            (Some(p), None) => Some(p.clone()),
            (None, Some(path)) => {
                let s = std::fs::read_to_string(path)
                    .map_err(|e| err("auth_password_file", format!("{}: {e}", path.display())))?;
                let s = s.strip_suffix('\n').unwrap_or(&s);
                let s = s.strip_suffix('\r').unwrap_or(s);
                Some(s.to_string())
            }
            (None, None) => None,
        };
        let credentials = match (&cfg.auth_username, password) {
            (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p)),
            (Some(_), None) => {
                return Err(err(
                    "auth_password",
                    "auth_username is set but neither auth_password nor auth_password_file".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(err(
                    "auth_username",
                    "a password is set but auth_username is not".into(),
                ));
            }
            (None, None) => None,
        };
        let mechanisms = match &cfg.auth_mechanisms {
            None => vec![Mechanism::Plain, Mechanism::Login],
            Some(list) => {
                if list.is_empty() {
                    return Err(err("auth_mechanisms", "must not be empty".into()));
                }
                let mut out = Vec::new();
                for (i, m) in list.iter().enumerate() {
                    out.push(match m.to_ascii_uppercase().as_str() {
                        "PLAIN" => Mechanism::Plain,
                        "LOGIN" => Mechanism::Login,
                        _ => {
                            return Err(err(
                                &format!("auth_mechanisms[{i}]"),
                                format!("unknown mechanism {m:?} (PLAIN or LOGIN)"),
                            ));
                        }
                    });
                }
                out
            }
        };
        if cfg.auth_mechanisms.is_some() && credentials.is_none() {
            return Err(err(
                "auth_mechanisms",
                "set without auth_username and a password".into(),
            ));
        }

        let timeout = match &cfg.timeout {
            None => DEFAULT_SMTP_TIMEOUT,
            Some(s) => {
                let d = parse_duration(s).map_err(|e| err("timeout", e.to_string()))?;
                if d.is_zero() {
                    return Err(err("timeout", "must be greater than 0".into()));
                }
                d
            }
        };

        let tls = if cfg.tls == TlsMode::None {
            if cfg.ca_file.is_some() {
                return Err(err("ca_file", "has no effect with tls = \"none\"".into()));
            }
            if cfg.insecure_skip_verify {
                return Err(err(
                    "insecure_skip_verify",
                    "has no effect with tls = \"none\"".into(),
                ));
            }
            Tls::None
        } else {
            let mut b = TlsParameters::builder(host.to_string());
            if let Some(path) = &cfg.ca_file {
                let pem = std::fs::read(path)
                    .map_err(|e| err("ca_file", format!("{}: {e}", path.display())))?;
                if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                    return Err(err(
                        "ca_file",
                        format!("{}: no PEM certificate found", path.display()),
                    ));
                }
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| err("ca_file", format!("{}: {e}", path.display())))?;
                b = b.add_root_certificate(cert);
            }
            if cfg.insecure_skip_verify {
                b = b
                    .dangerous_accept_invalid_certs(true)
                    .dangerous_accept_invalid_hostnames(true);
            }
            let params = b.build_rustls().map_err(|e| err("tls", e.to_string()))?;
            match cfg.tls {
                TlsMode::Starttls => Tls::Required(params),
                TlsMode::Opportunistic => Tls::Opportunistic(params),
                TlsMode::Implicit | TlsMode::None => Tls::Wrapper(params),
            }
        };

        let mut headers = Vec::with_capacity(cfg.headers.len());
        for (k, v) in &cfg.headers {
            let field = format!("headers.{k}");
            if k.is_empty() || !k.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
                return Err(err(&field, format!("invalid header name {k:?}")));
            }
            if RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                return Err(err(
                    &field,
                    format!("{k} is set by alertd (use email.to, email.from or email.subject)"),
                ));
            }
            let hn = HeaderName::new_from_ascii(k.clone())
                .map_err(|_| err(&field, format!("invalid header name {k:?}")))?;
            let t = Template::parse(v).map_err(|e| err(&field, e.to_string()))?;
            headers.push((hn, t));
        }
        let parse_opt =
            |field: &str, src: &Option<String>| -> Result<Option<Template>, EmailError> {
                src.as_deref()
                    .map(|s| Template::parse(s).map_err(|e| err(field, e.to_string())))
                    .transpose()
            };
        let subject = parse_opt("subject", &cfg.subject)?;
        let text = parse_opt("text", &cfg.text)?;
        let html = parse_opt("html", &cfg.html)?;

        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .hello_name(ClientId::Domain(hello.to_string()))
            .timeout(Some(timeout))
            .tls(tls);
        if let Some(c) = credentials {
            builder = builder.credentials(c).authentication(mechanisms);
        }
        Ok(EmailReceiver {
            name: name.to_string(),
            smarthost: cfg.smarthost.clone(),
            from,
            to,
            headers,
            subject,
            text,
            html,
            send_resolved: cfg.send_resolved,
            timeout,
            transport: builder.build(),
        })
    }

    /// Whether notifications whose alerts all resolved are sent.
    pub fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    /// Renders a grouped notification.
    pub fn render(&self, n: &Notification) -> Result<RenderedEmail, EmailError> {
        let data = n.template_data();
        let subject = match &self.subject {
            Some(t) => self.render_template("subject", t, &data),
            None => default_subject(n),
        };
        let text = match &self.text {
            Some(t) => self.render_template("text", t, &data),
            None => default_text(n),
        };
        let html = match &self.html {
            Some(t) => self.render_template("html", t, &data),
            None => default_html(n),
        };
        let headers = self.render_headers(&data);
        self.build(&self.to, &subject, headers, text, Some(html))
    }

    /// Renders one message of a TICK `.email('a@b', ...)` handler: `to` overrides the configured
    /// list when non-empty; subject/text/html given by the caller (Kapacitor sends the alert
    /// message as subject and details as HTML body). Without `html` the message is text only.
    /// Header templates render against `{Receiver, Subject}`.
    pub fn render_event(
        &self,
        to: &[String],
        subject: &str,
        text: &str,
        html: Option<&str>,
    ) -> Result<RenderedEmail, EmailError> {
        let recipients = if to.is_empty() {
            self.to.clone()
        } else {
            let mut out = Vec::with_capacity(to.len());
            for (i, s) in to.iter().enumerate() {
                let m: Mailbox = s.parse().map_err(|_| EmailError::Render {
                    receiver: self.name.clone(),
                    field: format!("to[{i}]"),
                    msg: format!("invalid address {s:?}"),
                })?;
                out.push(m);
            }
            out
        };
        let serde_json::Value::Object(map) = json!({
            "Receiver": self.name,
            "Subject": subject,
        }) else {
            unreachable!("json! of an object literal is an object")
        };
        let headers = self.render_headers(&TemplateJson(map));
        self.build(
            &recipients,
            subject,
            headers,
            text.to_string(),
            html.map(str::to_string),
        )
    }

    /// Sends a rendered message exactly as stored, over a new connection: 2xx → `Sent`; 4xx,
    /// connection, TLS and timeout errors → `Retry`; 5xx → `Failed`. Reasons carry the server's
    /// code and text. An attempt that times out after the server took the message may deliver
    /// it twice (delivery is at least once).
    pub async fn send(&self, msg: &RenderedEmail) -> Outcome {
        let envelope = match envelope_of(msg) {
            Ok(e) => e,
            Err(reason) => return Outcome::Failed(reason),
        };
        // lettre bounds only the TCP connect by its timeout; bound the whole exchange here so a
        // server that stops answering cannot hold a delivery forever.
        let attempt = self.transport.send_raw(&envelope, msg.message.as_bytes());
        match tokio::time::timeout(self.timeout, attempt).await {
            Err(_) => Outcome::Retry(format!(
                "smtp {}: no answer within {:?}",
                self.smarthost, self.timeout
            )),
            Ok(Ok(_)) => Outcome::Sent,
            Ok(Err(e)) if e.is_permanent() => {
                Outcome::Failed(format!("smtp {}: {e}", self.smarthost))
            }
            Ok(Err(e)) => Outcome::Retry(format!("smtp {}: {}", self.smarthost, error_chain(&e))),
        }
    }

    fn render_template(&self, field: &str, t: &Template, data: &TemplateJson) -> String {
        let (s, report) = t.render_to_string(data);
        if report.errors > 0 {
            tracing::warn!(
                receiver = %self.name,
                field,
                error = report.first_error.as_deref().unwrap_or(""),
                "E-mail template rendered with errors."
            );
        }
        s
    }

    fn render_headers(&self, data: &TemplateJson) -> Vec<(HeaderName, String)> {
        self.headers
            .iter()
            .map(|(k, t)| {
                let v = self.render_template(&format!("headers.{k}"), t, data);
                (k.clone(), header_safe(&v))
            })
            .collect()
    }

    fn build(
        &self,
        to: &[Mailbox],
        subject: &str,
        headers: Vec<(HeaderName, String)>,
        text: String,
        html: Option<String>,
    ) -> Result<RenderedEmail, EmailError> {
        let render_err = |field: &str, msg: String| EmailError::Render {
            receiver: self.name.clone(),
            field: field.to_string(),
            msg,
        };
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(header_safe(subject))
            .message_id(None);
        for m in to {
            b = b.to(m.clone());
        }
        for (k, v) in headers {
            b = b.raw_header(HeaderValue::new(k, v));
        }
        let envelope = Envelope::new(
            Some(self.from.email.clone()),
            to.iter().map(|m| m.email.clone()).collect(),
        )
        .map_err(|e| render_err("to", e.to_string()))?;
        b = b.envelope(envelope);
        let message = match html.filter(|h| !h.trim().is_empty()) {
            Some(html) => b.multipart(MultiPart::alternative_plain_html(text, html)),
            None => b.singlepart(SinglePart::plain(text)),
        }
        .map_err(|e| render_err("message", e.to_string()))?;
        let message = String::from_utf8(message.formatted())
            .map_err(|e| render_err("message", e.to_string()))?;
        Ok(RenderedEmail {
            from: self.from.email.to_string(),
            to: to.iter().map(|m| m.email.to_string()).collect(),
            message,
        })
    }
}

fn envelope_of(msg: &RenderedEmail) -> Result<Envelope, String> {
    let from: Address = msg
        .from
        .parse()
        .map_err(|e| format!("stored sender {:?}: {e}", msg.from))?;
    let mut to = Vec::with_capacity(msg.to.len());
    for s in &msg.to {
        to.push(
            s.parse::<Address>()
                .map_err(|e| format!("stored recipient {s:?}: {e}"))?,
        );
    }
    Envelope::new(Some(from), to).map_err(|e| format!("envelope: {e}"))
}

/// The error and its sources, `: `-separated (lettre's TLS and I/O causes are in the sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let cs = c.to_string();
        if !s.contains(&cs) {
            let _ = write!(s, ": {cs}");
        }
        cur = c.source();
    }
    // lettre nests its own errors (`Connection error: Connection error: ...`); say it once.
    let mut parts: Vec<&str> = s.split(": ").collect();
    parts.dedup();
    parts.join(": ")
}

fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    let port: u16 = port.parse().ok()?;
    if host.is_empty() || port == 0 || host.chars().any(|c| c.is_whitespace()) {
        return None;
    }
    Some((host, port))
}

/// A header value with every CR and LF replaced by a space, so no rendered value can start a
/// new header.
fn header_safe(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// HTML-escapes text for element content and quoted attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn pairs(set: &crate::manager::labels::LabelSet) -> String {
    set.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `[FIRING:2] DiskFull node0003 (prod)`: status, firing count, group label values by label
/// name, then the values of the other common labels in parentheses.
pub fn default_subject(n: &Notification) -> String {
    let status = n.status();
    let mut s = match status {
        AlertStatus::Firing => format!("[FIRING:{}]", n.firing().count()),
        AlertStatus::Resolved => "[RESOLVED]".to_string(),
    };
    for v in n.group_labels.values() {
        s.push(' ');
        s.push_str(v);
    }
    let common = n.common_labels();
    let others: Vec<&str> = common
        .iter()
        .filter(|(k, _)| !n.group_labels.contains_key(k))
        .map(|(_, v)| v)
        .collect();
    if !others.is_empty() {
        let _ = write!(s, " ({})", others.join(" "));
    }
    header_safe(&s)
}

fn alerts_link(n: &Notification) -> Option<String> {
    if n.external_url.is_empty() {
        return None;
    }
    let q = serde_urlencoded::to_string([("receiver", n.receiver.as_str())]).ok()?;
    Some(format!(
        "{}/#/alerts?{q}",
        n.external_url.trim_end_matches('/')
    ))
}

fn heading(n: &Notification) -> String {
    let count = n.alerts.len();
    let noun = if count == 1 { "alert" } else { "alerts" };
    if n.group_labels.is_empty() {
        format!("{count} {noun}")
    } else {
        format!("{count} {noun} for {}", pairs(&n.group_labels))
    }
}

fn is_web_link(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The built-in plain-text body.
pub fn default_text(n: &Notification) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", heading(n));
    if let Some(link) = alerts_link(n) {
        let _ = writeln!(s, "View in alertd: {link}");
    }
    let sections: [(&str, Vec<&NotifiedAlert>); 2] = [
        ("Firing", n.firing().collect()),
        ("Resolved", n.resolved().collect()),
    ];
    for (title, alerts) in sections {
        if alerts.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n[{}] {title}", alerts.len());
        for a in alerts {
            let _ = writeln!(s, "\nLabels:");
            for (k, v) in &a.labels {
                let _ = writeln!(s, "  {k} = {v}");
            }
            if !a.annotations.is_empty() {
                let _ = writeln!(s, "Annotations:");
                for (k, v) in &a.annotations {
                    let _ = writeln!(s, "  {k} = {v}");
                }
            }
            let _ = writeln!(s, "Started: {}", rfc3339(a.starts_at));
            if let Some(end) = a.ends_at {
                let _ = writeln!(s, "Ended: {}", rfc3339(end));
            }
            if !a.generator_url.is_empty() {
                let _ = writeln!(s, "Source: {}", a.generator_url);
            }
        }
    }
    if n.truncated > 0 {
        let _ = writeln!(s, "\n{} more alerts not shown.", n.truncated);
    }
    let _ = writeln!(s, "\n--\nSent by alertd");
    s
}

/// The built-in HTML body. Everything interpolated is HTML-escaped.
pub fn default_html(n: &Notification) -> String {
    let (bg, fg) = match n.status() {
        AlertStatus::Firing => ("#d9342b", "#ffffff"),
        AlertStatus::Resolved => ("#2e9e44", "#ffffff"),
    };
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(s, "<title>{}</title>", esc(&default_subject(n)));
    s.push_str("</head>\n<body style=\"font-family: sans-serif; margin: 0; padding: 16px;\">\n");
    let _ = writeln!(
        s,
        "<h2 style=\"background: {bg}; color: {fg}; padding: 12px; margin: 0 0 12px 0;\">{}</h2>",
        esc(&heading(n))
    );
    if let Some(link) = alerts_link(n) {
        let _ = writeln!(s, "<p><a href=\"{}\">View in alertd</a></p>", esc(&link));
    }
    let sections: [(&str, Vec<&NotifiedAlert>); 2] = [
        ("Firing", n.firing().collect()),
        ("Resolved", n.resolved().collect()),
    ];
    for (title, alerts) in sections {
        if alerts.is_empty() {
            continue;
        }
        let _ = writeln!(s, "<h3>[{}] {title}</h3>", alerts.len());
        for a in alerts {
            s.push_str("<div style=\"border: 1px solid #cccccc; padding: 8px; margin-bottom: 8px;\">\n<strong>Labels</strong>\n<ul>\n");
            for (k, v) in &a.labels {
                let _ = writeln!(s, "<li>{} = {}</li>", esc(k), esc(v));
            }
            s.push_str("</ul>\n");
            if !a.annotations.is_empty() {
                s.push_str("<strong>Annotations</strong>\n<ul>\n");
                for (k, v) in &a.annotations {
                    let _ = writeln!(s, "<li>{} = {}</li>", esc(k), esc(v));
                }
                s.push_str("</ul>\n");
            }
            let _ = writeln!(s, "<p>Started: {}", esc(&rfc3339(a.starts_at)));
            if let Some(end) = a.ends_at {
                let _ = write!(s, "<br>Ended: {}", esc(&rfc3339(end)));
            }
            s.push_str("</p>\n");
            if is_web_link(&a.generator_url) {
                let _ = writeln!(s, "<p><a href=\"{}\">Source</a></p>", esc(&a.generator_url));
            } else if !a.generator_url.is_empty() {
                let _ = writeln!(s, "<p>Source: {}</p>", esc(&a.generator_url));
            }
            s.push_str("</div>\n");
        }
    }
    if n.truncated > 0 {
        let _ = writeln!(s, "<p>{} more alerts not shown.</p>", n.truncated);
    }
    s.push_str(
        "<p style=\"color: #888888; font-size: small;\">Sent by alertd</p>\n</body>\n</html>\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::labels::{LabelSet, fingerprint, label_set};
    use chrono::DateTime;

    fn alert(labels: LabelSet, annotations: LabelSet, status: AlertStatus) -> NotifiedAlert {
        let starts_at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        NotifiedAlert {
            status,
            fingerprint: fingerprint(&labels),
            labels,
            annotations,
            starts_at,
            ends_at: (status == AlertStatus::Resolved)
                .then(|| DateTime::from_timestamp(1_700_000_600, 0).unwrap()),
            generator_url: "http://alertd.example/#/rules/disk".into(),
        }
    }

    fn notification(statuses: &[AlertStatus]) -> Notification {
        let alerts = statuses
            .iter()
            .enumerate()
            .map(|(i, s)| {
                alert(
                    label_set([
                        ("alertname", "DiskFull"),
                        ("instance", "node0003"),
                        ("env", "prod"),
                        ("disk", if i == 0 { "sda" } else { "sdb" }),
                    ]),
                    label_set([("summary", "disk <b>full</b> & more")]),
                    *s,
                )
            })
            .collect();
        Notification {
            receiver: "ops team".into(),
            group_key: "{}:{alertname=\"DiskFull\"}".into(),
            group_labels: label_set([("alertname", "DiskFull"), ("instance", "node0003")]),
            alerts,
            truncated: 0,
            external_url: "http://alertd.example:9092/".into(),
            reason: "first notification".into(),
        }
    }

    fn config() -> EmailConfig {
        toml::from_str(
            r#"
            to = ["ops@example.com", "Second <second@example.com>"]
            from = "alertd <alertd@example.com>"
            smarthost = "127.0.0.1:2525"
            tls = "none"
            "#,
        )
        .unwrap()
    }

    fn header<'a>(message: &'a str, name: &str) -> Vec<&'a str> {
        let head = message.split("\r\n\r\n").next().unwrap();
        head.split("\r\n")
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then_some(v.trim())
            })
            .collect()
    }

    #[test]
    fn default_subject_firing_and_resolved() {
        use AlertStatus::*;
        assert_eq!(
            default_subject(&notification(&[Firing, Firing])),
            "[FIRING:2] DiskFull node0003 (prod)"
        );
        assert_eq!(
            default_subject(&notification(&[Firing, Resolved])),
            "[FIRING:1] DiskFull node0003 (prod)"
        );
        assert_eq!(
            default_subject(&notification(&[Resolved, Resolved])),
            "[RESOLVED] DiskFull node0003 (prod)"
        );
        // One alert: every label is common; the non-group ones go in parentheses, by name.
        assert_eq!(
            default_subject(&notification(&[Firing])),
            "[FIRING:1] DiskFull node0003 (sda prod)"
        );
        let mut n = notification(&[Firing, Firing]);
        n.group_labels = LabelSet::new();
        assert_eq!(default_subject(&n), "[FIRING:2] (DiskFull prod node0003)");
    }

    #[test]
    fn default_bodies_escape_and_link() {
        let n = notification(&[AlertStatus::Firing, AlertStatus::Resolved]);
        let html = default_html(&n);
        assert!(
            html.contains("disk &lt;b&gt;full&lt;/b&gt; &amp; more"),
            "{html}"
        );
        assert!(!html.contains("<b>full"), "{html}");
        assert!(html.contains(
            "<a href=\"http://alertd.example:9092/#/alerts?receiver=ops+team\">View in alertd</a>"
        ));
        assert!(html.contains("<h3>[1] Firing</h3>") && html.contains("<h3>[1] Resolved</h3>"));
        assert!(html.contains("2 alerts for alertname=DiskFull instance=node0003"));
        assert!(html.contains("<a href=\"http://alertd.example/#/rules/disk\">Source</a>"));
        assert!(html.contains("Ended: 2023-11-14T22:23:20Z"));
        assert!(html.contains("Sent by alertd"));

        let mut evil = notification(&[AlertStatus::Firing]);
        evil.alerts[0].generator_url = "javascript:alert(1)".into();
        evil.alerts[0]
            .labels
            .insert("x\"><script>".into(), "<img src=x onerror=alert(1)>".into());
        let html = default_html(&evil);
        assert!(
            !html.contains("<script>") && !html.contains("<img"),
            "{html}"
        );
        assert!(!html.contains("href=\"javascript:"), "{html}");

        let text = default_text(&n);
        assert!(
            text.contains("[1] Firing") && text.contains("[1] Resolved"),
            "{text}"
        );
        assert!(text.contains("summary = disk <b>full</b> & more"), "{text}");
        assert!(
            text.contains("View in alertd: http://alertd.example:9092/#/alerts?receiver=ops+team")
        );
    }

    #[test]
    fn render_builds_a_multipart_message() {
        let r = EmailReceiver::new("ops", &config()).unwrap();
        let m = r
            .render(&notification(&[AlertStatus::Firing, AlertStatus::Firing]))
            .unwrap();
        assert_eq!(m.from, "alertd@example.com");
        assert_eq!(m.to, ["ops@example.com", "second@example.com"]);
        assert_eq!(
            header(&m.message, "Subject"),
            ["[FIRING:2] DiskFull node0003 (prod)"]
        );
        assert_eq!(header(&m.message, "Date").len(), 1);
        assert_eq!(header(&m.message, "Message-ID").len(), 1);
        assert!(m.message.contains("multipart/alternative"));
        let plain = m.message.find("text/plain").unwrap();
        let html = m.message.find("text/html").unwrap();
        assert!(plain < html);
    }

    #[test]
    fn header_injection_is_neutralised() {
        let mut cfg = config();
        cfg.headers
            .insert("X-Host".into(), "{{ .CommonLabels.instance }}".into());
        let r = EmailReceiver::new("ops", &cfg).unwrap();
        let mut n = notification(&[AlertStatus::Firing]);
        for a in &mut n.alerts {
            a.labels
                .insert("instance".into(), "x\r\nBcc: evil@example.com".into());
        }
        n.group_labels
            .insert("instance".into(), "x\r\nBcc: evil@example.com".into());
        let m = r.render(&n).unwrap();
        assert!(header(&m.message, "Bcc").is_empty(), "{}", m.message);
        assert_eq!(header(&m.message, "X-Host"), ["x  Bcc: evil@example.com"]);
        assert!(header(&m.message, "Subject")[0].contains("x  Bcc: evil@example.com"));
        assert!(!m.to.iter().any(|t| t.contains("evil")));

        let e = r
            .render_event(&[], "hi\r\nBcc: evil@example.com", "body", None)
            .unwrap();
        assert!(header(&e.message, "Bcc").is_empty(), "{}", e.message);
    }

    #[test]
    fn templates_are_used_when_set() {
        let mut cfg = config();
        cfg.subject =
            Some("{{ .Status }}: {{ .CommonLabels.alertname }} ({{ len .Alerts }})".into());
        cfg.text = Some("text {{ range .Alerts }}{{ .Labels.disk }} {{ end }}".into());
        cfg.html = Some("<p>{{ .Receiver }}</p>".into());
        cfg.headers
            .insert("X-Receiver".into(), "{{ .Receiver }}".into());
        let r = EmailReceiver::new("ops", &cfg).unwrap();
        let m = r
            .render(&notification(&[AlertStatus::Firing, AlertStatus::Firing]))
            .unwrap();
        assert_eq!(header(&m.message, "Subject"), ["firing: DiskFull (2)"]);
        assert_eq!(header(&m.message, "X-Receiver"), ["ops team"]);
        assert!(m.message.contains("text sda sdb "), "{}", m.message);
        assert!(m.message.contains("<p>ops team</p>"), "{}", m.message);

        // An empty HTML template sends text only.
        cfg.html = Some(String::new());
        let r = EmailReceiver::new("ops", &cfg).unwrap();
        let m = r.render(&notification(&[AlertStatus::Firing])).unwrap();
        assert!(!m.message.contains("text/html"));
    }

    #[test]
    fn render_event_overrides_recipients() {
        let r = EmailReceiver::new("ops", &config()).unwrap();
        let m = r
            .render_event(
                &["oncall@example.com".into()],
                "CPU high",
                "details",
                Some("<b>details</b>"),
            )
            .unwrap();
        assert_eq!(m.to, ["oncall@example.com"]);
        assert_eq!(header(&m.message, "Subject"), ["CPU high"]);
        assert!(m.message.contains("text/html"));
        let m = r.render_event(&[], "CPU high", "details", None).unwrap();
        assert_eq!(m.to, ["ops@example.com", "second@example.com"]);
        assert!(!m.message.contains("text/html"));
        let e = r
            .render_event(&["ok@example.com".into(), "nope".into()], "s", "t", None)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "receiver \"ops\": to[1]: invalid address \"nope\""
        );
    }

    fn new_err(cfg: &EmailConfig) -> String {
        EmailReceiver::new("ops", cfg).unwrap_err().to_string()
    }

    #[test]
    fn config_validation_names_the_field() {
        let mut c = config();
        c.to[1] = "x".into();
        assert_eq!(
            new_err(&c),
            "receiver \"ops\": email.to[1]: invalid address \"x\""
        );

        let mut c = config();
        c.to.clear();
        assert!(new_err(&c).starts_with("receiver \"ops\": email.to: "));

        let mut c = config();
        c.from = "not an address".into();
        assert!(new_err(&c).contains("email.from: invalid address"));

        for bad in ["localhost", "host:", "host:99999", ":25", "::1:25"] {
            let mut c = config();
            c.smarthost = bad.into();
            assert!(new_err(&c).contains("email.smarthost:"), "{bad}");
        }
        let mut c = config();
        c.smarthost = "[::1]:25".into();
        assert!(EmailReceiver::new("ops", &c).is_ok());

        let mut c = config();
        c.headers.insert("Bad Name".into(), "v".into());
        assert!(new_err(&c).contains("email.headers.Bad Name: invalid header name"));

        let mut c = config();
        c.headers.insert("bcc".into(), "v".into());
        assert!(new_err(&c).contains("email.headers.bcc: bcc is set by alertd"));

        let mut c = config();
        c.subject = Some("{{ .Status ".into());
        assert!(new_err(&c).contains("email.subject: template:"));

        let mut c = config();
        c.timeout = Some("soon".into());
        assert!(new_err(&c).contains("email.timeout:"));

        let mut c = config();
        c.auth_username = Some("u".into());
        assert!(new_err(&c).contains("email.auth_password:"));

        let mut c = config();
        c.auth_username = Some("u".into());
        c.auth_password = Some("p".into());
        c.auth_mechanisms = Some(vec!["CRAM-MD5".into()]);
        assert!(new_err(&c).contains("email.auth_mechanisms[0]: unknown mechanism"));

        let mut c = config();
        c.tls = TlsMode::Starttls;
        c.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(new_err(&c).contains("email.ca_file: /nonexistent/ca.pem"));

        let mut c = config();
        c.auth_username = Some("u".into());
        c.auth_password_file = Some("/nonexistent/pw".into());
        assert!(new_err(&c).contains("email.auth_password_file: /nonexistent/pw"));
    }

    #[test]
    fn config_parsing_rejects_unknown_and_missing_fields() {
        let e = toml::from_str::<EmailConfig>(
            r#"
            to = ["a@example.com"]
            from = "b@example.com"
            smarthost = "localhost:25"
            smtp_host = "x"
            "#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `smtp_host`"), "{e}");
        let e = toml::from_str::<EmailConfig>(
            r#"
            from = "b@example.com"
            smarthost = "localhost:25"
            "#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("missing field `to`"), "{e}");
        let c: EmailConfig = toml::from_str(
            r#"
            to = ["a@example.com"]
            from = "b@example.com"
            smarthost = "localhost:25"
            "#,
        )
        .unwrap();
        assert_eq!(c.tls, TlsMode::Starttls);
        assert!(!c.send_resolved && !c.insecure_skip_verify);
        let r = EmailReceiver::new("ops", &c).unwrap();
        assert!(!r.send_resolved());
        let e = toml::from_str::<EmailConfig>(
            r#"
            to = ["a@example.com"]
            from = "b@example.com"
            smarthost = "localhost:25"
            tls = "ssl"
            "#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown variant `ssl`"), "{e}");
    }

    #[test]
    fn documented_example_parses() {
        let doc = include_str!("../../docs/receivers-email.md");
        let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
        let end = start + doc[start..].find("```").unwrap();
        let v: toml::Value = toml::from_str(&doc[start..end]).unwrap();
        let email = v["receivers"][0]["email"].clone();
        let c: EmailConfig = email.try_into().unwrap();
        assert_eq!(c.to.len(), 2);
        assert_eq!(c.tls, TlsMode::Starttls);
        assert!(c.send_resolved);
        assert_eq!(c.headers.len(), 2);
        assert_eq!(v["receivers"][0]["name"].as_str(), Some("ops"));
    }

    #[test]
    fn password_file_is_read_without_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\n").unwrap();
        let mut c = config();
        c.auth_username = Some("u".into());
        c.auth_password_file = Some(p);
        let r = EmailReceiver::new("ops", &c).unwrap();
        assert!(!format!("{r:?}").contains("s3cret"));
    }
}
