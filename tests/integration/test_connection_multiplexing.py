"""Many calls in flight on one client connection: the member packs their
responses into shared socket writes (rust/src/server/coalesced_writes.rs),
and every caller must still get its own answer, whole and in order."""

from __future__ import annotations

import grpc

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import Member

#: Values on both sides of h2's copy thresholds (256 B and 1 KiB) and larger
#: than one 16 KiB DATA frame.
SIZES = (0, 10, 255, 300, 900, 1100, 5000, 70_000)


def test_concurrent_calls_on_one_connection_each_get_their_own_answer(member: Member) -> None:
    with member.channel() as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        values = {}
        for i in range(400):
            size = SIZES[i % len(SIZES)]
            key = f"mux/{i:04d}".encode()
            values[key] = (key * (size // len(key) + 1))[:size]
            kv.Put(rpc_pb2.PutRequest(key=key, value=values[key]), timeout=30)

        ranges: list[tuple[bytes, grpc.Future]] = [
            (key, kv.Range.future(rpc_pb2.RangeRequest(key=key), timeout=60))
            for _ in range(3)
            for key in values
        ]
        for key, call in ranges:
            answer = call.result()
            assert [(kv.key, kv.value) for kv in answer.kvs] == [(key, values[key])]

        whole = kv.Range(rpc_pb2.RangeRequest(key=b"mux/", range_end=b"mux0"), timeout=60)
        assert {kv.key: kv.value for kv in whole.kvs} == values
