//! The receivers directory: every `*.toml` file in it, merged, declares receivers
//! (`[[receivers]]` with `webhook`, `email`, `alerta` and `log` integrations), the routing tree
//! (`[route]`, in exactly one file), inhibition rules (`[[inhibit_rules]]`) and time intervals
//! (`[[time_intervals]]`). Loading validates everything and names the file, line and field of
//! the first problem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::alerta::{AlertaConfig, AlertaReceiver};
use super::email::{EmailConfig, EmailReceiver};
use super::webhook::{Webhook, WebhookConfig};
use crate::manager::inhibit::{InhibitRule, InhibitRuleConfig};
use crate::manager::route::{Route, RouteConfig};
use crate::manager::time_interval::{TimeInterval, TimeIntervalConfig, build_time_intervals};

/// One file of the receivers directory.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReceiversFile {
    /// The routing tree; at most one file may have it.
    #[serde(default)]
    pub route: Option<RouteConfig>,
    /// Receivers.
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    /// Inhibition rules.
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRuleConfig>,
    /// Named time intervals for routes' `mute_time_intervals` and `active_time_intervals`.
    #[serde(default)]
    pub time_intervals: Vec<TimeIntervalConfig>,
}

/// A receiver: a name and the integrations a notification is delivered to.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// The name routes refer to; unique.
    pub name: String,
    /// An HTTP webhook.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// A log file of JSON lines.
    #[serde(default)]
    pub log: Option<LogConfig>,
    /// An Alerta server.
    #[serde(default)]
    pub alerta: Option<AlertaConfig>,
    /// E-mail through an SMTP server.
    #[serde(default)]
    pub email: Option<EmailConfig>,
}

/// A log-file integration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// File to append to (created if missing); one JSON object (the webhook payload) per line.
    pub path: PathBuf,
    /// Notify resolved alerts (default true).
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

fn yes() -> bool {
    true
}

/// A validated receiver.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// Its name.
    pub name: String,
    /// Webhook integration.
    pub webhook: Option<Webhook>,
    /// Log integration.
    pub log: Option<LogConfig>,
    /// Alerta integration.
    pub alerta: Option<AlertaReceiver>,
    /// E-mail integration.
    pub email: Option<std::sync::Arc<EmailReceiver>>,
}

impl Receivers {
    /// The receiver TICK `.alerta()` handlers use: the one named `alerta` if it has an Alerta
    /// integration, else the first (by name) that has one.
    pub fn alerta_receiver(&self) -> Option<&Receiver> {
        self.receivers
            .get("alerta")
            .filter(|r| r.alerta.is_some())
            .or_else(|| self.receivers.values().find(|r| r.alerta.is_some()))
    }
}

impl Receivers {
    /// The receiver TICK `.email()` handlers use: the one named `email` if it has an e-mail
    /// integration, else the first (by name) that has one.
    pub fn email_receiver(&self) -> Option<&Receiver> {
        self.receivers
            .get("email")
            .filter(|r| r.email.is_some())
            .or_else(|| self.receivers.values().find(|r| r.email.is_some()))
    }
}

impl Receiver {
    /// True when some integration wants resolved alerts.
    pub fn send_resolved(&self) -> bool {
        self.webhook.as_ref().is_some_and(|w| w.send_resolved)
            || self.log.as_ref().is_some_and(|l| l.send_resolved)
            || self.alerta.as_ref().is_some_and(|a| a.send_resolved())
            || self.email.as_ref().is_some_and(|e| e.send_resolved())
    }
}

/// Why the receivers directory was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {msg}", path.display(), pos.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct ReceiversError {
    /// The file (or the directory).
    pub path: PathBuf,
    /// 1-based line and column, when known.
    pub pos: Option<(usize, usize)>,
    /// What is wrong.
    pub msg: String,
}

/// The validated receivers directory.
#[derive(Debug, Clone, Default)]
pub struct Receivers {
    /// The routing tree; `None` when no file has one (alerts are then kept and shown, but
    /// only TICK handlers notify).
    pub route: Option<Route>,
    /// Receivers by name.
    pub receivers: BTreeMap<String, Receiver>,
    /// Inhibition rules.
    pub inhibit_rules: Vec<InhibitRule>,
    /// Time intervals by name.
    pub time_intervals: BTreeMap<String, TimeInterval>,
    /// The files read.
    pub files: Vec<PathBuf>,
}

/// Parses one file's text.
pub fn parse_file(path: &Path, text: &str) -> Result<ReceiversFile, ReceiversError> {
    toml::from_str(text).map_err(|e| ReceiversError {
        path: path.to_path_buf(),
        pos: e.span().map(|s| crate::config::line_col(text, s.start)),
        msg: e.message().to_string(),
    })
}

/// Loads and validates every `*.toml` file of `dir`. A missing directory is an empty
/// configuration.
pub fn load_dir(dir: &Path) -> Result<Receivers, ReceiversError> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(ReceiversError {
                path: dir.to_path_buf(),
                pos: None,
                msg: e.to_string(),
            });
        }
    };
    files.sort();
    let mut parsed = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| ReceiversError {
            path: f.clone(),
            pos: None,
            msg: e.to_string(),
        })?;
        parsed.push((f.clone(), parse_file(f, &text)?));
    }
    let mut r = build(&parsed)?;
    r.files = files;
    Ok(r)
}

/// Validates parsed files together.
pub fn build(files: &[(PathBuf, ReceiversFile)]) -> Result<Receivers, ReceiversError> {
    let fail = |path: &Path, msg: String| ReceiversError {
        path: path.to_path_buf(),
        pos: None,
        msg,
    };
    let mut out = Receivers::default();
    let mut intervals = Vec::new();
    for (path, f) in files {
        intervals.extend(f.time_intervals.iter().cloned());
        out.time_intervals =
            build_time_intervals(&intervals).map_err(|e| fail(path, e.to_string()))?;
    }
    let mut route_file: Option<&Path> = None;
    for (path, f) in files {
        for rc in &f.receivers {
            if rc.name.is_empty() {
                return Err(fail(path, "receivers: a receiver needs a name".into()));
            }
            let webhook = match &rc.webhook {
                Some(w) => Some(Webhook::new(&rc.name, w).map_err(|e| fail(path, e.to_string()))?),
                None => None,
            };
            let alerta = match &rc.alerta {
                Some(a) => {
                    Some(AlertaReceiver::new(&rc.name, a).map_err(|e| fail(path, e.to_string()))?)
                }
                None => None,
            };
            let email = match &rc.email {
                Some(e) => Some(std::sync::Arc::new(
                    EmailReceiver::new(&rc.name, e).map_err(|e| fail(path, e.to_string()))?,
                )),
                None => None,
            };
            let r = Receiver {
                name: rc.name.clone(),
                webhook,
                log: rc.log.clone(),
                alerta,
                email,
            };
            if out.receivers.insert(rc.name.clone(), r).is_some() {
                return Err(fail(
                    path,
                    format!("receiver \"{}\" is defined more than once", rc.name),
                ));
            }
        }
        for (i, ir) in f.inhibit_rules.iter().enumerate() {
            let rule = InhibitRule::from_config(out.inhibit_rules.len(), ir)
                .map_err(|e| fail(path, format!("{e} (rule {i} of this file)")))?;
            out.inhibit_rules.push(rule);
        }
        if let Some(rc) = &f.route {
            if let Some(first) = route_file {
                return Err(fail(
                    path,
                    format!("route: already defined in {}", first.display()),
                ));
            }
            route_file = Some(path);
            let route = Route::new(rc, |n| out.time_intervals.contains_key(n))
                .map_err(|e| fail(path, e.to_string()))?;
            out.route = Some(route);
        }
    }
    if let (Some(route), Some(path)) = (&out.route, route_file) {
        for node in route.nodes() {
            if !out.receivers.contains_key(&node.receiver) {
                return Err(fail(
                    path,
                    format!(
                        "{}: receiver: no receiver named \"{}\"",
                        node.path, node.receiver
                    ),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_merge_and_validate() {
        let a = parse_file(
            Path::new("a.toml"),
            r#"
[route]
receiver = "ops"
group_by = ["alertname"]
group_wait = "1s"

[[route.routes]]
matchers = ['severity="critical"']
receiver = "pager"
mute_time_intervals = ["nights"]

[[inhibit_rules]]
source_matchers = ['severity="critical"']
target_matchers = ['severity="warning"']
equal = ["host"]
"#,
        )
        .unwrap();
        let b = parse_file(
            Path::new("b.toml"),
            r#"
[[receivers]]
name = "ops"
[receivers.webhook]
url = "http://127.0.0.1:9000/hook"

[[receivers]]
name = "pager"
[receivers.log]
path = "/tmp/pager.log"

[[time_intervals]]
name = "nights"
[[time_intervals.time_intervals]]
times = [{start_time = "22:00", end_time = "24:00"}]
"#,
        )
        .unwrap();
        let r = build(&[("a.toml".into(), a.clone()), ("b.toml".into(), b)]).unwrap();
        assert_eq!(r.receivers.len(), 2);
        assert_eq!(r.inhibit_rules.len(), 1);
        assert!(r.route.is_some());
        let e = build(&[("a.toml".into(), a)]).unwrap_err();
        assert!(
            e.to_string().contains("no time interval") || e.to_string().contains("nights"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = parse_file(
            Path::new("r.toml"),
            "[[receivers]]\nname = \"x\"\n[receivers.webhook]\nurl = \"http://a\"\nretries = 3\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("r.toml:5:1: unknown field `retries`"),
            "{e}"
        );
        let f = parse_file(Path::new("r.toml"), "[route]\nreceiver = \"nobody\"\n").unwrap();
        let e = build(&[("r.toml".into(), f)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "r.toml: route: receiver: no receiver named \"nobody\""
        );
    }
}
