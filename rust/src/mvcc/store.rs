//! The store: the revision index in RAM, the revision counters and the
//! compaction point. Values are in the key bucket ([`super::KeyBucket`]),
//! which every operation is handed: on disk in a server, in memory in tests.
//!
//! The operations live beside this file (range.rs, write.rs, txn.rs,
//! hash.rs, events.rs, compaction.rs, rebuild.rs); this one holds the state
//! and the revision bookkeeping.

use super::bucket::KeyBucket;
use super::error::MvccError;
use super::index::{Index, KeyRange};
use super::leases::LeaseKeys;
use crate::pb::mvccpb::KeyValue;

/// An etcd-compatible multi-version key-value store.
///
/// Every write (a put, a delete that deleted something, a txn that wrote
/// something) makes one new main revision. The key bucket keeps every
/// version of every key, tombstones included, until compaction removes what
/// no read at a revision `>= compact_revision` can see; the index says which
/// version each key had at each revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Store {
    pub(super) index: Index,
    /// Revision of the last completed write; 1 for an empty store, as etcd.
    pub(super) current: i64,
    /// Revision of the last compaction; -1 until the first, as etcd.
    pub(super) compacted: i64,
    pub(super) leases: LeaseKeys,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Store {
        Store {
            index: Index::new(),
            current: 1,
            compacted: -1,
            leases: LeaseKeys::default(),
        }
    }

    /// Revision of the last completed write (1 for an empty store).
    pub fn current_revision(&self) -> i64 {
        self.current
    }

    /// Revision of the last compaction (-1 if never compacted, as etcd
    /// reports in HashKV).
    pub fn compact_revision(&self) -> i64 {
        self.compacted
    }

    /// Keys that exist now.
    pub fn keys_count(&self) -> usize {
        self.index.live_keys()
    }

    /// Keys whose current value carries `lease`, in key order.
    pub fn keys_with_lease(&self, lease: i64) -> Vec<Vec<u8>> {
        self.leases.keys(lease)
    }

    /// Versions visible at `at` for the keys in `range`, in key order.
    pub(super) fn visible(
        &self,
        bucket: &dyn KeyBucket,
        range: KeyRange<'_>,
        at: i64,
    ) -> Result<Vec<KeyValue>, MvccError> {
        self.index
            .range(range, at)
            .map(|(_, kr)| read_version(bucket, kr.modified))
            .collect()
    }
}

/// The version the index names at `rev`; its absence means the index and
/// the bucket disagree, which only damage can cause.
pub(super) fn read_version(
    bucket: &dyn KeyBucket,
    rev: super::Revision,
) -> Result<KeyValue, MvccError> {
    bucket.get(rev)?.ok_or_else(|| {
        MvccError::Corrupt(format!(
            "the index names revision {rev:?}, which the key bucket does not hold"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn new_store_is_at_revision_1_never_compacted() {
        let s = Store::new();
        assert_eq!(s.current_revision(), 1);
        assert_eq!(s.compact_revision(), -1);
        assert_eq!(s.keys_count(), 0);
    }

    #[test]
    fn keys_with_lease_follows_puts_and_deletes() {
        let mut s = TestStore::new();
        put_lease(&mut s, "a", 7);
        put_lease(&mut s, "b", 7);
        put_lease(&mut s, "c", 8);
        assert_eq!(s.keys_with_lease(7), vec![b"a".to_vec(), b"b".to_vec()]);
        put(&mut s, "a", "no lease");
        del(&mut s, "b");
        assert!(s.keys_with_lease(7).is_empty());
        assert_eq!(s.keys_with_lease(8), vec![b"c".to_vec()]);
    }

    #[test]
    fn keys_count_counts_live_keys() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        put(&mut s, "b", "1");
        put(&mut s, "a", "2");
        del(&mut s, "b");
        assert_eq!(s.keys_count(), 1);
    }

    #[test]
    fn a_revision_missing_from_the_bucket_is_reported_as_corruption() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        let empty = super::super::bucket::MemBucket::default();
        assert!(matches!(
            s.store.range(&empty, &range_req("a", "", 0)),
            Err(MvccError::Corrupt(_))
        ));
    }
}
