//! Snapshot files saved from Maintenance.Snapshot (`etcdcorectl snapshot
//! save`): checking and describing one (`snapshot status`), and seeding a new
//! member's data dir from it (`snapshot restore`).
//!
//! The file is what the Snapshot stream carried:
//!
//! ```text
//! state length u64 LE | state | crc32c(state) u32 LE | zeros to a 512-byte boundary | sha256(all before)
//! ```
//!
//! A restore keeps the keyspace, its revisions and the leases, and gives the
//! data a new cluster: the membership from `--initial-cluster`, ids derived
//! from the peer URLs and token as at any first start, and the log restarted
//! at the bootstrap snapshot, like the data dir of a new cluster's member.

use std::path::{Path, PathBuf};

use prost::Message as _;
use sha2::Digest as _;

use crate::identity;
use crate::membership::Membership;
use crate::pb::internal::{MemberRecord, WalMetadata};
use crate::raft_node::write_bootstrap;
use crate::snap::Snapshotter;
use crate::state_machine::StateMachine;
use crate::wal::{Wal, WalOptions};

const DIGEST_LEN: usize = 32;

/// What `snapshot status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// crc32c of the state.
    pub hash: u32,
    pub revision: i64,
    pub total_keys: u64,
    pub total_size: u64,
}

/// The state machine in a snapshot file, after its checksums are verified
/// (the sha256 trailer unless `skip_hash_check`, the state's crc32c always).
pub fn read(bytes: &[u8], skip_hash_check: bool) -> Result<(StateMachine, u32), String> {
    if !skip_hash_check {
        if bytes.len() < DIGEST_LEN || !(bytes.len() - DIGEST_LEN).is_multiple_of(512) {
            return Err(format!(
                "snapshot file integrity check failed. {} bytes found",
                bytes.len()
            ));
        }
        let (body, digest) = bytes.split_at(bytes.len() - DIGEST_LEN);
        let actual = sha2::Sha256::digest(body);
        if actual.as_slice() != digest {
            return Err(format!(
                "expected sha256 {}, got {}",
                hex(digest),
                hex(actual.as_slice())
            ));
        }
    }
    if bytes.len() < 12 {
        return Err("snapshot file is too short".into());
    }
    let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let state = bytes
        .get(8..8 + len)
        .ok_or_else(|| format!("snapshot file is truncated: state of {len} bytes announced"))?;
    let crc = bytes
        .get(8 + len..12 + len)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .ok_or("snapshot file is truncated: no checksum")?;
    if crc32c::crc32c(state) != crc {
        return Err("snapshot file is corrupt: state checksum mismatch".into());
    }
    Ok((StateMachine::decode_snapshot(state)?, crc))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Hash, revision, live keys and size of the state in a snapshot file.
pub fn status(bytes: &[u8]) -> Result<SnapshotStatus, String> {
    let (state, hash) = read(bytes, false)?;
    let total_size = u64::from_le_bytes(bytes[..8].try_into().expect("checked by read"));
    Ok(SnapshotStatus {
        hash,
        revision: state.store.current_revision(),
        total_keys: state.store.keys_count() as u64,
        total_size,
    })
}

/// Where and as what the restored member starts.
pub struct RestoreConfig {
    pub data_dir: PathBuf,
    pub name: String,
    /// (name, peer URLs) of every member of the new cluster.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    pub cluster_token: String,
    pub skip_hash_check: bool,
}

/// Writes a new data dir holding the snapshot's data for member `cfg.name` of
/// the cluster `cfg.initial_cluster`. Refuses a data dir that has content.
pub fn restore(bytes: &[u8], cfg: &RestoreConfig) -> Result<(), String> {
    if dir_has_entries(&cfg.data_dir) {
        return Err(format!(
            "data-dir {:?} not empty or could not be read",
            cfg.data_dir.display().to_string()
        ));
    }
    let members: Vec<MemberRecord> = cfg
        .initial_cluster
        .iter()
        .map(|(name, urls)| MemberRecord {
            id: identity::member_id(urls, &cfg.cluster_token),
            name: name.clone(),
            peer_urls: urls.clone(),
            client_urls: vec![],
            is_learner: false,
        })
        .collect();
    let own = members
        .iter()
        .find(|m| m.name == cfg.name)
        .map(|m| m.id)
        .ok_or_else(|| {
            format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                cfg.name
            )
        })?;
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let cluster_id = identity::cluster_id(&ids);

    let (mut state, _) = read(bytes, cfg.skip_hash_check)?;
    // Alarms named the old cluster's members; the new one starts clean.
    state.alarms.clear();
    state.membership = Membership::new(cluster_id, members);
    write_data_dir(&cfg.data_dir, &cfg.name, own, cluster_id, &mut state)
}

fn dir_has_entries(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

fn write_data_dir(
    data_dir: &Path,
    name: &str,
    member_id: u64,
    cluster_id: u64,
    state: &mut StateMachine,
) -> Result<(), String> {
    let member_dir = data_dir.join("member");
    let snap_dir = member_dir.join("snap");
    std::fs::create_dir_all(&snap_dir)
        .map_err(|e| format!("cannot create {}: {e}", snap_dir.display()))?;
    let metadata = WalMetadata {
        member_id,
        cluster_id,
        name: name.to_string(),
    }
    .encode_to_vec();
    let (mut wal, _) = Wal::open(&member_dir.join("wal"), &metadata, WalOptions::default())
        .map_err(|e| e.to_string())?;
    write_bootstrap(state, &Snapshotter::new(&snap_dir), &mut wal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::testutil;

    fn snapshot_file(state: &StateMachine) -> Vec<u8> {
        let body = state.encode_snapshot();
        let mut blob = Vec::new();
        blob.extend_from_slice(&(body.len() as u64).to_le_bytes());
        blob.extend_from_slice(&body);
        blob.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        blob.resize(blob.len().div_ceil(512) * 512, 0);
        let digest = sha2::Sha256::digest(&blob);
        blob.extend_from_slice(&digest);
        blob
    }

    fn state_with_keys() -> StateMachine {
        let mut sm = StateMachine::new();
        testutil::put(&mut sm.store, "a", "1");
        testutil::put(&mut sm.store, "b", "2");
        testutil::put(&mut sm.store, "a", "3");
        sm
    }

    #[test]
    fn status_reports_revision_and_live_keys() {
        let st = status(&snapshot_file(&state_with_keys())).unwrap();
        assert_eq!((st.revision, st.total_keys), (4, 2));
    }

    #[test]
    fn a_flipped_byte_fails_the_hash_check() {
        let mut file = snapshot_file(&state_with_keys());
        file[20] ^= 1;
        assert!(read(&file, false)
            .err()
            .unwrap()
            .starts_with("expected sha256"));
        assert!(read(&file, true)
            .err()
            .unwrap()
            .contains("checksum mismatch"));
    }

    #[test]
    fn restore_refuses_a_name_outside_the_initial_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = RestoreConfig {
            data_dir: dir.path().join("d"),
            name: "x".into(),
            initial_cluster: vec![("a".into(), vec!["http://127.0.0.1:2380".into()])],
            cluster_token: "t".into(),
            skip_hash_check: false,
        };
        let err = restore(&snapshot_file(&state_with_keys()), &cfg).unwrap_err();
        assert!(err.contains("couldn't find local name"));
    }

    #[test]
    fn restore_refuses_a_data_dir_with_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let cfg = RestoreConfig {
            data_dir: dir.path().to_path_buf(),
            name: "a".into(),
            initial_cluster: vec![("a".into(), vec!["http://127.0.0.1:2380".into()])],
            cluster_token: "t".into(),
            skip_hash_check: false,
        };
        assert!(restore(&snapshot_file(&state_with_keys()), &cfg)
            .unwrap_err()
            .contains("not empty"));
    }
}
