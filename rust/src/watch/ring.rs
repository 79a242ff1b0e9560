//! The most recent applied batches, kept so that a watcher that fell a
//! little behind (its client was slow for a moment, or it just finished
//! reading history from the backend) catches up from memory instead of
//! reading the backend again. Bounded in bytes; it always covers a
//! contiguous run of revisions up to the newest one the hub has seen.

use std::collections::VecDeque;
use std::sync::Arc;

use super::encoded::EncodedEvent;

/// One applied batch's events, encoded once and shared by every watcher
/// and buffer that holds them.
#[derive(Debug)]
pub struct Batch {
    pub events: Vec<EncodedEvent>,
    /// The store's revision after the batch (its last event's).
    pub revision: i64,
    /// Whether the events carry the versions they replaced (read only while
    /// some watcher wants prev_kv).
    pub with_prev: bool,
    /// The bytes the batch holds.
    pub bytes: usize,
}

impl Batch {
    pub fn new(events: Vec<EncodedEvent>, with_prev: bool) -> Batch {
        let revision = events.last().map(|e| e.rev).unwrap_or_default();
        let bytes = events.iter().map(|e| e.field_len(true) + 48).sum();
        Batch {
            events,
            revision,
            with_prev,
            bytes,
        }
    }
}

pub struct Ring {
    batches: VecDeque<Arc<Batch>>,
    /// Every revision from here to the newest batch's is in the ring.
    from: i64,
    bytes: usize,
    limit: usize,
}

impl Ring {
    /// An empty ring after revision `at`.
    pub fn new(at: i64, limit: usize) -> Ring {
        Ring {
            batches: VecDeque::new(),
            from: at + 1,
            bytes: 0,
            limit,
        }
    }

    /// Forgets everything: revisions after `at` come next.
    pub fn reset(&mut self, at: i64) {
        self.batches.clear();
        self.bytes = 0;
        self.from = at + 1;
    }

    pub fn push(&mut self, batch: Arc<Batch>) {
        self.bytes += batch.bytes;
        self.batches.push_back(batch);
        while self.bytes > self.limit {
            let Some(old) = self.batches.pop_front() else {
                break;
            };
            self.bytes -= old.bytes;
            self.from = old.revision + 1;
        }
    }

    /// The first revision the ring holds every event of.
    pub fn from(&self) -> i64 {
        self.from
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The batches holding revisions `>= rev`, oldest first; None unless the
    /// ring covers every revision from `rev` on (with prev_kv read if
    /// `with_prev`).
    pub fn since(&self, rev: i64, with_prev: bool) -> Option<impl Iterator<Item = &Arc<Batch>>> {
        if rev < self.from {
            return None;
        }
        let first = self.batches.partition_point(|b| b.revision < rev);
        if with_prev && self.batches.iter().skip(first).any(|b| !b.with_prev) {
            return None;
        }
        Some(self.batches.iter().skip(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::mvccpb::{Event, KeyValue};

    fn batch(revs: &[i64], with_prev: bool) -> Arc<Batch> {
        let events = revs
            .iter()
            .map(|&rev| {
                EncodedEvent::new(&Event {
                    r#type: 0,
                    kv: Some(KeyValue {
                        key: b"k".to_vec(),
                        value: vec![b'v'; 100],
                        mod_revision: rev,
                        ..Default::default()
                    }),
                    prev_kv: None,
                })
            })
            .collect();
        Arc::new(Batch::new(events, with_prev))
    }

    fn revs(ring: &Ring, from: i64, with_prev: bool) -> Option<Vec<i64>> {
        ring.since(from, with_prev).map(|it| {
            it.flat_map(|b| b.events.iter().map(|e| e.rev))
                .filter(|&r| r >= from)
                .collect()
        })
    }

    #[test]
    fn covers_what_it_was_given_after_its_start() {
        let mut ring = Ring::new(4, 1 << 20);
        assert_eq!(revs(&ring, 5, false), Some(vec![]));
        assert_eq!(revs(&ring, 4, false), None);
        ring.push(batch(&[5, 6], true));
        ring.push(batch(&[7], true));
        assert_eq!(revs(&ring, 6, false), Some(vec![6, 7]));
        assert_eq!(revs(&ring, 8, false), Some(vec![]));
    }

    #[test]
    fn old_batches_fall_out_past_the_limit() {
        let one = batch(&[2], true).bytes;
        let mut ring = Ring::new(1, one * 2);
        for rev in 2..6 {
            ring.push(batch(&[rev], true));
        }
        assert_eq!(ring.from(), 4);
        assert_eq!(revs(&ring, 3, false), None);
        assert_eq!(revs(&ring, 4, false), Some(vec![4, 5]));
        assert!(ring.bytes() <= one * 2);
    }

    #[test]
    fn batches_without_prev_kv_do_not_serve_prev_kv_watchers() {
        let mut ring = Ring::new(1, 1 << 20);
        ring.push(batch(&[2], false));
        ring.push(batch(&[3], true));
        assert_eq!(revs(&ring, 2, true), None);
        assert_eq!(revs(&ring, 3, true), Some(vec![3]));
        ring.reset(3);
        assert_eq!(revs(&ring, 3, false), None);
        assert_eq!(revs(&ring, 4, false), Some(vec![]));
    }
}
