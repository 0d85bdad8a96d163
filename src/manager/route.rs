//! The routing tree: configuration types, validation, inheritance of
//! options, route matching with Alertmanager's `continue` semantics, route
//! keys/ids and group keys, plus the duration syntax used by the timings.
//!
//! Identifiers (both follow Alertmanager's `dispatch/route.go`):
//!
//! * **key** — the root's key is `{}`; a child's key is its parent's key,
//!   `/`, then the child's matchers rendered as `{name="value",...}` (sorted
//!   by name, then value, then operator; comma without space). Example:
//!   `{}/{severity="critical"}`. Siblings with identical matchers share a
//!   key. The key is what [`group_key`] uses.
//! * **id** — like the key, but every non-root step is followed by `/` and
//!   the child's index among its siblings, and the parent part is the
//!   parent's *id*: `{}/{severity="critical"}/1`,
//!   `{}/{a="1"}/0/{b="2"}/3`. Ids are unique within a tree and stable as
//!   long as the configuration does not change.

use std::time::Duration;

use serde::Deserialize;

use super::labels::LabelSet;
use super::matcher::{Matcher, format_matchers, matches_all, parse_matcher, write_quoted};

/// Default `group_wait` (Alertmanager: 30s).
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
/// Default `group_interval` (Alertmanager: 5m).
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Default `repeat_interval` (Alertmanager: 4h).
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// One node of the routing tree as written in the configuration (`[route]`
/// and nested `[[route.routes]]`). Unset options are inherited from the
/// parent node.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Receiver that gets the notifications of alerts ending at this node.
    /// Required on the root; inherited otherwise.
    #[serde(default)]
    pub receiver: Option<String>,
    /// Labels to group alerts by. `["..."]` groups by all labels. Inherited
    /// when unset; the root's default is no labels (a single group).
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// How long to wait before the first notification of a new group
    /// (duration such as `30s`). Default 30s, inherited when unset.
    #[serde(default)]
    pub group_wait: Option<String>,
    /// How long to wait before notifying about changes to a group that was
    /// already notified. Default 5m, inherited when unset; must not be 0.
    #[serde(default)]
    pub group_interval: Option<String>,
    /// How long to wait before re-sending an unchanged notification.
    /// Default 4h, inherited when unset; must not be 0.
    #[serde(default)]
    pub repeat_interval: Option<String>,
    /// Matchers an alert must all satisfy to enter this node, one matcher
    /// per string (e.g. `severity="critical"`). Not allowed on the root.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Keep matching later siblings after this node matched. Not allowed on
    /// the root.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Names of time intervals during which notifications are muted.
    /// Inherited when unset (`[]` clears). Not allowed on the root.
    #[serde(default)]
    pub mute_time_intervals: Option<Vec<String>>,
    /// Names of time intervals outside of which notifications are muted.
    /// Inherited when unset (`[]` clears). Not allowed on the root.
    #[serde(default)]
    pub active_time_intervals: Option<Vec<String>>,
    /// Child routes, tried in order.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// A configuration error in the routing tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {field}: {msg}")]
pub struct RouteError {
    /// Where the node is, e.g. `route.routes[0].routes[2]`.
    pub path: String,
    /// The offending field, e.g. `group_interval` or `matchers[1]`.
    pub field: String,
    /// What is wrong.
    pub msg: String,
}

/// An error in a duration string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {msg}")]
pub struct DurationError {
    /// The string as given.
    pub input: String,
    /// What is wrong.
    pub msg: String,
}

/// Parse a Prometheus-style duration: one or more `<integer><unit>` pairs
/// with units `y` (365d), `w`, `d`, `h`, `m`, `s`, `ms`, each used at most
/// once and in that (descending) order, e.g. `1h30m`; `0` alone is zero.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let err = |msg: &str| DurationError {
        input: s.to_string(),
        msg: msg.to_string(),
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err("empty"));
    }
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1000),
    ];
    // Rank in the required descending order (ms is the smallest).
    let rank = |u: &str| match u {
        "y" => 0,
        "w" => 1,
        "d" => 2,
        "h" => 3,
        "m" => 4,
        "s" => 5,
        _ => 6,
    };
    let mut rest = s;
    let mut total: u64 = 0;
    let mut last_rank: Option<i32> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| err("number too large"))?;
        rest = &rest[digits..];
        let Some(&(unit, ms)) = UNITS.iter().find(|(u, _)| rest.starts_with(u)) else {
            return Err(err("expected a unit (y, w, d, h, m, s, ms)"));
        };
        rest = &rest[unit.len()..];
        let r = rank(unit);
        if last_rank.is_some_and(|l| l >= r) {
            return Err(err("units must appear once each, largest first"));
        }
        last_rank = Some(r);
        total = n
            .checked_mul(ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| err("duration too large"))?;
    }
    Ok(Duration::from_millis(total))
}

/// A validated node of the routing tree with all inherited options
/// resolved.
#[derive(Debug, Clone)]
pub struct RouteNode {
    /// Unique id (see the module documentation), e.g.
    /// `{}/{severity="critical"}/1`.
    pub id: String,
    /// Route key (see the module documentation), e.g.
    /// `{}/{severity="critical"}`; the prefix of group keys.
    pub key: String,
    /// Configuration path of the node, e.g. `route.routes[1]`.
    pub path: String,
    /// This node's own matchers, sorted by (name, value, op).
    pub matchers: Vec<Matcher>,
    /// Effective receiver.
    pub receiver: String,
    /// Effective group_by labels (sorted, deduplicated); empty when
    /// `group_by_all` is set.
    pub group_by: Vec<String>,
    /// `group_by = ["..."]`: group by all labels.
    pub group_by_all: bool,
    /// Effective group_wait.
    pub group_wait: Duration,
    /// Effective group_interval (never zero).
    pub group_interval: Duration,
    /// Effective repeat_interval (never zero).
    pub repeat_interval: Duration,
    /// Whether matching continues with later siblings after this node.
    pub continue_matching: bool,
    /// Effective mute time interval names.
    pub mute_time_intervals: Vec<String>,
    /// Effective active time interval names.
    pub active_time_intervals: Vec<String>,
    /// Children, in configuration order.
    pub routes: Vec<RouteNode>,
}

/// The validated routing tree.
#[derive(Debug, Clone)]
pub struct Route {
    /// The root node; it matches every alert.
    pub root: RouteNode,
}

struct Inherited {
    receiver: Option<String>,
    group_by: Vec<String>,
    group_by_all: bool,
    group_wait: Duration,
    group_interval: Duration,
    repeat_interval: Duration,
}

impl Route {
    /// Validate `cfg` and resolve inheritance. `is_time_interval` says
    /// whether a time interval name is defined. Receiver names are not
    /// checked here (the caller knows the receivers); every node's
    /// effective receiver is available as [`RouteNode::receiver`].
    pub fn new(
        cfg: &RouteConfig,
        is_time_interval: impl Fn(&str) -> bool,
    ) -> Result<Route, RouteError> {
        let path = "route".to_string();
        let fail = |field: &str, msg: &str| RouteError {
            path: path.clone(),
            field: field.to_string(),
            msg: msg.to_string(),
        };
        if cfg.receiver.as_deref().is_none_or(str::is_empty) {
            return Err(fail("receiver", "the root route must have a receiver"));
        }
        if !cfg.matchers.is_empty() {
            return Err(fail("matchers", "the root route must not have matchers"));
        }
        if cfg.continue_matching {
            return Err(fail("continue", "the root route cannot set continue"));
        }
        if cfg
            .mute_time_intervals
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        {
            return Err(fail(
                "mute_time_intervals",
                "the root route cannot have mute time intervals",
            ));
        }
        if cfg
            .active_time_intervals
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        {
            return Err(fail(
                "active_time_intervals",
                "the root route cannot have active time intervals",
            ));
        }
        let base = Inherited {
            receiver: None,
            group_by: Vec::new(),
            group_by_all: false,
            group_wait: DEFAULT_GROUP_WAIT,
            group_interval: DEFAULT_GROUP_INTERVAL,
            repeat_interval: DEFAULT_REPEAT_INTERVAL,
        };
        let root = build(cfg, &base, path, None, &is_time_interval)?;
        Ok(Route { root })
    }

    /// Parse a `[route]` table from TOML text (the text holds the route
    /// table's body, i.e. what follows `[route]`), then validate it.
    pub fn from_toml_table(
        text: &str,
        is_time_interval: impl Fn(&str) -> bool,
    ) -> Result<Route, RouteError> {
        let cfg: RouteConfig = toml::from_str(text).map_err(|e| RouteError {
            path: "route".into(),
            field: "(toml)".into(),
            msg: e.to_string(),
        })?;
        Route::new(&cfg, is_time_interval)
    }

    /// The nodes that handle an alert with these labels, in order:
    /// depth-first; at each node the children are tried in order, the first
    /// matching child ends the search unless it has `continue = true`; a
    /// node none of whose children match is itself a result. The root
    /// matches everything, so the result is never empty.
    pub fn matches(&self, labels: &LabelSet) -> Vec<&RouteNode> {
        let mut out = Vec::new();
        match_node(&self.root, labels, &mut out);
        out
    }

    /// Every node of the tree, depth-first pre-order.
    pub fn nodes(&self) -> Vec<&RouteNode> {
        fn walk<'a>(n: &'a RouteNode, out: &mut Vec<&'a RouteNode>) {
            out.push(n);
            for c in &n.routes {
                walk(c, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }
}

fn match_node<'a>(node: &'a RouteNode, labels: &LabelSet, out: &mut Vec<&'a RouteNode>) -> bool {
    if !matches_all(&node.matchers, labels) {
        return false;
    }
    let mut any_child = false;
    for child in &node.routes {
        if match_node(child, labels, out) {
            any_child = true;
            if !child.continue_matching {
                break;
            }
        }
    }
    if !any_child {
        out.push(node);
    }
    true
}

fn parse_timing(
    path: &str,
    field: &str,
    value: &Option<String>,
    inherited: Duration,
) -> Result<Duration, RouteError> {
    match value {
        None => Ok(inherited),
        Some(s) => parse_duration(s).map_err(|e| RouteError {
            path: path.to_string(),
            field: field.to_string(),
            msg: e.to_string(),
        }),
    }
}

fn build(
    cfg: &RouteConfig,
    parent: &Inherited,
    path: String,
    // `(parent key, parent id, index among siblings)`; `None` for the root.
    position: Option<(&str, &str, usize)>,
    is_time_interval: &dyn Fn(&str) -> bool,
) -> Result<RouteNode, RouteError> {
    let fail = |field: String, msg: String| RouteError {
        path: path.clone(),
        field,
        msg,
    };

    let mut matchers = Vec::with_capacity(cfg.matchers.len());
    for (i, s) in cfg.matchers.iter().enumerate() {
        let m = parse_matcher(s).map_err(|e| fail(format!("matchers[{i}]"), e.to_string()))?;
        matchers.push(m);
    }
    matchers.sort_by(|a, b| (&a.name, &a.value, a.op).cmp(&(&b.name, &b.value, b.op)));
    let (key, id) = match position {
        None => ("{}".to_string(), "{}".to_string()),
        Some((parent_key, parent_id, index)) => {
            let rendered = format_matchers(&matchers);
            (
                format!("{parent_key}/{rendered}"),
                format!("{parent_id}/{rendered}/{index}"),
            )
        }
    };

    let receiver = match &cfg.receiver {
        Some(r) if r.is_empty() => {
            return Err(fail("receiver".into(), "must not be empty".into()));
        }
        Some(r) => r.clone(),
        None => parent.receiver.clone().unwrap_or_default(),
    };

    let (group_by, group_by_all) = match &cfg.group_by {
        None => (parent.group_by.clone(), parent.group_by_all),
        Some(list) => {
            if list.iter().any(|l| l == "...") {
                if list.len() != 1 {
                    return Err(fail(
                        "group_by".into(),
                        "\"...\" (all labels) cannot be combined with other labels".into(),
                    ));
                }
                (Vec::new(), true)
            } else {
                let mut v = list.clone();
                v.sort();
                for w in v.windows(2) {
                    if w[0] == w[1] {
                        return Err(fail(
                            "group_by".into(),
                            format!("duplicated label {:?}", w[0]),
                        ));
                    }
                }
                if v.iter().any(String::is_empty) {
                    return Err(fail("group_by".into(), "empty label name".into()));
                }
                (v, false)
            }
        }
    };

    let group_wait = parse_timing(&path, "group_wait", &cfg.group_wait, parent.group_wait)?;
    let group_interval = parse_timing(
        &path,
        "group_interval",
        &cfg.group_interval,
        parent.group_interval,
    )?;
    if group_interval.is_zero() {
        return Err(fail("group_interval".into(), "must not be zero".into()));
    }
    let repeat_interval = parse_timing(
        &path,
        "repeat_interval",
        &cfg.repeat_interval,
        parent.repeat_interval,
    )?;
    if repeat_interval.is_zero() {
        return Err(fail("repeat_interval".into(), "must not be zero".into()));
    }

    let check_names =
        |field: &str, names: &Option<Vec<String>>, inherited: &Vec<String>| match names {
            None => Ok(inherited.clone()),
            Some(v) => {
                for (i, n) in v.iter().enumerate() {
                    if !is_time_interval(n) {
                        return Err(RouteError {
                            path: path.clone(),
                            field: format!("{field}[{i}]"),
                            msg: format!("unknown time interval {n:?}"),
                        });
                    }
                }
                Ok(v.clone())
            }
        };
    // As in Alertmanager, time intervals apply to the route that names them; children do not
    // inherit them.
    let none = Vec::new();
    let mute = check_names("mute_time_intervals", &cfg.mute_time_intervals, &none)?;
    let active = check_names("active_time_intervals", &cfg.active_time_intervals, &none)?;

    let inherited = Inherited {
        receiver: Some(receiver.clone()),
        group_by: group_by.clone(),
        group_by_all,
        group_wait,
        group_interval,
        repeat_interval,
    };
    let mut routes = Vec::with_capacity(cfg.routes.len());
    for (i, child) in cfg.routes.iter().enumerate() {
        routes.push(build(
            child,
            &inherited,
            format!("{path}.routes[{i}]"),
            Some((&key, &id, i)),
            is_time_interval,
        )?);
    }

    Ok(RouteNode {
        id,
        key,
        path,
        matchers,
        receiver,
        group_by,
        group_by_all,
        group_wait,
        group_interval,
        repeat_interval,
        continue_matching: cfg.continue_matching,
        mute_time_intervals: mute,
        active_time_intervals: active,
        routes,
    })
}

/// The labels an alert is grouped by at `node`: the alert's labels named
/// in `group_by` (all of them with `group_by_all`). Labels the alert does
/// not have are left out, as in Alertmanager.
pub fn group_labels(node: &RouteNode, labels: &LabelSet) -> LabelSet {
    if node.group_by_all {
        return labels.clone();
    }
    node.group_by
        .iter()
        .filter_map(|n| labels.get(n).map(|v| (n.as_str(), v)))
        .collect()
}

/// Appends [`format_label_set`] of [`group_labels`] to `out` without building the set: the
/// labels come in name order, so picking them in turn keeps the order.
pub fn write_group_labels(out: &mut String, node: &RouteNode, labels: &LabelSet) {
    write_label_pairs(
        out,
        labels
            .iter()
            .filter(|(k, _)| node.group_by_all || node.group_by.iter().any(|n| n == k)),
    );
}

/// Render a label set as Alertmanager does: `{a="1", b="2"}` (sorted,
/// comma and space, values quoted).
pub fn format_label_set(labels: &LabelSet) -> String {
    let mut out = String::new();
    write_label_pairs(&mut out, labels.iter());
    out
}

/// Appends `{a="1", b="2"}` for `pairs`, in their order.
fn write_label_pairs<'a>(out: &mut String, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    out.push('{');
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(k);
        out.push('=');
        // Writing to a String cannot fail.
        let _ = write_quoted(out, v);
    }
    out.push('}');
}

/// The aggregation group key of an alert at `node`: the route key, `:`, and
/// the group labels, e.g.
/// `{}/{severity="critical"}:{alertname="DiskFull", cluster="prod"}`.
///
/// Like Alertmanager this uses the route *key*, so two sibling routes with
/// identical matchers produce identical group keys; a dispatcher that must
/// keep them apart should key its groups by `(node.id, group_key)`.
pub fn group_key(node: &RouteNode, labels: &LabelSet) -> String {
    let mut key = format!("{}:", node.key);
    write_group_labels(&mut key, node, labels);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::labels::label_set;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Top {
        route: RouteConfig,
    }

    fn known(n: &str) -> bool {
        matches!(n, "weekends" | "business-hours" | "night")
    }

    fn route(text: &str) -> Route {
        let top: Top = toml::from_str(text).unwrap();
        Route::new(&top.route, known).unwrap()
    }

    fn route_err(text: &str) -> RouteError {
        let top: Top = toml::from_str(text).unwrap();
        Route::new(&top.route, known).unwrap_err()
    }

    const EXAMPLE: &str = r#"
[route]
receiver = "default"
group_by = ["alertname", "cluster"]
group_wait = "10s"

[[route.routes]]
matchers = ['severity="critical"', 'team=~"db|infra"']
receiver = "pager"
continue = true
mute_time_intervals = ["weekends"]
active_time_intervals = ["business-hours"]

[[route.routes.routes]]
matchers = ['cluster="prod"']
group_by = ["..."]
repeat_interval = "1h"

[[route.routes]]
matchers = ['severity="critical"']
receiver = "ops"
group_interval = "1m"

[[route.routes]]
matchers = ['team="web"']
receiver = "web"
"#;

    fn receivers(r: &Route, ls: &LabelSet) -> Vec<String> {
        r.matches(ls).iter().map(|n| n.receiver.clone()).collect()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("4h").unwrap(), Duration::from_secs(14400));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_duration("1w").unwrap(), Duration::from_secs(604800));
        assert_eq!(parse_duration("1y").unwrap(), Duration::from_secs(31536000));
        assert_eq!(
            parse_duration("1s500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        for bad in ["", "5", "m", "5x", "1m1h", "1m1m", "-1s", "1.5h", " 5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_on_root() {
        let r = route("[route]\nreceiver = \"r\"\n");
        let n = &r.root;
        assert_eq!(n.group_wait, DEFAULT_GROUP_WAIT);
        assert_eq!(n.group_interval, DEFAULT_GROUP_INTERVAL);
        assert_eq!(n.repeat_interval, DEFAULT_REPEAT_INTERVAL);
        assert!(n.group_by.is_empty() && !n.group_by_all);
        assert_eq!(n.id, "{}");
        assert_eq!(n.key, "{}");
        // The root matches everything.
        let m = r.matches(&LabelSet::new());
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].id, "{}");
    }

    #[test]
    fn inheritance() {
        let r = route(EXAMPLE);
        let pager = &r.root.routes[0];
        assert_eq!(pager.receiver, "pager");
        assert_eq!(pager.group_by, vec!["alertname", "cluster"]);
        assert_eq!(pager.group_wait, Duration::from_secs(10));
        assert_eq!(pager.group_interval, DEFAULT_GROUP_INTERVAL);
        let prod = &pager.routes[0];
        assert_eq!(prod.receiver, "pager");
        assert!(prod.group_by_all);
        assert_eq!(prod.group_wait, Duration::from_secs(10));
        assert_eq!(prod.repeat_interval, Duration::from_secs(3600));
        assert!(
            prod.mute_time_intervals.is_empty(),
            "time intervals are not inherited"
        );
        assert!(prod.active_time_intervals.is_empty());
        assert_eq!(pager.mute_time_intervals, vec!["weekends"]);
        assert_eq!(pager.active_time_intervals, vec!["business-hours"]);
        assert!(!prod.continue_matching, "continue is not inherited");
        let ops = &r.root.routes[1];
        assert_eq!(ops.group_interval, Duration::from_secs(60));
        assert!(ops.mute_time_intervals.is_empty());
        assert_eq!(r.root.routes[2].receiver, "web");
    }

    #[test]
    fn time_intervals_are_not_inherited() {
        let r = route(
            r#"
[route]
receiver = "d"
[[route.routes]]
matchers = ['a="1"']
mute_time_intervals = ["night"]
[[route.routes.routes]]
matchers = ['b="1"']
"#,
        );
        assert_eq!(r.root.routes[0].mute_time_intervals, vec!["night"]);
        assert!(r.root.routes[0].routes[0].mute_time_intervals.is_empty());
    }

    #[test]
    fn continue_semantics() {
        let r = route(EXAMPLE);
        // Matches pager (continue=true) -> also tries ops, which matches and
        // stops (web is not tried even though it would match).
        let ls = label_set([("severity", "critical"), ("team", "db"), ("x", "y")]);
        assert_eq!(receivers(&r, &ls), vec!["pager", "ops"]);
        let ls = label_set([("severity", "critical"), ("team", "web")]);
        // pager does not match (team), ops matches and stops before web.
        assert_eq!(receivers(&r, &ls), vec!["ops"]);
        let ls = label_set([("team", "web")]);
        assert_eq!(receivers(&r, &ls), vec!["web"]);
        // Nothing matches: the root handles it.
        let ls = label_set([("team", "other")]);
        assert_eq!(receivers(&r, &ls), vec!["default"]);
    }

    #[test]
    fn deepest_match_wins_and_parent_used_when_no_child_matches() {
        let r = route(EXAMPLE);
        let ls = label_set([
            ("severity", "critical"),
            ("team", "infra"),
            ("cluster", "prod"),
        ]);
        let m = r.matches(&ls);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].path, "route.routes[0].routes[0]");
        assert_eq!(m[1].path, "route.routes[1]");
        let ls = label_set([
            ("severity", "critical"),
            ("team", "infra"),
            ("cluster", "dev"),
        ]);
        let m = r.matches(&ls);
        assert_eq!(m[0].path, "route.routes[0]");
    }

    #[test]
    fn continue_chain_all_siblings() {
        let r = route(
            r#"
[route]
receiver = "d"
[[route.routes]]
receiver = "a"
continue = true
[[route.routes]]
receiver = "b"
continue = true
[[route.routes]]
receiver = "c"
matchers = ['x="no"']
"#,
        );
        // Empty matchers match everything; c does not match, so the result
        // is a, b (root is not added because children matched).
        assert_eq!(receivers(&r, &LabelSet::new()), vec!["a", "b"]);
    }

    #[test]
    fn ids_and_keys() {
        let r = route(EXAMPLE);
        let pager = &r.root.routes[0];
        assert_eq!(pager.key, r#"{}/{severity="critical",team=~"db|infra"}"#);
        assert_eq!(pager.id, r#"{}/{severity="critical",team=~"db|infra"}/0"#);
        assert_eq!(
            pager.routes[0].id,
            r#"{}/{severity="critical",team=~"db|infra"}/0/{cluster="prod"}/0"#
        );
        assert_eq!(
            pager.routes[0].key,
            r#"{}/{severity="critical",team=~"db|infra"}/{cluster="prod"}"#
        );
        assert_eq!(r.root.routes[1].id, r#"{}/{severity="critical"}/1"#);
        // All ids are unique.
        let mut ids: Vec<_> = r.nodes().iter().map(|n| n.id.clone()).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }

    #[test]
    fn matchers_sorted_in_key() {
        let r = route(
            r#"
[route]
receiver = "d"
[[route.routes]]
matchers = ['z="1"', 'a="2"']
"#,
        );
        assert_eq!(r.root.routes[0].key, r#"{}/{a="2",z="1"}"#);
    }

    #[test]
    fn group_keys() {
        let r = route(EXAMPLE);
        let ls = label_set([
            ("alertname", "DiskFull"),
            ("cluster", "prod"),
            ("severity", "critical"),
            ("instance", "h1"),
        ]);
        let ops = &r.root.routes[1];
        assert_eq!(
            group_key(ops, &ls),
            r#"{}/{severity="critical"}:{alertname="DiskFull", cluster="prod"}"#
        );
        // Missing group_by labels are omitted.
        let ls2 = label_set([("alertname", "DiskFull"), ("severity", "critical")]);
        assert_eq!(
            group_key(ops, &ls2),
            r#"{}/{severity="critical"}:{alertname="DiskFull"}"#
        );
        // group_by all labels.
        let prod = &r.root.routes[0].routes[0];
        assert!(group_key(prod, &ls).ends_with(
            r#":{alertname="DiskFull", cluster="prod", instance="h1", severity="critical"}"#
        ));
        // Root with no group_by: one group.
        let root = route("[route]\nreceiver = \"r\"\n");
        assert_eq!(group_key(&root.root, &ls), "{}:{}");
        // Values are quoted/escaped.
        let ls3 = label_set([("alertname", "a\"b")]);
        assert_eq!(
            group_key(ops, &ls3),
            r#"{}/{severity="critical"}:{alertname="a\"b"}"#
        );
        // Written straight into a buffer, the group labels read the same.
        for node in [ops, prod, &root.root] {
            for l in [&ls, &ls2, &ls3, &LabelSet::new()] {
                let mut out = String::from("x");
                write_group_labels(&mut out, node, l);
                assert_eq!(
                    out,
                    format!("x{}", format_label_set(&group_labels(node, l)))
                );
            }
        }
    }

    #[test]
    fn validation_errors_name_path_and_field() {
        let e = route_err(
            r#"
[route]
receiver = "d"
[[route.routes]]
receiver = "x"
[[route.routes]]
matchers = ['a="1"', 'b=~"("']
"#,
        );
        assert_eq!(e.path, "route.routes[1]");
        assert_eq!(e.field, "matchers[1]");
        assert!(e.to_string().starts_with("route.routes[1]: matchers[1]: "));

        let e = route_err(
            "[route]\nreceiver = \"d\"\n[[route.routes]]\n[[route.routes.routes]]\ngroup_wait = \"5 minutes\"\n",
        );
        assert_eq!(
            (e.path.as_str(), e.field.as_str()),
            ("route.routes[0].routes[0]", "group_wait")
        );

        let e = route_err("[route]\nreceiver = \"d\"\ngroup_interval = \"0s\"\n");
        assert_eq!(
            (e.path.as_str(), e.field.as_str()),
            ("route", "group_interval")
        );
        let e = route_err("[route]\nreceiver = \"d\"\n[[route.routes]]\nrepeat_interval = \"0\"\n");
        assert_eq!(e.field, "repeat_interval");

        let e = route_err(
            "[route]\nreceiver = \"d\"\n[[route.routes]]\nactive_time_intervals = [\"night\", \"lunch\"]\n",
        );
        assert_eq!(e.path, "route.routes[0]");
        assert_eq!(e.field, "active_time_intervals[1]");
        assert!(e.msg.contains("lunch"));

        let e = route_err("[route]\nreceiver = \"d\"\ngroup_by = [\"...\", \"a\"]\n");
        assert_eq!(e.field, "group_by");
        let e = route_err("[route]\nreceiver = \"d\"\ngroup_by = [\"a\", \"a\"]\n");
        assert_eq!(e.field, "group_by");
    }

    #[test]
    fn root_restrictions() {
        assert_eq!(route_err("[route]\n").field, "receiver");
        assert_eq!(
            route_err("[route]\nreceiver = \"d\"\nmatchers = ['a=\"1\"']\n").field,
            "matchers"
        );
        assert_eq!(
            route_err("[route]\nreceiver = \"d\"\ncontinue = true\n").field,
            "continue"
        );
        assert_eq!(
            route_err("[route]\nreceiver = \"d\"\nmute_time_intervals = [\"night\"]\n").field,
            "mute_time_intervals"
        );
    }

    #[test]
    fn unknown_fields_rejected() {
        let r: Result<Top, _> = toml::from_str("[route]\nreceiver = \"d\"\nmatch = {a = \"1\"}\n");
        assert!(r.is_err());
        let e = Route::from_toml_table("receiver = \"d\"\nbogus = 1\n", known).unwrap_err();
        assert_eq!(e.field, "(toml)");
    }

    #[test]
    fn from_toml_table_works() {
        let r = Route::from_toml_table("receiver = \"d\"\ngroup_by = [\"a\"]\n", known).unwrap();
        assert_eq!(r.root.group_by, vec!["a"]);
    }

    #[test]
    fn with_configured_time_intervals() {
        use crate::manager::time_interval::{TimeIntervalConfig, build_time_intervals};
        #[derive(Deserialize)]
        struct Full {
            route: RouteConfig,
            time_intervals: Vec<TimeIntervalConfig>,
        }
        let full: Full = toml::from_str(
            r#"
[route]
receiver = "d"
[[route.routes]]
matchers = ['team="db"']
mute_time_intervals = ["weekends"]

[[time_intervals]]
name = "weekends"
[[time_intervals.time_intervals]]
weekdays = ["saturday", "sunday"]
"#,
        )
        .unwrap();
        let tis = build_time_intervals(&full.time_intervals).unwrap();
        let r = Route::new(&full.route, |n| tis.contains_key(n)).unwrap();
        let node = r.matches(&label_set([("team", "db")]))[0];
        assert_eq!(node.mute_time_intervals, vec!["weekends"]);
        let sat = chrono::DateTime::parse_from_rfc3339("2026-11-21T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert!(
            node.mute_time_intervals
                .iter()
                .any(|n| tis[n].contains(sat))
        );
        // An unknown name is rejected against the same set.
        let mut bad = full.route.clone();
        bad.routes[0].mute_time_intervals = Some(vec!["holidays".into()]);
        let e = Route::new(&bad, |n| tis.contains_key(n)).unwrap_err();
        assert_eq!(e.field, "mute_time_intervals[0]");
    }
}
