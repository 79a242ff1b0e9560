"""``etcdcore gateway start``: etcd's L4 gateway in front of a cluster, driven
with the real etcdctl, and its command line held to etcd 3.5.1's."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import Cluster, running_cluster, wait_until
from harness import etcd_bin, etcdcore_command, etcdctl, free_port


class GatewayProcess:
    def __init__(self, log: Path, *args: str) -> None:
        self.port = free_port()
        self.log_path = log
        self.proc = subprocess.Popen(
            [*etcdcore_command(), "gateway", "start", f"--listen-addr={self.endpoint}", *args],
            stdout=subprocess.DEVNULL,
            stderr=open(log, "wb"),  # noqa: SIM115 - owned by the process
        )
        wait_until(lambda: "ready to proxy client requests" in self.log(), timeout=20)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def entries(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, 3) as c:
        yield c


def gateway(tmp_path: Path, c: Cluster, *extra: str) -> GatewayProcess:
    return GatewayProcess(tmp_path / "gateway.log", f"--endpoints={c.endpoints}", *extra)


def serving_member_id(endpoint: str) -> str:
    out = etcdctl(endpoint, "endpoint", "status", "-w", "json").stdout
    return f"{json.loads(out)[0]['Status']['header']['member_id']:x}"


def member_ids(c: Cluster) -> dict[str, str]:
    listed = json.loads(c.etcdctl("member", "list", "-w", "json").stdout)  # type: ignore[attr-defined]
    return {f"{m['ID']:x}": m["name"] for m in listed["members"]}


def test_etcdctl_reads_and_writes_through_the_gateway(tmp_path: Path, cluster: Cluster) -> None:
    gw = gateway(tmp_path, cluster)
    try:
        assert etcdctl(gw.endpoint, "put", "gw/k", "v").stdout == "OK\n"
        assert etcdctl(gw.endpoint, "get", "gw/k", "--print-value-only").stdout == "v\n"
        ready = next(e for e in gw.entries() if e["msg"] == "ready to proxy client requests")
        assert ready["endpoints"] == [m.endpoint for m in cluster.members]
    finally:
        gw.stop()


def test_the_gateway_moves_to_another_member_when_its_member_dies(
    tmp_path: Path, cluster: Cluster
) -> None:
    gw = gateway(tmp_path, cluster)
    try:
        used = member_ids(cluster)[serving_member_id(gw.endpoint)]
        dead = next(m for m in cluster.members if m.name == used)
        dead.kill9()
        # The survivors elect a leader first if the dead member led (that
        # takes an election timeout or two, with etcd as with etcdcore).
        cluster.leader(timeout=30)

        assert etcdctl(gw.endpoint, "put", "gw/after", "v").stdout == "OK\n"

        now = member_ids(cluster)[serving_member_id(gw.endpoint)]
        assert now != used
        deactivated = [e for e in gw.entries() if e["msg"] == "deactivated endpoint"]
        assert deactivated and deactivated[0]["address"] == dead.endpoint
        assert str(deactivated[0]["error"]).endswith("connect: connection refused")
    finally:
        gw.stop()


def test_a_dead_endpoint_is_dialed_again_every_retry_delay_and_comes_back(
    tmp_path: Path, cluster: Cluster
) -> None:
    gw = gateway(tmp_path, cluster, "--retry-delay=500ms")
    first = cluster.members[0]
    try:
        first.stop()
        cluster.leader(timeout=30)
        # Each endpoint is tried in turn: one of these meets the dead one.
        for _ in range(3):
            etcdctl(gw.endpoint, "put", "gw/k", "v")
        wait_until(lambda: "failed to activate endpoint" in gw.log(), timeout=10)
        first.start()
        wait_until(
            lambda: any(
                e["msg"] == "activated" and e["address"] == first.endpoint for e in gw.entries()
            ),
            timeout=10,
        )
    finally:
        gw.stop()


def test_sigterm_ends_the_gateway_as_it_ends_etcds(tmp_path: Path, cluster: Cluster) -> None:
    gw = gateway(tmp_path, cluster)

    assert gw.stop() == -signal.SIGTERM


# -- the command line, against etcd 3.5.1's ------------------------------------------


def run_gateway(command: list[str], *args: str) -> tuple[int, str, str]:
    proc = subprocess.run([*command, "gateway", *args], capture_output=True, text=True, timeout=20)
    # Log lines (JSON) are not part of what is compared.
    stderr = "".join(
        line for line in proc.stderr.splitlines(keepends=True) if not line.startswith("{")
    )
    return proc.returncode, proc.stdout, stderr


BAD_COMMAND_LINES = [
    ["start", "--bogus"],
    ["start", "-x"],
    ["start", "--endpoints"],
    ["start", "--retry-delay=abc"],
    ["start", "--retry-delay", "5"],
    ["start", "--insecure-discovery=maybe"],
    ["start", "--endpoints=a:b:c"],
    ["start", "--endpoints=,", "--listen-addr=127.0.0.1:1"],
    ["start", "--endpoints=", "--listen-addr=127.0.0.1:1"],
    ["start", "--listen-addr=notanaddr"],
    ["start", "--listen-addr=:2379"],
    ["start", "--endpoints=localhost:23799", "--listen-addr=127.0.0.1:23799"],
    ["start", "--endpoints=http://127.0.0.1:23799/x", "--listen-addr=127.0.0.1:23799"],
    ["start", "--listen-addr=127.0.0.1:notaport", "--endpoints=127.0.0.1:1"],
    ["start", "--help"],
    [],
    ["bogus"],
]


@pytest.mark.parametrize("args", BAD_COMMAND_LINES, ids=lambda a: " ".join(a) or "no args")
def test_command_line_answers_as_etcds(args: list[str]) -> None:
    assert run_gateway(etcdcore_command(), *args) == run_gateway([etcd_bin("etcd")], *args)


def test_a_taken_listen_address_is_refused_as_etcd_refuses_it() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addr = f"127.0.0.1:{taken.getsockname()[1]}"
        args = ["start", f"--listen-addr={addr}", "--endpoints=127.0.0.1:1"]
        ours = run_gateway(etcdcore_command(), *args)
        assert ours == run_gateway([etcd_bin("etcd")], *args)
        assert ours[2] == f"listen tcp {addr}: bind: address already in use\n"
