"""A follower that was down while the cluster took a big load catches up from
the leader's backend, streamed while writes go on: no election meanwhile (the
leader's Raft loop never waits on the snapshot), and every member ends with
the same keyspace hash."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest

from cluster import Cluster, status, wait_until
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import Member

VALUE = b"v" * 512
#: Single puts after the bulk load: more entries than a leader keeps behind its
#: snapshot (etcd's 5000), so the follower cannot catch up from the log.
TAIL_ENTRIES = 6000


def kv(m: Member) -> rpc_pb2_grpc.KVStub:
    return rpc_pb2_grpc.KVStub(m.channel())


def bulk_load(m: Member, keys: int) -> None:
    stub = kv(m)
    batch = 128
    for start in range(0, keys, batch):
        ops = [
            rpc_pb2.RequestOp(
                request_put=rpc_pb2.PutRequest(key=f"bulk/{i:08d}".encode(), value=VALUE)
            )
            for i in range(start, min(start + batch, keys))
        ]
        stub.Txn(rpc_pb2.TxnRequest(success=ops), timeout=30)
    for i in range(TAIL_ENTRIES):
        stub.Put(rpc_pb2.PutRequest(key=f"tail/{i:05d}".encode(), value=VALUE), timeout=30)


def revision(m: Member) -> int:
    s = status(m, timeout=5)
    assert s is not None
    return s.header.revision


def hash_at(m: Member, rev: int) -> int:
    maint = rpc_pb2_grpc.MaintenanceStub(m.channel())
    return maint.HashKV(rpc_pb2.HashKVRequest(revision=rev), timeout=60).hash


def catch_up(tmp_path: Path, keys: int) -> None:
    c = Cluster.create(tmp_path, 3, extra=["--snapshot-count", "1000"]).start()
    try:
        leader = c.leader()
        follower = next(m for m in c.members if m is not leader)
        terms = {m.name: status(m).raftTerm for m in c.members}  # type: ignore[union-attr]
        follower.stop()
        bulk_load(leader, keys)

        done = threading.Event()
        errors: list[BaseException] = []

        def writer() -> None:
            stub = kv(leader)
            i = 0
            try:
                while not done.is_set():
                    stub.Put(rpc_pb2.PutRequest(key=f"live/{i:06d}".encode(), value=VALUE))
                    i += 1
            except grpc.RpcError as e:  # pragma: no cover - reported below
                errors.append(e)

        t = threading.Thread(target=writer)
        t.start()
        follower.start(timeout=120)
        wait_until(lambda: revision(follower) >= revision(leader) - 100, timeout=600)
        done.set()
        t.join()
        assert not errors, errors
        assert "installed the leader's snapshot" in follower.log()
        final = revision(leader)
        wait_until(lambda: all(revision(m) == final for m in c.members), timeout=60)
        # No election at any time: every member is still in the term it
        # started in, under the same leader.
        for m in c.members:
            s = status(m)
            assert s is not None
            assert s.raftTerm == terms[m.name], f"{m.name} changed term"
            assert c.leader() is leader
        hashes = {m.name: hash_at(m, final) for m in c.members}
        assert len(set(hashes.values())) == 1, hashes
        count = kv(follower).Range(
            rpc_pb2.RangeRequest(
                key=b"bulk/", range_end=b"bulk0", count_only=True, serializable=True
            )
        )
        assert count.count == keys
    finally:
        c.stop()


def test_a_follower_catches_up_by_backend_snapshot_without_an_election(tmp_path: Path) -> None:
    catch_up(tmp_path, 30_000)


@pytest.mark.slow
def test_a_follower_catches_up_on_a_million_keys_without_an_election(tmp_path: Path) -> None:
    catch_up(tmp_path, 1_000_000)
