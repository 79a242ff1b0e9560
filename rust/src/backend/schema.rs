//! etcd 3.5's buckets, as our tables: the same names, keys and value
//! encodings, byte for byte, so that a snapshot in etcd's format is a copy
//! of these tables (and an etcd snapshot a copy into them).
//!
//! | table | key | value |
//! |---|---|---|
//! | key | revision (17 bytes, `t` added for a tombstone) | mvccpb.KeyValue |
//! | meta | `consistent_index`, `term` | u64 big-endian |
//! | meta | `confState` | JSON of raftpb.ConfState |
//! | meta | `scheduledCompactRev`, `finishedCompactRev` | revision (17 bytes) |
//! | lease | lease id, i64 big-endian | leasepb.Lease |
//! | alarm | etcdserverpb.AlarmMember | empty |
//! | cluster | `clusterVersion` | "3.5.0" |
//! | members | member id, hex | JSON as etcd's membership.Member |
//! | members_removed | member id, hex | `removed` |
//! | auth | `authEnabled` (1 byte), `authRevision` (u64 big-endian) | |
//! | authUsers | user name | authpb.User |
//! | authRoles | role name | authpb.Role |

use prost::Message;
use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::mvcc::Revision;
use crate::pb::authpb::{Role, User};
use crate::pb::etcdserverpb::AlarmMember;
use crate::pb::internal::MemberRecord;
use crate::pb::leasepb::Lease;

pub type Bucket = TableDefinition<'static, &'static [u8], &'static [u8]>;

pub const KEY: Bucket = TableDefinition::new("key");
pub const META: Bucket = TableDefinition::new("meta");
pub const LEASE: Bucket = TableDefinition::new("lease");
pub const ALARM: Bucket = TableDefinition::new("alarm");
pub const CLUSTER: Bucket = TableDefinition::new("cluster");
pub const MEMBERS: Bucket = TableDefinition::new("members");
pub const MEMBERS_REMOVED: Bucket = TableDefinition::new("members_removed");
pub const AUTH: Bucket = TableDefinition::new("auth");
pub const AUTH_USERS: Bucket = TableDefinition::new("authUsers");
pub const AUTH_ROLES: Bucket = TableDefinition::new("authRoles");

/// Every bucket, in the order etcd's bbolt file lists them (by name).
pub const BUCKETS: [Bucket; 10] = [
    ALARM,
    AUTH,
    AUTH_ROLES,
    AUTH_USERS,
    CLUSTER,
    KEY,
    LEASE,
    MEMBERS,
    MEMBERS_REMOVED,
    META,
];

pub const CONSISTENT_INDEX: &[u8] = b"consistent_index";
pub const TERM: &[u8] = b"term";
pub const CONF_STATE: &[u8] = b"confState";
pub const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
pub const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
pub const CLUSTER_VERSION: &[u8] = b"clusterVersion";
/// The cluster version a 3.5 member records.
pub const CLUSTER_VERSION_VALUE: &[u8] = b"3.5.0";
pub const AUTH_ENABLED: &[u8] = b"authEnabled";
pub const AUTH_REVISION: &[u8] = b"authRevision";
pub const REMOVED: &[u8] = b"removed";

pub fn u64_value(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

pub fn parse_u64(what: &str, bytes: &[u8]) -> Result<u64, String> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| format!("meta {what}: {} bytes, want 8", bytes.len()))
}

/// A revision key of the key bucket: (revision, tombstone).
pub fn parse_revision(bytes: &[u8]) -> Result<(Revision, bool), String> {
    let tombstone = match bytes.len() {
        17 => false,
        18 if bytes[17] == b't' => true,
        _ => return Err(format!("bad revision key {bytes:02x?}")),
    };
    if bytes[8] != b'_' {
        return Err(format!("bad revision key {bytes:02x?}"));
    }
    let main = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")) as i64;
    let sub = u64::from_be_bytes(bytes[9..17].try_into().expect("8 bytes")) as i64;
    Ok((Revision::new(main, sub), tombstone))
}

pub fn lease_key(id: i64) -> [u8; 8] {
    (id as u64).to_be_bytes()
}

pub fn lease_value(id: i64, ttl: i64, remaining_ttl: i64) -> Vec<u8> {
    Lease {
        id,
        ttl,
        remaining_ttl,
    }
    .encode_to_vec()
}

pub fn parse_lease(bytes: &[u8]) -> Result<Lease, String> {
    Lease::decode(bytes).map_err(|e| format!("lease: {e}"))
}

pub fn alarm_key(a: &AlarmMember) -> Vec<u8> {
    a.encode_to_vec()
}

pub fn parse_alarm(bytes: &[u8]) -> Result<AlarmMember, String> {
    AlarmMember::decode(bytes).map_err(|e| format!("alarm: {e}"))
}

pub fn member_key(id: u64) -> Vec<u8> {
    format!("{id:x}").into_bytes()
}

pub fn parse_member_key(bytes: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or_else(|| format!("bad member id {bytes:02x?}"))
}

/// etcd's membership.Member as its JSON names the fields (RaftAttributes and
/// Attributes are embedded, so their fields sit at the top level).
#[derive(Serialize, Deserialize)]
struct MemberJson {
    id: u64,
    #[serde(rename = "peerURLs", default)]
    peer_urls: Vec<String>,
    #[serde(rename = "isLearner", default, skip_serializing_if = "is_false")]
    is_learner: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(rename = "clientURLs", default, skip_serializing_if = "Vec::is_empty")]
    client_urls: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

pub fn member_value(m: &MemberRecord) -> Vec<u8> {
    serde_json::to_vec(&MemberJson {
        id: m.id,
        peer_urls: m.peer_urls.clone(),
        is_learner: m.is_learner,
        name: m.name.clone(),
        client_urls: m.client_urls.clone(),
    })
    .expect("a member encodes")
}

pub fn parse_member(bytes: &[u8]) -> Result<MemberRecord, String> {
    let m: MemberJson = serde_json::from_slice(bytes).map_err(|e| format!("member: {e}"))?;
    Ok(MemberRecord {
        id: m.id,
        name: m.name,
        peer_urls: m.peer_urls,
        client_urls: m.client_urls,
        is_learner: m.is_learner,
    })
}

/// raftpb.ConfState as etcd 3.5 saves it in `meta` (Go's encoding/json of
/// the gogo struct: empty lists left out, auto_leave always there).
pub fn conf_state_value(voters: &[u64], learners: &[u64]) -> Vec<u8> {
    #[derive(Serialize)]
    struct ConfStateJson<'a> {
        #[serde(skip_serializing_if = "<[u64]>::is_empty")]
        voters: &'a [u64],
        #[serde(skip_serializing_if = "<[u64]>::is_empty")]
        learners: &'a [u64],
        auto_leave: bool,
    }
    serde_json::to_vec(&ConfStateJson {
        voters,
        learners,
        auto_leave: false,
    })
    .expect("a conf state encodes")
}

pub fn user_value(u: &User) -> Vec<u8> {
    u.encode_to_vec()
}

pub fn parse_user(bytes: &[u8]) -> Result<User, String> {
    User::decode(bytes).map_err(|e| format!("user: {e}"))
}

pub fn role_value(r: &Role) -> Vec<u8> {
    r.encode_to_vec()
}

pub fn parse_role(bytes: &[u8]) -> Result<Role, String> {
    Role::decode(bytes).map_err(|e| format!("role: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::TableHandle;

    #[test]
    fn member_json_is_etcds() {
        let m = MemberRecord {
            id: 0x8e9e05c52164694d,
            name: "default".into(),
            peer_urls: vec!["http://localhost:2380".into()],
            client_urls: vec!["http://localhost:2379".into()],
            is_learner: false,
        };
        assert_eq!(
            String::from_utf8(member_value(&m)).unwrap(),
            r#"{"id":10276657743932975437,"peerURLs":["http://localhost:2380"],"name":"default","clientURLs":["http://localhost:2379"]}"#
        );
        assert_eq!(parse_member(&member_value(&m)).unwrap(), m);
        assert_eq!(member_key(m.id), b"8e9e05c52164694d");
    }

    #[test]
    fn an_unpublished_learner_has_only_id_urls_and_flag() {
        let m = MemberRecord {
            id: 1,
            peer_urls: vec!["http://a:2380".into()],
            is_learner: true,
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(member_value(&m)).unwrap(),
            r#"{"id":1,"peerURLs":["http://a:2380"],"isLearner":true}"#
        );
    }

    #[test]
    fn conf_state_json_is_etcds() {
        assert_eq!(
            String::from_utf8(conf_state_value(&[1, 2], &[])).unwrap(),
            r#"{"voters":[1,2],"auto_leave":false}"#
        );
        assert_eq!(
            String::from_utf8(conf_state_value(&[1], &[9])).unwrap(),
            r#"{"voters":[1],"learners":[9],"auto_leave":false}"#
        );
    }

    #[test]
    fn revision_keys_round_trip() {
        let r = Revision::new(300, 2);
        assert_eq!(parse_revision(&r.to_bytes(false)).unwrap(), (r, false));
        assert_eq!(parse_revision(&r.to_bytes(true)).unwrap(), (r, true));
        assert!(parse_revision(b"short").is_err());
    }

    #[test]
    fn buckets_are_in_name_order() {
        let names: Vec<&str> = BUCKETS.iter().map(|b| b.name()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
