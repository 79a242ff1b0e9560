//! The MVCC key-value store: etcd 3.5's data model and KV semantics, in
//! memory, operating directly on etcd's protobuf types.
//!
//! This package owns:
//! - the key index with generations ([`key_index`], [`index`]),
//! - the revision-ordered log of every version, tombstones included, and the
//!   current / compact revisions ([`Store`]),
//! - the KV operations exactly as etcd applies them: Range (limit, count,
//!   filters, sort), Put, DeleteRange, Txn (compares, nested txns, one
//!   revision, all or nothing), Compact, HashKV, watch catch-up
//!   ([`Store::events_since`]) and whole-store snapshots,
//! - etcd's txn duplicate-key rule ([`check_txn_duplicates`]).
//!
//! It does not own request validation done by etcd's gRPC layer (empty key,
//! too many ops, ...), response headers (left None for the server to fill),
//! leases themselves (callers say which lease ids exist), Raft or
//! durability: it is a deterministic state machine that the Raft apply loop
//! drives.

mod duplicates;
mod error;
mod events;
mod hash;
pub mod index;
pub mod key_index;
mod leases;
#[cfg(test)]
mod model_tests;
mod range;
mod revision;
mod snapshot;
mod store;
#[cfg(test)]
pub(crate) mod testutil;
mod txn;
mod write;

pub use duplicates::check_txn_duplicates;
pub use error::MvccError;
pub use revision::Revision;
pub use store::{Store, PER_VERSION_BYTES};
