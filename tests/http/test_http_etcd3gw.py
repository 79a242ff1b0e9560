"""OpenStack's etcd3gw, an existing client of etcd's JSON gateway, against etcdcore."""

from __future__ import annotations

import queue
import threading
from urllib.parse import urlsplit

import pytest
from conftest import HttpServer, prefix

etcd3gw = pytest.importorskip("etcd3gw")

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def client(etcdcore_http: HttpServer):  # noqa: ANN201
    url = urlsplit(etcdcore_http.base)
    c = etcd3gw.Etcd3Client(host=url.hostname, port=url.port, timeout=10)
    yield c
    c.session.close()


def test_put_get_delete(client) -> None:  # noqa: ANN001
    key = prefix() + "k"
    assert client.put(key, "value") is True
    assert client.get(key) == [b"value"]
    assert client.delete(key) is True
    assert client.get(key) == []


def test_lease_holds_and_revokes_a_key(client) -> None:  # noqa: ANN001
    key = prefix() + "k"
    lease = client.lease(ttl=60)
    client.put(key, "v", lease=lease)
    assert 0 < lease.ttl() <= 60
    assert lease.keys() == [key.encode()]
    assert lease.refresh() == 60
    assert lease.revoke() is True
    assert client.get(key) == []


def test_watch_gets_an_event(client) -> None:  # noqa: ANN001
    key = prefix() + "w"
    events, cancel = client.watch(key)
    got: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: got.put(next(events)), daemon=True).start()
    try:
        # The watch is created asynchronously: put until the event shows up.
        for i in range(50):
            client.put(key, f"v{i}")
            try:
                event = got.get(timeout=0.2)
                break
            except queue.Empty:
                continue
        else:
            pytest.fail("no watch event")
    finally:
        cancel()
    assert event["kv"]["key"] == key.encode()
    assert event["kv"]["value"].startswith(b"v")


def test_status_and_members(client) -> None:  # noqa: ANN001
    assert client.status()["version"] == "3.5.1"
    assert [m["name"] for m in client.members()] == ["default"]
