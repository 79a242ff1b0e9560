//! One Watch stream's send buffer: what the hub has for the client and the
//! gRPC side has not sent yet.
//!
//! Events for a watcher are packed as they arrive: while the client has not
//! taken a watcher's last response, the next revisions join it, up to the
//! response size limit (never splitting a revision), so a client that falls
//! behind gets few large responses instead of many small ones. Responses
//! without events (created, canceled, progress) are barriers: no event
//! queued after one is sent before it.
//!
//! The buffer's size is bounded by the hub, which stops feeding a watcher
//! whose stream is full (it becomes unsynced and catches up later).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::sync::Notify;
use tonic::Status;

use super::encoded::{EncodedEvent, RESPONSE_OVERHEAD};
use super::index::WatcherKey;

/// What the response of one watcher's events needs besides them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventsMeta {
    pub watcher: WatcherKey,
    pub watch_id: i64,
    pub prev_kv: bool,
    pub fragment: bool,
}

/// One response's worth of events for one watcher.
#[derive(Debug)]
pub struct EventsOut {
    pub meta: EventsMeta,
    /// The header's revision: the watcher has been given every event up to
    /// it.
    pub revision: i64,
    pub events: Vec<EncodedEvent>,
    /// The events' encoded size (as `events` fields).
    pub size: usize,
}

#[derive(Debug)]
pub enum Out {
    Events(EventsOut),
    Control(Bytes),
}

#[derive(Default)]
struct Queue {
    entries: VecDeque<Option<Out>>,
    /// The sequence number of `entries[0]`.
    base: u64,
    /// The sequence number of the last control entry pushed, plus one.
    barrier: u64,
    /// Each watcher's last events entry: more events may join it while it
    /// is queued and no barrier follows it.
    open: HashMap<WatcherKey, u64>,
    /// The events' bytes queued.
    bytes: usize,
    controls: usize,
    /// A watcher of this stream waits for the buffer to drain.
    wanted: bool,
    /// The stream is over: nothing more is taken, and the client hears
    /// this status if one is given.
    ended: Option<Option<Status>>,
    waker: Option<Waker>,
}

impl Queue {
    fn seq_end(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    fn push(&mut self, out: Out) -> Option<Waker> {
        self.entries.push_back(Some(out));
        self.waker.take()
    }

    /// One revision's events for a watcher: into its open response if that
    /// stays within `max_bytes`, else in a new one.
    fn push_revision(
        &mut self,
        meta: EventsMeta,
        group: &[&EncodedEvent],
        size: usize,
        revision: i64,
        max_bytes: usize,
    ) {
        self.bytes += size;
        let open = self
            .open
            .get(&meta.watcher)
            .copied()
            .filter(|&seq| seq >= self.base && seq >= self.barrier);
        if let Some(seq) = open {
            let at = (seq - self.base) as usize;
            if let Some(Some(Out::Events(e))) = self.entries.get_mut(at) {
                if e.size + size + RESPONSE_OVERHEAD <= max_bytes {
                    e.events.extend(group.iter().map(|&ev| ev.clone()));
                    e.size += size;
                    e.revision = revision;
                    return;
                }
            }
        }
        let seq = self.seq_end();
        self.open.insert(meta.watcher, seq);
        self.entries.push_back(Some(Out::Events(EventsOut {
            meta,
            revision,
            events: group.iter().map(|&ev| ev.clone()).collect(),
            size,
        })));
    }
}

/// The send buffer of one stream, shared by the hub (which fills it) and
/// the gRPC answer stream (which empties it).
#[derive(Default)]
pub struct StreamOut {
    q: Mutex<Queue>,
    /// Woken when control responses are taken: the request side waits on it
    /// while too many are queued (a client that sends but never reads).
    pub drained: Notify,
    /// Woken when the stream ends.
    pub closed: Notify,
}

fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

impl StreamOut {
    pub fn new() -> StreamOut {
        StreamOut::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.q.lock().expect("stream queue poisoned")
    }

    pub fn push_control(&self, resp: Bytes) {
        let waker = {
            let mut q = self.lock();
            if q.ended.is_some() {
                return;
            }
            q.barrier = q.seq_end() + 1;
            q.controls += 1;
            q.push(Out::Control(resp))
        };
        wake(waker);
    }

    /// Queues a watcher's events (in revision order), one revision at a
    /// time while the buffer holds less than `limit` bytes; the whole lot
    /// becomes visible to the sender at once. Each revision joins the
    /// watcher's queued response if that stays within `max_bytes`. When
    /// every revision went in, the watcher has been given everything up to
    /// `upto`: the last response claims it. Otherwise returns the first
    /// revision left out (and remembers that a watcher waits for room).
    pub fn push_events(
        &self,
        meta: EventsMeta,
        events: &[&EncodedEvent],
        upto: i64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(), i64> {
        let mut result = Ok(());
        let waker = {
            let mut q = self.lock();
            if q.ended.is_some() {
                return Ok(());
            }
            let mut i = 0;
            while i < events.len() {
                let rev = events[i].rev;
                let mut j = i;
                let mut size = 0;
                while j < events.len() && events[j].rev == rev {
                    size += events[j].field_len(meta.prev_kv);
                    j += 1;
                }
                if q.bytes >= limit {
                    q.wanted = true;
                    result = Err(rev);
                    break;
                }
                let claim = if j == events.len() { upto } else { rev };
                q.push_revision(meta, &events[i..j], size, claim, max_bytes);
                i = j;
            }
            q.waker.take()
        };
        wake(waker);
        result
    }

    /// Forgets a watcher's queued events (it was canceled).
    pub fn drop_watcher(&self, watcher: WatcherKey) {
        let mut q = self.lock();
        if q.open.remove(&watcher).is_none() {
            return;
        }
        let mut freed = 0;
        for slot in q.entries.iter_mut() {
            if matches!(slot, Some(Out::Events(e)) if e.meta.watcher == watcher) {
                if let Some(Out::Events(e)) = slot.take() {
                    freed += e.size;
                }
            }
        }
        q.bytes -= freed;
    }

    /// The events' bytes waiting to be sent.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    pub fn queued_controls(&self) -> usize {
        self.lock().controls
    }

    /// Whether the buffer holds less than `limit` bytes of events; if not,
    /// remembers that a watcher waits for it to drain.
    pub fn has_room(&self, limit: usize) -> bool {
        let mut q = self.lock();
        if q.bytes < limit {
            return true;
        }
        q.wanted = true;
        false
    }

    /// Ends the stream: the client gets `status` (OK when None) after
    /// nothing more.
    pub fn end(&self, status: Option<Status>) {
        let waker = {
            let mut q = self.lock();
            if q.ended.is_some() {
                return;
            }
            q.entries.clear();
            q.open.clear();
            q.bytes = 0;
            q.controls = 0;
            q.ended = Some(status);
            q.waker.take()
        };
        wake(waker);
        self.drained.notify_waiters();
        self.closed.notify_waiters();
    }

    pub fn is_ended(&self) -> bool {
        self.lock().ended.is_some()
    }

    /// The next response to send. `Ready(Some(Err))` once for a stream
    /// ended with a status, `Ready(None)` when it is over. The bool says the
    /// buffer fell below `low` with a watcher waiting for room: the hub
    /// should look at its unsynced watchers.
    pub fn poll_take(
        &self,
        cx: &mut Context<'_>,
        low: usize,
    ) -> (Poll<Option<Result<Out, Status>>>, bool) {
        let mut q = self.lock();
        if let Some(ended) = &mut q.ended {
            return (Poll::Ready(ended.take().map(Err)), false);
        }
        while let Some(slot) = q.entries.pop_front() {
            let seq = q.base;
            q.base += 1;
            let Some(out) = slot else { continue };
            let mut control = false;
            match &out {
                Out::Events(e) => {
                    q.bytes -= e.size;
                    if q.open.get(&e.meta.watcher) == Some(&seq) {
                        q.open.remove(&e.meta.watcher);
                    }
                }
                Out::Control(_) => {
                    q.controls -= 1;
                    control = true;
                }
            }
            let room = q.wanted && q.bytes < low;
            if room {
                q.wanted = false;
            }
            drop(q);
            if control {
                self.drained.notify_waiters();
            }
            return (Poll::Ready(Some(Ok(out))), room);
        }
        q.waker = Some(cx.waker().clone());
        (Poll::Pending, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::mvccpb::{Event, KeyValue};
    use std::task::Waker;

    fn ev(key: &str, rev: i64, size: usize) -> EncodedEvent {
        EncodedEvent::new(&Event {
            r#type: 0,
            kv: Some(KeyValue {
                key: key.as_bytes().to_vec(),
                value: vec![b'v'; size],
                mod_revision: rev,
                ..Default::default()
            }),
            prev_kv: None,
        })
    }

    fn meta(watcher: WatcherKey) -> EventsMeta {
        EventsMeta {
            watcher,
            watch_id: watcher as i64,
            prev_kv: false,
            fragment: false,
        }
    }

    fn push(out: &StreamOut, m: EventsMeta, group: Vec<EncodedEvent>, rev: i64, max: usize) {
        let refs: Vec<&EncodedEvent> = group.iter().collect();
        out.push_events(m, &refs, rev, usize::MAX, max).unwrap();
    }

    #[test]
    fn revisions_stop_at_the_buffer_limit_and_say_where() {
        let out = StreamOut::new();
        let events: Vec<EncodedEvent> = (2..10).map(|rev| ev("a", rev, 100)).collect();
        let refs: Vec<&EncodedEvent> = events.iter().collect();
        // Each revision is ~115 bytes: one goes in while less than the limit
        // is queued, so the buffer overshoots by at most one revision.
        assert_eq!(out.push_events(meta(1), &refs, 9, 250, 1 << 20), Err(5));
        assert!(!out.has_room(250));
        let got = take_all(&out);
        assert_eq!(got.iter().flat_map(revs).collect::<Vec<_>>(), vec![2, 3, 4]);
        let Out::Events(e) = &got[0] else { panic!() };
        assert_eq!(e.revision, 4, "claims only what it holds");
    }

    fn take_all(out: &StreamOut) -> Vec<Out> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut got = Vec::new();
        while let (Poll::Ready(Some(Ok(o))), _) = out.poll_take(&mut cx, 0) {
            got.push(o);
        }
        got
    }

    fn revs(o: &Out) -> Vec<i64> {
        match o {
            Out::Events(e) => e.events.iter().map(|e| e.rev).collect(),
            Out::Control(_) => vec![],
        }
    }

    #[test]
    fn events_of_a_watcher_queued_meanwhile_go_in_one_response() {
        let out = StreamOut::new();
        for rev in 2..6 {
            push(&out, meta(1), vec![ev("a", rev, 10)], rev, 1 << 20);
            push(&out, meta(2), vec![ev("a", rev, 10)], rev, 1 << 20);
        }
        let got = take_all(&out);
        assert_eq!(got.len(), 2);
        assert_eq!(revs(&got[0]), vec![2, 3, 4, 5]);
        let Out::Events(e) = &got[0] else { panic!() };
        assert_eq!((e.meta.watcher, e.revision), (1, 5));
        assert_eq!(out.queued_bytes(), 0);
    }

    #[test]
    fn packing_stops_at_the_size_limit_between_revisions() {
        let out = StreamOut::new();
        for rev in 2..8 {
            push(
                &out,
                meta(1),
                vec![ev("a", rev, 100), ev("b", rev, 100)],
                rev,
                600,
            );
        }
        let got = take_all(&out);
        assert!(got.len() > 1);
        for o in &got {
            let Out::Events(e) = o else { panic!() };
            assert!(e.size + RESPONSE_OVERHEAD <= 600);
            assert_eq!(e.events.len() % 2, 0, "a revision was split");
        }
        let all: Vec<i64> = got.iter().flat_map(revs).collect();
        assert_eq!(all.len(), 12);
    }

    #[test]
    fn a_control_response_is_a_barrier_to_packing() {
        let out = StreamOut::new();
        push(&out, meta(1), vec![ev("a", 2, 1)], 2, 1 << 20);
        out.push_control(Bytes::from_static(b"progress"));
        push(&out, meta(1), vec![ev("a", 3, 1)], 3, 1 << 20);
        let got = take_all(&out);
        assert_eq!(got.len(), 3);
        assert_eq!(revs(&got[0]), vec![2]);
        assert!(matches!(&got[1], Out::Control(b) if &b[..] == b"progress"));
        assert_eq!(revs(&got[2]), vec![3]);
    }

    #[test]
    fn a_taken_response_takes_no_more_events() {
        let out = StreamOut::new();
        push(&out, meta(1), vec![ev("a", 2, 1)], 2, 1 << 20);
        assert_eq!(take_all(&out).len(), 1);
        push(&out, meta(1), vec![ev("a", 3, 1)], 3, 1 << 20);
        let got = take_all(&out);
        assert_eq!(revs(&got[0]), vec![3]);
    }

    #[test]
    fn dropping_a_watcher_frees_its_queued_events_only() {
        let out = StreamOut::new();
        push(&out, meta(1), vec![ev("a", 2, 50)], 2, 1 << 20);
        push(&out, meta(2), vec![ev("a", 2, 50)], 2, 1 << 20);
        let before = out.queued_bytes();
        out.drop_watcher(1);
        assert!(out.queued_bytes() < before);
        let got = take_all(&out);
        assert_eq!(got.len(), 1);
        let Out::Events(e) = &got[0] else { panic!() };
        assert_eq!(e.meta.watcher, 2);
    }

    #[test]
    fn room_is_reported_once_the_buffer_drains_below_the_low_mark() {
        let out = StreamOut::new();
        push(&out, meta(1), vec![ev("a", 2, 500)], 2, 1 << 20);
        assert!(!out.has_room(100));
        let mut cx = Context::from_waker(Waker::noop());
        let (item, room) = out.poll_take(&mut cx, 100);
        assert!(matches!(item, Poll::Ready(Some(Ok(_)))));
        assert!(room);
        assert!(out.has_room(100));
    }

    #[test]
    fn an_ended_stream_answers_its_status_then_ends() {
        let out = StreamOut::new();
        push(&out, meta(1), vec![ev("a", 2, 1)], 2, 1 << 20);
        out.end(Some(Status::internal("bad")));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(
            out.poll_take(&mut cx, 0).0,
            Poll::Ready(Some(Err(_)))
        ));
        assert!(matches!(out.poll_take(&mut cx, 0).0, Poll::Ready(None)));
        out.push_control(Bytes::from_static(b"late"));
        assert!(matches!(out.poll_take(&mut cx, 0).0, Poll::Ready(None)));
    }
}
