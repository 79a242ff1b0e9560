"""``/metrics``: etcd's metric names, in a per-server Prometheus registry.

Values the core keeps are read at scrape time from ``Core.status()`` (no
copies to keep in sync); the gRPC counters are kept here, counted around the
bridge's handlers, so they cover only the calls the bridge sees (every
service but KV, which the core answers alone). Process and Python runtime
metrics come from prometheus-client's default collectors.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from google.protobuf import descriptor_pool
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from etcdcore import ETCD_VERSION
from etcdcore._core import Core, CoreError
from etcdcore.bridge import Bridge, Stream, error_of

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
_CANCELLED = 1

_UNSUFFIXED_COUNTERS = (b"etcd_server_health_success", b"etcd_server_health_failures")

#: etcd's AlarmType names, by value.
ALARMS = {0: "NONE", 1: "NOSPACE", 2: "CORRUPT"}


def grpc_type(method: str, streaming: bool) -> tuple[str, str, str]:
    """(grpc_type, grpc_service, grpc_method) labels of a full method path,
    as go-grpc-prometheus names them."""
    service, _, name = method.lstrip("/").rpartition("/")
    try:
        m = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(name)
    except KeyError:
        return ("bidi_stream" if streaming else "unary"), service, name
    if m.client_streaming and m.server_streaming:
        kind = "bidi_stream"
    elif m.client_streaming:
        kind = "client_stream"
    elif m.server_streaming:
        kind = "server_stream"
    else:
        kind = "unary"
    return kind, service, name


class _CountedStream:
    """A bridge stream that remembers the status its handler ended it with."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self.code: int | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def end(self, code: int = 0, message: str = "") -> None:
        if self.code is None and not self._stream.closed:
            self.code = code
        self._stream.end(code, message)


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
        #: (grpc_type, service, method) -> started; (..., code name) -> handled.
        self.grpc_started: dict[tuple[str, str, str], int] = {}
        self.grpc_handled: dict[tuple[str, str, str, str], int] = {}

    # -- gRPC counters around the bridge -------------------------------------------
    def instrument(self, bridge: Bridge) -> None:
        """Count every call of the methods registered on ``bridge`` so far
        (call after the services registered). Series start at zero for every
        method and code, as go-grpc-prometheus pre-registers them."""
        for method, handler in list(bridge._unary.items()):
            bridge.unary(method, self._count_unary(grpc_type(method, False), handler))
        for method, stream_handler in list(bridge._streaming.items()):
            bridge.streaming(method, self._count_stream(grpc_type(method, True), stream_handler))

    def _init_series(self, labels: tuple[str, str, str]) -> None:
        self.grpc_started.setdefault(labels, 0)
        for code in GRPC_CODES:
            self.grpc_handled.setdefault((*labels, code), 0)

    def _handled(self, labels: tuple[str, str, str], code: int) -> None:
        key = (*labels, GRPC_CODES[code] if 0 <= code < len(GRPC_CODES) else f"Code({code})")
        self.grpc_handled[key] = self.grpc_handled.get(key, 0) + 1

    def _count_unary(
        self, labels: tuple[str, str, str], handler: Callable[[bytes], Awaitable[bytes]]
    ) -> Callable[[bytes], Awaitable[bytes]]:
        self._init_series(labels)

        async def counted(request: bytes) -> bytes:
            self.grpc_started[labels] += 1
            try:
                reply = await handler(request)
            except Exception as exc:
                self._handled(labels, error_of(exc)[0])
                raise
            self._handled(labels, 0)
            return reply

        return counted

    def _count_stream(
        self, labels: tuple[str, str, str], handler: Callable[[Stream], Awaitable[None]]
    ) -> Callable[[Stream], Awaitable[None]]:
        self._init_series(labels)

        async def counted(stream: Stream) -> None:
            self.grpc_started[labels] += 1
            counted_stream = _CountedStream(stream)
            try:
                await handler(counted_stream)  # type: ignore[arg-type]
            except Exception as exc:
                self._handled(labels, error_of(exc)[0])
                raise
            if counted_stream.code is not None:
                self._handled(labels, counted_stream.code)
            else:
                self._handled(labels, _CANCELLED if stream.closed else 0)

        return counted

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
        yield from self._grpc_metrics()
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

    def _grpc_metrics(self) -> Iterator[Metric]:
        if not self.grpc_started:
            return
        started = CounterMetricFamily(
            "grpc_server_started_total",
            "Total number of RPCs started on the server.",
            labels=["grpc_method", "grpc_service", "grpc_type"],
        )
        for (kind, service, method), v in sorted(self.grpc_started.items()):
            started.add_metric([method, service, kind], v)
        yield started
        handled = CounterMetricFamily(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            labels=["grpc_code", "grpc_method", "grpc_service", "grpc_type"],
        )
        for (kind, service, method, code), v in sorted(self.grpc_handled.items()):
            handled.add_metric([code, method, service, kind], v)
        yield handled


def _fd_metrics() -> Iterator[Metric]:
    """etcd's os_fd_used / os_fd_limit (Linux)."""
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        return
    yield GaugeMetricFamily("os_fd_used", "The number of used file descriptors.", value=used)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield GaugeMetricFamily("os_fd_limit", "The file descriptor limit.", value=soft)
