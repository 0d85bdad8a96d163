//! The owned data that moves between pipeline nodes: points, batches, tag sets and interned
//! field names.
//!
//! Tag sets are shared (`Arc`) between every point of a series and the group that holds them, so
//! moving a point costs no string copies; field names come from a bounded [`NameCache`] so the
//! same name is one allocation however many points carry it.

use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use std::sync::Arc;

use crate::rules::lambda::{Scope, Value};

/// A field or tag name.
pub type Name = Arc<str>;

/// Field values of a point; two live inline, more spill to the heap.
pub type Fields = SmallVec<[(Name, Value); 2]>;

/// A sorted set of tags, shared between points.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TagSet(pub Vec<(Name, Arc<str>)>);

impl TagSet {
    /// The value of a tag.
    pub fn get(&self, key: &str) -> Option<&Arc<str>> {
        self.0.iter().find(|(k, _)| &**k == key).map(|(_, v)| v)
    }

    /// Approximate heap bytes held (not counting shared names).
    pub fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<(Name, Arc<str>)>()
            + self.0.iter().map(|(_, v)| v.len() + 16).sum::<usize>()
    }

    /// A copy with `key` set to `value`, sorted.
    pub fn with(&self, key: Name, value: Arc<str>) -> TagSet {
        let mut v = self.0.clone();
        match v.binary_search_by(|(k, _)| (**k).cmp(&*key)) {
            Ok(i) => v[i].1 = value,
            Err(i) => v.insert(i, (key, value)),
        }
        TagSet(v)
    }

    /// A copy without `key`.
    pub fn without(&self, key: &str) -> TagSet {
        TagSet(
            self.0
                .iter()
                .filter(|(k, _)| &**k != key)
                .cloned()
                .collect(),
        )
    }

    /// JSON object of the tags.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(&**v)))
                .collect(),
        )
    }
}

/// Shared tags.
pub type Tags = Arc<TagSet>;

/// Index of a group in a task's group table.
pub type GroupId = u32;

/// One point.
#[derive(Debug, Clone)]
pub struct Point {
    /// Measurement.
    pub name: Name,
    /// Unix nanoseconds.
    pub time: i64,
    /// Tags (all of the series' tags, or only the group's where nothing downstream needs more).
    pub tags: Tags,
    /// Field values.
    pub fields: Fields,
    /// The group the point belongs to.
    pub group: GroupId,
}

impl Point {
    /// A field's value.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| v)
    }

    /// Sets a field, replacing an existing value.
    pub fn set_field(&mut self, name: Name, value: Value) {
        match self.fields.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((name, value)),
        }
    }
}

impl Scope for Point {
    fn str_eq(&self, name: &str, literal: &str) -> Option<bool> {
        if let Some(v) = self.field(name) {
            return match v {
                Value::Str(s) => Some(&**s == literal),
                _ => None,
            };
        }
        self.tags.get(name).map(|v| &**v == literal)
    }

    fn lookup(&self, name: &str) -> Option<Value> {
        if let Some(v) = self.field(name) {
            return Some(v.clone());
        }
        self.tags.get(name).map(|v| Value::Str(v.clone()))
    }

    fn time(&self) -> i64 {
        self.time
    }
}

/// A window of points of one group, stamped with the window's end.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Measurement.
    pub name: Name,
    /// The window's end, Unix nanoseconds.
    pub time: i64,
    /// The group's tags.
    pub tags: Tags,
    /// The group.
    pub group: GroupId,
    /// Points in time order.
    pub points: Vec<Point>,
}

/// What flows along an edge.
#[derive(Debug, Clone)]
pub enum Msg {
    /// One point.
    Point(Point),
    /// A window of points.
    Batch(Batch),
}

/// Interns field and tag names up to a bound; beyond it names are allocated per use, so a client
/// sending endless distinct names cannot grow the cache without limit.
#[derive(Debug)]
pub struct NameCache {
    map: FxHashMap<Box<str>, Name>,
    cap: usize,
}

impl Default for NameCache {
    fn default() -> Self {
        NameCache::new(65_536)
    }
}

impl NameCache {
    /// A cache holding at most `cap` names.
    pub fn new(cap: usize) -> Self {
        NameCache {
            map: FxHashMap::default(),
            cap,
        }
    }

    /// The shared name for `s`.
    pub fn get(&mut self, s: &str) -> Name {
        if let Some(n) = self.map.get(s) {
            return n.clone();
        }
        let n: Name = s.into();
        if self.map.len() < self.cap {
            self.map.insert(s.into(), n.clone());
        }
        n
    }

    /// Number of cached names.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Asks the CPU to start loading the cache lines of `*p` (those of its first 256 bytes), so
/// that a later read of it, a few points further on, does not wait for memory. A hint only: it
/// never faults and changes no value, and does nothing on other architectures.
#[inline(always)]
pub fn prefetch<T>(p: &T) {
    prefetch_bytes((p as *const T).cast::<u8>(), std::mem::size_of::<T>());
}

/// [`prefetch`] of a slice's elements (their first 256 bytes).
#[inline(always)]
pub fn prefetch_slice<T>(s: &[T]) {
    prefetch_bytes(s.as_ptr().cast::<u8>(), std::mem::size_of_val(s));
}

/// [`prefetch`] of what an `Arc` points to and of its reference counts, which a clone writes
/// (they precede the value in the allocation; were they elsewhere, the hint would only be
/// wasted).
#[inline(always)]
pub fn prefetch_arc<T>(a: &Arc<T>) {
    let counts = 2 * std::mem::size_of::<usize>();
    prefetch_bytes(
        Arc::as_ptr(a).cast::<u8>().wrapping_sub(counts),
        counts + std::mem::size_of::<T>(),
    );
}

#[inline(always)]
fn prefetch_bytes(start: *const u8, size: usize) {
    // Every line the bytes span: from the first, by lines, then the last byte's (a line
    // already asked for unless the bytes straddle one more).
    let size = size.min(4 * 64);
    let mut offset = 0;
    while offset < size {
        prefetch_line(start.wrapping_add(offset));
        offset += 64;
    }
    if size > 1 {
        prefetch_line(start.wrapping_add(size - 1));
    }
}

#[inline(always)]
fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing architecturally and cannot fault, whatever the address;
    // SSE, which it needs, is part of every x86_64 target.
    #[allow(unused_unsafe)]
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Per-group storage for a node: a flat vector indexed by [`GroupId`].
#[derive(Debug, Clone)]
pub struct GroupVec<T> {
    slots: Vec<Option<T>>,
}

impl<T> Default for GroupVec<T> {
    fn default() -> Self {
        GroupVec { slots: Vec::new() }
    }
}

impl<T> GroupVec<T> {
    /// The state of a group, if any.
    pub fn get(&self, g: GroupId) -> Option<&T> {
        self.slots.get(g as usize).and_then(Option::as_ref)
    }

    /// Asks the CPU to start loading a group's slot ([`prefetch`]).
    #[inline]
    pub fn prefetch(&self, g: GroupId) {
        if let Some(s) = self.slots.get(g as usize) {
            prefetch(s);
        }
    }

    /// The state of a group, if any.
    pub fn get_mut(&mut self, g: GroupId) -> Option<&mut T> {
        self.slots.get_mut(g as usize).and_then(Option::as_mut)
    }

    /// The state of a group, created by `init` if absent.
    pub fn get_or_insert_with(&mut self, g: GroupId, init: impl FnOnce() -> T) -> &mut T {
        let i = g as usize;
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i].get_or_insert_with(init)
    }

    /// Frees a group's state.
    pub fn remove(&mut self, g: GroupId) -> Option<T> {
        self.slots.get_mut(g as usize).and_then(Option::take)
    }

    /// Groups with state, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (GroupId, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i as GroupId, s)))
    }

    /// Groups with state, in id order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (GroupId, &mut T)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.as_mut().map(|s| (i as GroupId, s)))
    }

    /// Number of groups with state.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// True when no group has state.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }

    /// Bytes of the slot vector itself.
    pub fn slot_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Option<T>>()
    }
}
