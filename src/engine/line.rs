//! What the engine reads from an incoming point, whatever form it arrives in: a line parsed in
//! place ([`ParsedLine`], used by `alertd test` and recordings) or a point the write handler
//! already parsed into a batch (the service), so no line is parsed twice.

use crate::ingest::line_protocol::{FieldValue, ParsedLine};
use crate::rules::lambda::Value;

/// A borrowed field value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldRef<'a> {
    /// A float.
    Float(f64),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A boolean.
    Bool(bool),
    /// A string, unescaped.
    Str(&'a str),
}

impl FieldRef<'_> {
    /// The engine's value; unsigned values above `i64::MAX` become floats.
    #[inline]
    pub fn to_value(self) -> Value {
        match self {
            FieldRef::Float(f) => Value::Float(f),
            FieldRef::Int(i) => Value::Int(i),
            FieldRef::UInt(u) => i64::try_from(u).map_or(Value::Float(u as f64), Value::Int),
            FieldRef::Bool(b) => Value::Bool(b),
            FieldRef::Str(s) => Value::Str(s.into()),
        }
    }
}

impl<'a> From<&'a FieldValue<'_>> for FieldRef<'a> {
    #[inline]
    fn from(v: &'a FieldValue<'_>) -> FieldRef<'a> {
        match v {
            FieldValue::Float(f) => FieldRef::Float(*f),
            FieldValue::Int(i) => FieldRef::Int(*i),
            FieldValue::UInt(u) => FieldRef::UInt(*u),
            FieldValue::Bool(b) => FieldRef::Bool(*b),
            FieldValue::Str(s) => FieldRef::Str(s.as_str()),
        }
    }
}

/// One point as the engine reads it.
pub trait LineView {
    /// The measurement, unescaped.
    fn measurement(&self) -> &str;
    /// The raw (still escaped) measurement and tag set, the series-cache key.
    fn series_key(&self) -> &str;
    /// [`super::series_id`] of [`LineView::series_key`].
    fn series_id(&self) -> super::SeriesId {
        super::series_id(self.series_key())
    }
    /// Tags in the order written, unescaped.
    fn tags(&self) -> impl Iterator<Item = (&str, &str)> + Clone;
    /// Number of fields.
    fn field_count(&self) -> usize;
    /// Fields in the order written, keys unescaped.
    fn fields(&self) -> impl Iterator<Item = (&str, FieldRef<'_>)>;
    /// The first field named `name`.
    fn field(&self, name: &str) -> Option<FieldRef<'_>> {
        self.fields().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
    /// The value of tag `name`.
    fn tag(&self, name: &str) -> Option<&str> {
        self.tags().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
    /// The value of the `i`-th field.
    fn field_at(&self, i: usize) -> Option<FieldRef<'_>>;
    /// An id shared by exactly the lines whose field keys are the same, in the same order, if
    /// known. Ids come from one source of lines (an engine shard's); None compares names.
    fn field_layout(&self) -> Option<u32> {
        None
    }
    /// [`super::host_hash`] of the value of the host tag `tag` (the configured `[hosts] tag`;
    /// lines parsed by the write handler carry it already).
    fn host_hash(&self, tag: &str) -> u64 {
        super::host_hash(self.tag(tag).unwrap_or(""))
    }
}

impl LineView for ParsedLine<'_> {
    #[inline]
    fn measurement(&self) -> &str {
        self.measurement.as_str()
    }

    #[inline]
    fn series_key(&self) -> &str {
        self.series_key
    }

    #[inline]
    fn tags(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    #[inline]
    fn field_count(&self) -> usize {
        self.fields.len()
    }

    #[inline]
    fn fields(&self) -> impl Iterator<Item = (&str, FieldRef<'_>)> {
        self.fields
            .iter()
            .map(|(k, v)| (k.as_str(), FieldRef::from(v)))
    }

    #[inline]
    fn field_at(&self, i: usize) -> Option<FieldRef<'_>> {
        self.fields.get(i).map(|(_, v)| FieldRef::from(v))
    }
}
