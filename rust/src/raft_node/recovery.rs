//! Start-up: the backend, then the WAL entries after the backend's
//! consistent index, rebuilding the state machine and raft-rs's log.
//!
//! The backend (`member/snap/db`) is the state; it records the last entry it
//! reflects durably (the consistent index). The WAL holds every entry after
//! the last snapshot mark, which is never newer than that index, so raft-rs
//! gets the entries after the consistent index and re-delivers the committed
//! ones: each entry is applied exactly once, even after a crash between a WAL
//! fsync and a backend commit.
//!
//! A fresh data dir is bootstrapped first. A member of a new cluster writes
//! the initial membership into its backend at index 1 (every initial member
//! writes the same), so Raft's log starts at index 2 and a member that joins
//! later is always brought up by a snapshot, which carries the configuration.
//! A member joining a running cluster starts empty and waits for that
//! snapshot. A follower that received the leader's backend (`{index}.snap.db`
//! beside `db`) and crashed before swapping it in finishes the swap here.

use std::path::{Path, PathBuf};

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{Entry, HardState, Snapshot};
use raft::storage::MemStorage;

use super::{Bootstrap, NodeConfig, BOOTSTRAP_INDEX, BOOTSTRAP_TERM};
use crate::backend::{Backend, BackendError};
use crate::membership::Membership;
use crate::pb::internal::WalMetadata;
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

impl From<BackendError> for RecoveryError {
    fn from(e: BackendError) -> RecoveryError {
        RecoveryError(e.to_string())
    }
}

/// The backend file of a data dir, where etcd keeps its bbolt file.
pub fn backend_path(data_dir: &Path) -> PathBuf {
    data_dir.join("member").join("snap").join("db")
}

/// Where a follower receives the leader's backend for the snapshot at
/// `index`, beside its own `db`.
pub fn received_snapshot_path(db: &Path, index: u64) -> PathBuf {
    db.with_file_name(format!("{index:016x}.snap.db"))
}

/// Writes a new cluster member's starting point into `state` (its
/// membership already set): the membership and the bootstrap position in the
/// backend, durably, then a WAL mark and hard state that commit it. Members
/// of a new cluster and a data dir restored from a snapshot start from the
/// same shape.
pub(crate) fn write_bootstrap(state: &mut StateMachine, wal: &mut Wal) -> Result<(), String> {
    let tx = state.backend.begin_write().map_err(|e| e.to_string())?;
    {
        let tables = tx.tables().map_err(|e| e.to_string())?;
        tables
            .save_membership(state.membership.members(), state.membership.removed())
            .map_err(|e| e.to_string())?;
        tables
            .save_alarms(&state.alarms)
            .map_err(|e| e.to_string())?;
        // etcd's auth store records its revision from the start.
        tables
            .save_auth(&state.auth.to_state(), false)
            .map_err(|e| e.to_string())?;
        state
            .set_applied(&tables, BOOTSTRAP_INDEX, BOOTSTRAP_TERM)
            .map_err(|e| e.to_string())?;
    }
    tx.commit(redb::Durability::Immediate)
        .map_err(|e| format!("cannot write the bootstrap state: {e}"))?;
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
    /// This member's id and its cluster's: the WAL's once it has one.
    pub id: u64,
    pub cluster_id: u64,
}

/// Refuses a data dir written by etcdcore before the backend existed: its
/// state is in `*.snap` files this version does not read.
fn refuse_old_format(snap_dir: &Path, db: &Path) -> Result<(), RecoveryError> {
    if db.exists() {
        return Ok(());
    }
    let Ok(entries) = std::fs::read_dir(snap_dir) else {
        return Ok(());
    };
    let old = entries
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(".snap"));
    if old {
        return Err(RecoveryError(format!(
            "{} holds etcdcore's old in-memory snapshot format (ECSNAP01 *.snap files, no \
             backend file {}); this version keeps its state in a backend database and cannot \
             read it: start the old version, save a snapshot with `etcdctl snapshot save`, \
             and restore that into a new data dir",
            snap_dir.display(),
            db.display()
        )));
    }
    Ok(())
}

/// Removes what an interrupted load, copy or snapshot transfer left behind,
/// and received snapshots the backend already holds.
fn clean_snap_dir(snap_dir: &Path, applied: u64) {
    let Ok(entries) = std::fs::read_dir(snap_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stale_snapshot = name
            .strip_suffix(".snap.db")
            .and_then(|i| u64::from_str_radix(i, 16).ok())
            .is_some_and(|index| index <= applied);
        if stale_snapshot || name.ends_with(".loading") || name.ends_with(".defrag") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

pub(super) fn recover(cfg: &NodeConfig) -> Result<Recovered, RecoveryError> {
    let member_dir = cfg.data_dir.join("member");
    let snap_dir = member_dir.join("snap");
    std::fs::create_dir_all(&snap_dir)
        .map_err(|e| RecoveryError(format!("cannot create {}: {e}", snap_dir.display())))?;
    let db_path = backend_path(&cfg.data_dir);
    refuse_old_format(&snap_dir, &db_path)?;

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

    let wal_empty =
        replay.entries.is_empty() && replay.hard_state.is_none() && replay.snapshot.is_none();
    if !wal_empty && !db_path.exists() {
        return Err(RecoveryError(format!(
            "the backend file {} is missing but the WAL has entries: the data dir is damaged",
            db_path.display()
        )));
    }
    let mut state = StateMachine::load(Backend::open(&db_path)?, cluster_id)?;
    if let Some((mark, _)) = replay.snapshot {
        if mark > state.applied_index {
            // A snapshot from the leader was marked in the WAL, but the crash
            // came before it replaced the backend.
            let received = received_snapshot_path(&db_path, mark);
            if !received.exists() {
                return Err(RecoveryError(format!(
                    "the WAL starts after index {mark}, the backend holds only up to {}, and \
                     the snapshot {} is missing: the data dir is damaged",
                    state.applied_index,
                    received.display()
                )));
            }
            let backend = state.backend.replace_with(&received)?;
            state = StateMachine::load(backend, cluster_id)?;
            log::info!("finished installing the leader's snapshot at index {mark}");
        }
    }
    clean_snap_dir(&snap_dir, state.applied_index);

    // Nothing applied and nothing logged: a first start (or a joiner that
    // never received the leader's snapshot).
    let fresh = state.applied_index == 0 && wal_empty;
    if fresh {
        match &cfg.bootstrap {
            Bootstrap::New(members) => {
                state.membership = Membership::new(cluster_id, members.clone());
                write_bootstrap(&mut state, &mut wal).map_err(RecoveryError)?;
            }
            Bootstrap::Join(members) => {
                // Known peers to talk to until the leader's snapshot arrives;
                // no Raft configuration, so this member cannot campaign.
                state.membership = Membership::new(cluster_id, members.clone());
                wal.sync().map_err(|e| RecoveryError(e.to_string()))?;
            }
        }
    }

    let storage = MemStorage::new();
    let snap_term = state.applied_term;
    if state.applied_index > 0 {
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = state.applied_index;
        snap.mut_metadata().term = snap_term;
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
                "wal: entries {}..{} are missing (the backend holds up to {}): the data dir is damaged",
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
        hs.term = hs.term.max(snap_term);
        storage.wl().set_hardstate(hs);
    }

    Ok(Recovered {
        state,
        storage,
        wal,
        id,
        cluster_id,
    })
}
