//! The Raft node: one thread that runs raft-rs's Ready loop over our WAL and
//! applies committed entries to the state machine.
//!
//! Everything else talks to it through a [`NodeHandle`]: proposals and
//! ReadIndex requests go in over a channel, results come back on oneshots once
//! the entry is durable and applied. The loop batches whatever arrived since its
//! last turn into one Ready, so one fsync covers many proposals (group commit).
//! A single member runs exactly this path; a cluster adds the transport,
//! which carries raft-rs's messages to the peers and brings theirs in here.

mod log_store;
mod ready_loop;
mod recovery;
pub(crate) use recovery::write_bootstrap;

/// The index and term of the bootstrap snapshot of a new cluster (and of a
/// data dir restored from a snapshot file): Raft's log starts after it.
pub const BOOTSTRAP_INDEX: u64 = 1;
pub const BOOTSTRAP_TERM: u64 = 1;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use raft::prelude::Message;
use tokio::sync::oneshot;
use tonic::Status;

use crate::bridge::Bridge;
use crate::errors;
use crate::membership::Change;
use crate::metrics::Metrics;
use crate::pb::internal::internal_request::Request;
use crate::pb::internal::MemberRecord;
use crate::state_machine::{Outcome, StateMachine};
use crate::transport::{NodeLink, Transport};

pub use recovery::RecoveryError;

/// How a fresh data dir is filled (ignored once the member has a WAL).
#[derive(Clone, Debug)]
pub enum Bootstrap {
    /// A new cluster with these initial members (--initial-cluster-state new).
    New(Vec<MemberRecord>),
    /// Joining a running cluster whose members were fetched from a peer
    /// (--initial-cluster-state existing).
    Join(Vec<MemberRecord>),
}

/// How this member's Raft node is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// For a fresh data dir; a WAL's own identity wins on restart.
    pub id: u64,
    pub cluster_id: u64,
    pub name: String,
    pub bootstrap: Bootstrap,
    pub data_dir: PathBuf,
    pub heartbeat: Duration,
    pub election_ticks: usize,
    pub snapshot_count: u64,
    /// --quota-backend-bytes as Python resolved it; 0 means none.
    pub quota_backend_bytes: u64,
    /// Where the loop, its WAL and the servers count for /metrics.
    pub metrics: Arc<Metrics>,
}

/// A proposal's result: the outcome and the position it was applied at.
#[derive(Debug)]
pub struct Applied {
    pub outcome: Outcome,
    pub revision: i64,
    pub term: u64,
}

pub(crate) type ProposalReply = oneshot::Sender<Result<Applied, Status>>;

pub(crate) enum Msg {
    Propose {
        request: Request,
        reply: ProposalReply,
    },
    ReadIndex {
        reply: oneshot::Sender<Result<(), Status>>,
    },
    ConfChange {
        change: Change,
        reply: ProposalReply,
    },
    TransferLeader {
        to: u64,
        reply: oneshot::Sender<Result<(), Status>>,
    },
    /// A message from a peer.
    Raft(Box<Message>),
    /// The transport could not reach this peer.
    Unreachable(u64),
    /// A snapshot sent to a peer arrived, or failed to.
    SnapshotStatus {
        to: u64,
        ok: bool,
    },
    /// A peer refused us: this member was removed from the cluster.
    Removed,
    Stop,
}

/// State the loop publishes for readers on other threads.
pub struct Shared {
    pub sm: RwLock<StateMachine>,
    pub term: AtomicU64,
    pub leader_id: AtomicU64,
    pub commit_index: AtomicU64,
    pub last_index: AtomicU64,
    pub applied_index: AtomicU64,
    pub stopped: AtomicBool,
    /// This member was removed from the cluster: it must stop for good.
    pub removed: AtomicBool,
    /// This member is a learner: it may serve only serializable reads.
    pub learner: AtomicBool,
    pub leader_changes: AtomicU64,
    /// Lets this process's own clients (lock and election services) through
    /// the auth checks; never leaves the member.
    pub internal_token: String,
    /// The --auth-token jwt key, when tokens are JWTs (set before serving).
    pub jwt: std::sync::OnceLock<Arc<crate::auth::jwt::JwtTokens>>,
}

impl Shared {
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }

    pub fn leader(&self) -> u64 {
        self.leader_id.load(Ordering::Acquire)
    }
}

/// A cheap, cloneable way to talk to the Raft loop.
#[derive(Clone)]
pub struct NodeHandle {
    tx: mpsc::Sender<Msg>,
    pub shared: Arc<Shared>,
    pub config: Arc<NodeConfig>,
}

/// The running loop; dropping it does not stop it, [`Node::stop`] does.
pub struct Node {
    handle: NodeHandle,
    thread: Option<JoinHandle<()>>,
}

impl Node {
    /// Recovers from the data dir and starts the loop thread. Without a
    /// transport the member cannot talk to peers (a lone member needs none).
    pub fn start(
        mut config: NodeConfig,
        bridge: Arc<Bridge>,
        transport: Option<Arc<Transport>>,
    ) -> Result<Node, RecoveryError> {
        let mut recovered = recovery::recover(&config)?;
        recovered.wal.time_fsyncs(config.metrics.wal_fsync.clone());
        config.id = recovered.id;
        config.cluster_id = recovered.cluster_id;
        let shared = Arc::new(Shared {
            sm: RwLock::new(recovered.state),
            term: AtomicU64::new(0),
            leader_id: AtomicU64::new(0),
            commit_index: AtomicU64::new(0),
            last_index: AtomicU64::new(0),
            applied_index: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            removed: AtomicBool::new(false),
            learner: AtomicBool::new(false),
            leader_changes: AtomicU64::new(0),
            internal_token: crate::auth::random_token(),
            jwt: std::sync::OnceLock::new(),
        });
        let (tx, rx) = mpsc::channel();
        let config = Arc::new(config);
        let store =
            log_store::LogStore::new(recovered.storage, shared.clone(), config.metrics.clone());
        let node = ready_loop::raw_node(&config, &shared, store)?;
        if let Some(t) = &transport {
            t.attach(
                NodeLink {
                    inbox: tx.clone(),
                    shared: shared.clone(),
                },
                config.id,
                config.cluster_id,
            );
            let members: Vec<MemberRecord> = shared
                .sm
                .read()
                .expect("state poisoned")
                .membership
                .members()
                .cloned()
                .collect();
            t.set_peers(&members);
        }
        let mut lp = ready_loop::ReadyLoop::new(
            config.clone(),
            node,
            recovered.wal,
            recovered.snapshotter,
            shared.clone(),
            bridge,
            transport,
            rx,
        );
        let thread = std::thread::Builder::new()
            .name("etcdcore-raft".into())
            .spawn(move || lp.run())
            .map_err(|e| RecoveryError(format!("cannot start the raft thread: {e}")))?;
        Ok(Node {
            handle: NodeHandle { tx, shared, config },
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Finishes what is in flight, fsyncs and joins the loop thread.
    pub fn stop(&mut self) {
        let _ = self.handle.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl NodeHandle {
    /// Proposes a write and waits until it is durable and applied.
    pub async fn propose(&self, request: Request) -> Result<Applied, Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Propose { request, reply })
            .map_err(|_| errors::stopped())?;
        rx.await.unwrap_or_else(|_| Err(errors::stopped()))
    }

    /// The blocking form, for callers outside the async runtime (Python threads).
    pub fn propose_blocking(&self, request: Request) -> Result<Applied, Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Propose { request, reply })
            .map_err(|_| errors::stopped())?;
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(errors::stopped()))
    }

    /// Proposes a membership change and waits until it is applied.
    pub fn conf_change_blocking(&self, change: Change) -> Result<Applied, Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::ConfChange { change, reply })
            .map_err(|_| errors::stopped())?;
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(errors::stopped()))
    }

    /// Hands leadership to `to` and waits until it leads (MoveLeader).
    pub fn transfer_leader_blocking(&self, to: u64) -> Result<(), Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::TransferLeader { to, reply })
            .map_err(|_| errors::stopped())?;
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(errors::stopped()))
    }

    /// Waits until this member has applied everything committed when the call
    /// was made, with leadership confirmed (Raft ReadIndex): after it returns, a
    /// read of the local store is linearizable.
    pub async fn read_index(&self) -> Result<(), Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::ReadIndex { reply })
            .map_err(|_| errors::stopped())?;
        rx.await.unwrap_or_else(|_| Err(errors::stopped()))
    }
}

#[cfg(test)]
mod tests;
