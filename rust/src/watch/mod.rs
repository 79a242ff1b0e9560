//! Watch: etcd 3.5's watch semantics, served from the applier's batches.
//!
//! This package owns
//! - the watchers of every Watch stream and their state, synced or not
//!   ([`hub`]: etcd's watchable_store), fed by the applier with each
//!   applied batch ([`WatchHub::notify`]), which never waits for a client;
//! - the index that matches events to synced watchers ([`index`]: exact
//!   keys in a hash map, ranges in an interval set);
//! - each stream's bounded send buffer, which packs a watcher's events into
//!   as few responses as the size limit allows ([`queue`]);
//! - the encoding of events (once per event) and responses, fragments
//!   included ([`encoded`]);
//! - the catch-up of watchers that are behind, from recent batches kept in
//!   memory ([`ring`]) or from the backend ([`sync`], on its own thread).
//!
//! It does not own the gRPC stream (`server::watch` reads requests, checks
//! permissions and sends what the buffers hold) nor the store: history is
//! read through [`History`] ([`history::StoreHistory`] in a member).

pub mod encoded;
pub mod history;
pub mod hub;
pub mod index;
pub mod queue;
pub mod ring;
pub mod sync;

pub use hub::{History, HistoryRead, ReadError, WatchHub, WatchSettings};
pub use queue::{Out, StreamOut};

#[cfg(test)]
mod tests;
