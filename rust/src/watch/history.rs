//! The member's store as the watch hub's [`History`]: past events read from
//! a backend read transaction taken with the index, under the state's lock
//! for one bounded read at a time.

use std::sync::Arc;

use super::hub::{History, HistoryRead, ReadError};
use super::index::WatchRange;
use crate::mvcc::MvccError;
use crate::raft_node::Shared;

pub struct StoreHistory(pub Arc<Shared>);

impl History for StoreHistory {
    fn revision(&self) -> i64 {
        self.0
            .sm
            .read()
            .expect("state poisoned")
            .store
            .current_revision()
    }

    fn term(&self) -> u64 {
        self.0.term()
    }

    fn events(
        &self,
        range: Option<&WatchRange>,
        from: i64,
        max: usize,
        with_prev: bool,
    ) -> Result<HistoryRead, ReadError> {
        if self.0.stopped() {
            return Err(ReadError::Failed(crate::errors::stopped().message().into()));
        }
        let sm = self.0.sm.read().expect("state poisoned");
        let rtx = sm
            .read()
            .map_err(|e| ReadError::Failed(format!("etcdserver: {e}")))?;
        let (key, end) = range.map_or((&b"\0"[..], &b"\0"[..]), |r| r.as_request());
        let revision = sm.store.current_revision();
        let events = sm
            .store
            .events_since(rtx.key_bucket(), key, end, from, max, with_prev)
            .map_err(|e| match e {
                MvccError::Compacted => ReadError::Compacted(sm.store.compact_revision()),
                e => ReadError::Failed(tonic::Status::from(e).message().to_string()),
            })?;
        // A full read may have stopped short of the store's revision.
        let complete_to = match events.last().and_then(|e| e.kv.as_ref()) {
            Some(kv) if max > 0 && events.len() >= max => kv.mod_revision,
            _ => revision,
        };
        Ok(HistoryRead {
            events,
            complete_to,
        })
    }
}
