"""``Client(..., namespace=...)``: the client's keyspace is a prefix of the
cluster's (clientv3's namespace package), against etcdcore and real etcd."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from etcdcore.client import AsyncClient, Client, Compare, EtcdError, Op
from harness import Member

NS = "/tenant-a/"


@pytest.fixture
def tenant(server: Member) -> Iterator[Client]:
    with Client([server.endpoint], namespace=NS) as c:
        yield c


@pytest.fixture
def raw(server: Member) -> Iterator[Client]:
    with Client([server.endpoint]) as c:
        c.delete("", prefix=True)
        yield c


def test_keys_written_land_under_the_prefix(tenant: Client, raw: Client) -> None:
    tenant.put("a", "1")
    assert raw.get(NS + "a").value == b"1"
    assert raw.get("a").count == 0


def test_answers_come_back_without_the_prefix(tenant: Client, raw: Client) -> None:
    raw.put(NS + "k1", "v1")
    raw.put(NS + "k2", "v2")
    got = tenant.get("k", prefix=True)
    assert [kv.key for kv in got.kvs] == [b"k1", b"k2"]
    assert tenant.put("k1", "x", prev_kv=True).prev_kv.key == b"k1"  # type: ignore[union-attr]
    deleted = tenant.delete("k", prefix=True, prev_kv=True)
    assert [kv.key for kv in deleted.prev_kvs] == [b"k1", b"k2"]


def test_whole_keyspace_and_from_key_reads_stay_inside(tenant: Client, raw: Client) -> None:
    raw.put("/tenant-b/secret", "s")
    raw.put("zzz", "outside")
    raw.put(NS + "mine", "m")
    assert [kv.key for kv in tenant.get("", prefix=True).kvs] == [b"mine"]
    assert [kv.key for kv in tenant.get("\0", range_end="\0").kvs] == [b"mine"]
    assert [kv.key for kv in tenant.get("a", range_end="\0").kvs] == [b"mine"]
    assert tenant.delete("", prefix=True).deleted == 1
    assert raw.get("zzz").count == 1 and raw.get("/tenant-b/secret").count == 1


def test_an_empty_key_is_refused_as_etcd_refuses_it(tenant: Client) -> None:
    with pytest.raises(EtcdError) as e:
        tenant.get("")
    assert e.value.message == "etcdserver: key is not provided"


def test_txn_compares_and_ops_are_prefixed(tenant: Client, raw: Client) -> None:
    raw.put("cfg", "outside")
    tenant.put("cfg", "inside")
    r = (
        tenant.txn()
        .if_(Compare.value("cfg") == "inside")
        .then(Op.put("cfg", "new"), Op.get("cfg"))
        .commit()
    )
    assert r.succeeded
    assert r.responses[1].kvs[0].key == b"cfg"  # type: ignore[union-attr]
    assert raw.get(NS + "cfg").value == b"new"
    assert raw.get("cfg").value == b"outside"


def test_watch_sees_its_own_keys_only_and_without_the_prefix(tenant: Client, raw: Client) -> None:
    events = tenant.watch("", prefix=True, prev_kv=True)
    raw.put("elsewhere", "x")
    raw.put(NS + "w", "1")
    raw.put(NS + "w", "2")
    batch = next(events)
    while len(batch) < 2:
        batch += next(events)
    events.close()
    assert [(e.kv.key, e.kv.value) for e in batch] == [(b"w", b"1"), (b"w", b"2")]
    assert batch[1].prev_kv.key == b"w"  # type: ignore[union-attr]


def test_lease_keys_are_the_tenants_own(tenant: Client, raw: Client) -> None:
    lease = tenant.lease_grant(60)
    tenant.put("leased", "v", lease=lease.id)
    raw.put("other-leased", "v", lease=lease.id)
    assert tenant.lease_time_to_live(lease.id, keys=True).keys == [b"leased"]
    tenant.lease_revoke(lease.id)


def test_locks_and_elections_are_named_inside(tenant: Client, raw: Client) -> None:
    with tenant.lock("job") as key:
        assert key.startswith(b"job/")
        assert raw.get(NS + "job/", prefix=True).count == 1
    with tenant.election("leader") as e:
        lk = e.campaign("me")
        assert lk.name == b"leader" and lk.key.startswith(b"leader/")
        leader = e.leader()
        assert leader is not None and leader.key == lk.key and leader.value == b"me"
        assert raw.get(NS + "leader/", prefix=True).count == 1
        e.proclaim("again")
        assert raw.get(NS + lk.key.decode()).value == b"again"


def test_two_tenants_do_not_see_each_other(server: Member, raw: Client) -> None:
    with (
        Client([server.endpoint], namespace="/a/") as a,
        Client([server.endpoint], namespace="/b/") as b,
    ):
        a.put("x", "from a")
        b.put("x", "from b")
        assert a.get("x").value == b"from a"
        assert b.get("x").value == b"from b"
        assert a.get("", prefix=True).count == 1


def test_async_client_takes_a_namespace_too(server: Member, raw: Client) -> None:
    async def go() -> tuple[bytes, list[bytes]]:
        async with AsyncClient([server.endpoint], namespace=NS) as c:
            await c.put("async", "v")
            got = await c.get("", prefix=True)
            return got.kvs[0].key, [kv.key for kv in got.kvs]

    key, keys = asyncio.run(go())
    assert key == b"async" and keys == [b"async"]
    assert raw.get(NS + "async").value == b"v"


def test_observe_strips_the_leaders_key(tenant: Client, raw: Client) -> None:
    e = tenant.election("obs")
    seen: list[bytes] = []
    values = e.observe()
    done = threading.Event()

    def watch() -> None:
        for kv in values:
            seen.append(kv.key)
            done.set()
            break

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    with tenant.election("obs") as leader:
        lk = leader.campaign("v")
        assert done.wait(10)
        assert seen == [lk.key]
