//! Label sets and their fingerprints.
//!
//! This module owns the [`LabelSet`] type used throughout the manager and the
//! stable 64-bit fingerprint that identifies an alert by its labels.

use std::borrow::Borrow;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A set of labels, kept sorted by name: a map from name to value with the API of a
/// `BTreeMap<String, String>` (`get`, `insert`, `remove`, `iter` in name order, ...), stored
/// as one sorted array of pairs sized to fit. Alerts carry a handful of labels, so a binary
/// search over the array is as fast as a tree and takes a third of its memory (no tree node
/// with room for eleven entries per set).
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelSet {
    pairs: Vec<(String, String)>,
}

/// Iterator over `(name, value)` in name order.
pub type Iter<'a> = std::iter::Map<
    std::slice::Iter<'a, (String, String)>,
    fn(&'a (String, String)) -> (&'a String, &'a String),
>;

fn pair_refs(p: &(String, String)) -> (&String, &String) {
    (&p.0, &p.1)
}

impl LabelSet {
    /// An empty set.
    pub const fn new() -> LabelSet {
        LabelSet { pairs: Vec::new() }
    }

    fn find<Q>(&self, name: &Q) -> Result<usize, usize>
    where
        String: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.pairs.binary_search_by(|(k, _)| k.borrow().cmp(name))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The value of label `name`.
    pub fn get<Q>(&self, name: &Q) -> Option<&String>
    where
        String: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(name).ok().map(|i| &self.pairs[i].1)
    }

    /// Whether label `name` is set.
    pub fn contains_key<Q>(&self, name: &Q) -> bool
    where
        String: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(name).is_ok()
    }

    /// Sets label `name`, returning its previous value.
    pub fn insert(&mut self, name: String, value: String) -> Option<String> {
        match self.find(name.as_str()) {
            Ok(i) => Some(std::mem::replace(&mut self.pairs[i].1, value)),
            Err(i) => {
                // Grow by one: label sets are built once and kept, so no spare room.
                self.pairs.reserve_exact(1);
                self.pairs.insert(i, (name, value));
                None
            }
        }
    }

    /// Removes label `name`, returning its value.
    pub fn remove<Q>(&mut self, name: &Q) -> Option<String>
    where
        String: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let i = self.find(name).ok()?;
        Some(self.pairs.remove(i).1)
    }

    /// Keeps only the labels for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &mut String) -> bool) {
        self.pairs.retain_mut(|(k, v)| keep(k, v));
    }

    /// `(name, value)` in name order.
    pub fn iter(&self) -> Iter<'_> {
        self.pairs
            .iter()
            .map(pair_refs as fn(&(String, String)) -> (&String, &String))
    }

    /// Names in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator + Clone {
        self.pairs.iter().map(|(k, _)| k)
    }

    /// Values in name order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator + Clone {
        self.pairs.iter().map(|(_, v)| v)
    }

    /// Drops every label.
    pub fn clear(&mut self) {
        self.pairs.clear();
    }
}

impl fmt::Debug for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<Q> std::ops::Index<&Q> for LabelSet
where
    String: Borrow<Q>,
    Q: Ord + ?Sized,
{
    type Output = String;

    fn index(&self, name: &Q) -> &String {
        match self.get(name) {
            Some(v) => v,
            None => panic!("no such label"),
        }
    }
}

impl FromIterator<(String, String)> for LabelSet {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> LabelSet {
        let mut pairs: Vec<(String, String)> = iter.into_iter().collect();
        // Stable, so of two pairs with one name the later stays last; keep its value.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|later, kept| {
            if later.0 == kept.0 {
                std::mem::swap(&mut later.1, &mut kept.1);
                true
            } else {
                false
            }
        });
        pairs.shrink_to_fit();
        LabelSet { pairs }
    }
}

impl<const N: usize> From<[(String, String); N]> for LabelSet {
    fn from(pairs: [(String, String); N]) -> LabelSet {
        pairs.into_iter().collect()
    }
}

impl Extend<(String, String)> for LabelSet {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<'a> IntoIterator for &'a LabelSet {
    type Item = (&'a String, &'a String);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for LabelSet {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.pairs.into_iter()
    }
}

impl Serialize for LabelSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.len()))?;
        for (k, v) in self {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for LabelSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LabelSet, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LabelSet;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of strings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<LabelSet, A::Error> {
                let mut pairs = Vec::with_capacity(a.size_hint().unwrap_or(0));
                while let Some(kv) = a.next_entry::<String, String>()? {
                    pairs.push(kv);
                }
                Ok(pairs.into_iter().collect())
            }
        }
        d.deserialize_map(V)
    }
}

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
    // A label set iterates in ascending name order, so no sort is needed.
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

    #[test]
    fn behaves_like_a_sorted_map() {
        use std::collections::BTreeMap;
        let mut rng = 0x1234_5678_9abc_def1_u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut ls = LabelSet::new();
        let mut bt: BTreeMap<String, String> = BTreeMap::new();
        for _ in 0..2_000 {
            let k = format!("k{}", next(12));
            let v = format!("v{}", next(5));
            match next(3) {
                0 => assert_eq!(ls.remove(k.as_str()), bt.remove(k.as_str())),
                _ => assert_eq!(ls.insert(k.clone(), v.clone()), bt.insert(k, v)),
            }
            assert!(ls.iter().eq(bt.iter()));
            assert_eq!(ls.len(), bt.len());
            let probe = format!("k{}", next(12));
            assert_eq!(ls.get(&probe), bt.get(&probe));
            assert_eq!(
                ls.contains_key(probe.as_str()),
                bt.contains_key(probe.as_str())
            );
        }
        assert_eq!(
            serde_json::to_string(&ls).unwrap(),
            serde_json::to_string(&bt).unwrap()
        );
        let back: LabelSet = serde_json::from_str(&serde_json::to_string(&bt).unwrap()).unwrap();
        assert_eq!(back, ls);
        assert_eq!(format!("{ls:?}"), format!("{bt:?}"));
        // Later pairs win, in collect and in JSON.
        let c: LabelSet = [("a", "1"), ("b", "2"), ("a", "3")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(c.get("a").map(String::as_str), Some("3"));
        assert_eq!(c.len(), 2);
        let j: LabelSet = serde_json::from_str(r#"{"b":"x","a":"1","a":"2"}"#).unwrap();
        assert_eq!(j, label_set([("a", "2"), ("b", "x")]));
        // Order between sets is the map order (by pairs).
        let x = label_set([("a", "1"), ("b", "2")]);
        let y = label_set([("a", "1"), ("c", "0")]);
        let bx: BTreeMap<_, _> = x.iter().collect();
        let by: BTreeMap<_, _> = y.iter().collect();
        assert_eq!(x.cmp(&y), bx.cmp(&by));
    }
}
