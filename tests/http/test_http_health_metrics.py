"""/health, /livez, /readyz, /version and /metrics on etcdcore's HTTP listeners."""

from __future__ import annotations

import re

import pytest
from conftest import HttpServer, b64, prefix

pytestmark = pytest.mark.timeout(30)

#: Metric families dashboards and alerts use, and etcdcore has a number for.
DASHBOARD_METRICS = [
    "etcd_server_has_leader",
    "etcd_server_is_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_debugging_mvcc_keys_total",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "process_resident_memory_bytes",
    "process_open_fds",
]

#: etcdcore families real etcd 3.5.1 does not have: 3.5's later health metrics
#: and Python's runtime collectors (etcd has go_* instead).
LATER_OR_PYTHON = re.compile(r"^(etcd_server_healthchecks?(_total)?|python_\w+)$")


def families(text: str) -> dict[str, str]:
    """name -> type, from the # TYPE lines."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def sample(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def test_health_is_true(etcdcore_http: HttpServer) -> None:
    reply = etcdcore_http.get("/health")
    assert (reply.status, reply.json()) == (200, {"health": "true", "reason": ""})


def test_health_on_the_metrics_listener(etcdcore_http: HttpServer) -> None:
    reply = etcdcore_http.get("/health?serializable=true", base=etcdcore_http.metrics_base)
    assert (reply.status, reply.json()) == (200, {"health": "true", "reason": ""})


def test_version(etcdcore_http: HttpServer) -> None:
    reply = etcdcore_http.get("/version")
    assert reply.json() == {"etcdserver": "3.5.1", "etcdcluster": "3.5.0"}
    assert reply.headers["Content-Type"] == "application/json"


def test_livez_and_readyz(etcdcore_http: HttpServer) -> None:
    assert etcdcore_http.get("/livez").body == b"ok\n"
    verbose = etcdcore_http.get("/readyz?verbose", base=etcdcore_http.metrics_base)
    assert verbose.status == 200
    assert verbose.body.decode().splitlines() == [
        "[+]data_corruption ok",
        "[+]serializable_read ok",
        "[+]linearizable_read ok",
        "[+]non_learner ok",
        "ok",
    ]
    assert etcdcore_http.get("/readyz/non_learner").body == b"ok\n"


def test_metrics_names_and_leader(etcdcore_http: HttpServer) -> None:
    etcdcore_http.call("/v3/kv/put", {"key": b64(prefix() + "m"), "value": b64("v")})
    etcdcore_http.call("/v3/lease/leases", {})
    reply = etcdcore_http.get("/metrics", base=etcdcore_http.metrics_base)
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
    text = reply.body.decode()
    assert set(DASHBOARD_METRICS) <= set(families(text))
    assert sample(text, "etcd_server_has_leader") == 1
    assert sample(text, "etcd_server_is_leader") == 1
    assert sample(text, "etcd_debugging_mvcc_keys_total") >= 1
    assert re.search(
        r'^grpc_server_handled_total\{grpc_code="OK",grpc_method="LeaseLeases",'
        r'grpc_service="etcdserverpb.Lease",grpc_type="unary"\} [1-9]',
        text,
        re.M,
    )


def test_metric_names_and_types_are_etcds(etcdcore_http: HttpServer, etcd_http: HttpServer) -> None:
    ours = families(etcdcore_http.get("/metrics").body.decode())
    theirs = families(etcd_http.get("/metrics").body.decode())
    extra = {n: t for n, t in ours.items() if n not in theirs and not LATER_OR_PYTHON.match(n)}
    assert extra == {}
    assert {n: t for n, t in ours.items() if n in theirs} == {
        n: theirs[n] for n in ours if n in theirs
    }


def test_alarm_makes_health_false_like_etcd(
    etcdcore_http: HttpServer, etcd_http: HttpServer
) -> None:
    answers = []
    for server in (etcdcore_http, etcd_http):
        member = server.call("/v3/maintenance/status", {})["header"]["member_id"]
        alarm = {"memberID": member, "alarm": "NOSPACE"}
        server.call("/v3/maintenance/alarm", {**alarm, "action": "ACTIVATE"})
        try:
            bad, excluded = server.get("/health"), server.get("/health?exclude=NOSPACE")
        finally:
            server.call("/v3/maintenance/alarm", {**alarm, "action": "DEACTIVATE"})
        answers.append((bad.status, bad.body, excluded.status, excluded.body))
    assert answers[0] == answers[1]
    assert answers[0][:2] == (503, b'{"health":"false","reason":"ALARM NOSPACE"}\n')
