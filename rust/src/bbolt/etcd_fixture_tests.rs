//! The reader on a snapshot saved from a real etcd 3.5.1 with
//! `etcdctl snapshot save`. `tools/make_etcd_snapshot_fixture.py` made it;
//! the expectations below follow the history that script writes.

use std::path::Path;

use prost::Message;

use super::layout::{BucketHeader, PageHeader, BRANCH_PAGE};
use super::*;
use crate::pb::{authpb, leasepb, mvccpb};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/etcd-3.5.1.snapshot.db"
);
/// The lease the script attached to /app/leased (ids are random; this is
/// the one in the committed file).
const LEASE: i64 = 0x0ab8_a24d_77b4_910d;

fn snapshot() -> Db<FileSource> {
    Db::open_snapshot(Path::new(FIXTURE), HashCheck::Verify).unwrap()
}

fn items(bucket: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let b = snapshot().bucket(bucket).unwrap().unwrap();
    let mut c = b.cursor();
    let mut out = Vec::new();
    while let Some(e) = c.next().unwrap() {
        out.push((e.key.to_vec(), e.value.to_vec()));
    }
    out
}

fn get(bucket: &[u8], key: &[u8]) -> Vec<u8> {
    let b = snapshot().bucket(bucket).unwrap().unwrap();
    b.get(key).unwrap().unwrap()
}

/// etcd's revision key: main (8 bytes BE), '_', sub (8 bytes BE), and a
/// trailing 't' on a deletion's tombstone.
fn revision(key: &[u8]) -> (i64, i64, bool) {
    assert!(
        key.len() == 17 || (key.len() == 18 && key[17] == b't'),
        "{key:?}"
    );
    assert_eq!(key[8], b'_');
    let main = i64::from_be_bytes(key[..8].try_into().unwrap());
    let sub = i64::from_be_bytes(key[9..17].try_into().unwrap());
    (main, sub, key.len() == 18)
}

fn kv(key: &str, create: i64, rev: i64, version: i64, value: &[u8]) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: key.as_bytes().to_vec(),
        create_revision: create,
        mod_revision: rev,
        version,
        value: value.to_vec(),
        lease: 0,
    }
}

#[test]
fn etcds_snapshot_passes_its_hash_check_and_lists_etcds_buckets() {
    let names: Vec<String> = snapshot()
        .buckets()
        .unwrap()
        .into_iter()
        .map(|n| String::from_utf8(n).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "alarm",
            "auth",
            "authRoles",
            "authUsers",
            "cluster",
            "key",
            "lease",
            "members",
            "members_removed",
            "meta"
        ]
    );
}

#[test]
fn a_corrupted_copy_of_etcds_snapshot_fails_its_hash_check() {
    let mut data = std::fs::read(FIXTURE).unwrap();
    data[5 * 4096 + 200] ^= 0x01;
    let err = trailer::strip(&data, HashCheck::Verify).unwrap_err();
    assert!(matches!(err, Error::Trailer(_)), "{err}");
}

#[test]
fn the_key_bucket_maps_revisions_to_key_values_after_the_compaction() {
    let entries: Vec<_> = items(b"key")
        .into_iter()
        .map(|(k, v)| (revision(&k), mvccpb::KeyValue::decode(&v[..]).unwrap()))
        .collect();
    // Revisions 2-5 were compacted away (compaction at 6 keeps /app/config@6).
    let mut leased = kv("/app/leased", 8, 8, 1, b"with-lease");
    leased.lease = LEASE;
    let head = [
        ((6, 0, false), kv("/app/config", 2, 6, 3, b"v3")),
        ((7, 0, false), kv("/app/txn-a", 7, 7, 1, b"A")),
        ((7, 1, false), kv("/app/txn-b", 7, 7, 1, b"B")),
        ((8, 0, false), leased),
        (
            (9, 0, false),
            kv("/other/bin", 9, 9, 1, b"\x00\x01\xff-binary"),
        ),
        ((10, 0, false), kv("/app/after-compact", 10, 10, 1, b"yes")),
    ];
    assert_eq!(&entries[..6], &head);
    for (i, ((main, sub, tombstone), kv)) in entries[7..].iter().enumerate() {
        let n = i as i64;
        assert_eq!((*main, *sub, *tombstone), (12 + n / 100, n % 100, false));
        let key = format!("/bulk/{n:03}");
        assert_eq!(kv.key, key.as_bytes());
        assert_eq!(
            (kv.create_revision, kv.mod_revision, kv.version),
            (*main, *main, 1)
        );
        assert_eq!(kv.value, format!("{}-{n}", "v".repeat(100)).as_bytes());
    }
    assert_eq!(entries.len(), 7 + 300);
}

#[test]
fn a_deleted_key_is_a_tombstone_revision_holding_only_the_key() {
    let (k, v) = &items(b"key")[6];
    assert_eq!(revision(k), (11, 0, true));
    assert_eq!(
        mvccpb::KeyValue::decode(&v[..]).unwrap(),
        mvccpb::KeyValue {
            key: b"/app/txn-b".to_vec(),
            ..Default::default()
        }
    );
}

#[test]
fn etcds_key_bucket_spans_leaf_pages_under_a_branch_page() {
    // The premise of the test above: etcd wrote this bucket as a real tree,
    // not inline.
    let db = snapshot();
    let mut c = db.root().cursor();
    c.seek(b"key").unwrap();
    let root = BucketHeader::decode(c.next().unwrap().unwrap().value).root;
    let data = std::fs::read(FIXTURE).unwrap();
    let page = PageHeader::decode(&data[root as usize * 4096..]);
    assert_eq!((page.id, page.flags), (root, BRANCH_PAGE));
    assert!(page.count >= 2);
}

#[test]
fn the_meta_bucket_holds_the_consistent_index_term_and_compaction() {
    let u64_be = |v: Vec<u8>| u64::from_be_bytes(v.try_into().unwrap());
    assert_eq!(u64_be(get(b"meta", b"consistent_index")), 30);
    assert_eq!(u64_be(get(b"meta", b"term")), 2);
    for key in [&b"scheduledCompactRev"[..], b"finishedCompactRev"] {
        assert_eq!(revision(&get(b"meta", key)), (6, 0, false));
    }
    let conf = String::from_utf8(get(b"meta", b"confState")).unwrap();
    assert!(conf.starts_with(r#"{"voters":["#), "{conf}");
}

#[test]
fn the_lease_bucket_holds_leasepb_leases_keyed_by_id() {
    let leases: Vec<_> = items(b"lease")
        .into_iter()
        .map(|(k, v)| {
            let id = i64::from_be_bytes(k.try_into().unwrap());
            (id, leasepb::Lease::decode(&v[..]).unwrap())
        })
        .collect();
    let lease = |id: i64, ttl: i64| leasepb::Lease {
        id,
        ttl,
        remaining_ttl: 0,
    };
    // etcd hands out lease ids in sequence from a random start.
    assert_eq!(
        leases,
        [
            (LEASE, lease(LEASE, 3600)),
            (LEASE + 3, lease(LEASE + 3, 7200))
        ]
    );
}

#[test]
fn the_auth_buckets_hold_the_enabled_flag_users_and_roles() {
    assert_eq!(get(b"auth", b"authEnabled"), [1]);
    assert_eq!(get(b"auth", b"authRevision"), 7u64.to_be_bytes());

    let users: Vec<_> = items(b"authUsers")
        .into_iter()
        .map(|(k, v)| (k, authpb::User::decode(&v[..]).unwrap()))
        .collect();
    let names: Vec<_> = users
        .iter()
        .map(|(k, u)| (k.clone(), u.roles.clone()))
        .collect();
    assert_eq!(
        names,
        [
            (b"alice".to_vec(), vec!["reader".to_string()]),
            (b"root".to_vec(), vec!["root".to_string()])
        ]
    );
    for (name, user) in &users {
        assert_eq!(&user.name, name);
        assert!(user.password.starts_with(b"$2a$10$"), "a bcrypt hash");
    }

    let roles = items(b"authRoles");
    assert_eq!(roles.len(), 1);
    let reader = authpb::Role::decode(&roles[0].1[..]).unwrap();
    assert_eq!(reader.name, b"reader");
    assert_eq!(reader.key_permission.len(), 1);
    let perm = &reader.key_permission[0];
    assert_eq!(
        (perm.perm_type, &perm.key[..], &perm.range_end[..]),
        (
            authpb::permission::Type::Read as i32,
            &b"/app/"[..],
            &b"/app0"[..]
        )
    );
}

#[test]
fn cluster_and_members_hold_the_version_and_the_member_as_json() {
    assert_eq!(get(b"cluster", b"clusterVersion"), b"3.5.0");
    let members = items(b"members");
    assert_eq!(members.len(), 1);
    let (id_hex, json) = &members[0];
    let json = String::from_utf8(json.clone()).unwrap();
    let id = u64::from_str_radix(std::str::from_utf8(id_hex).unwrap(), 16).unwrap();
    assert!(
        json.starts_with(&format!(r#"{{"id":{id},"peerURLs":["#)),
        "{json}"
    );
    assert!(json.ends_with(r#""name":"fixture"}"#), "{json}");
    assert!(items(b"members_removed").is_empty());
    assert!(items(b"alarm").is_empty());
}

#[test]
fn etcds_snapshot_rewritten_by_the_writer_reads_back_the_same() {
    let db = snapshot();
    let mut copy = InMemory::new();
    for name in db.buckets().unwrap() {
        copy.bucket(&name).extend(items(&name));
    }
    let mut out = Vec::new();
    write(&mut copy, &mut out, &WriteOptions::default()).unwrap();
    let back = Db::from_bytes(&out).unwrap();
    assert_eq!(back.buckets().unwrap(), db.buckets().unwrap());
    for name in db.buckets().unwrap() {
        let mut c = back.bucket(&name).unwrap().unwrap().cursor();
        let mut got = Vec::new();
        while let Some(e) = c.next().unwrap() {
            got.push((e.key.to_vec(), e.value.to_vec()));
        }
        assert_eq!(
            got,
            items(&name),
            "bucket {}",
            String::from_utf8_lossy(&name)
        );
    }
}
