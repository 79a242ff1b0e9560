"""Hostile input, side by side with the real etcd 3.5.1 (issue 5).

One etcdcore and one real etcd live for the whole module. Every test sends the
same bad request to both over raw gRPC and asserts the same gRPC status code
and message (or, where etcd answers, the same answer minus the response
header), and an autouse fixture checks that both still serve a normal Range
afterwards.

Both servers see exactly the same sequence of requests, so their revisions,
compaction points and lease tables stay in step; tests that depend on that
state say so. Only what differs by nature is normalized: response headers
(cluster/member ids, raft terms), random lease ids, and the protobuf library's
own wording of a decode error (see ``decode_error``).
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message

from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.proto.mvccpb import kv_pb2
from etcdcore.proto.v3election import v3election_pb2
from etcdcore.proto.v3lock import v3lock_pb2
from harness import Member, etcd_bin

TIMEOUT = 5.0
MAX_REQUEST_BYTES = int(1.5 * 1024 * 1024)  # both servers' default
MALFORMED = b"\xff\xff\xff"  # a field tag whose varint never ends

Outcome = tuple[str, object]  # ("OK", answer) or (status code name, details)


def unary_methods() -> list[tuple[str, bool]]:
    """(path, server_streams) of every method a client calls with one message."""
    out = []
    for module in (rpc_pb2, v3lock_pb2, v3election_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                if not m.client_streaming:
                    out.append((f"/{service.full_name}/{m.name}", m.server_streaming))
    return out


# -- the two servers -----------------------------------------------------------


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Member]]:
    base: Path = tmp_path_factory.mktemp("hostile")
    members = {
        "etcd": Member(
            data_dir=base / "etcd.etcd", command=[etcd_bin("etcd")], extra=["--log-level", "error"]
        ),
        "etcdcore": Member(data_dir=base / "etcdcore.etcd"),
    }
    try:
        for m in members.values():
            m.start(wait=False)
        for m in members.values():
            m.wait_ready(30)
        yield members
    finally:
        for m in members.values():
            m.stop()


@pytest.fixture(scope="module")
def channels(servers: dict[str, Member]) -> Iterator[dict[str, grpc.Channel]]:
    chans = {name: m.channel() for name, m in servers.items()}
    yield chans
    for ch in chans.values():
        ch.close()


@pytest.fixture(autouse=True)
def still_serving(channels: dict[str, grpc.Channel]) -> Iterator[None]:
    """After each hostile request, both servers still answer a plain Range."""
    yield
    for name, ch in channels.items():
        got = unary(ch, "/etcdserverpb.KV/Range", rpc_pb2.RangeRequest(key=b"health"))
        assert got[0] == "OK", f"{name} stopped serving Range: {got}"


# -- raw calls -----------------------------------------------------------------


def _raw(b: bytes) -> bytes:
    return b


def _encode(request: Message | bytes) -> bytes:
    return request if isinstance(request, bytes) else request.SerializeToString()


def unary(ch: grpc.Channel, path: str, request: Message | bytes) -> Outcome:
    call = ch.unary_unary(path, request_serializer=_raw, response_deserializer=_raw)
    try:
        return "OK", call(_encode(request), timeout=TIMEOUT)
    except grpc.RpcError as e:
        return e.code().name, e.details()


def server_stream(ch: grpc.Channel, path: str, request: Message | bytes) -> Outcome:
    call = ch.unary_stream(path, request_serializer=_raw, response_deserializer=_raw)
    stream = call(_encode(request), timeout=TIMEOUT)
    try:
        first = next(stream)  # Observe never ends on its own: one answer is enough
        return "OK", first
    except StopIteration:
        return "OK", None
    except grpc.RpcError as e:
        return e.code().name, e.details()
    finally:
        stream.cancel()


def bidi(ch: grpc.Channel, path: str, requests: list[Message], answers: int) -> Outcome:
    """Send ``requests`` on one stream and collect ``answers`` messages (raw)."""
    outbox: queue.Queue[bytes | None] = queue.Queue()
    for r in requests:
        outbox.put(r.SerializeToString())
    done = threading.Event()

    def gen() -> Iterator[bytes]:
        while True:
            try:
                item = outbox.get(timeout=0.05)
            except queue.Empty:
                if done.is_set():
                    return
                continue
            yield item

    call = ch.stream_stream(path, request_serializer=_raw, response_deserializer=_raw)
    stream = call(gen(), timeout=TIMEOUT)
    got = []
    try:
        for msg in stream:
            got.append(msg)
            if len(got) == answers:
                break
        return "OK", got
    except grpc.RpcError as e:
        return e.code().name, (e.details(), got)
    finally:
        done.set()
        stream.cancel()


def on_both(channels: dict[str, grpc.Channel], fn: Callable[[grpc.Channel], Outcome]) -> dict:
    return {name: fn(ch) for name, ch in channels.items()}


def strip(raw: bytes, cls: type[Message], *clear: str) -> Message:
    """Decode an answer and drop what differs by nature (header, random ids)."""
    msg = cls.FromString(raw)
    for f in ("header", *clear):
        msg.ClearField(f)
    return msg


def answers(outcomes: dict, cls: type[Message], *clear: str) -> dict:
    """Outcomes with OK answers decoded and normalized, errors as they are."""
    out = {}
    for name, (code, value) in outcomes.items():
        out[name] = (code, strip(value, cls, *clear) if code == "OK" else value)
    return out


def same(outcomes: dict) -> None:
    assert outcomes["etcdcore"] == outcomes["etcd"]


def kv(channels: dict[str, grpc.Channel], method: str, request: Message, cls: type[Message]):
    return answers(
        on_both(channels, lambda ch: unary(ch, f"/etcdserverpb.KV/{method}", request)), cls
    )


def current_revision(channels: dict[str, grpc.Channel]) -> int:
    """The store revision, which must be the same on both servers."""
    revs = {
        name: rpc_pb2.RangeResponse.FromString(
            unary(ch, "/etcdserverpb.KV/Range", rpc_pb2.RangeRequest(key=b"health"))[1]
        ).header.revision
        for name, ch in channels.items()
    }
    assert revs["etcdcore"] == revs["etcd"], f"servers out of step: {revs}"
    return revs["etcd"]


def put(channels: dict[str, grpc.Channel], key: bytes, value: bytes = b"v", lease: int = 0):
    return kv(
        channels, "Put", rpc_pb2.PutRequest(key=key, value=value, lease=lease), rpc_pb2.PutResponse
    )


# -- malformed protobuf --------------------------------------------------------

DECODE_DETAIL = re.compile(
    r"^(grpc: error unmarshalling request: |grpc: failed to unmarshal the received message ).+$"
)


def decode_error(outcome: Outcome) -> Outcome:
    """A decode error with the protobuf library's own wording masked: grpc-go
    says "unexpected EOF" (gogoproto), Python protobuf "Wire format was corrupt".
    The gRPC-level wording before it must match."""
    code, details = outcome
    if code != "OK" and isinstance(details, str):
        m = DECODE_DETAIL.match(details)
        if m:
            return code, m.group(1) + "<protobuf decode error>"
    return outcome


def _malformed_cases() -> list:
    return [pytest.param(path, streams, id=path) for path, streams in unary_methods()]


@pytest.mark.parametrize(("path", "streams"), _malformed_cases())
def test_malformed_protobuf_is_refused(
    channels: dict[str, grpc.Channel], path: str, streams: bool
) -> None:
    send = server_stream if streams else unary
    got = on_both(channels, lambda ch: decode_error(send(ch, path, MALFORMED)))
    assert got["etcd"][0] == "INTERNAL"  # etcd refuses before any handler runs
    same(got)


# -- keys and ranges -----------------------------------------------------------

EMPTY_KEY_REQUESTS = {
    "Range": (rpc_pb2.RangeRequest(), rpc_pb2.RangeResponse),
    "Put": (rpc_pb2.PutRequest(value=b"v"), rpc_pb2.PutResponse),
    "DeleteRange": (rpc_pb2.DeleteRangeRequest(), rpc_pb2.DeleteRangeResponse),
    "Txn": (
        rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(value=b"v"))]),
        rpc_pb2.TxnResponse,
    ),
    "Txn-compare": (rpc_pb2.TxnRequest(compare=[rpc_pb2.Compare()]), rpc_pb2.TxnResponse),
}


@pytest.mark.parametrize("method", EMPTY_KEY_REQUESTS)
def test_empty_key_is_refused(channels: dict[str, grpc.Channel], method: str) -> None:
    request, cls = EMPTY_KEY_REQUESTS[method]
    got = kv(channels, method.split("-")[0], request, cls)
    assert got["etcd"] == ("INVALID_ARGUMENT", "etcdserver: key is not provided")
    same(got)


def test_range_end_before_key_answers_nothing(channels: dict[str, grpc.Channel]) -> None:
    put(channels, b"re/b")
    got = kv(
        channels,
        "Range",
        rpc_pb2.RangeRequest(key=b"re/z", range_end=b"re/a"),
        rpc_pb2.RangeResponse,
    )
    assert got["etcd"] == ("OK", rpc_pb2.RangeResponse())  # no kvs, count 0
    same(got)


def test_delete_range_end_before_key_deletes_nothing(channels: dict[str, grpc.Channel]) -> None:
    put(channels, b"dre/b")
    got = kv(
        channels,
        "DeleteRange",
        rpc_pb2.DeleteRangeRequest(key=b"dre/z", range_end=b"dre/a"),
        rpc_pb2.DeleteRangeResponse,
    )
    assert got["etcd"] == ("OK", rpc_pb2.DeleteRangeResponse())
    same(got)


SORTS = {  # (sort_order, sort_target) etcd 3.5.1 answers without crashing
    "order-99": (99, 0),
    "order-minus-one-by-create": (-1, 2),
    "order-99-target-99": (99, 99),
}


@pytest.mark.parametrize("case", SORTS)
def test_range_with_unknown_sort_enum(channels: dict[str, grpc.Channel], case: str) -> None:
    """etcd 3.5.1 does not validate the sort enums: an unknown order reads
    unsorted (arguably a bug; later etcd says "invalid sort option")."""
    put(channels, b"sort/b", b"1")
    put(channels, b"sort/a", b"2")
    order, target = SORTS[case]
    request = rpc_pb2.RangeRequest(
        key=b"sort/", range_end=b"sort0", sort_order=order, sort_target=target
    )
    got = kv(channels, "Range", request, rpc_pb2.RangeResponse)
    assert got["etcd"][0] == "OK"
    same(got)


@pytest.mark.parametrize("order", [0, 1, 2], ids=["none", "ascend", "descend"])
def test_range_with_unknown_sort_target_is_refused(
    channels: dict[str, grpc.Channel], order: int
) -> None:
    """Not sent to etcd: 3.5.1 dereferences a nil sorter and the whole server
    panics. etcdcore refuses it as later etcd versions do."""
    request = rpc_pb2.RangeRequest(key=b"k", sort_order=order, sort_target=99)
    got = unary(channels["etcdcore"], "/etcdserverpb.KV/Range", request)
    assert got == ("INVALID_ARGUMENT", "etcdserver: invalid sort option")


def test_range_with_negative_limit_returns_everything(channels: dict[str, grpc.Channel]) -> None:
    put(channels, b"lim/a")
    put(channels, b"lim/b")
    got = kv(
        channels,
        "Range",
        rpc_pb2.RangeRequest(key=b"lim/", range_end=b"lim0", limit=-1, keys_only=True),
        rpc_pb2.RangeResponse,
    )
    assert got["etcd"][0] == "OK" and got["etcd"][1].count == 2
    same(got)


# -- revisions -----------------------------------------------------------------


@pytest.mark.parametrize("revision", [-1, -(2**63)], ids=["minus-one", "int64-min"])
def test_range_at_negative_revision_reads_the_present(
    channels: dict[str, grpc.Channel], revision: int
) -> None:
    put(channels, b"negrev", b"now")
    got = kv(
        channels,
        "Range",
        rpc_pb2.RangeRequest(key=b"negrev", revision=revision),
        rpc_pb2.RangeResponse,
    )
    assert got["etcd"][0] == "OK" and got["etcd"][1].kvs[0].value == b"now"
    same(got)


@pytest.mark.parametrize("ahead", [1, 1_000_000, None], ids=["next", "far", "int64-max"])
def test_range_at_future_revision(channels: dict[str, grpc.Channel], ahead: int | None) -> None:
    rev = 2**63 - 1 if ahead is None else current_revision(channels) + ahead
    got = kv(channels, "Range", rpc_pb2.RangeRequest(key=b"k", revision=rev), rpc_pb2.RangeResponse)
    assert got["etcd"] == (
        "OUT_OF_RANGE",
        "etcdserver: mvcc: required revision is a future revision",
    )
    same(got)


# -- compaction (tests run in file order; state stays in step) ------------------


def test_compact_at_future_revision(channels: dict[str, grpc.Channel]) -> None:
    rev = current_revision(channels) + 1000
    got = kv(
        channels, "Compact", rpc_pb2.CompactionRequest(revision=rev), rpc_pb2.CompactionResponse
    )
    assert got["etcd"] == (
        "OUT_OF_RANGE",
        "etcdserver: mvcc: required revision is a future revision",
    )
    same(got)


@pytest.fixture(scope="module")
def compacted(channels: dict[str, grpc.Channel]) -> int:
    """Compacts both servers at the same revision (keys compacted/ live above it)."""
    put(channels, b"compacted/k", b"1")
    put(channels, b"compacted/k", b"2")
    rev = current_revision(channels)
    put(channels, b"compacted/k", b"3")
    got = kv(
        channels, "Compact", rpc_pb2.CompactionRequest(revision=rev), rpc_pb2.CompactionResponse
    )
    assert got["etcd"] == got["etcdcore"] == ("OK", rpc_pb2.CompactionResponse())
    return rev


@pytest.mark.parametrize("revision", [0, -1], ids=["zero", "minus-one"])
def test_compact_at_zero_or_negative_revision(
    channels: dict[str, grpc.Channel], compacted: int, revision: int
) -> None:
    got = kv(
        channels,
        "Compact",
        rpc_pb2.CompactionRequest(revision=revision),
        rpc_pb2.CompactionResponse,
    )
    assert got["etcd"] == ("OUT_OF_RANGE", "etcdserver: mvcc: required revision has been compacted")
    same(got)


def test_compact_again_at_the_same_revision(
    channels: dict[str, grpc.Channel], compacted: int
) -> None:
    got = kv(
        channels,
        "Compact",
        rpc_pb2.CompactionRequest(revision=compacted),
        rpc_pb2.CompactionResponse,
    )
    assert got["etcd"] == ("OUT_OF_RANGE", "etcdserver: mvcc: required revision has been compacted")
    same(got)


def test_range_at_compacted_revision(channels: dict[str, grpc.Channel], compacted: int) -> None:
    got = kv(
        channels,
        "Range",
        rpc_pb2.RangeRequest(key=b"compacted/k", revision=compacted - 1),
        rpc_pb2.RangeResponse,
    )
    assert got["etcd"] == ("OUT_OF_RANGE", "etcdserver: mvcc: required revision has been compacted")
    same(got)


# -- leases ----------------------------------------------------------------------

LEASE = "/etcdserverpb.Lease/"
UNKNOWN_LEASES = {"unknown": 0x7E57_0000_0001, "negative": -5}


@pytest.mark.parametrize(
    "ttl", [-1, 0, 1, 9_000_000_000, 9_000_000_001, 2**63 - 1],
    ids=["negative", "zero", "one", "max", "max-plus-one", "int64-max"],
)  # fmt: skip
def test_lease_grant_ttl(channels: dict[str, grpc.Channel], ttl: int) -> None:
    got = answers(
        on_both(
            channels, lambda ch: unary(ch, LEASE + "LeaseGrant", rpc_pb2.LeaseGrantRequest(TTL=ttl))
        ),
        rpc_pb2.LeaseGrantResponse,
        "ID",
    )
    same(got)


def test_lease_grant_with_negative_id(channels: dict[str, grpc.Channel]) -> None:
    request = rpc_pb2.LeaseGrantRequest(ID=-7, TTL=60)
    got = answers(
        on_both(channels, lambda ch: unary(ch, LEASE + "LeaseGrant", request)),
        rpc_pb2.LeaseGrantResponse,
    )
    same(got)


@pytest.mark.parametrize("lease", UNKNOWN_LEASES.values(), ids=UNKNOWN_LEASES.keys())
def test_put_with_unknown_lease(channels: dict[str, grpc.Channel], lease: int) -> None:
    got = put(channels, b"lease/put", lease=lease)
    assert got["etcd"] == ("NOT_FOUND", "etcdserver: requested lease not found")
    same(got)


@pytest.mark.parametrize("lease", UNKNOWN_LEASES.values(), ids=UNKNOWN_LEASES.keys())
def test_txn_put_with_unknown_lease(channels: dict[str, grpc.Channel], lease: int) -> None:
    op = rpc_pb2.RequestOp(
        request_put=rpc_pb2.PutRequest(key=b"lease/txn", value=b"v", lease=lease)
    )
    got = kv(channels, "Txn", rpc_pb2.TxnRequest(success=[op]), rpc_pb2.TxnResponse)
    same(got)


@pytest.mark.parametrize("lease", UNKNOWN_LEASES.values(), ids=UNKNOWN_LEASES.keys())
def test_lease_revoke_unknown(channels: dict[str, grpc.Channel], lease: int) -> None:
    request = rpc_pb2.LeaseRevokeRequest(ID=lease)
    got = answers(
        on_both(channels, lambda ch: unary(ch, LEASE + "LeaseRevoke", request)),
        rpc_pb2.LeaseRevokeResponse,
    )
    assert got["etcd"] == ("NOT_FOUND", "etcdserver: requested lease not found")
    same(got)


@pytest.mark.parametrize("keys", [False, True], ids=["plain", "with-keys"])
@pytest.mark.parametrize("lease", UNKNOWN_LEASES.values(), ids=UNKNOWN_LEASES.keys())
def test_lease_time_to_live_unknown(
    channels: dict[str, grpc.Channel], lease: int, keys: bool
) -> None:
    request = rpc_pb2.LeaseTimeToLiveRequest(ID=lease, keys=keys)
    got = answers(
        on_both(channels, lambda ch: unary(ch, LEASE + "LeaseTimeToLive", request)),
        rpc_pb2.LeaseTimeToLiveResponse,
    )
    same(got)


@pytest.mark.parametrize("lease", UNKNOWN_LEASES.values(), ids=UNKNOWN_LEASES.keys())
def test_lease_keep_alive_unknown(channels: dict[str, grpc.Channel], lease: int) -> None:
    request = rpc_pb2.LeaseKeepAliveRequest(ID=lease)
    got = on_both(channels, lambda ch: bidi(ch, LEASE + "LeaseKeepAlive", [request], 1))
    decoded = {
        name: (
            code,
            [strip(m, rpc_pb2.LeaseKeepAliveResponse) for m in value] if code == "OK" else value,
        )
        for name, (code, value) in got.items()
    }
    assert decoded["etcd"] == ("OK", [rpc_pb2.LeaseKeepAliveResponse(ID=lease, TTL=0)])
    same(decoded)


# -- size limits -------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [MAX_REQUEST_BYTES + 1, MAX_REQUEST_BYTES + 256 * 1024],
    ids=["limit-plus-one", "limit-plus-256KiB"],
)
def test_oversize_put_is_refused(channels: dict[str, grpc.Channel], size: int) -> None:
    got = put(channels, b"big", b"x" * size)
    assert got["etcd"] == ("INVALID_ARGUMENT", "etcdserver: request is too large")
    same(got)


# A PutRequest for key b"big" and a value this long is the value plus 9 bytes.
NEAR_LIMIT = {"fits": (-40, "OK"), "envelope-overflows": (-10, "INVALID_ARGUMENT")}


@pytest.mark.parametrize("case", NEAR_LIMIT)
def test_put_near_the_limit(channels: dict[str, grpc.Channel], case: str) -> None:
    """etcd measures the Raft entry the request becomes: 17-18 bytes of
    envelope (header with the request id) on top of the PutRequest."""
    margin, code = NEAR_LIMIT[case]
    got = put(channels, b"big", b"x" * (MAX_REQUEST_BYTES + margin - 9))
    assert got["etcd"][0] == code
    same(got)


def test_oversize_txn_is_refused(channels: dict[str, grpc.Channel]) -> None:
    ops = [
        rpc_pb2.RequestOp(
            request_put=rpc_pb2.PutRequest(key=b"bigtxn/%d" % i, value=b"x" * (512 * 1024))
        )
        for i in range(3)
    ]
    got = kv(channels, "Txn", rpc_pb2.TxnRequest(success=ops), rpc_pb2.TxnResponse)
    assert got["etcd"] == ("INVALID_ARGUMENT", "etcdserver: request is too large")
    same(got)


def test_message_over_the_grpc_limit_is_refused(channels: dict[str, grpc.Channel]) -> None:
    """Past --max-request-bytes + 512 KiB gRPC itself refuses the message."""
    got = put(channels, b"huge", b"x" * (MAX_REQUEST_BYTES + 600 * 1024))
    assert got["etcd"][0] == "RESOURCE_EXHAUSTED"
    same(got)


# -- transactions ------------------------------------------------------------------


def _puts(n: int, prefix: bytes = b"ops/") -> list[rpc_pb2.RequestOp]:
    return [
        rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=prefix + b"%d" % i, value=b"v"))
        for i in range(n)
    ]


TOO_MANY = {
    "success": rpc_pb2.TxnRequest(success=_puts(129)),
    "failure": rpc_pb2.TxnRequest(failure=_puts(129)),
    "compare": rpc_pb2.TxnRequest(
        compare=[
            rpc_pb2.Compare(key=b"c%d" % i, target=rpc_pb2.Compare.VERSION) for i in range(129)
        ]
    ),
    "nested": rpc_pb2.TxnRequest(
        success=[rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(success=_puts(129)))]
    ),
}


@pytest.mark.parametrize("where", TOO_MANY)
def test_txn_with_129_ops(channels: dict[str, grpc.Channel], where: str) -> None:
    got = kv(channels, "Txn", TOO_MANY[where], rpc_pb2.TxnResponse)
    assert got["etcd"] == ("INVALID_ARGUMENT", "etcdserver: too many operations in txn request")
    same(got)


def test_txn_with_128_ops_is_fine(channels: dict[str, grpc.Channel]) -> None:
    got = kv(
        channels, "Txn", rpc_pb2.TxnRequest(success=_puts(128, b"ops128/")), rpc_pb2.TxnResponse
    )
    assert got["etcd"][0] == "OK"
    same(got)


def _op_put(key: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=b"v"))


def _op_del(key: bytes, end: bytes = b"") -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(
        request_delete_range=rpc_pb2.DeleteRangeRequest(key=key, range_end=end)
    )


DUPLICATES = {
    "put-put": ([_op_put(b"dup"), _op_put(b"dup")], "INVALID_ARGUMENT"),
    "put-delete": ([_op_put(b"dup"), _op_del(b"dup")], "INVALID_ARGUMENT"),
    "put-delete-range": ([_op_put(b"dup/m"), _op_del(b"dup/", b"dup0")], "INVALID_ARGUMENT"),
    "delete-delete": ([_op_del(b"dup"), _op_del(b"dup")], "OK"),
    "put-in-nested-txn": (
        [
            _op_put(b"dup"),
            rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(success=[_op_put(b"dup")])),
        ],
        "INVALID_ARGUMENT",
    ),
    "puts-in-both-branches": (None, "OK"),
}


@pytest.mark.parametrize("case", DUPLICATES)
def test_txn_with_duplicate_keys(channels: dict[str, grpc.Channel], case: str) -> None:
    ops, code = DUPLICATES[case]
    if ops is None:  # success and failure never both run: not a duplicate
        request = rpc_pb2.TxnRequest(success=[_op_put(b"dup")], failure=[_op_put(b"dup")])
    else:
        request = rpc_pb2.TxnRequest(success=ops)
    got = kv(channels, "Txn", request, rpc_pb2.TxnResponse)
    assert got["etcd"][0] == code
    same(got)


def test_txn_with_empty_request_op(channels: dict[str, grpc.Channel]) -> None:
    got = kv(
        channels, "Txn", rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp()]), rpc_pb2.TxnResponse
    )
    same(got)


# -- watch -------------------------------------------------------------------------

WATCH = "/etcdserverpb.Watch/Watch"


def watch(
    channels: dict[str, grpc.Channel],
    create: rpc_pb2.WatchCreateRequest,
    n: int,
    then: Callable[[grpc.Channel], None] | None = None,
    half_close: bool = False,
) -> dict:
    """Open a watch on both, collect ``n`` answers (``then(ch)`` runs after the
    first), and decode them without headers."""
    got = on_both(channels, lambda ch: _watch(ch, create, n, then, half_close))
    return {
        name: (code, [strip(m, rpc_pb2.WatchResponse) for m in value] if code == "OK" else value)
        for name, (code, value) in got.items()
    }


def _watch(
    ch: grpc.Channel,
    create: rpc_pb2.WatchCreateRequest,
    n: int,
    then: Callable[[grpc.Channel], None] | None,
    half_close: bool,
) -> Outcome:
    call = ch.stream_stream(WATCH, request_serializer=_raw, response_deserializer=_raw)
    done = threading.Event()

    def gen() -> Iterator[bytes]:
        yield rpc_pb2.WatchRequest(create_request=create).SerializeToString()
        if not half_close:
            done.wait(TIMEOUT)

    stream = call(gen(), timeout=TIMEOUT)
    got: list[bytes] = []
    try:
        for msg in stream:
            got.append(msg)
            if len(got) == 1 and then is not None:
                then(ch)
            if len(got) == n:
                break
        return "OK", got
    except grpc.RpcError as e:
        return e.code().name, (e.details(), got)
    finally:
        done.set()
        stream.cancel()


def test_watch_from_compacted_revision(channels: dict[str, grpc.Channel], compacted: int) -> None:
    got = watch(
        channels, rpc_pb2.WatchCreateRequest(key=b"compacted/k", start_revision=compacted - 1), 2
    )
    etcd = got["etcd"]
    assert etcd[0] == "OK" and etcd[1][0].created and etcd[1][1].canceled
    assert etcd[1][1].compact_revision == compacted
    same(got)


def test_watch_range_end_before_key(channels: dict[str, grpc.Channel]) -> None:
    got = watch(channels, rpc_pb2.WatchCreateRequest(key=b"w/z", range_end=b"w/a"), 1)
    etcd = got["etcd"]
    assert etcd[0] == "OK" and etcd[1][0].canceled
    same(got)


def test_watch_with_empty_key(channels: dict[str, grpc.Channel]) -> None:
    got = watch(channels, rpc_pb2.WatchCreateRequest(), 1)
    same(got)


def test_watch_at_future_revision_is_created(channels: dict[str, grpc.Channel]) -> None:
    rev = current_revision(channels) + 1000
    got = watch(channels, rpc_pb2.WatchCreateRequest(key=b"w/future", start_revision=rev), 1)
    same(got)


FILTERS = {  # filters -> the event type the first event must have
    "seven": ([7], "PUT"),
    "minus-one": ([-1], "PUT"),
    "noput-and-unknown": ([0, 9], "DELETE"),
}


@pytest.mark.parametrize("case", FILTERS)
def test_watch_with_unknown_filter(channels: dict[str, grpc.Channel], case: str) -> None:
    """Unknown filter numbers are ignored; known ones still apply."""
    filters, first = FILTERS[case]
    key = b"w/filter/" + case.encode()

    def then(ch: grpc.Channel) -> None:
        unary(ch, "/etcdserverpb.KV/Put", rpc_pb2.PutRequest(key=key, value=b"v"))
        unary(ch, "/etcdserverpb.KV/DeleteRange", rpc_pb2.DeleteRangeRequest(key=key))

    got = watch(channels, rpc_pb2.WatchCreateRequest(key=key, filters=filters), 2, then=then)
    etcd = got["etcd"]
    assert etcd[0] == "OK" and kv_pb2.Event.EventType.Name(etcd[1][1].events[0].type) == first
    same(got)


def test_watch_survives_client_half_close(channels: dict[str, grpc.Channel]) -> None:
    """A client that half-closes after creating its watch still gets events."""
    key = b"w/halfclose"

    def then(ch: grpc.Channel) -> None:
        unary(ch, "/etcdserverpb.KV/Put", rpc_pb2.PutRequest(key=key, value=b"v"))

    got = watch(channels, rpc_pb2.WatchCreateRequest(key=key), 2, then=then, half_close=True)
    assert got["etcd"][0] == "OK"
    same(got)


@pytest.mark.parametrize("path", [WATCH, LEASE + "LeaseKeepAlive"])
def test_malformed_message_on_a_bidi_stream(channels: dict[str, grpc.Channel], path: str) -> None:
    """grpc-go words a stream's decode error differently from a unary call's."""

    def one(ch: grpc.Channel) -> Outcome:
        call = ch.stream_stream(path, request_serializer=_raw, response_deserializer=_raw)
        stream = call(iter([MALFORMED]), timeout=TIMEOUT)
        try:
            return "OK", list(stream)
        except grpc.RpcError as e:
            return decode_error((e.code().name, e.details()))

    got = on_both(channels, one)
    assert got["etcd"] == (
        "INTERNAL",
        "grpc: failed to unmarshal the received message <protobuf decode error>",
    )
    same(got)
