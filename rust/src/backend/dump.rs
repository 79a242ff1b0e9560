//! A backend as a byte stream, and a new backend from one: how a leader sends
//! its state to a follower too far behind for the log, and how a defragment
//! rewrites the file. The stream is written from one read transaction, so it
//! is one consistent state, and neither side holds more than a chunk of it in
//! memory.
//!
//! ```text
//! "ECDUMP01"
//! record*   : bucket u8 (index in schema::BUCKETS) | key len u32 LE | value len u32 LE | key | value
//! end       : 0xff | record count u64 LE | crc32c of every byte before it u32 LE
//! ```

use std::path::{Path, PathBuf};

use redb::{Database, Durability, TableHandle};

use super::schema::{self, BUCKETS};
use super::{BackendError, ReadTx};

const MAGIC: &[u8; 8] = b"ECDUMP01";
const END: u8 = 0xff;
const RECORD_HEADER: usize = 1 + 4 + 4;
/// What the writer hands its sink at a time.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Records the loader puts in one write transaction (at most).
const LOAD_BATCH: usize = 20_000;

/// Writes the whole backend `rtx` sees to `sink`, in chunks of about
/// [`CHUNK_BYTES`]. Returns the bytes written.
pub fn write(
    rtx: &ReadTx,
    sink: &mut dyn FnMut(Vec<u8>) -> Result<(), String>,
) -> Result<u64, BackendError> {
    let mut out = Vec::with_capacity(CHUNK_BYTES + 4096);
    let mut crc = 0u32;
    let mut total = 0u64;
    let mut count = 0u64;
    let mut flush = |out: &mut Vec<u8>, crc: &mut u32, total: &mut u64| {
        *crc = crc32c::crc32c_append(*crc, out);
        *total += out.len() as u64;
        let chunk = std::mem::replace(out, Vec::with_capacity(CHUNK_BYTES + 4096));
        sink(chunk).map_err(|e| rtx.backend().error(format!("sending the backend: {e}")))
    };
    out.extend_from_slice(MAGIC);
    for (i, bucket) in BUCKETS.iter().enumerate() {
        rtx.for_each(*bucket, &mut |k, v| {
            out.push(i as u8);
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(v);
            count += 1;
            if out.len() >= CHUNK_BYTES {
                flush(&mut out, &mut crc, &mut total)?;
            }
            Ok(true)
        })?;
    }
    out.push(END);
    out.extend_from_slice(&count.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    flush(&mut out, &mut 0, &mut total)?;
    Ok(total)
}

/// The size [`write`] will produce for what `rtx` sees (a pass over the
/// backend without the copying), for streams that announce their length.
pub fn size(rtx: &ReadTx) -> Result<u64, BackendError> {
    let mut total = (MAGIC.len() + 1 + 8 + 4) as u64;
    for bucket in BUCKETS {
        rtx.for_each(bucket, &mut |k, v| {
            total += (RECORD_HEADER + k.len() + v.len()) as u64;
            Ok(true)
        })?;
    }
    Ok(total)
}

/// Builds a new backend file from a stream fed to it in pieces of any size.
/// The file appears under its final name only once the stream has ended and
/// checked out; a loader dropped before that removes what it wrote.
pub struct Loader {
    path: PathBuf,
    tmp: PathBuf,
    db: Option<Database>,
    /// Records waiting for the next write transaction, in stream order.
    batch: Vec<(usize, Vec<u8>, Vec<u8>)>,
    batch_bytes: usize,
    /// Bytes received but not yet parsed (a record cut by a chunk boundary).
    pending: Vec<u8>,
    started: bool,
    crc: u32,
    count: u64,
    done: bool,
}

/// Bytes of records the loader gathers before writing them.
const LOAD_BATCH_BYTES: usize = 8 << 20;
/// A load writes in key order and reads nothing back: a small page cache
/// does, and keeps a restore's memory small.
const LOAD_CACHE_BYTES: usize = 32 << 20;

impl Loader {
    /// Starts a backend at `path`, which must not exist yet.
    pub fn create(path: &Path) -> Result<Loader, BackendError> {
        if path.exists() {
            return Err(BackendError::new(path, "already exists"));
        }
        let tmp = path.with_extension("loading");
        let _ = std::fs::remove_file(&tmp);
        let db = Database::builder()
            .set_cache_size(LOAD_CACHE_BYTES)
            .create(&tmp)
            .map_err(|e| BackendError::new(&tmp, e))?;
        Ok(Loader {
            path: path.to_path_buf(),
            tmp,
            db: Some(db),
            batch: Vec::new(),
            batch_bytes: 0,
            pending: Vec::new(),
            started: false,
            crc: 0,
            count: 0,
            done: false,
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> BackendError {
        BackendError::new(&self.tmp, e)
    }

    /// Adds one entry (the copy of a live backend feeds these directly).
    pub fn record(&mut self, bucket: usize, key: &[u8], value: &[u8]) -> Result<(), BackendError> {
        if bucket >= BUCKETS.len() {
            return Err(self.err(format!("record for unknown bucket {bucket}")));
        }
        self.count += 1;
        self.batch_bytes += key.len() + value.len();
        self.batch.push((bucket, key.to_vec(), value.to_vec()));
        if self.batch.len() >= LOAD_BATCH || self.batch_bytes >= LOAD_BATCH_BYTES {
            self.write_batch(Durability::None)?;
        }
        Ok(())
    }

    /// Writes the gathered records in one transaction, each run of one
    /// bucket through one table handle.
    fn write_batch(&mut self, durability: Durability) -> Result<(), BackendError> {
        let db = self.db.as_ref().expect("loader has its database");
        let tmp = &self.tmp;
        let err = |e: &dyn std::fmt::Display| BackendError::new(tmp, e);
        let mut txn = db.begin_write().map_err(|e| err(&e))?;
        let mut records = self.batch.drain(..).peekable();
        while let Some((bucket, key, value)) = records.next() {
            let mut table = txn.open_table(BUCKETS[bucket]).map_err(|e| err(&e))?;
            table.insert(&key[..], &value[..]).map_err(|e| err(&e))?;
            while let Some((_, key, value)) = records.next_if(|(b, _, _)| *b == bucket) {
                table.insert(&key[..], &value[..]).map_err(|e| err(&e))?;
            }
        }
        drop(records);
        if matches!(durability, Durability::Immediate) {
            // Every bucket exists, even those the stream had nothing for.
            for b in BUCKETS {
                txn.open_table(b).map_err(|e| err(&e))?;
            }
            txn.set_quick_repair(true);
        } else {
            txn.set_durability(durability).map_err(|e| err(&e))?;
        }
        txn.commit().map_err(|e| err(&e))?;
        self.batch_bytes = 0;
        Ok(())
    }

    /// The crc32c of the stream fed so far (the whole stream's once it ended).
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// Parses the next piece of a [`write`] stream.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), BackendError> {
        if self.done {
            return Err(self.err("data after the end of the stream"));
        }
        let joined;
        let bytes: &[u8] = if self.pending.is_empty() {
            chunk
        } else {
            let mut pending = std::mem::take(&mut self.pending);
            pending.extend_from_slice(chunk);
            joined = pending;
            &joined
        };
        let mut at = 0;
        if !self.started {
            if bytes.len() < MAGIC.len() {
                self.pending = bytes.to_vec();
                return Ok(());
            }
            if &bytes[..MAGIC.len()] != MAGIC {
                return Err(self.err("not a backend stream (bad magic)"));
            }
            self.crc = crc32c::crc32c_append(self.crc, MAGIC);
            at = MAGIC.len();
            self.started = true;
        }
        while at < bytes.len() {
            let rest = &bytes[at..];
            if rest[0] == END {
                if rest.len() < 13 {
                    break;
                }
                let count = u64::from_le_bytes(rest[1..9].try_into().expect("8 bytes"));
                let crc = u32::from_le_bytes(rest[9..13].try_into().expect("4 bytes"));
                let want = crc32c::crc32c_append(self.crc, &rest[..9]);
                if count != self.count || crc != want {
                    return Err(self.err(format!(
                        "stream damaged: {} records with crc {want:08x}, the end says {count} with {crc:08x}",
                        self.count
                    )));
                }
                if rest.len() > 13 {
                    return Err(self.err("data after the end of the stream"));
                }
                self.crc = want;
                self.done = true;
                return Ok(());
            }
            if rest.len() < RECORD_HEADER {
                break;
            }
            let klen = u32::from_le_bytes(rest[1..5].try_into().expect("4 bytes")) as usize;
            let vlen = u32::from_le_bytes(rest[5..9].try_into().expect("4 bytes")) as usize;
            let len = RECORD_HEADER + klen + vlen;
            if rest.len() < len {
                break;
            }
            let record = &rest[..len];
            self.crc = crc32c::crc32c_append(self.crc, record);
            let (key, value) = record[RECORD_HEADER..].split_at(klen);
            self.record(record[0] as usize, key, value)?;
            at += len;
        }
        self.pending = bytes[at..].to_vec();
        Ok(())
    }

    /// Ends a stream fed through [`Loader::feed`]: refuses one that did not
    /// reach its end record, then makes the file durable and puts it in place.
    pub fn finish(mut self) -> Result<(), BackendError> {
        if !self.done {
            return Err(self.err("the stream ended early"));
        }
        self.install()
    }

    /// Ends a copy fed through [`Loader::record`].
    pub fn finish_copy(mut self) -> Result<(), BackendError> {
        self.install()
    }

    fn install(&mut self) -> Result<(), BackendError> {
        self.write_batch(Durability::Immediate)?;
        let db = self.db.take().expect("loader has its database");
        db.close().map_err(|e| self.err(e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| self.err(e))?;
        sync_dir(&self.path)
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        if self.db.is_some() {
            self.db = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Makes a rename in `path`'s directory durable.
pub(crate) fn sync_dir(path: &Path) -> Result<(), BackendError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BackendError::new(dir, e))
}

/// Copies everything `rtx` sees into a new backend file at `path` (a
/// defragment: the copy is written in key order, so its pages are full and
/// the file holds no free space).
pub fn copy(rtx: &ReadTx, path: &Path) -> Result<(), BackendError> {
    let mut loader = Loader::create(path)?;
    for (i, bucket) in BUCKETS.iter().enumerate() {
        rtx.for_each(*bucket, &mut |k, v| {
            loader.record(i, k, v)?;
            Ok(true)
        })?;
    }
    loader.finish_copy()
}

/// The bucket index [`write`] uses for `bucket`.
pub fn bucket_index(bucket: schema::Bucket) -> usize {
    BUCKETS
        .iter()
        .position(|b| b.name() == bucket.name())
        .expect("a known bucket")
}
