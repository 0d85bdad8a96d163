//! The webhook receiver: an HTTP POST of Alertmanager's version-4 JSON (so every existing
//! Alertmanager webhook consumer works), or of Kapacitor's alert JSON (one POST per alert), with
//! extra headers, a bearer token, a timeout, `max_alerts` and `send_resolved`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::notification::{AlertStatus, Notification, NotifiedAlert, rfc3339};
use crate::manager::labels::LabelSet;
use crate::manager::route::parse_duration;

/// The body format.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// Alertmanager's version-4 webhook JSON, one POST per notification.
    #[default]
    Alertmanager,
    /// Kapacitor's alert JSON, one POST per alert.
    Kapacitor,
}

/// A webhook as configured (`[receivers.webhook]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The URL to POST to.
    pub url: String,
    /// `alertmanager` (default) or `kapacitor`.
    #[serde(default)]
    pub format: WebhookFormat,
    /// Extra HTTP headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// A file holding the bearer token (read when the configuration loads).
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Request timeout (default `10s`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// At most this many alerts per notification (0: no limit); the rest are counted in
    /// `truncatedAlerts`.
    #[serde(default)]
    pub max_alerts: usize,
    /// Notify resolved alerts (default true).
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

fn yes() -> bool {
    true
}

/// A configuration error of a webhook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("receiver \"{receiver}\": webhook.{field}: {msg}")]
pub struct WebhookError {
    /// The receiver.
    pub receiver: String,
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub msg: String,
}

/// A validated webhook.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// The URL.
    pub url: String,
    /// Body format.
    pub format: WebhookFormat,
    /// Headers, including the bearer token.
    pub headers: Vec<(String, String)>,
    /// Request timeout.
    pub timeout: Duration,
    /// Alert limit (0: none).
    pub max_alerts: usize,
    /// Whether resolved alerts are sent.
    pub send_resolved: bool,
}

impl Webhook {
    /// Validates a webhook configuration.
    pub fn new(receiver: &str, cfg: &WebhookConfig) -> Result<Webhook, WebhookError> {
        let err = |field: &'static str, msg: String| WebhookError {
            receiver: receiver.to_string(),
            field,
            msg,
        };
        match reqwest::Url::parse(&cfg.url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            Ok(u) => return Err(err("url", format!("unsupported scheme '{}'", u.scheme()))),
            Err(e) => return Err(err("url", format!("'{}': {e}", cfg.url))),
        }
        let mut headers = Vec::new();
        for (k, v) in &cfg.headers {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                return Err(err("headers", format!("invalid header name '{k}'")));
            }
            if reqwest::header::HeaderValue::from_str(v).is_err() {
                return Err(err("headers", format!("invalid value for header '{k}'")));
            }
            headers.push((k.clone(), v.clone()));
        }
        let token = match (&cfg.bearer_token, &cfg.bearer_token_file) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "bearer_token_file",
                    "set either bearer_token or bearer_token_file".into(),
                ));
            }
            (Some(t), None) => Some(t.clone()),
            (None, Some(p)) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| err("bearer_token_file", format!("{}: {e}", p.display())))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        if let Some(t) = token {
            headers.push(("Authorization".into(), format!("Bearer {t}")));
        }
        let timeout = match &cfg.timeout {
            None => Duration::from_secs(10),
            Some(t) => parse_duration(t).map_err(|e| err("timeout", e.to_string()))?,
        };
        Ok(Webhook {
            url: cfg.url.clone(),
            format: cfg.format,
            headers,
            timeout,
            max_alerts: cfg.max_alerts,
            send_resolved: cfg.send_resolved,
        })
    }

    /// The bodies to POST for a notification (already filtered by `send_resolved`): one for
    /// the Alertmanager format, one per alert for the Kapacitor format.
    pub fn render(&self, n: &Notification) -> Vec<String> {
        match self.format {
            WebhookFormat::Alertmanager => {
                let (alerts, truncated) = if self.max_alerts > 0 && n.alerts.len() > self.max_alerts
                {
                    (
                        &n.alerts[..self.max_alerts],
                        n.truncated + n.alerts.len() - self.max_alerts,
                    )
                } else {
                    (&n.alerts[..], n.truncated)
                };
                vec![alertmanager_v4_text(n, alerts, truncated)]
            }
            WebhookFormat::Kapacitor => n
                .alerts
                .iter()
                .map(|a| kapacitor_alert(a).to_string())
                .collect(),
        }
    }
}

/// Alertmanager's version-4 webhook payload.
pub fn alertmanager_v4(n: &Notification) -> Json {
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": n.truncated,
        "status": n.status().as_str(),
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": n.common_labels(),
        "commonAnnotations": n.common_annotations(),
        "externalURL": n.external_url,
        "notification_reason": n.reason,
        "alerts": n.alerts.iter().map(NotifiedAlert::to_json).collect::<Vec<_>>(),
    })
}

/// [`alertmanager_v4`] of `n` with only `alerts` and `truncated`, as text, written straight from
/// the notification (the same bytes as `alertmanager_v4(..).to_string()`, without building a
/// JSON tree of copies first).
pub fn alertmanager_v4_text(
    n: &Notification,
    alerts: &[NotifiedAlert],
    truncated: usize,
) -> String {
    use serde::Serialize;

    // Fields in the order a JSON object prints its keys (sorted).
    #[derive(Serialize)]
    struct Payload<'a> {
        alerts: Vec<AlertOut<'a>>,
        #[serde(rename = "commonAnnotations")]
        common_annotations: LabelSet,
        #[serde(rename = "commonLabels")]
        common_labels: LabelSet,
        #[serde(rename = "externalURL")]
        external_url: &'a str,
        #[serde(rename = "groupKey")]
        group_key: &'a str,
        #[serde(rename = "groupLabels")]
        group_labels: &'a LabelSet,
        notification_reason: &'a str,
        receiver: &'a str,
        status: &'static str,
        #[serde(rename = "truncatedAlerts")]
        truncated_alerts: usize,
        version: &'static str,
    }
    #[derive(Serialize)]
    struct AlertOut<'a> {
        annotations: &'a LabelSet,
        #[serde(rename = "endsAt")]
        ends_at: std::borrow::Cow<'static, str>,
        fingerprint: Hex16,
        #[serde(rename = "generatorURL")]
        generator_url: &'a str,
        labels: &'a LabelSet,
        #[serde(rename = "startsAt")]
        starts_at: String,
        status: &'static str,
    }
    let status = if alerts.iter().any(|a| a.status == AlertStatus::Firing) {
        AlertStatus::Firing
    } else {
        AlertStatus::Resolved
    };
    let p = Payload {
        alerts: alerts
            .iter()
            .map(|a| AlertOut {
                annotations: &a.annotations,
                ends_at: a
                    .ends_at
                    .map_or(std::borrow::Cow::Borrowed("0001-01-01T00:00:00Z"), |t| {
                        std::borrow::Cow::Owned(rfc3339(t))
                    }),
                fingerprint: Hex16(a.fingerprint),
                generator_url: &a.generator_url,
                labels: &a.labels,
                starts_at: rfc3339(a.starts_at),
                status: a.status.as_str(),
            })
            .collect(),
        common_annotations: common(alerts.iter().map(|a| &a.annotations)),
        common_labels: common(alerts.iter().map(|a| &a.labels)),
        external_url: &n.external_url,
        group_key: &n.group_key,
        group_labels: &n.group_labels,
        notification_reason: &n.reason,
        receiver: &n.receiver,
        status: status.as_str(),
        truncated_alerts: truncated,
        version: "4",
    };
    // About 330 bytes per alert of the usual shape: one allocation for most bodies instead of
    // a dozen doublings of the buffer.
    let mut out = Vec::with_capacity(512 + 384 * alerts.len());
    if serde_json::to_writer(&mut out, &p).is_err() {
        return String::new();
    }
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_default()
}

/// A fingerprint as 16 lowercase hex digits, serialized without a heap string. (Through
/// `collect_str(format_args!("{:016x}"))` instead, the render bench's 90-alert body took 9%
/// longer: serde_json passes formatted text through its escaping writer.)
struct Hex16(u64);

impl serde::Serialize for Hex16 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 16];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = DIGITS[((self.0 >> (60 - 4 * i)) & 0xf) as usize];
        }
        // Hex digits are ASCII.
        s.serialize_str(std::str::from_utf8(&buf).unwrap_or_default())
    }
}

/// Label pairs shared by every set.
fn common<'a>(mut sets: impl Iterator<Item = &'a LabelSet>) -> LabelSet {
    let Some(first) = sets.next() else {
        return LabelSet::new();
    };
    let mut out = first.clone();
    for s in sets {
        out.retain(|k, v| s.get(k) == Some(v));
        if out.is_empty() {
            break;
        }
    }
    out
}

/// One alert in Kapacitor's alert JSON (`id`, `message`, `details`, `time`, `duration`, `level`,
/// `data`), for consumers written for Kapacitor's `.post()`.
pub fn kapacitor_alert(a: &NotifiedAlert) -> Json {
    let level = match a.status {
        AlertStatus::Resolved => "OK".to_string(),
        AlertStatus::Firing => a
            .labels
            .get("severity")
            .map_or_else(|| "CRITICAL".to_string(), |s| s.to_uppercase()),
    };
    let time = a.ends_at.unwrap_or(a.starts_at);
    let duration = a
        .ends_at
        .map_or(0, |e| (e - a.starts_at).num_nanoseconds().unwrap_or(0));
    let tags: BTreeMap<&str, &str> = a
        .labels
        .iter()
        .filter(|(k, _)| *k != "alertname" && *k != "severity")
        .collect();
    json!({
        "id": a.annotations.get("id").map(str::to_string).unwrap_or_else(|| {
            format!("{}:{}", a.labels.get("alertname").unwrap_or(""), a.fingerprint_hex())
        }),
        "message": a.annotations.get("message").or_else(|| a.annotations.get("summary")).unwrap_or_default(),
        "details": a.annotations.get("details").or_else(|| a.annotations.get("description")).unwrap_or_default(),
        "time": rfc3339(time),
        "duration": duration,
        "level": level,
        "data": {"series": [{
            "name": a.labels.get("alertname").unwrap_or_default(),
            "tags": tags,
        }]},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::labels::{fingerprint, label_set};
    use chrono::DateTime;

    fn notification(n: usize) -> Notification {
        let alerts = (0..n)
            .map(|i| {
                let labels = label_set([
                    ("alertname", "DiskFull"),
                    ("host", &format!("node{i}")),
                    ("severity", "critical"),
                ]);
                NotifiedAlert {
                    status: if i == 0 {
                        AlertStatus::Resolved
                    } else {
                        AlertStatus::Firing
                    },
                    fingerprint: fingerprint(&labels),
                    labels,
                    annotations: label_set([("message", "disk full")]),
                    starts_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                    ends_at: (i == 0).then(|| DateTime::from_timestamp(1_700_000_060, 0).unwrap()),
                    generator_url: "http://localhost:9092/#/rules/disk".into(),
                }
            })
            .collect();
        Notification {
            receiver: "ops".into(),
            group_key: "{}:{alertname=\"DiskFull\"}".into(),
            group_labels: label_set([("alertname", "DiskFull")]),
            alerts,
            truncated: 0,
            external_url: "http://localhost:9092".into(),
            reason: "first notification".into(),
        }
    }

    #[test]
    fn v4_payload_has_every_field() {
        let cfg: WebhookConfig = toml::from_str(
            "url = \"http://127.0.0.1:1/hook\"\nmax_alerts = 2\nbearer_token = \"t\"",
        )
        .unwrap();
        let w = Webhook::new("ops", &cfg).unwrap();
        assert!(
            w.headers
                .contains(&("Authorization".into(), "Bearer t".into()))
        );
        let bodies = w.render(&notification(3));
        let v: Json = serde_json::from_str(&bodies[0]).unwrap();
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["truncatedAlerts"], 1);
        assert_eq!(v["alerts"].as_array().unwrap().len(), 2);
        assert_eq!(v["commonLabels"]["severity"], "critical");
        assert_eq!(v["groupLabels"]["alertname"], "DiskFull");
        assert_eq!(v["alerts"][0]["status"], "resolved");
        assert_eq!(v["alerts"][0]["endsAt"], "2023-11-14T22:14:20Z");
        assert_eq!(v["alerts"][1]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(v["alerts"][1]["fingerprint"].as_str().unwrap().len(), 16);
        for k in ["receiver", "externalURL", "groupKey", "commonAnnotations"] {
            assert!(v.get(k).is_some(), "{k}");
        }
    }

    #[test]
    fn kapacitor_format_posts_each_alert() {
        let cfg: WebhookConfig =
            toml::from_str("url = \"http://127.0.0.1:1/hook\"\nformat = \"kapacitor\"").unwrap();
        let w = Webhook::new("ops", &cfg).unwrap();
        let bodies = w.render(&notification(2));
        assert_eq!(bodies.len(), 2);
        let v: Json = serde_json::from_str(&bodies[0]).unwrap();
        assert_eq!(v["level"], "OK");
        assert_eq!(v["duration"], 60_000_000_000i64);
        let v: Json = serde_json::from_str(&bodies[1]).unwrap();
        assert_eq!(v["level"], "CRITICAL");
        assert_eq!(v["data"]["series"][0]["tags"]["host"], "node1");
    }

    #[test]
    fn bad_config_names_the_field() {
        let cfg: WebhookConfig = toml::from_str("url = \"ftp://x\"").unwrap();
        let e = Webhook::new("ops", &cfg).unwrap_err();
        assert_eq!(
            e.to_string(),
            "receiver \"ops\": webhook.url: unsupported scheme 'ftp'"
        );
        assert!(toml::from_str::<WebhookConfig>("url = \"http://x\"\nurls = 1").is_err());
    }

    #[test]
    fn v4_text_is_the_json_tree_printed() {
        for n in [0, 1, 3, 20] {
            let mut notif = notification(n);
            notif
                .group_labels
                .insert("quote\"d".into(), "line\nbreak é".into());
            if n > 1 {
                notif.alerts[1]
                    .annotations
                    .insert("extra".into(), "x".into());
            }
            let text = alertmanager_v4_text(&notif, &notif.alerts, notif.truncated);
            assert_eq!(text, alertmanager_v4(&notif).to_string());
            let w = Webhook {
                url: "http://x".into(),
                format: WebhookFormat::Alertmanager,
                headers: Vec::new(),
                timeout: std::time::Duration::from_secs(1),
                max_alerts: 2,
                send_resolved: true,
            };
            let mut cut = notif.clone();
            if cut.alerts.len() > 2 {
                cut.truncated += cut.alerts.len() - 2;
                cut.alerts.truncate(2);
            }
            assert_eq!(w.render(&notif), vec![alertmanager_v4(&cut).to_string()]);
        }
    }
}
