"""Cluster membership and maintenance through the client, on a single member of
etcdcore and of real etcd 3.5."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import TypeVar

import pytest

from etcdcore.client import AsyncClient, Client, DeadlineExceededError, EtcdError
from harness import Member, free_port

T = TypeVar("T")


def conf_change(change: Callable[[], T]) -> T:
    """A membership change, tried again when its deadline passes: etcd 3.5's
    raft silently drops a configuration change proposed before it has applied
    the previous one (the caller then waits in vain), which a quick test
    sequence of changes runs into. Nothing was applied then, so trying again
    is safe."""
    for _ in range(3):
        try:
            return change()
        except DeadlineExceededError:
            continue
    return change()


def test_member_list_shows_the_single_member(client: Client, server: Member) -> None:
    (member,) = client.member_list()
    assert member.name == server.name
    assert member.peer_urls == [server.peer_url]
    assert member.client_urls == [f"http://{server.endpoint}"]
    assert not member.is_learner


def test_member_update_changes_the_peer_urls(client: Client, server: Member) -> None:
    (member,) = client.member_list()
    extra = f"http://127.0.0.1:{free_port()}"
    try:
        updated = conf_change(lambda: client.member_update(member.id, [server.peer_url, extra]))
        assert sorted(updated[0].peer_urls) == sorted([server.peer_url, extra])
        assert sorted(client.member_list()[0].peer_urls) == sorted([server.peer_url, extra])
    finally:
        conf_change(lambda: client.member_update(member.id, [server.peer_url]))


def test_a_learner_can_be_added_then_removed(client: Client) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    learner = conf_change(lambda: client.member_add([url], is_learner=True))
    assert learner.is_learner and learner.peer_urls == [url] and learner.name == ""
    assert learner.id in {m.id for m in client.member_list()}
    left = conf_change(lambda: client.member_remove(learner.id))
    assert learner.id not in {m.id for m in left}
    assert len(client.member_list()) == 1


def test_promoting_a_learner_that_never_started_is_refused(client: Client) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    learner = conf_change(lambda: client.member_add([url], is_learner=True))
    try:
        with pytest.raises(EtcdError) as e:
            client.member_promote(learner.id)
        assert "learner" in e.value.message
    finally:
        conf_change(lambda: client.member_remove(learner.id))


def test_a_healthy_member_has_no_alarms(client: Client) -> None:
    assert client.alarm_list() == []


def test_disarming_without_alarms_clears_nothing(client: Client) -> None:
    assert client.alarm_disarm() == []


def test_defragment_succeeds(client: Client) -> None:
    client.put("m/defrag", "x")
    client.defragment()
    assert client.get("m/defrag").value == b"x"


def test_hash_kv_is_unchanged_when_nothing_was_written(client: Client) -> None:
    client.put("m/hash", "1")
    first = client.hash_kv()
    second = client.hash_kv()
    assert first.hash == second.hash
    assert first.revision == second.revision


def test_hash_kv_changes_with_a_write(client: Client) -> None:
    before = client.hash_kv()
    client.put("m/hash2", "changed")
    assert client.hash_kv().hash != before.hash


def test_snapshot_streams_a_non_empty_image_into_a_file(client: Client) -> None:
    client.put("m/snap", "x")
    out = io.BytesIO()
    written = client.snapshot(out)
    assert written > 0
    assert len(out.getvalue()) == written


def test_move_leader_to_the_leader_itself_changes_nothing(client: Client) -> None:
    (member,) = client.member_list()
    client.move_leader(member.id)
    assert client.status().leader == member.id


def test_async_client_answers_the_maintenance_calls_as_the_sync_one(
    client: Client, server: Member
) -> None:
    async def run() -> tuple[list, list, int, int]:
        async with AsyncClient([server.endpoint]) as c:
            members = await c.member_list()
            alarms = await c.alarm_list()
            await c.defragment()
            h = await c.hash_kv()
            out = io.BytesIO()
            written = await c.snapshot(out)
            assert written == len(out.getvalue()) > 0
            return members, alarms, h.hash, h.revision

    members, alarms, h, rev = asyncio.run(run())
    assert members == client.member_list()
    assert alarms == client.alarm_list()
    assert h == client.hash_kv(rev).hash
