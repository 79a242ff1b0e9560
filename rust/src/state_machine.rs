//! The replicated state machine: what applying a committed Raft entry does.
//!
//! It owns the MVCC store, the lease table, the alarms and the membership. Every member applies
//! the same entries in the same order and so reaches the same state; a snapshot
//! of all of it lets the WAL behind it be released.
//!
//! While alarms are raised it refuses what they forbid (see [`crate::alarms`]:
//! CORRUPT every write, NOSPACE whatever could grow the database); it also measures its own size
//! ([`StateMachine::db_size`]) the way a bbolt file grows and shrinks.

use prost::Message;
use tonic::Status;

use crate::alarms;
use crate::auth::AuthStore;
use crate::errors;
use crate::lease_table::LeaseTable;
use crate::membership::Membership;
use crate::mvcc::{MvccError, Store};
use crate::pb::etcdserverpb::{
    request_op, AlarmMember, AlarmResponse, AlarmType, CompactionResponse, DeleteRangeRequest,
    DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, PutResponse, RequestOp,
    TxnRequest, TxnResponse,
};
use crate::pb::internal::{internal_request::Request, AlarmRecord, LeaseRecord, StateSnapshot};
use crate::pb::mvccpb::Event;
use crate::quota::LEASE_BYTES;

/// What applying one request produced, before the header is filled in.
#[derive(Debug)]
pub enum Outcome {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    Alarm(AlarmResponse),
    /// A membership change or a member's attributes were applied.
    Membership,
    /// A change to the auth store was applied.
    Auth,
}

#[derive(Default)]
pub struct StateMachine {
    pub store: Store,
    pub auth: AuthStore,
    pub leases: LeaseTable,
    pub alarms: Vec<AlarmMember>,
    pub membership: Membership,
    pub applied_index: u64,
    pub applied_term: u64,
    /// The most [`StateMachine::db_size_in_use`] has been since the last
    /// defragment: like a bbolt file, compaction frees space inside it but
    /// only a defragment gives it back. Member-local, not in snapshots (a
    /// restarted or restored member starts compact).
    allocated_bytes: usize,
}

impl StateMachine {
    pub fn new() -> StateMachine {
        StateMachine {
            store: Store::new(),
            ..Default::default()
        }
    }

    /// Bytes the state holds now: every stored version (until compaction
    /// drops it) and every lease. Status reports it as dbSizeInUse.
    pub fn db_size_in_use(&self) -> usize {
        self.store.size_bytes() + self.leases.len() * LEASE_BYTES
    }

    /// The database size the quota is checked against and Status reports as
    /// dbSize: the high-water mark of [`db_size_in_use`] since the last
    /// [`defragment`].
    ///
    /// [`db_size_in_use`]: StateMachine::db_size_in_use
    /// [`defragment`]: StateMachine::defragment
    pub fn db_size(&self) -> usize {
        self.allocated_bytes.max(self.db_size_in_use())
    }

    /// Gives back the space compaction freed: [`StateMachine::db_size`]
    /// drops to what is in use. Returns (before, after).
    pub fn defragment(&mut self) -> (usize, usize) {
        let before = self.db_size();
        self.allocated_bytes = self.db_size_in_use();
        (before, self.allocated_bytes)
    }

    /// Whether a NOSPACE alarm is active (for any member): the cluster is
    /// capped.
    pub fn no_space(&self) -> bool {
        alarms::is_raised(&self.alarms, AlarmType::Nospace)
    }

    /// Applies one request at the current position. Events it causes are
    /// appended to `events`; a failed request changes nothing.
    pub fn apply(&mut self, req: &Request, events: &mut Vec<Event>) -> Result<Outcome, Status> {
        if let Some(refused) = alarms::refusal(&self.alarms, req) {
            return Err(refused);
        }
        let result = self.apply_uncapped(req, events);
        self.allocated_bytes = self.db_size();
        result
    }

    fn apply_uncapped(
        &mut self,
        req: &Request,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Status> {
        let leases = &self.leases;
        let lease_ok = |id: i64| id == 0 || leases.exists(id);
        let (outcome, evs) = match req {
            Request::Put(put) => {
                let (resp, evs) = self.store.put(put, &lease_ok)?;
                (Outcome::Put(resp), evs)
            }
            Request::DeleteRange(del) => {
                let (resp, evs) = self.store.delete_range(del)?;
                (Outcome::DeleteRange(resp), evs)
            }
            Request::Txn(txn) => {
                let (resp, evs) = self.store.txn(txn, &lease_ok)?;
                (Outcome::Txn(resp), evs)
            }
            Request::Compaction(c) => {
                self.store.compact(c.revision)?;
                (Outcome::Compaction(CompactionResponse::default()), vec![])
            }
            Request::LeaseGrant(g) => {
                if !self.leases.grant(g.id, g.ttl) {
                    return Err(errors::lease_exists());
                }
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
                let evs = self.delete_keys(self.store.keys_with_lease(r.id))?;
                (Outcome::LeaseRevoke(LeaseRevokeResponse::default()), evs)
            }
            Request::Alarm(a) => (
                Outcome::Alarm(self.apply_alarm(a.action, a.member_id, a.alarm)),
                vec![],
            ),
            Request::MemberAttributes(a) => {
                self.membership
                    .set_attributes(a.member_id, &a.name, &a.client_urls);
                (Outcome::Membership, vec![])
            }
            Request::MemberUpdate(u) => {
                self.membership.check_update(u.member_id, &u.peer_urls)?;
                self.membership.update_peer_urls(u.member_id, &u.peer_urls);
                (Outcome::Membership, vec![])
            }
            Request::Auth(a) => {
                if let Some(r) = &a.request {
                    self.auth.apply(r)?;
                }
                (Outcome::Auth, vec![])
            }
        };
        events.extend(evs);
        Ok(outcome)
    }

    /// Deletes `keys` in one revision (a lease revoke is one event batch).
    fn delete_keys(
        &mut self,
        keys: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<Vec<Event>, MvccError> {
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
        if success.is_empty() {
            return Ok(vec![]);
        }
        let txn = TxnRequest {
            success,
            ..Default::default()
        };
        Ok(self.store.txn(&txn, &|_| true)?.1)
    }

    fn apply_alarm(&mut self, action: i32, member_id: u64, alarm: i32) -> AlarmResponse {
        AlarmResponse {
            header: None,
            alarms: alarms::apply(&mut self.alarms, action, member_id, alarm),
        }
    }

    /// The whole state, for a snapshot file.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        StateSnapshot {
            applied_index: self.applied_index,
            applied_term: self.applied_term,
            store: self.store.encode_snapshot(),
            leases: self
                .leases
                .iter()
                .map(|(id, ttl)| LeaseRecord { id, ttl })
                .collect(),
            alarms: self
                .alarms
                .iter()
                .map(|a| AlarmRecord {
                    member_id: a.member_id,
                    alarm: a.alarm,
                })
                .collect(),
            members: self.membership.members().cloned().collect(),
            removed: self.membership.removed().collect(),
            cluster_id: self.membership.cluster_id,
            auth: Some(self.auth.to_state()),
        }
        .encode_to_vec()
    }

    /// Rebuilds the state from [`encode_snapshot`]'s bytes.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<StateMachine, String> {
        let snap = StateSnapshot::decode(bytes).map_err(|e| format!("snapshot: {e}"))?;
        let store = Store::decode_snapshot(&snap.store).map_err(|e| format!("snapshot: {e}"))?;
        let mut leases = LeaseTable::default();
        for l in &snap.leases {
            leases.grant(l.id, l.ttl);
        }
        Ok(StateMachine {
            store,
            auth: AuthStore::from_state(snap.auth),
            leases,
            alarms: snap
                .alarms
                .iter()
                .map(|a| AlarmMember {
                    member_id: a.member_id,
                    alarm: a.alarm,
                })
                .collect(),
            membership: Membership::from_parts(snap.cluster_id, snap.members, snap.removed),
            applied_index: snap.applied_index,
            applied_term: snap.applied_term,
            allocated_bytes: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::{
        alarm_request::AlarmAction, AlarmRequest, CompactionRequest, LeaseGrantRequest,
        LeaseRevokeRequest, PutRequest, RangeRequest,
    };
    use tonic::Code;

    const ME: u64 = 7;

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

    fn apply(sm: &mut StateMachine, req: Request) -> Result<Outcome, Status> {
        sm.apply(&req, &mut Vec::new())
    }

    fn is_no_space(r: &Result<Outcome, Status>) -> bool {
        matches!(r, Err(s) if s.code() == Code::ResourceExhausted && s.message() == errors::NO_SPACE)
    }

    /// A machine with keys "a" and "b", lease 5, and a NOSPACE alarm up.
    fn capped() -> StateMachine {
        let mut sm = StateMachine::new();
        apply(&mut sm, put("a", "1")).unwrap();
        apply(&mut sm, put("b", "1")).unwrap();
        apply(
            &mut sm,
            Request::LeaseGrant(LeaseGrantRequest { id: 5, ttl: 60 }),
        )
        .unwrap();
        apply(&mut sm, alarm(AlarmAction::Activate, ME)).unwrap();
        assert!(sm.no_space());
        sm
    }

    #[test]
    fn capped_machine_refuses_writes_that_grow_it() {
        let mut sm = capped();
        let rev = sm.store.current_revision();
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
            let r = sm.apply(&req, &mut events);
            assert!(is_no_space(&r), "{req:?}: {r:?}");
            assert!(events.is_empty());
        }
        assert_eq!(sm.store.current_revision(), rev);
        assert!(!sm.leases.exists(6));
    }

    #[test]
    fn capped_machine_still_reads_deletes_compacts_and_revokes() {
        let mut sm = capped();
        let read_only = txn(vec![request_op::Request::RequestRange(RangeRequest {
            key: "a".into(),
            ..Default::default()
        })]);
        assert!(matches!(apply(&mut sm, read_only), Ok(Outcome::Txn(_))));
        let delete_txn = txn(vec![request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: "a".into(),
                ..Default::default()
            },
        )]);
        assert!(matches!(apply(&mut sm, delete_txn), Ok(Outcome::Txn(_))));
        let delete = Request::DeleteRange(DeleteRangeRequest {
            key: "b".into(),
            ..Default::default()
        });
        assert!(matches!(
            apply(&mut sm, delete),
            Ok(Outcome::DeleteRange(_))
        ));
        let compact = Request::Compaction(CompactionRequest {
            revision: sm.store.current_revision(),
            physical: true,
        });
        assert!(matches!(
            apply(&mut sm, compact),
            Ok(Outcome::Compaction(_))
        ));
        let revoke = Request::LeaseRevoke(LeaseRevokeRequest { id: 5 });
        assert!(matches!(
            apply(&mut sm, revoke),
            Ok(Outcome::LeaseRevoke(_))
        ));
        assert_eq!(sm.store.keys_count(), 0);
    }

    #[test]
    fn disarming_nospace_uncaps_the_machine() {
        let mut sm = capped();
        apply(&mut sm, alarm(AlarmAction::Deactivate, ME)).unwrap();
        assert!(!sm.no_space());
        assert!(matches!(apply(&mut sm, put("c", "1")), Ok(Outcome::Put(_))));
    }

    #[test]
    fn any_members_nospace_caps_every_member() {
        let mut sm = capped();
        apply(&mut sm, alarm(AlarmAction::Activate, ME + 1)).unwrap();
        apply(&mut sm, alarm(AlarmAction::Deactivate, ME)).unwrap();
        assert!(is_no_space(&apply(&mut sm, put("c", "1"))));
        apply(&mut sm, alarm(AlarmAction::Deactivate, ME + 1)).unwrap();
        assert!(apply(&mut sm, put("c", "1")).is_ok());
    }

    #[test]
    fn nospace_survives_a_snapshot() {
        let sm = capped();
        let mut restored = StateMachine::decode_snapshot(&sm.encode_snapshot()).unwrap();
        assert_eq!(restored.alarms, sm.alarms);
        assert!(is_no_space(&apply(&mut restored, put("c", "1"))));
    }

    #[test]
    fn compaction_frees_space_in_use_but_only_defragment_shrinks_db_size() {
        let mut sm = StateMachine::new();
        let value = "v".repeat(1000);
        for _ in 0..10 {
            apply(&mut sm, put("k", &value)).unwrap();
        }
        let full = sm.db_size();
        assert_eq!(full, sm.db_size_in_use());
        let compact = Request::Compaction(CompactionRequest {
            revision: sm.store.current_revision(),
            physical: true,
        });
        apply(&mut sm, compact).unwrap();
        assert!(sm.db_size_in_use() < full / 5);
        assert_eq!(sm.db_size(), full);
        // Freed space is reused before the size grows again.
        apply(&mut sm, put("other", &value)).unwrap();
        assert_eq!(sm.db_size(), full);
        assert_eq!(sm.defragment(), (full, sm.db_size_in_use()));
        assert_eq!(sm.db_size(), sm.db_size_in_use());
    }

    #[test]
    fn leases_count_in_the_db_size() {
        let mut sm = StateMachine::new();
        apply(
            &mut sm,
            Request::LeaseGrant(LeaseGrantRequest { id: 1, ttl: 60 }),
        )
        .unwrap();
        assert_eq!(sm.db_size_in_use(), LEASE_BYTES);
    }
}
