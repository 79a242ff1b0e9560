//! The hub against a store in memory, driven as the applier and the gRPC
//! side drive it: etcd 3.5's watch semantics, catch-up and hand-over, slow
//! clients. (Each test says one behaviour; the sync worker's steps are run
//! by hand unless a test races them.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use prost::Message;

use super::hub::{ERR_COMPACTED, ERR_DUPLICATE_ID, ERR_EMPTY_RANGE};
use super::index::WatchRange;
use super::queue::Out;
use super::*;
use crate::mvcc::testutil::{any_lease, del_op, put_op, txn, TestStore};
use crate::mvcc::MvccError;
use crate::pb::etcdserverpb::{PutRequest, RequestOp, WatchCreateRequest, WatchResponse};
use crate::pb::mvccpb::event::EventType;
use crate::pb::mvccpb::Event;

const CLUSTER_ID: u64 = 0x1234;
const MEMBER_ID: u64 = 0x5678;
const TERM: u64 = 3;
const NOPUT: i32 = 0;
const NODELETE: i32 = 1;

/// Holds reads of history until opened; says when one is under way.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    reading: Mutex<bool>,
    started: Condvar,
    /// The read takes its snapshot of the store before waiting (else after).
    snapshot_first: bool,
}

impl Gate {
    fn pass(&self) {
        *self.reading.lock().unwrap() = true;
        self.started.notify_all();
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }

    fn wait_reading(&self) {
        let mut r = self.reading.lock().unwrap();
        while !*r {
            r = self
                .started
                .wait_timeout(r, Duration::from_secs(5))
                .unwrap()
                .0;
        }
    }

    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

#[derive(Default)]
struct Fake {
    store: Mutex<TestStore>,
    gate: Mutex<Option<Arc<Gate>>>,
    reads: AtomicUsize,
}

impl History for Fake {
    fn revision(&self) -> i64 {
        self.store.lock().unwrap().current_revision()
    }

    fn term(&self) -> u64 {
        TERM
    }

    fn events(
        &self,
        range: Option<&WatchRange>,
        from: i64,
        max: usize,
        with_prev: bool,
    ) -> Result<HistoryRead, ReadError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let gate = self.gate.lock().unwrap().clone();
        if let Some(g) = gate.as_ref().filter(|g| !g.snapshot_first) {
            g.pass();
        }
        let read = {
            let s = self.store.lock().unwrap();
            let (key, end) = range.map_or((&b"\0"[..], &b"\0"[..]), |r| r.as_request());
            let revision = s.current_revision();
            s.store
                .events_since(&s.bucket, key, end, from, max, with_prev)
                .map(|events| {
                    let complete_to = match events.last().and_then(|e| e.kv.as_ref()) {
                        Some(kv) if events.len() >= max => kv.mod_revision,
                        _ => revision,
                    };
                    HistoryRead {
                        events,
                        complete_to,
                    }
                })
                .map_err(|e| match e {
                    MvccError::Compacted => ReadError::Compacted(s.compact_revision()),
                    e => ReadError::Failed(e.to_string()),
                })
        };
        if let Some(g) = gate.as_ref().filter(|g| g.snapshot_first) {
            g.pass();
        }
        read
    }
}

struct H {
    hub: Arc<WatchHub>,
    fake: Arc<Fake>,
}

struct Client {
    stream: u64,
    out: Arc<StreamOut>,
}

fn settings() -> WatchSettings {
    WatchSettings {
        progress_interval: Duration::ZERO,
        ..WatchSettings::default()
    }
}

fn h() -> H {
    h_with(settings())
}

fn h_with(settings: WatchSettings) -> H {
    let fake = Arc::new(Fake::default());
    let hub = Arc::new(WatchHub::new(
        fake.clone(),
        encoded::HeaderIds {
            cluster_id: CLUSTER_ID,
            member_id: MEMBER_ID,
        },
        settings,
    ));
    H { hub, fake }
}

fn create_req(key: &[u8]) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.to_vec(),
        ..Default::default()
    }
}

fn range_req(key: &[u8], end: &[u8]) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.to_vec(),
        range_end: end.to_vec(),
        ..Default::default()
    }
}

impl H {
    fn open(&self) -> Client {
        let (stream, out) = self.hub.open_stream();
        Client { stream, out }
    }

    fn create(&self, c: &Client, req: WatchCreateRequest) {
        self.hub.create(c.stream, &req);
    }

    /// Applies `ops` as one txn (one revision) and hands the events to the
    /// hub as the applier does: with prev_kv only while a watcher wants it.
    fn write(&self, ops: Vec<RequestOp>) -> i64 {
        let events = self.apply(ops);
        let rev = events[0].kv.as_ref().unwrap().mod_revision;
        self.notify(events);
        rev
    }

    fn apply(&self, ops: Vec<RequestOp>) -> Vec<Event> {
        let with_prev = self.hub.wants_prev_kv();
        let mut s = self.fake.store.lock().unwrap();
        let (_, mut events) = s.txn(&txn(vec![], ops, vec![]), &any_lease).unwrap();
        if !with_prev {
            events.iter_mut().for_each(|e| e.prev_kv = None);
        }
        events
    }

    fn notify(&self, events: Vec<Event>) {
        let with_prev = events.iter().any(|e| e.prev_kv.is_some()) || self.hub.wants_prev_kv();
        self.hub.notify(events, with_prev);
    }

    fn put(&self, key: &str, value: &str) -> i64 {
        self.write(vec![put_op(key, value)])
    }

    fn put_bytes(&self, key: &[u8]) -> i64 {
        let op = RequestOp {
            request: Some(crate::pb::etcdserverpb::request_op::Request::RequestPut(
                PutRequest {
                    key: key.to_vec(),
                    value: b"v".to_vec(),
                    ..Default::default()
                },
            )),
        };
        self.write(vec![op])
    }

    fn delete(&self, key: &str) -> i64 {
        self.write(vec![del_op(key, "")])
    }

    /// Every response queued on the client's stream, decoded.
    fn take(&self, c: &Client) -> Vec<WatchResponse> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut got = Vec::new();
        loop {
            let (item, room) = c.out.poll_take(&mut cx, self.hub.low_water());
            if room {
                self.hub.wake_sync();
            }
            match item {
                Poll::Ready(Some(Ok(Out::Control(b)))) => {
                    got.push(WatchResponse::decode(b).unwrap())
                }
                Poll::Ready(Some(Ok(Out::Events(e)))) => got.extend(
                    self.hub
                        .responses(&e)
                        .into_iter()
                        .map(|b| WatchResponse::decode(b).unwrap()),
                ),
                _ => return got,
            }
        }
    }

    /// Runs the sync worker's steps until it has nothing left to do.
    fn catch_up(&self) {
        while sync::step(&self.hub) {}
    }

    /// Takes and catches up until the client has everything.
    fn take_all(&self, c: &Client) -> Vec<WatchResponse> {
        let mut got = Vec::new();
        loop {
            self.catch_up();
            let more = self.take(c);
            if more.is_empty() {
                return got;
            }
            got.extend(more);
        }
    }
}

fn revs(resps: &[WatchResponse]) -> Vec<i64> {
    resps
        .iter()
        .flat_map(|r| r.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision))
        .collect()
}

fn keys(r: &WatchResponse) -> Vec<Vec<u8>> {
    r.events
        .iter()
        .map(|e| e.kv.as_ref().unwrap().key.clone())
        .collect()
}

fn event_responses(resps: Vec<WatchResponse>) -> Vec<WatchResponse> {
    resps.into_iter().filter(|r| !r.events.is_empty()).collect()
}

// -- create / cancel ------------------------------------------------------------

#[test]
fn create_reply_carries_watch_id_and_current_revision() {
    let h = h();
    h.put("a", "1");
    let c = h.open();
    h.create(&c, create_req(b"foo"));
    let [resp] = h.take(&c).try_into().unwrap();
    assert!(resp.created && !resp.canceled);
    assert_eq!(resp.watch_id, 0);
    let header = resp.header.unwrap();
    assert_eq!(header.revision, 2);
    assert_eq!(
        (header.cluster_id, header.member_id, header.raft_term),
        (CLUSTER_ID, MEMBER_ID, TERM)
    );
}

#[test]
fn server_chosen_ids_count_from_zero_per_stream() {
    let h = h();
    let (one, two) = (h.open(), h.open());
    for _ in 0..3 {
        h.create(&one, create_req(b"k"));
    }
    h.create(&two, create_req(b"k"));
    let ids = |c| h.take(c).iter().map(|r| r.watch_id).collect::<Vec<_>>();
    assert_eq!(ids(&one), vec![0, 1, 2]);
    assert_eq!(ids(&two), vec![0]);
}

#[test]
fn client_chosen_watch_id_is_used_and_skipped_by_server_ids() {
    let h = h();
    let c = h.open();
    h.create(
        &c,
        WatchCreateRequest {
            watch_id: 1,
            ..create_req(b"k")
        },
    );
    h.create(&c, create_req(b"k"));
    h.create(&c, create_req(b"k"));
    let ids: Vec<i64> = h.take(&c).iter().map(|r| r.watch_id).collect();
    assert_eq!(ids, vec![1, 0, 2]);
    h.put("k", "v");
    let mut ids: Vec<i64> = h.take(&c).iter().map(|r| r.watch_id).collect();
    ids.sort();
    assert_eq!(ids, vec![0, 1, 2]);
}

#[test]
fn duplicate_watch_id_is_refused_with_invalid_id() {
    let h = h();
    let c = h.open();
    h.create(
        &c,
        WatchCreateRequest {
            watch_id: 7,
            ..create_req(b"k")
        },
    );
    h.create(
        &c,
        WatchCreateRequest {
            watch_id: 7,
            ..create_req(b"other")
        },
    );
    let [_, resp] = h.take(&c).try_into().unwrap();
    assert_eq!(
        (resp.watch_id, resp.created, resp.canceled),
        (-1, true, true)
    );
    assert_eq!(resp.cancel_reason, ERR_DUPLICATE_ID);
    h.put("other", "v");
    assert!(h.take(&c).is_empty());
    assert_eq!(h.hub.watcher_count(), 1);
}

#[test]
fn empty_range_and_negative_start_are_refused() {
    let h = h();
    let c = h.open();
    h.create(&c, range_req(b"b", b"a"));
    h.create(
        &c,
        WatchCreateRequest {
            start_revision: -1,
            ..create_req(b"a")
        },
    );
    let [empty, negative] = h.take(&c).try_into().unwrap();
    assert_eq!(
        (empty.watch_id, empty.created, empty.canceled),
        (-1, true, true)
    );
    assert_eq!(empty.cancel_reason, ERR_EMPTY_RANGE);
    assert_eq!(
        (negative.watch_id, negative.created, negative.canceled),
        (-1, true, true)
    );
    assert_eq!(negative.cancel_reason, ERR_COMPACTED);
    assert_eq!(h.hub.watcher_count(), 0);
}

#[test]
fn cancel_answers_canceled_and_stops_delivery() {
    let h = h();
    let c = h.open();
    h.create(&c, create_req(b"k"));
    h.take(&c);
    h.hub.cancel(c.stream, 0);
    let [resp] = h.take(&c).try_into().unwrap();
    assert!(resp.canceled && resp.watch_id == 0 && !resp.created);
    assert_eq!(resp.header.unwrap().revision, h.fake.revision());
    h.put("k", "v");
    assert!(h.take(&c).is_empty());
    h.hub.cancel(c.stream, 0); // unknown id: no answer, as etcd
    assert!(h.take(&c).is_empty());
    assert_eq!(h.hub.watcher_count(), 0);
}

#[test]
fn cancel_drops_the_events_not_yet_sent() {
    let h = h();
    let c = h.open();
    h.create(&c, create_req(b"k"));
    h.take(&c);
    h.put("k", "v");
    h.hub.cancel(c.stream, 0);
    let [resp] = h.take(&c).try_into().unwrap();
    assert!(resp.canceled && resp.events.is_empty());
}

#[test]
fn closing_the_stream_drops_its_watchers() {
    let h = h();
    let (c, other) = (h.open(), h.open());
    h.create(&c, create_req(b"k"));
    h.create(&c, range_req(b"a", b"z"));
    h.create(&other, create_req(b"k"));
    assert_eq!(h.hub.watcher_count(), 3);
    h.hub.close_stream(c.stream);
    assert_eq!(h.hub.watcher_count(), 1);
    h.take(&other);
    h.put("k", "v");
    assert!(h.take(&c).is_empty());
    assert_eq!(h.take(&other).len(), 1);
}

#[test]
fn prev_kv_is_read_only_while_a_watcher_wants_it() {
    let h = h();
    let c = h.open();
    assert!(!h.hub.wants_prev_kv());
    h.create(&c, create_req(b"k"));
    assert!(!h.hub.wants_prev_kv());
    h.create(
        &c,
        WatchCreateRequest {
            prev_kv: true,
            ..create_req(b"k")
        },
    );
    assert!(h.hub.wants_prev_kv());
    h.hub.cancel(c.stream, 1);
    assert!(!h.hub.wants_prev_kv());
    h.create(
        &c,
        WatchCreateRequest {
            prev_kv: true,
            ..create_req(b"k")
        },
    );
    h.hub.close_stream(c.stream);
    assert!(!h.hub.wants_prev_kv());
}

// -- live events ----------------------------------------------------------------

#[test]
fn event_on_watched_key_is_delivered() {
    let h = h();
    let c = h.open();
    h.create(&c, create_req(b"foo"));
    h.take(&c);
    let rev = h.put("foo", "bar");
    let [resp] = h.take(&c).try_into().unwrap();
    assert_eq!(resp.watch_id, 0);
    assert_eq!(resp.header.unwrap().revision, rev);
    let [ev] = resp.events.try_into().unwrap();
    let kv = ev.kv.unwrap();
    assert_eq!(ev.r#type, EventType::Put as i32);
    assert_eq!(
        (kv.key, kv.value, kv.mod_revision),
        (b"foo".to_vec(), b"bar".to_vec(), rev)
    );
}

#[test]
fn event_on_other_key_is_not_delivered() {
    let h = h();
    let c = h.open();
    h.create(&c, create_req(b"foo"));
    h.take(&c);
    h.put("fo", "v");
    h.put("foo1", "v");
    assert!(h.take(&c).is_empty());
}

#[test]
fn prefix_range_delivers_only_keys_under_the_prefix() {
    let h = h();
    let c = h.open();
    h.create(&c, range_req(b"app/", b"app0"));
    h.take(&c);
    for key in ["app", "app/", "app/x", "app/y/z", "app0", "b"] {
        h.put(key, "v");
    }
    let got: Vec<Vec<u8>> = h.take(&c).iter().flat_map(keys).collect();
    assert_eq!(
        got,
        vec![b"app/".to_vec(), b"app/x".to_vec(), b"app/y/z".to_vec()]
    );
}

#[test]
fn from_key_range_delivers_keys_at_or_after_the_key() {
    let h = h();
    let c = h.open();
    h.create(&c, range_req(b"m", b"\0"));
    h.take(&c);
    for key in [&b"a"[..], b"l\xff", b"m", b"m1", b"zzz"] {
        h.put_bytes(key);
    }
    let got: Vec<Vec<u8>> = h.take(&c).iter().flat_map(keys).collect();
    assert_eq!(got, vec![b"m".to_vec(), b"m1".to_vec(), b"zzz".to_vec()]);
}

#[test]
fn a_batch_of_many_revisions_gives_one_response_per_watcher() {
    let h = h();
    let c = h.open();
    h.create(&c, range_req(b"k", b"l"));
    h.take(&c);
    // One applied batch: three revisions, one of them elsewhere.
    let mut events = h.apply(vec![put_op("k1", "1"), put_op("k2", "2")]);
    events.extend(h.apply(vec![put_op("x", "1")]));
    events.extend(h.apply(vec![del_op("k1", "")]));
    let last = events.last().unwrap().kv.as_ref().unwrap().mod_revision;
    h.notify(events);
    let [resp] = h.take(&c).try_into().unwrap();
    assert_eq!(resp.header.unwrap().revision, last);
    assert_eq!(
        keys(&resp),
        vec![b"k1".to_vec(), b"k2".to_vec(), b"k1".to_vec()]
    );
    assert_eq!(
        revs(std::slice::from_ref(&resp)),
        vec![last - 2, last - 2, last]
    );
    assert_eq!(resp.events[2].r#type, EventType::Delete as i32);
}

#[test]
fn events_queued_while_the_client_does_not_read_are_packed_in_one_response() {
    let h = h();
    let c = h.open();
    h.create(&c, range_req(b"k", b"l"));
    h.take(&c);
    let written: Vec<i64> = (0..30).map(|i| h.put(&format!("k{i}"), "v")).collect();
    let resps = h.take(&c);
    assert_eq!(resps.len(), 1);
    assert_eq!(revs(&resps), written);
    assert_eq!(
        resps[0].header.as_ref().unwrap().revision,
        *written.last().unwrap()
    );
}

#[test]
fn packed_responses_stay_under_the_size_limit_and_keep_revisions_whole() {
    let h = h_with(WatchSettings {
        max_response_bytes: 2000,
        ..settings()
    });
    let c = h.open();
    h.create(&c, range_req(b"k", b"l"));
    h.take(&c);
    let big = "x".repeat(300);
    let written: Vec<i64> = (0..10)
        .map(|i| {
            h.write(vec![
                put_op(&format!("k{i}a"), &big),
                put_op(&format!("k{i}b"), &big),
            ])
        })
        .collect();
    let resps = h.take(&c);
    assert!(resps.len() > 1);
    for r in &resps {
        assert!(r.encoded_len() <= 2000, "{}", r.encoded_len());
        assert_eq!(r.events.len() % 2, 0, "a revision was split");
        assert!(!r.fragment);
    }
    let want: Vec<i64> = written.iter().flat_map(|&r| [r, r]).collect();
    assert_eq!(revs(&resps), want);
}

#[test]
fn noput_filter_drops_puts_and_nodelete_drops_deletes() {
    let h = h();
    let c = h.open();
    h.create(
        &c,
        WatchCreateRequest {
            filters: vec![NOPUT],
            ..create_req(b"k")
        },
    );
    h.create(
        &c,
        WatchCreateRequest {
            filters: vec![NODELETE],
            ..create_req(b"k")
        },
    );
    h.take(&c);
    h.put("k", "v");
    let [put] = h.take(&c).try_into().unwrap();
    assert_eq!(put.watch_id, 1);
    assert_eq!(put.events[0].r#type, EventType::Put as i32);
    h.delete("k");
    let [del] = h.take(&c).try_into().unwrap();
    assert_eq!(del.watch_id, 0);
    assert_eq!(del.events[0].r#type, EventType::Delete as i32);
}

#[test]
fn unknown_filters_are_ignored() {
    let h = h();
    let c = h.open();
    h.create(
        &c,
        WatchCreateRequest {
            filters: vec![7, -1],
            ..create_req(b"k")
        },
    );
    h.take(&c);
    let put = h.put("k", "v");
    let del = h.delete("k");
    assert_eq!(revs(&event_responses(h.take(&c))), vec![put, del]);
}

#[test]
fn prev_kv_is_sent_only_when_asked() {
    let h = h();
    h.put("k", "old");
    let c = h.open();
    h.create(
        &c,
        WatchCreateRequest {
            prev_kv: true,
            ..create_req(b"k")
        },
    );
    h.create(&c, create_req(b"k"));
    h.take(&c);
    h.put("k", "new");
    let resps = h.take(&c);
    let with = resps.iter().find(|r| r.watch_id == 0).unwrap();
    let without = resps.iter().find(|r| r.watch_id == 1).unwrap();
    assert_eq!(with.events[0].prev_kv.as_ref().unwrap().value, b"old");
    assert!(without.events[0].prev_kv.is_none());
    assert_eq!(without.events[0].kv.as_ref().unwrap().value, b"new");
}

#[test]
fn a_prev_kv_watcher_reads_back_a_batch_applied_without_prev_kv() {
    let h = h();
    h.put("k", "old");
    let c = h.open();
    h.create(
        &c,
        WatchCreateRequest {
            prev_kv: true,
            ..create_req(b"k")
        },
    );
    h.take(&c);
    // A batch applied as if no watcher had wanted prev_kv yet.
    let mut s = h.fake.store.lock().unwrap();
    let (_, mut events) = s
        .txn(&txn(vec![], vec![put_op("k", "new")], vec![]), &any_lease)
        .unwrap();
    drop(s);
    events.iter_mut().for_each(|e| e.prev_kv = None);
    h.hub.notify(events, false);
    let resps = h.take_all(&c);
    assert_eq!(resps[0].events[0].prev_kv.as_ref().unwrap().value, b"old");
}

#[test]
fn future_start_revision_waits_for_it() {
    let h = h();
    let c = h.open();
    h.create(
        &c,
        WatchCreateRequest {
            start_revision: h.fake.revision() + 2,
            ..create_req(b"k")
        },
    );
    h.take(&c);
    h.put("k", "too-early");
    assert!(h.take_all(&c).is_empty());
    let rev = h.put("k", "on-time");
    assert_eq!(revs(&h.take_all(&c)), vec![rev]);
}

#[test]
fn fragmenting_splits_a_large_batch_for_watchers_that_ask() {
    let h = h_with(WatchSettings {
        max_response_bytes: 300,
        ..settings()
    });
    let c = h.open();
    h.create(
        &c,
        WatchCreateRequest {
            fragment: true,
            ..range_req(b"k", b"l")
        },
    );
    h.create(&c, range_req(b"k", b"l"));
    h.take(&c);
    let big = "x".repeat(100);
    let ops: Vec<RequestOp> = (0..5).map(|i| put_op(&format!("k{i}"), &big)).collect();
    h.write(ops);
    let resps = h.take(&c);
    let frags: Vec<&WatchResponse> = resps.iter().filter(|r| r.watch_id == 0).collect();
    let whole: Vec<&WatchResponse> = resps.iter().filter(|r| r.watch_id == 1).collect();
    assert!(frags.len() > 1);
    let flags: Vec<bool> = frags.iter().map(|r| r.fragment).collect();
    let mut want = vec![true; frags.len() - 1];
    want.push(false);
    assert_eq!(flags, want);
    assert!(frags.iter().all(|r| r.encoded_len() < 300));
    let got: Vec<Vec<u8>> = frags.iter().flat_map(|r| keys(r)).collect();
    assert_eq!(
        got,
        (0..5)
            .map(|i| format!("k{i}").into_bytes())
            .collect::<Vec<_>>()
    );
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].events.len(), 5);
    assert!(!whole[0].fragment);
}

// -- slow clients ---------------------------------------------------------------

fn small_buffers() -> WatchSettings {
    WatchSettings {
        stream_buffer_bytes: 4096,
        max_response_bytes: 2048,
        ..settings()
    }
}

#[test]
fn a_client_that_does_not_read_stops_being_fed_and_others_are_not_held_up() {
    let h = h_with(small_buffers());
    let (slow, live) = (h.open(), h.open());
    h.create(&slow, range_req(b"k", b"l"));
    h.create(&live, range_req(b"k", b"l"));
    h.take(&slow);
    h.take(&live);
    let value = "v".repeat(200);
    let mut written = Vec::new();
    for i in 0..100 {
        written.push(h.put(&format!("k{i}"), &value));
        assert_eq!(revs(&h.take(&live)), vec![*written.last().unwrap()]);
        h.catch_up();
    }
    // What the slow one has queued stays near its buffer's size.
    assert!(
        slow.out.queued_bytes() < 4096 + 1024,
        "{}",
        slow.out.queued_bytes()
    );
    assert_eq!(h.hub.state_of(slow.stream, 0), Some(hub::State::Unsynced));
    // Once it reads, it gets everything, once, in order, and is live again.
    let got = h.take_all(&slow);
    assert_eq!(revs(&got), written);
    assert_eq!(h.hub.state_of(slow.stream, 0), Some(hub::State::Synced));
    let rev = h.put("k-after", "v");
    assert_eq!(revs(&h.take(&slow)), vec![rev]);
}

#[test]
fn a_slow_client_a_little_behind_catches_up_from_memory() {
    let h = h_with(small_buffers());
    let slow = h.open();
    h.create(&slow, range_req(b"k", b"l"));
    h.take(&slow);
    let value = "v".repeat(200);
    let written: Vec<i64> = (0..40).map(|i| h.put(&format!("k{i}"), &value)).collect();
    let reads = h.fake.reads.load(Ordering::SeqCst);
    assert_eq!(revs(&h.take_all(&slow)), written);
    assert_eq!(
        h.fake.reads.load(Ordering::SeqCst),
        reads,
        "read the backend"
    );
}

#[test]
fn a_slow_client_far_behind_catches_up_from_the_backend() {
    let h = h_with(WatchSettings {
        ring_bytes: 2048,
        catch_up_events: 7,
        ..small_buffers()
    });
    let slow = h.open();
    h.create(&slow, range_req(b"k", b"l"));
    h.take(&slow);
    let value = "v".repeat(200);
    let written: Vec<i64> = (0..200).map(|i| h.put(&format!("k{i}"), &value)).collect();
    assert_eq!(revs(&h.take_all(&slow)), written);
    assert!(h.fake.reads.load(Ordering::SeqCst) > 0);
}

#[test]
fn a_slow_client_whose_next_revision_was_compacted_is_canceled_with_etcds_answer() {
    let h = h_with(WatchSettings {
        ring_bytes: 1024,
        ..small_buffers()
    });
    let slow = h.open();
    h.create(&slow, range_req(b"k", b"l"));
    h.take(&slow);
    let value = "v".repeat(200);
    for i in 0..100 {
        h.put(&format!("k{i}"), &value);
    }
    let rev = h.fake.revision();
    h.fake.store.lock().unwrap().compact(rev - 5).unwrap();
    let got = h.take_all(&slow);
    let last = got.last().unwrap();
    assert!(last.canceled && last.events.is_empty());
    assert_eq!(last.compact_revision, rev - 5);
    assert_eq!(last.header.as_ref().unwrap().revision, 0);
    // What it had been given before is in order and whole.
    let r = revs(&got);
    assert!(r.windows(2).all(|w| w[0] < w[1]));
    h.put("k", "v");
    assert!(h.take_all(&slow).is_empty());
}

// -- catch-up -------------------------------------------------------------------

#[test]
fn catch_up_from_old_revision_sends_history_then_live_events() {
    let h = h();
    let r1 = h.put("k", "1");
    h.put("other", "v");
    let r3 = h.delete("k");
    let c = h.open();
    h.create(
        &c,
        WatchCreateRequest {
            start_revision: r1,
            ..create_req(b"k")
        },
    );
    let [created, history] = h.take_all(&c).try_into().unwrap();
    assert!(created.created);
    assert_eq!(created.header.unwrap().revision, r3);
    assert_eq!(revs(std::slice::from_ref(&history)), vec![r1, r3]);
    assert_eq!(history.header.unwrap().revision, r3);
    let rev = h.put("k", "live");
    assert_eq!(revs(&h.take(&c)), vec![rev]);
}

#[test]
fn catch_up_reads_in_chunks_without_splitting_a_revision() {
    let h = h_with(WatchSettings {
        catch_up_events: 3,
        ..settings()
    });
    for i in 0..4 {
        h.write(vec![
            put_op(&format!("k{i}"), "a"),
            put_op(&format!("k{i}x"), "b"),
        ]);
    }
    let c = h.open();
    h.create(
        &c,
        WatchCreateRequest {
            start_revision: 1,
            ..range_req(b"k", b"l")
        },
    );
    let got = h.take_all(&c);
    assert_eq!(revs(&got), vec![2, 2, 3, 3, 4, 4, 5, 5]);
    assert!(h.fake.reads.load(Ordering::SeqCst) >= 2);
}

/// Writes applied (and handed to the hub) while a catch-up read is in
/// flight: each event reaches the watcher once, in order.
fn catch_up_race(snapshot_first: bool) {
    let h = h();
    let history: Vec<i64> = (0..3).map(|i| h.put(&format!("k{i}"), "v")).collect();
    let gate = Arc::new(Gate {
        snapshot_first,
        ..Gate::default()
    });
    *h.fake.gate.lock().unwrap() = Some(gate.clone());
    let c = h.open();
    h.create(
        &c,
        WatchCreateRequest {
            start_revision: history[0],
            ..range_req(b"k", b"l")
        },
    );
    let hub = h.hub.clone();
    let worker = std::thread::spawn(move || while sync::step(&hub) {});
    gate.wait_reading();
    let during: Vec<i64> = (3..6).map(|i| h.put(&format!("k{i}"), "v")).collect();
    gate.release();
    worker.join().unwrap();
    let after: Vec<i64> = (6..8).map(|i| h.put(&format!("k{i}"), "v")).collect();
    let got = h.take_all(&c);
    assert!(got[0].created);
    let want: Vec<i64> = [history, during, after].concat();
    assert_eq!(revs(&got), want);
}

#[test]
fn catch_up_then_live_events_with_no_gap_or_duplicate() {
    // The read saw none of the writes made while it was in flight.
    catch_up_race(true);
}

#[test]
fn catch_up_then_live_events_when_the_read_saw_the_concurrent_writes() {
    // The read saw them too: each must still come once.
    catch_up_race(false);
}

#[test]
fn compacted_start_cancels_with_compact_revision() {
    let h = h();
    for _ in 0..5 {
        h.put("k", "v");
    }
    h.fake.store.lock().unwrap().compact(4).unwrap();
    let c = h.open();
    h.create(
        &c,
        WatchCreateRequest {
            start_revision: 2,
            ..create_req(b"k")
        },
    );
    let [created, canceled] = h.take_all(&c).try_into().unwrap();
    assert!(created.created && !created.canceled && created.watch_id == 0);
    assert!(canceled.canceled && !canceled.created);
    assert_eq!((canceled.watch_id, canceled.compact_revision), (0, 4));
    assert_eq!(canceled.cancel_reason, "");
    assert_eq!(canceled.header.unwrap().revision, 0);
    h.put("k", "v");
    assert!(h.take_all(&c).is_empty());
    // As etcd: the id stays taken until the client cancels it.
    h.hub.cancel(c.stream, 0);
    let [resp] = h.take(&c).try_into().unwrap();
    assert!(resp.canceled && resp.watch_id == 0);
}

#[test]
fn a_start_at_the_compact_revision_is_served() {
    let h = h();
    for _ in 0..5 {
        h.put("k", "v");
    }
    h.fake.store.lock().unwrap().compact(4).unwrap();
    let c = h.open();
    h.create(
        &c,
        WatchCreateRequest {
            start_revision: 4,
            ..create_req(b"k")
        },
    );
    assert_eq!(revs(&h.take_all(&c)), vec![4, 5, 6]);
}

#[test]
fn revisions_a_snapshot_skipped_are_read_from_the_new_state() {
    let h = h();
    let c = h.open();
    h.create(&c, create_req(b"k"));
    h.take(&c);
    // Applied without reaching the hub, as when a snapshot replaces the state.
    let skipped = h.apply(vec![put_op("k", "in-snapshot")])[0]
        .kv
        .as_ref()
        .unwrap()
        .mod_revision;
    h.hub.snapshot_installed();
    let rev = h.put("k", "next");
    assert_eq!(revs(&h.take_all(&c)), vec![skipped, rev]);
}

// -- progress -------------------------------------------------------------------

#[test]
fn progress_request_answers_watch_id_minus_one_when_all_synced() {
    let h = h();
    h.put("a", "v");
    let c = h.open();
    h.hub.progress_all(c.stream);
    assert!(h.take(&c).is_empty()); // no watchers: nothing, as etcd 3.5
    h.create(&c, create_req(b"k"));
    h.take(&c);
    h.put("b", "v");
    h.hub.progress_all(c.stream);
    let [resp] = h.take(&c).try_into().unwrap();
    assert_eq!(resp.watch_id, -1);
    assert!(resp.events.is_empty() && !resp.created);
    assert_eq!(resp.header.unwrap().revision, h.fake.revision());
}

#[test]
fn progress_request_is_ignored_while_a_watcher_catches_up() {
    let h = h();
    h.put("k", "v");
    let c = h.open();
    h.create(
        &c,
        WatchCreateRequest {
            start_revision: 1,
            ..create_req(b"k")
        },
    );
    h.take(&c);
    h.hub.progress_all(c.stream);
    assert!(h.take(&c).is_empty());
    h.catch_up();
    h.take(&c);
    h.hub.progress_all(c.stream);
    let ids: Vec<i64> = h.take(&c).iter().map(|r| r.watch_id).collect();
    assert_eq!(ids, vec![-1]);
}

#[test]
fn progress_response_follows_the_events_queued_before_it() {
    let h = h();
    let c = h.open();
    h.create(&c, create_req(b"k"));
    h.take(&c);
    let r1 = h.put("k", "1");
    h.hub.progress_all(c.stream);
    let r2 = h.put("k", "2");
    let got = h.take(&c);
    let order: Vec<(i64, Vec<i64>)> = got
        .iter()
        .map(|r| (r.watch_id, revs(std::slice::from_ref(r))))
        .collect();
    assert_eq!(order, vec![(0, vec![r1]), (-1, vec![]), (0, vec![r2])]);
}

#[test]
fn progress_notify_goes_to_quiet_synced_watchers_that_asked() {
    let h = h();
    let c = h.open();
    h.create(
        &c,
        WatchCreateRequest {
            progress_notify: true,
            ..create_req(b"k")
        },
    );
    h.create(&c, create_req(b"k"));
    h.take(&c);
    assert!(h.hub.progress_tick(c.stream));
    let [resp] = h.take(&c).try_into().unwrap();
    assert_eq!(resp.watch_id, 0);
    assert!(resp.events.is_empty());
    assert_eq!(resp.header.unwrap().revision, h.fake.revision());
    // Events since the last tick: no notification this time.
    h.put("k", "v");
    h.take(&c);
    h.hub.progress_tick(c.stream);
    assert!(h.take(&c).is_empty());
    h.hub.progress_tick(c.stream);
    assert_eq!(h.take(&c).len(), 1);
    h.hub.close_stream(c.stream);
    assert!(!h.hub.progress_tick(c.stream));
}

#[test]
fn progress_notify_never_claims_a_revision_before_a_future_start() {
    let h = h();
    let c = h.open();
    h.create(
        &c,
        WatchCreateRequest {
            progress_notify: true,
            start_revision: h.fake.revision() + 10,
            ..create_req(b"k")
        },
    );
    h.take(&c);
    h.hub.progress_tick(c.stream);
    assert!(h.take(&c).is_empty());
}

// -- the applier's thread -----------------------------------------------------------

#[test]
fn many_watchers_on_many_streams_get_every_event_once_in_order_under_a_running_sync_worker() {
    let h = h_with(WatchSettings {
        stream_buffer_bytes: 8192,
        ring_bytes: 16 << 10,
        catch_up_events: 50,
        ..settings()
    });
    let hub = h.hub.clone();
    let worker = std::thread::spawn(move || sync::run(hub));
    let clients: Vec<Client> = (0..8).map(|_| h.open()).collect();
    for (i, c) in clients.iter().enumerate() {
        h.create(
            c,
            WatchCreateRequest {
                start_revision: if i % 2 == 0 { 0 } else { 1 },
                ..range_req(b"k", b"l")
            },
        );
    }
    let start = h.fake.revision();
    let value = "v".repeat(100);
    let mut got: Vec<Vec<i64>> = vec![Vec::new(); clients.len()];
    for round in 0..50 {
        for j in 0..10 {
            h.put(&format!("k{round}-{j}"), &value);
        }
        // Some clients read every round, some rarely.
        for (i, c) in clients.iter().enumerate() {
            if round % (i + 1) == 0 {
                got[i].extend(revs(&h.take(c)));
            }
        }
    }
    let end = h.fake.revision();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for (i, c) in clients.iter().enumerate() {
        let want_from = if i % 2 == 0 { start + 1 } else { 2 };
        let want: Vec<i64> = (want_from..=end).collect();
        while got[i].len() < want.len() && std::time::Instant::now() < deadline {
            got[i].extend(revs(&h.take(c)));
            h.hub.wake_sync();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(got[i], want, "client {i}");
    }
    h.hub.stop();
    worker.join().unwrap();
}
