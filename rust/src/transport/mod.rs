//! The peer transport: Raft messages between members, over tonic gRPC.
//!
//! Each peer gets one sender task that keeps a client-streaming `Peer.Raft`
//! call open and writes the raft loop's messages to it in batches. Snapshots go
//! on their own `Peer.Snapshot` call: the backend streamed in chunks from a
//! read transaction on the leader, loaded into a new backend file on the
//! follower, so a large state never holds up heartbeats and neither side
//! holds more than a few chunks in memory. Sending never blocks the raft loop: a full queue or a broken
//! connection drops messages (Raft resends) and reports the peer unreachable.
//! Raft messages never cross into Python.

mod lease;
mod sender;
mod server;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use raft::prelude::{Message, MessageType};
use tokio::runtime::Handle;
use tokio::sync::mpsc as tmpsc;
use tokio_rustls::rustls::ClientConfig;

use crate::metrics::{Metrics, PeerCounters};
use crate::pb::internal::MemberRecord;
use crate::raft_node::{Msg, NodeHandle, Shared};

pub use server::{fetch_cluster, serve};

/// Messages waiting for one peer before new ones are dropped.
const PEER_QUEUE: usize = 4096;

/// What the transport hands the raft loop and reads from it.
pub(crate) struct NodeLink {
    pub inbox: mpsc::Sender<Msg>,
    pub shared: Arc<Shared>,
    /// For what the leader does for its followers (lease renewals).
    pub node: NodeHandle,
    /// Where a leader's backend is received (`member/snap`).
    pub snap_dir: std::path::PathBuf,
}

struct Peer {
    urls: Vec<String>,
    queue: tmpsc::Sender<Message>,
    task: tokio::task::JoinHandle<()>,
    counters: Arc<PeerCounters>,
}

pub struct Transport {
    self_id: AtomicU64,
    cluster_id: AtomicU64,
    /// Outgoing connections start from this address (the peer listener's IP),
    /// so a peer, or a test's proxy, can tell members apart by source address.
    local_ip: Option<IpAddr>,
    /// TLS for https peer URLs (--peer-cert-file / --peer-auto-tls).
    tls: Option<Arc<ClientConfig>>,
    runtime: Handle,
    peers: Mutex<HashMap<u64, Peer>>,
    link: OnceLock<NodeLink>,
    /// Bytes and failures per peer (etcd's etcd_network_peer_* counters).
    metrics: Arc<Metrics>,
    /// Lease keep-alives and TimeToLive on their way to the leader.
    forwarder: lease::Forwarder,
}

impl Transport {
    pub fn new(
        local_ip: Option<IpAddr>,
        tls: Option<Arc<ClientConfig>>,
        runtime: Handle,
        metrics: Arc<Metrics>,
    ) -> Self {
        Transport {
            metrics,
            self_id: AtomicU64::new(0),
            cluster_id: AtomicU64::new(0),
            local_ip,
            tls,
            runtime,
            peers: Mutex::new(HashMap::new()),
            link: OnceLock::new(),
            forwarder: lease::Forwarder::default(),
        }
    }

    /// Connects the transport to the raft loop once it runs, with the
    /// identity recovery settled on.
    pub(crate) fn attach(&self, link: NodeLink, self_id: u64, cluster_id: u64) {
        self.self_id.store(self_id, Ordering::Release);
        self.cluster_id.store(cluster_id, Ordering::Release);
        let _ = self.link.set(link);
    }

    pub fn self_id(&self) -> u64 {
        self.self_id.load(Ordering::Acquire)
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id.load(Ordering::Acquire)
    }

    pub(crate) fn link(&self) -> Option<&NodeLink> {
        self.link.get()
    }

    /// Hands a message to the raft loop (dropped before it runs).
    pub(crate) fn deliver(&self, msg: Msg) {
        if let Some(l) = self.link.get() {
            let _ = l.inbox.send(msg);
        }
    }

    /// Makes the peer set match the membership: starts senders for new members,
    /// restarts those whose URLs changed, stops those removed.
    pub fn set_peers(self: &Arc<Self>, members: &[MemberRecord]) {
        let mut peers = self.peers.lock().expect("peers poisoned");
        peers.retain(|id, p| {
            let keep = members.iter().any(|m| m.id == *id && m.peer_urls == p.urls);
            if !keep {
                p.task.abort();
            }
            keep
        });
        for m in members {
            if m.id == self.self_id() || peers.contains_key(&m.id) || m.peer_urls.is_empty() {
                continue;
            }
            let (queue, rx) = tmpsc::channel(PEER_QUEUE);
            let counters = self.metrics.peers.peer(m.id);
            let task = self.runtime.spawn(sender::run(
                self.clone(),
                m.id,
                m.peer_urls.clone(),
                rx,
                counters.clone(),
            ));
            peers.insert(
                m.id,
                Peer {
                    urls: m.peer_urls.clone(),
                    queue,
                    task,
                    counters,
                },
            );
        }
    }

    /// Sends the raft loop's outgoing messages; never blocks.
    pub fn send(self: &Arc<Self>, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        let peers = self.peers.lock().expect("peers poisoned");
        for m in msgs {
            let to = m.to;
            let Some(peer) = peers.get(&to) else {
                continue;
            };
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.runtime.spawn(sender::send_snapshot(
                    self.clone(),
                    to,
                    peer.urls.clone(),
                    m,
                    peer.counters.clone(),
                ));
                continue;
            }
            if peer.queue.try_send(m).is_err() {
                peer.counters.sent_failures.fetch_add(1, Ordering::Relaxed);
                self.deliver(Msg::Unreachable(to));
            }
        }
    }

    /// Stops every sender.
    pub fn stop(&self) {
        for (_, p) in self.peers.lock().expect("peers poisoned").drain() {
            p.task.abort();
        }
    }
}
