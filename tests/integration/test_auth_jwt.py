"""``--auth-token jwt,...`` as etcd 3.5: Authenticate hands out a signed JWT
naming the user and the auth store revision; every member verifies it with
its key; an expired or forged token is an invalid auth token, one from before
an auth change is refused as old so that clients log in again; bad flag
values stop the server with etcd's message (compared with real etcd)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from cluster import Cluster, running_cluster
from etcdcore.client import AsyncClient, Client
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import Member, etcd_bin, etcdcore_command, etcdctl, free_port

ROOT_PASSWORD = "rootpw"
INVALID_TOKEN = "etcdserver: invalid auth token"
OLD_REVISION = "etcdserver: revision of auth store is old"
NOT_PEM = "Invalid Key: Key must be a PEM encoded PKCS1 or PKCS8 key"
# Go's x509 on a private key of the other family.
X509_PREFIX, X509_SUFFIX = (
    "x509: failed to parse private key (use ",
    " instead for this key format)",
)


# -- keys and tokens ------------------------------------------------------------------


def write_keys(directory: Path, method: str) -> tuple[Path, Path]:
    """(private, public) PEM files for ``method``, in the formats openssl
    writes by default (PKCS#1 for RSA, SEC1 for EC); for HMAC a secret (the
    private key file) and no public key."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    private, public = directory / f"{method}.key", directory / f"{method}.pub"
    if method.startswith("HS"):
        private.write_bytes(os.urandom(32))
        return private, public
    if method.startswith("ES"):
        key = ec.generate_private_key(ec.SECP256R1() if method == "ES256" else ec.SECP384R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def jwt_flag(private: Path | None, public: Path | None, method: str, ttl: str = "") -> str:
    flag = "jwt"
    if public is not None and public.exists():
        flag += f",pub-key={public}"
    if private is not None:
        flag += f",priv-key={private}"
    flag += f",sign-method={method}"
    return flag + (f",ttl={ttl}" if ttl else "")


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def split_token(token: str) -> tuple[dict, dict, bytes, bytes]:
    """(header, claims, signed message, signature) of a JWT."""
    header, claims, signature = token.split(".")
    return (
        json.loads(_b64(header)),
        json.loads(_b64(claims)),
        f"{header}.{claims}".encode(),
        _b64(signature),
    )


def verify_signature(public: Path, method: str, message: bytes, signature: bytes) -> None:
    key = serialization.load_pem_public_key(public.read_bytes())
    if method == "ES256":
        assert isinstance(key, ec.EllipticCurvePublicKey)
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        key.verify(utils.encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
    else:
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


# -- servers --------------------------------------------------------------------------


def enable_auth(endpoints: str) -> None:
    """root with the root role, and auth on (through real etcdctl)."""
    for cmd in (f"user add root:{ROOT_PASSWORD}", "auth enable"):
        etcdctl(endpoints, *cmd.split())


def authenticate(endpoint: str, name: str = "root", password: str = ROOT_PASSWORD) -> str:
    with grpc.insecure_channel(endpoint) as ch:
        return (
            rpc_pb2_grpc.AuthStub(ch)
            .Authenticate(rpc_pb2.AuthenticateRequest(name=name, password=password), timeout=10)
            .token
        )


def range_with(endpoint: str, token: str) -> rpc_pb2.RangeResponse:
    with grpc.insecure_channel(endpoint) as ch:
        return rpc_pb2_grpc.KVStub(ch).Range(
            rpc_pb2.RangeRequest(key=b"k"), metadata=[("token", token)], timeout=10
        )


def refused(endpoint: str, token: str) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        range_with(endpoint, token)
    return e.value.code(), e.value.details()


def start_secured(
    directory: Path, flag: str, command: list[str] | None = None, extra: Sequence[str] = ()
) -> Member:
    m = Member(data_dir=directory, extra=["--auth-token", flag, *extra])
    if command is not None:
        m.command = command
    m.start()
    enable_auth(m.endpoint)
    return m


@pytest.fixture(scope="module")
def rs256(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Member, Path]]:
    """An etcdcore member with RS256 JWTs and auth on, and its public key."""
    base = tmp_path_factory.mktemp("jwt-rs256")
    private, public = write_keys(base, "RS256")
    m = start_secured(base / "d", jwt_flag(private, public, "RS256"))
    try:
        yield m, public
    finally:
        m.stop()


# -- tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["RS256", "PS384", "ES256", "ES384", "HS256"])
def test_etcdctl_with_a_user_puts_and_gets_on_a_jwt_server(tmp_path: Path, method: str) -> None:
    private, public = write_keys(tmp_path, method)
    m = start_secured(tmp_path / "d", jwt_flag(private, public, method))
    try:
        m.etcdctl("--user", f"root:{ROOT_PASSWORD}", "put", "k", "v")
        got = m.etcdctl("--user", f"root:{ROOT_PASSWORD}", "get", "k").stdout
        assert got.splitlines() == ["k", "v"]
    finally:
        m.stop()


def test_authenticate_returns_a_jwt_signed_with_the_configured_key(
    rs256: tuple[Member, Path],
) -> None:
    m, public = rs256
    before = time.time()
    header, claims, message, signature = split_token(authenticate(m.endpoint))
    assert header == {"alg": "RS256", "typ": "JWT"}
    assert sorted(claims) == ["exp", "revision", "username"]
    assert claims["username"] == "root"
    with grpc.insecure_channel(m.endpoint) as ch:
        status = rpc_pb2_grpc.AuthStub(ch).AuthStatus(
            rpc_pb2.AuthStatusRequest(), metadata=[("token", authenticate(m.endpoint))]
        )
    assert claims["revision"] == status.authRevision
    # The default ttl is etcd's five minutes.
    assert before + 300 - 2 <= claims["exp"] <= time.time() + 300 + 1
    verify_signature(public, "RS256", message, signature)


def test_a_token_with_a_forged_signature_is_an_invalid_auth_token(
    rs256: tuple[Member, Path],
) -> None:
    m, _ = rs256
    token = authenticate(m.endpoint)
    header, _, signature = token.split(".")
    claims = {**split_token(token)[1], "username": "mallory"}
    forged_claims = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    forged = f"{header}.{forged_claims}.{signature}"
    assert refused(m.endpoint, forged) == (grpc.StatusCode.UNAUTHENTICATED, INVALID_TOKEN)


def test_an_expired_token_is_an_invalid_auth_token(tmp_path: Path) -> None:
    private, public = write_keys(tmp_path, "ES256")
    m = start_secured(tmp_path / "d", jwt_flag(private, public, "ES256", ttl="1s"))
    try:
        token = authenticate(m.endpoint)
        range_with(m.endpoint, token)
        time.sleep(2.1)
        assert refused(m.endpoint, token) == (grpc.StatusCode.UNAUTHENTICATED, INVALID_TOKEN)
        # etcdctl logs in for each command: short-lived tokens do not hurt it.
        assert m.etcdctl("--user", f"root:{ROOT_PASSWORD}", "get", "k").returncode == 0
    finally:
        m.stop()


def test_a_token_outlives_a_restart_of_the_member(tmp_path: Path) -> None:
    """Unlike simple tokens (kept in memory), a JWT only needs the key."""
    private, public = write_keys(tmp_path, "ES384")
    m = start_secured(tmp_path / "d", jwt_flag(private, public, "ES384"))
    try:
        token = authenticate(m.endpoint)
        m.stop()
        m.start()
        assert range_with(m.endpoint, token).header.revision >= 1
    finally:
        m.stop()


def test_a_token_issued_by_one_member_is_accepted_by_the_others(tmp_path: Path) -> None:
    private, public = write_keys(tmp_path, "RS256")
    extra = ["--auth-token", jwt_flag(private, public, "RS256")]
    with running_cluster(tmp_path, 3, extra=extra) as c:
        enable_auth(c.endpoints)
        token = authenticate(c.members[0].endpoint)
        for m in c.members[1:]:
            assert range_with(m.endpoint, token).header.revision >= 1


def test_a_verify_only_member_accepts_tokens_but_cannot_issue_them(tmp_path: Path) -> None:
    private, public = write_keys(tmp_path, "ES256")
    c = Cluster.create(tmp_path, 3)
    for i, m in enumerate(c.members):
        key = private if i == 0 else None
        m.extra += ["--auth-token", jwt_flag(key, public, "ES256")]
    c.start()
    try:
        enable_auth(c.endpoints)
        token = authenticate(c.members[0].endpoint)
        assert range_with(c.members[1].endpoint, token).header.revision >= 1
        with pytest.raises(grpc.RpcError) as e:
            authenticate(c.members[1].endpoint)
        assert (e.value.code(), e.value.details()) == (
            grpc.StatusCode.UNKNOWN,
            "auth: token signing attempted with verify-only key",
        )
    finally:
        c.stop()


def test_tokens_look_like_real_etcds(tmp_path: Path) -> None:
    """Differential: the same flag on real etcd 3.5 gives the same header and
    the same claims (the revision of a store with one user, auth enabled)."""
    private, public = write_keys(tmp_path, "RS256")
    flag = jwt_flag(private, public, "RS256", ttl="10m")
    shapes = []
    for command in (etcdcore_command(), [etcd_bin("etcd")]):
        m = start_secured(tmp_path / f"d{len(shapes)}", flag, command)
        try:
            header, claims, message, signature = split_token(authenticate(m.endpoint))
            verify_signature(public, "RS256", message, signature)
            shapes.append((header, sorted(claims), claims["revision"], claims["username"]))
        finally:
            m.stop()
    assert shapes[0] == shapes[1]


# -- auth revision --------------------------------------------------------------------


def test_a_token_from_before_an_auth_change_is_refused_as_old(
    rs256: tuple[Member, Path],
) -> None:
    m, _ = rs256
    token = authenticate(m.endpoint)
    m.etcdctl("--user", f"root:{ROOT_PASSWORD}", "user", "add", f"u{free_port()}:pw")
    assert refused(m.endpoint, token) == (grpc.StatusCode.INVALID_ARGUMENT, OLD_REVISION)
    range_with(m.endpoint, authenticate(m.endpoint))


def test_a_watch_with_an_old_token_is_cancelled_with_the_old_revision_reason(
    rs256: tuple[Member, Path],
) -> None:
    m, _ = rs256
    token = authenticate(m.endpoint)
    m.etcdctl("--user", f"root:{ROOT_PASSWORD}", "user", "add", f"u{free_port()}:pw")
    create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"k"))
    with grpc.insecure_channel(m.endpoint) as ch:
        stream = rpc_pb2_grpc.WatchStub(ch).Watch(iter([create]), metadata=[("token", token)])
        first = next(stream)
        stream.cancel()
    assert first.canceled
    assert first.cancel_reason == OLD_REVISION


def test_etcdctl_and_our_client_log_in_again_after_an_auth_change(
    rs256: tuple[Member, Path],
) -> None:
    m, _ = rs256
    with Client([m.endpoint], user="root", password=ROOT_PASSWORD) as client:
        client.put("k", "before")
        m.etcdctl("--user", f"root:{ROOT_PASSWORD}", "user", "add", f"u{free_port()}:pw")
        client.put("k", "after")
        assert client.get("k").value == b"after"
    proc = m.etcdctl("--user", f"root:{ROOT_PASSWORD}", "get", "k")
    assert proc.stdout.splitlines() == ["k", "after"]


def test_the_async_client_logs_in_again_after_an_auth_change(
    rs256: tuple[Member, Path],
) -> None:
    m, _ = rs256

    async def scenario() -> bytes:
        async with AsyncClient([m.endpoint], user="root", password=ROOT_PASSWORD) as client:
            await client.put("ak", "before")
            m.etcdctl("--user", f"root:{ROOT_PASSWORD}", "user", "add", f"u{free_port()}:pw")
            await client.put("ak", "after")
            return (await client.get("ak")).value

    assert asyncio.run(scenario()) == b"after"


def test_the_http_gateway_takes_a_jwt_in_the_authorization_header(tmp_path: Path) -> None:
    secret, _ = write_keys(tmp_path, "HS256")
    port = free_port()
    m = start_secured(
        tmp_path / "d",
        jwt_flag(secret, None, "HS256"),
        extra=[f"--listen-client-http-urls=http://127.0.0.1:{port}"],
    )
    try:
        url = f"http://127.0.0.1:{port}/v3"
        body = json.dumps({"name": "root", "password": ROOT_PASSWORD}).encode()
        with urllib.request.urlopen(f"{url}/auth/authenticate", body, timeout=10) as r:
            token = json.load(r)["token"]
        assert split_token(token)[0] == {"alg": "HS256", "typ": "JWT"}
        request = urllib.request.Request(
            f"{url}/kv/range",
            json.dumps({"key": base64.b64encode(b"k").decode()}).encode(),
            headers={"Authorization": token},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            assert "header" in json.load(r)
    finally:
        m.stop()


# -- the flag -------------------------------------------------------------------------


def start_error(command: list[str], directory: Path, flag: str) -> tuple[int, str]:
    """(exit code, the error of the "failed to start etcd" log line)."""
    client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [
            *command,
            "--data-dir",
            str(directory),
            "--listen-client-urls",
            client,
            "--advertise-client-urls",
            client,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            f"default={peer}",
            "--auth-token",
            flag,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=30,
    )
    for line in (proc.stdout + proc.stderr).splitlines():
        if "failed to start etcd" in line:
            return proc.returncode, json.loads(line)["error"]
    raise AssertionError(f"no start failure logged ({proc.returncode}):\n{proc.stderr}")


@pytest.mark.parametrize(
    "options, message",
    [
        ("", "auth: invalid auth options"),
        (",sign-method=RS256", "auth: missing key data"),
        (",sign-method=HS256", "auth: missing key data"),
        (",sign-method=XX256,pub-key=PUB", "auth: invalid auth options"),
        (",sign-method=none,priv-key=KEY", "unsupported signing method: *jwt.signingMethodNone"),
        (",sign-method=RS256,priv-key=/no/such/key", "auth: invalid auth options"),
        (",sign-method=RS256,priv-key=KEY,ttl=5x", "auth: invalid auth options"),
        (",sign-method=RS256,priv-key=KEY,sign-method=RS384", "auth: invalid auth options"),
        (",pub-key", "auth: invalid auth options"),
        (",sign-method=RS256,priv-key=JUNK", NOT_PEM),
        (",sign-method=ES256,pub-key=JUNK", NOT_PEM),
        (",sign-method=RS256,pub-key=ECPUB", "Key is not a valid RSA public key"),
        (",sign-method=ES256,priv-key=KEY", X509_PREFIX + "ParsePKCS1PrivateKey" + X509_SUFFIX),
        (",sign-method=ES256,pub-key=PUB", "Key is not a valid ECDSA public key"),
        (",sign-method=RS256,priv-key=ECKEY", X509_PREFIX + "ParseECPrivateKey" + X509_SUFFIX),
    ],
)
def test_a_bad_jwt_flag_stops_the_server_with_etcds_message(
    tmp_path: Path, options: str, message: str
) -> None:
    private, public = write_keys(tmp_path, "RS256")
    ec_private, ec_public = write_keys(tmp_path, "ES256")
    junk = tmp_path / "junk"
    junk.write_text("not a key")
    paths = {"ECKEY": ec_private, "ECPUB": ec_public, "KEY": private, "PUB": public, "JUNK": junk}
    flag = "jwt" + options
    for placeholder, path in paths.items():
        flag = flag.replace(f"={placeholder}", f"={path}")
    assert start_error(etcdcore_command(), tmp_path / "ours", flag) == (1, message)
    assert start_error([etcd_bin("etcd")], tmp_path / "etcd", flag) == (1, message)


def test_an_unknown_token_type_stops_the_server(tmp_path: Path) -> None:
    assert start_error(etcdcore_command(), tmp_path / "d", "bogus") == (
        1,
        "auth: invalid auth options",
    )


def test_unknown_jwt_options_are_only_warned_about(tmp_path: Path) -> None:
    private, public = write_keys(tmp_path, "RS256")
    m = Member(
        data_dir=tmp_path / "d",
        extra=["--auth-token", jwt_flag(private, public, "RS256") + ",colour=blue"],
    ).start()
    try:
        warnings = [json.loads(x) for x in m.log().splitlines() if "unknown JWT options" in x]
        assert [w["keys"] for w in warnings] == [["colour"]]
    finally:
        m.stop()
