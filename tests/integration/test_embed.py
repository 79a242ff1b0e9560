"""etcdcore.embed: a member inside the test process, reached by the real etcdctl."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

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


def test_client_of_an_embedded_member_reads_its_writes(tmp_path: Path) -> None:
    with EmbeddedMember(tmp_path / "m") as m:
        c = m.client()
        c.put("embedded/k", "v")
        assert c.get("embedded/k").value == b"v"
        assert etcdctl(m.endpoint, "get", "embedded/k", "--print-value-only").stdout == "v\n"


def test_clients_of_an_embedded_member_are_closed_when_it_stops(tmp_path: Path) -> None:
    m = EmbeddedMember(tmp_path / "m").start()
    c = m.client()
    c.put("embedded/k", "v")
    m.stop()
    assert c.closed
    with pytest.raises(ValueError):
        c.get("embedded/k")


def test_a_client_closed_by_the_caller_leaves_the_member_serving(tmp_path: Path) -> None:
    with EmbeddedMember(tmp_path / "m") as m:
        with m.client() as c:
            c.put("embedded/own", "1")
        assert c.closed
        assert m.client().get("embedded/own").value == b"1"


def test_a_client_of_a_member_not_started_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        EmbeddedMember(tmp_path / "m").client()
