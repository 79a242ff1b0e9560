"""Property test: the MVCC store, driven over gRPC, against a small pure-Python
model — random put / delete / txn / compact / range-at-revision sequences, and
in a second run restarts too, clean (SIGTERM) and crashes (kill -9), of a
member whose backend is made durable rarely, so that a crash leaves the WAL to
re-apply what the backend had not kept.

One server per run serves every example; each example works under its own key
prefix and only compares what lies under it, so examples never see each
other's keys. Revisions are global, so the model tracks the absolute revision
it expects.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import grpc
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import Member

COMPACTED = "etcdserver: mvcc: required revision has been compacted"
_members: dict[str, Member] = {}
_prefixes = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def model_members(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    _members["plain"] = Member(data_dir=tmp_path_factory.mktemp("model") / "default.etcd").start()
    # Durable backend commits every few seconds only: most of what a crash
    # interrupts is in the WAL alone.
    _members["restarts"] = Member(
        data_dir=tmp_path_factory.mktemp("restarts") / "default.etcd",
        extra=["--backend-batch-interval", "3s", "--snapshot-count", "40"],
    ).start()
    yield
    for m in _members.values():
        m.stop()
    _members.clear()


# key -> (value, create_revision, mod_revision, version)
State = dict[bytes, tuple[bytes, int, int, int]]
SUFFIXES = [b"a", b"b", b"c", b"d"]
values = st.binary(min_size=0, max_size=8)


class MvccModel(RuleBasedStateMachine):
    member_name = "plain"
    #: The highest revision a previous example compacted this member at.
    _compact_floor = -1

    @property
    def member(self) -> Member:
        return _members[self.member_name]

    @initialize()
    def setup(self) -> None:
        self.kv = rpc_pb2_grpc.KVStub(self.member.channel())
        self.prefix = f"m{next(_prefixes):06d}/".encode()
        rev = self.kv.Range(rpc_pb2.RangeRequest(key=b"x", serializable=True)).header.revision
        self.rev = rev
        self.compacted = self._server_compacted()
        self.states: dict[int, State] = {rev: {}}

    def _server_compacted(self) -> int:
        # The highest revision a previous example compacted at; -1 (etcd's
        # "never compacted") before the first compaction.
        return type(self)._compact_floor

    def key(self, i: int) -> bytes:
        return self.prefix + SUFFIXES[i]

    @property
    def now(self) -> State:
        return self.states[self.rev]

    def commit(self, new: State) -> None:
        self.rev += 1
        self.states[self.rev] = new

    @rule(i=st.integers(0, 3), value=values)
    def put(self, i: int, value: bytes) -> None:
        key = self.key(i)
        resp = self.kv.Put(rpc_pb2.PutRequest(key=key, value=value, prev_kv=True))
        new = dict(self.now)
        old = new.get(key)
        assert (resp.prev_kv.value if resp.HasField("prev_kv") else None) == (
            old[0] if old else None
        )
        self.commit(new)
        create, version = (old[1], old[3] + 1) if old else (self.rev, 1)
        new[key] = (value, create, self.rev, version)
        assert resp.header.revision == self.rev

    @rule(i=st.integers(0, 3), j=st.integers(0, 4))
    def delete_range(self, i: int, j: int) -> None:
        start, end = self.key(i), (self.key(j) if j < 4 else self.prefix + b"\xff")
        resp = self.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=start, range_end=end))
        doomed = [k for k in self.now if start <= k < end]
        assert resp.deleted == len(doomed)
        if doomed:
            self.commit({k: v for k, v in self.now.items() if k not in doomed})
        assert resp.header.revision == self.rev

    @rule(i=st.integers(0, 3), expect=values, a=values, b=st.integers(0, 3))
    def txn_value_compare(self, i: int, expect: bytes, a: bytes, b: int) -> None:
        key, other = self.key(i), self.key(b)
        cmp = rpc_pb2.Compare(
            key=key,
            result=rpc_pb2.Compare.EQUAL,
            target=rpc_pb2.Compare.VALUE,
            value=expect,
        )
        put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=a))
        delete = rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=other))
        resp = self.kv.Txn(rpc_pb2.TxnRequest(compare=[cmp], success=[put], failure=[delete]))
        cur = self.now.get(key)
        holds = cur is not None and cur[0] == expect
        assert resp.succeeded == holds
        new = dict(self.now)
        if holds:
            self.commit(new)
            new[key] = (a, cur[1], self.rev, cur[3] + 1)
        elif other in new:
            del new[other]
            self.commit(new)
        assert resp.header.revision == self.rev

    # Revisions are global to the shared server, so rules draw offsets with
    # fixed bounds and map them onto the revisions that exist now; hypothesis
    # needs the same draws to mean the same thing on every replay.
    @rule(pick=st.integers(0, 1000))
    def compact(self, pick: int) -> None:
        low = max(self.compacted, 0)
        target = low + pick % (self.rev - low + 1)
        try:
            self.kv.Compact(rpc_pb2.CompactionRequest(revision=target, physical=True))
        except grpc.RpcError as e:
            assert target <= self.compacted and e.details() == COMPACTED
            return
        assert target > self.compacted
        self.compacted = target
        type(self)._compact_floor = target

    @rule(pick=st.integers(0, 1000), i=st.integers(0, 3), j=st.integers(0, 4))
    def range_at(self, pick: int, i: int, j: int) -> None:
        first = min(self.states)
        rev = first + pick % (self.rev - first + 1)
        start, end = self.key(i), (self.key(j) if j < 4 else self.prefix + b"\xff")
        req = rpc_pb2.RangeRequest(key=start, range_end=end, revision=rev)
        try:
            resp = self.kv.Range(req)
        except grpc.RpcError as e:
            assert rev < self.compacted and e.details() == COMPACTED
            return
        assert rev >= self.compacted
        state = self.states[max(r for r in self.states if r <= rev)]
        want = sorted((k, *v) for k, v in state.items() if start <= k < end)
        got = [(x.key, x.value, x.create_revision, x.mod_revision, x.version) for x in resp.kvs]
        assert got == want
        assert resp.count == len(want)

    @invariant()
    def current_view_matches(self) -> None:
        if not hasattr(self, "kv"):
            return
        end = self.prefix + b"\xff"
        resp = self.kv.Range(rpc_pb2.RangeRequest(key=self.prefix, range_end=end))
        got = {x.key: (x.value, x.create_revision, x.mod_revision, x.version) for x in resp.kvs}
        assert got == self.now


MvccModel.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_mvcc_store_matches_model = MvccModel.TestCase


class MvccModelWithRestarts(MvccModel):
    """The same model, with the member stopped and started between steps."""

    member_name = "restarts"
    _compact_floor = -1

    @rule(crash=st.booleans())
    def restart(self, crash: bool) -> None:
        if crash:
            self.member.kill9()
        else:
            assert self.member.stop() == 0
        self.member.start()
        self.kv = rpc_pb2_grpc.KVStub(self.member.channel())
        # Nothing acknowledged was lost and nothing was applied twice: the
        # revision is exactly where the model left it.
        rev = self.kv.Range(rpc_pb2.RangeRequest(key=b"x", serializable=True)).header.revision
        assert rev == self.rev


MvccModelWithRestarts.TestCase.settings = settings(
    max_examples=8,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_mvcc_store_matches_model_across_restarts_and_crashes = MvccModelWithRestarts.TestCase
