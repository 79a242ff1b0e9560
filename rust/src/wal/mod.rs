//! The write-ahead log: raft-rs's durable log, hard state and snapshot marks.
//!
//! It owns one directory of segment files (`segment.rs`), each a run of
//! checksummed records (`record.rs`) beginning with the member's metadata.
//! Nothing raft-specific is decoded here: entries and hard states are opaque
//! bytes the caller encoded.
//!
//! Writing is group-committed: [`Wal::append_entries`], [`Wal::set_hard_state`]
//! and [`Wal::mark_snapshot`] only buffer, and [`Wal::sync`] writes the
//! buffer with one `fdatasync`. Raft must not act on (send, acknowledge,
//! apply) anything it appended until `sync` has returned `Ok`.
//!
//! Opening replays every segment ([`Replay`]). A record cut short by a crash
//! at the end of the last segment is cut off and reported; damage anywhere
//! else is [`WalError::Corrupt`], because serving from a log with a hole in
//! the middle would silently lose or invent committed writes.

mod record;
mod replay;
mod segment;

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::metrics::Histogram;

use record::{DecodeError, Record};
use replay::Replayer;
pub use replay::{LogEntry, Replay};
use segment::SegmentName;

/// Tunables for [`Wal::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// A segment this large is closed and a new one begun before the next
    /// write, so that old entries can be released a segment at a time. A
    /// segment overshoots by at most one `sync` batch.
    pub segment_bytes: u64,
    /// Allocate each new segment's `segment_bytes` up front (zero-filled),
    /// as etcd does: appending inside an allocated file lets `fdatasync`
    /// skip the size and extent updates a growing file needs (measured here:
    /// 0.21 ms instead of 0.31-0.34 ms per sync).
    pub preallocate: bool,
}

impl WalOptions {
    fn prealloc_bytes(&self) -> u64 {
        if self.preallocate {
            self.segment_bytes
        } else {
            0
        }
    }
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 << 20,
            preallocate: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal: i/o error on {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("wal: corrupt record in {} at offset {offset}: {reason}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A record could not be framed; nothing of its batch was written.
    #[error(
        "wal: a {kind} record of {len} bytes is over the {} byte limit",
        record::MAX_PAYLOAD
    )]
    TooLarge { kind: &'static str, len: usize },
    /// A previous write or fsync failed. What reached the disk is unknown
    /// (a failed fsync may have dropped dirty pages), so the WAL takes no
    /// further writes; reopening it repairs or reports the tail.
    #[error("wal: an earlier write failed; no further writes are accepted")]
    Failed,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(file: &Path, offset: usize, reason: impl Into<String>) -> WalError {
    WalError::Corrupt {
        file: file.to_path_buf(),
        offset: offset as u64,
        reason: reason.into(),
    }
}

/// An open WAL, positioned to append at the end of its last segment.
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    /// Written at the head of every new segment.
    metadata: Vec<u8>,
    /// Every segment on disk, by seq; the last is the one being written.
    segments: Vec<SegmentName>,
    file: File,
    file_len: u64,

    /// Records appended since the last `sync`.
    buf: Vec<u8>,
    /// The lowest entry index in `buf`.
    pending_min_index: Option<u64>,
    pending_hard_state: Option<Vec<u8>>,
    pending_snapshot: Option<(u64, u64)>,
    /// The first record that could not be framed; fails the next `sync`.
    too_large: Option<record::TooLarge>,

    /// The newest hard state and snapshot mark on disk, repeated at the head
    /// of each new segment so that releasing older segments never loses them.
    hard_state: Option<Vec<u8>>,
    snapshot: Option<(u64, u64)>,
    last_index: u64,
    failed: bool,
    /// Where each `fdatasync`'s duration goes (etcd's wal_fsync_duration).
    fsync_seconds: Option<Arc<Histogram>>,
}

impl Wal {
    /// Opens the WAL in `dir`, creating it (with `metadata` at the head of
    /// every segment) if there is none yet.
    ///
    /// An existing WAL keeps the metadata it was created with; that is what
    /// [`Replay::metadata`] returns, for the caller to check it is opening
    /// its own data.
    pub fn open(dir: &Path, metadata: &[u8], opts: WalOptions) -> Result<(Wal, Replay), WalError> {
        let existed = dir.is_dir();
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        if !existed {
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            segment::sync_dir(parent).map_err(io_err(parent))?;
        }

        let names = segment::list(dir).map_err(io_err(dir))?;
        if names.is_empty() {
            return Self::create(dir, metadata, opts);
        }
        for pair in names.windows(2) {
            if pair[1].seq != pair[0].seq + 1 {
                return Err(corrupt(
                    &pair[1].path(dir),
                    0,
                    format!(
                        "segment {} is missing (the one before this is {})",
                        pair[0].seq + 1,
                        pair[0].file_name()
                    ),
                ));
            }
        }

        let (replay, last_len) = replay_segments(dir, &names)?;
        let path = names.last().unwrap().path(dir);
        let file = segment::open_for_write(&path).map_err(io_err(&path))?;
        let metadata = replay.metadata.as_deref().unwrap_or(metadata);
        let mut wal = Wal::positioned(dir, opts, metadata, names, file, last_len, &replay);
        if last_len == 0 {
            // A crash tore even the metadata off the last segment (or it was
            // emptied by hand); give it a head again before anything follows.
            wal.buf = wal.segment_header()?;
            wal.write_buf()?;
        }
        Ok((wal, replay))
    }

    fn create(dir: &Path, metadata: &[u8], opts: WalOptions) -> Result<(Wal, Replay), WalError> {
        let name = SegmentName {
            seq: 0,
            first_index: 0,
        };
        let mut header = Vec::new();
        record::encode_metadata(&mut header, metadata).map_err(too_large)?;
        let path = name.path(dir);
        let file =
            segment::create(dir, name, &header, opts.prealloc_bytes()).map_err(io_err(&path))?;
        let replay = Replay::default();
        let len = header.len() as u64;
        let wal = Wal::positioned(dir, opts, metadata, vec![name], file, len, &replay);
        Ok((wal, replay))
    }

    /// A WAL appending to `file`, the last of `segments`, `file_len` bytes
    /// long, with the durable state `replay` found.
    fn positioned(
        dir: &Path,
        opts: WalOptions,
        metadata: &[u8],
        segments: Vec<SegmentName>,
        file: File,
        file_len: u64,
        replay: &Replay,
    ) -> Wal {
        Wal {
            dir: dir.to_path_buf(),
            opts,
            metadata: metadata.to_vec(),
            segments,
            file,
            file_len,
            buf: Vec::new(),
            fsync_seconds: None,
            pending_min_index: None,
            pending_hard_state: None,
            pending_snapshot: None,
            too_large: None,
            hard_state: replay.hard_state.clone(),
            snapshot: replay.snapshot,
            last_index: replay.last_index(),
            failed: false,
        }
    }

    /// Buffers raft entries as `(index, term, encoded Entry)`, in log order.
    /// An index at or below one already appended replaces that entry and
    /// everything after it, as raft does when a new leader overwrites an
    /// uncommitted tail.
    pub fn append_entries(&mut self, entries: &[(u64, u64, &[u8])]) {
        for &(index, term, data) in entries {
            if let Err(e) = record::encode_entry(&mut self.buf, index, term, data) {
                self.too_large.get_or_insert(e);
                continue;
            }
            self.pending_min_index = Some(self.pending_min_index.map_or(index, |m| m.min(index)));
            self.last_index = index;
        }
    }

    /// Times every `fdatasync` from now on into `histogram`.
    pub fn time_fsyncs(&mut self, histogram: Arc<Histogram>) {
        self.fsync_seconds = Some(histogram);
    }

    /// Buffers an encoded raft `HardState`; the last one written wins.
    pub fn set_hard_state(&mut self, hard_state: &[u8]) {
        match record::encode_hard_state(&mut self.buf, hard_state) {
            Ok(()) => self.pending_hard_state = Some(hard_state.to_vec()),
            Err(e) => {
                self.too_large.get_or_insert(e);
            }
        }
    }

    /// Buffers a mark that a snapshot at (`index`, `term`) is durable, so
    /// replay can skip the entries it covers. Write the snapshot itself
    /// first: the mark is a promise that it exists.
    pub fn mark_snapshot(&mut self, index: u64, term: u64) {
        record::encode_snapshot_mark(&mut self.buf, index, term);
        self.pending_snapshot = Some((index, term));
        self.last_index = self.last_index.max(index);
    }

    /// Writes everything buffered and makes it durable with one
    /// `fdatasync`; a no-op when nothing is buffered. Any error leaves the
    /// WAL refusing further writes ([`WalError::Failed`]).
    pub fn sync(&mut self) -> Result<(), WalError> {
        if self.failed {
            return Err(WalError::Failed);
        }
        if self.buf.is_empty() && self.too_large.is_none() {
            return Ok(());
        }
        // Raft already believes these records are on their way in order;
        // dropping one from the middle of a batch would make a hole.
        if let Some(record::TooLarge { kind, len }) = self.too_large.take() {
            self.failed = true;
            return Err(WalError::TooLarge { kind, len });
        }
        if self.file_len >= self.opts.segment_bytes {
            self.roll()?;
        }
        self.write_buf()?;
        self.pending_min_index = None;
        if let Some(hs) = self.pending_hard_state.take() {
            self.hard_state = Some(hs);
        }
        if let Some(s) = self.pending_snapshot.take() {
            self.snapshot = Some(s);
        }
        Ok(())
    }

    fn write_buf(&mut self) -> Result<(), WalError> {
        let path = self.current_path();
        // Positional: a preallocated segment is longer than its records.
        let res = self
            .file
            .write_all_at(&self.buf, self.file_len)
            .and_then(|()| self.fdatasync());
        if let Err(e) = res {
            self.failed = true;
            return Err(io_err(&path)(e));
        }
        self.file_len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Only the `fdatasync` is timed, as etcd times it (not the write before).
    fn fdatasync(&self) -> io::Result<()> {
        let start = Instant::now();
        let res = self.file.sync_data();
        if let Some(h) = &self.fsync_seconds {
            h.observe(start.elapsed());
        }
        res
    }

    /// Closes the current segment and starts the next.
    fn roll(&mut self) -> Result<(), WalError> {
        let current = *self.segments.last().unwrap();
        let name = SegmentName {
            seq: current.seq + 1,
            // Every entry still live in the older segments is below this:
            // the batch about to be written supersedes any at or above it.
            first_index: self.pending_min_index.unwrap_or(self.last_index + 1),
        };
        let header = self.segment_header()?;
        let path = name.path(&self.dir);
        match segment::create(&self.dir, name, &header, self.opts.prealloc_bytes()) {
            Ok(file) => {
                self.file = file;
                self.file_len = header.len() as u64;
                self.segments.push(name);
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(io_err(&path)(e))
            }
        }
    }

    /// Metadata, then the newest durable hard state and snapshot mark.
    fn segment_header(&self) -> Result<Vec<u8>, WalError> {
        let mut header = Vec::new();
        record::encode_metadata(&mut header, &self.metadata).map_err(too_large)?;
        if let Some(hs) = &self.hard_state {
            record::encode_hard_state(&mut header, hs).map_err(too_large)?;
        }
        if let Some((index, term)) = self.snapshot {
            record::encode_snapshot_mark(&mut header, index, term);
        }
        Ok(header)
    }

    /// Deletes the oldest segments whose entries are all below `index`,
    /// after a snapshot at `index`. Only entries covered by a snapshot mark
    /// already made durable by [`Wal::sync`] are released, so a replay never
    /// starts at a hole; the current segment is never deleted.
    pub fn release_to(&mut self, index: u64) -> Result<(), WalError> {
        let covered = index.min(self.snapshot.map_or(0, |(i, _)| i));
        // A segment's entries are all below the next segment's first_index.
        while self.segments.len() > 1 && self.segments[1].first_index <= covered {
            let path = self.segments[0].path(&self.dir);
            fs::remove_file(&path).map_err(io_err(&path))?;
            // One at a time: should a crash undo a later removal but not an
            // earlier one, the survivors must still be a run without gaps.
            segment::sync_dir(&self.dir).map_err(io_err(&self.dir))?;
            self.segments.remove(0);
        }
        Ok(())
    }

    /// The index of the last entry appended (buffered or durable), or of the
    /// snapshot mark when no entry follows it; 0 for an empty log.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    fn current_path(&self) -> PathBuf {
        self.segments.last().unwrap().path(&self.dir)
    }
}

/// Reads every segment in order into a [`Replay`], cutting a torn tail off
/// the last one. Returns the replay and the last segment's length after it.
fn replay_segments(dir: &Path, names: &[SegmentName]) -> Result<(Replay, u64), WalError> {
    let mut replayer = Replayer::new();
    let mut repaired_tail = None;
    let mut last_len = 0;
    for (i, name) in names.iter().enumerate() {
        let is_last = i + 1 == names.len();
        let path = name.path(dir);
        let data = segment::read(&path).map_err(io_err(&path))?;
        let mut off = 0;
        while off < data.len() {
            if is_last && data[off..].iter().all(|&b| b == 0) {
                // The preallocated, never-written rest of the segment.
                break;
            }
            match record::decode(&data[off..]) {
                Ok((rec, n)) => {
                    if off == 0 && !matches!(rec, Record::Metadata(_)) {
                        return Err(corrupt(&path, 0, "segment does not begin with metadata"));
                    }
                    replayer
                        .apply(rec, (i, off))
                        .map_err(|reason| corrupt(&path, off, reason))?;
                    off += n;
                }
                Err(e) if is_last && is_torn_tail(&e, &data[off..]) => {
                    segment::truncate(&path, off as u64).map_err(io_err(&path))?;
                    repaired_tail = Some((path.clone(), off as u64));
                    break;
                }
                Err(e) => return Err(corrupt(&path, off, e.to_string())),
            }
        }
        if off == 0 && !is_last {
            return Err(corrupt(&path, 0, "segment is empty"));
        }
        last_len = off as u64;
    }
    let mut replay = replayer
        .finish()
        .map_err(|((i, off), reason)| corrupt(&names[i].path(dir), off, reason))?;
    replay.repaired_tail = repaired_tail;
    Ok((replay, last_len))
}

fn too_large(e: record::TooLarge) -> WalError {
    WalError::TooLarge {
        kind: e.kind,
        len: e.len,
    }
}

/// Whether a bad record at the end of the last segment is what a crash in
/// the middle of a write leaves behind, rather than damage to data that was
/// once durable: cut short with no whole record after it, or failing its
/// checksum with nothing but zeros after it (file systems may expose
/// unwritten blocks as zeros). A damaged length field also reads as "cut
/// short"; the records still standing behind it tell the two apart.
fn is_torn_tail(err: &DecodeError, rest: &[u8]) -> bool {
    match err {
        DecodeError::Truncated => !(1..rest.len()).any(|o| record::decode(&rest[o..]).is_ok()),
        DecodeError::BadChecksum { .. } => {
            let end = record::framed_len(rest).expect("checksummed records are whole");
            rest[end..].iter().all(|&b| b == 0)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const META: &[u8] = b"member-1";

    fn open(dir: &Path) -> (Wal, Replay) {
        Wal::open(dir, META, WalOptions::default()).unwrap()
    }

    fn open_small(dir: &Path, segment_bytes: u64) -> (Wal, Replay) {
        Wal::open(
            dir,
            META,
            WalOptions {
                segment_bytes,
                preallocate: false,
            },
        )
        .unwrap()
    }

    fn data(index: u64, term: u64) -> Vec<u8> {
        format!("entry {index} of term {term}").into_bytes()
    }

    /// Appends entries `range` at `term` and syncs them as one batch.
    fn append(wal: &mut Wal, range: std::ops::RangeInclusive<u64>, term: u64) {
        let owned: Vec<(u64, u64, Vec<u8>)> = range.map(|i| (i, term, data(i, term))).collect();
        let refs: Vec<(u64, u64, &[u8])> = owned.iter().map(|(i, t, d)| (*i, *t, &d[..])).collect();
        wal.append_entries(&refs);
        wal.sync().unwrap();
    }

    fn ids(replay: &Replay) -> Vec<(u64, u64)> {
        replay.entries.iter().map(|e| (e.index, e.term)).collect()
    }

    fn expect_ids(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<(u64, u64)> {
        range.map(|i| (i, term)).collect()
    }

    fn segment_paths(dir: &Path) -> Vec<PathBuf> {
        segment::list(dir)
            .unwrap()
            .iter()
            .map(|s| s.path(dir))
            .collect()
    }

    /// Start offsets of every record in a segment file.
    fn record_offsets(path: &Path) -> Vec<usize> {
        let bytes = fs::read(path).unwrap();
        let mut offs = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            offs.push(at);
            at += record::decode(&bytes[at..]).unwrap().1;
        }
        offs
    }

    fn flip_byte(path: &Path, at: usize) {
        let mut bytes = fs::read(path).unwrap();
        bytes[at] ^= 0x5a;
        fs::write(path, bytes).unwrap();
    }

    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for dent in fs::read_dir(from).unwrap() {
            let dent = dent.unwrap();
            fs::copy(dent.path(), to.join(dent.file_name())).unwrap();
        }
    }

    fn expect_corrupt(dir: &Path) -> (PathBuf, u64, String) {
        match Wal::open(dir, META, WalOptions::default()) {
            Err(WalError::Corrupt {
                file,
                offset,
                reason,
            }) => (file, offset, reason),
            Err(e) => panic!("expected Corrupt, got {e}"),
            Ok(_) => panic!("expected Corrupt, opened fine"),
        }
    }

    #[test]
    fn empty_dir_creates_fresh_wal_with_one_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let (wal, replay) = open(&dir);
        assert_eq!(replay, Replay::default());
        assert_eq!(wal.last_index(), 0);
        let segs = segment_paths(&dir);
        assert_eq!(segs.len(), 1);
        assert!(segs[0].ends_with("0000000000000000-0000000000000000.wal"));
        let bytes = fs::read(&segs[0]).unwrap();
        let (first, len) = record::decode(&bytes).unwrap();
        assert_eq!(first, Record::Metadata(META.to_vec()));
        assert_eq!(bytes.len() as u64, WalOptions::default().segment_bytes);
        assert!(
            bytes[len..].iter().all(|&b| b == 0),
            "preallocated, zero-filled"
        );
    }

    #[test]
    fn existing_empty_dir_is_a_fresh_wal() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, replay) = open(tmp.path());
        assert_eq!(replay, Replay::default());
        let (_, replay) = open(tmp.path());
        assert_eq!(replay.metadata.as_deref(), Some(META));
    }

    #[test]
    fn entries_hard_state_and_snapshot_mark_survive_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = open(tmp.path());
            append(&mut wal, 1..=5, 1);
            wal.set_hard_state(b"hs-1");
            wal.mark_snapshot(2, 1);
            append(&mut wal, 6..=7, 2);
            wal.set_hard_state(b"hs-2");
            wal.sync().unwrap();
            assert_eq!(wal.last_index(), 7);
        }
        let (wal, replay) = open(tmp.path());
        assert_eq!(replay.metadata.as_deref(), Some(META));
        assert_eq!(replay.hard_state.as_deref(), Some(&b"hs-2"[..]));
        assert_eq!(replay.snapshot, Some((2, 1)));
        let mut want = expect_ids(3..=5, 1);
        want.extend(expect_ids(6..=7, 2));
        assert_eq!(ids(&replay), want);
        assert_eq!(replay.entries[0].data, data(3, 1));
        assert_eq!(replay.repaired_tail, None);
        assert_eq!(wal.last_index(), 7);
    }

    #[test]
    fn unsynced_records_are_not_on_disk() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = open(tmp.path());
            append(&mut wal, 1..=2, 1);
            wal.append_entries(&[(3, 1, b"never synced")]);
            wal.set_hard_state(b"never synced");
        }
        let (_, replay) = open(tmp.path());
        assert_eq!(ids(&replay), expect_ids(1..=2, 1));
        assert_eq!(replay.hard_state, None);
    }

    #[test]
    fn sync_with_nothing_buffered_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(tmp.path());
        let seg = &segment_paths(tmp.path())[0];
        let before = fs::metadata(seg).unwrap().len();
        wal.sync().unwrap();
        assert_eq!(fs::metadata(seg).unwrap().len(), before);
    }

    #[test]
    fn one_sync_writes_the_whole_batch() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(tmp.path());
        wal.append_entries(&[(1, 1, b"a"), (2, 1, b"b")]);
        wal.set_hard_state(b"hs");
        wal.append_entries(&[(3, 1, b"c")]);
        wal.sync().unwrap();
        let (_, replay) = open(tmp.path());
        assert_eq!(ids(&replay), expect_ids(1..=3, 1));
        assert_eq!(replay.hard_state.as_deref(), Some(&b"hs"[..]));
    }

    #[test]
    fn overwritten_uncommitted_tail_is_discarded_on_replay() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = open(tmp.path());
            append(&mut wal, 1..=5, 1);
            // A new leader at term 2 replaces 4 and 5 and goes on.
            append(&mut wal, 4..=6, 2);
            assert_eq!(wal.last_index(), 6);
        }
        let (_, replay) = open(tmp.path());
        let mut want = expect_ids(1..=3, 1);
        want.extend(expect_ids(4..=6, 2));
        assert_eq!(ids(&replay), want);
        assert_eq!(replay.entries[3].data, data(4, 2));
    }

    #[test]
    fn overwrite_to_a_shorter_log_drops_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = open(tmp.path());
            append(&mut wal, 1..=5, 1);
            append(&mut wal, 3..=3, 2);
            assert_eq!(wal.last_index(), 3);
        }
        let (wal, replay) = open(tmp.path());
        assert_eq!(ids(&replay), [(1, 1), (2, 1), (3, 2)]);
        assert_eq!(wal.last_index(), 3);
    }

    #[test]
    fn segments_roll_over_and_replay_across_them() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = open_small(tmp.path(), 200);
            for i in 1..=40 {
                append(&mut wal, i..=i, 1);
                if i % 7 == 0 {
                    wal.set_hard_state(format!("hs {i}").as_bytes());
                    wal.sync().unwrap();
                }
            }
        }
        let segs = segment::list(tmp.path()).unwrap();
        assert!(segs.len() > 3, "only {} segments", segs.len());
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(s.seq, i as u64);
            if i > 0 {
                // Each segment starts where the log was when it was cut.
                let offs = record_offsets(&s.path(tmp.path()));
                let bytes = fs::read(s.path(tmp.path())).unwrap();
                let first_entry = offs
                    .iter()
                    .map(|&o| record::decode(&bytes[o..]).unwrap().0)
                    .find_map(|r| match r {
                        Record::Entry { index, .. } => Some(index),
                        _ => None,
                    });
                assert_eq!(first_entry, Some(s.first_index), "segment {i}");
            }
        }
        let (mut wal, replay) = open_small(tmp.path(), 200);
        assert_eq!(ids(&replay), expect_ids(1..=40, 1));
        assert_eq!(replay.hard_state.as_deref(), Some(&b"hs 35"[..]));
        append(&mut wal, 41..=41, 1);
        drop(wal);
        let (_, replay) = open_small(tmp.path(), 200);
        assert_eq!(ids(&replay), expect_ids(1..=41, 1));
    }

    #[test]
    fn every_segment_begins_with_metadata_and_the_durable_state() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = open_small(tmp.path(), 1);
            append(&mut wal, 1..=1, 1);
            wal.set_hard_state(b"hs");
            wal.mark_snapshot(1, 1);
            wal.sync().unwrap();
            append(&mut wal, 2..=2, 1);
        }
        let last = segment_paths(tmp.path()).pop().unwrap();
        let bytes = fs::read(&last).unwrap();
        let recs: Vec<Record> = record_offsets(&last)
            .into_iter()
            .map(|o| record::decode(&bytes[o..]).unwrap().0)
            .collect();
        assert_eq!(
            recs,
            [
                Record::Metadata(META.to_vec()),
                Record::HardState(b"hs".to_vec()),
                Record::SnapshotMark { index: 1, term: 1 },
                Record::Entry {
                    index: 2,
                    term: 1,
                    data: data(2, 1)
                },
            ]
        );
    }

    #[test]
    fn release_to_deletes_only_segments_below_the_index() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = open_small(tmp.path(), 1);
        for i in 1..=10 {
            append(&mut wal, i..=i, 1);
        }
        // With a 1-byte limit every sync cuts a new segment: seq 0 holds
        // only metadata, seq n holds entry n (first_index n).
        assert_eq!(segment_paths(tmp.path()).len(), 11);
        wal.mark_snapshot(6, 1);
        wal.sync().unwrap();
        wal.release_to(6).unwrap();
        let left: Vec<u64> = segment::list(tmp.path())
            .unwrap()
            .iter()
            .map(|s| s.first_index)
            .collect();
        // Entry 6's segment stays: only segments wholly below 6 go.
        assert_eq!(left, [6, 7, 8, 9, 10, 11]);
    }

    #[test]
    fn release_to_never_deletes_the_current_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(tmp.path());
        append(&mut wal, 1..=3, 1);
        wal.mark_snapshot(100, 1);
        wal.sync().unwrap();
        wal.release_to(100).unwrap();
        assert_eq!(segment_paths(tmp.path()).len(), 1);
        append(&mut wal, 101..=101, 1);
        drop(wal);
        let (_, replay) = open(tmp.path());
        assert_eq!(replay.snapshot, Some((100, 1)));
        assert_eq!(ids(&replay), [(101, 1)]);
    }

    #[test]
    fn release_to_waits_for_a_durable_snapshot_mark() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = open_small(tmp.path(), 1);
        for i in 1..=5 {
            append(&mut wal, i..=i, 1);
        }
        wal.release_to(5).unwrap();
        assert_eq!(segment_paths(tmp.path()).len(), 6, "no mark at all");
        wal.mark_snapshot(5, 1);
        wal.release_to(5).unwrap();
        assert_eq!(segment_paths(tmp.path()).len(), 6, "mark not yet synced");
        wal.sync().unwrap();
        wal.release_to(5).unwrap();
        // Left: entry 5's segment and the one the mark went to.
        assert_eq!(segment_paths(tmp.path()).len(), 2);
    }

    #[test]
    fn replay_after_release_starts_at_the_snapshot_mark() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = open_small(tmp.path(), 300);
            for i in 1..=60 {
                append(&mut wal, i..=i, 1);
                wal.set_hard_state(format!("hs {i}").as_bytes());
                wal.sync().unwrap();
            }
            wal.mark_snapshot(45, 1);
            wal.sync().unwrap();
            let before = segment_paths(tmp.path()).len();
            wal.release_to(45).unwrap();
            assert!(segment_paths(tmp.path()).len() < before);
            append(&mut wal, 61..=62, 1);
        }
        let first = segment::list(tmp.path()).unwrap()[0];
        assert!(first.seq > 0 && first.first_index <= 46);
        let (_, replay) = open_small(tmp.path(), 300);
        assert_eq!(replay.snapshot, Some((45, 1)));
        assert_eq!(replay.hard_state.as_deref(), Some(&b"hs 60"[..]));
        assert_eq!(ids(&replay), expect_ids(46..=62, 1));
    }

    #[test]
    fn repeated_snapshots_and_releases_replay_from_the_newest_mark() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = open_small(tmp.path(), 250);
            for i in 1..=100 {
                append(&mut wal, i..=i, 1);
                if i % 30 == 0 {
                    // Each new segment's head repeats this older mark.
                    wal.mark_snapshot(i - 5, 1);
                    wal.sync().unwrap();
                    wal.release_to(i - 5).unwrap();
                }
            }
        }
        let (_, replay) = open_small(tmp.path(), 250);
        assert_eq!(replay.snapshot, Some((85, 1)));
        assert_eq!(ids(&replay), expect_ids(86..=100, 1));
    }

    #[test]
    fn entries_resume_after_a_mark_beyond_the_log() {
        // A follower that installed the leader's snapshot at 50.
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = open(tmp.path());
            append(&mut wal, 1..=3, 1);
            wal.mark_snapshot(50, 2);
            assert_eq!(wal.last_index(), 50);
            append(&mut wal, 51..=52, 2);
        }
        let (wal, replay) = open(tmp.path());
        assert_eq!(replay.snapshot, Some((50, 2)));
        assert_eq!(ids(&replay), expect_ids(51..=52, 2));
        assert_eq!(wal.last_index(), 52);
    }

    #[test]
    fn hard_state_survives_release_of_the_segment_that_wrote_it() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = open_small(tmp.path(), 1);
            wal.set_hard_state(b"written once");
            append(&mut wal, 1..=1, 1);
            for i in 2..=5 {
                append(&mut wal, i..=i, 1);
            }
            wal.mark_snapshot(5, 1);
            wal.sync().unwrap();
            wal.release_to(5).unwrap();
        }
        let (_, replay) = open_small(tmp.path(), 1);
        assert_eq!(replay.hard_state.as_deref(), Some(&b"written once"[..]));
    }

    /// Builds a WAL of two segments whose last record is entry 9, returning
    /// the last segment and where that record starts and ends.
    fn wal_with_last_record(dir: &Path) -> (PathBuf, usize, usize) {
        let (mut wal, _) = open_small(dir, 200);
        for i in 1..=8 {
            append(&mut wal, i..=i, 1);
        }
        wal.set_hard_state(b"hs");
        wal.sync().unwrap();
        let seg = wal.current_path();
        let start = fs::metadata(&seg).unwrap().len() as usize;
        append(&mut wal, 9..=9, 1);
        assert_eq!(wal.current_path(), seg, "entry 9 shares the segment");
        assert!(segment_paths(dir).len() >= 2);
        let end = fs::metadata(&seg).unwrap().len() as usize;
        (seg, start, end)
    }

    #[test]
    fn torn_tail_at_every_offset_recovers_the_records_before_it() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        let (seg, start, end) = wal_with_last_record(&base);
        let seg_name = seg.file_name().unwrap();
        for cut in start..end {
            let dir = tmp.path().join(format!("cut-{cut}"));
            copy_dir(&base, &dir);
            let seg = dir.join(seg_name);
            fs::OpenOptions::new()
                .write(true)
                .open(&seg)
                .unwrap()
                .set_len(cut as u64)
                .unwrap();

            let (mut wal, replay) = open_small(&dir, 200);
            assert_eq!(ids(&replay), expect_ids(1..=8, 1), "cut at {cut}");
            assert_eq!(replay.hard_state.as_deref(), Some(&b"hs"[..]));
            let want = (cut > start).then(|| (seg.clone(), start as u64));
            assert_eq!(replay.repaired_tail, want, "cut at {cut}");
            assert_eq!(fs::metadata(&seg).unwrap().len() as usize, start);
            assert_eq!(wal.last_index(), 8);

            append(&mut wal, 9..=10, 2);
            drop(wal);
            let (_, replay) = open_small(&dir, 200);
            let mut want = expect_ids(1..=8, 1);
            want.extend(expect_ids(9..=10, 2));
            assert_eq!(ids(&replay), want, "after appending past cut {cut}");
            assert_eq!(replay.repaired_tail, None);
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn flipped_byte_in_the_last_record_is_repaired_as_a_torn_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        let (seg, start, end) = wal_with_last_record(&base);
        // Every byte after the length field: checksum, type, payload.
        for at in start + 4..end {
            let dir = tmp.path().join(format!("flip-{at}"));
            copy_dir(&base, &dir);
            let seg = dir.join(seg.file_name().unwrap());
            flip_byte(&seg, at);
            let (_, replay) = open_small(&dir, 200);
            assert_eq!(ids(&replay), expect_ids(1..=8, 1), "flip at {at}");
            assert_eq!(replay.repaired_tail, Some((seg, start as u64)));
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn damaged_length_with_records_behind_it_is_corrupt_not_torn() {
        let tmp = tempfile::tempdir().unwrap();
        let (seg, _, _) = wal_with_last_record(tmp.path());
        let offs = record_offsets(&seg);
        // Entry 8's length now runs past the end of the file, as a torn
        // write's would; the hard state and entry 9 behind it are intact.
        let victim = offs[offs.len() - 3];
        let mut bytes = fs::read(&seg).unwrap();
        bytes[victim..victim + 4].copy_from_slice(&(1u32 << 20).to_le_bytes());
        fs::write(&seg, bytes).unwrap();
        let opts = WalOptions {
            segment_bytes: 200,
            preallocate: false,
        };
        match Wal::open(tmp.path(), META, opts) {
            Err(WalError::Corrupt { offset, .. }) => assert_eq!(offset, victim as u64),
            other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn preallocated_segments_replay_and_resume_after_their_records() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            segment_bytes: 4096,
            preallocate: true,
        };
        let (mut wal, _) = Wal::open(tmp.path(), META, opts).unwrap();
        append(&mut wal, 1..=3, 1);
        drop(wal);
        let seg = segment_paths(tmp.path()).pop().unwrap();
        assert_eq!(
            fs::metadata(&seg).unwrap().len(),
            4096,
            "allocated up front"
        );
        let (mut wal, replay) = Wal::open(tmp.path(), META, opts).unwrap();
        assert_eq!(ids(&replay), expect_ids(1..=3, 1));
        assert_eq!(replay.repaired_tail, None, "the zeros are not a torn write");
        append(&mut wal, 4..=5, 1);
        drop(wal);
        let (_, replay) = Wal::open(tmp.path(), META, opts).unwrap();
        assert_eq!(ids(&replay), expect_ids(1..=5, 1));
    }

    #[test]
    fn zero_filled_tail_is_where_appends_resume() {
        let tmp = tempfile::tempdir().unwrap();
        let (seg, _, end) = wal_with_last_record(tmp.path());
        let mut bytes = fs::read(&seg).unwrap();
        bytes.extend_from_slice(&[0; 4096]);
        fs::write(&seg, bytes).unwrap();
        let (mut wal, replay) = open_small(tmp.path(), 100_000);
        assert_eq!(ids(&replay), expect_ids(1..=9, 1));
        assert_eq!(replay.repaired_tail, None);
        assert_eq!(fs::metadata(&seg).unwrap().len() as usize, end + 4096);
        append(&mut wal, 10..=10, 1);
        drop(wal);
        let (_, replay) = open_small(tmp.path(), 100_000);
        assert_eq!(ids(&replay), expect_ids(1..=10, 1));
    }

    #[test]
    fn flipped_byte_in_a_record_followed_by_valid_records_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let (seg, start, _) = wal_with_last_record(tmp.path());
        let offs = record_offsets(&seg);
        // Entry 8, with the hard state and entry 9 after it.
        let victim = offs[offs.len() - 3];
        assert!(victim < start);
        flip_byte(&seg, victim + record::HEADER_LEN + 3);
        let (file, offset, reason) = expect_corrupt(tmp.path());
        assert_eq!((file, offset), (seg, victim as u64));
        assert!(reason.contains("checksum mismatch"), "{reason}");
    }

    #[test]
    fn flipped_byte_in_a_non_last_segment_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        wal_with_last_record(tmp.path());
        let first = segment_paths(tmp.path()).remove(0);
        let offs = record_offsets(&first);
        let victim = offs[offs.len() / 2];
        flip_byte(&first, victim + record::HEADER_LEN + 1);
        let (file, offset, reason) = expect_corrupt(tmp.path());
        assert_eq!((file, offset), (first, victim as u64));
        assert!(reason.contains("checksum mismatch"), "{reason}");
    }

    #[test]
    fn truncated_non_last_segment_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        wal_with_last_record(tmp.path());
        let first = segment_paths(tmp.path()).remove(0);
        let len = fs::metadata(&first).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&first)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (file, _, reason) = expect_corrupt(tmp.path());
        assert_eq!(file, first);
        assert!(reason.contains("truncated"), "{reason}");
    }

    #[test]
    fn corrupt_error_names_the_file_and_offset() {
        let err = corrupt(
            Path::new("/d/0000000000000001-0000000000000005.wal"),
            1234,
            "checksum mismatch",
        );
        assert_eq!(
            err.to_string(),
            "wal: corrupt record in /d/0000000000000001-0000000000000005.wal at offset 1234: checksum mismatch"
        );
    }

    #[test]
    fn missing_segment_in_the_sequence_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = open_small(tmp.path(), 1);
            for i in 1..=4 {
                append(&mut wal, i..=i, 1);
            }
        }
        let segs = segment_paths(tmp.path());
        fs::remove_file(&segs[1]).unwrap();
        let (file, offset, reason) = expect_corrupt(tmp.path());
        assert_eq!((file, offset), (segs[2].clone(), 0));
        assert!(reason.contains("segment 1 is missing"), "{reason}");
    }

    #[test]
    fn checksummed_record_of_unknown_type_in_the_last_record_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let (seg, _, _) = wal_with_last_record(tmp.path());
        let mut bytes = fs::read(&seg).unwrap();
        let at = bytes.len();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&[77, 1, 2, 3]).to_le_bytes());
        bytes.extend_from_slice(&[77, 1, 2, 3]);
        fs::write(&seg, bytes).unwrap();
        let (file, offset, reason) = expect_corrupt(tmp.path());
        assert_eq!((file, offset), (seg, at as u64));
        assert!(reason.contains("unknown record type 77"), "{reason}");
    }

    #[test]
    fn gap_in_entries_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = open(tmp.path());
            append(&mut wal, 1..=3, 1);
            append(&mut wal, 5..=5, 1);
        }
        let (_, _, reason) = expect_corrupt(tmp.path());
        assert!(reason.contains("entry 5 follows entry 3"), "{reason}");
    }

    #[test]
    fn existing_metadata_wins_over_the_one_given_to_open() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = open_small(tmp.path(), 1);
            append(&mut wal, 1..=1, 1);
        }
        let (mut wal, replay) = Wal::open(
            tmp.path(),
            b"someone else",
            WalOptions {
                segment_bytes: 1,
                preallocate: false,
            },
        )
        .unwrap();
        assert_eq!(replay.metadata.as_deref(), Some(META));
        append(&mut wal, 2..=2, 1);
        drop(wal);
        let (_, replay) = open(tmp.path());
        assert_eq!(replay.metadata.as_deref(), Some(META), "new segment too");
    }

    #[test]
    fn last_segment_emptied_by_a_crash_gets_its_metadata_back() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = open_small(tmp.path(), 1);
            append(&mut wal, 1..=1, 1);
            wal.set_hard_state(b"hs");
            wal.sync().unwrap();
            append(&mut wal, 2..=2, 1);
        }
        let last = segment_paths(tmp.path()).pop().unwrap();
        fs::write(&last, b"").unwrap();
        let (mut wal, replay) = open_small(tmp.path(), 1);
        assert_eq!(ids(&replay), [(1, 1)]);
        append(&mut wal, 2..=2, 1);
        drop(wal);
        let (_, replay) = open_small(tmp.path(), 1);
        assert_eq!(ids(&replay), expect_ids(1..=2, 1));
        assert_eq!(replay.hard_state.as_deref(), Some(&b"hs"[..]));
    }

    #[test]
    fn oversized_record_fails_the_sync_and_the_wal() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(tmp.path());
        let big = vec![0u8; record::MAX_PAYLOAD];
        wal.append_entries(&[(1, 1, b"ok"), (2, 1, &big)]);
        assert!(matches!(wal.sync(), Err(WalError::TooLarge { .. })));
        assert!(matches!(wal.sync(), Err(WalError::Failed)));
        drop(wal);
        let (_, replay) = open(tmp.path());
        assert!(
            replay.entries.is_empty(),
            "nothing of the batch was written"
        );
    }
}
