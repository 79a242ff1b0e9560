"""The KV operations the lock and election services build on, run against this
member's own client listener (etcd's v3lock and v3election servers likewise
run clientv3 against their own server).

Going through the gRPC front door means these writes take exactly the path a
client's do: validation, auth (with the member's internal token, see
``services/channels.py``), Raft and leases.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import grpc

from etcdcore.bridge import EtcdError
from etcdcore.client.requests import prefix_end
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdcore.proto.mvccpb import kv_pb2
from etcdcore.services.channels import open_channel

T = TypeVar("T")


class LoopbackKV:
    """A gRPC client of this member, for services that are clients of the store."""

    def __init__(
        self,
        target: str,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
    ) -> None:
        self.target = target
        self._credentials = credentials
        self._token = token
        self._channel: grpc.aio.Channel | None = None

    def _stubs(self) -> tuple[rpc_pb2_grpc.KVAsyncStub, rpc_pb2_grpc.WatchAsyncStub]:
        if self._channel is None:
            self._channel = open_channel(self.target, self._credentials, self._token)
        return rpc_pb2_grpc.KVStub(self._channel), rpc_pb2_grpc.WatchStub(self._channel)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def txn(self, req: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        return await _call(self._stubs()[0].Txn(req))

    async def range(self, req: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
        return await _call(self._stubs()[0].Range(req))

    async def delete(self, key: bytes) -> rpc_pb2.DeleteRangeResponse:
        return await _call(self._stubs()[0].DeleteRange(rpc_pb2.DeleteRangeRequest(key=key)))

    async def first_created(self, prefix: bytes) -> rpc_pb2.RangeResponse:
        """The oldest key under ``prefix`` (clientv3's WithFirstCreate)."""
        return await self.range(
            rpc_pb2.RangeRequest(
                key=prefix,
                range_end=prefix_end(prefix),
                sort_order=rpc_pb2.RangeRequest.ASCEND,
                sort_target=rpc_pb2.RangeRequest.CREATE,
                limit=1,
            )
        )

    async def wait_deletes(self, prefix: bytes, max_create_revision: int) -> None:
        """Return once every key under ``prefix`` created at or before
        ``max_create_revision`` is gone (clientv3 concurrency's waitDeletes):
        wait on the newest such key, then look again."""
        while True:
            resp = await self.range(
                rpc_pb2.RangeRequest(
                    key=prefix,
                    range_end=prefix_end(prefix),
                    sort_order=rpc_pb2.RangeRequest.DESCEND,
                    sort_target=rpc_pb2.RangeRequest.CREATE,
                    max_create_revision=max_create_revision,
                    limit=1,
                )
            )
            if not resp.kvs:
                return
            await self.wait_delete(resp.kvs[0].key, resp.header.revision)

    async def wait_delete(self, key: bytes, revision: int) -> None:
        """Return once ``key`` is deleted at a revision after ``revision``."""
        async for event in self.watch(key, b"", revision + 1):
            if event.type == kv_pb2.Event.DELETE:
                return

    async def watch(
        self, key: bytes, range_end: bytes, start_revision: int
    ) -> AsyncIterator[kv_pb2.Event]:
        """Events on ``key`` (..``range_end``) from ``start_revision`` on, until
        the caller stops iterating (which cancels the watch)."""
        queue: asyncio.Queue[rpc_pb2.WatchRequest] = asyncio.Queue()
        await queue.put(
            rpc_pb2.WatchRequest(
                create_request=rpc_pb2.WatchCreateRequest(
                    key=key, range_end=range_end, start_revision=start_revision
                )
            )
        )

        async def requests() -> AsyncIterator[rpc_pb2.WatchRequest]:
            while True:
                yield await queue.get()

        call = self._stubs()[1].Watch(requests())
        try:
            async for resp in call:
                if resp.canceled:
                    raise EtcdError(11 if resp.compact_revision else 2, resp.cancel_reason)
                for event in resp.events:
                    yield event
        except grpc.aio.AioRpcError as e:
            raise EtcdError(e.code().value[0], e.details() or "") from e
        finally:
            call.cancel()
            with contextlib.suppress(Exception):
                await asyncio.sleep(0)


async def _call(fut: Awaitable[T]) -> T:
    try:
        return await fut
    except grpc.aio.AioRpcError as e:
        raise EtcdError(e.code().value[0], e.details() or "") from e
