"""etcdcore.embed: a member inside the test process, reached by the real etcdctl."""

from __future__ import annotations

from pathlib import Path

import grpc

from etcdcore.embed import EmbeddedMember
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import etcdctl


def test_embedded_member_serves_etcdctl(tmp_path: Path) -> None:
    with EmbeddedMember(tmp_path / "m") as m:
        etcdctl(m.endpoint, "put", "k", "v")
        assert etcdctl(m.endpoint, "get", "k", "--print-value-only").stdout == "v\n"


def test_embedded_member_keeps_data_across_a_restart(tmp_path: Path) -> None:
    m = EmbeddedMember(tmp_path / "m").start()
    etcdctl(m.endpoint, "put", "durable", "yes")
    m.stop()
    again = EmbeddedMember(tmp_path / "m", client_port=m.client_port, peer_port=m.peer_port)
    with again:
        out = etcdctl(again.endpoint, "get", "durable", "--print-value-only").stdout
        assert out == "yes\n"


def test_temporary_data_dir_is_removed_on_stop() -> None:
    m = EmbeddedMember().start()
    data_dir = m.data_dir
    assert data_dir.exists()
    m.stop()
    assert not data_dir.exists()


def test_etcd_member_fixture_gives_a_running_member(etcd_member: EmbeddedMember) -> None:
    with grpc.insecure_channel(etcd_member.endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        kv.Put(rpc_pb2.PutRequest(key=b"a", value=b"1"))
        assert kv.Range(rpc_pb2.RangeRequest(key=b"a")).kvs[0].value == b"1"
