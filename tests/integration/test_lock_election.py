"""etcdctl lock and elect against etcdcore's v3lock and v3election services."""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
import time

import grpc
import pytest

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdcore.proto.v3election import v3election_pb2, v3election_pb2_grpc
from etcdcore.proto.v3lock import v3lock_pb2, v3lock_pb2_grpc
from harness import Member

_readers: dict[int, queue.Queue[str]] = {}


def read_line(p: subprocess.Popen[str], timeout: float = 10.0) -> str:
    """The next stdout line of ``p`` (fails the test after ``timeout``)."""
    q = _readers.get(id(p))
    if q is None:
        q = _readers[id(p)] = queue.Queue()
        assert p.stdout is not None
        out = p.stdout

        def pump() -> None:
            for line in out:
                q.put(line.strip())

        threading.Thread(target=pump, daemon=True).start()
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError("no output in time") from None


def test_lock_runs_a_command_holding_the_lock(shared_member: Member) -> None:
    out = shared_member.etcdctl("lock", "job", "--", "sh", "-c", "echo held $ETCD_LOCK_KEY").stdout
    assert out.startswith("held job/")


def test_a_second_locker_waits_for_the_first_to_release(shared_member: Member) -> None:
    first = shared_member.etcdctl_popen("lock", "mutex")
    try:
        first_key = read_line(first)
        assert first_key.startswith("mutex/")
        second = shared_member.etcdctl_popen("lock", "mutex")
        try:
            with pytest.raises(AssertionError, match="no output"):
                read_line(second, timeout=1.5)
            first.send_signal(signal.SIGINT)  # etcdctl unlocks and revokes on ^C
            second_key = read_line(second)
            assert second_key.startswith("mutex/") and second_key != first_key
        finally:
            second.send_signal(signal.SIGINT)
            second.wait(10)
    finally:
        first.kill()
        first.wait(10)


def test_elect_observers_see_each_leader_in_turn(shared_member: Member) -> None:
    a = shared_member.etcdctl_popen("elect", "chief", "alpha")
    b = c = None
    try:
        assert read_line(a).startswith("chief/")
        assert read_line(a) == "alpha"
        b = shared_member.etcdctl_popen("elect", "chief", "beta")
        c = shared_member.etcdctl_popen("elect", "-l", "chief")
        assert read_line(c).startswith("chief/")
        assert read_line(c) == "alpha"
        a.send_signal(signal.SIGINT)  # resigns
        assert read_line(b).startswith("chief/")
        assert read_line(b) == "beta"
        assert read_line(c).startswith("chief/")
        assert read_line(c) == "beta"
    finally:
        for p in (a, b, c):
            if p is not None:
                p.kill()
                p.wait(10)


def test_leader_of_an_empty_election_is_an_error(shared_member: Member) -> None:
    with shared_member.channel() as ch, pytest.raises(grpc.RpcError) as e:
        v3election_pb2_grpc.ElectionStub(ch).Leader(
            v3election_pb2.LeaderRequest(name=b"nobody-here"), timeout=5
        )
    assert e.value.details() == "election: no leader"


def test_proclaim_by_a_candidate_that_does_not_lead_is_refused(shared_member: Member) -> None:
    with shared_member.channel() as ch, pytest.raises(grpc.RpcError) as e:
        v3election_pb2_grpc.ElectionStub(ch).Proclaim(
            v3election_pb2.ProclaimRequest(
                leader=v3election_pb2.LeaderKey(name=b"x", key=b"x/1", rev=1, lease=1),
                value=b"v",
            ),
            timeout=5,
        )
    assert e.value.details() == "election: not leader"


def test_lock_with_an_unknown_lease_is_refused(shared_member: Member) -> None:
    with shared_member.channel() as ch, pytest.raises(grpc.RpcError) as e:
        v3lock_pb2_grpc.LockStub(ch).Lock(v3lock_pb2.LockRequest(name=b"l", lease=12345), timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert e.value.details() == "etcdserver: requested lease not found"


def test_lock_expires_with_its_lease(shared_member: Member) -> None:
    with shared_member.channel() as ch:
        lease = rpc_pb2_grpc.LeaseStub(ch).LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=2)).ID
        locks = v3lock_pb2_grpc.LockStub(ch)
        key = locks.Lock(v3lock_pb2.LockRequest(name=b"ttl", lease=lease)).key
        other = rpc_pb2_grpc.LeaseStub(ch).LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30)).ID
        started = time.monotonic()
        second = locks.Lock(v3lock_pb2.LockRequest(name=b"ttl", lease=other), timeout=20)
        assert second.key != key
        assert time.monotonic() - started >= 1
