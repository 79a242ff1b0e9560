//! The store: key index + revision-ordered log + revision counters.
//!
//! The operations live beside this file (range.rs, write.rs, txn.rs,
//! hash.rs, events.rs, snapshot.rs); this one holds the state, the
//! revision bookkeeping and compaction.

use std::collections::BTreeMap;

use super::error::MvccError;
use super::index::{Index, KeyRange};
use super::leases::LeaseKeys;
use super::revision::Revision;
use crate::pb::mvccpb::KeyValue;

/// An etcd-compatible multi-version key-value store, in memory.
///
/// Every write (a put, a delete that deleted something, a txn that wrote
/// something) makes one new main revision. The log keeps every version of
/// every key, tombstones included, until compaction drops what no read at a
/// revision `>= compact_revision` can see.
#[derive(Debug, Clone, PartialEq)]
pub struct Store {
    pub(super) index: Index,
    /// Every surviving version. A tombstone is stored as a KeyValue with only
    /// `key` and `mod_revision` set (`create_revision == 0` marks it), which
    /// is also the shape of a DELETE event's kv.
    pub(super) log: BTreeMap<Revision, KeyValue>,
    /// [`version_bytes`] summed over `log`, kept as the log changes (the
    /// quota check reads it on every write).
    pub(super) log_bytes: usize,
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

/// True for the log's tombstone entries.
pub(super) fn is_tombstone(kv: &KeyValue) -> bool {
    kv.create_revision == 0
}

pub(super) fn tombstone_kv(key: &[u8], rev: Revision) -> KeyValue {
    KeyValue {
        key: key.to_vec(),
        mod_revision: rev.main,
        ..Default::default()
    }
}

/// Bytes one stored version is counted for, beyond its key and value.
pub const PER_VERSION_BYTES: usize = 48;

/// What one version in the log counts for in [`Store::size_bytes`].
pub(super) fn version_bytes(kv: &KeyValue) -> usize {
    kv.key.len() + kv.value.len() + PER_VERSION_BYTES
}

impl Store {
    /// Approximate bytes held by the log (keys, values and per-version
    /// overhead): every version until compaction drops it. O(1).
    pub fn size_bytes(&self) -> usize {
        self.log_bytes
    }

    /// Adds one version to the log.
    pub(super) fn insert_version(&mut self, at: Revision, kv: KeyValue) {
        self.log_bytes += version_bytes(&kv);
        if let Some(old) = self.log.insert(at, kv) {
            self.log_bytes -= version_bytes(&old);
        }
    }

    /// Drops every version at or after `from` from the log.
    pub(super) fn truncate_log(&mut self, from: Revision) {
        let dropped = self.log.split_off(&from);
        self.log_bytes -= dropped.values().map(version_bytes).sum::<usize>();
    }

    pub fn new() -> Store {
        Store {
            index: Index::new(),
            log: BTreeMap::new(),
            log_bytes: 0,
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

    /// The version of `key` visible at revision `at`.
    pub(super) fn kv_at(&self, key: &[u8], at: i64) -> Option<&KeyValue> {
        let kr = self.index.get(key, at)?;
        let kv = self.log.get(&kr.modified);
        debug_assert!(
            kv.is_some(),
            "index names revision {:?} missing from log",
            kr.modified
        );
        kv
    }

    /// Versions visible at `at` for the keys in `range`, in key order.
    pub(super) fn visible<'a>(
        &'a self,
        range: KeyRange<'a>,
        at: i64,
    ) -> impl Iterator<Item = &'a KeyValue> + 'a {
        self.index.range(range, at).filter_map(move |(_, kr)| {
            let kv = self.log.get(&kr.modified);
            debug_assert!(
                kv.is_some(),
                "index names revision {:?} missing from log",
                kr.modified
            );
            kv
        })
    }

    /// Compacts at `rev`: afterwards reads below `rev` fail with Compacted
    /// and the log keeps only what reads at revisions `>= rev` can see.
    pub fn compact(&mut self, rev: i64) -> Result<(), MvccError> {
        if rev <= self.compacted {
            return Err(MvccError::Compacted);
        }
        if rev > self.current {
            return Err(MvccError::FutureRev);
        }
        let kept = self.index.compact(rev);
        let newer = self.log.split_off(&Revision::new(rev + 1, 0));
        let older = std::mem::replace(&mut self.log, newer);
        for (r, kv) in older {
            if kept.contains(&r) {
                self.log.insert(r, kv);
            } else {
                self.log_bytes -= version_bytes(&kv);
            }
        }
        self.compacted = rev;
        Ok(())
    }
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
    fn compact_future_revision_fails() {
        let mut s = Store::new();
        put(&mut s, "a", "1");
        assert_eq!(s.compact(3), Err(MvccError::FutureRev));
        assert_eq!(s.compact_revision(), -1);
    }

    #[test]
    fn compact_at_or_below_last_compaction_fails() {
        let mut s = Store::new();
        put(&mut s, "a", "1");
        put(&mut s, "a", "2");
        s.compact(3).unwrap();
        assert_eq!(s.compact(3), Err(MvccError::Compacted));
        assert_eq!(s.compact(2), Err(MvccError::Compacted));
    }

    #[test]
    fn compact_at_current_revision_is_allowed() {
        let mut s = Store::new();
        put(&mut s, "a", "1");
        s.compact(2).unwrap();
        assert_eq!(s.compact_revision(), 2);
    }

    #[test]
    fn compact_keeps_latest_version_before_compaction_point() {
        let mut s = Store::new();
        put(&mut s, "a", "1"); // 2
        put(&mut s, "a", "2"); // 3
        put(&mut s, "a", "3"); // 4
        s.compact(3).unwrap();
        let revs: Vec<i64> = s.log.keys().map(|r| r.main).collect();
        assert_eq!(revs, vec![3, 4]);
        assert_eq!(get_at(&s, "a", 3).unwrap().value, b"2");
    }

    #[test]
    fn compact_drops_deleted_keys_entirely() {
        let mut s = Store::new();
        put(&mut s, "a", "1"); // 2
        del(&mut s, "a"); // 3
        put(&mut s, "b", "1"); // 4
        s.compact(4).unwrap();
        let revs: Vec<i64> = s.log.keys().map(|r| r.main).collect();
        assert_eq!(revs, vec![4]);
        assert!(s.index.key_index(b"a").is_none());
    }

    #[test]
    fn compact_at_delete_revision_keeps_tombstone() {
        let mut s = Store::new();
        put(&mut s, "a", "1"); // 2
        del(&mut s, "a"); // 3
        s.compact(3).unwrap();
        let revs: Vec<i64> = s.log.keys().map(|r| r.main).collect();
        assert_eq!(revs, vec![3]);
        assert!(get_at(&s, "a", 3).is_none());
    }

    #[test]
    fn reads_at_and_after_compaction_are_unchanged() {
        let mut s = Store::new();
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
        let mut s = Store::new();
        put(&mut s, "a", "1");
        put(&mut s, "a", "2");
        s.compact(3).unwrap();
        assert_eq!(s.range(&range_req("a", "", 2)), Err(MvccError::Compacted));
        assert!(s.range(&range_req("a", "", 3)).is_ok());
    }

    #[test]
    fn keys_with_lease_follows_puts_and_deletes() {
        let mut s = Store::new();
        put_lease(&mut s, "a", 7);
        put_lease(&mut s, "b", 7);
        put_lease(&mut s, "c", 8);
        assert_eq!(s.keys_with_lease(7), vec![b"a".to_vec(), b"b".to_vec()]);
        put(&mut s, "a", "no lease");
        del(&mut s, "b");
        assert!(s.keys_with_lease(7).is_empty());
        assert_eq!(s.keys_with_lease(8), vec![b"c".to_vec()]);
    }

    fn counted_bytes(s: &Store) -> usize {
        s.log.values().map(version_bytes).sum()
    }

    #[test]
    fn size_bytes_follows_writes_rollbacks_and_compaction() {
        let mut s = Store::new();
        assert_eq!(s.size_bytes(), 0);
        sample_history(&mut s);
        put(&mut s, "z", "12345");
        assert_eq!(s.size_bytes(), counted_bytes(&s));
        assert_eq!(s.size_bytes(), counted_bytes(&s));
        let before = s.size_bytes();
        // A txn whose second put fails rolls its first put back.
        use crate::pb::etcdserverpb::{
            request_op::Request as Op, PutRequest, RequestOp, TxnRequest,
        };
        let op = |key: &str, ignore_value: bool| RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key: key.as_bytes().to_vec(),
                value: b"value".to_vec(),
                ignore_value,
                ..Default::default()
            })),
        };
        let txn = TxnRequest {
            success: vec![op("y", false), op("missing", true)],
            ..Default::default()
        };
        assert!(s.txn(&txn, &|_| true).is_err());
        assert_eq!(s.size_bytes(), before);
        let cur = s.current_revision();
        s.compact(cur).unwrap();
        assert_eq!(s.size_bytes(), counted_bytes(&s));
        assert!(s.size_bytes() < before);
    }

    #[test]
    fn compaction_frees_overwritten_history() {
        let mut s = Store::new();
        let value = "v".repeat(1000);
        for _ in 0..10 {
            put(&mut s, "k", &value);
        }
        assert_eq!(s.size_bytes(), 10 * (1 + 1000 + PER_VERSION_BYTES));
        s.compact(s.current_revision()).unwrap();
        assert_eq!(s.size_bytes(), 1 + 1000 + PER_VERSION_BYTES);
    }

    #[test]
    fn keys_count_counts_live_keys() {
        let mut s = Store::new();
        put(&mut s, "a", "1");
        put(&mut s, "b", "1");
        put(&mut s, "a", "2");
        del(&mut s, "b");
        assert_eq!(s.keys_count(), 1);
    }
}
