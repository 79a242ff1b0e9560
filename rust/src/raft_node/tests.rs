//! The Raft node end to end on one member: proposals become durable and
//! applied, reads see them, and a restart recovers them from the WAL (and
//! from snapshots).

use std::sync::Arc;
use std::time::Duration;

use super::{Bootstrap, Node, NodeConfig};
use crate::bridge::Bridge;
use crate::pb::etcdserverpb::{PutRequest, RangeRequest};
use crate::pb::internal::internal_request::Request;
use crate::pb::internal::MemberRecord;
use crate::state_machine::Outcome;

fn config(dir: &std::path::Path, snapshot_count: u64) -> NodeConfig {
    NodeConfig {
        id: 7,
        cluster_id: 9,
        name: "t".into(),
        bootstrap: Bootstrap::New(vec![MemberRecord {
            id: 7,
            name: "t".into(),
            ..Default::default()
        }]),
        data_dir: dir.to_path_buf(),
        heartbeat: Duration::from_millis(10),
        election_ticks: 10,
        snapshot_count,
        quota_backend_bytes: 0,
        backend_batch_interval: Duration::from_millis(100),
        backend_batch_limit: 10_000,
        metrics: Default::default(),
        lease_checkpoint_interval: None,
        watch: Default::default(),
    }
}

fn put(key: &str, value: &str) -> Request {
    Request::Put(PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    })
}

fn value_of(node: &Node, key: &str) -> Option<Vec<u8>> {
    let handle = node.handle();
    let sm = handle.shared.sm.read().unwrap();
    let rtx = sm.read().unwrap();
    let r = sm
        .store
        .range(
            rtx.key_bucket(),
            &RangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            },
        )
        .unwrap();
    r.kvs.first().map(|kv| kv.value.clone())
}

#[test]
fn proposal_is_applied_and_answered_with_its_revision() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(
        config(dir.path(), 1000),
        Arc::new(Bridge::new().unwrap()),
        None,
    )
    .unwrap();
    let applied = node.handle().propose_blocking(put("a", "1")).unwrap();
    assert!(matches!(applied.outcome, Outcome::Put(_)));
    assert_eq!(applied.revision, 2);
    assert!(applied.term >= 1);
    assert_eq!(value_of(&node, "a"), Some(b"1".to_vec()));
    node.stop();
}

/// A watcher on `key` from now, and the stream it is on.
fn watch(node: &Node, key: &str) -> Arc<crate::watch::StreamOut> {
    let hub = node.handle().watch;
    let (stream, out) = hub.open_stream();
    hub.create(
        stream,
        &crate::pb::etcdserverpb::WatchCreateRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        },
    );
    out
}

/// Revisions of the events queued on `out` (waiting up to a second for
/// at least `want` of them), the created response skipped.
fn queued_revisions(out: &crate::watch::StreamOut, want: usize) -> Vec<i64> {
    use std::task::{Context, Poll, Waker};
    let mut cx = Context::from_waker(Waker::noop());
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        match out.poll_take(&mut cx, 0).0 {
            Poll::Ready(Some(Ok(crate::watch::Out::Events(e)))) => {
                got.extend(e.events.iter().map(|e| e.rev))
            }
            Poll::Ready(Some(Ok(_))) => {}
            _ if got.len() < want && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => return got,
        }
    }
}

#[test]
fn applied_events_reach_the_watchers() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(
        config(dir.path(), 1000),
        Arc::new(Bridge::new().unwrap()),
        None,
    )
    .unwrap();
    let out = watch(&node, "a");
    node.handle().propose_blocking(put("a", "1")).unwrap();
    node.handle().propose_blocking(put("b", "1")).unwrap();
    node.handle().propose_blocking(put("a", "2")).unwrap();
    assert_eq!(queued_revisions(&out, 2), vec![2, 4]);
    node.stop();
}

#[test]
fn a_watcher_that_is_never_read_does_not_hold_up_applies() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1000);
    cfg.watch.stream_buffer_bytes = 1024;
    let mut node = Node::start(cfg, Arc::new(Bridge::new().unwrap()), None).unwrap();
    let out = watch(&node, "a");
    for i in 0..200 {
        node.handle()
            .propose_blocking(put("a", &"x".repeat(100 + i)))
            .unwrap();
    }
    assert!(out.queued_bytes() < 1024 + 512);
    // Once read, everything comes, in order.
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while got.len() < 200 && std::time::Instant::now() < deadline {
        got.extend(queued_revisions(&out, 0));
        node.handle().watch.wake_sync();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(got, (2..202).collect::<Vec<i64>>());
    node.stop();
}

#[test]
fn a_read_in_progress_does_not_hold_up_applies() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(
        config(dir.path(), 1000),
        Arc::new(Bridge::new().unwrap()),
        None,
    )
    .unwrap();
    let h = node.handle();
    h.propose_blocking(put("a", "1")).unwrap();
    let req = RangeRequest {
        key: b"a".to_vec(),
        ..Default::default()
    };
    // A reader plans on the index and takes its read transaction...
    let (plan, rtx) = {
        let sm = h.shared.sm.read().unwrap();
        let plan = sm
            .store
            .plan_range(&req, sm.store.current_revision())
            .unwrap();
        (plan, sm.read().unwrap())
    };
    // ...and while it holds them, writes are applied and answered.
    for i in 2..10 {
        h.propose_blocking(put("a", &i.to_string())).unwrap();
    }
    assert_eq!(value_of(&node, "a"), Some(b"9".to_vec()));
    // The reader still sees the state it started with.
    assert_eq!(plan.read(rtx.key_bucket()).unwrap().kvs[0].value, b"1");
    node.stop();
}

#[test]
fn restart_recovers_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut node = Node::start(
            config(dir.path(), 1000),
            Arc::new(Bridge::new().unwrap()),
            None,
        )
        .unwrap();
        for i in 0..50 {
            node.handle()
                .propose_blocking(put(&format!("k{i}"), &i.to_string()))
                .unwrap();
        }
        node.stop();
    }
    let mut node = Node::start(
        config(dir.path(), 1000),
        Arc::new(Bridge::new().unwrap()),
        None,
    )
    .unwrap();
    // Committed entries are re-applied by the loop; a proposal after them
    // proves the log was replayed.
    let applied = node.handle().propose_blocking(put("after", "x")).unwrap();
    assert_eq!(applied.revision, 52);
    assert_eq!(value_of(&node, "k49"), Some(b"49".to_vec()));
    node.stop();
}

#[test]
fn restart_after_snapshots_recovers_state_and_releases_wal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut node = Node::start(
            config(dir.path(), 10),
            Arc::new(Bridge::new().unwrap()),
            None,
        )
        .unwrap();
        for i in 0..45 {
            node.handle()
                .propose_blocking(put(&format!("k{i}"), &i.to_string()))
                .unwrap();
        }
        node.stop();
    }
    let mut node = Node::start(
        config(dir.path(), 10),
        Arc::new(Bridge::new().unwrap()),
        None,
    )
    .unwrap();
    let applied = node.handle().propose_blocking(put("after", "x")).unwrap();
    assert_eq!(applied.revision, 47);
    assert_eq!(value_of(&node, "k0"), Some(b"0".to_vec()));
    assert_eq!(value_of(&node, "k44"), Some(b"44".to_vec()));
    node.stop();
}

mod quota {
    use super::*;
    use crate::errors;
    use crate::pb::etcdserverpb::{
        alarm_request::AlarmAction, AlarmRequest, AlarmType, CompactionRequest, DeleteRangeRequest,
    };
    use tonic::Code;

    /// The value size of a big put: each grows the backend file noticeably.
    const BIG: usize = 64 * 1024;
    /// Room above a fresh backend's size: a few big puts fit, not many.
    const ROOM: u64 = 512 * 1024;

    fn start(dir: &std::path::Path, quota: u64) -> Node {
        let mut cfg = config(dir, 1000);
        cfg.quota_backend_bytes = quota;
        Node::start(cfg, Arc::new(Bridge::new().unwrap()), None).unwrap()
    }

    /// A quota a fresh member's backend is well under.
    fn quota(dir: &std::path::Path) -> u64 {
        let mut node = start(dir, 0);
        let fresh = node.handle().shared.db_size.load(Ordering::Acquire);
        node.stop();
        fresh + ROOM
    }

    fn big_put(key: &str) -> Request {
        put(key, &"v".repeat(BIG))
    }

    /// Puts big values until one is refused; returns how many were accepted
    /// and the refusal.
    fn fill(node: &Node, prefix: &str) -> (usize, tonic::Status) {
        for i in 0..100 {
            match node
                .handle()
                .propose_blocking(big_put(&format!("{prefix}{i}")))
            {
                Ok(_) => {}
                Err(e) => return (i, e),
            }
        }
        panic!("100 big puts fit the quota");
    }

    fn nospace_alarms(node: &Node) -> Vec<u64> {
        let h = node.handle();
        let sm = h.shared.sm.read().unwrap();
        sm.alarms
            .iter()
            .filter(|a| a.alarm == AlarmType::Nospace as i32)
            .map(|a| a.member_id)
            .collect()
    }

    fn assert_no_space(r: Result<crate::raft_node::Applied, tonic::Status>) {
        let e = r.expect_err("refused for space");
        assert_eq!(e.code(), Code::ResourceExhausted);
        assert_eq!(e.message(), errors::NO_SPACE);
    }

    fn disarm(node: &Node) {
        node.handle()
            .propose_blocking(Request::Alarm(AlarmRequest {
                action: AlarmAction::Deactivate as i32,
                member_id: 7,
                alarm: AlarmType::Nospace as i32,
            }))
            .unwrap();
    }

    use std::sync::atomic::Ordering;

    #[test]
    fn write_past_the_quota_is_refused_and_raises_nospace() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = start(dir.path(), quota(dir.path()));
        let (accepted, refusal) = fill(&node, "k");
        assert!(accepted >= 1);
        assert_no_space(Err(refusal));
        assert_eq!(nospace_alarms(&node), vec![7]);
        assert_eq!(value_of(&node, &format!("k{accepted}")), None);
        // Capped: even a small put is refused now.
        assert_no_space(node.handle().propose_blocking(put("d", "1")));
        node.stop();
    }

    #[test]
    fn compaction_defragment_and_disarm_make_room_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = start(dir.path(), quota(dir.path()));
        let h = node.handle();
        // Overwrites of one key: compaction can free all but the last.
        for _ in 0..100 {
            if h.propose_blocking(big_put("a")).is_err() {
                break;
            }
        }
        assert_eq!(nospace_alarms(&node), vec![7]);
        let rev = h.shared.sm.read().unwrap().store.current_revision();
        h.propose_blocking(Request::Compaction(CompactionRequest {
            revision: rev,
            physical: true,
        }))
        .unwrap();
        // Wait for the compaction's removal of versions (in the background).
        for _ in 0..500 {
            if h.shared.sm.read().unwrap().compactions.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        h.propose_blocking(Request::DeleteRange(DeleteRangeRequest {
            key: b"missing".to_vec(),
            ..Default::default()
        }))
        .unwrap();
        disarm(&node);
        // Compaction alone leaves the file at its size: refused again.
        assert_no_space(h.propose_blocking(big_put("b")));
        let (before, after) = h.defragment_blocking().unwrap();
        assert!(after < before / 2, "defragment took {before} to {after}");
        disarm(&node);
        h.propose_blocking(big_put("b")).unwrap();
        assert!(nospace_alarms(&node).is_empty());
        node.stop();
    }

    #[test]
    fn nospace_alarm_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let q = quota(dir.path());
        {
            let mut node = start(dir.path(), q);
            let (_, refusal) = fill(&node, "k");
            assert_no_space(Err(refusal));
            node.stop();
        }
        // Even with no quota at all: the alarm is replicated state.
        let mut node = start(dir.path(), 0);
        assert_no_space(node.handle().propose_blocking(put("d", "1")));
        assert_eq!(nospace_alarms(&node), vec![7]);
        node.stop();
    }

    #[test]
    fn replaying_writes_past_a_smaller_quota_raises_no_alarm() {
        let dir = tempfile::tempdir().unwrap();
        let q = quota(dir.path());
        {
            let mut node = start(dir.path(), 0);
            for i in 0..20 {
                node.handle()
                    .propose_blocking(big_put(&format!("k{i}")))
                    .unwrap();
            }
            node.stop();
        }
        let mut node = start(dir.path(), q);
        // A proposal after the replayed entries proves they were applied.
        node.handle()
            .propose_blocking(Request::DeleteRange(DeleteRangeRequest {
                key: b"k0".to_vec(),
                ..Default::default()
            }))
            .unwrap();
        assert!(nospace_alarms(&node).is_empty());
        assert_no_space(node.handle().propose_blocking(put("e", "1")));
        assert_eq!(nospace_alarms(&node), vec![7]);
        node.stop();
    }

    #[test]
    fn racing_writers_never_get_more_than_the_quota_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let q = quota(dir.path());
        let mut node = start(dir.path(), q);
        let writers: Vec<_> = (0..16)
            .map(|i| {
                let h = node.handle();
                std::thread::spawn(move || h.propose_blocking(big_put(&format!("k{i}"))))
            })
            .collect();
        let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        let acknowledged = results.iter().filter(|r| r.is_ok()).count() as u64;
        assert!(
            acknowledged * (BIG as u64) < q,
            "{acknowledged} writes of {BIG} bytes acknowledged under a quota of {q}"
        );
        let refused: Vec<_> = results.into_iter().filter(|r| r.is_err()).collect();
        assert!(!refused.is_empty());
        for r in refused {
            assert_no_space(r);
        }
        assert_eq!(nospace_alarms(&node), vec![7]);
        node.stop();
    }
}

#[test]
fn a_lone_member_promotes_its_lessor_once_its_first_entry_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(
        config(dir.path(), 1000),
        Arc::new(Bridge::new().unwrap()),
        None,
    )
    .unwrap();
    let h = node.handle();
    // Applied after the leader's empty entry of its term.
    h.propose_blocking(put("a", "1")).unwrap();
    assert!(h.shared.lessor.is_primary());
    node.stop();
}

#[test]
fn applied_grants_and_revocations_reach_the_lessor_before_the_answer() {
    use crate::pb::etcdserverpb::{LeaseGrantRequest, LeaseRevokeRequest};
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(
        config(dir.path(), 1000),
        Arc::new(Bridge::new().unwrap()),
        None,
    )
    .unwrap();
    let h = node.handle();
    h.propose_blocking(Request::LeaseGrant(LeaseGrantRequest { id: 9, ttl: 30 }))
        .unwrap();
    let view = h
        .shared
        .lessor
        .lookup(9, std::time::Instant::now())
        .unwrap();
    assert_eq!(view.granted_ttl, 30);
    assert!(view.remaining >= 29);
    assert_eq!(h.shared.revision(), 1);
    h.propose_blocking(put("k", "v")).unwrap();
    assert_eq!(h.shared.revision(), 2);
    h.propose_blocking(Request::LeaseRevoke(LeaseRevokeRequest { id: 9 }))
        .unwrap();
    assert!(!h.shared.lessor.contains(9));
    node.stop();
}

#[test]
fn a_restart_brings_back_the_leases_and_a_new_term_promotes_again() {
    use crate::pb::etcdserverpb::LeaseGrantRequest;
    let dir = tempfile::tempdir().unwrap();
    let bridge = Arc::new(Bridge::new().unwrap());
    let mut node = Node::start(config(dir.path(), 1000), bridge.clone(), None).unwrap();
    node.handle()
        .propose_blocking(Request::LeaseGrant(LeaseGrantRequest { id: 4, ttl: 60 }))
        .unwrap();
    node.stop();
    drop(node);
    let mut node = Node::start(config(dir.path(), 1000), bridge, None).unwrap();
    let h = node.handle();
    h.propose_blocking(put("after", "restart")).unwrap();
    assert!(h.shared.lessor.is_primary());
    let view = h
        .shared
        .lessor
        .lookup(4, std::time::Instant::now())
        .unwrap();
    assert!(view.remaining >= 59, "{view:?}");
    node.stop();
}

#[test]
fn a_forwarded_renewal_of_an_expired_lease_is_answered_ask_again_at_once() {
    use crate::lessor::leader;
    use crate::pb::etcdserverpb::LeaseGrantRequest;
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(
        config(dir.path(), 1000),
        Arc::new(Bridge::new().unwrap()),
        None,
    )
    .unwrap();
    let h = node.handle();
    for (id, ttl) in [(5, 1), (6, 30)] {
        h.propose_blocking(Request::LeaseGrant(LeaseGrantRequest { id, ttl }))
            .unwrap();
    }
    // No expiry task runs here: lease 5 stays expired and unrevoked.
    std::thread::sleep(Duration::from_millis(1100));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let forwarded = rt.block_on(leader::renew(&h, &[5, 6, 7], deadline, false));
    assert_eq!(forwarded, vec![None, Some(30), Some(0)]);
    assert!(
        Instant::now() < deadline,
        "the expired lease held the batch up"
    );
    // A client of this member waits for the revocation, here in vain.
    let deadline = Instant::now() + Duration::from_millis(300);
    let local = rt.block_on(leader::renew(&h, &[5, 6], deadline, true));
    assert_eq!(local, vec![None, Some(30)]);
    assert!(Instant::now() >= deadline);
    node.stop();
}
