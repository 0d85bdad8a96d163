//! Label sets and their fingerprints.
//!
//! This module owns the [`LabelSet`] type used throughout the manager and the
//! stable 64-bit fingerprint that identifies an alert by its labels.

use std::collections::BTreeMap;

/// A set of labels, kept sorted by name.
pub type LabelSet = BTreeMap<String, String>;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const SEPARATOR: u8 = 0xff;

fn fnv_add(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// The fingerprint of a label set.
///
/// Algorithm (fixed; it must never change, fingerprints are persisted and
/// shown to users): 64-bit FNV-1a, starting from the offset basis
/// `0xcbf29ce484222325` with prime `0x100000001b3`, fed for every label in
/// ascending name order with the UTF-8 bytes of the name, the byte `0xff`,
/// the UTF-8 bytes of the value, and the byte `0xff`. The empty label set
/// hashes to the offset basis. `0xff` never occurs in UTF-8, so the
/// encoding is unambiguous. This is the same scheme Prometheus and
/// Alertmanager use, so fingerprints agree with theirs.
pub fn fingerprint(labels: &LabelSet) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    // BTreeMap iterates in ascending key order, so no sort is needed.
    for (name, value) in labels {
        hash = fnv_add(hash, name.as_bytes());
        hash = fnv_add(hash, &[SEPARATOR]);
        hash = fnv_add(hash, value.as_bytes());
        hash = fnv_add(hash, &[SEPARATOR]);
    }
    hash
}

/// The fingerprint as 16 lowercase hexadecimal digits (zero padded), the
/// way Alertmanager shows fingerprints in its API.
pub fn fingerprint_hex(labels: &LabelSet) -> String {
    format!("{:016x}", fingerprint(labels))
}

/// Build a [`LabelSet`] from `(name, value)` pairs. Later pairs win.
pub fn label_set<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> LabelSet {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_set_is_offset_basis() {
        assert_eq!(fingerprint(&LabelSet::new()), FNV_OFFSET_BASIS);
        assert_eq!(fingerprint_hex(&LabelSet::new()), "cbf29ce484222325");
    }

    #[test]
    fn known_value_is_stable() {
        // Computed by hand from the documented algorithm: FNV-1a 64 of
        // b"a\xffb\xff".
        let mut h = FNV_OFFSET_BASIS;
        for b in [b'a', 0xff, b'b', 0xff] {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        assert_eq!(fingerprint(&label_set([("a", "b")])), h);
    }

    #[test]
    fn fnv1a_reference_vector() {
        // Published FNV-1a 64 test vector: "a" -> af63dc4c8601ec8c.
        assert_eq!(fnv_add(FNV_OFFSET_BASIS, b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let a = label_set([("x", "1"), ("y", "2")]);
        let b = label_set([("y", "2"), ("x", "1")]);
        assert_eq!(fingerprint(&a), fingerprint(&b));
    }

    #[test]
    fn separator_prevents_ambiguity() {
        let a = label_set([("ab", "c")]);
        let b = label_set([("a", "bc")]);
        assert_ne!(fingerprint(&a), fingerprint(&b));
        let c = label_set([("a", ""), ("b", "")]);
        let d = label_set([("a", "b")]);
        assert_ne!(fingerprint(&c), fingerprint(&d));
    }

    #[test]
    fn hex_is_16_lowercase_digits() {
        for ls in [
            LabelSet::new(),
            label_set([("alertname", "DiskFull")]),
            label_set([("a", "1"), ("b", "2")]),
        ] {
            let s = fingerprint_hex(&ls);
            assert_eq!(s.len(), 16);
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
            assert_eq!(u64::from_str_radix(&s, 16).unwrap(), fingerprint(&ls));
        }
    }
}
