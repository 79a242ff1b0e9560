"""The web console's HTTP side (--enable-console), without a browser: where
it is served, the flag's three spellings, and the auth checks on its JSON
calls."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.client import HTTPException
from pathlib import Path
from typing import Any

import grpc
import pytest

from certs import CertificateAuthority
from cluster import Cluster
from etcdcore.server.config import ServerConfig, help_text
from harness import Member

pytestmark = pytest.mark.timeout(60)


def http(
    url: str,
    body: dict[str, Any] | None = None,
    token: str | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET, or of a POST when ``body`` is given."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = token
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def http_ready(url: str, context: ssl.SSLContext | None = None) -> None:
    """Wait until the member's HTTP side answers: it starts a moment after
    the gRPC listener the harness waits for (503 until then)."""
    deadline = time.monotonic() + 10
    while http(url, context=context)[0] == 503 and time.monotonic() < deadline:
        time.sleep(0.05)


def base(m: Member) -> str:
    return f"http://{m.endpoint}"


@pytest.fixture(scope="module")
def console_member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Member]:
    m = Member(
        data_dir=tmp_path_factory.mktemp("console") / "default.etcd", extra=["--enable-console"]
    ).start()
    http_ready(base(m) + "/console/")
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Member]:
    """A console member with auth on: root, and "reader" who may only read."""
    m = Member(
        data_dir=tmp_path_factory.mktemp("secured") / "default.etcd", extra=["--enable-console"]
    ).start()
    http_ready(base(m) + "/console/")
    for cmd in (
        "user add root:rootpw",
        "user add reader:readerpw",
        "role add reader",
        "role grant-permission reader read /app/ --prefix",
        "user grant-role reader reader",
        "auth enable",
    ):
        m.etcdctl(*cmd.split())
    try:
        yield m
    finally:
        m.stop()


def token(m: Member, name: str, password: str) -> str:
    status, _, body = http(base(m) + "/v3/auth/authenticate", {"name": name, "password": password})
    assert status == 200, body
    return str(json.loads(body)["token"])


# -- serving ---------------------------------------------------------------------------


def test_the_console_is_off_by_default(member: Member) -> None:
    http_ready(base(member) + "/health")
    status, _, _ = http(base(member) + "/console/")
    assert status == 404


def test_enable_console_serves_the_page_and_its_assets_on_the_client_url(
    console_member: Member,
) -> None:
    status, ctype, body = http(base(console_member) + "/console/")
    assert status == 200 and ctype.startswith("text/html")
    assert b"<title>etcdcore console</title>" in body
    status, ctype, body = http(base(console_member) + "/console/console.js")
    assert status == 200 and ctype.startswith("text/javascript")
    assert b"/v3/kv/range" in body


def test_console_without_the_slash_redirects_to_it(console_member: Member) -> None:
    status, ctype, _ = http(base(console_member) + "/console")
    assert status == 200 and ctype.startswith("text/html")  # urllib followed the redirect


def test_only_the_console_files_are_served(console_member: Member) -> None:
    for path in ("/console/nope.js", "/console/..%2fconsole.py", "/console/api/other"):
        status, _, _ = http(base(console_member) + path)
        assert status == 404, path


def test_the_consoles_json_calls_take_only_post(console_member: Member) -> None:
    status, _, body = http(base(console_member) + "/console/api/metrics")
    assert status == 405 and body == b"Method Not Allowed\n"


def test_the_console_reaches_the_same_gateway_as_curl(console_member: Member) -> None:
    console_member.etcdctl("put", "/console-gw/k", "v")
    status, _, body = http(base(console_member) + "/v3/kv/range", {"key": "L2NvbnNvbGUtZ3cvaw=="})
    assert status == 200 and json.loads(body)["count"] == "1"


def test_enable_console_is_also_read_from_the_environment_and_the_config_file(
    tmp_path: Path,
) -> None:
    assert ServerConfig.from_args([], {}).enable_console is False
    assert ServerConfig.from_args(["--enable-console"], {}).enable_console is True
    assert ServerConfig.from_args([], {"ETCD_ENABLE_CONSOLE": "true"}).enable_console is True
    config = tmp_path / "etcd.yaml"
    config.write_text("enable-console: true\n")
    assert ServerConfig.from_args([f"--config-file={config}"], {}).enable_console is True
    assert "--enable-console 'false'" in help_text()


# -- the console's own JSON calls ---------------------------------------------------------


def test_console_metrics_count_the_puts_made(console_member: Member) -> None:
    url = base(console_member) + "/console/api/metrics"
    status, ctype, body = http(url, {})
    assert status == 200 and ctype.startswith("application/json")
    before = json.loads(body)
    for i in range(3):
        console_member.etcdctl("put", f"/console-metrics/{i}", "v")
    after = json.loads(http(url, {})[2])
    assert after["puts_total"] - before["puts_total"] == 3
    assert after["db_total_size_bytes"] > 0
    assert after["time"] >= before["time"]


def test_console_metrics_count_open_watchers(console_member: Member) -> None:
    url = base(console_member) + "/console/api/metrics"
    before = json.loads(http(url, {})[2])["watchers"]
    watch = console_member.etcdctl_popen("watch", "/console-watchers/", "--prefix")
    try:
        deadline = time.monotonic() + 10
        while json.loads(http(url, {})[2])["watchers"] != before + 1:
            assert time.monotonic() < deadline, "the watcher was not counted"
            time.sleep(0.1)
    finally:
        watch.kill()
        watch.communicate()


def test_console_calls_without_a_token_are_refused_when_auth_is_on(secured: Member) -> None:
    for path in ("/console/api/metrics", "/console/api/members", "/v3/kv/range"):
        status, _, body = http(base(secured) + path, {"key": "L2FwcC9r"})
        assert status == 400, path
        assert json.loads(body)["message"] == "etcdserver: user name is empty", path


def test_console_calls_with_an_unknown_token_are_refused_as_invalid(secured: Member) -> None:
    for path in ("/console/api/metrics", "/console/api/members"):
        status, _, body = http(base(secured) + path, {}, token="forged.1")
        assert status == 401, path
        assert json.loads(body)["message"] == "etcdserver: invalid auth token", path


def test_console_calls_with_a_users_token_are_answered(secured: Member) -> None:
    reader = token(secured, "reader", "readerpw")
    status, _, body = http(base(secured) + "/console/api/metrics", {}, token=reader)
    assert status == 200 and "puts_total" in json.loads(body)
    status, _, body = http(base(secured) + "/console/api/members", {}, token=reader)
    assert status == 200 and json.loads(body)["members"][0]["healthy"] is True


def test_a_read_only_users_write_through_the_gateway_is_refused(secured: Member) -> None:
    reader = token(secured, "reader", "readerpw")
    status, _, body = http(
        base(secured) + "/v3/kv/put", {"key": "L2FwcC9r", "value": "dg=="}, token=reader
    )
    assert status == 403
    assert json.loads(body)["message"] == "etcdserver: permission denied"


def test_members_reports_each_members_status_and_an_unreachable_one_as_unhealthy(
    tmp_path: Path,
) -> None:
    cluster = Cluster.create(tmp_path, 3, extra=["--enable-console"]).start()
    try:
        cluster.leader()
        http_ready(base(cluster.members[0]) + "/console/")
        first, _, last = cluster.members
        last.stop()
        status, _, body = http(base(first) + "/console/api/members", {})
        assert status == 200
        rows = {r["name"]: r for r in json.loads(body)["members"]}
        assert set(rows) == {"n1", "n2", "n3"}
        assert rows["n1"]["self"] is True and rows["n1"]["healthy"] is True
        assert rows["n2"]["healthy"] is True and int(rows["n2"]["raftTerm"]) >= 1
        assert rows["n1"]["leader"] == rows["n2"]["leader"] != "0"
        assert rows["n3"]["healthy"] is False and rows["n3"]["error"]
    finally:
        cluster.stop()


def test_the_console_is_served_over_the_tls_client_listener(tmp_path: Path) -> None:
    (tmp_path / "ca").mkdir()
    ca = CertificateAuthority(tmp_path / "ca")
    server = ca.issue("server")
    m = Member(
        data_dir=tmp_path / "tls.etcd",
        client_scheme="https",
        credentials=grpc.ssl_channel_credentials(ca.cert.read_bytes()),
        extra=[f"--cert-file={server.cert}", f"--key-file={server.key}", "--enable-console"],
    ).start()
    try:
        context = ssl.create_default_context(cafile=str(ca.cert))
        http_ready(f"https://{m.endpoint}/console/", context)
        status, ctype, body = http(f"https://{m.endpoint}/console/", context=context)
        assert status == 200 and b"etcdcore console" in body
        status, _, body = http(f"https://{m.endpoint}/console/api/metrics", {}, context=context)
        assert status == 200 and "puts_total" in json.loads(body)
        # Plain HTTP gets no page from the TLS listener.
        with pytest.raises((urllib.error.URLError, HTTPException)):
            urllib.request.urlopen(f"http://{m.endpoint}/console/", timeout=5)
    finally:
        m.stop()
