//! Per-rule counters: points in, points matched, events by level, errors by kind.
//!
//! Errors that repeat per point (a missing field, a type mismatch) are counted, and logged only
//! when their count reaches a power of two, so a broken rule cannot flood the log.

use serde::Serialize;

use crate::rules::lambda::EvalError;

/// Counters of one rule.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TaskStats {
    /// Points routed to the rule (its database, retention policy and measurement).
    pub points_in: u64,
    /// Points that passed `from().where()`.
    pub points_matched: u64,
    /// Alert events emitted, indexed by level (OK, INFO, WARNING, CRITICAL).
    pub events: [u64; 4],
    /// Points that lacked a field or tag an expression or aggregate needed.
    pub missing_field: u64,
    /// Expressions that failed on a value of the wrong type.
    pub type_error: u64,
    /// Template renders with missing keys or errors.
    pub template_error: u64,
    /// Groups dropped after being idle longer than the group expiry.
    pub groups_expired: u64,
    /// Points dropped because a group's window already held its maximum.
    pub window_overflow: u64,
    /// The first error message seen, for `alertd test` and the rules API.
    pub first_error: Option<String>,
}

fn should_log(count: u64) -> bool {
    count.is_power_of_two()
}

impl TaskStats {
    /// Adds another instance's counters (a rule split over engine shards); the first error
    /// is kept.
    pub fn add(&mut self, other: &TaskStats) {
        self.points_in += other.points_in;
        self.points_matched += other.points_matched;
        for (a, b) in self.events.iter_mut().zip(other.events) {
            *a += b;
        }
        self.missing_field += other.missing_field;
        self.type_error += other.type_error;
        self.template_error += other.template_error;
        self.groups_expired += other.groups_expired;
        self.window_overflow += other.window_overflow;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    /// Counts an expression error.
    pub fn error(&mut self, task: &str, e: &EvalError) {
        match e {
            EvalError::Missing(name) => self.missing(task, name),
            EvalError::Type(msg) => self.type_error(task, msg.clone()),
        }
    }

    /// Counts a missing field or tag.
    pub fn missing(&mut self, task: &str, name: &str) {
        self.missing_field += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("no field or tag named '{name}'"));
        }
        if should_log(self.missing_field) {
            tracing::warn!(
                task,
                field = name,
                count = self.missing_field,
                "Points lack a field or tag the rule reads."
            );
        }
    }

    /// Counts a type error.
    pub fn type_error(&mut self, task: &str, msg: String) {
        self.type_error += 1;
        if should_log(self.type_error) {
            tracing::warn!(task, error = %msg, count = self.type_error, "Rule expression failed on a value of the wrong type.");
        }
        if self.first_error.is_none() {
            self.first_error = Some(msg);
        }
    }

    /// Counts template problems.
    pub fn template_error(&mut self, task: &str, n: u32, first: Option<&str>) {
        self.template_error += u64::from(n);
        if self.first_error.is_none() {
            self.first_error = first.map(|f| format!("template: {f}"));
        }
        if should_log(self.template_error) {
            tracing::warn!(
                task,
                error = first.unwrap_or(""),
                count = self.template_error,
                "Alert template referred to a missing tag or field."
            );
        }
    }
}
