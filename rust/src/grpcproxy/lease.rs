//! The Lease service through the proxy. Leases are cluster-wide (a
//! namespace only filters and strips the keys LeaseTimeToLive lists).
//!
//! Keep-alives: each client stream gets a stream to the cluster of its own
//! (carrying the client's token), and every request and answer is relayed
//! as it comes, so a client sees the cluster's TTLs at once (etcd's proxy
//! answers from clientv3's lessor, which renews on its own schedule). When
//! the member under a stream goes away, the stream is opened again on
//! another member and the requests still unanswered are sent again: the
//! client sees no error, only answers.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use super::upstream::{classify, copy_metadata, Failure, Retry};
use super::Shared;
use crate::pb::etcdserverpb::lease_client::LeaseClient;
use crate::pb::etcdserverpb::lease_server::Lease;
use crate::pb::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};

/// How long a keep-alive stream keeps trying members before it gives up.
const REOPEN_FOR: Duration = Duration::from_secs(10);

pub struct LeaseProxy {
    shared: Arc<Shared>,
}

impl LeaseProxy {
    pub fn new(shared: Arc<Shared>) -> LeaseProxy {
        LeaseProxy { shared }
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseProxy {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        self.shared
            .unary(req, Retry::Unsafe, |ch, r| async move {
                LeaseClient::new(ch).lease_grant(r).await
            })
            .await
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        self.shared
            .unary(req, Retry::Unsafe, |ch, r| async move {
                LeaseClient::new(ch).lease_revoke(r).await
            })
            .await
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let (md, _, incoming) = req.into_parts();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(relay_keep_alives(self.shared.clone(), md, incoming, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let mut resp = self
            .shared
            .unary(req, Retry::Safe, |ch, r| async move {
                LeaseClient::new(ch).lease_time_to_live(r).await
            })
            .await?;
        self.shared.namespace.lease_keys(&mut resp.get_mut().keys);
        Ok(resp)
    }

    async fn lease_leases(
        &self,
        req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.shared
            .unary(req, Retry::Safe, |ch, r| async move {
                LeaseClient::new(ch).lease_leases(r).await
            })
            .await
    }
}

type Answer = Result<LeaseKeepAliveResponse, Status>;

/// One upstream keep-alive stream: where to send requests and where the
/// answers come from.
struct Upstream {
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
    answers: Streaming<LeaseKeepAliveResponse>,
}

async fn open(shared: &Shared, md: &MetadataMap) -> Result<Upstream, Status> {
    let deadline = tokio::time::Instant::now() + REOPEN_FOR;
    loop {
        let conn = shared.upstream.pick();
        let (tx, rx) = mpsc::channel(64);
        let mut req = Request::new(ReceiverStream::new(rx));
        copy_metadata(md, req.metadata_mut());
        match LeaseClient::new(conn.channel.clone())
            .lease_keep_alive(req)
            .await
        {
            Ok(resp) => {
                shared.upstream.mark_up(&conn);
                return Ok(Upstream {
                    tx,
                    answers: resp.into_inner(),
                });
            }
            Err(s) if classify(&s) == Failure::Answered => return Err(s),
            Err(s) => {
                shared.upstream.mark_down(&conn);
                if tokio::time::Instant::now() >= deadline {
                    return Err(super::upstream::unavailable(&s));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Relays one client's keep-alive stream until either side ends it.
async fn relay_keep_alives(
    shared: Arc<Shared>,
    md: MetadataMap,
    mut incoming: Streaming<LeaseKeepAliveRequest>,
    out: mpsc::Sender<Answer>,
) {
    let mut up = match open(&shared, &md).await {
        Ok(u) => u,
        Err(s) => {
            let _ = out.send(Err(s)).await;
            return;
        }
    };
    // Requests sent and not yet answered, re-sent on a new stream.
    let mut pending: VecDeque<i64> = VecDeque::new();
    let mut client_done = false;
    loop {
        tokio::select! {
            msg = incoming.next(), if !client_done => match msg {
                Some(Ok(r)) => {
                    pending.push_back(r.id);
                    let _ = up.tx.send(r).await;
                }
                // The client closed its side (or broke): its stream ends,
                // as a server ends it.
                _ => client_done = true,
            },
            ans = up.answers.next() => match ans {
                Some(Ok(resp)) => {
                    if let Some(pos) = pending.iter().position(|&id| id == resp.id) {
                        pending.remove(pos);
                    }
                    if out.send(Ok(resp)).await.is_err() {
                        return;
                    }
                }
                Some(Err(s)) if classify(&s) == Failure::Answered => {
                    let _ = out.send(Err(s)).await;
                    return;
                }
                _ => {
                    // The member went away: carry on on another.
                    up = match open(&shared, &md).await {
                        Ok(u) => u,
                        Err(s) => {
                            let _ = out.send(Err(s)).await;
                            return;
                        }
                    };
                    for id in &pending {
                        let _ = up.tx.send(LeaseKeepAliveRequest { id: *id }).await;
                    }
                }
            },
            _ = out.closed() => return,
        }
        if client_done && pending.is_empty() {
            return;
        }
    }
}
