"""Auto-compaction schedules, with a fake core and a fake clock."""

from __future__ import annotations

import asyncio

from etcdcore.services.compactor import Compactor


class FakeCore:
    def __init__(self) -> None:
        self.revision = 1
        self.compacted: list[int] = []
        self.head_at_compaction: list[int] = []
        self.leader = True

    def header(self) -> tuple[int, int, int, int]:
        return (1, 2, self.revision, 3)

    def is_leader(self) -> bool:
        return self.leader

    def compact(self, revision: int) -> int:
        self.compacted.append(revision)
        self.head_at_compaction.append(self.revision)
        return self.revision


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drive(c: Compactor, core: FakeCore, clock: Clock, seconds: float, revs_per_tick: int) -> None:
    async def go() -> None:
        ticks = int(seconds / c.interval)
        for _ in range(ticks):
            clock.now += c.interval
            core.revision += revs_per_tick
            await c.step()

    asyncio.run(go())


def test_periodic_compacts_at_the_revision_from_one_retention_ago() -> None:
    core, clock = FakeCore(), Clock()
    c = Compactor(core, "periodic", 10.0, clock=clock)  # type: ignore[arg-type]
    drive(c, core, clock, 10.0, 5)
    assert core.compacted == []  # nothing is a full retention old yet
    drive(c, core, clock, 10.0, 5)
    assert len(core.compacted) == 1
    # When it ran, the compaction point was one retention (10 s = 50 revisions)
    # behind the head.
    assert core.head_at_compaction[0] - core.compacted[0] == 50


def test_periodic_period_is_capped_at_one_hour() -> None:
    c = Compactor(FakeCore(), "periodic", 5 * 3600.0)  # type: ignore[arg-type]
    assert (c.period, c.interval) == (3600.0, 360.0)


def test_revision_mode_keeps_retention_revisions() -> None:
    core, clock = FakeCore(), Clock()
    c = Compactor(core, "revision", 100, clock=clock, revision_interval=1.0)  # type: ignore[arg-type]
    core.revision = 1000
    asyncio.run(c.step())
    assert core.compacted == [900]


def test_revision_mode_does_not_repeat_a_compaction() -> None:
    core, clock = FakeCore(), Clock()
    c = Compactor(core, "revision", 100, clock=clock, revision_interval=1.0)  # type: ignore[arg-type]
    core.revision = 1000
    asyncio.run(c.step())
    asyncio.run(c.step())
    assert core.compacted == [900]


def test_followers_do_not_compact() -> None:
    core, clock = FakeCore(), Clock()
    core.leader = False
    c = Compactor(core, "revision", 10, clock=clock, revision_interval=1.0)  # type: ignore[arg-type]
    core.revision = 1000
    asyncio.run(c.step())
    assert core.compacted == []
