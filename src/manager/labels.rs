//! Label sets and their fingerprints.
//!
//! This module owns the [`LabelSet`] type used throughout the manager and the
//! stable 64-bit fingerprint that identifies an alert by its labels.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A set of labels, kept sorted by name: a map from name to value with the API of a
/// `BTreeMap<String, String>` (`get`, `insert`, `remove`, `iter` in name order, ...) over
/// `&str`. Every name and value lies in one string, in name order, with the end of each name
/// and value beside it: an alert's labels take two allocations sized to fit instead of one per
/// name and per value, and a lookup is a binary search over that one string. Alerts carry a
/// handful of labels and change them rarely, so an insert or remove (which rebuilds the set)
/// is cheap enough.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct LabelSet {
    /// Names and values, concatenated in name order.
    text: Box<str>,
    /// Per label, the byte offsets in `text` where its name ends and where its value ends
    /// (the next name starts there).
    ends: Box<[(u32, u32)]>,
}

/// Iterator over `(name, value)` in name order.
#[derive(Clone)]
pub struct Iter<'a> {
    set: &'a LabelSet,
    front: usize,
    back: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        if self.front == self.back {
            return None;
        }
        self.front += 1;
        Some(self.set.pair(self.front - 1))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.back - self.front, Some(self.back - self.front))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front == self.back {
            return None;
        }
        self.back -= 1;
        Some(self.set.pair(self.back))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl LabelSet {
    /// An empty set.
    pub fn new() -> LabelSet {
        LabelSet::default()
    }

    /// Builds a set from pairs already sorted by name, without two of one name. Offsets are
    /// 32-bit: a set comes from a request body or a stored row, both far below 4 GiB (request
    /// bodies are limited to tens of MiB).
    fn from_sorted<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> LabelSet {
        let len = pairs.clone().map(|(k, v)| k.len() + v.len()).sum();
        let mut text = String::with_capacity(len);
        let mut ends = Vec::with_capacity(pairs.size_hint().0);
        for (k, v) in pairs {
            text.push_str(k);
            let name_end = text.len() as u32;
            text.push_str(v);
            ends.push((name_end, text.len() as u32));
        }
        LabelSet {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }

    /// Builds a set from pairs in any order; of two pairs with one name, the later wins.
    fn from_pairs<K: AsRef<str>, V: AsRef<str>>(mut pairs: Vec<(K, V)>) -> LabelSet {
        // Stable, so of two pairs with one name the later stays last.
        pairs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        let keep = |i: &usize| {
            pairs
                .get(i + 1)
                .is_none_or(|next| next.0.as_ref() != pairs[*i].0.as_ref())
        };
        let kept = (0..pairs.len()).filter(keep);
        LabelSet::from_sorted(kept.map(|i| (pairs[i].0.as_ref(), pairs[i].1.as_ref())))
    }

    fn name_at(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1].1 };
        &self.text[start as usize..self.ends[i].0 as usize]
    }

    fn value_at(&self, i: usize) -> &str {
        let (name_end, end) = self.ends[i];
        &self.text[name_end as usize..end as usize]
    }

    fn pair(&self, i: usize) -> (&str, &str) {
        (self.name_at(i), self.value_at(i))
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.ends.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.name_at(mid).cmp(name) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The value of label `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name).ok().map(|i| self.value_at(i))
    }

    /// Whether label `name` is set.
    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Sets label `name`, returning its previous value.
    pub fn insert(&mut self, name: String, value: String) -> Option<String> {
        let (old, at) = match self.find(&name) {
            Ok(i) => (Some(self.value_at(i).to_string()), i),
            Err(i) => (None, i),
        };
        let skip = usize::from(old.is_some());
        let rebuilt = LabelSet::from_sorted(
            self.iter()
                .take(at)
                .chain(std::iter::once((name.as_str(), value.as_str())))
                .chain(self.iter().skip(at + skip)),
        );
        *self = rebuilt;
        old
    }

    /// Removes label `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.find(name).ok()?;
        let old = self.value_at(i).to_string();
        let rebuilt = LabelSet::from_sorted(self.iter().take(i).chain(self.iter().skip(i + 1)));
        *self = rebuilt;
        Some(old)
    }

    /// Keeps only the labels for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        let kept: Vec<bool> = self.iter().map(|(k, v)| keep(k, v)).collect();
        if kept.iter().all(|k| *k) {
            return;
        }
        let rebuilt = LabelSet::from_sorted(
            self.iter()
                .zip(kept.iter())
                .filter(|(_, k)| **k)
                .map(|(p, _)| p),
        );
        *self = rebuilt;
    }

    /// `(name, value)` in name order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            set: self,
            front: 0,
            back: self.ends.len(),
        }
    }

    /// Names in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator + Clone {
        self.iter().map(|(k, _)| k)
    }

    /// Values in name order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator + Clone {
        self.iter().map(|(_, v)| v)
    }

    /// Drops every label.
    pub fn clear(&mut self) {
        *self = LabelSet::default();
    }

    /// Bytes on the heap.
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.text.len() + std::mem::size_of_val(&*self.ends)
    }
}

/// Ordered as a sorted list of `(name, value)` pairs: by the first pair that differs, a set
/// that is a prefix of another first.
impl Ord for LabelSet {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.iter().cmp(other.iter())
    }
}

impl PartialOrd for LabelSet {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl std::ops::Index<&str> for LabelSet {
    type Output = str;

    fn index(&self, name: &str) -> &str {
        match self.get(name) {
            Some(v) => v,
            None => panic!("no such label"),
        }
    }
}

impl FromIterator<(String, String)> for LabelSet {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> LabelSet {
        LabelSet::from_pairs(iter.into_iter().collect())
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for LabelSet {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> LabelSet {
        LabelSet::from_pairs(iter.into_iter().collect())
    }
}

impl<const N: usize> From<[(String, String); N]> for LabelSet {
    fn from(pairs: [(String, String); N]) -> LabelSet {
        pairs.into_iter().collect()
    }
}

impl Extend<(String, String)> for LabelSet {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, iter: I) {
        let mut pairs: Vec<(String, String)> = std::mem::take(self).into_iter().collect();
        pairs.extend(iter);
        *self = LabelSet::from_pairs(pairs);
    }
}

impl<'a> IntoIterator for &'a LabelSet {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for LabelSet {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
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

/// A string read from the input, borrowed when the input holds it as is (no escapes).
struct Text<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Borrowed(v)))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Owned(v.to_string())))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
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
                let mut pairs: Vec<(Text<'de>, Text<'de>)> =
                    Vec::with_capacity(a.size_hint().unwrap_or(0));
                while let Some(kv) = a.next_entry::<Text<'de>, Text<'de>>()? {
                    pairs.push(kv);
                }
                Ok(LabelSet::from_pairs(pairs))
            }
        }
        d.deserialize_map(V)
    }
}

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
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

    /// Pseudo-random numbers below `n`, the same sequence for a seed.
    fn xorshift(mut rng: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        }
    }

    #[test]
    fn a_set_takes_its_text_and_two_offsets_per_label() {
        let ls = label_set([
            ("alertname", "DiskFull"),
            ("instance", "node0003:9100"),
            ("severity", "critical"),
        ]);
        let text = "alertname".len() + "DiskFull".len() + "instance".len();
        let text = text + "node0003:9100".len() + "severity".len() + "critical".len();
        assert_eq!(ls.heap_bytes(), text + 3 * 8);
        assert_eq!(ls["instance"], *"node0003:9100");
        assert_eq!(
            ls.keys().rev().collect::<Vec<_>>(),
            ["severity", "instance", "alertname"]
        );
        assert_eq!(LabelSet::new().heap_bytes(), 0);
        // Escaped JSON strings are read as well as borrowed ones.
        let j: LabelSet = serde_json::from_str(r#"{"a\"b":"line\none","c":"d"}"#).unwrap();
        assert_eq!(j.get("a\"b"), Some("line\none"));
        assert_eq!(j.get("c"), Some("d"));
    }

    #[test]
    fn sets_order_as_their_lists_of_pairs() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut sets = Vec::new();
        for _ in 0..300 {
            let n = next(4);
            let pairs: Vec<(String, String)> = (0..n)
                .map(|_| {
                    (
                        format!("k{}", next(3)),
                        ["", "a", "ab", "b"][next(4) as usize].to_string(),
                    )
                })
                .collect();
            let ls: LabelSet = pairs.into_iter().collect();
            let list: Vec<(String, String)> = ls.clone().into_iter().collect();
            sets.push((ls, list));
        }
        for (a, la) in &sets {
            for (b, lb) in &sets {
                assert_eq!(a.cmp(b), la.cmp(lb), "{a:?} {b:?}");
                assert_eq!(a == b, la == lb);
            }
        }
    }

    #[test]
    fn behaves_like_a_sorted_map() {
        use std::collections::BTreeMap;
        let mut next = xorshift(0x1234_5678_9abc_def1);
        let mut ls = LabelSet::new();
        let mut bt: BTreeMap<String, String> = BTreeMap::new();
        for _ in 0..2_000 {
            let k = format!("k{}", next(12));
            let v = format!("v{}", next(5));
            match next(3) {
                0 => assert_eq!(ls.remove(k.as_str()), bt.remove(k.as_str())),
                _ => assert_eq!(ls.insert(k.clone(), v.clone()), bt.insert(k, v)),
            }
            assert!(
                ls.iter()
                    .eq(bt.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            );
            assert_eq!(ls.len(), bt.len());
            let probe = format!("k{}", next(12));
            assert_eq!(ls.get(&probe), bt.get(&probe).map(String::as_str));
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
        assert_eq!(c.get("a"), Some("3"));
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
