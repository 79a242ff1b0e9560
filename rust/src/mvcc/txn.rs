//! Txn: compares, then the success or failure ops, as one revision.
//!
//! As in etcd 3.5:
//! - Every compare of the whole tree, nested txns included, is evaluated
//!   first against the state before the txn; nested compares do NOT see the
//!   writes of earlier ops. This yields the "path": pre-order, one bool per
//!   txn on the chosen branches.
//! - Then, along that path, every put is checked (ignore_value/ignore_lease
//!   need the key to exist before the txn, then the lease must exist), then
//!   every range's revision (future / compacted). The first failure is the
//!   txn's error and nothing is written.
//! - Then the ops run in order at one revision; ranges see earlier writes.
//!   An op that still fails (e.g. ignore_value on a key an earlier op of the
//!   same txn deleted, which etcd itself would panic on) rolls every write
//!   back and fails the txn.

use std::cmp::Ordering;

use super::bucket::{KeyBucket, KeyBucketMut};
use super::error::MvccError;
use super::index::KeyRange;
use super::store::Store;
use super::write::{PrevValues, WriteTxn};
use crate::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::pb::etcdserverpb::request_op::Request;
use crate::pb::etcdserverpb::response_op::Response;
use crate::pb::etcdserverpb::{
    Compare, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use crate::pb::mvccpb::{Event, KeyValue};

impl Store {
    /// Runs a txn as one revision (none if it wrote nothing); all or
    /// nothing. The top-level header is left None; nested responses carry
    /// the header etcd gives them (see [`execute`]).
    pub fn txn(
        &mut self,
        bucket: &mut dyn KeyBucketMut,
        prev_values: PrevValues,
        req: &TxnRequest,
        lease_ok: &dyn Fn(i64) -> bool,
    ) -> Result<(TxnResponse, Vec<Event>), MvccError> {
        let view = self.current;
        let mut path = Vec::new();
        self.compare_path(&*bucket, req, view, &mut path)?;
        self.check_puts(req, &path, &mut 0, view, lease_ok)?;
        self.check_ranges(req, &path, &mut 0, view)?;
        let mut w = WriteTxn::begin(self, bucket, prev_values);
        match execute(&mut w, req, &path, &mut 0, lease_ok) {
            Ok(resp) => Ok((resp, w.commit())),
            Err(e) => {
                w.rollback()?;
                Err(e)
            }
        }
    }

    /// A txn that only reads (no put, delete or writing nested txn on any
    /// branch): answered from a read transaction, without the write path.
    pub fn read_only_txn(
        &self,
        bucket: &dyn KeyBucket,
        req: &TxnRequest,
    ) -> Result<TxnResponse, MvccError> {
        let view = self.current;
        let mut path = Vec::new();
        self.compare_path(bucket, req, view, &mut path)?;
        self.check_ranges(req, &path, &mut 0, view)?;
        read_only(self, bucket, req, &path, &mut 0, view)
    }

    fn compare_path(
        &self,
        bucket: &dyn KeyBucket,
        req: &TxnRequest,
        view: i64,
        path: &mut Vec<bool>,
    ) -> Result<(), MvccError> {
        let mut ok = true;
        for c in &req.compare {
            if !self.compare_holds(bucket, c, view)? {
                ok = false;
                break;
            }
        }
        path.push(ok);
        for op in branch(req, ok) {
            if let Some(Request::RequestTxn(t)) = &op.request {
                self.compare_path(bucket, t, view, path)?;
            }
        }
        Ok(())
    }

    /// A compare holds when every key in its range satisfies it. With no key
    /// in range, a VALUE compare fails and the others compare against an
    /// all-zero KeyValue (so `version == 0` means "does not exist").
    fn compare_holds(
        &self,
        bucket: &dyn KeyBucket,
        c: &Compare,
        view: i64,
    ) -> Result<bool, MvccError> {
        let kvs = self.visible(bucket, KeyRange::new(&c.key, &c.range_end), view)?;
        if kvs.is_empty() {
            return Ok(
                c.target != CompareTarget::Value as i32 && compare_kv(c, &KeyValue::default())
            );
        }
        Ok(kvs.iter().all(|kv| compare_kv(c, kv)))
    }

    fn check_puts(
        &self,
        req: &TxnRequest,
        path: &[bool],
        cursor: &mut usize,
        view: i64,
        lease_ok: &dyn Fn(i64) -> bool,
    ) -> Result<(), MvccError> {
        let ok = path[*cursor];
        *cursor += 1;
        for op in branch(req, ok) {
            match &op.request {
                Some(Request::RequestTxn(t)) => self.check_puts(t, path, cursor, view, lease_ok)?,
                Some(Request::RequestPut(p)) => {
                    if (p.ignore_value || p.ignore_lease) && self.index.get(&p.key, view).is_none()
                    {
                        return Err(MvccError::KeyNotFound);
                    }
                    if p.lease != 0 && !lease_ok(p.lease) {
                        return Err(MvccError::LeaseNotFound);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// etcd's pre-check of range revisions in a txn: 0 is fine, above the
    /// current revision is FutureRev, below the compact revision is
    /// Compacted (so, unlike a plain Range, a negative revision fails once
    /// the store was compacted).
    fn check_ranges(
        &self,
        req: &TxnRequest,
        path: &[bool],
        cursor: &mut usize,
        view: i64,
    ) -> Result<(), MvccError> {
        let ok = path[*cursor];
        *cursor += 1;
        for op in branch(req, ok) {
            match &op.request {
                Some(Request::RequestTxn(t)) => self.check_ranges(t, path, cursor, view)?,
                Some(Request::RequestRange(r)) if r.revision != 0 => {
                    if r.revision > view {
                        return Err(MvccError::FutureRev);
                    }
                    if r.revision < self.compacted {
                        return Err(MvccError::Compacted);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The chosen branches of a txn with no writes in them, answered as
/// [`execute`] would answer them.
fn read_only(
    store: &Store,
    bucket: &dyn KeyBucket,
    req: &TxnRequest,
    path: &[bool],
    cursor: &mut usize,
    view: i64,
) -> Result<TxnResponse, MvccError> {
    let succeeded = path[*cursor];
    *cursor += 1;
    let ops = branch(req, succeeded);
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            None => None,
            Some(Request::RequestRange(r)) => {
                let mut resp = store.plan_range(r, view)?.read(bucket)?;
                resp.header = Some(header(view));
                Some(Response::ResponseRange(resp))
            }
            Some(Request::RequestTxn(t)) => {
                let mut resp = read_only(store, bucket, t, path, cursor, view)?;
                resp.header = Some(ResponseHeader::default());
                Some(Response::ResponseTxn(resp))
            }
            Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => {
                return Err(MvccError::Corrupt(
                    "a write inside a txn taken for read-only".into(),
                ))
            }
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse {
        header: None,
        succeeded,
        responses,
    })
}

fn branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

/// Runs the chosen branch. Like etcd, each op's response carries a header
/// holding only a revision: for range, put and delete the txn's view after
/// the op (the revision being written once anything was written, else the
/// previous one); for a nested txn an all-zero header. The returned
/// (top-level) response has no header.
fn execute(
    w: &mut WriteTxn<'_>,
    req: &TxnRequest,
    path: &[bool],
    cursor: &mut usize,
    lease_ok: &dyn Fn(i64) -> bool,
) -> Result<TxnResponse, MvccError> {
    let succeeded = path[*cursor];
    *cursor += 1;
    let ops = branch(req, succeeded);
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            None => None,
            Some(Request::RequestRange(r)) => {
                let mut resp = w.range(r)?;
                resp.header = Some(header(w.view()));
                Some(Response::ResponseRange(resp))
            }
            Some(Request::RequestPut(p)) => {
                if p.lease != 0 && !lease_ok(p.lease) {
                    return Err(MvccError::LeaseNotFound);
                }
                let mut resp = w.put(p)?;
                resp.header = Some(header(w.view()));
                Some(Response::ResponsePut(resp))
            }
            Some(Request::RequestDeleteRange(d)) => {
                let mut resp = w.delete_range(d)?;
                resp.header = Some(header(w.view()));
                Some(Response::ResponseDeleteRange(resp))
            }
            Some(Request::RequestTxn(t)) => {
                let mut resp = execute(w, t, path, cursor, lease_ok)?;
                resp.header = Some(ResponseHeader::default());
                Some(Response::ResponseTxn(resp))
            }
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse {
        header: None,
        succeeded,
        responses,
    })
}

fn header(revision: i64) -> ResponseHeader {
    ResponseHeader {
        revision,
        ..Default::default()
    }
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let int = |x: i64| match (CompareTarget::try_from(c.target), &c.target_union) {
        (Ok(CompareTarget::Version), Some(TargetUnion::Version(v)))
        | (Ok(CompareTarget::Create), Some(TargetUnion::CreateRevision(v)))
        | (Ok(CompareTarget::Mod), Some(TargetUnion::ModRevision(v)))
        | (Ok(CompareTarget::Lease), Some(TargetUnion::Lease(v))) => x.cmp(v),
        _ => x.cmp(&0),
    };
    let ord = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => match &c.target_union {
            Some(TargetUnion::Value(v)) => kv.value.as_slice().cmp(v.as_slice()),
            _ => kv.value.as_slice().cmp(&[][..]),
        },
        Ok(CompareTarget::Version) => int(kv.version),
        Ok(CompareTarget::Create) => int(kv.create_revision),
        Ok(CompareTarget::Mod) => int(kv.mod_revision),
        Ok(CompareTarget::Lease) => int(kv.lease),
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::pb::etcdserverpb::compare::CompareResult as R;
    use crate::pb::etcdserverpb::compare::CompareTarget as T;
    use crate::pb::etcdserverpb::compare::TargetUnion as U;
    use crate::pb::etcdserverpb::{PutRequest, RangeRequest};

    fn run(s: &mut TestStore, t: TxnRequest) -> (TxnResponse, Vec<Event>) {
        s.txn(&t, &any_lease).unwrap()
    }

    fn holds(s: &TestStore, c: Compare) -> bool {
        let (resp, _) = s
            .clone()
            .txn(&txn(vec![c], vec![], vec![]), &any_lease)
            .unwrap();
        resp.succeeded
    }

    fn range_resp(r: &ResponseOp) -> &crate::pb::etcdserverpb::RangeResponse {
        match &r.response {
            Some(Response::ResponseRange(rr)) => rr,
            other => panic!("not a range response: {other:?}"),
        }
    }

    fn store() -> TestStore {
        let mut s = TestStore::new();
        put(&mut s, "a", "1"); // 2
        put(&mut s, "b", "2"); // 3
        put(&mut s, "a", "3"); // 4
        s
    }

    #[test]
    fn empty_txn_succeeds_without_advancing_revision() {
        let mut s = store();
        let (resp, evs) = run(&mut s, txn(vec![], vec![], vec![]));
        assert!(resp.succeeded);
        assert!(resp.responses.is_empty());
        assert!(evs.is_empty());
        assert_eq!(s.current_revision(), 4);
    }

    #[test]
    fn txn_is_one_revision() {
        let mut s = store();
        let (_, evs) = run(
            &mut s,
            txn(
                vec![],
                vec![put_op("x", "1"), put_op("y", "1"), del_op("a", "")],
                vec![],
            ),
        );
        assert_eq!(s.current_revision(), 5);
        assert_eq!(evs.len(), 3);
        assert!(evs.iter().all(|e| e.kv.as_ref().unwrap().mod_revision == 5));
        let subs: Vec<i64> = s
            .bucket
            .revisions()
            .iter()
            .filter(|r| r.main == 5)
            .map(|r| r.sub)
            .collect();
        assert_eq!(subs, vec![0, 1, 2]);
    }

    #[test]
    fn read_only_txn_does_not_advance_revision() {
        let mut s = store();
        let (resp, evs) = run(&mut s, txn(vec![], vec![range_op("a", "")], vec![]));
        assert_eq!(s.current_revision(), 4);
        assert!(evs.is_empty());
        let rr = range_resp(&resp.responses[0]);
        assert_eq!(rr.kvs[0].value, b"3");
        assert_eq!(rr.header.unwrap().revision, 4);
    }

    #[test]
    fn reads_inside_txn_see_earlier_writes() {
        let mut s = store();
        let (resp, _) = run(
            &mut s,
            txn(vec![], vec![put_op("a", "new"), range_op("a", "")], vec![]),
        );
        let rr = range_resp(&resp.responses[1]);
        assert_eq!(rr.kvs[0].value, b"new");
        assert_eq!(rr.kvs[0].mod_revision, 5);
        assert_eq!(rr.header.unwrap().revision, 5);
    }

    #[test]
    fn failed_compare_runs_failure_branch() {
        let mut s = store();
        let c = cmp("a", T::Value, R::Equal, U::Value(b"nope".to_vec()));
        let (resp, _) = run(
            &mut s,
            txn(vec![c], vec![put_op("s", "1")], vec![put_op("f", "1")]),
        );
        assert!(!resp.succeeded);
        assert!(get(&s, "f").is_some());
        assert!(get(&s, "s").is_none());
    }

    #[test]
    fn all_compares_must_hold() {
        let s = store();
        let t = txn(
            vec![
                cmp("a", T::Value, R::Equal, U::Value(b"3".to_vec())),
                cmp("b", T::Value, R::Equal, U::Value(b"x".to_vec())),
            ],
            vec![],
            vec![],
        );
        assert!(!s.clone().txn(&t, &any_lease).unwrap().0.succeeded);
    }

    #[test]
    fn compare_value_equal_greater_less_not_equal() {
        let s = store();
        assert!(holds(
            &s,
            cmp("a", T::Value, R::Equal, U::Value(b"3".to_vec()))
        ));
        assert!(holds(
            &s,
            cmp("a", T::Value, R::Greater, U::Value(b"2".to_vec()))
        ));
        assert!(holds(
            &s,
            cmp("a", T::Value, R::Less, U::Value(b"4".to_vec()))
        ));
        assert!(holds(
            &s,
            cmp("a", T::Value, R::NotEqual, U::Value(b"4".to_vec()))
        ));
        assert!(!holds(
            &s,
            cmp("a", T::Value, R::NotEqual, U::Value(b"3".to_vec()))
        ));
    }

    #[test]
    fn compare_value_on_missing_key_always_fails() {
        let s = store();
        assert!(!holds(
            &s,
            cmp("zz", T::Value, R::NotEqual, U::Value(b"x".to_vec()))
        ));
        assert!(!holds(&s, cmp("zz", T::Value, R::Equal, U::Value(vec![]))));
    }

    #[test]
    fn compare_version_zero_means_missing_key() {
        let s = store();
        assert!(holds(&s, cmp("zz", T::Version, R::Equal, U::Version(0))));
        assert!(!holds(&s, cmp("a", T::Version, R::Equal, U::Version(0))));
        assert!(holds(&s, cmp("a", T::Version, R::Equal, U::Version(2))));
    }

    #[test]
    fn compare_create_mod_and_lease() {
        let mut s = store();
        put_lease(&mut s, "l", 9);
        assert!(holds(
            &s,
            cmp("a", T::Create, R::Equal, U::CreateRevision(2))
        ));
        assert!(holds(&s, cmp("a", T::Mod, R::Equal, U::ModRevision(4))));
        assert!(holds(&s, cmp("a", T::Mod, R::Less, U::ModRevision(5))));
        assert!(holds(&s, cmp("l", T::Lease, R::Equal, U::Lease(9))));
        assert!(holds(&s, cmp("a", T::Lease, R::Equal, U::Lease(0))));
        assert!(holds(
            &s,
            cmp("zz", T::Create, R::Equal, U::CreateRevision(0))
        ));
    }

    #[test]
    fn compare_with_mismatched_union_compares_against_zero() {
        let s = store();
        // target MOD but the union names a version: etcd compares with 0.
        assert!(holds(&s, cmp("a", T::Mod, R::Greater, U::Version(100))));
    }

    #[test]
    fn compare_with_range_end_requires_every_key() {
        let s = store();
        let mut c = cmp("a", T::Create, R::Greater, U::CreateRevision(1));
        c.range_end = b"c".to_vec();
        assert!(holds(&s, c.clone()));
        c.target_union = Some(U::CreateRevision(2));
        assert!(!holds(&s, c));
    }

    #[test]
    fn compare_with_empty_range_compares_zero_kv() {
        let s = store();
        let mut c = cmp("x", T::Mod, R::Equal, U::ModRevision(0));
        c.range_end = b"y".to_vec();
        assert!(holds(&s, c));
    }

    #[test]
    fn unknown_compare_result_holds() {
        let s = store();
        let mut c = cmp("a", T::Value, R::Equal, U::Value(b"nope".to_vec()));
        c.result = 42;
        assert!(holds(&s, c));
    }

    #[test]
    fn txn_put_response_prev_kv_and_headers() {
        let mut s = store();
        let mut p = put_req("a", "9");
        p.prev_kv = true;
        let op = RequestOp {
            request: Some(Request::RequestPut(p)),
        };
        let (resp, evs) = run(&mut s, txn(vec![], vec![op], vec![]));
        let Some(Response::ResponsePut(pr)) = &resp.responses[0].response else {
            panic!()
        };
        assert_eq!(pr.prev_kv.as_ref().unwrap().value, b"3");
        assert_eq!(pr.header.unwrap().revision, 5);
        assert!(resp.header.is_none());
        assert_eq!(evs[0].prev_kv.as_ref().unwrap().value, b"3");
    }

    #[test]
    fn txn_delete_of_nothing_reports_previous_revision() {
        let mut s = store();
        let (resp, _) = run(&mut s, txn(vec![], vec![del_op("zz", "")], vec![]));
        let Some(Response::ResponseDeleteRange(d)) = &resp.responses[0].response else {
            panic!()
        };
        assert_eq!((d.deleted, d.header.unwrap().revision), (0, 4));
        assert_eq!(s.current_revision(), 4);
    }

    #[test]
    fn nested_txn_runs_its_own_branch() {
        let mut s = store();
        let inner = txn(
            vec![cmp("b", T::Value, R::Equal, U::Value(b"2".to_vec()))],
            vec![put_op("inner", "yes")],
            vec![put_op("inner", "no")],
        );
        let (resp, _) = run(
            &mut s,
            txn(vec![], vec![put_op("outer", "1"), txn_op(inner)], vec![]),
        );
        assert_eq!(get(&s, "inner").unwrap().value, b"yes");
        assert_eq!(get(&s, "inner").unwrap().mod_revision, 5);
        let Some(Response::ResponseTxn(t)) = &resp.responses[1].response else {
            panic!()
        };
        assert!(t.succeeded);
        assert_eq!(t.header, Some(ResponseHeader::default()));
        assert_eq!(s.current_revision(), 5);
    }

    #[test]
    fn nested_compares_see_state_before_the_txn() {
        let mut s = store();
        // The outer put changes b, but the nested compare was evaluated
        // before any op ran, so it still sees b == "2".
        let inner = txn(
            vec![cmp("b", T::Value, R::Equal, U::Value(b"2".to_vec()))],
            vec![put_op("seen", "old")],
            vec![put_op("seen", "new")],
        );
        run(
            &mut s,
            txn(vec![], vec![put_op("b", "changed"), txn_op(inner)], vec![]),
        );
        assert_eq!(get(&s, "seen").unwrap().value, b"old");
    }

    #[test]
    fn sibling_nested_txns_follow_their_own_paths() {
        let mut s = store();
        let t1 = txn(
            vec![cmp("a", T::Value, R::Equal, U::Value(b"no".to_vec()))],
            vec![put_op("t1", "s")],
            vec![txn_op(txn(
                vec![],
                vec![put_op("t1deep", "s")],
                vec![put_op("t1deep", "f")],
            ))],
        );
        let t2 = txn(
            vec![cmp("a", T::Value, R::Equal, U::Value(b"3".to_vec()))],
            vec![put_op("t2", "s")],
            vec![put_op("t2", "f")],
        );
        run(&mut s, txn(vec![], vec![txn_op(t1), txn_op(t2)], vec![]));
        assert!(get(&s, "t1").is_none());
        assert_eq!(get(&s, "t1deep").unwrap().value, b"s");
        assert_eq!(get(&s, "t2").unwrap().value, b"s");
    }

    #[test]
    fn txn_with_missing_lease_changes_nothing() {
        let mut s = store();
        let before = s.clone();
        let mut p = put_req("x", "1");
        p.lease = 5;
        let t = txn(
            vec![],
            vec![
                put_op("y", "1"),
                RequestOp {
                    request: Some(Request::RequestPut(p)),
                },
            ],
            vec![],
        );
        assert_eq!(s.txn(&t, &|_| false), Err(MvccError::LeaseNotFound));
        assert_eq!(s, before);
    }

    #[test]
    fn txn_lease_only_checked_on_taken_branch() {
        let mut s = store();
        let mut p = put_req("x", "1");
        p.lease = 5;
        let t = txn(
            vec![],
            vec![put_op("y", "1")],
            vec![RequestOp {
                request: Some(Request::RequestPut(p)),
            }],
        );
        assert!(s.txn(&t, &|_| false).is_ok());
    }

    #[test]
    fn txn_ignore_value_on_missing_key_fails_atomically() {
        let mut s = store();
        let before = s.clone();
        let p = PutRequest {
            key: b"zz".to_vec(),
            ignore_value: true,
            ..Default::default()
        };
        let t = txn(
            vec![],
            vec![
                put_op("y", "1"),
                RequestOp {
                    request: Some(Request::RequestPut(p)),
                },
            ],
            vec![],
        );
        assert_eq!(s.txn(&t, &any_lease), Err(MvccError::KeyNotFound));
        assert_eq!(s, before);
    }

    #[test]
    fn txn_ignore_value_on_key_deleted_earlier_in_txn_rolls_back() {
        let mut s = store();
        let before = s.clone();
        let p = PutRequest {
            key: b"b".to_vec(),
            ignore_value: true,
            ..Default::default()
        };
        let t = txn(
            vec![],
            vec![
                del_op("a", "\0"),
                RequestOp {
                    request: Some(Request::RequestPut(p)),
                },
            ],
            vec![],
        );
        assert_eq!(s.txn(&t, &any_lease), Err(MvccError::KeyNotFound));
        assert_eq!(s, before);
    }

    #[test]
    fn txn_range_at_future_revision_fails() {
        let mut s = store();
        let r = RangeRequest {
            key: b"a".to_vec(),
            revision: 5,
            ..Default::default()
        };
        let t = txn(
            vec![],
            vec![
                put_op("y", "1"),
                RequestOp {
                    request: Some(Request::RequestRange(r)),
                },
            ],
            vec![],
        );
        assert_eq!(s.txn(&t, &any_lease), Err(MvccError::FutureRev));
        assert_eq!(s.current_revision(), 4);
    }

    #[test]
    fn txn_range_at_compacted_revision_fails() {
        let mut s = store();
        s.compact(3).unwrap();
        let r = RangeRequest {
            key: b"a".to_vec(),
            revision: 2,
            ..Default::default()
        };
        let t = txn(
            vec![],
            vec![RequestOp {
                request: Some(Request::RequestRange(r)),
            }],
            vec![],
        );
        assert_eq!(s.txn(&t, &any_lease), Err(MvccError::Compacted));
    }

    #[test]
    fn txn_put_errors_take_precedence_over_range_errors() {
        let mut s = store();
        let r = RangeRequest {
            key: b"a".to_vec(),
            revision: 99,
            ..Default::default()
        };
        let mut p = put_req("x", "1");
        p.lease = 5;
        let t = txn(
            vec![],
            vec![
                RequestOp {
                    request: Some(Request::RequestRange(r)),
                },
                RequestOp {
                    request: Some(Request::RequestPut(p)),
                },
            ],
            vec![],
        );
        assert_eq!(s.txn(&t, &|_| false), Err(MvccError::LeaseNotFound));
    }

    #[test]
    fn txn_range_at_old_revision_inside_write_txn() {
        let mut s = store();
        let r = RangeRequest {
            key: b"a".to_vec(),
            revision: 2,
            ..Default::default()
        };
        let t = txn(
            vec![],
            vec![
                put_op("a", "new"),
                RequestOp {
                    request: Some(Request::RequestRange(r)),
                },
            ],
            vec![],
        );
        let (resp, _) = run(&mut s, t);
        assert_eq!(range_resp(&resp.responses[1]).kvs[0].value, b"1");
    }

    #[test]
    fn txn_delete_then_range_sees_deletion() {
        let mut s = store();
        let (resp, evs) = run(
            &mut s,
            txn(vec![], vec![del_op("a", ""), range_op("a", "\0")], vec![]),
        );
        assert_eq!(keys(&range_resp(&resp.responses[1]).kvs), vec!["b"]);
        assert_eq!(evs.len(), 1);
    }

    #[test]
    fn txn_events_are_in_op_order_with_prev_kv() {
        let mut s = store();
        let (_, evs) = run(
            &mut s,
            txn(vec![], vec![put_op("b", "new"), del_op("a", "")], vec![]),
        );
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].kv.as_ref().unwrap().key, b"b");
        assert_eq!(evs[0].prev_kv.as_ref().unwrap().value, b"2");
        assert_eq!(evs[1].kv.as_ref().unwrap().key, b"a");
        assert_eq!(evs[1].prev_kv.as_ref().unwrap().value, b"3");
    }

    #[test]
    fn empty_request_op_gives_empty_response_op() {
        let mut s = store();
        let (resp, _) = run(
            &mut s,
            txn(vec![], vec![RequestOp { request: None }], vec![]),
        );
        assert_eq!(resp.responses, vec![ResponseOp { response: None }]);
    }
}
