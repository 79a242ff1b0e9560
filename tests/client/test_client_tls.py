"""TLS through the client, against etcdcore and real etcd 3.5 alike: a server
on https:// that requires client certificates signed by its CA."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from certs import CertificateAuthority, Pair
from etcdcore.client import AsyncClient, Client, EtcdError, UnavailableError
from harness import Member, etcd_bin


@dataclass
class TlsEtcd:
    member: Member
    ca: CertificateAuthority
    client: Pair

    @property
    def url(self) -> str:
        return f"https://{self.member.endpoint}"


@pytest.fixture(scope="module", params=["etcdcore", "etcd"])
def tls_etcd(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsEtcd]:
    """A server on https:// that requires a client certificate signed by its CA."""
    tmp = tmp_path_factory.mktemp("tls")
    ca = CertificateAuthority(tmp)
    server = ca.issue("server")
    member = Member(data_dir=tmp / "data", client_scheme="https")
    if request.param == "etcd":
        member.command = [etcd_bin("etcd")]
    member.extra = [
        "--cert-file", str(server.cert),
        "--key-file", str(server.key),
        "--trusted-ca-file", str(ca.cert),
        "--client-cert-auth",
    ]  # fmt: skip
    member.start(wait=False)
    etcd = TlsEtcd(member, ca, ca.issue("client"))
    try:
        _wait_ready(etcd, timeout=20)
        yield etcd
    finally:
        member.stop()


def _wait_ready(etcd: TlsEtcd, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with Client([etcd.url], timeout=1, ca_cert=etcd.ca.cert, cert=etcd.client.cert,
                key=etcd.client.key) as c:  # fmt: skip
        while True:
            assert etcd.member.running, etcd.member.log()
            try:
                c.get("health")
                return
            except EtcdError as e:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd not ready in {timeout}s:\n{etcd.member.log()}") from e
                time.sleep(0.1)


def test_a_client_with_its_certificate_puts_and_gets(tls_etcd: TlsEtcd) -> None:
    pair = tls_etcd.client
    with Client([tls_etcd.url], ca_cert=tls_etcd.ca.cert, cert=pair.cert, key=pair.key) as c:
        c.put("tls/k", "secret")
        assert c.get("tls/k").value == b"secret"


def test_certificates_may_be_given_as_pem_bytes(tls_etcd: TlsEtcd) -> None:
    pair = tls_etcd.client
    with Client(
        [tls_etcd.member.endpoint],
        ca_cert=tls_etcd.ca.cert.read_bytes(),
        cert=pair.cert.read_bytes(),
        key=pair.key.read_bytes(),
    ) as c:
        c.put("tls/bytes", "1")
        assert c.get("tls/bytes").value == b"1"


def test_a_client_without_a_certificate_is_refused(tls_etcd: TlsEtcd) -> None:
    with Client([tls_etcd.url], timeout=2, ca_cert=tls_etcd.ca.cert) as c:
        with pytest.raises(UnavailableError):
            c.put("tls/nocert", "x")


def test_a_server_certificate_from_an_unknown_ca_is_refused(tls_etcd: TlsEtcd) -> None:
    with Client([tls_etcd.url], timeout=2) as c:  # the system's roots only
        with pytest.raises(UnavailableError):
            c.get("tls/k")


def test_a_plain_text_client_is_refused(tls_etcd: TlsEtcd) -> None:
    with Client([f"http://{tls_etcd.member.endpoint}"], timeout=2) as c:
        with pytest.raises(UnavailableError):
            c.get("tls/k")


def test_async_client_with_its_certificate_puts_and_gets(tls_etcd: TlsEtcd) -> None:
    pair = tls_etcd.client

    async def run() -> bytes | None:
        async with AsyncClient(
            [tls_etcd.url], ca_cert=tls_etcd.ca.cert, cert=pair.cert, key=pair.key
        ) as c:
            await c.put("tls/async", "v")
            return (await c.get("tls/async")).value

    assert asyncio.run(run()) == b"v"


def test_cert_without_key_is_rejected_before_connecting() -> None:
    with pytest.raises(ValueError):
        Client(["https://127.0.0.1:1"], cert=b"pem")
