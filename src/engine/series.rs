//! The engine's series cache: for each series key seen, which group each rule source put it
//! in, so that the series' next point reaches its groups with one hash lookup for all the rules
//! that read it rather than one per rule.
//!
//! A point of a series read by several rules costs one probe into this table, whose entry holds
//! every rule source's slot side by side (in the entry's cache lines), instead of a probe into
//! each rule's own table, which at tens of thousands of series is a cache miss per rule per
//! point. The cache only remembers: a slot whose group was removed since (expiry, a retired
//! host) fails its generation check in the task and is filled again, so nothing here has to be
//! kept in step with the tasks; a new engine (a reload) starts with an empty cache.

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use smallvec::SmallVec;
use std::hash::BuildHasher;

use super::SeriesId;
use super::point::prefetch;
use super::task::SeriesMemo;

struct Entry {
    /// [`SeriesId::hash`] of the raw series key.
    hash: u64,
    /// [`SeriesId::check`] of the raw series key (told apart from another key of the same
    /// `hash`).
    check: u64,
    /// Event time of the series' latest point: an entry idle for longer than every rule's
    /// expiry is dropped.
    last_seen: i64,
    /// A series is read by a few rule sources on an engine; more spill to the heap. (Four
    /// inline keep the entry at 128 bytes: the table holds one per series.)
    slots: SmallVec<[SeriesMemo; 4]>,
}

/// Series key → each rule source's group of that series.
pub(crate) struct SeriesCache {
    /// Entries by [`table_hash`] of their [`SeriesId::hash`].
    entries: HashTable<Entry>,
    /// Newest point time seen.
    clock: i64,
    /// When (in event time) to drop idle entries next.
    next_sweep: i64,
}

impl Default for SeriesCache {
    fn default() -> Self {
        SeriesCache {
            entries: HashTable::new(),
            clock: i64::MIN,
            next_sweep: i64::MIN,
        }
    }
}

impl SeriesCache {
    /// The slots of a series, its entry created or, if the hash was another key's, reset;
    /// `time` moves its last-seen time.
    pub fn slots(&mut self, id: SeriesId, time: i64) -> &mut SmallVec<[SeriesMemo; 4]> {
        if time > self.clock {
            self.clock = time;
        }
        let hash = table_hash(id.hash);
        // A lookup that finds its entry never grows the table (`HashTable::entry` would
        // reserve room on every call).
        let e = match self.entries.find_entry(hash, |e| e.hash == id.hash) {
            Ok(o) => o.into_mut(),
            Err(absent) => absent
                .into_table()
                .insert_unique(
                    hash,
                    Entry {
                        hash: id.hash,
                        check: id.check,
                        last_seen: time,
                        slots: SmallVec::new(),
                    },
                    |e| table_hash(e.hash),
                )
                .into_mut(),
        };
        if e.check != id.check {
            e.check = id.check;
            e.last_seen = time;
            e.slots.clear();
        } else if time > e.last_seen {
            e.last_seen = time;
        }
        &mut e.slots
    }

    /// Asks the CPU to start loading the entry of a series ([`prefetch`]), without reading
    /// it: the first entry whose hash tag (in the table's dense control bytes) matches, which
    /// is the series' entry unless another series' tag collides.
    #[inline]
    pub fn prefetch(&self, id: SeriesId) {
        if let Some(e) = self.entries.find(table_hash(id.hash), |_| true) {
            prefetch(e);
        }
    }

    /// The slots of a series, if cached (no change to the cache).
    #[inline]
    pub fn peek(&self, id: SeriesId) -> Option<&[SeriesMemo]> {
        self.entries
            .find(table_hash(id.hash), |e| e.hash == id.hash)
            .filter(|e| e.check == id.check)
            .map(|e| &e.slots[..])
    }

    /// Drops entries not seen for `max_age` (the longest expiry of the engine's rules) once a
    /// quarter of that has passed since the last sweep.
    pub fn sweep(&mut self, max_age: i64) {
        if self.clock < self.next_sweep {
            return;
        }
        if self.next_sweep != i64::MIN {
            let cutoff = self.clock.saturating_sub(max_age);
            self.entries.retain(|e| e.last_seen >= cutoff);
            if self.entries.capacity() > 64 && self.entries.capacity() > 4 * self.entries.len() {
                self.entries.shrink_to_fit(|e| table_hash(e.hash));
            }
        }
        self.next_sweep = self.clock.saturating_add((max_age / 4).max(1));
    }

    /// How many series are cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Approximate heap bytes of the cache.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * (std::mem::size_of::<Entry>() + 1)
            + self
                .entries
                .iter()
                .filter(|e| e.slots.spilled())
                .map(|e| e.slots.capacity() * std::mem::size_of::<SeriesMemo>())
                .sum::<usize>()
    }
}

/// The table's hash of a series hash: mixed again, as a map keyed by it would, so that the
/// bits the table uses (the low ones for the bucket, the top ones for the tag) are spread.
#[inline]
fn table_hash(series_hash: u64) -> u64 {
    FxBuildHasher.hash_one(series_hash)
}

/// The slot of rule source `source` among `slots`, added if missing.
pub(crate) fn slot_of(slots: &mut SmallVec<[SeriesMemo; 4]>, source: u32) -> &mut SeriesMemo {
    let i = match slots.iter().position(|s| s.source == source) {
        Some(i) => i,
        None => {
            slots.push(SeriesMemo::new(source));
            slots.len() - 1
        }
    };
    &mut slots[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_stay_small() {
        // Four slots inline and the entry in 128 bytes: the table holds one per series.
        assert_eq!(std::mem::size_of::<SeriesMemo>(), 24);
        assert!(
            std::mem::size_of::<Entry>() <= 128,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }
}
