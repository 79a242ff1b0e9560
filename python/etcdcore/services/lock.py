"""The v3lock service: distributed locks as etcd serves them.

A lock on NAME is a key ``NAME/<lease id in hex>`` bound to the caller's lease.
The holder is the key with the smallest create revision under ``NAME/``; a
waiter waits until every older key is deleted (released, or its lease expired).
This is clientv3's concurrency.Mutex, which etcd's v3lock server runs against
itself; ours runs the same steps through :class:`LoopbackKV`.
"""

from __future__ import annotations

from etcdcore.bridge import UNKNOWN, Bridge, EtcdError
from etcdcore.client.requests import prefix_end
from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.proto.v3lock import v3lock_pb2
from etcdcore.services.loopback import LoopbackKV

SERVICE = "/v3lockpb.Lock/"
#: concurrency.ErrSessionExpired: the lease ended while waiting.
ERR_SESSION_EXPIRED = "mutex: session is expired"


def member_key(prefix: bytes, lease: int) -> bytes:
    """``prefix`` + the lease id as Go's ``%x`` prints an int64."""
    return prefix + (f"{lease:x}" if lease >= 0 else f"-{-lease:x}").encode()


async def acquire(
    kv: LoopbackKV, prefix: bytes, lease: int, value: bytes
) -> tuple[bytes, int, rpc_pb2.TxnResponse]:
    """Create this lease's key under ``prefix`` unless it exists; returns (key,
    its create revision, the txn response, whose second result is the owner)."""
    key = member_key(prefix, lease)
    cmp = rpc_pb2.Compare(
        result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.CREATE, key=key, create_revision=0
    )
    owner = rpc_pb2.RequestOp(
        request_range=rpc_pb2.RangeRequest(
            key=prefix,
            range_end=prefix_end(prefix),
            sort_order=rpc_pb2.RangeRequest.ASCEND,
            sort_target=rpc_pb2.RangeRequest.CREATE,
            limit=1,
        )
    )
    resp = await kv.txn(
        rpc_pb2.TxnRequest(
            compare=[cmp],
            success=[
                rpc_pb2.RequestOp(
                    request_put=rpc_pb2.PutRequest(key=key, value=value, lease=lease)
                ),
                owner,
            ],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key)), owner],
        )
    )
    rev = resp.header.revision
    if not resp.succeeded:
        rev = resp.responses[0].response_range.kvs[0].create_revision
    return key, rev, resp


class LockService:
    """v3lockpb.Lock over the bridge."""

    def __init__(self, kv: LoopbackKV) -> None:
        self.kv = kv

    def register(self, bridge: Bridge) -> None:
        bridge.unary(SERVICE + "Lock", self.lock)
        bridge.unary(SERVICE + "Unlock", self.unlock)

    async def lock(self, data: bytes) -> bytes:
        """Lock: returns once the caller holds NAME (may wait a long time)."""
        req = v3lock_pb2.LockRequest.FromString(data)
        prefix = req.name + b"/"
        key, rev, resp = await acquire(self.kv, prefix, req.lease, b"")
        owner = resp.responses[1].response_range.kvs
        header = resp.header
        if owner and owner[0].create_revision != rev:
            try:
                await self.kv.wait_deletes(prefix, rev - 1)
            except BaseException:
                await self.kv.delete(key)
                raise
            # The lease may have ended while we waited.
            got = await self.kv.range(rpc_pb2.RangeRequest(key=key))
            if not got.kvs:
                raise EtcdError(UNKNOWN, ERR_SESSION_EXPIRED)
            header = got.header
        out = v3lock_pb2.LockResponse(key=key)
        out.header.CopyFrom(header)
        return out.SerializeToString()

    async def unlock(self, data: bytes) -> bytes:
        """Unlock: deletes the lock key."""
        req = v3lock_pb2.UnlockRequest.FromString(data)
        resp = await self.kv.delete(req.key)
        out = v3lock_pb2.UnlockResponse()
        out.header.CopyFrom(resp.header)
        return out.SerializeToString()
