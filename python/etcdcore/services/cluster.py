"""The Cluster service: membership as the core knows it.

``MemberList`` answers as etcd 3.5.1 does (api/v3rpc/member.go): members sorted
by ID, and a header with cluster id, member id and raft term but *no* revision.
``linearizable`` is accepted; a single member's list is always current.

Membership changes arrive with clustering. Until then MemberAdd / Remove /
Update / Promote run etcd's request checks that need no Raft (bad peer URLs,
URLs already used, unknown member, promoting a voter) and otherwise answer
``Unimplemented``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from etcdcore._core import Core
from etcdcore.bridge import (
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    NOT_FOUND,
    UNIMPLEMENTED,
    Bridge,
    EtcdError,
)
from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.services.header import fill_header

SERVICE = "/etcdserverpb.Cluster/"
ERR_MEMBERSHIP = "etcdserver: member operations arrive with clustering"
ERR_BAD_URLS = "etcdserver: given member URLs are invalid"
ERR_PEER_URL_EXISTS = "etcdserver: Peer URLs already exists"
ERR_MEMBER_NOT_FOUND = "etcdserver: member not found"
ERR_NOT_LEARNER = "etcdserver: can only promote a learner member"

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

    def __init__(self, core: Core) -> None:
        self.core = core

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

    async def member_list(self, data: bytes) -> bytes:
        """MemberList: every member, sorted by ID."""
        rpc_pb2.MemberListRequest.FromString(data)
        resp = rpc_pb2.MemberListResponse(
            members=[
                rpc_pb2.Member(
                    ID=mid, name=name, peerURLs=peers, clientURLs=clients, isLearner=learner
                )
                for mid, name, peers, clients, learner in self._members()
            ]
        )
        self._header(resp.header)
        return resp.SerializeToString()

    async def member_add(self, data: bytes) -> bytes:
        """MemberAdd: URL checks, then Unimplemented."""
        req = rpc_pb2.MemberAddRequest.FromString(data)
        if not valid_peer_urls(list(req.peerURLs)):
            raise EtcdError(INVALID_ARGUMENT, ERR_BAD_URLS)
        used = {u for m in self._members() for u in m[2]}
        if any(u.strip() in used for u in req.peerURLs):
            raise EtcdError(FAILED_PRECONDITION, ERR_PEER_URL_EXISTS)
        raise EtcdError(UNIMPLEMENTED, ERR_MEMBERSHIP)

    async def member_remove(self, data: bytes) -> bytes:
        """MemberRemove: unknown member check, then Unimplemented."""
        req = rpc_pb2.MemberRemoveRequest.FromString(data)
        self._member(req.ID)
        raise EtcdError(UNIMPLEMENTED, ERR_MEMBERSHIP)

    async def member_update(self, data: bytes) -> bytes:
        """MemberUpdate: unknown member check, then Unimplemented."""
        req = rpc_pb2.MemberUpdateRequest.FromString(data)
        self._member(req.ID)
        raise EtcdError(UNIMPLEMENTED, ERR_MEMBERSHIP)

    async def member_promote(self, data: bytes) -> bytes:
        """MemberPromote: unknown member / not a learner checks, then Unimplemented."""
        req = rpc_pb2.MemberPromoteRequest.FromString(data)
        if not self._member(req.ID)[4]:
            raise EtcdError(FAILED_PRECONDITION, ERR_NOT_LEARNER)
        raise EtcdError(UNIMPLEMENTED, ERR_MEMBERSHIP)
