"""The call a follower hands to the leader over its client URL: MemberPromote.

Only the leader knows how far a learner has caught up, so etcd forwards
MemberPromote to it. We reach the leader on its advertised client URL with an
ordinary gRPC client: the call then runs through exactly the leader's own
service code. (Lease keep-alives and TimeToLive, which etcd also forwards, are
handed to the leader by the core over the peer connection.)
"""

from __future__ import annotations

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

    def _leader_target(self) -> str:
        leader = int(self.core.status().get("leader", 0))
        for member_id, _name, _peers, clients, _learner in self.core.members():
            if member_id == leader and clients:
                return grpc_target(clients[0])
        raise EtcdError(UNAVAILABLE, ERR_NO_LEADER)

    async def _open(self) -> grpc.aio.Channel:
        target = self._leader_target()
        if target != self._target or self._channel is None:
            await self.close()
            self._target = target
            self._channel = open_channel(target, self._credentials)
        return self._channel

    async def close(self) -> None:
        """Drop the channel (the leader changed, or the server stops)."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def member_promote(self, data: bytes) -> bytes:
        """MemberPromote answered by the leader."""
        stub = rpc_pb2_grpc.ClusterStub(await self._open())
        try:
            resp = await stub.MemberPromote(
                rpc_pb2.MemberPromoteRequest.FromString(data), timeout=FORWARD_TIMEOUT
            )
        except grpc.aio.AioRpcError as e:
            raise EtcdError(e.code().value[0], e.details() or "") from e
        return resp.SerializeToString()
