"""A throwaway certificate authority for TLS tests: a CA, and the server and
client certificates it signs."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pair:
    pair = Pair(path.with_suffix(".crt"), path.with_suffix(".key"))
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pair


class CertificateAuthority:
    """``ca = CertificateAuthority(dir)``; ``ca.issue("server", server=True)``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(_name("etcdcore test CA"))
            .issuer_name(_name("etcdcore test CA"))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )  # fmt: skip
        self.pair = _write(directory / "ca", self._cert, self._key)

    @property
    def cert(self) -> Path:
        return self.pair.cert

    def issue(
        self,
        name: str,
        hosts: tuple[str, ...] = ("127.0.0.1",),
        client_auth: bool = True,
        *,
        common_name: bool = True,
    ) -> Pair:
        """A certificate for ``name`` (its common name, unless not
        ``common_name``: etcd's proxy wants none on its client certificate),
        valid for ``hosts`` and usable by a server and a client alike (etcd
        checks both usages; ``client_auth=False``: by a server only)."""
        usages = [ExtendedKeyUsageOID.SERVER_AUTH]
        if client_auth:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name) if common_name else x509.Name([]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address(h)) for h in hosts]
                    + [x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return _write(self.directory / name, cert, key)

    def revoke(self, *pairs: Pair, name: str = "revoked") -> Path:
        """A PEM certificate revocation list, signed by this CA, listing the
        certificates of ``pairs`` (none: an empty list)."""
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._cert.subject)
            .last_update(now - datetime.timedelta(minutes=5))
            .next_update(now + datetime.timedelta(days=1))
        )
        for pair in pairs:
            serial = x509.load_pem_x509_certificate(pair.cert.read_bytes()).serial_number
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(now - datetime.timedelta(minutes=1))
                .build()
            )
        crl = builder.sign(self._key, hashes.SHA256())
        path = self.directory / f"{name}.crl"
        path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return path

    def issue_v1(self, name: str) -> Pair:
        """An X.509 version 1 certificate for ``name`` (no extensions at all),
        as ``openssl x509 -req`` makes without an extensions file."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        v3 = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self._key, hashes.SHA256())
        )
        # cryptography writes only v3: drop the [0] version element (a v3
        # certificate without extensions has no [3] element) and sign again.
        _, tbs_fields = _der_split(v3.tbs_certificate_bytes)
        fields = _der_elements(tbs_fields)
        assert fields[0][0] == 0xA0, "expected an explicit version"
        tbs = _der(0x30, b"".join(raw for _, raw in fields[1:]))
        signature = self._key.sign(tbs, ec.ECDSA(hashes.SHA256()))
        _, cert_fields = _der_split(v3.public_bytes(serialization.Encoding.DER))
        signature_algorithm = _der_elements(cert_fields)[1][1]
        der = _der(0x30, tbs + signature_algorithm + _der(0x03, b"\0" + signature))
        cert = x509.load_der_x509_certificate(der)
        assert cert.version == x509.Version.v1
        return _write(self.directory / name, cert, key)


def _der(tag: int, contents: bytes) -> bytes:
    n = len(contents)
    if n < 0x80:
        length = bytes([n])
    else:
        size = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(size)]) + size
    return bytes([tag]) + length + contents


def _der_split(data: bytes) -> tuple[int, bytes]:
    """(tag, contents) of the single DER element ``data``."""
    elements = _der_elements(data)
    assert len(elements) == 1
    tag, raw = elements[0]
    header = 2 if raw[1] < 0x80 else 2 + (raw[1] & 0x7F)
    return tag, raw[header:]


def _der_elements(data: bytes) -> list[tuple[int, bytes]]:
    """The consecutive DER elements of ``data``: (tag, whole encoding)."""
    out = []
    i = 0
    while i < len(data):
        tag, first = data[i], data[i + 1]
        if first < 0x80:
            length, header = first, 2
        else:
            size = first & 0x7F
            length, header = int.from_bytes(data[i + 2 : i + 2 + size], "big"), 2 + size
        out.append((tag, data[i : i + header + length]))
        i += header + length
    return out
