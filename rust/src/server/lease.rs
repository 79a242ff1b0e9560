//! The Lease service, served in Rust: grants and revocations through Raft,
//! keep-alives and TimeToLive on the leader's lessor (a follower forwards
//! them, see `transport::lease`), LeaseLeases from this member's lessor.
//!
//! etcd's answers, kept as etcd 3.5 gives them:
//! - LeaseGrant: ID 0 picks a fresh positive id; negative ids are taken as
//!   given; a TTL over 9,000,000,000 is OUT_OF_RANGE "etcdserver: too large
//!   lease TTL"; a TTL under the minimum (1.5 election timeouts, 2 s by
//!   default; also 0 and negative TTLs) is raised to it; an existing id is
//!   FAILED_PRECONDITION "etcdserver: lease already exists".
//! - LeaseRevoke of an unknown id: NOT_FOUND "etcdserver: requested lease
//!   not found".
//! - LeaseKeepAlive: each answer's header is taken before renewing (a
//!   keep-alive never claims a revision after the one that revoked its
//!   lease); an unknown lease is answered TTL 0 and the stream goes on; an
//!   expired lease is answered TTL 0 once its revocation is applied. The
//!   requests a client has sent are renewed together and answered in order.
//! - LeaseTimeToLive: remaining seconds truncated toward zero; an unknown
//!   lease is answered ID, TTL -1 and a header, not an error.
//! - LeaseLeases: every lease, soonest expiry first.
//! - A learner answers none of them ("etcdserver: rpc not supported for
//!   learner").

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{policy, Caller};
use crate::errors;
use crate::lessor::{leader, MAX_LEASE_TTL};
use crate::pb::etcdserverpb::lease_server::Lease;
use crate::pb::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, ResponseHeader,
};
use crate::pb::internal::internal_request::Request as Internal;
use crate::raft_node::NodeHandle;
use crate::state_machine::Outcome;
use crate::transport::Transport;

/// Keep-alives of one stream renewed together, at most.
const KEEPALIVE_BATCH: usize = 1000;
/// Answers of one keep-alive stream waiting for the client to read them.
const KEEPALIVE_ANSWERS: usize = 1024;
/// How long to wait before asking the leader again (etcd's throttle).
const RETRY_PAUSE: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct LeaseService {
    node: NodeHandle,
    /// Reaches the leader from a follower (none for a member without peers).
    transport: Option<Arc<Transport>>,
}

impl LeaseService {
    pub fn new(node: NodeHandle, transport: Option<Arc<Transport>>) -> LeaseService {
        LeaseService { node, transport }
    }

    fn header(&self, revision: i64, raft_term: u64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.node.config.cluster_id,
            member_id: self.node.config.id,
            revision,
            raft_term,
        })
    }

    /// A header with the revision of the last applied batch.
    fn current_header(&self) -> Option<ResponseHeader> {
        self.header(self.node.shared.revision(), self.node.shared.term())
    }

    /// The caller of a request (its token checked); a learner refuses
    /// every Lease call.
    fn admit<R>(&self, req: &Request<R>) -> Result<Caller, Status> {
        let caller = policy::caller(&self.node.shared, req)?;
        if self.node.shared.learner.load(Ordering::Acquire) {
            return Err(errors::not_for_learner());
        }
        self.node.shared.check_running()?;
        Ok(caller)
    }

    /// Renews `ids` where the deadlines are: here when this member's lessor
    /// is primary, else on the leader; a member that leads but has not yet
    /// taken over the deadlines, or that knows no leader, waits for one.
    /// Per id, the TTL (0: no such lease), or why it could not be renewed
    /// within etcd's request timeout.
    async fn renew(&self, ids: &[i64]) -> Vec<Result<i64, Status>> {
        let shared = &self.node.shared;
        let deadline = Instant::now() + self.node.config.request_timeout();
        let mut out: Vec<Option<i64>> = vec![None; ids.len()];
        loop {
            let pending: Vec<usize> = (0..ids.len()).filter(|&i| out[i].is_none()).collect();
            if pending.is_empty() {
                break;
            }
            let pending_ids: Vec<i64> = pending.iter().map(|&i| ids[i]).collect();
            let leader = shared.leader();
            let got: Vec<Option<i64>> =
                if shared.lessor.is_primary() || leader == self.node.config.id {
                    leader::renew(&self.node, &pending_ids, deadline, true).await
                } else if let (true, Some(t)) = (leader != 0, &self.transport) {
                    match tokio::time::timeout_at(deadline.into(), t.forward_renewals(pending_ids))
                        .await
                    {
                        Ok(Ok(ttls)) => ttls.into_iter().map(|t| (t >= 0).then_some(t)).collect(),
                        _ => vec![None; pending.len()],
                    }
                } else {
                    vec![None; pending.len()]
                };
            for (k, i) in pending.into_iter().enumerate() {
                out[i] = got[k];
            }
            let now = Instant::now();
            if out.iter().all(Option::is_some) || now >= deadline {
                break;
            }
            tokio::time::sleep(RETRY_PAUSE.min(deadline - now)).await;
        }
        out.into_iter()
            .map(|ttl| ttl.ok_or_else(|| self.no_answer()))
            .collect()
    }

    /// Why a lease call got no answer in time: no leader to ask, or one that
    /// did not answer.
    fn no_answer(&self) -> Status {
        if self.node.shared.stopped() {
            errors::stopped()
        } else if self.node.shared.leader() == 0 {
            errors::no_leader()
        } else {
            errors::timed_out()
        }
    }

    /// TimeToLive from whoever keeps the deadlines: None when there is no
    /// such lease.
    async fn time_to_live(
        &self,
        r: &LeaseTimeToLiveRequest,
    ) -> Result<Option<LeaseTimeToLiveResponse>, Status> {
        let deadline = Instant::now() + self.node.config.request_timeout();
        loop {
            let leader = self.node.shared.leader();
            if leader == self.node.config.id {
                return Ok(leader::time_to_live(&self.node, r.id, r.keys));
            }
            if let (true, Some(t)) = (leader != 0, &self.transport) {
                let asked = t.forward_time_to_live(*r);
                if let Ok(Ok(answer)) = tokio::time::timeout_at(deadline.into(), asked).await {
                    return Ok(answer);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.no_answer());
            }
            tokio::time::sleep(RETRY_PAUSE.min(deadline - now)).await;
        }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        self.admit(&req)?;
        let mut r = req.into_inner();
        if r.ttl > MAX_LEASE_TTL {
            return Err(errors::lease_ttl_too_large());
        }
        let lessor = &self.node.shared.lessor;
        r.ttl = r.ttl.max(lessor.config().min_ttl);
        if r.id == 0 {
            // etcd takes the next request id.
            r.id = self.node.shared.ids.next_lease_id(|id| lessor.contains(id));
        }
        let a = self.node.propose(Internal::LeaseGrant(r)).await?;
        match a.outcome {
            Outcome::LeaseGrant(mut g) => {
                g.header = self.header(a.revision, a.term);
                Ok(Response::new(g))
            }
            o => Err(Status::internal(format!("unexpected apply outcome {o:?}"))),
        }
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let caller = self.admit(&req)?;
        let r = req.into_inner();
        if caller != Caller::Anyone {
            let sm = self.node.shared.sm.read().expect("state poisoned");
            policy::check_lease_revoke(&sm.auth, &caller, &sm.store.keys_with_lease(r.id))?;
        }
        let a = self.node.propose(Internal::LeaseRevoke(r)).await?;
        match a.outcome {
            Outcome::LeaseRevoke(mut resp) => {
                resp.header = self.header(a.revision, a.term);
                Ok(Response::new(resp))
            }
            o => Err(Status::internal(format!("unexpected apply outcome {o:?}"))),
        }
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        self.admit(&req)?;
        let mut inbound = req.into_inner();
        let (answers, rx) = mpsc::channel(KEEPALIVE_ANSWERS);
        let svc = self.clone();
        tokio::spawn(async move {
            loop {
                // Wait for one keep-alive, then take whatever else the
                // client has sent already.
                let mut ids = match inbound.message().await {
                    Ok(Some(r)) => vec![r.id],
                    Ok(None) => return,
                    Err(e) => {
                        let _ = answers.send(Err(stream_decode_error(e))).await;
                        return;
                    }
                };
                let mut failure = None;
                while ids.len() < KEEPALIVE_BATCH {
                    match ready_message(&mut inbound).await {
                        Some(Ok(Some(r))) => ids.push(r.id),
                        Some(Ok(None)) | None => break,
                        Some(Err(e)) => {
                            failure = Some(stream_decode_error(e));
                            break;
                        }
                    }
                }
                let header = svc.current_header();
                for (id, ttl) in ids.iter().zip(svc.renew(&ids).await) {
                    let answer = ttl.map(|ttl| LeaseKeepAliveResponse {
                        header,
                        id: *id,
                        ttl,
                    });
                    let end = answer.is_err();
                    if answers.send(answer).await.is_err() || end {
                        return;
                    }
                }
                if let Some(e) = failure {
                    let _ = answers.send(Err(e)).await;
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        self.admit(&req)?;
        let r = req.into_inner();
        let mut resp = self
            .time_to_live(&r)
            .await?
            .unwrap_or(LeaseTimeToLiveResponse {
                id: r.id,
                ttl: -1,
                ..Default::default()
            });
        // etcd fills the header here, also for the leader's answer.
        resp.header = self.current_header();
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.admit(&req)?;
        let header = self.current_header();
        let leases = self
            .node
            .shared
            .lessor
            .leases()
            .into_iter()
            .map(|id| LeaseStatus { id })
            .collect();
        Ok(Response::new(LeaseLeasesResponse { header, leases }))
    }
}

/// The next message if the client has sent it already (None: not yet).
async fn ready_message(
    inbound: &mut Streaming<LeaseKeepAliveRequest>,
) -> Option<Result<Option<LeaseKeepAliveRequest>, Status>> {
    std::future::poll_fn(|cx| match Pin::new(&mut *inbound).poll_next(cx) {
        Poll::Ready(Some(r)) => Poll::Ready(Some(r.map(Some))),
        Poll::Ready(None) => Poll::Ready(Some(Ok(None))),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// grpc-go words a stream's undecodable message differently from a unary
/// call's request.
fn stream_decode_error(e: Status) -> Status {
    const UNARY: &str = "grpc: error unmarshalling request: ";
    match e.message().strip_prefix(UNARY) {
        Some(detail) => Status::new(
            e.code(),
            format!("grpc: failed to unmarshal the received message {detail}"),
        ),
        None => e,
    }
}
