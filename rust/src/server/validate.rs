//! Request checks etcd makes in its gRPC layer, before anything is proposed.

use tonic::Status;

use crate::errors::{self, invalid};
use crate::mvcc::check_txn_duplicates;
use crate::pb::etcdserverpb::{
    request_op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

pub fn range(r: &RangeRequest) -> Result<(), Status> {
    if r.key.is_empty() {
        return Err(invalid(errors::EMPTY_KEY));
    }
    // etcd 3.5.1 checks neither enum: an unknown sort_order reads unsorted, and
    // an unknown sort_target with a known order panics the server (nil
    // sorter). Only that case is refused, with later etcd's message.
    if (0..=2).contains(&r.sort_order) && !(0..=4).contains(&r.sort_target) {
        return Err(invalid(errors::INVALID_SORT));
    }
    Ok(())
}

pub fn put(r: &PutRequest) -> Result<(), Status> {
    if r.key.is_empty() {
        return Err(invalid(errors::EMPTY_KEY));
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(invalid(errors::VALUE_PROVIDED));
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(invalid(errors::LEASE_PROVIDED));
    }
    Ok(())
}

pub fn delete_range(r: &DeleteRangeRequest) -> Result<(), Status> {
    if r.key.is_empty() {
        return Err(invalid(errors::EMPTY_KEY));
    }
    Ok(())
}

pub fn txn(r: &TxnRequest, max_ops: usize) -> Result<(), Status> {
    check_txn_ops(r, max_ops)?;
    if !check_txn_duplicates(r) {
        return Err(invalid(errors::DUPLICATE_KEY));
    }
    Ok(())
}

fn check_txn_ops(r: &TxnRequest, max_ops: usize) -> Result<(), Status> {
    if r.compare.len() > max_ops || r.success.len() > max_ops || r.failure.len() > max_ops {
        return Err(invalid(errors::TOO_MANY_OPS));
    }
    for c in &r.compare {
        if c.key.is_empty() {
            return Err(invalid(errors::EMPTY_KEY));
        }
    }
    for op in r.success.iter().chain(r.failure.iter()) {
        request_op(op, max_ops)?;
    }
    Ok(())
}

fn request_op(op: &RequestOp, max_ops: usize) -> Result<(), Status> {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => range(r),
        Some(request_op::Request::RequestPut(r)) => put(r),
        Some(request_op::Request::RequestDeleteRange(r)) => delete_range(r),
        Some(request_op::Request::RequestTxn(r)) => check_txn_ops(r, max_ops),
        None => Err(invalid(errors::KEY_NOT_FOUND)),
    }
}

/// Whether a txn only reads (etcd serves those without a Raft round).
pub fn txn_is_read_only(r: &TxnRequest) -> bool {
    r.success
        .iter()
        .chain(r.failure.iter())
        .all(|op| match &op.request {
            Some(request_op::Request::RequestRange(_)) => true,
            Some(request_op::Request::RequestTxn(t)) => txn_is_read_only(t),
            _ => false,
        })
}

/// Whether every read in a read-only txn asked for serializable.
pub fn txn_is_serializable(r: &TxnRequest) -> bool {
    r.success
        .iter()
        .chain(r.failure.iter())
        .all(|op| match &op.request {
            Some(request_op::Request::RequestRange(rr)) => rr.serializable,
            Some(request_op::Request::RequestTxn(t)) => txn_is_serializable(t),
            _ => false,
        })
}
