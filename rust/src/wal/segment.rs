//! Segment files: `{seq:016x}-{first_index:016x}.wal` in the WAL directory.
//!
//! `seq` numbers segments consecutively, so a missing file shows as a gap.
//! `first_index` is the index the next entry was expected to take when the
//! segment was cut: every entry still live in earlier segments is below it,
//! which is what lets [`super::Wal::release_to`] delete whole segments by
//! name alone.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const SUFFIX: &str = ".wal";
const TMP_SUFFIX: &str = ".wal.tmp";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentName {
    pub seq: u64,
    pub first_index: u64,
}

impl SegmentName {
    pub fn file_name(&self) -> String {
        format!("{:016x}-{:016x}{SUFFIX}", self.seq, self.first_index)
    }

    /// `None` for anything that is not exactly a segment name.
    pub fn parse(name: &str) -> Option<SegmentName> {
        let stem = name.strip_suffix(SUFFIX)?;
        let (seq, first) = stem.split_once('-')?;
        if seq.len() != 16 || first.len() != 16 {
            return None;
        }
        Some(SegmentName {
            seq: u64::from_str_radix(seq, 16).ok()?,
            first_index: u64::from_str_radix(first, 16).ok()?,
        })
    }

    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(self.file_name())
    }
}

/// The segments in `dir`, by ascending seq. Files with other names are left
/// alone (an operator's notes, a `.broken` copy), except leftovers of an
/// interrupted [`create`], which are removed: they were never part of the log.
pub fn list(dir: &Path) -> io::Result<Vec<SegmentName>> {
    let mut segments = Vec::new();
    for dent in fs::read_dir(dir)? {
        let dent = dent?;
        let name = dent.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) {
            fs::remove_file(dent.path())?;
        } else if let Some(seg) = SegmentName::parse(name) {
            segments.push(seg);
        }
    }
    segments.sort_by_key(|s| s.seq);
    Ok(segments)
}

/// Creates a segment whose first records are `header`, and returns it open
/// for appending.
///
/// The header is written under a temporary name and renamed into place, so a
/// crash never leaves a segment without its metadata record; the directory
/// fsync makes the new name itself durable.
pub fn create(dir: &Path, name: SegmentName, header: &[u8], prealloc: u64) -> io::Result<File> {
    let path = name.path(dir);
    let tmp = dir.join(format!("{}.tmp", name.file_name()));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)?;
    file.write_all(header)?;
    if prealloc > header.len() as u64 {
        preallocate(&file, prealloc)?;
    }
    file.sync_all()?;
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    Ok(file)
}

/// Opens a segment for positional writes (the WAL tracks where its records end).
pub fn open_for_write(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).open(path)
}

/// Allocates `len` bytes of real, zero-filled blocks; file systems that
/// cannot do that get a plain (sparse) extension instead.
fn preallocate(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: fallocate only reads its integer arguments; the fd is open.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => file.set_len(len),
        _ => Err(err),
    }
}

/// The whole segment, for replay.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    fs::read(path)
}

/// Cuts a torn tail off at `len` and makes the new length durable.
pub fn truncate(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

/// Makes creations, renames and removals in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn name_is_zero_padded_hex_and_parses_back() {
        let n = SegmentName {
            seq: 0x1f,
            first_index: 0xabc,
        };
        assert_eq!(n.file_name(), "000000000000001f-0000000000000abc.wal");
        assert_eq!(SegmentName::parse(&n.file_name()), Some(n));
    }

    #[test]
    fn other_names_do_not_parse() {
        for bad in [
            "0000000000000001-0000000000000002.wal.tmp",
            "0000000000000001-0000000000000002.snap",
            "1-2.wal",
            "000000000000000g-0000000000000002.wal",
            "00000000000000010000000000000002.wal",
            "0000000000000001-0000000000000002-0000000000000003.wal",
        ] {
            assert_eq!(SegmentName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn list_sorts_by_seq_ignores_strangers_and_drops_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        for seq in [2u64, 0, 1] {
            let n = SegmentName {
                seq,
                first_index: seq * 10,
            };
            fs::write(n.path(dir.path()), b"").unwrap();
        }
        fs::write(dir.path().join("README"), b"hi").unwrap();
        let tmp = dir.path().join("0000000000000003-0000000000000030.wal.tmp");
        fs::write(&tmp, b"half").unwrap();

        let seqs: Vec<u64> = list(dir.path()).unwrap().iter().map(|s| s.seq).collect();
        assert_eq!(seqs, [0, 1, 2]);
        assert!(!tmp.exists());
        assert!(dir.path().join("README").exists());
    }

    #[test]
    fn create_writes_the_header_and_appends_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let n = SegmentName {
            seq: 4,
            first_index: 100,
        };
        let f = create(dir.path(), n, b"header", 0).unwrap();
        f.write_all_at(b"+more", 6).unwrap();
        assert_eq!(read(&n.path(dir.path())).unwrap(), b"header+more");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp left");
    }

    #[test]
    fn preallocated_segment_is_zero_filled_to_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let n = SegmentName {
            seq: 0,
            first_index: 0,
        };
        create(dir.path(), n, b"header", 4096).unwrap();
        let data = read(&n.path(dir.path())).unwrap();
        assert_eq!(data.len(), 4096);
        assert_eq!(&data[..6], b"header");
        assert!(data[6..].iter().all(|&b| b == 0));
    }

    #[test]
    fn truncate_cuts_at_the_given_length() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"0123456789").unwrap();
        truncate(&p, 4).unwrap();
        assert_eq!(read(&p).unwrap(), b"0123");
    }
}
