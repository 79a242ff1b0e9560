use std::io::Write;

use super::*;
use crate::mvcc::PrevValues;
use crate::pb::etcdserverpb::PutRequest;
use crate::pb::internal::internal_request::Request;

const ETCD_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/etcd-3.5.1.snapshot.db"
);

/// A backend holding keys a, b (a overwritten): revision 4, two keys.
fn state(dir: &Path) -> StateMachine {
    let backend = Backend::open(&dir.join("src.db")).unwrap();
    let mut sm = StateMachine::load(backend, 1).unwrap();
    let tx = sm.backend.begin_write().unwrap();
    {
        let mut tables = tx.tables().unwrap();
        for (k, v) in [("a", "1"), ("b", "2"), ("a", "3")] {
            let req = Request::Put(PutRequest {
                key: k.into(),
                value: v.into(),
                ..Default::default()
            });
            sm.apply(&mut tables, PrevValues::AsAsked, &req, &mut Vec::new())
                .unwrap();
        }
        sm.set_applied(&tables, 10, 2).unwrap();
    }
    tx.commit(redb::Durability::Immediate).unwrap();
    sm
}

/// What Maintenance.Snapshot streams, as a file.
fn snapshot_file(sm: &StateMachine, path: &Path) {
    let rtx = sm.read().unwrap();
    let plan = plan(&rtx).unwrap();
    let size = plan.file_size();
    let mut out = bbolt::TrailerWriter::new(std::fs::File::create(path).unwrap());
    plan.write(&mut BackendSource(&rtx), &mut out).unwrap();
    out.finish().unwrap().flush().unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().len(), size + 32);
}

fn config(data_dir: PathBuf, name: &str) -> RestoreConfig {
    RestoreConfig {
        data_dir,
        name: name.into(),
        initial_cluster: vec![("a".into(), vec!["http://127.0.0.1:2380".into()])],
        cluster_token: "t".into(),
        skip_hash_check: false,
    }
}

#[test]
fn status_reports_revision_entries_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    snapshot_file(&state(dir.path()), &file);
    let st = status(&file).unwrap();
    // 3 versions in `key`, consistent_index and term in `meta`.
    assert_eq!((st.revision, st.total_keys), (4, 5));
    assert_eq!(st.total_size + 32, std::fs::metadata(&file).unwrap().len());
}

#[test]
fn status_of_etcds_own_snapshot_reads_its_buckets() {
    let st = status(Path::new(ETCD_FIXTURE)).unwrap();
    assert!(st.revision > 1 && st.total_keys > 10, "{st:?}");
}

#[test]
fn restore_builds_a_data_dir_with_the_keys_and_a_new_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let src = state(dir.path());
    let file = dir.path().join("snap.db");
    snapshot_file(&src, &file);
    let data_dir = dir.path().join("restored");
    restore(&file, &config(data_dir.clone(), "a")).unwrap();
    let db = crate::raft_node::backend_path(&data_dir);
    let restored = StateMachine::load(Backend::open(&db).unwrap(), 0).unwrap();
    assert_eq!(restored.store, src.store);
    assert_eq!(restored.applied_index, crate::raft_node::BOOTSTRAP_INDEX);
    let names: Vec<String> = restored
        .membership
        .members()
        .map(|m| m.name.clone())
        .collect();
    assert_eq!(names, vec!["a".to_string()]);
    assert!(data_dir.join("member/wal").is_dir());
}

#[test]
fn restore_of_etcds_snapshot_keeps_its_keys_leases_users_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("from-etcd");
    restore(Path::new(ETCD_FIXTURE), &config(data_dir.clone(), "a")).unwrap();
    let db = crate::raft_node::backend_path(&data_dir);
    let restored = StateMachine::load(Backend::open(&db).unwrap(), 0).unwrap();
    let st = status(Path::new(ETCD_FIXTURE)).unwrap();
    assert_eq!(restored.store.current_revision(), st.revision);
    assert!(restored.store.compact_revision() > 0);
    assert_eq!(restored.leases.len(), 2);
    assert!(restored.auth.enabled());
    assert!(!restored.auth.user_names().is_empty());
}

#[test]
fn a_flipped_byte_fails_the_hash_check_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    snapshot_file(&state(dir.path()), &file);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[5000] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let data_dir = dir.path().join("restored");
    let err = restore(&file, &config(data_dir.clone(), "a")).unwrap_err();
    assert!(err.contains("SHA-256"), "{err}");
    assert!(!data_dir.exists());
}

#[test]
fn status_reads_a_database_without_its_trailer_as_etcdutl_does() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    snapshot_file(&state(dir.path()), &file);
    let with = status(&file).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 32]).unwrap();
    assert_eq!(status(&file).unwrap(), with);
}

#[test]
fn truncated_and_damaged_files_are_refused_without_a_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    snapshot_file(&state(dir.path()), &file);
    let bytes = std::fs::read(&file).unwrap();
    let cut_file = dir.path().join("cut.db");
    for cut in [0, 100, 4096, 8192, bytes.len() - 33] {
        std::fs::write(&cut_file, &bytes[..cut]).unwrap();
        assert!(status(&cut_file).is_err(), "cut at {cut}");
        let mut skip = config(dir.path().join("r"), "a");
        skip.skip_hash_check = true;
        assert!(restore(&cut_file, &skip).is_err(), "cut at {cut}");
        assert!(!dir.path().join("r").exists());
    }
    let mut x = 1u64;
    for _ in 0..200 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut damaged = bytes[..bytes.len() - 32].to_vec();
        let at = (x >> 33) as usize % damaged.len();
        damaged[at] ^= 1 << (x % 8);
        std::fs::write(&cut_file, &damaged).unwrap();
        let mut skip = config(dir.path().join("r"), "a");
        skip.skip_hash_check = true;
        // Refused or restored, never a panic or a half-written data dir.
        if restore(&cut_file, &skip).is_err() {
            assert!(!dir.path().join("r").exists());
        } else {
            std::fs::remove_dir_all(dir.path().join("r")).unwrap();
        }
    }
}

#[test]
fn a_snapshot_of_etcdcores_older_format_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.db");
    // [u64 length][stream]["ECDUMP01"...], padded to 512, then a digest.
    let mut body = 20u64.to_le_bytes().to_vec();
    body.extend_from_slice(b"ECDUMP01");
    body.resize(512, 0);
    body.extend_from_slice(&[7u8; 32]);
    std::fs::write(&file, &body).unwrap();
    let err = restore(&file, &config(dir.path().join("r"), "a")).unwrap_err();
    assert!(err.contains("etcdcore's own older format"), "{err}");
}

#[test]
fn a_file_without_its_hash_needs_skip_hash_check() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    snapshot_file(&state(dir.path()), &file);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 32]).unwrap();
    assert!(restore(&file, &config(dir.path().join("r"), "a")).is_err());
    let mut skip = config(dir.path().join("r"), "a");
    skip.skip_hash_check = true;
    restore(&file, &skip).unwrap();
}

#[test]
fn restore_refuses_a_name_outside_the_initial_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    snapshot_file(&state(dir.path()), &file);
    let err = restore(&file, &config(dir.path().join("d"), "x")).unwrap_err();
    assert!(err.contains("couldn't find local name"));
}

#[test]
fn restore_refuses_a_data_dir_with_content() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    snapshot_file(&state(dir.path()), &file);
    let data_dir = dir.path().join("d");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("f"), b"x").unwrap();
    assert!(restore(&file, &config(data_dir.clone(), "a"))
        .unwrap_err()
        .contains("not empty"));
    assert!(data_dir.join("f").exists());
}
