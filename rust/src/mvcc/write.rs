//! Writes: Put and DeleteRange, alone or as steps of a txn.
//!
//! A [`WriteTxn`] writes every change at main revision `current + 1`, with
//! sub revisions in the order of the changes, straight into the index and
//! log; reads through it see its own writes. It either commits (the current
//! revision advances if anything was written) or rolls back, undoing each
//! change so the store is exactly as before.

use super::bucket::{tombstone_value, KeyBucketMut};
use super::error::MvccError;
use super::index::KeyRange;
use super::revision::Revision;
use super::store::{read_version, Store};
use crate::pb::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
};
use crate::pb::mvccpb::event::EventType;
use crate::pb::mvccpb::{Event, KeyValue};

/// How to take one change back: what the index and the key's lease were
/// before it.
struct Undo {
    key: Vec<u8>,
    tombstone: bool,
    /// The put created the key's index entry (it had no history left).
    new_entry: bool,
    prev_lease: i64,
}

/// What a write reads of the versions it replaces, beyond what the index
/// knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrevValues {
    /// Only what the request itself asks for (prev_kv, ignore_value).
    AsAsked,
    /// Also the replaced version of every change, for the events' prev_kv
    /// (someone watches).
    InEvents,
}

/// One in-progress write revision.
pub(super) struct WriteTxn<'a> {
    store: &'a mut Store,
    bucket: &'a mut dyn KeyBucketMut,
    prev_values: PrevValues,
    /// The main revision being written.
    rev: i64,
    /// Changes made so far (the next sub revision).
    changes: i64,
    events: Vec<Event>,
    undo: Vec<Undo>,
}

impl<'a> WriteTxn<'a> {
    pub fn begin(
        store: &'a mut Store,
        bucket: &'a mut dyn KeyBucketMut,
        prev_values: PrevValues,
    ) -> WriteTxn<'a> {
        let rev = store.current + 1;
        WriteTxn {
            store,
            bucket,
            prev_values,
            rev,
            changes: 0,
            events: Vec::new(),
            undo: Vec::new(),
        }
    }

    /// The revision reads through this txn see as current: the one being
    /// written once something was written, the previous one until then.
    /// It is also what etcd puts in the header of each op's response.
    pub fn view(&self) -> i64 {
        if self.changes > 0 {
            self.rev
        } else {
            self.rev - 1
        }
    }

    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        self.store.plan_range(req, self.view())?.read(&*self.bucket)
    }

    /// Puts one key. The lease must have been checked by the caller.
    /// Fails with KeyNotFound (writing nothing) for ignore_value /
    /// ignore_lease on a key that does not exist.
    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse, MvccError> {
        let found = self.store.index.get(&req.key, self.view());
        if (req.ignore_value || req.ignore_lease) && found.is_none() {
            return Err(MvccError::KeyNotFound);
        }
        let want_prev = req.prev_kv || req.ignore_value || self.prev_values == PrevValues::InEvents;
        let prev = match found {
            Some(kr) if want_prev => Some(read_version(&*self.bucket, kr.modified)?),
            _ => None,
        };
        let prev_lease = self.store.leases.lease_of(&req.key);
        let value = match (&prev, req.ignore_value) {
            (Some(p), true) => p.value.clone(),
            _ => req.value.clone(),
        };
        let lease = if req.ignore_lease {
            prev_lease
        } else {
            req.lease
        };
        let (create_revision, version) = match found {
            Some(kr) => (kr.created.main, kr.version + 1),
            None => (self.rev, 1),
        };
        let at = Revision::new(self.rev, self.changes);
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision,
            mod_revision: self.rev,
            version,
            value,
            lease,
        };
        self.bucket.insert(at, false, &kv)?;
        let new_entry = self.store.index.put(&req.key, at).is_none();
        self.undo.push(Undo {
            key: req.key.clone(),
            tombstone: false,
            new_entry,
            prev_lease,
        });
        self.store.leases.set(&req.key, lease);
        self.changes += 1;
        let prev_kv = if req.prev_kv { prev.clone() } else { None };
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: prev,
        });
        Ok(PutResponse {
            header: None,
            prev_kv,
        })
    }

    /// Deletes every key in the range that exists now.
    pub fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, MvccError> {
        let range = KeyRange::new(&req.key, &req.range_end);
        let view = self.view();
        let doomed: Vec<(Vec<u8>, Revision)> = self
            .store
            .index
            .range(range, view)
            .map(|(k, kr)| (k.to_vec(), kr.modified))
            .collect();
        let want_prev = req.prev_kv || self.prev_values == PrevValues::InEvents;
        let mut prev_kvs = Vec::new();
        for (key, modified) in &doomed {
            let prev = if want_prev {
                Some(read_version(&*self.bucket, *modified)?)
            } else {
                None
            };
            if req.prev_kv {
                prev_kvs.extend(prev.clone());
            }
            self.delete_key(key, prev)?;
        }
        Ok(DeleteRangeResponse {
            header: None,
            deleted: doomed.len() as i64,
            prev_kvs,
        })
    }

    fn delete_key(&mut self, key: &[u8], prev: Option<KeyValue>) -> Result<(), MvccError> {
        let at = Revision::new(self.rev, self.changes);
        self.bucket.insert(at, true, &tombstone_value(key))?;
        self.store
            .index
            .tombstone(key, at)
            .expect("a key visible now is live in the index");
        let prev_lease = self.store.leases.lease_of(key);
        self.undo.push(Undo {
            key: key.to_vec(),
            tombstone: true,
            new_entry: false,
            prev_lease,
        });
        self.store.leases.set(key, 0);
        self.changes += 1;
        self.events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue {
                key: key.to_vec(),
                mod_revision: self.rev,
                ..Default::default()
            }),
            prev_kv: prev,
        });
        Ok(())
    }

    /// Ends the write: the current revision advances if anything was
    /// written. Returns the events.
    pub fn commit(self) -> Vec<Event> {
        if self.changes > 0 {
            self.store.current = self.rev;
        }
        self.events
    }

    /// Undoes every write; the store and bucket are as they were at
    /// [`WriteTxn::begin`].
    pub fn rollback(self) -> Result<(), MvccError> {
        for (sub, u) in self.undo.into_iter().enumerate().rev() {
            if u.tombstone {
                self.store.index.undo_tombstone(&u.key);
            } else {
                self.store.index.undo_put(&u.key, u.new_entry);
            }
            self.store.leases.set(&u.key, u.prev_lease);
            self.bucket
                .remove(Revision::new(self.rev, sub as i64), u.tombstone)?;
        }
        Ok(())
    }
}

impl Store {
    /// Puts one key as one revision. A lease the `lease_ok` check rejects
    /// fails with LeaseNotFound; ignore_value / ignore_lease on a missing
    /// key fails with KeyNotFound; either way nothing changes. The response's
    /// prev_kv is set when `req.prev_kv`; the event's as `prev_values` says.
    /// Header is left None.
    pub fn put(
        &mut self,
        bucket: &mut dyn KeyBucketMut,
        prev_values: PrevValues,
        req: &PutRequest,
        lease_ok: &dyn Fn(i64) -> bool,
    ) -> Result<(PutResponse, Vec<Event>), MvccError> {
        if req.lease != 0 && !lease_ok(req.lease) {
            return Err(MvccError::LeaseNotFound);
        }
        let mut w = WriteTxn::begin(self, bucket, prev_values);
        match w.put(req) {
            Ok(resp) => Ok((resp, w.commit())),
            Err(e) => {
                w.rollback()?;
                Err(e)
            }
        }
    }

    /// Deletes the keys in range as one revision; deleting nothing does not
    /// advance the revision. The response's prev_kvs honour `req.prev_kv`.
    /// Header is left None.
    pub fn delete_range(
        &mut self,
        bucket: &mut dyn KeyBucketMut,
        prev_values: PrevValues,
        req: &DeleteRangeRequest,
    ) -> Result<(DeleteRangeResponse, Vec<Event>), MvccError> {
        let mut w = WriteTxn::begin(self, bucket, prev_values);
        match w.delete_range(req) {
            Ok(resp) => Ok((resp, w.commit())),
            Err(e) => {
                w.rollback()?;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn first_put_is_revision_2() {
        let mut s = TestStore::new();
        assert_eq!(put(&mut s, "a", "1"), 2);
        let kv = get(&s, "a").unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 2, 1));
    }

    #[test]
    fn overwrite_keeps_create_revision_and_bumps_version() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        put(&mut s, "b", "1");
        put(&mut s, "a", "2");
        let kv = get(&s, "a").unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 4, 2));
        assert_eq!(kv.value, b"2");
    }

    #[test]
    fn delete_then_put_starts_new_generation_with_version_1() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        put(&mut s, "a", "2");
        del(&mut s, "a");
        put(&mut s, "a", "3");
        let kv = get(&s, "a").unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
    }

    #[test]
    fn put_event_carries_kv_and_prev_kv_even_without_prev_kv_flag() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        let (resp, evs) = s.put(&put_req("a", "2"), &any_lease).unwrap();
        assert!(resp.prev_kv.is_none());
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].r#type, EventType::Put as i32);
        assert_eq!(evs[0].kv.as_ref().unwrap().value, b"2");
        assert_eq!(evs[0].prev_kv.as_ref().unwrap().value, b"1");
    }

    #[test]
    fn put_of_new_key_has_no_prev_kv() {
        let mut s = TestStore::new();
        let mut req = put_req("a", "1");
        req.prev_kv = true;
        let (resp, evs) = s.put(&req, &any_lease).unwrap();
        assert!(resp.prev_kv.is_none());
        assert!(evs[0].prev_kv.is_none());
    }

    #[test]
    fn put_with_prev_kv_returns_previous_value() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        let mut req = put_req("a", "2");
        req.prev_kv = true;
        let (resp, _) = s.put(&req, &any_lease).unwrap();
        let prev = resp.prev_kv.unwrap();
        assert_eq!((prev.value.as_slice(), prev.mod_revision), (&b"1"[..], 2));
        assert!(resp.header.is_none());
    }

    #[test]
    fn put_with_missing_lease_fails_and_changes_nothing() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        let before = s.clone();
        let mut req = put_req("a", "2");
        req.lease = 99;
        assert_eq!(s.put(&req, &|_| false), Err(MvccError::LeaseNotFound));
        assert_eq!(s, before);
    }

    #[test]
    fn put_with_existing_lease_attaches_it() {
        let mut s = TestStore::new();
        let mut req = put_req("a", "1");
        req.lease = 7;
        s.put(&req, &|id| id == 7).unwrap();
        assert_eq!(get(&s, "a").unwrap().lease, 7);
        assert_eq!(s.keys_with_lease(7), vec![b"a".to_vec()]);
    }

    #[test]
    fn put_with_ignore_value_keeps_old_value() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        let mut req = put_req("a", "");
        req.ignore_value = true;
        req.lease = 7;
        s.put(&req, &any_lease).unwrap();
        let kv = get(&s, "a").unwrap();
        assert_eq!(
            (kv.value.as_slice(), kv.lease, kv.version),
            (&b"1"[..], 7, 2)
        );
    }

    #[test]
    fn put_with_ignore_lease_keeps_old_lease() {
        let mut s = TestStore::new();
        put_lease(&mut s, "a", 7);
        let mut req = put_req("a", "new");
        req.ignore_lease = true;
        s.put(&req, &any_lease).unwrap();
        let kv = get(&s, "a").unwrap();
        assert_eq!((kv.value.as_slice(), kv.lease), (&b"new"[..], 7));
    }

    #[test]
    fn put_without_lease_detaches_old_lease() {
        let mut s = TestStore::new();
        put_lease(&mut s, "a", 7);
        put(&mut s, "a", "x");
        assert!(s.keys_with_lease(7).is_empty());
    }

    #[test]
    fn put_with_ignore_value_on_missing_key_fails() {
        let mut s = TestStore::new();
        let before = s.clone();
        let mut req = put_req("a", "");
        req.ignore_value = true;
        assert_eq!(s.put(&req, &any_lease), Err(MvccError::KeyNotFound));
        assert_eq!(s, before);
    }

    #[test]
    fn put_with_ignore_lease_on_deleted_key_fails() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        del(&mut s, "a");
        let before = s.clone();
        let mut req = put_req("a", "2");
        req.ignore_lease = true;
        assert_eq!(s.put(&req, &any_lease), Err(MvccError::KeyNotFound));
        assert_eq!(s, before);
    }

    #[test]
    fn lease_is_checked_before_key_existence() {
        let mut s = TestStore::new();
        let mut req = put_req("a", "");
        req.ignore_value = true;
        req.lease = 5;
        assert_eq!(s.put(&req, &|_| false), Err(MvccError::LeaseNotFound));
    }

    #[test]
    fn delete_of_missing_key_does_not_advance_revision() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        let (resp, evs) = s.delete_range(&del_req("b", "")).unwrap();
        assert_eq!(resp.deleted, 0);
        assert!(evs.is_empty());
        assert_eq!(s.current_revision(), 2);
    }

    #[test]
    fn delete_range_is_one_revision_with_ordered_subs() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        put(&mut s, "b", "1");
        put(&mut s, "c", "1");
        let (resp, evs) = s.delete_range(&del_req("a", "c")).unwrap();
        assert_eq!(resp.deleted, 2);
        assert_eq!(s.current_revision(), 5);
        assert_eq!(
            keys(
                &evs.iter()
                    .map(|e| e.kv.clone().unwrap())
                    .collect::<Vec<_>>()
            ),
            vec!["a", "b"]
        );
        assert!(s.bucket.revisions().contains(&Revision::new(5, 0)));
        assert!(s.bucket.revisions().contains(&Revision::new(5, 1)));
    }

    #[test]
    fn delete_event_has_key_and_mod_revision_only_plus_prev_kv() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        let (_, evs) = s.delete_range(&del_req("a", "")).unwrap();
        assert_eq!(evs[0].r#type, EventType::Delete as i32);
        assert_eq!(
            evs[0].kv,
            Some(KeyValue {
                key: b"a".to_vec(),
                mod_revision: 3,
                ..Default::default()
            })
        );
        assert_eq!(evs[0].prev_kv.as_ref().unwrap().value, b"1");
    }

    #[test]
    fn delete_with_prev_kv_returns_deleted_values() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        put(&mut s, "b", "2");
        let mut req = del_req("a", "\0");
        req.prev_kv = true;
        let (resp, _) = s.delete_range(&req).unwrap();
        assert_eq!(resp.deleted, 2);
        assert_eq!(keys(&resp.prev_kvs), vec!["a", "b"]);
        let mut req = del_req("a", "\0");
        req.prev_kv = false;
        put(&mut s, "a", "1");
        let (resp, _) = s.delete_range(&req).unwrap();
        assert!(resp.prev_kvs.is_empty());
    }

    #[test]
    fn delete_of_already_deleted_key_deletes_nothing() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        del(&mut s, "a");
        let (resp, _) = s.delete_range(&del_req("a", "")).unwrap();
        assert_eq!(resp.deleted, 0);
        assert_eq!(s.current_revision(), 3);
    }

    #[test]
    fn reads_in_write_txn_see_earlier_writes() {
        let mut s = TestStore::new();
        put(&mut s, "a", "1");
        let mut w = WriteTxn::begin(&mut s.store, &mut s.bucket, PrevValues::InEvents);
        assert_eq!(w.view(), 2);
        w.put(&put_req("a", "2")).unwrap();
        assert_eq!(w.view(), 3);
        let r = w.range(&range_req("a", "", 0)).unwrap();
        assert_eq!(r.kvs[0].value, b"2");
        let r = w.range(&range_req("a", "", 2)).unwrap();
        assert_eq!(r.kvs[0].value, b"1");
        w.commit();
    }

    #[test]
    fn rollback_restores_store_exactly() {
        let mut s = TestStore::new();
        sample_history(&mut s);
        put_lease(&mut s, "l", 4);
        let before = s.clone();
        let mut w = WriteTxn::begin(&mut s.store, &mut s.bucket, PrevValues::InEvents);
        w.put(&put_req("new", "x")).unwrap();
        w.put(&put_req("a", "x")).unwrap();
        w.delete_range(&del_req("\0", "\0")).unwrap();
        w.put(&put_req("b", "x")).unwrap();
        w.put(&put_req("l", "no lease")).unwrap();
        w.rollback().unwrap();
        assert_eq!(s, before);
        assert_eq!(s.keys_with_lease(4), vec![b"l".to_vec()]);
    }
}
