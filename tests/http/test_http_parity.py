"""The same HTTP requests to etcdcore's gateway and to real etcd 3.5's: the
answers (status, JSON) must be the same once ids and revisions, which differ
between two clusters, are blanked."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from conftest import HttpServer, b64, prefix

pytestmark = pytest.mark.timeout(30)

#: Fields whose values differ between two clusters (their presence must not).
_VARYING = {
    "cluster_id",
    "member_id",
    "revision",
    "raft_term",
    "create_revision",
    "mod_revision",
    "compact_revision",
    "leader",
    "raftIndex",
    "raftTerm",
    "raftAppliedIndex",
    "dbSize",
    "dbSizeInUse",
    "ID",
    "watch_id",
}


def normalize(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "<n>" if k in _VARYING else normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


Step = tuple[int, Any]


def _post(server: HttpServer, path: str, payload: Any) -> Step:
    reply = server.post(path, payload)
    try:
        body: Any = reply.json()
    except ValueError:
        body = reply.body.decode()
    return reply.status, normalize(body)


def put_and_range(s: HttpServer, p: str) -> list[Step]:
    k = b64(p + "k")
    return [
        _post(s, "/v3/kv/put", {"key": k, "value": b64("v1")}),
        _post(s, "/v3/kv/put", {"key": k, "value": b64("v2"), "prev_kv": True}),
        _post(s, "/v3/kv/range", {"key": k}),
        _post(s, "/v3/kv/range", {"key": b64(p + "missing")}),
    ]


def range_options(s: HttpServer, p: str) -> list[Step]:
    for name in ("a", "b", "c"):
        s.post("/v3/kv/put", {"key": b64(p + name), "value": b64(name * 3)})
    ivl = {"key": b64(p), "range_end": b64(p[:-1] + "0")}
    return [
        _post(s, "/v3/kv/range", {**ivl, "limit": 2}),
        _post(s, "/v3/kv/range", {**ivl, "keys_only": True}),
        _post(s, "/v3/kv/range", {**ivl, "count_only": True}),
        _post(s, "/v3/kv/range", {**ivl, "sort_order": "DESCEND", "sort_target": "KEY"}),
        _post(s, "/v3/kv/range", {**ivl, "min_mod_revision": "1", "limit": "1"}),
    ]


def delete_range(s: HttpServer, p: str) -> list[Step]:
    s.post("/v3/kv/put", {"key": b64(p + "a"), "value": b64("x")})
    return [
        _post(s, "/v3/kv/deleterange", {"key": b64(p + "a"), "prev_kv": True}),
        _post(s, "/v3/kv/deleterange", {"key": b64(p + "a")}),
    ]


def txn(s: HttpServer, p: str) -> list[Step]:
    k = b64(p + "k")
    s.post("/v3/kv/put", {"key": k, "value": b64("1")})
    body = {
        "compare": [{"key": k, "target": "VERSION", "result": "EQUAL", "version": "1"}],
        "success": [
            {"request_put": {"key": k, "value": b64("2")}},
            {"request_range": {"key": k}},
        ],
        "failure": [{"request_delete_range": {"key": k}}],
    }
    return [_post(s, "/v3/kv/txn", body), _post(s, "/v3/kv/txn", body)]


def errors(s: HttpServer, p: str) -> list[Step]:
    k = b64(p + "k")
    too_many = [{"request_put": {"key": b64(f"{p}{i}"), "value": k}} for i in range(129)]
    return [
        _post(s, "/v3/kv/range", {"key": ""}),
        _post(s, "/v3/kv/put", {"key": k, "value": k, "lease": "999"}),
        _post(s, "/v3/lease/revoke", {"ID": "999"}),
        _post(s, "/v3/kv/compaction", {"revision": "100000000"}),
        _post(s, "/v3/kv/txn", {"success": too_many}),
        _post(s, "/v3/kv/range", b'{"key":'),
        _post(s, "/v3/kv/range", b"xyz"),
        _post(s, "/v3/nope", {}),
        (s.get("/v3/kv/range").status, s.get("/v3/kv/range").body.decode()),
    ]


def lease(s: HttpServer, p: str) -> list[Step]:
    lease_id = str(random.randrange(1 << 40, 1 << 50))
    k = b64(p + "k")
    steps = [_post(s, "/v3/lease/grant", {"ID": lease_id, "TTL": 100})]
    s.post("/v3/kv/put", {"key": k, "value": k, "lease": lease_id})
    reply = s.post("/v3/lease/timetolive", {"ID": lease_id, "keys": True}).json()
    assert 90 <= int(reply.pop("TTL")) <= 100
    steps.append((200, normalize(reply)))
    steps.append(_post(s, "/v3/lease/grant", {"ID": lease_id, "TTL": 100}))
    steps.append(_post(s, "/v3/lease/revoke", {"ID": lease_id}))
    steps.append(_post(s, "/v3/lease/timetolive", {"ID": lease_id}))
    steps.append(_post(s, "/v3/lease/keepalive", {"ID": lease_id}))
    return steps


def watch(s: HttpServer, p: str) -> list[Step]:
    k = b64(p + "w")
    lines = []
    with s.stream("/v3/watch", {"create_request": {"key": k, "prev_kv": True}}) as resp:
        lines.append(json.loads(resp.readline()))
        s.post("/v3/kv/put", {"key": k, "value": b64("a")})
        s.post("/v3/kv/put", {"key": k, "value": b64("b")})
        s.post("/v3/kv/deleterange", {"key": k})
        for _ in range(3):
            lines.append(json.loads(resp.readline()))
    return [(200, normalize(line)) for line in lines]


def health_and_version(s: HttpServer, p: str) -> list[Step]:
    health, version = s.get("/health"), s.get("/version")
    return [
        (health.status, health.json(), health.headers["Content-Type"]),
        (version.status, version.json(), version.headers["Content-Type"]),
        (s.request("POST", "/health").status, None),
    ]  # type: ignore[list-item]


def shapes(s: HttpServer, p: str) -> list[Step]:
    """Responses whose values are the server's own: compare the fields present."""
    status = s.call("/v3/maintenance/status", {})
    members = s.call("/v3/cluster/member/list", {})
    return [
        (200, sorted(status)),
        (200, sorted(members)),
        (200, sorted(members["members"][0])),
    ]


SCENARIOS: list[Callable[[HttpServer, str], list[Step]]] = [
    put_and_range,
    range_options,
    delete_range,
    txn,
    errors,
    lease,
    watch,
    health_and_version,
    shapes,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_same_answers_as_etcd(
    scenario: Callable[[HttpServer, str], list[Step]],
    etcdcore_http: HttpServer,
    etcd_http: HttpServer,
) -> None:
    p = prefix()
    assert scenario(etcdcore_http, p) == scenario(etcd_http, p)
