"""Histories of concurrent clients against a 3-member cluster, recorded while
leaders are killed and members are cut off, must be linearizable."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from cluster import Cluster, PartitionedCluster
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from linearizability import History, check

KEYS = ["a", "b", "c"]
CLIENTS = 5
#: Short histories keep the search small; the faults make them interesting.
RUN_SECONDS = 6.0
#: Errors after which a write may or may not have happened.
AMBIGUOUS = {
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNKNOWN,
}


def client_loop(
    client: int, endpoints: list[str], history: History, stop: threading.Event, seed: int
) -> None:
    rnd = random.Random(seed * 100 + client)
    channels = [grpc.insecure_channel(e) for e in endpoints]
    n = 0
    try:
        while not stop.is_set():
            kv = rpc_pb2_grpc.KVStub(rnd.choice(channels))
            key = rnd.choice(KEYS)
            kind = rnd.choice(["put", "put", "get", "get", "cas", "delete"])
            n += 1
            value = f"{client}-{n}"
            run_op(kv, history, client, kind, key, value, rnd)
    finally:
        for ch in channels:
            ch.close()


def run_op(kv, history: History, client: int, kind: str, key: str, value: str, rnd) -> None:  # noqa: ANN001
    k = key.encode()
    if kind == "put":
        with history.record(client, "put", key, value) as rec:
            call(rec, lambda: kv.Put(rpc_pb2.PutRequest(key=k, value=value.encode()), timeout=2))
    elif kind == "get":
        with history.record(client, "get", key) as rec:
            try:
                r = kv.Range(rpc_pb2.RangeRequest(key=k), timeout=2)
            except grpc.RpcError:
                return  # a failed read changes nothing: leave it out
            rec.ok(r.kvs[0].value.decode() if r.kvs else None)
    elif kind == "delete":
        with history.record(client, "delete", key) as rec:
            call(
                rec,
                lambda: kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=k), timeout=2),
                lambda r: r.deleted,
            )
    else:
        expected = rnd.choice([None, f"{rnd.randrange(CLIENTS)}-{rnd.randrange(1, 40)}"])
        cmp = (
            rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.CREATE, key=k,
                            create_revision=0)
            if expected is None
            else rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.VALUE,
                                 key=k, value=expected.encode())
        )  # fmt: skip
        txn = rpc_pb2.TxnRequest(
            compare=[cmp],
            success=[
                rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=value.encode()))
            ],
        )
        with history.record(client, "cas", key, (expected, value)) as rec:
            call(rec, lambda: kv.Txn(txn, timeout=2), lambda r: r.succeeded)


def call(
    rec, fn: Callable[[], object], output: Callable[[object], object] = lambda r: None
) -> None:  # noqa: ANN001
    try:
        r = fn()
    except grpc.RpcError as e:
        if e.code() in AMBIGUOUS:
            rec.ambiguous()
        return
    rec.ok(output(r))


def record_history(c: Cluster, fault: Callable[[], None], seed: int) -> History:
    history = History()
    stop = threading.Event()
    endpoints = [m.endpoint for m in c.members]
    threads = [
        threading.Thread(target=client_loop, args=(i, endpoints, history, stop, seed))
        for i in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    time.sleep(1.0)
    fault()
    time.sleep(RUN_SECONDS)
    stop.set()
    for t in threads:
        t.join(30)
    return history


@pytest.mark.parametrize("seed", [1, 2])
def test_history_across_a_leader_kill_is_linearizable(tmp_path: Path, seed: int) -> None:
    c = Cluster.create(tmp_path, 3).start()
    try:
        killed = []

        def kill_leader_then_restart() -> None:
            leader = c.leader()
            leader.kill9()
            killed.append(leader)
            time.sleep(2.5)
            leader.start(wait=False)

        history = record_history(c, kill_leader_then_restart, seed)
    finally:
        c.stop()
    completed = [o for o in history.ops if not o.ambiguous]
    assert len(completed) > 50, "too few operations completed to say anything"
    result = check(history.ops)
    assert result.verdict != "illegal", result.explanation
    assert result.ok, "checker ran out of budget"


@pytest.mark.parametrize("seed", [3])
def test_history_across_a_partition_is_linearizable(tmp_path: Path, seed: int) -> None:
    pc = PartitionedCluster(tmp_path)
    try:
        pc.cluster.start()

        def isolate_leader_then_heal() -> None:
            pc.isolate(pc.cluster.leader())
            time.sleep(3.0)
            pc.heal()

        history = record_history(pc.cluster, isolate_leader_then_heal, seed)
    finally:
        pc.close()
    result = check(history.ops)
    assert result.verdict != "illegal", result.explanation
    assert result.ok, "checker ran out of budget"


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 20))
def test_many_seeds_across_leader_kills(tmp_path: Path, seed: int) -> None:
    test_history_across_a_leader_kill_is_linearizable(tmp_path, seed)
