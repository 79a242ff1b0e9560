//! The watchable store: every Watch stream's watchers, fed by the applier.
//!
//! As etcd's watchable_store, a watcher is either
//! - **synced**: it has been given every event up to the newest revision
//!   the hub has seen, and sits in the index that each applied batch is
//!   matched against; or
//! - **unsynced**: it is behind (it started in the past, its client did not
//!   keep up, or a snapshot replaced the state under it) and the sync
//!   worker ([`super::sync`]) catches it up, from the ring of recent batches
//!   or from the backend, until it can join the synced ones.
//!
//! The applier hands each applied batch to [`WatchHub::notify`], which never
//! waits: a watcher whose stream's send buffer is full stops being fed
//! (etcd's victims) and becomes unsynced at the first revision it was not
//! given. Nothing is ever dropped, and the memory held for a slow client is
//! its buffer, whatever it is behind by.
//!
//! Lock order: the hub's lock, then a stream's buffer, then the state's
//! lock (through [`History`]); nothing takes the hub's lock while holding
//! the state's.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use super::encoded::{self, EncodedEvent, HeaderIds};
use super::index::{Index, WatchRange, WatcherKey};
use super::queue::{EventsMeta, EventsOut, StreamOut};
use super::ring::{Batch, Ring};
use crate::pb::etcdserverpb::watch_create_request::FilterType;
use crate::pb::etcdserverpb::{WatchCreateRequest, WatchResponse};
use crate::pb::mvccpb::Event;

pub const ERR_COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
pub const ERR_EMPTY_RANGE: &str = "mvcc: watcher range is empty";
pub const ERR_DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// clientv3's InvalidWatchID: progress for a whole stream, refused creates.
pub const INVALID_WATCH_ID: i64 = -1;

/// How the hub is sized and paced.
#[derive(Clone, Debug)]
pub struct WatchSettings {
    /// Responses are packed up to this size, and fragmented from it for
    /// watchers that ask (etcd: --max-request-bytes + 512 KiB).
    pub max_response_bytes: usize,
    /// Progress notifications to watchers that asked for them, plus up to
    /// 10% jitter (etcd's --experimental-watch-progress-notify-interval);
    /// zero: none.
    pub progress_interval: Duration,
    /// Events queued per stream before its watchers stop being fed.
    pub stream_buffer_bytes: usize,
    /// Recent batches kept for watchers a little behind.
    pub ring_bytes: usize,
    /// Events read from the backend per catch-up step.
    pub catch_up_events: usize,
    /// Unsynced watchers looked at per catch-up step (etcd's
    /// maxWatchersPerSync).
    pub watchers_per_sync: usize,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            max_response_bytes: (1536 + 512) * 1024,
            progress_interval: Duration::from_secs(600),
            stream_buffer_bytes: 4 << 20,
            ring_bytes: 16 << 20,
            catch_up_events: 1000,
            watchers_per_sync: 512,
        }
    }
}

/// Events of the past read from the backend.
pub struct HistoryRead {
    /// In revision order, whole revisions only.
    pub events: Vec<Event>,
    /// Every revision up to here was read (the read may have stopped before
    /// the store's revision, at its limit).
    pub complete_to: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReadError {
    /// The start is before this compaction revision.
    Compacted(i64),
    Failed(String),
}

/// The store as the hub sees it: where the past comes from.
pub trait History: Send + Sync {
    /// The store's revision now.
    fn revision(&self) -> i64;
    fn term(&self) -> u64;
    /// The events at revisions `>= from` in `range` (every key when None),
    /// at most about `max` (never part of a revision), with prev_kv when
    /// `with_prev`.
    fn events(
        &self,
        range: Option<&WatchRange>,
        from: i64,
        max: usize,
        with_prev: bool,
    ) -> Result<HistoryRead, ReadError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Synced,
    Unsynced,
    /// Canceled by the server (compacted, or history unreadable): it keeps
    /// its id until the client cancels it, and gets nothing more.
    Done,
}

pub(super) struct Watcher {
    pub out: Arc<StreamOut>,
    pub meta: EventsMeta,
    pub range: WatchRange,
    pub no_put: bool,
    pub no_delete: bool,
    pub progress_notify: bool,
    /// No events were sent since the last progress tick.
    pub progress_due: bool,
    /// The first revision not given to it yet.
    pub next_rev: i64,
    /// No progress notification may claim a revision below this one (its
    /// creation revision, or its start revision if later).
    pub floor: i64,
    pub state: State,
    /// Scratch space of `notify`: this batch's events for it.
    hits: Vec<u32>,
}

impl Watcher {
    pub fn wants(&self, ev: &EncodedEvent) -> bool {
        !(ev.delete && self.no_delete || !ev.delete && self.no_put)
    }
}

struct StreamWatchers {
    out: Arc<StreamOut>,
    ids: HashMap<i64, WatcherKey>,
    next_id: i64,
}

/// Slots for watchers, reused once freed.
#[derive(Default)]
pub(super) struct Slab {
    slots: Vec<Option<Watcher>>,
    free: Vec<WatcherKey>,
    len: usize,
}

impl Slab {
    fn insert(&mut self, make: impl FnOnce(WatcherKey) -> Watcher) -> WatcherKey {
        let key = match self.free.pop() {
            Some(k) => k,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as WatcherKey
            }
        };
        self.slots[key as usize] = Some(make(key));
        self.len += 1;
        key
    }

    fn remove(&mut self, key: WatcherKey) -> Option<Watcher> {
        let w = self.slots.get_mut(key as usize)?.take()?;
        self.free.push(key);
        self.len -= 1;
        Some(w)
    }

    pub fn get(&self, key: WatcherKey) -> Option<&Watcher> {
        self.slots.get(key as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, key: WatcherKey) -> Option<&mut Watcher> {
        self.slots.get_mut(key as usize)?.as_mut()
    }
}

pub(super) struct HubState {
    pub watchers: Slab,
    pub synced: Index,
    pub unsynced: BTreeSet<WatcherKey>,
    streams: HashMap<u64, StreamWatchers>,
    next_stream: u64,
    /// Every event up to this revision has been offered to the synced
    /// watchers.
    pub notified: i64,
    pub ring: Ring,
    /// Where the next catch-up step starts looking among the unsynced.
    pub cursor: WatcherKey,
}

impl HubState {
    /// Moves a synced watcher to the unsynced ones, to be given revisions
    /// from `from` on.
    pub fn unsync(&mut self, key: WatcherKey, from: i64) {
        let Some(w) = self.watchers.get_mut(key) else {
            return;
        };
        w.next_rev = w.next_rev.max(from);
        if w.state == State::Synced {
            self.synced.remove(&w.range, key);
            w.state = State::Unsynced;
            self.unsynced.insert(key);
        }
    }

    /// Moves an unsynced watcher that has every event up to `notified` to
    /// the synced ones.
    pub fn sync(&mut self, key: WatcherKey) {
        let Some(w) = self.watchers.get_mut(key) else {
            return;
        };
        if w.state == State::Unsynced {
            w.state = State::Synced;
            self.unsynced.remove(&key);
            self.synced.insert(&w.range, key);
        }
    }
}

pub struct WatchHub {
    state: Mutex<HubState>,
    pub(super) history: Arc<dyn History>,
    ids: HeaderIds,
    pub(super) settings: WatchSettings,
    /// Watchers that want prev_kv: while there are any, the applier reads
    /// the versions each change replaces.
    prev_kv_watchers: AtomicUsize,
    /// Watchers on open streams (the applier skips encoding with none).
    count: AtomicUsize,
    wake: Mutex<bool>,
    wake_cond: Condvar,
    stopped: AtomicBool,
}

impl WatchHub {
    pub fn new(history: Arc<dyn History>, ids: HeaderIds, settings: WatchSettings) -> WatchHub {
        let rev = history.revision();
        WatchHub {
            state: Mutex::new(HubState {
                watchers: Slab::default(),
                synced: Index::default(),
                unsynced: BTreeSet::new(),
                streams: HashMap::new(),
                next_stream: 1,
                notified: rev,
                ring: Ring::new(rev, settings.ring_bytes),
                cursor: 0,
            }),
            history,
            ids,
            settings,
            prev_kv_watchers: AtomicUsize::new(0),
            count: AtomicUsize::new(0),
            wake: Mutex::new(false),
            wake_cond: Condvar::new(),
            stopped: AtomicBool::new(false),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().expect("watch hub poisoned")
    }

    pub fn settings(&self) -> &WatchSettings {
        &self.settings
    }

    /// Whether applying should read the versions changes replace.
    pub fn wants_prev_kv(&self) -> bool {
        self.prev_kv_watchers.load(Ordering::SeqCst) > 0
    }

    /// Watchers on open streams.
    pub fn watcher_count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// The buffer level under which a stream takes catch-up events again.
    pub fn low_water(&self) -> usize {
        self.settings.stream_buffer_bytes / 2
    }

    fn header_at(&self, revision: i64) -> Option<crate::pb::etcdserverpb::ResponseHeader> {
        Some(self.ids.header(revision, self.history.term()))
    }

    fn control(&self, revision: i64, resp: WatchResponse) -> Bytes {
        encoded::control(WatchResponse {
            header: self.header_at(revision),
            ..resp
        })
    }

    /// The responses one queued events entry is sent as.
    pub fn responses(&self, e: &EventsOut) -> Vec<Bytes> {
        let header = self.ids.header(e.revision, self.history.term());
        encoded::event_responses(
            &header,
            e.meta.watch_id,
            e.meta.prev_kv,
            e.meta.fragment,
            &e.events,
            self.settings.max_response_bytes,
        )
    }

    // -- streams -------------------------------------------------------------

    pub fn open_stream(&self) -> (u64, Arc<StreamOut>) {
        let out = Arc::new(StreamOut::new());
        if self.stopped() {
            out.end(Some(crate::errors::stopped()));
        }
        let mut st = self.lock();
        let id = st.next_stream;
        st.next_stream += 1;
        st.streams.insert(
            id,
            StreamWatchers {
                out: out.clone(),
                ids: HashMap::new(),
                next_id: 0,
            },
        );
        (id, out)
    }

    /// The client left: every watcher of the stream goes.
    pub fn close_stream(&self, stream: u64) {
        let mut st = self.lock();
        let Some(s) = st.streams.remove(&stream) else {
            return;
        };
        for (_, key) in s.ids {
            self.remove_watcher(&mut st, key);
        }
        s.out.end(None);
    }

    fn remove_watcher(&self, st: &mut HubState, key: WatcherKey) {
        let Some(w) = st.watchers.remove(key) else {
            return;
        };
        match w.state {
            State::Synced => st.synced.remove(&w.range, key),
            State::Unsynced => {
                st.unsynced.remove(&key);
            }
            State::Done => {}
        }
        w.out.drop_watcher(key);
        if w.meta.prev_kv {
            self.prev_kv_watchers.fetch_sub(1, Ordering::SeqCst);
        }
        self.count.fetch_sub(1, Ordering::AcqRel);
    }

    /// A create that is refused: etcd answers a created-and-canceled
    /// response with watch id -1.
    pub fn refuse(&self, stream: &StreamOut, reason: &str) {
        self.refuse_with_id(stream, INVALID_WATCH_ID, reason);
    }

    pub fn refuse_with_id(&self, stream: &StreamOut, watch_id: i64, reason: &str) {
        let rev = self.current_revision();
        stream.push_control(self.control(
            rev,
            WatchResponse {
                watch_id,
                created: true,
                canceled: true,
                cancel_reason: reason.to_string(),
                ..Default::default()
            },
        ));
    }

    /// The newest revision a response may claim: the store's, or the hub's
    /// if it is ahead (it never is for long).
    fn current_revision(&self) -> i64 {
        let rev = self.history.revision();
        rev.max(self.lock().notified)
    }

    // -- requests ------------------------------------------------------------

    /// A WatchCreateRequest on `stream`, answered on it.
    pub fn create(&self, stream: u64, req: &WatchCreateRequest) {
        let out = match self.lock().streams.get(&stream) {
            Some(s) => s.out.clone(),
            None => return,
        };
        if req.start_revision < 0 {
            return self.refuse(&out, ERR_COMPACTED);
        }
        let Some(range) = WatchRange::from_request(&req.key, &req.range_end) else {
            return self.refuse(&out, ERR_EMPTY_RANGE);
        };
        // Counted before the revision is read: every batch applied after it
        // carries prev_kv (the applier reads the count under the state's
        // lock, which reading the revision takes).
        if req.prev_kv {
            self.prev_kv_watchers.fetch_add(1, Ordering::SeqCst);
        }
        let store_rev = self.history.revision();
        let mut st = self.lock();
        let cur = store_rev.max(st.notified);
        let Some(s) = st.streams.get_mut(&stream) else {
            drop(st);
            if req.prev_kv {
                self.prev_kv_watchers.fetch_sub(1, Ordering::SeqCst);
            }
            return;
        };
        let watch_id = if req.watch_id == 0 {
            while s.ids.contains_key(&s.next_id) {
                s.next_id += 1;
            }
            s.next_id += 1;
            s.next_id - 1
        } else if s.ids.contains_key(&req.watch_id) {
            drop(st);
            if req.prev_kv {
                self.prev_kv_watchers.fetch_sub(1, Ordering::SeqCst);
            }
            return self.refuse(&out, ERR_DUPLICATE_ID);
        } else {
            req.watch_id
        };
        // Unknown filter values are ignored, as etcd does.
        let no_put = req.filters.contains(&(FilterType::Noput as i32));
        let no_delete = req.filters.contains(&(FilterType::Nodelete as i32));
        let start = req.start_revision;
        let synced = start == 0 || start > cur;
        let key = st.watchers.insert(|key| Watcher {
            out: out.clone(),
            meta: EventsMeta {
                watcher: key,
                watch_id,
                prev_kv: req.prev_kv,
                fragment: req.fragment,
            },
            range: range.clone(),
            no_put,
            no_delete,
            progress_notify: req.progress_notify,
            progress_due: true,
            next_rev: if synced { (cur + 1).max(start) } else { start },
            floor: cur.max(start),
            state: if synced {
                State::Synced
            } else {
                State::Unsynced
            },
            hits: Vec::new(),
        });
        st.streams
            .get_mut(&stream)
            .expect("looked up above")
            .ids
            .insert(watch_id, key);
        if synced {
            st.synced.insert(&range, key);
        } else {
            st.unsynced.insert(key);
        }
        self.count.fetch_add(1, Ordering::AcqRel);
        // Under the hub's lock, so no event of the watcher can be queued
        // before it.
        out.push_control(self.control(
            cur,
            WatchResponse {
                watch_id,
                created: true,
                ..Default::default()
            },
        ));
        drop(st);
        if !synced {
            self.wake_sync();
        }
    }

    /// A WatchCancelRequest: answered if the id is known (etcd answers
    /// nothing otherwise). Events not yet sent to it are dropped.
    pub fn cancel(&self, stream: u64, watch_id: i64) {
        let store_rev = self.history.revision();
        let mut st = self.lock();
        let Some(s) = st.streams.get_mut(&stream) else {
            return;
        };
        let Some(key) = s.ids.remove(&watch_id) else {
            return;
        };
        let out = s.out.clone();
        self.remove_watcher(&mut st, key);
        let rev = store_rev.max(st.notified);
        out.push_control(self.control(
            rev,
            WatchResponse {
                watch_id,
                canceled: true,
                ..Default::default()
            },
        ));
    }

    /// A WatchProgressRequest (etcd 3.5's RequestProgressAll): a watch id -1
    /// response at the hub's revision, only when every watcher of the
    /// stream is synced (so the revision is true for all of them).
    pub fn progress_all(&self, stream: u64) {
        let st = self.lock();
        let Some(s) = st.streams.get(&stream) else {
            return;
        };
        if s.ids.is_empty() {
            return;
        }
        let rev = st.notified;
        let all_synced = s.ids.values().all(|&k| {
            st.watchers
                .get(k)
                .is_some_and(|w| w.state == State::Synced && rev >= w.floor)
        });
        if all_synced {
            s.out.push_control(self.control(
                rev,
                WatchResponse {
                    watch_id: INVALID_WATCH_ID,
                    ..Default::default()
                },
            ));
        }
    }

    /// A progress tick of `stream`: each synced watcher that asked for
    /// progress notifications and was sent no events since the last tick
    /// gets one. False once the stream is gone.
    pub fn progress_tick(&self, stream: u64) -> bool {
        let mut st = self.lock();
        let rev = st.notified;
        let Some(s) = st.streams.get(&stream) else {
            return false;
        };
        let keys: Vec<WatcherKey> = s.ids.values().copied().collect();
        let out = s.out.clone();
        for key in keys {
            let Some(w) = st.watchers.get_mut(key) else {
                continue;
            };
            if !w.progress_notify {
                continue;
            }
            if w.progress_due && w.state == State::Synced && rev >= w.floor {
                let id = w.meta.watch_id;
                out.push_control(self.control(
                    rev,
                    WatchResponse {
                        watch_id: id,
                        ..Default::default()
                    },
                ));
            }
            w.progress_due = true;
        }
        true
    }

    // -- the applier's side ----------------------------------------------------

    /// An applied batch's events, in revision order: every synced watcher
    /// gets its share; one whose stream is full becomes unsynced instead.
    /// Never waits for a client. `with_prev` says the events carry the
    /// versions they replaced.
    pub fn notify(&self, events: Vec<Event>, with_prev: bool) {
        let Some(last) = events.last().and_then(|e| e.kv.as_ref()) else {
            return;
        };
        let revision = last.mod_revision;
        // Encoded before the lock is taken, unless nobody watches.
        let mut batch = (self.watcher_count() > 0).then(|| {
            Arc::new(Batch::new(
                events.iter().map(EncodedEvent::new).collect(),
                with_prev,
            ))
        });
        let mut st = self.lock();
        if st.watchers.len == 0 {
            let notified = st.notified.max(revision);
            st.notified = notified;
            st.ring.reset(notified);
            return;
        }
        let batch = batch.take().unwrap_or_else(|| {
            Arc::new(Batch::new(
                events.iter().map(EncodedEvent::new).collect(),
                with_prev,
            ))
        });
        let mut touched: Vec<WatcherKey> = Vec::new();
        {
            let HubState {
                watchers, synced, ..
            } = &mut *st;
            for (i, ev) in batch.events.iter().enumerate() {
                synced.for_each_match(ev.key(), |key| {
                    let Some(w) = watchers.get_mut(key) else {
                        return;
                    };
                    if ev.rev < w.next_rev || !w.wants(ev) {
                        return;
                    }
                    if w.hits.is_empty() {
                        touched.push(key);
                    }
                    w.hits.push(i as u32);
                });
            }
        }
        for key in touched {
            let Some(w) = st.watchers.get_mut(key) else {
                continue;
            };
            let hits = std::mem::take(&mut w.hits);
            let first = batch.events[hits[0] as usize].rev;
            if w.meta.prev_kv && !batch.with_prev {
                // Applied before its prev_kv could be read: read it back.
                st.unsync(key, first);
                continue;
            }
            let evs = hits.iter().map(|&i| &batch.events[i as usize]);
            let given = give(w, evs, revision, &self.settings);
            let mut hits = hits;
            hits.clear();
            w.hits = hits;
            if let Err(from) = given {
                st.unsync(key, from);
            }
        }
        st.notified = revision;
        st.ring.push(batch);
    }

    /// The applier replaced the whole state with a leader's snapshot: every
    /// watcher catches up from the new backend.
    pub fn snapshot_installed(&self) {
        let rev = self.history.revision();
        let mut st = self.lock();
        let synced: Vec<WatcherKey> = st
            .watchers
            .slots
            .iter()
            .flatten()
            .filter(|w| w.state == State::Synced)
            .map(|w| w.meta.watcher)
            .collect();
        let notified = st.notified;
        for key in synced {
            st.unsync(key, notified + 1);
        }
        st.notified = rev;
        st.ring.reset(rev);
        drop(st);
        self.wake_sync();
    }

    // -- the sync worker's pacing ----------------------------------------------

    /// Asks the sync worker to look at the unsynced watchers now.
    pub fn wake_sync(&self) {
        *self.wake.lock().expect("wake poisoned") = true;
        self.wake_cond.notify_one();
    }

    /// Waits for a wake-up or `timeout`; false once stopped.
    pub(super) fn wait_for_work(&self, timeout: Duration) -> bool {
        let mut woken = self.wake.lock().expect("wake poisoned");
        if !*woken && !self.stopped() {
            woken = self
                .wake_cond
                .wait_timeout(woken, timeout)
                .expect("wake poisoned")
                .0;
        }
        *woken = false;
        !self.stopped()
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let streams: Vec<Arc<StreamOut>> = self
            .lock()
            .streams
            .values()
            .map(|s| s.out.clone())
            .collect();
        for out in streams {
            out.end(Some(crate::errors::stopped()));
        }
        self.wake_sync();
    }

    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Cancels a watcher the server cannot serve any more: with the
    /// compaction revision (as etcd: a header at revision 0, no reason), or
    /// with a reason.
    pub(super) fn cancel_by_server(&self, st: &mut HubState, key: WatcherKey, why: &ReadError) {
        let Some(w) = st.watchers.get_mut(key) else {
            return;
        };
        if w.state == State::Unsynced {
            st.unsynced.remove(&key);
        } else if w.state == State::Synced {
            st.synced.remove(&w.range, key);
        }
        w.state = State::Done;
        let resp = match why {
            ReadError::Compacted(rev) => WatchResponse {
                header: self.header_at(0),
                watch_id: w.meta.watch_id,
                compact_revision: *rev,
                canceled: true,
                ..Default::default()
            },
            ReadError::Failed(reason) => WatchResponse {
                header: self.header_at(st.notified),
                watch_id: w.meta.watch_id,
                canceled: true,
                cancel_reason: reason.clone(),
                ..Default::default()
            },
        };
        w.out.push_control(encoded::control(resp));
    }
}

/// Gives `w` events (in revision order, in its range, none before its next
/// revision), a revision at a time while its stream has room, all queued at
/// once (so they can go in one response). `Ok` when all were given: the
/// watcher has then everything up to `upto`; else the first revision it was
/// not given.
pub(super) fn give<'a>(
    w: &mut Watcher,
    events: impl Iterator<Item = &'a EncodedEvent>,
    upto: i64,
    settings: &WatchSettings,
) -> Result<(), i64> {
    let mine: Vec<&EncodedEvent> = events
        .filter(|ev| ev.rev >= w.next_rev && w.wants(ev))
        .collect();
    if !mine.is_empty() {
        w.progress_due = false;
    }
    let pushed = w.out.push_events(
        w.meta,
        &mine,
        upto,
        settings.stream_buffer_bytes,
        settings.max_response_bytes,
    );
    match pushed {
        Ok(()) => {
            w.next_rev = w.next_rev.max(upto + 1);
            Ok(())
        }
        Err(rev) => {
            w.next_rev = w.next_rev.max(rev);
            Err(rev)
        }
    }
}

impl WatchHub {
    /// The watcher behind `(stream, watch_id)` (tests).
    #[cfg(test)]
    pub(super) fn state_of(&self, stream: u64, watch_id: i64) -> Option<State> {
        let st = self.lock();
        let key = *st.streams.get(&stream)?.ids.get(&watch_id)?;
        st.watchers.get(key).map(|w| w.state)
    }
}
