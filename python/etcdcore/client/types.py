"""What the client returns: plain, frozen values (no protobuf leaks out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.proto.mvccpb import kv_pb2


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def from_pb(cls, kv: kv_pb2.KeyValue) -> KeyValue:
        return cls(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


@dataclass(frozen=True)
class Event:
    """One change: a PUT (the new key-value) or a DELETE (``kv.value`` empty)."""

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @classmethod
    def from_pb(cls, ev: kv_pb2.Event) -> Event:
        return cls(
            "DELETE" if ev.type == kv_pb2.Event.DELETE else "PUT",
            KeyValue.from_pb(ev.kv),
            KeyValue.from_pb(ev.prev_kv) if ev.HasField("prev_kv") else None,
        )


@dataclass(frozen=True)
class GetResult:
    kvs: list[KeyValue]
    count: int
    more: bool
    revision: int

    @property
    def value(self) -> bytes | None:
        """The first key's value, or None when nothing matched."""
        return self.kvs[0].value if self.kvs else None


@dataclass(frozen=True)
class PutResult:
    revision: int
    prev_kv: KeyValue | None = None


@dataclass(frozen=True)
class DeleteResult:
    deleted: int
    revision: int
    prev_kvs: list[KeyValue] = field(default_factory=list)


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    #: One entry per operation of the branch that ran, in order.
    responses: list[GetResult | PutResult | DeleteResult | TxnResult]


@dataclass(frozen=True)
class Lease:
    id: int
    ttl: int


@dataclass(frozen=True)
class LeaseInfo:
    id: int
    ttl: int
    granted_ttl: int
    keys: list[bytes]


@dataclass(frozen=True)
class LeaderKey:
    """The leadership one campaign won: the candidate's key in the election and
    the create revision and lease that identify it."""

    name: bytes
    key: bytes
    rev: int
    lease: int


@dataclass(frozen=True)
class Member:
    """One cluster member (``name`` and ``client_urls`` are empty until it has
    started)."""

    id: int
    name: str
    peer_urls: list[str]
    client_urls: list[str]
    is_learner: bool

    @classmethod
    def from_pb(cls, m: rpc_pb2.Member) -> Member:
        return cls(m.ID, m.name, list(m.peerURLs), list(m.clientURLs), m.isLearner)


@dataclass(frozen=True)
class Alarm:
    """A raised alarm: ``NOSPACE`` (quota exceeded) or ``CORRUPT``."""

    member_id: int
    type: Literal["NOSPACE", "CORRUPT"]


@dataclass(frozen=True)
class HashKVResult:
    """The MVCC hash of a member's key space (up to the asked revision)."""

    hash: int
    compact_revision: int
    #: The member's current revision when it answered.
    revision: int
