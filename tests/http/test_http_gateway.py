"""The /v3 JSON gateway of etcdcore, as curl users drive it."""

from __future__ import annotations

import json

import pytest
from conftest import HttpServer, b64, prefix, unb64

pytestmark = pytest.mark.timeout(30)


def test_put_then_range_returns_the_value(etcdcore_http: HttpServer) -> None:
    key = prefix() + "k"
    put = etcdcore_http.call("/v3/kv/put", {"key": b64(key), "value": b64("v1")})
    got = etcdcore_http.call("/v3/kv/range", {"key": b64(key)})
    assert int(got["count"]) == 1
    kv = got["kvs"][0]
    assert unb64(kv["key"]) == key.encode() and unb64(kv["value"]) == b"v1"
    assert kv["create_revision"] == kv["mod_revision"] == put["header"]["revision"]
    assert kv["version"] == "1"  # 64-bit integers are strings


def test_deleterange_removes_the_prefix(etcdcore_http: HttpServer) -> None:
    p = prefix()
    for name in ("a", "b"):
        etcdcore_http.call("/v3/kv/put", {"key": b64(p + name), "value": b64(name)})
    end = p[:-1] + chr(ord(p[-1]) + 1)
    deleted = etcdcore_http.call(
        "/v3/kv/deleterange", {"key": b64(p), "range_end": b64(end), "prev_kv": True}
    )
    assert deleted["deleted"] == "2"
    assert sorted(unb64(kv["value"]) for kv in deleted["prev_kvs"]) == [b"a", b"b"]
    assert "kvs" not in etcdcore_http.call("/v3/kv/range", {"key": b64(p), "range_end": b64(end)})


def test_txn_takes_the_success_branch(etcdcore_http: HttpServer) -> None:
    key = prefix() + "k"
    etcdcore_http.call("/v3/kv/put", {"key": b64(key), "value": b64("old")})
    txn = etcdcore_http.call(
        "/v3/kv/txn",
        {
            "compare": [
                {"key": b64(key), "result": "EQUAL", "target": "VALUE", "value": b64("old")}
            ],
            "success": [{"request_put": {"key": b64(key), "value": b64("new")}}],
            "failure": [{"request_range": {"key": b64(key)}}],
        },
    )
    assert txn["succeeded"] is True
    assert "response_put" in txn["responses"][0]
    got = etcdcore_http.call("/v3/kv/range", {"key": b64(key)})
    assert unb64(got["kvs"][0]["value"]) == b"new"


def test_lease_grant_attach_timetolive_revoke(etcdcore_http: HttpServer) -> None:
    key = prefix() + "k"
    lease = etcdcore_http.call("/v3/lease/grant", {"TTL": 60})
    assert lease["TTL"] == "60"
    etcdcore_http.call("/v3/kv/put", {"key": b64(key), "value": b64("v"), "lease": lease["ID"]})
    ttl = etcdcore_http.call("/v3/lease/timetolive", {"ID": lease["ID"], "keys": True})
    assert ttl["grantedTTL"] == "60"
    assert [unb64(k) for k in ttl["keys"]] == [key.encode()]
    assert lease["ID"] in [x["ID"] for x in etcdcore_http.call("/v3/lease/leases", {})["leases"]]
    etcdcore_http.call("/v3/lease/revoke", {"ID": lease["ID"]})
    assert "kvs" not in etcdcore_http.call("/v3/kv/range", {"key": b64(key)})


def test_watch_streams_a_put_event(etcdcore_http: HttpServer) -> None:
    key = prefix() + "w"
    with etcdcore_http.stream("/v3/watch", {"create_request": {"key": b64(key)}}) as resp:
        assert resp.status == 200
        created = json.loads(resp.readline())
        assert created["result"]["created"] is True
        etcdcore_http.call("/v3/kv/put", {"key": b64(key), "value": b64("hello")})
        event = json.loads(resp.readline())["result"]["events"][0]
    assert "type" not in event  # PUT is the enum's zero value: omitted
    assert unb64(event["kv"]["value"]) == b"hello"


def test_grpc_error_maps_to_http_status_and_json(etcdcore_http: HttpServer) -> None:
    reply = etcdcore_http.post("/v3/kv/range", {"key": ""})
    assert reply.status == 400
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.json() == {
        "error": "etcdserver: key is not provided",
        "code": 3,
        "message": "etcdserver: key is not provided",
    }


def test_unknown_lease_is_404(etcdcore_http: HttpServer) -> None:
    reply = etcdcore_http.post("/v3/lease/revoke", {"ID": "12345"})
    assert reply.status == 404
    assert reply.json()["message"] == "etcdserver: requested lease not found"


def test_member_list_and_status(etcdcore_http: HttpServer) -> None:
    members = etcdcore_http.call("/v3/cluster/member/list", {})["members"]
    assert len(members) == 1 and members[0]["name"] == "default"
    status = etcdcore_http.call("/v3/maintenance/status", {})
    assert status["version"] == "3.5.1" and status["leader"] == status["header"]["member_id"]


def test_compaction_of_a_future_revision_is_400(etcdcore_http: HttpServer) -> None:
    reply = etcdcore_http.post("/v3/kv/compaction", {"revision": "1000000"})
    assert reply.status == 400
    assert reply.json()["code"] == 11


def test_v3beta_prefix_is_an_alias(etcdcore_http: HttpServer) -> None:
    key = prefix() + "k"
    etcdcore_http.call("/v3beta/kv/put", {"key": b64(key), "value": b64("v")})
    assert etcdcore_http.call("/v3/kv/range", {"key": b64(key)})["count"] == "1"
