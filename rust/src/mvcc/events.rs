//! Watch catch-up: the events of past revisions, read back from the log.

use super::error::MvccError;
use super::index::KeyRange;
use super::revision::Revision;
use super::store::{is_tombstone, Store};
use crate::pb::mvccpb::event::EventType;
use crate::pb::mvccpb::{Event, KeyValue};

impl Store {
    /// Events for keys in `[key, range_end)` (Range's conventions: empty end
    /// is the single key, `"\0"` every key `>= key`) with revision
    /// `>= start_rev`, in revision order, each with `prev_kv` when the key
    /// existed before it (and that version is not compacted). At most `max`
    /// events (0: no limit), but never part of one revision's events: the
    /// result may exceed `max` to finish the last revision.
    ///
    /// Compacted if `start_rev < compact_revision` (etcd's rule: a watch may
    /// start exactly at the compact revision). `start_rev <= 0` (a watch
    /// from "now") needs no catch-up and gives no events.
    pub fn events_since(
        &self,
        key: &[u8],
        range_end: &[u8],
        start_rev: i64,
        max: usize,
    ) -> Result<Vec<Event>, MvccError> {
        if start_rev <= 0 {
            return Ok(Vec::new());
        }
        if start_rev < self.compacted {
            return Err(MvccError::Compacted);
        }
        let range = KeyRange::new(key, range_end);
        let mut events = Vec::new();
        let mut last_main = 0;
        let mut take = |r: Revision, kv: &KeyValue| -> bool {
            if max > 0 && events.len() >= max && r.main != last_main {
                return false;
            }
            last_main = r.main;
            events.push(self.event(r, kv));
            true
        };
        match range {
            KeyRange::Single(k) => {
                if let Some(ki) = self.index.key_index(k) {
                    for r in ki.revisions_since(start_rev) {
                        let Some(kv) = self.log.get(&r) else { continue };
                        if !take(r, kv) {
                            break;
                        }
                    }
                }
            }
            _ => {
                for (r, kv) in self.log.range(Revision::new(start_rev, 0)..) {
                    if range.contains(&kv.key) && !take(*r, kv) {
                        break;
                    }
                }
            }
        }
        Ok(events)
    }

    /// The event that the log entry at `r` records.
    fn event(&self, r: Revision, kv: &KeyValue) -> Event {
        let prev_kv = self
            .index
            .key_index(&kv.key)
            .and_then(|ki| ki.previous(r))
            .and_then(|p| self.log.get(&p))
            .filter(|p| !is_tombstone(p))
            .cloned();
        let kind = if is_tombstone(kv) {
            EventType::Delete
        } else {
            EventType::Put
        };
        Event {
            r#type: kind as i32,
            kv: Some(kv.clone()),
            prev_kv,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn revs(evs: &[Event]) -> Vec<i64> {
        evs.iter()
            .map(|e| e.kv.as_ref().unwrap().mod_revision)
            .collect()
    }

    fn sample() -> Store {
        let mut s = Store::new();
        sample_history(&mut s);
        s
    }

    #[test]
    fn events_since_matches_events_returned_by_writes() {
        let mut s = Store::new();
        let mut live = Vec::new();
        live.extend(s.put(&put_req("a", "1"), &any_lease).unwrap().1);
        live.extend(s.put(&put_req("b", "1"), &any_lease).unwrap().1);
        live.extend(
            s.txn(
                &txn(vec![], vec![put_op("a", "2"), del_op("b", "")], vec![]),
                &any_lease,
            )
            .unwrap()
            .1,
        );
        live.extend(s.delete_range(&del_req("a", "")).unwrap().1);
        assert_eq!(s.events_since(b"\0", b"\0", 1, 0).unwrap(), live);
    }

    #[test]
    fn events_since_returns_prev_kv() {
        let s = sample();
        let evs = s.events_since(b"a", b"", 4, 0).unwrap();
        assert_eq!(revs(&evs), vec![4, 8, 9, 11]);
        assert_eq!(evs[0].prev_kv.as_ref().unwrap().value, b"a1");
        assert_eq!(evs[1].prev_kv.as_ref().unwrap().value, b"a2");
        assert_eq!(evs[2].r#type, EventType::Delete as i32);
        assert_eq!(evs[2].prev_kv.as_ref().unwrap().value, b"a3");
        assert!(evs[3].prev_kv.is_none());
    }

    #[test]
    fn events_since_filters_by_range() {
        let s = sample();
        let evs = s.events_since(b"b", b"d", 1, 0).unwrap();
        let keys: Vec<&[u8]> = evs
            .iter()
            .map(|e| e.kv.as_ref().unwrap().key.as_slice())
            .collect();
        assert_eq!(keys, vec![&b"b"[..], b"b", b"c", b"b", b"c", b"b"]);
        assert_eq!(revs(&evs), vec![3, 5, 6, 7, 7, 9]);
    }

    #[test]
    fn events_since_from_key_range() {
        let s = sample();
        let evs = s.events_since(b"d", b"\0", 1, 0).unwrap();
        assert_eq!(revs(&evs), vec![7, 10]);
    }

    #[test]
    fn events_since_limit_does_not_split_a_revision() {
        let s = sample();
        let evs = s.events_since(b"\0", b"\0", 6, 2).unwrap();
        // 6 (c), then revision 7 has three events: all of them come.
        assert_eq!(revs(&evs), vec![6, 7, 7, 7]);
        let evs = s.events_since(b"\0", b"\0", 6, 1).unwrap();
        assert_eq!(revs(&evs), vec![6]);
    }

    #[test]
    fn events_since_future_revision_is_empty() {
        let s = sample();
        assert!(s.events_since(b"\0", b"\0", 12, 0).unwrap().is_empty());
    }

    #[test]
    fn events_since_zero_is_empty() {
        let s = sample();
        assert!(s.events_since(b"\0", b"\0", 0, 0).unwrap().is_empty());
    }

    #[test]
    fn events_since_compacted_revision_fails() {
        let mut s = sample();
        s.compact(7).unwrap();
        assert_eq!(s.events_since(b"a", b"", 6, 0), Err(MvccError::Compacted));
    }

    #[test]
    fn events_since_exactly_compact_revision_is_served() {
        let mut s = sample();
        let before = s.events_since(b"\0", b"\0", 7, 0).unwrap();
        s.compact(7).unwrap();
        let after = s.events_since(b"\0", b"\0", 7, 0).unwrap();
        assert_eq!(revs(&after), revs(&before));
        // Revision 7 deleted c, whose previous version (6) is compacted away.
        assert_eq!(after[2].r#type, EventType::Delete as i32);
        assert!(before[2].prev_kv.is_some());
        assert!(after[2].prev_kv.is_none());
        assert_eq!(after[3..], before[3..]);
    }

    #[test]
    fn events_since_single_key_of_unknown_key_is_empty() {
        let s = sample();
        assert!(s.events_since(b"nope", b"", 1, 0).unwrap().is_empty());
    }
}
