//! The receiving side: the `Peer` gRPC service on --listen-peer-urls.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use protobuf::Message as _;
use raft::prelude::Message;
use tokio::sync::watch;
use tokio_rustls::rustls::{ClientConfig, ServerConfig};
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};

use super::sender::{connect, MAX_PEER_MESSAGE_BYTES};
use super::Transport;
use crate::backend::dump;
use crate::lessor::leader;
use crate::pb::etcdserverpb::{LeaseTimeToLiveRequest, LeaseTimeToLiveResponse};
use crate::pb::internal::MemberRecord;
use crate::pb::peer::peer_server::{Peer, PeerServer};
use crate::pb::peer::{
    ClusterRequest, ClusterResponse, LeaseRenewBatch, LeaseRenewReplies, PeerAck, RaftBatch,
    SnapshotChunk,
};
use crate::raft_node::Msg;

const CLUSTER_ID_MISMATCH: &str = "etcdserver: cluster ID mismatch";
/// What a removed member hears from the others (etcd answers it 410 Gone).
pub(super) const MEMBER_REMOVED: &str = "the member has been permanently removed from the cluster";

struct PeerService {
    t: Arc<Transport>,
}

impl PeerService {
    fn check_cluster(&self, cluster_id: u64, from: u64) -> Result<(), Status> {
        if cluster_id != self.t.cluster_id() {
            log::warn!(
                "refused a peer connection from {from:x}: cluster {cluster_id:x} is not {:x}",
                self.t.cluster_id()
            );
            return Err(Status::failed_precondition(CLUSTER_ID_MISMATCH));
        }
        // The leader stops talking to a member once its removal is applied, so
        // the removed member may never learn the removal committed: tell it.
        if let Some(link) = self.t.link() {
            let sm = link.shared.sm.read().expect("state poisoned");
            if sm.membership.is_removed(from) {
                return Err(Status::permission_denied(MEMBER_REMOVED));
            }
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(
        &self,
        request: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<PeerAck>, Status> {
        let mut stream = request.into_inner();
        // One stream carries one peer's messages: find its counters once.
        let mut counters = None;
        while let Some(batch) = stream.message().await? {
            self.check_cluster(batch.cluster_id, batch.from)?;
            let bytes: usize = batch.messages.iter().map(Vec::len).sum();
            counters
                .get_or_insert_with(|| self.t.metrics.peers.peer(batch.from))
                .received_bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
            for bytes in &batch.messages {
                match Message::parse_from_bytes(bytes) {
                    Ok(m) => self.t.deliver(Msg::Raft(Box::new(m))),
                    Err(e) => return Err(Status::invalid_argument(format!("bad message: {e}"))),
                }
            }
        }
        Ok(Response::new(PeerAck {}))
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<PeerAck>, Status> {
        let link = self.t.link().ok_or_else(crate::errors::stopped)?;
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        self.check_cluster(first.cluster_id, first.from)?;
        let m = Message::parse_from_bytes(&first.message)
            .map_err(|e| Status::invalid_argument(format!("bad snapshot message: {e}")))?;
        let index = m.get_snapshot().get_metadata().index;
        let path = link.snap_dir.join(format!("{index:016x}.snap.db"));
        // A transfer of the same snapshot that was cut off, or delivered but
        // not installed, is replaced.
        let _ = std::fs::remove_file(&path);
        let counters = self.t.metrics.peers.peer(first.from);
        let (chunks, mut chunk_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let loader = tokio::task::spawn_blocking(move || {
            let mut loader = dump::Loader::create(&path)?;
            while let Some(chunk) = chunk_rx.blocking_recv() {
                loader.feed(&chunk)?;
            }
            loader.finish()
        });
        let mut received = (first.message.len() + first.data.len()) as u64;
        let mut next = Some(first.data);
        loop {
            if let Some(data) = next.take().filter(|d| !d.is_empty()) {
                if chunks.send(data).await.is_err() {
                    break; // the loader stopped: its error is below
                }
            }
            match stream.message().await? {
                Some(chunk) => {
                    self.check_cluster(chunk.cluster_id, chunk.from)?;
                    received += (chunk.message.len() + chunk.data.len()) as u64;
                    next = Some(chunk.data);
                }
                None => break,
            }
        }
        drop(chunks);
        counters
            .received_bytes
            .fetch_add(received, Ordering::Relaxed);
        match loader.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Status::internal(format!("receiving snapshot: {e}"))),
            Err(e) => return Err(Status::internal(format!("receiving snapshot: {e}"))),
        }
        log::info!(
            "received snapshot ({received} bytes) at index {index} from {:x}",
            m.from
        );
        self.t.deliver(Msg::Raft(Box::new(m)));
        Ok(Response::new(PeerAck {}))
    }

    async fn cluster(
        &self,
        _request: Request<ClusterRequest>,
    ) -> Result<Response<ClusterResponse>, Status> {
        let link = self.t.link().ok_or_else(crate::errors::stopped)?;
        let sm = link.shared.sm.read().expect("state poisoned");
        Ok(Response::new(ClusterResponse {
            cluster_id: sm.membership.cluster_id,
            members: sm.membership.members().cloned().collect(),
        }))
    }

    async fn lease_renew(
        &self,
        request: Request<LeaseRenewBatch>,
    ) -> Result<Response<LeaseRenewReplies>, Status> {
        let link = self.t.link().ok_or_else(crate::errors::stopped)?;
        let batch = request.into_inner();
        self.check_cluster(batch.cluster_id, batch.from)?;
        let deadline = std::time::Instant::now() + link.node.config.request_timeout();
        // A lease that expired and waits to be revoked is answered "ask
        // again" at once (the follower asks every 50 ms until it is
        // revoked), so that it never holds up the batch's other leases.
        let ttls = leader::renew(&link.node, &batch.ids, deadline, false)
            .await
            .into_iter()
            .map(|ttl| ttl.unwrap_or(-1))
            .collect();
        Ok(Response::new(LeaseRenewReplies { ttls }))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let link = self.t.link().ok_or_else(crate::errors::stopped)?;
        if link.shared.leader() != link.node.config.id {
            return Err(crate::errors::not_leader());
        }
        let r = request.into_inner();
        leader::caught_up(&link.node).await;
        leader::time_to_live(&link.node, r.id, r.keys)
            .map(Response::new)
            .ok_or_else(crate::errors::lease_not_found)
    }
}

/// Binds every peer address now (so start-up fails loudly on a taken port) and
/// serves the peer service until `shutdown` flips to true.
pub async fn serve(
    addrs: Vec<SocketAddr>,
    t: Arc<Transport>,
    tls: Option<Arc<ServerConfig>>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for addr in addrs {
        let l = crate::server::bind(addr).await?;
        let svc = PeerServer::new(PeerService { t: t.clone() })
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
        let router = Server::builder()
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(1)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(3)))
            .add_service(svc);
        tasks.push(crate::server::spawn_router(
            router,
            l,
            tls.clone(),
            shutdown.clone(),
            "peer",
        )?);
    }
    Ok(tasks)
}

/// Asks the given peers for the cluster (id and members): how a member started
/// with --initial-cluster-state existing finds out what it is joining.
pub async fn fetch_cluster(
    peer_urls: &[String],
    tls: Option<Arc<ClientConfig>>,
) -> Result<(u64, Vec<MemberRecord>), String> {
    let mut last = String::from("no peers to ask");
    for url in peer_urls {
        match connect(std::slice::from_ref(url), None, tls.clone()).await {
            Ok(mut c) => match c.cluster(ClusterRequest {}).await {
                Ok(r) => {
                    let r = r.into_inner();
                    return Ok((r.cluster_id, r.members));
                }
                Err(e) => last = format!("{url}: {}", e.message()),
            },
            Err(e) => last = e,
        }
    }
    Err(last)
}
