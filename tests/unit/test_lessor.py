"""The lessor's rules with a fake core and a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from etcdcore.bridge import EtcdError
from etcdcore.services.lessor import LeaseIdGenerator, Lessor, min_lease_ttl


class FakeCore:
    def __init__(self) -> None:
        self.table: dict[int, int] = {}
        self.revoked: list[int] = []

    def header(self) -> tuple[int, int, int, int]:
        return (1, 0xABCD, 1, 1)

    def leases(self) -> list[tuple[int, int]]:
        return sorted(self.table.items())

    def lease_info(self, lease_id: int) -> tuple[int, list[bytes]] | None:
        ttl = self.table.get(lease_id)
        return None if ttl is None else (ttl, [])

    def lease_grant(self, lease_id: int, ttl: int) -> int:
        self.table[lease_id] = ttl
        return 1

    def lease_revoke(self, lease_id: int) -> int:
        del self.table[lease_id]
        self.revoked.append(lease_id)
        return 1

    def is_leader(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lessor() -> tuple[Lessor, FakeCore, Clock]:
    core, clock = FakeCore(), Clock()
    le = Lessor(core, clock=clock)  # type: ignore[arg-type]
    le.promote()
    return le, core, clock


def test_minimum_ttl_is_one_and_a_half_election_timeouts_rounded_up() -> None:
    assert min_lease_ttl(1000) == 2
    assert min_lease_ttl(3000) == 5


def test_short_ttl_is_raised_to_the_minimum() -> None:
    le, core, _ = lessor()
    lease_id, ttl = asyncio.run(le.grant(0, 1))
    assert ttl == 2 and core.table[lease_id] == 2


def test_too_large_ttl_is_refused() -> None:
    le, _, _ = lessor()
    with pytest.raises(EtcdError, match="etcdserver: too large lease TTL"):
        asyncio.run(le.grant(0, 9_000_000_001))


def test_generated_ids_are_positive_and_distinct() -> None:
    gen = LeaseIdGenerator(0xFFFF_FFFF_FFFF_FFFF)
    ids = {gen.next() for _ in range(1000)}
    assert len(ids) == 1000 and all(0 < i < 2**63 for i in ids)


def test_keepalive_renews_to_the_full_ttl() -> None:
    le, _, clock = lessor()
    lease_id, _ = asyncio.run(le.grant(0, 10))
    clock.now += 8
    assert le.renew(lease_id) == 10
    assert le.remaining(lease_id, 10) == 10


def test_keepalive_of_unknown_lease_answers_ttl_zero() -> None:
    le, _, _ = lessor()
    assert le.renew(42) == 0


def test_remaining_counts_down_in_whole_seconds() -> None:
    le, _, clock = lessor()
    lease_id, _ = asyncio.run(le.grant(0, 10))
    clock.now += 3.5
    assert le.remaining(lease_id, 10) == 6


def test_expired_lease_is_revoked() -> None:
    le, core, clock = lessor()
    lease_id, _ = asyncio.run(le.grant(0, 10))
    clock.now += 10.1
    assert asyncio.run(le.expire_once()) == [lease_id]
    assert core.revoked == [lease_id]


def test_follower_does_not_expire_leases() -> None:
    le, core, clock = lessor()
    asyncio.run(le.grant(0, 10))
    le.demote()
    clock.now += 100
    assert asyncio.run(le.expire_once()) == []
    assert core.revoked == []


def test_promotion_gives_every_lease_a_full_ttl() -> None:
    le, core, clock = lessor()
    lease_id, _ = asyncio.run(le.grant(0, 10))
    clock.now += 9
    le.demote()
    le.promote()
    assert le.remaining(lease_id, 10) == 10
