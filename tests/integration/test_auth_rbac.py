"""Authentication and RBAC on etcdcore, through the gRPC API as clients use
it: tokens, permissions on every kind of request, tokens shared across a
cluster, the auth store surviving restarts."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cluster import Cluster
from etcdcore.client import Client
from etcdcore.proto.authpb import auth_pb2
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import Member, etcdctl


def _setup(endpoint: str) -> None:
    """root, and alice who may read and write under app/ and only read pub/."""
    for cmd in (
        "user add root:rootpw",
        "role add app",
        "role grant-permission app readwrite app/ --prefix",
        "role grant-permission app read pub/ --prefix",
        "user add alice:alicepw",
        "user grant-role alice app",
        "auth enable",
    ):
        etcdctl(endpoint, *cmd.split())


def token(endpoint: str, name: str, password: str) -> list[tuple[str, str]]:
    with grpc.insecure_channel(endpoint) as ch:
        resp = rpc_pb2_grpc.AuthStub(ch).Authenticate(
            rpc_pb2.AuthenticateRequest(name=name, password=password), timeout=10
        )
    return [("token", resp.token)]


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Member]:
    m = Member(data_dir=tmp_path / "d", extra=["--auth-token-ttl=300"]).start()
    _setup(m.endpoint)
    try:
        yield m
    finally:
        m.stop()


def _kv(m: Member) -> tuple[grpc.Channel, rpc_pb2_grpc.KVStub]:
    ch = grpc.insecure_channel(m.endpoint)
    return ch, rpc_pb2_grpc.KVStub(ch)


def _denied(call, code: grpc.StatusCode, message: str) -> None:  # noqa: ANN001
    with pytest.raises(grpc.RpcError) as e:
        call()
    assert (e.value.code(), e.value.details()) == (code, message)


def test_authenticate_is_refused_while_auth_is_off(tmp_path: Path) -> None:
    m = Member(data_dir=tmp_path / "d").start()
    try:
        with grpc.insecure_channel(m.endpoint) as ch:
            _denied(
                lambda: rpc_pb2_grpc.AuthStub(ch).Authenticate(
                    rpc_pb2.AuthenticateRequest(name="root", password="x"), timeout=5
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
                "etcdserver: authentication is not enabled",
            )
    finally:
        m.stop()


def test_request_without_token_is_refused_with_user_name_empty(secured: Member) -> None:
    ch, kv = _kv(secured)
    with ch:
        _denied(
            lambda: kv.Range(rpc_pb2.RangeRequest(key=b"app/x"), timeout=5),
            grpc.StatusCode.INVALID_ARGUMENT,
            "etcdserver: user name is empty",
        )


def test_unknown_token_is_refused_as_invalid(secured: Member) -> None:
    ch, kv = _kv(secured)
    with ch:
        _denied(
            lambda: kv.Range(
                rpc_pb2.RangeRequest(key=b"app/x"), timeout=5, metadata=[("token", "bogus")]
            ),
            grpc.StatusCode.UNAUTHENTICATED,
            "etcdserver: invalid auth token",
        )


def test_txn_needs_read_permission_on_its_compares(secured: Member) -> None:
    md = token(secured.endpoint, "alice", "alicepw")
    ch, kv = _kv(secured)
    with ch:
        ok = rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(key=b"pub/flag", target=rpc_pb2.Compare.VERSION, version=0)],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"app/a", value=b"1"))],
        )
        assert kv.Txn(ok, timeout=5, metadata=md).succeeded
        forbidden = rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(key=b"secret", target=rpc_pb2.Compare.VERSION, version=0)],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"app/a", value=b"2"))],
        )
        _denied(
            lambda: kv.Txn(forbidden, timeout=5, metadata=md),
            grpc.StatusCode.PERMISSION_DENIED,
            "etcdserver: permission denied",
        )


def test_put_returning_the_previous_value_needs_read_permission(secured: Member) -> None:
    md = token(secured.endpoint, "alice", "alicepw")
    etcdctl(secured.endpoint, "--user=root:rootpw", "role", "add", "writer")
    etcdctl(
        secured.endpoint, "--user=root:rootpw", "role", "grant-permission", "writer", "write", "wo"
    )
    etcdctl(secured.endpoint, "--user=root:rootpw", "user", "grant-role", "alice", "writer")
    ch, kv = _kv(secured)
    with ch:
        kv.Put(rpc_pb2.PutRequest(key=b"wo", value=b"1"), timeout=5, metadata=md)
        _denied(
            lambda: kv.Put(
                rpc_pb2.PutRequest(key=b"wo", value=b"2", prev_kv=True), timeout=5, metadata=md
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            "etcdserver: permission denied",
        )


def test_watch_without_read_permission_is_cancelled_and_the_stream_lives_on(
    secured: Member,
) -> None:
    md = token(secured.endpoint, "alice", "alicepw")
    with grpc.insecure_channel(secured.endpoint) as ch:
        reqs = [
            rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"secret")),
            rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"app/w")),
        ]
        stream = rpc_pb2_grpc.WatchStub(ch).Watch(iter(reqs), metadata=md, timeout=10)
        first, second = next(stream), next(stream)
        assert (first.created, first.canceled, first.cancel_reason) == (
            True,
            True,
            "etcdserver: permission denied",
        )
        assert second.created and not second.canceled
        stream.cancel()


def test_revoking_a_lease_needs_write_permission_on_its_keys(secured: Member) -> None:
    root = token(secured.endpoint, "root", "rootpw")
    alice = token(secured.endpoint, "alice", "alicepw")
    with grpc.insecure_channel(secured.endpoint) as ch:
        lease = rpc_pb2_grpc.LeaseStub(ch)
        kv = rpc_pb2_grpc.KVStub(ch)
        lid = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60), timeout=5, metadata=root).ID
        kv.Put(
            rpc_pb2.PutRequest(key=b"pub/leased", value=b"v", lease=lid), timeout=5, metadata=root
        )
        _denied(
            lambda: lease.LeaseRevoke(
                rpc_pb2.LeaseRevokeRequest(ID=lid), timeout=5, metadata=alice
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            "etcdserver: permission denied",
        )
        lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=lid), timeout=5, metadata=root)


def test_compaction_and_membership_changes_need_the_root_role(secured: Member) -> None:
    alice = token(secured.endpoint, "alice", "alicepw")
    with grpc.insecure_channel(secured.endpoint) as ch:
        _denied(
            lambda: rpc_pb2_grpc.KVStub(ch).Compact(
                rpc_pb2.CompactionRequest(revision=1), timeout=5, metadata=alice
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            "etcdserver: permission denied",
        )
        _denied(
            lambda: rpc_pb2_grpc.ClusterStub(ch).MemberAdd(
                rpc_pb2.MemberAddRequest(peerURLs=["http://127.0.0.1:1"]), timeout=5, metadata=alice
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            "etcdserver: permission denied",
        )


def test_deleting_a_user_invalidates_its_tokens(secured: Member) -> None:
    alice = token(secured.endpoint, "alice", "alicepw")
    etcdctl(secured.endpoint, "--user=root:rootpw", "user", "delete", "alice")
    ch, kv = _kv(secured)
    with ch:
        _denied(
            lambda: kv.Range(rpc_pb2.RangeRequest(key=b"app/x"), timeout=5, metadata=alice),
            grpc.StatusCode.UNAUTHENTICATED,
            "etcdserver: invalid auth token",
        )


def test_tokens_expire_after_the_ttl_and_the_client_renews_them(tmp_path: Path) -> None:
    m = Member(data_dir=tmp_path / "d", extra=["--auth-token-ttl=2"]).start()
    try:
        _setup(m.endpoint)
        md = token(m.endpoint, "alice", "alicepw")
        with Client([m.endpoint], user="alice", password="alicepw") as c:
            c.put("app/k", "1")
            time.sleep(3)
            ch, kv = _kv(m)
            with ch:
                _denied(
                    lambda: kv.Range(rpc_pb2.RangeRequest(key=b"app/k"), timeout=5, metadata=md),
                    grpc.StatusCode.UNAUTHENTICATED,
                    "etcdserver: invalid auth token",
                )
            assert c.get("app/k").kvs[0].value == b"1"
    finally:
        m.stop()


def test_auth_store_survives_a_kill_and_restart(secured: Member) -> None:
    secured.stop(sig=signal.SIGKILL)
    secured.start()
    out = etcdctl(secured.endpoint, "--user=root:rootpw", "role", "get", "app").stdout
    assert "[app/, app0) (prefix app/)" in out
    denied = etcdctl(secured.endpoint, "get", "app/x", check=False)
    assert "user name is empty" in denied.stderr


def test_a_token_from_one_member_works_on_the_others(tmp_path: Path) -> None:
    c = Cluster.create(tmp_path, 3).start()
    try:
        _setup(c.members[0].endpoint)
        md = token(c.members[0].endpoint, "alice", "alicepw")
        for m in c.members:
            with grpc.insecure_channel(m.endpoint) as ch:
                rpc_pb2_grpc.KVStub(ch).Put(
                    rpc_pb2.PutRequest(key=f"app/{m.name}".encode(), value=b"v"),
                    timeout=10,
                    metadata=md,
                )
        got = etcdctl(
            c.endpoints, "--user=root:rootpw", "get", "app/", "--prefix", "--keys-only"
        ).stdout
        assert got.split() == ["app/n1", "app/n2", "app/n3"]
    finally:
        c.stop()


def test_role_get_lists_permissions_with_their_types(secured: Member) -> None:
    root = token(secured.endpoint, "root", "rootpw")
    with grpc.insecure_channel(secured.endpoint) as ch:
        resp = rpc_pb2_grpc.AuthStub(ch).RoleGet(
            rpc_pb2.AuthRoleGetRequest(role="app"), timeout=5, metadata=root
        )
    assert [(p.permType, p.key, p.range_end) for p in resp.perm] == [
        (auth_pb2.Permission.READWRITE, b"app/", b"app0"),
        (auth_pb2.Permission.READ, b"pub/", b"pub0"),
    ]
