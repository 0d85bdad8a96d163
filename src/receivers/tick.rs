//! TICK handlers: what a rule's handler chain (`.post(url)`, `.log(path)`, `.email(addr)`,
//! `.alerta()`) asks for, resolved for one alert event. Templated properties (such as
//! `.alerta().resource('{{ index .Tags "host" }}')`) are rendered here against the event, so
//! the dispatcher only decides whether the event is muted and where it goes.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::engine::AlertEvent;
use crate::rules::lambda::Value;
use crate::rules::plan::HandlerValue;

/// Default timeout of an HTTP delivery.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One handler of an event, resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum HandlerTarget {
    /// `.post(url)`: Kapacitor's alert JSON in an HTTP POST.
    Post {
        /// The URL.
        url: String,
        /// `.header(k, v)` pairs.
        headers: Vec<(String, String)>,
        /// `.timeout(d)`.
        timeout: Duration,
    },
    /// `.log(path)`: one JSON line per event.
    Log {
        /// The file.
        path: String,
    },
    /// `.email(addr, ...)`: an e-mail through the e-mail receiver; subject = the message,
    /// body = the details.
    Email {
        /// Addresses given to the handler (empty: the receiver's).
        to: Vec<String>,
    },
    /// `.alerta()`: an alert through the Alerta receiver with these properties rendered
    /// (`resource`, `event`, `environment`, `group`, `value`, `origin`, `services`,
    /// `correlated`, `timeout`).
    Alerta {
        /// Property → values.
        props: BTreeMap<String, Vec<String>>,
    },
    /// A handler alertd does not deliver (`exec`, `tcp`, ...).
    Unsupported(String),
}

fn text(v: &HandlerValue, ev: &AlertEvent) -> String {
    match v {
        HandlerValue::Value(Value::Str(s)) => s.to_string(),
        HandlerValue::Value(other) => other.to_string(),
        HandlerValue::Template(t) => t.template.render_to_string(&ev.template_data()).0,
    }
}

/// The handlers of an event's alert node, resolved against the event.
pub fn handler_targets(ev: &AlertEvent) -> Vec<HandlerTarget> {
    let mut out = Vec::new();
    for h in &ev.spec.handlers {
        match h.kind.as_str() {
            "post" => {
                let Some(url) = h.args.first().map(|v| text(v, ev)) else {
                    out.push(HandlerTarget::Unsupported("post without a URL".into()));
                    continue;
                };
                let headers = h
                    .props
                    .iter()
                    .filter(|(n, _)| n == "header")
                    .filter_map(|(_, v)| Some((text(v.first()?, ev), text(v.get(1)?, ev))))
                    .collect();
                let timeout = match h.prop("timeout").and_then(|v| v.first()) {
                    Some(HandlerValue::Value(Value::Duration(d))) if *d > 0 => {
                        Duration::from_nanos(*d as u64)
                    }
                    _ => DEFAULT_TIMEOUT,
                };
                out.push(HandlerTarget::Post {
                    url,
                    headers,
                    timeout,
                });
            }
            "log" => match h.args.first() {
                Some(p) => out.push(HandlerTarget::Log { path: text(p, ev) }),
                None => out.push(HandlerTarget::Unsupported("log without a path".into())),
            },
            "email" => {
                let mut to: Vec<String> = h.args.iter().map(|v| text(v, ev)).collect();
                for (name, vals) in &h.props {
                    if name == "to" {
                        to.extend(vals.iter().map(|v| text(v, ev)));
                    }
                }
                out.push(HandlerTarget::Email { to });
            }
            "alerta" => {
                let mut props: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (name, vals) in &h.props {
                    let rendered: Vec<String> = vals.iter().map(|v| text(v, ev)).collect();
                    if name == "services" || name == "correlated" {
                        props.entry(name.clone()).or_default().extend(rendered);
                    } else {
                        props.insert(name.clone(), rendered);
                    }
                }
                out.push(HandlerTarget::Alerta { props });
            }
            other => out.push(HandlerTarget::Unsupported(other.to_string())),
        }
    }
    out
}
