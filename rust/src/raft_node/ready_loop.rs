//! The Ready loop: collect proposals, let raft-rs order them, persist with one
//! fsync, apply, answer. One turn of the loop:
//!
//! 1. wait for work or the next tick, then take everything queued (the batch);
//! 2. `ready()`: apply committed entries, append new entries and the hard state
//!    to the WAL, ONE fsync for all of it, answer ReadIndex states;
//! 3. `advance()`: apply what that made committed, answer the proposers, hand the
//!    batch's events to the watch hub in one bridge item;
//! 4. snapshot when `snapshot_count` entries were applied since the last one.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{Entry, EntryType, HardState};
use raft::storage::MemStorage;
use raft::{RawNode, StateRole};
use tokio::sync::oneshot;
use tonic::Status;

use super::{Applied, Msg, NodeConfig, ProposalReply, Shared};
use crate::bridge::{Bridge, Item};
use crate::errors;
use crate::pb::internal::{EventBatch, InternalRequest};
use crate::pb::mvccpb::Event;
use crate::snap::Snapshotter;
use crate::wal::Wal;

/// How long a proposal may wait for a leader before it fails.
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(7);
/// The most proposals folded into one Ready (bounds latency under load).
const MAX_BATCH: usize = 4096;
/// Event batches Python may have waiting before the loop waits for it: the
/// watch hub's backlog stays bounded, and writes slow down to the pace watchers
/// are served at instead of piling events up in memory (etcd's watchable store
/// slows writers the same way).
const MAX_PENDING_EVENT_BATCHES: usize = 16;
/// Snapshots keep this many entries behind them, for followers that lag a little.
const SNAPSHOT_CATCH_UP_ENTRIES: u64 = 5000;

/// Proposal ids must never repeat, not even across restarts or between
/// members: an id found in a replayed or replicated entry would otherwise
/// answer somebody else's waiting caller. As etcd's idutil: the member id's
/// low 16 bits, then the start time in milliseconds, then a counter.
fn first_proposal_id(member_id: u64) -> u64 {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    ((member_id & 0xffff) << 48) | ((millis & 0xff_ffff_ffff) << 8)
}

struct Stalled {
    request: InternalRequest,
    reply: ProposalReply,
    deadline: Instant,
}

pub(super) struct ReadyLoop {
    cfg: Arc<NodeConfig>,
    node: RawNode<MemStorage>,
    wal: Wal,
    snapshotter: Snapshotter,
    shared: Arc<Shared>,
    bridge: Arc<Bridge>,
    rx: mpsc::Receiver<Msg>,
    next_id: u64,
    pending: HashMap<u64, ProposalReply>,
    stalled: Vec<Stalled>,
    read_waiters: Vec<oneshot::Sender<Result<(), Status>>>,
    next_read_ctx: u64,
    reads_in_raft: HashMap<u64, Vec<oneshot::Sender<Result<(), Status>>>>,
    reads_to_apply: Vec<(u64, oneshot::Sender<Result<(), Status>>)>,
    last_snapshot_index: u64,
    was_leader: bool,
    stopping: bool,
}

impl ReadyLoop {
    pub(super) fn new(
        cfg: Arc<NodeConfig>,
        node: RawNode<MemStorage>,
        wal: Wal,
        snapshotter: Snapshotter,
        shared: Arc<Shared>,
        bridge: Arc<Bridge>,
        rx: mpsc::Receiver<Msg>,
    ) -> ReadyLoop {
        let last_snapshot_index = shared.sm.read().expect("state poisoned").applied_index;
        let cfg_id = cfg.id;
        ReadyLoop {
            cfg,
            node,
            wal,
            snapshotter,
            shared,
            bridge,
            rx,
            next_id: first_proposal_id(cfg_id),
            pending: HashMap::new(),
            stalled: Vec::new(),
            read_waiters: Vec::new(),
            next_read_ctx: 1,
            reads_in_raft: HashMap::new(),
            reads_to_apply: Vec::new(),
            last_snapshot_index,
            was_leader: false,
            stopping: false,
        }
    }

    pub(super) fn run(&mut self) {
        // A lone voter need not wait out an election timeout.
        if self.cfg.voters.len() == 1 {
            let _ = self.node.campaign();
        }
        let mut next_tick = Instant::now() + self.cfg.heartbeat;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(msg) => {
                    self.handle(msg);
                    let mut n = 1;
                    while n < MAX_BATCH {
                        match self.rx.try_recv() {
                            Ok(msg) => self.handle(msg),
                            Err(_) => break,
                        }
                        n += 1;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => self.stopping = true,
            }
            if Instant::now() >= next_tick {
                self.node.tick();
                next_tick = Instant::now() + self.cfg.heartbeat;
                self.expire_stalled();
            }
            self.submit_reads();
            if let Err(e) = self.on_ready() {
                // The WAL failed: nothing more can be made durable.
                log::error!("raft loop stopping: {e}");
                self.stopping = true;
            }
            if self.stopping {
                self.shutdown();
                return;
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Propose { request, reply } => {
                let id = self.next_id;
                self.next_id += 1;
                let request = InternalRequest {
                    id,
                    request: Some(request),
                };
                self.propose(request, reply, Instant::now() + PROPOSAL_TIMEOUT);
            }
            Msg::ReadIndex { reply } => self.read_waiters.push(reply),
            Msg::Stop => self.stopping = true,
        }
    }

    fn propose(&mut self, request: InternalRequest, reply: ProposalReply, deadline: Instant) {
        if self.node.raft.state != StateRole::Leader {
            self.stalled.push(Stalled {
                request,
                reply,
                deadline,
            });
            return;
        }
        let id = request.id;
        match self.node.propose(vec![], request.encode_to_vec()) {
            Ok(()) => {
                self.pending.insert(id, reply);
            }
            Err(_) => self.stalled.push(Stalled {
                request,
                reply,
                deadline,
            }),
        }
    }

    fn expire_stalled(&mut self) {
        let now = Instant::now();
        let (expired, kept): (Vec<_>, Vec<_>) =
            self.stalled.drain(..).partition(|s| s.deadline <= now);
        self.stalled = kept;
        for s in expired {
            let _ = s.reply.send(Err(errors::timed_out()));
        }
    }

    /// One ReadIndex request to Raft covers every read that arrived this turn.
    fn submit_reads(&mut self) {
        if self.read_waiters.is_empty() {
            return;
        }
        // A follower's ReadIndex is forwarded to the leader by raft-rs; with no
        // leader at all there is nobody to confirm the read.
        if self.node.raft.state != StateRole::Leader && self.node.raft.leader_id == 0 {
            for w in self.read_waiters.drain(..) {
                let _ = w.send(Err(errors::no_leader()));
            }
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        let waiters = std::mem::take(&mut self.read_waiters);
        self.reads_in_raft.insert(ctx, waiters);
        self.node.read_index(ctx.to_be_bytes().to_vec());
    }

    fn on_ready(&mut self) -> Result<(), String> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut rd = self.node.ready();
        if let Some(ss) = rd.ss() {
            self.shared.leader_id.store(ss.leader_id, Ordering::Release);
            let is_leader = ss.raft_state == StateRole::Leader;
            if is_leader != self.was_leader {
                self.was_leader = is_leader;
                self.bridge.push(Item::Leader {
                    is_leader,
                    term: self.node.raft.term,
                });
            }
        }
        // Messages to peers: the cluster transport (next issue) sends
        // rd.take_messages() and rd.take_persisted_messages() here.
        let _ = rd.take_messages();

        let mut events = Vec::new();
        self.apply(rd.take_committed_entries(), &mut events);

        if !rd.entries().is_empty() {
            let encoded: Vec<(u64, u64, Vec<u8>)> = rd
                .entries()
                .iter()
                .map(|e| (e.index, e.term, e.write_to_bytes().expect("entry encodes")))
                .collect();
            let refs: Vec<(u64, u64, &[u8])> = encoded
                .iter()
                .map(|(i, t, d)| (*i, *t, d.as_slice()))
                .collect();
            self.wal.append_entries(&refs);
            self.node
                .mut_store()
                .wl()
                .append(rd.entries())
                .map_err(|e| e.to_string())?;
        }
        if let Some(hs) = rd.hs() {
            self.persist_hard_state(hs.clone());
        }
        // Group commit: one fsync for the whole batch, before any answer.
        self.wal.sync().map_err(|e| e.to_string())?;

        for rs in rd.take_read_states() {
            let ctx = u64::from_be_bytes(rs.request_ctx.as_slice().try_into().unwrap_or([0; 8]));
            if let Some(waiters) = self.reads_in_raft.remove(&ctx) {
                self.reads_to_apply
                    .extend(waiters.into_iter().map(|w| (rs.index, w)));
            }
        }
        let _ = rd.take_persisted_messages();

        let mut light = self.node.advance(rd);
        if let Some(commit) = light.commit_index() {
            let mut hs = self.node.store().rl().hard_state().clone();
            hs.commit = commit;
            // Rides along with the next batch's fsync; losing it only means
            // re-committing already-durable entries after a restart.
            self.persist_hard_state(hs);
        }
        let _ = light.take_messages();
        self.apply(light.take_committed_entries(), &mut events);
        self.node.advance_apply();

        self.publish(events);
        self.release_reads();
        self.retry_stalled();
        self.maybe_snapshot()
    }

    fn persist_hard_state(&mut self, hs: HardState) {
        self.wal
            .set_hard_state(&hs.write_to_bytes().expect("hard state encodes"));
        self.shared.term.store(hs.term, Ordering::Release);
        self.node.mut_store().wl().set_hardstate(hs);
    }

    fn apply(&mut self, entries: Vec<Entry>, events: &mut Vec<Event>) {
        if entries.is_empty() {
            return;
        }
        let term = self.node.raft.term;
        let mut sm = self.shared.sm.write().expect("state poisoned");
        for entry in entries {
            sm.applied_index = entry.index;
            sm.applied_term = entry.term;
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                continue;
            }
            let req = match InternalRequest::decode(entry.data.as_ref()) {
                Ok(r) => r,
                Err(e) => {
                    // Every member decodes the same bytes, so skipping keeps
                    // them identical; it can only come from a bug.
                    log::error!("entry {} is not an InternalRequest: {e}", entry.index);
                    continue;
                }
            };
            let Some(request) = req.request.as_ref() else {
                continue;
            };
            let result = sm.apply(request, events);
            let revision = sm.store.current_revision();
            if let Some(reply) = self.pending.remove(&req.id) {
                let _ = reply.send(result.map(|outcome| Applied {
                    outcome,
                    revision,
                    term,
                }));
            }
        }
        self.shared
            .applied_index
            .store(sm.applied_index, Ordering::Release);
    }

    /// One bridge item per turn, whatever the number of revisions in it.
    fn publish(&mut self, events: Vec<Event>) {
        let li = self.node.raft.raft_log.last_index();
        self.shared.last_index.store(li, Ordering::Release);
        self.shared
            .commit_index
            .store(self.node.raft.raft_log.committed, Ordering::Release);
        if events.is_empty() || !self.bridge.event_feed() {
            return;
        }
        let revision = events
            .last()
            .and_then(|e| e.kv.as_ref())
            .map(|kv| kv.mod_revision)
            .unwrap_or_default();
        let batch = EventBatch { revision, events }.encode_to_vec();
        while self.bridge.pending_event_batches() >= MAX_PENDING_EVENT_BATCHES
            && self.bridge.event_feed()
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        self.bridge.push(Item::Events { revision, batch });
    }

    fn release_reads(&mut self) {
        let applied = self.shared.applied_index.load(Ordering::Acquire);
        let (ready, waiting): (Vec<_>, Vec<_>) = self
            .reads_to_apply
            .drain(..)
            .partition(|(index, _)| *index <= applied);
        self.reads_to_apply = waiting;
        for (_, w) in ready {
            let _ = w.send(Ok(()));
        }
    }

    fn retry_stalled(&mut self) {
        if self.stalled.is_empty() || self.node.raft.state != StateRole::Leader {
            return;
        }
        for s in std::mem::take(&mut self.stalled) {
            self.propose(s.request, s.reply, s.deadline);
        }
    }

    fn maybe_snapshot(&mut self) -> Result<(), String> {
        let applied = self.shared.applied_index.load(Ordering::Acquire);
        if applied < self.last_snapshot_index + self.cfg.snapshot_count {
            return Ok(());
        }
        self.snapshot(applied)
    }

    /// Saves the state machine, then releases the WAL segments and in-memory
    /// log entries it covers.
    fn snapshot(&mut self, applied: u64) -> Result<(), String> {
        let (data, term) = {
            let sm = self.shared.sm.read().expect("state poisoned");
            (sm.encode_snapshot(), sm.applied_term)
        };
        self.snapshotter
            .save(applied, term, &data)
            .map_err(|e| format!("snapshot: {e}"))?;
        self.wal.mark_snapshot(applied, term);
        self.wal.sync().map_err(|e| e.to_string())?;
        self.wal.release_to(applied).map_err(|e| e.to_string())?;
        let _ = self.snapshotter.purge(5);
        let keep_from = applied.saturating_sub(SNAPSHOT_CATCH_UP_ENTRIES).max(1);
        let _ = self.node.mut_store().wl().compact(keep_from);
        self.last_snapshot_index = applied;
        log::info!("saved snapshot at index {applied}");
        Ok(())
    }

    fn shutdown(&mut self) {
        // Whatever is durable stays; nobody waits on what was not.
        let _ = self.wal.sync();
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(errors::stopped()));
        }
        for s in self.stalled.drain(..) {
            let _ = s.reply.send(Err(errors::stopped()));
        }
        for w in self.read_waiters.drain(..) {
            let _ = w.send(Err(errors::stopped()));
        }
        for (_, ws) in self.reads_in_raft.drain() {
            for w in ws {
                let _ = w.send(Err(errors::stopped()));
            }
        }
        for (_, w) in self.reads_to_apply.drain(..) {
            let _ = w.send(Err(errors::stopped()));
        }
        self.shared.stopped.store(true, Ordering::Release);
    }
}
