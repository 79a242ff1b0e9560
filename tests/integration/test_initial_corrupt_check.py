"""--experimental-initial-corrupt-check in a three-member cluster: a restarted
member compares its hash with its peers' once it has replayed its log and
stops on a mismatch, as etcd 3.5.1 does (etcd checks before it serves clients;
etcdcore's client listeners already answer while it checks).

Two clusters made with the same names, URLs and token have the same member
and cluster ids; one member of the second, with other data at the same
revision, started among the first's members, is a member whose data went
wrong behind Raft's back.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cluster import Cluster
from harness import Member, etcd_bin, etcdcore_command

SERVERS = {"etcd": [etcd_bin("etcd")], "etcdcore": etcdcore_command()}
CHECK = "--experimental-initial-corrupt-check=true"


def entries(m: Member) -> list[dict[str, object]]:
    return [json.loads(line) for line in m.log().splitlines() if line.startswith("{")]


def messages(m: Member) -> list[str]:
    return [str(e["msg"]) for e in entries(m)]


def make(base: Path, command: list[str]) -> Cluster:
    base.mkdir(parents=True, exist_ok=True)
    # etcd 3.5.1 knows its peers at start only from a snapshot.
    return Cluster.create(base, 3, command=command, extra=["--snapshot-count=1"])


def wait_exit(m: Member, timeout: float = 30.0) -> int | None:
    assert m.proc is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and m.proc.poll() is None:
        time.sleep(0.1)
    return m.proc.poll()


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_a_member_whose_data_differ_from_its_peers_refuses_to_start(
    tmp_path: Path, server: str
) -> None:
    good, bad = make(tmp_path / "good", SERVERS[server]), make(tmp_path / "bad", SERVERS[server])
    for g, b in zip(good.members, bad.members, strict=True):
        b.client_port, b.peer_port = g.client_port, g.peer_port
    for c, value in ((good, "right"), (bad, "wrong")):
        for m in c.members:
            m.initial_cluster = ",".join(f"{x.name}={x.peer_url}" for x in c.members)
        c.start()
        c.etcdctl("put", "k", value)  # type: ignore[attr-defined]
        c.stop()
    stray = bad.members[2]
    try:
        good.members[0].start(wait=False)
        good.members[1].start(wait=False)
        stray.extra = [*stray.extra, CHECK]
        stray.start(wait=False)

        assert wait_exit(stray) == 1
        logged = entries(stray)
        member_id = next(e["local-member-id"] for e in logged if "local-member-id" in e)
        error = f"{member_id} found data inconsistency with peers"
        assert [e["error"] for e in logged if e["msg"] == "discovery failed"] == [error]
        assert any(e["msg"] == "checkInitialHashKV failed" for e in logged)
        different = [
            e for e in logged if e["msg"] == "found different hash values from remote peer"
        ]
        assert len(different) == 2
        assert {e["local-member-revision"] for e in different} == {2}
        assert all(e["local-member-hash"] != e["remote-peer-hash"] for e in different)
    finally:
        good.stop()
        stray.stop()


def test_a_member_whose_data_agree_with_its_peers_starts(tmp_path: Path) -> None:
    c = make(tmp_path, etcdcore_command()).start()
    try:
        c.etcdctl("put", "k", "v")  # type: ignore[attr-defined]
        third = c.members[2]
        third.stop()
        third.extra = [*third.extra, CHECK]
        third.start()

        # The check runs once the member has replayed its log, while it
        # already answers: wait for its verdict.
        deadline = time.monotonic() + 20
        while "initial corruption checking passed; no corruption" not in messages(third):
            assert time.monotonic() < deadline, messages(third)
            time.sleep(0.05)
        assert third.etcdctl("get", "k", "--print-value-only").stdout == "v\n"
    finally:
        c.stop()


def test_a_new_member_is_not_checked(tmp_path: Path) -> None:
    m = Member(data_dir=tmp_path / "d", extra=[CHECK]).start()
    try:
        assert "starting initial corruption check" not in messages(m)
    finally:
        m.stop()
