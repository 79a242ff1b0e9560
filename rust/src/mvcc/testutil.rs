//! Builders shared by the unit tests, and [`TestStore`]: a store with its
//! key bucket in memory, offering the operations with the bucket filled in.

use super::bucket::MemBucket;
use super::compaction::Compaction;
use super::error::MvccError;
use super::store::Store;
use super::write::PrevValues;
use crate::pb::etcdserverpb::{
    compare, request_op, Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse,
};
use crate::pb::mvccpb::{Event, KeyValue};

/// A store and its key bucket, in memory. Events always carry prev_kv (as
/// when somebody watches), so they can be compared with a model's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestStore {
    pub store: Store,
    pub bucket: MemBucket,
}

impl TestStore {
    pub fn new() -> TestStore {
        TestStore::default()
    }

    pub fn put(
        &mut self,
        req: &PutRequest,
        lease_ok: &dyn Fn(i64) -> bool,
    ) -> Result<(PutResponse, Vec<Event>), MvccError> {
        self.store
            .put(&mut self.bucket, PrevValues::InEvents, req, lease_ok)
    }

    pub fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<(DeleteRangeResponse, Vec<Event>), MvccError> {
        self.store
            .delete_range(&mut self.bucket, PrevValues::InEvents, req)
    }

    pub fn txn(
        &mut self,
        req: &TxnRequest,
        lease_ok: &dyn Fn(i64) -> bool,
    ) -> Result<(TxnResponse, Vec<Event>), MvccError> {
        self.store
            .txn(&mut self.bucket, PrevValues::InEvents, req, lease_ok)
    }

    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        self.store.range(&self.bucket, req)
    }

    /// Compacts, both steps at once.
    pub fn compact(&mut self, rev: i64) -> Result<(), MvccError> {
        let mut job: Compaction = self.store.compact(rev)?;
        job.finish(&mut self.bucket)
    }

    pub fn events_since(
        &self,
        key: &[u8],
        range_end: &[u8],
        start_rev: i64,
        max: usize,
    ) -> Result<Vec<Event>, MvccError> {
        self.store
            .events_since(&self.bucket, key, range_end, start_rev, max, true)
    }

    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64), MvccError> {
        self.store.hash_kv(&self.bucket, rev)
    }

    pub fn current_revision(&self) -> i64 {
        self.store.current_revision()
    }

    pub fn compact_revision(&self) -> i64 {
        self.store.compact_revision()
    }

    pub fn keys_count(&self) -> usize {
        self.store.keys_count()
    }

    pub fn keys_with_lease(&self, lease: i64) -> Vec<Vec<u8>> {
        self.store.keys_with_lease(lease)
    }
}

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
pub fn put(s: &mut TestStore, k: &str, v: &str) -> i64 {
    s.put(&put_req(k, v), &any_lease).unwrap();
    s.current_revision()
}

pub fn put_lease(s: &mut TestStore, k: &str, lease: i64) -> i64 {
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

pub fn del(s: &mut TestStore, k: &str) -> i64 {
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

pub fn get_at(s: &TestStore, k: &str, rev: i64) -> Option<KeyValue> {
    s.range(&range_req(k, "", rev))
        .unwrap()
        .kvs
        .into_iter()
        .next()
}

pub fn get(s: &TestStore, k: &str) -> Option<KeyValue> {
    get_at(s, k, 0)
}

/// Every key at `rev`.
pub fn all_at(s: &TestStore, rev: i64) -> Vec<KeyValue> {
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
pub fn sample_history(s: &mut TestStore) {
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
