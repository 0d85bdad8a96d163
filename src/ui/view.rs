//! What the pages show, computed from the alert manager's views: an alert's row (level colour,
//! state and what mutes it, age, value, message), groups of rows, and times written for people.

use chrono::DateTime;
use rustc_hash::FxHashMap;

use crate::manager::dispatch::{AlertView, SilenceView};
use crate::manager::labels::LabelSet;

/// A time as `2026-11-22 08:44:27 UTC`.
pub fn time(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// A span as `3d4h`, `2h5m`, `4m12s` or `9s`.
pub fn span(ns: i64) -> String {
    let s = (ns.max(0) / 1_000_000_000) as u64;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    }
}

/// The colour class of a level or severity name: `crit`, `warn`, `info`, `ok` or `other`.
pub fn level_class(level: &str) -> &'static str {
    match level.to_ascii_lowercase().as_str() {
        "critical" | "crit" | "error" | "page" | "down" | "unreachable" => "crit",
        "warning" | "warn" => "warn",
        "info" => "info",
        "ok" | "up" | "resolved" => "ok",
        _ => "other",
    }
}

fn level_rank(class: &str) -> u8 {
    match class {
        "crit" => 0,
        "warn" => 1,
        "other" => 2,
        "info" => 3,
        _ => 4,
    }
}

/// A silence named next to what it mutes.
#[derive(Debug, Clone)]
pub struct SilenceRef {
    /// Its id.
    pub id: String,
    /// Its comment, or its author when there is none.
    pub text: String,
}

/// An alert named next to what it inhibits.
#[derive(Debug, Clone)]
pub struct AlertRef {
    /// Its fingerprint.
    pub fp: String,
    /// Its `alertname` and the labels that tell it apart.
    pub name: String,
}

/// One alert as a row of the list.
#[derive(Debug, Clone)]
pub struct AlertRow {
    /// Fingerprint, 16 hex digits.
    pub fp: String,
    /// `alertname`.
    pub name: String,
    /// The other labels.
    pub labels: Vec<(String, String)>,
    /// The `severity` label (or the rule's level).
    pub severity: String,
    /// Its colour class.
    pub class: &'static str,
    /// `firing`, `acknowledged`, `silenced`, `inhibited` or `resolved`.
    pub state: &'static str,
    /// Silences muting it (acknowledgements included).
    pub silenced_by: Vec<SilenceRef>,
    /// Alerts inhibiting it.
    pub inhibited_by: Vec<AlertRef>,
    /// Time zones or intervals muting its routes now.
    pub muted_by: Vec<String>,
    /// How long it has been active.
    pub age: String,
    /// When it started.
    pub since: String,
    /// The `value` annotation.
    pub value: String,
    /// The `message`, `summary` or `description` annotation.
    pub message: String,
    starts_at: i64,
}

/// Alerts sharing a value of the label the list is grouped by.
#[derive(Debug, Clone)]
pub struct GroupRows {
    /// The value (`(none)` for alerts without the label).
    pub value: String,
    /// The worst colour class in the group.
    pub class: &'static str,
    /// The rows.
    pub alerts: Vec<AlertRow>,
}

fn get<'a>(l: &'a LabelSet, k: &str) -> Option<&'a str> {
    l.get(k)
}

/// A short name for an alert: `alertname` and the labels that usually tell alerts apart.
pub fn short_name(labels: &LabelSet) -> String {
    let mut out = get(labels, "alertname").unwrap_or("(unnamed)").to_string();
    let extra: Vec<String> = ["host", "instance", "service"]
        .iter()
        .filter_map(|k| get(labels, k).map(|v| format!("{k}={v}")))
        .collect();
    if !extra.is_empty() {
        out.push_str(" (");
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

/// Rows of the `shown` alerts, with the silences and alerts (looked up in `all`) that mute them
/// named.
pub fn rows<'a>(
    shown: impl IntoIterator<Item = &'a AlertView>,
    all: &[AlertView],
    silences: &[SilenceView],
    now: i64,
) -> Vec<AlertRow> {
    let silence_by_id: FxHashMap<&str, &SilenceView> =
        silences.iter().map(|s| (s.id.as_str(), s)).collect();
    let by_fp: FxHashMap<u64, &AlertView> = all.iter().map(|a| (a.alert.fingerprint, a)).collect();
    let name_of = |fp: &str| {
        u64::from_str_radix(fp, 16)
            .ok()
            .and_then(|f| by_fp.get(&f))
            .map_or_else(|| fp.to_string(), |o| short_name(&o.alert.labels))
    };
    shown
        .into_iter()
        .map(|v| {
            let a = &v.alert;
            let severity = get(&a.labels, "severity")
                .or_else(|| get(&a.annotations, "level"))
                .unwrap_or("")
                .to_string();
            // A resolved alert is neither silenced nor inhibited any more: name nothing.
            let resolved = a.resolved_at(now);
            let silenced_by: Vec<SilenceRef> = v
                .silenced_by
                .iter()
                .filter(|_| !resolved)
                .map(|id| SilenceRef {
                    id: id.clone(),
                    text: silence_by_id
                        .get(id.as_str())
                        .map_or_else(String::new, |s| {
                            if s.spec.comment.is_empty() {
                                s.spec.created_by.clone()
                            } else {
                                s.spec.comment.clone()
                            }
                        }),
                })
                .collect();
            let acknowledged = !silenced_by.is_empty()
                && v.silenced_by.iter().all(|id| {
                    silence_by_id
                        .get(id.as_str())
                        .is_some_and(|s| s.spec.until_resolved.is_some())
                });
            let state = if resolved {
                "resolved"
            } else if acknowledged {
                "acknowledged"
            } else if !silenced_by.is_empty() {
                "silenced"
            } else if !v.inhibited_by.is_empty() {
                "inhibited"
            } else {
                "firing"
            };
            let message = ["message", "summary", "description"]
                .iter()
                .find_map(|k| get(&a.annotations, k).filter(|m| !m.is_empty()))
                .unwrap_or("")
                .to_string();
            AlertRow {
                fp: format!("{:016x}", a.fingerprint),
                name: get(&a.labels, "alertname")
                    .unwrap_or("(unnamed)")
                    .to_string(),
                labels: a
                    .labels
                    .iter()
                    .filter(|(k, _)| *k != "alertname")
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                class: level_class(&severity),
                severity,
                state,
                silenced_by,
                inhibited_by: v
                    .inhibited_by
                    .iter()
                    .filter(|_| !resolved)
                    .map(|fp| AlertRef {
                        fp: fp.clone(),
                        name: name_of(fp),
                    })
                    .collect(),
                muted_by: v.muted_by.clone(),
                age: span(now - a.starts_at),
                since: time(a.starts_at),
                value: get(&a.annotations, "value").unwrap_or("").to_string(),
                message,
                starts_at: a.starts_at,
            }
        })
        .collect()
}

/// The order an operator reads alerts in: worst level, then newest.
fn worst_first(a: &AlertRow, b: &AlertRow) -> std::cmp::Ordering {
    (level_rank(a.class), std::cmp::Reverse(a.starts_at), &a.fp).cmp(&(
        level_rank(b.class),
        std::cmp::Reverse(b.starts_at),
        &b.fp,
    ))
}

/// Keeps the `max` rows an operator needs first: worst level, then newest. Answers how many
/// were dropped.
pub fn keep_worst(rows: &mut Vec<AlertRow>, max: usize) -> usize {
    if rows.len() <= max {
        return 0;
    }
    rows.sort_by(worst_first);
    let dropped = rows.len() - max;
    rows.truncate(max);
    dropped
}

/// Rows grouped by the value of `label`, groups by value, rows worst level first, then newest.
pub fn group(rows: Vec<AlertRow>, label: &str) -> Vec<GroupRows> {
    let mut groups: FxHashMap<String, Vec<AlertRow>> = FxHashMap::default();
    for r in rows {
        let value = if label == "alertname" {
            Some(r.name.clone())
        } else {
            r.labels
                .iter()
                .find(|(k, _)| k == label)
                .map(|(_, v)| v.clone())
        };
        groups
            .entry(value.unwrap_or_else(|| "(none)".to_string()))
            .or_default()
            .push(r);
    }
    let mut out: Vec<GroupRows> = groups
        .into_iter()
        .map(|(value, mut alerts)| {
            alerts.sort_by(worst_first);
            let class = alerts
                .iter()
                .map(|a| a.class)
                .min_by_key(|c| level_rank(c))
                .unwrap_or("other");
            GroupRows {
                value,
                class,
                alerts,
            }
        })
        .collect();
    out.sort_by(|a, b| a.value.cmp(&b.value));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::alert::{Alert, Source};
    use crate::manager::labels::fingerprint;
    use crate::manager::silence::{SilenceSpec, SilenceState};

    fn view(pairs: &[(&str, &str)], start: i64) -> AlertView {
        let labels: LabelSet = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut annotations = LabelSet::new();
        annotations.insert("summary".into(), "disk almost full".into());
        AlertView {
            alert: Alert {
                fingerprint: fingerprint(&labels),
                labels,
                annotations,
                starts_at: start,
                ends_at: None,
                updated_at: start,
                generator_url: String::new(),
                source: Source::Api,
                timeout: false,
            },
            state: "active",
            silenced_by: Vec::new(),
            inhibited_by: Vec::new(),
            muted_by: Vec::new(),
            receivers: Vec::new(),
        }
    }

    fn silence(id: &str, ack: bool) -> SilenceView {
        SilenceView {
            id: id.into(),
            spec: SilenceSpec {
                matchers: vec!["host=\"a\"".into()],
                starts_at: 0,
                ends_at: 1,
                created_by: "ops".into(),
                comment: "maintenance".into(),
                recurrence: None,
                duration_ns: None,
                location: None,
                until_resolved: ack.then(|| "00".into()),
            },
            state: SilenceState::Active,
            updated_at: 0,
            next: None,
        }
    }

    #[test]
    fn states_name_what_mutes_an_alert() {
        let now = 100_000_000_000;
        let mut a = view(&[("alertname", "Disk"), ("severity", "critical")], 0);
        a.silenced_by = vec!["s1".into()];
        let mut b = view(&[("alertname", "Disk"), ("host", "b")], 0);
        b.silenced_by = vec!["s2".into()];
        let c = view(&[("alertname", "Down"), ("severity", "warning")], 0);
        let mut d = view(&[("alertname", "Disk"), ("host", "d")], 0);
        d.inhibited_by = vec![format!("{:016x}", c.alert.fingerprint)];
        let mut e = view(&[("alertname", "Gone")], 0);
        e.alert.ends_at = Some(1);
        e.silenced_by = vec!["s1".into()];
        e.inhibited_by = vec![format!("{:016x}", c.alert.fingerprint)];
        let all = [a, b, c, d, e];
        let r = rows(
            &all,
            &all,
            &[silence("s1", false), silence("s2", true)],
            now,
        );
        let states: Vec<&str> = r.iter().map(|x| x.state).collect();
        assert_eq!(
            states,
            [
                "silenced",
                "acknowledged",
                "firing",
                "inhibited",
                "resolved"
            ]
        );
        assert_eq!(r[0].silenced_by[0].text, "maintenance");
        assert!(
            r[4].silenced_by.is_empty() && r[4].inhibited_by.is_empty(),
            "a resolved alert is not named as silenced or inhibited"
        );
        assert_eq!(r[0].class, "crit");
        assert_eq!(r[2].class, "warn");
        assert_eq!(r[3].inhibited_by[0].name, "Down");
        assert_eq!(r[0].age, "1m40s");
        assert_eq!(r[0].message, "disk almost full");
    }

    #[test]
    fn groups_by_a_label_worst_first() {
        let all = [
            view(
                &[("alertname", "A"), ("host", "x"), ("severity", "info")],
                5,
            ),
            view(
                &[("alertname", "B"), ("host", "x"), ("severity", "critical")],
                1,
            ),
            view(&[("alertname", "C")], 2),
        ];
        let rs = rows(&all, &all, &[], 10);
        let mut few = rs.clone();
        assert_eq!(keep_worst(&mut few, 5), 0);
        assert_eq!(keep_worst(&mut few, 1), 2);
        assert_eq!(few[0].name, "B", "the critical one is kept");
        let g = group(rs.clone(), "host");
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].value, "(none)");
        assert_eq!(g[1].value, "x");
        assert_eq!(g[1].class, "crit");
        assert_eq!(g[1].alerts[0].name, "B");
        let g = group(rs, "alertname");
        assert_eq!(
            g.iter().map(|x| x.value.as_str()).collect::<Vec<_>>(),
            ["A", "B", "C"]
        );
    }

    #[test]
    fn spans_and_times_read_well() {
        assert_eq!(span(9_000_000_000), "9s");
        assert_eq!(span(252_000_000_000), "4m12s");
        assert_eq!(span(7_500_000_000_000), "2h5m");
        assert_eq!(span(3 * 86_400_000_000_000 + 4 * 3_600_000_000_000), "3d4h");
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(level_class("CRITICAL"), "crit");
        assert_eq!(level_class("unknown"), "other");
    }
}
