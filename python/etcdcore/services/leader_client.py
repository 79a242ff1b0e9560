"""The few calls a follower hands to the leader, as etcd's followers do.

Only the leader knows lease deadlines and how far a learner has caught up, so
etcd forwards LeaseKeepAlive, LeaseTimeToLive and MemberPromote to it. We reach
the leader on its advertised client URL with an ordinary gRPC client: the call
then runs through exactly the leader's own service code.
"""

from __future__ import annotations

import asyncio

import grpc

from etcdcore._core import Core
from etcdcore.bridge import UNAVAILABLE, EtcdError
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdcore.services.channels import open_channel

ERR_NO_LEADER = "etcdserver: no leader"
#: etcd's ReqTimeout floor for a forwarded call.
FORWARD_TIMEOUT = 5.0


def grpc_target(url: str) -> str:
    """``host:port`` of an http(s) client URL."""
    return url.split("://", 1)[-1].rstrip("/")


class LeaderClient:
    """A gRPC channel to whichever member currently leads."""

    def __init__(self, core: Core, credentials: grpc.ChannelCredentials | None = None) -> None:
        self.core = core
        self._credentials = credentials
        self._target: str | None = None
        self._channel: grpc.aio.Channel | None = None
        self._keepalive: (
            grpc.aio.StreamStreamCall[rpc_pb2.LeaseKeepAliveRequest, rpc_pb2.LeaseKeepAliveResponse]
            | None
        ) = None
        self._keepalive_lock = asyncio.Lock()

    def _leader_target(self) -> str:
        leader = int(self.core.status().get("leader", 0))
        for member_id, _name, _peers, clients, _learner in self.core.members():
            if member_id == leader and clients:
                return grpc_target(clients[0])
        raise EtcdError(UNAVAILABLE, ERR_NO_LEADER)

    async def _stub(self) -> rpc_pb2_grpc.LeaseAsyncStub:
        target = self._leader_target()
        if target != self._target or self._channel is None:
            await self.close()
            self._target = target
            self._channel = open_channel(target, self._credentials)
        return rpc_pb2_grpc.LeaseStub(self._channel)

    async def close(self) -> None:
        """Drop the channel (the leader changed, or the server stops)."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def renew(self, lease_id: int) -> int:
        """One keep-alive on the leader; returns the TTL it answered (0: gone)."""
        async with self._keepalive_lock:
            for attempt in (1, 2):
                stub = await self._stub()
                if self._keepalive is None:
                    self._keepalive = stub.LeaseKeepAlive()
                keepalive = self._keepalive
                try:
                    await keepalive.write(rpc_pb2.LeaseKeepAliveRequest(ID=lease_id))
                    resp = await asyncio.wait_for(keepalive.read(), FORWARD_TIMEOUT)
                except (grpc.aio.AioRpcError, asyncio.TimeoutError) as e:
                    self._keepalive = None
                    if attempt == 2:
                        raise _etcd_error(e) from e
                    continue
                if not isinstance(resp, rpc_pb2.LeaseKeepAliveResponse):
                    self._keepalive = None  # the leader ended the stream
                    continue
                return int(resp.TTL)
        raise EtcdError(UNAVAILABLE, ERR_NO_LEADER)

    async def time_to_live(self, data: bytes) -> bytes:
        """LeaseTimeToLive answered by the leader."""
        stub = await self._stub()
        try:
            resp = await stub.LeaseTimeToLive(
                rpc_pb2.LeaseTimeToLiveRequest.FromString(data), timeout=FORWARD_TIMEOUT
            )
        except grpc.aio.AioRpcError as e:
            raise _etcd_error(e) from e
        return resp.SerializeToString()

    async def member_promote(self, data: bytes) -> bytes:
        """MemberPromote answered by the leader."""
        await self._stub()
        assert self._channel is not None
        stub = rpc_pb2_grpc.ClusterStub(self._channel)
        try:
            resp = await stub.MemberPromote(
                rpc_pb2.MemberPromoteRequest.FromString(data), timeout=FORWARD_TIMEOUT
            )
        except grpc.aio.AioRpcError as e:
            raise _etcd_error(e) from e
        return resp.SerializeToString()


def _etcd_error(e: BaseException) -> EtcdError:
    if isinstance(e, grpc.aio.AioRpcError):
        return EtcdError(e.code().value[0], e.details() or "")
    return EtcdError(UNAVAILABLE, "etcdserver: request timed out")
