//! The backend quota (`--quota-backend-bytes`) and the NOSPACE alarm's cap.
//!
//! etcd guards its database size in three places, and so do we:
//!
//! 1. Before proposing, a member refuses a write that would take its database
//!    to the quota (a Put, a Txn with puts, a LeaseGrant), raises a NOSPACE
//!    alarm for itself through Raft and answers "database space exceeded".
//! 2. When applying, a write that passed step 1 but finds the database at the
//!    quota (writers racing each other) is still applied, yet answered with
//!    the same error, and this member raises its alarm.
//! 3. While any NOSPACE alarm is active the cluster is capped: applying a
//!    Put, a Txn with puts or a LeaseGrant fails on every member. Reads,
//!    deletes, puts-free txns, compaction and lease revokes still work, so an
//!    operator can free space (compact, defragment) and then disarm the alarm.
//!
//! The size checked is the backend file's (`StateMachine::db_size`), as
//! etcd checks its bbolt file's; the cost of a request is etcd's estimate of
//! what it would add to it.
use crate::pb::etcdserverpb::{request_op, PutRequest, RequestOp, TxnRequest};
use crate::pb::internal::internal_request::Request;

/// What a LeaseGrant costs (etcd's leaseOverhead).
pub const LEASE_BYTES: usize = 64;
/// What a put costs beyond its key and value (etcd's kvOverhead).
pub const PER_VERSION_BYTES: usize = 256;

/// A member's backend quota in bytes; 0 means none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
}

impl Quota {
    pub fn new(limit: u64) -> Quota {
        Quota { limit }
    }

    /// Whether a request costing `cost` fits a database of `size` bytes.
    /// Requests that add nothing always fit; etcd keeps the size strictly
    /// below the quota.
    pub fn allows(&self, size: usize, cost: usize) -> bool {
        cost == 0 || self.limit == 0 || (size as u64).saturating_add(cost as u64) < self.limit
    }
}

/// Bytes `req` may add to the database: 0 for anything that cannot grow it
/// (reads, deletes, compaction, lease revokes, alarms, membership).
pub fn cost(req: &Request) -> usize {
    match req {
        Request::Put(p) => put_cost(p),
        Request::Txn(t) => txn_cost(t),
        Request::LeaseGrant(_) => LEASE_BYTES,
        _ => 0,
    }
}

/// Whether a capped cluster (NOSPACE active) refuses `req`: whatever could
/// grow the database.
pub fn refused_when_capped(req: &Request) -> bool {
    cost(req) > 0
}

fn put_cost(p: &PutRequest) -> usize {
    p.key.len() + p.value.len() + PER_VERSION_BYTES
}

/// The costlier branch: only one of them runs. Unlike etcd 3.5, puts inside
/// nested txns count too (they grow the database just the same).
fn txn_cost(t: &TxnRequest) -> usize {
    ops_cost(&t.success).max(ops_cost(&t.failure))
}

fn ops_cost(ops: &[RequestOp]) -> usize {
    ops.iter()
        .map(|op| match &op.request {
            Some(request_op::Request::RequestPut(p)) => put_cost(p),
            Some(request_op::Request::RequestTxn(t)) => txn_cost(t),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::{
        AlarmRequest, CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest,
        RangeRequest,
    };

    fn put(key: &str, value: &str) -> PutRequest {
        PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }
    }

    fn op_put(key: &str, value: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(put(key, value))),
        }
    }

    fn op_range(key: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: key.into(),
                ..Default::default()
            })),
        }
    }

    fn op_delete(key: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: key.into(),
                    ..Default::default()
                },
            )),
        }
    }

    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            success,
            failure,
            ..Default::default()
        }
    }

    #[test]
    fn put_costs_key_value_and_version_overhead() {
        assert_eq!(cost(&Request::Put(put("ab", "cde"))), 5 + PER_VERSION_BYTES);
    }

    #[test]
    fn txn_costs_its_costlier_branch() {
        let t = txn(
            vec![op_put("a", "1")],
            vec![op_put("b", "22"), op_put("c", "333")],
        );
        assert_eq!(cost(&Request::Txn(t)), 3 + 4 + 2 * PER_VERSION_BYTES);
    }

    #[test]
    fn txn_counts_puts_in_nested_txns() {
        let inner = RequestOp {
            request: Some(request_op::Request::RequestTxn(txn(
                vec![op_put("k", "v")],
                vec![],
            ))),
        };
        assert_eq!(
            cost(&Request::Txn(txn(vec![inner], vec![]))),
            2 + PER_VERSION_BYTES
        );
    }

    #[test]
    fn lease_grant_costs_one_lease() {
        let g = Request::LeaseGrant(LeaseGrantRequest { id: 1, ttl: 60 });
        assert_eq!(cost(&g), LEASE_BYTES);
    }

    #[test]
    fn requests_that_cannot_grow_the_database_cost_nothing() {
        let free = [
            Request::Txn(txn(vec![op_range("a"), op_delete("b")], vec![])),
            Request::DeleteRange(DeleteRangeRequest::default()),
            Request::Compaction(CompactionRequest::default()),
            Request::LeaseRevoke(LeaseRevokeRequest { id: 1 }),
            Request::Alarm(AlarmRequest::default()),
        ];
        for r in &free {
            assert_eq!(cost(r), 0, "{r:?}");
            assert!(!refused_when_capped(r), "{r:?}");
        }
    }

    #[test]
    fn capped_cluster_refuses_what_could_grow_it() {
        let refused = [
            Request::Put(put("a", "")),
            Request::Txn(txn(vec![], vec![op_put("a", "1")])),
            Request::LeaseGrant(LeaseGrantRequest { id: 1, ttl: 60 }),
        ];
        for r in &refused {
            assert!(refused_when_capped(r), "{r:?}");
        }
    }

    #[test]
    fn quota_keeps_size_strictly_below_the_limit() {
        let q = Quota::new(100);
        assert!(q.allows(50, 49));
        assert!(!q.allows(50, 50));
        assert!(!q.allows(150, 1));
        // Nothing to add always fits, even past the quota.
        assert!(q.allows(150, 0));
    }

    #[test]
    fn zero_quota_means_none() {
        assert!(Quota::new(0).allows(usize::MAX, usize::MAX));
    }
}
