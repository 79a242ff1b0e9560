"""A client that stops reading its watch stream is paused, never dropped:
etcd's proxy cancels a stream whose responses wait 50 ms for room; etcdcore's
holds a bounded amount per stream (hub.rs STREAM_BUDGET), lets its watchers
fall behind meanwhile, and when the client reads again brings them back from
where they stopped — every event once, in order — while other clients of
the same key carry on at full speed."""

from __future__ import annotations

import grpc
from watchers import WatchStream

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import GrpcProxy, Member, metric_value

EVENTS = 2500
VALUE = b"x" * 4096  # 2500 x 4 KiB: past the 8 MiB a stream may hold


def test_a_stalled_reader_gets_every_event_once_it_reads_again(
    backend_member: Member, proxy: GrpcProxy
) -> None:
    # No window growth on the stalled client's side: what it does not read
    # stays with the proxy.
    slow = WatchStream(grpc.insecure_channel(proxy.endpoint, options=[("grpc.http2.bdp_probe", 0)]))
    fast = WatchStream(grpc.insecure_channel(proxy.endpoint))
    slow_id = slow.create(b"slow/k").watch_id
    fast_id = fast.create(b"slow/k").watch_id
    slow.paused.clear()
    kv = rpc_pb2_grpc.KVStub(backend_member.channel())
    revs = [
        kv.Put(rpc_pb2.PutRequest(key=b"slow/k", value=VALUE)).header.revision
        for _ in range(EVENTS)
    ]
    # The reader that keeps up is not held back by the one that stopped.
    fast.wait_for(lambda: len(fast.revisions(fast_id)) >= EVENTS, 60)
    assert fast.revisions(fast_id) == revs
    paused = metric_value(
        f"http://{proxy.endpoint}/proxy/metrics", "etcdcore_grpc_proxy_watchers_paused_total"
    )
    assert paused is not None and paused >= 1
    slow.paused.set()
    slow.wait_for(lambda: len(slow.revisions(slow_id)) >= EVENTS, 120)
    assert slow.revisions(slow_id) == revs
    assert slow.error is None
    assert not any(r.canceled for r in slow.responses)
    slow.close()
    fast.close()
