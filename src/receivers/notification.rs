//! What a receiver is handed: one notification, either of an aggregation group flushed by the
//! dispatcher or of a single alert event of a TICK handler. Receivers render it into their own
//! wire format (webhook JSON, e-mail, Alerta alerts, log lines).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value as Json, json};

use crate::manager::labels::{LabelSet, fingerprint_hex};
use crate::rules::template::{Data, Value, json_to_value};

/// Whether an alert is firing or resolved at the time of the notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertStatus {
    /// Still active.
    Firing,
    /// Ended (its `ends_at` is in the past).
    Resolved,
}

impl AlertStatus {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// One alert in a notification.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifiedAlert {
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Labels (identity, routing). Rule alerts carry their tags plus `alertname` and `severity`.
    pub labels: LabelSet,
    /// Annotations (`message`, `details`, `value`, `summary`, ...).
    pub annotations: LabelSet,
    /// When the alert started.
    pub starts_at: DateTime<Utc>,
    /// When it ended; `None` while firing.
    pub ends_at: Option<DateTime<Utc>>,
    /// Link to what produced the alert (the rule or check in the UI).
    pub generator_url: String,
    /// Fingerprint of the labels.
    pub fingerprint: u64,
}

impl NotifiedAlert {
    /// The fingerprint as 16 hex digits.
    pub fn fingerprint_hex(&self) -> String {
        fingerprint_hex(&self.labels)
    }

    /// The alert in Alertmanager's template/webhook shape.
    pub fn to_json(&self) -> Json {
        json!({
            "status": self.status.as_str(),
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": rfc3339(self.starts_at),
            "endsAt": self.ends_at.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339),
            "generatorURL": self.generator_url,
            "fingerprint": format!("{:016x}", self.fingerprint),
        })
    }
}

/// RFC 3339 with the precision the time carries, UTC (`Z`).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// One notification for one receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The receiver's name.
    pub receiver: String,
    /// The aggregation group's key (`{}/{team="a"}:{alertname="X"}`); for a TICK handler
    /// `rule/alert-id`.
    pub group_key: String,
    /// The labels the group is formed by.
    pub group_labels: LabelSet,
    /// The alerts, firing and resolved, in a stable order.
    pub alerts: Vec<NotifiedAlert>,
    /// Alerts left out because of the receiver's `max_alerts`.
    pub truncated: usize,
    /// The URL the UI is reached at, for links.
    pub external_url: String,
    /// Why it is sent: `first notification`, `new alerts added`, `some alerts resolved`,
    /// `all alerts resolved`, `repeat interval elapsed`, or `alert event`.
    pub reason: String,
}

impl Notification {
    /// `firing` when any alert fires, else `resolved`.
    pub fn status(&self) -> AlertStatus {
        if self.alerts.iter().any(|a| a.status == AlertStatus::Firing) {
            AlertStatus::Firing
        } else {
            AlertStatus::Resolved
        }
    }

    /// The firing alerts.
    pub fn firing(&self) -> impl Iterator<Item = &NotifiedAlert> {
        self.alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
    }

    /// The resolved alerts.
    pub fn resolved(&self) -> impl Iterator<Item = &NotifiedAlert> {
        self.alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Resolved)
    }

    /// Label pairs shared by every alert.
    pub fn common_labels(&self) -> LabelSet {
        common(self.alerts.iter().map(|a| &a.labels))
    }

    /// Annotation pairs shared by every alert.
    pub fn common_annotations(&self) -> LabelSet {
        common(self.alerts.iter().map(|a| &a.annotations))
    }

    /// Alertmanager's template data (`Status`, `Receiver`, `GroupLabels`, `CommonLabels`,
    /// `CommonAnnotations`, `ExternalURL`, `Alerts` with `Status`, `Labels`, `Annotations`,
    /// `StartsAt`, `EndsAt`, `GeneratorURL`, `Fingerprint`), which user templates render against.
    pub fn template_data(&self) -> TemplateJson {
        let alerts: Vec<Json> = self
            .alerts
            .iter()
            .map(|a| {
                json!({
                    "Status": a.status.as_str(),
                    "Labels": a.labels,
                    "Annotations": a.annotations,
                    "StartsAt": rfc3339(a.starts_at),
                    "EndsAt": a.ends_at.map(rfc3339).unwrap_or_default(),
                    "GeneratorURL": a.generator_url,
                    "Fingerprint": format!("{:016x}", a.fingerprint),
                })
            })
            .collect();
        let firing = self.firing().count();
        let resolved = self.alerts.len() - firing;
        let Json::Object(map) = json!({
            "Status": self.status().as_str(),
            "Receiver": self.receiver,
            "GroupKey": self.group_key,
            "GroupLabels": self.group_labels,
            "CommonLabels": self.common_labels(),
            "CommonAnnotations": self.common_annotations(),
            "ExternalURL": self.external_url,
            "Alerts": alerts,
            "Firing": firing,
            "Resolved": resolved,
            "TruncatedAlerts": self.truncated,
        }) else {
            unreachable!("json! of an object literal is an object")
        };
        TemplateJson(map)
    }
}

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

/// A JSON object that templates render against (`{{ .CommonLabels.alertname }}`).
#[derive(Debug, Clone)]
pub struct TemplateJson(pub Map<String, Json>);

impl Data for TemplateJson {
    fn field(&self, name: &str) -> Option<Value<'_>> {
        self.0.get(name).map(json_to_value)
    }
    fn to_json(&self) -> Json {
        Json::Object(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::labels::{fingerprint, label_set};
    use crate::rules::template::Template;

    fn alert(name: &str, host: &str, status: AlertStatus) -> NotifiedAlert {
        let labels = label_set([("alertname", name), ("host", host), ("env", "prod")]);
        NotifiedAlert {
            status,
            fingerprint: fingerprint(&labels),
            labels,
            annotations: label_set([("message", "disk full")]),
            starts_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            ends_at: None,
            generator_url: String::new(),
        }
    }

    #[test]
    fn status_common_labels_and_templates() {
        let n = Notification {
            receiver: "ops".into(),
            group_key: "{}:{}".into(),
            group_labels: label_set([("alertname", "DiskFull")]),
            alerts: vec![
                alert("DiskFull", "a", AlertStatus::Firing),
                alert("DiskFull", "b", AlertStatus::Resolved),
            ],
            truncated: 0,
            external_url: "http://localhost:9092".into(),
            reason: "first notification".into(),
        };
        assert_eq!(n.status(), AlertStatus::Firing);
        assert_eq!(
            n.common_labels(),
            label_set([("alertname", "DiskFull"), ("env", "prod")])
        );
        let t = Template::parse(
            "{{ .Status }} {{ .CommonLabels.env }} {{ len .Alerts }} {{ range .Alerts }}{{ .Labels.host }}{{ end }}",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (s, _) = t.render_to_string(&n.template_data());
        assert_eq!(s, "firing prod 2 ab");
        let j = n.alerts[0].to_json();
        assert_eq!(j["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(j["startsAt"], "2023-11-14T22:13:20Z");
    }
}
