"""Leases as etcd 3.5 keeps them, served by etcdcore's Rust lessor, driven by
real clients (etcdctl, grpcio, our client) against real servers: thousands of
leases granted, kept alive, listed and expired; keep-alives and TimeToLive
through a follower; leader kills; checkpointed remaining TTLs across leader
changes and restarts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import leases
from cluster import Cluster, serializable_get, status, wait_until
from etcdcore.client import Client
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import Member

#: Flags that make the leader checkpoint remaining TTLs every second.
CHECKPOINT_EVERY_SECOND = [
    "--experimental-enable-lease-checkpoint=true",
    "--experimental-lease-checkpoint-interval=1s",
]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster.create(tmp_path, 3).start()
    try:
        yield c
    finally:
        c.stop()


def member_id(m: Member) -> int:
    s = status(m, timeout=5)
    assert s is not None
    return int(s.header.member_id)


def expire_and_time(endpoint: str, prefix: str, n: int, timeout: float) -> list[tuple[float, int]]:
    """Samples (time, keys left) every 100 ms until no key under ``prefix`` is
    left."""
    samples = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = leases.count_keys(endpoint, prefix)
        samples.append((time.monotonic(), left))
        if left == 0:
            return samples
        time.sleep(0.1)
    raise TimeoutError(f"{samples[-1][1]} of {n} keys still there after {timeout}s")


# -- one member -----------------------------------------------------------------------


def expire_many(member: Member, n: int, ttl: int) -> None:
    """Grants ``n`` leases with a key each, keeps them alive past their TTL,
    then lets them expire: none early, all in the end, at etcd's rate.
    ``ttl`` must be longer than granting them all takes."""
    ep = member.endpoint
    started = time.monotonic()
    ids = leases.grant_with_keys(ep, n, ttl, "many/")
    assert time.monotonic() - started < ttl, "granting took longer than the TTL"
    assert len(set(ids)) == n and all(i > 0 for i in ids)
    assert sorted(leases.lease_ids(ep)) == sorted(ids)

    # Renewed until the first leases granted are past their TTL.
    while time.monotonic() - started < ttl + 2:
        renewed = time.monotonic()
        assert leases.keep_alive(ep, ids) == [ttl] * n
        assert leases.count_keys(ep, "many/") == n
    # Nothing expires before its TTL from the last renewal...
    while time.monotonic() < renewed + ttl - 1:
        assert leases.count_keys(ep, "many/") == n
        time.sleep(0.2)
    # ...then all do, no faster than etcd's 1000 revocations a second.
    samples = expire_and_time(ep, "many/", n, timeout=ttl + n / 500 + 30)
    first_gone = next(t for t, left in samples if left < n)
    assert samples[-1][0] - first_gone >= (n / 1000) * 0.8
    assert leases.lease_ids(ep) == []


def test_thousands_of_leases_are_granted_kept_alive_and_expired(member: Member) -> None:
    expire_many(member, 5000, ttl=10)


@pytest.mark.slow
def test_a_hundred_thousand_leases_are_granted_kept_alive_and_expired(member: Member) -> None:
    expire_many(member, 100_000, ttl=180)


def test_leases_are_listed_soonest_expiry_first(member: Member) -> None:
    late = member.etcdctl("lease", "grant", "100").stdout.split()[1]
    soon = member.etcdctl("lease", "grant", "5").stdout.split()[1]
    middle = member.etcdctl("lease", "grant", "50").stdout.split()[1]
    out = member.etcdctl("lease", "list").stdout
    assert out == f"found 3 leases\n{soon}\n{middle}\n{late}\n"


def test_generated_lease_ids_are_positive_and_carry_the_member_id(member: Member) -> None:
    with Client([member.endpoint]) as c:
        ids = [c.lease_grant(10).id for _ in range(20)]
    assert len(set(ids)) == 20 and all(0 < i < 2**63 for i in ids)
    # etcd's request id generator, the sign bit masked off.
    assert {i >> 48 for i in ids} == {member_id(member) & 0x7FFF}


def test_keep_alive_renews_to_the_full_ttl(member: Member) -> None:
    with Client([member.endpoint]) as c:
        lease = c.lease_grant(10)
        time.sleep(2.2)
        assert c.lease_time_to_live(lease.id).ttl <= 7
        assert c.lease_keep_alive_once(lease.id) == 10
        assert c.lease_time_to_live(lease.id).ttl >= 9


def test_keep_alive_stream_answers_every_request_in_order(member: Member) -> None:
    with Client([member.endpoint]) as c:
        a, b = c.lease_grant(30).id, c.lease_grant(60).id
    with member.channel() as ch:
        call = rpc_pb2_grpc.LeaseStub(ch).LeaseKeepAlive(
            iter(rpc_pb2.LeaseKeepAliveRequest(ID=i) for i in (a, 0x7E57, b, a)), timeout=10
        )
        answers = [(r.ID, r.TTL) for r in call]
    assert answers == [(a, 30), (0x7E57, 0), (b, 60), (a, 30)]


def test_a_keep_alive_waiting_on_an_expired_lease_answers_once_it_is_revoked(
    member: Member,
) -> None:
    with Client([member.endpoint]) as c:
        lease = c.lease_grant(2)
        c.put("expiring", "v", lease=lease.id)
        time.sleep(2.6)
        assert c.lease_keep_alive_once(lease.id) == 0
        assert c.get("expiring").kvs == []
        assert c.lease_time_to_live(lease.id).ttl == -1


def test_checkpointed_remaining_ttl_survives_a_restart(tmp_path: Path) -> None:
    m = Member(data_dir=tmp_path / "cp.etcd", extra=CHECKPOINT_EVERY_SECOND).start()
    try:
        with Client([m.endpoint]) as c:
            kept = c.lease_grant(60).id
            left = c.lease_grant(60).id
            time.sleep(4.5)
            # A keep-alive clears the checkpoint: that lease restarts from its TTL.
            assert c.lease_keep_alive_once(kept) == 60
        m.stop()
        m.start()
        with Client([m.endpoint]) as c:
            # Restarted from what was checkpointed (plus an election timeout),
            # not from the full TTL.
            assert c.lease_time_to_live(left).ttl <= 58
            assert c.lease_time_to_live(kept).ttl >= 59
    finally:
        m.stop()


def test_without_checkpoints_a_restart_gives_the_full_ttl_again(tmp_path: Path) -> None:
    m = Member(data_dir=tmp_path / "nocp.etcd").start()
    try:
        with Client([m.endpoint]) as c:
            lease = c.lease_grant(60).id
            time.sleep(3)
        m.stop()
        m.start()
        with Client([m.endpoint]) as c:
            assert c.lease_time_to_live(lease).ttl >= 59
    finally:
        m.stop()


# -- clusters -----------------------------------------------------------------------------


def test_keep_alives_through_a_follower_keep_many_leases(cluster: Cluster) -> None:
    follower = cluster.followers()[0]
    ids = leases.grant_with_keys(follower.endpoint, 1000, 4, "fwd/")
    started = time.monotonic()
    while time.monotonic() - started < 8:
        assert leases.keep_alive(follower.endpoint, ids) == [4] * 1000
        time.sleep(0.5)
    for m in cluster.members:
        assert leases.count_keys(m.endpoint, "fwd/") == 1000
    expire_and_time(follower.endpoint, "fwd/", 1000, timeout=30)


def test_expired_leases_kept_alive_through_a_follower_hold_up_no_live_lease(
    cluster: Cluster,
) -> None:
    """Thousands of leases expire at once and wait their turn to be revoked
    (1000 a second); clients keep renewing some of the last ones through a
    follower meanwhile. The follower batches every client's renewals into the
    same calls to the leader: a live lease renewed through it is not held up
    behind them and survives."""
    leader = cluster.leader()
    follower = cluster.followers()[0]
    live = follower.etcdctl("lease", "grant", "3").stdout.split()[1]
    follower.etcdctl("put", "live", "v", f"--lease={live}")
    keeper = follower.etcdctl_popen("lease", "keep-alive", live)
    try:
        dead = leases.grant_with_keys(leader.endpoint, 6000, 2, "dead/")
        # All expired now; most wait their turn, the last granted longest.
        time.sleep(2.2)
        late = dead[-400:]
        answers: list[list[int]] = []

        def renew_one_by_one(part: list[int]) -> None:
            answers.append(leases.keep_alive(follower.endpoint, part, window=1))

        threads = [threading.Thread(target=renew_one_by_one, args=(late[k::8],)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Each answered TTL 0 once revoked (or found revoked).
        assert sorted(ttl for a in answers for ttl in a) == [0] * 400
        expire_and_time(follower.endpoint, "dead/", 6000, timeout=60)
        assert serializable_get(follower, b"live") == b"v"
        assert keeper.poll() is None
    finally:
        keeper.kill()
        keeper.communicate()


def test_time_to_live_on_a_follower_is_the_leaders_countdown(cluster: Cluster) -> None:
    leader = cluster.leader()
    follower = cluster.followers()[0]
    lease = leader.etcdctl("lease", "grant", "30").stdout.split()[1]
    leader.etcdctl("put", "ttl-key", "v", f"--lease={lease}")
    time.sleep(3)
    r = leases.time_to_live(follower.endpoint, int(lease, 16), keys=True)
    # Only the leader knows the deadline; the follower's own header.
    assert r.grantedTTL == 30 and 20 <= r.TTL <= 27
    assert list(r.keys) == [b"ttl-key"]
    assert r.header.member_id == member_id(follower)
    out = follower.etcdctl("lease", "timetolive", lease).stdout
    assert out.startswith(f"lease {lease} granted with TTL(30s), remaining(")


def test_a_leader_kill_expires_no_lease_early(cluster: Cluster) -> None:
    leader = cluster.leader()
    follower = cluster.followers()[0]
    ids = leases.grant_with_keys(leader.endpoint, 500, 6, "kill/")
    assert leases.keep_alive(follower.endpoint, ids) == [6] * 500
    leader.kill9()
    killed = time.monotonic()
    survivors = cluster.running()
    new_leader = cluster.leader(timeout=20)
    # The new leader cannot know when each lease was last renewed: every one
    # gets its full TTL (plus an election timeout) from its promotion.
    assert leases.time_to_live(new_leader.endpoint, ids[0]).TTL >= 5
    while time.monotonic() < killed + 6:
        for m in survivors:
            assert leases.count_keys(m.endpoint, "kill/") == 500
        time.sleep(0.3)
    for m in survivors:
        expire_and_time(m.endpoint, "kill/", 500, timeout=30)


def test_a_lease_kept_alive_through_a_leader_kill_survives(cluster: Cluster) -> None:
    follower = cluster.followers()[0]
    lease = follower.etcdctl("lease", "grant", "3").stdout.split()[1]
    follower.etcdctl("put", "kept", "v", f"--lease={lease}")
    keeper = follower.etcdctl_popen("lease", "keep-alive", lease)
    try:
        time.sleep(1)
        cluster.leader().kill9()
        cluster.leader(timeout=20)
        time.sleep(6)
        assert serializable_get(follower, b"kept") == b"v"
        assert keeper.poll() is None
    finally:
        keeper.kill()
        keeper.communicate()


@pytest.mark.parametrize("checkpoints", [True, False], ids=["checkpointed", "not-checkpointed"])
def test_a_new_leader_continues_from_the_checkpointed_remaining_ttl(
    tmp_path: Path, checkpoints: bool
) -> None:
    c = Cluster.create(tmp_path, 3, extra=CHECKPOINT_EVERY_SECOND if checkpoints else []).start()
    try:
        leader = c.leader()
        lease = leader.etcdctl("lease", "grant", "30").stdout.split()[1]
        time.sleep(5)
        leader.kill9()
        new_leader = c.leader(timeout=20)
        remaining = leases.time_to_live(new_leader.endpoint, int(lease, 16)).TTL
        if checkpoints:
            # About 30 - 5 - (the time to elect) + 1 election timeout.
            assert remaining <= 27
        else:
            assert remaining >= 29
    finally:
        c.stop()


def test_keep_alive_without_a_leader_fails_with_no_leader(cluster: Cluster) -> None:
    leader = cluster.leader()
    lease = leader.etcdctl("lease", "grant", "100").stdout.split()[1]
    survivor, other = cluster.followers()
    leader.kill9()
    other.kill9()
    wait_until(lambda: (s := status(survivor)) is not None and s.leader == 0, timeout=20)
    started = time.monotonic()
    r = survivor.etcdctl("lease", "keep-alive", "--once", lease, check=False)
    # etcd 3.5.1 answers the same after its request timeout (5 s + 2 elections).
    assert (r.returncode, r.stderr.strip()) == (2, "Error: etcdserver: no leader")
    assert time.monotonic() - started >= 6


def test_lease_calls_are_refused_on_a_learner(cluster: Cluster, tmp_path: Path) -> None:
    learner = cluster.add_member(tmp_path, "l4", 3, learner=True)
    wait_until(lambda: status(learner) is not None, timeout=30)
    with learner.channel() as ch:
        stub = rpc_pb2_grpc.LeaseStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            stub.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=10), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert err.value.details() == "etcdserver: rpc not supported for learner"


def test_many_followers_clients_share_the_leaders_renewals(cluster: Cluster) -> None:
    """Keep-alives of many streams at once through one follower."""
    follower = cluster.followers()[0]
    ids = leases.grant_with_keys(follower.endpoint, 400, 5, "streams/")
    results: list[list[int]] = []

    def stream(part: list[int]) -> None:
        results.append(leases.keep_alive(follower.endpoint, part, window=1))

    threads = [threading.Thread(target=stream, args=(list(p),)) for p in leases.chunks(ids, 20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ttl for r in results for ttl in r) == [5] * 400
