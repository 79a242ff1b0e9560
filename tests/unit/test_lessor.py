"""The lessor's rules with a fake core and a fake clock (no processes, no Raft).

Expected behaviour was checked against etcd 3.5.1 (server/lease/lessor.go,
etcdserver/v3_server.go, api/v3rpc/lease.go and a running etcd).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from etcdcore._core import CoreError
from etcdcore.bridge import EtcdError
from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.services.lessor import (
    MAX_LEASE_TTL,
    LeaseIdGenerator,
    LeaseService,
    Lessor,
    min_lease_ttl,
)

T = TypeVar("T")
MEMBER = 0xABCD


class FakeCore:
    """The lease side of the core: a replicated table, done synchronously."""

    def __init__(self) -> None:
        self.table: dict[int, int] = {}
        self.keys: dict[int, list[bytes]] = {}
        self.revoked: list[int] = []
        self.revision = 1
        self.leader = True
        self.leader_id = MEMBER
        self.fail_revokes = 0

    def header(self) -> tuple[int, int, int, int]:
        return (1, MEMBER, self.revision, 2)

    def status(self) -> dict[str, Any]:
        return {"leader": self.leader_id}

    def is_leader(self) -> bool:
        return self.leader

    def leases(self) -> list[tuple[int, int]]:
        return list(self.table.items())

    def lease_info(self, lease_id: int) -> tuple[int, list[bytes]] | None:
        ttl = self.table.get(lease_id)
        return None if ttl is None else (ttl, list(self.keys.get(lease_id, [])))

    def lease_grant(self, lease_id: int, ttl: int) -> int:
        if lease_id in self.table:
            raise CoreError(9, "etcdserver: lease already exists")
        self.table[lease_id] = ttl
        self.revision += 1
        return self.revision

    def lease_revoke(self, lease_id: int) -> int:
        if self.fail_revokes:
            self.fail_revokes -= 1
            raise CoreError(14, "etcdserver: request timed out")
        if lease_id not in self.table:
            raise CoreError(5, "etcdserver: requested lease not found")
        del self.table[lease_id]
        self.keys.pop(lease_id, None)
        self.revoked.append(lease_id)
        self.revision += 1
        return self.revision


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(coro: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro()

    return asyncio.run(main())


def make(**kw: Any) -> tuple[Lessor, FakeCore, Clock]:
    core, clock = FakeCore(), Clock()
    le = Lessor(core, clock=clock, **kw)  # type: ignore[arg-type]
    le.promote()
    return le, core, clock


def grant(le: Lessor, ttl: int, lease_id: int = 0) -> int:
    return run(lambda: le.grant(lease_id, ttl))[0]


# -- grant ---------------------------------------------------------------------------


def test_minimum_ttl_is_one_and_a_half_election_timeouts_rounded_up() -> None:
    assert min_lease_ttl(1000) == 2
    assert min_lease_ttl(3000) == 5
    assert min_lease_ttl(100) == 1


@pytest.mark.parametrize("ttl", [-3, 0, 1, 2])
def test_short_ttl_is_raised_to_the_minimum(ttl: int) -> None:
    le, core, _ = make()
    lease_id, granted = run(lambda: le.grant(0, ttl))
    assert granted == 2 and core.table[lease_id] == 2


def test_too_large_ttl_is_out_of_range() -> None:
    le, core, _ = make()
    assert grant(le, MAX_LEASE_TTL) in core.table
    with pytest.raises(EtcdError) as err:
        grant(le, MAX_LEASE_TTL + 1)
    assert (err.value.code, err.value.message) == (11, "etcdserver: too large lease TTL")


def test_existing_id_is_refused_by_the_core() -> None:
    le, _, _ = make()
    grant(le, 10, lease_id=777)
    with pytest.raises(CoreError) as err:
        grant(le, 10, lease_id=777)
    assert err.value.args == (9, "etcdserver: lease already exists")


def test_given_ids_are_kept_even_negative_ones() -> None:
    le, core, _ = make()
    assert grant(le, 10, lease_id=-5) == -5 and core.table[-5] == 10


def test_generated_ids_are_positive_distinct_and_member_prefixed() -> None:
    gen = LeaseIdGenerator(0xFFFF_FFFF_FFFF_FFFF, now_ms=1)
    ids = [gen.next() for _ in range(1000)]
    assert len(set(ids)) == 1000 and all(0 < i < 2**63 for i in ids)
    assert LeaseIdGenerator(0x1234, now_ms=5).next() >> 48 == 0x1234


def test_generated_id_skips_existing_leases() -> None:
    le, core, _ = make()
    taken = LeaseIdGenerator(MEMBER, now_ms=7).next()
    le._ids = LeaseIdGenerator(MEMBER, now_ms=7)
    core.table[taken] = 5
    lease_id = grant(le, 10)
    assert lease_id != taken and core.table == {taken: 5, lease_id: 10}


# -- keep-alive and remaining TTL ----------------------------------------------------


def test_keepalive_renews_to_the_full_ttl() -> None:
    le, _, clock = make()
    lease_id = grant(le, 10)
    clock.now += 8
    assert le.remaining(lease_id, 10) == 2
    assert run(lambda: le.renew(lease_id)) == 10
    assert le.remaining(lease_id, 10) == 10


def test_keepalive_of_unknown_lease_answers_ttl_zero() -> None:
    le, _, _ = make()
    assert run(lambda: le.renew(42)) == 0


def test_keepalive_of_expired_lease_revokes_it_first() -> None:
    le, core, clock = make()
    lease_id = grant(le, 10)
    clock.now += 10
    assert run(lambda: le.renew(lease_id)) == 0
    assert core.revoked == [lease_id]


def test_remaining_truncates_toward_zero() -> None:
    le, _, clock = make()
    lease_id = grant(le, 10)
    clock.now += 3.5
    assert le.remaining(lease_id, 10) == 6
    clock.now += 6.9  # 0.4 s overdue, not yet revoked
    assert le.remaining(lease_id, 10) == 0


def test_keepalive_on_a_follower_is_not_leader() -> None:
    le, core, _ = make()
    core.leader, core.leader_id = False, 0x9999
    le.demote()
    with pytest.raises(EtcdError) as err:
        run(lambda: le.renew(1))
    assert (err.value.code, err.value.message) == (9, "etcdserver: not leader")


def test_keepalive_without_leader_times_out() -> None:
    le, core, _ = make(request_timeout=0.05)
    core.leader, core.leader_id = False, 0
    le.demote()
    with pytest.raises(EtcdError) as err:
        run(lambda: le.wait_primary(poll=0.01))
    assert (err.value.code, err.value.message) == (14, "etcdserver: request timed out")


def test_keepalive_promotes_when_the_core_already_leads() -> None:
    core, clock = FakeCore(), Clock()
    core.table[5] = 30
    le = Lessor(core, clock=clock)  # type: ignore[arg-type]
    assert not le.is_primary
    assert run(lambda: le.renew(5)) == 30
    assert le.is_primary


# -- expiry --------------------------------------------------------------------------


def test_expired_lease_is_revoked() -> None:
    le, core, clock = make()
    soon, later = grant(le, 10), grant(le, 20)
    clock.now += 10.1
    assert run(le.expire_once) == [soon]
    assert core.revoked == [soon] and later in core.table


def test_nothing_expires_early() -> None:
    le, core, clock = make()
    grant(le, 10)
    clock.now += 9.9
    assert run(le.expire_once) == [] and core.revoked == []


def test_follower_does_not_expire_leases() -> None:
    le, core, clock = make()
    grant(le, 10)
    core.leader = False
    le.on_leader(False, 3)
    clock.now += 100
    assert run(le.expire_once) == []
    assert core.revoked == []


def test_failed_revoke_is_retried_later() -> None:
    le, core, clock = make(retry_interval=3.0)
    lease_id = grant(le, 10)
    clock.now += 11
    core.fail_revokes = 1
    assert run(le.expire_once) == []
    clock.now += 1
    assert run(le.expire_once) == []  # waiting out the retry interval
    clock.now += 2.5
    assert run(le.expire_once) == [lease_id]


def test_lease_revoked_elsewhere_is_forgotten() -> None:
    le, core, clock = make()
    lease_id = grant(le, 10)
    del core.table[lease_id]
    clock.now += 11
    assert run(le.expire_once) == [] and core.revoked == []
    assert le.leases_by_expiry() == []


def test_lease_granted_elsewhere_gets_a_deadline() -> None:
    le, core, clock = make()
    core.table[99] = 10  # applied from another member's proposal
    run(le.expire_once)
    clock.now += 10
    assert run(le.expire_once) == [99]


def test_expiry_loop_runs_on_its_own() -> None:
    le, core, clock = make(check_interval=0.01)
    lease_id = grant(le, 10)
    clock.now += 11

    async def scenario() -> None:
        le.start()
        for _ in range(100):
            if core.revoked:
                break
            await asyncio.sleep(0.01)
        await le.stop()

    run(scenario)
    assert core.revoked == [lease_id]


# -- leadership ----------------------------------------------------------------------


def test_promotion_gives_every_lease_its_ttl_plus_an_election_timeout() -> None:
    le, _, clock = make(election_timeout_ms=1000)
    lease_id = grant(le, 10)
    clock.now += 9
    le.on_leader(False, 3)
    assert le.remaining(lease_id, 10) == 10  # no deadline on a follower
    le.on_leader(True, 4)
    assert le.remaining(lease_id, 10) == 11


def test_repeated_leader_report_for_the_same_term_changes_nothing() -> None:
    le, _, clock = make()
    le.on_leader(True, 4)
    lease_id = grant(le, 10)
    clock.now += 5
    le.on_leader(True, 4)
    assert le.remaining(lease_id, 10) == 5


def test_promotion_spreads_piled_up_expiries() -> None:
    core, clock = FakeCore(), Clock()
    for i in range(1, 3001):
        core.table[i] = 10
    le = Lessor(core, clock=clock)  # type: ignore[arg-type]
    le.promote(extend=0)
    deadlines = sorted(le._deadlines.values())
    assert deadlines[0] == clock.now + 10
    for i in range(len(deadlines) - 750):
        assert deadlines[i + 750] - deadlines[i] >= 0.999  # at most 750 in any second


# -- the gRPC service ----------------------------------------------------------------


class FakeStream:
    def __init__(self, requests: list[bytes]) -> None:
        self._requests = list(requests)
        self.sent: list[bytes] = []

    async def recv(self) -> bytes | None:
        return self._requests.pop(0) if self._requests else None

    def send(self, payload: bytes) -> bool:
        self.sent.append(payload)
        return True


def service() -> tuple[LeaseService, Lessor, FakeCore, Clock]:
    le, core, clock = make()
    return LeaseService(core, le), le, core, clock  # type: ignore[arg-type]


def test_grant_response() -> None:
    svc, _, core, _ = service()
    req = rpc_pb2.LeaseGrantRequest(ID=7, TTL=0).SerializeToString()
    resp = rpc_pb2.LeaseGrantResponse.FromString(run(lambda: svc.lease_grant(req)))
    assert (resp.ID, resp.TTL, resp.error) == (7, 2, "")
    assert (resp.header.member_id, resp.header.revision) == (MEMBER, core.revision)


def test_time_to_live_of_unknown_lease_is_ttl_minus_one() -> None:
    svc, _, _, _ = service()
    req = rpc_pb2.LeaseTimeToLiveRequest(ID=4243).SerializeToString()
    resp = rpc_pb2.LeaseTimeToLiveResponse.FromString(run(lambda: svc.lease_time_to_live(req)))
    assert (resp.ID, resp.TTL, resp.grantedTTL) == (4243, -1, 0)
    assert resp.header.member_id == MEMBER


def test_time_to_live_with_keys() -> None:
    svc, le, core, clock = service()
    lease_id = grant(le, 500)
    core.keys[lease_id] = [b"zoo1"]
    clock.now += 367.5
    req = rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=True).SerializeToString()
    resp = rpc_pb2.LeaseTimeToLiveResponse.FromString(run(lambda: svc.lease_time_to_live(req)))
    assert (resp.TTL, resp.grantedTTL, list(resp.keys)) == (132, 500, [b"zoo1"])
    req = rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id).SerializeToString()
    resp = rpc_pb2.LeaseTimeToLiveResponse.FromString(run(lambda: svc.lease_time_to_live(req)))
    assert list(resp.keys) == []


def test_leases_are_listed_soonest_expiry_first() -> None:
    svc, le, _, _ = service()
    late, soon = grant(le, 100), grant(le, 5)
    resp = rpc_pb2.LeaseLeasesResponse.FromString(run(lambda: svc.lease_leases(b"")))
    assert [s.ID for s in resp.leases] == [soon, late]


def test_keepalive_stream_answers_each_request_and_zero_for_unknown() -> None:
    svc, le, core, _ = service()
    lease_id = grant(le, 30)
    stream = FakeStream(
        [rpc_pb2.LeaseKeepAliveRequest(ID=i).SerializeToString() for i in (lease_id, 12345)]
    )
    run(lambda: svc.lease_keep_alive(stream))  # type: ignore[arg-type]
    answers = [rpc_pb2.LeaseKeepAliveResponse.FromString(b) for b in stream.sent]
    assert [(a.ID, a.TTL) for a in answers] == [(lease_id, 30), (12345, 0)]
    assert all(a.header.revision == core.revision for a in answers)


def test_keepalive_header_is_taken_before_the_expired_lease_is_revoked() -> None:
    svc, le, core, clock = service()
    lease_id = grant(le, 10)
    before = core.revision
    clock.now += 10
    stream = FakeStream([rpc_pb2.LeaseKeepAliveRequest(ID=lease_id).SerializeToString()])
    run(lambda: svc.lease_keep_alive(stream))  # type: ignore[arg-type]
    answer = rpc_pb2.LeaseKeepAliveResponse.FromString(stream.sent[0])
    assert (answer.TTL, answer.header.revision) == (0, before)
    assert core.revision == before + 1 and core.revoked == [lease_id]


def test_revoke_unknown_lease_passes_the_core_error_through() -> None:
    svc, _, _, _ = service()
    req = rpc_pb2.LeaseRevokeRequest(ID=4242).SerializeToString()
    with pytest.raises(CoreError) as err:
        run(lambda: svc.lease_revoke(req))
    assert err.value.args == (5, "etcdserver: requested lease not found")
