//! The line-protocol write path shared by `/write` and `/api/v2/write`: body decoding (gzip with
//! a size limit enforced while decompressing), validation of every line with up to 100 errors
//! reported by line number, and the batch handed to the rules engine.
//!
//! Valid lines are kept even when others fail (InfluxDB's partial write). Only lines of a
//! measurement some rule reads are forwarded, already parsed ([`Points`]): the engine shards
//! read them without parsing again.

use bytes::Bytes;
use std::io::Read;
use std::sync::Arc;

use super::line_protocol::{ParsedLine, Precision, parse_line, split_lines};
use super::points::{Points, PointsPool};
use crate::engine::MeasurementFilter;

/// Vectors of evaluated batches, reused by the next requests.
pub static SPARE_POINTS: PointsPool = PointsPool::new();

/// Errors are listed up to this many per request; the rest are counted.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// Why a write request was refused as a whole.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WriteError {
    /// The body (after decompression) is over the limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// `Content-Encoding` other than gzip or identity.
    #[error("unsupported Content-Encoding '{0}': send gzip or no encoding")]
    UnsupportedEncoding(String),
    /// The gzip stream is broken.
    #[error("invalid gzip body: {0}")]
    BadGzip(String),
    /// Bad `precision` parameter.
    #[error("{0}")]
    BadPrecision(String),
    /// The body is not in the endpoint's format (e.g. not a snappy protobuf).
    #[error("{0}")]
    BadBody(String),
    /// A required parameter is missing.
    #[error("missing required parameter '{0}'")]
    MissingParameter(&'static str),
}

/// Decodes a request body. `encoding` is the `Content-Encoding` header.
pub fn decode_body(encoding: Option<&str>, body: Bytes, limit: usize) -> Result<Bytes, WriteError> {
    match encoding
        .map(str::trim)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("") | Some("identity") => {
            if body.len() > limit {
                return Err(WriteError::TooLarge { limit });
            }
            Ok(body)
        }
        Some("gzip") | Some("x-gzip") => {
            let mut out = SPARE_POINTS.take_body((body.len() * 4).min(limit));
            let mut dec = flate2::read::MultiGzDecoder::new(&body[..]).take(limit as u64 + 1);
            dec.read_to_end(&mut out)
                .map_err(|e| WriteError::BadGzip(e.to_string()))?;
            if out.len() > limit {
                return Err(WriteError::TooLarge { limit });
            }
            Ok(Bytes::from(out))
        }
        Some(other) => Err(WriteError::UnsupportedEncoding(other.to_string())),
    }
}

/// A rejected line.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LineProblem {
    /// 1-based line number in the body.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// A validated body, ready for the engine.
#[derive(Debug)]
pub struct WriteBatch {
    /// The valid lines some rule reads, parsed, with the body text they point into.
    pub lines: Points,
    /// Database.
    pub db: Arc<str>,
    /// Retention policy.
    pub rp: Arc<str>,
    /// Timestamp precision.
    pub precision: Precision,
    /// Time given to points without a timestamp (the time the request arrived, ns).
    pub now: i64,
}

impl WriteBatch {
    /// Bytes the batch holds while queued (body text and parsed points).
    pub fn bytes(&self) -> usize {
        self.lines.bytes()
    }
}

/// Result of validating a body.
#[derive(Debug)]
pub struct Validated {
    /// What goes to the engine.
    pub batch: WriteBatch,
    /// Lines read (excluding blank and comment lines).
    pub received: u64,
    /// Valid lines.
    pub accepted: u64,
    /// Up to [`MAX_REPORTED_ERRORS`] problems.
    pub problems: Vec<LineProblem>,
    /// All rejected lines.
    pub rejected: u64,
    /// Distinct values of the host tag among the valid lines (for the host registry).
    pub hosts: Vec<String>,
}

/// Parses every line, keeps the valid ones a rule reads, collects problems and the values of
/// the `host_tag` tag.
pub fn validate(
    body: Bytes,
    db: Arc<str>,
    rp: Arc<str>,
    precision: Precision,
    now: i64,
    filter: &MeasurementFilter,
    host_tag: &str,
) -> Validated {
    // An agent's lines name the same host, so consecutive repeats are skipped cheaply.
    let mut hosts: Vec<String> = Vec::new();
    // Notes the line's host; returns its hash, which places the point on an engine shard.
    let mut note_host = |p: &ParsedLine<'_>| {
        let h = p.tag(host_tag);
        if let Some(h) = h
            && hosts.last().is_none_or(|l| l != h)
        {
            hosts.push(h.to_string());
        }
        crate::engine::host_hash(h.unwrap_or(""))
    };
    let mut points = Points::new(SPARE_POINTS.take());
    let mut problems = Vec::new();
    let (mut received, mut accepted, mut rejected) = (0u64, 0u64, 0u64);
    let mut reject =
        |line: usize, column: usize, message: String, problems: &mut Vec<LineProblem>| {
            rejected += 1;
            if problems.len() < MAX_REPORTED_ERRORS {
                problems.push(LineProblem {
                    line,
                    column,
                    message,
                });
            }
        };
    // Keeps a valid line for the engine when a rule reads it; `at` is where the batch text
    // holds it.
    let keep = |points: &mut Points, line: &str, at: usize, p: &ParsedLine<'_>, host: u64| {
        if filter.wants(p.measurement.as_str()) {
            let t = p
                .timestamp
                .and_then(|ts| precision.to_nanos(ts))
                .unwrap_or(now);
            if !points.push(line, at, p, t, host) {
                tracing::warn!("A line beyond the first 2 GiB of a request body is not evaluated.");
            }
        }
    };
    // The body becomes the batch text without a copy when it is valid UTF-8 and not shared.
    match String::from_utf8(Vec::from(body)) {
        Ok(text) => {
            for (line_no, line) in split_lines(&text) {
                received += 1;
                match parse_line(line, line_no) {
                    Ok(p) => {
                        if let Some(ts) = p.timestamp
                            && precision.to_nanos(ts).is_none()
                        {
                            reject(
                                line_no,
                                1,
                                format!("timestamp {ts} is out of range at precision {precision}"),
                                &mut problems,
                            );
                            continue;
                        }
                        accepted += 1;
                        let host = note_host(&p);
                        let at = line.as_ptr() as usize - text.as_ptr() as usize;
                        keep(&mut points, line, at, &p, host);
                    }
                    Err(e) => reject(e.line, e.column, e.kind.to_string(), &mut problems),
                }
            }
            points.set_text(text);
        }
        Err(e) => {
            // Reject only the lines that are not UTF-8; the rest are still valid, and the ones
            // a rule reads are copied into the batch text.
            let body = e.into_bytes();
            let mut copy = String::new();
            for (i, raw) in body.split(|b| *b == b'\n').enumerate() {
                let line_no = i + 1;
                match std::str::from_utf8(raw) {
                    Err(e) => {
                        received += 1;
                        reject(
                            line_no,
                            e.valid_up_to() + 1,
                            "invalid UTF-8".to_string(),
                            &mut problems,
                        );
                    }
                    Ok(s) if s.trim().is_empty() || s.trim_start().starts_with('#') => {}
                    Ok(s) => {
                        received += 1;
                        let s = s.trim_end_matches('\r');
                        match parse_line(s, line_no) {
                            Ok(p)
                                if p.timestamp
                                    .is_some_and(|ts| precision.to_nanos(ts).is_none()) =>
                            {
                                reject(
                                    line_no,
                                    1,
                                    "timestamp out of range".to_string(),
                                    &mut problems,
                                )
                            }
                            Ok(p) => {
                                accepted += 1;
                                let host = note_host(&p);
                                if filter.wants(p.measurement.as_str()) {
                                    let at = copy.len();
                                    copy.push_str(s);
                                    copy.push('\n');
                                    keep(&mut points, s, at, &p, host);
                                }
                            }
                            Err(e) => reject(e.line, e.column, e.kind.to_string(), &mut problems),
                        }
                    }
                }
            }
            points.set_text(copy);
        }
    }
    hosts.sort_unstable();
    hosts.dedup();
    Validated {
        hosts,
        batch: WriteBatch {
            lines: points,
            db,
            rp,
            precision,
            now,
        },
        received,
        accepted,
        problems,
        rejected,
    }
}

/// The valid lines of a body with their timestamps in nanoseconds (`now` for lines without
/// one): what `alertd record` captures. Lines that are not valid UTF-8 or do not parse are left
/// out, as the service rejected them.
pub fn normalize(
    body: &[u8],
    precision: Precision,
    now: i64,
    mut keep: impl FnMut(&str) -> bool,
) -> String {
    let mut out = String::new();
    for raw in body.split(|b| *b == b'\n') {
        let Ok(line) = std::str::from_utf8(raw) else {
            continue;
        };
        let line = line.trim_end_matches('\r');
        let Ok(p) = parse_line(line, 1) else { continue };
        if !keep(p.measurement.as_str()) {
            continue;
        }
        let (base, ts) = match p.timestamp {
            Some(ts) => {
                let trimmed = line.trim_end();
                let cut = trimmed.rfind(' ').unwrap_or(trimmed.len());
                (&trimmed[..cut], precision.to_nanos(ts))
            }
            None => (line.trim_end(), Some(now)),
        };
        let Some(ts) = ts else { continue };
        out.push_str(base);
        out.push(' ');
        out.push_str(&ts.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::LineView;
    use std::io::Write;

    fn all() -> MeasurementFilter {
        MeasurementFilter::everything()
    }

    #[test]
    fn partial_writes_keep_valid_lines_and_report_bad_ones() {
        let body = Bytes::from_static(b"cpu v=1 1\ncpu v=abc 2\n\nmem v=2 3\ncpu\n");
        let v = validate(
            body,
            "db".into(),
            "autogen".into(),
            Precision::Nanoseconds,
            0,
            &all(),
            "host",
        );
        assert_eq!((v.received, v.accepted, v.rejected), (4, 2, 2));
        assert_eq!(v.problems[0].line, 2);
        assert!(
            v.problems[0]
                .message
                .contains("invalid field value for field 'v'"),
            "{:?}",
            v.problems
        );
        assert_eq!(v.problems[1].line, 5);
        let kept: Vec<(String, i64)> = v
            .batch
            .lines
            .iter()
            .map(|p| (p.series_key().to_string(), p.time()))
            .collect();
        assert_eq!(kept, [("cpu".to_string(), 1), ("mem".to_string(), 3)]);
    }

    #[test]
    fn normalized_lines_carry_nanosecond_timestamps() {
        let body = b"cpu,host=a v=1 1767225600\nmem v=2\nbad\ncpu,host=b msg=\"a b\" 1767225601\n";
        let out = normalize(body, Precision::Seconds, 42, |_| true);
        assert_eq!(
            out,
            "cpu,host=a v=1 1767225600000000000\nmem v=2 42\ncpu,host=b msg=\"a b\" 1767225601000000000\n"
        );
        let only_cpu = normalize(body, Precision::Seconds, 42, |m| m == "cpu");
        assert_eq!(only_cpu.lines().count(), 2);
    }

    #[test]
    fn errors_are_capped_at_100() {
        let body: String = (0..250).map(|_| "bad\n").collect();
        let v = validate(
            Bytes::from(body),
            "db".into(),
            "rp".into(),
            Precision::Nanoseconds,
            0,
            &all(),
            "host",
        );
        assert_eq!(v.rejected, 250);
        assert_eq!(v.problems.len(), MAX_REPORTED_ERRORS);
    }

    #[test]
    fn invalid_utf8_rejects_only_that_line() {
        let mut body = b"cpu v=1 1\n".to_vec();
        body.extend_from_slice(b"cpu,host=\xff v=1 2\nmem v=1 3\n");
        let v = validate(
            Bytes::from(body),
            "db".into(),
            "rp".into(),
            Precision::Nanoseconds,
            0,
            &all(),
            "host",
        );
        assert_eq!((v.accepted, v.rejected), (2, 1));
        assert_eq!(v.problems[0].line, 2);
        let kept: Vec<(String, String, i64)> = v
            .batch
            .lines
            .iter()
            .map(|p| {
                (
                    p.series_key().to_string(),
                    p.measurement().to_string(),
                    p.time(),
                )
            })
            .collect();
        let want = |k: &str, t| (k.to_string(), k.to_string(), t);
        assert_eq!(kept, [want("cpu", 1), want("mem", 3)]);
        assert_eq!(v.batch.lines.text(), "cpu v=1 1\nmem v=1 3\n");
    }

    #[test]
    fn gzip_is_decoded_and_the_limit_holds_while_decompressing() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&vec![b'a'; 1_000_000]).unwrap();
        let gz = Bytes::from(enc.finish().unwrap());
        assert!(gz.len() < 10_000);
        assert_eq!(
            decode_body(Some("gzip"), gz.clone(), 2_000_000)
                .unwrap()
                .len(),
            1_000_000
        );
        assert_eq!(
            decode_body(Some("gzip"), gz, 100_000),
            Err(WriteError::TooLarge { limit: 100_000 })
        );
        assert!(matches!(
            decode_body(Some("gzip"), Bytes::from_static(b"not gzip"), 100),
            Err(WriteError::BadGzip(_))
        ));
        assert!(matches!(
            decode_body(Some("br"), Bytes::new(), 100),
            Err(WriteError::UnsupportedEncoding(_))
        ));
    }
}
