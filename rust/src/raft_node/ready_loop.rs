//! The Raft loop: collect proposals and peer messages, let raft-rs order
//! them, persist with one fsync, send, and hand what committed to the
//! applier. One turn of the loop:
//!
//! 1. wait for work or the next tick, then take everything queued (the batch);
//! 2. `ready()`: send what the leader may send before persisting, take in a
//!    snapshot from the leader, hand committed entries to the applier, append
//!    new entries and the hard state to the WAL, ONE fsync for all of it, then
//!    send the messages that had to wait for it (a follower's acks);
//! 3. `advance()`: hand over what that made committed, answer ReadIndex
//!    requests with their read index;
//! 4. every `snapshot_count` entries the backend holds durably, mark a
//!    snapshot in the WAL and release what is before it.
//!
//! The loop never applies, reads the state or waits on the applier, except
//! for a batch holding a configuration change (raft-rs must learn of it in
//! log order, as etcd's raft loop waits for such an apply). The backend quota
//! is checked here too (see [`crate::quota`]): a write that does not fit is
//! not proposed; this member raises its NOSPACE alarm and the caller gets
//! "database space exceeded" once the alarm is applied.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeType, Config, Entry, EntryType, HardState, Message, Snapshot,
};
use raft::{RawNode, SnapshotStatus, StateRole};
use tokio::sync::oneshot;
use tonic::Status;

use super::applier::Job;
use super::log_store::{LogStore, SNAPSHOT_DATA};
use super::{Applied, Msg, NodeConfig, ProposalReply, RecoveryError, Shared};
use crate::bridge::{Bridge, Item};
use crate::errors;
use crate::membership::Change;
use crate::pb::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType};
use crate::pb::internal::internal_request::Request;
use crate::pb::internal::{ConfChangeContext, InternalRequest};
use crate::quota::{self, Quota};
use crate::transport::Transport;
use crate::wal::Wal;

/// How long a proposal may wait (for a leader, or to be applied) before it fails.
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(7);
/// A ReadIndex with no answer after this long is asked again: a leader that
/// has not yet committed an entry of its term drops read requests silently.
const READ_RETRY: Duration = Duration::from_millis(500);
/// How long a linearizable read may wait for a ReadIndex answer in all.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The most proposals folded into one Ready (bounds latency under load).
const MAX_BATCH: usize = 4096;
/// etcd's maxGapBetweenApplyAndCommitIndex: proposals are refused ("too many
/// requests") while the applier is this far behind what committed.
const MAX_APPLY_LAG: u64 = 5000;
/// Snapshots keep this many entries behind them, for followers that lag a little.
const SNAPSHOT_CATCH_UP_ENTRIES: u64 = 5000;
/// etcd promotes a learner only once it has this share of the leader's log.
const LEARNER_READY_PERCENT: f64 = 0.9;

/// raft-rs's node over our log, configured as etcd configures its raft.
pub(super) fn raw_node(
    cfg: &NodeConfig,
    shared: &Shared,
    store: LogStore,
) -> Result<RawNode<LogStore>, RecoveryError> {
    let applied = shared.sm.read().expect("state poisoned").applied_index;
    let raft_cfg = Config {
        id: cfg.id,
        election_tick: cfg.election_ticks,
        heartbeat_tick: 1,
        applied,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    RawNode::new(&raft_cfg, store, &logger).map_err(|e| RecoveryError(format!("raft: {e}")))
}

/// What a proposal puts in the log.
enum Proposal {
    Entry(InternalRequest),
    Conf(ConfChange),
}

struct Stalled {
    proposal: Proposal,
    id: u64,
    reply: ProposalReply,
    deadline: Instant,
}

type ReadReply = oneshot::Sender<Result<u64, Status>>;
type TransferReply = oneshot::Sender<Result<(), Status>>;

struct ReadBatch {
    waiters: Vec<ReadReply>,
    asked: Instant,
    deadline: Instant,
}

/// This member's NOSPACE alarm on its way through Raft, and the callers
/// whose writes did not fit: they are answered once it is applied.
struct NoSpaceAlarm {
    applied: oneshot::Receiver<Result<Applied, Status>>,
    waiters: Vec<ProposalReply>,
}

struct Transfer {
    to: u64,
    reply: TransferReply,
    deadline: Instant,
}

pub(super) struct ReadyLoop {
    cfg: Arc<NodeConfig>,
    node: RawNode<LogStore>,
    wal: Wal,
    shared: Arc<Shared>,
    bridge: Arc<Bridge>,
    transport: Option<Arc<Transport>>,
    rx: mpsc::Receiver<Msg>,
    applier: mpsc::Sender<Job>,
    /// When each proposal handed to Raft (and waiting in `shared.proposals`)
    /// times out.
    deadlines: BTreeSet<(Instant, u64)>,
    stalled: Vec<Stalled>,
    read_waiters: Vec<ReadReply>,
    next_read_ctx: u64,
    reads_in_raft: HashMap<u64, ReadBatch>,
    transfers: Vec<Transfer>,
    quota: Quota,
    no_space_alarm: Option<NoSpaceAlarm>,
    last_snapshot_index: u64,
    was_leader: bool,
    stopping: bool,
}

impl ReadyLoop {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        cfg: Arc<NodeConfig>,
        node: RawNode<LogStore>,
        wal: Wal,
        shared: Arc<Shared>,
        bridge: Arc<Bridge>,
        transport: Option<Arc<Transport>>,
        rx: mpsc::Receiver<Msg>,
        applier: mpsc::Sender<Job>,
    ) -> ReadyLoop {
        let last_snapshot_index = shared.applied_index.load(Ordering::Acquire);
        let quota = Quota::new(cfg.quota_backend_bytes);
        ReadyLoop {
            cfg,
            node,
            wal,
            shared,
            bridge,
            transport,
            rx,
            applier,
            deadlines: BTreeSet::new(),
            stalled: Vec::new(),
            read_waiters: Vec::new(),
            next_read_ctx: 1,
            reads_in_raft: HashMap::new(),
            transfers: Vec::new(),
            quota,
            no_space_alarm: None,
            last_snapshot_index,
            was_leader: false,
            stopping: false,
        }
    }

    pub(super) fn run(&mut self) {
        // A lone voter need not wait out an election timeout.
        let voters = self
            .shared
            .sm
            .read()
            .expect("state poisoned")
            .membership
            .voters();
        if voters == [self.cfg.id] {
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
                self.expire();
            }
            self.submit_reads();
            if let Err(e) = self.on_ready() {
                // The WAL failed: nothing more can be made durable.
                self.shared.fail(format!("raft loop stopping: {e}"));
                self.stopping = true;
            }
            self.answer_no_space();
            // etcd's gauge counts proposals from their hand-off to Raft to
            // their answer; ours also those waiting for a leader to hand to.
            let handed = self
                .shared
                .proposals
                .lock()
                .expect("proposals poisoned")
                .len();
            self.cfg
                .metrics
                .proposals_pending
                .store((handed + self.stalled.len()) as u64, Ordering::Relaxed);
            if self.shared.removed.load(Ordering::Acquire) || self.shared.stopped() {
                self.stopping = true;
            }
            if self.stopping {
                self.shutdown();
                if let Some(reason) = self.shared.failure.get() {
                    self.bridge.push(Item::Failed {
                        reason: reason.clone(),
                    });
                }
                return;
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Propose { request, reply } => {
                if self.applier_lags() {
                    let _ = reply.send(Err(errors::too_many_requests()));
                    return;
                }
                if !self.fits_quota(&request) {
                    self.refuse_no_space(Some(reply));
                    return;
                }
                let id = self.take_id();
                let request = InternalRequest {
                    id,
                    request: Some(request),
                };
                let deadline = Instant::now() + PROPOSAL_TIMEOUT;
                self.propose(Proposal::Entry(request), id, reply, deadline);
            }
            Msg::ConfChange { change, reply } => self.propose_conf_change(change, reply),
            Msg::ReadIndex { reply } => self.read_waiters.push(reply),
            Msg::TransferLeader { to, reply } => self.transfer_leader(to, reply),
            Msg::Raft(m) => {
                // Messages from members this node does not know (yet, or any
                // more) are refused by raft-rs; nothing to do about them.
                let _ = self.node.step(*m);
            }
            Msg::Unreachable(to) => self.node.report_unreachable(to),
            Msg::SnapshotStatus { to, ok } => {
                let status = if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.node.report_snapshot(to, status);
            }
            Msg::Removed => self.mark_removed(),
            Msg::NoSpace(waiters) => {
                self.refuse_no_space(None);
                match &mut self.no_space_alarm {
                    Some(alarm) => alarm.waiters.extend(waiters),
                    None => {
                        for w in waiters {
                            let _ = w.send(Err(errors::no_space()));
                        }
                    }
                }
            }
            // The turn that follows looks at what changed.
            Msg::Applied => {}
            Msg::Stop => self.stopping = true,
        }
    }

    /// etcd refuses proposals while its applier is far behind the commit
    /// index: the queue for the applier would only grow.
    fn applier_lags(&self) -> bool {
        let applied = self.shared.applied_index.load(Ordering::Acquire);
        self.node.raft.raft_log.committed > applied + MAX_APPLY_LAG
    }

    /// Proposal ids must never repeat, not even across restarts or between
    /// members: an id found in a replayed or replicated entry would otherwise
    /// answer somebody else's waiting caller (see [`crate::idutil`]).
    fn take_id(&mut self) -> u64 {
        self.shared.ids.next()
    }

    /// etcd's check before proposing: would `request` take this member's
    /// database to its quota?
    fn fits_quota(&self, request: &Request) -> bool {
        let cost = quota::cost(request);
        cost == 0 || {
            let size = self.shared.db_size.load(Ordering::Acquire);
            self.quota.allows(size as usize, cost)
        }
    }

    /// A write did not fit the quota: raise this member's NOSPACE alarm
    /// through Raft (once, however many writes are refused meanwhile) and
    /// answer `waiter` with "database space exceeded" when it is applied.
    fn refuse_no_space(&mut self, waiter: Option<ProposalReply>) {
        if let Some(alarm) = &mut self.no_space_alarm {
            alarm.waiters.extend(waiter);
            return;
        }
        let raised = {
            let sm = self.shared.sm.read().expect("state poisoned");
            sm.alarms
                .iter()
                .any(|a| a.member_id == self.cfg.id && a.alarm == AlarmType::Nospace as i32)
        };
        if raised {
            if let Some(w) = waiter {
                let _ = w.send(Err(errors::no_space()));
            }
            return;
        }
        log::warn!(
            "message exceeded backend quota; raising alarm (quota-size-bytes {})",
            self.quota.limit
        );
        let id = self.take_id();
        let request = InternalRequest {
            id,
            request: Some(Request::Alarm(AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: self.cfg.id,
                alarm: AlarmType::Nospace as i32,
            })),
        };
        let (reply, applied) = oneshot::channel();
        let deadline = Instant::now() + PROPOSAL_TIMEOUT;
        self.propose(Proposal::Entry(request), id, reply, deadline);
        self.no_space_alarm = Some(NoSpaceAlarm {
            applied,
            waiters: waiter.into_iter().collect(),
        });
    }

    /// Answers the writes refused for space once the alarm is applied (or
    /// could not be: they are refused all the same).
    fn answer_no_space(&mut self) {
        let Some(alarm) = &mut self.no_space_alarm else {
            return;
        };
        if let Err(oneshot::error::TryRecvError::Empty) = alarm.applied.try_recv() {
            return;
        }
        for w in std::mem::take(&mut alarm.waiters) {
            let _ = w.send(Err(errors::no_space()));
        }
        self.no_space_alarm = None;
    }

    fn leader_known(&self) -> bool {
        self.node.raft.leader_id != 0
    }

    /// Proposes on the leader, or through it: raft-rs forwards a follower's
    /// proposal to the leader, and the entry comes back here to be applied
    /// like any other, answering the caller waiting on its id.
    fn propose(&mut self, proposal: Proposal, id: u64, reply: ProposalReply, deadline: Instant) {
        if !self.leader_known() {
            self.stalled.push(Stalled {
                proposal,
                id,
                reply,
                deadline,
            });
            return;
        }
        let result = match &proposal {
            Proposal::Entry(r) => self.node.propose(vec![], r.encode_to_vec()),
            Proposal::Conf(cc) => self.node.propose_conf_change(vec![], cc.clone()),
        };
        match result {
            Ok(()) => {
                self.shared
                    .proposals
                    .lock()
                    .expect("proposals poisoned")
                    .insert(id, reply);
                self.deadlines.insert((deadline, id));
            }
            Err(_) => self.stalled.push(Stalled {
                proposal,
                id,
                reply,
                deadline,
            }),
        }
    }

    fn propose_conf_change(&mut self, change: Change, reply: ProposalReply) {
        let checked = {
            let sm = self.shared.sm.read().expect("state poisoned");
            sm.membership.check(&change).map(|_| match &change {
                Change::Add(m) => m.clone(),
                Change::Remove(id) | Change::Promote(id) => {
                    sm.membership.get(*id).cloned().unwrap_or_default()
                }
            })
        };
        let member = match checked {
            Ok(m) => m,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        if let Change::Promote(id) = change {
            if let Err(e) = self.learner_ready(id) {
                let _ = reply.send(Err(e));
                return;
            }
        }
        let id = self.take_id();
        let mut cc = ConfChange {
            node_id: member.id,
            ..Default::default()
        };
        cc.set_change_type(match &change {
            Change::Add(m) if m.is_learner => ConfChangeType::AddLearnerNode,
            Change::Add(_) | Change::Promote(_) => ConfChangeType::AddNode,
            Change::Remove(_) => ConfChangeType::RemoveNode,
        });
        cc.context = ConfChangeContext {
            id,
            member: Some(member),
        }
        .encode_to_vec()
        .into();
        let deadline = Instant::now() + PROPOSAL_TIMEOUT;
        self.propose(Proposal::Conf(cc), id, reply, deadline);
    }

    /// etcd's check before a promotion: only the leader knows how far the
    /// learner got, and it must hold most of the leader's log.
    fn learner_ready(&self, id: u64) -> Result<(), Status> {
        if self.node.raft.state != StateRole::Leader {
            return Err(errors::not_leader());
        }
        let prs = self.node.raft.prs();
        let leader_match = prs.get(self.cfg.id).map(|p| p.matched).unwrap_or_default();
        let learner_match = prs.get(id).map(|p| p.matched).unwrap_or_default();
        if (learner_match as f64) < (leader_match as f64) * LEARNER_READY_PERCENT {
            return Err(errors::failed_precondition(errors::LEARNER_NOT_READY));
        }
        Ok(())
    }

    fn transfer_leader(&mut self, to: u64, reply: TransferReply) {
        if self.node.raft.state != StateRole::Leader {
            let _ = reply.send(Err(errors::not_leader()));
            return;
        }
        let voter = {
            let sm = self.shared.sm.read().expect("state poisoned");
            sm.membership.voters().contains(&to)
        };
        if !voter {
            let _ = reply.send(Err(errors::failed_precondition(
                errors::BAD_LEADER_TRANSFEREE,
            )));
            return;
        }
        if to == self.cfg.id {
            let _ = reply.send(Ok(()));
            return;
        }
        self.node.transfer_leader(to);
        self.transfers.push(Transfer {
            to,
            reply,
            deadline: Instant::now() + PROPOSAL_TIMEOUT,
        });
    }

    /// Fails whatever waited too long; asks again for reads with no answer.
    fn expire(&mut self) {
        let now = Instant::now();
        let (expired, kept): (Vec<_>, Vec<_>) =
            self.stalled.drain(..).partition(|s| s.deadline <= now);
        self.stalled = kept;
        let failed = &self.cfg.metrics.proposals_failed;
        for s in expired {
            failed.fetch_add(1, Ordering::Relaxed);
            let _ = s.reply.send(Err(errors::timed_out()));
        }
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let late = self
                .shared
                .proposals
                .lock()
                .expect("proposals poisoned")
                .remove(&id);
            if let Some(reply) = late {
                failed.fetch_add(1, Ordering::Relaxed);
                let _ = reply.send(Err(errors::timed_out()));
            }
        }
        let stale: Vec<u64> = self
            .reads_in_raft
            .iter()
            .filter(|(_, b)| now.duration_since(b.asked) >= READ_RETRY)
            .map(|(ctx, _)| *ctx)
            .collect();
        for ctx in stale {
            let Some(batch) = self.reads_in_raft.remove(&ctx) else {
                continue;
            };
            if batch.deadline <= now {
                for w in batch.waiters {
                    let _ = w.send(Err(errors::timed_out()));
                }
            } else {
                self.ask_read_index(batch.waiters, batch.deadline);
            }
        }
        let (done, kept): (Vec<_>, Vec<_>) =
            self.transfers.drain(..).partition(|t| t.deadline <= now);
        self.transfers = kept;
        for t in done {
            let _ = t.reply.send(Err(Status::unavailable(
                "etcdserver: request timed out, leader transfer took too long",
            )));
        }
    }

    /// One ReadIndex request to Raft covers every read that arrived this turn.
    fn submit_reads(&mut self) {
        if self.read_waiters.is_empty() {
            return;
        }
        // A follower's ReadIndex is forwarded to the leader by raft-rs; with no
        // leader at all there is nobody to confirm the read.
        if !self.leader_known() {
            for w in self.read_waiters.drain(..) {
                let _ = w.send(Err(errors::no_leader()));
            }
            return;
        }
        let waiters = std::mem::take(&mut self.read_waiters);
        self.ask_read_index(waiters, Instant::now() + READ_TIMEOUT);
    }

    fn ask_read_index(&mut self, waiters: Vec<ReadReply>, deadline: Instant) {
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        self.reads_in_raft.insert(
            ctx,
            ReadBatch {
                waiters,
                asked: Instant::now(),
                deadline,
            },
        );
        self.node.read_index(ctx.to_be_bytes().to_vec());
    }

    fn send(&self, msgs: Vec<Message>) {
        if let Some(t) = &self.transport {
            t.send(msgs);
        }
    }

    fn on_ready(&mut self) -> Result<(), String> {
        if !self.node.has_ready() {
            self.maybe_snapshot()?;
            return Ok(());
        }
        let mut rd = self.node.ready();
        if let Some(ss) = rd.ss() {
            let previous = self.shared.leader_id.swap(ss.leader_id, Ordering::AcqRel);
            if ss.leader_id != previous && ss.leader_id != 0 {
                self.shared.leader_changes.fetch_add(1, Ordering::AcqRel);
            }
            let is_leader = ss.raft_state == StateRole::Leader;
            if is_leader != self.was_leader {
                self.was_leader = is_leader;
                // A new leader's lessor is promoted by the applier, once the
                // previous term's entries are applied.
                if !is_leader {
                    self.shared.lessor.demote();
                }
            }
            self.finish_transfers(ss.leader_id);
        }
        // A leader may send before its own write is durable (Raft allows it,
        // and it overlaps the fsync with the followers' work).
        self.send(rd.take_messages());

        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot().clone())?;
        }
        self.hand_off(rd.take_committed_entries());

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
                .mem
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
            if let Some(batch) = self.reads_in_raft.remove(&ctx) {
                // The readers wait for the applier to reach the index.
                for w in batch.waiters {
                    let _ = w.send(Ok(rs.index));
                }
            }
        }
        // A follower's acks promise durability: only after the fsync.
        self.send(rd.take_persisted_messages());

        let mut light = self.node.advance(rd);
        if let Some(commit) = light.commit_index() {
            let mut hs = self.node.store().hard_state();
            hs.commit = commit;
            // Rides along with the next batch's fsync; losing it only means
            // re-committing already-durable entries after a restart.
            self.persist_hard_state(hs);
        }
        self.send(light.take_messages());
        self.hand_off(light.take_committed_entries());
        self.node.advance_apply();

        let li = self.node.raft.raft_log.last_index();
        self.shared.last_index.store(li, Ordering::Release);
        self.shared
            .commit_index
            .store(self.node.raft.raft_log.committed, Ordering::Release);
        self.retry_stalled();
        self.maybe_snapshot()
    }

    /// Hands committed entries to the applier. A batch with a configuration
    /// change is waited for, and the changes the applier accepted are applied
    /// to raft-rs, in log order.
    fn hand_off(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        let has_conf = entries
            .iter()
            .any(|e| e.get_entry_type() == EntryType::EntryConfChange);
        if !has_conf {
            let _ = self.applier.send(Job::Apply {
                entries,
                conf: None,
            });
            return;
        }
        let (tx, rx) = mpsc::channel();
        let _ = self.applier.send(Job::Apply {
            entries,
            conf: Some(tx),
        });
        // Nothing comes back if the applier stopped; the loop then stops too.
        for cc in rx.recv().unwrap_or_default() {
            if let Err(e) = self.node.apply_conf_change(&cc) {
                log::error!("raft refused conf change for node {:x}: {e}", cc.node_id);
            }
        }
    }

    fn finish_transfers(&mut self, leader: u64) {
        let (done, kept): (Vec<_>, Vec<_>) = self.transfers.drain(..).partition(|t| t.to == leader);
        self.transfers = kept;
        for t in done {
            let _ = t.reply.send(Ok(()));
        }
    }

    fn persist_hard_state(&mut self, hs: HardState) {
        self.wal
            .set_hard_state(&hs.write_to_bytes().expect("hard state encodes"));
        self.shared.term.store(hs.term, Ordering::Release);
        self.node.mut_store().mem.wl().set_hardstate(hs);
    }

    /// Takes in the leader's snapshot: this member was too far behind for the
    /// log the leader still holds. The transport received the leader's
    /// backend into `{index}.snap.db` before raft-rs saw the message; the WAL
    /// mark makes a restart finish the swap if the applier could not.
    fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), String> {
        let (index, term) = (snap.get_metadata().index, snap.get_metadata().term);
        if snap.get_data() != SNAPSHOT_DATA {
            return Err(format!(
                "the leader's snapshot at index {index} is not a backend snapshot"
            ));
        }
        self.wal.mark_snapshot(index, term);
        self.wal.sync().map_err(|e| e.to_string())?;
        self.node
            .mut_store()
            .mem
            .wl()
            .apply_snapshot(snap)
            .map_err(|e| format!("raft: {e}"))?;
        let _ = self.applier.send(Job::InstallSnapshot { index });
        self.last_snapshot_index = index;
        log::info!("applying the leader's snapshot at index {index} (term {term})");
        Ok(())
    }

    fn mark_removed(&mut self) {
        if !self.shared.removed.swap(true, Ordering::AcqRel) {
            log::warn!("the member has been permanently removed from the cluster");
            self.bridge.push(Item::Removed);
        }
    }

    fn retry_stalled(&mut self) {
        if self.stalled.is_empty() || !self.leader_known() {
            return;
        }
        for s in std::mem::take(&mut self.stalled) {
            self.propose(s.proposal, s.id, s.reply, s.deadline);
        }
    }

    /// Every `snapshot_count` entries the backend holds durably: a snapshot
    /// mark in the WAL (the backend is the snapshot's data), the WAL segments
    /// before it released, and raft-rs's in-memory log compacted.
    fn maybe_snapshot(&mut self) -> Result<(), String> {
        let (durable, term) = self.shared.durable();
        if durable < self.last_snapshot_index + self.cfg.snapshot_count {
            return Ok(());
        }
        self.wal.mark_snapshot(durable, term);
        self.wal.sync().map_err(|e| e.to_string())?;
        self.wal.release_to(durable).map_err(|e| e.to_string())?;
        let keep_from = durable.saturating_sub(SNAPSHOT_CATCH_UP_ENTRIES).max(1);
        let _ = self.node.mut_store().mem.wl().compact(keep_from);
        self.last_snapshot_index = durable;
        log::info!("saved snapshot at index {durable}");
        Ok(())
    }

    fn shutdown(&mut self) {
        // Whatever is durable stays; nobody waits on what was not.
        let _ = self.wal.sync();
        // The applier finishes what it was handed, then answers the rest.
        let _ = self.applier.send(Job::Stop);
        for s in self.stalled.drain(..) {
            let _ = s.reply.send(Err(errors::stopped()));
        }
        for w in self.read_waiters.drain(..) {
            let _ = w.send(Err(errors::stopped()));
        }
        for (_, b) in self.reads_in_raft.drain() {
            for w in b.waiters {
                let _ = w.send(Err(errors::stopped()));
            }
        }
        for t in self.transfers.drain(..) {
            let _ = t.reply.send(Err(errors::stopped()));
        }
        if let Some(alarm) = self.no_space_alarm.take() {
            for w in alarm.waiters {
                let _ = w.send(Err(errors::stopped()));
            }
        }
        if let Some(t) = &self.transport {
            t.stop();
        }
        self.shared.stopped.store(true, Ordering::Release);
    }
}
