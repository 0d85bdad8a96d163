//! Recordings that `alertd test` replays: reading them from disk and cutting them into
//! points.
//!
//! This module owns the two recording formats:
//! - InfluxDB line protocol, one point per line (what `alertd record` writes);
//! - Kapacitor's `.srpl` stream recordings: repeating triples of lines holding a database
//!   name, a retention policy and a line-protocol point.
//!
//! Either may be gzip-compressed; compression is recognised by the gzip magic bytes, not
//! by the file name. The format is chosen by name: a file ending in `.srpl` (or
//! `.srpl.gz`) is srpl, anything else line protocol.
//!
//! A [`Recording`] owns the decompressed text; its entries and [`Chunk`]s borrow from it,
//! and chunks can be parsed on different threads. Timestamps are returned as written:
//! applying a precision is the caller's business.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use memchr::memchr;
use thiserror::Error;

use crate::ingest::line_protocol::{
    LineError, LineErrorKind, Lines, ParsedLine, Splitter, parse_record,
};

/// The two gzip magic bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// How the points in a recording are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordingFormat {
    /// InfluxDB line protocol, one point per line.
    LineProtocol,
    /// Kapacitor stream recording: database line, retention policy line, point line,
    /// repeated.
    Srpl,
}

impl RecordingFormat {
    /// The format a file's name implies: [`RecordingFormat::Srpl`] for names ending in
    /// `.srpl` or `.srpl.gz` (any case), [`RecordingFormat::LineProtocol`] otherwise.
    pub fn from_path(path: &Path) -> RecordingFormat {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if name.ends_with(".srpl") || name.ends_with(".srpl.gz") {
            RecordingFormat::Srpl
        } else {
            RecordingFormat::LineProtocol
        }
    }
}

/// Why a recording could not be read.
#[derive(Debug, Error)]
pub enum RecordingError {
    /// The file could not be read.
    #[error("cannot read recording {}: {source}", .path.display())]
    Io {
        /// The recording's path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file starts with the gzip magic bytes but does not decompress.
    #[error("recording {} is not valid gzip data: {source}", .path.display())]
    Gzip {
        /// The recording's path.
        path: PathBuf,
        /// The decompression error.
        #[source]
        source: io::Error,
    },
    /// The (decompressed) content is not UTF-8.
    #[error(
        "recording {} is not valid UTF-8: invalid byte sequence at byte offset {offset}{}",
        .path.display(),
        if *.decompressed { " of the decompressed data" } else { "" }
    )]
    InvalidUtf8 {
        /// The recording's path.
        path: PathBuf,
        /// Byte offset of the first invalid sequence.
        offset: usize,
        /// Whether the offset counts decompressed bytes.
        decompressed: bool,
    },
}

/// A recording's text, decompressed, with its format.
#[derive(Debug, Clone)]
pub struct Recording {
    text: String,
    format: RecordingFormat,
}

/// One point of a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<'a> {
    /// Physical line number of the point (of the point line, for srpl); for a malformed
    /// srpl entry, the line where the problem was found.
    pub line: usize,
    /// The database, from an srpl recording; `None` for line protocol.
    pub db: Option<&'a str>,
    /// The retention policy, from an srpl recording; `None` for line protocol.
    pub rp: Option<&'a str>,
    /// The point, or why it was rejected.
    pub point: Result<ParsedLine<'a>, LineError>,
}

/// A piece of a recording that starts and ends on entry boundaries, to be parsed
/// independently of the others (for instance on another thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// The chunk's text.
    pub text: &'a str,
    /// Physical line number of the chunk's first line within the whole recording.
    pub first_line: usize,
    /// The recording's format.
    pub format: RecordingFormat,
}

impl<'a> Chunk<'a> {
    /// The chunk's entries, numbered as lines of the whole recording.
    pub fn entries(&self) -> Entries<'a> {
        Entries::new(self.text, self.first_line, self.format)
    }
}

impl Recording {
    /// Reads a recording, decompressing it if it starts with the gzip magic bytes. The
    /// format comes from the file name (see [`RecordingFormat::from_path`]).
    ///
    /// # Errors
    ///
    /// [`RecordingError`] if the file cannot be read, is not valid gzip although it
    /// starts like gzip, or is not UTF-8 (once decompressed). Bad points are not errors
    /// here: [`Recording::entries`] reports them one by one.
    pub fn open(path: &Path) -> Result<Recording, RecordingError> {
        let raw = fs::read(path).map_err(|source| RecordingError::Io {
            path: path.to_owned(),
            source,
        })?;
        let decompressed = raw.starts_with(&GZIP_MAGIC);
        let bytes = if decompressed {
            let mut out = Vec::with_capacity(raw.len().saturating_mul(4));
            flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .map_err(|source| RecordingError::Gzip {
                    path: path.to_owned(),
                    source,
                })?;
            out
        } else {
            raw
        };
        let text = String::from_utf8(bytes).map_err(|e| RecordingError::InvalidUtf8 {
            path: path.to_owned(),
            offset: e.utf8_error().valid_up_to(),
            decompressed,
        })?;
        Ok(Recording::from_text(text, RecordingFormat::from_path(path)))
    }

    /// A recording from text already in memory.
    pub fn from_text(text: String, format: RecordingFormat) -> Recording {
        Recording { text, format }
    }

    /// The whole (decompressed) text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The recording's format.
    pub fn format(&self) -> RecordingFormat {
        self.format
    }

    /// Iterates over every entry, in order. Blank lines are skipped (and, in line
    /// protocol, `#` comments). A bad point yields an error entry and the rest still
    /// parse; in srpl, an incomplete triple yields one error entry and reading resumes at
    /// the next triple.
    pub fn entries(&self) -> Entries<'_> {
        Entries::new(&self.text, 1, self.format)
    }

    /// Splits the text into chunks of about `target_bytes` each (at least one entry per
    /// chunk), cut on entry boundaries. The chunks' texts, in order, make up the whole
    /// text, so together they yield exactly the entries of [`Recording::entries`], with
    /// the same line numbers. An empty recording has no chunks.
    pub fn chunks(&self, target_bytes: usize) -> Vec<Chunk<'_>> {
        let text = self.text.as_str();
        let target = target_bytes.max(1);
        let mut chunks: Vec<Chunk<'_>> = Vec::new();
        let mut start = 0;
        let mut first_line = 1;
        // Each entry's end offset and the line number there, in order.
        let ends: Box<dyn Iterator<Item = (usize, usize)> + '_> = match self.format {
            RecordingFormat::LineProtocol => {
                let mut split = Splitter::new(text.as_bytes(), 1);
                Box::new(std::iter::from_fn(move || {
                    split.next_record().map(|_| (split.pos, split.line))
                }))
            }
            RecordingFormat::Srpl => {
                let mut reader = SrplReader::new(text, 1);
                Box::new(std::iter::from_fn(move || {
                    reader.next_raw().map(|_| (reader.pos, reader.line))
                }))
            }
        };
        for (end, next_line) in ends {
            if end - start >= target {
                chunks.push(Chunk {
                    text: &text[start..end],
                    first_line,
                    format: self.format,
                });
                start = end;
                first_line = next_line;
            }
        }
        // What is left holds the last entries, or only blank lines and comments, which
        // then go with the last chunk.
        if start < text.len() {
            match chunks.last_mut() {
                Some(last)
                    if Entries::new(&text[start..], 1, self.format)
                        .next()
                        .is_none() =>
                {
                    last.text = &text[start - last.text.len()..];
                }
                _ => chunks.push(Chunk {
                    text: &text[start..],
                    first_line,
                    format: self.format,
                }),
            }
        }
        chunks
    }
}

/// Iterator over a recording's (or chunk's) entries.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    inner: EntriesInner<'a>,
}

#[derive(Debug, Clone)]
enum EntriesInner<'a> {
    Lp(Lines<'a>),
    Srpl(SrplReader<'a>),
}

impl<'a> Entries<'a> {
    fn new(text: &'a str, first_line: usize, format: RecordingFormat) -> Self {
        let inner = match format {
            RecordingFormat::LineProtocol => {
                EntriesInner::Lp(Lines::with_first_line(text, first_line))
            }
            RecordingFormat::Srpl => EntriesInner::Srpl(SrplReader::new(text, first_line)),
        };
        Entries { inner }
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        match &mut self.inner {
            EntriesInner::Lp(lines) => lines.next().map(|(line, point)| Entry {
                line,
                db: None,
                rp: None,
                point,
            }),
            EntriesInner::Srpl(reader) => reader.next_raw().map(|raw| match raw {
                RawSrpl::Point {
                    db,
                    rp,
                    point,
                    line,
                    plain,
                } => Entry {
                    line,
                    db: Some(db),
                    rp: Some(rp),
                    point: parse_record(point, line, plain),
                },
                RawSrpl::Malformed {
                    db,
                    rp,
                    line,
                    reason,
                } => Entry {
                    line,
                    db,
                    rp,
                    point: Err(LineError {
                        line,
                        column: 1,
                        kind: LineErrorKind::MalformedSrplEntry { reason },
                    }),
                },
            }),
        }
    }
}

/// One srpl triple, not yet parsed.
enum RawSrpl<'a> {
    Point {
        db: &'a str,
        rp: &'a str,
        point: &'a str,
        line: usize,
        plain: bool,
    },
    Malformed {
        db: Option<&'a str>,
        rp: Option<&'a str>,
        line: usize,
        reason: &'static str,
    },
}

/// Walks an srpl text triple by triple.
#[derive(Debug, Clone)]
struct SrplReader<'a> {
    text: &'a str,
    /// Offset of the next line.
    pos: usize,
    /// Physical line number at `pos`.
    line: usize,
}

impl<'a> SrplReader<'a> {
    fn new(text: &'a str, first_line: usize) -> Self {
        SrplReader {
            text,
            pos: 0,
            line: first_line,
        }
    }

    /// The next physical line, trimmed, with its number; `None` at the end of the text.
    fn physical_line(&mut self) -> Option<(&'a str, usize)> {
        let b = self.text.as_bytes();
        if self.pos >= b.len() {
            return None;
        }
        let start = self.pos;
        let end = memchr(b'\n', &b[start..]).map_or(b.len(), |k| start + k);
        self.pos = (end + 1).min(b.len());
        let line = self.line;
        self.line += 1;
        Some((self.text[start..end].trim(), line))
    }

    fn next_raw(&mut self) -> Option<RawSrpl<'a>> {
        // Blank lines between triples are skipped.
        let (db, db_line) = loop {
            let (text, line) = self.physical_line()?;
            if !text.is_empty() {
                break (text, line);
            }
        };
        let Some((rp, rp_line)) = self.physical_line() else {
            return Some(RawSrpl::Malformed {
                db: Some(db),
                rp: None,
                line: db_line,
                reason: "the recording ends after the database line",
            });
        };
        if self.pos >= self.text.len() {
            return Some(RawSrpl::Malformed {
                db: Some(db),
                rp: Some(rp),
                line: rp_line,
                reason: "the recording ends before the point line",
            });
        }
        // The point line may span physical lines (a newline in a string value).
        let mut split = Splitter {
            b: self.text.as_bytes(),
            pos: self.pos,
            line: self.line,
        };
        let record = split.take_record();
        self.pos = split.pos;
        self.line = split.line;
        if rp.is_empty() {
            return Some(RawSrpl::Malformed {
                db: Some(db),
                rp: None,
                line: rp_line,
                reason: "empty retention policy line",
            });
        }
        Some(RawSrpl::Point {
            db,
            rp,
            point: &self.text[record.start..record.end],
            line: record.line,
            plain: record.plain,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::line_protocol::FieldValue;
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SRPL: &str = "telegraf\nautogen\ncpu,host=a value=1 0000000001\n\
                        telegraf\nautogen\ncpu,host=b value=2 0000000002\n\
                        telegraf\nautogen\ncpu,host=a value=3 0000000003\n";

    const LP: &str = "# recorded by alertd\n\
                      cpu,host=a usage_idle=90 1000000000\n\
                      cpu,host=b usage_idle=10 1000000000\n\
                      \n\
                      mem,host=a used_percent=50.5 2000000000\n";

    /// A fresh scratch directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "alertd-recording-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, bytes).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// (line, db, rp, measurement or error text) of each entry.
    fn summary<'a>(
        entries: impl Iterator<Item = Entry<'a>>,
    ) -> Vec<(usize, Option<&'a str>, Option<&'a str>, String)> {
        entries
            .map(|e| {
                let what = match &e.point {
                    Ok(p) => format!("{} {:?}", p.series_key, p.timestamp),
                    Err(err) => format!("error: {err}"),
                };
                (e.line, e.db, e.rp, what)
            })
            .collect()
    }

    fn lp_expected() -> Vec<(usize, Option<&'static str>, Option<&'static str>, String)> {
        vec![
            (2, None, None, "cpu,host=a Some(1000000000)".to_owned()),
            (3, None, None, "cpu,host=b Some(1000000000)".to_owned()),
            (5, None, None, "mem,host=a Some(2000000000)".to_owned()),
        ]
    }

    fn srpl_expected() -> Vec<(usize, Option<&'static str>, Option<&'static str>, String)> {
        let t = Some("telegraf");
        let a = Some("autogen");
        vec![
            (3, t, a, "cpu,host=a Some(1)".to_owned()),
            (6, t, a, "cpu,host=b Some(2)".to_owned()),
            (9, t, a, "cpu,host=a Some(3)".to_owned()),
        ]
    }

    #[test]
    fn plain_line_protocol() {
        let rec = Recording::from_text(LP.to_owned(), RecordingFormat::LineProtocol);
        assert_eq!(rec.format(), RecordingFormat::LineProtocol);
        assert_eq!(rec.text(), LP);
        assert_eq!(summary(rec.entries()), lp_expected());
        let e = rec.entries().nth(2).unwrap();
        assert_eq!(
            e.point.unwrap().field("used_percent"),
            Some(&FieldValue::Float(50.5))
        );
    }

    #[test]
    fn srpl_triples() {
        let rec = Recording::from_text(SRPL.to_owned(), RecordingFormat::Srpl);
        assert_eq!(summary(rec.entries()), srpl_expected());
        // CRLF and blank lines between triples are accepted.
        let crlf = SRPL.replace('\n', "\r\n");
        let spaced = format!(
            "\n{}\n\n",
            crlf.replacen("0000000001\r\n", "0000000001\r\n\r\n", 1)
        );
        let rec = Recording::from_text(spaced, RecordingFormat::Srpl);
        let got = summary(rec.entries());
        let lines: Vec<_> = got.iter().map(|e| e.0).collect();
        assert_eq!(lines, [4, 8, 11]);
        assert!(
            got.iter()
                .all(|e| e.1 == Some("telegraf") && e.2 == Some("autogen"))
        );
        assert!(got.iter().all(|e| !e.3.starts_with("error")), "{got:?}");
    }

    #[test]
    fn open_plain_and_gzip_files() {
        let dir = TempDir::new();
        for (name, bytes, format, expected) in [
            (
                "rec.lp",
                LP.as_bytes().to_vec(),
                RecordingFormat::LineProtocol,
                lp_expected(),
            ),
            (
                "rec.lp.gz",
                gzip(LP.as_bytes()),
                RecordingFormat::LineProtocol,
                lp_expected(),
            ),
            // Compression is found by its magic bytes, whatever the name says.
            (
                "rec-gz-no-suffix.lp",
                gzip(LP.as_bytes()),
                RecordingFormat::LineProtocol,
                lp_expected(),
            ),
            (
                "not-really.gz",
                LP.as_bytes().to_vec(),
                RecordingFormat::LineProtocol,
                lp_expected(),
            ),
            (
                "rec.srpl",
                SRPL.as_bytes().to_vec(),
                RecordingFormat::Srpl,
                srpl_expected(),
            ),
            (
                "kapacitor.srpl",
                gzip(SRPL.as_bytes()),
                RecordingFormat::Srpl,
                srpl_expected(),
            ),
            (
                "rec.SRPL.gz",
                gzip(SRPL.as_bytes()),
                RecordingFormat::Srpl,
                srpl_expected(),
            ),
        ] {
            let path = dir.write(name, &bytes);
            let rec = Recording::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(rec.format(), format, "{name}");
            assert_eq!(summary(rec.entries()), expected, "{name}");
        }
    }

    #[test]
    fn open_errors_name_the_path() {
        let dir = TempDir::new();
        let missing = dir.0.join("missing.lp");
        let e = Recording::open(&missing).unwrap_err();
        assert!(matches!(e, RecordingError::Io { .. }));
        assert!(e.to_string().contains("missing.lp"), "{e}");

        let mut bad_gzip = gzip(LP.as_bytes());
        bad_gzip.truncate(bad_gzip.len() / 2);
        let path = dir.write("cut.lp", &bad_gzip);
        let e = Recording::open(&path).unwrap_err();
        assert!(matches!(e, RecordingError::Gzip { .. }), "{e:?}");
        assert!(e.to_string().contains("cut.lp"), "{e}");

        let path = dir.write("latin1.lp", b"cpu,host=caf\xe9 v=1\n");
        let e = Recording::open(&path).unwrap_err();
        assert!(matches!(
            e,
            RecordingError::InvalidUtf8 {
                offset: 12,
                decompressed: false,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            format!(
                "recording {} is not valid UTF-8: invalid byte sequence at byte offset 12",
                path.display()
            )
        );
        let path = dir.write("latin1.srpl", &gzip(b"db\nrp\ncpu,host=caf\xe9 v=1\n"));
        let e = Recording::open(&path).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("at byte offset 18 of the decompressed data"),
            "{e}"
        );
    }

    #[test]
    fn bad_line_in_the_middle() {
        let text = "cpu v=1 1\ncpu v=2 2\ncpu v=oops 3\ncpu v=4 4\ncpu v=5 5\n";
        let rec = Recording::from_text(text.to_owned(), RecordingFormat::LineProtocol);
        let got = summary(rec.entries());
        assert_eq!(got.len(), 5);
        assert_eq!(
            got[2].3,
            "error: line 3, column 7: invalid field value for field 'v': 'oops'"
        );
        assert_eq!(got[2].0, 3);
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, e)| i == 2 || !e.3.starts_with("error"))
        );
        assert_eq!(got[4].0, 5);

        let srpl = SRPL.replace("value=2", "value=oops");
        let rec = Recording::from_text(srpl, RecordingFormat::Srpl);
        let got = summary(rec.entries());
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[1],
            (
                6,
                Some("telegraf"),
                Some("autogen"),
                "error: line 6, column 18: invalid field value for field 'value': 'oops'"
                    .to_owned()
            )
        );
        assert_eq!(got[2].3, "cpu,host=a Some(3)");
    }

    #[test]
    fn malformed_srpl_triples() {
        // An empty retention policy line spoils its triple only.
        let text =
            "telegraf\nautogen\ncpu v=1 1\ntelegraf\n\ncpu v=2 2\ntelegraf\nautogen\ncpu v=3 3\n";
        let rec = Recording::from_text(text.to_owned(), RecordingFormat::Srpl);
        let got = summary(rec.entries());
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(
            got[1],
            (
                5,
                Some("telegraf"),
                None,
                "error: line 5, column 1: malformed srpl entry: empty retention policy line"
                    .to_owned()
            )
        );
        assert_eq!(got[2].0, 9);
        assert_eq!(got[2].3, "cpu Some(3)");

        // A recording cut short.
        let rec = Recording::from_text(
            "db\nrp\ncpu v=1 1\ndb\nrp\n".to_owned(),
            RecordingFormat::Srpl,
        );
        let got = summary(rec.entries());
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1].3,
            "error: line 5, column 1: malformed srpl entry: the recording ends before the point line"
        );
        let rec = Recording::from_text("db\nrp\ncpu v=1 1\ndb".to_owned(), RecordingFormat::Srpl);
        let got = summary(rec.entries());
        assert_eq!(
            got[1],
            (
                4,
                Some("db"),
                None,
                "error: line 4, column 1: malformed srpl entry: the recording ends after the database line"
                    .to_owned()
            )
        );
        // An empty point line is an error for that entry.
        let rec = Recording::from_text(
            "db\nrp\n\ndb\nrp\ncpu v=1\n".to_owned(),
            RecordingFormat::Srpl,
        );
        let got = summary(rec.entries());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].3, "error: line 3, column 1: missing measurement");
        assert_eq!(got[1].0, 6);
    }

    #[test]
    fn srpl_point_with_multi_line_string() {
        let text = "db\nrp\nlog msg=\"two\nlines\" 1\ndb\nrp\ncpu v=1 2\n";
        let rec = Recording::from_text(text.to_owned(), RecordingFormat::Srpl);
        let got: Vec<_> = rec.entries().collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].line, 3);
        assert_eq!(
            got[0].point.as_ref().unwrap().fields[0].1,
            FieldValue::Str("two\nlines".into())
        );
        assert_eq!(got[1].line, 7);
    }

    /// A larger text with some bad lines, comments and a multi-line string.
    fn big_lp() -> String {
        let mut s = String::new();
        for i in 0..500 {
            match i % 50 {
                7 => s.push_str("# comment\n\n"),
                13 => s.push_str(&format!("bad,host=h{i} v=x{i} {i}\n")),
                29 => s.push_str(&format!("log,host=h{i} msg=\"a\nb\" {i}\n")),
                _ => s.push_str(&format!("cpu,host=h{i} usage={i}.5,n={i}i {i}\n")),
            }
        }
        s
    }

    fn big_srpl() -> String {
        let mut s = String::new();
        for i in 0..300 {
            let point = if i % 40 == 17 {
                format!("bad v=x {i}")
            } else {
                format!("cpu,host=h{i} v={i} {i}")
            };
            s.push_str(&format!("db{}\nrp\n{point}\n", i % 3));
        }
        s
    }

    #[test]
    fn chunks_preserve_entries_and_line_numbers() {
        for (text, format) in [
            (big_lp(), RecordingFormat::LineProtocol),
            (big_srpl(), RecordingFormat::Srpl),
            (LP.to_owned(), RecordingFormat::LineProtocol),
            (SRPL.to_owned(), RecordingFormat::Srpl),
            (
                format!("{LP}\n# trailing comment\n\n"),
                RecordingFormat::LineProtocol,
            ),
        ] {
            let rec = Recording::from_text(text.clone(), format);
            let all = summary(rec.entries());
            for target in [0, 1, 10, 100, 1000, 5000, usize::MAX] {
                let chunks = rec.chunks(target);
                assert!(!chunks.is_empty());
                let joined: String = chunks.iter().map(|c| c.text).collect();
                assert_eq!(joined, text, "target {target}");
                let from_chunks: Vec<_> =
                    chunks.iter().flat_map(|c| summary(c.entries())).collect();
                assert_eq!(from_chunks, all, "{format:?} target {target}");
                assert!(chunks.iter().all(|c| c.format == format));
                assert!(chunks.iter().all(|c| c.entries().next().is_some()));
                if target == usize::MAX {
                    assert_eq!(chunks.len(), 1);
                }
                if target == 0 {
                    assert_eq!(chunks.len(), all.len());
                }
            }
            // Roughly even pieces for a mid-size target.
            if all.len() > 100 {
                let chunks = rec.chunks(text.len() / 4);
                assert!((3..=5).contains(&chunks.len()), "{}", chunks.len());
            }
        }
        let empty = Recording::from_text(String::new(), RecordingFormat::LineProtocol);
        assert!(empty.chunks(100).is_empty());
        assert_eq!(empty.entries().count(), 0);
    }

    #[test]
    fn chunks_parse_on_two_threads() {
        let rec = Recording::from_text(big_lp(), RecordingFormat::LineProtocol);
        let chunks = rec.chunks(rec.text().len() / 2 + 1);
        assert_eq!(chunks.len(), 2);
        let counts: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|c| s.spawn(move || c.entries().filter(|e| e.point.is_ok()).count()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            counts.iter().sum::<usize>(),
            rec.entries().filter(|e| e.point.is_ok()).count()
        );
    }

    #[test]
    fn format_from_path() {
        for (name, f) in [
            ("a.srpl", RecordingFormat::Srpl),
            ("dir.lp/A.SRPL", RecordingFormat::Srpl),
            ("a.srpl.gz", RecordingFormat::Srpl),
            ("a.lp", RecordingFormat::LineProtocol),
            ("a.lp.gz", RecordingFormat::LineProtocol),
            ("srpl", RecordingFormat::LineProtocol),
            ("a.brpl", RecordingFormat::LineProtocol),
        ] {
            assert_eq!(RecordingFormat::from_path(Path::new(name)), f, "{name}");
        }
    }
}
