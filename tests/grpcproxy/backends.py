"""The clusters behind the proxy tests: etcdcore, or etcd 3.5.1 for parity."""

from __future__ import annotations

from pathlib import Path

from harness import Member, etcd_bin


def start_member(base: Path, backend: str) -> Member:
    """A single member: etcdcore, or etcd 3.5.1 with backend="etcd"."""
    if backend == "etcd":
        return Member(
            data_dir=base / "etcd.etcd", command=[etcd_bin("etcd")], extra=["--log-level", "error"]
        ).start()
    return Member(data_dir=base / "etcdcore.etcd").start()
