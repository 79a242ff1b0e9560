//! Start-up: the newest valid snapshot, then the WAL replayed on top of it,
//! rebuilding the state machine and raft-rs's in-memory log.

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfState, Config, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::RawNode;

use super::NodeConfig;
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

pub(super) struct Recovered {
    pub state: StateMachine,
    pub node: RawNode<MemStorage>,
    pub wal: Wal,
    pub snapshotter: Snapshotter,
}

pub(super) fn recover(cfg: &NodeConfig) -> Result<Recovered, RecoveryError> {
    let member_dir = cfg.data_dir.join("member");
    let snap_dir = member_dir.join("snap");
    std::fs::create_dir_all(&snap_dir)
        .map_err(|e| RecoveryError(format!("cannot create {}: {e}", snap_dir.display())))?;
    let snapshotter = Snapshotter::new(&snap_dir);

    let (mut state, snap_term) = match snapshotter
        .load_newest()
        .map_err(|e| RecoveryError(e.to_string()))?
    {
        Some(s) => {
            let sm = StateMachine::decode_snapshot(&s.data).map_err(|e| {
                RecoveryError(format!("snapshot at index {} is unreadable: {e}", s.index))
            })?;
            (sm, s.term)
        }
        None => (StateMachine::new(), 0),
    };

    let metadata = WalMetadata {
        member_id: cfg.id,
        cluster_id: cfg.cluster_id,
        name: cfg.name.clone(),
    }
    .encode_to_vec();
    let (wal, replay) = Wal::open(&member_dir.join("wal"), &metadata, WalOptions::default())
        .map_err(|e| RecoveryError(e.to_string()))?;
    if let Some(meta) = replay.metadata.as_deref() {
        let meta = WalMetadata::decode(meta)
            .map_err(|e| RecoveryError(format!("wal: unreadable metadata: {e}")))?;
        if meta.member_id != cfg.id {
            return Err(RecoveryError(format!(
                "data dir {} belongs to member {:x} ({}), not {:x} ({}): check --initial-advertise-peer-urls and --initial-cluster-token",
                cfg.data_dir.display(),
                meta.member_id,
                meta.name,
                cfg.id,
                cfg.name
            )));
        }
    }
    if let Some((path, offset)) = &replay.repaired_tail {
        log::warn!(
            "wal: repaired a torn write at the tail of {} (truncated at offset {offset})",
            path.display()
        );
    }

    let storage = MemStorage::new();
    let conf_state = ConfState::from((cfg.voters.clone(), vec![]));
    if state.applied_index > 0 {
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = state.applied_index;
        snap.mut_metadata().term = snap_term.max(state.applied_term);
        snap.mut_metadata().set_conf_state(conf_state);
        storage
            .wl()
            .apply_snapshot(snap)
            .map_err(|e| RecoveryError(format!("raft: {e}")))?;
    } else {
        storage.initialize_with_conf_state(conf_state);
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
    if let Some(hs) = replay.hard_state.as_deref() {
        let mut hs = HardState::parse_from_bytes(hs)
            .map_err(|e| RecoveryError(format!("wal: unreadable hard state: {e}")))?;
        let last = raft::Storage::last_index(&storage).unwrap_or_default();
        hs.commit = hs
            .commit
            .clamp(state.applied_index, last.max(state.applied_index));
        storage.wl().set_hardstate(hs);
    }
    state.applied_term = state.applied_term.max(snap_term);

    let raft_cfg = Config {
        id: cfg.id,
        election_tick: cfg.election_ticks,
        heartbeat_tick: 1,
        applied: state.applied_index,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let node = RawNode::new(&raft_cfg, storage, &logger)
        .map_err(|e| RecoveryError(format!("raft: {e}")))?;
    Ok(Recovered {
        state,
        node,
        wal,
        snapshotter,
    })
}
