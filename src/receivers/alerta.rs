//! The Alerta receiver: its configuration (`[receivers.alerta]`), validation, rendering of a
//! notification into Alerta alert bodies (one per alert), and delivery by `POST {url}/alert`.
//!
//! Alerta keys alerts by environment, resource and event; a resolved alert is sent again with
//! the configured resolved severity (`normal` by default), which makes Alerta close it. Text
//! fields may be Go templates rendered per alert against `Labels`, `Annotations`, `Status`,
//! `StartsAt`, `EndsAt`, `Fingerprint` and `GeneratorURL`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::Outcome;
use super::notification::{AlertStatus, Notification, NotifiedAlert, TemplateJson, rfc3339};
use crate::manager::route::parse_duration;
use crate::rules::template::Template;

/// Default `http_timeout`.
const DEFAULT_HTTP_TIMEOUT: &str = "10s";
/// Longest response body read for an error message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Configuration of an Alerta receiver (`[receivers.alerta]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertaConfig {
    /// Base URL of the Alerta API, e.g. `http://alerta:8080` (or `http://host/api` behind a
    /// proxy). Alerts are POSTed to `{url}/alert`; a trailing slash is tolerated. Required.
    pub url: String,
    /// API key with scope `write:alerts`, sent as `Authorization: Key <key>`. Default: none.
    #[serde(default)]
    pub api_key: Option<String>,
    /// File holding the API key (surrounding whitespace is ignored); exclusive with `api_key`.
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Alerta environment; must be one of the server's `ALLOWED_ENVIRONMENTS`.
    /// Default `Production`.
    #[serde(default = "default_environment")]
    pub environment: String,
    /// Template for the resource. Default: label `host`, else `instance`, else `alertname`.
    #[serde(default)]
    pub resource: Option<String>,
    /// Template for the event. Default: label `alertname`.
    #[serde(default)]
    pub event: Option<String>,
    /// Templates for the services; empty renders are dropped. Default (or when all render
    /// empty): `[label service]` if present, else `[alertname]`. Never sent empty.
    #[serde(default)]
    pub service: Vec<String>,
    /// Template for the group. Default `alertd`.
    #[serde(default)]
    pub group: Option<String>,
    /// Template for the value. Default: annotation `value` (omitted when absent).
    #[serde(default)]
    pub value: Option<String>,
    /// Template for the text. Default: annotation `message`, else `summary`, else
    /// `description`.
    #[serde(default)]
    pub text: Option<String>,
    /// Templates for the tags; empty renders are dropped. Default: none.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Extra attributes, values are templates. Keys must be non-empty without `.` or `$`.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Origin of the alerts. Default `alertd`.
    #[serde(default = "default_origin")]
    pub origin: String,
    /// Events that correlate with this one (e.g. `["DiskFull", "DiskOK"]`). Default: none.
    #[serde(default)]
    pub correlate: Vec<String>,
    /// Seconds until Alerta expires an alert not received again (0 = never). Default: omitted,
    /// so the server's `ALERT_TIMEOUT` (86400) applies.
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Severity sent for resolved alerts: `normal`, `ok` or `cleared`. Default `normal`.
    #[serde(default = "default_resolved_severity")]
    pub resolved_severity: String,
    /// Whether resolved alerts are sent (so Alerta closes them). Default `true`.
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Timeout of one HTTP request (e.g. `10s`). Default `10s`.
    #[serde(default)]
    pub http_timeout: Option<String>,
}

fn default_environment() -> String {
    "Production".into()
}
fn default_origin() -> String {
    "alertd".into()
}
fn default_resolved_severity() -> String {
    "normal".into()
}
fn default_true() -> bool {
    true
}

/// Per-alert overrides from a TICK `.alerta()` handler chain, already rendered (`None` or empty =
/// use the receiver's configuration).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertaOverrides {
    /// `.resource()`.
    pub resource: Option<String>,
    /// `.event()`.
    pub event: Option<String>,
    /// `.environment()`.
    pub environment: Option<String>,
    /// `.group()`.
    pub group: Option<String>,
    /// `.value()`.
    pub value: Option<String>,
    /// `.origin()`.
    pub origin: Option<String>,
    /// The alert message (Kapacitor sends it as the text).
    pub text: Option<String>,
    /// `.services()`; replaces the configured services when non-empty.
    pub services: Vec<String>,
    /// `.correlated()`; replaces the configured correlate list when non-empty.
    pub correlate: Vec<String>,
    /// `.timeout()` in seconds.
    pub timeout: Option<u64>,
}

/// An invalid Alerta receiver configuration, naming the receiver and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("receiver {receiver:?}: alerta.{field}: {message}")]
pub struct AlertaError {
    /// The receiver's name.
    pub receiver: String,
    /// The field, e.g. `url`, `service[1]`, `attributes.team`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// A validated Alerta receiver with its templates parsed.
#[derive(Debug, Clone)]
pub struct AlertaReceiver {
    name: String,
    post_url: String,
    api_key: Option<String>,
    environment: String,
    resource: Option<Template>,
    event: Option<Template>,
    service: Vec<Template>,
    group: Option<Template>,
    value: Option<Template>,
    text: Option<Template>,
    tags: Vec<Template>,
    attributes: Vec<(String, Template)>,
    origin: String,
    correlate: Vec<String>,
    timeout: Option<u64>,
    resolved_severity: String,
    send_resolved: bool,
    http_timeout: Duration,
}

impl AlertaReceiver {
    /// Validates `cfg` (URL, key, templates, attribute keys, severities, durations) and reads
    /// `api_key_file`. Errors name the receiver and the field.
    pub fn new(name: &str, cfg: &AlertaConfig) -> Result<AlertaReceiver, AlertaError> {
        let err = |field: &str, message: String| AlertaError {
            receiver: name.to_string(),
            field: field.to_string(),
            message,
        };
        let tpl = |field: &str, src: &str| {
            Template::parse(src).map_err(|e| err(field, format!("{e} in {src:?}")))
        };
        let opt_tpl =
            |field: &str, src: &Option<String>| -> Result<Option<Template>, AlertaError> {
                src.as_deref().map(|s| tpl(field, s)).transpose()
            };

        let post_url = validate_url(&cfg.url).map_err(|m| err("url", m))?;

        let api_key = match (&cfg.api_key, &cfg.api_key_file) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "api_key_file",
                    "set either api_key or api_key_file, not both".into(),
                ));
            }
            (Some(k), None) => Some(validate_key(k.trim()).map_err(|m| err("api_key", m))?),
            (None, Some(path)) => {
                let raw = std::fs::read_to_string(path)
                    .map_err(|e| err("api_key_file", format!("{}: {e}", path.display())))?;
                Some(
                    validate_key(raw.trim())
                        .map_err(|m| err("api_key_file", format!("{}: {m}", path.display())))?,
                )
            }
            (None, None) => None,
        };

        if cfg.environment.trim().is_empty() {
            return Err(err(
                "environment",
                "must not be empty (Alerta's reject plugin refuses it)".into(),
            ));
        }
        if cfg.origin.trim().is_empty() {
            return Err(err("origin", "must not be empty".into()));
        }

        let resolved_severity = cfg.resolved_severity.to_ascii_lowercase();
        if !matches!(resolved_severity.as_str(), "normal" | "ok" | "cleared") {
            return Err(err(
                "resolved_severity",
                format!(
                    "{:?} is not one of normal, ok, cleared (Alerta closes only those)",
                    cfg.resolved_severity
                ),
            ));
        }

        let http_timeout =
            parse_duration(cfg.http_timeout.as_deref().unwrap_or(DEFAULT_HTTP_TIMEOUT))
                .map_err(|e| err("http_timeout", e.to_string()))?;
        if http_timeout.is_zero() {
            return Err(err("http_timeout", "must be greater than 0".into()));
        }

        let service = cfg
            .service
            .iter()
            .enumerate()
            .map(|(i, s)| tpl(&format!("service[{i}]"), s))
            .collect::<Result<Vec<_>, _>>()?;
        let tags = cfg
            .tags
            .iter()
            .enumerate()
            .map(|(i, s)| tpl(&format!("tags[{i}]"), s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut attributes = Vec::with_capacity(cfg.attributes.len());
        for (k, v) in &cfg.attributes {
            let field = format!("attributes.{k}");
            if k.is_empty() || k.contains('.') || k.contains('$') {
                return Err(err(
                    &field,
                    format!("key {k:?} must be non-empty and contain neither '.' nor '$'"),
                ));
            }
            attributes.push((k.clone(), tpl(&field, v)?));
        }
        for (i, c) in cfg.correlate.iter().enumerate() {
            if c.trim().is_empty() {
                return Err(err(&format!("correlate[{i}]"), "must not be empty".into()));
            }
        }

        Ok(AlertaReceiver {
            name: name.to_string(),
            post_url,
            api_key,
            environment: cfg.environment.clone(),
            resource: opt_tpl("resource", &cfg.resource)?,
            event: opt_tpl("event", &cfg.event)?,
            service,
            group: opt_tpl("group", &cfg.group)?,
            value: opt_tpl("value", &cfg.value)?,
            text: opt_tpl("text", &cfg.text)?,
            tags,
            attributes,
            origin: cfg.origin.clone(),
            correlate: cfg.correlate.clone(),
            timeout: cfg.timeout,
            resolved_severity,
            send_resolved: cfg.send_resolved,
            http_timeout,
        })
    }

    /// Whether resolved alerts are sent.
    pub fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    /// The full URL alerts are POSTed to (`{url}/alert`).
    pub fn url(&self) -> String {
        self.post_url.clone()
    }

    /// The timeout of one HTTP request.
    pub fn http_timeout(&self) -> Duration {
        self.http_timeout
    }

    /// One Alerta alert body per alert of the notification (resolved ones only when
    /// `send_resolved`). Overrides that are `None` or empty leave the configuration in force.
    pub fn render(&self, n: &Notification, ov: &AlertaOverrides) -> Vec<Json> {
        n.alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing || self.send_resolved)
            .map(|a| self.render_alert(a, ov))
            .collect()
    }

    fn render_alert(&self, a: &NotifiedAlert, ov: &AlertaOverrides) -> Json {
        let data = alert_data(a);
        let render = |t: &Template| {
            let (s, report) = t.render_to_string(&data);
            if let Some(problem) = report.first_error {
                tracing::warn!(receiver = %self.name, template = t.source(), %problem,
                    "An Alerta template rendered with problems.");
            }
            s.trim().to_string()
        };
        let rendered = |t: &Option<Template>| t.as_ref().map(render).filter(|s| !s.is_empty());
        let label = |k: &str| {
            a.labels
                .get(k)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let annotation = |k: &str| {
            a.annotations
                .get(k)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let pick = |o: &Option<String>| o.as_ref().filter(|s| !s.trim().is_empty()).cloned();

        let resource = pick(&ov.resource)
            .or_else(|| rendered(&self.resource))
            .or_else(|| label("host"))
            .or_else(|| label("instance"))
            .or_else(|| label("alertname"))
            .unwrap_or_else(|| format!("{:016x}", a.fingerprint));
        let event = pick(&ov.event)
            .or_else(|| rendered(&self.event))
            .or_else(|| label("alertname"))
            .unwrap_or_else(|| "alert".to_string());
        let environment = pick(&ov.environment).unwrap_or_else(|| self.environment.clone());
        let group = pick(&ov.group)
            .or_else(|| rendered(&self.group))
            .unwrap_or_else(|| "alertd".to_string());
        let value = pick(&ov.value)
            .or_else(|| rendered(&self.value))
            .or_else(|| annotation("value"));
        let text = pick(&ov.text)
            .or_else(|| rendered(&self.text))
            .or_else(|| annotation("message"))
            .or_else(|| annotation("summary"))
            .or_else(|| annotation("description"))
            .unwrap_or_default();
        let origin = pick(&ov.origin).unwrap_or_else(|| self.origin.clone());

        let mut service: Vec<String> = ov
            .services
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if service.is_empty() {
            service = self
                .service
                .iter()
                .map(render)
                .filter(|s| !s.is_empty())
                .collect();
        }
        if service.is_empty() {
            service.push(
                label("service")
                    .or_else(|| label("alertname"))
                    .unwrap_or_else(|| event.clone()),
            );
        }
        let correlate: Vec<String> = if ov.correlate.iter().any(|c| !c.trim().is_empty()) {
            ov.correlate
                .iter()
                .filter(|c| !c.trim().is_empty())
                .cloned()
                .collect()
        } else {
            self.correlate.clone()
        };
        let tags: Vec<String> = self
            .tags
            .iter()
            .map(render)
            .filter(|s| !s.is_empty())
            .collect();

        let mut attributes = Map::new();
        attributes.insert(
            "alertdFingerprint".into(),
            format!("{:016x}", a.fingerprint).into(),
        );
        attributes.insert("startsAt".into(), rfc3339(a.starts_at).into());
        if !a.generator_url.is_empty() {
            attributes.insert("generatorURL".into(), a.generator_url.clone().into());
        }
        for (k, t) in &self.attributes {
            attributes.insert(k.clone(), render(t).into());
        }

        let (severity_name, create) = match a.status {
            AlertStatus::Firing => (
                severity(a.labels.get("severity").unwrap_or("")),
                a.starts_at,
            ),
            AlertStatus::Resolved => (
                resolved_name(&self.resolved_severity),
                a.ends_at.unwrap_or_else(Utc::now),
            ),
        };

        let mut body = json!({
            "resource": resource,
            "event": event,
            "environment": environment,
            "severity": severity_name,
            "correlate": correlate,
            "service": service,
            "group": group,
            "text": text,
            "tags": tags,
            "attributes": attributes,
            "origin": origin,
            "type": "alertdAlert",
            "createTime": create_time(create),
        });
        if let Json::Object(m) = &mut body {
            if let Some(v) = value {
                m.insert("value".into(), v.into());
            }
            if let Some(t) = ov.timeout.or(self.timeout) {
                m.insert("timeout".into(), t.into());
            }
        }
        body
    }

    /// POSTs one alert body. 2xx is `Sent`; 429, 5xx, connection errors and timeouts are
    /// `Retry`; other statuses are `Failed`. Reasons carry the HTTP status and Alerta's
    /// `message`.
    pub async fn send(&self, client: &reqwest::Client, body: &Json) -> Outcome {
        let mut req = client
            .post(&self.post_url)
            .timeout(self.http_timeout)
            .json(body);
        if let Some(key) = &self.api_key {
            req = req.header(reqwest::header::AUTHORIZATION, format!("Key {key}"));
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_builder() => {
                return Outcome::Failed(format!("alerta {}: {e}", self.post_url));
            }
            Err(e) => {
                return Outcome::Retry(format!("alerta {}: {}", self.post_url, error_chain(&e)));
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Outcome::Sent;
        }
        let message = error_message(resp).await;
        let reason = match message {
            Some(m) => format!("alerta {}: HTTP {status}: {m}", self.post_url),
            None => format!("alerta {}: HTTP {status}", self.post_url),
        };
        if status.as_u16() == 429 || status.is_server_error() {
            Outcome::Retry(reason)
        } else {
            Outcome::Failed(reason)
        }
    }
}

/// The per-alert template data: `Labels`, `Annotations`, `Status`, `StartsAt`, `EndsAt`,
/// `Fingerprint`, `GeneratorURL`.
fn alert_data(a: &NotifiedAlert) -> TemplateJson {
    let mut m = Map::new();
    m.insert("Labels".into(), json!(a.labels));
    m.insert("Annotations".into(), json!(a.annotations));
    m.insert("Status".into(), a.status.as_str().into());
    m.insert("StartsAt".into(), rfc3339(a.starts_at).into());
    m.insert(
        "EndsAt".into(),
        a.ends_at.map(rfc3339).unwrap_or_default().into(),
    );
    m.insert(
        "Fingerprint".into(),
        format!("{:016x}", a.fingerprint).into(),
    );
    m.insert("GeneratorURL".into(), a.generator_url.clone().into());
    TemplateJson(m)
}

/// `{url}/alert` for an `http://` or `https://` base URL with a host.
fn validate_url(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("is required (the Alerta API base URL, e.g. http://alerta:8080)".into());
    }
    let parsed = reqwest::Url::parse(trimmed).map_err(|e| format!("{trimmed:?}: {e}"))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "{trimmed:?}: scheme {other:?} is not http or https"
            ));
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{trimmed:?}: no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "{trimmed:?}: must be a base URL without query or fragment"
        ));
    }
    Ok(format!("{}/alert", trimmed.trim_end_matches('/')))
}

fn validate_key(key: &str) -> Result<String, String> {
    if key.is_empty() {
        return Err("the API key is empty".into());
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the API key must be printable ASCII without spaces".into());
    }
    Ok(key.to_string())
}

fn resolved_name(s: &str) -> &'static str {
    match s {
        "ok" => "ok",
        "cleared" => "cleared",
        _ => "normal",
    }
}

/// The `message` of an Alerta error response, if it is JSON with one.
async fn error_message(resp: reqwest::Response) -> Option<String> {
    let bytes = resp.bytes().await.ok()?;
    let bytes = &bytes[..bytes.len().min(MAX_ERROR_BODY)];
    let v: Json = serde_json::from_slice(bytes).ok()?;
    v.get("message")
        .and_then(Json::as_str)
        .map(str::to_string)
        .filter(|m| !m.is_empty())
}

/// An error with its sources (reqwest's top-level message hides "connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let msg = inner.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = inner.source();
    }
    s
}

/// The Alerta severity for an alertd `severity` label or TICK level (case-insensitive):
/// `critical`; `warning`/`warn` → `warning`; `info`/`informational` → `informational`;
/// `ok`/`normal` → `normal`; Alerta's own `security`, `major`, `minor`, `indeterminate`,
/// `debug`, `trace`, `unknown` pass through; anything else → `warning`.
pub fn severity(level_or_label: &str) -> &'static str {
    match level_or_label.trim().to_ascii_lowercase().as_str() {
        "critical" => "critical",
        "warning" | "warn" => "warning",
        "info" | "informational" => "informational",
        "ok" | "normal" => "normal",
        "security" => "security",
        "major" => "major",
        "minor" => "minor",
        "indeterminate" => "indeterminate",
        "debug" => "debug",
        "trace" => "trace",
        "unknown" => "unknown",
        _ => "warning",
    }
}

/// Alerta's `createTime` format: exactly `YYYY-MM-DDThh:mm:ss.sssZ` (UTC, milliseconds).
pub fn create_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::labels::{LabelSet, fingerprint, label_set};

    fn cfg(extra: &str) -> AlertaConfig {
        toml::from_str(&format!("url = \"http://alerta:8080/\"\n{extra}")).unwrap()
    }

    fn receiver(extra: &str) -> AlertaReceiver {
        AlertaReceiver::new("alerta", &cfg(extra)).unwrap()
    }

    fn t(secs: i64, ms: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, ms * 1_000_000).unwrap()
    }

    fn alert(labels: LabelSet, annotations: LabelSet, status: AlertStatus) -> NotifiedAlert {
        NotifiedAlert {
            status,
            fingerprint: fingerprint(&labels),
            labels,
            annotations,
            starts_at: t(1_700_000_000, 0),
            ends_at: (status == AlertStatus::Resolved).then(|| t(1_700_000_600, 250)),
            generator_url: String::new(),
        }
    }

    fn notification(alerts: Vec<NotifiedAlert>) -> Notification {
        Notification {
            receiver: "alerta".into(),
            group_key: "{}:{}".into(),
            group_labels: LabelSet::new(),
            alerts,
            truncated: 0,
            external_url: "http://localhost:9092".into(),
            reason: "first notification".into(),
        }
    }

    fn one(r: &AlertaReceiver, a: NotifiedAlert, ov: &AlertaOverrides) -> Json {
        let mut v = r.render(&notification(vec![a]), ov);
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    #[test]
    fn severity_mapping() {
        for (input, want) in [
            ("critical", "critical"),
            ("CRITICAL", "critical"),
            ("warning", "warning"),
            ("Warn", "warning"),
            ("info", "informational"),
            ("informational", "informational"),
            ("ok", "normal"),
            ("normal", "normal"),
            ("security", "security"),
            ("major", "major"),
            ("minor", "minor"),
            ("indeterminate", "indeterminate"),
            ("debug", "debug"),
            ("trace", "trace"),
            ("unknown", "unknown"),
            ("page", "warning"),
            ("", "warning"),
        ] {
            assert_eq!(severity(input), want, "{input}");
        }
    }

    #[test]
    fn create_time_has_milliseconds_and_z() {
        assert_eq!(create_time(t(1_700_000_000, 0)), "2023-11-14T22:13:20.000Z");
        assert_eq!(create_time(t(1_700_000_000, 7)), "2023-11-14T22:13:20.007Z");
        let sub = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(create_time(sub), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn defaults() {
        let r = receiver("");
        assert_eq!(r.url(), "http://alerta:8080/alert");
        assert!(r.send_resolved());
        assert_eq!(r.http_timeout(), Duration::from_secs(10));

        let a = alert(
            label_set([
                ("alertname", "DiskFull"),
                ("host", "node1"),
                ("instance", "node1:9100"),
                ("severity", "critical"),
            ]),
            label_set([("summary", "disk is full"), ("value", "97")]),
            AlertStatus::Firing,
        );
        let fp = format!("{:016x}", a.fingerprint);
        let b = one(&r, a, &AlertaOverrides::default());
        assert_eq!(b["resource"], "node1");
        assert_eq!(b["event"], "DiskFull");
        assert_eq!(b["environment"], "Production");
        assert_eq!(b["severity"], "critical");
        assert_eq!(b["service"], json!(["DiskFull"]));
        assert_eq!(b["group"], "alertd");
        assert_eq!(b["value"], "97");
        assert_eq!(b["text"], "disk is full");
        assert_eq!(b["tags"], json!([]));
        assert_eq!(b["correlate"], json!([]));
        assert_eq!(b["origin"], "alertd");
        assert_eq!(b["type"], "alertdAlert");
        assert_eq!(b["createTime"], "2023-11-14T22:13:20.000Z");
        assert_eq!(b["attributes"]["alertdFingerprint"], fp);
        assert_eq!(b["attributes"]["startsAt"], "2023-11-14T22:13:20Z");
        assert!(b["attributes"].get("generatorURL").is_none());
        assert!(b.get("timeout").is_none());
        assert!(b.get("rawData").is_none());

        // instance when there is no host; alertname when neither; service label preferred.
        let b = one(
            &r,
            alert(
                label_set([
                    ("alertname", "Down"),
                    ("instance", "db:5432"),
                    ("service", "db"),
                ]),
                LabelSet::new(),
                AlertStatus::Firing,
            ),
            &AlertaOverrides::default(),
        );
        assert_eq!(b["resource"], "db:5432");
        assert_eq!(b["service"], json!(["db"]));
        assert_eq!(b["severity"], "warning");
        assert!(b.get("value").is_none());
        assert_eq!(b["text"], "");
        let b = one(
            &r,
            alert(
                label_set([("alertname", "Down")]),
                label_set([("message", "m"), ("description", "d")]),
                AlertStatus::Firing,
            ),
            &AlertaOverrides::default(),
        );
        assert_eq!(b["resource"], "Down");
        assert_eq!(b["text"], "m");
    }

    #[test]
    fn service_is_never_empty() {
        // Configured service templates that render empty fall back; no labels at all still
        // yields one service.
        let r = receiver("service = [\"{{ .Labels.team }}\", \"\"]");
        let a = alert(LabelSet::new(), LabelSet::new(), AlertStatus::Firing);
        let b = one(&r, a, &AlertaOverrides::default());
        let svc = b["service"].as_array().unwrap();
        assert_eq!(svc.len(), 1);
        assert!(!svc[0].as_str().unwrap().is_empty());
        assert!(!b["resource"].as_str().unwrap().is_empty());
        assert!(!b["event"].as_str().unwrap().is_empty());
    }

    #[test]
    fn templates_and_overrides() {
        let r = receiver(
            r#"
environment = "Development"
resource = "{{ .Labels.host }}-{{ .Labels.disk }}"
event = "{{ .Labels.alertname }}:{{ .Status }}"
service = ["{{ .Labels.team }}", "storage"]
group = "{{ .Labels.team }}"
value = "{{ .Annotations.value }}%"
text = "{{ .Labels.host }} says {{ .Annotations.message }}"
tags = ["dc={{ .Labels.dc }}", "{{ .Labels.missing }}"]
correlate = ["DiskFull", "DiskOK"]
timeout = 600
origin = "alertd/test"
[attributes]
runbook = "http://wiki/{{ .Labels.alertname }}"
fp = "{{ .Fingerprint }}"
"#,
        );
        let mut a = alert(
            label_set([
                ("alertname", "DiskFull"),
                ("host", "n1"),
                ("disk", "sda"),
                ("team", "infra"),
                ("dc", "eu"),
            ]),
            label_set([("message", "full"), ("value", "97")]),
            AlertStatus::Firing,
        );
        a.generator_url = "http://alertd/rules/disk".into();
        let fp = format!("{:016x}", a.fingerprint);
        let b = one(&r, a.clone(), &AlertaOverrides::default());
        assert_eq!(b["resource"], "n1-sda");
        assert_eq!(b["event"], "DiskFull:firing");
        assert_eq!(b["environment"], "Development");
        assert_eq!(b["service"], json!(["infra", "storage"]));
        assert_eq!(b["group"], "infra");
        assert_eq!(b["value"], "97%");
        assert_eq!(b["text"], "n1 says full");
        assert_eq!(b["tags"], json!(["dc=eu"]));
        assert_eq!(b["correlate"], json!(["DiskFull", "DiskOK"]));
        assert_eq!(b["timeout"], 600);
        assert_eq!(b["origin"], "alertd/test");
        assert_eq!(b["attributes"]["runbook"], "http://wiki/DiskFull");
        assert_eq!(b["attributes"]["fp"], fp);
        assert_eq!(b["attributes"]["generatorURL"], "http://alertd/rules/disk");

        let ov = AlertaOverrides {
            resource: Some("cpu-host".into()),
            event: Some("HighCPU".into()),
            environment: Some("Production".into()),
            group: Some("tick".into()),
            value: Some("99".into()),
            origin: Some("kapacitor".into()),
            text: Some("cpu high".into()),
            services: vec!["web".into(), "".into()],
            correlate: vec!["HighCPU".into(), "CPUOK".into()],
            timeout: Some(0),
        };
        let b = one(&r, a.clone(), &ov);
        assert_eq!(b["resource"], "cpu-host");
        assert_eq!(b["event"], "HighCPU");
        assert_eq!(b["environment"], "Production");
        assert_eq!(b["group"], "tick");
        assert_eq!(b["value"], "99");
        assert_eq!(b["origin"], "kapacitor");
        assert_eq!(b["text"], "cpu high");
        assert_eq!(b["service"], json!(["web"]));
        assert_eq!(b["correlate"], json!(["HighCPU", "CPUOK"]));
        assert_eq!(b["timeout"], 0);

        // Empty overrides leave the configuration in force.
        let ov = AlertaOverrides {
            resource: Some(String::new()),
            environment: Some(" ".into()),
            ..AlertaOverrides::default()
        };
        let b = one(&r, a, &ov);
        assert_eq!(b["resource"], "n1-sda");
        assert_eq!(b["environment"], "Development");
    }

    #[test]
    fn resolved_alerts_close() {
        let labels = label_set([
            ("alertname", "DiskFull"),
            ("host", "n1"),
            ("severity", "critical"),
        ]);
        let n = notification(vec![
            alert(labels.clone(), LabelSet::new(), AlertStatus::Firing),
            alert(labels.clone(), LabelSet::new(), AlertStatus::Resolved),
        ]);
        let r = receiver("");
        let v = r.render(&n, &AlertaOverrides::default());
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["severity"], "critical");
        assert_eq!(v[1]["severity"], "normal");
        assert_eq!(v[1]["createTime"], "2023-11-14T22:23:20.250Z");
        assert_eq!(v[1]["resource"], v[0]["resource"]);
        assert_eq!(v[1]["event"], v[0]["event"]);

        let r = receiver("resolved_severity = \"OK\"");
        assert_eq!(
            r.render(&n, &AlertaOverrides::default())[1]["severity"],
            "ok"
        );

        let r = receiver("send_resolved = false");
        assert!(!r.send_resolved());
        let v = r.render(&n, &AlertaOverrides::default());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0]["severity"], "critical");
    }

    fn new_err(extra: &str) -> AlertaError {
        AlertaReceiver::new("alerta", &cfg(extra)).unwrap_err()
    }

    #[test]
    fn validation_names_the_field() {
        let e = new_err("[attributes]\n\"a.b\" = \"x\"");
        assert_eq!(e.field, "attributes.a.b");
        assert!(
            e.to_string()
                .starts_with("receiver \"alerta\": alerta.attributes.a.b: ")
        );
        assert_eq!(
            new_err("[attributes]\n\"$x\" = \"x\"").field,
            "attributes.$x"
        );
        assert_eq!(new_err("[attributes]\n\"\" = \"x\"").field, "attributes.");
        assert_eq!(
            new_err("resolved_severity = \"minor\"").field,
            "resolved_severity"
        );
        assert_eq!(new_err("environment = \"\"").field, "environment");
        assert_eq!(new_err("http_timeout = \"ten\"").field, "http_timeout");
        assert_eq!(new_err("http_timeout = \"0\"").field, "http_timeout");
        assert_eq!(
            new_err("service = [\"ok\", \"{{ .Labels.x\"]").field,
            "service[1]"
        );
        assert_eq!(new_err("resource = \"{{ nosuchfunc }}\"").field, "resource");
        assert_eq!(new_err("api_key = \"a b\"").field, "api_key");
        assert_eq!(
            new_err("api_key = \"k\"\napi_key_file = \"/nonexistent\"").field,
            "api_key_file"
        );
        assert_eq!(
            new_err("api_key_file = \"/nonexistent/key\"").field,
            "api_key_file"
        );

        for url in ["", "alerta:8080", "ftp://alerta", "http://a/?x=1"] {
            let c = AlertaConfig {
                url: url.into(),
                ..cfg("")
            };
            let e = AlertaReceiver::new("pager", &c).unwrap_err();
            assert_eq!(e.field, "url", "{url}");
            assert!(
                e.to_string()
                    .starts_with("receiver \"pager\": alerta.url: "),
                "{e}"
            );
        }
        let c = AlertaConfig {
            url: "http://h/api".into(),
            ..cfg("")
        };
        assert_eq!(
            AlertaReceiver::new("a", &c).unwrap().url(),
            "http://h/api/alert"
        );
    }

    #[test]
    fn api_key_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "secret-key\n").unwrap();
        let r = receiver(&format!("api_key_file = {:?}", path.display().to_string()));
        assert_eq!(r.api_key.as_deref(), Some("secret-key"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = toml::from_str::<AlertaConfig>("url = \"http://a\"\ntoken = \"x\"").unwrap_err();
        assert!(e.to_string().contains("unknown field `token`"), "{e}");
        assert!(toml::from_str::<AlertaConfig>("environment = \"Production\"").is_err());
    }
}
