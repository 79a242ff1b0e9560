use super::*;
use crate::mvcc::PrevValues;
use crate::pb::etcdserverpb::PutRequest;
use crate::pb::internal::internal_request::Request;

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

fn snapshot_file(sm: &StateMachine, path: &Path) {
    let rtx = sm.read().unwrap();
    let len = crate::backend::dump::size(&rtx).unwrap();
    let mut bytes = Vec::new();
    let digest = write(&rtx, len, &mut |chunk| {
        bytes.extend_from_slice(&chunk);
        Ok(())
    })
    .unwrap();
    assert_eq!(bytes.len() as u64, body_len(len));
    assert_eq!(bytes.len() % 512, 0);
    bytes.extend_from_slice(&digest);
    std::fs::write(path, bytes).unwrap();
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
fn status_reports_revision_and_live_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    snapshot_file(&state(dir.path()), &file);
    let st = status(&file).unwrap();
    assert_eq!((st.revision, st.total_keys), (4, 2));
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
fn a_flipped_byte_fails_the_hash_check_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    snapshot_file(&state(dir.path()), &file);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let data_dir = dir.path().join("restored");
    let err = restore(&file, &config(data_dir.clone(), "a")).unwrap_err();
    assert!(err.starts_with("expected sha256"), "{err}");
    assert!(!data_dir.exists());
    let mut skip = config(data_dir.clone(), "a");
    skip.skip_hash_check = true;
    let err = restore(&file, &skip).unwrap_err();
    assert!(err.contains("corrupt"), "{err}");
    assert!(!data_dir.exists());
}

#[test]
fn a_truncated_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    snapshot_file(&state(dir.path()), &file);
    let bytes = std::fs::read(&file).unwrap();
    // Cuts inside the backend stream (a cut in the trailer is a file with no
    // hash, which only --skip-hash-check accepts, as etcdutl does).
    let stream = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for cut in [0, 7, 8, 8 + stream / 2, 8 + stream - 1] {
        let cut_file = dir.path().join("cut.db");
        std::fs::write(&cut_file, &bytes[..cut]).unwrap();
        assert!(status(&cut_file).is_err(), "cut at {cut}");
        let mut skip = config(dir.path().join("r"), "a");
        skip.skip_hash_check = true;
        assert!(restore(&cut_file, &skip).is_err(), "cut at {cut}");
        assert!(!dir.path().join("r").exists());
    }
}

#[test]
fn a_file_without_its_hash_needs_skip_hash_check() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    snapshot_file(&state(dir.path()), &file);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 32]).unwrap();
    let err = restore(&file, &config(dir.path().join("r"), "a")).unwrap_err();
    assert_eq!(err, "snapshot missing hash but --skip-hash-check=false");
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
