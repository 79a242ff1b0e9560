"""The Cluster service: membership as the core knows it.

``MemberList`` answers as etcd 3.5.1 does (api/v3rpc/member.go): members sorted
by ID, and a header with cluster id, member id and raft term but *no* revision.
``linearizable`` is accepted; the list is the replicated membership as this
member has applied it.

MemberAdd / Remove / Promote are Raft configuration changes made by the core;
MemberUpdate is an ordinary replicated request. Each answers with the member
list once the change is applied here. The core checks membership rules with
etcd's errors; URL syntax is checked here. MemberPromote needs the leader's view
of the learner's progress: a follower hands it to the leader.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from etcdcore._core import Core, CoreError
from etcdcore.bridge import (
    INVALID_ARGUMENT,
    NOT_FOUND,
    Bridge,
    EtcdError,
)
from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.services.header import fill_header
from etcdcore.services.leader_client import LeaderClient

SERVICE = "/etcdserverpb.Cluster/"
ERR_BAD_URLS = "etcdserver: given member URLs are invalid"
ERR_MEMBER_NOT_FOUND = "etcdserver: member not found"
ERR_NOT_LEADER = "etcdserver: not leader"

Member = tuple[int, str, list[str], list[str], bool]


def valid_peer_urls(urls: list[str]) -> bool:
    """etcd's types.NewURLs: at least one URL, each http(s)/unix(s) with host:port
    and no path."""
    if not urls:
        return False
    for url in urls:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https", "unix", "unixs"):
            return False
        try:
            port = parts.port
        except ValueError:
            return False
        if port is None or parts.path or parts.query or parts.fragment:
            return False
    return True


class ClusterService:
    """etcdserverpb.Cluster over the bridge."""

    def __init__(self, core: Core, leader: LeaderClient | None = None) -> None:
        self.core = core
        self.leader = leader

    def register(self, bridge: Bridge) -> None:
        """Bind every Cluster method."""
        bridge.unary(SERVICE + "MemberList", self.member_list)
        bridge.unary(SERVICE + "MemberAdd", self.member_add)
        bridge.unary(SERVICE + "MemberRemove", self.member_remove)
        bridge.unary(SERVICE + "MemberUpdate", self.member_update)
        bridge.unary(SERVICE + "MemberPromote", self.member_promote)

    def _header(self, header: rpc_pb2.ResponseHeader) -> None:
        fill_header(self.core, header, with_revision=False)

    def _members(self) -> list[Member]:
        return sorted(self.core.members(), key=lambda m: m[0])

    def _member(self, member_id: int) -> Member:
        for m in self._members():
            if m[0] == member_id:
                return m
        raise EtcdError(NOT_FOUND, ERR_MEMBER_NOT_FOUND)

    def _list(self) -> list[rpc_pb2.Member]:
        return [
            rpc_pb2.Member(ID=mid, name=name, peerURLs=peers, clientURLs=clients, isLearner=learner)
            for mid, name, peers, clients, learner in self._members()
        ]

    async def member_list(self, data: bytes) -> bytes:
        """MemberList: every member, sorted by ID."""
        rpc_pb2.MemberListRequest.FromString(data)
        resp = rpc_pb2.MemberListResponse(members=self._list())
        self._header(resp.header)
        return resp.SerializeToString()

    async def member_add(self, data: bytes) -> bytes:
        """MemberAdd: a new voter or learner; answers with it and the new list."""
        req = rpc_pb2.MemberAddRequest.FromString(data)
        urls = [u.strip() for u in req.peerURLs]
        if not valid_peer_urls(urls):
            raise EtcdError(INVALID_ARGUMENT, ERR_BAD_URLS)
        loop = asyncio.get_running_loop()
        member_id = await loop.run_in_executor(None, self.core.member_add, urls, req.isLearner)
        resp = rpc_pb2.MemberAddResponse(
            member=rpc_pb2.Member(ID=member_id, peerURLs=urls, isLearner=req.isLearner),
            members=self._list(),
        )
        self._header(resp.header)
        return resp.SerializeToString()

    async def member_remove(self, data: bytes) -> bytes:
        """MemberRemove: answers with the list without the member."""
        req = rpc_pb2.MemberRemoveRequest.FromString(data)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.core.member_remove, req.ID)
        resp = rpc_pb2.MemberRemoveResponse(members=self._list())
        self._header(resp.header)
        return resp.SerializeToString()

    async def member_update(self, data: bytes) -> bytes:
        """MemberUpdate: new peer URLs for a member."""
        req = rpc_pb2.MemberUpdateRequest.FromString(data)
        urls = [u.strip() for u in req.peerURLs]
        if not valid_peer_urls(urls):
            raise EtcdError(INVALID_ARGUMENT, ERR_BAD_URLS)
        self._member(req.ID)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.core.member_update, req.ID, urls)
        resp = rpc_pb2.MemberUpdateResponse(members=self._list())
        self._header(resp.header)
        return resp.SerializeToString()

    async def member_promote(self, data: bytes) -> bytes:
        """MemberPromote: a caught-up learner becomes a voter (checked by the leader)."""
        req = rpc_pb2.MemberPromoteRequest.FromString(data)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.core.member_promote, req.ID)
        except CoreError as e:
            if e.args[1] != ERR_NOT_LEADER or self.leader is None:
                raise
            return await self.leader.member_promote(data)
        resp = rpc_pb2.MemberPromoteResponse(members=self._list())
        self._header(resp.header)
        return resp.SerializeToString()
