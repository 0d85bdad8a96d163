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
        }
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
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 25 * 1024 * 1024,
            queue_batches: 256,
            queue_bytes: 64 * 1024 * 1024,
            retry_after_secs: 1,
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
    /// Threads evaluating rules; rules are spread over them by the measurement they read.
    /// 0 means one per CPU core.
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
mod duration_str {
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
