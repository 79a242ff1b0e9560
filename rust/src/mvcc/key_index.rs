//! The history of one key: its generations.
//!
//! A generation is one life of the key, from the put that created it to the
//! delete (tombstone) that ended it. The last generation is the current one;
//! it is empty while the key does not exist. Revisions inside a generation
//! are strictly increasing, and so are generations.
//!
//! Example: put@2, put@3, delete@4, put@6 gives
//! `[{created 2, revs 2 3 4(t)}, {created 6, revs 6}]`; a further delete@7
//! gives `[{2 3 4(t)}, {6 7(t)}, {}]`.

use std::collections::HashSet;

use smallvec::{smallvec, SmallVec};

use super::revision::Revision;

/// One life of a key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generation {
    /// The revision of the put that started this generation.
    pub created: Revision,
    /// How many writes this generation has seen, counting those already
    /// compacted away: the version of its newest revision.
    pub version: i64,
    /// Surviving revisions, oldest first; in a finished generation the last
    /// one is the tombstone. Most keys have one or two.
    pub revs: SmallVec<[Revision; 2]>,
}

impl Generation {
    fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }
}

/// What the key looked like at some revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRevision {
    /// Revision of the version visible at the asked revision.
    pub modified: Revision,
    /// Revision that created the visible generation.
    pub created: Revision,
    /// The key's version at that point (1 for the creating put).
    pub version: i64,
}

/// All generations of one key. Most keys have one, kept inline: at a
/// million keys the index is a large part of a member's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIndex {
    generations: SmallVec<[Generation; 1]>,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex::new()
    }
}

impl KeyIndex {
    /// A key that has never been written: one empty generation.
    pub fn new() -> KeyIndex {
        KeyIndex {
            generations: smallvec![Generation::default()],
        }
    }

    /// Revision of the newest write (put or tombstone).
    pub fn modified(&self) -> Revision {
        self.generations
            .iter()
            .rev()
            .find_map(|g| g.revs.last().copied())
            .unwrap_or_default()
    }

    pub fn generations(&self) -> &[Generation] {
        &self.generations
    }

    /// No revision left at all: the key can be dropped from the index.
    pub fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].is_empty()
    }

    /// The key exists now (its current generation is open).
    pub fn is_live(&self) -> bool {
        !self.current().is_empty()
    }

    fn current(&self) -> &Generation {
        self.generations
            .last()
            .expect("a key index always has a generation")
    }

    fn current_mut(&mut self) -> &mut Generation {
        self.generations
            .last_mut()
            .expect("a key index always has a generation")
    }

    /// Records a put at `rev`; returns true when it created the key (started
    /// a generation). `rev` must be newer than every recorded revision.
    pub fn put(&mut self, rev: Revision) -> bool {
        let modified = self.modified();
        assert!(
            rev > modified,
            "put at {rev:?} is not after the last modification {modified:?}",
        );
        let g = self.current_mut();
        let created = g.is_empty();
        if created {
            g.created = rev;
        }
        g.revs.push(rev);
        g.version += 1;
        created
    }

    /// Records a delete at `rev`: closes the current generation with a
    /// tombstone and opens an empty one. False (and nothing changes) if the
    /// key does not exist now.
    pub fn tombstone(&mut self, rev: Revision) -> bool {
        if !self.is_live() {
            return false;
        }
        self.put(rev);
        self.generations.push(Generation::default());
        true
    }

    /// Rebuilds a key from its oldest surviving put (snapshot restore): the
    /// key index must be fresh.
    pub fn restore(&mut self, created: Revision, modified: Revision, version: i64) {
        assert!(self.is_empty(), "restore into a key index that has history");
        self.generations = smallvec![Generation {
            created,
            version,
            revs: smallvec![modified],
        }];
    }

    /// Rebuilds a key whose oldest surviving revision is a tombstone: what it
    /// was before is compacted, so only the tombstone is known.
    pub fn restore_tombstone(&mut self, rev: Revision) {
        self.restore(Revision::default(), rev, 1);
        self.generations.push(Generation::default());
    }

    /// Takes back the newest put (a failed transaction). True when the put
    /// had created the key.
    pub fn undo_put(&mut self) -> bool {
        let g = self.current_mut();
        g.revs.pop().expect("undo_put without a put");
        g.version -= 1;
        let uncreated = g.revs.is_empty();
        if uncreated {
            *g = Generation::default();
        }
        uncreated
    }

    /// Takes back the newest tombstone (a failed transaction).
    pub fn undo_tombstone(&mut self) {
        let open = self.generations.pop().expect("undo_tombstone without one");
        assert!(open.is_empty(), "undo_tombstone on a live key");
        self.undo_put();
    }

    /// The generation that holds the key's state at revision `at`, or None
    /// when the key did not exist at `at`.
    fn generation_at(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len() - 1;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(end)) = (g.revs.first(), g.revs.last()) else {
                continue;
            };
            if i != last && end.main <= at {
                // `at` lies after this generation's tombstone (and before the
                // next generation's first put, or that one would have matched).
                return None;
            }
            if first.main <= at {
                return Some(g);
            }
        }
        None
    }

    /// The key's state at revision `at`: None if it did not exist then (or
    /// that part of its history is compacted).
    pub fn get(&self, at: i64) -> Option<KeyRevision> {
        let g = self.generation_at(at)?;
        let n = g.revs.iter().rposition(|r| r.main <= at)?;
        Some(KeyRevision {
            modified: g.revs[n],
            created: g.created,
            version: g.version - (g.revs.len() - 1 - n) as i64,
        })
    }

    /// The revision written just before `rev` in the same generation: the
    /// previous value a write at `rev` replaced. None if `rev` started its
    /// generation, is unknown, or its predecessor is compacted.
    pub fn previous(&self, rev: Revision) -> Option<Revision> {
        for g in &self.generations {
            if let Ok(i) = g.revs.binary_search(&rev) {
                return i.checked_sub(1).map(|p| g.revs[p]);
            }
        }
        None
    }

    /// Every surviving revision with `main >= from`, oldest first, each with
    /// whether it is a tombstone (the last revision of a finished generation).
    pub fn revisions_since(&self, from: i64) -> impl Iterator<Item = (Revision, bool)> + '_ {
        let last = self.generations.len() - 1;
        self.generations
            .iter()
            .enumerate()
            .flat_map(move |(gi, g)| {
                let closing = g.revs.len().checked_sub(1).filter(|_| gi != last);
                g.revs
                    .iter()
                    .enumerate()
                    .map(move |(ri, r)| (*r, Some(ri) == closing))
            })
            .filter(move |(r, _)| r.main >= from)
    }

    /// Where compaction at `at` cuts: the first generation still needed and,
    /// in it, the index of the newest revision at or before `at` (None if all
    /// its revisions are newer). As etcd's doCompact, a generation whose
    /// tombstone is at or before `at` is not needed, even one deleted at
    /// exactly `at`: nothing at or after `at` can see the key in it.
    fn cut(&self, at: i64) -> (usize, Option<usize>) {
        let last = self.generations.len() - 1;
        let gi = (0..last)
            .find(|&i| {
                let tomb = self.generations[i].revs.last().expect("closed generation");
                tomb.main > at
            })
            .unwrap_or(last);
        let ri = self.generations[gi].revs.iter().rposition(|r| r.main <= at);
        (gi, ri)
    }

    /// Forgets what no read at a revision `>= at` can see: earlier
    /// generations (those deleted at or before `at`) and, in the first
    /// remaining one, revisions older than the newest at or before `at`,
    /// which is kept and added to `kept`. The key index may end up
    /// [`KeyIndex::is_empty`].
    pub fn compact(&mut self, at: i64, kept: &mut HashSet<Revision>) {
        let (gi, ri) = self.cut(at);
        if let Some(ri) = ri {
            let g = &mut self.generations[gi];
            kept.insert(g.revs[ri]);
            g.revs.drain(..ri);
        }
        self.generations.drain(..gi);
    }

    /// The revision a compaction at `at` would keep for this key, minus a
    /// tombstone that closes a generation (etcd leaves those out of HashKV so
    /// that members that did and did not keep them hash alike).
    pub fn keep(&self, at: i64, kept: &mut HashSet<Revision>) {
        if self.is_empty() {
            return;
        }
        let (gi, ri) = self.cut(at);
        if let Some(ri) = ri {
            let g = &self.generations[gi];
            let closing_tombstone = ri == g.revs.len() - 1 && gi != self.generations.len() - 1;
            if !closing_tombstone {
                kept.insert(g.revs[ri]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// put@2, put@3, delete@4, put@6, delete@7
    fn sample() -> KeyIndex {
        let mut ki = KeyIndex::new();
        ki.put(r(2));
        ki.put(r(3));
        assert!(ki.tombstone(r(4)));
        ki.put(r(6));
        assert!(ki.tombstone(r(7)));
        ki
    }

    fn revs(ki: &KeyIndex) -> Vec<Vec<i64>> {
        ki.generations()
            .iter()
            .map(|g| g.revs.iter().map(|r| r.main).collect())
            .collect()
    }

    #[test]
    fn new_key_index_is_empty_and_not_live() {
        let ki = KeyIndex::new();
        assert!(ki.is_empty());
        assert!(!ki.is_live());
        assert_eq!(ki.get(100), None);
    }

    #[test]
    fn first_put_creates_generation_with_version_1() {
        let mut ki = KeyIndex::new();
        assert!(ki.put(r(2)));
        assert_eq!(
            ki.get(2),
            Some(KeyRevision {
                modified: r(2),
                created: r(2),
                version: 1
            })
        );
    }

    #[test]
    fn second_put_bumps_version_and_keeps_created() {
        let mut ki = KeyIndex::new();
        ki.put(r(2));
        assert!(!ki.put(r(5)));
        let kr = ki.get(5).unwrap();
        assert_eq!((kr.modified, kr.created, kr.version), (r(5), r(2), 2));
    }

    #[test]
    fn get_between_puts_sees_older_put() {
        let mut ki = KeyIndex::new();
        ki.put(r(2));
        ki.put(r(5));
        let kr = ki.get(4).unwrap();
        assert_eq!((kr.modified, kr.version), (r(2), 1));
    }

    #[test]
    fn get_before_creation_is_none() {
        let mut ki = KeyIndex::new();
        ki.put(r(5));
        assert_eq!(ki.get(4), None);
    }

    #[test]
    fn tombstone_closes_generation_and_opens_empty_one() {
        let ki = sample();
        assert_eq!(revs(&ki), vec![vec![2, 3, 4], vec![6, 7], vec![]]);
        assert!(!ki.is_live());
    }

    #[test]
    fn get_at_or_after_tombstone_is_none() {
        let ki = sample();
        assert_eq!(ki.get(4), None);
        assert_eq!(ki.get(5), None);
        assert_eq!(ki.get(7), None);
        assert_eq!(ki.get(100), None);
    }

    #[test]
    fn delete_then_put_starts_new_generation_with_version_1() {
        let ki = sample();
        let kr = ki.get(6).unwrap();
        assert_eq!((kr.modified, kr.created, kr.version), (r(6), r(6), 1));
    }

    #[test]
    fn tombstone_on_missing_key_fails() {
        let mut ki = KeyIndex::new();
        assert!(!ki.tombstone(r(2)));
        let mut ki = sample();
        assert!(!ki.tombstone(r(8)));
        assert_eq!(ki.modified(), r(7));
    }

    #[test]
    #[should_panic]
    fn put_at_older_revision_panics() {
        let mut ki = KeyIndex::new();
        ki.put(r(5));
        ki.put(r(4));
    }

    #[test]
    fn sub_revisions_of_one_main_resolve_to_the_last() {
        let mut ki = KeyIndex::new();
        ki.put(Revision::new(2, 0));
        ki.put(Revision::new(2, 1));
        let kr = ki.get(2).unwrap();
        assert_eq!((kr.modified, kr.version), (Revision::new(2, 1), 2));
    }

    #[test]
    fn compact_keeps_latest_version_before_compaction_point() {
        let mut ki = KeyIndex::new();
        ki.put(r(2));
        ki.put(r(3));
        ki.put(r(5));
        let mut kept = HashSet::new();
        ki.compact(4, &mut kept);
        assert_eq!(revs(&ki), vec![vec![3, 5]]);
        assert_eq!(kept, HashSet::from([r(3)]));
        assert_eq!(ki.get(4).unwrap().version, 2);
        assert_eq!(ki.get(5).unwrap().version, 3);
    }

    #[test]
    fn compact_drops_generations_ended_before_compaction_point() {
        let mut ki = sample();
        let mut kept = HashSet::new();
        ki.compact(6, &mut kept);
        assert_eq!(revs(&ki), vec![vec![6, 7], vec![]]);
        assert_eq!(kept, HashSet::from([r(6)]));
    }

    #[test]
    fn compact_at_tombstone_drops_its_generation_as_etcd() {
        let mut ki = sample();
        let mut kept = HashSet::new();
        ki.compact(4, &mut kept);
        assert_eq!(revs(&ki), vec![vec![6, 7], vec![]]);
        assert!(kept.is_empty());
        assert_eq!(ki.get(4), None);
    }

    #[test]
    fn compact_in_gap_keeps_only_later_generations() {
        let mut ki = sample();
        let mut kept = HashSet::new();
        ki.compact(5, &mut kept);
        assert_eq!(revs(&ki), vec![vec![6, 7], vec![]]);
        assert!(kept.is_empty());
    }

    #[test]
    fn compact_at_or_after_final_tombstone_empties_key() {
        let mut ki = sample();
        let mut kept = HashSet::new();
        ki.compact(7, &mut kept);
        assert!(ki.is_empty());
        assert!(kept.is_empty());
    }

    #[test]
    fn compact_before_any_revision_changes_nothing() {
        let mut ki = sample();
        let before = ki.clone();
        let mut kept = HashSet::new();
        ki.compact(1, &mut kept);
        assert_eq!(ki, before);
        assert!(kept.is_empty());
    }

    #[test]
    fn reads_at_or_after_compaction_point_are_unchanged() {
        let original = sample();
        for at in 1..=8 {
            let mut ki = original.clone();
            ki.compact(at, &mut HashSet::new());
            for read in at..=9 {
                assert_eq!(ki.get(read), original.get(read), "compact {at} read {read}");
            }
        }
    }

    #[test]
    fn keep_leaves_out_closing_tombstone() {
        let ki = sample();
        let mut kept = HashSet::new();
        ki.keep(4, &mut kept);
        assert!(kept.is_empty());
        ki.keep(3, &mut kept);
        assert_eq!(kept, HashSet::from([r(3)]));
    }

    #[test]
    fn keep_does_not_modify_key() {
        let ki = sample();
        let before = ki.clone();
        ki.keep(6, &mut HashSet::new());
        assert_eq!(ki, before);
    }

    #[test]
    fn previous_is_within_generation() {
        let ki = sample();
        assert_eq!(ki.previous(r(3)), Some(r(2)));
        assert_eq!(ki.previous(r(4)), Some(r(3)));
        assert_eq!(ki.previous(r(2)), None);
        assert_eq!(ki.previous(r(6)), None);
        assert_eq!(ki.previous(r(7)), Some(r(6)));
        assert_eq!(ki.previous(r(5)), None);
    }

    #[test]
    fn revisions_since_lists_all_generations_in_order() {
        let ki = sample();
        let got: Vec<(i64, bool)> = ki.revisions_since(3).map(|(r, t)| (r.main, t)).collect();
        assert_eq!(got, vec![(3, false), (4, true), (6, false), (7, true)]);
    }

    #[test]
    fn undo_put_restores_previous_state() {
        let mut ki = KeyIndex::new();
        ki.put(r(2));
        let before = ki.clone();
        ki.put(r(3));
        assert!(!ki.undo_put());
        assert_eq!(ki, before);
    }

    #[test]
    fn undo_creating_put_leaves_key_empty() {
        let mut ki = KeyIndex::new();
        ki.put(r(2));
        assert!(ki.undo_put());
        assert_eq!(ki, KeyIndex::new());
    }

    #[test]
    fn undo_tombstone_reopens_generation() {
        let mut ki = KeyIndex::new();
        ki.put(r(2));
        let before = ki.clone();
        ki.tombstone(r(3));
        ki.undo_tombstone();
        assert_eq!(ki, before);
        assert!(ki.is_live());
    }

    #[test]
    fn restore_answers_like_the_original_from_restored_point() {
        let mut ki = KeyIndex::new();
        ki.restore(r(2), r(5), 3);
        ki.put(r(6));
        let kr = ki.get(6).unwrap();
        assert_eq!((kr.created, kr.version), (r(2), 4));
        assert_eq!(ki.get(5).unwrap().version, 3);
    }

    #[test]
    fn restore_tombstone_makes_dead_key() {
        let mut ki = KeyIndex::new();
        ki.restore_tombstone(r(4));
        assert!(!ki.is_live());
        assert!(!ki.is_empty());
        assert_eq!(ki.get(4), None);
        ki.compact(5, &mut HashSet::new());
        assert!(ki.is_empty());
    }
}
