//! Coalescing: client watchers of one range share watchers on the cluster.
//!
//! A *group* is one watcher on the cluster. It knows its *position* `p`:
//! every event below `p` on its range has arrived (the last event's
//! revision + 1, or a created / progress header + 1 — never a header that
//! came with events, which a catching-up watcher on the cluster dates ahead
//! of them). It keeps the events it saw in a bounded *history*, complete
//! from `hist_start` up to `p`.
//!
//! A client watcher joins a group and gets every event from its *floor* on,
//! once and in order:
//! - from "now" (no start revision): any *current* group of the range (one
//!   that has passed the revision the cluster was at when it was made), at
//!   the group's position; its created header is `p - 1`. With none, it
//!   waits on a group being made from "now", or makes one;
//! - from revision `s`: a group whose history reaches back to `s` replays
//!   the events from `s` and goes on; else a group started at or before `s`
//!   that has not yet been created; else a new group starting at `s`.
//!
//! Groups of one range merge: when group A is at or ahead of group B and
//! A's history reaches back to B's position, B's watchers move to A (each
//! gets A's history from B's position, so nothing is skipped or repeated)
//! and B's watcher on the cluster is cancelled. So a watcher that starts in
//! the past catches up on a group of its own, then joins the shared one.
//! When a group loses its last watcher, its cluster watcher is cancelled.
//!
//! Slow readers: nothing is ever dropped and no stream is cancelled for
//! being slow. Each client stream has a byte budget for responses waiting
//! to be written; a watcher whose stream is over it leaves its group and
//! remembers the first revision it still needs. When the stream has
//! drained to half its budget, the watcher rejoins from that revision (from
//! a group's history, or a group of its own that catches up from the
//! cluster, as etcd's server catches up its slow "victim" watchers). Memory
//! is bounded by the streams' budgets plus the groups' histories.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::sync::mpsc;
use tonic::metadata::MetadataMap;

use super::encode::{self, EncodedEvent};
use super::upstream::UpstreamWatches;
use crate::grpcproxy::Shared;
use crate::pb::etcdserverpb::{ResponseHeader, WatchResponse};

/// The most a group keeps of past events (both encodings).
pub const HISTORY_BYTES: usize = 2 * 1024 * 1024;
/// The responses a client stream may have waiting before its watchers
/// pause (they resume, without loss, once it drains to half).
pub const STREAM_BUDGET: usize = 8 * 1024 * 1024;
/// Responses to watchers that asked for fragments are cut at this size
/// (etcd's server: --max-request-bytes plus gRPC overhead, 2 MiB).
pub const FRAGMENT_BYTES: usize = 2 * 1024 * 1024;
/// clientv3.InvalidWatchID.
pub const INVALID_WATCH_ID: i64 = -1;

/// A range on the cluster: key and end as etcd's watch server reads them
/// (end empty: the single key; "\0": every key from `key`).
pub type Range = (Vec<u8>, Vec<u8>);

/// What a client stream has to write, in order: a response built whole, or
/// "this watcher has events waiting" (they are merged into one response
/// when written, so a reader that falls behind gets fewer, larger
/// responses instead of a backlog of small ones).
pub enum Out {
    Control(Bytes),
    Events(Arc<Watcher>),
}

/// Events fanned out to a watcher and not yet written: shared batches (one
/// per upstream response) and the floor each was chosen from.
#[derive(Default)]
pub struct PendingEvents {
    batches: Vec<(Arc<Batch>, i64)>,
    bytes: usize,
}

/// One upstream response's events, encoded once for every watcher.
pub struct Batch {
    header: Bytes,
    events: Vec<EncodedEvent>,
    bytes: usize,
}

/// The most events merged into one response (whole upstream responses
/// only; clients' default receive limit is 4 MiB).
const MERGED_BYTES: usize = 1024 * 1024;

/// One client Watch stream.
pub struct ClientStream {
    out: mpsc::UnboundedSender<Out>,
    queued: AtomicUsize,
    pub md: MetadataMap,
    pub watchers: Mutex<HashMap<i64, Arc<Watcher>>>,
    pub next_id: Mutex<i64>,
    lagging: Mutex<Vec<(Arc<Watcher>, i64)>>,
    resuming: AtomicBool,
}

impl ClientStream {
    pub fn new(md: MetadataMap) -> (Arc<ClientStream>, mpsc::UnboundedReceiver<Out>) {
        let (out, rx) = mpsc::unbounded_channel();
        (
            Arc::new(ClientStream {
                out,
                queued: AtomicUsize::new(0),
                md,
                watchers: Mutex::new(HashMap::new()),
                next_id: Mutex::new(0),
                lagging: Mutex::new(Vec::new()),
                resuming: AtomicBool::new(false),
            }),
            rx,
        )
    }

    pub fn send(&self, b: Bytes) {
        self.queued.fetch_add(b.len(), Ordering::Relaxed);
        let _ = self.out.send(Out::Control(b));
    }

    /// A response left the queue for the wire; true when paused watchers
    /// should now resume.
    pub fn sent(&self, len: usize) -> bool {
        let left = self.queued.fetch_sub(len, Ordering::Relaxed) - len;
        left <= STREAM_BUDGET / 2
            && !self.resuming.load(Ordering::Relaxed)
            && !self.lagging.lock().unwrap().is_empty()
    }

    fn over_budget(&self) -> bool {
        self.queued.load(Ordering::Relaxed) > STREAM_BUDGET
    }

    pub fn is_closed(&self) -> bool {
        self.out.is_closed()
    }

    pub fn take_lagging(&self) -> Vec<Arc<Watcher>> {
        std::mem::take(&mut *self.lagging.lock().unwrap())
            .into_iter()
            .map(|(w, _)| w)
            .collect()
    }
}

/// Where a client watcher is.
pub enum Place {
    /// Receiving from a group.
    Member(Arc<Group>),
    /// Waiting for a group made from "now" to be created on the cluster.
    Pending(Arc<Group>),
    /// Paused by a full stream; resumes from this revision.
    Lagging(i64),
    Gone,
}

/// One client watcher.
pub struct Watcher {
    pub id: i64,
    id_field: Bytes,
    pub stream: Weak<ClientStream>,
    pub range: Range,
    pub start: i64,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
    pub progress_notify: bool,
    pub fragment: bool,
    /// Progress may be reported only from this revision on (etcd: the
    /// revision it was created at, or its start).
    progress_floor: AtomicI64,
    pub place: Mutex<Place>,
    /// Set once its created (or refusal) response is queued: the stream
    /// reads its next request only then, so created responses go out in
    /// the order of the requests (clientv3 pairs them by order).
    announced: AtomicBool,
    pub announce: tokio::sync::Notify,
    pending: Mutex<PendingEvents>,
}

pub struct WatcherSpec {
    pub id: i64,
    pub range: Range,
    pub start: i64,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
    pub progress_notify: bool,
    pub fragment: bool,
}

impl Watcher {
    pub fn new(stream: &Arc<ClientStream>, spec: WatcherSpec) -> Arc<Watcher> {
        Arc::new(Watcher {
            id: spec.id,
            id_field: encode::id_field(spec.id),
            stream: Arc::downgrade(stream),
            range: spec.range,
            start: spec.start,
            no_put: spec.no_put,
            no_delete: spec.no_delete,
            prev_kv: spec.prev_kv,
            progress_notify: spec.progress_notify,
            fragment: spec.fragment,
            progress_floor: AtomicI64::new(spec.start),
            place: Mutex::new(Place::Gone),
            announced: AtomicBool::new(false),
            announce: tokio::sync::Notify::new(),
            pending: Mutex::new(PendingEvents::default()),
        })
    }

    /// Queues a batch of events for this watcher (those from `floor` on that
    /// its filters let through are written).
    fn push(self: &Arc<Self>, stream: &ClientStream, batch: &Arc<Batch>, floor: i64) {
        let mut p = self.pending.lock().unwrap();
        let first = p.batches.is_empty();
        p.batches.push((batch.clone(), floor));
        p.bytes += batch.bytes;
        stream.queued.fetch_add(batch.bytes, Ordering::Relaxed);
        if first {
            let _ = stream.out.send(Out::Events(self.clone()));
        }
    }

    /// The responses for everything pending, merged, and the bytes they
    /// had been counted as.
    pub fn drain(&self) -> (Vec<Bytes>, usize) {
        let p = std::mem::take(&mut *self.pending.lock().unwrap());
        let mut out = Vec::new();
        let mut chosen: Vec<&Bytes> = Vec::new();
        let mut size = 0;
        let mut header: Option<&Bytes> = None;
        for (batch, floor) in &p.batches {
            let before = chosen.len();
            let mut added = 0;
            for e in batch.events.iter().filter(|e| self.wants(e, *floor)) {
                let b = e.bytes(self.prev_kv);
                added += b.len();
                chosen.push(b);
            }
            if chosen.len() == before {
                continue;
            }
            if size > 0 && size + added > MERGED_BYTES {
                // Flush what came before this batch, then go on.
                let rest = chosen.split_off(before);
                out.extend(self.responses(header.expect("set with events"), &chosen));
                chosen = rest;
                size = 0;
            }
            size += added;
            header = Some(&batch.header);
        }
        if let Some(h) = header {
            out.extend(self.responses(h, &chosen));
        }
        (out, p.bytes)
    }

    fn responses(&self, header: &Bytes, events: &[&Bytes]) -> Vec<Bytes> {
        let total: usize = events.iter().map(|e| e.len()).sum();
        if self.fragment && total + header.len() > FRAGMENT_BYTES && events.len() > 1 {
            encode::fragmented(header, &self.id_field, events, FRAGMENT_BYTES)
        } else {
            vec![encode::events_response(
                header,
                &self.id_field,
                events.iter().copied(),
                false,
            )]
        }
    }

    pub fn is_announced(&self) -> bool {
        self.announced.load(Ordering::Acquire)
    }

    /// Queues its created response (or the first response that ends it).
    fn announce_with(&self, resp: WatchResponse) {
        self.control(resp);
        self.announced.store(true, Ordering::Release);
        self.announce.notify_one();
    }

    fn wants(&self, e: &EncodedEvent, floor: i64) -> bool {
        e.revision >= floor
            && if e.is_put {
                !self.no_put
            } else {
                !self.no_delete
            }
    }

    fn send(&self, b: Bytes) {
        if let Some(s) = self.stream.upgrade() {
            s.send(b);
        }
    }

    fn control(&self, resp: WatchResponse) {
        self.send(encode::control(&resp));
    }

    /// Sends `events` (already chosen for this watcher) as one response, or
    /// as fragments when it asked for them and they are large.
    fn send_events(&self, header: &Bytes, events: &[&Bytes]) {
        let total: usize = events.iter().map(|e| e.len()).sum();
        if self.fragment && total + header.len() > FRAGMENT_BYTES && events.len() > 1 {
            for part in encode::fragmented(header, &self.id_field, events, FRAGMENT_BYTES) {
                self.send(part);
            }
        } else {
            self.send(encode::events_response(
                header,
                &self.id_field,
                events.iter().copied(),
                false,
            ));
        }
    }
}

struct Member {
    w: Arc<Watcher>,
    /// The first revision it wants.
    floor: i64,
}

/// One watcher on the cluster and the client watchers it feeds.
pub struct Group {
    /// Its watch id on the cluster stream.
    pub id: i64,
    pub range: Range,
    /// The revision it was asked to start at (0: now).
    pub start: i64,
    /// Whose credentials the cluster watcher is made with.
    pub md: MetadataMap,
    pub st: Mutex<GroupState>,
}

pub struct GroupState {
    created: bool,
    /// The cluster's revision when it was created.
    created_rev: i64,
    /// The highest revision the cluster has reported to this group.
    seen_rev: i64,
    position: i64,
    history: VecDeque<EncodedEvent>,
    history_bytes: usize,
    history_start: i64,
    members: Vec<Member>,
    /// Watchers waiting for the cluster watcher to be created.
    pending: Vec<Pending>,
    header: ResponseHeader,
    dead: bool,
}

struct Pending {
    w: Arc<Watcher>,
    /// The first revision it wants (0: from where the group is created).
    floor: i64,
    /// Whether it still needs its created response (not when rejoining).
    announce: bool,
}

impl Group {
    /// Where a cluster watcher made (again) for this group starts.
    pub fn resume_revision(&self) -> i64 {
        let st = self.st.lock().unwrap();
        if st.created {
            st.position
        } else {
            self.start
        }
    }

    /// Whether a watcher from "now" may join at the position: the group has
    /// passed the revision the cluster was at when it was made (it is not
    /// still catching up), and is not ahead of the cluster either (a group
    /// started at a future revision would skip what comes before it).
    fn is_current(st: &GroupState) -> bool {
        st.created && st.position > st.created_rev && st.position <= st.seen_rev + 1
    }
}

/// What the upstream stream task must do after a response was handled.
#[derive(Default)]
pub struct Followup {
    /// Client streams that paused watchers (resume when they drain).
    pub lagged: Vec<Arc<ClientStream>>,
    /// The group may have no watchers left.
    pub teardown: bool,
    pub merge: bool,
    /// Watchers to place again from a revision (compaction of a group that
    /// did not need it).
    pub rejoin: Vec<(Arc<Watcher>, i64)>,
}

pub struct Hub {
    pub shared: Arc<Shared>,
    ranges: Mutex<HashMap<Range, Vec<Arc<Group>>>>,
    next_group: AtomicI64,
    last_header: Mutex<ResponseHeader>,
    pub upstream: UpstreamWatches,
}

/// Counts for /proxy/metrics: cluster watchers, client watchers on them.
#[derive(Clone, Copy, Debug, Default)]
pub struct HubStats {
    pub groups: usize,
    pub watchers: usize,
}

impl Hub {
    pub fn new(shared: Arc<Shared>) -> Arc<Hub> {
        Arc::new_cyclic(|hub: &Weak<Hub>| Hub {
            upstream: UpstreamWatches::new(shared.clone(), hub.clone()),
            shared,
            ranges: Mutex::new(HashMap::new()),
            next_group: AtomicI64::new(1),
            last_header: Mutex::new(ResponseHeader::default()),
        })
    }

    pub fn header(&self) -> ResponseHeader {
        *self.last_header.lock().unwrap()
    }

    fn note_header(&self, h: &ResponseHeader) {
        let mut last = self.last_header.lock().unwrap();
        if h.revision >= last.revision || last.cluster_id != h.cluster_id {
            *last = *h;
        }
    }

    pub fn stats(&self) -> HubStats {
        let ranges = self.ranges.lock().unwrap();
        let mut s = HubStats::default();
        for groups in ranges.values() {
            for g in groups {
                let st = g.st.lock().unwrap();
                s.groups += 1;
                s.watchers += st.members.len() + st.pending.len();
            }
        }
        s
    }

    /// Places a new watcher (its created response included), or a paused
    /// one again from `start` (`rejoin`: no created response).
    pub fn join(&self, w: &Arc<Watcher>, start: i64, rejoin: bool) {
        let mut ranges = self.ranges.lock().unwrap();
        if rejoin && !matches!(*w.place.lock().unwrap(), Place::Lagging(_)) {
            return; // cancelled meanwhile
        }
        let groups = ranges.entry(w.range.clone()).or_default();
        for g in groups.iter() {
            let mut st = g.st.lock().unwrap();
            if st.dead {
                continue;
            }
            if start == 0 {
                if !Group::is_current(&st) {
                    continue;
                }
                let p = st.position;
                if !rejoin {
                    let mut header = st.header;
                    header.revision = p - 1;
                    w.progress_floor.store(p - 1, Ordering::Relaxed);
                    w.announce_with(created(&header, w.id));
                }
                st.members.push(Member {
                    w: w.clone(),
                    floor: p,
                });
            } else if st.created && st.history_start <= start {
                if !rejoin {
                    w.announce_with(created(&st.header, w.id));
                }
                replay(&st, w, start);
                st.members.push(Member {
                    w: w.clone(),
                    floor: start,
                });
            } else {
                continue;
            }
            *w.place.lock().unwrap() = Place::Member(g.clone());
            return;
        }
        // Wait on a group not yet created that will deliver what it needs.
        for g in groups.iter() {
            let mut st = g.st.lock().unwrap();
            let fits = if start == 0 {
                g.start == 0
            } else {
                g.start > 0 && g.start <= start
            };
            if st.dead || st.created || !fits {
                continue;
            }
            st.pending.push(Pending {
                w: w.clone(),
                floor: start,
                announce: !rejoin,
            });
            *w.place.lock().unwrap() = Place::Pending(g.clone());
            return;
        }
        let g = self.new_group(w.range.clone(), start, w);
        g.st.lock().unwrap().pending.push(Pending {
            w: w.clone(),
            floor: start,
            announce: !rejoin,
        });
        *w.place.lock().unwrap() = Place::Pending(g.clone());
        groups.push(g.clone());
        drop(ranges);
        self.upstream.watch(&g);
    }

    fn new_group(&self, range: Range, start: i64, creator: &Watcher) -> Arc<Group> {
        let md = creator
            .stream
            .upgrade()
            .map(|s| s.md.clone())
            .unwrap_or_default();
        Arc::new(Group {
            id: self.next_group.fetch_add(1, Ordering::Relaxed),
            range,
            start,
            md,
            st: Mutex::new(GroupState {
                created: false,
                created_rev: 0,
                seen_rev: 0,
                position: start,
                history: VecDeque::new(),
                history_bytes: 0,
                history_start: start,
                members: Vec::new(),
                pending: Vec::new(),
                header: ResponseHeader::default(),
                dead: false,
            }),
        })
    }

    /// Takes a watcher out of wherever it is (cancel, stream end).
    pub fn remove(&self, w: &Arc<Watcher>) {
        let mut ranges = self.ranges.lock().unwrap();
        let place = std::mem::replace(&mut *w.place.lock().unwrap(), Place::Gone);
        let g = match place {
            Place::Member(g) | Place::Pending(g) => g,
            Place::Lagging(_) | Place::Gone => return,
        };
        {
            let mut st = g.st.lock().unwrap();
            st.members.retain(|m| !Arc::ptr_eq(&m.w, w));
            st.pending.retain(|p| !Arc::ptr_eq(&p.w, w));
        }
        self.teardown_locked(&mut ranges, &g);
    }

    /// Cancels the cluster watcher of a group with no watchers left.
    fn teardown_locked(&self, ranges: &mut HashMap<Range, Vec<Arc<Group>>>, g: &Arc<Group>) {
        {
            let mut st = g.st.lock().unwrap();
            if st.dead || !(st.members.is_empty() && st.pending.is_empty()) {
                return;
            }
            st.dead = true;
        }
        if let Some(list) = ranges.get_mut(&g.range) {
            list.retain(|x| !Arc::ptr_eq(x, g));
            if list.is_empty() {
                ranges.remove(&g.range);
            }
        }
        self.upstream.cancel(g);
    }

    pub fn teardown(&self, g: &Arc<Group>) {
        let mut ranges = self.ranges.lock().unwrap();
        self.teardown_locked(&mut ranges, g);
    }

    /// Handles one response of a group's cluster watcher.
    pub fn on_response(&self, g: &Arc<Group>, resp: WatchResponse) -> Followup {
        let header = resp.header.unwrap_or_default();
        self.note_header(&header);
        let mut follow = Followup::default();
        let mut st = g.st.lock().unwrap();
        if st.dead {
            return follow;
        }
        st.header = header;
        st.seen_rev = st.seen_rev.max(header.revision);
        if resp.created && !resp.canceled {
            // A watcher made again after a failover answers created too.
            if !st.created {
                self.on_created(g, &mut st, &header);
                follow.merge = true;
            }
            return follow;
        }
        if resp.canceled {
            let compact = resp.compact_revision;
            for m in std::mem::take(&mut st.members) {
                let next = m.floor.max(st.position);
                if compact != 0 && next >= compact {
                    // It needs nothing compacted: place it again.
                    *m.w.place.lock().unwrap() = Place::Lagging(next);
                    follow.rejoin.push((m.w, next));
                } else {
                    cancel_watcher(&m.w, &header, compact, &resp.cancel_reason);
                }
            }
            for p in std::mem::take(&mut st.pending) {
                if p.announce {
                    p.w.announce_with(created(&header, p.w.id));
                }
                cancel_watcher(&p.w, &header, compact, &resp.cancel_reason);
            }
            follow.teardown = true;
            return follow;
        }
        if resp.events.is_empty() {
            // A progress notification: the cluster sends those only to
            // watchers that have caught up.
            st.position = st.position.max(header.revision + 1);
            if st.history.is_empty() {
                st.history_start = st.history_start.max(st.position);
            }
            st.created_rev = st.created_rev.min(st.position - 1);
            let hdr = encode::header_field(&header);
            for m in &st.members {
                if m.w.progress_notify
                    && header.revision >= m.w.progress_floor.load(Ordering::Relaxed)
                {
                    m.w.send_events(&hdr, &[]);
                }
            }
            follow.merge = true;
            return follow;
        }
        self.on_events(&mut st, resp.events, &header, &mut follow);
        follow
    }

    fn on_created(&self, g: &Arc<Group>, st: &mut GroupState, header: &ResponseHeader) {
        st.created = true;
        st.created_rev = header.revision;
        if g.start == 0 {
            st.position = header.revision + 1;
        }
        st.history_start = st.position;
        let p = st.position;
        for pend in std::mem::take(&mut st.pending) {
            let w = pend.w;
            let floor = if pend.floor == 0 { p } else { pend.floor };
            if pend.announce {
                let mut h = *header;
                if pend.floor == 0 {
                    h.revision = p - 1;
                    w.progress_floor.store(p - 1, Ordering::Relaxed);
                }
                w.announce_with(created(&h, w.id));
            }
            *w.place.lock().unwrap() = Place::Member(g.clone());
            st.members.push(Member { w, floor });
        }
    }

    /// Fans events out to the group's watchers and files them in its history.
    fn on_events(
        &self,
        st: &mut GroupState,
        events: Vec<crate::pb::mvccpb::Event>,
        header: &ResponseHeader,
        follow: &mut Followup,
    ) {
        // Only events past the position: a watcher made again after a
        // failover starts there, so none should come before it.
        let ns = &self.shared.namespace;
        let position = st.position;
        let events: Vec<EncodedEvent> = events
            .into_iter()
            .filter_map(|mut ev| {
                let rev = ev.kv.as_ref().map_or(0, |kv| kv.mod_revision);
                if rev < position || !ns.event(&mut ev) {
                    return None;
                }
                Some(EncodedEvent::new(&ev))
            })
            .collect();
        let Some(last) = events.last().map(|e| e.revision) else {
            return;
        };
        let first = events[0].revision;
        let batch = Arc::new(Batch {
            header: encode::header_field(header),
            bytes: events.iter().map(|e| e.with_prev.len()).sum::<usize>() + 64,
            events,
        });
        let mut sent = 0u64;
        st.members.retain(|m| {
            let w = &m.w;
            let Some(stream) = w.stream.upgrade() else {
                return false;
            };
            let plain = m.floor <= first && !w.no_put && !w.no_delete;
            if !plain && !batch.events.iter().any(|e| w.wants(e, m.floor)) {
                return true;
            }
            if stream.over_budget() {
                self.shared
                    .metrics
                    .watchers_paused
                    .fetch_add(1, Ordering::Relaxed);
                let next = m.floor.max(first);
                *w.place.lock().unwrap() = Place::Lagging(next);
                stream.lagging.lock().unwrap().push((w.clone(), next));
                follow.lagged.push(stream);
                return false;
            }
            w.push(&stream, &batch, m.floor);
            sent += 1;
            true
        });
        self.shared
            .metrics
            .events_coalescing
            .fetch_add(sent.saturating_sub(1), Ordering::Relaxed);
        st.position = last + 1;
        for e in &batch.events {
            st.history_bytes += e.size();
            st.history.push_back(e.clone());
        }
        while st.history_bytes > HISTORY_BYTES {
            let Some(rev) = st.history.front().map(|e| e.revision) else {
                break;
            };
            while st.history.front().is_some_and(|e| e.revision == rev) {
                let e = st.history.pop_front().expect("front exists");
                st.history_bytes -= e.size();
            }
            st.history_start = rev + 1;
        }
        follow.teardown = st.members.is_empty() && st.pending.is_empty();
        follow.merge = true;
    }

    /// Merges groups of `range` that can serve each other's watchers (see
    /// the module doc).
    pub fn merge(&self, range: &Range) {
        let mut ranges = self.ranges.lock().unwrap();
        let groups = match ranges.get(range) {
            Some(g) if g.len() > 1 => g.clone(),
            _ => return,
        };
        let mut merged: Vec<Arc<Group>> = Vec::new();
        for a in &groups {
            for b in &groups {
                let gone = |g: &Arc<Group>| merged.iter().any(|m| Arc::ptr_eq(m, g));
                if Arc::ptr_eq(a, b) || gone(a) || gone(b) {
                    continue;
                }
                if self.fold(a, b) {
                    merged.push(b.clone());
                }
            }
        }
        if merged.is_empty() {
            return;
        }
        if let Some(list) = ranges.get_mut(range) {
            list.retain(|g| !merged.iter().any(|m| Arc::ptr_eq(m, g)));
        }
        drop(ranges);
        for g in &merged {
            self.upstream.cancel(g);
        }
    }

    /// Moves `b`'s watchers to `a` when `a` can serve them; true if it did.
    fn fold(&self, a: &Arc<Group>, b: &Arc<Group>) -> bool {
        // Locked in id order: response handlers lock one group at a time.
        let (mut sa, mut sb);
        if a.id < b.id {
            sa = a.st.lock().unwrap();
            sb = b.st.lock().unwrap();
        } else {
            sb = b.st.lock().unwrap();
            sa = a.st.lock().unwrap();
        }
        if sa.dead || sb.dead || !sa.created || !sb.created || !sb.pending.is_empty() {
            return false;
        }
        if !(sa.position >= sb.position && sa.history_start <= sb.position) {
            return false;
        }
        // Never fold a current group into one that is not.
        if Group::is_current(&sb) && !Group::is_current(&sa) {
            return false;
        }
        let from = sb.position;
        for m in std::mem::take(&mut sb.members) {
            let floor = m.floor.max(from);
            replay(&sa, &m.w, floor);
            *m.w.place.lock().unwrap() = Place::Member(a.clone());
            sa.members.push(Member { w: m.w, floor });
        }
        sb.dead = true;
        true
    }

    /// Schedules the paused watchers of `stream` to rejoin if it has
    /// already drained (it may have while they were being paused).
    pub fn kick(self: &Arc<Hub>, stream: &Arc<ClientStream>) {
        if stream.queued.load(Ordering::Relaxed) <= STREAM_BUDGET / 2 {
            let hub = self.clone();
            let stream = stream.clone();
            tokio::spawn(async move { hub.resume(&stream) });
        }
    }

    /// Rejoins the watchers a stream paused, now that it has drained.
    pub fn resume(&self, stream: &Arc<ClientStream>) {
        if stream.resuming.swap(true, Ordering::AcqRel) {
            return;
        }
        let paused = std::mem::take(&mut *stream.lagging.lock().unwrap());
        for (w, next) in paused {
            self.join(&w, next, true);
        }
        stream.resuming.store(false, Ordering::Release);
    }

    /// Answers a progress request on `stream` (etcd's RequestProgress):
    /// only when every watcher on it receives from a group, at the lowest
    /// revision all of them have passed.
    pub fn progress(&self, stream: &Arc<ClientStream>) {
        let watchers: Vec<Arc<Watcher>> =
            stream.watchers.lock().unwrap().values().cloned().collect();
        if watchers.is_empty() {
            return;
        }
        let mut rev = i64::MAX;
        for w in &watchers {
            let g = match &*w.place.lock().unwrap() {
                Place::Member(g) => g.clone(),
                _ => return,
            };
            let p = g.st.lock().unwrap().position;
            if p - 1 < w.progress_floor.load(Ordering::Relaxed) {
                return;
            }
            rev = rev.min(p - 1);
        }
        let mut header = self.header();
        header.revision = rev;
        stream.send(encode::control(&WatchResponse {
            header: Some(header),
            watch_id: INVALID_WATCH_ID,
            ..Default::default()
        }));
    }

    /// A refusal of a create request, as etcd's server words it.
    pub fn refuse(&self, stream: &ClientStream, reason: &str) {
        stream.send(encode::control(&WatchResponse {
            header: Some(self.header()),
            watch_id: INVALID_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        }));
    }

    /// A cancel request's answer.
    pub fn cancelled(&self, stream: &ClientStream, id: i64) {
        stream.send(encode::control(&WatchResponse {
            header: Some(self.header()),
            watch_id: id,
            canceled: true,
            ..Default::default()
        }));
    }
}

/// Sends `w` the events of `st`'s history from `floor` on, whole revisions
/// to a response.
fn replay(st: &GroupState, w: &Arc<Watcher>, floor: i64) {
    if st.history.is_empty() || st.position <= floor {
        return;
    }
    let hdr = encode::header_field(&st.header);
    let chosen: Vec<&EncodedEvent> = st.history.iter().filter(|e| w.wants(e, floor)).collect();
    let mut start = 0;
    while start < chosen.len() {
        let mut end = start;
        let mut size = 0;
        while end < chosen.len() {
            let rev = chosen[end].revision;
            // The events of one revision, together.
            let mut stop = end;
            let mut rev_size = 0;
            while stop < chosen.len() && chosen[stop].revision == rev {
                rev_size += chosen[stop].bytes(w.prev_kv).len();
                stop += 1;
            }
            if end > start && size + rev_size > FRAGMENT_BYTES {
                break;
            }
            size += rev_size;
            end = stop;
        }
        let part: Vec<&Bytes> = chosen[start..end]
            .iter()
            .map(|e| e.bytes(w.prev_kv))
            .collect();
        w.send_events(&hdr, &part);
        start = end;
    }
}

fn created(header: &ResponseHeader, id: i64) -> WatchResponse {
    WatchResponse {
        header: Some(*header),
        watch_id: id,
        created: true,
        ..Default::default()
    }
}

fn cancel_watcher(w: &Arc<Watcher>, header: &ResponseHeader, compact: i64, reason: &str) {
    *w.place.lock().unwrap() = Place::Gone;
    w.control(WatchResponse {
        header: Some(*header),
        watch_id: w.id,
        canceled: true,
        compact_revision: compact,
        cancel_reason: reason.to_string(),
        ..Default::default()
    });
    if let Some(s) = w.stream.upgrade() {
        s.watchers.lock().unwrap().remove(&w.id);
    }
}
