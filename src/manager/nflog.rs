//! The notification log: for each (receiver, group), the fingerprints of the firing and resolved
//! alerts last notified and when. It decides whether a group's flush sends anything, so an
//! unchanged group is not re-sent before its `repeat_interval` and nothing sent before a restart
//! is sent again after it.

use rustc_hash::FxHashMap;

/// What was last notified for one (receiver, group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Fingerprints of the firing alerts notified, sorted.
    pub firing: Vec<u64>,
    /// Fingerprints of the resolved alerts notified, sorted.
    pub resolved: Vec<u64>,
    /// When, Unix ns.
    pub sent_at: i64,
    /// When the entry may be forgotten, Unix ns.
    pub expires_at: i64,
}

/// Why a notification goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Nothing was notified for this group yet.
    First,
    /// Alerts fire that were not notified firing.
    NewAlerts,
    /// Some alerts resolved (and the receiver wants resolved alerts).
    SomeResolved,
    /// Nothing fires any more and the last notification had firing alerts.
    AllResolved,
    /// Unchanged, but `repeat_interval` has passed.
    Repeat,
}

impl Reason {
    /// The text used in webhooks (`notification_reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::First => "first notification",
            Reason::NewAlerts => "new alerts added",
            Reason::SomeResolved => "some alerts resolved",
            Reason::AllResolved => "all alerts resolved",
            Reason::Repeat => "repeat interval elapsed",
        }
    }
}

fn subset(a: &[u64], b: &[u64]) -> bool {
    a.iter().all(|x| b.binary_search(x).is_ok())
}

/// Whether a flush with these (sorted) firing and resolved fingerprints notifies, and why.
pub fn needs_update(
    entry: Option<&Entry>,
    firing: &[u64],
    resolved: &[u64],
    send_resolved: bool,
    repeat_ns: i64,
    now: i64,
) -> Option<Reason> {
    let Some(e) = entry else {
        return (!firing.is_empty()).then_some(Reason::First);
    };
    if !subset(firing, &e.firing) {
        return Some(Reason::NewAlerts);
    }
    if firing.is_empty() {
        // Notify once that everything resolved (even to receivers that drop resolved alerts,
        // so the log forgets the firing set); after that stay quiet.
        return (!e.firing.is_empty()).then_some(Reason::AllResolved);
    }
    if send_resolved && !subset(resolved, &e.resolved) {
        return Some(Reason::SomeResolved);
    }
    (e.sent_at <= now - repeat_ns).then_some(Reason::Repeat)
}

/// The log, keyed by receiver and group key.
#[derive(Debug, Default)]
pub struct Log {
    /// Receiver → group key → entry (nested, so lookups borrow their keys).
    entries: FxHashMap<String, FxHashMap<String, Entry>>,
}

impl Log {
    /// The entry of a (receiver, group).
    pub fn get(&self, receiver: &str, group_key: &str) -> Option<&Entry> {
        self.entries.get(receiver)?.get(group_key)
    }

    /// Records a notification.
    pub fn set(&mut self, receiver: String, group_key: String, entry: Entry) {
        self.entries
            .entry(receiver)
            .or_default()
            .insert(group_key, entry);
    }

    /// Forgets expired entries; returns their keys.
    pub fn gc(&mut self, now: i64) -> Vec<(String, String)> {
        let mut gone = Vec::new();
        self.entries.retain(|receiver, groups| {
            groups.retain(|key, e| {
                let keep = e.expires_at > now;
                if !keep {
                    gone.push((receiver.clone(), key.clone()));
                }
                keep
            });
            !groups.is_empty()
        });
        gone
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.values().map(FxHashMap::len).sum()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(firing: &[u64], resolved: &[u64], sent_at: i64) -> Entry {
        Entry {
            firing: firing.to_vec(),
            resolved: resolved.to_vec(),
            sent_at,
            expires_at: i64::MAX,
        }
    }

    #[test]
    fn decisions_follow_the_documented_rules() {
        let r = 100;
        assert_eq!(
            needs_update(None, &[1], &[], true, r, 0),
            Some(Reason::First)
        );
        assert_eq!(needs_update(None, &[], &[1], true, r, 0), None);
        let e = entry(&[1, 2], &[], 0);
        assert_eq!(needs_update(Some(&e), &[1, 2], &[], true, r, 50), None);
        assert_eq!(
            needs_update(Some(&e), &[1, 2, 3], &[], true, r, 50),
            Some(Reason::NewAlerts)
        );
        assert_eq!(
            needs_update(Some(&e), &[1], &[2], true, r, 50),
            Some(Reason::SomeResolved)
        );
        assert_eq!(needs_update(Some(&e), &[1], &[2], false, r, 50), None);
        assert_eq!(
            needs_update(Some(&e), &[], &[1, 2], false, r, 50),
            Some(Reason::AllResolved)
        );
        assert_eq!(
            needs_update(Some(&entry(&[], &[1, 2], 0)), &[], &[1, 2], true, r, 500),
            None
        );
        assert_eq!(
            needs_update(Some(&e), &[1, 2], &[], true, r, 100),
            Some(Reason::Repeat)
        );
    }
}
