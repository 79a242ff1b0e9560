//! The primary lessor's clock: every [`CHECK_INTERVAL`] it revokes, through
//! Raft, the leases whose deadline passed, and proposes the checkpoints that
//! are due (etcd's lessor run loop and the server's expired-lease handler).
//!
//! At most half of [`REVOKE_RATE`] leases are handed out per pass (etcd's cap
//! of 1000 revocations a second), so a mass expiry never crowds out the
//! writes of clients. Their revocations are proposed together: the Raft loop
//! takes them into one batch, one fsync and one backend transaction, where
//! etcd proposes them sixteen at a time. Each is its own entry and its own
//! revision, as in etcd, so members and hashes agree with etcd's.

use std::time::Instant;

use tokio::sync::watch;

use super::{CHECKPOINT_BATCH, CHECKPOINT_RATE, CHECK_INTERVAL, REVOKE_RATE};
use crate::pb::etcdserverpb::{LeaseCheckpoint, LeaseCheckpointRequest, LeaseRevokeRequest};
use crate::pb::internal::internal_request::Request;
use crate::raft_node::NodeHandle;

/// Runs until `shutdown` flips to true.
pub async fn run(node: NodeHandle, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(CHECK_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
        if node.shared.stopped() {
            return;
        }
        revoke_expired(&node);
        propose_checkpoints(&node);
    }
}

/// Proposes the revocation of the leases that expired; a failed one is
/// handed out again by the lessor after its retry interval.
fn revoke_expired(node: &NodeHandle) {
    let expired = node.shared.lessor.expired(Instant::now(), REVOKE_RATE / 2);
    for id in expired {
        let node = node.clone();
        tokio::spawn(async move {
            let revoke = Request::LeaseRevoke(LeaseRevokeRequest { id });
            match node.propose(revoke).await {
                Ok(_) => {}
                // Revoked meanwhile, by a client or an earlier pass.
                Err(e) if e.code() == tonic::Code::NotFound => {}
                Err(e) => log::warn!(
                    "failed to revoke lease (lease-id {id:016x}): {}",
                    e.message()
                ),
            }
        });
    }
}

/// Proposes the checkpoints that are due, in entries of up to
/// [`CHECKPOINT_BATCH`], at most half of [`CHECKPOINT_RATE`] entries a pass.
fn propose_checkpoints(node: &NodeHandle) {
    if node.shared.lessor.config().checkpoint_interval.is_none() {
        return;
    }
    for _ in 0..CHECKPOINT_RATE / 2 {
        let due = node
            .shared
            .lessor
            .due_checkpoints(Instant::now(), CHECKPOINT_BATCH);
        if due.is_empty() {
            return;
        }
        let full = due.len() == CHECKPOINT_BATCH;
        let checkpoints = due
            .into_iter()
            .map(|(id, remaining_ttl)| LeaseCheckpoint { id, remaining_ttl })
            .collect();
        let node = node.clone();
        tokio::spawn(async move {
            let request = Request::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints });
            if let Err(e) = node.propose(request).await {
                log::warn!("failed to checkpoint leases: {}", e.message());
            }
        });
        if !full {
            return;
        }
    }
}
