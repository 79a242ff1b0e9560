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

from .aio import AsyncClient, AsyncElection, AsyncKeptLease
from .errors import (
    AuthError,
    CompactedError,
    DeadlineExceededError,
    EtcdError,
    LeaseLostError,
    LeaseNotFoundError,
    NoLeaderError,
    NotLeaderError,
    PermissionDeniedError,
    UnavailableError,
)
from .requests import Compare, Op, prefix_end
from .sync import Client, Election, KeptLease, Watch
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
    "AsyncKeptLease",
    "AuthError",
    "Client",
    "CompactedError",
    "Compare",
    "DeadlineExceededError",
    "DeleteResult",
    "Election",
    "EtcdError",
    "Event",
    "GetResult",
    "HashKVResult",
    "KeptLease",
    "KeyValue",
    "LeaderKey",
    "Lease",
    "LeaseInfo",
    "LeaseLostError",
    "LeaseNotFoundError",
    "Member",
    "NoLeaderError",
    "NotLeaderError",
    "Op",
    "PermissionDeniedError",
    "PutResult",
    "TxnResult",
    "UnavailableError",
    "Watch",
    "prefix_end",
]
