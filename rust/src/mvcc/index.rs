//! The ordered index from key to [`KeyIndex`], and etcd's key-range rules.

use std::collections::btree_map;
use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use super::key_index::{KeyIndex, KeyRevision};
use super::revision::Revision;

/// Which keys a request names, decoded from etcd's `(key, range_end)` pair:
/// an empty `range_end` is the single key, `range_end == "\0"` is every key
/// `>= key`, anything else is `[key, range_end)` (empty when
/// `range_end <= key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRange<'a> {
    Single(&'a [u8]),
    From(&'a [u8]),
    Between(&'a [u8], &'a [u8]),
}

impl<'a> KeyRange<'a> {
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> KeyRange<'a> {
        match range_end {
            [] => KeyRange::Single(key),
            [0] => KeyRange::From(key),
            end => KeyRange::Between(key, end),
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match *self {
            KeyRange::Single(key) => k == key,
            KeyRange::From(key) => k >= key,
            KeyRange::Between(key, end) => k >= key && k < end,
        }
    }

    fn bounds(&self) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
        match *self {
            KeyRange::Single(key) => (Bound::Included(key), Bound::Included(key)),
            KeyRange::From(key) => (Bound::Included(key), Bound::Unbounded),
            // An inverted range is empty; BTreeMap::range would panic on it.
            KeyRange::Between(key, end) if end <= key => {
                (Bound::Included(key), Bound::Excluded(key))
            }
            KeyRange::Between(key, end) => (Bound::Included(key), Bound::Excluded(end)),
        }
    }
}

/// Every key the store has history for, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    keys: BTreeMap<Box<[u8]>, KeyIndex>,
    /// Keys whose current generation is open.
    live: usize,
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    /// Keys that exist now.
    pub fn live_keys(&self) -> usize {
        self.live
    }

    /// Keys with any history left (live or not yet compacted away).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn key_index(&self, key: &[u8]) -> Option<&KeyIndex> {
        self.keys.get(key)
    }

    /// The key's state at revision `at`, if it existed then.
    pub fn get(&self, key: &[u8], at: i64) -> Option<KeyRevision> {
        self.keys.get(key)?.get(at)
    }

    /// The key indexes in `range`, live or not, in key order.
    pub fn iter_range<'a>(
        &'a self,
        range: KeyRange<'a>,
    ) -> btree_map::Range<'a, Box<[u8]>, KeyIndex> {
        self.keys.range::<[u8], _>(range.bounds())
    }

    /// Keys in `range` that existed at `at`, with their state then.
    pub fn range<'a>(
        &'a self,
        range: KeyRange<'a>,
        at: i64,
    ) -> impl Iterator<Item = (&'a [u8], KeyRevision)> + 'a {
        self.iter_range(range)
            .filter_map(move |(k, ki)| ki.get(at).map(|kr| (&**k, kr)))
    }

    /// How many keys in `range` existed at `at`.
    pub fn count(&self, range: KeyRange<'_>, at: i64) -> usize {
        self.range(range, at).count()
    }

    /// Records a put; returns the key's previous modification revision, None
    /// when the key had no history (the index entry is new).
    pub fn put(&mut self, key: &[u8], rev: Revision) -> Option<Revision> {
        let (prev, ki) = match self.keys.get_mut(key) {
            Some(ki) => (Some(ki.modified()), ki),
            None => (None, self.keys.entry(key.into()).or_default()),
        };
        if ki.put(rev) {
            self.live += 1;
        }
        prev
    }

    /// Records a delete of a live key; returns its previous modification
    /// revision, None (and no change) when the key does not exist now.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> Option<Revision> {
        let ki = self.keys.get_mut(key)?;
        let prev = ki.modified();
        if !ki.tombstone(rev) {
            return None;
        }
        self.live -= 1;
        Some(prev)
    }

    /// Reverses [`Index::put`]; `new_entry` when it returned None (the put
    /// created the key's entry).
    pub fn undo_put(&mut self, key: &[u8], new_entry: bool) {
        let ki = self.keys.get_mut(key).expect("undo_put on unknown key");
        if ki.undo_put() {
            self.live -= 1;
        }
        if new_entry {
            self.keys.remove(key);
        }
    }

    /// Reverses [`Index::tombstone`].
    pub fn undo_tombstone(&mut self, key: &[u8]) {
        let ki = self
            .keys
            .get_mut(key)
            .expect("undo_tombstone on unknown key");
        ki.undo_tombstone();
        self.live += 1;
    }

    /// Snapshot restore: the oldest surviving revision of a key with no
    /// history yet is a put.
    pub fn restore(&mut self, key: &[u8], created: Revision, modified: Revision, version: i64) {
        self.keys
            .entry(key.into())
            .or_default()
            .restore(created, modified, version);
        self.live += 1;
    }

    /// Snapshot restore: the oldest surviving revision of a key with no
    /// history yet is a tombstone.
    pub fn restore_tombstone(&mut self, key: &[u8], rev: Revision) {
        self.keys
            .entry(key.into())
            .or_default()
            .restore_tombstone(rev);
    }

    /// Compacts every key at `at` (see [`KeyIndex::compact`]), dropping keys
    /// left without history; returns the revisions still referenced at or
    /// before `at`.
    pub fn compact(&mut self, at: i64) -> HashSet<Revision> {
        let mut kept = HashSet::new();
        self.keys.retain(|_, ki| {
            ki.compact(at, &mut kept);
            !ki.is_empty()
        });
        kept
    }

    /// The revisions at or before `at` that a compaction at `at` would keep,
    /// minus closing tombstones (see [`KeyIndex::keep`]); for HashKV.
    pub fn keep(&self, at: i64) -> HashSet<Revision> {
        let mut kept = HashSet::new();
        for ki in self.keys.values() {
            ki.keep(at, &mut kept);
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// a@2, b@3, c@4, delete b@5, d@6
    fn sample() -> Index {
        let mut ix = Index::new();
        ix.put(b"a", r(2));
        ix.put(b"b", r(3));
        ix.put(b"c", r(4));
        ix.tombstone(b"b", r(5));
        ix.put(b"d", r(6));
        ix
    }

    fn keys(ix: &Index, range: KeyRange<'_>, at: i64) -> Vec<String> {
        ix.range(range, at)
            .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn key_range_decodes_etcd_conventions() {
        assert_eq!(KeyRange::new(b"a", b""), KeyRange::Single(b"a"));
        assert_eq!(KeyRange::new(b"a", b"\0"), KeyRange::From(b"a"));
        assert_eq!(KeyRange::new(b"a", b"c"), KeyRange::Between(b"a", b"c"));
    }

    #[test]
    fn key_range_contains() {
        assert!(KeyRange::new(b"a", b"").contains(b"a"));
        assert!(!KeyRange::new(b"a", b"").contains(b"ab"));
        assert!(KeyRange::new(b"b", b"\0").contains(b"zzz"));
        assert!(!KeyRange::new(b"b", b"\0").contains(b"a"));
        assert!(KeyRange::new(b"a", b"c").contains(b"b"));
        assert!(!KeyRange::new(b"a", b"c").contains(b"c"));
    }

    #[test]
    fn get_single_key_at_revision() {
        let ix = sample();
        assert_eq!(ix.get(b"b", 4).unwrap().modified, r(3));
        assert_eq!(ix.get(b"b", 5), None);
        assert_eq!(ix.get(b"zz", 6), None);
    }

    #[test]
    fn range_single_key() {
        let ix = sample();
        assert_eq!(keys(&ix, KeyRange::new(b"c", b""), 6), vec!["c"]);
        assert!(keys(&ix, KeyRange::new(b"b", b""), 6).is_empty());
    }

    #[test]
    fn range_half_open_excludes_end() {
        let ix = sample();
        assert_eq!(keys(&ix, KeyRange::new(b"a", b"c"), 4), vec!["a", "b"]);
    }

    #[test]
    fn range_from_key_with_nul_end_returns_all_following_keys() {
        let ix = sample();
        assert_eq!(keys(&ix, KeyRange::new(b"b", b"\0"), 6), vec!["c", "d"]);
        assert_eq!(
            keys(&ix, KeyRange::new(b"\0", b"\0"), 6),
            vec!["a", "c", "d"]
        );
    }

    #[test]
    fn range_with_end_before_key_is_empty() {
        let ix = sample();
        assert!(keys(&ix, KeyRange::new(b"c", b"a"), 6).is_empty());
        assert!(keys(&ix, KeyRange::new(b"c", b"c"), 6).is_empty());
    }

    #[test]
    fn range_at_old_revision_skips_later_keys_and_sees_deleted_ones() {
        let ix = sample();
        assert_eq!(
            keys(&ix, KeyRange::new(b"a", b"\0"), 4),
            vec!["a", "b", "c"]
        );
    }

    #[test]
    fn count_counts_existing_keys_at_revision() {
        let ix = sample();
        assert_eq!(ix.count(KeyRange::new(b"a", b"\0"), 6), 3);
        assert_eq!(ix.count(KeyRange::new(b"a", b"\0"), 3), 2);
    }

    #[test]
    fn live_keys_follows_puts_and_deletes() {
        let mut ix = sample();
        assert_eq!(ix.live_keys(), 3);
        ix.put(b"a", r(7));
        assert_eq!(ix.live_keys(), 3);
        ix.put(b"b", r(8));
        assert_eq!(ix.live_keys(), 4);
    }

    #[test]
    fn tombstone_of_missing_key_returns_none() {
        let mut ix = sample();
        assert_eq!(ix.tombstone(b"b", r(7)), None);
        assert_eq!(ix.tombstone(b"zz", r(7)), None);
        assert_eq!(ix.live_keys(), 3);
    }

    #[test]
    fn compact_drops_keys_deleted_before_compaction_point() {
        let mut ix = sample();
        let kept = ix.compact(6);
        assert!(ix.key_index(b"b").is_none());
        assert_eq!(ix.len(), 3);
        assert_eq!(kept, HashSet::from([r(2), r(4), r(6)]));
    }

    #[test]
    fn compact_at_tombstone_drops_the_deleted_key() {
        let mut ix = sample();
        let kept = ix.compact(5);
        assert!(ix.key_index(b"b").is_none());
        assert!(!kept.contains(&r(5)));
    }

    #[test]
    fn keep_omits_closing_tombstones() {
        let ix = sample();
        assert_eq!(ix.keep(5), HashSet::from([r(2), r(4)]));
    }

    #[test]
    fn undo_of_new_key_put_removes_it() {
        let mut ix = sample();
        let before = ix.clone();
        let prev = ix.put(b"new", r(7));
        assert_eq!(prev, None);
        ix.undo_put(b"new", true);
        assert_eq!(ix, before);
    }

    #[test]
    fn undo_of_put_reviving_deleted_key_restores_it() {
        let mut ix = sample();
        let before = ix.clone();
        let prev = ix.put(b"b", r(7));
        assert_eq!(prev, Some(r(5)));
        ix.undo_put(b"b", false);
        assert_eq!(ix, before);
    }

    #[test]
    fn undo_tombstone_restores_live_key() {
        let mut ix = sample();
        let before = ix.clone();
        ix.tombstone(b"a", r(7)).unwrap();
        ix.undo_tombstone(b"a");
        assert_eq!(ix, before);
    }
}

#[cfg(test)]
mod memory {
    use super::*;

    fn rss_kb() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        s.lines()
            .find(|l| l.starts_with("VmRSS"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// `cargo test --release mvcc::index::memory -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn bytes_per_key_for_a_million_keys() {
        let before = rss_kb();
        let mut ix = Index::new();
        for i in 0..1_000_000i64 {
            let key = format!("/registry/pods/default/pod-{i:08}");
            ix.put(key.as_bytes(), Revision::new(i + 2, 0));
        }
        for i in 0..500_000i64 {
            let key = format!("/registry/pods/default/pod-{:08}", i * 2);
            ix.put(key.as_bytes(), Revision::new(1_000_002 + i, 0));
        }
        let after = rss_kb();
        println!(
            "{} keys: {} bytes per key",
            ix.len(),
            (after - before) * 1024 / ix.len() as u64
        );
    }
}
