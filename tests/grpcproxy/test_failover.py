"""A member dying under the proxy: the proxy's watchers move to another
member and resume from the last revision they delivered — clients see
neither a gap nor a repeat, and no error."""

from __future__ import annotations

import threading
import time

import grpc
from watchers import WatchStream

from cluster import running_cluster, wait_until
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import GrpcProxy, Member, metric_value


def history(m: Member, key: bytes, start: int) -> list[int]:
    """Every revision at which ``key`` changed from ``start`` on, as the
    cluster itself reports it (a direct watch)."""
    s = WatchStream(m.channel())
    w = s.create(key, start_revision=start).watch_id
    time.sleep(1.0)
    revs = s.revisions(w)
    s.close()
    return revs


def test_a_member_kill_under_the_proxy_keeps_watches_going(tmp_path) -> None:  # noqa: ANN001
    with running_cluster(tmp_path, 3) as c:
        endpoints = ",".join(m.endpoint for m in c.members)
        p = GrpcProxy(endpoints=endpoints, log_dir=tmp_path).start()
        try:
            streams = [WatchStream(grpc.insecure_channel(p.endpoint)) for _ in range(4)]
            ids = [[r.watch_id for r in s.create_many(b"k", 25)] for s in streams]
            created_at = streams[0].responses[0].header.revision

            def hosting() -> list[Member]:
                return [
                    m for m in c.running()
                    if (metric_value(f"http://{m.endpoint}/metrics",
                                     "etcd_debugging_mvcc_watcher_total") or 0) > 0
                ]  # fmt: skip

            wait_until(lambda: len(hosting()) == 1)
            victim = hosting()[0]
            survivors = [m for m in c.members if m is not victim]
            stop = threading.Event()

            def write() -> None:
                i = 0
                while not stop.is_set():
                    for m in survivors:
                        try:
                            with m.channel() as ch:
                                rpc_pb2_grpc.KVStub(ch).Put(
                                    rpc_pb2.PutRequest(key=b"k", value=str(i).encode()),
                                    timeout=2,
                                )
                            break
                        except grpc.RpcError:
                            continue
                    i += 1
                    time.sleep(0.01)

            writer = threading.Thread(target=write)
            writer.start()
            time.sleep(1.0)
            victim.kill9()
            time.sleep(3.0)
            stop.set()
            writer.join()
            expected = history(survivors[0], b"k", created_at + 1)
            assert len(expected) > 50
            for s, wids in zip(streams, ids, strict=True):
                s.wait_for(
                    lambda s=s, wids=wids: all(len(s.revisions(w)) >= len(expected) for w in wids),
                    60,
                )
                for w in wids:
                    assert s.revisions(w) == expected
                assert s.error is None
                assert not any(r.canceled for r in s.responses)
            # The watchers live on, on one surviving member.
            wait_until(lambda: len(hosting()) == 1)
        finally:
            p.stop()


def test_requests_move_to_a_live_member_when_one_dies(tmp_path) -> None:  # noqa: ANN001
    with running_cluster(tmp_path, 3) as c:
        endpoints = ",".join(m.endpoint for m in c.members)
        p = GrpcProxy(endpoints=endpoints, log_dir=tmp_path).start()
        try:
            lease = p.etcdctl("lease", "grant", "60").stdout.split()[1]
            # A follower: the proxy's failover, not the cluster's election.
            c.followers()[0].kill9()
            for i in range(10):
                assert p.etcdctl("put", f"k{i}", str(i)).stdout == "OK\n"
                assert p.etcdctl("get", f"k{i}", "--print-value-only").stdout == f"{i}\n"
                ttl = p.etcdctl("lease", "keep-alive", "--once", lease).stdout
                assert ttl == f"lease {lease} keepalived with TTL(60)\n"
        finally:
            p.stop()
