//! The Raft node, on two threads as etcd splits the work: the Raft loop
//! drives raft-rs (ticks, WAL append and fsync, sending, receiving) and never
//! waits on the state; the applier applies committed entries to the state
//! machine and its backend, answers the proposers, and publishes events.
//!
//! Everything else talks to it through a [`NodeHandle`]: proposals and
//! ReadIndex requests go in over a channel, results come back on oneshots once
//! the entry is durable and applied. The loop batches whatever arrived since its
//! last turn into one Ready, so one fsync covers many proposals (group commit).
//! A single member runs exactly this path; a cluster adds the transport,
//! which carries raft-rs's messages to the peers and brings theirs in here.

mod applier;
mod log_store;
mod ready_loop;
mod recovery;
pub use recovery::backend_path;
pub(crate) use recovery::write_bootstrap;

/// The index and term of the bootstrap snapshot of a new cluster (and of a
/// data dir restored from a snapshot file): Raft's log starts after it.
pub const BOOTSTRAP_INDEX: u64 = 1;
pub const BOOTSTRAP_TERM: u64 = 1;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use raft::prelude::Message;
use tokio::sync::{oneshot, watch};
use tonic::Status;

use crate::backend::ReadTx;
use crate::bridge::Bridge;
use crate::errors;
use crate::idutil::IdGenerator;
use crate::lessor::{Lessor, LessorConfig};
use crate::membership::Change;
use crate::metrics::Metrics;
use crate::pb::internal::internal_request::Request;
use crate::pb::internal::MemberRecord;
use crate::state_machine::{Outcome, StateMachine};
use crate::transport::{NodeLink, Transport};
use crate::watch::history::StoreHistory;
use crate::watch::{WatchHub, WatchSettings};

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
    /// --backend-batch-interval: the longest a backend commit stays without
    /// an fsync.
    pub backend_batch_interval: Duration,
    /// --backend-batch-limit: the most applied entries between two durable
    /// backend commits.
    pub backend_batch_limit: u64,
    /// Where the loop, its WAL and the servers count for /metrics.
    pub metrics: Arc<Metrics>,
    /// How often the leader checkpoints remaining lease TTLs; None without
    /// --experimental-enable-lease-checkpoint.
    pub lease_checkpoint_interval: Option<Duration>,
    /// How the watch hub is sized and paced.
    pub watch: WatchSettings,
}

impl NodeConfig {
    /// The election timeout (what a new leader extends leases by).
    pub fn election_timeout(&self) -> Duration {
        self.heartbeat * self.election_ticks as u32
    }

    /// etcd's ReqTimeout: how long a request may wait for a leader.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + 2 * self.election_timeout()
    }

    fn lessor_config(&self) -> LessorConfig {
        LessorConfig {
            min_ttl: LessorConfig::min_ttl_for(self.election_ticks, self.heartbeat),
            checkpoint_interval: self.lease_checkpoint_interval,
        }
    }
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
        reply: oneshot::Sender<Result<u64, Status>>,
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
    /// Writes the applier found over the quota: raise this member's NOSPACE
    /// alarm and answer them once it is applied.
    NoSpace(Vec<ProposalReply>),
    /// A change to the backend's durability or the applier's progress: time
    /// to look at snapshots and WAL release again.
    Applied,
    Stop,
}

/// State the threads share: the state machine behind its lock, and what the
/// Raft loop and the applier publish for readers on other threads.
pub struct Shared {
    /// Readers take it shared for as long as it takes to plan a read on the
    /// index and open a backend read transaction; the applier takes it
    /// exclusively for one batch of entries, up to the backend commit.
    pub sm: RwLock<StateMachine>,
    pub term: AtomicU64,
    pub leader_id: AtomicU64,
    pub commit_index: AtomicU64,
    pub last_index: AtomicU64,
    pub applied_index: AtomicU64,
    /// The applied index, for readers waiting for it to reach a read index.
    applied: watch::Sender<u64>,
    /// The backend file's size, for the quota check before proposing.
    pub db_size: AtomicU64,
    /// The newest (index, term) the backend holds durably: the WAL before it
    /// may be released.
    durable: Mutex<(u64, u64)>,
    /// Proposals handed to Raft, by id, waiting to be applied.
    pub(crate) proposals: Mutex<HashMap<u64, ProposalReply>>,
    /// Read transactions held for snapshots on their way to a peer, by peer
    /// id: (snapshot index, the state it stands for).
    pub(crate) outgoing_snapshots: Mutex<HashMap<u64, (u64, ReadTx)>>,
    /// The Raft loop or the applier stopped: on a disk error, with the
    /// reason in `failure`. The member answers nothing any more.
    pub stopped: AtomicBool,
    pub failure: OnceLock<String>,
    /// This member was removed from the cluster: it must stop for good.
    pub removed: AtomicBool,
    /// This member is a learner: it may serve only serializable reads.
    pub learner: AtomicBool,
    pub leader_changes: AtomicU64,
    /// Lets this process's own clients (lock and election services) through
    /// the auth checks; never leaves the member.
    pub internal_token: String,
    /// The --auth-token jwt key, when tokens are JWTs (set before serving).
    pub jwt: OnceLock<Arc<crate::auth::jwt::JwtTokens>>,
    /// When leases expire: the deadlines, kept while this member leads.
    pub lessor: Lessor,
    /// Raft request ids and the ids of leases granted without one.
    pub ids: IdGenerator,
    /// The store's revision after the last applied batch, for the headers of
    /// answers that need no state lock (keep-alives). It moves only after the
    /// lessor took in the batch, so a keep-alive whose header shows a
    /// revoke's revision never renews the revoked lease.
    pub revision: AtomicI64,
}

impl Shared {
    fn new(sm: StateMachine, config: &NodeConfig) -> Shared {
        let applied = sm.applied_index;
        let db_size = sm.db_size();
        let lessor = Lessor::new(config.lessor_config(), sm.leases.iter_full());
        let revision = AtomicI64::new(sm.store.current_revision());
        Shared {
            lessor,
            ids: IdGenerator::starting_now(config.id),
            revision,
            term: AtomicU64::new(0),
            leader_id: AtomicU64::new(0),
            commit_index: AtomicU64::new(0),
            last_index: AtomicU64::new(0),
            applied_index: AtomicU64::new(applied),
            applied: watch::Sender::new(applied),
            db_size: AtomicU64::new(db_size),
            sm: RwLock::new(sm),
            durable: Mutex::new((applied, 0)),
            proposals: Mutex::new(HashMap::new()),
            outgoing_snapshots: Mutex::new(HashMap::new()),
            stopped: AtomicBool::new(false),
            failure: OnceLock::new(),
            removed: AtomicBool::new(false),
            learner: AtomicBool::new(false),
            leader_changes: AtomicU64::new(0),
            internal_token: crate::auth::random_token(),
            jwt: OnceLock::new(),
        }
    }

    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }

    pub fn leader(&self) -> u64 {
        self.leader_id.load(Ordering::Acquire)
    }

    /// The store's revision as of the last applied batch.
    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Whether the member stopped serving (its Raft loop or applier ended).
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Fails with "server stopped" once the member stopped: a member whose
    /// Raft loop died must not go on answering from a state nobody updates.
    pub fn check_running(&self) -> Result<(), Status> {
        if self.stopped() {
            return Err(errors::stopped());
        }
        Ok(())
    }

    /// Stops the member for good after a failure it cannot recover from (a
    /// WAL or backend write that failed): etcd's fail-stop.
    pub(crate) fn fail(&self, reason: String) {
        if self.failure.set(reason.clone()).is_ok() {
            log::error!("{reason}");
        }
        self.stopped.store(true, Ordering::Release);
    }

    pub(crate) fn set_applied(&self, index: u64) {
        self.applied_index.store(index, Ordering::Release);
        self.applied.send_replace(index);
    }

    pub(crate) fn set_durable(&self, index: u64, term: u64) {
        *self.durable.lock().expect("durable poisoned") = (index, term);
    }

    pub(crate) fn durable(&self) -> (u64, u64) {
        *self.durable.lock().expect("durable poisoned")
    }

    /// Waits until the applier has applied `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<(), Status> {
        let mut rx = self.applied.subscribe();
        let reached = rx
            .wait_for(|applied| *applied >= index || self.stopped())
            .await
            .is_ok();
        if !reached {
            return Err(errors::stopped());
        }
        self.check_running()
    }
}

/// A cheap, cloneable way to talk to the Raft loop.
#[derive(Clone)]
pub struct NodeHandle {
    tx: mpsc::Sender<Msg>,
    jobs: mpsc::Sender<applier::Job>,
    pub shared: Arc<Shared>,
    pub config: Arc<NodeConfig>,
    /// The watchers, fed by the applier.
    pub watch: Arc<WatchHub>,
}

/// The running threads; dropping them does not stop them, [`Node::stop`] does.
pub struct Node {
    handle: NodeHandle,
    raft: Option<JoinHandle<()>>,
    applier: Option<JoinHandle<()>>,
    /// The watch hub's catch-up worker.
    watch_sync: Option<JoinHandle<()>>,
}

impl Node {
    /// Recovers from the data dir and starts the Raft loop and the applier.
    /// Without a transport the member cannot talk to peers (a lone member
    /// needs none).
    pub fn start(
        mut config: NodeConfig,
        bridge: Arc<Bridge>,
        transport: Option<Arc<Transport>>,
    ) -> Result<Node, RecoveryError> {
        let mut recovered = recovery::recover(&config)?;
        recovered.wal.time_fsyncs(config.metrics.wal_fsync.clone());
        config.id = recovered.id;
        config.cluster_id = recovered.cluster_id;
        let shared = Arc::new(Shared::new(recovered.state, &config));
        let (tx, rx) = mpsc::channel();
        let (jobs, job_rx) = mpsc::channel();
        let jobs_for_handle = jobs.clone();
        let config = Arc::new(config);
        let store = log_store::LogStore::new(recovered.storage, shared.clone());
        let node = ready_loop::raw_node(&config, &shared, store)?;
        let replayed_until = node.raft.raft_log.committed;
        let members: Vec<MemberRecord> = {
            let sm = shared.sm.read().expect("state poisoned");
            sm.membership.members().cloned().collect()
        };
        let learner = members.iter().any(|m| m.id == config.id && m.is_learner);
        shared.learner.store(learner, Ordering::Release);
        let watch = Arc::new(WatchHub::new(
            Arc::new(StoreHistory(shared.clone())),
            crate::watch::encoded::HeaderIds {
                cluster_id: config.cluster_id,
                member_id: config.id,
            },
            config.watch.clone(),
        ));
        let handle = NodeHandle {
            tx: tx.clone(),
            jobs: jobs_for_handle,
            shared: shared.clone(),
            config: config.clone(),
            watch: watch.clone(),
        };
        if let Some(t) = &transport {
            t.attach(
                NodeLink {
                    inbox: tx.clone(),
                    shared: shared.clone(),
                    node: handle.clone(),
                    snap_dir: recovery::backend_path(&config.data_dir)
                        .parent()
                        .expect("the backend is in a directory")
                        .to_path_buf(),
                },
                config.id,
                config.cluster_id,
            );
            t.set_peers(&members);
        }
        let mut applier = applier::Applier::new(
            config.clone(),
            shared.clone(),
            watch.clone(),
            transport.clone(),
            tx.clone(),
            job_rx,
            replayed_until,
        );
        let applier = std::thread::Builder::new()
            .name("etcdcore-apply".into())
            .spawn(move || applier.run())
            .map_err(|e| RecoveryError(format!("cannot start the apply thread: {e}")))?;
        let mut lp = ready_loop::ReadyLoop::new(
            config.clone(),
            node,
            recovered.wal,
            shared.clone(),
            bridge,
            transport,
            rx,
            jobs,
        );
        let raft = std::thread::Builder::new()
            .name("etcdcore-raft".into())
            .spawn(move || lp.run())
            .map_err(|e| RecoveryError(format!("cannot start the raft thread: {e}")))?;
        let hub = watch.clone();
        let watch_sync = std::thread::Builder::new()
            .name("etcdcore-watch".into())
            .spawn(move || crate::watch::sync::run(hub))
            .map_err(|e| RecoveryError(format!("cannot start the watch thread: {e}")))?;
        Ok(Node {
            handle,
            raft: Some(raft),
            applier: Some(applier),
            watch_sync: Some(watch_sync),
        })
    }

    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Finishes what is in flight: the Raft loop fsyncs and stops, the
    /// applier applies what it was handed, commits durably and stops.
    pub fn stop(&mut self) {
        let _ = self.handle.tx.send(Msg::Stop);
        if let Some(t) = self.raft.take() {
            let _ = t.join();
        }
        if let Some(t) = self.applier.take() {
            let _ = t.join();
        }
        self.handle.watch.stop();
        if let Some(t) = self.watch_sync.take() {
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
        self.shared.check_running()?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::ReadIndex { reply })
            .map_err(|_| errors::stopped())?;
        let index = rx.await.unwrap_or_else(|_| Err(errors::stopped()))?;
        self.shared.wait_applied(index).await
    }

    /// Has the applier compact the backend file (Maintenance.Defragment):
    /// returns its size (before, after).
    pub fn defragment_blocking(&self) -> Result<(u64, u64), Status> {
        self.shared.check_running()?;
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(applier::Job::Defragment { reply })
            .map_err(|_| errors::stopped())?;
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(errors::stopped()))
    }
}

#[cfg(test)]
mod tests;
