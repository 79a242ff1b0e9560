"""Elections through the client (v3election), against etcdcore and real etcd 3.5."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest
from waiting import next_within

from etcdcore.client import AsyncClient, Client, DeadlineExceededError, NotLeaderError
from harness import Member


def test_nobody_leads_an_election_nobody_campaigned_in(client: Client) -> None:
    assert client.election("e/empty").leader() is None


def test_a_campaigner_leads_with_its_value(client: Client) -> None:
    with client.election("e/solo", ttl=5) as e:
        key = e.campaign("me", timeout=10)
        leader = e.leader()
        assert leader is not None
        assert (leader.key, leader.value) == (key.key, b"me")
    assert client.election("e/solo").leader() is None


def test_the_second_campaigner_leads_once_the_first_resigns(server: Member) -> None:
    with Client([server.endpoint]) as c1, Client([server.endpoint]) as c2:
        first = c1.election("e/two", ttl=5)
        second = c2.election("e/two", ttl=5)
        first.campaign("first", timeout=10)
        won = threading.Event()

        def campaign() -> None:
            second.campaign("second", timeout=20)
            won.set()

        t = threading.Thread(target=campaign)
        t.start()
        try:
            assert not won.wait(1.0), "the second campaigner led while the first still did"
            assert first.leader().value == b"first"  # type: ignore[union-attr]
            first.resign()
            assert won.wait(10), "the second campaigner did not lead after the first resigned"
            assert second.leader().value == b"second"  # type: ignore[union-attr]
        finally:
            t.join(30)
            second.resign()


def test_leadership_outlives_the_lease_ttl_while_kept_alive(client: Client) -> None:
    with client.election("e/kept", ttl=2) as e:
        e.campaign("alive", timeout=10)
        time.sleep(3)
        assert e.leader().value == b"alive"  # type: ignore[union-attr]


def test_observe_sees_the_leader_then_each_proclaimed_value(client: Client) -> None:
    with client.election("e/obs", ttl=5) as e:
        e.campaign("v1", timeout=10)
        values = e.observe()
        try:
            assert next_within(values, 10).value == b"v1"
            e.proclaim("v2")
            assert next_within(values, 10).value == b"v2"
            e.proclaim("v3")
            assert next_within(values, 10).value == b"v3"
        finally:
            values.close()


def test_proclaim_without_leading_raises_not_leader(client: Client) -> None:
    with pytest.raises(NotLeaderError):
        client.election("e/none").proclaim("x")


def test_campaign_that_times_out_withdraws_the_candidate(server: Member) -> None:
    with Client([server.endpoint]) as c1, Client([server.endpoint]) as c2:
        with c1.election("e/timeout", ttl=5) as first:
            first.campaign("first", timeout=10)
            late = c2.election("e/timeout", ttl=5)
            # The deadline may be noticed by the client or first by the server
            # (etcd then answers UNKNOWN "context deadline exceeded", more
            # likely on a loaded machine): both are the same timeout.
            with pytest.raises(DeadlineExceededError) as e:
                late.campaign("late", timeout=0.5)
            assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert late.key is None
        # The withdrawn candidate does not inherit the leadership.
        assert c1.election("e/timeout").leader() is None


def test_async_second_campaigner_leads_once_the_first_resigns(server: Member) -> None:
    async def run() -> bytes | None:
        async with AsyncClient([server.endpoint]) as c1, AsyncClient([server.endpoint]) as c2:
            first = c1.election("ae/two", ttl=5)
            second = c2.election("ae/two", ttl=5)
            await first.campaign("first", timeout=10)
            waiting = asyncio.create_task(second.campaign("second", timeout=20))
            done, _ = await asyncio.wait({waiting}, timeout=1.0)
            assert not done, "the second campaigner led while the first still did"
            await first.resign()
            await asyncio.wait_for(waiting, 10)
            leader = await second.leader()
            await second.resign()
            return leader.value if leader else None

    assert asyncio.run(run()) == b"second"


def test_async_observe_sees_proclaimed_values(server: Member) -> None:
    async def run() -> list[bytes]:
        async with AsyncClient([server.endpoint]) as c:
            async with c.election("ae/obs", ttl=5) as e:
                await e.campaign("v1", timeout=10)
                values = e.observe()
                seen = [(await asyncio.wait_for(anext(values), 10)).value]
                await e.proclaim("v2")
                seen.append((await asyncio.wait_for(anext(values), 10)).value)
                await values.aclose()
                return seen

    assert asyncio.run(run()) == [b"v1", b"v2"]
