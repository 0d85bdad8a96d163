//! The service's configuration: a TOML file (`alertd run --config alertd.toml`) or, with no file,
//! the embedded defaults. Every field is documented here and in `docs/configuration.md`; an
//! unknown key is an error naming the file, line and key.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid for this configuration.
    #[error("{}:{line}:{col}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        col: usize,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address and port to listen on. Loopback by default; use `0.0.0.0:9092` to accept agents
    /// from other hosts.
    pub listen: SocketAddr,
    /// Directory of state: the SQLite database `alertd.db` lives here.
    pub data_dir: PathBuf,
    /// Directory of `*.tick` rules, loaded at start and on reload.
    pub rules_dir: PathBuf,
    /// Directory of receiver and routing files.
    pub receivers_dir: PathBuf,
    /// Ingest limits and queues.
    pub ingest: IngestConfig,
    /// Rule evaluation.
    pub rules: RulesConfig,
    /// The alert manager: alerts, silences, notifications.
    pub alerts: AlertsConfig,
    /// Connections, timeouts and TLS of the HTTP server.
    pub http: HttpConfig,
    /// Bearer tokens and their scopes; with none, every endpoint is open (bind to loopback).
    pub auth: AuthConfig,
    /// Passive checks: SOFT/HARD attempts, freshness and flap detection.
    pub checks: crate::checks::state::ChecksConfig,
    /// The host registry: which tag names a host, when a silent host is forgotten.
    pub hosts: crate::hosts::HostsConfig,
    /// The web UI's sessions.
    pub ui: crate::ui::UiConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            data_dir: PathBuf::from("data"),
            rules_dir: PathBuf::from("rules"),
            receivers_dir: PathBuf::from("receivers"),
            ingest: IngestConfig::default(),
            rules: RulesConfig::default(),
            alerts: AlertsConfig::default(),
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            ui: crate::ui::UiConfig::default(),
            checks: crate::checks::state::ChecksConfig::default(),
            hosts: crate::hosts::HostsConfig::default(),
        }
    }
}

/// The HTTP server's connections, timeouts and TLS.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(try_from = "RawHttpConfig")]
pub struct HttpConfig {
    /// Connections served at once; further clients wait in the kernel's accept queue until one
    /// closes, so a flood of connections cannot exhaust memory or file descriptors.
    pub max_connections: usize,
    /// A request must be read and answered within this time, or it gets 408 (e.g. `30s`).
    /// Streams such as `alertd record` are not cut: the limit is on producing the response.
    pub request_timeout: Duration,
    /// A connection on which the client sends nothing for this long is closed: covers a client
    /// that connects and sends nothing, a stalled request and idle keep-alive connections.
    pub idle_timeout: Duration,
    /// A TLS handshake must finish within this time.
    pub tls_handshake_timeout: Duration,
    /// PEM certificate chain; with `tls_key`, the server speaks HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: 1024,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            tls_handshake_timeout: Duration::from_secs(10),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// `[http]` as written, before the checks that span fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHttpConfig {
    max_connections: usize,
    #[serde(with = "duration_str")]
    request_timeout: Duration,
    #[serde(with = "duration_str")]
    idle_timeout: Duration,
    #[serde(with = "duration_str")]
    tls_handshake_timeout: Duration,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

impl Default for RawHttpConfig {
    fn default() -> Self {
        let d = HttpConfig::default();
        RawHttpConfig {
            max_connections: d.max_connections,
            request_timeout: d.request_timeout,
            idle_timeout: d.idle_timeout,
            tls_handshake_timeout: d.tls_handshake_timeout,
            tls_cert: d.tls_cert,
            tls_key: d.tls_key,
        }
    }
}

impl TryFrom<RawHttpConfig> for HttpConfig {
    type Error = String;

    fn try_from(r: RawHttpConfig) -> Result<Self, String> {
        if r.max_connections == 0 {
            return Err("max_connections: must be at least 1".into());
        }
        if r.tls_cert.is_some() != r.tls_key.is_some() {
            return Err("tls_cert and tls_key: give both or neither".into());
        }
        for (name, d) in [
            ("request_timeout", r.request_timeout),
            ("idle_timeout", r.idle_timeout),
            ("tls_handshake_timeout", r.tls_handshake_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{name}: must be more than 0"));
            }
        }
        Ok(HttpConfig {
            max_connections: r.max_connections,
            request_timeout: r.request_timeout,
            idle_timeout: r.idle_timeout,
            tls_handshake_timeout: r.tls_handshake_timeout,
            tls_cert: r.tls_cert,
            tls_key: r.tls_key,
        })
    }
}

/// What a token may do.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send data: the write endpoints (InfluxDB, Prometheus remote write), alerts posted to
    /// `/api/v2/alerts`, passive check results.
    Write,
    /// Read: every `GET` endpoint, `/metrics` and the UI.
    Read,
    /// Change: silences, reload, acknowledge, retire. Includes `read`.
    Admin,
}

/// Token authentication.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(try_from = "RawAuthConfig")]
pub struct AuthConfig {
    /// The accepted tokens. When the list is not empty, every endpoint but `/-/healthy` needs
    /// one: missing or unknown is 401, a token without the needed scope is 403.
    pub tokens: Vec<TokenConfig>,
}

/// One token.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (shown in logs, never the token itself).
    pub name: String,
    /// The secret, sent as `Authorization: Bearer <token>` (or `Token <token>`, Basic auth's
    /// password, InfluxDB's `p` parameter).
    pub token: String,
    /// What it may do: any of `write`, `read`, `admin`.
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAuthConfig {
    tokens: Vec<TokenConfig>,
}

impl TryFrom<RawAuthConfig> for AuthConfig {
    type Error = String;

    fn try_from(r: RawAuthConfig) -> Result<Self, String> {
        for (i, t) in r.tokens.iter().enumerate() {
            if t.token.len() < 8 {
                return Err(format!(
                    "tokens[{i}] ({}): token must be at least 8 characters",
                    t.name
                ));
            }
            if t.scopes.is_empty() {
                return Err(format!(
                    "tokens[{i}] ({}): scopes must not be empty",
                    t.name
                ));
            }
            if r.tokens[..i].iter().any(|o| o.token == t.token) {
                return Err(format!(
                    "tokens[{i}] ({}): the same token is given twice",
                    t.name
                ));
            }
        }
        Ok(AuthConfig { tokens: r.tokens })
    }
}

/// Alert manager settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// The URL users reach alertd at, for links in notifications (`http://alertd.example.com`).
    /// Default: `http://` and the listen address.
    pub external_url: Option<String>,
    /// An alert posted without `endsAt` is considered resolved this long after its last update,
    /// unless posted again (Alertmanager's `resolve_timeout`).
    #[serde(with = "duration_str")]
    pub resolve_timeout: Duration,
    /// Expired silences are kept this long (for the UI and `amtool silence query --expired`),
    /// then purged.
    #[serde(with = "duration_str")]
    pub silence_retention: Duration,
    /// Notifications older than this that were delivered or given up are purged from the outbox.
    #[serde(with = "duration_str")]
    pub notification_retention: Duration,
    /// Notifications waiting for or in delivery per receiver; beyond it they wait in SQLite,
    /// never in memory.
    pub receiver_queue: usize,
    /// Deliveries in flight at once per receiver.
    pub receiver_concurrency: usize,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            external_url: None,
            resolve_timeout: Duration::from_secs(5 * 60),
            silence_retention: Duration::from_secs(120 * 3600),
            notification_retention: Duration::from_secs(120 * 3600),
            receiver_queue: 256,
            receiver_concurrency: 4,
        }
    }
}

/// Limits of the write endpoints.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest accepted body in bytes after decompression; larger requests get 413, and a gzip
    /// body is cut off at this size while it is decompressed.
    pub max_body_bytes: usize,
    /// Batches of points waiting for the rules engine. When the queue is full, writes get 429
    /// with `Retry-After` instead of growing memory.
    pub queue_batches: usize,
    /// Bytes of request bodies, with their parsed points, waiting for the rules engine; past it
    /// writes get 429 too, so the queue's memory is bounded whatever the batch size.
    pub queue_bytes: usize,
    /// Seconds a client is told to wait (`Retry-After`) when the queue is full.
    pub retry_after_secs: u64,
    /// How long a write that arrives while the queue is full waits for room before it gets
    /// 429 (e.g. `1s`; `0s` refuses at once). Its body is read only once there is room, each
    /// batch leaving the queue lets one waiting write through, and the client sends the batch
    /// once instead of retrying it.
    #[serde(with = "duration_str")]
    pub queue_wait: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 25 * 1024 * 1024,
            queue_batches: 256,
            queue_bytes: 64 * 1024 * 1024,
            retry_after_secs: 1,
            queue_wait: Duration::from_secs(1),
        }
    }
}

/// Rule evaluation settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// A group with no point for this long is dropped with its state (e.g. `15m`).
    #[serde(with = "duration_str")]
    pub group_expiry: Duration,
    /// A window whose group has been silent past the window's end plus this grace is emitted on
    /// the wall clock; deadman checks also allow points this late (e.g. `5s`).
    #[serde(with = "duration_str")]
    pub grace: Duration,
    /// Threads evaluating rules. A rule grouped by the host tag runs on every thread, each
    /// taking its share of the hosts; another rule runs on the thread chosen by the measurement
    /// it reads. 0 means one per CPU core.
    pub engine_threads: usize,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            group_expiry: Duration::from_secs(15 * 60),
            grace: Duration::from_secs(5),
            engine_threads: 0,
        }
    }
}

impl Config {
    /// The URL links in notifications point at.
    pub fn external_url(&self) -> String {
        match &self.alerts.external_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None if self.http.tls_cert.is_some() => format!("https://{}", self.listen),
            None => format!("http://{}", self.listen),
        }
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("alertd.db")
    }

    /// Parses a configuration file's text; errors carry the line and column.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                col,
                message: e.message().to_string(),
            }
        })
    }

    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }
}

/// 1-based line and column of a byte offset in `text` (for TOML errors).
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |n| before.len() - n - 1)
        + 1;
    (line, col)
}

/// Durations written as `15m`, `5s`, `250ms`.
pub(crate) mod duration_str {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        crate::rules::parser::parse_duration(&s)
            .filter(|ns| *ns >= 0)
            .map(|ns| Duration::from_nanos(ns as u64))
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "'{s}' is not a duration such as 15m, 5s or 250ms"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_embedded_default() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(c.database_path(), PathBuf::from("data/alertd.db"));
        assert_eq!(c.rules_dir, PathBuf::from("rules"));
        assert_eq!(c.ingest.max_body_bytes, 25 * 1024 * 1024);
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("../docs/configuration.md");
        let start = doc.find("```toml\n").expect("example block") + 8;
        let end = start + doc[start..].find("```").expect("end of block");
        let c = Config::parse(Path::new("example.toml"), &doc[start..end]).expect("example parses");
        assert_eq!(c.listen.to_string(), "0.0.0.0:9092");
        assert_eq!(c.rules.group_expiry, Duration::from_secs(30 * 60));
    }

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        let err = Config::parse(
            Path::new("alertd.toml"),
            "listen = \"127.0.0.1:9092\"\n\n[ingest]\nmax_body = 5\n",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("alertd.toml:4:1: unknown field `max_body`"),
            "{msg}"
        );
    }

    #[test]
    fn bad_durations_are_explained() {
        let err =
            Config::parse(Path::new("a.toml"), "[rules]\ngroup_expiry = \"soon\"\n").unwrap_err();
        assert!(
            err.to_string().contains("'soon' is not a duration"),
            "{err}"
        );
    }
}
