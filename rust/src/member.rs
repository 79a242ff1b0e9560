//! One running etcdcore member: the Raft node, the gRPC listeners and the
//! bridge, started and stopped together. Everything Python asks of the core
//! is a method here; `python.rs` only translates.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::Status;

use crate::auth;
use crate::bridge::Bridge;
use crate::identity::{self, Member as MemberInfo};
use crate::membership::Change;
use crate::metrics::Metrics;
use crate::pb::etcdserverpb::{AlarmMember, AlarmRequest, CompactionRequest};
use crate::pb::internal::internal_request::Request;
use crate::pb::internal::{AuthAdminRequest, MemberAttributes, MemberRecord, MemberUpdate};
use crate::raft_node::{Bootstrap, Node, NodeConfig, NodeHandle};
use crate::server::{self, Limits};
use crate::state_machine::Outcome;
use crate::tls::{self, TlsSettings};
use crate::transport::{self, Transport};
use crate::watch::WatchSettings;

/// etcd's defaults for --backend-batch-interval and --backend-batch-limit.
const DEFAULT_BACKEND_BATCH_INTERVAL: Duration = Duration::from_millis(100);
const DEFAULT_BACKEND_BATCH_LIMIT: u64 = 10_000;

/// (permission type, key, range end), as RoleGet lists them.
pub type RolePermission = (i32, Vec<u8>, Vec<u8>);

/// What a member needs to start (parsed from etcd's flags by Python).
#[derive(Clone, Debug)]
pub struct MemberConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub client_listen: Vec<String>,
    pub client_urls: Vec<String>,
    pub peer_listen: Vec<String>,
    pub peer_urls: Vec<String>,
    pub initial_cluster: Vec<(String, Vec<String>)>,
    /// "new" or "existing" (--initial-cluster-state).
    pub initial_cluster_state: String,
    pub cluster_token: String,
    pub snapshot_count: u64,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub quota_backend_bytes: u64,
    /// --backend-batch-interval (zero: etcd's 100 ms).
    pub backend_batch_interval: Duration,
    /// --backend-batch-limit (zero: etcd's 10,000).
    pub backend_batch_limit: u64,
    pub heartbeat: Duration,
    pub election: Duration,
    /// TLS on the client listeners (their URLs are https).
    pub client_tls: Option<TlsSettings>,
    /// TLS on the peer listeners and for https peer URLs.
    pub peer_tls: Option<TlsSettings>,
    /// --auth-token jwt: the key that signs and verifies tokens.
    pub jwt: Option<Arc<crate::auth::jwt::JwtTokens>>,
    /// HTTP/2 streams one client connection may have open (--max-concurrent-streams).
    pub max_concurrent_streams: u32,
    /// The unix socket of the Python HTTP application: when set, the client
    /// listeners also serve etcd's HTTP endpoints (no --listen-client-http-urls).
    pub client_http_gateway: Option<PathBuf>,
    /// How often the leader checkpoints remaining lease TTLs; None without
    /// --experimental-enable-lease-checkpoint.
    pub lease_checkpoint_interval: Option<Duration>,
    /// --experimental-watch-progress-notify-interval (zero: none).
    pub watch_progress_notify_interval: Duration,
}

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
    pub db_size_in_use: i64,
    pub keys: usize,
    pub is_learner: bool,
    pub leader_changes: u64,
}

pub struct Member {
    cfg: MemberConfig,
    /// The initial cluster from the flags; the replicated membership rules
    /// once the member runs.
    members: Vec<MemberInfo>,
    cluster_id: u64,
    bridge: Arc<Bridge>,
    /// Outlives the running parts, so /metrics counts across a restart.
    metrics: Arc<Metrics>,
    transport: Option<Arc<Transport>>,
    runtime: Option<tokio::runtime::Runtime>,
    node: Option<Node>,
    handle: Option<NodeHandle>,
    shutdown: Option<watch::Sender<bool>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The peer listeners: stopped at once, as the other members' streams
    /// into them never end by themselves.
    peer_tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Why the node stopped for good, kept once the node is gone.
    failure: Option<String>,
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
            metrics: Arc::default(),
            transport: None,
            runtime: None,
            node: None,
            handle: None,
            shutdown: None,
            tasks: Vec::new(),
            peer_tasks: Vec::new(),
            failure: None,
        })
    }

    /// This member's id: the running node's (which a WAL or a join decided),
    /// else the one the initial cluster gives it.
    pub fn id(&self) -> u64 {
        if let Some(h) = &self.handle {
            return h.config.id;
        }
        self.members
            .iter()
            .find(|m| m.name == self.cfg.name)
            .map(|m| m.id)
            .unwrap_or_default()
    }

    pub fn cluster_id(&self) -> u64 {
        self.handle
            .as_ref()
            .map(|h| h.config.cluster_id)
            .unwrap_or(self.cluster_id)
    }

    pub fn bridge(&self) -> &Arc<Bridge> {
        &self.bridge
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn node(&self) -> Result<&NodeHandle, Status> {
        self.handle.as_ref().ok_or_else(crate::errors::stopped)
    }

    pub fn start(&mut self) -> Result<(), StartError> {
        let addrs = resolve(&self.cfg.client_listen)?;
        let peer_addrs = resolve(&self.cfg.peer_listen)?;
        let election_ticks =
            (self.cfg.election.as_millis() / self.cfg.heartbeat.as_millis().max(1)).max(2) as usize;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etcdcore-grpc")
            .enable_all()
            .build()
            .map_err(|e| StartError(format!("runtime: {e}")))?;
        let tls_err = |e: String| StartError(format!("tls: {e}"));
        let client_tls = match &self.cfg.client_tls {
            Some(t) => Some(tls::server_config(t).map_err(tls_err)?),
            None => None,
        };
        let (peer_tls, peer_dial_tls) = match &self.cfg.peer_tls {
            Some(t) => (
                Some(tls::server_config(t).map_err(tls_err)?),
                Some(tls::client_config(t).map_err(tls_err)?),
            ),
            None => (None, None),
        };
        let (id, cluster_id, bootstrap) = self.bootstrap(&runtime, peer_dial_tls.clone())?;
        // Outgoing peer connections leave from the peer listener's address.
        let local_ip = peer_addrs
            .first()
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified());
        let transport = Arc::new(Transport::new(
            local_ip,
            peer_dial_tls,
            runtime.handle().clone(),
            self.metrics.clone(),
        ));
        let node = Node::start(
            NodeConfig {
                id,
                cluster_id,
                name: self.cfg.name.clone(),
                bootstrap,
                data_dir: self.cfg.data_dir.clone(),
                heartbeat: self.cfg.heartbeat,
                election_ticks,
                snapshot_count: self.cfg.snapshot_count.max(1),
                quota_backend_bytes: self.cfg.quota_backend_bytes,
                backend_batch_interval: if self.cfg.backend_batch_interval.is_zero() {
                    DEFAULT_BACKEND_BATCH_INTERVAL
                } else {
                    self.cfg.backend_batch_interval
                },
                backend_batch_limit: if self.cfg.backend_batch_limit == 0 {
                    DEFAULT_BACKEND_BATCH_LIMIT
                } else {
                    self.cfg.backend_batch_limit
                },
                metrics: self.metrics.clone(),
                lease_checkpoint_interval: self.cfg.lease_checkpoint_interval,
                watch: WatchSettings {
                    max_response_bytes: self.cfg.max_request_bytes + server::GRPC_OVERHEAD_BYTES,
                    progress_interval: self.cfg.watch_progress_notify_interval,
                    ..WatchSettings::default()
                },
            },
            self.bridge.clone(),
            Some(transport.clone()),
        )
        .map_err(|e| StartError(e.to_string()))?;
        let handle = node.handle();
        if let Some(jwt) = &self.cfg.jwt {
            let _ = handle.shared.jwt.set(jwt.clone());
        }
        self.node = Some(node);
        self.handle = Some(handle.clone());
        self.transport = Some(transport.clone());

        let (tx, rx) = watch::channel(false);
        let limits = Limits {
            max_request_bytes: self.cfg.max_request_bytes,
            max_txn_ops: self.cfg.max_txn_ops,
            max_concurrent_streams: self.cfg.max_concurrent_streams,
        };
        let expiry = rx.clone();
        let served = runtime.block_on(async {
            let peers =
                transport::serve(peer_addrs, transport.clone(), peer_tls, rx.clone()).await?;
            let clients = server::serve(
                addrs,
                handle.clone(),
                Some(transport.clone()),
                self.bridge.clone(),
                limits,
                client_tls,
                self.cfg.client_http_gateway.clone(),
                rx,
            )
            .await?;
            Ok::<_, std::io::Error>((peers, clients))
        });
        let (peer_tasks, mut tasks) = match served {
            Ok(t) => t,
            Err(e) => {
                self.stop_node();
                return Err(StartError(e.to_string()));
            }
        };
        tasks.push(runtime.spawn(crate::lessor::expiry::run(handle.clone(), expiry)));
        let (name, client_urls) = (self.cfg.name.clone(), self.cfg.client_urls.clone());
        let (bridge, every) = (self.bridge.clone(), self.cfg.election);
        tasks.push(runtime.spawn(async move {
            publish(handle, name, client_urls, every).await;
            bridge.push(crate::bridge::Item::Published);
        }));
        self.tasks = tasks;
        self.peer_tasks = peer_tasks;
        self.shutdown = Some(tx);
        self.runtime = Some(runtime);
        Ok(())
    }

    /// Who this member is and how a fresh data dir is filled: from the
    /// initial cluster (new), or from a running member's answer (existing).
    fn bootstrap(
        &self,
        runtime: &tokio::runtime::Runtime,
        peer_tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    ) -> Result<(u64, u64, Bootstrap), StartError> {
        let initial: Vec<MemberRecord> = self
            .members
            .iter()
            .map(|m| MemberRecord {
                id: m.id,
                name: m.name.clone(),
                peer_urls: m.peer_urls.clone(),
                client_urls: vec![],
                is_learner: false,
            })
            .collect();
        let initialized = self.cfg.data_dir.join("member").join("wal").is_dir();
        if self.cfg.initial_cluster_state != "existing" || initialized {
            return Ok((self.id(), self.cluster_id, Bootstrap::New(initial)));
        }
        let others: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.name != self.cfg.name)
            .flat_map(|m| m.peer_urls.clone())
            .collect();
        let (cluster_id, members) = runtime
            .block_on(transport::fetch_cluster(&others, peer_tls))
            .map_err(|e| StartError(format!("cannot fetch cluster info from peer urls: {e}")))?;
        let mut mine = self.cfg.peer_urls.clone();
        mine.sort();
        let me = members
            .iter()
            .find(|m| {
                let mut urls = m.peer_urls.clone();
                urls.sort();
                urls == mine
            })
            .ok_or_else(|| {
                StartError(format!(
                    "member with peer urls {} has not been added to cluster {cluster_id:x} (use etcdctl member add first)",
                    self.cfg.peer_urls.join(",")
                ))
            })?;
        Ok((me.id, cluster_id, Bootstrap::Join(members)))
    }

    /// Stops accepting calls, lets in-flight ones finish, then stops Raft
    /// (which fsyncs) and fails anything still waiting on Python.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        let watch = self.handle.as_ref().map(|h| h.watch.clone());
        if let Some(rt) = self.runtime.take() {
            // Peers' streams into this member would hold a graceful stop of
            // the peer listener open until the timeout below; Raft needs
            // nothing from them any more.
            for t in std::mem::take(&mut self.peer_tasks) {
                t.abort();
            }
            let tasks = std::mem::take(&mut self.tasks);
            rt.block_on(async {
                // Watch streams never end by themselves. Once the listeners
                // had a moment to say GOAWAY (so a client cannot open a new
                // call here), they are ended with "server stopped"
                // (Unavailable), which clients retry, elsewhere or once the
                // member is back.
                if let Some(w) = watch {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    w.stop();
                }
                for t in tasks {
                    let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
                }
            });
            self.stop_node();
            self.stop_transport();
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
        if let Some(h) = self.handle.take() {
            self.failure = h.shared.failure.get().cloned();
        }
    }

    /// Why the member stopped for good (a failed WAL or backend write).
    pub fn failure(&self) -> Option<String> {
        match &self.handle {
            Some(h) => h.shared.failure.get().cloned(),
            None => self.failure.clone(),
        }
    }

    fn stop_transport(&mut self) {
        if let Some(t) = self.transport.take() {
            t.stop();
        }
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
        (self.cluster_id(), self.id(), rev, term)
    }

    pub fn status(&self) -> Result<StatusInfo, Status> {
        let h = self.node()?;
        h.shared.check_running()?;
        let sm = h.shared.sm.read().expect("state poisoned");
        Ok(StatusInfo {
            member_id: self.id(),
            cluster_id: self.cluster_id(),
            leader: h.shared.leader(),
            raft_term: h.shared.term(),
            raft_index: h.shared.commit_index.load(Ordering::Acquire),
            raft_applied_index: sm.applied_index,
            revision: sm.store.current_revision(),
            compact_revision: sm.store.compact_revision(),
            db_size: sm.db_size() as i64,
            db_size_in_use: sm.db_size_in_use() as i64,
            keys: sm.store.keys_count(),
            is_learner: sm.membership.get(self.id()).is_some_and(|m| m.is_learner),
            leader_changes: h.shared.leader_changes.load(Ordering::Acquire),
        })
    }

    /// Watchers open on this member (etcd_debugging_mvcc_watcher_total).
    pub fn watcher_count(&self) -> usize {
        self.handle.as_ref().map_or(0, |h| h.watch.watcher_count())
    }

    pub fn is_leader(&self) -> bool {
        self.handle
            .as_ref()
            .map(|h| h.shared.leader() == self.id())
            .unwrap_or(false)
    }

    /// The replicated membership (the initial cluster before start).
    pub fn members(&self) -> Vec<MemberInfo> {
        let Some(h) = &self.handle else {
            return self.members.clone();
        };
        let sm = h.shared.sm.read().expect("state poisoned");
        sm.membership
            .members()
            .map(|m| MemberInfo {
                id: m.id,
                name: m.name.clone(),
                peer_urls: m.peer_urls.clone(),
                client_urls: m.client_urls.clone(),
                is_learner: m.is_learner,
            })
            .collect()
    }

    /// Whether this member was removed from the cluster.
    pub fn removed(&self) -> bool {
        self.handle
            .as_ref()
            .is_some_and(|h| h.shared.removed.load(Ordering::Acquire))
    }

    /// MemberAdd: a new member with a fresh id; returns its id once the
    /// configuration change is applied.
    pub fn member_add(&self, peer_urls: Vec<String>, is_learner: bool) -> Result<u64, Status> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        // As etcd: the id mixes the time in, so a re-added URL gets a new id.
        let id = identity::member_id(&peer_urls, &format!("{}{now}", self.cfg.cluster_token));
        let member = MemberRecord {
            id,
            name: String::new(),
            peer_urls,
            client_urls: vec![],
            is_learner,
        };
        self.node()?.conf_change_blocking(Change::Add(member))?;
        Ok(id)
    }

    pub fn member_remove(&self, id: u64) -> Result<(), Status> {
        self.node()?.conf_change_blocking(Change::Remove(id))?;
        Ok(())
    }

    pub fn member_promote(&self, id: u64) -> Result<(), Status> {
        self.node()?.conf_change_blocking(Change::Promote(id))?;
        Ok(())
    }

    pub fn member_update(&self, id: u64, peer_urls: Vec<String>) -> Result<(), Status> {
        self.node()?
            .propose_blocking(Request::MemberUpdate(MemberUpdate {
                member_id: id,
                peer_urls,
            }))?;
        Ok(())
    }

    /// MoveLeader: hands leadership to `target` (this member must lead).
    pub fn move_leader(&self, target: u64) -> Result<(), Status> {
        self.node()?.transfer_leader_blocking(target)
    }

    /// How many times this member saw a new leader (etcd's
    /// etcd_server_leader_changes_seen_total).
    pub fn leader_changes(&self) -> u64 {
        self.handle
            .as_ref()
            .map(|h| h.shared.leader_changes.load(Ordering::Acquire))
            .unwrap_or_default()
    }

    /// HashKV: the index says what a compaction keeps (under the state's
    /// lock), the read transaction taken with it is hashed after.
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64), Status> {
        let h = self.node()?;
        h.shared.check_running()?;
        let sm = h.shared.sm.read().expect("state poisoned");
        let rtx = sm.read().map_err(backend_status)?;
        Ok(sm.store.hash_kv(rtx.key_bucket(), rev)?)
    }

    /// Defragment: the backend file rewritten without the space compaction
    /// freed (member-local, as etcd's). Returns its size (before, after).
    pub fn defragment(&self) -> Result<(u64, u64), Status> {
        self.node()?.defragment_blocking()
    }

    pub fn alarms(&self) -> Result<Vec<AlarmMember>, Status> {
        let h = self.node()?;
        Ok(h.shared.sm.read().expect("state poisoned").alarms.clone())
    }

    /// Compacts the store at `revision` through Raft (auto-compaction);
    /// returns the revision the store is at afterwards.
    pub fn compact(&self, revision: i64) -> Result<i64, Status> {
        let a = self
            .node()?
            .propose_blocking(Request::Compaction(CompactionRequest {
                revision,
                // As etcd's compactor: the answer does not wait for the
                // versions to be removed.
                physical: false,
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

    // -- auth ---------------------------------------------------------------------

    /// Proposes a change to the auth store and waits until it is applied.
    pub fn auth_propose(&self, request: AuthAdminRequest) -> Result<(), Status> {
        self.node()?.propose_blocking(Request::Auth(request))?;
        Ok(())
    }

    /// (enabled, revision) of the auth store.
    pub fn auth_status(&self) -> Result<(bool, u64), Status> {
        let h = self.node()?;
        let sm = h.shared.sm.read().expect("state poisoned");
        Ok((sm.auth.enabled(), sm.auth.revision()))
    }

    /// (password hash, no-password user) of a user, if it exists.
    pub fn auth_credentials(&self, name: &str) -> Result<Option<(String, bool)>, Status> {
        let h = self.node()?;
        let sm = h.shared.sm.read().expect("state poisoned");
        Ok(sm.auth.credentials(name))
    }

    /// The roles of a user, if it exists.
    pub fn auth_user_roles(&self, name: &str) -> Result<Option<Vec<String>>, Status> {
        let h = self.node()?;
        let sm = h.shared.sm.read().expect("state poisoned");
        Ok(sm.auth.user(name).map(auth::sorted_roles))
    }

    pub fn auth_users(&self) -> Result<Vec<String>, Status> {
        let h = self.node()?;
        let sm = h.shared.sm.read().expect("state poisoned");
        Ok(sm.auth.user_names())
    }

    /// (type, key, range end) of each permission of a role, if it exists.
    pub fn auth_role_permissions(&self, name: &str) -> Result<Option<Vec<RolePermission>>, Status> {
        let h = self.node()?;
        let sm = h.shared.sm.read().expect("state poisoned");
        Ok(sm.auth.role(name).map(|r| {
            auth::permissions(r)
                .into_iter()
                .map(|p| (p.perm_type, p.key, p.range_end))
                .collect()
        }))
    }

    pub fn auth_roles(&self) -> Result<Vec<String>, Status> {
        let h = self.node()?;
        let sm = h.shared.sm.read().expect("state poisoned");
        Ok(sm.auth.role_names())
    }

    /// The token this process's own clients send to pass the auth checks.
    pub fn internal_token(&self) -> Result<String, Status> {
        Ok(self.node()?.shared.internal_token.clone())
    }
}

/// etcd's publish: once the member runs, it proposes its name and client URLs
/// so every member's MemberList shows them; retried until it is applied.
/// Proposed even when a restarted member's state already shows them, as etcd
/// does: returning means the cluster has a leader and committed the entry.
async fn publish(node: NodeHandle, name: String, client_urls: Vec<String>, every: Duration) {
    let mut applied = false;
    loop {
        let current = {
            let sm = node.shared.sm.read().expect("state poisoned");
            sm.membership.get(node.config.id).cloned()
        };
        match current {
            Some(m) if applied && m.name == name && m.client_urls == client_urls => return,
            Some(_) => {}
            // Not a member (yet): a joiner waits for the leader's snapshot.
            None => {
                tokio::time::sleep(every).await;
                continue;
            }
        }
        let request = Request::MemberAttributes(MemberAttributes {
            member_id: node.config.id,
            name: name.clone(),
            client_urls: client_urls.clone(),
        });
        match node.propose(request).await {
            Ok(_) => applied = true,
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

fn backend_status(e: crate::backend::BackendError) -> Status {
    Status::from(crate::mvcc::MvccError::Backend(e.to_string()))
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
