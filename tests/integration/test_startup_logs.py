"""The start-up log lines operators, wrappers and test harnesses wait for, as
etcd 3.5 writes them: the member published through Raft, the cluster version's
capabilities, then readiness and how client traffic is served."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cluster import Cluster
from harness import Member, etcd_bin

PUBLISHED = "published local member to cluster through raft"
CAPABILITIES = "enabled capabilities for version"
READY = "ready to serve client requests"
INSECURE = "serving client traffic insecurely; this is strongly discouraged!"
READINESS = (PUBLISHED, CAPABILITIES, READY, INSECURE)


def entries(m: Member) -> list[dict[str, object]]:
    out = []
    for line in m.log().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def first(m: Member, msg: str) -> dict[str, object]:
    return next(e for e in entries(m) if e["msg"] == msg)


def wait_for_line(m: Member, msg: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e["msg"] == msg for e in entries(m)):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{msg!r} not logged in {timeout}s:\n{m.log()}")


def started(m: Member) -> Member:
    m.start()
    wait_for_line(m, INSECURE)
    return m


def test_readiness_lines_come_in_etcds_order(tmp_path: Path) -> None:
    m = started(Member(data_dir=tmp_path / "d"))
    try:
        messages = [e["msg"] for e in entries(m)]
    finally:
        m.stop()

    positions = [messages.index(msg) for msg in READINESS]
    assert positions == sorted(positions)


def test_published_line_names_the_member_its_attributes_and_the_cluster(tmp_path: Path) -> None:
    m = started(Member(data_dir=tmp_path / "d", name="n1"))
    try:
        published = first(m, PUBLISHED)
        members = m.etcdctl("member", "list", "-w", "json").stdout
    finally:
        m.stop()

    listed = json.loads(members)
    member_id = f"{listed['members'][0]['ID']:x}"
    assert published["local-member-id"] == member_id
    assert published["cluster-id"] == f"{listed['header']['cluster_id']:x}"
    assert published["local-member-attributes"] == f"{{Name:n1 ClientURLs:[http://{m.endpoint}]}}"
    assert published["request-path"] == f"/0/members/{member_id}/attributes"
    assert published["publish-timeout"] == "7s"


def test_capabilities_line_names_the_cluster_version(tmp_path: Path) -> None:
    m = started(Member(data_dir=tmp_path / "d"))
    try:
        line = first(m, CAPABILITIES)
    finally:
        m.stop()

    assert line["cluster-version"] == "3.5"


def test_readiness_lines_carry_the_fields_etcd_351_logs(tmp_path: Path) -> None:
    ours = started(Member(data_dir=tmp_path / "ours"))
    etcd = started(Member(data_dir=tmp_path / "etcd", command=[etcd_bin("etcd")]))
    try:
        for msg in READINESS:
            mine, theirs = first(ours, msg), first(etcd, msg)
            assert list(mine) == list(theirs), msg
        assert first(ours, INSECURE)["address"] == ours.endpoint
    finally:
        ours.stop()
        etcd.stop()


def test_a_member_without_quorum_is_not_published_nor_ready(tmp_path: Path) -> None:
    c = Cluster.create(tmp_path, 3)
    alone, *others = c.members
    try:
        alone.start(wait=False)
        # etcd's publish needs the entry committed, which needs a majority.
        time.sleep(3)
        logged = {e["msg"] for e in entries(alone)}
        assert PUBLISHED not in logged and READY not in logged

        others[0].start(wait=False)
        wait_for_line(alone, PUBLISHED)
        wait_for_line(alone, READY)
        names = alone.etcdctl("member", "list").stdout
        assert ", n1, " in names
    finally:
        c.stop()


def test_a_restarted_member_publishes_again(tmp_path: Path) -> None:
    m = started(Member(data_dir=tmp_path / "d"))
    m.stop()
    m.start()
    try:
        wait_for_line(m, READY)
        assert [e["msg"] for e in entries(m)].count(PUBLISHED) == 2
    finally:
        m.stop()


def test_etcd_unsupported_arch_is_reported_as_etcd_351_reports_it_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # etcd reads ETCD_UNSUPPORTED_ARCH only on architectures it does not
    # support; on the others (amd64, arm64, ppc64le, s390x) it is one more
    # unknown ETCD_* variable, which etcd warns about.
    monkeypatch.setenv("ETCD_UNSUPPORTED_ARCH", "arm")
    ours = started(Member(data_dir=tmp_path / "ours"))
    etcd = started(Member(data_dir=tmp_path / "etcd", command=[etcd_bin("etcd")]))
    try:
        for m in (ours, etcd):
            warned = [e for e in entries(m) if e["msg"] == "unrecognized environment variable"]
            assert [e["environment-variable"] for e in warned] == ["ETCD_UNSUPPORTED_ARCH=arm"]
    finally:
        ours.stop()
        etcd.stop()
