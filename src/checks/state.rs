//! Nagios semantics of passive check results: states and codes, output split into summary,
//! perfdata and long output, SOFT/HARD states with `max_check_attempts`, flap detection over the
//! last 21 states, freshness, and services of a DOWN host held back. Owns [`Checks`], the state
//! of every (host, service), and decides which alert changes a result causes.

use regex::Regex;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::storage::CheckRow;
use serde::Deserialize;
use std::time::Duration;

use super::CheckResult;

/// Settings of passive checks (`[checks]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChecksConfig {
    /// State a check turns to when no result came within its expected interval: `OK`,
    /// `WARNING`, `CRITICAL` or `UNKNOWN`.
    pub stale_state: String,
    /// Flapping starts when the weighted share of state changes over the last 21 results
    /// reaches this percentage.
    pub flap_high: f64,
    /// Flapping stops when the share falls below this percentage.
    pub flap_low: f64,
    /// Per host/service settings; the first entry whose patterns match applies.
    pub rules: Vec<CheckRule>,
    /// NRDP: accept check results at `POST /nrdp/` (on the main port).
    pub nrdp: bool,
    /// The NSCA intake for `send_nsca` (off unless `listen` is set).
    pub nsca: super::nsca::NscaConfig,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        ChecksConfig {
            stale_state: "UNKNOWN".into(),
            flap_high: 30.0,
            flap_low: 20.0,
            rules: Vec::new(),
            nrdp: true,
            nsca: super::nsca::NscaConfig::default(),
        }
    }
}

/// Settings for the checks whose host and service match.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckRule {
    /// Regular expression (anchored) the host name must match; default any.
    #[serde(default)]
    pub host: Option<String>,
    /// Regular expression (anchored) the service must match; `host` matches host checks only;
    /// default any check.
    #[serde(default)]
    pub service: Option<String>,
    /// Consecutive non-OK results before a problem is HARD (and notified). Default 1.
    #[serde(default = "one")]
    pub max_check_attempts: u32,
    /// Expected interval between results (`1m`); past it the check is stale. Default: none
    /// (no freshness check unless the result carries a `ttl`).
    #[serde(default)]
    pub interval: Option<String>,
}

fn one() -> u32 {
    1
}

/// Why the checks settings are invalid.
#[derive(Debug, thiserror::Error)]
pub enum ChecksConfigError {
    /// A pattern does not compile.
    #[error("checks.rules[{index}].{field}: {msg}")]
    Rule {
        /// Position.
        index: usize,
        /// `host`, `service`, `interval` or `max_check_attempts`.
        field: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// `stale_state` or flap thresholds are wrong.
    #[error("checks.{field}: {msg}")]
    Field {
        /// The key.
        field: &'static str,
        /// What is wrong.
        msg: String,
    },
}

/// A check's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Service OK / host UP.
    Ok,
    /// Service WARNING / host DOWN.
    Warning,
    /// Service CRITICAL / host UNREACHABLE.
    Critical,
    /// Service UNKNOWN.
    Unknown,
}

impl State {
    /// From a plugin return code (anything else is UNKNOWN).
    pub fn from_code(code: i32) -> State {
        match code {
            0 => State::Ok,
            1 => State::Warning,
            2 => State::Critical,
            _ => State::Unknown,
        }
    }

    /// The Nagios name, for a host or a service check.
    pub fn name(self, host_check: bool) -> &'static str {
        match (self, host_check) {
            (State::Ok, false) => "OK",
            (State::Warning, false) => "WARNING",
            (State::Critical, false) => "CRITICAL",
            (State::Unknown, false) => "UNKNOWN",
            (State::Ok, true) => "UP",
            (State::Warning, true) => "DOWN",
            (State::Critical | State::Unknown, true) => "UNREACHABLE",
        }
    }

    /// The `severity` label of an alert in this state.
    pub fn severity(self, host_check: bool) -> &'static str {
        match (self, host_check) {
            (State::Ok, _) => "ok",
            (State::Warning, false) => "warning",
            (State::Unknown, false) => "unknown",
            _ => "critical",
        }
    }

    /// The code stored for the state (a service's plugin code).
    pub fn code(self) -> i64 {
        match self {
            State::Ok => 0,
            State::Warning => 1,
            State::Critical => 2,
            State::Unknown => 3,
        }
    }

    fn digit(self) -> char {
        match self {
            State::Ok => '0',
            State::Warning => '1',
            State::Critical => '2',
            State::Unknown => '3',
        }
    }

    fn parse(s: &str) -> Option<State> {
        match s.to_ascii_uppercase().as_str() {
            "OK" => Some(State::Ok),
            "WARNING" => Some(State::Warning),
            "CRITICAL" => Some(State::Critical),
            "UNKNOWN" => Some(State::Unknown),
            _ => None,
        }
    }
}

/// Plugin output split as Nagios splits it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// The first line before `|`.
    pub summary: String,
    /// Perfdata of the first line and of the long output, space-separated.
    pub perfdata: String,
    /// Lines after the first, before their `|`.
    pub long: String,
}

/// Splits plugin output: escaped `\n` restored; the first line's text before `|` is the
/// summary and after it perfdata; further lines are long output, and a `|` in them starts more
/// perfdata that runs to the end.
pub fn split_output(raw: &str) -> Output {
    let text = raw.replace("\\n", "\n");
    let mut lines = text.splitn(2, '\n');
    let first = lines.next().unwrap_or("");
    let rest = lines.next().unwrap_or("");
    let (summary, mut perf) = match first.split_once('|') {
        Some((s, p)) => (s.trim().to_string(), p.trim().to_string()),
        None => (first.trim().to_string(), String::new()),
    };
    let long = match rest.split_once('|') {
        Some((l, p)) => {
            let more = p.split_whitespace().collect::<Vec<_>>().join(" ");
            if !more.is_empty() {
                if !perf.is_empty() {
                    perf.push(' ');
                }
                perf.push_str(&more);
            }
            l.trim_end().to_string()
        }
        None => rest.trim_end().to_string(),
    };
    Output {
        summary,
        perfdata: perf,
        long,
    }
}

/// One perfdata value: `'label'=value[UOM];warn;crit;min;max`.
#[derive(Debug, Clone, PartialEq)]
pub struct Perf {
    /// Label.
    pub label: String,
    /// Value.
    pub value: f64,
    /// Unit of measure (`%`, `s`, `B`, `c`...), may be empty.
    pub uom: String,
    /// Warning threshold, when a plain number.
    pub warn: Option<f64>,
    /// Critical threshold, when a plain number.
    pub crit: Option<f64>,
    /// Minimum.
    pub min: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
}

/// Parses perfdata; items that do not parse are skipped.
pub fn parse_perfdata(p: &str) -> Vec<Perf> {
    let mut out = Vec::new();
    let mut rest = p.trim();
    while !rest.is_empty() {
        // The label, quoted with '' (a doubled '' is a quote) or up to '='.
        let (label, after) = if let Some(r) = rest.strip_prefix('\'') {
            let mut label = String::new();
            let mut chars = r.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().map(|(_, n)| *n) == Some('\'') {
                        label.push('\'');
                        chars.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    label.push(c);
                }
            }
            match end {
                Some(e) => (label, &r[e..]),
                None => break,
            }
        } else {
            match rest.find('=') {
                Some(i) => (rest[..i].to_string(), &rest[i..]),
                None => break,
            }
        };
        let Some(after) = after.strip_prefix('=') else {
            break;
        };
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let item = &after[..end];
        rest = after[end..].trim_start();
        let mut fields = item.split(';');
        let v = fields.next().unwrap_or("");
        let num_end = v
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
            .unwrap_or(v.len());
        let Ok(value) = v[..num_end].parse::<f64>() else {
            continue;
        };
        let num = |s: Option<&str>| s.and_then(|s| s.trim().parse::<f64>().ok());
        out.push(Perf {
            label,
            value,
            uom: v[num_end..].to_string(),
            warn: num(fields.next()),
            crit: num(fields.next()),
            min: num(fields.next()),
            max: num(fields.next()),
        });
    }
    out
}

/// SOFT or HARD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateType {
    /// Not yet confirmed by `max_check_attempts` results.
    Soft,
    /// Confirmed; changes notify.
    Hard,
}

/// Identity of a check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckKey {
    /// Host.
    pub host: String,
    /// Service; `None` for the host check.
    pub service: Option<String>,
}

impl CheckKey {
    /// The check a result is for (an empty service is the host check).
    pub fn of(r: &CheckResult) -> CheckKey {
        CheckKey {
            host: r.host.clone(),
            service: r.service.clone().filter(|s| !s.is_empty()),
        }
    }
}

/// What alertd knows of one check.
#[derive(Debug, Clone)]
pub struct Check {
    /// Current state.
    pub state: State,
    /// SOFT or HARD.
    pub state_type: StateType,
    /// Attempt number of the current problem (1 when OK).
    pub attempt: u32,
    /// The last HARD state (what was notified).
    pub hard_state: State,
    /// Last output, split.
    pub output: Output,
    /// When the last result arrived, Unix ns.
    pub last_result_ns: i64,
    /// When the state last changed, Unix ns.
    pub last_change_ns: i64,
    /// Expected interval from the result's ttl or the config, ns.
    pub interval_ns: Option<i64>,
    /// `max_check_attempts` of the first `[checks]` rule that matched when the check appeared.
    max_attempts: u32,
    /// `interval` of that rule, ns.
    rule_interval_ns: Option<i64>,
    /// Whether the check is stale (no fresh result in time).
    pub stale: bool,
    /// The last 21 states, oldest first.
    history: Vec<State>,
    /// Flapping now.
    pub flapping: bool,
    /// Weighted share of state changes, percent.
    pub percent_change: f64,
}

/// An alert change a result causes, for the alert manager.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertChange {
    /// The check.
    pub key: CheckKey,
    /// `true` for a problem (firing), `false` for a recovery (resolved).
    pub firing: bool,
    /// The flapping alert of the check rather than its state alert.
    pub flapping: bool,
    /// Nagios state name (`CRITICAL`, `DOWN`, ...).
    pub state: &'static str,
    /// `severity` label.
    pub severity: &'static str,
    /// The split output.
    pub output: Output,
}

/// Everything one result leads to.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Alert changes, in order.
    pub alerts: Vec<AlertChange>,
    /// Perfdata of the result.
    pub perf: Vec<Perf>,
}

struct CompiledRule {
    host: Option<Regex>,
    service: Option<Regex>,
    host_only: bool,
    max_attempts: u32,
    interval_ns: Option<i64>,
}

/// The state of every check.
pub struct Checks {
    rules: Vec<CompiledRule>,
    stale_state: State,
    flap_high: f64,
    flap_low: f64,
    checks: FxHashMap<CheckKey, Check>,
    /// When alertd started: freshness counts from here at the earliest.
    started_ns: i64,
    /// Checks changed since the last [`Checks::take_dirty`], to store.
    dirty: FxHashSet<CheckKey>,
}

const HISTORY: usize = 21;

fn anchored(p: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{p})$"))
}

impl Checks {
    /// From the settings; `started_ns` is when the service started.
    pub fn new(cfg: &ChecksConfig, started_ns: i64) -> Result<Checks, ChecksConfigError> {
        let stale_state = State::parse(&cfg.stale_state).ok_or(ChecksConfigError::Field {
            field: "stale_state",
            msg: format!(
                "'{}' is not OK, WARNING, CRITICAL or UNKNOWN",
                cfg.stale_state
            ),
        })?;
        if !(0.0..=100.0).contains(&cfg.flap_low)
            || !(0.0..=100.0).contains(&cfg.flap_high)
            || cfg.flap_low > cfg.flap_high
        {
            return Err(ChecksConfigError::Field {
                field: "flap_low",
                msg: "flap_low and flap_high are percentages with flap_low <= flap_high".into(),
            });
        }
        let mut rules = Vec::new();
        for (index, r) in cfg.rules.iter().enumerate() {
            let re = |field: &'static str, p: &Option<String>| {
                p.as_deref()
                    .map(anchored)
                    .transpose()
                    .map_err(|e| ChecksConfigError::Rule {
                        index,
                        field,
                        msg: e.to_string(),
                    })
            };
            if r.max_check_attempts == 0 {
                return Err(ChecksConfigError::Rule {
                    index,
                    field: "max_check_attempts",
                    msg: "must be at least 1".into(),
                });
            }
            let interval_ns = match &r.interval {
                None => None,
                Some(i) => match crate::rules::parser::parse_duration(i).filter(|n| *n > 0) {
                    Some(n) => Some(n),
                    None => {
                        return Err(ChecksConfigError::Rule {
                            index,
                            field: "interval",
                            msg: format!("'{i}' is not a duration such as 1m"),
                        });
                    }
                },
            };
            let host_only = r.service.as_deref() == Some("host");
            rules.push(CompiledRule {
                host: re("host", &r.host)?,
                service: if host_only {
                    None
                } else {
                    re("service", &r.service)?
                },
                host_only,
                max_attempts: r.max_check_attempts,
                interval_ns,
            });
        }
        Ok(Checks {
            rules,
            stale_state,
            flap_high: cfg.flap_high,
            flap_low: cfg.flap_low,
            checks: FxHashMap::default(),
            started_ns,
            dirty: FxHashSet::default(),
        })
    }

    fn rule(&self, key: &CheckKey) -> Option<&CompiledRule> {
        self.rules.iter().find(|r| {
            r.host.as_ref().is_none_or(|h| h.is_match(&key.host))
                && match (&key.service, r.host_only) {
                    (None, true) => true,
                    (Some(_), true) => false,
                    (None, false) => r.service.is_none(),
                    (Some(s), false) => r.service.as_ref().is_none_or(|re| re.is_match(s)),
                }
        })
    }

    /// Every check.
    pub fn iter(&self) -> impl Iterator<Item = (&CheckKey, &Check)> {
        self.checks.iter()
    }

    /// Whether the host's own check is in a HARD DOWN or UNREACHABLE state.
    fn host_down(&self, host: &str) -> bool {
        self.checks
            .get(&CheckKey {
                host: host.to_string(),
                service: None,
            })
            .is_some_and(|c| c.state_type == StateType::Hard && c.hard_state != State::Ok)
    }

    /// Applies a result at `now` (Unix ns).
    pub fn apply(&mut self, r: &CheckResult, now: i64) -> Outcome {
        self.apply_to(&CheckKey::of(r), r, now)
    }

    /// Applies a result to the check `key` (which must be `CheckKey::of(r)`).
    pub fn apply_to(&mut self, key: &CheckKey, r: &CheckResult, now: i64) -> Outcome {
        // Host codes: 0 UP, 1 DOWN, 2 UNREACHABLE (kept as Warning/Critical internally).
        let state = if key.service.is_none() {
            match r.code {
                0 => State::Ok,
                1 => State::Warning,
                _ => State::Critical,
            }
        } else {
            State::from_code(r.code)
        };
        let output = split_output(&r.output);
        let perf = parse_perfdata(&output.perfdata);
        let mut out = self.transition(key, state, output, r.ttl_ns, now);
        out.perf = perf;
        out
    }

    /// Moves a check to `state`; `ttl_ns` overrides the configured interval.
    fn transition(
        &mut self,
        key: &CheckKey,
        state: State,
        output: Output,
        ttl_ns: Option<i64>,
        now: i64,
    ) -> Outcome {
        let host_check = key.service.is_none();
        let (flap_low, flap_high) = (self.flap_low, self.flap_high);
        self.mark_dirty(key);
        if !self.checks.contains_key(key) {
            // The rule patterns are matched once, when a check first reports.
            let (max_attempts, rule_interval_ns) = self
                .rule(key)
                .map_or((1, None), |r| (r.max_attempts, r.interval_ns));
            self.checks.insert(
                key.clone(),
                Check {
                    state: State::Ok,
                    state_type: StateType::Hard,
                    attempt: 1,
                    hard_state: State::Ok,
                    output: Output::default(),
                    last_result_ns: now,
                    last_change_ns: now,
                    interval_ns: None,
                    max_attempts,
                    rule_interval_ns,
                    stale: false,
                    history: Vec::with_capacity(HISTORY),
                    flapping: false,
                    percent_change: 0.0,
                },
            );
        }
        let Some(c) = self.checks.get_mut(key) else {
            return Outcome::default();
        };
        let max_attempts = c.max_attempts;
        let previous = c.state;
        let was_hard = c.hard_state;
        if state != previous {
            c.last_change_ns = now;
        }
        // SOFT/HARD as Nagios: a problem is SOFT until max attempts in a row; a recovery from
        // a SOFT problem is a SOFT recovery (not notified); any change while HARD non-OK is HARD.
        if state == State::Ok {
            // A recovery; from a SOFT problem the hard state was OK all along, so it is silent.
            c.attempt = 1;
            c.state_type = StateType::Hard;
            c.hard_state = State::Ok;
        } else if c.state_type == StateType::Hard && was_hard != State::Ok {
            c.attempt = max_attempts;
            c.hard_state = state;
        } else {
            c.attempt = if previous == State::Ok {
                1
            } else {
                (c.attempt + 1).min(max_attempts)
            };
            if c.attempt >= max_attempts {
                c.state_type = StateType::Hard;
                c.hard_state = state;
            } else {
                c.state_type = StateType::Soft;
            }
        }
        c.state = state;
        c.output = output;
        c.last_result_ns = now;
        c.interval_ns = ttl_ns.or(c.rule_interval_ns);
        c.stale = false;
        // Flap detection over the last 21 states.
        if c.history.len() == HISTORY {
            c.history.remove(0);
        }
        c.history.push(state);
        let mut curved = 0.0;
        for i in 1..c.history.len() {
            if c.history[i] != c.history[i - 1] {
                // Older changes weigh 0.8, the newest 1.2.
                curved += 0.8 + 0.4 * (i - 1) as f64 / (HISTORY - 2) as f64;
            }
        }
        c.percent_change = curved * 100.0 / (HISTORY - 1) as f64;
        let was_flapping = c.flapping;
        if !c.flapping && c.percent_change >= flap_high {
            c.flapping = true;
        } else if c.flapping && c.percent_change < flap_low {
            c.flapping = false;
        }
        let (flapping, hard, hard_type) = (c.flapping, c.hard_state, c.state_type);

        // What to notify: (firing, flapping alert, state).
        let mut notify: Vec<(bool, bool, State)> = Vec::new();
        let mut release_held = false;
        if flapping != was_flapping {
            notify.push((flapping, true, state));
            if !flapping && hard != was_hard {
                // Flapping over: the state alert catches up with the state now.
                notify.push((hard != State::Ok, false, hard));
            }
        } else if !flapping && hard_type == StateType::Hard && hard != was_hard {
            if host_check {
                notify.push((hard != State::Ok, false, hard));
                // The host is back: its services' problems, held while it was down, go out.
                release_held = hard == State::Ok;
            } else if hard == State::Ok || !self.host_down(&key.host) {
                // A service problem on a DOWN host is not notified separately; its recovery is.
                notify.push((hard != State::Ok, false, hard));
            }
        }
        let mut out = Outcome::default();
        if notify.is_empty() {
            return out;
        }
        let output = self
            .checks
            .get(key)
            .map(|c| c.output.clone())
            .unwrap_or_default();
        for (firing, flapping, st) in notify {
            out.alerts.push(AlertChange {
                key: key.clone(),
                firing,
                flapping,
                state: st.name(host_check),
                severity: if flapping {
                    "warning"
                } else {
                    st.severity(host_check)
                },
                output: output.clone(),
            });
        }
        if release_held {
            for (k, c) in self.checks.iter().filter(|(k, c)| {
                k.host == key.host && k.service.is_some() && c.hard_state != State::Ok
            }) {
                out.alerts.push(AlertChange {
                    key: k.clone(),
                    firing: true,
                    flapping: false,
                    state: c.hard_state.name(false),
                    severity: c.hard_state.severity(false),
                    output: c.output.clone(),
                });
            }
        }
        out
    }

    /// Turns checks with no result within their interval (counted from alertd's start at the
    /// earliest) to the stale state, with output saying how long they have been silent.
    pub fn expire_stale(&mut self, now: i64) -> Vec<(CheckKey, Outcome)> {
        let stale_state = self.stale_state;
        let due: Vec<(CheckKey, i64, i64)> = self
            .checks
            .iter()
            .filter(|(_, c)| !c.stale)
            .filter_map(|(k, c)| {
                let interval = c.interval_ns?;
                let since = c.last_result_ns.max(self.started_ns);
                (now - since > interval).then(|| (k.clone(), now - c.last_result_ns, interval))
            })
            .collect();
        let mut out = Vec::new();
        for (key, silent, interval) in due {
            let output = Output {
                summary: format!(
                    "no result for {} (expected every {})",
                    human(silent),
                    human(interval)
                ),
                ..Output::default()
            };
            let state = if key.service.is_none() && stale_state == State::Unknown {
                // A host has no UNKNOWN: a stale host is UNREACHABLE.
                State::Critical
            } else {
                stale_state
            };
            let mut o = self.transition(&key, state, output, Some(interval), now);
            if let Some(c) = self.checks.get_mut(&key) {
                c.stale = true;
                // Staleness is not a result: keep the time of the last real one.
                c.last_result_ns = now - silent;
            }
            o.perf.clear();
            out.push((key, o));
        }
        out
    }

    /// Forgets every check of a host (it was retired).
    pub fn forget_host(&mut self, host: &str) -> usize {
        let before = self.checks.len();
        self.checks.retain(|k, _| k.host != host);
        self.dirty.retain(|k| k.host != host);
        before - self.checks.len()
    }

    /// Marks a check to be stored at the next [`Checks::take_dirty`] (its alerts changed).
    pub fn mark_dirty(&mut self, key: &CheckKey) {
        if !self.dirty.contains(key) {
            self.dirty.insert(key.clone());
        }
    }

    /// The rows of the checks changed since last time, to store (`firing_severity` and
    /// `flap_firing` are left for the caller, which knows what fired).
    pub fn take_dirty(&mut self) -> Vec<(CheckKey, CheckRow)> {
        let keys: Vec<CheckKey> = self.dirty.drain().collect();
        keys.into_iter()
            .filter_map(|k| {
                let c = self.checks.get(&k)?;
                let row = CheckRow {
                    host: k.host.clone(),
                    service: k.service.clone().unwrap_or_default(),
                    state: c.state.code(),
                    hard: c.state_type == StateType::Hard,
                    attempt: i64::from(c.attempt),
                    hard_state: c.hard_state.code(),
                    summary: c.output.summary.clone(),
                    perfdata: c.output.perfdata.clone(),
                    long_output: c.output.long.clone(),
                    last_result_ns: c.last_result_ns,
                    last_change_ns: c.last_change_ns,
                    interval_ns: c.interval_ns,
                    stale: c.stale,
                    history: c.history.iter().map(|s| s.digit()).collect(),
                    flapping: c.flapping,
                    percent_change: c.percent_change,
                    firing_severity: None,
                    flap_firing: false,
                };
                Some((k, row))
            })
            .collect()
    }

    /// Resumes stored check states (at start). `[checks]` patterns are matched again, so
    /// changed `max_check_attempts` and `interval` settings apply.
    pub fn restore(&mut self, rows: &[CheckRow]) {
        for r in rows {
            let key = CheckKey {
                host: r.host.clone(),
                service: Some(r.service.clone()).filter(|s| !s.is_empty()),
            };
            let (max_attempts, rule_interval_ns) = self
                .rule(&key)
                .map_or((1, None), |r| (r.max_attempts, r.interval_ns));
            let code = |c: i64| State::from_code(i32::try_from(c).unwrap_or(3));
            let mut history: Vec<State> = r
                .history
                .chars()
                .filter_map(|ch| ch.to_digit(10))
                .map(|d| code(i64::from(d)))
                .collect();
            if history.len() > HISTORY {
                history.drain(..history.len() - HISTORY);
            }
            self.checks.insert(
                key,
                Check {
                    state: code(r.state),
                    state_type: if r.hard {
                        StateType::Hard
                    } else {
                        StateType::Soft
                    },
                    attempt: u32::try_from(r.attempt).unwrap_or(1).clamp(1, max_attempts),
                    hard_state: code(r.hard_state),
                    output: Output {
                        summary: r.summary.clone(),
                        perfdata: r.perfdata.clone(),
                        long: r.long_output.clone(),
                    },
                    last_result_ns: r.last_result_ns,
                    last_change_ns: r.last_change_ns,
                    interval_ns: r.interval_ns.or(rule_interval_ns),
                    max_attempts,
                    rule_interval_ns,
                    stale: r.stale,
                    history,
                    flapping: r.flapping,
                    percent_change: r.percent_change,
                },
            );
        }
    }
}

/// `5m12s`, `1m`, `45s`.
pub fn human(ns: i64) -> String {
    let d = Duration::from_nanos(ns.max(0) as u64).as_secs();
    let (h, m, s) = (d / 3600, (d % 3600) / 60, d % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn result(host: &str, service: Option<&str>, code: i32, output: &str) -> CheckResult {
        CheckResult {
            host: host.into(),
            service: service.map(str::to_string),
            code,
            output: output.into(),
            time_ns: None,
            ttl_ns: None,
            via: "api",
        }
    }

    fn checks(toml_rules: &str) -> Checks {
        let cfg: ChecksConfig = toml::from_str(toml_rules).unwrap();
        Checks::new(&cfg, 0).unwrap()
    }

    fn fired(o: &Outcome) -> Vec<(bool, bool, &'static str)> {
        o.alerts
            .iter()
            .map(|a| (a.firing, a.flapping, a.state))
            .collect()
    }

    #[test]
    fn output_is_split_as_nagios_splits_it() {
        let o = split_output(
            "DISK CRITICAL - /var 97% | var=97%;90;95;0;100\\n/var is full\\nsecond line | more=1s",
        );
        assert_eq!(o.summary, "DISK CRITICAL - /var 97%");
        assert_eq!(o.perfdata, "var=97%;90;95;0;100 more=1s");
        assert_eq!(o.long, "/var is full\nsecond line");
        let p = parse_perfdata("'disk usage'=97.5%;90;95;0;100 load1=0.5 'it''s'=3c;;;; bad");
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].label, "disk usage");
        assert_eq!((p[0].value, p[0].uom.as_str()), (97.5, "%"));
        assert_eq!(
            (p[0].warn, p[0].crit, p[0].min, p[0].max),
            (Some(90.0), Some(95.0), Some(0.0), Some(100.0))
        );
        assert_eq!(p[1].label, "load1");
        assert_eq!(p[2].label, "it's");
        assert_eq!(p[2].warn, None);
    }

    #[test]
    fn soft_then_hard_after_max_attempts_and_soft_recovery_is_silent() {
        let mut c = checks("[[rules]]\nservice = \"disk\"\nmax_check_attempts = 3\n");
        let r = |code| result("h", Some("disk"), code, "x");
        assert!(c.apply(&r(2), S).alerts.is_empty(), "attempt 1: SOFT");
        assert!(c.apply(&r(0), 2 * S).alerts.is_empty(), "soft recovery");
        assert!(c.apply(&r(2), 3 * S).alerts.is_empty());
        assert!(c.apply(&r(2), 4 * S).alerts.is_empty(), "attempt 2: SOFT");
        let o = c.apply(&r(2), 5 * S);
        assert_eq!(fired(&o), [(true, false, "CRITICAL")], "attempt 3: HARD");
        // Still critical: nothing; a change of problem while HARD: notified.
        assert!(c.apply(&r(2), 6 * S).alerts.is_empty());
        assert_eq!(fired(&c.apply(&r(1), 7 * S)), [(true, false, "WARNING")]);
        assert_eq!(fired(&c.apply(&r(0), 8 * S)), [(false, false, "OK")]);
        // Other services default to one attempt: HARD at once.
        let mut other = c.apply(&result("h", Some("load"), 1, "x"), 9 * S);
        assert_eq!(fired(&other), [(true, false, "WARNING")]);
        other.alerts.clear();
        // Codes beyond 3 are UNKNOWN.
        assert_eq!(
            fired(&c.apply(&result("h", Some("q"), 7, "x"), 9 * S)),
            [(true, false, "UNKNOWN")]
        );
    }

    #[test]
    fn a_down_host_holds_back_its_services_until_it_is_up() {
        let mut c = checks("");
        assert_eq!(
            fired(&c.apply(&result("h", None, 1, "PING CRITICAL"), S)),
            [(true, false, "DOWN")]
        );
        assert!(
            c.apply(&result("h", Some("http"), 2, "timeout"), 2 * S)
                .alerts
                .is_empty()
        );
        let o = c.apply(&result("h", None, 0, "PING OK"), 3 * S);
        assert_eq!(fired(&o), [(false, false, "UP"), (true, false, "CRITICAL")]);
        assert_eq!(o.alerts[1].key.service.as_deref(), Some("http"));
    }

    #[test]
    fn flapping_gives_one_notification_instead_of_a_storm() {
        let mut c = checks("");
        let mut notified = Vec::new();
        for i in 0..21 {
            let code = if i % 2 == 0 { 2 } else { 0 };
            notified.extend(fired(&c.apply(&result("h", Some("s"), code, "x"), i * S)));
        }
        let flaps: Vec<_> = notified.iter().filter(|n| n.1).map(|n| n.0).collect();
        assert_eq!(flaps, [true], "one flapping notification: {notified:?}");
        // Before flapping was detected (30% weighted changes) seven changes went out; none
        // after it, in 13 more changes.
        assert_eq!(notified.iter().filter(|n| !n.1).count(), 7, "{notified:?}");
        // Stable again: flapping stops once the changes age out, with one notification, and
        // the state alert catches up.
        let mut after = Vec::new();
        for i in 21..60 {
            after.extend(fired(&c.apply(&result("h", Some("s"), 0, "x"), i * S)));
        }
        assert_eq!(after.iter().filter(|n| n.1).count(), 1, "{after:?}");
        assert!(after.contains(&(false, true, "OK")), "{after:?}");
    }

    #[test]
    fn freshness_turns_a_silent_check_stale_counting_from_start() {
        let cfg: ChecksConfig = toml::from_str("[[rules]]\ninterval = \"1m\"\n").unwrap();
        let mut c = Checks::new(&cfg, 0).unwrap();
        c.apply(&result("h", Some("s"), 0, "ok"), 0);
        assert!(c.expire_stale(59 * S).is_empty());
        let stale = c.expire_stale(312 * S);
        assert_eq!(stale.len(), 1);
        let a = &stale[0].1.alerts[0];
        assert_eq!((a.firing, a.state), (true, "UNKNOWN"));
        assert_eq!(a.output.summary, "no result for 5m12s (expected every 1m)");
        // Only once.
        assert!(c.expire_stale(400 * S).is_empty());
        // A result with a ttl overrides the interval; after a restart freshness counts from
        // the start.
        let mut c = Checks::new(&cfg, 1000 * S).unwrap();
        let mut r = result("h", Some("t"), 0, "ok");
        r.ttl_ns = Some(10 * S);
        c.apply(&r, 900 * S);
        assert!(c.expire_stale(1005 * S).is_empty());
        assert_eq!(c.expire_stale(1011 * S).len(), 1);
    }

    #[test]
    fn states_resume_from_stored_rows() {
        let cfg = "[[rules]]\nservice = \"disk\"\nmax_check_attempts = 3\ninterval = \"1m\"\n";
        let mut c = checks(cfg);
        let r = |svc: &str, code| result("h", Some(svc), code, "x | v=1;2;3");
        // disk: two SOFT attempts; load: HARD CRITICAL, with some flap history.
        c.apply(&r("disk", 2), S);
        c.apply(&r("disk", 2), 2 * S);
        for (i, code) in [2, 0, 2].into_iter().enumerate() {
            c.apply(&r("load", code), (3 + i as i64) * S);
        }
        let mut rows: Vec<CheckRow> = c.take_dirty().into_iter().map(|(_, r)| r).collect();
        rows.sort_by(|a, b| a.service.cmp(&b.service));
        assert_eq!(rows.len(), 2);
        assert!(c.take_dirty().is_empty(), "taken once");
        assert_eq!(
            (rows[0].state, rows[0].hard, rows[0].attempt),
            (2, false, 2)
        );
        assert_eq!(rows[1].history, "202");
        assert_eq!(rows[0].perfdata, "v=1;2;3");

        let mut back = checks(cfg);
        back.restore(&rows);
        let load = |c: &Checks| {
            let (_, l) = c
                .iter()
                .find(|(k, _)| k.service.as_deref() == Some("load"))
                .unwrap();
            (l.percent_change, l.history.clone(), l.interval_ns)
        };
        assert_eq!(load(&back), load(&c));
        // The third attempt makes disk HARD, as it would have without the restart.
        assert_eq!(
            fired(&back.apply(&r("disk", 2), 10 * S)),
            [(true, false, "CRITICAL")]
        );
        // load was HARD CRITICAL: OK is a recovery.
        assert_eq!(
            fired(&back.apply(&r("load", 0), 11 * S)),
            [(false, false, "OK")]
        );
        // A retired host's checks are forgotten with their pending rows.
        assert_eq!(back.forget_host("h"), 2);
        assert!(back.take_dirty().is_empty());
    }

    #[test]
    fn bad_settings_name_the_key() {
        let bad = |t: &str| {
            let cfg: ChecksConfig = toml::from_str(t).unwrap();
            Checks::new(&cfg, 0).err().unwrap().to_string()
        };
        assert_eq!(
            bad("stale_state = \"MAYBE\""),
            "checks.stale_state: 'MAYBE' is not OK, WARNING, CRITICAL or UNKNOWN"
        );
        assert!(bad("[[rules]]\nhost = \"(\"").starts_with("checks.rules[0].host:"));
        assert!(bad("[[rules]]\ninterval = \"soon\"").starts_with("checks.rules[0].interval:"));
        assert!(bad("[[rules]]\nmax_check_attempts = 0").contains("at least 1"));
    }
}
