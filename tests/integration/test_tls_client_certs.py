"""Which client certificates a TLS listener takes, held to etcd 3.5.1: Go's
chain rules (a CA certificate or an X.509 v1 certificate is a valid client
certificate there) and etcd's --client-crl-file / --peer-crl-file, a
revocation list read at every handshake."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from certs import CertificateAuthority, Pair
from cluster import Cluster, member_host, wait_until
from harness import Member, etcd_bin, etcdcore_command

SERVERS = {"etcd": [etcd_bin("etcd")], "etcdcore": etcdcore_command()}


class Pki:
    """One CA, its server certificate, the client certificates the tests try
    and a revocation list naming ``revoked``."""

    def __init__(self, directory: Path) -> None:
        self.ca = CertificateAuthority(directory)
        self.server = self.ca.issue("server")
        self.crl = self.ca.revoke(self.ca.issue("revoked", client_auth=True), name="crl")
        self.clients: dict[str, Pair] = {
            "issued by the CA": self.ca.issue("alice"),
            "the CA's own certificate": self.ca.pair,
            "an X.509 v1 certificate": self.ca.issue_v1("v1"),
            "revoked": Pair(directory / "revoked.crt", directory / "revoked.key"),
            "for servers only": self.ca.issue("web", client_auth=False),
            "another CA's own certificate": CertificateAuthority(directory / "other").pair,
        }


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    (d / "other").mkdir()
    return Pki(d)


def mtls_member(data: Path, pki: Pki, command: list[str], *extra: str) -> Member:
    creds = grpc.ssl_channel_credentials(
        pki.ca.cert.read_bytes(), pki.server.key.read_bytes(), pki.server.cert.read_bytes()
    )
    return Member(
        data_dir=data,
        command=command,
        client_scheme="https",
        credentials=creds,
        extra=[
            f"--cert-file={pki.server.cert}",
            f"--key-file={pki.server.key}",
            f"--trusted-ca-file={pki.ca.cert}",
            "--client-cert-auth",
            *extra,
        ],
    )


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> Iterator[Member]:
    """etcd 3.5.1 and etcdcore, each requiring client certificates and
    refusing those ``pki.crl`` lists."""
    base = tmp_path_factory.mktemp(request.param)
    m = mtls_member(base / "data", pki, SERVERS[request.param], f"--client-crl-file={pki.crl}")
    m.start()
    try:
        yield m
    finally:
        m.stop()


def put(m: Member, ca: CertificateAuthority, client: Pair) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            etcd_bin("etcdctl"),
            f"--endpoints=https://{m.endpoint}",
            f"--cacert={ca.cert}",
            f"--cert={client.cert}",
            f"--key={client.key}",
            "--dial-timeout=2s",
            "--command-timeout=2s",
            "put",
            "tls/k",
            "v",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )


@pytest.mark.parametrize(
    ("client", "accepted"),
    [
        ("issued by the CA", True),
        ("the CA's own certificate", True),
        ("an X.509 v1 certificate", True),
        ("revoked", False),
        ("for servers only", False),
        ("another CA's own certificate", False),
    ],
)
def test_client_certificate_is_taken_as_etcd_takes_it(
    server: Member, pki: Pki, client: str, accepted: bool
) -> None:
    out = put(server, pki.ca, pki.clients[client])

    assert (out.returncode == 0) is accepted, out.stderr
    if accepted:
        assert out.stdout == "OK\n"


@pytest.mark.parametrize("command", sorted(SERVERS))
def test_a_revocation_list_changed_on_disk_applies_to_the_next_handshake(
    tmp_path: Path, pki: Pki, command: str
) -> None:
    crl = tmp_path / "live.crl"
    crl.write_bytes(pki.ca.revoke(name="empty").read_bytes())
    client = pki.ca.issue("carol")
    m = mtls_member(tmp_path / "d", pki, SERVERS[command], f"--client-crl-file={crl}").start()
    try:
        assert put(m, pki.ca, client).returncode == 0

        crl.write_bytes(pki.ca.revoke(client, name="carol-revoked").read_bytes())

        assert put(m, pki.ca, client).returncode != 0
    finally:
        m.stop()


@pytest.mark.parametrize("command", sorted(SERVERS))
def test_an_unreadable_revocation_list_refuses_every_client_but_not_the_start(
    tmp_path: Path, pki: Pki, command: str
) -> None:
    missing = tmp_path / "missing.crl"
    m = mtls_member(tmp_path / "d", pki, SERVERS[command], f"--client-crl-file={missing}")
    m.start(wait=False)
    try:
        # The member runs (its log grows past start-up) yet answers no one.
        wait_until(lambda: "ready to serve client requests" in m.log(), timeout=20)
        assert m.running
        assert put(m, pki.ca, pki.clients["issued by the CA"]).returncode != 0
    finally:
        m.stop()


def test_a_member_whose_peer_certificate_is_revoked_cannot_join(tmp_path: Path, pki: Pki) -> None:
    c = Cluster.create(tmp_path, 3)
    pairs = [pki.ca.issue(m.name, hosts=(member_host(i),)) for i, m in enumerate(c.members)]
    crl = pki.ca.revoke(pairs[2], name="peer-crl")
    for m, pair in zip(c.members, pairs, strict=True):
        m.peer_scheme = "https"
        m.extra += [
            f"--peer-cert-file={pair.cert}",
            f"--peer-key-file={pair.key}",
            f"--peer-trusted-ca-file={pki.ca.cert}",
            "--peer-client-cert-auth",
            f"--peer-crl-file={crl}",
        ]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in c.members)
    for m in c.members:
        m.initial_cluster = initial
        m.start(wait=False)
    try:
        c.leader(among=c.members[:2])
        first = c.members[0]
        wait_until(lambda: "Revoked" in first.log(), timeout=20)
        # n3 never gets its client URLs committed (etcd's publish).
        listed = first.etcdctl("member", "list").stdout
        n3 = next(line for line in listed.splitlines() if ", n3, " in line)
        assert n3.endswith(", , false")
    finally:
        c.stop()
