"""``/metrics``: etcd's metric names, in a per-server Prometheus registry.

Every value is read at scrape time from the core: ``Core.status()`` for the
raft and MVCC numbers, ``Core.metrics()`` for the counters and histograms
the core keeps in atomics (proposals, WAL fsync, backend commit and
snapshot, peer traffic, and go-grpc-prometheus's gRPC counters for every
service, KV included). Nothing is counted here but the health checks.
Process and Python runtime metrics come from prometheus-client's default
collectors.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString

from etcdcore import ETCD_VERSION
from etcdcore._core import Core, CoreError

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: grpc-go's codes.Code.String(), by value.
GRPC_CODES = (
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
)

_UNSUFFIXED_COUNTERS = (b"etcd_server_health_success", b"etcd_server_health_failures")

#: etcd's AlarmType names, by value.
ALARMS = {0: "NONE", 1: "NOSPACE", 2: "CORRUPT"}


class ServerMetrics:
    """The metrics of one member; :meth:`render` is the ``/metrics`` body."""

    def __init__(self, core: Core, quota_bytes: int) -> None:
        self.core = core
        self.quota_bytes = quota_bytes
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(self)
        self.health_success = 0
        self.health_failures = 0
        #: (type, name) -> 1.0 ok / 0.0 failed, and (type, name, status) -> count.
        self.healthcheck: dict[tuple[str, str], float] = {}
        self.healthchecks: dict[tuple[str, str, str], int] = {}
        #: The watch service's count of open watchers, once it is running.
        self.watcher_count: Callable[[], int] | None = None

    # -- health check counters (etcdhttp's) ----------------------------------------
    def health_result(self, ok: bool) -> None:
        if ok:
            self.health_success += 1
        else:
            self.health_failures += 1

    def check_result(self, check_type: str, name: str, ok: bool) -> None:
        self.healthcheck[(check_type, name)] = 1.0 if ok else 0.0
        key = (check_type, name, "success" if ok else "error")
        self.healthchecks[key] = self.healthchecks.get(key, 0) + 1

    # -- the collector -------------------------------------------------------------
    def render(self) -> bytes:
        text = generate_latest(self.registry)
        # etcd's counters named without _total: prometheus-client can only
        # write them untyped; give them etcd's TYPE line back.
        for name in _UNSUFFIXED_COUNTERS:
            text = text.replace(b"# TYPE %s unknown\n" % name, b"# TYPE %s counter\n" % name)
            text = text.replace(b"# TYPE %s untyped\n" % name, b"# TYPE %s counter\n" % name)
        return text

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield from self._core_metrics()
        yield from self._health_metrics()
        yield from _counted_metrics(self.core.metrics())
        yield from _fd_metrics()

    def _core_metrics(self) -> Iterator[Metric]:
        try:
            s = self.core.status()
        except CoreError:
            return
        leader = int(s["leader"])
        member_id = int(s["member_id"])

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        yield gauge(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            1 if leader else 0,
        )
        yield gauge(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            1 if leader and leader == member_id else 0,
        )
        yield gauge(
            "etcd_server_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            1 if s["is_learner"] else 0,
        )
        yield CounterMetricFamily(
            "etcd_server_leader_changes_seen_total",
            "The number of leader changes seen.",
            value=int(s["leader_changes"]),
        )
        # Gauges in etcd despite the _total names.
        yield gauge(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            int(s["raft_index"]),
        )
        yield gauge(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            int(s["raft_applied_index"]),
        )
        yield gauge(
            "etcd_server_quota_backend_bytes",
            "Current backend storage quota size in bytes.",
            self.quota_bytes,
        )
        for name, doc, label, value in (
            (
                "etcd_server_version",
                "Which version is running. 1 for 'server_version' label with current version.",
                "server_version",
                ETCD_VERSION,
            ),
            (
                "etcd_server_id",
                "Server or member ID in hexadecimal format. 1 for 'server_id' label with "
                "current ID.",
                "server_id",
                f"{member_id:x}",
            ),
            (
                "etcd_cluster_version",
                "Which version is running. 1 for 'cluster_version' label with current "
                "cluster version",
                "cluster_version",
                ".".join(ETCD_VERSION.split(".")[:2]),
            ),
        ):
            g = GaugeMetricFamily(name, doc, labels=[label])
            g.add_metric([value], 1)
            yield g
        db_size = int(s["db_size"])
        yield gauge(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            db_size,
        )
        yield gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            int(s["db_size_in_use"]),
        )
        yield gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.", int(s["keys"]))
        if self.watcher_count is not None:
            yield gauge(
                "etcd_debugging_mvcc_watcher_total",
                "Total number of watchers.",
                self.watcher_count(),
            )
        yield gauge(
            "etcd_debugging_mvcc_current_revision",
            "The current revision of store.",
            int(s["revision"]),
        )
        yield gauge(
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction in store.",
            int(s["compact_revision"]),
        )

    def _health_metrics(self) -> Iterator[Metric]:
        # Counters in etcd, named without _total: collected untyped so the name
        # stays etcd's (prometheus-client would append _total); see render().
        for name, doc, value in (
            (
                "etcd_server_health_success",
                "The total number of successful health checks",
                self.health_success,
            ),
            (
                "etcd_server_health_failures",
                "The total number of failed health checks",
                self.health_failures,
            ),
        ):
            m = Metric(name, doc, "unknown")
            m.add_sample(name, {}, value)
            yield m
        if self.healthcheck:
            g = GaugeMetricFamily(
                "etcd_server_healthcheck",
                "The result of each kind of healthcheck.",
                labels=["type", "name"],
            )
            for (t, n), v in sorted(self.healthcheck.items()):
                g.add_metric([t, n], v)
            yield g
            c = CounterMetricFamily(
                "etcd_server_healthchecks_total",
                "The total number of each kind of healthcheck.",
                labels=["type", "name", "status"],
            )
            for (t, n, st), v in sorted(self.healthchecks.items()):
                c.add_metric([t, n, st], v)
            yield c


#: (Core.metrics() key, family name, help) of the core's histograms.
_HISTOGRAMS = (
    (
        "wal_fsync",
        "etcd_disk_wal_fsync_duration_seconds",
        "The latency distributions of fsync called by WAL.",
    ),
    (
        "backend_commit",
        "etcd_disk_backend_commit_duration_seconds",
        "The latency distributions of commit called by backend.",
    ),
    (
        "backend_snapshot",
        "etcd_disk_backend_snapshot_duration_seconds",
        "The latency distribution of backend snapshots.",
    ),
)

#: (index in a Core.metrics() peer row, family name, help, label) of the
#: peer counters; etcd writes a family only once it has a series.
_PEER_COUNTERS = (
    (1, "etcd_network_peer_sent_bytes_total", "The total number of bytes sent to peers.", "To"),
    (
        2,
        "etcd_network_peer_received_bytes_total",
        "The total number of bytes received from peers.",
        "From",
    ),
    (
        3,
        "etcd_network_peer_sent_failures_total",
        "The total number of send failures from peers.",
        "To",
    ),
)


def _counted_metrics(m: dict[str, Any]) -> Iterator[Metric]:
    """The families of what the core counts (see ``Core.metrics``)."""
    yield GaugeMetricFamily(
        "etcd_server_proposals_pending",
        "The current number of pending proposals to commit.",
        value=m["proposals_pending"],
    )
    yield CounterMetricFamily(
        "etcd_server_proposals_failed_total",
        "The total number of failed proposals seen.",
        value=m["proposals_failed"],
    )
    for key, name, doc in _HISTOGRAMS:
        buckets, total, count = m[key]
        yield HistogramMetricFamily(
            name,
            doc,
            buckets=[(floatToGoString(le), n) for le, n in buckets] + [("+Inf", count)],
            sum_value=total,
        )
    for index, name, doc, label in _PEER_COUNTERS:
        family = CounterMetricFamily(name, doc, labels=[label])
        for row in m["peers"]:
            if row[index]:
                family.add_metric([f"{row[0]:x}"], row[index])
        if family.samples:
            yield family
    yield from _grpc_metrics(m["grpc"])


def _grpc_metrics(
    rows: list[tuple[tuple[str, str, str, bool], tuple[Any, ...]]],
) -> Iterator[Metric]:
    """go-grpc-prometheus's server counters. Labels in Go's (sorted) order."""
    method_labels = ["grpc_method", "grpc_service", "grpc_type"]
    started = CounterMetricFamily(
        "grpc_server_started_total",
        "Total number of RPCs started on the server.",
        labels=method_labels,
    )
    handled = CounterMetricFamily(
        "grpc_server_handled_total",
        "Total number of RPCs completed on the server, regardless of success or failure.",
        labels=["grpc_code", *method_labels],
    )
    received = CounterMetricFamily(
        "grpc_server_msg_received_total",
        "Total number of RPC stream messages received on the server.",
        labels=method_labels,
    )
    sent = CounterMetricFamily(
        "grpc_server_msg_sent_total",
        "Total number of gRPC stream messages sent by the server.",
        labels=method_labels,
    )
    for (kind, service, method, preinitialized), counts in sorted(
        rows, key=lambda r: (r[0][2], r[0][1], r[0][0])
    ):
        n_started, n_received, n_sent, by_code = counts
        labels = [method, service, kind]
        started.add_metric(labels, n_started)
        received.add_metric(labels, n_received)
        sent.add_metric(labels, n_sent)
        for code, n in enumerate(by_code):
            # A method etcd does not pre-initialise gets a code's series
            # once a call ends with it, as with any Prometheus vector.
            if preinitialized or n:
                handled.add_metric([GRPC_CODES[code], *labels], n)
    yield started
    yield handled
    yield received
    yield sent


def _fd_metrics() -> Iterator[Metric]:
    """etcd's os_fd_used / os_fd_limit (Linux)."""
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        return
    yield GaugeMetricFamily("os_fd_used", "The number of used file descriptors.", value=used)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield GaugeMetricFamily("os_fd_limit", "The file descriptor limit.", value=soft)
