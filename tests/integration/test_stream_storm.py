"""A stream storm against one etcdcore server (issue text: "thousands of
concurrent streams opened and dropped; clients vanishing mid-stream ... the
server stays up, memory returns to baseline after the storm, and a kill -9
afterwards recovers every acknowledged write").

Storm client processes (``stream_storm_client.py``) each open Watch and
LeaseKeepAlive streams over several connections; half of them then close
their channels, the other half are SIGKILLed with their streams open. A
writer thread puts keys the whole time and records every acknowledged put.
Memory is judged on the lowest RSS after each storm: once a storm is over
the server's RSS settles either near its floor or some 30-50 MiB above it,
alternately from one storm to the next (freed memory the allocator keeps or
returns), so a single reading says little. The baseline is the lowest reading
after the first half of the storms (which also grow once what every storm
reuses: allocator arenas, tables at their high-water size), compared with
the lowest after the second half. A leak raises every later reading.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import Member, free_port

CLIENT = str(Path(__file__).with_name("stream_storm_client.py"))
WRITER_PREFIX = b"storm/acked/"
#: How much the lowest post-storm RSS may grow from the first half of the
#: storms to the second. Measured with CI_SHAPE (12 000 streams in all): -6 to
#: +5 MiB (the writer's data included); with the watch hub made to keep every
#: watch stream whose client left (8 000 leaked, ~8 KiB each): +67 MiB.
RSS_TOLERANCE_KIB = 30 * 1024


@dataclass
class StormShape:
    """How many client processes, streams each, connections each, and storms
    in each half of the run."""

    clients: int
    streams: int
    connections: int
    storms: int


CI_SHAPE = StormShape(clients=4, streams=750, connections=4, storms=2)
SLOW_SHAPE = StormShape(clients=4, streams=2500, connections=8, storms=4)


def rss_kib(pid: int) -> int:
    """The process's resident set size (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def in_flight(metrics_url: str, method: str) -> int:
    """Calls of ``method`` started but not yet handled (/metrics)."""
    with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=10) as r:
        text = r.read().decode()
    pattern = re.compile(
        r'^grpc_server_(started|handled)_total\{[^}]*grpc_method="'
        + re.escape(method)
        + r'"[^}]*\} (\S+)$',
        re.M,
    )
    return sum(
        int(float(value)) * (1 if kind == "started" else -1)
        for kind, value in pattern.findall(text)
    )


def in_flight_streams(metrics_url: str) -> dict[str, int]:
    """Watch and LeaseKeepAlive calls started but not yet handled."""
    return {m: in_flight(metrics_url, m) for m in ("Watch", "LeaseKeepAlive")}


@dataclass
class Writer:
    """Puts keys under WRITER_PREFIX until stopped; remembers the acknowledged."""

    endpoint: str
    acked: dict[bytes, bytes] = field(default_factory=dict)
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)

    def _run(self) -> None:
        with grpc.insecure_channel(self.endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            n = 0
            while not self._stop.is_set():
                key, value = WRITER_PREFIX + b"%08d" % n, b"value-%d" % n
                n += 1
                try:
                    kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=5)
                except grpc.RpcError:
                    self.failures += 1
                    continue
                self.acked[key] = value
                time.sleep(0.002)


def storm(member: Member, lease_id: int, shape: StormShape) -> None:
    """One storm: every client opens its streams; then half close their
    channels and half are killed with SIGKILL while their streams are open."""
    procs = []
    for i in range(shape.clients):
        mode = "close" if i % 2 == 0 else "hold"
        args = [member.endpoint, shape.streams, shape.connections, lease_id, mode]
        procs.append(
            (
                mode,
                subprocess.Popen(
                    [sys.executable, CLIENT, *map(str, args)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    try:
        for _, p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line == f"ready {shape.streams}\n", f"storm client failed: {p.stderr.read()}"
        for mode, p in procs:
            if mode == "hold":
                p.send_signal(signal.SIGKILL)
        for _, p in procs:
            p.wait(60)
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def wait_streams_released(metrics_url: str, timeout: float = 60) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = in_flight_streams(metrics_url)
        if not any(counts.values()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def settled_rss(pid: int, samples: int = 5) -> int:
    """The lowest RSS over a few seconds (after the server's own timers ran)."""
    lowest = rss_kib(pid)
    for _ in range(samples - 1):
        time.sleep(0.5)
        lowest = min(lowest, rss_kib(pid))
    return lowest


@dataclass
class StormResult:
    member: Member
    metrics_url: str
    #: The lowest RSS after a storm of the first half, and of the second half.
    baseline_kib: int
    after_kib: int
    in_flight: dict[str, int]
    acked: dict[bytes, bytes]


def run_storms(tmp_path: Path, shape: StormShape) -> Iterator[StormResult]:
    metrics_port = free_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    member = Member(
        data_dir=tmp_path / "storm.etcd", extra=["--listen-metrics-urls", metrics_url]
    ).start()
    try:
        assert member.proc is not None
        pid = member.proc.pid
        with member.channel() as ch:
            lease_id = rpc_pb2_grpc.LeaseStub(ch).LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=3600)).ID
        writer = Writer(member.endpoint)
        writer.start()
        try:
            rss = []
            for _ in range(2 * shape.storms):
                storm(member, lease_id, shape)
                in_flight = wait_streams_released(metrics_url)
                rss.append(settled_rss(pid))
        finally:
            writer.stop()
        baseline, after = min(rss[: shape.storms]), min(rss[shape.storms :])
        yield StormResult(member, metrics_url, baseline, after, in_flight, writer.acked)
    finally:
        member.stop()


@pytest.fixture(scope="module")
def stormed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StormResult]:
    yield from run_storms(tmp_path_factory.mktemp("storm"), CI_SHAPE)


def test_server_still_answers_after_the_storm(stormed: StormResult) -> None:
    assert stormed.member.running
    with stormed.member.channel() as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        assert kv.Put(rpc_pb2.PutRequest(key=b"after", value=b"storm"), timeout=10).header.revision
        watch = rpc_pb2_grpc.WatchStub(ch)
        created = next(
            watch.Watch(
                iter([rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"x"))]),
                timeout=10,
            )
        )
        assert created.created


def test_every_stream_of_the_storm_is_released(stormed: StormResult) -> None:
    assert stormed.in_flight == {"Watch": 0, "LeaseKeepAlive": 0}


def test_memory_returns_to_baseline_after_the_storm(stormed: StormResult) -> None:
    grown = stormed.after_kib - stormed.baseline_kib
    assert grown <= RSS_TOLERANCE_KIB, (
        f"RSS {stormed.baseline_kib} KiB before, {stormed.after_kib} KiB after the storms"
    )


def test_kill9_after_the_storm_keeps_every_acknowledged_write(stormed: StormResult) -> None:
    member = stormed.member
    assert stormed.acked, "the writer got no put acknowledged"
    member.kill9()
    member.start()
    with member.channel() as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        resp = kv.Range(
            rpc_pb2.RangeRequest(key=WRITER_PREFIX, range_end=WRITER_PREFIX[:-1] + b"0"),
            timeout=30,
        )
    stored = {kv.key: kv.value for kv in resp.kvs}
    missing = [k for k, v in stormed.acked.items() if stored.get(k) != v]
    assert not missing, f"{len(missing)} of {len(stormed.acked)} acknowledged puts lost"


def test_an_observer_that_leaves_is_released(tmp_path: Path) -> None:
    """An Observe stream waiting for a leader ends when its client leaves."""
    metrics_url = f"http://127.0.0.1:{free_port()}"
    member = Member(
        data_dir=tmp_path / "observe.etcd", extra=["--listen-metrics-urls", metrics_url]
    ).start()
    try:
        procs = []
        for _ in range(3):
            script = (
                "import grpc, sys, time\n"
                "from etcdcore.proto.v3election import v3election_pb2, v3election_pb2_grpc\n"
                f"ch = grpc.insecure_channel({member.endpoint!r})\n"
                "stub = v3election_pb2_grpc.ElectionStub(ch)\n"
                "it = stub.Observe(v3election_pb2.LeaderRequest(name=b'nobody'))\n"
                "print('ready', flush=True)\n"
                "next(it)\n"
            )
            procs.append(
                subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
            )
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 30
        while in_flight(metrics_url, "Observe") < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert in_flight(metrics_url, "Observe") == 3
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
        while in_flight(metrics_url, "Observe") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert in_flight(metrics_url, "Observe") == 0
    finally:
        member.stop()


@pytest.mark.slow
def test_long_storm_releases_streams_and_memory(tmp_path: Path) -> None:
    """Eight storms of 10 000 streams each over 32 connections."""
    for result in run_storms(tmp_path, SLOW_SHAPE):
        assert result.member.running
        assert result.in_flight == {"Watch": 0, "LeaseKeepAlive": 0}
        assert result.after_kib - result.baseline_kib <= RSS_TOLERANCE_KIB
