"""Three-member clusters driven by the real etcdctl: membership, replication,
failover, catch-up by log and by snapshot, membership changes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from cluster import Cluster, serializable_get, status, wait_until
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster.create(tmp_path, 3).start()
    try:
        yield c
    finally:
        c.stop()


def put(endpoint: str, key: str, value: str, timeout: float = 10.0) -> int:
    with grpc.insecure_channel(endpoint) as ch:
        r = rpc_pb2_grpc.KVStub(ch).Put(
            rpc_pb2.PutRequest(key=key.encode(), value=value.encode()), timeout=timeout
        )
    return r.header.revision


def bulk_put(endpoint: str, prefix: str, n: int) -> None:
    """``n`` puts from 16 concurrent callers on one channel."""
    with grpc.insecure_channel(endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)

        def one(i: int) -> None:
            kv.Put(rpc_pb2.PutRequest(key=f"{prefix}{i:05d}".encode(), value=str(i).encode()))

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(one, range(n)))


def test_member_list_shows_three_started_members(cluster: Cluster) -> None:
    def all_published() -> bool:
        out = cluster.etcdctl("member", "list", "-w", "json").stdout
        members = json.loads(out)["members"]
        return len(members) == 3 and all(m.get("clientURLs") for m in members)

    wait_until(all_published)
    out = cluster.etcdctl("member", "list").stdout
    by_name = {line.split(", ")[2]: line for line in out.splitlines()}
    assert sorted(by_name) == ["n1", "n2", "n3"]
    for m in cluster.members:
        assert f", started, {m.name}, {m.peer_url}, http://{m.endpoint}, false" in by_name[m.name]


def test_endpoint_status_shows_one_leader_and_the_same_term(cluster: Cluster) -> None:
    out = cluster.etcdctl("endpoint", "status", "--cluster", "-w", "json").stdout
    statuses = json.loads(out)
    assert len(statuses) == 3
    leaders = {s["Status"]["leader"] for s in statuses}
    terms = {s["Status"]["header"]["raft_term"] for s in statuses}
    assert len(leaders) == 1 and leaders.pop() != 0
    assert len(terms) == 1


def test_member_and_cluster_ids_are_stable_across_restarts(cluster: Cluster) -> None:
    before = {m.name: status(m).header for m in cluster.members}
    cluster.stop()
    cluster.start()
    for m in cluster.members:
        h = status(m).header
        assert (h.member_id, h.cluster_id) == (before[m.name].member_id, before[m.name].cluster_id)


def test_write_on_a_follower_is_read_on_every_member(cluster: Cluster) -> None:
    follower = cluster.followers()[0]
    follower.etcdctl("put", "greeting", "hello")
    for m in cluster.members:
        assert m.etcdctl("get", "greeting", "--print-value-only").stdout == "hello\n"


def test_serializable_read_answers_from_the_local_store(cluster: Cluster) -> None:
    put(cluster.leader().endpoint, "k", "v")
    for m in cluster.members:
        wait_until(lambda m=m: serializable_get(m, b"k") == b"v")
        out = m.etcdctl("get", "k", "--consistency=s", "--print-value-only").stdout
        assert out == "v\n"


def test_killing_the_leader_elects_another_and_keeps_acknowledged_writes(
    cluster: Cluster,
) -> None:
    leader = cluster.leader()
    acked = [f"k{i}" for i in range(20)]
    for k in acked:
        put(leader.endpoint, k, "v")
    leader.kill9()
    started = time.monotonic()
    new_leader = cluster.leader(timeout=20)
    assert new_leader is not leader
    put(new_leader.endpoint, "after", "failover")
    failover = time.monotonic() - started
    assert failover < 20
    for k in acked:
        assert new_leader.etcdctl("get", k, "--print-value-only").stdout == "v\n"
    # The old leader comes back as a follower and catches up from the log.
    leader.start()
    wait_until(lambda: serializable_get(leader, b"after") == b"failover")


def test_a_member_down_past_the_snapshot_catches_up_by_snapshot(tmp_path: Path) -> None:
    c = Cluster.create(tmp_path, 3, extra=["--snapshot-count", "50"]).start()
    try:
        lagging = c.followers()[0]
        lagging.stop()
        # More entries than a snapshot keeps behind it (etcd's 5000).
        bulk_put(c.leader().endpoint, "bulk/", 6000)
        lagging.start()
        wait_until(lambda: serializable_get(lagging, b"bulk/05999") == b"5999", timeout=30)
        assert "installed the leader's snapshot" in lagging.log()
        assert _serializable_count(lagging, "bulk/") == 6000
    finally:
        c.stop()


def test_all_members_restarted_keep_every_key(cluster: Cluster) -> None:
    for i in range(10):
        put(cluster.members[i % 3].endpoint, f"r{i}", str(i))
    cluster.stop()
    cluster.start()
    out = cluster.etcdctl("get", "r", "--prefix", "--keys-only").stdout.split()
    assert out == [f"r{i}" for i in range(10)]


def test_members_agree_on_the_kv_hash(cluster: Cluster) -> None:
    for i in range(30):
        put(cluster.members[i % 3].endpoint, f"h{i}", str(i))
    rev = put(cluster.leader().endpoint, "last", "x")

    def hashes() -> set[int]:
        out = cluster.etcdctl("endpoint", "hashkv", f"--rev={rev}", "-w", "json").stdout
        return {h["HashKV"]["hash"] for h in json.loads(out)}

    wait_until(lambda: len(hashes()) == 1)


def test_move_leader_hands_leadership_to_the_target(cluster: Cluster) -> None:
    leader = cluster.leader()
    target = cluster.followers()[0]
    target_id = status(target).header.member_id
    out = leader.etcdctl("move-leader", f"{target_id:x}").stdout
    assert "Leadership transferred from" in out
    assert cluster.leader() is target


def test_move_leader_on_a_follower_is_refused(cluster: Cluster) -> None:
    follower = cluster.followers()[0]
    other = status(cluster.followers()[1]).header.member_id
    # etcdctl itself finds the leader among the endpoints; ask the follower alone.
    with grpc.insecure_channel(follower.endpoint) as ch, pytest.raises(grpc.RpcError) as e:
        rpc_pb2_grpc.MaintenanceStub(ch).MoveLeader(
            rpc_pb2.MoveLeaderRequest(targetID=other), timeout=5
        )
    assert e.value.details() == "etcdserver: not leader"


def test_added_learner_joins_catches_up_and_is_promoted(tmp_path: Path, cluster: Cluster) -> None:
    for i in range(50):
        put(cluster.leader().endpoint, f"pre/{i}", str(i))
    new = cluster.add_member(tmp_path, "n4", 3, learner=True)
    wait_until(lambda: _serializable_count(new, "pre/") == 50, timeout=30)
    refused = new.etcdctl("put", "from-learner", "x", check=False)
    assert "etcdserver: rpc not supported for learner" in refused.stderr
    members = json.loads(cluster.etcdctl("member", "list", "-w", "json").stdout)["members"]
    learner = next(m for m in members if m.get("isLearner"))
    out = cluster.etcdctl("member", "promote", f"{learner['ID']:x}").stdout
    assert "promoted in cluster" in out
    members = json.loads(cluster.etcdctl("member", "list", "-w", "json").stdout)["members"]
    assert len(members) == 4 and not any(m.get("isLearner") for m in members)


def test_removed_member_stops_and_the_rest_keep_serving(cluster: Cluster) -> None:
    victim = cluster.followers()[0]
    victim_id = status(victim).header.member_id
    out = cluster.leader().etcdctl("member", "remove", f"{victim_id:x}").stdout
    # etcdctl pads the id to 16 characters.
    assert f"Member {victim_id:16x} removed from cluster" in out
    assert victim.proc is not None
    victim.proc.wait(15)
    cluster.members.remove(victim)
    put(cluster.leader().endpoint, "after-remove", "ok")
    members = json.loads(cluster.etcdctl("member", "list", "-w", "json").stdout)["members"]
    assert len(members) == 2


def test_removing_the_leader_leaves_a_working_cluster(cluster: Cluster) -> None:
    leader = cluster.leader()
    leader_id = status(leader).header.member_id
    leader.etcdctl("member", "remove", f"{leader_id:x}")
    assert leader.proc is not None
    leader.proc.wait(15)
    cluster.members.remove(leader)
    new_leader = cluster.leader(timeout=20)
    put(new_leader.endpoint, "after", "leader-removed")


def test_member_add_of_a_used_peer_url_is_refused(cluster: Cluster) -> None:
    used = cluster.members[0].peer_url
    r = cluster.etcdctl("member", "add", "dup", f"--peer-urls={used}", check=False)
    assert r.returncode != 0
    assert "etcdserver: Peer URLs already exists" in r.stderr


def test_lease_keep_alive_sent_to_a_follower_keeps_the_key(cluster: Cluster) -> None:
    follower = cluster.followers()[0]
    lease = follower.etcdctl("lease", "grant", "3").stdout.split()[1]
    follower.etcdctl("put", "leased", "v", f"--lease={lease}")
    for _ in range(4):
        out = follower.etcdctl("lease", "keep-alive", "--once", lease).stdout
        assert "keepalived with TTL(3)" in out
        time.sleep(1)
    assert follower.etcdctl("get", "leased", "--print-value-only").stdout == "v\n"
    ttl = follower.etcdctl("lease", "timetolive", lease).stdout
    assert "remaining" in ttl


def test_lease_expires_on_every_member(cluster: Cluster) -> None:
    lease = cluster.leader().etcdctl("lease", "grant", "2").stdout.split()[1]
    cluster.members[1].etcdctl("put", "short", "v", f"--lease={lease}")
    for m in cluster.members:
        wait_until(lambda m=m: serializable_get(m, b"short") is None, timeout=15)


def test_watch_on_a_follower_sees_writes_made_elsewhere(cluster: Cluster) -> None:
    follower = cluster.followers()[0]
    w = follower.etcdctl_popen("watch", "wk", "--prefix")
    try:
        time.sleep(0.5)
        for i in range(5):
            put(cluster.leader().endpoint, f"wk{i}", str(i))
        lines = [w.stdout.readline().strip() for _ in range(15)]
        assert lines == [x for i in range(5) for x in ("PUT", f"wk{i}", str(i))]
    finally:
        w.kill()


def _serializable_count(m, prefix: str) -> int:  # noqa: ANN001
    try:
        with grpc.insecure_channel(m.endpoint) as ch:
            r = rpc_pb2_grpc.KVStub(ch).Range(
                rpc_pb2.RangeRequest(
                    key=prefix.encode(),
                    range_end=prefix[:-1].encode() + bytes([ord(prefix[-1]) + 1]),
                    serializable=True,
                    count_only=True,
                ),
                timeout=2,
            )
        return r.count
    except grpc.RpcError:
        return -1


def test_five_members_survive_losing_two(tmp_path: Path) -> None:
    c = Cluster.create(tmp_path, 5).start()
    try:
        put(c.leader().endpoint, "before", "1")
        leader = c.leader()
        leader.kill9()
        c.followers()[0].kill9()
        survivor = c.leader(timeout=20)
        put(survivor.endpoint, "after", "2")
        for m in c.running():
            wait_until(lambda m=m: serializable_get(m, b"after") == b"2")
            assert serializable_get(m, b"before") == b"1"
    finally:
        c.stop()


def test_watch_on_a_follower_sees_every_event_once_across_a_leader_change(
    cluster: Cluster,
) -> None:
    leader = cluster.leader()
    follower = next(m for m in cluster.followers())
    w = follower.etcdctl_popen("watch", "seq/", "--prefix")
    try:
        time.sleep(0.5)
        for i in range(5):
            put(leader.endpoint, f"seq/{i}", str(i))
        leader.kill9()
        new_leader = cluster.leader(timeout=20)
        for i in range(5, 10):
            put(new_leader.endpoint, f"seq/{i}", str(i))
        lines = [w.stdout.readline().strip() for _ in range(30)]
        assert lines == [x for i in range(10) for x in ("PUT", f"seq/{i}", str(i))]
    finally:
        w.kill()


def test_a_new_leader_extends_leases_instead_of_expiring_them(cluster: Cluster) -> None:
    leader = cluster.leader()
    lease = leader.etcdctl("lease", "grant", "4").stdout.split()[1]
    leader.etcdctl("put", "survivor", "v", f"--lease={lease}")
    leader.kill9()
    new_leader = cluster.leader(timeout=20)
    killed_at = time.monotonic()
    # Remaining TTL restarts from the full TTL (plus an election timeout) on
    # the new leader, so the key outlives the time the old leader had left.
    ttl = new_leader.etcdctl("lease", "timetolive", lease).stdout
    assert "remaining" in ttl
    assert new_leader.etcdctl("get", "survivor", "--print-value-only").stdout == "v\n"
    wait_until(lambda: serializable_get(new_leader, b"survivor") is None, timeout=20)
    assert time.monotonic() - killed_at >= 3
