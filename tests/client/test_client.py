"""The Python client, against etcdcore and against real etcd 3.5 alike."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from etcdcore.client import (
    AsyncClient,
    Client,
    CompactedError,
    Compare,
    DeadlineExceededError,
    Event,
    LeaseLostError,
    LeaseNotFoundError,
    Op,
)
from harness import Member, free_port


def test_put_then_get_returns_the_value_and_revisions(client: Client) -> None:
    put = client.put("c/put", "v1")
    got = client.get("c/put")
    assert got.value == b"v1"
    assert got.kvs[0].mod_revision == put.revision == got.revision
    assert got.kvs[0].version == 1


def test_get_with_prefix_limit_and_sort(client: Client) -> None:
    for k in ("c/p/a", "c/p/b", "c/p/c"):
        client.put(k, k)
    r = client.get("c/p/", prefix=True, limit=2, sort_order="descend")
    assert [kv.key for kv in r.kvs] == [b"c/p/c", b"c/p/b"]
    assert r.more and r.count == 3


def test_get_at_an_old_revision(client: Client) -> None:
    first = client.put("c/old", "1").revision
    client.put("c/old", "2")
    assert client.get("c/old", revision=first).value == b"1"


def test_put_with_prev_kv_returns_the_previous_value(client: Client) -> None:
    client.put("c/prev", "a")
    assert client.put("c/prev", "b", prev_kv=True).prev_kv.value == b"a"  # type: ignore[union-attr]


def test_delete_prefix_counts_the_deleted_keys(client: Client) -> None:
    client.put("c/del/1", "x")
    client.put("c/del/2", "x")
    r = client.delete("c/del/", prefix=True, prev_kv=True)
    assert r.deleted == 2 and len(r.prev_kvs) == 2
    assert client.get("c/del/", prefix=True).count == 0


def test_txn_runs_the_branch_its_compare_chooses(client: Client) -> None:
    client.put("c/txn", "old")
    ok = (
        client.txn()
        .if_(Compare.value("c/txn") == "old")
        .then(Op.put("c/txn", "new"), Op.get("c/txn"))
        .else_(Op.get("c/txn"))
        .commit()
    )
    assert ok.succeeded and ok.responses[1].value == b"new"  # type: ignore[union-attr]
    missed = client.txn().if_(Compare.version("c/txn") > 5).then(Op.delete("c/txn")).commit()
    assert not missed.succeeded
    assert client.get("c/txn").value == b"new"


def test_txn_create_revision_zero_means_absent(client: Client) -> None:
    cas = client.txn().if_(Compare.create_revision("c/once") == 0).then(Op.put("c/once", "1"))
    assert cas.commit().succeeded
    again = client.txn().if_(Compare.create_revision("c/once") == 0).then(Op.put("c/once", "2"))
    assert not again.commit().succeeded


def test_watch_yields_events_in_order_from_a_revision(client: Client) -> None:
    start = client.put("c/w/0", "0").revision
    for i in range(1, 4):
        client.put(f"c/w/{i}", str(i))
    client.delete("c/w/0")
    seen = []
    watch = client.watch("c/w/", prefix=True, start_revision=start)
    for events in watch:
        seen.extend((e.type, e.kv.key) for e in events)
        if len(seen) >= 5:
            break
    watch.close()
    assert seen == [
        ("PUT", b"c/w/0"), ("PUT", b"c/w/1"), ("PUT", b"c/w/2"), ("PUT", b"c/w/3"),
        ("DELETE", b"c/w/0"),
    ]  # fmt: skip


def test_watch_of_a_compacted_revision_raises(client: Client) -> None:
    first = client.put("c/compact", "1").revision
    last = client.put("c/compact", "2").revision
    client.compact(last)
    with pytest.raises(CompactedError) as e:
        next(iter(client.watch("c/compact", start_revision=first)))
    assert e.value.compact_revision == last


def test_lease_context_keeps_the_key_past_its_ttl_then_revokes(client: Client) -> None:
    with client.lease(2) as lease:
        client.put("c/leased", "v", lease=lease.id)
        time.sleep(3)
        assert client.get("c/leased").value == b"v"
    assert client.get("c/leased").count == 0
    assert client.lease_time_to_live(lease.id).ttl == -1


def test_revoking_an_unknown_lease_raises_lease_not_found(client: Client) -> None:
    with pytest.raises(LeaseNotFoundError):
        client.lease_revoke(0x1234567)


def test_lock_gives_mutual_exclusion(server: Member) -> None:
    inside = []
    overlap = []

    def worker(n: int) -> None:
        with Client([server.endpoint]) as c, c.lock("c/mutex", ttl=5):
            inside.append(n)
            if len(inside) > 1:
                overlap.append(list(inside))
            time.sleep(0.2)
            inside.remove(n)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert overlap == []


def test_a_dead_first_endpoint_fails_over_to_the_next(server: Member) -> None:
    with Client([f"127.0.0.1:{free_port()}", server.endpoint], timeout=2) as c:
        c.put("c/failover", "ok")
        assert c.get("c/failover").value == b"ok"


def test_watch_resumes_after_the_server_restarts(tmp_path: Path) -> None:
    m = Member(data_dir=tmp_path / "d").start()
    try:
        with Client([m.endpoint]) as c:
            watch = c.watch("r/", prefix=True)
            c.put("r/before", "1")
            got = [e.kv.key for e in next(watch)]
            m.stop()
            m.start()
            c.put("r/after", "2")
            got += [e.kv.key for e in next(watch)]
            watch.close()
        assert got == [b"r/before", b"r/after"]
    finally:
        m.stop()


def test_async_client_puts_gets_and_runs_txns(server: Member) -> None:
    async def run() -> None:
        async with AsyncClient([server.endpoint]) as c:
            await c.put("a/k", "1")
            assert (await c.get("a/k")).value == b"1"
            r = await c.txn().if_(Compare.value("a/k") == "1").then(Op.put("a/k", "2")).commit()
            assert r.succeeded
            assert (await c.delete("a/", prefix=True)).deleted == 1

    asyncio.run(run())


def test_async_watch_sees_a_write_made_after_it_started(server: Member) -> None:
    async def run() -> list[bytes]:
        async with AsyncClient([server.endpoint]) as c:
            start = (await c.put("aw/0", "0")).revision
            await c.put("aw/1", "1")
            async for events in c.watch("aw/", prefix=True, start_revision=start):
                return [e.kv.key for e in events]
        return []

    assert asyncio.run(run()) == [b"aw/0", b"aw/1"]


def test_async_lease_context_revokes_on_exit(server: Member) -> None:
    async def run() -> int:
        async with AsyncClient([server.endpoint]) as c:
            async with c.lease(5) as lease:
                await c.put("al/k", "v", lease=lease.id)
                assert await c.lease_keep_alive_once(lease.id) == 5
            return (await c.get("al/k")).count

    assert asyncio.run(run()) == 0


def test_lease_revoked_elsewhere_is_reported_lost_and_the_block_raises(server: Member) -> None:
    lost: list[int] = []
    with Client([server.endpoint]) as c, Client([server.endpoint]) as other:
        with pytest.raises(LeaseLostError) as e:
            with c.lease(3, on_lost=lambda lease: lost.append(lease.id)) as lease:
                assert lease.alive
                other.lease_revoke(lease.id)
                assert lease.lost.wait(10), "the loss was not noticed"
        assert not lease.alive
        assert lost == [lease.id] == [e.value.lease_id]


def test_lease_whose_server_is_gone_past_its_ttl_is_lost(tmp_path: Path) -> None:
    m = Member(data_dir=tmp_path / "d").start()
    try:
        with Client([m.endpoint], timeout=1) as c:
            with pytest.raises(LeaseLostError):
                with c.lease(2) as lease:
                    m.stop()
                    assert lease.lost.wait(10), "no renewal for a whole TTL went unnoticed"
    finally:
        m.stop()


def test_an_error_inside_the_lease_block_is_not_replaced_by_the_loss(server: Member) -> None:
    with Client([server.endpoint]) as c:
        with pytest.raises(KeyError):
            with c.lease(3) as lease:
                c.lease_revoke(lease.id)
                assert lease.lost.wait(10)
                raise KeyError("mine")


def test_lock_not_taken_within_its_timeout_raises_and_withdraws(server: Member) -> None:
    with Client([server.endpoint]) as holder, Client([server.endpoint]) as waiter:
        with holder.lock("c/timeout-lock", ttl=30):
            with pytest.raises(DeadlineExceededError):
                with waiter.lock("c/timeout-lock", ttl=30, timeout=0.5):
                    pytest.fail("took a lock that was held")
        # The withdrawn waiter holds no place in the queue: the lock is free
        # at once, not after its 30 s lease.
        with waiter.lock("c/timeout-lock", ttl=30, timeout=5) as key:
            assert key.startswith(b"c/timeout-lock/")


def test_lock_holder_is_told_when_its_lease_is_lost(server: Member) -> None:
    lost = threading.Event()
    with Client([server.endpoint]) as c, Client([server.endpoint]) as other:
        with pytest.raises(LeaseLostError):
            with c.lock("c/lost-lock", ttl=3, on_lost=lambda lease: lost.set()) as key:
                lease_id = other.get(key).kvs[0].lease
                other.lease_revoke(lease_id)
                assert lost.wait(10)


def test_watch_cancelled_from_another_thread_ends_the_waiting_loop(client: Client) -> None:
    watch = client.watch("c/cancel-me")
    ended = threading.Event()
    batches: list[list[Event]] = []

    def consume() -> None:
        batches.extend(watch)  # blocks: nothing is written
        ended.set()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    assert not ended.wait(0.5)
    watch.cancel()
    assert ended.wait(10), "the watching thread was not released"
    assert batches == []
    watch.cancel()  # again: harmless


def test_async_lease_revoked_elsewhere_raises_on_exit(server: Member) -> None:
    async def run() -> bool:
        async with AsyncClient([server.endpoint]) as c, AsyncClient([server.endpoint]) as o:
            with pytest.raises(LeaseLostError):
                async with c.lease(3) as lease:
                    await o.lease_revoke(lease.id)
                    await asyncio.wait_for(lease.lost.wait(), 10)
            return lease.alive

    assert asyncio.run(run()) is False
