//! Feeds arbitrary request bodies through the service's write paths: gzip and identity decoding
//! with a size limit, line validation (partial writes), normalization for `alertd record`, and
//! Prometheus remote-write decoding. Nothing may panic, limits must hold, and every line range
//! handed to the engine must lie inside the body.

#![no_main]

use alertd::engine::MeasurementFilter;
use alertd::ingest::line_protocol::Precision;
use alertd::ingest::{prom_remote, write};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let limit = 1 << 16;
    let encoding = match selector % 3 {
        0 => None,
        1 => Some("gzip"),
        _ => Some("identity"),
    };
    let precision = [Precision::Nanoseconds, Precision::Seconds, Precision::Milliseconds][(selector as usize / 3) % 3];
    if let Ok(decoded) = write::decode_body(encoding, Bytes::copy_from_slice(body), limit) {
        assert!(decoded.len() <= limit);
        let v = write::validate(decoded.clone(), "db".into(), "rp".into(), precision, 0, &MeasurementFilter::everything());
        assert!(v.problems.len() <= write::MAX_REPORTED_ERRORS);
        assert_eq!(v.accepted + v.rejected, v.received);
        for &(s, e, m) in &v.batch.lines {
            assert!(s <= e && (e as usize) <= decoded.len() && s + m <= e);
        }
        let _ = write::normalize(&decoded, precision, 0, |_| true);
    }
    if let Ok(req) = prom_remote::decode(body, limit) {
        let (lp, _) = prom_remote::to_line_protocol(&req);
        // What remote write produces must itself be valid line protocol.
        let v = write::validate(Bytes::from(lp), "db".into(), "rp".into(), Precision::Milliseconds, 0, &MeasurementFilter::everything());
        assert_eq!(v.rejected, 0, "{:?}", v.problems);
    }
});
