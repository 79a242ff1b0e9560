//! What the member that keeps the deadlines does for a keep-alive or a
//! TimeToLive, whether its own client sent it or a follower forwarded it.

use std::time::{Duration, Instant};

use super::{Renewal, Revocation};
use crate::pb::etcdserverpb::{LeaseCheckpoint, LeaseCheckpointRequest, LeaseTimeToLiveResponse};
use crate::pb::internal::internal_request::Request;
use crate::raft_node::NodeHandle;

/// How long a forwarded request waits for this member to apply what was
/// committed when it arrived (etcd's leasehttp applyTimeout).
const APPLY_WAIT: Duration = Duration::from_secs(1);

/// Waits (a little) until this member has applied what is committed: a
/// lease granted through another member may be committed and not yet
/// applied here, and must not be answered "not found".
pub async fn caught_up(node: &NodeHandle) {
    let committed = node
        .shared
        .commit_index
        .load(std::sync::atomic::Ordering::Acquire);
    if node
        .shared
        .applied_index
        .load(std::sync::atomic::Ordering::Acquire)
        >= committed
    {
        return;
    }
    let _ = tokio::time::timeout(APPLY_WAIT, node.shared.wait_applied(committed)).await;
}

/// Renews `ids` on this member's lessor: per id, the granted TTL, 0 when the
/// lease does not exist (or expired and was revoked meanwhile), None when
/// this lessor is not primary (or lost that before it could answer) or the
/// answer did not come before `deadline`.
///
/// An expired lease is answered once its revocation is applied, as etcd
/// does: here, when `wait_for_revocation`; otherwise it is left None at
/// once, for the caller to ask again. A follower's batch holds the renewals
/// of many clients, and one expired lease waiting in the revocation queue
/// (1000 a second) must not hold up the others.
///
/// A lease with a checkpointed remaining TTL has it cleared through Raft
/// first (one entry for all such leases of the call), so a restart does not
/// bring the old remaining TTL back.
pub async fn renew(
    node: &NodeHandle,
    ids: &[i64],
    deadline: Instant,
    wait_for_revocation: bool,
) -> Vec<Option<i64>> {
    caught_up(node).await;
    let lessor = &node.shared.lessor;
    let mut out = vec![None; ids.len()];
    let mut expired = Vec::new();
    let mut to_clear = Vec::new();
    for (i, renewal) in lessor
        .renew_many(ids, Instant::now())
        .into_iter()
        .enumerate()
    {
        match renewal {
            Renewal::Renewed(ttl) => out[i] = Some(ttl),
            Renewal::NotFound => out[i] = Some(0),
            Renewal::NotPrimary => {}
            Renewal::Expired(rx) => expired.push((i, rx)),
            Renewal::ClearCheckpoint => to_clear.push(i),
        }
    }
    if !to_clear.is_empty() {
        let checkpoints = to_clear
            .iter()
            .map(|&i| LeaseCheckpoint {
                id: ids[i],
                remaining_ttl: 0,
            })
            .collect();
        let clear = node.propose(Request::LeaseCheckpoint(LeaseCheckpointRequest {
            checkpoints,
        }));
        if let Ok(Ok(_)) = tokio::time::timeout_at(deadline.into(), clear).await {
            let now = Instant::now();
            for i in to_clear {
                match lessor.renew(ids[i], now, true) {
                    Renewal::Renewed(ttl) => out[i] = Some(ttl),
                    Renewal::NotFound => out[i] = Some(0),
                    Renewal::Expired(rx) => expired.push((i, rx)),
                    Renewal::NotPrimary | Renewal::ClearCheckpoint => {}
                }
            }
        }
    }
    if !wait_for_revocation {
        return out;
    }
    for (i, rx) in expired {
        if let Ok(Ok(Revocation::Revoked)) = tokio::time::timeout_at(deadline.into(), rx).await {
            out[i] = Some(0);
        }
    }
    out
}

/// TimeToLive from this member's lessor (the header left for the caller);
/// None when there is no such lease.
pub fn time_to_live(node: &NodeHandle, id: i64, keys: bool) -> Option<LeaseTimeToLiveResponse> {
    let view = node.shared.lessor.lookup(id, Instant::now())?;
    let keys = if keys {
        let sm = node.shared.sm.read().expect("state poisoned");
        sm.store.keys_with_lease(id)
    } else {
        Vec::new()
    };
    Some(LeaseTimeToLiveResponse {
        header: None,
        id,
        ttl: view.remaining,
        granted_ttl: view.granted_ttl,
        keys,
    })
}
