"""/metrics series the Rust core counts: proposals, WAL fsync and backend
histograms, go-grpc-prometheus's counters for every service (KV included)
and the peer traffic of a cluster, with etcd 3.5's names, types, help texts,
labels and buckets."""

from __future__ import annotations

import queue
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import HttpServer, prefix

from cluster import Cluster, member_host, status, wait_until
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import free_port

pytestmark = pytest.mark.timeout(60)

#: client_golang's ExponentialBuckets(0.001, 2, 14), as etcd writes them.
DISK_BUCKETS = [
    "0.001", "0.002", "0.004", "0.008", "0.016", "0.032", "0.064",
    "0.128", "0.256", "0.512", "1.024", "2.048", "4.096", "8.192", "+Inf",
]  # fmt: skip

#: The families this file is about, with etcd's help text and type.
CORE_FAMILIES = {
    "etcd_server_proposals_pending": (
        "gauge",
        "The current number of pending proposals to commit.",
    ),
    "etcd_server_proposals_failed_total": (
        "counter",
        "The total number of failed proposals seen.",
    ),
    "etcd_disk_wal_fsync_duration_seconds": (
        "histogram",
        "The latency distributions of fsync called by WAL.",
    ),
    "etcd_disk_backend_commit_duration_seconds": (
        "histogram",
        "The latency distributions of commit called by backend.",
    ),
    "etcd_disk_backend_snapshot_duration_seconds": (
        "histogram",
        "The latency distribution of backend snapshots.",
    ),
    "grpc_server_started_total": ("counter", "Total number of RPCs started on the server."),
    "grpc_server_handled_total": (
        "counter",
        "Total number of RPCs completed on the server, regardless of success or failure.",
    ),
    "grpc_server_msg_received_total": (
        "counter",
        "Total number of RPC stream messages received on the server.",
    ),
    "grpc_server_msg_sent_total": (
        "counter",
        "Total number of gRPC stream messages sent by the server.",
    ),
}


def scrape(server: HttpServer) -> str:
    return server.get("/metrics", base=server.metrics_base).body.decode()


def value(text: str, series: str) -> float:
    """The value of one series, written as in the exposition format."""
    m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert m, f"{series} not in /metrics"
    return float(m.group(1))


def kv_series(family: str, method: str, code: str | None = None) -> str:
    labels = f'grpc_code="{code}",' if code else ""
    return (
        f'{family}{{{labels}grpc_method="{method}",'
        'grpc_service="etcdserverpb.KV",grpc_type="unary"}'
    )


def help_and_type(text: str) -> dict[str, tuple[str, str]]:
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.M))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    return {name: (types[name], helps[name]) for name in types}


def label_names(text: str, family: str) -> set[tuple[str, ...]]:
    """The label name sets of a family's series."""
    return {
        tuple(re.findall(r'(\w+)="', labels))
        for labels in re.findall(rf"^{family}\{{(.*)\}} ", text, re.M)
    }


@pytest.fixture(scope="module")
def channel(etcdcore_http: HttpServer) -> Iterator[grpc.Channel]:
    """A gRPC channel to the member behind ``etcdcore_http``."""
    reply = etcdcore_http.call("/v3/cluster/member/list", {})
    url = reply["members"][0]["clientURLs"][0].removeprefix("http://")
    with grpc.insecure_channel(url) as ch:
        yield ch


@pytest.fixture(scope="module")
def kv(channel: grpc.Channel) -> rpc_pb2_grpc.KVStub:
    return rpc_pb2_grpc.KVStub(channel)


def put_many(kv: rpc_pb2_grpc.KVStub, n: int) -> None:
    p = prefix().encode()
    for i in range(n):
        kv.Put(rpc_pb2.PutRequest(key=p + b"%d" % i, value=b"v"), timeout=5)


def test_wal_fsync_histogram_counts_puts_in_etcds_buckets(
    etcdcore_http: HttpServer, kv: rpc_pb2_grpc.KVStub
) -> None:
    before = value(scrape(etcdcore_http), "etcd_disk_wal_fsync_duration_seconds_count")
    put_many(kv, 5)
    text = scrape(etcdcore_http)
    assert value(text, "etcd_disk_wal_fsync_duration_seconds_count") >= before + 5
    assert re.findall(
        r'^etcd_disk_wal_fsync_duration_seconds_bucket\{le="([^"]+)"\}', text, re.M
    ) == (DISK_BUCKETS)
    assert value(text, 'etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"}') == value(
        text, "etcd_disk_wal_fsync_duration_seconds_count"
    )


def test_backend_commit_histogram_counts_durable_backend_commits(
    etcdcore_http: HttpServer, kv: rpc_pb2_grpc.KVStub
) -> None:
    before = value(scrape(etcdcore_http), "etcd_disk_backend_commit_duration_seconds_count")
    put_many(kv, 3)
    # The puts are made durable in the backend by the next batch commit
    # (--backend-batch-interval, 100 ms), as etcd's backend commits are timed.
    wait_until(
        lambda: (
            value(scrape(etcdcore_http), "etcd_disk_backend_commit_duration_seconds_count")
            >= before + 1
        ),
        timeout=5,
    )
    text = scrape(etcdcore_http)
    assert (
        re.findall(r'^etcd_disk_backend_commit_duration_seconds_bucket\{le="([^"]+)"\}', text, re.M)
        == DISK_BUCKETS
    )


def test_backend_snapshot_histogram_counts_maintenance_snapshots(
    etcdcore_http: HttpServer, kv: rpc_pb2_grpc.KVStub
) -> None:
    before = value(scrape(etcdcore_http), "etcd_disk_backend_snapshot_duration_seconds_count")
    reply = etcdcore_http.post("/v3/maintenance/snapshot", {})
    assert reply.status == 200
    text = scrape(etcdcore_http)
    assert value(text, "etcd_disk_backend_snapshot_duration_seconds_count") == before + 1
    assert re.findall(
        r'^etcd_disk_backend_snapshot_duration_seconds_bucket\{le="([^"]+)"\}', text, re.M
    )[:2] == ["0.01", "0.02"]


def test_grpc_handled_counts_kv_puts_as_ok(
    etcdcore_http: HttpServer, kv: rpc_pb2_grpc.KVStub
) -> None:
    series = kv_series("grpc_server_handled_total", "Put", "OK")
    before = value(scrape(etcdcore_http), series)
    put_many(kv, 4)
    text = scrape(etcdcore_http)
    assert value(text, series) == before + 4


def test_grpc_handled_counts_an_invalid_put_under_its_code(
    etcdcore_http: HttpServer, kv: rpc_pb2_grpc.KVStub
) -> None:
    series = kv_series("grpc_server_handled_total", "Put", "InvalidArgument")
    before = value(scrape(etcdcore_http), series)
    with pytest.raises(grpc.RpcError) as err:
        kv.Put(rpc_pb2.PutRequest(key=b"", value=b"v"), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert value(scrape(etcdcore_http), series) == before + 1


def test_grpc_started_and_messages_count_every_kv_call(
    etcdcore_http: HttpServer, kv: rpc_pb2_grpc.KVStub
) -> None:
    names = ("grpc_server_started_total", "grpc_server_msg_received_total")
    before = {n: value(scrape(etcdcore_http), kv_series(n, "Range")) for n in names}
    sent_before = value(scrape(etcdcore_http), kv_series("grpc_server_msg_sent_total", "Range"))
    for _ in range(3):
        kv.Range(rpc_pb2.RangeRequest(key=b"x"), timeout=5)
    with pytest.raises(grpc.RpcError):
        kv.Range(rpc_pb2.RangeRequest(key=b""), timeout=5)
    text = scrape(etcdcore_http)
    assert {n: value(text, kv_series(n, "Range")) for n in names} == {
        n: v + 4 for n, v in before.items()
    }
    # A failed call answers no message.
    assert value(text, kv_series("grpc_server_msg_sent_total", "Range")) == sent_before + 3


def test_grpc_handled_counts_a_watch_the_client_cancels_as_canceled(
    etcdcore_http: HttpServer, channel: grpc.Channel
) -> None:
    series = (
        'grpc_server_handled_total{grpc_code="Canceled",grpc_method="Watch",'
        'grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"}'
    )
    before = value(scrape(etcdcore_http), series)
    requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
    requests.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"w")))
    call = rpc_pb2_grpc.WatchStub(channel).Watch(iter(requests.get, None))
    assert next(call).created
    call.cancel()
    wait_until(lambda: value(scrape(etcdcore_http), series) == before + 1, timeout=5)


def test_grpc_series_start_at_zero_for_every_code(etcdcore_http: HttpServer) -> None:
    text = scrape(etcdcore_http)
    assert value(text, kv_series("grpc_server_handled_total", "Compact", "DataLoss")) == 0
    assert value(text, kv_series("grpc_server_started_total", "Compact")) == 0


def test_proposals_pending_returns_to_zero_and_none_failed(
    etcdcore_http: HttpServer, kv: rpc_pb2_grpc.KVStub
) -> None:
    put_many(kv, 3)
    wait_until(
        lambda: value(scrape(etcdcore_http), "etcd_server_proposals_pending") == 0, timeout=5
    )
    assert value(scrape(etcdcore_http), "etcd_server_proposals_failed_total") == 0


def test_core_families_have_etcds_help_type_and_labels(
    etcdcore_http: HttpServer, etcd_http: HttpServer, kv: rpc_pb2_grpc.KVStub
) -> None:
    put_many(kv, 1)
    ours_text = scrape(etcdcore_http)
    theirs_text = etcd_http.get("/metrics").body.decode()
    ours, theirs = help_and_type(ours_text), help_and_type(theirs_text)
    assert {n: ours.get(n) for n in CORE_FAMILIES} == CORE_FAMILIES
    assert {n: theirs.get(n) for n in CORE_FAMILIES} == CORE_FAMILIES
    for family in ("grpc_server_started_total", "grpc_server_handled_total"):
        assert label_names(ours_text, family) == label_names(theirs_text, family)


def test_grpc_series_are_etcds(etcdcore_http: HttpServer, etcd_http: HttpServer) -> None:
    """The same methods, types and codes pre-initialised as etcd's."""

    def series(text: str) -> set[str]:
        return {
            line.rsplit(" ", 1)[0]
            for line in text.splitlines()
            if line.startswith("grpc_server_handled_total{")
            and "grpc.health.v1.Health" not in line  # etcdcore serves no gRPC health
            and "v3lockpb" not in line
            and "v3electionpb" not in line
        }

    ours = series(scrape(etcdcore_http))
    theirs = series(etcd_http.get("/metrics").body.decode())
    assert ours == theirs


@pytest.fixture(scope="module")
def metered_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Cluster, list[str]]]:
    """Three members, each with its own metrics listener."""
    c = Cluster.create(Path(tmp_path_factory.mktemp("cluster")), 3)
    urls = []
    for i, m in enumerate(c.members):
        url = f"http://{member_host(i)}:{free_port()}"
        m.extra.append(f"--listen-metrics-urls={url}")
        urls.append(url)
    c.start()
    try:
        yield c, urls
    finally:
        c.stop()


def peer_counters(url: str, family: str, label: str) -> dict[str, float]:
    """label value (a member id in hex) -> value, of one peer family."""
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    found = re.findall(rf'^{family}\{{{label}="(\w+)"\}} (\S+)$', text, re.M)
    return {peer: float(v) for peer, v in found}


def test_leader_counts_bytes_sent_to_and_received_from_each_follower(
    metered_cluster: tuple[Cluster, list[str]],
) -> None:
    c, urls = metered_cluster
    ids = member_ids(c)
    leader = c.leader()
    url = urls[c.members.index(leader)]
    followers = sorted(ids[m.name] for m in c.members if m is not leader)
    for family, label in (
        ("etcd_network_peer_sent_bytes_total", "To"),
        ("etcd_network_peer_received_bytes_total", "From"),
    ):
        found = peer_counters(url, family, label)
        assert sorted(found) == followers, (family, found)
        assert all(v > 0 for v in found.values()), (family, found)


def test_follower_counts_bytes_exchanged_with_the_leader(
    metered_cluster: tuple[Cluster, list[str]],
) -> None:
    c, urls = metered_cluster
    ids = member_ids(c)
    leader = c.leader()
    follower = next(m for m in c.members if m is not leader)
    url = urls[c.members.index(follower)]
    sent = peer_counters(url, "etcd_network_peer_sent_bytes_total", "To")
    received = peer_counters(url, "etcd_network_peer_received_bytes_total", "From")
    assert sent.get(ids[leader.name], 0) > 0, sent
    assert received.get(ids[leader.name], 0) > 0, received
    assert ids[follower.name] not in sent | received


def member_ids(c: Cluster) -> dict[str, str]:
    """name -> member id in hex, as etcd writes it in the To/From labels."""
    ids = {}
    for m in c.members:
        st = status(m, timeout=5)
        assert st is not None
        ids[m.name] = f"{st.header.member_id:x}"
    return ids


def test_a_proposal_that_times_out_without_quorum_counts_as_failed(
    metered_cluster: tuple[Cluster, list[str]],
) -> None:
    """Stops two members: this test must stay the last to use the cluster."""
    c, urls = metered_cluster
    survivor, url = c.members[0], urls[0]

    def counter(name: str) -> float:
        text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
        return value(text, name)

    before = counter("etcd_server_proposals_failed_total")
    for m in c.members[1:]:
        m.stop()
    with grpc.insecure_channel(survivor.endpoint) as ch, pytest.raises(grpc.RpcError):
        rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"lost", value=b"v"), timeout=15)
    assert counter("etcd_server_proposals_failed_total") == before + 1
    # The gauge is set once per turn of the raft loop, after the answer.
    wait_until(lambda: counter("etcd_server_proposals_pending") == 0, timeout=5)
