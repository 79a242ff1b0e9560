"""The v3 API through etcdcore's proxy beyond what etcdctl's transcript
shows: keep-alives, registration and member lists, the HTTP endpoints, the
message limits, the read cache, errors with the cluster's codes, and Lock
and Election under a namespace."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cluster import wait_until
from etcdcore.client import Client
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import GrpcProxy, Member, etcd_bin, free_port, metric_value


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_keep_alive_once_is_answered_at_once(proxy: GrpcProxy) -> None:
    lease = proxy.etcdctl("lease", "grant", "90").stdout.split()[1]
    started = time.monotonic()
    out = proxy.etcdctl("lease", "keep-alive", "--once", lease).stdout
    assert out == f"lease {lease} keepalived with TTL(90)\n"
    # etcd's proxy answers on its lessor's next renewal, up to TTL/3 later.
    assert time.monotonic() - started < 5


def test_a_keep_alive_stream_renews_each_time_it_is_asked(proxy: GrpcProxy) -> None:
    with Client([proxy.endpoint]) as c:
        lease = c.lease_grant(30)
        ttls = [c.lease_keep_alive_once(lease.id) for _ in range(3)]
        assert ttls == [30, 30, 30]
        c.lease_revoke(lease.id)
        assert c.lease_keep_alive_once(lease.id) == 0


def test_cluster_errors_keep_their_codes_and_words(
    backend_member: Member, proxy: GrpcProxy
) -> None:
    def code_of(target: str) -> tuple[grpc.StatusCode, str]:
        with grpc.insecure_channel(target) as ch:
            with pytest.raises(grpc.RpcError) as e:
                rpc_pb2_grpc.LeaseStub(ch).LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=12345))
        return e.value.code(), e.value.details()

    assert code_of(proxy.endpoint) == code_of(backend_member.endpoint)
    assert code_of(proxy.endpoint) == (
        grpc.StatusCode.NOT_FOUND,
        "etcdserver: requested lease not found",
    )


def test_hash_kv_through_the_proxy_is_the_members(backend_member: Member, proxy: GrpcProxy) -> None:
    def hash_kv(target: str) -> int:
        with grpc.insecure_channel(target) as ch:
            return rpc_pb2_grpc.MaintenanceStub(ch).HashKV(rpc_pb2.HashKVRequest()).hash

    assert hash_kv(proxy.endpoint) == hash_kv(backend_member.endpoint)


def test_serializable_reads_come_from_the_cache_until_a_write_through_the_proxy(
    backend_member: Member, proxy: GrpcProxy
) -> None:
    def hits() -> float:
        v = metric_value(
            f"http://{proxy.endpoint}/proxy/metrics", "etcd_grpc_proxy_cache_hits_total"
        )
        return v or 0.0

    with grpc.insecure_channel(proxy.endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        kv.Put(rpc_pb2.PutRequest(key=b"cache/k", value=b"1"))
        read = rpc_pb2.RangeRequest(key=b"cache/k", serializable=True)
        assert kv.Range(read).kvs[0].value == b"1"
        before = hits()
        assert kv.Range(read).kvs[0].value == b"1"
        assert hits() == before + 1
        # A write that bypasses the proxy is not seen by serializable reads
        # (etcd's proxy behaves alike); a linearizable read sees it.
        with backend_member.channel() as direct:
            rpc_pb2_grpc.KVStub(direct).Put(rpc_pb2.PutRequest(key=b"cache/k", value=b"2"))
        assert kv.Range(read).kvs[0].value == b"1"
        assert kv.Range(rpc_pb2.RangeRequest(key=b"cache/k")).kvs[0].value == b"2"
        kv.Put(rpc_pb2.PutRequest(key=b"cache/k", value=b"3"))
        assert kv.Range(read).kvs[0].value == b"3"


@pytest.fixture(scope="module")
def etcd_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GrpcProxy, GrpcProxy]]:
    """etcd's proxy and etcdcore's in front of one real etcd."""
    base = tmp_path_factory.mktemp("pair")
    m = Member(
        data_dir=base / "etcd.etcd", command=[etcd_bin("etcd")], extra=["--log-level", "error"]
    )
    m.start()
    theirs = GrpcProxy(endpoints=m.endpoint, log_dir=base, real=True).start()
    ours = GrpcProxy(endpoints=m.endpoint, log_dir=base).start()
    try:
        yield theirs, ours
    finally:
        ours.stop()
        theirs.stop()
        m.stop()


@pytest.mark.parametrize("size", [1_000_000, 2_000_000, 5_000_000])
def test_message_limits_match_etcds_proxy(
    etcd_pair: tuple[GrpcProxy, GrpcProxy], size: int
) -> None:
    def put(p: GrpcProxy) -> tuple[grpc.StatusCode, str]:
        opts = [("grpc.max_send_message_length", 64 << 20)]
        with grpc.insecure_channel(p.endpoint, options=opts) as ch:
            try:
                rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"big", value=b"x" * size))
                return grpc.StatusCode.OK, ""
            except grpc.RpcError as e:
                return e.code(), e.details()

    theirs, ours = etcd_pair
    assert put(ours) == put(theirs)


def test_health_endpoints_answer_as_etcds_proxy(etcd_pair: tuple[GrpcProxy, GrpcProxy]) -> None:
    theirs, ours = etcd_pair
    for path in ("/health", "/proxy/health", "/nope"):
        assert http_get(f"http://{ours.endpoint}{path}") == http_get(
            f"http://{theirs.endpoint}{path}"
        )
    status, body = http_get(f"http://{ours.endpoint}/metrics")
    assert status == 200 and "etcd_server_has_leader 1" in body
    status, body = http_get(f"http://{ours.endpoint}/proxy/metrics")
    assert status == 200
    for family in (
        "etcd_grpc_proxy_cache_hits_total",
        "etcd_grpc_proxy_cache_keys_total",
        "etcd_grpc_proxy_cache_misses_total",
        "etcd_grpc_proxy_events_coalescing_total",
        "etcd_grpc_proxy_watchers_coalescing_total",
    ):
        assert f"# TYPE {family} " in body


def test_metrics_addr_serves_the_same_endpoints(tmp_path: Path, backend_member: Member) -> None:
    port = free_port()
    p = GrpcProxy(
        endpoints=backend_member.endpoint,
        log_dir=tmp_path,
        extra=[f"--metrics-addr=http://127.0.0.1:{port}"],
    ).start()
    try:
        assert http_get(f"http://127.0.0.1:{port}/health") == (
            200,
            '{"health":"true","reason":""}',
        )
        assert (
            "etcd_grpc_proxy_cache_hits_total"
            in http_get(f"http://127.0.0.1:{port}/proxy/metrics")[1]
        )
    finally:
        p.stop()


def registrations(m: Member, prefix: str) -> dict[str, dict]:
    with Client([m.endpoint]) as c:
        return {kv.key.decode(): json.loads(kv.value) for kv in c.get(prefix, prefix=True).kvs}


def test_registered_proxies_are_what_member_list_answers(
    tmp_path: Path, backend_member: Member
) -> None:
    extra = ["--resolver-prefix=/proxies", "--resolver-ttl=5"]
    a = GrpcProxy(endpoints=backend_member.endpoint, log_dir=tmp_path, extra=extra).start()
    b = GrpcProxy(endpoints=backend_member.endpoint, log_dir=tmp_path, extra=extra).start()
    try:
        wait_until(lambda: len(registrations(backend_member, "/proxies/")) == 2)
        regs = registrations(backend_member, "/proxies/")
        assert regs[f"/proxies/{a.endpoint}"]["Addr"] == a.endpoint
        assert regs[f"/proxies/{a.endpoint}"]["Op"] == 0
        listed = json.loads(a.etcdctl("member", "list", "-w", "json").stdout)
        assert sorted(m["clientURLs"][0] for m in listed["members"]) == sorted(
            [a.endpoint, b.endpoint]
        )
        # A proxy that goes away is dropped when its lease runs out.
        b.stop()
        wait_until(lambda: len(registrations(backend_member, "/proxies/")) == 1, timeout=20)
    finally:
        a.stop()
        b.stop()


def test_registration_is_written_as_etcds_proxy_writes_it(tmp_path: Path) -> None:
    m = Member(
        data_dir=tmp_path / "etcd.etcd", command=[etcd_bin("etcd")], extra=["--log-level", "error"]
    )
    m.start()
    extra = ["--resolver-prefix=/p", "--resolver-ttl=30"]
    theirs = GrpcProxy(endpoints=m.endpoint, log_dir=tmp_path, real=True, extra=extra).start()
    ours = GrpcProxy(endpoints=m.endpoint, log_dir=tmp_path, extra=extra).start()
    try:
        wait_until(lambda: len(registrations(m, "/p/")) == 2)
        regs = registrations(m, "/p/")
        mine, its = regs[f"/p/{ours.endpoint}"], regs[f"/p/{theirs.endpoint}"]
        assert mine == {**its, "Addr": ours.endpoint}
    finally:
        ours.stop()
        theirs.stop()
        m.stop()


def test_without_an_advertised_url_member_list_is_the_clusters(
    tmp_path: Path, backend_member: Member
) -> None:
    p = GrpcProxy(endpoints=backend_member.endpoint, log_dir=tmp_path)
    p.extra = ["--advertise-client-url="]
    cmd = p.command()
    # GrpcProxy.command() adds its own advertise URL first; the last one wins.
    assert cmd[-1] == "--advertise-client-url="
    p.start()
    try:
        listed = json.loads(p.etcdctl("member", "list", "-w", "json").stdout)
        assert [m["clientURLs"] for m in listed["members"]] == [
            [f"http://{backend_member.endpoint}"]
        ]
    finally:
        p.stop()


def test_lock_and_election_names_go_under_the_namespace(
    tmp_path: Path, backend_member: Member
) -> None:
    p = GrpcProxy(
        endpoints=backend_member.endpoint, log_dir=tmp_path, extra=["--namespace=/t1/"]
    ).start()
    try:
        with Client([p.endpoint]) as tenant, Client([backend_member.endpoint]) as raw:
            with tenant.lock("jobs") as key:
                assert key.startswith(b"jobs/")
                assert raw.get(b"/t1/" + key).count == 1
            with tenant.election("boss") as e:
                lk = e.campaign("me")
                assert lk.name == b"boss" and lk.key.startswith(b"boss/")
                leader = e.leader()
                assert leader is not None and leader.key == lk.key
                assert raw.get(b"/t1/" + lk.key).value == b"me"
    finally:
        p.stop()


def test_etcdcorectl_has_no_namespace_flag_as_etcdctl_has_none(proxy: GrpcProxy) -> None:
    ours = subprocess.run(
        ["etcdcorectl", f"--endpoints={proxy.endpoint}", "--namespace=x", "get", "a"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    theirs = proxy.etcdctl("--namespace=x", "get", "a", check=False)
    assert ours.returncode == theirs.returncode != 0
    assert ours.stderr.splitlines()[0] == theirs.stderr.splitlines()[0]
