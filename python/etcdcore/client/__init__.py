"""etcdcore's Python client for any etcd v3 server (etcdcore or etcd itself).

from etcdcore.client import Client, Compare, Op

with Client(["127.0.0.1:2379"]) as c:
    c.put("config/a", "1")
    c.txn().if_(Compare.value("config/a") == "1").then(Op.put("config/b", "2")).commit()
    for events in c.watch("config/", prefix=True):
        ...
    with c.election("jobs/leader", ttl=10) as e:
        e.campaign("me")                    # blocks until this process leads

TLS: ``Client(["https://host:2379"], ca_cert=..., cert=..., key=...)``; auth:
``Client(..., user="root", password=...)``. :class:`AsyncClient` is the same
client for asyncio.
"""

from .aio import AsyncClient, AsyncElection
from .errors import (
    AuthError,
    CompactedError,
    EtcdError,
    LeaseNotFoundError,
    NoLeaderError,
    NotLeaderError,
    PermissionDeniedError,
    UnavailableError,
)
from .requests import Compare, Op, prefix_end
from .sync import Client, Election
from .types import (
    Alarm,
    DeleteResult,
    Event,
    GetResult,
    HashKVResult,
    KeyValue,
    LeaderKey,
    Lease,
    LeaseInfo,
    Member,
    PutResult,
    TxnResult,
)

__all__ = [
    "Alarm",
    "AsyncClient",
    "AsyncElection",
    "AuthError",
    "Client",
    "CompactedError",
    "Compare",
    "DeleteResult",
    "Election",
    "EtcdError",
    "Event",
    "GetResult",
    "HashKVResult",
    "KeyValue",
    "LeaderKey",
    "Lease",
    "LeaseInfo",
    "LeaseNotFoundError",
    "Member",
    "NoLeaderError",
    "NotLeaderError",
    "Op",
    "PermissionDeniedError",
    "PutResult",
    "TxnResult",
    "UnavailableError",
    "prefix_end",
]
