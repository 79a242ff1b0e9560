//! Which watchers a key concerns: the index of synced watchers that every
//! applied event is matched against (etcd's watcherGroup). Exact keys sit
//! in a hash map; ranges, `>= key` ranges included, in an interval set that
//! answers "which ranges hold this key" in O(log n + matches).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A watcher's handle in the hub: its slot number.
pub type WatcherKey = u32;

/// The keys one watcher watches, decoded from etcd's `(key, range_end)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WatchRange {
    /// Exactly this key (`range_end` empty).
    Single(Vec<u8>),
    /// `[start, end)`; `end` None is every key `>= start` (`range_end` "\0").
    Range {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
}

impl WatchRange {
    /// etcd's watch rules: an empty key is "\0"; a `range_end` of "\0"
    /// watches every key from `key` on. None for an empty range
    /// (`range_end <= key`).
    pub fn from_request(key: &[u8], range_end: &[u8]) -> Option<WatchRange> {
        let key = if key.is_empty() {
            vec![0]
        } else {
            key.to_vec()
        };
        match range_end {
            [] => Some(WatchRange::Single(key)),
            [0] => Some(WatchRange::Range {
                start: key,
                end: None,
            }),
            end if end <= key.as_slice() => None,
            end => Some(WatchRange::Range {
                start: key,
                end: Some(end.to_vec()),
            }),
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            WatchRange::Single(key) => k == key.as_slice(),
            WatchRange::Range { start, end } => {
                k >= start.as_slice() && end.as_ref().is_none_or(|e| k < e.as_slice())
            }
        }
    }

    /// `(key, range_end)` as Range spells it (for reading history).
    pub fn as_request(&self) -> (&[u8], &[u8]) {
        match self {
            WatchRange::Single(key) => (key, &[]),
            WatchRange::Range { start, end: None } => (start, &[0]),
            WatchRange::Range {
                start,
                end: Some(end),
            } => (start, end),
        }
    }
}

/// A hasher for watcher keys, which are small dense integers: SipHash's
/// cost buys nothing here.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub type KeySet = HashSet<WatcherKey, BuildHasherDefault<KeyHasher>>;

/// Every synced watcher, by what it watches.
#[derive(Default)]
pub struct Index {
    keys: HashMap<Vec<u8>, KeySet>,
    ranges: IntervalSet,
    len: usize,
}

impl Index {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn insert(&mut self, range: &WatchRange, w: WatcherKey) {
        let added = match range {
            WatchRange::Single(key) => self.keys.entry(key.clone()).or_default().insert(w),
            WatchRange::Range { start, end } => self.ranges.insert(start, end, w),
        };
        if added {
            self.len += 1;
        }
    }

    pub fn remove(&mut self, range: &WatchRange, w: WatcherKey) {
        let removed = match range {
            WatchRange::Single(key) => match self.keys.get_mut(key.as_slice()) {
                Some(set) => {
                    let removed = set.remove(&w);
                    if set.is_empty() {
                        self.keys.remove(key.as_slice());
                    }
                    removed
                }
                None => false,
            },
            WatchRange::Range { start, end } => self.ranges.remove(start, end, w),
        };
        if removed {
            self.len -= 1;
        }
    }

    /// Calls `f` with every watcher whose key or range holds `key`, once each.
    pub fn for_each_match(&self, key: &[u8], mut f: impl FnMut(WatcherKey)) {
        if let Some(set) = self.keys.get(key) {
            set.iter().for_each(|&w| f(w));
        }
        self.ranges
            .stab(key, &mut |set| set.iter().for_each(|&w| f(w)));
    }
}

/// The end of an interval: a key, or past every key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum End {
    Key(Vec<u8>),
    Infinite,
}

impl End {
    fn after(&self, key: &[u8]) -> bool {
        match self {
            End::Key(e) => e.as_slice() > key,
            End::Infinite => true,
        }
    }
}

type Interval = (Vec<u8>, End);

struct Members {
    watchers: KeySet,
    /// Whether the interval is part of the built arrays (else it is pending).
    built: bool,
}

/// Distinct intervals `[start, end)`, each with the watchers on it.
///
/// The built part is sorted by start under a segment tree of the largest
/// end in each subtree: a stab walks only into subtrees that can hold the
/// key. Intervals added since the last build are scanned one by one, and
/// emptied ones skipped, until enough of either piles up to rebuild
/// (amortised O(log n) per change).
#[derive(Default)]
struct IntervalSet {
    sets: HashMap<Interval, Members>,
    built: Vec<Interval>,
    /// Node i's largest-end interval (an index into `built`), leaves from
    /// `size`; NONE for an empty subtree.
    tree: Vec<u32>,
    size: usize,
    pending: Vec<Interval>,
    /// Built intervals with no watchers left.
    dead: usize,
}

const NONE: u32 = u32::MAX;

impl IntervalSet {
    fn insert(&mut self, start: &[u8], end: &Option<Vec<u8>>, w: WatcherKey) -> bool {
        let ivl: Interval = (
            start.to_vec(),
            end.clone().map(End::Key).unwrap_or(End::Infinite),
        );
        if let Some(m) = self.sets.get_mut(&ivl) {
            return m.watchers.insert(w);
        }
        let built = self.built.binary_search(&ivl).is_ok();
        let mut watchers = KeySet::default();
        watchers.insert(w);
        self.sets.insert(ivl.clone(), Members { watchers, built });
        if built {
            self.dead -= 1;
        } else {
            self.pending.push(ivl);
            if self.pending.len() > 16 + self.built.len() / 4 {
                self.rebuild();
            }
        }
        true
    }

    fn remove(&mut self, start: &[u8], end: &Option<Vec<u8>>, w: WatcherKey) -> bool {
        let ivl: Interval = (
            start.to_vec(),
            end.clone().map(End::Key).unwrap_or(End::Infinite),
        );
        let Some(m) = self.sets.get_mut(&ivl) else {
            return false;
        };
        if !m.watchers.remove(&w) {
            return false;
        }
        if m.watchers.is_empty() {
            let built = m.built;
            self.sets.remove(&ivl);
            if built {
                self.dead += 1;
                if self.dead > 16 + self.built.len() / 2 {
                    self.rebuild();
                }
            } else if let Some(i) = self.pending.iter().position(|p| *p == ivl) {
                self.pending.swap_remove(i);
            }
        }
        true
    }

    fn rebuild(&mut self) {
        let mut ivls: Vec<Interval> = self.sets.keys().cloned().collect();
        ivls.sort_unstable();
        let size = ivls.len().next_power_of_two().max(1);
        let mut tree = vec![NONE; 2 * size];
        for i in 0..ivls.len() {
            tree[size + i] = i as u32;
        }
        for node in (1..size).rev() {
            let (l, r) = (tree[2 * node], tree[2 * node + 1]);
            tree[node] = match (l, r) {
                (NONE, x) | (x, NONE) => x,
                (l, r) if ivls[l as usize].1 >= ivls[r as usize].1 => l,
                (_, r) => r,
            };
        }
        for m in self.sets.values_mut() {
            m.built = true;
        }
        self.built = ivls;
        self.tree = tree;
        self.size = size;
        self.pending.clear();
        self.dead = 0;
    }

    /// Calls `f` with the watcher set of every interval holding `key`.
    fn stab(&self, key: &[u8], f: &mut dyn FnMut(&KeySet)) {
        for ivl in &self.pending {
            if ivl.0.as_slice() <= key && ivl.1.after(key) {
                if let Some(m) = self.sets.get(ivl) {
                    f(&m.watchers);
                }
            }
        }
        // Intervals [0, pos) start at or before the key.
        let pos = self.built.partition_point(|ivl| ivl.0.as_slice() <= key);
        if pos == 0 {
            return;
        }
        let mut todo = vec![(1usize, 0usize, self.size)];
        while let Some((node, lo, hi)) = todo.pop() {
            let best = self.tree[node];
            if lo >= pos || best == NONE || !self.built[best as usize].1.after(key) {
                continue;
            }
            if node >= self.size {
                if let Some(m) = self.sets.get(&self.built[lo]) {
                    f(&m.watchers);
                }
                continue;
            }
            let mid = (lo + hi) / 2;
            todo.push((2 * node + 1, mid, hi));
            todo.push((2 * node, lo, mid));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(index: &Index, key: &[u8]) -> Vec<WatcherKey> {
        let mut out = Vec::new();
        index.for_each_match(key, |w| out.push(w));
        out.sort_unstable();
        out
    }

    fn range(key: &[u8], end: &[u8]) -> WatchRange {
        WatchRange::from_request(key, end).unwrap()
    }

    #[test]
    fn request_ranges_follow_etcd_rules() {
        assert_eq!(
            WatchRange::from_request(b"", b""),
            Some(WatchRange::Single(vec![0]))
        );
        assert_eq!(
            WatchRange::from_request(b"a", b"\0"),
            Some(WatchRange::Range {
                start: b"a".to_vec(),
                end: None
            })
        );
        assert_eq!(WatchRange::from_request(b"b", b"a"), None);
        assert_eq!(WatchRange::from_request(b"a", b"a"), None);
        let r = range(b"a", b"c");
        assert!(r.contains(b"a") && r.contains(b"b\xff") && !r.contains(b"c"));
        assert_eq!(r.as_request(), (&b"a"[..], &b"c"[..]));
        assert_eq!(range(b"a", b"\0").as_request(), (&b"a"[..], &b"\0"[..]));
    }

    #[test]
    fn exact_key_matches_only_that_key() {
        let mut ix = Index::default();
        ix.insert(&range(b"foo", b""), 1);
        assert_eq!(matches(&ix, b"foo"), vec![1]);
        assert!(matches(&ix, b"fo").is_empty());
        assert!(matches(&ix, b"foo1").is_empty());
    }

    #[test]
    fn prefix_and_from_key_ranges_match_their_keys() {
        let mut ix = Index::default();
        ix.insert(&range(b"app/", b"app0"), 1);
        ix.insert(&range(b"m", b"\0"), 2);
        assert_eq!(matches(&ix, b"app/x"), vec![1]);
        assert!(matches(&ix, b"app").is_empty());
        assert!(matches(&ix, b"app0").is_empty());
        assert_eq!(matches(&ix, b"m"), vec![2]);
        assert_eq!(matches(&ix, b"zzz"), vec![2]);
        assert!(matches(&ix, b"l\xff").is_empty());
    }

    #[test]
    fn watchers_on_one_range_share_it_and_leave_it_one_by_one() {
        let mut ix = Index::default();
        let r = range(b"a", b"b");
        for w in 0..3 {
            ix.insert(&r, w);
        }
        ix.insert(&r, 1); // twice: still one membership
        assert_eq!(ix.len(), 3);
        ix.remove(&r, 1);
        assert_eq!(matches(&ix, b"a1"), vec![0, 2]);
        ix.remove(&r, 0);
        ix.remove(&r, 2);
        ix.remove(&r, 2);
        assert!(ix.is_empty());
        assert!(matches(&ix, b"a1").is_empty());
    }

    /// A small deterministic generator, so the churn test needs no crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn index_matches_brute_force_under_churn() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let alphabet = b"abcdefgh";
        let key = |rng: &mut Rng| -> Vec<u8> {
            (0..1 + rng.below(3))
                .map(|_| alphabet[rng.below(8) as usize])
                .collect()
        };
        let mut ix = Index::default();
        let mut live: Vec<(WatcherKey, WatchRange)> = Vec::new();
        let mut next = 0;
        for step in 0..5000 {
            if !live.is_empty() && rng.below(10) < 3 {
                let (w, r) = live.swap_remove(rng.below(live.len() as u64) as usize);
                ix.remove(&r, w);
            } else {
                let (a, b) = {
                    let (x, y) = (key(&mut rng), key(&mut rng));
                    if x <= y {
                        (x, y)
                    } else {
                        (y, x)
                    }
                };
                let end = match rng.below(3) {
                    0 => vec![],
                    1 => vec![0],
                    _ => [b.as_slice(), b"\0"].concat(),
                };
                let r = range(&a, &end);
                ix.insert(&r, next);
                live.push((next, r));
                next += 1;
            }
            if step % 7 == 0 {
                let k = key(&mut rng);
                let mut want: Vec<WatcherKey> = live
                    .iter()
                    .filter(|(_, r)| r.contains(&k))
                    .map(|(w, _)| *w)
                    .collect();
                want.sort_unstable();
                assert_eq!(matches(&ix, &k), want, "step {step} key {k:?}");
            }
        }
        assert_eq!(ix.len(), live.len());
    }
}
