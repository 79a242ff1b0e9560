//! The backend: etcd's buckets ([`schema`]) as the tables of one redb
//! database, at `member/snap/db` as etcd keeps its bbolt file. It holds the
//! replicated state: every version of every key, the leases, the auth store,
//! the membership, the alarms, and the consistent index that says which Raft
//! entry the state reflects.
//!
//! One writer (the applier) and any number of readers at once: redb is
//! copy-on-write, so a read transaction sees the state of one commit for as
//! long as it lives, whatever is written meanwhile.
//!
//! Commits are batched as etcd batches its backend commits: each batch of
//! applied entries is committed without an fsync (readers see it at once),
//! and every `--backend-batch-interval` or `--backend-batch-limit` a durable
//! commit makes everything before it survive a crash. Durability of each
//! acknowledged write comes from the WAL; on restart the entries after the
//! durable consistent index are applied again.

pub mod dump;
mod key_table;
pub mod schema;
mod tables;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable};

pub use key_table::{ReadKeyTable, WriteKeyTable};
pub use tables::{SavedState, Tables};

/// What the backend's page cache may hold in memory. The operating system's
/// page cache holds the rest of the file, outside our resident memory.
const CACHE_BYTES: usize = 256 << 20;

/// Bytes one entry costs beyond its key and value: redb's offsets in the leaf.
pub const ENTRY_OVERHEAD: i64 = 8;

/// A backend failure: the state on disk can no longer be trusted to match
/// what was applied, so the member stops (etcd's fail-stop on a backend
/// error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("backend {path}: {what}")]
pub struct BackendError {
    pub path: String,
    pub what: String,
}

impl BackendError {
    pub(crate) fn new(path: &Path, what: impl std::fmt::Display) -> BackendError {
        BackendError {
            path: path.display().to_string(),
            what: what.to_string(),
        }
    }
}

/// Sizes the backend keeps current for Status, the quota and /metrics.
#[derive(Debug, Default)]
pub struct Sizes {
    /// The database file's size: what etcd reports as dbSize and checks the
    /// quota against.
    file: AtomicU64,
    /// The bytes live entries take (keys, values and redb's per-entry
    /// offsets): dbSizeInUse. Compaction lowers it; the file keeps its size
    /// until a defragment rewrites it.
    live: AtomicI64,
}

impl Sizes {
    pub fn file(&self) -> u64 {
        self.file.load(Ordering::Acquire)
    }

    pub fn in_use(&self) -> u64 {
        self.live.load(Ordering::Acquire).max(0) as u64
    }
}

/// One open backend database. Cheap to clone; every clone is the same file.
#[derive(Clone)]
pub struct Backend {
    db: Arc<Database>,
    path: Arc<PathBuf>,
    sizes: Arc<Sizes>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Backend({})", self.path.display())
    }
}

impl Backend {
    /// Opens the database at `path`, creating it (with every bucket, empty)
    /// if there is none. A database that was not closed cleanly is repaired
    /// to its last durable commit by redb.
    pub fn open(path: &Path) -> Result<Backend, BackendError> {
        let err = |e: &dyn std::fmt::Display| BackendError::new(path, e);
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| err(&e))?;
        let backend = Backend {
            db: Arc::new(db),
            path: Arc::new(path.to_path_buf()),
            sizes: Arc::default(),
        };
        let tx = backend.begin_write()?;
        for bucket in schema::BUCKETS {
            tx.txn.open_table(bucket).map_err(|e| err(&e))?;
        }
        tx.commit(Durability::Immediate)?;
        backend.refresh_file_size();
        Ok(backend)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn sizes(&self) -> &Arc<Sizes> {
        &self.sizes
    }

    pub(crate) fn error(&self, e: impl std::fmt::Display) -> BackendError {
        BackendError::new(&self.path, e)
    }

    /// Sets the live-bytes count from a full scan (start-up, load).
    pub fn set_live_bytes(&self, bytes: i64) {
        self.sizes.live.store(bytes, Ordering::Release);
    }

    fn refresh_file_size(&self) {
        if let Ok(m) = std::fs::metadata(&*self.path) {
            self.sizes.file.store(m.len(), Ordering::Release);
        }
    }

    /// Writes a compact copy of the last commit beside the file: the long
    /// step of a defragment, during which nothing may be written (the
    /// applier runs it, so nothing is).
    pub fn defragment_copy(&self) -> Result<PathBuf, BackendError> {
        let copy = self.path.with_extension("defrag");
        let _ = std::fs::remove_file(&copy);
        let rtx = self.begin_read()?;
        dump::copy(&rtx, &copy)?;
        Ok(copy)
    }

    /// Puts the file at `path` in this backend's place and opens it. Reads
    /// still going on in this backend finish on the old file, which goes
    /// away with its last reader.
    pub fn replace_with(&self, path: &Path) -> Result<Backend, BackendError> {
        std::fs::rename(path, &*self.path).map_err(|e| self.error(e))?;
        dump::sync_dir(&self.path)?;
        let backend = Backend::open(&self.path)?;
        backend.set_live_bytes(self.sizes.in_use() as i64);
        Ok(backend)
    }

    /// A consistent view of the last commit.
    pub fn begin_read(&self) -> Result<ReadTx, BackendError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let key = txn.open_table(schema::KEY).map_err(|e| self.error(e))?;
        Ok(ReadTx {
            backend: self.clone(),
            txn,
            key: ReadKeyTable::new(key, self.path.clone()),
        })
    }

    /// The write transaction; there is one at a time (the applier's).
    pub fn begin_write(&self) -> Result<WriteTx, BackendError> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        Ok(WriteTx {
            backend: self.clone(),
            txn,
            live_delta: std::cell::Cell::new(0),
            failure: std::cell::RefCell::new(None),
        })
    }
}

/// Sees one entry of a bucket (key, value); false stops the iteration.
pub type EntryVisitor<'v> = dyn FnMut(&[u8], &[u8]) -> Result<bool, BackendError> + 'v;

/// A read transaction: the state of one commit.
pub struct ReadTx {
    backend: Backend,
    txn: redb::ReadTransaction,
    key: ReadKeyTable,
}

impl ReadTx {
    /// etcd's key bucket, for the MVCC store's reads.
    pub fn key_bucket(&self) -> &ReadKeyTable {
        &self.key
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Visits every entry of `bucket` in key order while `visit` returns true.
    pub fn for_each(
        &self,
        bucket: schema::Bucket,
        visit: &mut EntryVisitor<'_>,
    ) -> Result<(), BackendError> {
        let table = self
            .txn
            .open_table(bucket)
            .map_err(|e| self.backend.error(e))?;
        for item in table.iter().map_err(|e| self.backend.error(e))? {
            let (k, v) = item.map_err(|e| self.backend.error(e))?;
            if !visit(k.value(), v.value())? {
                break;
            }
        }
        Ok(())
    }

    pub fn get(&self, bucket: schema::Bucket, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let table = self
            .txn
            .open_table(bucket)
            .map_err(|e| self.backend.error(e))?;
        let v = table.get(key).map_err(|e| self.backend.error(e))?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    /// The state the backend holds beside the key bucket.
    pub fn saved_state(&self) -> Result<SavedState, BackendError> {
        SavedState::read(self)
    }
}

/// The write transaction of one batch.
pub struct WriteTx {
    backend: Backend,
    txn: redb::WriteTransaction,
    /// Live bytes added (or, negative, removed) by this transaction.
    live_delta: std::cell::Cell<i64>,
    /// The first error met by a table handle, which the caller may not have
    /// seen (it fails the commit).
    failure: std::cell::RefCell<Option<BackendError>>,
}

impl WriteTx {
    /// The tables, for applying entries.
    pub fn tables(&self) -> Result<Tables<'_>, BackendError> {
        Tables::open(self)
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    pub(crate) fn record_failure(&self, e: BackendError) -> BackendError {
        let mut f = self.failure.borrow_mut();
        if f.is_none() {
            *f = Some(e.clone());
        }
        e
    }

    pub(crate) fn add_live(&self, delta: i64) {
        self.live_delta.set(self.live_delta.get() + delta);
    }

    /// Bytes this transaction has added so far (none if it freed more than it
    /// wrote): until its commit, the file size does not show them, and a
    /// quota check during the batch must.
    pub fn pending_growth(&self) -> u64 {
        self.live_delta.get().max(0) as u64
    }

    /// The first error any table handle met, if any: the batch cannot be
    /// committed.
    pub fn failure(&self) -> Option<BackendError> {
        self.failure.borrow().clone()
    }

    /// Commits: `Durability::None` makes the batch visible to readers at
    /// once; `Immediate` also makes it, and every commit before it, survive
    /// a crash (with redb's quick repair, so a restart after a crash does not
    /// walk the whole file).
    pub fn commit(mut self, durability: Durability) -> Result<(), BackendError> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        match durability {
            Durability::Immediate => self.txn.set_quick_repair(true),
            _ => self
                .txn
                .set_durability(durability)
                .map_err(|e| self.backend.error(e))?,
        }
        let delta = self.live_delta.get();
        self.txn.commit().map_err(|e| self.backend.error(e))?;
        self.backend.sizes.live.fetch_add(delta, Ordering::AcqRel);
        self.backend.refresh_file_size();
        Ok(())
    }
}

/// The bytes an entry counts for in [`Sizes::in_use`].
pub fn entry_bytes(key: &[u8], value: &[u8]) -> i64 {
    (key.len() + value.len()) as i64 + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests;
