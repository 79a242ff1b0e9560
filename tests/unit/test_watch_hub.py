"""WatchHub against a fake core, driven through a real Bridge with fake bridge items."""

from __future__ import annotations

import asyncio
import random
import threading
import time

from etcdcore._core import CoreError
from etcdcore.bridge import Bridge
from etcdcore.proto.etcdcore import internal_pb2
from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.proto.mvccpb import kv_pb2
from etcdcore.services.watch_hub import WATCH_METHOD, WatchHub

CLUSTER_ID, MEMBER_ID, TERM = 0x1234, 0x5678, 3
PUT, DELETE = kv_pb2.Event.PUT, kv_pb2.Event.DELETE
NOPUT, NODELETE = rpc_pb2.WatchCreateRequest.NOPUT, rpc_pb2.WatchCreateRequest.NODELETE
COMPACTED = "etcdserver: mvcc: required revision has been compacted"


def in_range(key: bytes, start: bytes, end: bytes) -> bool:
    if not end:
        return key == start
    if end == b"\x00":
        return key >= start
    return start <= key < end


class FakeCore:
    """The slice of Core the hub uses, over an in-memory event log."""

    def __init__(self) -> None:
        self.rev = 1
        self.compact_revision = 0
        self.kvs: dict[bytes, kv_pb2.KeyValue] = {}
        self.log: list[kv_pb2.Event] = []
        self.sent: dict[int, list[bytes]] = {}
        self.ended: dict[int, tuple[int, str]] = {}
        self.reads = 0
        # When set, events_since computes its answer, then waits for the gate
        # (snapshot_first) or waits first and reads after.
        self.gate: threading.Event | None = None
        self.reading = threading.Event()
        self.snapshot_first = True
        self.event_feed = False

    # -- Core API ----------------------------------------------------------------
    def header(self) -> tuple[int, int, int, int]:
        return CLUSTER_ID, MEMBER_ID, self.rev, TERM

    def status(self) -> dict[str, int]:
        return {"revision": self.rev, "compact_revision": self.compact_revision}

    def events_since(self, key: bytes, range_end: bytes, start: int, limit: int) -> bytes:
        self.reads += 1
        if self.gate is not None and not self.snapshot_first:
            self.reading.set()
            self.gate.wait(5)
        if start < self.compact_revision:
            raise CoreError(11, COMPACTED)
        out: list[kv_pb2.Event] = []
        last = 0
        for ev in self.log:
            rev = ev.kv.mod_revision
            if rev < start or not in_range(ev.kv.key, key, range_end):
                continue
            if len(out) >= limit and rev != last:
                break
            out.append(ev)
            last = rev
        data = internal_pb2.EventBatch(revision=self.rev, events=out).SerializeToString()
        if self.gate is not None and self.snapshot_first:
            self.reading.set()
            self.gate.wait(5)
        return data

    def stream_send(self, call_id: int, payload: bytes) -> bool:
        self.sent.setdefault(call_id, []).append(payload)
        return True

    def stream_send_many(self, items: list[tuple[int, bytes]]) -> list[int]:
        return [call_id for call_id, payload in items if not self.stream_send(call_id, payload)]

    def stream_end(self, call_id: int, code: int, message: str) -> None:
        self.ended[call_id] = (code, message)

    def set_event_feed(self, on: bool) -> None:
        self.event_feed = on

    # -- writes ------------------------------------------------------------------
    def txn(self, *ops: tuple) -> tuple[int, bytes]:
        """Apply ("put", key, value) / ("delete", key) ops at one new revision."""
        self.rev += 1
        rev = self.rev
        events = []
        for op in ops:
            key = op[1]
            prev = self.kvs.get(key)
            ev = kv_pb2.Event()
            if op[0] == "put":
                kv = kv_pb2.KeyValue(
                    key=key,
                    value=op[2],
                    mod_revision=rev,
                    create_revision=prev.create_revision if prev else rev,
                    version=prev.version + 1 if prev else 1,
                )
                self.kvs[key] = kv
                ev.type = PUT
                ev.kv.CopyFrom(kv)
            else:
                del self.kvs[key]
                ev.type = DELETE
                ev.kv.CopyFrom(kv_pb2.KeyValue(key=key, mod_revision=rev))
            if prev is not None:
                ev.prev_kv.CopyFrom(prev)
            events.append(ev)
        self.log.extend(events)
        return rev, internal_pb2.EventBatch(revision=rev, events=events).SerializeToString()


class Harness:
    def __init__(self, **hub_args) -> None:
        self.core = FakeCore()
        self.bridge = Bridge(self.core)
        self.hub = WatchHub(self.core, **hub_args)
        self.hub.register(self.bridge)
        self._calls = 0
        self._taken: dict[int, int] = {}

    async def settle(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    async def open(self) -> int:
        self._calls += 1
        self.bridge.dispatch([("open", self._calls, WATCH_METHOD)])
        await self.settle()
        return self._calls

    async def request(self, call: int, req: rpc_pb2.WatchRequest) -> None:
        self.bridge.dispatch([("msg", call, req.SerializeToString())])
        await self.settle()

    async def create(self, call: int, key: bytes, **fields) -> None:
        creq = rpc_pb2.WatchCreateRequest(key=key, **fields)
        await self.request(call, rpc_pb2.WatchRequest(create_request=creq))

    async def cancel(self, call: int, watch_id: int) -> None:
        creq = rpc_pb2.WatchCancelRequest(watch_id=watch_id)
        await self.request(call, rpc_pb2.WatchRequest(cancel_request=creq))

    async def progress(self, call: int) -> None:
        preq = rpc_pb2.WatchProgressRequest()
        await self.request(call, rpc_pb2.WatchRequest(progress_request=preq))

    async def close(self, call: int) -> None:
        self.bridge.dispatch([("close", call)])
        await self.settle()

    def publish(self, rev: int, batch: bytes) -> None:
        self.bridge.dispatch([("events", rev, batch)])

    async def write(self, *ops: tuple) -> int:
        rev, batch = self.core.txn(*ops)
        self.publish(rev, batch)
        await self.settle()
        return rev

    async def put(self, key: bytes, value: bytes = b"v") -> int:
        return await self.write(("put", key, value))

    def take(self, call: int) -> list[rpc_pb2.WatchResponse]:
        """The responses sent on ``call`` since the last take."""
        sent = self.core.sent.get(call, [])
        start = self._taken.get(call, 0)
        self._taken[call] = len(sent)
        return [rpc_pb2.WatchResponse.FromString(p) for p in sent[start:]]

    async def wait_sent(self, call: int, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.core.sent.get(call, [])) - self._taken.get(call, 0) < count:
            assert time.monotonic() < deadline, "timed out waiting for responses"
            await asyncio.sleep(0.002)
        await self.settle()

    async def wait_events(self, call: int, count: int, timeout: float = 5.0) -> None:
        """Until ``count`` events in all were sent on ``call`` (taken or not)."""
        deadline = time.monotonic() + timeout
        while True:
            sent = self.core.sent.get(call, [])
            if sum(len(rpc_pb2.WatchResponse.FromString(p).events) for p in sent) >= count:
                break
            assert time.monotonic() < deadline, "timed out waiting for events"
            await asyncio.sleep(0.002)
        await self.settle()


def run(test) -> None:
    """Run the coroutine function ``test`` on a fresh event loop."""

    async def main() -> None:
        await test()

    asyncio.run(main())


def keys_of(resp: rpc_pb2.WatchResponse) -> list[bytes]:
    return [ev.kv.key for ev in resp.events]


def event_revs(resps: list[rpc_pb2.WatchResponse]) -> list[int]:
    return [ev.kv.mod_revision for r in resps for ev in r.events]


# -- create / cancel ---------------------------------------------------------------


def test_create_reply_carries_watch_id_and_current_revision() -> None:
    async def t() -> None:
        h = Harness()
        await h.put(b"a")
        call = await h.open()
        await h.create(call, b"foo")
        [resp] = h.take(call)
        assert resp.created and not resp.canceled
        assert resp.watch_id == 0
        assert resp.header.revision == h.core.rev == 2
        assert (resp.header.cluster_id, resp.header.member_id) == (CLUSTER_ID, MEMBER_ID)
        assert resp.header.raft_term == TERM

    run(t)


def test_server_chosen_ids_count_from_zero_per_stream() -> None:
    async def t() -> None:
        h = Harness()
        one, two = await h.open(), await h.open()
        for _ in range(3):
            await h.create(one, b"k")
        await h.create(two, b"k")
        assert [r.watch_id for r in h.take(one)] == [0, 1, 2]
        assert [r.watch_id for r in h.take(two)] == [0]

    run(t)


def test_client_chosen_watch_id_is_used_and_skipped_by_server_ids() -> None:
    async def t() -> None:
        h = Harness()
        call = await h.open()
        await h.create(call, b"k", watch_id=1)
        await h.create(call, b"k")
        await h.create(call, b"k")
        assert [r.watch_id for r in h.take(call)] == [1, 0, 2]
        await h.put(b"k")
        assert sorted(r.watch_id for r in h.take(call)) == [0, 1, 2]

    run(t)


def test_duplicate_watch_id_is_refused_with_invalid_id() -> None:
    async def t() -> None:
        h = Harness()
        call = await h.open()
        await h.create(call, b"k", watch_id=7)
        await h.create(call, b"other", watch_id=7)
        _, resp = h.take(call)
        assert resp.watch_id == -1 and resp.created and resp.canceled
        assert resp.cancel_reason == "mvcc: duplicate watch ID provided on the WatchStream"
        await h.put(b"other")
        assert h.take(call) == []
        assert h.hub.watcher_count() == 1

    run(t)


def test_empty_range_and_negative_start_are_refused() -> None:
    async def t() -> None:
        h = Harness()
        call = await h.open()
        await h.create(call, b"b", range_end=b"a")
        await h.create(call, b"a", start_revision=-1)
        empty, negative = h.take(call)
        assert (empty.watch_id, empty.created, empty.canceled) == (-1, True, True)
        assert empty.cancel_reason == "mvcc: watcher range is empty"
        assert (negative.watch_id, negative.created, negative.canceled) == (-1, True, True)
        assert negative.cancel_reason == COMPACTED
        assert h.hub.watcher_count() == 0

    run(t)


def test_cancel_answers_canceled_and_stops_delivery() -> None:
    async def t() -> None:
        h = Harness()
        call = await h.open()
        await h.create(call, b"k")
        h.take(call)
        await h.cancel(call, 0)
        [resp] = h.take(call)
        assert resp.canceled and resp.watch_id == 0 and not resp.created
        assert resp.header.revision == h.core.rev
        await h.put(b"k")
        assert h.take(call) == []
        await h.cancel(call, 0)  # unknown id: no answer, as etcd
        assert h.take(call) == []
        assert h.hub.watcher_count() == 0

    run(t)


def test_closing_the_stream_drops_its_watchers() -> None:
    async def t() -> None:
        h = Harness()
        call, other = await h.open(), await h.open()
        await h.create(call, b"k")
        await h.create(call, b"a", range_end=b"z")
        await h.create(other, b"k")
        assert h.hub.watcher_count() == 3
        await h.close(call)
        assert h.hub.watcher_count() == 1
        assert h.core.ended[call] == (0, "")
        h.take(call)
        h.take(other)
        await h.put(b"k")
        assert h.take(call) == []
        assert len(h.take(other)) == 1

    run(t)


def test_a_half_closed_stream_keeps_its_watchers_until_the_client_leaves() -> None:
    async def t() -> None:
        h = Harness()
        call = await h.open()
        await h.create(call, b"k")
        h.take(call)
        h.bridge.dispatch([("halfclose", call)])
        await h.settle()
        assert h.hub.watcher_count() == 1
        await h.put(b"k")
        assert len(h.take(call)) == 1
        await h.close(call)
        assert h.hub.watcher_count() == 0

    run(t)


def test_event_feed_is_on_only_while_a_watch_stream_is_open() -> None:
    async def t() -> None:
        h = Harness()
        assert not h.core.event_feed
        call, other = await h.open(), await h.open()
        assert h.core.event_feed
        await h.close(call)
        assert h.core.event_feed
        await h.close(other)
        assert not h.core.event_feed

    run(t)


# -- live events ------------------------------------------------------------------


def test_event_on_watched_key_is_delivered() -> None:
    async def t() -> None:
        h = Harness()
        call = await h.open()
        await h.create(call, b"foo")
        h.take(call)
        rev = await h.put(b"foo", b"bar")
        [resp] = h.take(call)
        assert resp.watch_id == 0 and resp.header.revision == rev
        [ev] = resp.events
        assert ev.type == PUT and ev.kv.key == b"foo" and ev.kv.value == b"bar"
        assert ev.kv.mod_revision == rev

    run(t)


def test_event_on_other_key_is_not_delivered() -> None:
    async def t() -> None:
        h = Harness()
        call = await h.open()
        await h.create(call, b"foo")
        h.take(call)
        await h.put(b"fo")
        await h.put(b"foo1")
        assert h.take(call) == []

    run(t)


def test_prefix_range_delivers_only_keys_under_the_prefix() -> None:
    async def t() -> None:
        h = Harness()
        call = await h.open()
        await h.create(call, b"app/", range_end=b"app0")
        h.take(call)
        for key in (b"app", b"app/", b"app/x", b"app/y/z", b"app0", b"b"):
            await h.put(key)
        assert [keys_of(r) for r in h.take(call)] == [[b"app/"], [b"app/x"], [b"app/y/z"]]

    run(t)


def test_from_key_range_delivers_keys_at_or_after_the_key() -> None:
    async def t() -> None:
        h = Harness()
        call = await h.open()
        await h.create(call, b"m", range_end=b"\x00")
        h.take(call)
        for key in (b"a", b"l\xff", b"m", b"m1", b"zzz"):
            await h.put(key)
        assert [keys_of(r) for r in h.take(call)] == [[b"m"], [b"m1"], [b"zzz"]]

    run(t)


def test_batch_of_many_revisions_gives_one_response_per_watcher() -> None:
    async def t() -> None:
        h = Harness()
        call = await h.open()
        await h.create(call, b"k", range_end=b"l")
        h.take(call)
        rev1, b1 = h.core.txn(("put", b"k1", b"1"), ("put", b"k2", b"2"))
        rev2, _ = h.core.txn(("put", b"x", b"1"))
        rev3, b3 = h.core.txn(("delete", b"k1"))
        events = internal_pb2.EventBatch.FromString(b1).events
        events.extend(internal_pb2.EventBatch.FromString(b3).events)
        merged = internal_pb2.EventBatch(revision=rev3, events=list(events))
        h.publish(rev3, merged.SerializeToString())
        await h.settle()
        [resp] = h.take(call)
        assert resp.header.revision == rev3
        assert keys_of(resp) == [b"k1", b"k2", b"k1"]
        assert [e.kv.mod_revision for e in resp.events] == [rev1, rev1, rev3]
        assert resp.events[2].type == DELETE

    run(t)


def test_noput_filter_drops_puts_and_nodelete_drops_deletes() -> None:
    async def t() -> None:
        h = Harness()
        call = await h.open()
        await h.create(call, b"k", filters=[NOPUT])
        await h.create(call, b"k", filters=[NODELETE])
        h.take(call)
        await h.put(b"k")
        [put_resp] = h.take(call)
        assert put_resp.watch_id == 1 and put_resp.events[0].type == PUT
        await h.write(("delete", b"k"))
        [del_resp] = h.take(call)
        assert del_resp.watch_id == 0 and del_resp.events[0].type == DELETE

    run(t)


def test_prev_kv_is_sent_only_when_asked() -> None:
    async def t() -> None:
        h = Harness()
        await h.put(b"k", b"old")
        call = await h.open()
        await h.create(call, b"k", prev_kv=True)
        await h.create(call, b"k")
        h.take(call)
        await h.put(b"k", b"new")
        by_id = {r.watch_id: r.events[0] for r in h.take(call)}
        assert by_id[0].HasField("prev_kv") and by_id[0].prev_kv.value == b"old"
        assert not by_id[1].HasField("prev_kv")
        assert by_id[1].kv.value == b"new"

    run(t)


def test_future_start_revision_waits_for_it() -> None:
    async def t() -> None:
        h = Harness()
        call = await h.open()
        await h.create(call, b"k", start_revision=h.core.rev + 2)
        h.take(call)
        await h.put(b"k", b"too-early")
        assert h.take(call) == []
        rev = await h.put(b"k", b"on-time")
        assert event_revs(h.take(call)) == [rev]

    run(t)


def test_fragmenting_splits_a_large_batch() -> None:
    async def t() -> None:
        h = Harness(max_response_bytes=300)
        call = await h.open()
        await h.create(call, b"k", range_end=b"l", fragment=True)
        await h.create(call, b"k", range_end=b"l")
        h.take(call)
        ops = [("put", b"k%d" % i, b"x" * 100) for i in range(5)]
        await h.write(*ops)
        resps = h.take(call)
        frags = [r for r in resps if r.watch_id == 0]
        whole = [r for r in resps if r.watch_id == 1]
        assert len(frags) > 1
        assert [r.fragment for r in frags] == [True] * (len(frags) - 1) + [False]
        assert all(r.ByteSize() < 300 for r in frags)
        assert [k for r in frags for k in keys_of(r)] == [op[1] for op in ops]
        assert len(whole) == 1 and len(whole[0].events) == 5 and not whole[0].fragment

    run(t)


def test_slow_or_gone_client_does_not_stop_other_streams() -> None:
    async def t() -> None:
        h = Harness()
        gone, live = await h.open(), await h.open()
        await h.create(gone, b"k")
        await h.create(live, b"k")
        h.take(live)
        real_send = h.core.stream_send
        h.core.stream_send = lambda call_id, payload: (
            False if call_id == gone else real_send(call_id, payload)
        )
        await h.put(b"k")
        await h.put(b"k")
        assert len(h.take(live)) == 2

    run(t)


# -- catch-up -----------------------------------------------------------------------


def test_catch_up_from_old_revision_sends_history() -> None:
    async def t() -> None:
        h = Harness()
        r1 = await h.put(b"k", b"1")
        await h.put(b"other")
        r3 = await h.write(("delete", b"k"))
        call = await h.open()
        await h.create(call, b"k", start_revision=r1)
        await h.wait_sent(call, 2)
        created, history = h.take(call)
        assert created.created and created.header.revision == r3
        assert event_revs([history]) == [r1, r3]
        assert history.header.revision == r3
        rev = await h.put(b"k", b"live")
        assert event_revs(h.take(call)) == [rev]

    run(t)


def test_catch_up_reads_in_chunks_without_splitting_a_revision() -> None:
    async def t() -> None:
        h = Harness(catch_up_limit=3)
        for i in range(4):
            await h.write(("put", b"k%d" % i, b"a"), ("put", b"k%d" % i + b"x", b"b"))
        call = await h.open()
        await h.create(call, b"k", range_end=b"l", start_revision=1)
        await h.wait_sent(call, 3)
        resps = h.take(call)[1:]
        assert event_revs(resps) == [2, 2, 3, 3, 4, 4, 5, 5]
        assert all(len({ev.kv.mod_revision for ev in r.events}) <= 2 for r in resps)

    run(t)


def _catch_up_race(snapshot_first: bool) -> None:
    async def t() -> None:
        h = Harness()
        history = [await h.put(b"k%d" % i) for i in range(3)]
        h.core.gate = threading.Event()
        h.core.snapshot_first = snapshot_first
        call = await h.open()
        await h.create(call, b"k", range_end=b"l", start_revision=history[0])
        while not h.core.reading.is_set():
            await asyncio.sleep(0.002)
        # Applied and published while the log read is in flight.
        during = [await h.put(b"k%d" % i) for i in range(3, 6)]
        h.core.gate.set()
        await h.wait_events(call, 6)
        after = [await h.put(b"k%d" % i) for i in range(6, 8)]
        await asyncio.sleep(0.05)
        resps = h.take(call)
        assert resps[0].created
        assert event_revs(resps[1:]) == history + during + after

    run(t)


def test_catch_up_then_live_events_with_no_gap_or_duplicate() -> None:
    # The read saw none of the writes made while it was in flight.
    _catch_up_race(snapshot_first=True)


def test_catch_up_then_live_events_when_the_read_saw_the_concurrent_writes() -> None:
    # The read saw them too: each must still be sent once.
    _catch_up_race(snapshot_first=False)


def test_catch_up_buffer_overflow_falls_back_to_the_log() -> None:
    async def t() -> None:
        h = Harness(buffer_limit=2)
        history = [await h.put(b"k") for _ in range(2)]
        h.core.gate = threading.Event()
        call = await h.open()
        await h.create(call, b"k", start_revision=history[0])
        while not h.core.reading.is_set():
            await asyncio.sleep(0.002)
        during = [await h.put(b"k") for _ in range(5)]
        h.core.gate.set()
        await h.wait_events(call, 7)
        assert h.core.reads >= 2
        after = await h.put(b"k")
        assert event_revs(h.take(call)) == history + during + [after]

    run(t)


def test_compacted_start_cancels_with_compact_revision() -> None:
    async def t() -> None:
        h = Harness()
        for _ in range(5):
            await h.put(b"k")
        h.core.compact_revision = 4
        call = await h.open()
        await h.create(call, b"k", start_revision=2)
        await h.wait_sent(call, 2)
        created, canceled = h.take(call)
        assert created.created and not created.canceled and created.watch_id == 0
        assert canceled.canceled and not canceled.created
        assert canceled.watch_id == 0 and canceled.compact_revision == 4
        assert canceled.cancel_reason == "" and canceled.header.revision == 0
        await h.put(b"k")
        assert h.take(call) == []
        # As etcd: the id stays taken until the client cancels it.
        await h.cancel(call, 0)
        [resp] = h.take(call)
        assert resp.canceled and resp.watch_id == 0

    run(t)


def test_missed_revisions_are_read_from_the_log() -> None:
    async def t() -> None:
        h = Harness()
        call = await h.open()
        await h.create(call, b"k")
        h.take(call)
        skipped = h.core.txn(("put", b"k", b"unpublished"))[0]  # e.g. a snapshot install
        rev = await h.put(b"k", b"next")
        await h.wait_sent(call, 1)
        await asyncio.sleep(0.05)
        assert event_revs(h.take(call)) == [skipped, rev]

    run(t)


# -- progress -----------------------------------------------------------------------


def test_progress_request_answers_watch_id_minus_one_when_all_synced() -> None:
    async def t() -> None:
        h = Harness()
        await h.put(b"a")
        call = await h.open()
        await h.progress(call)
        assert h.take(call) == []  # no watchers: nothing, as etcd 3.5
        await h.create(call, b"k")
        h.take(call)
        await h.put(b"b")
        await h.progress(call)
        [resp] = h.take(call)
        assert resp.watch_id == -1 and not resp.events and not resp.created
        assert resp.header.revision == h.core.rev

    run(t)


def test_progress_request_is_ignored_while_a_watcher_catches_up() -> None:
    async def t() -> None:
        h = Harness()
        await h.put(b"k")
        h.core.gate = threading.Event()
        call = await h.open()
        await h.create(call, b"k", start_revision=1)
        while not h.core.reading.is_set():
            await asyncio.sleep(0.002)
        h.take(call)
        await h.progress(call)
        assert h.take(call) == []
        h.core.gate.set()
        await h.wait_sent(call, 1)
        h.take(call)
        await h.progress(call)
        assert [r.watch_id for r in h.take(call)] == [-1]

    run(t)


def test_progress_notify_sent_to_quiet_watchers_that_asked() -> None:
    async def t() -> None:
        h = Harness(progress_interval=0.05)
        call = await h.open()
        await h.create(call, b"k", progress_notify=True)
        await h.create(call, b"k")
        h.take(call)
        await asyncio.sleep(0.2)
        resps = h.take(call)
        assert resps and all(r.watch_id == 0 and not r.events for r in resps)
        assert all(r.header.revision == h.core.rev for r in resps)

    run(t)


# -- the index ------------------------------------------------------------------------


def test_range_index_matches_brute_force_under_churn() -> None:
    async def t() -> None:
        rnd = random.Random(7)
        h = Harness()
        call = await h.open()
        alphabet = [bytes([c]) for c in b"abcdefgh"]

        def rand_key() -> bytes:
            return b"".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 3)))

        live: dict[int, tuple[bytes, bytes]] = {}
        next_id = 1
        for step in range(400):
            if live and rnd.random() < 0.3:
                wid = rnd.choice(sorted(live))
                del live[wid]
                await h.cancel(call, wid)
            else:
                a, b = sorted((rand_key(), rand_key()))
                end = rnd.choice([b"", b"\x00", b + b"\x00"])
                await h.create(call, a, range_end=end, watch_id=next_id)
                live[next_id] = (a, end)
                next_id += 1
            if step % 5 == 0:
                h.take(call)
                key = rand_key()
                await h.put(key)
                got = sorted(r.watch_id for r in h.take(call))
                want = sorted(w for w, (a, end) in live.items() if in_range(key, a, end))
                assert got == want, (step, key)

    run(t)
