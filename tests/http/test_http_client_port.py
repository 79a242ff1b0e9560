"""etcd's HTTP endpoints on the gRPC client URL, as etcd 3.5 serves them
without --listen-client-http-urls: the /v3 JSON gateway, /health, /version and
/metrics answer curl-like clients on the same port real etcdctl uses, over
plaintext and TLS; with --listen-client-http-urls the client URL is gRPC's
alone."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import TIMEOUT, HttpServer, Reply, b64, prefix, unb64

from certs import CertificateAuthority
from harness import Member, etcd_bin, free_port

pytestmark = pytest.mark.timeout(60)

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="no curl binary")


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", str(TIMEOUT), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT + 5,
    )


@pytest.fixture(scope="module")
def member(shared_member: Member) -> Member:
    """etcdcore with only --listen-client-urls (plaintext)."""
    return shared_member


@pytest.fixture(scope="module")
def client_port(member: Member) -> HttpServer:
    return HttpServer(f"http://{member.endpoint}")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def tls_member(
    tmp_path_factory: pytest.TempPathFactory, ca: CertificateAuthority
) -> Iterator[Member]:
    """etcdcore serving its client URL over TLS with a certificate of ``ca``."""
    server = ca.issue("server")
    m = Member(
        data_dir=tmp_path_factory.mktemp("client-port-tls") / "default.etcd",
        client_scheme="https",
        credentials=grpc.ssl_channel_credentials(ca.cert.read_bytes()),
        extra=[f"--cert-file={server.cert}", f"--key-file={server.key}"],
    ).start()
    try:
        yield m
    finally:
        m.stop()


# -- plaintext ---------------------------------------------------------------------


def test_put_then_range_over_http_on_the_client_port(client_port: HttpServer) -> None:
    key = prefix() + "k"
    put = client_port.call("/v3/kv/put", {"key": b64(key), "value": b64("v")})
    assert int(put["header"]["revision"]) > 1
    got = client_port.call("/v3/kv/range", {"key": b64(key)})
    assert [unb64(kv["value"]) for kv in got["kvs"]] == [b"v"]


@needs_curl
def test_curl_puts_a_key_on_the_client_port(member: Member, client_port: HttpServer) -> None:
    key = prefix() + "curl"
    body = json.dumps({"key": b64(key), "value": b64("bar")})
    proc = curl("-L", f"http://{member.endpoint}/v3/kv/put", "-X", "POST", "-d", body)
    assert proc.returncode == 0, proc.stderr
    assert "revision" in json.loads(proc.stdout)["header"]
    assert member.etcdctl("get", key, "--print-value-only").stdout == "bar\n"


def test_watch_over_http_streams_a_later_put(client_port: HttpServer) -> None:
    key = prefix() + "w"
    with client_port.stream("/v3/watch", {"create_request": {"key": b64(key)}}) as resp:
        assert json.loads(resp.readline())["result"]["created"] is True
        client_port.call("/v3/kv/put", {"key": b64(key), "value": b64("hello")})
        event = json.loads(resp.readline())["result"]["events"][0]
    assert unb64(event["kv"]["value"]) == b"hello"


def test_health_version_and_metrics_on_the_client_port(client_port: HttpServer) -> None:
    assert client_port.get("/health").json()["health"] == "true"
    assert set(client_port.get("/version").json()) == {"etcdserver", "etcdcluster"}
    metrics = client_port.get("/metrics")
    assert metrics.status == 200
    assert b"etcd_server_has_leader 1" in metrics.body


def test_etcdctl_and_http_share_the_client_port(member: Member, client_port: HttpServer) -> None:
    key = prefix() + "both"
    assert member.etcdctl("put", key, "from-grpc").stdout == "OK\n"
    got = client_port.call("/v3/kv/range", {"key": b64(key)})
    assert unb64(got["kvs"][0]["value"]) == b"from-grpc"
    client_port.call("/v3/kv/put", {"key": b64(key), "value": b64("from-http")})
    assert member.etcdctl("get", key, "--print-value-only").stdout == "from-http\n"


def test_large_value_round_trips_through_the_client_port(client_port: HttpServer) -> None:
    key, value = prefix() + "big", bytes(range(256)) * 4096  # 1 MiB
    client_port.call("/v3/kv/put", {"key": b64(key), "value": b64(value)})
    got = client_port.call("/v3/kv/range", {"key": b64(key)})
    assert unb64(got["kvs"][0]["value"]) == value


# -- TLS ---------------------------------------------------------------------------


def _https(member: Member, ca: CertificateAuthority, path: str, payload: object) -> Reply:
    ctx = ssl.create_default_context(cafile=str(ca.cert))
    req = urllib.request.Request(
        f"https://{member.endpoint}{path}", data=json.dumps(payload).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT, context=ctx) as resp:
            return Reply(resp.status, resp.read(), dict(resp.headers))
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.read(), dict(e.headers))


def test_https_client_port_serves_the_gateway(tls_member: Member, ca: CertificateAuthority) -> None:
    key = prefix() + "tls"
    put = _https(tls_member, ca, "/v3/kv/put", {"key": b64(key), "value": b64("v")})
    assert put.status == 200, put.body
    got = _https(tls_member, ca, "/v3/kv/range", {"key": b64(key)})
    assert unb64(got.json()["kvs"][0]["value"]) == b"v"


@needs_curl
@pytest.mark.parametrize("protocol", ["--http2", "--http1.1"])
def test_curl_over_https_reaches_the_gateway(
    tls_member: Member, ca: CertificateAuthority, protocol: str
) -> None:
    """curl negotiates h2 by ALPN unless told otherwise: either way its JSON
    requests reach the gateway, not gRPC."""
    key = prefix() + "curl-tls"
    body = json.dumps({"key": b64(key), "value": b64("bar")})
    url = f"https://{tls_member.endpoint}/v3/kv/put"
    proc = curl(protocol, "--cacert", str(ca.cert), url, "-X", "POST", "-d", body)
    assert proc.returncode == 0, proc.stderr
    assert "revision" in json.loads(proc.stdout)["header"]
    health = curl(protocol, "--cacert", str(ca.cert), f"https://{tls_member.endpoint}/health")
    assert json.loads(health.stdout)["health"] == "true"


def test_etcdctl_over_tls_shares_the_client_port(
    tls_member: Member, ca: CertificateAuthority
) -> None:
    key = prefix() + "tls-ctl"
    _https(tls_member, ca, "/v3/kv/put", {"key": b64(key), "value": b64("via-http")})
    proc = subprocess.run(
        [
            etcd_bin("etcdctl"),
            f"--endpoints=https://{tls_member.endpoint}",
            f"--cacert={ca.cert}",
            "get",
            key,
            "--print-value-only",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.stdout == "via-http\n", proc.stderr


# -- auth --------------------------------------------------------------------------


@pytest.fixture
def auth_member(tmp_path: Path) -> Iterator[Member]:
    """etcdcore with auth enabled (root / secret)."""
    m = Member(data_dir=tmp_path / "default.etcd").start()
    try:
        m.etcdctl("user", "add", "root:secret")
        m.etcdctl("auth", "enable")
        yield m
    finally:
        m.stop()


def _post_with(server: HttpServer, path: str, payload: object, token: str | None) -> Reply:
    headers = {"Authorization": token} if token else {}
    req = urllib.request.Request(
        server.base + path, data=json.dumps(payload).encode(), method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return Reply(resp.status, resp.read(), dict(resp.headers))
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.read(), dict(e.headers))


def test_authorization_header_token_is_honoured_on_the_client_port(
    auth_member: Member,
) -> None:
    server = HttpServer(f"http://{auth_member.endpoint}")
    token = server.call("/v3/auth/authenticate", {"name": "root", "password": "secret"})["token"]
    put = {"key": b64("authed"), "value": b64("v")}
    refused = _post_with(server, "/v3/kv/put", put, None)
    assert refused.status != 200
    assert "user name is empty" in refused.json()["message"]
    assert _post_with(server, "/v3/kv/put", put, token).status == 200
    assert (
        auth_member.etcdctl("--user=root:secret", "get", "authed", "--print-value-only").stdout
        == "v\n"
    )


# -- --listen-client-http-urls -----------------------------------------------------


@pytest.fixture(scope="module")
def split_member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Member, int]]:
    http_port = free_port()
    m = Member(
        data_dir=tmp_path_factory.mktemp("split") / "default.etcd",
        extra=[f"--listen-client-http-urls=http://127.0.0.1:{http_port}"],
    ).start()
    try:
        yield m, http_port
    finally:
        m.stop()


def test_client_port_gives_http1_no_http_answer_with_listen_client_http_urls(
    split_member: tuple[Member, int],
) -> None:
    """As etcd's gRPC-only listener: an HTTP/2 server's bytes, then the
    connection ends; never an HTTP/1 response."""
    member, _ = split_member
    with socket.create_connection(("127.0.0.1", member.client_port), timeout=TIMEOUT) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        try:
            while chunk := s.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
    assert not received.startswith(b"HTTP/")


def test_listen_client_http_urls_serves_http_there_and_grpc_on_the_client_port(
    split_member: tuple[Member, int],
) -> None:
    member, http_port = split_member
    http = HttpServer(f"http://127.0.0.1:{http_port}")
    assert http.get("/health").json()["health"] == "true"
    assert member.etcdctl("put", "split", "v").stdout == "OK\n"


# -- byte for byte with etcd 3.5 ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/version", None),
        ("GET", "/health", None),
        ("GET", "/no/such/path", None),
        ("POST", "/v3/kv/range", b'{"key":'),
        ("POST", "/v3/kv/put", b'{"key":""}'),
    ],
)
def test_client_port_answers_byte_for_byte_as_etcd(
    client_port: HttpServer, etcd_http: HttpServer, method: str, path: str, body: bytes | None
) -> None:
    ours = client_port.request(method, path, body)
    theirs = etcd_http.request(method, path, body)
    assert (ours.status, ours.body) == (theirs.status, theirs.body)
    assert _content_type(ours) == _content_type(theirs)


def _content_type(reply: Reply) -> str | None:
    return {k.lower(): v for k, v in reply.headers.items()}.get("content-type")


def test_the_client_port_never_answers_unavailable_while_the_member_starts(
    tmp_path: Path,
) -> None:
    """gRPC answers a moment before the HTTP side is up; a health check sent
    as soon as the port accepts must get the member's answer, not a 503."""
    m = Member(data_dir=tmp_path / "starting.etcd").start(wait=False)
    try:
        url = f"http://{m.endpoint}/version"
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "the client port never answered"
            try:
                with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
                    assert r.status == 200
                    assert "etcdserver" in json.loads(r.read())
                    break
            except urllib.error.HTTPError as e:
                pytest.fail(f"answered {e.code} while starting: {e.read()!r}")
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.005)
    finally:
        m.stop()
