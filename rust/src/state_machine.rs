//! The replicated state machine: what applying a committed Raft entry does.
//!
//! It owns the MVCC store, the lease table, the alarms and the membership. Every member applies
//! the same entries in the same order and so reaches the same state; a snapshot
//! of all of it lets the WAL behind it be released.

use prost::Message;
use tonic::Status;

use crate::errors;
use crate::lease_table::LeaseTable;
use crate::membership::Membership;
use crate::mvcc::{MvccError, Store};
use crate::pb::etcdserverpb::{
    alarm_request::AlarmAction, request_op, AlarmMember, AlarmResponse, CompactionResponse,
    DeleteRangeRequest, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, PutResponse,
    RequestOp, TxnRequest, TxnResponse,
};
use crate::pb::internal::{internal_request::Request, AlarmRecord, LeaseRecord, StateSnapshot};
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
    Alarm(AlarmResponse),
    /// A membership change or a member's attributes were applied.
    Membership,
}

#[derive(Default)]
pub struct StateMachine {
    pub store: Store,
    pub leases: LeaseTable,
    pub alarms: Vec<AlarmMember>,
    pub membership: Membership,
    pub applied_index: u64,
    pub applied_term: u64,
}

impl StateMachine {
    pub fn new() -> StateMachine {
        StateMachine {
            store: Store::new(),
            ..Default::default()
        }
    }

    /// Applies one request at the current position. Events it causes are
    /// appended to `events`; a failed request changes nothing.
    pub fn apply(&mut self, req: &Request, events: &mut Vec<Event>) -> Result<Outcome, Status> {
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
        let matches = |a: &AlarmMember| {
            (member_id == 0 || a.member_id == member_id) && (alarm == 0 || a.alarm == alarm)
        };
        let alarms = if action == AlarmAction::Activate as i32 {
            if alarm != 0
                && !self
                    .alarms
                    .iter()
                    .any(|a| a.member_id == member_id && a.alarm == alarm)
            {
                self.alarms.push(AlarmMember { member_id, alarm });
            }
            vec![AlarmMember { member_id, alarm }]
        } else if action == AlarmAction::Deactivate as i32 {
            let (gone, kept): (Vec<_>, Vec<_>) = self.alarms.drain(..).partition(|a| matches(a));
            self.alarms = kept;
            gone
        } else {
            self.alarms.iter().filter(|a| matches(a)).cloned().collect()
        };
        AlarmResponse {
            header: None,
            alarms,
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
        })
    }
}
