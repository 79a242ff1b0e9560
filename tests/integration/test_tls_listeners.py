"""TLS on etcdcore's client and peer listeners, driven with the real etcdctl
and certificates made on the fly: client certificate authentication, refusal
of plaintext and of untrusted certificates, --auto-tls, the TLS version
floor, and a three-member cluster whose members talk over mutual TLS."""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from certs import CertificateAuthority, Pair
from cluster import Cluster, member_host, wait_until
from harness import Member, etcd_bin


def tls_member(data: Path, ca: CertificateAuthority, server: Pair, *extra: str) -> Member:
    creds = grpc.ssl_channel_credentials(
        ca.cert.read_bytes(), server.key.read_bytes(), server.cert.read_bytes()
    )
    return Member(
        data_dir=data,
        client_scheme="https",
        credentials=creds,
        extra=[f"--cert-file={server.cert}", f"--key-file={server.key}", *extra],
    )


def etcdctl(endpoint: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [etcd_bin("etcdctl"), f"--endpoints=https://{endpoint}", "--command-timeout=3s", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory, ca: CertificateAuthority) -> Iterator[Member]:
    """A member requiring client certificates signed by ``ca``."""
    base = tmp_path_factory.mktemp("mtls")
    server = ca.issue("server")
    m = tls_member(base / "data", ca, server, f"--trusted-ca-file={ca.cert}", "--client-cert-auth")
    m.start()
    try:
        yield m
    finally:
        m.stop()


def _with_cert(ca: CertificateAuthority, pair: Pair) -> list[str]:
    return [f"--cacert={ca.cert}", f"--cert={pair.cert}", f"--key={pair.key}"]


def test_client_with_a_trusted_certificate_reads_and_writes(
    mtls: Member, ca: CertificateAuthority
) -> None:
    client = _with_cert(ca, ca.issue("alice"))
    assert etcdctl(mtls.endpoint, *client, "put", "tls/k", "v").stdout == "OK\n"
    assert etcdctl(mtls.endpoint, *client, "get", "tls/k", "--print-value-only").stdout == "v\n"


def test_client_without_a_certificate_is_refused(mtls: Member, ca: CertificateAuthority) -> None:
    proc = etcdctl(mtls.endpoint, f"--cacert={ca.cert}", "get", "tls/k")
    assert proc.returncode != 0
    assert "context deadline exceeded" in proc.stderr


def test_client_certificate_from_another_ca_is_refused(
    mtls: Member, ca: CertificateAuthority, tmp_path: Path
) -> None:
    stranger = CertificateAuthority(tmp_path).issue("mallory")
    proc = etcdctl(
        mtls.endpoint,
        f"--cacert={ca.cert}",
        f"--cert={stranger.cert}",
        f"--key={stranger.key}",
        "get",
        "k",
    )
    assert proc.returncode != 0


def test_plaintext_client_is_refused_by_a_tls_listener(mtls: Member) -> None:
    proc = subprocess.run(
        [
            etcd_bin("etcdctl"),
            f"--endpoints=http://{mtls.endpoint}",
            "--command-timeout=2s",
            "get",
            "k",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode != 0


def test_lock_and_lease_keep_alive_work_over_tls(mtls: Member, ca: CertificateAuthority) -> None:
    client = _with_cert(ca, ca.issue("bob"))
    # lock runs through the server's own loopback client, which must speak TLS too
    proc = etcdctl(mtls.endpoint, *client, "lock", "tls-lock", "echo", "held")
    assert (proc.returncode, proc.stdout) == (0, "held\n")
    lease = etcdctl(mtls.endpoint, *client, "lease", "grant", "30").stdout.split()[1]
    kept = etcdctl(mtls.endpoint, *client, "lease", "keep-alive", "--once", lease)
    assert kept.stdout == f"lease {lease} keepalived with TTL(30)\n"


def test_tls_min_version_13_refuses_a_tls12_client(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    m = tls_member(tmp_path / "d", ca, ca.issue("server"), "--tls-min-version=TLS1.3").start()
    try:
        ctx = ssl.create_default_context(cafile=str(ca.cert))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection(("127.0.0.1", m.client_port), timeout=5) as raw:
            with pytest.raises(ssl.SSLError):
                ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        ctx13 = ssl.create_default_context(cafile=str(ca.cert))
        ctx13.set_alpn_protocols(["h2"])
        with socket.create_connection(("127.0.0.1", m.client_port), timeout=5) as raw:
            with ctx13.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.version() == "TLSv1.3"
    finally:
        m.stop()


def test_auto_tls_serves_a_self_signed_certificate_from_the_data_dir(tmp_path: Path) -> None:
    m = Member(data_dir=tmp_path / "auto.etcd", client_scheme="https", extra=["--auto-tls"])
    m.start(wait=False)
    try:
        cert = tmp_path / "auto.etcd" / "fixtures" / "client" / "cert.pem"
        wait_until(cert.exists, timeout=20)
        m.credentials = grpc.ssl_channel_credentials(cert.read_bytes())
        m.wait_ready(20)
        proc = etcdctl(
            m.endpoint, "--insecure-skip-tls-verify", "--insecure-transport=false", "put", "a", "b"
        )
        assert proc.stdout == "OK\n"
    finally:
        m.stop()


def test_https_client_url_without_a_certificate_is_a_configuration_error(tmp_path: Path) -> None:
    m = Member(data_dir=tmp_path / "d", client_scheme="https")
    with pytest.raises(
        RuntimeError, match="TLS key/cert \\(--cert-file, --key-file\\) must be provided"
    ):
        m.start()


# -- peers -------------------------------------------------------------------------


def _peer_tls_cluster(base: Path, ca: CertificateAuthority) -> Cluster:
    c = Cluster.create(base, 3)
    for i, m in enumerate(c.members):
        m.peer_scheme = "https"
        pair = ca.issue(m.name, hosts=(member_host(i),))
        m.extra += [
            f"--peer-cert-file={pair.cert}",
            f"--peer-key-file={pair.key}",
            f"--peer-trusted-ca-file={ca.cert}",
            "--peer-client-cert-auth",
        ]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in c.members)
    for m in c.members:
        m.initial_cluster = initial
    return c


def test_members_replicate_over_mutual_peer_tls(tmp_path: Path, ca: CertificateAuthority) -> None:
    c = _peer_tls_cluster(tmp_path, ca).start()
    try:
        leader = c.leader()
        with grpc.insecure_channel(leader.endpoint) as ch:
            from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

            rpc_pb2_grpc.KVStub(ch).Put(
                rpc_pb2.PutRequest(key=b"peer-tls", value=b"ok"), timeout=10
            )
        for m in c.members:
            args = ["get", "peer-tls", "--consistency=s", "--print-value-only"]
            out = subprocess.run(
                [etcd_bin("etcdctl"), f"--endpoints={m.endpoint}", *args],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout
            assert out == "ok\n"
    finally:
        c.stop()


def test_member_with_an_untrusted_peer_certificate_cannot_join(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    (tmp_path / "c").mkdir()
    c = _peer_tls_cluster(tmp_path / "c", ca)
    # The third member's certificate comes from a CA the others do not trust.
    stranger = CertificateAuthority(tmp_path).issue("n3", hosts=(member_host(2),))
    third = c.members[2]
    third.extra = [
        a for a in third.extra if not a.startswith(("--peer-cert-file", "--peer-key-file"))
    ]
    third.extra += [f"--peer-cert-file={stranger.cert}", f"--peer-key-file={stranger.key}"]
    for m in c.members:
        m.start(wait=False)
    try:
        c.leader(among=c.members[:2])  # the two trusted members still form a quorum
        # The untrusted one never hears from the cluster: it cannot serve a
        # linearizable read.
        with grpc.insecure_channel(third.endpoint) as ch:
            from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

            with pytest.raises(grpc.RpcError):
                rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"x"), timeout=3)
    finally:
        c.stop()


def test_with_auth_on_the_client_certificate_common_name_is_the_user(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    m = tls_member(
        tmp_path / "d", ca, ca.issue("server"), f"--trusted-ca-file={ca.cert}", "--client-cert-auth"
    ).start()
    try:
        root, alice = _with_cert(ca, ca.issue("root")), _with_cert(ca, ca.issue("alice"))
        for cmd in (
            "user add root:rootpw",
            "user grant-role root root",
            "role add app",
            "role grant-permission app readwrite app/ --prefix",
            "user add alice --no-password",
            "user grant-role alice app",
            "auth enable",
        ):
            assert etcdctl(m.endpoint, *root, *cmd.split()).returncode == 0, cmd
        # No password, no token: the certificate says who is calling.
        assert etcdctl(m.endpoint, *alice, "put", "app/k", "v").stdout == "OK\n"
        denied = etcdctl(m.endpoint, *alice, "put", "other", "v")
        assert "etcdserver: permission denied" in denied.stderr
        assert etcdctl(m.endpoint, *root, "user", "list").stdout == "alice\nroot\n"
    finally:
        m.stop()
