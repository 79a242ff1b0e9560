//! Start-up: the index rebuilt from the key bucket, as etcd's restore does.
//! Every version is visited once, oldest first, and checked against what the
//! index already knows of its key, so a bucket that could not have been
//! written by this store is refused rather than misread.

use super::bucket::{KeyBucket, KvHeader};
use super::error::MvccError;
use super::revision::Revision;
use super::store::Store;

fn corrupt(r: Revision, what: impl std::fmt::Display) -> MvccError {
    MvccError::Corrupt(format!("key bucket entry {r:?}: {what}"))
}

/// How much a rebuild read: the bucket's entries and their bytes (revision
/// keys and values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketSize {
    pub entries: u64,
    pub bytes: u64,
}

impl Store {
    /// The store a key bucket holds, and what the bucket holds. The caller
    /// then applies the compaction the backend recorded, if any
    /// ([`Store::set_compacted_floor`], then [`Store::compact`]): its
    /// removal of versions may not have finished.
    pub fn rebuild(bucket: &dyn KeyBucket) -> Result<(Store, BucketSize), MvccError> {
        let mut s = Store::new();
        let mut size = BucketSize::default();
        let mut last = Revision::default();
        bucket.scan(Revision::default(), i64::MAX, &mut |r, tombstone, bytes| {
            size.entries += 1;
            size.bytes += (17 + usize::from(tombstone) + bytes.len()) as u64;
            if r.main < 1 || r.sub < 0 || r <= last {
                return Err(corrupt(r, format!("out of order after {last:?}")));
            }
            last = r;
            let kv = KvHeader::parse(bytes).map_err(|e| corrupt(r, e))?;
            if tombstone {
                s.restore_tombstone(kv.key, r)?;
            } else {
                s.restore_put(&kv, r)?;
            }
            Ok(true)
        })?;
        s.current = last.main.max(1);
        Ok((s, size))
    }

    /// Sets the revision counters a backend recorded beside the bucket: the
    /// current revision never goes back below the last compaction (whose own
    /// revision may have left no version behind).
    pub fn set_compacted_floor(&mut self, compacted: i64) {
        self.current = self.current.max(compacted);
    }

    fn restore_tombstone(&mut self, key: &[u8], r: Revision) -> Result<(), MvccError> {
        if self.index.key_index(key).is_none() {
            self.index.restore_tombstone(key, r);
        } else if self.index.tombstone(key, r).is_none() {
            return Err(corrupt(r, "deletes a key that does not exist"));
        }
        self.leases.set(key, 0);
        Ok(())
    }

    fn restore_put(&mut self, kv: &KvHeader<'_>, r: Revision) -> Result<(), MvccError> {
        if kv.mod_revision != r.main || kv.create_revision <= 0 || kv.version <= 0 {
            return Err(corrupt(r, "inconsistent revisions in its KeyValue"));
        }
        match self.index.key_index(kv.key) {
            None => self
                .index
                .restore(kv.key, Revision::new(kv.create_revision, 0), r, kv.version),
            Some(_) => {
                let (created, version) = match self.index.get(kv.key, i64::MAX) {
                    Some(prev) => (prev.created.main, prev.version + 1),
                    None => (r.main, 1),
                };
                if (created, version) != (kv.create_revision, kv.version) {
                    return Err(corrupt(r, "breaks the key's version history"));
                }
                self.index.put(kv.key, r);
            }
        }
        self.leases.set(kv.key, kv.lease);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::bucket::{KeyBucketMut, MemBucket};
    use super::super::testutil::*;
    use super::*;
    use crate::pb::mvccpb::KeyValue;

    fn rebuilt(s: &TestStore) -> TestStore {
        let mut store = Store::rebuild(&s.bucket).unwrap().0;
        store.set_compacted_floor(s.compact_revision());
        if s.compact_revision() > 0 {
            store.compact(s.compact_revision()).unwrap();
        }
        TestStore {
            store,
            bucket: s.bucket.clone(),
        }
    }

    fn assert_same_behaviour(a: &TestStore, b: &TestStore) {
        assert_eq!(a.current_revision(), b.current_revision());
        assert_eq!(a.compact_revision(), b.compact_revision());
        assert_eq!(a.keys_count(), b.keys_count());
        let from = a.compact_revision().max(1);
        for rev in from..=a.current_revision() {
            assert_eq!(
                a.range(&range_req("\0", "\0", rev)),
                b.range(&range_req("\0", "\0", rev))
            );
            assert_eq!(a.hash_kv(rev), b.hash_kv(rev));
            assert_eq!(
                a.events_since(b"\0", b"\0", rev, 0),
                b.events_since(b"\0", b"\0", rev, 0)
            );
        }
    }

    #[test]
    fn empty_bucket_rebuilds_an_empty_store() {
        let s = TestStore::new();
        assert_eq!(rebuilt(&s), s);
    }

    #[test]
    fn rebuilt_store_answers_reads_at_all_revisions() {
        let mut s = TestStore::new();
        sample_history(&mut s);
        assert_same_behaviour(&s, &rebuilt(&s));
    }

    #[test]
    fn rebuilt_compacted_store_answers_alike_and_keeps_working() {
        for at in 2..=11 {
            let mut s = TestStore::new();
            sample_history(&mut s);
            s.compact(at).unwrap();
            let r = rebuilt(&s);
            assert_same_behaviour(&s, &r);
            let mut s2 = s.clone();
            let mut r2 = r;
            for st in [&mut s2, &mut r2] {
                put(st, "a", "again");
                put(st, "b", "again");
                del(st, "e");
                let cur = st.current_revision();
                st.compact(cur - 1).unwrap();
            }
            assert_same_behaviour(&s2, &r2);
        }
    }

    #[test]
    fn compaction_that_did_not_finish_resumes_after_rebuild() {
        let mut s = TestStore::new();
        sample_history(&mut s);
        let mut done = s.clone();
        done.compact(8).unwrap();
        // A crash right after the logical step: the bucket still holds it all.
        s.store.compact(8).unwrap();
        let mut store = Store::rebuild(&s.bucket).unwrap().0;
        store.set_compacted_floor(8);
        let mut job = store.compact(8).unwrap();
        let mut r = TestStore {
            store,
            bucket: s.bucket.clone(),
        };
        assert_same_behaviour(&done, &r);
        job.finish(&mut r.bucket).unwrap();
        assert_eq!(r.bucket.revisions(), done.bucket.revisions());
        assert_same_behaviour(&done, &r);
    }

    #[test]
    fn rebuild_restores_lease_attachments() {
        let mut s = TestStore::new();
        put_lease(&mut s, "a", 3);
        put_lease(&mut s, "b", 3);
        put(&mut s, "b", "no lease");
        assert_eq!(rebuilt(&s).keys_with_lease(3), vec![b"a".to_vec()]);
    }

    #[test]
    fn version_gap_is_corrupt() {
        let mut b = MemBucket::default();
        let kv = |rev: i64, version: i64| KeyValue {
            key: b"a".to_vec(),
            create_revision: 2,
            mod_revision: rev,
            version,
            ..Default::default()
        };
        b.insert(Revision::new(2, 0), false, &kv(2, 1)).unwrap();
        b.insert(Revision::new(3, 0), false, &kv(3, 5)).unwrap();
        assert!(matches!(Store::rebuild(&b), Err(MvccError::Corrupt(_))));
    }

    #[test]
    fn double_delete_is_corrupt() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        del(&mut s, "a");
        let mut b = s.bucket.clone();
        b.insert(
            Revision::new(4, 0),
            true,
            &super::super::bucket::tombstone_value(b"a"),
        )
        .unwrap();
        assert!(matches!(Store::rebuild(&b), Err(MvccError::Corrupt(_))));
    }

    #[test]
    fn mismatched_mod_revision_is_corrupt() {
        let mut b = MemBucket::default();
        let kv = KeyValue {
            key: b"a".to_vec(),
            create_revision: 2,
            mod_revision: 9,
            version: 1,
            ..Default::default()
        };
        b.insert(Revision::new(2, 0), false, &kv).unwrap();
        assert!(matches!(Store::rebuild(&b), Err(MvccError::Corrupt(_))));
    }
}
