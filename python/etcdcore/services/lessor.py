"""The Lease service and the lessor behind it.

The lease table (id, granted TTL) is replicated: it lives in the core, and
grant and revoke go through Raft. Which keys a lease holds is the store's. What
is *not* replicated is the expiry deadline of each lease: like etcd's lessor,
only the leader keeps deadlines, renews them on keep-alive and revokes the
leases whose deadline passed. A member that becomes leader gives every lease a
fresh full TTL (etcd's Promote), so a leader change never expires a lease early.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from etcdcore._core import Core, CoreError
from etcdcore.bridge import NOT_FOUND, OUT_OF_RANGE, Bridge, EtcdError, Stream
from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.services.header import fill_header

log = logging.getLogger("etcdcore.lessor")

MAX_LEASE_TTL = 9_000_000_000
ERR_TTL_TOO_LARGE = "etcdserver: too large lease TTL"
SERVICE = "/etcdserverpb.Lease/"


def min_lease_ttl(election_timeout_ms: int) -> int:
    """etcd's minimum TTL: 1.5 election timeouts, rounded up to whole seconds."""
    return max(1, math.ceil(1.5 * election_timeout_ms / 1000))


class LeaseIdGenerator:
    """Lease ids as etcd's idutil makes them: the member id's low 16 bits, the
    start time in milliseconds, then a counter — unique across members and
    restarts, positive as int64."""

    def __init__(self, member_id: int, now_ms: int | None = None) -> None:
        ms = int(time.time() * 1000) if now_ms is None else now_ms
        self._prefix = (member_id & 0xFFFF) << 48
        self._suffix = (ms & 0xFF_FFFF_FFFF) << 8

    def next(self) -> int:
        self._suffix = (self._suffix + 1) & ((1 << 48) - 1)
        return (self._prefix | self._suffix) & ((1 << 63) - 1)


class Lessor:
    """Deadlines of the leases this member, as leader, is responsible for."""

    def __init__(
        self,
        core: Core,
        *,
        election_timeout_ms: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        check_interval: float = 0.5,
    ) -> None:
        self.core = core
        self.min_ttl = min_lease_ttl(election_timeout_ms)
        self._clock = clock
        self._check_interval = check_interval
        self._deadlines: dict[int, float] = {}
        self._leader = False
        self._ids = LeaseIdGenerator(core.header()[1])
        self._expiry_task: asyncio.Task[None] | None = None

    # -- leadership ----------------------------------------------------------------
    def promote(self) -> None:
        """This member leads: every lease gets a full TTL from now."""
        now = self._clock()
        self._leader = True
        self._deadlines = {lid: now + ttl for lid, ttl in self.core.leases()}

    def demote(self) -> None:
        """Another member leads: its lessor owns the deadlines now."""
        self._leader = False
        self._deadlines.clear()

    def on_leader(self, is_leader: bool, _term: int) -> None:
        if is_leader:
            self.promote()
        else:
            self.demote()

    # -- operations ----------------------------------------------------------------
    def new_id(self) -> int:
        existing = {lid for lid, _ in self.core.leases()}
        while True:
            lid = self._ids.next()
            if lid not in existing:
                return lid

    async def grant(self, lease_id: int, ttl: int) -> tuple[int, int]:
        """Grant through Raft; returns (id, effective TTL)."""
        if ttl > MAX_LEASE_TTL:
            raise EtcdError(OUT_OF_RANGE, ERR_TTL_TOO_LARGE)
        ttl = max(ttl, self.min_ttl)
        if lease_id == 0:
            lease_id = self.new_id()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.core.lease_grant, lease_id, ttl)
        if self._leader:
            self._deadlines[lease_id] = self._clock() + ttl
        return lease_id, ttl

    async def revoke(self, lease_id: int) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.core.lease_revoke, lease_id)
        self._deadlines.pop(lease_id, None)

    def renew(self, lease_id: int) -> int:
        """Renew on keep-alive; the granted TTL, or 0 when the lease is gone."""
        info = self.core.lease_info(lease_id)
        if info is None:
            return 0
        ttl = info[0]
        deadline = self._deadlines.get(lease_id)
        if deadline is not None and deadline <= self._clock():
            return 0  # expired; the expiry loop is revoking it
        self._deadlines[lease_id] = self._clock() + ttl
        return ttl

    def remaining(self, lease_id: int, granted: int) -> int:
        """Whole seconds left (etcd truncates)."""
        deadline = self._deadlines.get(lease_id)
        if deadline is None:
            return granted
        return max(0, int(deadline - self._clock()))

    def expired(self) -> list[int]:
        now = self._clock()
        return [lid for lid, deadline in self._deadlines.items() if deadline <= now]

    # -- expiry --------------------------------------------------------------------
    def start(self) -> None:
        if self.core.is_leader():
            self.promote()
        self._expiry_task = asyncio.ensure_future(self._expire_forever())

    async def stop(self) -> None:
        if self._expiry_task is not None:
            self._expiry_task.cancel()
            try:
                await self._expiry_task
            except asyncio.CancelledError:
                pass

    async def expire_once(self) -> list[int]:
        """Revoke every lease past its deadline (leader only); returns their ids."""
        if not self._leader:
            return []
        revoked = []
        for lease_id in self.expired():
            try:
                await self.revoke(lease_id)
            except CoreError as e:
                if e.args[0] != NOT_FOUND:
                    log.warning("revoking expired lease %x failed: %s", lease_id, e.args[1])
                    continue
                self._deadlines.pop(lease_id, None)
            revoked.append(lease_id)
        return revoked

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(self._check_interval)
            try:
                await self.expire_once()
            except Exception:  # noqa: BLE001 - expiry must keep running
                log.exception("lease expiry failed")


class LeaseService:
    """etcdserverpb.Lease over the bridge."""

    def __init__(self, core: Core, lessor: Lessor) -> None:
        self.core = core
        self.lessor = lessor

    def register(self, bridge: Bridge) -> None:
        bridge.unary(SERVICE + "LeaseGrant", self.lease_grant)
        bridge.unary(SERVICE + "LeaseRevoke", self.lease_revoke)
        bridge.unary(SERVICE + "LeaseTimeToLive", self.lease_time_to_live)
        bridge.unary(SERVICE + "LeaseLeases", self.lease_leases)
        bridge.streaming(SERVICE + "LeaseKeepAlive", self.lease_keep_alive)
        bridge.on_leader(self.lessor.on_leader)

    async def lease_grant(self, data: bytes) -> bytes:
        req = rpc_pb2.LeaseGrantRequest.FromString(data)
        lease_id, ttl = await self.lessor.grant(req.ID, req.TTL)
        resp = rpc_pb2.LeaseGrantResponse(ID=lease_id, TTL=ttl)
        fill_header(self.core, resp.header)
        return resp.SerializeToString()

    async def lease_revoke(self, data: bytes) -> bytes:
        req = rpc_pb2.LeaseRevokeRequest.FromString(data)
        await self.lessor.revoke(req.ID)
        resp = rpc_pb2.LeaseRevokeResponse()
        fill_header(self.core, resp.header)
        return resp.SerializeToString()

    async def lease_time_to_live(self, data: bytes) -> bytes:
        req = rpc_pb2.LeaseTimeToLiveRequest.FromString(data)
        resp = rpc_pb2.LeaseTimeToLiveResponse(ID=req.ID)
        info = self.core.lease_info(req.ID)
        if info is None:
            # etcd answers an unknown lease with TTL -1, not an error.
            resp.TTL = -1
        else:
            granted, keys = info
            resp.grantedTTL = granted
            resp.TTL = self.lessor.remaining(req.ID, granted)
            if req.keys:
                resp.keys.extend(keys)
        fill_header(self.core, resp.header)
        return resp.SerializeToString()

    async def lease_leases(self, _data: bytes) -> bytes:
        resp = rpc_pb2.LeaseLeasesResponse(
            leases=[rpc_pb2.LeaseStatus(ID=lid) for lid, _ in self.core.leases()]
        )
        fill_header(self.core, resp.header)
        return resp.SerializeToString()

    async def lease_keep_alive(self, stream: Stream) -> None:
        while (data := await stream.recv()) is not None:
            req = rpc_pb2.LeaseKeepAliveRequest.FromString(data)
            resp = rpc_pb2.LeaseKeepAliveResponse(ID=req.ID, TTL=self.lessor.renew(req.ID))
            fill_header(self.core, resp.header)
            if not stream.send(resp.SerializeToString()):
                return
