"""Request building and response parsing, shared by the sync and async clients
so both speak exactly the same protocol."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, TypeVar

import grpc

from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.proto.v3election import v3election_pb2

from .errors import CompactedError, EtcdError
from .types import (
    Alarm,
    DeleteResult,
    Event,
    GetResult,
    HashKVResult,
    KeyValue,
    LeaderKey,
    Member,
    PutResult,
    TxnResult,
)

Bytesish = bytes | str

_RR = rpc_pb2.RangeRequest
_SORT_ORDER: dict[str | None, _RR.SortOrder.ValueType] = {
    None: _RR.NONE,
    "ascend": _RR.ASCEND,
    "descend": _RR.DESCEND,
}
_SORT_TARGET: dict[str | None, _RR.SortTarget.ValueType] = {
    None: _RR.KEY,
    "key": _RR.KEY,
    "version": _RR.VERSION,
    "create": _RR.CREATE,
    "mod": _RR.MOD,
    "value": _RR.VALUE,
}


def to_bytes(b: Bytesish) -> bytes:
    return b.encode() if isinstance(b, str) else b


def prefix_end(prefix: bytes) -> bytes:
    """The range end covering every key that starts with ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def key_range(key: Bytesish, prefix: bool, range_end: Bytesish | None) -> tuple[bytes, bytes]:
    k = to_bytes(key)
    if prefix:
        # clientv3's WithPrefix: the empty prefix is every key, from "\0".
        return (k, prefix_end(k)) if k else (b"\0", b"\0")
    return k, to_bytes(range_end) if range_end is not None else b""


def range_request(
    key: Bytesish,
    *,
    prefix: bool = False,
    range_end: Bytesish | None = None,
    limit: int = 0,
    revision: int = 0,
    serializable: bool = False,
    keys_only: bool = False,
    count_only: bool = False,
    sort_order: Literal["ascend", "descend"] | None = None,
    sort_target: Literal["key", "version", "create", "mod", "value"] | None = None,
) -> rpc_pb2.RangeRequest:
    k, end = key_range(key, prefix, range_end)
    return rpc_pb2.RangeRequest(
        key=k,
        range_end=end,
        limit=limit,
        revision=revision,
        serializable=serializable,
        keys_only=keys_only,
        count_only=count_only,
        sort_order=_SORT_ORDER[sort_order],
        sort_target=_SORT_TARGET[sort_target],
    )


def put_request(
    key: Bytesish, value: Bytesish, *, lease: int = 0, prev_kv: bool = False
) -> rpc_pb2.PutRequest:
    return rpc_pb2.PutRequest(
        key=to_bytes(key), value=to_bytes(value), lease=lease, prev_kv=prev_kv
    )


def delete_request(
    key: Bytesish, *, prefix: bool = False, range_end: Bytesish | None = None, prev_kv: bool = False
) -> rpc_pb2.DeleteRangeRequest:
    k, end = key_range(key, prefix, range_end)
    return rpc_pb2.DeleteRangeRequest(key=k, range_end=end, prev_kv=prev_kv)


def get_result(r: rpc_pb2.RangeResponse) -> GetResult:
    return GetResult([KeyValue.from_pb(kv) for kv in r.kvs], r.count, r.more, r.header.revision)


def put_result(r: rpc_pb2.PutResponse) -> PutResult:
    return PutResult(
        r.header.revision, KeyValue.from_pb(r.prev_kv) if r.HasField("prev_kv") else None
    )


def delete_result(r: rpc_pb2.DeleteRangeResponse) -> DeleteResult:
    return DeleteResult(r.deleted, r.header.revision, [KeyValue.from_pb(kv) for kv in r.prev_kvs])


def txn_result(r: rpc_pb2.TxnResponse) -> TxnResult:
    out: list[GetResult | PutResult | DeleteResult | TxnResult] = []
    for op in r.responses:
        kind = op.WhichOneof("response")
        if kind == "response_range":
            out.append(get_result(op.response_range))
        elif kind == "response_put":
            out.append(put_result(op.response_put))
        elif kind == "response_delete_range":
            out.append(delete_result(op.response_delete_range))
        else:
            out.append(txn_result(op.response_txn))
    return TxnResult(r.succeeded, r.header.revision, out)


def watch_create_request(
    key: bytes, range_end: bytes, start_revision: int, prev_kv: bool
) -> rpc_pb2.WatchRequest:
    return rpc_pb2.WatchRequest(
        create_request=rpc_pb2.WatchCreateRequest(
            key=key, range_end=range_end, start_revision=start_revision, prev_kv=prev_kv
        )
    )


def watch_step(resp: rpc_pb2.WatchResponse, next_rev: int) -> tuple[list[Event], int]:
    """One watch response: its events and the revision to resume from after it.
    Raises :class:`CompactedError` or :class:`EtcdError` when the server ends
    the watch."""
    if resp.compact_revision:
        raise CompactedError(
            grpc.StatusCode.OUT_OF_RANGE,
            "etcdserver: mvcc: required revision has been compacted",
            resp.compact_revision,
        )
    if resp.canceled:
        raise EtcdError(grpc.StatusCode.CANCELLED, resp.cancel_reason)
    if resp.created and next_rev == 0:
        next_rev = resp.header.revision + 1
    events = [Event.from_pb(e) for e in resp.events]
    if events:
        next_rev = events[-1].kv.mod_revision + 1
    return events, next_rev


# -- transactions -------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """One side of a comparison: ``Compare.value(key) == b"x"``."""

    key: bytes
    target: rpc_pb2.Compare.CompareTarget.ValueType
    field: str
    range_end: bytes = b""

    def _cmp(
        self, result: rpc_pb2.Compare.CompareResult.ValueType, other: object
    ) -> rpc_pb2.Compare:
        c = rpc_pb2.Compare(
            result=result, target=self.target, key=self.key, range_end=self.range_end
        )
        setattr(c, self.field, to_bytes(other) if self.field == "value" else other)  # type: ignore[arg-type]
        return c

    def __eq__(self, other: object) -> rpc_pb2.Compare:  # type: ignore[override]
        return self._cmp(rpc_pb2.Compare.EQUAL, other)

    def __ne__(self, other: object) -> rpc_pb2.Compare:  # type: ignore[override]
        return self._cmp(rpc_pb2.Compare.NOT_EQUAL, other)

    def __lt__(self, other: object) -> rpc_pb2.Compare:
        return self._cmp(rpc_pb2.Compare.LESS, other)

    def __gt__(self, other: object) -> rpc_pb2.Compare:
        return self._cmp(rpc_pb2.Compare.GREATER, other)

    __hash__ = None  # type: ignore[assignment]


class Compare:
    """Comparison targets for :meth:`Txn.if_`, e.g. ``Compare.version("k") > 0``."""

    @staticmethod
    def value(key: Bytesish, range_end: Bytesish = b"") -> _Target:
        return _Target(to_bytes(key), rpc_pb2.Compare.VALUE, "value", to_bytes(range_end))

    @staticmethod
    def version(key: Bytesish, range_end: Bytesish = b"") -> _Target:
        return _Target(to_bytes(key), rpc_pb2.Compare.VERSION, "version", to_bytes(range_end))

    @staticmethod
    def create_revision(key: Bytesish, range_end: Bytesish = b"") -> _Target:
        return _Target(
            to_bytes(key), rpc_pb2.Compare.CREATE, "create_revision", to_bytes(range_end)
        )

    @staticmethod
    def mod_revision(key: Bytesish, range_end: Bytesish = b"") -> _Target:
        return _Target(to_bytes(key), rpc_pb2.Compare.MOD, "mod_revision", to_bytes(range_end))

    @staticmethod
    def lease(key: Bytesish, range_end: Bytesish = b"") -> _Target:
        return _Target(to_bytes(key), rpc_pb2.Compare.LEASE, "lease", to_bytes(range_end))


class Op:
    """Operations for the branches of a transaction."""

    @staticmethod
    def get(key: Bytesish, **kw: object) -> rpc_pb2.RequestOp:
        return rpc_pb2.RequestOp(request_range=range_request(key, **kw))  # type: ignore[arg-type]

    @staticmethod
    def put(key: Bytesish, value: Bytesish, **kw: object) -> rpc_pb2.RequestOp:
        return rpc_pb2.RequestOp(request_put=put_request(key, value, **kw))  # type: ignore[arg-type]

    @staticmethod
    def delete(key: Bytesish, **kw: object) -> rpc_pb2.RequestOp:
        return rpc_pb2.RequestOp(request_delete_range=delete_request(key, **kw))  # type: ignore[arg-type]


CommitT = TypeVar("CommitT")


class TxnBuilder(Generic[CommitT]):
    """``if_(compares...).then(ops...).else_(ops...)`` then ``commit()``, which
    answers what the client's ``commit`` does (a TxnResult, or an awaitable of
    one for the asyncio client)."""

    def __init__(self, commit: Callable[[rpc_pb2.TxnRequest], CommitT]) -> None:
        self._commit = commit
        self.request = rpc_pb2.TxnRequest()

    def if_(self, *compares: rpc_pb2.Compare) -> TxnBuilder[CommitT]:
        self.request.compare.extend(compares)
        return self

    def then(self, *ops: rpc_pb2.RequestOp) -> TxnBuilder[CommitT]:
        self.request.success.extend(ops)
        return self

    def else_(self, *ops: rpc_pb2.RequestOp) -> TxnBuilder[CommitT]:
        self.request.failure.extend(ops)
        return self

    def commit(self) -> CommitT:
        return self._commit(self.request)


# -- connections: endpoints, TLS, auth ----------------------------------------------

#: A PEM file's path, or its contents.
PemSource = str | Path | bytes


def parse_endpoints(endpoints: Sequence[str], tls: bool) -> tuple[list[str], bool]:
    """``host:port`` targets from ``host:port`` / ``http://`` / ``https://``
    endpoints, and whether to use TLS: when asked (``tls``, i.e. certificates
    were given) or when the endpoints say ``https://``. Mixing ``http://`` and
    ``https://`` is an error."""
    if not endpoints:
        raise ValueError("at least one endpoint is needed")
    schemes = {e.split("://", 1)[0].lower() for e in endpoints if "://" in e}
    if len(schemes) > 1:
        raise ValueError(f"endpoints mix schemes {sorted(schemes)}")
    if "https" in schemes:
        tls = True
    elif "http" in schemes and tls:
        raise ValueError("TLS options given for http:// endpoints")
    return [e.split("://", 1)[-1].rstrip("/") for e in endpoints], tls


def _pem(source: PemSource | None) -> bytes | None:
    if source is None or isinstance(source, bytes):
        return source
    return Path(source).read_bytes()


def channel_credentials(
    ca_cert: PemSource | None, cert: PemSource | None, key: PemSource | None
) -> grpc.ChannelCredentials:
    """TLS credentials: ``ca_cert`` verifies the server (the system's roots when
    None); ``cert`` and ``key`` (both or neither) authenticate this client."""
    if (cert is None) != (key is None):
        raise ValueError("cert and key go together")
    return grpc.ssl_channel_credentials(
        root_certificates=_pem(ca_cert), private_key=_pem(key), certificate_chain=_pem(cert)
    )


#: The metadata key etcd reads the auth token from.
TOKEN_METADATA = "token"
AUTHENTICATE_METHOD = "/etcdserverpb.Auth/Authenticate"
ERR_INVALID_TOKEN = "etcdserver: invalid auth token"
ERR_AUTH_OLD_REVISION = "etcdserver: revision of auth store is old"
ERR_AUTH_NOT_ENABLED = "etcdserver: authentication is not enabled"
ERR_PERMISSION_DENIED = "etcdserver: permission denied"


Metadata = Sequence[tuple[str, str | bytes]]


def with_token(metadata: Metadata | None, token: str | None, method: str) -> Metadata | None:
    """``metadata`` plus the auth token (none on Authenticate itself)."""
    if token is None or method == AUTHENTICATE_METHOD:
        return metadata
    return [*(metadata or ()), (TOKEN_METADATA, token)]


def is_invalid_token(e: grpc.RpcError) -> bool:
    """The server no longer accepts the token (it expired, another member
    never issued it, or it predates a change to users, roles or permissions):
    log in again and retry, as clientv3 does. Matched on the message alone,
    as clientv3 does: etcd's lock and election services pass it on with code
    UNKNOWN."""
    return e.details() in (ERR_INVALID_TOKEN, ERR_AUTH_OLD_REVISION)


def is_auth_refused_watch(resp: rpc_pb2.WatchResponse) -> bool:
    """etcd refuses a watch whose token it does not accept by cancelling it at
    creation (permission denied, or the token's own error): log in again and
    watch again, as clientv3 does; a second refusal is the answer."""
    return (
        resp.created
        and resp.canceled
        and any(
            text in resp.cancel_reason
            for text in (ERR_INVALID_TOKEN, ERR_AUTH_OLD_REVISION, ERR_PERMISSION_DENIED)
        )
    )


def is_auth_not_enabled(e: grpc.RpcError) -> bool:
    """Authenticate on a server without auth: calls need no token there."""
    return e.details() == ERR_AUTH_NOT_ENABLED


# -- elections ----------------------------------------------------------------------

#: Election.Leader's answer when nobody campaigns.
ERR_ELECTION_NO_LEADER = "election: no leader"


def leader_key(lk: v3election_pb2.LeaderKey) -> LeaderKey:
    return LeaderKey(lk.name, lk.key, lk.rev, lk.lease)


def _leader_key_pb(lk: LeaderKey) -> v3election_pb2.LeaderKey:
    return v3election_pb2.LeaderKey(name=lk.name, key=lk.key, rev=lk.rev, lease=lk.lease)


def campaign_request(name: bytes, lease: int, value: Bytesish) -> v3election_pb2.CampaignRequest:
    return v3election_pb2.CampaignRequest(name=name, lease=lease, value=to_bytes(value))


def proclaim_request(lk: LeaderKey, value: Bytesish) -> v3election_pb2.ProclaimRequest:
    return v3election_pb2.ProclaimRequest(leader=_leader_key_pb(lk), value=to_bytes(value))


def resign_request(lk: LeaderKey) -> v3election_pb2.ResignRequest:
    return v3election_pb2.ResignRequest(leader=_leader_key_pb(lk))


def leader_value(r: v3election_pb2.LeaderResponse) -> KeyValue | None:
    return KeyValue.from_pb(r.kv) if r.HasField("kv") else None


# -- cluster and maintenance ----------------------------------------------------------

AlarmType = Literal["NOSPACE", "CORRUPT"]
_ALARM_NAMES: dict[rpc_pb2.AlarmType.ValueType, AlarmType] = {
    rpc_pb2.NOSPACE: "NOSPACE",
    rpc_pb2.CORRUPT: "CORRUPT",
}
_ALARM_CODES = {v: k for k, v in _ALARM_NAMES.items()}


def members(ms: Sequence[rpc_pb2.Member]) -> list[Member]:
    return [Member.from_pb(m) for m in ms]


def alarm_get_request() -> rpc_pb2.AlarmRequest:
    return rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET, alarm=rpc_pb2.NONE)


def alarm_disarm_request(alarm: Alarm) -> rpc_pb2.AlarmRequest:
    return rpc_pb2.AlarmRequest(
        action=rpc_pb2.AlarmRequest.DEACTIVATE,
        memberID=alarm.member_id,
        alarm=_ALARM_CODES[alarm.type],
    )


def alarms(r: rpc_pb2.AlarmResponse) -> list[Alarm]:
    return [Alarm(a.memberID, _ALARM_NAMES[a.alarm]) for a in r.alarms if a.alarm in _ALARM_NAMES]


def alarms_matching(
    raised: list[Alarm], member_id: int | None, alarm: AlarmType | None
) -> list[Alarm]:
    """The raised alarms that ``alarm_disarm(member_id, alarm)`` clears (None: any)."""
    return [
        a
        for a in raised
        if (member_id is None or a.member_id == member_id) and (alarm is None or a.type == alarm)
    ]


def hash_kv_result(r: rpc_pb2.HashKVResponse) -> HashKVResult:
    return HashKVResult(r.hash, r.compact_revision, r.header.revision)
