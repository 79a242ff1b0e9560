//! Range: reading keys at a revision, with etcd 3.5's limit, count, filter
//! and sort rules.
//!
//! The order of steps is etcd's and is visible to clients:
//! 1. `count_only`: only `count` (keys in range at the revision), nothing
//!    else, `more` false.
//! 2. Without sort order and filters, and with `limit > 0`, only the first
//!    `limit + 1` keys (key order) are fetched; otherwise every key is.
//!    A `sort_target` other than KEY with `sort_order` NONE still takes the
//!    limited fetch, then sorts those ascending.
//! 3. The min/max mod/create revision filters drop fetched kvs.
//! 4. Sorting (stable; ties keep key order).
//! 5. Truncation to `limit`; `more` is set when that dropped anything.
//!
//! `count` is always the number of keys in the range at that revision,
//! ignoring the limit AND the filters.

use super::bucket::KeyBucket;
use super::error::MvccError;
use super::index::KeyRange;
use super::key_index::KeyRevision;
use super::store::{read_version, Store};
use crate::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::pb::etcdserverpb::{RangeRequest, RangeResponse};
use crate::pb::mvccpb::KeyValue;

/// A range decided from the index alone: which versions to read, and how to
/// shape the answer. Planning needs the index (a lock a server holds
/// briefly); reading the versions needs only a read transaction of the key
/// bucket taken at the same moment, so a big range never holds up writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePlan {
    /// The versions to read, in key order.
    versions: Vec<KeyRevision>,
    count: i64,
    count_only: bool,
    keys_only: bool,
    limit: i64,
    sort_order: i32,
    sort_target: i32,
}

impl Store {
    /// Reads at `req.revision` (`<= 0`: the current revision). Header is
    /// left None.
    pub fn range(
        &self,
        bucket: &dyn KeyBucket,
        req: &RangeRequest,
    ) -> Result<RangeResponse, MvccError> {
        self.plan_range(req, self.current)?.read(bucket)
    }

    /// Plans a range as seen by a reader whose "current" revision is `view`
    /// (inside a write txn that has already written, `view` is the revision
    /// being written, so its reads see its own writes).
    pub fn plan_range(&self, req: &RangeRequest, view: i64) -> Result<RangePlan, MvccError> {
        if req.revision > view {
            return Err(MvccError::FutureRev);
        }
        let rev = if req.revision <= 0 {
            view
        } else {
            req.revision
        };
        if rev < self.compacted {
            return Err(MvccError::Compacted);
        }
        let range = KeyRange::new(&req.key, &req.range_end);
        let mut plan = RangePlan {
            versions: Vec::new(),
            count: 0,
            count_only: req.count_only,
            keys_only: req.keys_only,
            limit: req.limit,
            sort_order: req.sort_order,
            sort_target: req.sort_target,
        };
        if req.count_only {
            plan.count = self.index.count(range, rev) as i64;
            return Ok(plan);
        }

        let filtered = req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0;
        let fetch = if req.sort_order != SortOrder::None as i32 || filtered || req.limit <= 0 {
            usize::MAX
        } else {
            usize::try_from(req.limit)
                .unwrap_or(usize::MAX)
                .saturating_add(1)
        };
        // The filters look at revisions the index knows, so filtered-out
        // keys are never read; a limited fetch stops reading at limit + 1.
        let wanted = |kr: &KeyRevision| {
            let (m, c) = (kr.modified.main, kr.created.main);
            (req.max_mod_revision == 0 || m <= req.max_mod_revision)
                && (req.min_mod_revision == 0 || m >= req.min_mod_revision)
                && (req.max_create_revision == 0 || c <= req.max_create_revision)
                && (req.min_create_revision == 0 || c >= req.min_create_revision)
        };
        for (_, kr) in self.index.range(range, rev) {
            plan.count += 1;
            if plan.versions.len() < fetch && wanted(&kr) {
                plan.versions.push(kr);
            }
        }
        Ok(plan)
    }
}

impl RangePlan {
    /// Reads the planned versions and shapes the answer: sort, then limit
    /// (`more` when that dropped anything), then keys_only.
    pub fn read(self, bucket: &dyn KeyBucket) -> Result<RangeResponse, MvccError> {
        if self.count_only {
            return Ok(RangeResponse {
                count: self.count,
                ..Default::default()
            });
        }
        let mut kvs = self
            .versions
            .iter()
            .map(|kr| read_version(bucket, kr.modified))
            .collect::<Result<Vec<_>, _>>()?;
        sort(&mut kvs, self.sort_order, self.sort_target);
        let mut more = false;
        if self.limit > 0 && kvs.len() as u64 > self.limit as u64 {
            kvs.truncate(self.limit as usize);
            more = true;
        }
        if self.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        Ok(RangeResponse {
            header: None,
            kvs,
            more,
            count: self.count,
        })
    }
}

/// etcd's sort step. Results arrive in key order, so KEY/NONE leaves them
/// be; another target with order NONE means ascending. Unknown enum values
/// leave the order as is.
fn sort(kvs: &mut [KeyValue], order: i32, target: i32) {
    let Ok(target) = SortTarget::try_from(target) else {
        return;
    };
    let order = match SortOrder::try_from(order) {
        Ok(SortOrder::None) if target != SortTarget::Key => SortOrder::Ascend,
        Ok(o) => o,
        Err(_) => return,
    };
    let descending = match order {
        SortOrder::None => return,
        SortOrder::Ascend => false,
        SortOrder::Descend => true,
    };
    let by = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    if descending {
        kvs.sort_by(|a, b| by(b, a));
    } else {
        kvs.sort_by(by);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    /// a@2 (v "3"), b@3 (v "1"), c@4 (v "2"), then a again @5 (v "9").
    fn store() -> TestStore {
        let mut s = TestStore::new();
        put(&mut s, "a", "3");
        put(&mut s, "b", "1");
        put(&mut s, "c", "2");
        put(&mut s, "a", "9");
        s
    }

    fn all() -> RangeRequest {
        range_req("a", "\0", 0)
    }

    #[test]
    fn empty_store_range_returns_nothing() {
        let s = TestStore::new();
        let r = s.range(&all()).unwrap();
        assert!(r.kvs.is_empty());
        assert_eq!((r.count, r.more), (0, false));
        assert!(r.header.is_none());
    }

    #[test]
    fn range_single_key_returns_full_kv() {
        let s = store();
        let kv = get(&s, "a").unwrap();
        assert_eq!(
            kv,
            KeyValue {
                key: b"a".to_vec(),
                create_revision: 2,
                mod_revision: 5,
                version: 2,
                value: b"9".to_vec(),
                lease: 0
            }
        );
    }

    #[test]
    fn range_at_old_revision_sees_old_value() {
        let s = store();
        let kv = get_at(&s, "a", 4).unwrap();
        assert_eq!(
            (kv.value.as_slice(), kv.mod_revision, kv.version),
            (&b"3"[..], 2, 1)
        );
    }

    #[test]
    fn range_future_revision_fails() {
        let s = store();
        assert_eq!(s.range(&range_req("a", "", 6)), Err(MvccError::FutureRev));
    }

    #[test]
    fn range_negative_revision_reads_current() {
        let s = store();
        assert_eq!(
            s.range(&range_req("a", "", -3)).unwrap().kvs[0].mod_revision,
            5
        );
    }

    #[test]
    fn range_half_open_interval() {
        let s = store();
        let r = s.range(&range_req("a", "c", 0)).unwrap();
        assert_eq!(keys(&r.kvs), vec!["a", "b"]);
    }

    #[test]
    fn range_from_key_with_nul_end_returns_all_following_keys() {
        let s = store();
        let r = s.range(&range_req("b", "\0", 0)).unwrap();
        assert_eq!(keys(&r.kvs), vec!["b", "c"]);
    }

    #[test]
    fn limit_sets_more_and_count_counts_all() {
        let s = store();
        let mut req = all();
        req.limit = 2;
        let r = s.range(&req).unwrap();
        assert_eq!(keys(&r.kvs), vec!["a", "b"]);
        assert!(r.more);
        assert_eq!(r.count, 3);
    }

    #[test]
    fn limit_equal_to_result_size_has_no_more() {
        let s = store();
        let mut req = all();
        req.limit = 3;
        let r = s.range(&req).unwrap();
        assert_eq!(r.kvs.len(), 3);
        assert!(!r.more);
    }

    #[test]
    fn negative_limit_means_no_limit() {
        let s = store();
        let mut req = all();
        req.limit = -1;
        let r = s.range(&req).unwrap();
        assert_eq!(r.kvs.len(), 3);
        assert!(!r.more);
    }

    #[test]
    fn count_only_returns_count_without_kvs() {
        let s = store();
        let mut req = all();
        req.count_only = true;
        req.limit = 1;
        let r = s.range(&req).unwrap();
        assert!(r.kvs.is_empty());
        assert_eq!((r.count, r.more), (3, false));
    }

    #[test]
    fn keys_only_clears_values() {
        let s = store();
        let mut req = all();
        req.keys_only = true;
        let r = s.range(&req).unwrap();
        assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
        assert_eq!(r.kvs[0].mod_revision, 5);
    }

    #[test]
    fn sort_by_mod_descend() {
        let s = store();
        let mut req = all();
        req.sort_order = SortOrder::Descend as i32;
        req.sort_target = SortTarget::Mod as i32;
        let r = s.range(&req).unwrap();
        assert_eq!(keys(&r.kvs), vec!["a", "c", "b"]);
    }

    #[test]
    fn sort_by_value_ascend() {
        let s = store();
        let mut req = all();
        req.sort_order = SortOrder::Ascend as i32;
        req.sort_target = SortTarget::Value as i32;
        let r = s.range(&req).unwrap();
        assert_eq!(keys(&r.kvs), vec!["b", "c", "a"]);
    }

    #[test]
    fn sort_by_key_descend() {
        let s = store();
        let mut req = all();
        req.sort_order = SortOrder::Descend as i32;
        let r = s.range(&req).unwrap();
        assert_eq!(keys(&r.kvs), vec!["c", "b", "a"]);
    }

    #[test]
    fn sort_target_without_order_sorts_ascending() {
        let s = store();
        let mut req = all();
        req.sort_target = SortTarget::Create as i32;
        let r = s.range(&req).unwrap();
        assert_eq!(keys(&r.kvs), vec!["a", "b", "c"]);
        req.sort_target = SortTarget::Version as i32;
        let r = s.range(&req).unwrap();
        assert_eq!(keys(&r.kvs), vec!["b", "c", "a"]);
    }

    #[test]
    fn sort_ties_keep_key_order_even_descending() {
        let s = store();
        let mut req = all();
        req.sort_order = SortOrder::Descend as i32;
        req.sort_target = SortTarget::Version as i32;
        let r = s.range(&req).unwrap();
        assert_eq!(keys(&r.kvs), vec!["a", "b", "c"]);
    }

    #[test]
    fn sort_applies_before_limit() {
        let s = store();
        let mut req = all();
        req.sort_order = SortOrder::Descend as i32;
        req.sort_target = SortTarget::Mod as i32;
        req.limit = 1;
        let r = s.range(&req).unwrap();
        assert_eq!(keys(&r.kvs), vec!["a"]);
        assert!(r.more);
        assert_eq!(r.count, 3);
    }

    #[test]
    fn sort_target_without_order_sorts_only_the_limited_fetch() {
        // etcd fetches limit+1 keys in key order when sort_order is NONE,
        // then sorts those: d, the smallest value, is never considered.
        let mut s = store();
        put(&mut s, "d", "0");
        let mut req = all();
        req.sort_target = SortTarget::Value as i32;
        req.limit = 1;
        let r = s.range(&req).unwrap();
        assert_eq!(keys(&r.kvs), vec!["b"]);
        assert!(r.more);
    }

    #[test]
    fn min_mod_revision_filters_but_count_ignores_filter() {
        let s = store();
        let mut req = all();
        req.min_mod_revision = 4;
        let r = s.range(&req).unwrap();
        assert_eq!(keys(&r.kvs), vec!["a", "c"]);
        assert_eq!(r.count, 3);
    }

    #[test]
    fn max_mod_revision_filters() {
        let s = store();
        let mut req = all();
        req.max_mod_revision = 3;
        let r = s.range(&req).unwrap();
        assert_eq!(keys(&r.kvs), vec!["b"]);
    }

    #[test]
    fn create_revision_filters() {
        let s = store();
        let mut req = all();
        req.min_create_revision = 3;
        req.max_create_revision = 3;
        let r = s.range(&req).unwrap();
        assert_eq!(keys(&r.kvs), vec!["b"]);
    }

    #[test]
    fn filter_with_limit_sets_more_from_filtered_results() {
        let s = store();
        let mut req = all();
        req.min_mod_revision = 4;
        req.limit = 1;
        let r = s.range(&req).unwrap();
        assert_eq!(keys(&r.kvs), vec!["a"]);
        assert!(r.more);
        assert_eq!(r.count, 3);
        req.limit = 2;
        let r = s.range(&req).unwrap();
        assert!(!r.more);
    }

    #[test]
    fn range_at_old_revision_counts_keys_then() {
        let s = store();
        let r = s.range(&range_req("a", "\0", 3)).unwrap();
        assert_eq!(keys(&r.kvs), vec!["a", "b"]);
        assert_eq!(r.count, 2);
    }

    #[test]
    fn deleted_key_is_invisible_after_delete_visible_before() {
        let mut s = store();
        del(&mut s, "b");
        assert!(get(&s, "b").is_none());
        assert!(get_at(&s, "b", 5).is_some());
        assert_eq!(s.range(&all()).unwrap().count, 2);
    }
}
