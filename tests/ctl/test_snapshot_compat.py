"""etcd's snapshot format both ways, with the real tools: a snapshot saved from
etcdcore is a bbolt file that etcdutl reads and restores into a working etcd,
and a snapshot saved from etcd 3.5 restores into a working etcdcore — keys,
values, revisions, versions, leases, users, roles and the compaction point
kept at every step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ctl_runner import ctl_command, etcdcorectl
from harness import Member, etcd_bin, etcdctl

ROOT = "root:rootpw"


def etcdutl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([etcd_bin("etcdutl"), *args], capture_output=True, text=True, timeout=120)


def history(m: Member) -> str:
    """Writes the same history on any member; returns the lease id (hex)."""
    run = m.etcdctl
    run("put", "/app/a", "1")
    run("put", "/app/b", "2")
    run("put", "/app/a", "3")
    run("del", "/app/b")
    run("put", "/app/c", "x")
    run(
        "txn",
        input='value("/app/a") = "3"\n\nput /app/d dd\nput /other/e ee\n\n\n',
    )
    run("compact", "5")
    lease = run("lease", "grant", "3600").stdout.split()[1]
    run("put", "/app/leased", "v", f"--lease={lease}")
    run("put", "/app/a", "4")
    for args in (
        ("user", "add", ROOT),
        ("role", "add", "reader"),
        ("role", "grant-permission", "reader", "read", "/app/", "--prefix"),
        ("user", "add", "alice:alicepw"),
        ("user", "grant-role", "alice", "reader"),
        ("auth", "enable"),
    ):
        run(*args)
    return lease


def state(m: Member) -> dict:
    """What a user sees: every key with its revisions, the header revision,
    the compaction point, leases with their granted TTL and attached keys,
    users and roles."""
    run = m.etcdctl

    def js(*args: str) -> dict:
        return json.loads(run("--user", ROOT, *args, "-w", "json").stdout)

    got = js("get", "", "--prefix")
    kvs = [
        (kv["key"], kv.get("value"), kv["create_revision"], kv["mod_revision"], kv["version"])
        for kv in got["kvs"]
    ]
    leases = {}
    for lease in js("lease", "list").get("leases") or []:
        ttl = js("lease", "timetolive", format(lease["id"], "x"), "--keys")
        leases[lease["id"]] = (ttl["granted-ttl"], sorted(ttl.get("keys") or []))
    compacted = run("--user", ROOT, "get", "/app/a", "--rev=4", check=False)
    return {
        "kvs": kvs,
        "revision": got["header"]["revision"],
        "compacted_at_5": "required revision has been compacted" in compacted.stderr,
        "leases": leases,
        "users": run("--user", ROOT, "user", "list").stdout,
        "alice": run("--user", ROOT, "user", "get", "alice").stdout,
        "reader": run("--user", ROOT, "role", "get", "reader").stdout,
        "alice can read /app": run(
            "--user", "alice:alicepw", "get", "/app/a", check=False
        ).returncode
        == 0,
        "alice cannot read /other": "permission denied"
        in run("--user", "alice:alicepw", "get", "/other/e", check=False).stderr,
    }


def save(m: Member, path: Path) -> None:
    m.etcdctl("--user", ROOT, "snapshot", "save", str(path))


def etcd_member(data_dir: Path, name: str = "default") -> Member:
    return Member(data_dir=data_dir, name=name, command=[etcd_bin("etcd")])


def test_etcdutl_reads_etcdcores_snapshot_with_the_figures_of_etcds(tmp_path: Path) -> None:
    """The same history on etcd and etcdcore: etcdutl sees the same revision
    and the same number of entries in both snapshots. (Their hashes differ:
    each holds its own cluster's member ids, Raft index and term.)"""
    statuses = {}
    for name, member in (
        ("etcd", etcd_member(tmp_path / "etcd")),
        ("etcdcore", Member(data_dir=tmp_path / "core")),
    ):
        member.start()
        try:
            history(member)
            save(member, tmp_path / f"{name}.db")
        finally:
            member.stop()
        out = etcdutl("snapshot", "status", str(tmp_path / f"{name}.db"), "-w", "json")
        assert out.returncode == 0, out.stderr
        statuses[name] = json.loads(out.stdout)
    for field in ("revision", "totalKey"):
        assert statuses["etcdcore"][field] == statuses["etcd"][field], statuses


def test_an_etcd_snapshot_restores_into_etcdcore_and_back_into_etcd(tmp_path: Path) -> None:
    # etcd -> snapshot
    source = etcd_member(tmp_path / "source")
    source.start()
    try:
        history(source)
        want = state(source)
        save(source, tmp_path / "from-etcd.db")
    finally:
        source.stop()
    assert (
        want["compacted_at_5"] and want["alice can read /app"] and want["alice cannot read /other"]
    )

    # -> etcdcore
    core = Member(data_dir=tmp_path / "core", name="c1")
    restored = etcdcorectl(
        None,
        "snapshot",
        "restore",
        str(tmp_path / "from-etcd.db"),
        "--name=c1",
        f"--data-dir={core.data_dir}",
        f"--initial-cluster=c1={core.peer_url}",
        f"--initial-advertise-peer-urls={core.peer_url}",
    )
    assert restored.returncode == 0, restored.stderr
    core.start()
    try:
        assert state(core) == want
        save(core, tmp_path / "from-etcdcore.db")
    finally:
        core.stop()

    # -> etcd again, with etcd's own tool
    back = etcd_member(tmp_path / "back", name="e2")
    out = etcdutl(
        "snapshot",
        "restore",
        str(tmp_path / "from-etcdcore.db"),
        "--name=e2",
        f"--data-dir={back.data_dir}",
        f"--initial-cluster=e2={back.peer_url}",
        f"--initial-advertise-peer-urls={back.peer_url}",
    )
    assert out.returncode == 0, out.stderr
    back.start()
    try:
        assert state(back) == want
    finally:
        back.stop()


def test_etcdcorectl_snapshot_status_equals_etcdutls_on_an_etcd_snapshot(tmp_path: Path) -> None:
    m = etcd_member(tmp_path / "etcd")
    m.start()
    try:
        history(m)
        save(m, tmp_path / "s.db")
    finally:
        m.stop()
    for fmt in ("table", "json"):
        ours = etcdcorectl(None, "snapshot", "status", str(tmp_path / "s.db"), "-w", fmt)
        theirs = etcdutl("snapshot", "status", str(tmp_path / "s.db"), "-w", fmt)
        assert (ours.returncode, ours.stdout) == (0, theirs.stdout)


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_a_damaged_snapshot_is_refused_and_leaves_no_data_dir(tmp_path: Path, damage: str) -> None:
    m = Member(data_dir=tmp_path / "src")
    m.start()
    try:
        for i in range(300):
            etcdctl(m.endpoint, "put", f"k{i}", "v" * 200)
        m.etcdctl("snapshot", "save", str(tmp_path / "s.db"))
    finally:
        m.stop()
    data = bytearray((tmp_path / "s.db").read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x40
    (tmp_path / "bad.db").write_bytes(bytes(data))
    target = tmp_path / "restored"
    proc = etcdcorectl(
        None, "snapshot", "restore", str(tmp_path / "bad.db"), f"--data-dir={target}"
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: ") and "Traceback" not in proc.stderr
    assert not target.exists()


@pytest.mark.slow
def test_a_million_key_snapshot_streams_and_restores_in_bounded_memory(tmp_path: Path) -> None:
    m = Member(data_dir=tmp_path / "big")
    m.start()
    try:
        from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

        stub = rpc_pb2_grpc.KVStub(m.channel())
        value = b"v" * 512
        for start in range(0, 1_000_000, 500):
            ops = [
                rpc_pb2.RequestOp(
                    request_put=rpc_pb2.PutRequest(key=f"k{i:07d}".encode(), value=value)
                )
                for i in range(start, start + 500)
            ]
            stub.Txn(rpc_pb2.TxnRequest(success=ops), timeout=60)
        m.etcdctl("snapshot", "save", str(tmp_path / "big.db"), timeout=1200)
    finally:
        m.stop()
    # Restored from a process of its own, which reports its children's
    # peak resident memory: etcdcorectl's alone.
    target = tmp_path / "restored"
    probe = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.stderr.write(p.stderr)\n"
    )
    proc = subprocess.run(
        [
            sys.executable, "-c", probe, *ctl_command(),
            "snapshot", "restore", str(tmp_path / "big.db"), f"--data-dir={target}",
        ],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    code, peak_kb = proc.stdout.split()
    assert code == "0", proc.stderr
    peak_mb = int(peak_kb) / 1024
    size_mb = (tmp_path / "big.db").stat().st_size / 2**20
    # Far below the snapshot's size: it is read and written in pieces.
    assert peak_mb < size_mb / 2, (peak_mb, size_mb)
    status = json.loads(
        etcdutl("snapshot", "status", str(tmp_path / "big.db"), "-w", "json").stdout
    )
    assert status["revision"] == 2001
