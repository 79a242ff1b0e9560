"""HashKV equals etcd 3.5.1's for the same history.

Operators compare HashKV across members (``etcdctl endpoint hashkv``), and a
mixed or migrating cluster compares etcdcore's with etcd's, so the hash, the
compact revision and the header revision must be etcd's, not just consistent
among etcdcore members. Each test starts a fresh etcdcore and a fresh etcd
3.5.1, sends both the same history over gRPC (checking every request answers
the same revision or error), and compares HashKV at revision 0, at every
revision still held, just below the compacted one and just past the current
one. Compactions are physical, so etcd has finished deleting before it is
asked for a hash.

The named histories pin the cases that matter (overwrites, delete ranges,
txns with several writes in one revision, leases attached and revoked,
compaction at a put, at a delete and at the current revision, compaction of a
key space that is all deleted); the seeded ones mix everything at random,
reproducibly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import Member, etcd_bin

pytestmark = pytest.mark.timeout(240)

#: What a request answered: the header revision, or the error's code and text.
Answer = tuple[str, object]


@dataclass
class Server:
    member: Member

    def __post_init__(self) -> None:
        self.connect()

    def connect(self) -> None:
        channel = self.member.channel()
        self.kv = rpc_pb2_grpc.KVStub(channel)
        self.lease = rpc_pb2_grpc.LeaseStub(channel)
        self.maintenance = rpc_pb2_grpc.MaintenanceStub(channel)

    def hash_kv(self, revision: int) -> Answer:
        try:
            r = self.maintenance.HashKV(rpc_pb2.HashKVRequest(revision=revision), timeout=10)
        except grpc.RpcError as e:
            return ("error", (e.code().name, e.details()))
        return ("hash", (r.hash, r.compact_revision, r.header.revision))


@dataclass(frozen=True)
class Op:
    """One request of a history, sent alike to both servers."""

    what: str
    send: Callable[[Server], object]

    def __call__(self, s: Server) -> Answer:
        try:
            resp = self.send(s)
        except grpc.RpcError as e:
            return ("error", (e.code().name, e.details()))
        header = getattr(resp, "header", None)
        return ("revision", header.revision if header is not None else None)

    def __repr__(self) -> str:
        return self.what


def put(key: str, value: str, lease: int = 0, **flags: bool) -> Op:
    req = rpc_pb2.PutRequest(key=key.encode(), value=value.encode(), lease=lease, **flags)
    return Op(f"put {key}={value} lease={lease} {flags}", lambda s: s.kv.Put(req, timeout=10))


def delete(key: str, range_end: str = "") -> Op:
    req = rpc_pb2.DeleteRangeRequest(key=key.encode(), range_end=range_end.encode())
    return Op(f"del {key}..{range_end}", lambda s: s.kv.DeleteRange(req, timeout=10))


def txn(
    compare: Sequence[rpc_pb2.Compare],
    success: Sequence[rpc_pb2.RequestOp],
    failure: Sequence[rpc_pb2.RequestOp] = (),
) -> Op:
    req = rpc_pb2.TxnRequest(compare=compare, success=success, failure=failure)
    return Op(f"txn {req}".replace("\n", " "), lambda s: s.kv.Txn(req, timeout=10))


def txn_put(key: str, value: str, lease: int = 0) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(
        request_put=rpc_pb2.PutRequest(key=key.encode(), value=value.encode(), lease=lease)
    )


def txn_delete(key: str, range_end: str = "") -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(
        request_delete_range=rpc_pb2.DeleteRangeRequest(
            key=key.encode(), range_end=range_end.encode()
        )
    )


def value_is(key: str, value: str) -> rpc_pb2.Compare:
    return rpc_pb2.Compare(
        key=key.encode(),
        target=rpc_pb2.Compare.VALUE,
        result=rpc_pb2.Compare.EQUAL,
        value=value.encode(),
    )


def grant(lease: int) -> Op:
    req = rpc_pb2.LeaseGrantRequest(ID=lease, TTL=3600)
    return Op(f"grant {lease}", lambda s: s.lease.LeaseGrant(req, timeout=10))


def revoke(lease: int) -> Op:
    req = rpc_pb2.LeaseRevokeRequest(ID=lease)
    return Op(f"revoke {lease}", lambda s: s.lease.LeaseRevoke(req, timeout=10))


def compact(revision: int) -> Op:
    req = rpc_pb2.CompactionRequest(revision=revision, physical=True)
    return Op(f"compact {revision}", lambda s: s.kv.Compact(req, timeout=30))


class Pair:
    """A fresh etcdcore and a fresh etcd 3.5.1 fed the same history."""

    def __init__(self, base: Path) -> None:
        self.ours = Member(data_dir=base / "etcdcore.etcd")
        self.theirs = Member(data_dir=base / "etcd.etcd", command=[etcd_bin("etcd")])
        self.ours.start()
        self.theirs.start()
        self.servers = (Server(self.ours), Server(self.theirs))
        self.history: list[Op] = []
        self.compacted = 0
        self.revision = 1

    def stop(self) -> None:
        self.ours.stop()
        self.theirs.stop()

    def restart(self) -> None:
        for s in self.servers:
            s.member.stop()
            s.member.start()
            s.connect()

    def run(self, *ops: Op) -> None:
        for op in ops:
            ours, theirs = (op(s) for s in self.servers)
            self.history.append(op)
            assert ours == theirs, f"{op!r} answered differently after {self.history}"
            if ours[0] == "revision" and op.what.startswith("compact"):
                self.compacted = max(self.compacted, int(op.what.split()[1]))
            if ours[0] == "revision" and isinstance(ours[1], int):
                self.revision = max(self.revision, ours[1])

    def assert_hashes_equal(self) -> int:
        """Compares HashKV at revision 0 (current), at a negative one, from just
        below the compact revision to just past the current one; returns how many."""
        revisions = [0, -1, *range(max(1, self.compacted - 1), self.revision + 2)]
        for rev in revisions:
            ours, theirs = (s.hash_kv(rev) for s in self.servers)
            assert ours == theirs, f"HashKV({rev}) differs after {self.history}"
        return len(revisions)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    p = Pair(tmp_path)
    try:
        yield p
    finally:
        p.stop()


def test_fresh_stores_hash_alike(pair: Pair) -> None:
    pair.assert_hashes_equal()


def test_compaction_at_revision_zero_hashes_as_etcd(pair: Pair) -> None:
    pair.run(compact(0))  # etcd's compact revision becomes 0, not -1
    pair.assert_hashes_equal()
    pair.run(put("a", "1"), compact(1))
    pair.assert_hashes_equal()


def test_puts_and_overwrites_hash_as_etcd(pair: Pair) -> None:
    pair.run(put("a", "1"), put("b", "2"), put("a", "3"), put("a", "3"), put("c", ""))
    pair.assert_hashes_equal()


def test_delete_ranges_and_recreated_keys_hash_as_etcd(pair: Pair) -> None:
    pair.run(
        *(put(f"k{i}", str(i)) for i in range(6)),
        delete("k1", "k4"),  # three keys in one revision
        delete("nothing"),  # deletes nothing, makes no revision
        put("k2", "again"),
        delete("k", "\0"),  # from "k" on
        put("k0", "last"),
    )
    pair.assert_hashes_equal()


def test_txns_with_several_writes_hash_as_etcd(pair: Pair) -> None:
    pair.run(
        put("x", "1"),
        txn([value_is("x", "1")], [txn_put("a", "1"), txn_put("b", "1"), txn_delete("x")]),
        txn([value_is("x", "1")], [txn_put("c", "1")], [txn_put("d", "2"), txn_delete("a", "c")]),
        txn([], [rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(success=[txn_put("e", "n")]))]),
        txn([], [txn_put("dup", "1"), txn_put("dup", "2")]),  # refused alike
    )
    pair.assert_hashes_equal()


def test_keys_with_leases_and_revoked_leases_hash_as_etcd(pair: Pair) -> None:
    pair.run(
        grant(100),
        grant(200),
        put("l/a", "1", lease=100),
        put("l/b", "1", lease=100),
        put("l/c", "1", lease=200),
        put("l/a", "2", ignore_lease=True),
        put("l/c", "", ignore_value=True, lease=100),
        put("l/d", "1", lease=300),  # no such lease: refused alike
        txn([], [txn_put("l/e", "1", lease=200)]),
        revoke(100),  # deletes l/a, l/b, l/c in one revision
        put("l/a", "3", lease=200),
    )
    pair.assert_hashes_equal()


def history_with_deletes() -> list[Op]:
    """Revisions: 2 a=1, 3 b=1, 4 a=2, 5 del a, 6 c=1, 7 del b..d, 8 a=3, 9 b=2."""
    return [
        put("a", "1"),
        put("b", "1"),
        put("a", "2"),
        delete("a"),
        put("c", "1"),
        delete("b", "d"),
        put("a", "3"),
        put("b", "2"),
    ]


@pytest.mark.parametrize(
    "at",
    [2, 3, 4, 5, 6, 7, 8, 9],
    ids=[
        "at-first-put",
        "at-second-key",
        "at-overwrite",
        "at-delete",
        "after-delete",
        "at-delete-range",
        "at-recreate",
        "at-current",
    ],
)
def test_compaction_at_any_revision_hashes_as_etcd(pair: Pair, at: int) -> None:
    pair.run(*history_with_deletes(), compact(at))
    pair.assert_hashes_equal()
    pair.run(put("a", "after"), delete("c"))
    pair.assert_hashes_equal()


def test_successive_compactions_hash_as_etcd(pair: Pair) -> None:
    pair.run(*history_with_deletes())
    for at in (0, 3, 5, 5, 4, 7, 9):  # 5 again and 4 are refused alike
        pair.run(compact(at))
        pair.assert_hashes_equal()


def test_compacting_a_key_space_that_is_all_deleted_hashes_as_etcd(pair: Pair) -> None:
    # Nothing is kept at the compact revision, which etcd's hash treats apart.
    pair.run(put("a", "1"), put("b", "1"), delete("a", "c"), compact(4))
    pair.assert_hashes_equal()
    pair.run(put("a", "2"))
    pair.assert_hashes_equal()


@pytest.mark.parametrize("compacted", [False, True], ids=["never-compacted", "compacted"])
def test_hashes_survive_a_restart_as_etcds_do(pair: Pair, compacted: bool) -> None:
    pair.run(grant(7), put("r/a", "1", lease=7), *history_with_deletes())
    if compacted:
        pair.run(compact(6))
    pair.run(put("r/b", "2"))
    pair.restart()
    pair.assert_hashes_equal()


KEYS = [f"k{i}" for i in range(8)]
LEASES = [0x10, 0x20, 0x30]


class RandomHistory:
    """Draws requests of every kind a history may hold, mostly ones that
    succeed: it tracks which leases are granted and where compaction is."""

    def __init__(self, seed: int, pair: Pair) -> None:
        self.rng = random.Random(seed)
        self.pair = pair
        self.leases: set[int] = set()

    def lease(self) -> int:
        return self.rng.choice([0, 0, *sorted(self.leases)])

    def step(self) -> Op:
        rng, pair = self.rng, self.pair
        key = rng.choice(KEYS)
        value = rng.choice(["", "v", "value", "x" * rng.randint(1, 64)])
        roll = rng.random()
        if roll < 0.35:
            return put(key, value, lease=self.lease())
        if roll < 0.45:
            return delete(key)
        if roll < 0.52:
            lo, hi = sorted(rng.sample(KEYS, 2))
            return delete(lo, hi)
        if roll < 0.65:
            a, b, c = rng.sample(KEYS, 3)
            return txn(
                [value_is(a, value)],
                [txn_put(b, value, lease=self.lease()), txn_delete(c)],
                [txn_put(a, value), txn_put(c, value)],
            )
        if roll < 0.72:
            lease = rng.choice(LEASES)
            self.leases.add(lease)
            return grant(lease)
        if roll < 0.78 and self.leases:
            lease = rng.choice(sorted(self.leases))
            self.leases.discard(lease)
            return revoke(lease)
        if roll < 0.84:
            return put(key, "", ignore_value=True, ignore_lease=rng.random() < 0.5)
        if pair.compacted >= pair.revision:
            return put(key, value)
        return compact(rng.randint(pair.compacted + 1, pair.revision))


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_histories_hash_as_etcd(pair: Pair, seed: int) -> None:
    history = RandomHistory(seed, pair)
    for _ in range(150):
        op = history.step()
        pair.run(op)
        if op.what.startswith("compact"):
            pair.assert_hashes_equal()
    pair.assert_hashes_equal()
    assert pair.compacted > 1 and pair.revision > 50, "the history should have grown"
