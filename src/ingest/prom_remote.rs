//! Prometheus remote write (`/api/v1/prom/write`, `/api/v1/write`): a snappy-compressed
//! protobuf `WriteRequest`. Each sample becomes a point: the metric name (`__name__`) is the
//! measurement, the other labels are tags, the sample is the field `value`, the timestamp is in
//! milliseconds. Stale markers (the NaN Prometheus writes when a series disappears) are skipped.
//!
//! Samples are rendered as line protocol so they go through the same validation and engine path
//! as every other write.

use prost::Message;

/// Prometheus' staleness marker: a NaN with this exact bit pattern.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// `prometheus.WriteRequest` (only the fields alertd reads).
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// Series with their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Labels, `__name__` among them.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// Value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Unix milliseconds.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Why a remote-write body was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RemoteWriteError {
    /// Not valid snappy (block format).
    #[error("invalid snappy body: {0}")]
    Snappy(String),
    /// Decompressed size over the limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not a valid WriteRequest.
    #[error("invalid protobuf WriteRequest: {0}")]
    Protobuf(String),
}

/// Decompresses and decodes a body, refusing to decompress beyond `limit` bytes.
pub fn decode(body: &[u8], limit: usize) -> Result<WriteRequest, RemoteWriteError> {
    let len =
        snap::raw::decompress_len(body).map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    if len > limit {
        return Err(RemoteWriteError::TooLarge { limit });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| RemoteWriteError::Protobuf(e.to_string()))
}

/// Renders a request as line protocol with millisecond timestamps. Returns the text and how
/// many stale markers were skipped. A series without `__name__` is written under `prometheus`.
pub fn to_line_protocol(req: &WriteRequest) -> (String, u64) {
    let mut out = String::new();
    let mut stale = 0;
    for ts in &req.timeseries {
        let mut key = String::new();
        let name = ts
            .labels
            .iter()
            .find(|l| l.name == "__name__")
            .map(|l| l.value.trim_end_matches('\\'))
            .filter(|n| !n.is_empty())
            .unwrap_or("prometheus");
        // A line starting with '#' would be a comment; Prometheus names never start so.
        if name.starts_with('#') {
            key.push('_');
        }
        escape(name, &mut key, false);
        let usable = |s: &str| !s.trim_end_matches('\\').is_empty();
        let mut labels: Vec<&Label> = ts
            .labels
            .iter()
            .filter(|l| l.name != "__name__" && usable(&l.name) && usable(&l.value))
            .collect();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        for l in labels {
            key.push(',');
            escape(&l.name, &mut key, true);
            key.push('=');
            escape(&l.value, &mut key, true);
        }
        for s in &ts.samples {
            if s.value.to_bits() == STALE_NAN_BITS {
                stale += 1;
                continue;
            }
            if !s.value.is_finite() {
                // Line protocol has no NaN or infinity; such samples cannot be evaluated either.
                stale += 1;
                continue;
            }
            out.push_str(&key);
            out.push_str(" value=");
            let v = format!("{:?}", s.value);
            out.push_str(&v);
            out.push(' ');
            out.push_str(&s.timestamp.to_string());
            out.push('\n');
        }
    }
    (out, stale)
}

/// Writes a measurement (`tag = false`) or a tag key or value in line-protocol escaping. Line
/// protocol cannot end a name with a backslash (it would escape the delimiter after it), so
/// trailing backslashes are dropped; newlines become escaped spaces.
fn escape(s: &str, out: &mut String, tag: bool) {
    let s = s.trim_end_matches('\\');
    for c in s.chars() {
        match c {
            ',' | ' ' | '\n' | '\r' => {
                out.push('\\');
                out.push(if c == ',' { ',' } else { ' ' });
            }
            '=' if tag => out.push_str("\\="),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::line_protocol::{FieldValue, parse_line};

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|(v, t)| Sample {
                    value: *v,
                    timestamp: *t,
                })
                .collect(),
        }
    }

    #[test]
    fn samples_become_points_and_stale_markers_are_skipped() {
        let req = WriteRequest {
            timeseries: vec![series(
                &[
                    ("__name__", "node_load1"),
                    ("instance", "web 1:9100"),
                    ("job", "node"),
                    ("empty", ""),
                ],
                &[
                    (1.5, 1767225600000),
                    (f64::from_bits(STALE_NAN_BITS), 1767225615000),
                    (2.0, 1767225630000),
                ],
            )],
        };
        let mut body = Vec::new();
        req.encode(&mut body).unwrap();
        let compressed = snap::raw::Encoder::new().compress_vec(&body).unwrap();
        let decoded = decode(&compressed, 1 << 20).unwrap();
        let (lp, stale) = to_line_protocol(&decoded);
        assert_eq!(stale, 1);
        let lines: Vec<&str> = lp.lines().collect();
        assert_eq!(lines.len(), 2);
        let p = parse_line(lines[0], 1).unwrap();
        assert_eq!(p.measurement.as_str(), "node_load1");
        assert_eq!(p.tag("instance"), Some("web 1:9100"));
        assert_eq!(p.tag("job"), Some("node"));
        assert_eq!(p.tag("empty"), None);
        assert_eq!(p.field("value"), Some(&FieldValue::Float(1.5)));
        assert_eq!(p.timestamp, Some(1767225600000));
    }

    #[test]
    fn awkward_labels_still_make_valid_lines() {
        let req = WriteRequest {
            timeseries: vec![series(
                &[
                    ("__name__", "#odd name"),
                    ("a", "x\ny"),
                    ("b", "ends\\"),
                    ("c", "p=q,r s"),
                    ("\\", "v"),
                    ("d", "\\"),
                ],
                &[(1.0, 5)],
            )],
        };
        let (lp, _) = to_line_protocol(&req);
        let p = parse_line(lp.trim_end(), 1).expect("valid line protocol");
        assert_eq!(p.measurement.as_str(), "_#odd name");
        assert_eq!(p.tag("a"), Some("x y"));
        assert_eq!(p.tag("b"), Some("ends"));
        assert_eq!(p.tag("c"), Some("p=q,r s"));
        assert_eq!(p.tags.len(), 3);
    }

    #[test]
    fn bad_bodies_are_named() {
        assert!(matches!(
            decode(b"\xff\xff\xff\xff\xff", 100),
            Err(RemoteWriteError::Snappy(_))
        ));
        let big = snap::raw::Encoder::new()
            .compress_vec(&vec![0u8; 10_000])
            .unwrap();
        assert_eq!(
            decode(&big, 100),
            Err(RemoteWriteError::TooLarge { limit: 100 })
        );
        let junk = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\xff\xff")
            .unwrap();
        assert!(matches!(
            decode(&junk, 100),
            Err(RemoteWriteError::Protobuf(_))
        ));
    }
}
