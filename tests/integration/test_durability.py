"""Durability: what was acknowledged survives SIGTERM, kill -9 and torn writes;
a damaged WAL stops the server with a message naming the file and offset."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import grpc
import pytest

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import Member


def kv(m: Member) -> rpc_pb2_grpc.KVStub:
    return rpc_pb2_grpc.KVStub(m.channel())


def all_keys(m: Member, prefix: bytes = b"") -> dict[bytes, bytes]:
    req = rpc_pb2.RangeRequest(
        key=prefix or b"\0", range_end=prefix_end(prefix) if prefix else b"\0"
    )
    return {x.key: x.value for x in kv(m).Range(req).kvs}


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


def test_restart_keeps_keys_revisions_and_leases(member: Member) -> None:
    member.etcdctl("put", "a", "1")
    member.etcdctl("put", "b", "2")
    lease = member.etcdctl("lease", "grant", "300").stdout.split()[1]
    member.etcdctl("put", "c", "3", f"--lease={lease}")
    before = member.etcdctl("get", "", "--from-key", "-w", "json").stdout
    assert member.stop() == 0
    member.start()
    after = member.etcdctl("get", "", "--from-key", "-w", "json").stdout
    import json

    b, a = json.loads(before), json.loads(after)
    assert a["kvs"] == b["kvs"]
    assert a["header"]["revision"] == b["header"]["revision"]
    assert member.etcdctl("lease", "list").stdout == f"found 1 leases\n{lease}\n"
    ttl = member.etcdctl("lease", "timetolive", "--keys", lease).stdout
    assert "attached keys([c])" in ttl


def test_sigterm_exits_zero(member: Member) -> None:
    member.etcdctl("put", "a", "1")
    assert member.stop() == 0


def test_sigterm_under_writes_with_a_watcher_open_exits_zero(member: Member) -> None:
    watch = member.etcdctl_popen("watch", "--prefix", "w")
    stop = threading.Event()

    def writer() -> None:
        stub = kv(member)
        i = 0
        while not stop.is_set():
            try:
                stub.Put(rpc_pb2.PutRequest(key=f"w{i}".encode(), value=b"x"), timeout=5)
            except grpc.RpcError:
                return
            i += 1

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        threading.Event().wait(1.0)
        assert member.stop() == 0
    finally:
        stop.set()
        for t in threads:
            t.join()
        watch.kill()


def writers_until_killed(m: Member, n_writers: int, per_writer: int) -> dict[bytes, bytes]:
    """Runs writers until the member dies under them; returns acknowledged puts."""
    acked: dict[bytes, bytes] = {}
    lock = threading.Lock()

    def writer(w: int) -> None:
        stub = kv(m)
        for i in range(per_writer):
            key, value = f"w{w:02d}/{i:06d}".encode(), f"v{i}".encode()
            try:
                stub.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=5)
            except grpc.RpcError:
                return
            with lock:
                acked[key] = value

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(n_writers)]
    for t in threads:
        t.start()
    killer = threading.Timer(1.0, m.kill9)
    killer.start()
    for t in threads:
        t.join()
    killer.join()
    return acked


def test_kill9_under_16_writers_loses_no_acknowledged_write(tmp_path: Path) -> None:
    m = Member(data_dir=tmp_path / "default.etcd")
    acked_total: dict[bytes, bytes] = {}
    try:
        for cycle in range(5):
            m.start()
            present = all_keys(m, b"w")
            missing = {k for k in acked_total if present.get(k) != acked_total[k]}
            assert not missing, f"cycle {cycle}: lost {len(missing)} acknowledged writes"
            acked = writers_until_killed(m, 16, 100_000)
            assert acked, "no write was acknowledged before the kill"
            acked_total.update(acked)
        m.start()
        present = all_keys(m, b"w")
        assert all(present.get(k) == v for k, v in acked_total.items())
    finally:
        m.stop()


def wal_files(m: Member) -> list[Path]:
    return sorted((m.data_dir / "member" / "wal").glob("*.wal"))


def fill(m: Member, n: int) -> None:
    stub = kv(m)
    for i in range(n):
        stub.Put(rpc_pb2.PutRequest(key=f"k{i:04d}".encode(), value=b"x" * 100))


@pytest.mark.parametrize("seed", range(4))
def test_truncated_wal_recovers_a_prefix_of_acknowledged_writes(tmp_path: Path, seed: int) -> None:
    m = Member(data_dir=tmp_path / "default.etcd").start()
    fill(m, 50)
    m.stop()
    wal = wal_files(m)[-1]
    size = wal.stat().st_size
    cut = random.Random(seed).randrange(size // 2, size)
    with open(wal, "r+b") as f:
        f.truncate(cut)
    m.start()
    try:
        keys = sorted(all_keys(m, b"k"))
        assert keys == [f"k{i:04d}".encode() for i in range(len(keys))], "not a prefix"
        # The store still takes writes after the repair.
        kv(m).Put(rpc_pb2.PutRequest(key=b"after", value=b"repair"))
    finally:
        m.stop()


def test_flipped_byte_in_the_middle_of_the_wal_refuses_to_start(tmp_path: Path) -> None:
    m = Member(data_dir=tmp_path / "default.etcd").start()
    fill(m, 50)
    m.stop()
    wal = wal_files(m)[-1]
    data = bytearray(wal.read_bytes())
    data[len(data) // 2] ^= 0xFF
    wal.write_bytes(bytes(data))
    with pytest.raises(RuntimeError) as err:
        m.start()
    message = str(err.value)
    assert "wal: corrupt record in" in message and wal.name in message and "offset" in message
