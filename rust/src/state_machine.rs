//! The replicated state machine: what applying a committed Raft entry does.
//!
//! It owns the MVCC store (its index in RAM, its versions in the backend),
//! the lease table, the alarms, the auth store and the membership, and keeps
//! the backend's buckets in step with them inside the applier's write
//! transaction. Every member applies the same entries in the same order and
//! so reaches the same state; the backend records which entry that was (the
//! consistent index), so a restart re-applies only the entries after it.
//!
//! While alarms are raised it refuses what they forbid (see [`crate::alarms`]:
//! CORRUPT every write, NOSPACE whatever could grow the database).
//!
//! What it changes in the lease table it also records as [`LeaseChange`]s,
//! which the applier hands to the lessor once the batch is committed.

use std::collections::VecDeque;

use tonic::Status;

use crate::alarms;
use crate::auth::AuthStore;
use crate::backend::{Backend, BackendError, ReadTx, Tables, ENTRY_OVERHEAD};
use crate::errors;
use crate::lease_table::LeaseTable;
use crate::lessor::LeaseChange;
use crate::membership::{Change, Membership};
use crate::mvcc::{Compaction, MvccError, PrevValues, Store};
use crate::pb::etcdserverpb::{
    alarm_request::AlarmAction, request_op, AlarmMember, AlarmResponse, AlarmType,
    CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantResponse,
    LeaseRevokeResponse, PutResponse, RequestOp, TxnRequest, TxnResponse,
};
use crate::pb::internal::auth_admin_request::Request as Admin;
use crate::pb::internal::internal_request::Request;
use crate::pb::mvccpb::Event;

/// What applying one request produced, before the header is filled in.
#[derive(Debug)]
pub enum Outcome {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseCheckpoint,
    Alarm(AlarmResponse),
    /// A membership change or a member's attributes were applied.
    Membership,
    /// A change to the auth store was applied.
    Auth,
}

pub struct StateMachine {
    pub store: Store,
    pub backend: Backend,
    pub auth: AuthStore,
    pub leases: LeaseTable,
    pub alarms: Vec<AlarmMember>,
    pub membership: Membership,
    pub applied_index: u64,
    pub applied_term: u64,
    /// Compactions applied whose versions are still being removed from the
    /// key bucket, oldest first (the applier works on them between batches).
    pub compactions: VecDeque<Compaction>,
    /// Lease changes applied since the applier last took them.
    pub lease_changes: Vec<LeaseChange>,
}

impl StateMachine {
    /// The state a backend holds: the small buckets read back, the index
    /// rebuilt from the key bucket, and a compaction that had not finished
    /// queued again. `cluster_id` is the WAL's (the backend does not hold it).
    pub fn load(backend: Backend, cluster_id: u64) -> Result<StateMachine, BackendError> {
        let rtx = backend.begin_read()?;
        let saved = rtx.saved_state()?;
        let corrupt = |e: MvccError| backend.error(e);
        let (mut store, size) = Store::rebuild(rtx.key_bucket()).map_err(corrupt)?;
        store.set_compacted_floor(saved.scheduled_compaction);
        let mut compactions = VecDeque::new();
        // -1: never compacted. A compaction at revision 0 counts (a second
        // one is refused as compacted, as etcd refuses it).
        if saved.scheduled_compaction >= 0 {
            let job = store.compact(saved.scheduled_compaction).map_err(corrupt)?;
            if saved.finished_compaction < saved.scheduled_compaction {
                compactions.push_back(job);
            }
        }
        drop(rtx);
        backend
            .set_live_bytes(size.bytes as i64 + size.entries as i64 * ENTRY_OVERHEAD + saved.bytes);
        let mut leases = LeaseTable::default();
        for (id, ttl, remaining_ttl) in &saved.leases {
            leases.restore(*id, *ttl, *remaining_ttl);
        }
        Ok(StateMachine {
            store,
            backend,
            auth: AuthStore::from_state(Some(saved.auth)),
            leases,
            alarms: saved.alarms,
            membership: Membership::from_parts(cluster_id, saved.members, saved.removed),
            applied_index: saved.consistent_index,
            applied_term: saved.term,
            compactions,
            lease_changes: Vec::new(),
        })
    }

    /// A consistent read of the state as applied now. Take it while holding
    /// the state's lock, so that it matches the index.
    pub fn read(&self) -> Result<ReadTx, BackendError> {
        self.backend.begin_read()
    }

    /// The database file's size: Status reports it as dbSize and the quota
    /// is checked against it.
    pub fn db_size(&self) -> u64 {
        self.backend.sizes().file()
    }

    /// The bytes the live entries take: Status reports it as dbSizeInUse.
    pub fn db_size_in_use(&self) -> u64 {
        self.backend.sizes().in_use()
    }

    /// Whether a NOSPACE alarm is active (for any member): the cluster is
    /// capped.
    pub fn no_space(&self) -> bool {
        alarms::is_raised(&self.alarms, AlarmType::Nospace)
    }

    /// Applies one request at the current position, writing through
    /// `tables`. Events it causes are appended to `events`; a failed request
    /// changes nothing.
    pub fn apply(
        &mut self,
        tables: &mut Tables<'_>,
        prev_values: PrevValues,
        req: &Request,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Status> {
        if let Some(refused) = alarms::refusal(&self.alarms, req) {
            return Err(refused);
        }
        let leases = &self.leases;
        let lease_ok = |id: i64| id == 0 || leases.exists(id);
        let store = &mut self.store;
        let bucket = &mut tables.key;
        let backend_err = |e: BackendError| Status::from(MvccError::Backend(e.to_string()));
        let (outcome, evs) = match req {
            Request::Put(put) => {
                let (resp, evs) = store.put(bucket, prev_values, put, &lease_ok)?;
                (Outcome::Put(resp), evs)
            }
            Request::DeleteRange(del) => {
                let (resp, evs) = store.delete_range(bucket, prev_values, del)?;
                (Outcome::DeleteRange(resp), evs)
            }
            Request::Txn(txn) => {
                let (resp, evs) = store.txn(bucket, prev_values, txn, &lease_ok)?;
                (Outcome::Txn(resp), evs)
            }
            Request::Compaction(c) => {
                let job = self.store.compact(c.revision)?;
                tables
                    .set_scheduled_compaction(c.revision)
                    .map_err(backend_err)?;
                self.compactions.push_back(job);
                (Outcome::Compaction(CompactionResponse::default()), vec![])
            }
            Request::LeaseGrant(g) => {
                if !self.leases.grant(g.id, g.ttl) {
                    return Err(errors::lease_exists());
                }
                tables.put_lease(g.id, g.ttl, 0).map_err(backend_err)?;
                self.lease_changes.push(LeaseChange::Granted {
                    id: g.id,
                    ttl: g.ttl,
                });
                let resp = LeaseGrantResponse {
                    id: g.id,
                    ttl: g.ttl,
                    ..Default::default()
                };
                (Outcome::LeaseGrant(resp), vec![])
            }
            Request::LeaseRevoke(r) => {
                if !self.leases.revoke(r.id) {
                    return Err(errors::lease_not_found());
                }
                tables.remove_lease(r.id).map_err(backend_err)?;
                let keys = self.store.keys_with_lease(r.id);
                let evs = delete_keys(&mut self.store, tables, prev_values, keys)?;
                self.lease_changes.push(LeaseChange::Revoked(r.id));
                (Outcome::LeaseRevoke(LeaseRevokeResponse::default()), evs)
            }
            Request::LeaseCheckpoint(c) => {
                // A lease revoked since the leader took the checkpoint is
                // skipped, as etcd skips it.
                for cp in &c.checkpoints {
                    if let Some(ttl) = self.leases.checkpoint(cp.id, cp.remaining_ttl) {
                        tables
                            .put_lease(cp.id, ttl, cp.remaining_ttl)
                            .map_err(backend_err)?;
                        self.lease_changes.push(LeaseChange::Checkpointed {
                            id: cp.id,
                            remaining_ttl: cp.remaining_ttl,
                        });
                    }
                }
                (Outcome::LeaseCheckpoint, vec![])
            }
            Request::Alarm(a) => {
                let resp = self.apply_alarm(a.action, a.member_id, a.alarm);
                if a.action != AlarmAction::Get as i32 {
                    tables.save_alarms(&self.alarms).map_err(backend_err)?;
                }
                (Outcome::Alarm(resp), vec![])
            }
            Request::MemberAttributes(a) => {
                self.membership
                    .set_attributes(a.member_id, &a.name, &a.client_urls);
                self.save_membership(tables)?;
                (Outcome::Membership, vec![])
            }
            Request::MemberUpdate(u) => {
                self.membership.check_update(u.member_id, &u.peer_urls)?;
                self.membership.update_peer_urls(u.member_id, &u.peer_urls);
                self.save_membership(tables)?;
                (Outcome::Membership, vec![])
            }
            Request::Auth(a) => {
                if let Some(r) = &a.request {
                    let was_enabled = self.auth.enabled();
                    self.auth.apply(r)?;
                    // Simple tokens live in memory only, as etcd's do.
                    if !matches!(r, Admin::AssignToken(_)) {
                        let changed = was_enabled != self.auth.enabled();
                        tables
                            .save_auth(&self.auth.to_state(), changed)
                            .map_err(backend_err)?;
                    }
                }
                (Outcome::Auth, vec![])
            }
        };
        events.extend(evs);
        Ok(outcome)
    }

    /// Applies a membership change already decided valid (a ConfChange entry
    /// Raft committed): etcd checks it again here, since another change may
    /// have committed since it was proposed.
    pub fn apply_conf_change(
        &mut self,
        tables: &mut Tables<'_>,
        change: &Change,
    ) -> Result<(), Status> {
        self.membership.check(change)?;
        self.membership.apply(change);
        self.save_membership(tables)
    }

    fn save_membership(&self, tables: &Tables<'_>) -> Result<(), Status> {
        tables
            .save_membership(self.membership.members(), self.membership.removed())
            .map_err(|e| Status::from(MvccError::Backend(e.to_string())))
    }

    /// Records the Raft position the batch brought the state to.
    pub fn set_applied(
        &mut self,
        tables: &Tables<'_>,
        index: u64,
        term: u64,
    ) -> Result<(), BackendError> {
        self.applied_index = index;
        self.applied_term = term;
        tables.set_consistent_index(index, term)
    }

    fn apply_alarm(&mut self, action: i32, member_id: u64, alarm: i32) -> AlarmResponse {
        AlarmResponse {
            header: None,
            alarms: alarms::apply(&mut self.alarms, action, member_id, alarm),
        }
    }
}

/// Deletes `keys` in one revision (a lease revoke is one event batch).
fn delete_keys(
    store: &mut Store,
    tables: &mut Tables<'_>,
    prev_values: PrevValues,
    keys: Vec<Vec<u8>>,
) -> Result<Vec<Event>, MvccError> {
    if keys.is_empty() {
        return Ok(vec![]);
    }
    let success: Vec<RequestOp> = keys
        .into_iter()
        .map(|key| RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key,
                    ..Default::default()
                },
            )),
        })
        .collect();
    let txn = TxnRequest {
        success,
        ..Default::default()
    };
    Ok(store.txn(&mut tables.key, prev_values, &txn, &|_| true)?.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::{
        alarm_request::AlarmAction, AlarmRequest, CompactionRequest, LeaseCheckpoint,
        LeaseCheckpointRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest,
    };
    use tonic::Code;

    const ME: u64 = 7;

    /// A machine over a fresh backend in a temporary directory.
    struct Machine {
        sm: StateMachine,
        _dir: tempfile::TempDir,
    }

    impl Machine {
        fn new() -> Machine {
            let dir = tempfile::tempdir().unwrap();
            let backend = Backend::open(&dir.path().join("db")).unwrap();
            Machine {
                sm: StateMachine::load(backend, 1).unwrap(),
                _dir: dir,
            }
        }

        /// Applies one request as a batch of its own, committed as the
        /// applier commits (durably, so file sizes are current).
        fn apply(&mut self, req: Request) -> Result<Outcome, Status> {
            self.apply_with_events(req, &mut Vec::new())
        }

        fn apply_with_events(
            &mut self,
            req: Request,
            events: &mut Vec<Event>,
        ) -> Result<Outcome, Status> {
            let tx = self.sm.backend.begin_write().unwrap();
            let result = {
                let mut tables = tx.tables().unwrap();
                let r = self
                    .sm
                    .apply(&mut tables, PrevValues::InEvents, &req, events);
                let next = self.sm.applied_index + 1;
                self.sm.set_applied(&tables, next, 1).unwrap();
                r
            };
            tx.commit(redb::Durability::Immediate).unwrap();
            result
        }

        /// Runs the queued physical compactions to the end.
        fn finish_compactions(&mut self) {
            while let Some(mut job) = self.sm.compactions.pop_front() {
                let tx = self.sm.backend.begin_write().unwrap();
                {
                    let mut tables = tx.tables().unwrap();
                    job.finish(&mut tables.key).unwrap();
                    tables.set_finished_compaction(job.rev).unwrap();
                }
                tx.commit(redb::Durability::Immediate).unwrap();
            }
        }

        /// The machine as a restart would load it from the same backend.
        fn reloaded(&self) -> StateMachine {
            StateMachine::load(self.sm.backend.clone(), 1).unwrap()
        }
    }

    fn put(key: &str, value: &str) -> Request {
        Request::Put(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })
    }

    fn txn(ops: Vec<request_op::Request>) -> Request {
        Request::Txn(TxnRequest {
            success: ops
                .into_iter()
                .map(|r| RequestOp { request: Some(r) })
                .collect(),
            ..Default::default()
        })
    }

    fn alarm(action: AlarmAction, member_id: u64) -> Request {
        Request::Alarm(AlarmRequest {
            action: action as i32,
            member_id,
            alarm: AlarmType::Nospace as i32,
        })
    }

    fn is_no_space(r: &Result<Outcome, Status>) -> bool {
        matches!(r, Err(s) if s.code() == Code::ResourceExhausted && s.message() == errors::NO_SPACE)
    }

    /// A machine with keys "a" and "b", lease 5, and a NOSPACE alarm up.
    fn capped() -> Machine {
        let mut m = Machine::new();
        m.apply(put("a", "1")).unwrap();
        m.apply(put("b", "1")).unwrap();
        m.apply(Request::LeaseGrant(LeaseGrantRequest { id: 5, ttl: 60 }))
            .unwrap();
        m.apply(alarm(AlarmAction::Activate, ME)).unwrap();
        assert!(m.sm.no_space());
        m
    }

    #[test]
    fn capped_machine_refuses_writes_that_grow_it() {
        let mut m = capped();
        let rev = m.sm.store.current_revision();
        let refused = [
            put("c", "1"),
            txn(vec![request_op::Request::RequestPut(PutRequest {
                key: "c".into(),
                ..Default::default()
            })]),
            Request::LeaseGrant(LeaseGrantRequest { id: 6, ttl: 60 }),
        ];
        for req in refused {
            let mut events = Vec::new();
            let r = m.apply_with_events(req.clone(), &mut events);
            assert!(is_no_space(&r), "{req:?}: {r:?}");
            assert!(events.is_empty());
        }
        assert_eq!(m.sm.store.current_revision(), rev);
        assert!(!m.sm.leases.exists(6));
    }

    #[test]
    fn capped_machine_still_reads_deletes_compacts_and_revokes() {
        let mut m = capped();
        let read_only = txn(vec![request_op::Request::RequestRange(RangeRequest {
            key: "a".into(),
            ..Default::default()
        })]);
        assert!(matches!(m.apply(read_only), Ok(Outcome::Txn(_))));
        let delete_txn = txn(vec![request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: "a".into(),
                ..Default::default()
            },
        )]);
        assert!(matches!(m.apply(delete_txn), Ok(Outcome::Txn(_))));
        let delete = Request::DeleteRange(DeleteRangeRequest {
            key: "b".into(),
            ..Default::default()
        });
        assert!(matches!(m.apply(delete), Ok(Outcome::DeleteRange(_))));
        let compact = Request::Compaction(CompactionRequest {
            revision: m.sm.store.current_revision(),
            physical: true,
        });
        assert!(matches!(m.apply(compact), Ok(Outcome::Compaction(_))));
        let revoke = Request::LeaseRevoke(LeaseRevokeRequest { id: 5 });
        assert!(matches!(m.apply(revoke), Ok(Outcome::LeaseRevoke(_))));
        assert_eq!(m.sm.store.keys_count(), 0);
    }

    #[test]
    fn disarming_nospace_uncaps_the_machine() {
        let mut m = capped();
        m.apply(alarm(AlarmAction::Deactivate, ME)).unwrap();
        assert!(!m.sm.no_space());
        assert!(matches!(m.apply(put("c", "1")), Ok(Outcome::Put(_))));
    }

    #[test]
    fn any_members_nospace_caps_every_member() {
        let mut m = capped();
        m.apply(alarm(AlarmAction::Activate, ME + 1)).unwrap();
        m.apply(alarm(AlarmAction::Deactivate, ME)).unwrap();
        assert!(is_no_space(&m.apply(put("c", "1"))));
        m.apply(alarm(AlarmAction::Deactivate, ME + 1)).unwrap();
        assert!(m.apply(put("c", "1")).is_ok());
    }

    #[test]
    fn nospace_survives_a_restart() {
        let m = capped();
        let restored = m.reloaded();
        assert_eq!(restored.alarms, m.sm.alarms);
        assert!(restored.no_space());
    }

    #[test]
    fn a_restart_loads_everything_applied() {
        let mut m = Machine::new();
        m.apply(put("a", "1")).unwrap();
        m.apply(Request::LeaseGrant(LeaseGrantRequest { id: 9, ttl: 30 }))
            .unwrap();
        m.apply(Request::Put(PutRequest {
            key: "l".into(),
            lease: 9,
            ..Default::default()
        }))
        .unwrap();
        m.apply(put("a", "2")).unwrap();
        let r = m.reloaded();
        assert_eq!(r.store, m.sm.store);
        assert_eq!(r.leases.ttl(9), Some(30));
        assert_eq!(r.store.keys_with_lease(9), vec![b"l".to_vec()]);
        assert_eq!((r.applied_index, r.applied_term), (4, 1));
        assert_eq!(r.db_size_in_use(), m.sm.db_size_in_use());
    }

    #[test]
    fn a_compaction_cut_short_is_resumed_after_a_restart() {
        let mut m = Machine::new();
        for i in 0..20 {
            m.apply(put("k", &i.to_string())).unwrap();
        }
        let rev = m.sm.store.current_revision();
        m.apply(Request::Compaction(CompactionRequest {
            revision: rev,
            physical: true,
        }))
        .unwrap();
        // Crash before the versions were removed.
        let mut r = m.reloaded();
        assert_eq!(r.store.compact_revision(), rev);
        assert_eq!(r.compactions.len(), 1);
        m.sm.compactions.clear();
        std::mem::swap(&mut m.sm, &mut r);
        m.finish_compactions();
        assert!(m.reloaded().compactions.is_empty());
    }

    #[test]
    fn a_compaction_at_revision_zero_survives_a_restart() {
        let mut m = Machine::new();
        m.apply(Request::Compaction(CompactionRequest {
            revision: 0,
            physical: true,
        }))
        .unwrap();
        assert_eq!(m.sm.store.compact_revision(), 0);
        assert_eq!(m.reloaded().store.compact_revision(), 0);
    }

    #[test]
    fn compaction_frees_space_in_use_and_defragment_shrinks_the_file() {
        let mut m = Machine::new();
        let value = "v".repeat(1000);
        for _ in 0..200 {
            m.apply(put("k", &value)).unwrap();
        }
        let full_file = m.sm.db_size();
        let full_use = m.sm.db_size_in_use();
        assert!(full_use > 200 * 1000, "{full_use}");
        let compact = Request::Compaction(CompactionRequest {
            revision: m.sm.store.current_revision(),
            physical: true,
        });
        m.apply(compact).unwrap();
        m.finish_compactions();
        assert!(m.sm.db_size_in_use() < full_use / 20);
        m.apply(put("k", "small")).unwrap();
        assert!(m.sm.db_size() >= full_file);

        let copy = m.sm.backend.defragment_copy().unwrap();
        let backend = m.sm.backend.replace_with(&copy).unwrap();
        m.sm.backend = backend;
        assert!(
            m.sm.db_size() < full_file / 4,
            "{} of {full_file}",
            m.sm.db_size()
        );
        let r = m.reloaded();
        assert_eq!(r.store, m.sm.store);
        assert!(m.apply(put("after", "x")).is_ok());
    }

    fn checkpoint(id: i64, remaining_ttl: i64) -> Request {
        Request::LeaseCheckpoint(LeaseCheckpointRequest {
            checkpoints: vec![LeaseCheckpoint { id, remaining_ttl }],
        })
    }

    #[test]
    fn lease_changes_are_recorded_for_the_lessor() {
        let mut m = Machine::new();
        m.apply(Request::LeaseGrant(LeaseGrantRequest { id: 5, ttl: 600 }))
            .unwrap();
        m.apply(checkpoint(5, 300)).unwrap();
        m.apply(Request::LeaseRevoke(LeaseRevokeRequest { id: 5 }))
            .unwrap();
        assert!(m
            .apply(Request::LeaseRevoke(LeaseRevokeRequest { id: 5 }))
            .is_err());
        assert_eq!(
            std::mem::take(&mut m.sm.lease_changes),
            vec![
                LeaseChange::Granted { id: 5, ttl: 600 },
                LeaseChange::Checkpointed {
                    id: 5,
                    remaining_ttl: 300
                },
                LeaseChange::Revoked(5),
            ]
        );
    }

    #[test]
    fn a_checkpointed_remaining_ttl_survives_a_restart() {
        let mut m = Machine::new();
        m.apply(Request::LeaseGrant(LeaseGrantRequest { id: 5, ttl: 600 }))
            .unwrap();
        m.apply(checkpoint(5, 300)).unwrap();
        let r = m.reloaded();
        assert_eq!(
            r.leases.iter_full().collect::<Vec<_>>(),
            vec![(5, 600, 300)]
        );
    }

    #[test]
    fn a_checkpoint_of_a_lease_revoked_meanwhile_is_skipped() {
        let mut m = Machine::new();
        assert!(matches!(
            m.apply(checkpoint(5, 300)),
            Ok(Outcome::LeaseCheckpoint)
        ));
        assert!(m.sm.lease_changes.is_empty());
        assert!(m.reloaded().leases.is_empty());
    }

    #[test]
    fn leases_count_in_the_size_in_use() {
        let mut m = Machine::new();
        let before = m.sm.db_size_in_use();
        m.apply(Request::LeaseGrant(LeaseGrantRequest { id: 1, ttl: 60 }))
            .unwrap();
        assert!(m.sm.db_size_in_use() > before);
    }
}
