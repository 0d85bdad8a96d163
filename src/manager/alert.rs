//! The one alert model of the alert manager: rule alerts, alerts posted to `/api/v2/alerts` and
//! passive checks all become an [`Alert`] with labels, annotations, start and end. This module
//! also turns a rule's alert event into its alert (labels = tags + `alertname` + `severity`).

use serde::{Deserialize, Serialize};

use super::labels::{LabelSet, fingerprint};
use crate::engine::AlertEvent;
use crate::rules::plan::Level;

/// Where an alert came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A rule's alert node. Boxed: most alerts are posted or come from checks, and every
    /// alert would otherwise carry room for two strings.
    Rule(Box<RuleSource>),
    /// Posted to `/api/v2/alerts` (Prometheus, amtool, any client).
    Api,
    /// A passive check result.
    Check,
}

/// The rule alert an [`Alert`] stands for (stored as `{"kind":"rule","rule":..,"key":..,
/// "routed":..}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSource {
    /// The rule's name.
    pub rule: String,
    /// The alert's identity in the rule: alert node and alert id (`node/id`).
    pub key: String,
    /// False when the rule names its own handlers: its alerts then go to those handlers and
    /// not through the routing tree.
    pub routed: bool,
}

/// One alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Identity and routing labels.
    pub labels: LabelSet,
    /// Descriptive annotations.
    pub annotations: LabelSet,
    /// Start, Unix ns.
    pub starts_at: i64,
    /// End, Unix ns: resolved once it is in the past. `None` for rule alerts that fire.
    pub ends_at: Option<i64>,
    /// Last change, Unix ns.
    pub updated_at: i64,
    /// Link to the alert's producer.
    pub generator_url: String,
    /// Fingerprint of `labels`.
    pub fingerprint: u64,
    /// Where it came from.
    pub source: Source,
    /// `ends_at` was set by the resolve timeout, not by the sender.
    pub timeout: bool,
}

impl Alert {
    /// Resolved at `now`.
    pub fn resolved_at(&self, now: i64) -> bool {
        self.ends_at.is_some_and(|e| e <= now)
    }

    /// Whether this alert goes through the routing tree.
    pub fn routed(&self) -> bool {
        match &self.source {
            Source::Rule(r) => r.routed,
            Source::Api | Source::Check => true,
        }
    }
}

/// The `severity` label of a rule alert at `level`.
pub fn severity_label(level: Level) -> &'static str {
    match level {
        Level::Ok => "ok",
        Level::Info => "info",
        Level::Warning => "warning",
        Level::Critical => "critical",
    }
}

/// The labels of a rule alert at `level`: the event's tags, `alertname` = the rule, and
/// `severity`.
pub fn rule_labels(ev: &AlertEvent, level: Level) -> LabelSet {
    let mut labels: LabelSet = ev
        .data
        .tags
        .0
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.insert("alertname".into(), ev.task.to_string());
    labels.insert("severity".into(), severity_label(level).into());
    labels
}

/// The annotations of a rule alert: `message`, `details` (when set), `value` (the fields of the
/// last point, `name=value` joined by commas), `id` and `level`.
pub fn rule_annotations(ev: &AlertEvent) -> LabelSet {
    let mut a = LabelSet::new();
    a.insert("message".into(), ev.message.clone());
    if !ev.details.is_empty() {
        a.insert("details".into(), ev.details.clone());
    }
    if let Some((_, fields)) = ev.data.points.last() {
        let value = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        if !value.is_empty() {
            a.insert("value".into(), value);
        }
    }
    a.insert("id".into(), ev.id.clone());
    a.insert("level".into(), ev.level.as_str().into());
    a
}

/// An alert for a new rule alert, starting at the event.
pub fn rule_alert(ev: &AlertEvent, external_url: &str) -> Alert {
    let labels = rule_labels(ev, ev.level);
    let start = ev.time - ev.duration.max(0);
    Alert {
        fingerprint: fingerprint(&labels),
        labels,
        annotations: rule_annotations(ev),
        starts_at: start,
        ends_at: None,
        updated_at: ev.time,
        generator_url: format!("{external_url}/#/rules/{}", ev.task),
        source: Source::Rule(Box::new(RuleSource {
            rule: ev.task.to_string(),
            key: format!("{}/{}", ev.node, ev.id),
            routed: ev.spec.handlers.is_empty(),
        })),
        timeout: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_stored_as_flat_json_objects() {
        let rule = Source::Rule(Box::new(RuleSource {
            rule: "cpu".into(),
            key: "alert2/cpu/web01".into(),
            routed: true,
        }));
        let text = r#"{"kind":"rule","rule":"cpu","key":"alert2/cpu/web01","routed":true}"#;
        assert_eq!(serde_json::to_string(&rule).unwrap(), text);
        assert_eq!(serde_json::from_str::<Source>(text).unwrap(), rule);
        assert_eq!(
            serde_json::to_string(&Source::Api).unwrap(),
            r#"{"kind":"api"}"#
        );
        assert_eq!(
            serde_json::from_str::<Source>(r#"{"kind":"check"}"#).unwrap(),
            Source::Check
        );
        // Boxed, the rule's strings no longer size every alert.
        assert!(std::mem::size_of::<Source>() <= 16);
    }
}
