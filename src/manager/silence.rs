//! Silences: matchers over alert labels with a start, an end, an author and a comment, in the
//! states pending, active and expired; recurring silences (a cron expression and a duration) for
//! maintenance windows; and the index that answers "which silence mutes these labels" without
//! scanning every silence.
//!
//! The index files each silence under one label it needs: the value of an equality matcher
//! (`name="value"`), the literal prefixes of a regex matcher (`name=~"web-.*"` under `web-`), or
//! only when neither exists the label's name. A lookup checks only the silences filed under the
//! alert's label values, their prefixes and its label names.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::labels::LabelSet;
use super::matcher::{MatchOp, Matcher, format_matchers, parse_matcher};

/// A silence's state at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    /// Not started yet (or, for a recurring silence, between two occurrences).
    Pending,
    /// Muting matching alerts now.
    Active,
    /// Over.
    Expired,
}

impl SilenceState {
    /// `pending`, `active`, `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

/// A silence as stored and as the APIs exchange it (times are Unix ns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceSpec {
    /// Matchers in Alertmanager's syntax, one per string (`instance=~"web-.*"`).
    pub matchers: Vec<String>,
    /// Start, Unix ns.
    pub starts_at: i64,
    /// End, Unix ns.
    pub ends_at: i64,
    /// Who created it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// For a recurring silence: a cron expression (5 fields `min hour dom month dow`, or 6 with
    /// seconds first) at which each occurrence starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<String>,
    /// For a recurring silence: how long each occurrence lasts, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ns: Option<i64>,
    /// For a recurring silence: the time zone the cron expression is read in (IANA name,
    /// default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// For an acknowledgement: the fingerprint (16 hex digits) of the alert acknowledged; the
    /// silence is expired once that alert has resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_resolved: Option<String>,
}

/// Why a silence is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    /// A matcher does not parse.
    #[error("matchers[{index}]: {msg}")]
    Matcher {
        /// Position in the list.
        index: usize,
        /// What is wrong.
        msg: String,
    },
    /// No matchers, or all of them match the empty string (the silence would mute everything).
    #[error("matchers: at least one matcher must not match the empty string")]
    MatchesEverything,
    /// The end is before the start.
    #[error("endsAt: must not be before startsAt")]
    EndBeforeStart,
    /// The recurrence is wrong.
    #[error("{field}: {msg}")]
    Recurrence {
        /// `recurrence`, `duration` or `location`.
        field: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// No silence has this id.
    #[error("silence {0} not found")]
    NotFound(String),
}

#[derive(Debug, Clone)]
struct Recurrence {
    schedule: cron::Schedule,
    duration: i64,
    tz: chrono_tz::Tz,
}

/// A validated silence.
#[derive(Debug, Clone)]
pub struct Silence {
    /// Its id (a UUID).
    pub id: String,
    /// What was given.
    pub spec: SilenceSpec,
    /// Last change, Unix ns.
    pub updated_at: i64,
    matchers: Vec<Matcher>,
    recurrence: Option<Recurrence>,
}

fn to_utc(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

impl Silence {
    /// Validates a silence.
    pub fn new(id: String, spec: SilenceSpec, updated_at: i64) -> Result<Silence, SilenceError> {
        let mut matchers = Vec::with_capacity(spec.matchers.len());
        for (index, m) in spec.matchers.iter().enumerate() {
            matchers.push(parse_matcher(m).map_err(|e| SilenceError::Matcher {
                index,
                msg: e.to_string(),
            })?);
        }
        if matchers.iter().all(Matcher::matches_empty) {
            return Err(SilenceError::MatchesEverything);
        }
        if spec.ends_at < spec.starts_at {
            return Err(SilenceError::EndBeforeStart);
        }
        let recurrence = match (&spec.recurrence, spec.duration_ns) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(SilenceError::Recurrence {
                    field: "duration",
                    msg: "a recurring silence needs a duration".into(),
                });
            }
            (None, Some(_)) => {
                return Err(SilenceError::Recurrence {
                    field: "recurrence",
                    msg: "a duration needs a cron expression".into(),
                });
            }
            (Some(expr), Some(d)) => {
                if d <= 0 {
                    return Err(SilenceError::Recurrence {
                        field: "duration",
                        msg: "must be positive".into(),
                    });
                }
                Some(Recurrence {
                    schedule: parse_cron(expr)?,
                    duration: d,
                    tz: match &spec.location {
                        None => chrono_tz::UTC,
                        Some(l) => l.parse().map_err(|_| SilenceError::Recurrence {
                            field: "location",
                            msg: format!("unknown time zone '{l}'"),
                        })?,
                    },
                })
            }
        };
        Ok(Silence {
            id,
            spec,
            updated_at,
            matchers,
            recurrence,
        })
    }

    /// The parsed matchers.
    pub fn matchers(&self) -> &[Matcher] {
        &self.matchers
    }

    /// The matchers in `{a="b", c=~"d"}` form.
    pub fn matchers_text(&self) -> String {
        format_matchers(&self.matchers)
    }

    /// Whether it is recurring.
    pub fn is_recurring(&self) -> bool {
        self.recurrence.is_some()
    }

    /// The occurrence (start, end) of a recurring silence that contains `now`, or else the next
    /// one, clipped to the silence's own start and end; `None` when no occurrence is left.
    /// For a plain silence, its start and end while not expired.
    pub fn occurrence(&self, now: i64) -> Option<(i64, i64)> {
        let (s, e) = (self.spec.starts_at, self.spec.ends_at);
        let Some(r) = &self.recurrence else {
            return (now <= e).then_some((s, e));
        };
        // The first occurrence starting after `max(now, start) - duration` is the one that
        // contains `now` if any does, else the next.
        let from = now.max(s).saturating_sub(r.duration);
        let from = to_utc(from).with_timezone(&r.tz);
        for start in r.schedule.after(&from).take(2) {
            // Every candidate ends after max(now, start of the silence).
            let start = start.with_timezone(&Utc).timestamp_nanos_opt()?;
            let end = start.saturating_add(r.duration).min(e);
            let start = start.max(s);
            if start > e {
                return None;
            }
            if end > start {
                return Some((start, end));
            }
        }
        None
    }

    /// The state at `now`.
    pub fn state(&self, now: i64) -> SilenceState {
        if now > self.spec.ends_at {
            return SilenceState::Expired;
        }
        if now < self.spec.starts_at {
            return SilenceState::Pending;
        }
        match self.recurrence {
            None => SilenceState::Active,
            Some(_) => match self.occurrence(now) {
                Some((s, e)) if s <= now && now < e => SilenceState::Active,
                Some(_) => SilenceState::Pending,
                None => SilenceState::Expired,
            },
        }
    }

    /// Whether it mutes an alert with `labels` at `now`.
    pub fn mutes(&self, labels: &LabelSet, now: i64) -> bool {
        self.state(now) == SilenceState::Active && self.matchers.iter().all(|m| m.matches(labels))
    }

    /// The time of its next state change after `now` (start, end of an occurrence, end), so the
    /// dispatcher can re-check muted alerts then.
    pub fn next_change(&self, now: i64) -> Option<i64> {
        match self.state(now) {
            SilenceState::Expired => None,
            SilenceState::Pending | SilenceState::Active => {
                let (s, e) = self.occurrence(now)?;
                if now < s { Some(s) } else { Some(e) }
            }
        }
    }
}

/// Parses a cron expression: 5 fields (`min hour dom month dow`, as crontab) or the 6–7 field
/// form with seconds (and years).
fn parse_cron(expr: &str) -> Result<cron::Schedule, SilenceError> {
    let fields = expr.split_whitespace().count();
    let full = if fields == 5 {
        format!("0 {expr}")
    } else {
        expr.to_string()
    };
    cron::Schedule::from_str(&full).map_err(|e| SilenceError::Recurrence {
        field: "recurrence",
        msg: format!("'{expr}' is not a cron expression: {e}"),
    })
}

/// Where a silence is filed in the index: by a label it needs the alert to carry. Every valid
/// silence has a matcher that does not match the empty string (else it would mute everything),
/// and such a matcher needs its label present, so every silence can be filed by something.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Anchor {
    /// An equality matcher `name="value"` (value not empty).
    Value(String, String),
    /// A regex matcher whose every match starts with one of these (non-empty) byte strings.
    Prefixes(String, Vec<Vec<u8>>),
    /// A matcher that needs `name` present with a non-empty value.
    Present(String),
}

/// Most prefixes a regex may be filed under.
const MAX_PREFIXES: usize = 64;

/// The literal prefixes every match of `value` (a regex, matched whole) starts with, when
/// there are few and none is empty.
fn regex_prefixes(value: &str) -> Option<Vec<Vec<u8>>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let hir = regex_syntax::Parser::new().parse(value).ok()?;
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    let lits = seq.literals()?;
    if lits.is_empty() || lits.len() > MAX_PREFIXES || lits.iter().any(|l| l.is_empty()) {
        return None;
    }
    let mut out: Vec<Vec<u8>> = lits.iter().map(|l| l.as_bytes().to_vec()).collect();
    out.sort();
    out.dedup();
    Some(out)
}

/// Silences filed under literal prefixes of one label's value.
#[derive(Debug, Default)]
struct PrefixIndex {
    by_prefix: FxHashMap<Vec<u8>, Vec<u32>>,
    /// Distinct prefix lengths → number of prefixes of that length (a lookup probes each).
    lens: std::collections::BTreeMap<usize, usize>,
}

/// All silences, indexed for muting checks.
///
/// Each silence is filed under one [`Anchor`], chosen when it is inserted among its matchers
/// that need a label present: an equality matcher or a regex with literal prefixes, whichever
/// currently shares its slot with the fewest silences (so 1,000 silences
/// `cluster=~"c{j}-.*", severity=~"warning|info"` are filed by their distinct cluster prefixes,
/// not all under `severity`), and only when neither exists, the label's presence. A lookup
/// then checks only the silences filed under the alert's label values, their prefixes, or its
/// label names.
#[derive(Debug, Default)]
pub struct Silences {
    /// Silence and its anchor by slot; `None` slots are free.
    slots: Vec<Option<(Silence, Anchor)>>,
    free: Vec<u32>,
    by_id: FxHashMap<String, u32>,
    /// Label name → the silences filed under that label. One lookup per label of an alert
    /// finds all three kinds; a label no silence is filed under costs one miss.
    by_name: FxHashMap<String, NameIndex>,
}

/// The silences filed under one label name.
#[derive(Debug, Default)]
struct NameIndex {
    /// Value → slots.
    values: FxHashMap<String, Vec<u32>>,
    /// Prefixes of the value → slots.
    prefixes: PrefixIndex,
    /// Slots of silences that only need the label present.
    present: Vec<u32>,
}

impl NameIndex {
    fn is_empty(&self) -> bool {
        self.values.is_empty() && self.prefixes.by_prefix.is_empty() && self.present.is_empty()
    }
}

fn remove_slot(v: &mut Vec<u32>, slot: u32) {
    if let Some(i) = v.iter().position(|s| *s == slot) {
        v.swap_remove(i);
    }
}

impl Silences {
    /// An empty set.
    pub fn new() -> Silences {
        Silences::default()
    }

    /// Number of silences (any state).
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// A silence by id.
    pub fn get(&self, id: &str) -> Option<&Silence> {
        let slot = *self.by_id.get(id)?;
        self.silence(slot)
    }

    fn silence(&self, slot: u32) -> Option<&Silence> {
        self.slots
            .get(slot as usize)
            .and_then(Option::as_ref)
            .map(|(s, _)| s)
    }

    /// Every silence.
    pub fn iter(&self) -> impl Iterator<Item = &Silence> {
        self.slots.iter().flatten().map(|(s, _)| s)
    }

    /// How many silences share the slot(s) `a` would file a silence in.
    fn crowd(&self, a: &Anchor) -> usize {
        match a {
            Anchor::Value(n, v) => self
                .by_name
                .get(n)
                .and_then(|i| i.values.get(v))
                .map_or(0, Vec::len),
            Anchor::Prefixes(n, ps) => {
                let idx = self.by_name.get(n).map(|i| &i.prefixes);
                ps.iter()
                    .map(|p| 1 + idx.and_then(|i| i.by_prefix.get(p)).map_or(0, Vec::len))
                    .sum::<usize>()
                    - 1
            }
            Anchor::Present(n) => self.by_name.get(n).map_or(0, |i| i.present.len()),
        }
    }

    /// The anchor to file `s` under.
    fn anchor(&self, s: &Silence) -> Anchor {
        let mut best: Option<(usize, Anchor)> = None;
        for m in &s.matchers {
            let a = match m.op {
                MatchOp::Eq if !m.value.is_empty() => {
                    Anchor::Value(m.name.clone(), m.value.clone())
                }
                MatchOp::Re if !m.matches_empty() => match regex_prefixes(&m.value) {
                    Some(ps) => Anchor::Prefixes(m.name.clone(), ps),
                    None => continue,
                },
                _ => continue,
            };
            let c = self.crowd(&a);
            if best.as_ref().is_none_or(|(b, _)| c < *b) {
                best = Some((c, a));
            }
        }
        if let Some((_, a)) = best {
            return a;
        }
        // Validation guarantees a matcher that does not match the empty string.
        let m = s
            .matchers
            .iter()
            .find(|m| !m.matches_empty())
            .or(s.matchers.first());
        Anchor::Present(m.map(|m| m.name.clone()).unwrap_or_default())
    }

    fn file(&mut self, a: &Anchor, slot: u32) {
        match a {
            Anchor::Value(n, v) => self
                .by_name
                .entry(n.clone())
                .or_default()
                .values
                .entry(v.clone())
                .or_default()
                .push(slot),
            Anchor::Prefixes(n, ps) => {
                let idx = &mut self.by_name.entry(n.clone()).or_default().prefixes;
                for p in ps {
                    let slots = idx.by_prefix.entry(p.clone()).or_default();
                    if slots.is_empty() {
                        *idx.lens.entry(p.len()).or_default() += 1;
                    }
                    slots.push(slot);
                }
            }
            Anchor::Present(n) => self
                .by_name
                .entry(n.clone())
                .or_default()
                .present
                .push(slot),
        }
    }

    fn unfile(&mut self, a: &Anchor, slot: u32) {
        let name = match a {
            Anchor::Value(n, _) | Anchor::Prefixes(n, _) | Anchor::Present(n) => n,
        };
        let Some(idx) = self.by_name.get_mut(name) else {
            return;
        };
        match a {
            Anchor::Value(_, v) => {
                if let Some(slots) = idx.values.get_mut(v) {
                    remove_slot(slots, slot);
                    if slots.is_empty() {
                        idx.values.remove(v);
                    }
                }
            }
            Anchor::Prefixes(_, ps) => {
                let idx = &mut idx.prefixes;
                for p in ps {
                    let Some(slots) = idx.by_prefix.get_mut(p) else {
                        continue;
                    };
                    remove_slot(slots, slot);
                    if slots.is_empty() {
                        idx.by_prefix.remove(p);
                        if let Some(c) = idx.lens.get_mut(&p.len()) {
                            *c -= 1;
                            if *c == 0 {
                                idx.lens.remove(&p.len());
                            }
                        }
                    }
                }
            }
            Anchor::Present(_) => remove_slot(&mut idx.present, slot),
        }
        if idx.is_empty() {
            self.by_name.remove(name);
        }
    }

    /// Adds or replaces a silence.
    pub fn insert(&mut self, s: Silence) {
        self.remove(&s.id);
        let anchor = self.anchor(&s);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        self.file(&anchor, slot);
        self.by_id.insert(s.id.clone(), slot);
        self.slots[slot as usize] = Some((s, anchor));
    }

    /// Removes a silence.
    pub fn remove(&mut self, id: &str) -> Option<Silence> {
        let slot = self.by_id.remove(id)?;
        let (s, anchor) = self.slots.get_mut(slot as usize)?.take()?;
        self.unfile(&anchor, slot);
        self.free.push(slot);
        Some(s)
    }

    /// The silences that may mute `labels`: every silence that does is among them (some more
    /// than once).
    fn candidates<'a>(&'a self, labels: &'a LabelSet) -> impl Iterator<Item = u32> + 'a {
        labels.iter().flat_map(move |(k, v)| {
            self.by_name.get(k).into_iter().flat_map(move |idx| {
                let bytes = v.as_bytes();
                let by_prefix = idx
                    .prefixes
                    .lens
                    .keys()
                    .take_while(move |l| **l <= bytes.len())
                    .filter_map(move |l| idx.prefixes.by_prefix.get(&bytes[..*l]))
                    .flatten();
                idx.values
                    .get(v)
                    .into_iter()
                    .flatten()
                    .chain(by_prefix)
                    .chain(&idx.present)
                    .copied()
            })
        })
    }

    /// The id of a silence muting `labels` at `now`, if any.
    pub fn muted_by(&self, labels: &LabelSet, now: i64) -> Option<&str> {
        // No silence at all, the usual case: the alert's labels are not even read.
        if self.by_name.is_empty() {
            return None;
        }
        self.candidates(labels)
            .filter_map(|slot| self.silence(slot))
            .find(|s| s.mutes(labels, now))
            .map(|s| s.id.as_str())
    }

    /// Ids of every silence muting `labels` at `now` (each once, in no particular order).
    pub fn all_muting(&self, labels: &LabelSet, now: i64) -> Vec<String> {
        let mut slots: Vec<u32> = self
            .candidates(labels)
            .filter(|slot| self.silence(*slot).is_some_and(|s| s.mutes(labels, now)))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        slots
            .into_iter()
            .filter_map(|slot| self.silence(slot))
            .map(|s| s.id.clone())
            .collect()
    }

    /// Ids of silences expired for longer than `retention` at `now`.
    pub fn purgeable(&self, now: i64, retention: i64) -> Vec<String> {
        self.iter()
            .filter(|s| s.spec.ends_at.saturating_add(retention) < now)
            .map(|s| s.id.clone())
            .collect()
    }

    /// The earliest state change of any silence after `now`.
    pub fn next_change(&self, now: i64) -> Option<i64> {
        self.iter().filter_map(|s| s.next_change(now)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::labels::label_set;

    const S: i64 = 1_000_000_000;
    const H: i64 = 3600 * S;

    fn spec(matchers: &[&str], start: i64, end: i64) -> SilenceSpec {
        SilenceSpec {
            matchers: matchers.iter().map(|s| s.to_string()).collect(),
            starts_at: start,
            ends_at: end,
            created_by: "ops".into(),
            comment: "maintenance".into(),
            recurrence: None,
            duration_ns: None,
            location: None,
            until_resolved: None,
        }
    }

    #[test]
    fn states_and_muting() {
        let s = Silence::new("a".into(), spec(&["host=\"web1\""], 10 * S, 20 * S), 0).unwrap();
        let l = label_set([("host", "web1"), ("alertname", "Down")]);
        assert_eq!(s.state(5 * S), SilenceState::Pending);
        assert_eq!(s.state(15 * S), SilenceState::Active);
        assert_eq!(s.state(21 * S), SilenceState::Expired);
        assert!(!s.mutes(&l, 5 * S));
        assert!(s.mutes(&l, 15 * S));
        assert!(!s.mutes(&label_set([("host", "web2")]), 15 * S));
    }

    #[test]
    fn validation_names_the_problem() {
        let e = Silence::new("a".into(), spec(&["host=~\".*\""], 0, S), 0).unwrap_err();
        assert_eq!(e, SilenceError::MatchesEverything);
        let e = Silence::new("a".into(), spec(&["host=\"a\"", "x=~\"(\""], 0, S), 0).unwrap_err();
        assert!(e.to_string().starts_with("matchers[1]:"), "{e}");
        let e = Silence::new("a".into(), spec(&["host=\"a\""], 2 * S, S), 0).unwrap_err();
        assert_eq!(e, SilenceError::EndBeforeStart);
        let mut r = spec(&["host=\"a\""], 0, S);
        r.recurrence = Some("every sunday".into());
        r.duration_ns = Some(H);
        let e = Silence::new("a".into(), r, 0).unwrap_err();
        assert!(e.to_string().starts_with("recurrence:"), "{e}");
    }

    #[test]
    fn recurring_silence_is_active_in_each_occurrence_only() {
        // Every Sunday 02:00 UTC for 2 h, from Mon 2026-11-02 for a year.
        let start = DateTime::parse_from_rfc3339("2026-11-02T00:00:00Z")
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap();
        let mut sp = spec(&["env=\"prod\""], start, start + 365 * 24 * H);
        sp.recurrence = Some("0 2 * * SUN".into());
        sp.duration_ns = Some(2 * H);
        let s = Silence::new("r".into(), sp, 0).unwrap();
        let at = |t: &str| {
            DateTime::parse_from_rfc3339(t)
                .unwrap()
                .timestamp_nanos_opt()
                .unwrap()
        };
        // Sunday 2026-11-08.
        assert_eq!(s.state(at("2026-11-08T01:59:59Z")), SilenceState::Pending);
        assert_eq!(s.state(at("2026-11-08T02:00:00Z")), SilenceState::Active);
        assert_eq!(s.state(at("2026-11-08T03:59:59Z")), SilenceState::Active);
        assert_eq!(s.state(at("2026-11-08T04:00:00Z")), SilenceState::Pending);
        assert_eq!(
            s.occurrence(at("2026-11-08T05:00:00Z")),
            Some((at("2026-11-15T02:00:00Z"), at("2026-11-15T04:00:00Z")))
        );
        assert_eq!(
            s.next_change(at("2026-11-08T03:00:00Z")),
            Some(at("2026-11-08T04:00:00Z"))
        );
        let l = label_set([("env", "prod")]);
        assert!(s.mutes(&l, at("2026-11-15T03:00:00Z")));
        assert!(!s.mutes(&l, at("2026-11-16T03:00:00Z")));
    }

    #[test]
    fn recurring_in_a_time_zone() {
        let mut sp = spec(&["env=\"prod\""], 0, i64::MAX / 2);
        sp.recurrence = Some("0 2 * * *".into());
        sp.duration_ns = Some(H);
        sp.location = Some("Europe/Berlin".into());
        let s = Silence::new("r".into(), sp, 0).unwrap();
        // 02:00 in Berlin in November is 01:00 UTC.
        let t = DateTime::parse_from_rfc3339("2026-11-10T01:30:00Z")
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap();
        assert_eq!(s.state(t), SilenceState::Active);
        assert_eq!(s.state(t + H), SilenceState::Pending);
    }

    #[test]
    fn index_finds_the_muting_silence_among_many() {
        let mut all = Silences::new();
        for i in 0..10_000 {
            let s = Silence::new(
                format!("s{i}"),
                spec(
                    &[&format!("host=\"web{i}\""), "env=~\"prod|stage\""],
                    0,
                    100 * S,
                ),
                0,
            )
            .unwrap();
            all.insert(s);
        }
        all.insert(Silence::new("re".into(), spec(&["team=~\"db.*\""], 0, 100 * S), 0).unwrap());
        assert_eq!(
            all.muted_by(&label_set([("host", "web42"), ("env", "prod")]), S),
            Some("s42")
        );
        assert_eq!(
            all.muted_by(&label_set([("host", "web42"), ("env", "dev")]), S),
            None
        );
        assert_eq!(
            all.muted_by(&label_set([("host", "x"), ("team", "dba")]), S),
            Some("re")
        );
        all.remove("s42");
        assert_eq!(
            all.muted_by(&label_set([("host", "web42"), ("env", "prod")]), S),
            None
        );
        assert_eq!(all.purgeable(200 * S, 50 * S).len(), 10_000);
    }

    /// A small deterministic generator for randomized tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    #[test]
    fn regex_prefixes_cover_every_match() {
        assert_eq!(regex_prefixes("c12-.*"), Some(vec![b"c12-".to_vec()]));
        assert_eq!(
            regex_prefixes("warning|info"),
            Some(vec![b"info".to_vec(), b"warning".to_vec()])
        );
        assert_eq!(regex_prefixes(".*-prod"), None);
        let p = regex_prefixes("a?b").unwrap();
        assert!(
            ["ab", "b"]
                .iter()
                .all(|v| p.iter().any(|x| v.as_bytes().starts_with(x)))
        );
        assert!(regex_prefixes("x|.*").is_none());
    }

    #[test]
    fn index_agrees_with_a_linear_scan() {
        let names = ["alertname", "cluster", "severity", "host", "team"];
        let values = [
            "", "a", "ab", "abc", "b", "web-1", "web-12", "web-x", "Web-1", "c1-a", "c12-b", "c1",
            "prod", "stage", "warning", "info", "é", "éa", "x", "xy", "yy",
        ];
        let regexes = [
            "a|ab",
            "ab*",
            "(?i)web-.*",
            "web-[0-9]+",
            ".+",
            "x*y",
            "[ab]c?",
            "prod|stage",
            "c1-.*",
            "c12-.*",
            "warning|info",
            ".*",
            "é.*",
            "(a|b)(b|c)",
            "a?b",
            "y+",
            "web-1|web-12",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..40 {
            let mut all = Silences::new();
            let mut live: Vec<String> = Vec::new();
            for i in 0..60 {
                let n = 1 + rng.next(3);
                let ms: Vec<String> = (0..n)
                    .map(|_| {
                        let name = names[rng.next(names.len())];
                        match rng.next(4) {
                            0 => format!("{name}=\"{}\"", values[rng.next(values.len())]),
                            1 => format!("{name}!=\"{}\"", values[rng.next(values.len())]),
                            2 => format!("{name}=~\"{}\"", regexes[rng.next(regexes.len())]),
                            _ => format!("{name}!~\"{}\"", regexes[rng.next(regexes.len())]),
                        }
                    })
                    .collect();
                let refs: Vec<&str> = ms.iter().map(String::as_str).collect();
                // Replace an existing silence now and then.
                let id = if !live.is_empty() && rng.next(5) == 0 {
                    live[rng.next(live.len())].clone()
                } else {
                    format!("s{round}-{i}")
                };
                if let Ok(s) = Silence::new(id.clone(), spec(&refs, 0, 100 * S), 0) {
                    all.insert(s);
                    if !live.contains(&id) {
                        live.push(id);
                    }
                }
                if rng.next(6) == 0 && !live.is_empty() {
                    let gone = live.swap_remove(rng.next(live.len()));
                    assert!(all.remove(&gone).is_some());
                }
            }
            assert_eq!(all.len(), live.len());
            for _ in 0..300 {
                let mut pairs: Vec<(&str, &str)> = Vec::new();
                for n in names {
                    if rng.next(3) != 0 {
                        pairs.push((n, values[rng.next(values.len())]));
                    }
                }
                let labels = label_set(pairs);
                let mut want: Vec<String> = all
                    .iter()
                    .filter(|s| s.mutes(&labels, S))
                    .map(|s| s.id.clone())
                    .collect();
                want.sort();
                let mut got = all.all_muting(&labels, S);
                got.sort();
                assert_eq!(got, want, "{labels:?}");
                assert_eq!(all.muted_by(&labels, S).is_some(), !want.is_empty());
            }
            // Emptied again, the index holds nothing: lookups return early without a miss.
            for id in live.drain(..) {
                assert!(all.remove(&id).is_some());
            }
            assert!(all.by_name.is_empty(), "{:?}", all.by_name.keys());
            assert!(all.is_empty());
        }
    }
}
