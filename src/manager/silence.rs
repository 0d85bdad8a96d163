//! Silences: matchers over alert labels with a start, an end, an author and a comment, in the
//! states pending, active and expired; recurring silences (a cron expression and a duration) for
//! maintenance windows; and the index that answers "which silence mutes these labels" without
//! scanning every silence.
//!
//! The index keys each silence by one of its equality matchers (`name="value"`), so a lookup
//! only checks the silences whose key label the alert carries with that value, plus the few
//! silences that have no equality matcher.

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
    /// An expired silence cannot change.
    #[error("silence {0} is expired and cannot be changed")]
    Expired(String),
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

/// All silences, indexed for muting checks.
#[derive(Debug, Default)]
pub struct Silences {
    by_id: FxHashMap<String, Silence>,
    /// Label name → value of one equality matcher → ids (nested, so a lookup borrows the
    /// alert's label strings instead of building a key).
    index: FxHashMap<String, FxHashMap<String, Vec<String>>>,
    /// Silences without an equality matcher.
    unindexed: Vec<String>,
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
        self.by_id.get(id)
    }

    /// Every silence.
    pub fn iter(&self) -> impl Iterator<Item = &Silence> {
        self.by_id.values()
    }

    fn anchor(s: &Silence) -> Option<(String, String)> {
        s.matchers
            .iter()
            .find(|m| m.op == MatchOp::Eq && !m.value.is_empty())
            .map(|m| (m.name.clone(), m.value.clone()))
    }

    fn unindex(&mut self, s: &Silence) {
        match Self::anchor(s) {
            Some((name, value)) => {
                if let Some(values) = self.index.get_mut(&name) {
                    if let Some(ids) = values.get_mut(&value) {
                        ids.retain(|id| id != &s.id);
                        if ids.is_empty() {
                            values.remove(&value);
                        }
                    }
                    if values.is_empty() {
                        self.index.remove(&name);
                    }
                }
            }
            None => self.unindexed.retain(|id| id != &s.id),
        }
    }

    /// Adds or replaces a silence.
    pub fn insert(&mut self, s: Silence) {
        if let Some(old) = self.by_id.remove(&s.id) {
            self.unindex(&old);
        }
        match Self::anchor(&s) {
            Some((name, value)) => self
                .index
                .entry(name)
                .or_default()
                .entry(value)
                .or_default()
                .push(s.id.clone()),
            None => self.unindexed.push(s.id.clone()),
        }
        self.by_id.insert(s.id.clone(), s);
    }

    /// Removes a silence.
    pub fn remove(&mut self, id: &str) -> Option<Silence> {
        let s = self.by_id.remove(id)?;
        self.unindex(&s);
        Some(s)
    }

    /// The id of a silence muting `labels` at `now`, if any.
    pub fn muted_by(&self, labels: &LabelSet, now: i64) -> Option<&str> {
        let candidates = labels
            .iter()
            .filter_map(|(k, v)| self.index.get(k)?.get(v))
            .flatten()
            .chain(self.unindexed.iter());
        for id in candidates {
            if let Some(s) = self.by_id.get(id)
                && s.mutes(labels, now)
            {
                return Some(&s.id);
            }
        }
        None
    }

    /// Ids of silences expired for longer than `retention` at `now`.
    pub fn purgeable(&self, now: i64, retention: i64) -> Vec<String> {
        self.by_id
            .values()
            .filter(|s| s.spec.ends_at.saturating_add(retention) < now)
            .map(|s| s.id.clone())
            .collect()
    }

    /// The earliest state change of any silence after `now`.
    pub fn next_change(&self, now: i64) -> Option<i64> {
        self.by_id.values().filter_map(|s| s.next_change(now)).min()
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
}
