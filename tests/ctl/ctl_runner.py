"""Run etcdcorectl and the real etcdctl 3.5 side by side, as a user's shell
would, and compare what they print."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from harness import etcd_bin


def ctl_command() -> list[str]:
    exe = shutil.which("etcdcorectl")
    return [exe] if exe else [sys.executable, "-m", "etcdcore.ctl"]


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    env.update(extra or {})
    return env


def etcdcorectl(
    endpoint: str | None,
    *args: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """etcdcorectl with ``--endpoints=endpoint`` (none when endpoint is None)."""
    flags = [f"--endpoints={endpoint}"] if endpoint else []
    return subprocess.run(
        [*ctl_command(), *flags, *args],
        input=input,
        capture_output=True,
        text=True,
        errors="surrogateescape",
        timeout=timeout,
        env=_env(env),
    )


def real_etcdctl(
    endpoint: str | None,
    *args: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """etcd's etcdctl 3.5, its client-library warning log lines dropped."""
    flags = [f"--endpoints={endpoint}"] if endpoint else []
    proc = subprocess.run(
        [etcd_bin("etcdctl"), *flags, *args],
        input=input,
        capture_output=True,
        text=True,
        errors="surrogateescape",
        timeout=timeout,
        env=_env(env),
    )
    proc.stderr = "".join(
        line for line in proc.stderr.splitlines(True) if not line.startswith('{"level":')
    )
    return proc


_REVISION = re.compile(
    r'("revision":|"mod_revision":|"create_revision":|"version":|"ID":'
    r'|Revision" : |"Version" : |"ID" : )\d+'
)
_TOOK = re.compile(r"took( = |\":\"| \| )?[0-9.]+(ns|µs|ms|s)")


def normalized(text: str) -> str:
    """Output with the values that differ between two runs (revisions, ``took``
    times, lease IDs) replaced by placeholders."""
    text = _REVISION.sub(r"\1N", text)
    text = _TOOK.sub("took=T", text)
    return re.sub(r"\b[0-9a-f]{16}\b", "ID", text)
