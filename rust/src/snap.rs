//! Snapshot files: the state machine at some applied index, one file each,
//! named `{term:016x}-{index:016x}.snap`.
//!
//! A file is a fixed header then the opaque snapshot bytes:
//!
//! ```text
//! b"ECSNAP01" | index u64 LE | term u64 LE | data length u64 LE | crc32c(data) u32 LE | data
//! ```
//!
//! Files are written under a temporary name and renamed into place, so a
//! crash leaves either the whole new snapshot or none of it. A file that
//! fails its checks anyway (bit rot, a disk that lied about fsync) is renamed
//! to `*.broken` and an older snapshot is used instead; the WAL still holds
//! the entries after that older one unless they were released, in which case
//! start-up finds the hole and refuses.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"ECSNAP01";
const HEADER_LEN: usize = 8 + 8 + 8 + 8 + 4;
const SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".snap.tmp";
const BROKEN_SUFFIX: &str = ".broken";

/// A snapshot read back from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapFile {
    pub index: u64,
    pub term: u64,
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapError {
    #[error("snap: i/o error on {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapError + '_ {
    move |source| SnapError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Saves and finds snapshot files in one directory, which must exist.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    dir: PathBuf,
}

impl Snapshotter {
    pub fn new(dir: impl AsRef<Path>) -> Snapshotter {
        Snapshotter {
            dir: dir.as_ref().to_path_buf(),
        }
    }

    /// Durably writes the snapshot at (`index`, `term`) and returns its path.
    /// Once this returns, the snapshot survives a crash; only then may the
    /// WAL be told to mark it.
    pub fn save(&self, index: u64, term: u64, data: &[u8]) -> io::Result<PathBuf> {
        let name = file_name(index, term);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let with_path = |p: &Path| {
            let p = p.to_path_buf();
            move |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", p.display()))
        };

        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&index.to_le_bytes());
        header.extend_from_slice(&term.to_le_bytes());
        header.extend_from_slice(&(data.len() as u64).to_le_bytes());
        header.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());

        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&tmp)?;
            f.write_all(&header)?;
            f.write_all(data)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(with_path(&tmp)(e));
        }
        fs::rename(&tmp, &path).map_err(with_path(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(with_path(&self.dir))?;
        Ok(path)
    }

    /// The newest snapshot that passes its checks, or `None` if there is
    /// none. Newer files that fail are renamed to `*.broken` on the way, so
    /// they are neither trusted nor purged.
    pub fn load_newest(&self) -> Result<Option<SnapFile>, SnapError> {
        for (index, term, path) in self.list()?.into_iter().rev() {
            let bytes = fs::read(&path).map_err(io_err(&path))?;
            if let Some(data) = verify(&bytes, index, term) {
                return Ok(Some(SnapFile {
                    index,
                    term,
                    data: data.to_vec(),
                }));
            }
            let mut broken = path.clone().into_os_string();
            broken.push(BROKEN_SUFFIX);
            fs::rename(&path, &broken).map_err(io_err(&path))?;
        }
        Ok(None)
    }

    /// Deletes all but the newest `keep` snapshot files, and any temporary
    /// left by a save that crashed. Returns how many files it removed.
    /// Not to be run while a save is in progress.
    pub fn purge(&self, keep: usize) -> Result<usize, SnapError> {
        let snaps = self.list()?;
        let old = snaps.len().saturating_sub(keep);
        let mut doomed: Vec<PathBuf> = snaps.into_iter().take(old).map(|(_, _, p)| p).collect();
        for dent in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let dent = dent.map_err(io_err(&self.dir))?;
            if dent.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
                doomed.push(dent.path());
            }
        }
        for path in &doomed {
            fs::remove_file(path).map_err(io_err(path))?;
        }
        Ok(doomed.len())
    }

    /// Snapshot files, oldest first.
    fn list(&self) -> Result<Vec<(u64, u64, PathBuf)>, SnapError> {
        let mut snaps = Vec::new();
        for dent in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let dent = dent.map_err(io_err(&self.dir))?;
            if let Some((index, term)) = dent.file_name().to_str().and_then(parse_name) {
                snaps.push((index, term, dent.path()));
            }
        }
        snaps.sort_by_key(|&(index, term, _)| (index, term));
        Ok(snaps)
    }
}

fn file_name(index: u64, term: u64) -> String {
    format!("{term:016x}-{index:016x}{SUFFIX}")
}

/// (index, term) from a snapshot file name.
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let (term, index) = name.strip_suffix(SUFFIX)?.split_once('-')?;
    if term.len() != 16 || index.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(index, 16).ok()?,
        u64::from_str_radix(term, 16).ok()?,
    ))
}

/// The snapshot bytes, if the file is whole and is the one its name says.
fn verify(bytes: &[u8], index: u64, term: u64) -> Option<&[u8]> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return None;
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let crc = u32::from_le_bytes(bytes[32..36].try_into().unwrap());
    let data = &bytes[HEADER_LEN..];
    let ok = u64_at(8) == index
        && u64_at(16) == term
        && u64_at(24) == data.len() as u64
        && crc32c::crc32c(data) == crc;
    ok.then_some(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshotter::new(dir.path());
        let path = s.save(42, 3, b"state machine").unwrap();
        assert_eq!(
            path,
            dir.path().join("0000000000000003-000000000000002a.snap")
        );
        assert_eq!(
            names(dir.path()),
            ["0000000000000003-000000000000002a.snap"]
        );
        assert_eq!(
            s.load_newest().unwrap(),
            Some(SnapFile {
                index: 42,
                term: 3,
                data: b"state machine".to_vec()
            })
        );
    }

    #[test]
    fn empty_snapshot_data_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshotter::new(dir.path());
        s.save(1, 1, b"").unwrap();
        assert_eq!(s.load_newest().unwrap().unwrap().data, b"");
    }

    #[test]
    fn no_snapshot_files_loads_none() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        assert_eq!(Snapshotter::new(dir.path()).load_newest().unwrap(), None);
    }

    #[test]
    fn newest_is_by_index_not_term_order_in_names() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshotter::new(dir.path());
        s.save(300, 2, b"c").unwrap();
        s.save(100, 9, b"a").unwrap();
        s.save(200, 5, b"b").unwrap();
        let got = s.load_newest().unwrap().unwrap();
        assert_eq!((got.index, got.term, got.data), (300, 2, b"c".to_vec()));
    }

    #[test]
    fn corrupt_newest_falls_back_to_the_older_one_and_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshotter::new(dir.path());
        s.save(10, 1, b"older").unwrap();
        let newest = s.save(20, 1, b"newer").unwrap();
        let mut bytes = fs::read(&newest).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(&newest, bytes).unwrap();

        let got = s.load_newest().unwrap().unwrap();
        assert_eq!((got.index, got.data), (10, b"older".to_vec()));
        assert_eq!(
            names(dir.path()),
            [
                "0000000000000001-000000000000000a.snap",
                "0000000000000001-0000000000000014.snap.broken",
            ]
        );
    }

    #[test]
    fn truncated_header_or_data_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshotter::new(dir.path());
        let path = s.save(5, 1, b"0123456789").unwrap();
        let whole = fs::read(&path).unwrap();
        for cut in [0, 7, HEADER_LEN - 1, HEADER_LEN, whole.len() - 1] {
            assert_eq!(verify(&whole[..cut], 5, 1), None, "cut at {cut}");
        }
        assert_eq!(verify(&whole, 5, 1), Some(&b"0123456789"[..]));
    }

    #[test]
    fn file_renamed_to_another_index_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshotter::new(dir.path());
        let path = s.save(5, 1, b"five").unwrap();
        fs::rename(&path, dir.path().join(file_name(6, 1))).unwrap();
        assert_eq!(s.load_newest().unwrap(), None);
    }

    #[test]
    fn all_corrupt_loads_none() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshotter::new(dir.path());
        for i in 1..=3 {
            let p = s.save(i, 1, b"x").unwrap();
            fs::write(&p, b"garbage").unwrap();
        }
        assert_eq!(s.load_newest().unwrap(), None);
        assert!(names(dir.path()).iter().all(|n| n.ends_with(".broken")));
    }

    #[test]
    fn save_at_an_existing_index_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshotter::new(dir.path());
        s.save(7, 2, b"first").unwrap();
        s.save(7, 2, b"second").unwrap();
        assert_eq!(s.load_newest().unwrap().unwrap().data, b"second");
        assert_eq!(names(dir.path()).len(), 1);
    }

    #[test]
    fn purge_keeps_only_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshotter::new(dir.path());
        for i in 1..=5 {
            s.save(i * 10, 1, b"x").unwrap();
        }
        fs::write(
            dir.path()
                .join("0000000000000001-0000000000000001.snap.broken"),
            b"",
        )
        .unwrap();
        fs::write(
            dir.path().join(format!("{}.tmp", file_name(60, 1))),
            b"half",
        )
        .unwrap();

        assert_eq!(
            s.purge(2).unwrap(),
            4,
            "three old snapshots and a temporary"
        );
        assert_eq!(
            names(dir.path()),
            [
                "0000000000000001-0000000000000001.snap.broken",
                "0000000000000001-0000000000000028.snap",
                "0000000000000001-0000000000000032.snap",
            ]
        );
        assert_eq!(s.load_newest().unwrap().unwrap().index, 50);
    }

    #[test]
    fn purge_with_fewer_files_than_keep_removes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshotter::new(dir.path());
        s.save(1, 1, b"x").unwrap();
        assert_eq!(s.purge(5).unwrap(), 0);
        assert_eq!(names(dir.path()).len(), 1);
    }

    #[test]
    fn io_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshotter::new(dir.path().join("missing"));
        let err = s.save(1, 1, b"x").unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        let err = s.load_newest().unwrap_err();
        assert!(err.to_string().starts_with("snap: i/o error on "), "{err}");
    }
}
