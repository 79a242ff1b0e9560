//! Whole-store snapshot: the revision counters and every log entry, as a
//! versioned protobuf message. The index is not stored: decoding rebuilds it
//! by replaying the log in revision order, the way etcd rebuilds its index
//! from the bolt key bucket at startup.

use prost::Message;

use super::error::MvccError;
use super::revision::Revision;
use super::store::{tombstone_kv, Store};
use crate::pb::mvccpb::KeyValue;

/// Bumped on any incompatible change of the messages below.
const FORMAT: u32 = 1;

#[derive(Clone, PartialEq, prost::Message)]
struct SnapshotPb {
    #[prost(uint32, tag = "1")]
    format: u32,
    #[prost(int64, tag = "2")]
    current_revision: i64,
    #[prost(int64, tag = "3")]
    compact_revision: i64,
    #[prost(message, repeated, tag = "4")]
    entries: Vec<EntryPb>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EntryPb {
    #[prost(int64, tag = "1")]
    main: i64,
    #[prost(int64, tag = "2")]
    sub: i64,
    #[prost(bool, tag = "3")]
    tombstone: bool,
    /// For a tombstone only the key is kept.
    #[prost(message, optional, tag = "4")]
    kv: Option<KeyValue>,
}

fn corrupt(what: impl Into<String>) -> MvccError {
    MvccError::Corrupt(format!("snapshot: {}", what.into()))
}

impl Store {
    /// The whole state (log + revisions; the index is derived from the log).
    /// Deterministic: equal stores encode to equal bytes.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let entries = self
            .log
            .iter()
            .map(|(r, kv)| {
                let tombstone = super::store::is_tombstone(kv);
                let kv = if tombstone {
                    KeyValue {
                        key: kv.key.clone(),
                        ..Default::default()
                    }
                } else {
                    kv.clone()
                };
                EntryPb {
                    main: r.main,
                    sub: r.sub,
                    tombstone,
                    kv: Some(kv),
                }
            })
            .collect();
        SnapshotPb {
            format: FORMAT,
            current_revision: self.current,
            compact_revision: self.compacted,
            entries,
        }
        .encode_to_vec()
    }

    /// Rebuilds a store from [`Store::encode_snapshot`]'s bytes, checking
    /// that the history is consistent; Corrupt otherwise.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<Store, MvccError> {
        let snap = SnapshotPb::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
        if snap.format != FORMAT {
            return Err(corrupt(format!("unsupported format {}", snap.format)));
        }
        if snap.current_revision < 1 || snap.compact_revision > snap.current_revision {
            return Err(corrupt(format!(
                "bad revisions: current {} compact {}",
                snap.current_revision, snap.compact_revision
            )));
        }
        let mut s = Store::new();
        s.current = snap.current_revision;
        s.compacted = snap.compact_revision;
        let mut last = Revision::default();
        for e in snap.entries {
            let r = Revision::new(e.main, e.sub);
            if r.main < 1 || r.sub < 0 || r <= last || r.main > s.current {
                return Err(corrupt(format!(
                    "entry {r:?} out of order or beyond current revision"
                )));
            }
            last = r;
            let kv =
                e.kv.ok_or_else(|| corrupt(format!("entry {r:?} has no kv")))?;
            if e.tombstone {
                s.restore_tombstone(kv.key, r)?;
            } else {
                s.restore_put(kv, r)?;
            }
        }
        Ok(s)
    }

    fn restore_tombstone(&mut self, key: Vec<u8>, r: Revision) -> Result<(), MvccError> {
        if self.index.key_index(&key).is_none() {
            self.index.restore_tombstone(&key, r);
        } else if self.index.tombstone(&key, r).is_none() {
            return Err(corrupt(format!(
                "entry {r:?} deletes a key that does not exist"
            )));
        }
        self.leases.set(&key, 0);
        self.insert_version(r, tombstone_kv(&key, r));
        Ok(())
    }

    fn restore_put(&mut self, kv: KeyValue, r: Revision) -> Result<(), MvccError> {
        if kv.mod_revision != r.main || kv.create_revision <= 0 || kv.version <= 0 {
            return Err(corrupt(format!(
                "entry {r:?} has inconsistent kv revisions"
            )));
        }
        match self.index.key_index(&kv.key) {
            None => {
                self.index
                    .restore(&kv.key, Revision::new(kv.create_revision, 0), r, kv.version)
            }
            Some(_) => {
                let (created, version) = match self.kv_at(&kv.key, i64::MAX) {
                    Some(prev) => (prev.create_revision, prev.version + 1),
                    None => (r.main, 1),
                };
                if (created, version) != (kv.create_revision, kv.version) {
                    return Err(corrupt(format!(
                        "entry {r:?} breaks the key's version history"
                    )));
                }
                self.index.put(&kv.key, r);
            }
        }
        self.leases.set(&kv.key, kv.lease);
        self.insert_version(r, kv);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn round_trip(s: &Store) -> Store {
        Store::decode_snapshot(&s.encode_snapshot()).unwrap()
    }

    fn assert_same_behaviour(a: &Store, b: &Store) {
        assert_eq!(a.current_revision(), b.current_revision());
        assert_eq!(a.compact_revision(), b.compact_revision());
        assert_eq!(a.keys_count(), b.keys_count());
        assert_eq!(a.log, b.log);
        let from = a.compact_revision().max(1);
        for rev in from..=a.current_revision() {
            assert_eq!(
                a.range(&range_req("\0", "\0", rev)),
                b.range(&range_req("\0", "\0", rev))
            );
            assert_eq!(a.hash_kv(rev), b.hash_kv(rev));
            assert_eq!(
                a.events_since(b"\0", b"\0", rev, 0),
                b.events_since(b"\0", b"\0", rev, 0)
            );
        }
    }

    #[test]
    fn empty_store_round_trips() {
        let s = Store::new();
        assert_eq!(round_trip(&s), s);
    }

    #[test]
    fn snapshot_round_trip_preserves_reads_at_all_revisions() {
        let mut s = Store::new();
        sample_history(&mut s);
        assert_same_behaviour(&s, &round_trip(&s));
    }

    #[test]
    fn snapshot_of_compacted_store_round_trips() {
        for at in 2..=11 {
            let mut s = Store::new();
            sample_history(&mut s);
            s.compact(at).unwrap();
            let r = round_trip(&s);
            assert_same_behaviour(&s, &r);
            // The restored store goes on like the original.
            let mut s2 = s.clone();
            let mut r2 = r;
            for st in [&mut s2, &mut r2] {
                put(st, "a", "again");
                put(st, "b", "again");
                del(st, "e");
                st.compact(st.current_revision() - 1).unwrap();
            }
            assert_same_behaviour(&s2, &r2);
        }
    }

    #[test]
    fn snapshot_preserves_lease_attachments() {
        let mut s = Store::new();
        put_lease(&mut s, "a", 3);
        put_lease(&mut s, "b", 3);
        put(&mut s, "b", "no lease");
        let r = round_trip(&s);
        assert_eq!(r.keys_with_lease(3), vec![b"a".to_vec()]);
    }

    #[test]
    fn snapshot_encoding_is_deterministic() {
        let mut a = Store::new();
        let mut b = Store::new();
        sample_history(&mut a);
        sample_history(&mut b);
        assert_eq!(a.encode_snapshot(), b.encode_snapshot());
    }

    #[test]
    fn garbage_is_corrupt() {
        assert!(matches!(
            Store::decode_snapshot(b"\xff\xff\xff"),
            Err(MvccError::Corrupt(_))
        ));
    }

    #[test]
    fn unknown_format_is_corrupt() {
        let bytes = SnapshotPb {
            format: 99,
            current_revision: 1,
            compact_revision: -1,
            entries: vec![],
        }
        .encode_to_vec();
        assert!(matches!(
            Store::decode_snapshot(&bytes),
            Err(MvccError::Corrupt(_))
        ));
    }

    #[test]
    fn out_of_order_entries_are_corrupt() {
        let mut s = Store::new();
        put(&mut s, "a", "1");
        put(&mut s, "b", "1");
        let mut snap = SnapshotPb::decode(s.encode_snapshot().as_slice()).unwrap();
        snap.entries.reverse();
        assert!(matches!(
            Store::decode_snapshot(&snap.encode_to_vec()),
            Err(MvccError::Corrupt(_))
        ));
    }

    #[test]
    fn entry_beyond_current_revision_is_corrupt() {
        let mut s = Store::new();
        put(&mut s, "a", "1");
        let mut snap = SnapshotPb::decode(s.encode_snapshot().as_slice()).unwrap();
        snap.current_revision = 1;
        assert!(matches!(
            Store::decode_snapshot(&snap.encode_to_vec()),
            Err(MvccError::Corrupt(_))
        ));
    }

    #[test]
    fn version_gap_is_corrupt() {
        let mut s = Store::new();
        put(&mut s, "a", "1");
        put(&mut s, "a", "2");
        let mut snap = SnapshotPb::decode(s.encode_snapshot().as_slice()).unwrap();
        snap.entries[1].kv.as_mut().unwrap().version = 5;
        assert!(matches!(
            Store::decode_snapshot(&snap.encode_to_vec()),
            Err(MvccError::Corrupt(_))
        ));
    }

    #[test]
    fn double_delete_is_corrupt() {
        let mut s = Store::new();
        put(&mut s, "a", "1");
        del(&mut s, "a");
        let mut snap = SnapshotPb::decode(s.encode_snapshot().as_slice()).unwrap();
        let mut again = snap.entries[1].clone();
        again.main = 4;
        snap.entries.push(again);
        snap.current_revision = 4;
        assert!(matches!(
            Store::decode_snapshot(&snap.encode_to_vec()),
            Err(MvccError::Corrupt(_))
        ));
    }
}
