"""etcdcore's Python client for any etcd v3 server (etcdcore or etcd itself).

from etcdcore.client import Client, Compare, Op

with Client(["127.0.0.1:2379"]) as c:
    c.put("config/a", "1")
    c.txn().if_(Compare.value("config/a") == "1").then(Op.put("config/b", "2")).commit()
    for events in c.watch("config/", prefix=True):
        ...
"""

from .aio import AsyncClient
from .errors import CompactedError, EtcdError, LeaseNotFoundError, NoLeaderError, UnavailableError
from .requests import Compare, Op, prefix_end
from .sync import Client
from .types import DeleteResult, Event, GetResult, KeyValue, Lease, LeaseInfo, PutResult, TxnResult

__all__ = [
    "AsyncClient",
    "Client",
    "CompactedError",
    "Compare",
    "DeleteResult",
    "EtcdError",
    "Event",
    "GetResult",
    "KeyValue",
    "Lease",
    "LeaseInfo",
    "LeaseNotFoundError",
    "NoLeaderError",
    "Op",
    "PutResult",
    "TxnResult",
    "UnavailableError",
    "prefix_end",
]
