use redb::Durability;

use super::dump::{self, Loader};
use super::schema::{self, BUCKETS};
use super::*;
use crate::mvcc::{KeyBucket, KeyBucketMut, Revision};
use crate::pb::mvccpb::KeyValue;

fn kv(key: &str, rev: i64, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        create_revision: rev,
        mod_revision: rev,
        version: 1,
        value: value.into(),
        lease: 0,
    }
}

/// A backend with entries in the key bucket, a lease, an alarm, members and
/// the consistent index set.
fn sample(dir: &Path) -> Backend {
    let b = Backend::open(&dir.join("db")).unwrap();
    let tx = b.begin_write().unwrap();
    {
        let mut t = tx.tables().unwrap();
        for i in 2..300 {
            let key = format!("key/{i:04}");
            t.key
                .insert(
                    Revision::new(i, 0),
                    false,
                    &kv(&key, i, &"v".repeat(i as usize)),
                )
                .unwrap();
        }
        t.put_lease(7, 60, 25).unwrap();
        t.save_alarms(&[crate::pb::etcdserverpb::AlarmMember {
            member_id: 1,
            alarm: 1,
        }])
        .unwrap();
        t.save_membership(
            [crate::pb::internal::MemberRecord {
                id: 1,
                name: "n1".into(),
                peer_urls: vec!["http://a:2380".into()],
                ..Default::default()
            }]
            .iter(),
            [5u64].into_iter(),
        )
        .unwrap();
        t.set_consistent_index(42, 3).unwrap();
    }
    tx.commit(Durability::Immediate).unwrap();
    b
}

/// Every entry of every bucket, in order.
fn contents(b: &Backend) -> Vec<(usize, Vec<u8>, Vec<u8>)> {
    let rtx = b.begin_read().unwrap();
    let mut out = Vec::new();
    for (i, bucket) in BUCKETS.iter().enumerate() {
        rtx.for_each(*bucket, &mut |k, v| {
            out.push((i, k.to_vec(), v.to_vec()));
            Ok(true)
        })
        .unwrap();
    }
    out
}

fn stream_of(b: &Backend) -> Vec<u8> {
    let rtx = b.begin_read().unwrap();
    let mut bytes = Vec::new();
    let n = dump::write(&rtx, &mut |chunk| {
        bytes.extend_from_slice(&chunk);
        Ok(())
    })
    .unwrap();
    assert_eq!(n, bytes.len() as u64);
    assert_eq!(dump::size(&rtx).unwrap(), n);
    bytes
}

#[test]
fn a_fresh_backend_has_every_bucket_and_nothing_applied() {
    let dir = tempfile::tempdir().unwrap();
    let b = Backend::open(&dir.path().join("db")).unwrap();
    let rtx = b.begin_read().unwrap();
    for bucket in BUCKETS {
        rtx.for_each(bucket, &mut |_, _| panic!("not empty"))
            .unwrap();
    }
    assert_eq!(rtx.position().unwrap(), (0, 0));
    assert!(b.sizes().file() > 0);
}

#[test]
fn a_commit_without_fsync_is_visible_to_readers_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = Backend::open(&dir.path().join("db")).unwrap();
    let tx = b.begin_write().unwrap();
    tx.tables()
        .unwrap()
        .key
        .insert(Revision::new(2, 0), false, &kv("a", 2, "1"))
        .unwrap();
    tx.commit(Durability::None).unwrap();
    let rtx = b.begin_read().unwrap();
    assert_eq!(
        rtx.key_bucket().get(Revision::new(2, 0)).unwrap(),
        Some(kv("a", 2, "1"))
    );
}

#[test]
fn a_read_transaction_keeps_its_view_while_later_commits_land() {
    let dir = tempfile::tempdir().unwrap();
    let b = sample(dir.path());
    let before = b.begin_read().unwrap();
    let tx = b.begin_write().unwrap();
    {
        let mut t = tx.tables().unwrap();
        t.key.remove(Revision::new(2, 0), false).unwrap();
        t.set_consistent_index(43, 3).unwrap();
    }
    tx.commit(Durability::None).unwrap();
    assert!(before
        .key_bucket()
        .get(Revision::new(2, 0))
        .unwrap()
        .is_some());
    assert_eq!(before.position().unwrap(), (42, 3));
    let after = b.begin_read().unwrap();
    assert!(after
        .key_bucket()
        .get(Revision::new(2, 0))
        .unwrap()
        .is_none());
    assert_eq!(after.position().unwrap(), (43, 3));
}

#[test]
fn saved_state_reads_back_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let b = sample(dir.path());
    let s = b.begin_read().unwrap().saved_state().unwrap();
    assert_eq!((s.consistent_index, s.term), (42, 3));
    assert_eq!(s.leases, vec![(7, 60, 25)]);
    assert_eq!(s.alarms.len(), 1);
    assert_eq!(s.members[0].name, "n1");
    assert_eq!(s.removed, vec![5]);
    assert_eq!((s.scheduled_compaction, s.finished_compaction), (-1, -1));
}

#[test]
fn a_stream_loads_into_an_identical_backend_whatever_the_chunking() {
    let dir = tempfile::tempdir().unwrap();
    let b = sample(dir.path());
    let bytes = stream_of(&b);
    for piece in [1usize, 7, 4096, bytes.len()] {
        let path = dir.path().join(format!("copy-{piece}"));
        let mut loader = Loader::create(&path).unwrap();
        for chunk in bytes.chunks(piece) {
            loader.feed(chunk).unwrap();
        }
        loader.finish().unwrap();
        let copy = Backend::open(&path).unwrap();
        assert_eq!(contents(&copy), contents(&b), "pieces of {piece}");
    }
}

#[test]
fn a_stream_cut_short_is_refused_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let b = sample(dir.path());
    let bytes = stream_of(&b);
    for cut in [
        0,
        5,
        8,
        100,
        bytes.len() / 2,
        bytes.len() - 13,
        bytes.len() - 1,
    ] {
        let path = dir.path().join("cut");
        let mut loader = Loader::create(&path).unwrap();
        let fed = loader.feed(&bytes[..cut]);
        let finished = fed.and_then(|()| loader.finish());
        assert!(finished.is_err(), "cut at {cut}");
        assert!(!path.exists(), "cut at {cut} left a file");
        assert!(!path.with_extension("loading").exists());
    }
}

#[test]
fn a_damaged_stream_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = sample(dir.path());
    let bytes = stream_of(&b);
    for at in [3, 9, 200, bytes.len() / 2, bytes.len() - 3] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x10;
        let path = dir.path().join("damaged");
        let mut loader = Loader::create(&path).unwrap();
        let result = loader.feed(&damaged).and_then(|()| loader.finish());
        assert!(result.is_err(), "flip at {at}");
        assert!(!path.exists());
    }
}

#[test]
fn live_bytes_follow_writes_and_match_a_fresh_count() {
    let dir = tempfile::tempdir().unwrap();
    let b = sample(dir.path());
    let counted: i64 = contents(&b).iter().map(|(_, k, v)| entry_bytes(k, v)).sum();
    // The sample was written into an empty backend: the running count is
    // every entry's bytes.
    assert_eq!(b.sizes().in_use() as i64, counted);
    let tx = b.begin_write().unwrap();
    {
        let mut t = tx.tables().unwrap();
        for i in 2..200 {
            t.key.remove(Revision::new(i, 0), false).unwrap();
        }
    }
    tx.commit(Durability::None).unwrap();
    let after: i64 = contents(&b).iter().map(|(_, k, v)| entry_bytes(k, v)).sum();
    assert_eq!(b.sizes().in_use() as i64, after);
    assert!(after < counted);
}

#[test]
fn defragment_copies_everything_into_a_smaller_file() {
    let dir = tempfile::tempdir().unwrap();
    let b = sample(dir.path());
    let tx = b.begin_write().unwrap();
    {
        let mut t = tx.tables().unwrap();
        for i in 2..290 {
            t.key.remove(Revision::new(i, 0), false).unwrap();
        }
    }
    tx.commit(Durability::Immediate).unwrap();
    let before = contents(&b);
    let big = b.sizes().file();
    let copy = b.defragment_copy().unwrap();
    let reader = b.begin_read().unwrap();
    let b2 = b.replace_with(&copy).unwrap();
    assert_eq!(contents(&b2), before);
    assert!(
        b2.sizes().file() < big,
        "{} not below {big}",
        b2.sizes().file()
    );
    // A reader of the old file finishes there.
    assert!(reader
        .key_bucket()
        .get(Revision::new(295, 0))
        .unwrap()
        .is_some());
}

#[test]
fn tombstones_keep_etcds_key_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let b = Backend::open(&dir.path().join("db")).unwrap();
    let tx = b.begin_write().unwrap();
    tx.tables()
        .unwrap()
        .key
        .insert(
            Revision::new(3, 0),
            true,
            &crate::mvcc::tombstone_value(b"gone"),
        )
        .unwrap();
    tx.commit(Durability::None).unwrap();
    let rtx = b.begin_read().unwrap();
    let mut keys = Vec::new();
    rtx.for_each(schema::KEY, &mut |k, _| {
        keys.push(k.to_vec());
        Ok(true)
    })
    .unwrap();
    assert_eq!(keys, vec![Revision::new(3, 0).to_bytes(true)]);
    assert_eq!(rtx.key_bucket().get(Revision::new(3, 0)).unwrap(), None);
}
