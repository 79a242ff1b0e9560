"""A long-running ``watch`` outlives a restart of its member, as etcdctl's does:
the stream is opened again from the revision after the last event printed,
and with auth on, after logging in again (simple tokens die with the member)."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from pathlib import Path

import pytest

from ctl_runner import ctl_command, real_etcdctl
from harness import Member, etcd_bin

pytestmark = pytest.mark.timeout(90)


class Watcher:
    """A watch command running in the background, its stdout read line by line."""

    def __init__(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_lines(self, n: int, timeout: float = 15) -> list[str]:
        try:
            return [self.lines.get(timeout=timeout) for _ in range(n)]
        except queue.Empty:
            self.proc.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            pytest.fail(f"the watch printed nothing for {timeout}s; stderr: {err}")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


SERVERS = {"etcdcore": None, "etcd": [etcd_bin("etcd")]}
TOOLS = {"etcdcorectl": ctl_command(), "etcdctl": [etcd_bin("etcdctl")]}


def start(tmp_path: Path, server: str, auth: bool) -> tuple[Member, list[str]]:
    """A member, and the flags a ctl needs for it (a user when auth is on)."""
    m = Member(data_dir=tmp_path / "d")
    if SERVERS[server] is not None:
        m.command = SERVERS[server]
    m.start()
    user: list[str] = []
    if auth:
        for cmd in ("user add root:rootpw", "auth enable"):
            assert real_etcdctl(m.endpoint, *cmd.split()).returncode == 0
        user = ["--user=root:rootpw"]
    return m, user


@pytest.mark.parametrize("auth", [False, True], ids=["no-auth", "auth"])
@pytest.mark.parametrize(
    ("tool", "server"),
    [
        ("etcdcorectl", "etcdcore"),
        ("etcdcorectl", "etcd"),
        # The reference: etcdctl's watch outlives a restart of etcd.
        ("etcdctl", "etcd"),
        ("etcdctl", "etcdcore"),
    ],
)
def test_watch_outlives_a_restart_of_its_member(
    tmp_path: Path, tool: str, server: str, auth: bool
) -> None:
    member, user = start(tmp_path, server, auth)
    w: Watcher | None = None
    try:
        got = real_etcdctl(member.endpoint, *user, "get", "r/k", "-w", "json")
        rev = json.loads(got.stdout)["header"]["revision"] + 1
        ctl = [*TOOLS[tool], f"--endpoints={member.endpoint}", *user]
        w = Watcher([*ctl, "watch", "r/k", f"--rev={rev}"])
        assert real_etcdctl(member.endpoint, *user, "put", "r/k", "before").returncode == 0
        assert w.next_lines(3) == ["PUT", "r/k", "before"]
        member.stop()
        member.start()
        assert real_etcdctl(member.endpoint, *user, "put", "r/k", "after").returncode == 0
        assert w.next_lines(3) == ["PUT", "r/k", "after"]
    finally:
        if w is not None:
            w.stop()
        member.stop()
