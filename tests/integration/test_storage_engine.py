"""The storage engine as a user meets it: the backend file in etcd's place,
sizes that are the file's, compaction and defragment that really free space,
restarts that re-apply only what the backend had not made durable, a start
that refuses a data dir of the old format, and a member that stops (exit code
non-zero) when its disk fails under it."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import Member

MiB = 1024 * 1024


def kv(m: Member) -> rpc_pb2_grpc.KVStub:
    return rpc_pb2_grpc.KVStub(m.channel())


def status(m: Member) -> rpc_pb2.StatusResponse:
    return rpc_pb2_grpc.MaintenanceStub(m.channel()).Status(rpc_pb2.StatusRequest(), timeout=10)


def backend_file(m: Member) -> Path:
    return m.data_dir / "member" / "snap" / "db"


def endpoint_status(m: Member) -> dict:
    out = m.etcdctl("endpoint", "status", "-w", "json").stdout
    return json.loads(out)[0]["Status"]


def test_the_backend_is_a_file_at_etcds_path_and_status_reports_its_size(
    tmp_path: Path,
) -> None:
    m = Member(data_dir=tmp_path / "default.etcd").start()
    try:
        # A fresh member already has a database of some size (etcd: 20 KiB;
        # Go clients check that it is not zero).
        assert status(m).dbSize > 0
        stub = kv(m)
        for i in range(200):
            stub.Put(rpc_pb2.PutRequest(key=f"k{i}".encode(), value=b"v" * 10_000))
        time.sleep(0.3)  # past a backend batch interval: the file is written
        s = status(m)
        assert backend_file(m).is_file()
        assert s.dbSize == backend_file(m).stat().st_size
        assert 200 * 10_000 <= s.dbSizeInUse <= s.dbSize
    finally:
        m.stop()


def test_compaction_frees_space_in_use_and_defrag_shrinks_the_file(tmp_path: Path) -> None:
    m = Member(data_dir=tmp_path / "default.etcd").start()
    try:
        stub = kv(m)
        for i in range(300):
            stub.Put(rpc_pb2.PutRequest(key=b"config", value=str(i).encode() * 5_000))
        rev = stub.Range(rpc_pb2.RangeRequest(key=b"config")).header.revision
        full = status(m)
        # --physical answers once the versions are removed (they go in the
        # background, a batch at a time).
        m.etcdctl("compact", str(rev), "--physical")
        assert status(m).dbSizeInUse < full.dbSizeInUse // 10
        assert status(m).dbSize >= full.dbSize, "only defragment gives the file back"
        out = m.etcdctl("defrag")
        assert out.stdout.startswith("Finished defragmenting etcd member")
        after = status(m)
        assert after.dbSize < full.dbSize // 5
        assert backend_file(m).stat().st_size == after.dbSize
        got = stub.Range(rpc_pb2.RangeRequest(key=b"config"))
        assert got.kvs[0].value == b"299" * 5_000
        assert got.kvs[0].version == 300
    finally:
        m.stop()


def test_a_restart_after_kill9_reapplies_only_what_the_backend_lacked(tmp_path: Path) -> None:
    # A batch interval far longer than the test: the backend is durable only
    # as of its first commit, everything after is in the WAL alone.
    m = Member(
        data_dir=tmp_path / "default.etcd",
        extra=["--backend-batch-interval", "1h", "--backend-batch-limit", "1000000"],
    ).start()
    try:
        stub = kv(m)
        acked = {}
        for i in range(300):
            key = f"k{i % 40}".encode()
            r = stub.Put(rpc_pb2.PutRequest(key=key, value=str(i).encode()))
            acked[key] = (str(i).encode(), r.header.revision)
        txn = rpc_pb2.TxnRequest(
            success=[rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"k0"))]
        )
        last = stub.Txn(txn).header.revision
        m.kill9()
        m.start()
        found = kv(m).Range(rpc_pb2.RangeRequest(key=b"k", range_end=b"l")).kvs
        got = {x.key: x for x in found}
        assert b"k0" not in got
        for key, (value, rev) in acked.items():
            if key == b"k0":
                continue
            assert got[key].value == value
            assert got[key].mod_revision == rev
            # Applied exactly once: the version counts every put once.
            assert got[key].version == len([i for i in range(300) if f"k{i % 40}".encode() == key])
        assert status(m).header.revision == last
    finally:
        m.stop()


def test_a_data_dir_of_the_old_in_memory_format_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "old.etcd"
    (data_dir / "member" / "wal").mkdir(parents=True)
    (data_dir / "member" / "snap").mkdir(parents=True)
    (data_dir / "member" / "snap" / "0000000000000001-0000000000000001.snap").write_bytes(
        b"ECSNAP01" + b"\0" * 28
    )
    m = Member(data_dir=data_dir)
    with pytest.raises(RuntimeError) as err:
        m.start()
    text = str(err.value)
    assert "old in-memory snapshot format" in text and "ECSNAP01" in text
    assert "server exited with 1" in text


def test_a_backend_that_cannot_grow_stops_the_member_with_exit_code_1(tmp_path: Path) -> None:
    # Files may not grow past 80 MiB (RLIMIT_FSIZE, SIGXFSZ ignored so the
    # write fails with EFBIG): the WAL's 64 MiB segments fit, the backend
    # file soon does not. A disk error under the backend, without any hook.
    limit = 80 * MiB

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    m = Member(data_dir=tmp_path / "default.etcd")
    m.log_path = m.data_dir.parent / "default.etcd.log"
    log = open(m.log_path, "ab")  # noqa: SIM115 - owned by the process
    m.proc = subprocess.Popen(
        [*m.command, *m.args()], stdout=log, stderr=subprocess.STDOUT, preexec_fn=limited
    )
    m.wait_ready(20)
    acked: dict[bytes, bytes] = {}
    stub = kv(m)
    value = b"x" * MiB
    for i in range(200):
        try:
            stub.Put(rpc_pb2.PutRequest(key=f"big{i}".encode(), value=value), timeout=10)
        except grpc.RpcError:
            break
        acked[f"big{i}".encode()] = value
    assert m.proc is not None
    assert m.proc.wait(30) == 1
    text = m.log()
    assert "the member stopped after a failure" in text
    assert "backend" in text
    m.proc = None
    # Without the limit it starts again with every acknowledged write.
    m.start()
    try:
        got = kv(m).Range(rpc_pb2.RangeRequest(key=b"big", range_end=b"bih", keys_only=True))
        assert {k.key for k in got.kvs} >= set(acked)
    finally:
        m.stop()
