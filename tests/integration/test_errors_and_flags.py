"""etcd's gRPC status codes and message texts for bad requests, and the
process's command-line behaviour (unknown flags, --version)."""

from __future__ import annotations

import subprocess

import grpc
import pytest

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import Member, etcdcore_command

IA, NF, FP = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
)


def fails(call, request, code: grpc.StatusCode, message: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    assert (err.value.code(), err.value.details()) == (code, message)


def put_op(key: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=b"v"))


def test_put_without_key(shared_member: Member) -> None:
    kv = rpc_pb2_grpc.KVStub(shared_member.channel())
    fails(kv.Put, rpc_pb2.PutRequest(value=b"v"), IA, "etcdserver: key is not provided")


def test_range_without_key(shared_member: Member) -> None:
    kv = rpc_pb2_grpc.KVStub(shared_member.channel())
    fails(kv.Range, rpc_pb2.RangeRequest(), IA, "etcdserver: key is not provided")


def test_request_too_large(shared_member: Member) -> None:
    kv = rpc_pb2_grpc.KVStub(shared_member.channel())
    big = rpc_pb2.PutRequest(key=b"big", value=b"x" * (1572864 + 1))
    fails(kv.Put, big, IA, "etcdserver: request is too large")


def test_too_many_txn_ops(shared_member: Member) -> None:
    kv = rpc_pb2_grpc.KVStub(shared_member.channel())
    txn = rpc_pb2.TxnRequest(success=[put_op(f"k{i}".encode()) for i in range(129)])
    fails(kv.Txn, txn, IA, "etcdserver: too many operations in txn request")


def test_duplicate_key_in_txn(shared_member: Member) -> None:
    kv = rpc_pb2_grpc.KVStub(shared_member.channel())
    txn = rpc_pb2.TxnRequest(success=[put_op(b"dup"), put_op(b"dup")])
    fails(kv.Txn, txn, IA, "etcdserver: duplicate key given in txn request")


def test_ignore_value_with_value(shared_member: Member) -> None:
    kv = rpc_pb2_grpc.KVStub(shared_member.channel())
    req = rpc_pb2.PutRequest(key=b"k", value=b"v", ignore_value=True)
    fails(kv.Put, req, IA, "etcdserver: value is provided")


def test_lease_grant_of_existing_id(shared_member: Member) -> None:
    lease = rpc_pb2_grpc.LeaseStub(shared_member.channel())
    lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=777, TTL=60))
    fails(
        lease.LeaseGrant,
        rpc_pb2.LeaseGrantRequest(ID=777, TTL=60),
        FP,
        "etcdserver: lease already exists",
    )


def test_lease_revoke_of_unknown_id(shared_member: Member) -> None:
    lease = rpc_pb2_grpc.LeaseStub(shared_member.channel())
    fails(
        lease.LeaseRevoke,
        rpc_pb2.LeaseRevokeRequest(ID=4242),
        NF,
        "etcdserver: requested lease not found",
    )


def test_time_to_live_of_unknown_lease_is_ttl_minus_one(shared_member: Member) -> None:
    lease = rpc_pb2_grpc.LeaseStub(shared_member.channel())
    resp = lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=4243))
    assert (resp.ID, resp.TTL) == (4243, -1)


def test_server_survives_garbage_bytes_on_a_bridged_method(shared_member: Member) -> None:
    with shared_member.channel() as ch:
        call = ch.unary_unary("/etcdserverpb.Lease/LeaseGrant")
        with pytest.raises(grpc.RpcError) as err:
            call(b"\xff\xff\xff\xff")
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert err.value.details().startswith("grpc: error unmarshalling request")
    kv = rpc_pb2_grpc.KVStub(shared_member.channel())
    assert kv.Range(rpc_pb2.RangeRequest(key=b"k")).header.revision >= 1


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*etcdcore_command(), *args], capture_output=True, text=True, timeout=30)


def test_unknown_flag_exits_nonzero_with_message() -> None:
    proc = run("--no-such-flag=1")
    assert proc.returncode != 0
    assert "no-such-flag" in proc.stderr


def test_version_flag() -> None:
    proc = run("--version")
    assert proc.returncode == 0
    assert "etcd Version: 3.5.1" in proc.stdout
