//! The host registry: every host that sent metrics or check results, with when it was first
//! and last seen and through which sources. Retiring a host removes it (if it comes back it is
//! a new host); a host silent past the forget time is retired the same way. This is how a
//! planned scale-down differs from a crash.

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;
use std::time::Duration;

use crate::storage::HostRow;

/// Settings of the host registry (`[hosts]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HostsConfig {
    /// The tag of metric points that names their host.
    pub tag: String,
    /// A host with no metric and no check result for this long is retired automatically, with
    /// a log line (`0s` never forgets).
    #[serde(with = "crate::config::duration_str")]
    pub forget_after: Duration,
}

impl Default for HostsConfig {
    fn default() -> Self {
        HostsConfig {
            tag: "host".to_string(),
            forget_after: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Where a host was seen.
pub const SOURCES: [&str; 2] = ["metrics", "checks"];

/// One known host.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// First seen, Unix ns.
    pub first_seen_ns: i64,
    /// Last seen, Unix ns.
    pub last_seen_ns: i64,
    /// Bit i set: seen through `SOURCES[i]`.
    pub sources: u8,
}

impl Host {
    /// The source names.
    pub fn source_names(&self) -> Vec<&'static str> {
        SOURCES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.sources & (1 << i) != 0)
            .map(|(_, s)| *s)
            .collect()
    }
}

/// The registry, with the rows changed since the last [`Registry::take_dirty`].
#[derive(Debug, Default)]
pub struct Registry {
    hosts: FxHashMap<String, Host>,
    dirty: FxHashSet<String>,
}

impl Registry {
    /// From stored rows.
    pub fn from_rows(rows: Vec<HostRow>) -> Registry {
        let hosts = rows
            .into_iter()
            .map(|r| {
                let sources = r
                    .sources
                    .split(',')
                    .filter_map(|s| SOURCES.iter().position(|k| *k == s))
                    .fold(0u8, |acc, i| acc | (1 << i));
                (
                    r.name,
                    Host {
                        first_seen_ns: r.first_seen_ns,
                        last_seen_ns: r.last_seen_ns,
                        sources,
                    },
                )
            })
            .collect();
        Registry {
            hosts,
            dirty: FxHashSet::default(),
        }
    }

    /// Records that `name` was seen through `SOURCES[source]` at `now`.
    pub fn seen(&mut self, name: &str, source: usize, now: i64) {
        let bit = 1u8 << source.min(SOURCES.len() - 1);
        match self.hosts.get_mut(name) {
            Some(h) => {
                h.last_seen_ns = h.last_seen_ns.max(now);
                h.sources |= bit;
            }
            None => {
                self.hosts.insert(
                    name.to_string(),
                    Host {
                        first_seen_ns: now,
                        last_seen_ns: now,
                        sources: bit,
                    },
                );
            }
        }
        if !self.dirty.contains(name) {
            self.dirty.insert(name.to_string());
        }
    }

    /// Removes a host; whether it was known.
    pub fn retire(&mut self, name: &str) -> bool {
        self.dirty.remove(name);
        self.hosts.remove(name).is_some()
    }

    /// Hosts silent for longer than `after` at `now`.
    pub fn forgettable(&self, now: i64, after: Duration) -> Vec<String> {
        if after.is_zero() {
            return Vec::new();
        }
        let limit = after.as_nanos() as i64;
        self.hosts
            .iter()
            .filter(|(_, h)| now - h.last_seen_ns > limit)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Every host, by name.
    pub fn list(&self) -> Vec<(&String, &Host)> {
        let mut v: Vec<_> = self.hosts.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Number of known hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether no host is known.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// One host.
    pub fn get(&self, name: &str) -> Option<&Host> {
        self.hosts.get(name)
    }

    /// The rows changed since last time, to store.
    pub fn take_dirty(&mut self) -> Vec<HostRow> {
        let names: Vec<String> = self.dirty.drain().collect();
        names
            .into_iter()
            .filter_map(|n| {
                let h = self.hosts.get(&n)?;
                Some(HostRow {
                    sources: h.source_names().join(","),
                    name: n,
                    first_seen_ns: h.first_seen_ns,
                    last_seen_ns: h.last_seen_ns,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_retired_forgotten_and_stored() {
        let mut r = Registry::default();
        r.seen("a", 1, 10);
        r.seen("a", 0, 20);
        r.seen("b", 1, 15);
        let a = r.get("a").unwrap();
        assert_eq!((a.first_seen_ns, a.last_seen_ns), (10, 20));
        assert_eq!(a.source_names(), ["metrics", "checks"]);
        let mut rows = r.take_dirty();
        rows.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(rows[0].sources, "metrics,checks");
        assert!(r.take_dirty().is_empty());
        assert_eq!(r.forgettable(100, Duration::from_nanos(82)), ["b"]);
        assert!(r.forgettable(100, Duration::ZERO).is_empty());
        assert!(r.retire("b"));
        assert!(!r.retire("b"));
        let back = Registry::from_rows(rows);
        assert_eq!(back.get("a").unwrap().sources, 3);
    }
}
