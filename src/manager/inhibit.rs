//! Inhibition rules: configuration, validation, and the index of firing
//! source alerts used to decide whether a target alert is inhibited.
//!
//! Semantics (Alertmanager's `inhibit/inhibit.go`): a target alert is
//! inhibited by a rule when
//!
//! * the target matches the rule's `target_matchers`,
//! * some **firing** alert matches the rule's `source_matchers`,
//! * for every label name in `equal` the source and target have the same
//!   value, where a missing label counts as the empty string (so missing
//!   equals missing, and missing equals `""`),
//! * and the source is not the target itself. More generally, when the
//!   target matches *both* the source and the target matchers, sources that
//!   also match both sides are ignored (so an alert matching both sides
//!   can only be inhibited by an alert matching the source side alone).
//!
//! The index holds every alert that matches a rule's source side with its
//! end; a source counts only while it fires (before its end).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::labels::{LabelSet, fingerprint};
use super::matcher::{Matcher, matches_all, parse_matcher};

/// One `[[inhibit_rules]]` entry as written in the configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InhibitRuleConfig {
    /// Matchers a firing alert must satisfy to inhibit others, one matcher
    /// per string (e.g. `severity="critical"`).
    #[serde(default)]
    pub source_matchers: Vec<String>,
    /// Matchers an alert must satisfy to be inhibited.
    #[serde(default)]
    pub target_matchers: Vec<String>,
    /// Label names whose values must be equal in source and target (a
    /// missing label equals the empty string).
    #[serde(default)]
    pub equal: Vec<String>,
}

/// An invalid inhibition rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("inhibit_rules[{rule}]: {field}: {msg}")]
pub struct InhibitError {
    /// Index of the rule in the configuration.
    pub rule: usize,
    /// The offending field, e.g. `source_matchers[0]`.
    pub field: String,
    /// What is wrong.
    pub msg: String,
}

/// A validated inhibition rule.
#[derive(Debug, Clone)]
pub struct InhibitRule {
    /// Source matchers.
    pub source: Vec<Matcher>,
    /// Target matchers.
    pub target: Vec<Matcher>,
    /// Label names that must be equal.
    pub equal: Vec<String>,
}

impl InhibitRule {
    /// Validate one configured rule (`index` is used in errors).
    pub fn from_config(index: usize, cfg: &InhibitRuleConfig) -> Result<Self, InhibitError> {
        let parse = |field: &str, list: &[String]| {
            list.iter()
                .enumerate()
                .map(|(i, s)| {
                    parse_matcher(s).map_err(|e| InhibitError {
                        rule: index,
                        field: format!("{field}[{i}]"),
                        msg: e.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let source = parse("source_matchers", &cfg.source_matchers)?;
        let target = parse("target_matchers", &cfg.target_matchers)?;
        if let Some(i) = cfg.equal.iter().position(String::is_empty) {
            return Err(InhibitError {
                rule: index,
                field: format!("equal[{i}]"),
                msg: "empty label name".into(),
            });
        }
        Ok(InhibitRule {
            source,
            target,
            equal: cfg.equal.clone(),
        })
    }

    fn equal_key(&self, labels: &LabelSet) -> Vec<String> {
        self.equal
            .iter()
            .map(|n| labels.get(n).unwrap_or_default().to_string())
            .collect()
    }

    fn equal_labels(&self, a: &LabelSet, b: &LabelSet) -> bool {
        self.equal
            .iter()
            .all(|n| a.get(n).unwrap_or("") == b.get(n).unwrap_or(""))
    }
}

/// End of a source that does not end (a rule alert while it fires).
const NEVER: i64 = i64::MAX;

/// Sources of one rule sharing one tuple of `equal` values, split by
/// whether they also match the rule's target side: fingerprint → end (Unix
/// ns; [`NEVER`] for none), ordered by fingerprint.
#[derive(Debug, Default, Clone)]
struct Bucket {
    one_sided: BTreeMap<u64, i64>,
    two_sided: BTreeMap<u64, i64>,
}

impl Bucket {
    fn is_empty(&self) -> bool {
        self.one_sided.is_empty() && self.two_sided.is_empty()
    }
}

/// The smallest fingerprint of a source still firing at `now`.
fn first_firing(m: &BTreeMap<u64, i64>, now: i64) -> Option<u64> {
    m.iter().find(|(_, end)| **end > now).map(|(fp, _)| *fp)
}

/// Decides inhibition. Holds the rules and, per rule, an index from the
/// tuple of `equal` label values to the fingerprints of the source alerts
/// having those values, with their ends. The index is kept current one
/// alert at a time ([`Inhibitor::upsert`], [`Inhibitor::remove`]); a lookup
/// skips sources that have ended, so an alert that resolves by reaching its
/// end stops inhibiting at once without any update.
#[derive(Debug, Clone, Default)]
pub struct Inhibitor {
    rules: Vec<InhibitRule>,
    index: Vec<HashMap<Vec<String>, Bucket>>,
}

impl Inhibitor {
    /// Validate the configured rules. The index starts empty.
    pub fn new(rules: &[InhibitRuleConfig]) -> Result<Self, InhibitError> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, r)| InhibitRule::from_config(i, r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_rules(rules))
    }

    /// Build from already validated rules. The index starts empty.
    pub fn from_rules(rules: Vec<InhibitRule>) -> Self {
        let index = vec![HashMap::new(); rules.len()];
        Inhibitor { rules, index }
    }

    /// The rules, in configuration order.
    pub fn rules(&self) -> &[InhibitRule] {
        &self.rules
    }

    /// Replace the source index with the given firing alerts (no end), given
    /// as `(fingerprint, labels)`. Cost: O(rules × alerts × matchers).
    pub fn update<'a, I>(&mut self, firing: I)
    where
        I: IntoIterator<Item = (u64, &'a LabelSet)>,
    {
        self.clear();
        for (fp, labels) in firing {
            self.upsert(fp, labels, None);
        }
    }

    /// Empty the source index.
    pub fn clear(&mut self) {
        for idx in &mut self.index {
            idx.clear();
        }
    }

    /// Add an alert, or change its end: it is a source (of the rules whose
    /// source matchers it matches) until `ends_at` (`None`: until removed).
    /// An alert's labels must not change while it is indexed (remove it
    /// first). Cost: the rules' source matchers, and per matching rule one
    /// hash lookup and one ordered-map insert.
    pub fn upsert(&mut self, fp: u64, labels: &LabelSet, ends_at: Option<i64>) {
        let end = ends_at.unwrap_or(NEVER);
        for (rule, idx) in self.rules.iter().zip(self.index.iter_mut()) {
            if !matches_all(&rule.source, labels) {
                continue;
            }
            let bucket = idx.entry(rule.equal_key(labels)).or_default();
            if matches_all(&rule.target, labels) {
                bucket.two_sided.insert(fp, end);
            } else {
                bucket.one_sided.insert(fp, end);
            }
        }
    }

    /// Remove an alert (given the labels it was added with).
    pub fn remove(&mut self, fp: u64, labels: &LabelSet) {
        for (rule, idx) in self.rules.iter().zip(self.index.iter_mut()) {
            if !matches_all(&rule.source, labels) {
                continue;
            }
            let key = rule.equal_key(labels);
            if let Some(bucket) = idx.get_mut(&key) {
                bucket.one_sided.remove(&fp);
                bucket.two_sided.remove(&fp);
                if bucket.is_empty() {
                    idx.remove(&key);
                }
            }
        }
    }

    /// Number of indexed `(rule, equal-values)` buckets and of indexed
    /// source entries (for metrics and tests).
    pub fn index_stats(&self) -> (usize, usize) {
        let buckets = self.index.iter().map(HashMap::len).sum();
        let entries = self
            .index
            .iter()
            .flat_map(HashMap::values)
            .map(|b| b.one_sided.len() + b.two_sided.len())
            .sum();
        (buckets, entries)
    }

    /// [`Inhibitor::check_at`] now (wall clock).
    pub fn check(&self, target: &LabelSet) -> Option<u64> {
        self.check_at(target, crate::clock::now_ns())
    }

    /// Check `target` against the index: the fingerprint of a source firing
    /// at `now` that inhibits it (for the first rule, in configuration
    /// order, that inhibits; the smallest such fingerprint within that
    /// rule), or `None`.
    ///
    /// Cost per rule: the target's matchers, one hash lookup of the
    /// `equal` values, and O(1) work in the bucket (plus one step per
    /// source that ended but is not removed yet) — independent of the
    /// number of firing alerts.
    pub fn check_at(&self, target: &LabelSet, now: i64) -> Option<u64> {
        for (rule, idx) in self.rules.iter().zip(&self.index) {
            if !matches_all(&rule.target, target) {
                continue;
            }
            let Some(bucket) = idx.get(&rule.equal_key(target)) else {
                continue;
            };
            // A target matching both sides may only be inhibited by
            // one-sided sources. A one-sided source is never the target
            // itself (the target matches the target side). A target that
            // is not two-sided is not a source at all, so any entry works.
            let two_sided_target = matches_all(&rule.source, target);
            let one = first_firing(&bucket.one_sided, now);
            let candidate = if two_sided_target {
                one
            } else {
                match (one, first_firing(&bucket.two_sided, now)) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            };
            if candidate.is_some() {
                return candidate;
            }
        }
        None
    }

    /// Check `target` against an explicit set of firing alerts without
    /// using the index (a scan; use [`Inhibitor::check`] after
    /// [`Inhibitor::update`] when checking many targets). Same result as
    /// `check` would give with an index built from `firing_sources`.
    pub fn is_inhibited<'a>(
        &self,
        target: &LabelSet,
        firing_sources: impl Iterator<Item = &'a LabelSet>,
    ) -> Option<u64> {
        let sources: Vec<&LabelSet> = firing_sources.collect();
        let target_fp = fingerprint(target);
        for rule in &self.rules {
            if !matches_all(&rule.target, target) {
                continue;
            }
            let two_sided_target = matches_all(&rule.source, target);
            let best = sources
                .iter()
                .filter(|s| matches_all(&rule.source, s))
                .filter(|s| rule.equal_labels(s, target))
                .filter(|s| !(two_sided_target && matches_all(&rule.target, s)))
                .map(|s| fingerprint(s))
                .filter(|&fp| fp != target_fp)
                .min();
            if best.is_some() {
                return best;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::labels::label_set;

    fn rule(src: &[&str], tgt: &[&str], equal: &[&str]) -> InhibitRuleConfig {
        InhibitRuleConfig {
            source_matchers: src.iter().map(|s| s.to_string()).collect(),
            target_matchers: tgt.iter().map(|s| s.to_string()).collect(),
            equal: equal.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn with_index(inh: &mut Inhibitor, alerts: &[LabelSet]) {
        let firing: Vec<(u64, LabelSet)> =
            alerts.iter().map(|l| (fingerprint(l), l.clone())).collect();
        inh.update(firing.iter().map(|(f, l)| (*f, l)));
    }

    /// Check both code paths and assert they agree.
    fn both(inh: &mut Inhibitor, target: &LabelSet, alerts: &[LabelSet]) -> Option<u64> {
        with_index(inh, alerts);
        let a = inh.check(target);
        let b = inh.is_inhibited(target, alerts.iter());
        assert_eq!(a, b, "index and scan disagree for {target:?}");
        a
    }

    #[test]
    fn basic_inhibition_with_equal() {
        let mut inh = Inhibitor::new(&[rule(
            &[r#"alertname="JobDown""#],
            &[r#"alertname="InstanceDown""#],
            &["job", "zone"],
        )])
        .unwrap();
        let src = label_set([("alertname", "JobDown"), ("job", "j1"), ("zone", "aa")]);
        let t_same = label_set([
            ("alertname", "InstanceDown"),
            ("job", "j1"),
            ("zone", "aa"),
            ("instance", "i1"),
        ]);
        let t_other_zone =
            label_set([("alertname", "InstanceDown"), ("job", "j1"), ("zone", "ab")]);
        let alerts = vec![src.clone(), t_same.clone(), t_other_zone.clone()];
        assert_eq!(both(&mut inh, &t_same, &alerts), Some(fingerprint(&src)));
        assert_eq!(both(&mut inh, &t_other_zone, &alerts), None);
        // The source does not match the target matchers.
        assert_eq!(both(&mut inh, &src, &alerts), None);
        // Without the source firing nothing is inhibited.
        assert_eq!(both(&mut inh, &t_same, &alerts[1..]), None);
    }

    #[test]
    fn missing_equal_labels_are_equal() {
        let mut inh = Inhibitor::new(&[rule(&[r#"s="1""#], &[r#"t="1""#], &["cluster"])]).unwrap();
        let src_missing = label_set([("s", "1")]);
        let tgt_missing = label_set([("t", "1")]);
        let tgt_empty = label_set([("t", "1"), ("cluster", "")]);
        let tgt_set = label_set([("t", "1"), ("cluster", "c")]);
        let alerts = vec![src_missing.clone()];
        // missing == missing
        assert_eq!(
            both(&mut inh, &tgt_missing, &alerts),
            Some(fingerprint(&src_missing))
        );
        // missing == "" (Alertmanager compares label values, "" when absent)
        assert!(both(&mut inh, &tgt_empty, &alerts).is_some());
        // missing != "c"
        assert_eq!(both(&mut inh, &tgt_set, &alerts), None);
        let src_set = label_set([("s", "1"), ("cluster", "c")]);
        assert_eq!(
            both(&mut inh, &tgt_missing, std::slice::from_ref(&src_set)),
            None
        );
        assert_eq!(
            both(&mut inh, &tgt_set, std::slice::from_ref(&src_set)),
            Some(fingerprint(&src_set))
        );
    }

    #[test]
    fn alert_does_not_inhibit_itself() {
        // Source and target matchers both match the same alert.
        let mut inh = Inhibitor::new(&[rule(
            &[r#"severity="critical""#],
            &[r#"severity=~"critical|warning""#],
            &["alertname"],
        )])
        .unwrap();
        let a = label_set([("alertname", "X"), ("severity", "critical")]);
        assert_eq!(both(&mut inh, &a, std::slice::from_ref(&a)), None);
        // Another two-sided alert does not inhibit it either.
        let b = label_set([("alertname", "X"), ("severity", "critical"), ("i", "2")]);
        assert_eq!(both(&mut inh, &a, &[a.clone(), b.clone()]), None);
        // But it does inhibit a one-sided target.
        let w = label_set([("alertname", "X"), ("severity", "warning")]);
        let r = both(&mut inh, &w, &[a.clone(), b.clone()]);
        assert_eq!(r, Some(fingerprint(&a).min(fingerprint(&b))));
    }

    #[test]
    fn one_sided_source_inhibits_two_sided_target() {
        let mut inh =
            Inhibitor::new(&[rule(&[r#"kind=~"a|b""#], &[r#"kind=~"b|c""#], &[])]).unwrap();
        let a = label_set([("kind", "a")]); // source only
        let b = label_set([("kind", "b")]); // both sides
        let c = label_set([("kind", "c")]); // target only
        let alerts = vec![a.clone(), b.clone(), c.clone()];
        assert_eq!(both(&mut inh, &b, &alerts), Some(fingerprint(&a)));
        assert_eq!(both(&mut inh, &b, &[b.clone(), c.clone()]), None);
        assert!(both(&mut inh, &c, std::slice::from_ref(&b)).is_some());
        assert_eq!(both(&mut inh, &a, &alerts), None);
    }

    #[test]
    fn first_rule_wins_and_result_is_smallest_fingerprint() {
        let mut inh = Inhibitor::new(&[
            rule(&[r#"r="1""#], &[r#"t="1""#], &[]),
            rule(&[r#"r="2""#], &[r#"t="1""#], &[]),
        ])
        .unwrap();
        let s1 = label_set([("r", "1"), ("n", "a")]);
        let s1b = label_set([("r", "1"), ("n", "b")]);
        let s2 = label_set([("r", "2")]);
        let t = label_set([("t", "1")]);
        let alerts = vec![s2.clone(), s1.clone(), s1b.clone()];
        assert_eq!(
            both(&mut inh, &t, &alerts),
            Some(fingerprint(&s1).min(fingerprint(&s1b)))
        );
        assert_eq!(
            both(&mut inh, &t, std::slice::from_ref(&s2)),
            Some(fingerprint(&s2))
        );
    }

    #[test]
    fn update_replaces_index() {
        let mut inh = Inhibitor::new(&[rule(&[r#"s="1""#], &[r#"t="1""#], &[])]).unwrap();
        let s = label_set([("s", "1")]);
        let t = label_set([("t", "1")]);
        with_index(&mut inh, std::slice::from_ref(&s));
        assert!(inh.check(&t).is_some());
        with_index(&mut inh, &[]);
        assert!(inh.check(&t).is_none());
        assert_eq!(inh.index_stats(), (0, 0));
    }

    #[test]
    fn config_from_toml_and_errors() {
        #[derive(Deserialize)]
        struct Top {
            inhibit_rules: Vec<InhibitRuleConfig>,
        }
        let top: Top = toml::from_str(
            r#"
[[inhibit_rules]]
source_matchers = ['severity="critical"']
target_matchers = ['severity="warning"']
equal = ["alertname", "cluster"]

[[inhibit_rules]]
source_matchers = ['a=~"("']
"#,
        )
        .unwrap();
        let err = Inhibitor::new(&top.inhibit_rules).unwrap_err();
        assert_eq!(err.rule, 1);
        assert_eq!(err.field, "source_matchers[0]");
        assert!(
            err.to_string()
                .starts_with("inhibit_rules[1]: source_matchers[0]: ")
        );
        assert!(Inhibitor::new(&top.inhibit_rules[..1]).is_ok());
        let bad: Result<Top, _> = toml::from_str("[[inhibit_rules]]\nsource_match = {a = \"b\"}\n");
        assert!(bad.is_err(), "unknown fields are rejected");
    }

    #[test]
    fn many_sources_indexed_lookup() {
        // 10,000 firing sources, each with a distinct `instance`. The rule
        // uses `equal = ["instance"]`, so the index has 10,000 buckets of
        // one entry each: checking a target hashes its `instance` value and
        // looks at a single bucket instead of scanning all 10,000 sources.
        let mut inh = Inhibitor::new(&[rule(
            &[r#"alertname="NodeDown""#],
            &[r#"alertname="ServiceDown""#],
            &["instance"],
        )])
        .unwrap();
        let firing: Vec<(u64, LabelSet)> = (0..10_000)
            .map(|i| {
                let l = label_set([("alertname", "NodeDown"), ("instance", &format!("n{i}"))]);
                (fingerprint(&l), l)
            })
            .collect();
        inh.update(firing.iter().map(|(f, l)| (*f, l)));
        assert_eq!(inh.index_stats(), (10_000, 10_000));
        for i in [0, 1, 4_999, 9_999] {
            let t = label_set([("alertname", "ServiceDown"), ("instance", &format!("n{i}"))]);
            assert_eq!(inh.check(&t), Some(firing[i].0));
        }
        let t = label_set([("alertname", "ServiceDown"), ("instance", "n10000")]);
        assert_eq!(inh.check(&t), None);
        // Targets not matching the target side never touch the index.
        let t = label_set([("alertname", "Other"), ("instance", "n1")]);
        assert_eq!(inh.check(&t), None);
    }

    #[test]
    fn incremental_index_equals_a_rebuild() {
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        };
        let rules = [
            rule(
                &[r#"alertname="HostDown""#],
                &[r#"severity=~"warning|info""#],
                &["host"],
            ),
            rule(
                &[r#"severity="critical""#],
                &[r#"severity=~"critical|warning""#],
                &["alertname"],
            ),
            rule(&[r#"alertname="ClusterDown""#], &[], &["cluster"]),
        ];
        let mut inc = Inhibitor::new(&rules).unwrap();
        let names = ["HostDown", "ClusterDown", "Disk", "Load"];
        let sev = ["critical", "warning", "info"];
        let labels_of = |i: usize| {
            label_set([
                ("alertname", names[i % 4]),
                ("severity", sev[(i / 4) % 3]),
                ("host", ["h1", "h2", "h3"][(i / 12) % 3]),
                ("cluster", ["c1", "c2"][(i / 36) % 2]),
            ])
        };
        let now = 1_000;
        // fingerprint → (labels, end)
        let mut live: HashMap<u64, (LabelSet, Option<i64>)> = HashMap::new();
        for _ in 0..3_000 {
            let l = labels_of(next(72));
            let fp = fingerprint(&l);
            if next(4) == 0 {
                if let Some((old, _)) = live.remove(&fp) {
                    inc.remove(fp, &old);
                }
            } else {
                // Ended, ends later, or never ends.
                let end = [Some(now - 1), Some(now + 5), None][next(3)];
                inc.upsert(fp, &l, end);
                live.insert(fp, (l, end));
            }
            let mut full = Inhibitor::new(&rules).unwrap();
            let firing: Vec<(u64, &LabelSet)> = live
                .iter()
                .filter(|(_, (_, e))| e.is_none_or(|e| e > now))
                .map(|(fp, (l, _))| (*fp, l))
                .collect();
            full.update(firing.iter().copied());
            let t = labels_of(next(72));
            assert_eq!(inc.check_at(&t, now), full.check_at(&t, now), "{t:?}");
            let sources: Vec<&LabelSet> = firing.iter().map(|(_, l)| *l).collect();
            assert_eq!(
                inc.check_at(&t, now),
                full.is_inhibited(&t, sources.into_iter())
            );
        }
    }
}
