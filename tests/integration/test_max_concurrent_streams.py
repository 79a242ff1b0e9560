"""--max-concurrent-streams: the HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS each
client connection gets (etcd 3.5.2+, default math.MaxUint32).

The etcd 3.5.1 shipped for parity checks predates the flag, so these tests
check etcdcore against HTTP/2's rule itself: a client over the limit waits for
a stream to end before it may open another.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import Member

#: More streams than hyper's server allows by default (200).
MANY_STREAMS = 250


def _member(tmp_path: Path, *extra: str) -> Iterator[Member]:
    m = Member(data_dir=tmp_path / "m.etcd", extra=list(extra)).start()
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def two_streams_member(tmp_path: Path) -> Iterator[Member]:
    yield from _member(tmp_path, "--max-concurrent-streams=2")


@pytest.fixture
def default_member(tmp_path: Path) -> Iterator[Member]:
    yield from _member(tmp_path)


def _requests(key: bytes, done: threading.Event) -> Iterator[rpc_pb2.WatchRequest]:
    """One create request, then an open request side until ``done``."""
    yield rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key))
    done.wait()


def open_watch(watch: rpc_pb2_grpc.WatchStub, key: bytes) -> grpc.Future:
    """A watch stream that has been answered "created" (so it holds a stream)."""
    done = threading.Event()
    stream = watch.Watch(_requests(key, done), timeout=60)
    stream.add_done_callback(lambda _: done.set())
    first = next(stream)
    assert first.created
    return stream


def test_a_call_over_the_limit_waits_for_a_stream_to_end(two_streams_member: Member) -> None:
    with two_streams_member.channel() as ch:
        watch, kv = rpc_pb2_grpc.WatchStub(ch), rpc_pb2_grpc.KVStub(ch)
        first, second = open_watch(watch, b"a"), open_watch(watch, b"b")
        # A third stream on the same connection cannot start: the call waits
        # in the client until its deadline.
        with pytest.raises(grpc.RpcError) as err:
            kv.Range(rpc_pb2.RangeRequest(key=b"k"), timeout=1)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        first.cancel()
        assert kv.Range(rpc_pb2.RangeRequest(key=b"k"), timeout=10).header.revision >= 1
        second.cancel()


def test_the_limit_is_per_connection(two_streams_member: Member) -> None:
    # Channels to one target share a connection unless told otherwise.
    own_connection = [("grpc.use_local_subchannel_pool", 1)]
    with (
        two_streams_member.channel() as busy,
        grpc.insecure_channel(two_streams_member.endpoint, options=own_connection) as other,
    ):
        watch = rpc_pb2_grpc.WatchStub(busy)
        streams = [open_watch(watch, b"a"), open_watch(watch, b"b")]
        kv = rpc_pb2_grpc.KVStub(other)
        assert kv.Range(rpc_pb2.RangeRequest(key=b"k"), timeout=10).header.revision >= 1
        for s in streams:
            s.cancel()


def test_by_default_a_connection_holds_hundreds_of_streams(default_member: Member) -> None:
    with default_member.channel() as ch:
        watch = rpc_pb2_grpc.WatchStub(ch)
        streams = [open_watch(watch, f"k{i}".encode()) for i in range(MANY_STREAMS)]
        kv = rpc_pb2_grpc.KVStub(ch)
        assert kv.Range(rpc_pb2.RangeRequest(key=b"k"), timeout=10).header.revision >= 1
        for s in streams:
            s.cancel()


def test_an_out_of_range_value_is_refused(tmp_path: Path) -> None:
    m = Member(data_dir=tmp_path / "m.etcd", extra=["--max-concurrent-streams=4294967296"])
    m.start(wait=False)
    assert m.proc is not None
    assert m.proc.wait(30) == 2
    assert (
        'invalid value "4294967296" for flag -max-concurrent-streams: '
        'strconv.ParseUint: parsing "4294967296": value out of range'
    ) in m.log()
