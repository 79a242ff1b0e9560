//! HashKV: a CRC-32C over the store's history up to a revision, computed
//! exactly as etcd 3.5 computes it over its bolt "key" bucket, so the same
//! history gives the same number here and in etcd.
//!
//! The hash starts with the bucket name `key`, then for each bucket entry with
//! `main <= rev`, in revision order, the entry's etcd revision key (see
//! [`Revision::to_bytes`]) and its marshalled KeyValue (a tombstone's value
//! is a KeyValue holding only the key). Entries at or below the compact
//! revision count only if a compaction at `rev` would keep them (and never a
//! tombstone exactly at the compact revision), so members that did and did
//! not compact hash alike.
//!
//! `tests/integration/test_hashkv_parity.py` compares this hash, the compact
//! revision and the header revision with a running etcd 3.5.1 over varied
//! histories; keep it passing through any change to the store.

use super::bucket::KeyBucket;
use super::error::MvccError;
use super::revision::Revision;
use super::store::Store;

impl Store {
    /// Returns `(hash, compact_revision, hash_revision)` read from `bucket`;
    /// `rev` 0 means the current revision. Compacted if `0 < rev <=
    /// compact_revision` (etcd 3.5 refuses the compact revision itself),
    /// FutureRev if `rev > current_revision`.
    pub fn hash_kv(&self, bucket: &dyn KeyBucket, rev: i64) -> Result<(u32, i64, i64), MvccError> {
        if rev > 0 && rev <= self.compacted {
            return Err(MvccError::Compacted);
        }
        if rev > 0 && rev > self.current {
            return Err(MvccError::FutureRev);
        }
        let rev = if rev == 0 { self.current } else { rev };
        let keep = self.index.keep(rev);
        let compacted = self.compacted;
        let mut crc = crc32c::crc32c(b"key");
        bucket.scan(Revision::default(), rev, &mut |r, tomb, value| {
            if r.main <= compacted && !keep.is_empty() && !keep.contains(&r) {
                return Ok(true);
            }
            if r.main == compacted && tomb {
                return Ok(true);
            }
            crc = crc32c::crc32c_append(crc, &r.to_bytes(tomb));
            crc = crc32c::crc32c_append(crc, value);
            Ok(true)
        })?;
        Ok((crc, self.compacted, rev))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::pb::mvccpb::KeyValue;
    use prost::Message;

    #[test]
    fn empty_store_hashes_bucket_name_only() {
        let s = TestStore::new();
        assert_eq!(s.hash_kv(0), Ok((crc32c::crc32c(b"key"), -1, 1)));
    }

    #[test]
    fn hash_of_single_put_matches_hand_computed_bytes() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        let kv = KeyValue {
            key: b"a".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: b"1".to_vec(),
            lease: 0,
        };
        let mut bytes = b"key".to_vec();
        bytes.extend_from_slice(&Revision::new(2, 0).to_bytes(false));
        bytes.extend_from_slice(&kv.encode_to_vec());
        assert_eq!(s.hash_kv(0).unwrap().0, crc32c::crc32c(&bytes));
    }

    #[test]
    fn identical_histories_hash_alike() {
        let mut a = TestStore::new();
        let mut b = TestStore::new();
        sample_history(&mut a);
        sample_history(&mut b);
        assert_eq!(a.hash_kv(0), b.hash_kv(0));
        assert_eq!(a.hash_kv(7), b.hash_kv(7));
    }

    #[test]
    fn different_histories_hash_differently() {
        let mut a = TestStore::new();
        let mut b = TestStore::new();
        put(&mut a, "a", "1");
        put(&mut b, "a", "2");
        assert_ne!(a.hash_kv(0).unwrap().0, b.hash_kv(0).unwrap().0);
    }

    #[test]
    fn hash_at_old_revision_ignores_later_writes() {
        let mut a = TestStore::new();
        sample_history(&mut a);
        let at5 = a.hash_kv(5).unwrap();
        put(&mut a, "z", "later");
        assert_eq!(a.hash_kv(5).unwrap(), at5);
        assert_eq!(at5.2, 5);
    }

    #[test]
    fn compaction_removes_only_what_hash_already_skips() {
        // A member whose compaction already dropped entries must hash like
        // one that has only recorded the compact revision (etcd compacts in
        // the background, so both states occur).
        let mut s = TestStore::new();
        sample_history(&mut s);
        for at in 2..=11 {
            let mut physically = s.clone();
            physically.compact(at).unwrap();
            let mut logically = s.clone();
            logically.store.compact(at).unwrap();
            for rev in at..=11 {
                assert_eq!(
                    physically.hash_kv(rev),
                    logically.hash_kv(rev),
                    "compact {at} hash {rev}"
                );
            }
        }
    }

    #[test]
    fn hash_at_or_below_compaction_fails() {
        let mut s = TestStore::new();
        sample_history(&mut s);
        s.compact(5).unwrap();
        assert_eq!(s.hash_kv(4), Err(MvccError::Compacted));
        assert_eq!(s.hash_kv(5), Err(MvccError::Compacted));
        assert_eq!(s.hash_kv(6).unwrap().1, 5);
    }

    #[test]
    fn hash_future_revision_fails() {
        let s = TestStore::new();
        assert_eq!(s.hash_kv(2), Err(MvccError::FutureRev));
    }
}
