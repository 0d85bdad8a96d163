//! InfluxDB line protocol parsing: the ingest hot path.
//!
//! This module owns the grammar of InfluxDB 1.x/2.x line protocol
//! (`measurement[,tag=value...] field=value[,field=value...] [timestamp]`), turning
//! text into borrowed [`ParsedLine`]s, splitting a request body or recording into
//! records ([`parse_lines`], [`split_lines`]), and the timestamp [`Precision`]s that
//! the write endpoints accept. It does not apply precision, pick a database or route
//! points anywhere: callers do that with the raw values returned here.
//!
//! Parsing is zero-copy: names and string values borrow from the input, and are copied
//! only when they contain a backslash escape. Lines without `\` or `"` (nearly every
//! line Telegraf sends) take a fast path that scans each byte about once and parses
//! numbers while it scans; everything else, and every error, goes through the general
//! parser, so error positions and messages come from one place. In debug builds (tests,
//! fuzzing) every line the fast path accepts is parsed again by the general parser and
//! the two results must match, which makes debug-build parsing about twice as slow.
//!
//! Errors carry the physical line and byte column where the problem was found; one bad
//! line never affects the others (InfluxDB's partial-write behaviour).
//!
//! Escaping rules, as InfluxDB documents them:
//! - measurement: `\,` and `\ `;
//! - tag keys, tag values and field keys: `\,`, `\=` and `\ `;
//! - string field values (in double quotes): `\"` and `\\`.
//!
//! A backslash before any other character (another backslash included, outside string
//! values) is an ordinary character and is kept.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::str::FromStr;

use memchr::{memchr, memchr2, memchr3};
use smallvec::SmallVec;
use thiserror::Error;

/// Longest string field value accepted, in bytes after unescaping (64 KiB, as InfluxDB).
pub const MAX_STRING_FIELD_BYTES: usize = 64 * 1024;

/// Longest line accepted, in bytes (1 MiB). Longer lines are rejected with
/// [`LineErrorKind::LineTooLong`] without being parsed.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// How far past an opening quote the line splitter looks for the closing quote before
/// deciding the quote is unterminated. An escaped value takes at most twice its
/// unescaped length, so no acceptable string value is longer than this.
const STRING_SCAN_WINDOW: usize = 2 * MAX_STRING_FIELD_BYTES + 2;

/// Longest value quoted back in an error message, in bytes.
const MAX_QUOTED_IN_ERROR: usize = 64;

// ---------------------------------------------------------------------------------------
// Public data types
// ---------------------------------------------------------------------------------------

/// A name or string value from a line: borrowed from the input when it had no escapes,
/// owned (with the escapes removed) when it had.
#[derive(Clone)]
pub enum EscStr<'a> {
    /// Text exactly as it appears in the input.
    Borrowed(&'a str),
    /// Unescaped copy of text that contained backslash escapes.
    Owned(Box<str>),
}

impl<'a> EscStr<'a> {
    /// The text, with escapes removed.
    #[inline]
    pub fn as_str(&self) -> &str {
        match self {
            EscStr::Borrowed(s) => s,
            EscStr::Owned(s) => s,
        }
    }

    /// Whether the text borrows from the input (no escapes were present).
    #[inline]
    pub fn is_borrowed(&self) -> bool {
        matches!(self, EscStr::Borrowed(_))
    }

    /// Converts into an owned string, copying only if borrowed.
    pub fn into_owned(self) -> Box<str> {
        match self {
            EscStr::Borrowed(s) => s.into(),
            EscStr::Owned(s) => s,
        }
    }

    /// Detaches from the input's lifetime by copying borrowed text.
    pub fn into_static(self) -> EscStr<'static> {
        EscStr::Owned(self.into_owned())
    }
}

impl Deref for EscStr<'_> {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for EscStr<'_> {
    #[inline]
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for EscStr<'_> {
    #[inline]
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for EscStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for EscStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'b> PartialEq<EscStr<'b>> for EscStr<'_> {
    /// Compares the text only: a borrowed and an owned value with equal text are equal.
    #[inline]
    fn eq(&self, other: &EscStr<'b>) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for EscStr<'_> {}

impl PartialEq<&str> for EscStr<'_> {
    #[inline]
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for EscStr<'_> {
    #[inline]
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl Hash for EscStr<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl<'a> From<&'a str> for EscStr<'a> {
    fn from(s: &'a str) -> Self {
        EscStr::Borrowed(s)
    }
}

impl From<String> for EscStr<'_> {
    fn from(s: String) -> Self {
        EscStr::Owned(s.into_boxed_str())
    }
}

/// A field value. Integers are written with an `i` suffix, unsigned integers with `u`,
/// strings in double quotes; a bare number is a float.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// A finite 64-bit float (`1`, `-1.5`, `2e3`). NaN and infinities are rejected.
    Float(f64),
    /// A signed integer (`42i`).
    Int(i64),
    /// An unsigned integer (`42u`).
    UInt(u64),
    /// A boolean (`t`, `T`, `true`, `True`, `TRUE`, `f`, `F`, `false`, `False`, `FALSE`).
    Bool(bool),
    /// A string (`"text"`), unescaped.
    Str(EscStr<'a>),
}

impl FieldValue<'_> {
    /// The value as a float, for numeric values (integers are converted, possibly
    /// rounding); `None` for booleans and strings.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            FieldValue::Float(v) => Some(v),
            FieldValue::Int(v) => Some(v as f64),
            FieldValue::UInt(v) => Some(v as f64),
            FieldValue::Bool(_) | FieldValue::Str(_) => None,
        }
    }

    /// The InfluxDB name of the value's type: `float`, `integer`, `unsigned`, `boolean`
    /// or `string`.
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Float(_) => "float",
            FieldValue::Int(_) => "integer",
            FieldValue::UInt(_) => "unsigned",
            FieldValue::Bool(_) => "boolean",
            FieldValue::Str(_) => "string",
        }
    }
}

/// One point parsed from a line, borrowing from the input.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedLine<'a> {
    /// The measurement name, unescaped.
    pub measurement: EscStr<'a>,
    /// raw, still-escaped text of measurement + tag set (everything before the first
    /// unescaped space), e.g. "disk,host=a,path=/" — used by callers as a series-cache key
    pub series_key: &'a str,
    /// Tag keys and values in the order written, unescaped. Keys are unique.
    pub tags: SmallVec<[(EscStr<'a>, EscStr<'a>); 8]>,
    /// Field keys and values in the order written (at least one). A key written twice
    /// appears twice; [`ParsedLine::field`] returns the last one, as InfluxDB keeps it.
    pub fields: SmallVec<[(EscStr<'a>, FieldValue<'a>); 8]>,
    /// The timestamp exactly as written (no precision applied), if present.
    pub timestamp: Option<i64>,
}

impl<'a> ParsedLine<'a> {
    /// The value of tag `key`, if present.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of field `key`, if present (the last one if written more than once).
    pub fn field(&self, key: &str) -> Option<&FieldValue<'a>> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }
}

/// Why a line was rejected, with its position.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct LineError {
    /// 1-based physical line number of the problem.
    pub line: usize,
    /// 1-based byte column of the problem within that physical line.
    pub column: usize,
    /// What is wrong.
    pub kind: LineErrorKind,
}

/// What is wrong with a rejected line. Names and values quoted in messages are
/// unescaped and cut to 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LineErrorKind {
    /// The line starts with a comma or space, or is empty.
    #[error("missing measurement")]
    MissingMeasurement,
    /// A tag has an empty key (`cpu,=a` or `cpu,,host=a`).
    #[error("missing tag key")]
    MissingTagKey,
    /// A tag key without `=` or with an empty value.
    #[error("tag key '{key}' has no value")]
    MissingTagValue {
        /// The tag key.
        key: String,
    },
    /// A tag value containing `=` that is not escaped as `\=`.
    #[error("tag value for '{key}' contains an unescaped '='")]
    UnescapedEqualsInTagValue {
        /// The tag key.
        key: String,
    },
    /// The same tag key twice in one line.
    #[error("duplicate tag key '{key}'")]
    DuplicateTagKey {
        /// The repeated tag key.
        key: String,
    },
    /// Nothing after the measurement and tags.
    #[error("missing field set")]
    MissingFieldSet,
    /// A field has an empty key (`m =1` or `m a=1,=2`).
    #[error("missing field key")]
    MissingFieldKey,
    /// A field key without `=`, or with nothing after it.
    #[error("field '{key}' has no value")]
    MissingFieldValue {
        /// The field key.
        key: String,
    },
    /// A field value that is not a number, boolean or quoted string.
    #[error("invalid field value for field '{key}': '{value}'")]
    InvalidFieldValue {
        /// The field key.
        key: String,
        /// The value as written.
        value: String,
    },
    /// A numeric field value that does not fit its type (or a float beyond ±1.8e308).
    #[error("field value for field '{key}' is out of range: '{value}'")]
    FieldValueOutOfRange {
        /// The field key.
        key: String,
        /// The value as written.
        value: String,
    },
    /// A string field value with no closing quote.
    #[error("unterminated string field value for field '{key}'")]
    UnterminatedString {
        /// The field key.
        key: String,
    },
    /// A string field value longer than [`MAX_STRING_FIELD_BYTES`].
    #[error("string field value for field '{key}' is {len} bytes, over the limit of {max}")]
    StringTooLong {
        /// The field key.
        key: String,
        /// Length of the unescaped value in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A timestamp that is not an integer.
    #[error("invalid timestamp '{value}'")]
    InvalidTimestamp {
        /// The timestamp as written.
        value: String,
    },
    /// A timestamp that does not fit in a signed 64-bit integer.
    #[error("timestamp '{value}' is out of range")]
    TimestampOutOfRange {
        /// The timestamp as written.
        value: String,
    },
    /// More text after the timestamp.
    #[error("unexpected text after the timestamp: '{text}'")]
    TrailingText {
        /// The extra text.
        text: String,
    },
    /// A line longer than [`MAX_LINE_BYTES`].
    #[error("line too long: {len} bytes, over the limit of {max}")]
    LineTooLong {
        /// Length of the line in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The line is not valid UTF-8 (only from [`parse_lines_bytes`]).
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A Kapacitor `.srpl` recording whose database / retention policy / point triple
    /// is incomplete (reported by the recording reader).
    #[error("malformed srpl entry: {reason}")]
    MalformedSrplEntry {
        /// What is missing.
        reason: &'static str,
    },
}

// ---------------------------------------------------------------------------------------
// Precision
// ---------------------------------------------------------------------------------------

/// Unit of the timestamps in a write, as given by the `precision` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// `ns` or `n` (the default).
    #[default]
    Nanoseconds,
    /// `us`, `u` or `µ`.
    Microseconds,
    /// `ms`.
    Milliseconds,
    /// `s`.
    Seconds,
    /// `m`.
    Minutes,
    /// `h`.
    Hours,
}

impl Precision {
    /// Nanoseconds in one unit.
    pub const fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Hours => 3_600_000_000_000,
        }
    }

    /// Converts a timestamp in this unit to nanoseconds; `None` if the result would
    /// overflow an `i64` (beyond about ±292 years from 1970).
    #[inline]
    pub fn to_nanos(self, ts: i64) -> Option<i64> {
        ts.checked_mul(self.nanos_per_unit())
    }

    /// The canonical spelling: `ns`, `us`, `ms`, `s`, `m` or `h`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "ns",
            Precision::Microseconds => "us",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
            Precision::Minutes => "m",
            Precision::Hours => "h",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown precision name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid precision '{value}': expected one of ns, us, ms, s, m, h")]
pub struct PrecisionError {
    /// The rejected text.
    pub value: String,
}

impl FromStr for Precision {
    type Err = PrecisionError;

    /// Accepts the InfluxDB 1.x and 2.x spellings: `ns`/`n`, `us`/`u`/`µ`/`µs`, `ms`,
    /// `s`, `m`, `h` (case-sensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "ns" | "n" => Precision::Nanoseconds,
            // U+00B5 MICRO SIGN and U+03BC GREEK SMALL LETTER MU look the same.
            "us" | "u" | "\u{b5}" | "\u{b5}s" | "\u{3bc}" | "\u{3bc}s" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            _ => {
                return Err(PrecisionError {
                    value: s.to_owned(),
                });
            }
        })
    }
}

// ---------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------

/// Parses one line. `line_no` (1-based) is used for error positions only.
///
/// Leading spaces and tabs and trailing whitespace (a `\r\n` included) are ignored.
/// The line is parsed as written: comments and blank lines are the business of
/// [`parse_lines`], and here give errors.
///
/// # Errors
///
/// A [`LineError`] naming the first problem found and its position: the physical line
/// (`line_no` plus any newlines inside string values before it) and the 1-based byte
/// column within that line.
pub fn parse_line(line: &str, line_no: usize) -> Result<ParsedLine<'_>, LineError> {
    let plain = memchr2(b'\\', b'"', line.as_bytes()).is_none();
    parse_record(line, line_no, plain)
}

/// Parses every point in `buf`, yielding `(line number, result)` for each.
///
/// Blank lines, whitespace-only lines and lines whose first non-blank character is `#`
/// are skipped; `\r\n` endings are accepted. A newline inside a quoted string field value
/// belongs to the value, so a point can span physical lines; the line number yielded is
/// the point's first physical line, and line numbers always count physical lines. An
/// error in one line does not affect the others.
pub fn parse_lines(buf: &str) -> Lines<'_> {
    Lines::with_first_line(buf, 1)
}

/// Like [`parse_lines`] for input that may not be valid UTF-8: each line is checked on
/// its own, and one with invalid UTF-8 yields [`LineErrorKind::InvalidUtf8`] while the
/// others parse as usual.
pub fn parse_lines_bytes(buf: &[u8]) -> Lines<'_> {
    Lines {
        text: None,
        split: Splitter::new(buf, 1),
    }
}

/// Splits `buf` into points exactly as [`parse_lines`] does, without parsing them:
/// yields `(first physical line number, line text)` with the line ending removed. Use it
/// to cut work into pieces, then [`parse_line`] each piece.
pub fn split_lines(buf: &str) -> SplitLines<'_> {
    SplitLines {
        text: buf,
        split: Splitter::new(buf.as_bytes(), 1),
    }
}

/// Iterator returned by [`parse_lines`] and [`parse_lines_bytes`].
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    /// The input as text, when it is known to be valid UTF-8.
    text: Option<&'a str>,
    split: Splitter<'a>,
}

impl<'a> Lines<'a> {
    /// Parses `buf` whose first line is line number `first_line` of a larger input, so
    /// that a piece cut out of a bigger buffer reports the bigger buffer's line numbers.
    pub fn with_first_line(buf: &'a str, first_line: usize) -> Self {
        Lines {
            text: Some(buf),
            split: Splitter::new(buf.as_bytes(), first_line),
        }
    }

    /// Byte offset in the input where the next point (or skipped line) starts.
    pub fn offset(&self) -> usize {
        self.split.pos
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, Result<ParsedLine<'a>, LineError>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let r = self.split.next_record()?;
        let result = match self.text {
            Some(text) => parse_record(&text[r.start..r.end], r.line, r.plain),
            None => {
                let bytes = &self.split.b[r.start..r.end];
                match std::str::from_utf8(bytes) {
                    Ok(s) => parse_record(s, r.line, r.plain),
                    Err(e) => Err(error_at(
                        bytes,
                        r.line,
                        e.valid_up_to(),
                        LineErrorKind::InvalidUtf8,
                    )),
                }
            }
        };
        Some((r.line, result))
    }
}

/// Iterator returned by [`split_lines`].
#[derive(Debug, Clone)]
pub struct SplitLines<'a> {
    text: &'a str,
    split: Splitter<'a>,
}

impl<'a> SplitLines<'a> {
    /// Byte offset in the input where the next point (or skipped line) starts.
    pub fn offset(&self) -> usize {
        self.split.pos
    }

    /// Physical line number at [`SplitLines::offset`].
    pub fn line(&self) -> usize {
        self.split.line
    }
}

impl<'a> Iterator for SplitLines<'a> {
    type Item = (usize, &'a str);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let r = self.split.next_record()?;
        Some((r.line, &self.text[r.start..r.end]))
    }
}

// ---------------------------------------------------------------------------------------
// Splitting a buffer into records
// ---------------------------------------------------------------------------------------

/// One point's text within the buffer: `start..end` excludes the line ending.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// Physical line number of `start`.
    pub(crate) line: usize,
    /// The text has no backslash and no double quote, so the fast path applies.
    pub(crate) plain: bool,
}

/// Cuts a buffer into records, skipping blank lines and comments.
#[derive(Debug, Clone)]
pub(crate) struct Splitter<'a> {
    pub(crate) b: &'a [u8],
    /// Offset where the next physical line starts.
    pub(crate) pos: usize,
    /// Physical line number at `pos`.
    pub(crate) line: usize,
}

impl<'a> Splitter<'a> {
    pub(crate) fn new(b: &'a [u8], first_line: usize) -> Self {
        Splitter {
            b,
            pos: 0,
            line: first_line,
        }
    }

    /// The next record, skipping blank and comment lines.
    #[inline]
    pub(crate) fn next_record(&mut self) -> Option<Record> {
        let b = self.b;
        let n = b.len();
        loop {
            let pos = self.pos;
            if pos >= n {
                return None;
            }
            let mut j = pos;
            while j < n && matches!(b[j], b' ' | b'\t' | b'\r') {
                j += 1;
            }
            if j == n {
                self.pos = n;
                return None;
            }
            match b[j] {
                b'\n' => {
                    self.pos = j + 1;
                    self.line += 1;
                }
                b'#' => match memchr(b'\n', &b[j..]) {
                    Some(k) => {
                        self.pos = j + k + 1;
                        self.line += 1;
                    }
                    None => {
                        self.pos = n;
                        return None;
                    }
                },
                _ => return Some(self.take_record()),
            }
        }
    }

    /// The record starting at `pos`, which must be before the end of the buffer; the
    /// line is taken as a point whatever it holds (no comment or blank-line skipping).
    #[inline]
    pub(crate) fn take_record(&mut self) -> Record {
        let b = self.b;
        let n = b.len();
        let start = self.pos;
        let line = self.line;
        let (end, next, plain) = match memchr3(b'\n', b'"', b'\\', &b[start..]) {
            Some(k) if b[start + k] == b'\n' => (start + k, start + k + 1, true),
            None => (n, n, true),
            Some(_) => {
                let (end, next) = split_slow(b, start);
                self.line += memchr::memchr_iter(b'\n', &b[start..end]).count();
                (end, next, false)
            }
        };
        self.pos = next;
        if next > end {
            self.line += 1;
        }
        let end = if end > start && b[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        Record {
            start,
            end,
            line,
            plain,
        }
    }
}

/// Finds the end of the record starting at `start` when it may hold quoted strings
/// (whose newlines belong to the value) or escapes. Returns `(end, next)`: the record is
/// `start..end`, the next one starts at `next`.
///
/// Only double quotes matter: a newline ends the record unless it is inside a string
/// field value, and a string value is a `"` right after an `=` that no backslash escapes,
/// past the series key (which ends at the first unescaped space). For valid lines that is
/// exactly where the parser finds string values; for invalid ones the record only needs
/// to end somewhere, and the parser reports the error.
fn split_slow(b: &[u8], start: usize) -> (usize, usize) {
    let n = b.len();
    let at_newline = |i: usize| (i, i + 1);
    let mut i = start;
    while i < n && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    // Series key: up to the first space not escaped by a backslash.
    loop {
        i = find3(b, i, n, b' ', b'\n', b'\\');
        if i == n {
            return (n, n);
        }
        match b[i] {
            b' ' => break,
            b'\n' => return at_newline(i),
            _ => {
                i += if i + 1 < n && is_key_escapable(b[i + 1]) {
                    2
                } else {
                    1
                }
            }
        }
    }
    // Field set and timestamp.
    loop {
        let Some(k) = memchr2(b'\n', b'"', &b[i..]) else {
            return (n, n);
        };
        let quote = i + k;
        if b[quote] == b'\n' {
            return at_newline(quote);
        }
        i = quote + 1;
        // A backslash before '=' always escapes it (a backslash is never escaped there).
        if !(quote >= start + 2 && b[quote - 1] == b'=' && b[quote - 2] != b'\\') {
            continue;
        }
        let closed = find_string_end(b, quote + 1, n.min(quote + 1 + STRING_SCAN_WINDOW))
            .map(|(close, _)| close + 1)
            // A string spanning lines that is not followed by what may follow a value
            // is more likely a stray quote that met the next line's opening quote.
            .filter(|&after| {
                after == n
                    || matches!(b[after], b',' | b' ' | b'\t' | b'\r' | b'\n')
                    || memchr(b'\n', &b[quote..after]).is_none()
            });
        match closed {
            Some(after) => i = after,
            None => {
                // Unterminated: end the record at the first newline after the quote
                // so that one stray quote does not swallow the rest of the input.
                return match memchr(b'\n', &b[quote..]) {
                    Some(k) => at_newline(quote + k),
                    None => (n, n),
                };
            }
        }
    }
}

/// Finds the closing quote of a string value whose content starts at `from`, looking no
/// further than `limit`. Returns its index and whether the content has escapes.
#[inline]
fn find_string_end(b: &[u8], from: usize, limit: usize) -> Option<(usize, bool)> {
    let mut j = from;
    let mut escaped = false;
    while j < limit {
        let k = memchr2(b'"', b'\\', &b[j..limit])?;
        let p = j + k;
        if b[p] == b'"' {
            return Some((p, escaped));
        }
        if p + 1 < limit && (b[p + 1] == b'"' || b[p + 1] == b'\\') {
            escaped = true;
            j = p + 2;
        } else {
            j = p + 1;
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// Parsing one record
// ---------------------------------------------------------------------------------------

#[inline]
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Characters a backslash escapes in a measurement.
#[inline]
fn is_measurement_escapable(c: u8) -> bool {
    c == b',' || c == b' '
}

/// Characters a backslash escapes in tag keys, tag values and field keys.
#[inline]
fn is_key_escapable(c: u8) -> bool {
    c == b',' || c == b'=' || c == b' '
}

/// Characters a backslash escapes in string field values.
#[inline]
fn is_string_escapable(c: u8) -> bool {
    c == b'"' || c == b'\\'
}

/// Parses one record. `plain` promises that it holds no `\` and no `"`.
#[inline]
pub(crate) fn parse_record(
    line: &str,
    line_no: usize,
    plain: bool,
) -> Result<ParsedLine<'_>, LineError> {
    let b = line.as_bytes();
    let mut end = b.len();
    while end > 0 && is_space(b[end - 1]) {
        end -= 1;
    }
    if plain
        && end <= MAX_LINE_BYTES
        && let Some(parsed) = fast::parse(&line[..end])
    {
        #[cfg(debug_assertions)]
        check_fast_path(line, end, line_no, &parsed);
        return Ok(parsed);
    }
    general::parse(line, end, line_no)
}

/// In debug builds (tests, fuzzing), every line the fast path accepts is parsed again by
/// the general parser, and both results must agree.
#[cfg(debug_assertions)]
fn check_fast_path<'a>(line: &'a str, end: usize, line_no: usize, fast: &ParsedLine<'a>) {
    let general = general::parse(line, end, line_no);
    assert_eq!(
        Ok(fast),
        general.as_ref(),
        "fast and general parsers disagree on {line:?}"
    );
}

/// Builds an error at byte `offset` of `text`, whose first byte is on `line_no`,
/// translating the offset to a physical line and column.
#[cold]
#[inline(never)]
fn error_at(text: &[u8], line_no: usize, offset: usize, kind: LineErrorKind) -> LineError {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let newlines = memchr::memchr_iter(b'\n', before).count();
    let line_start = memchr::memrchr(b'\n', before).map_or(0, |p| p + 1);
    LineError {
        line: line_no + newlines,
        column: offset - line_start + 1,
        kind,
    }
}

/// `s` cut to at most [`MAX_QUOTED_IN_ERROR`] bytes (on a character boundary), for
/// quoting in an error message.
fn snippet(s: &str) -> String {
    if s.len() <= MAX_QUOTED_IN_ERROR {
        return s.to_owned();
    }
    let mut cut = MAX_QUOTED_IN_ERROR;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &s[..cut])
}

/// Powers of ten that are exact in an `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Largest integer below which every integer is exact in an `f64`.
const F64_EXACT_INT: u64 = 1 << 53;

/// Whether `s` looks like a decimal float (so `inf`, `nan` and the like are refused
/// before `str::parse` sees them).
fn is_float_text(s: &[u8]) -> bool {
    matches!(s.first(), Some(b'0'..=b'9' | b'-' | b'.'))
        && s.iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
}

/// Outcome of parsing an integer.
enum IntError {
    Invalid,
    OutOfRange,
}

/// Parses `-?[0-9]+` as an `i64` with overflow checks.
fn parse_i64(s: &[u8]) -> Result<i64, IntError> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let m = parse_u64_digits(digits)?;
    if neg {
        if m <= i64::MAX as u64 {
            Ok(-(m as i64))
        } else if m == i64::MAX as u64 + 1 {
            Ok(i64::MIN)
        } else {
            Err(IntError::OutOfRange)
        }
    } else {
        i64::try_from(m).map_err(|_| IntError::OutOfRange)
    }
}

/// Parses `[0-9]+` as a `u64` with overflow checks.
fn parse_u64_digits(digits: &[u8]) -> Result<u64, IntError> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(IntError::Invalid);
    }
    let mut m: u64 = 0;
    for &c in digits {
        m = m
            .checked_mul(10)
            .and_then(|m| m.checked_add(u64::from(c - b'0')))
            .ok_or(IntError::OutOfRange)?;
    }
    Ok(m)
}

/// The boolean spellings InfluxDB accepts.
#[inline]
fn parse_bool(s: &[u8]) -> Option<bool> {
    match s {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => Some(true),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => Some(false),
        _ => None,
    }
}

// Byte scanning, eight bytes at a time (SWAR) without unsafe code.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Marks (high bit set) the bytes of `w` equal to `c`. Bytes above a true match may
/// be marked falsely, so only the lowest mark is meaningful.
#[inline(always)]
fn marks(w: u64, c: u8) -> u64 {
    let x = w ^ (ONES * u64::from(c));
    x.wrapping_sub(ONES) & !x & HIGHS
}

#[inline(always)]
fn word(b: &[u8], i: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(bytes)
}

/// Index of the first `c1` or `c2` in `b[i..end]`, or `end`; eight bytes at a time.
#[inline(always)]
fn find2(b: &[u8], mut i: usize, end: usize, c1: u8, c2: u8) -> usize {
    while i + 8 <= end {
        let w = word(b, i);
        let m = marks(w, c1) | marks(w, c2);
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < end && b[i] != c1 && b[i] != c2 {
        i += 1;
    }
    i
}

/// Index of the first `c1`, `c2` or `c3` in `b[i..end]`, or `end`.
#[inline(always)]
fn find3(b: &[u8], mut i: usize, end: usize, c1: u8, c2: u8, c3: u8) -> usize {
    while i + 8 <= end {
        let w = word(b, i);
        let m = marks(w, c1) | marks(w, c2) | marks(w, c3);
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < end && b[i] != c1 && b[i] != c2 && b[i] != c3 {
        i += 1;
    }
    i
}

/// Index of the first `c1`, `c2`, `c3` or `c4` in `b[i..end]`, or `end`.
#[inline(always)]
fn find4(b: &[u8], mut i: usize, end: usize, c1: u8, c2: u8, c3: u8, c4: u8) -> usize {
    while i + 8 <= end {
        let w = word(b, i);
        let m = marks(w, c1) | marks(w, c2) | marks(w, c3) | marks(w, c4);
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < end && b[i] != c1 && b[i] != c2 && b[i] != c3 && b[i] != c4 {
        i += 1;
    }
    i
}

/// The fast path: lines without backslashes or double quotes, so every delimiter is
/// structural. Returns `None` for anything unusual, including every error; the general
/// parser then handles the line (and produces the error message).
mod fast {
    use super::*;

    #[inline]
    pub(super) fn parse(line: &str) -> Option<ParsedLine<'_>> {
        let b = line.as_bytes();
        let n = b.len();
        if matches!(b.first(), None | Some(b' ' | b'\t' | b',')) {
            return None;
        }

        // Measurement: up to the first ',' or ' '.
        let mut i = find2(b, 0, n, b',', b' ');
        if i == n {
            return None;
        }
        let measurement = EscStr::Borrowed(&line[..i]);

        // Tags.
        let mut tags: SmallVec<[(EscStr<'_>, EscStr<'_>); 8]> = SmallVec::new();
        let mut sorted = true;
        while b[i] == b',' {
            let ks = i + 1;
            let j = find3(b, ks, n, b'=', b',', b' ');
            if j == ks || j == n || b[j] != b'=' {
                return None;
            }
            let vs = j + 1;
            let k = find3(b, vs, n, b',', b' ', b'=');
            if k == vs || k == n || b[k] == b'=' {
                return None;
            }
            let key = &line[ks..j];
            if let Some((prev, _)) = tags.last() {
                // Telegraf sorts tags: while keys keep increasing, one comparison proves
                // there is no duplicate; otherwise look at all of them.
                if !sorted || key <= prev.as_str() {
                    if tags.iter().any(|(k2, _)| k2.as_str() == key) {
                        return None;
                    }
                    sorted = false;
                }
            }
            tags.push((EscStr::Borrowed(key), EscStr::Borrowed(&line[vs..k])));
            i = k;
        }
        let sp = i;

        // Fields.
        let mut fields: SmallVec<[(EscStr<'_>, FieldValue<'_>); 8]> = SmallVec::new();
        let mut i = sp + 1;
        loop {
            let ks = i;
            i = find3(b, ks, n, b'=', b',', b' ');
            if i == ks || i == n || b[i] != b'=' {
                return None;
            }
            let key = &line[ks..i];
            let (value, vend) = value(line, i + 1)?;
            fields.push((EscStr::Borrowed(key), value));
            i = vend;
            if i == n {
                return Some(ParsedLine {
                    measurement,
                    series_key: &line[..sp],
                    tags,
                    fields,
                    timestamp: None,
                });
            }
            if b[i] == b' ' {
                break;
            }
            i += 1; // ','
        }

        // Timestamp: the rest of the line (trailing whitespace is already gone).
        let timestamp = int_token(&b[i + 1..])?;
        Some(ParsedLine {
            measurement,
            series_key: &line[..sp],
            tags,
            fields,
            timestamp: Some(timestamp),
        })
    }

    /// Parses `-?[0-9]{1,19}` filling all of `s`, as an `i64`.
    #[inline]
    pub(super) fn int_token(s: &[u8]) -> Option<i64> {
        let neg = s.first() == Some(&b'-');
        let start = usize::from(neg);
        let (m, end) = digits(s, start, s.len(), 0);
        if end != s.len() || end == start || end - start > 19 {
            return None;
        }
        signed(neg, m)
    }

    /// Reads the ASCII digits of `b[i..end]` into `m`, returning the new value and the
    /// index after the last digit. Runs of eight digits are converted at once. The value
    /// wraps on overflow: callers bound the number of digits.
    #[inline(always)]
    fn digits(b: &[u8], mut i: usize, end: usize, mut m: u64) -> (u64, usize) {
        const NIBBLES: u64 = 0xf0f0_f0f0_f0f0_f0f0;
        const ZEROS: u64 = 0x3030_3030_3030_3030;
        while i + 8 <= end {
            let w = word(b, i);
            // Every byte is 0x30..=0x39: high nibble 3, and still 3 after adding 6.
            if w & NIBBLES != ZEROS || w.wrapping_add(0x0606_0606_0606_0606) & NIBBLES != ZEROS {
                break;
            }
            m = m
                .wrapping_mul(100_000_000)
                .wrapping_add(eight_digits(w - ZEROS));
            i += 8;
        }
        while i < end {
            let d = b[i].wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            m = m.wrapping_mul(10).wrapping_add(u64::from(d));
            i += 1;
        }
        (m, i)
    }

    /// The number written by eight digit values (0..=9) packed in `x`, first digit in the
    /// lowest byte: adjacent digits are paired, then pairs combined with one multiply.
    #[inline(always)]
    fn eight_digits(x: u64) -> u64 {
        // Even bytes now hold two-digit numbers: d0d1, d2d3, d4d5, d6d7.
        let x = x.wrapping_mul(10).wrapping_add(x >> 8);
        const MASK: u64 = 0x0000_00ff_0000_00ff;
        // The high halves collect d0d1 * 10^6 + d4d5 * 10^2 and d2d3 * 10^4 + d6d7.
        let a = (x & MASK).wrapping_mul(100 + (1_000_000 << 32));
        let b = ((x >> 16) & MASK).wrapping_mul(1 + (10_000 << 32));
        a.wrapping_add(b) >> 32
    }

    /// Applies a sign to a magnitude, if the result fits.
    #[inline]
    fn signed(neg: bool, m: u64) -> Option<i64> {
        if neg {
            if m <= 1 << 63 {
                Some((m as i64).wrapping_neg())
            } else {
                None
            }
        } else {
            i64::try_from(m).ok()
        }
    }

    #[inline]
    fn is_delim(c: u8) -> bool {
        c == b',' || c == b' '
    }

    /// Parses the value starting at `start` (after `key=`), returning it and the index
    /// of the delimiter (or end of line) after it. Numbers are parsed while scanning.
    /// Returns `None` for strings, invalid values and numbers it cannot do exactly; the
    /// general parser also uses it, falling back to the exact parser on `None`.
    #[inline]
    pub(super) fn value(line: &str, start: usize) -> Option<(FieldValue<'_>, usize)> {
        let b = line.as_bytes();
        let n = b.len();
        let neg = start < n && b[start] == b'-';
        let ds = start + usize::from(neg);
        let (mut m, mut i) = digits(b, ds, n, 0);
        let int_digits = i - ds;
        // End of line acts as a delimiter.
        let next = if i < n { b[i] } else { b' ' };
        match next {
            b'i' | b'u' => {
                // At most 19 digits cannot wrap a u64; longer ones go the slow way.
                if int_digits == 0 || int_digits > 19 || (i + 1 < n && !is_delim(b[i + 1])) {
                    return None;
                }
                let v = if next == b'i' {
                    FieldValue::Int(signed(neg, m)?)
                } else if neg {
                    return None;
                } else {
                    FieldValue::UInt(m)
                };
                Some((v, i + 1))
            }
            b',' | b' ' => {
                if int_digits == 0 {
                    return None;
                }
                if int_digits <= 15 {
                    let v = m as f64;
                    Some((FieldValue::Float(if neg { -v } else { v }), i))
                } else {
                    float_slow(line, start)
                }
            }
            b'.' => {
                let fs = i + 1;
                (m, i) = digits(b, fs, n, m);
                let frac_digits = i - fs;
                let digits = int_digits + frac_digits;
                if digits == 0 {
                    return None;
                }
                if i < n && !is_delim(b[i]) {
                    // An exponent, or garbage.
                    return float_slow(line, start);
                }
                // Exact mantissa divided by an exact power of ten: IEEE division rounds
                // once, giving the correctly rounded value (what `str::parse` returns).
                if digits <= 19 && m <= F64_EXACT_INT && frac_digits < POW10.len() {
                    let v = m as f64 / POW10[frac_digits];
                    Some((FieldValue::Float(if neg { -v } else { v }), i))
                } else {
                    float_slow(line, start)
                }
            }
            b'e' | b'E' => float_slow(line, start),
            _ => {
                if neg || int_digits != 0 {
                    return None;
                }
                let mut j = start;
                while j < n && !is_delim(b[j]) {
                    j += 1;
                }
                parse_bool(&b[start..j]).map(|v| (FieldValue::Bool(v), j))
            }
        }
    }

    /// A float that needs the full parser: the token from `start` to the next delimiter.
    #[cold]
    fn float_slow(line: &str, start: usize) -> Option<(FieldValue<'_>, usize)> {
        let b = line.as_bytes();
        let end = b[start..]
            .iter()
            .position(|&c| is_delim(c))
            .map_or(b.len(), |p| start + p);
        let text = &b[start..end];
        if !is_float_text(text) {
            return None;
        }
        let v: f64 = line[start..end].parse().ok()?;
        v.is_finite().then_some((FieldValue::Float(v), end))
    }
}

/// The general parser: any line, escapes and quoted strings included, with error
/// positions.
mod general {
    use super::*;

    /// Parses `line[..end]` (`end` excludes trailing whitespace).
    pub(super) fn parse(
        line: &str,
        end: usize,
        line_no: usize,
    ) -> Result<ParsedLine<'_>, LineError> {
        if end > MAX_LINE_BYTES {
            let kind = LineErrorKind::LineTooLong {
                len: end,
                max: MAX_LINE_BYTES,
            };
            return Err(error_at(line.as_bytes(), line_no, MAX_LINE_BYTES, kind));
        }
        let line = &line[..end];
        let b = line.as_bytes();
        let fail = |offset: usize, kind: LineErrorKind| Err(error_at(b, line_no, offset, kind));
        let mut i = 0;
        while i < end && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        let series_start = i;

        // Measurement: up to an unescaped ',' or ' '.
        let mut escaped = false;
        loop {
            i = find3(b, i, end, b',', b' ', b'\\');
            if i == end || b[i] != b'\\' {
                break;
            }
            if i + 1 < end && is_measurement_escapable(b[i + 1]) {
                escaped = true;
                i += 2;
            } else {
                i += 1;
            }
        }
        if i == series_start {
            return fail(i, LineErrorKind::MissingMeasurement);
        }
        let measurement = unescaped(line, series_start, i, escaped, is_measurement_escapable);

        // Tags.
        let mut tags: SmallVec<[(EscStr<'_>, EscStr<'_>); 8]> = SmallVec::new();
        while i < end && b[i] == b',' {
            let ks = i + 1;
            let (ke, escaped) = scan_key(b, ks, end);
            if ke == ks {
                return fail(ks, LineErrorKind::MissingTagKey);
            }
            let key = unescaped(line, ks, ke, escaped, is_key_escapable);
            if ke == end || b[ke] != b'=' {
                return fail(ke, LineErrorKind::MissingTagValue { key: snippet(&key) });
            }
            let vs = ke + 1;
            let mut j = vs;
            let mut escaped = false;
            let mut equals = None;
            loop {
                j = find4(b, j, end, b',', b' ', b'=', b'\\');
                if j == end {
                    break;
                }
                match b[j] {
                    b'\\' if j + 1 < end && is_key_escapable(b[j + 1]) => {
                        escaped = true;
                        j += 2;
                    }
                    b',' | b' ' => break,
                    c => {
                        if c == b'=' && equals.is_none() {
                            equals = Some(j);
                        }
                        j += 1;
                    }
                }
            }
            if j == vs {
                return fail(vs, LineErrorKind::MissingTagValue { key: snippet(&key) });
            }
            if let Some(at) = equals {
                return fail(
                    at,
                    LineErrorKind::UnescapedEqualsInTagValue { key: snippet(&key) },
                );
            }
            if tags.iter().any(|(k, _)| *k == key) {
                return fail(ks, LineErrorKind::DuplicateTagKey { key: snippet(&key) });
            }
            let value = unescaped(line, vs, j, escaped, is_key_escapable);
            tags.push((key, value));
            i = j;
        }
        let series_end = i;

        // Field set, after one or more spaces.
        while i < end && b[i] == b' ' {
            i += 1;
        }
        if i == end {
            return fail(i, LineErrorKind::MissingFieldSet);
        }
        let mut fields: SmallVec<[(EscStr<'_>, FieldValue<'_>); 8]> = SmallVec::new();
        loop {
            let ks = i;
            let (ke, escaped) = scan_key(b, ks, end);
            if ke == ks {
                return fail(ks, LineErrorKind::MissingFieldKey);
            }
            let key = unescaped(line, ks, ke, escaped, is_key_escapable);
            if ke == end || b[ke] != b'=' {
                return fail(ke, LineErrorKind::MissingFieldValue { key: snippet(&key) });
            }
            let vs = ke + 1;
            if vs == end || b[vs] == b',' || b[vs] == b' ' {
                return fail(vs, LineErrorKind::MissingFieldValue { key: snippet(&key) });
            }
            let value;
            if b[vs] == b'"' {
                let Some((close, escaped)) = find_string_end(b, vs + 1, end) else {
                    return fail(vs, LineErrorKind::UnterminatedString { key: snippet(&key) });
                };
                let s = unescaped(line, vs + 1, close, escaped, is_string_escapable);
                if s.len() > MAX_STRING_FIELD_BYTES {
                    return fail(
                        vs,
                        LineErrorKind::StringTooLong {
                            key: snippet(&key),
                            len: s.len(),
                            max: MAX_STRING_FIELD_BYTES,
                        },
                    );
                }
                i = close + 1;
                if i < end && b[i] != b',' && b[i] != b' ' {
                    let te = token_end(b, i, end);
                    return fail(
                        vs,
                        LineErrorKind::InvalidFieldValue {
                            key: snippet(&key),
                            value: snippet(&line[vs..te]),
                        },
                    );
                }
                value = FieldValue::Str(s);
            } else if let Some((v, ve)) = fast::value(line, vs) {
                // The fast number parser accepts only valid values, and agrees with
                // `scalar` on them.
                debug_assert_eq!(scalar(&line[vs..ve]).ok().as_ref(), Some(&v));
                value = v;
                i = ve;
            } else {
                let ve = token_end(b, vs, end);
                value = match scalar(&line[vs..ve]) {
                    Ok(v) => v,
                    Err(out_of_range) => {
                        let key = snippet(&key);
                        let text = snippet(&line[vs..ve]);
                        return fail(
                            vs,
                            if out_of_range {
                                LineErrorKind::FieldValueOutOfRange { key, value: text }
                            } else {
                                LineErrorKind::InvalidFieldValue { key, value: text }
                            },
                        );
                    }
                };
                i = ve;
            }
            fields.push((key, value));
            if i < end && b[i] == b',' {
                i += 1;
                continue;
            }
            break;
        }

        // Timestamp.
        while i < end && b[i] == b' ' {
            i += 1;
        }
        let timestamp = if i == end {
            None
        } else if let Some(v) = fast::int_token(&b[i..end]) {
            // The usual case: the timestamp is the rest of the line.
            Some(v)
        } else {
            let ts = i;
            while i < end && b[i] != b' ' && b[i] != b'\t' {
                i += 1;
            }
            let text = &line[ts..i];
            let value = match parse_i64(text.as_bytes()) {
                Ok(v) => v,
                Err(IntError::Invalid) => {
                    return fail(
                        ts,
                        LineErrorKind::InvalidTimestamp {
                            value: snippet(text),
                        },
                    );
                }
                Err(IntError::OutOfRange) => {
                    return fail(
                        ts,
                        LineErrorKind::TimestampOutOfRange {
                            value: snippet(text),
                        },
                    );
                }
            };
            while i < end && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            if i < end {
                return fail(
                    i,
                    LineErrorKind::TrailingText {
                        text: snippet(&line[i..end]),
                    },
                );
            }
            Some(value)
        };

        Ok(ParsedLine {
            measurement,
            series_key: &line[series_start..series_end],
            tags,
            fields,
            timestamp,
        })
    }

    /// Scans a tag key, tag value or field key from `i`: up to an unescaped `=`, `,` or
    /// space. Returns the end and whether an escape was seen.
    #[inline]
    fn scan_key(b: &[u8], mut i: usize, end: usize) -> (usize, bool) {
        let mut escaped = false;
        loop {
            i = find4(b, i, end, b'=', b',', b' ', b'\\');
            if i == end || b[i] != b'\\' {
                return (i, escaped);
            }
            if i + 1 < end && is_key_escapable(b[i + 1]) {
                escaped = true;
                i += 2;
            } else {
                i += 1;
            }
        }
    }

    /// End of an unquoted field value: the next `,` or space.
    #[inline]
    fn token_end(b: &[u8], mut i: usize, end: usize) -> usize {
        while i < end && b[i] != b',' && b[i] != b' ' {
            i += 1;
        }
        i
    }

    /// `line[start..end]`, borrowed, or unescaped into a copy if `escaped`.
    #[inline(always)]
    fn unescaped(
        line: &str,
        start: usize,
        end: usize,
        escaped: bool,
        escapable: fn(u8) -> bool,
    ) -> EscStr<'_> {
        let s = &line[start..end];
        if escaped {
            EscStr::Owned(unescape(s, escapable))
        } else {
            EscStr::Borrowed(s)
        }
    }

    /// `s` with each backslash that precedes an `escapable` character removed.
    fn unescape(s: &str, escapable: fn(u8) -> bool) -> Box<str> {
        let b = s.as_bytes();
        // Backslashes to drop, found first so that the copy is allocated at its exact
        // size (a `Box<str>` built from a larger `String` would reallocate).
        let mut cuts: SmallVec<[usize; 8]> = SmallVec::new();
        let mut i = 0;
        while let Some(k) = memchr(b'\\', &b[i..]) {
            let p = i + k;
            if p + 1 < b.len() && escapable(b[p + 1]) {
                cuts.push(p);
                i = p + 2;
            } else {
                i = p + 1;
            }
        }
        let mut out = String::with_capacity(s.len() - cuts.len());
        let mut copied = 0;
        for p in cuts {
            out.push_str(&s[copied..p]);
            copied = p + 1; // keep the escaped character
        }
        out.push_str(&s[copied..]);
        out.into_boxed_str()
    }

    /// Parses an unquoted field value. `Err(true)` means out of range, `Err(false)`
    /// invalid.
    fn scalar(s: &str) -> Result<FieldValue<'static>, bool> {
        let b = s.as_bytes();
        let int_err = |e| matches!(e, IntError::OutOfRange);
        match b.split_last() {
            Some((b'i', digits)) => parse_i64(digits).map(FieldValue::Int).map_err(int_err),
            Some((b'u', digits)) => parse_u64_digits(digits)
                .map(FieldValue::UInt)
                .map_err(int_err),
            _ => {
                if let Some(v) = parse_bool(b) {
                    return Ok(FieldValue::Bool(v));
                }
                if !is_float_text(b) {
                    return Err(false);
                }
                match s.parse::<f64>() {
                    Ok(v) if v.is_finite() => Ok(FieldValue::Float(v)),
                    Ok(_) => Err(true),
                    Err(_) => Err(false),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TELEGRAF_DISK: &str = "disk,device=sda1,fstype=ext4,host=node0001,mode=rw,path=/ total=3958241280000i,free=1i,used=2i,used_percent=37.5 1767225600000000000";

    fn ok(line: &str) -> ParsedLine<'_> {
        parse_line(line, 1).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn err(line: &str) -> LineError {
        match parse_line(line, 1) {
            Ok(p) => panic!("{line:?} parsed: {p:?}"),
            Err(e) => e,
        }
    }

    fn field<'a>(p: &'a ParsedLine<'_>, key: &str) -> &'a FieldValue<'a> {
        p.field(key).unwrap_or_else(|| panic!("no field {key}"))
    }

    fn tags(p: &ParsedLine<'_>) -> Vec<(String, String)> {
        p.tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Error position and kind of `line` (parsed as line 1).
    fn err_at(line: &str) -> (usize, usize, LineErrorKind) {
        let e = err(line);
        (e.line, e.column, e.kind)
    }

    fn s(v: &str) -> String {
        v.to_owned()
    }

    #[test]
    fn telegraf_disk_line() {
        let p = ok(TELEGRAF_DISK);
        assert_eq!(p.measurement, "disk");
        assert_eq!(
            p.series_key,
            "disk,device=sda1,fstype=ext4,host=node0001,mode=rw,path=/"
        );
        assert_eq!(
            tags(&p),
            [
                ("device", "sda1"),
                ("fstype", "ext4"),
                ("host", "node0001"),
                ("mode", "rw"),
                ("path", "/"),
            ]
            .map(|(k, v)| (s(k), s(v)))
        );
        assert_eq!(p.fields.len(), 4);
        assert_eq!(*field(&p, "total"), FieldValue::Int(3958241280000));
        assert_eq!(*field(&p, "free"), FieldValue::Int(1));
        assert_eq!(*field(&p, "used"), FieldValue::Int(2));
        assert_eq!(*field(&p, "used_percent"), FieldValue::Float(37.5));
        assert_eq!(p.timestamp, Some(1767225600000000000));
        assert!(p.measurement.is_borrowed());
        assert!(
            p.tags
                .iter()
                .all(|(k, v)| k.is_borrowed() && v.is_borrowed())
        );
        assert_eq!(p.tag("host"), Some("node0001"));
        assert_eq!(p.tag("nope"), None);
    }

    #[test]
    fn float_values() {
        let cases: &[(&str, f64)] = &[
            ("1", 1.0),
            ("-1", -1.0),
            ("1.5", 1.5),
            ("-1.5", -1.5),
            ("-1e3", -1000.0),
            ("2E-2", 0.02),
            ("1.5e+3", 1500.0),
            (".5", 0.5),
            ("-.25", -0.25),
            ("3.", 3.0),
            ("0", 0.0),
            ("14.054505", 14.054505),
            ("0.30000000000000004", 0.30000000000000004),
            ("123456789012345678", 123456789012345678.0),
            ("1.7976931348623157e308", f64::MAX),
            ("0.000000000000000000000000001", 1e-27),
            ("9007199254740993.5", 9007199254740993.5),
        ];
        for &(text, want) in cases {
            let line = format!("m v={text}");
            let p = ok(&line);
            assert_eq!(p.fields[0].1, FieldValue::Float(want), "{text}");
            // Also in the middle of a field set and with a timestamp.
            let line = format!("m a=1i,v={text},b=2i 5");
            assert_eq!(*field(&ok(&line), "v"), FieldValue::Float(want), "{text}");
        }
        assert!(
            matches!(ok("m v=-0").fields[0].1, FieldValue::Float(v) if v == 0.0 && v.is_sign_negative())
        );
    }

    #[test]
    fn float_fast_path_matches_std_parse() {
        // Deterministic sample of decimals with up to 19 digits.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 19 + 1) as usize;
            let mant = x % 10u64.pow(digits as u32);
            let frac = ((x >> 32) % (digits as u64 + 1)) as usize;
            let mut text = format!("{mant:0digits$}");
            text.insert(text.len() - frac, '.');
            let want: f64 = text.parse().unwrap();
            let line = format!("m v={text}");
            assert_eq!(ok(&line).fields[0].1, FieldValue::Float(want), "{text}");
        }
    }

    #[test]
    fn integer_values() {
        assert_eq!(ok("m v=1i").fields[0].1, FieldValue::Int(1));
        assert_eq!(ok("m v=-42i").fields[0].1, FieldValue::Int(-42));
        assert_eq!(ok("m v=0i").fields[0].1, FieldValue::Int(0));
        assert_eq!(
            ok("m v=9223372036854775807i").fields[0].1,
            FieldValue::Int(i64::MAX)
        );
        assert_eq!(
            ok("m v=-9223372036854775808i").fields[0].1,
            FieldValue::Int(i64::MIN)
        );
        assert_eq!(
            ok("m v=000000000000000000000000000042i").fields[0].1,
            FieldValue::Int(42)
        );
        assert_eq!(ok("m v=7u").fields[0].1, FieldValue::UInt(7));
        assert_eq!(
            ok("m v=18446744073709551615u").fields[0].1,
            FieldValue::UInt(u64::MAX)
        );
        assert_eq!(ok("m v=0u,w=1i 1").fields[0].1, FieldValue::UInt(0));
    }

    #[test]
    fn boolean_values() {
        for t in ["t", "T", "true", "True", "TRUE"] {
            assert_eq!(
                ok(&format!("m v={t}")).fields[0].1,
                FieldValue::Bool(true),
                "{t}"
            );
            assert_eq!(
                ok(&format!("m v={t},w=1 2")).fields[0].1,
                FieldValue::Bool(true)
            );
        }
        for f in ["f", "F", "false", "False", "FALSE"] {
            assert_eq!(
                ok(&format!("m v={f}")).fields[0].1,
                FieldValue::Bool(false),
                "{f}"
            );
        }
        for bad in ["tRUE", "yes", "falsey", "tru"] {
            let (_, col, kind) = err_at(&format!("m v={bad}"));
            assert_eq!(col, 5);
            assert_eq!(
                kind,
                LineErrorKind::InvalidFieldValue {
                    key: s("v"),
                    value: s(bad)
                }
            );
        }
    }

    #[test]
    fn string_values() {
        let p = ok(r#"m s="hello, world = yes",n=1i 10"#);
        assert_eq!(
            p.fields[0].1,
            FieldValue::Str(EscStr::Borrowed("hello, world = yes"))
        );
        assert!(matches!(&p.fields[0].1, FieldValue::Str(e) if e.is_borrowed()));
        assert_eq!(p.fields[1].1, FieldValue::Int(1));
        assert_eq!(p.timestamp, Some(10));
        assert_eq!(ok(r#"m s="""#).fields[0].1, FieldValue::Str("".into()));
        // Escapes.
        let p = ok(r#"m s="say \"hi\" \\ bye""#);
        assert_eq!(p.fields[0].1, FieldValue::Str(r#"say "hi" \ bye"#.into()));
        assert!(matches!(&p.fields[0].1, FieldValue::Str(e) if !e.is_borrowed()));
        // Other backslashes are kept.
        assert_eq!(
            ok(r#"m s="C:\temp\n""#).fields[0].1,
            FieldValue::Str(r"C:\temp\n".into())
        );
        assert_eq!(
            ok(r#"m s="\\\\""#).fields[0].1,
            FieldValue::Str(r"\\".into())
        );
        // A newline inside the quotes belongs to the value.
        assert_eq!(
            ok("m s=\"two\nlines\" 5").fields[0].1,
            FieldValue::Str("two\nlines".into())
        );
        // Quotes in names are ordinary characters.
        let p = ok(r#""m",t="v" "f"=1"#);
        assert_eq!(p.measurement, "\"m\"");
        assert_eq!(p.tag("t"), Some("\"v\""));
        assert_eq!(*field(&p, "\"f\""), FieldValue::Float(1.0));
    }

    #[test]
    fn measurement_escapes() {
        let p = ok(r"my\ cpu\,x,t=a v=1");
        assert_eq!(p.measurement, "my cpu,x");
        assert!(!p.measurement.is_borrowed());
        assert_eq!(p.series_key, r"my\ cpu\,x,t=a");
        // '=' is not escapable in a measurement, and may appear unescaped.
        assert_eq!(ok(r"a\=b v=1").measurement, r"a\=b");
        assert_eq!(ok("a=b v=1").measurement, "a=b");
        // A backslash before anything else is kept, and does not make a copy.
        let p = ok(r"a\b v=1");
        assert_eq!(p.measurement, r"a\b");
        assert!(p.measurement.is_borrowed());
        // Backslash-backslash is not an escape: the second one escapes the space.
        assert_eq!(ok(r"a\\ b v=1").measurement, r"a\ b");
    }

    #[test]
    fn tag_and_field_key_escapes() {
        let p = ok(r"m,ta\ g\,1\=x=va\ l\,u\=e,p=C:\dir f\ i\,e\=ld=1i");
        assert_eq!(
            tags(&p),
            [(s("ta g,1=x"), s("va l,u=e")), (s("p"), s(r"C:\dir"))]
        );
        assert_eq!(p.fields[0].0, "f i,e=ld");
        assert_eq!(p.fields[0].1, FieldValue::Int(1));
        assert_eq!(p.series_key, r"m,ta\ g\,1\=x=va\ l\,u\=e,p=C:\dir");
        assert!(p.tags[1].1.is_borrowed());
        assert!(!p.tags[0].0.is_borrowed());
    }

    #[test]
    fn timestamps() {
        assert_eq!(ok("m v=1").timestamp, None);
        assert_eq!(ok("m v=1   ").timestamp, None);
        assert_eq!(ok("m v=1 -5").timestamp, Some(-5));
        assert_eq!(ok("m v=1 0000000001").timestamp, Some(1));
        assert_eq!(ok("m v=1 0000000000000000001").timestamp, Some(1));
        assert_eq!(ok("m v=1 -00000000000000000000001").timestamp, Some(-1));
        assert_eq!(
            ok("m v=1 1234567812345678").timestamp,
            Some(1234567812345678)
        );
        assert_eq!(ok("m v=1 98765432").timestamp, Some(98765432));
        assert_eq!(ok("m v=1   17  ").timestamp, Some(17));
        assert_eq!(ok("m v=1 9223372036854775807").timestamp, Some(i64::MAX));
        assert_eq!(ok("m v=1 -9223372036854775808").timestamp, Some(i64::MIN));
    }

    #[test]
    fn whitespace_and_line_endings() {
        let p = ok("  \tm,t=a v=1 5\r\n");
        assert_eq!(p.measurement, "m");
        assert_eq!(p.series_key, "m,t=a");
        assert_eq!(p.timestamp, Some(5));
        assert_eq!(ok("m  v=1").fields[0].1, FieldValue::Float(1.0));
        let got: Vec<_> = parse_lines("a v=1 1\r\nb v=2 2\r\n\r\nc v=3\r\n")
            .map(|(n, r)| (n, r.unwrap().measurement.to_string()))
            .collect();
        assert_eq!(got, [(1, s("a")), (2, s("b")), (4, s("c"))]);
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let text = "# header\n\n   \n\t# indented comment \"with quote\n m v=1\n#x\nn v=2\n\n";
        let got: Vec<_> = parse_lines(text)
            .map(|(n, r)| (n, r.unwrap().measurement.to_string()))
            .collect();
        assert_eq!(got, [(5, s("m")), (7, s("n"))]);
        assert_eq!(parse_lines("").count(), 0);
        assert_eq!(parse_lines("\n\n# only\n").count(), 0);
        assert_eq!(parse_lines("m v=1").count(), 1);
    }

    #[test]
    fn multi_line_string_counts_physical_lines() {
        let text = "a v=1\nb s=\"x\ny\nz\",t=2i 7\nc v=3\n";
        let got: Vec<_> = parse_lines(text).map(|(n, r)| (n, r.unwrap())).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, 1);
        assert_eq!(got[1].0, 2);
        assert_eq!(got[1].1.fields[0].1, FieldValue::Str("x\ny\nz".into()));
        assert_eq!(got[1].1.timestamp, Some(7));
        assert_eq!(got[2].0, 5);
        assert_eq!(got[2].1.measurement, "c");
        let split: Vec<_> = split_lines(text).collect();
        assert_eq!(
            split,
            [(1, "a v=1"), (2, "b s=\"x\ny\nz\",t=2i 7"), (5, "c v=3")]
        );
    }

    #[test]
    fn error_in_multi_line_record_reports_physical_position() {
        let text = "a v=1\nb s=\"x\ny\",t=zz 7\nc v=3\n";
        let got: Vec<_> = parse_lines(text).collect();
        assert_eq!(got.len(), 3);
        let e = got[1].1.as_ref().unwrap_err();
        assert_eq!((got[1].0, e.line, e.column), (2, 3, 6));
        assert_eq!(
            e.to_string(),
            "line 3, column 6: invalid field value for field 't': 'zz'"
        );
        assert_eq!(got[2].0, 4);
    }

    #[test]
    fn unterminated_string_does_not_swallow_later_lines() {
        let text = "a v=1\nb s=\"oops,t=1\nc v=3\nd s=\"fine\"\n";
        let got: Vec<_> = parse_lines(text).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        let e = got[1].1.as_ref().unwrap_err();
        assert_eq!((e.line, e.column), (2, 5));
        assert_eq!(e.kind, LineErrorKind::UnterminatedString { key: s("s") });
        assert_eq!(got[2].0, 3);
        assert_eq!(got[2].1.as_ref().unwrap().measurement, "c");
        assert_eq!(
            got[3].1.as_ref().unwrap().fields[0].1,
            FieldValue::Str("fine".into())
        );
    }

    #[test]
    fn error_kinds_and_positions() {
        use LineErrorKind as K;
        let cases: Vec<(&str, usize, K)> = vec![
            ("", 1, K::MissingMeasurement),
            (",t=a v=1", 1, K::MissingMeasurement),
            ("   ", 1, K::MissingMeasurement),
            ("  ,t=a v=1", 3, K::MissingMeasurement),
            ("m", 2, K::MissingFieldSet),
            ("m,t=a", 6, K::MissingFieldSet),
            ("m,t=a   ", 6, K::MissingFieldSet),
            ("m,=a v=1", 3, K::MissingTagKey),
            ("m,t=a, v=1", 7, K::MissingTagKey),
            ("m,host v=1", 7, K::MissingTagValue { key: s("host") }),
            ("m,host= v=1", 8, K::MissingTagValue { key: s("host") }),
            (
                "m,host=a=b v=1",
                9,
                K::UnescapedEqualsInTagValue { key: s("host") },
            ),
            ("m,b=1,a=2,b=3 v=1", 11, K::DuplicateTagKey { key: s("b") }),
            ("m =1", 3, K::MissingFieldKey),
            ("m v=1,=2", 7, K::MissingFieldKey),
            ("m v=1,", 7, K::MissingFieldKey),
            ("m v", 4, K::MissingFieldValue { key: s("v") }),
            ("m v=", 5, K::MissingFieldValue { key: s("v") }),
            ("m v=,w=1", 5, K::MissingFieldValue { key: s("v") }),
            ("m v=1,w 5", 8, K::MissingFieldValue { key: s("w") }),
            (
                "m usage=abc",
                9,
                K::InvalidFieldValue {
                    key: s("usage"),
                    value: s("abc"),
                },
            ),
            (
                "m v=1.2.3",
                5,
                K::InvalidFieldValue {
                    key: s("v"),
                    value: s("1.2.3"),
                },
            ),
            (
                "m v=NaN",
                5,
                K::InvalidFieldValue {
                    key: s("v"),
                    value: s("NaN"),
                },
            ),
            (
                "m v=nan",
                5,
                K::InvalidFieldValue {
                    key: s("v"),
                    value: s("nan"),
                },
            ),
            (
                "m v=inf",
                5,
                K::InvalidFieldValue {
                    key: s("v"),
                    value: s("inf"),
                },
            ),
            (
                "m v=-inf",
                5,
                K::InvalidFieldValue {
                    key: s("v"),
                    value: s("-inf"),
                },
            ),
            (
                "m v=+1",
                5,
                K::InvalidFieldValue {
                    key: s("v"),
                    value: s("+1"),
                },
            ),
            (
                "m v=-",
                5,
                K::InvalidFieldValue {
                    key: s("v"),
                    value: s("-"),
                },
            ),
            (
                "m v=1.5i",
                5,
                K::InvalidFieldValue {
                    key: s("v"),
                    value: s("1.5i"),
                },
            ),
            (
                "m v=-1u",
                5,
                K::InvalidFieldValue {
                    key: s("v"),
                    value: s("-1u"),
                },
            ),
            (
                "m v=1x",
                5,
                K::InvalidFieldValue {
                    key: s("v"),
                    value: s("1x"),
                },
            ),
            (
                "m v=i",
                5,
                K::InvalidFieldValue {
                    key: s("v"),
                    value: s("i"),
                },
            ),
            (
                r#"m v="a"b"#,
                5,
                K::InvalidFieldValue {
                    key: s("v"),
                    value: s("\"a\"b"),
                },
            ),
            (
                r#"m v=a"b""#,
                5,
                K::InvalidFieldValue {
                    key: s("v"),
                    value: s("a\"b\""),
                },
            ),
            (
                "m v=1e999",
                5,
                K::FieldValueOutOfRange {
                    key: s("v"),
                    value: s("1e999"),
                },
            ),
            (
                "m v=9223372036854775808i",
                5,
                K::FieldValueOutOfRange {
                    key: s("v"),
                    value: s("9223372036854775808i"),
                },
            ),
            (
                "m v=-9223372036854775809i",
                5,
                K::FieldValueOutOfRange {
                    key: s("v"),
                    value: s("-9223372036854775809i"),
                },
            ),
            (
                "m v=18446744073709551616u",
                5,
                K::FieldValueOutOfRange {
                    key: s("v"),
                    value: s("18446744073709551616u"),
                },
            ),
            (r#"m s="abc"#, 5, K::UnterminatedString { key: s("s") }),
            (r#"m s="abc\""#, 5, K::UnterminatedString { key: s("s") }),
            ("m v=1 12x", 7, K::InvalidTimestamp { value: s("12x") }),
            ("m v=1 -", 7, K::InvalidTimestamp { value: s("-") }),
            ("m v=1 1.5", 7, K::InvalidTimestamp { value: s("1.5") }),
            (
                "m v=1 9223372036854775808",
                7,
                K::TimestampOutOfRange {
                    value: s("9223372036854775808"),
                },
            ),
            ("m v=1 12 34", 10, K::TrailingText { text: s("34") }),
            (
                "m v=1\t12",
                5,
                K::InvalidFieldValue {
                    key: s("v"),
                    value: s("1\t12"),
                },
            ),
        ];
        for (line, column, kind) in cases {
            let e = err(line);
            assert_eq!((e.line, e.column, &e.kind), (1, column, &kind), "{line:?}");
        }
    }

    #[test]
    fn error_display() {
        let text = "a v=1\n# comment\nm,host=a usage=abc 1\n";
        let errors: Vec<_> = parse_lines(text).filter_map(|(_, r)| r.err()).collect();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "line 3, column 16: invalid field value for field 'usage': 'abc'"
        );
        assert_eq!(
            err("m,host v=1").to_string(),
            "line 1, column 7: tag key 'host' has no value"
        );
        assert_eq!(
            err(r#"m s="x"#).to_string(),
            "line 1, column 5: unterminated string field value for field 's'"
        );
        assert_eq!(
            err("m v=1 12x").to_string(),
            "line 1, column 7: invalid timestamp '12x'"
        );
        assert_eq!(err("").to_string(), "line 1, column 1: missing measurement");
        assert_eq!(err("m").to_string(), "line 1, column 2: missing field set");
        // Long values are cut in messages.
        let long = "x".repeat(500);
        let msg = err(&format!("m v={long}")).to_string();
        assert!(msg.len() < 150, "{msg}");
        assert!(msg.ends_with("...'"), "{msg}");
    }

    #[test]
    fn error_line_numbers_use_the_given_line() {
        let e = parse_line("m v=zz", 42).unwrap_err();
        assert_eq!((e.line, e.column), (42, 5));
    }

    #[test]
    fn string_length_limit() {
        let max = "a".repeat(MAX_STRING_FIELD_BYTES);
        let line = format!("m s=\"{max}\"");
        assert!(
            matches!(&ok(&line).fields[0].1, FieldValue::Str(v) if v.len() == MAX_STRING_FIELD_BYTES)
        );
        let over = format!("m s=\"{max}a\"");
        let (_, col, kind) = err_at(&over);
        assert_eq!(col, 5);
        assert_eq!(
            kind,
            LineErrorKind::StringTooLong {
                key: s("s"),
                len: MAX_STRING_FIELD_BYTES + 1,
                max: MAX_STRING_FIELD_BYTES
            }
        );
        // Escapes count once: twice as many raw bytes still fit.
        let escaped = format!("m s=\"{}\"", "\\\\".repeat(MAX_STRING_FIELD_BYTES));
        assert!(
            matches!(&ok(&escaped).fields[0].1, FieldValue::Str(v) if v.len() == MAX_STRING_FIELD_BYTES)
        );
        let text = format!("{escaped}\nn v=1\n");
        assert_eq!(parse_lines(&text).filter(|(_, r)| r.is_ok()).count(), 2);
    }

    #[test]
    fn line_length_limit() {
        let line = format!("m v=1,{}=2", "k".repeat(MAX_LINE_BYTES));
        let (_, col, kind) = err_at(&line);
        assert_eq!(col, MAX_LINE_BYTES + 1);
        assert_eq!(
            kind,
            LineErrorKind::LineTooLong {
                len: line.len(),
                max: MAX_LINE_BYTES
            }
        );
    }

    #[test]
    fn duplicate_fields_are_kept_and_last_wins() {
        let p = ok("m v=1,v=2");
        assert_eq!(p.fields.len(), 2);
        assert_eq!(*field(&p, "v"), FieldValue::Float(2.0));
        // Unsorted but distinct tags are fine.
        assert_eq!(ok("m,z=1,a=2,m=3 v=1").tags.len(), 3);
        let (_, col, _) = err_at("m,z=1,a=2,z=3 v=1");
        assert_eq!(col, 11);
    }

    #[test]
    fn many_tags_and_fields_spill() {
        let tags: String = (0..20).map(|i| format!(",t{i:02}=v{i}")).collect();
        let fields: Vec<String> = (0..20).map(|i| format!("f{i}={i}i")).collect();
        let line = format!("m{tags} {} 1", fields.join(","));
        let p = ok(&line);
        assert_eq!(p.tags.len(), 20);
        assert_eq!(p.fields.len(), 20);
        assert_eq!(*field(&p, "f19"), FieldValue::Int(19));
    }

    #[test]
    fn bytes_input_with_invalid_utf8() {
        let mut buf = b"a v=1\nb,t=x".to_vec();
        buf.push(0xff);
        buf.extend_from_slice(b" v=2\nc v=\"\xc3\xa9\" 3\n");
        let got: Vec<_> = parse_lines_bytes(&buf).collect();
        assert_eq!(got.len(), 3);
        assert!(got[0].1.is_ok());
        let e = got[1].1.as_ref().unwrap_err();
        assert_eq!(
            (e.line, e.column, &e.kind),
            (2, 6, &LineErrorKind::InvalidUtf8)
        );
        assert_eq!(
            got[2].1.as_ref().unwrap().fields[0].1,
            FieldValue::Str("é".into())
        );
    }

    #[test]
    fn non_ascii_text() {
        let p = ok("température,lieu=salle\\ été valeur=21.5,note=\"très bien\" 1");
        assert_eq!(p.measurement, "température");
        assert_eq!(p.tag("lieu"), Some("salle été"));
        assert_eq!(p.fields[1].1, FieldValue::Str("très bien".into()));
        let e = err("été v=ab");
        assert_eq!(e.column, 9); // bytes, not characters
    }

    #[test]
    fn split_lines_matches_parse_lines() {
        let text = "# c\na v=1\n\n  b,t=1 s=\"q\nq\" 2\r\nc v=1\n";
        let split: Vec<_> = split_lines(text).collect();
        assert_eq!(
            split,
            [(2, "a v=1"), (4, "  b,t=1 s=\"q\nq\" 2"), (6, "c v=1")]
        );
        let parsed: Vec<_> = parse_lines(text).map(|(n, _)| n).collect();
        assert_eq!(parsed, [2, 4, 6]);
        let mut it = split_lines(text);
        it.next();
        assert_eq!((it.offset(), it.line()), (10, 3));
    }

    #[test]
    fn esc_str_traits() {
        let b = EscStr::Borrowed("abc");
        let o: EscStr<'static> = EscStr::Owned("abc".into());
        assert_eq!(b, o);
        assert_eq!(b, "abc");
        assert_eq!(&*o, "abc");
        assert_eq!(o.as_ref() as &str, "abc");
        assert_eq!(format!("{b}/{o}"), "abc/abc");
        assert_eq!(format!("{b:?}"), "\"abc\"");
        assert_eq!(b.len(), 3);
        assert_eq!(b.clone().into_owned(), o.clone().into_owned());
        assert!(!b.clone().into_static().is_borrowed());
        let mut set = std::collections::HashSet::new();
        set.insert(b);
        assert!(set.contains("abc"));
        assert!(set.contains(&o));
    }

    #[test]
    fn field_value_helpers() {
        assert_eq!(FieldValue::Int(-2).as_f64(), Some(-2.0));
        assert_eq!(FieldValue::UInt(2).as_f64(), Some(2.0));
        assert_eq!(FieldValue::Float(0.5).as_f64(), Some(0.5));
        assert_eq!(FieldValue::Bool(true).as_f64(), None);
        assert_eq!(FieldValue::Str("x".into()).as_f64(), None);
        assert_eq!(FieldValue::UInt(1).type_name(), "unsigned");
    }

    #[test]
    fn precision() {
        let cases = [
            ("ns", Precision::Nanoseconds),
            ("n", Precision::Nanoseconds),
            ("us", Precision::Microseconds),
            ("u", Precision::Microseconds),
            ("\u{b5}", Precision::Microseconds),
            ("\u{b5}s", Precision::Microseconds),
            ("ms", Precision::Milliseconds),
            ("s", Precision::Seconds),
            ("m", Precision::Minutes),
            ("h", Precision::Hours),
        ];
        for (text, p) in cases {
            assert_eq!(text.parse::<Precision>(), Ok(p), "{text}");
            assert_eq!(p.as_str().parse::<Precision>(), Ok(p));
        }
        let e = "sec".parse::<Precision>().unwrap_err();
        assert_eq!(e.value, "sec");
        assert_eq!(
            e.to_string(),
            "invalid precision 'sec': expected one of ns, us, ms, s, m, h"
        );
        assert!("".parse::<Precision>().is_err());
        assert!("NS".parse::<Precision>().is_err());
        assert_eq!(Precision::default(), Precision::Nanoseconds);
        assert_eq!(Precision::Seconds.to_string(), "s");

        assert_eq!(Precision::Nanoseconds.to_nanos(5), Some(5));
        assert_eq!(Precision::Microseconds.to_nanos(5), Some(5_000));
        assert_eq!(Precision::Milliseconds.to_nanos(-5), Some(-5_000_000));
        assert_eq!(
            Precision::Seconds.to_nanos(1767225600),
            Some(1767225600000000000)
        );
        assert_eq!(Precision::Minutes.to_nanos(2), Some(120_000_000_000));
        assert_eq!(Precision::Hours.to_nanos(1), Some(3_600_000_000_000));
        assert_eq!(Precision::Nanoseconds.to_nanos(i64::MAX), Some(i64::MAX));
        assert_eq!(
            Precision::Seconds.to_nanos(9_223_372_036),
            Some(9_223_372_036_000_000_000)
        );
        assert_eq!(Precision::Seconds.to_nanos(9_223_372_037), None);
        assert_eq!(
            Precision::Milliseconds.to_nanos(i64::MIN / 1_000_000 - 1),
            None
        );
        assert_eq!(Precision::Hours.to_nanos(2_562_048), None);
    }

    /// Small deterministic PRNG for the mutation test.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A random name: never empty, never ending in a backslash (which the format cannot
    /// express before a delimiter), never starting with `#` or a blank.
    fn random_name(rng: &mut XorShift) -> String {
        const CHARS: [&str; 14] = [
            "a", "b", "z", ",", "=", " ", "\\", "\"", "#", "\t", "é", "€", "1", "_",
        ];
        loop {
            let len = 1 + rng.below(6);
            let name: String = (0..len).map(|_| CHARS[rng.below(CHARS.len())]).collect();
            if !name.ends_with('\\') && !name.starts_with(['#', ' ', '\t']) {
                return name;
            }
        }
    }

    /// Escapes a name: ',' and ' ', and '=' too if `equals`.
    fn escape_name(name: &str, equals: bool) -> String {
        let mut out = String::new();
        for c in name.chars() {
            if c == ',' || c == ' ' || (equals && c == '=') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }

    fn random_value(rng: &mut XorShift) -> (FieldValue<'static>, String) {
        match rng.below(6) {
            0 => loop {
                let v = f64::from_bits(rng.next());
                if v.is_finite() {
                    let text = if rng.below(2) == 0 {
                        format!("{v}")
                    } else {
                        format!("{v:?}")
                    };
                    return (FieldValue::Float(v), text);
                }
            },
            1 => {
                let v = (rng.next() as i64) >> rng.below(64);
                (FieldValue::Int(v), format!("{v}i"))
            }
            2 => {
                let v = rng.next() >> rng.below(64);
                (FieldValue::UInt(v), format!("{v}u"))
            }
            3 => {
                let (v, text) = [(true, "t"), (false, "FALSE"), (true, "True")][rng.below(3)];
                (FieldValue::Bool(v), text.to_owned())
            }
            4 => {
                let v = (rng.next() % 100_000) as f64 / 1000.0;
                (FieldValue::Float(v), format!("{v}"))
            }
            _ => {
                const CHARS: [&str; 10] = ["a", " ", ",", "=", "\n", "\"", "\\", "\r\n", "é", "x"];
                let len = rng.below(8);
                let v: String = (0..len).map(|_| CHARS[rng.below(CHARS.len())]).collect();
                let text = format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
                (FieldValue::Str(v.into()), text)
            }
        }
    }

    /// Random valid points, written with every kind of escape, parse back to themselves
    /// with the right physical line numbers.
    #[test]
    fn generated_points_round_trip() {
        let mut rng = XorShift(0x0bad_5eed_1234_5678);
        for round in 0..1000 {
            let mut text = String::new();
            let mut line_no = 1;
            let mut expected = Vec::new();
            for _ in 0..1 + rng.below(20) {
                match rng.below(8) {
                    0 => {
                        text.push_str("# a comment, \"with a quote\n");
                        line_no += 1;
                        continue;
                    }
                    1 => {
                        text.push_str(" \t\r\n");
                        line_no += 1;
                        continue;
                    }
                    _ => {}
                }
                let measurement = random_name(&mut rng);
                let mut tags: Vec<(String, String)> = Vec::new();
                for _ in 0..rng.below(5) {
                    let key = random_name(&mut rng);
                    if tags.iter().all(|(k, _)| *k != key) {
                        tags.push((key, random_name(&mut rng)));
                    }
                }
                let mut fields = Vec::new();
                for _ in 0..1 + rng.below(12) {
                    let (value, value_text) = random_value(&mut rng);
                    fields.push((random_name(&mut rng), value, value_text));
                }
                let timestamp = match rng.below(3) {
                    0 => None,
                    _ => Some((rng.next() as i64) >> rng.below(64)),
                };
                let mut line = escape_name(&measurement, false);
                for (k, v) in &tags {
                    line.push_str(&format!(
                        ",{}={}",
                        escape_name(k, true),
                        escape_name(v, true)
                    ));
                }
                line.push(' ');
                let field_text: Vec<String> = fields
                    .iter()
                    .map(|(k, _, v)| format!("{}={v}", escape_name(k, true)))
                    .collect();
                line.push_str(&field_text.join(","));
                if let Some(ts) = timestamp {
                    line.push_str(&format!(" {ts}"));
                }
                line.push_str(["\n", "\r\n", "  \n"][rng.below(3)]);
                expected.push((line_no, measurement, tags, fields, timestamp));
                line_no += line.matches('\n').count();
                text.push_str(&line);
            }
            let got: Vec<_> = parse_lines(&text).collect();
            assert_eq!(got.len(), expected.len(), "round {round}: {text:?}");
            for ((n, result), (want_n, m, want_tags, fields, ts)) in got.iter().zip(&expected) {
                let p = result
                    .as_ref()
                    .unwrap_or_else(|e| panic!("round {round}: {e} in {text:?}"));
                assert_eq!(n, want_n, "round {round}: {text:?}");
                assert_eq!(p.measurement, m.as_str());
                assert_eq!(tags(p), *want_tags);
                assert_eq!(p.fields.len(), fields.len());
                for ((k, v), (want_k, want_v, _)) in p.fields.iter().zip(fields) {
                    assert_eq!(k, want_k.as_str());
                    assert_eq!(v, want_v);
                }
                assert_eq!(p.timestamp, *ts);
            }
        }
    }

    /// Mutates Telegraf-like lines with the characters that matter to the grammar and
    /// checks that nothing panics, that the fast and general parsers agree (checked in
    /// `parse_record` in debug builds), and that `parse_lines` agrees with
    /// `split_lines` + `parse_line`.
    #[test]
    fn mutated_lines_are_handled_consistently() {
        let seeds = [
            TELEGRAF_DISK,
            "cpu,cpu=cpu-total,host=node0000 usage_user=14.054505,usage_idle=79.922136,usage_nice=0 1767225600144272509",
            "system,host=node0000 load1=4.17,load5=3.76,n_cpus=48i,uptime=225600u 1767225600144272509",
            "m,t=a\\ b s=\"x,y=z\",b=true,f=-1.5e3 -12",
        ];
        let alphabet = b" ,=\\\"\n\r\t#-.0123456789eiutfTF\x00a";
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        for round in 0..6000 {
            let mut buf: Vec<u8> = Vec::new();
            for _ in 0..1 + rng.below(3) {
                buf.extend_from_slice(seeds[rng.below(seeds.len())].as_bytes());
                buf.push(b'\n');
            }
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(buf.len() + 1);
                let c = alphabet[rng.below(alphabet.len())];
                match rng.below(3) {
                    0 => buf.insert(at, c),
                    1 if at < buf.len() => buf[at] = c,
                    _ if at < buf.len() => {
                        buf.remove(at);
                    }
                    _ => {}
                }
            }
            let text = String::from_utf8(buf).unwrap();
            let whole: Vec<_> = parse_lines(&text).collect();
            let pieces: Vec<_> = split_lines(&text)
                .map(|(n, line)| (n, parse_line(line, n)))
                .collect();
            assert_eq!(whole, pieces, "round {round}: {text:?}");
            for (_, r) in &whole {
                if let Ok(p) = r {
                    assert!(!p.measurement.is_empty());
                    assert!(!p.fields.is_empty());
                }
            }
        }
    }
}
