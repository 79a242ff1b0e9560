//! One running etcdcore member: the Raft node, the gRPC listeners and the
//! bridge, started and stopped together. Everything Python asks of the core
//! is a method here; `python.rs` only translates.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::watch;
use tonic::Status;

use crate::bridge::Bridge;
use crate::identity::{self, Member as MemberInfo};
use crate::pb::etcdserverpb::{
    AlarmMember, AlarmRequest, CompactionRequest, LeaseGrantRequest, LeaseRevokeRequest,
};
use crate::pb::internal::internal_request::Request;
use crate::pb::internal::EventBatch;
use crate::raft_node::{Node, NodeConfig, NodeHandle};
use crate::server::{self, Limits};
use crate::state_machine::Outcome;

/// What a member needs to start (parsed from etcd's flags by Python).
#[derive(Clone, Debug)]
pub struct MemberConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub client_listen: Vec<String>,
    pub client_urls: Vec<String>,
    pub peer_urls: Vec<String>,
    pub initial_cluster: Vec<(String, Vec<String>)>,
    pub cluster_token: String,
    pub snapshot_count: u64,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub quota_backend_bytes: u64,
    pub heartbeat: Duration,
    pub election: Duration,
}

/// (granted TTL, attached keys) of one lease.
pub type LeaseInfo = (i64, Vec<Vec<u8>>);

/// The numbers Maintenance.Status reports.
#[derive(Clone, Debug)]
pub struct StatusInfo {
    pub member_id: u64,
    pub cluster_id: u64,
    pub leader: u64,
    pub raft_term: u64,
    pub raft_index: u64,
    pub raft_applied_index: u64,
    pub revision: i64,
    pub compact_revision: i64,
    pub db_size: i64,
    pub keys: usize,
}

pub struct Member {
    cfg: MemberConfig,
    members: Vec<MemberInfo>,
    cluster_id: u64,
    bridge: Arc<Bridge>,
    runtime: Option<tokio::runtime::Runtime>,
    node: Option<Node>,
    handle: Option<NodeHandle>,
    shutdown: Option<watch::Sender<bool>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A failure to start, with a message for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

impl Member {
    pub fn new(cfg: MemberConfig) -> Result<Member, StartError> {
        let members: Vec<MemberInfo> = cfg
            .initial_cluster
            .iter()
            .map(|(name, urls)| MemberInfo {
                id: identity::member_id(urls, &cfg.cluster_token),
                name: name.clone(),
                peer_urls: urls.clone(),
                client_urls: if *name == cfg.name {
                    cfg.client_urls.clone()
                } else {
                    vec![]
                },
                is_learner: false,
            })
            .collect();
        if !members.iter().any(|m| m.name == cfg.name) {
            return Err(StartError(format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                cfg.name
            )));
        }
        let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
        let cluster_id = identity::cluster_id(&ids);
        let bridge = Arc::new(Bridge::new().map_err(|e| StartError(format!("bridge: {e}")))?);
        Ok(Member {
            cfg,
            members,
            cluster_id,
            bridge,
            runtime: None,
            node: None,
            handle: None,
            shutdown: None,
            tasks: Vec::new(),
        })
    }

    pub fn id(&self) -> u64 {
        self.members
            .iter()
            .find(|m| m.name == self.cfg.name)
            .map(|m| m.id)
            .unwrap_or_default()
    }

    pub fn bridge(&self) -> &Arc<Bridge> {
        &self.bridge
    }

    fn node(&self) -> Result<&NodeHandle, Status> {
        self.handle.as_ref().ok_or_else(crate::errors::stopped)
    }

    pub fn start(&mut self) -> Result<(), StartError> {
        let addrs = resolve(&self.cfg.client_listen)?;
        let election_ticks =
            (self.cfg.election.as_millis() / self.cfg.heartbeat.as_millis().max(1)).max(2) as usize;
        let node = Node::start(
            NodeConfig {
                id: self.id(),
                cluster_id: self.cluster_id,
                name: self.cfg.name.clone(),
                voters: self.members.iter().map(|m| m.id).collect(),
                data_dir: self.cfg.data_dir.clone(),
                heartbeat: self.cfg.heartbeat,
                election_ticks,
                snapshot_count: self.cfg.snapshot_count.max(1),
            },
            self.bridge.clone(),
        )
        .map_err(|e| StartError(e.to_string()))?;
        let handle = node.handle();
        self.node = Some(node);
        self.handle = Some(handle.clone());

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etcdcore-grpc")
            .enable_all()
            .build()
            .map_err(|e| StartError(format!("runtime: {e}")))?;
        let (tx, rx) = watch::channel(false);
        let limits = Limits {
            max_request_bytes: self.cfg.max_request_bytes,
            max_txn_ops: self.cfg.max_txn_ops,
        };
        let tasks = runtime
            .block_on(server::serve(
                addrs,
                handle,
                self.bridge.clone(),
                limits,
                rx,
            ))
            .map_err(|e| StartError(e.to_string()));
        let tasks = match tasks {
            Ok(t) => t,
            Err(e) => {
                self.stop_node();
                return Err(e);
            }
        };
        self.tasks = tasks;
        self.shutdown = Some(tx);
        self.runtime = Some(runtime);
        Ok(())
    }

    /// Stops accepting calls, lets in-flight ones finish, then stops Raft
    /// (which fsyncs) and fails anything still waiting on Python.
    pub fn stop(&mut self) {
        // Python stops draining the bridge now; a raft loop waiting for it to
        // catch up on events must not wait forever.
        self.bridge.set_event_feed(false);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(rt) = self.runtime.take() {
            let tasks = std::mem::take(&mut self.tasks);
            rt.block_on(async {
                for t in tasks {
                    let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
                }
            });
            self.stop_node();
            self.bridge.fail_all();
            rt.shutdown_timeout(Duration::from_secs(1));
        } else {
            self.stop_node();
        }
    }

    fn stop_node(&mut self) {
        if let Some(mut node) = self.node.take() {
            node.stop();
        }
        self.handle = None;
    }

    pub fn header(&self) -> (u64, u64, i64, u64) {
        let (rev, term) = match &self.handle {
            Some(h) => (
                h.shared
                    .sm
                    .read()
                    .expect("state poisoned")
                    .store
                    .current_revision(),
                h.shared.term(),
            ),
            None => (0, 0),
        };
        (self.cluster_id, self.id(), rev, term)
    }

    pub fn status(&self) -> Result<StatusInfo, Status> {
        let h = self.node()?;
        let sm = h.shared.sm.read().expect("state poisoned");
        Ok(StatusInfo {
            member_id: self.id(),
            cluster_id: self.cluster_id,
            leader: h.shared.leader(),
            raft_term: h.shared.term(),
            raft_index: h.shared.commit_index.load(Ordering::Acquire),
            raft_applied_index: sm.applied_index,
            revision: sm.store.current_revision(),
            compact_revision: sm.store.compact_revision(),
            db_size: sm.store.size_bytes() as i64,
            keys: sm.store.keys_count(),
        })
    }

    pub fn is_leader(&self) -> bool {
        self.handle
            .as_ref()
            .map(|h| h.shared.leader() == self.id())
            .unwrap_or(false)
    }

    pub fn members(&self) -> Vec<MemberInfo> {
        self.members.clone()
    }

    pub fn events_since(
        &self,
        key: &[u8],
        range_end: &[u8],
        start: i64,
        limit: usize,
    ) -> Result<Vec<u8>, Status> {
        let h = self.node()?;
        let sm = h.shared.sm.read().expect("state poisoned");
        let events = sm.store.events_since(key, range_end, start, limit)?;
        Ok(EventBatch {
            revision: sm.store.current_revision(),
            events,
        }
        .encode_to_vec())
    }

    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64), Status> {
        let h = self.node()?;
        let sm = h.shared.sm.read().expect("state poisoned");
        Ok(sm.store.hash_kv(rev)?)
    }

    /// The whole state machine as the Maintenance.Snapshot stream carries it.
    ///
    /// Layout: `[u64 LE length][state][u32 LE crc32c of state]`, zero-padded
    /// to a multiple of 512 bytes, then the SHA-256 of everything before it.
    /// The padding and trailing digest are what etcdctl checks for (a bbolt
    /// file is whole pages plus that digest); the length and crc are ours.
    pub fn snapshot(&self) -> Result<Vec<u8>, Status> {
        use sha2::Digest;
        let h = self.node()?;
        let state = h
            .shared
            .sm
            .read()
            .expect("state poisoned")
            .encode_snapshot();
        let mut blob = Vec::with_capacity(state.len() + 512 + 32);
        blob.extend_from_slice(&(state.len() as u64).to_le_bytes());
        blob.extend_from_slice(&state);
        blob.extend_from_slice(&crc32c::crc32c(&state).to_le_bytes());
        blob.resize(blob.len().div_ceil(512) * 512, 0);
        let digest = sha2::Sha256::digest(&blob);
        blob.extend_from_slice(&digest);
        Ok(blob)
    }

    pub fn leases(&self) -> Result<Vec<(i64, i64)>, Status> {
        let h = self.node()?;
        let sm = h.shared.sm.read().expect("state poisoned");
        Ok(sm.leases.iter().collect())
    }

    /// The granted TTL and attached keys of a lease, if it exists.
    pub fn lease_info(&self, id: i64) -> Result<Option<LeaseInfo>, Status> {
        let h = self.node()?;
        let sm = h.shared.sm.read().expect("state poisoned");
        Ok(sm
            .leases
            .ttl(id)
            .map(|ttl| (ttl, sm.store.keys_with_lease(id))))
    }

    pub fn alarms(&self) -> Result<Vec<AlarmMember>, Status> {
        let h = self.node()?;
        Ok(h.shared.sm.read().expect("state poisoned").alarms.clone())
    }

    pub fn lease_grant(&self, id: i64, ttl: i64) -> Result<i64, Status> {
        let a = self
            .node()?
            .propose_blocking(Request::LeaseGrant(LeaseGrantRequest { id, ttl }))?;
        Ok(a.revision)
    }

    pub fn lease_revoke(&self, id: i64) -> Result<i64, Status> {
        let a = self
            .node()?
            .propose_blocking(Request::LeaseRevoke(LeaseRevokeRequest { id }))?;
        Ok(a.revision)
    }

    /// Compacts the store at `revision` through Raft (auto-compaction);
    /// returns the revision the store is at afterwards.
    pub fn compact(&self, revision: i64) -> Result<i64, Status> {
        let a = self
            .node()?
            .propose_blocking(Request::Compaction(CompactionRequest {
                revision,
                physical: true,
            }))?;
        Ok(a.revision)
    }

    pub fn alarm(
        &self,
        action: i32,
        member_id: u64,
        alarm: i32,
    ) -> Result<Vec<AlarmMember>, Status> {
        let a = self.node()?.propose_blocking(Request::Alarm(AlarmRequest {
            action,
            member_id,
            alarm,
        }))?;
        match a.outcome {
            Outcome::Alarm(resp) => Ok(resp.alarms),
            o => Err(Status::internal(format!("unexpected outcome {o:?}"))),
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

fn resolve(hosts: &[String]) -> Result<Vec<SocketAddr>, StartError> {
    let mut out = Vec::new();
    for h in hosts {
        let mut addrs = h
            .to_socket_addrs()
            .map_err(|e| StartError(format!("cannot listen on {h}: {e}")))?;
        let a = addrs
            .next()
            .ok_or_else(|| StartError(format!("cannot listen on {h}: no address")))?;
        out.push(a);
    }
    Ok(out)
}
