"""The Watch service: every Watch stream's watchers, fed from the core's applied batches.

Behaves as etcd 3.5's watch server (``v3rpc/watch.go`` over ``mvcc/watchable_store.go``):

- one stream carries many watchers; a create request is answered by a ``created``
  response carrying the watch id and the current revision, a cancel request by a
  ``canceled`` one, a progress request by a watch id -1 response when every watcher on
  the stream is synced;
- a *synced* watcher is fed from the applied batches the core hands the bridge: each
  batch is parsed once, its events are matched against an index of the synced
  watchers (exact keys in a dict, from-key ranges in a sorted list, other ranges in
  a max-end segment tree) and each watcher gets one response per revision;
- a watcher starting in the past *catches up* by reading the core's event log
  (``Core.events_since``) in chunks, buffering the live events meanwhile, then joins
  the synced watchers without a gap or a duplicate (see :meth:`WatchHub._catch_up`);
- a compacted start answers ``compact_revision`` + ``canceled`` as etcd does.

Responses are assembled from pre-encoded pieces (header, watch id, events encoded at
most twice per batch: with and without ``prev_kv``), so fan-out costs a bytes join per
watcher and never awaits: ``Stream.send`` only queues on the Rust side.
"""

from __future__ import annotations

import asyncio
import bisect
import random
from collections.abc import Iterator, Sequence

from etcdcore._core import Core
from etcdcore.bridge import OUT_OF_RANGE, Bridge, Stream, error_of
from etcdcore.proto.etcdcore import internal_pb2
from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.proto.mvccpb import kv_pb2
from etcdcore.services import decode_stream_message

WATCH_METHOD = "/etcdserverpb.Watch/Watch"

# clientv3.InvalidWatchID: progress responses for the whole stream and refused creates.
INVALID_WATCH_ID = -1

# etcd's --max-request-bytes default, and the slack its watch server adds on top of it
# (v3rpc grpcOverheadBytes): a watch response is fragmented from 2 MiB by default.
DEFAULT_MAX_REQUEST_BYTES = 1536 * 1024
GRPC_OVERHEAD_BYTES = 512 * 1024

ERR_COMPACTED = "etcdserver: mvcc: required revision has been compacted"
ERR_EMPTY_RANGE = "mvcc: watcher range is empty"
ERR_DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"

_EventBatch = internal_pb2.EventBatch
_Event = kv_pb2.Event
_WatchRequest = rpc_pb2.WatchRequest
_WatchResponse = rpc_pb2.WatchResponse
_ResponseHeader = rpc_pb2.ResponseHeader

_EVENT_TAG = b"\x5a"  # WatchResponse.events: field 11, length-delimited
_FRAGMENT_FIELD = b"\x38\x01"  # WatchResponse.fragment = true: field 7, varint


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


#: The event type each watch filter leaves out.
_DROPPED_BY = {
    rpc_pb2.WatchCreateRequest.NOPUT: kv_pb2.Event.PUT,
    rpc_pb2.WatchCreateRequest.NODELETE: kv_pb2.Event.DELETE,
}


def _event_field(ev: kv_pb2.Event, with_prev_kv: bool) -> bytes:
    """``ev`` encoded as one WatchResponse.events field, with or without its prev_kv."""
    if not with_prev_kv and ev.HasField("prev_kv"):
        ev = _Event(type=ev.type, kv=ev.kv)
    data = ev.SerializeToString()
    return _EVENT_TAG + _varint(len(data)) + data


class _WatchStream:
    """One Watch call: its watchers by id and its id allocator."""

    __slots__ = ("stream", "watchers", "next_id", "ticker")

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.watchers: dict[int, _Watcher] = {}
        self.next_id = 0
        self.ticker: asyncio.Future[None] | None = None


class _Watcher:
    """One watcher. Hashes by identity (it is a key of the index's sets)."""

    __slots__ = (
        "id",
        "id_field",
        "ws",
        "key",
        "end",
        "range_end",
        "prev_kv",
        "fragment",
        "progress_notify",
        "progress_due",
        "drop",
        "next_rev",
        "floor",
        "synced",
        "indexed",
        "buffer",
        "buffered",
        "read_to",
        "task",
    )

    def __init__(
        self,
        ws: _WatchStream,
        watch_id: int,
        creq: rpc_pb2.WatchCreateRequest,
        key: bytes,
        end: bytes | None,
    ) -> None:
        self.id = watch_id
        self.id_field = _WatchResponse(watch_id=watch_id).SerializeToString()
        self.ws = ws
        self.key = key
        # None: the single key; b"": every key >= key; otherwise [key, end).
        self.end = end
        # The same range as Range spells it, for Core.events_since.
        self.range_end = b"" if end is None else (end or b"\x00")
        self.prev_kv = creq.prev_kv
        self.fragment = creq.fragment
        self.progress_notify = creq.progress_notify
        self.progress_due = True
        # The event types to leave out (unknown filters are ignored, as etcd does).
        self.drop = frozenset(_DROPPED_BY[f] for f in creq.filters if f in _DROPPED_BY)
        # The smallest mod_revision this watcher has not been sent yet.
        self.next_rev = 0
        # No progress notification may claim a revision below this one.
        self.floor = 0
        self.synced = False
        self.indexed = False
        # While catching up: the live events matched since ``read_to`` was taken
        # (None after an overflow), and the revision the log reads must reach.
        self.buffer: list[kv_pb2.Event] | None = None
        self.buffered = 0
        self.read_to = 0
        self.task: asyncio.Future[None] | None = None


WatcherSet = dict[_Watcher, None]


class _RangeTree:
    """Finite ranges [start, end) answering "which contain key" in O(log n + matches).

    Distinct intervals sit sorted by start under a segment tree of their maximum end,
    rebuilt lazily: intervals added since the last build are scanned linearly, and
    emptied ones are skipped until enough of them pile up.
    """

    def __init__(self) -> None:
        self.sets: dict[tuple[bytes, bytes], WatcherSet] = {}
        self._ivls: list[tuple[bytes, bytes]] = []
        self._starts: list[bytes] = []
        self._built: set[tuple[bytes, bytes]] = set()
        self._tree: list[bytes] = []
        self._size = 0
        self._pending: list[tuple[bytes, bytes]] = []
        self._dead = 0

    def add(self, ivl: tuple[bytes, bytes], w: _Watcher) -> None:
        s = self.sets.get(ivl)
        if s is None:
            s = self.sets[ivl] = {}
            if ivl in self._built:
                self._dead -= 1
            else:
                self._pending.append(ivl)
                if len(self._pending) > 16 + len(self._ivls) // 4:
                    self._rebuild()
        s[w] = None

    def remove(self, ivl: tuple[bytes, bytes], w: _Watcher) -> None:
        s = self.sets.get(ivl)
        if s is None:
            return
        s.pop(w, None)
        if s:
            return
        del self.sets[ivl]
        if ivl in self._built:
            self._dead += 1
            if self._dead > 16 + len(self._ivls) // 2:
                self._rebuild()
        else:
            self._pending.remove(ivl)

    def _rebuild(self) -> None:
        ivls = sorted(self.sets)
        size = 1
        while size < len(ivls):
            size *= 2
        tree = [b""] * (2 * size)
        for i, (_, end) in enumerate(ivls):
            tree[size + i] = end
        for i in range(size - 1, 0, -1):
            left, right = tree[2 * i], tree[2 * i + 1]
            tree[i] = left if left >= right else right
        self._ivls = ivls
        self._starts = [start for start, _ in ivls]
        self._built = set(ivls)
        self._tree = tree
        self._size = size
        self._pending = []
        self._dead = 0

    def stab(self, key: bytes, out: list[WatcherSet]) -> None:
        sets = self.sets
        for ivl in self._pending:
            if ivl[0] <= key < ivl[1]:
                out.append(sets[ivl])
        pos = bisect.bisect_right(self._starts, key)  # intervals [0, pos) start <= key
        if pos == 0:
            return
        tree, size, ivls = self._tree, self._size, self._ivls
        todo = [(1, 0, size)]
        while todo:
            node, lo, hi = todo.pop()
            if lo >= pos or tree[node] <= key:
                continue
            if node >= size:
                s = sets.get(ivls[lo])
                if s:
                    out.append(s)
                continue
            mid = (lo + hi) // 2
            todo.append((2 * node + 1, mid, hi))
            todo.append((2 * node, lo, mid))


class _Index:
    """Every watcher the live batches feed, by what it watches."""

    def __init__(self) -> None:
        self.keys: dict[bytes, WatcherSet] = {}
        self.from_starts: list[bytes] = []
        self.from_sets: dict[bytes, WatcherSet] = {}
        self.ranges = _RangeTree()
        self.size = 0

    def add(self, w: _Watcher) -> None:
        if w.indexed:
            return
        w.indexed = True
        self.size += 1
        if w.end is None:
            s = self.keys.get(w.key)
            if s is None:
                s = self.keys[w.key] = {}
            s[w] = None
        elif not w.end:
            s = self.from_sets.get(w.key)
            if s is None:
                s = self.from_sets[w.key] = {}
                bisect.insort(self.from_starts, w.key)
            s[w] = None
        else:
            self.ranges.add((w.key, w.end), w)

    def remove(self, w: _Watcher) -> None:
        if not w.indexed:
            return
        w.indexed = False
        self.size -= 1
        if w.end is None:
            s = self.keys.get(w.key)
            if s is not None:
                s.pop(w, None)
                if not s:
                    del self.keys[w.key]
        elif not w.end:
            s = self.from_sets.get(w.key)
            if s is not None:
                s.pop(w, None)
                if not s:
                    del self.from_sets[w.key]
                    del self.from_starts[bisect.bisect_left(self.from_starts, w.key)]
        else:
            self.ranges.remove((w.key, w.end), w)

    def match(self, key: bytes) -> list[WatcherSet]:
        """The sets of watchers whose key or range holds ``key`` (disjoint sets)."""
        out: list[WatcherSet] = []
        s = self.keys.get(key)
        if s:
            out.append(s)
        if self.from_starts:
            starts, from_sets = self.from_starts, self.from_sets
            for i in range(bisect.bisect_right(starts, key)):
                out.append(from_sets[starts[i]])
        if self.ranges.sets:
            self.ranges.stab(key, out)
        return out

    def __iter__(self) -> Iterator[_Watcher]:
        seen: list[_Watcher] = []
        for group in (self.keys, self.from_sets, self.ranges.sets):
            for s in group.values():
                seen.extend(s)
        return iter(seen)


class WatchHub:
    """etcd's Watch service over the core's applied batches and event log.

    ``max_response_bytes``: a response to a watcher that asked for ``fragment`` is
    split from this size (etcd: ``--max-request-bytes`` + 512 KiB).
    ``progress_interval``: seconds between progress notifications to watchers that
    asked for them (etcd: 10 minutes, plus up to 10% jitter); 0 disables them.
    ``catch_up_limit``: events per ``Core.events_since`` read.
    ``buffer_limit``: live events a catching-up watcher may buffer before it drops
    them and reads them from the log instead.
    """

    def __init__(
        self,
        core: Core,
        *,
        max_response_bytes: int = DEFAULT_MAX_REQUEST_BYTES + GRPC_OVERHEAD_BYTES,
        progress_interval: float = 600.0,
        catch_up_limit: int = 1000,
        buffer_limit: int = 100_000,
    ) -> None:
        self._core = core
        self._max_bytes = max_response_bytes
        self._progress_interval = progress_interval
        self._catch_up_limit = catch_up_limit
        self._buffer_limit = buffer_limit
        self._index = _Index()
        self._streams: set[_WatchStream] = set()
        self._count = 0
        # The newest revision whose events every synced watcher has been sent.
        self._rev = self._core_revision()

    # -- wiring ------------------------------------------------------------------
    def register(self, bridge: Bridge) -> None:
        bridge.streaming(WATCH_METHOD, self.serve)
        bridge.on_events(self.on_events)
        self._rev = max(self._rev, self._core_revision())

    def watcher_count(self) -> int:
        """Watchers on all open streams (canceled or closed ones excluded)."""
        return self._count

    # -- revisions and headers ---------------------------------------------------
    def _core_revision(self) -> int:
        try:
            return int(self._core.header()[2])
        except Exception:  # noqa: BLE001 - the core may not be started yet
            return 0

    def _current_rev(self) -> int:
        return max(self._core.header()[2], self._rev)

    def _header(self, revision: int | None = None) -> rpc_pb2.ResponseHeader:
        cluster_id, member_id, rev, term = self._core.header()
        if revision is None:
            revision = max(rev, self._rev)
        return _ResponseHeader(
            cluster_id=cluster_id, member_id=member_id, revision=revision, raft_term=term
        )

    def _prefix(self, revision: int) -> bytes:
        """The encoded header field of an event response at ``revision``."""
        return _WatchResponse(header=self._header(revision)).SerializeToString()

    # -- the stream --------------------------------------------------------------
    async def serve(self, stream: Stream) -> None:
        """Run one Watch call until the client closes it."""
        ws = _WatchStream(stream)
        self._streams.add(ws)
        if len(self._streams) == 1:
            # The core skips event batches while nobody watches; the revision
            # is read only after the feed is on, so nothing needed is missed.
            self._core.set_event_feed(True)
            self._rev = max(self._rev, self._core_revision())
        if self._progress_interval > 0:
            ws.ticker = asyncio.ensure_future(self._progress_loop(ws))
        try:
            while True:
                data = await stream.recv()
                if data is None:
                    # etcd keeps a half-closed client's watches until it leaves.
                    await stream.wait_gone()
                    return
                req = decode_stream_message(_WatchRequest, data)
                kind = req.WhichOneof("request_union")
                if kind == "create_request":
                    self._create(ws, req.create_request)
                elif kind == "cancel_request":
                    self._cancel(ws, req.cancel_request.watch_id)
                elif kind == "progress_request":
                    self._progress_all(ws)
        finally:
            self._close(ws)
            if not self._streams:
                self._core.set_event_feed(False)

    def _refuse(self, ws: _WatchStream, reason: str) -> None:
        resp = _WatchResponse(
            header=self._header(),
            watch_id=INVALID_WATCH_ID,
            created=True,
            canceled=True,
            cancel_reason=reason,
        )
        ws.stream.send(resp.SerializeToString())

    def _create(self, ws: _WatchStream, creq: rpc_pb2.WatchCreateRequest) -> None:
        key = creq.key or b"\x00"
        if creq.start_revision < 0:
            self._refuse(ws, ERR_COMPACTED)
            return
        end: bytes | None = creq.range_end
        if not end:
            end = None
        elif end == b"\x00":
            end = b""
        elif key >= end:
            self._refuse(ws, ERR_EMPTY_RANGE)
            return
        watch_id = creq.watch_id
        if watch_id == 0:
            while ws.next_id in ws.watchers:
                ws.next_id += 1
            watch_id = ws.next_id
            ws.next_id += 1
        elif watch_id in ws.watchers:
            self._refuse(ws, ERR_DUPLICATE_ID)
            return

        w = _Watcher(ws, watch_id, creq, key, end)
        ws.watchers[watch_id] = w
        self._count += 1
        cur = self._current_rev()
        resp = _WatchResponse(header=self._header(cur), watch_id=watch_id, created=True)
        ws.stream.send(resp.SerializeToString())

        start = creq.start_revision
        w.floor = max(cur, start)
        if start == 0 or start > cur:
            # Everything from cur + 1 on reaches the hub after this point.
            w.next_rev = max(cur + 1, start)
            w.synced = True
            self._index.add(w)
        else:
            w.next_rev = start
            self._start_catch_up(w, cur)

    def _cancel(self, ws: _WatchStream, watch_id: int) -> None:
        w = ws.watchers.pop(watch_id, None)
        if w is None:
            return  # etcd answers nothing for an unknown id
        self._drop(w)
        resp = _WatchResponse(header=self._header(), watch_id=watch_id, canceled=True)
        ws.stream.send(resp.SerializeToString())

    def _drop(self, w: _Watcher) -> None:
        self._count -= 1
        self._index.remove(w)
        w.synced = False
        w.buffer = None
        if w.task is not None:
            w.task.cancel()
            w.task = None

    def _close(self, ws: _WatchStream) -> None:
        self._streams.discard(ws)
        if ws.ticker is not None:
            ws.ticker.cancel()
            ws.ticker = None
        for w in ws.watchers.values():
            self._drop(w)
        ws.watchers.clear()

    # -- progress ----------------------------------------------------------------
    def _progress_all(self, ws: _WatchStream) -> None:
        """etcd 3.5's RequestProgressAll: only when every watcher is synced."""
        if not ws.watchers:
            return
        rev = self._rev
        for w in ws.watchers.values():
            if not w.synced or rev < w.floor:
                return
        resp = _WatchResponse(header=self._header(rev), watch_id=INVALID_WATCH_ID)
        ws.stream.send(resp.SerializeToString())

    async def _progress_loop(self, ws: _WatchStream) -> None:
        interval = self._progress_interval
        while True:
            await asyncio.sleep(interval + random.uniform(0, interval / 10))
            rev = self._rev
            header = None
            for w in ws.watchers.values():
                if not w.progress_notify:
                    continue
                if w.progress_due and w.synced and rev >= w.floor:
                    if header is None:
                        header = self._header(rev)
                    resp = _WatchResponse(header=header, watch_id=w.id)
                    ws.stream.send(resp.SerializeToString())
                w.progress_due = True

    # -- sending events ----------------------------------------------------------
    def _send_events(self, w: _Watcher, prefix: bytes, fields: list[bytes]) -> None:
        """One event response (or its fragments) to ``w``: header, id, events."""
        w.progress_due = False
        stream = w.ws.stream
        base = prefix + w.id_field
        if w.fragment and len(fields) > 1:
            size = len(base)
            for f in fields:
                size += len(f)
            if size >= self._max_bytes:
                self._send_fragments(stream, base, fields)
                return
        fields.insert(0, base)
        stream.send(b"".join(fields))

    def _send_fragments(self, stream: Stream, base: bytes, fields: list[bytes]) -> None:
        # As etcd's sendFragments: fill each response until the next event would take it
        # to the limit (always at least one event); all but the last say fragment.
        limit = self._max_bytes
        frag_base = base + _FRAGMENT_FIELD
        i, n = 0, len(fields)
        while i < n:
            first = i
            size = len(frag_base)
            while i < n:
                flen = len(fields[i])
                if i > first and size + flen >= limit:
                    break
                size += flen
                i += 1
            head = base if i == n else frag_base
            stream.send(b"".join([head, *fields[first:i]]))

    def _send_catch_up(self, w: _Watcher, revision: int, events: Sequence[kv_pb2.Event]) -> None:
        drop, with_prev = w.drop, w.prev_kv
        fields = [_event_field(ev, with_prev) for ev in events if ev.type not in drop]
        if fields:
            self._send_events(w, self._prefix(revision), fields)

    # -- the live path -------------------------------------------------------------
    def on_events(self, revision: int, data: bytes) -> None:
        """An applied batch from the core: feed it to every matching watcher."""
        old_rev = self._rev
        if revision > old_rev:
            self._rev = revision
        index = self._index
        if not index.size:
            return
        events = _EventBatch.FromString(data).events
        if not events:
            return
        if old_rev and events[0].kv.mod_revision > old_rev + 1:
            # Revisions the hub never saw (e.g. the core installed a snapshot):
            # every watcher reads them from the log before going on.
            self._resync(old_rev, max(revision, self._current_rev()))

        n = len(events)
        full: list[bytes | None] = [None] * n
        bare: list[bytes | None] = [None] * n
        # One response per watcher for the whole applied batch, however many
        # revisions it spans (etcd sends multi-revision responses too, when it
        # syncs a watcher); it cuts the sends — the fan-out's cost — by the
        # batch's revision count.
        hits: dict[_Watcher, list[int]] = {}
        match = index.match
        for i in range(n):
            kv = events[i].kv
            rev = kv.mod_revision
            for s in match(kv.key):
                for w in s:
                    if rev >= w.next_rev:
                        idxs = hits.get(w)
                        if idxs is None:
                            hits[w] = [i]
                        else:
                            idxs.append(i)
        if hits:
            last_rev = events[n - 1].kv.mod_revision
            self._flush(self._core.header(), last_rev, hits, events, full, bare)

    def _flush(
        self,
        header: tuple[int, int, int, int],
        rev: int,
        hits: dict[_Watcher, list[int]],
        events: Sequence[kv_pb2.Event],
        full: list[bytes | None],
        bare: list[bytes | None],
    ) -> None:
        """Send a batch's matched events (revisions up to ``rev``), one response
        per watcher."""
        cluster_id, member_id, _, term = header
        prefix = _WatchResponse(
            header=_ResponseHeader(
                cluster_id=cluster_id, member_id=member_id, revision=rev, raft_term=term
            )
        ).SerializeToString()
        for w, idxs in hits.items():
            if not w.synced:
                buf = w.buffer
                if buf is not None:
                    buf.extend(events[i] for i in idxs)
                    w.buffered += len(idxs)
                    if w.buffered > self._buffer_limit:
                        w.buffer = None  # read them from the log instead
                continue
            w.next_rev = rev + 1
            drop = w.drop
            cache = full if w.prev_kv else bare
            fields = []
            for i in idxs:
                ev = events[i]
                if drop and ev.type in drop:
                    continue
                f = cache[i]
                if f is None:
                    f = cache[i] = _event_field(ev, w.prev_kv)
                fields.append(f)
            if fields:
                self._send_events(w, prefix, fields)

    # -- catching up ---------------------------------------------------------------
    def _start_catch_up(self, w: _Watcher, read_to: int) -> None:
        w.synced = False
        w.buffer = []
        w.buffered = 0
        w.read_to = read_to
        self._index.add(w)
        w.task = asyncio.ensure_future(self._catch_up(w))

    def _resync(self, seen_rev: int, read_to: int) -> None:
        for w in list(self._index):
            if w.synced:
                w.next_rev = max(w.next_rev, seen_rev + 1)
                self._start_catch_up(w, read_to)
            elif w.read_to < read_to:
                w.read_to = read_to

    async def _catch_up(self, w: _Watcher) -> None:
        """Bring ``w`` from ``w.next_rev`` to synced.

        From the moment the watcher entered the index, every live batch's matching
        events land in ``w.buffer``; ``w.read_to`` (the core's revision then, or the
        hub's if higher) bounds what may have been applied without reaching the
        buffer. The log is read from ``w.next_rev`` until it has covered
        ``w.read_to``; then the buffer is replayed, skipping what the reads already
        sent (``mod_revision < w.next_rev``), and the watcher turns synced, all in
        one step on the loop: no event is missed and none is sent twice.
        """
        loop = asyncio.get_running_loop()
        core = self._core
        try:
            while True:
                if w.buffer is None:  # overflowed: read what it dropped from the log
                    w.buffer = []
                    w.buffered = 0
                    w.read_to = self._current_rev()
                if w.next_rev > w.read_to:
                    break
                try:
                    data = await loop.run_in_executor(
                        None,
                        core.events_since,
                        w.key,
                        w.range_end,
                        w.next_rev,
                        self._catch_up_limit,
                    )
                except Exception as exc:  # noqa: BLE001 - ends this watcher only
                    self._catch_up_failed(w, exc)
                    return
                if w.task is None:
                    return  # canceled meanwhile
                batch = _EventBatch.FromString(data)
                events = [ev for ev in batch.events if ev.kv.mod_revision >= w.next_rev]
                if events:
                    self._send_catch_up(w, batch.revision, events)
                    w.next_rev = events[-1].kv.mod_revision + 1
                else:
                    # Nothing more in the log: it is complete up to its revision.
                    w.next_rev = max(w.next_rev, batch.revision + 1)
            self._join(w)
        except asyncio.CancelledError:
            pass

    def _join(self, w: _Watcher) -> None:
        buf = w.buffer or []
        w.buffer = None
        w.buffered = 0
        w.task = None
        w.synced = True
        group: list[kv_pb2.Event] = []
        group_rev = -1
        for ev in buf:
            rev = ev.kv.mod_revision
            if rev < w.next_rev:
                continue
            if rev != group_rev and group:
                self._send_catch_up(w, group_rev, group)
                group = []
            group_rev = rev
            group.append(ev)
        if group:
            self._send_catch_up(w, group_rev, group)
            w.next_rev = group_rev + 1

    def _catch_up_failed(self, w: _Watcher, exc: BaseException) -> None:
        self._index.remove(w)
        w.synced = False
        w.buffer = None
        w.task = None
        code, message = error_of(exc)
        header = self._header()
        if code == OUT_OF_RANGE:
            # As etcd: the watcher keeps its id (a later cancel is answered) but gets
            # nothing more; the response carries a header with revision 0.
            compact_rev = int(self._core.status()["compact_revision"])
            header.revision = 0
            resp = _WatchResponse(
                header=header, watch_id=w.id, compact_revision=compact_rev, canceled=True
            )
        else:
            resp = _WatchResponse(
                header=header, watch_id=w.id, canceled=True, cancel_reason=message
            )
        w.ws.stream.send(resp.SerializeToString())
