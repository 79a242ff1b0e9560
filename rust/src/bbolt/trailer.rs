//! etcd's snapshot integrity trailer.
//!
//! `etcdctl snapshot save` appends the SHA-256 of the database to the file.
//! Database files are whole pages (multiples of 512 bytes), so a file whose
//! size is 32 past a multiple of 512 carries the digest; etcdutl checks it
//! before restoring unless told to skip the check, and refuses a file without
//! one unless told to skip.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

use super::{Error, Result};

/// Length of the trailer: one SHA-256 digest.
pub const TRAILER_LEN: u64 = 32;

/// Whether to verify a snapshot's digest (etcdutl's `--skip-hash-check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashCheck {
    /// Require a trailer and check it against the contents.
    Verify,
    /// Strip a trailer if there is one, unchecked.
    Skip,
}

/// etcdutl's test for a trailer: the size is 32 past a multiple of 512.
pub fn has_trailer(len: u64) -> bool {
    len % 512 == TRAILER_LEN
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn missing(len: u64) -> Error {
    Error::Trailer(format!(
        "snapshot has no SHA-256 trailer (its size {len} is not 32 past a multiple of 512); \
         skip the hash check to read a database file copied from a data dir"
    ))
}

fn compare(expected: &[u8], computed: &[u8], db_len: u64) -> Result<()> {
    if expected != computed {
        return Err(Error::Trailer(format!(
            "SHA-256 of the first {db_len} bytes is {}, the trailer says {}",
            hex(computed),
            hex(expected)
        )));
    }
    Ok(())
}

/// The database part of a snapshot held in memory.
pub fn strip(data: &[u8], check: HashCheck) -> Result<&[u8]> {
    let len = data.len() as u64;
    if !has_trailer(len) {
        return match check {
            HashCheck::Verify => Err(missing(len)),
            HashCheck::Skip => Ok(data),
        };
    }
    let (db, digest) = data.split_at(data.len() - TRAILER_LEN as usize);
    if check == HashCheck::Verify {
        compare(digest, &Sha256::digest(db), db.len() as u64)?;
    }
    Ok(db)
}

/// The length of the database part of a snapshot file, reading it once
/// (in 1 MiB blocks) to check the digest.
pub fn check_file(file: &File, check: HashCheck) -> Result<u64> {
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat snapshot", e))?
        .len();
    if !has_trailer(len) {
        return match check {
            HashCheck::Verify => Err(missing(len)),
            HashCheck::Skip => Ok(len),
        };
    }
    let db_len = len - TRAILER_LEN;
    if check == HashCheck::Verify {
        let mut expected = [0u8; TRAILER_LEN as usize];
        file.read_exact_at(&mut expected, db_len)
            .map_err(|e| Error::io("read snapshot trailer", e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < db_len {
            let n = (db_len - at).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], at)
                .map_err(|e| Error::io(format!("read snapshot at offset {at}"), e))?;
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        compare(&expected, &hasher.finalize(), db_len)?;
    }
    Ok(db_len)
}

/// Passes bytes through while hashing them; [`TrailerWriter::finish`]
/// appends the digest, making the stream an etcd snapshot.
pub struct TrailerWriter<W: Write> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> TrailerWriter<W> {
    pub fn new(inner: W) -> TrailerWriter<W> {
        TrailerWriter {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// Writes the digest of everything written so far and hands back the sink.
    pub fn finish(mut self) -> io::Result<W> {
        let digest = self.hasher.finalize();
        self.inner.write_all(&digest)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for TrailerWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
