//! Lease calls a follower hands to the leader, as etcd's followers do: only
//! the leader keeps deadlines, so keep-alives and TimeToLive are answered
//! there.
//!
//! etcd posts one HTTP request per renewal to the leader's peer URL. Here the
//! follower keeps one connection to the leader and batches: every keep-alive
//! its clients send is queued, and one task sends what is queued as one
//! `Peer.LeaseRenew` call of many leases, with a few calls in flight at a
//! time, so that under load the renewals of many clients share a call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::sender::connect;
use super::Transport;
use crate::errors;
use crate::pb::etcdserverpb::{LeaseTimeToLiveRequest, LeaseTimeToLiveResponse};
use crate::pb::peer::peer_client::PeerClient;
use crate::pb::peer::LeaseRenewBatch;

/// The most leases renewed in one call.
const MAX_BATCH: usize = 1000;
/// Calls in flight at once; further renewals wait and join the next batch.
const CALLS_IN_FLIGHT: usize = 4;
/// How long one forwarded call may take before it counts as failed (the
/// caller tries again until its own deadline).
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Renewals waiting to be forwarded, and who waits for their answers.
struct Pending {
    ids: Vec<i64>,
    reply: oneshot::Sender<Result<Vec<i64>, Status>>,
}

/// The follower side: a queue of renewals and a connection to the leader.
#[derive(Default)]
pub(super) struct Forwarder {
    queue: Mutex<Option<mpsc::UnboundedSender<Pending>>>,
    /// The leader's id and a client of its peer URLs.
    leader: Mutex<Option<(u64, PeerClient<Channel>)>>,
}

impl Transport {
    /// Renews `ids` on the leader: per id, its answer (the granted TTL; 0:
    /// no such lease; -1: the member asked does not keep deadlines, ask
    /// again). Fails when the leader could not be asked.
    pub async fn forward_renewals(self: &Arc<Self>, ids: Vec<i64>) -> Result<Vec<i64>, Status> {
        let (reply, answer) = oneshot::channel();
        let queue = {
            let mut q = self.forwarder.queue.lock().expect("forwarder poisoned");
            q.get_or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                self.runtime.spawn(send_batches(self.clone(), rx));
                tx
            })
            .clone()
        };
        queue
            .send(Pending { ids, reply })
            .map_err(|_| errors::stopped())?;
        answer.await.unwrap_or_else(|_| Err(errors::stopped()))
    }

    /// LeaseTimeToLive answered by the leader: None when it has no such
    /// lease.
    pub async fn forward_time_to_live(
        self: &Arc<Self>,
        request: LeaseTimeToLiveRequest,
    ) -> Result<Option<LeaseTimeToLiveResponse>, Status> {
        let mut client = self.leader_client().await?;
        let call = client.lease_time_to_live(request);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(resp)) => Ok(Some(resp.into_inner())),
            Ok(Err(e)) if e.code() == Code::NotFound => Ok(None),
            Ok(Err(e)) => {
                self.forget_leader_client();
                Err(e)
            }
            Err(_) => Err(errors::timed_out()),
        }
    }

    /// A client of the current leader's peer service, kept while it leads.
    async fn leader_client(self: &Arc<Self>) -> Result<PeerClient<Channel>, Status> {
        let link = self.link().ok_or_else(errors::stopped)?;
        let leader = link.shared.leader();
        if leader == 0 || leader == self.self_id() {
            return Err(errors::no_leader());
        }
        if let Some((id, client)) = &*self.forwarder.leader.lock().expect("forwarder poisoned") {
            if *id == leader {
                return Ok(client.clone());
            }
        }
        let urls = {
            let sm = link.shared.sm.read().expect("state poisoned");
            sm.membership
                .get(leader)
                .map(|m| m.peer_urls.clone())
                .unwrap_or_default()
        };
        let client = connect(&urls, self.local_ip, self.tls.clone())
            .await
            .map_err(|e| Status::unavailable(format!("cannot reach the leader: {e}")))?;
        *self.forwarder.leader.lock().expect("forwarder poisoned") = Some((leader, client.clone()));
        Ok(client)
    }

    fn forget_leader_client(&self) {
        *self.forwarder.leader.lock().expect("forwarder poisoned") = None;
    }

    /// One call renewing `ids` on the leader.
    async fn renew_on_leader(self: &Arc<Self>, ids: Vec<i64>) -> Result<Vec<i64>, Status> {
        let mut client = self.leader_client().await?;
        let n = ids.len();
        let batch = LeaseRenewBatch {
            cluster_id: self.cluster_id(),
            from: self.self_id(),
            ids,
        };
        match tokio::time::timeout(CALL_TIMEOUT, client.lease_renew(batch)).await {
            Ok(Ok(resp)) => {
                let ttls = resp.into_inner().ttls;
                if ttls.len() != n {
                    return Err(Status::internal("the leader answered another batch"));
                }
                Ok(ttls)
            }
            Ok(Err(e)) => {
                self.forget_leader_client();
                Err(e)
            }
            Err(_) => Err(errors::timed_out()),
        }
    }
}

/// Sends queued renewals, as many as are queued (up to [`MAX_BATCH`]) per
/// call; while [`CALLS_IN_FLIGHT`] calls are out, renewals queue up.
async fn send_batches(t: Arc<Transport>, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(CALLS_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut count = first.ids.len();
        let mut batch = vec![first];
        while count < MAX_BATCH {
            match queue.try_recv() {
                Ok(p) => {
                    count += p.ids.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let t = t.clone();
        tokio::spawn(async move {
            let ids: Vec<i64> = batch.iter().flat_map(|p| p.ids.iter().copied()).collect();
            let answer = t.renew_on_leader(ids).await;
            drop(slot);
            let mut at = 0;
            for p in batch {
                let n = p.ids.len();
                let mine = match &answer {
                    Ok(ttls) => Ok(ttls[at..at + n].to_vec()),
                    Err(e) => Err(e.clone()),
                };
                at += n;
                let _ = p.reply.send(mine);
            }
        });
    }
}
