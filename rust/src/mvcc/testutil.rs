//! Builders shared by the unit tests.

use super::store::Store;
use crate::pb::etcdserverpb::{
    compare, request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};
use crate::pb::mvccpb::KeyValue;

pub fn any_lease(_: i64) -> bool {
    true
}

pub fn put_req(k: &str, v: &str) -> PutRequest {
    PutRequest {
        key: k.as_bytes().to_vec(),
        value: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// Puts and returns the new current revision.
pub fn put(s: &mut Store, k: &str, v: &str) -> i64 {
    s.put(&put_req(k, v), &any_lease).unwrap();
    s.current_revision()
}

pub fn put_lease(s: &mut Store, k: &str, lease: i64) -> i64 {
    let mut req = put_req(k, "v");
    req.lease = lease;
    s.put(&req, &any_lease).unwrap();
    s.current_revision()
}

pub fn del_req(k: &str, end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: k.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        prev_kv: false,
    }
}

pub fn del(s: &mut Store, k: &str) -> i64 {
    s.delete_range(&del_req(k, "")).unwrap();
    s.current_revision()
}

pub fn range_req(k: &str, end: &str, rev: i64) -> RangeRequest {
    RangeRequest {
        key: k.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        revision: rev,
        ..Default::default()
    }
}

pub fn get_at(s: &Store, k: &str, rev: i64) -> Option<KeyValue> {
    s.range(&range_req(k, "", rev))
        .unwrap()
        .kvs
        .into_iter()
        .next()
}

pub fn get(s: &Store, k: &str) -> Option<KeyValue> {
    get_at(s, k, 0)
}

/// Every key at `rev`.
pub fn all_at(s: &Store, rev: i64) -> Vec<KeyValue> {
    s.range(&range_req("\0", "\0", rev)).unwrap().kvs
}

pub fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect()
}

pub fn put_op(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(put_req(k, v))),
    }
}

pub fn del_op(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(del_req(k, end))),
    }
}

pub fn range_op(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(range_req(k, end, 0))),
    }
}

pub fn txn_op(t: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestTxn(t)),
    }
}

pub fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare,
        success,
        failure,
    }
}

pub fn cmp(
    k: &str,
    target: compare::CompareTarget,
    result: compare::CompareResult,
    union: compare::TargetUnion,
) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: k.as_bytes().to_vec(),
        range_end: vec![],
        target_union: Some(union),
    }
}

/// A history with overwrites, deletes, re-creations, a multi-key txn and a
/// range delete: revisions 2..=11.
pub fn sample_history(s: &mut Store) {
    put(s, "a", "a1"); // 2
    put(s, "b", "b1"); // 3
    put(s, "a", "a2"); // 4
    del(s, "b"); // 5
    put(s, "c", "c1"); // 6
    s.txn(
        &txn(
            vec![],
            vec![put_op("b", "b2"), put_op("d", "d1"), del_op("c", "")],
            vec![],
        ),
        &any_lease,
    )
    .unwrap(); // 7
    put(s, "a", "a3"); // 8
    s.delete_range(&del_req("a", "c")).unwrap(); // 9
    put(s, "e", "e1"); // 10
    put(s, "a", "a4"); // 11
    assert_eq!(s.current_revision(), 11);
}
