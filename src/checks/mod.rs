//! Passive checks with Nagios semantics: results arrive over NRDP (`nrdp`), NSCA (`nsca`) or
//! alertd's JSON API, become [`CheckResult`]s, and are turned into check states and alerts.

pub mod state;

/// One passive check result as it arrived, before any interpretation.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    /// Host name.
    pub host: String,
    /// Service description; `None` for a host check.
    pub service: Option<String>,
    /// The plugin's return code as sent (0 OK/UP, 1 WARNING/DOWN, 2 CRITICAL/UNREACHABLE,
    /// 3 UNKNOWN; anything else is read as UNKNOWN for services).
    pub code: i32,
    /// The plugin output: summary, then `|` and perfdata, then further lines of long output.
    pub output: String,
    /// When the check ran, Unix ns, if the sender said.
    pub time_ns: Option<i64>,
    /// How long this result stays fresh, if the sender said (alertd's JSON API only).
    pub ttl_ns: Option<i64>,
    /// Which intake it came through: `nrdp`, `nsca` or `api`.
    pub via: &'static str,
}

pub mod nrdp;
pub mod nsca;
