"""Many leases at once, from a real gRPC client (grpcio's asyncio API): grant
(each with a key), keep alive over one stream, count, revoke. For the lease
tests that need thousands of them; one-off calls use etcdctl or our client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import grpc

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

T = TypeVar("T")
#: Calls in flight at once.
CONCURRENCY = 64


async def _bounded(calls: Iterable[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    sem = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with sem:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


def grant_with_keys(endpoint: str, n: int, ttl: int, prefix: str) -> list[int]:
    """Grants ``n`` leases of ``ttl`` seconds and puts ``{prefix}{i}`` on each;
    returns their ids in order."""

    async def run() -> list[int]:
        async with grpc.aio.insecure_channel(endpoint) as ch:
            lease = rpc_pb2_grpc.LeaseStub(ch)
            kv = rpc_pb2_grpc.KVStub(ch)

            def one(i: int) -> Callable[[], Awaitable[int]]:
                async def call() -> int:
                    g = await lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=ttl), timeout=30)
                    key = f"{prefix}{i:07d}".encode()
                    await kv.Put(rpc_pb2.PutRequest(key=key, value=b"v", lease=g.ID), timeout=30)
                    return int(g.ID)

                return call

            return await _bounded((one(i) for i in range(n)), CONCURRENCY)

    return asyncio.run(run())


def keep_alive(endpoint: str, ids: Sequence[int], window: int = 1000) -> list[int]:
    """One keep-alive for each lease, all over one stream (up to ``window``
    unanswered at a time, as clientv3 sends them); returns the TTLs answered,
    in order."""

    async def run() -> list[int]:
        async with grpc.aio.insecure_channel(endpoint) as ch:
            call = rpc_pb2_grpc.LeaseStub(ch).LeaseKeepAlive(timeout=120)
            answers: list[int] = []
            sent = 0
            while len(answers) < len(ids):
                while sent < len(ids) and sent - len(answers) < window:
                    await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=ids[sent]))
                    sent += 1
                resp = await call.read()
                assert isinstance(resp, rpc_pb2.LeaseKeepAliveResponse), resp
                assert resp.ID == ids[len(answers)], "answers out of order"
                answers.append(int(resp.TTL))
            await call.done_writing()
            return answers

    return asyncio.run(run())


def revoke(endpoint: str, ids: Sequence[int]) -> None:
    async def run() -> None:
        async with grpc.aio.insecure_channel(endpoint) as ch:
            lease = rpc_pb2_grpc.LeaseStub(ch)

            def one(i: int) -> Callable[[], Awaitable[object]]:
                return lambda: lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=i), timeout=30)

            await _bounded((one(i) for i in ids), CONCURRENCY)

    asyncio.run(run())


def lease_ids(endpoint: str) -> list[int]:
    """LeaseLeases, in the order the member lists them."""
    with grpc.insecure_channel(endpoint) as ch:
        r = rpc_pb2_grpc.LeaseStub(ch).LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=30)
    return [s.ID for s in r.leases]


def count_keys(endpoint: str, prefix: str) -> int:
    """Keys under ``prefix`` in this member's own store (serializable)."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    with grpc.insecure_channel(endpoint) as ch:
        r = rpc_pb2_grpc.KVStub(ch).Range(
            rpc_pb2.RangeRequest(
                key=prefix.encode(), range_end=end.encode(), count_only=True, serializable=True
            ),
            timeout=10,
        )
    return int(r.count)


def time_to_live(
    endpoint: str, lease_id: int, keys: bool = False
) -> rpc_pb2.LeaseTimeToLiveResponse:
    with grpc.insecure_channel(endpoint) as ch:
        return rpc_pb2_grpc.LeaseStub(ch).LeaseTimeToLive(
            rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=keys), timeout=30
        )


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
