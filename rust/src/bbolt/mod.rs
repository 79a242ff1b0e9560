//! bbolt database files: etcd's backend format and, with a SHA-256 trailer,
//! its snapshot format.
//!
//! Written from bbolt's documented layout (`page.go`, `node.go`, `bucket.go`,
//! `db.go`), not a port of its code:
//!
//! - [`reader`]: opens a file or a byte slice, checks both meta pages and
//!   walks buckets in key order, reading pages on demand. Every inconsistency
//!   is an [`Error::Corrupt`] naming the page and offset; no input panics or
//!   loops.
//! - [`writer`]: a bulk writer that plans the page layout from the key and
//!   value sizes (a first pass over the data), then streams a complete file
//!   in page order to any `io::Write` (a second pass). Memory holds the first
//!   key of each page, never the data.
//! - [`trailer`]: the SHA-256 digest `etcdctl snapshot save` appends, checked
//!   and stripped as etcdutl does, and appended by a hashing writer.
//!
//! Nested buckets are read; the writer writes top-level buckets only (etcd
//! uses no others).

pub mod layout;
pub mod reader;
pub mod trailer;
pub mod writer;

#[cfg(test)]
mod etcd_fixture_tests;
#[cfg(test)]
mod tests;

pub use reader::{Bucket, Cursor, Db, Entry, FileSource, PageSource};
pub use trailer::{HashCheck, TrailerWriter};
pub use writer::{plan, write, write_file, InMemory, Plan, Source, Visit, WriteOptions, Written};

/// The page size the writer uses (etcd's, on its platforms).
pub const PAGE_SIZE: u32 = 4096;

/// Everything that can go wrong reading or writing a bbolt file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not a consistent bbolt database.
    #[error("corrupt bbolt file at offset {offset} (page {page}): {what}")]
    Corrupt {
        page: u64,
        offset: u64,
        what: String,
    },
    /// An etcd snapshot's SHA-256 trailer is missing or does not match.
    #[error("snapshot integrity: {0}")]
    Trailer(String),
    /// The writer was given data bbolt cannot hold (unsorted or oversized keys...).
    #[error("bbolt writer: {0}")]
    Input(String),
    /// The second pass over a writer's source did not see what the first did.
    #[error("bbolt writer: the data changed between the planning and writing passes: {0}")]
    Changed(String),
    /// The writer's source failed to produce its data.
    #[error("bbolt writer source: {0}")]
    Source(Box<dyn std::error::Error + Send + Sync>),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
