//! The cluster's alarms: which (member, type) pairs are raised, and what a
//! raised alarm stops the state machine from applying.
//!
//! The alarm store behaves as etcd 3.5's (`v3alarm.AlarmStore` and the
//! applier's `Alarm`), checked against a running etcd 3.5.1:
//!
//! - an alarm is a (member id, type) pair; member 0 is an id like any other,
//!   so ACTIVATE(0, NOSPACE) is undone by DEACTIVATE(0, NOSPACE) and by
//!   nothing else;
//! - ACTIVATE of NONE raises nothing; ACTIVATE of a raised pair raises it once
//!   and answers it again;
//! - DEACTIVATE clears exactly its pair (NONE is not a wildcard: clients
//!   expand "disarm everything" into one DEACTIVATE per listed alarm);
//! - GET lists the alarms of one type, or every alarm for NONE; the member id
//!   is not a filter.
//!
//! While alarms are raised (for any member) the cluster refuses writes:
//! CORRUPT refuses every write ("etcdserver: corrupt cluster"), NOSPACE the
//! writes that grow the database (see [`crate::quota`]). The rules follow the
//! alarms raised now, as etcd 3.5 does after a restart and etcd 3.6 always
//! does; a running etcd 3.5 instead keeps the rule of the last alarm type
//! raised or cleared (clearing NOSPACE while CORRUPT is raised lets writes
//! through until it restarts).

use tonic::Status;

use crate::errors;
use crate::pb::etcdserverpb::{alarm_request::AlarmAction, AlarmMember, AlarmType};
use crate::pb::internal::internal_request::Request;
use crate::quota;
use crate::server::validate::txn_is_read_only;

/// Applies one Alarm request to `raised`; answers the alarms etcd answers.
/// Actions other than GET, ACTIVATE and DEACTIVATE change nothing (the API
/// refuses them before they are proposed).
pub fn apply(
    raised: &mut Vec<AlarmMember>,
    action: i32,
    member_id: u64,
    alarm: i32,
) -> Vec<AlarmMember> {
    let pair = AlarmMember { member_id, alarm };
    match AlarmAction::try_from(action) {
        Ok(AlarmAction::Get) => raised
            .iter()
            .filter(|a| alarm == AlarmType::None as i32 || a.alarm == alarm)
            .cloned()
            .collect(),
        Ok(AlarmAction::Activate) if alarm != AlarmType::None as i32 => {
            if !raised.contains(&pair) {
                raised.push(pair);
            }
            vec![pair]
        }
        Ok(AlarmAction::Deactivate) => match raised.iter().position(|a| *a == pair) {
            Some(at) => vec![raised.remove(at)],
            None => vec![],
        },
        _ => vec![],
    }
}

/// Whether an alarm of type `alarm` is raised, for any member.
pub fn is_raised(raised: &[AlarmMember], alarm: AlarmType) -> bool {
    raised.iter().any(|a| a.alarm == alarm as i32)
}

/// The error applying `req` fails with while `raised` alarms are up, if any.
pub fn refusal(raised: &[AlarmMember], req: &Request) -> Option<Status> {
    if is_raised(raised, AlarmType::Corrupt) && is_write(req) {
        return Some(errors::corrupt());
    }
    if is_raised(raised, AlarmType::Nospace) && quota::refused_when_capped(req) {
        return Some(errors::no_space());
    }
    None
}

/// The requests etcd's corrupt applier refuses: everything that changes the
/// key space or the leases. (Read-only txns are served without Raft.)
fn is_write(req: &Request) -> bool {
    match req {
        Request::Put(_)
        | Request::DeleteRange(_)
        | Request::Compaction(_)
        | Request::LeaseGrant(_)
        | Request::LeaseRevoke(_) => true,
        Request::Txn(t) => !txn_is_read_only(t),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::{
        request_op, AlarmRequest, CompactionRequest, DeleteRangeRequest, LeaseGrantRequest,
        LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    };
    use tonic::Code;

    const GET: AlarmAction = AlarmAction::Get;
    const ACTIVATE: AlarmAction = AlarmAction::Activate;
    const DEACTIVATE: AlarmAction = AlarmAction::Deactivate;
    const NONE: AlarmType = AlarmType::None;
    const NOSPACE: AlarmType = AlarmType::Nospace;
    const CORRUPT: AlarmType = AlarmType::Corrupt;

    fn m(member_id: u64, alarm: AlarmType) -> AlarmMember {
        AlarmMember {
            member_id,
            alarm: alarm as i32,
        }
    }

    fn run(
        raised: &mut Vec<AlarmMember>,
        action: AlarmAction,
        member: u64,
        alarm: AlarmType,
    ) -> Vec<AlarmMember> {
        apply(raised, action as i32, member, alarm as i32)
    }

    #[test]
    fn member_zero_is_an_ordinary_member_id() {
        let mut raised = vec![];
        assert_eq!(run(&mut raised, ACTIVATE, 0, NOSPACE), vec![m(0, NOSPACE)]);
        assert_eq!(
            run(&mut raised, DEACTIVATE, 0, NOSPACE),
            vec![m(0, NOSPACE)]
        );
        assert!(raised.is_empty());
    }

    #[test]
    fn activate_answers_the_alarm_and_raises_it_once() {
        let mut raised = vec![];
        for _ in 0..2 {
            assert_eq!(run(&mut raised, ACTIVATE, 7, CORRUPT), vec![m(7, CORRUPT)]);
        }
        assert_eq!(raised, vec![m(7, CORRUPT)]);
    }

    #[test]
    fn activate_none_raises_nothing() {
        for member in [0, 7] {
            let mut raised = vec![];
            assert_eq!(run(&mut raised, ACTIVATE, member, NONE), vec![]);
            assert!(raised.is_empty());
        }
    }

    #[test]
    fn deactivate_clears_exactly_its_pair() {
        // (member, type) -> what stays raised.
        let all = || vec![m(0, NOSPACE), m(7, NOSPACE), m(7, CORRUPT), m(9, CORRUPT)];
        let cases = [
            (
                0,
                NOSPACE,
                vec![m(7, NOSPACE), m(7, CORRUPT), m(9, CORRUPT)],
            ),
            (
                7,
                NOSPACE,
                vec![m(0, NOSPACE), m(7, CORRUPT), m(9, CORRUPT)],
            ),
            (
                7,
                CORRUPT,
                vec![m(0, NOSPACE), m(7, NOSPACE), m(9, CORRUPT)],
            ),
            (0, CORRUPT, all()),
            (0, NONE, all()),
            (7, NONE, all()),
            (8, NOSPACE, all()),
        ];
        for (member, alarm, left) in cases {
            let mut raised = all();
            let cleared = run(&mut raised, DEACTIVATE, member, alarm);
            assert_eq!(raised, left, "deactivate ({member}, {alarm:?})");
            let expect: Vec<_> = all().into_iter().filter(|a| !left.contains(a)).collect();
            assert_eq!(cleared, expect, "deactivate ({member}, {alarm:?})");
        }
    }

    #[test]
    fn get_filters_by_type_never_by_member() {
        let mut raised = vec![m(0, NOSPACE), m(7, CORRUPT), m(9, NOSPACE)];
        for member in [0, 7, 42] {
            assert_eq!(run(&mut raised, GET, member, NONE), raised.clone());
            assert_eq!(
                run(&mut raised, GET, member, NOSPACE),
                vec![m(0, NOSPACE), m(9, NOSPACE)]
            );
            assert_eq!(run(&mut raised, GET, member, CORRUPT), vec![m(7, CORRUPT)]);
        }
    }

    #[test]
    fn unknown_actions_and_types_change_nothing() {
        let mut raised = vec![m(7, NOSPACE)];
        assert_eq!(apply(&mut raised, 3, 7, NOSPACE as i32), vec![]);
        assert_eq!(apply(&mut raised, GET as i32, 7, 9), vec![]);
        assert_eq!(apply(&mut raised, DEACTIVATE as i32, 7, 9), vec![]);
        assert_eq!(raised, vec![m(7, NOSPACE)]);
    }

    fn put() -> Request {
        Request::Put(PutRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
    }

    fn txn(op: request_op::Request) -> Request {
        Request::Txn(TxnRequest {
            success: vec![RequestOp { request: Some(op) }],
            ..Default::default()
        })
    }

    fn delete() -> DeleteRangeRequest {
        DeleteRangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        }
    }

    fn code(s: Option<Status>) -> Option<(Code, String)> {
        s.map(|s| (s.code(), s.message().to_string()))
    }

    #[test]
    fn corrupt_refuses_every_write_and_nothing_else() {
        let raised = vec![m(0, CORRUPT)];
        let corrupt = Some((Code::DataLoss, "etcdserver: corrupt cluster".to_string()));
        let writes = [
            put(),
            Request::DeleteRange(delete()),
            txn(request_op::Request::RequestDeleteRange(delete())),
            Request::Compaction(CompactionRequest::default()),
            Request::LeaseGrant(LeaseGrantRequest { id: 1, ttl: 5 }),
            Request::LeaseRevoke(LeaseRevokeRequest { id: 1 }),
        ];
        for req in writes {
            assert_eq!(code(refusal(&raised, &req)), corrupt, "{req:?}");
        }
        let others = [
            txn(request_op::Request::RequestRange(RangeRequest::default())),
            Request::Alarm(AlarmRequest::default()),
        ];
        for req in others {
            assert_eq!(code(refusal(&raised, &req)), None, "{req:?}");
        }
    }

    #[test]
    fn nospace_refuses_only_what_grows_the_database() {
        let raised = vec![m(3, NOSPACE)];
        let no_space = Some((
            Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded".to_string(),
        ));
        assert_eq!(code(refusal(&raised, &put())), no_space);
        let grant = Request::LeaseGrant(LeaseGrantRequest { id: 1, ttl: 5 });
        assert_eq!(code(refusal(&raised, &grant)), no_space);
        assert_eq!(
            code(refusal(&raised, &Request::DeleteRange(delete()))),
            None
        );
        let revoke = Request::LeaseRevoke(LeaseRevokeRequest { id: 1 });
        assert_eq!(code(refusal(&raised, &revoke)), None);
    }

    #[test]
    fn corrupt_outranks_nospace() {
        let raised = vec![m(3, NOSPACE), m(3, CORRUPT)];
        assert_eq!(
            refusal(&raised, &put()).map(|s| s.code()),
            Some(Code::DataLoss)
        );
    }

    #[test]
    fn no_alarm_refuses_nothing() {
        assert!(refusal(&[], &put()).is_none());
    }
}
