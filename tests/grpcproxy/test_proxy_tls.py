"""TLS with the proxy: towards the cluster (--cert, --key, --cacert,
--insecure-skip-tls-verify) and on its own listener (--cert-file,
--key-file, --trusted-ca-file, --auto-tls), driven with the real etcdctl."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from certs import CertificateAuthority
from cluster import wait_until
from harness import GrpcProxy, Member, etcd_bin, etcdcore_command, free_port


def etcdctl(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [etcd_bin("etcdctl"), f"--endpoints=https://{endpoint}", "--command-timeout=3s", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def mtls_cluster(
    tmp_path_factory: pytest.TempPathFactory, ca: CertificateAuthority
) -> Iterator[Member]:
    """An etcdcore member that wants client certificates signed by ``ca``."""
    base = tmp_path_factory.mktemp("cluster")
    server = ca.issue("server")
    creds = grpc.ssl_channel_credentials(
        ca.cert.read_bytes(), server.key.read_bytes(), server.cert.read_bytes()
    )
    m = Member(
        data_dir=base / "data",
        client_scheme="https",
        credentials=creds,
        extra=[
            f"--cert-file={server.cert}",
            f"--key-file={server.key}",
            f"--trusted-ca-file={ca.cert}",
            "--client-cert-auth",
        ],
    ).start()
    try:
        yield m
    finally:
        m.stop()


def tls_proxy(base: Path, cluster: Member, extra: list[str], creds=None) -> GrpcProxy:  # noqa: ANN001
    return GrpcProxy(
        endpoints=f"https://{cluster.endpoint}", log_dir=base, extra=extra, credentials=creds
    ).start()


def test_tls_on_both_sides_with_client_certificates(
    tmp_path: Path, ca: CertificateAuthority, mtls_cluster: Member
) -> None:
    to_cluster = ca.issue("proxy-client", common_name=False)
    listener = ca.issue("proxy")
    user = ca.issue("user")
    creds = grpc.ssl_channel_credentials(
        ca.cert.read_bytes(), user.key.read_bytes(), user.cert.read_bytes()
    )
    p = tls_proxy(
        tmp_path,
        mtls_cluster,
        [
            f"--cert={to_cluster.cert}",
            f"--key={to_cluster.key}",
            f"--cacert={ca.cert}",
            f"--cert-file={listener.cert}",
            f"--key-file={listener.key}",
            f"--trusted-ca-file={ca.cert}",
        ],  # fmt: skip
        creds,
    )
    try:
        with_cert = [f"--cacert={ca.cert}", f"--cert={user.cert}", f"--key={user.key}"]
        assert etcdctl(p.endpoint, *with_cert, "put", "tls", "yes").stdout.strip() == "OK"
        assert etcdctl(p.endpoint, *with_cert, "get", "tls").stdout.split() == ["tls", "yes"]
        # The listener wants a client certificate (a trusted CA was given).
        refused = etcdctl(p.endpoint, f"--cacert={ca.cert}", "get", "tls")
        assert refused.returncode != 0
    finally:
        p.stop()


def test_insecure_skip_tls_verify_trusts_any_cluster_certificate(
    tmp_path: Path, ca: CertificateAuthority, mtls_cluster: Member
) -> None:
    to_cluster = ca.issue("proxy-client2", common_name=False)
    p = GrpcProxy(
        endpoints=f"https://{mtls_cluster.endpoint}",
        log_dir=tmp_path,
        extra=[
            f"--cert={to_cluster.cert}",
            f"--key={to_cluster.key}",
            "--insecure-skip-tls-verify",
        ],
    ).start()
    try:
        assert p.etcdctl("put", "skip", "1").stdout.strip() == "OK"
        assert "--insecure-skip-tls-verify was given" in p.log()
    finally:
        p.stop()


def test_a_cluster_certificate_with_a_common_name_is_refused(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    named = ca.issue("named")
    args = [
        "grpc-proxy", "start", f"--listen-addr=127.0.0.1:{free_port()}",
        f"--cert={named.cert}", f"--key={named.key}", f"--cacert={ca.cert}",
    ]  # fmt: skip
    ours = subprocess.run([*etcdcore_command(), *args], capture_output=True, text=True, timeout=20)
    theirs = subprocess.run([etcd_bin("etcd"), *args], capture_output=True, text=True, timeout=20)
    expected = f"cert has non empty Common Name (named): {named.cert}"
    assert ours.returncode == theirs.returncode == 1
    assert expected in ours.stderr and expected in theirs.stderr


def test_auto_tls_serves_a_self_signed_certificate(tmp_path: Path, member: Member) -> None:
    data = tmp_path / "proxy-data"
    p = GrpcProxy(
        endpoints=member.endpoint, log_dir=tmp_path, extra=["--auto-tls", f"--data-dir={data}"]
    )
    proc = subprocess.Popen(p.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cert = data / "fixtures" / "proxy" / "cert.pem"
        wait_until(cert.exists, timeout=20)
        flags = ["--insecure-skip-tls-verify", "--insecure-transport=false"]
        wait_until(lambda: etcdctl(p.endpoint, *flags, "put", "auto", "tls").returncode == 0)
        assert etcdctl(p.endpoint, *flags, "get", "auto").stdout.split() == ["auto", "tls"]
        plain = subprocess.run(
            [etcd_bin("etcdctl"), f"--endpoints={p.endpoint}", "--command-timeout=2s", "get", "a"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert plain.returncode != 0
    finally:
        proc.terminate()
        proc.wait(10)
