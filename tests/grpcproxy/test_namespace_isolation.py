"""--namespace isolation, checked with hypothesis: whatever keys and ranges a
tenant sends through `etcdcore grpc-proxy start --namespace /tenant-a/`
(single keys, ranges, from-key "\\0" ends, the empty key), it reads and
deletes exactly its own keys, as a model of its keyspace says, and never
reads, deletes or watches a key outside the prefix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from watchers import WatchStream

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import GrpcProxy, Member

PREFIX = b"/tenant-a/"
#: Keys around the prefix on both sides, written directly to the cluster.
OUTSIDE = [
    b"\x00", b"/tenant-a", b"/tenant-a.", b"/tenant-a0", b"/tenant-b/x", b"/tenant-", b"zzz",
    b"\xff\xff", b"/", b"/tenant-a\xff",
]  # fmt: skip

keys = (
    st.binary(min_size=1, max_size=4)
    .map(lambda b: bytes(c % 5 for c in b))
    .map(lambda b: b.translate(bytes.maketrans(b"\x00\x01\x02\x03\x04", b"\x00/a\xffb")))
)
ends = st.one_of(st.just(b""), st.just(b"\x00"), keys)


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Member, GrpcProxy]]:
    base: Path = tmp_path_factory.mktemp("ns")
    m = Member(data_dir=base / "m.etcd").start()
    p = GrpcProxy(endpoints=m.endpoint, log_dir=base, extra=[f"--namespace={PREFIX.decode()}"])
    try:
        p.start()
        yield m, p
    finally:
        p.stop()
        m.stop()


def in_range(k: bytes, key: bytes, end: bytes) -> bool:
    if not end:
        return k == key
    if end == b"\x00":
        return k >= key
    return key <= k < end


def test_a_tenant_reaches_exactly_its_own_keys(tenant: tuple[Member, GrpcProxy]) -> None:
    member, proxy = tenant
    direct = rpc_pb2_grpc.KVStub(member.channel())
    via = rpc_pb2_grpc.KVStub(proxy.channel())
    for k in OUTSIDE:
        direct.Put(rpc_pb2.PutRequest(key=k, value=b"outside"))
    watch = WatchStream(proxy.channel())
    wid = watch.create(b"\x00", range_end=b"\x00", prev_kv=True).watch_id

    class Tenant(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            via.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"\x00", range_end=b"\x00"))
            self.model: dict[bytes, bytes] = {}
            self.n = 0

        @rule(key=keys)
        def put(self, key: bytes) -> None:
            self.n += 1
            value = b"v%d" % self.n
            r = via.Put(rpc_pb2.PutRequest(key=key, value=value, prev_kv=True))
            if key in self.model:
                assert r.prev_kv.key == key
            self.model[key] = value

        @rule(key=st.one_of(st.just(b""), keys), end=ends)
        def get(self, key: bytes, end: bytes) -> None:
            req = rpc_pb2.RangeRequest(key=key, range_end=end)
            if not key:
                with pytest.raises(grpc.RpcError) as e:
                    via.Range(req)
                assert e.value.details() == "etcdserver: key is not provided"
                return
            got = [(kv.key, kv.value) for kv in via.Range(req).kvs]
            want = sorted((k, v) for k, v in self.model.items() if in_range(k, key, end))
            assert got == want

        @rule(key=keys, end=ends)
        def delete(self, key: bytes, end: bytes) -> None:
            r = via.DeleteRange(rpc_pb2.DeleteRangeRequest(key=key, range_end=end, prev_kv=True))
            doomed = sorted(k for k in self.model if in_range(k, key, end))
            assert sorted(kv.key for kv in r.prev_kvs) == doomed
            for k in doomed:
                del self.model[k]

        @invariant()
        def outside_is_untouched(self) -> None:
            for k in OUTSIDE:
                assert direct.Range(rpc_pb2.RangeRequest(key=k)).kvs[0].value == b"outside"

        @invariant()
        def the_cluster_holds_the_model_under_the_prefix(self) -> None:
            end = PREFIX[:-1] + bytes([PREFIX[-1] + 1])
            raw = direct.Range(rpc_pb2.RangeRequest(key=PREFIX, range_end=end)).kvs
            assert {kv.key[len(PREFIX) :]: kv.value for kv in raw} == self.model

    run_state_machine_as_test(
        Tenant,
        settings=settings(
            max_examples=40,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    # Everything the tenant's watch saw was its own, already stripped.
    watch.wait_for(lambda: len(watch.events[wid]) > 0)
    for ev in watch.events[wid]:
        assert not ev.kv.key.startswith(PREFIX)
        assert PREFIX + ev.kv.key not in OUTSIDE
    watch.close()
