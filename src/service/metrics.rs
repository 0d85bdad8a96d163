//! The service's own metrics, served on `/metrics` in Prometheus text format: ingest by
//! endpoint, queue depths, per-rule counters, storage latency and errors, process memory.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::TaskStats;

/// `endpoint` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    /// `write`, `api_v2_write`, ...
    pub endpoint: String,
}

/// `endpoint` and HTTP `code` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointCodeLabel {
    /// Endpoint.
    pub endpoint: String,
    /// HTTP status.
    pub code: u16,
}

/// Delivery `kind` label (`post`, `log`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The delivery queue (receiver).
    pub receiver: String,
    /// Kind of delivery (`post`, `log`, `email`, `alerta`).
    pub kind: String,
}

/// `receiver` label (a receiver's name, or `post <url>` / `log <path>` for TICK handlers).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabel {
    /// The delivery queue.
    pub receiver: String,
}

/// `reason` label of refused requests: `missing`, `invalid` (no such token) or `scope`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabel {
    /// Why the request was refused.
    pub reason: &'static str,
}

/// `result` label of NSCA packets: `accepted`, `bad_crc`, `bad_version`, `bad_packet`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NscaLabel {
    /// What became of the packet.
    pub result: &'static str,
}

/// `rule` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    /// Rule name.
    pub rule: String,
}

/// `rule` and `level` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLevelLabel {
    /// Rule name.
    pub rule: String,
    /// Alert level.
    pub level: String,
}

/// `rule` and error `kind` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleKindLabel {
    /// Rule name.
    pub rule: String,
    /// `missing_field`, `type_error`, `template_error`.
    pub kind: String,
}

/// Every metric of the service.
#[derive(Debug)]
pub struct Metrics {
    /// Requests by endpoint and status.
    pub requests: Family<EndpointCodeLabel, Counter>,
    /// Points (lines) received.
    pub points_received: Family<EndpointLabel, Counter>,
    /// Points accepted.
    pub points_accepted: Family<EndpointLabel, Counter>,
    /// Points rejected as malformed.
    pub points_rejected: Family<EndpointLabel, Counter>,
    /// Body bytes received (after decompression).
    pub bytes_received: Family<EndpointLabel, Counter>,
    /// Batches waiting for the engine.
    pub ingest_queue_depth: Gauge,
    /// Writes refused with 429 because the engine queue was full.
    pub ingest_queue_full: Counter,
    /// Points the engine processed.
    pub engine_points: Counter,
    /// Points routed to each rule.
    pub rule_points: Family<RuleLabel, Counter>,
    /// Points that passed each rule's filter.
    pub rule_matched: Family<RuleLabel, Counter>,
    /// Alert events by rule and level.
    pub rule_events: Family<RuleLevelLabel, Counter>,
    /// Evaluation errors by rule and kind.
    pub rule_errors: Family<RuleKindLabel, Counter>,
    /// Live groups per rule.
    pub rule_groups: Family<RuleLabel, Gauge>,
    /// 1 when the rule's file failed to load at the last (re)load.
    pub rule_load_error: Family<RuleLabel, Gauge>,
    /// Reloads that had at least one failing rule.
    pub reload_failures: Counter,
    /// Events waiting for the database writer.
    pub storage_queue_depth: Gauge,
    /// Events committed to SQLite.
    pub events_stored: Counter,
    /// Failed SQLite transactions (retried).
    pub sqlite_errors: Counter,
    /// Time to commit a batch of events.
    pub sqlite_write_seconds: Histogram,
    /// From the arrival of the write that caused an alert event to the event committed.
    pub alert_latency_seconds: Histogram,
    /// Resident memory of the process.
    pub resident_memory_bytes: Gauge,
    /// Notifications delivered.
    pub notifications_sent: Family<KindLabel, Counter>,
    /// Notification attempts that will be retried.
    pub notifications_retried: Family<KindLabel, Counter>,
    /// Notifications given up (refused by the receiver).
    pub notifications_failed: Family<KindLabel, Counter>,
    /// `alertd record` clients connected.
    pub recorders: Gauge,
    /// Notifications waiting per receiver (pending in the outbox).
    pub receiver_queue_depth: Family<ReceiverLabel, Gauge>,
    /// Time of one delivery attempt per receiver.
    pub delivery_seconds: Family<ReceiverLabel, Histogram>,
    /// Notifications written to the outbox by the dispatcher.
    pub notifications_created: Counter,
    /// Handler notifications not sent because a silence or inhibition muted the event.
    pub notifications_muted: Counter,
    /// Messages waiting for the dispatcher.
    pub manager_queue_depth: Gauge,
    /// Alerts firing.
    pub alerts_firing: Gauge,
    /// Alerts held (firing, and resolved ones not yet notified).
    pub alerts_stored: Gauge,
    /// Aggregation groups.
    pub alert_groups: Gauge,
    /// Silences (any state).
    pub silences: Gauge,
    /// Alerts received on the Alertmanager API (valid ones).
    pub api_alerts_received: Counter,
    /// Alerts refused by the Alertmanager API as invalid.
    pub api_alerts_invalid: Counter,
    /// Requests refused by token authentication, by reason.
    pub auth_failures: Family<AuthLabel, Counter>,
    /// Passive check results received (all intakes).
    pub check_results: Counter,
    /// Passive check results refused because the check queue was full (503 to the client).
    pub check_results_dropped: Counter,
    /// Checks that turned stale (no result within their interval).
    pub checks_stale: Counter,
    /// Alert changes posted to the alert manager by passive checks.
    pub check_alerts: Counter,
    /// NSCA packets by result.
    pub nsca_packets: Family<NscaLabel, Counter>,
    /// NSCA connections accepted.
    pub nsca_connections: Counter,
    /// NSCA connections closed by the idle timeout.
    pub nsca_timeouts: Counter,
    /// Hosts in the registry.
    pub hosts_known: Gauge,
    /// Hosts retired (through the API or the forget time).
    pub hosts_retired: Counter,
    /// Host-registry updates dropped because its queue was full.
    pub host_updates_dropped: Counter,
    /// HTTP connections open.
    pub http_connections: Gauge,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: Counter,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut m = Metrics {
            requests: Family::default(),
            points_received: Family::default(),
            points_accepted: Family::default(),
            points_rejected: Family::default(),
            bytes_received: Family::default(),
            ingest_queue_depth: Gauge::default(),
            ingest_queue_full: Counter::default(),
            engine_points: Counter::default(),
            rule_points: Family::default(),
            rule_matched: Family::default(),
            rule_events: Family::default(),
            rule_errors: Family::default(),
            rule_groups: Family::default(),
            rule_load_error: Family::default(),
            reload_failures: Counter::default(),
            storage_queue_depth: Gauge::default(),
            events_stored: Counter::default(),
            sqlite_errors: Counter::default(),
            sqlite_write_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            alert_latency_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            resident_memory_bytes: Gauge::default(),
            notifications_sent: Family::default(),
            notifications_retried: Family::default(),
            notifications_failed: Family::default(),
            recorders: Gauge::default(),
            receiver_queue_depth: Family::default(),
            delivery_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            notifications_created: Counter::default(),
            notifications_muted: Counter::default(),
            manager_queue_depth: Gauge::default(),
            alerts_firing: Gauge::default(),
            alerts_stored: Gauge::default(),
            alert_groups: Gauge::default(),
            silences: Gauge::default(),
            api_alerts_received: Counter::default(),
            api_alerts_invalid: Counter::default(),
            auth_failures: Family::default(),
            check_results: Counter::default(),
            check_results_dropped: Counter::default(),
            checks_stale: Counter::default(),
            check_alerts: Counter::default(),
            nsca_packets: Family::default(),
            nsca_connections: Counter::default(),
            nsca_timeouts: Counter::default(),
            hosts_known: Gauge::default(),
            hosts_retired: Counter::default(),
            host_updates_dropped: Counter::default(),
            http_connections: Gauge::default(),
            tls_handshake_failures: Counter::default(),
            registry: Registry::with_prefix("alertd"),
        };
        let r = &mut m.registry;
        r.register(
            "receiver_queue_depth",
            "Notifications waiting for delivery per receiver",
            m.receiver_queue_depth.clone(),
        );
        r.register(
            "delivery_seconds",
            "Time of one delivery attempt per receiver",
            m.delivery_seconds.clone(),
        );
        r.register(
            "notifications_created",
            "Notifications the dispatcher wrote to the outbox",
            m.notifications_created.clone(),
        );
        r.register(
            "notifications_muted",
            "Handler notifications not sent because a silence or inhibition muted the event",
            m.notifications_muted.clone(),
        );
        r.register(
            "manager_queue_depth",
            "Messages waiting for the alert dispatcher",
            m.manager_queue_depth.clone(),
        );
        r.register("alerts_firing", "Alerts firing", m.alerts_firing.clone());
        r.register(
            "alerts_stored",
            "Alerts held by the alert manager",
            m.alerts_stored.clone(),
        );
        r.register("alert_groups", "Aggregation groups", m.alert_groups.clone());
        r.register("silences", "Silences in any state", m.silences.clone());
        r.register(
            "api_alerts_received",
            "Valid alerts received on /api/v2/alerts",
            m.api_alerts_received.clone(),
        );
        r.register(
            "api_alerts_invalid",
            "Alerts refused as invalid by /api/v2/alerts",
            m.api_alerts_invalid.clone(),
        );
        r.register(
            "auth_failures",
            "Requests refused by token authentication, by reason",
            m.auth_failures.clone(),
        );
        r.register(
            "check_results",
            "Passive check results received",
            m.check_results.clone(),
        );
        r.register(
            "check_results_dropped",
            "Passive check results refused because the check queue was full",
            m.check_results_dropped.clone(),
        );
        r.register(
            "checks_stale",
            "Checks that turned stale for lack of results",
            m.checks_stale.clone(),
        );
        r.register(
            "check_alerts",
            "Alert changes posted by passive checks",
            m.check_alerts.clone(),
        );
        r.register(
            "nsca_packets",
            "NSCA packets by result",
            m.nsca_packets.clone(),
        );
        r.register(
            "nsca_connections",
            "NSCA connections accepted",
            m.nsca_connections.clone(),
        );
        r.register(
            "nsca_timeouts",
            "NSCA connections closed by the idle timeout",
            m.nsca_timeouts.clone(),
        );
        r.register(
            "hosts_known",
            "Hosts in the registry",
            m.hosts_known.clone(),
        );
        r.register("hosts_retired", "Hosts retired", m.hosts_retired.clone());
        r.register(
            "host_updates_dropped",
            "Host-registry updates dropped because its queue was full",
            m.host_updates_dropped.clone(),
        );
        r.register(
            "http_connections",
            "HTTP connections open",
            m.http_connections.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            m.tls_handshake_failures.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests by endpoint and status code",
            m.requests.clone(),
        );
        r.register(
            "points_received",
            "Points (lines) received by endpoint",
            m.points_received.clone(),
        );
        r.register(
            "points_accepted",
            "Points accepted by endpoint",
            m.points_accepted.clone(),
        );
        r.register(
            "points_rejected",
            "Malformed points rejected by endpoint",
            m.points_rejected.clone(),
        );
        r.register(
            "ingest_bytes",
            "Body bytes received by endpoint, after decompression",
            m.bytes_received.clone(),
        );
        r.register(
            "ingest_queue_depth",
            "Batches of points waiting for the rules engine",
            m.ingest_queue_depth.clone(),
        );
        r.register(
            "ingest_queue_full",
            "Writes refused with 429 because the engine queue was full",
            m.ingest_queue_full.clone(),
        );
        r.register(
            "engine_points",
            "Points processed by the rules engine",
            m.engine_points.clone(),
        );
        r.register(
            "rule_points",
            "Points routed to a rule",
            m.rule_points.clone(),
        );
        r.register(
            "rule_points_matched",
            "Points that passed a rule's from() filter",
            m.rule_matched.clone(),
        );
        r.register(
            "rule_events",
            "Alert events by rule and level",
            m.rule_events.clone(),
        );
        r.register(
            "rule_errors",
            "Rule evaluation errors by kind",
            m.rule_errors.clone(),
        );
        r.register(
            "rule_groups",
            "Live groups of a rule",
            m.rule_groups.clone(),
        );
        r.register(
            "rule_load_error",
            "1 when the rule failed to load at the last load or reload",
            m.rule_load_error.clone(),
        );
        r.register(
            "reload_failures",
            "Loads or reloads with at least one failing rule",
            m.reload_failures.clone(),
        );
        r.register(
            "storage_queue_depth",
            "Alert events waiting for the database writer",
            m.storage_queue_depth.clone(),
        );
        r.register(
            "events_stored",
            "Alert events committed to SQLite",
            m.events_stored.clone(),
        );
        r.register(
            "sqlite_errors",
            "Failed SQLite transactions (retried)",
            m.sqlite_errors.clone(),
        );
        r.register(
            "sqlite_write_seconds",
            "Time to commit a batch of alert events",
            m.sqlite_write_seconds.clone(),
        );
        r.register(
            "notifications_sent",
            "Notifications delivered",
            m.notifications_sent.clone(),
        );
        r.register(
            "notifications_retried",
            "Notification attempts to be retried",
            m.notifications_retried.clone(),
        );
        r.register(
            "notifications_failed",
            "Notifications given up, refused by the receiver",
            m.notifications_failed.clone(),
        );
        r.register(
            "alert_latency_seconds",
            "From the arrival of the write that caused an alert event to the event stored",
            m.alert_latency_seconds.clone(),
        );
        r.register(
            "recorders",
            "alertd record clients connected",
            m.recorders.clone(),
        );
        r.register(
            "process_resident_memory_bytes",
            "Resident memory of the process",
            m.resident_memory_bytes.clone(),
        );
        m
    }

    /// Adds a rule's counter growth since `before`, and the change in its live groups (a rule
    /// split over several engine shards has a share of its groups on each).
    pub fn add_rule_delta(&self, rule: &str, now: &TaskStats, before: &TaskStats, groups: i64) {
        let r = RuleLabel {
            rule: rule.to_string(),
        };
        self.rule_points
            .get_or_create(&r)
            .inc_by(now.points_in.saturating_sub(before.points_in));
        self.rule_matched
            .get_or_create(&r)
            .inc_by(now.points_matched.saturating_sub(before.points_matched));
        self.rule_groups.get_or_create(&r).inc_by(groups);
        for (i, level) in ["OK", "INFO", "WARNING", "CRITICAL"].iter().enumerate() {
            let d = now.events[i].saturating_sub(before.events[i]);
            self.rule_events
                .get_or_create(&RuleLevelLabel {
                    rule: rule.to_string(),
                    level: (*level).to_string(),
                })
                .inc_by(d);
        }
        for (kind, n, b) in [
            ("missing_field", now.missing_field, before.missing_field),
            ("type_error", now.type_error, before.type_error),
            ("template_error", now.template_error, before.template_error),
            (
                "window_overflow",
                now.window_overflow,
                before.window_overflow,
            ),
        ] {
            self.rule_errors
                .get_or_create(&RuleKindLabel {
                    rule: rule.to_string(),
                    kind: kind.to_string(),
                })
                .inc_by(n.saturating_sub(b));
        }
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        self.resident_memory_bytes.set(resident_bytes());
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Resident set size from `/proc/self/statm` (0 where unavailable).
fn resident_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<i64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}
