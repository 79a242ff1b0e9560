//! Start-up: the newest valid snapshot, then the WAL replayed on top of it,
//! rebuilding the state machine and raft-rs's in-memory log.
//!
//! A fresh data dir is bootstrapped first. A member of a new cluster writes the
//! initial membership as a snapshot at index 1 (every initial member writes the
//! same one), so Raft's log starts at index 2 and a member that joins later is
//! always brought up by a snapshot, which carries the configuration. A member
//! joining a running cluster starts empty and waits for that snapshot.

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{Entry, HardState, Snapshot};
use raft::storage::MemStorage;

use super::{Bootstrap, NodeConfig, BOOTSTRAP_INDEX, BOOTSTRAP_TERM};
use crate::membership::Membership;
use crate::pb::internal::WalMetadata;
use crate::snap::Snapshotter;
use crate::state_machine::StateMachine;
use crate::wal::{Wal, WalOptions};

/// Why a member could not start from its data dir; the text is for operators.
#[derive(Debug)]
pub struct RecoveryError(pub String);

impl std::fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RecoveryError {}

/// Writes a new cluster member's starting point: `state` (its membership
/// already set) as the snapshot at the bootstrap index, marked in the WAL
/// with a hard state that commits it, synced. Members of a new cluster and a
/// data dir restored from a snapshot start from the same shape.
pub(crate) fn write_bootstrap(
    state: &mut StateMachine,
    snapshotter: &Snapshotter,
    wal: &mut Wal,
) -> Result<(), String> {
    state.applied_index = BOOTSTRAP_INDEX;
    state.applied_term = BOOTSTRAP_TERM;
    snapshotter
        .save(BOOTSTRAP_INDEX, BOOTSTRAP_TERM, &state.encode_snapshot())
        .map_err(|e| format!("cannot write the bootstrap snapshot: {e}"))?;
    wal.mark_snapshot(BOOTSTRAP_INDEX, BOOTSTRAP_TERM);
    let hs = HardState {
        term: BOOTSTRAP_TERM,
        commit: BOOTSTRAP_INDEX,
        ..Default::default()
    };
    wal.set_hard_state(&hs.write_to_bytes().expect("hard state encodes"));
    wal.sync().map_err(|e| e.to_string())
}

pub(super) struct Recovered {
    pub state: StateMachine,
    pub storage: MemStorage,
    pub wal: Wal,
    pub snapshotter: Snapshotter,
    /// This member's id and its cluster's: the WAL's once it has one.
    pub id: u64,
    pub cluster_id: u64,
}

pub(super) fn recover(cfg: &NodeConfig) -> Result<Recovered, RecoveryError> {
    let member_dir = cfg.data_dir.join("member");
    let snap_dir = member_dir.join("snap");
    std::fs::create_dir_all(&snap_dir)
        .map_err(|e| RecoveryError(format!("cannot create {}: {e}", snap_dir.display())))?;
    let snapshotter = Snapshotter::new(&snap_dir);

    let metadata = WalMetadata {
        member_id: cfg.id,
        cluster_id: cfg.cluster_id,
        name: cfg.name.clone(),
    }
    .encode_to_vec();
    let (mut wal, replay) = Wal::open(&member_dir.join("wal"), &metadata, WalOptions::default())
        .map_err(|e| RecoveryError(e.to_string()))?;
    let (id, cluster_id) = match replay.metadata.as_deref() {
        Some(meta) => {
            let meta = WalMetadata::decode(meta)
                .map_err(|e| RecoveryError(format!("wal: unreadable metadata: {e}")))?;
            (meta.member_id, meta.cluster_id)
        }
        None => (cfg.id, cfg.cluster_id),
    };
    if let Some((path, offset)) = &replay.repaired_tail {
        log::warn!(
            "wal: repaired a torn write at the tail of {} (truncated at offset {offset})",
            path.display()
        );
    }

    let newest = snapshotter
        .load_newest()
        .map_err(|e| RecoveryError(e.to_string()))?;
    let fresh = newest.is_none() && replay.entries.is_empty() && replay.hard_state.is_none();
    let (mut state, snap_term) = match newest {
        Some(s) => {
            let sm = StateMachine::decode_snapshot(&s.data).map_err(|e| {
                RecoveryError(format!("snapshot at index {} is unreadable: {e}", s.index))
            })?;
            (sm, s.term)
        }
        None => (StateMachine::new(), 0),
    };

    let storage = MemStorage::new();
    if fresh {
        match &cfg.bootstrap {
            Bootstrap::New(members) => {
                state.membership = Membership::new(cluster_id, members.clone());
                write_bootstrap(&mut state, &snapshotter, &mut wal).map_err(RecoveryError)?;
            }
            Bootstrap::Join(members) => {
                // Known peers to talk to until the leader's snapshot arrives;
                // no Raft configuration, so this member cannot campaign.
                state.membership = Membership::new(cluster_id, members.clone());
                wal.sync().map_err(|e| RecoveryError(e.to_string()))?;
            }
        }
    }

    if state.applied_index > 0 {
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = state.applied_index;
        snap.mut_metadata().term = snap_term.max(state.applied_term);
        snap.mut_metadata()
            .set_conf_state(state.membership.conf_state());
        storage
            .wl()
            .apply_snapshot(snap)
            .map_err(|e| RecoveryError(format!("raft: {e}")))?;
    }

    let mut entries = Vec::with_capacity(replay.entries.len());
    for e in replay
        .entries
        .iter()
        .filter(|e| e.index > state.applied_index)
    {
        let entry = Entry::parse_from_bytes(&e.data)
            .map_err(|err| RecoveryError(format!("wal: entry {} is unreadable: {err}", e.index)))?;
        entries.push(entry);
    }
    if let Some(first) = entries.first() {
        if first.index != state.applied_index + 1 {
            return Err(RecoveryError(format!(
                "wal: entries {}..{} are missing (newest snapshot is at {}): the data dir is damaged",
                state.applied_index + 1,
                first.index,
                state.applied_index
            )));
        }
    }
    storage
        .wl()
        .append(&entries)
        .map_err(|e| RecoveryError(format!("raft: {e}")))?;
    let hs = if fresh {
        Some(HardState {
            term: state.applied_term,
            commit: state.applied_index,
            ..Default::default()
        })
    } else {
        replay
            .hard_state
            .as_deref()
            .map(HardState::parse_from_bytes)
            .transpose()
            .map_err(|e| RecoveryError(format!("wal: unreadable hard state: {e}")))?
    };
    if let Some(mut hs) = hs {
        let last = raft::Storage::last_index(&storage).unwrap_or_default();
        hs.commit = hs
            .commit
            .clamp(state.applied_index, last.max(state.applied_index));
        hs.term = hs.term.max(snap_term).max(state.applied_term);
        storage.wl().set_hardstate(hs);
    }
    state.applied_term = state.applied_term.max(snap_term);

    Ok(Recovered {
        state,
        storage,
        wal,
        snapshotter,
        id,
        cluster_id,
    })
}
