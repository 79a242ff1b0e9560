//! The applier: applies committed entries to the state machine and its
//! backend, off the Raft loop (etcd's apply goroutine).
//!
//! The Raft loop hands it batches of committed entries in log order; it
//! applies every batch queued at once in one backend transaction, commits it
//! (visible to readers, not yet fsynced), hands the events to the watch hub
//! (which never makes it wait), then answers the proposers. Between batches it does the slow work that must
//! never stall Raft: durable backend commits every batch interval, the
//! physical half of compactions a batch at a time, installing a leader's
//! snapshot, defragmenting.
//!
//! After each batch it hands the lessor the lease changes the batch applied,
//! and promotes it when the batch holds this leader's first entry of its term
//! (see [`crate::lessor`]).
//!
//! A backend failure stops the member (etcd's fail-stop): nothing more is
//! applied, and the Raft loop stops when it sees the member stopped.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, Entry, EntryType};
use redb::Durability;
use tokio::sync::oneshot;
use tonic::Status;

use super::{Applied, Msg, NodeConfig, ProposalReply, Shared};
use crate::backend::{Backend, BackendError};
use crate::errors;
use crate::membership::Change;
use crate::mvcc::PrevValues;
use crate::pb::internal::internal_request::Request;
use crate::pb::internal::{ConfChangeContext, InternalRequest, MemberRecord};
use crate::quota::{self, Quota};
use crate::state_machine::{Outcome, StateMachine};
use crate::transport::Transport;
use crate::watch::WatchHub;

/// etcd's compaction batch limit: versions looked at per compaction step.
const COMPACTION_BATCH: usize = 1000;
/// etcd's pause between compaction steps, so writes interleave.
const COMPACTION_PAUSE: Duration = Duration::from_millis(10);

/// Work for the applier, in log order.
pub(super) enum Job {
    /// Committed entries. With `conf` set the batch holds configuration
    /// changes, and the Raft loop waits for the ones that were accepted, to
    /// apply them to raft-rs in the same order.
    Apply {
        entries: Vec<Entry>,
        conf: Option<mpsc::Sender<Vec<ConfChange>>>,
    },
    /// The leader's backend, received into `{index}.snap.db`, replaces ours.
    InstallSnapshot {
        index: u64,
    },
    Defragment {
        reply: oneshot::Sender<Result<(u64, u64), Status>>,
    },
    Stop,
}

pub(super) struct Applier {
    cfg: Arc<NodeConfig>,
    shared: Arc<Shared>,
    watch: Arc<WatchHub>,
    transport: Option<Arc<Transport>>,
    /// The Raft loop's inbox: NOSPACE alarms to raise, progress to act on.
    raft: mpsc::Sender<Msg>,
    jobs: mpsc::Receiver<Job>,
    quota: Quota,
    /// Entries up to here were committed before this start: re-applying
    /// them must not raise alarms again (one may have been disarmed since).
    replayed_until: u64,
    /// Compactions asked for with `physical: true`: their callers are
    /// answered once the versions are removed, as etcd answers them.
    physical_waiters: Vec<(i64, ProposalReply, Result<Applied, Status>)>,
    /// Entries applied since the last durable commit, and when that was.
    since_durable: u64,
    last_durable: Instant,
    last_compaction_step: Instant,
}

/// Why the applier stopped: a failure that stops the member.
struct Fatal(String);

impl From<BackendError> for Fatal {
    fn from(e: BackendError) -> Fatal {
        Fatal(format!("failed to apply to the backend: {e}"))
    }
}

impl Applier {
    pub(super) fn new(
        cfg: Arc<NodeConfig>,
        shared: Arc<Shared>,
        watch: Arc<WatchHub>,
        transport: Option<Arc<Transport>>,
        raft: mpsc::Sender<Msg>,
        jobs: mpsc::Receiver<Job>,
        replayed_until: u64,
    ) -> Applier {
        let quota = Quota::new(cfg.quota_backend_bytes);
        Applier {
            cfg,
            shared,
            watch,
            transport,
            raft,
            jobs,
            quota,
            replayed_until,
            physical_waiters: Vec::new(),
            since_durable: 0,
            last_durable: Instant::now(),
            last_compaction_step: Instant::now(),
        }
    }

    pub(super) fn run(&mut self) {
        if let Err(Fatal(reason)) = self.work() {
            self.shared.fail(reason);
            // The Raft loop may be asleep: wake it to see the member stopped.
            let _ = self.raft.send(Msg::Applied);
        }
        self.shutdown();
    }

    fn work(&mut self) -> Result<(), Fatal> {
        let mut next = None;
        loop {
            let job = match next.take() {
                Some(job) => Some(job),
                None => match self.jobs.recv_timeout(self.idle_wait()) {
                    Ok(job) => Some(job),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return self.commit_durably(),
                },
            };
            match job {
                Some(Job::Apply { entries, conf }) => next = self.apply_queued(entries, conf)?,
                Some(Job::InstallSnapshot { index }) => self.install_snapshot(index)?,
                Some(Job::Defragment { reply }) => {
                    let _ = reply.send(self.defragment());
                }
                Some(Job::Stop) => return self.commit_durably(),
                None => {}
            }
            if self.durable_commit_due() {
                self.commit_durably()?;
            }
            self.compaction_step()?;
        }
    }

    /// How long to wait for work before doing what is due anyway.
    fn idle_wait(&self) -> Duration {
        let mut wait = Duration::from_secs(1);
        if self.since_durable > 0 {
            wait = wait.min(
                self.cfg
                    .backend_batch_interval
                    .saturating_sub(self.last_durable.elapsed()),
            );
        }
        if self.compaction_pending() {
            wait = wait.min(COMPACTION_PAUSE.saturating_sub(self.last_compaction_step.elapsed()));
        }
        wait
    }

    fn compaction_pending(&self) -> bool {
        !self
            .shared
            .sm
            .read()
            .expect("state poisoned")
            .compactions
            .is_empty()
    }

    /// Applies this batch and every other batch already queued behind it in
    /// one backend transaction (up to a configuration change, whose batch
    /// the Raft loop waits for). Returns the job that ended the run, if any.
    fn apply_queued(
        &mut self,
        mut entries: Vec<Entry>,
        mut conf: Option<mpsc::Sender<Vec<ConfChange>>>,
    ) -> Result<Option<Job>, Fatal> {
        let mut next = None;
        while conf.is_none() {
            match self.jobs.try_recv() {
                Ok(Job::Apply {
                    entries: more,
                    conf: c,
                }) => {
                    entries.extend(more);
                    conf = c;
                }
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        self.apply(entries, conf)?;
        Ok(next)
    }

    fn apply(
        &mut self,
        entries: Vec<Entry>,
        conf: Option<mpsc::Sender<Vec<ConfChange>>>,
    ) -> Result<(), Fatal> {
        if entries.is_empty() {
            if let Some(c) = conf {
                let _ = c.send(vec![]);
            }
            return Ok(());
        }
        let term = self.shared.term();
        let mut events = Vec::new();
        let mut answers: Vec<(ProposalReply, Result<Applied, Status>)> = Vec::new();
        let mut accepted = Vec::new();
        let mut membership_changed = false;
        let mut raise_no_space = false;
        let mut over_quota = Vec::new();
        let mut promote_lessor = false;
        let count = entries.len() as u64;
        let mut sm = self.shared.sm.write().expect("state poisoned");
        // Read under the state's lock: a watcher that wants prev_kv is
        // counted before it reads the revision it starts after.
        let prev_values = if self.watch.wants_prev_kv() {
            PrevValues::InEvents
        } else {
            PrevValues::AsAsked
        };
        let tx = sm.backend.begin_write()?;
        {
            let mut tables = tx.tables()?;
            let mut last = None;
            for entry in entries {
                if entry.index <= sm.applied_index {
                    // Already part of the backend (a snapshot, or entries the
                    // backend had made durable before a restart).
                    continue;
                }
                last = Some((entry.index, entry.term));
                match entry.get_entry_type() {
                    EntryType::EntryNormal if !entry.data.is_empty() => {
                        let req = match InternalRequest::decode(entry.data.as_ref()) {
                            Ok(r) => r,
                            Err(e) => {
                                // Every member decodes the same bytes, so
                                // skipping keeps them identical; it can only
                                // come from a bug.
                                log::error!("entry {} is not an InternalRequest: {e}", entry.index);
                                continue;
                            }
                        };
                        let Some(request) = req.request.as_ref() else {
                            continue;
                        };
                        let cost = quota::cost(request);
                        let size = sm.db_size() + tx.pending_growth();
                        let fits = self.quota.allows(size as usize, cost);
                        let capped = sm.no_space();
                        let mut result = sm.apply(&mut tables, prev_values, request, &mut events);
                        if let Some(e) = tx.failure() {
                            return Err(e.into());
                        }
                        if matches!(result, Ok(Outcome::Membership)) {
                            membership_changed = true;
                        }
                        let revision = sm.store.current_revision();
                        let reply = self.take_waiter(req.id);
                        if !fits && result.is_ok() {
                            // etcd's quota applier: a write that raced past
                            // the check before proposing is applied on every
                            // member, but answered as refused, and raises the
                            // alarm.
                            result = Err(errors::no_space());
                            if !capped && entry.index > self.replayed_until {
                                over_quota.extend(reply);
                                raise_no_space = true;
                                continue;
                            }
                        }
                        if let Some(reply) = reply {
                            let answer = result.map(|outcome| Applied {
                                outcome,
                                revision,
                                term,
                            });
                            match request {
                                Request::Compaction(c) if c.physical && answer.is_ok() => {
                                    self.physical_waiters.push((c.revision, reply, answer))
                                }
                                _ => answers.push((reply, answer)),
                            }
                        }
                    }
                    EntryType::EntryConfChange => {
                        let Some((cc, ctx)) = decode_conf_change(&entry) else {
                            continue;
                        };
                        let member = ctx.member.clone().unwrap_or_default();
                        let change = match cc.get_change_type() {
                            ConfChangeType::RemoveNode => Change::Remove(cc.node_id),
                            ConfChangeType::AddNode
                                if sm.membership.get(cc.node_id).is_some_and(|m| m.is_learner) =>
                            {
                                Change::Promote(cc.node_id)
                            }
                            _ => Change::Add(member),
                        };
                        let result = sm.apply_conf_change(&mut tables, &change);
                        if let Some(e) = tx.failure() {
                            return Err(e.into());
                        }
                        let result = result.map(|()| {
                            accepted.push(cc);
                            membership_changed = true;
                            Applied {
                                outcome: Outcome::Membership,
                                revision: sm.store.current_revision(),
                                term,
                            }
                        });
                        if let Some(reply) = self.take_waiter(ctx.id) {
                            answers.push((reply, result));
                        }
                    }
                    // A new leader's empty entry: everything of the previous
                    // term is applied, so its lessor takes over (etcd).
                    EntryType::EntryNormal => {
                        promote_lessor |= self.shared.leader() == self.cfg.id;
                    }
                    _ => {}
                }
            }
            if let Some((index, term)) = last {
                sm.set_applied(&tables, index, term)?;
            }
        }
        tx.commit(Durability::None)?;
        let applied = sm.applied_index;
        self.shared.db_size.store(sm.db_size(), Ordering::Release);
        let lease_changes = std::mem::take(&mut sm.lease_changes);
        let revision = sm.store.current_revision();
        drop(sm);
        let now = Instant::now();
        self.shared.lessor.apply(&lease_changes, now);
        if promote_lessor {
            let (shared, me) = (&self.shared, self.cfg.id);
            shared
                .lessor
                .promote(self.cfg.election_timeout(), now, || shared.leader() == me);
        }
        self.shared.revision.store(revision, Ordering::Release);
        self.shared.set_applied(applied);
        self.since_durable += count;
        // The hub sees the batch before anyone hears of it, as in etcd: a
        // client that wrote and then asks its watch stream for progress
        // gets a revision at or past its write.
        self.watch
            .notify(events, prev_values == PrevValues::InEvents);
        if let Some(c) = conf {
            let _ = c.send(accepted);
        }
        for (reply, answer) in answers {
            let _ = reply.send(answer);
        }
        if membership_changed {
            self.membership_changed();
        }
        if raise_no_space {
            let _ = self.raft.send(Msg::NoSpace(over_quota));
        }
        Ok(())
    }

    fn take_waiter(&self, id: u64) -> Option<ProposalReply> {
        self.shared
            .proposals
            .lock()
            .expect("proposals poisoned")
            .remove(&id)
    }

    fn durable_commit_due(&self) -> bool {
        self.since_durable > 0
            && (self.since_durable >= self.cfg.backend_batch_limit
                || self.last_durable.elapsed() >= self.cfg.backend_batch_interval)
    }

    /// Makes every commit so far survive a crash (an empty transaction
    /// committed with an fsync), then tells the Raft loop, which may release
    /// the WAL up to it.
    fn commit_durably(&mut self) -> Result<(), Fatal> {
        let (backend, index, term) = {
            let sm = self.shared.sm.read().expect("state poisoned");
            (sm.backend.clone(), sm.applied_index, sm.applied_term)
        };
        if self.since_durable > 0 {
            // etcd_disk_backend_commit_duration_seconds: etcd times its
            // batched bbolt commits, whose fsync is what takes time; ours
            // are these.
            let started = Instant::now();
            backend.begin_write()?.commit(Durability::Immediate)?;
            self.cfg.metrics.backend_commit.observe(started.elapsed());
        }
        self.since_durable = 0;
        self.last_durable = Instant::now();
        if self.shared.durable() != (index, term) {
            self.shared.set_durable(index, term);
            let _ = self.raft.send(Msg::Applied);
        }
        Ok(())
    }

    /// One step of the oldest compaction still removing versions, unless one
    /// ran less than a pause ago.
    fn compaction_step(&mut self) -> Result<(), Fatal> {
        if self.last_compaction_step.elapsed() < COMPACTION_PAUSE {
            return Ok(());
        }
        let (backend, mut job) = {
            let mut sm = self.shared.sm.write().expect("state poisoned");
            match sm.compactions.pop_front() {
                Some(job) => (sm.backend.clone(), job),
                None => return Ok(()),
            }
        };
        let tx = backend.begin_write()?;
        let done = {
            let mut tables = tx.tables()?;
            let done = job
                .step(&mut tables.key, COMPACTION_BATCH)
                .map_err(|e| Fatal(format!("compaction at {}: {e}", job.rev)))?;
            if done {
                tables.set_finished_compaction(job.rev)?;
            }
            done
        };
        tx.commit(Durability::None)?;
        self.since_durable += 1;
        self.last_compaction_step = Instant::now();
        if done {
            log::info!("finished scheduled compaction at revision {}", job.rev);
            let (finished, waiting) = std::mem::take(&mut self.physical_waiters)
                .into_iter()
                .partition(|(rev, _, _)| *rev <= job.rev);
            self.physical_waiters = waiting;
            for (_, reply, answer) in finished {
                let _ = reply.send(answer);
            }
        } else {
            let mut sm = self.shared.sm.write().expect("state poisoned");
            sm.compactions.push_front(job);
        }
        Ok(())
    }

    /// Replaces the backend with the one the leader sent, received into
    /// `member/snap/{index}.snap.db` before Raft saw the snapshot.
    fn install_snapshot(&mut self, index: u64) -> Result<(), Fatal> {
        let started = Instant::now();
        let (backend, cluster_id) = {
            let sm = self.shared.sm.read().expect("state poisoned");
            (sm.backend.clone(), sm.membership.cluster_id)
        };
        let received = super::recovery::received_snapshot_path(backend.path(), index);
        let new_backend = backend.replace_with(&received).map_err(|e| {
            Fatal(format!(
                "installing the leader's snapshot at index {index}: {e}"
            ))
        })?;
        let state = StateMachine::load(new_backend, cluster_id)?;
        if state.applied_index != index {
            return Err(Fatal(format!(
                "the leader's snapshot at index {index} holds consistent index {}",
                state.applied_index
            )));
        }
        let term = state.applied_term;
        self.shared
            .db_size
            .store(state.db_size(), Ordering::Release);
        self.shared
            .lessor
            .recover(state.leases.iter_full(), Instant::now());
        let revision = state.store.current_revision();
        *self.shared.sm.write().expect("state poisoned") = state;
        self.shared.revision.store(revision, Ordering::Release);
        self.shared.set_applied(index);
        self.since_durable = 0;
        self.shared.set_durable(index, term);
        let _ = self.raft.send(Msg::Applied);
        log::info!(
            "installed the leader's snapshot at index {index} (term {term}) in {:?}",
            started.elapsed()
        );
        self.membership_changed();
        // Watchers on this member must still see every revision once: they
        // read what the snapshot skipped from the new backend.
        self.watch.snapshot_installed();
        Ok(())
    }

    /// Defragment: the backend rewritten into a compact copy (nothing is
    /// applied meanwhile, reads go on), then swapped in. Returns the file
    /// size (before, after).
    fn defragment(&mut self) -> Result<(u64, u64), Status> {
        let backend: Backend = self
            .shared
            .sm
            .read()
            .expect("state poisoned")
            .backend
            .clone();
        let before = backend.sizes().file();
        let copy = backend
            .defragment_copy()
            .map_err(|e| Status::internal(format!("etcdserver: defragment: {e}")))?;
        let mut sm = self.shared.sm.write().expect("state poisoned");
        match sm.backend.replace_with(&copy) {
            Ok(b) => sm.backend = b,
            Err(e) => {
                drop(sm);
                // The file is half replaced: nothing can be trusted now.
                self.shared
                    .fail(format!("failed to install the defragmented backend: {e}"));
                let _ = self.raft.send(Msg::Applied);
                return Err(errors::stopped());
            }
        }
        let after = sm.backend.sizes().file();
        self.shared.db_size.store(after, Ordering::Release);
        Ok((before, after))
    }

    /// Points the transport at the current members and publishes this
    /// member's role; reports it once it has been removed.
    fn membership_changed(&mut self) {
        let (members, removed, learner) = {
            let sm = self.shared.sm.read().expect("state poisoned");
            let members: Vec<MemberRecord> = sm.membership.members().cloned().collect();
            let learner = sm.membership.get(self.cfg.id).is_some_and(|m| m.is_learner);
            (members, sm.membership.is_removed(self.cfg.id), learner)
        };
        self.shared.learner.store(learner, Ordering::Release);
        if let Some(t) = &self.transport {
            t.set_peers(&members);
        }
        if removed {
            let _ = self.raft.send(Msg::Removed);
        }
    }

    /// Answers whoever still waits for a proposal: the member is stopping.
    fn shutdown(&mut self) {
        for (_, reply, _) in self.physical_waiters.drain(..) {
            let _ = reply.send(Err(errors::stopped()));
        }
        let waiting: Vec<ProposalReply> = self
            .shared
            .proposals
            .lock()
            .expect("proposals poisoned")
            .drain()
            .map(|(_, reply)| reply)
            .collect();
        for reply in waiting {
            let _ = reply.send(Err(errors::stopped()));
        }
        self.shared
            .outgoing_snapshots
            .lock()
            .expect("poisoned")
            .clear();
    }
}

pub(super) fn decode_conf_change(entry: &Entry) -> Option<(ConfChange, ConfChangeContext)> {
    let cc = match ConfChange::parse_from_bytes(&entry.data) {
        Ok(cc) => cc,
        Err(e) => {
            log::error!("entry {} is not a ConfChange: {e}", entry.index);
            return None;
        }
    };
    match ConfChangeContext::decode(cc.context.as_ref()) {
        Ok(ctx) => Some((cc, ctx)),
        Err(e) => {
            log::error!(
                "conf change at {} has no readable context: {e}",
                entry.index
            );
            None
        }
    }
}
