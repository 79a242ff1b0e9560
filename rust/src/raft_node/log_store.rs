//! raft-rs's view of our log: entries and hard state in memory (the WAL holds
//! the durable copy), and snapshots built from the state machine on demand.
//!
//! raft-rs asks for a snapshot when a follower is too far behind the log the
//! leader still holds. The snapshot is the state machine as applied right now,
//! so its data always matches its metadata (index, term, configuration).

use std::sync::Arc;
use std::time::Instant;

use raft::prelude::{Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use super::Shared;
use crate::metrics::Metrics;

pub struct LogStore {
    pub mem: MemStorage,
    shared: Arc<Shared>,
    /// A snapshot built for a peer is a backend snapshot in etcd's terms.
    metrics: Arc<Metrics>,
}

impl LogStore {
    pub fn new(mem: MemStorage, shared: Arc<Shared>, metrics: Arc<Metrics>) -> LogStore {
        LogStore {
            mem,
            shared,
            metrics,
        }
    }

    pub fn hard_state(&self) -> HardState {
        self.mem.rl().hard_state().clone()
    }
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let started = Instant::now();
        let sm = self.shared.sm.read().expect("state poisoned");
        if sm.applied_index == 0 || sm.applied_index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = sm.applied_index;
        meta.term = sm.applied_term;
        meta.set_conf_state(sm.membership.conf_state());
        snap.data = sm.encode_snapshot().into();
        self.metrics.backend_snapshot.observe(started.elapsed());
        Ok(snap)
    }
}
