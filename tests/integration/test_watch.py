"""Watch end to end: real servers driven by real clients (etcdctl, our client,
gRPC directly). Every event must reach a watcher once and in order whatever
happens around it: catch-up from the past into live events, a client that
stops reading, compaction, a leader change, a follower that installs a
leader's snapshot. And etcd's wire behaviour: packing, fragments, progress."""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cluster import Cluster, PartitionedCluster, status, wait_until
from etcdcore.client import Client
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import Member, etcd_bin

#: One event as a watcher saw it: key, mod revision, type (0 PUT, 1 DELETE).
Seen = tuple[bytes, int, int]

GRPC_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


class RawWatch:
    """One Watch call made with grpcio: requests go when sent, responses are
    read by a thread once :meth:`start_reading` is called (until then the
    client reads nothing, and the server can send only what HTTP/2 flow
    control lets through)."""

    def __init__(
        self,
        endpoint: str,
        *creates: rpc_pb2.WatchCreateRequest,
        options: list[tuple[str, object]] | None = None,
    ) -> None:
        self.channel = grpc.insecure_channel(endpoint, options=GRPC_OPTIONS + (options or []))
        self._requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
        for c in creates:
            self.send(rpc_pb2.WatchRequest(create_request=c))
        self.call = rpc_pb2_grpc.WatchStub(self.channel).Watch(iter(self._requests.get, None))
        self.responses: queue.Queue[rpc_pb2.WatchResponse | BaseException] = queue.Queue()
        self._reader: threading.Thread | None = None

    def send(self, req: rpc_pb2.WatchRequest) -> None:
        self._requests.put(req)

    def start_reading(self) -> RawWatch:
        def pump() -> None:
            try:
                for resp in self.call:
                    self.responses.put(resp)
            except BaseException as e:  # noqa: BLE001 - handed to the reader
                self.responses.put(e)

        self._reader = threading.Thread(target=pump, daemon=True)
        self._reader.start()
        return self

    def next(self, timeout: float = 10.0) -> rpc_pb2.WatchResponse:
        item = self.responses.get(timeout=timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    def collect(
        self, n: int, timeout: float = 60.0, until_canceled: bool = False
    ) -> tuple[list[Seen], list[rpc_pb2.WatchResponse]]:
        """Events until ``n`` were seen (or a cancel, with ``until_canceled``),
        and every response they came in (the created one skipped)."""
        seen: list[Seen] = []
        resps: list[rpc_pb2.WatchResponse] = []
        deadline = time.monotonic() + timeout
        while len(seen) < n:
            resp = self.next(max(0.1, deadline - time.monotonic()))
            if resp.created:
                continue
            resps.append(resp)
            seen.extend((e.kv.key, e.kv.mod_revision, e.type) for e in resp.events)
            if until_canceled and resp.canceled:
                break
        return seen, resps

    def close(self) -> None:
        self._requests.put(None)
        self.call.cancel()
        self.channel.close()


def create(prefix: bytes, **fields: object) -> rpc_pb2.WatchCreateRequest:
    return rpc_pb2.WatchCreateRequest(key=prefix, range_end=prefix_end(prefix), **fields)  # type: ignore[arg-type]


def write(
    endpoint: str, prefix: bytes, events: int, per_txn: int = 1, value: bytes = b"v", start: int = 0
) -> list[Seen]:
    """``events`` puts of distinct keys, ``per_txn`` per revision; the events
    a watcher of the prefix must see, in order."""
    out: list[Seen] = []
    with grpc.insecure_channel(endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        i = start
        while i < start + events:
            keys = [b"%s%08d" % (prefix, j) for j in range(i, min(i + per_txn, start + events))]
            ops = [
                rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=value)) for k in keys
            ]
            rev = kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=30).header.revision
            out.extend((k, rev, 0) for k in keys)
            i += len(keys)
    return out


def revision(endpoint: str) -> int:
    with grpc.insecure_channel(endpoint) as ch:
        r = rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"x"), timeout=10)
        return r.header.revision


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class RssPeak:
    """The highest resident size a process reaches while this is open."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_kib(pid)
        self._done = threading.Event()
        self._t = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, rss_kib(self.pid))

    def __enter__(self) -> RssPeak:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._t.join()


# -- catch-up into live ------------------------------------------------------------


def watch_with_etcdctl(m: Member, prefix: bytes, start: int, n: int) -> list[Seen]:
    """etcdctl watch -w json from ``start`` until ``n`` events were printed."""
    proc = m.etcdctl_popen("watch", "--prefix", prefix.decode(), f"--rev={start}", "-w", "json")
    seen: list[Seen] = []
    try:
        assert proc.stdout is not None
        while len(seen) < n:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "etcdctl ended"
            resp = json.loads(line)
            for e in resp.get("Events") or []:
                kv = e["kv"]
                seen.append(
                    (
                        base64.b64decode(kv["key"]),
                        int(kv["mod_revision"]),
                        1 if e.get("type") else 0,
                    )
                )
    finally:
        proc.kill()
        proc.wait()
    return seen


def watch_with_our_client(m: Member, prefix: bytes, start: int, n: int) -> list[Seen]:
    seen: list[Seen] = []
    with Client([m.endpoint]) as c:
        w = c.watch(prefix, prefix=True, start_revision=start)
        for events in w:
            seen.extend((e.kv.key, e.kv.mod_revision, int(e.type == "DELETE")) for e in events)
            if len(seen) >= n:
                break
        w.close()
    return seen


def watch_with_grpc(m: Member, prefix: bytes, start: int, n: int) -> list[Seen]:
    w = RawWatch(m.endpoint, create(prefix, start_revision=start)).start_reading()
    try:
        return w.collect(n)[0]
    finally:
        w.close()


WATCHERS = {
    "etcdctl": watch_with_etcdctl,
    "our-client": watch_with_our_client,
    "grpc": watch_with_grpc,
}


@pytest.mark.parametrize("client", WATCHERS)
def test_every_event_comes_once_in_order_from_the_past_into_live_events(
    member: Member, client: str
) -> None:
    prefix = b"cl/"
    history = write(member.endpoint, prefix, 3000, per_txn=3)
    start = history[0][1]
    live: list[Seen] = []
    writing = threading.Thread(
        target=lambda: live.extend(write(member.endpoint, prefix, 1500, start=3000))
    )
    writing.start()
    try:
        seen = WATCHERS[client](member, prefix, start, 4500)
    finally:
        writing.join()
    assert seen == history + live


def test_a_watcher_catching_up_while_history_before_its_start_is_compacted_misses_nothing(
    member: Member,
) -> None:
    prefix = b"cc/"
    # 200 keys, each overwritten 40 times: compaction has old versions to
    # remove all around the revisions the watcher reads back.
    rounds = [write(member.endpoint, prefix, 200, per_txn=10) for _ in range(40)]
    start = rounds[20][0][1]
    history = [e for r in rounds[20:] for e in r]
    w = RawWatch(member.endpoint, create(prefix, start_revision=start)).start_reading()
    assert w.next().created
    with grpc.insecure_channel(member.endpoint) as ch:
        rpc_pb2_grpc.KVStub(ch).Compact(
            rpc_pb2.CompactionRequest(revision=start, physical=True), timeout=60
        )
    live = write(member.endpoint, prefix, 1000, per_txn=10)
    seen, resps = w.collect(len(history) + len(live))
    w.close()
    assert seen == history + live
    assert not any(r.canceled for r in resps)


# -- a client that does not read -----------------------------------------------------


def slow_client_run(
    tmp_path: Path, events: int, with_slow: bool, compact: bool = False, value_size: int = 100
) -> dict[str, object]:
    """Writes ``events`` events (100 per revision) while a live watcher reads
    them and, with ``with_slow``, another never reads. Returns the server's
    peak RSS growth, what the live one saw, and what the slow one got once it
    read (until it was canceled, if ``compact`` compacted its history first)."""
    m = Member(data_dir=tmp_path / ("slow.etcd" if with_slow else "control.etcd")).start()
    try:
        assert m.proc is not None
        prefix = b"slow/"
        live = RawWatch(m.endpoint, create(prefix)).start_reading()
        assert live.next().created
        slow = None
        if with_slow:
            slow = RawWatch(m.endpoint, create(prefix))
        base = rss_kib(m.proc.pid)
        with RssPeak(m.proc.pid) as peak:
            written = write(m.endpoint, prefix, events, per_txn=100, value=b"v" * value_size)
            live_seen, _ = live.collect(events, timeout=120)
        out: dict[str, object] = {
            "growth_kib": peak.peak - base,
            "written": written,
            "live": live_seen,
        }
        if slow is not None:
            if compact:
                with grpc.insecure_channel(m.endpoint) as ch:
                    rpc_pb2_grpc.KVStub(ch).Compact(
                        rpc_pb2.CompactionRequest(revision=written[-1][1], physical=True),
                        timeout=60,
                    )
            slow.start_reading()
            assert slow.next().created
            seen, resps = slow.collect(events, timeout=600, until_canceled=compact)
            out["slow"] = seen
            out["slow_last"] = resps[-1]
            slow.close()
        live.close()
        return out
    finally:
        m.stop()


#: What a client that never reads may cost the server beyond the same load
#: without it: its stream's send buffer (4 MiB), the ring of recent batches
#: (16 MiB), what HTTP/2 flow control lets sit in buffers, and allocator slack.
SLOW_CLIENT_BOUND_KIB = 64 * 1024


def check_slow_client(tmp_path: Path, events: int) -> None:
    control = slow_client_run(tmp_path, events, with_slow=False)
    run = slow_client_run(tmp_path, events, with_slow=True)
    assert control["live"] == control["written"]
    # The reading watcher got everything while the other read nothing...
    assert run["live"] == run["written"]
    # ...the server's memory did not follow the slow one's backlog...
    extra = int(run["growth_kib"]) - int(control["growth_kib"])  # type: ignore[call-overload]
    assert extra < SLOW_CLIENT_BOUND_KIB, (run["growth_kib"], control["growth_kib"])
    # ...and once it read, it got every event, once, in order.
    assert run["slow"] == run["written"]


def test_a_client_that_never_reads_costs_bounded_memory_and_holds_up_nobody(
    tmp_path: Path,
) -> None:
    check_slow_client(tmp_path, 100_000)


@pytest.mark.slow
def test_a_client_that_never_reads_a_million_events_costs_bounded_memory(tmp_path: Path) -> None:
    check_slow_client(tmp_path, 1_000_000)


def test_a_slow_client_whose_history_was_compacted_meanwhile_is_canceled(tmp_path: Path) -> None:
    # 50 MB of events: more than the server keeps in memory for watchers
    # that fell behind, so the rest must come from the (compacted) backend.
    run = slow_client_run(tmp_path, 50_000, with_slow=True, compact=True, value_size=1000)
    written, seen = run["written"], run["slow"]
    last = run["slow_last"]
    assert isinstance(last, rpc_pb2.WatchResponse)
    assert last.canceled and last.compact_revision == written[-1][1]  # type: ignore[index]
    # What it got before is the start of the history, in order, nothing twice.
    assert seen == written[: len(seen)]  # type: ignore[index]
    assert len(seen) < len(written)  # type: ignore[arg-type]


# -- packing, fragments, progress ----------------------------------------------------


def test_events_queued_for_a_client_that_was_not_reading_come_packed(member: Member) -> None:
    # HTTP/2's initial 64 KiB window, kept (no BDP probing): the 3 MB backlog
    # cannot all sit in the client's transport while it does not read.
    w = RawWatch(member.endpoint, create(b"pk/"), options=[("grpc.http2.bdp_probe", 0)])
    written = write(member.endpoint, b"pk/", 3000, value=b"v" * 1000)
    w.start_reading()
    assert w.next().created
    seen, resps = w.collect(len(written))
    assert seen == written
    # One response per revision would be 3000: the backlog is packed.
    assert len(resps) < len(written) / 10, len(resps)
    w.close()


@pytest.fixture(params=["etcdcore", "etcd"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Member]:
    command = [etcd_bin("etcd")] if request.param == "etcd" else None
    m = Member(
        data_dir=tmp_path / "t.etcd",
        extra=["--experimental-watch-progress-notify-interval=200ms"],
        **({"command": command} if command else {}),  # type: ignore[arg-type]
    ).start()
    try:
        yield m
    finally:
        m.stop()


def test_a_revision_larger_than_the_limit_is_fragmented_as_etcd_does(target: Member) -> None:
    value = b"x" * 100_000
    write(target.endpoint, b"fr/", 25, value=value)
    w = RawWatch(target.endpoint, create(b"fr/", prev_kv=True, fragment=True)).start_reading()
    assert w.next().created
    with grpc.insecure_channel(target.endpoint) as ch:
        rpc_pb2_grpc.KVStub(ch).DeleteRange(
            rpc_pb2.DeleteRangeRequest(key=b"fr/", range_end=b"fr0"), timeout=30
        )
    seen, resps = w.collect(25)
    w.close()
    # 25 deletes of 100 kB values (their prev_kv) in one revision: over
    # etcd's 2 MiB (--max-request-bytes + 512 KiB), so in fragments.
    assert [len(r.events) for r in resps] == [20, 5]
    assert [r.fragment for r in resps] == [True, False]
    assert all(e.prev_kv.value == value for r in resps for e in r.events)
    assert len({rev for _, rev, _ in seen}) == 1


def test_a_quiet_watcher_that_asked_gets_progress_notifications(target: Member) -> None:
    rev = revision(target.endpoint)
    w = RawWatch(
        target.endpoint, rpc_pb2.WatchCreateRequest(key=b"quiet", progress_notify=True)
    ).start_reading()
    assert w.next().created
    notes = [w.next(timeout=5) for _ in range(2)]
    w.close()
    for n in notes:
        assert n.watch_id == 0 and not n.events and not n.canceled
        assert n.header.revision == rev


def test_a_progress_request_is_answered_at_the_current_revision(member: Member) -> None:
    w = RawWatch(member.endpoint, rpc_pb2.WatchCreateRequest(key=b"pr")).start_reading()
    assert w.next().created
    rev = write(member.endpoint, b"other/", 1)[0][1]
    w.send(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))
    resp = w.next()
    w.close()
    assert (resp.watch_id, list(resp.events), resp.header.revision) == (-1, [], rev)


# -- the cluster ---------------------------------------------------------------------


def test_a_watch_on_a_follower_sees_every_event_once_across_a_leader_change(
    tmp_path: Path,
) -> None:
    c = Cluster.create(tmp_path, 3).start()
    try:
        leader = c.leader()
        follower = c.followers()[0]
        w = RawWatch(follower.endpoint, create(b"lc/")).start_reading()
        assert w.next().created
        stop = threading.Event()
        acked: list[Seen] = []

        def writer() -> None:
            i = 0
            while not stop.is_set():
                try:
                    acked.extend(write(follower.endpoint, b"lc/", 1, start=i))
                except grpc.RpcError:
                    time.sleep(0.05)  # no leader for a moment; an unacked write may commit
                i += 1

        t = threading.Thread(target=writer)
        t.start()
        wait_until(lambda: len(acked) >= 200, timeout=30)
        leader.kill9()
        c.leader(timeout=20, among=[m for m in c.members if m is not leader])
        n = len(acked)
        wait_until(lambda: len(acked) >= n + 200, timeout=30)
        stop.set()
        t.join()
        final = revision(follower.endpoint)
        seen, _ = w.collect(len(acked))
        while not seen or seen[-1][1] < final:
            seen += w.collect(1)[0]
        w.close()
        revs = [rev for _, rev, _ in seen]
        # Every revision from the first on is a write under the prefix: each
        # comes once, in order, and every acknowledged write is among them.
        assert revs == list(range(revs[0], final + 1))
        assert set(acked) <= set(seen)
    finally:
        c.stop()


def test_a_watch_on_a_follower_sees_every_event_once_across_a_snapshot_install(
    tmp_path: Path,
) -> None:
    pc = PartitionedCluster(tmp_path)
    for m in pc.cluster.members:
        m.extra += ["--snapshot-count", "1000"]
    try:
        c = pc.cluster.start()
        leader = c.leader()
        follower = c.followers()[0]
        w = RawWatch(follower.endpoint, create(b"sn/")).start_reading()
        assert w.next().created
        before = write(leader.endpoint, b"sn/", 100)
        wait_until(
            lambda: (s := status(follower)) is not None and s.header.revision >= before[-1][1]
        )
        pc.isolate(follower)
        # More entries than the leader keeps behind its snapshot (5000): the
        # follower can only catch up by installing the leader's backend.
        behind = write(leader.endpoint, b"sn/", 6000, start=100)
        pc.heal()
        after = write(leader.endpoint, b"sn/", 100, start=6100)
        seen, _ = w.collect(6200, timeout=180)
        w.close()
        assert seen == before + behind + after
        assert "installed the leader's snapshot" in follower.log()
    finally:
        pc.close()
