"""The asyncio client: the same requests and results as :class:`Client`, on
grpc.aio."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from . import requests as rq
from .errors import EtcdError, from_rpc_error
from .sync import may_retry_elsewhere, normalize_endpoint
from .types import DeleteResult, Event, GetResult, Lease, PutResult, TxnResult

T = TypeVar("T")


class AsyncClient:
    """``async with AsyncClient(["127.0.0.1:2379"]) as c: await c.put("k", "v")``."""

    def __init__(self, endpoints: Sequence[str] = ("127.0.0.1:2379",), timeout: float = 5.0):
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        self.endpoints = [normalize_endpoint(e) for e in endpoints]
        self.timeout = timeout
        self._current = 0
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _channel(self) -> grpc.aio.Channel:
        target = self.endpoints[self._current]
        ch = self._channels.get(target)
        if ch is None:
            ch = self._channels[target] = grpc.aio.insecure_channel(target)
        return ch

    async def _call(self, fn: Callable[[grpc.aio.Channel], Awaitable[T]], idempotent: bool) -> T:
        last: grpc.RpcError | None = None
        for _ in range(len(self.endpoints)):
            try:
                return await fn(self._channel())
            except grpc.aio.AioRpcError as e:
                last = e
                if not may_retry_elsewhere(e, idempotent):
                    break
                self._current = (self._current + 1) % len(self.endpoints)
        assert last is not None
        raise from_rpc_error(last) from None

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def get(self, key: rq.Bytesish, **options: Any) -> GetResult:
        req = rq.range_request(key, **options)
        r = await self._call(
            lambda ch: rpc_pb2_grpc.KVStub(ch).Range(req, timeout=self.timeout), True
        )
        return rq.get_result(r)

    async def put(self, key: rq.Bytesish, value: rq.Bytesish, **options: Any) -> PutResult:
        req = rq.put_request(key, value, **options)
        r = await self._call(
            lambda ch: rpc_pb2_grpc.KVStub(ch).Put(req, timeout=self.timeout), False
        )
        return rq.put_result(r)

    async def delete(self, key: rq.Bytesish, **options: Any) -> DeleteResult:
        req = rq.delete_request(key, **options)
        r = await self._call(
            lambda ch: rpc_pb2_grpc.KVStub(ch).DeleteRange(req, timeout=self.timeout), False
        )
        return rq.delete_result(r)

    def txn(self) -> rq.TxnBuilder:
        """``await client.txn().if_(...).then(...).else_(...).commit()``."""

        async def commit(req: rpc_pb2.TxnRequest) -> TxnResult:
            r = await self._call(
                lambda ch: rpc_pb2_grpc.KVStub(ch).Txn(req, timeout=self.timeout), False
            )
            return rq.txn_result(r)

        return rq.TxnBuilder(commit)

    async def lease_grant(self, ttl: int, lease_id: int = 0) -> Lease:
        req = rpc_pb2.LeaseGrantRequest(TTL=ttl, ID=lease_id)
        r = await self._call(
            lambda ch: rpc_pb2_grpc.LeaseStub(ch).LeaseGrant(req, timeout=self.timeout), False
        )
        return Lease(r.ID, r.TTL)

    async def lease_revoke(self, lease_id: int) -> None:
        req = rpc_pb2.LeaseRevokeRequest(ID=lease_id)
        await self._call(
            lambda ch: rpc_pb2_grpc.LeaseStub(ch).LeaseRevoke(req, timeout=self.timeout), False
        )

    async def lease_keep_alive_once(self, lease_id: int) -> int:
        async def once(ch: grpc.aio.Channel) -> int:
            call = rpc_pb2_grpc.LeaseStub(ch).LeaseKeepAlive(timeout=self.timeout)
            await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=lease_id))
            resp = await call.read()
            call.cancel()
            return 0 if resp is grpc.aio.EOF else int(resp.TTL)

        return await self._call(once, True)

    @contextlib.asynccontextmanager
    async def lease(self, ttl: int) -> AsyncIterator[Lease]:
        """A lease kept alive (every ttl/3 s) while the block runs, then revoked."""
        lease = await self.lease_grant(ttl)

        async def keep() -> None:
            while True:
                await asyncio.sleep(max(ttl / 3, 0.5))
                with contextlib.suppress(EtcdError):
                    await self.lease_keep_alive_once(lease.id)

        task = asyncio.create_task(keep())
        try:
            yield lease
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(EtcdError):
                await self.lease_revoke(lease.id)

    async def watch(
        self,
        key: rq.Bytesish,
        *,
        prefix: bool = False,
        range_end: rq.Bytesish | None = None,
        start_revision: int = 0,
        prev_kv: bool = False,
    ) -> AsyncIterator[list[Event]]:
        """Batches of events, as :meth:`Client.watch` (resumes after a broken
        stream; :class:`CompactedError` when the revision is gone)."""
        k, end = rq.key_range(key, prefix, range_end)
        next_rev = start_revision
        while True:
            call = rpc_pb2_grpc.WatchStub(self._channel()).Watch()
            try:
                await call.write(
                    rpc_pb2.WatchRequest(
                        create_request=rpc_pb2.WatchCreateRequest(
                            key=k, range_end=end, start_revision=next_rev, prev_kv=prev_kv
                        )
                    )
                )
                async for resp in call:
                    events, next_rev = rq.watch_step(resp, next_rev)
                    if events:
                        yield events
            except grpc.aio.AioRpcError as e:
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
                    raise from_rpc_error(e) from None
                self._current = (self._current + 1) % len(self.endpoints)
                await asyncio.sleep(0.1)
            finally:
                call.cancel()
