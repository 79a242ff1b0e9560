"""Partitions: a member cut off from the others by proxies on the peer links.

See :class:`cluster.PartitionedCluster` for how the links are cut.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cluster import PartitionedCluster, serializable_get, status, wait_until
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import Member, etcd_bin


@pytest.fixture
def pc(tmp_path: Path) -> Iterator[PartitionedCluster]:
    pc = PartitionedCluster(tmp_path)
    try:
        pc.cluster.start()
        yield pc
    finally:
        pc.close()


def put(m: Member, key: str, value: str, timeout: float = 10.0) -> None:
    with grpc.insecure_channel(m.endpoint) as ch:
        rpc_pb2_grpc.KVStub(ch).Put(
            rpc_pb2.PutRequest(key=key.encode(), value=value.encode()), timeout=timeout
        )


def linearizable_get_error(m: Member) -> grpc.RpcError:
    with grpc.insecure_channel(m.endpoint) as ch, pytest.raises(grpc.RpcError) as e:
        rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"k"), timeout=10)
    return e.value


def test_an_isolated_leader_is_replaced_and_refuses_linearizable_work(
    pc: PartitionedCluster,
) -> None:
    c = pc.cluster
    old = c.leader()
    pc.isolate(old)
    majority = [m for m in c.members if m is not old]
    new = c.leader(timeout=20, among=majority)
    put(new, "k", "written-in-majority")
    # CheckQuorum: the old leader steps down, and then has nobody to ask.
    wait_until(lambda: (s := status(old)) is not None and s.leader != status(old).header.member_id)
    err = linearizable_get_error(old)
    assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert err.details() in ("etcdserver: no leader", "etcdserver: request timed out")
    # Not acknowledged; it may still commit once the link heals (an ambiguous
    # write, as with etcd), so it uses a key of its own.
    r = old.etcdctl("put", "other", "from-isolated", "--command-timeout=3s", check=False)
    assert r.returncode != 0
    pc.heal()
    wait_until(lambda: serializable_get(old, b"k") == b"written-in-majority", timeout=20)


def test_an_isolated_follower_rejoins_without_disturbing_the_leader(
    pc: PartitionedCluster,
) -> None:
    c = pc.cluster
    leader = c.leader()
    term = status(leader).header.raft_term
    follower = c.followers()[0]
    pc.isolate(follower)
    for i in range(10):
        put(leader, f"p{i}", str(i))
    err = linearizable_get_error(follower)
    assert err.details() in ("etcdserver: no leader", "etcdserver: request timed out")
    pc.heal()
    wait_until(lambda: serializable_get(follower, b"p9") == b"9", timeout=20)
    # PreVote: the returning member could not win a vote, so it never bumped
    # the term and the leader kept leading.
    assert c.leader() is leader
    assert status(leader).header.raft_term == term


def test_etcdctl_reads_fail_over_from_an_isolated_member(pc: PartitionedCluster) -> None:
    c = pc.cluster
    follower = c.followers()[0]
    others = [m for m in c.members if m is not follower]
    pc.isolate(follower)
    wait_until(lambda: (s := status(follower)) is not None and s.leader == 0, timeout=20)
    put(c.leader(among=others), "failover", "ok")
    # The isolated member answers "etcdserver: no leader" (Unavailable), which
    # clientv3 retries on the next endpoint.
    endpoints = ",".join([follower.endpoint, *(m.endpoint for m in others)])
    r = subprocess.run(
        [etcd_bin("etcdctl"), f"--endpoints={endpoints}", "get", "failover", "--print-value-only"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ok\n"
