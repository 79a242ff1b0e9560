"""The Lease service and the lessor behind it.

The lease table (id -> granted TTL, attached keys) is replicated: it lives in
the core, and grant and revoke go through Raft. What is *not* replicated is the
expiry deadline of each lease. As in etcd's lessor, only the leader ("primary")
keeps deadlines: it renews them on keep-alive and revokes, through Raft, the
leases whose deadline passed. A member that becomes leader gives every lease a
full TTL plus one election timeout from now (etcd's ``Promote``), so a leader
change or a restart never expires a lease early; a member that loses
leadership forgets its deadlines (``Demote``).

etcd behaviour kept here (server/lease/lessor.go, etcdserver/v3_server.go,
api/v3rpc/lease.go, checked against etcd 3.5.1):

- ``LeaseGrant``: ID 0 picks a fresh positive id (idutil layout: member-id
  prefix, start time, counter); negative ids are accepted as given; a TTL above
  9,000,000,000 is ``OutOfRange "etcdserver: too large lease TTL"``; a TTL below
  the minimum (``ceil(1.5 * election timeout)`` seconds, 2 s by default — also
  for 0 and negative TTLs) is raised to it; an existing id is
  ``FailedPrecondition "etcdserver: lease already exists"`` (from the core).
- ``LeaseRevoke`` of an unknown id: ``NotFound "etcdserver: requested lease not
  found"`` (from the core).
- ``LeaseKeepAlive``: the header is taken *before* renewing; an unknown lease
  answers TTL 0 and the stream goes on; an expired lease is revoked first, then
  answered with TTL 0 (etcd waits for the revoke to finish).
- ``LeaseTimeToLive``: remaining seconds truncated toward zero; unknown lease ->
  ``ID, TTL=-1`` with a header, not an error.
- ``LeaseLeases``: every lease, soonest expiry first.
- On a follower, keep-alives and ``LeaseTimeToLive`` are answered by the
  leader (forwarded through :class:`LeaderClient`), as etcd's followers do.
- Expired leases are looked for every 500 ms; at most 500 are revoked per pass
  (etcd's ``leaseRevokeRate / 2``); a failed revoke is retried later. Promoting
  with 1000 leases or more spreads expiries so no more than 750 fall in any
  one second (etcd's pile-up avoidance).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from etcdcore._core import Core, CoreError
from etcdcore.bridge import (
    FAILED_PRECONDITION,
    NOT_FOUND,
    OUT_OF_RANGE,
    UNAVAILABLE,
    Bridge,
    EtcdError,
    Stream,
)
from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.services import decode_stream_message
from etcdcore.services.header import fill_header
from etcdcore.services.leader_client import LeaderClient

log = logging.getLogger("etcdcore.lessor")

SERVICE = "/etcdserverpb.Lease/"
#: etcd's MaxLeaseTTL (about 285 years).
MAX_LEASE_TTL = 9_000_000_000
ERR_TTL_TOO_LARGE = "etcdserver: too large lease TTL"
ERR_LEASE_NOT_FOUND = "etcdserver: requested lease not found"
ERR_NOT_LEADER = "etcdserver: not leader"
ERR_TIMEOUT = "etcdserver: request timed out"
#: How often expired leases are looked for (etcd: every 500 ms).
CHECK_INTERVAL = 0.5
#: etcd's leaseRevokeRate: revokes per second; half of it per 500 ms pass.
REVOKE_RATE = 1000
#: How long a failed revoke of an expired lease waits before it is tried again.
RETRY_INTERVAL = 3.0


def min_lease_ttl(election_timeout_ms: int) -> int:
    """etcd's minimum lease TTL: 1.5 election timeouts, rounded up to whole seconds."""
    return max(1, math.ceil(1.5 * election_timeout_ms / 1000))


class LeaseIdGenerator:
    """Lease ids laid out as etcd's idutil lays out request ids: the member id's
    low 16 bits, then the start time in milliseconds (40 bits), then an 8-bit
    counter that may carry into the time. Unique across members and restarts;
    masked to a positive int64."""

    def __init__(self, member_id: int, now_ms: int | None = None) -> None:
        ms = int(time.time() * 1000) if now_ms is None else now_ms
        self._prefix = (member_id & 0xFFFF) << 48
        self._suffix = (ms & 0xFF_FFFF_FFFF) << 8

    def next(self) -> int:
        """The next id (may be 0 only after 2^48 ids; callers skip 0)."""
        self._suffix = (self._suffix + 1) & ((1 << 48) - 1)
        return (self._prefix | self._suffix) & ((1 << 63) - 1)


class Lessor:
    """Expiry deadlines of the leases this member, as leader, is responsible for.

    ``clock`` is a monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        core: Core,
        *,
        election_timeout_ms: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        check_interval: float = CHECK_INTERVAL,
        retry_interval: float = RETRY_INTERVAL,
        request_timeout: float | None = None,
    ) -> None:
        self.core = core
        self.min_ttl = min_lease_ttl(election_timeout_ms)
        self.election_timeout = election_timeout_ms / 1000
        self._clock = clock
        self._check_interval = check_interval
        self._retry_interval = retry_interval
        #: etcd's ReqTimeout: 5 s + 2 election timeouts.
        self.request_timeout = (
            5.0 + 2 * self.election_timeout if request_timeout is None else request_timeout
        )
        self._deadlines: dict[int, float] = {}
        self._retry_at: dict[int, float] = {}
        self._revoking: dict[int, asyncio.Task[None]] = {}
        self._leader = False
        self._term = -1
        self._ids = LeaseIdGenerator(core.header()[1])
        self._expiry_task: asyncio.Task[None] | None = None

    @property
    def is_primary(self) -> bool:
        """True while this member's lessor owns the deadlines (it leads)."""
        return self._leader

    # -- leadership ----------------------------------------------------------------
    def promote(self, extend: float | None = None) -> None:
        """This member leads: every lease expires ``extend`` + its TTL from now
        (``extend`` defaults to one election timeout, as etcd's server does)."""
        now = self._clock()
        extend = self.election_timeout if extend is None else extend
        self._leader = True
        self._retry_at.clear()
        leases = self.core.leases()
        self._deadlines = {lid: now + extend + ttl for lid, ttl in leases}
        if len(leases) >= REVOKE_RATE:
            self._spread_expiries(now, extend)

    def _spread_expiries(self, now: float, extend: float) -> None:
        """Delay expiries that pile up (more than 3/4 of the revoke rate in one
        second) so that revoking them cannot starve everything else."""
        target = (3 * REVOKE_RATE) // 4
        order = sorted(self._deadlines.items(), key=lambda item: item[1])
        base = order[0][1] - now
        next_window = base + 1.0
        in_window = 0
        for lid, deadline in order:
            remaining = deadline - now
            if remaining > next_window:
                base, next_window, in_window = remaining, remaining + 1.0, 1
                continue
            in_window += 1
            if in_window <= target:
                continue
            delay = in_window / target - (remaining - base)
            next_window = base + delay
            self._deadlines[lid] = deadline + delay

    def demote(self) -> None:
        """Another member leads: its lessor owns the deadlines now."""
        self._leader = False
        self._deadlines.clear()
        self._retry_at.clear()

    def on_leader(self, is_leader: bool, term: int) -> None:
        """Bridge listener for leadership changes."""
        if is_leader:
            if not self._leader or term != self._term:
                self._term = term
                self.promote()
        elif self._leader:
            self.demote()

    # -- operations ----------------------------------------------------------------
    def new_id(self) -> int:
        """A fresh lease id: positive, never 0, not in the table."""
        existing = {lid for lid, _ in self.core.leases()}
        while True:
            lid = self._ids.next()
            if lid != 0 and lid not in existing:
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
        """Revoke through Raft (the core deletes the attached keys in one revision)."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.core.lease_revoke, lease_id)
        finally:
            if self.core.lease_info(lease_id) is None:
                self._forget(lease_id)

    def _forget(self, lease_id: int) -> None:
        self._deadlines.pop(lease_id, None)
        self._retry_at.pop(lease_id, None)

    async def renew(self, lease_id: int) -> int:
        """Keep-alive: the lease's granted TTL after renewing, or 0 when it is gone.

        An expired lease is revoked first (etcd waits for that revoke), so a
        client told 0 will not find the lease's keys any more.
        """
        await self.wait_primary()
        info = self.core.lease_info(lease_id)
        if info is None:
            self._forget(lease_id)
            return 0
        deadline = self._deadlines.get(lease_id)
        if deadline is not None and deadline <= self._clock():
            await self._revoke_expired(lease_id)
            return 0
        ttl = info[0]
        self._deadlines[lease_id] = self._clock() + ttl
        self._retry_at.pop(lease_id, None)
        return ttl

    async def wait_primary(self, poll: float = 0.05) -> None:
        """Return once this member's lessor is primary (promoting it if the core
        already leads). While there is no leader, wait up to etcd's request
        timeout (5 s + 2 election timeouts) and then fail with "request timed
        out"; when another member leads, fail with "not leader" (the Lease
        service then forwards the call to the leader, see ``LeaseService._renew``)."""
        waited = 0.0
        while not self._leader:
            if self.core.is_leader():
                self._term = self.core.header()[3]
                self.promote()
                return
            leader = int(self.core.status().get("leader", 0))
            if leader and leader != self.core.header()[1]:
                raise EtcdError(FAILED_PRECONDITION, ERR_NOT_LEADER)
            if waited >= self.request_timeout:
                raise EtcdError(UNAVAILABLE, ERR_TIMEOUT)
            await asyncio.sleep(poll)
            waited += poll

    def remaining(self, lease_id: int, granted: int) -> int:
        """Whole seconds until the lease expires, truncated toward zero as etcd's
        ``int64(Remaining().Seconds())`` (negative once overdue)."""
        deadline = self._deadlines.get(lease_id)
        if deadline is None:
            # No deadline: not the leader (etcd forwards to it), or not synced yet.
            return granted
        return int(deadline - self._clock())

    def expired(self) -> list[int]:
        """Leases past their deadline and not waiting for a retry, soonest first."""
        now = self._clock()
        due = [
            (deadline, lid)
            for lid, deadline in self._deadlines.items()
            if deadline <= now and self._retry_at.get(lid, 0.0) <= now
        ]
        return [lid for _, lid in sorted(due)]

    def leases_by_expiry(self) -> list[int]:
        """Every lease id in the table, soonest expiry first (etcd's Leases())."""
        never = math.inf
        ids = [lid for lid, _ in self.core.leases()]
        return sorted(ids, key=lambda lid: (self._deadlines.get(lid, never), lid))

    def sync(self) -> None:
        """Match the deadlines to the replicated table: leases granted elsewhere get
        a full TTL from now, revoked ones are dropped."""
        if not self._leader:
            return
        now = self._clock()
        table = dict(self.core.leases())
        for lid in [lid for lid in self._deadlines if lid not in table]:
            self._forget(lid)
        for lid, ttl in table.items():
            self._deadlines.setdefault(lid, now + ttl)

    # -- expiry --------------------------------------------------------------------
    def start(self) -> None:
        """Promote if leading now and start the expiry loop (on the running loop)."""
        if self.core.is_leader() and not self._leader:
            self._term = self.core.header()[3]
            self.promote()
        self._expiry_task = asyncio.ensure_future(self._expire_forever())

    async def stop(self) -> None:
        """Stop the expiry loop and wait for revokes in flight."""
        if self._expiry_task is not None:
            self._expiry_task.cancel()
            try:
                await self._expiry_task
            except asyncio.CancelledError:
                pass
            self._expiry_task = None
        if self._revoking:
            await asyncio.gather(*self._revoking.values(), return_exceptions=True)

    async def expire_once(self) -> list[int]:
        """Revoke the leases past their deadline (leader only, at most half the
        revoke rate per pass); returns the ids revoked. Also catches up with a
        leadership change the bridge has not reported yet."""
        leading = self.core.is_leader()
        if leading and not self._leader:
            self._term = self.core.header()[3]
            self.promote()
        elif self._leader and not leading:
            self.demote()
        if not self._leader:
            return []
        self.sync()
        due = self.expired()[: REVOKE_RATE // 2]
        if not due:
            return []
        results = await asyncio.gather(*(self._revoke_expired(lid) for lid in due))
        return [lid for lid, ok in zip(due, results, strict=True) if ok]

    async def _revoke_expired(self, lease_id: int) -> bool:
        """Revoke one expired lease, sharing a revoke already in flight."""
        task = self._revoking.get(lease_id)
        if task is None:
            task = asyncio.ensure_future(self._do_revoke_expired(lease_id))
            self._revoking[lease_id] = task
            task.add_done_callback(lambda _t: self._revoking.pop(lease_id, None))
        await asyncio.shield(task)
        return lease_id not in self._deadlines

    async def _do_revoke_expired(self, lease_id: int) -> None:
        log.debug("revoking expired lease", extra={"fields": {"lease-id": f"{lease_id:016x}"}})
        try:
            await self.revoke(lease_id)
        except CoreError as e:
            code, message = e.args[0], e.args[1]
            if code == NOT_FOUND:
                self._forget(lease_id)
                return
            log.warning(
                "failed to revoke expired lease",
                extra={"fields": {"lease-id": f"{lease_id:016x}", "error": message}},
            )
            self._retry_at[lease_id] = self._clock() + self._retry_interval
        except Exception as e:  # noqa: BLE001 - keep expiring the others
            log.warning(
                "failed to revoke expired lease",
                extra={"fields": {"lease-id": f"{lease_id:016x}", "error": str(e)}},
            )
            self._retry_at[lease_id] = self._clock() + self._retry_interval

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(self._check_interval)
            try:
                await self.expire_once()
            except Exception:  # noqa: BLE001 - expiry must keep running
                log.exception("lease expiry pass failed")


class LeaseService:
    """etcdserverpb.Lease over the bridge."""

    def __init__(self, core: Core, lessor: Lessor, leader: LeaderClient | None = None) -> None:
        self.core = core
        self.lessor = lessor
        self.leader = leader

    def _forwarding(self) -> bool:
        """True when another member leads: it holds the deadlines."""
        if self.leader is None or self.core.is_leader():
            return False
        leader = int(self.core.status().get("leader", 0))
        return leader not in (0, self.core.header()[1])

    async def _renew(self, lease_id: int) -> int:
        if self._forwarding():
            assert self.leader is not None
            return await self.leader.renew(lease_id)
        try:
            return await self.lessor.renew(lease_id)
        except EtcdError as e:
            # Leadership moved while we waited for it.
            if e.message != ERR_NOT_LEADER or self.leader is None:
                raise
            return await self.leader.renew(lease_id)

    def register(self, bridge: Bridge) -> None:
        """Bind the Lease methods and the lessor's leadership listener."""
        bridge.unary(SERVICE + "LeaseGrant", self.lease_grant)
        bridge.unary(SERVICE + "LeaseRevoke", self.lease_revoke)
        bridge.unary(SERVICE + "LeaseTimeToLive", self.lease_time_to_live)
        bridge.unary(SERVICE + "LeaseLeases", self.lease_leases)
        bridge.streaming(SERVICE + "LeaseKeepAlive", self.lease_keep_alive)
        bridge.on_leader(self.lessor.on_leader)

    async def lease_grant(self, data: bytes) -> bytes:
        """LeaseGrant: (ID, TTL) -> header, ID, TTL."""
        req = rpc_pb2.LeaseGrantRequest.FromString(data)
        lease_id, ttl = await self.lessor.grant(req.ID, req.TTL)
        resp = rpc_pb2.LeaseGrantResponse(ID=lease_id, TTL=ttl)
        fill_header(self.core, resp.header)
        return resp.SerializeToString()

    async def lease_revoke(self, data: bytes) -> bytes:
        """LeaseRevoke: drops the lease and deletes its keys."""
        req = rpc_pb2.LeaseRevokeRequest.FromString(data)
        await self.lessor.revoke(req.ID)
        resp = rpc_pb2.LeaseRevokeResponse()
        fill_header(self.core, resp.header)
        return resp.SerializeToString()

    async def lease_time_to_live(self, data: bytes) -> bytes:
        """LeaseTimeToLive: remaining and granted TTL, keys on request; TTL -1 when
        the lease does not exist (etcd answers, it does not fail)."""
        req = rpc_pb2.LeaseTimeToLiveRequest.FromString(data)
        if self._forwarding():
            assert self.leader is not None
            return await self.leader.time_to_live(data)
        resp = rpc_pb2.LeaseTimeToLiveResponse(ID=req.ID)
        info = self.core.lease_info(req.ID)
        if info is None:
            resp.TTL = -1
        else:
            granted, keys = info
            resp.grantedTTL = granted
            resp.TTL = self.lessor.remaining(req.ID, granted)
            if req.keys:
                resp.keys.extend(keys)
        fill_header(self.core, resp.header)
        return resp.SerializeToString()

    async def lease_leases(self, data: bytes) -> bytes:
        """LeaseLeases: every lease id."""
        rpc_pb2.LeaseLeasesRequest.FromString(data)  # garbage is refused, as etcd does
        resp = rpc_pb2.LeaseLeasesResponse(
            leases=[rpc_pb2.LeaseStatus(ID=lid) for lid in self.lessor.leases_by_expiry()]
        )
        fill_header(self.core, resp.header)
        return resp.SerializeToString()

    async def lease_keep_alive(self, stream: Stream) -> None:
        """LeaseKeepAlive: one answer per request, until the client stops."""
        while (data := await stream.recv()) is not None:
            req = decode_stream_message(rpc_pb2.LeaseKeepAliveRequest, data)
            resp = rpc_pb2.LeaseKeepAliveResponse(ID=req.ID)
            # The header is read before renewing, as etcd does: a keep-alive can
            # never claim a revision after the one that revoked its lease.
            fill_header(self.core, resp.header)
            resp.TTL = await self._renew(req.ID)
            if not stream.send(resp.SerializeToString()):
                return
