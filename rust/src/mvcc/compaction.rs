//! Compaction, in etcd's two steps. The logical step ([`Store::compact`])
//! happens when the compaction is applied: reads below the revision fail from
//! then on and the index forgets what they could have seen. The physical
//! step ([`Compaction::step`]) removes those versions from the key bucket a
//! batch at a time, so that the applier never holds up writes for the length
//! of a pass over a large bucket. Until it finishes, the versions it has not
//! removed yet are still in the bucket, but nothing reads them: the index no
//! longer names them and HashKV skips what the compaction does not keep.

use std::collections::HashSet;

use super::bucket::KeyBucketMut;
use super::error::MvccError;
use super::revision::Revision;
use super::store::Store;

/// The physical half of one compaction: the revisions at or below `rev` that
/// are not kept are removed from the key bucket, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    pub rev: i64,
    keep: HashSet<Revision>,
    /// The first revision not yet looked at.
    next: Revision,
}

impl Store {
    /// Compacts at `rev`: afterwards reads below `rev` fail with Compacted and
    /// the index keeps only what reads at revisions `>= rev` can see. Returns
    /// the job that removes the rest from the key bucket.
    pub fn compact(&mut self, rev: i64) -> Result<Compaction, MvccError> {
        if rev <= self.compacted {
            return Err(MvccError::Compacted);
        }
        if rev > self.current {
            return Err(MvccError::FutureRev);
        }
        let keep = self.index.compact(rev);
        self.compacted = rev;
        Ok(Compaction {
            rev,
            keep,
            next: Revision::default(),
        })
    }
}

impl Compaction {
    /// Looks at up to `batch` revisions of the bucket and removes those the
    /// compaction does not keep. True once every revision up to `rev` has been
    /// looked at: the compaction is finished.
    pub fn step(&mut self, bucket: &mut dyn KeyBucketMut, batch: usize) -> Result<bool, MvccError> {
        let mut seen = 0;
        let mut doomed = Vec::new();
        let mut last = None;
        bucket.scan(self.next, self.rev, &mut |rev, tombstone, _| {
            if !self.keep.contains(&rev) {
                doomed.push((rev, tombstone));
            }
            last = Some(rev);
            seen += 1;
            Ok(seen < batch)
        })?;
        for (rev, tombstone) in doomed {
            bucket.remove(rev, tombstone)?;
        }
        match last {
            Some(r) if seen >= batch => {
                self.next = Revision::new(r.main, r.sub + 1);
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    /// Runs the whole job at once (tests, and restores that start empty).
    pub fn finish(&mut self, bucket: &mut dyn KeyBucketMut) -> Result<(), MvccError> {
        while !self.step(bucket, 1000)? {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn revs(s: &TestStore) -> Vec<i64> {
        s.bucket.revisions().iter().map(|r| r.main).collect()
    }

    #[test]
    fn compact_future_revision_fails() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        assert_eq!(s.compact(3), Err(MvccError::FutureRev));
        assert_eq!(s.compact_revision(), -1);
    }

    #[test]
    fn compact_at_or_below_last_compaction_fails() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        put(&mut s, "a", "2");
        s.compact(3).unwrap();
        assert_eq!(s.compact(3), Err(MvccError::Compacted));
        assert_eq!(s.compact(2), Err(MvccError::Compacted));
    }

    #[test]
    fn compact_at_current_revision_is_allowed() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        s.compact(2).unwrap();
        assert_eq!(s.compact_revision(), 2);
    }

    #[test]
    fn compact_keeps_latest_version_before_compaction_point() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1"); // 2
        put(&mut s, "a", "2"); // 3
        put(&mut s, "a", "3"); // 4
        s.compact(3).unwrap();
        assert_eq!(revs(&s), vec![3, 4]);
        assert_eq!(get_at(&s, "a", 3).unwrap().value, b"2");
    }

    #[test]
    fn compact_drops_deleted_keys_entirely() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1"); // 2
        del(&mut s, "a"); // 3
        put(&mut s, "b", "1"); // 4
        s.compact(4).unwrap();
        assert_eq!(revs(&s), vec![4]);
        assert!(s.store.index.key_index(b"a").is_none());
    }

    #[test]
    fn compact_at_delete_revision_drops_the_key_as_etcd() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1"); // 2
        del(&mut s, "a"); // 3
        s.compact(3).unwrap();
        assert!(revs(&s).is_empty());
        assert!(get_at(&s, "a", 3).is_none());
        assert!(s.store.index.key_index(b"a").is_none());
    }

    #[test]
    fn reads_at_and_after_compaction_are_unchanged() {
        let mut s = TestStore::new();
        sample_history(&mut s);
        let before = s.clone();
        let cur = s.current_revision();
        for at in 2..=cur {
            let mut c = before.clone();
            c.compact(at).unwrap();
            for read in at..=cur {
                assert_eq!(
                    all_at(&c, read),
                    all_at(&before, read),
                    "compact {at} read {read}"
                );
            }
        }
    }

    #[test]
    fn range_below_compaction_fails() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        put(&mut s, "a", "2");
        s.compact(3).unwrap();
        assert_eq!(s.range(&range_req("a", "", 2)), Err(MvccError::Compacted));
        assert!(s.range(&range_req("a", "", 3)).is_ok());
    }

    #[test]
    fn steps_remove_the_same_revisions_as_one_pass_whatever_the_batch() {
        let mut whole = TestStore::new();
        sample_history(&mut whole);
        for _ in 0..30 {
            put(&mut whole, "a", "more");
            put(&mut whole, "z", "more");
        }
        let template = whole.clone();
        let at = whole.current_revision() - 3;
        whole.compact(at).unwrap();
        for batch in [1, 2, 7, 1000] {
            let mut s = template.clone();
            let mut job = s.store.compact(at).unwrap();
            let mut steps = 0;
            while !job.step(&mut s.bucket, batch).unwrap() {
                steps += 1;
                // Between steps, reads at or after the compaction already
                // answer as they will when it is done.
                assert_eq!(all_at(&s, at), all_at(&whole, at), "batch {batch}");
            }
            assert_eq!(revs(&s), revs(&whole), "batch {batch}");
            if batch == 1 {
                assert!(steps > 10);
            }
        }
    }
}
