//! The MVCC key-value store: etcd 3.5's data model and KV semantics, over
//! etcd's key bucket, operating directly on etcd's protobuf types.
//!
//! This package owns:
//! - the revision index in RAM, keys with their generations and no values
//!   ([`key_index`], [`index`]), and the current / compact revisions
//!   ([`Store`]),
//! - the KV operations exactly as etcd applies them, reading and writing
//!   versions in a [`KeyBucket`]: Range (limit, count, filters, sort), Put,
//!   DeleteRange, Txn (compares, nested txns, one revision, all or nothing),
//!   Compact (logical at once, physical in batches), HashKV, watch catch-up
//!   ([`Store::events_since`]) and the rebuild of the index at start-up,
//! - etcd's txn duplicate-key rule ([`check_txn_duplicates`]).
//!
//! It does not own the key bucket itself (the backend keeps it on disk),
//! request validation done by etcd's gRPC layer (empty key, too many ops,
//! ...), response headers (left None for the server to fill), leases
//! themselves (callers say which lease ids exist), Raft or durability: it is
//! a deterministic state machine that the applier drives.

mod bucket;
mod compaction;
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
mod rebuild;
mod revision;
mod store;
#[cfg(test)]
pub(crate) mod testutil;
mod txn;
mod write;

#[cfg(test)]
pub use bucket::MemBucket;
pub use bucket::{decode_kv, tombstone_value, KeyBucket, KeyBucketMut, KvHeader, ScanVisitor};
pub use compaction::Compaction;
pub use duplicates::check_txn_duplicates;
pub use error::MvccError;
pub use range::RangePlan;
pub use rebuild::BucketSize;
pub use revision::Revision;
pub use store::Store;
pub use write::PrevValues;
