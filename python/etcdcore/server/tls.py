"""TLS set-up on the Python side: etcd's --auto-tls / --peer-auto-tls
certificates, the settings handed to the core (which terminates TLS), and
credentials for the process's own gRPC clients (lock/election loopback,
lease forwarding to the leader)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import replace
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from etcdcore._core import TlsConfig

from .config import ServerConfig, TlsFiles


def self_signed(directory: Path, hosts: list[str], validity_years: int) -> tuple[str, str]:
    """A self-signed ECDSA P-256 pair for ``hosts`` in ``directory`` (kept and
    reused when it is already there, as etcd's SelfCert does)."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if cert_path.exists() and key_path.exists():
        return str(cert_path), str(key_path)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys([*hosts, "127.0.0.1", "localhost"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "etcd")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=365 * max(1, validity_years)))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,
                key_cert_sign=True,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(cert_path), str(key_path)


def _hosts(urls: list[str]) -> list[str]:
    return [u.split("://", 1)[1].rsplit(":", 1)[0].strip("[]") for u in urls]


def resolve(cfg: ServerConfig) -> ServerConfig:
    """The configuration with auto-TLS certificates made (under
    ``<data-dir>/fixtures/{client,peer}``) and their paths filled in."""
    out = cfg
    if cfg.client_tls.auto_tls and not (cfg.client_tls.cert_file and cfg.client_tls.key_file):
        hosts = _hosts(cfg.listen_client_urls + cfg.advertise_client_urls)
        cert, key = self_signed(
            Path(cfg.data_dir) / "fixtures" / "client", hosts, cfg.self_signed_cert_validity
        )
        out = replace(out, client_tls=replace(cfg.client_tls, cert_file=cert, key_file=key))
    if cfg.peer_tls.auto_tls and not (cfg.peer_tls.cert_file and cfg.peer_tls.key_file):
        hosts = _hosts(cfg.listen_peer_urls + cfg.initial_advertise_peer_urls)
        cert, key = self_signed(
            Path(cfg.data_dir) / "fixtures" / "peer", hosts, cfg.self_signed_cert_validity
        )
        out = replace(out, peer_tls=replace(cfg.peer_tls, cert_file=cert, key_file=key))
    return out


def core_tls(files: TlsFiles, cfg: ServerConfig) -> TlsConfig:
    """The core's settings for one side."""
    return TlsConfig(
        cert_file=files.cert_file,
        key_file=files.key_file,
        trusted_ca_file=files.trusted_ca_file,
        client_cert_auth=files.client_cert_auth,
        cipher_suites=cfg.cipher_suites,
        min_version=cfg.tls_min_version,
        crl_file=files.crl_file,
    )


def client_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """Credentials for this process's own calls to a client listener: its
    certificate as the client identity; the trusted CA, or for a self-signed
    certificate the certificate itself, as the root."""
    cert = Path(files.cert_file).read_bytes()
    root = Path(files.trusted_ca_file).read_bytes() if files.trusted_ca_file else cert
    return grpc.ssl_channel_credentials(
        root_certificates=root,
        private_key=Path(files.key_file).read_bytes(),
        certificate_chain=cert,
    )
