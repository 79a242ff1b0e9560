"""etcd's snapshot format, checked against etcd's own tools.

The bbolt writer (``_core.bbolt_write``) makes an etcd-shaped snapshot —
etcd 3.5's buckets and encodings plus the SHA-256 trailer — and the real
``etcdutl`` 3.5.1 checks it (``snapshot status`` runs bbolt's consistency
check), restores it into a data dir, and a real etcd started there serves its
keys, revisions, compaction point, leases and users. A snapshot saved from a
real etcd, copied bucket by bucket through the reader and the writer, gives
etcdutl the same hash, revision and key count, and etcd the same keys.
"""

from __future__ import annotations

import json
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from etcdcore import _core
from etcdcore.proto.authpb import auth_pb2
from etcdcore.proto.mvccpb import kv_pb2
from harness import Member, etcd_bin, etcdctl

FIXTURE = Path(__file__).parent.parent / "fixtures" / "etcd-3.5.1.snapshot.db"
ROOT_AUTH = ("--user", "root:rootpw")
LEASE = 0x1234ABCD

Buckets = dict[bytes, list[tuple[bytes, bytes]]]


def rev_key(main: int, sub: int = 0, tombstone: bool = False) -> bytes:
    """etcd's revision key: main and sub revisions big-endian around '_'."""
    return struct.pack(">Q", main) + b"_" + struct.pack(">Q", sub) + (b"t" if tombstone else b"")


def kv(key: str, create: int, mod: int, version: int, value: str, lease: int = 0) -> bytes:
    return kv_pb2.KeyValue(
        key=key.encode(),
        create_revision=create,
        mod_revision=mod,
        version=version,
        value=value.encode(),
        lease=lease,
    ).SerializeToString()


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def lease_record(lease_id: int, ttl: int) -> bytes:
    """leasepb.Lease{ID, TTL}: two varint fields (no Python module for leasepb)."""
    return b"\x08" + varint(lease_id) + b"\x10" + varint(ttl)


def user(name: str, password: str, roles: list[str]) -> bytes:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4))
    return auth_pb2.User(
        name=name.encode(), password=hashed, roles=roles, options=auth_pb2.UserAddOptions()
    ).SerializeToString()


def etcd_shaped_buckets() -> Buckets:
    """A history as etcd 3.5 would store it, compacted at revision 3:

    rev 2 put /app/a=1 (compacted away), rev 3 put /app/a=2, rev 4 put /app/b=x
    with a lease, rev 5 a txn putting /app/c and /other/d, rev 6 delete /app/c,
    rev 7 put /app/a=3; auth enabled with users root and alice (role reader:
    read /app/)."""
    read_app = auth_pb2.Permission(
        permType=auth_pb2.Permission.READ, key=b"/app/", range_end=b"/app0"
    )
    return {
        b"key": [
            (rev_key(3), kv("/app/a", 2, 3, 2, "2")),
            (rev_key(4), kv("/app/b", 4, 4, 1, "x", lease=LEASE)),
            (rev_key(5, 0), kv("/app/c", 5, 5, 1, "c")),
            (rev_key(5, 1), kv("/other/d", 5, 5, 1, "d")),
            (rev_key(6, 0, tombstone=True), kv_pb2.KeyValue(key=b"/app/c").SerializeToString()),
            (rev_key(7), kv("/app/a", 2, 7, 3, "3")),
        ],
        b"meta": [
            (b"consistent_index", struct.pack(">Q", 12)),
            (b"term", struct.pack(">Q", 2)),
            (b"scheduledCompactRev", rev_key(3)),
            (b"finishedCompactRev", rev_key(3)),
        ],
        b"lease": [(struct.pack(">q", LEASE), lease_record(LEASE, 600))],
        b"alarm": [],
        b"cluster": [(b"clusterVersion", b"3.5.0")],
        b"members": [],
        b"members_removed": [],
        b"auth": [(b"authEnabled", b"\x01"), (b"authRevision", struct.pack(">Q", 4))],
        b"authUsers": [
            (b"alice", user("alice", "alicepw", ["reader"])),
            (b"root", user("root", "rootpw", ["root"])),
        ],
        b"authRoles": [
            (b"reader", auth_pb2.Role(name=b"reader", keyPermission=[read_app]).SerializeToString())
        ],
    }


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli), continuing from ``crc`` as Go's hash.Hash32 does."""
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def etcdutl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([etcd_bin("etcdutl"), *args], capture_output=True, text=True, timeout=60)


def status(path: Path) -> dict[str, int]:
    out = etcdutl("snapshot", "status", str(path), "-w", "json")
    assert out.returncode == 0, out.stderr
    result: dict[str, int] = json.loads(out.stdout)
    return result


def restore_and_start(snapshot: Path, base: Path) -> Member:
    """etcdutl snapshot restore into a new data dir, and a real etcd on it."""
    m = Member(data_dir=base / "restored.etcd", name="r1", command=[etcd_bin("etcd")])
    out = etcdutl(
        "snapshot", "restore", str(snapshot),
        "--data-dir", str(m.data_dir),
        "--name", m.name,
        "--initial-cluster", f"{m.name}={m.peer_url}",
        "--initial-advertise-peer-urls", m.peer_url,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return m.start()


def get_json(m: Member, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(m.etcdctl(*ROOT_AUTH, "get", *args, "-w", "json").stdout)
    return result


def kvs(m: Member, *args: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = get_json(m, *args).get("kvs", [])
    return result


@dataclass
class Written:
    buckets: Buckets
    path: Path


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Written:
    buckets = etcd_shaped_buckets()
    path = tmp_path_factory.mktemp("bbolt") / "snapshot.db"
    size = _core.bbolt_write(str(path), buckets, sha256_trailer=True)
    assert size == path.stat().st_size and size % 512 == 32
    return Written(buckets, path)


@pytest.fixture(scope="module")
def restored(written: Written, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Member]:
    m = restore_and_start(written.path, tmp_path_factory.mktemp("restored"))
    try:
        yield m
    finally:
        m.stop()


def test_etcdutl_status_counts_the_revision_and_keys_the_writer_wrote(written: Written) -> None:
    st = status(written.path)
    assert st["revision"] == 7
    assert st["totalKey"] == sum(len(items) for items in written.buckets.values())
    assert st["totalSize"] == written.path.stat().st_size - 32


def test_etcdutl_status_hashes_exactly_the_buckets_and_entries_written(written: Written) -> None:
    # etcdutl's hash: CRC-32C over each bucket name, then its keys and values,
    # in bbolt's order — so it saw every entry, in order, as written.
    crc = 0
    for name in sorted(written.buckets):
        crc = crc32c(name, crc)
        for key, value in sorted(written.buckets[name]):
            crc = crc32c(value, crc32c(key, crc))
    assert status(written.path)["hash"] == crc


def test_etcd_restored_from_the_snapshot_serves_its_keys_and_revisions(restored: Member) -> None:
    got = get_json(restored, "", "--prefix")
    assert got["header"]["revision"] == 7
    plain = [
        (k["key"], k.get("value"), k["create_revision"], k["mod_revision"], k["version"])
        for k in got["kvs"]
    ]
    b64 = {"/app/a": "L2FwcC9h", "/app/b": "L2FwcC9i", "/other/d": "L290aGVyL2Q="}
    assert plain == [
        (b64["/app/a"], "Mw==", 2, 7, 3),
        (b64["/app/b"], "eA==", 4, 4, 1),
        (b64["/other/d"], "ZA==", 5, 5, 1),
    ]


def test_etcd_restored_from_the_snapshot_serves_its_history(restored: Member) -> None:
    assert [k["value"] for k in kvs(restored, "/app/a", "--rev", "3")] == ["Mg=="]  # "2"
    assert [k["value"] for k in kvs(restored, "/app/c", "--rev", "5")] == ["Yw=="]  # "c"
    assert kvs(restored, "/app/c", "--rev", "6") == []  # deleted at 6


def test_etcd_restored_from_the_snapshot_keeps_its_compaction_point(restored: Member) -> None:
    out = restored.etcdctl(*ROOT_AUTH, "get", "/app/a", "--rev", "2", check=False)
    assert out.returncode != 0
    assert "required revision has been compacted" in out.stderr


def test_etcd_restored_from_the_snapshot_keeps_its_lease_and_attached_key(
    restored: Member,
) -> None:
    out = restored.etcdctl(*ROOT_AUTH, "lease", "timetolive", f"{LEASE:x}", "--keys", "-w", "json")
    ttl = json.loads(out.stdout)
    assert ttl["id"] == LEASE
    assert ttl["granted-ttl"] == 600
    assert ttl["keys"] == ["L2FwcC9i"]  # /app/b


def test_etcd_restored_from_the_snapshot_enforces_its_users_and_roles(restored: Member) -> None:
    users = restored.etcdctl(*ROOT_AUTH, "user", "list").stdout.split()
    assert users == ["alice", "root"]
    alice = ("--user", "alice:alicepw")
    assert restored.etcdctl(*alice, "get", "/app/a", "--print-value-only").stdout == "3\n"
    denied = restored.etcdctl(*alice, "get", "/other/d", check=False)
    assert "permission denied" in denied.stderr
    unauth = etcdctl(restored.endpoint, "get", "/app/a", check=False)
    assert unauth.returncode != 0


def copy_through_reader_and_writer(source: Path, target: Path) -> None:
    buckets: Buckets = {}
    for name in _core.bbolt_buckets(str(source)):
        items = []
        for key, value in _core.bbolt_items(str(source), name):
            assert value is not None, "etcd has no nested buckets"
            items.append((key, value))
        buckets[name] = items
    _core.bbolt_write(str(target), buckets, sha256_trailer=True)


def test_etcds_snapshot_copied_by_reader_and_writer_has_etcds_status(tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    copy_through_reader_and_writer(FIXTURE, copy)
    ours, theirs = status(copy), status(FIXTURE)
    # Same contents, same hash; the size differs with the page packing.
    assert {k: ours[k] for k in ("hash", "revision", "totalKey")} == {
        k: theirs[k] for k in ("hash", "revision", "totalKey")
    }
    assert theirs["revision"] == 14


def test_etcds_snapshot_copied_by_reader_and_writer_restores_to_the_same_keys(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "copy.db"
    copy_through_reader_and_writer(FIXTURE, copy)
    answers = []
    for snapshot in (FIXTURE, copy):
        m = restore_and_start(snapshot, tmp_path / snapshot.stem)
        try:
            got = get_json(m, "", "--prefix")
            leases = sorted(m.etcdctl(*ROOT_AUTH, "lease", "list").stdout.split())
            answers.append((got["header"]["revision"], got["kvs"], leases))
        finally:
            m.stop()
    assert answers[0] == answers[1]
    assert len(answers[0][1]) == 305  # 5 keys and /bulk/000-299


def test_a_truncated_snapshot_is_refused_naming_the_page_and_offset(tmp_path: Path) -> None:
    cut = tmp_path / "cut.db"
    cut.write_bytes(FIXTURE.read_bytes()[: 6 * 4096])
    with pytest.raises(ValueError, match=r"offset 24576 \(page 6\): truncated"):
        _core.bbolt_buckets(str(cut))


def test_reading_a_missing_bucket_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        _core.bbolt_items(str(FIXTURE), b"nope")


def test_a_key_given_twice_to_the_writer_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="given twice"):
        _core.bbolt_write(str(tmp_path / "x.db"), {b"key": [(b"a", b"1"), (b"a", b"2")]})
    assert not (tmp_path / "x.db").exists()
