"""etcdcorectl on a three-member etcdcore cluster: membership changes with
the output etcdctl prints, --cluster endpoint queries, move-leader."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import Cluster, member_host, wait_until
from ctl_runner import etcdcorectl
from harness import Member, free_port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster.create(tmp_path_factory.mktemp("ctl-cluster"), 3).start()
    try:
        yield c
    finally:
        c.stop()


def test_endpoint_status_cluster_lists_every_member_once(cluster: Cluster) -> None:
    first = cluster.members[0].endpoint
    rows = json.loads(etcdcorectl(first, "endpoint", "status", "--cluster", "-w", "json").stdout)
    assert sorted(r["Endpoint"] for r in rows) == sorted(
        f"http://{m.endpoint}" for m in cluster.members
    )
    assert sum(r["Status"]["leader"] == r["Status"]["header"]["member_id"] for r in rows) == 1


def test_endpoint_health_cluster_reports_each_member_healthy(cluster: Cluster) -> None:
    proc = etcdcorectl(cluster.members[0].endpoint, "endpoint", "health", "--cluster")
    assert proc.returncode == 0
    assert len([line for line in proc.stdout.splitlines() if " is healthy: " in line]) == 3


def test_move_leader_transfers_leadership_to_the_named_member(cluster: Cluster) -> None:
    leader = cluster.leader()
    target = cluster.followers()[0]
    target_id = json.loads(etcdcorectl(target.endpoint, "endpoint", "status", "-w", "json").stdout)[
        0
    ]["Status"]["header"]["member_id"]
    leader_id = json.loads(etcdcorectl(leader.endpoint, "endpoint", "status", "-w", "json").stdout)[
        0
    ]["Status"]["header"]["member_id"]
    proc = etcdcorectl(cluster.endpoints, "move-leader", f"{target_id:x}")
    assert (proc.returncode, proc.stdout) == (
        0,
        f"Leadership transferred from {leader_id:x} to {target_id:x}\n",
    )
    wait_until(lambda: cluster.leader() is target)


def test_move_leader_needs_the_leader_among_the_endpoints(cluster: Cluster) -> None:
    followers = cluster.followers()
    proc = etcdcorectl(followers[0].endpoint, "move-leader", "1")
    assert proc.returncode == 128
    assert proc.stderr == f"Error: no leader endpoint given at [{followers[0].endpoint}]\n"


def test_member_add_learner_promote_and_remove(cluster: Cluster, tmp_path: Path) -> None:
    ep = cluster.endpoints
    new = Member(
        data_dir=tmp_path / "m4",
        name="m4",
        host=member_host(4),
        client_port=free_port(),
        peer_port=free_port(),
    )
    added = etcdcorectl(ep, "member", "add", "m4", f"--peer-urls={new.peer_url}", "--learner")
    lines = added.stdout.splitlines()
    assert added.returncode == 0
    assert lines[0].startswith("Member ") and " added to cluster " in lines[0]
    assert lines[2] == 'ETCD_NAME="m4"'
    assert lines[3].startswith('ETCD_INITIAL_CLUSTER="') and f"m4={new.peer_url}" in lines[3]
    assert lines[4:] == [
        f'ETCD_INITIAL_ADVERTISE_PEER_URLS="{new.peer_url}"',
        'ETCD_INITIAL_CLUSTER_STATE="existing"',
    ]
    member_id = lines[0].split()[1]
    listed = etcdcorectl(ep, "member", "list").stdout
    assert f"{member_id}, unstarted, , {new.peer_url}, , true" in listed
    # A learner that never started cannot be promoted.
    refused = etcdcorectl(ep, "member", "promote", member_id)
    assert refused.returncode == 1
    assert (
        refused.stderr
        == "Error: etcdserver: can only promote a learner member which is in sync with leader\n"
    )
    removed = etcdcorectl(ep, "member", "remove", member_id)
    # etcdctl writes ids with %16x: space-padded to 16 columns.
    assert removed.stdout.startswith(f"Member {member_id:>16} removed from cluster ")
    assert member_id not in etcdcorectl(ep, "member", "list").stdout


def test_member_update_changes_the_peer_urls(cluster: Cluster) -> None:
    m = cluster.members[2]
    ep = cluster.endpoints
    row = next(
        r
        for r in json.loads(etcdcorectl(ep, "member", "list", "-w", "json").stdout)["members"]
        if r["name"] == m.name
    )
    member_id = f"{row['ID']:x}"
    proc = etcdcorectl(ep, "member", "update", member_id, f"--peer-urls={m.peer_url}")
    assert proc.stdout.startswith(f"Member {member_id:>16} updated in cluster ")
