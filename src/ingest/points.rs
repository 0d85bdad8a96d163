//! Points parsed once by the write handler, in a compact form the engine shards read directly.
//!
//! A batch keeps the request text and, per point, the spans of its measurement, series key,
//! tags and fields in flat vectors, with field values already converted and timestamps in
//! nanoseconds. Names and strings that had escapes are unescaped once into a side buffer. A
//! shard then reads each point through [`PointRef`] without parsing or copying, and every
//! shard shares the same batch.
//!
//! The vectors are reused: a batch that every shard has evaluated gives them back to a
//! [`PointsPool`], and the next request fills them again.

use rustc_hash::FxHashMap;
use std::sync::Mutex;

use super::line_protocol::{EscStr, FieldValue, ParsedLine};
use crate::engine::{FieldRef, LineView, SeriesId};

/// Set in [`Span::start`] when the span is in the unescaped side buffer.
const IN_EXTRA: u32 = 1 << 31;

/// A point whose field keys were not given a layout.
const NO_LAYOUT: u32 = u32::MAX;

/// Distinct field-key layouts told apart per batch; points beyond have none.
const MAX_LAYOUTS: usize = 256;

/// Largest text a batch can address.
pub const MAX_TEXT: usize = (IN_EXTRA - 1) as usize;

/// Where a string is: a range of the request text, or of the side buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

/// A field value with strings as spans.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Val {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(Span),
}

/// One point.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Identity of the series key ([`crate::engine::series_id`]).
    id: SeriesId,
    /// Unix nanoseconds.
    time: i64,
    /// The raw series key (measurement and tags as written).
    key: Span,
    /// [`crate::engine::host_hash`] of the host tag's value.
    host: u64,
    /// Index into [`Points::measurements`].
    measurement: u32,
    /// Index into [`Points::layouts`], or [`NO_LAYOUT`].
    layout: u32,
    /// First tag in [`Points::tags`] and how many.
    tags: (u32, u32),
    /// First field in [`Points::fields`] and how many.
    fields: (u32, u32),
}

/// Parsed points of one request, sharing its text.
#[derive(Debug, Default)]
pub struct Points {
    text: String,
    extra: String,
    /// Distinct measurements (owned: found while the text is not set yet).
    measurement_names: Vec<Box<str>>,
    /// Distinct sequences of field keys.
    layouts: Vec<Box<[Box<str>]>>,
    /// Per measurement, the layout of its latest point.
    last_layout: Vec<u32>,
    entries: Vec<Entry>,
    tags: Vec<(Span, Span)>,
    fields: Vec<(Span, Val)>,
}

impl Points {
    /// No points yet, reusing the vectors of `spare`. Lines are added with [`Points::push`],
    /// then the text they are in with [`Points::set_text`].
    pub fn new(spare: Option<Points>) -> Points {
        let mut p = spare.unwrap_or_default();
        p.clear();
        p
    }

    /// Sets the text the pushed lines are in.
    pub fn set_text(&mut self, text: String) {
        self.text = text;
    }

    fn clear(&mut self) {
        self.text = String::new();
        self.extra.clear();
        self.measurement_names.clear();
        self.layouts.clear();
        self.last_layout.clear();
        self.entries.clear();
        self.tags.clear();
        self.fields.clear();
    }

    /// The request text the spans point into.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no point.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held: the text and every vector, by capacity.
    pub fn bytes(&self) -> usize {
        self.text.capacity()
            + self.extra.capacity()
            + self.measurement_names.capacity() * std::mem::size_of::<Box<str>>()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.tags.capacity() * std::mem::size_of::<(Span, Span)>()
            + self.fields.capacity() * std::mem::size_of::<(Span, Val)>()
    }

    /// The distinct measurements of the batch, in order of first appearance; a point refers to
    /// one by index ([`PointRef::measurement_index`]).
    pub fn measurements(&self) -> impl Iterator<Item = &str> {
        self.measurement_names.iter().map(|s| &**s)
    }

    /// The distinct sequences of field keys of the batch; a point refers to one by index
    /// ([`PointRef::layout_index`]).
    pub fn layouts(&self) -> impl Iterator<Item = &[Box<str>]> {
        self.layouts.iter().map(|l| &**l)
    }

    /// The layout of `fields` for a point of measurement `m`, added if new.
    fn layout_of(&mut self, m: usize, fields: &[(EscStr<'_>, FieldValue<'_>)]) -> u32 {
        let same = |l: &[Box<str>]| {
            l.len() == fields.len() && l.iter().zip(fields).all(|(a, (k, _))| **a == **k)
        };
        if let Some(&c) = self.last_layout.get(m)
            && self.layouts.get(c as usize).is_some_and(|l| same(l))
        {
            return c;
        }
        let id = match self.layouts.iter().position(|l| same(l)) {
            Some(i) => i as u32,
            None if self.layouts.len() < MAX_LAYOUTS => {
                self.layouts
                    .push(fields.iter().map(|(k, _)| Box::from(k.as_str())).collect());
                (self.layouts.len() - 1) as u32
            }
            None => return NO_LAYOUT,
        };
        if self.last_layout.len() <= m {
            self.last_layout.resize(m + 1, NO_LAYOUT);
        }
        self.last_layout[m] = id;
        id
    }

    /// Adds a parsed line. `line` is its text, which the text set by [`Points::set_text`] will
    /// hold at byte `at`; `time` is in nanoseconds; `host` is the [`crate::engine::host_hash`]
    /// of its host tag. Returns false (adding nothing) when the text is too large to address.
    pub fn push(
        &mut self,
        line: &str,
        at: usize,
        parsed: &ParsedLine<'_>,
        time: i64,
        host: u64,
    ) -> bool {
        if at + line.len() > MAX_TEXT {
            return false;
        }
        let base = line.as_ptr() as usize;
        let span_of = |extra: &mut String, s: &EscStr<'_>| -> Span {
            match s {
                EscStr::Borrowed(b) => Span {
                    start: (b.as_ptr() as usize - base + at) as u32,
                    len: b.len() as u32,
                },
                EscStr::Owned(o) => {
                    let start = extra.len();
                    extra.push_str(o);
                    Span {
                        start: start as u32 | IN_EXTRA,
                        len: o.len() as u32,
                    }
                }
            }
        };
        let name = parsed.measurement.as_str();
        // Agents write a measurement's lines together: try the previous line's first.
        let last = self.entries.last().map_or(0, |e| e.measurement as usize);
        let measurement = match self.measurement_names.get(last) {
            Some(m) if **m == *name => last,
            _ => match self.measurement_names.iter().position(|m| **m == *name) {
                Some(i) => i,
                None => {
                    self.measurement_names.push(name.into());
                    self.measurement_names.len() - 1
                }
            },
        };
        let layout = self.layout_of(measurement, &parsed.fields);
        let tags_start = self.tags.len();
        for (k, v) in &parsed.tags {
            let k = span_of(&mut self.extra, k);
            let v = span_of(&mut self.extra, v);
            self.tags.push((k, v));
        }
        let fields_start = self.fields.len();
        for (k, v) in &parsed.fields {
            let k = span_of(&mut self.extra, k);
            let v = match v {
                FieldValue::Float(f) => Val::Float(*f),
                FieldValue::Int(i) => Val::Int(*i),
                FieldValue::UInt(u) => Val::UInt(*u),
                FieldValue::Bool(b) => Val::Bool(*b),
                FieldValue::Str(s) => Val::Str(span_of(&mut self.extra, s)),
            };
            self.fields.push((k, v));
        }
        let key = parsed.series_key;
        self.entries.push(Entry {
            id: crate::engine::series_id(key),
            time,
            host,
            key: Span {
                start: (key.as_ptr() as usize - base + at) as u32,
                len: key.len() as u32,
            },
            measurement: measurement as u32,
            layout,
            tags: (tags_start as u32, parsed.tags.len() as u32),
            fields: (fields_start as u32, parsed.fields.len() as u32),
        });
        true
    }

    /// The points in order.
    pub fn iter(&self) -> impl Iterator<Item = PointRef<'_>> {
        self.entries.iter().map(move |e| PointRef { p: self, e })
    }

    #[inline]
    fn resolve(&self, s: Span) -> &str {
        resolve(&self.text, &self.extra, s)
    }
}

#[inline]
fn resolve<'a>(text: &'a str, extra: &'a str, s: Span) -> &'a str {
    let (buf, start) = if s.start & IN_EXTRA != 0 {
        (extra, (s.start & !IN_EXTRA) as usize)
    } else {
        (text, s.start as usize)
    };
    buf.get(start..start + s.len as usize).unwrap_or("")
}

/// One point of a batch.
#[derive(Clone, Copy)]
pub struct PointRef<'a> {
    p: &'a Points,
    e: &'a Entry,
}

impl PointRef<'_> {
    /// Unix nanoseconds.
    pub fn time(&self) -> i64 {
        self.e.time
    }

    /// Index of the point's measurement in [`Points::measurements`].
    pub fn measurement_index(&self) -> usize {
        self.e.measurement as usize
    }

    /// Asks the CPU to start loading the point's fields (the parsing thread wrote them, so
    /// they are rarely in this core's cache).
    #[inline]
    pub fn prefetch_fields(&self) {
        crate::engine::point::prefetch_slice(self.field_slice());
    }

    /// The series id, computed when the line was parsed.
    pub fn series_id(&self) -> SeriesId {
        self.e.id
    }

    /// Index of the point's field keys in [`Points::layouts`], if they have one.
    pub fn layout_index(&self) -> Option<usize> {
        (self.e.layout != NO_LAYOUT).then_some(self.e.layout as usize)
    }

    fn tag_slice(&self) -> &[(Span, Span)] {
        let (s, n) = self.e.tags;
        self.p
            .tags
            .get(s as usize..(s + n) as usize)
            .unwrap_or_default()
    }

    fn field_slice(&self) -> &[(Span, Val)] {
        let (s, n) = self.e.fields;
        self.p
            .fields
            .get(s as usize..(s + n) as usize)
            .unwrap_or_default()
    }
}

impl LineView for PointRef<'_> {
    #[inline]
    fn measurement(&self) -> &str {
        self.p
            .measurement_names
            .get(self.e.measurement as usize)
            .map_or("", |s| s)
    }

    #[inline]
    fn series_key(&self) -> &str {
        self.p.resolve(self.e.key)
    }

    #[inline]
    fn series_id(&self) -> SeriesId {
        self.e.id
    }

    /// Of the tag the write handler was given as the host tag.
    #[inline]
    fn host_hash(&self, _tag: &str) -> u64 {
        self.e.host
    }

    #[inline]
    fn tags(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.tag_slice()
            .iter()
            .map(|(k, v)| (self.p.resolve(*k), self.p.resolve(*v)))
    }

    #[inline]
    fn field_count(&self) -> usize {
        self.e.fields.1 as usize
    }

    #[inline]
    fn fields(&self) -> impl Iterator<Item = (&str, FieldRef<'_>)> {
        self.field_slice()
            .iter()
            .map(|(k, v)| (self.p.resolve(*k), self.value(*v)))
    }

    #[inline]
    fn field_at(&self, i: usize) -> Option<FieldRef<'_>> {
        self.field_slice().get(i).map(|(_, v)| self.value(*v))
    }

    #[inline]
    fn field(&self, name: &str) -> Option<FieldRef<'_>> {
        self.field_slice()
            .iter()
            .find(|(k, _)| k.len as usize == name.len() && self.p.resolve(*k) == name)
            .map(|(_, v)| self.value(*v))
    }

    #[inline]
    fn tag(&self, name: &str) -> Option<&str> {
        self.tag_slice()
            .iter()
            .find(|(k, _)| k.len as usize == name.len() && self.p.resolve(*k) == name)
            .map(|(_, v)| self.p.resolve(*v))
    }
}

impl PointRef<'_> {
    #[inline]
    fn value(&self, v: Val) -> FieldRef<'_> {
        match v {
            Val::Float(f) => FieldRef::Float(f),
            Val::Int(i) => FieldRef::Int(i),
            Val::UInt(u) => FieldRef::UInt(u),
            Val::Bool(b) => FieldRef::Bool(b),
            Val::Str(s) => FieldRef::Str(self.p.resolve(s)),
        }
    }
}

/// Distinct field-key layouts a reader gives ids to; lines of others compare names.
const MAX_LAYOUT_IDS: usize = 65_536;

/// Ids of field-key layouts that stay the same across batches, for one reader of batches (an
/// engine shard): the engine caches per series which fields it takes from a line, and checks
/// the cache with this id instead of comparing names.
#[derive(Debug, Default)]
pub struct LayoutIds {
    ids: FxHashMap<Box<[Box<str>]>, u32>,
    /// The id of each layout of the current batch.
    current: Vec<Option<u32>>,
}

impl LayoutIds {
    /// Gives ids to the layouts of `batch`, whose points are read next.
    pub fn start_batch(&mut self, batch: &Points) {
        self.current.clear();
        for l in batch.layouts() {
            let next = self.ids.len() as u32;
            let id = match self.ids.get(l) {
                Some(&id) => Some(id),
                None if self.ids.len() < MAX_LAYOUT_IDS => {
                    self.ids.insert(l.into(), next);
                    Some(next)
                }
                None => None,
            };
            self.current.push(id);
        }
    }

    /// A point of the current batch with the id of its field keys.
    pub fn point<'a>(&self, p: PointRef<'a>) -> LaidOut<'a> {
        let layout = p
            .layout_index()
            .and_then(|i| self.current.get(i).copied().flatten());
        LaidOut { p, layout }
    }
}

/// A point of a batch with its [`LayoutIds`] id.
pub struct LaidOut<'a> {
    p: PointRef<'a>,
    layout: Option<u32>,
}

impl LineView for LaidOut<'_> {
    #[inline]
    fn measurement(&self) -> &str {
        self.p.measurement()
    }

    #[inline]
    fn series_key(&self) -> &str {
        self.p.series_key()
    }

    #[inline]
    fn series_id(&self) -> SeriesId {
        self.p.series_id()
    }

    #[inline]
    fn host_hash(&self, tag: &str) -> u64 {
        self.p.host_hash(tag)
    }

    #[inline]
    fn tags(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.p.tags()
    }

    #[inline]
    fn field_count(&self) -> usize {
        self.p.field_count()
    }

    #[inline]
    fn fields(&self) -> impl Iterator<Item = (&str, FieldRef<'_>)> {
        self.p.fields()
    }

    #[inline]
    fn field_at(&self, i: usize) -> Option<FieldRef<'_>> {
        self.p.field_at(i)
    }

    #[inline]
    fn field(&self, name: &str) -> Option<FieldRef<'_>> {
        self.p.field(name)
    }

    #[inline]
    fn tag(&self, name: &str) -> Option<&str> {
        self.p.tag(name)
    }

    #[inline]
    fn field_layout(&self) -> Option<u32> {
        self.layout
    }
}

/// Spare [`Points`] vectors for reuse, bounded in number.
#[derive(Debug, Default)]
pub struct PointsPool {
    spare: Mutex<Vec<Points>>,
    /// Buffers of request bodies whose batches were evaluated: a body read into one of them
    /// lands in memory that is already mapped, instead of new pages the kernel must fault in
    /// and zero (a few percent of the ingest path at a megabyte per request).
    bodies: Mutex<Vec<Vec<u8>>>,
}

/// Spare batches kept at most: one per request in flight from a typical fleet's agents, so
/// that handlers reuse vectors request after request instead of growing new ones; each holds
/// about 1.5 MB after a 5,000-line Telegraf body, so more would only hold memory.
const POOL_SIZE: usize = 8;

/// A spare batch whose vectors grew past this many bytes is dropped rather than kept, so one
/// huge request does not pin its memory.
const POOL_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Spare body buffers kept at most (one per request in flight from a typical fleet's agents),
/// each at most this big.
const BODY_POOL_SIZE: usize = 8;
const BODY_POOL_MAX_BYTES: usize = 4 * 1024 * 1024;

impl PointsPool {
    /// An empty pool.
    pub const fn new() -> PointsPool {
        PointsPool {
            spare: Mutex::new(Vec::new()),
            bodies: Mutex::new(Vec::new()),
        }
    }

    /// A spare batch, if any.
    pub fn take(&self) -> Option<Points> {
        self.spare.lock().ok()?.pop()
    }

    /// An empty buffer for a body of `len` bytes: a spare one that holds it without being
    /// much larger (a batch's memory is counted against the queue's byte limit by capacity,
    /// so a small body must not sit in a large spare), else a new one.
    pub fn take_body(&self, len: usize) -> Vec<u8> {
        let fits = |b: &Vec<u8>| b.capacity() >= len && b.capacity() <= len * 2 + 65536;
        self.bodies
            .lock()
            .ok()
            .and_then(|mut b| {
                let i = b.iter().position(fits)?;
                Some(b.swap_remove(i))
            })
            .unwrap_or_else(|| Vec::with_capacity(len))
    }

    /// Keeps a body buffer for a later request, unless the pool is full or it is large.
    pub fn put_body(&self, mut body: Vec<u8>) {
        if body.capacity() == 0 || body.capacity() > BODY_POOL_MAX_BYTES {
            return;
        }
        body.clear();
        if let Ok(mut b) = self.bodies.lock()
            && b.len() < BODY_POOL_SIZE
        {
            b.push(body);
        }
    }

    /// Keeps `p`'s vectors, and the buffer of its text, for a later request.
    pub fn put(&self, mut p: Points) {
        self.put_body(std::mem::take(&mut p.text).into_bytes());
        p.clear();
        if p.bytes() > POOL_MAX_BYTES {
            return;
        }
        if let Ok(mut s) = self.spare.lock()
            && s.len() < POOL_SIZE
        {
            s.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::line_protocol::parse_line;

    fn owned(p: PointRef<'_>) -> (String, String, Vec<(String, String)>, Vec<String>) {
        (
            p.measurement().to_string(),
            p.series_key().to_string(),
            p.tags()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            p.fields().map(|(k, v)| format!("{k}={v:?}")).collect(),
        )
    }

    #[test]
    fn points_read_back_as_parsed_with_escapes_unescaped() {
        let text =
            "cpu,host=a usage=1.5,n=3i,u=7u,ok=t 10\nmy\\ m,t\\=k=v\\,1 s=\"a \\\"q\\\"\",x=1\n";
        let mut pts = Points::new(None);
        let mut at = 0;
        for (i, line) in text.lines().enumerate() {
            let parsed = parse_line(line, 1).unwrap();
            assert!(pts.push(line, at, &parsed, i as i64, 0));
            at += line.len() + 1;
        }
        pts.set_text(text.to_string());
        let got: Vec<_> = pts.iter().map(owned).collect();
        assert_eq!(got[0].0, "cpu");
        assert_eq!(got[0].1, "cpu,host=a");
        assert_eq!(got[0].2, [("host".to_string(), "a".to_string())]);
        assert_eq!(
            got[0].3,
            ["usage=Float(1.5)", "n=Int(3)", "u=UInt(7)", "ok=Bool(true)"]
        );
        assert_eq!(got[1].0, "my m");
        assert_eq!(got[1].1, "my\\ m,t\\=k=v\\,1");
        assert_eq!(got[1].2, [("t=k".to_string(), "v,1".to_string())]);
        assert_eq!(got[1].3, ["s=Str(\"a \\\"q\\\"\")", "x=Float(1.0)"]);
        let first = pts.iter().next().unwrap();
        assert_eq!(first.series_id(), crate::engine::series_id("cpu,host=a"));
        assert_eq!(pts.measurements().collect::<Vec<_>>(), ["cpu", "my m"]);
        let layouts: Vec<Vec<&str>> = pts
            .layouts()
            .map(|l| l.iter().map(|k| &**k).collect())
            .collect();
        assert_eq!(layouts, [vec!["usage", "n", "u", "ok"], vec!["s", "x"]]);
        assert_eq!(pts.iter().nth(1).unwrap().layout_index(), Some(1));
        assert_eq!(
            pts.iter().next().unwrap().field_at(1),
            Some(FieldRef::Int(3))
        );
        assert_eq!(pts.iter().nth(1).unwrap().time(), 1);
    }

    #[test]
    fn a_spare_body_buffer_is_taken_only_when_it_fits_the_body() {
        let pool = PointsPool::default();
        pool.put_body(Vec::with_capacity(4 << 20));
        // A small body does not sit in the 4 MiB spare (it would count 4 MiB against the
        // queue's byte limit): it gets a buffer of its own size and the spare stays.
        let small = pool.take_body(1000);
        assert!(
            (1000..=2 * 1000 + 65536).contains(&small.capacity()),
            "{}",
            small.capacity()
        );
        // A body the spare holds takes it.
        let large = pool.take_body(3 << 20);
        assert_eq!(large.capacity(), 4 << 20);
        // The pool is empty now: a new buffer of the asked size.
        assert_eq!(pool.take_body(3 << 20).capacity(), 3 << 20);
    }

    #[test]
    fn the_pool_reuses_vectors_and_drops_the_text() {
        let pool = PointsPool::default();
        let mut pts = Points::new(pool.take());
        let line = "m v=1 1";
        assert!(pts.push(line, 0, &parse_line(line, 1).unwrap(), 1, 0));
        pts.set_text(line.to_string());
        let cap = pts.fields.capacity();
        pool.put(pts);
        let again = Points::new(pool.take());
        assert!(again.is_empty());
        assert_eq!(again.fields.capacity(), cap);
        assert_eq!(again.text(), "");
    }
}
