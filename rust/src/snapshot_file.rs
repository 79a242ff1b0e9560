//! Snapshot files in etcd's format: a bbolt database holding etcd 3.5's
//! buckets, then the SHA-256 of it. Maintenance.Snapshot streams one written
//! from a backend read transaction (our tables are etcd's buckets, so this is
//! a copy); `etcdcorectl snapshot status` describes one as `etcdutl snapshot
//! status` does; `snapshot restore` seeds a new member's data dir from one,
//! saved from etcdcore or from etcd 3.4/3.5.
//!
//! Files are read and written in pieces, never whole. A restore keeps the
//! keyspace, its revisions and compaction point, the leases and the auth
//! store, and gives the data a new cluster: the membership from
//! `--initial-cluster`, ids derived from the peer URLs and token as at any
//! first start, and the log restarted at the bootstrap index, like the data
//! dir of a new cluster's member.

use std::path::{Path, PathBuf};

use prost::Message as _;

use crate::backend::dump::{bucket_index, Loader};
use crate::backend::{schema, Backend, BackendError, ReadTx};
use crate::bbolt::{self, HashCheck};
use crate::identity;
use crate::membership::Membership;
use crate::pb::internal::{MemberRecord, WalMetadata};
use crate::raft_node::write_bootstrap;
use crate::state_machine::StateMachine;
use crate::wal::{Wal, WalOptions};

/// What `snapshot status` reports, as etcdutl computes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// crc32c over every bucket's name, keys and values, in order.
    pub hash: u32,
    /// The main revision of the key bucket's last key.
    pub revision: i64,
    /// Entries in all buckets.
    pub total_keys: u64,
    /// The database's size (bbolt's high-water mark).
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

/// A backend read transaction as the bbolt writer's source: its tables are
/// the buckets. The writer reads each bucket twice (it plans, then writes);
/// a read transaction sees the same data both times.
pub struct BackendSource<'a>(pub &'a ReadTx);

impl bbolt::Source for BackendSource<'_> {
    fn bucket_names(&mut self) -> Result<Vec<Vec<u8>>, bbolt::Error> {
        use redb::TableHandle;
        Ok(schema::BUCKETS
            .iter()
            .map(|b| b.name().as_bytes().to_vec())
            .collect())
    }

    fn scan(&mut self, bucket: &[u8], visit: &mut bbolt::Visit<'_>) -> Result<(), bbolt::Error> {
        use redb::TableHandle;
        let def = *schema::BUCKETS
            .iter()
            .find(|b| b.name().as_bytes() == bucket)
            .ok_or_else(|| bbolt::Error::Input("no such bucket".into()))?;
        let mut failed = None;
        self.0
            .for_each(def, &mut |k, v| match visit(k, v) {
                Ok(()) => Ok(true),
                Err(e) => {
                    failed = Some(e);
                    Ok(false)
                }
            })
            .map_err(|e: BackendError| bbolt::Error::Source(Box::new(e)))?;
        failed.map_or(Ok(()), Err)
    }
}

/// Plans the bbolt file of what `rtx` sees (one pass over it); the plan's
/// `file_size` is the snapshot's size before its digest.
pub fn plan(rtx: &ReadTx) -> Result<bbolt::Plan, String> {
    bbolt::plan(&mut BackendSource(rtx), &bbolt::WriteOptions::default()).map_err(|e| e.to_string())
}

/// Opens a snapshot file as bbolt, refusing etcdcore's older formats with a
/// message that says what they are.
fn open(path: &Path, check: HashCheck) -> Result<bbolt::Db<bbolt::FileSource>, String> {
    match bbolt::Db::open_snapshot(path, check) {
        Ok(db) => Ok(db),
        Err(e) if older_etcdcore_format(path) => Err(format!(
            "{} is a snapshot in etcdcore's own older format, not etcd's ({e}); this \
             version reads etcd's format only: save a new snapshot of the member with it",
            path.display()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether the file has the shape of a snapshot saved by etcdcore before it
/// wrote etcd's format: a little-endian u64 length, that many bytes of state
/// (the newer ones starting "ECDUMP01"), a checksum or end record, zeros to a
/// 512-byte boundary, then the SHA-256.
fn older_etcdcore_format(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 16];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(size) = f.metadata().map(|m| m.len()) else {
        return false;
    };
    if f.read_exact(&mut head).is_err() || size % 512 != 32 {
        return false;
    }
    let body = size - 32;
    let len = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
    &head[8..] == b"ECDUMP01"
        || len
            .checked_add(12)
            .is_some_and(|end| end <= body && body - end < 512)
}

/// Hash, revision, entries and size of a snapshot file, computed as
/// `etcdutl snapshot status` computes them. As etcdutl, it reads the database
/// without checking the trailer's digest (so a bbolt file copied out of an
/// etcd data dir works too); damage to the structure is still an error.
pub fn status(path: &Path) -> Result<SnapshotStatus, String> {
    let db = open(path, HashCheck::Skip)?;
    let mut crc = 0u32;
    let mut st = SnapshotStatus {
        hash: 0,
        revision: 0,
        total_keys: 0,
        total_size: db.size(),
    };
    for name in db.buckets().map_err(|e| e.to_string())? {
        crc = crc32c::crc32c_append(crc, &name);
        let bucket = db
            .bucket(&name)
            .map_err(|e| e.to_string())?
            .ok_or("a listed bucket is missing")?;
        let is_key = name == b"key";
        let mut c = bucket.cursor();
        while let Some(e) = c.next().map_err(|e| e.to_string())? {
            crc = crc32c::crc32c_append(crc, e.key);
            crc = crc32c::crc32c_append(crc, e.value);
            if is_key {
                if let Ok((rev, _)) = schema::parse_revision(e.key) {
                    st.revision = rev.main;
                }
            }
            st.total_keys += 1;
        }
    }
    st.hash = crc;
    Ok(st)
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
    let check = if cfg.skip_hash_check {
        HashCheck::Skip
    } else {
        HashCheck::Verify
    };
    // Opened (and its digest checked) before anything is written.
    let db = open(path, check)?;
    let result = write_data_dir(&db, cfg, own, cluster_id, members);
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

/// Copies the snapshot's buckets into a new backend at `db_path`. Buckets
/// etcd has and etcdcore does not keep (none in 3.4 or 3.5) are left out.
fn load(db: &bbolt::Db<bbolt::FileSource>, db_path: &Path) -> Result<(), String> {
    use redb::TableHandle;
    let mut loader = Loader::create(db_path).map_err(|e| e.to_string())?;
    for name in db.buckets().map_err(|e| e.to_string())? {
        let Some(def) = schema::BUCKETS
            .iter()
            .find(|b| b.name().as_bytes() == name.as_slice())
        else {
            continue;
        };
        let index = bucket_index(*def);
        let bucket = db
            .bucket(&name)
            .map_err(|e| e.to_string())?
            .ok_or("a listed bucket is missing")?;
        let mut c = bucket.cursor();
        while let Some(e) = c.next().map_err(|e| e.to_string())? {
            if e.is_bucket() {
                return Err(format!(
                    "bucket {:?} holds a nested bucket, which etcd never writes",
                    String::from_utf8_lossy(&name)
                ));
            }
            loader
                .record(index, e.key, e.value)
                .map_err(|e| e.to_string())?;
        }
    }
    loader.finish_copy().map_err(|e| e.to_string())
}

fn write_data_dir(
    db: &bbolt::Db<bbolt::FileSource>,
    cfg: &RestoreConfig,
    member_id: u64,
    cluster_id: u64,
    members: Vec<MemberRecord>,
) -> Result<(), String> {
    let db_path = crate::raft_node::backend_path(&cfg.data_dir);
    let snap_dir = db_path.parent().expect("db is in member/snap");
    std::fs::create_dir_all(snap_dir)
        .map_err(|e| format!("cannot create {}: {e}", snap_dir.display()))?;
    load(db, &db_path)?;
    let backend = Backend::open(&db_path).map_err(|e| e.to_string())?;
    let mut state = StateMachine::load(backend, cluster_id)
        .map_err(|e| format!("the snapshot's data is not a consistent etcd state: {e}"))?;
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
