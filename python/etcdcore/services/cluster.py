"""The Cluster service: membership as the core knows it."""

from __future__ import annotations

from etcdcore._core import Core
from etcdcore.bridge import UNIMPLEMENTED, Bridge, EtcdError
from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.services.header import fill_header

SERVICE = "/etcdserverpb.Cluster/"
ERR_MEMBERSHIP = "etcdserver: member changes are not supported by this member yet"


class ClusterService:
    """etcdserverpb.Cluster over the bridge."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def register(self, bridge: Bridge) -> None:
        bridge.unary(SERVICE + "MemberList", self.member_list)
        for name in ("MemberAdd", "MemberRemove", "MemberUpdate", "MemberPromote"):
            bridge.unary(SERVICE + name, self.unsupported)

    async def member_list(self, _data: bytes) -> bytes:
        resp = rpc_pb2.MemberListResponse(
            members=[
                rpc_pb2.Member(
                    ID=mid, name=name, peerURLs=peers, clientURLs=clients, isLearner=learner
                )
                for mid, name, peers, clients, learner in self.core.members()
            ]
        )
        fill_header(self.core, resp.header)
        return resp.SerializeToString()

    async def unsupported(self, _data: bytes) -> bytes:
        raise EtcdError(UNIMPLEMENTED, ERR_MEMBERSHIP)
