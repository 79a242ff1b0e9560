//! The lessor: when leases expire (etcd's server/lease lessor).
//!
//! Which leases exist, their granted TTL and their checkpointed remaining
//! TTL are replicated state ([`crate::lease_table`]); the state machine
//! records every change it applies and the applier hands them here after
//! each batch. When a lease expires is not replicated: only the leader (the
//! "primary" lessor) keeps deadlines, in a [`LeaseQueue`]. It renews them on
//! keep-alive and revokes, through Raft, the leases whose deadline passed
//! ([`expiry`]). A member that becomes leader gives every lease its remaining
//! TTL plus one election timeout from when it has applied the entries of
//! the previous term (etcd's Promote), so a leader change never expires a
//! lease early; a member that stops leading forgets its deadlines (Demote).
//!
//! With checkpointing (`--experimental-enable-lease-checkpoint`) the leader
//! also records, every checkpoint interval, what is left of each long lease
//! through Raft (`LeaseCheckpoint` entries), so a new leader, or the cluster
//! after a restart, continues from there instead of the full TTL; the first
//! keep-alive after a checkpoint clears it again.
//!
//! Every operation on one lease is O(log N); nothing walks the whole table
//! except a promotion (and LeaseLeases, which lists them all).

pub mod expiry;
pub mod leader;
mod queue;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

pub use queue::LeaseQueue;

/// etcd's MaxLeaseTTL (about 285 years).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// etcd's leaseRevokeRate: leases revoked per second, at most.
pub const REVOKE_RATE: usize = 1000;
/// How often expired leases and due checkpoints are looked for (etcd's
/// lessor run loop).
pub const CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// An expired lease whose revocation did not go through is tried again
/// after this long (etcd's defaultExpiredleaseRetryInterval).
pub const EXPIRED_RETRY: Duration = Duration::from_secs(3);
/// etcd's leaseCheckpointRate and maxLeaseCheckpointBatchSize.
pub const CHECKPOINT_RATE: usize = 1000;
pub const CHECKPOINT_BATCH: usize = 1000;
/// etcd's defaultLeaseCheckpointInterval.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
pub struct LessorConfig {
    /// Shorter TTLs are raised to this (seconds).
    pub min_ttl: i64,
    /// Checkpoint remaining TTLs this often (None: checkpointing is off).
    pub checkpoint_interval: Option<Duration>,
}

impl LessorConfig {
    /// etcd's minimum lease TTL: one and a half election timeouts (counted
    /// in whole ticks), rounded up to whole seconds.
    pub fn min_ttl_for(election_ticks: usize, heartbeat: Duration) -> i64 {
        let ticks = (3 * election_ticks / 2) as u32;
        let min = heartbeat * ticks;
        (min.as_millis() as i64 + 999) / 1000
    }
}

/// A change to the replicated lease table, as the state machine applied it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseChange {
    Granted { id: i64, ttl: i64 },
    Revoked(i64),
    Checkpointed { id: i64, remaining_ttl: i64 },
}

/// What became of an expired lease a keep-alive waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// Revoked: the keep-alive answers TTL 0.
    Revoked,
    /// This lessor stopped being the primary first: ask the new one.
    Demoted,
}

/// The answer of [`Lessor::renew`].
#[derive(Debug)]
pub enum Renewal {
    /// Renewed; the granted TTL.
    Renewed(i64),
    NotFound,
    /// Another member's lessor keeps the deadlines (or none does yet).
    NotPrimary,
    /// The lease expired and waits to be revoked: the keep-alive is
    /// answered once that happened (etcd answers it TTL 0 only then).
    Expired(oneshot::Receiver<Revocation>),
    /// The lease has a checkpointed remaining TTL, which the renewal must
    /// first clear through Raft; then renew with `checkpoint_cleared`.
    ClearCheckpoint,
}

/// What the leader tells TimeToLive about a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseView {
    pub granted_ttl: i64,
    /// Whole seconds left, truncated toward zero (negative once overdue).
    pub remaining: i64,
}

#[derive(Debug)]
struct Lease {
    ttl: i64,
    /// The last checkpointed remaining TTL; 0 when none.
    remaining_ttl: i64,
    /// When it expires; None ("forever") unless this lessor is primary.
    expiry: Option<Instant>,
    /// Keep-alives waiting for its revocation.
    waiters: Vec<oneshot::Sender<Revocation>>,
}

impl Lease {
    fn new(ttl: i64, remaining_ttl: i64) -> Lease {
        Lease {
            ttl,
            remaining_ttl,
            expiry: None,
            waiters: Vec::new(),
        }
    }

    /// etcd's RemainingTTL: the checkpoint if there is one, else the TTL.
    fn remaining_or_ttl(&self) -> i64 {
        if self.remaining_ttl > 0 {
            self.remaining_ttl
        } else {
            self.ttl
        }
    }

    fn expired(&self, now: Instant) -> bool {
        self.expiry.is_some_and(|e| e <= now)
    }
}

#[derive(Debug, Default)]
struct State {
    leases: HashMap<i64, Lease>,
    /// Deadlines, when primary: each lease's expiry, moved on by
    /// [`EXPIRED_RETRY`] once it was handed out for revocation.
    deadlines: LeaseQueue,
    /// When to checkpoint which lease, when primary (a lease may be in it
    /// more than once; stale entries are skipped).
    checkpoints: BinaryHeap<Reverse<(Instant, i64)>>,
    primary: bool,
}

#[derive(Debug)]
pub struct Lessor {
    cfg: LessorConfig,
    state: Mutex<State>,
    /// Whether this lessor is primary, for those waiting for it to be.
    role: watch::Sender<bool>,
}

/// `at + secs` seconds, saturating far in the future.
fn after(at: Instant, extend: Duration, secs: i64) -> Instant {
    let secs = Duration::from_secs(secs.max(0) as u64);
    let far = Duration::from_secs(100 * 365 * 24 * 3600);
    at.checked_add(extend + secs.min(far))
        .unwrap_or_else(|| at + far)
}

impl Lessor {
    /// A lessor over the leases `(id, ttl, remaining_ttl)` of the table, not
    /// primary.
    pub fn new(cfg: LessorConfig, leases: impl IntoIterator<Item = (i64, i64, i64)>) -> Lessor {
        let lessor = Lessor {
            cfg,
            state: Mutex::default(),
            role: watch::Sender::new(false),
        };
        lessor.recover(leases, Instant::now());
        lessor
    }

    pub fn config(&self) -> &LessorConfig {
        &self.cfg
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("lessor poisoned")
    }

    /// Replaces the leases with the table's (after a leader's snapshot was
    /// installed: etcd's Recover). Keep-alives waiting on a lease are told
    /// to ask again.
    pub fn recover(&self, leases: impl IntoIterator<Item = (i64, i64, i64)>, now: Instant) {
        let mut s = self.state();
        s.leases.clear();
        s.deadlines.clear();
        s.checkpoints.clear();
        let primary = s.primary;
        for (id, ttl, remaining_ttl) in leases {
            let mut lease = Lease::new(ttl, remaining_ttl);
            if primary {
                let at = after(now, Duration::ZERO, lease.remaining_or_ttl());
                lease.expiry = Some(at);
                s.deadlines.set(id, at);
            }
            s.leases.insert(id, lease);
        }
    }

    pub fn len(&self) -> usize {
        self.state().leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, id: i64) -> bool {
        self.state().leases.contains_key(&id)
    }

    pub fn is_primary(&self) -> bool {
        self.state().primary
    }

    /// Watches whether this lessor is primary.
    pub fn role(&self) -> watch::Receiver<bool> {
        self.role.subscribe()
    }

    /// Takes in what a batch of applied entries changed.
    pub fn apply(&self, changes: &[LeaseChange], now: Instant) {
        if changes.is_empty() {
            return;
        }
        let mut s = self.state();
        for change in changes {
            match *change {
                LeaseChange::Granted { id, ttl } => {
                    let mut lease = Lease::new(ttl, 0);
                    if s.primary {
                        let at = after(now, Duration::ZERO, ttl);
                        lease.expiry = Some(at);
                        s.deadlines.set(id, at);
                        self.schedule_checkpoint(&mut s.checkpoints, id, &lease, now);
                    }
                    s.leases.insert(id, lease);
                }
                LeaseChange::Revoked(id) => {
                    if let Some(lease) = s.leases.remove(&id) {
                        for w in lease.waiters {
                            let _ = w.send(Revocation::Revoked);
                        }
                    }
                    s.deadlines.remove(id);
                }
                LeaseChange::Checkpointed { id, remaining_ttl } => {
                    let State {
                        leases,
                        checkpoints,
                        primary,
                        ..
                    } = &mut *s;
                    if let Some(lease) = leases.get_mut(&id) {
                        // Only a promotion turns the checkpoint into a deadline.
                        lease.remaining_ttl = remaining_ttl;
                        if *primary {
                            self.schedule_checkpoint(checkpoints, id, lease, now);
                        }
                    }
                }
            }
        }
    }

    /// This member leads and has applied everything of the previous term:
    /// every lease gets its remaining TTL plus `extend` from now. With many
    /// leases, expiries that pile up are spread so that no more than 3/4 of
    /// the revoke rate fall in any one second (etcd's Promote).
    ///
    /// `still_leading` is asked under the lessor's lock: the Raft loop
    /// records a lost leadership before it demotes, so a promotion racing
    /// with that demotion either sees it or is undone by it.
    pub fn promote(&self, extend: Duration, now: Instant, still_leading: impl FnOnce() -> bool) {
        let mut s = self.state();
        if !still_leading() {
            return;
        }
        s.primary = true;
        let State {
            leases,
            deadlines,
            checkpoints,
            ..
        } = &mut *s;
        deadlines.clear();
        checkpoints.clear();
        for (id, lease) in leases.iter_mut() {
            let at = after(now, extend, lease.remaining_or_ttl());
            lease.expiry = Some(at);
            deadlines.set(*id, at);
            self.schedule_checkpoint(checkpoints, *id, lease, now);
        }
        if leases.len() >= REVOKE_RATE {
            self.spread_pile_ups(&mut s, extend, now);
        }
        drop(s);
        self.role.send_replace(true);
    }

    fn spread_pile_ups(&self, s: &mut State, extend: Duration, now: Instant) {
        let target = (3 * REVOKE_RATE / 4) as f64;
        let mut order: Vec<(Instant, i64)> = s
            .leases
            .iter()
            .filter_map(|(id, l)| l.expiry.map(|e| (e, *id)))
            .collect();
        order.sort_unstable();
        let Some(&(first, _)) = order.first() else {
            return;
        };
        let second = Duration::from_secs(1);
        let mut base = first.saturating_duration_since(now);
        let mut next_window = base + second;
        let mut expires = 0usize;
        for (expiry, id) in order {
            let remaining = expiry.saturating_duration_since(now);
            if remaining > next_window {
                base = remaining;
                next_window = base + second;
                expires = 1;
                continue;
            }
            expires += 1;
            if expires as f64 <= target {
                continue;
            }
            // Later leases of a crowded second move on in proportion to how
            // crowded it is; those already further out move by less.
            let rate_delay = Duration::from_secs_f64(expires as f64 / target);
            let delay = rate_delay.saturating_sub(remaining - base);
            next_window = base + delay;
            let State {
                leases,
                deadlines,
                checkpoints,
                ..
            } = &mut *s;
            let lease = leases.get_mut(&id).expect("listed from the map");
            let at = after(now, delay + extend, lease.remaining_or_ttl());
            lease.expiry = Some(at);
            deadlines.set(id, at);
            self.schedule_checkpoint(checkpoints, id, lease, now);
        }
    }

    /// Another member leads (or none): forget every deadline; keep-alives
    /// waiting on expired leases are told to ask the new leader.
    pub fn demote(&self) {
        let mut s = self.state();
        if !s.primary {
            return;
        }
        s.primary = false;
        s.deadlines.clear();
        s.checkpoints.clear();
        for lease in s.leases.values_mut() {
            lease.expiry = None;
            for w in lease.waiters.drain(..) {
                let _ = w.send(Revocation::Demoted);
            }
        }
        drop(s);
        self.role.send_replace(false);
    }

    /// Keep-alive of one lease: its deadline moves to its TTL from now.
    /// `checkpoint_cleared` says the caller already cleared the lease's
    /// checkpoint (see [`Renewal::ClearCheckpoint`]).
    pub fn renew(&self, id: i64, now: Instant, checkpoint_cleared: bool) -> Renewal {
        let mut s = self.state();
        self.renew_locked(&mut s, id, now, checkpoint_cleared)
    }

    /// Keep-alives of many leases under one lock.
    pub fn renew_many(&self, ids: &[i64], now: Instant) -> Vec<Renewal> {
        let mut s = self.state();
        ids.iter()
            .map(|id| self.renew_locked(&mut s, *id, now, false))
            .collect()
    }

    fn renew_locked(
        &self,
        s: &mut State,
        id: i64,
        now: Instant,
        checkpoint_cleared: bool,
    ) -> Renewal {
        if !s.primary {
            return Renewal::NotPrimary;
        }
        let Some(lease) = s.leases.get_mut(&id) else {
            return Renewal::NotFound;
        };
        if lease.expired(now) {
            let (tx, rx) = oneshot::channel();
            lease.waiters.push(tx);
            return Renewal::Expired(rx);
        }
        if self.cfg.checkpoint_interval.is_some() && lease.remaining_ttl > 0 && !checkpoint_cleared
        {
            return Renewal::ClearCheckpoint;
        }
        let at = after(now, Duration::ZERO, lease.remaining_or_ttl());
        lease.expiry = Some(at);
        let ttl = lease.ttl;
        s.deadlines.set(id, at);
        Renewal::Renewed(ttl)
    }

    /// The lease as TimeToLive shows it. A lessor that is not primary has no
    /// deadline to tell and shows the granted TTL as remaining.
    pub fn lookup(&self, id: i64, now: Instant) -> Option<LeaseView> {
        let s = self.state();
        let lease = s.leases.get(&id)?;
        let remaining = match lease.expiry {
            Some(e) if e >= now => (e - now).as_secs() as i64,
            Some(e) => -((now - e).as_secs() as i64),
            None => lease.ttl,
        };
        Some(LeaseView {
            granted_ttl: lease.ttl,
            remaining,
        })
    }

    /// Every lease id, soonest expiry first (those without a deadline last,
    /// by id): etcd's Leases().
    pub fn leases(&self) -> Vec<i64> {
        let s = self.state();
        let mut all: Vec<(Option<Instant>, i64)> =
            s.leases.iter().map(|(id, l)| (l.expiry, *id)).collect();
        drop(s);
        all.sort_unstable_by(|a, b| match (a.0, b.0) {
            (Some(x), Some(y)) => (x, a.1).cmp(&(y, b.1)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.1.cmp(&b.1),
        });
        all.into_iter().map(|(_, id)| id).collect()
    }

    /// Up to `limit` leases past their deadline, soonest first, to be
    /// revoked. Each is handed out again only after [`EXPIRED_RETRY`], should
    /// its revocation not go through (etcd's findExpiredLeases).
    pub fn expired(&self, now: Instant, limit: usize) -> Vec<i64> {
        let mut s = self.state();
        if !s.primary {
            return Vec::new();
        }
        let mut out = Vec::new();
        while out.len() < limit {
            let Some((at, id)) = s.deadlines.peek() else {
                break;
            };
            if at > now {
                break;
            }
            let Some(lease) = s.leases.get(&id) else {
                s.deadlines.remove(id);
                continue;
            };
            let expired = lease.expired(now);
            s.deadlines.set(id, now + EXPIRED_RETRY);
            if expired {
                out.push(id);
            }
        }
        out
    }

    /// Up to `limit` checkpoints due now: (id, remaining TTL in whole
    /// seconds, rounded up), for leases that lost some of their TTL
    /// (etcd's findDueScheduledCheckpoints).
    pub fn due_checkpoints(&self, now: Instant, limit: usize) -> Vec<(i64, i64)> {
        let mut s = self.state();
        if !s.primary || self.cfg.checkpoint_interval.is_none() {
            return Vec::new();
        }
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(Reverse((at, id))) = s.checkpoints.peek().copied() else {
                break;
            };
            if at > now {
                break;
            }
            s.checkpoints.pop();
            let Some(lease) = s.leases.get(&id) else {
                continue;
            };
            let Some(expiry) = lease.expiry.filter(|e| *e > now) else {
                continue;
            };
            let left = expiry - now;
            let remaining = left.as_secs() as i64 + i64::from(left.subsec_nanos() > 0);
            if remaining >= lease.ttl {
                continue;
            }
            out.push((id, remaining));
        }
        out
    }

    /// Queues a checkpoint of a lease one interval from now, if it is long
    /// enough to need one (etcd's scheduleCheckpointIfNeeded).
    fn schedule_checkpoint(
        &self,
        checkpoints: &mut BinaryHeap<Reverse<(Instant, i64)>>,
        id: i64,
        lease: &Lease,
        now: Instant,
    ) {
        let Some(interval) = self.cfg.checkpoint_interval else {
            return;
        };
        if lease.remaining_or_ttl() > interval.as_secs() as i64 {
            checkpoints.push(Reverse((now + interval, id)));
        }
    }

    /// (id, granted TTL, checkpointed remaining TTL) of one lease, for tests
    /// and diagnostics.
    pub fn get(&self, id: i64) -> Option<(i64, i64)> {
        self.state()
            .leases
            .get(&id)
            .map(|l| (l.ttl, l.remaining_ttl))
    }
}
