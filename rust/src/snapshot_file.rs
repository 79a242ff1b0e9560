//! Snapshot files: what Maintenance.Snapshot streams (and `etcdcorectl
//! snapshot save` writes), checking and describing one (`snapshot status`),
//! and seeding a new member's data dir from it (`snapshot restore`).
//!
//! The file is the backend as one consistent stream
//! ([`crate::backend::dump`]), then etcd's trailer:
//!
//! ```text
//! stream length u64 LE | stream | zeros to a 512-byte boundary | sha256(all before)
//! ```
//!
//! Files are read in pieces, never whole. A restore keeps the keyspace, its
//! revisions, the leases and the auth store, and gives the data a new
//! cluster: the membership from `--initial-cluster`, ids derived from the
//! peer URLs and token as at any first start, and the log restarted at the
//! bootstrap index, like the data dir of a new cluster's member.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use prost::Message as _;
use sha2::Digest as _;

use crate::backend::dump::Loader;
use crate::backend::Backend;
use crate::identity;
use crate::membership::Membership;
use crate::pb::internal::{MemberRecord, WalMetadata};
use crate::raft_node::write_bootstrap;
use crate::state_machine::StateMachine;
use crate::wal::{Wal, WalOptions};

const DIGEST_LEN: u64 = 32;
const READ_CHUNK: usize = 1 << 20;

/// What `snapshot status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// crc32c of the backend stream.
    pub hash: u32,
    pub revision: i64,
    pub total_keys: u64,
    pub total_size: u64,
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

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Checks the SHA-256 trailer of a snapshot file (etcdutl's rule: a file
/// whose size is 32 past a multiple of 512 ends with one) and returns the
/// length of what precedes it: the whole file when it has no trailer and
/// `skip_hash_check` allows that.
fn check_hash(path: &Path, skip_hash_check: bool) -> Result<u64, String> {
    let open_err = |e: std::io::Error| format!("open {}: {e}", path.display());
    let mut file = File::open(path).map_err(open_err)?;
    let size = file.metadata().map_err(open_err)?.len();
    let has_hash = size % 512 == DIGEST_LEN;
    if !has_hash {
        if !skip_hash_check {
            return Err("snapshot missing hash but --skip-hash-check=false".into());
        }
        return Ok(size);
    }
    let body = size - DIGEST_LEN;
    if skip_hash_check {
        return Ok(body);
    }
    let mut sha = sha2::Sha256::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut left = body;
    while left > 0 {
        let want = left.min(READ_CHUNK as u64) as usize;
        file.read_exact(&mut buf[..want])
            .map_err(|e| format!("read {}: {e}", path.display()))?;
        sha.update(&buf[..want]);
        left -= want as u64;
    }
    let mut digest = [0u8; DIGEST_LEN as usize];
    file.read_exact(&mut digest)
        .map_err(|e| format!("read {}: {e}", path.display()))?;
    let actual = sha.finalize();
    if actual.as_slice() != digest {
        return Err(format!(
            "expected sha256 {}, got {}",
            hex(&digest),
            hex(actual.as_slice())
        ));
    }
    Ok(body)
}

/// Loads the backend a snapshot file holds into a new file at `db`, after
/// checking its hash (unless `skip_hash_check`). Returns the stream's length
/// and crc32c.
fn load(path: &Path, db: &Path, skip_hash_check: bool) -> Result<(u64, u32), String> {
    let body = check_hash(path, skip_hash_check)?;
    let corrupt = |e: String| format!("snapshot file is corrupt: {e}");
    let mut file = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut header = [0u8; 8];
    if body < 8 || file.read_exact(&mut header).is_err() {
        return Err("snapshot file is too short".into());
    }
    let len = u64::from_le_bytes(header);
    if len > body - 8 {
        return Err(corrupt(format!(
            "a stream of {len} bytes is announced, {} bytes follow",
            body - 8
        )));
    }
    let mut loader = Loader::create(db).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut left = len;
    while left > 0 {
        let want = left.min(READ_CHUNK as u64) as usize;
        file.read_exact(&mut buf[..want])
            .map_err(|e| format!("read {}: {e}", path.display()))?;
        loader
            .feed(&buf[..want])
            .map_err(|e| corrupt(e.to_string()))?;
        left -= want as u64;
    }
    // What follows the stream is padding, up to the trailer.
    let mut at = 8 + len;
    while at < body {
        let want = (body - at).min(READ_CHUNK as u64) as usize;
        file.read_exact(&mut buf[..want])
            .map_err(|e| format!("read {}: {e}", path.display()))?;
        if let Some(i) = buf[..want].iter().position(|b| *b != 0) {
            return Err(corrupt(format!(
                "data after the stream at offset {}",
                at + i as u64
            )));
        }
        at += want as u64;
    }
    let crc = loader.crc();
    loader.finish().map_err(|e| corrupt(e.to_string()))?;
    Ok((len, crc))
}

/// The length of a snapshot file for a backend stream of `stream_len` bytes
/// (without the digest): the stream and its length, padded to 512 bytes.
pub fn body_len(stream_len: u64) -> u64 {
    (8 + stream_len).div_ceil(512) * 512
}

/// Writes a snapshot file of what `rtx` sees to `sink`, in pieces, all but
/// the SHA-256 digest, which it returns (etcd sends it alone, last).
/// `stream_len` is [`crate::backend::dump::size`] of the same transaction.
pub fn write(
    rtx: &crate::backend::ReadTx,
    stream_len: u64,
    sink: &mut dyn FnMut(Vec<u8>) -> Result<(), String>,
) -> Result<Vec<u8>, String> {
    let mut sha = sha2::Sha256::new();
    let mut prefix = Some(stream_len.to_le_bytes());
    let len = crate::backend::dump::write(rtx, &mut |mut chunk| {
        if let Some(p) = prefix.take() {
            chunk.splice(0..0, p);
        }
        sha.update(&chunk);
        sink(chunk)
    })
    .map_err(|e| e.to_string())?;
    if len != stream_len {
        return Err(format!(
            "the backend stream was {len} bytes, {stream_len} were announced"
        ));
    }
    let padding = vec![0u8; (body_len(stream_len) - 8 - stream_len) as usize];
    sha.update(&padding);
    sink(padding)?;
    Ok(sha.finalize().to_vec())
}

/// Hash, revision, live keys and size of the state in a snapshot file (read
/// into a scratch backend that is removed afterwards).
pub fn status(path: &Path) -> Result<SnapshotStatus, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let scratch = std::env::temp_dir().join(format!(
        "etcdcore-snapshot-status-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let result = (|| {
        let db = scratch.join("db");
        let (len, hash) = load(path, &db, false)?;
        let state = StateMachine::load(Backend::open(&db).map_err(|e| e.to_string())?, 0)
            .map_err(|e| e.to_string())?;
        Ok(SnapshotStatus {
            hash,
            revision: state.store.current_revision(),
            total_keys: state.store.keys_count() as u64,
            total_size: len,
        })
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Writes a new data dir holding the snapshot's data for member `cfg.name` of
/// the cluster `cfg.initial_cluster`. Refuses a data dir that has content;
/// on any failure removes what it wrote.
pub fn restore(path: &Path, cfg: &RestoreConfig) -> Result<(), String> {
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
    let result = write_data_dir(path, cfg, own, cluster_id, members);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&cfg.data_dir);
    }
    result
}

fn dir_has_entries(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

fn write_data_dir(
    path: &Path,
    cfg: &RestoreConfig,
    member_id: u64,
    cluster_id: u64,
    members: Vec<MemberRecord>,
) -> Result<(), String> {
    let db = crate::raft_node::backend_path(&cfg.data_dir);
    let snap_dir = db.parent().expect("db is in member/snap");
    std::fs::create_dir_all(snap_dir)
        .map_err(|e| format!("cannot create {}: {e}", snap_dir.display()))?;
    load(path, &db, cfg.skip_hash_check)?;
    let mut state = StateMachine::load(Backend::open(&db).map_err(|e| e.to_string())?, cluster_id)
        .map_err(|e| e.to_string())?;
    // Alarms named the old cluster's members; the new one starts clean.
    state.alarms.clear();
    state.membership = Membership::new(cluster_id, members);
    let metadata = WalMetadata {
        member_id,
        cluster_id,
        name: cfg.name.clone(),
    }
    .encode_to_vec();
    let member_dir = cfg.data_dir.join("member");
    let (mut wal, _) = Wal::open(&member_dir.join("wal"), &metadata, WalOptions::default())
        .map_err(|e| e.to_string())?;
    write_bootstrap(&mut state, &mut wal)
}

#[cfg(test)]
mod tests;
