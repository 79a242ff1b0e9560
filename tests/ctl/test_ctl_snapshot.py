"""Backup and restore with etcdcorectl: snapshot save from a running member,
snapshot status of the file, snapshot restore into new data dirs from which
a new member or a new three-member cluster serves the saved keys at their
saved revisions."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import Cluster
from ctl_runner import etcdcorectl
from harness import Member, etcd_bin


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict]]:
    """A snapshot file of a member holding a few keys (one overwritten, one
    deleted), and what ``get --prefix`` answered when it was taken."""
    base = tmp_path_factory.mktemp("backup")
    m = Member(data_dir=base / "source.etcd").start()
    try:
        ep = m.endpoint
        for args in (
            ("put", "b/a", "1"),
            ("put", "b/b", "2"),
            ("put", "b/a", "3"),
            ("put", "b/c", "x"),
        ):
            etcdcorectl(ep, *args)
        etcdcorectl(ep, "del", "b/c")
        saved = json.loads(etcdcorectl(ep, "get", "b/", "--prefix", "-w", "json").stdout)
        path = base / "backup.db"
        assert etcdcorectl(ep, "snapshot", "save", str(path)).returncode == 0
    finally:
        m.stop()
    yield path, saved


def _kvs(endpoint: str) -> tuple[int, list[dict]]:
    got = json.loads(etcdcorectl(endpoint, "get", "b/", "--prefix", "-w", "json").stdout)
    return got["header"]["revision"], got["kvs"]


def etcdutl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([etcd_bin("etcdutl"), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("fmt", ["simple", "json", "table", "fields"])
def test_snapshot_status_prints_what_etcdutl_prints(backup: tuple[Path, dict], fmt: str) -> None:
    path, saved = backup
    ours = etcdcorectl(None, "snapshot", "status", str(path), "-w", fmt)
    theirs = etcdutl("snapshot", "status", str(path), "-w", fmt)
    assert theirs.returncode == 0, theirs.stderr
    assert (ours.returncode, ours.stdout) == (0, theirs.stdout)
    if fmt == "json":
        assert json.loads(ours.stdout)["revision"] == saved["header"]["revision"]


def test_snapshot_status_refuses_a_truncated_file(
    backup: tuple[Path, dict], tmp_path: Path
) -> None:
    data = backup[0].read_bytes()
    cut = tmp_path / "cut.db"
    cut.write_bytes(data[:6000])
    proc = etcdcorectl(None, "snapshot", "status", str(cut))
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: ")
    assert "offset" in proc.stderr or "snapshot" in proc.stderr


def test_restored_member_serves_the_saved_keys_at_their_revisions(
    backup: tuple[Path, dict], tmp_path: Path
) -> None:
    path, saved = backup
    m = Member(data_dir=tmp_path / "restored.etcd", name="r1")
    proc = etcdcorectl(
        None,
        "snapshot",
        "restore",
        str(path),
        "--name=r1",
        f"--data-dir={m.data_dir}",
        f"--initial-cluster=r1={m.peer_url}",
        f"--initial-advertise-peer-urls={m.peer_url}",
    )
    assert proc.returncode == 0, proc.stderr
    m.start()
    try:
        assert _kvs(m.endpoint) == (saved["header"]["revision"], saved["kvs"])
        put = json.loads(etcdcorectl(m.endpoint, "put", "b/new", "v", "-w", "json").stdout)
        assert put["header"]["revision"] == saved["header"]["revision"] + 1
    finally:
        m.stop()


def test_restore_builds_a_new_three_member_cluster(
    backup: tuple[Path, dict], tmp_path: Path
) -> None:
    path, saved = backup
    c = Cluster.create(tmp_path, 3)
    initial = c.members[0].initial_cluster
    assert initial is not None
    for m in c.members:
        proc = etcdcorectl(
            None,
            "snapshot",
            "restore",
            str(path),
            f"--name={m.name}",
            f"--data-dir={m.data_dir}",
            f"--initial-cluster={initial}",
            f"--initial-cluster-token={c.token}",
            f"--initial-advertise-peer-urls={m.peer_url}",
        )
        assert proc.returncode == 0, proc.stderr
    c.start()
    try:
        for m in c.members:
            assert _kvs(m.endpoint) == (saved["header"]["revision"], saved["kvs"])
        assert len(etcdcorectl(c.endpoints, "member", "list").stdout.splitlines()) == 3
    finally:
        c.stop()


def test_restore_refuses_a_data_dir_in_use(backup: tuple[Path, dict], tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    proc = etcdcorectl(
        None, "snapshot", "restore", str(backup[0]), f"--data-dir={tmp_path / 'busy'}"
    )
    assert proc.returncode == 1
    assert proc.stderr == f'Error: data-dir "{tmp_path / "busy"}" not empty or could not be read\n'


def test_restore_refuses_a_name_missing_from_the_initial_cluster(
    backup: tuple[Path, dict], tmp_path: Path
) -> None:
    proc = etcdcorectl(
        None, "snapshot", "restore", str(backup[0]), "--name=ghost", f"--data-dir={tmp_path / 'g'}"
    )
    assert proc.returncode == 128
    assert (
        proc.stderr
        == 'Error: couldn\'t find local name "ghost" in the initial cluster configuration\n'
    )
