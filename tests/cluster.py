"""Multi-member test clusters: real server processes on 127.0.0.1x addresses.

Each member listens on its own loopback address (127.0.0.11, 127.0.0.12, ...)
and the core dials its peers from that address, so a :class:`netproxy.Proxy`
in front of a member's peer port can tell which member a connection comes
from and cut exactly the links a partition test wants cut.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import Member, etcd_bin, etcdcore_command, etcdctl, free_port
from netproxy import Proxy


def member_host(index: int) -> str:
    """The loopback address of member ``index`` (0-based)."""
    return f"127.0.0.{11 + index}"


@dataclass
class Cluster:
    """A cluster of etcdcore (or, with ``command``, real etcd) members."""

    members: list[Member]
    token: str = "test-cluster"
    extra: list[str] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        base: Path,
        size: int,
        *,
        extra: Sequence[str] = (),
        command: list[str] | None = None,
        peer_urls: Sequence[str] | None = None,
    ) -> Cluster:
        """Members n1..nN with data dirs under ``base`` (not started).

        ``peer_urls`` overrides the URL each member advertises to its peers
        (a proxy's), e.g. for partition tests.
        """
        members = []
        for i in range(size):
            m = Member(
                data_dir=base / f"n{i + 1}",
                name=f"n{i + 1}",
                host=member_host(i),
                command=command or etcdcore_command(),
            )
            if peer_urls is not None:
                m.advertise_peer_url = peer_urls[i]
            members.append(m)
        initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
        cluster = cls(members=members, extra=list(extra))
        for m in members:
            m.initial_cluster = initial
            m.extra = [
                "--initial-cluster-state", "new",
                "--initial-cluster-token", cluster.token,
                *cluster.extra,
            ]  # fmt: skip
        return cluster

    @property
    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    def start(self, timeout: float = 30.0) -> Cluster:
        try:
            for m in self.members:
                m.start(wait=False)
            for m in self.members:
                m.wait_ready(timeout)
        except BaseException:
            # One member failed to start (a port taken meanwhile, say): the
            # others would outlive the test, holding their preallocated WALs.
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for m in self.members:
            m.stop()

    def etcdctl(self, *args: str, **kw: object) -> object:
        """The real etcdctl against every member's endpoint."""
        return etcdctl(self.endpoints, *args, **kw)  # type: ignore[arg-type]

    def running(self) -> list[Member]:
        return [m for m in self.members if m.running]

    def leader(self, timeout: float = 15.0, among: Sequence[Member] | None = None) -> Member:
        """The member that leads (all running members agreeing), waiting for one."""
        pool = list(among or self.running())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leaders = set()
            ids = {}
            for m in pool:
                s = status(m)
                if s is None or s.leader == 0:
                    break
                leaders.add(s.leader)
                ids[s.header.member_id] = m
            else:
                if len(leaders) == 1 and (lid := leaders.pop()) in ids:
                    return ids[lid]
            time.sleep(0.05)
        raise TimeoutError("no agreed leader")

    def followers(self) -> list[Member]:
        leader = self.leader()
        return [m for m in self.running() if m is not leader]

    def add_member(self, base: Path, name: str, index: int, *, learner: bool = False) -> Member:
        """``member add`` through etcdctl, then start the new member with
        --initial-cluster-state existing (not waiting for it to be ready)."""
        m = Member(
            data_dir=base / name,
            name=name,
            host=member_host(index),
            client_port=free_port(member_host(index)),
            peer_port=free_port(member_host(index)),
        )
        args = ["member", "add", name, f"--peer-urls={m.peer_url}"]
        if learner:
            args.append("--learner")
        out = self.etcdctl(*args).stdout  # type: ignore[attr-defined]
        initial = next(
            line.split("=", 1)[1].strip('"')
            for line in out.splitlines()
            if line.startswith("ETCD_INITIAL_CLUSTER=")
        )
        m.initial_cluster = initial
        m.extra = [
            "--initial-cluster-state", "existing",
            "--initial-cluster-token", self.token,
            *self.extra,
        ]  # fmt: skip
        self.members.append(m)
        return m.start(wait=False)


def status(m: Member, timeout: float = 1.0) -> rpc_pb2.StatusResponse | None:
    """Maintenance.Status of one member, None when it does not answer."""
    try:
        with grpc.insecure_channel(m.endpoint) as ch:
            return rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), timeout=timeout)
    except grpc.RpcError:
        return None


def serializable_get(m: Member, key: bytes, timeout: float = 2.0) -> bytes | None:
    """The value of ``key`` in this member's own store (no Raft round)."""
    with grpc.insecure_channel(m.endpoint) as ch:
        r = rpc_pb2_grpc.KVStub(ch).Range(
            rpc_pb2.RangeRequest(key=key, serializable=True), timeout=timeout
        )
    return r.kvs[0].value if r.kvs else None


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.05) -> None:  # noqa: ANN001
    """Poll ``predicate`` until it is true; fail with a TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"condition not met in {timeout}s")


@contextlib.contextmanager
def running_cluster(base: Path, size: int, **kw: object) -> Iterator[Cluster]:
    """A started cluster, stopped (and its logs kept under ``base``) afterwards."""
    c = Cluster.create(base, size, **kw)  # type: ignore[arg-type]
    try:
        yield c.start()
    finally:
        c.stop()


class PartitionedCluster:
    """A 3-member cluster whose peer links run through proxies: every member's
    peers reach it through a :class:`netproxy.Proxy`. Isolating a member cuts its
    proxy and blocks its address at every other member's proxy."""

    def __init__(self, base: Path) -> None:
        proxy_ports = [free_port() for _ in range(3)]
        urls = [f"http://{member_host(i)}:{p}" for i, p in enumerate(proxy_ports)]
        self.cluster = Cluster.create(base, 3, peer_urls=urls)
        self.proxies = [
            Proxy(member_host(i), proxy_ports[i], member_host(i), m.peer_port).start()
            for i, m in enumerate(self.cluster.members)
        ]

    def isolate(self, m: Member) -> None:
        i = self.cluster.members.index(m)
        self.proxies[i].cut()
        for j, p in enumerate(self.proxies):
            if j != i:
                p.block(m.host)

    def heal(self) -> None:
        for p in self.proxies:
            p.heal()

    def close(self) -> None:
        self.cluster.stop()
        for p in self.proxies:
            p.stop()


__all__ = [
    "Cluster",
    "PartitionedCluster",
    "etcd_bin",
    "member_host",
    "running_cluster",
    "serializable_get",
    "status",
    "wait_until",
]
