//! etcd's "duplicate key given in txn request" rule (v3rpc checkIntervals),
//! which the gRPC layer applies before proposing a txn.
//!
//! Within the success ops, and separately within the failure ops:
//! - no key may be put twice;
//! - no put may fall inside a delete of the same level or of a nested txn
//!   that comes before it;
//! - a nested txn's success and failure branches may put the same key (only
//!   one runs), but neither may repeat a key put by an earlier sibling.
//!
//! etcd checks nested txns first (in order, each against the deletes of this
//! level and of earlier nested txns), then this level's puts against all of
//! them. A nested txn's puts are not checked against the deletes of a LATER
//! sibling, and a delete with `range_end == "\0"` (from-key) never conflicts:
//! etcd treats it as the empty interval `[key, "\0")`. Both are kept here so
//! we accept exactly what etcd accepts.

use std::collections::HashSet;

use crate::pb::etcdserverpb::request_op::Request;
use crate::pb::etcdserverpb::{RequestOp, TxnRequest};

/// True when the txn is free of duplicates (acceptable), false when etcd
/// would answer "etcdserver: duplicate key given in txn request".
pub fn check_txn_duplicates(req: &TxnRequest) -> bool {
    intervals(&req.success).is_some() && intervals(&req.failure).is_some()
}

/// Deleted intervals: `(key, None)` is one key, `(key, Some(end))` is
/// `[key, end)`.
#[derive(Default)]
struct Deletes(Vec<(Vec<u8>, Option<Vec<u8>>)>);

impl Deletes {
    fn hits(&self, k: &[u8]) -> bool {
        self.0.iter().any(|(begin, end)| match end {
            None => k == begin.as_slice(),
            Some(end) => k >= begin.as_slice() && k < end.as_slice(),
        })
    }
}

/// The keys put and intervals deleted by `ops` (nested txns included), or
/// None on a duplicate.
fn intervals(ops: &[RequestOp]) -> Option<(HashSet<Vec<u8>>, Deletes)> {
    let mut dels = Deletes::default();
    for op in ops {
        if let Some(Request::RequestDeleteRange(d)) = &op.request {
            let end = (!d.range_end.is_empty()).then(|| d.range_end.clone());
            dels.0.push((d.key.clone(), end));
        }
    }

    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = intervals(&t.success)?;
        let (puts_else, dels_else) = intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || dels.hits(k) {
                return None;
            }
        }
        puts.extend(puts_then.iter().cloned());
        for k in &puts_else {
            if puts.contains(k) && !puts_then.contains(k) {
                return None;
            }
            if dels.hits(k) {
                return None;
            }
        }
        puts.extend(puts_else);
        dels.0.extend(dels_then.0);
        dels.0.extend(dels_else.0);
    }

    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || dels.hits(&p.key) {
            return None;
        }
        puts.insert(p.key.clone());
    }
    Some((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn ok(success: Vec<RequestOp>) -> bool {
        check_txn_duplicates(&txn(vec![], success, vec![]))
    }

    #[test]
    fn distinct_puts_are_fine() {
        assert!(ok(vec![put_op("a", "1"), put_op("b", "1")]));
    }

    #[test]
    fn same_key_put_twice_is_duplicate() {
        assert!(!ok(vec![put_op("a", "1"), put_op("a", "2")]));
    }

    #[test]
    fn put_and_delete_of_same_key_is_duplicate() {
        assert!(!ok(vec![put_op("a", "1"), del_op("a", "")]));
        assert!(!ok(vec![del_op("a", ""), put_op("a", "1")]));
    }

    #[test]
    fn put_inside_deleted_range_is_duplicate() {
        assert!(!ok(vec![del_op("a", "c"), put_op("b", "1")]));
        assert!(ok(vec![del_op("a", "c"), put_op("c", "1")]));
    }

    #[test]
    fn two_deletes_may_overlap() {
        assert!(ok(vec![
            del_op("a", "c"),
            del_op("b", "d"),
            del_op("b", "")
        ]));
    }

    #[test]
    fn from_key_delete_never_conflicts_as_in_etcd() {
        assert!(ok(vec![del_op("a", "\0"), put_op("b", "1")]));
    }

    #[test]
    fn success_and_failure_are_checked_separately() {
        let t = txn(vec![], vec![put_op("a", "1")], vec![put_op("a", "2")]);
        assert!(check_txn_duplicates(&t));
        let t = txn(vec![], vec![], vec![put_op("a", "1"), put_op("a", "2")]);
        assert!(!check_txn_duplicates(&t));
    }

    #[test]
    fn nested_then_and_else_may_put_same_key() {
        let inner = txn(vec![], vec![put_op("a", "1")], vec![put_op("a", "2")]);
        assert!(ok(vec![txn_op(inner)]));
    }

    #[test]
    fn nested_put_repeating_outer_put_is_duplicate() {
        let inner = txn(vec![], vec![put_op("a", "1")], vec![]);
        assert!(!ok(vec![put_op("a", "0"), txn_op(inner)]));
    }

    #[test]
    fn nested_put_inside_outer_delete_is_duplicate() {
        let inner = txn(vec![], vec![], vec![put_op("b", "1")]);
        assert!(!ok(vec![del_op("a", "c"), txn_op(inner)]));
    }

    #[test]
    fn outer_put_inside_nested_delete_is_duplicate() {
        let inner = txn(vec![], vec![del_op("a", "")], vec![]);
        assert!(!ok(vec![txn_op(inner), put_op("a", "1")]));
    }

    #[test]
    fn sibling_nested_txns_putting_same_key_are_duplicate() {
        let t1 = txn(vec![], vec![put_op("a", "1")], vec![]);
        let t2 = txn(vec![], vec![], vec![put_op("a", "2")]);
        assert!(!ok(vec![txn_op(t1), txn_op(t2)]));
    }

    #[test]
    fn later_nested_put_inside_earlier_nested_delete_is_duplicate() {
        let t1 = txn(vec![], vec![del_op("a", "")], vec![]);
        let t2 = txn(vec![], vec![put_op("a", "2")], vec![]);
        assert!(!ok(vec![txn_op(t1), txn_op(t2)]));
    }

    #[test]
    fn earlier_nested_put_inside_later_nested_delete_passes_as_in_etcd() {
        let t1 = txn(vec![], vec![put_op("a", "2")], vec![]);
        let t2 = txn(vec![], vec![del_op("a", "")], vec![]);
        assert!(ok(vec![txn_op(t1), txn_op(t2)]));
    }

    #[test]
    fn duplicate_deep_inside_nested_txn_is_found() {
        let deep = txn(vec![], vec![put_op("x", "1"), put_op("x", "2")], vec![]);
        let mid = txn(vec![], vec![], vec![txn_op(deep)]);
        assert!(!ok(vec![txn_op(mid)]));
    }
}
