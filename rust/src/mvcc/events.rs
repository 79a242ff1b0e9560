//! Watch catch-up: the events of past revisions, read back from the log.

use super::bucket::{decode_kv, KeyBucket, KvHeader};
use super::error::MvccError;
use super::index::KeyRange;
use super::revision::Revision;
use super::store::{read_version, Store};
use crate::pb::mvccpb::event::EventType;
use crate::pb::mvccpb::{Event, KeyValue};

impl Store {
    /// Events for keys in `[key, range_end)` (Range's conventions: empty end
    /// is the single key, `"\0"` every key `>= key`) with revision
    /// `>= start_rev`, in revision order, each with `prev_kv` (if
    /// `with_prev`) when the key existed before it (and that version is not
    /// compacted). At most `max`
    /// events (0: no limit), but never part of one revision's events: the
    /// result may exceed `max` to finish the last revision.
    ///
    /// Compacted if `start_rev < compact_revision` (etcd's rule: a watch may
    /// start exactly at the compact revision). `start_rev <= 0` (a watch
    /// from "now") needs no catch-up and gives no events.
    pub fn events_since(
        &self,
        bucket: &dyn KeyBucket,
        key: &[u8],
        range_end: &[u8],
        start_rev: i64,
        max: usize,
        with_prev: bool,
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
        let full = |events: &Vec<Event>, r: Revision, last_main: i64| {
            max > 0 && events.len() >= max && r.main != last_main
        };
        match range {
            KeyRange::Single(k) => {
                let Some(ki) = self.index.key_index(k) else {
                    return Ok(events);
                };
                for (r, tombstone) in ki.revisions_since(start_rev) {
                    if full(&events, r, last_main) {
                        break;
                    }
                    last_main = r.main;
                    let kv = if tombstone {
                        None
                    } else {
                        Some(read_version(bucket, r)?)
                    };
                    events.push(self.event(bucket, k, r, kv, with_prev)?);
                }
            }
            _ => {
                bucket.scan(
                    Revision::new(start_rev, 0),
                    i64::MAX,
                    &mut |r, tombstone, bytes| {
                        let header = KvHeader::parse(bytes).map_err(|e| {
                            MvccError::Corrupt(format!("key bucket entry {r:?} is unreadable: {e}"))
                        })?;
                        if !range.contains(header.key) {
                            return Ok(true);
                        }
                        if full(&events, r, last_main) {
                            return Ok(false);
                        }
                        last_main = r.main;
                        let kv = if tombstone {
                            None
                        } else {
                            Some(decode_kv(r, bytes)?)
                        };
                        events.push(self.event(bucket, header.key, r, kv, with_prev)?);
                        Ok(true)
                    },
                )?;
            }
        }
        Ok(events)
    }

    /// The event of the change at `r` to `key`: the put `kv`, or a delete
    /// when None. prev_kv is the version it replaced, if still kept (and
    /// asked for).
    fn event(
        &self,
        bucket: &dyn KeyBucket,
        key: &[u8],
        r: Revision,
        kv: Option<KeyValue>,
        with_prev: bool,
    ) -> Result<Event, MvccError> {
        let prev = with_prev
            .then(|| self.index.key_index(key).and_then(|ki| ki.previous(r)))
            .flatten();
        let prev_kv = match prev {
            Some(p) => bucket.get(p)?,
            None => None,
        };
        let (kind, kv) = match kv {
            Some(kv) => (EventType::Put, kv),
            None => (
                EventType::Delete,
                KeyValue {
                    key: key.to_vec(),
                    mod_revision: r.main,
                    ..Default::default()
                },
            ),
        };
        Ok(Event {
            r#type: kind as i32,
            kv: Some(kv),
            prev_kv,
        })
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

    fn sample() -> TestStore {
        let mut s = TestStore::new();
        sample_history(&mut s);
        s
    }

    #[test]
    fn events_since_matches_events_returned_by_writes() {
        let mut s = TestStore::new();
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
    fn events_since_without_prev_leaves_prev_kv_out() {
        let s = sample();
        let evs = s
            .store
            .events_since(&s.bucket, b"a", b"", 4, 0, false)
            .unwrap();
        assert_eq!(revs(&evs), vec![4, 8, 9, 11]);
        assert!(evs.iter().all(|e| e.prev_kv.is_none()));
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
    fn events_since_exactly_compact_revision_leave_out_its_deletes_as_etcd() {
        let mut s = sample();
        let before = s.events_since(b"\0", b"\0", 7, 0).unwrap();
        s.compact(7).unwrap();
        let after = s.events_since(b"\0", b"\0", 7, 0).unwrap();
        // Revision 7 deleted c: compaction at 7 removed that tombstone (etcd
        // does), so a watch from 7 sees the rest of the revision only.
        assert_eq!(before[2].r#type, EventType::Delete as i32);
        let mut expected = before.clone();
        expected.remove(2);
        assert_eq!(after, expected);
    }

    #[test]
    fn events_since_single_key_of_unknown_key_is_empty() {
        let s = sample();
        assert!(s.events_since(b"nope", b"", 1, 0).unwrap().is_empty());
    }
}
