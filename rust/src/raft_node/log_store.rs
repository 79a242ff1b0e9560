//! raft-rs's view of our log: entries and hard state in memory (the WAL holds
//! the durable copy), and snapshots taken from the backend on demand.
//!
//! raft-rs asks for a snapshot when a follower is too far behind the log the
//! leader still holds. A snapshot here is only metadata (index, term,
//! configuration) read from a backend read transaction; the transaction is
//! kept for the transport, which streams the backend it sees to the follower
//! on another thread. Index and data come from the same transaction, so they
//! always agree, and nothing on the Raft thread copies state.

use std::sync::Arc;

use raft::prelude::{Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use super::Shared;
use crate::membership::Membership;

/// What a snapshot message carries as data: the backend follows on its own
/// stream.
pub const SNAPSHOT_DATA: &[u8] = b"etcdcore-backend-v1";

pub struct LogStore {
    pub mem: MemStorage,
    shared: Arc<Shared>,
}

impl LogStore {
    pub fn new(mem: MemStorage, shared: Arc<Shared>) -> LogStore {
        LogStore { mem, shared }
    }

    pub fn hard_state(&self) -> HardState {
        self.mem.rl().hard_state().clone()
    }
}

fn unavailable() -> raft::Error {
    raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)
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

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let rtx = {
            let sm = self.shared.sm.read().expect("state poisoned");
            sm.read()
        };
        let rtx = rtx.map_err(|e| {
            log::warn!("cannot read the backend for a snapshot: {e}");
            unavailable()
        })?;
        let ((index, term), members) = match (rtx.position(), rtx.members()) {
            (Ok(p), Ok(m)) => (p, m),
            (Err(e), _) | (_, Err(e)) => {
                log::warn!("cannot read the backend for a snapshot: {e}");
                return Err(unavailable());
            }
        };
        if index == 0 || index < request_index {
            return Err(unavailable());
        }
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(Membership::from_parts(0, members, vec![]).conf_state());
        snap.data = SNAPSHOT_DATA.to_vec().into();
        self.shared
            .outgoing_snapshots
            .lock()
            .expect("snapshots poisoned")
            .insert(to, (index, rtx));
        Ok(snap)
    }
}
