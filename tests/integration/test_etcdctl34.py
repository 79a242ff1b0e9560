"""etcdctl 3.4 (Debian's etcd-client package) against etcdcore.

etcdctl 3.4 opens its own connection per endpoint for Defragment, HashKV,
Status and MoveLeader, naming the endpoint URL (``http://host:port``) as the
HTTP/2 ``:authority``. grpc-go accepts that; these tests hold etcdcore to it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cluster import running_cluster, status
from harness import Member

#: Where Debian's etcd-client installs it; PATH is searched too.
_CANDIDATES = ("/usr/bin/etcdctl", "/usr/local/bin/etcdctl")


def _find_etcdctl34() -> str | None:
    seen = [*_CANDIDATES]
    for d in os.environ.get("PATH", "").split(os.pathsep):
        seen.append(os.path.join(d, "etcdctl"))
    for path in seen:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            continue
        out = subprocess.run([path, "version"], capture_output=True, text=True, timeout=10)
        if "etcdctl version: 3.4." in out.stdout:
            return path
    return None


ETCDCTL34 = _find_etcdctl34()
pytestmark = pytest.mark.skipif(
    ETCDCTL34 is None,
    reason="etcdctl 3.4 not installed (Debian: apt-get install etcd-client)",
)


def etcdctl34(endpoints: str, *args: str) -> subprocess.CompletedProcess[str]:
    assert ETCDCTL34 is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    return subprocess.run(
        [ETCDCTL34, f"--endpoints={endpoints}", "--command-timeout=5s", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def url(m: Member) -> str:
    return f"http://{m.endpoint}"


def test_etcdctl34_defrag_defragments_the_member(member: Member) -> None:
    out = etcdctl34(url(member), "defrag")

    assert out.returncode == 0, out.stderr
    assert out.stdout == f"Finished defragmenting etcd member[{url(member)}]\n"


def test_etcdctl34_endpoint_hashkv_prints_the_members_hash(member: Member) -> None:
    member.etcdctl("put", "k", "v")

    out = etcdctl34(url(member), "endpoint", "hashkv")

    assert out.returncode == 0, out.stderr
    endpoint, _, digest = out.stdout.strip().partition(", ")
    assert endpoint == url(member)
    assert int(digest) > 0


def test_etcdctl34_endpoint_status_reports_the_member(member: Member) -> None:
    out = etcdctl34(url(member), "endpoint", "status", "-w", "json")

    assert out.returncode == 0, out.stderr
    assert '"leader":' in out.stdout and '"version":"3.5.1"' in out.stdout


def test_etcdctl34_move_leader_hands_leadership_to_the_target(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3) as c:
        leader = c.leader()
        target = next(m for m in c.members if m is not leader)
        target_status = status(target)
        assert target_status is not None
        target_id = f"{target_status.header.member_id:x}"

        out = etcdctl34(",".join(url(m) for m in c.members), "move-leader", target_id)

        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("Leadership transferred from ")
        assert out.stdout.rstrip().endswith(f" to {target_id}")
        assert c.leader() is target
